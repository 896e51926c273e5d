#!/usr/bin/env bash
# `ferry doctor` (issue 18, point 8; docs/operations.md "ferry doctor"): one line per check
# (ok, warn or fail, what, and the fix), --output json, exit 1 on any failure. A good setup
# is all ok; then each fault alone gives its line and exit 1: the store readable by others,
# the key file gone, a broken .so in the plugin directory, a machine that does not answer
# over SSH (--machines, against the loopback sshd fixture), a host whose heartbeat says its
# clock is ahead of the store's, a bad config.
. "$(dirname "$0")/../lib.sh"

SSHD=$FERRY_ROOT/tests/helpers/sshd.sh
SSHD_DIR=$T_DIR/sshd
port=$("$SSHD" start "$SSHD_DIR" --key-user ferrydoc) || { fail "sshd starts" "$port"; t_done; exit 1; }
t_cleanup_sshd() { "$SSHD" stop "$SSHD_DIR"; t_cleanup; }
trap t_cleanup_sshd EXIT
trap 'exit 143' TERM INT

write_config 'lease = { poll_ms = 200; };'
chmod 700 "$T_DIR"
install_plugins
setup_local_machine Ops m1
KEY=$(cat "$SSHD_DIR/client_key")
ferry create machine Ops local remote --vault "$(jq -n --argjson p "$port" --arg k "$KEY" \
    '{ip:"127.0.0.1", user:"ferrydoc", ssh_port:$p, SSH_PRIVATE_KEY:$k}')" >/dev/null
DB=$T_DIR/ferry.db
# Storages: a local directory, and SFTP on the same sshd (both empty: reached, nothing pushed).
mkdir -m 700 "$T_DIR/backups"
ferry create storage Ops disk --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/backups\",\"passphrase\":\"p\"}" >/dev/null
sftp_vault() { # KEY
    jq -n --argjson p "$port" --arg k "$1" --arg h "$(cat "$SSHD_DIR/host_key.pub")" --arg path "/home/ferrydoc/doctor-$$" \
        '{provider:"sftp", host:"127.0.0.1", port:$p, user:"ferrydoc", path:$path, private_key:$k, host_public_key:$h, passphrase:"p"}'
}
ferry create storage Ops offsite --vault "$(sftp_vault "$KEY")" >/dev/null

doctor() { ferry doctor "$@" >"$T_DIR/out" 2>"$T_DIR/err"; echo $? >"$T_DIR/rc"; }
line() { grep -E "$1" "$T_DIR/out"; }
rc() { cat "$T_DIR/rc"; }

# A good setup, with a host running (its heartbeat is what the clock check compares).
start_host
wait_for 10 test "$(sqlite3 "$DB" "SELECT count(*) FROM hosts")" -ge 1
doctor --machines --storages
eq "good setup: exit 0" "$(rc)" 0
eq "good setup: every line ok" "$(grep -cv '^ok  ' "$T_DIR/out")" 1 # the summary line
contains "... the config" "$(line '^ok    config: ')" "parses; every key is known"
contains "... the store's files" "$(line '^ok    store files: ')" "mode 0600"
contains "... the store opens as a host opens it" "$(line '^ok    store: ')" "opens as a host opens it"
contains "... the key" "$(line '^ok    key: ')" "ferry.key (mode 0400)"
contains "... each plugin" "$(line '^ok    plugin: core.so')" "core.so: core"
contains "... the host's clock" "$(line '^ok    clock: host ')" "(bridge local): heartbeat"
contains "... the local machine" "$(line 'machine Ops/m1')" "ok    machine Ops/m1: this machine (no SSH)"
contains "... the remote machine over SSH" "$(line 'machine Ops/remote')" "ok    machine Ops/remote: reachable over SSH"
contains "... a local storage" "$(line 'storage Ops/disk')" "ok    storage Ops/disk: reachable; it holds no repository data yet"
contains "... an SFTP storage" "$(line 'storage Ops/offsite')" "ok    storage Ops/offsite: reachable"
contains "... and a summary" "$(tail -1 "$T_DIR/out")" "ok, 0 warnings, 0 failed"
eq "nothing on stderr" "$(cat "$T_DIR/err")" ""
json=$(ferry doctor --output json)
eq "JSON: the checks and their counts" \
    "$(jq -c '[.success, (.data.checks | length > 5), (.data.checks[0] | keys), .data.failed]' <<<"$json")" \
    '[true,true,["check","fix","message","status"],0]'
stop_host

# A host whose heartbeat says its clock is 2 min ahead of the store's.
now=$(date +%s%3N)
sqlite3 "$DB" "INSERT INTO hosts (host_id, bridge_name, version, started_at, last_seen_at, running)
    VALUES ('skewed:1:x', 'local', '0', $now, $((now + 120000)), 0)"
doctor
eq "skewed clock: exit 1" "$(rc)" 1
eq "skewed clock: its line" "$(line 'skewed' | sed -E 's/is 11[5-9] s ahead/is 120 s ahead/')" \
    "fail  clock: host skewed:1:x (bridge local): its clock is 120 s ahead of the store's; fix: sync its clock (timedatectl set-ntp true, or chrony)"
sqlite3 "$DB" "UPDATE hosts SET last_seen_at = $(($(date +%s%3N) + 6000)) WHERE host_id = 'skewed:1:x'"
doctor
contains "a few seconds ahead: a warning, exit 0" "$(line 'skewed') $(rc)" "warn  clock: host skewed:1:x (bridge local): its clock is "
eq "... exit 0" "$(rc)" 0
sqlite3 "$DB" "DELETE FROM hosts WHERE host_id = 'skewed:1:x'"

# The store readable by others (it holds the machine's sealed key: a host would not start).
chmod 644 "$DB"
doctor
eq "store 0644: exit 1" "$(rc)" 1
contains "store 0644: the files' line, with the chmod" "$(line '^fail  store files: ')" \
    "$DB is mode 0644: other users may read the store (a host refuses to start on such a store once it holds secrets); fix: chmod 600 $DB"
contains "... and the host's refusal" "$(line '^fail  store: ')" "a host would not start: store $DB holds secrets but other users may read it (mode 0644); run: chmod 600"
chmod 600 "$DB"

# The key file gone.
mv "$T_DIR/ferry.key" "$T_DIR/key.away"
doctor
eq "missing key: exit 1" "$(rc)" 1
contains "missing key: its line" "$(line '^fail  key: ')" "$T_DIR/ferry.key: No such file or directory: without it the store's sealed secrets do not open; fix: restore it from its backup"
mv "$T_DIR/key.away" "$T_DIR/ferry.key"

# A broken .so in the plugin directory.
echo "not a plugin" >"$T_DIR/plugins/broken.so"
chmod 644 "$T_DIR/plugins/broken.so"
doctor
eq "broken plugin: exit 1" "$(rc)" 1
eq "broken plugin: its line" "$(line 'broken.so')" \
    "fail  plugin: broken.so is refused: not a shared object (no ELF header); fix: rebuild it against this ferry's SDK, or remove $T_DIR/plugins/broken.so"
rm "$T_DIR/plugins/broken.so"

# A machine that does not answer over SSH (--machines): its port closed (sshd is started
# again for the storage below).
"$SSHD" stop "$SSHD_DIR"
doctor --machines
eq "unreachable machine: exit 1" "$(rc)" 1
contains "unreachable machine: its line" "$(line 'machine Ops/remote')" "fail  machine Ops/remote: "
contains "... with the fix" "$(line 'machine Ops/remote')" "; fix: check its address and port, that sshd runs there"
doctor
eq "without --machines, no SSH: exit 0" "$(rc) $(grep -c 'machine Ops' "$T_DIR/out")" "0 0"

# A storage whose credentials are wrong (--storages): another key than the one authorized.
ssh-keygen -q -t ed25519 -N '' -f "$T_DIR/wrong_key"
ferry update storage-vault Ops offsite --vault "$(sftp_vault "$(cat "$T_DIR/wrong_key")")" >/dev/null
"$SSHD" restart "$SSHD_DIR" >/dev/null
doctor --storages
eq "wrong storage credentials: exit 1" "$(rc)" 1
contains "wrong storage credentials: its line" "$(line 'storage Ops/offsite')" "fail  storage Ops/offsite: "
contains "... with the fix" "$(line 'storage Ops/offsite')" "; fix: check its address, path and credentials"
not_contains "... and no key material" "$(cat "$T_DIR/out")" "PRIVATE KEY"
contains "... while the other storage is ok" "$(line 'storage Ops/disk')" "ok    storage Ops/disk"

# A config with an unknown key: one line, exit 1.
cp "$T_DIR/ferry.conf" "$T_DIR/good.conf"
echo 'history = { keep_dayz = 3; };' >>"$T_DIR/ferry.conf"
doctor
eq "bad config: exit 1" "$(rc)" 1
contains "bad config: its line" "$(line '^fail  config: ')" "unknown key 'history.keep_dayz'"
cp "$T_DIR/good.conf" "$T_DIR/ferry.conf"
doctor
eq "all fixed: exit 0 again" "$(rc)" 0
t_done
