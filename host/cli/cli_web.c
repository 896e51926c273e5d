/* The web command: ferry web (host/web/web.h, docs/api.md). */
#include "cli.h"
#include "web.h"

static int cmd_web(cli *c)
{
    if (cli_config(c) != 0 || cli_store_library(c) != 0)
        return EXIT_ERROR;
    return web_run(&c->cfg, cli_opt_str(c, "listen")) == 0 ? EXIT_OK : EXIT_ERROR;
}

static const cli_opt web_opts[] = {
    {"listen", 0, "ADDR:PORT", 0, "listen here instead of web.listen (127.0.0.1:8642)"},
    {NULL, 0, NULL, 0, NULL},
};

const cli_command cli_web_commands[] = {
    {"web", NULL, NULL, 0, 0, web_opts, cmd_web,
     "serve the dashboard, the JSON API (docs/api.md), /metrics and /healthz"},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL},
};
