/*
 * The dashboard's files (host/web/assets/), built into the binary: the table web_assets[] is
 * generated at build time by scripts/web_assets.sh into $(BUILD)/gen/web_assets.c (see the
 * Makefile), so a change to a file there rebuilds ferry with it. docs/web.md describes them.
 */
#include <string.h>

#include "assets.h"

extern const struct web_asset web_assets[];
extern const size_t web_assets_count;

const struct web_asset *web_asset_find(const char *path)
{
    if (path == NULL)
        return NULL;
    if (strcmp(path, "/index.html") == 0)
        path = "/";
    for (size_t i = 0; i < web_assets_count; i++)
        if (strcmp(web_assets[i].path, path) == 0)
            return &web_assets[i];
    return NULL;
}
