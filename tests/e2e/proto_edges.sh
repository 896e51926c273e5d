#!/usr/bin/env bash
# The worker protocol's edges, end to end: a result larger than a message may carry fails the
# attempt with result_too_large (the worker says so instead of dying), a call too large fails
# the call with too_large; a message a plugin
# forges on the worker's socket that breaks the protocol (a "pgroup" naming group 1) ends the
# attempt as CRASHED with the reason, and the host signals no group it was not given.
. "$(dirname "$0")/../lib.sh"

write_config
install_plugins
build_fixture "$T_DIR/plugins/proto_forge.so" proto_forge.c

out=$(ferry run pf_big --output json 2>&1)
contains "a 65 MiB result fails the attempt (FAIL, not a crash)" "$out" "pf_big FAIL: "
contains "and says why" "$out" "larger than the 64 MiB a message may carry"

out=$(ferry run pf_bigcall --output json 2>&1)
contains "a call whose parameters would not fit fails the call, not the worker" "$out" \
    "pf_bigcall FAIL: hello: the request is larger than the 64 MiB a message may carry"

out=$(ferry run pf_forge --output json 2>&1)
contains "a forged pgroup of group 1 crashes the attempt" "$out" "CRASHED"
contains "naming the broken protocol" "$out" "worker broke the message protocol: bad \\\"pgroup\\\" message: \\\"pgid\\\" is out of range"
t_done
