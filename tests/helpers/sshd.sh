#!/usr/bin/env bash
# An OpenSSH server for tests, on 127.0.0.1 only, with its own host key, configuration and
# authorized_keys in a directory of the caller's choosing. Runs as root (sshd needs it to
# switch users; tests log in as root).
#
#   sshd.sh start DIR   generates DIR/host_key, DIR/client_key (+ .pub, authorized in
#                       DIR/authorized_keys), writes DIR/sshd_config, starts sshd on a free
#                       port, waits until it accepts connections and prints the port.
#                       DIR/sshd.pid holds the server's pid, DIR/sshd.log its log.
#   sshd.sh start DIR --password-user USER PASSWORD
#                       also lets USER (a local account, created when missing, its password
#                       set to PASSWORD) log in with a password; root stays key-only.
#   sshd.sh restart DIR starts the server of DIR again with the same configuration and port
#                       (after a stop, or after a test killed it), and waits for it.
#   sshd.sh stop DIR    stops the server started in DIR (by its pid file) and waits for it.
#
# Exits non-zero with a reason on stderr when the server cannot be started.
set -euo pipefail

usage="usage: sshd.sh start|restart|stop DIR [--password-user USER PASSWORD]"
cmd=${1:?$usage}
dir=${2:?$usage}
password_user=
password=
if [[ ${3:-} == --password-user ]]; then
    password_user=${4:?$usage}
    password=${5:?$usage}
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

accepts() { # accepts PORT: true when something answers with an SSH banner
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 4 <&3" 2>/dev/null | grep -q '^SSH-'
}

start() {
    [[ $(id -u) -eq 0 ]] || { echo "sshd.sh: must run as root" >&2; exit 1; }
    local sshd
    sshd=$(command -v sshd || echo /usr/sbin/sshd)
    [[ -x $sshd ]] || { echo "sshd.sh: no sshd (apt-get install openssh-server)" >&2; exit 1; }
    mkdir -p "$dir"
    chmod 700 "$dir"
    # The privilege separation directory sshd was built with; Debian's is /run/sshd.
    [[ -d /run/sshd ]] || install -d -m 0755 /run/sshd
    [[ -f $dir/host_key ]] || ssh-keygen -q -t ed25519 -N '' -C ferry-test-host -f "$dir/host_key"
    [[ -f $dir/client_key ]] || ssh-keygen -q -t ed25519 -N '' -C ferry-test-client -f "$dir/client_key"
    cp "$dir/client_key.pub" "$dir/authorized_keys"
    chmod 600 "$dir/authorized_keys"
    local password_auth=no
    if [[ -n $password_user ]]; then
        id -u "$password_user" >/dev/null 2>&1 ||
            useradd -M -d / -s /bin/sh -c "ferry tests (sshd.sh)" "$password_user" ||
            { echo "sshd.sh: cannot create user $password_user" >&2; exit 1; }
        printf '%s:%s\n' "$password_user" "$password" | chpasswd ||
            { echo "sshd.sh: cannot set the password of $password_user" >&2; exit 1; }
        password_auth=yes
    fi
    local attempt port
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        cat >"$dir/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication $password_auth
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel ERROR
MaxStartups 100:30:200
MaxSessions 100
PrintMotd no
Subsystem sftp internal-sftp
EOF
        if launch "$sshd" "$port"; then
            echo "$port" >"$dir/port"
            echo "$port"
            return 0
        fi
    done
    echo "sshd.sh: sshd did not start; its log:" >&2
    cat "$dir/sshd.log" >&2 2>/dev/null || true
    exit 1
}

launch() { # launch SSHD PORT: starts sshd with DIR's config; true once it answers on PORT
    "$1" -f "$dir/sshd_config" -D -E "$dir/sshd.log" </dev/null >/dev/null 2>&1 &
    echo $! >"$dir/sshd.pid"
    local end=$((SECONDS + 10))
    while ((SECONDS < end)); do
        accepts "$2" && return 0
        kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null || break
        sleep 0.1
    done
    kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
    return 1
}

restart() {
    [[ -f $dir/sshd_config && -f $dir/port ]] || { echo "sshd.sh: nothing started in $dir yet" >&2; exit 1; }
    local sshd port end
    sshd=$(command -v sshd || echo /usr/sbin/sshd)
    port=$(cat "$dir/port")
    # The port may linger for a moment after the previous server died.
    end=$((SECONDS + 10))
    while ((SECONDS < end)); do
        if launch "$sshd" "$port"; then
            echo "$port"
            return 0
        fi
        sleep 0.2
    done
    echo "sshd.sh: sshd did not restart on port $port; its log:" >&2
    cat "$dir/sshd.log" >&2 2>/dev/null || true
    exit 1
}

stop() {
    [[ -f $dir/sshd.pid ]] || return 0
    local pid
    pid=$(cat "$dir/sshd.pid")
    kill "$pid" 2>/dev/null || true
    local end=$((SECONDS + 5))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/sshd.pid"
}

case $cmd in
start) start ;;
restart) restart ;;
stop) stop ;;
*) echo "$usage" >&2; exit 2 ;;
esac
