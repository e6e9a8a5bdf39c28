/* audit/ship — live export of the audit trail to a SIEM as RFC 5424 syslog
 * messages over TLS (RFC 5425: octet-counted framing, "LEN SP MSG").
 *
 * A shipper is one thread with its own read-only connection to the
 * database. It sends every record with seq greater than the last one
 * shipped, in order, in batches of up to 500, and remembers the last seq
 * shipped in a small state file ("SEQ\n", written atomically: temp file +
 * fsync + rename) so a restart neither loses nor repeats records beyond the
 * last unconfirmed batch. A missing state file means "from the first
 * record"; a corrupt one, or one ahead of the trail (a replaced database),
 * is logged and also means "from the first record": sending again beats
 * losing records.
 *
 * Delivery is at least once: RFC 5425 has no application acknowledgement,
 * so a batch is confirmed when it is written and the receiver's TCP has
 * acknowledged all of it. A batch cut short by an error is sent again after
 * reconnecting, so a receiver may see a record twice (de-duplicate on the
 * seq SD-PARAM), never a gap.
 *
 * When the SIEM is unreachable it retries with backoff (1 s doubling to
 * 30 s) and calls the alert callback once when shipping starts failing and
 * once when a batch succeeds again — the caller turns those into audit
 * records and alerts. The same two state changes are logged (warn/info);
 * log lines and alerts name the target and the OS/TLS reason, never record
 * contents.
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
 * anything else (refused/denied/failure). TIMESTAMP is UTC with
 * milliseconds ("-" outside years 1970..9999). HOSTNAME (max 255) and MSGID
 * (the action, max 32) are cut to length, with every character outside
 * printable US-ASCII replaced by '_'; an empty one is "-". SD-PARAM values
 * escape '"', '\\' and ']' as RFC 5424 §6.3.3 requires. The detail is the
 * MSG, without a BOM (MSG-ANY), and is omitted with its SP when empty. In
 * values and MSG, control characters and bytes that are not well-formed
 * UTF-8 become '?', so a message is always one line of valid UTF-8.
 * NULL strings count as empty. Returns the length written (without NUL,
 * always NUL-terminated when cap > 0), or -1 if 'cap' is too small. */
int vg_audit_syslog_format(const struct vg_audit_record *r, const char *hostname, char *out,
                           size_t cap);

struct vg_audit_shipper;

/* Called on the shipper thread with a short, PHI-free description, e.g.
 * "audit shipping to 10.0.0.5:6514 failing: cannot connect: Connection
 * refused" or "audit shipping to 10.0.0.5:6514 recovered". Must be
 * thread-safe. Never called once vg_audit_ship_stop has been entered; calls
 * are serialised with it, so after stop returns nothing is in flight. */
typedef void (*vg_audit_ship_alert_fn)(void *ctx, int failing, const char *what);

/* Starts shipping records of the database at 'db_path' to 'target'
 * ("HOST:PORT" or "[V6]:PORT"), verifying the receiver's certificate
 * against the CA file 'ca_path' alone (no system trust store; TLS 1.2 or
 * 1.3; the certificate must name HOST: its IP address for an IP literal,
 * else its DNS name, which is also sent as SNI). 'state_path' holds the last
 * shipped seq; its directory is created (0700) if missing. Fails — NULL
 * with a reason — on a bad target, an unloadable CA, an unreadable state
 * file, or a database without a readable audit table; an unreachable
 * receiver is not an error here (the thread retries). */
struct vg_audit_shipper *vg_audit_ship_start(const char *db_path, const char *target,
                                             const char *ca_path, const char *state_path,
                                             vg_audit_ship_alert_fn alert, void *alert_ctx,
                                             char *err, size_t err_size);

/* Last seq confirmed sent (for metrics and tests). Thread-safe. */
long long vg_audit_ship_position(struct vg_audit_shipper *s);

/* Tries for up to 'drain_ms' to ship what is left (everything committed
 * when it is called), then stops, joins and frees; NULL is a no-op. Call it
 * after the last record is committed (after vg_writer_stop) to ship
 * vigil.stop too; what is left unshipped goes after the next start. */
void vg_audit_ship_stop(struct vg_audit_shipper *s, int drain_ms);

#endif
