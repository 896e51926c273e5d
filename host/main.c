/* ferry: one binary; `ferry serve` is the host, every other command is the client. */
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "priv.h"
#include "util.h"
#include "worker.h"

int main(int argc, char **argv)
{
    /* Every file and directory ferry makes is private from birth: the store and its -wal
     * and -shm, var/, keys, caches (docs/security.md). Commands that functions run inherit
     * it too, as under the shipped unit's UMask=0077. */
    umask(077);
    /* jansson's hash seed, from the random bytes every create draws anyway (its ids):
     * jansson would open and read /dev/urandom at the first JSON object, three system
     * calls of every command. Before any JSON object, as jansson asks. */
    size_t seed;
    random_bytes(&seed, sizeof(seed));
    json_object_seed(seed);
    /* Workers are this same program started by the runner; they skip the CLI. libcurl and
     * libpq are loaded by their first call (host/base/lazy_lib.h), in whichever needs them. */
    if (argc > 1 && strcmp(argv[1], WORKER_ARGV1) == 0)
        worker_process_main(argc, argv);
    /* The privileged helper (docs/security.md): a short code path of its own, no CLI. */
    if (argc > 1 && strcmp(argv[1], PRIV_ARGV1) == 0)
        priv_main(argc, argv);
    return cli_main(argc, argv);
}
