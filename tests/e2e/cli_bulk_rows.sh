#!/usr/bin/env bash
# ferry create queue-items on SQLite writes its plain items 64 at a time in one statement
# (S_ITEMS_INSERT_ROWS, queue.c) and the tail of a call an item each: every count around
# that size answers each line with its own item and CREATED event, in line order; a line
# for a machine group in the middle of a statement's rows still fans out. A store that fails
# one row of a statement of many (a hostile trigger) writes nothing, and names the lines of
# that statement; --continue writes every other line and names the bad one.
. "$(dirname "$0")/../lib.sh"

write_config
install_plugins
ferry create region r1 >/dev/null
ferry create bridge r1 local >/dev/null
ferry create team Ops >/dev/null
for m in box1 box2 web-01 web-02; do
    ferry create machine Ops local "$m" --vault '{"connection":"local"}' >/dev/null
done
ferry create machine-group Ops pair --members web-01,web-02 >/dev/null
DB=$T_DIR/ferry.db

# line TAG I [MACHINE]: a good line, its vault naming TAG-I, priority from I.
line() { printf '{"team":"Ops","machine":"%s","bridge":"local","vault":{"function":"hello","name":"%s-%s"},"priority":%s}\n' "${3:-box$(($2 % 2 + 1))}" "$1" "$2" $(($2 % 5 + 1)); }
items() { sqlite3 "$DB" "SELECT count(*) FROM queue_items"; }

# Each line's item, by the id answered for it: its vault's name, machine, priority, status,
# and its one CREATED event. Prints the lines that do not match (none when all is well).
check() { # TAG N OUT
    jq -r '.data.taskIds | to_entries[] | "\(.value)\t\(.key + 1)"' <<<"$3" >"$T_DIR/ids"
    sqlite3 -separator $'\t' "$DB" "SELECT q.task_id, json_extract(q.vault, '$.name'), q.machine_name,
        q.priority, q.status, (SELECT group_concat(e.action || ':' || e.details) FROM queue_events e
        WHERE e.task_seq = q.seq) FROM queue_items q WHERE json_extract(q.vault, '$.name') LIKE '$1-%'" |
        sort >"$T_DIR/rows"
    sort "$T_DIR/ids" | join -t $'\t' - "$T_DIR/rows" | awk -F'\t' -v tag="$1" '
        { i = $2; p = i % 5 + 1; group = tag == "g" && i == 40; m = group ? "pair" : "box" (i % 2 + 1)
          labels[1] = "Highest"; labels[2] = "High"; labels[3] = "Normal"; labels[4] = "Low"; labels[5] = "Lowest"
          want = "CREATED:hello queued with priority " p " (" labels[p] ")"
          # the group line is the parent of its members (groups.c)
          if (group) want = want ",FANOUT:machine group pair: 2 members"
          if ($3 != tag "-" i || $4 != m || $5 != p || $6 != (group ? "PROCESSING" : "PENDING") || $7 != want) print
          n++ }
        END { if (n != '"$2"') print "joined " n " of '"$2"'" }'
}

# --- counts around a statement's 64 rows --------------------------------------------------
for n in 1 63 64 65 130; do
    for i in $(seq 1 "$n"); do line "n$n" "$i"; done >"$T_DIR/$n.jsonl"
    before=$(items)
    out=$(ferry create queue-items --file "$T_DIR/$n.jsonl" --output json 2>/dev/null)
    rc=$?
    eq "$n lines: exit 0, $n created" "$rc/$(jq -c '[.success, .data.created]' <<<"$out")" "0/[true,$n]"
    eq "... $n items in the store" "$(($(items) - before))" "$n"
    eq "... each id answers its line: vault, machine, priority, PENDING, one CREATED event" "$(check "n$n" "$n" "$out")" ""
done
eq "seqs follow the lines (the claim's order within a priority)" \
    "$(sqlite3 "$DB" "SELECT count(*) FROM queue_items a JOIN queue_items b ON b.seq = a.seq + 1
        WHERE json_extract(a.vault, '$.name') LIKE 'n130-%' AND json_extract(b.vault, '$.name') LIKE 'n130-%'
        AND CAST(substr(json_extract(b.vault, '$.name'), 6) AS INTEGER)
            <> CAST(substr(json_extract(a.vault, '$.name'), 6) AS INTEGER) + 1")" 0

# --- a machine group among the rows -------------------------------------------------------
for i in $(seq 1 100); do if ((i == 40)); then line g "$i" pair; else line g "$i"; fi; done >"$T_DIR/g.jsonl"
out=$(ferry create queue-items --file "$T_DIR/g.jsonl" --output json 2>/dev/null)
eq "100 lines, line 40 for a group: created 100" "$(jq -c '[.success, .data.created]' <<<"$out")" "[true,100]"
eq "... each id answers its line" "$(check g 100 "$out")" ""
parent=$(jq -r '.data.taskIds[39]' <<<"$out")
eq "... the group's line fanned out to its two members" \
    "$(sqlite3 "$DB" "SELECT group_concat(machine_name) FROM (SELECT machine_name FROM queue_items
        WHERE parent_task_id = '$parent' AND link_kind = 'member' ORDER BY machine_name)")" "web-01,web-02"

# --- a row of a statement of many fails ---------------------------------------------------
# RAISE(FAIL) keeps the statement's rows before it: the operation must undo them itself.
sqlite3 "$DB" "CREATE TRIGGER hostile BEFORE INSERT ON queue_items
    WHEN json_extract(NEW.vault, '$.name') = 'h-100' BEGIN SELECT RAISE(FAIL, 'hostile trigger'); END"
for i in $(seq 1 130); do line h "$i"; done >"$T_DIR/h.jsonl"
before=$(items)
events=$(sqlite3 "$DB" "SELECT count(*) FROM queue_events")
out=$(ferry create queue-items --file "$T_DIR/h.jsonl" 2>&1)
rc=$?
eq "line 100 refused by the store, in the second statement: exit 1" "$rc" 1
contains "... the lines of that statement named" "$out" "lines 65 to 128: "
contains "... with the store's reason, and nothing written" "$out" "hostile trigger; nothing written"
eq "... no item written" "$(items)" "$before"
eq "... no event written" "$(sqlite3 "$DB" "SELECT count(*) FROM queue_events")" "$events"
out=$(ferry create queue-items --file "$T_DIR/h.jsonl" --continue --output json 2>/dev/null)
rc=$?
eq "--continue: exit 1, 129 written, line 100 named" \
    "$rc/$(jq -c '[.success, .data.created, .data.badLines, .data.errors[0].line]' <<<"$out")" "1/[false,129,1,100]"
contains "... with the store's reason" "$(jq -r '.data.errors[0].error' <<<"$out")" "hostile trigger"
eq "... 129 items and their 129 events written" \
    "$(($(items) - before))/$(($(sqlite3 "$DB" "SELECT count(*) FROM queue_events") - events))" "129/129"
eq "... each written id answers its line" "$(jq -r '.data.taskIds | length' <<<"$out")" 129

t_done
