#!/usr/bin/env bash
# Runs every test file, each in its own process under a time limit, and prints one summary
# line: "N passed, N failed". Unit tests are cmocka binaries (TAP output); end-to-end tests
# are bash scripts using tests/lib.sh (TAP output). A file that crashes, hangs or prints no
# result counts as a failure.
#   tests/run.sh [PATTERN]   only files whose path contains PATTERN
set -uo pipefail
cd "$(dirname "$0")/.."
export BUILD=${BUILD:-build}
export FERRY_ROOT=$PWD
export CMOCKA_MESSAGE_OUTPUT=TAP
filter=${1:-}
limit=${FERRY_TEST_TIMEOUT:-300}

files=()
for f in "$BUILD"/tests/test_*; do [[ -x $f ]] && files+=("$f"); done
for f in tests/e2e/*.sh; do [[ -f $f ]] && files+=("$f"); done

passed=0 failed=0 failures=()
logdir=$BUILD/test-logs
mkdir -p "$logdir"
for f in "${files[@]}"; do
    [[ -n $filter && $f != *"$filter"* ]] && continue
    name=$(basename "$f" .sh)
    log=$logdir/$name.log
    start=$(date +%s)
    if [[ $f == *.sh ]]; then
        timeout -k 10 "$limit" bash "$f" >"$log" 2>&1
    else
        timeout -k 10 "$limit" "$f" >"$log" 2>&1
    fi
    rc=$?
    ok=$(grep -cE '^ok [0-9]+' "$log")
    notok=$(grep -cE '^not ok [0-9]+' "$log")
    if [[ $rc -ne 0 && $notok -eq 0 ]]; then
        # Crashed, timed out or failed outside a test case: that is a failure of its own.
        notok=1
        echo "not ok - $name exited with status $rc" >>"$log"
    fi
    if [[ $ok -eq 0 && $notok -eq 0 ]]; then
        notok=1
        echo "not ok - $name ran no test" >>"$log"
    fi
    passed=$((passed + ok))
    failed=$((failed + notok))
    printf '%-32s %4d passed %3d failed  %3ds\n' "$name" "$ok" "$notok" $(($(date +%s) - start))
    if [[ $notok -gt 0 ]]; then
        failures+=("$name")
        grep -E '^not ok|^#' "$log" | head -40 | sed 's/^/    /'
    fi
done
echo
[[ ${#failures[@]} -gt 0 ]] && echo "failed files: ${failures[*]} (logs in $logdir)"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
