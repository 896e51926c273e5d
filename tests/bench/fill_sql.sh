#!/usr/bin/env bash
# Queues many items into a SQLite store fast, for the benchmarks that need a big queue (list
# queue and host RSS with 1,000,000 items): one item is created through the store API
# (build/tests/bench_queue fill), then copied N-1 times by one INSERT … SELECT with fresh task
# ids, machines m0..m(M-1) in turn and priorities 1..5, and its trace events likewise.
# Columns are read from the table, so a new column is copied from the template as it is.
#   tests/bench/fill_sql.sh DB N FUNCTION MACHINES      (BQ: the bench_queue binary)
# Prints the items/s of the whole fill. Exits 1 when the store refuses the SQL.
set -euo pipefail
db=$1 n=$2 fn=$3 machines=$4
t0=$(date +%s%N)
"$BQ" fill "$db" 1 "$fn" "$machines" >/dev/null
[[ $n -gt 1 ]] || { echo 1; exit 0; }
special="'seq','task_id','machine_name','priority'"
cols=$(sqlite3 "$db" "SELECT group_concat(name, ',') FROM pragma_table_info('queue_items')
                      WHERE name NOT IN ($special)")
tcols=$(sed 's/[^,]*/t.&/g' <<<"$cols")
ecols=$(sqlite3 "$db" "SELECT group_concat(name, ',') FROM pragma_table_info('queue_events')
                       WHERE name NOT IN ('seq','task_seq')")
tecols=$(sed 's/[^,]*/e.&/g' <<<"$ecols")
# Written once and thrown away with the store: no journal while copying (a WAL would write
# every page twice), the store's own journal mode back afterwards.
mode=$(sqlite3 "$db" "PRAGMA journal_mode")
sqlite3 "$db" >/dev/null <<SQL
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
BEGIN;
CREATE TEMP TABLE tpl AS SELECT * FROM queue_items ORDER BY seq DESC LIMIT 1;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $n - 1)
INSERT INTO queue_items (task_id, machine_name, priority, $cols)
SELECT printf('%08x-%04x-4%03x-8%03x-%012x', abs(random()) % 4294967296, i % 65536,
              abs(random()) % 4096, abs(random()) % 4096, i),
       'm' || (i % $machines), i % 5 + 1, $tcols
FROM c, tpl t;
INSERT INTO queue_events (task_seq, $ecols)
SELECT q.seq, $tecols FROM queue_items q, queue_events e, tpl t
WHERE q.seq > t.seq AND e.task_seq = t.seq;
COMMIT;
PRAGMA journal_mode = $mode;
SQL
awk -v n="$n" -v ns="$(($(date +%s%N) - t0))" 'BEGIN { printf "%.0f\n", n * 1e9 / ns }'
