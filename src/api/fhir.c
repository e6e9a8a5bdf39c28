#include "api/fhir.h"

#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "ingest/reading.h"

json_t *vg_fhir_observation(const struct vg_obs *o)
{
    const struct vg_vital *v = vg_vital_lookup(o->reading.code, strlen(o->reading.code));
    const char *display = v ? v->display : o->reading.code;
    const char *category = v ? v->category : "vital-signs";
    char eff[32], issued[32], subject[VG_ID_MAX + 16], device[VG_ID_MAX + 16];
    vg_time_format(o->reading.time_ms, eff);
    vg_time_format(o->received_ms, issued);
    snprintf(subject, sizeof subject, "Patient/%s", o->patient);
    snprintf(device, sizeof device, "Device/%s", o->device);

    json_t *obs = json_pack(
        "{s:s, s:s, s:s, s:[{s:[{s:s, s:s, s:s}]}],"
        " s:{s:[{s:s, s:s, s:s}], s:s}, s:{s:s}, s:{s:s}, s:s, s:s,"
        " s:{s:f, s:s, s:s, s:s}}",
        "resourceType", "Observation", "id", o->id, "status", "final",
        "category", "coding", "system", "http://terminology.hl7.org/CodeSystem/observation-category",
        "code", category, "display", strcmp(category, "vital-signs") ? "Laboratory" : "Vital Signs",
        "code", "coding", "system", "http://loinc.org", "code", o->reading.code, "display", display,
        "text", display,
        "subject", "reference", subject,
        "device", "reference", device,
        "effectiveDateTime", eff, "issued", issued,
        "valueQuantity", "value", o->reading.value, "unit", o->reading.unit,
        "system", "http://unitsofmeasure.org", "code", o->reading.unit);
    if (obs && !strcmp(category, "vital-signs"))
        json_object_set_new(obs, "meta",
                            json_pack("{s:[s]}", "profile",
                                      "http://hl7.org/fhir/StructureDefinition/vitalsigns"));
    return obs;
}

json_t *vg_fhir_searchset(json_t *entries, const char *base_url, size_t total,
                          const char *self_url)
{
    json_t *wrapped = json_array();
    size_t i;
    json_t *res;
    json_array_foreach(entries, i, res)
    {
        char full[512];
        snprintf(full, sizeof full, "%s/fhir/Observation/%s", base_url,
                 json_string_value(json_object_get(res, "id")));
        json_array_append_new(wrapped, json_pack("{s:s, s:O, s:{s:s}}", "fullUrl", full,
                                                 "resource", res, "search", "mode", "match"));
    }
    json_decref(entries);
    return json_pack("{s:s, s:s, s:I, s:[{s:s, s:s}], s:o}", "resourceType", "Bundle", "type",
                     "searchset", "total", (json_int_t)total, "link", "relation", "self", "url",
                     self_url, "entry", wrapped);
}
