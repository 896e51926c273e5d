#!/usr/bin/env bash
# Bad input to the CLI: invalid JSON, unknown references, out-of-range priorities, vaults over
# the configured maximum, hostile names. Each must give one clear line on stderr (or the JSON
# failure envelope on stdout with --output json), the documented exit code (1 error, 2 usage)
# and write nothing (issue 3, point 5).
. "$(dirname "$0")/../lib.sh"

write_config 'vault = { max_bytes = 2048; };'
install_plugins
ferry create region r1 >/dev/null
ferry create bridge r1 local >/dev/null
ferry create bridge r1 other >/dev/null
ferry create team Ops >/dev/null
ferry create team Dev >/dev/null
ferry create machine Ops local box1 --vault '{"connection":"local"}' >/dev/null
ferry create machine Dev local box2 --vault '{"connection":"local"}' >/dev/null
ferry create queue-item Ops box1 local --vault '{"function":"hello"}' >/dev/null

# sql DB QUERY: runs SQL on the SQLite store (sqlite3 when installed, else python3's module),
# printing rows as a|b|c. Only for what the CLI cannot do or must be checked beneath it.
sql() {
    if command -v sqlite3 >/dev/null; then
        sqlite3 -cmd '.timeout 5000' "$1" "$2"
    else
        python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=5)
for r in c.execute(sys.argv[2]).fetchall(): print("|".join(str(x) for x in r))
c.commit()' "$1" "$2"
    fi
}
# snapshot: everything a refused command must leave alone, as one line.
snapshot() {
    local q
    q=$(ferry list queue --max-records 10000 --output json | jq '.data | length')
    echo -n "items=$q"
    for what in teams regions bridges team-machines; do
        echo -n " $what=$(ferry list $what --output json | jq -c '[.data[] | del(.updatedTime)] | length')"
    done
    echo -n " vaults=$(ferry list team-machines --output json | jq -c '[.data[].vaultVersion]')"
    echo -n " sql=$(sql "$T_DIR/ferry.db" \
            'SELECT (SELECT count(*) FROM queue_items), (SELECT count(*) FROM queue_events),
                    (SELECT count(*) FROM teams), (SELECT count(*) FROM machines),
                    (SELECT count(*) FROM schedules), (SELECT count(*) FROM storages)')"
}
BASE=$(snapshot)
[[ $BASE == items=1* ]] && pass "baseline: $BASE" || fail "baseline" "$BASE"

# refused NAME RC TEXT COMMAND...: the command fails with exit RC and one line on stderr that
# contains TEXT, prints nothing on stdout and writes nothing; then the same in JSON mode.
refused() {
    local name=$1 want_rc=$2 want=$3; shift 3
    local out err rc
    out=$("$FERRY_BIN" "$@" 2>"$T_DIR/err"); rc=$?
    err=$(cat "$T_DIR/err")
    eq "$name: exit $want_rc" "$rc" "$want_rc"
    eq "$name: one line on stderr" "$(printf '%s\n' "$err" | wc -l)" 1
    if [[ $err == "ferry: "*"$want"* ]]; then pass "$name: says '$want'"; else fail "$name: says '$want'" "stderr: $err"; fi
    eq "$name: nothing on stdout" "$out" ""
    out=$("$FERRY_BIN" "$@" --output json 2>"$T_DIR/err"); rc=$?
    eq "$name (json): exit $want_rc" "$rc" "$want_rc"
    eq "$name (json): the failure envelope" "$(jq -c '[.success, .data, (.error | type)]' <<<"$out" 2>&1)" '[false,null,"string"]'
    contains "$name (json): error says '$want'" "$(jq -r .error <<<"$out" 2>&1)" "$want"
    eq "$name (json): stderr empty" "$(cat "$T_DIR/err")" ""
    eq "$name: nothing written" "$(snapshot)" "$BASE"
}

# --- invalid JSON: line and column -------------------------------------------------------------
refused "invalid JSON (missing value)" 1 "invalid JSON in vault at line 4, column 1" \
    create queue-item Ops box1 local --vault $'{\n  "function": "hello",\n  "x": \n}'
refused "invalid JSON (trailing comma)" 1 "at line 1, column 21" \
    create queue-item Ops box1 local --vault '{"function":"hello",}'
refused "invalid JSON (single quotes)" 1 "at line 1, column 2" \
    create queue-item Ops box1 local --vault "{'function': 'hello'}"
refused "invalid JSON (unterminated string)" 1 "invalid JSON in vault at line 1" \
    create queue-item Ops box1 local --vault '{"function":"hello","s":"open}'
refused "invalid JSON (trailing garbage)" 1 "end of file expected" \
    create queue-item Ops box1 local --vault '{"function":"hello"} and more'
refused "invalid JSON (# inside a string is not a comment)" 1 "invalid JSON in vault at line 2" \
    create queue-item Ops box1 local --vault $'{"function":"hello",\n "a": "# x", oops}'
refused "a vault that is not an object" 1 "vault must be a JSON object" \
    create queue-item Ops box1 local --vault '[1,2]'
refused "an empty vault" 1 "vault is empty" \
    create queue-item Ops box1 local --vault ''
printf '{\n  "function": "hello",\n  "a": 1\n  "b": 2\n}\n' >"$T_DIR/bad.json"
refused "invalid JSON from --vault-file" 1 "at line 4, column" \
    create queue-item Ops box1 local --vault-file "$T_DIR/bad.json"
refused "a missing --vault-file" 1 "cannot read $T_DIR/nope.json" \
    create queue-item Ops box1 local --vault-file "$T_DIR/nope.json"
refused "invalid JSON in a resource vault" 1 "invalid JSON in vault at line 1" \
    create machine Ops local box9 --vault '{"ip": 10.0.0.1}'
refused "invalid JSON in an update" 1 "invalid JSON in vault at line 1" \
    update machine-vault box1 --vault '{"ssh_port": }'

# --- references ------------------------------------------------------------------------------------
refused "unknown team" 1 "no team named 'Nobody'; create it with: ferry create team Nobody" \
    create queue-item Nobody box1 local --vault '{"function":"hello"}'
refused "unknown machine" 1 "no machine named 'ghost'; create it with: ferry create machine" \
    create queue-item Ops ghost local --vault '{"function":"hello"}'
refused "unknown bridge" 1 "no bridge named 'nowhere'; create it with: ferry create bridge REGION nowhere" \
    create queue-item Ops box1 nowhere --vault '{"function":"hello"}'
refused "unknown bridge with an unknown function: the error alone" 1 "no bridge named 'nowhere'" \
    create queue-item Ops box1 nowhere --vault '{"function":"fn_missing"}'
refused "a machine of another team" 1 "belongs to team 'Dev'" \
    create queue-item Ops box2 local --vault '{"function":"hello"}'
refused "a machine on another bridge" 1 "machine 'box1' is on bridge 'local', not 'other'" \
    create queue-item Ops box1 other --vault '{"function":"hello"}'
refused "an unknown --after task" 1 "ffffffff" \
    create queue-item Ops box1 local --vault '{"function":"hello"}' --after ffffffff

# --- priority and other usage errors (exit 2) ------------------------------------------------------
for p in 0 6 -1 high 2.5 ""; do
    refused "priority '$p'" 2 "--priority must be a whole number from 1 to 5" \
        create queue-item Ops box1 local --vault '{"function":"hello"}' --priority "$p"
done
refused "list --priority 9" 2 "--priority must be a whole number from 1 to 5" list queue --priority 9
refused "missing arguments" 2 "missing arguments (usage: ferry create queue-item TEAM MACHINE BRIDGE" \
    create queue-item Ops box1 --vault '{"function":"hello"}'
refused "no vault" 2 "give the item's vault" create queue-item Ops box1 local
refused "--vault and --vault-file" 2 "give --vault or --vault-file, not both" \
    create queue-item Ops box1 local --vault '{}' --vault-file "$T_DIR/bad.json"
refused "unknown option" 2 "unknown option '--colour'" list queue --colour
refused "unknown command" 2 "unknown command 'frobnicate'" frobnicate
refused "option without its value" 2 "option --team needs a value" list queue --team
refused "too many arguments" 2 "too many arguments ('extra')" create team Ops2 extra
refused "--timeout not a number" 2 "--timeout must be a whole number" queue wait abc --timeout soon

# --- the vault maximum (vault.max_bytes = 2048 here) ---------------------------------------------
big=$(printf '{"function":"hello","pad":"%03000d"}' 0)
refused "a vault over vault.max_bytes" 1 "2048" create queue-item Ops box1 local --vault "$big"
printf '%s' "$big" >"$T_DIR/big.json"
refused "a vault file over vault.max_bytes" 1 "vault.max_bytes" create queue-item Ops box1 local --vault-file "$T_DIR/big.json"
out=$("$FERRY_BIN" create queue-item Ops box1 local --vault-file - <"$T_DIR/big.json" 2>&1); rc=$?
eq "a vault on stdin over vault.max_bytes: exit 1" "$rc" 1
eq "  one line" "$(wc -l <<<"$out")" 1
eq "  nothing written" "$(snapshot)" "$BASE"
refused "a resource vault over vault.max_bytes" 1 "2048" create team Big --vault "$big"
small=$(printf '{"function":"hello","pad":"%01900d"}' 0)
out=$(ferry create queue-item Ops box1 local --vault "$small" --output json | jq -r .success)
eq "a vault just under the maximum is accepted" "$out" true
ferry rm queue-item "$(ferry list queue --output json | jq -r '.data[0].taskId')" >/dev/null
BASE=$(snapshot) # the removal left an item's history behind in the SQL counts

# --- hostile names: quotes, semicolons, spaces, unicode, control characters ----------------------
NAMES=("O'Brien" 'say"hi"' "a;b" "ops; DROP TABLE teams;--" "web server" " lead" "wébserver"
    "日本" "ünï" $'two\nlines' $'tab\there' "" "$(printf 'x%.0s' {1..129})" ".hidden" "a/b" '$(id)')
for n in "${NAMES[@]}"; do
    label=$(printf '%q' "$n" | cut -c1-30)
    refused "team name $label" 1 "invalid name" create team "$n"
done
for n in "O'Brien" "a;b" "web server" "ünï" $'two\nlines'; do
    label=$(printf '%q' "$n")
    refused "region name $label" 1 "invalid name" create region "$n"
    refused "bridge name $label" 1 "invalid name" create bridge r1 "$n"
    refused "machine name $label" 1 "invalid name" create machine Ops local "$n" --vault '{"connection":"local"}'
    refused "storage name $label" 1 "invalid name" create storage Ops "$n" --vault '{"provider":"local"}'
    refused "schedule name $label" 1 "invalid name" create schedule Ops "$n" \
        --vault '{"cron":"0 2 * * *","machine":"box1","queue_config":{"function":"hello"}}'
    refused "queue-item team $label" 1 "" create queue-item "$n" box1 local --vault '{"function":"hello"}'
    refused "queue-item machine $label" 1 "" create queue-item Ops "$n" local --vault '{"function":"hello"}'
    refused "queue-item bridge $label" 1 "" create queue-item Ops box1 "$n" --vault '{"function":"hello"}'
done
out=$(ferry create team $'two\nlines' 2>&1)
contains "a newline in a name is shown escaped" "$out" "'two\\nlines'"

# SQL is parameterised: quotes in filters match nothing and break nothing.
for v in "x' OR '1'='1" "box1' --" "%" "_" "*" "Ops\"; DELETE FROM queue_items; --"; do
    label=$(printf '%q' "$v")
    for opt in team machine bridge task-id; do
        out=$(ferry list queue --$opt "$v" --output json); rc=$?
        # Either no rows, or refused as an invalid name: never rows it should not match.
        res=$(jq -r 'if .success then "rows=\(.data | length)" elif (.error | test("invalid name")) then "rows=0" else .error end' <<<"$out")
        eq "list --$opt $label matches nothing" "$res" "rows=0"
    done
done
eq "after all that, nothing was written" "$(snapshot)" "$BASE"

# --- JSON-mode errors escape what they quote -------------------------------------------------------
out=$(ferry create team 'say"hi"' --output json)
contains "a quote in a name stays valid JSON" "$(jq -r .error <<<"$out")" "invalid name 'say\"hi\"'"

t_done
