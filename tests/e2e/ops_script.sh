#!/usr/bin/env bash
# The script function (issue 15, point 4): an inline script or a bridge file run on the
# machine, locally and over SSH (a real sshd on loopback), with interpreter, args, env, cwd;
# the exit code and the output's tail in the result and the trace; retry_on_exit_codes;
# env values are secrets (masked in listings, trace, log, result and error, and never on a
# command line); hostile values pass without a shell parsing them; a cancel ends a forked
# sleeper; a timeout keeps the output's tail; invalid UTF-8, a closed stdout, a missing
# interpreter or cwd, a huge script, script_file inside and outside script_dirs.
. "$(dirname "$0")/../lib.sh"

SSHD_DIR=$T_DIR/sshd
port=$("$FERRY_ROOT/tests/helpers/sshd.sh" start "$SSHD_DIR") || { fail "sshd starts" "$port"; t_done; exit 1; }
trap '"$FERRY_ROOT/tests/helpers/sshd.sh" stop "$SSHD_DIR"; t_cleanup' EXIT

SCRIPTS=$T_DIR/scripts
mkdir -p "$SCRIPTS/sub" "$T_DIR/outside" "$T_DIR/work dir"
write_config 'timeouts = { default = 60; grace = 1; };' 'retry = { max_retries = 0; max_delay = 1; jitter = 0.0; };' \
    'lease = { poll_ms = 100; };' 'workers = { count = 6; };' \
    "plugin = { ops = { script_dirs = [\"$SCRIPTS\"]; }; };"
install_plugins

ferry create region r1 >/dev/null
ferry create bridge r1 local >/dev/null
ferry create team Ops >/dev/null
ssh_vault=$(jq -n --argjson p "$port" --arg k "$(cat "$SSHD_DIR/client_key")" \
    '{ip:"127.0.0.1", user:"root", ssh_port:$p, SSH_PRIVATE_KEY:$k}')
for i in 1 2 3; do
    ferry create machine Ops local here$i --vault '{"connection":"local"}' >/dev/null
    ferry create machine Ops local remote$i --vault "$ssh_vault" >/dev/null
done
start_host

wait_st() { wait_for "${3:-30}" status_is "$1" "$2"; }
q() { # q MACHINE VAULT_JSON: the task id
    ferry create queue-item Ops "$1" local --vault "$2" --output json | jq -r '.data[0].taskId'
}
row() { ferry list queue --task-id "$1" --output json | jq -c '.data[0]'; }
res() { ferry list queue --task-id "$1" --output json | jq -c '.data[0].responseVault'; }
result() { res "$1" | jq -r ".result$2"; }
trace_text() { ferry queue trace "$1"; }
no_proc() { ! pgrep -f "$1"; }
is_done() { [[ $(task_status "$1") =~ ^(COMPLETED|FAILED|CANCELLED)$ ]]; }
done_st() { # done_st TASK [SECONDS]: waits for the item to end; prints its status
    wait_for "${2:-30}" is_done "$1"
    task_status "$1"
}
R=$'\xef\xbf\xbd' # U+FFFD, what invalid bytes become

# --- hostile args and env, local and over SSH -------------------------------------------------
SECRET='s3cr3t-Zq9-"$(touch /tmp/pwned)"-'"'"'q'"'"
SECRET_NL=$'line1\n$(id)\nline3\n\n'
hostile_vault=$(jq -n --arg s "$SECRET" --arg n "$SECRET_NL" --arg cwd "$T_DIR/work dir" '{
  function: "script",
  script: "printf \"[%s]\\n\" \"$@\"\nprintf \"tok=<%s>\\n\" \"$API_TOKEN\"\nprintf \"%s\" \"$MULTI\" | od -An -tx1 | tr -d \" \\n\"; echo\necho \"cwd=$(pwd)\"\necho \"task=$FERRY_TASK_ID attempt=$FERRY_ATTEMPT\"\ncat /proc/[0-9]*/cmdline 2>/dev/null | tr \"\\0\" \" \" > \"$PS_DUMP\"\necho \"stdin=$(cat | wc -c)\"\nexit 7",
  args: ["a b", "$(id)", "it'"'"'s-7QXarg", "x\ny", "", 42],
  env: {API_TOKEN: $s, MULTI: $n, PS_DUMP: ($cwd + "/ps.txt")},
  cwd: $cwd
}')
for m in here1 remote1; do
    rm -f /tmp/pwned "$T_DIR/work dir/ps.txt"
    t=$(q $m "$hostile_vault")
    eq "$m: a script that exits 7 fails the item" "$(done_st "$t")" FAILED
    r=$(res "$t")
    eq "$m: the exit code is in the result" "$(jq -r .result.exit_code <<<"$r")" 7
    out=$(jq -r .result.output <<<"$r")
    eq "$m: args arrive as given, each one word (quotes, \$(...), newline, empty, integer)" \
        "$(sed -n '1,7p' <<<"$out")" $'[a b]\n[$(id)]\n[it\'s-7QXarg]\n[x\ny]\n[]\n[42]'
    eq "$m: a secret env value is masked in the result's output" "$(sed -n 8p <<<"$out")" "tok=<********>"
    eq "$m: a value with newlines and \$(...) arrives byte for byte" "$(sed -n 9p <<<"$out")" \
        "$(printf %s "$SECRET_NL" | od -An -tx1 | tr -d ' \n')"
    eq "$m: it runs in cwd (a path with a space)" "$(sed -n 10p <<<"$out")" "cwd=$T_DIR/work dir"
    eq "$m: FERRY_TASK_ID and FERRY_ATTEMPT" "$(sed -n 11p <<<"$out")" "task=$t attempt=1"
    eq "$m: the script's stdin is empty" "$(sed -n 12p <<<"$out")" "stdin=0"
    [[ ! -e /tmp/pwned ]] && pass "$m: no value was run by a shell" || fail "$m: no value was run by a shell"
    dump=$(cat "$T_DIR/work dir/ps.txt" 2>/dev/null)
    [[ -n $dump ]] && pass "$m: the process list was read during the run" || fail "$m: the process list was read during the run"
    not_contains "$m: the secret is on no command line (bridge or machine)" "$dump" "s3cr3t-Zq9"
    contains "$m: (the args are the script's own argv, as for any program)" "$dump" "/dev/fd/3 a b"
    all=$(row "$t"; trace_text "$t"; ferry queue trace "$t" --output json; cat "$T_DIR/host.log")
    not_contains "$m: the secret is in no listing, trace, response or log" "$all" "s3cr3t-Zq9"
    not_contains "$m: nor its escaped JSON form" "$all" 's3cr3t-Zq9-\"'
    eq "$m: the request vault masks env" "$(row "$t" | jq -r .vaultContent.env)" "********"
    eq "$m: the error names the exit code and the last line" "$(jq -r .error.message <<<"$r")" "script exited 7: stdin=0"
    contains "$m: the trace shows the output's tail" "$(trace_text "$t")" "cwd=$T_DIR/work dir"
done
rm -f /tmp/pwned

# A secret in the error message (the last line of the output).
t=$(q here2 "$(jq -n --arg s "$SECRET" '{function:"script", script:"echo \"failing with $PW\"; exit 2", env:{PW:$s}}')")
eq "a failing script" "$(done_st "$t")" FAILED
eq "its error masks the secret" "$(res "$t" | jq -r .error.message)" "script exited 2: failing with ********"
eq "and lastFailureReason too" "$(row "$t" | jq -r .lastFailureReason)" "script exited 2: failing with ********"

# --- interpreters ---------------------------------------------------------------------------
for m in here2 remote2; do
    t=$(q $m '{"function":"script","interpreter":"python3 -u","script":"import sys, os\nprint(sys.argv[1:], os.environ[\"GREETING\"])\n","args":["one","two words"],"env":{"GREETING":"hi"}}')
    eq "$m: python3 runs the script" "$(done_st "$t")" COMPLETED
    eq "$m: with args and env" "$(result "$t" .output)" "['one', 'two words'] hi"
    t=$(q $m '{"function":"script","interpreter":"/bin/bash -eu","script":"echo \"bash $BASH_VERSION\" | cut -c1-6\nfalse\necho not reached\n"}')
    eq "$m: /bin/bash -eu: -e stops at false" "$(done_st "$t")" FAILED
    eq "$m: ... and bash ran it" "$(result "$t" .output)" "bash 5"
    t=$(q $m '{"function":"script","interpreter":"no-such-interpreter","script":"true"}')
    eq "$m: a missing interpreter fails" "$(done_st "$t")" FAILED
    eq "$m: ... saying so" "$(res "$t" | jq -r '[.error.code, .error.message] | @tsv')" \
        $'no_interpreter\tthe interpreter no-such-interpreter is not a command found on PATH on the machine'
    t=$(q $m '{"function":"script","interpreter":"/no/such/sh","script":"true"}')
    eq "$m: a missing interpreter path fails clearly" "$(done_st "$t"; res "$t" | jq -r .error.code)" $'FAILED\nno_interpreter'
    t=$(q $m '{"function":"script","script":"pwd","cwd":"/no/such/dir"}')
    eq "$m: a missing cwd fails" "$(done_st "$t")" FAILED
    eq "$m: ... saying so" "$(res "$t" | jq -r '[.error.code, .error.message] | @tsv')" \
        $'no_cwd\tthe cwd /no/such/dir is not a directory on the machine'
done

# --- bounded output, invalid UTF-8, a closed stdout ---------------------------------------------
for m in here3 remote3; do
    t=$(q $m '{"function":"script","script":"i=0; while [ $i -lt 3000 ]; do echo \"line $i of the output\"; i=$((i+1)); done; echo the-end >&2","max_output":1000}')
    eq "$m: a long output" "$(done_st "$t")" COMPLETED
    r=$(res "$t")
    eq "$m: is truncated" "$(jq -r .result.truncated <<<"$r")" true
    (($(jq -r '.result.output | length' <<<"$r") <= 1000)) && pass "$m: to max_output bytes" || fail "$m: to max_output bytes" "$r"
    eq "$m: the result keeps its tail" "$(jq -r .result.output <<<"$r" | grep -v '^$' | tail -2)" $'line 2999 of the output\nthe-end'
    t=$(q $m '{"function":"script","script":"printf \"bad \\377\\376 bytes \\000 nul \\303\\n\"; printf \"caf\\303\\251\\n\""}')
    eq "$m: a script printing invalid UTF-8 and NUL" "$(done_st "$t")" COMPLETED
    eq "$m: gets a valid result, the bad bytes replaced" "$(result "$t" .output)" "bad $R$R bytes $R nul $R"$'\n'"café"
    t=$(q $m '{"function":"script","script":"echo early; exec >&- 2>&-; sleep 0.3; exit 4"}')
    eq "$m: a script that closes its stdout early" "$(done_st "$t")" FAILED
    eq "$m: still reports its exit code and output" "$(res "$t" | jq -r '.result.exit_code, .result.output')" $'4\nearly'
done

# A secret cut by the output's cap: neither the cap here nor the window the machine sends back
# may leave a piece of it in the result.
t=$(q here1 '{"function":"script","script":"printf \"%s\" \"$S\"; echo ok","env":{"S":"SECRETPART-zz9-TAIL"},"max_output":10}')
eq "a secret just before the cap" "$(done_st "$t")" COMPLETED
r=$(res "$t")
not_contains "leaves no piece of itself in the output" "$(jq -r .result.output <<<"$r")" "TAIL"
eq "the output is cut, with the mask's end" "$(jq -r .result.output <<<"$r")" "*******ok"
t=$(q here1 '{"function":"script","script":"head -c 5000 /dev/zero | tr \"\\0\" x; printf \"%s\" \"$S\"; echo 0123456789abcdefghi","env":{"S":"SECRETPART-zz9-TAIL"},"max_output":10}')
eq "a secret cut by the machine's window" "$(done_st "$t")" COMPLETED
r=$(res "$t")
not_contains "leaves no piece of itself either" "$(jq -r .result.output <<<"$r")" "TAIL"
eq "the output is the last 10 bytes" "$(jq -r .result.output <<<"$r")" "abcdefghi"

# --- retry_on_exit_codes --------------------------------------------------------------------
t=$(q here1 '{"function":"script","script":"echo busy; exit 75","retry_on_exit_codes":[75],"max_retries":2,"retry_delay":0}')
eq "an exit code in retry_on_exit_codes is retried" "$(done_st "$t" 40)" FAILED
eq "max_retries times" "$(row "$t" | jq -r .retryCount)" 2
eq "the error says why" "$(res "$t" | jq -r '[.error.code, .error.message] | @tsv')" \
    $'script_retry\tscript exited 75 (in retry_on_exit_codes): busy'
t=$(q here2 '{"function":"script","script":"[ \"$FERRY_ATTEMPT\" -ge 2 ] || exit 75; echo ok on $FERRY_ATTEMPT","retry_on_exit_codes":[75, 111],"max_retries":3,"retry_delay":0}')
eq "a retried script that then succeeds completes" "$(done_st "$t" 40)" COMPLETED
eq "on its second attempt" "$(res "$t" | jq -r '.result.output')" "ok on 2"
t=$(q here3 '{"function":"script","script":"exit 3","retry_on_exit_codes":[75],"max_retries":2,"retry_delay":0}')
eq "another exit code fails at once" "$(done_st "$t")" FAILED
eq "without a retry" "$(row "$t" | jq -r .retryCount)" 0
t=$(q here3 '{"function":"script","script":"true","retry_on_exit_codes":[0]}')
eq "retry_on_exit_codes outside 1-255 is INVALID" "$(done_st "$t"; res "$t" | jq -r .error.outcome)" $'FAILED\nINVALID'

# --- cancel and timeout end the process group ---------------------------------------------------
for m in here1 remote1; do
    t=$(q $m '{"function":"script","script":"sleep 3171 & echo forked; wait"}')
    wait_for 15 pgrep -f "sleep 317[1]" || fail "$m: the sleeper starts"
    wait_st "$t" PROCESSING 5
    ferry queue cancel "$t" >/dev/null
    eq "$m: a cancelled script ends CANCELLED" "$(done_st "$t")" CANCELLED
    wait_for 8 no_proc "sleep 317[1]" && pass "$m: its forked sleeper is gone" ||
        fail "$m: its forked sleeper is gone" "$(pgrep -af 'sleep 317[1]')"
done
t=$(q here2 '{"function":"script","script":"echo before the timeout; sleep 3172 & wait","timeout":2}')
eq "a script past its timeout fails" "$(done_st "$t")" FAILED
wait_for 8 no_proc "sleep 317[2]" && pass "its sleeper is gone" || fail "its sleeper is gone"
contains "the output's tail is in the trace" "$(trace_text "$t")" "before the timeout"

# --- a huge script, over SSH too ----------------------------------------------------------------
{
    printf 'n=0\n'
    for ((i = 0; i < 25000; i++)); do printf 'n=$((n+1)) # padding padding padding\n'; done
    printf 'echo "$n lines"\n'
} >"$T_DIR/huge.sh"
size=$(stat -c %s "$T_DIR/huge.sh")
jq -n --rawfile s "$T_DIR/huge.sh" '{function:"script", script:$s}' >"$T_DIR/huge.json"
for m in here1 remote1; do
    t=$(ferry create queue-item Ops $m local --vault-file "$T_DIR/huge.json" --output json | jq -r '.data[0].taskId')
    eq "$m: a $size-byte script runs" "$(done_st "$t" 60)" COMPLETED
    eq "$m: whole" "$(res "$t" | jq -r '.result.output, .result.script_bytes')" "25000 lines"$'\n\n'"$size"
done

# --- script_file ------------------------------------------------------------------------------
printf '#!/bin/sh\necho "from file: $1"\n' >"$SCRIPTS/hello.sh"
printf 'echo nested\n' >"$SCRIPTS/sub/nested.sh"
printf 'echo outside\n' >"$T_DIR/outside/evil.sh"
ln -s "$T_DIR/outside/evil.sh" "$SCRIPTS/escape.sh"
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' '#' >"$SCRIPTS/big.sh"
printf 'echo \xe9t\xe9 latin1 # caf\xe9\n' >"$SCRIPTS/latin1.sh"
for m in here2 remote2; do
    t=$(q $m '{"function":"script","script_file":"hello.sh","args":["bridge"]}')
    eq "$m: a script file from script_dirs runs" "$(done_st "$t")" COMPLETED
    eq "$m: ... with its args" "$(result "$t" .output)" "from file: bridge"
    eq "$m: the result names the file" "$(result "$t" .source)" "$SCRIPTS/hello.sh"
done
t=$(q here3 "$(jq -n --arg f "$SCRIPTS/sub/nested.sh" '{function:"script", script_file:$f}')")
eq "an absolute path inside script_dirs" "$(done_st "$t"; result "$t" .output)" $'COMPLETED\nnested'
t=$(q here3 '{"function":"script","script_file":"latin1.sh"}')
eq "a file that is not UTF-8 passes through intact" "$(done_st "$t"; result "$t" .output)" "COMPLETED"$'\n'"${R}t$R latin1"
bad_file() { # bad_file NAME VAULT EXPECTED_MESSAGE_PART
    local t
    t=$(q here3 "$2")
    eq "$1 is INVALID" "$(done_st "$t"; res "$t" | jq -r .error.outcome)" $'FAILED\nINVALID'
    contains "$1: the error says why" "$(res "$t" | jq -r .error.message)" "$3"
}
bad_file "/etc/passwd (outside script_dirs)" '{"function":"script","script_file":"/etc/passwd"}' "is not inside the ops plugin's script_dirs"
bad_file "a symlink out of script_dirs" '{"function":"script","script_file":"escape.sh"}' "is not inside the ops plugin's script_dirs"
bad_file "../ out of script_dirs" '{"function":"script","script_file":"../outside/evil.sh"}' "is not inside the ops plugin's script_dirs"
bad_file "a missing file" '{"function":"script","script_file":"nope.sh"}' "script_file nope.sh cannot be opened on the bridge: No such file or directory"
bad_file "a directory" '{"function":"script","script_file":"sub"}' "is not a regular file"
bad_file "a file over 1 MiB" '{"function":"script","script_file":"big.sh"}' "has 1048577 bytes; a script may have at most 1048576"
bad_file "script and script_file" '{"function":"script","script":"true","script_file":"hello.sh"}' "not both"
bad_file "neither" '{"function":"script"}' "one of them"
bad_file "a relative cwd" '{"function":"script","script":"true","cwd":"tmp"}' "must be an absolute path"
bad_file "an env name that is no shell name" '{"function":"script","script":"true","env":{"A-B":"x"}}' "is not a shell variable name"
bad_file "an interpreter starting with -" '{"function":"script","script":"true","interpreter":"-c x"}' "must be a program"

# Without script_dirs in the configuration, script_file is refused (ferry run, same store).
sed 's/plugin = { ops = .*//' "$FERRY_CONFIG" >"$T_DIR/nodirs.conf"
out=$(FERRY_CONFIG=$T_DIR/nodirs.conf ferry run script --vault '{"script_file":"hello.sh"}' 2>&1)
contains "no script_dirs: script_file is refused, saying what to set" "$out" "set plugin = { ops = { script_dirs ="
out=$(FERRY_CONFIG=$T_DIR/nodirs.conf ferry run script --vault '{"script":"echo inline works"}' 2>&1)
contains "inline scripts need no configuration" "$out" "inline works"

stop_host
t_done
