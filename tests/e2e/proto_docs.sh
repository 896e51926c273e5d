#!/usr/bin/env bash
# The worker protocol's message list is one list: the table in host/worker/proto.h
# (PROTO_OPS) and the table in docs/protocol.md name the same messages in the same order, and
# the members the docs give each message are the members its build function writes.
. "$(dirname "$0")/../lib.sh"
cd "$FERRY_ROOT" || exit 1

code=$(sed -n '/^#define PROTO_OPS(X)/,/^$/p' host/worker/proto.h | grep -o 'X([A-Z]*, "[a-z]*")' |
    sed 's/.*"\(.*\)")/\1/' | paste -sd' ')
docs=$(sed -n '/^## Messages/,/^## /p' docs/protocol.md | grep -o '^| `[a-z]*` |' |
    sed 's/^| `\(.*\)` |/\1/' | paste -sd' ')
[[ -n $code ]] && pass "proto.h lists the messages: $code" || fail "proto.h lists the messages" ""
eq "docs/protocol.md lists the same messages in the same order" "$docs" "$code"

# Each build function's members (from proto.c) are the ones the docs' table gives.
members_code() { # the keys proto_build_OP (or proto_buf_OP, which writes its text) writes, sorted
    sed -n "/^\(json_t \*proto_build\|int proto_buf\)_$1(/,/^}/p" host/worker/proto.c |
        grep -o '(\(j\|b\), "[a-z_]*"' | cut -d'"' -f2 | sort -u | paste -sd' '
}
members_docs() {
    sed -n '/^## Messages/,/^## /p' docs/protocol.md | grep "^| \`$1\` |" | cut -d'|' -f4 |
        grep -o '`[a-z_]*`' | tr -d '`' | sort -u | paste -sd' '
}
for op in $code; do
    c=$(members_code "$op")
    # error_obj() writes "error" for reply and done; start() writes "id" for all but reply/probe.
    case $op in reply | done) c=$(tr ' ' '\n' <<<"$c error" | sort -u | paste -sd' ') ;; esac
    case $op in reply | probe) ;; *) c=$(tr ' ' '\n' <<<"$c id" | sort -u | paste -sd' ') ;; esac
    eq "docs/protocol.md gives \"$op\" the members proto_build_$op writes" "$(members_docs "$op")" "$c"
done

# The test can fail: a table missing a message, or in another order, differs.
doctored=$(sed 's/"pgroup")/"pgroups")/' host/worker/proto.h | sed -n '/^#define PROTO_OPS(X)/,/^$/p' |
    grep -o 'X([A-Z]*, "[a-z]*")' | sed 's/.*"\(.*\)")/\1/' | paste -sd' ')
[[ $doctored != "$docs" ]] && pass "a renamed message would be caught" ||
    fail "a renamed message would be caught" "$doctored"
t_done
