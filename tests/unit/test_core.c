/* Unit tests for core/: time parsing and formatting, ids, config. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/util.h"

static int64_t parse(const char *s)
{
    int64_t ms = -42;
    if (vg_time_parse_rfc3339(s, strlen(s), &ms) != 0)
        return -1;
    return ms;
}

static void test_time_parse_valid(void **state)
{
    (void)state;
    assert_int_equal(parse("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(parse("2026-11-29T10:00:00Z"), 1795946400000);
    assert_int_equal(parse("2026-11-29T10:00:00.250Z"), 1795946400250);
    assert_int_equal(parse("2026-11-29T11:00:00+01:00"), 1795946400000);
    assert_int_equal(parse("2026-11-29T05:30:00-04:30"), 1795946400000);
    assert_int_equal(parse("2024-02-29T00:00:00Z"), 1709164800000);
    assert_int_equal(parse("2026-11-29t10:00:00z"), 1795946400000);
}

static void test_time_parse_invalid(void **state)
{
    (void)state;
    const char *bad[] = {"", "2026-11-29", "2026-11-29T10:00:00", "2026-11-29 10:00:00Z",
                         "2026-02-30T00:00:00Z", "2025-02-29T00:00:00Z", "2026-13-01T00:00:00Z",
                         "2026-11-29T24:00:00Z", "2026-11-29T10:60:00Z", "1969-12-31T23:59:59Z",
                         "2026-11-29T10:00:00.Z", "2026-11-29T10:00:00+0100",
                         "2026-11-29T10:00:00Zjunk", "2026-11-29T10:00:00+24:00", "abcd-ef-ghT"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (parse(bad[i]) != -1)
            fail_msg("accepted invalid time '%s'", bad[i]);
}

static void test_time_format(void **state)
{
    (void)state;
    char out[32];
    vg_time_format(1795946400250, out);
    assert_string_equal(out, "2026-11-29T10:00:00.250Z");
    vg_time_format(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
}

/* The hand-written formatter agrees with gmtime_r on many instants,
 * including leap days and century boundaries. */
static void test_time_format_matches_gmtime(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t ms = (int64_t)(x % 253402300799000ULL); /* up to 9999-12-31 */
        if (i < 4)
            ms = (int64_t[]){951782400000, 4107542400000, 946684799999, 1709164800000}[i];
        char a[32], b[96];
        vg_time_format(ms, a);
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(b, sizeof b, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
        if (strcmp(a, b))
            fail_msg("%lld: %s != %s", (long long)ms, a, b);
    }
}

static void test_id_valid(void **state)
{
    (void)state;
    assert_true(vg_id_valid("dev1"));
    assert_true(vg_id_valid("sim-dev-001"));
    assert_true(vg_id_valid("A.b_c-9"));
    char max[VG_ID_MAX + 2];
    memset(max, 'a', VG_ID_MAX);
    max[VG_ID_MAX] = '\0';
    assert_true(vg_id_valid(max));
    max[VG_ID_MAX] = 'a';
    max[VG_ID_MAX + 1] = '\0';
    assert_false(vg_id_valid(max));
    assert_false(vg_id_valid(""));
    assert_false(vg_id_valid(NULL));
    assert_false(vg_id_valid("-dev"));
    assert_false(vg_id_valid("../etc"));
    assert_false(vg_id_valid("a/b"));
    assert_false(vg_id_valid("a+b"));
    assert_false(vg_id_valid("a#"));
    assert_false(vg_id_valid("a b"));
    assert_false(vg_id_valid("a'; DROP TABLE x"));
}

static char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/vg-conf-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_config_default_file_loads(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof path, "/tmp/vg-conf-def-%d", getpid());
    unlink(path);
    char err[256];
    assert_int_equal(vg_config_write_default(path, err, sizeof err), 0);
    assert_int_equal(vg_config_write_default(path, err, sizeof err), -1); /* O_EXCL */
    struct vg_config cfg;
    vg_config_defaults(&cfg);
    assert_int_equal(vg_config_load(path, &cfg, err, sizeof err), 0);
    assert_string_equal(cfg.mqtt_listen, "127.0.0.1:8883");
    assert_string_equal(cfg.api_listen, "127.0.0.1:8443");
    assert_int_equal(cfg.max_packet_bytes, 65536);
    unlink(path);
}

static void test_config_overrides(void **state)
{
    (void)state;
    char *p = write_tmp("[listen]\nmqtt = 0.0.0.0:1883\n[limits]\nbatch_max = 10\n");
    struct vg_config cfg;
    char err[256];
    vg_config_defaults(&cfg);
    assert_int_equal(vg_config_load(p, &cfg, err, sizeof err), 0);
    assert_string_equal(cfg.mqtt_listen, "0.0.0.0:1883");
    assert_int_equal(cfg.batch_max, 10);
    unlink(p);
}

static void test_config_rejects(void **state)
{
    (void)state;
    const char *bad[] = {"[limits]\nbatch_max = 0\n", "[limits]\nbatch_max = ten\n",
                         "[limits]\nbatch_maxx = 10\n", "[nosuch]\nx = 1\n",
                         "[listen]\nmqtt = localhost\n", "[listen]\napi = 1.2.3.4:99999\n",
                         "[log]\nlevel = loud\n", "garbage line\n",
                         "[audit]\ncheckpoint_syslog = maybe\n", "[audit]\nsyslog = nohost\n",
                         "[audit]\ncheckpoint_records = 0\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *p = write_tmp(bad[i]);
        struct vg_config cfg;
        char err[256] = "";
        vg_config_defaults(&cfg);
        if (vg_config_load(p, &cfg, err, sizeof err) != -1)
            fail_msg("accepted bad config: %s", bad[i]);
        assert_true(strlen(err) > 0);
        unlink(p);
    }
}

static void test_split_addr(void **state)
{
    (void)state;
    char h[64], p[8];
    assert_int_equal(vg_config_split_addr("127.0.0.1:8883", h, sizeof h, p, sizeof p), 0);
    assert_string_equal(h, "127.0.0.1");
    assert_string_equal(p, "8883");
    assert_int_equal(vg_config_split_addr("[::1]:8443", h, sizeof h, p, sizeof p), 0);
    assert_string_equal(h, "::1");
    assert_int_equal(vg_config_split_addr(":8443", h, sizeof h, p, sizeof p), -1);
    assert_int_equal(vg_config_split_addr("host:", h, sizeof h, p, sizeof p), -1);
    assert_int_equal(vg_config_split_addr("host:0", h, sizeof h, p, sizeof p), -1);
    assert_int_equal(vg_config_split_addr("[::1:8443", h, sizeof h, p, sizeof p), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_parse_valid),  cmocka_unit_test(test_time_parse_invalid),
        cmocka_unit_test(test_time_format),       cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_time_format_matches_gmtime),
        cmocka_unit_test(test_config_default_file_loads), cmocka_unit_test(test_config_overrides),
        cmocka_unit_test(test_config_rejects),    cmocka_unit_test(test_split_addr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
