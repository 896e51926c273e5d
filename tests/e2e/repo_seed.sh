#!/usr/bin/env bash
# The seed guide's backup-workflow.sh and restore-workflow.sh run end to end against a local
# storage with only the program name changed (issue 8, point 8), and its error-handling
# vault (backup_with_retry with a backup_to_secondary fallback) works as written; with a
# primary storage that is unavailable, the retries and the fallback happen.
#
# As in seed_queue.sh, `sleep` is an exported function that sleeps 0.2 s, so the scripts'
# 10 and 30 s waits do not slow the suite; nothing else is changed.
. "$(dirname "$0")/../lib.sh"

SEED_GUIDE=$FERRY_ROOT/tests/seed/000_fe445159a0569f11.txt
SEED=$T_DIR/seed
T_BRIDGE=prod-bridge
write_config 'lease = { poll_ms = 100; };' 'retry = { jitter = 0.0; };'
install_plugins
mkdir -p "$T_DIR/bin"
ln -s "$FERRY_BIN" "$T_DIR/bin/ferry"
"$FERRY_ROOT/tests/seed/extract.sh" "$SEED_GUIDE" "$SEED" >/dev/null
DS=$T_DIR/ds
ferry create region us-east >/dev/null && ferry create bridge us-east prod-bridge >/dev/null
ferry create team Operations >/dev/null
ferry create machine Operations prod-bridge web-server-01 \
    --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
ferry create storage Operations s3-backups --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/backups\",\"passphrase\":\"seed\"}" >/dev/null
start_host

sleep() { command sleep 0.2; }
export -f sleep
run_seed() {
    local script=$1; shift
    (cd "$T_DIR" && PATH=$T_DIR/bin:$PATH timeout 120 bash "$SEED/$script" "$@") >"$T_DIR/out" 2>"$T_DIR/err"
    RC=$?
}
job() {
    local task
    task=$(ferry create queue-item Operations web-server-01 prod-bridge --vault "$1" --output json | jq -r '.data[0].taskId')
    ferry queue wait "$task" --timeout 120 >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault'
}
all_done() { [[ $(ferry list queue --status PENDING,ASSIGNED,PROCESSING --output json | jq '.data | length') == 0 ]]; }

out=$(job '{"function":"repo_new","repository":"webapp","ferryfile":"up() { date > started; }\ndown() { rm -f started; }"}')
eq "the repository exists" "$(jq -r .status <<<"$out")" COMPLETED
mkdir -p "$DS/repositories/webapp/www"
echo "<h1>version 1</h1>" >"$DS/repositories/webapp/www/index.html"
head -c 2000000 /dev/urandom >"$DS/repositories/webapp/www/assets.bin"
job '{"function":"repo_up","repository":"webapp"}' >/dev/null

# --- backup-workflow.sh, as the guide has it -----------------------------------------------------
run_seed backup-workflow.sh Operations web-server-01 webapp s3-backups
eq "backup-workflow.sh exits 0" "$RC" 0
contains "it reports success" "$(cat "$T_DIR/out")" "Backup completed successfully!"
snap=$(ferry list queue --output json | jq -r '[.data[] | select(.function=="repo_snapshot")][0].vaultContent.snapshot_id')
[[ $snap =~ ^[0-9]{8}_[0-9]{6}$ ]] && pass "repo_snapshot ran with the script's id ($snap)" || fail "repo_snapshot ran" "$snap"
check "the local snapshot exists" test -f "$DS/snapshots/webapp/$snap/www/index.html"
push=$(ferry list queue --output json | jq -c '[.data[] | select(.function=="repo_push")][0].responseVault.result')
eq "repo_push pushed that snapshot" "$(jq -r .snapshot_id <<<"$push")" "$snap"
eq "with verify" "$(jq -r .verified <<<"$push")" true
check "the storage holds it" test -f "$T_DIR/backups/snapshots/webapp/$snap"

# --- restore-workflow.sh: down, pull, up in order, after damage to the repository ---------------
echo "<h1>defaced</h1>" >"$DS/repositories/webapp/www/index.html"
rm "$DS/repositories/webapp/www/assets.bin"
run_seed restore-workflow.sh Operations web-server-01 webapp s3-backups "$snap"
eq "restore-workflow.sh exits 0" "$RC" 0
contains "it says the restore started" "$(cat "$T_DIR/out")" "Restore initiated"
wait_for 60 all_done
statuses=$(ferry list queue --output json | jq -r '[.data[] | select(.function=="repo_down" or .function=="repo_pull" or .function=="repo_up")][0:3] | reverse | map(.function + "=" + .status) | join(" ")')
eq "down, pull and up ran in that order" "$statuses" "repo_down=COMPLETED repo_pull=COMPLETED repo_up=COMPLETED"
eq "the repository is restored" "$(cat "$DS/repositories/webapp/www/index.html")" "<h1>version 1</h1>"
check "every file of it" cmp "$DS/snapshots/webapp/$snap/www/assets.bin" "$DS/repositories/webapp/www/assets.bin"
check "and started again by its Ferryfile" test -f "$DS/repositories/webapp/started"

# --- the guide's error-handling vault, as written ------------------------------------------------
vault=$(awk '/^### Error Handling/ { f = 1 } f && /^```json/ { p = 1; next } p && /^```/ { exit } p' "$SEED_GUIDE")
eq "the guide's vault names backup_with_retry" "$(jq -r .function <<<"$vault")" backup_with_retry
ferry create storage Operations default --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/primary\"}" >/dev/null
ferry create storage Operations secondary --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/secondary\"}" >/dev/null
out=$(job "$vault")
eq "backup_with_retry as written completes" "$(jq -r .status <<<"$out")" COMPLETED
eq "pushing every repository of the machine to the storage named default" \
    "$(jq -r '.result.storage + ":" + (.result.pushed | map(.repository) | join(","))' <<<"$out")" default:webapp

# With the primary unavailable (its disk not mounted): retried, then the fallback runs.
ferry rm storage Operations default >/dev/null
ferry create storage Operations default --vault '{"provider":"local","path":"/nonexistent-mount/backups"}' >/dev/null
task=$(ferry create queue-item Operations web-server-01 prod-bridge --output json --vault \
    "$(jq -c '.max_retries = 2 | .retry_delay = 1 | del(.on_failure.notify)' <<<"$vault")" | jq -r '.data[0].taskId')
# The host queues a fallback just after the turn that ends its item commits, so "nothing
# running" can be seen in between: wait for the fallback to exist, then for it to end.
has_fallback() { [[ -n $(ferry list queue --output json | jq -r --arg p "$task" '.data[] | select(.parentTaskId == $p) | .taskId') ]]; }
fallback_ended() { all_done && has_fallback && all_done; }
wait_for 60 fallback_ended
row=$(ferry list queue --task-id "$task" --output json | jq -c '.data[0]')
eq "a transient failure is retried" "$(jq -r .retryCount <<<"$row")" 2
contains "naming the missing disk" "$(jq -r .lastFailureReason <<<"$row")" "not available"
fallback=$(ferry list queue --output json | jq -c --arg p "$task" '.data[] | select(.parentTaskId == $p)')
eq "then backup_to_secondary runs as the fallback" "$(jq -r .function <<<"$fallback")" backup_to_secondary
eq "and completes" "$(jq -r .status <<<"$fallback")" COMPLETED
check "the secondary storage holds the snapshot" test -d "$T_DIR/secondary/snapshots/webapp"
stop_host
t_done
