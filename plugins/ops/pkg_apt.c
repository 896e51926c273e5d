/*
 * apt (Debian, Ubuntu) for os_update. Plans come from simulations (apt-get -s), whose
 *   Inst NAME [OLD] (NEW ORIGIN[, ORIGIN...] [ARCH])
 * lines give each package's old and new version and where the new one comes from: a
 * "-security" origin makes it a security update. "critical" packages are those dpkg rates
 * Priority required or important, or Essential: what the system cannot run without.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pkg.h"

#define APT_OPTS                                                                                   \
    "-q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "                    \
    "-o DPkg::Lock::Timeout=120"

/* Parses one Inst line into a package entry (new reference), or NULL if it is not one. */
static json_t *parse_inst(const char *line, size_t len)
{
    if (len < 6 || strncmp(line, "Inst ", 5) != 0)
        return NULL;
    char *text = strndup(line + 5, len - 5);
    char *name = text, *p = strchr(text, ' ');
    const char *old = NULL, *new_version = NULL, *origin = "";
    json_t *entry = NULL;
    if (p == NULL)
        goto out;
    *p++ = '\0';
    if (*p == '[') {
        old = p + 1;
        p = strchr(p, ']');
        if (p == NULL)
            goto out;
        *p++ = '\0';
        while (*p == ' ')
            p++;
    }
    if (*p != '(')
        goto out;
    new_version = ++p;
    char *close = strchr(p, ')');
    if (close == NULL)
        goto out;
    *close = '\0';
    p = strchr(p, ' ');
    if (p) {
        *p++ = '\0';
        origin = p;
        char *arch = strrchr(p, '[');
        if (arch) {
            while (arch > origin && arch[-1] == ' ')
                arch--;
            *arch = '\0';
        }
    }
    entry = json_pack("{s:s,s:s?,s:s,s:s,s:b}", "name", name, "old_version", old, "new_version",
                      new_version, "origin", origin, "security",
                      strcasestr(origin, "security") != NULL);
    if (old == NULL)
        json_object_set_new(entry, "old_version", json_null());
out:
    free(text);
    return entry;
}

/* Adds the Inst lines of a simulation to packages and "Skipping X, it is not installed"
 * names to missing (may be NULL). */
static void parse_simulation(const char *out, json_t *packages, json_t *missing)
{
    static const char skip[] = "Skipping ";
    for (const char *line = out; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        json_t *entry = parse_inst(line, len);
        if (entry)
            json_array_append_new(packages, entry);
        else if (missing && len > sizeof(skip) && strncmp(line, skip, sizeof(skip) - 1) == 0 &&
                 memmem(line, len, "not installed", 13) != NULL) {
            const char *name = line + sizeof(skip) - 1;
            size_t n = strcspn(name, ",\n");
            json_array_append_new(missing, json_stringn(name, n));
        }
        line = nl ? nl + 1 : NULL;
    }
}

/*
 * Moves the names apt-get reported as "E: Unable to locate package NAME" (in no package
 * list at all) from names to missing. Returns how many moved.
 */
static size_t move_unlocatable(const char *out, json_t *names, json_t *missing)
{
    static const char unable[] = "E: Unable to locate package ";
    size_t moved = 0;
    for (const char *line = out; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len > sizeof(unable) - 1 && strncmp(line, unable, sizeof(unable) - 1) == 0) {
            const char *name = line + sizeof(unable) - 1;
            size_t n = len - (sizeof(unable) - 1);
            for (size_t i = json_array_size(names); i-- > 0;) {
                const char *have = json_string_value(json_array_get(names, i));
                if (strlen(have) == n && strncmp(have, name, n) == 0) {
                    json_array_append_new(missing, json_stringn(name, n));
                    json_array_remove(names, i);
                    moved++;
                }
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    return moved;
}

/*
 * Runs a simulation of "apt-get -s ARGS NAMES..."; its entries go to packages. With missing,
 * names that are not installed or that no package list knows go there instead of failing
 * the plan (names may be NULL: no names). Returns OK, or the failure.
 */
static ferry_result simulate(ferry_ctx *ctx, const char *args, const json_t *names,
                             json_t *packages, json_t *missing)
{
    json_t *left = names ? json_deep_copy(names) : json_array();
    ferry_result code = FERRY_OK;
    for (;;) {
        if (names && json_array_size(left) == 0)
            break; /* every name was unknown: nothing to simulate */
        char *cmd = NULL;
        ops_appendf(&cmd, "apt-get -s -o Debug::NoLocking=1 %s", args);
        size_t i;
        json_t *n;
        json_array_foreach (left, i, n)
            ops_append_word(&cmd, json_string_value(n));
        json_t *res = pkg_exec(ctx, "apt-get -s", cmd, 0);
        free(cmd);
        if (res == NULL) {
            code = FERRY_RETRY;
            break;
        }
        int exit_code = ops_exit_code(res);
        if (exit_code != 0 && missing && move_unlocatable(ops_output(res), left, missing) > 0) {
            json_decref(res);
            continue; /* again without the unknown names */
        }
        if (exit_code != 0)
            code = pkg_failed(ctx, "apt-get -s (simulation)", res);
        else
            parse_simulation(ops_output(res), packages, missing);
        json_decref(res);
        break;
    }
    json_decref(left);
    return code;
}

/* Marks entries whose installed package is Priority required/important or Essential. */
static ferry_result mark_critical(ferry_ctx *ctx, json_t *entries)
{
    if (json_array_size(entries) == 0)
        return FERRY_OK;
    char *cmd = NULL;
    ops_appendf(&cmd, "dpkg-query -W -f='${Package}\\t${Priority}\\t${Essential}\\n'");
    size_t i;
    json_t *e;
    json_array_foreach (entries, i, e)
        ops_append_word(&cmd, json_string_value(json_object_get(e, "name")));
    ops_appendf(&cmd, " 2>/dev/null");
    json_t *res = pkg_exec(ctx, "dpkg-query", cmd, 0);
    free(cmd);
    if (res == NULL)
        return FERRY_RETRY;
    json_t *critical = json_object();
    for (const char *line = ops_output(res); *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char *l = strndup(line, len);
        char *prio = strchr(l, '\t'), *ess = prio ? strchr(prio + 1, '\t') : NULL;
        if (prio && ess) {
            *prio++ = '\0';
            *ess++ = '\0';
            if (strcmp(prio, "required") == 0 || strcmp(prio, "important") == 0 ||
                strcmp(ess, "yes") == 0)
                json_object_set_new(critical, l, json_true());
        }
        free(l);
        line = nl ? nl + 1 : line + len;
    }
    json_array_foreach (entries, i, e) {
        const char *name = json_string_value(json_object_get(e, "name"));
        char base[256];
        snprintf(base, sizeof(base), "%s", name);
        base[strcspn(base, ":")] = '\0'; /* libfoo:amd64 is libfoo to dpkg-query's Package */
        json_object_set_new(e, "critical", json_boolean(json_object_get(critical, base) != NULL));
    }
    json_decref(critical);
    json_decref(res);
    return FERRY_OK;
}

static ferry_result apt_refresh(ferry_ctx *ctx, const pkg_request *req)
{
    char *cmd = NULL;
    ops_appendf(&cmd, "%sapt-get -q update", req->sudo);
    json_t *res = pkg_exec(ctx, "apt-get update", cmd, 0);
    free(cmd);
    if (res == NULL)
        return FERRY_RETRY;
    if (ops_exit_code(res) != 0)
        ferry_log(ctx, FERRY_LOG_WARN,
                  "apt-get update failed (exit %d); planning with the "
                  "package lists already on the machine",
                  ops_exit_code(res));
    json_decref(res);
    return FERRY_OK;
}

/* The names to install --only-upgrade: the classes' picks from a full simulation plus the
 * names asked for. Returns a new array, or NULL with the error set. */
static json_t *pick(ferry_ctx *ctx, const pkg_request *req, ferry_result *code)
{
    json_t *picked = json_array();
    if (req->security || req->critical) {
        json_t *all = json_array();
        *code = simulate(ctx, "upgrade --with-new-pkgs", NULL, all, NULL);
        if (*code == FERRY_OK && req->critical)
            *code = mark_critical(ctx, all);
        size_t i;
        json_t *e;
        json_array_foreach (all, i, e) {
            if (json_is_null(json_object_get(e, "old_version")))
                continue; /* a new dependency: apt pulls it in when needed */
            if ((req->security && json_is_true(json_object_get(e, "security"))) ||
                (req->critical && json_is_true(json_object_get(e, "critical"))))
                json_array_append(picked, json_object_get(e, "name"));
        }
        json_decref(all);
        if (*code != FERRY_OK) {
            json_decref(picked);
            return NULL;
        }
    }
    json_array_extend(picked, req->names);
    *code = FERRY_OK;
    return picked;
}

/* Marks the packages that were not asked for, only pulled in by those that were. */
static void mark_dependencies(json_t *packages, const json_t *picked)
{
    size_t i, k;
    json_t *e, *n;
    json_array_foreach (packages, i, e) {
        const char *name = json_string_value(json_object_get(e, "name"));
        int asked = 0;
        json_array_foreach (picked, k, n)
            asked |= strcmp(json_string_value(n), name) == 0;
        if (!asked)
            json_object_set_new(e, "dependency", json_true());
    }
}

static ferry_result apt_plan(ferry_ctx *ctx, const pkg_request *req, json_t *packages,
                             json_t *missing)
{
    ferry_result code = FERRY_OK;
    if (req->all) {
        code = simulate(ctx, "upgrade --with-new-pkgs", NULL, packages, NULL);
        if (code != FERRY_OK || json_array_size(req->names) == 0)
            return code;
    }
    json_t *picked = req->all ? json_deep_copy(req->names) : pick(ctx, req, &code);
    if (picked == NULL)
        return code;
    if (json_array_size(picked) > 0) {
        /* With "all" the full simulation already lists them: this one only finds the
         * names that are not installed. */
        json_t *found = json_array();
        code = simulate(ctx, "install --only-upgrade", picked, found, missing);
        if (code == FERRY_OK && !req->all && req->critical)
            code = mark_critical(ctx, found);
        if (!req->all) {
            json_array_extend(packages, found);
            mark_dependencies(packages, picked);
        }
        json_decref(found);
    }
    json_decref(picked);
    return code;
}

static ferry_result apt_apply(ferry_ctx *ctx, const pkg_request *req, const json_t *packages)
{
    char *cmd = NULL;
    if (req->all) {
        ops_appendf(&cmd, "%sapt-get -y " APT_OPTS " upgrade --with-new-pkgs", req->sudo);
    } else {
        ops_appendf(&cmd, "%sapt-get -y " APT_OPTS " install --only-upgrade", req->sudo);
        size_t i;
        json_t *e;
        json_array_foreach (packages, i, e) {
            if (!json_is_null(json_object_get(e, "old_version")))
                ops_append_word(&cmd, json_string_value(json_object_get(e, "name")));
        }
    }
    json_t *res = pkg_exec(ctx, "apt-get install", cmd, 1);
    free(cmd);
    if (res == NULL)
        return FERRY_RETRY;
    ferry_result code = ops_exit_code(res) == 0 ? FERRY_OK : pkg_failed(ctx, "apt-get", res);
    json_decref(res);
    return code;
}

static ferry_result apt_installed(ferry_ctx *ctx, const pkg_request *req, const json_t *names,
                                  json_t *versions)
{
    (void)req;
    if (json_array_size(names) == 0)
        return FERRY_OK;
    char *cmd = strdup("dpkg-query -W -f='${Package}\\t${Version}\\n'");
    size_t i;
    json_t *n;
    json_array_foreach (names, i, n)
        ops_append_word(&cmd, json_string_value(n));
    ops_appendf(&cmd, " 2>/dev/null");
    json_t *res = pkg_exec(ctx, "dpkg-query", cmd, 0);
    free(cmd);
    if (res == NULL)
        return FERRY_RETRY;
    pkg_parse_versions(ops_output(res), versions);
    json_decref(res);
    return FERRY_OK;
}

const pkg_manager pkg_apt = {
    .name = "apt",
    .refresh = apt_refresh,
    .plan = apt_plan,
    .apply = apt_apply,
    .installed = apt_installed,
    .reboot_check = "if [ -e /var/run/reboot-required ]; then echo yes; else echo no; fi",
};
