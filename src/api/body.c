#include "api/body.h"

#include <stdio.h>
#include <string.h>

static int depth_of(const json_t *v, int limit)
{
    if (limit < 0)
        return 1;
    size_t i;
    const char *k;
    json_t *e;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, e)
            if (depth_of(e, limit - 1))
                return 1;
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, e)
            if (depth_of(e, limit - 1))
                return 1;
    }
    return 0;
}

enum vg_body_rc vg_body_parse(const char *data, size_t len, size_t max,
                              const char *const *allowed, json_t **out, char *title,
                              size_t title_size)
{
    *out = NULL;
    if (len > max) {
        snprintf(title, title_size, "Body too large");
        return VG_BODY_TOO_LARGE;
    }
    json_error_t jerr;
    /* jansson refuses NUL inside strings unless JSON_ALLOW_NUL is given,
     * and stops at its own nesting limit; duplicates are refused here. */
    json_t *body = len ? json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!body || !json_is_object(body)) {
        json_decref(body);
        snprintf(title, title_size, "Body is not a JSON object");
        return VG_BODY_NOT_OBJECT;
    }
    const char *key;
    json_t *val;
    json_object_foreach(body, key, val)
    {
        int known = 0;
        for (const char *const *a = allowed; *a; a++)
            known |= !strcmp(*a, key);
        if (!known) {
            json_decref(body);
            snprintf(title, title_size, "Unknown member in body");
            return VG_BODY_UNKNOWN_MEMBER;
        }
    }
    if (depth_of(body, VG_BODY_MAX_DEPTH)) {
        json_decref(body);
        snprintf(title, title_size, "Body nested too deeply");
        return VG_BODY_TOO_DEEP;
    }
    *out = body;
    return VG_BODY_OK;
}
