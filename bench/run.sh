#!/bin/bash
# bench/run.sh -- `make bench`: uidcast and its peers, measured the same way in one run: each
# server pinned to core 0 (taskset), the load generator to core 1, a fresh server per
# workload, the servers interleaved workload by workload. Prints a human line and a JSON line
# per measurement, then a table of medians (min..max over the rounds).
#   BENCH_DURATION   seconds each throughput workload runs (default 5)
#   BENCH_HOLD       connections for the large hold workload (default 19000; also 10000)
#   BENCH_ROUNDS     rounds of every workload (default 1; 3 for medians)
#   UIDCAST_BEFORE   another uidcast binary to measure in the same run (label "before"), with
#                    the default.lua of its own tree (X/scripts/ for X/build/uidcast) when there
#                    is one: a script may use what only its own build provides
#   BENCH_UWS        a uWebSockets server speaking the seed protocol, run as "$BENCH_UWS PORT"
#                    (label "uws"; README, "Performance", says how to build one outside the repo)
#   BENCH_ONLY       "uidcast" to skip the Node.js peer, "cluster" for the cluster workloads only
# On route-1 also bench/route_floor.c (label "floor"): one recv and one send per message and
# nothing else, the most any server could do there; the summary gives each server's share of it.
# Then the cluster workload: two uidcast nodes on one redis-server (all three on core 0), the
# route clients split over the nodes so that every message crosses from one node to the other
# through Redis; its figure is per CPU-second of both nodes and Redis together. The same on 1, 2
# and 4 Redis shards, with each Redis's CPU: the busiest one is the ceiling shards divide.
set -u
cd "$(dirname "$0")/.."
DURATION=${BENCH_DURATION:-5}
HOLD=${BENCH_HOLD:-19000}
ROUNDS=${BENCH_ROUNDS:-1}
PORT=${BENCH_PORT:-21234}
PUSH_PORT=$((PORT + 1))
RESULTS=build/bench-results.jsonl
: > "$RESULTS"
ulimit -n "$(ulimit -Hn)" 2>/dev/null

record() { # a tool's output: human lines to the terminal, JSON lines to the results
    echo "$1" | grep -v '^{'
    echo "$1" | grep '^{' >> "$RESULTS"
}

wait_port() {
    i=0
    while ! (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; do
        i=$((i + 1)); [ $i -gt 200 ] && { echo "server did not start"; return 1; }
        sleep 0.05
    done
}

start_server() { # label
    case $1 in
        uidcast) taskset -c 0 build/uidcast --listen 127.0.0.1:$PORT --push 127.0.0.1:$PUSH_PORT \
                     --log-level warn scripts/default.lua 2>>build/bench-server.log & ;;
        before)  taskset -c 0 "$UIDCAST_BEFORE" --listen 127.0.0.1:$PORT --push 127.0.0.1:$PUSH_PORT \
                     --log-level warn "$BEFORE_SCRIPT" 2>>build/bench-server.log & ;;
        node-ws) taskset -c 0 node bench/peer/server.js $PORT $PUSH_PORT 2>>build/bench-server.log & ;;
        uws)     taskset -c 0 $BENCH_UWS $PORT >>build/bench-server.log 2>&1 & ;;
        floor)   taskset -c 0 build/route_floor $PORT >>build/bench-server.log 2>&1 & ;;
    esac
    SERVER_PID=$!
    wait_port $PORT
}

stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    sleep 0.5 # let TIME_WAIT sockets and the kernel settle between workloads
}

measure() { # label workload [loadgen args]
    label=$1; workload=$2; shift 2
    start_server "$label" || { stop_server; return; }
    out=$(taskset -c 1 build/loadgen "$workload" --port $PORT --push-port $PUSH_PORT \
          --server-pid "$SERVER_PID" --label "$label" "$@" 2>&1)
    rc=$?
    record "$(echo "$out" | sed "s/^{/{\"round\":${round:-1},/")" # paired with the others' by round
    [ $rc -ne 0 ] && echo "   ($label $workload: loadgen exit $rc)"
    stop_server
}

labels="uidcast"
[ -n "${UIDCAST_BEFORE:-}" ] && labels="before $labels"
BEFORE_SCRIPT=$(dirname "$(dirname "${UIDCAST_BEFORE:-.}")")/scripts/default.lua
[ -f "$BEFORE_SCRIPT" ] || BEFORE_SCRIPT=scripts/default.lua
[ "${BENCH_ONLY:-}" = "uidcast" ] || labels="$labels node-ws"
[ -n "${BENCH_UWS:-}" ] && labels="$labels uws"
labels="$labels floor" # bench/route_floor.c, on route-1 only

# Every workload, each server in turn before the next workload (so drifts in the machine's
# speed hit all servers alike); none with BENCH_ONLY=cluster.
workloads() {
    [ "${BENCH_ONLY:-}" = cluster ] && return
    echo "hold --conns $HOLD --procs 2"
    echo "hold --conns 10000 --procs 2 --name hold-10k"
    echo "route --conns 1000 --inflight 8 --duration $DURATION"
    # One message at a time per client: what most chats look like; latency matters here.
    echo "route --conns 1000 --inflight 1 --duration $DURATION --name route-1"
    # A sender waits for each broadcast to reach all 10,000 before sending one more than its
    # window: with 4 in flight nearly every delivery is its own write; wider windows let a
    # server that batches its writes (uidcast flushes once per loop iteration) do so.
    echo "broadcast --conns 10000 --inflight 4 --duration $DURATION"
    echo "broadcast --conns 10000 --inflight 16 --duration $DURATION --name broadcast-16"
    echo "broadcast --conns 10000 --inflight 64 --duration $DURATION --name broadcast-burst"
    echo "push --conns 1000 --push-conns 8 --inflight 32 --duration $DURATION"
    # Kept messages (uidcast.v1 clients; the default script keeps their uid:message sends, and
    # pushes carry &keep=60): what keeping costs, next to the same workloads without it.
    echo "route --conns 1000 --inflight 8 --duration $DURATION --keep --name route-kept"
    echo "push --conns 1000 --push-conns 8 --inflight 32 --duration $DURATION --keep --name push-kept"
}

echo "uidcast bench: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); servers on core 0, load on core 1"
for round in $(seq "$ROUNDS"); do
    [ "$ROUNDS" -gt 1 ] && echo "-- round $round of $ROUNDS"
    while read -r w; do
        for l in $labels; do
            case "$l:$w" in
                uws:push*|uws:*--keep*|node-ws:*--keep*) continue ;; # no push API, no kept messages
                floor:*route-1) ;;
                floor:*) continue ;; # a floor for one message at a time, and nothing else
            esac
            measure "$l" $w
        done
    done < <(workloads)
done

# CPU seconds a process has used so far (user + system), from /proc.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }

measure_cluster() { # workload [loadgen args]; SHARDS redis-servers (default 1)
    workload=$1; shift
    shards=${SHARDS:-1}
    redis_pids="" urls=""
    for i in $(seq "$shards"); do
        rport=$((PORT + 10 + i))
        taskset -c 0 redis-server --port $rport --bind 127.0.0.1 --save '' --appendonly no \
            --loglevel warning >>build/bench-server.log 2>&1 &
        redis_pids="$redis_pids $!"
        urls="$urls${urls:+ }redis://127.0.0.1:$rport"
        wait_port $rport || { kill $redis_pids; return; }
    done
    pids=""
    for n in 0 1; do
        taskset -c 0 build/uidcast --listen 127.0.0.1:$((PORT + 2 * n)) --push 127.0.0.1:$((PUSH_PORT + 2 * n)) \
            --redis "$urls" --log-level warn scripts/default.lua 2>>build/bench-server.log &
        pids="$pids${pids:+,}$!"
        wait_port $((PORT + 2 * n))
    done
    sleep 0.3 # both nodes subscribed
    all_pids="$pids$(echo $redis_pids | tr ' ' ',' | sed 's/^/,/')"
    out=$(taskset -c 1 build/loadgen "$workload" --port $PORT,$((PORT + 2)) --push-port $PUSH_PORT \
          --server-pid "$all_pids" --label uidcast "$@" 2>&1)
    record "$out"
    # Each Redis's share: the busiest one is the cluster's ceiling, which shards divide.
    name=$(echo "$out" | sed -n 's/.*"workload":"\([^"]*\)".*/\1/p' | tail -n 1)
    cpus=""
    for p in $redis_pids; do cpus="$cpus${cpus:+,}$(cpu_s "$p")"; done
    echo "{\"workload\":\"redis-cpu\",\"of\":\"$name\",\"shards\":$shards,\"redis_cpu_s\":[$cpus]}" >> "$RESULTS"
    kill -TERM ${pids//,/ } 2>/dev/null
    wait ${pids//,/ } 2>/dev/null
    kill -TERM $redis_pids; wait $redis_pids 2>/dev/null
    sleep 0.5
}

# The kernel's share: no server can deliver more than (messages per write) / (cost per write).
record "$(build/write_floor)"

if [ "${BENCH_CLUSTER:-1}" = 1 ] && command -v redis-server >/dev/null; then
    echo "cluster: two uidcast nodes and redis-server on core 0, load on core 1"
    measure_cluster route --conns 1000 --inflight 8 --duration "$DURATION" --name cluster-route
    measure_cluster route --conns 1000 --inflight 8 --duration "$DURATION" --keep --name cluster-route-kept
    measure_cluster hold --conns 10000 --name cluster-login
    [ "${BENCH_ONLY:-}" = cluster ] || measure uidcast hold --conns 10000 --name single-login
    echo "cluster on 2 and 4 Redis shards (all on core 0; cluster-route is the one-shard run)"
    for shards in 2 4; do
        SHARDS=$shards measure_cluster route --conns 1000 --inflight 8 --duration "$DURATION" \
            --name "cluster-shards-$shards"
    done
fi

/usr/bin/python3 - "$RESULTS" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = {}
for r in rows:
    runs.setdefault((r.get("label"), r["workload"]), []).append(r)
labels = []
for r in rows:
    if r.get("label") and r["label"] not in labels:
        labels.append(r["label"])
def key(w): return "bytes_per_conn" if w.startswith("hold") else "per_server_cpu_s"
def med(l, w, k=None):
    rs = runs.get((l, w))
    if not rs: return None
    return statistics.median(r[k or key(w)] for r in rs)
def cell(l, w):
    rs = runs.get((l, w))
    if not rs: return "-"
    v = [r[key(w)] for r in rs]
    return "%.0f" % statistics.median(v) + ("" if len(v) == 1 else " (%.0f..%.0f)" % (min(v), max(v)))
by = {k: v[-1] for k, v in runs.items()}
print()
print("medians over the rounds (min..max); bytes per idle connection, else per server CPU-second")
print("%-16s" % "workload" + "".join("%24s" % l for l in labels) + "   uidcast vs " + ", ".join(l for l in labels if l != "uidcast"))
WORKLOADS = ["hold", "hold-10k", "route", "route-1", "broadcast", "broadcast-16", "broadcast-burst",
             "push", "route-kept", "push-kept"]
def better(mine, theirs, w): # how many times better uidcast is: fewer bytes, or more per CPU-s
    return theirs / mine if w.startswith("hold") else mine / theirs
for w in WORKLOADS:
    if not any(runs.get((l, w)) for l in labels): continue
    line = "%-16s" % w + "".join("%24s" % cell(l, w) for l in labels)
    u = med("uidcast", w)
    ratios = []
    for l in labels:
        o = med(l, w)
        if l == "uidcast" or not u or not o: continue
        ratios.append("%.2fx" % better(u, o, w))
    print(line + "   " + " ".join(ratios))
print("(ratios: how many times better uidcast is; above 1 it leads)")
# The same ratio taken round by round: servers measured one after the other share the drifts of
# the machine, so the spread of these is the noise of the comparison itself.
def paired(l, w):
    mine = {r["round"]: r[key(w)] for r in runs.get(("uidcast", w), []) if "round" in r}
    theirs = {r["round"]: r[key(w)] for r in runs.get((l, w), []) if "round" in r}
    both = sorted(set(mine) & set(theirs))
    return [better(mine[i], theirs[i], w) for i in both if mine[i] and theirs[i]]
pairs = [(w, l, paired(l, w)) for w in WORKLOADS for l in labels if l not in ("uidcast", "floor")]
pairs = [p for p in pairs if len(p[2]) > 1]
if pairs:
    print()
    print("uidcast vs each, round by round (measured one after the other; above 1 uidcast leads):")
    for w, l, rs in pairs:
        print("%-16s %-8s %s   median %.2fx, ahead in %d of %d" % (
            w, l, " ".join("%.2f" % r for r in rs), statistics.median(rs), sum(r > 1 for r in rs),
            len(rs)))
for w in ["route", "route-1", "broadcast", "broadcast-16", "broadcast-burst", "push"]:
    if not any(runs.get((l, w)) for l in labels): continue
    print("%-16s %-22s" % (w, "p50 / p99 ms") + "".join(
        "%18s" % ("-" if med(l, w) is None else "%.2f / %.2f" % (med(l, w, "p50_ms"), med(l, w, "p99_ms")))
        for l in labels))
# Where a server's time per message goes: user mode (its own code) and the kernel (system calls,
# TCP over loopback). When the kernel's part dominates, fewer instructions cannot show.
def us(l, w, kernel):
    rs = runs.get((l, w))
    if not rs or "server_user_share" not in rs[0]: return None
    share = lambda r: r["server_cpu_share"] - r["server_user_share"] if kernel else r["server_user_share"]
    return statistics.median(1e6 * share(r) / r["per_s"] for r in rs if r["per_s"])
for w in ["route", "route-1"]:
    if not any(runs.get((l, w)) for l in labels): continue
    print("%-16s %-22s" % (w, "user / kernel us/msg") + "".join(
        "%18s" % ("-" if us(l, w, False) is None
                  else "%.2f / %.2f" % (us(l, w, False), us(l, w, True)))
        for l in labels))
if med("floor", "route-1"):
    f = med("floor", "route-1")
    print()
    print("route floor: %.0f msgs per CPU-s from bench/route_floor.c (one recv and one send per message," % f)
    print("  nothing else); of that, " + ", ".join(
        "%s %.0f%%" % (l, 100 * med(l, "route-1") / f) for l in labels if l != "floor" and med(l, "route-1")))
u = lambda w: by.get(("uidcast", w))
floor = [r for r in rows if r.get("workload") == "write-floor"]
if floor and by.get(("node-ws", "broadcast")):
    us = floor[0]["us_per_writev"]
    node = by[("node-ws", "broadcast")]["per_server_cpu_s"]
    print()
    print("kernel floor: %.2f us per loopback writev; with 4 broadcasts in flight a write carries at most" % us)
    print("  4 frames, so no server can pass %.0f deliveries per CPU-s there (%.1fx this run's Node)" % (
        4e6 / us, 4e6 / us / node))
if u("cluster-route") and u("route"):
    print()
    print("cluster (2 nodes + redis on one core; per CPU-s of all three):")
    print("  route across nodes   %8.0f msgs per CPU-s (single node %.0f: %.2fx), p99 %.1f ms (single %.1f ms), lost %d" % (
        u("cluster-route")["per_server_cpu_s"], u("route")["per_server_cpu_s"],
        u("cluster-route")["per_server_cpu_s"] / u("route")["per_server_cpu_s"],
        u("cluster-route")["p99_ms"], u("route")["p99_ms"], u("cluster-route").get("lost", 0)))
if u("cluster-route-kept") and u("cluster-route"):
    print("  kept route           %8.0f msgs per CPU-s through Redis Streams (not kept: %.0f), p99 %.1f ms, lost %d" % (
        u("cluster-route-kept")["per_server_cpu_s"], u("cluster-route")["per_server_cpu_s"],
        u("cluster-route-kept")["p99_ms"], u("cluster-route-kept").get("lost", 0)))
shard_name = lambda n: "cluster-route" if n == 1 else "cluster-shards-%d" % n
shard_rows = [(n, u(shard_name(n))) for n in (1, 2, 4) if u(shard_name(n))]
if shard_rows:
    redis_cpu = {r["of"]: r["redis_cpu_s"] for r in rows if r.get("workload") == "redis-cpu"}
    print("  shards (route across nodes; all processes on core 0, so the total cannot grow here):")
    for n, r in shard_rows:
        cpus = redis_cpu.get(shard_name(n), [])
        busiest = max(cpus) if cpus else 0
        print("    %d shard%s  %8.0f msgs per CPU-s of all, lost %d; Redis CPU s %s; %8.0f msgs per CPU-s"
              " of the busiest Redis (the ceiling shards raise)" % (
                  n, " " if n == 1 else "s", r["per_server_cpu_s"], r.get("lost", 0),
                  "/".join("%.2f" % c for c in cpus), r["received"] / busiest if busiest else 0))
if u("cluster-login") and u("single-login"):
    print("  connect+login        %8.0f /s over 2 nodes with presence writes (single node %.0f /s)" % (
        u("cluster-login")["connect_login_per_s"], u("single-login")["connect_login_per_s"]))
PY
