/*
 * Fuzzes the worker's reading of a run message without a JSON tree (proto_scan_run,
 * host/worker/proto.c): the input is the message's text. A text the scan takes must read
 * as proto_parse_run() reads the same text through jansson (params and config {} as absent,
 * the machine kept as text that parses to the same facts); a text it does not take must be
 * left byte for byte as it was, for the general way.
 */
#include "../../host/worker/proto.c"
#include "fuzz.h"

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* a (the scan's: NULL for {}) holds what b (the parser's) holds. */
static int same_obj(const json_t *a, const json_t *b)
{
    return a ? b && json_equal(a, b) : b == NULL || json_object_size(b) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_strndup(data, size);
    struct proto_run got;
    if (!proto_scan_run(text, size, &got)) {
        if (size && memcmp(text, data, size) != 0)
            abort();
        free(text);
        return 0;
    }
    json_t *tree = json_loadb((const char *)data, size, 0, NULL);
    struct proto_run ref;
    if (tree == NULL || proto_parse_run(tree, &ref, NULL, 0) != 0)
        abort();
    const struct attempt_spec *g = &got.spec, *r = &ref.spec;
    json_t *machine = g->machine_json ? json_loads(g->machine_json, 0, NULL) : NULL;
    if (got.id != ref.id || got.deadline_ms != ref.deadline_ms || !same_str(g->plugin, r->plugin) ||
        !same_str(g->function, r->function) || !same_str(g->pre_hook, r->pre_hook) ||
        !same_str(g->post_hook, r->post_hook) || !same_str(g->hook_dir, r->hook_dir) ||
        !same_str(g->ssh_key, r->ssh_key) || !same_str(g->task_id, r->task_id) ||
        g->attempt != r->attempt || g->depth != r->depth || g->timeout_ms != r->timeout_ms ||
        !same_obj(g->params, r->params) || !same_obj(g->config, r->config) ||
        g->machine != NULL || (g->machine_json != NULL) != (r->machine != NULL) ||
        (g->machine_json && (machine == NULL || !json_equal(machine, r->machine))))
        abort();
    json_decref(machine);
    json_decref((json_t *)g->params);
    json_decref((json_t *)g->config);
    json_decref(tree);
    free(text);
    return 0;
}
