#!/usr/bin/env bash
# ferry repo snapshots, ls and diff (issue 18, point 6) read a storage without the queue:
# text and JSON, the same rows as repo_list, snapshots named by a unique prefix, and what a
# storage sends back treated as hostile — names with control characters, bidi marks and bytes
# that are not UTF-8 printed escaped (never raw), trees with ".." or "/abs" refused naming
# the entry escaped, a truncated manifest or index, a snapshot that does not exist, a wrong
# passphrase and a storage that cannot be reached: each one line and exit 1, no secret shown.
. "$(dirname "$0")/../lib.sh"

write_config 'lease = { poll_ms = 100; };'
install_plugins
DS=$T_DIR/ds W=$T_DIR/web
PW=hunter2-browse-secret
ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
ferry create machine Ops local box --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
ferry create machine Ops local web-01 --vault "{\"connection\":\"local\",\"datastore\":\"$W\"}" >/dev/null
# st is plain (a command on an encrypted storage spends about 0.1 s in scrypt); enc is not.
ferry create storage Ops st --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/st\"}" >/dev/null
ferry create storage Ops enc --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/enc\",\"passphrase\":\"$PW\"}" >/dev/null
ferry create storage Ops plain --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/plain\"}" >/dev/null

R=$DS/repositories/app
mkdir -p "$R/dir/sub" "$W/repositories/db"
echo one >"$R/a.txt" && echo two >"$R/dir/b.txt" && echo gone >"$R/old.txt" && echo deep >"$R/dir/sub/c.txt"
ln -s a.txt "$R/link"
printf x >"$R/$(printf 'esc\033[31mred')"
printf x >"$R/$(printf 'nl\nname')"
printf x >"$R/$(printf 'bad\377name')"
printf x >"$R/$(printf 'bidi\342\200\256txt.exe')"
printf x >"$R/$(printf 'back\\slash')"
echo db >"$W/repositories/db/d"

job() {
    local task
    task=$(ferry create queue-item Ops "${2:-box}" local --vault "$1" --output json | jq -r '.data[0].taskId')
    ferry queue wait "$task" --timeout 120 >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault + {status: .data[0].status}'
}
start_host
job '{"function":"repo_push","repository":"app","storage":"st","snapshot_id":"20260101_020000","tags":{"type":"nightly"}}' >/dev/null
rm "$R/old.txt" && echo changed >"$R/a.txt" && echo new >"$R/new.txt" && chmod 700 "$R/dir"
job '{"function":"repo_push","repository":"app","storage":"st","snapshot_id":"20260102_020000"}' >/dev/null
job '{"function":"repo_push","repository":"db","storage":"st","snapshot_id":"20260101_030000"}' web-01 >/dev/null
job '{"function":"repo_push","repository":"app","storage":"plain","snapshot_id":"clean"}' >/dev/null
job '{"function":"repo_push","repository":"app","storage":"enc","snapshot_id":"e1"}' >/dev/null
listed=$(job '{"function":"repo_list","storage":"st"}')
queued=$(job '{"function":"repo_ls","storage":"st","snapshot":"app/20260102","path":"dir"}')
stop_host
eq "repo_ls runs as a queue item too" "$(jq -c '[.status, [.result.entries[].path]]' <<<"$queued")" '["COMPLETED",["dir","dir/b.txt","dir/sub"]]'
eq "three snapshots pushed" "$(jq -r '.result.snapshots | length' <<<"$listed")" 3

# --- snapshots ------------------------------------------------------------------------------
out=$(ferry repo snapshots --storage st)
eq "snapshots: exit 0" "$?" 0
contains "snapshots: a table" "$out" "REPOSITORY  ID"
contains "snapshots: the app row" "$out" "app         20260101_020000"
contains "snapshots: the machine" "$out" "web-01"
contains "snapshots: the count" "$out" "3 snapshots"
json=$(ferry repo snapshots --storage st --output json)
eq "snapshots --output json: the same rows as repo_list's result" \
    "$(jq -S .data <<<"$json")" "$(jq -S .result.snapshots <<<"$listed")"
eq "--machine narrows" "$(ferry repo snapshots --storage st --machine web-01 --output json | jq -c '[.data[].id]')" '["20260101_030000"]'
eq "--repository narrows" "$(ferry repo snapshots --storage st --repository app --output json | jq -c '[.data[].id]')" \
    '["20260101_020000","20260102_020000"]'
err=$(ferry repo snapshots 2>&1); rc=$?
eq "no --storage: usage error, exit 2" "$rc" 2
contains "and says so" "$err" "--storage NAME is required"

# --- ls and snapshot ids --------------------------------------------------------------------
out=$(ferry repo ls 20260102 --storage st)
eq "ls by a unique prefix: exit 0" "$?" 0
contains "ls: the header names the snapshot" "$out" "snapshot app/20260102_020000 (machine box,"
contains "ls lists everything by default" "$out" "dir/sub/c.txt"
contains "a directory ends with /" "$out" $'\ndir/\n'
not_contains "ls of the second snapshot: the removed file is not there" "$out" "old.txt"
eq "ls latest --repository db" "$(ferry repo ls latest --storage st --repository db --output json | jq -r '.data.snapshot.id')" 20260101_030000
eq "ls REPOSITORY/ID" "$(ferry repo ls app/20260101_020000 --storage st --output json | jq -r '.data.snapshot.id')" 20260101_020000
eq "ls with a path: the entry and what it holds" "$(ferry repo ls app/20260102 dir --storage st)" \
    $'snapshot app/20260102_020000 (machine box, '"$(jq -r '.data[1].time' <<<"$json")"$'):\ndir/\ndir/b.txt\ndir/sub/'
eq "--recursive below a path" "$(ferry repo ls app/20260102 /dir/ --recursive --storage st | tail -n +2 | tr '\n' ' ')" \
    "dir/ dir/b.txt dir/sub/ dir/sub/c.txt "
long=$(ferry repo ls app/20260102 --storage st -l)
contains "-l: a symlink with its target" "$long" "lrwxrwxrwx"
contains "-l: -> target" "$long" "link -> a.txt"
contains "-l: the mode of a directory" "$long" "drwx------"
e=$(ferry repo ls app/20260102 --storage st --output json | jq -c '.data.entries[] | select(.path == "a.txt")')
eq "ls --output json: one entry" "$(jq -c '{type, size, mode}' <<<"$e")" '{"type":"file","size":8,"mode":420}'
contains "with an ISO mtime to the nanosecond" "$(jq -r .mtime <<<"$e")" "Z"

err=$(ferry repo ls 2026 --storage st 2>&1); rc=$?
eq "an ambiguous prefix: exit 1" "$rc" 1
eq "in one line" "$(wc -l <<<"$err")" 1
contains "naming the matches" "$err" 'snapshot "2026" is ambiguous in storage st: 3 snapshots match'
err=$(ferry repo ls 20260101_020000 --storage st 2>&1)
eq "a whole id that is another's prefix is not ambiguous" "$(head -1 <<<"$err")" "snapshot app/20260101_020000 (machine box, $(jq -r '.data[0].time' <<<"$json")):"
err=$(ferry repo ls 19990101 --storage st 2>&1); rc=$?
eq "a snapshot that does not exist: exit 1" "$rc" 1
eq "one line saying so" "$err" 'ferry: repo_ls FAIL: storage st has no snapshot "19990101" (ferry repo snapshots lists them)'
err=$(ferry repo ls app/20260102 nothere --storage st 2>&1); rc=$?
contains "a path the snapshot lacks" "$rc $err" '1 ferry: repo_ls FAIL: snapshot app/20260102_020000 in storage st has no entry "nothere"'
err=$(ferry repo ls app/20260102 ../x --storage st 2>&1); rc=$?
contains "a path with .. is refused" "$rc $err" 'path "../x" has an empty'
json_err=$(ferry repo ls 19990101 --storage st --output json 2>/dev/null)
eq "--output json: the failure envelope" "$(jq -c '{success, data}' <<<"$json_err")" '{"success":false,"data":null}'

# --- names from a storage are printed escaped -------------------------------------------------
out=$(ferry repo ls app/20260102 --storage st)
contains "an escape sequence is shown, not sent" "$out" 'esc\x1b[31mred'
contains "a newline in a name" "$out" 'nl\nname'
contains "a byte that is not UTF-8" "$out" 'bad\xffname'
contains "a bidi override" "$out" 'bidi\u202etxt.exe'
contains "a backslash is doubled" "$out" 'back\\slash'
eq "no raw control byte reaches stdout" "$(printf '%s' "$out" | tr -d '\n' | LC_ALL=C grep -c $'[\x01-\x1f\x7f]')" 0
eq "nor the raw byte \\xff" "$(printf '%s' "$out" | LC_ALL=C grep -c $'\xff')" 0
bad=$(ferry repo ls app/20260102 --storage st --output json | jq -c '.data.entries[] | select(.path_hex)')
eq "JSON: a name that is not UTF-8 comes with its bytes" "$(jq -r .path_hex <<<"$bad")" "$(printf 'bad\377name' | od -An -tx1 | tr -d ' \n')"
eq "and a readable path" "$(jq -r .path <<<"$bad")" $'bad\uFFFDname'
eq "JSON: a control character is a JSON escape" \
    "$(ferry repo ls app/20260102 --storage st --output json | jq -c '[.data.entries[].path | select(startswith("nl"))]')" '["nl\nname"]'

# --- diff -----------------------------------------------------------------------------------
out=$(ferry repo diff app/20260101 app/20260102 --storage st)
eq "diff: exit 0" "$?" 0
contains "diff: header" "$out" "comparing snapshot app/20260101_020000 (machine box,"
contains "diff: a changed file" "$out" "M    a.txt"
contains "diff: an added file" "$out" "+    new.txt"
contains "diff: a removed file" "$out" "-    old.txt"
not_contains "diff: metadata alone is not listed by default" "$out" "U    dir/"
contains "diff: the counts" "$out" "Files:      1 new,     1 removed,     1 changed"
meta=$(ferry repo diff app/20260101 app/20260102 --storage st --metadata --output json)
eq "diff --metadata: the directory whose mode changed" "$(jq -r '.data.changes[] | select(.path == "dir/") | .change' <<<"$meta")" U
eq "diff --output json: changes in tree order" "$(jq -c '[.data.changes[] | select(.change != "U") | .path]' <<<"$meta")" '["a.txt","new.txt","old.txt"]'
eq "diff --output json: stats" "$(jq -c '.data.stats | {added: .added.files, removed: .removed.files, changed_files}' <<<"$meta")" \
    '{"added":1,"removed":1,"changed_files":1}'
eq "diff names both snapshots as rows" "$(jq -r '.data.from.id + " " + .data.to.id' <<<"$meta")" "20260101_020000 20260102_020000"
eq "diff of a snapshot with itself: nothing" "$(ferry repo diff app/20260102 app/20260102 --storage st --output json | jq '.data.changes | length')" 0

# --- hostile and broken storages --------------------------------------------------------------
build_repo_craft
"$T_DIR/repo_craft" "$T_DIR/plain" app clean evil-dotdot dotdot "$T_DIR/outside" 2>/dev/null || fail "craft dotdot"
"$T_DIR/repo_craft" "$T_DIR/plain" app clean evil-abs absolute "$T_DIR/outside" 2>/dev/null || fail "craft absolute"
err=$(ferry repo ls evil-dotdot --storage plain 2>&1); rc=$?
eq "a tree with .. : exit 1" "$rc" 1
contains "refused naming the entry" "$err" 'its tree is refused: entry "../../../sentinel/dotdot"'
err=$(ferry repo diff clean evil-abs --storage plain 2>&1); rc=$?
contains "a tree with an absolute path: refused by diff too" "$rc $err" "1 ferry: repo_diff FAIL: snapshot app/evil-abs in storage plain: its tree is refused"
eq "the storage is unchanged: nothing written" "$(find "$T_DIR/plain" -newer "$T_DIR/repo_craft" -name 'lock*' | wc -l)" 0

cp -a "$T_DIR/plain" "$T_DIR/trunc"
ferry create storage Ops trunc --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/trunc\"}" >/dev/null
idx=$(find "$T_DIR/trunc/index" -type f | head -1)
head -c 7 "$idx" >"$idx.t" && mv "$idx.t" "$idx"
err=$(ferry repo ls clean --storage trunc 2>&1); rc=$?
eq "a truncated index: exit 1" "$rc" 1
eq "in one line" "$(wc -l <<<"$err")" 1
contains "naming the index file" "$err" "index/"
man=$T_DIR/trunc/snapshots/app/clean
head -c 10 "$man" >"$man.t" && mv "$man.t" "$man"
err=$(ferry repo snapshots --storage trunc 2>&1); rc=$?
contains "a truncated manifest: exit 1, naming it" "$rc $err" "1 ferry: repo_snapshots FAIL: snapshots/app/clean"
eq "in one line" "$(wc -l <<<"$err")" 1

eq "an encrypted storage: snapshots" "$(ferry repo snapshots --storage enc --output json | jq -c '[.data[].id]')" '["e1"]'
eq "an encrypted storage: ls" "$(ferry repo ls e1 dir/sub --storage enc | tail -n +2)" $'dir/sub/\ndir/sub/c.txt'
# A manifest (plain JSON in a plain storage) and snapshot keys written by someone hostile.
cp -a "$T_DIR/plain" "$T_DIR/odd"
ferry create storage Ops odd --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/odd\"}" >/dev/null
m=$T_DIR/odd/snapshots/app/clean
if jq -e . "$m" >/dev/null 2>&1; then
    jq -c '.machine = "evil\u001b]0;owned\u0007" | .tags = {"k": "\u202egnp.exe"} | .time = "\u009b31m"' "$m" >"$m.t" && mv "$m.t" "$m"
    mkdir "$T_DIR/odd/snapshots/$(printf 'r\033x')" "$T_DIR/odd/snapshots/$(printf 'r\377')"
    cp "$m" "$T_DIR/odd/snapshots/$(printf 'r\033x')/v1" && cp "$m" "$T_DIR/odd/snapshots/$(printf 'r\377')/v2"
    out=$(ferry repo snapshots --storage odd --output text)
    contains "a machine from the manifest is escaped" "$out" 'evil\x1b]0;owned\x07'
    contains "tags too" "$out" '{"k":"\u202egnp.exe"}'
    contains "and a C1 control in the time" "$out" '\u009b31m'
    contains "a repository key with an escape" "$out" 'r\x1bx'
    contains "a repository key that is not UTF-8" "$out" 'r\xff'
    eq "no raw control byte, C1 or bidi mark" "$(printf '%s' "$out" | tr -d '\n' | LC_ALL=C grep -c -e $'[\x01-\x1f\x7f]' -e $'\xc2\x9b' -e $'\xe2\x80\xae' -e $'\xff')" 0
    eq "JSON keeps the bytes of the key" "$(ferry repo snapshots --storage odd --output json | jq -r '.data[] | select(.repository_hex) | .repository_hex')" 72ff
else
    fail "a plain storage's manifest is JSON" "$(head -c 100 "$m" | od -c | head -3)"
fi

ferry create storage Ops wrongpw --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/enc\",\"passphrase\":\"not-the-$PW\"}" >/dev/null
err=$(ferry repo snapshots --storage wrongpw 2>&1); rc=$?
eq "a wrong passphrase: exit 1" "$rc" 1
contains "says so" "$err" "passphrase"
not_contains "and shows no passphrase" "$err" "$PW"
ferry create storage Ops gone --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/no/such/disk\"}" >/dev/null
err=$(ferry repo snapshots --storage gone 2>&1); rc=$?
eq "a storage that cannot be reached: exit 1" "$rc" 1
eq "in one line" "$(wc -l <<<"$err")" 1
contains "saying what is wrong" "$err" "repo_snapshots RETRY: "
ferry create storage Ops s3down --vault '{"provider":"s3","endpoint":"http://127.0.0.1:9","bucket":"browse-test","region":"us-east-1","access_key_id":"AKIDOWN","secret_access_key":"s3-secret-never-shown","retries":0,"connect_timeout":1}' >/dev/null
err=$(ferry repo snapshots --storage s3down 2>&1); rc=$?
eq "an S3 endpoint that refuses connections: exit 1" "$rc" 1
eq "in one line" "$(wc -l <<<"$err")" 1
not_contains "without its secret key" "$err" "s3-secret-never-shown"
echo "# $err"
err=$(ferry repo snapshots --storage nosuch 2>&1); rc=$?
contains "a storage no team has" "$rc $err" "1 ferry: no team has a storage named 'nosuch'"
ferry create team Dev >/dev/null
ferry create storage Dev st --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/st2\"}" >/dev/null
err=$(ferry repo snapshots --storage st 2>&1); rc=$?
contains "a name two teams use needs --team" "$rc $err" "1 ferry: teams Dev, Ops each have a storage named 'st': give --team"
eq "--team picks one" "$(ferry repo snapshots --storage st --team Ops --output json | jq '.data | length')" 3
all=$(ferry repo snapshots --storage enc 2>&1; ferry repo ls latest --storage enc -l 2>&1;
    ferry repo diff e1 e1 --storage enc --output json 2>&1)
not_contains "no output carries the passphrase" "$all" "$PW"

t_done
