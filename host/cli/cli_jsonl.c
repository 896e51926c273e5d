/*
 * One JSON line parsed without jansson's parser when the line is plain (create queue-items,
 * issue 14 point 7). jansson spent about 20,000 instructions on a line of 100 bytes, four
 * times what building the same values costs, and a fifth of a bulk create's instructions.
 *
 * The fast path takes a top-level object made only of objects, arrays, strings of printable
 * ASCII without escapes, integers of at most 18 digits, true, false and null, nested at most
 * MAX_DEPTH deep, with no key twice in one object. Anything else, and every malformed line,
 * goes to json_loadb with the caller's flags: the values and the messages are then jansson's
 * own, and for a plain line they are the same values jansson would build (same types, same
 * key order). tests/unit/test_jsonl.c holds the two side by side.
 */
#include <stdint.h>
#include <string.h>

#include "cli_jsonl.h"

#define MAX_DEPTH  32
#define MAX_DIGITS 18

struct cursor {
    const char *s, *end;
    int depth;
};

static void skip_ws(struct cursor *c)
{
    while (c->s < c->end && (*c->s == ' ' || *c->s == '\t' || *c->s == '\n' || *c->s == '\r'))
        c->s++;
}

/* At '"': a string of printable ASCII without '\', its start and length. 0, or -1. */
static int plain_string(struct cursor *c, const char **start, size_t *len)
{
    const char *q = c->s + 1;
    while (q < c->end && *q != '"') {
        unsigned char ch = (unsigned char)*q;
        if (ch < 0x20 || ch > 0x7e || ch == '\\')
            return -1;
        q++;
    }
    if (q == c->end)
        return -1;
    *start = c->s + 1;
    *len = (size_t)(q - *start);
    c->s = q + 1;
    return 0;
}

static int is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static json_t *value(struct cursor *c);

static json_t *object(struct cursor *c)
{
    json_t *obj = json_object();
    c->s++; /* '{' */
    skip_ws(c);
    if (c->s < c->end && *c->s == '}') {
        c->s++;
        return obj;
    }
    for (;;) {
        const char *key;
        size_t len;
        if (c->s == c->end || *c->s != '"' || plain_string(c, &key, &len) != 0)
            break;
        if (json_object_getn(obj, key, len) != NULL)
            break; /* a duplicate: jansson's word on it */
        skip_ws(c);
        if (c->s == c->end || *c->s != ':')
            break;
        c->s++;
        skip_ws(c);
        json_t *v = value(c);
        if (v == NULL)
            break;
        json_object_setn_new_nocheck(obj, key, len, v);
        skip_ws(c);
        if (c->s == c->end)
            break;
        if (*c->s == '}') {
            c->s++;
            return obj;
        }
        if (*c->s != ',')
            break;
        c->s++;
        skip_ws(c);
    }
    json_decref(obj);
    return NULL;
}

static json_t *array(struct cursor *c)
{
    json_t *arr = json_array();
    c->s++; /* '[' */
    skip_ws(c);
    if (c->s < c->end && *c->s == ']') {
        c->s++;
        return arr;
    }
    for (;;) {
        json_t *v = value(c);
        if (v == NULL)
            break;
        json_array_append_new(arr, v);
        skip_ws(c);
        if (c->s == c->end)
            break;
        if (*c->s == ']') {
            c->s++;
            return arr;
        }
        if (*c->s != ',')
            break;
        c->s++;
        skip_ws(c);
    }
    json_decref(arr);
    return NULL;
}

/* An integer without a leading zero (but 0 itself), a sign only for a non-zero one, and no
 * fraction or exponent after it. */
static json_t *integer(struct cursor *c)
{
    const char *q = c->s;
    int negative = *q == '-';
    if (negative)
        q++;
    const char *digits = q;
    while (q < c->end && *q >= '0' && *q <= '9' && q - digits <= MAX_DIGITS)
        q++;
    size_t count = (size_t)(q - digits);
    if (count == 0 || count > MAX_DIGITS || (digits[0] == '0' && (count > 1 || negative)))
        return NULL;
    int64_t n = 0;
    for (const char *d = digits; d < q; d++)
        n = n * 10 + (*d - '0');
    if (q < c->end && (*q == '.' || *q == 'e' || *q == 'E' || (*q >= '0' && *q <= '9')))
        return NULL;
    c->s = q;
    return json_integer(negative ? -n : n);
}

static json_t *word(struct cursor *c, const char *w, json_t *v)
{
    size_t len = strlen(w);
    if ((size_t)(c->end - c->s) < len || memcmp(c->s, w, len) != 0 ||
        (c->s + len < c->end && is_alpha(c->s[len])))
        return NULL;
    c->s += len;
    return v;
}

static json_t *value(struct cursor *c)
{
    if (c->s == c->end)
        return NULL;
    json_t *v = NULL;
    if (++c->depth > MAX_DEPTH) {
        c->depth--;
        return NULL;
    }
    switch (*c->s) {
    case '{':
        v = object(c);
        break;
    case '[':
        v = array(c);
        break;
    case '"': {
        const char *start;
        size_t len;
        if (plain_string(c, &start, &len) == 0)
            v = json_stringn_nocheck(start, len);
        break;
    }
    case 't':
        v = word(c, "true", json_true());
        break;
    case 'f':
        v = word(c, "false", json_false());
        break;
    case 'n':
        v = word(c, "null", json_null());
        break;
    default:
        if (*c->s == '-' || (*c->s >= '0' && *c->s <= '9'))
            v = integer(c);
    }
    c->depth--;
    return v;
}

json_t *cli_jsonl_plain(const char *buf, size_t len)
{
    struct cursor c = {buf, buf + len, 0};
    skip_ws(&c);
    if (c.s == c.end || *c.s != '{')
        return NULL;
    json_t *obj = object(&c);
    skip_ws(&c);
    if (obj != NULL && c.s == c.end)
        return obj;
    json_decref(obj);
    return NULL;
}

json_t *cli_jsonl_parse(const char *buf, size_t len, size_t flags, json_error_t *err)
{
    json_t *obj = NULL;
    if ((flags & ~(size_t)(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)) == 0)
        obj = cli_jsonl_plain(buf, len);
    return obj ? obj : json_loadb(buf, len, flags, err);
}
