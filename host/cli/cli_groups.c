/*
 * Machine group commands: create, list, inspect, update (members), rm. A group is a store
 * resource (STORE_MACHINE_GROUP) whose vault holds "members"; the store checks the members
 * (machines of the team, each once, no group) in the transaction that writes them, so these
 * commands only turn --members/--add/--remove into that list. docs/machines.md "Groups and
 * fan-out" says what an item for a group does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"
#include "util.h"

#define MEMBERS_SHOWN 48 /* characters of the member list in a table row */

/* Appends the names of a comma-separated option value to list (an array). Returns 0, or
 * EXIT_USAGE (printed) for an empty name. */
static int names_arg(cli *c, const char *opt, json_t *list)
{
    const char *v = cli_opt_str(c, opt);
    if (v == NULL)
        return 0;
    if (*v == '\0')
        return cli_usage_error(c, "--%s needs machine names separated by commas: --%s a,b,c", opt,
                               opt);
    while (1) {
        size_t n = strcspn(v, ",");
        if (n == 0)
            return cli_usage_error(c, "--%s has an empty machine name in \"%s\"", opt,
                                   cli_opt_str(c, opt));
        json_array_append_new(list, json_stringn(v, n));
        if (v[n] == '\0')
            return 0;
        v += n + 1;
    }
}

static int list_has(const json_t *list, const char *name)
{
    size_t i;
    json_t *m;
    json_array_foreach (list, i, m)
        if (strcmp(json_string_value(m), name) == 0)
            return 1;
    return 0;
}

/* Adds the text columns a table shows: the member count and the names, cut to fit. */
static void add_text_cols(json_t *row)
{
    const json_t *members = json_object_get(row, "members");
    char text[MEMBERS_SHOWN + 32] = "";
    size_t len = 0, i;
    json_t *m;
    json_array_foreach (members, i, m) {
        const char *name = json_string_value(m);
        if (len + strlen(name) + 2 > MEMBERS_SHOWN) {
            snprintf(text + len, sizeof(text) - len, "%s… (+%zu)", len ? " " : "",
                     json_array_size(members) - i);
            break;
        }
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%s%s", len ? "," : "", name);
    }
    json_object_set_new(row, "memberCount", json_integer((json_int_t)json_array_size(members)));
    json_object_set_new(row, "membersText", json_string(text));
}

static int cmd_create_group(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    json_t *vault = NULL, *row = NULL;
    int rc = cli_read_vault(c, &vault);
    if (rc != 0)
        return rc;
    if (vault == NULL)
        vault = json_object();
    json_t *members = json_array();
    rc = names_arg(c, "members", members);
    if (rc == 0 && json_array_size(members) == 0 &&
        !json_is_array(json_object_get(vault, "members")))
        rc = cli_usage_error(c, "give the group's machines with --members a,b,c");
    if (rc == 0 && json_array_size(members) > 0)
        json_object_set(vault, "members", members);
    json_decref(members);
    char err[1024], msg[512];
    if (rc == 0 &&
        store_machine_group_create(c->st, c->args[0], c->args[1], vault, &row, err,
                                   sizeof(err)) != STORE_OK)
        rc = cli_fail(c, EXIT_ERROR, "%s", err);
    json_decref(vault);
    if (rc != 0)
        return rc;
    snprintf(msg, sizeof(msg), "Successfully created machine group %s with %zu members",
             c->args[1], json_array_size(json_object_get(row, "members")));
    return cli_print_row(c, row, msg);
}

static const char *const group_cols[][2] = {{"GROUP", "groupName"},
                                            {"TEAM", "teamName"},
                                            {"COUNT", "memberCount"},
                                            {"MEMBERS", "membersText"},
                                            {"VERSION", "vaultVersion"},
                                            {NULL, NULL}};

static int cmd_list_groups(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    json_t *rows = NULL;
    char err[1024];
    if (store_resource_list(c->st, STORE_MACHINE_GROUP, c->args[0], &rows, err, sizeof(err)) !=
        STORE_OK)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    if (c->json) {
        cli_print_ok(c, rows, "");
        return EXIT_OK;
    }
    size_t i;
    json_t *row;
    json_array_foreach (rows, i, row)
        add_text_cols(row);
    cli_print_table(stdout, rows, group_cols);
    json_decref(rows);
    return EXIT_OK;
}

/* Prints one group as a bare JSON object in both modes, as `inspect machine` does. */
static int cmd_inspect_group(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    json_t *row = NULL;
    char err[1024];
    if (store_resource_get(c->st, STORE_MACHINE_GROUP, c->args[0], c->args[1], &row, err,
                           sizeof(err)) != STORE_OK)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    cli_print_json(stdout, row);
    json_decref(row);
    return EXIT_OK;
}

/* The new member list: --members replaces, then --remove and --add apply. */
static int new_members(cli *c, const json_t *old, json_t **out)
{
    json_t *set = json_array(), *add = json_array(), *del = json_array();
    int rc = names_arg(c, "members", set);
    if (rc == 0)
        rc = names_arg(c, "add", add);
    if (rc == 0)
        rc = names_arg(c, "remove", del);
    if (rc == 0 && !cli_opt_str(c, "members") && !cli_opt_str(c, "add") &&
        !cli_opt_str(c, "remove"))
        rc = cli_usage_error(c, "say what changes: --members a,b (replace), --add c, --remove d");
    json_t *list = json_array();
    json_t *base = cli_opt_str(c, "members") ? set : (json_t *)old;
    size_t i;
    json_t *m;
    json_array_foreach (base, i, m)
        json_array_append(list, m);
    json_array_foreach (del, i, m) {
        if (rc != 0)
            break;
        if (!list_has(list, json_string_value(m))) {
            rc = cli_fail(c, EXIT_ERROR, "machine group %s has no member '%s'; its members: see "
                                         "ferry inspect machine-group %s %s",
                          c->args[1], json_string_value(m), c->args[0], c->args[1]);
            break;
        }
        for (size_t k = json_array_size(list); k-- > 0;)
            if (json_equal(json_array_get(list, k), m))
                json_array_remove(list, k);
    }
    json_array_foreach (add, i, m)
        if (rc == 0 && !list_has(list, json_string_value(m)))
            json_array_append(list, m);
    json_decref(set);
    json_decref(add);
    json_decref(del);
    if (rc != 0) {
        json_decref(list);
        return rc;
    }
    *out = list;
    return 0;
}

static int cmd_update_group(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    long version = -1;
    if (cli_opt_int(c, "vault-version", 1, 1L << 40, &version) < 0)
        return EXIT_USAGE;
    json_t *cur = NULL, *members = NULL, *row = NULL;
    char err[1024], msg[512];
    if (store_resource_get(c->st, STORE_MACHINE_GROUP, c->args[0], c->args[1], &cur, err,
                           sizeof(err)) != STORE_OK)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    int rc = new_members(c, json_object_get(cur, "members"), &members);
    if (rc != 0) {
        json_decref(cur);
        return rc;
    }
    /* Guarded by the version read (or given): a concurrent change is refused, not lost. */
    if (version < 0)
        version = (long)json_integer_value(json_object_get(cur, "vaultVersion"));
    json_decref(cur);
    json_t *patch = json_pack("{s:o}", "members", members);
    if (store_resource_update_vault(c->st, STORE_MACHINE_GROUP, c->args[0], c->args[1], patch,
                                    version, STORE_VAULT_MERGE, &row, err,
                                    sizeof(err)) != STORE_OK)
        rc = cli_fail(c, EXIT_ERROR, "%s", err);
    json_decref(patch);
    if (rc != 0)
        return rc;
    snprintf(msg, sizeof(msg), "Successfully updated machine group %s: %zu members (vault version "
                               "%lld)",
             c->args[1], json_array_size(json_object_get(row, "members")),
             (long long)json_integer_value(json_object_get(row, "vaultVersion")));
    return cli_print_row(c, row, msg);
}

static int cmd_rm_group(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    char err[1024], msg[512];
    if (store_resource_delete(c->st, STORE_MACHINE_GROUP, c->args[0], c->args[1], err,
                              sizeof(err)) != STORE_OK)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    snprintf(msg, sizeof(msg), "Successfully removed machine group %s", c->args[1]);
    if (c->json)
        cli_print_ok(c, json_null(), msg);
    else
        printf("%s\n", msg);
    return EXIT_OK;
}

int cli_group_check_bridge(cli *c, const char *team, const char *group, const char *bridge,
                           char *err, size_t errlen, int not_found)
{
    json_t *row = NULL;
    if (store_resource_get(c->st, STORE_MACHINE_GROUP, team, group, &row, NULL, 0) != STORE_OK)
        return not_found;
    int rc = STORE_OK;
    size_t i;
    json_t *m;
    json_array_foreach (json_object_get(row, "members"), i, m) {
        json_t *machine = NULL;
        const char *name = json_string_value(m);
        rc = store_resource_get(c->st, STORE_MACHINE, team, name, &machine, err, errlen);
        const char *on = json_string_value(json_object_get(machine, "bridgeName"));
        if (rc == STORE_OK && on && strcmp(on, bridge) != 0) {
            seterr(err, errlen,
                   "machine group '%s': member '%s' is on bridge '%s', not '%s'; a group's "
                   "items run through one bridge (move it: ferry update machine-bridge %s %s "
                   "%s)",
                   group, name, on, bridge, team, name, bridge);
            rc = STORE_NOT_FOUND;
        }
        json_decref(machine);
        if (rc != STORE_OK)
            break;
    }
    json_decref(row);
    return rc;
}

#define END_OPTS {NULL, 0, NULL, 0, NULL}
#define MEMBERS_OPT(help) {"members", 0, "A,B,C", 0, help}

static const cli_opt create_opts[] = {
    MEMBERS_OPT("the machines of the team in the group, separated by commas"),
    {"vault", 0, "JSON", 0, "more of the group's vault (a JSON object)"},
    {"vault-file", 0, "PATH", 0, "read the vault from a file (- for stdin)"},
    END_OPTS};
static const cli_opt update_opts[] = {
    MEMBERS_OPT("replace the member list"),
    {"add", 0, "A,B", 0, "add these machines"},
    {"remove", 0, "A,B", 0, "take these machines out"},
    {"vault-version", 0, "N", 0, "refuse the update unless the current vault version is N"},
    END_OPTS};
static const cli_opt none[] = {END_OPTS};

const cli_command cli_group_commands[] = {
    {"create", "machine-group", "TEAM NAME", 2, 2, create_opts, cmd_create_group,
     "create a machine group: an item for it runs on every member (--members a,b,c)"},
    {"list", "team-machine-groups", "TEAM", 1, 1, none, cmd_list_groups,
     "list a team's machine groups and their members"},
    {"inspect", "machine-group", "TEAM NAME", 2, 2, none, cmd_inspect_group,
     "print a machine group as one JSON object (jq -r '.members[]')"},
    {"update", "machine-group", "TEAM NAME", 2, 2, update_opts, cmd_update_group,
     "change a group's members: --members (replace), --add, --remove"},
    {"rm", "machine-group", "TEAM NAME", 2, 2, none, cmd_rm_group,
     "remove a machine group (its machines and past items stay)"},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL},
};
