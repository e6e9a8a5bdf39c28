/* api/body — decoding of API request bodies (untrusted bytes).
 *
 * Pure: no I/O, no global state. A body is a JSON object whose members are
 * all in the route's allowed list (an unknown member is refused, so a typo
 * or an attack on a field the route ignores never passes silently), with no
 * duplicate keys, within a size limit, and nested at most a few levels.
 */
#ifndef VG_API_BODY_H
#define VG_API_BODY_H

#include <jansson.h>
#include <stddef.h>

enum vg_body_rc {
    VG_BODY_OK = 0,
    VG_BODY_TOO_LARGE,     /* more than max bytes */
    VG_BODY_NOT_OBJECT,    /* not JSON, or not a JSON object */
    VG_BODY_UNKNOWN_MEMBER,/* a member outside 'allowed' */
    VG_BODY_TOO_DEEP,      /* nested deeper than VG_BODY_MAX_DEPTH */
};

#define VG_BODY_MAX_DEPTH 4

/* Decodes 'len' bytes. On VG_BODY_OK *out is a new reference the caller
 * owns; otherwise *out is NULL and 'title' (capacity title_size) says what
 * was wrong in words fit for a problem+json title. 'allowed' is a
 * NULL-terminated list of member names. */
enum vg_body_rc vg_body_parse(const char *data, size_t len, size_t max,
                              const char *const *allowed, json_t **out, char *title,
                              size_t title_size);

#endif
