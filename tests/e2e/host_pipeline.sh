#!/usr/bin/env bash
# workers.pipeline: off by default, so an item waits in the store while every worker is busy
# (any host of the bridge may take it); with N > 0 a host claims items to queue behind its
# running ones, and they still run one at a time per worker, in claim order, each once.
. "$(dirname "$0")/../lib.sh"

write_config 'workers = { count = 1; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
log=$T_DIR/runs.log
q() { # q MACHINE LABEL SLEEP_MS
    ferry create queue-item Ops "$1" local \
        --vault "{\"function\":\"fx_record\",\"file\":\"$log\",\"label\":\"$2\",\"sleep_ms\":$3}" \
        --output json | jq -r '.data[0].taskId'
}
# round PIPELINE: one worker, a 1.5 s item, then two short ones on other machines; sets SEEN
# to the short ones' statuses while the long one runs.
round() {
    write_config "workers = { count = 1; prefork = 1; pipeline = $1; };" 'lease = { poll_ms = 100; };'
    : >"$log"
    long=$(q m1 long 1500)
    start_host
    wait_status "$long" PROCESSING 10
    s1=$(q m2 short1 0) s2=$(q m3 short2 0)
    sleep 0.5
    SEEN="$(task_status "$s1") $(task_status "$s2")"
    wait_status "$s2" COMPLETED 20
    wait_status "$s1" COMPLETED 20
    stop_host
}

setup_local_machine Ops m1
for m in m2 m3; do ferry create machine Ops local $m --vault '{"connection":"local"}' >/dev/null; done
round 0
eq "pipeline off (the default): the next items wait in the store behind a busy worker" \
    "$SEEN" "PENDING PENDING"
eq "... and all three ran, each once" "$(awk '{print $1}' "$log" | sort | paste -sd' ')" "long short1 short2"
round 4
eq "workers.pipeline = 4: the host takes them to queue behind the running one" \
    "$SEEN" "PROCESSING PROCESSING"
eq "... they ran after it, one at a time, in claim order, each once" \
    "$(awk '{print $1}' "$log" | paste -sd' ')" "long short1 short2"
t_done
