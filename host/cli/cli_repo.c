/*
 * ferry repo snapshots|ls|diff: a storage's snapshots, a snapshot's files, the changes between
 * two snapshots, read from the storage now, without the queue (restic's snapshots, ls, diff).
 *
 * The storage format is the repo plugin's, and only the plugin reads it: each command runs
 * one of its read-only functions (repo_snapshots, repo_ls, repo_diff) as `ferry run` runs a
 * function, in a worker process built by attempt.c, and answers the worker's request for the
 * storage's vault from the store, its sealed secrets opened, as `ferry serve` does. So the
 * storage code is not linked into ferry twice, what a hostile storage feeds the reader is
 * parsed in a worker (a crash there is an error here, not a crashed CLI), and the secrets go
 * where they go for any function, never to the terminal. Everything read back from a storage
 * is text from outside: on a terminal it is printed escaped (escape_text).
 */
#include <stdlib.h>
#include <string.h>

#include "attempt.h"
#include "cli.h"
#include "cli_attempt.h"
#include "descriptor.h"
#include "runner.h"
#include "store.h"
#include "term_text.h"
#include "util.h"
#include "vault.h"

/* --- text from a storage, for a terminal --------------------------------------------------- */

/*
 * n bytes as one line of printable text (new string): a backslash as \\ (unless json_text:
 * JSON's own escapes stay as they are), \n \t \r, other control bytes and bytes that are
 * not UTF-8 as \xHH, and what term_cp_hidden names (C1, bidi, zero-width, line separators)
 * as \uHHHH. So a name is never raw to the terminal, and two names never look the same:
 * term_clean's rules, but exact (a file name's bytes, not U+FFFD) and unambiguous.
 */
static char *escape_bytes(const char *s, size_t n, int json_text)
{
    char *out = malloc(n * 6 + 1);
    if (out == NULL)
        abort();
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        size_t len = term_utf8_decode(p + i, n - i, &cp);
        if (len == 0) {
            o += (size_t)sprintf(out + o, "\\x%02x", p[i]);
            i++;
            continue;
        }
        if ((cp == '\\' && !json_text) || cp == '\n' || cp == '\t' || cp == '\r')
            o += (size_t)sprintf(out + o, "\\%c",
                                 cp == '\n'   ? 'n'
                                 : cp == '\t' ? 't'
                                 : cp == '\r' ? 'r'
                                              : '\\');
        else if (cp < 0x20 || cp == 0x7f)
            o += (size_t)sprintf(out + o, "\\x%02x", (unsigned)cp);
        else if (term_cp_hidden(cp))
            o += (size_t)sprintf(out + o, "\\u%04x", (unsigned)cp);
        else {
            memcpy(out + o, p + i, len);
            o += len;
        }
        i += len;
    }
    out[o] = '\0';
    return out;
}

static char *escape_text(const char *s)
{
    return escape_bytes(s ? s : "", s ? strlen(s) : 0, 0);
}

/* The name obj[key] escaped (new string): from obj[key "_hex"], its exact bytes, when the
 * plugin gave them (a name that is not UTF-8), else the string. */
static char *escape_name(const json_t *obj, const char *key)
{
    char hex_key[64];
    snprintf(hex_key, sizeof(hex_key), "%s_hex", key);
    const char *hex = json_string_value(json_object_get(obj, hex_key));
    size_t n = hex ? strlen(hex) / 2 : 0;
    if (hex == NULL || strlen(hex) % 2 != 0)
        return escape_text(json_string_value(json_object_get(obj, key)));
    char *bytes = malloc(n + 1);
    if (bytes == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            free(bytes);
            return escape_text(json_string_value(json_object_get(obj, key)));
        }
        bytes[i] = (char)v;
    }
    char *text = escape_bytes(bytes, n, 0);
    free(bytes);
    return text;
}

/* Any JSON value from a storage as escaped text (new string): a string as itself, "-" for
 * null or absent, the rest compact. */
static char *escape_value(const json_t *v)
{
    if (v == NULL || json_is_null(v))
        return xstrdup("-");
    if (json_is_string(v))
        return escape_text(json_string_value(v));
    char *dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    char *text = escape_bytes(dump, strlen(dump), 1);
    free(dump);
    return text;
}

/* Sets obj[key] to text (stolen). */
static void set_text(json_t *obj, const char *key, char *text)
{
    json_object_set_new(obj, key, json_string(text));
    free(text);
}

/* --- running the plugin's function ------------------------------------------------------- */

struct repo_run {
    struct cli_attempt a; /* first: the runner's callbacks get this struct */
    cli *c;
    const char *team;
    json_t *storage_vault; /* the opened vault handed to the worker: what redaction hides */
    enum outcome_kind status;
    json_t *result;
    char *error;
};

static void on_storage(void *ud, runner_job *job, const struct proto_storage *m)
{
    struct repo_run *s = ud;
    json_t *row = NULL;
    char err[512] = "no storage name";
    struct proto_reply reply = {.kind = OUTCOME_FAIL, .code = "not_found", .message = err};
    if (m->name &&
        store_resource_get(s->c->st, STORE_STORAGE, s->team, m->name, &row, err, sizeof(err)) ==
            0 &&
        store_resource_reveal(s->c->st, STORE_STORAGE, row, err, sizeof(err)) == 0) {
        reply = (struct proto_reply){.kind = OUTCOME_OK, .vault = json_object_get(row, "vault")};
        json_decref(s->storage_vault);
        s->storage_vault = json_incref(json_object_get(row, "vault"));
    }
    runner_answer(s->a.r, job, &reply);
    json_decref(row);
}

/* The worker's warnings, errors and stderr (a crash report, say) go to stderr, one line
 * each, escaped and with the storage's secrets hidden; its info and debug lines do not. */
static void on_log(void *ud, runner_job *job, const struct proto_log *m)
{
    (void)job;
    struct repo_run *s = ud;
    if (m->level == NULL || strcmp(m->level, "info") == 0 || strcmp(m->level, "debug") == 0)
        return;
    char *safe = redact_text(m->text ? m->text : "", s->storage_vault, NULL);
    cli_warn(s->c, "%s", safe);
    free(safe);
}

static void on_call(void *ud, runner_job *job, const struct proto_call *m)
{
    (void)m;
    struct repo_run *s = ud;
    struct proto_reply reply = {
        .kind = OUTCOME_FAIL, .code = "unavailable", .message = "ferry repo does not nest calls"};
    runner_answer(s->a.r, job, &reply);
}

static void on_done(void *ud, runner_job *job, const struct outcome *out)
{
    (void)job;
    struct repo_run *s = ud;
    s->a.done = 1;
    s->status = out->kind;
    s->result = out->result ? json_incref(out->result) : NULL;
    s->error = out->message ? xstrdup(out->message) : NULL;
}

/*
 * The storage's team: --team, else the one team that has a storage of that name. 0, or an
 * exit code after printing why.
 */
static int storage_team(cli *c, const char *storage, const char **team)
{
    *team = cli_opt_str(c, "team");
    if (*team)
        return 0;
    json_t *rows = NULL;
    char err[512], teams[512] = "";
    if (store_resource_list(c->st, STORE_STORAGE, NULL, &rows, err, sizeof(err)) != 0)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    size_t i, found = 0, used = 0;
    json_t *row;
    json_array_foreach (rows, i, row) {
        if (strcmp(json_string_value(json_object_get(row, "storageName")), storage) != 0)
            continue;
        const char *t = json_string_value(json_object_get(row, "teamName"));
        if (found++ == 0)
            *team = json_string_value(json_object_get(row, "teamName"));
        if (used < sizeof(teams))
            used += (size_t)snprintf(teams + used, sizeof(teams) - used, "%s%s",
                                     found > 1 ? ", " : "", t);
    }
    /* The team's name must outlive rows: keep it in the options. */
    if (found == 1)
        json_object_set_new(c->opts, "team", json_string(*team));
    *team = found == 1 ? cli_opt_str(c, "team") : NULL;
    json_decref(rows);
    if (found == 0)
        return cli_fail(c, EXIT_ERROR,
                        "no team has a storage named '%s'; ferry list team-storages TEAM lists "
                        "a team's storages",
                        storage);
    if (found > 1)
        return cli_fail(c, EXIT_ERROR, "teams %s each have a storage named '%s': give --team",
                        teams, storage);
    return 0;
}

/*
 * Runs the repo plugin's function fname with vault (stolen; "function" is set here) in a
 * worker, the storage's vault coming from the store. 0 with *result (new reference), or an
 * exit code after printing the function's error (secrets of the storage hidden).
 */
static int repo_run(cli *c, const char *fname, json_t *vault, json_t **result)
{
    int rc = EXIT_OK;
    const char *team = NULL;
    struct repo_run s = {.c = c};
    char err[1024];
    json_t *machine = NULL;
    *result = NULL;
    json_object_set_new(vault, "function", json_string(fname));
    if (json_object_get(vault, "storage") == NULL) {
        rc = cli_usage_error(c, "--storage NAME is required");
        goto out;
    }
    if (cli_store(c) != 0 || cli_registry_cached(c) != 0) {
        rc = EXIT_ERROR;
        goto out;
    }
    if ((rc = storage_team(c, json_string_value(json_object_get(vault, "storage")), &team)) != 0)
        goto out;
    const json_t *desc = cli_function(c, fname);
    struct ferry_fn fn;
    if (desc == NULL || descriptor_fn(desc, &fn) != 0 || fn.path == NULL) {
        rc = cli_fail(c, EXIT_ERROR,
                      "no usable repo plugin with function %s in %s; ferry plugins says why", fname,
                      c->cfg.plugin_dir);
        goto out;
    }
    if (params_validate(desc, vault, err, sizeof(err)) != 0) {
        rc = cli_fail(c, EXIT_USAGE, "%s", err);
        goto out;
    }
    char run_id[41] = "run-";
    uuid_v4(run_id + 4);
    machine = attempt_local_machine();
    struct attempt_source src = {.reg = c->reg,
                                 .fn = &fn,
                                 .vault = vault,
                                 .item_vault = vault,
                                 .machine = machine,
                                 .task_id = run_id,
                                 .attempt = 1};
    struct attempt_run run;
    attempt_build(&c->cfg, &src, &run);
    s.team = team;
    runner_events ev = {.log = on_log, .call = on_call, .storage = on_storage, .done = on_done};
    cli_run_attempt(c, &run.spec, &ev, &s.a);
    attempt_run_free(&run);
    if (s.status == OUTCOME_OK && json_is_object(s.result)) {
        *result = json_incref(s.result);
    } else {
        char *safe = redact_text(s.error ? s.error : "", s.storage_vault, NULL);
        rc = cli_fail(c, EXIT_ERROR, "%s %s: %s", fname, outcome_kind_name(s.status), safe);
        free(safe);
    }
out:
    json_decref(machine);
    json_decref(s.result);
    json_decref(s.storage_vault);
    free(s.error);
    json_decref(vault);
    return rc;
}

/* The filters every command takes, into vault. */
static json_t *filters(cli *c)
{
    json_t *vault = json_object();
    const char *names[][2] = {
        {"storage", "storage"}, {"repository", "repository"}, {"machine", "from_machine"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (cli_opt_str(c, names[i][0]))
            json_object_set_new(vault, names[i][1], json_string(cli_opt_str(c, names[i][0])));
    return vault;
}

/* "12.3 MiB" for n bytes into out. */
static const char *human_bytes(json_int_t n, char *out, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, len, "%lld B", (long long)n);
    else
        snprintf(out, len, "%.1f %s", v, units[u]);
    return out;
}

/* --- ferry repo snapshots ----------------------------------------------------------------- */

static int cmd_repo_snapshots(cli *c)
{
    json_t *result = NULL;
    int rc = repo_run(c, "repo_snapshots", filters(c), &result);
    if (rc != 0)
        return rc;
    json_t *rows = json_incref(json_object_get(result, "snapshots"));
    json_decref(result);
    if (c->json) {
        cli_print_ok(c, rows, "");
        return EXIT_OK;
    }
    json_t *text_rows = json_array();
    size_t i;
    json_t *row;
    json_array_foreach (rows, i, row) {
        char size[32];
        json_t *bytes = json_object_get(json_object_get(row, "stats"), "bytes");
        json_t *t = json_object();
        set_text(t, "repository", escape_name(row, "repository"));
        set_text(t, "id", escape_name(row, "id"));
        set_text(t, "time", escape_value(json_object_get(row, "time")));
        set_text(t, "machine", escape_value(json_object_get(row, "machine")));
        set_text(t, "size",
                 xstrdup(json_is_integer(bytes)
                             ? human_bytes(json_integer_value(bytes), size, sizeof(size))
                             : "-"));
        set_text(t, "tags", escape_value(json_object_get(row, "tags")));
        json_array_append_new(text_rows, t);
    }
    static const char *const cols[][2] = {{"REPOSITORY", "repository"},
                                          {"ID", "id"},
                                          {"TIME", "time"},
                                          {"MACHINE", "machine"},
                                          {"SIZE", "size"},
                                          {"TAGS", "tags"},
                                          {NULL, NULL}};
    cli_print_table(stdout, text_rows, cols);
    printf("%zu snapshot%s\n", json_array_size(rows), json_array_size(rows) == 1 ? "" : "s");
    json_decref(text_rows);
    json_decref(rows);
    return EXIT_OK;
}

/* --- ferry repo ls ----------------------------------------------------------------------- */

/* "drwxr-xr-x" for an entry's type and mode into out (11 bytes). */
static const char *mode_text(const char *type, json_int_t mode, char *out)
{
    static const char *const types[][2] = {{"dir", "d"},     {"symlink", "l"},  {"fifo", "p"},
                                           {"chardev", "c"}, {"blockdev", "b"}, {"hardlink", "h"}};
    out[0] = '-';
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (type && strcmp(type, types[i][0]) == 0)
            out[0] = types[i][1][0];
    const char *rwx = "rwxrwxrwx";
    for (int i = 0; i < 9; i++)
        out[1 + i] = (mode >> (8 - i)) & 1 ? rwx[i] : '-';
    if (mode & 04000)
        out[3] = out[3] == 'x' ? 's' : 'S';
    if (mode & 02000)
        out[6] = out[6] == 'x' ? 's' : 'S';
    if (mode & 01000)
        out[9] = out[9] == 'x' ? 't' : 'T';
    out[10] = '\0';
    return out;
}

/* The header line of ls and diff: repository/id, machine and time of a snapshot row. */
static char *snapshot_label(const json_t *row)
{
    char *repo = escape_name(row, "repository"), *id = escape_name(row, "id"),
         *machine = escape_value(json_object_get(row, "machine")),
         *time = escape_value(json_object_get(row, "time"));
    char *label = xasprintf("%s/%s (machine %s, %s)", repo, id, machine, time);
    free(repo);
    free(id);
    free(machine);
    free(time);
    return label;
}

static void print_entry(const json_t *e, int is_long)
{
    char *path = escape_name(e, "path");
    const char *type = json_string_value(json_object_get(e, "type"));
    char *target = json_object_get(e, "target") ? escape_name(e, "target") : NULL;
    const char *arrow = type && strcmp(type, "hardlink") == 0 ? " => " : " -> ";
    if (is_long) {
        char mode[11], *mtime = escape_value(json_object_get(e, "mtime"));
        printf("%s %6lld %6lld %12lld  %.19s  %s%s%s\n",
               mode_text(type, json_integer_value(json_object_get(e, "mode")), mode),
               (long long)json_integer_value(json_object_get(e, "uid")),
               (long long)json_integer_value(json_object_get(e, "gid")),
               (long long)json_integer_value(json_object_get(e, "size")), mtime, path,
               target ? arrow : "", target ? target : "");
        free(mtime);
    } else {
        printf("%s%s\n", path, type && strcmp(type, "dir") == 0 ? "/" : "");
    }
    free(target);
    free(path);
}

static int cmd_repo_ls(cli *c)
{
    json_t *vault = filters(c), *result = NULL;
    json_object_set_new(vault, "snapshot", json_string(c->args[0]));
    json_object_set_new(vault, "path", json_string(c->n_args > 1 ? c->args[1] : ""));
    /* As restic's ls: everything without a path; a path's own entries unless --recursive. */
    json_object_set_new(vault, "recursive",
                        json_boolean(c->n_args < 2 || cli_flag(c, "recursive")));
    int rc = repo_run(c, "repo_ls", vault, &result);
    if (rc != 0)
        return rc;
    if (c->json) {
        cli_print_ok(c, result, "");
        return EXIT_OK;
    }
    char *label = snapshot_label(json_object_get(result, "snapshot"));
    printf("snapshot %s:\n", label);
    free(label);
    size_t i;
    json_t *e;
    json_array_foreach (json_object_get(result, "entries"), i, e)
        print_entry(e, cli_flag(c, "long"));
    json_decref(result);
    return EXIT_OK;
}

/* --- ferry repo diff --------------------------------------------------------------------- */

static int cmd_repo_diff(cli *c)
{
    json_t *vault = filters(c), *result = NULL;
    json_object_set_new(vault, "from", json_string(c->args[0]));
    json_object_set_new(vault, "to", json_string(c->args[1]));
    if (cli_flag(c, "metadata"))
        json_object_set_new(vault, "metadata", json_true());
    int rc = repo_run(c, "repo_diff", vault, &result);
    if (rc != 0)
        return rc;
    if (c->json) {
        cli_print_ok(c, result, "");
        return EXIT_OK;
    }
    char *from = snapshot_label(json_object_get(result, "from")),
         *to = snapshot_label(json_object_get(result, "to"));
    printf("comparing snapshot %s to %s:\n\n", from, to);
    free(from);
    free(to);
    size_t i;
    json_t *ch;
    json_array_foreach (json_object_get(result, "changes"), i, ch) {
        char *path = escape_name(ch, "path");
        printf("%-5s%s\n", json_string_value(json_object_get(ch, "change")), path);
        free(path);
    }
    const json_t *st = json_object_get(result, "stats"), *add = json_object_get(st, "added"),
                 *rm = json_object_get(st, "removed");
#define N(o, k) ((long long)json_integer_value(json_object_get((o), (k))))
    char added[32], removed[32];
    printf("\nFiles:  %5lld new, %5lld removed, %5lld changed\n"
           "Dirs:   %5lld new, %5lld removed\n"
           "Others: %5lld new, %5lld removed\n"
           "Data added: %s, removed: %s\n",
           N(add, "files"), N(rm, "files"), N(st, "changed_files"), N(add, "dirs"), N(rm, "dirs"),
           N(add, "others"), N(rm, "others"), human_bytes(N(add, "bytes"), added, sizeof(added)),
           human_bytes(N(rm, "bytes"), removed, sizeof(removed)));
#undef N
    json_decref(result);
    return EXIT_OK;
}

#define REPO_FILTER_OPTS                                                                           \
    {"storage", 0, "NAME", 0, "the storage to read (required)"},                                   \
        {"team", 0, "TEAM", 0,                                                                     \
         "the storage's team (needed when several teams have one of that name)"},                  \
        {"repository", 0, "NAME", 0, "only snapshots of this repository"},                         \
    {                                                                                              \
        "machine", 0, "MACHINE", 0, "only snapshots this machine pushed"                           \
    }

static const cli_opt snapshots_opts[] = {REPO_FILTER_OPTS, {NULL, 0, NULL, 0, NULL}};

static const cli_opt ls_opts[] = {
    REPO_FILTER_OPTS,
    {"long", 'l', NULL, 0, "type and mode, owner, size, mtime and link target of each entry"},
    {"recursive", 0, NULL, 0, "with PATH: everything below it, not only what it holds directly"},
    {NULL, 0, NULL, 0, NULL},
};

static const cli_opt diff_opts[] = {
    REPO_FILTER_OPTS,
    {"metadata", 0, NULL, 0, "also list entries whose mode, owner or mtime alone changed (U)"},
    {NULL, 0, NULL, 0, NULL},
};

const cli_command cli_repo_commands[] = {
    {"repo", "snapshots", NULL, 0, 0, snapshots_opts, cmd_repo_snapshots,
     "list a storage's snapshots, read from the storage now (no queue item)"},
    {"repo", "ls", "SNAPSHOT [PATH]", 1, 2, ls_opts, cmd_repo_ls,
     "list the files of a snapshot (SNAPSHOT: latest, ID, a unique prefix, or REPOSITORY/ID)"},
    {"repo", "diff", "SNAPSHOT SNAPSHOT", 2, 2, diff_opts, cmd_repo_diff,
     "what changed from the first snapshot to the second (+ - M T U, as restic diff)"},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL},
};
