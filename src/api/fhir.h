/* api/fhir — FHIR R4 rendering of stored readings.
 *
 * Written straight into an evbuffer as JSON text: a search can return a
 * day of 1 Hz data (86,400 Observations), which a tree of jansson objects
 * would make several times slower to build. Borrows its inputs.
 */
#ifndef VG_API_FHIR_H
#define VG_API_FHIR_H

#include <event2/buffer.h>

#include "store/store.h"

/* Appends one searchset entry {"fullUrl", "resource": Observation, "search"}
 * for 'o', preceded by a comma unless it is the first: a vital-signs
 * Observation (profile, category, LOINC code, subject, device,
 * effectiveDateTime, issued, valueQuantity with its UCUM code). */
void vg_fhir_observation_write(struct evbuffer *b, const char *base_url, const struct vg_obs *o,
                               int first);

/* Appends 's' as a JSON string literal (quoted, escaped). */
void vg_fhir_json_string(struct evbuffer *b, const char *s);

#endif
