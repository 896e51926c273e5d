/*
 * The web dashboard's files, built into the binary (no CDN, works offline). Owned by the
 * dashboard engineer (branch s7-dash), who generates the table from host/web/assets/ at
 * build time; the server (web.c) only looks files up here.
 */
#ifndef FERRY_WEB_ASSETS_H
#define FERRY_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
    const char *path;         /* "/", "/app.js", … */
    const char *content_type; /* "text/html; charset=utf-8", … */
    const unsigned char *data;
    size_t len;
};

/* The asset served at path, or NULL. */
const struct web_asset *web_asset_find(const char *path);

#endif
