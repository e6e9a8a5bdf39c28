/* audit/ship — live export of the audit trail to a SIEM as RFC 5424 syslog
 * messages over TLS (RFC 5425: octet-counted framing, "LEN SP MSG").
 *
 * A shipper is one thread with its own read-only connection to the
 * database. It sends every record with seq greater than the last one
 * shipped, in order, and remembers the last seq shipped in a small state
 * file (written atomically: temp file + rename) so a restart neither loses
 * nor repeats records beyond the last unconfirmed batch. When the SIEM is
 * unreachable it retries with backoff (1 s doubling to 30 s) and calls the
 * alert callback once when shipping starts failing and once when it
 * recovers — the caller turns those into audit records and alerts.
 *
 * Owns its thread, connection, TLS context and socket. Borrows nothing
 * after start returns (paths are copied).
 */
#ifndef VG_AUDIT_SHIP_H
#define VG_AUDIT_SHIP_H

#include <stddef.h>

#include "audit/audit.h"

/* Formats one record as an RFC 5424 message (no framing):
 *   <PRI>1 TIMESTAMP HOSTNAME vigil - ACTION [vigil@32473 seq="" actor=""
 *   target="" outcome="" source=""] detail
 * facility 13 (log audit); severity notice (5) for success, warning (4) for
 * refused/denied/failure. SD-PARAM values escape '"', '\\' and ']' as RFC
 * 5424 §6.3.3 requires; TIMESTAMP is UTC with milliseconds. Returns the
 * length written (without NUL, always NUL-terminated), or -1 if 'cap' is too
 * small. */
int vg_audit_syslog_format(const struct vg_audit_record *r, const char *hostname, char *out,
                           size_t cap);

struct vg_audit_shipper;

/* Called on the shipper thread with a short, PHI-free description, e.g.
 * "audit shipping to 10.0.0.5:6514 failing: connection refused" or
 * "audit shipping to 10.0.0.5:6514 recovered". Must be thread-safe. */
typedef void (*vg_audit_ship_alert_fn)(void *ctx, int failing, const char *what);

/* Starts shipping records of the database at 'db_path' to 'target'
 * ("HOST:PORT"), verifying the receiver's certificate against the CA file
 * 'ca_path' (TLS 1.2 or 1.3; the receiver's name or IP must match HOST).
 * 'state_path' holds the last shipped seq. Returns NULL with a reason. */
struct vg_audit_shipper *vg_audit_ship_start(const char *db_path, const char *target,
                                             const char *ca_path, const char *state_path,
                                             vg_audit_ship_alert_fn alert, void *alert_ctx,
                                             char *err, size_t err_size);

/* Last seq confirmed sent (for metrics and tests). Thread-safe. */
long long vg_audit_ship_position(struct vg_audit_shipper *s);

/* Tries for up to 'drain_ms' to ship what is left, then stops and frees. */
void vg_audit_ship_stop(struct vg_audit_shipper *s, int drain_ms);

#endif
