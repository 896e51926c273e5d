#!/usr/bin/env bash
# Users, tokens and the audit log through the CLI (issue 16, points 5 and 6; docs/people.md):
#   - create user / create token / list users / list tokens / revoke token / rm user, text
#     and JSON, and their refusals (exit 2 for usage, 1 for the store's);
#   - a token is printed once: never again by any later command, and not in the store
#     (only its SHA-256 is);
#   - every change is in the audit log with who (the Unix user), from where (cli) and when,
#     and in the item's timeline; audit list filters;
#   - people.command_role is checked when the configuration is read.
# tests/e2e/pg_people.sh runs this file again against PostgreSQL.
. "$(dirname "$0")/../lib.sh"

write_config
install_plugins
ME=$(id -un)
jqf() { jq -r "$2" <<<"$1" 2>/dev/null || echo "jq failed on: $1"; }

ferry init >/dev/null 2>&1 || fail "ferry init"
ferry create team Dev >/dev/null

# --- users --------------------------------------------------------------------------------------
eq "create user" "$(ferry create user alice)" "Successfully created user alice"
out=$(ferry create user bob --output json)
eq "create user: JSON row" "$(jqf "$out" '.data[0] | [.userName, .createdBy, .tokens] | @tsv')" "bob	$ME	0"
out=$(ferry create user alice 2>&1); rc=$?
eq "a second alice is refused (exit 1)" "$rc" 1
contains "and says why" "$out" "user 'alice' already exists"
out=$(ferry create user 'bad name' 2>&1); rc=$?
eq "a name with a space is refused" "$rc" 1
out=$(ferry create user 2>&1); rc=$?
eq "create user without a name is a usage error" "$rc" 2

# --- tokens: printed once -------------------------------------------------------------------------
out=$(ferry create token alice --team Default --role operator 2>"$T_DIR/warn")
contains "create token says what it made" "$out" "Successfully created token 1 for user alice (team Default, role operator)"
TOKEN=$(sed -n 's/^Token: //p' <<<"$out")
if [[ $TOKEN =~ ^fy1_[0-9a-f]{64}$ ]]; then pass "the token is fy1_ and 64 hex digits"; else fail "token shape" "$TOKEN"; fi
contains "a warning says it is shown once" "$(cat "$T_DIR/warn")" "only time the token is shown"
out=$(ferry create token bob --team Dev --role viewer --output json)
TOKEN2=$(jqf "$out" '.data.token')
eq "create token --output json: data holds the token and its row" \
    "$(jqf "$out" '.data | [.tokenId, .userName, .teamName, .role, .revoked] | @tsv')" "2	bob	Dev	viewer	false"
if [[ $TOKEN2 =~ ^fy1_[0-9a-f]{64}$ && $TOKEN2 != "$TOKEN" ]]; then pass "a second, different token"; else fail "second token" "$TOKEN2"; fi
ferry create token alice --team Dev --role admin >/dev/null 2>&1

for bad in "--team Default" "--role admin" "--team Default --role root" "--team Default --role Admin"; do
    # shellcheck disable=SC2086
    out=$(ferry create token alice $bad 2>&1); rc=$?
    eq "create token alice $bad is a usage error" "$rc" 2
done
out=$(ferry create token nobody --team Default --role viewer 2>&1); rc=$?
eq "a token for an unknown user is refused" "$rc" 1
contains "naming the fix" "$out" "ferry create user nobody"
out=$(ferry create token alice --team Nowhere --role viewer --output json); rc=$?
eq "a token for an unknown team is refused" "$rc" 1
eq "with the JSON failure envelope" "$(jqf "$out" '[.success, .data] | @tsv')" "false	"

# --- lists ------------------------------------------------------------------------------------------
out=$(ferry list tokens --output json)
eq "list tokens: every token" "$(jqf "$out" '[.data[].tokenId] | join(",")')" "1,2,3"
eq "list tokens never has a token member" "$(jqf "$out" '[.data[] | has("token") or has("tokenHash")] | any')" false
eq "list tokens USER" "$(ferry list tokens bob --output json | jq -r '[.data[].tokenId] | join(",")')" 2
out=$(ferry list tokens nobody 2>&1); rc=$?
eq "list tokens of an unknown user is refused" "$rc" 1
contains "list tokens text has the columns" "$(ferry list tokens)" "ID  USER   TEAM     ROLE      STATE"
eq "list users" "$(ferry list users --output json | jq -r '[.data[] | "\(.userName):\(.tokens)"] | join(",")')" "alice:2,bob:1"

# --- revoke and remove -----------------------------------------------------------------------------
eq "revoke token" "$(ferry revoke token 1)" "Successfully revoked token 1 of user alice"
out=$(ferry revoke token 1 2>&1); rc=$?
eq "revoking it again is refused" "$rc" 1
contains "and says so" "$out" "revoked already"
for bad in abc 0 -3 1x ""; do
    out=$(ferry revoke token "$bad" 2>&1); rc=$?
    eq "revoke token '$bad' is a usage error" "$rc" 2
done
out=$(ferry rm token 999 2>&1); rc=$?
eq "rm token of an unknown id is refused" "$rc" 1
eq "list tokens shows it revoked" "$(ferry list tokens alice --output json | jq -r '.data[0] | [.revoked, .revokedBy] | @tsv')" "true	$ME"
eq "rm user" "$(ferry rm user bob)" "Successfully removed user bob (its tokens are revoked)"
eq "its token is revoked with it" "$(ferry list tokens --output json | jq -r '.data[1].revoked')" true
eq "list users no longer shows it" "$(ferry list users --output json | jq -r '[.data[].userName] | join(",")')" alice
out=$(ferry create user bob 2>&1); rc=$?
eq "a removed user's name is not reused" "$rc" 1

# --- the audit log and the timeline ----------------------------------------------------------------
id=$(ferry create queue-item Default localhost local --vault '{"function":"hello","name":"x"}' --output json 2>/dev/null | jq -r '.data[0].taskId')
ferry queue cancel "$id" >/dev/null
out=$(ferry queue trace "$id" --output json)
eq "the item's events carry who asked, from where" "$(jqf "$out" '[.data.timeline[].actor] | unique | join(",")')" "$ME (cli)"
out=$(ferry audit list --output json)
eq "audit list: JSON envelope with truncated" "$(jqf "$out" '[.success, .truncated] | @tsv')" "true	false"
eq "the newest row is the cancel" "$(jqf "$out" '.data[0] | [.action, .user, .via, .team, .target] | @tsv')" \
    "queue.cancel	$ME	cli	Default	$id"
eq "then its create" "$(jqf "$out" '.data[1] | [.action, .target, .details] | @tsv')" \
    "queue.create	$id	hello on localhost, priority 3"
eq "every change is there, newest first" "$(jqf "$out" '[.data[].action] | reverse | join(",")')" \
    "region.create,bridge.create,team.create,machine.create,team.create,user.create,user.create,token.create,token.create,token.create,token.revoke,user.delete,queue.create,queue.cancel"
eq "audit list --action token" "$(ferry audit list --action token --output json | jq -r '[.data[].action] | join(",")')" \
    "token.revoke,token.create,token.create,token.create"
eq "audit list --action token.revoke --target 1" "$(ferry audit list --action token.revoke --target 1 --output json | jq -r '.data | length')" 1
eq "audit list --team Dev" "$(ferry audit list --team Dev --output json | jq -r '[.data[].action] | join(",")')" \
    "token.create,token.create,team.create"
eq "audit list --user $ME" "$(ferry audit list --user "$ME" --output json | jq -r '.data | length')" 14
eq "audit list --user nobody" "$(ferry audit list --user nobody --output json | jq -r '.data | length')" 0
eq "audit list --since today" "$(ferry audit list --since "$(date -u +%F)" --output json | jq -r '.data | length')" 14
eq "audit list --since tomorrow" "$(ferry audit list --since "$(date -u -d tomorrow +%F)" --output json | jq -r '.data | length')" 0
out=$(ferry audit list --limit 2 --output json)
eq "audit list --limit 2 cuts and says so" "$(jqf "$out" '[(.data | length), .truncated] | @tsv')" "2	true"
contains "and in text, on stderr" "$(ferry audit list --limit 2 2>&1 >/dev/null)" "more rows match"
contains "audit list text" "$(ferry audit list --limit 1)" "queue.cancel"
for bad in "--since yesterdayish" "--limit 0" "--limit 10001" "--limit x"; do
    # shellcheck disable=SC2086
    out=$(ferry audit list $bad 2>&1); rc=$?
    eq "audit list $bad is a usage error" "$rc" 2
done

# --- the token is nowhere but in that one output ---------------------------------------------------
later=$(
    for o in text json; do
        ferry list tokens --output $o; ferry list tokens alice --output $o; ferry list users --output $o
        ferry audit list --output $o; ferry queue trace "$id" --output $o
    done 2>&1
)
not_contains "no later output has the first token" "$later" "${TOKEN#fy1_}"
not_contains "nor the second" "$later" "${TOKEN2#fy1_}"
if [[ ${FERRY_TEST_DRIVER:-sqlite} == postgres ]]; then
    stored=$(sqlite3 "$T_DIR/ferry.db" "SELECT (SELECT string_agg(t::text, ' ') FROM tokens t) || (SELECT string_agg(a::text, ' ') FROM audit_log a) || (SELECT string_agg(e::text, ' ') FROM queue_events e)")
else
    stored=$(cat "$T_DIR"/ferry.db* | strings)
fi
contains "the store holds the tokens' hashes" "$stored" "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)"
not_contains "but not the first token" "$stored" "${TOKEN#fy1_}"
not_contains "nor the second" "$stored" "${TOKEN2#fy1_}"

# --- libcrypto is loaded by what hashes a token, not by every command -----------------------------
# (Not checked on PostgreSQL, where libpq loads it for TLS anyway, nor in a SAN build, whose
# link keeps every library it is given.)
if [[ ${FERRY_TEST_DRIVER:-sqlite} != postgres && ${SAN:-0} != 1 ]]; then
    not_contains "the binary does not link libcrypto" "$(readelf -d "$FERRY_ROOT/$BUILD/ferry" | grep NEEDED)" libcrypto
    loaded=$(LD_DEBUG=files ferry audit list --limit 1 2>&1 >/dev/null)
    not_contains "audit list loads no libcrypto" "$loaded" "file=libcrypto"
    loaded=$(LD_DEBUG=files ferry create token alice --team Dev --role viewer 2>&1 >/dev/null)
    contains "create token loads it on its first hash" "$loaded" "file=libcrypto.so.3"
fi

# --- which functions run commands: their descriptors say so --------------------------------------
for fn in script run_tests conditional conditional_backup; do
    eq "$fn is flagged runs_commands" "$(ferry functions "$fn" --output json | jq -r '.data.flags | index("runs_commands") != null')" true
done
eq "repo_list is not" "$(ferry functions repo_list --output json | jq -r '.data.flags | index("runs_commands") != null')" false

# --- a team with active tokens stays until they are revoked ----------------------------------------
out=$(ferry rm team Dev 2>&1); rc=$?
eq "rm team with active tokens is refused" "$rc" 1
contains "naming them" "$out" "team 'Dev' still has active API tokens 3"

# --- help and configuration -----------------------------------------------------------------------
help=$(ferry --help 2>&1)
for cmd in "create user" "create token" "list users" "list tokens" "revoke token" "rm user" "audit list"; do
    contains "--help lists $cmd" "$help" "$cmd"
done
cp "$T_DIR/ferry.conf" "$T_DIR/roles.conf"
echo 'people = { command_role = "root"; };' >>"$T_DIR/roles.conf"
out=$(ferry --config "$T_DIR/roles.conf" list users 2>&1); rc=$?
eq "people.command_role other than operator or admin is refused" "$rc" 1
contains "naming the key" "$out" "people.command_role is 'root'; use \"operator\" or \"admin\""
sed -i 's/"root"/"admin"/' "$T_DIR/roles.conf"
check "people.command_role = \"admin\" is taken" ferry --config "$T_DIR/roles.conf" list users

t_done
