#!/usr/bin/env bash
# Cold storage (issue 15, point 7) against moto_server's storage classes and RestoreObject:
# an S3 storage with "storage_class": "GLACIER" keeps its data packs in GLACIER and the rest
# (config, indexes, manifests, locks, the packs of snapshot trees) in STANDARD, so pushes,
# dedup, listing and retention never read a cold object; repo_verify checks what it can
# without a restore and says what it skipped; repo_pull restores (thaws) the packs it reads,
# reports progress while it waits, gives up clearly after "thaw_timeout", and then works.
. "$(dirname "$0")/../lib.sh"

HELPERS=$FERRY_ROOT/tests/helpers
write_config 'lease = { poll_ms = 100; };' 'retry = { max_retries = 0; };' \
    'plugin = { repo = { gc_grace_hours = 0.0; }; };'
install_plugins
MOTO=$T_DIR/moto
MP=$("$HELPERS/moto.sh" start "$MOTO" 2>"$T_DIR/moto.err") || { fail "moto starts" "$(cat "$T_DIR/moto.err")"; t_done; exit 1; }
"$HELPERS/moto.sh" bucket "$MOTO" ferry-cold
T_EXTRA_PIDS=$(cat "$MOTO/moto.pid")
stop_servers() { "$HELPERS/moto.sh" stop "$MOTO" >/dev/null 2>&1; t_cleanup; }
trap stop_servers EXIT
AKID=$(cat "$MOTO/access_key_id") SECRET=$(cat "$MOTO/secret_access_key")

# s3py CMD ARGS...: the bucket through boto3.
#   classes PREFIX    "KEY CLASS" per object
#   get KEY           reads KEY; prints "ok" or the error code
#   slow SECONDS      moto restores take SECONDS from now on (its state manager)
s3py() {
    python3 - "$MP" "$AKID" "$SECRET" "$@" <<'EOF'
import json, sys, urllib.request, boto3, botocore
port, akid, secret, cmd, *args = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id=akid, aws_secret_access_key=secret)
if cmd == "classes":
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="ferry-cold", Prefix=args[0]):
        for o in page.get("Contents", []):
            print(o["Key"], o.get("StorageClass", "STANDARD"))
elif cmd == "get":
    try:
        s3.get_object(Bucket="ferry-cold", Key=args[0])["Body"].read()
        print("ok")
    except botocore.exceptions.ClientError as e:
        print(e.response["Error"]["Code"])
elif cmd == "slow":
    body = json.dumps({"model_name": "s3::keyrestore",
                       "transition": {"progression": "time", "seconds": int(args[0])}}).encode()
    urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{port}/moto-api/state-manager/set-transition", data=body, method="POST"))
EOF
}

DS=$T_DIR/ds
ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
ferry create machine Ops local box --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
storage() { # storage NAME PREFIX EXTRA_JSON
    ferry create storage Ops "$1" --vault "$(jq -nc --arg a "$AKID" --arg s "$SECRET" --arg e "http://127.0.0.1:$MP" \
        --arg p "$2" --argjson x "$3" '{provider:"s3", bucket:"ferry-cold", access_key_id:$a,
        secret_access_key:$s, endpoint:$e, prefix:$p, passphrase:"cold pass"} + $x')" >/dev/null 2>"$T_DIR/create.err"
}
storage glacier glacier '{"storage_class":"GLACIER","thaw_timeout":120}' || fail "a GLACIER storage is created" "$(cat "$T_DIR/create.err")"
storage hurried glacier '{"storage_class":"GLACIER","thaw_timeout":2}' || fail "a second view of it is created"
storage ir ir '{"storage_class":"GLACIER_IR"}' || fail "a GLACIER_IR storage is created"
start_host

submit() { ferry create queue-item Ops box local --vault "$1" --output json | jq -r '.data[0].taskId'; }
job() { # job VAULT: runs one item to its end, prints its response vault; its task id goes to $T_DIR/last
    local task
    task=$(submit "$1")
    echo "$task" >"$T_DIR/last"
    ferry queue wait "$task" --timeout 300 >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault'
}
last_trace() { ferry queue trace "$(cat "$T_DIR/last")" 2>&1; }
status() { jq -r .status <<<"$1"; }
res() { jq -r ".result$2" <<<"$1"; }
errmsg() { jq -r '.error.message // empty' <<<"$1"; }
# cold_reads: moto's log lines of GETs of the objects now in GLACIER (reads of cold objects)
cold_reads() {
    s3py classes glacier/ | awk '$2 == "GLACIER" {print "GET /ferry-cold/" $1 " "}' >"$T_DIR/cold-patterns"
    grep -cFf "$T_DIR/cold-patterns" "$MOTO/moto.log"
}

# --- a bad class is refused at once ------------------------------------------------------------
storage badclass bad '{"storage_class":"FROZEN"}'
out=$(job '{"function":"repo_list","storage":"badclass"}')
contains "an unknown storage_class fails with the classes S3 knows" "$(errmsg "$out")" "DEEP_ARCHIVE"

# --- push: data packs cold, the rest STANDARD ---------------------------------------------------
SRC=$DS/repositories/arch
mkdir -p "$SRC/sub"
head -c 20000000 /dev/urandom >"$SRC/big.bin" # > 16 MiB: two data packs
head -c 300000 /dev/urandom >"$SRC/sub/small.bin"
echo "monthly archive" >"$SRC/sub/note.txt"
out=$(job '{"function":"repo_push","repository":"arch","storage":"glacier","snapshot_id":"m1","retention_days":0.00002}')
eq "a push to the GLACIER storage completes" "$(status "$out")" COMPLETED
s3py classes glacier/ >"$T_DIR/classes"
data_cold=$(grep -c '^glacier/data/.* GLACIER$' "$T_DIR/classes")
data_hot=$(grep -c '^glacier/data/.* STANDARD$' "$T_DIR/classes")
[[ $data_cold -ge 2 ]] && pass "its data packs are in GLACIER ($data_cold)" || fail "data packs in GLACIER" "$(cat "$T_DIR/classes")"
[[ $data_hot -ge 1 ]] && pass "the pack of snapshot trees stays STANDARD ($data_hot)" || fail "tree pack STANDARD" "$(cat "$T_DIR/classes")"
eq "config, indexes and manifests stay STANDARD" "$(grep -v '^glacier/data/' "$T_DIR/classes" | grep -vc ' STANDARD$')" 0
eq "moto refuses a plain read of a cold pack" "$(s3py get "$(grep ' GLACIER$' "$T_DIR/classes" | head -1 | cut -d' ' -f1)")" InvalidObjectState
base=$(cold_reads) # that read

echo "a change" >>"$SRC/sub/note.txt"
out=$(job '{"function":"repo_push","repository":"arch","storage":"glacier","snapshot_id":"m2","verify":true}')
eq "an incremental push with verify (dedup against cold packs) completes" "$(status "$out")" COMPLETED
[[ $(res "$out" .stats.bytes_new) -lt 1000000 ]] && pass "and stores only the change" || fail "incremental" "$out"
out=$(job '{"function":"repo_list","storage":"glacier"}')
eq "listing works" "$(res "$out" '.snapshots | map(.id) | sort | join(",")')" m1,m2
sleep 2
out=$(job '{"function":"repo_gc","storage":"glacier","full":true}')
eq "retention on the cold storage completes" "$(status "$out")/$(res "$out" '.expired | join(",")')" COMPLETED/arch/m1
eq "push, dedup, listing and retention read no cold object" "$(cold_reads)" "$base"

# --- verify: what it can without a restore --------------------------------------------------------
out=$(job '{"function":"repo_verify","storage":"glacier"}')
eq "repo_verify of the cold storage completes" "$(status "$out")/$(res "$out" .ok)" COMPLETED/true
skipped=$(res "$out" .cold_packs_skipped)
[[ $skipped -ge 2 ]] && pass "and says it skipped reading $skipped cold packs" || fail "verify skips cold packs" "$out"
contains "its log says why" "$(last_trace)" "cold storage class"
eq "verify read no cold object" "$(cold_reads)" "$base"

# --- pull: thaw, wait, read ----------------------------------------------------------------------
s3py slow 4
out=$(job '{"function":"repo_pull","repository":"early","from_repository":"arch","storage":"hurried"}')
eq "a pull whose thaw outlasts thaw_timeout fails" "$(status "$out")" FAILED
contains "saying the packs are still being restored" "$(errmsg "$out")" "still being restored"
contains "and what to do" "$(errmsg "$out")" "thaw_timeout"
not_contains "not InvalidObjectState" "$(errmsg "$out")" "InvalidObjectState"
out=$(job '{"function":"repo_pull","repository":"back","from_repository":"arch","storage":"glacier"}')
eq "a pull from the cold storage thaws, waits and completes" "$(status "$out")" COMPLETED
[[ $(res "$out" .thawed_packs) -ge 2 ]] && pass "it restored the packs it read ($(res "$out" .thawed_packs))" || fail "thawed packs" "$out"
trace=$(last_trace)
contains "it reports progress while waiting" "$trace" "thawing arch from cold storage: "
grep -q 'POST /ferry-cold/glacier/data/.*restore' "$MOTO/moto.log" && pass "RestoreObject was asked for" || fail "RestoreObject requests"
cmp=$(tree_compare "$SRC" "$DS/repositories/back")
[[ $? -eq 0 ]] && pass "the round trip is exact (${cmp##*$'\n'})" || fail "cold round trip" "$cmp"
out=$(job '{"function":"repo_pull","repository":"again","from_repository":"arch","storage":"glacier"}')
eq "a second pull finds them thawed" "$(status "$out")" COMPLETED

# --- an instant class needs no thaw ----------------------------------------------------------------
out=$(job '{"function":"repo_push","repository":"arch","storage":"ir"}')
eq "a push to a GLACIER_IR storage completes" "$(status "$out")" COMPLETED
n_ir=$(s3py classes ir/data/ | grep -c ' GLACIER_IR$')
[[ $n_ir -ge 2 ]] && pass "its data packs are GLACIER_IR ($n_ir)" || fail "GLACIER_IR packs" "$n_ir"
out=$(job '{"function":"repo_verify","storage":"ir"}')
eq "and verify reads them all" "$(status "$out")/$(res "$out" .cold_packs_skipped)" COMPLETED/0

t_done
