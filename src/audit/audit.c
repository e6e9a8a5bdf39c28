#include "audit/audit.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "crypto/crypto.h"

/* ---- the record hash ----
 * SHA-256(prev || field...) with every field as a 4-byte big-endian length
 * and its bytes: seq and ts_ms as decimal text, then actor, action, target,
 * outcome, detail, source. A hasher reuses one digest context, because the
 * verifier runs it a million times a second. */
struct hasher {
    EVP_MD_CTX *ctx;
    EVP_MD *md;
};

static int hasher_init(struct hasher *h)
{
    /* An explicitly fetched digest: EVP_sha256() would be looked up (under
     * a lock) at every EVP_DigestInit_ex. */
    h->md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    h->ctx = EVP_MD_CTX_new();
    return h->ctx && h->md ? 0 : -1;
}

static void hasher_free(struct hasher *h)
{
    EVP_MD_CTX_free(h->ctx);
    EVP_MD_free(h->md);
}

/* Decimal text of v, for the canonical encoding (snprintf is the slow part
 * of hashing a million records). Returns the length written. */
static size_t put_dec(char *out, int64_t v)
{
    char tmp[24];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    return len;
}

static size_t put_field(uint8_t *out, const void *p, size_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    memcpy(out + 4, p, len);
    return 4 + len;
}

/* The encoding is assembled in one buffer and hashed with a single update:
 * many small updates cost more than the hashing itself. */
#define HASH_BUF 4096

static int record_hash(struct hasher *h, const uint8_t prev[VG_SHA256_BYTES], int64_t seq,
                       int64_t ts, const char *const fields[6], const size_t lens[6],
                       uint8_t out[VG_SHA256_BYTES])
{
    uint8_t buf[HASH_BUF];
    char num[24];
    size_t total = VG_SHA256_BYTES + 2 * (4 + 20);
    for (int i = 0; i < 6; i++)
        total += 4 + lens[i];
    if (!EVP_DigestInit_ex(h->ctx, h->md, NULL))
        return -1;
    if (total <= sizeof buf) {
        size_t off = 0;
        memcpy(buf, prev, VG_SHA256_BYTES);
        off += VG_SHA256_BYTES;
        off += put_field(buf + off, num, put_dec(num, seq));
        off += put_field(buf + off, num, put_dec(num, ts));
        for (int i = 0; i < 6; i++)
            off += put_field(buf + off, fields[i], lens[i]);
        EVP_DigestUpdate(h->ctx, buf, off);
    } else {
        /* A record too long for the buffer: same bytes, fed in pieces. */
        uint8_t be[4];
        EVP_DigestUpdate(h->ctx, prev, VG_SHA256_BYTES);
        size_t n = put_dec(num, seq);
        be[0] = 0, be[1] = 0, be[2] = (uint8_t)(n >> 8), be[3] = (uint8_t)n;
        EVP_DigestUpdate(h->ctx, be, 4);
        EVP_DigestUpdate(h->ctx, num, n);
        n = put_dec(num, ts);
        be[2] = (uint8_t)(n >> 8), be[3] = (uint8_t)n;
        EVP_DigestUpdate(h->ctx, be, 4);
        EVP_DigestUpdate(h->ctx, num, n);
        for (int i = 0; i < 6; i++) {
            be[0] = (uint8_t)(lens[i] >> 24), be[1] = (uint8_t)(lens[i] >> 16);
            be[2] = (uint8_t)(lens[i] >> 8), be[3] = (uint8_t)lens[i];
            EVP_DigestUpdate(h->ctx, be, 4);
            EVP_DigestUpdate(h->ctx, fields[i], lens[i]);
        }
    }
    unsigned int len = 0;
    return EVP_DigestFinal_ex(h->ctx, out, &len) && len == VG_SHA256_BYTES ? 0 : -1;
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
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(f[i]);
    uint8_t hash[VG_SHA256_BYTES];
    struct hasher h;
    if (hasher_init(&h) != 0)
        return VG_STORE_ERROR;
    int rc = record_hash(&h, prev, seq, ts, f, lens, hash);
    hasher_free(&h);
    if (rc != 0)
        return VG_STORE_ERROR;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO audit(seq, ts_ms, actor, action, target, outcome,"
                           " detail, source, prev, hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
                           -1, &s, NULL) != SQLITE_OK)
        return VG_STORE_ERROR;
    sqlite3_bind_int64(s, 1, seq);
    sqlite3_bind_int64(s, 2, ts);
    for (int i = 0; i < 6; i++)
        sqlite3_bind_text(s, 3 + i, f[i], (int)lens[i], SQLITE_STATIC);
    sqlite3_bind_blob(s, 9, prev, VG_SHA256_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(s, 10, hash, VG_SHA256_BYTES, SQLITE_STATIC);
    step = sqlite3_step(s);
    sqlite3_finalize(s);
    if (step != SQLITE_DONE)
        return (step & 0xff) == SQLITE_FULL    ? VG_STORE_FULL
               : (step & 0xff) == SQLITE_IOERR ? VG_STORE_IO
                                              : VG_STORE_ERROR;
    return VG_STORE_OK;
}

/* ---- keys ---- */

int vg_audit_key_create(const char *sk_path, const char *pk_path, char *err, size_t err_size)
{
    uint8_t pk[VG_AUDIT_PK_BYTES], sk[VG_AUDIT_SK_BYTES];
    char hex[2 * VG_AUDIT_PK_BYTES + 2];
    crypto_sign_keypair(pk, sk);
    int fd = open(sk_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    int ok = fd >= 0 && write(fd, sk, sizeof sk) == (ssize_t)sizeof sk && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    sodium_memzero(sk, sizeof sk);
    if (!ok) {
        snprintf(err, err_size, "%s: cannot create: %s", sk_path, strerror(errno));
        return -1;
    }
    vg_hex(pk, sizeof pk, hex);
    size_t n = strlen(hex);
    hex[n] = '\n';
    fd = open(pk_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    ok = fd >= 0 && write(fd, hex, n + 1) == (ssize_t)(n + 1) && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    if (!ok) {
        snprintf(err, err_size, "%s: cannot create: %s", pk_path, strerror(errno));
        return -1;
    }
    return 0;
}

int vg_audit_key_load(const char *sk_path, uint8_t sk[VG_AUDIT_SK_BYTES], char *err,
                      size_t err_size)
{
    int fd = open(sk_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        snprintf(err, err_size, "audit key %s: %s", sk_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    uint8_t buf[VG_AUDIT_SK_BYTES + 1];
    ssize_t n = S_ISREG(sb.st_mode) ? read(fd, buf, sizeof buf) : -1;
    close(fd);
    if (!S_ISREG(sb.st_mode) || (sb.st_mode & 077)) {
        snprintf(err, err_size, "audit key %s must be a regular file readable only by its owner (chmod 600)", sk_path);
        return -1;
    }
    if (n != VG_AUDIT_SK_BYTES) {
        sodium_memzero(buf, sizeof buf);
        snprintf(err, err_size, "audit key %s is not %d bytes (corrupt or truncated)", sk_path,
                 VG_AUDIT_SK_BYTES);
        return -1;
    }
    memcpy(sk, buf, VG_AUDIT_SK_BYTES);
    sodium_memzero(buf, sizeof buf);
    return 0;
}

int vg_audit_pub_load(const char *pk_path, uint8_t pk[VG_AUDIT_PK_BYTES], char *err,
                      size_t err_size)
{
    char hex[160];
    FILE *f = fopen(pk_path, "re");
    if (!f) {
        snprintf(err, err_size, "audit public key %s: %s", pk_path, strerror(errno));
        return -1;
    }
    size_t n = fread(hex, 1, sizeof hex - 1, f);
    fclose(f);
    hex[n] = '\0';
    hex[strcspn(hex, "\r\n")] = '\0';
    size_t bin_len = 0;
    if (strlen(hex) != 2 * VG_AUDIT_PK_BYTES ||
        sodium_hex2bin(pk, VG_AUDIT_PK_BYTES, hex, strlen(hex), NULL, &bin_len, NULL) != 0 ||
        bin_len != VG_AUDIT_PK_BYTES) {
        snprintf(err, err_size, "audit public key %s is not %d hex bytes", pk_path, VG_AUDIT_PK_BYTES);
        return -1;
    }
    return 0;
}

/* ---- checkpoints ---- */

/* What is signed: a domain tag, the seq and time in decimal, the head. */
static size_t checkpoint_message(const struct vg_audit_checkpoint *cp, uint8_t *out, size_t cap)
{
    int n = snprintf((char *)out, cap, "vigil-audit-checkpoint/v1|%" PRId64 "|%" PRId64 "|",
                     cp->seq, cp->ts_ms);
    if (n < 0 || (size_t)n + VG_SHA256_BYTES > cap)
        return 0;
    memcpy(out + n, cp->head, VG_SHA256_BYTES);
    return (size_t)n + VG_SHA256_BYTES;
}

static int checkpoint_sig_ok(const struct vg_audit_checkpoint *cp, const uint8_t *pubkey)
{
    uint8_t msg[128];
    size_t len = checkpoint_message(cp, msg, sizeof msg);
    return len && !sodium_memcmp(cp->pubkey, pubkey, VG_AUDIT_PK_BYTES) &&
           crypto_sign_verify_detached(cp->sig, msg, len, pubkey) == 0;
}

static int append_checkpoint_line(const char *path, const struct vg_audit_checkpoint *cp)
{
    char head[2 * VG_SHA256_BYTES + 1], key[2 * VG_AUDIT_PK_BYTES + 1], sig[2 * VG_AUDIT_SIG_BYTES + 1];
    char line[512];
    vg_hex(cp->head, sizeof cp->head, head);
    vg_hex(cp->pubkey, sizeof cp->pubkey, key);
    vg_hex(cp->sig, sizeof cp->sig, sig);
    int n = snprintf(line, sizeof line,
                     "vigil-audit-checkpoint/v1 seq=%" PRId64 " ts=%" PRId64 " head=%s key=%s sig=%s\n",
                     cp->seq, cp->ts_ms, head, key, sig);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int ok = n > 0 && write(fd, line, (size_t)n) == n && fsync(fd) == 0;
    close(fd);
    return ok ? 0 : -1;
}

int vg_audit_checkpoint_write(struct vg_store *st, const uint8_t sk[VG_AUDIT_SK_BYTES],
                              const char *log_path, struct vg_audit_checkpoint *out)
{
    sqlite3 *db = vg_store_db(st);
    struct vg_audit_checkpoint cp;
    memset(&cp, 0, sizeof cp);
    int rc = vg_store_begin(st);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    rc = VG_STORE_ERROR;
    if (sqlite3_prepare_v2(db,
                           "SELECT a.seq, a.hash, (SELECT max(seq) FROM audit_checkpoints)"
                           " FROM audit a ORDER BY a.seq DESC LIMIT 1",
                           -1, &s, NULL) != SQLITE_OK)
        goto out;
    int step = sqlite3_step(s);
    if (step == SQLITE_DONE || (step == SQLITE_ROW && sqlite3_column_type(s, 2) != SQLITE_NULL &&
                                sqlite3_column_int64(s, 2) == sqlite3_column_int64(s, 0))) {
        sqlite3_finalize(s);
        vg_store_rollback(st);
        return 1; /* nothing new to vouch for */
    }
    if (step != SQLITE_ROW || sqlite3_column_bytes(s, 1) != VG_SHA256_BYTES) {
        sqlite3_finalize(s);
        goto out;
    }
    cp.seq = sqlite3_column_int64(s, 0);
    memcpy(cp.head, sqlite3_column_blob(s, 1), VG_SHA256_BYTES);
    sqlite3_finalize(s);
    cp.ts_ms = vg_now_ms();
    crypto_sign_ed25519_sk_to_pk(cp.pubkey, sk);
    uint8_t msg[128];
    size_t len = checkpoint_message(&cp, msg, sizeof msg);
    if (!len || crypto_sign_detached(cp.sig, NULL, msg, len, sk) != 0)
        goto out;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO audit_checkpoints(seq, ts_ms, head, pubkey, sig)"
                           " VALUES (?, ?, ?, ?, ?)",
                           -1, &s, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(s, 1, cp.seq);
    sqlite3_bind_int64(s, 2, cp.ts_ms);
    sqlite3_bind_blob(s, 3, cp.head, sizeof cp.head, SQLITE_STATIC);
    sqlite3_bind_blob(s, 4, cp.pubkey, sizeof cp.pubkey, SQLITE_STATIC);
    sqlite3_bind_blob(s, 5, cp.sig, sizeof cp.sig, SQLITE_STATIC);
    step = sqlite3_step(s);
    sqlite3_finalize(s);
    if (step != SQLITE_DONE) {
        rc = (step & 0xff) == SQLITE_FULL    ? VG_STORE_FULL
               : (step & 0xff) == SQLITE_IOERR ? VG_STORE_IO
                                              : VG_STORE_ERROR;
        goto out;
    }
    rc = vg_store_commit(st);
    if (rc)
        goto out;
    /* The copy outside the database: written after the commit, so the file
     * never vouches for a head the database does not have. */
    if (log_path && append_checkpoint_line(log_path, &cp) != 0)
        rc = VG_STORE_ERROR;
    if (out)
        *out = cp;
    return rc;
out:
    vg_store_rollback(st);
    return rc;
}

/* ---- verification ---- */

struct cp_list {
    struct vg_audit_checkpoint *v;
    size_t n, cap;
};

static int cp_push(struct cp_list *l, const struct vg_audit_checkpoint *cp)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct vg_audit_checkpoint *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *cp;
    return 0;
}

static int cp_by_seq(const void *a, const void *b)
{
    int64_t x = ((const struct vg_audit_checkpoint *)a)->seq;
    int64_t y = ((const struct vg_audit_checkpoint *)b)->seq;
    return x < y ? -1 : x > y;
}

static int hex_field(const char *line, const char *name, uint8_t *out, size_t len)
{
    const char *p = strstr(line, name);
    if (!p)
        return -1;
    p += strlen(name);
    size_t got = 0;
    return sodium_hex2bin(out, len, p, 2 * len, NULL, &got, NULL) == 0 && got == len ? 0 : -1;
}

static int load_checkpoint_file(const char *path, struct cp_list *l, char *why, size_t why_size)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(why, why_size, "cannot read checkpoint file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[640];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        struct vg_audit_checkpoint cp;
        char *seq = strstr(line, " seq="), *ts = strstr(line, " ts="), *end;
        if (strncmp(line, "vigil-audit-checkpoint/v1 ", 26) != 0 || !seq || !ts)
            goto bad;
        cp.seq = strtoll(seq + 5, &end, 10);
        if (*end != ' ')
            goto bad;
        cp.ts_ms = strtoll(ts + 4, &end, 10);
        if (*end != ' ' || hex_field(line, " head=", cp.head, sizeof cp.head) ||
            hex_field(line, " key=", cp.pubkey, sizeof cp.pubkey) ||
            hex_field(line, " sig=", cp.sig, sizeof cp.sig))
            goto bad;
        if (cp_push(l, &cp) != 0) {
            rc = -1;
            break;
        }
        continue;
    bad:
        snprintf(why, why_size, "checkpoint file %s, line %d: not a checkpoint (altered?)", path, lineno);
        rc = -1;
        break;
    }
    fclose(f);
    return rc;
}

static int load_checkpoint_table(sqlite3 *db, struct cp_list *l)
{
    sqlite3_stmt *s;
    /* A database from before checkpoints existed simply has none. */
    if (sqlite3_prepare_v2(db, "SELECT seq, ts_ms, head, pubkey, sig FROM audit_checkpoints", -1,
                           &s, NULL) != SQLITE_OK)
        return 0;
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct vg_audit_checkpoint cp;
        memset(&cp, 0, sizeof cp);
        cp.seq = sqlite3_column_int64(s, 0);
        cp.ts_ms = sqlite3_column_int64(s, 1);
        /* Wrong sizes leave zeros, which then fail the signature check. */
        if (sqlite3_column_bytes(s, 2) == VG_SHA256_BYTES)
            memcpy(cp.head, sqlite3_column_blob(s, 2), VG_SHA256_BYTES);
        if (sqlite3_column_bytes(s, 3) == VG_AUDIT_PK_BYTES)
            memcpy(cp.pubkey, sqlite3_column_blob(s, 3), VG_AUDIT_PK_BYTES);
        if (sqlite3_column_bytes(s, 4) == VG_AUDIT_SIG_BYTES)
            memcpy(cp.sig, sqlite3_column_blob(s, 4), VG_AUDIT_SIG_BYTES);
        if (cp_push(l, &cp) != 0)
            break;
    }
    sqlite3_finalize(s);
    return step == SQLITE_DONE ? 0 : -1;
}

static int fail_at(struct vg_audit_verify_result *res, int64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(struct vg_audit_verify_result *res, int64_t seq, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->why, sizeof res->why, fmt, ap);
    va_end(ap);
    res->ok = 0;
    res->bad_seq = seq;
    return 1;
}

int vg_audit_verify_db(struct sqlite3 *db, const uint8_t *pubkey, const char *checkpoint_file,
                       struct vg_audit_verify_result *res)
{
    memset(res, 0, sizeof *res);
    struct cp_list cps = {0};
    int rc = -1;
    struct hasher h = {0};
    sqlite3_stmt *s = NULL;

    if (pubkey) {
        if (load_checkpoint_table(db, &cps) != 0) {
            snprintf(res->why, sizeof res->why, "cannot read the checkpoint table: %s", sqlite3_errmsg(db));
            goto out;
        }
        if (checkpoint_file && load_checkpoint_file(checkpoint_file, &cps, res->why, sizeof res->why) != 0) {
            rc = 1;
            res->ok = 0;
            goto out;
        }
        /* A checkpoint is worth something only if the trusted key signed
         * it: check every signature before trusting any head. */
        for (size_t i = 0; i < cps.n; i++)
            if (!checkpoint_sig_ok(&cps.v[i], pubkey)) {
                rc = fail_at(res, cps.v[i].seq,
                             "the checkpoint for record %" PRId64 " has an invalid signature"
                             " (forged, altered, or signed by another key)", cps.v[i].seq);
                goto out;
            }
        if (cps.n > 1)
            qsort(cps.v, cps.n, sizeof *cps.v, cp_by_seq);
    }

    if (hasher_init(&h) != 0)
        goto out;
    /* One sequential pass over the whole table: let SQLite map the file
     * instead of copying every page through its cache. */
    sqlite3_exec(db, "PRAGMA mmap_size = 1073741824", NULL, NULL, NULL);
    if (sqlite3_prepare_v2(db,
                           "SELECT seq, ts_ms, actor, action, target, outcome, detail, source,"
                           " prev, hash FROM audit ORDER BY seq",
                           -1, &s, NULL) != SQLITE_OK) {
        snprintf(res->why, sizeof res->why, "cannot read the audit table: %s", sqlite3_errmsg(db));
        goto out;
    }
    uint8_t prev[VG_SHA256_BYTES] = {0};
    int64_t expect = 1, good_cp_seq = 0;
    size_t next_cp = 0;
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(s, 0);
        if (seq != expect) {
            rc = seq > expect
                     ? fail_at(res, expect, "record %" PRId64 " is missing (the trail jumps to %" PRId64 ")",
                               expect, seq)
                     : fail_at(res, seq, "record %" PRId64 " is out of place", seq);
            goto out;
        }
        const char *f[6];
        size_t lens[6];
        for (int i = 0; i < 6; i++) {
            const unsigned char *t = sqlite3_column_text(s, 2 + i);
            f[i] = t ? (const char *)t : "";
            lens[i] = t ? (size_t)sqlite3_column_bytes(s, 2 + i) : 0;
        }
        if (sqlite3_column_bytes(s, 8) != VG_SHA256_BYTES ||
            memcmp(sqlite3_column_blob(s, 8), prev, VG_SHA256_BYTES) != 0) {
            rc = fail_at(res, seq,
                         "record %" PRId64 " does not link to the record before it"
                         " (a record was inserted, removed or reordered here)", seq);
            goto out;
        }
        uint8_t hash[VG_SHA256_BYTES];
        if (record_hash(&h, prev, seq, sqlite3_column_int64(s, 1), f, lens, hash) != 0)
            goto out;
        if (sqlite3_column_bytes(s, 9) != VG_SHA256_BYTES ||
            memcmp(sqlite3_column_blob(s, 9), hash, VG_SHA256_BYTES) != 0) {
            rc = fail_at(res, seq, "record %" PRId64 " was altered (its content does not match its hash)", seq);
            goto out;
        }
        /* Checkpoints naming this record must carry exactly this hash; if
         * not, the chain from the last good checkpoint on was recomputed. */
        while (next_cp < cps.n && cps.v[next_cp].seq <= seq) {
            if (cps.v[next_cp].seq == seq &&
                memcmp(cps.v[next_cp].head, hash, VG_SHA256_BYTES) != 0) {
                rc = fail_at(res, good_cp_seq + 1,
                             "the records after %" PRId64 " up to %" PRId64 " were rewritten:"
                             " the signed checkpoint for record %" PRId64 " does not match",
                             good_cp_seq, seq, seq);
                goto out;
            }
            /* The same checkpoint in the table and in the log counts once. */
            int dup = next_cp > 0 && cps.v[next_cp - 1].seq == seq &&
                      !memcmp(cps.v[next_cp - 1].sig, cps.v[next_cp].sig, VG_AUDIT_SIG_BYTES);
            if (cps.v[next_cp].seq == seq && !dup) {
                good_cp_seq = seq;
                res->checkpoints++;
                res->latest_cp_seq = seq;
                res->latest_cp_ts = cps.v[next_cp].ts_ms;
            }
            next_cp++;
        }
        memcpy(prev, hash, sizeof prev);
        res->records++;
        res->last_seq = seq;
        expect++;
    }
    if (step != SQLITE_DONE) {
        snprintf(res->why, sizeof res->why, "cannot read the audit table: %s", sqlite3_errmsg(db));
        goto out;
    }
    if (next_cp < cps.n) {
        int64_t covered = cps.v[cps.n - 1].seq;
        rc = fail_at(res, res->last_seq + 1,
                     "the trail was truncated: it ends at record %" PRId64 " but a signed"
                     " checkpoint covers records up to %" PRId64, res->last_seq, covered);
        goto out;
    }
    res->ok = 1;
    rc = 0;
out:
    sqlite3_finalize(s);
    hasher_free(&h);
    free(cps.v);
    return rc;
}

int vg_audit_verify(struct vg_store *st, int64_t *count, int64_t *bad_seq, char *why,
                    size_t why_size)
{
    struct vg_audit_verify_result res;
    int rc = vg_audit_verify_db(vg_store_db(st), NULL, NULL, &res);
    *count = res.records;
    *bad_seq = res.bad_seq;
    snprintf(why, why_size, "%s", res.why);
    return rc == 0 ? 0 : -1;
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
