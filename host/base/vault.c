/* Vaults: parsing with comments, merge patch, secret redaction, host keys, parameters. */
#include "vault.h"
#include "util.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * jansson's iteration macros take a non-const json_t * although they only read. Every use
 * of this cast below iterates or reads; nothing writes through it.
 */
static json_t *readonly(const json_t *value)
{
    return (json_t *)value;
}

/* A phrase for messages ("an object", ...); returns a static string. value is borrowed. */
const char *vault_type_phrase(const json_t *value)
{
    switch (value == NULL ? -1 : (int)json_typeof(value)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    default:
        return "nothing";
    }
}

/*
 * Copies s into out (outlen > 4) for quoting in a one-line message: control characters and
 * quotes become escapes, and a long value is cut with "...", so that user input can neither
 * break the line nor flood it.
 */
static void quote_for_message(const char *s, char *out, size_t outlen)
{
    size_t j = 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        char piece[8];
        if (c < 0x20 || c == 0x7f)
            snprintf(piece, sizeof(piece), "\\x%02x", c);
        else if (c == '"' || c == '\\')
            snprintf(piece, sizeof(piece), "\\%c", c);
        else
            snprintf(piece, sizeof(piece), "%c", c);
        size_t n = strlen(piece);
        if (j + n + 4 > outlen) {
            memcpy(out + j, "...", 3);
            j += 3;
            break;
        }
        memcpy(out + j, piece, n);
        j += n;
    }
    out[j] = '\0';
}

/* ---- Parsing ----------------------------------------------------------------------------- */

/*
 * Replaces every `#` comment outside strings, up to the end of its line, with spaces. The
 * byte count stays the same, so offsets into the blanked text are offsets into the original.
 */
static void blank_comments(char *s, size_t len)
{
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        if (in_string) {
            if (s[i] == '\\' && i + 1 < len)
                i++;
            else if (s[i] == '"' || s[i] == '\n')
                in_string = 0; /* a raw newline ends the string for jansson too: an error */
        } else if (s[i] == '"') {
            in_string = 1;
        } else if (s[i] == '#') {
            while (i < len && s[i] != '\n')
                s[i++] = ' ';
        }
    }
}

static int only_whitespace(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return 0;
    return 1;
}

/* Line and column (both from 1, columns in UTF-8 code points) of a byte offset in text. */
static void text_position(const char *text, size_t offset, int *line, int *column)
{
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < offset; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n') {
            (*line)++;
            *column = 1;
        } else if ((c & 0xC0) != 0x80) {
            (*column)++;
        }
    }
}

/*
 * Where a jansson error starts, as a byte offset into the text it parsed. jansson reports the
 * position just past the token it stopped at, and names that token ("near '\"b\"'") when it
 * is at most 20 bytes long; the token's start is what a reader wants to be pointed at. A long
 * string token is found by scanning back to its opening quote. Returns -1 when the position
 * is not usable, so that the caller falls back to jansson's own line and column.
 */
static long error_offset(const char *parsed, size_t len, const json_error_t *jerr)
{
    if (jerr->position < 0 || (size_t)jerr->position > len)
        return -1;
    size_t pos = (size_t)jerr->position;
    const char *near = strstr(jerr->text, " near '");
    size_t textlen = strlen(jerr->text);
    if (near != NULL && textlen > 0 && jerr->text[textlen - 1] == '\'') {
        const char *token = near + strlen(" near '");
        size_t toklen = (size_t)(jerr->text + textlen - 1 - token);
        if (toklen <= pos && memcmp(parsed + pos - toklen, token, toklen) == 0)
            return (long)(pos - toklen);
    }
    if (strstr(jerr->text, "near end of file") != NULL || pos == 0)
        return (long)pos;
    size_t last = pos - 1;
    if (parsed[last] == '"' && last > 0) {
        for (size_t i = last; i-- > 0;) {
            if (parsed[i] == '\n')
                break;
            if (parsed[i] != '"')
                continue;
            size_t slashes = 0;
            while (slashes < i && parsed[i - 1 - slashes] == '\\')
                slashes++;
            if (slashes % 2 == 0)
                return (long)i;
        }
    }
    return (long)last;
}

/*
 * Parses a vault, `#` comments allowed (contract in vault.h). Returns a new reference the
 * caller releases, or NULL with err set. The text is read, never kept; comments are blanked
 * in a private copy so that jansson's positions stay offsets into the caller's text.
 */
json_t *vault_parse(const char *text, size_t len, size_t max_bytes, char *err, size_t errlen)
{
    json_t *vault = NULL;
    char *copy = NULL;
    const char *nul;
    int line, column;

    if (text == NULL)
        len = 0;
    if (max_bytes > 0 && len > max_bytes) {
        seterr(err, errlen,
               "vault is %zu bytes; the limit is %zu bytes (vault.max_bytes in the config)", len,
               max_bytes);
        goto out;
    }
    if (len > 0 && (nul = memchr(text, '\0', len)) != NULL) {
        text_position(text, (size_t)(nul - text), &line, &column);
        seterr(err, errlen, "vault holds a NUL byte at line %d, column %d; a vault is JSON text",
               line, column);
        goto out;
    }
    copy = malloc(len + 1);
    if (copy == NULL) {
        seterr(err, errlen, "out of memory reading a vault of %zu bytes", len);
        goto out;
    }
    if (len > 0)
        memcpy(copy, text, len);
    copy[len] = '\0';
    blank_comments(copy, len);
    if (only_whitespace(copy, len)) {
        seterr(err, errlen,
               "vault is empty; it must be a JSON object such as {\"function\": \"repo_push\"}");
        goto out;
    }

    json_error_t jerr;
    vault = json_loadb(copy, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (vault == NULL) {
        long offset = error_offset(copy, len, &jerr);
        if (offset >= 0) {
            text_position(text, (size_t)offset, &line, &column);
        } else {
            line = jerr.line;
            column = jerr.column;
        }
        seterr(err, errlen, "invalid JSON in vault at line %d, column %d: %s", line, column,
               jerr.text);
        goto out;
    }
    if (!json_is_object(vault)) {
        seterr(err, errlen, "vault must be a JSON object, got %s", vault_type_phrase(vault));
        json_decref(vault);
        vault = NULL;
    }
out:
    free(copy);
    return vault;
}

/* ---- Merge patch (RFC 7396) -------------------------------------------------------------- */

/*
 * RFC 7396 MergePatch(target, patch), written as the RFC's pseudo-code but on copies:
 * returns a new reference, and target and patch (both borrowed) are left as they were.
 */
json_t *json_merge_patch(const json_t *target, const json_t *patch)
{
    if (patch == NULL)
        return NULL;
    if (!json_is_object(patch))
        return json_deep_copy(patch);

    json_t *result = json_is_object(target) ? json_deep_copy(target) : json_object();
    if (result == NULL)
        return NULL;
    const char *name;
    json_t *value;
    json_object_foreach(readonly(patch), name, value)
    {
        if (json_is_null(value)) {
            json_object_del(result, name);
            continue;
        }
        json_t *merged = json_merge_patch(json_object_get(result, name), value);
        if (json_object_set_new(result, name, merged) != 0) {
            json_decref(result);
            return NULL;
        }
    }
    return result;
}

/* ---- Secrets ----------------------------------------------------------------------------- */

/* Secret by the whole (normalised) name. */
static const char *const secret_exact[] = {
    "password", "passwd", "passphrase", "secret", "token", "key", "credentials", "apikey",
};
/* Secret by ending; covers api_key, access_key, secret_key, private_key, ssh_private_key. */
static const char *const secret_suffixes[] = {
    "_password", "_passwd", "_passphrase", "_secret", "_token", "_key", "_credentials",
};
/* Names that end like secrets but are identifiers everybody may read. */
static const char *const not_secret_exact[] = {
    "sort_key", "partition_key", "primary_key", "foreign_key", "hash_key", "range_key", "cache_key",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* Lower-cases key into out (room for 2 * strlen(key) + 1), reading '-', '.' and ' ' as '_'
 * and putting '_' at camelCase boundaries ("sshPrivateKey", "SSHPrivateKey"). */
static void normalize_key(const char *key, char *out)
{
    size_t j = 0;
    for (size_t i = 0; key[i] != '\0'; i++) {
        unsigned char c = (unsigned char)key[i];
        unsigned char prev = i > 0 ? (unsigned char)key[i - 1] : 0;
        unsigned char next = (unsigned char)key[i + 1];
        if (isupper(c) && i > 0 &&
            (islower(prev) || isdigit(prev) || (isupper(prev) && islower(next))))
            out[j++] = '_';
        if (c == '-' || c == '.' || c == ' ')
            out[j++] = '_';
        else
            out[j++] = (char)tolower(c);
    }
    out[j] = '\0';
}

/* Non-zero when key names a secret by the rules listed in vault.h; key is only read. */
int vault_key_is_secret(const char *key)
{
    if (key == NULL)
        return 0;
    char small[256];
    size_t len = strlen(key);
    char *name = 2 * len + 1 <= sizeof(small) ? small : malloc(2 * len + 1);
    if (name == NULL)
        return 1; /* cannot tell: hiding a value is the safe mistake */
    normalize_key(key, name);
    len = strlen(name);

    int secret = 0;
    for (size_t i = 0; i < COUNT(secret_exact) && !secret; i++)
        secret = strcmp(name, secret_exact[i]) == 0;
    for (size_t i = 0; i < COUNT(secret_suffixes) && !secret; i++)
        secret = ends_with(name, len, secret_suffixes[i]);
    if (secret && ends_with(name, len, "public_key"))
        secret = 0;
    for (size_t i = 0; i < COUNT(not_secret_exact) && secret; i++)
        secret = strcmp(name, not_secret_exact[i]) != 0;

    if (name != small)
        free(name);
    return secret;
}

/* Secret by its name or because the function's descriptor lists it (compared ignoring case,
 * so that a descriptor's "api_token" also hides "API_TOKEN"). */
int vault_key_is_secret_in(const char *key, const json_t *secret_names)
{
    if (vault_key_is_secret(key))
        return 1;
    size_t i;
    json_t *name;
    json_array_foreach(secret_names, i, name)
    {
        if (json_is_string(name) && strcasecmp(json_string_value(name), key) == 0)
            return 1;
    }
    return 0;
}

/*
 * Deep copy with secret values replaced by VAULT_REDACTED. Returns a new reference; vault and
 * secret_names are borrowed and not modified.
 */
json_t *vault_redact(const json_t *vault, const json_t *secret_names)
{
    if (vault == NULL)
        return NULL;
    if (json_is_object(vault)) {
        json_t *copy = json_object();
        const char *key;
        json_t *value;
        json_object_foreach(readonly(vault), key, value)
        {
            json_t *redacted = vault_key_is_secret_in(key, secret_names) && !json_is_null(value)
                                   ? json_string(VAULT_REDACTED)
                                   : vault_redact(value, secret_names);
            if (json_object_set_new(copy, key, redacted) != 0) {
                json_decref(copy);
                return NULL;
            }
        }
        return copy;
    }
    if (json_is_array(vault)) {
        json_t *copy = json_array();
        size_t i;
        json_t *value;
        json_array_foreach(vault, i, value)
        {
            if (json_array_append_new(copy, vault_redact(value, secret_names)) != 0) {
                json_decref(copy);
                return NULL;
            }
        }
        return copy;
    }
    return json_deep_copy(vault);
}

/* The secret strings redact_text() looks for, longest first once sorted. */
struct secret_list {
    char **items;
    size_t count, cap;
};

/* Out of memory while collecting secrets cannot return the text unredacted, and the callers
 * (log lines, error paths) have no better answer either: stop, like xstrdup does. */
static void *must(void *p)
{
    if (p == NULL)
        abort();
    return p;
}

static void secrets_add(struct secret_list *list, const char *s)
{
    if (strlen(s) < VAULT_REDACT_MIN_LEN)
        return;
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->items[i], s) == 0)
            return;
    if (list->count == list->cap) {
        list->cap = list->cap ? list->cap * 2 : 8;
        list->items = must(realloc(list->items, list->cap * sizeof(*list->items)));
    }
    list->items[list->count++] = xstrdup(s);
}

/* Adds s and, when it differs, s as it appears inside a JSON string ("a\"b" for a"b). */
static void secrets_add_with_escaped(struct secret_list *list, const char *s)
{
    secrets_add(list, s);
    json_t *str = must(json_string(s));
    char *dumped = must(json_dumps(str, JSON_ENCODE_ANY));
    size_t n = strlen(dumped);
    dumped[n - 1] = '\0'; /* drop the quotes around it */
    if (strcmp(dumped + 1, s) != 0)
        secrets_add(list, dumped + 1);
    free(dumped);
    json_decref(str);
}

/* Collects every string at or below value; under_secret says a secret key holds it. */
static void collect_secrets(const json_t *value, const json_t *secret_names, int under_secret,
                            struct secret_list *list)
{
    if (json_is_string(value) && under_secret) {
        secrets_add_with_escaped(list, json_string_value(value));
    } else if (json_is_object(value)) {
        const char *key;
        json_t *child;
        json_object_foreach(readonly(value), key, child)
        {
            int secret = under_secret || vault_key_is_secret_in(key, secret_names);
            collect_secrets(child, secret_names, secret, list);
        }
    } else if (json_is_array(value)) {
        size_t i;
        json_t *child;
        json_array_foreach(value, i, child)
        {
            collect_secrets(child, secret_names, under_secret, list);
        }
    }
}

static int longer_first(const void *a, const void *b)
{
    size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);
    return la < lb ? 1 : la > lb ? -1 : 0;
}

/* Copy of text (malloc'd) with every string of list (sorted longest first) replaced. */
static char *replace_secrets(const char *text, const struct secret_list *list)
{
    /* Every replacement turns at least VAULT_REDACT_MIN_LEN (4) bytes into 8, so the result
     * is at most twice as long as the text. */
    size_t len = strlen(text);
    char *out = must(malloc(2 * len + 1));
    size_t j = 0;
    for (size_t i = 0; i < len;) {
        size_t matched = 0;
        for (size_t k = 0; k < list->count && matched == 0; k++) {
            size_t n = strlen(list->items[k]);
            if (n <= len - i && text[i] == list->items[k][0] &&
                memcmp(text + i, list->items[k], n) == 0)
                matched = n;
        }
        if (matched > 0) {
            memcpy(out + j, VAULT_REDACTED, strlen(VAULT_REDACTED));
            j += strlen(VAULT_REDACTED);
            i += matched;
        } else {
            out[j++] = text[i++];
        }
    }
    out[j] = '\0';
    return out;
}

/* The vault's secret values, longest first (so that one containing another is replaced
 * whole). Free with secrets_free. */
static struct secret_list secrets_of(const json_t *vault, const json_t *secret_names)
{
    struct secret_list list = {0};
    collect_secrets(vault, secret_names, 0, &list);
    if (list.count > 0)
        qsort(list.items, list.count, sizeof(*list.items), longer_first);
    return list;
}

static void secrets_free(struct secret_list *list)
{
    for (size_t k = 0; k < list->count; k++)
        free(list->items[k]);
    free(list->items);
}

/*
 * Copy of text with the vault's secret values replaced. Returns a malloc'd string the caller
 * frees (NULL only for a NULL text); vault and secret_names are borrowed.
 */
char *redact_text(const char *text, const json_t *vault, const json_t *secret_names)
{
    if (text == NULL)
        return NULL;
    struct secret_list list = secrets_of(vault, secret_names);
    char *out = list.count ? replace_secrets(text, &list) : xstrdup(text);
    secrets_free(&list);
    return out;
}

/* Replaces, in place, every string of value (at any depth) that holds a secret of list.
 * value is vault_redact's copy: none of its strings is shared with the caller's JSON. */
static void scrub_strings(json_t *value, const struct secret_list *list)
{
    const char *key;
    json_t *child;
    size_t i;
    if (json_is_string(value)) {
        char *clean = replace_secrets(json_string_value(value), list);
        if (strcmp(clean, json_string_value(value)) != 0)
            json_string_set(value, clean);
        free(clean);
    } else if (json_is_object(value)) {
        json_object_foreach(value, key, child) scrub_strings(child, list);
    } else if (json_is_array(value)) {
        json_array_foreach(value, i, child) scrub_strings(child, list);
    }
}

/* A copy of value fit to show: secret keys redacted, the vault's secret values masked in
 * every string. New reference; everything given is borrowed. */
json_t *vault_scrub(const json_t *value, const json_t *vault, const json_t *secret_names)
{
    json_t *copy = vault_redact(value, secret_names);
    struct secret_list list = secrets_of(vault, secret_names);
    if (copy != NULL && list.count > 0)
        scrub_strings(copy, &list);
    secrets_free(&list);
    return copy;
}

/* ---- Host-owned keys --------------------------------------------------------------------- */

typedef int (*value_check_fn)(const char *path, const json_t *value, char *err, size_t errlen);

struct key_rule {
    const char *name;
    value_check_fn check;
};

/* Non-zero for [a-z][a-z0-9_]* of 1-64 characters; name is only read. */
int vault_is_function_name(const char *name)
{
    if (name == NULL || name[0] < 'a' || name[0] > 'z')
        return 0;
    size_t i;
    for (i = 1; name[i] != '\0'; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return i <= 64;
}

static int check_function_name(const char *path, const json_t *value, char *err, size_t errlen)
{
    if (!json_is_string(value)) {
        seterr(err, errlen,
               "vault key \"%s\" must be a string naming a queue function (see ferry functions), "
               "got %s",
               path, vault_type_phrase(value));
        return -1;
    }
    if (!vault_is_function_name(json_string_value(value))) {
        char quoted[80];
        quote_for_message(json_string_value(value), quoted, sizeof(quoted));
        seterr(err, errlen,
               "vault key \"%s\" is \"%s\"; a function name is up to 64 lowercase letters, "
               "digits and _, starting with a letter (see ferry functions)",
               path, quoted);
        return -1;
    }
    return 0;
}

/* An integer from min to max; `expected` says so in words for the message. */
static int check_integer(const char *path, const json_t *value, json_int_t min, json_int_t max,
                         const char *expected, char *err, size_t errlen)
{
    if (!json_is_integer(value)) {
        seterr(err, errlen, "vault key \"%s\" must be %s, got %s", path, expected,
               vault_type_phrase(value));
        return -1;
    }
    json_int_t n = json_integer_value(value);
    if (n < min || n > max) {
        seterr(err, errlen, "vault key \"%s\" must be %s, got %lld", path, expected, (long long)n);
        return -1;
    }
    return 0;
}

static int check_timeout(const char *path, const json_t *value, char *err, size_t errlen)
{
    return check_integer(path, value, 1, INT32_MAX, "a positive integer (seconds)", err, errlen);
}

static int check_max_retries(const char *path, const json_t *value, char *err, size_t errlen)
{
    return check_integer(path, value, 0, 100, "an integer from 0 to 100", err, errlen);
}

static int check_retry_delay(const char *path, const json_t *value, char *err, size_t errlen)
{
    return check_integer(path, value, 0, INT32_MAX, "an integer >= 0 (seconds)", err, errlen);
}

/* A machine group's item (docs/machines.md "Groups and fan-out"). */
static int check_max_parallel(const char *path, const json_t *value, char *err, size_t errlen)
{
    return check_integer(path, value, 1, 1000, "an integer from 1 to 1000", err, errlen);
}

static int check_bool(const char *path, const json_t *value, char *err, size_t errlen)
{
    if (json_is_boolean(value))
        return 0;
    seterr(err, errlen, "vault key \"%s\" must be true or false, got %s", path,
           vault_type_phrase(value));
    return -1;
}

static int check_string(const char *path, const json_t *value, char *err, size_t errlen)
{
    if (json_is_string(value))
        return 0;
    seterr(err, errlen, "vault key \"%s\" must be a string, got %s", path,
           vault_type_phrase(value));
    return -1;
}

static int check_tags(const char *path, const json_t *value, char *err, size_t errlen)
{
    if (json_is_object(value) || json_is_array(value) || json_is_string(value))
        return 0;
    seterr(err, errlen, "vault key \"%s\" must be an object, an array or a string, got %s", path,
           vault_type_phrase(value));
    return -1;
}

static int has_space_or_control(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* user@host.domain, lightly: one '@', something on both sides, a dot inside the domain. */
static int looks_like_email(const char *s)
{
    const char *at = strchr(s, '@');
    if (at == NULL || at == s || strchr(at + 1, '@') != NULL)
        return 0;
    const char *domain = at + 1;
    size_t n = strlen(domain);
    const char *dot = strchr(domain, '.');
    return n > 0 && dot != NULL && domain[0] != '.' && domain[n - 1] != '.';
}

/* http:// or https:// followed by a host. */
static int looks_like_url(const char *s)
{
    const char *host;
    if (strncasecmp(s, "https://", 8) == 0)
        host = s + 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        host = s + 7;
    else
        return 0;
    return host[0] != '\0' && host[0] != '/' && host[0] != '?' && host[0] != '#';
}

static int check_notify(const char *path, const json_t *value, char *err, size_t errlen)
{
    static const char expected[] = "an email address, an http(s) URL or an array of them";
    if (json_is_array(value)) {
        size_t i;
        json_t *item;
        json_array_foreach(value, i, item)
        {
            if (!json_is_string(item)) {
                seterr(err, errlen, "vault key \"%s\" must be %s, got an array holding %s", path,
                       expected, vault_type_phrase(item));
                return -1;
            }
            if (check_notify(path, item, err, errlen) != 0)
                return -1;
        }
        return 0;
    }
    if (!json_is_string(value)) {
        seterr(err, errlen, "vault key \"%s\" must be %s, got %s", path, expected,
               vault_type_phrase(value));
        return -1;
    }
    const char *s = json_string_value(value);
    if (!has_space_or_control(s) && (looks_like_email(s) || looks_like_url(s)))
        return 0;
    char quoted[80];
    quote_for_message(s, quoted, sizeof(quoted));
    seterr(err, errlen, "vault key \"%s\" has \"%s\"; expected %s", path, quoted, expected);
    return -1;
}

/* Checks an object's keys against rules: each known key by its rule, an unknown key refused
 * with the list of known ones. path is the object's own name, for messages. */
static int check_object(const char *path, const json_t *value, const struct key_rule *rules,
                        size_t nrules, char *err, size_t errlen)
{
    char known[128] = "";
    for (size_t r = 0; r < nrules; r++) {
        size_t used = strlen(known);
        snprintf(known + used, sizeof(known) - used, "%s%s",
                 r == 0            ? ""
                 : r + 1 == nrules ? " and "
                                   : ", ",
                 rules[r].name);
    }
    if (!json_is_object(value)) {
        seterr(err, errlen, "vault key \"%s\" must be an object with %s, got %s", path, known,
               vault_type_phrase(value));
        return -1;
    }
    const char *key;
    json_t *child;
    json_object_foreach(readonly(value), key, child)
    {
        size_t r = 0;
        while (r < nrules && strcmp(rules[r].name, key) != 0)
            r++;
        if (r == nrules) {
            char quoted[80];
            quote_for_message(key, quoted, sizeof(quoted));
            seterr(err, errlen, "vault key \"%s\" has an unknown key \"%s\"; it takes %s", path,
                   quoted, known);
            return -1;
        }
        char child_path[96];
        snprintf(child_path, sizeof(child_path), "%s.%s", path, key);
        if (rules[r].check(child_path, child, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static const struct key_rule on_failure_rules[] = {
    {"notify", check_notify},
    {"fallback_function", check_function_name},
    {"webhook_secret", check_string},
};

static const struct key_rule on_success_rules[] = {
    {"notify", check_notify},
    {"webhook_secret", check_string},
};

static int check_on_failure(const char *path, const json_t *value, char *err, size_t errlen)
{
    return check_object(path, value, on_failure_rules, COUNT(on_failure_rules), err, errlen);
}

static int check_on_success(const char *path, const json_t *value, char *err, size_t errlen)
{
    return check_object(path, value, on_success_rules, COUNT(on_success_rules), err, errlen);
}

/* The keys of a queue item vault that the host reads itself; one line per key. */
static const struct key_rule host_key_rules[] = {
    {"function", check_function_name},  {"timeout", check_timeout},
    {"max_retries", check_max_retries}, {"retry_delay", check_retry_delay},
    {"on_failure", check_on_failure},   {"on_success", check_on_success},
    {"description", check_string},      {"tags", check_tags},
    {"pre_hook", check_string},         {"post_hook", check_string},
    {"max_parallel", check_max_parallel}, {"stop_on_failure", check_bool},
};

/* Non-zero when key is one of host_key_rules above; key is only read. */
int vault_is_host_key(const char *key)
{
    if (key == NULL)
        return 0;
    for (size_t r = 0; r < COUNT(host_key_rules); r++)
        if (strcmp(host_key_rules[r].name, key) == 0)
            return 1;
    return 0;
}

/*
 * Checks the host-owned keys by host_key_rules. Returns 0, or -1 with err set. vault is
 * borrowed and not modified.
 */
int vault_check_host_keys(const json_t *vault, char *err, size_t errlen)
{
    if (!json_is_object(vault)) {
        seterr(err, errlen, "vault must be a JSON object, got %s", vault_type_phrase(vault));
        return -1;
    }
    if (json_object_get(vault, "function") == NULL) {
        seterr(err, errlen,
               "vault has no \"function\" key; add \"function\": \"<name>\" (see ferry functions)");
        return -1;
    }
    for (size_t r = 0; r < COUNT(host_key_rules); r++) {
        const json_t *value = json_object_get(vault, host_key_rules[r].name);
        if (value != NULL &&
            host_key_rules[r].check(host_key_rules[r].name, value, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* ---- Function parameters ----------------------------------------------------------------- */

static int is_string_list(const json_t *value)
{
    if (json_is_string(value))
        return 1;
    if (!json_is_array(value))
        return 0;
    size_t i;
    json_t *item;
    json_array_foreach(value, i, item)
    {
        if (!json_is_string(item))
            return 0;
    }
    return 1;
}

static int type_string(const json_t *v)
{
    return json_is_string(v);
}
static int type_integer(const json_t *v)
{
    return json_is_integer(v);
}
static int type_number(const json_t *v)
{
    return json_is_number(v);
}
static int type_boolean(const json_t *v)
{
    return json_is_boolean(v);
}
static int type_object(const json_t *v)
{
    return json_is_object(v);
}
static int type_array(const json_t *v)
{
    return json_is_array(v);
}
static int type_any(const json_t *v)
{
    return v != NULL;
}

static const struct param_type {
    const char *name;
    const char *phrase;
    int (*matches)(const json_t *value);
} param_types[] = {
    {"string", "a string", type_string},
    {"integer", "an integer", type_integer},
    {"number", "a number", type_number},
    {"boolean", "a boolean", type_boolean},
    {"object", "an object", type_object},
    {"array", "an array", type_array},
    {"any", "any value", type_any},
    {"string_list", "a string or an array of strings", is_string_list},
};

static const struct param_type *param_type_named(const char *name)
{
    for (size_t i = 0; i < COUNT(param_types); i++)
        if (strcmp(param_types[i].name, name) == 0)
            return &param_types[i];
    return NULL;
}

/* What a value is, for "got ...": an array of strings that holds something else says what. */
static void describe_got(const json_t *value, char *out, size_t outlen)
{
    if (json_is_array(value)) {
        size_t i;
        json_t *item;
        json_array_foreach(value, i, item)
        {
            if (!json_is_string(item)) {
                snprintf(out, outlen, "an array holding %s", vault_type_phrase(item));
                return;
            }
        }
    }
    snprintf(out, outlen, "%s", vault_type_phrase(value));
}

/* One declared parameter, read from its descriptor entry. */
struct param {
    const char *name;
    const struct param_type *type;
    int required;
    const json_t *default_value; /* borrowed from the descriptor; NULL when there is none */
    const char *description;
};

static int read_param(const char *function_name, const json_t *entry, struct param *param,
                      char *err, size_t errlen)
{
    const char *type_name = json_string_value(json_object_get(entry, "type"));
    param->name = json_string_value(json_object_get(entry, "name"));
    if (param->name == NULL) {
        seterr(err, errlen, "function %s declares a parameter without a \"name\"", function_name);
        return -1;
    }
    param->type = param_type_named(type_name != NULL ? type_name : "any");
    if (param->type == NULL) {
        seterr(err, errlen, "function %s declares parameter \"%s\" with unknown type \"%s\"",
               function_name, param->name, type_name);
        return -1;
    }
    param->required = json_is_true(json_object_get(entry, "required"));
    param->default_value = json_object_get(entry, "default");
    if (json_is_null(param->default_value))
        param->default_value = NULL;
    param->description = json_string_value(json_object_get(entry, "description"));
    return 0;
}

/* Checks one parameter against the vault without changing it. */
static int check_param(const char *function_name, const struct param *param, const json_t *vault,
                       char *err, size_t errlen)
{
    const json_t *value = json_object_get(vault, param->name);
    if (value == NULL || json_is_null(value)) {
        if (param->default_value != NULL || !param->required)
            return 0;
        if (param->description != NULL && param->description[0] != '\0')
            seterr(err, errlen, "function %s needs parameter \"%s\" (%s): %s", function_name,
                   param->name, param->type->name, param->description);
        else
            seterr(err, errlen, "function %s needs parameter \"%s\" (%s)", function_name,
                   param->name, param->type->name);
        return -1;
    }
    if (param->type->matches(value))
        return 0;
    char got[64];
    describe_got(value, got, sizeof(got));
    seterr(err, errlen, "parameter \"%s\" of %s must be %s, got %s", param->name, function_name,
           param->type->phrase, got);
    return -1;
}

/*
 * Checks the vault's parameters against the descriptor, then inserts defaults (copies, owned
 * by the vault). Returns 0, or -1 with err set and the vault unchanged. function is borrowed;
 * vault is borrowed and modified in place.
 */
int params_validate(const json_t *function, json_t *vault, char *err, size_t errlen)
{
    const char *function_name = json_string_value(json_object_get(function, "name"));
    if (function_name == NULL)
        function_name = "(unnamed)";
    if (!json_is_object(vault)) {
        seterr(err, errlen, "vault must be a JSON object, got %s", vault_type_phrase(vault));
        return -1;
    }
    const json_t *params = json_object_get(function, "params");
    if (params == NULL)
        return 0;
    if (!json_is_array(params)) {
        seterr(err, errlen, "function %s: \"params\" must be an array, got %s", function_name,
               vault_type_phrase(params));
        return -1;
    }

    size_t i;
    json_t *entry;
    struct param param;
    /* First every check, then the defaults: a failed call leaves the vault as it was. */
    json_array_foreach(params, i, entry)
    {
        if (read_param(function_name, entry, &param, err, errlen) != 0)
            return -1;
        if (!vault_is_host_key(param.name) &&
            check_param(function_name, &param, vault, err, errlen) != 0)
            return -1;
    }
    json_array_foreach(params, i, entry)
    {
        read_param(function_name, entry, &param, NULL, 0);
        const json_t *value = json_object_get(vault, param.name);
        if (vault_is_host_key(param.name) || param.default_value == NULL ||
            (value != NULL && !json_is_null(value)))
            continue;
        if (json_object_set_new(vault, param.name, json_deep_copy(param.default_value)) != 0) {
            seterr(err, errlen, "out of memory setting parameter \"%s\" of %s", param.name,
                   function_name);
            return -1;
        }
    }
    return 0;
}

/* Names of the descriptor's secret parameters: a new reference to an array of strings;
 * function is borrowed. */
json_t *params_secret_names(const json_t *function)
{
    json_t *names = json_array();
    size_t i;
    json_t *entry;
    json_array_foreach(json_object_get(function, "params"), i, entry)
    {
        json_t *name = json_object_get(entry, "name");
        if (json_is_string(name) && json_is_true(json_object_get(entry, "secret")))
            json_array_append(names, name);
    }
    return names;
}

/* Edit distance (insertions, deletions, substitutions) between two keys; keys longer than
 * 64 bytes count as far from everything. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Keeps candidate in *best when it is nearer to key than the best so far. */
static void consider(const char *key, const char *candidate, const char **best, size_t *best_d)
{
    size_t d = candidate != NULL ? edit_distance(key, candidate) : SIZE_MAX;
    if (d < *best_d) {
        *best_d = d;
        *best = candidate;
    }
}

/* Unknown keys: the vault's top-level keys neither declared by the function nor owned by
 * the host, each with its nearest known key. function and vault are borrowed. */
json_t *params_unknown_keys(const json_t *function, const json_t *vault)
{
    json_t *unknown = json_array();
    const json_t *params = json_object_get(function, "params");
    const char *key;
    json_t *value;
    json_object_foreach(readonly(vault), key, value)
    {
        if (vault_is_host_key(key) || json_array_size(params) == 0)
            continue;
        int declared = 0;
        size_t i;
        json_t *entry;
        json_array_foreach(params, i, entry)
            declared |= json_is_string(json_object_get(entry, "name")) &&
                        strcmp(json_string_value(json_object_get(entry, "name")), key) == 0;
        if (declared)
            continue;
        const char *best = NULL;
        size_t best_d = SIZE_MAX;
        json_array_foreach(params, i, entry)
        {
            const char *name = json_string_value(json_object_get(entry, "name"));
            if (name != NULL)
                consider(key, name, &best, &best_d);
        }
        for (size_t r = 0; r < COUNT(host_key_rules); r++)
            consider(key, host_key_rules[r].name, &best, &best_d);
        json_array_append_new(unknown, json_pack("{s:s,s:s?}", "key", key, "closest", best));
    }
    return unknown;
}

