/*
 * The CLI's cache of the plugin directory's descriptors. Knowing the functions means
 * probing every plugin in a child process (registry.h), about 3 ms a plugin; a
 * `create queue-item` needs only the one function its vault names, to check it and warn. So
 * the CLI keeps what a scan found in a small file and uses it while every plugin file is
 * the same one, by the identity registry_scan itself trusts between scans (device, inode,
 * size, mtime, mode) and the same .so names, plugin directory mode, plugin config sections
 * and ferry binary. Anything else and the directory is probed again and the file rewritten.
 *
 * The file's layout is described at cache_text: a create reads and parses the key, the index
 * and the one descriptor it checks (cli_function), not every descriptor.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "proto.h"
#include "registry.h"
#include "util.h"

#define CACHE_VERSION   2
#define CACHE_MAX_BYTES (8u * 1024 * 1024)

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
        xasprintf("%s/functions-%016llx.json", dir, (unsigned long long)fnv1a(FNV1A_BASIS, cfg->plugin_dir));
    free(dir);
    return path;
}

/* The key is written as text directly (building it as JSON and dumping it was half of the
 * cache's cost to a create queue-item), and without stdio: a stream in memory and a fprintf
 * per identity were 30,000 of a create's instructions. One line, JSON in shape, compared as
 * text alone. */
static void key_put(struct proto_buf *out, const char *s, size_t n)
{
    if (proto_buf_add(out, s, n) != 0)
        abort();
}

static void key_text(struct proto_buf *out, const char *s)
{
    key_put(out, s, strlen(s));
}

/* A number in decimal (a device or inode number past 2^63 shows as negative: the key only
 * has to name the same identity by the same text). */
static void key_number(struct proto_buf *out, int64_t v)
{
    if (proto_buf_i64(out, v) != 0)
        abort();
}

static void key_add(struct proto_buf *out, const struct stat *st)
{
    key_text(out, "{\"dev\":");
    key_number(out, (int64_t)st->st_dev);
    key_text(out, ",\"ino\":");
    key_number(out, (int64_t)st->st_ino);
    key_text(out, ",\"size\":");
    key_number(out, (int64_t)st->st_size);
    key_text(out, ",\"mtime_s\":");
    key_number(out, (int64_t)st->st_mtim.tv_sec);
    key_text(out, ",\"mtime_ns\":");
    key_number(out, (int64_t)st->st_mtim.tv_nsec);
    key_text(out, ",\"mode\":");
    key_number(out, (int64_t)st->st_mode);
    key_put(out, "}", 1);
}

/* A name as a JSON string: '"', '\\' and control bytes escaped, so the key stays one line. */
static void key_add_string(struct proto_buf *out, const char *s)
{
    key_put(out, "\"", 1);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[7];
        if (ch == '"' || ch == '\\')
            key_put(out, (char[]){'\\', (char)ch}, 2);
        else if (ch < 0x20)
            key_put(out, esc, (size_t)snprintf(esc, sizeof(esc), "\\u%04x", ch));
        else
            key_put(out, (const char *)&ch, 1);
    }
    key_put(out, "\"", 1);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * What the cache is valid for: this binary, the directory (mode included: a world-writable
 * one refuses everything), the config sections handed to each init(), and every .so file's
 * identity in name order, as one line of text (caller frees). NULL when the directory cannot
 * be read.
 */
static char *current_key(const ferry_config *cfg)
{
    struct stat exe, dst;
    if (stat("/proc/self/exe", &exe) != 0 || stat(cfg->plugin_dir, &dst) != 0)
        return NULL;
    DIR *d = opendir(cfg->plugin_dir);
    if (d == NULL)
        return NULL;
    /* The .so names registry_scan considers, in name order (the key is compared as text). */
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0 || e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            names = realloc(names, cap * sizeof(*names));
            if (names == NULL)
                abort();
        }
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(*names), cmp_name);
    struct proto_buf out = {0};
    char *config = cfg->plugin_sections ? json_dumps(cfg->plugin_sections, JSON_COMPACT) : NULL;
    key_text(&out, "{\"version\":");
    key_number(&out, CACHE_VERSION);
    key_text(&out, ",\"exe\":");
    key_add(&out, &exe);
    key_text(&out, ",\"dir\":");
    key_add_string(&out, cfg->plugin_dir);
    key_text(&out, ",\"dir_identity\":");
    key_add(&out, &dst);
    key_text(&out, ",\"config\":");
    key_text(&out, config ? config : "{}");
    key_text(&out, ",\"files\":{");
    free(config);
    for (size_t i = 0; i < n; i++) {
        char *path = xasprintf("%s/%s", cfg->plugin_dir, names[i]);
        struct stat st;
        if (i)
            key_put(&out, ",", 1);
        key_add_string(&out, names[i]);
        key_put(&out, ":", 1);
        if (stat(path, &st) == 0)
            key_add(&out, &st);
        else
            key_text(&out, "null");
        free(path);
        free(names[i]);
    }
    free(names);
    key_put(&out, "}}", 3); /* with the terminating NUL */
    char *text = out.p;
    return text;
}

/*
 * The file: three parts, each ended by a newline, so that a create queue-item parses only
 * what it needs (parsing every descriptor cost more than the rest of the command's CPU):
 *   1. the key (current_key), one line of text, JSON in shape;
 *   2. the index, {"function name": [offset, length], ...}, offsets into part 3;
 *   3. the descriptors the scan left usable (the registry's by_name), one compact JSON
 *      object a line.
 * A part that does not parse, or an offset out of range, and the directory is probed again.
 */
static char *cache_text(const registry *reg, const char *key)
{
    char *head = xstrdup(key);
    json_t *index = json_object();
    size_t cap = 4096, len = 0;
    char *body = malloc(cap);
    const char *name;
    json_t *fn;
    if (head == NULL || body == NULL)
        abort();
    json_object_foreach (reg->by_name, name, fn) {
        char *one = json_dumps(fn, JSON_COMPACT);
        size_t n = strlen(one);
        while (len + n + 1 > cap)
            body = realloc(body, cap *= 2);
        if (body == NULL)
            abort();
        json_object_set_new(index, name, json_pack("[I,I]", (json_int_t)len, (json_int_t)n));
        memcpy(body + len, one, n);
        body[len + n] = '\n';
        len += n + 1;
        free(one);
    }
    body[len] = '\0';
    char *idx = json_dumps(index, JSON_COMPACT);
    char *text = xasprintf("%s\n%s\n%s", head, idx, body);
    free(head);
    free(idx);
    free(body);
    json_decref(index);
    return text;
}

/* Writes the cache through a temporary file and a rename, so a reader sees all or nothing. */
static void cache_save(const char *path, const char *key, const registry *reg)
{
    char *copy = xstrdup(path);
    mkdir_p(dirname(copy));
    free(copy);
    char *tmp = xasprintf("%s.%ld.tmp", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (fd >= 0 && f == NULL)
        close(fd);
    if (f != NULL) {
        char *text = cache_text(reg, key);
        int ok = fputs(text, f) >= 0;
        ok = fclose(f) == 0 && ok;
        if (!ok || rename(tmp, path) != 0)
            unlink(tmp);
        free(text);
    }
    free(tmp);
}

/*
 * The cache of c when its key is key: keeps the file open, and its key and index as text
 * in c. 0, or -1. Only the two first parts are read: the descriptor a create checks is read
 * by cli_function from the open file, which a later rewrite (a new file renamed over it)
 * does not change. Reading all of it (50 KB for the bundled plugins) cost a create queue-item
 * 13 pages of heap, each a page fault, and a consolidation of the heap when freed.
 * Neither part is parsed: the key is compared as the text it is written as (current_key
 * builds it in one order; a cache written by another binary names another one anyway), and
 * the index is searched for the one name asked (find_entry).
 */
static int cache_use(cli *c, const char *path, const char *key)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0 || st.st_size > CACHE_MAX_BYTES) {
        close(fd);
        return -1;
    }
    /* The key and the index end at the second newline: read until it. */
    size_t cap = 8192, len = 0;
    char *text = malloc(cap + 1), *nl1 = NULL, *nl2 = NULL;
    if (text == NULL)
        abort();
    for (;;) {
        ssize_t got = read(fd, text + len, cap - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        len += (size_t)got;
        nl1 = memchr(text, '\n', len);
        nl2 = nl1 ? memchr(nl1 + 1, '\n', len - (size_t)(nl1 + 1 - text)) : NULL;
        if (nl2 != NULL || len == (size_t)st.st_size)
            break;
        if (len == cap) {
            text = realloc(text, (cap *= 2) + 1);
            if (text == NULL)
                abort();
        }
    }
    int ok = nl2 != NULL && strlen(key) == (size_t)(nl1 - text) &&
             memcmp(key, text, (size_t)(nl1 - text)) == 0 && nl2 - nl1 >= 3 && nl1[1] == '{' &&
             nl2[-1] == '}';
    if (!ok) {
        free(text);
        close(fd);
        return -1;
    }
    text[len] = '\0';
    c->fn_text = text;
    c->fn_fd = fd;
    c->fn_index = (size_t)(nl1 + 1 - text);
    c->fn_body = (size_t)(nl2 + 1 - text);
    c->fn_len = (size_t)st.st_size;
    return 0;
}

/*
 * The [offset, length] of name in the cache's index: 1 found, 0 not there, -1 damaged. The
 * name is searched as the JSON text of a key after '{' or ',' (the index's values are
 * numbers, so that text is only ever a key).
 */
static int find_entry(const cli *c, const char *name, long long *off, long long *n)
{
    json_t *s = json_string(name);
    char *quoted = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    json_decref(s);
    if (quoted == NULL)
        return 0; /* not UTF-8: no plugin declares it */
    char *pattern = xasprintf("%s:[", quoted);
    free(quoted);
    const char *idx = c->fn_text + c->fn_index, *end = c->fn_text + c->fn_body - 1;
    size_t plen = strlen(pattern);
    const char *at = idx;
    int found = 0;
    while ((at = memmem(at, (size_t)(end - at), pattern, plen)) != NULL) {
        if (at > idx && (at[-1] == '{' || at[-1] == ',')) {
            found = 1;
            break;
        }
        at++;
    }
    free(pattern);
    if (!found)
        return 0;
    char *p;
    errno = 0;
    *off = strtoll(at + plen, &p, 10);
    if (errno != 0 || p == at + plen || *p != ',')
        return -1;
    const char *q = p + 1;
    *n = strtoll(q, &p, 10);
    if (errno != 0 || p == q || *p != ']')
        return -1;
    return 1;
}

/* Probes the plugin directory and rewrites the cache (when there is one to write). */
static void scan_and_save(cli *c, const char *path, const char *key)
{
    registry_scan(c->reg);
    if (path != NULL && key != NULL)
        cache_save(path, key, c->reg);
}

const json_t *cli_function(cli *c, const char *name)
{
    if (c->reg == NULL || name == NULL)
        return NULL;
    const json_t *fn = registry_function(c->reg, name);
    long long off = 0, n = 0;
    int got = fn == NULL && c->fn_text != NULL ? find_entry(c, name, &off, &n) : 0;
    if (got == 0)
        return fn;
    json_t *parsed = NULL;
    if (got == 1 && off >= 0 && n > 0 && (size_t)off + (size_t)n <= c->fn_len - c->fn_body) {
        char *one = malloc((size_t)n);
        if (one == NULL)
            abort();
        if (pread(c->fn_fd, one, (size_t)n, (off_t)(c->fn_body + (size_t)off)) == (ssize_t)n)
            parsed = json_loadb(one, (size_t)n, 0, NULL);
        free(one);
    }
    if (!json_is_object(parsed)) {
        /* A damaged entry: forget the cache and probe, as for a damaged file. */
        json_decref(parsed);
        cli_fncache_forget(c);
        char *path = cache_path(&c->cfg);
        char *key = current_key(&c->cfg);
        scan_and_save(c, path, key);
        free(key);
        free(path);
        return registry_function(c->reg, name);
    }
    json_object_set_new(c->reg->by_name, name, parsed);
    return parsed;
}

void cli_fncache_forget(cli *c)
{
    if (c->fn_text != NULL)
        close(c->fn_fd);
    free(c->fn_text);
    c->fn_text = NULL;
    c->fn_len = c->fn_body = c->fn_index = 0;
}

int cli_registry_load(cli *c, int probe)
{
    if (c->reg && (!probe || c->fn_text == NULL))
        return 0;
    if (cli_config(c) != 0)
        return -1;
    if (c->reg) {
        /* Known from the cache until now: a probe replaces it. */
        cli_fncache_forget(c);
        registry_free(c->reg);
        free(c->reg);
    }
    c->reg = calloc(1, sizeof(*c->reg));
    registry_init(c->reg, c->cfg.plugin_dir, c->cfg.plugin_sections);
    c->reg->log_refusals = 0;
    char *path = cache_path(&c->cfg);
    char *key = current_key(&c->cfg);
    /* From the cache, descriptors are parsed one by one as they are asked for
     * (cli_function). */
    if (!(path != NULL && key != NULL && !probe && cache_use(c, path, key) == 0))
        scan_and_save(c, path, key);
    free(key);
    free(path);
    return 0;
}
