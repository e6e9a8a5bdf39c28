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

/* ---- signed checkpoints ----
 * A checkpoint is the head of the chain (last seq and its hash) at a time,
 * signed with the audit key (Ed25519, libsodium), a key that lives in
 * keys/audit.key apart from the database. Checkpoints go into the table
 * audit_checkpoints and are appended to a log file outside the database, so
 * a truncated or rewritten trail is caught against a copy the attacker of
 * the database does not control. The public key (keys/audit.pub, hex) is
 * what a verifier trusts. */

#define VG_AUDIT_SK_BYTES 64
#define VG_AUDIT_PK_BYTES 32
#define VG_AUDIT_SIG_BYTES 64

/* Creates a new key pair: 'sk_path' (raw 64 bytes, 0600, O_EXCL) and
 * 'pk_path' (hex, 0644). */
int vg_audit_key_create(const char *sk_path, const char *pk_path, char *err, size_t err_size)
    VG_WARN_UNUSED;
/* Loads the secret key (refusing group/other access or a wrong size). */
int vg_audit_key_load(const char *sk_path, uint8_t sk[VG_AUDIT_SK_BYTES], char *err,
                      size_t err_size) VG_WARN_UNUSED;
/* Loads a public key written by vg_audit_key_create. */
int vg_audit_pub_load(const char *pk_path, uint8_t pk[VG_AUDIT_PK_BYTES], char *err,
                      size_t err_size) VG_WARN_UNUSED;

struct vg_audit_checkpoint {
    int64_t seq;   /* last record covered */
    int64_t ts_ms;
    uint8_t head[VG_SHA256_BYTES];
    uint8_t pubkey[VG_AUDIT_PK_BYTES];
    uint8_t sig[VG_AUDIT_SIG_BYTES];
};

/* Signs the current head in a transaction of its own and, if 'log_path' is
 * given, appends it there (O_APPEND, fsync). Returns 0 when a checkpoint
 * was written, 1 when the head has not moved since the last one, or a
 * negative vg_store_rc. */
int vg_audit_checkpoint_write(struct vg_store *st, const uint8_t sk[VG_AUDIT_SK_BYTES],
                              const char *log_path, struct vg_audit_checkpoint *out)
    VG_WARN_UNUSED;

struct vg_audit_verify_result {
    int ok;
    int64_t records;        /* records whose hash and link verified */
    int64_t last_seq;       /* last record present */
    int64_t bad_seq;        /* first record that fails (0 if none) */
    int64_t checkpoints;    /* checkpoints whose signature and head verified */
    int64_t latest_cp_seq;  /* newest verified checkpoint */
    int64_t latest_cp_ts;
    char why[256];          /* on failure: what is wrong, in plain words */
};

/* Verifies the whole trail on 'db' (any connection, read-only is enough):
 * every record's hash and link, then every checkpoint — those in the
 * database and, if 'checkpoint_file' is given, those in that file — for a
 * signature by 'pubkey' (NULL: checkpoints are not checked) and a head that
 * matches the record it names. Catches an edited, deleted, inserted or
 * reordered record; a rewritten (recomputed) chain; a truncated tail; a
 * forged or altered checkpoint. Returns 0 if the trail verifies, 1 if it
 * does not (res says where and why), -1 if it could not be read. */
int vg_audit_verify_db(struct sqlite3 *db, const uint8_t *pubkey, const char *checkpoint_file,
                       struct vg_audit_verify_result *res) VG_WARN_UNUSED;

/* The chain alone, on a store handle (kept for callers that need no
 * checkpoints). Returns 0 with *count records, or -1 with the first bad
 * record in *bad_seq and a reason in 'why'. */
int vg_audit_verify(struct vg_store *st, int64_t *count, int64_t *bad_seq, char *why,
                    size_t why_size) VG_WARN_UNUSED;

#endif
