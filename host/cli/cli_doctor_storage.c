/*
 * `ferry doctor --storages`: each storage reached as a backup reaches it. The repo plugin's
 * repo_list, with the storage named, lists the storage's snapshots: it runs in a worker, as
 * a host runs it, on this machine (with an empty scratch datastore of its own), and its
 * request for the storage is answered from the store with the storage's secrets opened, as
 * the host answers it (serve.c). A storage that lists is reachable with its credentials; the
 * plugin's error otherwise says why.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attempt.h"
#include "cli_attempt.h"
#include "cli_doctor.h"
#include "descriptor.h"
#include "outcome.h"
#include "registry.h"
#include "runner.h"
#include "store.h"
#include "util.h"
#include "vault.h"

#define STORAGE_FN      "repo_list"
#define STORAGE_TIMEOUT 30 /* s: a listing, not a transfer */

/* One storage's check: the worker's end, and the storage it may ask for. */
struct storage_run {
    struct cli_attempt a; /* first: cli_run_attempt's (the runner, done) */
    cli *c;
    const json_t *row; /* the storage's row (borrowed) */
    enum outcome_kind kind;
    char *error, *code;
    json_t *result;
};

static void on_log(void *ud, runner_job *job, const struct proto_log *m)
{
    (void)ud, (void)job, (void)m; /* the line the check prints is the outcome's */
}

static void on_progress(void *ud, runner_job *job, const struct proto_progress *m)
{
    (void)ud, (void)job, (void)m;
}

static void on_call(void *ud, runner_job *job, const struct proto_call *m)
{
    struct storage_run *s = ud;
    (void)m;
    struct proto_reply reply = {
        .kind = OUTCOME_FAIL, .code = "unavailable", .message = "ferry doctor does not nest calls"};
    runner_answer(s->a.r, job, &reply);
}

/* The function asks for its storage by name: the one being checked, secrets opened. */
static void on_storage(void *ud, runner_job *job, const struct proto_storage *m)
{
    struct storage_run *s = ud;
    const char *name = json_string_value(json_object_get(s->row, "storageName"));
    json_t *row = json_deep_copy(s->row);
    char err[512] = "no such storage";
    struct proto_reply reply = {.kind = OUTCOME_FAIL, .code = "not_found", .message = err};
    if (m->name && name && strcmp(m->name, name) == 0 &&
        store_resource_reveal(s->c->st, STORE_STORAGE, row, err, sizeof(err)) == STORE_OK)
        reply = (struct proto_reply){.kind = OUTCOME_OK, .vault = json_object_get(row, "vault")};
    runner_answer(s->a.r, job, &reply);
    json_decref(row);
}

static void on_done(void *ud, runner_job *job, const struct outcome *out)
{
    struct storage_run *s = ud;
    (void)job;
    s->a.done = 1;
    s->kind = out->kind;
    s->result = out->result ? json_incref(out->result) : NULL;
    s->error = out->message ? xstrdup(out->message) : NULL;
    s->code = out->code ? xstrdup(out->code) : NULL;
}

/* Runs repo_list for the storage of row in a worker; fills s. */
static void run_listing(struct storage_run *s, const struct ferry_fn *fn, const char *datastore)
{
    cli *c = s->c;
    const char *name = json_string_value(json_object_get(s->row, "storageName"));
    json_t *vault = json_pack("{s:s,s:s,s:i}", "function", STORAGE_FN, "storage", name, "timeout",
                              STORAGE_TIMEOUT);
    json_t *machine = attempt_local_machine();
    json_object_set_new(machine, "datastore", json_string(datastore));
    char run_id[44] = "doctor-";
    uuid_v4(run_id + 7);
    struct attempt_source src = {.reg = c->reg,
                                 .fn = fn,
                                 .vault = vault,
                                 .item_vault = vault,
                                 .machine = machine,
                                 .task_id = run_id,
                                 .attempt = 1};
    struct attempt_run run;
    attempt_build(&c->cfg, &src, &run);
    runner_events ev = {.log = on_log,
                        .progress = on_progress,
                        .call = on_call,
                        .storage = on_storage,
                        .done = on_done};
    cli_run_attempt(c, &run.spec, &ev, &s->a);
    attempt_run_free(&run);
    json_decref(machine);
    json_decref(vault);
}

static void check_storage(struct doctor *d, const json_t *row, const struct ferry_fn *fn,
                          const char *datastore)
{
    cli *c = d->c;
    char what[300];
    snprintf(what, sizeof(what), "storage %s/%s",
             json_string_value(json_object_get(row, "teamName")),
             json_string_value(json_object_get(row, "storageName")));
    struct storage_run s = {.c = c, .row = row};
    int64_t start = mono_ms();
    run_listing(&s, fn, datastore);
    if (s.kind == OUTCOME_OK) {
        json_t *snaps = json_object_get(s.result, "snapshots");
        doctor_report(d, DOCTOR_OK, what, NULL, "lists (%zu snapshots, %lld ms)",
                      json_array_size(snaps), (long long)(mono_ms() - start));
    } else if (s.code != NULL && strcmp(s.code, "not_found") == 0) {
        /* Reached, and asked for its config: not there. A missing S3 bucket is a failure
         * of its own (storage_s3.c), not this. */
        doctor_report(d, DOCTOR_OK, what, NULL,
                      "reachable; it holds no repository data yet (nothing pushed to it)");
    } else {
        /* The plugin's message names no secret (plugins mask them); redact anyway. */
        json_t *open_row = json_deep_copy(row);
        store_resource_reveal(c->st, STORE_STORAGE, open_row, NULL, 0);
        char *msg = redact_text(s.error ? s.error : outcome_kind_name(s.kind),
                                json_object_get(open_row, "vault"), NULL);
        doctor_report(d, DOCTOR_FAIL, what,
                      "check its address, path and credentials (ferry update storage-vault; "
                      "docs/storages.md)",
                      "%s", msg);
        free(msg);
        json_decref(open_row);
    }
    json_decref(s.result);
    free(s.error);
    free(s.code);
}

void doctor_storages(struct doctor *d)
{
    cli *c = d->c;
    json_t *rows = NULL;
    char err[1024];
    struct ferry_fn fn;
    if (store_resource_list(c->st, STORE_STORAGE, NULL, &rows, err, sizeof(err)) != STORE_OK) {
        doctor_report(d, DOCTOR_FAIL, "storages", NULL, "cannot list them: %s", err);
        return;
    }
    if (json_array_size(rows) == 0) {
        doctor_report(d, DOCTOR_OK, "storages", NULL, "none defined");
    } else if (c->reg == NULL || registry_fn(c->reg, STORAGE_FN, &fn) != 0) {
        doctor_report(d, DOCTOR_WARN, "storages", "install the repo plugin in plugins.dir",
                      "no plugin provides %s: storages are not checked", STORAGE_FN);
    } else {
        char datastore[] = "/tmp/ferry-doctor-XXXXXX";
        if (mkdtemp(datastore) == NULL) {
            doctor_report(d, DOCTOR_FAIL, "storages", NULL, "cannot make a scratch directory");
        } else {
            size_t i;
            json_t *row;
            json_array_foreach (rows, i, row)
                check_storage(d, row, &fn, datastore);
            char *rm = xasprintf("rm -rf '%s'", datastore);
            if (system(rm) != 0)
                doctor_report(d, DOCTOR_WARN, "storages", NULL, "could not remove %s", datastore);
            free(rm);
        }
    }
    json_decref(rows);
}
