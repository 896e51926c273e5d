#!/usr/bin/env bash
# Issue 17, point 3: a machine's ssh_options that run commands or load code on the bridge
# (ProxyCommand, LocalCommand, PermitLocalCommand, KnownHostsCommand, Match exec, Include,
# PKCS11Provider, SecurityKeyProvider, XAuthLocation), in any case and in the "=" or space
# form, are refused with a one-line error before ssh runs, unless the config sets
# ssh.allow_command_options; a ProxyJump must be plain hops.
. "$(dirname "$0")/../lib.sh"

write_config 'timeouts = { default = 30; grace = 1; };' 'retry = { max_retries = 0; };' \
    'lease = { poll_ms = 100; };' 'workers = { count = 4; };'
install_plugins
ferry create region r1 >/dev/null
ferry create bridge r1 local >/dev/null
ferry create team Ops >/dev/null
ssh-keygen -q -t ed25519 -N '' -f "$T_DIR/key" >/dev/null
M=$T_DIR/marker
# machine NAME OPTION: an SSH machine (nothing listens on its port) with one ssh option.
machine() {
    local v
    v=$(jq -n --arg k "$(cat "$T_DIR/key")" --arg o "$2" \
        '{ip:"127.0.0.1", user:"root", ssh_port:9, connect_timeout:2, SSH_PRIVATE_KEY:$k, ssh_options:[$o]}')
    ferry create machine Ops local "$1" --vault "$v" >/dev/null
}
opts=("ProxyCommand=touch $M.1"
    "proxycommand sh -c 'x=1; touch $M.2'"
    "  PROXYCOMMAND = touch $M.3"
    "LocalCommand=touch $M.4"
    "PermitLocalCommand=yes"
    "KnownHostsCommand=/bin/touch $M.5"
    "Match exec \"x=1 touch $M.6\""
    "Include=$T_DIR/evil.conf"
    "PKCS11Provider=$T_DIR/evil.so"
    "SecurityKeyProvider=$T_DIR/evil.so"
    "XAuthLocation=$T_DIR/evil"
    "\"ProxyCommand\"=touch $M.7"
    "ProxyJump=-oProxyCommand=touch$M.8"
    "ProxyJump=a@b:22,c;touch $M.9")
for i in "${!opts[@]}"; do machine "m$i" "${opts[$i]}"; done
machine ok "ProxyJump=jump@127.0.0.1:9"
start_host || { t_done; exit 1; }

q() { ferry create queue-item Ops "$1" local --vault '{"function":"script","script":"true"}' --output json | jq -r '.data[0].taskId'; }
err() { ferry list queue --task-id "$1" --output json | jq -r '.data[0].responseVault.error.message'; }
declare -A task
for i in "${!opts[@]}"; do task[$i]=$(q "m$i"); done
tok=$(q ok)
for i in "${!opts[@]}"; do
    o=${opts[$i]}
    check "'$o': the item fails" wait_status "${task[$i]}" FAILED 30
    e=$(err "${task[$i]}")
    case $o in
    ProxyJump*) contains "'$o': refused as a bad ProxyJump" "$e" "ssh_options ProxyJump must be [user@]host[:port] hops" ;;
    \"*) contains "'$o': refused as not an option" "$e" "ssh_options must be a short list" ;;
    *) contains "'$o': refused, saying how to allow it" "$e" "is refused: it runs commands or loads code on the bridge (set ssh = { allow_command_options = true; }" ;;
    esac
    eq "'$o': one line" "$(wc -l <<<"$e")" 1
done
check "a plain ProxyJump is not refused (ssh runs and fails to connect)" wait_status "$tok" FAILED 30
not_contains "... and its error is ssh's, not a refusal" "$(err "$tok")" "ssh_options"
eq "no refused option ran a command on the bridge" "$(ls "$T_DIR" | grep -c '^marker')" 0
stop_host

# With ssh.allow_command_options = true the admin's choice stands: ProxyCommand runs.
write_config 'timeouts = { default = 30; grace = 1; };' 'retry = { max_retries = 0; };' \
    'lease = { poll_ms = 100; };' 'ssh = { allow_command_options = true; };'
FERRY_SSH_ALLOW_COMMAND_OPTIONS=0 start_host || { t_done; exit 1; }
t=$(q m0)
check "allowed: the item ends" wait_status "$t" FAILED 30
check "allowed: ProxyCommand ran" test -e "$M.1"
stop_host

# The worker's switch comes from the config only, never from the host's environment.
write_config 'timeouts = { default = 30; grace = 1; };' 'retry = { max_retries = 0; };' 'lease = { poll_ms = 100; };'
FERRY_SSH_ALLOW_COMMAND_OPTIONS=1 start_host || { t_done; exit 1; }
t=$(q m1)
check "env set, config not: the item fails" wait_status "$t" FAILED 30
contains "env set, config not: still refused" "$(err "$t")" "is refused"
stop_host
printf 'ssh = { allow_command_options = 1; };\n' >>"$T_DIR/ferry.conf"
contains "allow_command_options must be a boolean" "$(ferry list queue 2>&1)" "ssh.allow_command_options must be true or false"
t_done
