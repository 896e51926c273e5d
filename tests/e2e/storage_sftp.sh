#!/usr/bin/env bash
# The sftp storage provider (issue 9) against OpenSSH's sftp server on 127.0.0.1: key (with a
# passphrase) and password logins, pinned host keys, push / pull round trips on plain and
# encrypted storages, incremental pushes, verify and retention; an interrupted push; the
# server killed, restarted and frozen mid-push; connections cut by a fault proxy; the
# `connections` and `bwlimit` settings; no credential in any log, trace or listing.
. "$(dirname "$0")/../lib.sh"

SSHD_DIR=$T_DIR/sshd
PROXY_DIR=$T_DIR/proxy
PW_USER=ferrysftp
PASSWORD='sftp-Pw-Q7z9xK2m-distinct'
KEY_PASS='key-pass-W3rT8vN1-distinct'
port=$("$FERRY_ROOT/tests/helpers/sshd.sh" start "$SSHD_DIR" --password-user "$PW_USER" "$PASSWORD") ||
    { fail "sshd starts" "$port"; t_done; exit 1; }
t_cleanup_servers() {
    kill -CONT $(sshd_pids) 2>/dev/null
    "$FERRY_ROOT/tests/helpers/faultproxy.sh" stop "$PROXY_DIR"
    "$FERRY_ROOT/tests/helpers/sshd.sh" stop "$SSHD_DIR"
    t_cleanup
}
trap t_cleanup_servers EXIT
pass "sshd listens on 127.0.0.1:$port (root by key, $PW_USER by password)"

# The listening sshd and every process below it (one per session): signalled by pid.
descendants() { local p; for p in $(ps -o pid= --ppid "$1"); do echo "$p"; descendants "$p"; done; }
# (the listener by its config too: a pid file that did not name the restarted server left the
# frozen server running in one fresh-clone run)
sshd_pids() {
    local top
    for top in $({ cat "$SSHD_DIR/sshd.pid" 2>/dev/null; pgrep -f -- "-f $SSHD_DIR/sshd_config "; } | sort -u); do
        echo "$top"
        descendants "$top"
    done
}
# freeze_sshd: SIGSTOP the server and its processes. Listing them (ps, one call a process)
# takes long enough under load for a connection to fork a process the list then misses, and
# that one kept serving the push: the listener stops first, then the tree again until a
# listing finds nothing new.
freeze_sshd() {
    local before="" now i
    kill -STOP $({ cat "$SSHD_DIR/sshd.pid" 2>/dev/null; pgrep -f -- "-f $SSHD_DIR/sshd_config "; } | sort -u) 2>/dev/null
    for i in 1 2 3 4 5; do
        now=$(sshd_pids | sort -n)
        kill -STOP $now 2>/dev/null
        [[ $now == "$before" ]] && return 0
        before=$now
    done
}

write_config 'lease = { poll_ms = 100; };' 'retry = { max_retries = 0; };' \
    'plugin = { repo = { gc_grace_hours = 0.0; }; };'
install_plugins
DS=$T_DIR/ds
SRV=$T_DIR/srv # the storages' directories, as the server sees them
mkdir -p "$SRV/pw" && chown "$PW_USER" "$SRV/pw" && chmod 755 "$SRV"

# A client key with a passphrase, authorized for root; its file goes once it is in the vault.
ssh-keygen -q -t ed25519 -N "$KEY_PASS" -C sftp-storage-key -f "$T_DIR/ukey"
cat "$T_DIR/ukey.pub" >>"$SSHD_DIR/authorized_keys"
UKEY=$(cat "$T_DIR/ukey")
KEY_LINE=$(sed -n 3p "$T_DIR/ukey")
rm -f "$T_DIR/ukey" "$T_DIR/ukey.pub"
HOST_KEY=$(cat "$SSHD_DIR/host_key.pub")
HOST_KEY_B64=$(cut -d' ' -f2 <<<"$HOST_KEY")
OTHER_KEY=$(cat "$SSHD_DIR/client_key.pub")

ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
ferry create machine Ops local box --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
keyv() { # keyv DIR [EXTRA_JSON]: a root vault with the key, pinned
    jq -nc --argjson p "$port" --arg k "$UKEY" --arg kp "$KEY_PASS" --arg h "$HOST_KEY" --arg d "$SRV/$1" \
        --argjson x "${2:-{\}}" '{provider:"sftp", host:"127.0.0.1", port:$p, user:"root", path:$d,
        private_key:$k, key_passphrase:$kp, host_public_key:$h} + $x'
}
storage() { ferry create storage Ops "$1" --vault "$2" >/dev/null || fail "create storage $1"; }
storage keyst "$(keyv key)"
storage pwst "$(jq -nc --argjson p "$port" --arg pw "$PASSWORD" --arg d "$SRV/pw" \
    --arg kh "[127.0.0.1]:$port $HOST_KEY" '{provider:"sftp", host:"127.0.0.1", port:$p,
    user:"ferrysftp", password:$pw, path:$d, known_hosts:$kh, passphrase:"repo secret"}')"
storage unpinned "$(keyv key '{"host_public_key": null}')"
storage mitm "$(keyv key "$(jq -nc --arg h "$OTHER_KEY" '{host_public_key:$h}')")"
storage badpw "$(jq -nc --argjson p "$port" --arg h "$HOST_KEY" --arg d "$SRV/pw" '{provider:"sftp",
    host:"127.0.0.1", port:$p, user:"ferrysftp", password:"not-the-password", path:$d, host_public_key:$h}')"
storage slowkey "$(keyv key '{"bwlimit": "4M", "connections": 1}')"
storage fault "$(keyv fault '{"bwlimit": "3M", "connections": 2, "retries": 1, "retry_delay_ms": 200, "connect_timeout": 3}')"
storage frozen "$(keyv fault '{"bwlimit": "2M", "connections": 2, "retries": 1, "retry_delay_ms": 200, "connect_timeout": 2, "timeout": 2}')"
start_host

submit() { ferry create queue-item Ops box local --vault "$1" --output json | jq -r '.data[0].taskId'; }
vault_of() { ferry list queue --task-id "$1" --output json | jq -c '.data[0].responseVault'; }
job() {
    local task
    task=$(submit "$1")
    ferry queue wait "$task" --timeout 300 >/dev/null 2>&1
    vault_of "$task"
}
status() { jq -r .status <<<"$1"; }
res() { jq -r ".result$2" <<<"$1"; }
errmsg() { jq -r '.error.message' <<<"$1"; }
packs_in() { find "$SRV/$1/data" -type f ! -name '.*' 2>/dev/null | wc -l; }
tmps_in() { find "$SRV/$1" -name '.tmp-*' 2>/dev/null | wc -l; }


# --- host keys and logins ----------------------------------------------------------------------
mkdir -p "$DS/repositories/web/sub" && echo hello >"$DS/repositories/web/hello.txt"
out=$(job '{"function":"repo_push","repository":"web","storage":"unpinned"}')
eq "without a pinned host key the push is refused" "$(jq -r .error.code <<<"$out")" bad_parameter
contains "the error shows the server's key to pin" "$(errmsg "$out")" "add \"host_public_key\": \"ssh-ed25519 $HOST_KEY_B64\" to the storage vault"
out=$(job '{"function":"repo_push","repository":"web","storage":"mitm"}')
contains "a wrong pinned key is refused" "$(errmsg "$out")" "does not match the one pinned by \"host_public_key\""
check "and nothing was written" test ! -e "$SRV/key/config"
out=$(job '{"function":"repo_push","repository":"web","storage":"badpw"}')
eq "a wrong password fails as a bad parameter" "$(jq -r .error.code <<<"$out")" bad_parameter
contains "saying what to fix" "$(errmsg "$out")" "refused the login of user \"ferrysftp\" with the vault's password; check \"user\" and \"password\""

# --- round trips: key login (plain storage), password login (encrypted storage) ----------------
SRC=$DS/repositories/web
head -c $((40 << 20)) /dev/urandom >"$SRC/big.bin"
head -c 3000000 /dev/urandom >"$SRC/sub/mid.bin"
: >"$SRC/empty"
printf 'x' >"$SRC/one-byte"
ln -s sub/mid.bin "$SRC/link"
ln -s /nonexistent "$SRC/dangling"
seq 1 200000 >"$SRC/sub/numbers with spaces.txt"
chmod 600 "$SRC/one-byte"
touch -d '2001-02-03 04:05:06.789' "$SRC/empty"
for st in keyst pwst; do
    out=$(job "{\"function\":\"repo_push\",\"repository\":\"web\",\"storage\":\"$st\",\"verify\":true,\"snapshot_id\":\"first\"}")
    eq "push to $st completes (with verify)" "$(status "$out")" COMPLETED
    out=$(job "{\"function\":\"repo_pull\",\"repository\":\"copy-$st\",\"from_repository\":\"web\",\"storage\":\"$st\"}")
    eq "pull from $st completes" "$(status "$out")" COMPLETED
    cmp=$(tree_compare "$SRC" "$DS/repositories/copy-$st")
    [[ $? -eq 0 ]] && pass "the $st round trip is exact (${cmp##*$'\n'})" || fail "the $st round trip is exact" "$cmp"
done
n=$(packs_in key)
[[ $n -ge 3 ]] && pass "43 MB went into several packs ($n)" || fail "43 MB went into several packs" "$n"
eq "no temporary file is left after a push" "$(tmps_in key)$(tmps_in pw)" 00
eq "the password login wrote as its user" "$(stat -c %U "$SRV/pw/config")" "$PW_USER"
eq "objects are private to the storage's user" "$(stat -c %a "$SRV/key/config")" 600
grep -rqa "numbers with spaces" "$SRV/pw" && fail "the encrypted storage holds no plaintext" ||
    pass "the encrypted storage holds no plaintext"

echo "one more line" >>"$SRC/sub/numbers with spaces.txt"
out=$(job '{"function":"repo_push","repository":"web","storage":"keyst","snapshot_id":"second"}')
eq "an incremental push completes" "$(status "$out")" COMPLETED
eq "its parent is the first snapshot" "$(res "$out" .parent)" first
read_bytes=$(res "$out" .stats.bytes_read)
[[ $read_bytes -lt 5000000 ]] && pass "it reads only the changed file ($read_bytes bytes)" || fail "reads only the changed file" "$read_bytes"
out=$(job '{"function":"repo_verify","storage":"keyst"}')
eq "repo_verify passes" "$(status "$out")" COMPLETED
out=$(job '{"function":"repo_verify","storage":"pwst"}')
eq "repo_verify passes on the encrypted storage" "$(status "$out")" COMPLETED
out=$(job '{"function":"repo_list","storage":"keyst","repository":"web"}')
eq "repo_list lists the snapshots from the server" "$(res "$out" '.snapshots | map(.id) | join(",")')" first,second

# --- retention ----------------------------------------------------------------------------------
mkdir -p "$DS/repositories/ret"
head -c 3000000 /dev/urandom >"$DS/repositories/ret/old.bin"
echo keep >"$DS/repositories/ret/keep.txt"
out=$(job '{"function":"repo_push","repository":"ret","storage":"keyst","snapshot_id":"r1","retention_days":0.00002}')
eq "a push with a short retention completes" "$(status "$out")" COMPLETED
rm "$DS/repositories/ret/old.bin"
sleep 2
out=$(job '{"function":"repo_push","repository":"ret","storage":"keyst","snapshot_id":"r2","retention_days":30}')
eq "the next push removes the expired snapshot" "$(res "$out" '.retention.expired | join(",")')" ret/r1
freed=$(res "$out" .retention.bytes_freed)
[[ $(res "$out" .retention.packs_deleted) -ge 1 && $freed -ge 3000000 ]] &&
    pass "and deletes the data only it used ($freed bytes)" || fail "deletes its data" "$out"
check "its manifest is gone from the server" test ! -e "$SRV/key/snapshots/ret/r1"
out=$(job '{"function":"repo_pull","repository":"ret-back","from_repository":"ret","storage":"keyst"}')
check "the kept snapshot restores" cmp "$DS/repositories/ret/keep.txt" "$DS/repositories/ret-back/keep.txt"
eq "the storage verifies after collection" "$(status "$(job '{"function":"repo_verify","storage":"keyst"}')")" COMPLETED

# --- an interrupted push --------------------------------------------------------------------------
# 96 MiB of new data through a 4 MiB/s storage (the same directory as keyst): cancelled
# once a pack has arrived.
mkdir -p "$DS/repositories/big"
head -c $((96 << 20)) /dev/urandom >"$DS/repositories/big/data.bin"
before=$(packs_in key)
task=$(submit '{"function":"repo_push","repository":"big","storage":"slowkey"}')
a_pack() { test "$(packs_in key)" -ge $((before + 1)); }
wait_for 60 a_pack
ferry queue cancel "$task" >/dev/null
wait_status "$task" CANCELLED 30
eq "the push is cancelled midway" "$(task_status "$task")" CANCELLED
check "it leaves no snapshot" test ! -e "$SRV/key/snapshots/big"
mkdir -p "$SRV/key/data/ab" && head -c 1000 /dev/urandom >"$SRV/key/data/ab/.tmp-leftover"
out=$(job '{"function":"repo_verify","storage":"keyst"}')
eq "the interrupted storage verifies" "$(status "$out")" COMPLETED
eq "every pack that arrived is indexed (.tmp-* files are not listed)" "$(res "$out" .unindexed_packs)" 0
out=$(job '{"function":"repo_push","repository":"big","storage":"keyst"}')
eq "the next push completes" "$(status "$out")" COMPLETED
new=$(res "$out" .stats.bytes_new)
[[ $new -lt 90000000 ]] && pass "reusing what arrived ($new of 100663296 bytes new)" || fail "reusing what arrived" "$new"
stray=$SRV/key/data/ab/ab$(printf '%062d' 0)
head -c 1000 /dev/urandom >"$stray"
out=$(job '{"function":"repo_gc","storage":"keyst","full":true}')
eq "repo_gc full deletes the orphan pack" "$(res "$out" .unindexed_packs_deleted)" 1
check "it is gone from the server" test ! -e "$stray"
# repo_gc full also removes temporaries older than the grace period (0 here; a name without
# a time counts as old), which it never takes for packs.
check "and the leftover temporary file (never taken for a pack)" test ! -e "$SRV/key/data/ab/.tmp-leftover"
eq "the storage verifies" "$(status "$(job '{"function":"repo_verify","storage":"keyst"}')")" COMPLETED

# --- the server dies mid-push, then comes back on the same port ----------------------------------
mkdir -p "$DS/repositories/flaky"
head -c $((30 << 20)) /dev/urandom >"$DS/repositories/flaky/a.bin"
# uploading: a temporary file of this push (newer than the marker) has grown past 1 MB.
uploading() { test "$(find "$SRV/fault" -name '.tmp-*' -newer "$T_DIR/marker" -size +1000k 2>/dev/null | wc -l)" -ge 1; }
touch "$T_DIR/marker"
task=$(submit '{"function":"repo_push","repository":"flaky","storage":"fault"}')
wait_for 60 uploading || fail "an upload starts" "$(ls -laR "$SRV/fault" 2>&1 | tail -5)"
kill -9 $(sshd_pids) 2>/dev/null
wait_for 10 bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null"
wait_status "$task" FAILED 60
out=$(vault_of "$task")
eq "a push whose server dies fails as transient" "$(jq -r .error.code <<<"$out")" transient
contains "saying what failed after its retries" "$(errmsg "$out")" "tries)"
restarted=$("$FERRY_ROOT/tests/helpers/sshd.sh" restart "$SSHD_DIR") && pass "sshd restarts on port $restarted" ||
    fail "sshd restarts" "$restarted"
out=$(job '{"function":"repo_push","repository":"flaky","storage":"fault"}')
eq "the next push completes" "$(status "$out")" COMPLETED
out=$(job '{"function":"repo_pull","repository":"flaky-back","from_repository":"flaky","storage":"fault"}')
check "and round-trips" cmp "$DS/repositories/flaky/a.bin" "$DS/repositories/flaky-back/a.bin"
eq "the storage verifies" "$(status "$(job '{"function":"repo_verify","storage":"fault"}')")" COMPLETED

# --- a frozen server (SIGSTOP) with a 2 s vault timeout ------------------------------------------
head -c $((20 << 20)) /dev/urandom >"$DS/repositories/flaky/b.bin"
touch "$T_DIR/marker"
task=$(submit '{"function":"repo_push","repository":"flaky","storage":"frozen"}')
wait_for 60 uploading || fail "an upload starts" "$(ls -laR "$SRV/fault" 2>&1 | tail -5)"
started=$SECONDS
freeze_sshd
wait_status "$task" FAILED 60
took=$((SECONDS - started))
kill -CONT $(sshd_pids)
out=$(vault_of "$task")
eq "a push to a frozen server fails as transient" "$(jq -r .error.code <<<"$out")" transient
contains "after timing out" "$(errmsg "$out")" "timed out"
[[ $took -le 30 ]] && pass "within the vault's timeouts ($took s)" || fail "within the vault's timeouts" "$took s"
out=$(job '{"function":"repo_push","repository":"flaky","storage":"frozen"}')
eq "once it runs again, the push completes" "$(status "$out")" COMPLETED

# --- connections cut by a proxy; connections 1 and 4; bwlimit ------------------------------------
pport=$("$FERRY_ROOT/tests/helpers/faultproxy.sh" start "$PROXY_DIR" "$port") || fail "the fault proxy starts" "$pport"
proxied() { # proxied PATH_DIR EXTRA_JSON: a vault through the proxy
    keyv "$1" "$(jq -nc --argjson p "$pport" --argjson x "$2" '{port:$p} + $x')"
}
storage cut1 "$(proxied cut '{"connections": 1, "retries": 6, "retry_delay_ms": 100}')"
storage conn1 "$(proxied conns '{"connections": 1}')"
storage conn4 "$(proxied conns '{"connections": 4}')"
storage bw "$(proxied bw '{"connections": 1, "bwlimit": "1M"}')"
# One connection and cuts every 24 MB (more than a pack): a 60 MiB push is cut at least twice.
mkdir -p "$DS/repositories/cut"
head -c $((60 << 20)) /dev/urandom >"$DS/repositories/cut/c.bin"
"$FERRY_ROOT/tests/helpers/faultproxy.sh" mode "$PROXY_DIR" cut 24000000
out=$(job '{"function":"repo_push","repository":"cut","storage":"cut1"}')
"$FERRY_ROOT/tests/helpers/faultproxy.sh" mode "$PROXY_DIR" pass
eq "a push whose connection is cut every 24 MB retries and completes" "$(status "$out")" COMPLETED
out=$(job '{"function":"repo_pull","repository":"cut-back","from_repository":"cut","storage":"cut1"}')
check "and round-trips" cmp "$DS/repositories/cut/c.bin" "$DS/repositories/cut-back/c.bin"
eq "the storage verifies" "$(status "$(job '{"function":"repo_verify","storage":"cut1"}')")" COMPLETED

"$FERRY_ROOT/tests/helpers/faultproxy.sh" stat "$PROXY_DIR" >/dev/null
out=$(job '{"function":"repo_push","repository":"cut","storage":"conn1"}')
max1=$("$FERRY_ROOT/tests/helpers/faultproxy.sh" stat "$PROXY_DIR")
eq "connections 1: the push completes" "$(status "$out")" COMPLETED
eq "over one connection at a time" "$max1" 1
out=$(job '{"function":"repo_push","repository":"web","storage":"conn4"}')
max4=$("$FERRY_ROOT/tests/helpers/faultproxy.sh" stat "$PROXY_DIR")
eq "connections 4: the push completes" "$(status "$out")" COMPLETED
[[ $max4 -ge 2 && $max4 -le 4 ]] && pass "over several connections at once ($max4, at most 4)" ||
    fail "connections 4 uses several connections at once" "$max4"

mkdir -p "$DS/repositories/bw"
head -c $((6 << 20)) /dev/urandom >"$DS/repositories/bw/six.bin"
t0=$(date +%s.%N)
out=$(job '{"function":"repo_push","repository":"bw","storage":"bw"}')
took=$(echo "$(date +%s.%N) - $t0" | bc)
eq "a push with bwlimit 1M completes" "$(status "$out")" COMPLETED
(($(echo "$took >= 4" | bc))) && pass "6 MiB at 1 MiB/s takes at least 4 s (${took%.*} s)" ||
    fail "bwlimit slows the push" "$took s"

# --- no credential anywhere ----------------------------------------------------------------------
all=$(cat "$T_DIR/host.log"
    for id in $(ferry list queue --output json | jq -r '.data[].taskId'); do
        ferry queue trace "$id" --output json
        vault_of "$id"
    done
    ferry list team-storages Ops --output json
    for st in keyst pwst badpw; do ferry inspect storage Ops "$st" --output json 2>/dev/null; done)
not_contains "no log, trace, response or listing holds the password" "$all" "$PASSWORD"
not_contains "nor the private key" "$all" "$KEY_LINE"
not_contains "nor its passphrase" "$all" "$KEY_PASS"
not_contains "nor the wrong password" "$all" "not-the-password"
leaks=$(grep -rlsF -- "$KEY_LINE" /tmp /var/tmp /dev/shm 2>/dev/null | grep -v "^$T_DIR/ferry.db" | head -3)
eq "the key is in no file on disk (it goes through a memfd)" "$leaks" ""

stop_host
t_done
