#include "store/store.h"

#include "store/keyring.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Unwrapped data keys are cached per handle: a direct-mapped table keyed by
 * key id. A miss costs one unwrap (one AEAD open), so the cache only needs
 * to be big enough for the patients active at once on one handle. */
#define DEK_CACHE 256

struct dek_slot {
    int64_t key_id;          /* 0 = empty */
    char patient[VG_ID_MAX + 1];
    uint8_t key[VG_KEY_BYTES];
};

struct vg_store {
    sqlite3 *db;
    struct vg_keyring *ring; /* the KEK; a reference, shared (keyring.h) */
    uint8_t *dedup_key;      /* stored sealed under the KEK; sodium_malloc'd */
    struct dek_slot *deks;   /* sodium_malloc'd array of DEK_CACHE */
    char err[256];
};

/* ---- schema ----
 * Migrations are append-only: a released step is never edited; a change is
 * a new step. Each runs in its own transaction with its version row. */
static const char *const migrations[] = {
    /* 1: the walking skeleton */
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);"
    "CREATE TABLE principals ("
    "  id TEXT PRIMARY KEY, role TEXT NOT NULL, created_ms INTEGER NOT NULL,"
    "  disabled INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE tokens ("
    "  hash BLOB PRIMARY KEY, principal_id TEXT NOT NULL REFERENCES principals(id),"
    "  created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL DEFAULT 0,"
    "  revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE patients (id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL);"
    "CREATE TABLE patient_keys ("
    "  key_id INTEGER PRIMARY KEY, patient_id TEXT NOT NULL REFERENCES patients(id),"
    "  wrapped BLOB NOT NULL, created_ms INTEGER NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'active');"
    "CREATE INDEX patient_keys_by_patient ON patient_keys(patient_id, state);"
    "CREATE TABLE devices ("
    "  id TEXT PRIMARY KEY, status TEXT NOT NULL, cert_serial TEXT NOT NULL,"
    "  cert_fingerprint TEXT NOT NULL, enrolled_ms INTEGER NOT NULL,"
    "  cert_not_after_ms INTEGER NOT NULL);"
    "CREATE TABLE assignments ("
    "  device_id TEXT NOT NULL REFERENCES devices(id),"
    "  patient_id TEXT NOT NULL REFERENCES patients(id),"
    "  start_ms INTEGER NOT NULL, end_ms INTEGER);"
    "CREATE INDEX assignments_by_device ON assignments(device_id, start_ms);"
    /* The exact effective time is sealed; only its hour is in the clear, so
     * date searches can use an index without exposing minute-level timing. */
    "CREATE TABLE readings ("
    "  id TEXT PRIMARY KEY, patient_id TEXT NOT NULL, device_id TEXT NOT NULL,"
    "  code TEXT NOT NULL, key_id INTEGER NOT NULL, hour INTEGER NOT NULL,"
    "  received_ms INTEGER NOT NULL, sealed BLOB NOT NULL);"
    "CREATE INDEX readings_by_patient ON readings(patient_id, hour, code);"
    "CREATE TABLE audit ("
    "  seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, actor TEXT NOT NULL,"
    "  action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL,"
    "  detail TEXT NOT NULL, source TEXT NOT NULL,"
    "  prev BLOB NOT NULL, hash BLOB NOT NULL);"
    /* Append-only at the SQL level; the hash chain catches edits made
     * below SQL (a hex editor on the file). */
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END;",
    /* 2: signed checkpoints of the audit chain's head */
    "CREATE TABLE audit_checkpoints ("
    "  id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, ts_ms INTEGER NOT NULL,"
    "  head BLOB NOT NULL, pubkey BLOB NOT NULL, sig BLOB NOT NULL);"
    "CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints"
    "  BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;"
    "CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints"
    "  BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;",
    /* 3: people and access — accounts with MFA, sessions and scoped service
     * tokens, care teams, break-glass grants, login throttling. 'role'
     * becomes a space-separated set of roles. */
    "ALTER TABLE principals ADD COLUMN kind TEXT NOT NULL DEFAULT 'service';"
    "ALTER TABLE principals ADD COLUMN pw_hash TEXT;"
    "ALTER TABLE principals ADD COLUMN totp_sealed BLOB;"
    "ALTER TABLE principals ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE principals ADD COLUMN last_login_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE principals ADD COLUMN cert_fingerprint TEXT;"
    "ALTER TABLE tokens ADD COLUMN id TEXT;"
    "ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'service';"
    "ALTER TABLE tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE tokens ADD COLUMN patients TEXT NOT NULL DEFAULT '*';"
    "ALTER TABLE tokens ADD COLUMN last_used_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tokens ADD COLUMN idle_ms INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX tokens_by_principal ON tokens(principal_id);"
    "CREATE TABLE careteam ("
    "  id INTEGER PRIMARY KEY, user_id TEXT NOT NULL REFERENCES principals(id),"
    "  patient_id TEXT NOT NULL REFERENCES patients(id),"
    "  start_ms INTEGER NOT NULL, end_ms INTEGER);"
    "CREATE INDEX careteam_by_user ON careteam(user_id, patient_id);"
    "CREATE TABLE breakglass ("
    "  id INTEGER PRIMARY KEY, user_id TEXT NOT NULL REFERENCES principals(id),"
    "  patient_id TEXT NOT NULL REFERENCES patients(id), reason TEXT NOT NULL,"
    "  start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL);"
    "CREATE INDEX breakglass_by_user ON breakglass(user_id, patient_id, end_ms);"
    "CREATE TABLE login_failures ("
    "  key TEXT PRIMARY KEY, failures INTEGER NOT NULL, window_start_ms INTEGER NOT NULL,"
    "  locked_until_ms INTEGER NOT NULL DEFAULT 0);",
    /* 4: a reading resent by its device (same device, code and effective
     * time, e.g. after a lost PUBACK) is stored once. The key is a keyed
     * hash, so the column reveals neither the time nor equality with a
     * guessed reading to someone holding only the database. */
    "ALTER TABLE readings ADD COLUMN dedup BLOB;"
    "CREATE UNIQUE INDEX readings_dedup ON readings(dedup);",
    /* 5: crypto-shredding leaves the patient's id (for the audit trail) and
     * the time of erasure; the data keys are gone. */
    "ALTER TABLE patients ADD COLUMN erased_ms INTEGER;",
    /* 6: the retention purge deletes by code and hour across patients. */
    "CREATE INDEX readings_by_code_hour ON readings(code, hour);",
    /* 7: fleet posture — the device inventory (what the device reports on
     * vigil/v1/d/{id}/info or an administrator records, and what vigil
     * observes of its sessions), imported CSAF advisories, security
     * training completions, finding suppressions, behaviour alarms and
     * quarantine. */
    "ALTER TABLE devices ADD COLUMN manufacturer TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE devices ADD COLUMN model TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE devices ADD COLUMN serial TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE devices ADD COLUMN firmware TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE devices ADD COLUMN class TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE devices ADD COLUMN location TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE devices ADD COLUMN info_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE devices ADD COLUMN cert_not_before_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE devices ADD COLUMN key_type TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE devices ADD COLUMN key_bits INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE devices ADD COLUMN last_seen_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE devices ADD COLUMN last_source TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE devices ADD COLUMN last_tls TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE devices ADD COLUMN last_cipher TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE devices ADD COLUMN quarantine_reason TEXT;"
    "ALTER TABLE devices ADD COLUMN quarantined_ms INTEGER;"
    "CREATE TABLE advisories ("
    "  id TEXT PRIMARY KEY, title TEXT NOT NULL, version TEXT NOT NULL,"
    "  released TEXT NOT NULL, sha256 TEXT NOT NULL, doc BLOB NOT NULL,"
    "  imported_ms INTEGER NOT NULL, imported_by TEXT NOT NULL);"
    "CREATE TABLE training ("
    "  id INTEGER PRIMARY KEY, user_id TEXT NOT NULL REFERENCES principals(id),"
    "  course TEXT NOT NULL, completed_ms INTEGER NOT NULL,"
    "  recorded_by TEXT NOT NULL, recorded_ms INTEGER NOT NULL);"
    "CREATE INDEX training_by_user ON training(user_id, course, completed_ms);"
    "CREATE TABLE suppressions ("
    "  finding_key TEXT PRIMARY KEY, reason TEXT NOT NULL, expires_ms INTEGER NOT NULL,"
    "  created_by TEXT NOT NULL, created_ms INTEGER NOT NULL);"
    "CREATE TABLE alarms ("
    "  id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, rule TEXT NOT NULL,"
    "  metric TEXT NOT NULL, value REAL NOT NULL, threshold REAL NOT NULL,"
    "  mitigation TEXT NOT NULL, raised_ms INTEGER NOT NULL, cleared_ms INTEGER);"
    "CREATE INDEX alarms_open ON alarms(cleared_ms, device_id);",
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

static const char kek_check_ad[] = "vigil/kek-check/v1";
static const uint8_t kek_check_pt[] = "vigil key-encryption key check";

static int fail(struct vg_store *st, int rc, const char *what)
{
    snprintf(st->err, sizeof st->err, "%s: %s", what, st->db ? sqlite3_errmsg(st->db) : "no db");
    return rc;
}

static int sqlite_rc(int rc)
{
    int primary = rc & 0xff;
    if (primary == SQLITE_FULL)
        return VG_STORE_FULL;
    if (primary == SQLITE_CONSTRAINT)
        return VG_STORE_EXISTS;
    if (primary == SQLITE_IOERR)
        return VG_STORE_IO;
    return VG_STORE_ERROR;
}

static int exec(struct vg_store *st, const char *sql)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return fail(st, sqlite_rc(rc), "sql");
    return VG_STORE_OK;
}

static int prepare(struct vg_store *st, const char *sql, sqlite3_stmt **stmt)
{
    /* SQLITE_PREPARE_PERSISTENT: these statements are reused for the life
     * of the connection; the cache below keeps them. */
    if (sqlite3_prepare_v3(st->db, sql, -1, 0, stmt, NULL) != SQLITE_OK)
        return fail(st, VG_STORE_ERROR, "prepare");
    return VG_STORE_OK;
}

static struct vg_store *store_new(void)
{
    struct vg_store *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->dedup_key = sodium_malloc(VG_KEY_BYTES);
    st->deks = sodium_malloc(sizeof(struct dek_slot) * DEK_CACHE);
    if (!st->deks || !st->dedup_key) {
        sodium_free(st->dedup_key);
        sodium_free(st->deks);
        free(st);
        return NULL;
    }
    memset(st->deks, 0, sizeof(struct dek_slot) * DEK_CACHE);
    return st;
}

static int open_db(struct vg_store *st, const char *path, int create)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK)
        return fail(st, VG_STORE_ERROR, "open database");
    /* Defensive mode: no writable_schema tricks, no shadow-table writes. */
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
    sqlite3_limit(st->db, SQLITE_LIMIT_LENGTH, 16 * 1024 * 1024);
    sqlite3_limit(st->db, SQLITE_LIMIT_SQL_LENGTH, 1024 * 1024);
    sqlite3_limit(st->db, SQLITE_LIMIT_ATTACHED, 0);
    sqlite3_busy_timeout(st->db, 10000);
    /* WAL + synchronous=FULL: a commit returns only after the WAL is
     * fsync'd, which is what lets a PUBACK mean "stored". */
    int rc = exec(st, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                      "PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;");
    if (rc)
        return rc;
    return VG_STORE_OK;
}

static int current_version(struct vg_store *st)
{
    sqlite3_stmt *s = NULL;
    int v = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT max(version) FROM schema_migrations", -1, &s,
                           NULL) != SQLITE_OK)
        return 0;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

static int migrate(struct vg_store *st)
{
    int rc = exec(st, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                      "version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)");
    if (rc)
        return rc;
    for (int v = current_version(st); v < N_MIGRATIONS; v++) {
        if ((rc = exec(st, "BEGIN IMMEDIATE")))
            return rc;
        if ((rc = exec(st, migrations[v]))) {
            vg_store_rollback(st);
            return rc;
        }
        char sql[128];
        snprintf(sql, sizeof sql, "INSERT INTO schema_migrations VALUES (%d, %" PRId64 ")",
                 v + 1, vg_now_ms());
        if ((rc = exec(st, sql)) || (rc = exec(st, "COMMIT"))) {
            vg_store_rollback(st);
            return rc;
        }
    }
    return VG_STORE_OK;
}

int vg_store_schema_version(struct vg_store *st) { return current_version(st); }

static int meta_put(struct vg_store *st, const char *key, const uint8_t *v, size_t len)
{
    sqlite3_stmt *s;
    int rc = prepare(st, "INSERT INTO meta(key, value) VALUES (?, ?)", &s);
    if (rc)
        return rc;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, v, (int)len, SQLITE_STATIC);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    return step == SQLITE_DONE ? VG_STORE_OK : fail(st, sqlite_rc(step), "meta");
}

/* Which KEK of the keyring opened kek_check: 0 current, 1 previous. */
static int check_kek(struct vg_store *st, int *which)
{
    sqlite3_stmt *s;
    int rc = prepare(st, "SELECT value FROM meta WHERE key = 'kek_check'", &s);
    if (rc)
        return rc;
    rc = VG_STORE_BAD_KEK;
    if (sqlite3_step(s) == SQLITE_ROW) {
        const uint8_t *blob = sqlite3_column_blob(s, 0);
        size_t len = (size_t)sqlite3_column_bytes(s, 0);
        uint8_t pt[64];
        size_t pt_len;
        int w = -1;
        if (blob && len <= sizeof pt + VG_AEAD_OVERHEAD &&
            (w = vg_keyring_open(st->ring, (const uint8_t *)kek_check_ad, sizeof kek_check_ad - 1,
                                 blob, len, pt, &pt_len)) >= 0 &&
            pt_len == sizeof kek_check_pt && !memcmp(pt, kek_check_pt, pt_len)) {
            rc = VG_STORE_OK;
            if (which)
                *which = w;
        }
    }
    sqlite3_finalize(s);
    if (rc)
        snprintf(st->err, sizeof st->err,
                 "the key-encryption key does not open this database "
                 "(wrong, replaced or corrupted keys/kek); refusing to continue");
    return rc;
}

/* The deduplication key (store.h, vg_store_reading_put) is a random
 * secret kept in meta sealed under the KEK, so a KEK rotation rewraps it
 * and the keyed hashes already stored stay valid. Databases made before
 * it was stored used HMAC-SHA256(KEK, purpose): that value is adopted and
 * stored the first time such a database is opened, which is what keeps
 * their existing dedup column meaningful. */
static const char dedup_ad[] = "vigil/dedup-key/v1";

static int load_dedup_key(struct vg_store *st)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        sqlite3_stmt *s;
        int rc = prepare(st, "SELECT value FROM meta WHERE key = 'dedup_key'", &s);
        if (rc)
            return rc;
        int step = sqlite3_step(s);
        if (step == SQLITE_ROW) {
            size_t klen = 0;
            int w = vg_keyring_open(st->ring, (const uint8_t *)dedup_ad, sizeof dedup_ad - 1,
                                    sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0),
                                    st->dedup_key, &klen);
            sqlite3_finalize(s);
            if (w < 0 || klen != VG_KEY_BYTES) {
                snprintf(st->err, sizeof st->err, "the stored deduplication key failed its integrity check");
                return VG_STORE_INTEGRITY;
            }
            return VG_STORE_OK;
        }
        sqlite3_finalize(s);
        if (step != SQLITE_DONE)
            return fail(st, sqlite_rc(step), "dedup key");
        /* Not stored yet: adopt the derived value of older databases (a new
         * database gets the same; it is as secret as the KEK itself). */
        static const char purpose[] = "vigil/dedup/v1";
        uint8_t key[VG_KEY_BYTES], sealed[VG_KEY_BYTES + VG_AEAD_OVERHEAD];
        size_t sealed_len;
        vg_keyring_hmac(st->ring, (const uint8_t *)purpose, sizeof purpose - 1, key);
        rc = vg_keyring_seal(st->ring, (const uint8_t *)dedup_ad, sizeof dedup_ad - 1, key,
                             sizeof key, sealed, &sealed_len) == 0
                 ? VG_STORE_OK
                 : VG_STORE_ERROR;
        sodium_memzero(key, sizeof key);
        if (rc)
            return fail(st, rc, "seal dedup key");
        /* OR IGNORE: the API's and the writer's connections may both get
         * here first; the loop then reads whichever row won. */
        if (prepare(st, "INSERT OR IGNORE INTO meta(key, value) VALUES ('dedup_key', ?)", &s))
            return VG_STORE_ERROR;
        sqlite3_bind_blob(s, 1, sealed, (int)sealed_len, SQLITE_STATIC);
        step = sqlite3_step(s);
        sqlite3_finalize(s);
        if (step != SQLITE_DONE)
            return fail(st, sqlite_rc(step), "store dedup key");
    }
    return fail(st, VG_STORE_ERROR, "dedup key");
}

int vg_store_create(const char *path, const uint8_t kek[VG_KEY_BYTES], char *err,
                    size_t err_size)
{
    struct stat sb;
    if (stat(path, &sb) == 0) {
        snprintf(err, err_size, "%s already exists", path);
        return VG_STORE_EXISTS;
    }
    struct vg_store *st = store_new();
    if (st && !(st->ring = vg_keyring_new(kek))) {
        vg_store_close(st);
        st = NULL;
    }
    if (!st) {
        snprintf(err, err_size, "out of memory");
        return VG_STORE_ERROR;
    }
    int rc = open_db(st, path, 1);
    if (!rc)
        rc = migrate(st);
    if (!rc) {
        uint8_t sealed[sizeof kek_check_pt + VG_AEAD_OVERHEAD];
        size_t sealed_len;
        if (vg_keyring_seal(st->ring, (const uint8_t *)kek_check_ad, sizeof kek_check_ad - 1,
                            kek_check_pt, sizeof kek_check_pt, sealed, &sealed_len) != 0)
            rc = VG_STORE_ERROR;
        else
            rc = meta_put(st, "kek_check", sealed, sealed_len);
    }
    if (!rc)
        rc = load_dedup_key(st);
    if (rc)
        snprintf(err, err_size, "%s", st->err[0] ? st->err : "cannot create database");
    vg_store_close(st);
    if (chmod(path, 0600) != 0 && !rc) {
        snprintf(err, err_size, "chmod %s: %s", path, strerror(errno));
        rc = VG_STORE_ERROR;
    }
    return rc;
}

int vg_store_open_ring(const char *path, struct vg_keyring *ring, struct vg_store **out,
                       int *which, char *err, size_t err_size)
{
    *out = NULL;
    if (access(path, R_OK | W_OK) != 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return VG_STORE_ERROR;
    }
    struct vg_store *st = store_new();
    if (!st) {
        snprintf(err, err_size, "out of memory");
        return VG_STORE_ERROR;
    }
    vg_keyring_ref(ring);
    st->ring = ring;
    int rc = open_db(st, path, 0);
    if (!rc)
        rc = migrate(st);
    if (!rc)
        rc = check_kek(st, which);
    if (!rc)
        rc = load_dedup_key(st);
    if (rc) {
        snprintf(err, err_size, "%s", st->err);
        vg_store_close(st);
        return rc;
    }
    *out = st;
    return VG_STORE_OK;
}

int vg_store_open(const char *path, const uint8_t kek[VG_KEY_BYTES], struct vg_store **out,
                  char *err, size_t err_size)
{
    *out = NULL;
    struct vg_keyring *ring = vg_keyring_new(kek);
    if (!ring) {
        snprintf(err, err_size, "out of memory");
        return VG_STORE_ERROR;
    }
    int rc = vg_store_open_ring(path, ring, out, NULL, err, err_size);
    vg_keyring_unref(ring); /* the store holds its own reference */
    return rc;
}

struct vg_keyring *vg_store_keyring(struct vg_store *st) { return st->ring; }

void vg_store_close(struct vg_store *st)
{
    if (!st)
        return;
    if (st->db) {
        sqlite3_stmt *s;
        while ((s = sqlite3_next_stmt(st->db, NULL)))
            sqlite3_finalize(s);
        sqlite3_close(st->db);
    }
    vg_keyring_unref(st->ring);
    sodium_free(st->dedup_key); /* sodium_free wipes before freeing */
    sodium_free(st->deks);
    free(st);
}

const char *vg_store_errmsg(const struct vg_store *st) { return st->err; }
struct sqlite3 *vg_store_db(struct vg_store *st) { return st->db; }

int vg_store_begin(struct vg_store *st) { return exec(st, "BEGIN IMMEDIATE"); }
int vg_store_commit(struct vg_store *st) { return exec(st, "COMMIT"); }
void vg_store_rollback(struct vg_store *st)
{
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Runs a prepared write of text parameters. */
static int run(struct vg_store *st, const char *sql, const char *what, int n, ...)
{
    sqlite3_stmt *s;
    int rc = prepare(st, sql, &s);
    if (rc)
        return rc;
    va_list ap;
    va_start(ap, n);
    for (int i = 1; i <= n; i++)
        sqlite3_bind_text(s, i, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
    va_end(ap);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    if (step != SQLITE_DONE)
        return fail(st, sqlite_rc(step), what);
    return VG_STORE_OK;
}

/* ---- principals and tokens ---- */

int vg_store_principal_add(struct vg_store *st, const char *id, const char *role, int64_t now_ms)
{
    sqlite3_stmt *s;
    int rc = prepare(st, "INSERT INTO principals(id, role, created_ms) VALUES (?, ?, ?)", &s);
    if (rc)
        return rc;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, role, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now_ms);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    return step == SQLITE_DONE ? VG_STORE_OK : fail(st, sqlite_rc(step), "add principal");
}

int vg_store_token_add(struct vg_store *st, const char *principal,
                       const uint8_t hash[VG_SHA256_BYTES], int64_t now_ms, int64_t expires_ms)
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     "INSERT INTO tokens(hash, principal_id, created_ms, expires_ms)"
                     " VALUES (?, ?, ?, ?)",
                     &s);
    if (rc)
        return rc;
    sqlite3_bind_blob(s, 1, hash, VG_SHA256_BYTES, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, principal, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now_ms);
    sqlite3_bind_int64(s, 4, expires_ms);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    return step == SQLITE_DONE ? VG_STORE_OK : fail(st, sqlite_rc(step), "add token");
}

int vg_store_token_lookup(struct vg_store *st, const uint8_t hash[VG_SHA256_BYTES],
                          int64_t now_ms, char principal[VG_ID_MAX + 1], char role[VG_ROLE_MAX])
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     "SELECT p.id, p.role, t.hash FROM tokens t JOIN principals p"
                     " ON p.id = t.principal_id WHERE t.hash = ? AND t.revoked = 0"
                     " AND p.disabled = 0 AND (t.expires_ms = 0 OR t.expires_ms > ?)",
                     &s);
    if (rc)
        return rc;
    sqlite3_bind_blob(s, 1, hash, VG_SHA256_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now_ms);
    rc = VG_STORE_NOT_FOUND;
    if (sqlite3_step(s) == SQLITE_ROW) {
        const void *h = sqlite3_column_blob(s, 2);
        /* The index lookup already matched; the constant-time compare keeps
         * the final decision free of data-dependent branches. */
        if (h && sqlite3_column_bytes(s, 2) == VG_SHA256_BYTES &&
            vg_ct_equal(h, hash, VG_SHA256_BYTES)) {
            vg_strlcpy(principal, (const char *)sqlite3_column_text(s, 0), VG_ID_MAX + 1);
            vg_strlcpy(role, (const char *)sqlite3_column_text(s, 1), VG_ROLE_MAX);
            rc = VG_STORE_OK;
        }
    }
    sqlite3_finalize(s);
    return rc;
}

/* ---- patients, devices, assignments ---- */

int vg_store_patient_add(struct vg_store *st, const char *id, int64_t now_ms)
{
    char ms[24];
    snprintf(ms, sizeof ms, "%" PRId64, now_ms);
    return run(st, "INSERT INTO patients(id, created_ms) VALUES (?, CAST(? AS INTEGER))",
               "add patient", 2, id, ms);
}

static int exists(struct vg_store *st, const char *sql, const char *id)
{
    sqlite3_stmt *s;
    int rc = prepare(st, sql, &s);
    if (rc)
        return rc;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    if (step == SQLITE_ROW)
        return VG_STORE_OK;
    if (step == SQLITE_DONE)
        return VG_STORE_NOT_FOUND;
    return fail(st, VG_STORE_ERROR, "lookup");
}

int vg_store_patient_exists(struct vg_store *st, const char *id)
{
    return exists(st, "SELECT 1 FROM patients WHERE id = ?", id);
}

int vg_store_device_add(struct vg_store *st, const struct vg_device_info *d)
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     "INSERT INTO devices(id, status, cert_serial, cert_fingerprint,"
                     " enrolled_ms, cert_not_after_ms) VALUES (?, ?, ?, ?, ?, ?)",
                     &s);
    if (rc)
        return rc;
    sqlite3_bind_text(s, 1, d->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, d->status, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, d->cert_serial, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, d->cert_fingerprint, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, d->enrolled_ms);
    sqlite3_bind_int64(s, 6, d->cert_not_after_ms);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    return step == SQLITE_DONE ? VG_STORE_OK : fail(st, sqlite_rc(step), "add device");
}

int vg_store_device_get(struct vg_store *st, const char *id, struct vg_device_info *out)
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     "SELECT id, status, cert_serial, cert_fingerprint, enrolled_ms,"
                     " cert_not_after_ms FROM devices WHERE id = ?",
                     &s);
    if (rc)
        return rc;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        vg_strlcpy(out->id, (const char *)sqlite3_column_text(s, 0), sizeof out->id);
        vg_strlcpy(out->status, (const char *)sqlite3_column_text(s, 1), sizeof out->status);
        vg_strlcpy(out->cert_serial, (const char *)sqlite3_column_text(s, 2),
                   sizeof out->cert_serial);
        vg_strlcpy(out->cert_fingerprint, (const char *)sqlite3_column_text(s, 3),
                   sizeof out->cert_fingerprint);
        out->enrolled_ms = sqlite3_column_int64(s, 4);
        out->cert_not_after_ms = sqlite3_column_int64(s, 5);
        rc = VG_STORE_OK;
    } else {
        rc = step == SQLITE_DONE ? VG_STORE_NOT_FOUND : fail(st, VG_STORE_ERROR, "get device");
    }
    sqlite3_finalize(s);
    return rc;
}

int vg_store_device_patient(struct vg_store *st, const char *device, int64_t at_ms,
                            char patient[VG_ID_MAX + 1])
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     "SELECT patient_id FROM assignments WHERE device_id = ? AND start_ms <= ?"
                     " AND (end_ms IS NULL OR end_ms > ?) ORDER BY start_ms DESC LIMIT 1",
                     &s);
    if (rc)
        return rc;
    sqlite3_bind_text(s, 1, device, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, at_ms);
    sqlite3_bind_int64(s, 3, at_ms);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        vg_strlcpy(patient, (const char *)sqlite3_column_text(s, 0), VG_ID_MAX + 1);
        rc = VG_STORE_OK;
    } else {
        rc = step == SQLITE_DONE ? VG_STORE_NOT_FOUND : fail(st, VG_STORE_ERROR, "assignment");
    }
    sqlite3_finalize(s);
    return rc;
}

int vg_store_device_assign(struct vg_store *st, const char *device, const char *patient,
                           int64_t now_ms)
{
    int rc = exists(st, "SELECT 1 FROM devices WHERE id = ?", device);
    if (rc == VG_STORE_NOT_FOUND) {
        snprintf(st->err, sizeof st->err, "no device with this id");
        return rc;
    }
    if (rc)
        return rc;
    if ((rc = vg_store_patient_exists(st, patient)) != VG_STORE_OK) {
        if (rc == VG_STORE_NOT_FOUND)
            snprintf(st->err, sizeof st->err, "no patient with this id");
        return rc;
    }
    char current[VG_ID_MAX + 1];
    rc = vg_store_device_patient(st, device, now_ms, current);
    if (rc == VG_STORE_OK && !strcmp(current, patient))
        return VG_STORE_OK;
    if (rc != VG_STORE_OK && rc != VG_STORE_NOT_FOUND)
        return rc;
    char ms[24];
    snprintf(ms, sizeof ms, "%" PRId64, now_ms);
    rc = run(st, "UPDATE assignments SET end_ms = CAST(? AS INTEGER) WHERE device_id = ?"
                 " AND end_ms IS NULL",
             "end assignment", 2, ms, device);
    if (rc)
        return rc;
    return run(st, "INSERT INTO assignments(device_id, patient_id, start_ms)"
                   " VALUES (?, ?, CAST(? AS INTEGER))",
               "assign", 3, device, patient, ms);
}

/* ---- data keys ---- */

static void dek_ad(char *ad, size_t size, const char *patient, int64_t key_id, size_t *len)
{
    int n = snprintf(ad, size, "vigil/dek/v1|%s|%" PRId64, patient, key_id);
    *len = n < 0 ? 0 : (size_t)n;
}

static struct dek_slot *dek_cached(struct vg_store *st, int64_t key_id)
{
    struct dek_slot *slot = &st->deks[(uint64_t)key_id % DEK_CACHE];
    return slot->key_id == key_id ? slot : NULL;
}

static int dek_unwrap(struct vg_store *st, int64_t key_id, const char *patient,
                      const uint8_t *wrapped, size_t wlen, struct dek_slot **out)
{
    struct dek_slot *slot = &st->deks[(uint64_t)key_id % DEK_CACHE];
    char ad[128];
    size_t ad_len, klen;
    dek_ad(ad, sizeof ad, patient, key_id, &ad_len);
    if (wlen != VG_KEY_BYTES + VG_AEAD_OVERHEAD ||
        vg_keyring_open(st->ring, (const uint8_t *)ad, ad_len, wrapped, wlen, slot->key, &klen) < 0 ||
        klen != VG_KEY_BYTES) {
        sodium_memzero(slot, sizeof *slot);
        snprintf(st->err, sizeof st->err, "a patient data key failed its integrity check");
        return VG_STORE_INTEGRITY;
    }
    slot->key_id = key_id;
    vg_strlcpy(slot->patient, patient, sizeof slot->patient);
    *out = slot;
    return VG_STORE_OK;
}

/* The patient's active data key, created on first use (inside the caller's
 * transaction, so a rolled-back batch leaves no orphan key). */
static int dek_active(struct vg_store *st, const char *patient, struct dek_slot **out)
{
    sqlite3_stmt *s;
    int rc = prepare(st,
                     "SELECT key_id, wrapped FROM patient_keys WHERE patient_id = ?"
                     " AND state = 'active' ORDER BY key_id DESC LIMIT 1",
                     &s);
    if (rc)
        return rc;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        int64_t key_id = sqlite3_column_int64(s, 0);
        struct dek_slot *slot = dek_cached(st, key_id);
        if (slot) {
            *out = slot;
            rc = VG_STORE_OK;
        } else {
            rc = dek_unwrap(st, key_id, patient, sqlite3_column_blob(s, 1),
                            (size_t)sqlite3_column_bytes(s, 1), out);
        }
        sqlite3_finalize(s);
        return rc;
    }
    sqlite3_finalize(s);
    if (step != SQLITE_DONE)
        return fail(st, VG_STORE_ERROR, "data key");

    /* New key: allocate the row id first, because the wrap's associated
     * data binds the key to its id and patient. */
    rc = prepare(st,
                 "INSERT INTO patient_keys(patient_id, wrapped, created_ms) VALUES (?, x'', ?)",
                 &s);
    if (rc)
        return rc;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, vg_now_ms());
    step = sqlite3_step(s);
    sqlite3_finalize(s);
    if (step != SQLITE_DONE)
        return fail(st, sqlite_rc(step), "new data key");
    int64_t key_id = sqlite3_last_insert_rowid(st->db);
    struct dek_slot *slot = &st->deks[(uint64_t)key_id % DEK_CACHE];
    vg_random(slot->key, VG_KEY_BYTES);
    slot->key_id = key_id;
    vg_strlcpy(slot->patient, patient, sizeof slot->patient);
    uint8_t wrapped[VG_KEY_BYTES + VG_AEAD_OVERHEAD];
    size_t wlen, ad_len;
    char ad[128];
    dek_ad(ad, sizeof ad, patient, key_id, &ad_len);
    if (vg_keyring_seal(st->ring, (const uint8_t *)ad, ad_len, slot->key, VG_KEY_BYTES, wrapped,
                        &wlen) != 0) {
        sodium_memzero(slot, sizeof *slot);
        return fail(st, VG_STORE_ERROR, "wrap data key");
    }
    rc = prepare(st, "UPDATE patient_keys SET wrapped = ? WHERE key_id = ?", &s);
    if (rc)
        return rc;
    sqlite3_bind_blob(s, 1, wrapped, (int)wlen, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, key_id);
    step = sqlite3_step(s);
    sqlite3_finalize(s);
    if (step != SQLITE_DONE) {
        sodium_memzero(slot, sizeof *slot);
        return fail(st, sqlite_rc(step), "store data key");
    }
    *out = slot;
    return VG_STORE_OK;
}

/* Forget cached keys created in a transaction that rolled back. */
static void dek_forget(struct vg_store *st, int64_t key_id)
{
    struct dek_slot *slot = &st->deks[(uint64_t)key_id % DEK_CACHE];
    if (slot->key_id == key_id)
        sodium_memzero(slot, sizeof *slot);
}

/* ---- readings ---- */

/* Associated data: everything that places the ciphertext in its row. */
static size_t obs_ad(char *ad, size_t size, const char *id, const char *patient,
                     const char *device, const char *code, int64_t key_id)
{
    int n = snprintf(ad, size, "vigil/obs/v1|%s|%s|%s|%s|%" PRId64, id, patient, device, code,
                     key_id);
    return n < 0 || (size_t)n >= size ? 0 : (size_t)n;
}

/* Sealed plaintext: version 1, time ms (i64 BE), value (IEEE-754 bits BE),
 * unit length, unit. Fixed layout, no parser ambiguity on the way back. */
#define OBS_PT_MAX (1 + 8 + 8 + 1 + 16)

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

int vg_store_reading_put(struct vg_store *st, const char *patient, const char *device,
                         const struct vg_reading *r, int64_t received_ms,
                         char id_out[VG_OBS_ID_MAX])
{
    struct dek_slot *dek;
    int rc = dek_active(st, patient, &dek);
    if (rc)
        return rc;
    uint8_t rid[16];
    vg_random(rid, sizeof rid);
    vg_hex(rid, sizeof rid, id_out);

    uint8_t pt[OBS_PT_MAX];
    size_t ulen = strnlen(r->unit, sizeof r->unit - 1);
    uint64_t bits;
    memcpy(&bits, &r->value, sizeof bits);
    pt[0] = 1;
    put_u64(pt + 1, (uint64_t)r->time_ms);
    put_u64(pt + 9, bits);
    pt[17] = (uint8_t)ulen;
    memcpy(pt + 18, r->unit, ulen);
    size_t pt_len = 18 + ulen;

    char ad[320];
    size_t ad_len = obs_ad(ad, sizeof ad, id_out, patient, device, r->code, dek->key_id);
    uint8_t sealed[OBS_PT_MAX + VG_AEAD_OVERHEAD];
    size_t sealed_len;
    int sealed_ok = ad_len > 0 && vg_aead_seal(dek->key, (const uint8_t *)ad, ad_len, pt, pt_len,
                                               sealed, &sealed_len) == 0;
    sodium_memzero(pt, sizeof pt);
    if (!sealed_ok)
        return fail(st, VG_STORE_ERROR, "seal reading");

    /* Resends are recognised by device, code and effective time. */
    uint8_t dedup[crypto_auth_hmacsha256_BYTES];
    char dmsg[VG_ID_MAX + 64];
    int dn = snprintf(dmsg, sizeof dmsg, "%s|%s|%" PRId64, device, r->code, r->time_ms);
    crypto_auth_hmacsha256(dedup, (const uint8_t *)dmsg, dn > 0 ? (size_t)dn : 0, st->dedup_key);

    sqlite3_stmt *s;
    rc = prepare(st,
                 "INSERT OR IGNORE INTO readings(id, patient_id, device_id, code, key_id, hour,"
                 " received_ms, sealed, dedup) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 &s);
    if (rc)
        return rc;
    sqlite3_bind_text(s, 1, id_out, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, patient, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, device, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, r->code, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, dek->key_id);
    sqlite3_bind_int64(s, 6, r->time_ms / 3600000);
    sqlite3_bind_int64(s, 7, received_ms);
    sqlite3_bind_blob(s, 8, sealed, (int)sealed_len, SQLITE_STATIC);
    sqlite3_bind_blob(s, 9, dedup, 16, SQLITE_STATIC);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    if (step != SQLITE_DONE) {
        dek_forget(st, dek->key_id);
        return fail(st, sqlite_rc(step), "insert reading");
    }
    if (sqlite3_changes(st->db) == 0)
        return VG_STORE_DUPLICATE; /* already stored: a resend */
    return VG_STORE_OK;
}

static int obs_open(struct vg_store *st, sqlite3_stmt *s, struct vg_obs *o)
{
    int64_t key_id = sqlite3_column_int64(s, 4);
    struct dek_slot *dek = dek_cached(st, key_id);
    if (!dek || strcmp(dek->patient, o->patient)) {
        sqlite3_stmt *k;
        int rc = prepare(st, "SELECT wrapped, patient_id FROM patient_keys WHERE key_id = ?", &k);
        if (rc)
            return rc;
        sqlite3_bind_int64(k, 1, key_id);
        rc = VG_STORE_INTEGRITY;
        if (sqlite3_step(k) == SQLITE_ROW)
            /* Unwrapping with the row's own patient id as associated data:
             * a key row re-pointed at another patient fails here. */
            rc = dek_unwrap(st, key_id, o->patient, sqlite3_column_blob(k, 0),
                            (size_t)sqlite3_column_bytes(k, 0), &dek);
        else
            snprintf(st->err, sizeof st->err, "a reading's data key is missing (erased?)");
        sqlite3_finalize(k);
        if (rc)
            return rc;
    }
    char ad[320];
    size_t ad_len = obs_ad(ad, sizeof ad, o->id, o->patient, o->device, o->reading.code, key_id);
    const uint8_t *sealed = sqlite3_column_blob(s, 7);
    size_t sealed_len = (size_t)sqlite3_column_bytes(s, 7);
    uint8_t pt[OBS_PT_MAX];
    size_t pt_len;
    if (!sealed || sealed_len > OBS_PT_MAX + VG_AEAD_OVERHEAD || ad_len == 0 ||
        vg_aead_open(dek->key, (const uint8_t *)ad, ad_len, sealed, sealed_len, pt, &pt_len) != 0 ||
        pt_len < 18 || pt[0] != 1 || (size_t)pt[17] != pt_len - 18 || pt[17] >= sizeof o->reading.unit) {
        sodium_memzero(pt, sizeof pt);
        snprintf(st->err, sizeof st->err, "reading %s failed its integrity check", o->id);
        return VG_STORE_INTEGRITY;
    }
    uint64_t bits = get_u64(pt + 9);
    o->reading.time_ms = (int64_t)get_u64(pt + 1);
    memcpy(&o->reading.value, &bits, sizeof bits);
    memcpy(o->reading.unit, pt + 18, pt[17]);
    o->reading.unit[pt[17]] = '\0';
    sodium_memzero(pt, sizeof pt);
    return VG_STORE_OK;
}

/* Order of two readings in the query's direction: < 0 if a comes first. */
static int obs_order(const struct vg_obs *a, const struct vg_obs *b, int ascending)
{
    int c = a->reading.time_ms < b->reading.time_ms ? -1 : a->reading.time_ms > b->reading.time_ms;
    if (!c)
        c = strcmp(a->id, b->id);
    return ascending ? c : -c;
}

static int obs_newest_first(const void *a, const void *b) { return obs_order(a, b, 0); }
static int obs_oldest_first(const void *a, const void *b) { return obs_order(a, b, 1); }

struct obs_group {
    struct vg_obs *v;
    size_t n, cap;
};

int vg_store_obs_query(struct vg_store *st, const struct vg_obs_query *q, vg_obs_fn fn, void *ctx)
{
    int64_t lo = q->from_ms, hi = q->to_ms ? q->to_ms : INT64_MAX;
    struct vg_obs cursor;
    int have_cursor = q->cursor_id[0] != '\0';
    if (have_cursor) {
        memset(&cursor, 0, sizeof cursor);
        cursor.reading.time_ms = q->cursor_ms;
        vg_strlcpy(cursor.id, q->cursor_id, sizeof cursor.id);
        /* Nothing on the far side of the cursor can be on this page. */
        if (q->ascending && q->cursor_ms > lo)
            lo = q->cursor_ms;
        if (!q->ascending && q->cursor_ms < hi - 1)
            hi = q->cursor_ms + 1;
    }
    if (lo < 0)
        lo = 0;
    if (hi <= lo)
        return 0;
    sqlite3_stmt *s;
    int rc = prepare(st,
                     q->ascending
                         ? "SELECT id, patient_id, device_id, code, key_id, hour, received_ms, sealed"
                           " FROM readings WHERE patient_id = ?1 AND (?2 IS NULL OR code = ?2)"
                           " AND hour BETWEEN ?3 AND ?4 ORDER BY hour ASC"
                         : "SELECT id, patient_id, device_id, code, key_id, hour, received_ms, sealed"
                           " FROM readings WHERE patient_id = ?1 AND (?2 IS NULL OR code = ?2)"
                           " AND hour BETWEEN ?3 AND ?4 ORDER BY hour DESC",
                     &s);
    if (rc)
        return rc;
    sqlite3_bind_text(s, 1, q->patient, -1, SQLITE_STATIC);
    if (q->code)
        sqlite3_bind_text(s, 2, q->code, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, lo / 3600000);
    sqlite3_bind_int64(s, 4, hi == INT64_MAX ? INT64_MAX : (hi - 1) / 3600000);

    /* Rows arrive ordered by hour; within an hour they are sorted after
     * decryption and handed out one hour-group at a time. */
    struct obs_group g = {0};
    int64_t group_hour = INT64_MIN;
    int n = 0, step, stop = 0;
    rc = VG_STORE_OK;
    for (;;) {
        step = sqlite3_step(s);
        int64_t hour = step == SQLITE_ROW ? sqlite3_column_int64(s, 5) : INT64_MIN;
        if (g.n && (step != SQLITE_ROW || hour != group_hour)) {
            qsort(g.v, g.n, sizeof *g.v, q->ascending ? obs_oldest_first : obs_newest_first);
            for (size_t i = 0; i < g.n && !stop; i++) {
                n++;
                if (fn(ctx, &g.v[i]) || (q->limit && (size_t)n >= q->limit))
                    stop = 1;
            }
            sodium_memzero(g.v, g.n * sizeof *g.v);
            g.n = 0;
        }
        if (stop || step != SQLITE_ROW)
            break;
        group_hour = hour;
        if (g.n == g.cap) {
            size_t cap = g.cap ? g.cap * 2 : 64;
            struct vg_obs *grown = realloc(g.v, cap * sizeof *grown);
            if (!grown) {
                rc = fail(st, VG_STORE_ERROR, "query readings: out of memory");
                break;
            }
            g.v = grown;
            g.cap = cap;
        }
        struct vg_obs *o = &g.v[g.n];
        memset(o, 0, sizeof *o);
        vg_strlcpy(o->id, (const char *)sqlite3_column_text(s, 0), sizeof o->id);
        vg_strlcpy(o->patient, (const char *)sqlite3_column_text(s, 1), sizeof o->patient);
        vg_strlcpy(o->device, (const char *)sqlite3_column_text(s, 2), sizeof o->device);
        vg_strlcpy(o->reading.code, (const char *)sqlite3_column_text(s, 3), sizeof o->reading.code);
        o->received_ms = sqlite3_column_int64(s, 6);
        if ((rc = obs_open(st, s, o)) != VG_STORE_OK)
            break;
        int64_t t = o->reading.time_ms;
        if (t < q->from_ms || (q->to_ms && t >= q->to_ms) ||
            (have_cursor && obs_order(o, &cursor, q->ascending) <= 0)) {
            sodium_memzero(o, sizeof *o);
            continue;
        }
        g.n++;
    }
    sqlite3_finalize(s);
    if (g.v) {
        sodium_memzero(g.v, g.cap * sizeof *g.v);
        free(g.v);
    }
    if (rc != VG_STORE_OK)
        return rc;
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return fail(st, VG_STORE_ERROR, "query readings");
    return n;
}

/* ---- small secrets sealed under the KEK (TOTP seeds) ---- */

int vg_store_seal_secret(struct vg_store *st, const char *purpose, const uint8_t *pt, size_t len,
                         uint8_t *out, size_t *out_len)
{
    return vg_keyring_seal(st->ring, (const uint8_t *)purpose, strlen(purpose), pt, len, out,
                           out_len) == 0
               ? VG_STORE_OK
               : VG_STORE_ERROR;
}

int vg_store_open_secret(struct vg_store *st, const char *purpose, const uint8_t *in, size_t len,
                         uint8_t *out, size_t *out_len)
{
    return vg_keyring_open(st->ring, (const uint8_t *)purpose, strlen(purpose), in, len, out,
                           out_len) >= 0
               ? VG_STORE_OK
               : VG_STORE_INTEGRITY;
}

/* ---- key rotation and crypto-shredding ---- */

int vg_store_patient_erased(struct vg_store *st, const char *patient)
{
    sqlite3_stmt *s;
    if (prepare(st, "SELECT erased_ms IS NOT NULL FROM patients WHERE id = ?", &s))
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    sqlite3_finalize(s);
    return rc;
}

static void forget_patient_keys(struct vg_store *st, const char *patient)
{
    for (size_t i = 0; i < DEK_CACHE; i++)
        if (st->deks[i].key_id && !strcmp(st->deks[i].patient, patient))
            sodium_memzero(&st->deks[i], sizeof st->deks[i]);
}

/* ---- KEK rotation ----
 * Rewraps every value sealed directly under the KEK: the patients' data
 * keys, the KEK check, the deduplication key and the TOTP seeds. Readings
 * are sealed under data keys and are not touched, so the cost is one
 * open+seal per key, not per reading. */

/* Rewraps one value of 'table' (rowid-keyed) if it is still under the
 * previous KEK. *done counts rewrapped values. */
static int rewrap_one(struct vg_store *st, const char *update_sql, sqlite3_int64 rowid,
                      const char *rowkey, const char *ad, size_t ad_len, const uint8_t *blob,
                      size_t len, int *done)
{
    uint8_t pt[256], sealed[256 + VG_AEAD_OVERHEAD];
    size_t pt_len = 0, sealed_len = 0;
    if (len < VG_AEAD_OVERHEAD || len > sizeof pt + VG_AEAD_OVERHEAD) {
        snprintf(st->err, sizeof st->err, "a value sealed under the KEK has an impossible length");
        return VG_STORE_INTEGRITY;
    }
    int w = vg_keyring_open(st->ring, (const uint8_t *)ad, ad_len, blob, len, pt, &pt_len);
    if (w < 0) {
        snprintf(st->err, sizeof st->err,
                 "a value sealed under the KEK opens with neither the old nor the new KEK; "
                 "rotation stopped, nothing changed");
        return VG_STORE_INTEGRITY;
    }
    if (w == 0)
        return VG_STORE_OK; /* already under the new KEK */
    int rc = vg_keyring_seal(st->ring, (const uint8_t *)ad, ad_len, pt, pt_len, sealed, &sealed_len)
                 ? VG_STORE_ERROR
                 : VG_STORE_OK;
    sodium_memzero(pt, sizeof pt);
    if (rc)
        return fail(st, rc, "rewrap");
    sqlite3_stmt *u;
    if ((rc = prepare(st, update_sql, &u)))
        return rc;
    sqlite3_bind_blob(u, 1, sealed, (int)sealed_len, SQLITE_STATIC);
    if (rowkey)
        sqlite3_bind_text(u, 2, rowkey, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(u, 2, rowid);
    int step = sqlite3_step(u);
    sqlite3_finalize(u);
    if (step != SQLITE_DONE)
        return fail(st, sqlite_rc(step), "rewrap");
    (*done)++;
    return VG_STORE_OK;
}

static int rewrap_all(struct vg_store *st, struct vg_kek_rotation *out)
{
    sqlite3_stmt *s;
    int rc = prepare(st, "SELECT key_id, patient_id, wrapped FROM patient_keys", &s);
    if (rc)
        return rc;
    int step;
    while (rc == VG_STORE_OK && (step = sqlite3_step(s)) == SQLITE_ROW) {
        char ad[128];
        size_t ad_len;
        sqlite3_int64 key_id = sqlite3_column_int64(s, 0);
        dek_ad(ad, sizeof ad, (const char *)sqlite3_column_text(s, 1), key_id, &ad_len);
        rc = rewrap_one(st, "UPDATE patient_keys SET wrapped = ? WHERE key_id = ?", key_id, NULL,
                        ad, ad_len, sqlite3_column_blob(s, 2), (size_t)sqlite3_column_bytes(s, 2),
                        &out->data_keys);
    }
    sqlite3_finalize(s);
    if (rc)
        return rc;

    static const struct {
        const char *key, *ad;
    } metas[] = {{"kek_check", kek_check_ad}, {"dedup_key", dedup_ad}};
    for (size_t i = 0; i < sizeof metas / sizeof metas[0] && !rc; i++) {
        if ((rc = prepare(st, "SELECT value FROM meta WHERE key = ?", &s)))
            return rc;
        sqlite3_bind_text(s, 1, metas[i].key, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW)
            rc = rewrap_one(st, "UPDATE meta SET value = ? WHERE key = ?", 0, metas[i].key,
                            metas[i].ad, strlen(metas[i].ad), sqlite3_column_blob(s, 0),
                            (size_t)sqlite3_column_bytes(s, 0), &out->other);
        sqlite3_finalize(s);
    }
    if (rc)
        return rc;

    if ((rc = prepare(st, "SELECT rowid, id, totp_sealed FROM principals"
                          " WHERE totp_sealed IS NOT NULL", &s)))
        return rc;
    while (rc == VG_STORE_OK && (step = sqlite3_step(s)) == SQLITE_ROW) {
        char ad[VG_ID_MAX + 32];
        int n = snprintf(ad, sizeof ad, "%s%s", VG_STORE_TOTP_PURPOSE,
                         (const char *)sqlite3_column_text(s, 1));
        rc = rewrap_one(st, "UPDATE principals SET totp_sealed = ? WHERE rowid = ?",
                        sqlite3_column_int64(s, 0), NULL, ad, (size_t)n,
                        sqlite3_column_blob(s, 2), (size_t)sqlite3_column_bytes(s, 2),
                        &out->secrets);
    }
    sqlite3_finalize(s);
    return rc;
}

int vg_store_rotate_kek(struct vg_store *st, const uint8_t next[VG_KEY_BYTES],
                        struct vg_kek_rotation *out,
                        int (*in_tx)(void *ctx, struct vg_store *st,
                                     const struct vg_kek_rotation *r),
                        void *ctx)
{
    memset(out, 0, sizeof *out);
    if (!sqlite3_get_autocommit(st->db)) {
        snprintf(st->err, sizeof st->err, "KEK rotation must not run inside a transaction");
        return VG_STORE_ERROR;
    }
    if (vg_keyring_rotating(st->ring)) {
        snprintf(st->err, sizeof st->err, "a KEK rotation is already under way");
        return VG_STORE_EXISTS;
    }
    /* From here every connection sharing the keyring wraps new data keys
     * under the new KEK and still opens the old ones. */
    vg_keyring_rotate(st->ring, next);
    int rc = vg_store_begin(st);
    if (!rc)
        rc = rewrap_all(st, out);
    if (!rc && in_tx)
        rc = in_tx(ctx, st, out);
    if (!rc)
        rc = vg_store_commit(st);
    if (rc) {
        vg_store_rollback(st);
        vg_keyring_revert(st->ring);
        return rc;
    }
    return VG_STORE_OK;
}

void vg_store_rotate_kek_done(struct vg_store *st) { vg_keyring_forget_previous(st->ring); }

int vg_store_patient_rotate_key(struct vg_store *st, const char *patient)
{
    int rc = vg_store_patient_exists(st, patient);
    if (rc)
        return rc;
    forget_patient_keys(st, patient);
    return run(st, "UPDATE patient_keys SET state = 'retired' WHERE patient_id = ? AND state = 'active'",
               "rotate data key", 1, patient);
}

int vg_store_patient_erase(struct vg_store *st, const char *patient, int64_t now_ms, int *keys)
{
    int rc = vg_store_patient_exists(st, patient);
    if (rc)
        return rc;
    char ms[24];
    snprintf(ms, sizeof ms, "%" PRId64, now_ms);
    forget_patient_keys(st, patient);
    /* secure_delete is on, so the deleted key rows are overwritten with
     * zeros in the database file, not just unlinked. */
    rc = run(st, "DELETE FROM patient_keys WHERE patient_id = ?", "erase data keys", 1, patient);
    if (rc)
        return rc;
    *keys = sqlite3_changes(st->db);
    rc = run(st, "UPDATE assignments SET end_ms = CAST(? AS INTEGER) WHERE patient_id = ? AND end_ms IS NULL",
             "end assignments", 2, ms, patient);
    if (!rc)
        rc = run(st, "UPDATE careteam SET end_ms = CAST(? AS INTEGER) WHERE patient_id = ?"
                     " AND (end_ms IS NULL OR end_ms > CAST(? AS INTEGER))",
                 "end care team", 3, ms, patient, ms);
    if (!rc)
        rc = run(st, "UPDATE patients SET erased_ms = CAST(? AS INTEGER) WHERE id = ?", "mark erased",
                 2, ms, patient);
    return rc;
}

int vg_store_wal_truncate(struct vg_store *st)
{
    int log = 0, ckpt = 0;
    int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &ckpt);
    return rc == SQLITE_OK ? VG_STORE_OK : VG_STORE_ERROR;
}
