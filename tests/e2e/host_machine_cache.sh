#!/usr/bin/env bash
# The host keeps a machine's facts between items (re-reading the row for each item cost a
# query per job) only while nothing else has written to the store: a machine vault changed
# while the host runs is what the very next item of that machine sees.
. "$(dirname "$0")/../lib.sh"

write_config 'workers = { count = 1; prefork = 1; pipeline = 4; };' 'lease = { poll_ms = 100; };'
install_plugins
setup_local_machine Ops box1
q() { # q VAULT: queues hello on box1, prints the task id
    ferry create queue-item Ops box1 local --vault "$1" --output json | jq -r '.data[0].taskId'
}
start_host
first=$(q '{"function":"hello"}')
wait_status "$first" COMPLETED 20
eq "a local machine: hello runs on the bridge" "$(task_status "$first")" COMPLETED
# The same machine, now reached over SSH on a port where nothing listens.
ferry update machine-vault Ops box1 \
    --vault '{"connection":null,"ip":"127.0.0.1","ssh_port":1,"connect_timeout":2}' >/dev/null
second=$(q '{"function":"hello","max_retries":0}')
wait_for 30 status_is "$second" FAILED
eq "the next item sees the changed vault at once: it goes over SSH and fails" \
    "$(task_status "$second")" FAILED
contains "... with the exec service's error" \
    "$(ferry list queue --task-id "$second" --output json | jq -r '.data[0].lastFailureReason')" "ssh"
# Back to local: the cached remote facts go too.
ferry update machine-vault Ops box1 --vault '{"connection":"local","ip":null,"ssh_port":null}' >/dev/null
third=$(q '{"function":"hello"}')
wait_status "$third" COMPLETED 20
eq "... and a vault changed back is seen as well" "$(task_status "$third")" COMPLETED
stop_host
t_done
