#!/usr/bin/env bash
# Notification wires (issue 17, point 4): signed webhooks (HMAC-SHA256 over timestamp and
# body, checked here with openssl and with the Python snippet of docs/guide.md), URLs to
# link-local and metadata addresses refused without a request, loopback allowed, and SMTP
# with a password only over TLS unless smtp.tls = "none".
. "$(dirname "$0")/../lib.sh"

rx=$T_DIR/rx
start_receivers "$rx"
# A webhook receiver that keeps each POST's headers and its exact body (hook-N.headers/.body).
hx=$T_DIR/hx
mkdir -p "$hx"
python3 "$FERRY_ROOT/tests/helpers/hook_receiver.py" "$hx" &
T_EXTRA_PIDS="${T_EXTRA_PIDS:-} $!"
wait_for 10 test -s "$hx/port" || { fail "webhook receiver started"; t_done; exit 1; }
hook_port=$(cat "$hx/port")
hook=http://127.0.0.1:$hook_port/hook

header() { sed -n "s/^$2: //Ip" "$hx/hook-$1.headers" | tr -d '\r'; }
# openssl_sig SECRET STAMP BODYFILE: the v1= signature as a receiver computes it with openssl.
openssl_sig() { printf 'v1=%s' "$({ printf '%s.' "$2"; cat "$3"; } | openssl dgst -sha256 -hmac "$1" -hex | sed 's/^.*= //')"; }

# 1. Signed with notify.webhook_secret (ferry notify test), to loopback (allowed).
write_config 'notify = { webhook_secret = "conf-hook-key-1"; };'
out=$(ferry notify test "$hook" 2>&1)
contains "a webhook to loopback is delivered" "$out" "delivered a test notification"
wait_for 5 test -e "$hx/hook-1.headers"
ts=$(header 1 X-Ferry-Timestamp)
sig=$(header 1 X-Ferry-Signature)
now=$(date +%s)
((ts > now - 60 && ts <= now)) && pass "X-Ferry-Timestamp is the time of sending ($ts)" || fail "X-Ferry-Timestamp is the time of sending" "ts=$ts now=$now"
[[ $sig =~ ^v1=[0-9a-f]{64}$ ]] && pass "X-Ferry-Signature is v1= and 64 hex digits" || fail "X-Ferry-Signature is v1= and 64 hex digits" "$sig"
eq "openssl verifies HMAC-SHA256(secret, TIMESTAMP.BODY)" "$(openssl_sig conf-hook-key-1 "$ts" "$hx/hook-1.body")" "$sig"
sed 's/TEST/PWNED/' "$hx/hook-1.body" >"$T_DIR/tampered"
ne() { [[ $2 != "$3" ]] && pass "$1" || fail "$1" "both are $2"; }
ne "a tampered body fails verification" "$(openssl_sig conf-hook-key-1 "$ts" "$T_DIR/tampered")" "$sig"
ne "another timestamp fails verification" "$(openssl_sig conf-hook-key-1 "$((ts - 1))" "$hx/hook-1.body")" "$sig"
ne "another key fails verification" "$(openssl_sig other-key "$ts" "$hx/hook-1.body")" "$sig"
# The Python snippet of docs/guide.md, run as documented.
# snippet NAME: the fenced block of docs/guide.md that starts with "# NAME", dedented.
snippet() { sed -n "/^ *# $1\$/,/^ *\`\`\`\$/p" "$FERRY_ROOT/docs/guide.md" | sed '$d; s/^  //'; }
py=$(snippet verify_ferry_webhook.py)
[[ -n $py ]] && pass "docs/guide.md has the Python verify snippet" || fail "docs/guide.md has the Python verify snippet"
verify_py() { python3 -c "$py
import sys
body = open(sys.argv[3], 'rb').read()
sys.exit(0 if verify(sys.argv[1].encode(), sys.argv[2], sys.argv[4], body, now=int(sys.argv[2])) else 1)" "$@"; }
verify_py conf-hook-key-1 "$ts" "$hx/hook-1.body" "$sig" && pass "the documented Python check accepts it" || fail "the documented Python check accepts it"
verify_py conf-hook-key-1 "$ts" "$T_DIR/tampered" "$sig" && fail "the documented Python check refuses a tampered body" || pass "the documented Python check refuses a tampered body"
# The bash snippet of docs/guide.md, run as documented.
sh=$(snippet verify_ferry_webhook.sh)
verify_sh() { SECRET=$1 TS=$2 BODY_FILE=$3 SIG=$4 bash -c "$sh"; }
verify_sh conf-hook-key-1 "$ts" "$hx/hook-1.body" "$sig" >/dev/null 2>&1 && pass "the documented openssl check accepts it" || fail "the documented openssl check accepts it"
verify_sh conf-hook-key-1 "$ts" "$T_DIR/tampered" "$sig" >/dev/null 2>&1 && fail "the documented openssl check refuses a tampered body" || pass "the documented openssl check refuses a tampered body"

# Without a secret: unsigned.
write_config
ferry notify test "$hook" >/dev/null 2>&1
wait_for 5 test -e "$hx/hook-2.headers"
eq "without a secret no signature is sent" "$(header 2 X-Ferry-Signature)" ""

# 2. Link-local and metadata addresses: refused before any connection, however spelt.
for url in http://169.254.169.254/latest/meta-data/ http://0xa9fea9fe/ "http://[::ffff:169.254.169.254]/" \
    "http://[fe80::1]:8080/" http://100.100.100.200/ "http://[fd00:ec2::254]/"; do
    t0=$(date +%s%N)
    out=$(ferry notify test "$url" 2>&1) && fail "$url is refused" "$out"
    ms=$((($(date +%s%N) - t0) / 1000000))
    contains "$url is refused, naming the rule" "$out" "is a link-local or cloud metadata address (notify.allow_link_local_urls = true allows it)"
    ((ms < 2000)) || fail "$url is refused at once" "${ms} ms"
done
not_contains "the refusal shows no secret" "$out" "hook-key"
# localhost (a name) is loopback: allowed.
ferry notify test "http://localhost:$hook_port/hook" >/dev/null 2>&1 && pass "a name resolving to loopback is allowed" || fail "a name resolving to loopback is allowed"
# Through a proxy from the environment (here the hook receiver, which would record the POST):
# an address in the URL is still refused, and nothing reaches the proxy.
out=$(http_proxy=http://127.0.0.1:$hook_port ferry notify test http://169.254.169.254/latest/ 2>&1)
contains "through http_proxy a metadata address is still refused" "$out" "refused: 169.254.169.254 is a link-local"
out=$(http_proxy=http://u:p@127.0.0.1:$hook_port ferry notify test "http://x:y@[fe80::a9fe:a9fe%25eth0]:80/" 2>&1)
contains "... however spelt (userinfo, zone id)" "$out" "refused: fe80::a9fe:a9fe is a link-local"
sleep 0.3
[[ ! -e $hx/hook-4.body ]] && pass "nothing reached the proxy" || fail "nothing reached the proxy" "$(head -c 300 "$hx/hook-4.body")"
write_config 'notify = { allow_link_local_urls = true; };'
out=$(ferry notify test "http://[fe80::1]:9/" 2>&1)
not_contains "notify.allow_link_local_urls lets it through (it then fails to connect)" "$out" "link-local or cloud metadata address"

# 3. SMTP with a password: TLS required unless smtp.tls = "none".
smtp="url = \"smtp://127.0.0.1:$smtp_port\"; from = \"ferry@test.local\"; username = \"mailer\"; password = \"smtp-pw-77\";"
write_config "smtp = { $smtp };"
out=$(ferry notify test ops@company.com 2>&1) && fail "smtp:// with a password and no STARTTLS fails" "$out"
contains "smtp:// with a password and no STARTTLS fails clearly" "$out" "the server offers no STARTTLS, and ferry sends a password only over TLS"
not_contains "the error shows no password" "$out" "smtp-pw-77"
sleep 0.3
[[ ! -e $rx/mail-1.txt ]] && pass "no mail went out in clear" || fail "no mail went out in clear"
write_config "smtp = { $smtp tls = \"none\"; };"
out=$(ferry notify test ops@company.com 2>&1)
contains "smtp.tls = \"none\" sends it" "$out" "delivered a test notification"
wait_for 5 test -e "$rx/mail-1.txt"
contains "the test mail receiver got it" "$(cat "$rx/mail-1.txt" 2>/dev/null)" "TO <ops@company.com>"
write_config "smtp = { $smtp tls = \"maybe\"; };"
out=$(ferry notify test ops@company.com 2>&1)
contains "a bad smtp.tls is refused" "$out" "smtp.tls is 'maybe'; use \"auto\", \"required\" or \"none\""
write_config "smtp = { url = \"smtp://127.0.0.1:$smtp_port\"; };"
ferry notify test ops2@company.com >/dev/null 2>&1 && pass "without a password smtp:// sends as before" || fail "without a password smtp:// sends as before"
write_config "smtp = { url = \"smtp://127.0.0.1:$smtp_port\"; tls = \"required\"; };"
out=$(ferry notify test ops3@company.com 2>&1) && fail "smtp.tls = \"required\" needs STARTTLS even without a password" "$out"
contains "smtp.tls = \"required\" needs STARTTLS even without a password" "$out" "offers no STARTTLS, and ferry sends mail only over TLS"
t_done
