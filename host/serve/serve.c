/*
 * The host loop: one thread, one poll. Each turn it handles signals, plugin drop-ins,
 * messages from workers, cancellations and wake-ups, and collects the attempts that ended
 * (settle.c: how an attempt ends; policy.c: how a retry is decided). It then writes those
 * ends with their events and claims, started, as many ready items as it has free workers
 * (store_claim_items), all in one transaction, and runs each claimed item in its own worker
 * (attempt.c builds what the worker runs).
 */
#include "serve.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attempt.h"
#include "descriptor.h"
#include "durable.h"
#include "fairness.h"
#include "heartbeat.h"
#include "log.h"
#include "outcome.h"
#include "policy.h"
#include "proto.h"
#include "reap.h"
#include "registry.h"
#include "runner.h"
#include "sdnotify.h"
#include "scheduler.h"
#include "settle.h"
#include "store.h"
#include "upkeep.h"
#include "util.h"
#include "vault.h"

#define MAX_CALL_DEPTH  8
#define RESCAN_MS       2000 /* safety net for drop-ins inotify missed */
#define RECOVER_MS      2000 /* how often expired leases are looked for */
#define CANCEL_CHECK_MS 250
/* How long a turn woken by ending attempts waits for more to end (gather_ends). */
#define GATHER_US       1000

typedef struct attempt attempt;

/* One running attempt: a claimed item, or a nested call made by one. */
struct attempt {
    /* The claimed item (owned). A call holds a copy of its root item's. */
    struct store_item *item; /* one item, freed with store_items_free */
    json_t *vault; /* the vault the function runs with: the item's, or the call's params */
    json_t *secrets;
    /* The item's own vault and secret names, for redaction: a call's text is masked with
     * its root's, and keeps them when its caller ends first. */
    json_t *root_vault, *root_secrets;
    int last_percent; /* the highest progress stored for this attempt; -1: none yet */
    int64_t started_mono;
    runner_job *job;
    /* For nested calls: the caller, NULL once the caller ended (the call is then being
     * stopped and its outcome goes nowhere). Always a live attempt of h->running. */
    attempt *parent;
    runner_job *parent_job;
    char *call_function;
    int depth; /* 0: the item's own attempt; n: a call n levels down */
    /* Function names from the root call down (owned), for cycle detection: at most one per
     * level, and calls nest at most MAX_CALL_DEPTH deep. */
    char *stack[MAX_CALL_DEPTH + 1];
    int n_stack;
    attempt *next, *prev; /* in h->running: unlinked in place when it ends */
};

/*
 * The functions last started, as the registry describes them, with their secret names:
 * looking a function up and listing its secrets cost ~2k instructions per attempt, and a
 * host runs the same few functions again and again. Kept while the registry's generation
 * stays the same (the descriptions are the registry's, freed only when it changes).
 */
#define FN_MEMO 8
struct fn_memo {
    struct ferry_fn fn;
    json_t *secrets; /* params_secret_names(fn.desc) */
};

/* An item of this owner seen without an attempt by the last orphan pass. */
struct orphan {
    char task_id[37], token[37];
};

typedef struct host {
    const ferry_config *cfg;
    store *st;
    registry reg;
    runner *run;
    settler *settle;
    fairness *fair; /* fair claims among the bridge's hosts */
    upkeep *upkeep; /* history.keep_days: the daily prune, a batch a turn */
    durable *durable; /* the store's commits synced off the loop (durable.h) */
    char owner[160];
    int sigfd, inofd, wakefd;
    attempt *running;
    int n_items; /* attempts of claimed items in h->running (calls not counted) */
    int n_calls; /* nested calls in h->running: with none, an end has no calls to end */
    int stopping; /* 1 after SIGTERM: no more claims */
    int64_t stop_deadline;
    int interrupted;
    int in_batch;
    int64_t last_heartbeat, last_rescan, last_recover, last_cancel_check;
    scheduler *sched;
    machine_cache *machines; /* team and machine -> facts, SSH key (attempt.c) */
    int64_t machines_version; /* store_data_version() when they were read; -1: unknown */
    uint64_t turn, machines_turn; /* turns of the loop; the one that last checked them */
    json_t *team_sizes;     /* team -> its machines when machines_prefetch last listed them */
    struct orphan *orphans; /* seen unrun by the last orphan pass */
    size_t n_orphans;
    int64_t next_schedule_mono; /* when scheduler_tick next has work */
    struct fn_memo fns[FN_MEMO];
    size_t n_fns, next_fn; /* fns in use; the one replaced next when all are */
    unsigned fns_generation; /* the registry's generation they were read in */
} host;

static void fn_memo_clear(host *h)
{
    for (size_t i = 0; i < h->n_fns; i++) {
        json_decref(h->fns[i].secrets);
        h->fns[i].secrets = NULL;
    }
    h->n_fns = h->next_fn = 0;
}

/* The registry's function name with its secret names, or NULL when no plugin provides it. */
static const struct fn_memo *function_of(host *h, const char *name)
{
    if (name == NULL)
        return NULL;
    if (h->fns_generation != h->reg.generation) {
        fn_memo_clear(h);
        h->fns_generation = h->reg.generation;
    }
    for (size_t i = 0; i < h->n_fns; i++)
        if (strcmp(h->fns[i].fn.name, name) == 0)
            return &h->fns[i];
    struct ferry_fn fn;
    if (registry_fn(&h->reg, name, &fn) != 0)
        return NULL;
    struct fn_memo *m = &h->fns[h->n_fns < FN_MEMO ? h->n_fns++ : h->next_fn++ % FN_MEMO];
    json_decref(m->secrets);
    m->fn = fn;
    m->secrets = params_secret_names(fn.desc);
    return m;
}

static void batch_begin(host *h)
{
    char err[512];
    if (!h->in_batch && store_begin(h->st, err, sizeof(err)) == 0)
        h->in_batch = 1;
}

/*
 * Writes the ends collected so far into the open batch (settle_write), commits it, then
 * lets the settler act on what held (fallbacks, notifications). Returns 1 when everything
 * written since batch_begin is committed (or nothing was), 0 when the commit failed.
 *
 * The commit is synced to disk off the loop (durable.h): every message for a worker added
 * after it (the run messages of the items it claimed) waits until it is durable, and the
 * settler's notifications wait for it too (settle_after_commit). An idle host syncs it at
 * once, itself: nothing else would go on meanwhile, and the thread's hop would be on the
 * path of the item.
 */
static int batch_end(host *h)
{
    char err[512];
    if (settle_pending(h->settle) > 0)
        batch_begin(h);
    settle_write(h->settle);
    int committed = 1;
    if (h->in_batch && store_commit(h->st, err, sizeof(err)) != 0) {
        hlog(LOG_ERROR, "store commit failed: %s", err);
        committed = 0;
    } else if (h->in_batch) {
        runner_hold(h->run, durable_committed(h->durable, h->running == NULL));
        runner_durable(h->run, durable_level(h->durable));
    }
    h->in_batch = 0;
    settle_after_commit(h->settle, committed);
    return committed;
}

static attempt *find_attempt(host *h, const char *task_id)
{
    for (attempt *a = h->running; a; a = a->next)
        if (a->depth == 0 && strcmp(a->item->task_id, task_id) == 0)
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
    if (h->n_calls == 0)
        return; /* the common case: walking every running attempt twice per end cost more
                 * than any other step of handling it */
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

static void link_attempt(host *h, attempt *a)
{
    a->prev = NULL;
    a->next = h->running;
    if (h->running)
        h->running->prev = a;
    h->running = a;
    if (a->depth > 0)
        h->n_calls++;
}

static void unlink_attempt(host *h, attempt *a)
{
    if (a->prev)
        a->prev->next = a->next;
    else
        h->running = a->next;
    if (a->next)
        a->next->prev = a->prev;
    a->next = a->prev = NULL;
    if (a->depth > 0)
        h->n_calls--;
}

/* A copy of item for a call (strings duplicated, vault shared; store_items_free frees it). */
static struct store_item *item_copy(const struct store_item *from)
{
    struct store_item *to = malloc(sizeof(*to));
    if (to == NULL)
        abort();
    *to = *from;
    char **strs[] = {&to->function,  &to->team,          &to->machine,
                     &to->bridge,    &to->status,        &to->parent_task_id,
                     &to->link_kind, &to->schedule_name, &to->lease_owner};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        *strs[i] = *strs[i] ? xstrdup(*strs[i]) : NULL;
    json_incref(to->vault);
    return to;
}

static void free_attempt(attempt *a)
{
    store_items_free(a->item, 1);
    free(a->call_function);
    json_decref(a->vault);
    json_decref(a->secrets);
    json_decref(a->root_vault);
    json_decref(a->root_secrets);
    for (int i = 0; i < a->n_stack; i++)
        free(a->stack[i]);
    free(a);
}

/*
 * The machine as workers see it, read once and kept while the store says nothing changed:
 * a busy bridge runs item after item for the same machines, and re-reading the row for
 * each cost a query per job (7% of the host's CPU in a drain). The facts are kept only while
 * no other process (or connection) has committed anything since they were read, checked
 * once per turn of the loop: a vault changed before a claim (a new SSH key, a host-key pin)
 * is what its items see. This host never changes a machine itself. Fills the source's
 * machine and ssh_key, borrowed from the cache until the next turn.
 */
/*
 * Once per turn: forgets the cached facts when another process may have changed them.
 * early: asked inside the claim's transaction (claim()); a store that cannot tell its
 * version there (PostgreSQL reads it with the commit) is asked again after the commit, and
 * 0 is returned with nothing checked. Returns 1 once checked.
 */
static int machines_check(host *h, int early)
{
    if (h->machines_turn == h->turn)
        return 1;
    int64_t version = store_resources_version(h->st);
    if (version < 0 && early)
        return 0;
    if (version < 0 || version != h->machines_version)
        machine_cache_clear(h->machines);
    h->machines_version = version;
    h->machines_turn = h->turn;
    return 1;
}

/* The cached facts of item's machine, read when they are not cached. */
static const struct machine_facts *machine_facts_of(host *h, const struct store_item *item)
{
    const struct machine_facts *hit = machine_cache_get(h->machines, item->team, item->machine);
    if (hit == NULL) {
        json_t *ssh_key = NULL;
        json_t *facts = attempt_machine(h->st, item->team, item->machine, &ssh_key);
        hit = machine_cache_put(h->machines, item->team, item->machine, facts, ssh_key);
    }
    return hit;
}

static void machine_for_worker(host *h, const struct store_item *item, struct attempt_source *src)
{
    machines_check(h, 0);
    const struct machine_facts *hit = machine_facts_of(h, item);
    src->machine = hit->facts;
    src->ssh_key = hit->ssh_key;
    src->machine_json = hit->json; /* the run message copies it rather than encode facts */
}

/* A team with items of at least this many machines in one claim, and no more than
 * MACHINE_LIST_RATIO times as many machines as that when it was last listed, has its
 * machines read in one list rather than one read each. */
#define MACHINE_LIST_MIN   8
#define MACHINE_LIST_RATIO 4

/*
 * Fills the machine cache for the items of a claim: a team with items of many machines in
 * it has its machines listed once (two statements) instead of read one by one (a round
 * trip to the store each: 40% of the host's time in a PostgreSQL drain of 100 machines).
 * A team found much larger than a claim's share of it is read one by one from then on
 * (listing 3,000 machines for 100 items cost more than the reads). What is not found so (a
 * machine of another team) is read one by one as before.
 */
static void machines_prefetch(host *h, const struct store_item *items, size_t n)
{
    machines_check(h, 0);
    json_t *want = json_object(); /* team -> {machine: true}, of machines not cached */
    for (size_t i = 0; i < n; i++) {
        if (items[i].team == NULL || items[i].machine == NULL)
            continue;
        if (machine_cache_get(h->machines, items[i].team, items[i].machine) != NULL)
            continue;
        json_t *set = json_object_get(want, items[i].team);
        if (set == NULL) {
            set = json_object();
            json_object_set_new(want, items[i].team, set);
        }
        json_object_set_new(set, items[i].machine, json_true());
    }
    const char *team;
    json_t *set;
    json_object_foreach (want, team, set) {
        json_t *rows = NULL, *team_row = NULL, *row;
        char err[512];
        size_t i;
        json_int_t size = json_integer_value(json_object_get(h->team_sizes, team));
        if (json_object_size(set) < MACHINE_LIST_MIN ||
            size > (json_int_t)json_object_size(set) * MACHINE_LIST_RATIO ||
            store_resource_list(h->st, STORE_MACHINE, team, &rows, err, sizeof(err)) != 0)
            continue;
        if (json_object_size(h->team_sizes) > 4096)
            json_object_clear(h->team_sizes);
        json_object_set_new(h->team_sizes, team, json_integer((json_int_t)json_array_size(rows)));
        json_array_foreach (rows, i, row) {
            const char *name = json_string_value(json_object_get(row, "machineName"));
            if (name == NULL || json_object_get(set, name) == NULL)
                continue;
            json_t *ssh_key = NULL;
            json_t *facts = attempt_machine_row(h->st, team, name, row, &team_row, &ssh_key);
            machine_cache_put(h->machines, team, name, facts, ssh_key);
        }
        json_decref(team_row);
        json_decref(rows);
    }
    json_decref(want);
}

/* --- starting an attempt -------------------------------------------------------------- */

/* Starts a claimed (and started) item in a worker; item is moved into the attempt, or to the
 * settler when it cannot run. */
static void start_item(host *h, struct store_item *item)
{
    char err[1024];
    const struct fn_memo *f = function_of(h, item->function);
    if (f == NULL) {
        snprintf(err, sizeof(err),
                 "function %s is not provided by any plugin on bridge %s (plugin directory "
                 "%s); see ferry plugins",
                 item->function ? item->function : "(none)", h->cfg->bridge, h->reg.dir);
        settle_refused(h->settle, item, OUTCOME_UNAVAILABLE, "unavailable", err);
        return;
    }
    struct ferry_fn fn = f->fn;
    if (params_validate(fn.desc, item->vault, err, sizeof(err)) != 0) {
        settle_refused(h->settle, item, OUTCOME_INVALID, "invalid", err);
        return;
    }
    attempt *a = calloc(1, sizeof(*a));
    if (a == NULL)
        abort();
    a->item = malloc(sizeof(*a->item));
    if (a->item == NULL)
        abort();
    *a->item = *item;
    memset(item, 0, sizeof(*item));
    if (a->item->attempt < 1)
        a->item->attempt = 1;
    a->vault = json_incref(a->item->vault);
    a->secrets = json_incref(f->secrets);
    a->root_vault = json_incref(a->vault);
    a->root_secrets = json_incref(a->secrets);
    a->started_mono = mono_ms();
    a->last_percent = -1;
    a->stack[a->n_stack++] = xstrdup(fn.name);
    struct attempt_source src = {.reg = &h->reg,
                                 .fn = &fn,
                                 .vault = a->vault,
                                 .item_vault = a->vault,
                                 .task_id = a->item->task_id,
                                 .attempt = a->item->attempt,
                                 .depth = 0};
    machine_for_worker(h, a->item, &src);
    struct attempt_run run;
    attempt_build(h->cfg, &src, &run);
    int64_t timeout = run.spec.timeout_ms;
    a->job = runner_start(h->run, &run.spec, a, 0);
    attempt_run_free(&run);
    if (a->job == NULL) {
        settle_release(h->settle, a->item, "no worker free");
        free_attempt(a);
        return;
    }
    link_attempt(h, a);
    h->n_items++;
    hlog(LOG_DEBUG, "%s: attempt %d in worker %d, timeout %lld s", a->item->task_id,
         a->item->attempt, (int)runner_job_pid(a->job), (long long)(timeout / 1000));
}

/* --- worker callbacks ------------------------------------------------------------------ */

static void on_log(void *ud, runner_job *job, const struct proto_log *m)
{
    host *h = ud;
    attempt *a = runner_job_tag(job);
    batch_begin(h);
    char *text = redact_text(m->text, a->root_vault, a->root_secrets);
    if (a->depth > 0)
        settle_event(h->st, a->item->task_id, "LOG", "[%s] %s: %s", m->level, a->call_function,
                     text);
    else
        settle_event(h->st, a->item->task_id, "LOG", "[%s] %s", m->level, text);
    free(text);
}

static void on_progress(void *ud, runner_job *job, const struct proto_progress *m)
{
    host *h = ud;
    attempt *a = runner_job_tag(job);
    if (a->depth > 0)
        return;
    batch_begin(h);
    char err[512];
    char *text = m->message ? redact_text(m->message, a->root_vault, a->root_secrets) : NULL;
    /* Stored progress never goes back within an attempt: a lower percent keeps the
     * highest one seen (its message still replaces the old one). */
    int percent = m->percent;
    if (percent < a->last_percent)
        percent = a->last_percent;
    a->last_percent = percent;
    store_progress(h->st, a->item->task_id, a->item->token, percent, text, now_ms(), err,
                   sizeof(err));
    free(text);
}

static void reply_error(host *h, runner_job *job, const char *code, enum outcome_kind kind,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void reply_error(host *h, runner_job *job, const char *code, enum outcome_kind kind,
                        const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    struct proto_reply reply = {.kind = kind, .code = code, .message = text};
    runner_answer(h->run, job, &reply);
}

/* The call chain of a, as a JSON array of names ("[\"a\",\"b\"]") for messages. Caller
 * frees. */
static char *stack_text(const attempt *a)
{
    json_t *arr = json_array();
    for (int i = 0; i < a->n_stack; i++)
        json_array_append_new(arr, json_string(a->stack[i]));
    char *text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return text;
}

static void start_call(host *h, attempt *caller, runner_job *caller_job,
                       const struct proto_call *msg)
{
    const char *fname = msg->function;
    if (fname == NULL) {
        reply_error(h, caller_job, "invalid", OUTCOME_INVALID, "call without a function name");
        return;
    }
    for (int i = 0; i < caller->n_stack; i++) {
        if (strcmp(caller->stack[i], fname) == 0) {
            char *chain = stack_text(caller);
            reply_error(h, caller_job, "call_cycle", OUTCOME_INVALID,
                        "call cycle: %s calls %s again", chain, fname);
            settle_event(h->st, caller->item->task_id, "CALL_REFUSED", "call cycle: %s -> %s",
                         chain, fname);
            free(chain);
            return;
        }
    }
    if (caller->depth + 1 > MAX_CALL_DEPTH) {
        reply_error(h, caller_job, "call_depth", OUTCOME_INVALID, "calls nest deeper than %d",
                    MAX_CALL_DEPTH);
        settle_event(h->st, caller->item->task_id, "CALL_REFUSED",
                     "call to %s refused: deeper than %d", fname, MAX_CALL_DEPTH);
        return;
    }
    const struct fn_memo *f = function_of(h, fname);
    if (f == NULL) {
        reply_error(h, caller_job, "unavailable", OUTCOME_FAIL, "no function %s on this bridge",
                    fname);
        settle_event(h->st, caller->item->task_id, "CALL_FAILED", "call to %s: no such function",
                     fname);
        return;
    }
    struct ferry_fn fn = f->fn;
    json_t *vault = json_deep_copy(msg->params);
    if (!json_is_object(vault)) {
        json_decref(vault);
        vault = json_object();
    }
    char err[1024];
    if (params_validate(fn.desc, vault, err, sizeof(err)) != 0) {
        reply_error(h, caller_job, "invalid", OUTCOME_INVALID, "%s", err);
        settle_event(h->st, caller->item->task_id, "CALL_FAILED", "call to %s: %s", fname, err);
        json_decref(vault);
        return;
    }
    attempt *a = calloc(1, sizeof(*a));
    if (a == NULL)
        abort();
    a->item = item_copy(caller->item);
    a->root_vault = json_incref(caller->root_vault);
    a->root_secrets = json_incref(caller->root_secrets);
    a->parent = caller;
    a->parent_job = caller_job;
    a->call_function = xstrdup(fname);
    a->vault = vault;
    a->secrets = json_incref(f->secrets);
    a->depth = caller->depth + 1;
    for (int i = 0; i < caller->n_stack; i++)
        a->stack[a->n_stack++] = xstrdup(caller->stack[i]);
    a->stack[a->n_stack++] = xstrdup(fname);
    a->started_mono = mono_ms();
    /* task and attempt are the item's: a call's keys (host->task_id) are its root's. */
    struct attempt_source src = {.reg = &h->reg,
                                 .fn = &fn,
                                 .vault = vault,
                                 .item_vault = a->item->vault,
                                 .task_id = a->item->task_id,
                                 .attempt = a->item->attempt,
                                 .depth = a->depth};
    machine_for_worker(h, a->item, &src);
    struct attempt_run run;
    attempt_build(h->cfg, &src, &run);
    a->job = runner_start(h->run, &run.spec, a, 1);
    attempt_run_free(&run);
    if (a->job == NULL) {
        reply_error(h, caller_job, "unavailable", OUTCOME_RETRY, "no worker free for call to %s",
                    fname);
        free_attempt(a);
        return;
    }
    link_attempt(h, a);
    settle_event(h->st, caller->item->task_id, "CALL", "%*s%s called %s", a->depth * 2 - 2, "",
                 caller->call_function ? caller->call_function : caller->item->function, fname);
}

static void on_call(void *ud, runner_job *job, const struct proto_call *m)
{
    host *h = ud;
    batch_begin(h);
    start_call(h, runner_job_tag(job), job, m);
}

static void on_storage(void *ud, runner_job *job, const struct proto_storage *m)
{
    host *h = ud;
    attempt *a = runner_job_tag(job);
    json_t *row = NULL;
    char err[512];
    struct proto_reply reply = {.kind = OUTCOME_OK};
    /* The function asked for this storage: its sealed secrets are opened for it. */
    if (m->name &&
        store_resource_get(h->st, STORE_STORAGE, a->item->team, m->name, &row, err,
                           sizeof(err)) == 0 &&
        store_resource_reveal(h->st, STORE_STORAGE, row, err, sizeof(err)) == 0) {
        reply.vault = json_object_get(row, "vault");
    } else {
        reply.kind = OUTCOME_FAIL;
        reply.code = "not_found";
        reply.message = m->name ? err : "no storage name";
    }
    runner_answer(h->run, job, &reply);
    json_decref(row);
}

/* What a call's caller is told of its end: OK, INVALID and RETRY as they are; every other
 * end (a crash, a timeout …) is a FAIL to the caller. */
static enum outcome_kind call_reply_kind(enum outcome_kind kind)
{
    return kind == OUTCOME_OK || kind == OUTCOME_INVALID || kind == OUTCOME_RETRY ? kind
                                                                                  : OUTCOME_FAIL;
}

static void on_done(void *ud, runner_job *job, const struct outcome *out)
{
    host *h = ud;
    attempt *a = runner_job_tag(job);
    unlink_attempt(h, a);
    if (a->depth == 0)
        h->n_items--;
    batch_begin(h);
    end_calls_of(h, a);
    if (a->depth > 0) {
        struct proto_reply reply = {.kind = call_reply_kind(out->kind), .result = out->result};
        if (out->kind != OUTCOME_OK) {
            reply.code = out->code ? out->code : "error";
            reply.message = out->message ? out->message : "";
        }
        /* A caller that ended first cut this call loose (end_calls_of): nobody to answer. */
        if (a->parent)
            runner_answer(h->run, a->parent_job, &reply);
        char *m = out->message ? redact_text(out->message, a->root_vault, a->root_secrets) : NULL;
        settle_event(h->st, a->item->task_id, "CALL_DONE", "%s %s in %lld ms%s%s%s",
                     a->call_function, outcome_kind_name(out->kind),
                     (long long)(mono_ms() - a->started_mono), m ? ": " : "", m ? m : "",
                     a->parent ? "" : " (its caller had ended)");
        free(m);
    } else {
        settle_ran(h->settle, a->item, a->secrets, out, a->started_mono);
    }
    free_attempt(a);
}

/* --- the loop's chores ---------------------------------------------------------------- */

/*
 * A turn that woke because attempts ended gives the others still running up to GATHER_US
 * to end too, while fewer have ended than still run: one transaction then writes many ends
 * and claims as many items (a turn's commit and the claim's search cost about as much for
 * 5 items as for 50). An end waits at most that long to be written; a turn woken by
 * anything else (a wake-up from the store, a signal) never waits.
 */
static void gather_ends(host *h)
{
    int64_t deadline = mono_us() + GATHER_US;
    while (!h->stopping && h->n_items > 0 && settle_pending(h->settle) > 0 &&
           settle_pending(h->settle) < (size_t)h->n_items) {
        int64_t left = deadline - mono_us();
        if (left <= 0)
            return;
        struct pollfd fd = {.fd = runner_fd(h->run), .events = POLLIN};
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left * 1000};
        if (ppoll(&fd, 1, &ts, NULL) <= 0)
            return;
        runner_process(h->run);
    }
}

/*
 * Claims, started, as many items as there are free workers, and runs them. The ends of the
 * turn are written first in the same transaction, so that a machine whose item just ended
 * is free again for this claim, and one commit covers both.
 *
 * The claim is committed before any worker starts, on every driver: an attempt runs only on
 * a claim the store holds durably. Were the workers started first, a host killed (or a
 * machine losing power) between the start and the end of the commit would leave the item
 * PENDING, with no trace of the attempt that ran, and the next claim would run it again as
 * its first attempt (tests/e2e/host_crash_window.sh kills the host from inside such an
 * attempt). On PostgreSQL, too, a batch cut by a lost connection is replayed, and a
 * replayed claim may find its item taken by another host meanwhile.
 */
static void claim(host *h)
{
    while (!h->stopping) {
        int slots = runner_free_slots(h->run);
        int idle = h->cfg->workers - runner_busy(h->run), held = 0;
        for (attempt *a = h->running; a; a = a->next)
            held += a->depth == 0;
        if (slots > 0)
            slots = fairness_slots(h->fair, slots, idle, held);
        if (slots <= 0)
            return;
        batch_begin(h);
        settle_write(h->settle);
        struct store_item *items = NULL;
        size_t n = 0;
        char err[512];
        int64_t lease = (int64_t)h->cfg->lease_seconds * 1000;
        if (store_claim_items(h->st, h->cfg->bridge, h->owner, lease, slots, 1, now_ms(), &items,
                              &n, err, sizeof(err)) != 0) {
            hlog(LOG_ERROR, "claim failed: %s", err);
            /* A failed claim may undo the whole batch: undo it for certain, and write the
             * ends again on their own. */
            store_rollback(h->st, NULL, 0);
            h->in_batch = 0;
            settle_rewind(h->settle);
            batch_end(h);
            return;
        }
        fairness_claimed(h->fair, (int)n, idle);
        /* Where the store tells its version inside the transaction (SQLite), the claimed
         * items' machine facts are read in it, before the commit: in read transactions of
         * their own between the commit and the starts they cost an idle host 70 microseconds
         * of its enqueue-to-start, and a drain a version check of its own per turn. */
        int facts_read = n > 0 && machines_check(h, 1);
        if (facts_read) {
            machines_prefetch(h, items, n);
            for (size_t i = 0; i < n; i++)
                machine_facts_of(h, &items[i]);
        }
        if (n > 0 && !batch_end(h)) {
            store_items_free(items, n);
            return;
        }
        if (!facts_read)
            machines_prefetch(h, items, n);
        for (size_t i = 0; i < n; i++)
            start_item(h, &items[i]);
        store_items_free(items, n);
        if ((int)n < slots)
            return;
    }
}

static void check_cancelling(host *h)
{
    struct store_item *items = NULL;
    size_t n = 0;
    char err[512];
    if (store_cancelling_items(h->st, h->owner, &items, &n, err, sizeof(err)) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        attempt *a = find_attempt(h, items[i].task_id);
        if (a && a->job) {
            runner_cancel(h->run, a->job);
            /* its nested calls go too */
            for (attempt *c = h->running; c; c = c->next)
                if (calls_of(c, a))
                    runner_cancel(h->run, c->job);
        }
    }
    store_items_free(items, n);
}

/* Items whose host vanished (their lease expired). */
static void recover_expired(host *h)
{
    struct store_item *items = NULL;
    size_t n = 0;
    char err[512];
    if (store_expired_items(h->st, h->cfg->bridge, now_ms(), &items, &n, err, sizeof(err)) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (find_attempt(h, items[i].task_id))
            continue; /* ours and running: the heartbeat is late, not lost */
        char owner[160];
        snprintf(owner, sizeof(owner), "%s", items[i].lease_owner ? items[i].lease_owner : "?");
        settle_lost(h->settle, &items[i], "host lost", owner);
    }
    store_items_free(items, n);
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
    struct store_item *items = NULL;
    size_t n = 0;
    char err[512];
    int64_t horizon = now_ms() + 10 * (int64_t)h->cfg->lease_seconds * 1000;
    if (store_expired_items(h->st, h->cfg->bridge, horizon, &items, &n, err, sizeof(err)) != 0)
        return;
    struct orphan *seen = n ? calloc(n, sizeof(*seen)) : NULL;
    size_t n_seen = 0;
    for (size_t i = 0; i < n; i++) {
        struct store_item *it = &items[i];
        if (it->lease_owner == NULL || it->token[0] == '\0' ||
            strcmp(it->lease_owner, h->owner) != 0 || find_attempt(h, it->task_id))
            continue;
        int before = 0;
        for (size_t k = 0; k < h->n_orphans && !before; k++)
            before = strcmp(h->orphans[k].task_id, it->task_id) == 0 &&
                     strcmp(h->orphans[k].token, it->token) == 0;
        if (before) {
            settle_lost(h->settle, it, "attempt lost by this host",
                        "its outcome or claim went with a failed store commit");
        } else {
            memcpy(seen[n_seen].task_id, it->task_id, sizeof(it->task_id));
            memcpy(seen[n_seen].token, it->token, sizeof(it->token));
            n_seen++;
        }
    }
    store_items_free(items, n);
    free(h->orphans);
    h->orphans = seen;
    h->n_orphans = n_seen;
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
    int has = 1;
    char err[512];
    if (store_bridge_has_work(h->st, h->cfg->bridge, &has, err, sizeof(err)) != 0)
        hlog(LOG_WARN, "drain check failed: %s", err);
    return !has;
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
    if (!h->stopping && upkeep_busy(h->upkeep))
        t = 0; /* the next prune batch (a stopping host runs none) */
    if (!h->stopping && fairness_waiting(h->fair) && t > FAIRNESS_POLL_MS)
        t = FAIRNESS_POLL_MS;
    int64_t until_schedule = h->next_schedule_mono - mono_ms();
    if (until_schedule < t)
        t = until_schedule < 0 ? 0 : (int)until_schedule;
    return t;
}

static void chores(host *h, int64_t now)
{
    char err[512];
    heartbeat_tick(h->st, h->owner, h->cfg->bridge, runner_busy(h->run), now);
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
        settle_recover_notices(h->settle);
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
    log_set_format(cfg->log_format); /* config_load checked it */
    host h = {.cfg = cfg, .sigfd = -1, .inofd = -1, .wakefd = -1, .machines_version = -1};
    char err[1024], hostname[64] = "host";
    gethostname(hostname, sizeof(hostname) - 1);
    char rnd[37];
    uuid_v4(rnd);
    snprintf(h.owner, sizeof(h.owner), "%s:%d:%.8s", hostname, (int)getpid(), rnd);
    retry_policy defaults = (retry_policy){.max_retries = cfg->retry_max,
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
    /* The plugins' probes run while the store opens (registry.h). */
    registry_init(&h.reg, cfg->plugin_dir, cfg->plugin_sections);
    registry_scan_begin(&h.reg);
    h.st = store_open_config(cfg, err, sizeof(err));
    if (h.st == NULL) {
        hlog(LOG_ERROR, "%s", err);
        registry_free(&h.reg);
        return -1;
    }
    h.durable = durable_new(store_defer_sync(h.st) == 0 ? h.st : NULL);
    registry_scan_end(&h.reg);
    /* SSH host keys seen at first use: known_hosts beside the store (exec_ssh.c). */
    char *kh_copy = xstrdup(cfg->store_path), kh_dir[PATH_MAX];
    const char *kh_parent = dirname(kh_copy);
    if (mkdir(kh_parent, 0700) != 0 && errno != EEXIST)
        hlog(LOG_WARN, "cannot create %s for ferry's known_hosts: %s", kh_parent, strerror(errno));
    char *known_hosts = realpath(kh_parent, kh_dir) ? xasprintf("%s/known_hosts", kh_dir) : NULL;
    free(kh_copy);
    runner_opts ro = {.known_hosts = known_hosts,
                      .max_workers = cfg->workers,
                      .prefork = cfg->prefork,
                      .max_jobs = cfg->worker_max_jobs,
                      .memory_limit_mb = cfg->worker_memory_mb,
                      .path = cfg->worker_path,
                      .pass_env = cfg->worker_pass_env,
                      .ssh_command_options = cfg->ssh_allow_command_options,
                      .limits = cfg->limits,
                      .fn_limits = cfg->fn_limits,
                      .n_fn_limits = cfg->n_fn_limits,
                      .run_as = cfg->worker_run_as,
                      .priv_socket = cfg->priv_socket,
                      .grace_ms = cfg->grace_seconds * 1000,
                      .pipeline = cfg->worker_pipeline > 0 ? cfg->worker_pipeline : -1};
    runner_events ev = {.log = on_log,
                        .progress = on_progress,
                        .call = on_call,
                        .storage = on_storage,
                        .done = on_done};
    h.run = runner_create(&ro, &ev, &h);
    free(known_hosts); /* in the workers' environment now */
    h.sched = scheduler_new(cfg, &h.reg);
    h.settle = settle_new(cfg, h.st, &h.reg, &defaults);
    settle_durable(h.settle, h.durable);
    h.fair = fairness_new(h.st, cfg->bridge, h.owner);
    h.upkeep = upkeep_new(cfg->history_keep_days, h.owner);
    h.machines = machine_cache_new();
    h.team_sizes = json_object();
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
    sdnotify("READY=1"); /* Type=notify (dist/ferry.service.in) */
    int rc = 0;
    for (;;) {
        h.turn++;
        struct pollfd fds[5] = {{.fd = h.sigfd, .events = POLLIN},
                                {.fd = h.inofd, .events = POLLIN},
                                {.fd = h.wakefd, .events = POLLIN},
                                {.fd = runner_fd(h.run), .events = POLLIN},
                                {.fd = durable_fd(h.durable), .events = POLLIN}};
        durable_note(h.durable); /* the last sync's, before the loop sleeps */
        poll(fds, 5, loop_timeout(&h));
        if (fds[4].revents) {
            durable_done(h.durable);
            runner_durable(h.run, durable_level(h.durable));
        }
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
        /* The workers' events only when poll saw some: a turn woken by a create goes to
         * its claim without an epoll_wait that finds nothing (one system call less on the
         * path of the item). Whatever came since is seen by the next poll, at once. */
        if (fds[3].revents)
            runner_process(h.run);
        else
            runner_flush(h.run);
        /* While the last commit is being synced, the turn writes what ended into the open
         * batch and commits nothing: the next commit (its ends, its claims) follows that
         * sync's end with all that gathered meanwhile, as many items a commit as when the
         * loop itself waited for the sync. */
        int syncing = durable_pending(h.durable);
        if (fds[3].revents && !fds[0].revents && !fds[2].revents && !syncing)
            gather_ends(&h);
        runner_tick(h.run);
        if (!syncing)
            claim(&h);
        /* The turn's run messages, one write per worker, once their claims are committed
         * (claim()); then what the claims' sync tells other processes (durable_note). */
        runner_flush(h.run);
        durable_note(h.durable);
        /* The chores come after the starts, off the path of a new item: a turn woken by a
         * create claims it first, then writes a due heartbeat (a commit of its own) or looks
         * for lost items. What they release or schedule is committed with the turn's batch,
         * whose wake-up brings the next turn at once to claim it. */
        chores(&h, mono_ms());
        sdnotify_watchdog(mono_ms());
        if (fds[2].revents && h.running)
            check_cancelling(&h);
        if (!syncing) {
            batch_end(&h);
        } else if (settle_pending(h.settle) > 0) {
            batch_begin(&h);
            settle_write(h.settle);
        }
        /* A prune batch of its own between turns (upkeep.c), never inside the turn's. */
        if (!h.stopping && !h.in_batch)
            upkeep_tick(h.upkeep, h.st, mono_ms());
        /* Idle: the store tidies up now rather than on the path of the next item. A WAL
         * checkpointed to its end restarts at the next commit, which also syncs its new
         * header: the host's heartbeat is that commit, here, so that the create that
         * follows syncs once, not twice (one create in twenty in the latency bench did). */
        if (!h.stopping && h.running == NULL && !upkeep_busy(h.upkeep) && store_idle(h.st))
            heartbeat_beat(h.st, h.owner, cfg->bridge, runner_busy(h.run), mono_ms());
        /* A failed sync: what it covered (claims among it) may not be on disk. The attempts
         * of those claims never start (their run messages wait for it), and the host stops
         * at once, committing nothing more; the items come back when their leases end. */
        if (durable_error(h.durable)) {
            hlog(LOG_ERROR, "store sync failed: %s; stopping without starting the attempts "
                 "it covered", durable_error(h.durable));
            rc = -1;
            break;
        }
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
    if (rc == 0)
        batch_end(&h);
    sdnotify("STOPPING=1");
    hlog(LOG_INFO, "stopped: %lu completed, %lu failed", settle_completed(h.settle),
         settle_failed(h.settle));
    runner_free(h.run);
    if (rc == 0)
        batch_end(&h); /* attempts the runner ended as it stopped */
    /* The last ends are on disk before the host says it stopped. */
    if (rc == 0 && durable_wait(h.durable) != 0) {
        hlog(LOG_ERROR, "store sync failed: %s", durable_error(h.durable));
        rc = -1;
    }
    settle_free(h.settle);
    fairness_free(h.fair);
    scheduler_free(h.sched);
    machine_cache_free(h.machines);
    fn_memo_clear(&h);
    json_decref(h.team_sizes);
    free(h.orphans);
    registry_free(&h.reg);
    if (h.inofd >= 0)
        close(h.inofd);
    close(h.sigfd);
    upkeep_stop(h.upkeep, h.st);
    upkeep_free(h.upkeep);
    heartbeat_stopped(h.st, h.owner);
    durable_free(h.durable);
    store_close(h.st);
    return rc;
}
