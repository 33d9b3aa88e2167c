#!/bin/sh
# spec/run-all.sh -- runs every suite and ends with one line "N passed, M failed" over all of them:
#   ctests    the C unit tests of core/, each under valgrind (a leak or invalid access fails it)
#   busted    the busted specs: unit specs of scripts, integration specs against build/uidcast,
#             interop with python3-websockets, the cluster suites again on three Redis shards;
#             and node --test of the client, www/uidcast.js
#   browser   www/uidcast.js, the demo page and the README's console snippet in headless chromium
#             against the real server (screenshots in build/browser-*.png)
#   memcheck  the integration specs again with the server under valgrind: each spec's server
#             must stop with exit 0, which valgrind turns into 99 on any error or leak
#   sanitize  the integration specs with build/asan/uidcast (ASan+UBSan)
#   fuzz      each libFuzzer target for FUZZ_SECONDS (a crash fails it)
#   lint      clang-format, luacheck, cppcheck and the layering rule, one check each
# `make test` runs them all; `--only NAME` runs one (make memcheck, sanitize, fuzz, lint);
# `--only check` runs the C unit tests and the unit specs (make check, the edit loop).
set -u
cd "$(dirname "$0")/.."
BUSTED=${BUSTED:-"lua5.4 /usr/bin/busted"}
CTESTS=${CTESTS:-$(ls build/tests/test_* 2>/dev/null)}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
ONLY=""
[ "${1:-}" = "--only" ] && ONLY=$2
passed=0
failed=0
VALGRIND="valgrind -q --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=99"

want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ] || { [ "$ONLY" = check ] && [ "$1" = ctests ]; }; }

count() { # passed failed
    passed=$((passed + $1)); failed=$((failed + $2))
}

if want ctests; then
    echo "== C unit tests (under valgrind)"
    for t in $CTESTS; do
        out=$($VALGRIND "$t" 2>&1); rc=$?
        echo "$out"
        line=$(echo "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
        p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
        f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
        count "${p:-0}" "${f:-0}"
        if [ $rc -ne 0 ] && [ "${f:-0}" = 0 ]; then
            echo "$t: exit $rc (a valgrind error, or it crashed)"; count 0 1
        fi
    done
fi

run_busted() { # label, then busted arguments
    label=$1; shift
    echo "== $label"
    log=$(mktemp)
    UIDCAST_PID_FILE=$(mktemp)
    export UIDCAST_PID_FILE
    $BUSTED "$@" 2>&1 | tee "$log"
    summary=$(grep -a -E '[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors?' "$log" | tail -n 1)
    if [ -z "$summary" ]; then
        echo "$label: busted printed no summary"; count 0 1
    else
        s=$(echo "$summary" | sed -E 's/^([0-9]+) success.*/\1/')
        f=$(echo "$summary" | sed -E 's/.* ([0-9]+) failures? .*/\1/')
        e=$(echo "$summary" | sed -E 's/.* ([0-9]+) errors?.*/\1/')
        count "$s" $((f + e))
    fi
    rm -f "$log"
    # A spec that failed before stopping its server leaves it running: end those, by the pids
    # the specs recorded (never by name: that could hit someone else's uidcast or redis).
    # A pid is only ended while it is still one of ours (pids get reused); TERM first, so a
    # --workers supervisor takes its workers with it.
    ours() { grep -qa -e uidcast -e redis-server -e redis-sentinel "/proc/$1/cmdline" 2>/dev/null; }
    left=""
    while read -r pid; do
        ours "$pid" && kill -TERM "$pid" 2>/dev/null && left="$left $pid"
    done < "$UIDCAST_PID_FILE"
    [ -n "$left" ] && sleep 1
    for pid in $left; do ours "$pid" && kill -KILL "$pid" 2>/dev/null; done
    rm -f "$UIDCAST_PID_FILE"
}

# node --test prints TAP: "# pass N" and "# fail M" at the end.
run_node() { # label, then the test files' directory
    echo "== $1"
    # Node 20 has the browser's WebSocket behind a flag (Node 22 by default).
    flag=$(node --experimental-websocket -e 0 2>/dev/null && echo --experimental-websocket)
    out=$(node $flag --test "$2" 2>&1); rc=$?
    echo "$out" | grep -E '^(not ok|# (pass|fail))' ; echo "$out" | grep -A12 '^not ok' | head -40
    p=$(echo "$out" | sed -n 's/^# pass \([0-9]*\)$/\1/p' | tail -n 1)
    f=$(echo "$out" | sed -n 's/^# fail \([0-9]*\)$/\1/p' | tail -n 1)
    count "${p:-0}" "${f:-0}"
    if [ -z "$p" ] || { [ $rc -ne 0 ] && [ "${f:-0}" = 0 ]; }; then
        echo "$1: node --test exit $rc without a count"; count 0 1
    fi
}

want busted && run_busted "busted: unit and integration specs" spec/unit spec/integration
# The cluster suites again with every plain Redis of theirs made three shards.
CLUSTER_SPECS="spec/integration/cluster_spec.lua spec/integration/cluster_mailbox_spec.lua
               spec/integration/presence_events_spec.lua spec/integration/roster_spec.lua"
# shellcheck disable=SC2086
want busted && UIDCAST_SPEC_SHARDS=3 run_busted "busted: the cluster suites on three Redis shards" \
    $CLUSTER_SPECS
{ want busted || [ "$ONLY" = check ]; } && run_node "node: www/uidcast.js" www/test/
want browser && run_node "browser: uidcast.js and the demo page in chromium (playwright-core)" spec/browser/
[ "$ONLY" = check ] && run_busted "busted: unit specs" spec/unit

lint_one() { # label, then the command
    label=$1; shift
    if out=$("$@" 2>&1); then
        echo "lint $label: clean"; count 1 0
    else
        echo "$out" | tail -n 40; echo "lint $label: FAILED"; count 0 1
    fi
}

if want lint; then
    echo "== lint"
    FORMAT_SRC=${FORMAT_SRC:-$(ls core/*.c core/*.h lua/*.c lua/*.h)}
    # shellcheck disable=SC2086
    lint_one clang-format clang-format --dry-run --Werror $FORMAT_SRC
    lint_one luacheck luacheck --no-color -q scripts spec bench
    lint_one cppcheck cppcheck -q --std=c11 --enable=warning,portability,performance \
        --inline-suppr --error-exitcode=1 --include=tools/cppcheck.h -I core -I lua \
        -I /usr/include/lua5.4 -D_GNU_SOURCE core lua spec/harness
    # shellcheck disable=SC2086
    lint_one callgraph sh tools/callgraph.sh tools/known-loops build/obj/core/*.o build/obj/lua/*.o
fi

want memcheck && UIDCAST_WRAPPER="$VALGRIND" run_busted \
    "memcheck: integration specs with uidcast under valgrind" --exclude-tags=no_memcheck spec/integration

want sanitize && UIDCAST_BIN=build/asan/uidcast \
    ASAN_OPTIONS=detect_leaks=1:exitcode=98 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    run_busted "sanitize: integration specs with uidcast built with ASan+UBSan" \
    --exclude-tags=no_memcheck spec/integration

if want fuzz; then
    for t in http_head push_request ws_frames split_reads; do
        echo "== fuzz: $t for ${FUZZ_SECONDS}s"
        mkdir -p "build/fuzz/corpus-$t"
        if ASAN_OPTIONS=detect_leaks=1 "build/fuzz/$t" -max_total_time="$FUZZ_SECONDS" \
            -print_final_stats=1 -artifact_prefix="build/fuzz/crash-$t-" \
            "build/fuzz/corpus-$t" "fuzz/corpus/$t" > "build/fuzz/$t.log" 2>&1; then
            tail -n 3 "build/fuzz/$t.log"; echo "fuzz $t: no crash"; count 1 0
        else
            tail -n 60 "build/fuzz/$t.log"; echo "fuzz $t: CRASH (see build/fuzz/crash-$t-*)"; count 0 1
        fi
    done
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
