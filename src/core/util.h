/* core/util — time, identifiers and small string helpers shared by modules.
 * Pure functions; nothing here allocates except where stated.
 */
#ifndef VG_CORE_UTIL_H
#define VG_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define VG_WARN_UNUSED __attribute__((warn_unused_result))

/* Maximum length of a device, patient or principal id (without NUL). */
#define VG_ID_MAX 64

/* Wall-clock milliseconds since 1970-01-01T00:00:00Z. */
int64_t vg_now_ms(void);

/* Monotonic milliseconds, for deadlines and latency. */
int64_t vg_mono_ms(void);

/* Parses RFC 3339 "YYYY-MM-DDTHH:MM:SS[.fff...](Z|+hh:mm|-hh:mm)" into epoch
 * milliseconds. 'len' bytes of 's' are read (no NUL needed). Returns 0, or -1
 * on anything that is not a valid RFC 3339 date-time (including a date like
 * February 30th). Fractions beyond milliseconds are truncated. */
int vg_time_parse_rfc3339(const char *s, size_t len, int64_t *out_ms) VG_WARN_UNUSED;

/* Formats epoch milliseconds as RFC 3339 UTC with milliseconds,
 * "2026-11-29T10:00:00.000Z". 'out' must hold at least 32 bytes. */
void vg_time_format(int64_t ms, char out[32]);

/* An id is 1..VG_ID_MAX characters of [A-Za-z0-9._-], starting with an
 * alphanumeric. Ids appear in MQTT topics, URLs, file names and certificate
 * subjects, so this one rule keeps them safe in all four. */
int vg_id_valid(const char *id);

/* Writes all 'len' bytes to 'fd', retrying short writes and EINTR.
 * Returns 0, or -1 with errno set. */
int vg_write_all(int fd, const void *buf, size_t len) VG_WARN_UNUSED;

/* Copies at most dst_size-1 bytes and always terminates. Returns 0, or -1 if
 * 'src' was truncated. */
int vg_strlcpy(char *dst, const char *src, size_t dst_size);

#endif
