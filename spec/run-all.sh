#!/bin/sh
# spec/run-all.sh -- runs every suite and ends with one line "N passed, M failed" over all of them:
#   1. the C unit tests of core/ (each under valgrind: a leak or invalid access fails it),
#   2. the busted specs (unit specs of scripts, integration specs against build/uidcast,
#      interop with python3-websockets),
#   3. the integration specs again with the server under valgrind (memcheck): every spec's
#      server must stop with exit 0, which valgrind turns into 99 on any error or leak.
# Called by `make test`; BUSTED and CTESTS come from the Makefile.
set -u
cd "$(dirname "$0")/.."
BUSTED=${BUSTED:-"lua5.4 /usr/bin/busted"}
passed=0
failed=0
status=0
VALGRIND="valgrind -q --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=99"

add_counts() { # "N passed, M failed" line on stdin
    line=$(grep -E '^[a-z_]*:? ?[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    p=$(echo "$line" | sed -E 's/.*[^0-9]?([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    echo "${p:-0} ${f:-1}"
}

echo "== C unit tests (under valgrind)"
for t in ${CTESTS}; do
    out=$($VALGRIND "$t" 2>&1); rc=$?
    echo "$out"
    set -- $(echo "$out" | add_counts)
    passed=$((passed + $1)); failed=$((failed + $2))
    if [ $rc -ne 0 ] && [ "$2" = 0 ]; then failed=$((failed + 1)); echo "$t: exit $rc (valgrind?)"; fi
    [ $rc -ne 0 ] && status=1
done

run_busted() { # label, then busted arguments
    label=$1; shift
    echo "== $label"
    log=$(mktemp)
    $BUSTED "$@" 2>&1 | tee "$log"
    summary=$(grep -a -E '[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors?' "$log" | tail -n 1)
    if [ -z "$summary" ]; then
        echo "$label: busted printed no summary"; failed=$((failed + 1)); status=1
    else
        s=$(echo "$summary" | sed -E 's/^([0-9]+) success.*/\1/')
        f=$(echo "$summary" | sed -E 's/.* ([0-9]+) failures? .*/\1/')
        e=$(echo "$summary" | sed -E 's/.* ([0-9]+) errors?.*/\1/')
        passed=$((passed + s)); failed=$((failed + f + e))
        [ $((f + e)) -ne 0 ] && status=1
    fi
    rm -f "$log"
}

run_busted "busted: unit and integration specs" spec/unit spec/integration
if [ "${UIDCAST_SKIP_MEMCHECK:-}" = "" ]; then
    UIDCAST_WRAPPER="$VALGRIND" run_busted "memcheck: integration specs with uidcast under valgrind" \
        --exclude-tags=no_memcheck spec/integration
fi

echo "$passed passed, $failed failed"
exit $status
