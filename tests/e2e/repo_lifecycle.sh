#!/usr/bin/env bash
# Repository lifecycle on a machine (issue 8, point 1): repo_new, repo_list, repo_up (and
# option "prep-only"), repo_down driven by a Ferryfile run with bash in the repository
# directory, repo_snapshot with pruning, pushes of local snapshots, repo_rm, and the clear
# failures: existing or missing repositories, bad names, a failing Ferryfile, a running
# repository, a machine without a datastore, a remote machine for push.
. "$(dirname "$0")/../lib.sh"

write_config 'lease = { poll_ms = 100; };'
install_plugins
DS=$T_DIR/ds
ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
ferry create machine Ops local box --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
ferry create machine Ops local bare --vault '{"connection":"local"}' >/dev/null
ferry create machine Ops local far --vault "{\"ip\":\"192.0.2.1\",\"user\":\"ops\",\"datastore\":\"/srv\"}" >/dev/null
ferry create storage Ops st --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/st\"}" >/dev/null
start_host

job() { # [MACHINE] VAULT
    local machine=box
    [[ $# -eq 2 ]] && { machine=$1; shift; }
    local task
    task=$(ferry create queue-item Ops "$machine" local --vault "$1" --output json | jq -r '.data[0].taskId')
    ferry queue wait "$task" --timeout 120 >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault'
}
status() { jq -r .status <<<"$1"; }
res() { jq -r ".result$2" <<<"$1"; }
err() { jq -r ".error$2" <<<"$1"; }

FERRYFILE='prep() { echo "prep $REPOSITORY $(basename "$REPOSITORY_PATH") $(basename "$DATASTORE")" >> events.log; }
up() { echo up >> events.log; touch service.pid; }
down() { echo down >> events.log; rm -f service.pid; }'
out=$(job "$(jq -cn --arg f "$FERRYFILE" '{function:"repo_new",repository:"app",ferryfile:$f}')")
eq "repo_new completes" "$(status "$out")" COMPLETED
eq "it reports the path" "$(res "$out" .path)" "$DS/repositories/app"
check "the Ferryfile is written, executable" test -x "$DS/repositories/app/Ferryfile"
out=$(job '{"function":"repo_new","repository":"app"}')
eq "an existing repository is refused" "$(err "$out" .code)" exists
out=$(job '{"function":"repo_new","repository":"../escape"}')
eq "a path as a name is invalid" "$(err "$out" .outcome)" INVALID
check "and nothing is created" test ! -e "$DS/escape"

out=$(job '{"function":"repo_up","repository":"app","option":"prep-only"}')
eq "repo_up prep-only completes" "$(status "$out")" COMPLETED
eq "prep ran in the repository with its environment" "$(cat "$DS/repositories/app/events.log")" "prep app app ds"
eq "prep-only does not mark it running" "$(res "$out" .running)" false
out=$(job '{"function":"repo_list"}')
eq "repo_list: the repository" "$(res "$out" '.repositories[0].name')" app
eq "repo_list: has a Ferryfile" "$(res "$out" '.repositories[0].ferryfile')" true
eq "repo_list: not running" "$(res "$out" '.repositories[0].running')" false
out=$(job '{"function":"repo_up","repository":"app"}')
eq "repo_up runs prep then up" "$(tail -2 "$DS/repositories/app/events.log" | tr '\n' ' ')" "prep app app ds up "
eq "and marks it running" "$(res "$(job '{"function":"repo_list","repository":"app"}')" '.repositories[0].running')" true
contains "the Ferryfile's output is in the trace" \
    "$(ferry queue trace "$(ferry list queue --max-records 2 --output json | jq -r '.data[1].taskId')" --output json | jq -r '.data.timeline[].details')" "Ferryfile: == up"
out=$(job '{"function":"repo_rm","repository":"app"}')
eq "repo_rm refuses a running repository" "$(err "$out" .code)" running
out=$(job '{"function":"repo_down","repository":"app"}')
eq "repo_down runs down" "$(tail -1 "$DS/repositories/app/events.log")" down
check "down stopped the service" test ! -e "$DS/repositories/app/service.pid"
eq "and clears the running mark" "$(res "$out" .running)" false

# A failing Ferryfile function fails the job with its last words.
printf 'up() { echo "starting"; echo "database refused to start" >&2; return 3; }\n' >"$DS/repositories/app/Ferryfile"
out=$(job '{"function":"repo_up","repository":"app"}')
eq "a failing Ferryfile fails repo_up" "$(err "$out" .code)" ferryfile_failed
contains "naming the exit code and last line" "$(err "$out" .message)" "exit 3): database refused to start"
eq "a failed up is not running" "$(res "$(job '{"function":"repo_list","repository":"app"}')" '.repositories[0].running')" false
out=$(job '{"function":"repo_up","repository":"nothing"}')
eq "repo_up of a missing repository fails" "$(err "$out" .code)" not_found

# Local snapshots: a copy that keeps owners, times and holes; pruned to `keep`.
echo v1 >"$DS/repositories/app/data.txt"
truncate -s 8M "$DS/repositories/app/holes.img"
for id in s1 s2 s3; do
    out=$(job "{\"function\":\"repo_snapshot\",\"repository\":\"app\",\"snapshot_id\":\"$id\",\"keep\":2}")
    echo "v-$id" >"$DS/repositories/app/data.txt"
done
eq "repo_snapshot completes" "$(status "$out")" COMPLETED
eq "it copies (no btrfs here)" "$(res "$out" .method)" copy
eq "older snapshots beyond keep are pruned" "$(ls "$DS/snapshots/app" | tr '\n' ' ')" "s2 s3 "
eq "the snapshot holds the state it was taken in" "$(cat "$DS/snapshots/app/s3/data.txt")" v-s2
check "holes stay holes" test "$(du -k "$DS/snapshots/app/s3/holes.img" | cut -f1)" -lt 1024
out=$(job '{"function":"repo_snapshot","repository":"app","snapshot_id":"s3"}')
eq "an existing snapshot id is refused" "$(err "$out" .code)" exists
out=$(job '{"function":"repo_push","repository":"app","storage":"st","snapshot_id":"s3"}')
eq "repo_push of a local snapshot completes" "$(status "$out")" COMPLETED
out=$(job '{"function":"repo_list","storage":"st"}')
eq "the stored snapshot came from the local snapshot" "$(res "$out" '.snapshots[0].source')" snapshot
eq "repo_list shows the local snapshots" "$(res "$out" '.repositories[0].local_snapshots | join(",")')" s2,s3
out=$(job '{"function":"repo_pull","repository":"restored","from_repository":"app","storage":"st"}')
eq "and restores it" "$(cat "$DS/repositories/restored/data.txt")" v-s2

out=$(job '{"function":"repo_rm","repository":"app"}')
eq "repo_rm removes a stopped repository" "$(res "$out" .removed)" true
check "its directory is gone" test ! -e "$DS/repositories/app"
check "its local snapshots are gone" test ! -e "$DS/snapshots/app"
eq "the storage keeps its snapshot" "$(res "$(job '{"function":"repo_list","storage":"st"}')" '.snapshots | length')" 1
out=$(job '{"function":"repo_rm","repository":"app"}')
eq "repo_rm of a missing repository fails" "$(err "$out" .code)" not_found

out=$(job bare '{"function":"repo_new","repository":"x"}')
eq "a machine without a datastore is refused" "$(err "$out" .outcome)" INVALID
contains "telling what to add" "$(err "$out" .message)" '"datastore"'
# A remote machine is pushed from over SSH (repo_remote_push.sh); one that cannot be reached
# fails with the connection's reason, not as a missing repository.
out=$(job far '{"function":"repo_push","repository":"x","storage":"st"}')
eq "push on an unreachable remote machine fails on the connection" "$(err "$out" .code)" exec_failed
contains "with the reason" "$(err "$out" .message)" "192.0.2.1"
stop_host
t_done
