/*
 * Resources (teams, regions, bridges, machines, storages, schedules) over the engine
 * (engine.h), for every driver. Where the engine has row locks, a resource is locked before
 * it is read for an update or a delete, so concurrent changes serialise as they do under
 * SQLite's single writer; updates carry the version they read as a guard.
 */
#include "engine.h"
#include "groups.h"
#include "people.h"
#include "store_seal.h"

#include "util.h"
#include "vault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parameter types of the S_RES_* family: team, name, vault, now, parent, concurrency,
 * version read. A statement uses those it needs. */
#define RES_TYPES "ttjItiI"

static json_t *resource_row_at(store_kind kind, eng_rows *r)
{
    struct store_resource_cols c = {
        .name = eng_text(r, 0),
        .team = eng_text(r, 1),
        .bridge = eng_text(r, 2),
        .region = eng_text(r, 3),
        .vault_json = eng_text(r, 4),
        .vault_version = eng_i64(r, 5),
        .created_at = eng_i64(r, 6),
        .updated_at = eng_i64(r, 7),
        .next_run_at = eng_i64(r, 8),
        .last_run_at = eng_i64(r, 9),
        .last_task_id = eng_text(r, 10),
    };
    return store_resource_row(kind, &c);
}

/* Runs a statement of the S_RES_* family for kind. */
static int res_w(store *s, int family, store_kind kind, long *changes, char *err, size_t errlen,
                 const char *team, const char *name, json_t *vault, const char *parent,
                 int concurrency, int64_t version)
{
    return eng_w(s, changes, err, errlen, family + (int)kind, RES_TYPES, team, name, vault,
                 now_ms(), parent, concurrency, version);
}

/* Locks the row of (kind, team, name) for the rest of the transaction (family: the change or
 * the delete lock), where the engine has row locks. A missing row is not an error here. */
static int lock_row(store *s, int family, store_kind kind, const char *team, const char *name,
                    char *err, size_t errlen)
{
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, family + (int)kind, "tt", team, name);
    if (rc == STORE_OK)
        eng_done(&r);
    return rc;
}

static int exists(store *s, store_kind kind, const char *team, const char *name, int *found,
                  char *err, size_t errlen)
{
    int64_t one = 0;
    int rc = eng_scalar(s, &one, err, errlen, S_RES_EXISTS + (int)kind, "tt", team, name);
    *found = one != 0;
    return rc;
}

int eng_need(store *s, store_kind kind, const char *team, const char *name, char *err,
             size_t errlen)
{
    int found = 0;
    int rc = exists(s, kind, team, name, &found, err, errlen);
    if (rc == STORE_OK && !found)
        rc = store_err_missing(err, errlen, kind, team, name);
    return rc;
}

int eng_read_resource(store *s, store_kind kind, const char *team, const char *name, json_t **row,
                      char *err, size_t errlen)
{
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_RES_GET + (int)kind, "tt", team, name);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    if (got == 1) {
        const char *owner = eng_text(&r, 1);
        if (kind == STORE_MACHINE && team != NULL && strcmp(owner, team) != 0) {
            seterr(err, errlen, "machine '%s' belongs to team '%s', not '%s'", name, owner, team);
            got = STORE_NOT_FOUND;
        } else {
            json_decref(*row);
            *row = resource_row_at(kind, &r);
        }
    }
    eng_done(&r);
    if (got != 0)
        return got < 0 ? got : STORE_OK;
    if (kind == STORE_STORAGE || kind == STORE_SCHEDULE || kind == STORE_MACHINE_GROUP) {
        rc = eng_need(s, STORE_TEAM, NULL, team, err, errlen);
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
    int64_t next_run, last_run; /* schedule_set_run */
    json_t *row;                /* output */
};


static int create_conflict(store *s, const struct res_ctx *c, char *err, size_t errlen)
{
    if (c->kind == STORE_MACHINE) {
        json_t *row = NULL;
        if (eng_read_resource(s, STORE_MACHINE, NULL, c->name, &row, NULL, 0) == STORE_OK)
            seterr(err, errlen,
                   "machine '%s' already exists (team '%s'); machine names are unique "
                   "across teams",
                   c->name, json_string_value(json_object_get(row, "teamName")));
        json_decref(row);
    } else if (c->kind == STORE_STORAGE || c->kind == STORE_SCHEDULE ||
               c->kind == STORE_MACHINE_GROUP) {
        seterr(err, errlen, "team '%s' already has a %s named '%s'", c->team,
               store_kind_name(c->kind), c->name);
    } else {
        seterr(err, errlen, "%s '%s' already exists", store_kind_name(c->kind), c->name);
    }
    return STORE_CONFLICT;
}

static int create_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    int rc = STORE_OK, found = 0, concurrency = 1;
    long rows = 0;
    if (c->kind == STORE_MACHINE || c->kind == STORE_STORAGE || c->kind == STORE_SCHEDULE ||
        c->kind == STORE_MACHINE_GROUP)
        rc = eng_need(s, STORE_TEAM, NULL, c->team, err, errlen);
    if (rc == STORE_OK && c->kind == STORE_BRIDGE)
        rc = eng_need(s, STORE_REGION, NULL, c->parent, err, errlen);
    if (rc == STORE_OK && c->kind == STORE_MACHINE)
        rc = eng_need(s, STORE_BRIDGE, NULL, c->parent, err, errlen);
    if (rc == STORE_OK)
        rc = exists(s, c->kind, c->team, c->name, &found, err, errlen);
    if (rc == STORE_OK && found)
        return create_conflict(s, c, err, errlen);
    /* Machines and machine groups share one name space (an item names either). */
    if (rc == STORE_OK && c->kind == STORE_MACHINE)
        rc = group_name_free(s, c->name, err, errlen);
    if (rc == STORE_OK && c->kind == STORE_MACHINE_GROUP)
        rc = group_check_write(s, c->team, c->name, c->vault, 1, err, errlen);
    if (rc == STORE_OK)
        rc = store_vault_concurrency(c->vault, &concurrency, err, errlen);
    /* Created meanwhile by another process (engines without a single writer): the insert
     * does nothing, reported like the check above. */
    /* Secrets are sealed here, on the one way into the table (store_seal.c). */
    json_t *sealed = c->vault ? json_deep_copy(c->vault) : NULL;
    if (rc == STORE_OK)
        rc = store_seal_resource(s, c->kind, c->team, c->name, sealed, err, errlen);
    if (rc == STORE_OK)
        rc = res_w(s, S_RES_INSERT, c->kind, &rows, err, errlen, c->team, c->name, sealed,
                   c->parent, concurrency, 0);
    json_decref(sealed);
    if (rc == STORE_OK && rows == 0)
        return create_conflict(s, c, err, errlen);
    if (rc == STORE_OK)
        rc = people_audit_resource(s, c->kind, "create", c->team, c->name, NULL, err, errlen);
    if (rc == STORE_OK)
        rc = eng_read_resource(s, c->kind, c->team, c->name, &c->row, err, errlen);
    return rc;
}

int store_res_create(store *s, store_kind kind, const char *team, const char *parent,
                     const char *name, json_t *vault, json_t **row, char *err, size_t errlen)
{
    struct res_ctx c = {.kind = kind, .team = team, .parent = parent, .name = name, .vault = vault};
    int rc = eng_run(s, 1, create_body, &c, err, errlen);
    return eng_take_json(c.row, row, rc);
}

static int get_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    return eng_read_resource(s, c->kind, c->team, c->name, &c->row, err, errlen);
}

int store_res_get(store *s, store_kind kind, const char *team, const char *name, json_t **row,
                  char *err, size_t errlen)
{
    struct res_ctx c = {.kind = kind, .team = team, .name = name};
    int rc = eng_run(s, kind == STORE_SCHEDULE ? 0 : ENG_READ_NO_BARRIER, get_body, &c, err,
                     errlen);
    return eng_take_json(c.row, row, rc);
}

static int list_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    int rc = STORE_OK;
    eng_rows r;
    if (c->team != NULL)
        rc = eng_need(s, c->kind == STORE_BRIDGE ? STORE_REGION : STORE_TEAM, NULL, c->team, err,
                      errlen);
    if (rc == STORE_OK)
        rc = eng_q(s, &r, err, errlen, (c->team ? S_RES_LIST_IN : S_RES_LIST) + (int)c->kind, "t",
                   c->team);
    if (rc != STORE_OK)
        return rc;
    json_t *rows = json_array();
    int got;
    while ((got = eng_next(&r, err, errlen)) == 1)
        json_array_append_new(rows, resource_row_at(c->kind, &r));
    eng_done(&r);
    if (got < 0) {
        json_decref(rows);
        return got;
    }
    json_decref(c->row);
    c->row = rows;
    return STORE_OK;
}

int store_res_list(store *s, store_kind kind, const char *scope, json_t **rows, char *err,
                   size_t errlen)
{
    struct res_ctx c = {.kind = kind, .team = scope};
    int rc = eng_run(s, kind == STORE_SCHEDULE ? 0 : ENG_READ_NO_BARRIER, list_body, &c, err,
                     errlen);
    return eng_take_json(c.row, rows, rc);
}

static int update_vault_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    json_t *old = NULL, *vault = NULL;
    int concurrency = 1;
    int rc = lock_row(s, S_RES_LOCK_CHANGE, c->kind, c->team, c->name, err, errlen);
    if (rc == STORE_OK)
        rc = eng_read_resource(s, c->kind, c->team, c->name, &old, err, errlen);
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
    /* RFC 7396, with ferry's one implementation (vault.c). */
    vault = c->flags == STORE_VAULT_MERGE ? json_merge_patch(json_object_get(old, "vault"), c->vault)
                                          : json_deep_copy(c->vault);
    if (vault == NULL) {
        seterr(err, errlen, "%s '%s': out of memory merging the vault", store_kind_name(c->kind),
               c->name);
        rc = STORE_ERROR;
        goto out;
    }
    rc = store_vault_concurrency(vault, &concurrency, err, errlen);
    if (rc == STORE_OK && c->kind == STORE_MACHINE_GROUP)
        rc = group_check_write(s, team, c->name, vault, 0, err, errlen);
    if (rc == STORE_OK)
        rc = store_seal_resource(s, c->kind, team, c->name, vault, err, errlen);
    if (rc == STORE_OK)
        rc = res_w(s, S_RES_UPDATE, c->kind, NULL, err, errlen, team, c->name, vault, NULL,
                   concurrency, (int64_t)version);
    if (rc == STORE_OK)
        rc = people_audit_resource(s, c->kind, c->flags == STORE_VAULT_MERGE ? "update" : "replace",
                                   team, c->name, c->vault, err, errlen);
    if (rc == STORE_OK)
        rc = eng_read_resource(s, c->kind, team, c->name, &c->row, err, errlen);
out:
    json_decref(vault);
    json_decref(old);
    return rc;
}

int store_res_update_vault(store *s, store_kind kind, const char *team, const char *name,
                           json_t *vault, int64_t expected_version, int flags, json_t **row,
                           char *err, size_t errlen)
{
    struct res_ctx c = {.kind = kind,
                        .team = team,
                        .name = name,
                        .vault = vault,
                        .expected_version = expected_version,
                        .flags = flags};
    int rc = eng_run(s, 1, update_vault_body, &c, err, errlen);
    return eng_take_json(c.row, row, rc);
}

/*
 * Appends "NOUN a, b, c" for the names a query returns (at most 5 shown, then "and N
 * more") to buf, separated from earlier text by " and ".
 */
static void append_names(store *s, char *buf, size_t buflen, const char *noun, int id,
                         const char *key, int *status)
{
    eng_rows r;
    if (*status != STORE_OK || (*status = eng_q(s, &r, NULL, 0, id, "t", key)) != STORE_OK)
        return;
    int64_t n = 0;
    size_t len = strlen(buf);
    int got;
    while ((got = eng_next(&r, NULL, 0)) == 1) {
        if (n < 5)
            len += (size_t)snprintf(buf + len, len < buflen ? buflen - len : 0, "%s%s%s",
                                    n ? ", " : (len ? " and " : ""), n ? "" : noun,
                                    eng_text(&r, 0));
        n++;
    }
    eng_done(&r);
    if (got < 0)
        *status = got;
    if (n > 5 && len < buflen)
        snprintf(buf + len, buflen - len, " and %lld more", (long long)(n - 5));
}

/* Formats what keeps a resource from being deleted into buf ("" when nothing does). */
static int delete_blockers(store *s, store_kind kind, const char *name, char *buf, size_t buflen)
{
    int rc = STORE_OK;
    buf[0] = '\0';
    if (kind == STORE_TEAM) {
        append_names(s, buf, buflen, "machines ", S_RES_NAMES_TEAM_MACHINES, name, &rc);
        append_names(s, buf, buflen, "storages ", S_RES_NAMES_TEAM_STORAGES, name, &rc);
        append_names(s, buf, buflen, "schedules ", S_RES_NAMES_TEAM_SCHEDULES, name, &rc);
        append_names(s, buf, buflen, "active API tokens ", S_RES_NAMES_TEAM_TOKENS, name, &rc);
    } else if (kind == STORE_REGION) {
        append_names(s, buf, buflen, "bridges ", S_RES_NAMES_REGION_BRIDGES, name, &rc);
    } else if (kind == STORE_BRIDGE) {
        append_names(s, buf, buflen, "machines ", S_RES_NAMES_BRIDGE_MACHINES, name, &rc);
    } else if (kind == STORE_MACHINE) {
        append_names(s, buf, buflen, "unfinished queue items ", S_RES_NAMES_MACHINE_ITEMS, name,
                     &rc);
    }
    return rc;
}

static int delete_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    char blockers[1024];
    json_t *row = NULL;
    /* Locked first, so that what is checked below cannot change before the delete (a new
     * machine on the bridge, a new item for the machine: they lock it in share mode). */
    int rc = lock_row(s, S_RES_LOCK_DELETE, c->kind, c->team, c->name, err, errlen);
    if (rc == STORE_OK)
        rc = eng_read_resource(s, c->kind, c->team, c->name, &row, err, errlen);
    if (rc != STORE_OK)
        return rc;
    const char *team = json_string_value(json_object_get(row, "teamName"));
    if (c->kind == STORE_MACHINE)
        rc = group_machine_in_use(s, team, c->name, err, errlen);
    if (rc == STORE_OK)
        rc = delete_blockers(s, c->kind, c->name, blockers, sizeof(blockers));
    if (rc == STORE_OK && blockers[0] != '\0') {
        seterr(err, errlen, "%s '%s' still has %s; remove %s first", store_kind_name(c->kind),
               c->name, blockers, c->kind == STORE_MACHINE ? "or cancel them" : "them");
        rc = STORE_CONFLICT;
    }
    if (rc == STORE_OK)
        rc = res_w(s, S_RES_DELETE, c->kind, NULL, err, errlen, team, c->name, NULL, NULL, 0, 0);
    if (rc == STORE_OK)
        rc = people_audit_resource(s, c->kind, "delete", team, c->name, NULL, err, errlen);
    json_decref(row);
    return rc;
}

int store_res_delete(store *s, store_kind kind, const char *team, const char *name, char *err,
                     size_t errlen)
{
    struct res_ctx c = {.kind = kind, .team = team, .name = name};
    return eng_run(s, 1, delete_body, &c, err, errlen);
}

static int set_bridge_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    json_t *row = NULL;
    int rc = lock_row(s, S_RES_LOCK_CHANGE, STORE_MACHINE, NULL, c->name, err, errlen);
    if (rc == STORE_OK)
        rc = eng_read_resource(s, STORE_MACHINE, c->team, c->name, &row, err, errlen);
    json_decref(row);
    if (rc == STORE_OK)
        rc = eng_need(s, STORE_BRIDGE, NULL, c->parent, err, errlen);
    if (rc == STORE_OK)
        rc = eng_w(s, NULL, err, errlen, S_MACHINE_SET_BRIDGE, "tIt", c->parent, now_ms(),
                   c->name);
    if (rc == STORE_OK)
        rc = people_audit_resource(s, STORE_MACHINE, "move", c->team, c->name, NULL, err, errlen);
    if (rc == STORE_OK)
        rc = eng_read_resource(s, STORE_MACHINE, NULL, c->name, &c->row, err, errlen);
    return rc;
}

int store_res_set_bridge(store *s, const char *team, const char *name, const char *bridge,
                         json_t **row, char *err, size_t errlen)
{
    struct res_ctx c = {.kind = STORE_MACHINE, .team = team, .name = name, .parent = bridge};
    int rc = eng_run(s, 1, set_bridge_body, &c, err, errlen);
    return eng_take_json(c.row, row, rc);
}

static int set_run_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    json_t *row = NULL;
    int rc = eng_read_resource(s, STORE_SCHEDULE, c->team, c->name, &row, err, errlen);
    json_decref(row);
    if (rc == STORE_OK)
        rc = eng_w(s, NULL, err, errlen, S_SCHEDULE_SET_RUN, "ttNNt", c->team, c->name,
                   c->next_run, c->last_run, c->parent);
    return rc;
}

int store_res_set_run(store *s, const char *team, const char *name, int64_t next_run_ms,
                      int64_t last_run_ms, const char *last_task_id, char *err, size_t errlen)
{
    struct res_ctx c = {.team = team,
                        .name = name,
                        .parent = last_task_id,
                        .next_run = next_run_ms,
                        .last_run = last_run_ms};
    return eng_run(s, 1, set_run_body, &c, err, errlen);
}
