#!/usr/bin/env bash
# The webdav storage provider (issue 9, points 1, 2, 3 and 5) against a real WebDAV server on
# loopback (lighttpd + mod_webdav, digest authentication, tests/helpers/webdav.sh):
# push, pull with an exact round trip, incremental push, verify and retention on encrypted
# and plain storages and through the "http" alias; a wrong password; an interrupted push;
# a server killed, stopped or answering 500s mid-push (directly and through
# tests/helpers/faultproxy.sh); credentials in no log, trace or vault; `connections` and
# `bwlimit`.
. "$(dirname "$0")/../lib.sh"

HELPERS=$FERRY_ROOT/tests/helpers
DAV=$T_DIR/dav
PROXY=$T_DIR/proxy
DAVUSER=ferry-backup
PASS='Wd-9xQ!distinctive-pw-7731'
WRONG='Wd-wrong-guess-4410'

write_config 'lease = { poll_ms = 100; };' 'plugin = { repo = { gc_grace_hours = 0.0; }; };'
install_plugins
if ! PORT=$("$HELPERS/webdav.sh" start "$DAV" "$DAVUSER" "$PASS" digest 2>"$T_DIR/webdav.err"); then
    fail "the WebDAV server starts" "$(cat "$T_DIR/webdav.err")"
    t_done
    exit 1
fi
T_EXTRA_PIDS=$(cat "$DAV/lighttpd.pid")
cleanup_servers() {
    "$HELPERS/faultproxy.sh" stop "$PROXY" >/dev/null 2>&1
    "$HELPERS/webdav.sh" stop "$DAV" >/dev/null 2>&1
}
trap 'cleanup_servers; t_cleanup' EXIT
trap 'exit 143' TERM INT # so that a runner's timeout still stops the servers
PPORT=$("$HELPERS/faultproxy.sh" start "$PROXY" "$PORT")
mkdir -p "$DAV/root/backups" # the storages' URLs name collections below /backups
ROOT=$DAV/root/backups
URL=http://127.0.0.1:$PORT/backups

DS=$T_DIR/ds
ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
ferry create machine Ops local box --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
# storage NAME VAULT-FIELDS: a webdav storage with the right credentials and VAULT-FIELDS
storage() {
    ferry create storage Ops "$1" --vault "{\"user\":\"$DAVUSER\",\"password\":\"$PASS\",$2}" >/dev/null
}
storage sealed "\"provider\":\"webdav\",\"url\":\"$URL/sealed\",\"passphrase\":\"dav pass\""
storage plain "\"provider\":\"http\",\"url\":\"$URL/plain/\""
ferry create storage Ops wrongpw --vault "{\"provider\":\"webdav\",\"url\":\"$URL/sealed\",\"user\":\"$DAVUSER\",\"password\":\"$WRONG\",\"passphrase\":\"dav pass\"}" >/dev/null
storage orphan "\"provider\":\"webdav\",\"url\":\"$URL/no/such/parent\""
start_host

submit() { ferry create queue-item Ops box local --vault "$1" --output json | jq -r '.data[0].taskId'; }
result_of() { ferry list queue --task-id "$1" --output json | jq -c '.data[0].responseVault'; }
# Every task's id goes to $T_DIR/tasks, for the credentials check at the end.
# job VAULT: runs one item to its end; prints its response vault (JSON)
job() {
    local task
    task=$(submit "$1")
    echo "$task" >>"$T_DIR/tasks"
    ferry queue wait "$task" --timeout 300 >/dev/null 2>&1
    result_of "$task"
}
status() { jq -r .status <<<"$1"; }
# st_is NAME RESPONSE STATUS: the item ended with STATUS (the response is shown otherwise)
st_is() { if [[ $(status "$2") == "$3" ]]; then pass "$1"; else fail "$1" "expected status $3" "$2"; fi; }
res() { jq -r ".result$2" <<<"$1"; }
message() { jq -r .error.message <<<"$1"; }

# files_under DIR: regular files below DIR on the server, temporaries excluded
files_under() { find "$1" -type f ! -name '.*' 2>/dev/null | wc -l; }

# --- push, pull, incremental, verify, retention -------------------------------------------
SRC=$DS/repositories/web
mkdir -p "$SRC/data/empty-dir" "$SRC/ünï cødé" "$SRC/links"
: >"$SRC/data/zero-bytes"
printf 'x' >"$SRC/data/one-byte"
head -c 40000000 /dev/urandom >"$SRC/data/forty-mb.bin"
head -c 3000000 /dev/urandom >"$SRC/data/three-mb.bin"
python3 -c "
with open('$SRC/data/text.log', 'w') as f:
    for i in range(100000): f.write(f'line {i} of a compressible log file\n')"
echo "ünïcødé content" >"$SRC/ünï cødé/fïle with spaces.txt"
ln -s ../data/one-byte "$SRC/links/relative-link"
ln -s /nonexistent/target "$SRC/links/dangling-link"
chmod 640 "$SRC/data/three-mb.bin"
touch -d '2001-01-01 10:00:00.25' "$SRC/data/one-byte"

for st in sealed plain; do
    out=$(job "{\"function\":\"repo_push\",\"repository\":\"web\",\"storage\":\"$st\",\"verify\":true,\"snapshot_id\":\"first\"}")
    st_is "push to the $st webdav storage completes" "$out" COMPLETED
    packs=$(files_under "$ROOT/$st/data")
    [[ $packs -ge 3 ]] && pass "$st: 43 MB land as several packs on the server ($packs)" ||
        fail "$st: several packs on the server" "$packs packs" "$out"
    out=$(job "{\"function\":\"repo_pull\",\"repository\":\"copy-$st\",\"from_repository\":\"web\",\"storage\":\"$st\"}")
    st_is "pull from the $st webdav storage completes" "$out" COMPLETED
    cmp=$(tree_compare "$SRC" "$DS/repositories/copy-$st")
    [[ $? -eq 0 ]] && pass "the $st round trip is exact (${cmp##*$'\n'})" || fail "the $st round trip is exact" "$cmp"
done
check "the \"http\" alias wrote the plain storage" test -s "$ROOT/plain/config"
! grep -rqa "compressible log file" "$ROOT/sealed" && pass "the encrypted storage holds no plaintext" ||
    fail "the encrypted storage holds no plaintext"

echo "a new line" >>"$SRC/data/text.log"
echo "new file" >"$SRC/new.txt"
out=$(job '{"function":"repo_push","repository":"web","storage":"sealed","snapshot_id":"second"}')
st_is "an incremental push completes" "$out" COMPLETED
eq "its parent is the first snapshot" "$(res "$out" .parent)" first
new_bytes=$(res "$out" .stats.bytes_new)
[[ $new_bytes -lt 5000000 ]] && pass "it stores only new chunks ($new_bytes bytes)" || fail "stores only new chunks" "$out"
out=$(job '{"function":"repo_list","storage":"sealed","repository":"web"}')
eq "repo_list lists both snapshots (PROPFIND)" "$(res "$out" '.snapshots | map(.id) | join(",")')" first,second
out=$(job '{"function":"repo_verify","storage":"sealed"}')
st_is "repo_verify passes" "$out" COMPLETED
eq "and finds every pack indexed" "$(res "$out" .unindexed_packs)" 0

SHORT=0.00002 # days: about 1.7 s
mkdir -p "$DS/repositories/ret"
head -c 3000000 /dev/urandom >"$DS/repositories/ret/old.bin"
echo keep >"$DS/repositories/ret/keep.txt"
out=$(job "{\"function\":\"repo_push\",\"repository\":\"ret\",\"storage\":\"plain\",\"snapshot_id\":\"r1\",\"retention_days\":$SHORT}")
st_is "a push with a short retention completes" "$out" COMPLETED
rm "$DS/repositories/ret/old.bin"
sleep 2
out=$(job '{"function":"repo_push","repository":"ret","storage":"plain","snapshot_id":"r2","retention_days":30}')
eq "the next push expires the old snapshot" "$(res "$out" '.retention.expired | join(",")')" ret/r1
freed=$(res "$out" .retention.bytes_freed)
[[ $(res "$out" .retention.packs_deleted) -ge 1 && $freed -ge 3000000 ]] &&
    pass "and deletes its data on the server ($freed bytes freed)" || fail "deletes the expired data" "$out"
check "the expired manifest is gone from the server" test ! -e "$ROOT/plain/snapshots/ret/r1"
out=$(job '{"function":"repo_pull","repository":"ret-back","from_repository":"ret","storage":"plain"}')
check "the kept snapshot restores" cmp "$DS/repositories/ret/keep.txt" "$DS/repositories/ret-back/keep.txt"
eq "the plain storage verifies after retention" "$(status "$(job '{"function":"repo_verify","storage":"plain"}')")" COMPLETED

out=$(job '{"function":"repo_list","storage":"wrongpw"}')
st_is "a wrong password fails" "$out" FAILED
contains "with a message that says what to fix" "$(message "$out")" 'fix "user" and "password" in the storage'"'"'s vault'
contains "naming the server's answer" "$(message "$out")" "HTTP 401"
out=$(job '{"function":"repo_push","repository":"web","storage":"orphan"}')
contains "a URL whose parent collection is missing is named" "$(message "$out")" "the collection above the storage's URL does not exist"

# --- an interrupted push -------------------------------------------------------------------
# A bandwidth limit makes the push slow enough to cancel halfway; its vault names the same
# storage as "sealed".
storage sealed-slow "\"provider\":\"webdav\",\"url\":\"$URL/sealed\",\"passphrase\":\"dav pass\",\"bwlimit\":\"6M\""
mkdir -p "$DS/repositories/big"
for i in 0 1 2 3 4; do head -c 20000000 /dev/urandom >"$DS/repositories/big/part$i.bin"; done
touch "$T_DIR/mark"
packs_now() { find "$ROOT/sealed/data" -type f ! -name '.*' -newer "$T_DIR/mark" | wc -l; }
enough_packs() { test "$(packs_now)" -ge 2; }
task=$(submit '{"function":"repo_push","repository":"big","storage":"sealed-slow","threads":1}')
echo "$task" >>"$T_DIR/tasks"
wait_for 60 enough_packs
ferry queue cancel "$task" >/dev/null
wait_for 30 status_is "$task" CANCELLED
eq "the push is cancelled mid-transfer" "$(task_status "$task")" CANCELLED
arrived=$(packs_now)
check "it leaves no snapshot" test ! -e "$ROOT/sealed/snapshots/big"
leftovers=$(find "$ROOT/sealed" -name '.tmp-*' | wc -l)
pass "$arrived packs had arrived; $leftovers temporaries left by the killed upload"
# A temporary as a crashed put leaves it, where a pack would be: never listed, so never taken
# for a pack (verify) nor collected as one (gc).
mkdir -p "$ROOT/sealed/data/ee"
head -c 1000 /dev/urandom >"$ROOT/sealed/data/ee/.tmp-0123456789abcdef"
out=$(job '{"function":"repo_verify","storage":"sealed"}')
st_is "the interrupted storage verifies" "$out" COMPLETED
# A cancel stops uploads at once: a pack stored just before it may miss its index file. It is
# no snapshot's, so the storage is valid; the next push may reuse it and gc full removes it.
unindexed=$(res "$out" .unindexed_packs)
((unindexed <= 4)) && pass "at most one pack per connection is left unindexed ($unindexed)" || fail "unindexed packs after a cancel" "$unindexed"
out=$(job '{"function":"repo_push","repository":"big","storage":"sealed"}')
st_is "the next push completes" "$out" COMPLETED
new=$(res "$out" .stats.bytes_new)
[[ $new -lt 95000000 ]] && pass "reusing what arrived ($new of 100000000 bytes new)" || fail "reusing what arrived" "$out"
stray=$ROOT/sealed/data/ab/ab$(printf '%062d' 0)
mkdir -p "$(dirname "$stray")" && head -c 1000 /dev/urandom >"$stray"
out=$(job '{"function":"repo_gc","storage":"sealed","full":true}')
st_is "repo_gc full completes" "$out" COMPLETED
# The planted stray, plus whatever the cancelled push left unindexed and the next one did
# not take over.
deleted=$(res "$out" .unindexed_packs_deleted)
((deleted >= 1 && deleted <= 1 + unindexed)) && pass "it deletes the unindexed packs ($deleted)" || fail "gc full deletes the unindexed packs" "$out"
check "which is gone from the server" test ! -e "$stray"
# repo_gc full also removes temporaries older than the grace period (0 here; a name without
# a time counts as old), which it never takes for packs.
check "and the temporary (never taken for a pack)" test ! -e "$ROOT/sealed/data/ee/.tmp-0123456789abcdef"
eq "the storage verifies after gc" "$(status "$(job '{"function":"repo_verify","storage":"sealed"}')")" COMPLETED

# --- network faults ------------------------------------------------------------------------
storage fragile "\"provider\":\"webdav\",\"url\":\"$URL/sealed\",\"passphrase\":\"dav pass\",\"bwlimit\":\"6M\",\"retries\":2,\"retry_delay_ms\":200"
mkdir -p "$DS/repositories/faults"
for i in 0 1 2; do head -c 15000000 /dev/urandom >"$DS/repositories/faults/f$i.bin"; done
touch "$T_DIR/mark"
task=$(submit '{"function":"repo_push","repository":"faults","storage":"fragile","threads":1}')
echo "$task" >>"$T_DIR/tasks"
one_pack() { test "$(packs_now)" -ge 1; }
wait_for 60 one_pack
"$HELPERS/webdav.sh" kill "$DAV"
ferry queue wait "$task" --timeout 120 >/dev/null 2>&1
out=$(result_of "$task")
st_is "a push whose server is killed mid-transfer fails" "$out" FAILED
eq "as a transient failure" "$(jq -r .error.code <<<"$out")" transient
contains "saying the connection failed" "$(message "$out")" "on webdav storage"
"$HELPERS/webdav.sh" start "$DAV" "$DAVUSER" "$PASS" digest >/dev/null
eq "the server comes back on the same port" "$(cat "$DAV/port")" "$PORT"
T_EXTRA_PIDS=$(cat "$DAV/lighttpd.pid")
out=$(job '{"function":"repo_push","repository":"faults","storage":"sealed"}')
st_is "the next push completes" "$out" COMPLETED
out=$(job '{"function":"repo_pull","repository":"faults-back","from_repository":"faults","storage":"sealed"}')
cmp=$(tree_compare "$DS/repositories/faults" "$DS/repositories/faults-back")
[[ $? -eq 0 ]] && pass "and round-trips exactly (${cmp##*$'\n'})" || fail "round-trips after the crash" "$cmp"
eq "the storage verifies after the crash" "$(status "$(job '{"function":"repo_verify","storage":"sealed"}')")" COMPLETED

# A server killed and back within the retries: the push rides it out.
storage patient "\"provider\":\"webdav\",\"url\":\"$URL/plain\",\"bwlimit\":\"6M\",\"retries\":6,\"retry_delay_ms\":500"
mkdir -p "$DS/repositories/patient"
for i in 0 1; do head -c 15000000 /dev/urandom >"$DS/repositories/patient/p$i.bin"; done
touch "$T_DIR/mark"
task=$(submit '{"function":"repo_push","repository":"patient","storage":"patient","threads":1}')
echo "$task" >>"$T_DIR/tasks"
plain_pack() { test "$(find "$ROOT/plain/data" -type f ! -name '.*' -newer "$T_DIR/mark" | wc -l)" -ge 1; }
wait_for 60 plain_pack
"$HELPERS/webdav.sh" kill "$DAV"
sleep 1
"$HELPERS/webdav.sh" start "$DAV" "$DAVUSER" "$PASS" digest >/dev/null
T_EXTRA_PIDS=$(cat "$DAV/lighttpd.pid")
ferry queue wait "$task" --timeout 120 >/dev/null 2>&1
eq "a push whose server restarts within its retries completes" "$(status "$(result_of "$task")")" COMPLETED

storage stalling "\"provider\":\"webdav\",\"url\":\"$URL/plain\",\"timeout\":2,\"retries\":1,\"retry_delay_ms\":100"
"$HELPERS/webdav.sh" pause "$DAV"
start=$SECONDS
out=$(job '{"function":"repo_push","repository":"ret","storage":"stalling"}')
"$HELPERS/webdav.sh" resume "$DAV"
st_is "a server that stops answering fails the push" "$out" FAILED
contains "with a timeout" "$(message "$out")" "too slow"
[[ $((SECONDS - start)) -lt 60 ]] && pass "within the vault's timeout, not the job's ($((SECONDS - start)) s)" ||
    fail "the vault's timeout bounds the wait" "$((SECONDS - start)) s"

# A server that ignores Range (answers 200 with the whole object): gets are sliced.
"$HELPERS/webdav.sh" stop "$DAV"
WEBDAV_NO_RANGES=1 "$HELPERS/webdav.sh" start "$DAV" "$DAVUSER" "$PASS" digest >/dev/null
T_EXTRA_PIDS=$(cat "$DAV/lighttpd.pid")
code=$(curl -s -o /dev/null -w '%{http_code}' -r 0-0 --digest -u "$DAVUSER:$PASS" "$URL/sealed/config")
eq "the restarted server ignores Range" "$code" 200
out=$(job '{"function":"repo_pull","repository":"ret-norange","from_repository":"ret","storage":"plain"}')
st_is "a pull from it completes" "$out" COMPLETED
check "and restores the right bytes" cmp "$DS/repositories/ret/keep.txt" "$DS/repositories/ret-norange/keep.txt"
"$HELPERS/webdav.sh" stop "$DAV"
"$HELPERS/webdav.sh" start "$DAV" "$DAVUSER" "$PASS" digest >/dev/null
T_EXTRA_PIDS=$(cat "$DAV/lighttpd.pid")

storage proxied "\"provider\":\"webdav\",\"url\":\"http://127.0.0.1:$PPORT/backups/proxied\",\"passphrase\":\"p\",\"retry_delay_ms\":100"
"$HELPERS/faultproxy.sh" mode "$PROXY" http500 4
out=$(job '{"function":"repo_push","repository":"web","storage":"proxied"}')
st_is "four HTTP 500s are retried within the attempt and the push completes" "$out" COMPLETED
eq "in one attempt" "$(jq -r .attempts <<<"$out")" 1
eq "every 500 was served" "$(cat "$PROXY/mode")" pass
"$HELPERS/faultproxy.sh" mode "$PROXY" cut 200000
out=$(job '{"function":"repo_push","repository":"big","storage":"proxied"}')
st_is "uploads cut mid-body fail the push" "$out" FAILED
eq "transiently, after retries" "$(jq -r .error.code <<<"$out")" transient
"$HELPERS/faultproxy.sh" mode "$PROXY" pass
out=$(job '{"function":"repo_verify","storage":"proxied"}')
st_is "the storage verifies after the cut uploads" "$out" COMPLETED
out=$(job '{"function":"repo_pull","repository":"web-proxied","from_repository":"web","storage":"proxied"}')
cmp=$(tree_compare "$SRC" "$DS/repositories/web-proxied")
[[ $? -eq 0 ]] && pass "a pull through the proxy is exact (${cmp##*$'\n'})" || fail "a pull through the proxy is exact" "$cmp"

# --- connections and bwlimit ---------------------------------------------------------------
storage conn1 "\"provider\":\"webdav\",\"url\":\"http://127.0.0.1:$PPORT/backups/c1\",\"connections\":1"
storage conn4 "\"provider\":\"webdav\",\"url\":\"http://127.0.0.1:$PPORT/backups/c4\",\"connections\":4"
for c in 1 4; do
    "$HELPERS/faultproxy.sh" stat "$PROXY" >/dev/null
    out=$(job "{\"function\":\"repo_push\",\"repository\":\"big\",\"storage\":\"conn$c\"}")
    st_is "a push with connections $c completes" "$out" COMPLETED
    peak[$c]=$("$HELPERS/faultproxy.sh" stat "$PROXY")
done
eq "connections 1: one connection at a time" "${peak[1]}" 1
[[ ${peak[4]} -ge 2 && ${peak[4]} -le 4 ]] && pass "connections 4: up to four at once (${peak[4]})" ||
    fail "connections 4: up to four at once" "${peak[4]}"
# One connection: the limit is shared out evenly between the pool's connections, so with
# four a single 6 MB pack would crawl at a quarter of it.
storage slow "\"provider\":\"webdav\",\"url\":\"$URL/slow\",\"bwlimit\":\"1M\",\"connections\":1"
mkdir -p "$DS/repositories/six"
head -c 6000000 /dev/urandom >"$DS/repositories/six/six.bin"
start=$(date +%s.%N)
out=$(job '{"function":"repo_push","repository":"six","storage":"slow"}')
took=$(echo "$(date +%s.%N) - $start" | bc)
st_is "a push with bwlimit 1M completes" "$out" COMPLETED
[[ $(echo "$took >= 4" | bc) -eq 1 ]] && pass "6 MB at 1 MiB/s takes at least 4 s ($took s)" ||
    fail "bwlimit slows the push" "$took s"

# --- credentials appear nowhere ------------------------------------------------------------
leaks=()
ntasks=$(wc -l <"$T_DIR/tasks")
for task in $(cat "$T_DIR/tasks"); do
    ferry queue trace "$task" --output json >>"$T_DIR/traces.json" 2>&1
done
grep -qF -- "$PASS" "$T_DIR/traces.json" && leaks+=("queue traces")
grep -qF -- "$WRONG" "$T_DIR/traces.json" && leaks+=("queue traces (wrong password)")
grep -qF -- "$PASS" "$T_DIR/host.log" && leaks+=("host log")
grep -qF -- "$WRONG" "$T_DIR/host.log" && leaks+=("host log (wrong password)")
ferry list queue --output json | grep -qF -- "$PASS" && leaks+=("queue list")
ferry list team-storages Ops --output json | grep -qF -- "$PASS" && leaks+=("list team-storages")
ferry inspect storage Ops sealed --output json 2>/dev/null | grep -qF -- "$PASS" && leaks+=("inspect storage")
grep -qF "Authorization" "$T_DIR/traces.json" "$T_DIR/host.log" && leaks+=("an Authorization header")
eq "the password is in no trace, vault, listing or log ($ntasks tasks traced)" "${leaks[*]:-}" ""
check "while the traces do hold the errors" grep -q "HTTP 401" "$T_DIR/traces.json"

stop_host
not_contains "no sanitizer reports from the host or its workers" "$(cat "$T_DIR/host.log")" "Sanitizer"
not_contains "no undefined behaviour reported" "$(cat "$T_DIR/host.log")" "runtime error:"
t_done
