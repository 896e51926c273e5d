#!/usr/bin/env bash
# Claim order (priority, then creation), one item per machine at a time unless the
# machine's concurrency says more, workers as the global bound, and --after dependencies.
. "$(dirname "$0")/../lib.sh"

write_config 'workers = { count = 4; };' 'lease = { poll_ms = 200; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops solo
ferry create machine Ops local duo --vault '{"connection":"local","concurrency":2}' >/dev/null
for m in a b c d e f; do ferry create machine Ops local $m --vault '{"connection":"local"}' >/dev/null; done
log=$T_DIR/runs.log
q() { # q MACHINE LABEL PRIORITY [SLEEP_MS] [EXTRA ARGS...]
    local m=$1 l=$2 p=$3 s=${4:-0}; shift 4 2>/dev/null || shift $#
    ferry create queue-item Ops "$m" local --priority "$p" "$@" \
        --vault "{\"function\":\"fx_record\",\"file\":\"$log\",\"label\":\"$l\",\"sleep_ms\":$s}" --output json |
        jq -r '.data[0].taskId'
}

# Queue before the host starts, so the claim order alone decides.
q solo p3-first 3 50 >/dev/null
q solo p5 5 50 >/dev/null
q solo p1 1 50 >/dev/null
q solo p3-second 3 50 >/dev/null
q solo p2 2 50 >/dev/null
for i in 1 2 3 4; do q duo "duo$i" 3 600 >/dev/null; done
start_host
wait_for 20 lines_at_least "$log" 9
order=$(grep -E '^p' "$log" | awk '{print $1}' | paste -sd' ')
eq "one machine's items run by priority, then creation" "$order" "p1 p2 p3-first p3-second p5"
overlaps() { # overlaps PREFIX -> the most items of that prefix running at once
    grep -E "^$1" "$log" | awk '{print $3, 1; print $4, -1}' | sort -n -k1,1 -k2,2n |
        awk '{c+=$2; if (c>m) m=c} END {print m+0}'
}
eq "a machine runs one item at a time by default" "$(overlaps p)" 1
eq "concurrency 2 lets two run at once, never more" "$(overlaps duo)" 2

# The global bound: 6 machines, 4 workers, each item 800 ms.
: >"$log"
for m in a b c d e f; do q $m "w$m" 3 800 >/dev/null; done
wait_for 20 lines_at_least "$log" 6
eq "no more than workers.count attempts at once" "$(overlaps w)" 4

# --after: runs only after its dependency COMPLETED, even on another machine.
: >"$log"
first=$(q a dep-first 3 700)
second=$(q b dep-second 1 0 --after "$first")
wait_status "$second" COMPLETED 15
eq "--after waits for its dependency" "$(awk '{print $1}' "$log" | paste -sd' ')" "dep-first dep-second"
end_first=$(awk '$1=="dep-first"{print $4}' "$log"); start_second=$(awk '$1=="dep-second"{print $3}' "$log")
((start_second >= end_first)) && pass "the dependent started after the dependency ended" || fail "dependent started after dependency ended" "$(cat "$log")"

# A failed dependency cancels its dependents, with the reason.
bad=$(ferry create queue-item Ops c local --vault '{"function":"fx_sleep","seconds":5,"timeout":1}' --output json | jq -r '.data[0].taskId')
dep=$(q d never 3 0 --after "$bad")
wait_status "$dep" CANCELLED 15
eq "a dependent of a failed item is cancelled" "$(task_status "$dep")" CANCELLED
contains "with the dependency as the reason" "$(ferry list queue --task-id "$dep" --output json | jq -r '.data[0].lastFailureReason')" "$bad"

# The seed's restore order (down, pull, up) holds without sleeps: same machine, same
# priority, created in that order.
: >"$log"
for step in repo_down repo_pull repo_up; do q e "$step" 1 300 >/dev/null; done
wait_for 15 lines_at_least "$log" 3
eq "down, pull, up run in order without sleeps" "$(awk '{print $1}' "$log" | paste -sd' ')" "repo_down repo_pull repo_up"
eq "and never overlap" "$(overlaps repo_)" 1
stop_host
t_done
