#!/usr/bin/env bash
# Backups hold what was on disk, and restores bring back the right machine's data (issue 13,
# points 0 and 7):
#   - a file rewritten with the same size and mtime is read again on every push path (live
#     directory, local snapshot, backup_with_retry, repo_replicate): change detection needs
#     size, mtime, inode and ctime;
#   - repo_gc full keeps an unindexed pack younger than grace_hours, and gc beside a live
#     push leaves that push whole;
#   - repo_verify with a repository fails only on damage that repository uses;
#   - "latest" and tags resolve among the item's own machine's snapshots (from_machine names
#     another); an id names its snapshot whoever pushed it; two machines pushing one
#     repository in the same second both succeed; the seed's "version" is restore_point.
. "$(dirname "$0")/../lib.sh"

write_config 'lease = { poll_ms = 100; };' 'workers = { count = 4; };' \
    'plugin = { repo = { gc_grace_hours = 0.0; }; };'
install_plugins
DS=$T_DIR/ds W=$T_DIR/web A=$T_DIR/app
ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
ferry create machine Ops local box --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
ferry create machine Ops local web-server-01 --vault "{\"connection\":\"local\",\"datastore\":\"$W\"}" >/dev/null
ferry create machine Ops local app-server --vault "{\"connection\":\"local\",\"datastore\":\"$A\"}" >/dev/null
ferry create storage Ops st --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/st\",\"passphrase\":\"pw\"}" >/dev/null
ferry create storage Ops plain --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/plain\"}" >/dev/null
ferry create storage Ops shared --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/shared\"}" >/dev/null
start_host

submit() { ferry create queue-item Ops "${2:-box}" local --vault "$1" --output json | jq -r '.data[0].taskId'; }
result_of() { ferry list queue --task-id "$1" --output json | jq -c '.data[0].responseVault + {status: .data[0].status}'; }
job() {
    local task
    task=$(submit "$1" "${2:-box}")
    ferry queue wait "$task" --timeout 120 >/dev/null 2>&1
    result_of "$task"
}
status() { jq -r .status <<<"$1"; }
res() { jq -r ".result$2" <<<"$1"; }
# rewrite FILE TEXT: same size, same mtime, new content (the issue's reproduction)
rewrite() { printf '%s' "$2" >"$1" && touch -d 2020-01-01 "$1"; }

# --- 0a: the same size and mtime on every push path ----------------------------------------------
R=$DS/repositories/keep
mkdir -p "$R" && rewrite "$R/f" aaaa && echo other >"$R/g"
out=$(job '{"function":"repo_snapshot","repository":"keep","snapshot_id":"v1"}')
eq "repo_snapshot v1" "$(status "$out")" COMPLETED
out=$(job '{"function":"repo_push","repository":"keep","storage":"st","snapshot_id":"v1"}')
eq "push of the local snapshot v1" "$(status "$out")" COMPLETED
rewrite "$R/f" bbbb
job '{"function":"repo_snapshot","repository":"keep","snapshot_id":"v2"}' >/dev/null
out=$(job '{"function":"repo_push","repository":"keep","storage":"st","snapshot_id":"v2"}')
eq "push of the local snapshot v2" "$(status "$out")" COMPLETED
out=$(job '{"function":"repo_pull","repository":"r-v2","from_repository":"keep","storage":"st","restore_point":"v2"}')
eq "local snapshot: repo_pull of v2 brings back what v2 held" "$(cat "$DS/repositories/r-v2/f" 2>/dev/null)" bbbb

rewrite "$R/f" cccc
out=$(job '{"function":"repo_push","repository":"keep","storage":"st","snapshot_id":"live1"}')
job '{"function":"repo_pull","repository":"r-live1","from_repository":"keep","storage":"st","restore_point":"live1"}' >/dev/null
eq "live directory after a snapshot push" "$(cat "$DS/repositories/r-live1/f" 2>/dev/null)" cccc
rewrite "$R/f" dddd
out=$(job '{"function":"repo_push","repository":"keep","storage":"st","snapshot_id":"live2"}')
eq "an untouched file is still taken over unread" "$(res "$out" .stats.reused_files)" 1
job '{"function":"repo_pull","repository":"r-live2","from_repository":"keep","storage":"st","restore_point":"live2"}' >/dev/null
eq "live directory after a live push" "$(cat "$DS/repositories/r-live2/f" 2>/dev/null)" dddd
rewrite "$R/f" eeee
out=$(job '{"function":"backup_with_retry","repository":"keep","storage":"st","snapshot_id":"bwr"}')
job '{"function":"repo_pull","repository":"r-bwr","from_repository":"keep","storage":"st","restore_point":"bwr"}' >/dev/null
eq "backup_with_retry" "$(cat "$DS/repositories/r-bwr/f" 2>/dev/null)" eeee
rewrite "$R/f" ffff
out=$(job '{"function":"repo_replicate","source":{"repository":"keep"},"targets":["st"],"snapshot_id":"repl"}')
eq "repo_replicate completes" "$(status "$out")" COMPLETED
job '{"function":"repo_pull","repository":"r-repl","from_repository":"keep","storage":"st","restore_point":"repl"}' >/dev/null
eq "repo_replicate's push" "$(cat "$DS/repositories/r-repl/f" 2>/dev/null)" ffff
echo more >>"$R/g"
job '{"function":"repo_snapshot","repository":"keep","snapshot_id":"v3"}' >/dev/null
out=$(job '{"function":"repo_push","repository":"keep","storage":"st","snapshot_id":"v3"}')
job '{"function":"repo_pull","repository":"r-v3","from_repository":"keep","storage":"st","restore_point":"v3"}' >/dev/null
check "a snapshot after live pushes restores exactly" tree_compare "$DS/snapshots/keep/v3" "$DS/repositories/r-v3"

# --- 0b: the grace period holds for unindexed packs too -----------------------------------------
mkdir -p "$DS/repositories/p" && echo p >"$DS/repositories/p/x"
job '{"function":"repo_push","repository":"p","storage":"plain"}' >/dev/null
stray=$T_DIR/plain/data/ab/ab$(printf '%062d' 0)
mkdir -p "$(dirname "$stray")" && head -c 1000 /dev/urandom >"$stray"
out=$(job '{"function":"repo_gc","storage":"plain","full":true,"grace_hours":24}')
eq "repo_gc full with grace_hours 24 keeps an unindexed pack seconds old" "$(res "$out" .unindexed_packs_deleted)/$(res "$out" .unindexed_packs_kept)" 0/1
check "the pack is still there" test -e "$stray"
out=$(job '{"function":"repo_gc","storage":"plain","full":true,"grace_hours":24,"dry_run":true}')
eq "a dry run does not count it either" "$(res "$out" .unindexed_packs_deleted)" 0
out=$(job '{"function":"repo_gc","storage":"plain","full":true,"grace_hours":0}')
eq "past the grace period it goes" "$(res "$out" .unindexed_packs_deleted)" 1
check "the stray pack is gone" test ! -e "$stray"
eq "and the storage verifies" "$(status "$(job '{"function":"repo_verify","storage":"plain"}')")" COMPLETED

# A pack the collector itself repacks into is indexed: full (grace 0) must not take it.
mkdir -p "$DS/repositories/half"
head -c 4000000 /dev/urandom >"$DS/repositories/half/a.bin"
head -c 2000000 /dev/urandom >"$DS/repositories/half/b.bin"
job '{"function":"repo_push","repository":"half","storage":"plain","snapshot_id":"h1","threads":1,"retention_days":0.00002}' >/dev/null
rm "$DS/repositories/half/a.bin"
sleep 2
job '{"function":"repo_push","repository":"half","storage":"plain","snapshot_id":"h2"}' >/dev/null
out=$(job '{"function":"repo_gc","storage":"plain","full":true,"grace_hours":0}')
eq "repo_gc full repacks the half-used pack" "$(res "$out" .packs_repacked)" 1
eq "and keeps the pack it repacked into" "$(res "$out" .unindexed_packs_deleted)" 0
out=$(job '{"function":"repo_pull","repository":"half-back","from_repository":"half","storage":"plain","restore_point":"h2"}')
eq "the kept snapshot still pulls" "$(status "$out")" COMPLETED
check "exactly" tree_compare "$DS/repositories/half" "$DS/repositories/half-back"

# gc beside a live push: the push's packs survive and the snapshot restores exactly.
mkdir -p "$DS/repositories/big"
python3 -c "
import os
for i in range(3):
    with open('$DS/repositories/big/part%d.txt' % i, 'w') as f:
        f.write(os.urandom(6000000).hex())"
push=$(submit '{"function":"repo_push","repository":"big","storage":"plain","snapshot_id":"live","threads":1,"compression":"high"}')
gcs=0
while [[ $(task_status "$push") =~ ^(PENDING|ASSIGNED|PROCESSING)$ ]] && ((gcs < 40)); do
    job '{"function":"repo_gc","storage":"plain","full":true,"grace_hours":24}' >/dev/null
    gcs=$((gcs + 1))
done
wait_status "$push" COMPLETED 120
eq "a push with repo_gc full running beside it ($gcs runs) completes" "$(task_status "$push")" COMPLETED
out=$(job '{"function":"repo_pull","repository":"big-back","from_repository":"big","storage":"plain","restore_point":"live"}')
eq "and pulls" "$(status "$out")" COMPLETED
check "exactly" tree_compare "$DS/repositories/big" "$DS/repositories/big-back"

# --- 0d: repo_verify with a repository fails only on that repository's damage -----------------
mkdir -p "$DS/repositories/one" "$DS/repositories/two"
head -c 300000 /dev/urandom >"$DS/repositories/one/a.bin"
head -c 300000 /dev/urandom >"$DS/repositories/two/b.bin"
job '{"function":"repo_push","repository":"one","storage":"shared"}' >/dev/null
touch "$T_DIR/mark" && sleep 1.1
job '{"function":"repo_push","repository":"two","storage":"shared"}' >/dev/null
victim=$(find "$T_DIR/shared/data" -type f ! -name '.*' -newer "$T_DIR/mark" -size +100k | head -1)
check "push two wrote its own data pack" test -n "$victim"
printf 'XXXXXXXX' | dd of="$victim" bs=1 seek=100 conv=notrunc 2>/dev/null
out=$(job '{"function":"repo_verify","storage":"shared","repository":"one"}')
eq "repo_verify of the intact repository passes" "$(status "$out")" COMPLETED
eq "reading only its own packs" "$(res "$out" .packs_checked)" 2
out=$(job '{"function":"repo_verify","storage":"shared","repository":"two"}')
eq "repo_verify of the damaged repository fails" "$(status "$out")" FAILED
contains "naming the pack and the file" "$(jq -r .error.message <<<"$out")" "two@"
eq "repo_verify of the whole storage fails" "$(status "$(job '{"function":"repo_verify","storage":"shared"}')")" FAILED

# --- 7: the right machine's data ----------------------------------------------------------------
mkdir -p "$W/repositories/site" "$A/repositories/site"
echo "web data" >"$W/repositories/site/who" && echo "app data" >"$A/repositories/site/who"
out=$(job '{"function":"repo_push","repository":"site","storage":"st","tags":{"type":"release"},"snapshot_id":"w1"}' web-server-01)
eq "web-server-01 pushes" "$(status "$out")" COMPLETED
sleep 1.1 # app-server's snapshot is the newer one by its time, not only by its name
out=$(job '{"function":"repo_push","repository":"site","storage":"st","tags":{"type":"release"},"snapshot_id":"a1"}' app-server)
eq "then app-server pushes the same repository" "$(status "$out")" COMPLETED
echo changed >"$W/repositories/site/who"
out=$(job '{"function":"repo_pull","repository":"site","storage":"st","restore_point":"latest"}' web-server-01)
eq "latest on web-server-01 is its own snapshot" "$(res "$out" .snapshot_id)" w1
eq "with its own file" "$(cat "$W/repositories/site/who")" "web data"
out=$(job '{"function":"repo_pull","repository":"site","storage":"st","version":"latest"}' web-server-01)
eq "the seed's \"version\": \"latest\" is accepted" "$(status "$out")/$(res "$out" .snapshot_id)" COMPLETED/w1
out=$(job '{"function":"repo_pull","repository":"site","storage":"st","restore_point":"type=release"}' web-server-01)
eq "a tag resolves among the machine's own snapshots too" "$(res "$out" .snapshot_id)" w1
out=$(job '{"function":"repo_pull","repository":"site","storage":"st","restore_point":"latest","from_machine":"app-server"}' web-server-01)
eq "from_machine restores another machine's latest" "$(res "$out" .snapshot_id)" a1
eq "(its file)" "$(cat "$W/repositories/site/who")" "app data"
out=$(job '{"function":"repo_pull","repository":"site","storage":"st","restore_point":"w1"}' app-server)
eq "an id names its snapshot whoever pushed it" "$(res "$out" .snapshot_id)" w1
out=$(job '{"function":"repo_pull","repository":"site","storage":"st","restore_point":"latest"}' box)
eq "a machine with no snapshot of its own gets none" "$(status "$out")" FAILED
contains "and is told about from_machine" "$(jq -r .error.message <<<"$out")" '"from_machine": "app-server"'
out=$(job '{"function":"repo_list","repository":"site","storage":"st"}' web-server-01)
eq "repo_list names the machine of each snapshot" "$(res "$out" '.snapshots | map(.id + "@" + .machine) | join(",")')" w1@web-server-01,a1@app-server
out=$(job '{"function":"repo_pull","repository":"site","storage":"st","restore_point":"w1","version":"a1"}' box)
eq "restore_point and version that disagree are refused" "$(jq -r .error.outcome <<<"$out")" INVALID

# Two machines push one repository with default ids: both succeed, also in the same second.
same=0 id1= id2=
running() { [[ $(task_status "$1") =~ ^(PENDING|ASSIGNED|PROCESSING)$ ]]; }
both_done() { ! running "$t1" && ! running "$t2"; }
for _ in 1 2 3 4 5; do
    t1=$(submit '{"function":"repo_push","repository":"site","storage":"st"}' web-server-01)
    t2=$(submit '{"function":"repo_push","repository":"site","storage":"st"}' app-server)
    wait_for 60 both_done
    r1=$(result_of "$t1") r2=$(result_of "$t2")
    if [[ $(status "$r1") != COMPLETED || $(status "$r2") != COMPLETED ]]; then
        fail "two machines push one repository at once" "$r1 $r2"
        break
    fi
    id1=$(res "$r1" .snapshot_id) id2=$(res "$r2" .snapshot_id)
    if [[ ${id1:0:15} == "${id2:0:15}" ]]; then same=1; break; fi
done
if ((same)); then
    pass "two machines pushing one repository in the same second both succeed ($id1, $id2)"
    check "under distinct ids" test "$id1" != "$id2"
else
    pass "two machines push one repository at once (# no pair landed in the same second)"
fi
out=$(job '{"function":"repo_pull","repository":"site","storage":"st"}' app-server)
eq "and each machine's latest is its own" "$(res "$out" .snapshot_id)" "$id2"
stop_host
t_done
