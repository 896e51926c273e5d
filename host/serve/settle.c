/* How an attempt ends; see settle.h. */
#include "settle.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "attempt.h"
#include "descriptor.h"
#include "durable.h"
#include "log.h"
#include "notify.h"
#include "proto.h"
#include "util.h"
#include "vault.h"

/* A final end's notifications: noted in the store with the end; if they are not handed off
 * by then (the host died), another host of the bridge sends them from this long after the
 * commit, and again after NOTIFY_RETRY_MS should that host die too. */
#define NOTIFY_GRACE_MS 5000
#define NOTIFY_RETRY_MS 60000

/* One queued end. */
struct ending {
    struct store_item *item; /* owned: one item, freed with store_items_free */
    struct policy_decision d;
    char *response;         /* owned: the response vault as compact JSON; NULL: none kept */
    json_t *response_tree;  /* owned: the same as a tree, only for notifications (notify) */
    char *reason;           /* owned: lastFailureReason or event text */
    enum outcome_kind kind; /* for the fallback's "failure" */
    char *message;          /* owned, redacted; for the fallback's "failure" */
    char *recovered;        /* owned: a lost item's RECOVERED event text, or NULL */
    int notify;             /* 1: the vault names notifications for this end, sent if it holds */
    int64_t notify_due;     /* not 0: it has some; the store keeps a note until sent */
    /* A FAILED end's fallback, written with the end (store_finish's fallback). */
    json_t *fb_vault; /* owned; NULL: no fallback */
    struct store_item_spec fb_spec;
    char *fb_note; /* owned: the FALLBACK_OF event's text */
    /* Events that tell the decision (ATTEMPT_FAILED, RETRY, INTERRUPTED), written with the
     * end, before it, in the same transaction. */
    struct {
        const char *action;
        char *text; /* owned */
    } events[2];
    int n_events;
    int rc; /* store_finish_many's result for this end */
};

struct settler {
    const ferry_config *cfg;
    store *st;
    const registry *reg;
    durable *durable; /* notifications leave only once what they tell is on disk */
    retry_policy defaults;
    struct ending *ends;
    size_t n, cap;
    size_t written; /* ends[0..written) went to the store and wait for the commit */
    unsigned long completed, failed;
    uint64_t rnd_state;     /* xorshift64*: the jitter needs no better */
    int crash_after_failed; /* tests: FERRY_TEST_CRASH=after-failed-commit (settle.h) */
};

/* How an attempt ended, in the host's log (log_attempt). */
static const char *const ended[] = {[STORE_OUTCOME_COMPLETED] = "COMPLETED",
                                    [STORE_OUTCOME_FAILED] = "FAILED",
                                    [STORE_OUTCOME_CANCELLED] = "CANCELLED",
                                    [STORE_OUTCOME_RETRY] = "RETRY_SCHEDULED",
                                    [STORE_OUTCOME_RELEASE] = "RELEASED"};

static const char *final_name(enum store_outcome_kind status)
{
    return status == STORE_OUTCOME_COMPLETED   ? "COMPLETED"
           : status == STORE_OUTCOME_CANCELLED ? "CANCELLED"
                                               : "FAILED";
}

void settle_durable(settler *s, durable *d)
{
    s->durable = d;
}

settler *settle_new(const ferry_config *cfg, store *st, const registry *reg,
                    const retry_policy *defaults)
{
    settler *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->cfg = cfg;
    s->st = st;
    s->reg = reg;
    s->defaults = *defaults;
    if (getrandom(&s->rnd_state, sizeof(s->rnd_state), 0) != sizeof(s->rnd_state))
        s->rnd_state = (uint64_t)mono_us();
    s->rnd_state |= 1;
    const char *crash = getenv("FERRY_TEST_CRASH");
    s->crash_after_failed = crash != NULL && strcmp(crash, "after-failed-commit") == 0;
    return s;
}

static void ending_free(struct ending *e)
{
    store_items_free(e->item, 1);
    free(e->response);
    json_decref(e->response_tree);
    free(e->reason);
    free(e->message);
    free(e->recovered);
    json_decref(e->fb_vault);
    free(e->fb_note);
    for (int i = 0; i < e->n_events; i++)
        free(e->events[i].text);
}

void settle_free(settler *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        ending_free(&s->ends[i]);
    free(s->ends);
    free(s);
}

size_t settle_pending(const settler *s)
{
    return s->n - s->written;
}

unsigned long settle_completed(const settler *s)
{
    return s->completed;
}

unsigned long settle_failed(const settler *s)
{
    return s->failed;
}

void settle_event(store *st, const char *task_id, const char *action, const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    char err[512];
    if (store_event_append(st, task_id, action, text, NULL, 0, err, sizeof(err)) != 0)
        hlog(LOG_WARN, "cannot record %s event of %s: %s", action, task_id, err);
}

/* Queues an end for item (moved) with decision d; the caller fills the rest. */
static struct ending *queue_end(settler *s, struct store_item *item, struct policy_decision d)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct ending *grown = realloc(s->ends, cap * sizeof(*grown));
        if (grown == NULL)
            abort();
        s->ends = grown;
        s->cap = cap;
    }
    struct ending *e = &s->ends[s->n++];
    memset(e, 0, sizeof(*e));
    e->item = malloc(sizeof(*e->item));
    if (e->item == NULL)
        abort();
    *e->item = *item;
    memset(item, 0, sizeof(*item));
    e->d = d;
    return e;
}

json_t *settle_response(const char *function, const char *status, int attempts, int64_t duration_ms,
                        const struct outcome *out)
{
    /* Built member by member: json_pack's format parsing was two thirds of the cost of a
     * response, which every item that ends pays on the host's loop. */
    json_t *resp = json_object();
    json_object_set_new(resp, "status", json_string(status));
    if (function)
        json_object_set_new(resp, "function", json_string(function));
    json_object_set_new(resp, "attempts", json_integer(attempts));
    json_object_set_new(resp, "duration_ms", json_integer((json_int_t)duration_ms));
    json_object_set_new(resp, "result", out->result ? json_deep_copy(out->result) : json_null());
    if (out->kind == OUTCOME_OK)
        json_object_set_new(resp, "error", json_null());
    else
        json_object_set_new(resp, "error",
                            json_pack("{s:s,s:s,s:s}", "code", out->code ? out->code : "error",
                                      "outcome", outcome_kind_name(out->kind), "message",
                                      out->message ? out->message : ""));
    return resp;
}

/* Writes text at o as jansson writes a JSON string (JSON_COMPACT); o has room for six
 * bytes a byte of text and the quotes. NULL for a byte above 0x7f: jansson keeps only valid
 * UTF-8, and that check is left to it (settle_response_text). */
static char *put_ascii(char *o, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        unsigned char c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        if (c >= 0x80)
            return NULL;
        *o++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *o++ = (char)c;
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        default:
            memcpy(o, "u00", 3);
            o[3] = hex[c >> 4];
            o[4] = hex[c & 15];
            o += 5;
        }
    }
    *o++ = '"';
    return o;
}

/* Appends n bytes of lit at o (NULL stays NULL: an earlier part was left to jansson). */
static char *put_raw(char *o, const char *lit, size_t n)
{
    if (o)
        memcpy(o, lit, n);
    return o ? o + n : NULL;
}

#define PUT_LIT(o, lit) put_raw(o, lit, sizeof(lit) - 1)

/* Appends key (the member's name with its punctuation, as written) and text as a string. */
static char *put_member(char *o, const char *key, const char *text)
{
    o = put_raw(o, key, strlen(key));
    return o ? put_ascii(o, text) : NULL;
}

static char *put_i64(char *o, int64_t v)
{
    char digits[I64_DECIMAL_MAX], *d = i64_decimal(v, digits);
    return put_raw(o, d, (size_t)(digits + sizeof(digits) - d));
}

char *settle_response_text(const char *function, const char *status, int attempts,
                           int64_t duration_ms, const struct outcome *out)
{
    const char *code = out->code ? out->code : "error", *kind = outcome_kind_name(out->kind),
               *message = out->message ? out->message : "";
    char *result = out->result ? json_dumps(out->result, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    /* Each text escaped at six bytes a byte at most, the numbers, and the members' names with
     * their punctuation (under 160 bytes). */
    size_t room = 6 * (strlen(status) + (function ? strlen(function) : 0) + strlen(code) +
                       strlen(kind) + strlen(message)) +
                  (result ? strlen(result) : 0) + 2 * I64_DECIMAL_MAX + 256;
    char *text = malloc(room), *o = text;
    if (text == NULL)
        abort();
    o = put_member(o, "{\"status\":", status);
    if (function)
        o = put_member(o, ",\"function\":", function);
    o = put_i64(PUT_LIT(o, ",\"attempts\":"), attempts);
    o = put_i64(PUT_LIT(o, ",\"duration_ms\":"), duration_ms);
    o = PUT_LIT(o, ",\"result\":");
    o = result ? put_raw(o, result, strlen(result)) : PUT_LIT(o, "null");
    if (out->kind == OUTCOME_OK) {
        o = PUT_LIT(o, ",\"error\":null}");
    } else {
        o = put_member(o, ",\"error\":{\"code\":", code);
        o = put_member(o, ",\"outcome\":", kind);
        o = PUT_LIT(put_member(o, ",\"message\":", message), "}}");
    }
    free(result);
    if (o == NULL || (out->result && result == NULL)) {
        json_t *tree = settle_response(function, status, attempts, duration_ms, out);
        free(text);
        text = json_dumps(tree, JSON_COMPACT);
        json_decref(tree);
        return text;
    }
    *o = '\0';
    return text;
}

/* "attempt N completed in D ms", a COMPLETED end's event text: xasprintf's format cost an
 * end about 1,400 instructions. */
static char *completed_reason(int attempt, int64_t duration_ms)
{
    char *text = malloc(sizeof("attempt  completed in  ms") + 2 * I64_DECIMAL_MAX), *o = text;
    if (text == NULL)
        abort();
    o = PUT_LIT(o, "attempt ");
    o = put_i64(o, attempt);
    o = PUT_LIT(o, " completed in ");
    o = put_i64(o, duration_ms);
    o = PUT_LIT(o, " ms");
    *o = '\0';
    return text;
}

/* An end's response vault: its text for the store, and its tree as well when notifications
 * will carry it (e->notify). */
static void end_response(struct ending *e, const char *status, int attempts, int64_t duration_ms,
                         const struct outcome *out)
{
    if (e->notify) {
        e->response_tree = settle_response(e->item->function, status, attempts, duration_ms, out);
        e->response = json_dumps(e->response_tree, JSON_COMPACT);
    } else {
        e->response = settle_response_text(e->item->function, status, attempts, duration_ms, out);
    }
}

/* A uniform number in [0,1) for the retry jitter. */
static double random_unit(settler *s)
{
    uint64_t x = s->rnd_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rnd_state = x;
    return (double)((x * UINT64_C(2685821657736338717)) >> 11) / 9007199254740992.0;
}

/* Adds an event to e, written before its end (at most two). */
static void end_event(struct ending *e, const char *action, char *text)
{
    e->events[e->n_events].action = action;
    e->events[e->n_events].text = text;
    e->n_events++;
}

/* The fallback of a FAILED end, when its vault names one (on_failure.fallback_function):
 * a new item on the same machine with the failure it follows, which the store creates in
 * the transaction that ends the item (store_finish's fallback), or not at all. */
static void fallback_spec(settler *s, struct ending *e)
{
    const json_t *vault = e->item->vault;
    const json_t *on_failure = json_object_get(vault, "on_failure");
    const char *fallback = json_string_value(json_object_get(on_failure, "fallback_function"));
    if (fallback == NULL)
        return;
    const char *task = e->item->task_id;
    json_t *fb = attempt_params(vault);
    json_object_set_new(fb, "function", json_string(fallback));
    /* The fallback keeps the original's retry policy and notifications, but not its own
     * fallback: a failing fallback must not start a chain. */
    const char *keep[] = {"timeout",    "max_retries", "retry_delay",
                          "on_success", "description", "tags"};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
        if (json_object_get(vault, keep[i]))
            json_object_set(fb, keep[i], json_object_get(vault, keep[i]));
    json_t *notify = json_object_get(on_failure, "notify");
    if (notify)
        json_object_set_new(fb, "on_failure", json_pack("{s:O}", "notify", notify));
    json_object_set_new(fb, "failure",
                        json_pack("{s:s,s:s?,s:s,s:s,s:i}", "task_id", task, "function",
                                  e->item->function, "status", outcome_kind_name(e->kind),
                                  "message", e->message ? e->message : "", "attempts",
                                  e->item->attempt));
    struct ferry_fn fb_fn;
    e->fb_vault = fb;
    e->fb_spec = (struct store_item_spec){
        .team = e->item->team,
        .machine = e->item->machine,
        .bridge = e->item->bridge,
        .function = json_string_value(json_object_get(fb, "function")),
        .priority = e->item->priority,
        .vault = fb,
        .idempotent =
            registry_fn(s->reg, fallback, &fb_fn) == 0 && (fb_fn.flags & FERRY_FN_IDEMPOTENT) != 0,
    };
    e->fb_note = xasprintf("fallback for %s (%s %s)", task,
                           e->item->function ? e->item->function : "", outcome_kind_name(e->kind));
}

void settle_ran(settler *s, struct store_item *item, const json_t *secrets,
                const struct outcome *out, int64_t started_mono)
{
    int attempt = item->attempt < 1 ? 1 : item->attempt;
    int64_t duration = mono_ms() - started_mono;
    retry_policy pol = policy_for_vault(&s->defaults, item->vault);
    struct policy_decision d = policy_decide(out, attempt, &pol, random_unit(s), now_ms());
    /* Capped once, so that lastFailureReason and the response vault's error say the same. */
    char *redacted = out->message ? redact_text(out->message, item->vault, secrets) : NULL;
    char *msg = proto_clean_text(redacted, PROTO_ERROR_MAX);
    free(redacted);
    struct ending *e = queue_end(s, item, d);
    if (out->kind != OUTCOME_OK && out->kind != OUTCOME_CANCELLED)
        end_event(
            e, "ATTEMPT_FAILED",
            xasprintf("attempt %d %s: %s", attempt, outcome_kind_name(out->kind), msg ? msg : ""));
    if (d.status == STORE_OUTCOME_RETRY)
        end_event(e, "RETRY",
                  xasprintf("retry %d of %d in %.1f s", attempt, pol.max_retries,
                            (double)d.delay_ms / 1000.0));
    else if (d.status == STORE_OUTCOME_RELEASE)
        end_event(
            e, "INTERRUPTED",
            xasprintf("attempt %d interrupted by host shutdown; returned to the queue", attempt));
    e->kind = out->kind;
    switch (d.status) {
    case STORE_OUTCOME_COMPLETED:
        e->reason = completed_reason(attempt, duration);
        break;
    case STORE_OUTCOME_RELEASE:
        e->reason = xstrdup("interrupted by host shutdown; returned to the queue");
        break;
    case STORE_OUTCOME_CANCELLED:
        e->reason = xstrdup("cancelled while running");
        break;
    case STORE_OUTCOME_RETRY:
    case STORE_OUTCOME_FAILED:
        e->reason = xstrdup(msg ? msg : outcome_kind_name(out->kind));
        break;
    }
    e->notify = d.final && notify_wanted(e->item->vault, final_name(d.status));
    if (d.final) {
        /* What the function returned is shown in the response vault, the webhook's body and
         * the mail: the item's secret values are masked in it, wherever they appear. */
        struct outcome shown = *out;
        shown.message = msg;
        shown.result = out->result ? vault_scrub(out->result, e->item->vault, secrets) : NULL;
        end_response(e, final_name(d.status), attempt, duration, &shown);
        json_decref(shown.result);
    }
    log_attempt(e->item->task_id, e->item->function, e->item->machine, ended[d.status], attempt,
                duration,
                d.status == STORE_OUTCOME_COMPLETED ? NULL : e->reason);
    e->message = msg;
    if (d.status == STORE_OUTCOME_FAILED && d.fallback)
        fallback_spec(s, e);
}

void settle_refused(settler *s, struct store_item *item, enum outcome_kind kind, const char *code,
                    const char *reason)
{
    struct ending *e = queue_end(s, item, policy_refused());
    struct outcome out = {.kind = kind, .code = code, .message = reason};
    e->kind = kind;
    e->reason = xstrdup(reason);
    log_attempt(e->item->task_id, e->item->function, e->item->machine, ended[e->d.status],
                e->item->attempt < 1 ? 1 : e->item->attempt, 0, e->reason);
    end_response(e, "FAILED", e->item->attempt, 0, &out);
}

void settle_release(settler *s, struct store_item *item, const char *reason)
{
    struct policy_decision d = {.status = STORE_OUTCOME_RELEASE};
    struct ending *e = queue_end(s, item, d);
    e->reason = xstrdup(reason);
}

void settle_lost(settler *s, struct store_item *item, const char *what, const char *why)
{
    const char *status = item->status ? item->status : "";
    enum policy_lost_state state = strcmp(status, "ASSIGNED") == 0     ? LOST_BEFORE_START
                                   : strcmp(status, "CANCELLING") == 0 ? LOST_WHILE_CANCELLING
                                                                       : LOST_WHILE_RUNNING;
    struct policy_decision d = policy_lost(state, item->idempotent);
    char reason[512];
    if (d.status == STORE_OUTCOME_RELEASE)
        snprintf(reason, sizeof(reason),
                 "%s before the attempt started (%s); returned to the queue", what, why);
    else if (d.status == STORE_OUTCOME_CANCELLED)
        snprintf(reason, sizeof(reason), "%s while cancelling (%s)", what, why);
    else if (d.status == STORE_OUTCOME_RETRY)
        snprintf(reason, sizeof(reason),
                 "%s while running (%s); retrying: the function is idempotent", what, why);
    else
        snprintf(reason, sizeof(reason), "%s while running (%s)", what, why);
    struct ending *e = queue_end(s, item, d);
    e->kind = OUTCOME_CRASHED;
    e->reason = xstrdup(reason);
    e->recovered = xstrdup(reason);
    if (d.status == STORE_OUTCOME_FAILED) {
        struct outcome out = {.kind = OUTCOME_CRASHED, .code = "host_lost", .message = reason};
        int64_t ran = e->item->started_ms ? now_ms() - e->item->started_ms : 0;
        end_response(e, "FAILED", e->item->attempt, ran > 0 ? ran : 0, &out);
    }
}

size_t settle_write(settler *s)
{
    size_t n = s->n - s->written;
    if (n == 0)
        return 0;
    struct ending *ends = s->ends + s->written;
    struct store_finish *f = calloc(n, sizeof(*f));
    int *rcs = calloc(n, sizeof(*rcs));
    if (f == NULL || rcs == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        struct ending *e = &ends[i];
        f[i].task_id = e->item->task_id;
        f[i].token = e->item->token;
        f[i].outcome = (struct store_outcome){.kind = e->d.status,
                                              .response_json = e->response,
                                              .reason = e->reason,
                                              .run_after_ms = e->d.retry_at_ms};
        e->notify_due = e->notify ? now_ms() + NOTIFY_GRACE_MS : 0;
        f[i].outcome.notify_due_ms = e->notify_due;
        f[i].outcome.fallback = e->fb_vault ? &e->fb_spec : NULL;
        f[i].outcome.fallback_note = e->fb_note;
    }
    char err[512];
    int rc = store_begin(s->st, err, sizeof(err)), begun = rc == STORE_OK;
    for (size_t i = 0; rc == STORE_OK && i < n; i++)
        for (int k = 0; k < ends[i].n_events; k++)
            settle_event(s->st, ends[i].item->task_id, ends[i].events[k].action, "%s",
                         ends[i].events[k].text);
    if (rc == STORE_OK)
        rc = store_finish_many(s->st, f, n, rcs, now_ms(), err, sizeof(err));
    for (size_t i = 0; i < n; i++) {
        struct ending *e = &ends[i];
        e->rc = rc != STORE_OK ? rc : rcs[i];
        if (e->rc == STORE_CONFLICT) {
            hlog(LOG_WARN, "item %s changed while it ran; its outcome %s is dropped",
                 e->item->task_id, outcome_kind_name(e->kind));
        } else if (e->rc != STORE_OK) {
            hlog(LOG_ERROR, "cannot record the outcome of %s: %s", e->item->task_id, err);
        } else if (e->recovered) {
            settle_event(s->st, e->item->task_id, "RECOVERED", "%s", e->recovered);
            hlog(LOG_WARN, "recovered %s: %s", e->item->task_id, e->recovered);
        }
    }
    /* The begin is ended whatever the finish did: inside the host's batch an unmatched
     * one would leave every later commit of the batch nested, never committed. */
    if (begun && store_commit(s->st, err, sizeof(err)) != STORE_OK)
        hlog(LOG_ERROR, "store commit failed: %s", err);
    free(f);
    free(rcs);
    s->written = s->n;
    return n;
}

void settle_recover_notices(settler *s)
{
    char ids[16][37], err[512];
    size_t n = 0;
    int64_t now = now_ms();
    if (store_notify_due(s->st, s->cfg->bridge, now, now + NOTIFY_RETRY_MS, ids, 16, &n, err,
                         sizeof(err)) != 0) {
        hlog(LOG_WARN, "cannot look for notifications left unsent: %s", err);
        return;
    }
    /* Another host's end may not be on disk yet (its commits are synced off its loop): the
     * log is synced, whoever wrote it, before anything is told. */
    if (n > 0 && durable_sync(s->durable) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        json_t *row = NULL;
        int rc = store_queue_get(s->st, ids[i], &row, err, sizeof(err));
        if (rc == STORE_NOT_FOUND) { /* removed meanwhile: nothing left to tell */
            store_notify_sent(s->st, ids[i], NULL, 0);
            continue;
        }
        if (rc != STORE_OK) {
            hlog(LOG_WARN, "cannot read %s to send its notifications: %s", ids[i], err);
            continue;
        }
        struct store_item item = {0};
        snprintf(item.task_id, sizeof(item.task_id), "%s", ids[i]);
        /* Borrowed from row for notify_outcome, which only reads them. */
        item.function = (char *)json_string_value(json_object_get(row, "function"));
        item.team = (char *)json_string_value(json_object_get(row, "teamName"));
        item.machine = (char *)json_string_value(json_object_get(row, "machineName"));
        item.bridge = (char *)json_string_value(json_object_get(row, "bridgeName"));
        const char *status = json_string_value(json_object_get(row, "status"));
        json_t *response = json_object_get(row, "responseVault");
        hlog(LOG_WARN, "sending the notifications of %s: the host that ended it stopped before",
             ids[i]);
        notify_outcome(s->cfg, s->st, &item, json_object_get(row, "vaultContent"),
                       status ? status : "FAILED", json_is_null(response) ? NULL : response);
        if (store_notify_sent(s->st, ids[i], err, sizeof(err)) != 0)
            hlog(LOG_WARN, "notifications of %s sent, but still noted as not sent: %s", ids[i],
                 err);
        json_decref(row);
    }
}

void settle_rewind(settler *s)
{
    s->written = 0;
}

/* Tests: the host dies (SIGKILL) right after committing a turn that ended an item FAILED,
 * before anything settle_after_commit does. */
static void crash_point(settler *s, int committed)
{
    for (size_t i = 0; s->crash_after_failed && committed && i < s->written; i++)
        if (s->ends[i].rc == STORE_OK && s->ends[i].d.status == STORE_OUTCOME_FAILED &&
            !s->ends[i].recovered) {
            hlog(LOG_WARN, "FERRY_TEST_CRASH=after-failed-commit: killing this host");
            raise(SIGKILL);
        }
}

void settle_after_commit(settler *s, int committed)
{
    crash_point(s, committed);
    for (size_t i = 0; i < s->written; i++) {
        struct ending *e = &s->ends[i];
        if (committed && e->rc == STORE_OK && e->d.final && !e->recovered) {
            const char *final = final_name(e->d.status);
            if (e->d.status == STORE_OUTCOME_FAILED)
                s->failed++;
            else if (e->d.status == STORE_OUTCOME_COMPLETED)
                s->completed++;
            /* What leaves the process waits for the commit it tells of to be on disk; when
             * the sync fails, the store's note stays for another host to send them. */
            if (e->notify && durable_wait(s->durable) == 0)
                notify_outcome(s->cfg, s->st, e->item, e->item->vault, final, e->response_tree);
            char err[512];
            if (e->notify_due && !durable_error(s->durable) &&
                store_notify_sent(s->st, e->item->task_id, err, sizeof(err)) != 0)
                hlog(LOG_WARN, "notifications of %s sent, but still noted as not sent: %s",
                     e->item->task_id, err);
        }
        ending_free(e);
    }
    size_t left = s->n - s->written;
    if (left > 0 && s->written > 0)
        memmove(s->ends, s->ends + s->written, left * sizeof(*s->ends));
    s->n = left;
    s->written = 0;
}
