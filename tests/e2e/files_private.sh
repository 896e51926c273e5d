#!/usr/bin/env bash
# Files private from birth (issue 17, point 1; docs/security.md): whatever the caller's umask,
# the store's directory is 0700, the store and its -wal and -shm 0600, the key 0400, the
# host's wake-up directory 0700 and the CLI's descriptor cache private; a store that holds
# secrets and that other users may read is refused by the CLI and the host, exit 1, with one
# line naming the file and the chmod that fixes it.
. "$(dirname "$0")/../lib.sh"

if [[ ${FERRY_TEST_DRIVER:-sqlite} != sqlite ]]; then
    echo "ok 1 - # SKIP the files are SQLite's"
    exit 0
fi
umask 022
# The store in a directory of its own that ferry creates.
write_config
sed -i "s#path = \"$T_DIR/ferry.db\"#path = \"$T_DIR/var/ferry.db\"#" "$T_DIR/ferry.conf"
install_plugins
DB=$T_DIR/var/ferry.db
mode() { stat -c %a "$1" 2>/dev/null || echo missing; }

out=$(ferry init 2>&1) || fail "ferry init" "$out"
contains "init names the key it sealed with" "$out" "$T_DIR/var/ferry.key"
eq "var/ is 0700 (umask 022 in the caller)" "$(mode "$T_DIR/var")" 700
eq "the store is 0600" "$(mode "$DB")" 600
ferry create team Extra >/dev/null
sqlite3 "$DB" "PRAGMA journal_mode" >/dev/null
for f in "$DB-wal" "$DB-shm"; do
    [[ -e $f ]] && eq "$(basename "$f") is 0600" "$(mode "$f")" 600 || pass "$(basename "$f") not left behind"
done
eq "the key is 0400" "$(mode "$T_DIR/var/ferry.key")" 400

# The host: its wake-up directory and sockets; and the files a function creates locally.
setup_local_machine Ops box1
start_host || fail "host starts"
eq "the host's wake-up directory is 0700" "$(mode "$DB.wake")" 700
stop_host
ferry list functions >/dev/null 2>&1
cache=$(find "$T_DIR/cache" -type f 2>/dev/null | head -1)
if [[ -n $cache ]]; then
    eq "the CLI's descriptor cache file is 0600" "$(mode "$cache")" 600
else
    pass "no descriptor cache with an SQLite store"
fi

# A store without secrets may be shared (nothing to protect); one with secrets may not.
chmod 644 "$DB"
out=$(ferry list teams 2>&1)
[[ $? -eq 0 ]] && pass "a readable store without secrets still opens" || fail "a readable store without secrets still opens" "$out"
chmod 600 "$DB"
ferry update machine-vault box1 --vault '{"ssh_password":"pw-PRIVATE-1"}' >/dev/null || fail "a secret is stored"
chmod 640 "$DB"
out=$(ferry list teams 2>&1)
rc=$?
eq "the CLI refuses a group-readable store holding secrets: exit 1" "$rc" 1
eq "... with one line" "$(wc -l <<<"$out")" 1
contains "... naming the file and its mode" "$out" "store $DB holds secrets but other users may read it (mode 0640)"
contains "... and the fix" "$out" "chmod 600 $DB"
out=$(timeout 10 "$FERRY_BIN" serve 2>&1 </dev/null)
rc=$?
[[ $rc -eq 1 && $out == *"chmod 600 $DB"* ]] && pass "the host refuses it too, exit 1" || fail "the host refuses it too, exit 1" "rc $rc: $out"
chmod 600 "$DB"
[[ -e $DB-wal ]] && chmod 604 "$DB-wal" && {
    out=$(ferry list teams 2>&1)
    [[ $? -eq 1 && $out == *"$DB-wal"*"(mode 0604)"* ]] && pass "a world-readable -wal is refused as well" ||
        fail "a world-readable -wal is refused as well" "$out"
    chmod 600 "$DB-wal"
}
out=$(ferry list teams 2>&1)
[[ $? -eq 0 ]] && pass "after the chmod it opens again" || fail "after the chmod it opens again" "$out"
t_done
