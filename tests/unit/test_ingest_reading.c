/* Unit tests for ingest/reading: every reject reason, the boundaries of the
 * plausibility table, unit conversion, time handling, and the rule that a
 * detail never quotes the submitted value or time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/reading.h"

/* 2026-11-29T10:00:00Z: the receive time of every test. */
#define NOW INT64_C(1795946400000)
#define MIN_MS INT64_C(60000)

#define EXAMPLE "{\"code\":\"8867-4\",\"value\":72,\"unit\":\"/min\",\"time\":\"2026-11-29T10:00:00Z\"}"

static enum vg_reject decode(const char *json, struct vg_reading_item *items, size_t cap,
                             size_t *count, char *detail, size_t detail_size)
{
    return vg_reading_decode((const uint8_t *)json, strlen(json), NOW, items, cap, count, detail,
                             detail_size);
}

/* Decodes a payload that must be well-formed and hold exactly one reading;
 * returns that reading's reason. */
static enum vg_reject one(const char *json, struct vg_reading_item *item)
{
    size_t count = 99;
    char detail[128];
    enum vg_reject rc = decode(json, item, 1, &count, detail, sizeof detail);
    assert_int_equal(rc, VG_REJECT_NONE);
    assert_int_equal(count, 1);
    assert_non_null(memchr(item->detail, '\0', sizeof item->detail));
    if (item->reject == VG_REJECT_NONE)
        assert_string_equal(item->detail, "");
    else
        assert_true(strlen(item->detail) > 0);
    return item->reject;
}

/* Decodes a payload that must be refused as a whole with 'want'. */
static void whole(const char *json, size_t len, enum vg_reject want)
{
    struct vg_reading_item items[VG_READINGS_MAX];
    size_t count = 99;
    char detail[128];
    enum vg_reject rc = vg_reading_decode((const uint8_t *)json, len, NOW, items,
                                          VG_READINGS_MAX, &count, detail, sizeof detail);
    assert_int_equal(rc, want);
    assert_int_equal(count, 0);
    assert_true(strlen(detail) > 0);
}

#define WHOLE(json, want) whole((json), strlen(json), (want))

/* A one-reading payload from parts (value and time as raw JSON text). */
static void make(char *buf, size_t size, const char *code, const char *value, const char *unit,
                 const char *time)
{
    if (time)
        snprintf(buf, size, "{\"code\":\"%s\",\"value\":%s,\"unit\":\"%s\",\"time\":%s}", code,
                 value, unit, time);
    else
        snprintf(buf, size, "{\"code\":\"%s\",\"value\":%s,\"unit\":\"%s\"}", code, value, unit);
}

static enum vg_reject reading(const char *code, const char *value, const char *unit,
                              const char *time)
{
    char buf[512];
    struct vg_reading_item item;
    make(buf, sizeof buf, code, value, unit, time);
    return one(buf, &item);
}

/* ---- accepted payloads ------------------------------------------------ */

static void test_example_payload(void **state)
{
    (void)state;
    struct vg_reading_item item;
    assert_int_equal(one(EXAMPLE, &item), VG_REJECT_NONE);
    assert_string_equal(item.reading.code, "8867-4");
    assert_string_equal(item.reading.unit, "/min");
    assert_true(item.reading.value == 72.0);
    assert_true(item.reading.time_ms == NOW);
}

static void test_array_mixed(void **state)
{
    (void)state;
    const char *json =
        "[" EXAMPLE ","
        "{\"code\":\"1234-5\",\"value\":1,\"unit\":\"/min\"},"
        "7,"
        "{\"code\":\"59408-5\",\"value\":101,\"unit\":\"%\"},"
        "{\"code\":\"8310-5\",\"value\":36.8,\"unit\":\"Cel\",\"time\":\"2026-11-29T09:59:00Z\"},"
        "{\"code\":\"8867-4\",\"value\":72,\"unit\":\"/min\",\"patient\":\"p-1\"},"
        "[]]";
    struct vg_reading_item items[8];
    size_t count = 0;
    char detail[128];
    assert_int_equal(decode(json, items, 8, &count, detail, sizeof detail), VG_REJECT_NONE);
    assert_int_equal(count, 7);
    assert_int_equal(items[0].reject, VG_REJECT_NONE);
    assert_int_equal(items[1].reject, VG_REJECT_UNKNOWN_CODE);
    assert_int_equal(items[2].reject, VG_REJECT_MALFORMED);
    assert_int_equal(items[3].reject, VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(items[4].reject, VG_REJECT_NONE);
    assert_int_equal(items[5].reject, VG_REJECT_PATIENT_FIELD);
    assert_int_equal(items[6].reject, VG_REJECT_MALFORMED);
    assert_string_equal(items[4].reading.code, "8310-5");
    assert_true(items[4].reading.time_ms == NOW - MIN_MS);
    assert_true(items[4].reading.value == 36.8);
}

static void test_time_epoch_ms(void **state)
{
    (void)state;
    struct vg_reading_item item;
    assert_int_equal(one("{\"code\":\"8867-4\",\"value\":72,\"unit\":\"/min\","
                         "\"time\":1795946100000}",
                         &item),
                     VG_REJECT_NONE);
    assert_true(item.reading.time_ms == NOW - 5 * MIN_MS);
    /* 0 is the epoch: old but a valid time. */
    assert_int_equal(reading("8867-4", "72", "/min", "0"), VG_REJECT_NONE);
}

static void test_time_missing_uses_now(void **state)
{
    (void)state;
    struct vg_reading_item item;
    assert_int_equal(one("{\"unit\":\"/min\",\"value\":72.5,\"code\":\"8867-4\"}", &item),
                     VG_REJECT_NONE);
    assert_true(item.reading.time_ms == NOW);
    assert_true(item.reading.value == 72.5);
}

static void test_time_offsets_and_fraction(void **state)
{
    (void)state;
    struct vg_reading_item item;
    assert_int_equal(one("{\"code\":\"8867-4\",\"value\":72,\"unit\":\"/min\","
                         "\"time\":\"2026-11-29T11:00:00.250+01:00\"}",
                         &item),
                     VG_REJECT_NONE);
    assert_true(item.reading.time_ms == NOW + 250);
}

/* ---- plausibility boundaries ------------------------------------------ */

static void test_boundaries_spo2(void **state)
{
    (void)state;
    assert_int_equal(reading("59408-5", "100", "%", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("2708-6", "100", "%", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("2708-6", "100.0", "%", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("59408-5", "100.01", "%", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("2708-6", "100.01", "%", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("59408-5", "0", "%", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("59408-5", "0.5", "%", NULL), VG_REJECT_NONE);
}

static void test_boundaries_heart_rate(void **state)
{
    (void)state;
    assert_int_equal(reading("8867-4", "0", "/min", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("8867-4", "-0.0", "/min", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("8867-4", "-72", "/min", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("8867-4", "0.1", "/min", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("8867-4", "299.9", "/min", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("8867-4", "300", "/min", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("8867-4", "300.0", "/min", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("8867-4", "1e300", "/min", NULL), VG_REJECT_IMPLAUSIBLE);
}

static void test_boundaries_other_vitals(void **state)
{
    (void)state;
    assert_int_equal(reading("9279-1", "69.9", "/min", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("9279-1", "70", "/min", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("8480-6", "399", "mm[Hg]", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("8480-6", "400", "mm[Hg]", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("8462-4", "299", "mm[Hg]", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("8462-4", "300", "mm[Hg]", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("8478-0", "93", "mm[Hg]", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("8478-0", "400", "mm[Hg]", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("8310-5", "37", "Cel", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("8310-5", "10", "Cel", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("8310-5", "50", "Cel", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("29463-7", "700", "kg", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("29463-7", "700.1", "kg", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("29463-7", "70000", "g", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("29463-7", "700001", "g", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("29463-7", "165", "[lb_av]", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("29463-7", "1600", "[lb_av]", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("2339-0", "2000", "mg/dL", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("2339-0", "2000.5", "mg/dL", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("41653-7", "5.5", "mmol/L", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("41653-7", "111", "mmol/L", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("41653-7", "112", "mmol/L", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("2339-0", "0", "mmol/L", NULL), VG_REJECT_IMPLAUSIBLE);
}

static void test_temperature_degf_converted(void **state)
{
    (void)state;
    struct vg_reading_item item;
    assert_int_equal(one("{\"code\":\"8310-5\",\"value\":98.6,\"unit\":\"[degF]\"}", &item),
                     VG_REJECT_NONE);
    /* The reading keeps the unit and value as sent; only the range check
     * works in Celsius. */
    assert_string_equal(item.reading.unit, "[degF]");
    assert_true(item.reading.value == 98.6);
    /* 50 F = 10 C and 122 F = 50 C are the open bounds. */
    assert_int_equal(reading("8310-5", "50", "[degF]", NULL), VG_REJECT_IMPLAUSIBLE);
    assert_int_equal(reading("8310-5", "50.1", "[degF]", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("8310-5", "121.9", "[degF]", NULL), VG_REJECT_NONE);
    assert_int_equal(reading("8310-5", "122", "[degF]", NULL), VG_REJECT_IMPLAUSIBLE);
    /* 45 is a plausible Celsius value but not a plausible Fahrenheit one. */
    assert_int_equal(reading("8310-5", "45", "[degF]", NULL), VG_REJECT_IMPLAUSIBLE);
    char buf[256];
    make(buf, sizeof buf, "8310-5", "130", "[degF]", NULL);
    assert_int_equal(one(buf, &item), VG_REJECT_IMPLAUSIBLE);
    assert_non_null(strstr(item.detail, "8310-5"));
    assert_non_null(strstr(item.detail, "Cel"));
}

static void test_vital_lookup(void **state)
{
    (void)state;
    const struct vg_vital *v = vg_vital_lookup("8867-4", 6);
    assert_non_null(v);
    assert_string_equal(v->display, "Heart rate");
    assert_string_equal(v->category, "vital-signs");
    assert_string_equal(v->units[0], "/min");
    /* Only 'len' bytes are compared: no NUL needed, no prefix match. */
    assert_non_null(vg_vital_lookup("8867-4xyz", 6));
    assert_null(vg_vital_lookup("8867-4", 5));
    assert_null(vg_vital_lookup("8867-", 5));
    assert_null(vg_vital_lookup(NULL, 0));
    assert_null(vg_vital_lookup("", 0));
    v = vg_vital_lookup("2339-0", 6);
    assert_non_null(v);
    assert_string_equal(v->category, "laboratory");
    assert_string_equal(v->units[0], "mg/dL");
    v = vg_vital_lookup("41653-7", 7);
    assert_non_null(v);
    assert_string_equal(v->category, "laboratory");
    v = vg_vital_lookup("8310-5", 6);
    assert_non_null(v);
    assert_string_equal(v->units[0], "Cel");
    assert_string_equal(v->units[1], "[degF]");
    assert_null(v->units[2]);
    static const char *const codes[] = {"8867-4", "2708-6", "59408-5", "9279-1",
                                        "8310-5", "8480-6", "8462-4",  "8478-0",
                                        "29463-7", "2339-0", "41653-7"};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        v = vg_vital_lookup(codes[i], strlen(codes[i]));
        assert_non_null(v);
        assert_string_equal(v->code, codes[i]);
        assert_non_null(v->units[0]);
        assert_true(v->min < v->max);
    }
}

/* ---- per-reading rejects ---------------------------------------------- */

static void test_unknown_code(void **state)
{
    (void)state;
    struct vg_reading_item item;
    assert_int_equal(reading("1234-5", "72", "/min", NULL), VG_REJECT_UNKNOWN_CODE);
    assert_int_equal(reading("", "72", "/min", NULL), VG_REJECT_UNKNOWN_CODE);
    assert_int_equal(reading("8867-4 ", "72", "/min", NULL), VG_REJECT_UNKNOWN_CODE);
    /* 15 characters fits the field but is still unknown; 16 is too long. */
    assert_int_equal(reading("123456789012345", "72", "/min", NULL), VG_REJECT_UNKNOWN_CODE);
    assert_int_equal(one("{\"code\":\"8867-4_8867-4_8867-4\",\"value\":72,\"unit\":\"/min\"}",
                         &item),
                     VG_REJECT_UNKNOWN_CODE);
    assert_null(strstr(item.detail, "8867-4_"));
    assert_int_equal(one("{\"code\":8867,\"value\":72,\"unit\":\"/min\"}", &item),
                     VG_REJECT_UNKNOWN_CODE);
    assert_int_equal(one("{\"code\":null,\"value\":72,\"unit\":\"/min\"}", &item),
                     VG_REJECT_UNKNOWN_CODE);
}

static void test_wrong_unit(void **state)
{
    (void)state;
    struct vg_reading_item item;
    assert_int_equal(one("{\"code\":\"8867-4\",\"value\":72,\"unit\":\"bpm\"}", &item),
                     VG_REJECT_BAD_UNIT);
    assert_non_null(strstr(item.detail, "/min"));
    assert_null(strstr(item.detail, "bpm"));
    assert_int_equal(reading("8310-5", "37", "Cel ", NULL), VG_REJECT_BAD_UNIT);
    assert_int_equal(reading("8310-5", "37", "cel", NULL), VG_REJECT_BAD_UNIT); /* UCUM is case-sensitive */
    assert_int_equal(reading("8480-6", "120", "mmHg", NULL), VG_REJECT_BAD_UNIT);
    assert_int_equal(reading("59408-5", "97", "/min", NULL), VG_REJECT_BAD_UNIT);
    assert_int_equal(reading("29463-7", "70", "mg/dL", NULL), VG_REJECT_BAD_UNIT);
    assert_int_equal(reading("2339-0", "5", "[degF]", NULL), VG_REJECT_BAD_UNIT);
    assert_int_equal(reading("8867-4", "72", "", NULL), VG_REJECT_BAD_UNIT);
    assert_int_equal(reading("8867-4", "72", "/min/min/min/min", NULL), VG_REJECT_BAD_UNIT);
    assert_int_equal(one("{\"code\":\"8867-4\",\"value\":72,\"unit\":[\"/min\"]}", &item),
                     VG_REJECT_BAD_UNIT);
}

static void test_patient_field(void **state)
{
    (void)state;
    static const char *const names[] = {"patient", "subject", "patient_id", "patientId",
                                        "Patient", "PATIENT_ID"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char buf[256];
        struct vg_reading_item item;
        snprintf(buf, sizeof buf,
                 "{\"code\":\"8867-4\",\"value\":72,\"unit\":\"/min\",\"%s\":\"mrn-0042\"}",
                 names[i]);
        assert_int_equal(one(buf, &item), VG_REJECT_PATIENT_FIELD);
        assert_null(strstr(item.detail, "mrn-0042"));
    }
    /* A patient member wins over an unknown member that comes first, and
     * over a reading that would otherwise be refused for its value. */
    struct vg_reading_item item;
    assert_int_equal(one("{\"extra\":1,\"code\":\"8867-4\",\"value\":\"x\",\"unit\":\"/min\","
                         "\"subject\":{\"reference\":\"Patient/1\"}}",
                         &item),
                     VG_REJECT_PATIENT_FIELD);
}

static void test_unknown_field(void **state)
{
    (void)state;
    struct vg_reading_item item;
    assert_int_equal(one("{\"code\":\"8867-4\",\"value\":72,\"unit\":\"/min\",\"device\":\"d1\"}",
                         &item),
                     VG_REJECT_UNKNOWN_FIELD);
    assert_non_null(strstr(item.detail, "\"device\""));
    /* A member name that is not a short identifier is not echoed. */
    assert_int_equal(one("{\"code\":\"8867-4\",\"value\":72,\"unit\":\"/min\","
                         "\"John Smith DOB 1950-01-01\":1}",
                         &item),
                     VG_REJECT_UNKNOWN_FIELD);
    assert_null(strstr(item.detail, "Smith"));
    assert_non_null(strstr(item.detail, "an unknown member"));
    assert_int_equal(one("{\"code\":\"8867-4\",\"value\":72,\"unit\":\"/min\","
                         "\"abcdefghijabcdefghijabcdefghijabcdefghij\":1}",
                         &item),
                     VG_REJECT_UNKNOWN_FIELD);
    assert_null(strstr(item.detail, "abcdefghij"));
    assert_int_equal(one("{\"code\":\"8867-4\",\"value\":72,\"unit\":\"/min\",\"\":1}", &item),
                     VG_REJECT_UNKNOWN_FIELD);
    assert_int_equal(one("{\"code\":\"8867-4\",\"value\":72,\"unit\":\"/min\","
                         "\"bad\\u001b[31m\":1}",
                         &item),
                     VG_REJECT_UNKNOWN_FIELD);
    assert_null(strchr(item.detail, '\x1b'));
    /* Member names are case-sensitive. */
    assert_int_equal(one("{\"Code\":\"8867-4\",\"value\":72,\"unit\":\"/min\"}", &item),
                     VG_REJECT_UNKNOWN_FIELD);
}

static void test_missing_field(void **state)
{
    (void)state;
    struct vg_reading_item item;
    assert_int_equal(one("{\"value\":72,\"unit\":\"/min\"}", &item), VG_REJECT_MISSING_FIELD);
    assert_non_null(strstr(item.detail, "code"));
    assert_int_equal(one("{\"code\":\"8867-4\",\"unit\":\"/min\"}", &item),
                     VG_REJECT_MISSING_FIELD);
    assert_non_null(strstr(item.detail, "value"));
    assert_int_equal(one("{\"code\":\"8867-4\",\"value\":72}", &item), VG_REJECT_MISSING_FIELD);
    assert_non_null(strstr(item.detail, "unit"));
    assert_int_equal(one("{}", &item), VG_REJECT_MISSING_FIELD);
}

static void test_value_not_number(void **state)
{
    (void)state;
    static const char *const values[] = {"\"72\"", "true", "false", "null", "{}", "[72]",
                                         "\"NaN\"", "\"Infinity\""};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        assert_int_equal(reading("8867-4", values[i], "/min", NULL), VG_REJECT_BAD_VALUE);
    /* JSON has no NaN or Infinity literal: such payloads are malformed. */
    WHOLE("{\"code\":\"8867-4\",\"value\":NaN,\"unit\":\"/min\"}", VG_REJECT_MALFORMED);
    WHOLE("{\"code\":\"8867-4\",\"value\":Infinity,\"unit\":\"/min\"}", VG_REJECT_MALFORMED);
    /* Out of double or int64 range: jansson refuses the number. */
    WHOLE("{\"code\":\"8867-4\",\"value\":1e999,\"unit\":\"/min\"}", VG_REJECT_MALFORMED);
    WHOLE("{\"code\":\"8867-4\",\"value\":99999999999999999999,\"unit\":\"/min\"}",
          VG_REJECT_MALFORMED);
}

static void test_check_non_finite(void **state)
{
    (void)state;
    struct vg_reading r = {.code = "8867-4", .unit = "/min", .value = NAN, .time_ms = NOW};
    char detail[128];
    assert_int_equal(vg_reading_check(&r, NOW, detail, sizeof detail), VG_REJECT_BAD_VALUE);
    r.value = INFINITY;
    assert_int_equal(vg_reading_check(&r, NOW, detail, sizeof detail), VG_REJECT_BAD_VALUE);
    r.value = -INFINITY;
    assert_int_equal(vg_reading_check(&r, NOW, detail, sizeof detail), VG_REJECT_BAD_VALUE);
    r.value = 72;
    assert_int_equal(vg_reading_check(&r, NOW, detail, sizeof detail), VG_REJECT_NONE);
    assert_string_equal(detail, "");
    /* No room for a detail is allowed. */
    r.value = NAN;
    assert_int_equal(vg_reading_check(&r, NOW, NULL, 0), VG_REJECT_BAD_VALUE);
    /* A tiny buffer is truncated, still terminated. */
    char tiny[4] = {'x', 'x', 'x', 'x'};
    assert_int_equal(vg_reading_check(&r, NOW, tiny, sizeof tiny), VG_REJECT_BAD_VALUE);
    assert_int_equal(strlen(tiny), 3);
}

static void test_check_unterminated_fields(void **state)
{
    (void)state;
    struct vg_reading r = {.value = 72, .time_ms = NOW};
    char detail[128];
    memset(r.code, 'A', sizeof r.code);
    memcpy(r.unit, "/min", 5);
    assert_int_equal(vg_reading_check(&r, NOW, detail, sizeof detail), VG_REJECT_UNKNOWN_CODE);
    memcpy(r.code, "8867-4", 7);
    memset(r.unit, 'A', sizeof r.unit);
    assert_int_equal(vg_reading_check(&r, NOW, detail, sizeof detail), VG_REJECT_BAD_UNIT);
    assert_int_equal(vg_reading_check(NULL, NOW, detail, sizeof detail), VG_REJECT_MALFORMED);
}

static void test_check_extreme_clock(void **state)
{
    (void)state;
    /* The gateway clock is not range-checked: no overflow either way. */
    struct vg_reading r = {.code = "8867-4", .unit = "/min", .value = 72, .time_ms = NOW};
    char detail[128];
    assert_int_equal(vg_reading_check(&r, INT64_MAX, detail, sizeof detail), VG_REJECT_NONE);
    assert_int_equal(vg_reading_check(&r, INT64_MIN, detail, sizeof detail), VG_REJECT_FUTURE);
    r.time_ms = INT64_MAX;
    assert_int_equal(vg_reading_check(&r, INT64_MAX, detail, sizeof detail), VG_REJECT_BAD_TIME);
    r.time_ms = INT64_MIN;
    assert_int_equal(vg_reading_check(&r, INT64_MIN, detail, sizeof detail), VG_REJECT_BAD_TIME);
}

/* ---- time ------------------------------------------------------------- */

static void test_time_future(void **state)
{
    (void)state;
    struct vg_reading_item item;
    assert_int_equal(reading("8867-4", "72", "/min", "\"2026-11-29T10:06:00Z\""),
                     VG_REJECT_FUTURE);
    assert_int_equal(reading("8867-4", "72", "/min", "\"2026-11-29T10:04:00Z\""),
                     VG_REJECT_NONE);
    /* Exactly the allowance is still accepted; one millisecond more is not. */
    assert_int_equal(reading("8867-4", "72", "/min", "\"2026-11-29T10:05:00Z\""),
                     VG_REJECT_NONE);
    assert_int_equal(reading("8867-4", "72", "/min", "\"2026-11-29T10:05:00.001Z\""),
                     VG_REJECT_FUTURE);
    assert_int_equal(reading("8867-4", "72", "/min", "1795946700000"), VG_REJECT_NONE);
    assert_int_equal(one("{\"code\":\"8867-4\",\"value\":72,\"unit\":\"/min\","
                         "\"time\":1795946700001}",
                         &item),
                     VG_REJECT_FUTURE);
    assert_null(strstr(item.detail, "1795946700001"));
    /* An offset that puts the instant in the future. */
    assert_int_equal(reading("8867-4", "72", "/min", "\"2026-11-29T10:00:00-01:00\""),
                     VG_REJECT_FUTURE);
}

static void test_time_invalid(void **state)
{
    (void)state;
    static const char *const times[] = {
        "\"2026-02-30T10:00:00Z\"", "\"2026-02-29T10:00:00Z\"", "\"2026-13-01T10:00:00Z\"",
        "\"2026-11-29T24:00:00Z\"", "\"2026-11-29 10:00:00Z\"", "\"2026-11-29T10:00:00\"",
        "\"2026-11-29\"",           "\"yesterday\"",            "\"\"",
        "\"1969-12-31T23:59:59Z\"", "\"1970-01-01T00:30:00+01:00\"", /* before the epoch */
        "\"3000-01-01T00:00:00Z\"", "\"9999-12-31T23:59:59Z\"",
        "\"2026-11-29T10:00:00Z \"", "\"2026-11-29T10:00:00.Z\"",
        "1795946400000.0",          "1.7959464e12", /* a real, not an integer */
        "-1",                       "32503680000000", /* year 3000 */
        "9223372036854775807",      "true",           "null",
        "{}",                       "[]",
    };
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        char buf[256];
        struct vg_reading_item item;
        make(buf, sizeof buf, "8867-4", "72", "/min", times[i]);
        if (one(buf, &item) != VG_REJECT_BAD_TIME)
            fail_msg("time %s: got %s", times[i], vg_reject_name(item.reject));
    }
    /* A leap year has its February 29th, and a leap second is tolerated. */
    assert_int_equal(reading("8867-4", "72", "/min", "\"2024-02-29T10:00:00Z\""),
                     VG_REJECT_NONE);
    assert_int_equal(reading("8867-4", "72", "/min", "\"2016-12-31T23:59:60Z\""),
                     VG_REJECT_NONE);
}

/* ---- whole-payload rejects -------------------------------------------- */

static void test_malformed_json(void **state)
{
    (void)state;
    WHOLE("not json", VG_REJECT_MALFORMED);
    WHOLE("{", VG_REJECT_MALFORMED);
    WHOLE("", VG_REJECT_MALFORMED);
    WHOLE("{\"code\":\"8867-4\",\"value\":72,\"unit\":\"/min\",}", VG_REJECT_MALFORMED);
    WHOLE("{'code':'8867-4'}", VG_REJECT_MALFORMED);
    WHOLE(EXAMPLE " x", VG_REJECT_MALFORMED);
    WHOLE(EXAMPLE EXAMPLE, VG_REJECT_MALFORMED);
    WHOLE("{\"code\":\"8867-4\",\"value\":72,\"unit\":\"/m\\u0000in\"}", VG_REJECT_MALFORMED);
    WHOLE("{\"code\":\"8867-4\",\"value\":72,\"unit\":\"\xff\xfe\"}", VG_REJECT_MALFORMED);
    WHOLE("{\"code\":\"8867-4\",\"value\":72,\"unit\":\"\xed\xa0\x80\"}", VG_REJECT_MALFORMED);
    /* A raw NUL byte inside the buffer. */
    static const char nul[] = "{\"code\":\"88\0" "67-4\",\"value\":72,\"unit\":\"/min\"}";
    whole(nul, sizeof nul - 1, VG_REJECT_MALFORMED);
    /* NULL payload. */
    size_t count = 99;
    char detail[128];
    struct vg_reading_item item;
    assert_int_equal(vg_reading_decode(NULL, 0, NOW, &item, 1, &count, detail, sizeof detail),
                     VG_REJECT_MALFORMED);
    assert_int_equal(count, 0);
    assert_int_equal(vg_reading_decode(NULL, 5, NOW, &item, 1, &count, detail, sizeof detail),
                     VG_REJECT_MALFORMED);
}

static void test_truncated_json(void **state)
{
    (void)state;
    /* Every proper prefix of the example is refused as a whole. */
    const char *json = EXAMPLE;
    for (size_t n = 0; n < strlen(json); n++)
        whole(json, n, VG_REJECT_MALFORMED);
    const char *arr = "[" EXAMPLE "," EXAMPLE "]";
    for (size_t n = 0; n < strlen(arr); n++)
        whole(arr, n, VG_REJECT_MALFORMED);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    WHOLE("{\"code\":\"8867-4\",\"value\":72,\"value\":400,\"unit\":\"/min\"}",
          VG_REJECT_MALFORMED);
    WHOLE("[" EXAMPLE ",{\"code\":\"8867-4\",\"code\":\"2708-6\",\"value\":72,\"unit\":\"/min\"}]",
          VG_REJECT_MALFORMED);
    /* Escapes that decode to the same member name are duplicates too. */
    WHOLE("{\"code\":\"8867-4\",\"\\u0063ode\":\"2708-6\",\"value\":72,\"unit\":\"/min\"}",
          VG_REJECT_MALFORMED);
}

static void test_top_level_scalar(void **state)
{
    (void)state;
    WHOLE("72", VG_REJECT_MALFORMED);
    WHOLE("\"8867-4\"", VG_REJECT_MALFORMED);
    WHOLE("true", VG_REJECT_MALFORMED);
    WHOLE("null", VG_REJECT_MALFORMED);
    WHOLE("  ", VG_REJECT_MALFORMED);
}

static void test_empty_array(void **state)
{
    (void)state;
    WHOLE("[]", VG_REJECT_MALFORMED);
    WHOLE(" [ ] ", VG_REJECT_MALFORMED);
}

static void test_nesting_deep(void **state)
{
    (void)state;
    static char deep[8192];
    memset(deep, '[', 4096);
    memset(deep + 4096, ']', 4096);
    whole(deep, sizeof deep, VG_REJECT_MALFORMED);
    memset(deep, '[', sizeof deep);
    whole(deep, sizeof deep, VG_REJECT_MALFORMED);
}

/* An array of n copies of the example payload. */
static char *array_of(size_t n)
{
    size_t one_len = strlen(EXAMPLE);
    char *buf = malloc(n * (one_len + 1) + 3);
    assert_non_null(buf);
    char *p = buf;
    *p++ = '[';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        memcpy(p, EXAMPLE, one_len);
        p += one_len;
    }
    *p++ = ']';
    *p = '\0';
    return buf;
}

static void test_too_many(void **state)
{
    (void)state;
    struct vg_reading_item items[VG_READINGS_MAX + 1];
    size_t count = 99;
    char detail[128];

    char *json = array_of(VG_READINGS_MAX);
    assert_int_equal(decode(json, items, VG_READINGS_MAX, &count, detail, sizeof detail),
                     VG_REJECT_NONE);
    assert_int_equal(count, VG_READINGS_MAX);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(items[i].reject, VG_REJECT_NONE);
    free(json);

    /* VG_READINGS_MAX caps the count even when the caller has more room. */
    json = array_of(VG_READINGS_MAX + 1);
    assert_int_equal(decode(json, items, VG_READINGS_MAX + 1, &count, detail, sizeof detail),
                     VG_REJECT_TOO_MANY);
    assert_int_equal(count, 0);
    free(json);

    /* And so does the caller's capacity. */
    json = array_of(3);
    assert_int_equal(decode(json, items, 2, &count, detail, sizeof detail), VG_REJECT_TOO_MANY);
    assert_int_equal(count, 0);
    assert_int_equal(decode(json, items, 3, &count, detail, sizeof detail), VG_REJECT_NONE);
    assert_int_equal(count, 3);
    free(json);

    assert_int_equal(decode(EXAMPLE, items, 0, &count, detail, sizeof detail),
                     VG_REJECT_TOO_MANY);
    assert_int_equal(decode(EXAMPLE, NULL, 0, &count, detail, sizeof detail),
                     VG_REJECT_TOO_MANY);
}

static void test_payload_too_large(void **state)
{
    (void)state;
    size_t ex = strlen(EXAMPLE);
    char *buf = malloc(VG_READING_PAYLOAD_MAX + 2);
    assert_non_null(buf);
    /* A valid object padded with whitespace to exactly the limit is read... */
    memcpy(buf, EXAMPLE, ex);
    memset(buf + ex, ' ', VG_READING_PAYLOAD_MAX + 1 - ex);
    struct vg_reading_item item;
    size_t count = 99;
    char detail[128];
    assert_int_equal(vg_reading_decode((const uint8_t *)buf, VG_READING_PAYLOAD_MAX, NOW, &item, 1,
                                       &count, detail, sizeof detail),
                     VG_REJECT_NONE);
    assert_int_equal(count, 1);
    assert_int_equal(item.reject, VG_REJECT_NONE);
    /* ...one byte more is refused before parsing. */
    whole(buf, VG_READING_PAYLOAD_MAX + 1, VG_REJECT_TOO_LARGE);
    /* Garbage over the limit is "too large", not "malformed". */
    memset(buf, 'x', VG_READING_PAYLOAD_MAX + 1);
    whole(buf, VG_READING_PAYLOAD_MAX + 1, VG_REJECT_TOO_LARGE);
    whole(buf, SIZE_MAX, VG_REJECT_TOO_LARGE);
    free(buf);
}

/* ---- detail hygiene and names ----------------------------------------- */

static void test_detail_never_quotes_value(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *secret;
    } cases[] = {
        {"{\"code\":\"9279-1\",\"value\":123.4567,\"unit\":\"/min\"}", "123.4567"},
        {"{\"code\":\"8867-4\",\"value\":-123.4567,\"unit\":\"/min\"}", "123.4567"},
        {"{\"code\":\"59408-5\",\"value\":123.4567,\"unit\":\"%\"}", "123.4567"},
        {"{\"code\":\"8310-5\",\"value\":123.4567,\"unit\":\"[degF]\"}", "123.4567"},
        {"{\"code\":\"8310-5\",\"value\":123.4567,\"unit\":\"[degF]\"}", "50.8"}, /* as Cel */
        {"{\"code\":\"8867-4\",\"value\":\"123.4567\",\"unit\":\"/min\"}", "123.4567"},
        {"{\"code\":\"8867-4\",\"value\":123.4567,\"unit\":\"bpm\"}", "123.4567"},
        {"{\"code\":\"0000-0\",\"value\":123.4567,\"unit\":\"/min\"}", "123.4567"},
        {"{\"code\":\"8867-4\",\"value\":123.4567,\"unit\":\"/min\","
         "\"time\":\"2026-02-30T10:00:00Z\"}",
         "2026-02-30"},
        {"{\"code\":\"8867-4\",\"value\":123.4567,\"unit\":\"/min\","
         "\"time\":\"2026-11-29T10:06:00Z\"}",
         "10:06"},
        {"{\"code\":\"8867-4\",\"value\":123.4567,\"unit\":\"/min\",\"time\":1795946760000}",
         "1795946760000"},
        {"{\"code\":\"8867-4\",\"value\":123.4567,\"unit\":\"/min\",\"time\":-17959467}",
         "17959467"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct vg_reading_item item;
        assert_int_not_equal(one(cases[i].json, &item), VG_REJECT_NONE);
        if (strstr(item.detail, cases[i].secret))
            fail_msg("case %zu: detail \"%s\" quotes \"%s\"", i, item.detail, cases[i].secret);
    }
    /* Whole-payload details: jansson's own messages quote the input near
     * the error; ours must not. */
    static const char *const bad[] = {
        "{\"code\":\"8867-4\",\"value\":123.4567x,\"unit\":\"/min\"}",
        "{\"code\":\"8867-4\",\"value\":123.4567",
        "{\"code\":\"8867-4\",\"value\":123.4567,\"value\":123.4567}",
        "[{\"code\":\"8867-4\",\"value\":123.4567e999}]",
        "123.4567",
        "\"123.4567\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct vg_reading_item items[4];
        size_t count;
        char detail[128];
        assert_int_equal(decode(bad[i], items, 4, &count, detail, sizeof detail),
                         VG_REJECT_MALFORMED);
        if (strstr(detail, "123.4567") || strstr(detail, "123"))
            fail_msg("payload %zu: detail \"%s\" quotes the value", i, detail);
    }
}

static void test_detail_example_wording(void **state)
{
    (void)state;
    struct vg_reading_item item;
    assert_int_equal(one("{\"code\":\"8867-4\",\"value\":301,\"unit\":\"/min\"}", &item),
                     VG_REJECT_IMPLAUSIBLE);
    assert_string_equal(item.detail, "value out of range for 8867-4 (0 < v < 300 /min)");
    assert_int_equal(one("{\"code\":\"59408-5\",\"value\":101,\"unit\":\"%\"}", &item),
                     VG_REJECT_IMPLAUSIBLE);
    assert_string_equal(item.detail, "value out of range for 59408-5 (0 < v <= 100 %)");
}

static void test_reject_names(void **state)
{
    (void)state;
    assert_string_equal(vg_reject_name(VG_REJECT_NONE), "none");
    assert_string_equal(vg_reject_name(VG_REJECT_MALFORMED), "malformed-json");
    assert_string_equal(vg_reject_name(VG_REJECT_TOO_LARGE), "payload-too-large");
    assert_string_equal(vg_reject_name(VG_REJECT_TOO_MANY), "too-many-readings");
    assert_string_equal(vg_reject_name(VG_REJECT_MISSING_FIELD), "missing-field");
    assert_string_equal(vg_reject_name(VG_REJECT_UNKNOWN_FIELD), "unknown-field");
    assert_string_equal(vg_reject_name(VG_REJECT_PATIENT_FIELD), "patient-in-payload");
    assert_string_equal(vg_reject_name(VG_REJECT_UNKNOWN_CODE), "unknown-code");
    assert_string_equal(vg_reject_name(VG_REJECT_BAD_UNIT), "unit-not-allowed");
    assert_string_equal(vg_reject_name(VG_REJECT_BAD_VALUE), "invalid-value");
    assert_string_equal(vg_reject_name(VG_REJECT_IMPLAUSIBLE), "implausible-value");
    assert_string_equal(vg_reject_name(VG_REJECT_BAD_TIME), "invalid-time");
    assert_string_equal(vg_reject_name(VG_REJECT_FUTURE), "time-in-future");
    assert_string_equal(vg_reject_name(VG_REJECT_UNASSIGNED), "device-unassigned");
    assert_string_equal(vg_reject_name(VG_REJECT_TOPIC), "topic-not-permitted");
    assert_string_equal(vg_reject_name(VG_REJECT_STORE), "store-unavailable");
    assert_string_equal(vg_reject_name((enum vg_reject)99), "unknown");
    assert_string_equal(vg_reject_name((enum vg_reject)-1), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_payload),
        cmocka_unit_test(test_array_mixed),
        cmocka_unit_test(test_time_epoch_ms),
        cmocka_unit_test(test_time_missing_uses_now),
        cmocka_unit_test(test_time_offsets_and_fraction),
        cmocka_unit_test(test_boundaries_spo2),
        cmocka_unit_test(test_boundaries_heart_rate),
        cmocka_unit_test(test_boundaries_other_vitals),
        cmocka_unit_test(test_temperature_degf_converted),
        cmocka_unit_test(test_vital_lookup),
        cmocka_unit_test(test_unknown_code),
        cmocka_unit_test(test_wrong_unit),
        cmocka_unit_test(test_patient_field),
        cmocka_unit_test(test_unknown_field),
        cmocka_unit_test(test_missing_field),
        cmocka_unit_test(test_value_not_number),
        cmocka_unit_test(test_check_non_finite),
        cmocka_unit_test(test_check_unterminated_fields),
        cmocka_unit_test(test_check_extreme_clock),
        cmocka_unit_test(test_time_future),
        cmocka_unit_test(test_time_invalid),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_truncated_json),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_top_level_scalar),
        cmocka_unit_test(test_empty_array),
        cmocka_unit_test(test_nesting_deep),
        cmocka_unit_test(test_too_many),
        cmocka_unit_test(test_payload_too_large),
        cmocka_unit_test(test_detail_never_quotes_value),
        cmocka_unit_test(test_detail_example_wording),
        cmocka_unit_test(test_reject_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
