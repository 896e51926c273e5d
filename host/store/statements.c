/*
 * Every statement of the store, once, for every driver (see statements.h and engine.h).
 * Parameters are ?N; {name} is a fragment of the driver's dialect, {name:N} one that takes
 * parameter N. Writes that a PostgreSQL batch may replay after a reconnect carry guards
 * (status, claim token, vault version) so that a replay changes the same rows or none.
 */
#include "statements.h"

#include "store.h"

/* The columns of struct store_item_cols, in the order eng_item_row reads them: the item's
 * own (ITEM_OWN_COLS), then its dependencies'. */
#define ITEM_OWN_COLS                                                                              \
    "q.task_id, q.status, q.function, q.team_name, q.machine_name, q.bridge_name,"                 \
    " q.priority, q.vault, q.response_vault, q.created_at, q.updated_at, q.run_after,"             \
    " q.assigned_at, q.started_at, q.finished_at, q.retry_count, q.last_retry_at,"                 \
    " q.last_failure_reason, q.lease_owner, q.claim_token, q.lease_expires_at,"                    \
    " q.progress_percent, q.progress_message, q.parent_task_id, q.link_kind,"                      \
    " q.schedule_name, q.schedule_fire_at, q.idempotent"
/* ITEM_OWN_COLS as struct store_item reads them (eng_item_struct): the columns it does not
 * hold are NULL, which the engine does not have to decode from the row. */
#define ITEM_STRUCT_COLS                                                                           \
    "q.task_id, q.status, q.function, q.team_name, q.machine_name, q.bridge_name,"                 \
    " q.priority, q.vault, NULL, q.created_at, NULL, NULL, NULL, q.started_at, NULL,"              \
    " q.retry_count, NULL, NULL, q.lease_owner, q.claim_token, q.lease_expires_at, NULL, NULL,"    \
    " q.parent_task_id, q.link_kind, q.schedule_name, NULL, q.idempotent"
#define ITEM_COLS                                                                                  \
    ITEM_OWN_COLS ","                                                                              \
    " (SELECT {deps_csv} FROM queue_deps d JOIN queue_items p"                                     \
    " ON p.seq = d.dep_seq WHERE d.task_seq = q.seq),"                                             \
    " (SELECT CASE WHEN max(CASE WHEN p.status <> 'COMPLETED' THEN 1 ELSE 0 END) = 1 THEN -1"      \
    " ELSE coalesce(max(p.finished_at), 0) END FROM queue_deps d JOIN queue_items p"               \
    " ON p.seq = d.dep_seq WHERE d.task_seq = q.seq)"

/* 64 copies of a VALUES row, comma-separated (ITEM_ROWS). */
#define ROWS2(r)  r ", " r
#define ROWS64(r) ROWS2(ROWS2(ROWS2(ROWS2(ROWS2(ROWS2(r))))))

#define ACTIVE "('ASSIGNED','PROCESSING','CANCELLING')"
#define ENDED  "('COMPLETED','FAILED','CANCELLED')"
/* The counts by status of the items that match cond (SQL text ending in a condition, or
 * empty): each unheld status a range of qi_unheld_created, which a query uses only when it
 * names the status as a literal (SQLite migration 13), and the active set through
 * qi_machine_active. */
#define COUNT_OF(cond, st)                                                                         \
    "SELECT '" st "', count(*) FROM queue_items WHERE " cond "status = '" st "' UNION ALL "
#define COUNTS_BY_STATUS(cond)                                                                     \
    COUNT_OF(cond, "PENDING") COUNT_OF(cond, "COMPLETED") COUNT_OF(cond, "FAILED")                 \
    COUNT_OF(cond, "CANCELLED") "SELECT status, count(*) FROM queue_items WHERE " cond ACTIVE_EQ   \
    " GROUP BY status"

/* The "every dependency COMPLETED" test of a candidate (alias). A store without any
 * dependency (the common case) answers it once per statement: the first test is
 * uncorrelated, so the engine evaluates it once, and the second, a look-up per candidate
 * (about 1,400 instructions on SQLite), is then never run. */
#define DEPS_DONE_OF(alias)                                                                        \
    " AND (NOT EXISTS (SELECT 1 FROM queue_deps) OR NOT EXISTS (SELECT 1 FROM queue_deps d"        \
    " JOIN queue_items p ON p.seq = d.dep_seq WHERE d.task_seq = " alias ".seq"                    \
    " AND p.status <> 'COMPLETED'))"
#define DEPS_DONE DEPS_DONE_OF("q")

/* 1 when some item is `after` the row's item, else 0. */
#define HAS_DEPENDENTS                                                                             \
    "CASE WHEN EXISTS (SELECT 1 FROM queue_deps d WHERE d.dep_seq = queue_items.seq)"              \
    " THEN 1 ELSE 0 END"

/* The change of a final end (?2 status, ?3 response, ?4 now, ?5 reason): S_FINISH_FINAL and
 * S_FINISH_SEQ. */
#define FINISH_FINAL_SET                                                                           \
    "UPDATE queue_items SET status = ?2, response_vault = coalesce(?3, response_vault),"           \
    " finished_at = ?4, updated_at = ?4, lease_expires_at = NULL, claim_token = NULL,"             \
    " last_failure_reason = CASE WHEN ?2 = 'FAILED' THEN coalesce(?5, last_failure_reason)"       \
    " WHEN ?2 = 'COMPLETED' THEN NULL ELSE last_failure_reason END,"                             \
    " progress_percent = CASE WHEN ?2 = 'COMPLETED' THEN NULL ELSE progress_percent END,"         \
    " progress_message = CASE WHEN ?2 = 'COMPLETED' THEN NULL ELSE progress_message END"

/* S_EVENTS_INSERT_4 and _16: each row's task_seq, action, details, at and actor, numbered
 * in order (SQLite numbers a bare ? after the one before it). {or_fail}: a statement of
 * several rows that may fail after its first row must undo itself, and SQLite keeps a
 * statement journal for that (a copy of every page it changes); none of these rows can fail
 * (no value is NULL, no key is given, no trigger), so there is nothing to undo. */
#define EVENTS_INSERT                                                                              \
    "INSERT {or_fail} INTO queue_events (task_seq, action, details, details_is_json, at,"          \
    " actor) VALUES "
#define EVENT_ROW    "(?, ?, ?, 0, ?, ?)"
#define EVENT_ROWS_4 EVENT_ROW ", " EVENT_ROW ", " EVENT_ROW ", " EVENT_ROW

#define REF_COLS "SELECT seq, task_id, status, retry_count, bridge_name FROM queue_items"
#define BY_ID    " WHERE task_id = ?1"
#define BY_PREFIX                                                                                  \
    " WHERE task_id >= ?1 AND task_id < ?1 || '~' ORDER BY task_id LIMIT 2"

/* Resource row columns (struct store_resource_cols in order). */
#define RES_PLAIN(table)                                                                           \
    "SELECT name, NULL, NULL, NULL, vault, vault_version, created_at, updated_at,"                 \
    " NULL, NULL, NULL FROM " table
#define RES_BRIDGE                                                                                 \
    "SELECT name, NULL, NULL, region_name, vault, vault_version, created_at, updated_at,"          \
    " NULL, NULL, NULL FROM bridges"
#define RES_MACHINE                                                                                \
    "SELECT m.name, m.team_name, m.bridge_name, b.region_name, m.vault, m.vault_version,"          \
    " m.created_at, m.updated_at, NULL, NULL, NULL"                                                \
    " FROM machines m LEFT JOIN bridges b ON b.name = m.bridge_name"
#define RES_STORAGE                                                                                \
    "SELECT name, team_name, NULL, NULL, vault, vault_version, created_at, updated_at,"            \
    " NULL, NULL, NULL FROM storages"
#define RES_SCHEDULE                                                                               \
    "SELECT name, team_name, NULL, NULL, vault, vault_version, created_at, updated_at,"            \
    " next_run_at, last_run_at, last_task_id FROM schedules"
#define RES_GROUP                                                                                  \
    "SELECT name, team_name, NULL, NULL, vault, vault_version, created_at, updated_at,"            \
    " NULL, NULL, NULL FROM machine_groups"

/* Resource parameters: ?1 team, ?2 name, ?3 vault, ?4 now, ?5 parent (region of a bridge,
 * bridge of a machine), ?6 concurrency, ?7 the vault version read before an update. */
#define VAULT_SET "SET vault = ?3, vault_version = vault_version + 1, updated_at = ?4"

#define RES(kind, get, list, list_in, exists, insert, update, remove, lock)                        \
    [S_RES_GET + kind] = {get, 0}, [S_RES_LIST + kind] = {list, 0},                                \
    [S_RES_LIST_IN + kind] = {list_in, 0}, [S_RES_EXISTS + kind] = {exists, 0},                    \
    [S_RES_INSERT + kind] = {insert, 0}, [S_RES_UPDATE + kind] = {update, 0},                      \
    [S_RES_DELETE + kind] = {remove, 0},                                                           \
    [S_RES_LOCK_CHANGE + kind] = {lock "{lock_update}", STMT_LOCK_ONLY},                           \
    [S_RES_LOCK_DELETE + kind] = {lock "{lock_delete}", STMT_LOCK_ONLY}

_Static_assert(S_RES_LIST - S_RES_GET == STORE_KIND_COUNT,
               "statements.h spaces the S_RES_* families by the number of resource kinds");

const char *const store_fragment_names[F_COUNT] = {
    [F_DEPS_CSV] = "deps_csv",
    [F_LOCK_SHARE] = "lock_share",
    [F_LOCK_KEY_SHARE] = "lock_key_share",
    [F_LOCK_UPDATE] = "lock_update",
    [F_LOCK_DELETE] = "lock_delete",
    [F_LOCK_UPDATE_OF_T] = "lock_update_of_t",
    [F_LOCK_SKIP] = "lock_skip",
    [F_INDEX_CLAIM] = "index_claim",
    [F_INDEX_MACHINE_ACTIVE] = "index_machine_active",
    [F_INDEX_CLAIM_MACHINE] = "index_claim_machine",
    [F_JSON_TEXTS] = "json_texts",
    [F_JSON_SEQS] = "json_seqs",
    [F_JSON_FINISHES] = "json_finishes",
    [F_COLLATE_DEFAULT] = "collate_default",
    [F_NOW_MS] = "now_ms",
    [F_OR_FAIL] = "or_fail",
};

/* The end of S_CLAIM_FREE_HEADS and S_CLAIM_NAMED_HEADS, over their machines m (seq, name,
 * priority, created, run_after: each machine's first PENDING item on bridge ?1): for each
 * machine with a free slot, its head after the key (?3, ?4, ?5) at ?2 (seq, machine,
 * priority, created), its free slots, its concurrency, 1 when the head is its first
 * PENDING item, and the head's run_after. A machine with a free slot and no ready item
 * after the key gives a row without an item (seq NULL, the LEFT JOIN): the claim remembers
 * it as one that may take an item once it is ready. See S_CLAIM_FREE_HEADS. The first
 * PENDING item is the head whenever it is ready (f.ready): its columns come from m, and
 * only otherwise is the head looked for and its row read (reading again the row m read
 * cost about 700 instructions a machine). */
#define FREE_HEAD_COL(col) "CASE WHEN f.ready = 1 THEN f." col " ELSE q." col " END"
#define FREE_HEADS_OF_M                                                                            \
    " SELECT " FREE_HEAD_COL("seq") ", f.name, " FREE_HEAD_COL("priority") ","                     \
    " CASE WHEN f.ready = 1 THEN f.created ELSE q.created_at END, f.free, f.conc, f.ready, "       \
    FREE_HEAD_COL("run_after")                                                                     \
    " FROM (SELECT m.seq, m.name, m.priority, m.created, m.run_after,"                             \
    " coalesce(mc.concurrency, 1) AS conc, coalesce(mc.concurrency, 1) - (SELECT count(*)"         \
    " FROM queue_items {index_machine_active} WHERE machine_name = m.name AND " ACTIVE_EQ ")"       \
    " AS free, CASE WHEN m.run_after <= ?2 AND (m.priority, m.created, m.seq)"                     \
    " > (?3, ?4, ?5)" DEPS_DONE_OF("m") " THEN 1 ELSE 0 END AS ready"                               \
    " FROM m LEFT JOIN machines mc ON mc.name = m.name"                                            \
    " LIMIT 9223372036854775807) AS f LEFT JOIN queue_items q"                                     \
    " ON q.seq = CASE WHEN f.ready = 0 THEN (SELECT i.seq"                                         \
    " FROM queue_items i {index_claim_machine} WHERE i.status = 'PENDING'"                         \
    " AND i.bridge_name = ?1 AND i.machine_name = f.name"                                          \
    " AND i.run_after <= ?2 AND (i.priority, i.created_at, i.seq)"                                 \
    " > (?3, ?4, ?5)" DEPS_DONE_OF("i") " ORDER BY i.priority, i.created_at, i.seq LIMIT 1) END"   \
    " WHERE f.free > 0"

const struct stmt_def store_statements[S_COUNT] = {
    [S_ITEM_BY_SEQ] = {"SELECT " ITEM_COLS " FROM queue_items q WHERE q.seq = ?1", 0},
    [S_RESOLVE_FULL] = {REF_COLS BY_ID, 0},
    [S_RESOLVE_FULL_SHARE] = {REF_COLS BY_ID "{lock_share}", 0},
    [S_RESOLVE_FULL_UPDATE] = {REF_COLS BY_ID "{lock_update}", 0},
    [S_RESOLVE_FULL_DELETE] = {REF_COLS BY_ID "{lock_delete}", 0},
    [S_RESOLVE_PREFIX] = {REF_COLS BY_PREFIX, 0},
    [S_RESOLVE_PREFIX_SHARE] = {REF_COLS BY_PREFIX "{lock_share}", 0},
    [S_RESOLVE_PREFIX_UPDATE] = {REF_COLS BY_PREFIX "{lock_update}", 0},
    [S_RESOLVE_PREFIX_DELETE] = {REF_COLS BY_PREFIX "{lock_delete}", 0},
    [S_COUNTS_ALL] = {COUNTS_BY_STATUS(""), 0},
    [S_COUNTS_BRIDGE] = {COUNTS_BY_STATUS("bridge_name = ?1 AND "), 0},
    /* 1 while a bridge has an item PENDING (through the claim's partial index) or held (the
     * active set, at most the machines' concurrency), else 0: `serve --drain` asks it when
     * no attempt runs. Counting by status instead read every ended item of the bridge. */
    [S_BRIDGE_HAS_WORK] = {"SELECT CASE WHEN EXISTS (SELECT 1 FROM queue_items {index_claim}"
                           " WHERE bridge_name = ?1 AND status = 'PENDING')"
                           " OR EXISTS (SELECT 1 FROM queue_items {index_machine_active}"
                           " WHERE " ACTIVE_EQ " AND bridge_name = ?1) THEN 1 ELSE 0 END",
                           0},
    /* ferry web's depth: PENDING through the claim's partial index, in its (bridge,
     * priority) order (SQLite would rather read qi_unheld_created's PENDING range, then sort
     * all of it for the groups); the active set through qi_machine_active. */
    [S_WEB_DEPTH] = {"SELECT bridge_name, 'PENDING', priority, count(*) FROM queue_items"
                     " {index_claim} WHERE status = 'PENDING' GROUP BY bridge_name, priority"
                     " UNION ALL SELECT bridge_name, status, priority, count(*) FROM queue_items"
                     " WHERE " ACTIVE_EQ " GROUP BY bridge_name, status, priority",
                     0},

    [S_MACHINE_KEY_SHARE] = {"SELECT 1 FROM machines WHERE name = ?1{lock_key_share}",
                             STMT_LOCK_ONLY},
    [S_MACHINE_REFS] = {"SELECT team_name, bridge_name FROM machines WHERE name = ?1", 0},
    [S_SCHEDULE_FIRED] = {"SELECT task_id FROM queue_items WHERE team_name = ?1"
                          " AND schedule_name = ?2 AND schedule_fire_at = ?3",
                          0},
    /* A schedule's fire inserted meanwhile by another host is the unique index's conflict:
     * nothing is inserted, and the caller reports it. */
    [S_ITEM_INSERT] = {"INSERT INTO queue_items (seq, task_id, team_name, machine_name,"
                       " bridge_name, function, priority, status, vault, created_at, updated_at,"
                       " run_after, parent_task_id, link_kind, schedule_name, schedule_fire_at,"
                       " idempotent) VALUES (?15, ?1, ?2, ?3, ?4, ?5, ?6, 'PENDING',"
                       " coalesce(?7, '{}'), ?8, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                       " ON CONFLICT DO NOTHING",
                       0},
    /* Plain items ITEM_ROWS at a time (queue.c, in process): a statement per item spent
     * much of a bulk create's instructions on its own setup and teardown (a cursor opened
     * and closed per index, registers released), and a cursor that stays open lets the
     * inserts at the end of an index (qi_created, qi_status_created) skip the descent from
     * its root: 84.8k -> 64.6k instructions a line of create queue-items.
     * {or_fail}: with OR ABORT, the default, SQLite would keep every page the statement
     * changes in a statement journal (a fifth of its cost) to undo it alone; FAIL keeps
     * the rows written before a failure, and the operation's savepoint (may_undo) or
     * transaction undoes them with the rest. Bare ?: ITEM_ROW_VALS a row, in the order
     * seq, task_id, team, machine, bridge, function, priority, vault, created_at,
     * updated_at, run_after, idempotent. */
    [S_ITEMS_INSERT_ROWS] = {"INSERT {or_fail} INTO queue_items (seq, task_id, team_name,"
                             " machine_name, bridge_name, function, priority, status, vault,"
                             " created_at, updated_at, run_after, idempotent) VALUES "
                             ROWS64("(?, ?, ?, ?, ?, ?, ?, 'PENDING', ?, ?, ?, ?, ?)"),
                             0},
    [S_DEP_INSERT] = {"INSERT INTO queue_deps (task_seq, dep_seq) VALUES (?1, ?2)"
                      " ON CONFLICT DO NOTHING",
                      0},

    /* ?6: who asked for the change (store_set_actor), NULL for the host's own events. */
    [S_EVENT_INSERT] = {"INSERT INTO queue_events (task_seq, action, details, details_is_json,"
                        " at, actor) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        0},
    /* Rows of events bound in one statement (eng_events_flush, in process). The statement's
     * own work (its cursors, its registers) is paid once for them all: an end's event cost
     * 6,000 instructions on SQLite instead of 9,100 (bench_queue turns). */
    [S_EVENTS_INSERT_4] = {EVENTS_INSERT EVENT_ROWS_4, 0},
    [S_EVENTS_INSERT_16] = {EVENTS_INSERT EVENT_ROWS_4 ", " EVENT_ROWS_4 ", " EVENT_ROWS_4
                            ", " EVENT_ROWS_4,
                            0},
    [S_EVENT_APPEND_BY_ID] = {"INSERT INTO queue_events (task_seq, action, details,"
                              " details_is_json, at, actor) SELECT seq, ?2, ?3, ?4, ?5, ?6"
                              " FROM queue_items WHERE task_id = ?1",
                              0},
    /* A claim that also started its attempt wrote one row (started_attempt set, migration
     * 2): it reads as the two events it stands for, ASSIGNED then PROCESSING. */
    [S_EVENTS_LIST] = {"SELECT action, details, details_is_json, at, actor FROM (SELECT seq,"
                       " 0 AS part, action, details, details_is_json, at, actor FROM queue_events"
                       " WHERE task_seq = ?1 UNION ALL SELECT seq, 1, 'PROCESSING', 'attempt '"
                       " || started_attempt || ' started', 0, at, NULL FROM queue_events"
                       " WHERE task_seq = ?1 AND started_attempt IS NOT NULL) AS e"
                       " ORDER BY seq, part",
                       0},

    [S_DEPENDENTS_PENDING] = {"SELECT t.seq, t.task_id FROM queue_deps d JOIN queue_items t"
                              " ON t.seq = d.task_seq WHERE d.dep_seq = ?1"
                              " AND t.status = 'PENDING' ORDER BY t.seq{lock_update_of_t}",
                              0},
    [S_CANCEL_DEPENDENT] = {"UPDATE queue_items SET status = 'CANCELLED', finished_at = ?2,"
                            " updated_at = ?2, last_failure_reason = ?3 WHERE seq = ?1"
                            " AND status = 'PENDING'",
                            0},
    [S_CANCEL_NOW] = {"UPDATE queue_items SET status = 'CANCELLED', finished_at = ?2,"
                      " updated_at = ?2, lease_expires_at = NULL, claim_token = NULL"
                      " WHERE seq = ?1 AND status = ?3",
                      0},
    [S_SET_CANCELLING] = {"UPDATE queue_items SET status = 'CANCELLING', updated_at = ?2"
                          " WHERE seq = ?1 AND status = 'PROCESSING'",
                          0},
    [S_ITEM_DELETE] = {"DELETE FROM queue_items WHERE seq = ?1 AND status = ?2", 0},

    /* The bridge's first ?3 ready items at ?2 in claim order. */
    [S_CLAIM_SCAN] = {"SELECT q.seq, q.machine_name, q.priority, q.created_at"
                      " FROM queue_items q {index_claim} WHERE q.status = 'PENDING'"
                      " AND q.bridge_name = ?1 AND q.run_after <= ?2" DEPS_DONE
                      " ORDER BY q.priority, q.created_at, q.seq LIMIT ?3",
                      0},
    /* For each machine of ?6 (a JSON array of names), its first ?7 ready items on bridge ?1
     * at ?2 after the key (?3, ?4, ?5) in claim order, in no order: one range of
     * qi_claim_machine each. */
    [S_CLAIM_HEADS] = {"SELECT q.seq, q.machine_name, q.priority, q.created_at"
                       " FROM ({json_texts:6}) AS m JOIN queue_items q ON q.seq IN (SELECT i.seq"
                       " FROM queue_items i {index_claim_machine} WHERE i.status = 'PENDING'"
                       " AND i.bridge_name = ?1 AND i.machine_name = m.value"
                       " AND i.run_after <= ?2 AND (i.priority, i.created_at, i.seq)"
                       " > (?3, ?4, ?5)" DEPS_DONE_OF("i")
                       " ORDER BY i.priority, i.created_at, i.seq LIMIT ?7)",
                       0},
    /* Where one writer holds the store (no row locks): for each machine with PENDING items
     * on bridge ?1 that may start more items (its slots, as S_MACHINE_SLOTS counts them), its
     * head after the key (?3, ?4, ?5) at ?2, as S_CLAIM_HEADS finds it, and its free slots:
     * one statement for the whole pass, no list of names to build and parse, no second
     * look-up of the machines.
     * The machines are found one seek each in qi_claim_machine (a loose index scan, m), which
     * lands on the machine's first PENDING item in claim order; its row is read (by seq) and
     * carried along. That item is the head whenever it is ready and after the key (always
     * so for a claim that goes by machine from the start, unless it waits on run_after or a
     * dependency): only otherwise is the head looked for, by a second seek.
     * The free slots are counted once a machine, in a subquery in FROM that SQLite runs as
     * a co-routine, row by row, rather than storing it in a table first, because it is the
     * first term of the join, joined by LEFT JOIN (which fixes the order), and kept from
     * being flattened (by a LIMIT, one that never binds). A machine's row is joined (a
     * correlated subquery costs SQLite about 1,500 instructions more a machine). Measured
     * on SQLite over 100 machines: all free 2.54M instructions before these changes, 1.82M
     * after; 90 of them full 1.88M, 1.83M. */
    [S_CLAIM_FREE_HEADS] = {"WITH RECURSIVE m(seq, name, priority, created, run_after) AS"
                            " (SELECT q.seq, q.machine_name, q.priority, q.created_at, q.run_after"
                            " FROM queue_items q WHERE q.seq = (SELECT seq FROM queue_items"
                            " {index_claim_machine} WHERE bridge_name = ?1 AND status = 'PENDING'"
                            " ORDER BY machine_name, priority, created_at, seq LIMIT 1)"
                            " UNION ALL SELECT q.seq, q.machine_name, q.priority, q.created_at,"
                            " q.run_after FROM m JOIN queue_items q ON q.seq = (SELECT seq"
                            " FROM queue_items {index_claim_machine} WHERE bridge_name = ?1"
                            " AND status = 'PENDING' AND machine_name > m.name"
                            " ORDER BY machine_name, priority, created_at, seq LIMIT 1))"
                            FREE_HEADS_OF_M,
                            0},
    /* S_CLAIM_FREE_HEADS for the machines of ?6 (a JSON array of names) only, with the key
     * (?3, ?4, ?5) before every item: each one's first PENDING item on bridge ?1 by one seek
     * (none: no row). The claim asks it for the machines that may have a free slot since
     * its last claim (claim.c: remembered). */
    [S_CLAIM_NAMED_HEADS] = {"WITH m(seq, name, priority, created, run_after) AS (SELECT q.seq,"
                             " q.machine_name, q.priority, q.created_at, q.run_after"
                             " FROM ({json_texts:6}) AS n CROSS JOIN queue_items q"
                             " ON q.seq = (SELECT seq FROM queue_items {index_claim_machine}"
                             " WHERE bridge_name = ?1 AND status = 'PENDING'"
                             " AND machine_name = n.value"
                             " ORDER BY machine_name, priority, created_at, seq LIMIT 1))"
                             FREE_HEADS_OF_M,
                             0},
    /* The newest item's seq (machine NULL), then each machine with active items and how
     * many, on every bridge: one walk of qi_machine_active, what the claim remembers of the
     * machines' slots is checked against (claim.c: remembered). */
    [S_CLAIM_ACTIVE] = {"SELECT NULL, coalesce(max(seq), 0) FROM queue_items UNION ALL"
                        " SELECT machine_name, count(*) FROM queue_items {index_machine_active}"
                        " WHERE " ACTIVE_EQ " GROUP BY machine_name",
                        0},
    /* The newest item's seq alone: S_CLAIM_ACTIVE's first row, where the claim knows the
     * active items without reading them (claim.c: known_active). */
    [S_CLAIM_NEWEST] = {"SELECT coalesce(max(seq), 0) FROM queue_items", 0},
    /* For each machine of ?1 (a JSON array of names): how many more items it may start (its
     * concurrency, default 1, less its active items on every bridge), and whether it
     * exists (its row, joined: one look-up, not two). */
    [S_MACHINE_SLOTS] = {"SELECT n.value, coalesce(mc.concurrency, 1) - (SELECT count(*)"
                         " FROM queue_items {index_machine_active} WHERE machine_name = n.value"
                         " AND " ACTIVE_EQ "), CASE WHEN mc.name IS NULL THEN 0 ELSE 1 END"
                         " FROM ({json_texts:1}) AS n LEFT JOIN machines mc ON mc.name = n.value",
                         0},
    /* Locks the machines of ?1 that no other claim holds; returns those it locked. */
    [S_MACHINE_LOCK] = {"SELECT name FROM machines WHERE name IN ({json_texts:1}){lock_skip}",
                        STMT_LOCK_ONLY},
    /* Where the engine locks rows (per dialect): for each machine that has PENDING items on
     * bridge ?1, exists, has a free slot and is not locked by another claim, its first ready
     * item at ?2 in claim order (seq, machine, priority, created), the first ?3 of those in
     * claim order; the machines of the rows returned are locked (skipping those others
     * hold), and only they: a claim of ?3 items needs no more. The free slots are counted
     * before the locks: the claim counts again once it holds them. */
    [S_CLAIM_FREE_HEADS_LOCKED] = {NULL, STMT_LOCK_ONLY},
    /* ?1 the picks (a JSON array of seqs), ?2 owner, ?3 lease until, ?4 now, ?5 start too,
     * ?6 the claim's random token prefix (the first 24 characters of a UUID). Each item's
     * claim token is that prefix and the last 12 digits of its seq: UUID-shaped, fresh for
     * every claim, distinct within one, and the same when a driver replays the batch. The
     * picks are found by seq, and only by seq: the status test is kept off the indexes
     * (|| ''), or the engine may walk every PENDING item of (status, created_at) instead,
     * and a claim would cost as much as the queue is deep. Where the engine locks rows, an
     * item someone else holds locked at this instant is left out: the seqs returned are the
     * items claimed. */
    [S_CLAIM_ASSIGN] = {"UPDATE queue_items SET status = CASE WHEN ?5 <> 0 THEN 'PROCESSING'"
                        " ELSE 'ASSIGNED' END, lease_owner = ?2, lease_expires_at = ?3,"
                        " claim_token = ?6 || substr('000000000000' || seq, length('' || seq) + 1),"
                        " assigned_at = ?4, updated_at = ?4,"
                        " started_at = CASE WHEN ?5 <> 0 THEN ?4 ELSE NULL END,"
                        " progress_percent = NULL, progress_message = NULL"
                        " WHERE (status || '') = 'PENDING' AND seq IN (SELECT l.seq FROM queue_items l"
                        " WHERE l.seq IN ({json_seqs:1}){lock_skip}) RETURNING seq",
                        0},
    /* The items the claim took: ?1 their seqs, ?2 owner, ?3 now, ?4 lease until, ?5 the
     * attempt started too. One row an item: with the start, the row also stands for the
     * PROCESSING event (started_attempt; S_EVENTS_LIST reads it as two). {or_fail}: no row
     * can fail (every value is given), as for EVENTS_INSERT. */
    [S_CLAIM_EVENTS] = {"INSERT {or_fail} INTO queue_events (task_seq, action, details,"
                        " details_is_json, at, started_attempt) SELECT q.seq, 'ASSIGNED', 'claimed by ' || ?2"
                        " || ' for attempt ' || (q.retry_count + 1) || ', lease until ' || ?4,"
                        " 0, ?3, CASE WHEN ?5 <> 0 THEN q.retry_count + 1 END"
                        " FROM queue_items q WHERE q.seq IN ({json_seqs:1}) ORDER BY q.seq",
                        0},
    [S_CLAIM_READ] = {"SELECT " ITEM_COLS " FROM queue_items q WHERE q.seq IN ({json_seqs:1})"
                      " ORDER BY q.priority, q.created_at, q.seq",
                      0},
    /* S_CLAIM_READ for struct store_item, which holds nothing of the dependencies (their
     * two columns NULL: two lookups an item less), each row after its seq and in no order:
     * the claim puts them in its own (a sort of whole rows cost SQLite half the read). The
     * seqs (distinct) are joined rather than tested with IN, which SQLite answers by first
     * storing them in a temporary index: a quarter less. */
    [S_CLAIM_READ_TYPED] = {"WITH j(value) AS ({json_seqs:1}) SELECT q.seq, " ITEM_STRUCT_COLS
                            ", NULL, NULL FROM j CROSS JOIN queue_items q WHERE q.seq = j.value",
                            0},
    /* Where the engine locks rows and runs writes in a WITH: S_CLAIM_ASSIGN, S_CLAIM_EVENTS
     * and S_CLAIM_READ_TYPED in one statement (?7 the lease's end as text): the items
     * claimed, in claim order. The picks are looked up as an array (= ANY (ARRAY(…))), a
     * probe of the primary key each: as IN (…), PostgreSQL's planner hashed them against
     * two scans of the whole table, so that each turn cost as much as the table was deep. */
    [S_CLAIM_TAKE] = {"WITH a AS (UPDATE queue_items SET status = CASE WHEN ?5 <> 0"
                      " THEN 'PROCESSING' ELSE 'ASSIGNED' END, lease_owner = ?2,"
                      " lease_expires_at = ?3,"
                      " claim_token = ?6 || substr('000000000000' || seq, length('' || seq) + 1),"
                      " assigned_at = ?4, updated_at = ?4,"
                      " started_at = CASE WHEN ?5 <> 0 THEN ?4 ELSE NULL END,"
                      " progress_percent = NULL, progress_message = NULL"
                      " WHERE (status || '') = 'PENDING' AND seq = ANY (ARRAY(SELECT l.seq"
                      " FROM queue_items l WHERE l.seq = ANY (ARRAY({json_seqs:1})){lock_skip}))"
                      " RETURNING *),"
                      " e AS (INSERT INTO queue_events (task_seq, action, details, details_is_json,"
                      " at, started_attempt) SELECT a.seq, 'ASSIGNED', 'claimed by ' || ?2"
                      " || ' for attempt ' || (a.retry_count + 1) || ', lease until ' || ?7,"
                      " 0, ?4, CASE WHEN ?5 <> 0 THEN a.retry_count + 1 END FROM a ORDER BY a.seq)"
                      " SELECT " ITEM_STRUCT_COLS ", NULL, NULL FROM a AS q"
                      " ORDER BY q.priority, q.created_at, q.seq",
                      STMT_LOCK_ONLY},

    [S_HELD] = {"SELECT seq, task_id, status, retry_count, bridge_name, claim_token,"
                " " HAS_DEPENDENTS " FROM queue_items WHERE task_id = ?1",
                0},
    [S_START] = {"UPDATE queue_items SET status = 'PROCESSING', started_at = ?2, updated_at = ?2"
                 " WHERE task_id = ?1 AND claim_token = ?3 AND status = 'ASSIGNED'"
                 " RETURNING seq, retry_count",
                 0},
    [S_PROGRESS] = {"UPDATE queue_items SET progress_percent = ?2, progress_message = ?3,"
                    " updated_at = ?4 WHERE task_id = ?1 AND claim_token = ?5"
                    " AND status IN " ACTIVE " RETURNING seq",
                    0},
    /* The heartbeat, the expired leases and the cancelling list read the active set (at
     * most the machines' concurrency) through qi_machine_active, whose predicate they
     * name as it is written (ACTIVE_EQ); without the hint SQLite read the cancelling list
     * by walking the whole table in seq order, which spared it a sort. */
    [S_HEARTBEAT] = {"UPDATE queue_items {index_machine_active} SET lease_expires_at = ?2,"
                     " updated_at = ?3"
                     " WHERE lease_owner = ?1 AND " ACTIVE_EQ,
                     0},
    /* COMPLETED, FAILED or CANCELLED: final, the token dies. COMPLETED clears an earlier
     * attempt's failure reason and the progress, which would otherwise describe an attempt
     * that is over. */
    [S_FINISH_FINAL] = {FINISH_FINAL_SET " WHERE task_id = ?1 AND claim_token = ?6 AND " ACTIVE_EQ
                        " RETURNING seq, retry_count, bridge_name, " HAS_DEPENDENTS,
                        0},
    /* RETRY (?4 = 1, counted) or RELEASE (?4 = 0): back to PENDING, claimable at ?3; an
     * item being cancelled is not requeued (the caller ends it CANCELLED). */
    [S_FINISH_REQUEUE] = {"UPDATE queue_items SET status = 'PENDING', run_after = ?3,"
                          " retry_count = retry_count + ?4,"
                          " last_retry_at = CASE WHEN ?4 <> 0 THEN ?2 ELSE last_retry_at END,"
                          " last_failure_reason = CASE WHEN ?4 <> 0 THEN ?5"
                          " ELSE last_failure_reason END,"
                          " response_vault = coalesce(?6, response_vault),"
                          " lease_expires_at = NULL, claim_token = NULL, assigned_at = NULL,"
                          " started_at = NULL, updated_at = ?2 WHERE task_id = ?1"
                          " AND claim_token = ?7 AND status IN ('ASSIGNED','PROCESSING')"
                          " RETURNING seq, retry_count, bridge_name",
                          0},
    /* Many final outcomes at once (S_FINISH_FINAL for each row of ?1); ?2 now. Run only where
     * a statement costs a round trip (PostgreSQL: see finish.c), so in its syntax. The status
     * test is kept off the indexes (|| ''), and the items are looked up by their task ids as
     * an array (= ANY (ARRAY(…))), a probe of the unique index each: joined to the outcomes
     * alone, the planner hashed them against a scan of the whole table. Whether an item has
     * dependents is asked of queue_deps as a whole first (once a statement): a store
     * without dependencies (a drain's usual case) then probes it for no item. */
    [S_FINISH_MANY] = {"UPDATE queue_items SET status = f.status,"
                       " response_vault = coalesce(f.response, response_vault), finished_at = ?2,"
                       " updated_at = ?2, lease_expires_at = NULL, claim_token = NULL,"
                       " last_failure_reason = CASE WHEN f.status = 'FAILED'"
                       " THEN coalesce(f.reason, last_failure_reason)"
                       " WHEN f.status = 'COMPLETED' THEN NULL ELSE last_failure_reason END,"
                       " progress_percent ="
                       " CASE WHEN f.status = 'COMPLETED' THEN NULL ELSE progress_percent END,"
                       " progress_message ="
                       " CASE WHEN f.status = 'COMPLETED' THEN NULL ELSE progress_message END"
                       " FROM ({json_finishes:1}) AS f WHERE queue_items.task_id = f.task_id"
                       " AND queue_items.claim_token = f.token"
                       " AND (queue_items.status || '') IN " ACTIVE
                       " AND queue_items.task_id = ANY (ARRAY(SELECT k.task_id"
                       " FROM ({json_finishes:1}) AS k))"
                       " RETURNING queue_items.seq, queue_items.task_id,"
                       " CASE WHEN EXISTS (SELECT 1 FROM queue_deps) AND EXISTS (SELECT 1"
                       " FROM queue_deps d WHERE d.dep_seq = queue_items.seq) THEN 1 ELSE 0 END",
                       0},
    /* One final outcome, bound (S_FINISH_FINAL found by seq, ?1, with ?7 the task id):
     * where a statement per row costs no round trip (engine.h, in_process), a row found by
     * its seq with bound values costs less than the rows of S_FINISH_MANY travelling as
     * JSON and found by task id. No RETURNING (SQLite runs it as a trigger): the count of
     * rows changed says whether it held, S_HAS_DEPENDENTS the rest. */
    [S_FINISH_SEQ] = {FINISH_FINAL_SET " WHERE seq = ?1 AND task_id = ?7 AND claim_token = ?6"
                      " AND " ACTIVE_EQ,
                      0},
    /* 1 when some item is `after` item ?1, else 0. */
    [S_HAS_DEPENDENTS] = {"SELECT EXISTS (SELECT 1 FROM queue_deps WHERE dep_seq = ?1)", 0},
    /* 1 when some item is `after` an item of seq ?1 to ?2 (one probe of queue_deps_dep). */
    [S_DEPENDENTS_IN_RANGE] = {"SELECT EXISTS (SELECT 1 FROM queue_deps"
                               " WHERE dep_seq BETWEEN ?1 AND ?2)",
                               0},
    [S_WAKE_DEPENDENTS] = {"SELECT DISTINCT t.bridge_name FROM queue_deps d"
                           " JOIN queue_items t ON t.seq = d.task_seq"
                           " WHERE d.dep_seq = ?1 AND t.status = 'PENDING' LIMIT 4",
                           0},
    [S_EXPIRED] = {"SELECT " ITEM_COLS " FROM queue_items q {index_machine_active}"
                   " WHERE " ACTIVE_EQ " AND q.lease_expires_at <= ?1"
                   " AND (?2 IS NULL OR q.bridge_name = ?2)"
                   " ORDER BY q.lease_expires_at, q.seq LIMIT 1000",
                   0},
    [S_CANCELLING] = {"SELECT " ITEM_COLS " FROM queue_items q {index_machine_active}"
                      " WHERE " ACTIVE_EQ " AND q.status = 'CANCELLING' AND q.lease_owner = ?1"
                      " ORDER BY q.seq",
                      0},

    /* Machine groups and fan-out (groups.c). A group parent is PROCESSING without a lease
     * while its children (link_kind 'member', parent_task_id its task id) run; held
     * children (max_parallel) wait with a run_after far in the future. */
    [S_GROUP_NAME_TAKEN] = {"SELECT team_name FROM machine_groups WHERE name = ?1"
                            " ORDER BY team_name LIMIT 1",
                            0},
    [S_FANOUT_START] = {"UPDATE queue_items SET status = 'PROCESSING', started_at = ?2,"
                        " updated_at = ?2 WHERE seq = ?1 AND status = 'PENDING'",
                        0},
    [S_FANOUT_PARENT_OF] = {"SELECT p.seq, p.task_id FROM queue_items c JOIN queue_items p"
                            " ON p.task_id = c.parent_task_id WHERE c.seq = ?1"
                            " AND c.link_kind = 'member'"
                            " AND p.status IN ('PROCESSING','CANCELLING')",
                            0},
    /* Taken first: the parent's row lock orders the ends of its children (PostgreSQL), so
     * the last one to end sees every other end. */
    [S_FANOUT_LOCK] = {"UPDATE queue_items SET updated_at = ?2 WHERE seq = ?1"
                       " AND status IN ('PROCESSING','CANCELLING')"
                       " RETURNING status, vault, machine_name, team_name",
                       0},
    [S_FANOUT_MEMBERS] = {"SELECT seq, task_id, machine_name, status, last_failure_reason,"
                          " run_after, bridge_name FROM queue_items WHERE parent_task_id = ?1"
                          " AND link_kind = 'member' ORDER BY seq",
                          0},
    [S_FANOUT_RELEASE] = {"UPDATE queue_items SET run_after = ?2, updated_at = ?2"
                          " WHERE seq = ?1 AND status = 'PENDING'",
                          0},
    [S_FANOUT_PROGRESS] = {"UPDATE queue_items SET progress_percent = ?2, progress_message = ?3,"
                           " response_vault = ?4 WHERE seq = ?1"
                           " AND status IN ('PROCESSING','CANCELLING')",
                           0},
    [S_FANOUT_SETTLE] = {"UPDATE queue_items SET status = ?2, response_vault = ?3,"
                         " finished_at = ?4, updated_at = ?4, last_failure_reason = ?5,"
                         " progress_percent = NULL, progress_message = NULL WHERE seq = ?1"
                         " AND status IN ('PROCESSING','CANCELLING')",
                         0},
    [S_FANOUT_IS_PARENT] = {"SELECT 1 FROM queue_items WHERE parent_task_id = ?1"
                            " AND link_kind = 'member' LIMIT 1",
                            0},

    RES(STORE_TEAM, RES_PLAIN("teams") " WHERE name = ?2", RES_PLAIN("teams") " ORDER BY name",
        NULL, "SELECT 1 FROM teams WHERE name = ?2",
        "INSERT INTO teams (name, vault, vault_version, created_at, updated_at)"
        " VALUES (?2, ?3, 1, ?4, ?4) ON CONFLICT DO NOTHING",
        "UPDATE teams " VAULT_SET " WHERE name = ?2 AND vault_version = ?7",
        "DELETE FROM teams WHERE name = ?2", "SELECT 1 FROM teams WHERE name = ?2"),
    RES(STORE_REGION, RES_PLAIN("regions") " WHERE name = ?2",
        RES_PLAIN("regions") " ORDER BY name", NULL, "SELECT 1 FROM regions WHERE name = ?2",
        "INSERT INTO regions (name, vault, vault_version, created_at, updated_at)"
        " VALUES (?2, ?3, 1, ?4, ?4) ON CONFLICT DO NOTHING",
        "UPDATE regions " VAULT_SET " WHERE name = ?2 AND vault_version = ?7",
        "DELETE FROM regions WHERE name = ?2", "SELECT 1 FROM regions WHERE name = ?2"),
    RES(STORE_BRIDGE, RES_BRIDGE " WHERE name = ?2", RES_BRIDGE " ORDER BY name",
        RES_BRIDGE " WHERE region_name = ?1 ORDER BY name", "SELECT 1 FROM bridges WHERE name = ?2",
        "INSERT INTO bridges (name, region_name, vault, vault_version, created_at, updated_at)"
        " VALUES (?2, ?5, ?3, 1, ?4, ?4) ON CONFLICT DO NOTHING",
        "UPDATE bridges " VAULT_SET " WHERE name = ?2 AND vault_version = ?7",
        "DELETE FROM bridges WHERE name = ?2", "SELECT 1 FROM bridges WHERE name = ?2"),
    RES(STORE_MACHINE, RES_MACHINE " WHERE m.name = ?2", RES_MACHINE " ORDER BY m.team_name, m.name",
        RES_MACHINE " WHERE m.team_name = ?1 ORDER BY m.name",
        "SELECT 1 FROM machines WHERE name = ?2",
        "INSERT INTO machines (name, team_name, bridge_name, concurrency, vault, vault_version,"
        " created_at, updated_at) VALUES (?2, ?1, ?5, ?6, ?3, 1, ?4, ?4) ON CONFLICT DO NOTHING",
        "UPDATE machines " VAULT_SET ", concurrency = ?6 WHERE name = ?2 AND vault_version = ?7",
        "DELETE FROM machines WHERE name = ?2", "SELECT 1 FROM machines WHERE name = ?2"),
    RES(STORE_STORAGE, RES_STORAGE " WHERE team_name = ?1 AND name = ?2",
        RES_STORAGE " ORDER BY team_name, name", RES_STORAGE " WHERE team_name = ?1 ORDER BY name",
        "SELECT 1 FROM storages WHERE team_name = ?1 AND name = ?2",
        "INSERT INTO storages (team_name, name, vault, vault_version, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, 1, ?4, ?4) ON CONFLICT DO NOTHING",
        "UPDATE storages " VAULT_SET " WHERE team_name = ?1 AND name = ?2 AND vault_version = ?7",
        "DELETE FROM storages WHERE team_name = ?1 AND name = ?2",
        "SELECT 1 FROM storages WHERE team_name = ?1 AND name = ?2"),
    RES(STORE_SCHEDULE, RES_SCHEDULE " WHERE team_name = ?1 AND name = ?2",
        RES_SCHEDULE " ORDER BY team_name, name", RES_SCHEDULE " WHERE team_name = ?1 ORDER BY name",
        "SELECT 1 FROM schedules WHERE team_name = ?1 AND name = ?2",
        "INSERT INTO schedules (team_name, name, vault, vault_version, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, 1, ?4, ?4) ON CONFLICT DO NOTHING",
        "UPDATE schedules " VAULT_SET " WHERE team_name = ?1 AND name = ?2 AND vault_version = ?7",
        "DELETE FROM schedules WHERE team_name = ?1 AND name = ?2",
        "SELECT 1 FROM schedules WHERE team_name = ?1 AND name = ?2"),
    RES(STORE_MACHINE_GROUP, RES_GROUP " WHERE team_name = ?1 AND name = ?2",
        RES_GROUP " ORDER BY team_name, name", RES_GROUP " WHERE team_name = ?1 ORDER BY name",
        "SELECT 1 FROM machine_groups WHERE team_name = ?1 AND name = ?2",
        "INSERT INTO machine_groups (team_name, name, vault, vault_version, created_at,"
        " updated_at) VALUES (?1, ?2, ?3, 1, ?4, ?4) ON CONFLICT DO NOTHING",
        "UPDATE machine_groups " VAULT_SET
        " WHERE team_name = ?1 AND name = ?2 AND vault_version = ?7",
        "DELETE FROM machine_groups WHERE team_name = ?1 AND name = ?2",
        "SELECT 1 FROM machine_groups WHERE team_name = ?1 AND name = ?2"),
    [S_RES_NAMES_TEAM_MACHINES] = {"SELECT name FROM machines WHERE team_name = ?1 ORDER BY name",
                                   0},
    [S_RES_NAMES_TEAM_STORAGES] = {"SELECT name FROM storages WHERE team_name = ?1 ORDER BY name",
                                   0},
    [S_RES_NAMES_TEAM_SCHEDULES] = {"SELECT name FROM schedules WHERE team_name = ?1"
                                    " ORDER BY name",
                                    0},
    [S_RES_NAMES_REGION_BRIDGES] = {"SELECT name FROM bridges WHERE region_name = ?1"
                                    " ORDER BY name",
                                    0},
    [S_RES_NAMES_BRIDGE_MACHINES] = {"SELECT name FROM machines WHERE bridge_name = ?1"
                                     " ORDER BY name",
                                     0},
    [S_RES_NAMES_MACHINE_ITEMS] = {"SELECT task_id FROM queue_items WHERE machine_name = ?1"
                                   " AND status IN ('PENDING','ASSIGNED','PROCESSING',"
                                   "'CANCELLING') ORDER BY created_at, seq",
                                   0},
    /* A team's active API tokens (host/people): removing the team would leave them for a
     * team of the same name created later. */
    [S_RES_NAMES_TEAM_TOKENS] = {"SELECT CAST(id AS TEXT) FROM tokens WHERE team_name = ?1"
                                 " AND revoked_at IS NULL ORDER BY id",
                                 0},
    [S_MACHINE_SET_BRIDGE] = {"UPDATE machines SET bridge_name = ?1, updated_at = ?2"
                              " WHERE name = ?3",
                              0},
    [S_SCHEDULE_SET_RUN] = {"UPDATE schedules SET next_run_at = ?3, last_run_at = ?4,"
                            " last_task_id = ?5 WHERE team_name = ?1 AND name = ?2",
                            0},

/* A token's columns (people_token_row reads them in this order); never its hash. */
#define TOKEN_COLS                                                                                 \
    "SELECT id, user_name, team_name, role, created_at, created_by, last_used_at,"                 \
    " last_used_address, revoked_at, revoked_by FROM tokens"
    [S_USER_INSERT] = {"INSERT INTO users (name, created_at, created_by) VALUES (?1, ?2, ?3)"
                       " ON CONFLICT DO NOTHING",
                       0},
    [S_USER_GET] = {"SELECT name, created_at, created_by, deleted_at FROM users WHERE name = ?1",
                    0},
    [S_USERS_LIST] = {"SELECT u.name, u.created_at, u.created_by, (SELECT count(*) FROM tokens t"
                      " WHERE t.user_name = u.name AND t.revoked_at IS NULL) FROM users u"
                      " WHERE u.deleted_at IS NULL ORDER BY u.name",
                      0},
    [S_USER_DELETE] = {"UPDATE users SET deleted_at = ?2, deleted_by = ?3 WHERE name = ?1"
                       " AND deleted_at IS NULL",
                       0},
    [S_TOKEN_INSERT] = {"INSERT INTO tokens (user_name, team_name, role, token_hash, created_at,"
                        " created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                        0},
    [S_TOKENS_LIST] = {TOKEN_COLS " ORDER BY id", 0},
    [S_TOKENS_LIST_USER] = {TOKEN_COLS " WHERE user_name = ?1 ORDER BY id", 0},
    [S_TOKEN_GET] = {TOKEN_COLS " WHERE id = ?1", 0},
    /* For people_authenticate: the token's columns, its hash (10) and whether its user was
     * removed (11). */
    [S_TOKEN_BY_HASH] = {"SELECT t.id, t.user_name, t.team_name, t.role, t.created_at,"
                         " t.created_by, t.last_used_at, t.last_used_address, t.revoked_at,"
                         " t.revoked_by, t.token_hash, u.deleted_at FROM tokens t"
                         " LEFT JOIN users u ON u.name = t.user_name WHERE t.token_hash = ?1",
                         0},
    [S_TOKEN_TOUCH] = {"UPDATE tokens SET last_used_at = ?2, last_used_address = ?3 WHERE id = ?1",
                       0},
    [S_TOKEN_REVOKE] = {"UPDATE tokens SET revoked_at = ?2, revoked_by = ?3 WHERE id = ?1"
                        " AND revoked_at IS NULL",
                        0},
    [S_TOKENS_REVOKE_USER] = {"UPDATE tokens SET revoked_at = ?2, revoked_by = ?3"
                              " WHERE user_name = ?1 AND revoked_at IS NULL",
                              0},
    [S_AUDIT_INSERT] = {"INSERT INTO audit_log (at, actor, via, address, token_id, action,"
                        " team_name, target, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        0},

    [S_MIGRATION_LOCK] = {NULL, STMT_LOCK_ONLY}, /* per dialect, where needed */
    [S_MIGRATIONS_TABLE] = {"CREATE TABLE IF NOT EXISTS schema_migrations (version integer"
                            " PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)",
                            0},
    [S_SCHEMA_VERSION] = {"SELECT coalesce(max(version), 0), count(*) FROM schema_migrations",
                          0},
    [S_MIGRATION_RECORD] = {"INSERT INTO schema_migrations (version, name, applied_at)"
                            " VALUES (?1, ?2, ?3)",
                            0},
    [S_MIGRATIONS_LIST] = {"SELECT version, name, applied_at FROM schema_migrations"
                           " ORDER BY version",
                           0},
    /* Fair claims (waits.c). Host ?2 of bridge ?1 waits for work until ?3. */
    [S_CLAIM_WAIT_MARK] = {"INSERT INTO claim_waits (bridge_name, owner, until_ms)"
                           " VALUES (?1, ?2, ?3) ON CONFLICT (bridge_name, owner)"
                           " DO UPDATE SET until_ms = excluded.until_ms",
                           0},
    /* Host ?2 of bridge ?1 no longer waits; marks that ran out before ?3 go too. */
    [S_CLAIM_WAIT_CLEAR] = {"DELETE FROM claim_waits WHERE bridge_name = ?1"
                            " AND (owner = ?2 OR until_ms < ?3)",
                            0},
    /* The hosts of bridge ?1 other than ?2 that wait for work at ?3. */
    [S_CLAIM_WAITERS] = {"SELECT count(*) FROM claim_waits WHERE bridge_name = ?1"
                         " AND owner <> ?2 AND until_ms > ?3",
                         0},
    /* The active items of bridge ?1: how many, the hosts other than ?2 holding some that
     * do not wait for work at ?3 (those count as waiting), and how many ?2 holds (read
     * through qi_machine_active: the active set is small). */
    [S_CLAIM_HOLDERS] = {"SELECT count(*), count(DISTINCT CASE WHEN lease_owner <> ?2"
                         " AND NOT EXISTS (SELECT 1 FROM claim_waits w WHERE w.bridge_name = ?1"
                         " AND w.owner = queue_items.lease_owner AND w.until_ms > ?3)"
                         " THEN lease_owner END), coalesce(sum(CASE WHEN lease_owner = ?2"
                         " THEN 1 ELSE 0 END), 0) FROM queue_items {index_machine_active}"
                         " WHERE bridge_name = ?1 AND " ACTIVE_EQ,
                         0},
    /* The machines of bridge ?1 with a free slot whose first PENDING item there is ready at
     * ?2: work no host holds. A probe of the active set and a seek of the claim's index by
     * machine each (per dialect). */
    [S_CLAIM_OPEN] = {"SELECT count(*) FROM machines mc WHERE mc.bridge_name = ?1"
                      " AND mc.concurrency > (SELECT count(*) FROM queue_items"
                      " {index_machine_active} WHERE machine_name = mc.name AND " ACTIVE_EQ ")"
                      " AND EXISTS (SELECT 1 FROM (SELECT i.seq, i.run_after FROM queue_items i"
                      " {index_claim_machine} WHERE i.status = 'PENDING' AND i.bridge_name = ?1"
                      " AND i.machine_name = mc.name ORDER BY i.priority, i.created_at, i.seq"
                      " LIMIT 1) AS q WHERE q.run_after <= ?2" DEPS_DONE ")",
                      0},
    /* Notifications (outbox.c). Item ?1's are kept until handed off; another host of its
     * bridge sends them from ?2 on. */
    [S_NOTIFY_OUTBOX_ADD] = {"INSERT INTO notify_outbox (task_id, bridge_name, due_ms)"
                             " SELECT task_id, bridge_name, ?2 FROM queue_items WHERE seq = ?1"
                             " ON CONFLICT DO NOTHING",
                             0},
    [S_NOTIFY_OUTBOX_DONE] = {"DELETE FROM notify_outbox WHERE task_id = ?1", 0},
    /* Takes up to 16 of bridge ?1's notifications due at ?2: due again at ?3. */
    [S_NOTIFY_OUTBOX_TAKE] = {"UPDATE notify_outbox SET due_ms = ?3 WHERE due_ms <= ?2"
                              " AND task_id IN (SELECT task_id FROM notify_outbox"
                              " WHERE bridge_name = ?1 AND due_ms <= ?2 ORDER BY due_ms"
                              " LIMIT 16) RETURNING task_id",
                              0},
    /* History upkeep (history.c). The next ?5 items that ended before ?1, after the key (?2
     * finished_at, ?3 seq) in the order of qi_finished (finished_at, then seq), each with 1
     * when it may go: its status is one of ?4 (a JSON array) and nothing still waiting or
     * running needs it: no item of those is `after` it, names it as its parent (a fallback,
     * a retry, a call, a group's member) or is its own parent (a group settles from its
     * members), and no notification of its end waits to be sent. The tests are per row in
     * the select list, on the batch's rows alone: PostgreSQL, with statistics older than
     * a bulk of ended items, joined them to the whole table by hashing it instead. Its
     * task_id is COLLATE "C" and parent_task_id is not: compared in task_id's collation,
     * the children's test read the whole table for every row ({collate_default}). */
    [S_PRUNE_PICK] = {"SELECT q.seq, q.finished_at, CASE WHEN q.status IN ({json_texts:4})"
                      " AND NOT EXISTS (SELECT 1 FROM queue_deps d JOIN queue_items t"
                      " ON t.seq = d.task_seq WHERE d.dep_seq = q.seq AND t.status NOT IN " ENDED ")"
                      " AND NOT EXISTS (SELECT 1 FROM queue_items c WHERE c.parent_task_id"
                      " = q.task_id{collate_default} AND c.status NOT IN " ENDED ")"
                      " AND (q.parent_task_id IS NULL OR NOT EXISTS (SELECT 1 FROM queue_items p"
                      " WHERE p.task_id = q.parent_task_id AND p.status NOT IN " ENDED "))"
                      " AND NOT EXISTS (SELECT 1 FROM notify_outbox o WHERE o.task_id = q.task_id)"
                      " THEN 1 ELSE 0 END FROM (SELECT seq FROM queue_items"
                      " WHERE finished_at IS NOT NULL AND finished_at >= ?2 AND finished_at < ?1"
                      " AND NOT (finished_at = ?2 AND seq <= ?3)"
                      " ORDER BY finished_at, seq LIMIT ?5) AS k JOIN queue_items q ON q.seq = k.seq"
                      " ORDER BY q.finished_at, q.seq",
                      0},
    [S_PRUNE_EVENTS_COUNT] = {"SELECT count(*) FROM queue_events"
                              " WHERE task_seq IN ({json_seqs:1})",
                              0},
    [S_PRUNE_EVENTS] = {"DELETE FROM queue_events WHERE task_seq IN ({json_seqs:1})", 0},
    /* Dependency links go with the item (foreign keys' cascade); the status test keeps an
     * item a retry put back meanwhile. */
    [S_PRUNE_ITEMS] = {"DELETE FROM queue_items WHERE seq IN ({json_seqs:1})"
                       " AND status IN " ENDED,
                       0},
    /* Chores (migration 10): chore ?1 is taken by ?2 until ?3 when it is due at ?4 and no
     * other holder's lease runs; the row returned says it was taken. */
    [S_CHORE_CLAIM] = {"INSERT INTO chores (name, owner, lease_until, due_at, started_at)"
                       " VALUES (?1, ?2, ?3, 0, ?4) ON CONFLICT (name) DO UPDATE"
                       " SET owner = ?2, lease_until = ?3, started_at = ?4"
                       " WHERE chores.due_at <= ?4 AND chores.lease_until <= ?4 RETURNING name",
                       0},
    [S_CHORE_RENEW] = {"UPDATE chores SET lease_until = ?3 WHERE name = ?1 AND owner = ?2", 0},
    /* Chore ?1 done by ?2 at ?3 (result ?5): due again at ?4. */
    [S_CHORE_DONE] = {"UPDATE chores SET owner = NULL, lease_until = 0, due_at = ?4,"
                      " finished_at = ?3, result = ?5 WHERE name = ?1 AND owner = ?2",
                      0},
    [S_STORE_CLOCK] = {"SELECT {now_ms}", 0},
};
