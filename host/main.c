/* ferry: one binary; `ferry serve` is the host, every other command is the client. */
#include <curl/curl.h>

#include "cli.h"

int main(int argc, char **argv)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cli_main(argc, argv);
    curl_global_cleanup();
    return rc;
}
