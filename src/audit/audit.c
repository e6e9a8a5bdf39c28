#include "audit/audit.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "crypto/crypto.h"
#include <openssl/evp.h>

static void put_field(EVP_MD_CTX *md, const void *p, size_t len)
{
    uint8_t be[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                     (uint8_t)len};
    EVP_DigestUpdate(md, be, 4);
    EVP_DigestUpdate(md, p, len);
}

static int record_hash(const uint8_t prev[VG_SHA256_BYTES], int64_t seq, int64_t ts,
                       const char *const fields[6], uint8_t out[VG_SHA256_BYTES])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md)
        return -1;
    char num[24];
    int ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, prev, VG_SHA256_BYTES);
    int n = snprintf(num, sizeof num, "%lld", (long long)seq);
    put_field(md, num, (size_t)n);
    n = snprintf(num, sizeof num, "%lld", (long long)ts);
    put_field(md, num, (size_t)n);
    for (int i = 0; i < 6; i++)
        put_field(md, fields[i], strlen(fields[i]));
    unsigned int len = 0;
    ok = ok && EVP_DigestFinal_ex(md, out, &len) && len == VG_SHA256_BYTES;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

int vg_audit_append(struct vg_store *st, const struct vg_audit_event *ev)
{
    sqlite3 *db = vg_store_db(st);
    uint8_t prev[VG_SHA256_BYTES] = {0};
    int64_t seq = 1;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", -1, &s,
                           NULL) != SQLITE_OK)
        return VG_STORE_ERROR;
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        seq = sqlite3_column_int64(s, 0) + 1;
        if (sqlite3_column_bytes(s, 1) == VG_SHA256_BYTES)
            memcpy(prev, sqlite3_column_blob(s, 1), VG_SHA256_BYTES);
    }
    sqlite3_finalize(s);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return VG_STORE_ERROR;

    int64_t ts = ev->ts_ms ? ev->ts_ms : vg_now_ms();
    const char *f[6] = {ev->actor ? ev->actor : "",   ev->action ? ev->action : "",
                        ev->target ? ev->target : "", ev->outcome ? ev->outcome : "",
                        ev->detail ? ev->detail : "", ev->source ? ev->source : ""};
    uint8_t hash[VG_SHA256_BYTES];
    if (record_hash(prev, seq, ts, f, hash) != 0)
        return VG_STORE_ERROR;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO audit(seq, ts_ms, actor, action, target, outcome,"
                           " detail, source, prev, hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
                           -1, &s, NULL) != SQLITE_OK)
        return VG_STORE_ERROR;
    sqlite3_bind_int64(s, 1, seq);
    sqlite3_bind_int64(s, 2, ts);
    for (int i = 0; i < 6; i++)
        sqlite3_bind_text(s, 3 + i, f[i], -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 9, prev, VG_SHA256_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(s, 10, hash, VG_SHA256_BYTES, SQLITE_STATIC);
    step = sqlite3_step(s);
    sqlite3_finalize(s);
    if (step != SQLITE_DONE)
        return (step & 0xff) == SQLITE_FULL ? VG_STORE_FULL : VG_STORE_ERROR;
    return VG_STORE_OK;
}

int vg_audit_verify(struct vg_store *st, int64_t *count, int64_t *bad_seq, char *why,
                    size_t why_size)
{
    sqlite3 *db = vg_store_db(st);
    sqlite3_stmt *s;
    *count = 0;
    *bad_seq = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT seq, ts_ms, actor, action, target, outcome, detail, source,"
                           " prev, hash FROM audit ORDER BY seq",
                           -1, &s, NULL) != SQLITE_OK) {
        snprintf(why, why_size, "cannot read the audit table: %s", sqlite3_errmsg(db));
        return -1;
    }
    uint8_t prev[VG_SHA256_BYTES] = {0};
    int64_t expect = 1;
    int rc = 0, step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(s, 0);
        const char *f[6];
        for (int i = 0; i < 6; i++) {
            const unsigned char *t = sqlite3_column_text(s, 2 + i);
            f[i] = t ? (const char *)t : "";
        }
        uint8_t h[VG_SHA256_BYTES];
        if (seq != expect) {
            snprintf(why, why_size, "record %lld missing (sequence jumps to %lld)",
                     (long long)expect, (long long)seq);
            *bad_seq = expect;
            rc = -1;
            break;
        }
        if (sqlite3_column_bytes(s, 8) != VG_SHA256_BYTES ||
            !vg_ct_equal(sqlite3_column_blob(s, 8), prev, VG_SHA256_BYTES)) {
            snprintf(why, why_size, "record %lld does not link to the record before it",
                     (long long)seq);
            *bad_seq = seq;
            rc = -1;
            break;
        }
        if (record_hash(prev, seq, sqlite3_column_int64(s, 1), f, h) != 0 ||
            sqlite3_column_bytes(s, 9) != VG_SHA256_BYTES ||
            !vg_ct_equal(sqlite3_column_blob(s, 9), h, VG_SHA256_BYTES)) {
            snprintf(why, why_size, "record %lld was altered (hash mismatch)", (long long)seq);
            *bad_seq = seq;
            rc = -1;
            break;
        }
        memcpy(prev, h, sizeof prev);
        expect++;
        (*count)++;
    }
    if (rc == 0 && step != SQLITE_DONE) {
        snprintf(why, why_size, "cannot read the audit table: %s", sqlite3_errmsg(db));
        rc = -1;
    }
    sqlite3_finalize(s);
    return rc;
}

int vg_audit_is_disclosure(const char *action)
{
    /* Every action that hands patient data to someone; new ones (live
     * subscriptions, exports, break-glass reads) join this list. */
    static const char *const disclosing[] = {"obs.read", "obs.export", "obs.subscribe",
                                             "obs.breakglass", NULL};
    for (const char *const *d = disclosing; *d; d++)
        if (!strcmp(action, *d))
            return 1;
    return 0;
}

int vg_audit_query(struct sqlite3 *db, const struct vg_audit_filter *f, vg_audit_fn fn, void *ctx)
{
    /* One static statement with every filter optional keeps the SQL free
     * of string building: all values are bound parameters. */
    static const char sql[] =
        "SELECT seq, ts_ms, actor, action, target, outcome, detail, source FROM audit"
        " WHERE seq > ?1"
        " AND (?2 IS NULL OR target = 'patient:' || ?2)"
        " AND (?3 IS NULL OR actor = ?3 OR actor = 'user:' || ?3)"
        " AND (?4 IS NULL OR action = ?4 OR (substr(?4, -1) = '.' AND"
        "      substr(action, 1, length(?4)) = ?4))"
        " AND (?5 IS NULL OR outcome = ?5)"
        " AND ts_ms >= ?6 AND (?7 = 0 OR ts_ms < ?7)"
        " AND (?8 = 0 OR action IN ('obs.read', 'obs.export', 'obs.subscribe', 'obs.breakglass'))"
        " ORDER BY seq LIMIT ?9";
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(s, 1, f->after_seq);
    if (f->patient)
        sqlite3_bind_text(s, 2, f->patient, -1, SQLITE_STATIC);
    if (f->principal)
        sqlite3_bind_text(s, 3, f->principal, -1, SQLITE_STATIC);
    if (f->action)
        sqlite3_bind_text(s, 4, f->action, -1, SQLITE_STATIC);
    if (f->outcome)
        sqlite3_bind_text(s, 5, f->outcome, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, f->since_ms);
    sqlite3_bind_int64(s, 7, f->until_ms);
    sqlite3_bind_int(s, 8, f->disclosures_only ? 1 : 0);
    sqlite3_bind_int64(s, 9, f->limit ? (int64_t)f->limit : -1);
    int n = 0, step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct vg_audit_record r;
        r.seq = sqlite3_column_int64(s, 0);
        r.ts_ms = sqlite3_column_int64(s, 1);
        const char **fields[6] = {&r.actor, &r.action, &r.target, &r.outcome, &r.detail, &r.source};
        for (int i = 0; i < 6; i++) {
            const unsigned char *t = sqlite3_column_text(s, 2 + i);
            *fields[i] = t ? (const char *)t : "";
        }
        n++;
        if (fn(ctx, &r))
            break;
    }
    sqlite3_finalize(s);
    return step == SQLITE_ROW || step == SQLITE_DONE ? n : -1;
}
