#!/usr/bin/env bash
# The last step of `make bench`: lists every process still running that the bench started
# (ferry, postgres, node, restic, borg and the test servers, recognised by FERRY_BENCH_MARK
# in their environment, which tests/bench/lib.sh sets and every child inherits), kills them,
# and prints a FAIL line naming them. Prints "no process left behind" otherwise.
#   FERRY_BENCH_MARK=... tests/bench/leftovers.sh
set -uo pipefail
[[ -n ${FERRY_BENCH_MARK:-} ]] || { echo "leftovers.sh: FERRY_BENCH_MARK is not set" >&2; exit 2; }
found=()
for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [[ $pid == "$$" ]] && continue
    comm=$(cat "$p/comm" 2>/dev/null) || continue
    case $comm in
    ferry* | postgres* | postmaster | node | npm* | restic | borg* | moto* | python3* | sshd | lighttpd | sqlite3 | bench_queue | timeout) ;;
    *) continue ;;
    esac
    env=$({ tr '\0' '\n' <"$p/environ"; } 2>/dev/null)
    [[ $'\n'$env$'\n' == *$'\n'"FERRY_BENCH_MARK=$FERRY_BENCH_MARK"$'\n'* ]] || continue
    found+=("$pid")
    echo "leftover: pid $pid $({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | cut -c1-120)"
done
[[ ${#found[@]} -eq 0 ]] && { echo "no process left behind"; exit 0; }
kill -TERM "${found[@]}" 2>/dev/null
sleep 2
kill -KILL "${found[@]}" 2>/dev/null
echo "FAIL: the bench left ${#found[@]} process(es) running (killed now): ${found[*]}"
exit 1
