/*
 * Reading plugin descriptors by their own struct sizes, so that a plugin built against an
 * older (smaller) ABI minor is read correctly and a newer one is refused before any field
 * beyond our knowledge is touched.
 */
#include "descriptor.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>

#include "proto.h"
#include "util.h"

#define END_OF(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

/* The smallest struct sizes ABI 1.0 accepts: everything up to the last 1.0 member. */
#define MIN_PLUGIN_SIZE   END_OF(ferry_plugin, fini)
#define MIN_FUNCTION_SIZE END_OF(ferry_function, run)
#define MIN_PARAM_SIZE    END_OF(ferry_param, description)

static const char *const type_names[] = {
    [FERRY_PARAM_STRING] = "string", [FERRY_PARAM_INTEGER] = "integer",
    [FERRY_PARAM_NUMBER] = "number", [FERRY_PARAM_BOOLEAN] = "boolean",
    [FERRY_PARAM_OBJECT] = "object", [FERRY_PARAM_ARRAY] = "array",
    [FERRY_PARAM_ANY] = "any",       [FERRY_PARAM_STRING_LIST] = "string_list",
};

/*
 * The function flags a descriptor names, and the bit each one is: the one table both the
 * probe (bits -> names, descriptor_read) and the host (names -> bits, descriptor_flags)
 * read. FERRY_FN_NEEDS_MACHINE is accepted and has no effect (plugin.h): not listed.
 */
static const struct {
    unsigned bit;
    const char *name;
} fn_flag_names[] = {
    {FERRY_FN_IDEMPOTENT, "idempotent"},
    {FERRY_FN_RUNS_COMMANDS, "runs_commands"},
};

#define N_FN_FLAGS (sizeof(fn_flag_names) / sizeof(fn_flag_names[0]))

static int valid_ident(const char *s, const char *extra)
{
    if (s == NULL || !islower((unsigned char)s[0]) || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_' &&
            strchr(extra, *s) == NULL)
            return 0;
    return 1;
}

static const char *const reserved_params[] = {FERRY_RESERVED_PARAMS};

static int is_reserved_param(const char *name)
{
    for (size_t i = 0; i < sizeof(reserved_params) / sizeof(reserved_params[0]); i++)
        if (strcmp(reserved_params[i], name) == 0)
            return 1;
    return 0;
}

static int type_matches(ferry_param_type t, const json_t *v)
{
    switch (t) {
    case FERRY_PARAM_STRING:
        return json_is_string(v);
    case FERRY_PARAM_INTEGER:
        return json_is_integer(v);
    case FERRY_PARAM_NUMBER:
        return json_is_number(v);
    case FERRY_PARAM_BOOLEAN:
        return json_is_boolean(v);
    case FERRY_PARAM_OBJECT:
        return json_is_object(v);
    case FERRY_PARAM_ARRAY:
        return json_is_array(v);
    case FERRY_PARAM_STRING_LIST:
        if (json_is_string(v))
            return 1;
        if (!json_is_array(v))
            return 0;
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!json_is_string(json_array_get(v, i)))
                return 0;
        return 1;
    case FERRY_PARAM_ANY:
        return 1;
    }
    return 0;
}

static json_t *read_params(const ferry_function *fn, const char *fname, char *reason,
                           size_t rlen)
{
    json_t *arr = json_array();
    if (fn->params == NULL)
        return arr;
    if (fn->param_size < MIN_PARAM_SIZE) {
        seterr(reason, rlen, "function %s: param_size %u is smaller than ABI 1.0's %zu (use "
               "FERRY_PARAMS(table))", fname, fn->param_size, (size_t)MIN_PARAM_SIZE);
        goto fail;
    }
    for (size_t i = 0; i < 256; i++) {
        ferry_param p;
        memset(&p, 0, sizeof(p));
        const char *row = (const char *)fn->params + i * fn->param_size;
        memcpy(&p, row, fn->param_size < sizeof(p) ? fn->param_size : sizeof(p));
        if (p.name == NULL)
            return arr;
        if (!valid_ident(p.name, "")) {
            seterr(reason, rlen, "function %s: parameter name '%s' must match [a-z][a-z0-9_]*",
                   fname, p.name);
            goto fail;
        }
        if (is_reserved_param(p.name)) {
            seterr(reason, rlen,
                   "function %s: parameter '%s' is a vault key the host owns and "
                   "never passes to a function; rename it (reserved: see "
                   "FERRY_RESERVED_PARAMS in <ferry/plugin.h>)",
                   fname, p.name);
            goto fail;
        }
        if ((int)p.type < FERRY_PARAM_STRING || (int)p.type > FERRY_PARAM_STRING_LIST) {
            seterr(reason, rlen, "function %s: parameter %s has unknown type %d", fname, p.name,
                   (int)p.type);
            goto fail;
        }
        if (p.flags & ~FERRY_PARAM_KNOWN_FLAGS) {
            seterr(reason, rlen, "function %s: parameter %s has unknown flag bits 0x%x", fname,
                   p.name, p.flags & ~FERRY_PARAM_KNOWN_FLAGS);
            goto fail;
        }
        json_t *def = NULL;
        if (p.default_json != NULL) {
            json_error_t je;
            def = json_loads(p.default_json, JSON_DECODE_ANY, &je);
            if (def == NULL || !type_matches(p.type, def)) {
                seterr(reason, rlen, "function %s: default of parameter %s is not a valid %s: %s",
                       fname, p.name, type_names[p.type], p.default_json);
                json_decref(def);
                goto fail;
            }
        }
        json_t *row_json = json_pack("{s:s,s:s,s:b,s:b,s:s}", "name", p.name, "type",
                                     type_names[p.type], "required",
                                     (p.flags & FERRY_PARAM_REQUIRED) != 0, "secret",
                                     (p.flags & FERRY_PARAM_SECRET) != 0, "description",
                                     p.description ? p.description : "");
        if (def)
            json_object_set_new(row_json, "default", def);
        json_array_append_new(arr, row_json);
    }
    seterr(reason, rlen, "function %s: parameter table has no end row (name NULL)", fname);
fail:
    json_decref(arr);
    return NULL;
}

static json_t *read_function(const ferry_function *raw, char *reason, size_t rlen)
{
    if (raw->struct_size < MIN_FUNCTION_SIZE) {
        seterr(reason, rlen, "a function descriptor's struct_size %u is smaller than ABI 1.0's "
               "%zu (use FERRY_FUNCTION_INIT)", raw->struct_size, (size_t)MIN_FUNCTION_SIZE);
        return NULL;
    }
    ferry_function fn;
    memset(&fn, 0, sizeof(fn));
    memcpy(&fn, raw, raw->struct_size < sizeof(fn) ? raw->struct_size : sizeof(fn));
    if (!valid_ident(fn.name, "")) {
        seterr(reason, rlen, "function name '%s' must match [a-z][a-z0-9_]*",
               fn.name ? fn.name : "(null)");
        return NULL;
    }
    if (fn.run == NULL) {
        seterr(reason, rlen, "function %s has no run()", fn.name);
        return NULL;
    }
    if (fn.flags & ~FERRY_FN_KNOWN_FLAGS) {
        seterr(reason, rlen, "function %s has unknown flag bits 0x%x (built for a newer ABI?)",
               fn.name, fn.flags & ~FERRY_FN_KNOWN_FLAGS);
        return NULL;
    }
    json_t *params = read_params(&fn, fn.name, reason, rlen);
    if (params == NULL)
        return NULL;
    json_t *flags = json_array();
    for (size_t i = 0; i < N_FN_FLAGS; i++)
        if (fn.flags & fn_flag_names[i].bit)
            json_array_append_new(flags, json_string(fn_flag_names[i].name));
    return json_pack("{s:s,s:s,s:s,s:o,s:I,s:o}", "name", fn.name, "summary",
                     fn.summary ? fn.summary : "", "description",
                     fn.description ? fn.description : "", "flags", flags, "timeout",
                     (json_int_t)fn.default_timeout, "params", params);
}

unsigned descriptor_flags(const json_t *fn)
{
    unsigned bits = 0;
    size_t i;
    json_t *f;
    json_array_foreach (json_object_get(fn, "flags"), i, f) {
        const char *name = json_string_value(f);
        for (size_t k = 0; name && k < N_FN_FLAGS; k++)
            if (strcmp(name, fn_flag_names[k].name) == 0)
                bits |= fn_flag_names[k].bit;
    }
    return bits;
}

int descriptor_fn(const json_t *fn, struct ferry_fn *out)
{
    memset(out, 0, sizeof(*out));
    out->name = json_string_value(json_object_get(fn, "name"));
    if (!json_is_object(fn) || out->name == NULL)
        return -1;
    out->plugin = json_string_value(json_object_get(fn, "plugin"));
    out->path = json_string_value(json_object_get(fn, "path"));
    out->flags = descriptor_flags(fn);
    json_int_t timeout = json_integer_value(json_object_get(fn, "timeout"));
    out->timeout_s = timeout > 0 ? (int64_t)timeout : 0;
    out->desc = fn;
    return 0;
}

json_t *descriptor_read(const ferry_plugin *plugin, char *reason, size_t rlen)
{
    if (plugin == NULL) {
        seterr(reason, rlen, FERRY_PLUGIN_ENTRY_SYMBOL "() returned NULL");
        return NULL;
    }
    if (plugin->magic != FERRY_PLUGIN_MAGIC) {
        seterr(reason, rlen, "bad magic 0x%llx: not a ferry plugin descriptor",
               (unsigned long long)plugin->magic);
        return NULL;
    }
    if (plugin->abi_major != FERRY_ABI_MAJOR) {
        seterr(reason, rlen, "built for ABI %u.%u; this host speaks %d.%d: rebuild the plugin "
               "against this SDK", plugin->abi_major, plugin->abi_minor, FERRY_ABI_MAJOR,
               FERRY_ABI_MINOR);
        return NULL;
    }
    if (plugin->abi_minor > FERRY_ABI_MINOR) {
        seterr(reason, rlen, "built for ABI %u.%u, newer than this host's %d.%d: upgrade ferry "
               "or rebuild the plugin against this SDK", plugin->abi_major, plugin->abi_minor,
               FERRY_ABI_MAJOR, FERRY_ABI_MINOR);
        return NULL;
    }
    if (plugin->struct_size < MIN_PLUGIN_SIZE) {
        seterr(reason, rlen, "plugin descriptor struct_size %u is smaller than ABI 1.0's %zu",
               plugin->struct_size, (size_t)MIN_PLUGIN_SIZE);
        return NULL;
    }
    ferry_plugin p;
    memset(&p, 0, sizeof(p));
    memcpy(&p, plugin, plugin->struct_size < sizeof(p) ? plugin->struct_size : sizeof(p));
    if (p.flags & ~FERRY_PLUGIN_KNOWN_FLAGS) {
        seterr(reason, rlen, "unknown plugin flag bits 0x%x (built for a newer ABI?)",
               p.flags & ~FERRY_PLUGIN_KNOWN_FLAGS);
        return NULL;
    }
    if (!valid_ident(p.name, "-")) {
        seterr(reason, rlen, "plugin name '%s' must match [a-z][a-z0-9_-]*",
               p.name ? p.name : "(null)");
        return NULL;
    }
    if (p.functions == NULL || p.functions[0] == NULL) {
        seterr(reason, rlen, "plugin %s declares no functions", p.name);
        return NULL;
    }
    json_t *fns = json_array();
    json_t *seen = json_object();
    for (size_t i = 0; p.functions[i] != NULL; i++) {
        json_t *fn = read_function(p.functions[i], reason, rlen);
        if (fn == NULL)
            goto fail;
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (json_object_get(seen, name)) {
            seterr(reason, rlen, "plugin %s declares function %s twice", p.name, name);
            json_decref(fn);
            goto fail;
        }
        json_object_set_new(seen, name, json_true());
        json_array_append_new(fns, fn);
    }
    json_decref(seen);
    /* hook_dir came late: a plugin built before it has no such member (struct_size). */
    const char *hook_dir =
        plugin->struct_size >= offsetof(ferry_plugin, hook_dir) + sizeof(p.hook_dir) ? p.hook_dir
                                                                                     : NULL;
    char why[128];
    if (hook_dir && proto_hook_dir_valid(hook_dir, why, sizeof(why)) != 0) {
        seterr(reason, rlen, "plugin %s: %s", p.name, why);
        json_decref(fns);
        return NULL;
    }
    char abi[16];
    snprintf(abi, sizeof(abi), "%u.%u", p.abi_major, p.abi_minor);
    json_t *desc = json_pack("{s:s,s:s,s:s,s:s,s:o}", "name", p.name, "version",
                             p.version ? p.version : "", "summary", p.summary ? p.summary : "",
                             "abi", abi, "functions", fns);
    if (hook_dir)
        json_object_set_new(desc, "hook_dir", json_string(hook_dir));
    return desc;
fail:
    json_decref(seen);
    json_decref(fns);
    return NULL;
}

void descriptor_fini(const ferry_plugin *plugin)
{
    if (plugin->fini != NULL) /* within ABI 1.0's size, which descriptor_read checked */
        plugin->fini();
}

int descriptor_init(const ferry_plugin *plugin, const ferry_host *host, const json_t *config,
                    char *reason, size_t rlen)
{
    if (plugin->init == NULL)
        return 0;
    char buf[512] = "";
    if (plugin->init(host, config, buf, sizeof(buf)) != 0) {
        buf[sizeof(buf) - 1] = '\0';
        seterr(reason, rlen, "init failed: %s", buf[0] ? buf : "(no reason given)");
        return -1;
    }
    return 0;
}

const ferry_function *descriptor_find(const ferry_plugin *plugin, const char *name)
{
    for (size_t i = 0; plugin->functions[i] != NULL; i++) {
        const ferry_function *fn = plugin->functions[i];
        if (fn->name != NULL && strcmp(fn->name, name) == 0)
            return fn;
    }
    return NULL;
}

ferry_run_fn descriptor_run(const ferry_function *fn)
{
    ferry_function copy;
    memset(&copy, 0, sizeof(copy));
    memcpy(&copy, fn, fn->struct_size < sizeof(copy) ? fn->struct_size : sizeof(copy));
    return copy.run;
}

static void write_default(const json_t *param, FILE *out)
{
    const json_t *def = json_object_get(param, "default");
    if (def == NULL) {
        fputs(json_is_true(json_object_get(param, "required")) ? "required" : "-", out);
        return;
    }
    char *text = json_dumps(def, JSON_COMPACT | JSON_ENCODE_ANY);
    fprintf(out, "`%s`", text);
    free(text);
}

void descriptor_write_markdown(const json_t *functions, FILE *out)
{
    fputs("# Function reference\n\n"
          "<!-- Generated by `make docs` from the plugins' own descriptors; do not edit. -->\n\n"
          "Every queue function the bundled plugins provide. A queue item's vault names the "
          "function in `function`; its other keys are the parameters below. The host-owned "
          "keys (`timeout`, `max_retries`, `retry_delay`, `on_failure`, `on_success`, "
          "`description`, `tags`, `pre_hook`, `post_hook`) work with every function.\n\n",
          out);
    size_t i;
    json_t *fn;
    json_array_foreach(functions, i, fn)
    {
        const char *summary = json_string_value(json_object_get(fn, "summary"));
        fprintf(out, "- [`%s`](#%s): %s\n", json_string_value(json_object_get(fn, "name")),
                json_string_value(json_object_get(fn, "name")), summary);
    }
    json_array_foreach(functions, i, fn)
    {
        fprintf(out, "\n## %s\n\n%s\n\n", json_string_value(json_object_get(fn, "name")),
                json_string_value(json_object_get(fn, "summary")));
        const char *desc = json_string_value(json_object_get(fn, "description"));
        if (desc && desc[0])
            fprintf(out, "%s\n\n", desc);
        fprintf(out, "Plugin: `%s`. ", json_string_value(json_object_get(fn, "plugin")));
        json_int_t timeout = json_integer_value(json_object_get(fn, "timeout"));
        if (timeout > 0)
            fprintf(out, "Default timeout: %lld s. ", (long long)timeout);
        else
            fputs("Default timeout: the host's. ", out);
        const json_t *flags = json_object_get(fn, "flags");
        fputs(json_array_size(flags) ? "Flags:" : "", out);
        size_t k;
        json_t *f;
        json_array_foreach(flags, k, f) fprintf(out, " `%s`", json_string_value(f));
        fputs("\n\n", out);
        const json_t *params = json_object_get(fn, "params");
        if (json_array_size(params) == 0) {
            fputs("No parameters.\n", out);
            continue;
        }
        fputs("| parameter | type | default | description |\n|---|---|---|---|\n", out);
        json_t *p;
        json_array_foreach(params, k, p)
        {
            fprintf(out, "| `%s`%s | %s | ", json_string_value(json_object_get(p, "name")),
                    json_is_true(json_object_get(p, "secret")) ? " (secret)" : "",
                    json_string_value(json_object_get(p, "type")));
            write_default(p, out);
            fprintf(out, " | %s |\n", json_string_value(json_object_get(p, "description")));
        }
    }
}

void descriptor_write_text(const json_t *fn, FILE *out)
{
    fprintf(out, "%s - %s\n", json_string_value(json_object_get(fn, "name")),
            json_string_value(json_object_get(fn, "summary")));
    const char *desc = json_string_value(json_object_get(fn, "description"));
    if (desc && desc[0])
        fprintf(out, "\n%s\n", desc);
    fprintf(out, "\nplugin:  %s (%s)\n", json_string_value(json_object_get(fn, "plugin")),
            json_string_value(json_object_get(fn, "path")));
    json_int_t timeout = json_integer_value(json_object_get(fn, "timeout"));
    if (timeout > 0)
        fprintf(out, "timeout: %lld s\n", (long long)timeout);
    const json_t *flags = json_object_get(fn, "flags");
    if (json_array_size(flags)) {
        fputs("flags:  ", out);
        size_t k;
        json_t *f;
        json_array_foreach(flags, k, f) fprintf(out, " %s", json_string_value(f));
        fputc('\n', out);
    }
    const json_t *params = json_object_get(fn, "params");
    fputs("\nparameters:\n", out);
    if (json_array_size(params) == 0)
        fputs("  (none)\n", out);
    size_t k;
    json_t *p;
    json_array_foreach(params, k, p)
    {
        fprintf(out, "  %-20s %-11s ", json_string_value(json_object_get(p, "name")),
                json_string_value(json_object_get(p, "type")));
        const json_t *def = json_object_get(p, "default");
        if (json_is_true(json_object_get(p, "required"))) {
            fputs("required", out);
        } else if (def) {
            char *text = json_dumps(def, JSON_COMPACT | JSON_ENCODE_ANY);
            fprintf(out, "default %s", text);
            free(text);
        } else {
            fputs("optional", out);
        }
        if (json_is_true(json_object_get(p, "secret")))
            fputs(", secret", out);
        fprintf(out, "\n  %20s %s\n", "", json_string_value(json_object_get(p, "description")));
    }
}
