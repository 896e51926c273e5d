/*
 * The host loop: one thread, one poll. Each turn it handles signals, plugin drop-ins,
 * messages from workers, cancellations and wake-ups, then claims as many ready items as it
 * has free workers. Store writes made in one turn share one transaction (one fsync).
 */
#include "serve.h"

#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "descriptor.h"
#include "exec.h"
#include "log.h"
#include "notify.h"
#include "policy.h"
#include "proto.h"
#include "reap.h"
#include "registry.h"
#include "runner.h"
#include "scheduler.h"
#include "store.h"
#include "util.h"
#include "vault.h"

#define MAX_CALL_DEPTH  8
#define RESCAN_MS       2000 /* safety net for drop-ins inotify missed */
#define RECOVER_MS      2000 /* how often expired leases are looked for */
#define CANCEL_CHECK_MS 250

typedef struct attempt attempt;

/* One running attempt: a claimed item, or a nested call made by one. */
struct attempt {
    char task_id[37];
    char *token;
    json_t *item;  /* the claimed row */
    json_t *vault; /* the request vault (for redaction and policy) */
    json_t *fn;    /* function descriptor (copy) */
    json_t *secrets;
    /* The item's own vault and secret names, for redaction: a call's text is masked with
     * its root's, and keeps them when its caller ends first. */
    json_t *root_vault, *root_secrets;
    int attempt_no;
    int last_percent; /* the highest progress stored for this attempt; -1: none yet */
    int64_t started_mono;
    runner_job *job;
    /* For nested calls: the caller, NULL once the caller ended (the call is then being
     * stopped and its outcome goes nowhere). Always a live attempt of h->running. */
    attempt *parent;
    runner_job *parent_job;
    char *call_function;
    int depth; /* 0: the item's own attempt; n: a call n levels down */
    json_t *stack; /* function names from the root call down, for cycle detection */
    attempt *next;
};

typedef struct host {
    const ferry_config *cfg;
    store *st;
    registry reg;
    runner *run;
    char owner[160];
    int sigfd, inofd, wakefd;
    attempt *running;
    int stopping; /* 1 after SIGTERM: no more claims */
    int64_t stop_deadline;
    int interrupted;
    int in_batch;
    retry_policy defaults;
    int64_t last_heartbeat, last_rescan, last_recover, last_cancel_check;
    scheduler *sched;
    json_t *machines;           /* "team/machine" -> {"at": mono ms, "facts": {...}} */
    json_t *orphans;            /* task id -> claim token, seen unrun by the last orphan pass */
    int64_t next_schedule_mono; /* when scheduler_tick next has work */
    unsigned long completed, failed;
} host;

static void event(host *h, const char *task_id, const char *action, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void event(host *h, const char *task_id, const char *action, const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    char err[512];
    if (store_event_append(h->st, task_id, action, text, NULL, 0, err, sizeof(err)) != 0)
        hlog(LOG_WARN, "cannot record %s event of %s: %s", action, task_id, err);
}

static void batch_begin(host *h)
{
    char err[512];
    if (!h->in_batch && store_begin(h->st, err, sizeof(err)) == 0)
        h->in_batch = 1;
}

static void batch_end(host *h)
{
    char err[512];
    if (h->in_batch && store_commit(h->st, err, sizeof(err)) != 0)
        hlog(LOG_ERROR, "store commit failed: %s", err);
    h->in_batch = 0;
}

static attempt *find_attempt(host *h, const char *task_id)
{
    for (attempt *a = h->running; a; a = a->next)
        if (a->depth == 0 && strcmp(a->task_id, task_id) == 0)
            return a;
    return NULL;
}

/* Whether c is a call made, directly or through other calls, by a. */
static int calls_of(const attempt *c, const attempt *a)
{
    for (const attempt *p = c->parent; p; p = p->parent)
        if (p == a)
            return 1;
    return 0;
}

/*
 * a is ending (its worker is gone or going): every call below it is cancelled, and its
 * direct calls are cut loose, so that nothing refers to a once it is freed and no callee
 * runs on for a caller that can no longer take its answer.
 */
static void end_calls_of(host *h, attempt *a)
{
    for (attempt *c = h->running; c; c = c->next)
        if (calls_of(c, a))
            runner_cancel(h->run, c->job);
    for (attempt *c = h->running; c; c = c->next) {
        if (c->parent == a) {
            c->parent = NULL;
            c->parent_job = NULL;
        }
    }
}

static void unlink_attempt(host *h, attempt *a)
{
    for (attempt **p = &h->running; *p; p = &(*p)->next) {
        if (*p == a) {
            *p = a->next;
            return;
        }
    }
}

static void free_attempt(attempt *a)
{
    free(a->token);
    free(a->call_function);
    json_decref(a->item);
    json_decref(a->vault);
    json_decref(a->fn);
    json_decref(a->secrets);
    json_decref(a->root_vault);
    json_decref(a->root_secrets);
    json_decref(a->stack);
    free(a);
}

static double random_unit(void)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r))
        r = (uint32_t)mono_us();
    return (double)r / 4294967296.0;
}

/* How long a machine's facts are reused before they are read from the store again. */
#define MACHINE_CACHE_MS 1000

static json_t *machine_lookup(host *h, const json_t *item);

/*
 * Adds the item's pre_hook and post_hook (host-owned vault keys) to the machine facts as
 * "_hooks": the worker runs them on the machine around the function, for the item's own
 * attempt only (depth 0), never for nested calls. Takes and returns the reference facts.
 */
static json_t *with_hooks(json_t *facts, const json_t *item)
{
    const json_t *vault = json_object_get(item, "vaultContent");
    json_t *pre = json_object_get(vault, "pre_hook"), *post = json_object_get(vault, "post_hook");
    if (json_is_object(facts) && (json_is_string(pre) || json_is_string(post)))
        json_object_set_new(facts, "_hooks",
                            json_pack("{s:O?,s:O?}", "pre_hook", json_is_string(pre) ? pre : NULL,
                                      "post_hook", json_is_string(post) ? post : NULL));
    return facts;
}

/*
 * The machine as workers see it, cached for a second but never across claims (claim()
 * clears the cache): a busy bridge claims many items of the same machines at once, and
 * re-reading the row for each would cost a query per job.
 */
static json_t *machine_for_worker(host *h, const json_t *item)
{
    const char *team = json_string_value(json_object_get(item, "teamName"));
    const char *name = json_string_value(json_object_get(item, "machineName"));
    char key[300];
    snprintf(key, sizeof(key), "%s/%s", team ? team : "", name ? name : "");
    json_t *hit = json_object_get(h->machines, key);
    int64_t now = mono_ms();
    if (hit && now - json_integer_value(json_object_get(hit, "at")) < MACHINE_CACHE_MS)
        return with_hooks(json_deep_copy(json_object_get(hit, "facts")), item);
    json_t *facts = machine_lookup(h, item);
    if (json_object_size(h->machines) > 4096)
        json_object_clear(h->machines);
    json_object_set_new(h->machines, key,
                        json_pack("{s:I,s:o}", "at", (json_int_t)now, "facts", facts));
    return with_hooks(json_deep_copy(facts), item); /* the cached facts stay item-free */
}

/* The SSH_PRIVATE_KEY (any case) of a vault, or NULL. Borrowed from vault. */
static json_t *vault_ssh_key(const json_t *vault)
{
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)vault, key, v) {
        if (strcasecmp(key, "ssh_private_key") == 0 && json_is_string(v) &&
            json_string_length(v) > 0)
            return v;
    }
    return NULL;
}

/* Reads the machine's vault: connection facts, with secrets removed. New reference. */
static json_t *machine_lookup(host *h, const json_t *item)
{
    const char *team = json_string_value(json_object_get(item, "teamName"));
    const char *name = json_string_value(json_object_get(item, "machineName"));
    json_t *row = NULL;
    char err[512];
    if (store_resource_get(h->st, STORE_MACHINE, team, name, &row, err, sizeof(err)) != 0)
        return json_pack("{s:s,s:s?,s:b}", "name", name, "team", team, "local", 0);
    json_t *vault = json_object_get(row, "vault");
    json_t *m = vault_redact(vault, NULL);
    /* Secrets stay out of the facts but the exec service needs the key: it travels under a
     * name the machine service never returns. */
    json_object_set_new(m, "name", json_string(name));
    json_object_set_new(m, "team", json_string(team));
    json_object_set(m, "bridge", json_object_get(row, "bridgeName"));
    json_object_set_new(m, "local", json_boolean(exec_machine_is_local(vault)));
    json_t *key = vault_ssh_key(vault), *team_row = NULL;
    if (key == NULL && !exec_machine_is_local(vault) &&
        store_resource_get(h->st, STORE_TEAM, NULL, team, &team_row, err, sizeof(err)) == 0)
        key = vault_ssh_key(json_object_get(team_row, "vault"));
    if (key)
        json_object_set(m, EXEC_SSH_KEY_MEMBER, key);
    json_decref(team_row);
    json_decref(row);
    return m;
}

/*
 * The parameters a function sees: the vault without the keys the host acts on. The
 * informational host keys (description, tags) are passed through too: a backup records
 * them with its snapshot.
 */
static json_t *params_of(const json_t *vault)
{
    json_t *params = json_object();
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)vault, key, v) {
        if (!vault_is_host_key(key) || !strcmp(key, "description") || !strcmp(key, "tags"))
            json_object_set(params, key, v);
    }
    return params;
}

static int64_t timeout_ms_for(host *h, const json_t *vault, const json_t *fn)
{
    json_int_t t = json_integer_value(json_object_get(vault, "timeout"));
    if (t <= 0)
        t = json_integer_value(json_object_get(fn, "timeout"));
    if (t <= 0)
        t = h->cfg->timeout_default;
    if (t > h->cfg->timeout_max)
        t = h->cfg->timeout_max;
    return (int64_t)t * 1000;
}

/* --- ending an attempt -------------------------------------------------------------------- */

static retry_policy policy_for(host *h, const json_t *vault)
{
    retry_policy p = h->defaults;
    const json_t *mr = json_object_get(vault, "max_retries");
    const json_t *rd = json_object_get(vault, "retry_delay");
    if (json_is_integer(mr))
        p.max_retries = (int)json_integer_value(mr);
    if (json_is_integer(rd))
        p.delay_ms = json_integer_value(rd) * 1000;
    return p;
}

static void enqueue_fallback(host *h, attempt *a, const runner_outcome *out)
{
    const json_t *on_failure = json_object_get(a->vault, "on_failure");
    const char *fallback = json_string_value(json_object_get(on_failure, "fallback_function"));
    if (fallback == NULL || !policy_runs_fallback(out->status))
        return;
    json_t *vault = params_of(a->vault);
    json_object_set_new(vault, "function", json_string(fallback));
    /* The fallback keeps the original's retry policy and notifications, but not its own
     * fallback: a failing fallback must not start a chain. */
    const char *keep[] = {"timeout",    "max_retries", "retry_delay",
                          "on_success", "description", "tags"};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
        if (json_object_get(a->vault, keep[i]))
            json_object_set(vault, keep[i], json_object_get(a->vault, keep[i]));
    json_t *notify = json_object_get(on_failure, "notify");
    if (notify)
        json_object_set_new(vault, "on_failure", json_pack("{s:O}", "notify", notify));
    json_object_set_new(vault, "failure",
                        json_pack("{s:s,s:s,s:s,s:s,s:i}", "task_id", a->task_id, "function",
                                  json_string_value(json_object_get(a->item, "function")), "status",
                                  runner_status_name(out->status), "message",
                                  out->err_msg ? out->err_msg : "", "attempts", a->attempt_no));
    struct ferry_fn fb_fn;
    struct store_item_spec spec = {
        .team = json_string_value(json_object_get(a->item, "teamName")),
        .machine = json_string_value(json_object_get(a->item, "machineName")),
        .bridge = json_string_value(json_object_get(a->item, "bridgeName")),
        .function = fallback,
        .priority = (int)json_integer_value(json_object_get(a->item, "priority")),
        .vault = vault,
        .parent_task_id = a->task_id,
        .link_kind = "fallback",
    };
    spec.idempotent = registry_fn(&h->reg, fallback, &fb_fn) == 0 &&
                      (fb_fn.flags & FERRY_FN_IDEMPOTENT) != 0;
    char id[37], err[512];
    if (store_queue_create(h->st, &spec, id, NULL, err, sizeof(err)) == 0) {
        event(h, a->task_id, "FALLBACK", "fallback %s queued as %s", fallback, id);
        event(h, id, "FALLBACK_OF", "fallback for %s (%s %s)", a->task_id,
              json_string_value(json_object_get(a->item, "function")),
              runner_status_name(out->status));
    } else {
        event(h, a->task_id, "FALLBACK_FAILED", "fallback %s could not be queued: %s", fallback,
              err);
    }
    json_decref(vault);
}

static json_t *response_vault(const attempt *a, const char *status, const runner_outcome *out)
{
    json_t *resp =
        json_pack("{s:s,s:s,s:i,s:I}", "status", status, "function",
                  json_string_value(json_object_get(a->item, "function")), "attempts",
                  a->attempt_no, "duration_ms", (json_int_t)(mono_ms() - a->started_mono));
    json_object_set_new(resp, "result", out->result ? json_deep_copy(out->result) : json_null());
    if (out->status == RUN_OK)
        json_object_set_new(resp, "error", json_null());
    else
        json_object_set_new(resp, "error",
                            json_pack("{s:s,s:s,s:s}", "code",
                                      out->err_code ? out->err_code : "error", "outcome",
                                      runner_status_name(out->status), "message",
                                      out->err_msg ? out->err_msg : ""));
    return resp;
}

static void settle(host *h, attempt *a, const runner_outcome *out)
{
    char err[512];
    const char *task = a->task_id;
    /* Capped once, so that lastFailureReason and the response vault's error say the same. */
    char *redacted = out->err_msg ? redact_text(out->err_msg, a->vault, a->secrets) : NULL;
    char *msg = proto_clean_text(redacted, PROTO_ERROR_MAX);
    free(redacted);
    retry_policy pol = policy_for(h, a->vault);
    struct store_outcome so = {0};
    json_t *resp = NULL;
    const char *final = NULL;
    char done_text[128];

    if (out->status == RUN_OK) {
        resp = response_vault(a, "COMPLETED", out);
        so.kind = STORE_OUTCOME_COMPLETED;
        so.response = resp;
        snprintf(done_text, sizeof(done_text), "attempt %d completed in %lld ms", a->attempt_no,
                 (long long)(mono_ms() - a->started_mono));
        so.reason = done_text;
        final = "COMPLETED";
    } else if (out->status == RUN_CANCELLED && out->err_code &&
               strcmp(out->err_code, "interrupted") == 0) {
        so.kind = STORE_OUTCOME_RELEASE;
        so.reason = "interrupted by host shutdown; returned to the queue";
        event(h, task, "INTERRUPTED",
              "attempt %d interrupted by host shutdown; returned to "
              "the queue",
              a->attempt_no);
    } else if (out->status == RUN_CANCELLED) {
        resp = response_vault(a, "CANCELLED", out);
        so.kind = STORE_OUTCOME_CANCELLED;
        so.response = resp;
        so.reason = "cancelled while running";
        final = "CANCELLED";
    } else {
        event(h, task, "ATTEMPT_FAILED", "attempt %d %s: %s", a->attempt_no,
              runner_status_name(out->status), msg ? msg : "");
        if (policy_should_retry(&pol, out->status, a->attempt_no)) {
            int64_t delay = policy_retry_delay_ms(&pol, a->attempt_no, random_unit());
            so.kind = STORE_OUTCOME_RETRY;
            so.run_after_ms = now_ms() + delay;
            so.reason = msg ? msg : runner_status_name(out->status);
            event(h, task, "RETRY", "retry %d of %d in %.1f s", a->attempt_no, pol.max_retries,
                  (double)delay / 1000.0);
        } else {
            runner_outcome red = *out;
            red.err_msg = msg;
            resp = response_vault(a, "FAILED", &red);
            so.kind = STORE_OUTCOME_FAILED;
            so.response = resp;
            so.reason = msg ? msg : runner_status_name(out->status);
            final = "FAILED";
        }
    }
    int rc = store_finish(h->st, task, a->token, &so, now_ms(), err, sizeof(err));
    if (rc == STORE_CONFLICT) {
        hlog(LOG_WARN, "item %s changed while it ran (%s); its outcome %s is dropped", task, err,
             runner_status_name(out->status));
    } else if (rc != 0) {
        hlog(LOG_ERROR, "cannot record the outcome of %s: %s", task, err);
    } else if (final) {
        if (strcmp(final, "FAILED") == 0) {
            h->failed++;
            enqueue_fallback(h, a, out);
        } else if (strcmp(final, "COMPLETED") == 0) {
            h->completed++;
        }
        notify_outcome(h->cfg, h->st, a->item, a->vault, final, resp);
    }
    json_decref(resp);
    free(msg);
}

/* --- starting an attempt -------------------------------------------------------------- */

static void fail_before_start(host *h, const json_t *item, const char *token, const char *code,
                              const char *reason)
{
    char err[512];
    const char *task = json_string_value(json_object_get(item, "taskId"));
    json_t *resp =
        json_pack("{s:s,s:s,s:n,s:{s:s,s:s,s:s},s:i}", "status", "FAILED", "function",
                  json_string_value(json_object_get(item, "function")), "result", "error", "code",
                  code, "outcome", strcmp(code, "invalid") == 0 ? "INVALID" : "UNAVAILABLE",
                  "message", reason, "attempts", 1);
    struct store_outcome so = {.kind = STORE_OUTCOME_FAILED, .response = resp, .reason = reason};
    if (store_finish(h->st, task, token, &so, now_ms(), err, sizeof(err)) != 0)
        hlog(LOG_WARN, "cannot fail %s: %s", task, err);
    else
        h->failed++;
    json_decref(resp);
}

/* Builds the worker's run message for function fn; params and machine are taken. */
static json_t *run_message(host *h, const json_t *fn, json_t *params, json_t *machine, int depth)
{
    const char *plugin = json_string_value(json_object_get(fn, "plugin"));
    return json_pack("{s:s,s:s,s:o,s:o,s:o,s:i}", "plugin",
                     json_string_value(json_object_get(fn, "path")), "function",
                     json_string_value(json_object_get(fn, "name")), "params", params, "config",
                     config_plugin_section(h->cfg, plugin), "machine",
                     machine ? machine : json_null(), "depth", depth);
}

static void start_item(host *h, json_t *item)
{
    const char *task = json_string_value(json_object_get(item, "taskId"));
    const char *token = json_string_value(json_object_get(item, "claimToken"));
    const char *fname = json_string_value(json_object_get(item, "function"));
    char err[1024];
    const json_t *fn = registry_function(&h->reg, fname);
    if (fn == NULL) {
        snprintf(err, sizeof(err),
                 "function %s is not provided by any plugin on bridge %s (plugin directory "
                 "%s); see ferry plugins",
                 fname, h->cfg->bridge, h->reg.dir);
        fail_before_start(h, item, token, "unavailable", err);
        return;
    }
    json_t *vault = json_deep_copy(json_object_get(item, "vaultContent"));
    if (!json_is_object(vault)) {
        json_decref(vault);
        vault = json_object();
    }
    if (params_validate(fn, vault, err, sizeof(err)) != 0) {
        fail_before_start(h, item, token, "invalid", err);
        json_decref(vault);
        return;
    }
    if (store_start(h->st, task, token, now_ms(), err, sizeof(err)) != 0) {
        hlog(LOG_WARN, "cannot start %s: %s", task, err);
        json_decref(vault);
        return;
    }
    attempt *a = calloc(1, sizeof(*a));
    snprintf(a->task_id, sizeof(a->task_id), "%s", task);
    a->token = xstrdup(token);
    a->item = json_incref(item);
    a->vault = vault;
    a->fn = json_deep_copy(fn);
    a->secrets = params_secret_names(fn);
    a->root_vault = json_incref(a->vault);
    a->root_secrets = json_incref(a->secrets);
    a->attempt_no = (int)json_integer_value(json_object_get(item, "attempt"));
    if (a->attempt_no < 1)
        a->attempt_no = 1;
    a->started_mono = mono_ms();
    a->last_percent = -1;
    a->stack = json_pack("[s]", fname);
    int64_t timeout = timeout_ms_for(h, vault, fn);
    json_t *msg = run_message(h, fn, params_of(vault), machine_for_worker(h, item), 0);
    json_object_set_new(msg, "task", json_string(task)); /* host->task_id, host->attempt */
    json_object_set_new(msg, "attempt", json_integer(a->attempt_no));
    a->job = runner_submit(h->run, msg, timeout, a, 0);
    if (a->job == NULL) {
        struct store_outcome so = {.kind = STORE_OUTCOME_RELEASE, .reason = "no worker free"};
        store_finish(h->st, task, token, &so, now_ms(), err, sizeof(err));
        free_attempt(a);
        return;
    }
    a->next = h->running;
    h->running = a;
    hlog(LOG_DEBUG, "%s: attempt %d in worker %d, timeout %lld s", task, a->attempt_no,
         (int)runner_job_pid(a->job), (long long)(timeout / 1000));
}

/* --- worker callbacks ------------------------------------------------------------------ */

static void on_message(void *ud, runner_job *job, const json_t *msg)
{
    host *h = ud;
    attempt *a = runner_job_tag(job);
    const char *op = json_string_value(json_object_get(msg, "op"));
    batch_begin(h);
    if (strcmp(op, "log") == 0) {
        char *text = redact_text(json_string_value(json_object_get(msg, "text")), a->root_vault,
                                 a->root_secrets);
        const char *level = json_string_value(json_object_get(msg, "level"));
        if (a->depth > 0)
            event(h, a->task_id, "LOG", "[%s] %s: %s", level, a->call_function, text);
        else
            event(h, a->task_id, "LOG", "[%s] %s", level, text);
        free(text);
    } else if (strcmp(op, "progress") == 0 && a->depth == 0) {
        char err[512];
        const char *m = json_string_value(json_object_get(msg, "message"));
        char *text = m ? redact_text(m, a->root_vault, a->root_secrets) : NULL;
        /* Stored progress never goes back within an attempt: a lower percent keeps the
         * highest one seen (its message still replaces the old one). */
        int percent = (int)json_integer_value(json_object_get(msg, "percent"));
        if (percent < a->last_percent)
            percent = a->last_percent;
        a->last_percent = percent;
        store_progress(h->st, a->task_id, a->token, percent, text, now_ms(), err, sizeof(err));
        free(text);
    }
}

static void reply_error(host *h, runner_job *job, const char *code, const char *outcome,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void reply_error(host *h, runner_job *job, const char *code, const char *outcome,
                        const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    json_t *reply = json_pack("{s:s,s:n,s:{s:s,s:s}}", "code", outcome, "result", "error", "code",
                              code, "message", text);
    runner_reply(h->run, job, reply);
    json_decref(reply);
}

static void start_call(host *h, attempt *caller, runner_job *caller_job, const json_t *msg)
{
    const char *fname = json_string_value(json_object_get(msg, "function"));
    if (fname == NULL) {
        reply_error(h, caller_job, "invalid", "INVALID", "call without a function name");
        return;
    }
    size_t i;
    json_t *s;
    json_array_foreach (caller->stack, i, s) {
        if (strcmp(json_string_value(s), fname) == 0) {
            char *chain = json_dumps(caller->stack, JSON_COMPACT);
            reply_error(h, caller_job, "call_cycle", "INVALID", "call cycle: %s calls %s again",
                        chain, fname);
            event(h, caller->task_id, "CALL_REFUSED", "call cycle: %s -> %s", chain, fname);
            free(chain);
            return;
        }
    }
    if (caller->depth + 1 > MAX_CALL_DEPTH) {
        reply_error(h, caller_job, "call_depth", "INVALID", "calls nest deeper than %d",
                    MAX_CALL_DEPTH);
        event(h, caller->task_id, "CALL_REFUSED", "call to %s refused: deeper than %d", fname,
              MAX_CALL_DEPTH);
        return;
    }
    const json_t *fn = registry_function(&h->reg, fname);
    if (fn == NULL) {
        reply_error(h, caller_job, "unavailable", "FAIL", "no function %s on this bridge", fname);
        event(h, caller->task_id, "CALL_FAILED", "call to %s: no such function", fname);
        return;
    }
    json_t *vault = json_deep_copy(json_object_get(msg, "params"));
    if (!json_is_object(vault)) {
        json_decref(vault);
        vault = json_object();
    }
    char err[1024];
    if (params_validate(fn, vault, err, sizeof(err)) != 0) {
        reply_error(h, caller_job, "invalid", "INVALID", "%s", err);
        event(h, caller->task_id, "CALL_FAILED", "call to %s: %s", fname, err);
        json_decref(vault);
        return;
    }
    attempt *a = calloc(1, sizeof(*a));
    snprintf(a->task_id, sizeof(a->task_id), "%s", caller->task_id);
    a->attempt_no = caller->attempt_no;
    a->root_vault = json_incref(caller->root_vault);
    a->root_secrets = json_incref(caller->root_secrets);
    a->parent = caller;
    a->parent_job = caller_job;
    a->call_function = xstrdup(fname);
    a->item = json_incref(caller->item);
    a->vault = vault;
    a->fn = json_deep_copy(fn);
    a->secrets = params_secret_names(fn);
    a->depth = caller->depth + 1;
    a->stack = json_deep_copy(caller->stack);
    json_array_append_new(a->stack, json_string(fname));
    a->started_mono = mono_ms();
    int64_t timeout = timeout_ms_for(h, vault, fn);
    json_t *run =
        run_message(h, fn, params_of(vault), machine_for_worker(h, caller->item), a->depth);
    json_object_set_new(run, "task", json_string(a->task_id)); /* the item's, for keys */
    json_object_set_new(run, "attempt", json_integer(a->attempt_no));
    a->job = runner_submit(h->run, run, timeout, a, 1);
    if (a->job == NULL) {
        reply_error(h, caller_job, "unavailable", "RETRY", "no worker free for call to %s", fname);
        free_attempt(a);
        return;
    }
    a->next = h->running;
    h->running = a;
    event(h, caller->task_id, "CALL", "%*s%s called %s", a->depth * 2 - 2, "",
          caller->call_function ? caller->call_function
                                : json_string_value(json_object_get(caller->item, "function")),
          fname);
}

static void on_request(void *ud, runner_job *job, const json_t *msg)
{
    host *h = ud;
    attempt *a = runner_job_tag(job);
    const char *op = json_string_value(json_object_get(msg, "op"));
    batch_begin(h);
    if (strcmp(op, "call") == 0) {
        start_call(h, a, job, msg);
    } else if (strcmp(op, "storage") == 0) {
        const char *name = json_string_value(json_object_get(msg, "name"));
        const char *team = json_string_value(json_object_get(a->item, "teamName"));
        json_t *row = NULL;
        char err[512];
        json_t *reply;
        if (name &&
            store_resource_get(h->st, STORE_STORAGE, team, name, &row, err, sizeof(err)) == 0)
            reply = json_pack("{s:O}", "vault", json_object_get(row, "vault"));
        else
            reply = json_pack("{s:n,s:s}", "vault", "error", name ? err : "no storage name");
        runner_reply(h->run, job, reply);
        json_decref(reply);
        json_decref(row);
    } else {
        reply_error(h, job, "unavailable", "FAIL", "unknown request %s", op ? op : "(none)");
    }
}

static void on_done(void *ud, runner_job *job, const runner_outcome *out)
{
    host *h = ud;
    attempt *a = runner_job_tag(job);
    unlink_attempt(h, a);
    batch_begin(h);
    end_calls_of(h, a);
    if (a->depth > 0) {
        json_t *reply = json_pack("{s:s}", "code",
                                  out->status == RUN_OK        ? "OK"
                                  : out->status == RUN_INVALID ? "INVALID"
                                  : out->status == RUN_RETRY   ? "RETRY"
                                                               : "FAIL");
        json_object_set_new(reply, "result",
                            out->result ? json_deep_copy(out->result) : json_null());
        if (out->status != RUN_OK)
            json_object_set_new(reply, "error",
                                json_pack("{s:s,s:s}", "code",
                                          out->err_code ? out->err_code : "error", "message",
                                          out->err_msg ? out->err_msg : ""));
        /* A caller that ended first cut this call loose (end_calls_of): nobody to answer. */
        if (a->parent)
            runner_reply(h->run, a->parent_job, reply);
        json_decref(reply);
        char *m = out->err_msg ? redact_text(out->err_msg, a->root_vault, a->root_secrets) : NULL;
        event(h, a->task_id, "CALL_DONE", "%s %s in %lld ms%s%s%s", a->call_function,
              runner_status_name(out->status), (long long)(mono_ms() - a->started_mono),
              m ? ": " : "", m ? m : "", a->parent ? "" : " (its caller had ended)");
        free(m);
    } else {
        settle(h, a, out);
    }
    free_attempt(a);
}

/* --- the loop's chores ---------------------------------------------------------------- */

static void claim(host *h)
{
    while (!h->stopping) {
        int slots = runner_free_slots(h->run);
        if (slots <= 0)
            return;
        json_t *items = NULL;
        char err[512];
        batch_begin(h);
        int64_t lease = (int64_t)h->cfg->lease_seconds * 1000;
        if (store_claim(h->st, h->cfg->bridge, h->owner, lease, slots, now_ms(), &items, err,
                        sizeof(err)) != 0) {
            hlog(LOG_ERROR, "claim failed: %s", err);
            return;
        }
        size_t n = json_array_size(items), i;
        json_t *item;
        /* On PostgreSQL a batch cut by a lost connection is replayed, and a replayed claim
         * may find its item taken by another host meanwhile: commit the claim before any
         * worker starts, so an item never runs on a claim that did not hold. */
        if (n > 0 && strcmp(store_driver_name(h->st), "postgres") == 0) {
            batch_end(h);
            batch_begin(h);
        }
        /* A machine's facts are cached for the items of one claim only: a vault changed
         * before a claim (a new SSH key, a host-key pin) is what its items see. */
        json_object_clear(h->machines);
        json_array_foreach (items, i, item)
            start_item(h, item);
        json_decref(items);
        if ((int)n < slots)
            return;
    }
}

static void check_cancelling(host *h)
{
    json_t *items = NULL;
    char err[512];
    if (store_cancelling(h->st, h->owner, &items, err, sizeof(err)) != 0)
        return;
    size_t i;
    json_t *item;
    json_array_foreach (items, i, item) {
        attempt *a = find_attempt(h, json_string_value(json_object_get(item, "taskId")));
        if (a && a->job) {
            runner_cancel(h->run, a->job);
            /* its nested calls go too */
            for (attempt *c = h->running; c; c = c->next)
                if (calls_of(c, a))
                    runner_cancel(h->run, c->job);
        }
    }
    json_decref(items);
}

/*
 * Ends an item whose attempt no host runs: never started ones go back to the queue,
 * idempotent ones are retried, others fail with the reason. what names the loss ("host
 * lost", "attempt lost") and why its circumstance (the host, or the lost commit).
 */
static void recover_one(host *h, json_t *item, const char *what, const char *why)
{
    char err[512];
    const char *task = json_string_value(json_object_get(item, "taskId"));
    const char *token = json_string_value(json_object_get(item, "claimToken"));
    const char *status = json_string_value(json_object_get(item, "status"));
    struct store_outcome so = {0};
    char reason[512];
    int idempotent = json_is_true(json_object_get(item, "idempotent"));
    if (strcmp(status, "ASSIGNED") == 0) {
        /* Never started: safe to run whatever the function is. */
        so.kind = STORE_OUTCOME_RELEASE;
        snprintf(reason, sizeof(reason),
                 "%s before the attempt started (%s); returned to the "
                 "queue",
                 what, why);
    } else if (strcmp(status, "CANCELLING") == 0) {
        so.kind = STORE_OUTCOME_CANCELLED;
        snprintf(reason, sizeof(reason), "%s while cancelling (%s)", what, why);
    } else if (idempotent) {
        so.kind = STORE_OUTCOME_RETRY;
        snprintf(reason, sizeof(reason),
                 "%s while running (%s); retrying: the function is "
                 "idempotent",
                 what, why);
    } else {
        so.kind = STORE_OUTCOME_FAILED;
        snprintf(reason, sizeof(reason), "%s while running (%s)", what, why);
    }
    so.reason = reason;
    json_t *resp = NULL;
    if (so.kind == STORE_OUTCOME_FAILED) {
        resp = json_pack("{s:s,s:s,s:n,s:{s:s,s:s,s:s}}", "status", "FAILED", "function",
                         json_string_value(json_object_get(item, "function")), "result", "error",
                         "code", "host_lost", "outcome", "CRASHED", "message", reason);
        so.response = resp;
    }
    batch_begin(h);
    if (store_finish(h->st, task, token, &so, now_ms(), err, sizeof(err)) == 0) {
        event(h, task, "RECOVERED", "%s", reason);
        hlog(LOG_WARN, "recovered %s: %s", task, reason);
    }
    json_decref(resp);
}

/* Items whose host vanished (their lease expired). */
static void recover_expired(host *h)
{
    json_t *items = NULL;
    char err[512];
    if (store_expired(h->st, h->cfg->bridge, now_ms(), &items, err, sizeof(err)) != 0)
        return;
    size_t i;
    json_t *item;
    json_array_foreach (items, i, item) {
        if (find_attempt(h, json_string_value(json_object_get(item, "taskId"))))
            continue; /* ours and running: the heartbeat is late, not lost */
        const char *owner = json_string_value(json_object_get(item, "leaseOwner"));
        recover_one(h, item, "host lost", owner ? owner : "?");
    }
    json_decref(items);
}

/*
 * Items this host holds in the store but does not run. A commit whose outcome was unknown
 * (the connection to the store lost while committing) can leave one claimed or still
 * running in the store after the host gave it up; the heartbeat would renew its lease for
 * as long as the host lives, holding its machine. Every item whose lease runs out within
 * the next ten leases is looked at. One of this owner without an attempt is ended only when
 * the previous pass, 2 s earlier, saw it so too under the same claim, so that nothing in
 * the middle of a change is ever taken for lost.
 */
static void recover_orphans(host *h)
{
    json_t *items = NULL;
    char err[512];
    int64_t horizon = now_ms() + 10 * (int64_t)h->cfg->lease_seconds * 1000;
    if (store_expired(h->st, h->cfg->bridge, horizon, &items, err, sizeof(err)) != 0)
        return;
    json_t *seen = json_object();
    size_t i;
    json_t *item;
    json_array_foreach (items, i, item) {
        const char *owner = json_string_value(json_object_get(item, "leaseOwner"));
        const char *task = json_string_value(json_object_get(item, "taskId"));
        const char *token = json_string_value(json_object_get(item, "claimToken"));
        if (owner == NULL || task == NULL || token == NULL || strcmp(owner, h->owner) != 0 ||
            find_attempt(h, task))
            continue;
        const char *before = json_string_value(json_object_get(h->orphans, task));
        if (before && strcmp(before, token) == 0)
            recover_one(h, item, "attempt lost by this host",
                        "its outcome or claim went with a failed store commit");
        else
            json_object_set_new(seen, task, json_string(token));
    }
    json_decref(items);
    json_decref(h->orphans);
    h->orphans = seen;
}

static void rescan(host *h)
{
    if (registry_scan(&h->reg) > 0) {
        size_t n = json_object_size(h->reg.by_name);
        hlog(LOG_INFO, "plugins rescanned: %zu functions available", n);
        runner_recycle(h->run);
    }
    h->last_rescan = mono_ms();
}

static int setup_fds(host *h)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    h->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    h->inofd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (h->inofd >= 0 && inotify_add_watch(h->inofd, h->reg.dir,
                                           IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM |
                                               IN_DELETE | IN_CREATE | IN_ATTRIB) < 0)
        hlog(LOG_WARN, "cannot watch %s for drop-ins (%s); rescanning every %d s", h->reg.dir,
             strerror(errno), RESCAN_MS / 1000);
    char err[512];
    h->wakefd = store_wait_fd(h->st, h->cfg->bridge, err, sizeof(err));
    if (h->wakefd < 0)
        hlog(LOG_WARN, "no wake-ups from the store (%s); polling every %d ms", err,
             h->cfg->poll_ms);
    return h->sigfd >= 0 ? 0 : -1;
}

static void handle_signals(host *h)
{
    struct signalfd_siginfo si;
    while (read(h->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            hlog(LOG_INFO, "SIGHUP: rescanning plugins");
            registry_rescan_all(&h->reg); /* loaded plugins keep their functions */
            runner_recycle(h->run);
            continue;
        }
        if (!h->stopping) {
            h->stopping = 1;
            h->stop_deadline = mono_ms() + (int64_t)h->cfg->grace_seconds * 1000;
            hlog(LOG_INFO, "%s: no more claims; waiting up to %d s for %d running attempt(s)",
                 strsignal((int)si.ssi_signo), h->cfg->grace_seconds, runner_busy(h->run));
        } else if (!h->interrupted) {
            h->stop_deadline = 0; /* a second signal: interrupt now */
        }
    }
}

static void interrupt_all(host *h)
{
    h->interrupted = 1;
    for (attempt *a = h->running; a; a = a->next)
        runner_interrupt(h->run, a->job);
}

/* With --drain: true once nothing of this bridge is left to run or running. */
static int drained(host *h)
{
    if (runner_busy(h->run) > 0)
        return 0;
    json_t *counts = NULL;
    char err[512];
    if (store_queue_counts(h->st, h->cfg->bridge, &counts, err, sizeof(err)) != 0)
        return 0;
    json_int_t left = 0;
    const char *active[] = {"PENDING", "ASSIGNED", "PROCESSING", "CANCELLING"};
    for (size_t i = 0; i < 4; i++)
        left += json_integer_value(json_object_get(counts, active[i]));
    json_decref(counts);
    return left == 0;
}

static int loop_timeout(host *h)
{
    int t = h->cfg->poll_ms;
    int r = runner_timeout_ms(h->run);
    if (r >= 0 && r < t)
        t = r;
    if (h->running && t > CANCEL_CHECK_MS)
        t = CANCEL_CHECK_MS;
    int hb = h->cfg->lease_seconds * 1000 / 3;
    if (hb < t)
        t = hb;
    if (h->stopping && t > 100)
        t = 100;
    int64_t until_schedule = h->next_schedule_mono - mono_ms();
    if (until_schedule < t)
        t = until_schedule < 0 ? 0 : (int)until_schedule;
    return t;
}

static void chores(host *h, int64_t now)
{
    char err[512];
    if (now - h->last_heartbeat >= h->cfg->lease_seconds * 1000 / 3) {
        batch_begin(h);
        if (store_heartbeat(h->st, h->owner, (int64_t)h->cfg->lease_seconds * 1000, now_ms(), NULL,
                            err, sizeof(err)) != 0)
            hlog(LOG_WARN, "heartbeat failed: %s", err);
        h->last_heartbeat = now;
    }
    if (now - h->last_cancel_check >= CANCEL_CHECK_MS && h->running) {
        check_cancelling(h);
        h->last_cancel_check = now;
    }
    if (now - h->last_recover >= RECOVER_MS) {
        recover_expired(h);
        recover_orphans(h);
        h->last_recover = now;
    }
    if (now - h->last_rescan >= RESCAN_MS)
        rescan(h);
    if (!h->stopping && now >= h->next_schedule_mono) {
        batch_begin(h);
        h->next_schedule_mono = now + scheduler_tick(h->sched, h->st, now_ms());
    }
}

/*
 * The host allocates and frees many small JSON and SQLite buffers per job; glibc's default
 * of giving memory back to the kernel whenever 128 KiB are free at the top of the heap
 * turned that churn into page faults (about 8% of the host's time in a drain). Keep it.
 */
static void tune_malloc(void)
{
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 4 << 20);
    mallopt(M_MMAP_THRESHOLD, 8 << 20);
}

int serve_run(const ferry_config *cfg, const serve_options *opts)
{
    tune_malloc();
    host h = {.cfg = cfg, .sigfd = -1, .inofd = -1, .wakefd = -1};
    char err[1024], hostname[64] = "host";
    gethostname(hostname, sizeof(hostname) - 1);
    char rnd[37];
    uuid_v4(rnd);
    snprintf(h.owner, sizeof(h.owner), "%s:%d:%.8s", hostname, (int)getpid(), rnd);
    h.defaults = (retry_policy){.max_retries = cfg->retry_max,
                                .delay_ms = (int64_t)cfg->retry_delay * 1000,
                                .backoff = cfg->retry_backoff,
                                .max_delay_ms = (int64_t)cfg->retry_max_delay * 1000,
                                .jitter = cfg->retry_jitter};
    const char *containment = reap_host_check(err, sizeof(err));
    if (containment == NULL) {
        hlog(LOG_ERROR, "%s", err);
        return -1;
    }
    hlog(LOG_INFO, "process containment: %s", containment);
    /* Named without credentials: the conninfo may hold a password. */
    const char *target = store_config_target(cfg);
    h.st = store_open_config(cfg, err, sizeof(err));
    if (h.st == NULL) {
        hlog(LOG_ERROR, "%s", err);
        return -1;
    }
    registry_init(&h.reg, cfg->plugin_dir, cfg->plugin_sections);
    registry_scan(&h.reg);
    runner_opts ro = {.max_workers = cfg->workers,
                      .prefork = cfg->prefork,
                      .max_jobs = cfg->worker_max_jobs,
                      .memory_limit_mb = cfg->worker_memory_mb,
                      .grace_ms = cfg->grace_seconds * 1000};
    runner_callbacks cb = {.on_message = on_message, .on_request = on_request, .on_done = on_done};
    h.run = runner_new(&ro, &cb, &h);
    h.sched = scheduler_new(cfg, &h.reg);
    h.machines = json_object();
    h.orphans = json_object();
    if (setup_fds(&h) != 0) {
        hlog(LOG_ERROR, "cannot set up signal handling: %s", strerror(errno));
        return -1;
    }
    hlog(LOG_INFO,
         "ferry %s serving bridge %s as %s: store %s (%s), %zu functions from %s, "
         "%d workers",
         FERRY_VERSION, cfg->bridge, h.owner, target, store_driver_name(h.st),
         json_object_size(h.reg.by_name), cfg->plugin_dir, cfg->workers);
    runner_tick(h.run);
    recover_expired(&h);
    h.last_recover = h.last_rescan = mono_ms();
    int rc = 0;
    for (;;) {
        struct pollfd fds[4] = {{.fd = h.sigfd, .events = POLLIN},
                                {.fd = h.inofd, .events = POLLIN},
                                {.fd = h.wakefd, .events = POLLIN},
                                {.fd = runner_fd(h.run), .events = POLLIN}};
        poll(fds, 4, loop_timeout(&h));
        if (fds[0].revents)
            handle_signals(&h);
        if (fds[1].revents) {
            char buf[4096];
            while (read(h.inofd, buf, sizeof(buf)) > 0)
                ;
            usleep(50000); /* let a copy finish before it is probed */
            rescan(&h);
        }
        if (fds[2].revents)
            store_wait_drain(h.st);
        runner_process(h.run);
        runner_tick(h.run);
        chores(&h, mono_ms());
        if (fds[2].revents && h.running)
            check_cancelling(&h);
        claim(&h);
        batch_end(&h);
        if (h.stopping) {
            if (h.running == NULL)
                break;
            if (!h.interrupted && mono_ms() >= h.stop_deadline) {
                hlog(LOG_WARN, "grace period over: interrupting %d attempt(s)", runner_busy(h.run));
                interrupt_all(&h);
            }
        } else if (opts && opts->drain && drained(&h)) {
            hlog(LOG_INFO, "drained: bridge %s has nothing left to run", cfg->bridge);
            break;
        }
    }
    batch_end(&h);
    hlog(LOG_INFO, "stopped: %lu completed, %lu failed", h.completed, h.failed);
    runner_free(h.run);
    scheduler_free(h.sched);
    json_decref(h.machines);
    json_decref(h.orphans);
    registry_free(&h.reg);
    if (h.inofd >= 0)
        close(h.inofd);
    close(h.sigfd);
    store_close(h.st);
    return rc;
}
