#!/usr/bin/env bash
# Cancel, crash safety (kill -9 and restart; two hosts on one store), graceful shutdown,
# and serve --drain.
. "$(dirname "$0")/../lib.sh"

write_config 'workers = { count = 6; };' 'timeouts = { grace = 2; };' 'lease = { seconds = 3; poll_ms = 200; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops m0
for i in $(seq 1 19); do ferry create machine Ops local m$i --vault '{"connection":"local"}' >/dev/null; done
q() { ferry create queue-item Ops "$1" local --vault "$2" --output json | jq -r '.data[0].taskId'; }
row() { ferry list queue --task-id "$1" --output json | jq -r ".data[0]$2"; }

# --- cancel ---------------------------------------------------------------------------------
p=$(q m1 '{"function":"hello"}')
ferry queue cancel "$p" >/dev/null
eq "PENDING -> CANCELLED at once" "$(task_status "$p")" CANCELLED
start_host
s=$(q m2 '{"function":"fx_sleep","seconds":30,"timeout":60}')
wait_status "$s" PROCESSING 10
t0=$(date +%s%N)
out=$(ferry queue cancel "$s" --output json)
eq "PROCESSING -> CANCELLING" "$(jq -r '.data[0].status' <<<"$out")" CANCELLING
wait_status "$s" CANCELLED 10
ms=$((($(date +%s%N) - t0) / 1000000))
((ms <= 2000)) && pass "CANCELLED within the grace period (${ms} ms)" || fail "CANCELLED within the grace period" "took ${ms} ms"
contains "the plugin saw cancelled()" "$(ferry queue trace "$s" --output json | jq -r '.data.timeline[].details')" "saw cancelled()"
c=$(q m3 '{"function":"hello"}'); wait_status "$c" COMPLETED 10
out=$(ferry queue cancel "$c" 2>&1); rc=$?
eq "a COMPLETED item cannot be cancelled (exit 1)" "$rc" 1
contains "and the error says why" "$out" "COMPLETED"

# --- crash: kill -9 while jobs run, restart ------------------------------------------------
idem_log=$T_DIR/idem.log
plain=(); idem=()
for i in 4 5 6; do plain+=("$(q m$i '{"function":"fx_sleep","seconds":20,"timeout":60}')"); done
for i in 7 8; do idem+=("$(q m$i "{\"function\":\"fx_record_idem\",\"file\":\"$idem_log\",\"label\":\"m$i\",\"sleep_ms\":3000}")"); done
pend=$(q m4 '{"function":"hello"}')  # waits behind m4's running item
for t in "${plain[@]}" "${idem[@]}"; do wait_status "$t" PROCESSING 10; done
workers=$(pgrep -P "$HOST_PID" | paste -sd' ')
kill -9 "$HOST_PID"; wait "$HOST_PID" 2>/dev/null; HOST_PID=
sleep 0.5
eq "after kill -9 the items are still PROCESSING (leases not yet expired)" "$(task_status "${plain[0]}")" PROCESSING
alive=0
# A dead worker may stay a zombie: PID 1 of some machines does not reap orphans.
for w in $workers; do
    state=$(awk '/^State:/ {print $2}' "/proc/$w/status" 2>/dev/null)
    [[ -n $state && $state != Z ]] && alive=$((alive + 1))
done
[[ -n $workers ]] && eq "workers died with their host ($(wc -w <<<"$workers") checked)" "$alive" 0 ||
    fail "the host had worker processes to check"
: >"$idem_log"
start_host "$T_DIR/host2.log"
for t in "${plain[@]}"; do wait_status "$t" FAILED 15; done
for t in "${plain[@]}"; do
    contains "non-idempotent item FAILED: host lost while running" "$(row "$t" .lastFailureReason)" "host lost while running"
done
for t in "${idem[@]}"; do wait_status "$t" COMPLETED 40; done
for t in "${idem[@]}"; do eq "idempotent item retried and COMPLETED" "$(task_status "$t")" COMPLETED; done
wait_status "$pend" COMPLETED 15
eq "the PENDING item behind them still ran" "$(task_status "$pend")" COMPLETED
stuck=$(ferry list queue --status ASSIGNED,PROCESSING,CANCELLING --output json | jq '.data | length')
eq "nothing is left ASSIGNED or PROCESSING" "$stuck" 0
stop_host

# --- two hosts on one store never run an item twice -----------------------------------------
log=$T_DIR/twice.log
ids=()
for i in $(seq 1 200); do
    m=m$((i % 20))
    ferry create queue-item Ops $m local --vault "{\"function\":\"fx_record\",\"file\":\"$log\",\"label\":\"item$i\"}" >/dev/null
done
"$FERRY_BIN" serve >>"$T_DIR/hostA.log" 2>&1 & A=$!
"$FERRY_BIN" serve >>"$T_DIR/hostB.log" 2>&1 & B=$!
T_EXTRA_PIDS="$A $B"
wait_for 60 lines_at_least "$log" 200
sleep 1
kill -TERM $A $B; wait $A $B 2>/dev/null
eq "two hosts ran 200 items: 200 runs" "$(wc -l <"$log")" 200
eq "each exactly once" "$(awk '{print $1}' "$log" | sort | uniq -d | wc -l)" 0
eq "both hosts took part" "$(awk '{print $2}' "$log" | sort -u | wc -l | awk '{print ($1 >= 2) ? "yes" : "no"}')" yes

# --- graceful shutdown ------------------------------------------------------------------------
start_host "$T_DIR/host3.log"
short=$(q m9 '{"function":"fx_sleep","seconds":1,"timeout":30}')
long=$(q m10 '{"function":"fx_sleep","seconds":60,"timeout":120}')
wait_status "$short" PROCESSING 10; wait_status "$long" PROCESSING 10
later=$(q m11 '{"function":"hello","description":"queued just before shutdown"}')
kill -TERM "$HOST_PID"
sleep 0.2
q m12 '{"function":"hello"}' >/dev/null  # arrives while stopping: must not be claimed
t0=$SECONDS
wait "$HOST_PID"; rc=$?; HOST_PID=
eq "SIGTERM: the host exits 0" "$rc" 0
(( SECONDS - t0 <= 6 )) && pass "within the grace period" || fail "within the grace period" "$((SECONDS - t0)) s"
eq "a short attempt finishes during the grace period" "$(task_status "$short")" COMPLETED
eq "a long one is interrupted and returned to PENDING" "$(task_status "$long")" PENDING
contains "the trace says so" "$(ferry queue trace "$long" --output json | jq -r '.data.timeline[].details')" "interrupted by host shutdown"
contains "shutdown is in the host log" "$(cat "$T_DIR/host3.log")" "no more claims"

# --- serve --drain ------------------------------------------------------------------------------
ferry queue cancel "$long" >/dev/null
timeout 60 "$FERRY_BIN" serve --drain >>"$T_DIR/drain.log" 2>&1; rc=$?
eq "serve --drain exits 0 once the bridge is empty" "$rc" 0
left=$(ferry list queue --status PENDING,ASSIGNED,PROCESSING --output json | jq '.data | length')
eq "nothing left to run" "$left" 0
eq "what was queued before the shutdown ran" "$(task_status "$later")" COMPLETED
t_done
