#!/usr/bin/env bash
# The exec service over SSH (issue 7, points 1 and 7): a real sshd on 127.0.0.1 with a
# generated key; output, exit codes, stdin, env, cwd, the output cap; a timeout, a cancel and
# a job timeout stop the remote command too; the key comes from the machine or the team
# vault, never touches a disk and never shows in a trace or log; host keys can be pinned;
# connection failures are clear. hello and log_message work on the SSH machine as locally.
. "$(dirname "$0")/../lib.sh"

SSHD_DIR=$T_DIR/sshd
port=$("$FERRY_ROOT/tests/helpers/sshd.sh" start "$SSHD_DIR") || { fail "sshd starts" "$port"; t_done; exit 1; }
t_cleanup_sshd() { "$FERRY_ROOT/tests/helpers/sshd.sh" stop "$SSHD_DIR"; t_cleanup; }
trap t_cleanup_sshd EXIT
pass "sshd listens on 127.0.0.1:$port"

# A probe plugin: fx_exec runs a command through the exec service and returns its result;
# fx_machine returns what the machine service gives a plugin.
write_config 'timeouts = { default = 30; grace = 1; };' 'retry = { max_retries = 0; };' \
    'lease = { poll_ms = 100; };' 'workers = { count = 4; };'
install_plugins
cat >"$T_DIR/fx_exec.c" <<'EOF'
#include <ferry/plugin.h>
static ferry_result fx_exec(ferry_ctx *ctx, const json_t *p, json_t **r)
{
    json_t *res = ferry_exec(ctx, json_string_value(json_object_get(p, "command")),
                             json_object_get(p, "options"));
    if (res == NULL)
        return FERRY_FAIL; /* the exec service set the error */
    *r = res;
    if (ferry_cancelled(ctx)) {
        ferry_set_error(ctx, "cancelled", "stopped");
        return FERRY_FAIL;
    }
    return FERRY_OK;
}
static ferry_result fx_machine(ferry_ctx *ctx, const json_t *p, json_t **r)
{
    (void)p;
    *r = ctx->host->machine(ctx);
    return FERRY_OK;
}
static const ferry_param exec_params[] = {
    {"command", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL, "command"},
    {"options", FERRY_PARAM_OBJECT, 0, NULL, "exec options"},
    {NULL, 0, 0, NULL, NULL}};
static const ferry_function def_exec = {FERRY_FUNCTION_INIT, .name = "fx_exec",
                                        .summary = "exec", FERRY_PARAMS(exec_params),
                                        .run = fx_exec};
static const ferry_function def_machine = {FERRY_FUNCTION_INIT, .name = "fx_machine",
                                           .summary = "machine", .run = fx_machine};
static const ferry_function *const fns[] = {&def_exec, &def_machine, NULL};
FERRY_PLUGIN(.name = "fxexec", .version = "1", .summary = "exec probes", .functions = fns)
EOF
san=(); [[ ${SAN:-0} == 1 ]] && san=(-fsanitize=address,undefined)
${CC:-cc} -std=gnu11 -O1 -fPIC -fvisibility=hidden -shared -Wall -Wextra -Werror "${san[@]}" \
    -I"$FERRY_ROOT/sdk/include" -o "$T_DIR/plugins/fxexec.so" "$T_DIR/fx_exec.c" -ljansson &&
    chmod 644 "$T_DIR/plugins/fxexec.so" || fail "the probe plugin builds"

# Keys: the machine's own, the team's (stored base64, as some tools do), and one sshd does
# not know. Their files are deleted once they are in the vaults: nothing may need them on disk.
ssh-keygen -q -t ed25519 -N '' -C machine-key -f "$T_DIR/mkey"
ssh-keygen -q -t ed25519 -N '' -C team-key -f "$T_DIR/tkey"
ssh-keygen -q -t ed25519 -N '' -C stranger -f "$T_DIR/skey"
cat "$T_DIR/mkey.pub" "$T_DIR/tkey.pub" >>"$SSHD_DIR/authorized_keys"
MKEY=$(cat "$T_DIR/mkey"); TKEY_B64=$(base64 -w0 "$T_DIR/tkey"); SKEY=$(cat "$T_DIR/skey")
KEY_LINE=$(sed -n 4p "$T_DIR/mkey")   # a line of the private part, to look for leaks
rm -f "$T_DIR/mkey" "$T_DIR/tkey" "$T_DIR/skey"
HOST_KEY=$(cat "$SSHD_DIR/host_key.pub")
OTHER_HOST_KEY=$(cat "$T_DIR/skey.pub")

ferry create region r1 >/dev/null
ferry create bridge r1 local >/dev/null
ferry create team Ops --vault "$(jq -n --arg k "$TKEY_B64" '{SSH_PRIVATE_KEY: $k}')" >/dev/null
machine() { # machine TEAM NAME JSON
    ferry create machine "$1" local "$2" --vault "$3" >/dev/null || fail "create machine $2"
}
base=$(jq -n --argjson p "$port" --arg d "$T_DIR/ds" '{ip:"127.0.0.1", user:"root", ssh_port:$p, datastore:$d}')
machine Ops here '{"connection":"local"}'
machine Ops remote "$(jq --arg k "$MKEY" '. + {SSH_PRIVATE_KEY: $k}' <<<"$base")"
machine Ops remote2 "$(jq --arg k "$MKEY" '. + {SSH_PRIVATE_KEY: $k}' <<<"$base")"
machine Ops remote3 "$(jq --arg k "$MKEY" '. + {SSH_PRIVATE_KEY: $k}' <<<"$base")"
machine Ops teamkey "$base"
machine Ops stranger "$(jq --arg k "$SKEY" '. + {SSH_PRIVATE_KEY: $k}' <<<"$base")"
machine Ops pinned "$(jq --arg k "$MKEY" --arg h "$HOST_KEY" '. + {SSH_PRIVATE_KEY: $k, host_public_key: $h}' <<<"$base")"
machine Ops mitm "$(jq --arg k "$MKEY" --arg h "$OTHER_HOST_KEY" '. + {SSH_PRIVATE_KEY: $k, host_public_key: $h}' <<<"$base")"
closed=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
machine Ops closed "$(jq --arg k "$MKEY" --argjson p "$closed" '. + {SSH_PRIVATE_KEY: $k, ssh_port: $p}' <<<"$base")"
start_host

# lib.sh's wait_status reads the status once; this one polls it.
status_is() { [[ $(task_status "$1") == "$2" ]]; }
wait_st() { wait_for "${3:-20}" status_is "$1" "$2"; }
q() { # q TEAM MACHINE VAULT: prints the task id
    ferry create queue-item "$1" "$2" local --vault "$3" --output json | jq -r '.data[0].taskId'
}
qexec() { # qexec MACHINE COMMAND [OPTIONS_JSON [EXTRA_VAULT_JSON]]
    q Ops "$1" "$(jq -n --arg c "$2" --argjson o "${3:-{\}}" --argjson x "${4:-{\}}" \
        '{function:"fx_exec", command:$c, options:$o} + $x')"
}
res() { ferry list queue --task-id "$1" --output json | jq -c '.data[0].responseVault'; }
result() { ferry list queue --task-id "$1" --output json | jq -r ".data[0].responseVault.result${2:-}"; }
trace() { ferry queue trace "$1" --output json | jq -r '.data.timeline[] | "\(.action) \(.details)"'; }

# --- hello and log_message, local and remote ----------------------------------------------
h_local=$(q Ops here '{"function":"hello"}')
h_remote=$(q Ops remote '{"function":"hello","name":"ops"}')
l_remote=$(q Ops remote2 '{"function":"log_message","message":"remote note 42"}')
wait_st "$h_local" COMPLETED 15 && wait_st "$h_remote" COMPLETED 15 && wait_st "$l_remote" COMPLETED 15
eq "hello on the local machine" "$(result "$h_local" .hostname)" "$(hostname)"
eq "hello on the SSH machine runs hostname over SSH" "$(result "$h_remote" .message)" "hello, ops from $(hostname)"
eq "log_message on the SSH machine" "$(result "$l_remote" .message)" "remote note 42"
contains "its message is in the trace" "$(trace "$l_remote")" "remote note 42"

# --- output, exit code, duration ------------------------------------------------------------
t=$(qexec remote 'echo out; echo err >&2; sleep 0.2; exit 3')
wait_st "$t" COMPLETED 15
r=$(res "$t")
eq "the remote exit code comes back" "$(jq -r .result.exit_code <<<"$r")" 3
eq "stdout and stderr are captured" "$(jq -r .result.output <<<"$r")" $'out\nerr'
(( $(jq -r .result.duration_ms <<<"$r") >= 200 )) && pass "the duration is measured" || fail "the duration is measured" "$r"
eq "not truncated" "$(jq -r .result.truncated <<<"$r")" false

# The remote command's stderr and stdout are one stream on the machine (as a local command's
# are), so the output keeps the order it was written in: SSH's two channels would not.
t=$(qexec remote 'readlink /proc/$$/fd/1; readlink /proc/$$/fd/2; printf "e1 " >&2; printf "o1 "; printf "e2" >&2')
wait_st "$t" COMPLETED 15
fds=$(result "$t" .output)
one=$(sed -n 1p <<<"$fds") two=$(sed -n 2p <<<"$fds")
eq "stdout and stderr of a remote command are the same pipe" "$two" "$one"
eq "... so interleaved writes keep their order" "$(sed -n 3p <<<"$fds")" "e1 o1 e2"

t=$(qexec remote 'exit 255')
wait_st "$t" COMPLETED 15
eq "a command that exits 255 is not taken for an SSH failure" "$(result "$t" .exit_code)" 255

t=$(qexec remote 'cat; echo "[$FOO] $(pwd)"' "$(jq -n '{stdin: "line one\nline '"'"'two'"'"'\n", env: {FOO: "a b'"'"'c $HOME"}, cwd: "/tmp"}')")
wait_st "$t" COMPLETED 15
eq "stdin, env and cwd reach the remote command" "$(result "$t" .output)" $'line one\nline \'two\'\n[a b\'c $HOME] /tmp'

t=$(qexec remote 'head -c 200000 /dev/zero | tr "\0" x; echo done >&2' '{"max_output": 1000}')
wait_st "$t" COMPLETED 15
eq "output is capped at max_output" "$(result "$t" '.output | length')" 1000
eq "and flagged truncated" "$(result "$t" .truncated)" true

t=$(qexec remote 'cat >/dev/null; echo read it all' "$(jq -n --arg s "$(head -c 100000 /dev/zero | tr '\0' y)" '{stdin: $s}')")
wait_st "$t" COMPLETED 20
eq "a large stdin is fed without a deadlock" "$(result "$t" .output)" "read it all"

# --- stopping the remote command ---------------------------------------------------------------
gone() { ! kill -0 "$1" 2>/dev/null; }
pidfile=$T_DIR/remote.pid
t=$(qexec remote "echo \$\$ >$pidfile; sleep 300 & sleep 300" '{"timeout": 2}')
wait_st "$t" COMPLETED 20
eq "the exec timeout ends the command" "$(result "$t" .timed_out)" true
rpid=$(cat "$pidfile" 2>/dev/null)
[[ -n $rpid ]] && wait_for 6 gone "$rpid" && pass "the remote process is gone after the exec timeout" ||
    fail "the remote process is gone after the exec timeout" "pid $rpid: $(ps -o pid,pgid,cmd -p "$rpid" 2>&1)"
eq "its background children too" "$(pgrep -f "sleep 300" -s "$rpid" 2>/dev/null | wc -l)" 0

rm -f "$pidfile"
t=$(qexec remote3 "echo \$\$ >$pidfile; exec sleep 300")
wait_for 15 test -s "$pidfile"
rpid=$(cat "$pidfile" 2>/dev/null)
ferry queue cancel "$t" >/dev/null
wait_st "$t" CANCELLED 15
eq "a cancelled job ends CANCELLED" "$(task_status "$t")" CANCELLED
[[ -n $rpid ]] && wait_for 6 gone "$rpid" && pass "the remote process is gone after a cancel" ||
    fail "the remote process is gone after a cancel" "pid $rpid"

rm -f "$pidfile"
t=$(qexec remote2 "echo \$\$ >$pidfile; exec sleep 300" '{}' '{"timeout": 2}')
wait_st "$t" FAILED 20
contains "a job timeout fails the job" "$(res "$t" | jq -r .error.outcome)" TIMEOUT
rpid=$(cat "$pidfile" 2>/dev/null)
[[ -n $rpid ]] && wait_for 6 gone "$rpid" && pass "the remote process is gone after the job timeout" ||
    fail "the remote process is gone after the job timeout" "pid $rpid"

# --- keys -------------------------------------------------------------------------------------
t=$(qexec teamkey 'echo team key works')
wait_st "$t" COMPLETED 15
eq "without a machine key the team's SSH_PRIVATE_KEY (base64) is used" "$(result "$t" .output)" "team key works"

t=$(qexec remote "sleep 5; echo done")
wait_st "$t" PROCESSING 10
wait_for 5 bash -c "ps -eo args | grep -F -- '-p $port' | grep -qv grep"
sshline=$(ps -eo args | grep -F -- "-p $port" | grep -v grep | head -1)
contains "ssh reads the key from an in-memory file" "$sshline" "-i /proc/"
key_held() { # no grep -q in a pipe here: pipefail would see ls killed by SIGPIPE
    local fds; fds=$(for w in $(pgrep -P "$HOST_PID"); do ls -l "/proc/$w/fd" 2>/dev/null; done)
    [[ $fds == *memfd:ferry-ssh-key* ]]
}
key_held && pass "a worker holds it in a memfd" || fail "a worker holds it in a memfd"
# The store holds the vault (that is where it lives); no other file may.
leaks=$(grep -rlsF -- "$KEY_LINE" /tmp /var/tmp /dev/shm 2>/dev/null | grep -v "^$T_DIR/ferry.db" | head -3)
eq "while ssh runs, the key is in no file on disk" "$leaks" ""
wait_st "$t" COMPLETED 20
wait_for 5 bash -c "$(declare -f key_held); HOST_PID=$HOST_PID; ! key_held"
key_held && fail "the in-memory key is gone after the command" || pass "the in-memory key is gone after the command"

t=$(q Ops remote '{"function":"fx_machine"}')
wait_st "$t" COMPLETED 15
m=$(result "$t")
eq "the machine service hides the key" "$(jq -r .SSH_PRIVATE_KEY <<<"$m")" "********"
eq "and never hands out the host's private members" "$(jq -r '[keys[] | select(startswith("_"))] | length' <<<"$m")" 0
eq "it says the machine is remote" "$(jq -r .local <<<"$m")" false

t=$(qexec stranger 'echo should not run')
bad=$(q Ops stranger '{"function":"hello"}')
wait_st "$t" FAILED 20 && wait_st "$bad" FAILED 20
msg=$(res "$t" | jq -r .error.message)
contains "a key sshd does not accept fails with ssh's reason" "$msg" "Permission denied"
contains "naming the machine and address" "$msg" "root@127.0.0.1 port $port (machine stranger)"
eq "hello on an unreachable machine fails (RETRY used up)" "$(task_status "$bad")" FAILED

t=$(qexec closed 'echo x')
wait_st "$t" FAILED 20
contains "a closed port: Connection refused" "$(res "$t" | jq -r .error.message)" "Connection refused"

t=$(qexec pinned 'echo pinned ok')
m=$(qexec mitm 'echo must not run')
wait_st "$t" COMPLETED 15 && wait_st "$m" FAILED 15
eq "a pinned host_public_key that matches connects" "$(result "$t" .output)" "pinned ok"
contains "one that does not is refused" "$(res "$m" | jq -r .error.message)" "Host key verification failed"

all=$(for id in $(ferry list queue --output json | jq -r '.data[].taskId'); do ferry queue trace "$id" --output json; done; cat "$T_DIR/host.log")
not_contains "no trace or log holds the key" "$all" "$KEY_LINE"
not_contains "nor the team's" "$all" "${TKEY_B64:20:40}"

stop_host
t_done
