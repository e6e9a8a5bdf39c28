/* auth/password — password policy (NIST SP 800-63B §5.1.1.2) and Argon2id.
 *
 * The policy reads the password once, front to back, decoding UTF-8 by hand
 * (RFC 3629 §4 syntax: no overlong forms, no surrogates, nothing above
 * U+10FFFF) so that length is counted in code points as SP 800-63B asks
 * ("each Unicode code point SHALL be counted as a single character") and a
 * control character can never reach a log line, a terminal or a hash that
 * another client cannot reproduce. The scan stops as soon as the password
 * is known to be too long, so a hostile megabyte costs 129 code points.
 *
 * The common list is compiled in (common_passwords.c, generated from
 * data/common-passwords.txt by scripts/gen-password-list): lower-cased,
 * sorted in strcmp order. The candidate is lower-cased on the fly inside the
 * bsearch comparator, so no copy of the password is ever made.
 *
 * Not done here: SP 800-63B also suggests Unicode normalisation (NFKC/NFKD)
 * before hashing; that needs a Unicode database vigil does not carry, so
 * passwords are hashed byte for byte as entered.
 */
#include "auth/password.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* Defined in the generated common_passwords.c. */
extern const char *const vg_common_passwords[];
extern const size_t vg_common_passwords_count;

#ifdef VG_PW_STRONG
#define PW_OPSLIMIT crypto_pwhash_OPSLIMIT_MODERATE
#define PW_MEMLIMIT crypto_pwhash_MEMLIMIT_MODERATE
#else
#define PW_OPSLIMIT crypto_pwhash_OPSLIMIT_INTERACTIVE
#define PW_MEMLIMIT crypto_pwhash_MEMLIMIT_INTERACTIVE
#endif

_Static_assert(crypto_pwhash_STRBYTES <= VG_PW_HASH_MAX,
               "VG_PW_HASH_MAX must hold a libsodium password hash string");

/* Decodes one UTF-8 sequence at 's' (NUL-terminated) into *cp. Returns its
 * length in bytes (1..4), or 0 if it is not well-formed UTF-8 per the table
 * in RFC 3629 §4. A NUL byte is never a continuation byte, so a truncated
 * sequence fails without reading past the terminator. */
static size_t utf8_next(const unsigned char *s, uint32_t *cp)
{
    unsigned char b0 = s[0];

    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }

    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the 2nd byte */
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        n = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        n = 3;
        if (b0 == 0xE0)
            lo = 0xA0; /* E0 80..9F would be overlong */
        else if (b0 == 0xED)
            hi = 0x9F; /* ED A0..BF would be a UTF-16 surrogate */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        n = 4;
        if (b0 == 0xF0)
            lo = 0x90; /* F0 80..8F would be overlong */
        else if (b0 == 0xF4)
            hi = 0x8F; /* F4 90.. would be above U+10FFFF */
    } else {
        return 0; /* continuation byte, C0/C1 (overlong), or F5..FF */
    }

    if (s[1] < lo || s[1] > hi)
        return 0;
    uint32_t v = b0 & (0x7Fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    *cp = v;
    return n;
}

/* C0 controls, DEL and the C1 controls (U+0080..U+009F): the Unicode
 * general category Cc. SP 800-63B accepts "all printing ASCII characters
 * as well as the space character" and Unicode; a control is neither. */
static int is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* strcmp(lower(key), elem) without making lower(key): both compared as
 * unsigned char, which is the byte order `LC_ALL=C sort` gave the list. */
static int cmp_lower(const void *key, const void *elem)
{
    const unsigned char *a = key;
    const unsigned char *b = *(const unsigned char *const *)elem;

    for (;; a++, b++) {
        unsigned char ca = ascii_lower(*a);
        if (ca != *b || ca == 0)
            return (int)ca - (int)*b;
    }
}

/* ASCII case-insensitive equality: ids are [A-Za-z0-9._-], and "Alice" is
 * as guessable a password for user "alice" as "alice" is. */
static int equal_ignore_ascii_case(const char *a, const char *b)
{
    const unsigned char *p = (const unsigned char *)a;
    const unsigned char *q = (const unsigned char *)b;

    for (; *p && *q; p++, q++)
        if (ascii_lower(*p) != ascii_lower(*q))
            return 0;
    return *p == *q;
}

int vg_pw_is_common(const char *pw)
{
    if (!pw)
        return 0;
    return bsearch(pw, vg_common_passwords, vg_common_passwords_count,
                   sizeof vg_common_passwords[0], cmp_lower) != NULL;
}

enum vg_pw_verdict vg_pw_check(const char *pw, const char *user_id)
{
    if (!pw)
        return VG_PW_TOO_SHORT;

    const unsigned char *s = (const unsigned char *)pw;
    size_t chars = 0;
    while (*s) {
        uint32_t cp;
        size_t n = utf8_next(s, &cp);
        if (n == 0 || is_control(cp))
            return VG_PW_BAD_UTF8;
        s += n;
        if (++chars > VG_PW_MAX_CHARS)
            return VG_PW_TOO_LONG;
    }
    if (chars < VG_PW_MIN_CHARS)
        return VG_PW_TOO_SHORT;
    if (user_id && equal_ignore_ascii_case(pw, user_id))
        return VG_PW_IS_USER_ID;
    if (vg_pw_is_common(pw))
        return VG_PW_COMMON;
    return VG_PW_OK;
}

const char *vg_pw_verdict_text(enum vg_pw_verdict v)
{
    switch (v) {
    case VG_PW_OK:
        return "The password is acceptable.";
    case VG_PW_TOO_SHORT:
        return "The password is too short: use at least 12 characters; a few unrelated "
               "words make a long password that is easy to remember.";
    case VG_PW_TOO_LONG:
        return "The password is too long: use at most 128 characters.";
    case VG_PW_BAD_UTF8:
        return "The password contains a control character or is not valid UTF-8 text.";
    case VG_PW_COMMON:
        return "The password is on a list of commonly used or breached passwords; "
               "choose another.";
    case VG_PW_IS_USER_ID:
        return "The password is the same as the account name; choose another.";
    }
    return "The password was refused.";
}

int vg_pw_hash(const char *pw, char out[VG_PW_HASH_MAX])
{
    if (!pw || !out)
        return -1;
    /* sodium_init is idempotent and thread-safe; crypto_pwhash needs it for
     * its CPU feature detection. */
    if (sodium_init() < 0)
        return -1;
    /* Fails only when the memory limit cannot be allocated. */
    if (crypto_pwhash_str(out, pw, strlen(pw), PW_OPSLIMIT, PW_MEMLIMIT) != 0) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

int vg_pw_verify(const char *hash, const char *pw)
{
    if (!hash || !pw)
        return 0;
    /* A stored hash longer than any libsodium writes is corrupt; refuse it
     * before libsodium runs strlen over it. */
    if (strnlen(hash, VG_PW_HASH_MAX) >= VG_PW_HASH_MAX)
        return 0;
    if (sodium_init() < 0)
        return 0;
    return crypto_pwhash_str_verify(hash, pw, strlen(pw)) == 0;
}

/* The dummy hash is of a random password nobody knows, made with the same
 * limits as real hashes so a verify against it costs the same. It is made on
 * first use, not at start-up, so processes that never log anyone in do not
 * pay for it; the first unknown-account login therefore costs one extra
 * hash, once per process. */
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[VG_PW_HASH_MAX];
static int dummy_ready;

static void dummy_init(void)
{
    unsigned char secret[32];
    char secret_b64[sodium_base64_ENCODED_LEN(sizeof secret, sodium_base64_VARIANT_ORIGINAL)];

    if (sodium_init() < 0)
        return;
    randombytes_buf(secret, sizeof secret);
    sodium_bin2base64(secret_b64, sizeof secret_b64, secret, sizeof secret,
                      sodium_base64_VARIANT_ORIGINAL);
    if (vg_pw_hash(secret_b64, dummy_hash) == 0)
        dummy_ready = 1;
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(secret_b64, sizeof secret_b64);
}

int vg_pw_verify_dummy(const char *pw)
{
    if (!pw)
        return 0;
    (void)pthread_once(&dummy_once, dummy_init);
    if (dummy_ready) {
        (void)vg_pw_verify(dummy_hash, pw);
    } else {
        /* No dummy hash (out of memory at first use): spend the same time
         * hashing instead, so the answer is still not faster. */
        char scratch[VG_PW_HASH_MAX];
        if (vg_pw_hash(pw, scratch) == 0)
            sodium_memzero(scratch, sizeof scratch);
    }
    return 0;
}
