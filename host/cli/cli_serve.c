/* The host command: ferry serve. */
#include "cli.h"
#include "notify.h"
#include "serve.h"
#include "util.h"

#include <stdlib.h>

static int cmd_serve(cli *c)
{
    if (cli_config(c) != 0 || cli_store_library(c) != 0)
        return EXIT_ERROR;
    serve_options so = {.drain = cli_flag(c, "drain")};
    return serve_run(&c->cfg, &so) == 0 ? EXIT_OK : EXIT_ERROR;
}

static int cmd_notify_send(cli *c)
{
    if (cli_config(c) != 0)
        return EXIT_ERROR;
    char err[512];
    char *text = read_file_capped("-", 64u << 20, NULL, err, sizeof(err));
    json_t *request = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (!json_is_object(request))
        return cli_fail(c, EXIT_ERROR, "notify send reads {\"targets\":[…],\"body\":{…}} on stdin");
    notify_deliver_all(&c->cfg, request);
    json_decref(request);
    return EXIT_OK;
}

static int cmd_notify_test(cli *c)
{
    if (cli_config(c) != 0)
        return EXIT_ERROR;
    char err[1024];
    json_t *body = json_pack("{s:s,s:s}", "event", "ferry.test", "status", "TEST");
    int rc = notify_deliver(&c->cfg, c->args[0], body, err, sizeof(err));
    json_decref(body);
    if (rc != 0)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    if (c->json)
        cli_print_ok(c, json_null(), "delivered");
    else
        printf("delivered a test notification to %s\n", c->args[0]);
    return EXIT_OK;
}

static const cli_opt serve_opts[] = {
    {"drain", 0, NULL, 0, "exit once this bridge has nothing left to run"},
    {NULL, 0, NULL, 0, NULL},
};

const cli_command cli_serve_commands[] = {
    {"serve", NULL, NULL, 0, 0, serve_opts, cmd_serve,
     "run the host: claim this bridge's queue items and run them in workers"},
    {"notify", "test", "TARGET", 1, 1, serve_opts + 1, cmd_notify_test,
     "send a test notification to an email address or http(s) URL"},
    {"notify", "send", NULL, 0, 0, serve_opts + 1, cmd_notify_send,
     "deliver notifications read as JSON on stdin (the host runs this)"},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL},
};
