/* The HTTP helper behind the plugins' http service (libcurl easy interface). */
#include "httpc.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define MAX_BODY (16u * 1024 * 1024)

struct body {
    char *data;
    size_t len;
    int too_big;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct body *b = arg;
    size_t add = size * n;
    if (b->len + add > MAX_BODY) {
        b->too_big = 1;
        return 0;
    }
    char *nd = realloc(b->data, b->len + add + 1);
    if (nd == NULL)
        return 0;
    b->data = nd;
    memcpy(b->data + b->len, p, add);
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    json_t *headers = arg;
    size_t len = size * n;
    char *colon = memchr(p, ':', len);
    if (colon != NULL) {
        char *name = strndup(p, (size_t)(colon - p));
        const char *v = colon + 1;
        size_t vlen = len - (size_t)(v - p);
        while (vlen > 0 && (*v == ' ' || *v == '\t'))
            v++, vlen--;
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
            vlen--;
        for (char *c = name; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c + 32);
        json_object_set_new(headers, name, json_stringn(v, vlen));
        free(name);
    }
    return len;
}

json_t *httpc_request(const json_t *req, int64_t deadline_ms, char *err, size_t errlen)
{
    const char *url = json_string_value(json_object_get(req, "url"));
    if (url == NULL) {
        seterr(err, errlen, "http request has no \"url\"");
        return NULL;
    }
    const char *method = json_string_value(json_object_get(req, "method"));
    const char *body = json_string_value(json_object_get(req, "body"));
    json_int_t timeout = json_integer_value(json_object_get(req, "timeout"));
    if (timeout <= 0)
        timeout = 30;
    if (deadline_ms > 0) {
        int64_t left = (deadline_ms - now_ms()) / 1000;
        if (left < 1)
            left = 1;
        if (left < timeout)
            timeout = left;
    }
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        seterr(err, errlen, "cannot start libcurl");
        return NULL;
    }
    struct curl_slist *hdrs = NULL;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)json_object_get(req, "headers"), key, v)
    {
        if (!json_is_string(v))
            continue;
        char *line = xasprintf("%s: %s", key, json_string_value(v));
        hdrs = curl_slist_append(hdrs, line);
        free(line);
    }
    struct body b = {0};
    json_t *headers = json_object();
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)timeout);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, headers);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    if (body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    /* HEAD through CUSTOMREQUEST would wait for the body Content-Length announces. */
    if (method && strcasecmp(method, "HEAD") == 0)
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    else if (method)
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    int64_t start = mono_ms();
    CURLcode rc = curl_easy_perform(curl);
    json_t *res = NULL;
    if (rc != CURLE_OK) {
        seterr(err, errlen, "%s %s: %s", method ? method : (body ? "POST" : "GET"), url,
               b.too_big ? "response body over 16 MiB" : curl_easy_strerror(rc));
    } else {
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        res = json_pack("{s:i,s:O,s:s,s:I}", "status", (int)status, "headers", headers, "body",
                        b.data ? b.data : "", "duration_ms", (json_int_t)(mono_ms() - start));
    }
    json_decref(headers);
    free(b.data);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(curl);
    return res;
}
