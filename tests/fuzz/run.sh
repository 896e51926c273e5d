#!/usr/bin/env bash
# Runs each libFuzzer harness (build/fuzz/fuzz_NAME, built by `make fuzz`) for FUZZ_SECONDS
# (default 60) on its committed seeds, one after the other, and prints one line per
# harness: runs, coverage (cov: edges, ft: features) and corpus size. New inputs go to
# build/fuzz/corpus/NAME (the committed seeds are only read); a crash leaves
# build/fuzz/NAME-crash-* and makes the script fail.
#   tests/fuzz/run.sh [NAME]
set -uo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-60}
names=()
if [[ -n ${1:-} ]]; then
    names=("$1")
else
    for f in tests/fuzz/fuzz_*.c; do n=${f#tests/fuzz/fuzz_}; names+=("${n%.c}"); done
fi
failed=()
for name in "${names[@]}"; do
    mkdir -p "build/fuzz/corpus/$name"
    log=build/fuzz/$name.log
    build/fuzz/fuzz_"$name" -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="build/fuzz/$name-" -rss_limit_mb=4096 -timeout=25 \
        "build/fuzz/corpus/$name" "tests/fuzz/corpus/$name" >"$log" 2>&1
    rc=$?
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
    cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+')
    ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+')
    corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' <<<"$last" | cut -d' ' -f2)
    printf '%-16s %s  execs %-10s cov %-6s ft %-6s corpus %s\n' "$name" \
        "$([[ $rc -eq 0 ]] && echo ok || echo FAILED)" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
    if [[ $rc -ne 0 ]]; then
        failed+=("$name")
        grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$log" | head -5 | sed 's/^/    /'
    fi
done
[[ ${#failed[@]} -eq 0 ]] || { echo "failed: ${failed[*]} (logs in build/fuzz/NAME.log)"; exit 1; }
