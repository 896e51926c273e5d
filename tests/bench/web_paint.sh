#!/usr/bin/env bash
# The dashboard's first paint with a big queue (issue 16 point 4: "first paint in <= 1 s with
# 1,000,000 items"): a SQLite store filled by fill_sql.sh (BENCH_BIG items, default
# 1,000,000), `ferry web` on it, and Debian's chromium (playwright-core, as in
# tests/e2e/web_browser.sh) loading the overview and the queue, signed in. Prints, per view,
# the first contentful paint (the page's frame), the time until its data is on screen
# (counts, tables), and ferry web's CPU time for the whole run. Printed, never asserted.
#   tests/bench/web_paint.sh            (BUILD=build; run.sh runs it as section "paint")
set -uo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$ROOT"
BUILD=${BUILD:-build}
OWN_W=
if [[ -z ${W:-} ]]; then W=$(mktemp -d /tmp/ferry-bench.XXXXXX); OWN_W=1; fi
. tests/bench/lib.sh
BIG=${BENCH_BIG:-1000000}
NODE_MODULES=$ROOT/$BUILD/node_modules
PW_VERSION=$(sed -n 's/^PW_VERSION=\([0-9.]*\).*/\1/p' tests/e2e/web_browser.sh)
WEB_PID=
done_() { [[ -n $WEB_PID ]] && kill "$WEB_PID" 2>/dev/null && wait "$WEB_PID" 2>/dev/null; [[ -n $OWN_W ]] && rm -rf "$W"; }
trap done_ EXIT

echo "== dashboard first paint, $BIG items (SQLite; chromium headless, playwright-core) =="
if ! command -v chromium >/dev/null; then row "dashboard first paint" "no chromium"; exit 0; fi
if [[ $(jq -r .version "$NODE_MODULES/playwright-core/package.json" 2>/dev/null) != "$PW_VERSION" ]]; then
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$ROOT/$BUILD" --no-save --no-package-lock --no-audit \
        --no-fund --loglevel=error "playwright-core@$PW_VERSION" >"$W/npm.log" 2>&1 ||
        { row "dashboard first paint" "npm failed"; exit 0; }
fi
setup paint
if ! BQ=$BQ tests/bench/fill_sql.sh "$DB" "$BIG" fx_noop 100 >/dev/null 2>"$W/fill.err"; then
    row "dashboard first paint" "fill failed: $(head -1 "$W/fill.err")"; exit 0
fi
# The filled items are an hour old, as a big queue is: the event stream starts with the last
# minute's changes, and a million of them would be a benchmark of that burst instead.
sqlite3 "$DB" "UPDATE queue_items SET created_at = created_at - 3600000, updated_at = updated_at - 3600000,
               run_after = run_after - 3600000" || { row "dashboard first paint" "aging failed"; exit 0; }
"$FERRY" create user bench >/dev/null
token=$("$FERRY" create token bench --team Ops --role viewer --output json | jq -r .data.token)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
"$FERRY" web --listen "127.0.0.1:$port" >"$W/web.log" 2>&1 &
WEB_PID=$!
for _ in $(seq 100); do curl -fsS "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$url/healthz" >/dev/null 2>&1 ||
    { row "dashboard first paint" "ferry web did not start: $(tail -1 "$W/web.log")"; exit 0; }
t0=$(awk '{ print $14 + $15 }' "/proc/$WEB_PID/stat")
FERRY_WEB=$url FERRY_TOKEN=$token NODE_MODULES=$NODE_MODULES WEB_PROFILE=$W/profile \
    node tests/bench/web_paint.js >"$W/paint.out" 2>"$W/paint.err"
while IFS='|' read -r name value; do row "$name" "$value"; done <"$W/paint.out"
fcp=$(sed -n 's/^overview: first contentful paint (ms)|//p' "$W/paint.out")
ready=$(sed -n 's/^queue: data on screen (ms)|//p' "$W/paint.out")
summary "dashboard first paint, $BIG items (ms)" "${fcp:--}" "-" "-" "<= 1000" "$(verdict "${fcp:-x}" "<=" 1000)"
summary "dashboard queue page on screen, $BIG items (ms)" "${ready:--}" "-" "-" "(information)" "-"
t1=$(awk '{ print $14 + $15 }' "/proc/$WEB_PID/stat")
row "ferry web CPU for the page loads (ms)" "$(( (t1 - t0) * 1000 / $(getconf CLK_TCK) ))"
[[ -s $W/paint.err ]] && sed 's/^/# /' "$W/paint.err" | head -5
echo
