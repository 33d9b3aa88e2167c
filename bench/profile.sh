#!/bin/bash
# bench/profile.sh -- `make profile`: instructions the server executes per routed message and per
# broadcast delivery, counted by valgrind's callgrind. Instruction counts do not depend on the
# machine's load, so a regression shows up without timing noise. Each figure is the whole run
# minus a run that only connects and logs in the same clients. UIDCAST_BIN profiles another build.
set -u
cd "$(dirname "$0")/.."
OUT=build/profile
mkdir -p "$OUT"
PORT=${BENCH_PORT:-22234}

run() { # name, loadgen arguments; prints "<instructions> <messages received>"
    name=$1; shift
    valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.out" "${UIDCAST_BIN:-build/uidcast}" \
        --listen 127.0.0.1:$PORT --push off --log-level warn scripts/default.lua 2>/dev/null &
    pid=$!
    i=0
    while ! (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; do
        i=$((i + 1)); [ $i -gt 400 ] && { echo "server did not start" >&2; exit 1; }
        sleep 0.05
    done
    json=$(build/loadgen "$@" --port $PORT --server-pid $pid 2>&1 | grep '^{')
    kill -TERM $pid; wait $pid 2>/dev/null
    ir=$(grep -E '^(summary|totals):' "$OUT/$name.out" | head -1 | awk '{print $2}')
    received=$(echo "$json" | sed -nE 's/.*"received":([0-9]+).*/\1/p')
    echo "$ir ${received:-0}"
}

read -r base_route _ < <(run hold200 hold --conns 200)
read -r route routed < <(run route route --conns 200 --inflight 8 --duration 3)
read -r base_bcast _ < <(run hold2000 hold --conns 2000)
read -r bcast delivered < <(run broadcast broadcast --conns 2000 --inflight 4 --duration 3)

awk -v r="$route" -v rb="$base_route" -v n="$routed" -v b="$bcast" -v bb="$base_bcast" -v d="$delivered" 'BEGIN {
    printf "route:     %d messages, %.0f instructions per routed message (Lua call included)\n", n, (r - rb) / n
    printf "broadcast: %d deliveries, %.0f instructions per broadcast delivery\n", d, (b - bb) / d
    printf "{\"route_ir_per_message\":%.0f,\"broadcast_ir_per_delivery\":%.0f}\n", (r - rb) / n, (b - bb) / d
}'
echo "(callgrind files in $OUT/: callgrind_annotate $OUT/route.out shows where)"
