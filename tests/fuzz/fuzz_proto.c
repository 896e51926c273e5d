/*
 * Fuzzes the worker protocol readers (host/worker/proto.c): the input is what a worker wrote on its
 * socket. The host's incremental reader gets it through a non-blocking pipe in pieces whose
 * size comes from the input (as a poll loop receives it: proto_fill, then proto_next until
 * no whole message is left, plain "done" messages parsed without a tree and checked against
 * the general parser); the blocking reader (proto_recv) reads the same bytes until
 * end of file. Every message read is handed to every typed parser; one that parses is built
 * again and must parse to the same message. Input: 1 byte of piece size, then the stream.
 */
#include <fcntl.h>

#include "../../host/worker/proto.c"
#include "fuzz.h"

/* Builds m's message again from what its parser read: it must parse back. */
#define AGAIN(build, parse, type, m)                                                           \
    do {                                                                                       \
        json_t *again = build(m);                                                              \
        type back;                                                                             \
        if (again == NULL || parse(again, &back, NULL, 0) != 0)                                \
            abort();                                                                           \
        json_decref(again);                                                                    \
    } while (0)

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static int same_json(const json_t *a, const json_t *b, const char *absent)
{
    json_t *d = json_loads(absent, JSON_DECODE_ANY, NULL);
    int same = json_equal(a ? a : d, b ? b : d);
    json_decref(d);
    return same;
}

/* The run message is written as text (proto_buf_run): what it carries comes back as it
 * was, every string byte for byte, whatever it holds (quotes, controls, any UTF-8). */
static void run_again(const struct proto_run *m)
{
    json_t *again = proto_build_run(m);
    struct proto_run b;
    if (again == NULL || proto_parse_run(again, &b, NULL, 0) != 0)
        abort();
    const struct attempt_spec *x = &m->spec, *y = &b.spec;
    if (b.id != m->id || b.deadline_ms != m->deadline_ms || !same_str(x->plugin, y->plugin) ||
        !same_str(x->function, y->function) || !same_str(x->pre_hook, y->pre_hook) ||
        !same_str(x->post_hook, y->post_hook) || !same_str(x->hook_dir, y->hook_dir) ||
        !same_str(x->ssh_key, y->ssh_key) || !same_str(x->task_id, y->task_id) ||
        x->attempt != y->attempt || x->depth != y->depth || x->timeout_ms != y->timeout_ms ||
        !same_json(x->params, y->params, "{}") || !same_json(x->config, y->config, "{}") ||
        !same_json(x->machine, y->machine, "null"))
        abort();
    json_decref(again);
}

static void typed(const json_t *msg)
{
    union proto_msg u;
    char err[256];
    if (proto_parse_run(msg, &u.run, err, sizeof(err)) == 0)
        run_again(&u.run);
    if (proto_parse_reply(msg, &u.reply, err, sizeof(err)) == 0)
        AGAIN(proto_build_reply, proto_parse_reply, struct proto_reply, &u.reply);
    if (proto_parse_log(msg, &u.log, err, sizeof(err)) == 0)
        AGAIN(proto_build_log, proto_parse_log, struct proto_log, &u.log);
    if (proto_parse_progress(msg, &u.progress, err, sizeof(err)) == 0)
        AGAIN(proto_build_progress, proto_parse_progress, struct proto_progress, &u.progress);
    if (proto_parse_call(msg, &u.call, err, sizeof(err)) == 0)
        AGAIN(proto_build_call, proto_parse_call, struct proto_call, &u.call);
    if (proto_parse_storage(msg, &u.storage, err, sizeof(err)) == 0)
        AGAIN(proto_build_storage, proto_parse_storage, struct proto_storage, &u.storage);
    if (proto_parse_pgroup(msg, &u.pgroup, err, sizeof(err)) == 0)
        AGAIN(proto_build_pgroup, proto_parse_pgroup, struct proto_pgroup, &u.pgroup);
    if (proto_parse_exit(msg, &u.exit, err, sizeof(err)) == 0)
        AGAIN(proto_build_exit, proto_parse_exit, struct proto_exit, &u.exit);
    if (proto_parse_done(msg, &u.done, err, sizeof(err)) == 0)
        AGAIN(proto_build_done, proto_parse_done, struct proto_done, &u.done);
    if (proto_parse_probe(msg, &u.probe, err, sizeof(err)) == 0)
        AGAIN(proto_build_probe, proto_parse_probe, struct proto_probe, &u.probe);
    if (proto_parse_skip(msg, &u.skip, err, sizeof(err)) == 0)
        AGAIN(proto_build_skip, proto_parse_skip, struct proto_skip, &u.skip);
}

static void incremental(const uint8_t *data, size_t size, size_t piece)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        abort();
    proto_reader r = {0};
    int broken = 0, eof = 0;
    size_t off = 0;
    while (!broken && !eof) {
        size_t n = size - off < piece ? size - off : piece;
        if (n > 0 && write(fds[1], data + off, n) != (ssize_t)n)
            abort();
        off += n;
        if (off == size && fds[1] >= 0) {
            close(fds[1]);
            fds[1] = -1;
        }
        eof = proto_fill(&r, fds[0]) < 0;
        json_t *msg;
        struct proto_done fast;
        for (;;) {
            /* The frame's text, to check a plain done parsed without a tree against the
             * general parser. */
            size_t len = r.len >= 4 ? get_len(r.buf) : 0;
            json_t *ref = r.len >= 4 && len <= PROTO_MAX_MESSAGE && r.len >= len + 4
                              ? json_loadb(r.buf + 4, len, JSON_DECODE_ANY, NULL)
                              : NULL;
            int plain = proto_next_done(&r, &msg, &fast, &broken);
            if (plain) {
                struct proto_done slow;
                if (ref == NULL || proto_parse_done(ref, &slow, NULL, 0) != 0 ||
                    slow.id != fast.id || slow.kind != fast.kind || slow.result || slow.code ||
                    slow.message || slow.duration_ms != fast.duration_ms ||
                    slow.retire != fast.retire || slow.stderr_drained != fast.stderr_drained ||
                    slow.skipped != fast.skipped)
                    abort();
            }
            json_decref(ref);
            if (!plain && msg == NULL)
                break;
            if (msg)
                typed(msg);
            json_decref(msg);
        }
    }
    if (fds[1] >= 0)
        close(fds[1]);
    close(fds[0]);
    proto_reader_free(&r);
}

static void blocking(const uint8_t *data, size_t size)
{
    int fds[2];
    if (size > 60000 || pipe2(fds, O_CLOEXEC) != 0) /* the pipe holds it all */
        return;
    if (size > 0 && write(fds[1], data, size) != (ssize_t)size)
        abort();
    close(fds[1]);
    json_t *msg;
    while ((msg = proto_recv(fds[0])) != NULL)
        json_decref(msg);
    close(fds[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t piece = (size_t)fuzz_take(&data, &size, 1) * 64 + 1;
    incremental(data, size, piece);
    blocking(data, size);
    return 0;
}
