/* ingest/reading — decode a device's JSON payload into checked readings.
 *
 * Two layers, so other decoders (HL7, SenML) can share the second:
 *   vg_reading_decode  JSON -> struct vg_reading (shape and member types)
 *   vg_reading_check   struct vg_reading -> the vital table (code, unit,
 *                      finite value in range, sane time, not in the future)
 *
 * Untrusted input. The payload size is checked before jansson sees a byte;
 * jansson then rejects duplicate members, NUL escapes in strings, invalid
 * UTF-8, numbers that overflow and nesting deeper than its fixed limit.
 * Reject details are built only from constants and the vital table: never
 * from the value, the time or any other text the device sent (except a
 * short identifier-like unknown member name, to help the device engineer).
 */
#include "ingest/reading.h"

#include "core/util.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* 3000-01-01T00:00:00Z in epoch milliseconds: anything at or beyond it is a
 * unit mistake (seconds vs microseconds) or garbage, not a clock. */
#define VG_READING_TIME_LIMIT_MS INT64_C(32503680000000)

_Static_assert(sizeof(json_int_t) <= sizeof(int64_t), "epoch ms must fit in int64_t");

/* Longest unknown member name that is echoed back in a detail. */
#define VG_MEMBER_ECHO_MAX 32

/* The vital-sign table: reference/interop.md §2 (LOINC, UCUM) and §4
 * (plausibility, adults). Bounds are in units[0]; see unit_to_canonical. */
static const struct vg_vital vg_vitals[] = {
    {"8867-4", "Heart rate", "vital-signs", {"/min", NULL, NULL}, 0, 300, 0},
    {"2708-6", "Oxygen saturation in Arterial blood", "vital-signs",
     {"%", NULL, NULL}, 0, 100, 1},
    {"59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry",
     "vital-signs", {"%", NULL, NULL}, 0, 100, 1},
    {"9279-1", "Respiratory rate", "vital-signs", {"/min", NULL, NULL}, 0, 70, 0},
    {"8310-5", "Body temperature", "vital-signs", {"Cel", "[degF]", NULL}, 10, 50, 0},
    {"8480-6", "Systolic blood pressure", "vital-signs", {"mm[Hg]", NULL, NULL}, 0, 400, 0},
    {"8462-4", "Diastolic blood pressure", "vital-signs", {"mm[Hg]", NULL, NULL}, 0, 300, 0},
    {"8478-0", "Mean blood pressure", "vital-signs", {"mm[Hg]", NULL, NULL}, 0, 400, 0},
    {"29463-7", "Body weight", "vital-signs", {"kg", "g", "[lb_av]"}, 0, 700, 1},
    {"2339-0", "Glucose [Mass/volume] in Blood", "laboratory",
     {"mg/dL", "mmol/L", NULL}, 0, 2000, 1},
    {"41653-7", "Glucose [Mass/volume] in Capillary blood by Glucometer", "laboratory",
     {"mg/dL", "mmol/L", NULL}, 0, 2000, 1},
};

/* Conversions of the non-canonical units in the table to their canonical
 * unit: canonical = (v + offset) * scale. A UCUM unit means the same thing
 * whichever code it is used with, so one list serves every row. */
static const struct {
    const char *unit;
    double offset, scale;
} vg_unit_conv[] = {
    {"[degF]", -32.0, 5.0 / 9.0}, /* -> Cel */
    {"g", 0.0, 0.001},            /* -> kg */
    {"[lb_av]", 0.0, 0.45359237}, /* -> kg, international avoirdupois pound */
    {"mmol/L", 0.0, 18.016},      /* -> mg/dL, glucose molar mass 180.16 g/mol */
};

#define VG_COUNT(a) (sizeof(a) / sizeof((a)[0]))

__attribute__((format(printf, 3, 4))) static void set_detail(char *detail, size_t size,
                                                             const char *fmt, ...)
{
    if (!detail || size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(detail, size, fmt, ap);
    va_end(ap);
    if (n < 0)
        detail[0] = '\0';
}

const char *vg_reject_name(enum vg_reject r)
{
    switch (r) {
    case VG_REJECT_NONE: return "none";
    case VG_REJECT_MALFORMED: return "malformed-json";
    case VG_REJECT_TOO_LARGE: return "payload-too-large";
    case VG_REJECT_TOO_MANY: return "too-many-readings";
    case VG_REJECT_MISSING_FIELD: return "missing-field";
    case VG_REJECT_UNKNOWN_FIELD: return "unknown-field";
    case VG_REJECT_PATIENT_FIELD: return "patient-in-payload";
    case VG_REJECT_UNKNOWN_CODE: return "unknown-code";
    case VG_REJECT_BAD_UNIT: return "unit-not-allowed";
    case VG_REJECT_BAD_VALUE: return "invalid-value";
    case VG_REJECT_IMPLAUSIBLE: return "implausible-value";
    case VG_REJECT_BAD_TIME: return "invalid-time";
    case VG_REJECT_FUTURE: return "time-in-future";
    case VG_REJECT_UNASSIGNED: return "device-unassigned";
    case VG_REJECT_TOPIC: return "topic-not-permitted";
    case VG_REJECT_STORE: return "store-unavailable";
    }
    return "unknown"; /* no default: -Wswitch flags a reason added without a name */
}

const struct vg_vital *vg_vital_lookup(const char *code, size_t len)
{
    if (!code)
        return NULL;
    for (size_t i = 0; i < VG_COUNT(vg_vitals); i++) {
        const char *c = vg_vitals[i].code;
        if (strlen(c) == len && memcmp(c, code, len) == 0)
            return &vg_vitals[i];
    }
    return NULL;
}

const struct vg_vital *vg_vital_at(size_t i)
{
    return i < VG_COUNT(vg_vitals) ? &vg_vitals[i] : NULL;
}

/* Index of 'unit' in v->units, or -1 when the code does not allow it. */
static int vital_unit_index(const struct vg_vital *v, const char *unit)
{
    for (size_t i = 0; i < VG_COUNT(v->units) && v->units[i]; i++)
        if (strcmp(v->units[i], unit) == 0)
            return (int)i;
    return -1;
}

static double unit_to_canonical(const char *unit, double value)
{
    for (size_t i = 0; i < VG_COUNT(vg_unit_conv); i++)
        if (strcmp(vg_unit_conv[i].unit, unit) == 0)
            return (value + vg_unit_conv[i].offset) * vg_unit_conv[i].scale;
    return value;
}

enum vg_reject vg_reading_check(const struct vg_reading *r, int64_t now_ms, char *detail,
                                size_t detail_size)
{
    set_detail(detail, detail_size, "%s", "");
    if (!r) {
        set_detail(detail, detail_size, "no reading");
        return VG_REJECT_MALFORMED;
    }

    /* The arrays may come from another decoder: never trust termination. */
    size_t code_len = strnlen(r->code, sizeof r->code);
    if (code_len == sizeof r->code) {
        set_detail(detail, detail_size, "code is longer than %zu characters",
                   sizeof r->code - 1);
        return VG_REJECT_UNKNOWN_CODE;
    }
    const struct vg_vital *v = vg_vital_lookup(r->code, code_len);
    if (!v) {
        set_detail(detail, detail_size, "code is not a LOINC code in the vital-sign table");
        return VG_REJECT_UNKNOWN_CODE;
    }

    if (strnlen(r->unit, sizeof r->unit) == sizeof r->unit) {
        set_detail(detail, detail_size, "unit is longer than %zu characters",
                   sizeof r->unit - 1);
        return VG_REJECT_BAD_UNIT;
    }
    int ui = vital_unit_index(v, r->unit);
    if (ui < 0) {
        char allowed[64] = "";
        size_t used = 0;
        for (size_t i = 0; i < VG_COUNT(v->units) && v->units[i]; i++) {
            int n = snprintf(allowed + used, sizeof allowed - used, "%s%s", i ? ", " : "",
                             v->units[i]);
            if (n < 0 || (size_t)n >= sizeof allowed - used)
                break;
            used += (size_t)n;
        }
        set_detail(detail, detail_size, "unit not allowed for %s (UCUM: %s)", v->code, allowed);
        return VG_REJECT_BAD_UNIT;
    }

    if (!isfinite(r->value)) {
        set_detail(detail, detail_size, "value is not a finite number");
        return VG_REJECT_BAD_VALUE;
    }
    /* A huge finite value may convert to infinity; it then fails the range
     * test below like any other implausible value. */
    double c = unit_to_canonical(r->unit, r->value);
    int in_range = c > v->min && (v->max_inclusive ? c <= v->max : c < v->max);
    if (!in_range) {
        set_detail(detail, detail_size, "value out of range for %s (%g < v %s %g %s%s)", v->code,
                   v->min, v->max_inclusive ? "<=" : "<", v->max, v->units[0],
                   ui > 0 ? ", after unit conversion" : "");
        return VG_REJECT_IMPLAUSIBLE;
    }

    if (r->time_ms < 0 || r->time_ms >= VG_READING_TIME_LIMIT_MS) {
        set_detail(detail, detail_size, "time is outside 1970..2999");
        return VG_REJECT_BAD_TIME;
    }
    /* Compare the difference, never now_ms + skew: the caller's clock is
     * not range-checked and the sum could overflow. time_ms >= now_ms here,
     * so the unsigned difference is exact. */
    if (r->time_ms > now_ms &&
        (uint64_t)r->time_ms - (uint64_t)now_ms > (uint64_t)VG_READING_FUTURE_MS) {
        set_detail(detail, detail_size, "time is more than %d minutes ahead of the gateway clock",
                   VG_READING_FUTURE_MS / 60000);
        return VG_REJECT_FUTURE;
    }
    return VG_REJECT_NONE;
}

/* Members a payload may name a patient with. Compared case-insensitively:
 * "PatientID" is just as much an attempt to choose the patient. */
static int is_patient_member(const char *key)
{
    static const char *const names[] = {"patient", "subject", "patient_id", "patientId"};
    for (size_t i = 0; i < VG_COUNT(names); i++)
        if (strcasecmp(key, names[i]) == 0)
            return 1;
    return 0;
}

static int is_known_member(const char *key)
{
    return strcmp(key, "code") == 0 || strcmp(key, "value") == 0 || strcmp(key, "unit") == 0 ||
           strcmp(key, "time") == 0;
}

/* Whether a member name is harmless to echo: short, [A-Za-z0-9_-], starting
 * with a letter. Anything else could carry text the device should not
 * have sent us (or control characters into a log). */
static int is_echo_safe(const char *key)
{
    size_t n = 0;
    for (const char *p = key; *p; p++, n++) {
        char ch = *p;
        int alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        int digit = ch >= '0' && ch <= '9';
        if (n >= VG_MEMBER_ECHO_MAX || (n == 0 && !alpha) ||
            (!alpha && !digit && ch != '_' && ch != '-'))
            return 0;
    }
    return n > 0;
}

/* Reads one reading object into item->reading. Order of checks: members
 * (patient, unknown, missing), then member types, then the vital table. */
static enum vg_reject decode_one(json_t *obj, int64_t now_ms, struct vg_reading_item *item)
{
    const size_t dsz = sizeof item->detail;
    struct vg_reading *r = &item->reading;

    if (!json_is_object(obj)) {
        set_detail(item->detail, dsz, "array element is not a JSON object");
        return VG_REJECT_MALFORMED;
    }

    /* A patient member refuses the reading whatever else is wrong with it,
     * so scan every member before reporting an unknown one. */
    const char *key;
    json_t *member;
    const char *unknown = NULL;
    json_object_foreach (obj, key, member) {
        if (is_patient_member(key)) {
            set_detail(item->detail, dsz,
                       "a payload may not name a patient; the device's assignment decides it");
            return VG_REJECT_PATIENT_FIELD;
        }
        if (!unknown && !is_known_member(key))
            unknown = key;
    }
    if (unknown) {
        if (is_echo_safe(unknown))
            set_detail(item->detail, dsz,
                       "unknown member \"%s\" (allowed: code, value, unit, time)", unknown);
        else
            set_detail(item->detail, dsz,
                       "an unknown member (allowed: code, value, unit, time)");
        return VG_REJECT_UNKNOWN_FIELD;
    }

    const json_t *code = json_object_get(obj, "code");
    const json_t *value = json_object_get(obj, "value");
    const json_t *unit = json_object_get(obj, "unit");
    const json_t *time = json_object_get(obj, "time");
    const char *missing = !code ? "code" : !value ? "value" : !unit ? "unit" : NULL;
    if (missing) {
        set_detail(item->detail, dsz, "reading has no \"%s\" member", missing);
        return VG_REJECT_MISSING_FIELD;
    }

    if (!json_is_string(code)) {
        set_detail(item->detail, dsz, "code must be a JSON string");
        return VG_REJECT_UNKNOWN_CODE;
    }
    if (json_string_length(code) >= sizeof r->code) {
        set_detail(item->detail, dsz, "code is longer than %zu characters", sizeof r->code - 1);
        return VG_REJECT_UNKNOWN_CODE;
    }
    /* Without JSON_ALLOW_NUL jansson strings hold no NUL, so strlen (inside
     * vg_strlcpy) equals json_string_length and the copy is whole. */
    (void)vg_strlcpy(r->code, json_string_value(code), sizeof r->code);

    if (!json_is_string(unit)) {
        set_detail(item->detail, dsz, "unit must be a JSON string");
        return VG_REJECT_BAD_UNIT;
    }
    if (json_string_length(unit) >= sizeof r->unit) {
        set_detail(item->detail, dsz, "unit is longer than %zu characters", sizeof r->unit - 1);
        return VG_REJECT_BAD_UNIT;
    }
    (void)vg_strlcpy(r->unit, json_string_value(unit), sizeof r->unit);

    /* json_is_number is integer or real; true/false/null/strings are not. */
    if (!json_is_number(value)) {
        set_detail(item->detail, dsz, "value must be a JSON number");
        return VG_REJECT_BAD_VALUE;
    }
    r->value = json_number_value(value);

    if (!time) {
        r->time_ms = now_ms;
    } else if (json_is_string(time)) {
        if (vg_time_parse_rfc3339(json_string_value(time), json_string_length(time),
                                  &r->time_ms) != 0) {
            set_detail(item->detail, dsz, "time is not a valid RFC 3339 date-time");
            return VG_REJECT_BAD_TIME;
        }
    } else if (json_is_integer(time)) {
        /* json_int_t is long long: no truncation. The range (1970..2999)
         * is enforced by vg_reading_check, for every decoder alike. */
        r->time_ms = (int64_t)json_integer_value(time);
    } else {
        set_detail(item->detail, dsz,
                   "time must be an RFC 3339 string or an integer of epoch milliseconds");
        return VG_REJECT_BAD_TIME;
    }

    return vg_reading_check(r, now_ms, item->detail, dsz);
}

/* Explains a jansson failure without its text: jansson quotes the input
 * near the error ("invalid token near '72x'"), which may be the value. */
static void explain_json_error(const json_error_t *err, char *detail, size_t detail_size)
{
    int pos = err->position;
    switch (json_error_code(err)) {
    case json_error_premature_end_of_input:
        set_detail(detail, detail_size, "JSON ends early (truncated payload?)");
        break;
    case json_error_duplicate_key:
        set_detail(detail, detail_size, "an object names the same member twice (at byte %d)", pos);
        break;
    case json_error_invalid_utf8:
        set_detail(detail, detail_size, "payload is not valid UTF-8 (at byte %d)", pos);
        break;
    case json_error_null_character:
    case json_error_null_byte_in_key:
        set_detail(detail, detail_size, "a string contains a NUL character (at byte %d)", pos);
        break;
    case json_error_numeric_overflow:
        set_detail(detail, detail_size, "a number is too large (at byte %d)", pos);
        break;
    case json_error_stack_overflow:
        set_detail(detail, detail_size, "JSON nesting is too deep");
        break;
    case json_error_end_of_input_expected:
        set_detail(detail, detail_size, "data follows the JSON value (at byte %d)", pos);
        break;
    case json_error_out_of_memory:
        set_detail(detail, detail_size, "gateway could not decode the payload (out of memory)");
        break;
    default:
        set_detail(detail, detail_size, "JSON syntax error (at byte %d)", pos);
        break;
    }
}

enum vg_reject vg_reading_decode(const uint8_t *payload, size_t len, int64_t now_ms,
                                 struct vg_reading_item *items, size_t cap, size_t *count,
                                 char *detail, size_t detail_size)
{
    enum vg_reject rc = VG_REJECT_NONE;
    json_t *root = NULL;
    size_t max = cap < VG_READINGS_MAX ? cap : VG_READINGS_MAX;
    if (!items)
        max = 0;

    if (count)
        *count = 0;
    set_detail(detail, detail_size, "%s", "");
    if (!count || (!payload && len > 0)) {
        set_detail(detail, detail_size, "no payload");
        return VG_REJECT_MALFORMED;
    }
    if (len > VG_READING_PAYLOAD_MAX) {
        set_detail(detail, detail_size, "payload is larger than %d bytes", VG_READING_PAYLOAD_MAX);
        return VG_REJECT_TOO_LARGE;
    }

    json_error_t err;
    /* JSON_DECODE_ANY only so a bare number or string gets a clear detail
     * below rather than a generic syntax error; it is refused either way. */
    root = json_loadb(payload ? (const char *)payload : "", len,
                      JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!root) {
        explain_json_error(&err, detail, detail_size);
        rc = VG_REJECT_MALFORMED;
        goto out;
    }

    if (json_is_object(root)) {
        if (max < 1) {
            set_detail(detail, detail_size, "payload holds more than %zu readings", max);
            rc = VG_REJECT_TOO_MANY;
            goto out;
        }
        memset(&items[0], 0, sizeof items[0]);
        items[0].reject = decode_one(root, now_ms, &items[0]);
        *count = 1;
    } else if (json_is_array(root)) {
        size_t n = json_array_size(root);
        if (n == 0) {
            set_detail(detail, detail_size, "payload is an empty array");
            rc = VG_REJECT_MALFORMED;
            goto out;
        }
        if (n > max) {
            set_detail(detail, detail_size, "payload holds more than %zu readings", max);
            rc = VG_REJECT_TOO_MANY;
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            memset(&items[i], 0, sizeof items[i]);
            items[i].reject = decode_one(json_array_get(root, i), now_ms, &items[i]);
        }
        *count = n;
    } else {
        set_detail(detail, detail_size,
                   "payload must be a JSON object or an array of objects");
        rc = VG_REJECT_MALFORMED;
        goto out;
    }

out:
    json_decref(root);
    return rc;
}
