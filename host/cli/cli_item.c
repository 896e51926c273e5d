/*
 * The checks of one queue item, written once for `create queue-item` and for every line of
 * `create queue-items` (and, for the vault alone, a schedule's queue_config): the vault's
 * host keys, the function's parameters when a local plugin provides it, unknown functions
 * and keys (warned, or refused with --strict), and the item's team, machine and bridge.
 */
#include <string.h>

#include "cli.h"
#include "queue.h"
#include "registry.h"
#include "store.h"
#include "util.h"
#include "vault.h"

/*
 * The last vault checked and what came of it. A bulk input usually repeats one vault on
 * many lines, and the checks depend on nothing else (the vault, the --strict flag, the two
 * texts the messages quote, the plugin directory of the run): an equal vault is answered
 * from here. It was 5% of a bulk create's instructions.
 */
static struct {
    const cli *c;
    const void *reg; /* the registry fn points into */
    json_t *vault; /* a reference: nothing changes an item's vault */
    char *what, *where;
    int strict, rc;
    const json_t *fn;
    json_t *warnings; /* the texts check_vault appended */
    char *err;
} last;

static void last_forget(void)
{
    json_decref(last.vault);
    json_decref(last.warnings);
    free(last.what);
    free(last.where);
    free(last.err);
    memset(&last, 0, sizeof(last));
}

static int check_vault_uncached(cli *c, const json_t *vault, const char *what, const char *where,
                                const json_t **fn, json_t *warnings, char *err, size_t errlen);

/*
 * cli_check_item_vault without printing: returns 0, or EXIT_ERROR with the reason in err.
 * Warnings are appended to warnings (an array).
 */
static int check_vault(cli *c, const json_t *vault, const char *what, const char *where,
                       const json_t **fn, json_t *warnings, char *err, size_t errlen)
{
    int strict = cli_flag(c, "strict");
    if (last.vault != NULL && last.c == c && last.reg == (const void *)c->reg &&
        last.strict == strict &&
        strcmp(last.what, what) == 0 && strcmp(last.where, where) == 0 &&
        json_equal(last.vault, (json_t *)vault)) {
        *fn = last.fn;
        json_array_extend(warnings, last.warnings);
        if (last.rc != 0)
            seterr(err, errlen, "%s", last.err);
        return last.rc;
    }
    last_forget();
    json_t *mine = json_array();
    int rc = check_vault_uncached(c, vault, what, where, fn, mine, err, errlen);
    json_array_extend(warnings, mine);
    last.c = c;
    last.reg = c->reg;
    last.vault = json_incref((json_t *)vault);
    last.what = xstrdup(what);
    last.where = xstrdup(where);
    last.strict = strict;
    last.rc = rc;
    last.fn = *fn;
    last.warnings = mine;
    last.err = xstrdup(rc != 0 ? err : "");
    return rc;
}

static int check_vault_uncached(cli *c, const json_t *vault, const char *what, const char *where,
                                const json_t **fn, json_t *warnings, char *err, size_t errlen)
{
    char why[1024];
    int strict = cli_flag(c, "strict");
    *fn = NULL;
    if (vault_check_host_keys(vault, why, sizeof(why)) != 0) {
        seterr(err, errlen, "%s%s", what, why);
        return EXIT_ERROR;
    }
    if (cli_registry_cached(c) != 0) {
        seterr(err, errlen, "cannot read the plugin directory");
        return EXIT_ERROR;
    }
    const char *function = json_string_value(json_object_get(vault, "function"));
    *fn = cli_function(c, function);
    if (*fn == NULL) {
        if (strict) {
            seterr(err, errlen,
                   "%sfunction %s is not provided by any plugin in %s, so its parameters "
                   "cannot be checked (--strict)",
                   what, function, c->reg->dir);
            return EXIT_ERROR;
        }
        json_array_append_new(warnings,
                              json_sprintf("%sfunction %s is not provided by any plugin in %s; "
                                           "%s must have it, or the item will fail",
                                           what, function, c->reg->dir, where));
        return 0;
    }
    /* params_validate sets defaults on the vault's top level only: a shallow copy keeps
     * the item's vault as it was (a deep one cost a bulk create 3%). */
    json_t *copy = json_copy((json_t *)vault);
    int rc = params_validate(*fn, copy, why, sizeof(why));
    json_decref(copy);
    if (rc != 0) {
        seterr(err, errlen, "%s%s", what, why);
        return EXIT_ERROR;
    }
    json_t *unknown = params_unknown_keys(*fn, vault);
    size_t i;
    json_t *u;
    json_array_foreach (unknown, i, u) {
        const char *key = json_string_value(json_object_get(u, "key"));
        const char *closest = json_string_value(json_object_get(u, "closest"));
        if (strict) {
            seterr(err, errlen,
                   "%svault key \"%s\" is neither a parameter of %s nor a host key (did you "
                   "mean \"%s\"?); refused by --strict",
                   what, key, function, closest ? closest : "function");
            rc = EXIT_ERROR;
            break;
        }
        json_array_append_new(
            warnings, json_sprintf("%svault key \"%s\" is neither a parameter of %s nor "
                                   "a host key (did you mean \"%s\"?); %s ignores it",
                                   what, key, function, closest ? closest : "function", function));
    }
    json_decref(unknown);
    return rc;
}

int cli_check_item_vault(cli *c, const json_t *vault, const char *what, const char *where,
                         const json_t **fn, json_t **warnings)
{
    char err[1200];
    *warnings = json_array();
    int rc = check_vault(c, vault, what, where, fn, *warnings, err, sizeof(err));
    return rc ? cli_fail(c, rc, "%s", err) : 0;
}

/*
 * The team, machine and bridge of an item exist, and the machine is on that bridge (an item
 * runs through the bridge it names). Returns 0, or EXIT_ERROR with the reason in err, in the
 * store's words. Each triple is looked up once per run (c->refs_checked), since a bulk
 * input usually repeats a few.
 */
static int check_refs(cli *c, const char *team, const char *machine, const char *bridge, char *err,
                      size_t errlen)
{
    /* The key is copied into a buffer on the stack when it fits (names are short): built
     * with xasprintf for every line, it was a fifth of these checks' instructions. */
    char buf[256], *key = buf;
    size_t lt = strlen(team), lm = strlen(machine), lb = strlen(bridge);
    if (lt + lm + lb + 3 > sizeof(buf))
        key = xasprintf("%s\n%s\n%s", team, machine, bridge);
    else {
        memcpy(buf, team, lt);
        buf[lt] = '\n';
        memcpy(buf + lt + 1, machine, lm);
        buf[lt + 1 + lm] = '\n';
        memcpy(buf + lt + lm + 2, bridge, lb + 1);
    }
    const char *known = json_string_value(json_object_get(c->refs_checked, key));
    if (known != NULL) {
        if (key != buf)
            free(key);
        if (*known == '\0')
            return 0;
        seterr(err, errlen, "%s", known);
        return EXIT_ERROR;
    }
    json_t *row = NULL, *other = NULL;
    char why[1024] = "";
    /* The usual case in one read: the team's machine, on this bridge. Its row names both,
     * and the store's foreign keys keep a machine's team and bridge in existence, so the
     * team and the bridge need no read of their own. The store's create checks its item by
     * the same read (store_machine_on: the machine's whole row, built as JSON, was 5% of a
     * create queue-item's instructions). Anything else is asked in order below, for the
     * first thing wrong, in the store's words. */
    int on = 0;
    if (store_machine_on(c->st, team, machine, bridge, &on, NULL, 0) == STORE_OK && on) {
        if (c->refs_checked == NULL)
            c->refs_checked = json_object();
        json_object_set_new(c->refs_checked, key, json_string(""));
        if (key != buf)
            free(key);
        return 0;
    }
    int st = store_resource_get(c->st, STORE_TEAM, NULL, team, &other, why, sizeof(why));
    json_decref(other);
    other = NULL;
    if (st == STORE_OK)
        st = store_resource_get(c->st, STORE_MACHINE, team, machine, &row, why, sizeof(why));
    if (st == STORE_NOT_FOUND) /* a machine group: its members (cli_groups.c) */
        st = cli_group_check_bridge(c, team, machine, bridge, why, sizeof(why), st);
    if (st == STORE_OK)
        st = store_resource_get(c->st, STORE_BRIDGE, NULL, bridge, &other, why, sizeof(why));
    json_decref(other);
    const char *actual = json_string_value(json_object_get(row, "bridgeName"));
    if (st == STORE_OK && actual != NULL && strcmp(actual, bridge) != 0) {
        st = STORE_NOT_FOUND;
        snprintf(why, sizeof(why),
                 "machine '%s' is on bridge '%s', not '%s'; queue it with: ferry create "
                 "queue-item %s %s %s (or move it: ferry update machine-bridge %s %s %s)",
                 machine, actual, bridge, team, machine, actual, team, machine, bridge);
    }
    json_decref(row);
    /* A store failure (I/O, a lost connection) is not a fact about these names. */
    if (st == STORE_OK || st == STORE_NOT_FOUND) {
        if (c->refs_checked == NULL)
            c->refs_checked = json_object();
        json_object_set_new(c->refs_checked, key, json_string(st == STORE_OK ? "" : why));
    }
    if (key != buf)
        free(key);
    if (st == STORE_OK)
        return 0;
    seterr(err, errlen, "%s", why);
    return EXIT_ERROR;
}

int cli_item_check_vault(cli *c, const struct cli_item *it, const json_t **fn, json_t *warnings,
                         char *err, size_t errlen)
{
    /* "the host on bridge B", cut to the buffer as snprintf would; copied, since snprintf
     * cost each line of a bulk create more than the rest of this function's own work. */
    static const char prefix[] = "the host on bridge ";
    char where[300];
    size_t lb = strnlen(it->bridge, sizeof(where) - sizeof(prefix));
    memcpy(where, prefix, sizeof(prefix) - 1);
    memcpy(where + sizeof(prefix) - 1, it->bridge, lb);
    where[sizeof(prefix) - 1 + lb] = '\0';
    /* The store refuses it too, in the same words; asked first, it is one more bad line. */
    if (!json_is_string(json_object_get(it->vault, "function"))) {
        seterr(err, errlen,
               "the vault has no \"function\": name the queue function to run, e.g. "
               "{\"function\":\"hello\"}");
        return EXIT_ERROR;
    }
    return check_vault(c, it->vault, "", where, fn, warnings, err, errlen);
}

int cli_item_check_refs(cli *c, const struct cli_item *it, char *err, size_t errlen)
{
    return check_refs(c, it->team, it->machine, it->bridge, err, errlen);
}

int cli_item_check(cli *c, const struct cli_item *it, const json_t **fn, json_t *warnings,
                   char *err, size_t errlen)
{
    int rc = cli_item_check_vault(c, it, fn, warnings, err, errlen);
    if (rc == 0)
        rc = cli_item_check_refs(c, it, err, errlen);
    return rc;
}
