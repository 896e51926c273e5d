/*
 * People commands (docs/people.md): users and their API tokens — create, list, revoke,
 * remove. A token is printed once, by create token, and is nowhere else: the store keeps
 * its SHA-256 only. The CLI works on the store directly, as an admin recorded by its Unix
 * user name (principal_cli).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "people.h"
#include "store.h"
#include "util.h"

static int people_fail(cli *c, const char *err)
{
    return cli_fail(c, EXIT_ERROR, "%s", err);
}

static int cmd_create_user(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    json_t *row = NULL;
    char err[1024], msg[300];
    if (people_user_create(c->st, c->args[0], &row, err, sizeof(err)) != STORE_OK)
        return people_fail(c, err);
    snprintf(msg, sizeof(msg), "Successfully created user %s", c->args[0]);
    return cli_print_row(c, row, msg);
}

static int cmd_rm_user(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    char err[1024], msg[300];
    if (people_user_delete(c->st, c->args[0], err, sizeof(err)) != STORE_OK)
        return people_fail(c, err);
    snprintf(msg, sizeof(msg), "Successfully removed user %s (its tokens are revoked)",
             c->args[0]);
    if (c->json)
        cli_print_ok(c, json_null(), msg);
    else
        printf("%s\n", msg);
    return EXIT_OK;
}

static const char *const user_cols[][2] = {{"USER", "userName"}, {"TOKENS", "tokens"},
                                           {"CREATED", "createdTime"}, {"BY", "createdBy"},
                                           {NULL, NULL}};

static int cmd_list_users(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    json_t *rows = NULL;
    char err[1024];
    if (people_user_list(c->st, &rows, err, sizeof(err)) != STORE_OK)
        return people_fail(c, err);
    if (c->json) {
        cli_print_ok(c, rows, "");
        return EXIT_OK;
    }
    cli_print_table(stdout, rows, user_cols);
    json_decref(rows);
    return EXIT_OK;
}

static int cmd_create_token(cli *c)
{
    const char *team = cli_opt_str(c, "team"), *role_name = cli_opt_str(c, "role");
    if (team == NULL || role_name == NULL)
        return cli_usage_error(c, "a token needs --team TEAM and --role viewer|operator|admin");
    enum people_role role = people_role_parse(role_name);
    if (role == ROLE_NONE)
        return cli_usage_error(c, "unknown role '%.64s': use viewer, operator or admin",
                               role_name);
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    char token[PEOPLE_TOKEN_LEN + 1], err[1024], msg[300];
    json_t *row = NULL;
    if (people_token_create(c->st, c->args[0], team, role, token, &row, err, sizeof(err)) !=
        STORE_OK)
        return people_fail(c, err);
    json_int_t id = json_integer_value(json_object_get(row, "tokenId"));
    snprintf(msg, sizeof(msg), "Successfully created token %lld for user %s (team %s, role %s)",
             (long long)id, c->args[0], team, people_role_name(role));
    if (c->json) {
        json_object_set_new(row, "token", json_string(token));
        cli_print_ok(c, row, msg);
    } else {
        printf("%s\nToken: %s\n", msg, token);
        json_decref(row);
        cli_warn(c, "this is the only time the token is shown; ferry keeps only its hash");
    }
    explicit_bzero(token, sizeof(token));
    return EXIT_OK;
}

static const char *const token_cols[][2] = {
    {"ID", "tokenId"},          {"USER", "userName"},       {"TEAM", "teamName"},
    {"ROLE", "role"},           {"STATE", "state"},         {"CREATED", "createdTime"},
    {"LAST USED", "lastUsedTime"}, {"FROM", "lastUsedAddress"}, {NULL, NULL}};

static int cmd_list_tokens(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    json_t *rows = NULL;
    char err[1024];
    if (people_token_list(c->st, c->n_args ? c->args[0] : NULL, &rows, err, sizeof(err)) !=
        STORE_OK)
        return people_fail(c, err);
    if (c->json) {
        cli_print_ok(c, rows, "");
        return EXIT_OK;
    }
    size_t i;
    json_t *row;
    json_array_foreach (rows, i, row)
        json_object_set_new(row, "state", json_string(json_is_true(json_object_get(row, "revoked"))
                                                          ? "revoked"
                                                          : "active"));
    cli_print_table(stdout, rows, token_cols);
    json_decref(rows);
    return EXIT_OK;
}

static int cmd_revoke_token(cli *c)
{
    char *end = NULL, err[1024], msg[300];
    long long id = strtoll(c->args[0], &end, 10);
    if (end == c->args[0] || *end != '\0' || id <= 0)
        return cli_usage_error(c, "a token id is a positive number (ferry list tokens shows "
                                  "them), not '%.64s'",
                               c->args[0]);
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    json_t *row = NULL;
    if (people_token_revoke(c->st, id, &row, err, sizeof(err)) != STORE_OK)
        return people_fail(c, err);
    snprintf(msg, sizeof(msg), "Successfully revoked token %lld of user %s", id,
             json_string_value(json_object_get(row, "userName")));
    return cli_print_row(c, row, msg);
}

#define END_OPTS {NULL, 0, NULL, 0, NULL}

static const cli_opt none[] = {END_OPTS};
static const cli_opt token_opts[] = {
    {"team", 0, "TEAM", 0, "the team whose data the token reaches (required)"},
    {"role", 0, "ROLE", 0, "viewer, operator or admin (required; docs/people.md)"},
    END_OPTS};

const cli_command cli_people_commands[] = {
    {"create", "user", "NAME", 1, 1, none, cmd_create_user, "create a user (docs/people.md)"},
    {"create", "token", "USER", 1, 1, token_opts, cmd_create_token,
     "create an API token for a user: --team TEAM --role viewer|operator|admin; printed once"},
    {"list", "users", NULL, 0, 0, none, cmd_list_users, "list users and their active tokens"},
    {"list", "tokens", "[USER]", 0, 1, none, cmd_list_tokens,
     "list tokens (never the token itself): id, user, team, role, last use"},
    {"revoke", "token", "ID", 1, 1, none, cmd_revoke_token, "revoke a token: it stops working"},
    {"rm", "token", "ID", 1, 1, none, cmd_revoke_token, "the same as revoke token"},
    {"rm", "user", "NAME", 1, 1, none, cmd_rm_user, "remove a user and revoke its tokens"},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL},
};
