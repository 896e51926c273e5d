#!/usr/bin/env bash
# The s3 storage provider (issue 9) against moto_server on loopback with SigV4 signatures
# checked: exact round trips through path-style and virtual-host-style URLs, a key prefix and
# two storages in one bucket, encrypted and plain, incremental pushes, verify, retention; an
# interrupted push; 500s, dropped connections, a hung server and a dead one (through
# tests/helpers/faultproxy.sh and SIGSTOP/SIGKILL on moto); the errors of wrong keys and a
# missing bucket; credentials that appear nowhere; the connections and bwlimit settings.
. "$(dirname "$0")/../lib.sh"

HELPERS=$FERRY_ROOT/tests/helpers
write_config 'lease = { poll_ms = 100; };' 'plugin = { repo = { gc_grace_hours = 0.0; }; };'
install_plugins
MOTO=$T_DIR/moto FP=$T_DIR/proxy
if ! MP=$("$HELPERS/moto.sh" start "$MOTO" 2>"$T_DIR/moto.err"); then
    fail "moto_server starts with signature checking" "$(cat "$T_DIR/moto.err")"
    t_done
    exit 1
fi
"$HELPERS/moto.sh" bucket "$MOTO" ferry-e2e
FPORT=$("$HELPERS/faultproxy.sh" start "$FP" "$MP")
T_EXTRA_PIDS="$(cat "$MOTO/moto.pid") $(cat "$FP/proxy.pid")"
stop_servers() {
    "$HELPERS/faultproxy.sh" stop "$FP" 2>/dev/null
    "$HELPERS/moto.sh" stop "$MOTO" 2>/dev/null
}
AKID=$(cat "$MOTO/access_key_id")
SECRET=$(cat "$MOTO/secret_access_key")
WRONG_SECRET="WrongSecret-e2e-Zq7x-$RANDOM$RANDOM-not-the-real-one"
WRONG_TOKEN="FakeSessionToken-e2e-Kp3v-$RANDOM$RANDOM"

# s3py CMD ARGS...: inspects the bucket with boto3 (signed with the test key).
#   ls PREFIX     prints "KEY SIZE" per object under PREFIX
#   put KEY SIZE  writes SIZE random bytes
#   get KEY       prints the object
#   strays KEYPREFIX N   writes N tiny objects named KEYPREFIX + zero-padded counter
s3py() {
    python3 - "$(cat "$MOTO/port")" "$(cat "$MOTO/access_key_id")" "$(cat "$MOTO/secret_access_key")" "$@" <<'EOF'
import os, sys, boto3
port, akid, secret, cmd, *args = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id=akid, aws_secret_access_key=secret)
def keys(prefix):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="ferry-e2e", Prefix=prefix):
        for o in page.get("Contents", []):
            yield o["Key"], o["Size"]
if cmd == "ls":
    for k, n in keys(args[0]):
        print(k, n)
elif cmd == "put":
    s3.put_object(Bucket="ferry-e2e", Key=args[0], Body=os.urandom(int(args[1])))
elif cmd == "get":
    sys.stdout.buffer.write(s3.get_object(Bucket="ferry-e2e", Key=args[0])["Body"].read())
elif cmd == "strays":  # strays KEYPREFIX N: N tiny objects named like packs
    for i in range(int(args[1])):
        s3.put_object(Bucket="ferry-e2e", Key=args[0] + "%062d" % i, Body=b"x" * 100)
EOF
}

DS=$T_DIR/ds
ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
ferry create machine Ops local box --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
# storage NAME EXTRA_JSON: an s3 storage in bucket ferry-e2e with the test key
storage() {
    ferry create storage Ops "$1" --vault "{\"provider\":\"s3\",\"bucket\":\"ferry-e2e\",\"access_key_id\":\"$AKID\",\"secret_access_key\":\"$SECRET\",$2}" >/dev/null ||
        fail "storage $1 is created"
}
# Two storages in one bucket under different prefixes: one path style, one virtual-host style
# (http://ferry-e2e.localhost:PORT: libcurl resolves *.localhost to loopback, and moto takes
# the bucket from the Host header).
storage plain "\"endpoint\":\"http://127.0.0.1:$MP\",\"prefix\":\"ferry/plain\""
storage sealed "\"endpoint\":\"http://localhost:$MP\",\"url_style\":\"virtual\",\"prefix\":\"/ferry/sealed/\",\"passphrase\":\"s3 e2e pass\""
start_host

submit() { ferry create queue-item Ops box local --vault "$1" --output json | jq -r '.data[0].taskId'; }
# job VAULT: runs one item to its end; prints its response vault (JSON). Every task is
# listed in $T_DIR/tasks for the credential checks.
job() {
    local task
    task=$(submit "$1")
    echo "$task" >>"$T_DIR/tasks"
    ferry queue wait "$task" --timeout 240 >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault'
}
status() { jq -r .status <<<"$1"; }
res() { jq -r ".result$2" <<<"$1"; }
errmsg() { jq -r '.error.message // empty' <<<"$1"; }
errcode() { jq -r '.error.code // empty' <<<"$1"; }
verify_ok() { # verify_ok NAME STORAGE
    local out
    out=$(job "{\"function\":\"repo_verify\",\"storage\":\"$2\"}")
    if [[ $(status "$out") == COMPLETED && $(res "$out" .ok) == true ]]; then pass "$1"; else fail "$1" "$out"; fi
}

# round_trip NAME REPO STORAGE: pulls REPO's newest snapshot into a new repository, compares.
round_trip() {
    local copy="rt-$RANDOM" out cmp
    out=$(job "{\"function\":\"repo_pull\",\"repository\":\"$copy\",\"from_repository\":\"$2\",\"storage\":\"$3\"}")
    if [[ $(status "$out") != COMPLETED ]]; then fail "$1" "$out"; return; fi
    cmp=$(tree_compare "$DS/repositories/$2" "$DS/repositories/$copy")
    [[ $? -eq 0 ]] && pass "$1 (${cmp##*$'\n'})" || fail "$1" "$cmp"
}
# moto's request log: lines since the mark
log_mark() { wc -l <"$MOTO/moto.log"; }
log_since() { tail -n +"$(($1 + 1))" "$MOTO/moto.log"; }

# --- the tree -----------------------------------------------------------------------------------
SRC=$DS/repositories/web
mkdir -p "$SRC/data" "$SRC/empty/dir" "$SRC/links"
: >"$SRC/data/zero-bytes"
printf 'x' >"$SRC/data/one-byte"
head -c 100000 /dev/urandom >"$SRC/data/hundred-kb.bin"
head -c 5000000 /dev/urandom >"$SRC/data/five-mb.bin"
head -c 40000000 /dev/urandom >"$SRC/data/forty-mb.bin" # > 16 MiB: several packs
python3 -c "
with open('$SRC/data/text.log', 'w') as f:
    for i in range(100000): f.write(f'line {i} of a compressible log file\n')"
ln -s ../data/one-byte "$SRC/links/relative"
ln -s /nonexistent/target "$SRC/links/dangling"
echo secret >"$SRC/links/private" && chmod 600 "$SRC/links/private"
touch -d '2001-01-01' "$SRC/empty/dir"

# --- push, pull, incremental, verify: encrypted + virtual host, plain + path style -------------
for st in sealed plain; do
    out=$(job "{\"function\":\"repo_push\",\"repository\":\"web\",\"storage\":\"$st\",\"verify\":true,\"snapshot_id\":\"first\"}")
    eq "push to the $st storage completes" "$(status "$out")" COMPLETED
    eq "push to $st: every file was read" "$(res "$out" .stats.reused_files)" 0
    round_trip "the $st round trip is exact" web "$st"
done
packs=$(s3py ls ferry/plain/data/ | wc -l)
[[ $packs -ge 3 ]] && pass "the 40 MB file makes several packs ($packs)" || fail "several packs" "$packs"
n_path=$(grep -c '"PUT /ferry-e2e/ferry/plain/data/' "$MOTO/moto.log")
[[ $n_path -ge 3 ]] && pass "path style: the bucket is in the path ($n_path pack PUTs)" || fail "path style URLs" "$n_path"
n_virtual=$(grep -c '"PUT /ferry/sealed/data/' "$MOTO/moto.log")
n_wrong=$(grep -c '"PUT /ferry-e2e/ferry/sealed/' "$MOTO/moto.log")
[[ $n_virtual -ge 3 && $n_wrong -eq 0 ]] && pass "virtual-host style: the bucket is in the host name, not the path ($n_virtual pack PUTs)" ||
    fail "virtual-host style URLs" "$n_virtual in the host, $n_wrong in the path"
sealed_keys=$(s3py ls ferry/sealed/ | wc -l)
[[ $sealed_keys -ge 4 ]] && pass "and its objects are in bucket ferry-e2e under the prefix ($sealed_keys)" ||
    fail "virtual-host objects land in the bucket" "$sealed_keys"
eq "the bucket holds nothing outside the two prefixes" "$(s3py ls '' | grep -cv '^ferry/\(plain\|sealed\)/')" 0
cfg_plain=$(s3py get ferry/plain/config) cfg_sealed=$(s3py get ferry/sealed/config)
[[ -n $(jq -r .id <<<"$cfg_plain") && $(jq -r .id <<<"$cfg_plain") != "$(jq -r .id <<<"$cfg_sealed")" ]] &&
    pass "two storages in one bucket: each has its own config" || fail "two configs" "$cfg_plain"
eq "the sealed storage is encrypted, the plain one not" \
    "$(jq -r .hash <<<"$cfg_sealed"),$(jq -r .encryption <<<"$cfg_plain")" hmac-sha256,null
s3py get "$(s3py ls ferry/sealed/data/ | head -1 | cut -d' ' -f1)" >"$T_DIR/a-pack"
! grep -qa "compressible log file" "$T_DIR/a-pack" && pass "a sealed pack holds no plaintext" ||
    fail "a sealed pack holds no plaintext"

echo "a new line" >>"$SRC/data/text.log"
echo "new file" >"$SRC/new.txt"
for st in sealed plain; do
    out=$(job "{\"function\":\"repo_push\",\"repository\":\"web\",\"storage\":\"$st\",\"snapshot_id\":\"second\"}")
    eq "incremental push to $st completes" "$(status "$out")" COMPLETED
    eq "its parent is the first snapshot" "$(res "$out" .parent)" first
    read_bytes=$(res "$out" .stats.bytes_read)
    [[ $read_bytes -lt 10000000 ]] && pass "it reads only changed files ($read_bytes bytes)" ||
        fail "incremental push reads only changed files" "$read_bytes"
    new=$(res "$out" .stats.bytes_new)
    [[ $new -lt 10000000 ]] && pass "and uploads little ($new bytes new)" || fail "incremental upload" "$new"
    verify_ok "the $st storage verifies" "$st"
done
round_trip "the incremental snapshot round-trips" web sealed
out=$(job '{"function":"repo_list","storage":"plain"}')
eq "both snapshots are listed (keys relative to the prefix)" "$(res "$out" '.snapshots | map(.id) | sort | join(",")')" first,second
# ferry repo snapshots|ls|diff read the S3 storage themselves (no host), its secrets opened
# for the worker only (their output joins the credential check below).
ferry repo snapshots --storage sealed --output json >"$T_DIR/browse.txt" 2>&1
eq "ferry repo snapshots of an encrypted S3 storage" "$(jq -c '.data | map(.id)' "$T_DIR/browse.txt")" '["first","second"]'
ferry repo ls sec new.txt --storage sealed -l >>"$T_DIR/browse.txt" 2>&1
contains "ferry repo ls of a snapshot by a prefix of its id" "$(tail -1 "$T_DIR/browse.txt")" " new.txt"
ferry repo diff first second --storage sealed --output json >"$T_DIR/browse-diff.txt" 2>&1
cat "$T_DIR/browse-diff.txt" >>"$T_DIR/browse.txt"
eq "ferry repo diff" "$(jq -c '.data.changes | map(.change + .path)' "$T_DIR/browse-diff.txt")" '["Mdata/text.log","+new.txt"]'

# --- retention --------------------------------------------------------------------------------
SHORT=0.00002 # days: about 1.7 s
mkdir -p "$DS/repositories/ret"
head -c 3000000 /dev/urandom >"$DS/repositories/ret/old.bin"
echo keep >"$DS/repositories/ret/keep.txt"
out=$(job "{\"function\":\"repo_push\",\"repository\":\"ret\",\"storage\":\"plain\",\"snapshot_id\":\"r1\",\"retention_days\":$SHORT}")
eq "a push with retention completes" "$(status "$out")" COMPLETED
rm "$DS/repositories/ret/old.bin"
head -c 2000000 /dev/urandom >"$DS/repositories/ret/new.bin"
sleep 2
out=$(job '{"function":"repo_push","repository":"ret","storage":"plain","snapshot_id":"r2","retention_days":30}')
eq "the next push removes the expired snapshot" "$(res "$out" '.retention.expired | join(",")')" ret/r1
[[ $(res "$out" .retention.packs_deleted) -ge 1 && $(res "$out" .retention.bytes_freed) -ge 3000000 ]] &&
    pass "and deletes its data ($(res "$out" .retention.bytes_freed) bytes freed)" || fail "retention frees data" "$out"
eq "the manifest is gone from the bucket" "$(s3py ls ferry/plain/snapshots/ret/ | cut -d' ' -f1 | xargs -n1 basename 2>/dev/null | tr '\n' ' ')" "r2 "
verify_ok "the storage verifies after retention" plain
round_trip "the kept snapshot round-trips" ret plain

# --- an interrupted push ------------------------------------------------------------------------
# A storage with the same bucket and prefix, slowed to 8 MiB/s (2 MiB/s a connection), and a
# push whose worker is killed (SIGKILL) once its first pack arrived. (A cancel is not used:
# the push notices it only between files, and all of this one is read before the uploads end.)
storage plain-slow "\"endpoint\":\"http://127.0.0.1:$MP\",\"prefix\":\"ferry/plain\",\"bwlimit\":\"8M\""
mkdir -p "$DS/repositories/big"
head -c 64000000 /dev/urandom >"$DS/repositories/big/blob.bin"
mark=$(log_mark)
task=$(submit '{"function":"repo_push","repository":"big","storage":"plain-slow","snapshot_id":"b1"}')
echo "$task" >>"$T_DIR/tasks"
# Killed once a pack arrived and an index lists it (a pack not indexed yet is an orphan, for
# repo_gc full below).
packs_arrived() { log_since "$mark" | grep -q '"PUT /ferry-e2e/ferry/plain/index/.* 200'; }
wait_for 60 packs_arrived
# The worker running the push is the one with the most threads.
worker=$(ps -o pid=,nlwp= --ppid "$HOST_PID" | sort -k2 -n | tail -1 | awk '{print $1}')
kill -9 "$worker"
ferry queue wait "$task" --timeout 30 >/dev/null 2>&1
eq "the push is killed midway" "$(ferry list queue --task-id "$task" --output json | jq -r '.data[0].responseVault.error.code')" crashed
eq "it leaves no snapshot" "$(s3py ls ferry/plain/snapshots/big/ | wc -l)" 0
out=$(job '{"function":"repo_verify","storage":"plain"}')
eq "the interrupted storage verifies" "$(status "$out"),$(res "$out" .ok)" COMPLETED,true
out=$(job '{"function":"repo_push","repository":"big","storage":"plain","snapshot_id":"b2"}')
eq "the next push completes" "$(status "$out")" COMPLETED
new=$(res "$out" .stats.bytes_new)
[[ $new -le 56000000 ]] && pass "reusing what arrived ($new of 64000000 bytes new)" || fail "reuses packs" "$new"
round_trip "and round-trips" big plain
# 1,005 orphans: more than one page (1,000 keys) of ListObjectsV2. And a hidden object, which
# a listing never reports.
s3py strays ferry/plain/data/ab/ab 1005
s3py put ferry/plain/data/ab/.tmp-upload 100
out=$(job '{"function":"repo_gc","storage":"plain"}')
eq "a normal repo_gc leaves packs no index lists" "$(s3py ls ferry/plain/data/ab/ab0000 | wc -l)" 1005
out=$(job '{"function":"repo_gc","storage":"plain","full":true}')
deleted=$(res "$out" .unindexed_packs_deleted)
[[ $deleted -ge 1005 && $deleted -le 1010 ]] &&
    pass "repo_gc full deletes them, listed over two pages (and any the killed push left: $deleted)" ||
    fail "repo_gc full deletes the orphans" "$out"
eq "the orphans are gone from the bucket" "$(s3py ls ferry/plain/data/ab/ab0000 | wc -l)" 0
# A temporary object (".tmp-*") is never listed as data; repo_gc full removes those older than
# the grace period (0 here; one without a time in its name counts as old).
eq "a temporary object is not taken for a pack, and repo_gc full removes it" "$(s3py ls ferry/plain/data/ab/.tmp | wc -l)" 0
verify_ok "the storage verifies after repo_gc full" plain

# --- errors: wrong keys, a missing bucket, a session token --------------------------------------
ferry create storage Ops wrong-secret --vault "{\"provider\":\"s3\",\"bucket\":\"ferry-e2e\",\"endpoint\":\"http://127.0.0.1:$MP\",\"prefix\":\"x\",\"access_key_id\":\"$AKID\",\"secret_access_key\":\"$WRONG_SECRET\"}" >/dev/null
out=$(job '{"function":"repo_push","repository":"web","storage":"wrong-secret"}')
eq "a wrong secret fails the push as a bad parameter" "$(status "$out"),$(errcode "$out")" FAILED,bad_parameter
contains "naming S3's code" "$(errmsg "$out")" SignatureDoesNotMatch
contains "and what to fix" "$(errmsg "$out")" '"secret_access_key"'
eq "and is tried once" "$(jq -r .attempts <<<"$out")" 1
ferry create storage Ops wrong-key --vault "{\"provider\":\"s3\",\"bucket\":\"ferry-e2e\",\"endpoint\":\"http://127.0.0.1:$MP\",\"access_key_id\":\"AKIANOTAKEY000000000\",\"secret_access_key\":\"$WRONG_SECRET\"}" >/dev/null
out=$(job '{"function":"repo_push","repository":"web","storage":"wrong-key"}')
contains "an unknown access key is named" "$(errmsg "$out")" 'InvalidAccessKeyId'
contains "with what to fix" "$(errmsg "$out")" '"access_key_id"'
storage no-bucket "\"endpoint\":\"http://127.0.0.1:$MP\""
ferry update storage-vault Ops no-bucket --vault '{"bucket":"no-such-bucket-e2e"}' >/dev/null
out=$(job '{"function":"repo_push","repository":"web","storage":"no-bucket"}')
contains "a missing bucket is named" "$(errmsg "$out")" "bucket no-such-bucket-e2e does not exist at http://127.0.0.1:$MP: create it"
"$HELPERS/moto.sh" session "$MOTO"
SESSION_SECRET=$(cat "$MOTO/session_secret_access_key") SESSION_TOKEN=$(cat "$MOTO/session_token")
ferry create storage Ops session --vault "{\"provider\":\"s3\",\"bucket\":\"ferry-e2e\",\"endpoint\":\"http://127.0.0.1:$MP\",\"prefix\":\"ferry/session\",\"access_key_id\":\"$(cat "$MOTO/session_access_key_id")\",\"secret_access_key\":\"$SESSION_SECRET\",\"session_token\":\"$SESSION_TOKEN\"}" >/dev/null
out=$(job '{"function":"repo_push","repository":"ret","storage":"session"}')
eq "temporary credentials with a session token push" "$(status "$out")" COMPLETED
round_trip "and round-trip" ret session
ferry update storage-vault Ops session --vault "{\"session_token\":\"$WRONG_TOKEN\"}" >/dev/null
out=$(job '{"function":"repo_push","repository":"ret","storage":"session"}')
contains "a refused session token is named" "$(errmsg "$out")" '"session_token"'
ferry create storage Ops bad-url --vault '{"provider":"s3","bucket":"ferry-e2e","endpoint":"http://203.0.113.9:9000","access_key_id":"A","secret_access_key":"B"}' >/dev/null
out=$(job '{"function":"repo_push","repository":"web","storage":"bad-url"}')
contains "plain http to another machine is refused" "$(errmsg "$out")" 'use https, or set "insecure_http": true'

# --- network faults, through the fault proxy -----------------------------------------------------
# Short timeouts and backoff: three retries wait about 1.5 s in all.
FAULT_OPTS="\"endpoint\":\"http://127.0.0.1:$FPORT\",\"prefix\":\"ferry/faults\",\"timeout\":2,\"connect_timeout\":2,\"retries\":3,\"retry_delay_ms\":200"
storage faults "$FAULT_OPTS"
storage faults-slow "$FAULT_OPTS,\"bwlimit\":\"4M\""
mkdir -p "$DS/repositories/net"
head -c 24000000 /dev/urandom >"$DS/repositories/net/a.bin"
out=$(job '{"function":"repo_push","repository":"net","storage":"faults","snapshot_id":"n0"}')
eq "a push through the proxy completes" "$(status "$out")" COMPLETED

# fault_push SNAPSHOT COMMAND...: starts a slow push, runs COMMAND (the fault) once the push
# talks to the server, waits for the push to end; FAULT_OUT: its response vault.
fault_push() {
    local snap=$1
    shift
    head -c 4000000 /dev/urandom >"$DS/repositories/net/$snap.bin"
    local m
    m=$(log_mark)
    local t
    t=$(submit "{\"function\":\"repo_push\",\"repository\":\"net\",\"storage\":\"faults-slow\",\"snapshot_id\":\"$snap\"}")
    echo "$t" >>"$T_DIR/tasks"
    flowing() { log_since "$m" | grep -q '"PUT /ferry-e2e/ferry/faults/'; }
    wait_for 30 flowing
    "$@"
    ferry queue wait "$t" --timeout 120 >/dev/null 2>&1
    FAULT_OUT=$(ferry list queue --task-id "$t" --output json | jq -c '.data[0].responseVault')
}
no_snapshot() { # no_snapshot NAME SNAPSHOT
    eq "$1" "$(s3py ls "ferry/faults/snapshots/net/$2" | wc -l)" 0
}
after_fault() { # verify, then a push and a pull that round-trip
    "$HELPERS/faultproxy.sh" mode "$FP" pass
    verify_ok "after $1: the storage verifies" faults
    out=$(job '{"function":"repo_push","repository":"net","storage":"faults"}')
    eq "after $1: a push completes" "$(status "$out")" COMPLETED
    round_trip "after $1: and round-trips" net faults
}

# Three 500s: even if one request meets them all, its fourth try passes.
"$HELPERS/faultproxy.sh" mode "$FP" http500 3
head -c 3000000 /dev/urandom >"$DS/repositories/net/b.bin"
out=$(job '{"function":"repo_push","repository":"net","storage":"faults","snapshot_id":"n500"}')
eq "HTTP 500s are retried inside the attempt: the push completes" "$(status "$out"),$(jq -r .attempts <<<"$out")" COMPLETED,1
eq "all three 500s were served" "$(cat "$FP/mode")" pass
round_trip "the push through 500s round-trips" net faults

"$HELPERS/faultproxy.sh" mode "$FP" http500 1000
out=$(job '{"function":"repo_push","repository":"net","storage":"faults","snapshot_id":"n500b"}')
eq "a server answering only 500s fails the push as transient" "$(status "$out"),$(errcode "$out")" FAILED,transient
contains "naming the status and the tries" "$(errmsg "$out")" "HTTP 500 (4 tries)"
no_snapshot "no snapshot is made" n500b
after_fault "500s" 

fault_push ndrop "$HELPERS/faultproxy.sh" mode "$FP" drop
eq "dropped connections fail the push as transient" "$(status "$FAULT_OUT"),$(errcode "$FAULT_OUT")" FAILED,transient
no_snapshot "no snapshot is half-made" ndrop
after_fault "dropped connections"

fault_push ncut "$HELPERS/faultproxy.sh" mode "$FP" cut 200000
eq "uploads cut mid-body fail the push as transient" "$(status "$FAULT_OUT"),$(errcode "$FAULT_OUT")" FAILED,transient
no_snapshot "no snapshot is half-made" ncut
after_fault "cut uploads"

# A hung server (SIGSTOP) that comes back (SIGCONT) within the retries: the push completes.
hang_briefly() {
    kill -STOP "$(cat "$MOTO/moto.pid")"
    sleep 3
    kill -CONT "$(cat "$MOTO/moto.pid")"
}
fault_push nhang hang_briefly
eq "a server hung for 3 s then back: the push completes within its attempt" "$(status "$FAULT_OUT"),$(jq -r .attempts <<<"$FAULT_OUT")" COMPLETED,1
round_trip "and round-trips" net faults
# Hung for longer than timeout x tries: the attempt fails as transient, nothing half-made.
hang_long() { kill -STOP "$(cat "$MOTO/moto.pid")"; }
fault_push nhang2 hang_long
kill -CONT "$(cat "$MOTO/moto.pid")"
eq "a server hung for good fails the push as transient" "$(status "$FAULT_OUT"),$(errcode "$FAULT_OUT")" FAILED,transient
contains "after timeouts" "$(errmsg "$FAULT_OUT")" "tries"
sleep 1 # moto answers what queued up while it was stopped
no_snapshot "no snapshot is half-made" nhang2
after_fault "a long hang"

# --- connections and bwlimit, counted at the proxy -------------------------------------------------
storage conn1 "\"endpoint\":\"http://127.0.0.1:$FPORT\",\"prefix\":\"ferry/conn1\",\"connections\":1"
storage conn1b "\"endpoint\":\"http://127.0.0.1:$FPORT\",\"prefix\":\"ferry/conn1b\",\"connections\":1"
storage conn4 "\"endpoint\":\"http://127.0.0.1:$FPORT\",\"prefix\":\"ferry/conn4\",\"connections\":4"
storage bw "\"endpoint\":\"http://127.0.0.1:$FPORT\",\"prefix\":\"ferry/bw\",\"bwlimit\":\"1M\""
# The proxy counts a connection until it sees the server's end close it, a moment after the
# client may have opened the next one (moto closes every connection after one answer); the
# client's own sockets, sampled with ss, show exactly how many were open at once.
sample_conns() { # sample_conns OUT: the most ESTABLISHED client connections to the proxy
    local max=0 n
    while [[ -e $1.run ]]; do
        n=$(ss -Htn state established "( dport = :$FPORT )" | wc -l)
        ((n > max)) && { max=$n; echo "$max" >"$1"; }
    done
}
conn_push() { # conn_push STORAGE: pushes web, prints "STATUS CLIENT_MAX PROXY_MAX"
    local out
    echo 0 >"$T_DIR/conns" && touch "$T_DIR/conns.run"
    sample_conns "$T_DIR/conns" &
    local sampler=$!
    "$HELPERS/faultproxy.sh" stat "$FP" >/dev/null
    out=$(job "{\"function\":\"repo_push\",\"repository\":\"web\",\"storage\":\"$1\"}")
    rm -f "$T_DIR/conns.run"
    wait "$sampler"
    echo "$(status "$out") $(cat "$T_DIR/conns") $("$HELPERS/faultproxy.sh" stat "$FP")"
}
read -r st client proxy <<<"$(conn_push conn1)"
eq "connections 1: the multi-pack push completes" "$st" COMPLETED
# A closed connection stays ESTABLISHED on the client's side until the proxy passes the
# server's FIN on, so on a loaded machine one sample can catch it beside the next one (seen
# once in CI): a second push to another storage decides. Two connections kept at once show
# in both.
if [[ $client -ne 1 ]]; then
    read -r st client proxy <<<"$(conn_push conn1b)"
    eq "connections 1, measured again: the push completes" "$st" COMPLETED
fi
[[ $client -eq 1 && $proxy -le 2 ]] && pass "with one connection at a time (client sockets: $client, proxy: $proxy)" ||
    fail "connections 1 keeps one connection" "client $client, proxy $proxy"
read -r st client proxy <<<"$(conn_push conn4)"
eq "connections 4: the multi-pack push completes" "$st" COMPLETED
[[ $client -gt 1 && $client -le 4 && $proxy -gt 1 ]] && pass "with several connections at once (client sockets: $client, proxy: $proxy)" ||
    fail "connections 4 runs in parallel" "client $client, proxy $proxy"
mkdir -p "$DS/repositories/bw" && head -c 6000000 /dev/urandom >"$DS/repositories/bw/six.bin"
started=$(date +%s.%N)
out=$(job '{"function":"repo_push","repository":"bw","storage":"bw"}')
took=$(echo "$(date +%s.%N) - $started" | bc)
eq "bwlimit 1M: the push completes" "$(status "$out")" COMPLETED
(($(echo "$took >= 4" | bc))) && pass "and 6 MB take at least 4 s (${took%.*} s)" || fail "bwlimit slows the push" "$took s"

# --- credentials appear nowhere ------------------------------------------------------------------
{
    cat "$T_DIR/host.log"
    while read -r t; do
        ferry queue trace "$t" --output json
        ferry queue trace "$t"
        ferry list queue --task-id "$t" --output json
    done <"$T_DIR/tasks"
    ferry list team-storages Ops --output json
    for st in plain sealed wrong-secret session faults; do ferry inspect storage Ops "$st"; done
    cat "$MOTO/moto.log" "$FP/proxy.log" "$T_DIR/browse.txt"
} >"$T_DIR/everything.txt" 2>&1
ntasks=$(wc -l <"$T_DIR/tasks")
[[ $ntasks -ge 40 && $(grep -c SignatureDoesNotMatch "$T_DIR/everything.txt") -ge 1 ]] &&
    pass "collected the host log, $ntasks traces (failed and completed), the storages" ||
    fail "collected output" "$ntasks tasks"
for s in "$SECRET" "$WRONG_SECRET" "$SESSION_SECRET" "$SESSION_TOKEN" "$WRONG_TOKEN"; do
    if grep -qF -- "$s" "$T_DIR/everything.txt"; then
        fail "a secret (${s:0:4}…) appears nowhere" "$(grep -nF -- "$s" "$T_DIR/everything.txt" | head -3 | cut -c1-200)"
    else
        pass "a secret (${s:0:4}…, ${#s} chars) appears nowhere"
    fi
done
contains "the storages list hides the secret" "$(ferry list team-storages Ops --output json | jq -c '.data[0].vault')" '"secret_access_key":"********"'

# --- the server dies mid-push (SIGKILL: moto loses its state), then a new one ----------------------
kill_moto() { kill -9 "$(cat "$MOTO/moto.pid")"; }
fault_push ndead kill_moto
eq "a server killed mid-push fails the push as transient" "$(status "$FAULT_OUT"),$(errcode "$FAULT_OUT")" FAILED,transient
contains "saying why" "$(errmsg "$FAULT_OUT")" "tries"
"$HELPERS/faultproxy.sh" stop "$FP"
rm -f "$MOTO/moto.pid"
MOTO=$T_DIR/moto2
if MP=$("$HELPERS/moto.sh" start "$MOTO" 2>"$T_DIR/moto.err"); then
    T_EXTRA_PIDS="$T_EXTRA_PIDS $(cat "$MOTO/moto.pid")"
    "$HELPERS/moto.sh" bucket "$MOTO" ferry-e2e
    ferry update storage-vault Ops plain --vault "{\"endpoint\":\"http://127.0.0.1:$MP\",\"access_key_id\":\"$(cat "$MOTO/access_key_id")\",\"secret_access_key\":\"$(cat "$MOTO/secret_access_key")\"}" >/dev/null
    out=$(job '{"function":"repo_push","repository":"web","storage":"plain"}')
    eq "after a restart (empty, new keys), a push completes" "$(status "$out")" COMPLETED
    round_trip "and round-trips" web plain
else
    fail "moto restarts" "$(cat "$T_DIR/moto.err")"
fi

stop_host
stop_servers
sanitizer=$(grep -E "AddressSanitizer|LeakSanitizer|runtime error:" "$T_DIR/host.log" | head -5)
eq "no sanitizer report in the host log" "$sanitizer" ""
t_done
