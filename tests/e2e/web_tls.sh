#!/usr/bin/env bash
# ferry web over TLS (issue 16, point 1): with web.tls_cert and web.tls_key (a self-signed
# certificate made here by openssl) it answers HTTPS only, the login cookie is Secure, and
# half a TLS configuration, or a key that cannot be read, stops it with the reason.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/web.sh"

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$T_DIR/key.pem" -out "$T_DIR/cert.pem" \
    >/dev/null 2>&1 || { fail "openssl makes a certificate"; exit 1; }
chmod 600 "$T_DIR/key.pem"
write_config "web = { tls_cert = \"$T_DIR/cert.pem\"; tls_key = \"$T_DIR/key.pem\"; };"
ferry create team Ops >/dev/null
ferry create user ada >/dev/null
TOKEN=$(ferry create token ada --team Ops --role viewer --output json | jq -r .data.token)
start_web || exit 1
contains "it says it listens on https" "$WEB" "https://"
eq "healthz over TLS, the certificate checked" "$(curl -s --cacert "$T_DIR/cert.pem" "$WEB/healthz")" ok
eq "the API over TLS" "$(curl -s --cacert "$T_DIR/cert.pem" -H "Authorization: Bearer $TOKEN" "$WEB/api/v1/me" | jq -r .data.user)" ada
plain=${WEB/https:/http:}
c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$plain/healthz")
[[ $c != 200 ]] && pass "plain HTTP gets no answer ($c)" || fail "plain HTTP is refused" "got $c"
h=$(curl -s -D - -o /dev/null --cacert "$T_DIR/cert.pem" -X POST -d "{\"token\":\"$TOKEN\"}" "$WEB/api/v1/login")
contains "the session cookie is Secure over TLS" "$(grep -i '^set-cookie:' <<<"$h")" "Secure"
contains "... and HSTS is sent" "$h" "Strict-Transport-Security"
stop_web

write_config "web = { tls_cert = \"$T_DIR/cert.pem\"; };"
out=$(ferry web --listen 127.0.0.1:0 2>&1)
eq "a certificate without its key: exit 1" "$?" 1
contains "... saying both go together" "$out" "web.tls_cert and web.tls_key go together"
write_config "web = { tls_cert = \"$T_DIR/cert.pem\"; tls_key = \"$T_DIR/missing.pem\"; };"
out=$(ferry web --listen 127.0.0.1:0 2>&1)
contains "a key that cannot be read is named" "$out" "missing.pem"
out=$(ferry web --listen nowhere 2>&1)
eq "a --listen that is not ADDR:PORT: exit 1" "$?" 1
contains "... saying what it takes" "$out" "is not ADDR:PORT"
t_done
