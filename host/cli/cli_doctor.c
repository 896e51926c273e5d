/*
 * `ferry doctor`: checks what a host needs, one line per check (ok, warn or fail, what, and
 * the fix): the configuration, the store's files and their modes, opening the store as a
 * host does (its refusals are issue 17's: a store other users may read while it holds
 * secrets, a missing or wrong key), the key file, the plugin directory (every .so probed),
 * the clocks of the hosts against the store's, with --machines each machine over SSH and
 * with --storages each storage (cli_doctor_storage.c). Exit 1 when a check failed
 * (docs/operations.md, "ferry doctor").
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attempt.h"
#include "cli.h"
#include "cli_doctor.h"
#include "exec.h"
#include "hosts.h"
#include "lazy_lib.h"
#include "registry.h"
#include "store.h"
#include "store_clock.h"
#include "util.h"

/* A clock this far from the store's is a warning, this far a failure (ms). Leases are 30 s
 * by default; a retry delay or a schedule's fire is due by these clocks too. */
#define SKEW_WARN_MS 2000
#define SKEW_FAIL_MS 10000
/* Hosts whose last heartbeat is older than this are not compared (gone for good). */
#define HOST_RECENT_MS 600000
/* The SSH check's connect timeout, unless the machine's vault sets a shorter one (s). */
#define SSH_CONNECT_TIMEOUT 5

void doctor_report(struct doctor *d, enum doctor_status status, const char *check, const char *fix,
                   const char *fmt, ...)
{
    static const char *const names[] = {"ok", "warn", "fail"};
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++) /* one line per check */
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    d->count[status]++;
    json_array_append_new(d->checks, json_pack("{s:s,s:s,s:s,s:s?}", "check", check, "status",
                                               names[status], "message", msg, "fix", fix));
    if (!d->c->json) {
        printf("%-4s  %s: %s%s%s\n", names[status], check, msg, fix ? "; fix: " : "",
               fix ? fix : "");
        fflush(stdout);
    }
}

/* --- the configuration and the store's files ------------------------------------------ */

static int check_config(struct doctor *d)
{
    cli *c = d->c;
    char err[4096];
    if (config_load(c->config_path, &c->cfg, err, sizeof(err)) != 0) {
        doctor_report(d, DOCTOR_FAIL, "config",
                      "edit the line it names (docs/configuration.md "
                      "lists every key)",
                      "%s", err);
        return -1;
    }
    c->cfg_loaded = 1;
    doctor_report(d, DOCTOR_OK, "config", NULL, "%s parses; every key is known", c->cfg.path);
    return 0;
}

/* The SQLite store's directory and files: 0700 and 0600 (issue 17). 0, or -1 when the store
 * does not exist yet (opening it would make one). */
static int check_store_files(struct doctor *d)
{
    const char *path = d->c->cfg.store_path;
    char *copy = xstrdup(path), *dir = dirname(copy);
    struct stat st;
    int rc = 0;
    if (stat(path, &st) != 0) {
        doctor_report(d, DOCTOR_FAIL, "store", "ferry init (or check store.path)",
                      "%s does not exist: %s", path, strerror(errno));
        rc = -1;
        goto out;
    }
    if (stat(dir, &st) == 0 && (st.st_mode & 077)) {
        char fix[PATH_MAX + 16];
        snprintf(fix, sizeof(fix), "chmod 700 %s", dir);
        doctor_report(d, DOCTOR_WARN, "store directory", fix,
                      "%s is mode %04o: other users may list it", dir,
                      (unsigned)(st.st_mode & 07777));
    }
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    char loose[3 * (PATH_MAX + 1)] = "";
    unsigned mode = 0;
    for (size_t i = 0; i < 3; i++) {
        char *f = xasprintf("%s%s", path, suffixes[i]);
        if (stat(f, &st) == 0 && (st.st_mode & 077)) {
            if (loose[0] == '\0')
                mode = (unsigned)(st.st_mode & 07777);
            size_t used = strlen(loose);
            snprintf(loose + used, sizeof(loose) - used, " %s", f);
        }
        free(f);
    }
    if (loose[0] != '\0') {
        char fix[sizeof(loose) + 16];
        snprintf(fix, sizeof(fix), "chmod 600%s", loose);
        doctor_report(d, DOCTOR_FAIL, "store files", fix,
                      "%s is mode %04o: other users may read the store (a host refuses to start "
                      "on such a store once it holds secrets)",
                      loose + 1, mode);
    } else {
        doctor_report(d, DOCTOR_OK, "store files", NULL, "%s and its -wal/-shm: mode 0600", path);
    }
out:
    free(copy);
    return rc;
}

/* Opens the store as a host does (its refusals are the host's), else as the command line
 * does, for the checks that only read. */
static void check_store_open(struct doctor *d)
{
    cli *c = d->c;
    char err[1024];
    if (strcmp(c->cfg.store_driver, "postgres") == 0 &&
        lazy_lib_load(&lazy_pq_lib, err, sizeof(err)) != 0) {
        doctor_report(d, DOCTOR_FAIL, "store", "install the Debian package libpq5",
                      "the store is PostgreSQL, but %s", err);
        return;
    }
    c->st = store_open_config(&c->cfg, err, sizeof(err));
    if (c->st != NULL) {
        doctor_report(d, DOCTOR_OK, "store", NULL, "%s (%s) opens as a host opens it",
                      store_config_target(&c->cfg), store_driver_name(c->st));
        return;
    }
    doctor_report(d, DOCTOR_FAIL, "store", NULL, "a host would not start: %s", err);
    c->st = store_open_config_short(&c->cfg, err, sizeof(err));
}

static void check_key(struct doctor *d)
{
    const char *path = store_key_path(d->c->st);
    struct stat st;
    if (path == NULL) {
        doctor_report(d, DOCTOR_WARN, "key", "set store.key to a key file (docs/security.md)",
                      "no key file: secrets cannot be sealed or opened");
        return;
    }
    char fix[PATH_MAX + 64];
    if (stat(path, &st) != 0) {
        doctor_report(d, DOCTOR_FAIL, "key",
                      "restore it from its backup (docs/operations.md, \"Secrets and the key\")",
                      "%s: %s: without it the store's sealed secrets do not open", path,
                      strerror(errno));
    } else if (st.st_mode & 077) {
        snprintf(fix, sizeof(fix), "chmod 400 %s", path);
        doctor_report(d, DOCTOR_FAIL, "key", fix, "%s is mode %04o: other users may read it", path,
                      (unsigned)(st.st_mode & 07777));
    } else if (st.st_uid != geteuid()) {
        doctor_report(d, DOCTOR_WARN, "key", "chown it to the user ferry runs as",
                      "%s belongs to uid %u, not to this user (%u)", path, (unsigned)st.st_uid,
                      (unsigned)geteuid());
    } else {
        doctor_report(d, DOCTOR_OK, "key", NULL, "%s (mode %04o)", path,
                      (unsigned)(st.st_mode & 07777));
    }
}

/* --- plugins ---------------------------------------------------------------------------- */

static void check_plugins(struct doctor *d)
{
    cli *c = d->c;
    const char *dir = c->cfg.plugin_dir;
    struct stat st;
    char fix[PATH_MAX + 64];
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        doctor_report(d, DOCTOR_FAIL, "plugins", "create it, or set plugins.dir",
                      "%s is not a directory", dir);
        return;
    }
    if (st.st_mode & 002) {
        snprintf(fix, sizeof(fix), "chmod o-w %s", dir);
        doctor_report(d, DOCTOR_FAIL, "plugins", fix,
                      "%s is world-writable: the host refuses every plugin in it", dir);
        return;
    }
    if (cli_registry(c) != 0) {
        d->count[DOCTOR_FAIL]++;
        return;
    }
    for (size_t i = 0; i < c->reg->n_plugins; i++) {
        const registry_plugin *p = &c->reg->plugins[i];
        if (p->loaded) {
            doctor_report(d, DOCTOR_OK, "plugin", NULL, "%s: %s %s, %zu functions", p->file,
                          json_string_value(json_object_get(p->info, "name")),
                          json_string_value(json_object_get(p->info, "version")),
                          json_array_size(p->functions));
            continue;
        }
        snprintf(fix, sizeof(fix), "rebuild it against this ferry's SDK, or remove %s", p->path);
        doctor_report(d, DOCTOR_FAIL, "plugin", fix, "%s is refused: %s", p->file,
                      p->reason ? p->reason : "unknown reason");
    }
    if (c->reg->n_plugins == 0)
        doctor_report(d, DOCTOR_WARN, "plugins",
                      "install plugins (make install) or set "
                      "plugins.dir",
                      "%s holds no plugin: no function can run", dir);
}

/* --- clocks ----------------------------------------------------------------------------- */

static enum doctor_status skew_status(int64_t ms)
{
    int64_t a = ms < 0 ? -ms : ms;
    return a >= SKEW_FAIL_MS ? DOCTOR_FAIL : a >= SKEW_WARN_MS ? DOCTOR_WARN : DOCTOR_OK;
}

#define CLOCK_FIX "sync its clock (timedatectl set-ntp true, or chrony)"

static void check_clocks(struct doctor *d)
{
    cli *c = d->c;
    char err[1024];
    int64_t store_now = 0;
    if (store_clock_ms(c->st, &store_now, err, sizeof(err)) != STORE_OK) {
        doctor_report(d, DOCTOR_FAIL, "clock", NULL, "cannot read the store's clock: %s", err);
        return;
    }
    if (strcmp(store_driver_name(c->st), "sqlite") != 0) {
        int64_t mine = now_ms() - store_now;
        enum doctor_status st = skew_status(mine);
        doctor_report(d, st, "clock", st ? CLOCK_FIX : NULL,
                      "this machine's clock is %+.1f s from the database server's", mine / 1000.0);
    }
    json_t *hosts = NULL;
    if (store_hosts_list(c->st, store_now, &hosts, err, sizeof(err)) != STORE_OK) {
        doctor_report(d, DOCTOR_FAIL, "clock", NULL, "cannot read the hosts: %s", err);
        return;
    }
    size_t i, compared = 0;
    json_t *h;
    json_array_foreach (hosts, i, h) {
        /* lastSeenAgeSeconds is by the store's clock here: negative when the host's is
         * ahead. A host writes its heartbeat every 5 s. */
        json_int_t age = json_integer_value(json_object_get(h, "lastSeenAgeSeconds"));
        if (!json_is_null(json_object_get(h, "stoppedTime")) || age * 1000 > HOST_RECENT_MS)
            continue;
        compared++;
        const char *id = json_string_value(json_object_get(h, "hostId"));
        const char *bridge = json_string_value(json_object_get(h, "bridgeName"));
        if (age < 0) {
            enum doctor_status st = skew_status(age * 1000);
            doctor_report(d, st ? st : DOCTOR_OK, "clock", st ? CLOCK_FIX : NULL,
                          "host %s (bridge %s): its clock is %lld s ahead of the store's", id,
                          bridge, (long long)-age);
        } else if (age > 15) {
            doctor_report(d, DOCTOR_WARN, "clock",
                          "see whether it runs (systemctl status ferry) and check its clock",
                          "host %s (bridge %s): last heartbeat %lld s ago by the store's clock, "
                          "not stopped: it hangs or died, or its clock is behind",
                          id, bridge, (long long)age);
        } else {
            doctor_report(d, DOCTOR_OK, "clock", NULL,
                          "host %s (bridge %s): heartbeat %lld s ago by the store's clock", id,
                          bridge, (long long)age);
        }
    }
    if (compared == 0)
        doctor_report(d, DOCTOR_OK, "clock", NULL,
                      "no host has a heartbeat in the last 10 minutes to compare");
    json_decref(hosts);
}

/* --- machines over SSH ------------------------------------------------------------------ */

/* FERRY_KNOWN_HOSTS for the SSH checks: the file the hosts keep beside the store (serve.c),
 * when it exists; otherwise host keys are accepted for this check alone. */
static void use_known_hosts(const ferry_config *cfg)
{
    char *copy = xstrdup(cfg->store_path), dir[PATH_MAX];
    if (realpath(dirname(copy), dir) != NULL) {
        char *kh = xasprintf("%s/known_hosts", dir);
        if (access(kh, F_OK) == 0)
            setenv("FERRY_KNOWN_HOSTS", kh, 1);
        free(kh);
    }
    free(copy);
}

static void check_machine(struct doctor *d, const json_t *row, json_t **team_row)
{
    cli *c = d->c;
    const char *team = json_string_value(json_object_get(row, "teamName"));
    const char *name = json_string_value(json_object_get(row, "machineName"));
    char what[300], err[1024];
    snprintf(what, sizeof(what), "machine %s/%s", team, name);
    json_t *key = NULL;
    json_t *m = attempt_machine_row(c->st, team, name, row, team_row, &key);
    if (json_is_true(json_object_get(m, "local"))) {
        doctor_report(d, DOCTOR_OK, what, NULL, "this machine (no SSH)");
        goto out;
    }
    json_int_t t = json_integer_value(json_object_get(m, "connect_timeout"));
    if (t <= 0 || t > SSH_CONNECT_TIMEOUT)
        json_object_set_new(m, "connect_timeout", json_integer(SSH_CONNECT_TIMEOUT));
    json_t *opts = json_pack("{s:i}", "timeout", SSH_CONNECT_TIMEOUT * 3);
    exec_hooks hooks = {.ssh_key = key ? json_string_value(key) : NULL};
    int64_t start = mono_ms();
    json_t *res = exec_on_machine(m, "true", opts, &hooks, err, sizeof(err));
    exec_ssh_end_attempt();
    json_decref(opts);
    const char *fix = "check its address and port, that sshd runs there and takes the key "
                      "(ferry update machine-vault), and ferry's known_hosts beside the store";
    if (res == NULL)
        doctor_report(d, DOCTOR_FAIL, what, fix, "%s", err);
    else if (json_integer_value(json_object_get(res, "exit_code")) != 0)
        doctor_report(d, DOCTOR_FAIL, what, fix, "`true` over SSH exited %lld: %.200s",
                      (long long)json_integer_value(json_object_get(res, "exit_code")),
                      json_string_value(json_object_get(res, "output")));
    else
        doctor_report(d, DOCTOR_OK, what, NULL, "reachable over SSH (%lld ms)",
                      (long long)(mono_ms() - start));
    json_decref(res);
out:
    json_decref(key);
    json_decref(m);
}

static void check_machines(struct doctor *d)
{
    cli *c = d->c;
    json_t *rows = NULL, *team_row = NULL;
    char err[1024];
    if (store_resource_list(c->st, STORE_MACHINE, NULL, &rows, err, sizeof(err)) != STORE_OK) {
        doctor_report(d, DOCTOR_FAIL, "machines", NULL, "cannot list them: %s", err);
        return;
    }
    use_known_hosts(&c->cfg);
    const char *last_team = "";
    size_t i;
    json_t *row;
    json_array_foreach (rows, i, row) {
        const char *team = json_string_value(json_object_get(row, "teamName"));
        if (team == NULL || strcmp(team, last_team) != 0) { /* the list is by team */
            json_decref(team_row);
            team_row = NULL;
            last_team = team ? team : "";
        }
        check_machine(d, row, &team_row);
    }
    if (json_array_size(rows) == 0)
        doctor_report(d, DOCTOR_OK, "machines", NULL, "none defined");
    json_decref(team_row);
    json_decref(rows);
}

/* --- the command ------------------------------------------------------------------------ */

static int cmd_doctor(cli *c)
{
    struct doctor d = {.c = c, .checks = json_array()};
    if (check_config(&d) == 0) {
        int exists = 1;
        if (strcmp(c->cfg.store_driver, "sqlite") == 0)
            exists = check_store_files(&d) == 0;
        if (exists)
            check_store_open(&d);
        if (c->st != NULL)
            check_key(&d);
        check_plugins(&d);
        if (c->st != NULL) {
            check_clocks(&d);
            if (cli_flag(c, "machines"))
                check_machines(&d);
            if (cli_flag(c, "storages"))
                doctor_storages(&d);
        }
    }
    char msg[128];
    snprintf(msg, sizeof(msg), "%d ok, %d warnings, %d failed", d.count[DOCTOR_OK],
             d.count[DOCTOR_WARN], d.count[DOCTOR_FAIL]);
    if (c->json)
        cli_print_ok(c,
                     json_pack("{s:o,s:i,s:i,s:i}", "checks", d.checks, "ok", d.count[DOCTOR_OK],
                               "warnings", d.count[DOCTOR_WARN], "failed", d.count[DOCTOR_FAIL]),
                     msg);
    else {
        printf("%s\n", msg);
        json_decref(d.checks);
    }
    return d.count[DOCTOR_FAIL] ? EXIT_ERROR : EXIT_OK;
}

static const cli_opt doctor_opts[] = {
    {"machines", 0, NULL, 0, "also reach every machine over SSH (BatchMode, 5 s timeout)"},
    {"storages", 0, NULL, 0, "also reach every storage: list its snapshots (repo_list)"},
    {NULL, 0, NULL, 0, NULL}};

const cli_command cli_doctor_commands[] = {
    {"doctor", NULL, NULL, 0, 0, doctor_opts, cmd_doctor,
     "check the config, the store, the key, the plugins and the clocks (--machines, "
     "--storages: reach them); one line per check; exit 1 if one failed"},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL},
};
