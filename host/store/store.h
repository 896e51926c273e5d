/*
 * The store: where the command line and the host meet. Resources (teams, regions, bridges,
 * machines, storages, schedules), queue items, their events, and the claim/lease protocol
 * the host runs items by.
 *
 * The store's logic is written once over a narrow engine interface (engine.h): resources.c,
 * queue.c, claim.c ("how a claim works") and finish.c ("how an attempt ends"). A driver per
 * engine (SQLite in store_sqlite.c, PostgreSQL in store_pg*.c) supplies only its SQL
 * dialect, connection, locking and wake-ups; drivers.c lists them. Callers use only the
 * store_* functions below; every driver passes the same conformance suite
 * (tests/unit/test_store.c). docs/store-drivers.md says what a new driver needs.
 *
 * Conventions shared by every function here:
 *  - Return value: STORE_OK, or a negative STORE_* status. On failure a one-line message
 *    for the operator is formatted into err (err may be NULL; errlen is its size).
 *  - JSON inputs (json_t *) are borrowed: the store never keeps or frees them.
 *  - JSON outputs (json_t **out) are new references the caller owns and frees with
 *    json_decref; on failure *out is left NULL. Output parameters may be NULL when the
 *    caller does not want the value.
 *  - Rows use the camelCase field names of spec/cli.md so the CLI can print them as-is.
 *    Times are ms since the epoch internally; rows carry ISO 8601 UTC strings ("…Z") and,
 *    where a script may want to compute, a numeric "…Ms" twin.
 *  - Task ids are UUIDs; where a task id is taken from a person, a unique prefix works
 *    (STORE_AMBIGUOUS when it matches several items).
 *  - A store handle is used by one thread at a time and must not cross fork(): open one
 *    per process (or per thread).
 */
#ifndef FERRY_STORE_H
#define FERRY_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_OK        0
#define STORE_ERROR     -1 /* I/O, engine or invalid input */
#define STORE_NOT_FOUND -2 /* no such resource or task (including a missing reference) */
#define STORE_CONFLICT  -3 /* exists / stale vault version / lost claim token / wrong state */
#define STORE_AMBIGUOUS -4 /* a task id prefix matches several items */

/* Hard limits the store enforces so that outside input cannot grow without bound. */
#define STORE_MAX_AFTER             256   /* dependencies per queue item */
#define STORE_MAX_RECORDS           10000 /* rows one list may return */
#define STORE_DEFAULT_RECORDS       1000
#define STORE_DEFAULT_STALE_MINUTES 10

typedef struct store store;

/* Options for store_open_opts. A zeroed struct means the defaults. */
struct store_options {
    /* SQLite: 0 = every commit survives power loss (the default; synchronous=NORMAL with the
     * driver's sync of the WAL after the commit, docs/store-drivers.md); 1 = NORMAL alone
     * (much faster commits; a power loss may drop the last few). */
    int synchronous_normal;
    /* How long one operation keeps retrying while another process holds the write lock,
     * before it gives up with an error. 0 = 60000 ms. */
    int busy_timeout_ms;
    /* SQLite: the process lives for one command (the CLI). Closing does not checkpoint the
     * WAL into the database (and remove it) while the WAL is short: the next process
     * finds the commits there. Durability is the same: a commit is synced to the WAL. */
    int short_lived;
    /* The file of the key that seals the store's secrets (docs/security.md). NULL: the
     * systemd credential $CREDENTIALS_DIRECTORY/ferry.key when present, else ferry.key next
     * to an SQLite store; a PostgreSQL store opened without one cannot seal. */
    const char *key_path;
};

/*
 * Opens (creating if needed) the store named by url_or_path and brings its schema up to
 * date (numbered migrations, applied once even when several processes open a fresh store
 * at the same moment).
 *   "postgres://…", "postgresql://…" or a libpq conninfo ("host=… dbname=…") → PostgreSQL;
 *   anything else is an SQLite file path ("sqlite://" prefix optional); its parent
 *   directory is created.
 * Returns the handle (free with store_close) or NULL with err set.
 */
store *store_open(const char *url_or_path, char *err, size_t errlen);

/* store_open with options (opts may be NULL for the defaults). */
store *store_open_opts(const char *url_or_path, const struct store_options *opts, char *err,
                       size_t errlen);

struct ferry_config;
/*
 * Opens the store the configuration names: store.conninfo with the PostgreSQL driver when
 * store.driver is "postgres", else the SQLite file store.path, with store.synchronous.
 */
store *store_open_config(const struct ferry_config *cfg, char *err, size_t errlen);
/* The same for a process that lives for one command (store_options.short_lived). */
store *store_open_config_short(const struct ferry_config *cfg, char *err, size_t errlen);

/* How to name the configured store in a log line without its credentials (static or
 * borrowed from cfg). */
const char *store_config_target(const struct ferry_config *cfg);

/* Closes the handle, rolling back an open batch and removing its wake-up socket. NULL is
 * accepted. */
void store_close(store *s);
/* store_close for a process that exits right after it (a command): a handle whose close
 * would change nothing on disk or for another process (no checkpoint due, no transaction,
 * no wake-up socket) is left for the exit to release, its memory still referenced; any
 * other is closed. The close of an SQLite connection frees its parsed schema, statements
 * and pages one by one: 5% of a create queue-item's instructions. */
void store_close_for_exit(store *s);

/* The driver's name, "sqlite" or "postgres". The string is static. */
const char *store_driver_name(const store *s);

/*
 * Lists the applied schema migrations, oldest first, into *rows (caller owns): an array of
 * {"version":N,"name":"…","appliedTime":"…","appliedTimeMs":N}.
 */
int store_migrations(store *s, json_t **rows, char *err, size_t errlen);

/* ---------------------------------------------------------------------------------------
 * Batches. Every operation below commits on its own, durably. Between store_begin and
 * store_commit they instead join one transaction that commits once, so a host can group
 * many state changes and events into a single fsync. Inside a batch a failing operation
 * undoes only its own changes and the batch stays usable, unless the engine lost the batch
 * (an I/O error; see docs/store-drivers.md), which the operation and store_commit report.
 * Batches nest: only the outermost store_commit commits. Wake-ups of items created inside a
 * batch are sent after the outermost commit.
 * ------------------------------------------------------------------------------------- */

/* Starts (or nests into) a batch; takes the write lock for the whole batch. */
int store_begin(store *s, char *err, size_t errlen);
/* Ends one level of batch; the outermost level commits. */
int store_commit(store *s, char *err, size_t errlen);
/* Discards the whole batch, whatever the nesting level, and leaves batch mode. */
int store_rollback(store *s, char *err, size_t errlen);

/* ---------------------------------------------------------------------------------------
 * Resources. Every resource has a name, a JSON object "vault" and "vaultVersion" (1 at
 * creation, +1 per vault update). Names are case-sensitive and must pass valid_name().
 *
 * Rows (all have "vault", "vaultVersion", "createdTime", "updatedTime"):
 *   team      {"teamName"}
 *   region    {"regionName"}
 *   bridge    {"bridgeName","regionName"}
 *   machine   {"machineName","teamName","bridgeName","regionName"}
 *   storage   {"storageName","teamName"}
 *   schedule  {"scheduleName","teamName","cron","timezone","machine","enabled","nextRun",
 *              "lastRun","lastTaskId","vaultContent"} (cron … enabled read from the vault;
 *              timezone defaults to "UTC", enabled to true; vaultContent repeats vault)
 *   machine group {"groupName","teamName","members"} (members: the vault's "members", the
 *              names of machines of the team; docs/machines.md "Groups and fan-out")
 * ------------------------------------------------------------------------------------- */

typedef enum {
    STORE_TEAM,
    STORE_REGION,
    STORE_BRIDGE,
    STORE_MACHINE,
    STORE_STORAGE,
    STORE_SCHEDULE,
    STORE_MACHINE_GROUP, /* groups.c: {"groupName","teamName","members"} */
    STORE_KIND_COUNT
} store_kind;

/* Vault update flags. */
#define STORE_VAULT_REPLACE 0 /* the new vault replaces the old one */
#define STORE_VAULT_MERGE   1 /* the new vault is a JSON merge patch (RFC 7396) */

/* The noun for a kind ("team", "machine" …). Static string. */
const char *store_kind_name(store_kind kind);

/* Creates team NAME. vault may be NULL ({}). CONFLICT if it exists. *row: the new row. */
int store_team_create(store *s, const char *name, json_t *vault, json_t **row, char *err,
                      size_t errlen);
/* Creates region NAME. */
int store_region_create(store *s, const char *name, json_t *vault, json_t **row, char *err,
                        size_t errlen);
/* Creates bridge NAME in REGION (NOT_FOUND when the region does not exist). */
int store_bridge_create(store *s, const char *region, const char *name, json_t *vault, json_t **row,
                        char *err, size_t errlen);
/*
 * Creates machine NAME of TEAM on BRIDGE. Machine names are unique across teams. The
 * vault's optional "concurrency" (positive integer, default 1) is how many items the
 * machine runs at once.
 */
int store_machine_create(store *s, const char *team, const char *bridge, const char *name,
                         json_t *vault, json_t **row, char *err, size_t errlen);
/* Creates storage NAME of TEAM. */
int store_storage_create(store *s, const char *team, const char *name, json_t *vault, json_t **row,
                         char *err, size_t errlen);
/* Creates schedule NAME of TEAM (the vault is kept as given; cron checks are the
 * scheduler's). */
int store_schedule_create(store *s, const char *team, const char *name, json_t *vault, json_t **row,
                          char *err, size_t errlen);

/*
 * Creates machine group NAME of TEAM. The vault's "members" (required) lists machines of
 * TEAM, each once; a group cannot contain a group, nor take a machine's name (machines and
 * groups share one name space). A machine in a group cannot be removed (CONFLICT naming the
 * groups). A queue item whose machine is a group fans out (docs/machines.md).
 */
int store_machine_group_create(store *s, const char *team, const char *name, json_t *vault,
                               json_t **row, char *err, size_t errlen);

/*
 * Reads one resource into *row. team is required for storages and schedules, optional for
 * machines (when given, a machine of another team is NOT_FOUND with a message naming its
 * team) and ignored for teams, regions and bridges.
 */
int store_resource_get(store *s, store_kind kind, const char *team, const char *name, json_t **row,
                       char *err, size_t errlen);

/*
 * Lists resources of one kind into *rows (array, ordered by team then name). scope
 * narrows the list: the team for machines, storages and schedules, the region for
 * bridges; NULL lists all. A scope that does not exist is NOT_FOUND.
 */
int store_resource_list(store *s, store_kind kind, const char *scope, json_t **rows, char *err,
                        size_t errlen);

/*
 * Updates a resource's vault: replaced, or merged as an RFC 7396 patch with
 * STORE_VAULT_MERGE, in one transaction. expected_version -1 accepts any version;
 * otherwise a different current version is CONFLICT ("vault version is 4, not 3; re-read
 * and retry"). *row: the updated row.
 */
int store_resource_update_vault(store *s, store_kind kind, const char *team, const char *name,
                                json_t *vault, int64_t expected_version, int flags, json_t **row,
                                char *err, size_t errlen);

/*
 * Deletes a resource. Refused (CONFLICT, naming what is in the way) for a team that still
 * has machines, storages or schedules, a region with bridges, a bridge with machines, and
 * a machine with unfinished queue items. Queue history is kept.
 */
int store_resource_delete(store *s, store_kind kind, const char *team, const char *name, char *err,
                          size_t errlen);

/* Moves machine NAME (of TEAM, or any team when team is NULL) to BRIDGE. *row: updated. */
int store_machine_set_bridge(store *s, const char *team, const char *name, const char *bridge,
                             json_t **row, char *err, size_t errlen);

/*
 * Records a schedule's run bookkeeping (for the scheduler): next_run_ms and last_run_ms
 * (0 = none), last_task_id (NULL = none). Does not change vaultVersion.
 */
int store_schedule_set_run(store *s, const char *team, const char *name, int64_t next_run_ms,
                           int64_t last_run_ms, const char *last_task_id, char *err, size_t errlen);

/* ---------------------------------------------------------------------------------------
 * Secrets at rest (store_seal.c, docs/security.md). Every secret value of a vault (seal.h,
 * vault_key_is_secret_in) is sealed when written, with the row's identity as associated
 * data. Rows read through the functions below keep their secrets sealed ("ferry-sealed:1:…"
 * strings); only a caller that needs them opens them.
 * ------------------------------------------------------------------------------------- */

/*
 * Opens the sealed values of a resource row of kind in place (its "vault" and, for
 * schedules, "vaultContent"). STORE_OK, or STORE_ERROR with a one-line err when the key is
 * missing or wrong or a value does not open (the row then keeps what did not open sealed).
 */
int store_resource_reveal(store *s, store_kind kind, json_t *row, char *err, size_t errlen);

/* The same for an item row's "vaultContent". */
int store_item_reveal(store *s, json_t *row, char *err, size_t errlen);

/*
 * Re-seals every sealed value of the store under a new key, in one transaction: the new key
 * is written to KEY.new first, the store switched to it, then KEY.new renamed over KEY; a
 * crash in between leaves both files, and the next open or rotate finishes (docs/security.md).
 * *resealed (may be NULL) gets how many values; *key_id (17 bytes, may be NULL) the new id.
 */
int store_key_rotate(store *s, long *resealed, char key_id[17], char *err, size_t errlen);

/* The key file this handle seals with, or NULL when it has none (static to the handle). */
const char *store_key_path(const store *s);

/* ---------------------------------------------------------------------------------------
 * Queue items.
 *
 * Statuses: PENDING → ASSIGNED (claimed) → PROCESSING (started) → COMPLETED | FAILED |
 * CANCELLED; PROCESSING → CANCELLING (cancel requested) → CANCELLED. RETRY and RELEASE
 * return an active item to PENDING. When an item ends FAILED or CANCELLED (or is removed
 * while PENDING), its PENDING dependents (items "after" it, transitively) become CANCELLED
 * with lastFailureReason "dependency <id> FAILED" (or CANCELLED / "was removed").
 *
 * Item rows carry: taskId, status, healthStatus, priority, priorityLabel, function,
 * teamName, machineName, bridgeName, createdTime (+ alias createdDate, createdTimeMs),
 * assignedTime, startedTime, finishedTime, updatedTime, runAfterTime, ageInMinutes,
 * retryCount, lastRetryAt, lastFailureReason, canBeCancelled, hasResponse,
 * totalDurationSeconds, processingDurationSeconds, progress ({percent,message} or null),
 * vaultContent (the stored vault, unredacted: the CLI redacts), responseVault (null until
 * set), parentTaskId, linkKind, after (array of task ids), scheduleName,
 * scheduleFireTime, idempotent, leaseOwner, leaseExpiresTime. Rows handed to the host
 * (claim, expired, cancelling) add "claimToken" and "attempt" (retryCount + 1).
 *
 * healthStatus: PENDING, or STALE_PENDING when it has been ready to run (its run_after
 * come and every dependency COMPLETED) for longer than the stale threshold; ACTIVE for ASSIGNED/PROCESSING, or STALE when its last update
 * (claim, start, progress, heartbeat) is older than the threshold; otherwise the status.
 *
 * Events the store itself writes (action: details): CREATED, ASSIGNED (owner, attempt,
 * lease), PROCESSING, PROGRESS ("42%: message"), COMPLETED, FAILED, CANCEL_REQUESTED,
 * CANCELLED, RETRY_SCHEDULED, RELEASED. The host appends its own with store_event_append.
 * ------------------------------------------------------------------------------------- */

/* What to create. Zero/NULL fields take the defaults noted. */
struct store_item_spec {
    const char *team, *machine, *bridge; /* required; must exist, machine in team */
    const char *function;                /* NULL: the vault's "function" (required) */
    int priority;                        /* 1 (highest) … 5 (lowest); 0 = 3 */
    json_t *vault;                       /* borrowed; object or NULL ({}) */
    const char *const *after;            /* task ids or unique prefixes that must exist */
    size_t n_after;
    const char *parent_task_id; /* id or unique prefix of the item this one is
                                 * linked to, or NULL */
    const char *link_kind;      /* "retry", "fallback", "call" or NULL */
    const char *schedule_name;  /* the schedule that fired it, or NULL */
    int64_t schedule_fire_ms;   /* that fire's instant; with schedule_name it is
                                 * unique: a second create is CONFLICT */
    int idempotent;             /* safe to re-run after a host crash */
    int64_t run_after_ms;       /* not claimable before; 0 = now */
    const json_t *secret_names; /* more keys whose values are sealed at rest beside those
                                 * secret by name: the function's "secret" parameters
                                 * (params_secret_names); borrowed; NULL for none */
    int64_t now_ms;             /* creation time; 0 = now_ms() */
};

/*
 * Creates one queue item and its CREATED event in one transaction, then wakes the hosts
 * of its bridge. task_id (may be NULL) receives the new id; *row the new row.
 * NOT_FOUND names a missing team, machine, bridge or dependency; ERROR for invalid input.
 */
int store_queue_create(store *s, const struct store_item_spec *spec, char task_id[37], json_t **row,
                       char *err, size_t errlen);

/*
 * Creates n items in one transaction (all or none); task_ids (may be NULL) receives n
 * ids. An item may depend on one created earlier in the same batch. The message of a
 * failure names the item's index ("item 7: …"), or the indexes of the items a statement of
 * many rows held when that statement failed ("items 64 to 127: …").
 */
int store_queue_create_batch(store *s, const struct store_item_spec *specs, size_t n,
                             char (*task_ids)[37], char *err, size_t errlen);

/* Reads one item by task id or unique prefix into *row. */
int store_queue_get(store *s, const char *task_id, json_t **row, char *err, size_t errlen);

/* Filters for store_queue_list; a zeroed struct lists everything (newest 1000). Every
 * filter given must hold. */
struct store_queue_filter {
    const char *const *teams; /* any of these teams */
    size_t n_teams;
    const char *machine;
    const char *bridge;
    const char *const *statuses; /* any of these statuses */
    size_t n_statuses;
    int priority;         /* exactly; 0 = any */
    int min_priority;     /* priority number >= (0 = no bound) */
    int max_priority;     /* priority number <= (0 = no bound) */
    int64_t date_from_ms; /* created at or after (0 = no bound) */
    int64_t date_to_ms;   /* created at or before (0 = no bound) */
    const char *task_id;  /* id or prefix: every item it starts */
    int exclude_completed;
    int exclude_cancelled;
    int only_stale;              /* healthStatus STALE or STALE_PENDING only */
    int stale_threshold_minutes; /* 0 = 10 */
    int max_records;             /* 0 = 1000; capped at 10000 */
    int64_t now_ms;              /* the time ages and health are computed at; 0 = now */
};

/* Lists items matching the filter into *rows (array, newest first). */
int store_queue_list(store *s, const struct store_queue_filter *filter, json_t **rows, char *err,
                     size_t errlen);

/*
 * Counts the items matching the filter into *count, exactly (one COUNT query, whatever
 * the number): max_records does not apply. With store_queue_list it says whether a list
 * was cut short, and it gives dashboards their totals.
 */
int store_queue_count(store *s, const struct store_queue_filter *filter, int64_t *count,
                      char *err, size_t errlen);

/*
 * Counts items by status into *counts: {"PENDING":n, …, "total":n}, every status present.
 * bridge narrows to one bridge (NULL: all).
 */
int store_queue_counts(store *s, const char *bridge, json_t **counts, char *err, size_t errlen);

/*
 * Whether a bridge still has work: *has is 1 while some item of the bridge is PENDING (due
 * or not) or held by a host, else 0; on an error it is 1. Costs a look at the PENDING and
 * active items alone, however long the history.
 */
int store_bridge_has_work(store *s, const char *bridge, int *has, char *err, size_t errlen);

/*
 * Cancels an item (id or prefix): PENDING/ASSIGNED → CANCELLED at once (dependents
 * cancelled); PROCESSING → CANCELLING (the host stops the attempt and finishes it
 * CANCELLED); CANCELLING stays. With force, PROCESSING and CANCELLING also go to
 * CANCELLED at once (for an item whose host is gone). COMPLETED, FAILED, CANCELLED are
 * CONFLICT. *row: the item after the change.
 */
int store_queue_cancel(store *s, const char *task_id, int force, json_t **row, char *err,
                       size_t errlen);

/* Removes a PENDING or CANCELLED item and its events (CONFLICT otherwise); PENDING
 * dependents of a removed PENDING item are cancelled. */
int store_queue_delete(store *s, const char *task_id, char *err, size_t errlen);

/*
 * Appends an event to an item's timeline. details_json (borrowed), when not NULL, is
 * stored as JSON; otherwise details (may be NULL) as text. at_ms 0 = now.
 */
int store_event_append(store *s, const char *task_id, const char *action, const char *details,
                       json_t *details_json, int64_t at_ms, char *err, size_t errlen);

/*
 * Lists an item's events in order into *events: [{"action","details","timestamp",
 * "timestampMs","secondsSincePrevious"}] (details: a string, JSON as appended, or null).
 */
int store_event_list(store *s, const char *task_id, json_t **events, char *err, size_t errlen);

/* ---------------------------------------------------------------------------------------
 * Execution: the host's protocol. Task ids here are full ids as claimed. Every state
 * change checks the claim token and is CONFLICT when the item no longer carries it (it was
 * cancelled, recovered or finished meanwhile), so a host that lost its lease can never
 * overwrite a newer outcome. Times are passed in (now_ms) so tests control them.
 * ------------------------------------------------------------------------------------- */

/*
 * Claims up to max_n PENDING items of bridge whose run_after has come and whose every
 * dependency is COMPLETED, in (priority, created, id) order, while no machine exceeds its
 * concurrency (vault "concurrency", default 1, counting its ASSIGNED, PROCESSING and
 * CANCELLING items on every bridge); among one machine's ready items the earliest goes
 * first. Marks them ASSIGNED to owner with a lease until now + lease_ms and a fresh
 * claim token. *items (caller owns): array of rows with "claimToken" and "attempt", in
 * claim order; empty when nothing is ready.
 */
int store_claim(store *s, const char *bridge, const char *owner, int64_t lease_ms, int max_n,
                int64_t now, json_t **items, char *err, size_t errlen);

/* ASSIGNED → PROCESSING (startedTime = now). */
int store_start(store *s, const char *task_id, const char *token, int64_t now, char *err,
                size_t errlen);

/* Records progress (percent clamped to 0-100, message may be NULL) and a PROGRESS event. */
int store_progress(store *s, const char *task_id, const char *token, int percent,
                   const char *message, int64_t now, char *err, size_t errlen);

/* Renews the lease of every active item owner holds to now + lease_ms; *renewed (may be
 * NULL) receives how many. */
int store_heartbeat(store *s, const char *owner, int64_t lease_ms, int64_t now, int *renewed,
                    char *err, size_t errlen);

enum store_outcome_kind {
    STORE_OUTCOME_COMPLETED,
    STORE_OUTCOME_FAILED,
    STORE_OUTCOME_CANCELLED,
    STORE_OUTCOME_RETRY,   /* back to PENDING at run_after_ms; retryCount+1 */
    STORE_OUTCOME_RELEASE, /* back to PENDING, not counted as a retry (shutdown) */
};

/* How an attempt ended. */
struct store_outcome {
    enum store_outcome_kind kind;
    json_t *response;     /* borrowed; becomes responseVault when not NULL */
    /* Or the vault as compact JSON text of an object (borrowed), stored as it is: the host
     * writes its own (settle.c) without a tree. Used instead of response when not NULL. */
    const char *response_json;
    const char *reason;   /* FAILED/RETRY: lastFailureReason; others: event text */
    int64_t run_after_ms; /* RETRY/RELEASE: not claimable before (0 = now) */
    /* Optional, for a FAILED end: the item's fallback, created in the same transaction when
     * the end holds (never without it), linked to the ended item (the store sets its
     * parent_task_id and link_kind "fallback"), with a FALLBACK event on the ended item and
     * a FALLBACK_OF event (details: fallback_note) on the new one. A spec the store refuses
     * leaves a FALLBACK_FAILED event saying why; the end still holds. */
    const struct store_item_spec *fallback;
    const char *fallback_note;
    /* Final ends: not 0 when the end has notifications to send after the commit; the store
     * keeps a note of them (notify_outbox), written with the end, until store_notify_sent;
     * from this time on another host of the bridge may send them (store_notify_due). */
    int64_t notify_due_ms;
};

/*
 * Ends the current attempt of an item held with token. COMPLETED/FAILED/CANCELLED are
 * final (FAILED and CANCELLED cancel the dependents); RETRY and RELEASE return it to
 * PENDING, except that an item being cancelled (CANCELLING) then ends CANCELLED.
 */
int store_finish(store *s, const char *task_id, const char *token,
                 const struct store_outcome *outcome, int64_t now, char *err, size_t errlen);

/*
 * Lists ASSIGNED/PROCESSING/CANCELLING items whose lease expired at now (of bridge, or
 * all bridges when NULL), oldest lease first, at most 1000, as host rows with the old
 * claimToken, so a host can requeue or fail them through store_finish.
 */
int store_expired(store *s, const char *bridge, int64_t now, json_t **items, char *err,
                  size_t errlen);

/* Lists the CANCELLING items owner holds (host rows with claimToken). */
int store_cancelling(store *s, const char *owner, json_t **items, char *err, size_t errlen);

/* ---------------------------------------------------------------------------------------
 * The host's typed view. The host works on these structs, never on the CLI's JSON rows:
 * claim (with the start folded in), recovery and the batched end of many attempts.
 * ------------------------------------------------------------------------------------- */

/* An item as the host runs it. Strings are owned by the item (store_items_free). */
struct store_item {
    char task_id[37];
    char token[37];          /* the claim token every later change must carry */
    char *function, *team, *machine, *bridge;
    char *status;            /* PENDING … CANCELLED as stored when read */
    int priority;            /* 1 … 5 */
    int attempt;             /* retry_count + 1 */
    int retry_count;
    int idempotent;          /* safe to re-run after a host crash */
    json_t *vault;           /* the stored vault, parsed (never NULL; {} when unreadable) */
    char *parent_task_id;    /* NULL when none */
    char *link_kind;         /* "retry", "fallback", "call" or NULL */
    char *schedule_name;     /* NULL when none */
    char *lease_owner;       /* NULL when none */
    int64_t created_ms, started_ms, lease_expires_ms;
};

/* Frees n items and the array itself (NULL accepted). */
void store_items_free(struct store_item *items, size_t n);

/*
 * As store_claim, typed: claims up to max_n (at most 1024) items into *items (caller frees
 * with store_items_free), *n how many, in claim order. With start, each claimed item is
 * also started: it goes straight to PROCESSING, with its ASSIGNED and PROCESSING events.
 * One transaction, a few statements whatever the number of items (claim.c).
 */
int store_claim_items(store *s, const char *bridge, const char *owner, int64_t lease_ms, int max_n,
                      int start, int64_t now, struct store_item **items, size_t *n, char *err,
                      size_t errlen);

/*
 * Fair claims among the hosts of a bridge (waits.c; the host's side is host/serve/fairness.c).
 * store_claim_wait with want: when ready items wait on the bridge (the host's claim came up
 * short, so other hosts hold their machines), marks owner as waiting for work until
 * until_ms (*marked = 1); otherwise, or without want (0), clears its mark (*marked = 0),
 * except that want 2 (the host knows it has no mark) writes nothing then.
 * store_claim_share: the other hosts of the bridge that wait at now, those that hold items
 * on it and do not wait (each host counts once), its active items and those owner holds;
 * while any host of the bridge waits (owner too), its machines with a free slot and a ready
 * item (open; 0 otherwise).
 */
int store_claim_wait(store *s, const char *bridge, const char *owner, int want, int64_t now,
                     int64_t until_ms, int *marked, char *err, size_t errlen);
struct store_claim_share {
    int waiting; /* other hosts waiting for work */
    int holding; /* other hosts holding active items of the bridge, not waiting */
    int active;  /* active items of the bridge (every host) */
    int mine;    /* of which owner holds */
    int open;    /* machines with a free slot and a ready item, read while a host waits */
};
int store_claim_share(store *s, const char *bridge, const char *owner, int64_t now,
                      struct store_claim_share *out, char *err, size_t errlen);

/*
 * Notifications of ended items not yet handed to their sender (outbox.c).
 * store_notify_sent: task_id's were handed off (its note goes). store_notify_due: up to max
 * (at most 16) task ids of bridge whose notes are due at now, each due again at retry_ms
 * (taken once even by several hosts at a time), into ids, *n how many.
 */
int store_notify_sent(store *s, const char *task_id, char *err, size_t errlen);
int store_notify_due(store *s, const char *bridge, int64_t now, int64_t retry_ms,
                     char (*ids)[37], size_t max, size_t *n, char *err, size_t errlen);

/* As store_expired and store_cancelling, typed (token = the item's current claim token). */
int store_expired_items(store *s, const char *bridge, int64_t now, struct store_item **items,
                        size_t *n, char *err, size_t errlen);
int store_cancelling_items(store *s, const char *owner, struct store_item **items, size_t *n,
                           char *err, size_t errlen);

/* One attempt's end for store_finish_many. */
struct store_finish {
    const char *task_id, *token;
    struct store_outcome outcome;
};

/*
 * Ends n attempts in one transaction, without savepoints (finish.c). rcs[i] (rcs may be
 * NULL) receives each one's own result: STORE_OK; STORE_CONFLICT when the item no longer
 * carries the token or no longer exists (the UPDATE's WHERE matched nothing: that entry
 * changes nothing, the others still apply); STORE_ERROR for an invalid entry (no token,
 * unknown outcome, a response that is not an object), which is left out. Returns STORE_OK
 * unless the transaction itself failed (then nothing was written).
 */
int store_finish_many(store *s, const struct store_finish *f, size_t n, int *rcs, int64_t now,
                      char *err, size_t errlen);

/* ---------------------------------------------------------------------------------------
 * Wake-ups. A host asks for store_wait_fd and polls it (with a slow timeout as a safety
 * net); it becomes readable after a notify on its bridge. The store notifies by itself,
 * after the change is committed, when items of a bridge are created, cancelled (so the
 * host holding a PROCESSING item sees CANCELLING at once), released or retried without
 * delay (for the other hosts of the bridge), or become ready because their dependency
 * COMPLETED. store_notify is there for anything else. Wake-ups are hints: after one, a
 * host claims and checks store_cancelling; a missed one costs only the poll interval.
 * ------------------------------------------------------------------------------------- */

/* Wakes the hosts waiting on bridge. Never fails: no host listening is fine. */
void store_notify(store *s, const char *bridge);

/*
 * Subscribes this handle to wake-ups for bridge and returns a file descriptor to poll for
 * reading (owned by the store; valid until store_close). Returns -1 with err set when
 * wake-ups are unavailable (the host then polls). A second call returns the same fd.
 */
int store_wait_fd(store *s, const char *bridge, char *err, size_t errlen);

/* Consumes the pending wake-ups so the fd stops being readable. */
void store_wait_drain(store *s);

/* The host has nothing running: the driver may tidy up off the path of any item (SQLite
 * checkpoints a long WAL, so the next commits overwrite it from its start). Returns 1 when
 * it did, and the next commit is the one that restarts the log (SQLite then also syncs the
 * WAL's new header: a second fdatasync in that commit), else 0. A host with something to
 * write writes it then, so that the extra sync is not on the path of the next create. */
int store_idle(store *s);

/*
 * The host makes its commits durable itself: from now on this handle's commits are written
 * and visible to other handles at once, but not synced (SQLite: synchronous=NORMAL) until
 * store_sync. Returns 0, or -1 when the handle stays as it was: its commits are durable
 * when store_commit returns (PostgreSQL), or are never synced (SQLite with
 * store.synchronous = normal). Other handles never act on such a commit before it is
 * durable: a read that sees another handle's commits syncs the log first, unless it ends
 * where the last store_sync made it durable (the read barrier, docs/store-drivers.md).
 */
int store_defer_sync(store *s);

/*
 * Makes every commit the handle made before the call durable (an fdatasync of SQLite's
 * log). Another thread may call it while the handle is in use: it touches only descriptors
 * of the driver's own, opened by store_defer_sync, never the engine's files or state.
 * STORE_OK, or STORE_ERROR with err set: what the failed sync covered may not be on disk.
 */
int store_sync(store *s, char *err, size_t errlen);
/* store_sync whose note for other handles' read barriers (SQLite's marker, a write) waits
 * for store_sync_note, called by the same thread once what waited for the sync (an idle
 * host's run message) is on its way. Until then a reader syncs the log itself. */
int store_sync_first(store *s, char *err, size_t errlen);
void store_sync_note(store *s);

/*
 * A number that changes whenever another handle (another process, or another connection of
 * this one) has committed to the store since the last call: while it stays the same, what
 * this handle read earlier (an item's row) still holds, unless this handle changed it.
 * SQLite only; -1 when the driver cannot tell (PostgreSQL): assume everything changed.
 */
int64_t store_data_version(store *s);

/*
 * The same for machines and teams alone (the rows a host keeps from turn to turn): a
 * number that changes when another handle has committed a change to one of them.
 * PostgreSQL counts those changes (migration 11); SQLite answers store_data_version (any
 * commit). -1 when the driver cannot tell.
 */
int64_t store_resources_version(store *s);

/* =======================================================================================
 * For the store's own files only: the handle, the driver table and the helpers in store.c
 * that keep validation, messages and row shapes in one place. Callers use the API above.
 * ===================================================================================== */

struct eng_driver;

/* The part of every handle store.c and the engine use; a driver's handle embeds it as
 * first member (engine.h: eng_init). */
struct store {
    const struct eng_driver *drv;
    char **sql;            /* statement texts expanded for the driver's dialect (engine.c) */
    int batch_depth;       /* store_begin nesting, kept by store.c */
    int batch_lost;        /* the driver lost the open batch (rolled back): operations are
                            * refused until store_commit or store_rollback ends it */
    char **notify_pending; /* bridges to wake after the outermost commit */
    size_t n_notify_pending;
    struct principal *actor; /* who acts (store_set_actor, host/people/people.h), or NULL */
    char *actor_label;       /* the actor as item events record it ("alice (api 10.0.0.5)") */
    struct store_seal *seal; /* the key and its state (store_seal.c); NULL until open ends */
    int opened;              /* store_open ended: its own reads are behind (the read barrier) */
    int read_no_barrier;     /* the running read is eng_run's ENG_READ_NO_BARRIER */
    uint64_t writes;         /* write operations but claims and ends (eng_run) */
    struct claim_memory *claim_memory; /* what the last claim left known (claim.c), or NULL */
};

/*
 * The driver table (drivers.c): the one place that knows which drivers exist. A store URL
 * or path picks the first driver whose matches() accepts it, else the default (the row
 * without matches); the configuration names its driver by name.
 */
/* A driver's constructor: opens (creating where needed) the store url names, applies its
 * migrations; NULL with err set. */
typedef store *store_open_fn(const char *url, const struct store_options *opts, char *err,
                             size_t errlen);
/* Non-zero when url is one of a driver's. */
typedef int store_url_fn(const char *url);

struct store_driver_entry {
    const char *name; /* as in store.driver: "sqlite", "postgres" */
    store_url_fn *matches;
    store_open_fn *open;
    const char *url_prefix; /* stripped before open ("sqlite://"), or NULL */
    const char *conninfo;   /* configured by store.conninfo (a server), not store.path: how a
                             * log line names it ("PostgreSQL (store.conninfo)"); NULL */
};
extern const struct store_driver_entry store_drivers[];
extern const size_t store_n_drivers;

/* The entry named name, or NULL. */
const struct store_driver_entry *store_driver_by_name(const char *name);
/* The entry a URL or path selects (never NULL). */
const struct store_driver_entry *store_driver_for_url(const char *url);
/* Formats the drivers' names for a message: "\"sqlite\" or \"postgres\"". */
void store_driver_choices(char *buf, size_t len);


/* Columns of one queue item as a driver read them; NULL / 0 mean SQL NULL, except
 * progress_percent where -1 means none. Strings are borrowed for the call. */
struct store_item_cols {
    const char *task_id, *status, *function, *team, *machine, *bridge;
    int priority;
    const char *vault_json, *response_json;
    int64_t created_at, updated_at, run_after, assigned_at, started_at, finished_at;
    int retry_count;
    int64_t last_retry_at;
    const char *last_failure_reason;
    const char *lease_owner, *claim_token;
    int64_t lease_expires_at;
    int progress_percent;
    const char *progress_message;
    const char *parent_task_id, *link_kind, *schedule_name;
    int64_t schedule_fire_at;
    int idempotent;
    const char *after_csv; /* dependency task ids joined by ',' or NULL */
    int64_t deps_ready_at; /* -1: a dependency has not COMPLETED; else when the last one
                            * finished (0: no dependencies) */
};

/* Builds an item row (new reference) from its columns; with_token adds claimToken and
 * attempt. now and stale_ms drive ageInMinutes, durations and healthStatus. */
json_t *store_item_row(const struct store_item_cols *c, int64_t now, int64_t stale_ms,
                       int with_token);

/* Columns of one resource; unused ones NULL / 0. Strings are borrowed for the call. */
struct store_resource_cols {
    const char *name, *team, *bridge, *region, *vault_json;
    int64_t vault_version, created_at, updated_at;
    int64_t next_run_at, last_run_at; /* schedules */
    const char *last_task_id;
};

/* Builds a resource row (new reference) of the given kind from its columns. */
json_t *store_resource_row(store_kind kind, const struct store_resource_cols *c);

/* Builds an event row (new reference); prev_at_ms 0 for the first event. details_is_json
 * says details holds JSON text. */
json_t *store_event_row(const char *action, const char *details, int details_is_json, int64_t at_ms,
                        int64_t prev_at_ms);

/* Wakes bridge's hosts now, or after the outermost commit when a batch is open; for a
 * driver whose operation made items of that bridge ready or cancelled. */
void store_notify_after_commit(store *s, const char *bridge);

/* Parses stored vault text; never NULL (an unreadable vault reads as {}). New reference. */
json_t *store_vault_parse(const char *text);

/* Reads a machine vault's "concurrency" (default 1) into *out; ERROR with err set when it
 * is present but not a positive integer. */
int store_vault_concurrency(json_t *vault, int *out, char *err, size_t errlen);

/* "Highest" … "Lowest" for priority 1 … 5 (static). */
const char *store_priority_label(int priority);

/* Formats the not-found message for a resource, with the command that creates it, and
 * returns STORE_NOT_FOUND. */
int store_err_missing(char *err, size_t errlen, store_kind kind, const char *team,
                      const char *name);

/* Non-zero when text could be a task id or prefix (1-36 of [0-9a-f-], any case). */
int store_task_id_ok(const char *text);

/* Non-zero when status is one of the seven queue statuses. */
int store_status_ok(const char *status);

#endif
