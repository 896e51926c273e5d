/* The engine's window on the job: progress, log lines, cancellation. See engine.h. */
#include <stdio.h>
#include <unistd.h>

#include "engine.h"

void ui_progress(ui *u, int percent, const char *fmt, ...)
{
    if (u == NULL || u->progress == NULL)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    u->progress(u->arg, percent, msg);
}

void ui_log(ui *u, int warn, const char *fmt, ...)
{
    if (u == NULL || u->log == NULL)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    u->log(u->arg, warn, msg);
}

int ui_cancelled(ui *u)
{
    if (u == NULL)
        return 0;
    return u->cancelled ? u->cancelled(u->arg) : 0;
}

int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 8 ? 8 : (int)n;
}
