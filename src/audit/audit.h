/* audit — the append-only, hash-chained audit trail.
 *
 * Each record's hash is SHA-256(previous hash || canonical encoding of the
 * record), the canonical encoding being every field as a 4-byte big-endian
 * length followed by its bytes, in a fixed order (seq, ts_ms, actor, action,
 * target, outcome, detail, source). The first record's previous hash is 32
 * zero bytes. Editing, deleting, inserting or reordering records breaks the
 * chain at the first record touched.
 *
 * vg_audit_append writes into the caller's open transaction on the store's
 * connection, so a change and the record of it commit or fail together
 * (design invariant 4). Records carry no clinical values and no secrets:
 * 'detail' is a short description written by vigil, never peer bytes.
 */
#ifndef VG_AUDIT_AUDIT_H
#define VG_AUDIT_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"
#include "store/store.h"

struct vg_audit_event {
    int64_t ts_ms;       /* 0 = now */
    const char *actor;   /* "device:ID", "user:ID", "system", "peer" */
    const char *action;  /* dotted verb, e.g. "mqtt.connect", "obs.read" */
    const char *target;  /* what it touched: "patient:P1", "device:D1", "" */
    const char *outcome; /* "success", "denied", "refused", "failure" */
    const char *detail;  /* short reason or summary; NULL = "" */
    const char *source;  /* peer address, or "" */
};

/* Appends one record inside the current transaction. 0 or a vg_store_rc. */
int vg_audit_append(struct vg_store *st, const struct vg_audit_event *ev) VG_WARN_UNUSED;

/* One stored record, handed to callbacks. Strings are borrowed for the
 * duration of the call only. */
struct vg_audit_record {
    int64_t seq;
    int64_t ts_ms;
    const char *actor, *action, *target, *outcome, *detail, *source;
};

typedef int (*vg_audit_fn)(void *ctx, const struct vg_audit_record *r);

/* Filters for reading the trail; zero/NULL fields do not filter. */
struct vg_audit_filter {
    const char *patient;   /* records whose target is "patient:<id>" */
    const char *principal; /* records whose actor is "user:<id>" or exactly this */
    const char *action;    /* exact action, or a prefix ending in '.' ("obs.") */
    const char *outcome;   /* exact outcome */
    int64_t since_ms;      /* ts_ms >= since_ms */
    int64_t until_ms;      /* ts_ms < until_ms (0 = no bound) */
    int64_t after_seq;     /* seq > after_seq: the paging cursor */
    size_t limit;          /* most records returned (0 = all) */
    int disclosures_only;  /* only actions that disclose patient data
                              (HIPAA accounting of disclosures/access) */
};

/* Calls fn for each matching record in sequence order; stops early when fn
 * returns non-zero. Returns the number of records passed, or -1. Read-only:
 * works on any connection to the database, including a read-only one. */
int vg_audit_query(struct sqlite3 *db, const struct vg_audit_filter *f, vg_audit_fn fn,
                   void *ctx) VG_WARN_UNUSED;

/* Is this action a disclosure of patient data (for accounting reports)? */
int vg_audit_is_disclosure(const char *action);

/* Walks the chain from the first record. Returns 0 when every record links
 * and hashes correctly (with *count records), or -1 with the sequence number
 * of the first bad record in *bad_seq and a reason in 'why'. */
int vg_audit_verify(struct vg_store *st, int64_t *count, int64_t *bad_seq, char *why,
                    size_t why_size) VG_WARN_UNUSED;

#endif
