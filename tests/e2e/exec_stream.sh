#!/usr/bin/env bash
# The streaming exec service (ABI 1.2: ferry_host.exec_start / exec_wait, issue 15 point 1),
# on the local machine and over real OpenSSH on loopback, logging in as a separate
# unprivileged user with key authentication and a pinned host key (tests/helpers/sshd.sh
# --key-user).
. "$(dirname "$0")/../lib.sh"

SSHD_DIR=$T_DIR/sshd
KEY_USER=ferry-stream
port=$("$FERRY_ROOT/tests/helpers/sshd.sh" start "$SSHD_DIR" --key-user "$KEY_USER") ||
    { fail "sshd starts" "$port"; t_done; exit 1; }
t_cleanup_sshd() { "$FERRY_ROOT/tests/helpers/sshd.sh" stop "$SSHD_DIR"; t_cleanup; }
trap t_cleanup_sshd EXIT
pass "sshd listens on 127.0.0.1:$port"

# --- the fixture: an unprivileged user, key authentication, a pinned host key ---------------
. "$SSHD_DIR/env"
eq "sshd.sh records the port" "$SSHD_PORT" "$port"
eq "... the key user" "$SSHD_USER" "$KEY_USER"
eq "... and its home" "$SSHD_HOME" "/home/$KEY_USER"
eq "the home is the user's own" "$(stat -c '%U %a' "$SSHD_HOME")" "$KEY_USER 755"
printf '[127.0.0.1]:%s %s\n' "$port" "$SSHD_HOST_KEY" >"$T_DIR/known_hosts"
kssh() { # kssh USER COMMAND: logs in with the client key, the host key pinned
    ssh -F /dev/null -i "$SSHD_DIR/client_key" -p "$port" -o BatchMode=yes -o IdentitiesOnly=yes \
        -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$T_DIR/known_hosts" "$1@127.0.0.1" "$2"
}
eq "the key user logs in with the key and the pinned host key" \
    "$(kssh "$KEY_USER" 'id -un; id -u; echo $HOME' 2>&1 | tr '\n' ' ')" "$KEY_USER $(id -u "$KEY_USER") /home/$KEY_USER "
[[ $(id -u "$KEY_USER") -ne 0 ]] && pass "it is not root" || fail "it is not root"
eq "root still logs in with the key" "$(kssh root 'id -un' 2>&1)" root
printf '[127.0.0.1]:%s %s\n' "$port" "$(ssh-keygen -y -f "$SSHD_DIR/client_key")" >"$T_DIR/known_hosts"
contains "a host key that is not the pinned one is refused" "$(kssh "$KEY_USER" true 2>&1)" \
    "Host key verification failed"
printf '[127.0.0.1]:%s %s\n' "$port" "$SSHD_HOST_KEY" >"$T_DIR/known_hosts"

t_done
