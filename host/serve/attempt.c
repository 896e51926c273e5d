/* Building an attempt for the runner; see attempt.h. */
#include "attempt.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "exec.h"
#include "registry.h"
#include "util.h"
#include "vault.h"

json_t *attempt_params(const json_t *vault)
{
    json_t *params = json_object();
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)vault, key, v) {
        if (!vault_is_host_key(key) || !strcmp(key, "description") || !strcmp(key, "tags"))
            json_object_set(params, key, v);
    }
    return params;
}

int64_t attempt_timeout_ms(const ferry_config *cfg, const json_t *vault, const struct ferry_fn *fn)
{
    json_int_t t = json_integer_value(json_object_get(vault, "timeout"));
    if (t <= 0)
        t = fn ? (json_int_t)fn->timeout_s : 0;
    if (t <= 0)
        t = cfg->timeout_default;
    if (t > cfg->timeout_max)
        t = cfg->timeout_max;
    return (int64_t)t * 1000;
}

void attempt_build(const ferry_config *cfg, const struct attempt_source *src,
                   struct attempt_run *run)
{
    memset(run, 0, sizeof(*run));
    run->params = attempt_params(src->vault);
    run->config = config_plugin_section(cfg, src->fn->plugin);
    struct attempt_spec *spec = &run->spec;
    spec->plugin = src->fn->path;
    spec->function = src->fn->name;
    spec->params = run->params;
    spec->config = run->config;
    spec->machine = src->machine;
    spec->machine_json = src->machine_json;
    spec->ssh_key = src->ssh_key;
    spec->task_id = src->task_id;
    spec->attempt = src->attempt;
    spec->depth = src->depth;
    spec->timeout_ms = attempt_timeout_ms(cfg, src->vault, src->fn);
    /* The item's hooks run around its own attempt only, never around nested calls. */
    if (src->depth == 0) {
        spec->pre_hook = json_string_value(json_object_get(src->item_vault, "pre_hook"));
        spec->post_hook = json_string_value(json_object_get(src->item_vault, "post_hook"));
        if (spec->pre_hook || spec->post_hook)
            run->hook_dir =
                src->reg ? registry_hook_dir(src->reg, src->machine, run->params) : NULL;
        spec->hook_dir = run->hook_dir;
    }
}

void attempt_run_free(struct attempt_run *run)
{
    json_decref(run->params);
    json_decref(run->config);
    free(run->hook_dir);
    memset(run, 0, sizeof(*run));
}

/* The SSH_PRIVATE_KEY (any case) of a vault, or NULL. Borrowed from vault. */
static json_t *vault_ssh_key(const json_t *vault)
{
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)vault, key, v) {
        if (strcasecmp(key, "ssh_private_key") == 0 && json_is_string(v) &&
            json_string_length(v) > 0)
            return v;
    }
    return NULL;
}

json_t *attempt_machine_row(store *st, const char *team, const char *name, const json_t *row,
                            json_t **team_row, json_t **ssh_key)
{
    if (ssh_key)
        *ssh_key = NULL;
    /* The vault's secrets are sealed in the store: opened here, for the key the exec
     * service needs; a value that does not open stays out (store_seal.c logs nothing here,
     * the attempt's SSH then fails for want of a key). */
    json_t *open_row = json_deep_copy(row);
    store_resource_reveal(st, STORE_MACHINE, open_row, NULL, 0);
    json_t *vault = json_object_get(open_row, "vault");
    json_t *m = vault_redact(vault, NULL);
    json_object_set_new(m, "name", json_string(name));
    json_object_set_new(m, "team", json_string(team));
    json_object_set(m, "bridge", json_object_get(row, "bridgeName"));
    json_object_set_new(m, "local", json_boolean(exec_machine_is_local(vault)));
    json_t *key = vault_ssh_key(vault);
    char err[512];
    if (key == NULL && !exec_machine_is_local(vault) &&
        (*team_row != NULL ||
         (store_resource_get(st, STORE_TEAM, NULL, team, team_row, err, sizeof(err)) == 0 &&
          store_resource_reveal(st, STORE_TEAM, *team_row, err, sizeof(err)) == 0)))
        key = vault_ssh_key(json_object_get(*team_row, "vault"));
    /* Secrets stay out of the facts, but the exec service needs the key: it travels in
     * the run message's own field. */
    if (key && ssh_key)
        *ssh_key = json_incref(key);
    json_decref(open_row);
    return m;
}

json_t *attempt_machine(store *st, const char *team, const char *name, json_t **ssh_key)
{
    json_t *row = NULL, *team_row = NULL;
    if (ssh_key)
        *ssh_key = NULL;
    char err[512];
    if (store_resource_get(st, STORE_MACHINE, team, name, &row, err, sizeof(err)) != 0)
        return json_pack("{s:s?,s:s?,s:b}", "name", name, "team", team, "local", 0);
    json_t *m = attempt_machine_row(st, team, name, row, &team_row, ssh_key);
    json_decref(team_row);
    json_decref(row);
    return m;
}

json_t *attempt_local_machine(void)
{
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);
    return json_pack("{s:s,s:b,s:s}", "name", host, "local", 1, "hostname", host);
}

/* --- the machine cache ------------------------------------------------------------------ */

/* Entries kept at most (then the cache starts again empty), and slots: twice as many. */
#define MACHINE_CACHE_MAX   4096
#define MACHINE_CACHE_SLOTS (2 * MACHINE_CACHE_MAX)

struct machine_cache {
    struct machine_facts *slot[MACHINE_CACHE_SLOTS];
    /* The slots in use, in the order they were filled: a clear visits these, not all
     * 8,192 slots (an idle SQLite host clears its cache at every item, another process's
     * create being a change it cannot tell from a machine's). */
    uint16_t used[MACHINE_CACHE_MAX];
    size_t n;
};

static uint64_t machine_hash(const char *team, const char *name)
{
    /* FNV-1a over team, a NUL, name */
    return fnv1a(fnv1a(FNV1A_BASIS, team ? team : "") * FNV1A_PRIME, name ? name : "");
}

/* The slot of team/name: its entry's, or the empty one where it would go. */
static size_t machine_slot(const machine_cache *c, uint64_t h, const char *team,
                           const char *name)
{
    size_t i = (size_t)(h % MACHINE_CACHE_SLOTS);
    for (;;) {
        const struct machine_facts *e = c->slot[i];
        if (e == NULL || (e->hash == h && strcmp(e->team, team ? team : "") == 0 &&
                          strcmp(e->name, name ? name : "") == 0))
            return i;
        i = (i + 1) % MACHINE_CACHE_SLOTS;
    }
}

machine_cache *machine_cache_new(void)
{
    machine_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    return c;
}

const struct machine_facts *machine_cache_get(const machine_cache *c, const char *team,
                                              const char *name)
{
    return c->slot[machine_slot(c, machine_hash(team, name), team, name)];
}

static void machine_facts_free(struct machine_facts *e)
{
    free(e->team);
    free(e->name);
    free(e->json);
    json_decref(e->facts);
    json_decref(e->key_ref);
    free(e);
}

const struct machine_facts *machine_cache_put(machine_cache *c, const char *team,
                                              const char *name, json_t *facts, json_t *ssh_key)
{
    if (c->n >= MACHINE_CACHE_MAX)
        machine_cache_clear(c);
    uint64_t h = machine_hash(team, name);
    size_t i = machine_slot(c, h, team, name);
    if (c->slot[i])
        machine_facts_free(c->slot[i]); /* replaced: its slot is in used already */
    else
        c->used[c->n++] = (uint16_t)i;
    struct machine_facts *e = calloc(1, sizeof(*e));
    if (e == NULL)
        abort();
    e->team = xstrdup(team ? team : "");
    e->name = xstrdup(name ? name : "");
    e->facts = facts;
    e->key_ref = ssh_key;
    e->ssh_key = json_string_value(ssh_key);
    e->json = facts ? json_dumps(facts, JSON_COMPACT) : NULL;
    e->hash = h;
    c->slot[i] = e;
    return e;
}

void machine_cache_clear(machine_cache *c)
{
    for (size_t k = 0; k < c->n; k++) {
        machine_facts_free(c->slot[c->used[k]]);
        c->slot[c->used[k]] = NULL;
    }
    c->n = 0;
}

void machine_cache_free(machine_cache *c)
{
    if (c == NULL)
        return;
    machine_cache_clear(c);
    free(c);
}
