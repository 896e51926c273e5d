/*
 * `ferry dashboard`: what the seed's job-dashboard.sh computes, in one command and in its
 * layout (docs/cli.md, "dashboard"). With --watch [SECONDS], a view that redraws itself in
 * place every SECONDS until Ctrl-C: the hosts of every bridge with their last heartbeat
 * (cli_status.c), the running items with their progress, the queue depth, the recent
 * failures and the success rate. On a terminal it draws on the alternate screen and gives
 * the terminal back as it found it; into a pipe it writes the frames one after another,
 * plain.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"
#include "cli_status.h"
#include "hosts.h"
#include "store.h"
#include "table.h"
#include "util.h"

#define DAY_MS 86400000LL
/* Running items a frame reads at most (a terminal shows fewer). */
#define WATCH_MAX_RUNNING 200

static json_t *list_with(cli *c, struct store_queue_filter *f)
{
    json_t *rows = NULL;
    char err[512];
    if (store_queue_list(c->st, f, &rows, err, sizeof(err)) != STORE_OK)
        return json_array();
    return rows;
}

/* How many items match: an exact COUNT, whatever the number. -1 with err set when the
 * store fails. */
static int64_t count_with(cli *c, const struct store_queue_filter *f, char *err, size_t errlen)
{
    int64_t n = 0;
    if (store_queue_count(c->st, f, &n, err, errlen) != STORE_OK)
        return -1;
    return n;
}

/* The seed dashboard's figures at now (the JSON data of docs/cli.md), or NULL with err set. */
static json_t *dashboard_data(cli *c, int64_t now, char *err, size_t errlen)
{
    const char *processing[] = {"PROCESSING"}, *pending[] = {"PENDING"}, *failed[] = {"FAILED"};
    int64_t depth_n[6], total, nfail;
    for (int p = 1; p <= 5; p++) {
        struct store_queue_filter fp = {.statuses = pending, .n_statuses = 1, .priority = p};
        if ((depth_n[p] = count_with(c, &fp, err, errlen)) < 0)
            return NULL;
    }
    struct store_queue_filter ft = {.date_from_ms = now - 7 * DAY_MS, .now_ms = now};
    struct store_queue_filter fw = {
        .statuses = failed, .n_statuses = 1, .date_from_ms = now - 7 * DAY_MS, .now_ms = now};
    if ((total = count_with(c, &ft, err, errlen)) < 0 ||
        (nfail = count_with(c, &fw, err, errlen)) < 0)
        return NULL;
    struct store_queue_filter fa = {
        .statuses = processing, .n_statuses = 1, .max_records = STORE_MAX_RECORDS};
    json_t *active = list_with(c, &fa);
    json_t *depth = json_object();
    for (int p = 1; p <= 5; p++) {
        char key[8];
        snprintf(key, sizeof(key), "%d", p);
        json_object_set_new(depth, key, json_integer((json_int_t)depth_n[p]));
    }
    struct store_queue_filter ff = {
        .statuses = failed, .n_statuses = 1, .date_from_ms = now - DAY_MS, .max_records = 10};
    json_t *failures = list_with(c, &ff);
    json_t *rate = total ? json_real((double)(total - nfail) * 100.0 / (double)total) : json_null();
    json_t *recent = json_array();
    size_t i;
    json_t *r;
    json_array_foreach (failures, i, r)
        json_array_append_new(recent, json_pack("{s:O,s:O,s:O,s:O}", "taskId",
                                                json_object_get(r, "taskId"), "machineName",
                                                json_object_get(r, "machineName"), "function",
                                                json_object_get(r, "function"), "lastFailureReason",
                                                json_object_get(r, "lastFailureReason")));
    json_t *act = json_array();
    json_array_foreach (active, i, r)
        json_array_append_new(act, json_pack("{s:O,s:O,s:O,s:O,s:O}", "taskId",
                                             json_object_get(r, "taskId"), "machineName",
                                             json_object_get(r, "machineName"), "function",
                                             json_object_get(r, "function"), "priority",
                                             json_object_get(r, "priority"), "progress",
                                             json_object_get(r, "progress")));
    json_decref(active);
    json_decref(failures);
    return json_pack("{s:o,s:o,s:o,s:I,s:I,s:o}", "active", act, "queueDepthByPriority", depth,
                     "recentFailures", recent, "total7d", (json_int_t)total, "failed7d",
                     (json_int_t)nfail, "successRate7d", rate);
}

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* The seed script's layout; names are cut only where a line would pass the style's limit. */
static void print_seed_layout(const json_t *data, int64_t now, const struct term_style *st)
{
    char stamp[32];
    iso8601_ms(now, stamp);
    printf("=== ferry job dashboard ===\nGenerated: %s\n\n## Active Jobs\n", stamp);
    size_t i;
    json_t *r;
    json_array_foreach (json_object_get(data, "active"), i, r) {
        char prio[48];
        snprintf(prio, sizeof(prio), " (Priority: %lld)",
                 (long long)json_integer_value(json_object_get(r, "priority")));
        struct term_piece p[] = {TERM_CAP(str(r, "machineName"), 40), TERM_TEXT(": "),
                                 TERM_CAP(str(r, "function"), 40), TERM_TEXT(prio)};
        term_pieces(stdout, st, p, sizeof(p) / sizeof(p[0]));
    }
    const json_t *depth = json_object_get(data, "queueDepthByPriority");
    printf("\n## Queue Depth by Priority\n");
    for (int p = 1; p <= 5; p++) {
        char key[8];
        snprintf(key, sizeof(key), "%d", p);
        printf("Priority %d: %lld jobs\n", p,
               (long long)json_integer_value(json_object_get(depth, key)));
    }
    printf("\n## Recent Failures (Last 24h)\n");
    json_array_foreach (json_object_get(data, "recentFailures"), i, r) {
        char id[9];
        snprintf(id, sizeof(id), "%s", str(r, "taskId"));
        struct term_piece p[] = {TERM_TEXT(id), TERM_TEXT(": "),
                                 TERM_CAP(str(r, "machineName"), 40), TERM_TEXT(" - "),
                                 TERM_CAP(str(r, "function"), 40)};
        term_pieces(stdout, st, p, sizeof(p) / sizeof(p[0]));
    }
    printf("\n## Success Rate (Last 7 days)\n");
    if (json_integer_value(json_object_get(data, "total7d")))
        printf("Success Rate: %.2f%%\n", json_real_value(json_object_get(data, "successRate7d")));
    else
        printf("Success Rate: no jobs\n");
}

/* --- --watch ------------------------------------------------------------------------------ */

static volatile sig_atomic_t stop_signal, resized;

static void on_signal(int sig)
{
    if (sig == SIGWINCH)
        resized = 1;
    else
        stop_signal = sig;
}

/* The hosts as table rows: bridge, host id, state, last seen, running attempts, version. */
static json_t *host_rows(cli *c, int64_t now, char *err, size_t errlen)
{
    json_t *hosts = NULL, *rows = json_array();
    if (store_hosts_list(c->st, now, &hosts, err, errlen) != STORE_OK) {
        json_decref(rows);
        return NULL;
    }
    size_t i;
    json_t *h;
    json_array_foreach (hosts, i, h) {
        char age[32], seen[48];
        snprintf(seen, sizeof(seen), "%s ago",
                 cli_age_text(json_integer_value(json_object_get(h, "lastSeenAgeSeconds")), age,
                              sizeof(age)));
        json_array_append_new(rows, json_pack("{s:O,s:O,s:s,s:s,s:O,s:O}", "bridgeName",
                                              json_object_get(h, "bridgeName"), "hostId",
                                              json_object_get(h, "hostId"), "state",
                                              cli_host_state(h), "seen", seen, "runningAttempts",
                                              json_object_get(h, "runningAttempts"), "version",
                                              json_object_get(h, "version")));
    }
    json_decref(hosts);
    return rows;
}

/* "[####------] 40% copying": a bar of ten, the percent and the progress message. */
static char *progress_text(const json_t *progress)
{
    if (!json_is_object(progress))
        return xstrdup("-");
    json_int_t pct = json_integer_value(json_object_get(progress, "percent"));
    pct = pct < 0 ? 0 : pct > 100 ? 100 : pct;
    char bar[11];
    for (int k = 0; k < 10; k++)
        bar[k] = k < pct / 10 ? '#' : '-';
    bar[10] = '\0';
    const char *m = str(progress, "message");
    return xasprintf("[%s] %lld%%%s%s", bar, (long long)pct, m ? " " : "", m ? m : "");
}

/* The items ASSIGNED, PROCESSING or CANCELLING as table rows, oldest first. */
static json_t *running_rows(cli *c, int64_t now)
{
    static const char *const running[] = {"ASSIGNED", "PROCESSING", "CANCELLING"};
    struct store_queue_filter f = {
        .statuses = running, .n_statuses = 3, .max_records = WATCH_MAX_RUNNING, .now_ms = now};
    json_t *items = list_with(c, &f), *rows = json_array();
    for (size_t i = json_array_size(items); i-- > 0;) {
        const json_t *r = json_array_get(items, i);
        const char *since = str(r, "startedTime") ? str(r, "startedTime") : str(r, "assignedTime");
        int64_t at = 0;
        char age[32] = "-";
        if (since && parse_date_ms(since, &at) == 0)
            cli_age_text((now - at) / 1000, age, sizeof(age));
        char *progress = progress_text(json_object_get(r, "progress"));
        json_array_append_new(rows, json_pack("{s:O,s:O,s:O,s:O,s:O,s:s,s:s}", "taskId",
                                              json_object_get(r, "taskId"), "status",
                                              json_object_get(r, "status"), "machineName",
                                              json_object_get(r, "machineName"), "function",
                                              json_object_get(r, "function"), "priorityLabel",
                                              json_object_get(r, "priorityLabel"), "elapsed", age,
                                              "progressText", progress));
        free(progress);
    }
    json_decref(items);
    return rows;
}

static void section(FILE *out, const char *title, const json_t *rows, const char *const cols[][2],
                    const struct term_style *st)
{
    fprintf(out, "\n%s (%zu)\n", title, json_array_size(rows));
    if (json_array_size(rows))
        table_render(out, rows, cols, st);
}

/* Writes one frame of the watch view to out. */
static void render_frame(cli *c, long seconds, FILE *out, const struct term_style *st)
{
    static const char *const host_cols[][2] = {{"BRIDGE", "bridgeName"},
                                               {"HOST", "hostId"},
                                               {"STATE", "state"},
                                               {"SEEN", "seen"},
                                               {"RUNNING", "runningAttempts"},
                                               {"VERSION", "version"},
                                               {NULL, NULL}};
    static const char *const running_cols[][2] = {
        {"TASK ID", "taskId"},         {"STATUS", "status"},
        {"MACHINE", "machineName"},    {"FUNCTION", "function"},
        {"PRIORITY", "priorityLabel"}, {"ELAPSED", "elapsed"},
        {"PROGRESS", "progressText"},  {NULL, NULL}};
    static const char *const failure_cols[][2] = {{"TASK ID", "taskId"},
                                                  {"MACHINE", "machineName"},
                                                  {"FUNCTION", "function"},
                                                  {"REASON", "lastFailureReason"},
                                                  {NULL, NULL}};
    int64_t now = now_ms();
    char stamp[32], err[1024];
    iso8601_ms(now, stamp);
    struct term_line title;
    term_line_init(&title, st);
    term_line_printf(&title, "ferry dashboard, every %ld s  %.10s %.8s UTC  (Ctrl-C quits)",
                     seconds, stamp, stamp + 11);
    term_line_end(&title, out);
    json_t *hosts = host_rows(c, now, err, sizeof(err));
    json_t *data = hosts ? dashboard_data(c, now, err, sizeof(err)) : NULL;
    if (data == NULL) {
        struct term_line l;
        term_line_init(&l, st);
        term_line_put(&l, "\nthe store did not answer: ", 0, COLOUR_NONE);
        term_line_put(&l, err, 0, COLOUR_RED);
        term_line_end(&l, out);
        json_decref(hosts);
        return;
    }
    section(out, "HOSTS", hosts, host_cols, st);
    if (json_array_size(hosts) == 0)
        fprintf(out, "no host has served yet (start one: ferry serve)\n");
    json_t *running = running_rows(c, now);
    section(out, "RUNNING", running, running_cols, st);
    const json_t *depth = json_object_get(data, "queueDepthByPriority");
    fprintf(out, "\nPENDING by priority:");
    for (int p = 1; p <= 5; p++) {
        char key[8];
        snprintf(key, sizeof(key), "%d", p);
        fprintf(out, "  %d: %lld", p, (long long)json_integer_value(json_object_get(depth, key)));
    }
    long long total = json_integer_value(json_object_get(data, "total7d"));
    long long failed = json_integer_value(json_object_get(data, "failed7d"));
    if (total)
        fprintf(out, "\nLAST 7 DAYS: %lld items, %lld failed, success rate %.2f%%\n", total, failed,
                json_real_value(json_object_get(data, "successRate7d")));
    else
        fprintf(out, "\nLAST 7 DAYS: no items\n");
    section(out, "FAILED IN THE LAST 24 H", json_object_get(data, "recentFailures"), failure_cols,
            st);
    json_decref(running);
    json_decref(hosts);
    json_decref(data);
}

/* Draws a frame: on a terminal over the last one from the top left corner, each line
 * clearing what is left of the old one, at most rows - 1 lines; else after the last,
 * plain. */
static void draw(const char *frame, size_t len, int tty)
{
    if (!tty) {
        fwrite(frame, 1, len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        return;
    }
    struct winsize ws = {0};
    size_t rows = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 2 ? ws.ws_row : 0;
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += frame[i] == '\n';
    fputs("\033[H", stdout);
    size_t shown = 0;
    for (const char *p = frame, *end = frame + len; p < end; shown++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (rows && shown + 2 >= rows && lines > rows - 1) {
            printf("... %zu more lines: a taller window shows them\033[K\n", lines - shown);
            break;
        }
        fwrite(p, 1, n, stdout);
        fputs("\033[K\n", stdout);
        p += n + 1;
    }
    fputs("\033[J", stdout);
    fflush(stdout);
}

/* Sleeps ms or until a signal asks to stop or redraw. */
static void pause_ms(long ms)
{
    int64_t until = now_ms() + ms;
    while (!stop_signal && !resized) {
        int64_t left = until - now_ms();
        if (left <= 0)
            return;
        if (poll(NULL, 0, (int)(left > 1000 ? 1000 : left)) < 0 && errno != EINTR)
            return;
    }
}

static int watch(cli *c, long seconds)
{
    int tty = isatty(STDOUT_FILENO);
    struct sigaction sa = {.sa_handler = on_signal}, old[4];
    const int sigs[4] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH};
    sigemptyset(&sa.sa_mask);
    /* A write to the terminal goes on after the signal (poll, in pause_ms, returns early
     * whatever the flag says). */
    sa.sa_flags = SA_RESTART;
    for (int i = 0; i < 4; i++)
        sigaction(sigs[i], &sa, &old[i]);
    if (tty) {
        fputs("\033[?1049h\033[?25l\033[H\033[2J", stdout); /* alternate screen, no cursor */
        fflush(stdout);
    }
    while (!stop_signal) {
        resized = 0;
        char *frame = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&frame, &len);
        if (mem == NULL)
            break;
        /* The style of stdout itself: its width and whether it takes colour. */
        struct term_style st = term_style_for(stdout);
        render_frame(c, seconds, mem, &st);
        fclose(mem);
        draw(frame, len, tty);
        free(frame);
        pause_ms(seconds * 1000);
    }
    if (tty) {
        fputs("\033[?25h\033[?1049l", stdout); /* the cursor and the screen as they were */
        fflush(stdout);
    }
    for (int i = 0; i < 4; i++)
        sigaction(sigs[i], &old[i], NULL);
    return EXIT_OK;
}

static int cmd_dashboard(cli *c)
{
    int watching = cli_flag(c, "watch");
    long seconds = 2;
    if (c->n_args > 0) {
        char *end;
        seconds = strtol(c->args[0], &end, 10);
        if (!watching)
            return cli_usage_error(c, "SECONDS goes with --watch");
        if (end == c->args[0] || *end != '\0' || seconds < 1 || seconds > 86400)
            return cli_usage_error(c, "--watch takes whole seconds from 1 to 86400, not '%s'",
                                   c->args[0]);
    }
    if (watching && c->json)
        return cli_usage_error(c, "--watch redraws text; leave out --output json");
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    if (watching)
        return watch(c, seconds);
    int64_t now = now_ms();
    char err[1024];
    json_t *data = dashboard_data(c, now, err, sizeof(err));
    if (data == NULL)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    if (c->json) {
        cli_print_ok(c, data, "");
        return EXIT_OK;
    }
    struct term_style st = term_style_for(stdout);
    print_seed_layout(data, now, &st);
    json_decref(data);
    return EXIT_OK;
}

static const cli_opt dashboard_opts[] = {
    {"watch", 'w', NULL, 0,
     "redraw in place every SECONDS (default 2) until Ctrl-C, with the hosts and the running "
     "items' progress"},
    {NULL, 0, NULL, 0, NULL}};

const cli_command cli_dashboard_commands[] = {
    {"dashboard", NULL, "[--watch [SECONDS]]", 0, 1, dashboard_opts, cmd_dashboard,
     "active jobs, queue depth, recent failures, success rate; --watch: a live view"},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL},
};
