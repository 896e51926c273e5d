#!/usr/bin/env bash
# libm is not linked (issue 14, point 7): SQLite's SQL math functions and the host's retry
# policy load it on their first call (host/base/lazy_m.c), so a create queue-item, which
# calls neither, starts without mapping and relocating it.
. "$(dirname "$0")/../lib.sh"

write_config
install_plugins
setup_local_machine Ops box1
eq "the binary does not link libm" "$(readelf -d "$FERRY_BIN" | grep -c 'NEEDED.*libm\.so')" 0
ferry create queue-item Ops box1 local --vault '{"function":"hello"}' >/dev/null 2>&1 # caches the descriptors
loaded=$(LD_DEBUG=files ferry create queue-item Ops box1 local --vault '{"function":"hello"}' 2>&1 >/dev/null)
contains "create queue-item: the loader's trace is there" "$loaded" "file=libjansson"
# (A SAN=1 build maps it for the sanitizers' runtime: "needed by …/libasan.so".)
eq "... and maps no libm for ferry" \
    "$(grep -E 'file=libm\.so.*(needed|loaded) by' <<<"$loaded" | grep -cv 'needed by .*/lib[a-z]*san\.so')" 0
t_done
