#!/usr/bin/env bash
# repo_push from a machine reached over SSH with no ferry there (issue 15 points 1 and 2, the
# push side): real OpenSSH on loopback, logging in as a separate unprivileged user with key
# authentication and a pinned host key, through a counting TCP relay (the bytes that cross
# the SSH connection). A tree with modes, owners, symlinks, hard links, a sparse file,
# unicode, invalid UTF-8 and newline names and empty directories is pushed and pulled back on
# the bridge, equal; an incremental push after a 1 % change moves about the changed bytes;
# "paths" and "exclude"; cancel, a dropped connection and a killed sshd session leave no
# process of the user behind, a valid storage, and a next push that reuses what arrived;
# hostile remote tools (a fake find first on PATH) fail the push and store nothing.
. "$(dirname "$0")/../lib.sh"

SSHD_DIR=$T_DIR/sshd
KEY_USER=ferry-rpush
port=$("$FERRY_ROOT/tests/helpers/sshd.sh" start "$SSHD_DIR" --key-user "$KEY_USER") ||
    { fail "sshd starts" "$port"; t_done; exit 1; }
RELAY_PID=
t_cleanup_all() {
    [[ -n $RELAY_PID ]] && kill "$RELAY_PID" 2>/dev/null
    "$FERRY_ROOT/tests/helpers/sshd.sh" stop "$SSHD_DIR"
    rm -rf "${SSHD_HOME:?}/ds" "${SSHD_HOME:?}/fakebin"
    t_cleanup
}
trap t_cleanup_all EXIT
. "$SSHD_DIR/env"
rm -rf "${SSHD_HOME:?}/ds" "${SSHD_HOME:?}/fakebin" # the user's home outlives a test run
pass "sshd listens on 127.0.0.1:$port for $SSHD_USER"

# --- a counting relay between ssh and sshd ------------------------------------------------
# relay.py PORTFILE TARGET COUNTFILE: forwards 127.0.0.1:PORT (PORTFILE's, else a free one,
# written there) to TARGET, adds every byte either way to COUNTFILE; a file RATE next to
# COUNTFILE (bytes/s) throttles when present.
cat >"$T_DIR/relay.py" <<'EOF'
import os, socket, sys, threading, time
portfile, target, countfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    want = int(open(portfile).read())
except Exception:
    want = 0
ratefile = os.path.join(os.path.dirname(countfile), "RATE")
lock, total = threading.Lock(), [int(open(countfile).read() or 0)]
def pump(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            try:
                rate = int(open(ratefile).read())
            except Exception:
                rate = 0
            if rate:
                time.sleep(len(data) / rate)
            b.sendall(data)
            with lock:
                total[0] += len(data)
                open(countfile + ".tmp", "w").write(str(total[0]))
                os.replace(countfile + ".tmp", countfile)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
for _ in range(100):
    try:
        srv.bind(("127.0.0.1", want))
        break
    except OSError:
        time.sleep(0.1)
srv.listen(64)
open(portfile, "w").write(str(srv.getsockname()[1]))
while True:
    c, _ = srv.accept()
    u = socket.create_connection(("127.0.0.1", target))
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
EOF
start_relay() { # the same port as before once there was one
    python3 "$T_DIR/relay.py" "$T_DIR/relay.port" "$SSHD_PORT" "$T_DIR/COUNT" &
    RELAY_PID=$!
    wait_for 10 test -s "$T_DIR/relay.port"
    wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$(cat "$T_DIR/relay.port")" 2>/dev/null
}
echo 0 >"$T_DIR/COUNT"
start_relay
RELAY_PORT=$(cat "$T_DIR/relay.port")
counted() { cat "$T_DIR/COUNT"; }

# --- the machines -------------------------------------------------------------------------
write_config 'lease = { poll_ms = 100; };' 'timeouts = { default = 600; grace = 2; };' \
    'retry = { max_retries = 0; };' 'workers = { count = 2; };'
install_plugins
HOME_DS=$SSHD_HOME/ds
ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
vault() { # vault KEYFILE: the remote machine's vault (through the relay, host key pinned)
    jq -cn --arg key "$(cat "$1")" --arg hk "$SSHD_HOST_KEY" --arg ds "$HOME_DS" \
        --argjson port "$RELAY_PORT" --arg user "$SSHD_USER" \
        '{ip:"127.0.0.1", ssh_port:$port, user:$user, datastore:$ds, SSH_PRIVATE_KEY:$key,
          host_public_key:$hk}'
}
ferry create machine Ops local far --vault "$(vault "$SSHD_CLIENT_KEY")" >/dev/null
ferry create machine Ops local bridge --vault "{\"connection\":\"local\",\"datastore\":\"$T_DIR/lds\"}" >/dev/null
ferry create storage Ops st --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/st\",\"passphrase\":\"pw\"}" >/dev/null
# A hostile machine: the same user, another key whose sessions put a fake find first on PATH.
ssh-keygen -q -t ed25519 -N '' -C hostile -f "$T_DIR/hostile_key"
printf 'command="PATH=%s/fakebin:/usr/bin:/bin; export PATH; eval \\"$SSH_ORIGINAL_COMMAND\\"" %s\n' \
    "$SSHD_HOME" "$(cat "$T_DIR/hostile_key.pub")" >>"$SSHD_HOME/.ssh/authorized_keys"
ferry create machine Ops local evil --vault "$(vault "$T_DIR/hostile_key")" >/dev/null
start_host

job() { # MACHINE VAULT [TIMEOUT]: runs an item, prints its response vault
    local task
    task=$(ferry create queue-item Ops "$1" local --vault "$2" --output json | jq -r '.data[0].taskId')
    ferry queue wait "$task" --timeout "${3:-300}" >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault'
}
status() { jq -r .status <<<"$1"; }
res() { jq -r ".result$2" <<<"$1"; }
err() { jq -r ".error$2" <<<"$1"; }
as_user() { runuser -u "$SSHD_USER" -- "$@"; }
user_procs() { pgrep -u "$SSHD_USER" -a 2>/dev/null; }
no_user_procs() { [[ -z $(pgrep -u "$SSHD_USER") ]]; }

# --- exclude on a local machine: the same patterns as remotely -------------------------------
L=$T_DIR/lds/repositories/loc
mkdir -p "$L/cache/deep" "$L/src/cache" "$L/logs"
printf a >"$L/a.log"; printf k >"$L/keep.log"; printf c >"$L/cache/deep/x"; printf s >"$L/src/cache/y"
printf m >"$L/src/main.c"; printf l >"$L/logs/today"
out=$(job bridge '{"function":"repo_push","repository":"loc","storage":"st","exclude":["*.log","!keep.log","/cache/","logs/**"]}')
eq "a local push with exclude completes" "$(status "$out")" COMPLETED
out=$(job bridge '{"function":"repo_pull","repository":"loc2","from_repository":"loc","storage":"st"}')
eq "and pulls back" "$(status "$out")" COMPLETED
L2=$T_DIR/lds/repositories/loc2
eq "exactly the entries the patterns keep" \
    "$(cd "$L2" && find . | sort | tr '\n' ' ')" ". ./keep.log ./logs ./src ./src/cache ./src/cache/y ./src/main.c "

out=$(job bridge "{\"function\":\"repo_push\",\"paths\":[\"$L\",\"$T_DIR/lds/repositories/loc2\"],\"storage\":\"st\",\"exclude\":[\"src/\"]}")
eq "paths on a local machine: one snapshot per path" "$(res "$out" '.pushed | length')" 2
lrepo=$(res "$out" '.pushed[0].repository')
eq "... named after the path" "$lrepo" "$(res "$(job bridge "{\"function\":\"repo_push\",\"paths\":[\"$L/\"],\"storage\":\"st\"}")" '.pushed[0].repository')"
out=$(job bridge "{\"function\":\"repo_pull\",\"repository\":\"$lrepo\",\"storage\":\"st\"}")
eq "... and pulls back by that name" "$(status "$out")" COMPLETED
out=$(job bridge '{"function":"repo_push","paths":["/no/such/dir"],"storage":"st"}')
eq "a path that does not exist fails" "$(err "$out" .code)" not_found

# --- the tree: modes, owners, links, holes, awkward names ----------------------------------
R=$HOME_DS/repositories/data
as_user mkdir -p "$R/dir/empty" "$R/deep/a/b" "$R/cache/x" "$R/sp ace"
as_user sh -c 'cd "$0" && for i in $(seq 1 60); do head -c 150000 /dev/urandom > "dir/f$i"; done' "$R"
as_user sh -c 'cd "$0" && head -c 1000000 /dev/urandom > deep/a/b/big && printf log > app.log &&
    printf c > cache/x/c && printf one > one && ln one "sp ace/hard" && ln one deep/hard2 &&
    ln -s ../one dir/sym && ln -s "no such target" dangling &&
    printf nl > "$(printf "new\nline")" && printf bad > "$(printf "bad\377\376")" &&
    printf caf > "$(printf "caf\303\251 \342\230\203")" && printf q > "it'"'"'s \$(x)" &&
    truncate -s 64M sparse && printf tail >> sparse &&
    chmod 4750 one && chmod 1777 dir && chmod 0600 app.log && mkfifo deep/fifo &&
    touch -h -d "2001-02-03 04:05:06.123456789" dir/sym' "$R"
# owned by someone else (world-readable: the user can push it, not change it)
printf other >"$R/other-owner" && chown nobody:nogroup "$R/other-owner" && chmod 0644 "$R/other-owner"
TREE_BYTES=$(du -s --apparent-size -B1 --exclude=sparse "$R" | cut -f1)

# --- first push and a pull back on the bridge --------------------------------------------
before=$(counted)
out=$(job far '{"function":"repo_push","repository":"data","storage":"st","snapshot_id":"s1"}')
eq "repo_push from the SSH machine completes" "$(status "$out")" COMPLETED
first=$(( $(counted) - before ))
[[ $first -gt $TREE_BYTES && $first -lt $((TREE_BYTES * 12 / 10 + 400000)) ]] &&
    pass "the first push moves the tree's bytes once, holes not included ($first for $TREE_BYTES)" ||
    fail "the first push moves the tree's bytes once" "$first bytes for a tree of $TREE_BYTES"
eq "the snapshot names the machine" "$(jq -r '.result.snapshot_id' <<<"$out")" s1
out=$(job bridge '{"function":"repo_pull","repository":"data","storage":"st","restore_point":"s1","from_machine":"far"}')
eq "a local pull of the remote snapshot completes" "$(status "$out")" COMPLETED
cmp_out=$(tree_compare "$R" "$T_DIR/lds/repositories/data")
check "the pulled tree equals the remote one (modes, owners, times, links, holes, names)" \
    grep -q " 0 differ" <<<"$cmp_out"
[[ $cmp_out == *" 0 differ"* ]] || echo "$cmp_out" | sed 's/^/# /'
check "the sparse file stays sparse" test "$(stat -c %b "$T_DIR/lds/repositories/data/sparse")" -lt 10000
wait_for 10 no_user_procs && pass "no process of the user is left" || fail "no process of the user is left" "$(user_procs)"

# --- incremental: 1 % of the tree changes ----------------------------------------------------
as_user sh -c 'head -c 150000 /dev/urandom > "$0/dir/f7"' "$R"
before=$(counted)
out=$(job far '{"function":"repo_push","repository":"data","storage":"st","snapshot_id":"s2"}')
eq "the incremental push completes" "$(status "$out")" COMPLETED
second=$(( $(counted) - before ))
[[ $second -lt $((150000 + 150000)) ]] &&
    pass "the incremental push moves about the changed bytes ($second for 150000 changed of $TREE_BYTES)" ||
    fail "the incremental push moves about the changed bytes" "$second bytes"
eq "it read only the changed file" "$(res "$out" .stats.bytes_read)" 150000

# --- the seed's backup workflow on the SSH machine: a local snapshot there, then its push; and
# backup_with_retry of every repository of the remote datastore ------------------------------
out=$(job far '{"function":"repo_snapshot","repository":"data","snapshot_id":"snap1"}')
eq "repo_snapshot on the SSH machine completes" "$(status "$out")" COMPLETED
out=$(job far '{"function":"repo_push","repository":"data","storage":"st","snapshot_id":"snap1"}')
eq "the push of that local snapshot completes" "$(status "$out")" COMPLETED
contains "... from the snapshot" "$(ferry queue trace "$(ferry list queue --max-records 1 --output json | jq -r '.data[0].taskId')" --output json | jq -r '.data.timeline[].details')" "(local snapshot)"
out=$(job far '{"function":"repo_push","repository":"nosuch","storage":"st","snapshot_id":"snap1"}')
eq "a push with a snapshot_id of a repository not on the machine fails" "$(err "$out" .code)" not_found
as_user mkdir -p "$HOME_DS/repositories/second"
as_user sh -c 'printf two > "$0/f"' "$HOME_DS/repositories/second"
out=$(job far '{"function":"backup_with_retry","storage":"st"}')
eq "backup_with_retry on the SSH machine completes" "$(status "$out")" COMPLETED
eq "... pushing every repository of its datastore" "$(res "$out" '.pushed[].repository' | sort | tr '\n' ' ')" "data second "

# --- paths and exclude ---------------------------------------------------------------------
out=$(job far "{\"function\":\"repo_push\",\"paths\":[\"$R/\"],\"storage\":\"st\",\"exclude\":[\"*.log\",\"/cache/\",\"!keep.log\"]}")
eq "repo_push with paths completes" "$(status "$out")" COMPLETED
prepo=$(res "$out" '.pushed[0].repository')
contains "a path is stored as a path- repository" "$prepo" "path-"
eq "its result names the path" "$(res "$out" '.pushed[0].path')" "$R"
out=$(job bridge "{\"function\":\"repo_pull\",\"repository\":\"$prepo\",\"storage\":\"st\",\"from_machine\":\"far\"}")
eq "the path snapshot pulls back by its repository name" "$(status "$out")" COMPLETED
P=$T_DIR/lds/repositories/$prepo
check "excluded: *.log" test ! -e "$P/app.log"
check "excluded: /cache/ and what it holds" test ! -e "$P/cache"
check "the rest is there" test -f "$P/dir/f7" -a -L "$P/dir/sym"
out=$(job far '{"function":"repo_list","storage":"st"}')
contains "repo_list shows the path repository" "$out" "$prepo"
for bad in '[]' '["relative/dir"]' '["/a/../etc"]' '["/a/./b"]'; do
    out=$(job far "{\"function\":\"repo_push\",\"paths\":$bad,\"storage\":\"st\"}")
    eq "paths $bad is refused" "$(err "$out" .outcome)" INVALID
    eq "... in one line" "$(err "$out" .message | wc -l)" 1
done
out=$(job far '{"function":"repo_push","repository":"data","paths":["/x"],"storage":"st"}')
eq "repository and paths together are refused" "$(err "$out" .outcome)" INVALID
out=$(job far '{"function":"repo_push","repository":"data","storage":"st","exclude":["a[b"]}')
eq "a bad exclude pattern is refused" "$(err "$out" .outcome)" INVALID
contains "... naming it" "$(err "$out" .message)" "unterminated"

# --- cancel, dropped connection, killed session ---------------------------------------------
as_user sh -c 'head -c 40000000 /dev/urandom > "$0/big2"' "$R"
crossed() { [[ $(( $(counted) - BEFORE )) -gt $1 ]]; }
snapshots() { find "$T_DIR/st/snapshots" -type f 2>/dev/null | wc -l; }
ITEM='{"function":"repo_push","repository":"data","storage":"st"}'
interrupted() { # NAME ACTION STATUS: a throttled push of ITEM, interrupted by ACTION once 30 MB crossed
    # (a pack is 16 MiB, and a chunk is cut once 4 MiB follow it: the first pack is stored)
    echo 4000000 >"$T_DIR/RATE"
    local task n
    BEFORE=$(counted)
    n=$(snapshots)
    task=$(ferry create queue-item Ops far local --vault \
        "$ITEM" --output json | jq -r '.data[0].taskId')
    wait_for 60 crossed 30000000 || fail "$1: 30 MB crossed" "$(( $(counted) - BEFORE ))"
    sleep 1
    "$2" "$task"
    ferry queue wait "$task" --timeout 60 >/dev/null 2>&1
    rm -f "$T_DIR/RATE"
    contains "$1: the push ends" "$(task_status "$task")" "$3"
    wait_for 15 no_user_procs && pass "$1: no process of the user is left" ||
        fail "$1: no process of the user is left" "$(user_procs)"
    eq "$1: no snapshot was stored" "$(snapshots)" "$n"
    local v
    v=$(job bridge '{"function":"repo_verify","storage":"st"}')
    eq "$1: the storage verifies" "$(status "$v")" COMPLETED
}
do_cancel() { ferry queue cancel "$1" >/dev/null; }
do_drop() { kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null; RELAY_PID=; }
do_kill_session() { # the sshd processes serving the user's sessions
    local p
    for p in $(pgrep -u "$SSHD_USER" -x sshd) $(pgrep -f "sshd: $SSHD_USER" -u root); do kill -9 "$p"; done
}
interrupted "cancel" do_cancel CANCELLED
out=$(job far '{"function":"repo_push","repository":"data","storage":"st","snapshot_id":"after-cancel"}')
eq "the next push completes" "$(status "$out")" COMPLETED
new=$(res "$out" .stats.bytes_new)
[[ $new -lt $((40000000 - (16 << 20) + 2000000)) ]] && pass "and reuses what the cancelled push uploaded ($new of 40000000 bytes new)" ||
    fail "and reuses what the cancelled push uploaded" "$new bytes new"
as_user sh -c 'head -c 40000000 /dev/urandom > "$0/big2"' "$R"
interrupted "dropped connection" do_drop FAILED
start_relay
as_user sh -c 'head -c 40000000 /dev/urandom > "$0/big2"' "$R"
interrupted "killed sshd session" do_kill_session FAILED
as_user sh -c 'head -c 40000000 /dev/urandom > "$0/big2"' "$R"
do_slow() { echo 50000 >"$T_DIR/RATE"; } # the push cannot end before its timeout now
ITEM='{"function":"repo_push","repository":"data","storage":"st","timeout":25}'
interrupted "the item's timeout" do_slow FAILED

# --- hostile remote tools -------------------------------------------------------------------
as_user mkdir -p "$SSHD_HOME/fakebin"
fake_find() { printf '#!/bin/sh\n%s\n' "$1" >"$SSHD_HOME/fakebin/find"; chmod 755 "$SSHD_HOME/fakebin/find"; }
n=$(snapshots)
fake_find "printf 'd 755 0 0 1 1.0 1.0 1 1 2 \\0\\0f 644 0 0 1 1.0 1.0 2 1 1 ../../etc/passwd\\0\\0'"
out=$(job evil '{"function":"repo_push","repository":"data","storage":"st"}')
eq "a listing with .. fails the push" "$(status "$out")" FAILED
contains "... naming the entry" "$(err "$out" .message)" 'entry "../../etc/passwd"'
fake_find "printf 'd 755 0 0 1 1.0 1.0 1 1 2 \\0\\0f 644 0 0 1 1.0 1.0 2 1 1 /etc/passwd\\0\\0'"
out=$(job evil '{"function":"repo_push","repository":"data","storage":"st"}')
contains "an absolute path fails the push" "$(err "$out" .message)" "absolute path"
fake_find "head -c 3000 /dev/urandom"
out=$(job evil '{"function":"repo_push","repository":"data","storage":"st"}')
eq "garbage fails the push" "$(status "$out")" FAILED
fake_find "printf 'd 755 0 0 1 1.0 1.0 1 1 2 \\0\\0f 644 0 0 1'"
out=$(job evil '{"function":"repo_push","repository":"data","storage":"st"}')
contains "a truncated record fails the push" "$(err "$out" .message)" "ends in the middle of a record"
eq "none of them stored a snapshot" "$(snapshots)" "$n"
wait_for 10 no_user_procs && pass "no process of the user is left" || fail "no process of the user is left" "$(user_procs)"

t_done
