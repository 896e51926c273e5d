/*
 * The store's statements by id: one SQL text each (statements.c), shared by every driver.
 * A driver caches what it prepared per handle by these ids. Texts use ?N parameters and
 * {fragment} names the driver's dialect fills in (engine.h).
 */
#ifndef FERRY_STATEMENTS_H
#define FERRY_STATEMENTS_H

/* The active statuses as comparisons, as qi_machine_active's predicate is written on SQLite
 * (migration 4: an IN list of three or more constants costs SQLite a temporary b-tree each
 * time a statement runs, so every insert paid one); a query that reads the index names its
 * predicate the same way (SQLite uses a partial index only for a query that states its
 * predicate). */
#define ACTIVE_EQ "(status = 'ASSIGNED' OR status = 'PROCESSING' OR status = 'CANCELLING')"

enum stmt_id {
    /* items: read and find */
    S_ITEM_BY_SEQ,
    S_RESOLVE_FULL,
    S_RESOLVE_FULL_SHARE,
    S_RESOLVE_FULL_UPDATE,
    S_RESOLVE_FULL_DELETE,
    S_RESOLVE_PREFIX,
    S_RESOLVE_PREFIX_SHARE,
    S_RESOLVE_PREFIX_UPDATE,
    S_RESOLVE_PREFIX_DELETE,
    S_COUNTS_ALL,
    S_COUNTS_BRIDGE,
    S_BRIDGE_HAS_WORK,
    S_WEB_DEPTH,
    /* items: create */
    S_NEXT_SEQS, /* per dialect */
    S_NEXT_SEQ,  /* per dialect: S_NEXT_SEQS of one */
    S_MACHINE_KEY_SHARE,
    S_MACHINE_REFS, /* a new item's machine: its team and bridge */
    S_SCHEDULE_FIRED,
    S_ITEM_INSERT,
    S_ITEMS_INSERT_MANY, /* per dialect: plain items from a JSON array */
    S_ITEMS_INSERT_ROWS, /* in process: ITEM_ROWS plain items from bound values */
    S_DEP_INSERT,
    /* events */
    S_EVENT_INSERT,
    S_EVENTS_INSERT_MANY, /* per dialect: rows from a JSON array */
    S_EVENTS_INSERT_4,    /* four rows, bound (eng_events_flush in process) */
    S_EVENTS_INSERT_16,   /* sixteen */
    S_EVENT_APPEND_BY_ID,
    S_EVENTS_LIST,
    /* cancel, delete, cascades */
    S_DEPENDENTS_PENDING,
    S_CANCEL_DEPENDENT,
    S_CANCEL_NOW,
    S_SET_CANCELLING,
    S_ITEM_DELETE,
    /* claim */
    S_CLAIM_SCAN,
    S_CLAIM_HEADS,
    S_CLAIM_FREE_HEADS,
    S_CLAIM_NAMED_HEADS,
    S_CLAIM_ACTIVE,
    S_CLAIM_NEWEST,
    S_MACHINE_SLOTS,
    S_MACHINE_LOCK,
    S_CLAIM_FREE_HEADS_LOCKED,
    S_CLAIM_ASSIGN,
    S_CLAIM_ASSIGN_ONE, /* per dialect, where one writer holds the store: one pick */
    S_CLAIM_EVENTS,
    S_CLAIM_READ,
    S_CLAIM_READ_TYPED,
    S_CLAIM_TAKE,
    /* the held item's life */
    S_HELD,
    S_START,
    S_PROGRESS,
    S_HEARTBEAT,
    S_FINISH_FINAL,
    S_FINISH_REQUEUE,
    S_FINISH_MANY,
    S_FINISH_SEQ,
    S_HAS_DEPENDENTS,
    S_DEPENDENTS_IN_RANGE,
    S_WAKE_DEPENDENTS,
    S_EXPIRED,
    S_CANCELLING,
    /* machine groups and fan-out (groups.c) */
    S_GROUP_NAME_TAKEN,
    S_FANOUT_START,
    S_FANOUT_PARENT_OF,
    S_FANOUT_LOCK,
    S_FANOUT_MEMBERS,
    S_FANOUT_RELEASE,
    S_FANOUT_PROGRESS,
    S_FANOUT_SETTLE,
    S_FANOUT_IS_PARENT,
    /* resources: S_RES_* + kind (STORE_KIND_COUNT of each) */
    S_RES_GET,
    S_RES_LIST = S_RES_GET + 7,
    S_RES_LIST_IN = S_RES_LIST + 7,
    S_RES_EXISTS = S_RES_LIST_IN + 7,
    S_RES_INSERT = S_RES_EXISTS + 7,
    S_RES_UPDATE = S_RES_INSERT + 7,
    S_RES_DELETE = S_RES_UPDATE + 7,
    S_RES_LOCK_CHANGE = S_RES_DELETE + 7,
    S_RES_LOCK_DELETE = S_RES_LOCK_CHANGE + 7,
    S_RES_NAMES_TEAM_MACHINES = S_RES_LOCK_DELETE + 7,
    S_RES_NAMES_TEAM_STORAGES,
    S_RES_NAMES_TEAM_SCHEDULES,
    S_RES_NAMES_REGION_BRIDGES,
    S_RES_NAMES_BRIDGE_MACHINES,
    S_RES_NAMES_MACHINE_ITEMS,
    S_RES_NAMES_TEAM_TOKENS,
    S_MACHINE_SET_BRIDGE,
    S_SCHEDULE_SET_RUN,
    /* people: users, tokens, the audit log (host/people) */
    S_USER_INSERT,
    S_USER_GET,
    S_USERS_LIST,
    S_USER_DELETE,
    S_TOKEN_INSERT,
    S_TOKENS_LIST,
    S_TOKENS_LIST_USER,
    S_TOKEN_GET,
    S_TOKEN_BY_HASH,
    S_TOKEN_TOUCH,
    S_TOKEN_REVOKE,
    S_TOKENS_REVOKE_USER,
    S_AUDIT_INSERT,
    /* migrations */
    S_SCHEMA_EXISTS, /* per dialect */
    S_MIGRATION_LOCK,
    S_MIGRATIONS_TABLE,
    S_SCHEMA_VERSION,
    S_MIGRATION_RECORD,
    S_MIGRATIONS_LIST,
    /* fair claims among a bridge's hosts (waits.c) */
    S_CLAIM_WAIT_MARK,
    S_CLAIM_WAIT_CLEAR,
    S_CLAIM_WAITERS,
    S_CLAIM_HOLDERS,
    S_CLAIM_OPEN,
    /* notifications not yet handed to their sender (outbox.c) */
    S_NOTIFY_OUTBOX_ADD,
    S_NOTIFY_OUTBOX_DONE,
    S_NOTIFY_OUTBOX_TAKE,
    /* history upkeep (history.c) and the chores hosts share (migration 10) */
    S_PRUNE_PICK,
    S_PRUNE_EVENTS_COUNT,
    S_PRUNE_EVENTS,
    S_PRUNE_ITEMS,
    S_CHORE_CLAIM,
    S_CHORE_RENEW,
    S_CHORE_DONE,
    /* the store's own clock (store_clock.c, ferry doctor) */
    S_STORE_CLOCK,
    S_COUNT
};

/* Dialect fragments, "{name}" in the texts. */
enum stmt_fragment {
    F_DEPS_CSV,          /* an aggregate of p.task_id joined by ',' in dependency order */
    F_LOCK_SHARE,        /* a locking clause: share */
    F_LOCK_KEY_SHARE,    /* key share */
    F_LOCK_UPDATE,       /* no key update */
    F_LOCK_DELETE,       /* update (the row may be deleted) */
    F_LOCK_UPDATE_OF_T,  /* no key update of the table aliased t */
    F_LOCK_SKIP,         /* no key update, skipping rows locked by others */
    F_INDEX_CLAIM,       /* index hints for the claim's scans ("" where the planner decides) */
    F_INDEX_MACHINE_ACTIVE,
    F_INDEX_CLAIM_MACHINE,
    F_JSON_TEXTS,        /* a one-column select of the texts of JSON array parameter @ */
    F_JSON_SEQS,         /* a one-column select of the integers of JSON array parameter @ */
    F_JSON_FINISHES,     /* select (task_id, token, status, response, reason) from JSON array
                          * parameter @ of [task_id, token, status, response, reason] */
    F_COLLATE_DEFAULT,   /* compares a task id by the collation of parent_task_id (qi_parent) */
    F_NOW_MS,            /* the engine's clock, ms since the epoch */
    F_OR_FAIL,           /* an INSERT's conflict clause that keeps the rows it wrote ("" where
                          * the engine has none) */
    F_COUNT
};

/* The rows of S_ITEMS_INSERT_ROWS, and the values of each row. */
#define ITEM_ROWS     64
#define ITEM_ROW_VALS 12

/* Statement flags. */
#define STMT_LOCK_ONLY 1 /* only takes row locks: skipped on engines without them */

struct stmt_def {
    const char *sql;
    unsigned flags;
};

/* Indexed by enum stmt_id; NULL sql for the per-dialect statements. */
extern const struct stmt_def store_statements[S_COUNT];
/* Indexed by enum stmt_fragment. */
extern const char *const store_fragment_names[F_COUNT];

#endif
