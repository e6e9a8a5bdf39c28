/* ingest/reading — decode and check the readings in a device's JSON payload.
 *
 * Payload (UTF-8 JSON, one object or an array of objects):
 *   {"code":"8867-4","value":72,"unit":"/min","time":"2026-11-29T10:00:00Z"}
 * 'code' is a LOINC code from the vital-sign table below, 'unit' a UCUM unit
 * that the table allows for that code, 'value' a finite JSON number inside
 * the code's plausibility range, 'time' optional: an RFC 3339 string or epoch
 * milliseconds as an integer; when absent the reading takes the receive time.
 * Any other member is refused (a payload can never name a patient: the
 * device's assignment decides that — design invariant 2).
 *
 * Pure: no I/O, no global state; the vital table is constant. Decoding
 * borrows the payload only during the call; results are copied into the
 * caller's array. Reject details never quote the value (it is PHI).
 */
#ifndef VG_INGEST_READING_H
#define VG_INGEST_READING_H

#include <stddef.h>
#include <stdint.h>

/* Limits: readings per payload and payload bytes this decoder accepts. */
#define VG_READINGS_MAX 64
#define VG_READING_PAYLOAD_MAX 16384
/* A reading may be at most this far in the future (clock skew allowance). */
#define VG_READING_FUTURE_MS (5 * 60 * 1000)

/* One row of the vital-sign table (reference/interop.md §2 and §4). */
struct vg_vital {
    const char *code;     /* LOINC, e.g. "8867-4" */
    const char *display;  /* "Heart rate" */
    const char *category; /* FHIR observation-category: "vital-signs" or
                             "laboratory" */
    const char *units[3]; /* accepted UCUM units; units[0] is canonical;
                             unused slots NULL */
    /* Plausibility in the canonical unit: min < v, and v < max (or v <= max
     * when max_inclusive). Values in other units are converted first. */
    double min, max;
    int max_inclusive;
};

/* Looks a LOINC code up; NULL when it is not in the table. 'len' bytes. */
const struct vg_vital *vg_vital_lookup(const char *code, size_t len);

/* The table's i-th row, or NULL past its end (for walking every code). */
const struct vg_vital *vg_vital_at(size_t i);

/* Every reading that is refused carries one of these. The names are stable
 * wire strings (sent to the device on its rejects topic, stored in audit). */
enum vg_reject {
    VG_REJECT_NONE = 0,
    VG_REJECT_MALFORMED,      /* "malformed-json": not JSON, or wrong shape */
    VG_REJECT_TOO_LARGE,      /* "payload-too-large" */
    VG_REJECT_TOO_MANY,       /* "too-many-readings" */
    VG_REJECT_MISSING_FIELD,  /* "missing-field" */
    VG_REJECT_UNKNOWN_FIELD,  /* "unknown-field" */
    VG_REJECT_PATIENT_FIELD,  /* "patient-in-payload": a member named
                                 patient/subject/patient_id/patientId
                                 (any letter case) */
    VG_REJECT_UNKNOWN_CODE,   /* "unknown-code" */
    VG_REJECT_BAD_UNIT,       /* "unit-not-allowed" */
    VG_REJECT_BAD_VALUE,      /* "invalid-value": not a finite number */
    VG_REJECT_IMPLAUSIBLE,    /* "implausible-value" */
    VG_REJECT_BAD_TIME,       /* "invalid-time" */
    VG_REJECT_FUTURE,         /* "time-in-future" */
    /* Decided later on the path, listed here so all reasons share one set: */
    VG_REJECT_UNASSIGNED,     /* "device-unassigned" */
    VG_REJECT_TOPIC,          /* "topic-not-permitted" */
    VG_REJECT_STORE,          /* "store-unavailable" */
};

/* Stable name of a reason, e.g. "implausible-value". Never NULL. */
const char *vg_reject_name(enum vg_reject r);

struct vg_reading {
    char code[16];       /* LOINC, NUL-terminated */
    char unit[16];       /* UCUM as sent, NUL-terminated */
    double value;
    int64_t time_ms;     /* epoch ms; receive time when the payload had none */
};

struct vg_reading_item {
    struct vg_reading reading; /* meaningful only when reject == NONE */
    enum vg_reject reject;
    char detail[128];          /* human explanation for a reject; no value */
};

/* Decodes 'len' bytes of 'payload'. 'now_ms' is the receive time (used for a
 * missing time and the future check).
 *
 * Returns VG_REJECT_NONE when the payload was well-formed JSON of the right
 * shape: then items[0..*count) hold one entry per reading in order, each
 * either accepted (reject == NONE) or refused with its own reason. Returns a
 * whole-payload reason otherwise (MALFORMED, TOO_LARGE, TOO_MANY), with
 * *count = 0 and an explanation in 'detail' (capacity 'detail_size'; set to
 * "" on success). More than min(cap, VG_READINGS_MAX) readings is TOO_MANY.
 *
 * Per reading, the first failing check decides the reason: a patient member,
 * then an unknown member, a missing code/value/unit, member types (code not
 * a string or over 15 bytes: UNKNOWN_CODE; unit likewise: BAD_UNIT; value
 * not a number: BAD_VALUE; time neither an RFC 3339 string nor an integer:
 * BAD_TIME), then vg_reading_check. An array element that is not an object
 * is refused with MALFORMED in its own item. */
enum vg_reject vg_reading_decode(const uint8_t *payload, size_t len, int64_t now_ms,
                                 struct vg_reading_item *items, size_t cap,
                                 size_t *count, char *detail, size_t detail_size);

/* Checks one reading against the table, in this order: code (UNKNOWN_CODE),
 * unit (BAD_UNIT), finite value (BAD_VALUE) in range after conversion to the
 * canonical unit (IMPLAUSIBLE), time within 1970..2999 (BAD_TIME) and not
 * beyond now + VG_READING_FUTURE_MS (FUTURE). code and unit need not be
 * NUL-terminated; an unterminated one is refused. Writes an explanation into
 * 'detail' when refused ("" when accepted; 'detail' may be NULL). Used by
 * vg_reading_decode and by other decoders. */
enum vg_reject vg_reading_check(const struct vg_reading *r, int64_t now_ms,
                                char *detail, size_t detail_size);

#endif
