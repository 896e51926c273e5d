/*
 * dnf (Fedora, RHEL 8+) and yum (older RHEL) for os_update. Plans come from `check-update`,
 * whose lines are "NAME.ARCH  [EPOCH:]VERSION-RELEASE  REPOSITORY" (exit 100 when there are
 * updates); --security and --sec-severity=Critical narrow it to the classes. Old versions
 * come from rpm.
 */
#include <stdlib.h>
#include <string.h>

#include "pkg.h"

#define RPM_QF "'%{NAME}.%{ARCH}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\n'"

/* Adds check-update's lines to by_name ({"name.arch": entry}), marking flag when given. */
static void parse_check_update(const char *out, json_t *by_name, const char *flag)
{
    for (const char *line = out; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char *l = strndup(line, len);
        line = nl ? nl + 1 : NULL;
        if (strncmp(l, "Obsoleting", 10) == 0) {
            free(l);
            break; /* what follows replaces packages rather than updating them */
        }
        char name[256], version[256], repo[256], extra[8];
        int n = sscanf(l, "%255s %255s %255s %7s", name, version, repo, extra);
        free(l);
        if (n != 3 || strchr(name, '.') == NULL)
            continue;
        json_t *e = json_object_get(by_name, name);
        if (e == NULL) {
            e = json_pack("{s:s,s:n,s:s,s:s,s:b}", "name", name, "old_version", "new_version",
                          version, "origin", repo, "security", 0);
            json_object_set_new(by_name, name, e);
        }
        if (flag)
            json_object_set_new(e, flag, json_true());
    }
}

/* Runs `TOOL -q check-update ARGS` into by_name. */
static ferry_result check_update(ferry_ctx *ctx, const char *tool, const char *args,
                                 json_t *by_name, const char *flag)
{
    char *cmd = NULL;
    ops_appendf(&cmd, "%s -q check-update %s", tool, args);
    json_t *res = pkg_exec(ctx, "check-update", cmd, 0);
    free(cmd);
    if (res == NULL)
        return FERRY_RETRY;
    int rc = ops_exit_code(res);
    ferry_result code = FERRY_OK;
    if (rc == 0 || rc == 100)
        parse_check_update(ops_output(res), by_name, flag);
    else
        code = pkg_failed(ctx, "check-update", res);
    json_decref(res);
    return code;
}

static ferry_result plan_with(ferry_ctx *ctx, const char *tool, const pkg_request *req,
                              json_t *packages, json_t *missing)
{
    json_t *by_name = json_object();
    ferry_result code = FERRY_OK;
    if (req->all)
        code = check_update(ctx, tool, "", by_name, NULL);
    if (code == FERRY_OK && req->security)
        code = check_update(ctx, tool, "--security", by_name, "security");
    if (code == FERRY_OK && req->critical)
        code = check_update(ctx, tool, "--sec-severity=Critical", by_name, "critical");
    if (code == FERRY_OK && json_array_size(req->names) > 0) {
        char *args = NULL, *probe = strdup("for n in");
        size_t i;
        json_t *n;
        json_array_foreach (req->names, i, n) {
            ops_append_word(&args, json_string_value(n));
            ops_append_word(&probe, json_string_value(n));
        }
        ops_appendf(&probe, "; do rpm -q --quiet \"$n\" || echo \"$n\"; done");
        code = check_update(ctx, tool, args, by_name, NULL);
        json_t *res = code == FERRY_OK ? pkg_exec(ctx, "rpm -q", probe, 0) : NULL;
        for (const char *line = res ? ops_output(res) : ""; *line;) {
            size_t len = strcspn(line, "\n");
            if (len > 0)
                json_array_append_new(missing, json_stringn(line, len));
            line += len + (line[len] == '\n');
        }
        json_decref(res);
        free(args);
        free(probe);
    }
    const char *key;
    json_t *e;
    json_object_foreach (by_name, key, e)
        json_array_append(packages, e);
    json_decref(by_name);
    if (code != FERRY_OK || json_array_size(packages) == 0)
        return code;
    /* The versions installed now. */
    json_t *names = pkg_names(packages), *versions = json_object();
    code = pkg_dnf.installed(ctx, req, names, versions);
    size_t i;
    json_array_foreach (packages, i, e) {
        json_t *v = json_object_get(versions, json_string_value(json_object_get(e, "name")));
        if (v)
            json_object_set(e, "old_version", v);
    }
    json_decref(names);
    json_decref(versions);
    return code;
}

static ferry_result apply_with(ferry_ctx *ctx, const char *tool, const pkg_request *req,
                               const json_t *packages)
{
    char *cmd = NULL;
    ops_appendf(&cmd, "%s%s -y upgrade", req->sudo, tool);
    if (!req->all) {
        size_t i;
        json_t *e;
        json_array_foreach (packages, i, e)
            ops_append_word(&cmd, json_string_value(json_object_get(e, "name")));
    }
    json_t *res = pkg_exec(ctx, "upgrade", cmd, 1);
    free(cmd);
    if (res == NULL)
        return FERRY_RETRY;
    ferry_result code = ops_exit_code(res) == 0 ? FERRY_OK : pkg_failed(ctx, tool, res);
    json_decref(res);
    return code;
}

static ferry_result refresh_with(ferry_ctx *ctx, const char *tool, const pkg_request *req)
{
    char *cmd = NULL;
    ops_appendf(&cmd, "%s%s -q makecache", req->sudo, tool);
    json_t *res = pkg_exec(ctx, "makecache", cmd, 0);
    free(cmd);
    if (res == NULL)
        return FERRY_RETRY;
    if (ops_exit_code(res) != 0)
        ferry_log(ctx, FERRY_LOG_WARN,
                  "%s makecache failed (exit %d); planning with the "
                  "metadata already on the machine",
                  tool, ops_exit_code(res));
    json_decref(res);
    return FERRY_OK;
}

static ferry_result rpm_installed(ferry_ctx *ctx, const pkg_request *req, const json_t *names,
                                  json_t *versions)
{
    (void)req;
    if (json_array_size(names) == 0)
        return FERRY_OK;
    char *cmd = strdup("rpm -q --qf " RPM_QF);
    size_t i;
    json_t *n;
    json_array_foreach (names, i, n)
        ops_append_word(&cmd, json_string_value(n));
    ops_appendf(&cmd, " 2>/dev/null");
    json_t *res = pkg_exec(ctx, "rpm -q", cmd, 0);
    free(cmd);
    if (res == NULL)
        return FERRY_RETRY;
    pkg_parse_versions(ops_output(res), versions);
    json_decref(res);
    return FERRY_OK;
}

static ferry_result dnf_refresh(ferry_ctx *ctx, const pkg_request *req)
{
    return refresh_with(ctx, "dnf", req);
}
static ferry_result dnf_plan(ferry_ctx *ctx, const pkg_request *req, json_t *p, json_t *m)
{
    return plan_with(ctx, "dnf", req, p, m);
}
static ferry_result dnf_apply(ferry_ctx *ctx, const pkg_request *req, const json_t *p)
{
    return apply_with(ctx, "dnf", req, p);
}
static ferry_result yum_refresh(ferry_ctx *ctx, const pkg_request *req)
{
    return refresh_with(ctx, "yum", req);
}
static ferry_result yum_plan(ferry_ctx *ctx, const pkg_request *req, json_t *p, json_t *m)
{
    return plan_with(ctx, "yum", req, p, m);
}
static ferry_result yum_apply(ferry_ctx *ctx, const pkg_request *req, const json_t *p)
{
    return apply_with(ctx, "yum", req, p);
}

/* dnf needs-restarting -r exits 1 when a reboot is needed (dnf-plugins-core). */
#define RPM_REBOOT_CHECK(tool)                                                                     \
    "if command -v needs-restarting >/dev/null 2>&1 || " tool                                      \
    " needs-restarting --help >/dev/null 2>&1; then " tool " needs-restarting -r >/dev/null "      \
    "2>&1; [ $? -eq 1 ] && echo yes || echo no; else echo no; fi"

const pkg_manager pkg_dnf = {
    .name = "dnf",
    .refresh = dnf_refresh,
    .plan = dnf_plan,
    .apply = dnf_apply,
    .installed = rpm_installed,
    .reboot_check = RPM_REBOOT_CHECK("dnf"),
};

const pkg_manager pkg_yum = {
    .name = "yum",
    .refresh = yum_refresh,
    .plan = yum_plan,
    .apply = yum_apply,
    .installed = rpm_installed,
    .reboot_check = RPM_REBOOT_CHECK("yum"),
};
