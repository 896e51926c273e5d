/* Notifications by email (SMTP through libcurl) and JSON POST; see notify.h. */
#include "notify.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"
#include "vault.h"

#define NOTIFY_TIMEOUT_S 30

struct upload {
    const char *data;
    size_t len, off;
};

static size_t read_cb(char *buf, size_t size, size_t n, void *arg)
{
    struct upload *u = arg;
    size_t room = size * n, left = u->len - u->off;
    size_t k = left < room ? left : room;
    memcpy(buf, u->data + u->off, k);
    u->off += k;
    return k;
}

static size_t discard_cb(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static int send_email(const ferry_config *cfg, const char *to, const json_t *body, char *err,
                      size_t errlen)
{
    if (cfg->smtp_url == NULL || cfg->smtp_url[0] == '\0') {
        seterr(err, errlen, "no SMTP server configured (smtp.url in the config)");
        return -1;
    }
    const char *status = json_string_value(json_object_get(body, "status"));
    const char *task = json_string_value(json_object_get(body, "taskId"));
    const char *fn = json_string_value(json_object_get(body, "function"));
    const char *machine = json_string_value(json_object_get(body, "machine"));
    char *pretty = json_dumps(body, JSON_INDENT(2));
    char date[64];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    char *msg = xasprintf("Date: %s\r\nTo: <%s>\r\nFrom: <%s>\r\n"
                          "Subject: [ferry] %s %s on %s (%s)\r\n"
                          "Content-Type: text/plain; charset=utf-8\r\n\r\n"
                          "ferry: queue item %s, function %s on machine %s, ended %s.\r\n\r\n"
                          "%s\r\n",
                          date, to, cfg->smtp_from, fn ? fn : "?", status ? status : "?",
                          machine ? machine : "?", task ? task : "?", task ? task : "?",
                          fn ? fn : "?", machine ? machine : "?", status ? status : "?", pretty);
    free(pretty);
    CURL *curl = curl_easy_init();
    struct curl_slist *rcpt = curl_slist_append(NULL, to);
    char *from = xasprintf("<%s>", cfg->smtp_from);
    struct upload u = {.data = msg, .len = strlen(msg)};
    curl_easy_setopt(curl, CURLOPT_URL, cfg->smtp_url);
    curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(curl, CURLOPT_READDATA, &u);
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)NOTIFY_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (cfg->smtp_username[0]) {
        curl_easy_setopt(curl, CURLOPT_USERNAME, cfg->smtp_username);
        curl_easy_setopt(curl, CURLOPT_PASSWORD, cfg->smtp_password);
    }
    CURLcode rc = curl_easy_perform(curl);
    if (rc != CURLE_OK)
        seterr(err, errlen, "mail to %s through %s failed: %s", to, cfg->smtp_url,
               curl_easy_strerror(rc));
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(curl);
    free(from);
    free(msg);
    return rc == CURLE_OK ? 0 : -1;
}

static int send_post(const char *url, const json_t *body, char *err, size_t errlen)
{
    char *text = json_dumps(body, JSON_COMPACT);
    CURL *curl = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)NOTIFY_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_cb);
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    int ok = 0;
    if (rc != CURLE_OK) {
        seterr(err, errlen, "POST %s failed: %s", url, curl_easy_strerror(rc));
    } else {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        ok = status >= 200 && status < 300;
        if (!ok)
            seterr(err, errlen, "POST %s answered HTTP %ld", url, status);
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(curl);
    free(text);
    return ok ? 0 : -1;
}

int notify_deliver(const ferry_config *cfg, const char *target, const json_t *body, char *err,
                   size_t errlen)
{
    if (strncmp(target, "http://", 7) == 0 || strncmp(target, "https://", 8) == 0)
        return send_post(target, body, err, errlen);
    if (strchr(target, '@') != NULL)
        return send_email(cfg, target, body, err, errlen);
    seterr(err, errlen, "'%s' is neither an email address nor an http(s) URL", target);
    return -1;
}

static void add_targets(json_t *list, const json_t *notify)
{
    if (json_is_string(notify))
        json_array_append(list, (json_t *)notify);
    size_t i;
    json_t *v;
    json_array_foreach(notify, i, v)
    {
        if (json_is_string(v))
            json_array_append(list, v);
    }
}

void notify_deliver_all(const ferry_config *cfg, const json_t *request)
{
    char err[1024];
    const json_t *targets = json_object_get(request, "targets");
    const json_t *body = json_object_get(request, "body");
    const char *task_id = json_string_value(json_object_get(request, "taskId"));

    size_t i;
    json_t *t;
    json_array_foreach(targets, i, t)
    {
        const char *target = json_string_value(t);
        if (target == NULL)
            continue;
        int rc = notify_deliver(cfg, target, body, err, sizeof(err));
        if (task_id == NULL)
            continue;
        store *st = store_open_config(cfg, NULL, 0);
        if (st == NULL)
            continue;
        if (rc == 0)
            store_event_append(st, task_id, "NOTIFIED", target, NULL, 0, NULL, 0);
        else
            store_event_append(st, task_id, "NOTIFY_FAILED", err, NULL, 0, NULL, 0);
        store_close(st);
    }
}

/*
 * Hands the request to a fresh `ferry notify send` process. It must be a new program image,
 * not just a fork: an SQLite connection must never be used across fork(), and the deliverer
 * records what happened in the store.
 */
static void spawn_deliverer(const ferry_config *cfg, const json_t *request)
{
    int fds[2];
    if (pipe(fds) != 0)
        return;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* Double fork: the host reaps this child at once and never waits for delivery. */
        pid_t grandchild = fork();
        if (grandchild == 0) {
            setsid();
            dup2(fds[0], STDIN_FILENO);
            close_range(3, ~0U, 0);
            sigset_t none;
            sigemptyset(&none);
            sigprocmask(SIG_SETMASK, &none, NULL);
            if (cfg->path)
                execl("/proc/self/exe", "ferry", "--config", cfg->path, "notify", "send",
                      (char *)NULL);
            else
                execl("/proc/self/exe", "ferry", "notify", "send", (char *)NULL);
            _exit(127);
        }
        close(fds[0]);
        if (grandchild > 0) {
            char *text = json_dumps(request, JSON_COMPACT);
            size_t n = strlen(text), off = 0;
            while (off < n) {
                ssize_t w = write(fds[1], text + off, n - off);
                if (w <= 0)
                    break;
                off += (size_t)w;
            }
        }
        _exit(0);
    }
    close(fds[0]);
    close(fds[1]);
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
}

/* The targets vault names for an item ending with status (new array, maybe empty). */
static json_t *targets_of(const json_t *vault, const char *status)
{
    json_t *targets = json_array();
    const char *section = strcmp(status, "COMPLETED") == 0 ? "on_success" : "on_failure";
    if (strcmp(status, "CANCELLED") != 0)
        add_targets(targets, json_object_get(json_object_get(vault, section), "notify"));
    /* run_tests and friends name a failure address directly in their parameters. */
    if (strcmp(status, "FAILED") == 0)
        add_targets(targets, json_object_get(vault, "notify_on_failure"));
    return targets;
}

int notify_wanted(const json_t *vault, const char *status)
{
    json_t *targets = targets_of(vault, status);
    int n = json_array_size(targets) > 0;
    json_decref(targets);
    return n;
}

void notify_outcome(const ferry_config *cfg, store *st, const struct store_item *item,
                    const json_t *vault, const char *status, const json_t *response)
{
    (void)st;
    json_t *targets = targets_of(vault, status);
    if (json_array_size(targets) == 0) {
        json_decref(targets);
        return;
    }
    const char *task = item->task_id;
    json_t *resp = response ? vault_redact(response, NULL) : json_null();
    json_t *body = json_pack("{s:s,s:s,s:s,s:s?,s:s?,s:s?,s:s?,s:o}", "event", "ferry.queue_item",
                             "status", status, "taskId", task, "function", item->function, "team",
                             item->team, "machine", item->machine, "bridge", item->bridge,
                             "response", resp);
    json_t *request = json_pack("{s:o,s:o,s:s}", "targets", targets, "body", body, "taskId", task);
    spawn_deliverer(cfg, request);
    json_decref(request);
}
