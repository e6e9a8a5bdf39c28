/* Unit tests for store/ and audit/: the schema, the KEK check, sealed
 * readings bound to their rows, assignments, tokens and the audit chain. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "crypto/crypto.h"
#include "store/keyring.h"
#include "store/store.h"

struct fx {
    char dir[64];
    char db[128];
    uint8_t kek[VG_KEY_BYTES];
    struct vg_store *st;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(vg_crypto_init(), 0);
    snprintf(f->dir, sizeof f->dir, "/tmp/vg-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/vigil.db", f->dir);
    vg_random(f->kek, sizeof f->kek);
    char err[256];
    assert_int_equal(vg_store_create(f->db, f->kek, err, sizeof err), VG_STORE_OK);
    assert_int_equal(vg_store_open(f->db, f->kek, &f->st, err, sizeof err), VG_STORE_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    vg_store_close(f->st);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void exec_sql(struct vg_store *st, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(vg_store_db(st), sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("sql failed: %s: %s", sql, msg ? msg : "");
}

static void add_patient_device(struct vg_store *st, const char *patient, const char *device)
{
    struct vg_device_info d = {0};
    snprintf(d.id, sizeof d.id, "%s", device);
    snprintf(d.status, sizeof d.status, "active");
    snprintf(d.cert_serial, sizeof d.cert_serial, "01");
    memset(d.cert_fingerprint, 'a', 64);
    d.enrolled_ms = 1;
    assert_int_equal(vg_store_begin(st), 0);
    int rc = vg_store_patient_add(st, patient, 1000);
    assert_true(rc == VG_STORE_OK || rc == VG_STORE_EXISTS);
    assert_int_equal(vg_store_device_add(st, &d), VG_STORE_OK);
    assert_int_equal(vg_store_device_assign(st, device, patient, 1000), VG_STORE_OK);
    assert_int_equal(vg_store_commit(st), 0);
}

static struct vg_reading reading(const char *code, double value, const char *unit, int64_t t)
{
    struct vg_reading r;
    memset(&r, 0, sizeof r);
    snprintf(r.code, sizeof r.code, "%s", code);
    snprintf(r.unit, sizeof r.unit, "%s", unit);
    r.value = value;
    r.time_ms = t;
    return r;
}

static void put(struct vg_store *st, const char *patient, const char *device, double value,
                char id[VG_OBS_ID_MAX])
{
    /* Each reading a second later: same device, code and time would be a
     * resend, stored once (see test_resend_stored_once). */
    static int64_t t = 1795946400000;
    t += 1000;
    struct vg_reading r = reading("8867-4", value, "/min", t);
    assert_int_equal(vg_store_begin(st), 0);
    assert_int_equal(vg_store_reading_put(st, patient, device, &r, 1764410400500, id), VG_STORE_OK);
    assert_int_equal(vg_store_commit(st), 0);
}

struct seen {
    int n;
    struct vg_obs last;
};

static int remember(void *ctx, const struct vg_obs *o)
{
    struct seen *s = ctx;
    s->n++;
    s->last = *o;
    return 0;
}

static void test_schema_version(void **state)
{
    struct fx *f = *state;
    assert_true(vg_store_schema_version(f->st) >= 1);
}

static void test_create_refuses_existing(void **state)
{
    struct fx *f = *state;
    char err[256];
    assert_int_equal(vg_store_create(f->db, f->kek, err, sizeof err), VG_STORE_EXISTS);
}

static void test_wrong_kek_refused(void **state)
{
    struct fx *f = *state;
    uint8_t other[VG_KEY_BYTES];
    memcpy(other, f->kek, sizeof other);
    other[0] ^= 1;
    struct vg_store *st = NULL;
    char err[256];
    assert_int_equal(vg_store_open(f->db, other, &st, err, sizeof err), VG_STORE_BAD_KEK);
    assert_null(st);
    assert_non_null(strstr(err, "key-encryption key"));
}

static void test_reading_round_trip(void **state)
{
    struct fx *f = *state;
    add_patient_device(f->st, "P1", "dev1");
    char id[VG_OBS_ID_MAX];
    put(f->st, "P1", "dev1", 72.5, id);
    struct seen s = {0};
    struct vg_obs_query q = {.patient = "P1"};
    assert_int_equal(vg_store_obs_query(f->st, &q, remember, &s), 1);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.last.id, id);
    assert_string_equal(s.last.reading.code, "8867-4");
    assert_string_equal(s.last.reading.unit, "/min");
    assert_true(s.last.reading.value == 72.5);
    assert_true(s.last.reading.time_ms > 1795946400000);
    assert_string_equal(s.last.device, "dev1");
    /* Another patient sees nothing. */
    struct seen none = {0};
    struct vg_obs_query q2 = {.patient = "P2"};
    assert_int_equal(vg_store_obs_query(f->st, &q2, remember, &none), 0);
}

static void test_resend_stored_once(void **state)
{
    struct fx *f = *state;
    add_patient_device(f->st, "P1", "dev1");
    add_patient_device(f->st, "P1", "dev2");
    struct vg_reading r = reading("8867-4", 70, "/min", 1795946400000);
    char id[VG_OBS_ID_MAX];
    assert_int_equal(vg_store_begin(f->st), 0);
    assert_int_equal(vg_store_reading_put(f->st, "P1", "dev1", &r, 1, id), VG_STORE_OK);
    /* The same reading again (a resend after a lost PUBACK), even with
     * another value: stored once. */
    r.value = 71;
    assert_int_equal(vg_store_reading_put(f->st, "P1", "dev1", &r, 2, id), VG_STORE_DUPLICATE);
    /* Another device, another code or another time is another reading. */
    assert_int_equal(vg_store_reading_put(f->st, "P1", "dev2", &r, 3, id), VG_STORE_OK);
    struct vg_reading r2 = reading("59408-5", 97, "%", 1795946400000);
    assert_int_equal(vg_store_reading_put(f->st, "P1", "dev1", &r2, 4, id), VG_STORE_OK);
    r.time_ms += 1;
    assert_int_equal(vg_store_reading_put(f->st, "P1", "dev1", &r, 5, id), VG_STORE_OK);
    assert_int_equal(vg_store_commit(f->st), 0);
    struct seen s = {0};
    struct vg_obs_query q = {.patient = "P1"};
    assert_int_equal(vg_store_obs_query(f->st, &q, remember, &s), 4);
}

struct ordered {
    int n;
    int64_t t[64];
    char last_id[VG_OBS_ID_MAX];
};

static int record_time(void *ctx, const struct vg_obs *o)
{
    struct ordered *r = ctx;
    if (r->n < 64)
        r->t[r->n] = o->reading.time_ms;
    r->n++;
    snprintf(r->last_id, sizeof r->last_id, "%s", o->id);
    return 0;
}

/* Readings over three hours, inserted out of order: queries return them
 * in effective-time order, bounded, in both directions, and page with a
 * cursor without losing or repeating one. */
static void test_query_order_bounds_paging(void **state)
{
    struct fx *f = *state;
    add_patient_device(f->st, "P1", "dev1");
    const int64_t base = 1795946400000; /* 10:00Z */
    const int64_t offs[] = {7200500, 1000, 3599999, 3600000, 0, 5400000, 1800000, 10799999};
    assert_int_equal(vg_store_begin(f->st), 0);
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        struct vg_reading r = reading("8867-4", 60 + (double)i, "/min", base + offs[i]);
        char id[VG_OBS_ID_MAX];
        assert_int_equal(vg_store_reading_put(f->st, "P1", "dev1", &r, 1, id), VG_STORE_OK);
    }
    assert_int_equal(vg_store_commit(f->st), 0);

    struct ordered r = {0};
    struct vg_obs_query q = {.patient = "P1"};
    assert_int_equal(vg_store_obs_query(f->st, &q, record_time, &r), 8);
    for (int i = 1; i < 8; i++)
        assert_true(r.t[i - 1] > r.t[i]); /* newest first */
    assert_int_equal(r.t[0], base + 10799999);

    memset(&r, 0, sizeof r);
    q.ascending = 1;
    assert_int_equal(vg_store_obs_query(f->st, &q, record_time, &r), 8);
    for (int i = 1; i < 8; i++)
        assert_true(r.t[i - 1] < r.t[i]);

    /* [10:00:00.001, 11:00:00.000): excludes 10:00 exactly and 11:00. */
    memset(&r, 0, sizeof r);
    q.from_ms = base + 1;
    q.to_ms = base + 3600000;
    assert_int_equal(vg_store_obs_query(f->st, &q, record_time, &r), 3);
    assert_int_equal(r.t[0], base + 1000);
    assert_int_equal(r.t[2], base + 3599999);

    /* Pages of 3, newest first, over everything: 3 + 3 + 2, no overlap. */
    struct vg_obs_query p = {.patient = "P1", .limit = 3};
    int64_t seen[8];
    int total = 0;
    for (int page = 0; page < 4; page++) {
        memset(&r, 0, sizeof r);
        int n = vg_store_obs_query(f->st, &p, record_time, &r);
        assert_true(n >= 0 && n <= 3);
        for (int i = 0; i < n; i++) {
            assert_true(total < 8);
            seen[total++] = r.t[i];
        }
        if (n < 3)
            break;
        p.cursor_ms = r.t[n - 1];
        snprintf(p.cursor_id, sizeof p.cursor_id, "%s", r.last_id);
    }
    assert_int_equal(total, 8);
    for (int i = 1; i < 8; i++)
        assert_true(seen[i - 1] > seen[i]);
}

/* Crypto-shredding: once the patient's data keys are destroyed, their
 * ciphertexts cannot be opened (and nothing else is touched). */
static void test_erase_makes_readings_unreadable(void **state)
{
    struct fx *f = *state;
    add_patient_device(f->st, "P1", "dev1");
    add_patient_device(f->st, "P2", "dev2");
    char id[VG_OBS_ID_MAX];
    put(f->st, "P1", "dev1", 70, id);
    assert_int_equal(vg_store_begin(f->st), 0);
    assert_int_equal(vg_store_patient_rotate_key(f->st, "P1"), VG_STORE_OK);
    assert_int_equal(vg_store_commit(f->st), 0);
    put(f->st, "P1", "dev1", 71, id);
    put(f->st, "P2", "dev2", 72, id);
    struct seen s = {0};
    struct vg_obs_query q = {.patient = "P1"};
    assert_int_equal(vg_store_obs_query(f->st, &q, remember, &s), 2); /* both keys work */
    int keys = 0;
    assert_int_equal(vg_store_begin(f->st), 0);
    assert_int_equal(vg_store_patient_erase(f->st, "P1", 5000, &keys), VG_STORE_OK);
    assert_int_equal(vg_store_commit(f->st), 0);
    assert_int_equal(keys, 2);
    assert_int_equal(vg_store_patient_erased(f->st, "P1"), 1);
    assert_int_equal(vg_store_patient_erased(f->st, "P2"), 0);
    memset(&s, 0, sizeof s);
    assert_int_equal(vg_store_obs_query(f->st, &q, remember, &s), VG_STORE_INTEGRITY);
    assert_int_equal(s.n, 0);
    /* A fresh handle (no cached keys) cannot open them either. */
    struct vg_store *other;
    char err[256];
    assert_int_equal(vg_store_open(f->db, f->kek, &other, err, sizeof err), VG_STORE_OK);
    assert_int_equal(vg_store_obs_query(other, &q, remember, &s), VG_STORE_INTEGRITY);
    struct vg_obs_query q2 = {.patient = "P2"};
    assert_int_equal(vg_store_obs_query(other, &q2, remember, &s), 1);
    vg_store_close(other);
    char p[VG_ID_MAX + 1];
    assert_int_equal(vg_store_device_patient(f->st, "dev1", 6000, p), VG_STORE_NOT_FOUND);
}

static void test_value_not_in_clear(void **state)
{
    struct fx *f = *state;
    add_patient_device(f->st, "P1", "dev1");
    char id[VG_OBS_ID_MAX];
    put(f->st, "P1", "dev1", 123.4567, id);
    /* The sealed blob must not hold the IEEE bytes of the value. */
    double v = 123.4567;
    uint8_t be[8];
    uint64_t bits;
    memcpy(&bits, &v, 8);
    for (int i = 7; i >= 0; i--, bits >>= 8)
        be[i] = (uint8_t)bits;
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(vg_store_db(f->st), "SELECT sealed FROM readings", -1, &s, NULL), 0);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    const uint8_t *blob = sqlite3_column_blob(s, 0);
    int len = sqlite3_column_bytes(s, 0);
    assert_true(len > VG_AEAD_OVERHEAD);
    for (int i = 0; i + 8 <= len; i++)
        assert_false(memcmp(blob + i, be, 8) == 0);
    sqlite3_finalize(s);
}

static void test_flipped_byte_is_integrity_error(void **state)
{
    struct fx *f = *state;
    add_patient_device(f->st, "P1", "dev1");
    char id[VG_OBS_ID_MAX];
    put(f->st, "P1", "dev1", 80, id);
    exec_sql(f->st, "UPDATE readings SET sealed = substr(sealed, 1, 30) ||"
                    " CASE WHEN substr(sealed, 31, 1) = x'00' THEN x'01' ELSE x'00' END ||"
                    " substr(sealed, 32)");
    struct seen s = {0};
    struct vg_obs_query q = {.patient = "P1"};
    assert_int_equal(vg_store_obs_query(f->st, &q, remember, &s), VG_STORE_INTEGRITY);
    assert_int_equal(s.n, 0);
}

static void test_ciphertext_cannot_move_rows(void **state)
{
    struct fx *f = *state;
    add_patient_device(f->st, "P1", "dev1");
    char a[VG_OBS_ID_MAX], b[VG_OBS_ID_MAX];
    put(f->st, "P1", "dev1", 60, a);
    put(f->st, "P1", "dev1", 140, b);
    /* Swap the two sealed values: same key, same patient, but the AD binds
     * each ciphertext to its reading id. */
    char sql[512];
    snprintf(sql, sizeof sql,
             "UPDATE readings SET sealed = (SELECT sealed FROM readings WHERE id = '%s')"
             " WHERE id = '%s'", a, b);
    exec_sql(f->st, sql);
    struct seen s = {0};
    struct vg_obs_query q = {.patient = "P1"};
    assert_int_equal(vg_store_obs_query(f->st, &q, remember, &s), VG_STORE_INTEGRITY);
}

static void test_row_moved_to_other_patient_fails(void **state)
{
    struct fx *f = *state;
    add_patient_device(f->st, "P1", "dev1");
    add_patient_device(f->st, "P2", "dev2");
    char a[VG_OBS_ID_MAX], b[VG_OBS_ID_MAX];
    put(f->st, "P1", "dev1", 60, a);
    put(f->st, "P2", "dev2", 61, b);
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE readings SET patient_id = 'P2' WHERE id = '%s'", a);
    exec_sql(f->st, sql);
    struct seen s = {0};
    struct vg_obs_query q = {.patient = "P2"};
    assert_true(vg_store_obs_query(f->st, &q, remember, &s) == VG_STORE_INTEGRITY);
}

static void test_assignment_history(void **state)
{
    struct fx *f = *state;
    add_patient_device(f->st, "P1", "dev1");
    char p[VG_ID_MAX + 1];
    assert_int_equal(vg_store_device_patient(f->st, "dev1", 999, p), VG_STORE_NOT_FOUND);
    assert_int_equal(vg_store_device_patient(f->st, "dev1", 1000, p), VG_STORE_OK);
    assert_string_equal(p, "P1");
    assert_int_equal(vg_store_patient_add(f->st, "P2", 1), VG_STORE_OK);
    assert_int_equal(vg_store_device_assign(f->st, "dev1", "P2", 5000), VG_STORE_OK);
    assert_int_equal(vg_store_device_patient(f->st, "dev1", 4999, p), VG_STORE_OK);
    assert_string_equal(p, "P1");
    assert_int_equal(vg_store_device_patient(f->st, "dev1", 5000, p), VG_STORE_OK);
    assert_string_equal(p, "P2");
    assert_int_equal(vg_store_device_assign(f->st, "nodev", "P2", 6000), VG_STORE_NOT_FOUND);
    assert_int_equal(vg_store_device_assign(f->st, "dev1", "nobody", 6000), VG_STORE_NOT_FOUND);
}

static void test_duplicate_ids(void **state)
{
    struct fx *f = *state;
    assert_int_equal(vg_store_patient_add(f->st, "P9", 1), VG_STORE_OK);
    assert_int_equal(vg_store_patient_add(f->st, "P9", 1), VG_STORE_EXISTS);
    assert_int_equal(vg_store_patient_exists(f->st, "P9"), VG_STORE_OK);
    assert_int_equal(vg_store_patient_exists(f->st, "P8"), VG_STORE_NOT_FOUND);
}

static void test_tokens(void **state)
{
    struct fx *f = *state;
    char tok[VG_TOKEN_MAX], principal[VG_ID_MAX + 1], role[VG_ROLE_MAX];
    uint8_t h[VG_SHA256_BYTES], other[VG_SHA256_BYTES];
    vg_token_new(tok);
    vg_token_hash(tok, strlen(tok), h);
    assert_int_equal(vg_store_principal_add(f->st, "alice", "admin", 1), VG_STORE_OK);
    assert_int_equal(vg_store_token_add(f->st, "alice", h, 1, 10000), VG_STORE_OK);
    assert_int_equal(vg_store_token_lookup(f->st, h, 5000, principal, role), VG_STORE_OK);
    assert_string_equal(principal, "alice");
    assert_string_equal(role, "admin");
    /* Expired. */
    assert_int_equal(vg_store_token_lookup(f->st, h, 10000, principal, role), VG_STORE_NOT_FOUND);
    /* Unknown. */
    memcpy(other, h, sizeof other);
    other[5] ^= 0x40;
    assert_int_equal(vg_store_token_lookup(f->st, other, 5000, principal, role), VG_STORE_NOT_FOUND);
    /* Only the hash is stored, never the token text. */
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(vg_store_db(f->st), "SELECT count(*) FROM tokens WHERE"
                                        " instr(CAST(hash AS TEXT), ?) > 0", -1, &s, NULL), 0);
    sqlite3_bind_text(s, 1, tok, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 0);
    sqlite3_finalize(s);
}

/* ---- audit ---- */

static void append_n(struct vg_store *st, int n)
{
    assert_int_equal(vg_store_begin(st), 0);
    for (int i = 0; i < n; i++) {
        char detail[32];
        snprintf(detail, sizeof detail, "event %d", i);
        struct vg_audit_event ev = {1000 + i, "user:admin", "test.event", "patient:P1", "success",
                                    detail, "127.0.0.1:1"};
        assert_int_equal(vg_audit_append(st, &ev), VG_STORE_OK);
    }
    assert_int_equal(vg_store_commit(st), 0);
}

static int verify(struct vg_store *st, int64_t *count, int64_t *bad)
{
    char why[256];
    return vg_audit_verify(st, count, bad, why, sizeof why);
}

static void test_audit_chain_verifies(void **state)
{
    struct fx *f = *state;
    append_n(f->st, 10);
    int64_t count, bad;
    assert_int_equal(verify(f->st, &count, &bad), 0);
    assert_int_equal(count, 10);
}

static void test_audit_append_only_in_sql(void **state)
{
    struct fx *f = *state;
    append_n(f->st, 3);
    sqlite3 *db = vg_store_db(f->st);
    assert_int_not_equal(sqlite3_exec(db, "UPDATE audit SET detail = 'x' WHERE seq = 2", NULL, NULL, NULL), SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(db, "DELETE FROM audit WHERE seq = 2", NULL, NULL, NULL), SQLITE_OK);
}

/* Tampering below SQL is simulated by dropping the guard triggers first. */
static void unguard(struct vg_store *st)
{
    exec_sql(st, "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;");
}

static void test_audit_detects_edit(void **state)
{
    struct fx *f = *state;
    append_n(f->st, 10);
    unguard(f->st);
    exec_sql(f->st, "UPDATE audit SET detail = 'nothing happened' WHERE seq = 4");
    int64_t count, bad;
    assert_int_equal(verify(f->st, &count, &bad), -1);
    assert_int_equal(bad, 4);
}

static void test_audit_detects_delete(void **state)
{
    struct fx *f = *state;
    append_n(f->st, 10);
    unguard(f->st);
    exec_sql(f->st, "DELETE FROM audit WHERE seq = 6");
    int64_t count, bad;
    assert_int_equal(verify(f->st, &count, &bad), -1);
    assert_int_equal(bad, 6);
}

static void test_audit_detects_swap(void **state)
{
    struct fx *f = *state;
    append_n(f->st, 10);
    unguard(f->st);
    exec_sql(f->st, "UPDATE audit SET seq = -3 WHERE seq = 3;"
                    "UPDATE audit SET seq = 3 WHERE seq = 7;"
                    "UPDATE audit SET seq = 7 WHERE seq = -3;");
    int64_t count, bad;
    assert_int_equal(verify(f->st, &count, &bad), -1);
    assert_int_equal(bad, 3);
}

static void test_audit_detects_forged_insert(void **state)
{
    struct fx *f = *state;
    append_n(f->st, 5);
    unguard(f->st);
    /* A forged record that links to record 5's hash but with a made-up
     * hash of its own. */
    exec_sql(f->st, "INSERT INTO audit SELECT 6, ts_ms, actor, action, target, outcome,"
                    " 'forged', source, hash, hash FROM audit WHERE seq = 5");
    int64_t count, bad;
    assert_int_equal(verify(f->st, &count, &bad), -1);
    assert_int_equal(bad, 6);
}


/* ---- KEK rotation ---- */

static void put_secret(struct vg_store *st, const char *account, const char *secret)
{
    char purpose[64];
    snprintf(purpose, sizeof purpose, "%s%s", VG_STORE_TOTP_PURPOSE, account);
    uint8_t sealed[64 + VG_AEAD_OVERHEAD];
    size_t len;
    assert_int_equal(vg_store_seal_secret(st, purpose, (const uint8_t *)secret, strlen(secret),
                                          sealed, &len),
                     VG_STORE_OK);
    assert_int_equal(vg_store_begin(st), 0);
    assert_int_equal(vg_store_principal_add(st, account, "clinician", 1), VG_STORE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(vg_store_db(st),
                                        "UPDATE principals SET totp_sealed = ? WHERE id = ?", -1,
                                        &s, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob(s, 1, sealed, (int)len, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, account, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    assert_int_equal(vg_store_commit(st), 0);
}

static int secret_opens(struct vg_store *st, const char *account, const char *expect)
{
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(vg_store_db(st),
                                        "SELECT totp_sealed FROM principals WHERE id = ?", -1, &s,
                                        NULL),
                     SQLITE_OK);
    sqlite3_bind_text(s, 1, account, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    char purpose[64];
    snprintf(purpose, sizeof purpose, "%s%s", VG_STORE_TOTP_PURPOSE, account);
    uint8_t pt[64];
    size_t len = 0;
    int rc = vg_store_open_secret(st, purpose, sqlite3_column_blob(s, 0),
                                  (size_t)sqlite3_column_bytes(s, 0), pt, &len);
    sqlite3_finalize(s);
    return rc == VG_STORE_OK && len == strlen(expect) && !memcmp(pt, expect, len);
}

static int count_obs(struct vg_store *st, const char *patient)
{
    struct seen s = {0};
    struct vg_obs_query q = {.patient = patient};
    return vg_store_obs_query(st, &q, remember, &s);
}

static void test_rotate_kek_online(void **state)
{
    struct fx *f = *state;
    char err[256], id[VG_OBS_ID_MAX];
    /* A second connection sharing the keyring, as the writer does. */
    struct vg_store *writer = NULL;
    assert_int_equal(vg_store_open_ring(f->db, vg_store_keyring(f->st), &writer, NULL, err,
                                        sizeof err),
                     VG_STORE_OK);
    add_patient_device(writer, "P1", "dev1");
    add_patient_device(writer, "P2", "dev2");
    put(writer, "P1", "dev1", 70, id);
    put(writer, "P2", "dev2", 71, id);
    assert_int_equal(vg_store_begin(writer), 0);
    assert_int_equal(vg_store_patient_rotate_key(writer, "P1"), VG_STORE_OK);
    assert_int_equal(vg_store_commit(writer), 0);
    put(writer, "P1", "dev1", 72, id); /* under P1's second data key */
    put_secret(f->st, "alice", "JBSWY3DPEHPK3PXP");
    struct vg_reading r = reading("59408-5", 97, "%", 1795000000000);
    assert_int_equal(vg_store_begin(writer), 0);
    assert_int_equal(vg_store_reading_put(writer, "P1", "dev1", &r, 1, id), VG_STORE_OK);
    assert_int_equal(vg_store_commit(writer), 0);

    uint8_t next[VG_KEY_BYTES];
    vg_random(next, sizeof next);
    struct vg_kek_rotation rot;
    assert_int_equal(vg_store_rotate_kek(f->st, next, &rot, NULL, NULL), VG_STORE_OK);
    assert_int_equal(rot.data_keys, 3);
    assert_int_equal(rot.secrets, 1);
    assert_int_equal(rot.other, 2);
    /* Still rotating until the caller says the new KEK file is in place. */
    assert_true(vg_keyring_rotating(vg_store_keyring(f->st)));
    vg_store_rotate_kek_done(f->st);
    assert_false(vg_keyring_rotating(vg_store_keyring(f->st)));

    /* Both connections go on: new patient, new data key under the new KEK. */
    add_patient_device(writer, "P3", "dev3");
    put(writer, "P3", "dev3", 73, id);
    vg_store_close(writer);
    vg_store_close(f->st);
    f->st = NULL;

    /* The old KEK no longer opens the database. */
    assert_int_equal(vg_store_open(f->db, f->kek, &f->st, err, sizeof err), VG_STORE_BAD_KEK);
    /* The new one opens everything: readings, secrets, and resends are
     * still recognised (the deduplication key survived the rotation). */
    memcpy(f->kek, next, sizeof next);
    assert_int_equal(vg_store_open(f->db, f->kek, &f->st, err, sizeof err), VG_STORE_OK);
    assert_int_equal(count_obs(f->st, "P1"), 3);
    assert_int_equal(count_obs(f->st, "P2"), 1);
    assert_int_equal(count_obs(f->st, "P3"), 1);
    assert_true(secret_opens(f->st, "alice", "JBSWY3DPEHPK3PXP"));
    r.value = 98;
    assert_int_equal(vg_store_begin(f->st), 0);
    int dup = vg_store_reading_put(f->st, "P1", "dev1", &r, 1, id);
    vg_store_rollback(f->st);
    assert_int_equal(dup, VG_STORE_DUPLICATE);
    /* Nothing was rewrapped twice: a second rotation from here is clean. */
    uint8_t third[VG_KEY_BYTES];
    vg_random(third, sizeof third);
    assert_int_equal(vg_store_rotate_kek(f->st, third, &rot, NULL, NULL), VG_STORE_OK);
    assert_int_equal(rot.data_keys, 4);
    vg_store_rotate_kek_done(f->st);
    memcpy(f->kek, third, sizeof third);
}

static void test_rotate_kek_refuses_tampered_key(void **state)
{
    struct fx *f = *state;
    char id[VG_OBS_ID_MAX], err[256];
    add_patient_device(f->st, "P1", "dev1");
    add_patient_device(f->st, "P2", "dev2");
    put(f->st, "P1", "dev1", 70, id);
    put(f->st, "P2", "dev2", 71, id);
    exec_sql(f->st, "UPDATE patient_keys SET wrapped = randomblob(72) WHERE patient_id = 'P2'");
    uint8_t next[VG_KEY_BYTES];
    vg_random(next, sizeof next);
    struct vg_kek_rotation rot;
    assert_int_equal(vg_store_rotate_kek(f->st, next, &rot, NULL, NULL), VG_STORE_INTEGRITY);
    assert_non_null(strstr(vg_store_errmsg(f->st), "neither"));
    /* Nothing changed: the keyring is back on the old KEK, which still
     * opens the database and P1's readings; the new one opens nothing. */
    assert_false(vg_keyring_rotating(vg_store_keyring(f->st)));
    assert_int_equal(count_obs(f->st, "P1"), 1);
    struct vg_store *st = NULL;
    assert_int_equal(vg_store_open(f->db, next, &st, err, sizeof err), VG_STORE_BAD_KEK);
    vg_store_close(f->st);
    assert_int_equal(vg_store_open(f->db, f->kek, &f->st, err, sizeof err), VG_STORE_OK);
    assert_int_equal(count_obs(f->st, "P1"), 1);
}

static int refuse_in_tx(void *ctx, struct vg_store *st, const struct vg_kek_rotation *r)
{
    (void)st;
    *(int *)ctx = r->data_keys;
    return VG_STORE_ERROR; /* e.g. the audit record could not be written */
}

static void test_rotate_kek_aborts_when_audit_fails(void **state)
{
    struct fx *f = *state;
    char id[VG_OBS_ID_MAX], err[256];
    add_patient_device(f->st, "P1", "dev1");
    put(f->st, "P1", "dev1", 70, id);
    uint8_t next[VG_KEY_BYTES];
    vg_random(next, sizeof next);
    struct vg_kek_rotation rot;
    int seen = -1;
    assert_int_equal(vg_store_rotate_kek(f->st, next, &rot, refuse_in_tx, &seen), VG_STORE_ERROR);
    assert_int_equal(seen, 1); /* it ran inside, after the rewrap */
    assert_false(vg_keyring_rotating(vg_store_keyring(f->st)));
    struct vg_store *st = NULL;
    assert_int_equal(vg_store_open(f->db, next, &st, err, sizeof err), VG_STORE_BAD_KEK);
    assert_int_equal(count_obs(f->st, "P1"), 1);
}

static void test_open_after_committed_rotation(void **state)
{
    /* A crash after the rotation committed but before the new KEK file
     * replaced the old: serve loads both; the store says which one opened
     * the database so serve can finish the job. */
    struct fx *f = *state;
    char err[256], id[VG_OBS_ID_MAX];
    add_patient_device(f->st, "P1", "dev1");
    put(f->st, "P1", "dev1", 70, id);
    uint8_t next[VG_KEY_BYTES];
    vg_random(next, sizeof next);
    struct vg_kek_rotation rot;
    assert_int_equal(vg_store_rotate_kek(f->st, next, &rot, NULL, NULL), VG_STORE_OK);
    vg_store_close(f->st);
    f->st = NULL;

    struct vg_keyring *ring = vg_keyring_new(f->kek); /* the old file */
    vg_keyring_rotate(ring, next);                      /* the staged one */
    int which = -1;
    assert_int_equal(vg_store_open_ring(f->db, ring, &f->st, &which, err, sizeof err), VG_STORE_OK);
    assert_int_equal(which, 0);
    vg_store_close(f->st);
    vg_keyring_unref(ring);

    /* The other way round (rotation never committed): previous opens it. */
    uint8_t never[VG_KEY_BYTES];
    vg_random(never, sizeof never);
    ring = vg_keyring_new(next);
    vg_keyring_rotate(ring, never);
    which = -1;
    assert_int_equal(vg_store_open_ring(f->db, ring, &f->st, &which, err, sizeof err), VG_STORE_OK);
    assert_int_equal(which, 1);
    vg_keyring_unref(ring);
    assert_int_equal(count_obs(f->st, "P1"), 1);
    memcpy(f->kek, next, sizeof next);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_refuses_existing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_kek_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reading_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_not_in_clear, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resend_stored_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_order_bounds_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_erase_makes_readings_unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_is_integrity_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ciphertext_cannot_move_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_row_moved_to_other_patient_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_assignment_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_chain_verifies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_append_only_in_sql, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_detects_edit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_detects_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_detects_swap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_detects_forged_insert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_kek_online, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_kek_refuses_tampered_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_after_committed_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_kek_aborts_when_audit_fails, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
