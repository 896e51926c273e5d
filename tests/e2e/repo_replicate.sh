#!/usr/bin/env bash
# repo_replicate (issue 9, point 4): the seed's setup-replication.sh creates its schedules
# verbatim and, when one fires, the repository is pushed to both targets (the us-west ones
# are S3 storages on a loopback moto_server that checks signatures, the eu-west ones local
# and encrypted) with each target reported on its own; incremental runs send only what a target lacks; a failing target does
# not stop the others; a storage source makes byte-for-byte replicas (encrypted too) that
# restore, copies only missing snapshots and packs, refuses a target holding another
# storage, and in full mode repairs a damaged replica; verify checks every target.
. "$(dirname "$0")/../lib.sh"

SEED_GUIDE=$FERRY_ROOT/tests/seed/000_fe445159a0569f11.txt
SEED=$T_DIR/seed
write_config 'lease = { poll_ms = 100; };' 'plugin = { repo = { gc_grace_hours = 0.0; }; };'
install_plugins
mkdir -p "$T_DIR/bin"
ln -s "$FERRY_BIN" "$T_DIR/bin/ferry"
"$FERRY_ROOT/tests/seed/extract.sh" "$SEED_GUIDE" "$SEED" >/dev/null
DS=$T_DIR/ds
MOTO=$T_DIR/moto
if ! "$FERRY_ROOT/tests/helpers/moto.sh" start "$MOTO" >/dev/null 2>"$T_DIR/moto.err"; then
    fail "moto_server starts" "$(cat "$T_DIR/moto.err")"
    t_done
    exit 1
fi
T_EXTRA_PIDS=$(cat "$MOTO/moto.pid")
"$FERRY_ROOT/tests/helpers/moto.sh" bucket "$MOTO" replicas
S3_VAULT=$(jq -nc --arg e "http://127.0.0.1:$(cat "$MOTO/port")" --arg k "$(cat "$MOTO/access_key_id")" \
    --arg s "$(cat "$MOTO/secret_access_key")" '{provider:"s3",endpoint:$e,bucket:"replicas",access_key_id:$k,secret_access_key:$s}')
s3_storage() { # s3_storage NAME PREFIX [extra JSON]: an S3 storage under PREFIX in the bucket
    ferry create storage Operations "$1" --vault "$(jq -c --arg p "$2" ".prefix = \$p ${3:+| . + $3}" <<<"$S3_VAULT")" >/dev/null
}
ferry create region us-east >/dev/null && ferry create bridge us-east local >/dev/null
ferry create team Operations >/dev/null
ferry create machine Operations local replication-master \
    --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
for repo in customer-db application configurations; do
    s3_storage "s3-us-west-$repo" "us-west/$repo"
    ferry create storage Operations "s3-eu-west-$repo" --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/eu-west-$repo\",\"passphrase\":\"eu pass\"}" >/dev/null
done

job() {
    local task
    task=$(ferry create queue-item Operations replication-master local --vault "$1" --output json | jq -r '.data[0].taskId')
    ferry queue wait "$task" --timeout 300 >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault'
}
status() { jq -r .status <<<"$1"; }
res() { jq -r ".result | $2" <<<"$1"; }
same_tree() { diff -r --no-dereference "$1" "$2" >/dev/null 2>&1; }

start_host
for repo in customer-db application configurations; do
    out=$(job "{\"function\":\"repo_new\",\"repository\":\"$repo\"}")
    eq "repository $repo exists" "$(status "$out")" COMPLETED
    mkdir -p "$DS/repositories/$repo/data"
    head -c 3000000 /dev/urandom >"$DS/repositories/$repo/data/blob.bin"
    echo "$repo settings" >"$DS/repositories/$repo/settings.conf"
done

# --- setup-replication.sh, verbatim; its schedules fire on the half hour ----------------------
# The host restarts on a virtual clock three seconds before a half hour, so the */30
# schedules fire right away.
stop_host
V0=$(date -u -d '2030-01-01T00:29:57Z' +%s%3N)
export FERRY_TEST_CLOCK_OFFSET_MS=$((V0 - $(date +%s%3N)))
start_host
(cd "$T_DIR" && PATH=$T_DIR/bin:$PATH timeout 60 bash "$SEED/setup-replication.sh") >"$T_DIR/out" 2>"$T_DIR/err"
eq "setup-replication.sh exits 0" "$?" 0
fired() { [[ $(ferry list queue --output json | jq '[.data[] | select(.function == "repo_replicate" and (.status == "COMPLETED" or .status == "FAILED"))] | length') -ge 3 ]]; }
wait_for 60 fired && pass "the three replicate-* schedules fire at the half hour and finish" || fail "the schedules fire" "$(ferry list queue --output json | jq -c '[.data[] | [.function, .status]]')"
rows=$(ferry list queue --output json | jq -c '[.data[] | select(.function == "repo_replicate")]')
eq "all three complete" "$(jq -r '[.[].status] | unique | join(",")' <<<"$rows")" COMPLETED
app=$(jq -c '[.[] | select(.vaultContent.source.repository == "application")][0].responseVault' <<<"$rows")
eq "each target is reported on its own" "$(res "$app" '.targets | map(.storage + ":" + .region + ":" + .status) | join(" ")')" \
    "s3-us-west-application:us-west:COMPLETED s3-eu-west-application:eu-west:COMPLETED"
eq "with verify: each target's copy is checked" "$(res "$app" '[.targets[].verify.damaged // [] | length] | add')" 0
eq "both targets hold the same snapshot id" "$(res "$app" '[.targets[].push.snapshot_id] | unique | length')" 1
eq "the mode is reported" "$(res "$app" .mode)" incremental

# A target restores what was replicated (the eu-west one is encrypted).
out=$(job '{"function":"repo_pull","repository":"restored","from_repository":"application","storage":"s3-eu-west-application"}')
eq "the eu-west replica restores" "$(status "$out")" COMPLETED
same_tree "$DS/repositories/application" "$DS/repositories/restored" && pass "and holds the repository exactly" || fail "the replica holds the repository"
out=$(job '{"function":"repo_pull","repository":"restored-s3","from_repository":"application","storage":"s3-us-west-application"}')
eq "so does the us-west one, from S3" "$(status "$out")" COMPLETED
same_tree "$DS/repositories/application" "$DS/repositories/restored-s3" && pass "exactly" || fail "the S3 replica holds the repository"

# --- incremental: only what each target lacks -------------------------------------------------
head -c 500000 /dev/urandom >"$DS/repositories/application/data/new.bin"
Q='{"function":"repo_replicate","source":{"repository":"application","region":"us-east"},"targets":[{"region":"us-west","storage":"s3-us-west-application"},{"region":"eu-west","storage":"s3-eu-west-application"}],"mode":"incremental"}'
out=$(job "$Q")
eq "an incremental run completes" "$(status "$out")" COMPLETED
eq "and reads only the changed file on each target" "$(res "$out" '[.targets[].push.stats.reused_files] | join(",")')" "2,2"
new=$(res "$out" '[.targets[].push.stats.bytes_new] | max')
((new <= 600000)) && pass "and sends only the new data ($new bytes new per target)" || fail "incremental sends only new data" "$new"
out=$(job "$(jq -c '.mode = "full" | .snapshot_id = "full-1"' <<<"$Q")")
eq "full mode reads every file again" "$(res "$out" '[.targets[].push.stats.reused_files] | join(",")')" "0,0"
eq "and still stores nothing twice" "$(res "$out" '[.targets[].push.stats.bytes_new] | max')" 0

# --- one failing target does not stop the others ----------------------------------------------
ferry create storage Operations unplugged --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/no-such-disk/ferry\"}" >/dev/null
out=$(job '{"function":"repo_replicate","source":{"repository":"configurations"},"targets":["unplugged","s3-us-west-configurations",{"storage":"missing-storage"}]}')
eq "with a failing target the item fails" "$(status "$out")" FAILED
eq "each target has its own outcome" "$(res "$out" '.targets | map(.storage + ":" + .status) | join(" ")')" \
    "unplugged:FAILED s3-us-west-configurations:COMPLETED missing-storage:FAILED"
contains "the unplugged target says why" "$(res "$out" '.targets[0].error.message')" "not available"
contains "the missing storage says so" "$(res "$out" '.targets[2].error.message')" "no storage named missing-storage"
contains "the item's error names both failures" "$(jq -r .error.message <<<"$out")" "replication failed for 2 of 3 targets"
eq "the counts are reported" "$(res "$out" '"\(.completed)/\(.failed)"')" "1/2"

# --- a storage source: byte-for-byte replicas ---------------------------------------------------
ferry create storage Operations primary --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/primary\",\"passphrase\":\"pp\"}" >/dev/null
ferry create storage Operations replica-a --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/replica-a\",\"passphrase\":\"pp\"}" >/dev/null
s3_storage replica-b storage-replica '{"passphrase":"pp"}'
for repo in customer-db application; do
    out=$(job "{\"function\":\"repo_push\",\"repository\":\"$repo\",\"storage\":\"primary\",\"snapshot_id\":\"s1\"}")
    eq "push $repo to the primary" "$(status "$out")" COMPLETED
done
S='{"function":"repo_replicate","source":{"storage":"primary","repository":"application"},"targets":["replica-a","replica-b"],"verify":true}'
out=$(job "$S")
eq "a storage source replicates to both" "$(status "$out")" COMPLETED
eq "copying the repository's snapshot to each" "$(res "$out" '[.targets[].copy.snapshots_copied | join(",")] | join(" ")')" "application/s1 application/s1"
eq "the replica shares the primary's config" "$(cat "$T_DIR/replica-a/config")" "$(cat "$T_DIR/primary/config")"
eq "and only the repository's data: customer-db's snapshot is not copied" "$(ls "$T_DIR/replica-a/snapshots")" application
out=$(job '{"function":"repo_pull","repository":"from-replica","from_repository":"application","storage":"replica-b"}')
eq "a replica restores" "$(status "$out")" COMPLETED
out=$(job "$S")
eq "a second run copies nothing (local and S3 replicas)" "$(res "$out" '[.targets[].copy.packs_copied, (.targets[].copy.snapshots_copied | length)] | add')" 0
eq "and reports the snapshot present" "$(res "$out" '[.targets[].copy.snapshots_present] | join(",")')" "1,1"
head -c 300000 /dev/urandom >"$DS/repositories/application/data/newer.bin"
packs() { find "$T_DIR/primary/data" -type f | wc -l; }
before=$(packs)
out=$(job '{"function":"repo_push","repository":"application","storage":"primary","snapshot_id":"s2"}')
added=$(($(packs) - before))
out=$(job "$S")
eq "after a new push only the new snapshot is copied" "$(res "$out" '.targets[0].copy.snapshots_copied | join(",")')" application/s2
eq "and only the packs that push added ($added)" "$(res "$out" '.targets[0].copy.packs_copied')" "$added"
out=$(job '{"function":"repo_replicate","source":{"storage":"primary"},"targets":["replica-a"]}')
eq "without a repository every snapshot of the storage goes" "$(res "$out" '.targets[0].copy.snapshots_copied | join(",")')" customer-db/s1

# A target that already holds another storage is refused; the other target still gets its copy.
ferry create storage Operations foreign --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/foreign\"}" >/dev/null
job '{"function":"repo_push","repository":"configurations","storage":"foreign"}' >/dev/null
out=$(job '{"function":"repo_replicate","source":{"storage":"primary"},"targets":["foreign","replica-b"]}')
eq "a foreign target fails, the other completes" "$(res "$out" '.targets | map(.status) | join(",")')" FAILED,COMPLETED
contains "the foreign target's error says what to do" "$(res "$out" '.targets[0].error.message')" "already holds another storage"

# A damaged replica: incremental does not see it, verify does, full mode repairs it.
pack=$(find "$T_DIR/replica-a/data" -type f -name '[0-9a-f]*' | head -1)
printf 'XXXX' | dd of="$pack" bs=1 seek=100 conv=notrunc 2>/dev/null
out=$(job '{"function":"repo_replicate","source":{"storage":"primary"},"targets":["replica-a"],"verify":true}')
eq "verify finds the damaged pack on the replica" "$(status "$out")" FAILED
contains "and names it" "$(res "$out" '.targets[0].error.message')" "$(basename "$pack")"
out=$(job '{"function":"repo_replicate","source":{"storage":"primary"},"targets":["replica-a"],"mode":"full","verify":true}')
eq "full mode copies every pack again and the replica verifies" "$(status "$out")" COMPLETED

# --- bad parameters are refused before anything runs ---------------------------------------------
out=$(job '{"function":"repo_replicate","source":{},"targets":["replica-a"]}')
eq "a source without repository or storage is invalid" "$(status "$out")" FAILED
contains "saying what it needs" "$(jq -r .error.message <<<"$out")" "source needs"
out=$(job '{"function":"repo_replicate","source":{"repository":"application"},"targets":["replica-a"],"mode":"sometimes"}')
contains "an unknown mode is refused" "$(jq -r .error.message <<<"$out")" 'mode must be "incremental" or "full"'
out=$(job '{"function":"repo_replicate","source":{"storage":"primary"},"targets":["primary"]}')
contains "the source as its own target is refused" "$(jq -r .error.message <<<"$out")" "is the source storage itself"

t_done
