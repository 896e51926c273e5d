#!/usr/bin/env bash
# Remote storages stream (issue 15, point 5): a push to S3 (moto), SFTP (OpenSSH) and WebDAV
# (lighttpd) with 4 connections uploads each pack while it is written, so the worker's peak
# RSS stays under 64 MiB however large the push (before: 124-142 MiB, 16 MiB per pack in
# flight). Round trips stay exact, nothing temporary is left behind, and repo_gc full removes
# the temporaries (and S3's incomplete multipart uploads) older than the grace period, and
# only those. STREAM_MIB (default 320) sets the size of the pushed tree.
. "$(dirname "$0")/../lib.sh"

HELPERS=$FERRY_ROOT/tests/helpers
MIB=${STREAM_MIB:-320}
RSS_LIMIT_KB=$((64 * 1024))
write_config 'lease = { poll_ms = 100; };' 'retry = { max_retries = 0; };' \
    'plugin = { repo = { gc_grace_hours = 1.0; }; };'
install_plugins

MOTO=$T_DIR/moto DAV=$T_DIR/dav SSHD_DIR=$T_DIR/sshd
MP=$("$HELPERS/moto.sh" start "$MOTO" 2>"$T_DIR/moto.err") || { fail "moto starts" "$(cat "$T_DIR/moto.err")"; t_done; exit 1; }
"$HELPERS/moto.sh" bucket "$MOTO" ferry-stream
DP=$("$HELPERS/webdav.sh" start "$DAV" davuser davpass digest 2>"$T_DIR/dav.err") || { fail "webdav starts" "$(cat "$T_DIR/dav.err")"; t_done; exit 1; }
SP=$("$HELPERS/sshd.sh" start "$SSHD_DIR") || { fail "sshd starts" "$SP"; t_done; exit 1; }
T_EXTRA_PIDS="$(cat "$MOTO/moto.pid") $(cat "$DAV/lighttpd.pid")"
stop_servers() {
    "$HELPERS/moto.sh" stop "$MOTO" >/dev/null 2>&1
    "$HELPERS/webdav.sh" stop "$DAV" >/dev/null 2>&1
    "$HELPERS/sshd.sh" stop "$SSHD_DIR" >/dev/null 2>&1
    t_cleanup
}
trap stop_servers EXIT
AKID=$(cat "$MOTO/access_key_id") SECRET=$(cat "$MOTO/secret_access_key")

# s3py CMD ARGS...: the bucket through boto3.
#   ls PREFIX                 "KEY SIZE" per object
#   uploads                   "KEY" per incomplete multipart upload
#   put KEY                   a small object
#   upload KEY                starts a multipart upload of KEY with one part, left incomplete
s3py() {
    python3 - "$MP" "$AKID" "$SECRET" "$@" <<'EOF'
import sys, boto3
port, akid, secret, cmd, *args = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id=akid, aws_secret_access_key=secret)
B = "ferry-stream"
if cmd == "ls":
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=B, Prefix=args[0]):
        for o in page.get("Contents", []):
            print(o["Key"], o["Size"])
elif cmd == "uploads":
    for u in s3.list_multipart_uploads(Bucket=B).get("Uploads", []):
        print(u["Key"])
elif cmd == "put":
    s3.put_object(Bucket=B, Key=args[0], Body=b"left by a crash")
elif cmd == "upload":
    up = s3.create_multipart_upload(Bucket=B, Key=args[0])
    s3.upload_part(Bucket=B, Key=args[0], UploadId=up["UploadId"], PartNumber=1, Body=b"x" * 100)
EOF
}

DS=$T_DIR/ds
ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
ferry create machine Ops local box --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
storage() { ferry create storage Ops "$1" --vault "$2" >/dev/null || fail "storage $1 is created"; }
storage s3st "$(jq -nc --arg a "$AKID" --arg s "$SECRET" --arg e "http://127.0.0.1:$MP" \
    '{provider:"s3", bucket:"ferry-stream", access_key_id:$a, secret_access_key:$s, endpoint:$e,
      prefix:"st", connections:4, passphrase:"stream pass"}')"
mkdir -p "$DAV/root/st"
storage davst "$(jq -nc --arg u "http://127.0.0.1:$DP/st" \
    '{provider:"webdav", url:$u, user:"davuser", password:"davpass", connections:4}')"
SRV=$T_DIR/srv
mkdir -p "$SRV"
ssh-keygen -q -t ed25519 -N '' -f "$T_DIR/ukey" && cat "$T_DIR/ukey.pub" >>"$SSHD_DIR/authorized_keys"
storage sftpst "$(jq -nc --argjson p "$SP" --arg k "$(cat "$T_DIR/ukey")" --arg h "$(cat "$SSHD_DIR/host_key.pub")" \
    --arg d "$SRV/st" '{provider:"sftp", host:"127.0.0.1", port:$p, user:"root", path:$d,
      private_key:$k, host_public_key:$h, connections:4}')"
start_host

submit() { ferry create queue-item Ops box local --vault "$1" --output json | jq -r '.data[0].taskId'; }
job() {
    local task
    task=$(submit "$1")
    ferry queue wait "$task" --timeout 600 >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault'
}
status() { jq -r .status <<<"$1"; }
res() { jq -r ".result$2" <<<"$1"; }

# --- the tree: incompressible, in files of 1 to 64 MiB -------------------------------------------
SRC=$DS/repositories/big
mkdir -p "$SRC"
left=$MIB i=0
while [[ $left -gt 0 ]]; do
    n=$((i % 7 == 0 ? 64 : 1 + (i * 13) % 24)); [[ $n -gt $left ]] && n=$left
    head -c $((n << 20)) /dev/urandom >"$SRC/f$i.bin"
    left=$((left - n)) i=$((i + 1))
done

# --- a push per provider: bounded memory, exact round trip ------------------------------------------
# The pushes come first: a worker process may run several items, and its peak RSS is that of
# its whole life, so a pull (which needs more) before a push would be counted in the push's.
for st in s3st sftpst davst; do
    out=$(job "{\"function\":\"repo_push\",\"repository\":\"big\",\"storage\":\"$st\",\"snapshot_id\":\"one\"}")
    if [[ $(status "$out") != COMPLETED ]]; then fail "the $MIB MiB push to $st completes" "$out"; continue; fi
    rss=$(res "$out" .peak_rss_kb)
    echo "# $st: $MIB MiB in $(res "$out" .seconds) s, peak RSS $((rss / 1024)) MiB"
    if [[ ${SAN:-0} == 1 ]]; then # ASan's shadow memory and quarantine are no measure
        pass "the $MIB MiB push to $st completes (RSS not bounded under SAN=1)"
    elif [[ $rss -le $RSS_LIMIT_KB ]]; then
        pass "the $MIB MiB push to $st peaks at $((rss / 1024)) MiB RSS (<= 64)"
    else
        fail "the push to $st stays under 64 MiB RSS" "peak_rss_kb $rss"
    fi
done
for st in s3st sftpst davst; do
    out=$(job "{\"function\":\"repo_pull\",\"repository\":\"back-$st\",\"from_repository\":\"big\",\"storage\":\"$st\"}")
    cmp=$(tree_compare "$SRC" "$DS/repositories/back-$st")
    [[ $? -eq 0 && $(status "$out") == COMPLETED ]] && pass "the $st round trip is exact (${cmp##*$'\n'})" ||
        fail "the $st round trip is exact" "$out" "$cmp"
    rm -rf "$DS/repositories/back-$st"
done
eq "S3: nothing temporary is left in the bucket" "$(s3py ls st/ | grep -c '/\.tmp-')" 0
eq "S3: no multipart upload is left incomplete" "$(s3py uploads | wc -l)" 0
n_multi=$(grep -c 'POST /ferry-stream/st/data/\.tmp-[0-9]*-[0-9a-f]*?uploads' "$MOTO/moto.log")
[[ $n_multi -ge $((MIB / 20)) ]] && pass "S3: packs went up as multipart uploads ($n_multi)" || fail "S3 multipart uploads" "$n_multi"
eq "SFTP: nothing temporary is left" "$(find "$SRV/st" -name '.tmp-*' | wc -l)" 0
eq "WebDAV: nothing temporary is left" "$(find "$DAV/root/st" -name '.tmp-*' | wc -l)" 0
out=$(job '{"function":"repo_verify","storage":"s3st"}')
eq "the S3 storage verifies" "$(status "$out")/$(res "$out" .ok)" COMPLETED/true

# --- repo_gc full sweeps old temporaries, keeps young ones ---------------------------------------
old=".tmp-1000000000-00000000deadbeef" legacy=".tmp-0123456789abcdef" young=".tmp-$(date +%s)-00000000cafef00d"
s3py put "st/data/$old"; s3py put "st/index/$legacy"; s3py put "st/data/$young"
s3py upload "st/data/.tmp-1000000001-00000000deadbeef"; s3py upload "st/data/$young"
s3py upload "elsewhere/.tmp-1000000001-00000000deadbeef" # outside the storage's prefix
for d in "$SRV/st" "$DAV/root/st"; do
    mkdir -p "$d/data/ab" && echo x >"$d/data/$old" && echo x >"$d/data/ab/$legacy" && echo x >"$d/data/$young"
done
for st in s3st sftpst davst; do
    out=$(job "{\"function\":\"repo_gc\",\"storage\":\"$st\",\"full\":true}")
    want=2; [[ $st == s3st ]] && want=3
    eq "repo_gc full on $st removes the $want old temporaries" "$(status "$out")/$(res "$out" .temporaries_deleted)" "COMPLETED/$want"
done
eq "S3: the young temporary stays, the old ones went" "$(s3py ls st/ | grep '/\.tmp-' | cut -d' ' -f1)" "st/data/$young"
eq "S3: only the young upload and the one outside the prefix stay" "$(s3py uploads | sort | tr '\n' ' ')" \
    "elsewhere/.tmp-1000000001-00000000deadbeef st/data/$young "
eq "SFTP: the young temporary stays, the old ones went" "$(cd "$SRV/st" && find . -name '.tmp-*')" "./data/$young"
eq "WebDAV: the young temporary stays, the old ones went" "$(cd "$DAV/root/st" && find . -name '.tmp-*')" "./data/$young"
out=$(job '{"function":"repo_verify","storage":"sftpst"}')
eq "the SFTP storage still verifies" "$(status "$out")/$(res "$out" .ok)" COMPLETED/true

# --- a lying server fails the push clearly, the storage stays valid, the next push reuses --------
LIAR=$T_DIR/liar
mkdir -p "$LIAR" && echo pass >"$LIAR/mode"
python3 "$HELPERS/s3liar.py" "$LIAR" "$MP" 2>"$LIAR/err" &
T_EXTRA_PIDS="$T_EXTRA_PIDS $!"
wait_for 10 test -s "$LIAR/port" || fail "the lying proxy starts" "$(cat "$LIAR/err")"
s3vault() { # s3vault ENDPOINT_PORT PREFIX
    jq -nc --arg a "$AKID" --arg s "$SECRET" --arg e "http://127.0.0.1:$1" --arg p "$2" \
        '{provider:"s3", bucket:"ferry-stream", access_key_id:$a, secret_access_key:$s, endpoint:$e,
          prefix:$p, connections:4, passphrase:"liar pass", retries:1, retry_delay_ms:50}'
}
storage liar "$(s3vault "$(cat "$LIAR/port")" lie)"
storage truth "$(s3vault "$MP" lie)"
LSRC=$DS/repositories/lied
mkdir -p "$LSRC"
for i in 1 2 3; do head -c 24000000 /dev/urandom >"$LSRC/f$i.bin"; done
echo "etag 9" >"$LIAR/mode"
out=$(job '{"function":"repo_push","repository":"lied","storage":"liar"}')
eq "a server whose ETag is not the part's MD5 fails the push" "$(status "$out")" FAILED
contains "saying it stored other bytes than were sent" "$(jq -r '.error.message // empty' <<<"$out")" "stored other bytes than were sent"
out=$(job '{"function":"repo_verify","storage":"truth"}')
eq "the storage stays valid" "$(status "$out")/$(res "$out" .ok)" COMPLETED/true
echo pass >"$LIAR/mode"
out=$(job '{"function":"repo_push","repository":"lied","storage":"liar","snapshot_id":"l1"}')
eq "the next push completes" "$(status "$out")" COMPLETED
new=$(res "$out" .stats.bytes_new)
[[ $new -lt 72000000 ]] && pass "reusing the packs that arrived ($new of 72000000 bytes new)" || fail "reuse after a lie" "$out"
head -c 24000000 /dev/urandom >"$LSRC/f4.bin"
echo "short 1" >"$LIAR/mode"
out=$(job '{"function":"repo_push","repository":"lied","storage":"liar","snapshot_id":"l2"}')
eq "a server whose copy is short fails the push" "$(status "$out")" FAILED
contains "saying so" "$(jq -r '.error.message // empty' <<<"$out")" "were uploaded"
echo pass >"$LIAR/mode"
out=$(job '{"function":"repo_push","repository":"lied","storage":"liar","snapshot_id":"l3"}')
eq "and the next push completes" "$(status "$out")" COMPLETED
out=$(job '{"function":"repo_pull","repository":"lied-back","from_repository":"lied","storage":"truth"}')
cmp=$(tree_compare "$LSRC" "$DS/repositories/lied-back")
[[ $? -eq 0 && $(status "$out") == COMPLETED ]] && pass "it round-trips (${cmp##*$'\n'})" || fail "round trip after lies" "$out" "$cmp"
eq "no multipart upload is left behind by the failed pushes" "$(s3py uploads | grep -c '^lie/')" 0

t_done
