#!/usr/bin/env bash
# SSH host keys trusted on first use (issue 17, point 4), against the real loopback sshd:
# a machine without pins records the server's key in ferry's known_hosts beside the store
# (0600) at its first connection, several first connections at once leave whole lines, later
# connections check against it, a changed host key (the fixture restarted on the same port
# with another key) fails with one line naming the fix, the fix works, and pinned keys
# (host_public_key) still win over the file in both directions.
. "$(dirname "$0")/../lib.sh"

SSHD=$FERRY_ROOT/tests/helpers/sshd.sh
SSHD_DIR=$T_DIR/sshd
port=$("$SSHD" start "$SSHD_DIR" --key-user ferrykh) || { fail "sshd starts" "$port"; t_done; exit 1; }
t_cleanup_sshd() { "$SSHD" stop "$SSHD_DIR"; t_cleanup; }
trap t_cleanup_sshd EXIT
trap 'exit 143' TERM INT
pass "sshd listens on 127.0.0.1:$port"

write_config 'timeouts = { default = 30; grace = 1; };' 'retry = { max_retries = 0; };' \
    'lease = { poll_ms = 100; };' 'workers = { count = 4; };'
install_plugins
KH=$T_DIR/known_hosts # beside the store, $T_DIR/ferry.db
KEY=$(cat "$SSHD_DIR/client_key")
OLD_HOST_KEY=$(cat "$SSHD_DIR/host_key.pub")
ferry create region r1 >/dev/null && ferry create bridge r1 local >/dev/null && ferry create team Ops >/dev/null
base=$(jq -n --argjson p "$port" --arg k "$KEY" '{ip:"127.0.0.1", user:"ferrykh", ssh_port:$p, SSH_PRIVATE_KEY:$k}')
for m in m1 m2 m3; do ferry create machine Ops local $m --vault "$base" >/dev/null; done
ferry create machine Ops local pinned-old --vault "$(jq --arg h "$OLD_HOST_KEY" '. + {host_public_key:$h}' <<<"$base")" >/dev/null
start_host

q() { ferry create queue-item Ops "$1" local --vault '{"function":"hello"}' --output json | jq -r '.data[0].taskId'; }
st() { task_status "$1"; }
msg() { ferry list queue --task-id "$1" --output json | jq -r '.data[0].responseVault.error.message // empty'; }
done_() { [[ $(st "$1") == COMPLETED || $(st "$1") == FAILED ]]; }
run() { local t; t=$(q "$1"); wait_for 60 done_ "$t"; echo "$t"; }

# --- first use: three machines of one address at once record the key ------------------------
t1=$(q m1) t2=$(q m2) t3=$(q m3)
for t in $t1 $t2 $t3; do wait_for 60 done_ "$t"; eq "a first connection succeeds ($t)" "$(st "$t")" COMPLETED; done
eq "ferry's known_hosts is private" "$(stat -c %a "$KH" 2>&1)" 600
blob=$(cut -d' ' -f2 <<<"$OLD_HOST_KEY")
contains "it holds the server's key for [127.0.0.1]:port" "$(cat "$KH")" "[127.0.0.1]:$port ssh-ed25519 $blob"
bad=$(grep -cv "^\[127.0.0.1\]:$port ssh-ed25519 $blob\$" "$KH")
eq "every line is whole (concurrent first connections)" "$bad" 0
check "ssh-keygen reads the file" ssh-keygen -F "[127.0.0.1]:$port" -f "$KH"
lines=$(wc -l <"$KH")

# --- later use: checked against the file -------------------------------------------------------
t=$(run m1)
eq "a later connection succeeds" "$(st "$t")" COMPLETED
eq "and records nothing more" "$(wc -l <"$KH")" "$lines"
t=$(run pinned-old)
eq "a pinned machine works" "$(st "$t")" COMPLETED

# --- the server's key changes (same port) ------------------------------------------------------
"$SSHD" stop "$SSHD_DIR"
rm -f "$SSHD_DIR/host_key" "$SSHD_DIR/host_key.pub"
ssh-keygen -q -t ed25519 -N '' -C ferry-test-host-2 -f "$SSHD_DIR/host_key"
"$SSHD" restart "$SSHD_DIR" >/dev/null || fail "sshd restarts with another host key"
NEW_HOST_KEY=$(cat "$SSHD_DIR/host_key.pub")
ferry create machine Ops local pinned-new --vault "$(jq --arg h "$NEW_HOST_KEY" '. + {host_public_key:$h}' <<<"$base")" >/dev/null
t=$(run m2)
eq "a changed host key fails the attempt" "$(st "$t")" FAILED
m=$(msg "$t")
contains "the message names the machine" "$m" "(machine m2)"
contains "and says the key changed since first use" "$m" "host key changed since ferry recorded it"
contains "and gives the fix" "$m" "ssh-keygen -R '[127.0.0.1]:$port' -f $KH"
eq "in one line" "$(wc -l <<<"$m")" 1
eq "the file is unchanged" "$(wc -l <"$KH")" "$lines"
t=$(run pinned-new)
eq "a pin of the new key wins over the file" "$(st "$t")" COMPLETED
t=$(run pinned-old)
eq "a pin of the old key fails" "$(st "$t")" FAILED
contains "with the pin's message" "$(msg "$t")" "pinned by the machine's known_hosts or host_public_key"

# --- the fix: forget the old key, the next connection records the new one --------------------
check "the fix in the message runs" ssh-keygen -R "[127.0.0.1]:$port" -f "$KH"
t=$(run m3)
eq "the next connection succeeds" "$(st "$t")" COMPLETED
contains "and records the new key" "$(cat "$KH")" "$(cut -d' ' -f2 <<<"$NEW_HOST_KEY")"
not_contains "the old key is gone" "$(cat "$KH")" "$blob"
eq "the file stays private" "$(stat -c %a "$KH")" 600
chmod 644 "$KH"
t=$(run m1)
eq "a file found readable by others is used" "$(st "$t")" COMPLETED
eq "and made private again" "$(stat -c %a "$KH")" 600
t_done
