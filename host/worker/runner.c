/*
 * The runner's dispatcher and its interface (runner.h): it hands attempts to workers (pick,
 * send_job, the durability gate before any message leaves), reads what the workers say and
 * their stderr, and settles each attempt: done, cancelled, stopped at its deadline, or lost
 * with a worker that died. Starting and retiring workers is runner_spawn.c's; the limits of
 * an attempt are runner_limits.c's.
 */
#include "runner_int.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "priv_client.h"
#include "proto.h"
#include "reap.h"
#include "util.h"

/* Sanitizer builds also copy workers' stderr to the host log, where the test suite looks
 * for sanitizer reports. */
#if defined(__SANITIZE_ADDRESS__)
#define STDERR_TO_HOST_LOG 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STDERR_TO_HOST_LOG 1
#endif
#endif
#ifndef STDERR_TO_HOST_LOG
#define STDERR_TO_HOST_LOG 0
#endif

runner *runner_create(const runner_opts *opts, const runner_events *ev, void *ud)
{
    runner *r = calloc(1, sizeof(*r));
    r->o = *opts;
    if (r->o.max_workers < 1)
        r->o.max_workers = 1;
    if (r->o.max_jobs < 1)
        r->o.max_jobs = 1000;
    if (r->o.pipeline == 0)
        r->o.pipeline = RUNNER_PIPELINE;
    else if (r->o.pipeline < 0)
        r->o.pipeline = 0;
    r->ev = *ev;
    r->ud = ud;
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    r->next_id = 1;
    r->env = runner_worker_env(opts);
    signal(SIGPIPE, SIG_IGN);
    return r;
}

int runner_fd(const runner *r)
{
    return r->epfd;
}

/*
 * One line of a worker's stderr: into the running attempt's trace as a "stderr" log line
 * (control characters escaped, bad UTF-8 replaced, at most STDERR_PER_ATTEMPT bytes per
 * attempt), or into the host log, escaped, when no attempt runs (a plugin's init()).
 */
static void stderr_line(runner *r, worker *w, const char *line, size_t len)
{
    char *clean = proto_clean_bytes(line, len, PROTO_LOG_MAX);
    runner_job *job = w->job;
    if (STDERR_TO_HOST_LOG || job == NULL)
        hlog(job ? LOG_INFO : LOG_WARN, "worker %d stderr: %s", (int)w->pid, clean ? clean : "");
    if (job && job->stderr_kept + len <= STDERR_PER_ATTEMPT && r->ev.log) {
        job->stderr_kept += len;
        struct proto_log m = {.id = job->id, .level = "stderr", .text = clean ? clean : ""};
        r->ev.log(r->ud, job, &m);
    } else if (job) {
        job->stderr_dropped += len;
    }
    free(clean);
}

/*
 * Reads what the worker wrote to stderr so far (a read that does not fill the buffer took all
 * there was); at_end: also the unfinished last line. empty: the worker said nothing is
 * pending, so only that line is left to flush.
 */
static void read_stderr(runner *r, worker *w, int at_end, int empty)
{
    char buf[4096];
    while (w->errfd >= 0 && !empty) {
        ssize_t n = read(w->errfd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                epoll_ctl(r->epfd, EPOLL_CTL_DEL, w->errfd, NULL);
                close(w->errfd);
                w->errfd = -1;
            }
            break;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n')
                w->errline[w->errline_len++] = buf[i];
            if (buf[i] == '\n' || w->errline_len == sizeof(w->errline)) {
                stderr_line(r, w, w->errline, w->errline_len);
                w->errline_len = 0;
            }
        }
        if ((size_t)n < sizeof(buf))
            break;
    }
    if (at_end && w->errline_len > 0) {
        stderr_line(r, w, w->errline, w->errline_len);
        w->errline_len = 0;
    }
}

/* Sends a cancel to the attempt job runs on its worker: SIGUSR1 with the attempt's id, which
 * the worker ignores if that attempt is no longer the one running. */
static void signal_cancel(runner_job *job)
{
    union sigval v = {.sival_int = (int)job->id};
    if (job->w->ctl >= 0) {
        char what[48];
        snprintf(what, sizeof(what), "cancel %d", v.sival_int);
        priv_ctl(job->w->ctl, what);
        return;
    }
    sigqueue(job->w->pid, SIGUSR1, v);
}

/* job has started on its worker (its worker was idle, or the previous attempt's done was
 * read): its deadline counts from now; a cancel that reached it while it was queued
 * becomes a running attempt's cancel, in case the worker started it before the skip came. */
static void job_started(runner *r, runner_job *job)
{
    int64_t now = mono_ms();
    runner_limits_begin(job, now);
    job->deadline = job->timeout_ms > 0 ? now + job->timeout_ms : 0;
    if (job->stopping != STOP_NONE) {
        signal_cancel(job);
        job->term_at = now + r->o.grace_ms / 2;
        job->kill_at = now + r->o.grace_ms;
    }
}

/* The first attempt queued on w becomes its running one. */
static void promote(runner *r, worker *w)
{
    runner_job *next = w->q_first;
    if (next == NULL)
        return;
    w->q_first = next->next;
    if (w->q_first == NULL)
        w->q_last = NULL;
    w->nq--;
    next->next = NULL;
    w->job = next;
    job_started(r, next);
}

/* Settles an attempt that never started (out borrowed) and frees it. */
static void settle_unstarted(runner *r, runner_job *job, const struct outcome *out)
{
    r->ev.done(r->ud, job, out);
    proto_buf_free(&job->frame);
    free(job);
}

/* Settles w's attempt. stderr_empty: the worker's done said its stderr pipe held nothing
 * (everything it wrote was read already), which saves a read per attempt. */
static void finish(runner *r, worker *w, struct outcome *out, int stderr_empty)
{
    runner_job *job = w->job;
    /* What the attempt wrote to stderr before it ended belongs to its trace. */
    read_stderr(r, w, 1, stderr_empty);
    if (job->stderr_dropped > 0 && r->ev.log) {
        char text[160];
        snprintf(text, sizeof(text), "%zu more bytes of stderr not kept (the trace keeps %d)",
                 job->stderr_dropped, STDERR_PER_ATTEMPT);
        struct proto_log m = {.id = job->id, .level = "stderr", .text = text};
        r->ev.log(r->ud, job, &m);
    }
    w->job = NULL;
    w->jobs_done++;
    /* The next attempt queued on the worker has started (the worker runs them back to back);
     * a worker with none is free before the host hears of the end: the done callback may
     * hand it the next attempt at once (unless it is to be retired). */
    promote(r, w);
    r->ev.done(r->ud, job, out);
    proto_buf_free(&job->frame);
    free(job);
}

/*
 * Why a worker that ended without a "done" message ended, from what it told the host (an
 * "exit" message: the function called exit()) and from how it died. The worker ends on its
 * own only when the host is gone, so an exit status here is the plugin's doing.
 */
static const char *describe_death(const runner_job *job, int status, char *buf, size_t len)
{
    if (WIFSIGNALED(status))
        snprintf(buf, len, "worker killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else if (job->exit_reported)
        snprintf(buf, len, "the %s called exit(%d), which ended its worker",
                 job->exit_loading ? "plugin's init()" : "function", job->exit_status);
    else if (WIFEXITED(status))
        snprintf(buf, len,
                 "worker ended (exit status %d) before the function returned: the "
                 "function called _exit() or broke the worker's connection to the host",
                 WEXITSTATUS(status));
    else
        snprintf(buf, len, "worker ended unexpectedly");
    return buf;
}

/* The outcome of an attempt the runner stopped (job->stopping), message in buf. */
static void stopped_outcome(const runner_job *job, struct outcome *out, char *buf, size_t len)
{
    out->stop = job->stopping;
    out->message = buf;
    switch (job->stopping) {
    case STOP_DEADLINE:
        snprintf(buf, len, "timeout after %lld s", (long long)(job->timeout_ms / 1000));
        out->kind = OUTCOME_TIMEOUT;
        out->code = "timeout";
        break;
    case STOP_CANCEL:
        snprintf(buf, len, "cancelled while running");
        out->kind = OUTCOME_CANCELLED;
        out->code = "cancelled";
        break;
    case STOP_LIMIT:
        snprintf(buf, len, "%s", job->limit_msg);
        out->kind = OUTCOME_FAIL;
        out->code = "limit_exceeded";
        break;
    default: /* STOP_SHUTDOWN */
        snprintf(buf, len, "interrupted by host shutdown");
        out->kind = OUTCOME_CANCELLED;
        out->code = "interrupted";
        break;
    }
}

static worker *pick(runner *r, int nested);
static int send_job(runner *r, worker *w, runner_job *job);
static void flush_out(runner *r, worker *w);

/* Attempts that were queued on a worker that is gone, and never started: each goes to another
 * worker, or ends as it was being stopped when it had been cancelled meanwhile. */
static void redispatch(runner *r, runner_job *queue)
{
    while (queue) {
        runner_job *job = queue;
        queue = job->next;
        job->next = NULL;
        char buf[128];
        struct outcome out = {.kind = OUTCOME_CRASHED, .stop = STOP_WORKER_DIED,
                              .code = "crashed", .message = "no worker could be started"};
        if (job->stopping != STOP_NONE) {
            stopped_outcome(job, &out, buf, sizeof(buf));
            settle_unstarted(r, job, &out);
            continue;
        }
        worker *w = job->user[0] ? runner_spawn_as(r, job, NULL, 0) : pick(r, job->nested);
        if (w == NULL && !job->user[0])
            w = runner_spawn(r); /* the slot of the worker that died */
        if (w == NULL || send_job(r, w, job) != 0)
            settle_unstarted(r, job, &out);
    }
}

/* A worker died (or broke the protocol: why says how): settle its job and remove it. */
static void worker_died(runner *r, worker *w, const char *why)
{
    if (w->dead)
        return;
    w->dead = 1;
    /* The attempts queued behind the running one never started: they go to another worker
     * once this one is gone, unseen by the host. */
    runner_job *queue = w->q_first;
    w->q_first = w->q_last = NULL;
    w->nq = 0;
    runner_kill_groups(w, SIGKILL);
    int status = 0, keeper_lost = 0;
    pid_t got = -1;
    if (w->ctl >= 0) { /* its keeper reaps it and tells */
        if (priv_exit_status(w->ctl, 2000, &status) == 0)
            got = w->pid;
        else
            keeper_lost = 1;
        close(w->ctl);
        w->ctl = -1;
    } else {
        while ((got = waitpid(w->pid, &status, 0)) < 0 && errno == EINTR)
            ;
        reap_worker_gone(w->pid);
    }
    if (w->job) {
        char buf[320];
        runner_job *job = w->job;
        struct outcome out = {.kind = OUTCOME_CRASHED, .stop = STOP_WORKER_DIED,
                              .code = "crashed", .message = buf};
        if (job->stopping != STOP_NONE) {
            stopped_outcome(job, &out, buf, sizeof(buf));
        } else if (why) {
            snprintf(buf, sizeof(buf), "%s", why);
            out.stop = STOP_PROTOCOL;
        } else if (keeper_lost) {
            snprintf(buf, sizeof(buf), "the worker's ferry-priv keeper ended (the helper was "
                     "stopped or killed), which ended the worker and what it started");
        } else {
            describe_death(job, got > 0 ? status : 0, buf, sizeof(buf));
        }
        finish(r, w, &out, 0);
    }
    /* The process is reaped; runner_retire() must not wait again. */
    runner_close_worker(r, w);
    kill(-w->pid, SIGKILL);
    runner_free_worker(r, w);
    redispatch(r, queue);
}

static worker *find_serial(const runner *r, uint64_t serial);

/* How many times one attempt is moved off workers with a stale plugin before it ends
 * UNAVAILABLE (the plugin keeps changing under it). */
#define MAX_MOVES 3

/*
 * The worker found the plugin of attempt job changed on disk before it loaded it (its copy
 * is stale: dlopen would hand back the old one), so job never started there, and neither
 * will any attempt after it on that worker. job goes to another worker, as if the first
 * had died before starting it, unless it has moved too often.
 */
static void move_stale(runner *r, runner_job *job)
{
    if (job->moves < MAX_MOVES) {
        hlog(LOG_INFO, "worker %d holds a stale copy of a plugin changed on disk: attempt %lld, "
             "which never started there, goes to another worker", (int)job->w->pid,
             (long long)job->id);
        job->moves++;
        job->w = NULL;
        redispatch(r, job);
        return;
    }
    char buf[160];
    snprintf(buf, sizeof(buf), "the plugin changed on disk %d times before the attempt could "
             "start; try again", MAX_MOVES + 1);
    struct outcome out = {.kind = OUTCOME_UNAVAILABLE, .stop = STOP_NONE,
                          .code = "plugin_changed", .message = buf};
    settle_unstarted(r, job, &out);
}

/* A skip's answer: the queued attempt m->id never started. Returns -1 when no attempt that
 * was being cancelled is queued under that id. With retire, the worker's copy of the plugin
 * was stale: m->id (running or queued) never started, and is moved (move_stale). */
static int handle_skipped(runner *r, worker *w, const struct proto_done *m)
{
    runner_job *job = w->job;
    if (m->retire)
        w->leaving = 1; /* it starts nothing more */
    if (job && job->id == m->id) {
        /* The runner took it for started (the done before it was read first). */
        if (job->stopping == STOP_NONE && !m->retire)
            return -1;
        w->job = NULL;
        promote(r, w);
    } else {
        runner_job **at = &w->q_first, *prev = NULL;
        while (*at && (*at)->id != m->id) {
            prev = *at;
            at = &(*at)->next;
        }
        job = *at;
        if (job == NULL || (job->stopping == STOP_NONE && !m->retire))
            return -1;
        *at = job->next;
        if (w->q_last == job)
            w->q_last = prev;
        w->nq--;
        job->next = NULL;
    }
    uint64_t serial = w->serial;
    if (m->retire && job->stopping == STOP_NONE) {
        move_stale(r, job);
    } else {
        char buf[128];
        struct outcome out = {0};
        stopped_outcome(job, &out, buf, sizeof(buf));
        snprintf(buf, sizeof(buf), "%s before it started",
                 job->stopping == STOP_SHUTDOWN ? "interrupted by host shutdown" : "cancelled");
        settle_unstarted(r, job, &out);
    }
    if (find_serial(r, serial) == w && w->leaving && w->job == NULL)
        runner_retire(r, w);
    return 0;
}

static int handle_done(runner *r, worker *w, const struct proto_done *m)
{
    if (m->skipped)
        return handle_skipped(r, w, m);
    runner_job *job = w->job;
    if (m->id != job->id)
        return -1; /* a worker runs its attempts in the order they were sent */
    struct outcome out = {.kind = m->kind,
                          .stop = STOP_NONE,
                          .code = m->code,
                          .message = m->message,
                          .result = (json_t *)m->result,
                          .duration_ms = m->duration_ms};
    char buf[128];
    /* A function that gave up because ferry_cancelled() turned true at its deadline ran out
     * of time, whether or not runner_tick() got to stop it first. */
    if (out.kind != OUTCOME_OK && !job->stopping && job->deadline > 0 &&
        mono_ms() >= job->deadline)
        job->stopping = STOP_DEADLINE;
    if (out.kind != OUTCOME_OK && job->stopping != STOP_NONE)
        stopped_outcome(job, &out, buf, sizeof(buf));
    /* A worker we started to stop, an old one, or one past its quota is replaced; it takes
     * no new attempt from the done callback. */
    int leaving = w->leaving || job->stopping != STOP_NONE || m->retire ||
                  w->generation != r->generation || w->jobs_done + 1 >= r->o.max_jobs;
    w->leaving = leaving;
    uint64_t serial = w->serial;
    finish(r, w, &out, m->stderr_drained);
    /* A worker leaves once the attempts queued on it are done; it takes no new ones. (One
     * that stays may be gone: the done callback may have started it again and it died.) */
    if (leaving && find_serial(r, serial) == w && w->job == NULL)
        runner_retire(r, w);
    return 0;
}

/* The answer to a request nobody on this host serves. */
static void refuse(runner *r, runner_job *job, const char *what)
{
    struct proto_reply reply = {.kind = OUTCOME_FAIL, .code = "unavailable", .message = what};
    runner_answer(r, job, &reply);
}

/*
 * One message from w's worker. Returns 0, or -1 when it broke the protocol (why in err):
 * the caller then ends the worker.
 */
static int handle_message(runner *r, worker *w, const json_t *msg, union proto_msg *parsed,
                          char *err, size_t errlen)
{
    runner_job *job = w->job;
    union proto_msg m;
    enum proto_op op = msg ? proto_op_of(msg) : PROTO_DONE;
    if (job == NULL)
        return 0; /* between attempts: nothing to say, nobody to tell */
    switch (op) {
    case PROTO_DONE:
        if (msg == NULL)
            m.done = parsed->done; /* parsed by proto_next_done() */
        else if (proto_parse_done(msg, &m.done, err, errlen) != 0)
            return -1;
        if (handle_done(r, w, &m.done) != 0) {
            snprintf(err, errlen, "a done for attempt %lld, which %s",
                     (long long)m.done.id, m.done.skipped ? "was not skipped" : "is not running");
            return -1;
        }
        return 0;
    case PROTO_LOG:
        if (proto_parse_log(msg, &m.log, err, errlen) != 0)
            return -1;
        if (r->ev.log)
            r->ev.log(r->ud, job, &m.log);
        return 0;
    case PROTO_PROGRESS:
        if (proto_parse_progress(msg, &m.progress, err, errlen) != 0)
            return -1;
        if (r->ev.progress)
            r->ev.progress(r->ud, job, &m.progress);
        return 0;
    case PROTO_EXIT:
        if (proto_parse_exit(msg, &m.exit, err, errlen) != 0)
            return -1;
        job->exit_reported = 1;
        job->exit_status = m.exit.status;
        job->exit_loading = m.exit.loading;
        return 0;
    case PROTO_PGROUP:
        if (proto_parse_pgroup(msg, &m.pgroup, err, errlen) != 0)
            return -1;
        if (job->n_pgroups < MAX_PGROUPS)
            job->pgroups[job->n_pgroups++] = (pid_t)m.pgroup.pgid;
        return 0;
    case PROTO_CALL:
        if (proto_parse_call(msg, &m.call, err, errlen) != 0)
            return -1;
        job->waiting_reply = 1;
        if (r->ev.call)
            r->ev.call(r->ud, job, &m.call);
        else
            refuse(r, job, "this host does not serve calls");
        return 0;
    case PROTO_STORAGE:
        if (proto_parse_storage(msg, &m.storage, err, errlen) != 0)
            return -1;
        job->waiting_reply = 1;
        if (r->ev.storage)
            r->ev.storage(r->ud, job, &m.storage);
        else
            refuse(r, job, "this host does not serve storages");
        return 0;
    default:
        snprintf(err, errlen, "a worker does not send \"%s\" messages", proto_op_name(op));
        return -1;
    }
}

static worker *find_serial(const runner *r, uint64_t serial)
{
    for (size_t k = 0; k < r->n_workers; k++)
        if (r->workers[k]->serial == serial)
            return r->workers[k];
    return NULL;
}

/*
 * Reads what w's worker wrote (one read for whatever is there) and handles every whole
 * message it holds, in order.
 */
static void read_worker(runner *r, worker *w)
{
    int rc = proto_fill(&w->rd, w->sock);
    for (;;) {
        int broken = 0;
        json_t *msg;
        union proto_msg parsed;
        int plain = proto_next_done(&w->rd, &msg, &parsed.done, &broken);
        if (broken) {
            worker_died(r, w, "worker broke the message protocol");
            return;
        }
        if (msg == NULL && !plain)
            break;
        uint64_t serial = w->serial;
        char err[256] = "";
        if (handle_message(r, w, msg, &parsed, err, sizeof(err)) != 0) {
            char why[320];
            snprintf(why, sizeof(why), "worker broke the message protocol: %s", err);
            json_decref(msg);
            worker_died(r, w, why);
            return;
        }
        json_decref(msg);
        if (find_serial(r, serial) == NULL)
            return; /* handle_done retired it */
    }
    if (rc < 0)
        worker_died(r, w, NULL);
}

void runner_process(runner *r)
{
    runner_flush(r);
    struct epoll_event evs[64];
    int n = epoll_wait(r->epfd, evs, 64, 0);
    for (int i = 0; i < n; i++) {
        /* An earlier event of this batch may have removed the worker: look it up. */
        uint64_t serial = evs[i].data.u64 >> EV_BITS;
        int kind = (int)(evs[i].data.u64 & ((1u << EV_BITS) - 1));
        worker *w = find_serial(r, serial);
        if (w == NULL)
            continue;
        if (w->exiting) { /* let go: only its end matters */
            if (kind == EV_PIDFD)
                runner_retire_now(r, w, 0);
            continue;
        }
        if (kind == EV_STDERR) {
            /* What the worker said on its socket first: a done written before the next
             * attempt wrote to stderr moves these lines to that next attempt's trace. */
            read_worker(r, w);
            if ((w = find_serial(r, serial)) != NULL)
                read_stderr(r, w, 0, 0);
            continue;
        }
        if (kind == EV_SOCK && (evs[i].events & EPOLLOUT))
            flush_out(r, w); /* the socket took what waited */
        read_worker(r, w); /* a dying worker's last messages (a "done") come first */
        if (kind == EV_PIDFD && find_serial(r, serial) == w)
            worker_died(r, w, NULL);
    }
    runner_flush(r); /* attempts sent elsewhere when their worker died */
}

/* How many more attempts w takes: its queue's room, within its quota of attempts. */
static int room_of(const runner *r, const worker *w)
{
    if (!runner_eligible(r, w))
        return 0;
    int load = runner_load_of(w);
    int room = 1 + r->o.pipeline - load, quota = r->o.max_jobs - w->jobs_done - load;
    room = quota < room ? quota : room;
    return room > 0 ? room : 0;
}

/*
 * The worker for a new attempt: an idle one; else a new one while fewer than max_workers
 * hold a slot (for a nested call, always); else (not for a nested call, which never waits
 * behind another attempt) the one with the shortest queue that has room. NULL: none.
 */
static worker *pick(runner *r, int nested)
{
    worker *best = NULL;
    for (size_t i = 0; i < r->n_workers; i++) {
        worker *w = r->workers[i];
        int room = room_of(r, w);
        if (room > 0 && runner_load_of(w) == 0)
            return w;
        if (room > 0 && (best == NULL || runner_load_of(w) < runner_load_of(best)))
            best = w;
    }
    if (nested || runner_occupied(r) < r->o.max_workers) {
        worker *heir = runner_take_heir(r);
        return heir ? heir : runner_spawn(r);
    }
    return best;
}

/*
 * Writes what waits in w->out as far as the socket takes it; the rest waits for EPOLLOUT
 * (runner_process writes it then). A worker whose socket is broken loses what waited: its
 * end is seen on its pidfd or as end of file, and ends its attempts then, so this never ends
 * a worker itself (it runs inside callbacks that still use it).
 */
static void flush_out(runner *r, worker *w)
{
    size_t off = 0, limit = w->n_marks > 0 ? w->marks[0].at : w->out.len;
    while (off < limit) {
        ssize_t n = write(w->sock, w->out.p + off, limit - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            off = limit = w->out.len;
            w->n_marks = 0;
            break;
        }
        off += (size_t)n;
    }
    memmove(w->out.p, w->out.p + off, w->out.len - off);
    w->out.len -= off;
    for (size_t i = 0; i < w->n_marks; i++)
        w->marks[i].at -= off;
    int want = off < limit;
    if (want != w->want_out && !w->exiting) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0),
                                 .data.u64 = w->serial << EV_BITS | EV_SOCK};
        epoll_ctl(r->epfd, EPOLL_CTL_MOD, w->sock, &ev);
        w->want_out = want;
    }
}

/* What is added to w->out from now on waits for r->need to be durable (runner_hold). */
static void out_mark(runner *r, worker *w)
{
    if (r->need <= r->durable || (w->n_marks > 0 && w->marks[w->n_marks - 1].commit >= r->need))
        return;
    if (w->n_marks == w->cap_marks) {
        w->cap_marks = w->cap_marks ? 2 * w->cap_marks : 4;
        w->marks = realloc(w->marks, w->cap_marks * sizeof(*w->marks));
        if (w->marks == NULL)
            abort();
    }
    w->marks[w->n_marks++] = (struct out_mark){.at = w->out.len, .commit = r->need};
}

void runner_hold(runner *r, uint64_t commit)
{
    if (commit > r->need)
        r->need = commit;
}

void runner_durable(runner *r, uint64_t commit)
{
    if (commit <= r->durable)
        return;
    r->durable = commit;
    for (size_t i = 0; i < r->n_workers; i++) {
        worker *w = r->workers[i];
        size_t k = 0;
        while (k < w->n_marks && w->marks[k].commit <= commit)
            k++;
        if (k == 0)
            continue;
        memmove(w->marks, w->marks + k, (w->n_marks - k) * sizeof(*w->marks));
        w->n_marks -= k;
        flush_out(r, w);
    }
}

void runner_flush(runner *r)
{
    for (size_t i = 0; i < r->n_workers; i++)
        if (r->workers[i]->out.len > 0)
            flush_out(r, r->workers[i]);
}

/*
 * Hands job's run message to w: it runs at once if w is idle, else after those queued. One
 * that starts at once is written at once; one queued behind another waits in w->out for
 * runner_flush() (or the end of runner_process()), so that a turn's attempts for a worker
 * cost one write. Returns -1, with nothing changed, when the message cannot be queued (out
 * of memory): the caller still owns job, and w and its attempts are untouched.
 */
static int send_job(runner *r, worker *w, runner_job *job)
{
    out_mark(r, w);
    if (job->frame.len == 0 || proto_buf_add(&w->out, job->frame.p, job->frame.len) != 0)
        return -1;
    job->w = w;
    if (w->job == NULL) {
        w->job = job;
    } else {
        if (w->q_last)
            w->q_last->next = job;
        else
            w->q_first = job;
        w->q_last = job;
        w->nq++;
    }
    if (w->job == job) {
        job_started(r, job);
        flush_out(r, w);
    }
    return 0;
}

int runner_busy(const runner *r)
{
    int n = 0;
    for (size_t i = 0; i < r->n_workers; i++)
        n += r->workers[i]->job != NULL;
    return n;
}

int runner_free_slots(const runner *r)
{
    int slots = 0;
    for (size_t i = 0; i < r->n_workers; i++)
        slots += room_of(r, r->workers[i]);
    int fresh = r->o.max_workers - runner_occupied(r);
    int per_worker = 1 + r->o.pipeline < r->o.max_jobs ? 1 + r->o.pipeline : r->o.max_jobs;
    return slots + (fresh > 0 ? fresh * per_worker : 0);
}

runner_job *runner_start(runner *r, const struct attempt_spec *spec, void *tag, int nested)
{
    /* Nested calls wait on a running parent: refusing them for lack of a slot could
     * deadlock, so they may go past the limit, up to a hard bound. */
    int room = nested ? runner_busy(r) < 4 * r->o.max_workers : runner_free_slots(r) > 0;
    if (!room)
        return NULL;
    char user[40], why[1100];
    user[0] = why[0] = '\0';
    if ((r->o.run_as && *r->o.run_as) || json_object_get(spec->machine, "run_as")) /* run_as */
        if (priv_user_for(r->o.run_as, spec->function, spec->machine, user, sizeof(user), why,
                          sizeof(why)) != 0)
            user[0] = '\0';
    worker *w = NULL;
    if (!user[0] && !why[0]) {
        w = pick(r, nested);
        if (w == NULL)
            return NULL;
    }
    runner_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return NULL;
    if (user[0]) { /* for ferry-priv; nothing on the common path */
        snprintf(job->user, sizeof(job->user), "%s", user);
        snprintf(job->fn, sizeof(job->fn), "%s", spec->function ? spec->function : "");
    }
    job->id = r->next_id++;
    job->tag = tag;
    job->nested = nested;
    job->timeout_ms = spec->timeout_ms;
    runner_limits_for(&r->o, spec->function, &job->limits);
    /* The worker counts the deadline from its start (timeout_ms); "deadline" is for a
     * worker that starts it at once. */
    struct proto_run run = {.id = job->id,
                            .deadline_ms = spec->timeout_ms > 0 ? now_ms() + spec->timeout_ms : 0,
                            .spec = *spec};
    r->scratch.len = 0;
    if (proto_buf_run(&r->scratch, &run) == 0 && (job->frame.p = malloc(r->scratch.len)) != NULL) {
        memcpy(job->frame.p, r->scratch.p, r->scratch.len);
        job->frame.len = job->frame.cap = r->scratch.len;
    }
    if (user[0] && !why[0] && (w = runner_spawn_as(r, job, why, sizeof(why))) == NULL && !why[0]) {
        free(job->frame.p);
        free(job);
        return NULL; /* no room now: given back, as when no worker is free */
    }
    if (why[0]) { /* it cannot run as its user: FAILS, settled by the next runner_tick */
        job->fail_msg = xstrdup(why);
        job->next = r->failed;
        r->failed = job;
        return job;
    }
    /* A message that cannot be built or queued (out of memory) starts nothing: the host
     * gives the item back, as when no worker is free. Ending the worker here would settle
     * its other attempts inside the caller's start, under its feet. */
    if (send_job(r, w, job) != 0) {
        free(job->frame.p);
        free(job);
        return NULL;
    }
    return job;
}

void *runner_job_tag(const runner_job *job)
{
    return job->tag;
}

int64_t runner_job_id(const runner_job *job)
{
    return job->id;
}

pid_t runner_job_pid(const runner_job *job)
{
    return job->w ? job->w->pid : 0;
}

int runner_job_queued(const runner_job *job)
{
    return job->w != NULL && job->w->job != job;
}

void runner_answer(runner *r, runner_job *job, const struct proto_reply *reply)
{
    job->waiting_reply = 0;
    json_t *msg = proto_build_reply(reply);
    out_mark(r, job->w);
    if (msg && proto_buf_msg(&job->w->out, msg) == 0)
        flush_out(r, job->w);
    json_decref(msg);
}

static void begin_stop(runner *r, runner_job *job, enum outcome_stop why, int grace_ms)
{
    if (job->stopping || job->w == NULL) /* one that could not start as its user FAILS */
        return;
    job->stopping = why;
    if (job->w->job != job) {
        /* Still queued: the worker drops it before it would start and says so; if it
         * started it meanwhile, job_started() cancels it as a running one. */
        struct proto_skip skip = {.id = job->id};
        json_t *msg = proto_build_skip(&skip);
        out_mark(r, job->w);
        if (msg && proto_buf_msg(&job->w->out, msg) == 0)
            flush_out(r, job->w);
        json_decref(msg);
        return;
    }
    int64_t now = mono_ms();
    if (why == STOP_DEADLINE) {
        runner_kill_groups(job->w, SIGTERM);
        job->term_at = 0;
        job->kill_at = now + grace_ms;
    } else {
        signal_cancel(job);
        job->term_at = now + grace_ms / 2;
        job->kill_at = now + grace_ms;
    }
}

void runner_cancel(runner *r, runner_job *job)
{
    begin_stop(r, job, STOP_CANCEL, r->o.grace_ms);
}

void runner_interrupt(runner *r, runner_job *job)
{
    begin_stop(r, job, STOP_SHUTDOWN, r->o.grace_ms);
}

void runner_recycle(runner *r)
{
    r->generation++;
    /* Idle workers go now; busy ones after their attempt (handle_done). */
    for (size_t i = r->n_workers; i-- > 0;) {
        worker *w = r->workers[i];
        if (w->job == NULL && !w->exiting)
            runner_retire(r, w);
    }
}

/* Settles the attempts that could not start as their user. */
static void runner_tick_failed(runner *r)
{
    while (r->failed) {
        runner_job *job = r->failed;
        r->failed = job->next;
        job->next = NULL;
        struct outcome out = {.kind = OUTCOME_FAIL, .stop = STOP_NONE, .code = "run_as_failed",
                              .message = job->fail_msg};
        r->ev.done(r->ud, job, &out);
        free(job->fail_msg);
        proto_buf_free(&job->frame);
        free(job);
    }
}

void runner_tick(runner *r)
{
    int64_t now = mono_ms();
    runner_tick_failed(r);
    for (size_t i = 0; i < r->n_workers; i++) {
        runner_job *job = r->workers[i]->job;
        if (job == NULL)
            continue;
        if (!job->stopping && job->deadline > 0 && now >= job->deadline)
            begin_stop(r, job, STOP_DEADLINE, r->o.grace_ms);
        runner_limits_tick(job, now);
        if (job->term_at > 0 && now >= job->term_at) {
            runner_kill_groups(job->w, SIGTERM);
            job->term_at = 0;
        }
        if (job->kill_at > 0 && now >= job->kill_at) {
            runner_kill_groups(job->w, SIGKILL);
            job->kill_at = 0;
        }
    }
    runner_keep_workers(r, now);
}

int runner_timeout_ms(const runner *r)
{
    int64_t now = mono_ms(), next = -1;
    if (r->failed)
        return 0;
    for (size_t i = 0; i < r->n_workers; i++) {
        runner_job *job = r->workers[i]->job;
        int64_t exiting = r->workers[i]->exiting;
        if (exiting > 0 && (next < 0 || exiting < next))
            next = exiting;
        if (job == NULL)
            continue;
        int64_t t[4] = {job->stopping ? 0 : job->deadline, job->term_at, job->kill_at,
                        job->stopping ? 0 : job->next_check};
        for (int k = 0; k < 4; k++)
            if (t[k] > 0 && (next < 0 || t[k] < next))
                next = t[k];
    }
    if (next < 0)
        return -1;
    return next <= now ? 0 : (int)(next - now);
}

void runner_free(runner *r)
{
    runner_tick_failed(r);
    while (r->n_workers > 0) {
        worker *w = r->workers[r->n_workers - 1];
        struct outcome out = {.kind = OUTCOME_CANCELLED, .stop = STOP_SHUTDOWN,
                              .code = "interrupted", .message = "host stopped"};
        while (w->q_first) { /* queued: never started */
            runner_job *job = w->q_first;
            w->q_first = job->next;
            w->nq--;
            settle_unstarted(r, job, &out);
        }
        w->q_last = NULL;
        if (w->job) {
            runner_kill_groups(w, SIGKILL);
            finish(r, w, &out, 0);
        }
        runner_retire_now(r, w, 1);
    }
    free(r->workers);
    proto_buf_free(&r->scratch);
    for (char **e = r->env; e && *e; e++)
        free(*e);
    free(r->env);
    close(r->epfd);
    free(r);
}
