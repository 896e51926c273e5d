/*
 * os_update: updates the machine's packages with its own package manager (apt, dnf or yum,
 * detected on the machine), by class ("security", "critical", "all") or by name, optionally
 * as a dry run, optionally rebooting afterwards. The result lists every package the update
 * changes (or would change) with its old and new version.
 */
#include <stdlib.h>
#include <string.h>

#include "pkg.h"

#define OUTPUT_IN_TRACE        3000
#define DEFAULT_REBOOT_COMMAND "shutdown -r +1 'ferry os_update: reboot after package updates'"

/* --- shared by the package managers ------------------------------------------------------ */

json_t *pkg_exec(ferry_ctx *ctx, const char *what, const char *command, int log_output)
{
    json_t *opts =
        json_pack("{s:{s:s,s:s,s:s,s:s}}", "env", "DEBIAN_FRONTEND", "noninteractive", "LC_ALL",
                  "C", "NEEDRESTART_MODE", "a", "APT_LISTCHANGES_FRONTEND", "none");
    json_t *res = ops_exec(ctx, what, command, opts);
    json_decref(opts);
    if (res && log_output) {
        json_t *tail = ops_tail(ops_output(res), OUTPUT_IN_TRACE);
        ferry_log(ctx, ops_exit_code(res) == 0 ? FERRY_LOG_INFO : FERRY_LOG_ERROR,
                  "%s exited %d:\n%s", what, ops_exit_code(res), json_string_value(tail));
        json_decref(tail);
    }
    return res;
}

ferry_result pkg_failed(ferry_ctx *ctx, const char *what, const json_t *res)
{
    const char *out = ops_output(res);
    json_t *tail = ops_tail(out, 600);
    int locked = strstr(out, "Could not get lock") != NULL ||
                 strstr(out, "Unable to acquire the dpkg") != NULL ||
                 strstr(out, "Waiting for process with pid") != NULL;
    ferry_set_error(ctx, locked ? "package_db_locked" : "package_manager_failed",
                    "%s exited %d: %s", what, ops_exit_code(res), json_string_value(tail));
    json_decref(tail);
    return locked ? FERRY_RETRY : FERRY_FAIL;
}

json_t *pkg_names(const json_t *packages)
{
    json_t *names = json_array();
    size_t i;
    json_t *e;
    json_array_foreach (packages, i, e)
        json_array_append(names, json_object_get(e, "name"));
    return names;
}

void pkg_parse_versions(const char *out, json_t *versions)
{
    for (const char *line = out; line && *line;) {
        size_t len = strcspn(line, "\n");
        const char *tab = memchr(line, '\t', len);
        if (tab) {
            char *name = strndup(line, (size_t)(tab - line));
            json_object_set_new(versions, name,
                                json_stringn(tab + 1, len - (size_t)(tab - line) - 1));
            free(name);
        }
        line += len + (line[len] == '\n');
    }
}

/* --- os_update ----------------------------------------------------------------------------- */

static int package_name_ok(const char *s)
{
    if (s[0] == '\0' || s[0] == '-' || strlen(s) > 200)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+_:-") ==
           strlen(s);
}

/* Splits "packages" (a string or an array of strings) into classes and names. */
static ferry_result read_packages(ferry_ctx *ctx, const json_t *packages, pkg_request *req)
{
    json_t *list =
        json_is_string(packages) ? json_pack("[O]", packages) : json_incref((json_t *)packages);
    size_t i;
    json_t *v;
    ferry_result code = FERRY_OK;
    json_array_foreach (list, i, v) {
        const char *s = json_string_value(v);
        if (s == NULL) {
            ferry_set_error(ctx, "bad_parameter", "packages must be strings");
            code = FERRY_INVALID;
        } else if (strcmp(s, "all") == 0) {
            req->all = 1;
        } else if (strcmp(s, "security") == 0) {
            req->security = 1;
        } else if (strcmp(s, "critical") == 0) {
            req->critical = 1;
        } else if (package_name_ok(s)) {
            json_array_append(req->names, v);
        } else {
            ferry_set_error(ctx, "bad_parameter",
                            "'%s' is neither a class (security, critical, all) nor a package "
                            "name",
                            s);
            code = FERRY_INVALID;
        }
    }
    json_decref(list);
    if (code == FERRY_OK && !req->all && !req->security && !req->critical &&
        json_array_size(req->names) == 0) {
        ferry_set_error(ctx, "bad_parameter",
                        "packages is empty: name classes (security, critical, all) or packages");
        code = FERRY_INVALID;
    }
    return code;
}

/* Finds the package manager and whether sudo is needed (and works without a password). */
static ferry_result detect(ferry_ctx *ctx, const char *wanted, const pkg_manager **pm, int *root,
                           int *sudo)
{
    json_t *res = ops_exec(ctx, "detect package manager",
                           "if command -v apt-get >/dev/null 2>&1; then m=apt; "
                           "elif command -v dnf >/dev/null 2>&1; then m=dnf; "
                           "elif command -v yum >/dev/null 2>&1; then m=yum; else m=none; fi; "
                           "s=0; [ \"$(id -u)\" = 0 ] || { sudo -n true >/dev/null 2>&1 && s=1; }; "
                           "echo \"$m $(id -u) $s\"",
                           NULL);
    if (res == NULL)
        return FERRY_RETRY;
    char found[16] = "none";
    int uid = -1;
    *sudo = 0;
    sscanf(ops_output(res), "%15s %d %d", found, &uid, sudo);
    json_decref(res);
    const char *name = strcmp(wanted, "auto") == 0 ? found : wanted;
    const pkg_manager *all[] = {&pkg_apt, &pkg_dnf, &pkg_yum};
    *pm = NULL;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (strcmp(all[i]->name, name) == 0)
            *pm = all[i];
    *root = uid == 0;
    if (*pm != NULL)
        return FERRY_OK;
    if (strcmp(wanted, "auto") == 0)
        ferry_set_error(ctx, "unsupported", "no apt-get, dnf or yum on the machine");
    else
        ferry_set_error(ctx, "bad_parameter",
                        "package_manager must be auto, apt, dnf or yum (not '%s')", wanted);
    return strcmp(wanted, "auto") == 0 ? FERRY_FAIL : FERRY_INVALID;
}

/* Whether the packages need a reboot: a kernel among them, or the machine says so. */
static int reboot_required(ferry_ctx *ctx, const pkg_manager *pm, const json_t *packages)
{
    size_t i;
    json_t *e;
    json_array_foreach (packages, i, e) {
        const char *n = json_string_value(json_object_get(e, "name"));
        if (strncmp(n, "linux-image", 11) == 0 || strncmp(n, "kernel", 6) == 0)
            return 1;
    }
    json_t *res = ops_exec(ctx, "reboot check", pm->reboot_check, NULL);
    int yes = res && strncmp(ops_output(res), "yes", 3) == 0;
    json_decref(res);
    return yes;
}

/* After the update: each package's version as installed now. */
static ferry_result verify(ferry_ctx *ctx, const pkg_manager *pm, const pkg_request *req,
                           json_t *packages)
{
    json_t *names = pkg_names(packages), *versions = json_object();
    ferry_result code = pm->installed(ctx, req, names, versions);
    size_t i;
    json_t *e;
    json_array_foreach (packages, i, e) {
        char base[256];
        snprintf(base, sizeof(base), "%s", json_string_value(json_object_get(e, "name")));
        json_t *v = json_object_get(versions, base);
        if (v == NULL) {
            base[strcspn(base, ":")] = '\0';
            v = json_object_get(versions, base);
        }
        if (v == NULL)
            continue;
        const char *planned = json_string_value(json_object_get(e, "new_version"));
        if (planned && strcmp(planned, json_string_value(v)) != 0)
            ferry_log(ctx, FERRY_LOG_WARN, "%s is at %s, not %s as planned", base,
                      json_string_value(v), planned);
        json_object_set(e, "new_version", v);
    }
    json_decref(names);
    json_decref(versions);
    return code;
}

/* Reboots when asked and needed; returns what happened, for the result. */
static const char *maybe_reboot(ferry_ctx *ctx, const json_t *params, int needed)
{
    if (!json_is_true(json_object_get(params, "reboot")))
        return "not requested";
    if (json_is_true(json_object_get(params, "dry_run")))
        return "skipped: dry run";
    if (!needed)
        return "not needed";
    json_t *config = ctx->host->config(ctx);
    const char *cmd = json_string_value(json_object_get(config, "reboot_command"));
    json_t *res = ops_exec(ctx, "reboot", cmd ? cmd : DEFAULT_REBOOT_COMMAND, NULL);
    json_decref(config);
    const char *what = res && ops_exit_code(res) == 0 ? "scheduled" : "failed";
    ferry_log(ctx, res && ops_exit_code(res) == 0 ? FERRY_LOG_INFO : FERRY_LOG_ERROR,
              "reboot %s%s%s", what, res ? ": " : "", res ? ops_output(res) : "");
    json_decref(res);
    return what;
}

static ferry_result os_update_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    int dry_run = json_is_true(json_object_get(params, "dry_run"));
    pkg_request req = {.names = json_array()};
    json_t *packages = json_array(), *missing = json_array();
    const pkg_manager *pm = NULL;
    int root = 0, sudo = 0;
    ferry_result code = read_packages(ctx, json_object_get(params, "packages"), &req);
    if (code == FERRY_OK)
        code = detect(ctx, json_string_value(json_object_get(params, "package_manager")), &pm,
                      &root, &sudo);
    if (code != FERRY_OK)
        goto out;
    json_t *machine = ctx->host->machine(ctx);
    int local = machine && json_is_true(json_object_get(machine, "local"));
    json_decref(machine);
    if (!root && !sudo && local) {
        /* On the bridge itself: the host is unprivileged (issue 17), root comes from ferry-priv. */
        ferry_set_error(ctx, "needs_root",
                        "os_update needs root on the bridge itself and this worker is not root "
                        "(nor may it use sudo -n): let it run as root through ferry-priv: "
                        "workers.run_as = \"os_update=root\" in ferry.conf and \"allow os_update "
                        "root\" in ferry-priv's policy (docs/operations.md, \"Privileges\")");
        code = FERRY_FAIL;
        goto out;
    }
    req.sudo =
        root ? "" : "sudo -n env DEBIAN_FRONTEND=noninteractive LC_ALL=C NEEDRESTART_MODE=a ";
    ferry_progress(ctx, 10, pm->name);
    if (json_is_true(json_object_get(params, "refresh")) &&
        (code = pm->refresh(ctx, &req)) != FERRY_OK)
        goto out;
    ferry_progress(ctx, 30, "planning");
    if ((code = pm->plan(ctx, &req, packages, missing)) != FERRY_OK)
        goto out;
    ferry_log(ctx, FERRY_LOG_INFO, "%s: %zu package(s) to update%s", pm->name,
              json_array_size(packages), dry_run ? " (dry run: nothing changes)" : "");
    if (!dry_run && json_array_size(packages) > 0) {
        ferry_progress(ctx, 50, "updating");
        if ((code = pm->apply(ctx, &req, packages)) != FERRY_OK ||
            (code = verify(ctx, pm, &req, packages)) != FERRY_OK)
            goto out;
    }
    ferry_progress(ctx, 90, "reboot check");
    int needed = !dry_run && json_array_size(packages) > 0 && reboot_required(ctx, pm, packages);
    *result = json_pack("{s:s,s:b,s:O,s:I,s:O,s:b}", "manager", pm->name, "dry_run", dry_run,
                        "packages", packages, "count", (json_int_t)json_array_size(packages),
                        "not_installed", missing, "reboot_required", needed);
    json_object_set_new(*result, "reboot", json_string(maybe_reboot(ctx, params, needed)));
out:
    json_decref(req.names);
    json_decref(packages);
    json_decref(missing);
    return code;
}

static const ferry_param os_update_params[] = {
    {"packages", FERRY_PARAM_STRING_LIST, 0, "[\"all\"]",
     "What to update: classes \"security\" (from a security origin), \"critical\" (apt: "
     "Priority required/important or Essential; dnf: Critical advisories), \"all\", and/or "
     "package names (updated when installed; others are listed as not_installed)."},
    {"reboot", FERRY_PARAM_BOOLEAN, 0, "false",
     "Reboot after the update when it needs one (a kernel, or the machine says so), through "
     "the plugin config's reboot_command (default `shutdown -r +1`)."},
    {"dry_run", FERRY_PARAM_BOOLEAN, 0, "false",
     "Only work out what would be updated (apt-get -s, dnf check-update); change nothing."},
    {"refresh", FERRY_PARAM_BOOLEAN, 0, "true",
     "Refresh the package lists first (apt-get update, dnf makecache); a failure is logged "
     "and the lists on the machine are used."},
    {"package_manager", FERRY_PARAM_STRING, 0, "\"auto\"",
     "auto (apt-get, then dnf, then yum, whichever the machine has), apt, dnf or yum."},
    {NULL, 0, 0, NULL, NULL},
};

const ferry_function ops_fn_os_update = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_NEEDS_MACHINE | FERRY_FN_IDEMPOTENT,
    .name = "os_update",
    .summary = "Update the machine's packages (apt, dnf or yum)",
    .description =
        "Detects the machine's package manager, works out the update (by class or by name), "
        "applies it unless `dry_run`, and reboots when asked and needed. The result lists "
        "each package with `old_version` and `new_version` (null old: newly pulled in), "
        "`count`, `not_installed`, `reboot_required` and `reboot`. Runs as root, or with "
        "`sudo -n` for another SSH user; on the bridge itself (a local machine) its worker "
        "must be root: `workers.run_as = \"os_update=root\"` through ferry-priv "
        "(docs/security.md), else it FAILS with needs_root.",
    FERRY_PARAMS(os_update_params),
    .default_timeout = 3600,
    .run = os_update_run,
};
