/*
 * Waiting that talks (cli_wait.h): the item's status, percent and progress message while it
 * runs, on a terminal as one line redrawn in place, elsewhere as a line per change; its
 * timeline events as they are written (--follow); Ctrl-C ends the wait, never the item.
 *
 * Everything shown goes to stderr except followed events of `queue trace --follow`, so what
 * scripts read on stdout is what it was. Text from the store passes through term_clean_fit
 * (a plugin's progress message may carry escape sequences): shown as visible escapes, one
 * line, cut to its columns.
 */
#include "cli_wait.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_status.h"
#include "store.h"
#include "term_text.h"
#include "util.h"

/* How often the store is asked whether anything changed between wake-ups: cheap where the
 * driver can tell (SQLite's data_version), a read of the item otherwise (PostgreSQL). */
#define TICK_VERSION_MS 100
#define TICK_READ_MS    250
/* Columns of a plain (not terminal) status line and of a followed event. */
#define PLAIN_COLS 300
#define EVENT_COLS 2000

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

int cli_status_final(const char *status)
{
    return status && (!strcmp(status, "COMPLETED") || !strcmp(status, "FAILED") ||
                      !strcmp(status, "CANCELLED"));
}

/* What the status line shows and where it is. */
struct view {
    size_t cols;            /* the terminal's width; 0: stderr is not a terminal */
    int drawn;              /* a status line is on the terminal, the cursor at its end */
    char shown[1200];       /* the status text last shown */
    char shown_elapsed[32]; /* and the elapsed time with it (a terminal's line moves with it) */
    int64_t start_ms;       /* when the wait began (mono_ms) */
};

static void elapsed_text(int64_t ms, int plain, char *out, size_t len)
{
    int64_t s = ms / 1000;
    if (plain && s < 60)
        snprintf(out, len, "%.1fs", (double)ms / 1000.0);
    else if (s < 60)
        snprintf(out, len, "%llds", (long long)s);
    else if (s < 3600)
        snprintf(out, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else
        snprintf(out, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s / 60 % 60));
}

/* "PROCESSING 42% message" of a row, not yet cleaned. */
static void status_text(const json_t *row, char *out, size_t len)
{
    const char *status = json_string_value(json_object_get(row, "status"));
    const json_t *p = json_object_get(row, "progress");
    const json_t *pct = json_object_get(p, "percent");
    const char *msg = json_string_value(json_object_get(p, "message"));
    int n = snprintf(out, len, "%s", status ? status : "?");
    if (n > 0 && (size_t)n < len && json_is_integer(pct) && !cli_status_final(status))
        n += snprintf(out + n, len - (size_t)n, " %lld%%", (long long)json_integer_value(pct));
    if (n > 0 && (size_t)n < len && msg && *msg && !cli_status_final(status))
        snprintf(out + n, len - (size_t)n, " %s", msg);
}

/* Takes the status line off the terminal, so that another line can be printed. */
static void view_clear(struct view *v)
{
    if (v->cols && v->drawn) {
        fputs("\r\033[K", stderr);
        v->drawn = 0;
    }
}

/*
 * Shows row's status: on a terminal, the line drawn again when it or its elapsed second
 * changed; else a line when the text changed, or when suffix (the exit status of an item
 * that ended) is given. end: the item ended or the wait did; the terminal's line is
 * finished with a newline.
 */
static void view_show(struct view *v, const json_t *row, const char *suffix, int end)
{
    char text[1200], elapsed[32];
    status_text(row, text, sizeof(text));
    size_t tl = strlen(text);
    snprintf(text + tl, sizeof(text) - tl, "%s", suffix ? suffix : "");
    int changed = strcmp(text, v->shown) != 0;
    snprintf(v->shown, sizeof(v->shown), "%s", text);
    elapsed_text(mono_ms() - v->start_ms, v->cols == 0, elapsed, sizeof(elapsed));
    if (v->cols && v->drawn && !changed && !end && strcmp(elapsed, v->shown_elapsed) == 0)
        return; /* the terminal shows this already */
    snprintf(v->shown_elapsed, sizeof(v->shown_elapsed), "%s", elapsed);
    char *raw = xasprintf("[%s] %s", elapsed, text);
    if (v->cols) {
        /* One column short of the width: writing the last one wraps on some terminals. */
        char *line = term_clean_fit(raw, v->cols > 1 ? v->cols - 1 : 1);
        fprintf(stderr, "\r\033[K%s%s", line, end ? "\n" : "");
        free(line);
        v->drawn = !end;
    } else if (changed || suffix) {
        char *line = term_clean_fit(raw, PLAIN_COLS);
        fprintf(stderr, "%s\n", line);
        free(line);
    }
    free(raw);
    fflush(stderr);
}

/* Prints the events past w->events_shown: "TIME ACTION [BY actor] details", one a line. */
static int show_events(cli *c, struct cli_wait *w, struct view *v, const char *task)
{
    json_t *events = NULL;
    char err[1024];
    if (store_event_list(c->st, task, &events, err, sizeof(err)) != STORE_OK) {
        view_clear(v);
        return cli_fail(c, EXIT_ERROR, "%s", err);
    }
    size_t n = json_array_size(events);
    if (n > w->events_shown && w->events_out == stderr)
        view_clear(v);
    for (size_t i = w->events_shown; i < n; i++) {
        const json_t *e = json_array_get(events, i);
        const json_t *d = json_object_get(e, "details");
        const char *actor = json_string_value(json_object_get(e, "actor"));
        char *dt = json_is_string(d)              ? xstrdup(json_string_value(d))
                   : d == NULL || json_is_null(d) ? xstrdup("")
                                                  : json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY);
        char *raw = xasprintf("%s %s%s%s%s%s", json_string_value(json_object_get(e, "timestamp")),
                              json_string_value(json_object_get(e, "action")), actor ? " by " : "",
                              actor ? actor : "", *dt ? " " : "", dt);
        char *line = term_clean_fit(raw, EVENT_COLS);
        fprintf(w->events_out, "%s\n", line);
        free(line);
        free(raw);
        free(dt);
    }
    if (n > w->events_shown)
        fflush(w->events_out);
    if (n > w->events_shown)
        w->events_shown = n;
    json_decref(events);
    return 0;
}

/* Reads the item into *row (replacing what was there). 0, or an exit code after printing. */
static int read_item(cli *c, const char *task, struct view *v, json_t **row)
{
    json_t *now = NULL;
    char err[1024];
    if (store_queue_get(c->st, task, &now, err, sizeof(err)) != STORE_OK) {
        view_clear(v);
        return cli_fail(c, EXIT_ERROR, "%s", err);
    }
    json_decref(*row);
    *row = now;
    return 0;
}

/* Sleeps until a wake-up, a tick, the next second on a terminal, the deadline or SIGINT.
 * Returns 1 when the store may have changed. */
static int sleep_until_change(cli *c, int wake_fd, const struct view *v, int64_t deadline,
                              int64_t *version)
{
    int64_t now = mono_ms();
    int tick = *version == -1 ? TICK_READ_MS : TICK_VERSION_MS;
    int64_t timeout = tick;
    if (v->cols) {
        int64_t to_second = 1000 - (now - v->start_ms) % 1000;
        timeout = to_second < timeout ? to_second : timeout;
    }
    if (deadline && deadline - now < timeout)
        timeout = deadline - now > 0 ? deadline - now : 0;
    struct pollfd pfd = {.fd = wake_fd, .events = POLLIN};
    int got = poll(&pfd, wake_fd >= 0 ? 1 : 0, (int)timeout);
    if (got < 0 && errno == EINTR)
        return 0;
    if (got > 0) {
        store_wait_drain(c->st);
        return 1;
    }
    int64_t was = *version;
    *version = store_data_version(c->st);
    return *version == -1 || *version != was;
}

static void stopped_waiting(cli *c, const json_t *row)
{
    char text[1200];
    status_text(row, text, sizeof(text));
    char *line = term_clean_fit(text, 200);
    const char *task = json_string_value(json_object_get(row, "taskId"));
    cli_fail(c, EXIT_INTERRUPTED,
             "stopped waiting for task %s (%s); the item goes on: ferry queue wait %s, or "
             "ferry queue cancel %s to stop it",
             task, line, task, task);
    free(line);
}

enum cli_wait_end cli_wait_item(cli *c, struct cli_wait *w, json_t **row)
{
    /* A terminal that cannot erase a line (TERM=dumb: Emacs' shell) gets plain lines. */
    const char *term = getenv("TERM");
    int dumb = term != NULL && strcmp(term, "dumb") == 0;
    struct view v = {.cols = w->status_line && !dumb ? term_columns(STDERR_FILENO, 80) : 0,
                     .start_ms = mono_ms()};
    int64_t deadline = w->timeout_s > 0 ? v.start_ms + w->timeout_s * 1000 : 0;
    enum cli_wait_end end = CLI_WAIT_ERROR;
    struct sigaction sa = {.sa_handler = on_sigint}, old;
    sigemptyset(&sa.sa_mask);
    interrupted = 0;
    sigaction(SIGINT, &sa, &old); /* no SA_RESTART: poll returns at once */
    *row = NULL;
    /* Asked before the first read, so that a commit between the two is not missed. */
    int64_t version = store_data_version(c->st);
    if (read_item(c, w->task, &v, row) != 0)
        goto out;
    char task[64];
    snprintf(task, sizeof(task), "%s", json_string_value(json_object_get(*row, "taskId")));
    if (w->print_id) {
        fprintf(stderr, "Task ID: %s\n", task);
        fflush(stderr);
    }
    int wake_fd = -1;
    if (!cli_status_final(json_string_value(json_object_get(*row, "status")))) {
        const char *bridge = json_string_value(json_object_get(*row, "bridgeName"));
        cli_warn_no_host(c, bridge);
        wake_fd = store_wait_fd(c->st, bridge, NULL, 0);
    }
    if (w->follow && show_events(c, w, &v, task) != 0)
        goto out;
    for (;;) {
        const char *status = json_string_value(json_object_get(*row, "status"));
        if (cli_status_final(status)) {
            if (w->status_line)
                view_show(&v, *row, strcmp(status, "COMPLETED") ? " (exit 1)" : " (exit 0)", 1);
            end = CLI_WAIT_ENDED;
            break;
        }
        if (interrupted || (deadline && mono_ms() >= deadline)) {
            if (w->status_line)
                view_show(&v, *row, NULL, 1);
            if (interrupted)
                stopped_waiting(c, *row);
            end = interrupted ? CLI_WAIT_INTERRUPTED : CLI_WAIT_TIMEOUT;
            break;
        }
        if (w->status_line)
            view_show(&v, *row, NULL, 0);
        if (!sleep_until_change(c, wake_fd, &v, deadline, &version))
            continue;
        if (read_item(c, task, &v, row) != 0)
            goto out;
        if (w->follow && show_events(c, w, &v, task) != 0)
            goto out;
    }
out:
    view_clear(&v);
    sigaction(SIGINT, &old, NULL);
    if (end == CLI_WAIT_ERROR) {
        json_decref(*row);
        *row = NULL;
    }
    return end;
}
