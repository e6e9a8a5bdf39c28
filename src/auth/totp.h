/* auth/totp — TOTP second factor (RFC 6238 over RFC 4226, liboath), and the
 * enrollment URI and terminal QR code.
 *
 * Parameters: HMAC-SHA1, 6 digits, 30 s steps, a window of ±1 step for
 * clock skew. A code is accepted at most once: the caller keeps the last
 * accepted step per user and passes it in; a code for that step or an
 * earlier one is refused as a replay.
 */
#ifndef VG_AUTH_TOTP_H
#define VG_AUTH_TOTP_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define VG_TOTP_SECRET_BYTES 20 /* 160 bits, as RFC 4226 recommends */
#define VG_TOTP_DIGITS 6
#define VG_TOTP_STEP_S 30

int vg_totp_init(void) VG_WARN_UNUSED; /* oath_init, once per process */

/* A new random secret. */
void vg_totp_secret_new(uint8_t secret[VG_TOTP_SECRET_BYTES]);

/* The otpauth:// URI authenticator apps scan:
 *   otpauth://totp/ISSUER:ACCOUNT?secret=BASE32&issuer=ISSUER&algorithm=SHA1&digits=6&period=30
 * with ISSUER and ACCOUNT percent-encoded (RFC 3986: all but A-Z a-z 0-9
 * - . _ ~) and the secret in unpadded RFC 4648 base32. Returns 0, or -1 if
 * 'cap' is too small (then 'out' is wiped, not left holding part of the
 * secret) or an argument is NULL. */
int vg_totp_uri(const uint8_t secret[VG_TOTP_SECRET_BYTES], const char *issuer,
                const char *account, char *out, size_t cap) VG_WARN_UNUSED;

/* The code for 'unix_time' (for tests and the CLI's self-check). 'out'
 * holds 7 bytes. Returns 0 or -1. */
int vg_totp_code(const uint8_t secret[VG_TOTP_SECRET_BYTES], int64_t unix_time, char out[7])
    VG_WARN_UNUSED;

/* Checks 'code' (exactly 6 ASCII digits) at 'unix_time' within ±1 step.
 * Refuses a step <= *last_step (replay). On success returns 0 and sets
 * *last_step to the matched step; otherwise -1 and *last_step unchanged. */
int vg_totp_verify(const uint8_t secret[VG_TOTP_SECRET_BYTES], const char *code,
                   int64_t unix_time, int64_t *last_step) VG_WARN_UNUSED;

/* Renders 'text' as a QR code (libqrencode, error correction M) for a
 * terminal: two modules per character cell using the Unicode half blocks,
 * with a quiet zone of 2 modules, into a heap string the caller frees.
 * The glyphs paint the light modules and the quiet zone (as `qrencode -t
 * UTF8` does), so on a light-on-dark terminal it shows dark on light. Every
 * line has the same number of character cells and ends in '\n'. NULL on
 * failure (including text too long for a version-40 symbol). */
char *vg_totp_qr_text(const char *text);

#endif
