#!/usr/bin/env bash
# Issue 17, point 7: the shipped unit (dist/ferry.service.in) is Type=notify, runs as the
# ferry user with a 0700 StateDirectory, UMask=0077 and systemd's sandboxing, scores <= 4.0
# in `systemd-analyze security --offline=yes`, and names no man page that does not exist;
# the host speaks the notify protocol (READY=1, WATCHDOG=1, STOPPING=1) and its workers
# never see NOTIFY_SOCKET.
. "$(dirname "$0")/../lib.sh"

unit=$T_DIR/ferry.service
sed -e 's|@PREFIX@|/usr/local|g; s|@CONFDIR@|/usr/local/etc/ferry|g' "$FERRY_ROOT/dist/ferry.service.in" >"$unit"
for line in Type=notify WatchdogSec=120 User=ferry StateDirectory=ferry StateDirectoryMode=0700 \
    UMask=0077 NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
    CapabilityBoundingSet=; do
    check "the unit sets $line" grep -qx "$line" "$unit"
done
out=$(systemd-analyze security --offline=yes "$unit" 2>&1)
score=$(sed -n 's/.*Overall exposure level for ferry.service: \([0-9.]*\).*/\1/p' <<<"$out")
echo "# systemd-analyze security: $score"
check "systemd-analyze security --offline gives a score" test -n "$score"
check "the score is at most 4.0 (it is $score)" awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 4.0) }'
# ferry-priv (issue 17, point 3): root, socket-activated, its socket for root and the ferry
# group only; looser than the host's unit on purpose (its root workers upgrade packages),
# with the honest score docs/security.md gives: at most 6.0.
punit=$T_DIR/ferry-priv.service
sed -e 's|@PREFIX@|/usr/local|g; s|@CONFDIR@|/usr/local/etc/ferry|g' "$FERRY_ROOT/dist/ferry-priv.service.in" >"$punit"
for line in SocketGroup=ferry SocketMode=0660 ListenSequentialPacket=/run/ferry-priv.sock; do
    check "ferry-priv.socket sets $line" grep -qx "$line" "$FERRY_ROOT/dist/ferry-priv.socket"
done
check "ferry-priv.service runs ferry priv with its policy" \
    grep -qx "ExecStart=/usr/local/bin/ferry priv --policy /usr/local/etc/ferry/priv.conf" "$punit"
pout=$(systemd-analyze security --offline=yes "$punit" 2>&1)
pscore=$(sed -n 's/.*Overall exposure level for ferry-priv.service: \([0-9.]*\).*/\1/p' <<<"$pout")
echo "# systemd-analyze security of ferry-priv.service: $pscore"
check "ferry-priv.service scores at most 6.0 (it is $pscore)" awk -v s="$pscore" 'BEGIN { exit !(s != "" && s <= 6.0) }'
missing=
for m in $(sed -n 's/^Documentation=//p' "$unit" "$punit" "$FERRY_ROOT/dist/ferry-priv.socket" | tr ' ' '\n' | sed -n 's/^man://p'); do
    name=${m%%(*}; sec=${m#*(}; sec=${sec%)}
    # Installed, or written by the build for make install and the Debian package to install.
    found=
    for f in /usr/share/man/man"${sec:0:1}"/"$name.$sec"* /usr/local/share/man/man"${sec:0:1}"/"$name.$sec"* \
        "$FERRY_ROOT/$BUILD/man/$name.$sec"; do
        [[ -e $f ]] && found=1
    done
    [[ -n $found ]] || missing+="$m "
done
eq "every man page the unit names exists" "$missing" ""

# The notify protocol, against a datagram socket standing in for systemd.
write_config 'lease = { poll_ms = 100; };'
install_plugins
ferry create region r1 >/dev/null
ferry create bridge r1 local >/dev/null
ferry create team Ops >/dev/null
ferry create machine Ops local here --vault '{"connection":"local"}' >/dev/null
python3 - "$T_DIR/notify.sock" >"$T_DIR/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
try:
    while True:
        m = s.recv(4096).decode()
        print(m, flush=True)
        if m.startswith("STOPPING=1"):
            break
except socket.timeout:
    pass
PY
listener=$!
wait_for 10 test -S "$T_DIR/notify.sock"
NOTIFY_SOCKET=$T_DIR/notify.sock WATCHDOG_USEC=400000 start_host || { t_done; exit 1; }
check "READY=1 once it serves" wait_for 10 grep -qx READY=1 "$T_DIR/notify.log"
check "WATCHDOG=1 while it runs" wait_for 10 grep -qx WATCHDOG=1 "$T_DIR/notify.log"
t=$(ferry create queue-item Ops here local --vault '{"function":"script","interpreter":"/bin/sh","script":"env"}' --output json | jq -r '.data[0].taskId')
check "an env-printing item completes" wait_status "$t" COMPLETED 30
not_contains "workers do not see NOTIFY_SOCKET" \
    "$(ferry list queue --task-id "$t" --output json | jq -r '.data[0].responseVault.result.output')" NOTIFY_SOCKET
stop_host
check "STOPPING=1 when it stops" wait_for 10 grep -qx STOPPING=1 "$T_DIR/notify.log"
kill "$listener" 2>/dev/null
wait "$listener" 2>/dev/null
t_done
