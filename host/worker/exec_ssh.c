/*
 * Running a command on a remote machine with the OpenSSH client.
 *
 * Secrets: the private key (and pinned host keys) are written into memfds of mode 0600 that
 * ssh opens as /proc/<our pid>/fd/<n>. They never touch a disk and vanish with the last
 * descriptor, so a worker killed mid-command leaves nothing behind. ssh's own diagnostics go
 * to a third memfd (-E), kept apart from the command's output, so that a failed connection
 * (exit 255 with a diagnostic) can be told from a command that exits 255.
 *
 * Sharing: an attempt's commands to a machine are sessions of one connection, whose master the
 * first of them starts (see "one connection per attempt" below).
 *
 * Stopping: ssh without a terminal does not signal the remote command when the connection
 * drops. So the command runs under a small remote wrapper (REMOTE_WRAPPER) that starts it in
 * a session of its own (setsid) and watches the connection's stdin: we hold our end open for
 * as long as ssh runs, so end-of-file there means the client is gone (timeout, cancel, worker
 * killed), and the wrapper then kills the command's process group: SIGTERM, then SIGKILL.
 *
 * The streaming exec (exec_stream.c) needs the connection's stdin and stdout for the
 * command's data, so its wrapper (STREAM_WRAPPER) watches something else: its parent, the
 * sshd session process that serves the connection. sshd does not signal a command without a
 * terminal when the connection ends, but the session process itself exits, and the wrapper is
 * re-parented (to init or a subreaper). The wrapper's watchdog looks once a second and then
 * kills the command's process group, as above.
 */
#include "exec.h"
#include "ssh_options.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#define DEFAULT_CONNECT_TIMEOUT_S 10
#define MAX_SSH_ARGS              80
#define SSH_LOG_MAX               4096
#define SEEN_PATH_MAX             1024

/*
 * Run by `sh -c WRAPPER ferry-exec N COMMAND` on the remote machine. The first N bytes of
 * stdin are the command's input; the rest of stdin is the liveness channel described above.
 * A background list's stdin is /dev/null in a non-interactive shell, hence fd 3. After a
 * normal end the watchdog is stopped and whatever the command left running (services it
 * started on purpose) is left alone. When the client is gone the watchdog, not the wrapper,
 * removes the wrapper's directory (and escalates to SIGKILL): the wrapper exits as soon as
 * the command has, so that over the attempt's shared connection, which stays up, the
 * session and its channel end with the command, not 2 s later. The command's
 * stderr joins its stdout on the machine, as a local command's does, so the output keeps
 * the order it was written in (SSH carries the two streams on separate channels, and the
 * client would interleave them by arrival).
 */
static const char REMOTE_WRAPPER[] =
    "n=$1; cmd=$2\n"
    "d=$(mktemp -d 2>/dev/null || mktemp -d -t ferry.XXXXXX) || exit 125\n"
    "in=/dev/null\n"
    "if [ \"$n\" -gt 0 ]; then in=$d/in; head -c \"$n\" >\"$in\"; fi\n"
    "exec 3<&0\n"
    "if command -v setsid >/dev/null 2>&1; then setsid sh -c \"$cmd\" <\"$in\" 2>&1 &\n"
    "else sh -c \"$cmd\" <\"$in\" 2>&1 & fi\n"
    "pid=$!\n"
    "( cat <&3 >/dev/null 2>&1; : >\"$d/lost\"\n"
    "  kill -TERM -\"$pid\" 2>/dev/null || kill -TERM \"$pid\" 2>/dev/null\n"
    "  sleep 2; kill -KILL -\"$pid\" 2>/dev/null || kill -KILL \"$pid\" 2>/dev/null\n"
    "  rm -rf \"$d\"\n"
    ") >/dev/null 2>&1 &\n"
    "wd=$!\n"
    "exec 3<&-\n"
    "wait \"$pid\"; rc=$?\n"
    "if [ -e \"$d/lost\" ]; then exit \"$rc\"; fi\n"
    "kill \"$wd\" 2>/dev/null\n"
    "rm -rf \"$d\"\n"
    "exit \"$rc\"\n";

/*
 * Run by `sh -c WRAPPER ferry-stream COMMAND` on the remote machine for exec_start: the
 * command gets the connection's stdin and stdout (a background list's stdin would be
 * /dev/null, hence fd 3) and stderr, in a session of its own; the wrapper then lets go of
 * all three, so that the command alone decides when the data ends (its stdout closing is the
 * client's end-of-file; its stdin closing makes the client's writes fail). The watchdog
 * compares the wrapper's parent with the sshd session ($PPID, read from /proc/PID/stat; on a
 * system without /proc, whether that process still exists): a different parent means the
 * connection is gone (client killed, timeout, cancel, dropped network once sshd notices), and
 * the command's group gets SIGTERM, then SIGKILL 2 s later. Once it started killing it
 * ignores the wrapper's SIGTERM, which after a normal end stops it. The command's first
 * stderr line, written before it starts, is "ferry-pgid N": its process group, which the
 * bridge kills through the attempt's shared connection when it stops the stream (that
 * connection stays up, so the watchdog cannot tell; exec_stream.c takes the line off).
 */
static const char STREAM_WRAPPER[] =
    "cmd=$1; p=$PPID; w=$$\n"
    "run='printf \"ferry-pgid %s\\n\" \"$$\" >&2; exec sh -c \"$1\"'\n"
    "exec 3<&0\n"
    "set -- \"$run\" ferry-cmd \"$cmd\"\n"
    "if command -v setsid >/dev/null 2>&1; then setsid sh -c \"$@\" <&3 3<&- &\n"
    "else sh -c \"$@\" <&3 3<&- & fi\n"
    "pid=$!\n"
    "exec 3<&- 0</dev/null 1>/dev/null\n"
    "( while sleep 1; do\n"
    "    if [ -r \"/proc/$w/stat\" ]; then\n"
    "      pp=; read -r _ _ _ pp _ <\"/proc/$w/stat\"; [ \"$pp\" = \"$p\" ] || break\n"
    "    else kill -0 \"$p\" 2>/dev/null || break; fi\n"
    "  done\n"
    "  trap '' TERM\n"
    "  kill -TERM -\"$pid\" 2>/dev/null || kill -TERM \"$pid\" 2>/dev/null\n"
    "  sleep 2; kill -KILL -\"$pid\" 2>/dev/null || kill -KILL \"$pid\" 2>/dev/null\n"
    ") >/dev/null 2>&1 &\n"
    "wd=$!\n"
    "exec 2>/dev/null\n"
    "wait \"$pid\"; rc=$?\n"
    "kill \"$wd\" 2>/dev/null; wait \"$wd\"\n"
    "exit \"$rc\"\n";

/* --- small text helpers ------------------------------------------------------------------ */

/* Appends s to out as one single-quoted shell word. */
static void shell_quote(FILE *out, const char *s)
{
    fputc('\'', out);
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", out);
        else
            fputc(*s, out);
    }
    fputc('\'', out);
}

static int env_name_ok(const char *name)
{
    if (!(isalpha((unsigned char)name[0]) || name[0] == '_'))
        return 0;
    for (const char *c = name; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '_'))
            return 0;
    return 1;
}

/* Decodes standard base64 (whitespace ignored). Returns a malloc'd NUL-terminated buffer, or
 * NULL when text is not base64. */
static char *base64_decode(const char *text)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(text);
    char *out = malloc(n / 4 * 3 + 4);
    if (out == NULL)
        return NULL;
    size_t len = 0;
    unsigned acc = 0;
    int bits = 0, pad = 0;
    for (const char *c = text; *c; c++) {
        if (isspace((unsigned char)*c))
            continue;
        if (*c == '=') {
            pad++;
            continue;
        }
        const char *p = strchr(alphabet, *c);
        if (p == NULL || pad) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (unsigned)(p - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[len++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[len] = '\0';
    return out;
}

/* The private key as OpenSSH wants it: PEM text ending in a newline. Vaults hold it as text,
 * or base64 of the text (as some tools store it). Returns malloc'd text or NULL. */
static char *key_text(const char *value)
{
    char *text = NULL;
    if (strstr(value, "-----BEGIN") != NULL) {
        text = xstrdup(value);
    } else {
        text = base64_decode(value);
        if (text == NULL || strstr(text, "-----BEGIN") == NULL) {
            if (text)
                explicit_bzero(text, strlen(text));
            free(text);
            return NULL;
        }
    }
    size_t len = strlen(text);
    if (len > 0 && text[len - 1] != '\n') {
        char *t = xasprintf("%s\n", text);
        explicit_bzero(text, len);
        free(text);
        text = t;
    }
    return text;
}

/* The machine's key: the attempt's (given), else a plain (unredacted) vault key. */
static const char *machine_key(const char *given, const json_t *machine)
{
    if (given && given[0])
        return given;
    const char *names[] = {"SSH_PRIVATE_KEY", "ssh_private_key"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = json_string_value(json_object_get(machine, names[i]));
        if (v && v[0] && strcmp(v, "********") != 0)
            return v;
    }
    return NULL;
}

/* --- memfds ----------------------------------------------------------------------------- */

/* A 0600 memfd holding text (may be NULL for an empty one); its /proc path in path.
 * Returns the descriptor or -1 with err set. */
static int memfd_with(const char *name, const char *text, char *path, size_t pathlen, char *err,
                      size_t errlen)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0 || fchmod(fd, 0600) != 0) {
        seterr(err, errlen, "cannot create an in-memory file for ssh: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t left = text ? strlen(text) : 0;
    while (left > 0) {
        ssize_t n = write(fd, text, left);
        if (n <= 0) {
            seterr(err, errlen, "cannot write an in-memory file for ssh: %s", strerror(errno));
            close(fd);
            return -1;
        }
        text += n;
        left -= (size_t)n;
    }
    snprintf(path, pathlen, "/proc/%d/fd/%d", (int)getpid(), fd);
    return fd;
}

/*
 * Trust on first use. A machine without pinned host keys is checked against ferry's own
 * known_hosts, the file FERRY_KNOWN_HOSTS names (the host sets it for its workers:
 * var/known_hosts beside the store, serve.c): ssh runs with StrictHostKeyChecking=accept-new
 * on it, so the first connection to an address and port records the server's key and every
 * later one must present that key (a changed key fails: read_ssh_log() says what to do).
 * ssh appends a new key with one write of its line to the file opened O_APPEND, so
 * connections of several workers at once add whole lines; a key recorded twice is harmless.
 * The file is created here 0600 before ssh sees it (made 0600 again when found wider).
 * Without FERRY_KNOWN_HOSTS (a worker a test starts by itself) nothing is kept: accept-new
 * against /dev/null, as before ferry kept host keys.
 * Returns the path, NULL when there is none, or "" with err set when it cannot be used.
 */
static const char *seen_hosts(char *err, size_t errlen)
{
    const char *path = getenv("FERRY_KNOWN_HOSTS");
    if (path == NULL || path[0] == '\0')
        return NULL;
    /* ssh splits the option's value at blanks and expands % and ~ in it. */
    if (path[0] != '/' || strlen(path) >= SEEN_PATH_MAX || strpbrk(path, " \t\"'%~\\") != NULL) {
        seterr(err, errlen,
               "ferry's known_hosts %s must be an absolute path without blanks, quotes, %% or ~ "
               "(it is beside the store: move the store, or set store.path to such a path)",
               path);
        return "";
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        seterr(err, errlen, "cannot open ferry's known_hosts %s: %s", path, strerror(errno));
        return "";
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        ((st.st_mode & 077) != 0 && fchmod(fd, 0600) != 0)) {
        seterr(err, errlen,
               "ferry's known_hosts %s must be a regular file of the host's user, mode 0600", path);
        close(fd);
        return "";
    }
    close(fd);
    return path;
}

/* One connection's facts and its in-memory files. */
struct ssh_conn {
    const char *host, *user, *name;
    long port;
    char login[320];
    int key_fd, hosts_fd, log_fd;     /* memfds, -1 when absent */
    char key[64], hosts[64], log[64]; /* their /proc paths */
    const char *seen;                 /* ferry's known_hosts (seen_hosts()), NULL: pinned or none */
    char opt_port[16], opt_timeout[48], opt_hosts[SEEN_PATH_MAX + 32];
};

/*
 * ssh's verdict from c's log memfd: its last line (where ssh puts the fatal reason), or ""
 * when it logged nothing. A changed host key gets its own plain explanation: against the
 * machine's pins, or against the key ferry recorded at its first connection, with the line
 * to remove when the change is wanted.
 */
static void read_ssh_log(const struct ssh_conn *c, char *out, size_t outlen)
{
    char log[SSH_LOG_MAX];
    ssize_t n = pread(c->log_fd, log, sizeof(log) - 1, 0);
    log[n > 0 ? n : 0] = '\0';
    size_t len = strlen(log);
    while (len > 0 && (log[len - 1] == '\n' || log[len - 1] == '\r' || log[len - 1] == ' '))
        log[--len] = '\0';
    char *last = log + len;
    while (last > log && last[-1] != '\n')
        last--;
    last[strcspn(last, "\r")] = '\0';
    if (strstr(log, "IDENTIFICATION HAS CHANGED") != NULL && c->seen != NULL) {
        /* "Offending ED25519 key in /path/known_hosts:3" */
        long line = 0;
        const char *off = strstr(log, "Offending ");
        const char *colon = off ? strchr(off, '\n') : NULL;
        if (off && colon) {
            const char *p = colon;
            while (p > off && p[-1] >= '0' && p[-1] <= '9')
                p--;
            if (p < colon && p > off && p[-1] == ':')
                line = strtol(p, NULL, 10);
        }
        char entry[300];
        if (c->port == 22)
            snprintf(entry, sizeof(entry), "%s", c->host);
        else
            snprintf(entry, sizeof(entry), "[%s]:%ld", c->host, c->port);
        char at[32] = "";
        if (line > 0)
            snprintf(at, sizeof(at), " line %ld", line);
        snprintf(out, outlen,
                 "the server's host key changed since ferry recorded it at the machine's first "
                 "connection (%s%s): someone may be intercepting the connection; if the key was "
                 "changed on purpose, forget the old one with `ssh-keygen -R '%s' -f %s` and "
                 "the next connection records the new one (%s)",
                 c->seen, at, entry, c->seen, last);
    } else if (strstr(log, "IDENTIFICATION HAS CHANGED") != NULL)
        snprintf(out, outlen,
                 "the server's host key is not the one pinned by the machine's "
                 "known_hosts or host_public_key (%s)",
                 last);
    else
        snprintf(out, outlen, "%s", last);
}

/* --- the command lines -------------------------------------------------------------------- */

/* The remote command line: the wrapper, the stdin length (or the stream wrapper) and the
 * command with its cwd and environment. Returns malloc'd text, or NULL with err set for a bad
 * env name. */
static char *remote_command(const char *command, const json_t *options, size_t stdin_len,
                            int streaming, char *err, size_t errlen)
{
    char *inner = NULL, *line = NULL;
    size_t inner_len = 0, line_len = 0;
    FILE *f = open_memstream(&inner, &inner_len);
    const char *cwd = json_string_value(json_object_get(options, "cwd"));
    if (cwd) {
        fputs("cd ", f);
        shell_quote(f, cwd);
        fputs(" || exit 126\n", f);
    }
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)json_object_get(options, "env"), key, v) {
        if (!json_is_string(v))
            continue;
        if (!env_name_ok(key)) {
            fclose(f);
            free(inner);
            seterr(err, errlen, "environment variable name '%s' is not valid", key);
            return NULL;
        }
        fprintf(f, "export %s=", key);
        shell_quote(f, json_string_value(v));
        fputc('\n', f);
    }
    fputs(command, f);
    fclose(f);
    f = open_memstream(&line, &line_len);
    fputs("exec sh -c ", f);
    if (streaming) {
        shell_quote(f, STREAM_WRAPPER);
        fputs(" ferry-stream ", f);
    } else {
        shell_quote(f, REMOTE_WRAPPER);
        fprintf(f, " ferry-exec %zu ", stdin_len);
    }
    shell_quote(f, inner);
    fclose(f);
    free(inner);
    return line;
}

/* Where to connect: fills host, user (may stay NULL) and port. 0, or -1 with err set. */
static int target(const json_t *machine, const char **host, const char **user, long *port,
                  char *err, size_t errlen)
{
    *host = json_string_value(json_object_get(machine, "ip"));
    if (*host == NULL || (*host)[0] == '\0')
        *host = json_string_value(json_object_get(machine, "host"));
    *user = json_string_value(json_object_get(machine, "user"));
    const json_t *p = json_object_get(machine, "ssh_port");
    if (p == NULL)
        p = json_object_get(machine, "port");
    *port = json_is_integer(p)  ? (long)json_integer_value(p)
            : json_is_string(p) ? strtol(json_string_value(p), NULL, 10)
                                : 22;
    const char *name = json_string_value(json_object_get(machine, "name"));
    if (*host == NULL || (*host)[0] == '\0' || (*host)[0] == '-') {
        seterr(err, errlen,
               "machine %s has no \"ip\" in its vault: set \"ip\" (and \"user\", "
               "\"ssh_port\"), or \"connection\": \"local\" for this host",
               name ? name : "?");
        return -1;
    }
    if (*port <= 0 || *port > 65535 || (*user && (*user)[0] == '-')) {
        seterr(err, errlen, "machine %s: ssh_port must be 1-65535 and user a login name",
               name ? name : "?");
        return -1;
    }
    return 0;
}

/* The pinned host keys as known_hosts text in *text: the vault's known_hosts, or a line made
 * of its host_public_key ("ssh-ed25519 AAAA... comment"); NULL when nothing is pinned.
 * ("host_key" would read as a secret by name, and be redacted.) Returns 0, or -1 with err
 * set when host_public_key is not a public key line. */
static int pinned_hosts(const json_t *machine, const char *host, long port, char **text, char *err,
                        size_t errlen)
{
    *text = NULL;
    const char *known = json_string_value(json_object_get(machine, "known_hosts"));
    if (known && known[0]) {
        *text = xasprintf("%s\n", known);
        return 0;
    }
    const char *hk = json_string_value(json_object_get(machine, "host_public_key"));
    if (hk == NULL || hk[0] == '\0')
        return 0;
    char type[64] = "", blob[4096] = "";
    if (sscanf(hk, "%63s %4095s", type, blob) != 2) {
        seterr(err, errlen,
               "host_public_key of machine %s is not a public key line "
               "(\"ssh-ed25519 AAAA...\", e.g. the server's /etc/ssh/ssh_host_ed25519_key.pub)",
               json_string_value(json_object_get(machine, "name")));
        return -1;
    }
    if (port == 22)
        *text = xasprintf("%s %s %s\n", host, type, blob);
    else
        *text = xasprintf("[%s]:%ld %s %s\n", host, port, type, blob);
    return 0;
}

static void close_files(struct ssh_conn *c)
{
    if (c->key_fd >= 0)
        close(c->key_fd);
    if (c->hosts_fd >= 0)
        close(c->hosts_fd);
    if (c->log_fd >= 0)
        close(c->log_fd);
}

/* Puts the key, the pinned host keys and an empty log into memfds. 0, or -1 with err set. */
static int open_files(struct ssh_conn *c, const json_t *machine, const char *given_key, char *err,
                      size_t errlen)
{
    int rc = -1;
    char *key = NULL, *pinned = NULL;
    const char *key_value = machine_key(given_key, machine);
    if (key_value) {
        key = key_text(key_value);
        if (key == NULL) {
            seterr(err, errlen,
                   "the SSH_PRIVATE_KEY of machine %s (or its team) is neither "
                   "a PEM private key nor base64 of one",
                   c->name);
            goto out;
        }
        c->key_fd = memfd_with("ferry-ssh-key", key, c->key, sizeof(c->key), err, errlen);
        if (c->key_fd < 0)
            goto out;
    }
    if (pinned_hosts(machine, c->host, c->port, &pinned, err, errlen) != 0)
        goto out;
    if (pinned && (c->hosts_fd = memfd_with("ferry-known-hosts", pinned, c->hosts, sizeof(c->hosts),
                                            err, errlen)) < 0)
        goto out;
    if (pinned == NULL) {
        c->seen = seen_hosts(err, errlen);
        if (c->seen && c->seen[0] == '\0') {
            c->seen = NULL;
            goto out;
        }
    }
    c->log_fd = memfd_with("ferry-ssh-log", NULL, c->log, sizeof(c->log), err, errlen);
    rc = c->log_fd < 0 ? -1 : 0;
out:
    if (key) {
        explicit_bzero(key, strlen(key));
        free(key);
    }
    free(pinned);
    return rc;
}

/* The ssh command line into argv (MAX_SSH_ARGS slots; its strings live in c, machine, extra
 * and remote). extra (NULL-terminated, at most 10) comes before the machine's ssh_options, so
 * that these cannot override it: the connection sharing options. remote NULL: no command (the
 * master of a shared connection). Returns 0, or -1 with err set for bad ssh_options. */
static int build_argv(struct ssh_conn *c, const json_t *machine, char *const *extra, char *remote,
                      char **argv, char *err, size_t errlen)
{
    json_int_t ct = json_integer_value(json_object_get(machine, "connect_timeout"));
    snprintf(c->opt_port, sizeof(c->opt_port), "%ld", c->port);
    snprintf(c->opt_timeout, sizeof(c->opt_timeout), "ConnectTimeout=%lld",
             (long long)(ct > 0 ? ct : DEFAULT_CONNECT_TIMEOUT_S));
    const char *hosts_file = c->hosts_fd >= 0 ? c->hosts : c->seen ? c->seen : "/dev/null";
    snprintf(c->opt_hosts, sizeof(c->opt_hosts), "UserKnownHostsFile=%s", hosts_file);
    char *fixed[] = {
        "ssh",
        "-F",
        "/dev/null",
        "-T",
        "-p",
        c->opt_port,
        "-E",
        c->log,
        "-o",
        "BatchMode=yes",
        "-o",
        c->opt_timeout,
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=4",
        "-o",
        c->opt_hosts,
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        c->hosts_fd >= 0 ? "StrictHostKeyChecking=yes" : "StrictHostKeyChecking=accept-new"};
    char *with_key[] = {"-i", c->key, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"};
    int n = 0;
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        argv[n++] = fixed[i];
    for (size_t i = 0; c->key_fd >= 0 && i < sizeof(with_key) / sizeof(with_key[0]); i++)
        argv[n++] = with_key[i];
    for (size_t i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    size_t i;
    json_t *o;
    json_array_foreach (json_object_get(machine, "ssh_options"), i, o) {
        const char *s = json_string_value(o);
        if (s == NULL || s[0] == '-' || strchr(s, '=') == NULL || n > MAX_SSH_ARGS - 8) {
            seterr(err, errlen,
                   "machine %s: ssh_options must be a short list of "
                   "\"Option=value\" strings",
                   c->name);
            return -1;
        }
        if (ssh_option_check(c->name, s, ssh_command_options_allowed(), err, errlen) != 0)
            return -1;
        argv[n++] = "-o";
        argv[n++] = (char *)s;
    }
    /*
     * AES-GCM first where both ends have it: with the CPU's AES instructions it costs about
     * two thirds of chacha20-poly1305 per byte, and repository data streams through here.
     * After the machine's ssh_options, so a Ciphers there wins (ssh keeps the first value).
     */
    argv[n++] = "-o";
    argv[n++] = "Ciphers=^aes128-gcm@openssh.com,aes256-gcm@openssh.com";
    argv[n++] = "--";
    argv[n++] = c->login;
    if (remote)
        argv[n++] = remote;
    argv[n] = NULL;
    return 0;
}

/* Fills c's target and login from machine. 0, or -1 with err set. */
static int conn_target(struct ssh_conn *c, const json_t *machine, char *err, size_t errlen)
{
    *c = (struct ssh_conn){.key_fd = -1, .hosts_fd = -1, .log_fd = -1};
    if (target(machine, &c->host, &c->user, &c->port, err, errlen) != 0)
        return -1;
    c->name = json_string_value(json_object_get(machine, "name"));
    if (c->name == NULL)
        c->name = "?";
    if (c->user && c->user[0])
        snprintf(c->login, sizeof(c->login), "%s@%s", c->user, c->host);
    else
        snprintf(c->login, sizeof(c->login), "%s", c->host);
    return 0;
}

/* --- one connection per attempt ------------------------------------------------------------ */

/*
 * The attempt's shared connection. The first command of an attempt to an SSH machine starts
 * an OpenSSH master (ControlMaster=yes, -N) and waits until it has logged in; that command and
 * the attempt's later ones to the same machine run as sessions of its one connection
 * (ControlPath: a few milliseconds each, instead of a TCP connection, a key exchange and a
 * login, about 0.3 s on loopback). A push runs several commands (the existence checks, the
 * listing, a tar per worker thread), a pull as many.
 *
 * Isolation: the control socket is in a directory of its own (/tmp/ferry-ssh.PID.XXXXXX by
 * mkdtemp, mode 0700, a short path: a socket's path is at most 107 bytes), made for this
 * master alone and removed with it (or, when the worker was killed outright, by the next
 * master started on this bridge: mux_sweep()), so no other attempt, machine or user can
 * reach it (ssh's master also refuses clients of another uid). The master serves only commands
 * whose connection identity (login, port, key, pinned host keys, ssh_options) is the one it was
 * opened with; any other gets a connection of its own, as do all commands after the master failed
 * or died (ssh falls back to a direct connection when the socket does not answer). The sharing
 * options come before the machine's ssh_options, so these cannot point ControlPath elsewhere.
 *
 * Lifetime: the master is in a process group of its own, reported to the host like any
 * command's (a killed worker or an attempt's timeout ends it), and exec_ssh_end_attempt()
 * ends it at the attempt's end: SIGTERM (ssh removes its socket), SIGKILL after a grace, then
 * the directory goes. Its memfds (key, pinned host keys, log) live as long as it does: ssh
 * reads the pins again when it re-keys. The host key is checked once, by the master, with
 * the machine's pins, exactly as for a command of its own.
 */
#define MUX_START_GRACE_MS 10000 /* beyond ConnectTimeout: the key exchange and the login */
#define MUX_DIR_PREFIX     "/tmp/ferry-ssh." /* then the worker's pid and mkdtemp's six */

static pthread_mutex_t mux_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    pid_t pid;      /* the master, 0 when none */
    int tried;      /* a master was started (or failed to) in this attempt */
    char *identity; /* the connection it serves (holds the key text: zeroed when freed) */
    char dir[48];   /* its private directory, "" when none */
    char opt_path[64];
    struct ssh_conn c;
    char *argv[MAX_SSH_ARGS];
} mux = {.c = {.key_fd = -1, .hosts_fd = -1, .log_fd = -1}};

/* What makes two commands' connections the same one: a new string, freed with
 * identity_free() (it holds the key). */
static char *conn_identity(const struct ssh_conn *c, const json_t *machine, const char *key)
{
    char *opts =
        json_dumps(json_object_get(machine, "ssh_options"), JSON_COMPACT | JSON_ENCODE_ANY);
    const char *kh = json_string_value(json_object_get(machine, "known_hosts"));
    const char *hk = json_string_value(json_object_get(machine, "host_public_key"));
    json_int_t ct = json_integer_value(json_object_get(machine, "connect_timeout"));
    char *id = xasprintf("%s\n%ld\n%lld\n%s\n%s\n%s\n%s", c->login, c->port, (long long)ct,
                         kh ? kh : "", hk ? hk : "", opts ? opts : "", key ? key : "");
    free(opts);
    return id;
}

static void identity_free(char *id)
{
    if (id) {
        explicit_bzero(id, strlen(id));
        free(id);
    }
}

/* The master's directory and memfds go (its process is gone). Under mux_lock. */
static void mux_clear(void)
{
    if (mux.dir[0]) {
        char sock[64];
        snprintf(sock, sizeof(sock), "%s/s", mux.dir);
        unlink(sock); /* ssh removes it itself unless it was killed */
        rmdir(mux.dir);
        mux.dir[0] = '\0';
    }
    close_files(&mux.c);
    mux.c.key_fd = mux.c.hosts_fd = mux.c.log_fd = -1;
    identity_free(mux.identity);
    mux.identity = NULL;
    mux.pid = 0;
}

/* Ends the master: SIGTERM, SIGKILL to its group after grace_ms, and reaps it. Under
 * mux_lock. */
static void mux_stop(int grace_ms)
{
    if (mux.pid > 0) {
        kill(mux.pid, SIGTERM);
        int64_t until = mono_ms() + grace_ms;
        for (;;) {
            pid_t r = waitpid(mux.pid, NULL, WNOHANG);
            if (r == mux.pid || (r < 0 && errno != EINTR))
                break;
            if (mono_ms() >= until) {
                kill(-mux.pid, SIGKILL);
                while (waitpid(mux.pid, NULL, 0) < 0 && errno == EINTR)
                    ;
                break;
            }
            usleep(5000);
        }
        kill(-mux.pid, SIGKILL); /* whatever of its group is left */
    }
    mux_clear();
}

/*
 * Removes the control directories that workers killed outright left behind (a worker that
 * dies of its attempt's timeout or its host's SIGKILL ends its master with it but never gets
 * to remove the directory): /tmp/ferry-ssh.PID.XXXXXX of this user whose worker PID is gone.
 * Their sockets are dead and hold nothing; a live worker's (another attempt's) are left.
 */
static void mux_sweep(void)
{
    DIR *tmp = opendir("/tmp");
    if (tmp == NULL)
        return;
    const char *base = MUX_DIR_PREFIX + strlen("/tmp/");
    struct dirent *de;
    while ((de = readdir(tmp)) != NULL) {
        int pid = 0, end = 0;
        if (strncmp(de->d_name, base, strlen(base)) != 0 ||
            sscanf(de->d_name + strlen(base), "%d.%*6[A-Za-z0-9]%n", &pid, &end) != 1 ||
            de->d_name[strlen(base) + (size_t)end] != '\0' || pid <= 1 || pid == getpid() ||
            kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        struct stat st;
        if (fstatat(dirfd(tmp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISDIR(st.st_mode) || st.st_uid != geteuid())
            continue;
        int d = openat(dirfd(tmp), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (d >= 0) {
            unlinkat(d, "s", 0);
            close(d);
        }
        unlinkat(dirfd(tmp), de->d_name, AT_REMOVEDIR);
    }
    closedir(tmp);
}

/* Starts the master's process: its own group, no terminal, stdio on /dev/null. */
static pid_t mux_spawn(char *const *argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGUSR1, SIG_DFL);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    if (pid > 0)
        setpgid(pid, pid);
    return pid;
}

/*
 * Starts the master for machine and waits until its socket is there (logged in). 0 when it
 * serves; 1 when it could not be set up here (no directory: the command connects on its
 * own); -1 with err set when ssh failed (its reason, as a command's own failure would say).
 * Under mux_lock.
 */
static int mux_start(const json_t *machine, const exec_hooks *hooks, const char *key, char *err,
                     size_t errlen)
{
    struct ssh_conn *c = &mux.c;
    if (conn_target(c, machine, err, errlen) != 0)
        return -1;
    mux_sweep();
    snprintf(mux.dir, sizeof(mux.dir), "%s%d.XXXXXX", MUX_DIR_PREFIX, (int)getpid());
    if (mkdtemp(mux.dir) == NULL) {
        mux.dir[0] = '\0';
        return 1;
    }
    snprintf(mux.opt_path, sizeof(mux.opt_path), "ControlPath=%s/s", mux.dir);
    char *extra[] = {
        "-N", "-n", "-o", "ControlMaster=yes", "-o", mux.opt_path, "-o", "ControlPersist=no", NULL};
    if (open_files(c, machine, key, err, errlen) != 0 ||
        build_argv(c, machine, extra, NULL, mux.argv, err, errlen) != 0)
        return -1;
    mux.pid = mux_spawn(mux.argv);
    if (mux.pid < 0) {
        mux.pid = 0;
        return 1;
    }
    if (hooks && hooks->on_pgroup)
        hooks->on_pgroup(hooks->on_pgroup_arg, mux.pid);
    json_int_t ct = json_integer_value(json_object_get(machine, "connect_timeout"));
    int64_t until =
        mono_ms() + (ct > 0 ? ct : DEFAULT_CONNECT_TIMEOUT_S) * 1000 + MUX_START_GRACE_MS;
    char sock[64];
    snprintf(sock, sizeof(sock), "%s/s", mux.dir);
    for (;;) {
        struct stat st;
        if (lstat(sock, &st) == 0 && S_ISSOCK(st.st_mode))
            return 0;
        int status;
        if (waitpid(mux.pid, &status, WNOHANG) == mux.pid) {
            char diag[SSH_LOG_MAX];
            read_ssh_log(c, diag, sizeof(diag));
            seterr(err, errlen, "ssh to %s port %ld (machine %s) failed: %s", c->login, c->port,
                   c->name, diag[0] ? diag : "ssh ended before it logged in");
            mux.pid = 0;
            return -1;
        }
        int cancelled = hooks && hooks->cancelled && hooks->cancelled(hooks->cancelled_arg);
        if (cancelled || mono_ms() >= until ||
            (hooks && hooks->deadline_ms > 0 && now_ms() >= hooks->deadline_ms)) {
            seterr(err, errlen, "ssh to %s port %ld (machine %s) failed: %s", c->login, c->port,
                   c->name, cancelled ? "cancelled while logging in" : "timed out logging in");
            return -1;
        }
        usleep(5000);
    }
}

/*
 * The control path a command of this connection identity uses (copied into path), or ""
 * for a connection of its own. Starts the attempt's master on its first command. 0, or -1
 * with err set when the master's login failed (the command would fail the same way).
 */
static int mux_path_for(const struct ssh_conn *c, const json_t *machine, const exec_hooks *hooks,
                        char *path, size_t pathlen, char *err, size_t errlen)
{
    const char *key = machine_key(hooks ? hooks->ssh_key : NULL, machine);
    char *id = conn_identity(c, machine, key);
    int rc = 0;
    path[0] = '\0';
    pthread_mutex_lock(&mux_lock);
    if (mux.pid > 0 && waitpid(mux.pid, NULL, WNOHANG) == mux.pid) {
        mux.pid = 0; /* it died (a dropped connection): commands connect on their own */
        mux_clear();
    }
    if (!mux.tried) {
        mux.tried = 1;
        int started = mux_start(machine, hooks, key, err, errlen);
        if (started != 0)
            mux_stop(0);
        if (started == 0) {
            mux.identity = id;
            id = NULL;
        }
        rc = started < 0 ? -1 : 0;
    }
    if (rc == 0 && mux.pid > 0 && strcmp(id ? id : mux.identity, mux.identity) == 0)
        snprintf(path, pathlen, "%s", mux.opt_path);
    pthread_mutex_unlock(&mux_lock);
    identity_free(id);
    return rc;
}

void exec_ssh_end_attempt(void)
{
    pthread_mutex_lock(&mux_lock);
    mux_stop(2000);
    mux.tried = 0;
    pthread_mutex_unlock(&mux_lock);
}

struct exec_ssh_cmd {
    struct ssh_conn c;
    char *remote;
    char opt_path[64]; /* ControlPath=... of the attempt's master, or ControlPath=none */
    char *argv[MAX_SSH_ARGS];
};

void exec_ssh_free(exec_ssh_cmd *x)
{
    if (x == NULL)
        return;
    close_files(&x->c);
    free(x->remote);
    free(x);
}

exec_ssh_cmd *exec_ssh_prepare(const json_t *machine, const char *command, const json_t *options,
                               const exec_hooks *hooks, size_t stdin_len, int streaming, char *err,
                               size_t errlen)
{
    exec_ssh_cmd *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        seterr(err, errlen, "out of memory");
        return NULL;
    }
    struct ssh_conn *c = &x->c;
    if (conn_target(c, machine, err, errlen) != 0 ||
        open_files(c, machine, hooks ? hooks->ssh_key : NULL, err, errlen) != 0 ||
        mux_path_for(c, machine, hooks, x->opt_path, sizeof(x->opt_path), err, errlen) != 0)
        goto fail;
    if (x->opt_path[0] == '\0')
        snprintf(x->opt_path, sizeof(x->opt_path), "ControlPath=none");
    char *extra[] = {"-o", "ControlMaster=no", "-o", x->opt_path, NULL};
    x->remote = remote_command(command, options, stdin_len, streaming, err, errlen);
    if (x->remote == NULL || build_argv(c, machine, extra, x->remote, x->argv, err, errlen) != 0)
        goto fail;
    return x;
fail:
    exec_ssh_free(x);
    return NULL;
}

char *const *exec_ssh_argv(exec_ssh_cmd *x)
{
    return x->argv;
}

int exec_ssh_failed(exec_ssh_cmd *x, int exit_code, int killed, char *err, size_t errlen)
{
    char diag[SSH_LOG_MAX];
    read_ssh_log(&x->c, diag, sizeof(diag));
    if (exit_code != 255 || diag[0] == '\0' || killed)
        return 0;
    seterr(err, errlen, "ssh to %s port %ld (machine %s) failed: %s", x->c.login, x->c.port,
           x->c.name, diag);
    return 1;
}

json_t *exec_ssh(const json_t *machine, const char *command, const json_t *options,
                 const exec_hooks *hooks, char *err, size_t errlen)
{
    const char *stdin_text = json_string_value(json_object_get(options, "stdin"));
    exec_ssh_cmd *x = exec_ssh_prepare(machine, command, options, hooks,
                                       stdin_text ? strlen(stdin_text) : 0, 0, err, errlen);
    if (x == NULL)
        return NULL;
    exec_spawn_spec spec = {.argv = x->argv, .stdin_text = stdin_text, .hold_stdin = 1};
    json_t *res = exec_spawn(&spec, options, hooks, err, errlen);
    if (res && exec_ssh_failed(x, (int)json_integer_value(json_object_get(res, "exit_code")),
                               json_is_true(json_object_get(res, "timed_out")) ||
                                   !json_is_null(json_object_get(res, "signal")),
                               err, errlen)) {
        json_decref(res);
        res = NULL;
    }
    exec_ssh_free(x);
    return res;
}

int exec_ssh_stop_remote(exec_ssh_cmd *x, int pgid)
{
    if (pgid <= 1 || strcmp(x->opt_path, "ControlPath=none") == 0)
        return 0; /* its own connection: the remote wrapper sees it end */
    char kill_cmd[256];
    snprintf(kill_cmd, sizeof(kill_cmd),
             "kill -TERM -%d 2>/dev/null || kill -TERM %d 2>/dev/null\n"
             "(sleep 2; kill -KILL -%d 2>/dev/null || kill -KILL %d) </dev/null >/dev/null 2>&1 &",
             pgid, pgid, pgid, pgid);
    char err[256];
    char *remote = remote_command(kill_cmd, NULL, 0, 0, err, sizeof(err));
    char *argv[MAX_SSH_ARGS];
    int n = 0;
    for (; x->argv[n] && x->argv[n + 1]; n++)
        argv[n] = x->argv[n]; /* all but the remote command */
    argv[n++] = remote;
    argv[n] = NULL;
    json_t *options = json_pack("{s:i}", "timeout", 10);
    exec_spawn_spec spec = {.argv = argv, .hold_stdin = 1};
    json_t *res = exec_spawn(&spec, options, NULL, err, sizeof(err));
    int ok = res && json_integer_value(json_object_get(res, "exit_code")) == 0;
    json_decref(res);
    json_decref(options);
    free(remote);
    return ok ? 1 : -1;
}
