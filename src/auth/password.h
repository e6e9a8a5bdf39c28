/* auth/password — password policy (NIST SP 800-63B) and Argon2id hashing.
 *
 * Policy (SP 800-63B §5.1.1.2): at least 12 characters, accepted up to 128
 * (the floor NIST sets for the maximum is 64), any printable characters
 * and spaces, no composition rules, and refused when it appears on the
 * list of common or breached passwords compiled into vigil
 * (data/common-passwords.txt, compared case-insensitively) or equals the
 * user's own id. Length counts Unicode code points, not bytes.
 *
 * Hashing: libsodium crypto_pwhash_str (Argon2id, interactive limits unless
 * VG_PW_STRONG is set at build time), verified in constant time. Nothing
 * here logs or keeps a password; callers wipe their copies.
 */
#ifndef VG_AUTH_PASSWORD_H
#define VG_AUTH_PASSWORD_H

#include <stddef.h>

#include "core/util.h"

#define VG_PW_MIN_CHARS 12
#define VG_PW_MAX_CHARS 128
/* crypto_pwhash_STRBYTES */
#define VG_PW_HASH_MAX 128

enum vg_pw_verdict {
    VG_PW_OK = 0,
    VG_PW_TOO_SHORT,   /* fewer than 12 characters */
    VG_PW_TOO_LONG,    /* more than 128 characters */
    VG_PW_BAD_UTF8,    /* not valid UTF-8, or has control characters (C0, DEL, C1) */
    VG_PW_COMMON,      /* on the common/breached list */
    VG_PW_IS_USER_ID,  /* the same as the account's id */
};

/* Checks 'pw' (NUL-terminated) for the account 'user_id'. */
enum vg_pw_verdict vg_pw_check(const char *pw, const char *user_id);

/* A sentence for the person choosing the password (never echoes it). */
const char *vg_pw_verdict_text(enum vg_pw_verdict v);

/* Is 'pw' on the compiled-in list (case-insensitive)? 1/0. Exposed for
 * tests. */
int vg_pw_is_common(const char *pw);

/* Argon2id hash of 'pw' into 'out' (NUL-terminated, < VG_PW_HASH_MAX).
 * Returns 0 or -1 (out of memory). */
int vg_pw_hash(const char *pw, char out[VG_PW_HASH_MAX]) VG_WARN_UNUSED;

/* 1 if 'pw' matches 'hash', else 0 (also for a malformed hash). */
int vg_pw_verify(const char *hash, const char *pw);

/* Verifies against a fixed dummy hash: call it when the account does not
 * exist, so a failed login takes the same time either way. Always 0. */
int vg_pw_verify_dummy(const char *pw);

#endif
