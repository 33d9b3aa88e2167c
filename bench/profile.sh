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
    valgrind --tool=callgrind ${CACHE_SIM:+--cache-sim=yes} --callgrind-out-file="$OUT/$name.out" \
        "${UIDCAST_BIN:-build/uidcast}" \
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
# Where a routed message's instructions go, by part: the Lua VM and its C API (liblua), our
# bindings (lua/*.c), the core (core/*.c), wslay, libev, libc. Each part's share of the route
# run minus its share of the run that only logs the same clients in.
python3 - "$OUT/route.out" "$OUT/hold200.out" "$routed" <<'PY'
import re, subprocess, sys
def parts(path):
    out = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", path], capture_output=True,
                         text=True).stdout
    sums = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(\S+)(?: \[(.*)\])?$", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        ir, fn, obj = int(m.group(1).replace(",", "")), m.group(2), m.group(3) or ""
        if "liblua" in obj: part = "Lua VM and C API (liblua)"
        elif fn.startswith("lua/"): part = "bindings (lua/*.c)"
        elif fn.startswith("core/"): part = "core (core/*.c)"
        elif "libwslay" in obj: part = "wslay"
        elif "libev" in obj: part = "libev"
        elif "libc.so" in obj or "ld-linux" in obj: part = "libc (malloc, memcpy, ...)"
        else: part = "other"
        sums[part] = sums.get(part, 0) + ir
    return sums
route, base, n = parts(sys.argv[1]), parts(sys.argv[2]), int(sys.argv[3])
print("route, instructions per routed message by part:")
for part in sorted(route, key=lambda p: -(route[p] - base.get(p, 0))):
    per = (route[part] - base.get(part, 0)) / n
    if per >= 1:
        print("  %-28s %6.0f" % (part, per))
PY

# Data cache lines a routed message misses in a simulated L1 data cache (valgrind takes its size
# from this CPU), with 1,000 clients one message at a time: what the server touches per message
# beyond what stays cached. When the machine's caches are contended, these misses are what
# user time grows by. Code misses are left out: in the simulation they jump between 0 and 15 as
# unrelated changes move functions between cache sets, and on the machine the kernel's code,
# run twice per message, evicts ours anyway.
events() { # callgrind file -> "name=total ..." for each event
    awk '/^events:/ { for (i = 2; i <= NF; i++) name[i] = $i }
         /^(summary|totals):/ { for (i = 2; i <= NF; i++) printf "%s=%s ", name[i], $i; exit }' "$1"
}
CACHE_SIM=1 run hold1000 hold --conns 1000 >/dev/null
read -r _ routed1 < <(CACHE_SIM=1 run route1 route --conns 1000 --inflight 1 --duration 3)
awk -v base="$(events "$OUT/hold1000.out")" -v run="$(events "$OUT/route1.out")" -v n="$routed1" 'BEGIN {
    split(base, b, " "); split(run, r, " ")
    for (i in b) { split(b[i], kv, "="); before[kv[1]] = kv[2] }
    for (i in r) { split(r[i], kv, "="); after[kv[1]] = kv[2] }
    printf "route, 1 in flight: %d messages, L1 data misses per routed message: %.1f read, %.1f write\n",
        n, (after["D1mr"] - before["D1mr"]) / n, (after["D1mw"] - before["D1mw"]) / n
}'
echo "(callgrind files in $OUT/: callgrind_annotate $OUT/route.out shows where)"
