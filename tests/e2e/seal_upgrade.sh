#!/usr/bin/env bash
# Upgrading a store made before secrets were sealed (issue 17, point 2): the first process
# that opens it applies migration 7, makes the key and seals every secret the store holds, in
# one transaction; afterwards a dump holds none of them and the values read back unchanged.
# The old store is made by an older ferry binary when FERRY_OLD_BIN names one (built from a
# commit before sealing: the SQLite run passed with session 6's binary); otherwise by this
# binary with the sealing undone by hand (plain vaults written back, the key's row in
# seal_state removed): the store an older binary leaves, but with migration 7's table there
# already (the migrations' upgrade from version 4 is checked by test_store and
# pg_migration4.sh).
. "$(dirname "$0")/../lib.sh"

write_config
install_plugins
PG=0
[[ ${FERRY_TEST_DRIVER:-sqlite} == postgres ]] && PG=1
OLD=${FERRY_OLD_BIN:-}
S1=old-machine-password-UPGSECRET1 S2=old-s3-secret-UPGSECRET2 S3=old-item-token-UPGSECRET3
ALL="UPGSECRET1|UPGSECRET2|UPGSECRET3"
dump_store() {
    if ((PG)); then pg_dump "$(cat "$T_DIR/pg/server") dbname=$T_DIR/ferry.db"; else sqlite3 "$T_DIR/ferry.db" .dump; fi
}
MV="{\"connection\":\"local\",\"ssh_password\":\"$S1\"}"
SV="{\"provider\":\"local\",\"path\":\"/tmp/x\",\"secret_key\":\"$S2\"}"
IV="{\"function\":\"hello\",\"api_token\":\"$S3\"}"

if ((!PG)) && [[ -n $OLD && -x $OLD ]]; then
    how="an older binary ($OLD)"
    "$OLD" create region r >/dev/null && "$OLD" create bridge r local >/dev/null && "$OLD" create team Ops >/dev/null &&
        "$OLD" create machine Ops local box1 --vault "$MV" >/dev/null &&
        "$OLD" create storage Ops s3 --vault "$SV" >/dev/null || fail "the older binary makes a store"
    id=$("$OLD" create queue-item Ops box1 local --vault "$IV" 2>/dev/null | sed -n 's/^Task ID: //p')
    old_dump=$(dump_store)
else
    how="this binary, unsealed by hand"
    ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null &&
        ferry create machine Ops local box1 --vault "$MV" >/dev/null &&
        ferry create storage Ops s3 --vault "$SV" >/dev/null || fail "a store is made"
    id=$(ferry create queue-item Ops box1 local --vault "$IV" 2>/dev/null | sed -n 's/^Task ID: //p')
    sqlite3 "$T_DIR/ferry.db" "UPDATE machines SET vault = '$MV'; UPDATE storages SET vault = '$SV';
        UPDATE queue_items SET vault = '$IV'; DELETE FROM seal_state" >/dev/null
    rm -f "$T_DIR/ferry.key"
    old_dump=$(dump_store)
fi
echo "# the old store: made by $how"
[[ -n $id ]] && pass "the old store holds an item" || fail "the old store holds an item"
eq "the old store holds the secrets in plain text" "$(grep -oE "$ALL" <<<"$old_dump" | sort -u | wc -l)" 3
[[ ! -e $T_DIR/ferry.key ]] && pass "... and has no key" || fail "... and has no key"
# main's binary leaves the store readable by everybody: opening it now would be refused
# (files_private.sh); the operator's fix comes first.
((PG)) || chmod 600 "$T_DIR"/ferry.db*

out=$(ferry list teams 2>&1) || fail "the new binary opens the old store" "$out"
eq "migration 7 is applied (once)" "$(sqlite3 "$T_DIR/ferry.db" "SELECT count(*) FROM schema_migrations WHERE version = 7")" 1
eq "... its key made, 0400" "$(stat -c %a "$T_DIR/ferry.key" 2>&1)" 400
found=$(dump_store | grep -oE "$ALL" | sort -u | tr '\n' ' ')
[[ -z $found ]] && pass "after the upgrade a dump holds none of the secrets" || fail "after the upgrade a dump holds none of the secrets" "$found"
eq "... the machine's reads back" "$(ferry inspect machine Ops box1 --reveal --output json | jq -r .vault.ssh_password)" "$S1"
eq "... the storage's reads back" "$(ferry inspect storage Ops s3 --reveal --output json | jq -r .vault.secret_key)" "$S2"
eq "... versions unchanged (sealing is not an update)" "$(ferry inspect storage Ops s3 --output json | jq -r .vaultVersion)" 1
# The item reaches its function with the real value: hello ignores it, so ask the store.
start_host || fail "host starts"
wait_status "$id" COMPLETED 30 && pass "the old item runs" || fail "the old item runs" "$(ferry queue trace "$id" 2>&1 | tail)"
stop_host
out=$(ferry list teams 2>&1) || fail "a second open" "$out"
eq "a second open seals nothing again (one key id in the store)" \
    "$(dump_store | grep -o 'ferry-sealed:1:[0-9a-f]*' | sort -u | wc -l)" 1
t_done
