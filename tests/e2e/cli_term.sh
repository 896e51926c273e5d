#!/usr/bin/env bash
# The terminal (issue 18, point 3; docs/cli.md "Output"): every table fits 100 columns on a
# store of long names and hostile messages, --wide shows all of it; colour only on a
# terminal (script(1) gives one) without NO_COLOR and with a TERM that is not dumb, never in
# JSON or a pipe; `dashboard --watch` redraws in place and gives the terminal back on
# Ctrl-C; escape sequences, invalid UTF-8 and wide CJK text from the store never reach the
# terminal raw. No host runs: the store is given running items and heartbeats directly.
. "$(dirname "$0")/../lib.sh"

write_config
install_plugins
X=$(printf 'x%.0s' $(seq 1 100))
TEAM=Team-$X MACHINE=machine-$X BRIDGE=bridge-$X REGION=region-$X
ferry create region "$REGION" >/dev/null
ferry create bridge "$REGION" "$BRIDGE" >/dev/null
ferry create team "$TEAM" >/dev/null
ferry create machine "$TEAM" "$BRIDGE" "$MACHINE" --vault '{"ip":"10.0.0.1","user":"u","datastore":"/d"}' >/dev/null
ferry create storage "$TEAM" "storage-$X" --vault '{"provider":"local","path":"/tmp/x"}' >/dev/null
ferry create schedule "$TEAM" "sched-$X" --vault "{\"cron\":\"*/30 * * * *\",\"timezone\":\"America/Argentina/Buenos_Aires\",\"machine\":\"$MACHINE\",\"queue_config\":{\"function\":\"hello\"}}" >/dev/null
ferry create machine-group "$TEAM" "group-$X" --members "$MACHINE" >/dev/null
ferry create user "user-$X" >/dev/null
ferry create token "user-$X" --team "$TEAM" --role operator >/dev/null
ids=()
for i in 1 2 3 4; do
    ids+=("$(ferry create queue-item "$TEAM" "$MACHINE" "$BRIDGE" --vault '{"function":"hello"}' --output json | jq -r '.data[0].taskId')")
done

# Hostile text in the store: an escape sequence that would clear the screen and retitle
# the terminal, a bidi override, wide CJK text, a bell, invalid UTF-8. Test-only surgery
# on the SQLite file: nothing in the CLI writes such text.
python3 - "$T_DIR/ferry.db" "${ids[@]}" <<'PY'
import sqlite3, sys, time
db, ids = sys.argv[1], sys.argv[2:]
now = int(time.time() * 1000)
evil = "\x1b[2J\x1b]0;pwned\x07 \u202eexe.gnp 東京データセンター東京データセンター " + "m" * 200
c = sqlite3.connect(db, timeout=5)
c.execute("UPDATE queue_items SET status='PROCESSING', assigned_at=?, started_at=?, progress_percent=40,"
          " progress_message=? WHERE task_id=?", (now - 90000, now - 90000, "copying " + evil, ids[0]))
c.execute("UPDATE queue_items SET status='FAILED', finished_at=?, last_failure_reason=? WHERE task_id=?",
          (now, "disk full " + evil, ids[1]))
c.execute("UPDATE queue_items SET function=? WHERE task_id=?", ("fn\x1b[31m東京\u202e", ids[2]))
c.execute("UPDATE queue_items SET last_failure_reason=CAST(x'ff41c328' AS TEXT), status='FAILED',"
          " finished_at=? WHERE task_id=?", (now, ids[3]))
seq = c.execute("SELECT seq FROM queue_items WHERE task_id=?", (ids[0],)).fetchone()[0]
c.execute("INSERT INTO queue_events (task_seq, action, details, at) VALUES (?, 'PROGRESS', ?, ?)",
          (seq, evil, now))
bridge = c.execute("SELECT bridge_name FROM queue_items LIMIT 1").fetchone()[0]
c.execute("INSERT INTO hosts VALUES (?, ?, ?, ?, ?, 1, NULL)",
          ("vm:4242:" + "h" * 100, bridge, "0.1.0\x1b[5m" + evil, now, now))
c.commit()
PY

# width: the widest line of stdin in terminal columns (East Asian wide characters count 2).
width() {
    python3 -c 'import sys, unicodedata
print(max((sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in line) for line in sys.stdin.read().split("\n")), default=0))'
}
has_esc() { grep -qaP '\x1b|\x07' <<<"$1"; }

# --- every table fits 100 columns, and carries no escape or bell when piped ------------
tables=("list queue" "queue list" "list teams" "list regions" "list bridges" "list team-machines"
    "list team-storages $TEAM" "list team-schedules $TEAM" "list team-machine-groups $TEAM"
    "list users" "list tokens" "audit list" "functions" "plugins" "status" "dashboard")
for cmd in "${tables[@]}"; do
    # shellcheck disable=SC2086
    out=$(TERM=xterm ferry $cmd 2>&1)
    w=$(width <<<"$out")
    ((w <= 100)) && pass "${cmd:0:24}: fits 100 columns ($w)" || fail "${cmd:0:24}: fits 100 columns" "$w wide" "$out"
    if has_esc "$out"; then fail "${cmd:0:24}: no escape code in a pipe" "$out"; else pass "${cmd:0:24}: no escape code in a pipe"; fi
done
wide=$(ferry list queue --wide)
((${#wide} > 0)) && (($(width <<<"$wide") > 300)) && pass "list queue --wide is wider" || fail "list queue --wide is wider" "$wide"
eq "--wide: every column" "$(sed -n 1p <<<"$wide" | tr -s ' ')" \
    "TASK ID STATUS HEALTH PRIORITY FUNCTION TEAM MACHINE BRIDGE CREATED AGE (MIN) RETRIES PROGRESS"
contains "--wide: the whole machine name" "$wide" "  $MACHINE  "
contains "--wide: the whole task id" "$wide" "${ids[0]}  PROCESSING"
contains "--wide: the whole progress message" "$wide" "$(printf 'm%.0s' $(seq 1 200))"
not_contains "--wide: nothing cut" "$wide" "…"
contains "--wide anywhere on the line" "$(ferry --wide list team-machines)" "$MACHINE  $TEAM"
def=$(ferry list queue)
contains "default: task ids by their first 8 characters" "$def" "${ids[0]:0:8}  PROCESSING"
contains "default: long names cut with an ellipsis" "$def" "machine-x"
contains "... with an ellipsis" "$def" "…"
contains "hostile text shows as escapes" "$(ferry list queue --wide)" 'fn\x1b[31m東京\u202e'
contains "status: the hostile version escaped" "$(ferry status)" 'version 0.1.0\x'
# queue trace's timeline keeps its details whole (they are the item's story), made safe.
timeline=$(TERM=xterm ferry queue trace "${ids[0]}" | sed -n '/^TIMELINE$/,$p')
contains "trace: the hostile event escaped" "$timeline" '\x1b[2J\x1b]0;pwned\x07'
contains "trace: the event's details whole" "$timeline" "$(printf 'm%.0s' $(seq 1 200))"
if has_esc "$timeline"; then fail "trace: no escape code" "$timeline"; else pass "trace: no escape code"; fi
# ... and so does its item section: a failure reason, a function name (printed raw before:
# ESC[2J cleared the operator's screen).
for i in 1 2 3; do
    trace=$(TERM=xterm ferry queue trace "${ids[$i]}")
    if has_esc "$trace"; then fail "trace ${i}: no escape code in the item section" "$trace"; else pass "trace ${i}: no escape code in the item section"; fi
done
item=$(ferry queue trace "${ids[1]}" | sed '/^REQUEST VAULT$/,$d')
contains "trace: the failure reason escaped, whole" "$item" 'last failure  disk full \x1b[2J\x1b]0;pwned\x07 \u202eexe.gnp 東京'
not_contains "... no bidi override raw" "$item" $'\u202e'
contains "trace: the hostile function escaped" "$(ferry queue trace "${ids[2]}")" 'function      fn\x1b[31m東京\u202e'
eq "trace JSON keeps the reason as it is" "$(ferry queue trace "${ids[1]}" --output json | jq -r .data.queue_item.lastFailureReason | head -c 14 | od -An -c | tr -s ' ')" \
    "$(printf 'disk full \e[2J' | od -An -c | tr -s ' ')"
# queue wait's end line (stderr): the reason made safe as well.
end=$(ferry queue wait "${ids[1]}" 2>&1 >/dev/null | tail -1)
contains "wait: the failure reason escaped" "$end" "ended FAILED: disk full \\x1b[2J"
if has_esc "$end" || [[ $end == *$'\u202e'* ]]; then fail "wait: no escape, bell or bidi override raw" "$end"; else pass "wait: no escape, bell or bidi override raw"; fi
out=$(ferry list queue --output json)
eq "JSON keeps the text as it is" "$(jq -r --arg t "${ids[2]}" '.data[] | select(.taskId == $t) | .function' <<<"$out")" \
    "$(printf 'fn\e[31m東京\u202e')"

# --- colour: on a terminal only ----------------------------------------------------------
# tty CMD...: runs ferry under script(1), on a pseudo-terminal; prints what it wrote.
tty() {
    local cmd="exec $FERRY_BIN" a
    for a in "$@"; do cmd+=" $(printf '%q' "$a")"; done
    script -qfec "$cmd" /dev/null 2>&1 </dev/null
}
strip_sgr() { sed -E 's/\x1b\[[0-9;]*m//g'; }
out=$(TERM=xterm tty list queue)
contains "a terminal: FAILED in red" "$out" $'\e[1;31mFAILED\e[0m'
contains "a terminal: PROCESSING in cyan" "$out" $'\e[36mPROCESSING\e[0m'
if has_esc "$(strip_sgr <<<"$out")"; then fail "a terminal: only colour, no escape from the store" "$out"; else pass "a terminal: only colour, no escape from the store"; fi
w=$(strip_sgr <<<"$out" | tr -d '\r' | width)
((w <= 100)) && pass "a terminal: the coloured table fits 100 columns ($w)" || fail "a terminal: the coloured table fits 100 columns" "$out"
out=$(TERM=xterm tty status)
contains "a terminal: a live host in green" "$out" $'\e[32malive\e[0m'
if has_esc "$(strip_sgr <<<"$out")"; then fail "status on a terminal: no escape from the store" "$out"; else pass "status on a terminal: no escape from the store"; fi
for env in "NO_COLOR=1 TERM=xterm" "TERM=dumb"; do
    # shellcheck disable=SC2086
    out=$(env $env bash -c "$(declare -f tty); FERRY_BIN='$FERRY_BIN' tty list queue")
    if has_esc "$out"; then fail "$env: no colour" "$out"; else pass "$env: no colour"; fi
done
# A terminal narrower than 100 columns gets tables of its own width.
out=$(TERM=xterm script -qfec "stty cols 60 rows 20; exec $FERRY_BIN list queue" /dev/null 2>&1 </dev/null)
w=$(strip_sgr <<<"$out" | tr -d '\r' | width)
((w <= 60)) && pass "a 60-column terminal: the table fits it ($w)" || fail "a 60-column terminal: the table fits it" "$out"
out=$(TERM=xterm tty list queue --output json)
if has_esc "$out"; then fail "JSON on a terminal: no colour" "$out"; else pass "JSON on a terminal: no colour"; fi
out=$(TERM=xterm tty create queue-item "$TEAM" "$MACHINE" "$BRIDGE" --vault '{"function":"no_such_fn"}')
contains "a terminal: the warning in yellow" "$out" $'ferry: \e[33mwarning:\e[0m'
out=$(TERM=xterm ferry create queue-item "$TEAM" "$MACHINE" "$BRIDGE" --vault '{"function":"no_such_fn"}' 2>&1)
if has_esc "$out"; then fail "a warning into a pipe: no colour" "$out"; else pass "a warning into a pipe: no colour"; fi

# --- dashboard --watch --------------------------------------------------------------------
# watch_run OUT CMD...: starts CMD in the background writing to OUT; waits (10 s at most)
# for two frames, sends SIGINT to ferry, and prints its exit status.
frames() { grep -ac "ferry dashboard, every 1 s" "$1"; }
two_frames() { (($(frames "$1") >= 2)); }
watch_run() {
    local out=$1; shift
    "$@" >"$out" 2>&1 </dev/null &
    local pid=$! target
    wait_for 10 two_frames "$out" || fail "two frames within 10 s" "$(cat "$out")"
    # Under script(1), ferry is script's child; else it is the job itself.
    target=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null | awk '{print $1}')
    kill -INT "${target:-$pid}"
    local end=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid"
}
TERM=xterm watch_run "$T_DIR/watch.tty" script -qfec "exec $FERRY_BIN dashboard --watch 1" /dev/null
eq "watch on a terminal: Ctrl-C ends it with exit 0" "$?" 0
screen=$(cat "$T_DIR/watch.tty")
(($(frames "$T_DIR/watch.tty") >= 2)) && pass "watch: two refreshes or more" || fail "watch: two refreshes or more" "$screen"
contains "watch: on the alternate screen, from the top" "$screen" $'\e[?1049h'
contains "watch: each frame from the top left corner" "$screen" $'\e[H'
eq "watch: the terminal given back (cursor, screen) at the end" \
    "$(tail -c 14 "$T_DIR/watch.tty" | od -An -c | tr -s ' ')" "$(printf '\e[?25h\e[?1049l' | od -An -c | tr -s ' ')"
contains "watch: the hosts" "$screen" "vm:4242:hhh"
contains "watch: the running item with its progress" "$screen" "[####------] 40% copy"
if has_esc "$(strip_sgr <<<"$screen" | sed -E 's/\x1b\[(\?1049[hl]|\?25[hl]|H|K|J|2J)//g')"; then
    fail "watch: no escape from the store" "$screen"
else
    pass "watch: no escape from the store"
fi
w=$(strip_sgr <<<"$screen" | sed -E 's/\x1b\[[^a-zA-Z]*[a-zA-Z]//g' | tr -d '\r' | width)
((w <= 100)) && pass "watch: fits 100 columns ($w)" || fail "watch: fits 100 columns" "$w"
TERM=xterm watch_run "$T_DIR/watch.small" script -qfec "stty cols 60 rows 12; exec $FERRY_BIN dashboard --watch 1" /dev/null
small=$(strip_sgr <"$T_DIR/watch.small" | sed -E 's/\x1b\[[^a-zA-Z]*[a-zA-Z]/\n/g' | tr -d '\r')
contains "watch on a short terminal: the frame says what it left out" "$small" "more lines: a taller window shows them"
w=$(width <<<"$small")
((w <= 60)) && pass "watch on a 60-column terminal: fits it ($w)" || fail "watch on a 60-column terminal: fits it" "$small"
watch_run "$T_DIR/watch.pipe" "$FERRY_BIN" dashboard --watch 1
eq "watch into a pipe: Ctrl-C ends it with exit 0" "$?" 0
if has_esc "$(cat "$T_DIR/watch.pipe")"; then fail "watch into a pipe: frames one after another, plain" "$(cat "$T_DIR/watch.pipe")"; else pass "watch into a pipe: frames one after another, plain"; fi
out=$(ferry dashboard --watch --output json); rc=$?
eq "--watch with --output json is a usage error" "$rc" 2
ferry dashboard 5 >/dev/null 2>&1
eq "SECONDS without --watch is a usage error" "$?" 2
ferry dashboard --watch 0 >/dev/null 2>&1
eq "--watch 0 is a usage error" "$?" 2
eq "the dashboard's JSON is unchanged" "$(ferry dashboard --output json | jq -c '.data | keys')" \
    '["active","failed7d","queueDepthByPriority","recentFailures","successRate7d","total7d"]'

t_done
