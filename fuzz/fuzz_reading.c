/* libFuzzer harness for ingest/reading: vg_reading_decode on arbitrary
 * bytes, at a fixed receive time, with the module's invariants checked on
 * every result (abort() on a violation so libFuzzer records the input). */
#include "ingest/reading.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 2026-11-29T10:00:00Z */
#define FUZZ_NOW INT64_C(1795946400000)
#define FUZZ_CAP 16

static void check(int ok)
{
    if (!ok)
        abort();
}

static int terminated(const char *s, size_t n) { return memchr(s, '\0', n) != NULL; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vg_reading_item items[FUZZ_CAP + 1];
    char detail[96];
    size_t count = (size_t)-1;

    /* A canary item past the capacity catches writes beyond 'cap'. */
    memset(items, 0xA5, sizeof items);
    memset(detail, 0xA5, sizeof detail);
    enum vg_reject rc =
        vg_reading_decode(data, size, FUZZ_NOW, items, FUZZ_CAP, &count, detail, sizeof detail);

    check(terminated(detail, sizeof detail));
    check(strcmp(vg_reject_name(rc), "unknown") != 0);
    unsigned char canary[sizeof items[FUZZ_CAP]];
    memset(canary, 0xA5, sizeof canary);
    check(memcmp(&items[FUZZ_CAP], canary, sizeof canary) == 0);

    if (rc != VG_REJECT_NONE) {
        check(rc == VG_REJECT_MALFORMED || rc == VG_REJECT_TOO_LARGE ||
              rc == VG_REJECT_TOO_MANY);
        check(count == 0);
        check(detail[0] != '\0');
        return 0;
    }
    check(count >= 1 && count <= FUZZ_CAP);
    for (size_t i = 0; i < count; i++) {
        const struct vg_reading_item *it = &items[i];
        check(terminated(it->detail, sizeof it->detail));
        check(it->reject <= VG_REJECT_FUTURE);
        check(it->reject != VG_REJECT_TOO_LARGE && it->reject != VG_REJECT_TOO_MANY);
        if (it->reject != VG_REJECT_NONE) {
            check(it->detail[0] != '\0');
            continue;
        }
        const struct vg_reading *r = &it->reading;
        check(terminated(r->code, sizeof r->code));
        check(terminated(r->unit, sizeof r->unit));
        const struct vg_vital *v = vg_vital_lookup(r->code, strlen(r->code));
        check(v != NULL);
        int unit_ok = 0;
        for (size_t u = 0; u < 3 && v->units[u]; u++)
            unit_ok |= strcmp(v->units[u], r->unit) == 0;
        check(unit_ok);
        check(isfinite(r->value));
        check(r->time_ms >= 0 && r->time_ms <= FUZZ_NOW + VG_READING_FUTURE_MS);
        /* Accepted readings pass the shared check again, unchanged. */
        char again[64];
        check(vg_reading_check(r, FUZZ_NOW, again, sizeof again) == VG_REJECT_NONE);
    }
    return 0;
}
