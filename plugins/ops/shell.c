/* Helpers for running commands on the machine and reading what they print. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

json_t *ops_exec(ferry_ctx *ctx, const char *what, const char *command, const json_t *options)
{
    json_t *res = ferry_exec(ctx, command, options);
    if (res == NULL)
        return NULL;
    ferry_log(ctx, FERRY_LOG_DEBUG, "%s: exit %d in %lld ms", what, ops_exit_code(res),
              (long long)json_integer_value(json_object_get(res, "duration_ms")));
    return res;
}

int ops_exit_code(const json_t *res)
{
    const json_t *c = json_object_get(res, "exit_code");
    return json_is_integer(c) ? (int)json_integer_value(c) : -1;
}

const char *ops_output(const json_t *res)
{
    const char *s = json_string_value(json_object_get(res, "output"));
    return s ? s : "";
}

void ops_appendf(char **line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *add = NULL;
    if (vasprintf(&add, fmt, ap) < 0)
        abort();
    va_end(ap);
    size_t old = *line ? strlen(*line) : 0, n = strlen(add);
    char *grown = realloc(*line, old + n + 1);
    if (grown == NULL)
        abort();
    memcpy(grown + old, add, n + 1);
    *line = grown;
    free(add);
}

char *ops_shell_quote(const char *s)
{
    size_t quotes = 0;
    for (const char *c = s; *c; c++)
        quotes += *c == '\'';
    char *word = malloc(strlen(s) + quotes * 3 + 3);
    if (word == NULL)
        abort();
    char *w = word;
    *w++ = '\'';
    for (const char *c = s; *c; c++) {
        if (*c == '\'') {
            memcpy(w, "'\\''", 4);
            w += 4;
        } else {
            *w++ = *c;
        }
    }
    *w++ = '\'';
    *w = '\0';
    return word;
}

void ops_append_word(char **line, const char *s)
{
    char *word = ops_shell_quote(s);
    ops_appendf(line, " %s", word);
    free(word);
}

json_t *ops_tail(const char *text, size_t max)
{
    size_t len = text ? strlen(text) : 0;
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        len--;
    size_t start = len > max ? len - max : 0;
    /* Do not cut a UTF-8 sequence in half: jansson refuses invalid UTF-8. */
    while (start < len && ((unsigned char)text[start] & 0xC0) == 0x80)
        start++;
    json_t *s = json_stringn(text ? text + start : "", len - start);
    return s ? s : json_string("(output is not valid UTF-8)");
}

int ops_parse_number(const char *text, double *value)
{
    if (text == NULL)
        return -1;
    while (isspace((unsigned char)*text))
        text++;
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || errno != 0 || !isfinite(v))
        return -1;
    *value = v;
    return 0;
}
