/*
 * The plugin registry: what the plugin directory offers. The host never runs plugin code in
 * its own process: every .so is opened, checked and initialised in a short-lived probe
 * process of its own, which reports the plugin's descriptor as JSON. The probes of one scan
 * run side by side (up to PROBES_AT_ONCE, registry.c), each under its own deadline. A plugin
 * that crashes in its entry point or init() takes only its probe down and is refused with
 * the signal as the reason.
 */
#ifndef FERRY_REGISTRY_H
#define FERRY_REGISTRY_H

#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include <jansson.h>

typedef struct registry_plugin {
    char *path; /* full path of the .so */
    char *file; /* its base name */
    dev_t dev;  /* identity of the file when probed: a change means a new probe */
    ino_t ino;
    off_t size;
    struct timespec mtime;
    mode_t mode;       /* a chmod (o-w fixed) is a change too */
    int loaded;        /* 1: usable; 0: refused */
    int incumbent;     /* 1: loaded at the last scan: keeps its names (registry_scan) */
    int replaced;      /* 1: its file changed since the last scan (a new version) */
    int unsafe;        /* 1: refused for a world-writable file or directory */
    char *reason;      /* why it was refused (NULL when loaded) */
    json_t *info;      /* {"name","version","summary","abi"} or NULL */
    json_t *functions; /* array of function descriptors (see registry_function) */
    char *hook_dir;    /* its hook_dir template (plugin.h), or NULL */
} registry_plugin;

typedef struct registry {
    char *dir;
    json_t *plugin_config; /* object: plugin name -> its config section (borrowed copy) */
    registry_plugin *plugins;
    size_t n_plugins;
    json_t *by_name;     /* object: function name -> descriptor (borrowed from plugins) */
    unsigned generation; /* +1 whenever the set of usable functions may have changed */
    int log_refusals;    /* 1: each refusal is one host log line */
    struct registry_pending *pending; /* a scan begun and not yet ended */
} registry;

/*
 * Prepares a registry for dir. plugin_config (borrowed, copied) holds the plugins' config
 * sections by plugin name, handed to each plugin's init() in the probe.
 */
void registry_init(registry *reg, const char *dir, const json_t *plugin_config);

/*
 * Scans the directory: probes new and changed .so files, forgets removed ones, refuses
 * world-writable files and directories, and settles clashes (two files declaring the same
 * function or plugin name) by one rule that does not depend on file names:
 *   1. a loaded plugin keeps every name it has: a newcomer (a file that was not loaded)
 *      that declares one of them is refused. A loaded file replaced by a new version is
 *      judged next, against the unchanged ones: it keeps what it had unless another
 *      loaded plugin holds the name;
 *   2. among newcomers (at the first scan every file is one), a bundled plugin (core.so,
 *      ops.so, repo.so: the files ferry installs, declaring the plugin of the same name)
 *      wins over one that is not;
 *   3. two plugins of the same step that clash are both refused, each naming the other,
 *      until one is removed or renamed.
 * A file refused for being world-writable, or for a world-writable directory, is probed
 * again at the first scan after the chmod. Returns the number of plugins whose state changed
 * (0: nothing new). Never fails: problems become refusals with a reason.
 */
int registry_scan(registry *reg);

/*
 * registry_scan in two halves, so that the probes run while the caller does something else
 * (the host opens its store meanwhile): begin lists the directory and starts the probes;
 * end waits for them (a probe is killed PROBE_TIMEOUT_MS, registry.c, after its start, and
 * never sooner than that after end is called), then settles and logs exactly as
 * registry_scan. In between, the registry must not be used; registry_free kills and reaps
 * the probes unheard.
 */
void registry_scan_begin(registry *reg);
int registry_scan_end(registry *reg);

/*
 * Like registry_scan, but probes every file again (SIGHUP). Plugins whose files did not
 * change keep their names as in registry_scan.
 */
int registry_rescan_all(registry *reg);

/*
 * Looks up a usable function. The descriptor is borrowed from the registry and valid until
 * the next scan:
 * {"name","plugin","path","summary","description","flags":["idempotent",...],
 *  "timeout":seconds,"params":[{"name","type","required","secret","default","description"}]}
 */
const json_t *registry_function(const registry *reg, const char *name);

struct ferry_fn;
/*
 * Looks up a usable function as the host acts on it (descriptor.h: name, plugin, path,
 * FERRY_FN_* flags, default timeout). Returns 0 with *out filled (borrowed from the
 * registry, valid until the next scan), or -1 when no usable function has that name.
 */
int registry_fn(const registry *reg, const char *name, struct ferry_fn *out);

/*
 * Where the hooks of an item with these params run on this machine (facts borrowed): the
 * first usable plugin's hook_dir that applies (proto_hook_dir()), or NULL. Caller frees.
 */
char *registry_hook_dir(const registry *reg, const json_t *machine, const json_t *params);

/* Frees everything. */
void registry_free(registry *reg);

/* The plugins, loaded and refused, as a JSON array for `ferry plugins`. New reference. */
json_t *registry_plugins_json(const registry *reg);

/* Every usable function's descriptor, sorted by name, as a JSON array. New reference. */
json_t *registry_functions_json(const registry *reg);

/* Writes docs/functions.md from the descriptors. */
void registry_write_markdown(const registry *reg, FILE *out);

#endif
