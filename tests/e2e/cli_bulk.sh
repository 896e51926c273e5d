#!/usr/bin/env bash
# ferry create queue-items (issue 14, point 7): JSON lines from stdin or --file, each checked
# as create queue-item checks its item; all or nothing by default (exit 2, every bad line
# named by its number), --continue writes the good lines (exit 1 when some were bad); blank
# lines skipped; hostile lines (invalid UTF-8, not objects, too long, truncated) refused by
# number; secrets never echoed. Prints (does not assert) the throughput for 100,000 lines.
. "$(dirname "$0")/../lib.sh"

write_config
install_plugins
ferry create region r1 >/dev/null
ferry create bridge r1 local >/dev/null
ferry create bridge r1 far >/dev/null
ferry create team Ops >/dev/null
ferry create team Dev >/dev/null
ferry create machine Ops local box1 --vault '{"connection":"local"}' >/dev/null
ferry create machine Dev far far1 --vault '{"ip":"10.0.0.1","user":"u","ssh_port":22,"datastore":"/d"}' >/dev/null

count() { ferry list queue --max-records 10000 --output json | jq '.data | length'; }
# line I [PRIORITY]: one good line for box1, its vault naming I.
line() { printf '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"hello","name":"n%s"},"priority":%s}\n' "$1" "${2:-3}"; }

# --- happy path: 1,000 lines, in order ---------------------------------------------------
for i in $(seq 1 1000); do line "$i" $(((i % 5) + 1)); done >"$T_DIR/1000.jsonl"
out=$(ferry create queue-items --file "$T_DIR/1000.jsonl" --output json 2>"$T_DIR/err")
rc=$?
eq "1,000 good lines: exit 0" "$rc" 0
eq "... success true, created 1000" "$(jq -c '[.success, .data.created, (.data.taskIds | length), .data.badLines]' <<<"$out")" '[true,1000,1000,0]'
eq "... no warning" "$(cat "$T_DIR/err")" ""
eq "... 1,000 items in the store" "$(count)" 1000
ferry list queue --max-records 10000 --output json |
    jq -r '.data[] | [.taskId, .status, .teamName, .machineName, .bridgeName, .function, (.priority | tostring), .vaultContent.name] | @tsv' |
    sort >"$T_DIR/rows"
jq -r '.data.taskIds | to_entries[] | [.value, "n\(.key + 1)", ((.key + 1) % 5 + 1 | tostring)] | @tsv' <<<"$out" | sort >"$T_DIR/expected"
mismatch=$(join -t $'\t' "$T_DIR/expected" "$T_DIR/rows" |
    awk -F'\t' '$2 != $10 || $3 != $9 || $4 != "PENDING" || $5 != "Ops" || $6 != "box1" || $7 != "local" || $8 != "hello"' | wc -l)
joined=$(join -t $'\t' "$T_DIR/expected" "$T_DIR/rows" | wc -l)
eq "... every id answers its line (line order): PENDING, team, machine, bridge, function, priority, vault" "$joined/$mismatch" "1000/0"

# Text output: the summary, then one id a line in line order; stdin as the input.
printf '%s\n%s\n' "$(line a 1)" "$(line b 5)" | ferry create queue-items >"$T_DIR/text" 2>&1
rc=$?
eq "text mode from stdin: exit 0" "$rc" 0
eq "... first line the summary" "$(head -1 "$T_DIR/text")" "Successfully created 2 queue items"
second=$(sed -n 3p "$T_DIR/text")
eq "... then the ids in line order" "$(ferry list queue --task-id "$second" --output json | jq -r '.data[0].vaultContent.name')" "nb"
same=$(line c | ferry create queue-items --file - --output json | jq -r '.data.created')
eq "--file - reads stdin" "$same" 1

# --- all or nothing ------------------------------------------------------------------------
before=$(count)
{ line 1; line 2; echo '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"hello"},"priority":9}'; line 4; line 5; } >"$T_DIR/bad3.jsonl"
out=$(ferry create queue-items --file "$T_DIR/bad3.jsonl" 2>&1)
rc=$?
eq "a bad line in the middle: exit 2" "$rc" 2
contains "... the message names line 3 and why" "$out" 'line 3: "priority" must be a whole number from 1 to 5, not 9'
contains "... and says nothing was written" "$out" "1 bad line (3); nothing written"
eq "... nothing written" "$(count)" "$before"

# Every bad line is named, each kind of bad with its reason; blank lines are skipped but
# counted in the numbering.
bad_utf8=$(printf '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"hello","name":"\xff\xfe"}}')
{
    line 1                                                                   # 1
    echo                                                                     # 2 blank
    echo '[1, 2]'                                                            # 3 not an object
    echo '"just a string"'                                                   # 4
    echo '{"machine":"box1","bridge":"local","vault":{"function":"hello"}}'  # 5 no team
    echo '{"team":"Ops","machine":"nobox","bridge":"local","vault":{"function":"hello"}}' # 6
    echo "$bad_utf8"                                                         # 7
    echo '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"hello"},"priority":"high"}' # 8
    echo '{"team":"Ops","machine":"box1","bridge":"local","vault":{"name":"x"}}' # 9 no function
    echo '{"team":"Ops","machine":"box1","bridge":"local","vault":"hello"}' # 10
    echo '{"team":"Ops","machine":"box1","bridge":"far","vault":{"function":"hello"}}' # 11 wrong bridge
    echo '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"hello","password": hunter2secret}}' # 12
    echo '   '                                                               # 13 blank
    echo '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"hello","name":5}}' # 14
    echo '{"team":"Ops","team":"Dev","machine":"box1","bridge":"local","vault":{"function":"hello"}}' # 15 duplicate key
    line 16                                                                  # 16
} >"$T_DIR/many.jsonl"
out=$(ferry create queue-items --file "$T_DIR/many.jsonl" --output json 2>/dev/null)
rc=$?
eq "many bad lines: exit 2" "$rc" 2
eq "... JSON: success false, nothing created, no ids" "$(jq -c '[.success, .data.created, (.data.taskIds|length)]' <<<"$out")" '[false,0,0]'
eq "... the bad line numbers, blank lines counted but not bad" "$(jq -c '[.data.errors[].line]' <<<"$out")" '[3,4,5,6,7,8,9,10,11,12,14,15]'
err_of() { jq -r --argjson n "$1" '.data.errors[] | select(.line == $n) | .error' <<<"$out"; }
contains "... an array is not an object" "$(err_of 3)" "the line is an array, not a JSON object"
contains "... a string neither" "$(err_of 4)" "the line is a string, not a JSON object"
eq "... a missing team" "$(err_of 5)" '"team" is missing'
contains "... a machine that does not exist, in the store's words" "$(err_of 6)" "no machine named 'nobox'"
contains "... invalid UTF-8" "$(err_of 7)" "invalid JSON"
contains "... a priority that is not a number" "$(err_of 8)" '"priority" must be a whole number from 1 to 5, not a string'
contains "... a vault without a function" "$(err_of 9)" 'the vault has no "function"'
contains "... a vault that is not an object" "$(err_of 10)" '"vault" must be an object'
contains "... a machine on another bridge" "$(err_of 11)" "machine 'box1' is on bridge 'local', not 'far'"
contains "... unquoted text in a vault is invalid JSON" "$(err_of 12)" "invalid JSON at column"
not_contains "... and the secret is not echoed" "$out" "hunter2secret"
contains "... a parameter of the wrong type" "$(err_of 14)" 'parameter "name" of hello must be a string, got an integer'
contains "... a duplicate key" "$(err_of 15)" "duplicate"
contains "... the message lists them" "$(jq -r .error <<<"$out")" "12 bad lines (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15); nothing written"
eq "... nothing written" "$(count)" "$before"
single=$(ferry create queue-item Ops box1 local --vault '{"function":"hello","name":5}' 2>&1)
eq "the same check as create queue-item: the same words" "$single" "ferry: $(err_of 14)"
single=$(ferry create queue-item Ops nobox local --vault '{"function":"hello"}' 2>&1)
eq "... for a missing machine too" "$single" "ferry: $(err_of 6)"

# Text mode names each bad line on stderr.
out=$(ferry create queue-items --file "$T_DIR/many.jsonl" 2>&1 >/dev/null)
contains "text mode: each bad line on stderr" "$out" "ferry: line 7: invalid JSON"
eq "... one line each, and the summary" "$(wc -l <<<"$out")" 13

# --- --continue ---------------------------------------------------------------------------
out=$(ferry create queue-items --file "$T_DIR/many.jsonl" --continue --output json 2>/dev/null)
rc=$?
eq "--continue with bad lines: exit 1" "$rc" 1
eq "... the two good lines written, the 12 bad reported" "$(jq -c '[.success, .data.created, (.data.taskIds|length), .data.badLines, (.data.errors|length)]' <<<"$out")" '[false,2,2,12,12]'
eq "... they are in the store" "$(count)" "$((before + 2))"
first=$(jq -r '.data.taskIds[0]' <<<"$out")
eq "... the first id is line 1's" "$(ferry list queue --task-id "$first" --output json | jq -r '.data[0].vaultContent.name')" n1
contains "... the message says what happened" "$(jq -r .error <<<"$out")" "Created 2 queue items; 12 bad lines"
out=$({ line 1; line 2; } | ferry create queue-items --continue 2>&1)
rc=$?
eq "--continue with good lines only: exit 0" "$rc" 0

# --- edges ----------------------------------------------------------------------------------
before=$(count)
out=$(ferry create queue-items --output json </dev/null)
rc=$?
eq "empty input: exit 0, 0 items" "$rc/$(jq -c '[.success, .data.created]' <<<"$out")" '0/[true,0]'
out=$(printf '\n  \n\n' | ferry create queue-items --output json)
eq "only blank lines: 0 items, nothing bad" "$(jq -c '[.success, .data.created, .data.badLines]' <<<"$out")" '[true,0,0]'
out=$(printf '%s' "$(line last)" | ferry create queue-items --output json)
eq "a complete last line without a newline is a line" "$(jq -r '.data.created' <<<"$out")" 1
out=$(printf '%s\n%s' "$(line ok)" '{"team":"Ops","machine":"bo' | ferry create queue-items 2>&1)
rc=$?
eq "a truncated last line: exit 2" "$rc" 2
contains "... named" "$out" "line 2: invalid JSON"
out=$(ferry create queue-items --file "$T_DIR/nope.jsonl" 2>&1)
rc=$?
eq "a missing --file: exit 1" "$rc" 1
contains "... named" "$out" "cannot open $T_DIR/nope.jsonl"
eq "nothing written by the edges but the one good last line" "$(count)" "$((before + 1))"

# A line longer than vault.max_bytes is refused by number, the others still checked.
cp "$T_DIR/ferry.conf" "$T_DIR/small.conf"
echo 'vault = { max_bytes = 1024; };' >>"$T_DIR/small.conf"
long=$(printf '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"hello","name":"%s"}}' "$(head -c 3000 /dev/zero | tr '\0' x)")
out=$({ line 1; echo "$long"; echo '[]'; } | ferry --config "$T_DIR/small.conf" create queue-items 2>&1)
rc=$?
eq "a line over vault.max_bytes: exit 2" "$rc" 2
contains "... named by number with the limit" "$out" "line 2: the line is $((${#long})) bytes; the limit is 1024 bytes (vault.max_bytes"
contains "... and the next line is still read" "$out" "line 3: the line is an array"

# Warnings: once per distinct text, with the first line and how many more; --strict refuses.
out=$({ echo '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"no_such_fn"}}'; line 2; echo '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"no_such_fn"}}'; } | ferry create queue-items 2>&1 >/dev/null)
rc=$?
eq "an unknown function: written (exit 0)" "$rc" 0
contains "... with one warning for both lines" "$out" "warning: line 1 (and 1 more line): function no_such_fn is not provided by any plugin"
eq "... only one" "$(grep -c warning <<<"$out")" 1
out=$(echo '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"hello"},"colour":"red"}' | ferry create queue-items 2>&1 >/dev/null)
contains "a key that is not one of the five: warned" "$out" 'key "colour" is not one of team, machine, bridge, vault, priority'
before=$(count)
out=$({ line 1; echo '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"no_such_fn"}}'; echo '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"hello"},"colour":"red"}'; } | ferry create queue-items --strict 2>&1)
rc=$?
eq "--strict: exit 2" "$rc" 2
contains "... refuses the unknown function" "$out" "line 2: function no_such_fn is not provided by any plugin"
contains "... and the unknown key" "$out" 'line 3: key "colour" is not one of team, machine, bridge, vault, priority; refused by --strict'
eq "... nothing written" "$(count)" "$before"

# One vault on many lines is checked once and answered for each line (cli_item.c): a bad
# vault repeated is named on every line, and a warning that names the bridge is per bridge.
bad5='{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"hello","name":5}}'
out=$(printf '%s\n%s\n' "$bad5" "$bad5" | ferry create queue-items --continue --output json 2>/dev/null)
eq "one bad vault on two lines: both named" "$(jq -c '[.data.errors[].line]' <<<"$out")" '[1,2]'
out=$({ echo '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"no_such_fn"}}'
    echo '{"team":"Dev","machine":"far1","bridge":"far","vault":{"function":"no_such_fn"}}'; } |
    ferry create queue-items 2>&1 >/dev/null)
contains "one unknown function on two bridges: warned for the first" "$out" "line 1: function no_such_fn is not provided by any plugin in $T_DIR"
contains "... and for the second, naming its bridge" "$out" "line 2: function no_such_fn is not provided by any plugin in $T_DIR/plugins; the host on bridge far must have it"

# The descriptor decides idempotency, as for create queue-item.
id=$(echo '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"health_check","endpoint":"http://127.0.0.1:9/"}}' |
    ferry create queue-items --output json | jq -r '.data.taskIds[0]')
eq "an idempotent function's item is idempotent" "$(ferry list queue --task-id "$id" --output json | jq -r '.data[0].idempotent')" true

# A long stream is read, not held: 500,000 lines (60 MB) behind a bad first line are all
# checked (validation only, nothing written) in a few MB.
python3 - >"$T_DIR/stream.jsonl" <<'PY'
import sys
line = '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"hello","name":"%s"}}\n' % ("x" * 40)
sys.stdout.write("[1]\n" + line * 500000)
PY
# ferry's peak RSS in KB, as the kernel counts it for a child (ru_maxrss).
out=$(python3 -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stderr=subprocess.STDOUT, stdout=subprocess.PIPE, text=True)
print(r.stdout, end="")
print("rss %d" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' \
    "$FERRY_BIN" create queue-items --file "$T_DIR/stream.jsonl")
rss=$(sed -n 's/^rss //p' <<<"$out")
contains "a 60 MB stream behind a bad first line: the bad line named" "$out" "1 bad line (1); nothing written"
if [[ ${SAN:-0} == 1 ]]; then
    echo "# (SAN build: peak RSS ${rss} KB not checked)"
elif [[ -n $rss && $rss -lt 40000 ]]; then
    pass "... read in ${rss} KB of memory (< 40 MB)"
else
    fail "... read in less than 40 MB of memory" "peak RSS: ${rss:-unknown} KB"
fi

# --- help and docs ---------------------------------------------------------------------------
help=$(ferry create queue-items --help)
contains "--help names the options" "$help" "--continue"
contains "... and --file" "$help" "--file FILE"
if grep -q '^### create queue-items' "$FERRY_ROOT/docs/cli.md"; then pass "docs/cli.md describes the command"; else fail "docs/cli.md describes the command"; fi

# --- throughput (printed, not asserted) -----------------------------------------------------
n=${FERRY_BULK_LINES:-100000}
python3 - "$n" >"$T_DIR/big.jsonl" <<'PY'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({"team": "Ops", "machine": "box1", "bridge": "local",
                      "vault": {"function": "hello", "name": "n%d" % i}, "priority": i % 5 + 1}))
PY
start=$(date +%s%N)
out=$(ferry create queue-items --file "$T_DIR/big.jsonl" --output json | jq -r '.data.created')
end=$(date +%s%N)
eq "$n lines in one run" "$out" "$n"
echo "# create queue-items: $n lines in $(((end - start) / 1000000)) ms = $((n * 1000000000 / (end - start + 1))) items/s (${FERRY_TEST_DRIVER:-sqlite})"

t_done
