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
#   sshd.sh start DIR --key-user USER
#                       also lets USER, an unprivileged local account (created when missing,
#                       shell /bin/sh, home /home/USER of its own, mode 0755, owned by USER),
#                       log in with DIR/client_key: the key is authorized in
#                       ~USER/.ssh/authorized_keys (USER's, mode 0600; sshd reads it as USER).
#                       The home is the user's, shared by every test that names the same USER:
#                       put a test's data (its datastore) in a directory of its own under it.
#                       Records DIR/key_user and DIR/key_user_home (one line each).
#
# Every start records DIR/port and DIR/env, a file a test can source:
#   SSHD_PORT=...  SSHD_HOST_KEY='ssh-ed25519 AAAA... ferry-test-host'  SSHD_CLIENT_KEY=DIR/client_key
#   and with --key-user: SSHD_USER=USER  SSHD_HOME=/home/USER
# stdout is the port alone (port=$(sshd.sh start DIR ...)). To pin the host key, a machine's
# vault sets "host_public_key" to the line in DIR/host_key.pub ($SSHD_HOST_KEY); the machine's
# SSH key is "SSH_PRIVATE_KEY": the text of DIR/client_key.
#   sshd.sh restart DIR starts the server of DIR again with the same configuration and port
#                       (after a stop, or after a test killed it), and waits for it.
#   sshd.sh stop DIR    stops the server started in DIR (by its pid file) and waits for it.
#
# Exits non-zero with a reason on stderr when the server cannot be started.
set -euo pipefail

usage="usage: sshd.sh start|restart|stop DIR [--password-user USER PASSWORD] [--key-user USER]"
cmd=${1:?$usage}
dir=${2:?$usage}
shift 2
password_user=
password=
key_user=
while (($#)); do
    case $1 in
    --password-user) password_user=${2:?$usage}; password=${3:?$usage}; shift 3 ;;
    --key-user) key_user=${2:?$usage}; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
    esac
done
[[ -z $key_user || $key_user =~ ^[a-z_][a-z0-9_-]{0,30}$ ]] ||
    { echo "sshd.sh: bad user name $key_user" >&2; exit 2; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# useradd/chpasswd of two tests at once would collide on /etc/passwd's lock: take turns.
locked() { flock /run/ferry-sshd-users.lock "$@"; }

# key_user_setup USER: the account, its own home, and DIR/client_key authorized for it.
key_user_setup() {
    local user=$1 home
    if ! id -u "$user" >/dev/null 2>&1; then
        locked useradd -m -d "/home/$user" -s /bin/sh -c "ferry tests (sshd.sh)" "$user" 2>/dev/null ||
            id -u "$user" >/dev/null 2>&1 ||
            { echo "sshd.sh: cannot create user $user" >&2; exit 1; }
    fi
    [[ $(id -u "$user") -ne 0 ]] || { echo "sshd.sh: $user is root, not an unprivileged user" >&2; exit 1; }
    # useradd leaves the account locked ("!"), which sshd without PAM refuses even for a key:
    # "*" means no password, not locked.
    [[ $(getent shadow "$user" | cut -d: -f2) != '!'* ]] || locked usermod -p '*' "$user" ||
        { echo "sshd.sh: cannot unlock $user" >&2; exit 1; }
    home=$(getent passwd "$user" | cut -d: -f6)
    # An existing account without a home of its own (-d / as --password-user makes) gets one.
    if [[ -z $home || $home == / ]]; then
        home=/home/$user
        locked usermod -d "$home" "$user" || { echo "sshd.sh: cannot set the home of $user" >&2; exit 1; }
    fi
    local group
    group=$(id -gn "$user")
    install -d -m 0755 -o "$user" -g "$group" "$home"
    chmod go-w "$home"
    install -d -m 0700 -o "$user" -g "$group" "$home/.ssh"
    install -m 0600 -o "$user" -g "$group" "$dir/client_key.pub" "$home/.ssh/authorized_keys"
    echo "$user" >"$dir/key_user"
    echo "$home" >"$dir/key_user_home"
}

write_env() { # write_env PORT
    {
        printf 'SSHD_PORT=%s\n' "$1"
        printf 'SSHD_HOST_KEY=%q\n' "$(cat "$dir/host_key.pub")"
        printf 'SSHD_CLIENT_KEY=%q\n' "$dir/client_key"
        if [[ -f $dir/key_user ]]; then
            printf 'SSHD_USER=%q\n' "$(cat "$dir/key_user")"
            printf 'SSHD_HOME=%q\n' "$(cat "$dir/key_user_home")"
        fi
    } >"$dir/env"
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
            locked useradd -M -d / -s /bin/sh -c "ferry tests (sshd.sh)" "$password_user" ||
            id -u "$password_user" >/dev/null 2>&1 ||
            { echo "sshd.sh: cannot create user $password_user" >&2; exit 1; }
        printf '%s:%s\n' "$password_user" "$password" | locked chpasswd ||
            { echo "sshd.sh: cannot set the password of $password_user" >&2; exit 1; }
        password_auth=yes
    fi
    rm -f "$dir/key_user" "$dir/key_user_home"
    [[ -z $key_user ]] || key_user_setup "$key_user"
    local attempt port
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        cat >"$dir/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $dir/host_key
PidFile none
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
        # The key user's own authorized_keys, which sshd reads as that user.
        [[ -z $key_user ]] || printf 'Match User %s\n    AuthorizedKeysFile .ssh/authorized_keys\n' \
            "$key_user" >>"$dir/sshd_config"
        if launch "$sshd" "$port"; then
            echo "$port" >"$dir/port"
            write_env "$port"
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

# The listeners of DIR's config: the pid file's, and any other the file does not name (a
# fresh-clone make check once left a restarted server running, its pid not in the file).
listeners() {
    [[ -f $dir/sshd.pid ]] && cat "$dir/sshd.pid"
    pgrep -f -- "-f $dir/sshd_config " || true
}

stop() {
    local pids
    pids=$(listeners | sort -u)
    [[ -n $pids ]] || return 0
    kill $pids 2>/dev/null || true
    local end=$((SECONDS + 5))
    while kill -0 $pids 2>/dev/null && ((SECONDS < end)); do sleep 0.1; done
    kill -9 $pids 2>/dev/null || true
    rm -f "$dir/sshd.pid"
}

case $cmd in
start) start ;;
restart) restart ;;
stop) stop ;;
*) echo "$usage" >&2; exit 2 ;;
esac
