/* ferry: one binary; `ferry serve` is the host, every other command is the client. */
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "priv.h"
#include "worker.h"

int main(int argc, char **argv)
{
    /* Every file and directory ferry makes is private from birth: the store and its -wal
     * and -shm, var/, keys, caches (docs/security.md). Commands that functions run inherit
     * it too, as under the shipped unit's UMask=0077. */
    umask(077);
    /* Workers are this same program started by the runner; they skip the CLI. libcurl and
     * libpq are loaded by their first call (host/base/lazy_lib.h), in whichever needs them. */
    if (argc > 1 && strcmp(argv[1], WORKER_ARGV1) == 0)
        worker_process_main(argc, argv);
    /* The privileged helper (docs/security.md): a short code path of its own, no CLI. */
    if (argc > 1 && strcmp(argv[1], PRIV_ARGV1) == 0)
        priv_main(argc, argv);
    return cli_main(argc, argv);
}
