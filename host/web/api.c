/*
 * The /api/v1 routes (docs/api.md). A route that has a command runs that command's own
 * function from the command tables, with its JSON envelope captured (cli.h: capture), so
 * that the API and `ferry … --output json` print the same shapes, with the same checks and
 * the same masking of secrets, from one piece of code. Query parameters become the
 * command's options of the same name; an option that reads a file or reveals secrets is
 * never taken from a request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli.h"
#include "hosts.h"
#include "registry.h"
#include "util.h"
#include "web_int.h"

#define MAX_ITEMS_PER_POST 10000

/* Options no request may set: they read files of the server, print secrets, block. */
static const char *const denied_opts[] = {"vault-file", "file", "reveal", "wait", "timeout",
                                          "follow", NULL};

static int denied(const char *name)
{
    for (size_t i = 0; denied_opts[i]; i++)
        if (strcmp(denied_opts[i], name) == 0)
            return 1;
    return 0;
}

/* --- running a command ----------------------------------------------------------------------- */

/* The HTTP status of a command's answer: its exit code, and for a refusal its message. */
static unsigned status_of(int rc, const json_t *env)
{
    if (rc == EXIT_OK)
        return 200;
    if (rc == EXIT_USAGE)
        return 400;
    const char *msg = json_string_value(json_object_get(env, "error"));
    if (msg == NULL)
        return 500;
    if (strstr(msg, " not found") || strncmp(msg, "no queue item", 13) == 0 ||
        strncmp(msg, "no team named", 13) == 0 || strncmp(msg, "no such", 7) == 0 ||
        strncmp(msg, "no machine", 10) == 0 || strncmp(msg, "no schedule", 11) == 0 ||
        strncmp(msg, "no storage", 10) == 0 || strstr(msg, " belongs to team "))
        return 404;
    if (strstr(msg, " items can be ") || strstr(msg, "already ") ||
        strstr(msg, "vault version is "))
        return 409;
    if (strstr(msg, "store") && (strstr(msg, "cannot") || strstr(msg, "failed")))
        return 500;
    return 400;
}

/* A command line context on the request's store, as cli_main makes one (capturing). */
static void cli_setup(struct req *r, cli *c, const cli_command *cmd)
{
    memset(c, 0, sizeof(*c));
    c->cmd = cmd;
    c->json = 1;
    c->capture = 1;
    c->cfg = *r->w->cfg; /* read only: never freed here */
    c->cfg_loaded = 1;
    c->st = r->st;
    c->opts = json_object();
}

static void cli_teardown(cli *c)
{
    if (c->reg) {
        registry_free(c->reg);
        free(c->reg);
    }
    cli_fncache_forget(c);
    json_decref(c->refs_checked);
    json_decref(c->opts);
    json_decref(c->envelope);
}

/*
 * The role creating an item of vault needs (people_item_role: operator, or more for a
 * function that runs arbitrary commands), from the descriptor the CLI's checks use.
 */
static enum people_role item_role(struct req *r, const json_t *vault)
{
    cli c;
    cli_setup(r, &c, NULL);
    const char *name = json_string_value(json_object_get(vault, "function"));
    const json_t *fn = NULL;
    if (name && cli_registry_cached(&c) == 0)
        fn = cli_function(&c, name);
    enum people_role need =
        people_item_role(fn, vault, people_role_parse(r->w->cfg->people_command_role));
    cli_teardown(&c);
    return need;
}

/*
 * Runs `ferry VERB NOUN ARGS… --output json` with opts (stolen) on the request's store.
 * Returns the envelope (new reference) and its HTTP status in *status.
 */
static json_t *run_cmd(struct req *r, const char *verb, const char *noun, const char *const *args,
                       int n_args, json_t *opts, unsigned *status)
{
    const cli_command *cmd = cli_find_command(verb, noun);
    if (cmd == NULL) {
        json_decref(opts);
        *status = 404;
        return json_pack("{s:b,s:n,s:s++}", "success", 0, "data", "error",
                         "this build has no command ", verb, noun ? noun : "");
    }
    cli c;
    cli_setup(r, &c, cmd);
    if (opts) {
        json_decref(c.opts);
        c.opts = opts;
    }
    char **argv = calloc((size_t)n_args + 1, sizeof(*argv));
    for (int i = 0; i < n_args; i++)
        argv[i] = xstrdup(args[i]);
    c.args = argv;
    c.n_args = n_args;
    int rc = cmd->fn(&c);
    json_t *env = c.envelope;
    c.envelope = NULL;
    if (env == NULL)
        env = json_pack("{s:b,s:n,s:s}", "success", rc == 0, "data", "message", "");
    *status = status_of(rc, env);
    cli_teardown(&c);
    for (int i = 0; i < n_args; i++)
        free(argv[i]);
    free(argv);
    return env;
}

/* Query parameters, name -> value ("" for a bare ?flag). */
static enum MHD_Result add_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    json_object_set_new(cls, key, json_string(value ? value : ""));
    return MHD_YES;
}

static json_t *query_of(struct req *r)
{
    json_t *q = json_object();
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_query, q);
    return q;
}

static int truthy(const char *v)
{
    return v && (*v == '\0' || !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes"));
}

/*
 * The command's options from the query (skipping the names in skip, NULL-terminated).
 * Returns the options, or NULL after answering 400 (unknown parameter, denied option, bad
 * flag value).
 */
static json_t *opts_from_query(struct req *r, const char *verb, const char *noun, json_t *query,
                               const char *const *skip)
{
    const cli_command *cmd = cli_find_command(verb, noun);
    json_t *opts = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(query, k, v)
    {
        int skipped = 0;
        for (size_t i = 0; skip && skip[i]; i++)
            skipped |= strcmp(skip[i], k) == 0;
        if (skipped)
            continue;
        const cli_opt *o = NULL;
        for (const cli_opt *p = cmd ? cmd->opts : NULL; p && p->name; p++)
            if (strcmp(p->name, k) == 0)
                o = p;
        if (o == NULL || denied(k)) {
            web_error(r, 400, "unknown parameter '%s' (docs/api.md lists each route's)", k);
            json_decref(opts);
            return NULL;
        }
        const char *s = json_string_value(v);
        if (o->arg) {
            if (o->repeat)
                json_object_set_new(opts, k, json_pack("[s]", s));
            else
                json_object_set_new(opts, k, json_string(s));
        } else if (truthy(s)) {
            json_object_set_new(opts, k, json_true());
        } else if (strcmp(s, "false") && strcmp(s, "0") && strcmp(s, "no")) {
            web_error(r, 400, "parameter '%s' is a flag: true or false, not '%s'", k, s);
            json_decref(opts);
            return NULL;
        }
    }
    return opts;
}

/* opts_from_query over this request's query. */
static json_t *opts_of(struct req *r, const char *verb, const char *noun, const char *const *skip)
{
    json_t *q = query_of(r);
    json_t *opts = opts_from_query(r, verb, noun, q, skip);
    json_decref(q);
    return opts;
}

static enum MHD_Result answer(struct req *r, json_t *env, unsigned status)
{
    return web_json(r, status, env);
}

/* --- teams ---------------------------------------------------------------------------------- */

/* The teams a list route covers: ?team=, else the token's team, else every team (CLI on the
 * store or no people module). NULL after answering. */
static json_t *teams_for(struct req *r, const char *asked)
{
    if (asked && *asked) {
        json_t *out = json_array();
        char *copy = xstrdup(asked), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (web_allowed(r, t, ROLE_VIEWER) != 0) {
                free(copy);
                json_decref(out);
                return NULL;
            }
            json_array_append_new(out, json_string(t));
        }
        free(copy);
        return out;
    }
    if (r->p.team[0])
        return json_pack("[s]", r->p.team);
    json_t *rows = NULL, *out = json_array();
    char err[512];
    if (store_resource_list(r->st, STORE_TEAM, NULL, &rows, err, sizeof(err)) != STORE_OK) {
        web_error(r, 500, "%s", err);
        json_decref(out);
        return NULL;
    }
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) json_array_append(out, json_object_get(row, "teamName"));
    json_decref(rows);
    return out;
}

/* GET of a team's resources through `ferry list NOUN TEAM`, for each team of teams_for. */
static enum MHD_Result list_per_team(struct req *r, const char *noun)
{
    json_t *q = query_of(r);
    const char *skip[] = {"team", NULL};
    json_t *probe = opts_from_query(r, "list", noun, q, skip);
    if (probe == NULL) {
        json_decref(q);
        return MHD_YES;
    }
    json_t *teams = teams_for(r, json_string_value(json_object_get(q, "team")));
    if (teams == NULL) {
        json_decref(q);
        json_decref(probe);
        return MHD_YES;
    }
    json_t *all = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(teams, i, t)
    {
        unsigned status;
        const char *args[] = {json_string_value(t)};
        json_t *env = run_cmd(r, "list", noun, args, 1, json_deep_copy(probe), &status);
        if (status != 200) {
            json_decref(all);
            json_decref(teams);
            json_decref(q);
            json_decref(probe);
            return answer(r, env, status);
        }
        json_array_extend(all, json_object_get(env, "data"));
        json_decref(env);
    }
    json_decref(teams);
    json_decref(q);
    json_decref(probe);
    return answer(r, json_pack("{s:b,s:o,s:s}", "success", 1, "data", all, "message", ""), 200);
}

/* --- queue ------------------------------------------------------------------------------------- */

static enum MHD_Result queue_list(struct req *r)
{
    json_t *opts = opts_of(r, "list", "queue", NULL);
    if (opts == NULL)
        return MHD_YES;
    const char *team = json_string_value(json_object_get(opts, "team"));
    if (team) {
        json_t *teams = teams_for(r, team);
        if (teams == NULL) {
            json_decref(opts);
            return MHD_YES;
        }
        json_decref(teams);
    } else if (r->p.team[0]) {
        json_object_set_new(opts, "team", json_string(r->p.team));
    }
    unsigned status;
    json_t *env = run_cmd(r, "list", "queue", NULL, 0, opts, &status);
    return answer(r, env, status);
}

/* The item's team, after checking that p may act on it with need; NULL after answering. */
static char *item_team(struct req *r, const char *id, enum people_role need, char *full,
                       size_t fulllen)
{
    json_t *row = NULL;
    char err[512];
    int rc = store_queue_get(r->st, id, &row, err, sizeof(err));
    if (rc != STORE_OK) {
        web_error(r, rc == STORE_NOT_FOUND ? 404 : rc == STORE_AMBIGUOUS ? 409 : 500, "%s", err);
        return NULL;
    }
    char *team = xstrdup(json_string_value(json_object_get(row, "teamName")));
    snprintf(full, fulllen, "%s", json_string_value(json_object_get(row, "taskId")));
    if (need == ROLE_OPERATOR && strstr(r->url, "/retry")) {
        /* A retry creates the item again: it needs what creating it needs. */
        enum people_role create = item_role(r, json_object_get(row, "vaultContent"));
        if (create > need)
            need = create;
    }
    json_decref(row);
    if (web_allowed(r, team, need) != 0) {
        free(team);
        return NULL;
    }
    return team;
}

static enum MHD_Result queue_item(struct req *r, const char *rest)
{
    char id[64];
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (n == 0 || n >= sizeof(id))
        return web_error(r, 404, "no route %s %s", r->method, r->url);
    memcpy(id, rest, n);
    id[n] = '\0';
    for (char *p = id; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    if (!store_task_id_ok(id))
        return web_error(r, 400, "'%s' is not a task id", id);
    const char *action = slash ? slash + 1 : NULL;
    int post = strcmp(r->method, "POST") == 0;
    if (action == NULL && strcmp(r->method, "GET") != 0)
        return web_error(r, 405, "%s takes GET", r->url);
    if (action && (!post || (strcmp(action, "retry") && strcmp(action, "cancel"))))
        return action && strcmp(action, "retry") && strcmp(action, "cancel")
                   ? web_error(r, 404, "no route %s %s", r->method, r->url)
                   : web_error(r, 405, "%s takes POST", r->url);
    char full[64];
    char *team = item_team(r, id, action ? ROLE_OPERATOR : ROLE_VIEWER, full, sizeof(full));
    if (team == NULL)
        return MHD_YES;
    free(team);
    const char *noun = action ? action : "trace";
    json_t *opts = opts_of(r, "queue", noun, NULL);
    if (opts == NULL)
        return MHD_YES;
    const char *args[] = {full};
    unsigned status;
    json_t *env = run_cmd(r, "queue", noun, args, 1, opts, &status);
    return answer(r, env, status == 200 && action && !strcmp(action, "retry") ? 201 : status);
}

/* POST /api/v1/queue with one object: create queue-item. */
static enum MHD_Result create_one(struct req *r, json_t *item, json_t *q)
{
    const char *team = json_string_value(json_object_get(item, "team"));
    const char *machine = json_string_value(json_object_get(item, "machine"));
    const char *bridge = json_string_value(json_object_get(item, "bridge"));
    json_t *vault = json_object_get(item, "vault");
    json_t *prio = json_object_get(item, "priority");
    json_t *after = json_object_get(item, "after");
    const char *k;
    json_t *v;
    json_object_foreach(item, k, v) if (strcmp(k, "team") && strcmp(k, "machine") &&
                                        strcmp(k, "bridge") && strcmp(k, "vault") &&
                                        strcmp(k, "priority") && strcmp(k, "after")) return
        web_error(r, 400, "unknown key '%s': an item is {\"team\",\"machine\",\"bridge\","
                          "\"vault\",\"priority\",\"after\"}", k);
    if (!team || !machine || !bridge || !json_is_object(vault))
        return web_error(r, 400, "an item needs \"team\", \"machine\", \"bridge\" (strings) and "
                                 "\"vault\" (an object with \"function\")");
    if (prio && !json_is_integer(prio))
        return web_error(r, 400, "\"priority\" must be a whole number from 1 to 5");
    if (after && !json_is_array(after))
        return web_error(r, 400, "\"after\" must be an array of task ids");
    if (web_allowed(r, team, item_role(r, vault)) != 0)
        return MHD_YES;
    const char *skip[] = {"continue", NULL};
    json_t *opts = opts_from_query(r, "create", "queue-item", q, skip);
    if (opts == NULL)
        return MHD_YES;
    char *text = json_dumps(vault, JSON_COMPACT);
    json_object_set_new(opts, "vault", json_string(text));
    free(text);
    if (prio) {
        char p[32];
        snprintf(p, sizeof(p), "%lld", (long long)json_integer_value(prio));
        json_object_set_new(opts, "priority", json_string(p));
    }
    if (json_array_size(after)) {
        json_t *list = json_array();
        size_t i;
        json_array_foreach(after, i, v)
        {
            if (!json_is_string(v)) {
                json_decref(list);
                json_decref(opts);
                return web_error(r, 400, "\"after\" must be an array of task ids");
            }
            json_array_append(list, v);
        }
        json_object_set_new(opts, "after", list);
    }
    const char *args[] = {team, machine, bridge};
    unsigned status;
    json_t *env = run_cmd(r, "create", "queue-item", args, 3, opts, &status);
    return answer(r, env, status == 200 ? 201 : status);
}

/* POST /api/v1/queue with an array: create queue-items, its lines from a memory file. */
static enum MHD_Result create_many(struct req *r, json_t *items, json_t *q)
{
    size_t n = json_array_size(items);
    if (n == 0 || n > MAX_ITEMS_PER_POST)
        return web_error(r, 400, "give 1 to %d items", MAX_ITEMS_PER_POST);
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        const char *team = json_string_value(json_object_get(it, "team"));
        if (!json_is_object(it) || team == NULL)
            return web_error(r, 400, "item %zu: an item is an object with \"team\", \"machine\", "
                                     "\"bridge\", \"vault\" and \"priority\"", i + 1);
        if (web_allowed(r, team, item_role(r, json_object_get(it, "vault"))) != 0)
            return MHD_YES;
    }
    json_t *opts = opts_from_query(r, "create", "queue-items", q, NULL);
    if (opts == NULL)
        return MHD_YES;
    int fd = memfd_create("ferry-web-items", MFD_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "w+") : NULL;
    if (f == NULL) {
        if (fd >= 0)
            close(fd);
        json_decref(opts);
        return web_error(r, 500, "cannot hold the items in memory");
    }
    json_array_foreach(items, i, it)
    {
        json_dumpf(it, f, JSON_COMPACT);
        fputc('\n', f);
    }
    fflush(f);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    json_object_set_new(opts, "file", json_string(path));
    unsigned status;
    json_t *env = run_cmd(r, "create", "queue-items", NULL, 0, opts, &status);
    fclose(f);
    return answer(r, env, status == 200 ? 201 : status);
}

static json_t *body_json(struct req *r)
{
    json_error_t e;
    json_t *v = json_loadb(r->body ? r->body : "", r->len, JSON_REJECT_DUPLICATES, &e);
    if (v == NULL)
        web_error(r, 400, "the body is not JSON: %s (line %d, column %d)", e.text, e.line,
                  e.column);
    return v;
}

static enum MHD_Result queue_create(struct req *r)
{
    json_t *body = body_json(r);
    if (body == NULL)
        return MHD_YES;
    json_t *q = query_of(r);
    enum MHD_Result rc;
    if (json_is_object(body))
        rc = create_one(r, body, q);
    else if (json_is_array(body))
        rc = create_many(r, body, q);
    else
        rc = web_error(r, 400, "the body is one item (an object) or an array of items");
    json_decref(q);
    json_decref(body);
    return rc;
}

/* --- schedules -------------------------------------------------------------------------------- */

/* POST /api/v1/schedules/TEAM/NAME[/enable|/disable]. */
static enum MHD_Result schedule_change(struct req *r, const char *rest)
{
    char team[128], name[256], action[32] = "";
    int n = sscanf(rest, "%127[^/]/%255[^/]/%31s", team, name, action);
    if (n < 2)
        return web_error(r, 404, "no route %s %s", r->method, r->url);
    if (strcmp(r->method, "POST") != 0)
        return web_error(r, 405, "%s takes POST", r->url);
    int toggle = !strcmp(action, "enable") || !strcmp(action, "disable");
    if (n == 3 && !toggle)
        return web_error(r, 404, "no route %s %s", r->method, r->url);
    json_t *patch = toggle ? json_pack("{s:b}", "enabled", !strcmp(action, "enable"))
                           : body_json(r);
    if (patch == NULL)
        return MHD_YES;
    if (!json_is_object(patch)) {
        json_decref(patch);
        return web_error(r, 400, "the body is a JSON merge patch: an object");
    }
    json_t *opts = opts_of(r, "update", "schedule-vault", NULL);
    if (toggle && opts)
        json_object_del(opts, "replace");
    /* Turning it on or off is an operator's; anything else (or a whole vault) an admin's. */
    enum people_role need = opts && json_object_get(opts, "replace")
                                ? ROLE_ADMIN
                                : people_schedule_patch_role(patch);
    if (opts == NULL || web_allowed(r, team, need) != 0) {
        json_decref(opts);
        json_decref(patch);
        return MHD_YES;
    }
    char *text = json_dumps(patch, JSON_COMPACT);
    json_decref(patch);
    json_object_set_new(opts, "vault", json_string(text));
    free(text);
    const char *args[] = {team, name};
    unsigned status;
    json_t *env = run_cmd(r, "update", "schedule-vault", args, 2, opts, &status);
    return answer(r, env, status);
}

/* --- the rest ------------------------------------------------------------------------------------ */

static enum MHD_Result me(struct req *r)
{
    return answer(r,
                  json_pack("{s:b,s:{s:s,s:s,s:s,s:s,s:s},s:s}", "success", 1, "data", "user",
                            r->p.user, "team", r->p.team, "role", web_role_name(r->p.role),
                            "via", r->p.via, "address", r->p.address, "message", ""),
                  200);
}

static enum MHD_Result hosts(struct req *r)
{
    if (web_allowed(r, r->p.team[0] ? r->p.team : NULL, ROLE_VIEWER) != 0)
        return MHD_YES;
    json_t *rows = NULL;
    char err[512];
    if (store_hosts_list(r->st, now_ms(), &rows, err, sizeof(err)) != STORE_OK)
        return web_error(r, 500, "%s", err);
    return answer(r, json_pack("{s:b,s:o,s:s}", "success", 1, "data", rows, "message", ""), 200);
}

static enum MHD_Result audit(struct req *r)
{
    if (web_allowed(r, r->p.team[0] ? r->p.team : NULL, ROLE_ADMIN) != 0)
        return MHD_YES;
    json_t *opts = opts_of(r, "audit", "list", NULL);
    if (opts == NULL)
        return MHD_YES;
    if (r->p.team[0]) {
        const char *asked = json_string_value(json_object_get(opts, "team"));
        if (asked && strcmp(asked, r->p.team) != 0) {
            json_decref(opts);
            return web_error(r, 403, "the token is of team %s, not %s", r->p.team, asked);
        }
        json_object_set_new(opts, "team", json_string(r->p.team));
    }
    unsigned status;
    json_t *env = run_cmd(r, "audit", "list", NULL, 0, opts, &status);
    return answer(r, env, status);
}

static enum MHD_Result login(struct req *r)
{
    if (strcmp(r->method, "POST") != 0)
        return web_error(r, 405, "%s takes POST", r->url);
    json_t *body = body_json(r);
    if (body == NULL)
        return MHD_YES;
    const char *token = json_string_value(json_object_get(body, "token"));
    if (token == NULL || strlen(token) > 400) {
        json_decref(body);
        return web_error(r, 400, "give {\"token\":\"…\"}");
    }
    if (r->w->auth) {
        char err[512];
        if (people_authenticate(r->st, token, r->address, &r->p, err, sizeof(err)) != STORE_OK) {
            json_decref(body);
            return web_error(r, 401, "unknown or revoked token");
        }
    } else {
        snprintf(r->p.user, sizeof(r->p.user), "anonymous");
        r->p.role = ROLE_ADMIN;
    }
    char cookie[256];
    web_session_start(r, token, cookie, sizeof(cookie));
    json_decref(body);
    json_t *env = json_pack("{s:b,s:{s:s,s:s,s:s,s:s},s:s}", "success", 1, "data", "csrfToken",
                            r->csrf, "user", r->p.user, "team", r->p.team, "role",
                            web_role_name(r->p.role), "message", "logged in");
    char *text = json_dumps(env, JSON_COMPACT);
    json_decref(env);
    size_t n = strlen(text);
    return web_reply(r, 200, "application/json", text, n, "Set-Cookie", cookie, NULL);
}

static enum MHD_Result logout(struct req *r)
{
    web_session_end(r);
    char *text = xstrdup("{\"success\":true,\"data\":null,\"message\":\"logged out\"}\n");
    return web_reply(r, 200, "application/json", text, strlen(text), "Set-Cookie",
                     "ferry_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0", NULL);
}

enum MHD_Result api_handle(struct req *r)
{
    if (web_store(r) == NULL)
        return MHD_YES;
    const char *u = r->url;
    int get = strcmp(r->method, "GET") == 0, post = strcmp(r->method, "POST") == 0;
    if (!strcmp(u, "/api/v1/login"))
        return login(r);
    if (!strcmp(u, "/api/v1/logout"))
        return post ? logout(r) : web_error(r, 405, "%s takes POST", u);
    if (!strcmp(u, "/api/v1/queue"))
        return get ? queue_list(r) : post ? queue_create(r)
                                          : web_error(r, 405, "%s takes GET or POST", u);
    if (!strncmp(u, "/api/v1/queue/", 14))
        return queue_item(r, u + 14);
    if (!strncmp(u, "/api/v1/schedules/", 18))
        return schedule_change(r, u + 18);
    struct {
        const char *path;
        enum MHD_Result (*fn)(struct req *);
        const char *noun;
    } gets[] = {
        {"/api/v1/me", me, NULL},
        {"/api/v1/hosts", hosts, NULL},
        {"/api/v1/audit", audit, NULL},
        {"/api/v1/summary", summary_serve, NULL},
        {"/api/v1/events", events_serve, NULL},
        {"/api/v1/schedules", NULL, "team-schedules"},
        {"/api/v1/machines", NULL, "team-machines"},
        {"/api/v1/groups", NULL, "team-machine-groups"},
        {"/api/v1/storages", NULL, "team-storages"},
    };
    for (size_t i = 0; i < sizeof(gets) / sizeof(gets[0]); i++) {
        if (strcmp(u, gets[i].path) != 0)
            continue;
        if (!get)
            return web_error(r, 405, "%s takes GET", u);
        return gets[i].fn ? gets[i].fn(r) : list_per_team(r, gets[i].noun);
    }
    return web_error(r, 404, "no route %s %s", r->method, u);
}
