/*
 * The PostgreSQL driver's resources: teams, regions, bridges, machines, storages and
 * schedules. The same SQL shapes, checks and messages as store_sqlite.c; what PostgreSQL
 * adds is row locks, since writers here do not queue behind one database-wide lock: a
 * resource is locked before it is read for an update or a delete, so concurrent changes
 * serialise as they do in SQLite.
 */
#include "store_pg.h"

#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * SQL per resource kind. Parameters: $1 team, $2 name, $3 vault, $4 now, $5 parent (region
 * of a bridge, bridge of a machine), $6 concurrency, $7 the vault version read before an
 * update (a guard for a rebuilt batch). Row queries return the columns of struct
 * store_resource_cols in order. table and key name the row for locks.
 */
#define RES_TYPES "ttjItiI"

static const struct res_sql {
    const char *get, *list, *list_in, *exists, *insert, *update, *remove, *table, *key;
} res_sql[STORE_KIND_COUNT] = {
    [STORE_TEAM] =
        {"SELECT name, NULL, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM teams WHERE name = $2",
         "SELECT name, NULL, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM teams ORDER BY name",
         NULL, "SELECT 1 FROM teams WHERE name = $2",
         "INSERT INTO teams (name, vault, vault_version, created_at, updated_at)"
         " VALUES ($2, $3, 1, $4, $4) ON CONFLICT DO NOTHING",
         "UPDATE teams SET vault = $3, vault_version = vault_version + 1, updated_at = $4"
         " WHERE name = $2 AND vault_version = $7",
         "DELETE FROM teams WHERE name = $2", "teams", "name = $2"},
    [STORE_REGION] =
        {"SELECT name, NULL, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM regions WHERE name = $2",
         "SELECT name, NULL, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM regions ORDER BY name",
         NULL, "SELECT 1 FROM regions WHERE name = $2",
         "INSERT INTO regions (name, vault, vault_version, created_at, updated_at)"
         " VALUES ($2, $3, 1, $4, $4) ON CONFLICT DO NOTHING",
         "UPDATE regions SET vault = $3, vault_version = vault_version + 1, updated_at = $4"
         " WHERE name = $2 AND vault_version = $7",
         "DELETE FROM regions WHERE name = $2", "regions", "name = $2"},
    [STORE_BRIDGE] =
        {"SELECT name, NULL, NULL, region_name, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM bridges WHERE name = $2",
         "SELECT name, NULL, NULL, region_name, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM bridges ORDER BY name",
         "SELECT name, NULL, NULL, region_name, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM bridges WHERE region_name = $1 ORDER BY name",
         "SELECT 1 FROM bridges WHERE name = $2",
         "INSERT INTO bridges (name, region_name, vault, vault_version, created_at,"
         " updated_at) VALUES ($2, $5, $3, 1, $4, $4) ON CONFLICT DO NOTHING",
         "UPDATE bridges SET vault = $3, vault_version = vault_version + 1, updated_at = $4"
         " WHERE name = $2 AND vault_version = $7",
         "DELETE FROM bridges WHERE name = $2", "bridges", "name = $2"},
    [STORE_MACHINE] =
        {"SELECT m.name, m.team_name, m.bridge_name, b.region_name, m.vault, m.vault_version,"
         " m.created_at, m.updated_at, NULL, NULL, NULL"
         " FROM machines m LEFT JOIN bridges b ON b.name = m.bridge_name WHERE m.name = $2",
         "SELECT m.name, m.team_name, m.bridge_name, b.region_name, m.vault, m.vault_version,"
         " m.created_at, m.updated_at, NULL, NULL, NULL"
         " FROM machines m LEFT JOIN bridges b ON b.name = m.bridge_name"
         " ORDER BY m.team_name, m.name",
         "SELECT m.name, m.team_name, m.bridge_name, b.region_name, m.vault, m.vault_version,"
         " m.created_at, m.updated_at, NULL, NULL, NULL"
         " FROM machines m LEFT JOIN bridges b ON b.name = m.bridge_name"
         " WHERE m.team_name = $1 ORDER BY m.name",
         "SELECT 1 FROM machines WHERE name = $2",
         "INSERT INTO machines (name, team_name, bridge_name, concurrency, vault,"
         " vault_version, created_at, updated_at) VALUES ($2, $1, $5, $6, $3, 1, $4, $4)"
         " ON CONFLICT DO NOTHING",
         "UPDATE machines SET vault = $3, vault_version = vault_version + 1, updated_at = $4,"
         " concurrency = $6 WHERE name = $2 AND vault_version = $7",
         "DELETE FROM machines WHERE name = $2", "machines", "name = $2"},
    [STORE_STORAGE] =
        {"SELECT name, team_name, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM storages WHERE team_name = $1 AND name = $2",
         "SELECT name, team_name, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM storages ORDER BY team_name, name",
         "SELECT name, team_name, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM storages WHERE team_name = $1 ORDER BY name",
         "SELECT 1 FROM storages WHERE team_name = $1 AND name = $2",
         "INSERT INTO storages (team_name, name, vault, vault_version, created_at,"
         " updated_at) VALUES ($1, $2, $3, 1, $4, $4) ON CONFLICT DO NOTHING",
         "UPDATE storages SET vault = $3, vault_version = vault_version + 1, updated_at = $4"
         " WHERE team_name = $1 AND name = $2 AND vault_version = $7",
         "DELETE FROM storages WHERE team_name = $1 AND name = $2", "storages",
         "team_name = $1 AND name = $2"},
    [STORE_SCHEDULE] =
        {"SELECT name, team_name, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " next_run_at, last_run_at, last_task_id FROM schedules"
         " WHERE team_name = $1 AND name = $2",
         "SELECT name, team_name, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " next_run_at, last_run_at, last_task_id FROM schedules ORDER BY team_name, name",
         "SELECT name, team_name, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " next_run_at, last_run_at, last_task_id FROM schedules"
         " WHERE team_name = $1 ORDER BY name",
         "SELECT 1 FROM schedules WHERE team_name = $1 AND name = $2",
         "INSERT INTO schedules (team_name, name, vault, vault_version, created_at,"
         " updated_at) VALUES ($1, $2, $3, 1, $4, $4) ON CONFLICT DO NOTHING",
         "UPDATE schedules SET vault = $3, vault_version = vault_version + 1, updated_at = $4"
         " WHERE team_name = $1 AND name = $2 AND vault_version = $7",
         "DELETE FROM schedules WHERE team_name = $1 AND name = $2", "schedules",
         "team_name = $1 AND name = $2"},
};

static json_t *resource_row_at(store_kind kind, const PGresult *r, int i)
{
    struct store_resource_cols c = {
        .name = store_pg_text(r, i, 0),
        .team = store_pg_text(r, i, 1),
        .bridge = store_pg_text(r, i, 2),
        .region = store_pg_text(r, i, 3),
        .vault_json = store_pg_text(r, i, 4),
        .vault_version = store_pg_i64(r, i, 5),
        .created_at = store_pg_i64(r, i, 6),
        .updated_at = store_pg_i64(r, i, 7),
        .next_run_at = store_pg_i64(r, i, 8),
        .last_run_at = store_pg_i64(r, i, 9),
        .last_task_id = store_pg_text(r, i, 10),
    };
    return store_resource_row(kind, &c);
}

/* Locks the row of (kind, team, name) for the rest of the transaction, mode "UPDATE"
 * (delete) or "NO KEY UPDATE" (change). A missing row is not an error here. */
static int lock_resource(struct pg *p, store_kind kind, const char *team, const char *name,
                         const char *mode, char *err, size_t errlen)
{
    char sql[160];
    PGresult *r;
    snprintf(sql, sizeof(sql), "SELECT 1 FROM %s WHERE %s FOR %s", res_sql[kind].table,
             res_sql[kind].key, mode);
    int rc = store_pg_q(p, &r, err, errlen, sql, "tt", team, name);
    PQclear(r);
    return rc;
}

static int pg_exists(struct pg *p, store_kind kind, const char *team, const char *name, int *found,
                     char *err, size_t errlen)
{
    int64_t one = 0;
    int rc = store_pg_scalar(p, &one, err, errlen, res_sql[kind].exists, "tt", team, name);
    *found = one != 0;
    return rc;
}

int store_pg_need(struct pg *p, store_kind kind, const char *team, const char *name, char *err,
                  size_t errlen)
{
    int found = 0;
    int rc = pg_exists(p, kind, team, name, &found, err, errlen);
    if (rc == STORE_OK && !found)
        rc = store_err_missing(err, errlen, kind, team, name);
    return rc;
}

int store_pg_read_resource(struct pg *p, store_kind kind, const char *team, const char *name,
                           json_t **row, char *err, size_t errlen)
{
    PGresult *r;
    int rc = store_pg_q(p, &r, err, errlen, res_sql[kind].get, "tt", team, name);
    if (rc != STORE_OK)
        return rc;
    if (PQntuples(r) > 0) {
        const char *owner = store_pg_text(r, 0, 1);
        if (kind == STORE_MACHINE && team != NULL && strcmp(owner, team) != 0) {
            seterr(err, errlen, "machine '%s' belongs to team '%s', not '%s'", name, owner, team);
            PQclear(r);
            return STORE_NOT_FOUND;
        }
        json_decref(*row);
        *row = resource_row_at(kind, r, 0);
        PQclear(r);
        return STORE_OK;
    }
    PQclear(r);
    if (kind == STORE_STORAGE || kind == STORE_SCHEDULE) {
        rc = store_pg_need(p, STORE_TEAM, NULL, team, err, errlen);
        if (rc != STORE_OK)
            return rc;
    }
    return store_err_missing(err, errlen, kind, team, name);
}

struct res_ctx {
    store_kind kind;
    const char *team, *parent, *name;
    json_t *vault;
    int64_t expected_version;
    int flags;
    json_t *row; /* output */
};

static int create_conflict(struct pg *p, const struct res_ctx *c, char *err, size_t errlen)
{
    if (c->kind == STORE_MACHINE) {
        json_t *row = NULL;
        if (store_pg_read_resource(p, STORE_MACHINE, NULL, c->name, &row, NULL, 0) == STORE_OK)
            seterr(err, errlen,
                   "machine '%s' already exists (team '%s'); machine names are unique "
                   "across teams",
                   c->name, json_string_value(json_object_get(row, "teamName")));
        json_decref(row);
    } else if (c->kind == STORE_STORAGE || c->kind == STORE_SCHEDULE) {
        seterr(err, errlen, "team '%s' already has a %s named '%s'", c->team,
               store_kind_name(c->kind), c->name);
    } else {
        seterr(err, errlen, "%s '%s' already exists", store_kind_name(c->kind), c->name);
    }
    return STORE_CONFLICT;
}

static int resource_create_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    int rc = STORE_OK, found = 0, concurrency = 1;
    if (c->kind == STORE_MACHINE || c->kind == STORE_STORAGE || c->kind == STORE_SCHEDULE)
        rc = store_pg_need(p, STORE_TEAM, NULL, c->team, err, errlen);
    if (rc == STORE_OK && c->kind == STORE_BRIDGE)
        rc = store_pg_need(p, STORE_REGION, NULL, c->parent, err, errlen);
    if (rc == STORE_OK && c->kind == STORE_MACHINE)
        rc = store_pg_need(p, STORE_BRIDGE, NULL, c->parent, err, errlen);
    if (rc == STORE_OK)
        rc = pg_exists(p, c->kind, c->team, c->name, &found, err, errlen);
    if (rc == STORE_OK && found)
        return create_conflict(p, c, err, errlen);
    if (rc == STORE_OK)
        rc = store_vault_concurrency(c->vault, &concurrency, err, errlen);
    long rows = 0;
    if (rc == STORE_OK)
        rc = store_pg_w(p, &rows, err, errlen, res_sql[c->kind].insert, RES_TYPES, c->team, c->name,
                        c->vault, now_ms(), c->parent, concurrency, (int64_t)0);
    /* Created by someone else between the check and the insert. (A parent removed
     * meanwhile is a foreign key violation, whose message says so.) */
    if (rc == STORE_OK && rows == 0)
        return create_conflict(p, c, err, errlen);
    if (rc == STORE_OK)
        rc = store_pg_read_resource(p, c->kind, c->team, c->name, &c->row, err, errlen);
    return rc;
}

int store_pg_resource_create(store *s, store_kind kind, const char *team, const char *parent,
                             const char *name, json_t *vault, json_t **row, char *err,
                             size_t errlen)
{
    struct res_ctx c = {.kind = kind, .team = team, .parent = parent, .name = name, .vault = vault};
    int rc = store_pg_run((struct pg *)s, 1, resource_create_body, &c, err, errlen);
    if (rc != STORE_OK) {
        json_decref(c.row);
        c.row = NULL;
    }
    if (row)
        *row = c.row;
    else
        json_decref(c.row);
    return rc;
}

static int resource_get_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    return store_pg_read_resource(p, c->kind, c->team, c->name, &c->row, err, errlen);
}

int store_pg_resource_get(store *s, store_kind kind, const char *team, const char *name,
                          json_t **row, char *err, size_t errlen)
{
    struct res_ctx c = {.kind = kind, .team = team, .name = name};
    int rc = store_pg_run((struct pg *)s, 0, resource_get_body, &c, err, errlen);
    if (rc != STORE_OK) {
        json_decref(c.row);
        c.row = NULL;
    }
    *row = c.row;
    return rc;
}

static int resource_list_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    int rc = STORE_OK;
    PGresult *r = NULL;
    const char *sql = c->team ? res_sql[c->kind].list_in : res_sql[c->kind].list;
    if (c->team != NULL)
        rc = store_pg_need(p, c->kind == STORE_BRIDGE ? STORE_REGION : STORE_TEAM, NULL, c->team,
                           err, errlen);
    if (rc == STORE_OK)
        rc = store_pg_q(p, &r, err, errlen, sql, "t", c->team);
    if (rc != STORE_OK)
        return rc;
    json_t *rows = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(rows, resource_row_at(c->kind, r, i));
    PQclear(r);
    json_decref(c->row);
    c->row = rows;
    return STORE_OK;
}

int store_pg_resource_list(store *s, store_kind kind, const char *scope, json_t **rows, char *err,
                           size_t errlen)
{
    struct res_ctx c = {.kind = kind, .team = scope};
    int rc = store_pg_run((struct pg *)s, 0, resource_list_body, &c, err, errlen);
    if (rc != STORE_OK) {
        json_decref(c.row);
        c.row = NULL;
    }
    *rows = c.row;
    return rc;
}

static int update_vault_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    json_t *old = NULL, *vault = NULL;
    int concurrency = 1;
    int rc = lock_resource(p, c->kind, c->team, c->name, "NO KEY UPDATE", err, errlen);
    if (rc == STORE_OK)
        rc = store_pg_read_resource(p, c->kind, c->team, c->name, &old, err, errlen);
    if (rc != STORE_OK)
        return rc;
    json_int_t version = json_integer_value(json_object_get(old, "vaultVersion"));
    const char *team = json_string_value(json_object_get(old, "teamName"));
    if (c->expected_version >= 0 && version != c->expected_version) {
        seterr(err, errlen, "%s '%s': vault version is %lld, not %lld; re-read and retry",
               store_kind_name(c->kind), c->name, (long long)version,
               (long long)c->expected_version);
        rc = STORE_CONFLICT;
        goto out;
    }
    if (c->flags == STORE_VAULT_MERGE) {
        vault = json_deep_copy(json_object_get(old, "vault"));
        store_merge_patch(vault, c->vault);
    } else {
        vault = json_incref(c->vault);
    }
    rc = store_vault_concurrency(vault, &concurrency, err, errlen);
    if (rc == STORE_OK)
        rc = store_pg_w(p, NULL, err, errlen, res_sql[c->kind].update, RES_TYPES, team, c->name,
                        vault, now_ms(), (const char *)NULL, concurrency, (int64_t)version);
    if (rc == STORE_OK)
        rc = store_pg_read_resource(p, c->kind, team, c->name, &c->row, err, errlen);
out:
    json_decref(vault);
    json_decref(old);
    return rc;
}

int store_pg_resource_update_vault(store *s, store_kind kind, const char *team, const char *name,
                                   json_t *vault, int64_t expected_version, int flags, json_t **row,
                                   char *err, size_t errlen)
{
    struct res_ctx c = {.kind = kind,
                        .team = team,
                        .name = name,
                        .vault = vault,
                        .expected_version = expected_version,
                        .flags = flags};
    int rc = store_pg_run((struct pg *)s, 1, update_vault_body, &c, err, errlen);
    if (rc != STORE_OK) {
        json_decref(c.row);
        c.row = NULL;
    }
    if (row)
        *row = c.row;
    else
        json_decref(c.row);
    return rc;
}

/*
 * Appends "NOUN a, b, c" for the names a query returns (at most 5 shown, then "and N
 * more") to buf, separated from earlier text by " and ". Returns how many it found.
 */
static int64_t append_names(struct pg *p, char *buf, size_t buflen, const char *noun,
                            const char *sql, const char *key, int *status)
{
    PGresult *r;
    if (*status != STORE_OK)
        return 0;
    *status = store_pg_q(p, &r, NULL, 0, sql, "t", key);
    if (*status != STORE_OK)
        return 0;
    int64_t n = PQntuples(r);
    size_t len = strlen(buf);
    for (int i = 0; i < n && i < 5; i++)
        len += (size_t)snprintf(buf + len, len < buflen ? buflen - len : 0, "%s%s%s",
                                i ? ", " : (len ? " and " : ""), i ? "" : noun,
                                store_pg_text(r, i, 0));
    if (n > 5 && len < buflen)
        snprintf(buf + len, buflen - len, " and %lld more", (long long)(n - 5));
    PQclear(r);
    return n;
}

/* Formats what keeps a resource from being deleted into buf ("" when nothing does). */
static int delete_blockers(struct pg *p, store_kind kind, const char *name, char *buf,
                           size_t buflen)
{
    int rc = STORE_OK;
    buf[0] = '\0';
    if (kind == STORE_TEAM) {
        append_names(p, buf, buflen, "machines ",
                     "SELECT name FROM machines WHERE team_name = $1 ORDER BY name", name, &rc);
        append_names(p, buf, buflen, "storages ",
                     "SELECT name FROM storages WHERE team_name = $1 ORDER BY name", name, &rc);
        append_names(p, buf, buflen, "schedules ",
                     "SELECT name FROM schedules WHERE team_name = $1 ORDER BY name", name, &rc);
    } else if (kind == STORE_REGION) {
        append_names(p, buf, buflen, "bridges ",
                     "SELECT name FROM bridges WHERE region_name = $1 ORDER BY name", name, &rc);
    } else if (kind == STORE_BRIDGE) {
        append_names(p, buf, buflen, "machines ",
                     "SELECT name FROM machines WHERE bridge_name = $1 ORDER BY name", name, &rc);
    } else if (kind == STORE_MACHINE) {
        append_names(p, buf, buflen, "unfinished queue items ",
                     "SELECT task_id FROM queue_items WHERE machine_name = $1 AND status IN"
                     " ('PENDING','ASSIGNED','PROCESSING','CANCELLING') ORDER BY created_at, seq",
                     name, &rc);
    }
    return rc;
}

static int resource_delete_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    char blockers[1024];
    json_t *row = NULL;
    /* Locked first, so that what is checked below cannot change before the delete (a new
     * machine on the bridge, a new item for the machine: they lock it in share mode). */
    int rc = lock_resource(p, c->kind, c->team, c->name, "UPDATE", err, errlen);
    if (rc == STORE_OK)
        rc = store_pg_read_resource(p, c->kind, c->team, c->name, &row, err, errlen);
    if (rc != STORE_OK)
        return rc;
    const char *team = json_string_value(json_object_get(row, "teamName"));
    rc = delete_blockers(p, c->kind, c->name, blockers, sizeof(blockers));
    if (rc == STORE_OK && blockers[0] != '\0') {
        seterr(err, errlen, "%s '%s' still has %s; remove %s first", store_kind_name(c->kind),
               c->name, blockers, c->kind == STORE_MACHINE ? "or cancel them" : "them");
        rc = STORE_CONFLICT;
    }
    if (rc == STORE_OK)
        rc = store_pg_w(p, NULL, err, errlen, res_sql[c->kind].remove, "tt", team, c->name);
    json_decref(row);
    return rc;
}

int store_pg_resource_delete(store *s, store_kind kind, const char *team, const char *name,
                             char *err, size_t errlen)
{
    struct res_ctx c = {.kind = kind, .team = team, .name = name};
    return store_pg_run((struct pg *)s, 1, resource_delete_body, &c, err, errlen);
}

static int set_bridge_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    json_t *row = NULL;
    int rc = lock_resource(p, STORE_MACHINE, NULL, c->name, "NO KEY UPDATE", err, errlen);
    if (rc == STORE_OK)
        rc = store_pg_read_resource(p, STORE_MACHINE, c->team, c->name, &row, err, errlen);
    json_decref(row);
    if (rc == STORE_OK)
        rc = store_pg_need(p, STORE_BRIDGE, NULL, c->parent, err, errlen);
    if (rc == STORE_OK)
        rc = store_pg_w(p, NULL, err, errlen,
                        "UPDATE machines SET bridge_name = $1, updated_at = $2 WHERE name = $3",
                        "tIt", c->parent, now_ms(), c->name);
    if (rc == STORE_OK)
        rc = store_pg_read_resource(p, STORE_MACHINE, NULL, c->name, &c->row, err, errlen);
    return rc;
}

int store_pg_machine_set_bridge(store *s, const char *team, const char *name, const char *bridge,
                                json_t **row, char *err, size_t errlen)
{
    struct res_ctx c = {.kind = STORE_MACHINE, .team = team, .name = name, .parent = bridge};
    int rc = store_pg_run((struct pg *)s, 1, set_bridge_body, &c, err, errlen);
    if (rc != STORE_OK) {
        json_decref(c.row);
        c.row = NULL;
    }
    if (row)
        *row = c.row;
    else
        json_decref(c.row);
    return rc;
}

struct run_ctx {
    const char *team, *name, *last_task_id;
    int64_t next_run, last_run;
};

static int set_run_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct run_ctx *c = ctx;
    json_t *row = NULL;
    int rc = store_pg_read_resource(p, STORE_SCHEDULE, c->team, c->name, &row, err, errlen);
    json_decref(row);
    if (rc == STORE_OK)
        rc = store_pg_w(p, NULL, err, errlen,
                        "UPDATE schedules SET next_run_at = $3, last_run_at = $4,"
                        " last_task_id = $5 WHERE team_name = $1 AND name = $2",
                        "ttNNt", c->team, c->name, c->next_run, c->last_run, c->last_task_id);
    return rc;
}

int store_pg_schedule_set_run(store *s, const char *team, const char *name, int64_t next_run_ms,
                              int64_t last_run_ms, const char *last_task_id, char *err,
                              size_t errlen)
{
    struct run_ctx c = {team, name, last_task_id, next_run_ms, last_run_ms};
    return store_pg_run((struct pg *)s, 1, set_run_body, &c, err, errlen);
}
