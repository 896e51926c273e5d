/* The host's own log (log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "util.h"

static enum log_level min_level = LOG_INFO;
static int json_format;
static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};
/* sd-daemon(3) priorities: debug 7, info 6, warning 4, err 3. */
static const int level_prio[] = {7, 6, 4, 3, 3};

void log_set_level(enum log_level level)
{
    min_level = level;
}

int log_level_parse(const char *name)
{
    for (int i = 0; i <= LOG_OFF; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

int log_set_format(const char *name)
{
    if (strcmp(name, "text") != 0 && strcmp(name, "json") != 0)
        return -1;
    json_format = strcmp(name, "json") == 0;
    return 0;
}

/* Under systemd the stream goes to journald, which reads a leading "<N>". */
static int under_systemd(void)
{
    static int known = -1;
    if (known < 0) {
        const char *js = getenv("JOURNAL_STREAM"), *ns = getenv("NOTIFY_SOCKET");
        known = (js && *js) || (ns && *ns);
    }
    return known;
}

/* Writes body as one line (one write, so lines from several processes never interleave),
 * as JSON when fields is not NULL (it is consumed). */
static void emit(enum log_level level, const char *message, json_t *fields)
{
    char stamp[32], prefix[8] = "";
    iso8601_ms(now_ms(), stamp);
    if (under_systemd())
        snprintf(prefix, sizeof(prefix), "<%d>", level_prio[level]);
    char *line;
    if (json_format) {
        json_t *o = json_pack("{s:s,s:s,s:i,s:s}", "time", stamp, "level", level_names[level],
                              "pid", (int)getpid(), "message", message);
        if (fields)
            json_object_update(o, fields);
        char *js = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        line = xasprintf("%s%s\n", prefix, js ? js : "{}");
        free(js);
    } else
        line = xasprintf("%s%s ferry[%d] %-5s %s\n", prefix, stamp, (int)getpid(),
                         level_names[level], message);
    json_decref(fields);
    ssize_t w = write(STDERR_FILENO, line, strlen(line));
    (void)w;
    free(line);
}

void hlog(enum log_level level, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emit(level, msg, NULL);
}

/* Appends s to f quoted: backslash and double quote escaped, control characters as \xNN. */
static void put_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

void log_attempt(const char *task_id, const char *function, const char *machine,
                 const char *outcome, int attempt, int64_t duration_ms, const char *reason)
{
    enum log_level level = strcmp(outcome, "FAILED") == 0 || strcmp(outcome, "RETRY_SCHEDULED") == 0
                               ? LOG_WARN
                               : LOG_INFO;
    if (level < min_level)
        return;
    if (json_format) {
        json_t *f = json_pack("{s:s,s:s,s:s,s:s,s:i,s:I,s:s?}", "taskId", task_id, "function",
                              function ? function : "", "machine", machine ? machine : "",
                              "outcome", outcome, "attempt", attempt, "durationMs",
                              (json_int_t)duration_ms, "reason", reason);
        if (f == NULL) /* not UTF-8: the text is proto_clean_text's, so this is a bug */
            f = json_pack("{s:s,s:s}", "taskId", task_id, "outcome", outcome);
        emit(level, "attempt ended", f);
    } else {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        fprintf(m,
                "attempt ended: task=%s function=%s machine=%s outcome=%s attempt=%d "
                "duration_ms=%lld",
                task_id, function ? function : "-", machine ? machine : "-", outcome, attempt,
                (long long)duration_ms);
        if (reason) {
            fputs(" reason=", m);
            put_quoted(m, reason);
        }
        fclose(m);
        emit(level, buf, NULL);
        free(buf);
    }
}
