#!/usr/bin/env bash
# Resources through the CLI: teams, regions, bridges, machines, storages and schedules —
# create / list / inspect / update / rm, vault versions, merge patches, secret redaction in
# every output, and referential errors that name the fix (issue 3, points 2 and 8).
. "$(dirname "$0")/../lib.sh"

write_config
install_plugins

# jq_of NAME JSON FILTER: runs jq, printing "jq failed" rather than nothing on bad input.
jqf() { jq -r "$2" <<<"$1" 2>/dev/null || echo "jq failed on: $1"; }

# --- create: text and JSON ------------------------------------------------------------------
eq "create region prints the success line" "$(ferry create region us-east)" "Successfully created region us-east"
out=$(ferry create bridge us-east prod-bridge --output json)
eq "create bridge: JSON envelope" "$(jqf "$out" '[.success, .message] | @tsv')" \
    "true	Successfully created bridge prod-bridge"
eq "create bridge: data[0] is the row" "$(jqf "$out" '.data[0] | [.bridgeName, .regionName, .vaultVersion] | @tsv')" \
    "prod-bridge	us-east	1"
ferry create region eu-west >/dev/null && ferry create bridge eu-west eu-bridge >/dev/null
eq "create team" "$(ferry create team Operations)" "Successfully created team Operations"
ferry create team DevOps >/dev/null

SECRET_VAULT='{
  "ip": "10.0.0.5",          # the address
  "user": "deploy",
  "ssh_port": 22,
  "datastore": "/mnt/datastore",
  "password": "hunter2-pass",
  "SSH_PRIVATE_KEY": "-----BEGIN KEY-----abc",
  "ssh": {"secret_key": "sk-123456", "token": "tok-987654", "port": 22},
  "api_token": "at-555555",
  "sort_key": "visible-sort-key",
  "public_key": "ssh-ed25519 AAAA-visible"
}'
out=$(ferry create machine Operations prod-bridge web-server-01 --vault "$SECRET_VAULT" --output json)
eq "create machine: row names team, bridge and region" \
    "$(jqf "$out" '.data[0] | [.machineName, .teamName, .bridgeName, .regionName, .vaultVersion] | @tsv')" \
    "web-server-01	Operations	prod-bridge	us-east	1"
# check_redacted NAME JSON: every secret is masked, the rest is shown.
check_redacted() {
    local name=$1 json=$2
    not_contains "$name: no password" "$json" "hunter2-pass"
    not_contains "$name: no SSH_PRIVATE_KEY" "$json" "BEGIN KEY"
    not_contains "$name: no nested secret_key" "$json" "sk-123456"
    not_contains "$name: no nested token" "$json" "tok-987654"
    not_contains "$name: no api_token" "$json" "at-555555"
    contains "$name: non-secrets shown" "$json" "10.0.0.5"
    contains "$name: sort_key is not a secret" "$json" "visible-sort-key"
    contains "$name: public_key is not a secret" "$json" "AAAA-visible"
    contains "$name: masked values are marked" "$json" '"********"'
}
check_redacted "create's JSON" "$out"
eq "create's JSON keeps the key names" "$(jqf "$out" '.data[0].vault | [.password, .SSH_PRIVATE_KEY, .ssh.secret_key, .ssh.port] | @tsv')" \
    "********	********	********	22"
ferry create machine Operations prod-bridge all-servers --vault '{"ip":"10.0.0.6","user":"root","ssh_port":22,"datastore":"/d"}' >/dev/null
ferry create machine DevOps eu-bridge staging-web-01 --vault '{"connection":"local"}' >/dev/null

# --- inspect -----------------------------------------------------------------------------------
eq "inspect machine NAME | jq -r .bridgeName (the seed's idiom)" \
    "$(ferry inspect machine web-server-01 | jq -r .bridgeName)" prod-bridge
eq "inspect machine TEAM NAME" "$(ferry inspect machine Operations web-server-01 | jq -r .teamName)" Operations
out=$(ferry inspect machine web-server-01)
check_redacted "inspect" "$out"
out=$(ferry inspect machine web-server-01 --reveal)
eq "inspect --reveal shows the secrets" "$(jqf "$out" '.vault | [.password, .ssh.secret_key, .SSH_PRIVATE_KEY] | @tsv')" \
    "hunter2-pass	sk-123456	-----BEGIN KEY-----abc"
out=$(ferry inspect machine DevOps web-server-01 2>&1); rc=$?
eq "inspect with the wrong team exits 1" "$rc" 1
contains "and says which team owns it" "$out" "belongs to team 'Operations'"
out=$(ferry inspect machine ghost 2>&1); rc=$?
eq "inspect a missing machine exits 1" "$rc" 1
contains "and names the fix" "$out" "ferry create machine TEAM BRIDGE ghost"
eq "inspect team" "$(ferry inspect team Operations | jq -r .teamName)" Operations
eq "inspect bridge" "$(ferry inspect bridge prod-bridge | jq -r .regionName)" us-east

# --- list ------------------------------------------------------------------------------------------
out=$(ferry list team-machines Operations --output json)
eq "list team-machines TEAM: only that team's, by name" "$(jqf "$out" '[.data[].machineName] | join(",")')" \
    "all-servers,web-server-01"
check_redacted "list team-machines JSON" "$out"
out=$(ferry list team-machines Operations --output json --reveal)
contains "list --reveal shows the secrets" "$out" "hunter2-pass"
eq "list team-machines without TEAM lists all" \
    "$(ferry list team-machines --output json | jq '.data | length')" 3
eq "list teams" "$(ferry list teams --output json | jq -r '[.data[].teamName] | join(",")')" "DevOps,Operations"
eq "list regions" "$(ferry list regions --output json | jq -r '[.data[].regionName] | join(",")')" "eu-west,us-east"
eq "list bridges" "$(ferry list bridges --output json | jq -r '[.data[].bridgeName] | join(",")')" "eu-bridge,prod-bridge"
eq "list bridges REGION" "$(ferry list bridges us-east --output json | jq -r '[.data[].bridgeName] | join(",")')" "prod-bridge"
text=$(ferry list team-machines Operations)
eq "text list: header" "$(sed -n 1p <<<"$text" | tr -s ' ')" "MACHINE TEAM BRIDGE REGION VERSION"
if [[ $(sed -n 2p <<<"$text") =~ ^-+(\ \ -+)+$ ]]; then pass "text list: a rule under the header"; else fail "text list: a rule under the header" "$text"; fi
eq "text list: columns aligned (TEAM starts where Operations starts)" \
    "$(awk 'NR==1{print index($0,"TEAM")} NR==3{print index($0,"Operations")}' <<<"$text" | sort -u | wc -l)" 1
not_contains "text list shows no vault secrets" "$text" "hunter2"
out=$(ferry list team-machines Nobody 2>&1); rc=$?
eq "list team-machines of a missing team exits 1" "$rc" 1
contains "and names the fix" "$out" "ferry create team Nobody"

# --- storages --------------------------------------------------------------------------------------
out=$(ferry create storage Operations s3-backups --vault '{"provider":"s3","bucket":"bk","access_key":"AKIA0000","secret_key":"s3-secret-xyz"}' --output json)
not_contains "create storage JSON hides secret_key" "$out" "s3-secret-xyz"
not_contains "create storage JSON hides access_key" "$out" "AKIA0000"
eq "create storage JSON keeps the bucket" "$(jqf "$out" .data[0].vault.bucket)" bk
out=$(ferry list team-storages Operations --output json)
eq "list team-storages: provider column" "$(jqf "$out" '.data[0] | [.storageName, .provider] | @tsv')" "s3-backups	s3"
not_contains "list team-storages hides secret_key" "$out" "s3-secret-xyz"
text=$(ferry list team-storages Operations)
contains "list team-storages text" "$text" "s3-backups"
not_contains "list team-storages text hides secrets" "$text" "s3-secret-xyz"
out=$(ferry inspect storage Operations s3-backups)
not_contains "inspect storage hides secret_key" "$out" "s3-secret-xyz"
out=$(ferry create storage Operations nocfg --vault '{"bucket":"x"}' 2>&1); rc=$?
eq "storage without provider exits 1" "$rc" 1
contains "and says what provider takes" "$out" '"provider": "local", "s3", "sftp" or "webdav"'

# --- vault updates: versions, merge, stale refusal -----------------------------------------------
out=$(ferry update machine-vault web-server-01 --vault '{"ssh_port":2222,"user":null}' --output json)
eq "update machine-vault merges (RFC 7396): ssh_port changed, user removed, ip kept" \
    "$(jqf "$out" '.data[0].vault | [.ssh_port, (has("user")), .ip] | @tsv')" "2222	false	10.0.0.5"
eq "vaultVersion increments to 2" "$(jqf "$out" .data[0].vaultVersion)" 2
not_contains "update's JSON hides secrets" "$out" "hunter2-pass"
out=$(ferry update machine-vault web-server-01 --vault '{"ssh_port":2200}' --vault-version 1 2>&1); rc=$?
eq "a stale --vault-version is refused (exit 1)" "$rc" 1
contains "and the message says the current version" "$out" "vault version is 2, not 1"
eq "the refused update wrote nothing" "$(ferry inspect machine web-server-01 | jq -r '[.vaultVersion, .vault.ssh_port] | @tsv')" "2	2222"
out=$(ferry update machine-vault web-server-01 --vault '{"ssh_port":2200}' --vault-version 2)
eq "the current --vault-version is accepted" "$out" "Successfully updated machine web-server-01 (vault version 3)"
out=$(ferry update team-vault Operations --vault '{"owner":"ops","token":"team-tok-1234"}' --output json)
eq "update team-vault" "$(jqf "$out" '.data[0] | [.vaultVersion, .vault.owner, .vault.token] | @tsv')" "2	ops	********"
out=$(ferry update storage-vault Operations s3-backups --vault '{"region":"us-east-1"}' --output json)
eq "update storage-vault keeps the credentials" \
    "$(ferry inspect storage Operations s3-backups --reveal | jq -r '[.vaultVersion, .vault.region, .vault.secret_key] | @tsv')" \
    "2	us-east-1	s3-secret-xyz"
out=$(ferry update machine-vault web-server-01 --replace --vault '{"ip":"10.9.9.9"}' --output json)
eq "--replace replaces the whole vault" "$(jqf "$out" '.data[0].vault | keys | join(",")')" "ip"

# --- update machine-bridge ------------------------------------------------------------------------
eq "update machine-bridge" "$(ferry update machine-bridge Operations all-servers eu-bridge)" \
    "Successfully moved machine all-servers to bridge eu-bridge"
eq "inspect sees the new bridge" "$(ferry inspect machine all-servers | jq -r .bridgeName)" eu-bridge
out=$(ferry update machine-bridge Operations all-servers nowhere 2>&1); rc=$?
eq "moving to a missing bridge exits 1" "$rc" 1
contains "and names the fix" "$out" "ferry create bridge REGION nowhere"

# --- schedules: create, list, merge, replace, version ----------------------------------------------
out=$(ferry create schedule Operations daily-app-backup --vault '{
  "cron": "0 2 * * *",
  "timezone": "UTC",
  "machine": "web-server-01",
  "queue_config": {"function": "hello", "repository": "application", "password": "sched-pw-777"},
  "notifications": {"on_failure": "ops-alerts@company.com"}
}' --output json)
eq "create schedule" "$(jqf "$out" '.data[0] | [.scheduleName, .cron, .timezone, .machine, .enabled, .vaultVersion] | @tsv')" \
    "daily-app-backup	0 2 * * *	UTC	web-server-01	true	1"
not_contains "create schedule JSON hides queue_config secrets" "$out" "sched-pw-777"
out=$(ferry list team-schedules Operations --output json)
for f in scheduleName cron timezone machine enabled nextRun lastRun lastTaskId vaultVersion vaultContent; do
    eq "list team-schedules row has $f" "$(jqf "$out" ".data[0] | has(\"$f\")")" true
done
not_contains "list team-schedules hides secrets" "$out" "sched-pw-777"
text=$(ferry list team-schedules Operations)
contains "list team-schedules text shows the cron" "$text" "0 2 * * *"
# The seed disables a schedule by sending only the keys that change.
out=$(ferry update schedule-vault Operations daily-app-backup --vault '{
  "enabled": false,
  "disabled_reason": "Maintenance window",
  "disabled_until": "2024-01-15"
}' --output json)
eq "schedule-vault merges: enabled false, the rest survives" \
    "$(jqf "$out" '.data[0] | [.enabled, .cron, .machine, .vault.queue_config.repository, .vault.disabled_reason, .vaultVersion] | @tsv')" \
    "false	0 2 * * *	web-server-01	application	Maintenance window	2"
# ... and changes its time with a # comment in the vault, as the seed writes it.
out=$(ferry update schedule-vault Operations daily-app-backup --vault '{
  "cron": "0 4 * * 0",  # Changed from 3 AM to 4 AM
  "timezone": "America/New_York"
}' --vault-version 2 --output json)
eq "schedule-vault merge with # comments and the right version" \
    "$(jqf "$out" '.data[0] | [.cron, .timezone, .enabled, .vaultVersion] | @tsv')" "0 4 * * 0	America/New_York	false	3"
out=$(ferry update schedule-vault Operations daily-app-backup --vault '{"enabled":true}' --vault-version 2 2>&1); rc=$?
eq "schedule-vault with a stale version exits 1" "$rc" 1
contains "and says so" "$out" "vault version is 3, not 2"
out=$(ferry update schedule-vault Operations daily-app-backup --replace --vault '{"cron":"0 5 * * *","machine":"web-server-01","queue_config":{"function":"hello"}}' --output json)
eq "--replace replaces the schedule's vault" "$(jqf "$out" '.data[0].vault | keys | join(",")')" "cron,machine,queue_config"
out=$(ferry update schedule-vault Operations daily-app-backup --replace --vault '{"cron":"0 5 * * *"}' 2>&1); rc=$?
eq "a replacement that drops required keys is refused" "$rc" 1
contains "naming the missing key" "$out" '"machine"'
eq "the refused replacement wrote nothing" "$(ferry inspect schedule Operations daily-app-backup | jq -r .vaultVersion)" 4
out=$(ferry create schedule Operations bad-cron --vault '{"cron":"0 2 * * * *","machine":"web-server-01","queue_config":{"function":"hello"}}' 2>&1); rc=$?
eq "a bad cron is refused" "$rc" 1
contains "with the reason" "$out" "expected 5"
out=$(ferry create schedule Operations bad-tz --vault '{"cron":"0 2 * * *","timezone":"Mars/Olympus","machine":"web-server-01","queue_config":{"function":"hello"}}' 2>&1); rc=$?
eq "an unknown time zone is refused" "$rc" 1
out=$(ferry create schedule Operations ghost-sched --vault '{"cron":"0 2 * * *","machine":"ghost-machine","queue_config":{"function":"hello"}}' 2>&1); rc=$?
eq "a schedule for a missing machine is refused" "$rc" 1
contains "and names the fix" "$out" "ferry create machine Operations BRIDGE ghost-machine"
out=$(ferry create schedule Operations other-team --vault '{"cron":"0 2 * * *","machine":"staging-web-01","queue_config":{"function":"hello"}}' 2>&1); rc=$?
eq "a schedule for another team's machine is refused" "$rc" 1
contains "and names the owner" "$out" "belongs to team 'DevOps'"
eq "no refused schedule was written" "$(ferry list team-schedules Operations --output json | jq '.data | length')" 1

# --- referential errors name the fix ------------------------------------------------------------
refuse() { # refuse NAME EXPECTED-TEXT COMMAND...
    local name=$1 want=$2; shift 2
    local out rc
    out=$("$@" 2>&1); rc=$?
    eq "$name exits 1" "$rc" 1
    contains "$name names the fix" "$out" "$want"
    eq "$name: one line" "$(wc -l <<<"$out")" 1
}
refuse "bridge in a missing region" "ferry create region nowhere" ferry create bridge nowhere b9
refuse "machine of a missing team" "ferry create team Nobody" ferry create machine Nobody prod-bridge m9
refuse "machine on a missing bridge" "ferry create bridge REGION nowhere" ferry create machine Operations nowhere m9
refuse "storage of a missing team" "ferry create team Nobody" ferry create storage Nobody s9 --vault '{"provider":"local"}'
refuse "schedule of a missing team" "ferry create team Nobody" ferry create schedule Nobody s9 --vault '{"cron":"0 2 * * *","machine":"web-server-01","queue_config":{"function":"hello"}}'
refuse "duplicate team" "already exists" ferry create team Operations
refuse "duplicate machine name in another team" "unique across teams" ferry create machine DevOps eu-bridge web-server-01
refuse "rm a team that has machines" "remove them first" ferry rm team Operations
refuse "rm a region that has bridges" "remove them first" ferry rm region us-east
refuse "rm a bridge that has machines" "remove them first" ferry rm bridge prod-bridge
refuse "rm a missing schedule" "ferry create schedule Operations nope" ferry rm schedule Operations nope
ferry create queue-item Operations web-server-01 prod-bridge --vault '{"function":"hello"}' >/dev/null
refuse "rm a machine with unfinished items" "remove or cancel them first" ferry rm machine web-server-01
eq "names are case-sensitive" "$(ferry create team operations)" "Successfully created team operations"

# --- rm -----------------------------------------------------------------------------------------
eq "rm schedule" "$(ferry rm schedule Operations daily-app-backup)" "Successfully removed schedule daily-app-backup"
eq "rm storage" "$(ferry rm storage Operations s3-backups --output json | jq -r .message)" "Successfully removed storage s3-backups"
ferry queue cancel "$(ferry list queue --machine web-server-01 --output json | jq -r '.data[0].taskId')" >/dev/null
eq "rm machine once its items are cancelled" "$(ferry rm machine Operations web-server-01)" "Successfully removed machine web-server-01"
ferry rm machine all-servers >/dev/null
eq "rm team once empty" "$(ferry rm team Operations)" "Successfully removed team Operations"
eq "rm bridge once empty" "$(ferry rm bridge prod-bridge)" "Successfully removed bridge prod-bridge"
eq "rm region once empty" "$(ferry rm region us-east)" "Successfully removed region us-east"
eq "what is left" "$(ferry list teams --output json | jq -r '[.data[].teamName] | join(",")')" "DevOps,operations"
out=$(ferry inspect team Operations --output json); rc=$?
eq "inspect a removed team exits 1" "$rc" 1
eq "with the JSON failure envelope" "$(jqf "$out" '[.success, .data] | @tsv')" "false	"

# --- docs/cli.md: the generated command reference is current, and every field is described ---
doc=$FERRY_ROOT/docs/cli.md
"$FERRY_BIN" help --markdown >"$T_DIR/reference.md"
if diff -u <(sed -n '/^## Command reference$/,$p' "$doc") "$T_DIR/reference.md" >"$T_DIR/diff" 2>&1; then
    pass "docs/cli.md's command reference matches the command tables (ferry help --markdown)"
else
    fail "docs/cli.md's command reference matches the command tables (ferry help --markdown)" "$(head -20 "$T_DIR/diff")"
fi
missing=()
for f in taskId status healthStatus priority priorityLabel function teamName machineName bridgeName \
    createdTime createdDate assignedTime ageInMinutes retryCount lastFailureReason canBeCancelled \
    hasResponse totalDurationSeconds processingDurationSeconds vaultContent responseVault \
    queue_item request_vault response_vault timeline action details timestamp secondsSincePrevious \
    scheduleName cron timezone machine enabled nextRun lastRun lastTaskId vaultVersion \
    success data message error; do
    grep -qE "[\`\"]$f[\`\"]" "$doc" || missing+=("$f")
done
eq "docs/cli.md describes every JSON field of spec/cli.md" "${missing[*]}" ""

t_done
