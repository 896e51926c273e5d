#!/usr/bin/env bash
# make install puts ferry web's systemd unit beside the host's, running the installed binary
# with the installed configuration (issue 16, point 1).
. "$(dirname "$0")/../lib.sh"

prefix=$T_DIR/prefix
make -s -C "$FERRY_ROOT" install PREFIX="$prefix" BUILD="$BUILD" SAN="${SAN:-0}" >"$T_DIR/install.log" 2>&1 ||
    fail "make install" "$(tail -20 "$T_DIR/install.log")"
unit=$prefix/lib/systemd/system/ferry-web.service
[[ -f $unit ]] && pass "installed lib/systemd/system/ferry-web.service" || fail "installed ferry-web.service"
contains "the unit runs the installed ferry web" "$(cat "$unit" 2>/dev/null)" "ExecStart=$prefix/bin/ferry --config $prefix/etc/ferry/ferry.conf web"
not_contains "no placeholder is left" "$(cat "$unit" 2>/dev/null)" "@"
t_done
