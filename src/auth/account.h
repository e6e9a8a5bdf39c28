/* auth/account — principals (people and services), their credentials,
 * sessions and service tokens, care teams and break-glass grants.
 *
 * Works on the caller's store handle and inside the caller's transaction
 * where a function says so; never logs secrets. Tokens are 256-bit random
 * strings stored only as SHA-256 hashes; passwords as Argon2id; TOTP seeds
 * sealed under the KEK.
 */
#ifndef VG_AUTH_ACCOUNT_H
#define VG_AUTH_ACCOUNT_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"
#include "crypto/crypto.h"
#include "store/store.h"

/* Who is asking, as established by a token, a session or a certificate. */
struct vg_principal {
    char id[VG_ID_MAX + 1];
    char kind[16];       /* "user", "service" or "device" */
    char roles[64];      /* space-separated set, e.g. "admin clinician" */
    char scopes[128];    /* service token scopes, space-separated */
    char patients[1024]; /* service token patients, space-separated, or "*" */
    char token_id[20];   /* public id of the presented token ("" if none) */
    int session;         /* authenticated by a login session */
};

/* Is 'word' one of the space-separated words of 'set'? */
int vg_word_in(const char *set, const char *word);

/* The roles vigil knows; every role given to a principal must be one. */
int vg_role_valid(const char *role);

/* Validates and normalises a list of roles ("a,b" or "a b") into
 * "a b" in 'out'. Returns 0 or -1 with the offending role in 'why'. */
int vg_roles_normalise(const char *in, char *out, size_t size, char *why, size_t why_size);

/* Resolves a bearer token at now_ms: checks it is known, not revoked, not
 * expired, not idle past its idle timeout, and that its principal is not
 * disabled; refreshes its last-use time (that write needs no transaction of
 * the caller). VG_STORE_NOT_FOUND for any reason it is not valid. */
int vg_account_authenticate(struct vg_store *st, const char *token, int64_t now_ms,
                            struct vg_principal *out) VG_WARN_UNUSED;

struct vg_login_policy {
    int64_t session_lifetime_ms; /* absolute */
    int64_t session_idle_ms;
    int max_failures;            /* per account name, within window */
    int addr_max_failures;       /* per source address, within window */
    int64_t window_ms;
    int64_t lockout_ms;
};

enum vg_login_result { VG_LOGIN_OK = 0, VG_LOGIN_FAILED, VG_LOGIN_LOCKED, VG_LOGIN_ERROR };

struct vg_login_outcome {
    char token[VG_TOKEN_MAX];    /* the new session token (OK) */
    int64_t expires_ms;
    struct vg_principal who;     /* OK */
    char why[96];                /* for the audit record only, never the
                                    client: "wrong password", ... */
    int lockout_started;         /* this failure locked the name/address */
    int64_t retry_after_ms;      /* LOCKED */
};

/* A login by a person: password (Argon2id) and TOTP code (no replay), with
 * per-name and per-address throttling. Runs its own transaction. The
 * answer to the client must not depend on which check failed. */
enum vg_login_result vg_account_login(struct vg_store *st, const struct vg_login_policy *pol,
                                      const char *user, const char *password, const char *totp,
                                      const char *source, int64_t now_ms,
                                      struct vg_login_outcome *out);

/* Revokes one token (logout). */
int vg_account_revoke_token_text(struct vg_store *st, const char *token) VG_WARN_UNUSED;

/* The rest run inside the caller's transaction. */

/* Creates a principal. kind "user": 'password' is required and checked
 * against the policy, a TOTP seed is made and its otpauth URI written to
 * 'totp_uri'. kind "service": no password, no TOTP. VG_STORE_EXISTS if the
 * id is taken; VG_STORE_ERROR with a reason in 'why' for a refused
 * password or role. */
int vg_account_create(struct vg_store *st, const char *id, const char *kind, const char *roles,
                      const char *password, int64_t now_ms, char *totp_uri, size_t uri_size,
                      char *why, size_t why_size) VG_WARN_UNUSED;
int vg_account_get(struct vg_store *st, const char *id, struct vg_principal *out) VG_WARN_UNUSED;
int vg_account_set_roles(struct vg_store *st, const char *id, const char *roles) VG_WARN_UNUSED;
/* Disables the account and revokes all its tokens and sessions. */
int vg_account_disable(struct vg_store *st, const char *id) VG_WARN_UNUSED;
/* A new TOTP seed for a person; the old one stops working. */
int vg_account_new_totp(struct vg_store *st, const char *id, char *totp_uri, size_t uri_size)
    VG_WARN_UNUSED;
/* Changes a person's password after checking the current one. VG_STORE_ERROR
 * with 'why' for a refused new password; VG_STORE_INTEGRITY for a wrong
 * current one. Revokes the person's other sessions. */
int vg_account_set_password(struct vg_store *st, const char *id, const char *current,
                            const char *fresh, const char *keep_token_id, char *why,
                            size_t why_size) VG_WARN_UNUSED;
/* For a principal that authenticates by certificate (live data over MQTT):
 * its record, the fingerprint of its enrolled certificate, and — for a
 * service — the union of the scopes and patients of its active tokens
 * (the certificate identifies; the tokens grant). */
int vg_account_get_for_cert(struct vg_store *st, const char *id, int64_t now_ms,
                            struct vg_principal *out, char fingerprint[65]) VG_WARN_UNUSED;
int vg_account_set_cert(struct vg_store *st, const char *id, const char *fingerprint) VG_WARN_UNUSED;

/* A service token for 'principal' (kind service): scopes space-separated,
 * patients space-separated or "*". expires_ms 0 = never (discouraged). */
int vg_token_issue(struct vg_store *st, const char *principal, const char *scopes,
                   const char *patients, int64_t now_ms, int64_t expires_ms,
                   char token[VG_TOKEN_MAX], char id[20]) VG_WARN_UNUSED;
int vg_token_revoke(struct vg_store *st, const char *id) VG_WARN_UNUSED;

int vg_careteam_add(struct vg_store *st, const char *user, const char *patient, int64_t start_ms,
                    int64_t end_ms, int64_t *id) VG_WARN_UNUSED;
int vg_careteam_end(struct vg_store *st, int64_t id, int64_t now_ms) VG_WARN_UNUSED;
/* Is 'user' on 'patient''s care team at now_ms? 1/0, or negative. */
int vg_careteam_member(struct vg_store *st, const char *user, const char *patient, int64_t now_ms);

int vg_breakglass_open(struct vg_store *st, const char *user, const char *patient,
                       const char *reason, int64_t now_ms, int64_t duration_ms, int64_t *id)
    VG_WARN_UNUSED;
/* The active grant's reason (1), none (0), or negative. */
int vg_breakglass_active(struct vg_store *st, const char *user, const char *patient,
                         int64_t now_ms, char *reason, size_t reason_size, int64_t *end_ms);

#endif
