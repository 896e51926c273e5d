/*
 * The store interface: opens a store through the driver table (drivers.c), validates input
 * once, calls the store's logic (resources.c, queue.c, claim.c, finish.c, over engine.h),
 * keeps batches and their wake-ups, and builds the JSON rows, so that field names,
 * messages and computed fields cannot drift between engines.
 */
#include "store.h"
#include "config.h"
#include "engine.h"
#include "people.h"
#include "store_seal.h"

#include "util.h"

#include <ctype.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

/* ---- opening: the driver table (drivers.c) decides ----------------------------------------- */

/* Attaches the sealing key and state to a store a driver opened (store_seal.c); NULL when
 * that fails (the store is closed). sqlite_path: the file, or NULL for a server. */
static store *with_seal(store *s, const char *sqlite_path, const struct store_options *opts,
                        char *err, size_t errlen)
{
    if (s != NULL && store_seal_attach(s, sqlite_path, opts, err, errlen) != STORE_OK) {
        store_close(s);
        s = NULL;
    }
    if (s != NULL)
        s->opened = 1;
    return s;
}

store *store_open_opts(const char *url_or_path, const struct store_options *opts, char *err,
                       size_t errlen)
{
    static const struct store_options defaults;
    if (url_or_path == NULL || *url_or_path == '\0') {
        seterr(err, errlen, "no store given: set store in the config to a file path or URL");
        return NULL;
    }
    if (opts == NULL)
        opts = &defaults;
    const struct store_driver_entry *d = store_driver_for_url(url_or_path);
    const char *url = url_or_path;
    if (d->url_prefix && strncmp(url, d->url_prefix, strlen(d->url_prefix)) == 0)
        url += strlen(d->url_prefix);
    return with_seal(d->open(url, opts, err, errlen), d->conninfo ? NULL : url, opts, err,
                     errlen);
}

/* Whether the configuration names its store by conninfo (a server) rather than by path. */
static const char *config_conninfo_label(const ferry_config *cfg)
{
    const struct store_driver_entry *d = store_driver_by_name(cfg->store_driver);
    return d != NULL ? d->conninfo : NULL;
}

static store *open_config(const ferry_config *cfg, int short_lived, char *err, size_t errlen)
{
    struct store_options so = {.synchronous_normal =
                                   strcmp(cfg->store_synchronous, "normal") == 0,
                               .short_lived = short_lived,
                               .key_path = cfg->store_key};
    const struct store_driver_entry *d = store_driver_by_name(cfg->store_driver);
    if (d == NULL) {
        seterr(err, errlen, "unknown store.driver '%s'", cfg->store_driver);
        return NULL;
    }
    /* The configured driver decides, not the shape of the string: a valid conninfo may
     * start with any keyword ("keepalives=1 host=…"). */
    if (config_conninfo_label(cfg) != NULL) {
        /* A server has no directory of its own: the key defaults to one beside the config. */
        char *dir = cfg->path ? xstrdup(cfg->path) : NULL;
        char *key = so.key_path[0] == '\0' && dir ? xasprintf("%s/ferry.key", dirname(dir))
                                                   : NULL;
        if (key)
            so.key_path = key;
        store *s = with_seal(d->open(cfg->store_conninfo, &so, err, errlen), NULL, &so, err,
                             errlen);
        free(key);
        free(dir);
        return s;
    }
    return store_open_opts(cfg->store_path, &so, err, errlen);
}

store *store_open_config(const ferry_config *cfg, char *err, size_t errlen)
{
    return open_config(cfg, 0, err, errlen);
}

store *store_open_config_short(const ferry_config *cfg, char *err, size_t errlen)
{
    return open_config(cfg, 1, err, errlen);
}

const char *store_config_target(const ferry_config *cfg)
{
    const char *label = config_conninfo_label(cfg);
    return label ? label : cfg->store_path;
}

store *store_open(const char *url_or_path, char *err, size_t errlen)
{
    return store_open_opts(url_or_path, NULL, err, errlen);
}

static void clear_notify_pending(store *s)
{
    for (size_t i = 0; i < s->n_notify_pending; i++)
        free(s->notify_pending[i]);
    free(s->notify_pending);
    s->notify_pending = NULL;
    s->n_notify_pending = 0;
}

void store_close(store *s)
{
    if (s == NULL)
        return;
    clear_notify_pending(s);
    store_set_actor(s, NULL);
    store_seal_detach(s);
    claim_forget(s);
    s->drv->close(s);
}

/* The handle store_close_for_exit left open, referenced until the exit so that a leak
 * checker does not count it (volatile: a pointer only ever stored is otherwise dropped). */
static store *volatile left_for_exit;

void store_close_for_exit(store *s)
{
    if (s == NULL || s->drv->exit_leaves == NULL || !s->drv->exit_leaves(s)) {
        store_close(s);
        return;
    }
    store_seal_detach(s); /* wipes the key */
    left_for_exit = s;
}

const char *store_driver_name(const store *s)
{
    return s->drv->name;
}

int store_migrations(store *s, json_t **rows, char *err, size_t errlen)
{
    return eng_migrations_list(s, rows, err, errlen);
}

/* ---- batches and wake-ups -------------------------------------------------------------- */

int store_begin(store *s, char *err, size_t errlen)
{
    if (s->batch_depth > 0) {
        s->batch_depth++;
        return STORE_OK;
    }
    int rc = s->drv->begin(s, err, errlen);
    if (rc == STORE_OK)
        s->batch_depth = 1;
    return rc;
}

static void flush_notify_pending(store *s)
{
    for (size_t i = 0; i < s->n_notify_pending; i++)
        s->drv->notify(s, s->notify_pending[i]);
    clear_notify_pending(s);
}

int store_commit(store *s, char *err, size_t errlen)
{
    if (s->batch_depth == 0) {
        seterr(err, errlen, "store_commit without store_begin");
        return STORE_ERROR;
    }
    if (--s->batch_depth > 0)
        return STORE_OK;
    int rc = s->drv->commit(s, err, errlen);
    s->batch_lost = 0;
    if (rc == STORE_OK) {
        /* The hosts are woken before the commit is on disk where the driver syncs it after
         * (synced): a host's claim then overlaps the sync, and starts nothing before its own
         * sync, which covers this commit too (docs/store-drivers.md). */
        flush_notify_pending(s);
        if (s->drv->synced)
            rc = s->drv->synced(s, err, errlen);
    } else {
        clear_notify_pending(s);
        claim_forget(s); /* it may have seen ends and claims now undone */
    }
    return rc;
}

int store_rollback(store *s, char *err, size_t errlen)
{
    if (s->batch_depth == 0)
        return STORE_OK;
    s->batch_depth = 0;
    s->batch_lost = 0;
    clear_notify_pending(s);
    claim_forget(s);
    return s->drv->rollback(s, err, errlen);
}

void store_notify_after_commit(store *s, const char *bridge)
{
    if (s->batch_depth == 0) {
        s->drv->notify(s, bridge);
        return;
    }
    for (size_t i = 0; i < s->n_notify_pending; i++)
        if (strcmp(s->notify_pending[i], bridge) == 0)
            return;
    char **grown = realloc(s->notify_pending, (s->n_notify_pending + 1) * sizeof(char *));
    if (grown == NULL)
        abort();
    s->notify_pending = grown;
    s->notify_pending[s->n_notify_pending++] = xstrdup(bridge);
}

void store_notify(store *s, const char *bridge)
{
    if (bridge != NULL)
        s->drv->notify(s, bridge);
}

int64_t store_data_version(store *s)
{
    return s->drv->data_version ? s->drv->data_version(s) : -1;
}

int64_t store_resources_version(store *s)
{
    return s->drv->resources_version ? s->drv->resources_version(s) : store_data_version(s);
}

int store_wait_fd(store *s, const char *bridge, char *err, size_t errlen)
{
    if (!valid_name(bridge, err, errlen))
        return -1;
    return s->drv->wait_fd(s, bridge, err, errlen);
}

void store_wait_drain(store *s)
{
    s->drv->wait_drain(s);
}

int store_idle(store *s)
{
    return s->drv->idle ? s->drv->idle(s) : 0;
}

int store_defer_sync(store *s)
{
    return s->drv->defer_sync ? s->drv->defer_sync(s) : -1;
}

int store_sync(store *s, char *err, size_t errlen)
{
    return s->drv->sync ? s->drv->sync(s, 0, err, errlen) : STORE_OK;
}

int store_sync_first(store *s, char *err, size_t errlen)
{
    return s->drv->sync ? s->drv->sync(s, s->drv->sync_note != NULL, err, errlen) : STORE_OK;
}

void store_sync_note(store *s)
{
    if (s->drv->sync_note)
        s->drv->sync_note(s);
}

/* ---- resources --------------------------------------------------------------------------- */

static const char *const kind_names[STORE_KIND_COUNT] = {
    "team", "region", "bridge", "machine", "storage", "schedule", "machine group",
};

const char *store_kind_name(store_kind kind)
{
    return kind >= 0 && kind < STORE_KIND_COUNT ? kind_names[kind] : "resource";
}

static int kind_needs_team(store_kind kind)
{
    return kind == STORE_STORAGE || kind == STORE_SCHEDULE || kind == STORE_MACHINE_GROUP;
}

static int check_kind(store_kind kind, char *err, size_t errlen)
{
    if (kind < 0 || kind >= STORE_KIND_COUNT) {
        seterr(err, errlen, "unknown resource kind %d", (int)kind);
        return STORE_ERROR;
    }
    return STORE_OK;
}

/* Names are checked before any SQL runs, so that a bad name is a clear error rather
 * than a confusing "not found". */
static int check_names(char *err, size_t errlen, const char *a, const char *b, const char *c)
{
    const char *names[] = {a, b, c};
    for (size_t i = 0; i < 3; i++)
        if (names[i] != NULL && !valid_name(names[i], err, errlen))
            return STORE_ERROR;
    return STORE_OK;
}

static int check_vault(json_t *vault, const char *what, char *err, size_t errlen)
{
    if (vault != NULL && !json_is_object(vault)) {
        seterr(err, errlen, "the %s vault must be a JSON object", what);
        return STORE_ERROR;
    }
    return STORE_OK;
}

static int resource_create(store *s, store_kind kind, const char *team, const char *parent,
                           const char *name, json_t *vault, json_t **row, char *err, size_t errlen)
{
    if (row)
        *row = NULL;
    int needs_team = kind_needs_team(kind) || kind == STORE_MACHINE;
    int needs_parent = kind == STORE_BRIDGE || kind == STORE_MACHINE;
    if (name == NULL || (needs_team && team == NULL) || (needs_parent && parent == NULL)) {
        seterr(err, errlen, "missing name for the new %s", store_kind_name(kind));
        return STORE_ERROR;
    }
    int rc = check_names(err, errlen, team, parent, name);
    if (rc == STORE_OK)
        rc = check_vault(vault, store_kind_name(kind), err, errlen);
    if (rc == STORE_OK && kind == STORE_MACHINE) {
        int concurrency;
        rc = store_vault_concurrency(vault, &concurrency, err, errlen);
    }
    if (rc != STORE_OK)
        return rc;
    json_t *empty = vault ? NULL : json_object();
    rc = store_res_create(s, kind, team, parent, name, vault ? vault : empty, row, err,
                                 errlen);
    json_decref(empty);
    return rc;
}

int store_team_create(store *s, const char *name, json_t *vault, json_t **row, char *err,
                      size_t errlen)
{
    return resource_create(s, STORE_TEAM, NULL, NULL, name, vault, row, err, errlen);
}

int store_region_create(store *s, const char *name, json_t *vault, json_t **row, char *err,
                        size_t errlen)
{
    return resource_create(s, STORE_REGION, NULL, NULL, name, vault, row, err, errlen);
}

int store_bridge_create(store *s, const char *region, const char *name, json_t *vault, json_t **row,
                        char *err, size_t errlen)
{
    return resource_create(s, STORE_BRIDGE, NULL, region, name, vault, row, err, errlen);
}

int store_machine_create(store *s, const char *team, const char *bridge, const char *name,
                         json_t *vault, json_t **row, char *err, size_t errlen)
{
    return resource_create(s, STORE_MACHINE, team, bridge, name, vault, row, err, errlen);
}

int store_storage_create(store *s, const char *team, const char *name, json_t *vault, json_t **row,
                         char *err, size_t errlen)
{
    return resource_create(s, STORE_STORAGE, team, NULL, name, vault, row, err, errlen);
}

int store_schedule_create(store *s, const char *team, const char *name, json_t *vault, json_t **row,
                          char *err, size_t errlen)
{
    return resource_create(s, STORE_SCHEDULE, team, NULL, name, vault, row, err, errlen);
}

int store_machine_group_create(store *s, const char *team, const char *name, json_t *vault,
                               json_t **row, char *err, size_t errlen)
{
    return resource_create(s, STORE_MACHINE_GROUP, team, NULL, name, vault, row, err, errlen);
}

/* Common checks of (kind, team, name) for the operations on an existing resource. */
static int check_ref(store_kind kind, const char *team, const char *name, char *err, size_t errlen)
{
    int rc = check_kind(kind, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (name == NULL || (kind_needs_team(kind) && team == NULL)) {
        seterr(err, errlen, "missing %s%s name", kind_needs_team(kind) ? "team or " : "",
               store_kind_name(kind));
        return STORE_ERROR;
    }
    if (kind == STORE_TEAM || kind == STORE_REGION || kind == STORE_BRIDGE)
        team = NULL;
    return check_names(err, errlen, team, name, NULL);
}

int store_resource_get(store *s, store_kind kind, const char *team, const char *name, json_t **row,
                       char *err, size_t errlen)
{
    *row = NULL;
    int rc = check_ref(kind, team, name, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (kind != STORE_MACHINE && !kind_needs_team(kind))
        team = NULL;
    return store_res_get(s, kind, team, name, row, err, errlen);
}

int store_resource_list(store *s, store_kind kind, const char *scope, json_t **rows, char *err,
                        size_t errlen)
{
    *rows = NULL;
    int rc = check_kind(kind, err, errlen);
    if (rc == STORE_OK && scope != NULL)
        rc = check_names(err, errlen, scope, NULL, NULL);
    if (rc != STORE_OK)
        return rc;
    if (kind == STORE_TEAM || kind == STORE_REGION)
        scope = NULL;
    return store_res_list(s, kind, scope, rows, err, errlen);
}

int store_resource_update_vault(store *s, store_kind kind, const char *team, const char *name,
                                json_t *vault, int64_t expected_version, int flags, json_t **row,
                                char *err, size_t errlen)
{
    if (row)
        *row = NULL;
    int rc = check_ref(kind, team, name, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (vault == NULL || !json_is_object(vault)) {
        seterr(err, errlen, "the %s vault must be a JSON object", store_kind_name(kind));
        return STORE_ERROR;
    }
    if (flags != STORE_VAULT_REPLACE && flags != STORE_VAULT_MERGE) {
        seterr(err, errlen, "unknown vault update flags %d", flags);
        return STORE_ERROR;
    }
    if (kind != STORE_MACHINE && !kind_needs_team(kind))
        team = NULL;
    return store_res_update_vault(s, kind, team, name, vault, expected_version, flags, row,
                                         err, errlen);
}

int store_resource_delete(store *s, store_kind kind, const char *team, const char *name, char *err,
                          size_t errlen)
{
    int rc = check_ref(kind, team, name, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (kind != STORE_MACHINE && !kind_needs_team(kind))
        team = NULL;
    return store_res_delete(s, kind, team, name, err, errlen);
}

int store_machine_set_bridge(store *s, const char *team, const char *name, const char *bridge,
                             json_t **row, char *err, size_t errlen)
{
    if (row)
        *row = NULL;
    if (name == NULL || bridge == NULL) {
        seterr(err, errlen, "missing machine or bridge name");
        return STORE_ERROR;
    }
    int rc = check_names(err, errlen, team, name, bridge);
    if (rc != STORE_OK)
        return rc;
    return store_res_set_bridge(s, team, name, bridge, row, err, errlen);
}

int store_schedule_set_run(store *s, const char *team, const char *name, int64_t next_run_ms,
                           int64_t last_run_ms, const char *last_task_id, char *err, size_t errlen)
{
    int rc = check_ref(STORE_SCHEDULE, team, name, err, errlen);
    if (rc != STORE_OK)
        return rc;
    return store_res_set_run(s, team, name, next_run_ms, last_run_ms, last_task_id, err,
                                    errlen);
}

/* ---- queue items --------------------------------------------------------------------------- */

/* Host-supplied text (plugin messages) is capped so one chatty plugin cannot grow the
 * store without bound: reasons, progress messages, event details. */
#define MAX_REASON  4096
#define MAX_MESSAGE 1024
#define MAX_DETAILS 65536

/* Returns text, or when it is longer than max bytes a copy cut at a character boundary
 * and marked with "…", stored in *copy for the caller to free. */
static const char *capped(const char *text, size_t max, char **copy)
{
    *copy = NULL;
    if (text == NULL || strlen(text) <= max)
        return text;
    size_t n = max;
    while (n > 0 && ((unsigned char)text[n] & 0xc0) == 0x80)
        n--; /* do not split a UTF-8 sequence */
    *copy = xasprintf("%.*s…", (int)n, text);
    return *copy;
}

static const char *const statuses[] = {
    "PENDING", "ASSIGNED", "PROCESSING", "CANCELLING", "COMPLETED", "FAILED", "CANCELLED", NULL,
};

int store_status_ok(const char *status)
{
    for (const char *const *p = statuses; status && *p; p++)
        if (strcmp(*p, status) == 0)
            return 1;
    return 0;
}

int store_task_id_ok(const char *text)
{
    size_t n = text ? strlen(text) : 0;
    if (n == 0 || n > 36)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)text[i]) && text[i] != '-')
            return 0;
    return 1;
}

/* Copies a task id or prefix into out in lower case (ids are stored lower case). */
static int normalise_task_id(const char *text, char out[37], char *err, size_t errlen)
{
    if (!store_task_id_ok(text)) {
        seterr(err, errlen, "no queue item with task id '%s'", text ? text : "");
        return STORE_NOT_FOUND;
    }
    size_t i = 0;
    for (; text[i]; i++)
        out[i] = (char)tolower((unsigned char)text[i]);
    out[i] = '\0';
    return STORE_OK;
}

static int check_link_kind(const char *kind, char *err, size_t errlen)
{
    if (kind == NULL || strcmp(kind, "retry") == 0 || strcmp(kind, "fallback") == 0 ||
        strcmp(kind, "call") == 0)
        return STORE_OK;
    seterr(err, errlen, "unknown link kind '%s': use retry, fallback or call", kind);
    return STORE_ERROR;
}

/*
 * Validates one spec and fills in its defaults into *out. Owned memory the filled spec
 * points at (the lower-cased ids) goes into *ids, which the caller frees.
 */
static int prepare_spec(const struct store_item_spec *in, struct store_item_spec *out, char **ids,
                        int64_t now, char *err, size_t errlen)
{
    *out = *in;
    *ids = NULL;
    if (in->team == NULL || in->machine == NULL || in->bridge == NULL) {
        seterr(err, errlen, "a queue item needs a team, a machine and a bridge");
        return STORE_ERROR;
    }
    int rc = check_names(err, errlen, in->team, in->machine, in->bridge);
    if (rc == STORE_OK)
        rc = check_vault(in->vault, "queue item", err, errlen);
    if (rc == STORE_OK)
        rc = check_link_kind(in->link_kind, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (in->priority == 0)
        out->priority = 3;
    if (out->priority < 1 || out->priority > 5) {
        seterr(err, errlen, "priority must be 1-5 (1 is highest), not %d", in->priority);
        return STORE_ERROR;
    }
    if (out->function == NULL && in->vault != NULL)
        out->function = json_string_value(json_object_get(in->vault, "function"));
    if (out->function == NULL || *out->function == '\0') {
        seterr(err, errlen,
               "the vault has no \"function\": name the queue function to run, e.g. "
               "{\"function\":\"hello\"}");
        return STORE_ERROR;
    }
    if (strlen(out->function) > 128) {
        seterr(err, errlen, "function name is longer than 128 characters");
        return STORE_ERROR;
    }
    if (in->n_after > STORE_MAX_AFTER) {
        seterr(err, errlen, "at most %d dependencies per item, not %zu", STORE_MAX_AFTER,
               in->n_after);
        return STORE_ERROR;
    }
    if (in->schedule_fire_ms != 0 && in->schedule_name == NULL) {
        seterr(err, errlen, "a schedule fire time needs a schedule name");
        return STORE_ERROR;
    }
    if (in->schedule_name != NULL &&
        (rc = check_names(err, errlen, in->schedule_name, NULL, NULL)) != STORE_OK)
        return rc;
    out->now_ms = in->now_ms ? in->now_ms : now;
    out->run_after_ms = in->run_after_ms ? in->run_after_ms : out->now_ms;

    /* One block holds the pointer array the filled spec hands the driver, then the
     * lower-cased dependency ids and parent id it points at. */
    size_t n = in->n_after;
    size_t bytes = n * sizeof(const char *) + (n + 1) * 37;
    char *block = calloc(1, bytes);
    if (block == NULL)
        abort();
    const char **after = (const char **)(void *)block;
    char *text = block + n * sizeof(char *);
    *ids = block;
    for (size_t i = 0; i < n && rc == STORE_OK; i++) {
        rc = normalise_task_id(in->after[i], text + i * 37, err, errlen);
        after[i] = text + i * 37;
    }
    if (rc == STORE_OK && in->parent_task_id != NULL) {
        rc = normalise_task_id(in->parent_task_id, text + n * 37, err, errlen);
        out->parent_task_id = text + n * 37;
    }
    out->after = n ? after : NULL;
    return rc;
}

static int create_items(store *s, const struct store_item_spec *specs, size_t n,
                        char (*task_ids)[37], char *err, size_t errlen)
{
    struct store_item_spec *filled = calloc(n ? n : 1, sizeof(*filled));
    char **owned = calloc(n ? n : 1, sizeof(char *));
    if (filled == NULL || owned == NULL)
        abort();
    int64_t now = now_ms();
    int rc = STORE_OK;
    for (size_t i = 0; i < n && rc == STORE_OK; i++) {
        char msg[512] = "";
        rc = prepare_spec(&specs[i], &filled[i], &owned[i], now, msg, sizeof(msg));
        if (rc != STORE_OK && n > 1)
            seterr(err, errlen, "item %zu: %s", i, msg);
        else if (rc != STORE_OK)
            seterr(err, errlen, "%s", msg);
    }
    if (rc == STORE_OK)
        rc = store_items_create(s, filled, n, task_ids, err, errlen);
    /* Wake each bridge once, after the items are visible. */
    for (size_t i = 0; i < n && rc == STORE_OK; i++) {
        size_t j = 0;
        while (j < i && strcmp(filled[j].bridge, filled[i].bridge) != 0)
            j++;
        if (j == i)
            store_notify_after_commit(s, filled[i].bridge);
    }
    for (size_t i = 0; i < n; i++)
        free(owned[i]);
    free(owned);
    free(filled);
    return rc;
}

int store_queue_create(store *s, const struct store_item_spec *spec, char task_id[37], json_t **row,
                       char *err, size_t errlen)
{
    char id[37];
    if (row)
        *row = NULL;
    /* The row is read in the create's transaction: the item as created, durable with it.
     * Read after it, the row could show what a host did meanwhile before that is durable,
     * and would cost the read barrier's sync (store_defer_sync) on the path of the item.
     * A batch of its own even without the row, unless the caller's batch is open: its
     * commit wakes the hosts before the disk has synced it (store_commit), so that a host
     * claims the item while the create's sync runs. */
    int own = row != NULL || s->batch_depth == 0;
    int rc = own ? store_begin(s, err, errlen) : STORE_OK;
    if (rc != STORE_OK)
        return rc;
    rc = create_items(s, spec, 1, &id, err, errlen);
    if (rc == STORE_OK && task_id)
        memcpy(task_id, id, 37);
    int got = rc == STORE_OK && row ? store_item_get(s, id, row, err, errlen) : rc;
    if (own && rc != STORE_OK)
        store_rollback(s, NULL, 0);
    else if (own && (rc = store_commit(s, err, errlen)) != STORE_OK && row) {
        json_decref(*row);
        *row = NULL;
    }
    return rc != STORE_OK ? rc : got;
}

int store_queue_create_batch(store *s, const struct store_item_spec *specs, size_t n,
                             char (*task_ids)[37], char *err, size_t errlen)
{
    if (n == 0)
        return STORE_OK;
    return create_items(s, specs, n, task_ids, err, errlen);
}

int store_queue_get(store *s, const char *task_id, json_t **row, char *err, size_t errlen)
{
    char id[37];
    *row = NULL;
    int rc = normalise_task_id(task_id, id, err, errlen);
    return rc != STORE_OK ? rc : store_item_get(s, id, row, err, errlen);
}

/*
 * Checks a queue filter and fills in its defaults into *f (id holds a normalised task id
 * f->task_id then points at). Returns STORE_OK; 1 when the task id cannot match anything;
 * or STORE_ERROR with err set.
 */
static int prepare_filter(const struct store_queue_filter *filter, struct store_queue_filter *f,
                          char id[37], char *err, size_t errlen)
{
    *f = (struct store_queue_filter){0};
    if (filter != NULL)
        *f = *filter;
    for (size_t i = 0; i < f->n_statuses; i++)
        if (!store_status_ok(f->statuses[i])) {
            seterr(err, errlen,
                   "unknown status '%s': use PENDING, ASSIGNED, PROCESSING, CANCELLING, "
                   "COMPLETED, FAILED or CANCELLED",
                   f->statuses[i] ? f->statuses[i] : "");
            return STORE_ERROR;
        }
    for (size_t i = 0; i < f->n_teams; i++)
        if (check_names(err, errlen, f->teams[i], NULL, NULL) != STORE_OK)
            return STORE_ERROR;
    if (f->max_records <= 0)
        f->max_records = STORE_DEFAULT_RECORDS;
    if (f->max_records > STORE_MAX_RECORDS)
        f->max_records = STORE_MAX_RECORDS;
    if (f->stale_threshold_minutes <= 0)
        f->stale_threshold_minutes = STORE_DEFAULT_STALE_MINUTES;
    if (f->now_ms == 0)
        f->now_ms = now_ms();
    if (f->task_id != NULL) {
        if (normalise_task_id(f->task_id, id, NULL, 0) != STORE_OK)
            return 1; /* not a possible id: simply nothing matches */
        f->task_id = id;
    }
    return STORE_OK;
}

int store_queue_list(store *s, const struct store_queue_filter *filter, json_t **rows, char *err,
                     size_t errlen)
{
    struct store_queue_filter f;
    char id[37];
    *rows = NULL;
    int rc = prepare_filter(filter, &f, id, err, errlen);
    if (rc == 1)
        *rows = json_array();
    if (rc != STORE_OK)
        return rc == 1 ? STORE_OK : rc;
    return store_items_list(s, &f, rows, err, errlen);
}

int store_queue_count(store *s, const struct store_queue_filter *filter, int64_t *count,
                      char *err, size_t errlen)
{
    struct store_queue_filter f;
    char id[37];
    *count = 0;
    int rc = prepare_filter(filter, &f, id, err, errlen);
    if (rc != STORE_OK)
        return rc == 1 ? STORE_OK : rc;
    return store_items_count(s, &f, count, err, errlen);
}

int store_queue_counts(store *s, const char *bridge, json_t **counts, char *err, size_t errlen)
{
    *counts = NULL;
    if (bridge != NULL && check_names(err, errlen, bridge, NULL, NULL) != STORE_OK)
        return STORE_ERROR;
    return store_items_counts(s, bridge, counts, err, errlen);
}

int store_queue_cancel(store *s, const char *task_id, int force, json_t **row, char *err,
                       size_t errlen)
{
    char id[37];
    if (row)
        *row = NULL;
    int rc = normalise_task_id(task_id, id, err, errlen);
    return rc != STORE_OK ? rc : store_item_cancel(s, id, force, now_ms(), row, err, errlen);
}

int store_queue_delete(store *s, const char *task_id, char *err, size_t errlen)
{
    char id[37];
    int rc = normalise_task_id(task_id, id, err, errlen);
    return rc != STORE_OK ? rc : store_item_delete(s, id, now_ms(), err, errlen);
}

int store_event_append(store *s, const char *task_id, const char *action, const char *details,
                       json_t *details_json, int64_t at_ms, char *err, size_t errlen)
{
    char id[37];
    int rc = normalise_task_id(task_id, id, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (action == NULL || *action == '\0' || strlen(action) > 64) {
        seterr(err, errlen, "an event needs an action of 1-64 characters");
        return STORE_ERROR;
    }
    char *copy;
    details = capped(details, MAX_DETAILS, &copy);
    rc = store_events_append(s, id, action, details, details_json, at_ms ? at_ms : now_ms(), err,
                              errlen);
    free(copy);
    return rc;
}

int store_event_list(store *s, const char *task_id, json_t **events, char *err, size_t errlen)
{
    char id[37];
    *events = NULL;
    int rc = normalise_task_id(task_id, id, err, errlen);
    return rc != STORE_OK ? rc : store_events_list(s, id, events, err, errlen);
}

/* ---- execution ----------------------------------------------------------------------------- */

static int check_owner(const char *owner, char *err, size_t errlen)
{
    if (owner == NULL || *owner == '\0' || strlen(owner) > 256) {
        seterr(err, errlen, "a lease owner needs 1-256 characters");
        return STORE_ERROR;
    }
    return STORE_OK;
}

static int check_held(const char *task_id, const char *token, char id[37], char *err, size_t errlen)
{
    if (token == NULL || *token == '\0') {
        seterr(err, errlen, "no claim token given for task %s", task_id ? task_id : "");
        return STORE_ERROR;
    }
    return normalise_task_id(task_id, id, err, errlen);
}

int store_start(store *s, const char *task_id, const char *token, int64_t now, char *err,
                size_t errlen)
{
    char id[37];
    int rc = check_held(task_id, token, id, err, errlen);
    return rc != STORE_OK ? rc : store_held_start(s, id, token, now, err, errlen);
}

int store_progress(store *s, const char *task_id, const char *token, int percent,
                   const char *message, int64_t now, char *err, size_t errlen)
{
    char id[37];
    int rc = check_held(task_id, token, id, err, errlen);
    if (rc != STORE_OK)
        return rc;
    percent = percent < 0 ? 0 : percent > 100 ? 100 : percent;
    char *copy;
    message = capped(message, MAX_MESSAGE, &copy);
    rc = store_held_progress(s, id, token, percent, message, now, err, errlen);
    free(copy);
    return rc;
}

int store_heartbeat(store *s, const char *owner, int64_t lease_ms, int64_t now, int *renewed,
                    char *err, size_t errlen)
{
    if (renewed)
        *renewed = 0;
    int rc = check_owner(owner, err, errlen);
    return rc != STORE_OK ? rc : store_held_heartbeat(s, owner, lease_ms, now, renewed, err, errlen);
}

/* What check_finish prepared for one end, freed with finish_prep_free. */
struct finish_prep {
    char *copy;                  /* the capped reason */
    struct store_item_spec spec; /* the fallback, filled in (prepare_spec) */
    char *ids;                   /* prepare_spec's block */
    char *refused;               /* why the fallback was refused, or NULL */
};

static void finish_prep_free(struct finish_prep *p)
{
    free(p->copy);
    free(p->ids);
    free(p->refused);
}

/* Checks one attempt's end; on success f->outcome.reason may point at p->copy (the capped
 * reason) and id holds the normalised task id. A FAILED end's fallback is filled in as a
 * create fills a spec; one it refuses reaches finish.c as fallback NULL with the reason in
 * fallback_note (a FALLBACK_FAILED event). */
static int check_finish(struct store_finish *f, char id[37], struct finish_prep *p, int64_t now,
                        char *err, size_t errlen)
{
    const struct store_outcome *o = &f->outcome;
    memset(p, 0, sizeof(*p));
    int rc = check_held(f->task_id, f->token, id, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (o->kind < STORE_OUTCOME_COMPLETED || o->kind > STORE_OUTCOME_RELEASE) {
        seterr(err, errlen, "unknown outcome for task %s", id);
        return STORE_ERROR;
    }
    if (o->response != NULL && !json_is_object(o->response)) {
        seterr(err, errlen, "the response vault of task %s must be a JSON object", id);
        return STORE_ERROR;
    }
    f->task_id = id;
    f->outcome.reason = capped(o->reason, MAX_REASON, &p->copy);
    if (f->outcome.fallback == NULL || o->kind != STORE_OUTCOME_FAILED) {
        f->outcome.fallback = NULL;
        f->outcome.fallback_note = NULL;
        return STORE_OK;
    }
    char msg[512] = "";
    const struct store_item_spec *fb = f->outcome.fallback;
    int rc_fb = prepare_spec(fb, &p->spec, &p->ids, now, msg, sizeof(msg));
    if (rc_fb == STORE_OK && (fb->parent_task_id || fb->link_kind || fb->n_after)) {
        seterr(msg, sizeof(msg), "a fallback is linked by the store and has no dependencies");
        rc_fb = STORE_ERROR;
    }
    if (rc_fb == STORE_OK) {
        f->outcome.fallback = &p->spec;
    } else {
        const char *fn =
            fb->function ? fb->function : json_string_value(json_object_get(fb->vault, "function"));
        p->refused = xasprintf("fallback %.128s could not be queued: %s", fn ? fn : "(none)", msg);
        f->outcome.fallback = NULL;
        f->outcome.fallback_note = p->refused;
    }
    return STORE_OK;
}

int store_finish(store *s, const char *task_id, const char *token,
                 const struct store_outcome *outcome, int64_t now, char *err, size_t errlen)
{
    if (outcome == NULL) {
        seterr(err, errlen, "unknown outcome for task %s", task_id ? task_id : "");
        return STORE_ERROR;
    }
    struct store_finish f = {task_id, token, *outcome};
    char id[37];
    struct finish_prep p;
    int rc = check_finish(&f, id, &p, now, err, errlen);
    if (rc == STORE_OK) {
        rc = store_held_finish(s, &f, 1, NULL, now, err, errlen);
        claim_ended(s, &f, 1, NULL, rc);
    }
    finish_prep_free(&p);
    return rc;
}

int store_expired(store *s, const char *bridge, int64_t now, json_t **items, char *err,
                  size_t errlen)
{
    *items = NULL;
    if (bridge != NULL && check_names(err, errlen, bridge, NULL, NULL) != STORE_OK)
        return STORE_ERROR;
    return store_held_expired(s, bridge, now, items, NULL, NULL, err, errlen);
}

int store_cancelling(store *s, const char *owner, json_t **items, char *err, size_t errlen)
{
    *items = NULL;
    int rc = check_owner(owner, err, errlen);
    return rc != STORE_OK ? rc : store_held_cancelling(s, owner, items, NULL, NULL, err, errlen);
}

/* ---- the host's typed view: native, over the same operations ------------------------------- */

void store_items_free(struct store_item *items, size_t n)
{
    for (size_t i = 0; items && i < n; i++) {
        struct store_item *it = &items[i];
        free(it->function), free(it->team), free(it->machine), free(it->bridge);
        free(it->status), free(it->parent_task_id), free(it->link_kind);
        free(it->schedule_name), free(it->lease_owner);
        json_decref(it->vault);
    }
    free(items);
}

static int check_claim(const char *bridge, const char *owner, int64_t lease_ms, int *max_n,
                       char *err, size_t errlen)
{
    int rc = check_names(err, errlen, bridge, NULL, NULL);
    if (rc == STORE_OK)
        rc = check_owner(owner, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (*max_n <= 0 || lease_ms <= 0) {
        seterr(err, errlen, "claim needs a positive count and lease");
        return STORE_ERROR;
    }
    if (*max_n > 1024)
        *max_n = 1024;
    return STORE_OK;
}

int store_claim(store *s, const char *bridge, const char *owner, int64_t lease_ms, int max_n,
                int64_t now, json_t **items, char *err, size_t errlen)
{
    *items = NULL;
    int rc = check_claim(bridge, owner, lease_ms, &max_n, err, errlen);
    return rc != STORE_OK
               ? rc
               : store_claim_rows(s, bridge, owner, lease_ms, max_n, now, items, err, errlen);
}

int store_claim_items(store *s, const char *bridge, const char *owner, int64_t lease_ms, int max_n,
                      int start, int64_t now, struct store_item **items, size_t *n, char *err,
                      size_t errlen)
{
    *items = NULL;
    *n = 0;
    int rc = check_claim(bridge, owner, lease_ms, &max_n, err, errlen);
    return rc != STORE_OK ? rc
                          : store_claim_typed(s, bridge, owner, lease_ms, max_n, start, now, items,
                                              n, err, errlen);
}

int store_expired_items(store *s, const char *bridge, int64_t now, struct store_item **items,
                        size_t *n, char *err, size_t errlen)
{
    *items = NULL;
    *n = 0;
    if (bridge != NULL && check_names(err, errlen, bridge, NULL, NULL) != STORE_OK)
        return STORE_ERROR;
    return store_held_expired(s, bridge, now, NULL, items, n, err, errlen);
}

int store_cancelling_items(store *s, const char *owner, struct store_item **items, size_t *n,
                           char *err, size_t errlen)
{
    *items = NULL;
    *n = 0;
    int rc = check_owner(owner, err, errlen);
    return rc != STORE_OK ? rc : store_held_cancelling(s, owner, NULL, items, n, err, errlen);
}

/*
 * Entries that fail validation are that entry's STORE_ERROR and are left out; the valid
 * ones end in one transaction.
 */
int store_finish_many(store *s, const struct store_finish *f, size_t n, int *rcs, int64_t now,
                      char *err, size_t errlen)
{
    struct store_finish *valid = calloc(n ? n : 1, sizeof(*valid));
    char(*ids)[37] = calloc(n ? n : 1, 37);
    struct finish_prep *preps = calloc(n ? n : 1, sizeof(*preps));
    size_t *where = calloc(n ? n : 1, sizeof(size_t));
    int *valid_rcs = calloc(n ? n : 1, sizeof(int));
    if (valid == NULL || ids == NULL || preps == NULL || where == NULL || valid_rcs == NULL)
        abort();
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        valid[m] = f[i];
        int one = check_finish(&valid[m], ids[m], &preps[m], now, NULL, 0);
        if (rcs)
            rcs[i] = one;
        if (one == STORE_OK)
            where[m++] = i;
        else
            finish_prep_free(&preps[m]);
    }
    int rc = m > 0 ? store_held_finish(s, valid, m, valid_rcs, now, err, errlen) : STORE_OK;
    if (m > 0)
        claim_ended(s, valid, m, valid_rcs, rc);
    for (size_t k = 0; rcs && rc == STORE_OK && k < m; k++)
        rcs[where[k]] = valid_rcs[k];
    for (size_t k = 0; k < m; k++)
        finish_prep_free(&preps[k]);
    free(valid), free(ids), free(preps), free(where), free(valid_rcs);
    return rc;
}

/* ---- helpers shared by the store's files --------------------------------------------------------- */

const char *store_priority_label(int priority)
{
    static const char *const labels[] = {"Highest", "High", "Normal", "Low", "Lowest"};
    return priority >= 1 && priority <= 5 ? labels[priority - 1] : "Unknown";
}

json_t *store_vault_parse(const char *text)
{
    json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    if (v == NULL)
        v = json_object();
    return v;
}

int store_vault_concurrency(json_t *vault, int *out, char *err, size_t errlen)
{
    json_t *c = vault ? json_object_get(vault, "concurrency") : NULL;
    *out = 1;
    if (c == NULL || json_is_null(c))
        return STORE_OK;
    if (!json_is_integer(c) || json_integer_value(c) < 1 || json_integer_value(c) > 100000) {
        seterr(err, errlen, "machine vault \"concurrency\" must be a positive integer");
        return STORE_ERROR;
    }
    *out = (int)json_integer_value(c);
    return STORE_OK;
}

int store_err_missing(char *err, size_t errlen, store_kind kind, const char *team, const char *name)
{
    switch (kind) {
    case STORE_TEAM:
        seterr(err, errlen, "no team named '%s'; create it with: ferry create team %s", name, name);
        break;
    case STORE_REGION:
        seterr(err, errlen, "no region named '%s'; create it with: ferry create region %s", name,
               name);
        break;
    case STORE_BRIDGE:
        seterr(err, errlen, "no bridge named '%s'; create it with: ferry create bridge REGION %s",
               name, name);
        break;
    case STORE_MACHINE:
        seterr(err, errlen,
               "no machine named '%s'; create it with: ferry create machine %s BRIDGE %s "
               "--vault '{\"ip\":…}'",
               name, team ? team : "TEAM", name);
        break;
    case STORE_STORAGE:
    case STORE_SCHEDULE:
        seterr(err, errlen,
               "team '%s' has no %s named '%s'; create it with: ferry create %s %s %s "
               "--vault '{…}'",
               team, store_kind_name(kind), name, store_kind_name(kind), team, name);
        break;
    case STORE_MACHINE_GROUP:
        seterr(err, errlen,
               "team '%s' has no machine group named '%s'; create it with: ferry create "
               "machine-group %s %s --members MACHINE,…",
               team, name, team, name);
        break;
    default:
        seterr(err, errlen, "no such resource '%s'", name);
        break;
    }
    return STORE_NOT_FOUND;
}

/* An ISO 8601 string for ms, or JSON null for 0 (SQL NULL). New reference. */
static json_t *time_json(int64_t ms)
{
    char buf[32];
    if (ms == 0)
        return json_null();
    iso8601_ms(ms, buf);
    return json_string(buf);
}

/* A JSON string for s, or null for NULL. Text from plugins may not be UTF-8; such bytes
 * become '?' rather than losing the whole string. New reference. */
static json_t *str_json(const char *s)
{
    if (s == NULL)
        return json_null();
    json_t *j = json_string(s);
    if (j != NULL)
        return j;
    char *copy = xstrdup(s);
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

static json_t *seconds_json(int64_t from, int64_t to)
{
    if (from == 0 || to < from)
        return from == 0 ? json_null() : json_real(0);
    return json_real((double)(to - from) / 1000.0);
}

static const char *health_status(const struct store_item_cols *c, int64_t now, int64_t stale_ms)
{
    const char *st = c->status;
    if (strcmp(st, "PENDING") == 0) {
        /* Waiting for an --after dependency is not being stuck: the wait starts when the
         * item could first run (created, run_after, its last dependency COMPLETED). */
        if (c->deps_ready_at < 0)
            return "PENDING";
        int64_t ready = c->run_after > c->created_at ? c->run_after : c->created_at;
        if (c->deps_ready_at > ready)
            ready = c->deps_ready_at;
        return now - ready > stale_ms ? "STALE_PENDING" : "PENDING";
    }
    /* A machine group's parent (groups.c) is PROCESSING without a lease: its members
     * carry their own health. */
    if (strcmp(st, "PROCESSING") == 0 && c->lease_owner == NULL)
        return "ACTIVE";
    if (strcmp(st, "ASSIGNED") == 0 || strcmp(st, "PROCESSING") == 0)
        return now - c->updated_at > stale_ms ? "STALE" : "ACTIVE";
    return st;
}

static json_t *after_json(const char *csv)
{
    json_t *a = json_array();
    while (csv && *csv) {
        const char *comma = strchr(csv, ',');
        size_t n = comma ? (size_t)(comma - csv) : strlen(csv);
        json_array_append_new(a, json_stringn(csv, n));
        csv += n + (comma ? 1 : 0);
    }
    return a;
}

json_t *store_item_row(const struct store_item_cols *c, int64_t now, int64_t stale_ms,
                       int with_token)
{
    int active = strcmp(c->status, "ASSIGNED") == 0 || strcmp(c->status, "PROCESSING") == 0 ||
                 strcmp(c->status, "CANCELLING") == 0;
    int64_t end = c->finished_at ? c->finished_at : now;
    json_t *progress = json_null();
    if (c->progress_percent >= 0 || c->progress_message != NULL)
        progress =
            json_pack("{s:o,s:o}", "percent",
                      c->progress_percent >= 0 ? json_integer(c->progress_percent) : json_null(),
                      "message", str_json(c->progress_message));
    json_t *row = json_object();
    json_object_set_new(row, "taskId", json_string(c->task_id));
    json_object_set_new(row, "status", json_string(c->status));
    json_object_set_new(row, "healthStatus", json_string(health_status(c, now, stale_ms)));
    json_object_set_new(row, "priority", json_integer(c->priority));
    json_object_set_new(row, "priorityLabel", json_string(store_priority_label(c->priority)));
    json_object_set_new(row, "function", json_string(c->function));
    json_object_set_new(row, "teamName", json_string(c->team));
    json_object_set_new(row, "machineName", json_string(c->machine));
    json_object_set_new(row, "bridgeName", json_string(c->bridge));
    json_object_set_new(row, "createdTime", time_json(c->created_at));
    json_object_set_new(row, "createdDate", time_json(c->created_at));
    json_object_set_new(row, "createdTimeMs", json_integer(c->created_at));
    json_object_set_new(row, "assignedTime", time_json(c->assigned_at));
    json_object_set_new(row, "startedTime", time_json(c->started_at));
    json_object_set_new(row, "finishedTime", time_json(c->finished_at));
    json_object_set_new(row, "updatedTime", time_json(c->updated_at));
    json_object_set_new(row, "runAfterTime", time_json(c->run_after));
    json_object_set_new(row, "ageInMinutes",
                        json_integer(now > c->created_at ? (now - c->created_at) / 60000 : 0));
    json_object_set_new(row, "retryCount", json_integer(c->retry_count));
    json_object_set_new(row, "lastRetryAt", time_json(c->last_retry_at));
    json_object_set_new(row, "lastFailureReason", str_json(c->last_failure_reason));
    json_object_set_new(row, "canBeCancelled",
                        json_boolean(strcmp(c->status, "PENDING") == 0 ||
                                     strcmp(c->status, "ASSIGNED") == 0 ||
                                     strcmp(c->status, "PROCESSING") == 0));
    json_object_set_new(row, "hasResponse", json_boolean(c->response_json != NULL));
    json_object_set_new(row, "totalDurationSeconds", seconds_json(c->created_at, end));
    json_object_set_new(row, "processingDurationSeconds", seconds_json(c->started_at, end));
    json_object_set_new(row, "progress", progress);
    json_object_set_new(row, "vaultContent", store_vault_parse(c->vault_json));
    json_object_set_new(row, "responseVault",
                        c->response_json ? store_vault_parse(c->response_json) : json_null());
    json_object_set_new(row, "parentTaskId", str_json(c->parent_task_id));
    json_object_set_new(row, "linkKind", str_json(c->link_kind));
    json_object_set_new(row, "after", after_json(c->after_csv));
    json_object_set_new(row, "scheduleName", str_json(c->schedule_name));
    json_object_set_new(row, "scheduleFireTime", time_json(c->schedule_fire_at));
    json_object_set_new(row, "idempotent", json_boolean(c->idempotent));
    json_object_set_new(row, "leaseOwner", str_json(c->lease_owner));
    json_object_set_new(row, "leaseExpiresTime", time_json(active ? c->lease_expires_at : 0));
    if (with_token) {
        json_object_set_new(row, "claimToken", str_json(c->claim_token));
        json_object_set_new(row, "attempt", json_integer(c->retry_count + 1));
        json_object_set_new(row, "leaseExpiresMs", json_integer(c->lease_expires_at));
    }
    return row;
}

json_t *store_resource_row(store_kind kind, const struct store_resource_cols *c)
{
    static const char *const name_keys[STORE_KIND_COUNT] = {
        "teamName", "regionName", "bridgeName", "machineName", "storageName", "scheduleName",
        "groupName",
    };
    json_t *vault = store_vault_parse(c->vault_json);
    json_t *row = json_object();
    json_object_set_new(row, name_keys[kind], json_string(c->name));
    if (kind == STORE_MACHINE || kind == STORE_STORAGE || kind == STORE_SCHEDULE ||
        kind == STORE_MACHINE_GROUP)
        json_object_set_new(row, "teamName", str_json(c->team));
    if (kind == STORE_MACHINE_GROUP) {
        json_t *members = json_object_get(vault, "members");
        json_object_set_new(row, "members", json_is_array(members) ? json_deep_copy(members)
                                                                    : json_array());
    }
    if (kind == STORE_MACHINE)
        json_object_set_new(row, "bridgeName", str_json(c->bridge));
    if (kind == STORE_MACHINE || kind == STORE_BRIDGE)
        json_object_set_new(row, "regionName", str_json(c->region));
    if (kind == STORE_SCHEDULE) {
        json_t *tz = json_object_get(vault, "timezone");
        json_t *enabled = json_object_get(vault, "enabled");
        json_t *cron = json_object_get(vault, "cron");
        json_t *machine = json_object_get(vault, "machine");
        json_object_set_new(row, "cron", cron ? json_incref(cron) : json_null());
        json_object_set_new(row, "timezone",
                            json_is_string(tz) ? json_copy(tz) : json_string("UTC"));
        json_object_set_new(row, "machine", machine ? json_incref(machine) : json_null());
        json_object_set_new(row, "enabled", json_boolean(!json_is_false(enabled)));
        json_object_set_new(row, "nextRun", time_json(c->next_run_at));
        json_object_set_new(row, "lastRun", time_json(c->last_run_at));
        json_object_set_new(row, "lastTaskId", str_json(c->last_task_id));
        json_object_set(row, "vaultContent", vault);
    }
    json_object_set_new(row, "vault", vault);
    json_object_set_new(row, "vaultVersion", json_integer(c->vault_version));
    json_object_set_new(row, "createdTime", time_json(c->created_at));
    json_object_set_new(row, "updatedTime", time_json(c->updated_at));
    return row;
}

json_t *store_event_row(const char *action, const char *details, int details_is_json, int64_t at_ms,
                        int64_t prev_at_ms)
{
    json_t *d = json_null();
    if (details != NULL && details_is_json)
        d = json_loads(details, JSON_DECODE_ANY, NULL);
    if (d == NULL || (details != NULL && !details_is_json)) {
        json_decref(d);
        d = str_json(details);
    }
    json_t *row = json_object();
    json_object_set_new(row, "action", json_string(action));
    json_object_set_new(row, "details", d);
    json_object_set_new(row, "timestamp", time_json(at_ms));
    json_object_set_new(row, "timestampMs", json_integer(at_ms));
    json_object_set_new(row, "secondsSincePrevious",
                        prev_at_ms ? seconds_json(prev_at_ms, at_ms) : json_real(0));
    return row;
}
