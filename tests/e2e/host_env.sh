#!/usr/bin/env bash
# Issue 17, point 3: workers, and so every command a function runs, get an allowlisted
# environment (docs/operations.md, "The workers' environment"): secrets in the host's
# environment (PGPASSWORD, AWS_SECRET_ACCESS_KEY, anything else) never reach a command; PATH
# is workers.path, HOME the run user's home; LANG, LC_*, TZ and FERRY_* pass.
. "$(dirname "$0")/../lib.sh"

write_config 'timeouts = { default = 30; grace = 1; };' 'retry = { max_retries = 0; };' \
    'lease = { poll_ms = 100; };'
install_plugins
ferry create region r1 >/dev/null
ferry create bridge r1 local >/dev/null
ferry create team Ops >/dev/null
ferry create machine Ops local here --vault '{"connection":"local"}' >/dev/null

PGPASSWORD=pg-secret-4711 AWS_SECRET_ACCESS_KEY=aws-secret-4712 AWS_ACCESS_KEY_ID=AKIA4713 \
    MY_TOKEN=tok-4714 LANG=C.UTF-8 LC_TIME=C TZ=UTC FERRY_PROBE=probe-4715 \
    PATH=/tmp/ferry-not-a-dir:$PATH start_host || { t_done; exit 1; }

q() { ferry create queue-item Ops here local --vault "$1" --output json | jq -r '.data[0].taskId'; }
t=$(q '{"function":"script","interpreter":"/bin/sh","script":"env | sort"}')
check "the env-printing script completes" wait_status "$t" COMPLETED 30
out=$(ferry list queue --task-id "$t" --output json | jq -r '.data[0].responseVault.result.output')
for s in pg-secret-4711 aws-secret-4712 AKIA4713 tok-4714 PGPASSWORD AWS_ MY_TOKEN; do
    not_contains "the host's $s does not reach the command" "$out" "$s"
done
not_contains "the host's PATH does not reach the command" "$out" "ferry-not-a-dir"
contains "PATH is workers.path's default" "$out" "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
contains "HOME is the run user's home" "$out" "HOME=$(getent passwd "$(id -un)" | cut -d: -f6)"
contains "LANG passes" "$out" "LANG=C.UTF-8"
contains "LC_TIME passes" "$out" "LC_TIME=C"
contains "TZ passes" "$out" "TZ=UTC"
contains "FERRY_* passes" "$out" "FERRY_PROBE=probe-4715"
# Only the allowlist (the script's env adds PWD, SHLVL and _ from /bin/sh itself).
extra=$(sed 's/=.*//' <<<"$out" | grep -vxE 'PATH|HOME|LANG|LANGUAGE|LC_[A-Z_]+|TZ|TZDIR|TMPDIR|FERRY_[A-Z0-9_]+|PWD|SHLVL|_|[A-Z]*SAN_OPTIONS' | tr '\n' ' ')
eq "nothing else is in the command's environment" "$extra" ""
stop_host

# workers.path sets the PATH.
write_config 'workers = { path = "/opt/ferry-tools:/usr/bin:/bin"; pass_env = "APT_CONFIG, http_proxy"; };' \
    'lease = { poll_ms = 100; };'
APT_CONFIG=/etc/apt-4716 http_proxy=http://proxy-4717 PGPASSWORD=pg-secret-4711 start_host || { t_done; exit 1; }
t=$(q '{"function":"script","interpreter":"/bin/sh","script":"echo \"P=$PATH\"; env"}')
check "the PATH script completes" wait_status "$t" COMPLETED 30
out=$(ferry list queue --task-id "$t" --output json | jq -r '.data[0].responseVault.result.output')
contains "workers.path is the command's PATH" "$out" "P=/opt/ferry-tools:/usr/bin:/bin"
contains "workers.pass_env lets APT_CONFIG through" "$out" "APT_CONFIG=/etc/apt-4716"
contains "workers.pass_env lets http_proxy through" "$out" "http_proxy=http://proxy-4717"
not_contains "a name not in workers.pass_env stays out" "$out" "pg-secret-4711"
stop_host
t_done
