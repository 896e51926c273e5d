#!/usr/bin/env bash
# Retention and garbage collection (issue 8, points 2 and 4): expired snapshots go and the
# data only they used is deleted or repacked (bytes copied never exceed bytes freed); a
# repository's newest snapshot stays; a live lock (a concurrent push) defers collection and
# a stale one does not; an interrupted push leaves a valid storage whose packs the next
# push reuses, and that the grace period protects; repo_gc full removes unindexed packs.
. "$(dirname "$0")/../lib.sh"

write_config 'lease = { poll_ms = 100; };' 'plugin = { repo = { gc_grace_hours = 0.0; }; };'
install_plugins
DS=$T_DIR/ds
ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
ferry create machine Ops local box --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
ferry create storage Ops st --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/st\",\"passphrase\":\"pw\"}" >/dev/null
ferry create storage Ops plain --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/plain\"}" >/dev/null
start_host

submit() { ferry create queue-item Ops box local --vault "$1" --output json | jq -r '.data[0].taskId'; }
job() {
    local task
    task=$(submit "$1")
    ferry queue wait "$task" --timeout 120 >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault'
}
status() { jq -r .status <<<"$1"; }
res() { jq -r ".result$2" <<<"$1"; }
SHORT=0.00002 # days: about 1.7 s

# --- expiry deletes whole packs ----------------------------------------------------------------
mkdir -p "$DS/repositories/web"
head -c 3000000 /dev/urandom >"$DS/repositories/web/old.bin"
echo keep >"$DS/repositories/web/keep.txt"
out=$(job "{\"function\":\"repo_push\",\"repository\":\"web\",\"storage\":\"st\",\"snapshot_id\":\"s1\",\"retention_days\":$SHORT}")
eq "a push with retention completes" "$(status "$out")" COMPLETED
eq "its own snapshot is not expired yet" "$(res "$out" '.retention.expired | length')" 0
rm "$DS/repositories/web/old.bin"
head -c 2000000 /dev/urandom >"$DS/repositories/web/new.bin"
sleep 2
out=$(job '{"function":"repo_push","repository":"web","storage":"st","snapshot_id":"s2","retention_days":30}')
eq "the next push removes the expired snapshot" "$(res "$out" '.retention.expired | join(",")')" web/s1
deleted=$(res "$out" .retention.packs_deleted)
[[ $deleted -ge 1 ]] && pass "and deletes the packs only it used ($deleted: its data and tree)" ||
    fail "and deletes the packs only it used" "$out"
freed=$(res "$out" .retention.bytes_freed)
[[ $freed -ge 3000000 ]] && pass "freeing its data ($freed bytes)" || fail "freeing its data" "$freed"
check "the manifest is gone" test ! -e "$T_DIR/st/snapshots/web/s1"
out=$(job '{"function":"repo_list","storage":"st"}')
eq "only the kept snapshot is listed" "$(res "$out" '.snapshots | map(.id) | join(",")')" s2
eq "the storage verifies" "$(status "$(job '{"function":"repo_verify","storage":"st"}')")" COMPLETED
out=$(job '{"function":"repo_pull","repository":"web-back","from_repository":"web","storage":"st"}')
eq "the kept snapshot restores" "$(status "$out")" COMPLETED
check "with the data it shares with the removed one" cmp "$DS/repositories/web/keep.txt" "$DS/repositories/web-back/keep.txt"

# --- a pack at least half unused is repacked, copying no more than it frees ----------------------------------
mkdir -p "$DS/repositories/half"
head -c 4000000 /dev/urandom >"$DS/repositories/half/a.bin"
head -c 2000000 /dev/urandom >"$DS/repositories/half/b.bin"
job "{\"function\":\"repo_push\",\"repository\":\"half\",\"storage\":\"st\",\"snapshot_id\":\"h1\",\"threads\":1,\"retention_days\":$SHORT}" >/dev/null
rm "$DS/repositories/half/a.bin"
sleep 2
out=$(job '{"function":"repo_push","repository":"half","storage":"st","snapshot_id":"h2","retention_days":30}')
eq "the half-dead pack is repacked" "$(res "$out" .retention.packs_repacked)" 1
copied=$(res "$out" .retention.bytes_copied)
freed=$(res "$out" .retention.bytes_freed)
[[ $copied -le $freed && $copied -gt 0 ]] && pass "copying no more than it frees ($copied <= $freed)" ||
    fail "copying no more than it frees" "copied $copied, freed $freed"
eq "the storage verifies after repacking" "$(status "$(job '{"function":"repo_verify","storage":"st"}')")" COMPLETED
out=$(job '{"function":"repo_pull","repository":"half-back","from_repository":"half","storage":"st"}')
check "and the survivor restores" cmp "$DS/repositories/half/b.bin" "$DS/repositories/half-back/b.bin"

# --- collection never reads a pack that keeps its data ------------------------------------------
# The pack holding keep.bin is moved away while an expiry collects another pack: the
# collection succeeds, so it never needed the pack that loses nothing.
mkdir -p "$DS/repositories/prop"
head -c 1500000 /dev/urandom >"$DS/repositories/prop/keep.bin"
job '{"function":"repo_push","repository":"prop","storage":"st","snapshot_id":"p0","retention_days":30}' >/dev/null
keep_pack=$(find "$T_DIR/st/data" -type f ! -name '.*' -size +1000k -newer "$DS/repositories/prop/keep.bin" | head -1)
check "the pack holding keep.bin is found" test -f "$keep_pack"
head -c 1500000 /dev/urandom >"$DS/repositories/prop/gone.bin"
job "{\"function\":\"repo_push\",\"repository\":\"prop\",\"storage\":\"st\",\"snapshot_id\":\"p1\",\"retention_days\":$SHORT}" >/dev/null
rm "$DS/repositories/prop/gone.bin"
sleep 2
mv "$keep_pack" "$T_DIR/kept-pack"
out=$(job '{"function":"repo_push","repository":"prop","storage":"st","snapshot_id":"p2","retention_days":30}')
eq "with a live pack missing, the expiry still runs" "$(res "$out" '.retention.expired | join(",")')" prop/p1
[[ $(res "$out" .retention.packs_deleted) -ge 1 && $(res "$out" .retention.bytes_freed) -ge 1500000 ]] &&
    pass "and collects the dead pack without reading the live one" || fail "collects without reading live packs" "$out"
mv "$T_DIR/kept-pack" "$keep_pack"
eq "the storage verifies with the pack back" "$(status "$(job '{"function":"repo_verify","storage":"st"}')")" COMPLETED

# --- the newest snapshot of a repository stays --------------------------------------------------
mkdir -p "$DS/repositories/solo" && echo solo >"$DS/repositories/solo/f"
job "{\"function\":\"repo_push\",\"repository\":\"solo\",\"storage\":\"st\",\"snapshot_id\":\"only\",\"retention_days\":$SHORT}" >/dev/null
sleep 2
out=$(job '{"function":"repo_gc","storage":"st"}')
eq "repo_gc completes" "$(status "$out")" COMPLETED
eq "a repository's newest snapshot is never expired" "$(res "$out" '.expired | length')" 0
out=$(job '{"function":"repo_gc","storage":"st","dry_run":true}')
eq "a dry run changes nothing" "$(res "$out" .dry_run)" true

# --- a concurrent user's lock defers collection; a stale lock does not -------------------------
mkdir -p "$DS/repositories/locked" "$T_DIR/plain/locks"
echo one >"$DS/repositories/locked/f"
job "{\"function\":\"repo_push\",\"repository\":\"locked\",\"storage\":\"plain\",\"snapshot_id\":\"l1\",\"retention_days\":$SHORT}" >/dev/null
echo two >"$DS/repositories/locked/f"
now=$(date +%s)
printf '{"kind":"shared","hostname":"other-bridge","pid":4242,"purpose":"push db","time":%d,"refreshed":%d}' "$now" "$now" >"$T_DIR/plain/locks/live"
sleep 2
out=$(job '{"function":"repo_push","repository":"locked","storage":"plain","snapshot_id":"l2","retention_days":30}')
eq "a push completes while another push holds the storage" "$(status "$out")" COMPLETED
eq "but its retention is deferred" "$(res "$out" .retention.deferred)" true
contains "naming the holder" "$(res "$out" .retention.reason)" "push db (pid 4242 on other-bridge)"
check "the expired snapshot is still there" test -e "$T_DIR/plain/snapshots/locked/l1"
printf '{"kind":"shared","hostname":"other-bridge","pid":4242,"purpose":"push db","time":%d,"refreshed":%d}' \
    $((now - 7200)) $((now - 7200)) >"$T_DIR/plain/locks/live"
out=$(job '{"function":"repo_gc","storage":"plain"}')
eq "a stale lock (not refreshed for 10 minutes) is ignored" "$(res "$out" '.expired | join(",")')" locked/l1
check "and cleaned up" test ! -e "$T_DIR/plain/locks/live"
eq "no lock is left behind" "$(ls "$T_DIR/plain/locks" | wc -l)" 0

# --- an interrupted push: a valid storage, reused by the next push -----------------------------
mkdir -p "$DS/repositories/big"
# Compressible data at the "high" level on one thread: slow enough to interrupt midway.
python3 -c "
import os
for i in range(6):
    with open('$DS/repositories/big/part%d.txt' % i, 'w') as f:
        f.write(os.urandom(25000000).hex())"
task=$(submit '{"function":"repo_push","repository":"big","storage":"st","threads":1,"compression":"high"}')
packs_now() { find "$T_DIR/st/data" -type f ! -name '.*' -newer "$DS/repositories/big/part5.txt" | wc -l; }
enough_packs() { test "$(packs_now)" -ge 3; }
wait_for 60 enough_packs
task_cancelled() { test "$(task_status "$task")" = CANCELLED; }
ferry queue cancel "$task" >/dev/null
wait_for 30 task_cancelled
eq "the push is cancelled midway" "$(task_status "$task")" CANCELLED
check "it leaves no snapshot" test ! -e "$T_DIR/st/snapshots/big"
out=$(job '{"function":"repo_verify","storage":"st"}')
eq "the interrupted storage verifies" "$(status "$out")" COMPLETED
eq "every pack that arrived is indexed" "$(res "$out" .unindexed_packs)" 0
out=$(job '{"function":"repo_gc","storage":"st","grace_hours":24}')
eq "the grace period keeps the unreferenced new packs" "$(res "$out" .packs_deleted)" 0
out=$(job '{"function":"repo_push","repository":"big","storage":"st"}')
eq "the next push completes" "$(status "$out")" COMPLETED
new=$(res "$out" .stats.bytes_new)
[[ $new -lt 260000000 ]] && pass "reusing what arrived ($new of 300000000 bytes new)" ||
    fail "reusing what arrived" "$new bytes new"
eq "the storage verifies" "$(status "$(job '{"function":"repo_verify","storage":"st","sample":20}')")" COMPLETED

# --- repo_gc full: packs no index lists ----------------------------------------------------------
stray=$T_DIR/plain/data/ab/ab$(printf '%062d' 0)
mkdir -p "$(dirname "$stray")" && head -c 1000 /dev/urandom >"$stray"
out=$(job '{"function":"repo_gc","storage":"plain"}')
check "a normal run leaves unindexed packs alone" test -e "$stray"
out=$(job '{"function":"repo_gc","storage":"plain","full":true}')
eq "repo_gc full deletes them" "$(res "$out" .unindexed_packs_deleted)" 1
check "the stray pack is gone" test ! -e "$stray"
stop_host
t_done
