/*
 * Notifications: on_success.notify / on_failure.notify (a string or a list) name email
 * addresses (sent through the configured SMTP server with libcurl) or http(s) URLs (a JSON
 * POST). Delivery happens in a detached process so it never delays or changes a job; each
 * delivery, sent or failed, is recorded in the item's trace.
 */
#ifndef FERRY_NOTIFY_H
#define FERRY_NOTIFY_H

#include <jansson.h>

#include "config.h"
#include "store.h"

/*
 * Sends the notifications an item's vault asks for after its final status ("COMPLETED",
 * "FAILED" or "CANCELLED"). item, vault and response are borrowed. Returns at once.
 */
void notify_outcome(const ferry_config *cfg, store *st, const struct store_item *item,
                    const json_t *vault, const char *status, const json_t *response);

/* 1 when an item ending with status ("COMPLETED", "FAILED" or "CANCELLED") has
 * notifications to send (vault borrowed). */
int notify_wanted(const json_t *vault, const char *status);

/*
 * Delivers one notification now (blocking): target is an email address or an http(s) URL;
 * body is the JSON document sent. Returns 0, or -1 with err set. Exposed for tests.
 */
int notify_deliver(const ferry_config *cfg, const char *target, const json_t *body, char *err,
                   size_t errlen);

/*
 * notify_deliver with the key that signs a webhook POST: secret (borrowed), or when it is
 * NULL or empty notify.webhook_secret; none: unsigned. A signed POST carries
 * "X-Ferry-Timestamp: UNIX seconds" and "X-Ferry-Signature: v1=" + hex HMAC-SHA256(key,
 * TIMESTAMP "." BODY). URLs to link-local and metadata addresses are refused unless
 * notify.allow_link_local_urls.
 */
int notify_deliver_signed(const ferry_config *cfg, const char *target, const json_t *body,
                          const char *secret, char *err, size_t errlen);

/*
 * Delivers every target of a request {"targets":[...],"body":{...},"taskId":"...",
 * "webhookSecret":"..."} (borrowed; webhookSecret optional)
 * and records each delivery in the item's trace. Blocking; runs in `ferry notify send`.
 */
void notify_deliver_all(const ferry_config *cfg, const json_t *request);

#endif
