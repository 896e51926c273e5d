/*
 * Fuzzes the worker protocol readers (host/worker/proto.c): the input is what a worker wrote on its
 * socket. The host's incremental reader gets it through a non-blocking pipe in pieces whose
 * size comes from the input (as a poll loop receives it: proto_fill, then proto_next until
 * no whole message is left); the blocking reader (proto_recv) reads the same bytes until
 * end of file. Input: 1 byte of piece size, then the stream.
 */
#include <fcntl.h>

#include "../../host/worker/proto.c"
#include "fuzz.h"

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
        while ((msg = proto_next(&r, &broken)) != NULL)
            json_decref(msg);
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
