/*
 * Resource commands: teams, regions, bridges, machines, storages, schedules — create, list,
 * inspect, update, rm — and `ferry init` for a first run.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cron.h"
#include "scheduler.h"
#include "store.h"
#include "tz.h"
#include "util.h"
#include "vault.h"

/* Prints a store failure; NOT_FOUND and CONFLICT are errors (1) like the rest. */
static int store_fail(cli *c, const char *err)
{
    return cli_fail(c, EXIT_ERROR, "%s", err);
}

/* The kind of a resource row, by the name field it carries (a machine row also has
 * bridgeName, regionName and teamName, so the most specific goes first). */
static store_kind row_kind(const json_t *row)
{
    static const struct {
        const char *field;
        store_kind kind;
    } by_field[] = {{"machineName", STORE_MACHINE}, {"storageName", STORE_STORAGE},
                    {"scheduleName", STORE_SCHEDULE}, {"groupName", STORE_MACHINE_GROUP},
                    {"bridgeName", STORE_BRIDGE},     {"regionName", STORE_REGION},
                    {"teamName", STORE_TEAM}};
    for (size_t i = 0; i < sizeof(by_field) / sizeof(by_field[0]); i++)
        if (json_object_get(row, by_field[i].field) != NULL)
            return by_field[i].kind;
    return STORE_KIND_COUNT;
}

/* Redacts a row's vault (and vaultContent) unless --reveal was given; with it, opens the
 * sealed secrets (the only place the CLI does), or stops with the reason. Modifies row. */
static void redact_row(cli *c, json_t *row)
{
    if (cli_flag(c, "reveal")) {
        char err[1024];
        if (store_resource_reveal(c->st, row_kind(row), row, err, sizeof(err)) != STORE_OK)
            exit(cli_fail(c, EXIT_ERROR, "%s", err));
        return;
    }
    const char *keys[] = {"vault", "vaultContent"};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(row, keys[i]);
        if (json_is_object(v))
            json_object_set_new(row, keys[i], vault_redact(v, NULL));
    }
}

static void redact_rows(cli *c, json_t *rows)
{
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) redact_row(c, row);
}

static int check_name(cli *c, const char *what, const char *name)
{
    char err[512];
    if (valid_name(name, err, sizeof(err)))
        return 0;
    return cli_fail(c, EXIT_ERROR, "cannot create %s: %s", what, err);
}

/* --- schedules: checked here so that a bad cron never reaches the store --------------- */

/*
 * A schedule's items run on one of its team's machines: refuse a vault naming a machine
 * that does not exist or belongs to another team now, rather than at every fire.
 */
static int check_schedule_machine(cli *c, const char *team, const char *machine)
{
    json_t *row = NULL;
    char err[1024];
    /* A missing team is the first thing to fix; its message names the fix. */
    int rc = store_resource_get(c->st, STORE_TEAM, NULL, team, &row, err, sizeof(err));
    json_decref(row);
    row = NULL;
    if (rc != STORE_OK)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    rc = store_resource_get(c->st, STORE_MACHINE, NULL, machine, &row, err, sizeof(err));
    if (rc == STORE_NOT_FOUND && store_resource_get(c->st, STORE_MACHINE_GROUP, team, machine, &row,
                                                    NULL, 0) == STORE_OK)
        rc = STORE_OK; /* a machine group of the team: each fire fans out (cli_groups.c) */
    if (rc == STORE_NOT_FOUND)
        return cli_fail(c, EXIT_ERROR, "schedule machine '%s' does not exist; create it with: "
                                       "ferry create machine %s BRIDGE %s --vault '{\"ip\":…}'",
                        machine, team, machine);
    if (rc != STORE_OK)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    const char *owner = json_string_value(json_object_get(row, "teamName"));
    if (owner && strcmp(owner, team) != 0)
        rc = cli_fail(c, EXIT_ERROR, "schedule machine '%s' belongs to team '%s', not '%s'; a "
                                     "schedule runs on its own team's machines",
                      machine, owner, team);
    json_decref(row);
    return rc;
}

/*
 * Checks a schedule vault. With check_items, its queue_config is checked as `create
 * queue-item` checks a vault (cli_check_item_vault: parameters of a known function, unknown
 * function or keys warned or refused with --strict); else only its host-owned keys, so that
 * a patch that does not touch queue_config (disabling a schedule) always goes through.
 * Returns 0 with *warnings (new array) to print once the schedule is written, or an exit
 * code after printing the error.
 */
static int check_schedule_vault(cli *c, const json_t *vault, int check_items, json_t **warnings)
{
    *warnings = NULL;
    char err[512];
    const char *cron = json_string_value(json_object_get(vault, "cron"));
    if (cron == NULL)
        return cli_fail(c, EXIT_ERROR, "schedule vault needs \"cron\", e.g. \"cron\": \"0 2 * * *\"");
    cron_expr e;
    if (cron_parse(cron, &e, err, sizeof(err)) != 0)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    const json_t *tzv = json_object_get(vault, "timezone");
    if (tzv && !json_is_string(tzv))
        return cli_fail(c, EXIT_ERROR, "schedule \"timezone\" must be a string such as \"UTC\" or "
                                       "\"America/New_York\"");
    tz_info *tz = NULL;
    if (tz_load(tzv ? json_string_value(tzv) : "UTC", &tz, err, sizeof(err)) != 0)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    tz_free(tz);
    if (!json_is_string(json_object_get(vault, "machine")))
        return cli_fail(c, EXIT_ERROR, "schedule vault needs \"machine\": the machine its items "
                                       "run on");
    const json_t *qc = json_object_get(vault, "queue_config");
    if (!json_is_object(qc))
        return cli_fail(c, EXIT_ERROR, "schedule vault needs \"queue_config\": the vault of the "
                                       "queue item each fire creates, with its \"function\"");
    if (check_items) {
        char where[300];
        const json_t *fn;
        snprintf(where, sizeof(where), "the host of machine %s's bridge",
                 json_string_value(json_object_get(vault, "machine")));
        int rc = cli_check_item_vault(c, qc, "queue_config: ", where, &fn, warnings);
        if (rc != 0) {
            json_decref(*warnings);
            *warnings = NULL;
            return rc;
        }
    } else if (vault_check_host_keys(qc, err, sizeof(err)) != 0) {
        return cli_fail(c, EXIT_ERROR, "queue_config: %s", err);
    }
    const json_t *en = json_object_get(vault, "enabled");
    if (en && !json_is_boolean(en))
        return cli_fail(c, EXIT_ERROR, "schedule \"enabled\" must be true or false");
    const json_t *until = json_object_get(vault, "disabled_until");
    int64_t ms;
    if (until && (!json_is_string(until) || parse_date_ms(json_string_value(until), &ms) != 0))
        return cli_fail(c, EXIT_ERROR, "schedule \"disabled_until\" must be a date such as "
                                       "\"2024-01-15\" or \"2024-01-15T08:00:00Z\"");
    const json_t *catchup = json_object_get(vault, "catchup");
    if (catchup && (!json_is_string(catchup) ||
                    (strcmp(json_string_value(catchup), "latest") != 0 &&
                     strcmp(json_string_value(catchup), "none") != 0 &&
                     strcmp(json_string_value(catchup), "all") != 0)))
        return cli_fail(c, EXIT_ERROR, "schedule \"catchup\" must be \"latest\", \"none\" or \"all\"");
    if (scheduler_check_vault(vault, err, sizeof(err)) != 0)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    /* The seed's "disable temporarily" example names a date long past: say what that means. */
    int64_t until_ms = 0;
    if (json_is_false(en) && scheduler_disabled_until(vault, &until_ms, NULL, 0) == 0 &&
        until_ms != 0 && until_ms <= scheduler_now_ms())
        cli_warn(c, "schedule \"disabled_until\" %s has passed, so the schedule fires again "
                    "despite \"enabled\": false; give a later date, or drop disabled_until to "
                    "disable it until further notice", json_string_value(until));
    return 0;
}

/* A schedule row's nextRun as the schedule reads now, whether or not a host is running. */
static void schedule_next_run(json_t *row)
{
    int64_t next;
    if (scheduler_next_fire(json_object_get(row, "vault"), scheduler_now_ms(), &next, NULL, 0) == 1) {
        char when[32];
        iso8601_ms(next, when);
        json_object_set_new(row, "nextRun", json_string(when));
    } else {
        json_object_set_new(row, "nextRun", json_null());
    }
}

/* --- storages ------------------------------------------------------------------------------ */

/* The providers plugins/repo/storage.c knows ("http" is webdav's other name). */
static const char *const storage_providers[] = {"local", "s3", "sftp", "webdav", "http"};

/* Refuses a storage vault without a provider ferry has. Returns 0 or an exit code. */
static int check_storage_vault(cli *c, const json_t *vault)
{
    const json_t *p = json_object_get(vault, "provider");
    const char *provider = json_string_value(p);
    for (size_t i = 0; provider && i < sizeof(storage_providers) / sizeof(*storage_providers); i++)
        if (strcmp(provider, storage_providers[i]) == 0)
            return 0;
    if (p == NULL)
        return cli_fail(c, EXIT_ERROR, "storage vault needs \"provider\": \"local\", \"s3\", "
                                       "\"sftp\" or \"webdav\"");
    if (provider == NULL)
        return cli_fail(c, EXIT_ERROR, "storage \"provider\" must be a string, got %s",
                        vault_type_phrase(p));
    return cli_fail(c, EXIT_ERROR, "storage provider \"%.64s\" is not one ferry has; use "
                                   "\"local\", \"s3\", \"sftp\" or \"webdav\" (docs/storages.md)",
                    provider);
}

/* --- create ------------------------------------------------------------------------------ */

static int print_created(cli *c, json_t *row, const char *what, const char *name)
{
    redact_row(c, row);
    char msg[512];
    snprintf(msg, sizeof(msg), "Successfully created %s %s", what, name);
    return cli_print_row(c, row, msg);
}

static int vault_arg(cli *c, json_t **vault)
{
    int rc = cli_read_vault(c, vault);
    if (rc != 0)
        return rc;
    if (*vault == NULL)
        *vault = json_object();
    return 0;
}

static int cmd_create(cli *c, store_kind kind)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    json_t *vault = NULL, *row = NULL, *warnings = NULL;
    int rc = vault_arg(c, &vault);
    if (rc != 0)
        return rc;
    char err[1024];
    const char *name = c->args[c->n_args - 1];
    const char *what = store_kind_name(kind);
    if ((rc = check_name(c, what, name)) != 0)
        goto out;
    switch (kind) {
    case STORE_TEAM:
        rc = store_team_create(c->st, name, vault, &row, err, sizeof(err));
        break;
    case STORE_REGION:
        rc = store_region_create(c->st, name, vault, &row, err, sizeof(err));
        break;
    case STORE_BRIDGE:
        rc = store_bridge_create(c->st, c->args[0], name, vault, &row, err, sizeof(err));
        break;
    case STORE_MACHINE:
        rc = store_machine_create(c->st, c->args[0], c->args[1], name, vault, &row, err,
                                  sizeof(err));
        break;
    case STORE_STORAGE:
        if ((rc = check_storage_vault(c, vault)) != 0)
            goto out;
        rc = store_storage_create(c->st, c->args[0], name, vault, &row, err, sizeof(err));
        break;
    case STORE_SCHEDULE:
        if ((rc = check_schedule_vault(c, vault, 1, &warnings)) != 0 ||
            (rc = check_schedule_machine(c, c->args[0],
                                         json_string_value(json_object_get(vault, "machine")))) != 0)
            goto out;
        rc = store_schedule_create(c->st, c->args[0], name, vault, &row, err, sizeof(err));
        break;
    default:
        rc = STORE_ERROR;
        snprintf(err, sizeof(err), "cannot create that");
    }
    if (rc != STORE_OK) {
        rc = store_fail(c, err);
        goto out;
    }
    if (kind == STORE_SCHEDULE)
        schedule_next_run(row);
    cli_warn_all(c, warnings);
    warnings = NULL;
    rc = print_created(c, row, what, name);
out:
    json_decref(warnings);
    json_decref(vault);
    return rc;
}

static int cmd_create_team(cli *c) { return cmd_create(c, STORE_TEAM); }
static int cmd_create_region(cli *c) { return cmd_create(c, STORE_REGION); }
static int cmd_create_bridge(cli *c) { return cmd_create(c, STORE_BRIDGE); }
static int cmd_create_machine(cli *c) { return cmd_create(c, STORE_MACHINE); }
static int cmd_create_storage(cli *c) { return cmd_create(c, STORE_STORAGE); }
static int cmd_create_schedule(cli *c) { return cmd_create(c, STORE_SCHEDULE); }

/* --- list ---------------------------------------------------------------------------------- */

static const char *const team_cols[][2] = {{"TEAM", "teamName"}, {"VERSION", "vaultVersion"},
                                           {"CREATED", "createdTime"}, {NULL, NULL}};
static const char *const region_cols[][2] = {{"REGION", "regionName"},
                                             {"CREATED", "createdTime"}, {NULL, NULL}};
static const char *const bridge_cols[][2] = {{"BRIDGE", "bridgeName"}, {"REGION", "regionName"},
                                             {"CREATED", "createdTime"}, {NULL, NULL}};
static const char *const machine_cols[][2] = {
    {"MACHINE", "machineName"}, {"TEAM", "teamName"}, {"BRIDGE", "bridgeName"},
    {"REGION", "regionName"},   {"VERSION", "vaultVersion"}, {NULL, NULL}};
static const char *const storage_cols[][2] = {{"STORAGE", "storageName"}, {"TEAM", "teamName"},
                                              {"PROVIDER", "provider"}, {"VERSION", "vaultVersion"},
                                              {NULL, NULL}};
static const char *const schedule_cols[][2] = {
    {"SCHEDULE", "scheduleName"}, {"CRON", "cron"},          {"TIMEZONE", "timezone"},
    {"MACHINE", "machine"},       {"ENABLED", "enabled"},    {"NEXT RUN", "nextRun"},
    {"LAST RUN", "lastRun"},      {"LAST TASK", "lastTaskId"}, {NULL, NULL}};

static int list_kind(cli *c, store_kind kind, const char *scope, const char *const cols[][2])
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    json_t *rows = NULL;
    char err[1024];
    if (store_resource_list(c->st, kind, scope, &rows, err, sizeof(err)) != STORE_OK)
        return store_fail(c, err);
    redact_rows(c, rows);
    if (kind == STORE_STORAGE) {
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row)
            json_object_set(row, "provider", json_object_get(json_object_get(row, "vault"), "provider"));
    }
    if (kind == STORE_SCHEDULE) {
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row) schedule_next_run(row);
    }
    if (c->json) {
        cli_print_ok(c, rows, "");
        return EXIT_OK;
    }
    cli_print_table(stdout, rows, cols);
    json_decref(rows);
    return EXIT_OK;
}

static int cmd_list_teams(cli *c) { return list_kind(c, STORE_TEAM, NULL, team_cols); }
static int cmd_list_regions(cli *c) { return list_kind(c, STORE_REGION, NULL, region_cols); }
static int cmd_list_bridges(cli *c)
{
    return list_kind(c, STORE_BRIDGE, c->n_args ? c->args[0] : NULL, bridge_cols);
}
static int cmd_list_machines(cli *c)
{
    return list_kind(c, STORE_MACHINE, c->n_args ? c->args[0] : NULL, machine_cols);
}
static int cmd_list_storages(cli *c)
{
    return list_kind(c, STORE_STORAGE, c->args[0], storage_cols);
}
static int cmd_list_schedules(cli *c)
{
    return list_kind(c, STORE_SCHEDULE, c->args[0], schedule_cols);
}

/* --- inspect ------------------------------------------------------------------------------- */

/* Prints one resource as a bare JSON object in both modes (scripts pipe it into jq). */
static int inspect_kind(cli *c, store_kind kind)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    const char *team = c->n_args == 2 ? c->args[0] : NULL;
    const char *name = c->args[c->n_args - 1];
    json_t *row = NULL;
    char err[1024];
    if (store_resource_get(c->st, kind, team, name, &row, err, sizeof(err)) != STORE_OK)
        return store_fail(c, err);
    if (kind == STORE_SCHEDULE)
        schedule_next_run(row);
    redact_row(c, row);
    cli_print_json(stdout, row);
    json_decref(row);
    return EXIT_OK;
}

static int cmd_inspect_machine(cli *c) { return inspect_kind(c, STORE_MACHINE); }
static int cmd_inspect_team(cli *c) { return inspect_kind(c, STORE_TEAM); }
static int cmd_inspect_storage(cli *c) { return inspect_kind(c, STORE_STORAGE); }
static int cmd_inspect_schedule(cli *c) { return inspect_kind(c, STORE_SCHEDULE); }
static int cmd_inspect_bridge(cli *c) { return inspect_kind(c, STORE_BRIDGE); }

/* --- update ------------------------------------------------------------------------------- */

static int update_vault(cli *c, store_kind kind)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    json_t *vault = NULL, *row = NULL, *warnings = NULL;
    int rc = cli_read_vault(c, &vault);
    if (rc != 0)
        return rc;
    if (vault == NULL)
        return cli_usage_error(c, "give the new vault with --vault or --vault-file");
    long version = -1;
    if (cli_opt_int(c, "vault-version", 1, 1L << 40, &version) < 0) {
        json_decref(vault);
        return EXIT_USAGE;
    }
    const char *team = c->n_args == 2 ? c->args[0] : NULL;
    const char *name = c->args[c->n_args - 1];
    int replace = cli_flag(c, "replace");
    char err[1024];
    if (kind == STORE_SCHEDULE || kind == STORE_STORAGE) {
        /* Check what the vault will be after the merge, before anything is written. */
        json_t *cur = NULL;
        if (store_resource_get(c->st, kind, team, name, &cur, err, sizeof(err)) != STORE_OK) {
            json_decref(vault);
            return store_fail(c, err);
        }
        json_t *merged = replace ? json_incref(vault)
                                 : json_merge_patch(json_object_get(cur, "vault"), vault);
        if (kind == STORE_STORAGE)
            rc = check_storage_vault(c, merged);
        else
            rc = check_schedule_vault(c, merged,
                                      replace || json_object_get(vault, "queue_config"), &warnings);
        /* Only a patch that names a machine is checked against the machines, so that a
         * schedule whose machine was removed can still be disabled. */
        if (rc == 0 && kind == STORE_SCHEDULE && (replace || json_object_get(vault, "machine")))
            rc = check_schedule_machine(c, team,
                                        json_string_value(json_object_get(merged, "machine")));
        json_decref(merged);
        json_decref(cur);
        if (rc != 0) {
            json_decref(warnings);
            json_decref(vault);
            return rc;
        }
    }
    rc = store_resource_update_vault(c->st, kind, team, name, vault, version,
                                     replace ? STORE_VAULT_REPLACE : STORE_VAULT_MERGE, &row, err,
                                     sizeof(err));
    json_decref(vault);
    if (rc != STORE_OK) {
        json_decref(warnings);
        return store_fail(c, err);
    }
    if (kind == STORE_SCHEDULE)
        schedule_next_run(row);
    cli_warn_all(c, warnings);
    redact_row(c, row);
    char msg[512];
    snprintf(msg, sizeof(msg), "Successfully updated %s %s (vault version %lld)",
             store_kind_name(kind), name,
             (long long)json_integer_value(json_object_get(row, "vaultVersion")));
    if (c->json)
        cli_print_ok(c, json_pack("[o]", row), msg);
    else {
        printf("%s\n", msg);
        json_decref(row);
    }
    return EXIT_OK;
}

static int cmd_update_schedule(cli *c) { return update_vault(c, STORE_SCHEDULE); }
static int cmd_update_machine_vault(cli *c) { return update_vault(c, STORE_MACHINE); }
static int cmd_update_team_vault(cli *c) { return update_vault(c, STORE_TEAM); }
static int cmd_update_storage_vault(cli *c) { return update_vault(c, STORE_STORAGE); }

static int cmd_update_machine_bridge(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    json_t *row = NULL;
    char err[1024];
    if (store_machine_set_bridge(c->st, c->args[0], c->args[1], c->args[2], &row, err,
                                 sizeof(err)) != STORE_OK)
        return store_fail(c, err);
    redact_row(c, row);
    char msg[512];
    snprintf(msg, sizeof(msg), "Successfully moved machine %s to bridge %s", c->args[1],
             c->args[2]);
    if (c->json)
        cli_print_ok(c, json_pack("[o]", row), msg);
    else {
        printf("%s\n", msg);
        json_decref(row);
    }
    return EXIT_OK;
}

/* --- rm ------------------------------------------------------------------------------------ */

static int rm_kind(cli *c, store_kind kind)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    const char *team = c->n_args == 2 ? c->args[0] : NULL;
    const char *name = c->args[c->n_args - 1];
    char err[1024];
    if (store_resource_delete(c->st, kind, team, name, err, sizeof(err)) != STORE_OK)
        return store_fail(c, err);
    char msg[512];
    snprintf(msg, sizeof(msg), "Successfully removed %s %s", store_kind_name(kind), name);
    if (c->json)
        cli_print_ok(c, json_null(), msg);
    else
        printf("%s\n", msg);
    return EXIT_OK;
}

static int cmd_rm_team(cli *c) { return rm_kind(c, STORE_TEAM); }
static int cmd_rm_region(cli *c) { return rm_kind(c, STORE_REGION); }
static int cmd_rm_bridge(cli *c) { return rm_kind(c, STORE_BRIDGE); }
static int cmd_rm_machine(cli *c) { return rm_kind(c, STORE_MACHINE); }
static int cmd_rm_storage(cli *c) { return rm_kind(c, STORE_STORAGE); }
static int cmd_rm_schedule(cli *c) { return rm_kind(c, STORE_SCHEDULE); }

/* --- init: what a first run needs ------------------------------------------------------- */

static int cmd_init(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    const char *team = cli_opt_str(c, "team") ? cli_opt_str(c, "team") : "Default";
    const char *machine = cli_opt_str(c, "machine") ? cli_opt_str(c, "machine") : "localhost";
    const char *region = "local";
    const char *bridge = c->cfg.bridge;
    char err[1024];
    json_t *done = json_array();
    struct {
        store_kind kind;
        const char *name;
    } steps[] = {{STORE_REGION, region}, {STORE_BRIDGE, bridge}, {STORE_TEAM, team},
                 {STORE_MACHINE, machine}};
    for (size_t i = 0; i < 4; i++) {
        json_t *row = NULL;
        const char *scope = steps[i].kind == STORE_MACHINE ? team : NULL;
        if (store_resource_get(c->st, steps[i].kind, scope, steps[i].name, &row, err,
                               sizeof(err)) == STORE_OK) {
            json_decref(row);
            continue;
        }
        int rc;
        json_t *vault = steps[i].kind == STORE_MACHINE
                            ? json_pack("{s:s,s:s}", "connection", "local", "datastore",
                                        "var/datastore")
                            : json_object();
        if (steps[i].kind == STORE_REGION)
            rc = store_region_create(c->st, region, vault, NULL, err, sizeof(err));
        else if (steps[i].kind == STORE_BRIDGE)
            rc = store_bridge_create(c->st, region, bridge, vault, NULL, err, sizeof(err));
        else if (steps[i].kind == STORE_TEAM)
            rc = store_team_create(c->st, team, vault, NULL, err, sizeof(err));
        else
            rc = store_machine_create(c->st, team, bridge, machine, vault, NULL, err,
                                      sizeof(err));
        json_decref(vault);
        if (rc != STORE_OK) {
            json_decref(done);
            return store_fail(c, err);
        }
        json_array_append_new(done, json_pack("{s:s,s:s}", "kind",
                                              store_kind_name(steps[i].kind), "name",
                                              steps[i].name));
    }
    char msg[1600];
    const char *key = store_key_path(c->st);
    snprintf(msg, sizeof(msg), "ready: team %s, machine %s (local) on bridge %s%s%s%s", team,
             machine, bridge, key ? "; secrets sealed with the key " : "", key ? key : "",
             key ? " (keep a copy: without it they cannot be read)" : "");
    if (c->json)
        cli_print_ok(c, done, msg);
    else {
        size_t i;
        json_t *d;
        json_array_foreach(done, i, d)
            printf("created %s %s\n", json_string_value(json_object_get(d, "kind")),
                   json_string_value(json_object_get(d, "name")));
        printf("%s\n", msg);
        json_decref(done);
    }
    return EXIT_OK;
}

/* --- tables -------------------------------------------------------------------------------- */

#define VAULT_OPTS                                                                           \
    {"vault", 0, "JSON", 0, "the vault: a JSON object (# comments allowed)"},                \
    {"vault-file", 0, "PATH", 0, "read the vault from a file (- for stdin)"}
#define END_OPTS {NULL, 0, NULL, 0, NULL}

static const cli_opt create_opts[] = {VAULT_OPTS, {"reveal", 0, NULL, 0, "show secrets"}, END_OPTS};
static const cli_opt list_opts[] = {{"reveal", 0, NULL, 0, "show secrets in vaults"}, END_OPTS};
static const cli_opt update_opts[] = {
    VAULT_OPTS,
    {"vault-version", 0, "N", 0, "refuse the update unless the current vault version is N"},
    {"replace", 0, NULL, 0, "replace the whole vault instead of merging (RFC 7396)"},
    {"reveal", 0, NULL, 0, "show secrets"},
    END_OPTS};
#define STRICT_OPT                                                                                 \
    {"strict", 0, NULL, 0,                                                                         \
     "refuse (exit 1) a queue_config whose function no local plugin provides or with keys the "   \
     "function does not declare, instead of warning"}
static const cli_opt schedule_create_opts[] = {
    VAULT_OPTS, {"reveal", 0, NULL, 0, "show secrets"}, STRICT_OPT, END_OPTS};
static const cli_opt schedule_update_opts[] = {
    VAULT_OPTS,
    {"vault-version", 0, "N", 0, "refuse the update unless the current vault version is N"},
    {"replace", 0, NULL, 0, "replace the whole vault instead of merging (RFC 7396)"},
    {"reveal", 0, NULL, 0, "show secrets"},
    STRICT_OPT,
    END_OPTS};
static const cli_opt none[] = {END_OPTS};
static const cli_opt init_opts[] = {
    {"team", 0, "NAME", 0, "team to create (default Default)"},
    {"machine", 0, "NAME", 0, "local machine to create (default localhost)"},
    END_OPTS};

const cli_command cli_resource_commands[] = {
    {"init", NULL, NULL, 0, 0, init_opts, cmd_init,
     "create a region, this host's bridge, a team and a local machine, if missing"},
    {"create", "team", "NAME", 1, 1, create_opts, cmd_create_team, "create a team"},
    {"create", "region", "NAME", 1, 1, create_opts, cmd_create_region, "create a region"},
    {"create", "bridge", "REGION NAME", 2, 2, create_opts, cmd_create_bridge,
     "create a bridge in a region"},
    {"create", "machine", "TEAM BRIDGE NAME", 3, 3, create_opts, cmd_create_machine,
     "create a machine: vault {\"ip\",\"user\",\"ssh_port\",\"datastore\"} or "
     "{\"connection\":\"local\"}"},
    {"create", "storage", "TEAM NAME", 2, 2, create_opts, cmd_create_storage,
     "create a storage: vault {\"provider\":\"local|s3|sftp|webdav\", ...}"},
    {"create", "schedule", "TEAM NAME", 2, 2, schedule_create_opts, cmd_create_schedule,
     "create a schedule: vault {\"cron\",\"timezone\",\"machine\",\"queue_config\",...}"},
    {"list", "teams", NULL, 0, 0, list_opts, cmd_list_teams, "list teams"},
    {"list", "regions", NULL, 0, 0, list_opts, cmd_list_regions, "list regions"},
    {"list", "bridges", "[REGION]", 0, 1, list_opts, cmd_list_bridges, "list bridges"},
    {"list", "team-machines", "[TEAM]", 0, 1, list_opts, cmd_list_machines,
     "list a team's machines (all machines without TEAM)"},
    {"list", "team-storages", "TEAM", 1, 1, list_opts, cmd_list_storages,
     "list a team's storages"},
    {"list", "team-schedules", "TEAM", 1, 1, list_opts, cmd_list_schedules,
     "list a team's schedules with nextRun, lastRun and lastTaskId"},
    {"inspect", "machine", "[TEAM] NAME", 1, 2, list_opts, cmd_inspect_machine,
     "print a machine as one JSON object (jq -r .bridgeName)"},
    {"inspect", "team", "NAME", 1, 1, list_opts, cmd_inspect_team, "print a team as JSON"},
    {"inspect", "bridge", "NAME", 1, 1, list_opts, cmd_inspect_bridge, "print a bridge as JSON"},
    {"inspect", "storage", "TEAM NAME", 2, 2, list_opts, cmd_inspect_storage,
     "print a storage as JSON"},
    {"inspect", "schedule", "TEAM NAME", 2, 2, list_opts, cmd_inspect_schedule,
     "print a schedule as JSON"},
    {"update", "schedule-vault", "TEAM NAME", 2, 2, schedule_update_opts, cmd_update_schedule,
     "merge a patch into a schedule's vault (--replace to replace it)"},
    {"update", "machine-vault", "[TEAM] NAME", 1, 2, update_opts, cmd_update_machine_vault,
     "merge a patch into a machine's vault"},
    {"update", "team-vault", "NAME", 1, 1, update_opts, cmd_update_team_vault,
     "merge a patch into a team's vault"},
    {"update", "storage-vault", "TEAM NAME", 2, 2, update_opts, cmd_update_storage_vault,
     "merge a patch into a storage's vault"},
    {"update", "machine-bridge", "TEAM NAME BRIDGE", 3, 3, none, cmd_update_machine_bridge,
     "move a machine to another bridge"},
    {"rm", "team", "NAME", 1, 1, none, cmd_rm_team, "remove a team (it must be empty)"},
    {"rm", "region", "NAME", 1, 1, none, cmd_rm_region, "remove a region without bridges"},
    {"rm", "bridge", "NAME", 1, 1, none, cmd_rm_bridge, "remove a bridge without machines"},
    {"rm", "machine", "[TEAM] NAME", 1, 2, none, cmd_rm_machine,
     "remove a machine without unfinished items"},
    {"rm", "storage", "TEAM NAME", 2, 2, none, cmd_rm_storage, "remove a storage"},
    {"rm", "schedule", "TEAM NAME", 2, 2, none, cmd_rm_schedule, "remove a schedule"},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL},
};
