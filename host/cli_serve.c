/* The host command: ferry serve. */
#include "cli.h"
#include "serve.h"

static int cmd_serve(cli *c)
{
    if (cli_config(c) != 0)
        return EXIT_ERROR;
    serve_options so = {.drain = cli_flag(c, "drain")};
    return serve_run(&c->cfg, &so) == 0 ? EXIT_OK : EXIT_ERROR;
}

static const cli_opt serve_opts[] = {
    {"drain", 0, NULL, 0, "exit once this bridge has nothing left to run"},
    {NULL, 0, NULL, 0, NULL},
};

const cli_command cli_serve_commands[] = {
    {"serve", NULL, NULL, 0, 0, serve_opts, cmd_serve,
     "run the host: claim this bridge's queue items and run them in workers"},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL},
};
