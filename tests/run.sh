#!/usr/bin/env bash
# Runs every test file, each in its own process under a time limit, and prints one summary
# line: "N passed, N failed". Unit tests are cmocka binaries (TAP output); fuzz corpus
# replays (fuzz_NAME) print TAP too; end-to-end tests are bash scripts using tests/lib.sh
# (TAP output). A file that crashes, hangs or prints no
# result counts as a failure.
#   tests/run.sh [PATTERN]   only files whose path contains PATTERN
# FERRY_TEST_JOBS (default 2) files run at once; FERRY_TEST_JOBS=1 runs them one by one.
#
# PostgreSQL: when a selected test needs it, one throwaway server (scripts/pg.sh) serves the
# whole run: FERRY_TEST_PG_URL (a database for the store conformance suite) and
# FERRY_TEST_PG_ADMIN_URL (for tests that create databases of their own) are exported, and
# the server is stopped and removed at the end. Given FERRY_TEST_PG_URL and
# FERRY_TEST_PG_ADMIN_URL, that server is used instead. A server that cannot be started is
# a failure of its own, with the reason; the PostgreSQL tests then fail too, never pass.
# "NAME.sh@pg" entries run an end-to-end test again with FERRY_TEST_DRIVER=postgres.
set -uo pipefail
cd "$(dirname "$0")/.."
export BUILD=${BUILD:-build}
export FERRY_ROOT=$PWD
export CMOCKA_MESSAGE_OUTPUT=TAP
filter=${1:-}
limit=${FERRY_TEST_TIMEOUT:-300}
[[ ${SAN:-0} == 1 && -z ${FERRY_TEST_TIMEOUT:-} ]] && limit=600 # ASan runs slower

files=()
for f in "$BUILD"/tests/test_*; do [[ -x $f ]] && files+=("$f"); done
# Fuzz corpus replays (tests/fuzz/replay.c): every committed seed once, under ASan/UBSan.
for f in "$BUILD"/tests/fuzz_*; do [[ -x $f ]] && files+=("$f"); done
for f in tests/e2e/*.sh; do [[ -f $f ]] && files+=("$f"); done
# The CLI against PostgreSQL exactly as against SQLite: these run a second time on it.
pg_again="seed_queue cli_queue cli_bulk seal_store seal_upgrade status cli_wait history_prune
    host_machine_cache"
for f in $pg_again; do [[ -f tests/e2e/$f.sh ]] && files+=("tests/e2e/$f.sh@pg"); done

# Longest first (tests/durations.txt, from an earlier run): two slots finish together instead
# of a long file starting last and running alone. Unlisted files count as 20 s.
declare -A took=()
while read -r n secs; do [[ $n == \#* || -z $n ]] || took[$n]=$secs; done <tests/durations.txt
file_name() { local n; n=$(basename "${1%@pg}" .sh); [[ $1 == *@pg ]] && n=$n@pg; echo "$n"; }
mapfile -t files < <(for f in "${files[@]}"; do n=$(file_name "$f"); echo "${took[$n]:-20} $f"; done |
    sort -s -k1,1nr | cut -d' ' -f2-)

needs_pg() { [[ $1 == *test_store* || $1 == *e2e/pg_* || $1 == *@pg ]]; }
pg_dir= pg_error=
for f in "${files[@]}"; do
    [[ -n $filter && $f != *"$filter"* ]] && continue
    needs_pg "$f" || continue
    if [[ -n ${FERRY_TEST_PG_URL:-} && -n ${FERRY_TEST_PG_ADMIN_URL:-} ]]; then break; fi
    if out=$(scripts/pg.sh env 2>&1); then
        eval "$out"
        pg_dir=$FERRY_PG_DIR
        export FERRY_TEST_PG_URL FERRY_TEST_PG_ADMIN_URL
        trap 'scripts/pg.sh stop "$pg_dir"' EXIT
    else
        pg_error=$out
        unset FERRY_TEST_PG_URL FERRY_TEST_PG_ADMIN_URL
        export FERRY_TEST_PG_ERROR=$out
    fi
    break
done

passed=0 failed=0 failures=()
logdir=$BUILD/test-logs
mkdir -p "$logdir"
if [[ -n $pg_error ]]; then
    printf '%-32s %4d passed %3d failed\n' postgres-server 0 1
    echo "    not ok - no PostgreSQL server for the PostgreSQL tests: $pg_error" | head -5
    failed=$((failed + 1))
    failures+=(postgres-server)
fi
# run_file FILE NAME: runs one test file into its log and leaves "ok notok seconds" in
# NAME.result beside it.
run_file() {
    local f=$1 name=$2 log=$logdir/$2.log start rc ok notok
    start=$(date +%s)
    if [[ $f == *@pg ]]; then
        FERRY_TEST_DRIVER=postgres timeout -k 10 "$limit" bash "${f%@pg}" >"$log" 2>&1
    elif [[ $f == *.sh ]]; then
        timeout -k 10 "$limit" bash "$f" >"$log" 2>&1
    else
        timeout -k 10 "$limit" "$f" >"$log" 2>&1
    fi
    rc=$?
    ok=$(grep -cE '^ok [0-9]+' "$log")
    # cmocka reports a skipped test as "not ok N # SKIP": a skip, not a failure.
    notok=$(grep -E '^not ok [0-9]+' "$log" | grep -vc '# SKIP')
    if [[ $rc -ne 0 && $notok -eq 0 ]]; then
        # Crashed, timed out or failed outside a test case: that is a failure of its own.
        notok=1
        echo "not ok - $name exited with status $rc" >>"$log"
    fi
    if [[ $ok -eq 0 && $notok -eq 0 ]]; then
        notok=1
        echo "not ok - $name ran no test" >>"$log"
    fi
    echo "$ok $notok $(($(date +%s) - start))" >"$logdir/$name.result"
}

# report NAME: adds a finished file's result to the totals and prints its line.
report() {
    local name=$1 ok notok secs
    read -r ok notok secs <"$logdir/$name.result"
    rm -f "$logdir/$name.result"
    passed=$((passed + ok))
    failed=$((failed + notok))
    printf '%-32s %4d passed %3d failed  %3ds\n' "$name" "$ok" "$notok" "$secs"
    echo "$name $secs" >>"$logdir/durations.new"
    if [[ $notok -gt 0 ]]; then
        failures+=("$name")
        grep -E '^not ok|^#' "$logdir/$name.log" | head -40 | sed 's/^/    /'
    fi
}

# Files run FERRY_TEST_JOBS at a time (2 by default: this machine's cores; most files spend
# their time waiting on processes, servers and sleeps). Each file has its own scratch
# directory, ports and databases, so files do not share state. A line is printed as each
# file ends; the totals do not depend on the order.
jobs_max=${FERRY_TEST_JOBS:-2}
[[ $jobs_max =~ ^[1-9][0-9]*$ ]] || { echo "FERRY_TEST_JOBS must be a positive number" >&2; exit 2; }
declare -A running=() # pid -> name
rm -f "$logdir/durations.new"
reap_one() {
    local pid
    wait -n -p pid "${!running[@]}" 2>/dev/null
    report "${running[$pid]}"
    unset "running[$pid]"
}
for f in "${files[@]}"; do
    [[ -n $filter && $f != *"$filter"* ]] && continue
    name=$(file_name "$f")
    rm -f "$logdir/$name.result"
    while [[ ${#running[@]} -ge $jobs_max ]]; do reap_one; done
    run_file "$f" "$name" &
    running[$!]=$name
done
while [[ ${#running[@]} -gt 0 ]]; do reap_one; done
[[ -z $filter ]] && sort -k2,2nr "$logdir/durations.new" >"$logdir/durations.txt"
rm -f "$logdir/durations.new"
echo
[[ ${#failures[@]} -gt 0 ]] && echo "failed files: ${failures[*]} (logs in $logdir)"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
