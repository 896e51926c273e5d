#!/usr/bin/env bash
# The files a create queue-item opens (issue 14, point 7): none that its work does not need.
# Its dates are UTC, so no time zone is read (glibc's gmtime_r loaded /etc/localtime, six
# system calls); jansson's hash seed comes from the random bytes the create draws for its id
# (jansson opened /dev/urandom). Both for the plain answer and for the JSON one, which
# prints the item's dates. The answers themselves are cli_queue.sh's.
. "$(dirname "$0")/../lib.sh"
need_strace

write_config
install_plugins
setup_local_machine Ops box1
ferry create queue-item Ops box1 local --vault '{"function":"hello"}' >/dev/null 2>&1 # the cache
opened() { # TRACE: the paths opened, one a line
    sed -n 's/.*open\(at\)\{0,1\}([^"]*"\([^"]*\)".*/\2/p' "$1"
}
for form in text json; do
    args=()
    [[ $form == json ]] && args=(--output json)
    strace -f -e trace=open,openat -o "$T_DIR/trace.$form" "$FERRY_BIN" create queue-item Ops box1 \
        local --vault '{"function":"hello"}' "${args[@]}" >"$T_DIR/out.$form" 2>&1
    contains "the traced create ($form) queued its item" "$(cat "$T_DIR/out.$form")" \
        "$([[ $form == json ]] && echo '"createdTime"' || echo 'Task ID')"
    eq "... without reading the time zone" "$(opened "$T_DIR/trace.$form" | grep -c localtime)" 0
    eq "... or opening /dev/urandom" "$(opened "$T_DIR/trace.$form" | grep -c urandom)" 0
done
eq "the JSON answer's dates are UTC" \
    "$(grep -o '"createdTime": *"[^"]*"' "$T_DIR/out.json" | grep -c 'Z"$')" 1

t_done
