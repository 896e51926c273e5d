#!/usr/bin/env bash
# An S3-compatible server for tests (moto_server), on 127.0.0.1 only, that checks AWS SigV4
# signatures: it is started with INITIAL_NO_AUTH_ACTION_COUNT=3, and those three unsigned
# calls create an IAM user, give it every permission and create its access key; from then
# on every request must be signed with that key (a wrong secret gets 403
# SignatureDoesNotMatch). moto keeps everything in memory: a killed server loses it all.
#
# One fix is applied to the server: moto 5.2 checks a signature against the query string as
# it sees it after decoding ("prefix=a/b/" for "prefix=a%2Fb%2F"), so every correctly
# signed request with a '/' in a query value is refused, boto3's included. AWS
# canonicalizes the query by decoding each name and value and percent-encoding them again
# (all but A-Z a-z 0-9 - _ . ~) before sorting; the server here does the same.
#
#   moto.sh start DIR        starts the server on a free port, writes DIR/access_key_id,
#                            DIR/secret_access_key, DIR/port, DIR/moto.pid and DIR/moto.log,
#                            and prints the port.
#   moto.sh bucket DIR NAME  creates bucket NAME (a signed request, region us-east-1).
#   moto.sh session DIR      assumes a role (STS) with the user's key and writes its temporary
#                            credentials: DIR/session_access_key_id,
#                            DIR/session_secret_access_key and DIR/session_token.
#   moto.sh stop DIR         stops the server started in DIR and waits for it.
#
# Exits non-zero with a reason on stderr when the server cannot be started.
set -euo pipefail

cmd=${1:?usage: moto.sh start|bucket|session|stop DIR [NAME]}
dir=${2:?usage: moto.sh start|bucket|session|stop DIR [NAME]}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A TCP connect only: an HTTP request could spend one of the unsigned calls.
listening() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# The three unsigned calls: user, policy, key. Prints "AKID SECRET".
make_key() {
    python3 - "$1" <<'EOF'
import json, sys, boto3
iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="ferry-test")
iam.put_user_policy(UserName="ferry-test", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
k = iam.create_access_key(UserName="ferry-test")["AccessKey"]
print(k["AccessKeyId"], k["SecretAccessKey"])
EOF
}

# moto_server's main, with AWS's canonical query string (see above).
launcher='
import sys
from urllib.parse import quote, unquote
import botocore.auth

def canonical_query(self, parts):
    pairs = []
    for pair in parts.query.split("&") if parts.query else []:
        name, _, value = pair.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))

botocore.auth.SigV4Auth._canonical_query_string_url = canonical_query
from moto.server import main
sys.argv[0] = "moto_server"
main(sys.argv[1:])
'

start() {
    command -v moto_server >/dev/null || { echo "moto.sh: no moto_server on PATH" >&2; exit 1; }
    mkdir -p "$dir"
    chmod 700 "$dir"
    local attempt port
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        INITIAL_NO_AUTH_ACTION_COUNT=3 python3 -c "$launcher" -H 127.0.0.1 -p "$port" \
            </dev/null >"$dir/moto.log" 2>&1 &
        echo $! >"$dir/moto.pid"
        local end=$((SECONDS + 20)) up=0
        while ((SECONDS < end)); do
            if listening "$port"; then up=1; break; fi
            kill -0 "$(cat "$dir/moto.pid")" 2>/dev/null || break
            sleep 0.1
        done
        if ((up)); then
            local key
            if key=$(make_key "$port" 2>>"$dir/moto.log"); then
                echo "${key%% *}" >"$dir/access_key_id"
                echo "${key#* }" >"$dir/secret_access_key"
                chmod 600 "$dir/secret_access_key"
                echo "$port" >"$dir/port"
                echo "$port"
                return 0
            fi
        fi
        stop
    done
    echo "moto.sh: moto_server did not start; its log:" >&2
    tail -20 "$dir/moto.log" >&2 2>/dev/null || true
    exit 1
}

bucket() {
    local name=${3:?usage: moto.sh bucket DIR NAME}
    python3 - "$(cat "$dir/port")" "$(cat "$dir/access_key_id")" "$(cat "$dir/secret_access_key")" "$name" <<'EOF'
import sys, boto3
port, akid, secret, name = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id=akid, aws_secret_access_key=secret)
s3.create_bucket(Bucket=name)
EOF
}

session() {
    python3 - "$(cat "$dir/port")" "$(cat "$dir/access_key_id")" "$(cat "$dir/secret_access_key")" "$dir" <<'EOF'
import json, os, sys, boto3
port, akid, secret, d = sys.argv[1:]
kw = dict(endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
          aws_access_key_id=akid, aws_secret_access_key=secret)
iam, sts = boto3.client("iam", **kw), boto3.client("sts", **kw)
user = iam.get_user(UserName="ferry-test")["User"]["Arn"]
trust = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": user}, "Action": "sts:AssumeRole"}]}
try:
    role = iam.create_role(RoleName="ferry-test", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    iam.put_role_policy(RoleName="ferry-test", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
except iam.exceptions.EntityAlreadyExistsException:
    role = iam.get_role(RoleName="ferry-test")["Role"]
c = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="ferry-test")["Credentials"]
for name, value in (("session_access_key_id", c["AccessKeyId"]),
                    ("session_secret_access_key", c["SecretAccessKey"]),
                    ("session_token", c["SessionToken"])):
    with open(os.path.join(d, name), "w") as f:
        f.write(value + "\n")
EOF
    chmod 600 "$dir/session_secret_access_key" "$dir/session_token"
}

stop() {
    [[ -f $dir/moto.pid ]] || return 0
    local pid
    pid=$(cat "$dir/moto.pid")
    kill -CONT "$pid" 2>/dev/null || true # a test may have left it stopped
    kill "$pid" 2>/dev/null || true
    local end=$((SECONDS + 5))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/moto.pid"
}

case $cmd in
start) start ;;
bucket) bucket "$@" ;;
session) session ;;
stop) stop ;;
*) echo "usage: moto.sh start|bucket|session|stop DIR [NAME]" >&2; exit 2 ;;
esac
