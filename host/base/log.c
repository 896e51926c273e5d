/* The host's own log: one line per event on stderr, with a timestamp and a level. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static enum log_level min_level = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

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

void hlog(enum log_level level, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char line[4096], stamp[32];
    iso8601_ms(now_ms(), stamp);
    int n = snprintf(line, sizeof(line), "%s ferry[%d] %-5s ", stamp, (int)getpid(),
                     level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    /* One write per line, so lines from several processes never interleave. */
    size_t len = strlen(line);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
