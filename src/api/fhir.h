/* api/fhir — FHIR R4 rendering of stored readings (jansson).
 *
 * Returns new jansson references owned by the caller. Borrows its inputs.
 */
#ifndef VG_API_FHIR_H
#define VG_API_FHIR_H

#include <jansson.h>
#include <stddef.h>

#include "store/store.h"

/* A vital-signs Observation: category, LOINC code, subject, device,
 * effectiveDateTime, issued, valueQuantity with its UCUM code. */
json_t *vg_fhir_observation(const struct vg_obs *obs);

/* A searchset Bundle around 'entries' (an array of resources, reference
 * stolen). 'self_url' is the request's own URL; 'total' the match count. */
json_t *vg_fhir_searchset(json_t *entries, const char *base_url, size_t total,
                          const char *self_url);

#endif
