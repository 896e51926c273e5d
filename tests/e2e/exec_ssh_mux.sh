#!/usr/bin/env bash
# One SSH connection per attempt (issue 15 point 6): the commands of an attempt to an SSH
# machine share one OpenSSH connection (a master with its control socket in a private 0700
# directory of the attempt); real OpenSSH on loopback, two unprivileged users, each with its
# own sshd, key and pinned host key. Checked: one connection for many commands and streams;
# the socket's directory is private, its master serves no other user; the master and the
# directory are gone after the attempt ends, is cancelled, times out or loses its connection,
# and nothing of the user is left running on the far side; a stream stopped in the middle of
# an attempt ends on the far side while the connection stays up; a pinned host key that does
# not match still fails, with no master left.
. "$(dirname "$0")/../lib.sh"

A_DIR=$T_DIR/sshd-a B_DIR=$T_DIR/sshd-b
A_USER=fssh-mux-a B_USER=fssh-mux-b
a_port=$("$FERRY_ROOT/tests/helpers/sshd.sh" start "$A_DIR" --key-user "$A_USER") ||
    { fail "sshd a starts" "$a_port"; t_done; exit 1; }
b_port=$("$FERRY_ROOT/tests/helpers/sshd.sh" start "$B_DIR" --key-user "$B_USER") ||
    { "$FERRY_ROOT/tests/helpers/sshd.sh" stop "$A_DIR"; fail "sshd b starts" "$b_port"; t_done; exit 1; }
t_cleanup_sshd() {
    "$FERRY_ROOT/tests/helpers/sshd.sh" stop "$A_DIR"
    "$FERRY_ROOT/tests/helpers/sshd.sh" stop "$B_DIR"
    t_cleanup
}
trap t_cleanup_sshd EXIT
pass "two sshd listen, for $A_USER on $a_port and $B_USER on $b_port"

write_config 'timeouts = { default = 60; grace = 3; };' 'retry = { max_retries = 0; };' \
    'lease = { poll_ms = 100; };' 'workers = { count = 3; };'
install_plugins
# fx_run: params.steps, an array run in order: {"exec": COMMAND} runs it with host->exec
# (output and exit code kept; "fail": true fails the function when exec fails); {"streams": N, "command": C, "stop": true|false} starts N
# streams of C at once, closes their stdin, then stops them (exec_wait(stop)) or reads each
# to its end. The result: {"outputs": [...], "codes": [...], "ms": total}.
cat >"$T_DIR/fx_run.c" <<'EOF'
#include <ferry/plugin.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

static int64_t ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static ferry_result fx_run(ferry_ctx *ctx, const json_t *p, json_t **r)
{
    json_t *outs = json_array(), *codes = json_array();
    int64_t start = ms();
    size_t i;
    json_t *step;
    json_array_foreach (json_object_get(p, "steps"), i, step) {
        const char *cmd = json_string_value(json_object_get(step, "exec"));
        if (cmd) {
            json_t *res = ferry_exec(ctx, cmd, json_object_get(step, "options"));
            if (res == NULL && json_is_true(json_object_get(step, "fail"))) {
                json_decref(outs);
                json_decref(codes);
                return FERRY_FAIL; /* the exec service set the error */
            }
            if (res == NULL) {
                json_array_append_new(outs, json_string("exec failed"));
                json_array_append_new(codes, json_integer(-1));
                continue;
            }
            json_array_append(outs, json_object_get(res, "output"));
            json_array_append(codes, json_object_get(res, "exit_code"));
            json_decref(res);
            continue;
        }
        int n = (int)json_integer_value(json_object_get(step, "streams"));
        ferry_exec_stream *h[8] = {0};
        int from[8];
        for (int k = 0; k < n && k < 8; k++) {
            int to = -1;
            from[k] = -1;
            h[k] = ctx->host->exec_start(ctx, json_string_value(json_object_get(step, "command")),
                                         NULL, &to, &from[k]);
            if (to >= 0)
                close(to);
        }
        for (int k = 0; k < n && k < 8; k++) {
            char buf[4096];
            if (!json_is_true(json_object_get(step, "stop")))
                while (from[k] >= 0 && read(from[k], buf, sizeof(buf)) > 0)
                    ;
            json_t *res = h[k] ? ctx->host->exec_wait(ctx, h[k], json_is_true(json_object_get(step, "stop"))) : NULL;
            if (from[k] >= 0)
                close(from[k]);
            json_array_append_new(outs, json_string(res ? "stream" : "stream failed"));
            json_array_append_new(codes, res ? json_incref(json_object_get(res, "exit_code")) : json_integer(-1));
            json_decref(res);
        }
    }
    *r = json_pack("{s:o,s:o,s:I}", "outputs", outs, "codes", codes, "ms", (json_int_t)(ms() - start));
    return FERRY_OK;
}
static const ferry_param params[] = {
    {"steps", FERRY_PARAM_ARRAY, FERRY_PARAM_REQUIRED, NULL, "steps"},
    {NULL, 0, 0, NULL, NULL}};
static const ferry_function def_run = {FERRY_FUNCTION_INIT, .name = "fx_run", .summary = "run",
                                       FERRY_PARAMS(params), .run = fx_run};
static const ferry_function *const fns[] = {&def_run, NULL};
FERRY_PLUGIN(.name = "fxmux", .version = "1", .summary = "mux probes", .functions = fns)
EOF
san=(); [[ ${SAN:-0} == 1 ]] && san=(-fsanitize=address,undefined)
${CC:-cc} -std=gnu11 -O1 -fPIC -fvisibility=hidden -shared -Wall -Wextra -Werror "${san[@]}" \
    -I"$FERRY_ROOT/sdk/include" -o "$T_DIR/plugins/fxmux.so" "$T_DIR/fx_run.c" -ljansson &&
    chmod 644 "$T_DIR/plugins/fxmux.so" || fail "the probe plugin builds"

ferry create region r1 >/dev/null && ferry create bridge r1 local >/dev/null && ferry create team Ops >/dev/null
vault() { # vault SSHD_DIR PORT USER [HOST_KEY]
    jq -cn --arg key "$(cat "$1/client_key")" --arg hk "${4:-$(cat "$1/host_key.pub")}" \
        --argjson port "$2" --arg user "$3" \
        '{ip:"127.0.0.1", ssh_port:$port, user:$user, SSH_PRIVATE_KEY:$key, host_public_key:$hk}'
}
ferry create machine Ops local fa --vault "$(vault "$A_DIR" "$a_port" "$A_USER")" >/dev/null
ferry create machine Ops local fb --vault "$(vault "$B_DIR" "$b_port" "$B_USER")" >/dev/null
ferry create machine Ops local fopts --vault "$(vault "$A_DIR" "$a_port" "$A_USER" |
    jq -c --arg p "$T_DIR/shared-%r" '. + {ssh_options: ["ControlMaster=auto", "ControlPath=\($p)", "ControlPersist=600"]}')" >/dev/null
ferry create machine Ops local fmitm --vault "$(vault "$A_DIR" "$a_port" "$A_USER" "$(cat "$B_DIR/host_key.pub")")" >/dev/null
start_host

q() { # q MACHINE STEPS_JSON [EXTRA_JSON]: prints the task id
    ferry create queue-item Ops "$1" local --output json \
        --vault "$(jq -cn --argjson s "$2" --argjson x "${3:-{\}}" '{function:"fx_run", steps:$s} + $x')" |
        jq -r '.data[0].taskId'
}
wait_st() { wait_for "${3:-60}" status_is "$1" "$2"; }
rjson() { ferry list queue --task-id "$1" --output json | jq -c ".data[0].responseVault${2:-.result}"; }
master_pid() { pgrep -f -- "-p $1 .*ControlMaster=yes" | head -1; } # master_pid PORT
control_dir() { tr '\0' '\n' <"/proc/$1/cmdline" | sed -n 's#^ControlPath=\(.*\)/s$#\1#p'; }
masters_gone() { [[ -z $(pgrep -f -- "-p ($a_port|$b_port) .*ControlMaster=yes") ]]; }
user_clear() { [[ -z $(pgrep -u "$1") ]]; } # no process of the remote user is left
# The attempt's sshd session: the parent of the remote wrapper that runs the command.
SESSION='read -r _ _ _ s _ </proc/$PPID/stat; echo $s'

# --- many commands and streams, one connection -------------------------------------------------
steps=$(jq -cn --arg s "$SESSION" '[range(6) | {exec: $s}]')
t=$(q fa "$steps")
wait_st "$t" COMPLETED 60
r=$(rjson "$t")
eq "six commands of one attempt all exit 0" "$(jq -c '.codes' <<<"$r")" '[0,0,0,0,0,0]'
eq "... and all run in one sshd session: one connection" "$(jq -r '.outputs | unique | length' <<<"$r")" 1
echo "# six commands over the shared connection: $(jq -r .ms <<<"$r") ms (the first one logs in)"
wait_for 5 masters_gone && pass "the master is gone after the attempt" || fail "the master is gone after the attempt" "$(pgrep -af ControlMaster)"

# A long attempt: the directory and the master are looked at while it runs.
steps=$(jq -cn '[{exec: "id -un"}, {streams: 4, command: "sleep 3.1; echo x", stop: false}, {exec: "sleep 4; id -un"}]')
t=$(q fa "$steps")
tb=$(q fb '[{"exec": "sleep 3; id -un"}]')
wait_for 30 bash -c "pgrep -f -- '-p $a_port .*ControlMaster=yes' >/dev/null"
m=$(master_pid "$a_port")
d=$(control_dir "$m")
[[ -n $d ]] && pass "the master of the attempt runs ($m), its socket in $d" || fail "the master runs" "$(pgrep -af ControlMaster)"
eq "its directory is private: mode 0700, the worker's user" "$(stat -c '%a %u' "$d")" "700 $(id -u)"
wait_for 10 test -S "$d/s"
eq "... and its socket is the one entry" "$(ls -A "$d")" s
eq "its path is short (a socket's path is at most 107 bytes)" "$(( ${#d} < 60 ))" 1
wait_for 10 bash -c "[[ \$(pgrep -u $A_USER -f '^sleep 3[.]1' | wc -l) -ge 4 ]]"
eq "four streams at once over one connection: one sshd session of the user" \
    "$(pgrep -u "$A_USER" -f "^sshd: $A_USER" | wc -l)" 1
contains "another user cannot reach the socket" \
    "$(runuser -u "$B_USER" -- ssh -F /dev/null -o ControlPath="$d/s" -O check x 2>&1)" "ermission denied"
mb=$(master_pid "$b_port")
[[ -n $mb && $mb != "$m" && $(control_dir "$mb") != "$d" ]] &&
    pass "another machine's attempt at the same time has its own master and directory" ||
    fail "another machine's attempt has its own master" "$m $mb"
wait_st "$tb" COMPLETED 30
eq "... and runs as its own user" "$(rjson "$tb" .result.outputs)" "[\"$B_USER\\n\"]"
wait_st "$t" COMPLETED 60
eq "the long attempt: its commands and streams all end well" "$(rjson "$t" .result.codes)" '[0,0,0,0,0,0]'
eq "... as its own user" "$(rjson "$t" .result.outputs | jq -r '.[0] + .[5]')" "$A_USER"$'\n'"$A_USER"
wait_for 5 masters_gone && pass "both masters are gone after the attempts" || fail "both masters are gone" "$(pgrep -af ControlMaster)"
[[ ! -e $d ]] && pass "... and the socket's directory too" || fail "the socket's directory is gone" "$(ls -la "$d")"
wait_for 8 user_clear "$A_USER" && pass "nothing of $A_USER is left on the far side" || fail "nothing of $A_USER is left" "$(pgrep -a -u "$A_USER")"

# --- a stream stopped mid-attempt ends on the far side while the connection stays up ------------
steps=$(jq -cn '[{exec: "true"}, {streams: 1, command: "exec sleep 3151", stop: true}, {exec: "sleep 6; echo done"}]')
t=$(q fa "$steps")
wait_for 20 bash -c "pgrep -f -- '-p $a_port .*ControlMaster=yes' >/dev/null && pgrep -u $A_USER -f 'sleep 6' >/dev/null"
m=$(master_pid "$a_port")
[[ -n $m ]] && pass "the attempt goes on over its connection" || fail "the attempt goes on over its connection"
none_3151() { [[ -z $(pgrep -u "$A_USER" -f "sleep 315[1]") ]]; }
wait_for 5 none_3151 && pass "a stopped stream's command is gone from the far side during the attempt" ||
    fail "a stopped stream's command is gone during the attempt" "$(pgrep -a -u "$A_USER")"
eq "... the attempt still runs" "$(task_status "$t")" PROCESSING
wait_st "$t" COMPLETED 30
eq "... and ends well" "$(rjson "$t" .result.outputs | jq -r '.[2]')" done
wait_for 5 masters_gone && pass "... its master is gone after it" || fail "its master is gone" "$(pgrep -af ControlMaster)"

# --- cancel, the exec timeout, the job's timeout, a dropped connection ---------------------------
t=$(q fa '[{"exec": "true"}, {"exec": "sleep 3152"}]')
wait_for 20 bash -c "pgrep -u $A_USER -f 'sleep 315[2]' >/dev/null"
d=$(control_dir "$(master_pid "$a_port")")
ferry queue cancel "$t" >/dev/null
wait_st "$t" CANCELLED 20
wait_for 8 masters_gone && pass "cancel: the master is gone" || fail "cancel: the master is gone" "$(pgrep -af ControlMaster)"
cancel_dir=$d # gone with the attempt, or with the next master if the worker was killed first
wait_for 8 user_clear "$A_USER" && pass "cancel: nothing of $A_USER is left on the far side" || fail "cancel: nothing left" "$(pgrep -a -u "$A_USER")"

t=$(q fa '[{"exec": "sleep 3153", "options": {"timeout": 2}}, {"exec": "echo after"}]')
wait_st "$t" COMPLETED 30
eq "the exec timeout stops one command; the next runs over the same connection" "$(rjson "$t" .result.outputs | jq -r '.[1]')" after
wait_for 8 masters_gone && pass "... the master is gone after the attempt" || fail "the master is gone" "$(pgrep -af ControlMaster)"
[[ -n $cancel_dir && ! -e $cancel_dir ]] && pass "cancel: its directory is gone" || fail "cancel: its directory is gone" "$cancel_dir"
wait_for 8 user_clear "$A_USER" && pass "... nothing of $A_USER is left on the far side" || fail "nothing left" "$(pgrep -a -u "$A_USER")"

t=$(q fa '[{"exec": "true"}, {"exec": "sleep 3154"}]' '{"timeout": 4}')
wait_for 20 bash -c "pgrep -u $A_USER -f 'sleep 315[4]' >/dev/null"
d=$(control_dir "$(master_pid "$a_port")")
wait_st "$t" FAILED 30
wait_for 8 masters_gone && pass "the job's timeout: the master is gone" || fail "the job's timeout: the master is gone" "$(pgrep -af ControlMaster)"
timeout_dir=$d # its worker was killed: the next master on the bridge removes it
wait_for 8 user_clear "$A_USER" && pass "the job's timeout: nothing of $A_USER is left on the far side" || fail "timeout: nothing left" "$(pgrep -a -u "$A_USER")"

# The connection drops (its sshd session is killed): the running command fails, the next
# ones connect on their own and run; nothing is left afterwards.
t=$(q fa '[{"exec": "true"}, {"exec": "sleep 3155"}, {"exec": "id -un"}, {"exec": "id -un"}]')
wait_for 20 bash -c "pgrep -u $A_USER -f 'sleep 315[5]' >/dev/null"
pkill -KILL -u "$A_USER" -f "^sshd: $A_USER"
wait_st "$t" COMPLETED 30
r=$(rjson "$t")
eq "a dropped connection: the command running then fails, the next ones run on their own connections" \
    "$(jq -c '[.codes[1] != 0, .outputs[2], .outputs[3]]' <<<"$r")" "[true,\"$A_USER\\n\",\"$A_USER\\n\"]"
wait_for 8 masters_gone && pass "... no master is left" || fail "no master is left" "$(pgrep -af ControlMaster)"
[[ -n $timeout_dir && ! -e $timeout_dir ]] &&
    pass "the directory of the worker the job's timeout killed was removed by the next attempt's master" ||
    fail "the killed worker's directory is removed by the next master" "$timeout_dir"
wait_for 8 user_clear "$A_USER" && pass "... nothing of $A_USER is left on the far side" || fail "nothing left" "$(pgrep -a -u "$A_USER")"

# --- the sweep of a killed worker's directories is careful ---------------------------------------
true & dead=$!
wait "$dead"
mkdir -m 700 "/tmp/ferry-ssh.$dead.aAbB12" "/tmp/ferry-ssh.$$.aAbB12" "/tmp/ferry-ssh.$dead.aAbB12x"
mkdir -m 700 "$T_DIR/elsewhere" && ln -s "$T_DIR/elsewhere" "/tmp/ferry-ssh.$dead.sYmLnK"
chown "$A_USER" "$T_DIR/elsewhere"
install -d -m 700 -o "$A_USER" "/tmp/ferry-ssh.$dead.oThEr1"
t=$(q fa '[{"exec": "true"}]')
wait_st "$t" COMPLETED 30
[[ ! -e /tmp/ferry-ssh.$dead.aAbB12 ]] && pass "the sweep removes a directory of a worker that is gone" ||
    fail "the sweep removes a dead worker's directory"
[[ -d /tmp/ferry-ssh.$$.aAbB12 ]] && pass "... not one of a live process" || fail "the sweep leaves a live process's directory"
[[ -d /tmp/ferry-ssh.$dead.aAbB12x && -L /tmp/ferry-ssh.$dead.sYmLnK && -d $T_DIR/elsewhere &&
    -d /tmp/ferry-ssh.$dead.oThEr1 ]] &&
    pass "... nor a name not its own, a symlink, or another user's directory" ||
    fail "the sweep leaves foreign names, symlinks and other users' directories" "$(ls -ld /tmp/ferry-ssh.$dead.*)"
rm -rf "/tmp/ferry-ssh.$$.aAbB12" "/tmp/ferry-ssh.$dead.aAbB12x" "/tmp/ferry-ssh.$dead.sYmLnK" "/tmp/ferry-ssh.$dead.oThEr1"

# --- ssh_options cannot redirect the sharing -----------------------------------------------------
t=$(q fopts '[{"exec": "id -un"}, {"exec": "id -un"}]')
wait_st "$t" COMPLETED 30
eq "ssh_options with ControlMaster, ControlPath and ControlPersist: the commands run" \
    "$(rjson "$t" .result.codes)" '[0,0]'
eq "... no socket where they point" "$(ls "$T_DIR" | grep -c '^shared-')" 0
wait_for 8 masters_gone && [[ -z $(pgrep -f -- "-p $a_port .*ControlPersist=600") ]] &&
    pass "... and no master persists after the attempt" || fail "no master persists" "$(pgrep -af ControlPersist)"

# --- the pinned host key is still checked --------------------------------------------------------
t=$(q fmitm '[{"exec": "id -un", "fail": true}]')
wait_st "$t" FAILED 30
contains "a host key that is not the pinned one: the command fails with ssh's reason" \
    "$(rjson "$t" .error.message)" "Host key verification failed"
masters_gone && pass "... and no master is left" || fail "no master is left" "$(pgrep -af ControlMaster)"

stop_host
t_done
