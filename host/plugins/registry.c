/*
 * The plugin registry: scans the plugin directory and probes each .so in a child process.
 * See registry.h for the contract.
 */
#include "registry.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ferry/plugin.h>

#include "descriptor.h"
#include "log.h"
#include "proto.h"
#include "util.h"
#include "worker.h"

/* How long a probe may take (dlopen + entry + init) before it is killed. */
#define PROBE_TIMEOUT_MS 10000
/* Probes running at once: each holds a process and two pipes of the host's descriptors,
 * which a directory of hundreds of plugins must not exhaust. */
#define PROBES_AT_ONCE 16

void registry_init(registry *reg, const char *dir, const json_t *plugin_config)
{
    memset(reg, 0, sizeof(*reg));
    reg->dir = xstrdup(dir);
    reg->plugin_config = plugin_config ? json_deep_copy(plugin_config) : json_object();
    reg->by_name = json_object();
    reg->log_refusals = 1;
}

static void plugin_clear(registry_plugin *p)
{
    free(p->path);
    free(p->file);
    free(p->reason);
    free(p->hook_dir);
    json_decref(p->info);
    json_decref(p->functions);
    memset(p, 0, sizeof(*p));
}

struct registry_pending;
static void pending_free(struct registry_pending *pd);

void registry_free(registry *reg)
{
    if (reg->pending)
        pending_free(reg->pending);
    for (size_t i = 0; i < reg->n_plugins; i++)
        plugin_clear(&reg->plugins[i]);
    free(reg->plugins);
    free(reg->dir);
    json_decref(reg->plugin_config);
    json_decref(reg->by_name);
    memset(reg, 0, sizeof(*reg));
}

/* --- the probe: runs in a child process ---------------------------------------------- */

static void probe_report(int fd, const char *stage, json_t *result, const char *reason)
{
    struct proto_probe probe = {.stage = stage, .result = result, .reason = reason};
    json_t *m = proto_build_probe(&probe);
    if (m)
        proto_send(fd, m);
    json_decref(m);
}

static int has_elf_header(const char *path)
{
    unsigned char magic[4] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, magic, 4);
    close(fd);
    return n == 4 && magic[0] == 0x7f && magic[1] == 'E' && magic[2] == 'L' && magic[3] == 'F';
}

/* Everything that touches plugin code. Never returns. */
static void probe_child(int fd, const char *path, const json_t *plugin_config)
{
    char reason[512] = "";
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
        dup2(devnull, STDOUT_FILENO); /* a chatty plugin must not corrupt our output */
        close(devnull);
    }
    if (!has_elf_header(path)) {
        probe_report(fd, "done", NULL, "not a shared object (no ELF header)");
        _exit(0);
    }
    probe_report(fd, "dlopen", NULL, NULL);
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        snprintf(reason, sizeof(reason), "cannot load: %s", dlerror());
        probe_report(fd, "done", NULL, reason);
        _exit(0);
    }
    ferry_plugin_entry_fn entry;
    *(void **)&entry = dlsym(handle, FERRY_PLUGIN_ENTRY_SYMBOL);
    if (entry == NULL) {
        probe_report(fd, "done", NULL,
                     "no " FERRY_PLUGIN_ENTRY_SYMBOL " symbol: not a ferry plugin (define it "
                     "with FERRY_PLUGIN(...) from <ferry/plugin.h>)");
        _exit(0);
    }
    probe_report(fd, "entry", NULL, NULL);
    const ferry_plugin *plugin = entry();
    json_t *desc = descriptor_read(plugin, reason, sizeof(reason));
    if (desc == NULL) {
        probe_report(fd, "done", NULL, reason);
        _exit(0);
    }
    const char *name = json_string_value(json_object_get(desc, "name"));
    json_t *section = json_object_get(plugin_config, name);
    json_t *config = json_is_object(section) ? json_incref(section) : json_object();
    probe_report(fd, "init", NULL, NULL);
    if (descriptor_init(plugin, worker_host_table(), config, reason, sizeof(reason)) != 0) {
        probe_report(fd, "done", NULL, reason);
        _exit(0);
    }
    descriptor_fini(plugin); /* the probe ends here: the pair plugin.h promises */
    probe_report(fd, "done", desc, NULL);
    _exit(0);
}

static const char *stage_words(const char *stage)
{
    if (strcmp(stage, "dlopen") == 0)
        return "while loading (a constructor)";
    if (strcmp(stage, "entry") == 0)
        return "in its entry point";
    if (strcmp(stage, "init") == 0)
        return "in init()";
    return "";
}

/* A probe's stderr: the first PROBE_STDERR_MAX bytes are kept, the rest counted. */
#define PROBE_STDERR_MAX 4096
typedef struct {
    int fd; /* read end, non-blocking; -1 once closed */
    char buf[PROBE_STDERR_MAX];
    size_t len, dropped;
} probe_stderr;

/* Reads what the probe wrote so far; closes the pipe at its end. */
static void probe_stderr_read(probe_stderr *e)
{
    char chunk[4096];
    for (;;) {
        ssize_t n = read(e->fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0 || errno != EAGAIN) {
                close(e->fd);
                e->fd = -1;
            }
            return;
        }
        size_t keep = sizeof(e->buf) - e->len < (size_t)n ? sizeof(e->buf) - e->len : (size_t)n;
        memcpy(e->buf + e->len, chunk, keep);
        e->len += keep;
        e->dropped += (size_t)n - keep;
    }
}

/* After the probe ended: what it wrote, escaped, as one warning in the host log. A child
 * the plugin left holding the pipe cannot make us wait: the pipe is read without blocking. */
static void probe_stderr_end(probe_stderr *e, const char *path)
{
    if (e->fd >= 0)
        probe_stderr_read(e);
    if (e->fd >= 0)
        close(e->fd);
    e->fd = -1;
    if (e->len == 0)
        return;
    char *clean = proto_clean_bytes(e->buf, e->len, PROBE_STDERR_MAX);
    hlog(LOG_WARN, "plugin %s wrote on stderr while loading: %s%s", path, clean ? clean : "",
         e->dropped ? " (more not kept)" : "");
    free(clean);
}

/* One probe under way, from probe_start to probe_end. */
typedef struct {
    pid_t pid;          /* 0: none started */
    int fd;             /* its reports; -1 once they ended */
    probe_stderr err;   /* what it writes on stderr */
    json_t *result;     /* the descriptor it reported, if any */
    char stage[32];     /* the last stage it reported */
    char *last_reason;  /* the last refusal it reported, if any */
    int queued;         /* to be started when fewer than PROBES_AT_ONCE run */
    int64_t deadline;   /* when it is killed (mono_ms) */
    int timed_out;      /* killed at the deadline */
    char failed[128];   /* why it could not be started ("" when it was) */
} probe_run;

/* The descriptor the probe's report pipe is moved to in the child. */
#define PROBE_REPORT_FD 3

/* Starts probing one file in a child; probe_wait hears it, probe_end judges it. */
static void probe_start(probe_run *run, const char *path, const json_t *plugin_config)
{
    int fds[2], errfds[2];
    memset(run, 0, sizeof(*run));
    run->fd = run->err.fd = -1;
    snprintf(run->stage, sizeof(run->stage), "start");
    if (pipe2(fds, O_CLOEXEC) != 0) {
        seterr(run->failed, sizeof(run->failed), "cannot probe: pipe: %s", strerror(errno));
        return;
    }
    if (pipe2(errfds, O_CLOEXEC | O_NONBLOCK) != 0) {
        close(fds[0]);
        close(fds[1]);
        seterr(run->failed, sizeof(run->failed), "cannot probe: pipe: %s", strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        close(errfds[0]);
        close(errfds[1]);
        seterr(run->failed, sizeof(run->failed), "cannot probe: fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        /* What the plugin writes on stderr while loading reaches the host log only
         * escaped (probe_stderr), never raw: it could forge log lines. */
        int flags = fcntl(errfds[1], F_GETFL);
        fcntl(errfds[1], F_SETFL, flags & ~O_NONBLOCK);
        dup2(errfds[1], STDERR_FILENO);
        /* The plugin sees its own report pipe and nothing else the host holds: not the
         * store, nor the pipes of the probes running beside it, whose reports it could
         * otherwise read or hold open. The report pipe stays closed on exec: a command
         * the plugin starts must not keep it open. */
        if (fds[1] != PROBE_REPORT_FD)
            dup3(fds[1], PROBE_REPORT_FD, O_CLOEXEC);
        close_range(PROBE_REPORT_FD + 1, ~0U, 0);
        probe_child(PROBE_REPORT_FD, path, plugin_config);
    }
    close(fds[1]);
    close(errfds[1]);
    run->pid = pid;
    run->fd = fds[0];
    run->err.fd = errfds[0];
    run->deadline = mono_ms() + PROBE_TIMEOUT_MS;
}

/* Starts queued probes, in file order, while fewer than PROBES_AT_ONCE are reporting. */
static void probe_more(probe_run *runs, const registry_plugin *files, size_t n,
                       const json_t *plugin_config)
{
    size_t busy = 0;
    for (size_t i = 0; i < n; i++)
        busy += runs[i].fd >= 0;
    for (size_t i = 0; i < n && busy < PROBES_AT_ONCE; i++) {
        if (runs[i].queued) {
            probe_start(&runs[i], files[i].path, plugin_config);
            busy += runs[i].fd >= 0;
        }
    }
}

/* Takes one report from the probe; at its end (or garbage) closes the report pipe. */
static void probe_hear(probe_run *run)
{
    json_t *m = proto_recv(run->fd);
    struct proto_probe probe;
    if (m == NULL || proto_parse_probe(m, &probe, NULL, 0) != 0) {
        json_decref(m);
        close(run->fd);
        run->fd = -1;
        return;
    }
    snprintf(run->stage, sizeof(run->stage), "%s", probe.stage);
    if (probe.result) {
        json_decref(run->result);
        run->result = json_incref((json_t *)probe.result);
    }
    if (probe.reason) {
        free(run->last_reason);
        run->last_reason = xstrdup(probe.reason);
    }
    json_decref(m);
}

/* Kills a probe at its deadline; probe_end reaps it. */
static void probe_expire(probe_run *run)
{
    run->timed_out = 1;
    close(run->fd);
    run->fd = -1;
    kill(run->pid, SIGKILL);
}

/*
 * Hears the probes side by side, starting the queued ones as others end, until every one
 * has ended its reports or been killed at its deadline: PROBE_TIMEOUT_MS from its start,
 * and never sooner than from now (the caller may have been busy since registry_scan_begin).
 * A slow or hanging plugin costs one deadline, however many there are.
 */
static void probe_wait(probe_run *runs, const registry_plugin *files, size_t n,
                       const json_t *plugin_config)
{
    struct pollfd *fds = calloc(2 * n + 1, sizeof(*fds));
    size_t *of = calloc(2 * n + 1, sizeof(*of));
    int64_t now = mono_ms();
    for (size_t i = 0; i < n; i++)
        if (runs[i].fd >= 0 && runs[i].deadline < now + PROBE_TIMEOUT_MS)
            runs[i].deadline = now + PROBE_TIMEOUT_MS;
    for (;;) {
        probe_more(runs, files, n, plugin_config);
        now = mono_ms();
        int64_t next = now + PROBE_TIMEOUT_MS;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (runs[i].fd >= 0 && now >= runs[i].deadline)
                probe_expire(&runs[i]);
            if (runs[i].fd < 0)
                continue;
            next = runs[i].deadline < next ? runs[i].deadline : next;
            of[k] = i;
            fds[k++] = (struct pollfd){.fd = runs[i].fd, .events = POLLIN};
            if (runs[i].err.fd >= 0) {
                of[k] = i;
                fds[k++] = (struct pollfd){.fd = runs[i].err.fd, .events = POLLIN};
            }
        }
        if (k == 0) {
            int queued = 0;
            for (size_t i = 0; i < n; i++)
                queued |= runs[i].queued;
            if (!queued)
                break;
            continue; /* slots freed by deadlines: start the next */
        }
        if (poll(fds, k, (int)(next - now)) <= 0)
            continue;
        for (size_t j = 0; j < k; j++) {
            probe_run *run = &runs[of[j]];
            if (!fds[j].revents)
                continue;
            if (fds[j].fd == run->err.fd)
                probe_stderr_read(&run->err);
            else if (fds[j].fd == run->fd)
                probe_hear(run);
        }
    }
    free(fds);
    free(of);
}

/*
 * Judges one probe probe_wait heard: reaps it, logs what it wrote on stderr, and returns
 * the descriptor (new reference) or NULL with the refusal reason in reason.
 */
static json_t *probe_end(probe_run *run, const char *path, char *reason, size_t rlen)
{
    if (run->pid <= 0) {
        seterr(reason, rlen, "%s", run->failed);
        return NULL;
    }
    int status = 0;
    while (waitpid(run->pid, &status, 0) < 0 && errno == EINTR)
        ;
    run->pid = 0;
    probe_stderr_end(&run->err, path);
    json_t *result = run->result;
    run->result = NULL;
    const char *stage = run->stage;
    if (run->timed_out) {
        seterr(reason, rlen, "did not finish %s within %d s", stage_words(stage),
               PROBE_TIMEOUT_MS / 1000);
    } else if (WIFSIGNALED(status)) {
        seterr(reason, rlen, "crashed %s: signal %d (%s)", stage_words(stage), WTERMSIG(status),
               strsignal(WTERMSIG(status)));
    } else if (result == NULL && run->last_reason != NULL) {
        seterr(reason, rlen, "%s", run->last_reason);
    } else if (result == NULL || strcmp(stage, "done") != 0) {
        seterr(reason, rlen, "exited %s with status %d", stage_words(stage),
               WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        json_decref(result);
        result = NULL;
    }
    free(run->last_reason);
    run->last_reason = NULL;
    return result;
}

/* Ends a probe nobody will judge (registry_free during a scan): killed, reaped, unlogged. */
static void probe_drop(probe_run *run)
{
    if (run->fd >= 0)
        close(run->fd);
    if (run->err.fd >= 0)
        close(run->err.fd);
    if (run->pid > 0) {
        kill(run->pid, SIGKILL);
        while (waitpid(run->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    json_decref(run->result);
    free(run->last_reason);
    memset(run, 0, sizeof(*run));
}

/* --- the scan ---------------------------------------------------------------------------- */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static registry_plugin *find_plugin(registry *reg, const char *file)
{
    for (size_t i = 0; i < reg->n_plugins; i++)
        if (reg->plugins[i].file != NULL && strcmp(reg->plugins[i].file, file) == 0)
            return &reg->plugins[i];
    return NULL;
}

/* Marks p refused; logs the reason unless p was already refused for the same one. */
static void refuse(registry *reg, registry_plugin *p, const char *why)
{
    int news = p->reason == NULL || strcmp(p->reason, why) != 0;
    p->loaded = 0;
    free(p->reason);
    p->reason = xstrdup(why);
    if (reg->log_refusals && news)
        hlog(LOG_WARN, "plugin %s refused: %s", p->path, why);
}

static int same_identity(const registry_plugin *p, const struct stat *st)
{
    return p->dev == st->st_dev && p->ino == st->st_ino && p->size == st->st_size &&
           p->mtime.tv_sec == st->st_mtim.tv_sec && p->mtime.tv_nsec == st->st_mtim.tv_nsec &&
           p->mode == st->st_mode;
}

/*
 * The refusal a world-writable file or directory earns (empty when neither is), with the
 * fix in it.
 */
static void unsafe_reason(const registry *reg, const registry_plugin *p, const struct stat *st,
                          int dir_unsafe, char *reason, size_t rlen)
{
    reason[0] = '\0';
    if (dir_unsafe)
        snprintf(reason, rlen, "plugin directory %s is world-writable; chmod o-w %s", reg->dir,
                 reg->dir);
    else if ((st->st_mode & S_IWOTH) && p->path != NULL) /* always set; gcc cannot tell */
        snprintf(reason, rlen, "%s is world-writable; chmod o-w %s", p->path, p->path);
}

/* What a scan does with one file. */
enum look { LOOK_KEEP, LOOK_UNSAFE, LOOK_PROBE };

/*
 * Whether one file is looked at again: it is probed again when it changed on disk (identity
 * or mode), when force is set, or when it was refused for being writable and is no longer;
 * refused without a probe while it or its directory is world-writable.
 */
static enum look look_at(const registry *reg, const registry_plugin *p, const struct stat *st,
                         int dir_unsafe, int force)
{
    char reason[600];
    int same = p->path != NULL && same_identity(p, st);
    unsafe_reason(reg, p, st, dir_unsafe, reason, sizeof(reason));
    if (same && p->unsafe && reason[0] && p->reason && strcmp(p->reason, reason) == 0)
        return LOOK_KEEP; /* still refused for the same reason: no news, no log line */
    if (same && !force && !p->unsafe && !reason[0] && (p->functions || p->reason))
        return LOOK_KEEP;
    return reason[0] ? LOOK_UNSAFE : LOOK_PROBE;
}

/*
 * Takes in one file look_at did not keep: its identity, and its refusal or the descriptor
 * its probe (run, heard by probe_wait) reported.
 */
static void examine(registry *reg, registry_plugin *p, const struct stat *st, int dir_unsafe,
                    probe_run *run)
{
    char reason[600];
    int same = p->path != NULL && same_identity(p, st);
    unsafe_reason(reg, p, st, dir_unsafe, reason, sizeof(reason));
    if (!same) {
        p->replaced = 1; /* a new version: it keeps only names it had (registry.h, rule 1) */
        free(p->reason); /* and a refusal it earns again is news */
        p->reason = NULL;
    }
    json_decref(p->info);
    json_decref(p->functions);
    p->info = p->functions = NULL;
    free(p->hook_dir);
    p->hook_dir = NULL;
    p->dev = st->st_dev;
    p->ino = st->st_ino;
    p->size = st->st_size;
    p->mtime = st->st_mtim;
    p->mode = st->st_mode;
    p->unsafe = reason[0] != '\0';
    if (p->unsafe) {
        p->incumbent = 0;
        refuse(reg, p, reason);
        return;
    }
    json_t *desc = probe_end(run, p->path, reason, sizeof(reason));
    if (desc == NULL) {
        p->incumbent = 0;
        refuse(reg, p, reason);
        return;
    }
    p->info = json_pack("{s:O,s:O,s:O,s:O}", "name", json_object_get(desc, "name"), "version",
                        json_object_get(desc, "version"), "summary",
                        json_object_get(desc, "summary"), "abi", json_object_get(desc, "abi"));
    p->functions = json_incref(json_object_get(desc, "functions"));
    free(p->hook_dir);
    p->hook_dir = json_string_value(json_object_get(desc, "hook_dir"))
                      ? xstrdup(json_string_value(json_object_get(desc, "hook_dir")))
                      : NULL;
    json_decref(desc);
    p->loaded = 1;
    free(p->reason);
    p->reason = NULL;
}

/* --- clashes ------------------------------------------------------------------------------ */

/* The plugins ferry installs: a file NAME.so declaring plugin NAME wins a clash among
 * newcomers (registry.h, rule 2). Keep in step with plugins/. */
static const char *const bundled_plugins[] = {"core", "ops", "repo"};

static const char *plugin_name(const registry_plugin *p)
{
    return json_string_value(json_object_get(p->info, "name"));
}

static int is_bundled(const registry_plugin *p)
{
    const char *name = plugin_name(p);
    size_t len = strlen(p->file);
    for (size_t i = 0; i < sizeof(bundled_plugins) / sizeof(bundled_plugins[0]); i++)
        if (strcmp(name, bundled_plugins[i]) == 0 && len == strlen(name) + 3 &&
            strncmp(p->file, name, len - 3) == 0)
            return 1;
    return 0;
}

/*
 * Describes the first name p shares with the usable index (function names in by_name, plugin
 * names in plugin_names): returns 1 with the reason, or 0.
 */
static int clashes_with_index(const registry *reg, const json_t *plugin_names,
                              const registry_plugin *p, char *reason, size_t rlen)
{
    const char *other = json_string_value(json_object_get(plugin_names, plugin_name(p)));
    if (other != NULL) {
        snprintf(reason, rlen,
                 "plugin name '%s' is already used by %s, which is loaded; "
                 "rename one of them",
                 plugin_name(p), other);
        return 1;
    }
    size_t k;
    json_t *fn;
    json_array_foreach (p->functions, k, fn) {
        const char *fname = json_string_value(json_object_get(fn, "name"));
        const json_t *prev = json_object_get(reg->by_name, fname);
        if (prev == NULL)
            continue;
        snprintf(reason, rlen,
                 "function '%s' is already provided by plugin %s (%s), which is loaded; a "
                 "plugin cannot take over a loaded function: rename it or remove one of the "
                 "files",
                 fname, json_string_value(json_object_get(prev, "plugin")),
                 json_string_value(json_object_get(prev, "path")));
        return 1;
    }
    return 0;
}

/* Describes the first name two plugins share: returns 1 with the reason (for a), or 0. */
static int clashes_with(const registry_plugin *a, const registry_plugin *b, char *reason,
                        size_t rlen)
{
    const char *what = NULL, *name = NULL;
    if (strcmp(plugin_name(a), plugin_name(b)) == 0) {
        what = "plugin name";
        name = plugin_name(a);
    }
    size_t i, k;
    json_t *fa, *fb;
    json_array_foreach (a->functions, i, fa) {
        json_array_foreach (b->functions, k, fb) {
            if (name == NULL &&
                json_equal(json_object_get(fa, "name"), json_object_get(fb, "name"))) {
                what = "function";
                name = json_string_value(json_object_get(fa, "name"));
            }
        }
    }
    if (name == NULL)
        return 0;
    snprintf(reason, rlen,
             "%s '%s' is also declared by %s; neither is loaded until one of "
             "them is renamed or removed",
             what, name, b->path);
    return 1;
}

static void admit(registry *reg, json_t *plugin_names, registry_plugin *p)
{
    size_t k;
    json_t *fn;
    p->loaded = 1;
    free(p->reason);
    p->reason = NULL;
    json_object_set_new(plugin_names, plugin_name(p), json_string(p->file));
    json_array_foreach (p->functions, k, fn) {
        json_object_set_new(fn, "plugin", json_string(plugin_name(p)));
        json_object_set_new(fn, "path", json_string(p->path));
        json_object_set(reg->by_name, json_string_value(json_object_get(fn, "name")), fn);
    }
}

/* The order in which plugins are given their names (registry.h's rules). */
enum rank { UNCHANGED, REPLACED, BUNDLED, OTHER };

static enum rank rank_of(const registry_plugin *p)
{
    if (p->incumbent)
        return p->replaced ? REPLACED : UNCHANGED;
    return is_bundled(p) ? BUNDLED : OTHER;
}

/*
 * Gives the plugins of one rank their names: each that clashes with the index is refused;
 * of the rest, every one that clashes with another of its rank is refused too (both sides,
 * so file names decide nothing), and the others are admitted.
 */
static void admit_rank(registry *reg, json_t *plugin_names, enum rank rank, char *pending)
{
    char reason[900];
    memset(pending, 0, reg->n_plugins);
    for (size_t i = 0; i < reg->n_plugins; i++) {
        registry_plugin *p = &reg->plugins[i];
        if (p->functions == NULL || rank_of(p) != rank)
            continue; /* refused by its probe, or not this rank */
        if (clashes_with_index(reg, plugin_names, p, reason, sizeof(reason)))
            refuse(reg, p, reason);
        else
            pending[i] = 1;
    }
    for (size_t i = 0; i < reg->n_plugins; i++) {
        for (size_t j = 0; pending[i] && j < reg->n_plugins; j++) {
            if (j != i && pending[j] &&
                clashes_with(&reg->plugins[i], &reg->plugins[j], reason, sizeof(reason))) {
                refuse(reg, &reg->plugins[i], reason);
                pending[i] = 2; /* refused, but still counts against the others */
            }
        }
    }
    for (size_t i = 0; i < reg->n_plugins; i++)
        if (pending[i] == 1)
            admit(reg, plugin_names, &reg->plugins[i]);
}

/* Rebuilds by_name by the clash rules of registry.h, rank by rank. */
static void rebuild_index(registry *reg)
{
    json_object_clear(reg->by_name);
    json_t *plugin_names = json_object();
    char *pending = calloc(reg->n_plugins ? reg->n_plugins : 1, 1);
    for (enum rank r = UNCHANGED; r <= OTHER; r++)
        admit_rank(reg, plugin_names, r, pending);
    for (size_t i = 0; i < reg->n_plugins; i++) {
        reg->plugins[i].incumbent = reg->plugins[i].loaded;
        reg->plugins[i].replaced = 0;
    }
    free(pending);
    json_decref(plugin_names);
}

/* A scan between registry_scan_begin and registry_scan_end. */
struct registry_pending {
    int dir_errno;         /* opening the directory failed: nothing else below is set */
    int dir_unsafe;        /* the directory is world-writable */
    int changed;           /* a file came or went */
    size_t n;              /* the directory's .so files, sorted by name: */
    registry_plugin *next; /* each one's entry, moved from reg->plugins when it had one */
    struct stat *st;       /* its stat */
    int *stat_errno;       /* or why its stat failed */
    enum look *look;       /* what is done with it */
    probe_run *runs;       /* its probe when look is LOOK_PROBE */
};

static void pending_free(struct registry_pending *pd)
{
    for (size_t i = 0; i < pd->n; i++) {
        probe_drop(&pd->runs[i]);
        plugin_clear(&pd->next[i]);
    }
    free(pd->next);
    free(pd->st);
    free(pd->stat_errno);
    free(pd->look);
    free(pd->runs);
    free(pd);
}

/* Lists the directory, decides what each file needs, and starts every probe at once. */
static void scan_begin(registry *reg, int force)
{
    struct registry_pending *pd = calloc(1, sizeof(*pd));
    reg->pending = pd;
    struct stat dst;
    DIR *d = opendir(reg->dir);
    if (d == NULL || fstat(dirfd(d), &dst) != 0) {
        pd->dir_errno = errno ? errno : EIO;
        if (d)
            closedir(d);
        return;
    }
    pd->dir_unsafe = (dst.st_mode & S_IWOTH) != 0;

    size_t n = 0, cap = 16;
    char **names = malloc(cap * sizeof(*names));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0 || e->d_name[0] == '.')
            continue;
        if (n == cap)
            names = realloc(names, (cap *= 2) * sizeof(*names));
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_names);

    size_t slots = n ? n : 1;
    pd->n = n;
    pd->next = calloc(slots, sizeof(*pd->next));
    pd->st = calloc(slots, sizeof(*pd->st));
    pd->stat_errno = calloc(slots, sizeof(*pd->stat_errno));
    pd->look = calloc(slots, sizeof(*pd->look));
    pd->runs = calloc(slots, sizeof(*pd->runs));
    for (size_t i = 0; i < n; i++) {
        registry_plugin *p = &pd->next[i];
        registry_plugin *old = find_plugin(reg, names[i]);
        pd->runs[i].fd = pd->runs[i].err.fd = -1;
        if (old != NULL) {
            *p = *old;
            memset(old, 0, sizeof(*old));
        } else {
            p->file = xstrdup(names[i]);
            p->path = xasprintf("%s/%s", reg->dir, names[i]);
            pd->changed = 1;
        }
        free(names[i]);
        if (stat(p->path, &pd->st[i]) != 0) {
            pd->stat_errno[i] = errno;
            continue;
        }
        pd->look[i] = look_at(reg, p, &pd->st[i], pd->dir_unsafe, force);
        pd->runs[i].queued = pd->look[i] == LOOK_PROBE;
    }
    free(names);
    probe_more(pd->runs, pd->next, n, reg->plugin_config);
}

/*
 * Waits for the probes and takes in every file in name order, so that the registry and
 * its log lines come out as if each file had been probed in turn.
 */
static int scan_end(registry *reg)
{
    struct registry_pending *pd = reg->pending;
    reg->pending = NULL;
    if (pd->dir_errno != 0) {
        if (reg->log_refusals)
            hlog(LOG_WARN, "plugin directory %s: %s", reg->dir, strerror(pd->dir_errno));
        int changed = reg->n_plugins > 0;
        for (size_t i = 0; i < reg->n_plugins; i++)
            plugin_clear(&reg->plugins[i]);
        reg->n_plugins = 0;
        json_object_clear(reg->by_name);
        reg->generation += changed;
        pending_free(pd);
        return changed;
    }
    probe_wait(pd->runs, pd->next, pd->n, reg->plugin_config);
    int changed = pd->changed;
    for (size_t i = 0; i < pd->n; i++) {
        registry_plugin *p = &pd->next[i];
        if (pd->stat_errno[i] != 0) {
            p->incumbent = 0;
            refuse(reg, p, strerror(pd->stat_errno[i]));
            changed = 1;
        } else if (pd->look[i] != LOOK_KEEP) {
            examine(reg, p, &pd->st[i], pd->dir_unsafe, &pd->runs[i]);
            changed = 1;
        }
    }
    for (size_t i = 0; i < reg->n_plugins; i++) {
        if (reg->plugins[i].file != NULL) {
            changed = 1; /* removed from the directory */
            plugin_clear(&reg->plugins[i]);
        }
    }
    free(reg->plugins);
    reg->plugins = pd->next;
    reg->n_plugins = pd->n;
    pd->next = NULL;
    pd->n = 0;
    pending_free(pd);
    if (changed) {
        rebuild_index(reg);
        reg->generation++;
    }
    return changed;
}

void registry_scan_begin(registry *reg)
{
    scan_begin(reg, 0);
}

int registry_scan_end(registry *reg)
{
    return scan_end(reg);
}

int registry_scan(registry *reg)
{
    scan_begin(reg, 0);
    return scan_end(reg);
}

int registry_rescan_all(registry *reg)
{
    scan_begin(reg, 1);
    return scan_end(reg);
}

const json_t *registry_function(const registry *reg, const char *name)
{
    return json_object_get(reg->by_name, name);
}

int registry_fn(const registry *reg, const char *name, struct ferry_fn *out)
{
    return descriptor_fn(name ? json_object_get(reg->by_name, name) : NULL, out);
}

json_t *registry_plugins_json(const registry *reg)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < reg->n_plugins; i++) {
        const registry_plugin *p = &reg->plugins[i];
        json_t *row =
            json_pack("{s:s,s:s,s:b}", "file", p->file, "path", p->path, "loaded", p->loaded);
        json_t *names = json_array();
        if (p->info) {
            json_object_update(row, p->info);
            size_t k;
            json_t *fn;
            json_array_foreach (p->functions, k, fn)
                json_array_append(names, json_object_get(fn, "name"));
        }
        json_object_set_new(row, "functions", names);
        json_object_set_new(row, "reason", p->reason ? json_string(p->reason) : json_null());
        json_array_append_new(arr, row);
    }
    return arr;
}

static int cmp_fn(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "name"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "name"));
    return strcmp(x, y);
}

json_t *registry_functions_json(const registry *reg)
{
    size_t n = json_object_size(reg->by_name), i = 0;
    json_t **list = calloc(n ? n : 1, sizeof(*list));
    const char *key;
    json_t *fn;
    json_object_foreach (reg->by_name, key, fn)
        list[i++] = fn;
    qsort(list, n, sizeof(*list), cmp_fn);
    json_t *arr = json_array();
    for (i = 0; i < n; i++)
        json_array_append(arr, list[i]);
    free(list);
    return arr;
}

void registry_write_markdown(const registry *reg, FILE *out)
{
    json_t *fns = registry_functions_json(reg);
    descriptor_write_markdown(fns, out);
    json_decref(fns);
}

char *registry_hook_dir(const registry *reg, const json_t *machine, const json_t *params)
{
    for (size_t i = 0; i < reg->n_plugins; i++) {
        const registry_plugin *p = &reg->plugins[i];
        char *dir = p->loaded && p->hook_dir ? proto_hook_dir(p->hook_dir, machine, params) : NULL;
        if (dir)
            return dir;
    }
    return NULL;
}
