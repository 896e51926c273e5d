/* Building an attempt for the runner; see attempt.h. */
#include "attempt.h"

#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "exec.h"
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

int64_t attempt_timeout_ms(const ferry_config *cfg, const json_t *vault,
                           const struct ferry_fn *fn)
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

/*
 * The machine facts with the item's pre_hook and post_hook (host-owned vault keys) as
 * "_hooks": the worker runs them on the machine around the function, for the item's own
 * attempt only (depth 0), never for nested calls. New reference.
 */
static json_t *with_hooks(const json_t *machine, const json_t *item_vault)
{
    json_t *facts = machine ? json_deep_copy(machine) : json_null();
    json_t *pre = json_object_get(item_vault, "pre_hook");
    json_t *post = json_object_get(item_vault, "post_hook");
    if (json_is_object(facts) && (json_is_string(pre) || json_is_string(post)))
        json_object_set_new(facts, "_hooks",
                            json_pack("{s:O?,s:O?}", "pre_hook", json_is_string(pre) ? pre : NULL,
                                      "post_hook", json_is_string(post) ? post : NULL));
    return facts;
}

json_t *attempt_message(const ferry_config *cfg, const struct attempt_spec *spec)
{
    return json_pack("{s:s?,s:s,s:o,s:o,s:o,s:i,s:s,s:i}", "plugin", spec->fn->path, "function",
                     spec->fn->name, "params", attempt_params(spec->vault), "config",
                     config_plugin_section(cfg, spec->fn->plugin), "machine",
                     with_hooks(spec->machine, spec->item_vault), "depth", spec->depth, "task",
                     spec->task_id, "attempt", spec->attempt);
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

json_t *attempt_machine(store *st, const char *team, const char *name)
{
    json_t *row = NULL;
    char err[512];
    if (store_resource_get(st, STORE_MACHINE, team, name, &row, err, sizeof(err)) != 0)
        return json_pack("{s:s?,s:s?,s:b}", "name", name, "team", team, "local", 0);
    json_t *vault = json_object_get(row, "vault");
    json_t *m = vault_redact(vault, NULL);
    /* Secrets stay out of the facts but the exec service needs the key: it travels under a
     * name the machine service never returns. */
    json_object_set_new(m, "name", json_string(name));
    json_object_set_new(m, "team", json_string(team));
    json_object_set(m, "bridge", json_object_get(row, "bridgeName"));
    json_object_set_new(m, "local", json_boolean(exec_machine_is_local(vault)));
    json_t *key = vault_ssh_key(vault), *team_row = NULL;
    if (key == NULL && !exec_machine_is_local(vault) &&
        store_resource_get(st, STORE_TEAM, NULL, team, &team_row, err, sizeof(err)) == 0)
        key = vault_ssh_key(json_object_get(team_row, "vault"));
    if (key)
        json_object_set(m, EXEC_SSH_KEY_MEMBER, key);
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
