#!/usr/bin/env bash
# Issue 17, point 3: least privilege. The host runs as an unprivileged user; functions whose
# config or machine names another user (run_as) get their worker from ferry-priv, the root
# helper, which checks the caller (SO_PEERCRED) and its own root-owned policy. Hostile cases:
# another uid, a function or user the policy does not list, root through "*", odd names, a
# policy others may write, the helper absent or killed mid-attempt; and the attempt really
# runs under the target uid with timeouts, cancels and kills working.
. "$(dirname "$0")/../lib.sh"

if [[ $(id -u) != 0 ]] || ! command -v useradd >/dev/null || ! command -v runuser >/dev/null; then
    echo "1..0 # SKIP needs root, useradd and runuser"
    exit 0
fi
HU=ferrytest_phost
RU=ferrytest_prun
# /etc/passwd's lock, taken in turns with tests/helpers/sshd.sh.
locked() { flock /run/ferry-sshd-users.lock "$@"; }
for u in $HU $RU; do
    id "$u" >/dev/null 2>&1 || locked useradd --system --no-create-home --home-dir / --shell /usr/sbin/nologin "$u"
done
HELPER=
cleanup_users() {
    [[ -n $HELPER ]] && kill -9 "$HELPER" 2>/dev/null
    pkill -9 -u "$RU" 2>/dev/null
    pkill -9 -u "$HU" 2>/dev/null
    sleep 0.2
    locked userdel "$RU" 2>/dev/null
    locked userdel "$HU" 2>/dev/null
    t_cleanup
}
trap cleanup_users EXIT
RUID=$(id -u "$RU")

# The layout: plugins and policy root's, the store the host user's alone.
chmod 755 "$T_DIR"
mkdir -p "$T_DIR/plugins" "$T_DIR/var" "$T_DIR/etc"
cp "$FERRY_ROOT/$BUILD"/plugins/*.so "$T_DIR/plugins/"
chmod 755 "$T_DIR/plugins" "$T_DIR/etc"
chmod 644 "$T_DIR"/plugins/*.so
chown "$HU:" "$T_DIR/var"
chmod 700 "$T_DIR/var"
SOCK=$T_DIR/priv.sock
POLICY=$T_DIR/etc/priv.conf
export XDG_CACHE_HOME=$T_DIR/var/cache
cat >"$T_DIR/ferry.conf" <<EOF
bridge = "local";
store = { path = "$T_DIR/var/ferry.db"; };
plugins = { dir = "$T_DIR/plugins"; };
lease = { poll_ms = 100; };
timeouts = { grace = 1; };
limits = { functions = { script = { processes = 12; }; }; };
workers = { run_as = "script=$RU os_update=root"; priv_socket = "$SOCK"; };
EOF
chmod 644 "$T_DIR/ferry.conf"
cat >"$POLICY" <<EOF
# test policy
host_user $HU   # the test's host
plugin_dir $T_DIR/plugins
allow script $RU
allow * $RU root
allow os_update root
allow log_message root
EOF
chmod 644 "$POLICY"

ferry() { runuser -u "$HU" -- "$FERRY_BIN" "$@"; }
start_host() {
    runuser -u "$HU" -- prlimit --nofile=777:777 "$FERRY_BIN" serve >>"$T_DIR/host.log" 2>&1 &
    HOST_PID=$!
    wait_for 10 grep -q "serving bridge" "$T_DIR/host.log" || { sed 's/^/# /' "$T_DIR/host.log"; return 1; }
}
start_helper() {
    "$FERRY_BIN" priv --policy "$POLICY" --socket "$SOCK" >>"$T_DIR/priv.log" 2>&1 &
    HELPER=$!
    wait_for 10 test -S "$SOCK"
}
row() { ferry list queue --task-id "$1" --output json | jq -r ".data[0]$2"; }
q() { ferry create queue-item Ops "${2:-box1}" local --vault "$1" --output json | jq -r '.data[0].taskId'; }

setup_local_machine Ops box1
ferry create machine Ops local rootbox --vault '{"connection":"local","run_as":"root"}' >/dev/null
ferry create machine Ops local runbox --vault '{"connection":"local","run_as":"'"$RU"'"}' >/dev/null
ferry create machine Ops local oddbox --vault '{"connection":"local","run_as":"../root"}' >/dev/null
start_host || { fail "the host starts as $HU"; t_done; exit 1; }
check "the host runs as $HU" pgrep -u "$HU" -f "$FERRY_BIN serve"

# 1. No helper: a clear outcome naming the fix.
t=$(q '{"function":"script","interpreter":"/bin/sh","script":"id -u"}')
check "without ferry-priv the item fails" wait_status "$t" FAILED 15
contains "... naming the helper and the fix" "$(row "$t" .lastFailureReason)" "systemctl enable --now ferry-priv.socket"

# 2. The attempt runs under the target uid.
start_helper || fail "ferry priv starts"
t=$(q '{"function":"script","interpreter":"/bin/sh","script":"id -u; id -G; echo HOME=$HOME USER=$USER NOFILE=$(ulimit -n)"}')
check "a run_as item completes" wait_status "$t" COMPLETED 15
out=$(row "$t" .responseVault.result.output)
eq "it ran as $RU (id -u)" "$(head -1 <<<"$out")" "$RUID"
contains "with $RU's own environment" "$out" "USER=$RU"
contains "and the host's lower resource limits" "$out" "NOFILE=777"
contains "the helper logs what it granted" "$(cat "$T_DIR/priv.log")" "started script as $RU"

# 3. Root through "*" refused; a machine's odd run_as refused before any helper.
t=$(q '{"function":"hello"}' runbox)
check "a machine's run_as, allowed by \"*\", runs" wait_status "$t" COMPLETED 15
contains "... through the helper" "$(tail -1 "$T_DIR/priv.log")" "started hello as $RU"
t=$(q '{"function":"hello"}' rootbox)
check "run_as root for a function not named for root fails" wait_status "$t" FAILED 15
contains "... because the policy grants root only on a line naming the function" \
    "$(row "$t" .lastFailureReason)" "root only on a line naming the function"
t=$(q '{"function":"log_message","message":"hi"}' rootbox)
check "a function the policy names for root runs as root" wait_status "$t" COMPLETED 15
contains "... through the helper, as uid 0" "$(tail -1 "$T_DIR/priv.log")" "started log_message as root (uid 0)"
t=$(q '{"function":"log_message","message":"hi","pre_hook":"id -u > /tmp/ferry-priv-hook"}' rootbox)
check "a root worker runs no pre_hook" wait_status "$t" FAILED 15
contains "... and says so" "$(row "$t" .lastFailureReason)" "runs no pre_hook or post_hook"
check "... which never ran" test ! -e /tmp/ferry-priv-hook
t=$(q '{"function":"os_update","packages":["ferry-no-such-package"],"dry_run":true,"refresh":false}')
check "os_update, named for root in config and policy, runs as root" wait_status "$t" COMPLETED 60
contains "... through the helper" "$(grep 'started os_update' "$T_DIR/priv.log")" "started os_update as root (uid 0)"
t=$(q '{"function":"hello"}' oddbox)
check "run_as ../root fails" wait_status "$t" FAILED 15
contains "... as not a user name" "$(row "$t" .lastFailureReason)" "is not a user name"

# 4. A policy others may write is refused (and says how to fix it).
chmod 666 "$POLICY"
t=$(q '{"function":"script","interpreter":"/bin/sh","script":"id -u"}')
check "with a world-writable policy the item fails" wait_status "$t" FAILED 15
contains "... naming the chmod" "$(row "$t" .lastFailureReason)" "writable by root alone"
chmod 644 "$POLICY"
chmod 600 "$SOCK"
t=$(q '{"function":"script","interpreter":"/bin/sh","script":"id -u"}')
check "with the socket out of the host's reach the item fails" wait_status "$t" FAILED 15
contains "... naming the socket's group" "$(row "$t" .lastFailureReason)" "must be in the socket's group"
chmod 660 "$SOCK"

# 5. The wire itself, as the host's user, another user and root: a request from another
# uid, a user or function the policy does not list, odd names.
raw() { # raw AS FUNCTION USER: the helper's answer to one request
    runuser -u "$1" -- python3 - "$SOCK" "$2" "$3" <<'PY' 2>&1
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect:", e.strerror); sys.exit(0)
s.send(("ferry-priv 1\nfunction %s\nuser %s\nmemory_mb 0\nenv LD_PRELOAD=/tmp/x.so\n" % (sys.argv[2], sys.argv[3])).encode())
m = s.recv(2048).decode(errors="replace")
print(m.split("\n")[0])
PY
}
contains "another local user cannot even connect" "$(raw nobody script "$RU")" "Permission denied"
contains "root (not the host's user) is refused" "$(raw root script "$RU")" "only the host's user"
contains "a user the policy does not list is refused" "$(raw "$HU" script nobody)" "does not let script run as nobody"
contains "a function the policy does not list, as root, is refused" "$(raw "$HU" hello root)" "root only on a line naming the function"
contains "user .. is refused" "$(raw "$HU" script ..)" "not a user name"
contains "user ../etc is refused" "$(raw "$HU" script ../etc)" "not a user name"
contains "a function ../x is refused" "$(raw "$HU" ../x "$RU")" "not a function name"
contains "a user name with a newline trick is refused" "$(raw "$HU" script "$RU x")" "not a user name"
contains "an unknown user is refused" "$(raw "$HU" script no_such_user_x)" "no user no_such_user_x"

# 6. Timeouts, cancels and limits still hold for workers of another user.
t=$(q '{"function":"script","interpreter":"/bin/sh","script":"sleep 300 & sleep 301","timeout":2}')
check "a helper-started attempt times out" wait_status "$t" FAILED 20
contains "... as a timeout" "$(row "$t" .lastFailureReason)" "timeout after 2 s"
check "... and none of its processes are left" wait_for 5 sh -c "! pgrep -u $RU sleep"
t=$(q '{"function":"script","interpreter":"/bin/sh","script":"sleep 302"}')
check "it starts" wait_for 10 pgrep -u "$RU" -f "sleep 302"
ferry queue cancel "$t" >/dev/null
check "a helper-started attempt is cancelled" wait_status "$t" CANCELLED 20
check "... and its processes are gone" wait_for 5 sh -c "! pgrep -u $RU -f 'sleep 302'"

t=$(q '{"function":"script","interpreter":"/bin/sh","script":"for i in $(seq 30); do sleep 304 & done; wait"}')
check "a helper-started attempt over its process limit fails" wait_status "$t" FAILED 20
contains "... with the limit" "$(row "$t" .lastFailureReason)" "process limit 12 exceeded"
check "... and its processes are gone" wait_for 5 sh -c "! pgrep -u $RU -f 'sleep 304'"

# 7. The helper's keeper killed mid-attempt: the attempt ends clearly, nothing is left.
t=$(q '{"function":"script","interpreter":"/bin/sh","script":"sleep 303"}')
check "an attempt runs" wait_for 10 pgrep -u "$RU" -f "sleep 303"
keeper=$(pgrep -u "$RU" -f "sleep 303" | head -1)
while [[ -n $keeper && $(ps -o ppid= -p "$keeper" | tr -d ' ') != "$HELPER" ]]; do
    keeper=$(ps -o ppid= -p "$keeper" | tr -d ' ')
done
check "the attempt's keeper is the helper's child" test -n "$keeper"
kill -9 "$keeper" "$HELPER" 2>/dev/null
check "with the helper killed the attempt fails" wait_status "$t" FAILED 20
contains "... saying its keeper ended" "$(row "$t" .lastFailureReason)" "ferry-priv keeper ended"
check "... and its processes are gone" wait_for 5 sh -c "! pgrep -u $RU -f 'sleep 303'"
HELPER=
check "the host carries on" kill -0 "$HOST_PID"

# Socket activation: systemd passes the listening socket (LISTEN_FDS), as ferry-priv.socket does.
if command -v systemd-socket-activate >/dev/null; then
    rm -f "$SOCK"
    systemd-socket-activate --seqpacket -l "$SOCK" "$FERRY_BIN" priv --policy "$POLICY" >>"$T_DIR/priv.log" 2>&1 &
    HELPER=$!
    wait_for 10 test -S "$SOCK"
    chown "root:$(id -g "$HU")" "$SOCK"
    chmod 660 "$SOCK"
    t=$(q '{"function":"script","interpreter":"/bin/sh","script":"id -u"}')
    check "a socket-activated helper starts the worker" wait_status "$t" COMPLETED 15
    eq "... as $RU" "$(row "$t" .responseVault.result.output | head -1)" "$RUID"
    kill -9 "$HELPER" 2>/dev/null
    HELPER=
fi

# 8. os_update on the bridge without root says how to get it.
stop_host
sed -i 's/ os_update=root//' "$T_DIR/ferry.conf"
start_host || fail "the host restarts"
t=$(q '{"function":"os_update","dry_run":true,"refresh":false}')
check "os_update on the bridge as the unprivileged host fails" wait_status "$t" FAILED 30
contains "... naming ferry-priv and the two settings" "$(row "$t" .lastFailureReason)" \
    'workers.run_as = "os_update=root" in ferry.conf and "allow os_update root"'
stop_host
t_done
