#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server for tests and benchmarks: a fresh cluster in a temporary
# directory, listening on 127.0.0.1 at a port of its own and on a unix socket inside that
# directory, with a database "ferry". Nothing outside the directory is touched.
#
#   scripts/pg.sh start [--durable]   starts a server; prints its URL (database "ferry")
#   scripts/pg.sh env [--durable]     starts a server; prints shell assignments:
#                                     FERRY_PG_DIR, FERRY_TEST_PG_URL, FERRY_TEST_PG_ADMIN_URL
#   scripts/pg.sh stop DIR|URL        stops the server and removes its directory
#   scripts/pg.sh restart DIR|URL     fast restart (sessions are cut, as in a real restart)
#   scripts/pg.sh kill DIR|URL        stops the server at once (immediate mode), keeps DIR
#   scripts/pg.sh run DIR|URL         starts a stopped server again
#   scripts/pg.sh createdb DIR|URL NAME   creates database NAME; prints its URL
#
# By default the cluster trades durability against power loss for speed (fsync off: it is
# thrown away anyway); commits still reach the kernel before they are acknowledged, so a
# crash of the server (kill, immediate stop) loses nothing. --durable keeps PostgreSQL's
# defaults (fsync on), for benchmarks.
# initdb refuses to run as root, so as root the cluster belongs to the "postgres" user;
# otherwise to the user running the script. PG_BIN overrides /usr/lib/postgresql/15/bin.
# PG_EXTRA_CONF: lines added to the server's postgresql.conf (say, to load pg_stat_statements
# for a measurement: shared_preload_libraries = 'pg_stat_statements').
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

die() { echo "pg.sh: $*" >&2; exit 1; }

[[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl && -x $PG_BIN/postgres ]] ||
    die "no PostgreSQL 15 server binaries in $PG_BIN; install them as root with: apt-get install postgresql (or scripts/deps.sh test)"

if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to own the cluster (install the postgresql package)"
    as_owner() { runuser -u postgres -- "$@"; }
    owner=postgres
else
    as_owner() { "$@"; }
    owner=$(id -un)
fi

# The directory of a server, from a directory or a URL naming its socket directory.
dir_of() {
    local arg=$1
    if [[ $arg == postgres*://* ]]; then
        arg=${arg#*host=}
        arg=${arg%%&*}
    fi
    [[ -f $arg/data/PG_VERSION ]] || die "$1 is not a server started by scripts/pg.sh"
    echo "$arg"
}
port_of() { cat "$1/port"; }
url_of() { echo "postgresql:///$2?host=$1&port=$(port_of "$1")&user=$owner"; }

free_port() {
    python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

pg_ctl() { as_owner "$PG_BIN/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 "${@:2}" >/dev/null; }

start() {
    local durable=0
    [[ ${1:-} == --durable ]] && durable=1
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/ferry-pg.XXXXXX")
    chmod 755 "$dir"
    [[ $owner == postgres ]] && chown postgres: "$dir"
    if ! as_owner "$PG_BIN/initdb" -D "$dir/data" -U "$owner" --auth=trust -E UTF8 \
        --locale=C.UTF-8 >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        die "initdb failed (output above)"
    fi
    {
        echo "unix_socket_directories = '$dir'"
        echo "listen_addresses = '127.0.0.1'"
        echo "max_connections = 200"
        echo "shared_buffers = 128MB"
        if [[ -n ${PG_EXTRA_CONF:-} ]]; then printf '%s\n' "$PG_EXTRA_CONF"; fi
        if [[ $durable -eq 0 ]]; then
            echo "fsync = off"
            echo "full_page_writes = off"
        fi
    } >>"$dir/data/postgresql.conf"
    local tries=0
    while :; do
        local port
        port=$(free_port)
        echo "$port" >"$dir/port"
        if pg_ctl "$dir" -o "-p $port" start 2>>"$dir/pg_ctl.log"; then break; fi
        tries=$((tries + 1))
        if [[ $tries -ge 5 ]]; then
            tail -20 "$dir/server.log" "$dir/pg_ctl.log" >&2
            rm -rf "$dir"
            die "the server did not start (log above)"
        fi
    done
    as_owner "$PG_BIN/psql" -X -q -h "$dir" -p "$(port_of "$dir")" -U "$owner" -d postgres \
        -c "CREATE DATABASE ferry" >/dev/null || die "cannot create database ferry"
    echo "$dir"
}

cmd=${1:-}
case "$cmd" in
start)
    dir=$(start "${2:-}")
    url_of "$dir" ferry
    ;;
env)
    dir=$(start "${2:-}")
    echo "FERRY_PG_DIR=$dir"
    echo "FERRY_TEST_PG_URL='$(url_of "$dir" ferry)'"
    echo "FERRY_TEST_PG_ADMIN_URL='$(url_of "$dir" postgres)'"
    ;;
stop)
    dir=$(dir_of "${2:?usage: pg.sh stop DIR|URL}")
    pg_ctl "$dir" -m immediate stop 2>/dev/null || true
    rm -rf "$dir"
    ;;
restart)
    dir=$(dir_of "${2:?usage: pg.sh restart DIR|URL}")
    pg_ctl "$dir" -m fast -o "-p $(port_of "$dir")" restart
    ;;
kill)
    dir=$(dir_of "${2:?usage: pg.sh kill DIR|URL}")
    pg_ctl "$dir" -m immediate stop
    ;;
run)
    dir=$(dir_of "${2:?usage: pg.sh run DIR|URL}")
    pg_ctl "$dir" -o "-p $(port_of "$dir")" start
    ;;
createdb)
    dir=$(dir_of "${2:?usage: pg.sh createdb DIR|URL NAME}")
    name=${3:?usage: pg.sh createdb DIR|URL NAME}
    as_owner "$PG_BIN/psql" -X -q -h "$dir" -p "$(port_of "$dir")" -U "$owner" -d postgres \
        -c "CREATE DATABASE \"$name\"" >/dev/null
    url_of "$dir" "$name"
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
