#!/usr/bin/env bash
# A WebDAV server for tests: lighttpd with mod_webdav, on 127.0.0.1 only, with HTTP
# authentication (digest or basic) against a plain user file, all of it in a directory of
# the caller's choosing. The collection served is DIR/root (the URL path "/").
#
#   webdav.sh start DIR USER PASSWORD [basic|digest]
#                       writes DIR/lighttpd.conf and DIR/users, starts lighttpd, waits until
#                       it answers and prints the port. A DIR that already holds a port file
#                       (a server started there before) gets the same port and the same data
#                       again, so a test can stop a server and bring it back.
#   webdav.sh stop DIR  stops the server (SIGTERM, then SIGKILL) and waits for it.
#   webdav.sh kill DIR  kills it with SIGKILL at once (a crash; the port file stays).
#   webdav.sh pause DIR / resume DIR
#                       SIGSTOP / SIGCONT: a server that accepts connections and never answers.
#
# With WEBDAV_NO_RANGES=1 in the environment, start makes a server that ignores Range
# headers (answers 200 with the whole object), as some servers and proxies do.
#
# DIR/lighttpd.pid holds the server's pid and DIR/error.log its log. Exits non-zero with a
# reason on stderr when the server cannot be started (apt-get install lighttpd
# lighttpd-mod-webdav).
set -euo pipefail

usage="usage: webdav.sh start DIR USER PASSWORD [basic|digest] | stop|kill|pause|resume DIR"
cmd=${1:?$usage}
dir=${2:?$usage}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# answers PORT: true when an HTTP server answers there (any status, 401 included)
answers() {
    local code
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/" 2>/dev/null) || true
    [[ $code =~ ^[1-5][0-9][0-9]$ ]]
}

write_config() { # write_config PORT METHOD
    cat >"$dir/lighttpd.conf" <<EOF
server.document-root = "$dir/root"
server.bind          = "127.0.0.1"
server.port          = $1
server.pid-file      = "$dir/lighttpd.pid"
server.errorlog      = "$dir/error.log"
server.upload-dirs   = ( "$dir/upload" )
server.max-request-size = 0
server.max-connections = 256
server.modules       = ( "mod_webdav", "mod_auth", "mod_authn_file" )
webdav.activate      = "enable"
webdav.is-readonly   = "disable"
auth.backend         = "plain"
auth.backend.plain.userfile = "$dir/users"
auth.require         = ( "" => ( "method" => "$2", "realm" => "ferry-test", "require" => "valid-user" ) )
EOF
    if [[ ${WEBDAV_NO_RANGES:-0} == 1 ]]; then
        echo 'server.range-requests = "disable"' >>"$dir/lighttpd.conf"
    fi
}

start() {
    local user=${3:?$usage} password=${4:?$usage} method=${5:-digest}
    local lighttpd
    lighttpd=$(command -v lighttpd || echo /usr/sbin/lighttpd)
    [[ -x $lighttpd && -f /usr/lib/lighttpd/mod_webdav.so ]] ||
        { echo "webdav.sh: no lighttpd with mod_webdav (apt-get install lighttpd lighttpd-mod-webdav)" >&2; exit 1; }
    mkdir -p "$dir/root" "$dir/upload"
    chmod 700 "$dir"
    (umask 077 && printf '%s:%s\n' "$user" "$password" >"$dir/users")
    local attempt port
    for attempt in 1 2 3 4 5; do
        if [[ -f $dir/port ]]; then port=$(cat "$dir/port"); else port=$(free_port); fi
        write_config "$port" "$method"
        "$lighttpd" -D -f "$dir/lighttpd.conf" </dev/null >>"$dir/error.log" 2>&1 &
        local pid=$!
        echo "$pid" >"$dir/lighttpd.pid"
        local end=$((SECONDS + 10))
        while ((SECONDS < end)); do
            alive "$pid" || break
            if answers "$port"; then
                echo "$port" >"$dir/port"
                echo "$port"
                return 0
            fi
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        # A port of our own may still be in TIME_WAIT or taken by someone else: wait a little
        # for it when it is the one a restart must keep.
        sleep 0.5
    done
    echo "webdav.sh: lighttpd did not start; its log:" >&2
    cat "$dir/error.log" >&2 2>/dev/null || true
    exit 1
}

pid_of() { [[ -f $dir/lighttpd.pid ]] && cat "$dir/lighttpd.pid"; }

# alive PID: the process exists and is not a zombie waiting to be reaped
alive() { [[ -e /proc/$1 && $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

stop() {
    local pid
    pid=$(pid_of) || return 0
    kill -CONT "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    local end=$((SECONDS + 5))
    while alive "$pid" && ((SECONDS < end)); do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/lighttpd.pid"
}

signal() { # signal SIG
    local pid
    pid=$(pid_of) || { echo "webdav.sh: no server in $dir" >&2; exit 1; }
    kill "-$1" "$pid"
    if [[ $1 == KILL ]]; then
        while alive "$pid"; do sleep 0.05; done
        rm -f "$dir/lighttpd.pid"
    fi
}

case $cmd in
start) start "$@" ;;
stop) stop ;;
kill) signal KILL ;;
pause) signal STOP ;;
resume) signal CONT ;;
*) echo "$usage" >&2; exit 2 ;;
esac
