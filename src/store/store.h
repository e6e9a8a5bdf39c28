/* store — the embedded SQLite store: schema and migrations, patients,
 * devices and their assignments, principals and tokens, and readings sealed
 * under per-patient data keys.
 *
 * A struct vg_store is one SQLite connection plus a cache of unwrapped data
 * keys. It is NOT thread-safe: each thread opens its own (the store writer
 * thread one, the API another). SQLite's WAL mode lets the API read while
 * the writer commits.
 *
 * Key hierarchy: the key-encryption key (KEK, 32 bytes, a file outside the
 * database) wraps one data key per patient (table patient_keys); each
 * reading's value, unit and time are sealed with XChaCha20-Poly1305 under
 * its patient's data key, with associated data binding the row (reading id,
 * patient, device, code, key id) so a ciphertext cannot be moved to another
 * row. The KEK is borrowed: the caller keeps and wipes it. Unwrapped data
 * keys live in sodium_malloc'd memory and are wiped on close.
 *
 * Functions return VG_STORE_OK (0) or one of the vg_store_rc values; none
 * logs PHI.
 */
#ifndef VG_STORE_STORE_H
#define VG_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"
#include "crypto/crypto.h"
#include "ingest/reading.h"

enum vg_store_rc {
    VG_STORE_OK = 0,
    VG_STORE_ERROR = -1,     /* SQLite or I/O failure; see err */
    VG_STORE_EXISTS = -2,    /* unique id already taken */
    VG_STORE_NOT_FOUND = -3, /* no such row */
    VG_STORE_INTEGRITY = -4, /* a ciphertext or wrapped key failed to open:
                                tampered, moved, or wrong key */
    VG_STORE_BAD_KEK = -5,   /* the KEK does not open this database */
    VG_STORE_FULL = -6,      /* disk or database full */
    VG_STORE_IO = -7,        /* the OS reported an I/O error (write, fsync):
                                the transaction is not durable */
    VG_STORE_DUPLICATE = 1,  /* vg_store_reading_put: this reading (same
                                device, code and time) is already stored;
                                not an error */
};

struct vg_store;

/* Creates a new database at 'path' (must not exist): schema, WAL, and a KEK
 * check value so a later open can tell a wrong or replaced KEK. */
int vg_store_create(const char *path, const uint8_t kek[VG_KEY_BYTES], char *err,
                    size_t err_size) VG_WARN_UNUSED;

/* Opens an existing database, applies pending migrations, and checks that
 * 'kek' opens it (VG_STORE_BAD_KEK if not). On success *out is owned by the
 * caller, closed with vg_store_close. */
int vg_store_open(const char *path, const uint8_t kek[VG_KEY_BYTES], struct vg_store **out,
                  char *err, size_t err_size) VG_WARN_UNUSED;
void vg_store_close(struct vg_store *st);

/* The last error text of this handle (never contains PHI). */
const char *vg_store_errmsg(const struct vg_store *st);

/* Schema version after migrations (for `vigil init` output and tests). */
int vg_store_schema_version(struct vg_store *st);

/* Transactions: BEGIN IMMEDIATE (takes the write lock at once, so the audit
 * chain head read inside cannot race another writer), COMMIT, ROLLBACK. */
int vg_store_begin(struct vg_store *st) VG_WARN_UNUSED;
int vg_store_commit(struct vg_store *st) VG_WARN_UNUSED;
void vg_store_rollback(struct vg_store *st);

/* ---- principals and bearer tokens ---- */

#define VG_ROLE_MAX 16

/* Adds a principal (a person or service) with a role. */
int vg_store_principal_add(struct vg_store *st, const char *id, const char *role,
                           int64_t now_ms) VG_WARN_UNUSED;

/* Stores the SHA-256 of a token for 'principal'. expires_ms 0 = no expiry. */
int vg_store_token_add(struct vg_store *st, const char *principal,
                       const uint8_t hash[VG_SHA256_BYTES], int64_t now_ms,
                       int64_t expires_ms) VG_WARN_UNUSED;

/* Finds the principal holding the token with this hash, if not revoked or
 * expired at now_ms. VG_STORE_NOT_FOUND when there is none. */
int vg_store_token_lookup(struct vg_store *st, const uint8_t hash[VG_SHA256_BYTES],
                          int64_t now_ms, char principal[VG_ID_MAX + 1],
                          char role[VG_ROLE_MAX]) VG_WARN_UNUSED;

/* ---- patients, devices, assignments ---- */

int vg_store_patient_add(struct vg_store *st, const char *id, int64_t now_ms) VG_WARN_UNUSED;
int vg_store_patient_exists(struct vg_store *st, const char *id) VG_WARN_UNUSED;

struct vg_device_info {
    char id[VG_ID_MAX + 1];
    char status[16];            /* "active" or "revoked" */
    char cert_serial[41];
    char cert_fingerprint[65];  /* SHA-256 hex of the DER certificate */
    int64_t enrolled_ms;
    int64_t cert_not_after_ms;
};

int vg_store_device_add(struct vg_store *st, const struct vg_device_info *dev) VG_WARN_UNUSED;
int vg_store_device_get(struct vg_store *st, const char *id, struct vg_device_info *out)
    VG_WARN_UNUSED;

/* Assigns 'device' to 'patient' from now_ms on, ending any current
 * assignment. VG_STORE_NOT_FOUND if the device or patient does not exist
 * (err says which). Assigning to the current patient is a no-op. */
int vg_store_device_assign(struct vg_store *st, const char *device, const char *patient,
                           int64_t now_ms) VG_WARN_UNUSED;

/* The patient 'device' is assigned to at at_ms, or VG_STORE_NOT_FOUND. */
int vg_store_device_patient(struct vg_store *st, const char *device, int64_t at_ms,
                            char patient[VG_ID_MAX + 1]) VG_WARN_UNUSED;

/* ---- readings ---- */

#define VG_OBS_ID_MAX 33 /* 32 hex characters + NUL */

/* Seals and inserts one reading for (patient, device) inside the current
 * transaction, creating the patient's data key on first use. Writes the new
 * reading's id (also its FHIR Observation id) to 'id_out'. Returns
 * VG_STORE_DUPLICATE, storing nothing, when the device already sent a
 * reading with this code and effective time (a resend after a lost
 * acknowledgement). */
int vg_store_reading_put(struct vg_store *st, const char *patient, const char *device,
                         const struct vg_reading *r, int64_t received_ms,
                         char id_out[VG_OBS_ID_MAX]) VG_WARN_UNUSED;

/* One decrypted reading handed to a query callback (borrowed for the call). */
struct vg_obs {
    char id[VG_OBS_ID_MAX];
    char patient[VG_ID_MAX + 1];
    char device[VG_ID_MAX + 1];
    struct vg_reading reading;
    int64_t received_ms;
};

struct vg_obs_query {
    const char *patient; /* required */
    const char *code;    /* LOINC or NULL for all */
    size_t limit;        /* most readings passed to fn (0 = all) */
    int64_t from_ms;     /* effective time >= from_ms (0 = no bound) */
    int64_t to_ms;       /* effective time < to_ms (0 = no bound) */
    int ascending;       /* oldest first; default newest first */
    /* Paging: start after this reading in the chosen order (the last one
     * of the previous page); cursor_id "" = from the start. */
    int64_t cursor_ms;
    char cursor_id[VG_OBS_ID_MAX];
};

typedef int (*vg_obs_fn)(void *ctx, const struct vg_obs *obs);

/* Calls fn for the patient's readings matching the query, in effective-time
 * order (ties broken by id), up to 'limit'. Stops early if fn returns
 * non-zero. Only the hour of each reading is in the clear, so rows are read
 * by hour through an index and ordered within the hour after decryption.
 * Returns the number of readings passed to fn (>= 0), or a negative
 * vg_store_rc — VG_STORE_INTEGRITY if any ciphertext fails to open, in which
 * case no value of that row is returned. */
int vg_store_obs_query(struct vg_store *st, const struct vg_obs_query *q, vg_obs_fn fn,
                       void *ctx) VG_WARN_UNUSED;

/* ---- the KEK: sharing and rotation (keyring.h) ---- */

struct vg_keyring;

/* Opens with a shared keyring (vg_store_open makes a private one). *which,
 * if not NULL, says which of its keys opened the database: 0 the current,
 * 1 the previous (a rotation committed before a crash; see serve.c). */
int vg_store_open_ring(const char *path, struct vg_keyring *ring, struct vg_store **out,
                       int *which, char *err, size_t err_size) VG_WARN_UNUSED;

/* This connection's keyring (borrowed), to share with another connection. */
struct vg_keyring *vg_store_keyring(struct vg_store *st);

/* The purpose prefix TOTP seeds are sealed under (followed by the account
 * id), known here so a KEK rotation can rewrap them. */
#define VG_STORE_TOTP_PURPOSE "vigil/totp/v1|"

struct vg_kek_rotation {
    int data_keys; /* patient data keys rewrapped */
    int secrets;   /* TOTP seeds rewrapped */
    int other;     /* KEK check and deduplication key */
};

/* Online KEK rotation, in its own transaction (not inside the caller's):
 * 'next' becomes the keyring's current KEK — every connection sharing it
 * wraps new data keys under it at once — and every value sealed under the
 * old KEK is rewrapped; readings are not rewritten. On failure nothing
 * changes and the keyring is reverted. The caller must have made 'next'
 * durable before (it is needed to open what this commits), and calls
 * vg_store_rotate_kek_done once the old KEK file is replaced, which wipes
 * the old KEK from memory. */
int vg_store_rotate_kek(struct vg_store *st, const uint8_t next[VG_KEY_BYTES],
                        struct vg_kek_rotation *out,
                        int (*in_tx)(void *ctx, struct vg_store *st,
                                     const struct vg_kek_rotation *r),
                        void *ctx) VG_WARN_UNUSED;
/* in_tx (may be NULL) runs inside the rotation's transaction just before
 * the commit, e.g. to append the audit record; non-zero aborts it all. */
void vg_store_rotate_kek_done(struct vg_store *st);

/* Key rotation and crypto-shredding (inside the caller's transaction). */

/* Retires the patient's active data key: new readings get a new key; old
 * readings stay readable under theirs. */
int vg_store_patient_rotate_key(struct vg_store *st, const char *patient) VG_WARN_UNUSED;

/* Destroys every data key of the patient (their readings can never be
 * opened again, by anyone), ends the patient's device assignments and care
 * team, and marks the patient erased. *keys = data keys destroyed. */
int vg_store_patient_erase(struct vg_store *st, const char *patient, int64_t now_ms, int *keys)
    VG_WARN_UNUSED;

/* 1 if the patient was erased, else 0. */
int vg_store_patient_erased(struct vg_store *st, const char *patient);

/* After a commit: copies the WAL into the database and truncates it, so
 * pages that held erased keys leave the WAL file too. Fails (harmlessly)
 * while another connection is reading. */
int vg_store_wal_truncate(struct vg_store *st) VG_WARN_UNUSED;

/* Seals a small secret (a TOTP seed) under the KEK, bound to 'purpose'
 * (e.g. "vigil/totp/v1|alice") as associated data. 'out' needs len +
 * VG_AEAD_OVERHEAD bytes. vg_store_open_secret reverses it
 * (VG_STORE_INTEGRITY if altered or bound to another purpose). */
int vg_store_seal_secret(struct vg_store *st, const char *purpose, const uint8_t *pt, size_t len,
                         uint8_t *out, size_t *out_len) VG_WARN_UNUSED;
int vg_store_open_secret(struct vg_store *st, const char *purpose, const uint8_t *in, size_t len,
                         uint8_t *out, size_t *out_len) VG_WARN_UNUSED;

/* The underlying connection, for modules that keep their own tables in the
 * same database and transaction (audit). Borrowed. */
struct sqlite3 *vg_store_db(struct vg_store *st);

#endif
