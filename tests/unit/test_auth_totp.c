/* Unit tests for auth/totp: RFC 6238 known answers, the ±1 step window, the
 * replay rule, code syntax, the otpauth:// URI and the terminal QR code. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <liboath/oath.h>
#include <qrencode.h>

#include "auth/totp.h"

/* RFC 6238 Appendix B: the SHA-1 seed is the ASCII string
 * "12345678901234567890" (20 bytes, exactly VG_TOTP_SECRET_BYTES). */
static const uint8_t rfc_secret[VG_TOTP_SECRET_BYTES] = "12345678901234567890";

static int setup(void **state)
{
    (void)state;
    return vg_totp_init();
}

static void test_rfc6238_vectors(void **state)
{
    (void)state;
    /* Appendix B gives 8 digits; a 6-digit code is the same value mod 10^6
     * (RFC 4226 §5.3), i.e. its last six digits. */
    static const struct {
        int64_t t;
        const char *code8;
    } v[] = {
        {59, "94287082"},         {1111111109, "07081804"}, {1111111111, "14050471"},
        {1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000, "65353130"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char out[7];
        assert_int_equal(vg_totp_code(rfc_secret, v[i].t, out), 0);
        assert_int_equal(strlen(out), VG_TOTP_DIGITS);
        if (strcmp(out, v[i].code8 + 2) != 0)
            fail_msg("T=%lld: got %s, want %s", (long long)v[i].t, out, v[i].code8 + 2);
    }
}

static void test_code_bad_arguments(void **state)
{
    (void)state;
    char out[7];
    assert_int_equal(vg_totp_code(rfc_secret, -1, out), -1);
    assert_int_equal(vg_totp_code(NULL, 59, out), -1);
    assert_int_equal(vg_totp_code(rfc_secret, 59, NULL), -1);
    assert_int_equal(vg_totp_code(rfc_secret, INT64_MAX, out), -1);
    /* Time 0 (step 0) is fine. */
    assert_int_equal(vg_totp_code(rfc_secret, 0, out), 0);
}

/* The code at 't' for the RFC secret. */
static const char *code_at(int64_t t, char out[7])
{
    assert_int_equal(vg_totp_code(rfc_secret, t, out), 0);
    return out;
}

#define T0 INT64_C(1234567890) /* step 41152263, 0 s into it */
#define S0 (T0 / VG_TOTP_STEP_S)

static void test_verify_window(void **state)
{
    (void)state;
    char c[7];

    /* The current step, and one step either side, are accepted; the matched
     * step is what *last_step becomes. */
    for (int d = -1; d <= 1; d++) {
        int64_t last = -1;
        assert_int_equal(vg_totp_verify(rfc_secret, code_at(T0 + d * 30, c), T0, &last), 0);
        assert_int_equal(last, S0 + d);
    }
    /* Anywhere inside the current 30 s step. */
    int64_t last = -1;
    assert_int_equal(vg_totp_verify(rfc_secret, code_at(T0 + 29, c), T0, &last), 0);
    assert_int_equal(last, S0);

    /* Two steps away is refused, and *last_step stays as it was. */
    for (int d = -2; d <= 2; d += 4) {
        last = 7;
        assert_int_equal(vg_totp_verify(rfc_secret, code_at(T0 + d * 30, c), T0, &last), -1);
        assert_int_equal(last, 7);
    }
    /* A code from another secret is refused. */
    uint8_t other[VG_TOTP_SECRET_BYTES];
    memcpy(other, rfc_secret, sizeof other);
    other[0] ^= 1;
    last = -1;
    assert_int_equal(vg_totp_verify(other, code_at(T0, c), T0, &last), -1);
    assert_int_equal(last, -1);
}

static void test_verify_replay(void **state)
{
    (void)state;
    char now[7], older[7], newer[7];
    int64_t last = -1;

    code_at(T0, now);
    code_at(T0 - 30, older);
    code_at(T0 + 30, newer);

    assert_int_equal(vg_totp_verify(rfc_secret, now, T0, &last), 0);
    assert_int_equal(last, S0);
    /* The same code again, at once or later within its window: a replay. */
    assert_int_equal(vg_totp_verify(rfc_secret, now, T0, &last), -1);
    assert_int_equal(vg_totp_verify(rfc_secret, now, T0 + 30, &last), -1);
    /* An older code still inside the window: refused too. */
    assert_int_equal(vg_totp_verify(rfc_secret, older, T0, &last), -1);
    assert_int_equal(last, S0);
    /* A newer one is fine, and then the current one is older than it. */
    assert_int_equal(vg_totp_verify(rfc_secret, newer, T0, &last), 0);
    assert_int_equal(last, S0 + 1);
    last = S0 - 1;
    assert_int_equal(vg_totp_verify(rfc_secret, now, T0, &last), 0);
    assert_int_equal(last, S0);
}

static void test_verify_syntax(void **state)
{
    (void)state;
    char c[7];
    code_at(T0, c); /* "005924" */
    assert_string_equal(c, "005924");

    const char *bad[] = {"", "00592", "0059245", "5924", "00592a", "a05924", "0059 4",
                         " 005924", "005924 ", "005924\n", "+05924", "-05924", "00592\xD9",
                         "\xEF\xBC\x90\xEF\xBC\x90\xEF\xBC\x95\xEF\xBC\x99\xEF\xBC\x92\xEF\xBC\x94"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t last = -1;
        if (vg_totp_verify(rfc_secret, bad[i], T0, &last) != -1 || last != -1)
            fail_msg("accepted malformed code, case %zu", i);
    }
    int64_t last = -1;
    assert_int_equal(vg_totp_verify(rfc_secret, NULL, T0, &last), -1);
    assert_int_equal(vg_totp_verify(NULL, c, T0, &last), -1);
    assert_int_equal(vg_totp_verify(rfc_secret, c, T0, NULL), -1);
    assert_int_equal(vg_totp_verify(rfc_secret, c, -1, &last), -1);
    assert_int_equal(last, -1);
    /* And the well-formed one is accepted. */
    assert_int_equal(vg_totp_verify(rfc_secret, c, T0, &last), 0);
}

static void test_verify_at_epoch(void **state)
{
    (void)state;
    char c[7];
    int64_t last = -1;
    /* Step 0 has no step before it; the window just starts there. */
    assert_int_equal(vg_totp_verify(rfc_secret, code_at(0, c), 10, &last), 0);
    assert_int_equal(last, 0);
    assert_int_equal(vg_totp_verify(rfc_secret, code_at(30, c), 10, &last), 0);
    assert_int_equal(last, 1);
}

static void test_secret_new(void **state)
{
    (void)state;
    uint8_t a[VG_TOTP_SECRET_BYTES], b[VG_TOTP_SECRET_BYTES];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    vg_totp_secret_new(a);
    vg_totp_secret_new(b);
    assert_memory_not_equal(a, b, sizeof a);
    static const uint8_t zero[VG_TOTP_SECRET_BYTES];
    assert_memory_not_equal(a, zero, sizeof a);
}

#define RFC_B32 "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" /* RFC 4648 of the seed */

static void test_uri_exact(void **state)
{
    (void)state;
    char uri[512];
    assert_int_equal(vg_totp_uri(rfc_secret, "vigil gateway", "a@b", uri, sizeof uri), 0);
    assert_string_equal(uri, "otpauth://totp/vigil%20gateway:a%40b?secret=" RFC_B32
                             "&issuer=vigil%20gateway&algorithm=SHA1&digits=6&period=30");

    /* Unreserved characters stay; ':', '&', '?', '/', '%', '+', '#' and
     * non-ASCII bytes are encoded, so nothing can split the label or add a
     * parameter. */
    assert_int_equal(vg_totp_uri(rfc_secret, "A-Z.a_z~09", "x:y&z?w/v%u+t#s\xC3\xA9", uri,
                                 sizeof uri), 0);
    assert_string_equal(uri, "otpauth://totp/A-Z.a_z~09:x%3Ay%26z%3Fw%2Fv%25u%2Bt%23s%C3%A9"
                             "?secret=" RFC_B32
                             "&issuer=A-Z.a_z~09&algorithm=SHA1&digits=6&period=30");
}

static void test_uri_base32(void **state)
{
    (void)state;
    uint8_t s[VG_TOTP_SECRET_BYTES];
    char uri[512];

    memset(s, 0, sizeof s);
    assert_int_equal(vg_totp_uri(s, "i", "a", uri, sizeof uri), 0);
    assert_non_null(strstr(uri, "?secret=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&"));
    memset(s, 0xFF, sizeof s);
    assert_int_equal(vg_totp_uri(s, "i", "a", uri, sizeof uri), 0);
    assert_non_null(strstr(uri, "?secret=77777777777777777777777777777777&"));

    /* Random secrets agree with liboath's own RFC 4648 encoder (20 bytes is
     * a multiple of 5, so there is no padding either way), and decode back. */
    for (int i = 0; i < 50; i++) {
        vg_totp_secret_new(s);
        assert_int_equal(vg_totp_uri(s, "i", "a", uri, sizeof uri), 0);
        char *b32 = NULL;
        size_t b32_len = 0;
        assert_int_equal(oath_base32_encode((const char *)s, sizeof s, &b32, &b32_len), OATH_OK);
        assert_int_equal(b32_len, 32);
        char want[64];
        assert_true(snprintf(want, sizeof want, "?secret=%s&", b32) < (int)sizeof want);
        assert_non_null(strstr(uri, want));

        char *raw = NULL;
        size_t raw_len = 0;
        assert_int_equal(oath_base32_decode(strstr(uri, "=") + 1, 32, &raw, &raw_len), OATH_OK);
        assert_int_equal(raw_len, sizeof s);
        assert_memory_equal(raw, s, sizeof s);
        free(b32);
        free(raw);
    }
}

static void test_uri_capacity(void **state)
{
    (void)state;
    char full[512];
    assert_int_equal(vg_totp_uri(rfc_secret, "vigil gateway", "a@b", full, sizeof full), 0);
    size_t need = strlen(full) + 1;

    char *buf = malloc(need);
    assert_non_null(buf);
    for (size_t cap = 1; cap < need; cap++) {
        memset(buf, 'x', need);
        assert_int_equal(vg_totp_uri(rfc_secret, "vigil gateway", "a@b", buf, cap), -1);
        /* Nothing of the secret is left behind in a truncated URI. */
        for (size_t i = 0; i < cap; i++)
            assert_int_equal(buf[i], 0);
    }
    assert_int_equal(vg_totp_uri(rfc_secret, "vigil gateway", "a@b", buf, need), 0);
    assert_string_equal(buf, full);
    free(buf);

    assert_int_equal(vg_totp_uri(rfc_secret, "vigil gateway", "a@b", full, 0), -1);
    assert_int_equal(vg_totp_uri(rfc_secret, NULL, "a@b", full, sizeof full), -1);
    assert_int_equal(vg_totp_uri(rfc_secret, "i", NULL, full, sizeof full), -1);
    assert_int_equal(vg_totp_uri(NULL, "i", "a", full, sizeof full), -1);
}

/* The four glyphs, and which halves of each show a DARK module: the glyphs
 * paint light modules (full block: both light; upper half: top light;
 * lower half: bottom light; space: both dark). */
static const char *const glyphs[4] = {"\xE2\x96\x88", "\xE2\x96\x80", "\xE2\x96\x84", " "};
static const int glyph_top_dark[4] = {0, 0, 1, 1};
static const int glyph_bottom_dark[4] = {0, 1, 0, 1};

/* Reads a rendered QR code back into modules (1 = dark) at mod[y * 256 + x].
 * Returns the side of the padded square in modules, or 0 if the text has a
 * character other than the four glyphs and '\n', or ragged lines. */
static size_t qr_read(const char *txt, unsigned char *mod, size_t mod_cap, size_t *rows_out)
{
    size_t side = 0, row = 0;
    const char *p = txt;
    while (*p) {
        size_t col = 0;
        while (*p && *p != '\n') {
            int g = -1;
            for (int k = 0; k < 4; k++)
                if (strncmp(p, glyphs[k], strlen(glyphs[k])) == 0) {
                    g = k;
                    break;
                }
            if (g < 0)
                return 0; /* a character other than the four glyphs */
            if ((row * 2 + 2) * 256 > mod_cap || col >= 256)
                return 0;
            mod[(row * 2) * 256 + col] = (unsigned char)glyph_top_dark[g];
            mod[(row * 2 + 1) * 256 + col] = (unsigned char)glyph_bottom_dark[g];
            p += strlen(glyphs[g]);
            col++;
        }
        if (*p != '\n')
            return 0; /* every line ends with a newline */
        p++;
        if (row == 0)
            side = col;
        else if (col != side)
            return 0; /* lines of different widths */
        row++;
    }
    *rows_out = row;
    return side;
}

static void test_qr_text(void **state)
{
    (void)state;
    char uri[512];
    assert_int_equal(vg_totp_uri(rfc_secret, "vigil gateway", "a@b", uri, sizeof uri), 0);

    char *txt = vg_totp_qr_text(uri);
    assert_non_null(txt);
    assert_true(strlen(txt) > 0);

    static unsigned char mod[256 * 256];
    size_t rows = 0;
    size_t side = qr_read(txt, mod, sizeof mod, &rows);
    if (side == 0)
        fail_msg("QR text has a stray character or ragged lines");

    /* Same symbol libqrencode makes, with a 2-module light quiet zone. */
    QRcode *qr = QRcode_encodeString(uri, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    assert_non_null(qr);
    size_t w = (size_t)qr->width;
    assert_int_equal(side, w + 4);
    assert_int_equal(rows, (side + 1) / 2);
    for (size_t y = 0; y < rows * 2; y++)
        for (size_t x = 0; x < side; x++) {
            int want = 0;
            if (y >= 2 && x >= 2 && y - 2 < w && x - 2 < w)
                want = qr->data[(y - 2) * w + (x - 2)] & 1;
            if (mod[y * 256 + x] != want)
                fail_msg("module (%zu, %zu) is %d, want %d", x, y, mod[y * 256 + x], want);
        }
    QRcode_free(qr);

    /* The first line is all quiet zone: full blocks only. */
    for (size_t i = 0; i < side; i++)
        assert_memory_equal(txt + i * 3, "\xE2\x96\x88", 3);
    free(txt);
}

static void test_qr_limits(void **state)
{
    (void)state;
    assert_null(vg_totp_qr_text(NULL));
    /* Beyond version 40 at level M (2331 bytes): refused, not truncated. */
    char *big = malloc(4000);
    assert_non_null(big);
    memset(big, 'a', 3999);
    big[3999] = '\0';
    assert_null(vg_totp_qr_text(big));
    free(big);
    /* Short text still renders. */
    char *t = vg_totp_qr_text("x");
    assert_non_null(t);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc6238_vectors),
        cmocka_unit_test(test_code_bad_arguments),
        cmocka_unit_test(test_verify_window),
        cmocka_unit_test(test_verify_replay),
        cmocka_unit_test(test_verify_syntax),
        cmocka_unit_test(test_verify_at_epoch),
        cmocka_unit_test(test_secret_new),
        cmocka_unit_test(test_uri_exact),
        cmocka_unit_test(test_uri_base32),
        cmocka_unit_test(test_uri_capacity),
        cmocka_unit_test(test_qr_text),
        cmocka_unit_test(test_qr_limits),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
