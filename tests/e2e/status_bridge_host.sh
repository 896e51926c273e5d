#!/usr/bin/env bash
# The no-host warning of create queue-item reads only the item's bridge's hosts
# (store_bridge_host): an alive host of that bridge silences it even when a stopped one was
# seen later, a host of another bridge does not, and among stale hosts it names the one last
# seen.
. "$(dirname "$0")/../lib.sh"
unset FERRY_NO_HOST_WARNING # lib.sh's: the warning is what this file tests

write_config
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops m1
ferry create bridge local-region far >/dev/null
create() { ferry create queue-item Ops m1 local --vault '{"function":"fx_noop"}' 2>&1 >/dev/null; }
host() { # host_id bridge last_seen_ms stopped_ms|NULL
    sqlite3 "$T_DIR/ferry.db" "INSERT INTO hosts (host_id, bridge_name, version, started_at,
        last_seen_at, running, stopped_at) VALUES ('$1', '$2', 'v', $3, $3, 0, $4)"
}
now=$(date +%s%3N)

host h-far "far" "$now" NULL
host h-old "local" $((now - 300000)) NULL
host h-new "local" $((now - 120000)) NULL
host h-older "local" $((now - 600000)) $((now - 600000))
eq "stale hosts only: the warning names the one last seen" "$(create)" \
    "ferry: warning: no host is serving bridge local (last seen 2 min ago: h-new, no heartbeat since); the item waits until one starts: ferry serve / systemctl start ferry"

host h-stopped "local" "$now" "$now"
contains "a stopped host seen later is named, stopped" "$(create)" "(last seen 0 s ago: h-stopped, stopped)"

host h-live "local" $((now - 5000)) NULL
eq "an alive host of the bridge, seen before a stopped one: no warning" "$(create)" ""
t_done
