# Helpers for the PostgreSQL end-to-end tests (tests/e2e/pg_*.sh), sourced after
# tests/lib.sh. They need the server tests/run.sh starts (FERRY_TEST_PG_ADMIN_URL); without
# one they fail with the reason, never pass.

# pg_require: fails the test file at once when there is no server to test against.
pg_require() {
    if [[ -z ${FERRY_TEST_PG_ADMIN_URL:-} ]]; then
        fail "a PostgreSQL server to test against" \
            "${FERRY_TEST_PG_ERROR:-FERRY_TEST_PG_ADMIN_URL is not set: run through tests/run.sh (make check), which starts one with scripts/pg.sh}"
        t_done
        exit 1
    fi
    command -v psql >/dev/null || { fail "psql is installed" "install postgresql-client"; t_done; exit 1; }
}

# pg_url_for ADMIN_URL DB: the URL of database DB on the same server.
pg_url_for() { sed -E "s#^(postgres(ql)?://[^/?]*/)[^?]*#\1$2#" <<<"$1"; }

# pg_new_db NAME: creates database NAME (dropping an old one) and prints its URL.
pg_new_db() {
    PGOPTIONS="-c client_min_messages=warning" psql -X -q "$FERRY_TEST_PG_ADMIN_URL" \
        -c "DROP DATABASE IF EXISTS \"$1\"" -c "CREATE DATABASE \"$1\"" >/dev/null ||
        return 1
    pg_url_for "$FERRY_TEST_PG_ADMIN_URL" "$1"
}

# pg_sql URL QUERY: rows as a|b|c.
pg_sql() { psql -X -q -At -F'|' -v ON_ERROR_STOP=1 "$1" -c "$2"; }

# pg_config FILE BRIDGE URL [LINES...]: a config for a host of BRIDGE on the database URL.
pg_config() {
    local file=$1 bridge=$2 url=$3; shift 3
    {
        echo "bridge = \"$bridge\";"
        echo "log_level = \"${T_LOG_LEVEL:-info}\";"
        echo "store = { driver = \"postgres\"; conninfo = \"$url\"; };"
        echo "plugins = { dir = \"$T_DIR/plugins\"; };"
        for line in "$@"; do echo "$line"; done
    } >"$file"
}

# build_queue_fill: compiles tests/helpers/queue_fill.c against the host's objects into
# $T_DIR/queue_fill.
build_queue_fill() {
    local pkgs src objs=() san=() inc=()
    pkgs=$(sed -n 's/^PKGS *:= *//p' "$FERRY_ROOT/Makefile")
    for o in "$FERRY_ROOT/$BUILD"/obj/host/*.o "$FERRY_ROOT/$BUILD"/obj/host/*/*.o; do
        # An object whose source was removed is a leftover of an older tree: not linked.
        src=${o#"$FERRY_ROOT/$BUILD/obj/"}
        [[ $o == */main.o || ! -f $FERRY_ROOT/${src%.o}.c ]] || objs+=("$o")
    done
    # The dashboard's files, a table generated at build time (Makefile: web_assets.o).
    [[ -f $FERRY_ROOT/$BUILD/obj/web_assets.o ]] && objs+=("$FERRY_ROOT/$BUILD/obj/web_assets.o")
    for d in "$FERRY_ROOT"/host/*/; do inc+=(-I"$d"); done
    [[ ${SAN:-0} == 1 ]] && san=(-fsanitize=address,undefined)
    # shellcheck disable=SC2086
    ${CC:-cc} -std=gnu11 -O1 -g -D_GNU_SOURCE "${san[@]}" -I"$FERRY_ROOT/host" "${inc[@]}" \
        -I"$FERRY_ROOT/sdk/include" $(pkg-config --cflags $pkgs) -o "$T_DIR/queue_fill" \
        "$FERRY_ROOT/tests/helpers/queue_fill.c" "${objs[@]}" $(pkg-config --libs $pkgs) \
        -ldl -lpthread -lm || { fail "queue_fill builds"; return 1; }
}

# start_pg_host CONFIG LOG: starts `ferry serve` with CONFIG; its pid in $! is added to
# T_EXTRA_PIDS (killed at exit). Waits until it serves.
start_pg_host() {
    FERRY_CONFIG=$1 "$FERRY_BIN" serve >>"$2" 2>&1 &
    local pid=$!
    T_EXTRA_PIDS="${T_EXTRA_PIDS:-} $pid"
    LAST_HOST_PID=$pid
    wait_for 15 grep -q "serving bridge" "$2" || { echo "# host did not start:"; sed 's/^/# /' "$2"; return 1; }
}

# stop_pids PID...: SIGTERM, then waits up to 30 s each.
stop_pids() {
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "$@"; do
        local end=$((SECONDS + 30))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
}
