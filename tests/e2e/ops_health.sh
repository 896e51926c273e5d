#!/usr/bin/env bash
# health_check (issue 7, point 5): an HTTP endpoint on loopback, through the host's http
# service; expected status and body, retries with an interval, the job's timeout bounding
# the tries, a path resolved against the machine's ip, method HEAD, and use by another
# function through the host's call service (as repo_pull's health_check parameter does).
. "$(dirname "$0")/../lib.sh"

# A test server: /health 200 "ok"; /flaky 503 for its first two requests, then 200;
# /down 500; /empty 204; any request is counted in OUT/hits-PATH.
cat >"$T_DIR/server.py" <<'EOF'
import http.server, os, socketserver, sys, threading
out = sys.argv[1]
hits = {}
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_HEAD(self):
        self.do_GET(send_body=False)
    def do_GET(self, send_body=True):
        path = self.path.split("?")[0]
        with lock:
            hits[path] = hits.get(path, 0) + 1
            n = hits[path]
            with open(os.path.join(out, "hits" + path.replace("/", "-")), "w") as f:
                f.write(str(n))
        status, body = {"/health": (200, b"ok"), "/down": (500, b"broken"), "/empty": (204, b"")}.get(path, (404, b"no"))
        if path == "/flaky":
            status, body = (503, b"starting") if n <= 2 else (200, b"ready")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
s = S(("127.0.0.1", 0), H)
with open(os.path.join(out, "port.tmp"), "w") as f:
    f.write(str(s.server_address[1]))
os.rename(os.path.join(out, "port.tmp"), os.path.join(out, "port"))
threading.Timer(600, s.shutdown).start()
s.serve_forever()
EOF
python3 "$T_DIR/server.py" "$T_DIR" & T_EXTRA_PIDS=$!
wait_for 10 test -s "$T_DIR/port" || { fail "the test server starts"; t_done; exit 1; }
hp=$(cat "$T_DIR/port")
closed=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

write_config 'timeouts = { default = 30; grace = 1; };' 'retry = { max_retries = 0; };' \
    'lease = { poll_ms = 100; };' 'workers = { count = 8; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
setup_local_machine Ops m1
for m in m2 m3 m4 m5 m6 m7 m8; do ferry create machine Ops local $m --vault '{"connection":"local"}' >/dev/null; done
# A remote machine: health_check needs no SSH, only its address.
ferry create machine Ops local web1 --vault '{"ip":"127.0.0.1","user":"root","ssh_port":22}' >/dev/null
start_host

status_is() { [[ $(task_status "$1") == "$2" ]]; }
wait_st() { wait_for "${3:-20}" status_is "$1" "$2"; }
q() { ferry create queue-item Ops "$1" local --vault "$2" --output json | jq -r '.data[0].taskId'; }
res() { ferry list queue --task-id "$1" --output json | jq -c '.data[0].responseVault'; }
timeline() { ferry queue trace "$1" --output json | jq -r '.data.timeline[] | "\(.action) \(.details)"'; }

url=http://127.0.0.1:$hp
ok=$(q m1 "{\"function\":\"health_check\",\"endpoint\":\"$url/health\"}")
path=$(q web1 "{\"function\":\"health_check\",\"endpoint\":\"/health\",\"port\":$hp,\"expect_body\":\"ok\"}")
flaky=$(q m2 "{\"function\":\"health_check\",\"endpoint\":\"$url/flaky\",\"retries\":5,\"interval\":0.2}")
down=$(q m3 "{\"function\":\"health_check\",\"endpoint\":\"$url/down\",\"retries\":2,\"interval\":0.1}")
empty=$(q m4 "{\"function\":\"health_check\",\"endpoint\":\"$url/empty\",\"expected_status\":204}")
body=$(q m5 "{\"function\":\"health_check\",\"endpoint\":\"$url/health\",\"expect_body\":\"ready\",\"retries\":0}")
refused=$(q m6 "{\"function\":\"health_check\",\"endpoint\":\"http://127.0.0.1:$closed/health\",\"retries\":1,\"interval\":0.1}")
start=$SECONDS
bounded=$(q m7 "{\"function\":\"health_check\",\"endpoint\":\"$url/gone\",\"retries\":100,\"interval\":1,\"timeout\":3}")
for t in "$ok" "$path" "$flaky" "$empty"; do wait_st "$t" COMPLETED 20; done
for t in "$down" "$body" "$refused" "$bounded"; do wait_st "$t" FAILED 20; done

r=$(res "$ok")
eq "a healthy endpoint passes at the first try" "$(jq -r '[.status, .result.healthy, .result.status, .result.attempts] | @tsv' <<<"$r")" $'COMPLETED\ttrue\t200\t1'
eq "a path is resolved against the machine's ip" "$(res "$path" | jq -r .result.url)" "$url/health"
r=$(res "$flaky")
eq "a service that comes up is waited for" "$(jq -r '[.status, .result.attempts, .result.body] | @tsv' <<<"$r")" $'COMPLETED\t3\tready'
contains "each try is in the trace" "$(timeline "$flaky")" "GET $url/flaky: try 1: HTTP 503, expected 200"
r=$(res "$down")
eq "an endpoint that stays down fails" "$(jq -r .error.code <<<"$r")" unhealthy
contains "after 1 + retries tries" "$(jq -r .error.message <<<"$r")" "HTTP 500, expected 200 after 3 tries"
eq "the server saw exactly those tries" "$(cat "$T_DIR/hits-down")" 3
eq "expected_status 204 is healthy" "$(res "$empty" | jq -r .result.status)" 204
contains "expect_body must be in the body" "$(res "$body" | jq -r .error.message)" "lacks 'ready'"
contains "a refused connection is unhealthy" "$(res "$refused" | jq -r .error.message)" "no answer"
r=$(res "$bounded")
eq "the job's timeout bounds the tries: it fails, not times out" "$(jq -r .error.outcome <<<"$r")" FAIL
n=$(jq -r .result.attempts <<<"$r")
((n >= 2 && n <= 4)) && pass "and stops within it ($n tries)" || fail "and stops within it" "$r"

# method HEAD (issue 13, point 11): the answer has a Content-Length and no body.
head=$(q m1 "{\"function\":\"health_check\",\"endpoint\":\"$url/health\",\"method\":\"HEAD\",\"request_timeout\":5,\"retries\":0}")
headdown=$(q m2 "{\"function\":\"health_check\",\"endpoint\":\"$url/down\",\"method\":\"HEAD\",\"request_timeout\":5,\"retries\":0}")
wait_st "$head" COMPLETED 20
wait_st "$headdown" FAILED 20
r=$(res "$head")
eq "method HEAD is healthy on a 200" "$(jq -r '[.status, .result.status, .result.attempts] | @tsv' <<<"$r")" $'COMPLETED\t200\t1'
jq -e '.status == "COMPLETED" and (.result.duration_ms // 99999) < 4000' <<<"$r" >/dev/null &&
    pass "without waiting for a body" || fail "without waiting for a body" "$r"
contains "and sees a 500 as unhealthy" "$(res "$headdown" | jq -r .error.message)" "HEAD $url/down: HTTP 500, expected 200"

# Inside another function, through the host's call service (repo_pull's way).
t=$(q m8 "{\"function\":\"fx_call\",\"target\":\"health_check\",\"target_params\":{\"endpoint\":\"/health\",\"port\":$hp,\"timeout\":300,\"retries\":5}}")
wait_st "$t" COMPLETED 20
eq "another function calls it through the host" "$(res "$t" | jq -r '[.result.code, .result.result.healthy] | @tsv')" $'0\ttrue'
tl=$(timeline "$t")
contains "the call is in the caller's trace" "$tl" "CALL fx_call called health_check"
contains "with its outcome" "$tl" "CALL_DONE health_check OK"

stop_host
t_done
