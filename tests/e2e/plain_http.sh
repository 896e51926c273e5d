#!/usr/bin/env bash
# Credentials over plain http (issue 17, point 4): a webdav storage with a "user" at an
# http:// URL of another machine is refused with a one-line reason before any request (the
# address is TEST-NET-3, where a request would hang until its timeout); the same storage on
# loopback (a closed port) gets as far as connecting; http without credentials and https are
# not refused; an s3 endpoint over http to another machine is refused. The webdav and s3
# suites (storage_webdav.sh, storage_s3.sh) run with credentials over http on loopback.
. "$(dirname "$0")/../lib.sh"

write_config 'lease = { poll_ms = 100; };'
install_plugins
DS=$T_DIR/ds
mkdir -p "$DS/repositories/web"
echo hello >"$DS/repositories/web/a.txt"
ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
ferry create machine Ops local box --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
CLOSED=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PW='plain-http-distinctive-pw-5521'
storage() { ferry create storage Ops "$1" --vault "$2" >/dev/null || fail "storage $1 is created"; }
storage remote "{\"provider\":\"webdav\",\"url\":\"http://203.0.113.9/backups\",\"user\":\"u\",\"password\":\"$PW\",\"timeout\":60,\"connect_timeout\":60}"
storage remote-upper "{\"provider\":\"http\",\"url\":\"HTTP://127.evil.example/backups\",\"user\":\"u\",\"password\":\"$PW\"}"
storage local4 "{\"provider\":\"webdav\",\"url\":\"http://127.0.0.1:$CLOSED/backups\",\"user\":\"u\",\"password\":\"$PW\",\"retries\":0,\"connect_timeout\":2}"
storage local-name "{\"provider\":\"webdav\",\"url\":\"http://localhost:$CLOSED/backups\",\"user\":\"u\",\"password\":\"$PW\",\"retries\":0,\"connect_timeout\":2}"
storage anonymous "{\"provider\":\"webdav\",\"url\":\"http://203.0.113.9/backups\",\"retries\":0,\"connect_timeout\":1}"
storage s3-remote "{\"provider\":\"s3\",\"bucket\":\"b\",\"endpoint\":\"http://203.0.113.9:9000\",\"access_key_id\":\"A\",\"secret_access_key\":\"B\"}"
start_host

submit() { ferry create queue-item Ops box local --vault "$1" --output json | jq -r '.data[0].taskId'; }
job() {
    local task
    task=$(submit "$1")
    ferry queue wait "$task" --timeout 120 >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault'
}
errmsg() { jq -r '.error.message // empty' <<<"$1"; }
push() { job "{\"function\":\"repo_push\",\"repository\":\"web\",\"storage\":\"$1\"}"; }

start=$(date +%s)
out=$(push remote)
contains "webdav with a user over http to another machine is refused" "$(errmsg "$out")" \
    'is plain http to another machine and its vault has a "user"'
contains "the refusal says what to do" "$(errmsg "$out")" 'use https://'
eq "the refusal is one line" "$(errmsg "$out" | wc -l)" 1
eq "refused before any request (no 60 s connect timeout)" "$(( $(date +%s) - start < 30 ))" 1
not_contains "the password is not in the message" "$out" "$PW"
out=$(push remote-upper)
contains "a name that begins with 127. is not loopback (the http alias, an upper-case scheme)" \
    "$(errmsg "$out")" 'is plain http to another machine'
for s in local4 local-name; do
    out=$(push $s)
    not_contains "loopback over http with a user is allowed ($s)" "$(errmsg "$out")" 'plain http'
    contains "and it got as far as connecting ($s)" "$(errmsg "$out")" "connect"
done
out=$(push anonymous)
not_contains "http without credentials is not refused" "$(errmsg "$out")" 'plain http'
out=$(push s3-remote)
contains "s3 over http to another machine is refused" "$(errmsg "$out")" 'plain http to another machine'
t_done
