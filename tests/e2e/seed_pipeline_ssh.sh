#!/usr/bin/env bash
# The seed guide's deployment-pipeline.sh (issue 15, point 8), extracted from tests/seed/ with
# `rediacc-cli` replaced by `ferry` and nothing else changed, run against machines reached
# over real OpenSSH on loopback (tests/helpers/sshd.sh --key-user), no ferry on them:
#   two sshd servers, each logging in its own unprivileged user with key authentication and a
#   pinned host key: ferry-pipe-a serves staging-web-01 and staging-test-01, ferry-pipe-b
#   serves staging-web-02 and staging-web-03, each machine with a datastore of its own under
#   its user's home.
#   - the pre-deployment repo_push of staging-web-01's live webapp (a real tree) to
#     deployment-backups, carrying the deployment's tags;
#   - the repo_pull of the release from release-artifacts onto each web server, with the
#     seed's pre_hook/post_hook (stop_services.sh/start_services.sh, found in the
#     repository's directory on the machine: the repo plugin's hook_dir) and health_check
#     (/health on the machine's ip, port 80: a test server on 127.0.0.1:80 answers it);
#   - the run_tests smoke suite on staging-test-01 (its datastore's tests/smoke.sh);
#   then: every item COMPLETED, each web server's webapp equals the release (sha256 listing),
#   the hooks and the Ferryfile ran there as the user, the snapshot carries the tags, nothing
#   of either user is left running. Last, the same deploy step once more for a machine group
#   of the three web servers (after a repo_down of the group: the first deploy left webapp
#   running): one child per member, the parent COMPLETED.
# The release is staged the way `latest` resolves it (among the snapshots the item's machine
# pushed): each web server pushes the release build to release-artifacts over SSH, then its
# live webapp is set back to the version in production.
. "$(dirname "$0")/../lib.sh"

SEED=$T_DIR/seed
"$FERRY_ROOT/tests/seed/extract.sh" "$FERRY_ROOT/tests/seed/000_fe445159a0569f11.txt" "$SEED" >/dev/null ||
    { fail "the guide's scripts are extracted"; t_done; exit 1; }
SSHD=$FERRY_ROOT/tests/helpers/sshd.sh
HOMES=()
trap '"$SSHD" stop "$T_DIR/sshd-a"; "$SSHD" stop "$T_DIR/sshd-b"; rm -rf "${HOMES[@]}"; t_cleanup' EXIT

# The health endpoint the seed's health_check probes: http://MACHINE-IP/health, port 80.
cat >"$T_DIR/health.py" <<'EOF'
import http.server, os, sys
out = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        with open(os.path.join(out, "health-hits"), "a") as f:
            f.write(self.path + "\n")
        body = b"ok" if self.path == "/health" else b"no"
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
try:
    s = http.server.ThreadingHTTPServer(("127.0.0.1", 80), H)
except OSError as e:
    open(os.path.join(out, "health-error"), "w").write(str(e))
    sys.exit(1)
open(os.path.join(out, "health-up"), "w").close()
s.serve_forever()
EOF
python3 "$T_DIR/health.py" "$T_DIR" & T_EXTRA_PIDS=$!
wait_for 10 test -e "$T_DIR/health-up" -o -e "$T_DIR/health-error"
[[ -e $T_DIR/health-up ]] || { fail "the health endpoint listens on 127.0.0.1:80" "$(cat "$T_DIR/health-error" 2>/dev/null)"; t_done; exit 1; }

# sshd_user X USER: an sshd in $T_DIR/sshd-X for USER; sets X_PORT X_HOSTKEY X_KEY X_USER X_HOME
# (X_HOME: this test's directory in the user's home).
sshd_user() {
    "$SSHD" start "$T_DIR/sshd-$1" --key-user "$2" >/dev/null || return 1
    (. "$T_DIR/sshd-$1/env" && declare -p SSHD_PORT SSHD_HOST_KEY SSHD_CLIENT_KEY SSHD_USER SSHD_HOME) |
        sed "s/declare -- SSHD_/$1_/" >"$T_DIR/sshd-$1/vars"
    . "$T_DIR/sshd-$1/vars"
    local home=${1}_HOME
    printf -v "${1}_HOME" '%s/pipeline-%s' "${!home}" "$$"
    HOMES+=("${!home}")
    install -d -o "$2" -g "$(id -g "$2")" -m 0755 "${!home}"
}
sshd_user a ferry-pipe-a || { fail "the first sshd starts"; t_done; exit 1; }
sshd_user b ferry-pipe-b || { fail "the second sshd starts"; t_done; exit 1; }

T_BRIDGE=staging-bridge write_config 'lease = { poll_ms = 100; };' 'workers = { count = 4; };' \
    'retry = { max_retries = 0; };' 'timeouts = { default = 120; grace = 1; };'
install_plugins
mkdir -p "$T_DIR/bin" && ln -s "$FERRY_BIN" "$T_DIR/bin/ferry"
ferry create region eu >/dev/null && ferry create bridge eu staging-bridge >/dev/null
ferry create team DevOps >/dev/null
# machine NAME X: a machine of user X with its own datastore, $X_HOME/NAME.
machine() {
    local port=${2}_PORT hk=${2}_HOST_KEY key=${2}_CLIENT_KEY user=${2}_USER home=${2}_HOME
    install -d -o "${!user}" -g "$(id -g "${!user}")" -m 0755 "${!home}/$1" "${!home}/$1/repositories"
    ferry create machine DevOps staging-bridge "$1" --vault "$(jq -n --argjson p "${!port}" \
        --arg d "${!home}/$1" --arg u "${!user}" --arg k "$(cat "${!key}")" --arg h "${!hk}" \
        '{ip: "127.0.0.1", ssh_port: $p, user: $u, datastore: $d, SSH_PRIVATE_KEY: $k, host_public_key: $h}')" >/dev/null
    DS[$1]=${!home}/$1 OWNER[$1]=${!user}
}
declare -A DS OWNER
machine staging-web-01 a
machine staging-test-01 a
machine staging-web-02 b
machine staging-web-03 b
for s in deployment-backups release-artifacts; do
    ferry create storage DevOps "$s" --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/$s\",\"passphrase\":\"$s\"}" >/dev/null
done
start_host || { fail "the host starts"; t_done; exit 1; }

job() { # job MACHINE JSON: runs an item to its end, prints its status and response vault
    local task
    task=$(ferry create queue-item DevOps "$1" staging-bridge --vault "$2" --output json | jq -r '.data[0].taskId')
    ferry queue wait "$task" --timeout 120 >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault + {status: .data[0].status}'
}
listing() { (cd "$1" && find . -type f ! -name hooks.log -exec sha256sum {} + | LC_ALL=C sort -k2); }

# --- the webapp: version 1 live on every web server; version 2 is the release ----------------
# The hooks, in the repository (its directory is first on the hook's PATH), log beside it.
build() { # build DIR VERSION
    mkdir -p "$1/static/css" "$1/bin"
    printf '<h1>webapp %s</h1>\n' "$2" >"$1/index.html"
    printf 'body { color: #%s; }\n' "$2$2$2" >"$1/static/css/site.css"
    head -c 200000 /dev/urandom >"$1/static/app-$2.bin"
    printf 'version=%s\n' "$2" >"$1/VERSION"
    cat >"$1/stop_services.sh" <<'EOF'
#!/bin/sh
echo "stop $FERRY_HOOK $FERRY_FUNCTION $(id -un) $(cat "$(dirname "$0")/VERSION")" >>"$(dirname "$0")/../../hooks.log"
EOF
    cat >"$1/start_services.sh" <<'EOF'
#!/bin/sh
echo "start $FERRY_HOOK $FERRY_OUTCOME $(id -un) $(cat "$(dirname "$0")/VERSION")" >>"$(dirname "$0")/../../hooks.log"
EOF
    cat >"$1/Ferryfile" <<'EOF'
up() { echo "up $REPOSITORY $(id -un) $(cat VERSION)" >>"$DATASTORE/hooks.log"; }
down() { echo "down $REPOSITORY $(id -un) $(cat VERSION)" >>"$DATASTORE/hooks.log"; }
EOF
    chmod 755 "$1/stop_services.sh" "$1/start_services.sh"
}
build "$T_DIR/v1" 1
build "$T_DIR/v2" 2
for m in staging-web-01 staging-web-02 staging-web-03; do
    cp -a "$T_DIR/v2" "${DS[$m]}/repositories/webapp" && chown -R "${OWNER[$m]}:" "${DS[$m]}/repositories/webapp"
    out=$(job "$m" '{"function":"repo_push","repository":"webapp","storage":"release-artifacts","tags":{"release":"2"}}')
    eq "the release is staged from $m over SSH" "$(jq -r .status <<<"$out")" COMPLETED
    rm -rf "${DS[$m]}/repositories/webapp"
    cp -a "$T_DIR/v1" "${DS[$m]}/repositories/webapp" && chown -R "${OWNER[$m]}:" "${DS[$m]}/repositories/webapp"
done
mkdir -p "${DS[staging-test-01]}/tests"
cat >"${DS[staging-test-01]}/tests/smoke.sh" <<'EOF'
echo "smoke tests against $1 (deployment $FERRY_DEPLOYMENT_ID) as $(id -un)"
echo "1..2"
echo "ok 1 - home page answers"
echo "ok 2 - health"
EOF
chown -R "${OWNER[staging-test-01]}:" "${DS[staging-test-01]}/tests"

# --- deployment-pipeline.sh staging ---------------------------------------------------------------
(cd "$T_DIR" && PATH=$T_DIR/bin:$PATH timeout 60 bash "$SEED/deployment-pipeline.sh" staging) >"$T_DIR/out" 2>"$T_DIR/err"
eq "deployment-pipeline.sh staging runs" "$?" 0
dep=$(sed -n 's/^Deployment pipeline initiated: //p' "$T_DIR/out")
[[ -n $dep ]] && pass "it prints its deployment id" || fail "it prints its deployment id" "$(cat "$T_DIR/out" "$T_DIR/err")"
pipeline() { # the pipeline's items: task id, function, machine (the five newest)
    ferry list queue --output json | jq -r '.data[:5][] | "\(.taskId) \(.function) \(.machineName)"'
}
declare -A R T
mapfile -t ITEMS < <(pipeline)
eq "five items queued" "${#ITEMS[@]}" 5
for it in "${ITEMS[@]}"; do
    read -r task fn m <<<"$it"
    ferry queue wait "$task" --timeout 120 >/dev/null 2>&1
    R[$m.$fn]=$(ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault + {status: .data[0].status}')
    [[ $(jq -r .status <<<"${R[$m.$fn]}") == COMPLETED ]] && pass "$fn on $m COMPLETED" ||
        fail "$fn on $m COMPLETED" "$(jq -c '{status, error}' <<<"${R[$m.$fn]}")"
    T[$m.$fn]=$task
done

# The pre-deployment push: version 1 as it was, with the deployment's tags.
out=$(job staging-web-01 '{"function":"repo_list","repository":"webapp","storage":"deployment-backups"}')
eq "deployment-backups holds one snapshot of staging-web-01's webapp" "$(jq -r '.result.snapshots | length' <<<"$out")" 1
eq "tagged as the pipeline tagged it" "$(jq -r '.result.snapshots[0].tags | [.deployment_id, .type, (.timestamp | test("^[0-9]{8}_[0-9]{6}$"))] | @tsv' <<<"$out")" \
    "$dep	pre-deployment	true"
out=$(job staging-web-01 "{\"function\":\"repo_pull\",\"repository\":\"before\",\"from_repository\":\"webapp\",\"storage\":\"deployment-backups\",\"restore_point\":\"deployment_id=$dep\",\"target\":\"${DS[staging-web-01]}/check/before\"}")
eq "the pre-deployment snapshot restores by its deployment id" "$(jq -r .status <<<"$out")" COMPLETED
eq "and is version 1 as it was live (pushed before the release was pulled)" \
    "$(listing "${DS[staging-web-01]}/check/before")" "$(listing "$T_DIR/v1")"

# The release on every web server, the hooks and the start on the far side.
for m in staging-web-01 staging-web-02 staging-web-03; do
    eq "$m's webapp is the release (sha256 of every file)" "$(listing "${DS[$m]}/repositories/webapp")" "$(listing "$T_DIR/v2")"
    eq "owned by $m's user" "$(find "${DS[$m]}/repositories/webapp" ! -user "${OWNER[$m]}" | wc -l)" 0
    eq "the hooks and the Ferryfile ran on $m as its user, in order" "$(cat "${DS[$m]}/hooks.log" 2>/dev/null)" \
        "stop pre_hook repo_pull ${OWNER[$m]} version=1
up webapp ${OWNER[$m]} version=2
start post_hook OK ${OWNER[$m]} version=2"
done
eq "the health endpoint was probed once per deploy" "$(grep -c '^/health$' "$T_DIR/health-hits")" 3
done_test=$(jq -c '.result' <<<"${R[staging-test-01.run_tests]:-null}")
eq "the smoke suite ran on staging-test-01 with TAP counts" "$(jq -r '[.format, .passed, .failed] | @tsv' <<<"$done_test")" $'tap\t2\t0'
contains "as its user, for the deployment" "$(jq -r .output <<<"$done_test")" "smoke tests against staging (deployment $dep) as ferry-pipe-a"
user_procs() { ps -o pid=,args= -u ferry-pipe-a,ferry-pipe-b | grep -v -e 'sshd: ' -e '^ *$' || true; }
wait_for 10 test -z "$(user_procs)"
eq "no process of either user is left" "$(user_procs)" ""

# --- the same deploy step for a machine group of the web servers -----------------------------------
out=$(ferry create machine-group DevOps staging-web --members staging-web-01,staging-web-02,staging-web-03)
eq "the group staging-web is created" "$out" "Successfully created machine group staging-web with 3 members"
step=$(ferry list queue --task-id "${T[staging-web-02.repo_pull]}" --output json | jq -c '.data[0].vaultContent')
contains "(the pipeline's own repo_pull step)" "$step" '"pre_hook":"stop_services.sh"'
for m in staging-web-01 staging-web-02 staging-web-03; do : >"${DS[$m]}/hooks.log"; done
# The deploy left webapp running (health_check starts it), and repo_pull does not replace a
# running repository: the group is brought down first, through the group too.
down=$(ferry create queue-item DevOps staging-web staging-bridge --vault '{"function":"repo_down","repository":"webapp"}' --output json | jq -r '.data[0].taskId')
ferry queue wait "$down" --timeout 60 >/dev/null 2>&1
eq "repo_down for the group COMPLETED" "$(task_status "$down")" COMPLETED
parent=$(ferry create queue-item DevOps staging-web staging-bridge --vault "$step" --priority 2 --output json | jq -r '.data[0].taskId')
ferry queue wait "$parent" --timeout 120 >/dev/null 2>&1
row=$(ferry list queue --task-id "$parent" --output json | jq -c '.data[0]')
eq "the group's deploy COMPLETED" "$(jq -r .status <<<"$row")" COMPLETED
eq "with one child per member, each COMPLETED" \
    "$(jq -r '.responseVault.members[] | "\(.machine) \(.status)"' <<<"$row" | LC_ALL=C sort | tr '\n' ' ')" \
    "staging-web-01 COMPLETED staging-web-02 COMPLETED staging-web-03 COMPLETED "
for m in staging-web-01 staging-web-02 staging-web-03; do
    eq "the hooks ran again on $m" "$(cut -d' ' -f1 "${DS[$m]}/hooks.log" | tr '\n' ' ')" "down stop up start "
done
wait_for 10 test -z "$(user_procs)"
eq "and no process of either user is left" "$(user_procs)" ""
t_done
