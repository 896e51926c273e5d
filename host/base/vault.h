/*
 * Vaults: the JSON objects that carry a queue item's function and parameters, a machine's
 * connection details, a schedule's settings. This module parses them (with `#` comments),
 * merges them (RFC 7396), hides their secrets, checks the keys the host owns and validates a
 * function's parameters against its descriptor.
 *
 * Ownership follows jansson: "new reference" means the caller owns the result and releases
 * it with json_decref(); "borrowed" means the caller must not release it. No function here
 * keeps a reference to its arguments after it returns.
 */
#ifndef FERRY_VAULT_H
#define FERRY_VAULT_H

#include <jansson.h>
#include <stddef.h>

/* What a secret value is replaced with in output. */
#define VAULT_REDACTED "********"

/* Secret values shorter than this are left alone by redact_text(): replacing every "abc" in
 * a log line would hide more than it protects. */
#define VAULT_REDACT_MIN_LEN 4

/*
 * Parses a vault: one JSON object, in len bytes of text (need not be NUL-terminated).
 * `#` starts a comment that runs to the end of the line, except inside strings; comments are
 * blanked out before parsing so that reported positions match the text the user wrote.
 * Duplicate keys are refused. max_bytes == 0 means no size limit.
 *
 * Errors name the place and the reason: "invalid JSON in vault at line 3, column 5: ...".
 * Lines and columns count from 1; a column counts characters (UTF-8 code points, a tab is
 * one) and points at the start of the offending token.
 *
 * Returns a new reference to the object, or NULL with err set.
 */
json_t *vault_parse(const char *text, size_t len, size_t max_bytes, char *err, size_t errlen);

/*
 * Applies an RFC 7396 JSON merge patch: returns what `target` becomes after `patch`.
 * Neither argument is modified or kept; target may be NULL (treated as absent).
 * Returns a new reference, or NULL when patch is NULL or memory runs out.
 */
json_t *json_merge_patch(const json_t *target, const json_t *patch);

/*
 * Non-zero when the value under `key` is a secret by its name alone. The name is compared
 * case-insensitively, with '-' and '.' read as '_' and camelCase split ("apiKey" reads as
 * "api_key"). Secret names:
 *   password, passwd, passphrase, secret, token, key, credentials, api_key, apikey,
 *   access_key, secret_key, private_key (and so ssh_private_key),
 *   and anything ending in _password, _passwd, _passphrase, _secret, _token, _key,
 *   _credentials.
 * Not secret, because they identify a secret rather than being one or are public by design:
 *   *_key_id and *_id in general (access_key_id), *public_key, and the database terms
 *   sort_key, partition_key, primary_key, foreign_key, hash_key, range_key, cache_key.
 * A function marks other parameters secret in its descriptor (params_secret_names()).
 */
int vault_key_is_secret(const char *key);

/*
 * The one classification of secret values: non-zero when the value under `key` is secret by
 * its name (vault_key_is_secret) or because `secret_names` (an array of strings a function's
 * descriptor marks "secret": true, see params_secret_names(); may be NULL) names it, compared
 * ignoring case. Redaction (vault_redact, redact_text) and sealing at rest (seal.h) use it.
 */
int vault_key_is_secret_in(const char *key, const json_t *secret_names);

/*
 * Returns a deep copy of `vault` in which the value of every secret key (vault_key_is_secret,
 * or named in the `secret_names` array of strings, which may be NULL) is replaced by the
 * string VAULT_REDACTED, at any depth in objects and arrays. A null value stays null: it
 * tells nothing. `vault` may be any JSON value; it is not modified.
 * Returns a new reference, or NULL when vault is NULL or memory runs out.
 */
json_t *vault_redact(const json_t *vault, const json_t *secret_names);

/*
 * Returns a malloc'd copy of `text` (the caller frees it) in which every occurrence of a
 * secret value from `vault` is replaced by VAULT_REDACTED. Secret values are the strings of
 * at least VAULT_REDACT_MIN_LEN bytes found anywhere under a secret key (see vault_redact()
 * for which keys are secret; secret_names may be NULL), and also their JSON-escaped form, so
 * that a vault printed into a message is covered. Neither json_t is modified or kept.
 * Returns NULL only when text is NULL.
 */
char *redact_text(const char *text, const json_t *vault, const json_t *secret_names);

/*
 * Returns a deep copy of `value` (any JSON: a function's result, a response vault) fit to
 * show anywhere: the values of secret keys redacted as by vault_redact(value, secret_names),
 * and every secret value of `vault` (as redact_text finds them) replaced by VAULT_REDACTED
 * inside every string, at any depth. Nothing given is modified or kept.
 * Returns a new reference, or NULL when value is NULL.
 */
json_t *vault_scrub(const json_t *value, const json_t *vault, const json_t *secret_names);

/*
 * Non-zero when `key` is a top-level vault key the host interprets itself rather than
 * passing to the function: function, timeout, max_retries, retry_delay, on_failure,
 * on_success, description, tags, pre_hook, post_hook.
 */
int vault_is_host_key(const char *key);

/* Non-zero when `name` is a valid queue function name: [a-z][a-z0-9_]*, 1-64 characters. */
int vault_is_function_name(const char *name);

/*
 * Checks the host-owned keys of a queue item vault (borrowed, not modified):
 *   function            required; a function name ([a-z][a-z0-9_]*)
 *   timeout             a positive integer (seconds)
 *   max_retries         an integer from 0 to 100
 *   retry_delay         an integer >= 0 (seconds)
 *   on_failure          an object: notify, fallback_function (a function name), webhook_secret
 *   on_success          an object: notify, webhook_secret (a string: signs webhooks)
 *   notify              an email address or http(s) URL, or an array of them
 *   description         a string
 *   tags                an object, an array or a string
 *   pre_hook, post_hook strings
 * Returns 0 when they are all right, or -1 with err naming the key and what it should be.
 */
int vault_check_host_keys(const json_t *vault, char *err, size_t errlen);

/*
 * Describes a JSON value's type for messages: "an object", "an array", "a string",
 * "an integer", "a number" (a real), "a boolean", "null" ("nothing" for NULL).
 * Returns a static string.
 */
const char *vault_type_phrase(const json_t *value);

/*
 * Validates the vault's parameters against a function descriptor (borrowed):
 *   {"name":"repo_push", ..., "params":[{"name":"repository","type":"string",
 *    "required":true,"secret":false,"default":<any>,"description":"..."}, ...]}
 * where type is string, integer, number (integer or real), boolean, object, array, any, or
 * string_list (a string or an array of strings).
 * For each declared parameter that is not a host-owned key: a missing one (absent or null)
 * with a default gets a copy of the default; a missing required one without a default is an
 * error; a present one must have the declared type. Undeclared keys pass through.
 * Defaults are inserted into `vault` (an object, modified in place) only when every check
 * passes, so on failure the vault is unchanged.
 * Returns 0, or -1 with err set ("function repo_push needs parameter \"repository\"
 * (string): ...", "parameter \"verify\" of repo_push must be a boolean, got a string").
 */
int params_validate(const json_t *function, json_t *vault, char *err, size_t errlen);

/*
 * Lists the vault's top-level keys that are neither parameters the function (borrowed, a
 * descriptor as for params_validate) declares nor host-owned keys (vault_is_host_key): a
 * new reference to an array of {"key": K, "closest": C} in the vault's key order, where C
 * is the known key (declared parameter or host-owned key) nearest to K by edit distance
 * ("retention_day" -> "retention_days", "max_retry" -> "max_retries"). Such keys still
 * reach the function, which ignores them: callers warn, or refuse when asked to be strict.
 * A function that declares no parameters at all states no interface to check against
 * (plugin.h: undeclared keys are passed through), so its keys are never listed.
 * vault is borrowed and not modified; an empty array when every key is known.
 */
json_t *params_unknown_keys(const json_t *function, const json_t *vault);

/*
 * Returns the names of the descriptor's parameters marked "secret": true, as a new
 * reference to an array of strings (empty when there are none or function is NULL).
 */
json_t *params_secret_names(const json_t *function);

#endif
