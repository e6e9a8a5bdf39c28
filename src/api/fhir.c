#include "api/fhir.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core/util.h"
#include "ingest/reading.h"

void vg_fhir_json_string(struct evbuffer *b, const char *s)
{
    evbuffer_add(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\')
            evbuffer_add_printf(b, "\\%c", c);
        else if (c < 0x20)
            evbuffer_add_printf(b, "\\u%04x", c);
        else
            evbuffer_add(b, p, 1);
    }
    evbuffer_add(b, "\"", 1);
}

/* An entry is assembled in one stack buffer with memcpy and added to the
 * evbuffer once: printf-family calls were most of the time of a large
 * search. Every variable part is bounded (ids 64, codes and units 15, the
 * base URL 160, displays from the vital table), so 2 KiB always fits. */
struct out {
    char *p, *end;
};

static void lit(struct out *o, const char *s, size_t n)
{
    if ((size_t)(o->end - o->p) >= n) {
        memcpy(o->p, s, n);
        o->p += n;
    } else {
        o->p = o->end; /* truncated: detected by the caller */
    }
}

#define LIT(o, s) lit(o, s, sizeof(s) - 1)

static void str(struct out *o, const char *s)
{
    LIT(o, "\"");
    for (; *s && o->p < o->end; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            lit(o, esc, 2);
        } else if (c < 0x20) {
            char esc[7];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            lit(o, esc, 6);
        } else {
            *o->p++ = (char)c;
        }
    }
    LIT(o, "\"");
}

static void raw(struct out *o, const char *s) { lit(o, s, strlen(s)); }

void vg_fhir_observation_write(struct evbuffer *b, const char *base_url, const struct vg_obs *obs,
                               int first)
{
    const struct vg_vital *v = vg_vital_lookup(obs->reading.code, strlen(obs->reading.code));
    const char *display = v ? v->display : obs->reading.code;
    const char *category = v ? v->category : "vital-signs";
    int vital = !strcmp(category, "vital-signs");
    char eff[32], issued[32], value[40];
    vg_time_format(obs->reading.time_ms, eff);
    vg_time_format(obs->received_ms, issued);
    snprintf(value, sizeof value, "%.15g", obs->reading.value);

    char buf[2048];
    struct out o = {buf, buf + sizeof buf};
    if (!first)
        LIT(&o, ",");
    LIT(&o, "{\"fullUrl\":\"");
    raw(&o, base_url);
    LIT(&o, "/fhir/Observation/");
    raw(&o, obs->id);
    LIT(&o, "\",\"resource\":{\"resourceType\":\"Observation\",\"id\":\"");
    raw(&o, obs->id);
    LIT(&o, "\",");
    if (vital)
        LIT(&o, "\"meta\":{\"profile\":[\"http://hl7.org/fhir/StructureDefinition/vitalsigns\"]},");
    LIT(&o, "\"status\":\"final\",\"category\":[{\"coding\":[{\"system\":"
            "\"http://terminology.hl7.org/CodeSystem/observation-category\",\"code\":\"");
    raw(&o, category);
    LIT(&o, "\",\"display\":\"");
    raw(&o, vital ? "Vital Signs" : "Laboratory");
    LIT(&o, "\"}]}],\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":");
    str(&o, obs->reading.code);
    LIT(&o, ",\"display\":");
    str(&o, display);
    LIT(&o, "}],\"text\":");
    str(&o, display);
    LIT(&o, "},\"subject\":{\"reference\":\"Patient/");
    raw(&o, obs->patient);
    LIT(&o, "\"},\"device\":{\"reference\":\"Device/");
    raw(&o, obs->device);
    LIT(&o, "\"},\"effectiveDateTime\":\"");
    raw(&o, eff);
    LIT(&o, "\",\"issued\":\"");
    raw(&o, issued);
    LIT(&o, "\",\"valueQuantity\":{\"value\":");
    raw(&o, value);
    LIT(&o, ",\"unit\":");
    str(&o, obs->reading.unit);
    LIT(&o, ",\"system\":\"http://unitsofmeasure.org\",\"code\":");
    str(&o, obs->reading.unit);
    LIT(&o, "}},\"search\":{\"mode\":\"match\"}}");
    if (o.p < o.end)
        evbuffer_add(b, buf, (size_t)(o.p - buf));
    sodium_memzero(buf, (size_t)(o.p - buf));
}
