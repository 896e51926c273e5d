#!/usr/bin/env bash
# Secrets sealed at rest (issue 17, point 2; docs/security.md): secrets planted in every kind
# of vault (team, machine, storage, schedule, queue item: by name and by a function's SECRET
# parameter) are nowhere in a dump of the store (sqlite3 .dump, or pg_dump under
# FERRY_TEST_DRIVER=postgres), yet a function still receives the real values; listings show
# them redacted, `inspect --reveal` opens them; a missing or wrong key is a one-line error;
# a value moved to another row does not open; `ferry key rotate` re-seals everything.
. "$(dirname "$0")/../lib.sh"

write_config
install_plugins
PG=0
[[ ${FERRY_TEST_DRIVER:-sqlite} == postgres ]] && PG=1
# The key: next to an SQLite store, next to the config for PostgreSQL.
KEY=$T_DIR/ferry.key

# A function that writes what it received (its parameters and a storage's vault) to a file.
cat >"$T_DIR/seal_echo.c" <<'EOF'
#include <stdio.h>
#include <ferry/plugin.h>
static ferry_result echo_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    const char *out = json_string_value(json_object_get(params, "out"));
    const char *name = json_string_value(json_object_get(params, "storage"));
    json_t *storage = name ? ctx->host->storage(ctx, name) : NULL;
    json_t *all = json_pack("{s:O,s:o?}", "params", params, "storage", storage);
    json_dump_file(all, out, JSON_COMPACT);
    json_decref(all);
    *result = json_pack("{s:b}", "written", 1);
    return FERRY_OK;
}
static const ferry_param echo_params[] = {
    {"out", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL, "file to write"},
    {"storage", FERRY_PARAM_STRING, 0, NULL, "storage to read"},
    {"license", FERRY_PARAM_STRING, FERRY_PARAM_SECRET, NULL, "secret by the descriptor"},
    {NULL, 0, 0, NULL, NULL}};
static const ferry_function echo = {FERRY_FUNCTION_INIT, .name = "seal_echo",
    .summary = "write params and a storage", FERRY_PARAMS(echo_params), .run = echo_run};
static const ferry_function *const fns[] = {&echo, NULL};
FERRY_PLUGIN(.name = "sealecho", .version = "1.0.0", .summary = "test", .functions = fns);
EOF
san=()
[[ ${SAN:-0} == 1 ]] && san=(-fsanitize=address,undefined)
${CC:-cc} -std=gnu11 -O1 -fPIC -shared -Wall -Werror "${san[@]}" -I"$FERRY_ROOT/sdk/include" \
    -o "$T_DIR/plugins/sealecho.so" "$T_DIR/seal_echo.c" -ljansson || fail "the echo fixture builds"

setup_local_machine Ops box1
[[ -f $KEY ]] && pass "the first command made the key $KEY" || fail "the first command made the key" "$(ls -la "$T_DIR")"
eq "... mode 0400" "$(stat -c %a "$KEY")" 400

# Secrets planted in every kind of vault.
S_TEAM=team-ssh-key-TEAMSECRET1 S_MACHINE=machine-password-MACHSECRET2 S_S3=s3-secret-S3SECRET3
S_PASS=repo-passphrase-REPOSECRET4 S_SCHED=schedule-token-SCHEDSECRET5 S_ITEM=item-password-ITEMSECRET6
S_LIC=licence-by-descriptor-LICSECRET7 S_NOTE=notify-token-NOTESECRET8
ALL="TEAMSECRET1|MACHSECRET2|S3SECRET3|REPOSECRET4|SCHEDSECRET5|ITEMSECRET6|LICSECRET7|NOTESECRET8"
ferry update team-vault Ops --vault "{\"ssh_private_key\":\"$S_TEAM\"}" >/dev/null || fail "team vault"
ferry update machine-vault box1 --vault "{\"ssh_password\":\"$S_MACHINE\",\"notify\":{\"api_token\":\"$S_NOTE\"}}" >/dev/null ||
    fail "machine vault"
ferry create storage Ops vault-s3 --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/st\",\"secret_key\":\"$S_S3\",\"passphrase\":\"$S_PASS\"}" >/dev/null ||
    fail "storage"
ferry create schedule Ops nightly --vault "{\"cron\":\"0 3 * * *\",\"machine\":\"box1\",\"queue_config\":{\"function\":\"seal_echo\",\"out\":\"$T_DIR/sched.json\",\"token\":\"$S_SCHED\"}}" >/dev/null ||
    fail "schedule"
out=$(ferry create queue-item Ops box1 local --vault "{\"function\":\"seal_echo\",\"out\":\"$T_DIR/got.json\",\"storage\":\"vault-s3\",\"password\":\"$S_ITEM\",\"license\":\"$S_LIC\"}" 2>&1)
id=$(sed -n 's/^Task ID: //p' <<<"$out")
[[ -n $id ]] && pass "an item with secrets is queued" || fail "an item with secrets is queued" "$out"

dump_store() {
    if ((PG)); then
        pg_dump "$(cat "$T_DIR/pg/server") dbname=$T_DIR/ferry.db"
    else
        sqlite3 "$T_DIR/ferry.db" .dump
    fi
}
dump=$(dump_store)
[[ $dump == *seal_state* ]] && pass "the dump is the whole store ($(wc -c <<<"$dump") bytes)" || fail "the dump is the whole store" "${dump:0:400}"
found=$(grep -oE "$ALL" <<<"$dump" | sort -u | tr '\n' ' ')
[[ -z $found ]] && pass "a dump of the store holds none of the 8 planted secrets" ||
    fail "a dump of the store holds none of the 8 planted secrets" "found: $found"
sealed=$(grep -o 'ferry-sealed:1:' <<<"$dump" | wc -l)
((sealed >= 7)) && pass "... they are sealed values ($sealed in the dump)" || fail "... they are sealed values" "$sealed"

# Listings show them redacted, and never open them: they work without the key.
not_contains "list team-machines shows no secret" "$(ferry list team-machines Ops --output json)" "MACHSECRET2"
mv "$KEY" "$KEY.away"
lst=$(ferry list team-storages Ops --output json 2>&1)
contains "a listing works without the key" "$lst" "vault-s3"
not_contains "... and shows no secret" "$lst" "S3SECRET3"
rev=$(ferry inspect storage Ops vault-s3 --reveal 2>&1)
rc=$?
[[ $rc -eq 1 && $(wc -l <<<"$rev") -eq 1 && $rev == *"$KEY"* && $rev == *"does not exist"* ]] &&
    pass "inspect --reveal without the key: exit 1, one line naming the key file" ||
    fail "inspect --reveal without the key: exit 1, one line naming the key file" "rc $rc: $rev"
not_contains "... and no ciphertext or secret" "$rev" "S3SECRET3"
# A wrong key: another key file in its place.
python3 - "$KEY" <<'PY'
import os, secrets, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
os.write(fd, ("ferry-key-1:" + secrets.token_hex(32) + "\n").encode()); os.close(fd)
PY
rev=$(ferry inspect storage Ops vault-s3 --reveal 2>&1)
rc=$?
[[ $rc -eq 1 && $(wc -l <<<"$rev") -eq 1 && $rev == *"wrong key"* ]] &&
    pass "inspect --reveal with a wrong key: exit 1, one line saying so" ||
    fail "inspect --reveal with a wrong key: exit 1, one line saying so" "rc $rc: $rev"
out=$(timeout 10 "$FERRY_BIN" serve 2>&1 </dev/null)
rc=$?
[[ $rc -ne 0 && $rc -ne 124 && $out == *"wrong key"* ]] && pass "a host with a wrong key does not start, and says why" ||
    fail "a host with a wrong key does not start, and says why" "rc $rc: $out"
rm -f "$KEY"
mv "$KEY.away" "$KEY"

rev=$(ferry inspect storage Ops vault-s3 --reveal --output json 2>&1)
eq "inspect --reveal opens the storage's secrets" "$(jq -r '.secret_key // .vault.secret_key' <<<"$rev")" "$S_S3"
eq "... and a machine's" "$(ferry inspect machine Ops box1 --reveal --output json | jq -r '.vault.ssh_password')" "$S_MACHINE"
eq "... and a nested one" "$(ferry inspect machine Ops box1 --reveal --output json | jq -r '.vault.notify.api_token')" "$S_NOTE"

# A sealed value copied to another row does not open there.
ferry create storage Ops other --vault '{"provider":"local","path":"/tmp/x"}' >/dev/null
sqlite3 "$T_DIR/ferry.db" "UPDATE storages SET vault = (SELECT vault FROM storages WHERE name = 'vault-s3') WHERE name = 'other'" >/dev/null
rev=$(ferry inspect storage Ops other --reveal 2>&1)
[[ $? -eq 1 && $rev == *"copied from another row"* ]] && pass "a sealed value moved to another row does not open" ||
    fail "a sealed value moved to another row does not open" "$rev"
ferry rm storage Ops other >/dev/null

# The host hands the function the real values: its parameters and the storage's vault.
start_host || fail "host starts"
wait_status "$id" COMPLETED 30 || fail "the item completes" "$(ferry queue trace "$id" 2>&1 | tail -5)"
eq "the function received the item's password" "$(jq -r .params.password "$T_DIR/got.json")" "$S_ITEM"
eq "... and its SECRET parameter" "$(jq -r .params.license "$T_DIR/got.json")" "$S_LIC"
eq "... and the storage's secret key" "$(jq -r .storage.secret_key "$T_DIR/got.json")" "$S_S3"
eq "... and its passphrase" "$(jq -r .storage.passphrase "$T_DIR/got.json")" "$S_PASS"
# A schedule's secret reaches the item it fires (sealed again as that item's).
ferry update schedule-vault Ops nightly --vault '{"cron":"* * * * *"}' >/dev/null
wait_for 75 test -s "$T_DIR/sched.json" || fail "the schedule fired"
eq "a schedule's secret reaches the function of the item it fires" "$(jq -r .params.token "$T_DIR/sched.json" 2>/dev/null)" "$S_SCHED"
ferry update schedule-vault Ops nightly --vault '{"enabled":false}' >/dev/null
stop_host
found=$(dump_store | grep -oE "$ALL" | sort -u | tr '\n' ' ')
[[ -z $found ]] && pass "after the runs, a dump still holds no planted secret" || fail "after the runs, a dump still holds no planted secret" "found: $found"

# Rotation: every value re-sealed under a new key, the old key gone, values unchanged.
old_id=$(sed -n 's/^ferry-key-1://p' "$KEY" | head -c 8)
before=$(dump_store | grep -o 'ferry-sealed:1:[0-9a-f]*' | sort | uniq -c)
out=$(ferry key rotate 2>&1)
contains "ferry key rotate re-seals" "$out" "re-sealed"
after_ids=$(dump_store | grep -o 'ferry-sealed:1:[0-9a-f]*' | sort -u | wc -l)
eq "... every sealed value is under one key" "$after_ids" 1
new_kid=$(jq -r .data.keyId <<<"$(ferry key rotate --output json 2>/dev/null)" 2>/dev/null)
[[ -n $new_kid && $(dump_store | grep -o 'ferry-sealed:1:[0-9a-f]*' | sort -u) == "ferry-sealed:1:$new_kid" ]] &&
    pass "... the key the store names ($new_kid)" || fail "... the key the store names" "$new_kid / $before"
eq "... the key file is still 0400" "$(stat -c %a "$KEY")" 400
[[ ! -e $KEY.new ]] && pass "... and no KEY.new is left" || fail "... and no KEY.new is left"
eq "... values unchanged" "$(ferry inspect storage Ops vault-s3 --reveal --output json | jq -r .vault.passphrase)" "$S_PASS"
eq "... an item's too" "$(ferry list queue --task-id "$id" --output json | jq -r '.data[0].vaultContent.password')" "********"
[[ $old_id != $(sed -n 's/^ferry-key-1://p' "$KEY" | head -c 8) ]] && pass "... and the key file holds a new key" || fail "... and the key file holds a new key"

# A host that keeps running through a rotation opens what is sealed under the new key.
start_host || fail "host starts again"
# It checked its key at start (a wrong one stops it, above) without mapping libcrypto, which
# costs an idle host 3.6 MiB: libpq brings it along on PostgreSQL, so SQLite only.
if ((!PG)); then
    ! grep -q libcrypto "/proc/$HOST_PID/maps" && pass "an idle host checked its key without mapping libcrypto" ||
        fail "an idle host checked its key without mapping libcrypto"
fi
ferry key rotate >/dev/null 2>&1 || fail "a rotation while the host runs"
out=$(ferry create queue-item Ops box1 local --vault "{\"function\":\"seal_echo\",\"out\":\"$T_DIR/got2.json\",\"password\":\"$S_ITEM\"}" 2>&1)
id2=$(sed -n 's/^Task ID: //p' <<<"$out")
wait_status "$id2" COMPLETED 30 || fail "the item after the rotation completes" "$(ferry queue trace "$id2" 2>&1 | tail -5)"
eq "a host running through a rotation hands the function the real value" "$(jq -r .params.password "$T_DIR/got2.json" 2>/dev/null)" "$S_ITEM"
stop_host

# A rotation cut short after its commit (both files present, the store under the new one)
# finishes at the next open.
if ((!PG)); then
    cp -p "$KEY" "$T_DIR/cur.key"
    "$FERRY_BIN" key rotate >/dev/null 2>&1
    # Put the old key back as KEY and the new one as KEY.new, as a crash before the rename.
    mv "$KEY" "$KEY.new"
    cp -p "$T_DIR/cur.key" "$KEY"
    eq "after a crash between the commit and the rename, the secrets still open" \
        "$(ferry inspect storage Ops vault-s3 --reveal --output json 2>&1 | jq -r .vault.passphrase)" "$S_PASS"
    [[ ! -e $KEY.new ]] && pass "... and the rotation was finished (KEY.new renamed)" || fail "... and the rotation was finished"
fi
t_done
