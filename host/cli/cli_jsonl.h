/* One JSON line, parsed fast when it is plain (cli_jsonl.c). */
#ifndef FERRY_CLI_JSONL_H
#define FERRY_CLI_JSONL_H

#include <jansson.h>

/* json_loadb(buf, len, flags, err), the same value or the same error: a plain object line is
 * built without jansson's parser. */
json_t *cli_jsonl_parse(const char *buf, size_t len, size_t flags, json_error_t *err);

/* The fast path alone: the object of a plain line (cli_jsonl.c says which are), else NULL. */
json_t *cli_jsonl_plain(const char *buf, size_t len);

#endif
