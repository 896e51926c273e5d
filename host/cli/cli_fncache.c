/*
 * The CLI's cache of the plugin directory's descriptors. Knowing the functions means
 * probing every plugin in a child process (registry.h), about 3 ms a plugin; a
 * `create queue-item` needs only the one function its vault names, to check it and warn. So
 * the CLI keeps what a scan found in a small file and uses it while every plugin file is
 * the same one, by the identity registry_scan itself trusts between scans (device, inode,
 * size, mtime, mode) and the same .so names, plugin directory mode, plugin config sections
 * and ferry binary. Anything else and the directory is probed again and the file rewritten.
 *
 * Where: beside the SQLite store (".ferry-functions.json" in its directory), or for a
 * PostgreSQL store in $XDG_CACHE_HOME/ferry (else ~/.cache/ferry). Whoever can write there
 * can read the store itself, vaults included, so a doctored cache (which could hide a SECRET
 * flag from the CLI's masking) gives nobody more than they have. A cache that cannot be read
 * or written is simply not used.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "registry.h"
#include "util.h"

#define CACHE_VERSION   1
#define CACHE_MAX_BYTES (8u * 1024 * 1024)

/* FNV-1a, for a file name per plugin directory. */
static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* The cache file's path (caller frees), or NULL when there is nowhere to put it. */
static char *cache_path(const ferry_config *cfg)
{
    if (cfg->plugin_dir == NULL)
        return NULL;
    if (strcmp(cfg->store_driver, "postgres") != 0) {
        char *copy = xstrdup(cfg->store_path);
        char *path = xasprintf("%s/.ferry-functions.json", dirname(copy));
        free(copy);
        return path;
    }
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char *dir = xdg && *xdg     ? xasprintf("%s/ferry", xdg)
                : home && *home ? xasprintf("%s/.cache/ferry", home)
                                : NULL;
    if (dir == NULL)
        return NULL;
    char *path =
        xasprintf("%s/functions-%016llx.json", dir, (unsigned long long)fnv1a(cfg->plugin_dir));
    free(dir);
    return path;
}

static json_t *identity_json(const struct stat *st)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "dev", (json_int_t)st->st_dev, "ino",
                     (json_int_t)st->st_ino, "size", (json_int_t)st->st_size, "mtime_s",
                     (json_int_t)st->st_mtim.tv_sec, "mtime_ns", (json_int_t)st->st_mtim.tv_nsec,
                     "mode", (json_int_t)st->st_mode);
}

/*
 * What the cache is valid for: this binary, the directory (mode included: a world-writable
 * one refuses everything), the config sections handed to each init(), and every .so file's
 * identity in name order. NULL when the directory cannot be read.
 */
static json_t *current_key(const ferry_config *cfg)
{
    struct stat exe, dst;
    if (stat("/proc/self/exe", &exe) != 0 || stat(cfg->plugin_dir, &dst) != 0)
        return NULL;
    DIR *d = opendir(cfg->plugin_dir);
    if (d == NULL)
        return NULL;
    json_t *files = json_object();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        /* The names registry_scan considers. */
        if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0 || e->d_name[0] == '.')
            continue;
        char *path = xasprintf("%s/%s", cfg->plugin_dir, e->d_name);
        struct stat st;
        json_object_set_new(files, e->d_name,
                            stat(path, &st) == 0 ? identity_json(&st) : json_null());
        free(path);
    }
    closedir(d);
    json_t *config = cfg->plugin_sections ? json_incref(cfg->plugin_sections) : json_object();
    return json_pack("{s:i,s:o,s:s,s:o,s:o,s:o}", "version", CACHE_VERSION, "exe",
                     identity_json(&exe), "dir", cfg->plugin_dir, "dir_identity",
                     identity_json(&dst), "config", config, "files", files);
}

/* Fills reg from a cache whose key matched: the plugins as the scan left them. */
static void registry_from_cache(registry *reg, const json_t *plugins, const json_t *files)
{
    size_t n = json_array_size(plugins);
    reg->plugins = calloc(n ? n : 1, sizeof(*reg->plugins));
    reg->n_plugins = n;
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(plugins, i);
        registry_plugin *p = &reg->plugins[i];
        p->file = xstrdup(json_string_value(json_object_get(c, "file")));
        p->path = xasprintf("%s/%s", reg->dir, p->file);
        /* The identity the key matched, as registry_scan would have recorded it. */
        const json_t *id = json_object_get(files, p->file);
        p->dev = (dev_t)json_integer_value(json_object_get(id, "dev"));
        p->ino = (ino_t)json_integer_value(json_object_get(id, "ino"));
        p->size = (off_t)json_integer_value(json_object_get(id, "size"));
        p->mtime.tv_sec = (time_t)json_integer_value(json_object_get(id, "mtime_s"));
        p->mtime.tv_nsec = (long)json_integer_value(json_object_get(id, "mtime_ns"));
        p->mode = (mode_t)json_integer_value(json_object_get(id, "mode"));
        p->loaded = p->incumbent = json_is_true(json_object_get(c, "loaded"));
        const char *reason = json_string_value(json_object_get(c, "reason"));
        p->reason = reason ? xstrdup(reason) : NULL;
        json_t *info = json_object_get(c, "info"), *fns = json_object_get(c, "functions");
        p->info = json_is_object(info) ? json_incref(info) : NULL;
        p->functions = json_is_array(fns) ? json_incref(fns) : NULL;
        size_t k;
        json_t *fn;
        json_array_foreach (p->loaded ? p->functions : NULL, k, fn)
            json_object_set(reg->by_name, json_string_value(json_object_get(fn, "name")), fn);
    }
    reg->generation = 1;
}

/* The scan's outcome per plugin, in the registry's order. */
static json_t *registry_to_cache(const registry *reg)
{
    json_t *plugins = json_array();
    for (size_t i = 0; i < reg->n_plugins; i++) {
        const registry_plugin *p = &reg->plugins[i];
        json_array_append_new(plugins, json_pack("{s:s,s:b,s:s?,s:O?,s:O?}", "file", p->file,
                                                 "loaded", p->loaded, "reason", p->reason, "info",
                                                 p->info, "functions", p->functions));
    }
    return plugins;
}

/* Writes the cache through a temporary file and a rename, so a reader sees all or nothing. */
static void cache_save(const char *path, json_t *key, const registry *reg)
{
    char *copy = xstrdup(path);
    mkdir_p(dirname(copy));
    free(copy);
    char *tmp = xasprintf("%s.%ld.tmp", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
        json_object_set_new(key, "plugins", registry_to_cache(reg));
        int ok = json_dumpfd(key, fd, JSON_COMPACT) == 0;
        ok = close(fd) == 0 && ok;
        if (!ok || rename(tmp, path) != 0)
            unlink(tmp);
    }
    free(tmp);
}

int cli_registry_load(cli *c, int probe)
{
    if (c->reg)
        return 0;
    if (cli_config(c) != 0)
        return -1;
    c->reg = calloc(1, sizeof(*c->reg));
    registry_init(c->reg, c->cfg.plugin_dir, c->cfg.plugin_sections);
    c->reg->log_refusals = 0;
    char *path = cache_path(&c->cfg);
    json_t *key = current_key(&c->cfg);
    json_t *cached = NULL;
    if (path != NULL && key != NULL && !probe) {
        size_t len;
        char *text = read_file_capped(path, CACHE_MAX_BYTES, &len, NULL, 0);
        cached = text ? json_loadb(text, len, 0, NULL) : NULL;
        free(text);
        json_t *plugins = json_incref(json_object_get(cached, "plugins"));
        json_object_del(cached, "plugins");
        if (json_is_array(plugins) && json_equal(cached, key)) {
            registry_from_cache(c->reg, plugins, json_object_get(key, "files"));
            json_decref(plugins);
            goto out;
        }
        json_decref(plugins);
    }
    registry_scan(c->reg);
    if (path != NULL && key != NULL)
        cache_save(path, key, c->reg);
out:
    json_decref(cached);
    json_decref(key);
    free(path);
    return 0;
}
