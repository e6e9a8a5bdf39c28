/* Unit tests for auth/password: the SP 800-63B policy (length in code points,
 * UTF-8 and control characters, the common list, the user's own id),
 * Argon2id hashing and verification, and that the compiled-in list still
 * matches data/common-passwords.txt. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/password.h"

extern const char *const vg_common_passwords[];
extern const size_t vg_common_passwords_count;

#define REPO_ROOT VG_TEST_DATA "/../.."

/* 'n' copies of 'unit' into 'buf' (NUL-terminated). */
static const char *repeat(char *buf, size_t cap, const char *unit, size_t n)
{
    size_t ul = strlen(unit);
    assert_true(ul * n < cap);
    for (size_t i = 0; i < n; i++)
        memcpy(buf + i * ul, unit, ul);
    buf[ul * n] = '\0';
    return buf;
}

static void test_length_ascii(void **state)
{
    (void)state;
    char buf[1024];
    /* "correct horse" style: not on the list, just long enough or not. */
    assert_int_equal(vg_pw_check("kq7-zx!pw4m", "alice"), VG_PW_TOO_SHORT);   /* 11 */
    assert_int_equal(vg_pw_check("kq7-zx!pw4mr", "alice"), VG_PW_OK);         /* 12 */
    assert_int_equal(vg_pw_check("", "alice"), VG_PW_TOO_SHORT);
    assert_int_equal(vg_pw_check(repeat(buf, sizeof buf, "k", 128), "alice"), VG_PW_OK);
    assert_int_equal(vg_pw_check(repeat(buf, sizeof buf, "k", 129), "alice"), VG_PW_TOO_LONG);
    assert_int_equal(vg_pw_check(repeat(buf, sizeof buf, "k", 1000), "alice"), VG_PW_TOO_LONG);
    /* Spaces are allowed, anywhere. */
    assert_int_equal(vg_pw_check(" tide  pool  lamp ", "alice"), VG_PW_OK);
}

static void test_length_counts_code_points(void **state)
{
    (void)state;
    char buf[1024];
    const char *e_acute = "\xC3\xA9";         /* U+00E9, 2 bytes */
    const char *euro = "\xE2\x82\xAC";        /* U+20AC, 3 bytes */
    const char *emoji = "\xF0\x9F\x94\x92";   /* U+1F512, 4 bytes */

    assert_int_equal(vg_pw_check(repeat(buf, sizeof buf, e_acute, 11), NULL), VG_PW_TOO_SHORT);
    assert_int_equal(vg_pw_check(repeat(buf, sizeof buf, e_acute, 12), NULL), VG_PW_OK);
    assert_int_equal(vg_pw_check(repeat(buf, sizeof buf, e_acute, 128), NULL), VG_PW_OK);
    assert_int_equal(vg_pw_check(repeat(buf, sizeof buf, e_acute, 129), NULL), VG_PW_TOO_LONG);
    assert_int_equal(vg_pw_check(repeat(buf, sizeof buf, euro, 12), NULL), VG_PW_OK);
    assert_int_equal(vg_pw_check(repeat(buf, sizeof buf, emoji, 11), NULL), VG_PW_TOO_SHORT);
    assert_int_equal(vg_pw_check(repeat(buf, sizeof buf, emoji, 12), NULL), VG_PW_OK);
    /* 128 four-byte code points = 512 bytes: still 128 characters. */
    assert_int_equal(vg_pw_check(repeat(buf, sizeof buf, emoji, 128), NULL), VG_PW_OK);
    assert_int_equal(vg_pw_check(repeat(buf, sizeof buf, emoji, 129), NULL), VG_PW_TOO_LONG);
    /* The highest code point, U+10FFFF, is valid. */
    assert_int_equal(vg_pw_check(repeat(buf, sizeof buf, "\xF4\x8F\xBF\xBF", 12), NULL),
                     VG_PW_OK);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    const char *bad[] = {
        "abcdefghijkl\x80",             /* stray continuation byte */
        "abcdefghijkl\xC3",             /* truncated 2-byte sequence at the end */
        "abcdefghijkl\xE2\x82",         /* truncated 3-byte sequence */
        "abcdefghijkl\xC3(xyz",         /* lead byte without continuation */
        "abcdefghijkl\xC0\xAF",         /* overlong '/' (2 bytes) */
        "abcdefghijkl\xC1\xBF",         /* overlong, C1 lead */
        "abcdefghijkl\xE0\x80\xAF",     /* overlong '/' (3 bytes) */
        "abcdefghijkl\xE0\x9F\xBF",     /* overlong U+07FF */
        "abcdefghijkl\xF0\x80\x80\xAF", /* overlong '/' (4 bytes) */
        "abcdefghijkl\xF0\x8F\xBF\xBF", /* overlong U+FFFF */
        "abcdefghijkl\xED\xA0\x80",     /* U+D800, high surrogate */
        "abcdefghijkl\xED\xBF\xBF",     /* U+DFFF, low surrogate */
        "abcdefghijkl\xF4\x90\x80\x80", /* U+110000 */
        "abcdefghijkl\xF5\x80\x80\x80", /* F5 lead byte */
        "abcdefghijkl\xFF",             /* never valid */
        "\376\377abcdefghijkl",       /* UTF-16 BOM bytes FE FF */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (vg_pw_check(bad[i], "alice") != VG_PW_BAD_UTF8)
            fail_msg("accepted invalid UTF-8, case %zu", i);
    /* Just inside the edges of the ranges above. */
    assert_int_equal(vg_pw_check("abcdefghijkl\xE0\xA0\x80", "alice"), VG_PW_OK);     /* U+0800 */
    assert_int_equal(vg_pw_check("abcdefghijkl\xED\x9F\xBF", "alice"), VG_PW_OK);     /* U+D7FF */
    assert_int_equal(vg_pw_check("abcdefghijkl\xEE\x80\x80", "alice"), VG_PW_OK);     /* U+E000 */
    assert_int_equal(vg_pw_check("abcdefghijkl\xF0\x90\x80\x80", "alice"), VG_PW_OK); /* U+10000 */
}

static void test_control_characters(void **state)
{
    (void)state;
    const char *bad[] = {
        "abcdef\tghijkl",     /* TAB */
        "abcdefghijkl\n",     /* LF */
        "abcdef\rghijkl",     /* CR */
        "\x1b[31mabcdefghijkl", /* ESC: a terminal escape */
        "abcdefghijkl\x01",   /* SOH */
        "abcdefghijkl\x7F",   /* DEL */
        "abcdefghijkl\xC2\x80", /* U+0080, C1 */
        "abcdefghijkl\xC2\x9B", /* U+009B, C1 CSI */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (vg_pw_check(bad[i], "alice") != VG_PW_BAD_UTF8)
            fail_msg("accepted a control character, case %zu", i);
    /* U+00A0 (no-break space) is the first code point after C1: allowed. */
    assert_int_equal(vg_pw_check("abcdefghijkl\xC2\xA0", "alice"), VG_PW_OK);
}

static void test_common_list(void **state)
{
    (void)state;
    /* Real entries of 12 or more characters from data/common-passwords.txt. */
    const char *common[] = {"unbelievable", "scandinavian", "contortionist",
                            "films+pic+galeries", "UNBELIEVABLE", "Scandinavian",
                            "ConTortionIst", "FILMS+PIC+GALERIES"};
    for (size_t i = 0; i < sizeof common / sizeof common[0]; i++) {
        if (vg_pw_check(common[i], "alice") != VG_PW_COMMON)
            fail_msg("'%s' is on the list but was not refused", common[i]);
        assert_true(vg_pw_is_common(common[i]));
    }
    /* Shorter entries are on the list too (the length check refuses them
     * first), in any case; escaped entries compile to the right bytes. */
    assert_true(vg_pw_is_common("password"));
    assert_true(vg_pw_is_common("PassWord"));
    assert_true(vg_pw_is_common("123456"));
    assert_true(vg_pw_is_common("zzzzzzzz"));   /* the last entry */
    assert_true(vg_pw_is_common("&amp"));       /* the first entry */
    assert_true(vg_pw_is_common("pic\\'s"));
    assert_true(vg_pw_is_common("\?\?\?\?\?\?")); /* six question marks */
    /* Near misses are not. */
    assert_false(vg_pw_is_common("unbelievable1"));
    assert_false(vg_pw_is_common("unbelievabl"));
    assert_false(vg_pw_is_common("password1234"));
    assert_false(vg_pw_is_common(""));
    assert_false(vg_pw_is_common(NULL));
    /* Lower-casing is ASCII only: 'É' does not become 'é' (nor anything). */
    assert_false(vg_pw_is_common("\xC3\x89"));
    assert_int_equal(vg_pw_check("password1234", "alice"), VG_PW_OK);
}

static void test_compiled_list_shape(void **state)
{
    (void)state;
    /* data/common-passwords.txt has 10,000 lines, unique once lower-cased. */
    assert_int_equal(vg_common_passwords_count, 10000);
    for (size_t i = 0; i < vg_common_passwords_count; i++) {
        const char *e = vg_common_passwords[i];
        assert_true(e[0] != '\0');
        for (const char *p = e; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                fail_msg("entry %zu is not lower-case", i);
        if (i > 0 && strcmp(vg_common_passwords[i - 1], e) >= 0)
            fail_msg("entries %zu and %zu are not strictly sorted", i - 1, i);
    }
    /* Every entry is found through the public, case-insensitive lookup. */
    for (size_t i = 0; i < vg_common_passwords_count; i++)
        assert_true(vg_pw_is_common(vg_common_passwords[i]));
}

static void test_user_id(void **state)
{
    (void)state;
    assert_int_equal(vg_pw_check("nurse.station-4", "nurse.station-4"), VG_PW_IS_USER_ID);
    assert_int_equal(vg_pw_check("Nurse.Station-4", "nurse.station-4"), VG_PW_IS_USER_ID);
    assert_int_equal(vg_pw_check("nurse.station-4x", "nurse.station-4"), VG_PW_OK);
    assert_int_equal(vg_pw_check("nurse.station-4", "nurse.station-4x"), VG_PW_OK);
    assert_int_equal(vg_pw_check("nurse.station-4", NULL), VG_PW_OK);
    /* A short id cannot be a valid password anyway: length comes first. */
    assert_int_equal(vg_pw_check("bob", "bob"), VG_PW_TOO_SHORT);
}

static void test_verdict_text(void **state)
{
    (void)state;
    enum vg_pw_verdict all[] = {VG_PW_OK,     VG_PW_TOO_SHORT, VG_PW_TOO_LONG,
                                VG_PW_BAD_UTF8, VG_PW_COMMON,  VG_PW_IS_USER_ID};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *t = vg_pw_verdict_text(all[i]);
        assert_non_null(t);
        assert_true(strlen(t) > 10);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(t, vg_pw_verdict_text(all[j]));
    }
    assert_non_null(vg_pw_verdict_text((enum vg_pw_verdict)99));
}

static void test_hash_verify_round_trip(void **state)
{
    (void)state;
    char hash[VG_PW_HASH_MAX];
    const char *pw = "tide pool lamp \xC3\xA9t\xC3\xA9";

    assert_int_equal(vg_pw_hash(pw, hash), 0);
    assert_true(strlen(hash) < VG_PW_HASH_MAX);
    assert_true(strncmp(hash, "$argon2id$", 10) == 0);
    assert_int_equal(vg_pw_verify(hash, pw), 1);

    /* Wrong passwords: one character off, case, truncated, extended, empty. */
    assert_int_equal(vg_pw_verify(hash, "tide pool lamp \xC3\xA9t\xC3\xA8"), 0);
    assert_int_equal(vg_pw_verify(hash, "Tide pool lamp \xC3\xA9t\xC3\xA9"), 0);
    assert_int_equal(vg_pw_verify(hash, "tide pool lamp "), 0);
    assert_int_equal(vg_pw_verify(hash, "tide pool lamp \xC3\xA9t\xC3\xA9 "), 0);
    assert_int_equal(vg_pw_verify(hash, ""), 0);
    assert_int_equal(vg_pw_verify(hash, NULL), 0);
}

static void test_hashes_are_salted(void **state)
{
    (void)state;
    char a[VG_PW_HASH_MAX], b[VG_PW_HASH_MAX];
    const char *pw = "the same password twice";

    assert_int_equal(vg_pw_hash(pw, a), 0);
    assert_int_equal(vg_pw_hash(pw, b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(vg_pw_verify(a, pw), 1);
    assert_int_equal(vg_pw_verify(b, pw), 1);
}

static void test_malformed_hash(void **state)
{
    (void)state;
    char hash[VG_PW_HASH_MAX];
    const char *pw = "malformed hash check";
    assert_int_equal(vg_pw_hash(pw, hash), 0);

    /* Truncated, a flipped character, another algorithm, garbage, empty. */
    char cut[VG_PW_HASH_MAX];
    memcpy(cut, hash, sizeof cut);
    cut[strlen(cut) - 4] = '\0';
    assert_int_equal(vg_pw_verify(cut, pw), 0);

    char flipped[VG_PW_HASH_MAX];
    memcpy(flipped, hash, sizeof flipped);
    /* Inside the base64 hash, not its last character (whose low bits are
     * padding). */
    size_t mid = strlen(flipped) - 10;
    flipped[mid] = flipped[mid] == 'A' ? 'B' : 'A';
    assert_int_equal(vg_pw_verify(flipped, pw), 0);

    assert_int_equal(vg_pw_verify("$2b$12$abcdefghijklmnopqrstuuJ1m1A8JrQ6Xf4fDHVgh9tGtL1F6e",
                                  pw), 0);
    assert_int_equal(vg_pw_verify("$argon2id$v=19$m=65536,t=2,p=1$", pw), 0);
    assert_int_equal(vg_pw_verify("not a hash", pw), 0);
    assert_int_equal(vg_pw_verify("", pw), 0);
    assert_int_equal(vg_pw_verify(NULL, pw), 0);

    /* No NUL within VG_PW_HASH_MAX bytes: refused without reading on. */
    char unterminated[VG_PW_HASH_MAX + 1];
    memset(unterminated, 'a', VG_PW_HASH_MAX);
    memcpy(unterminated, hash, strlen(hash));
    unterminated[VG_PW_HASH_MAX] = '\0';
    assert_int_equal(vg_pw_verify(unterminated, pw), 0);

    /* The original still verifies. */
    assert_int_equal(vg_pw_verify(hash, pw), 1);
}

static void test_verify_dummy(void **state)
{
    (void)state;
    assert_int_equal(vg_pw_verify_dummy("any password at all"), 0);
    assert_int_equal(vg_pw_verify_dummy(""), 0);
    assert_int_equal(vg_pw_verify_dummy("any password at all"), 0);
}

/* The committed src/auth/common_passwords.c is exactly what the generator
 * makes from data/common-passwords.txt today. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static void test_generated_list_is_current(void **state)
{
    (void)state;
    char dir[] = "/tmp/vg-pwlist-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char out[256], cmd[1024];
    assert_true(snprintf(out, sizeof out, "%s/common_passwords.c", dir) < (int)sizeof out);
    /* Single-quoted for the shell; neither path may hold a quote. */
    assert_null(strchr(REPO_ROOT, '\''));
    assert_true(snprintf(cmd, sizeof cmd,
                         "cd '%s' && sh scripts/gen-password-list data/common-passwords.txt '%s'",
                         REPO_ROOT, out) < (int)sizeof cmd);
    int rc = system(cmd);

    size_t want_len = 0, got_len = 0;
    char *want = slurp(REPO_ROOT "/src/auth/common_passwords.c", &want_len);
    char *got = rc == 0 ? slurp(out, &got_len) : NULL;
    unlink(out);
    rmdir(dir);

    assert_int_equal(rc, 0);
    assert_non_null(want);
    assert_non_null(got);
    if (want_len != got_len || memcmp(want, got, want_len) != 0)
        fail_msg("src/auth/common_passwords.c is out of date: run "
                 "sh scripts/gen-password-list data/common-passwords.txt "
                 "src/auth/common_passwords.c");
    free(want);
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_length_ascii),
        cmocka_unit_test(test_length_counts_code_points),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_control_characters),
        cmocka_unit_test(test_common_list),
        cmocka_unit_test(test_compiled_list_shape),
        cmocka_unit_test(test_user_id),
        cmocka_unit_test(test_verdict_text),
        cmocka_unit_test(test_hash_verify_round_trip),
        cmocka_unit_test(test_hashes_are_salted),
        cmocka_unit_test(test_malformed_hash),
        cmocka_unit_test(test_verify_dummy),
        cmocka_unit_test(test_generated_list_is_current),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
