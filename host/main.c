/* ferry: one binary; `ferry serve` is the host, every other command is the client. */
#include <curl/curl.h>

#include <string.h>

#include "cli.h"
#include "worker.h"

int main(int argc, char **argv)
{
    /* Workers are this same program started by the runner; they skip the CLI. */
    if (argc > 1 && strcmp(argv[1], WORKER_ARGV1) == 0)
        worker_process_main(argc, argv);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cli_main(argc, argv);
    curl_global_cleanup();
    return rc;
}
