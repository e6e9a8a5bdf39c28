#include "auth/account.h"

#include <inttypes.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/password.h"
#include "auth/totp.h"

static const char *const known_roles[] = {"admin",   "clinician",   "nurse",    "biomed",
                                          "auditor", "integration", "security", NULL};

int vg_word_in(const char *set, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = set; p && *p;) {
        while (*p == ' ')
            p++;
        const char *end = strchr(p, ' ');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !strncmp(p, word, n))
            return 1;
        p = end;
    }
    return 0;
}

int vg_role_valid(const char *role)
{
    for (const char *const *r = known_roles; *r; r++)
        if (!strcmp(*r, role))
            return 1;
    return 0;
}

int vg_roles_normalise(const char *in, char *out, size_t size, char *why, size_t why_size)
{
    char buf[128];
    if (vg_strlcpy(buf, in, sizeof buf) != 0) {
        snprintf(why, why_size, "too many roles");
        return -1;
    }
    out[0] = '\0';
    size_t used = 0;
    int count = 0;
    for (char *p = buf; *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        if (!*p)
            break;
        char *end = p + strcspn(p, ", ");
        char save = *end;
        *end = '\0';
        if (!vg_role_valid(p)) {
            snprintf(why, why_size, "unknown role '%.20s' (admin, clinician, nurse, biomed, auditor, integration)", p);
            return -1;
        }
        if (!vg_word_in(out, p)) {
            int w = snprintf(out + used, size - used, "%s%s", used ? " " : "", p);
            if (w < 0 || (size_t)w >= size - used) {
                snprintf(why, why_size, "too many roles");
                return -1;
            }
            used += (size_t)w;
            count++;
        }
        *end = save;
        p = end;
    }
    if (!count) {
        snprintf(why, why_size, "at least one role is required");
        return -1;
    }
    return 0;
}

static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc == SQLITE_DONE)
        return VG_STORE_OK;
    return (rc & 0xff) == SQLITE_CONSTRAINT ? VG_STORE_EXISTS : VG_STORE_ERROR;
}

static sqlite3_stmt *prep(struct vg_store *st, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(vg_store_db(st), sql, -1, &s, NULL) != SQLITE_OK)
        return NULL;
    return s;
}

static void col_copy(sqlite3_stmt *s, int i, char *out, size_t size)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    vg_strlcpy(out, t ? (const char *)t : "", size);
}

/* ---- tokens ---- */

int vg_account_authenticate(struct vg_store *st, const char *token, int64_t now_ms,
                            struct vg_principal *out)
{
    uint8_t hash[VG_SHA256_BYTES];
    vg_token_hash(token, strlen(token), hash);
    sqlite3_stmt *s = prep(st,
                           "SELECT p.id, p.kind, p.role, t.scopes, t.patients, coalesce(t.id, ''),"
                           " t.kind, t.hash, t.last_used_ms, t.idle_ms FROM tokens t"
                           " JOIN principals p ON p.id = t.principal_id"
                           " WHERE t.hash = ? AND t.revoked = 0 AND p.disabled = 0"
                           " AND (t.expires_ms = 0 OR t.expires_ms > ?)");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_blob(s, 1, hash, sizeof hash, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now_ms);
    int rc = VG_STORE_NOT_FOUND;
    int64_t last_used = 0;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_bytes(s, 7) == VG_SHA256_BYTES &&
        vg_ct_equal(sqlite3_column_blob(s, 7), hash, VG_SHA256_BYTES)) {
        int64_t idle = sqlite3_column_int64(s, 9);
        last_used = sqlite3_column_int64(s, 8);
        /* Automatic logoff (§164.312(a)(2)(iii)): idle sessions end. */
        if (!idle || now_ms - last_used < idle) {
            memset(out, 0, sizeof *out);
            col_copy(s, 0, out->id, sizeof out->id);
            col_copy(s, 1, out->kind, sizeof out->kind);
            col_copy(s, 2, out->roles, sizeof out->roles);
            col_copy(s, 3, out->scopes, sizeof out->scopes);
            col_copy(s, 4, out->patients, sizeof out->patients);
            col_copy(s, 5, out->token_id, sizeof out->token_id);
            const unsigned char *k = sqlite3_column_text(s, 6);
            out->session = k && !strcmp((const char *)k, "session");
            rc = VG_STORE_OK;
        }
    }
    sqlite3_finalize(s);
    /* Refresh the idle clock at most every 5 s: one write per request
     * would serialise all readers behind the store writer for nothing. */
    if (rc == VG_STORE_OK && now_ms - last_used >= 5000) {
        s = prep(st, "UPDATE tokens SET last_used_ms = ? WHERE hash = ?");
        if (s) {
            sqlite3_bind_int64(s, 1, now_ms);
            sqlite3_bind_blob(s, 2, hash, sizeof hash, SQLITE_STATIC);
            (void)step_done(s);
        }
    }
    return rc;
}

static int token_insert(struct vg_store *st, const char *principal, const char *kind,
                        const char *scopes, const char *patients, int64_t now_ms,
                        int64_t expires_ms, int64_t idle_ms, char token[VG_TOKEN_MAX], char id[20])
{
    uint8_t hash[VG_SHA256_BYTES];
    vg_token_new(token);
    /* Session tokens read "vgs_", service tokens "vgt_": a leaked token
     * says what it is. */
    if (!strcmp(kind, "session"))
        token[2] = 's';
    vg_token_hash(token, strlen(token), hash);
    vg_hex(hash, 8, id); /* a public handle: part of the hash, not the token */
    sqlite3_stmt *s = prep(st, "INSERT INTO tokens(hash, principal_id, created_ms, expires_ms, id,"
                               " kind, scopes, patients, last_used_ms, idle_ms)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_blob(s, 1, hash, sizeof hash, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, principal, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now_ms);
    sqlite3_bind_int64(s, 4, expires_ms);
    sqlite3_bind_text(s, 5, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, scopes, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, patients, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 9, now_ms);
    sqlite3_bind_int64(s, 10, idle_ms);
    return step_done(s);
}

int vg_token_issue(struct vg_store *st, const char *principal, const char *scopes,
                   const char *patients, int64_t now_ms, int64_t expires_ms,
                   char token[VG_TOKEN_MAX], char id[20])
{
    return token_insert(st, principal, "service", scopes, patients, now_ms, expires_ms, 0, token, id);
}

int vg_token_revoke(struct vg_store *st, const char *id)
{
    sqlite3_stmt *s = prep(st, "UPDATE tokens SET revoked = 1 WHERE id = ? AND revoked = 0");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = step_done(s);
    if (rc == VG_STORE_OK && sqlite3_changes(vg_store_db(st)) == 0)
        return VG_STORE_NOT_FOUND;
    return rc;
}

int vg_account_revoke_token_text(struct vg_store *st, const char *token)
{
    uint8_t hash[VG_SHA256_BYTES];
    vg_token_hash(token, strlen(token), hash);
    sqlite3_stmt *s = prep(st, "UPDATE tokens SET revoked = 1 WHERE hash = ?");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_blob(s, 1, hash, sizeof hash, SQLITE_STATIC);
    return step_done(s);
}

/* ---- accounts ---- */

static int seal_totp(struct vg_store *st, const char *id, const uint8_t secret[VG_TOTP_SECRET_BYTES],
                     char *uri, size_t uri_size)
{
    char purpose[VG_ID_MAX + 32];
    uint8_t sealed[VG_TOTP_SECRET_BYTES + VG_AEAD_OVERHEAD];
    size_t sealed_len;
    snprintf(purpose, sizeof purpose, "%s%s", VG_STORE_TOTP_PURPOSE, id);
    if (vg_store_seal_secret(st, purpose, secret, VG_TOTP_SECRET_BYTES, sealed, &sealed_len) != 0 ||
        vg_totp_uri(secret, "vigil", id, uri, uri_size) != 0)
        return VG_STORE_ERROR;
    sqlite3_stmt *s = prep(st, "UPDATE principals SET totp_sealed = ?, totp_last_step = 0 WHERE id = ?");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_blob(s, 1, sealed, (int)sealed_len, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, id, -1, SQLITE_STATIC);
    return step_done(s);
}

/* A fresh TOTP seed for 'id', sealed and stored; its URI in 'uri'. */
static int new_totp(struct vg_store *st, const char *id, char *uri, size_t uri_size)
{
    uint8_t secret[VG_TOTP_SECRET_BYTES];
    vg_totp_secret_new(secret);
    int rc = seal_totp(st, id, secret, uri, uri_size);
    sodium_memzero(secret, sizeof secret);
    return rc;
}

int vg_account_create(struct vg_store *st, const char *id, const char *kind, const char *roles,
                      const char *password, int64_t now_ms, char *totp_uri, size_t uri_size,
                      char *why, size_t why_size)
{
    char norm[64];
    int person = !strcmp(kind, "user");
    if (!person && strcmp(kind, "service")) {
        snprintf(why, why_size, "kind must be user or service");
        return VG_STORE_ERROR;
    }
    if (vg_roles_normalise(roles, norm, sizeof norm, why, why_size) != 0)
        return VG_STORE_ERROR;
    /* Services act only through scoped tokens; people through sessions. */
    if (!person && strcmp(norm, "integration")) {
        snprintf(why, why_size, "a service principal has the role integration only");
        return VG_STORE_ERROR;
    }
    if (person && vg_word_in(norm, "integration")) {
        snprintf(why, why_size, "the integration role is for service principals");
        return VG_STORE_ERROR;
    }
    char hash[VG_PW_HASH_MAX] = "";
    if (person) {
        enum vg_pw_verdict v = password ? vg_pw_check(password, id) : VG_PW_TOO_SHORT;
        if (v != VG_PW_OK) {
            snprintf(why, why_size, "%s", vg_pw_verdict_text(v));
            return VG_STORE_ERROR;
        }
        if (vg_pw_hash(password, hash) != 0)
            return VG_STORE_ERROR;
    }
    sqlite3_stmt *s = prep(st, "INSERT INTO principals(id, role, created_ms, kind, pw_hash)"
                               " VALUES (?, ?, ?, ?, ?)");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, norm, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now_ms);
    sqlite3_bind_text(s, 4, kind, -1, SQLITE_STATIC);
    if (person)
        sqlite3_bind_text(s, 5, hash, -1, SQLITE_STATIC);
    int rc = step_done(s);
    if (rc)
        return rc;
    if (totp_uri && uri_size)
        totp_uri[0] = '\0';
    return person ? new_totp(st, id, totp_uri, uri_size) : rc;
}

/* One active principal's row; its enrolled certificate's fingerprint too
 * when 'fingerprint' is given. */
static int load_principal(struct vg_store *st, const char *id, struct vg_principal *out,
                          char *fingerprint)
{
    sqlite3_stmt *s = prep(st, "SELECT id, kind, role, coalesce(cert_fingerprint, '') FROM principals"
                               " WHERE id = ? AND disabled = 0");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = VG_STORE_NOT_FOUND;
    if (sqlite3_step(s) == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        col_copy(s, 0, out->id, sizeof out->id);
        col_copy(s, 1, out->kind, sizeof out->kind);
        col_copy(s, 2, out->roles, sizeof out->roles);
        if (fingerprint)
            col_copy(s, 3, fingerprint, 65);
        rc = VG_STORE_OK;
    }
    sqlite3_finalize(s);
    return rc;
}

int vg_account_get(struct vg_store *st, const char *id, struct vg_principal *out)
{
    return load_principal(st, id, out, NULL);
}

static int update_one(struct vg_store *st, const char *sql, const char *a, const char *b)
{
    sqlite3_stmt *s = prep(st, sql);
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, a, -1, SQLITE_STATIC);
    if (b)
        sqlite3_bind_text(s, 2, b, -1, SQLITE_STATIC);
    int rc = step_done(s);
    if (rc == VG_STORE_OK && sqlite3_changes(vg_store_db(st)) == 0)
        return VG_STORE_NOT_FOUND;
    return rc;
}

int vg_account_set_roles(struct vg_store *st, const char *id, const char *roles)
{
    return update_one(st, "UPDATE principals SET role = ? WHERE id = ?", roles, id);
}

int vg_account_disable(struct vg_store *st, const char *id)
{
    int rc = update_one(st, "UPDATE principals SET disabled = 1 WHERE id = ?", id, NULL);
    if (rc)
        return rc;
    sqlite3_stmt *s = prep(st, "UPDATE tokens SET revoked = 1 WHERE principal_id = ?");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    return step_done(s);
}

int vg_account_new_totp(struct vg_store *st, const char *id, char *totp_uri, size_t uri_size)
{
    struct vg_principal p;
    int rc = vg_account_get(st, id, &p);
    if (rc)
        return rc;
    if (strcmp(p.kind, "user"))
        return VG_STORE_NOT_FOUND;
    return new_totp(st, id, totp_uri, uri_size);
}

int vg_account_set_cert(struct vg_store *st, const char *id, const char *fingerprint)
{
    return update_one(st, "UPDATE principals SET cert_fingerprint = ? WHERE id = ?", fingerprint, id);
}

/* A person's password hash, TOTP seed and last TOTP step. */
struct creds {
    char pw_hash[VG_PW_HASH_MAX];
    uint8_t totp[VG_TOTP_SECRET_BYTES];
    int have_totp;
    int64_t last_step;
    struct vg_principal who;
};

static int load_creds(struct vg_store *st, const char *id, struct creds *c)
{
    sqlite3_stmt *s = prep(st, "SELECT id, kind, role, pw_hash, totp_sealed, totp_last_step"
                               " FROM principals WHERE id = ? AND disabled = 0 AND kind = 'user'");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = VG_STORE_NOT_FOUND;
    if (sqlite3_step(s) == SQLITE_ROW) {
        memset(c, 0, sizeof *c);
        col_copy(s, 0, c->who.id, sizeof c->who.id);
        col_copy(s, 1, c->who.kind, sizeof c->who.kind);
        col_copy(s, 2, c->who.roles, sizeof c->who.roles);
        col_copy(s, 3, c->pw_hash, sizeof c->pw_hash);
        c->last_step = sqlite3_column_int64(s, 5);
        char purpose[VG_ID_MAX + 32];
        size_t len = 0;
        snprintf(purpose, sizeof purpose, "%s%s", VG_STORE_TOTP_PURPOSE, id);
        const uint8_t *sealed = sqlite3_column_blob(s, 4);
        int sealed_len = sqlite3_column_bytes(s, 4);
        c->have_totp = sealed && sealed_len == VG_TOTP_SECRET_BYTES + VG_AEAD_OVERHEAD &&
                       vg_store_open_secret(st, purpose, sealed, (size_t)sealed_len, c->totp, &len) == 0 &&
                       len == VG_TOTP_SECRET_BYTES;
        rc = VG_STORE_OK;
    }
    sqlite3_finalize(s);
    return rc;
}

int vg_account_set_password(struct vg_store *st, const char *id, const char *current,
                            const char *fresh, const char *keep_token_id, char *why,
                            size_t why_size)
{
    struct creds c;
    int rc = load_creds(st, id, &c);
    if (rc)
        return rc;
    int ok = vg_pw_verify(c.pw_hash, current);
    sodium_memzero(&c, sizeof c);
    if (!ok)
        return VG_STORE_INTEGRITY;
    enum vg_pw_verdict v = vg_pw_check(fresh, id);
    if (v != VG_PW_OK) {
        snprintf(why, why_size, "%s", vg_pw_verdict_text(v));
        return VG_STORE_ERROR;
    }
    char hash[VG_PW_HASH_MAX];
    if (vg_pw_hash(fresh, hash) != 0)
        return VG_STORE_ERROR;
    rc = update_one(st, "UPDATE principals SET pw_hash = ? WHERE id = ?", hash, id);
    if (rc)
        return rc;
    /* Other sessions of this person end: they may be the reason for the
     * change. */
    sqlite3_stmt *s = prep(st, "UPDATE tokens SET revoked = 1 WHERE principal_id = ?"
                               " AND kind = 'session' AND coalesce(id, '') != ?");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, keep_token_id ? keep_token_id : "", -1, SQLITE_STATIC);
    return step_done(s);
}

/* ---- login throttling ---- */

struct throttle {
    int failures;
    int64_t window_start, locked_until;
};

static int throttle_get(struct vg_store *st, const char *key, struct throttle *t)
{
    memset(t, 0, sizeof *t);
    sqlite3_stmt *s = prep(st, "SELECT failures, window_start_ms, locked_until_ms FROM login_failures WHERE key = ?");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) {
        t->failures = sqlite3_column_int(s, 0);
        t->window_start = sqlite3_column_int64(s, 1);
        t->locked_until = sqlite3_column_int64(s, 2);
    }
    sqlite3_finalize(s);
    return VG_STORE_OK;
}

static int throttle_put(struct vg_store *st, const char *key, const struct throttle *t)
{
    sqlite3_stmt *s = prep(st, "INSERT OR REPLACE INTO login_failures(key, failures, window_start_ms,"
                               " locked_until_ms) VALUES (?, ?, ?, ?)");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, t->failures);
    sqlite3_bind_int64(s, 3, t->window_start);
    sqlite3_bind_int64(s, 4, t->locked_until);
    return step_done(s);
}

/* Counts one failure; returns 1 when it starts a lockout. */
static int throttle_fail(struct vg_store *st, const char *key, int max, const struct vg_login_policy *pol,
                         int64_t now)
{
    struct throttle t;
    if (throttle_get(st, key, &t) != 0)
        return 0;
    if (now - t.window_start > pol->window_ms) {
        t.failures = 0;
        t.window_start = now;
    }
    t.failures++;
    int started = 0;
    if (t.failures >= max && t.locked_until <= now) {
        t.locked_until = now + pol->lockout_ms;
        t.failures = 0;
        t.window_start = now;
        started = 1;
    }
    (void)throttle_put(st, key, &t);
    return started;
}

static void address_of(const char *source, char *out, size_t size)
{
    /* "1.2.3.4:5678" or "::1:5678" → the address without the port. */
    vg_strlcpy(out, source, size);
    char *colon = strrchr(out, ':');
    if (colon)
        *colon = '\0';
}

enum vg_login_result vg_account_login(struct vg_store *st, const struct vg_login_policy *pol,
                                      const char *user, const char *password, const char *totp,
                                      const char *source, int64_t now_ms,
                                      struct vg_login_outcome *out)
{
    memset(out, 0, sizeof *out);
    char user_key[VG_ID_MAX + 8], addr_key[80], addr[64];
    /* A name that cannot be an account is throttled under one shared key,
     * like any other name: the answer never tells which names exist. */
    snprintf(user_key, sizeof user_key, "user:%s", vg_id_valid(user) ? user : "?");
    address_of(source, addr, sizeof addr);
    snprintf(addr_key, sizeof addr_key, "addr:%s", addr);
    if (vg_store_begin(st) != 0)
        return VG_LOGIN_ERROR;
    struct throttle tu, ta;
    if (throttle_get(st, user_key, &tu) != 0 || throttle_get(st, addr_key, &ta) != 0) {
        vg_store_rollback(st);
        return VG_LOGIN_ERROR;
    }
    int64_t locked_until = tu.locked_until > ta.locked_until ? tu.locked_until : ta.locked_until;
    if (locked_until > now_ms) {
        vg_store_rollback(st);
        out->retry_after_ms = locked_until - now_ms;
        snprintf(out->why, sizeof out->why, "%s locked out", tu.locked_until > now_ms ? "account name" : "address");
        return VG_LOGIN_LOCKED;
    }

    struct creds c;
    int found = vg_id_valid(user) && load_creds(st, user, &c) == VG_STORE_OK;
    int ok;
    if (!found) {
        /* The same Argon2id cost as a real account: no timing oracle. */
        (void)vg_pw_verify_dummy(password);
        ok = 0;
        snprintf(out->why, sizeof out->why, "unknown or disabled account");
    } else if (!vg_pw_verify(c.pw_hash, password)) {
        ok = 0;
        snprintf(out->why, sizeof out->why, "wrong password");
    } else if (!c.have_totp) {
        ok = 0;
        snprintf(out->why, sizeof out->why, "no second factor enrolled");
    } else {
        int64_t step = c.last_step;
        ok = vg_totp_verify(c.totp, totp ? totp : "", now_ms / 1000, &step) == 0;
        if (!ok)
            snprintf(out->why, sizeof out->why, "wrong or replayed authenticator code");
        else {
            /* Conditional on the step still being newer: with BEGIN
             * IMMEDIATE two logins cannot interleave here, and this keeps
             * the rule true even if that ever changes. */
            sqlite3_stmt *s = prep(st, "UPDATE principals SET totp_last_step = ?, last_login_ms = ?"
                                       " WHERE id = ? AND totp_last_step < ?");
            if (s) {
                sqlite3_bind_int64(s, 1, step);
                sqlite3_bind_int64(s, 2, now_ms);
                sqlite3_bind_text(s, 3, user, -1, SQLITE_STATIC);
                sqlite3_bind_int64(s, 4, step);
                ok = step_done(s) == VG_STORE_OK && sqlite3_changes(vg_store_db(st)) == 1;
                if (!ok)
                    snprintf(out->why, sizeof out->why, "wrong or replayed authenticator code");
            } else {
                ok = 0;
            }
        }
    }
    enum vg_login_result res;
    if (ok) {
        char id[20];
        tu.failures = 0;
        tu.window_start = now_ms;
        tu.locked_until = 0;
        (void)throttle_put(st, user_key, &tu);
        out->expires_ms = now_ms + pol->session_lifetime_ms;
        if (token_insert(st, user, "session", "", "", now_ms, out->expires_ms, pol->session_idle_ms,
                         out->token, id) != VG_STORE_OK) {
            vg_store_rollback(st);
            sodium_memzero(&c, sizeof c);
            return VG_LOGIN_ERROR;
        }
        out->who = c.who;
        vg_strlcpy(out->who.token_id, id, sizeof out->who.token_id);
        out->who.session = 1;
        res = VG_LOGIN_OK;
    } else {
        out->lockout_started = throttle_fail(st, user_key, pol->max_failures, pol, now_ms);
        out->lockout_started |= throttle_fail(st, addr_key, pol->addr_max_failures, pol, now_ms) << 1;
        res = VG_LOGIN_FAILED;
    }
    if (found)
        sodium_memzero(&c, sizeof c);
    if (vg_store_commit(st) != 0) {
        vg_store_rollback(st);
        sodium_memzero(out->token, sizeof out->token);
        return VG_LOGIN_ERROR;
    }
    return res;
}

/* ---- care teams and break-glass ---- */

int vg_careteam_add(struct vg_store *st, const char *user, const char *patient, int64_t start_ms,
                    int64_t end_ms, int64_t *id)
{
    sqlite3_stmt *s = prep(st, "INSERT INTO careteam(user_id, patient_id, start_ms, end_ms) VALUES (?, ?, ?, ?)");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, patient, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, start_ms);
    if (end_ms)
        sqlite3_bind_int64(s, 4, end_ms);
    int rc = step_done(s);
    if (rc == VG_STORE_EXISTS)
        return VG_STORE_NOT_FOUND; /* a foreign key: no such user or patient */
    *id = sqlite3_last_insert_rowid(vg_store_db(st));
    return rc;
}

int vg_careteam_end(struct vg_store *st, int64_t id, int64_t now_ms)
{
    sqlite3_stmt *s = prep(st, "UPDATE careteam SET end_ms = ? WHERE id = ? AND (end_ms IS NULL OR end_ms > ?)");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_int64(s, 1, now_ms);
    sqlite3_bind_int64(s, 2, id);
    sqlite3_bind_int64(s, 3, now_ms);
    int rc = step_done(s);
    if (rc == VG_STORE_OK && sqlite3_changes(vg_store_db(st)) == 0)
        return VG_STORE_NOT_FOUND;
    return rc;
}

int vg_careteam_member(struct vg_store *st, const char *user, const char *patient, int64_t now_ms)
{
    sqlite3_stmt *s = prep(st, "SELECT 1 FROM careteam WHERE user_id = ? AND patient_id = ?"
                               " AND start_ms <= ? AND (end_ms IS NULL OR end_ms > ?) LIMIT 1");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, patient, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now_ms);
    sqlite3_bind_int64(s, 4, now_ms);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    return step == SQLITE_ROW ? 1 : step == SQLITE_DONE ? 0 : VG_STORE_ERROR;
}

int vg_breakglass_open(struct vg_store *st, const char *user, const char *patient,
                       const char *reason, int64_t now_ms, int64_t duration_ms, int64_t *id)
{
    sqlite3_stmt *s = prep(st, "INSERT INTO breakglass(user_id, patient_id, reason, start_ms, end_ms)"
                               " VALUES (?, ?, ?, ?, ?)");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, patient, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, now_ms);
    sqlite3_bind_int64(s, 5, now_ms + duration_ms);
    int rc = step_done(s);
    if (rc == VG_STORE_EXISTS)
        return VG_STORE_NOT_FOUND;
    *id = sqlite3_last_insert_rowid(vg_store_db(st));
    return rc;
}

int vg_breakglass_active(struct vg_store *st, const char *user, const char *patient,
                         int64_t now_ms, char *reason, size_t reason_size, int64_t *end_ms)
{
    sqlite3_stmt *s = prep(st, "SELECT reason, end_ms FROM breakglass WHERE user_id = ? AND patient_id = ?"
                               " AND start_ms <= ? AND end_ms > ? ORDER BY end_ms DESC LIMIT 1");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, patient, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now_ms);
    sqlite3_bind_int64(s, 4, now_ms);
    int step = sqlite3_step(s);
    int rc = 0;
    if (step == SQLITE_ROW) {
        if (reason)
            col_copy(s, 0, reason, reason_size);
        if (end_ms)
            *end_ms = sqlite3_column_int64(s, 1);
        rc = 1;
    } else if (step != SQLITE_DONE) {
        rc = VG_STORE_ERROR;
    }
    sqlite3_finalize(s);
    return rc;
}

int vg_account_get_for_cert(struct vg_store *st, const char *id, int64_t now_ms,
                            struct vg_principal *out, char fingerprint[65])
{
    int rc = load_principal(st, id, out, fingerprint);
    if (rc || strcmp(out->kind, "service"))
        return rc;
    sqlite3_stmt *s = prep(st, "SELECT scopes, patients FROM tokens WHERE principal_id = ? AND revoked = 0"
                 " AND kind = 'service' AND (expires_ms = 0 OR expires_ms > ?)");
    if (!s)
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now_ms);
    size_t su = 0, pu = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *sc = (const char *)sqlite3_column_text(s, 0);
        const char *pa = (const char *)sqlite3_column_text(s, 1);
        int w = snprintf(out->scopes + su, sizeof out->scopes - su, "%s%s", su ? " " : "", sc ? sc : "");
        if (w > 0 && (size_t)w < sizeof out->scopes - su)
            su += (size_t)w;
        w = snprintf(out->patients + pu, sizeof out->patients - pu, "%s%s", pu ? " " : "", pa ? pa : "");
        if (w > 0 && (size_t)w < sizeof out->patients - pu)
            pu += (size_t)w;
    }
    sqlite3_finalize(s);
    return VG_STORE_OK;
}
