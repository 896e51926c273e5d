/*
 * The host configuration: one table (config_keys) says every key, its type, default and
 * meaning; loading, validation and docs/configuration.md all come from it.
 */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "util.h"

enum key_type { KEY_STRING, KEY_INT, KEY_FLOAT, KEY_PATH, KEY_BOOL };

struct config_key {
    const char *path; /* "store.driver" */
    enum key_type type;
    size_t offset; /* into ferry_config */
    const char *default_value;
    int min, max; /* for KEY_INT */
    const char *doc;
};

#define OFF(m) offsetof(ferry_config, m)

static const struct config_key config_keys[] = {
    {"bridge", KEY_STRING, OFF(bridge), "local", 0, 0,
     "Name of the bridge this host serves: it runs the queue items addressed to it."},
    {"log_level", KEY_STRING, OFF(log_level), "info", 0, 0,
     "Least severe host log level printed on stderr: debug, info, warn or error."},
    {"log_format", KEY_STRING, OFF(log_format), "text", 0, 0,
     "Host log lines on stderr: \"text\" (\"TIME ferry[PID] LEVEL message\") or \"json\" (one "
     "object per line: time, level, pid, message, and for a finished attempt taskId, "
     "function, machine, outcome, attempt, durationMs, reason), for log shippers. Under "
     "systemd (JOURNAL_STREAM or NOTIFY_SOCKET set) either starts with the journald "
     "priority, e.g. <6> for info."},
    {"store.driver", KEY_STRING, OFF(store_driver), "sqlite", 0, 0,
     "Store engine: \"sqlite\" (embedded, one machine) or \"postgres\" (many bridges)."},
    {"store.path", KEY_PATH, OFF(store_path), "var/ferry.db", 0, 0,
     "SQLite database file (created with its directory when missing)."},
    {"store.conninfo", KEY_STRING, OFF(store_conninfo), "", 0, 0,
     "PostgreSQL connection string or postgres:// URL (driver \"postgres\")."},
    {"store.key", KEY_PATH, OFF(store_key), "", 0, 0,
     "File of the key that seals the store's secrets (created 0400 with a new store); empty: "
     "ferry.key next to an SQLite store, or next to this file for PostgreSQL. "
     "$CREDENTIALS_DIRECTORY/ferry.key (a systemd credential) wins when present."},
    {"store.synchronous", KEY_STRING, OFF(store_synchronous), "full", 0, 0,
     "SQLite durability: \"full\" (every commit survives power loss) or \"normal\"."},
    {"plugins.dir", KEY_PATH, OFF(plugin_dir), "build/plugins", 0, 0,
     "Directory scanned for plugin .so files; watched for drop-ins."},
    {"workers.count", KEY_INT, OFF(workers), "4", 1, 1024,
     "Attempts that may run at once (one worker process each)."},
    {"workers.prefork", KEY_INT, OFF(prefork), "2", 0, 1024,
     "Idle worker processes kept started ahead of need."},
    {"workers.pipeline", KEY_INT, OFF(worker_pipeline), "0", 0, 256,
     "Attempts each worker may hold queued behind the one it runs, sent ahead so that short "
     "items run back to back (for many short items). 0 queues none: an item waits in the "
     "store, where any free worker of any host of the bridge takes it. With N > 0 an item "
     "may wait behind a long attempt of its worker while another worker or host is idle; "
     "while another host of the bridge waits for work (it has idle workers and every ready "
     "item's machine is held), a host keeps to its fair share of the bridge's work (its "
     "active items and its machines with a free slot and a ready item), so every host gets "
     "work."},
    {"workers.max_jobs", KEY_INT, OFF(worker_max_jobs), "1000", 1, INT_MAX,
     "A worker process is replaced after this many attempts (bounds leaks in plugins)."},
    {"workers.memory_limit_mb", KEY_INT, OFF(worker_memory_mb), "0", 0, INT_MAX,
     "Address-space limit of each worker in MiB; 0 means none."},
    /* Hardening (issue 17): the workers' environment and limits. */
    {"workers.path", KEY_STRING, OFF(worker_path),
     "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 0, 0,
     "PATH of the workers' environment, and so of every command a function runs. Workers "
     "get an allowlisted environment, never the host's (docs/operations.md)."},
    {"workers.pass_env", KEY_STRING, OFF(worker_pass_env), "", 0, 0,
     "Names of further host environment variables the workers (and their commands) get, "
     "separated by spaces, e.g. \"APT_CONFIG http_proxy\". Empty: only the allowlist."},
    {"workers.run_as", KEY_STRING, OFF(worker_run_as), "", 0, 0,
     "Users functions run as, \"FUNCTION=USER ...\" (e.g. \"os_update=root\"); wins over a "
     "machine's run_as. Another user than the host's needs ferry-priv, whose own policy "
     "decides (docs/security.md, \"Least privilege\")."},
    {"workers.priv_socket", KEY_STRING, OFF(priv_socket), "/run/ferry-priv.sock", 0, 0,
     "Socket of ferry-priv, the privileged helper that starts workers as another user."},
    {"ssh.allow_command_options", KEY_BOOL, OFF(ssh_allow_command_options), "false", 0, 0,
     "Lets machines' ssh_options run commands or load code on the bridge (ProxyCommand, "
     "LocalCommand, KnownHostsCommand, Match, Include, PKCS11Provider, ...); refused when "
     "false (docs/machines.md)."},
    {"limits.memory_mb", KEY_INT, OFF(limits.memory_mb), "2048", 0, INT_MAX,
     "Resident memory an attempt's processes may use together, in MiB; over it the attempt "
     "FAILS with \"memory limit N MiB exceeded\". 0: none. Per function: limits.functions "
     "(docs/operations.md, \"Limits\")."},
    {"limits.cpu_seconds", KEY_INT, OFF(limits.cpu_seconds), "3600", 0, INT_MAX,
     "CPU time an attempt's processes may use together, in seconds; 0: none."},
    {"limits.processes", KEY_INT, OFF(limits.processes), "512", 0, 8191,
     "Processes an attempt may have at once (its worker included); 0: none."},
    {"timeouts.default", KEY_INT, OFF(timeout_default), "3600", 1, INT_MAX,
     "Seconds an attempt may run when neither the vault nor the function sets a timeout."},
    {"timeouts.max", KEY_INT, OFF(timeout_max), "86400", 1, INT_MAX,
     "Longest timeout a vault may ask for, in seconds."},
    {"timeouts.grace", KEY_INT, OFF(grace_seconds), "10", 0, 3600,
     "Seconds between SIGTERM and SIGKILL for a timed-out or cancelled attempt, and for "
     "running attempts at shutdown."},
    {"retry.max_retries", KEY_INT, OFF(retry_max), "0", 0, 100,
     "Retries when the vault gives no max_retries."},
    {"retry.delay", KEY_INT, OFF(retry_delay), "5", 0, INT_MAX,
     "Seconds before the first retry when the vault gives no retry_delay."},
    {"retry.backoff", KEY_FLOAT, OFF(retry_backoff), "2.0", 0, 0,
     "Each further retry waits this many times longer (1.0: a constant delay)."},
    {"retry.max_delay", KEY_INT, OFF(retry_max_delay), "3600", 0, INT_MAX,
     "Upper bound of a retry delay, in seconds."},
    {"retry.jitter", KEY_FLOAT, OFF(retry_jitter), "0.2", 0, 0,
     "Fraction (0 to 1) of each delay that is randomised, so failures do not retry in waves."},
    {"lease.seconds", KEY_INT, OFF(lease_seconds), "30", 2, 86400,
     "How long a claim holds without a heartbeat; a lost host's items are recovered after it."},
    {"lease.poll_ms", KEY_INT, OFF(poll_ms), "1000", 10, 600000,
     "Safety-net poll interval; new items normally wake the host at once."},
    {"smtp.url", KEY_STRING, OFF(smtp_url), "", 0, 0,
     "Mail server for email notifications, e.g. \"smtp://127.0.0.1:25\"; empty disables email."},
    {"smtp.from", KEY_STRING, OFF(smtp_from), "ferry@localhost", 0, 0,
     "Sender address of notification mail."},
    {"smtp.username", KEY_STRING, OFF(smtp_username), "", 0, 0, "SMTP login, if the server needs one."},
    {"smtp.password", KEY_STRING, OFF(smtp_password), "", 0, 0, "SMTP password (never logged)."},
    /* Notifications hardening (issue 17, point 4): webhook signatures, private addresses,
     * SMTP TLS. */
    {"notify.allow_link_local_urls", KEY_BOOL, OFF(notify_allow_link_local), "false", 0, 0,
     "Lets notification URLs reach link-local and cloud metadata addresses (169.254.0.0/16, "
     "fe80::/10, 100.100.100.200, fd00:ec2::254); refused when false. Loopback is allowed."},
    {"smtp.tls", KEY_STRING, OFF(smtp_tls), "auto", 0, 0,
     "TLS to the mail server: \"auto\" requires it (smtps:// or STARTTLS) with a login "
     "(smtp.username or smtp.password); \"required\" always; \"none\" never asks for it."},
    {"notify.webhook_secret", KEY_STRING, OFF(notify_webhook_secret), "", 0, 0,
     "Key that signs every webhook POST (X-Ferry-Signature, HMAC-SHA256) when the item gives "
     "no webhook_secret of its own; empty: unsigned (docs/guide.md, \"Notifications\")."},
    {"vault.max_bytes", KEY_INT, OFF(vault_max_bytes), "1048576", 1024, INT_MAX,
     "Largest vault accepted, in bytes."},
    {"web.listen", KEY_STRING, OFF(web_listen), "127.0.0.1:8642", 0, 0,
     "Address and port `ferry web` listens on (ADDR:PORT; [ADDR]:PORT for IPv6); "
     "`ferry web --listen` overrides it."},
    {"web.tls_cert", KEY_PATH, OFF(web_tls_cert), "", 0, 0,
     "PEM certificate (chain) for HTTPS; with web.tls_key, `ferry web` serves TLS only."},
    {"web.tls_key", KEY_PATH, OFF(web_tls_key), "", 0, 0,
     "PEM private key of web.tls_cert (keep it readable by ferry's user only)."},
    {"web.max_body_bytes", KEY_INT, OFF(web_max_body), "4194304", 1024, INT_MAX,
     "Largest request body `ferry web` reads; a longer one is answered 413."},
    {"web.max_header_bytes", KEY_INT, OFF(web_max_header), "16384", 2048, 1048576,
     "Room for a request's line and headers; a request that needs more is refused."},
    {"web.rate_limit", KEY_INT, OFF(web_rate_limit), "600", 1, INT_MAX,
     "Requests one token (or, without one, one client address) may make per minute; "
     "more are answered 429."},
    {"web.timeout", KEY_INT, OFF(web_timeout), "30", 1, 3600,
     "Seconds a connection may stay idle or send its request slowly before it is closed."},
    {"web.max_connections", KEY_INT, OFF(web_max_connections), "64", 1, 10000,
     "Connections `ferry web` serves at once (each has a thread); more are refused."},
    {"web.store_handles", KEY_INT, OFF(web_store_handles), "8", 1, 256,
     "Store connections `ferry web` keeps open; a request waits for a free one."},
    {"people.command_role", KEY_STRING, OFF(people_command_role), "operator", 0, 0,
     "Role an API token needs to create or retry an item that runs commands its vault gives "
     "(functions flagged runs_commands: script, run_tests, conditional; or a vault with "
     "pre_hook or post_hook): \"operator\" (as every item) or \"admin\" (docs/people.md)."},
    {"history.keep_days", KEY_INT, OFF(history_keep_days), "0", 0, 36500,
     "Days an ended item (COMPLETED, FAILED, CANCELLED) is kept, with its events; once a day "
     "one host of the store removes older ones in batches of 500, keeping any that a "
     "waiting or running item still needs. 0: kept for ever (prune by hand with `ferry "
     "queue prune`; docs/operations.md, \"History\")."},
};

#define N_KEYS (sizeof(config_keys) / sizeof(config_keys[0]))

/*
 * Keys that were documented, or that an operator may expect, but that nothing reads yet:
 * refused with the reason rather than accepted and ignored, so that a setting never seems
 * to take effect when it does not.
 */
static const struct {
    const char *path;
    const char *why;
} reserved_keys[] = {
    {"http.listen", "the web listener is web.listen (ferry web)"},
};

#define N_RESERVED (sizeof(reserved_keys) / sizeof(reserved_keys[0]))

/* The free-form group: plugin.NAME = { ... } is each plugin's own section. */
#define PLUGIN_GROUP "plugin"

static char **str_field(ferry_config *cfg, const struct config_key *k)
{
    return (char **)((char *)cfg + k->offset);
}

static int set_default(ferry_config *cfg, const struct config_key *k)
{
    switch (k->type) {
    case KEY_STRING:
    case KEY_PATH:
        *str_field(cfg, k) = xstrdup(k->default_value);
        break;
    case KEY_INT:
        *(int *)((char *)cfg + k->offset) = atoi(k->default_value);
        break;
    case KEY_BOOL:
        *(int *)((char *)cfg + k->offset) = strcmp(k->default_value, "true") == 0;
        break;
    case KEY_FLOAT:
        *(double *)((char *)cfg + k->offset) = strtod(k->default_value, NULL);
        break;
    }
    return 0;
}

static const struct config_key *find_key(const char *path)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(config_keys[i].path, path) == 0)
            return &config_keys[i];
    return NULL;
}

/* Non-zero when some key lives under group "prefix" (e.g. "store"). */
static int is_group(const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; i < N_KEYS; i++)
        if (strncmp(config_keys[i].path, prefix, n) == 0 && config_keys[i].path[n] == '.')
            return 1;
    for (size_t i = 0; i < N_RESERVED; i++)
        if (strncmp(reserved_keys[i].path, prefix, n) == 0 && reserved_keys[i].path[n] == '.')
            return 1;
    return 0;
}

static const char *type_name(enum key_type t)
{
    switch (t) {
    case KEY_INT:
        return "an integer";
    case KEY_FLOAT:
        return "a number";
    case KEY_BOOL:
        return "true or false";
    default:
        return "a string";
    }
}

static char *resolve_path(const char *base_dir, const char *value)
{
    if (value[0] == '/' || base_dir == NULL || value[0] == '\0')
        return xstrdup(value);
    return xasprintf("%s/%s", base_dir, value);
}

static json_t *setting_to_json(config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        return json_integer(config_setting_get_int(s));
    case CONFIG_TYPE_INT64:
        return json_integer(config_setting_get_int64(s));
    case CONFIG_TYPE_FLOAT:
        return json_real(config_setting_get_float(s));
    case CONFIG_TYPE_BOOL:
        return json_boolean(config_setting_get_bool(s));
    case CONFIG_TYPE_STRING:
        return json_string(config_setting_get_string(s));
    case CONFIG_TYPE_GROUP: {
        json_t *o = json_object();
        for (int i = 0; i < config_setting_length(s); i++) {
            config_setting_t *c = config_setting_get_elem(s, (unsigned)i);
            json_object_set_new(o, config_setting_name(c), setting_to_json(c));
        }
        return o;
    }
    default: { /* arrays and lists */
        json_t *a = json_array();
        for (int i = 0; i < config_setting_length(s); i++)
            json_array_append_new(a, setting_to_json(config_setting_get_elem(s, (unsigned)i)));
        return a;
    }
    }
}

static int apply_setting(ferry_config *cfg, config_setting_t *s, const char *path,
                         const char *base_dir, char *err, size_t errlen)
{
    const struct config_key *k = find_key(path);
    const char *file = cfg->path;
    int line = config_setting_source_line(s);
    if (k == NULL) {
        for (size_t i = 0; i < N_RESERVED; i++)
            if (strcmp(reserved_keys[i].path, path) == 0) {
                seterr(err, errlen, "%s:%d: %s does nothing: %s; remove it", file, line, path,
                       reserved_keys[i].why);
                return -1;
            }
        seterr(err, errlen, "%s:%d: unknown key '%s'; see docs/configuration.md for the keys",
               file, line, path);
        return -1;
    }
    int t = config_setting_type(s);
    switch (k->type) {
    case KEY_STRING:
    case KEY_PATH:
        if (t != CONFIG_TYPE_STRING)
            goto wrong_type;
        free(*str_field(cfg, k));
        *str_field(cfg, k) = k->type == KEY_PATH
                                 ? resolve_path(base_dir, config_setting_get_string(s))
                                 : xstrdup(config_setting_get_string(s));
        return 0;
    case KEY_INT: {
        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
            goto wrong_type;
        long long v = config_setting_get_int64(s);
        if (t == CONFIG_TYPE_INT)
            v = config_setting_get_int(s);
        if (v < k->min || v > k->max) {
            seterr(err, errlen, "%s:%d: %s is %lld; it must be between %d and %d", file, line,
                   path, v, k->min, k->max);
            return -1;
        }
        *(int *)((char *)cfg + k->offset) = (int)v;
        return 0;
    }
    case KEY_FLOAT:
        if (t == CONFIG_TYPE_FLOAT)
            *(double *)((char *)cfg + k->offset) = config_setting_get_float(s);
        else if (t == CONFIG_TYPE_INT)
            *(double *)((char *)cfg + k->offset) = config_setting_get_int(s);
        else
            goto wrong_type;
        return 0;
    case KEY_BOOL:
        if (t != CONFIG_TYPE_BOOL)
            goto wrong_type;
        *(int *)((char *)cfg + k->offset) = config_setting_get_bool(s) != 0;
        return 0;
    }
wrong_type:
    seterr(err, errlen, "%s:%d: %s must be %s", file, line, path, type_name(k->type));
    return -1;
}

/*
 * limits.functions = { NAME = { memory_mb = ...; cpu_seconds = ...; processes = ...; }; }:
 * per-function overrides of limits.*; a field left out keeps the default (-1 here).
 */
static int fn_limits_load(ferry_config *cfg, config_setting_t *g, char *err, size_t errlen)
{
    if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
        seterr(err, errlen, "%s:%d: limits.functions must be a group: functions = { NAME = "
               "{ memory_mb = 512; }; };", cfg->path, config_setting_source_line(g));
        return -1;
    }
    static const char *const names[] = {"memory_mb", "cpu_seconds", "processes"};
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *f = config_setting_get_elem(g, (unsigned)i);
        const char *fn = config_setting_name(f);
        if (config_setting_type(f) != CONFIG_TYPE_GROUP) {
            seterr(err, errlen, "%s:%d: limits.functions.%s must be a group", cfg->path,
                   config_setting_source_line(f), fn);
            return -1;
        }
        struct ferry_limits l = {.function = NULL, .memory_mb = -1, .cpu_seconds = -1,
                                 .processes = -1};
        int *slot[] = {&l.memory_mb, &l.cpu_seconds, &l.processes};
        for (int j = 0; j < config_setting_length(f); j++) {
            config_setting_t *v = config_setting_get_elem(f, (unsigned)j);
            const char *key = config_setting_name(v);
            int k = 0;
            while (k < 3 && strcmp(key, names[k]) != 0)
                k++;
            if (k == 3) {
                seterr(err, errlen, "%s:%d: unknown key 'limits.functions.%s.%s'; it may hold "
                       "memory_mb, cpu_seconds and processes", cfg->path,
                       config_setting_source_line(v), fn, key);
                return -1;
            }
            int val = config_setting_get_int(v);
            if (config_setting_type(v) != CONFIG_TYPE_INT || val < 0 ||
                (k == 2 && val > 8191)) {
                seterr(err, errlen, "%s:%d: limits.functions.%s.%s must be an integer from 0%s",
                       cfg->path, config_setting_source_line(v), fn, key,
                       k == 2 ? " to 8191" : "");
                return -1;
            }
            *slot[k] = val;
        }
        l.function = xstrdup(fn);
        cfg->fn_limits = realloc(cfg->fn_limits, (cfg->n_fn_limits + 1) * sizeof(l));
        cfg->fn_limits[cfg->n_fn_limits++] = l;
    }
    return 0;
}

static int walk(ferry_config *cfg, config_setting_t *group, const char *prefix,
                const char *base_dir, char *err, size_t errlen)
{
    for (int i = 0; i < config_setting_length(group); i++) {
        config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(s);
        char path[256];
        snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "", name);
        int rc;
        if (prefix[0] == '\0' && strcmp(name, PLUGIN_GROUP) == 0) {
            if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
                seterr(err, errlen, "%s:%d: plugin must be a group: plugin = { NAME = { ... }; };",
                       cfg->path, config_setting_source_line(s));
                return -1;
            }
            json_decref(cfg->plugin_sections);
            cfg->plugin_sections = setting_to_json(s);
            continue;
        }
        if (strcmp(path, "limits.functions") == 0) {
            if (fn_limits_load(cfg, s, err, errlen) != 0)
                return -1;
            continue;
        }
        if (config_setting_type(s) == CONFIG_TYPE_GROUP && is_group(path))
            rc = walk(cfg, s, path, base_dir, err, errlen);
        else
            rc = apply_setting(cfg, s, path, base_dir, err, errlen);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/*
 * The files looked for when neither --config nor $FERRY_CONFIG names one, in order:
 * the configuration `make install` wrote beside the running binary (PREFIX/bin/ferry reads
 * PREFIX/etc/ferry/ferry.conf), /etc/ferry/ferry.conf, and conf/ferry.conf of the current
 * directory (a source checkout). Fills places[] (each at most PATH_MAX bytes) and returns
 * how many there are.
 */
#define N_PLACES 3
static size_t config_places(char places[N_PLACES][PATH_MAX])
{
    size_t n = 0;
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0'; /* exe: PREFIX/bin */
            slash = strrchr(exe, '/');
            /* Only an installed layout; /usr/bin/ferry's config is /etc/ferry, listed next. */
            if (slash != NULL && strcmp(slash + 1, "bin") == 0 && strcmp(exe, "/usr/bin") != 0 &&
                strcmp(exe, "/bin") != 0) {
                *slash = '\0';
                if ((size_t)snprintf(places[n], PATH_MAX, "%s/etc/ferry/ferry.conf", exe) <
                    PATH_MAX)
                    n++;
            }
        }
    }
    snprintf(places[n++], PATH_MAX, "/etc/ferry/ferry.conf");
    snprintf(places[n++], PATH_MAX, "conf/ferry.conf");
    return n;
}

/* Picks the file to read into path (PATH_MAX bytes). Returns 0, or -1 with err listing
 * every place looked at when there is none. */
static int pick_path(const char *explicit_path, char *path, char *err, size_t errlen)
{
    if (explicit_path != NULL) {
        snprintf(path, PATH_MAX, "%s", explicit_path);
        return 0;
    }
    const char *env = getenv("FERRY_CONFIG");
    if (env != NULL && env[0] != '\0') {
        snprintf(path, PATH_MAX, "%s", env);
        return 0;
    }
    char places[N_PLACES][PATH_MAX];
    size_t n = config_places(places);
    for (size_t i = 0; i < n; i++)
        if (access(places[i], F_OK) == 0) {
            memcpy(path, places[i], PATH_MAX);
            return 0;
        }
    char looked[4 * PATH_MAX + 64] = "", cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        snprintf(cwd, sizeof(cwd), "the current directory");
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(looked);
        snprintf(looked + used, sizeof(looked) - used, "%s%s%s%s%s", i ? ", " : "", places[i],
                 places[i][0] == '/' ? "" : " (in ", places[i][0] == '/' ? "" : cwd,
                 places[i][0] == '/' ? "" : ")");
    }
    seterr(err, errlen,
           "no configuration found: no --config, $FERRY_CONFIG is not set, and none of %s "
           "exists; give --config FILE or set FERRY_CONFIG (conf/ferry.conf of a source "
           "checkout is a starting point)",
           looked);
    return -1;
}

static int check_values(const ferry_config *cfg, char *err, size_t errlen)
{
    const char *where = cfg->path ? cfg->path : "built-in defaults";
    const struct store_driver_entry *driver = store_driver_by_name(cfg->store_driver);
    if (driver == NULL) {
        char choices[128];
        store_driver_choices(choices, sizeof(choices));
        seterr(err, errlen, "%s: store.driver is '%s'; use %s", where, cfg->store_driver,
               choices);
        return -1;
    }
    if (strcmp(cfg->store_synchronous, "full") != 0 &&
        strcmp(cfg->store_synchronous, "normal") != 0) {
        seterr(err, errlen, "%s: store.synchronous is '%s'; use \"full\" or \"normal\"", where,
               cfg->store_synchronous);
        return -1;
    }
    if (driver->conninfo != NULL && cfg->store_conninfo[0] == '\0') {
        seterr(err, errlen, "%s: store.driver is \"%s\" but store.conninfo is empty", where,
               cfg->store_driver);
        return -1;
    }
    if (strcmp(cfg->smtp_tls, "auto") != 0 && strcmp(cfg->smtp_tls, "required") != 0 &&
        strcmp(cfg->smtp_tls, "none") != 0) {
        seterr(err, errlen, "%s: smtp.tls is '%s'; use \"auto\", \"required\" or \"none\"",
               where, cfg->smtp_tls);
        return -1;
    }
    if (strcmp(cfg->people_command_role, "operator") != 0 &&
        strcmp(cfg->people_command_role, "admin") != 0) {
        seterr(err, errlen, "%s: people.command_role is '%s'; use \"operator\" or \"admin\"",
               where, cfg->people_command_role);
        return -1;
    }
    if (cfg->retry_jitter < 0 || cfg->retry_jitter > 1 || cfg->retry_backoff < 1) {
        seterr(err, errlen, "%s: retry.jitter must be 0 to 1 and retry.backoff at least 1.0",
               where);
        return -1;
    }
    if (cfg->timeout_default > cfg->timeout_max) {
        seterr(err, errlen, "%s: timeouts.default (%d) is above timeouts.max (%d)", where,
               cfg->timeout_default, cfg->timeout_max);
        return -1;
    }
    if (strcmp(cfg->log_format, "text") != 0 && strcmp(cfg->log_format, "json") != 0) {
        seterr(err, errlen, "%s: log_format is '%s'; use text or json", where, cfg->log_format);
        return -1;
    }
    const char *levels[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < 4; i++)
        if (strcmp(cfg->log_level, levels[i]) == 0)
            return 0;
    seterr(err, errlen, "%s: log_level is '%s'; use debug, info, warn or error", where,
           cfg->log_level);
    return -1;
}

int config_load(const char *explicit_path, ferry_config *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_KEYS; i++)
        set_default(cfg, &config_keys[i]);
    cfg->plugin_sections = json_object();

    char path[PATH_MAX];
    if (pick_path(explicit_path, path, err, errlen) != 0) {
        config_free(cfg);
        return CONFIG_NOT_FOUND;
    }
    cfg->path = xstrdup(path);

    int rc = -1;
    config_t lc;
    config_init(&lc);
    char *dir = NULL;
    if (access(path, R_OK) != 0) {
        seterr(err, errlen, "cannot read config %s: %s", path, strerror(errno));
        goto out;
    }
    if (config_read_file(&lc, path) != CONFIG_TRUE) {
        seterr(err, errlen, "%s:%d: %s", path, config_error_line(&lc), config_error_text(&lc));
        goto out;
    }
    dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        free(dir);
        dir = NULL;
    } else {
        *slash = '\0';
        if (dir[0] == '\0')
            strcpy(dir, "/");
    }
    if (walk(cfg, config_root_setting(&lc), "", dir, err, errlen) != 0)
        goto out;
    rc = check_values(cfg, err, errlen);
out:
    free(dir);
    config_destroy(&lc);
    if (rc != 0)
        config_free(cfg); /* the callee cleans up after its own failure */
    return rc;
}

void config_free(ferry_config *cfg)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (config_keys[i].type == KEY_STRING || config_keys[i].type == KEY_PATH)
            free(*str_field(cfg, &config_keys[i]));
    free(cfg->path);
    json_decref(cfg->plugin_sections);
    for (size_t i = 0; i < cfg->n_fn_limits; i++)
        free(cfg->fn_limits[i].function);
    free(cfg->fn_limits);
    memset(cfg, 0, sizeof(*cfg));
}

json_t *config_plugin_section(const ferry_config *cfg, const char *plugin)
{
    json_t *s = cfg->plugin_sections ? json_object_get(cfg->plugin_sections, plugin) : NULL;
    return json_is_object(s) ? json_deep_copy(s) : json_object();
}

int config_key_doc(size_t i, struct config_key_doc *out)
{
    if (i >= N_KEYS)
        return -1;
    const struct config_key *k = &config_keys[i];
    out->path = k->path;
    out->type = k->type == KEY_INT     ? "integer"
                : k->type == KEY_FLOAT ? "number"
                : k->type == KEY_PATH  ? "path"
                : k->type == KEY_BOOL  ? "boolean"
                                       : "string";
    out->default_value = k->default_value;
    out->doc = k->doc;
    out->quoted = k->type == KEY_STRING || k->type == KEY_PATH;
    return 0;
}

void config_write_reference(FILE *out)
{
    fputs("# Configuration reference\n\n"
          "<!-- Generated by `make docs` from host/base/config.c; do not edit by hand. -->\n\n"
          "ferry reads one [libconfig](https://hyperrealm.github.io/libconfig/) file: "
          "`--config FILE`, else `$FERRY_CONFIG`, else the first that exists of "
          "`PREFIX/etc/ferry/ferry.conf` (what `make install` writes, found beside the "
          "running `PREFIX/bin/ferry`), `/etc/ferry/ferry.conf` and `conf/ferry.conf` of the "
          "current directory. When there is none, ferry stops with exit code 2 and names the "
          "places it looked (it never invents a store in the current directory). Every key "
          "is optional: the defaults are below. An unknown key or a value of the wrong type "
          "stops ferry with the file and line; so does a key ferry reserves but does not "
          "use yet (`http.listen`). Relative paths are resolved against the directory "
          "holding the file.\n\n"
          "| key | type | default | meaning |\n|---|---|---|---|\n",
          out);
    struct config_key_doc k;
    for (size_t i = 0; config_key_doc(i, &k) == 0; i++)
        fprintf(out, "| `%s` | %s | `%s%s%s` | %s |\n", k.path, k.type, k.quoted ? "\"" : "",
                k.default_value, k.quoted ? "\"" : "", k.doc);
    fputs("\n## Plugin sections\n\n"
          "`plugin = { NAME = { ... }; };` holds each plugin's own settings, free-form. The "
          "host converts a plugin's section to JSON and hands it to the plugin's `init` and "
          "to its `config` service.\n\n"
          "```\nplugin = {\n  greeter = { greeting = \"Hello\"; };\n};\n```\n\n"
          "A nested group such as `store = { driver = \"sqlite\"; path = \"var/ferry.db\"; };` "
          "is the same as the dotted keys above.\n",
          out);
}
