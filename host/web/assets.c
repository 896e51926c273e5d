/* Placeholder until the dashboard's generated table lands (branch s7-dash replaces this). */
#include <string.h>

#include "assets.h"

static const unsigned char index_html[] = "<!doctype html><title>ferry</title><p>ferry web</p>\n";

static const struct web_asset assets[] = {
    {"/", "text/html; charset=utf-8", index_html, sizeof(index_html) - 1},
};

const struct web_asset *web_asset_find(const char *path)
{
    for (size_t i = 0; i < sizeof(assets) / sizeof(assets[0]); i++)
        if (strcmp(assets[i].path, path) == 0)
            return &assets[i];
    return NULL;
}
