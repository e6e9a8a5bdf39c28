/* auth/totp — TOTP (RFC 6238) codes through liboath, the otpauth:// URI and
 * a terminal QR code (libqrencode).
 *
 * Verification does not use oath_totp_validate*: those compare with strcmp
 * and stop at the first match. Here every step of the window is generated
 * and compared with sodium_memcmp, whatever matched, and the replay rule
 * (a step at or before the last accepted one is refused) is applied to the
 * step that matched.
 */
#include "auth/totp.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <liboath/oath.h>
#include <qrencode.h>
#include <sodium.h>

/* RFC 6238 §5.2: "We RECOMMEND that at most one time step is allowed as the
 * network delay." */
#define TOTP_WINDOW 1

/* Codes are refused for times past 9999-12-31T23:59:59Z: far beyond any real
 * clock, and it keeps step * 30 and time_t arithmetic far from overflow. */
#define TOTP_MAX_TIME INT64_C(253402300799)

_Static_assert(VG_TOTP_STEP_S == OATH_TOTP_DEFAULT_TIME_STEP_SIZE, "RFC 6238 default step");
_Static_assert(sizeof(time_t) >= 8, "time_t must hold 64-bit times");

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc = -1;

static void init_libs(void)
{
    if (oath_init() == OATH_OK && sodium_init() >= 0)
        init_rc = 0;
}

int vg_totp_init(void)
{
    (void)pthread_once(&init_once, init_libs);
    return init_rc;
}

void vg_totp_secret_new(uint8_t secret[VG_TOTP_SECRET_BYTES])
{
    /* randombytes_buf never fails; libsodium falls back to its own
     * initialisation if sodium_init has not run. */
    randombytes_buf(secret, VG_TOTP_SECRET_BYTES);
}

/* The 6-digit code for time step 'step' (RFC 6238 T). */
static int code_at_step(const uint8_t secret[VG_TOTP_SECRET_BYTES], int64_t step, char out[7])
{
    int rc = oath_totp_generate((const char *)secret, VG_TOTP_SECRET_BYTES,
                                (time_t)(step * VG_TOTP_STEP_S), VG_TOTP_STEP_S,
                                OATH_TOTP_DEFAULT_START_TIME, VG_TOTP_DIGITS, out);
    return rc == OATH_OK ? 0 : -1;
}

int vg_totp_code(const uint8_t secret[VG_TOTP_SECRET_BYTES], int64_t unix_time, char out[7])
{
    if (!secret || !out || unix_time < 0 || unix_time > TOTP_MAX_TIME)
        return -1;
    if (vg_totp_init() != 0)
        return -1;
    if (code_at_step(secret, unix_time / VG_TOTP_STEP_S, out) != 0) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

int vg_totp_verify(const uint8_t secret[VG_TOTP_SECRET_BYTES], const char *code,
                   int64_t unix_time, int64_t *last_step)
{
    if (!secret || !code || !last_step || unix_time < 0 || unix_time > TOTP_MAX_TIME)
        return -1;
    for (size_t i = 0; i < VG_TOTP_DIGITS; i++)
        if (code[i] < '0' || code[i] > '9')
            return -1; /* also stops at a NUL before the 6th digit */
    if (code[VG_TOTP_DIGITS] != '\0')
        return -1;
    if (vg_totp_init() != 0)
        return -1;

    int64_t now_step = unix_time / VG_TOTP_STEP_S;
    int64_t matched = -1;
    int failed = 0;
    char expect[7];

    /* Every step is generated and compared, so the time taken does not say
     * which step (if any) matched. Should two steps share the code (one
     * chance in a million), the later one counts. */
    for (int64_t d = -TOTP_WINDOW; d <= TOTP_WINDOW; d++) {
        int64_t step = now_step + d;
        if (step < 0)
            continue;
        if (code_at_step(secret, step, expect) != 0) {
            failed = 1;
            continue;
        }
        if (sodium_memcmp(expect, code, VG_TOTP_DIGITS) == 0)
            matched = step;
    }
    sodium_memzero(expect, sizeof expect);

    /* RFC 6238 §5.2: "the verifier MUST NOT accept the second attempt of
     * the OTP after the successful validation has been issued for the first
     * OTP". */
    if (failed || matched < 0 || matched <= *last_step)
        return -1;
    *last_step = matched;
    return 0;
}

/* RFC 4648 §6 base32, without the '=' padding (authenticator apps expect
 * none). 'out' holds at least ceil(len * 8 / 5) + 1 bytes. */
static void base32_encode(const uint8_t *in, size_t len, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    uint32_t buf = 0;
    int bits = 0;
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        buf = (buf << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = alphabet[(buf >> bits) & 0x1F];
        }
    }
    if (bits > 0)
        out[o++] = alphabet[(buf << (5 - bits)) & 0x1F];
    out[o] = '\0';
}

/* A bounded writer: appends while there is room; once something did not
 * fit it stays failed (and 'out' stays terminated). */
struct sbuf {
    char *p;
    size_t cap, len;
    int failed;
};

static void sb_putc(struct sbuf *b, char c)
{
    if (b->failed || b->len + 1 >= b->cap) {
        b->failed = 1;
        return;
    }
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    while (*s)
        sb_putc(b, *s++);
}

/* RFC 3986 §2.1 percent-encoding: everything but the unreserved characters
 * (ALPHA / DIGIT / "-" / "." / "_" / "~") becomes %XX, so a ':' in an
 * issuer cannot split the label and a '&' cannot start a parameter. */
static void sb_put_pct(struct sbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            sb_putc(b, (char)c);
        } else {
            sb_putc(b, '%');
            sb_putc(b, hex[c >> 4]);
            sb_putc(b, hex[c & 0x0F]);
        }
    }
}

int vg_totp_uri(const uint8_t secret[VG_TOTP_SECRET_BYTES], const char *issuer,
                const char *account, char *out, size_t cap)
{
    if (!secret || !issuer || !account || !out || cap == 0)
        return -1;

    char b32[(VG_TOTP_SECRET_BYTES * 8 + 4) / 5 + 1];
    base32_encode(secret, VG_TOTP_SECRET_BYTES, b32);

    struct sbuf b = {.p = out, .cap = cap, .len = 0, .failed = 0};
    out[0] = '\0';
    sb_puts(&b, "otpauth://totp/");
    sb_put_pct(&b, issuer);
    sb_putc(&b, ':');
    sb_put_pct(&b, account);
    sb_puts(&b, "?secret=");
    sb_puts(&b, b32);
    sb_puts(&b, "&issuer=");
    sb_put_pct(&b, issuer);
    sb_puts(&b, "&algorithm=SHA1&digits=6&period=30");
    sodium_memzero(b32, sizeof b32);

    if (b.failed) {
        /* Do not leave a truncated URI (with part of the secret) behind. */
        sodium_memzero(out, cap);
        return -1;
    }
    return 0;
}

/* Half blocks: one character cell shows two modules, the upper and the lower.
 * The glyphs paint the LIGHT modules and the quiet zone, spaces leave the
 * dark ones, as `qrencode -t UTF8` does: on the usual terminal (light text
 * on a dark background) the code then shows dark modules on a light field,
 * which every scanner reads. */
#define QR_QUIET 2
static const char GLYPH_BOTH_LIGHT[] = "\xE2\x96\x88";  /* U+2588 full block */
static const char GLYPH_UPPER_LIGHT[] = "\xE2\x96\x80"; /* U+2580 upper half */
static const char GLYPH_LOWER_LIGHT[] = "\xE2\x96\x84"; /* U+2584 lower half */
static const char GLYPH_BOTH_DARK[] = " ";

/* Is the module at (x, y) of the padded square dark? Outside the symbol
 * (the quiet zone, and the row past the bottom when the height is odd) is
 * light. */
static int qr_dark(const QRcode *qr, int x, int y)
{
    x -= QR_QUIET;
    y -= QR_QUIET;
    if (x < 0 || y < 0 || x >= qr->width || y >= qr->width)
        return 0;
    return qr->data[(size_t)y * (size_t)qr->width + (size_t)x] & 1;
}

char *vg_totp_qr_text(const char *text)
{
    if (!text)
        return NULL;
    QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    if (!qr)
        return NULL;

    /* width <= 177 (version 40), so none of this can overflow. */
    size_t side = (size_t)qr->width + 2 * QR_QUIET;
    size_t lines = (side + 1) / 2;
    size_t line_bytes = side * (sizeof GLYPH_BOTH_LIGHT - 1) + 1;
    size_t cap = lines * line_bytes + 1;
    char *out = malloc(cap);
    if (!out) {
        QRcode_free(qr);
        return NULL;
    }

    size_t o = 0;
    for (size_t row = 0; row < lines; row++) {
        int y = (int)(row * 2);
        for (int x = 0; x < (int)side; x++) {
            int top = qr_dark(qr, x, y), bottom = qr_dark(qr, x, y + 1);
            const char *g = top ? (bottom ? GLYPH_BOTH_DARK : GLYPH_LOWER_LIGHT)
                                : (bottom ? GLYPH_UPPER_LIGHT : GLYPH_BOTH_LIGHT);
            size_t n = strlen(g);
            memcpy(out + o, g, n);
            o += n;
        }
        out[o++] = '\n';
    }
    out[o] = '\0';
    QRcode_free(qr);
    return out;
}
