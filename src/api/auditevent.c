#include "api/auditevent.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "core/util.h"

#define SYS_DCM "http://dicom.nema.org/resources/ontology/DCM"
#define SYS_ACTION "urn:vigil:audit-action"
#define SYS_PRINCIPAL "urn:vigil:principal"
#define SYS_PATIENT "urn:vigil:patient"
#define SYS_DEVICE "urn:vigil:device"
#define SYS_TARGET "urn:vigil:target"
#define SYS_RESTFUL "http://hl7.org/fhir/restful-interaction"
#define SYS_SOURCE_TYPE "http://terminology.hl7.org/CodeSystem/security-source-type"
#define SYS_ROLE_TYPE "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
#define SYS_ENTITY_TYPE "http://terminology.hl7.org/CodeSystem/audit-entity-type"
#define SYS_OBJECT_ROLE "http://terminology.hl7.org/CodeSystem/object-role"

/* 9999-12-31T23:59:59.999Z: the last instant FHIR's four-digit year holds. */
#define LAST_INSTANT_MS INT64_C(253402300799999)

/* ---- DICOM codes (PS3.16 CID 400, 401, 402) ---- */

struct dcm {
    const char *code, *display;
};

static const struct dcm dcm_codes[] = {
    /* CID 400 Audit Event ID: AuditEvent.type */
    {"110100", "Application Activity"},
    {"110101", "Audit Log Used"},
    {"110106", "Export"},
    {"110110", "Patient Record"},
    {"110112", "Query"},
    {"110113", "Security Alert"},
    {"110114", "User Authentication"},
    /* CID 401 Audit Event Type Code: AuditEvent.subtype */
    {"110120", "Application Start"},
    {"110121", "Application Stop"},
    {"110122", "Login"},
    {"110123", "Logout"},
    {"110126", "Node Authentication"},
    {"110127", "Emergency Override Started"},
    {"110129", "Security Configuration"},
    {"110136", "Security Roles Changed"},
    {"110137", "User Security Attributes Changed"},
    /* CID 402 Audit Active Participant Role ID: AuditEvent.agent.type */
    {"110150", "Application"},
};

static const char *dcm_display(const char *code)
{
    for (size_t i = 0; i < sizeof dcm_codes / sizeof dcm_codes[0]; i++)
        if (!strcmp(dcm_codes[i].code, code))
            return dcm_codes[i].display;
    return NULL; /* not reached: every code used below is in the table */
}

/* ---- action mapping (the tables in auditevent.h) ---- */

/* A sub-type that is not a DICOM code. */
#define SUB_SEARCH "search-type" /* restful-interaction */

struct action_map {
    const char *name; /* exact action, or a prefix ending in '.' */
    const char *type; /* CID 400 */
    const char *sub;  /* CID 401 code, SUB_SEARCH, or NULL */
    char act;         /* C R U D E; 0 = from the last word */
};

static const struct action_map exact_map[] = {
    {"vigil.init", "110100", NULL, 'C'}, /* creates CA, KEK, database */
    {"vigil.start", "110100", "110120", 'E'},
    {"vigil.stop", "110100", "110121", 'E'},
    {"api.auth", "110114", "110122", 'E'},
    {"user.login", "110114", "110122", 'E'},
    {"user.logout", "110114", "110123", 'E'},
    /* An expired session is a logout the user did not ask for. */
    {"session.expire", "110114", "110123", 'E'},
    /* What is audited is a failed certificate (node) authentication. */
    {"tls.handshake", "110114", "110126", 'E'},
    {"mqtt.connect", "110114", "110122", 'E'},
    {"mqtt.disconnect", "110114", "110123", 'E'},
    /* The older session of a device is ended by a newer one. */
    {"mqtt.takeover", "110114", "110123", 'E'},
    /* A PUBLISH is an attempt to add readings to a patient's record. */
    {"mqtt.publish", "110110", NULL, 'C'},
    /* A SUBSCRIBE is a standing query for messages on a topic filter. */
    {"mqtt.subscribe", "110112", NULL, 'E'},
    {"patient.create", "110110", NULL, 'C'},
    {"patient.erase", "110110", NULL, 'D'},
    /* Decides whose record a device's readings go into. */
    {"device.assign", "110110", NULL, 'U'},
    {"readings.store", "110110", NULL, 'C'},
    {"readings.refuse", "110110", NULL, 'C'}, /* a refused create */
    /* GET /fhir/Observation?patient=: a FHIR search. */
    {"obs.read", "110110", SUB_SEARCH, 'R'},
    {"obs.subscribe", "110110", NULL, 'R'},
    {"obs.breakglass", "110110", NULL, 'R'},
    {"obs.export", "110106", NULL, 'R'},
    {"principal.create", "110113", "110137", 'C'},
    {"user.create", "110113", "110137", 'C'},
    /* A device is a principal: its certificate is its credential. */
    {"device.enroll", "110113", "110137", 'C'},
    {"user.disable", "110113", "110137", 'U'},
    {"device.quarantine", "110113", "110137", 'U'},
    {"device.revoke", "110113", "110137", 'U'},
    {"user.role", "110113", "110136", 'U'},
    /* Care-team membership decides which patients a user may read. */
    {"careteam.assign", "110113", "110136", 'U'},
    {"breakglass.open", "110113", "110127", 'E'},
    {"keys.rotate", "110113", "110129", 'E'},
    /* Suppressing a finding changes what the gateway alerts on. */
    {"finding.suppress", "110113", "110129", 'U'},
    {"alert.raised", "110113", NULL, 'E'},
    {"audit.checkpoint", "110101", NULL, 'E'},
    {"audit.ship", "110101", NULL, 'R'}, /* records read and sent out */
};

static const struct action_map prefix_map[] = {
    {"obs.", "110110", NULL, 0},         {"readings.", "110110", NULL, 0},
    {"patient.", "110110", NULL, 0},     {"api.", "110114", NULL, 0},
    {"session.", "110114", NULL, 0},     {"mqtt.", "110114", NULL, 0},
    {"tls.", "110114", "110126", 0},     {"user.", "110113", "110137", 0},
    {"principal.", "110113", "110137", 0}, {"careteam.", "110113", "110136", 0},
    {"keys.", "110113", "110129", 0},    {"device.", "110113", NULL, 0},
    {"alert.", "110113", NULL, 0},       {"finding.", "110113", NULL, 0},
    {"breakglass.", "110113", NULL, 0},  {"audit.", "110101", NULL, 0},
    {"vigil.", "110100", NULL, 0},
};

static const struct action_map default_map = {"", "110100", NULL, 0};

struct verb {
    const char *word;
    char act;
};

static const struct verb verbs[] = {
    {"create", 'C'},   {"add", 'C'},        {"enroll", 'C'},   {"store", 'C'},
    {"import", 'C'},   {"register", 'C'},   {"issue", 'C'},    {"read", 'R'},
    {"list", 'R'},     {"get", 'R'},        {"search", 'R'},   {"query", 'R'},
    {"export", 'R'},   {"view", 'R'},       {"subscribe", 'R'}, {"update", 'U'},
    {"assign", 'U'},   {"unassign", 'U'},   {"set", 'U'},      {"role", 'U'},
    {"disable", 'U'},  {"enable", 'U'},     {"suppress", 'U'}, {"quarantine", 'U'},
    {"revoke", 'U'},   {"rename", 'U'},     {"change", 'U'},   {"modify", 'U'},
    {"delete", 'D'},   {"erase", 'D'},      {"remove", 'D'},   {"purge", 'D'},
    {"destroy", 'D'},
};

static const struct action_map *map_action(const char *action)
{
    for (size_t i = 0; i < sizeof exact_map / sizeof exact_map[0]; i++)
        if (!strcmp(exact_map[i].name, action))
            return &exact_map[i];
    for (size_t i = 0; i < sizeof prefix_map / sizeof prefix_map[0]; i++)
        if (!strncmp(prefix_map[i].name, action, strlen(prefix_map[i].name)))
            return &prefix_map[i];
    return &default_map;
}

static char action_letter(const struct action_map *m, const char *action)
{
    if (m->act)
        return m->act;
    const char *dot = strrchr(action, '.');
    const char *word = dot ? dot + 1 : action;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (!strcmp(verbs[i].word, word))
            return verbs[i].act;
    return 'E';
}

/* ---- strings ---- */

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or 0 if there is none. */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2, cp = c & 0x1Fu, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, cp = c & 0x0Fu, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, cp = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0u) != 0x80u)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* FHIR string (R4 datatypes): UTF-8, "SHALL NOT contain Unicode character
 * points below 32, except for u0009 (horizontal tab), u0010 (carriage
 * return) and u0013 (line feed)", and at least one character. */
static int fhir_char_ok(unsigned char c)
{
    return c >= 0x20 || c == '\t' || c == '\r' || c == '\n';
}

/* A JSON string of s, n bytes, with each invalid byte or forbidden control
 * character replaced by U+FFFD. NULL when out of memory. The scratch buffer
 * comes from jansson's allocator, so a test that fails allocations reaches
 * it too. */
static json_t *fhir_stringn(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(u + i, n - i);
        if (!k || !fhir_char_ok(u[i]))
            break;
        i += k;
    }
    if (i == n)
        return json_stringn(s, n);

    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    json_malloc_t alloc;
    json_free_t dealloc;
    json_get_alloc_funcs(&alloc, &dealloc);
    char *buf = alloc(3 * n + 1); /* each byte grows to at most 3 */
    if (!buf)
        return NULL;
    size_t o = 0;
    for (i = 0; i < n;) {
        size_t k = utf8_seq(u + i, n - i);
        if (!k || !fhir_char_ok(u[i])) {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += 1;
        } else {
            memcpy(buf + o, s + i, k);
            o += k;
            i += k;
        }
    }
    json_t *j = json_stringn(buf, o);
    dealloc(buf);
    return j;
}

static json_t *fhir_string(const char *s)
{
    return fhir_stringn(s, strlen(s));
}

/* A FHIR 'code' ("^[^\s]+(\s[^\s]+)*$"): the action, cut at 127 bytes,
 * with every byte that is not printable ASCII replaced by '_'. Actions are
 * vigil's own short dotted names, so this only guards against a record
 * that is not. */
static json_t *fhir_code(const char *s)
{
    char buf[128];
    size_t n = 0;
    for (; s[n] && n < sizeof buf - 1; n++) {
        unsigned char c = (unsigned char)s[n];
        buf[n] = (c > 0x20 && c < 0x7F) ? (char)c : '_';
    }
    if (n == 0)
        return json_string("unknown");
    return json_stringn(buf, n);
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

/* Does 's' start with 'prefix'? Then *rest is what follows it. */
static int has_prefix(const char *s, const char *prefix, const char **rest)
{
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n))
        return 0;
    *rest = s + n;
    return 1;
}

/* A FHIR id: "[A-Za-z0-9\-\.]{1,64}". vigil's ids also allow '_'. */
static int fhir_id_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.'))
            return 0;
    }
    return n >= 1 && n <= 64;
}

/* ---- building blocks ---- */

static json_t *coding(const char *system, const char *code, const char *display)
{
    return json_pack("{s:s, s:s, s:s*}", "system", system, "code", code, "display", display);
}

static json_t *dcm_coding(const char *code)
{
    return coding(SYS_DCM, code, dcm_display(code));
}

static json_t *identifier(const char *system, const char *value)
{
    return json_pack("{s:s, s:o}", "system", system, "value", fhir_string(value));
}

/* The host part of an "IP:port" source: "127.0.0.1:5555" -> "127.0.0.1",
 * "[::1]:5" -> "::1", "[::1]" -> "::1"; an address with two or more colons
 * and no brackets is an IPv6 address without a port and is taken whole, as
 * is a name without a colon. Returns 0 with the host in [*host, *host +
 * *len), or -1 when there is no host (empty, ":5", "[]:5", "[::1").
 * Exposed to the tests through the rendered network.address. */
static int source_host(const char *src, const char **host, size_t *len)
{
    if (src[0] == '[') {
        const char *end = strchr(src, ']');
        if (!end || end == src + 1 || (end[1] != '\0' && end[1] != ':'))
            return -1;
        *host = src + 1;
        *len = (size_t)(end - src - 1);
        return 0;
    }
    const char *colon = strchr(src, ':');
    if (colon && strchr(colon + 1, ':'))
        colon = NULL; /* bare IPv6 */
    *host = src;
    *len = colon ? (size_t)(colon - src) : strlen(src);
    return *len ? 0 : -1;
}

/* network.type "2" (IP address) for an IP literal, else "1" (machine name).
 * An IPv6 zone ("fe80::1%eth0") does not stop it being an IP address. */
static const char *network_type(const char *host, size_t len)
{
    char buf[INET6_ADDRSTRLEN + 1];
    const char *pct = memchr(host, '%', len);
    if (pct)
        len = (size_t)(pct - host);
    if (len == 0 || len >= sizeof buf)
        return "1";
    memcpy(buf, host, len);
    buf[len] = '\0';
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1)
        return "2";
    return "1";
}

static json_t *agent(const char *actor, const char *source)
{
    const char *rest;
    int user = has_prefix(actor, "user:", &rest), device = has_prefix(actor, "device:", &rest);
    int sys = !strcmp(actor, "system");
    json_t *a = json_object();
    if (!a)
        return NULL;
    /* set_new steals its value, also when it fails (and fails on NULL) */
    if (user && json_object_set_new(a, "type",
                                    json_pack("{s:[o]}", "coding",
                                              coding(SYS_ROLE_TYPE, "humanuser", "human user"))))
        goto fail;
    if ((device || sys) &&
        json_object_set_new(a, "type", json_pack("{s:[o]}", "coding", dcm_coding("110150"))))
        goto fail;
    /* R4 Identifier.value is a non-empty string; requestor is 1..1. */
    if (json_object_set_new(a, "who",
                            json_pack("{s:o}", "identifier",
                                      identifier(SYS_PRINCIPAL, actor[0] ? actor : "unknown"))) ||
        json_object_set_new(a, "requestor", json_boolean(!sys)))
        goto fail;

    const char *host;
    size_t len;
    if (source[0] && source_host(source, &host, &len) == 0 &&
        json_object_set_new(a, "network",
                            json_pack("{s:o, s:s}", "address", fhir_stringn(host, len), "type",
                                      network_type(host, len))))
        goto fail;
    return a;
fail:
    json_decref(a);
    return NULL;
}

static int add_detail(json_t *details, const char *type, const char *value)
{
    if (!value[0])
        return 0;
    return json_array_append_new(details, json_pack("{s:s, s:o}", "type", type, "valueString",
                                                    fhir_string(value)));
}

/* entity[0]: what the record touched, with the record's own fields that
 * have no other home in the resource. */
static json_t *entity(const struct vg_audit_record *r, const char *seq, int success)
{
    const char *target = nz(r->target), *rest;
    json_t *e = json_object(), *details = json_array();
    if (!e || !details)
        goto fail;

    if (target[0]) {
        json_t *what;
        const char *type, *type_display, *role = NULL, *role_display = NULL;
        if (has_prefix(target, "patient:", &rest) && rest[0]) {
            if (fhir_id_valid(rest)) {
                char ref[80]; /* "Patient/" + at most 64 */
                snprintf(ref, sizeof ref, "Patient/%s", rest);
                what = json_pack("{s:s}", "reference", ref);
            } else {
                what = json_pack("{s:o}", "identifier", identifier(SYS_PATIENT, rest));
            }
            type = "1", type_display = "Person";
            role = "1", role_display = "Patient";
        } else if (has_prefix(target, "device:", &rest) && rest[0]) {
            what = json_pack("{s:o}", "identifier", identifier(SYS_DEVICE, rest));
            type = "2", type_display = "System Object";
        } else if (has_prefix(target, "user:", &rest) && rest[0]) {
            what = json_pack("{s:o}", "identifier", identifier(SYS_PRINCIPAL, target));
            type = "1", type_display = "Person";
            role = "11", role_display = "Security User Entity";
        } else {
            what = json_pack("{s:o}", "identifier", identifier(SYS_TARGET, target));
            type = "4", type_display = "Other";
        }
        /* set_new steals its value, also when it fails (and fails on NULL) */
        if (json_object_set_new(e, "what", what) ||
            json_object_set_new(e, "type", coding(SYS_ENTITY_TYPE, type, type_display)) ||
            (role && json_object_set_new(e, "role", coding(SYS_OBJECT_ROLE, role, role_display))))
            goto fail;
    }

    if (add_detail(details, "seq", seq) ||
        (!success && add_detail(details, "outcome", nz(r->outcome))) ||
        (success && add_detail(details, "detail", nz(r->detail))) ||
        add_detail(details, "source", nz(r->source)))
        goto fail;
    json_t *d = details;
    details = NULL;
    if (json_object_set_new(e, "detail", d))
        goto fail;
    return e;
fail:
    json_decref(details);
    json_decref(e);
    return NULL;
}

static const char *outcome_code(const char *outcome)
{
    if (!strcmp(outcome, "success"))
        return "0";
    if (!strcmp(outcome, "refused") || !strcmp(outcome, "denied"))
        return "4";
    return "8";
}

static json_t *subtypes(const char *action, const struct action_map *m)
{
    json_t *list = json_pack("[{s:s, s:o}]", "system", SYS_ACTION, "code", fhir_code(action));
    if (!list || !m->sub)
        return list;
    json_t *c = strcmp(m->sub, SUB_SEARCH) ? dcm_coding(m->sub)
                                           : coding(SYS_RESTFUL, SUB_SEARCH, "search type");
    if (json_array_append_new(list, c)) {
        json_decref(list);
        return NULL;
    }
    return list;
}

/* ---- the two entry points ---- */

json_t *vg_fhir_audit_event(const struct vg_audit_record *r, const char *observer)
{
    if (!r || r->ts_ms < 0 || r->ts_ms > LAST_INSTANT_MS)
        return NULL;
    const char *action = nz(r->action), *outcome = nz(r->outcome), *detail = nz(r->detail);
    const struct action_map *m = map_action(action);
    int success = !strcmp(outcome, "success");
    char seq[24], recorded[32], act[2] = {action_letter(m, action), '\0'};
    snprintf(seq, sizeof seq, "%" PRId64, r->seq);
    vg_time_format(r->ts_ms, recorded);
    if (!observer || !observer[0])
        observer = "vigil";

    json_t *ev = json_pack("{s:s, s:s, s:o, s:o, s:s, s:s, s:s}", "resourceType", "AuditEvent",
                           "id", seq, "type", dcm_coding(m->type), "subtype",
                           subtypes(action, m), "action", act, "recorded", recorded, "outcome",
                           outcome_code(outcome));
    if (!ev)
        return NULL;
    /* set_new steals its value, also when it fails (and fails on NULL) */
    if ((!success && detail[0] && json_object_set_new(ev, "outcomeDesc", fhir_string(detail))) ||
        json_object_set_new(ev, "agent",
                            json_pack("[o]", agent(nz(r->actor), nz(r->source)))) ||
        json_object_set_new(ev, "source",
                            json_pack("{s:{s:o}, s:[o]}", "observer", "display",
                                      fhir_string(observer), "type",
                                      coding(SYS_SOURCE_TYPE, "4", "Application Server"))) ||
        json_object_set_new(ev, "entity", json_pack("[o]", entity(r, seq, success)))) {
        json_decref(ev);
        return NULL;
    }
    return ev;
}

/* "urn:uuid:" + a random (version 4) UUID, RFC 4122 section 4.4. */
static int random_urn(char out[46])
{
    uint8_t b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        return -1;
    b[6] = (uint8_t)((b[6] & 0x0Fu) | 0x40u);
    b[8] = (uint8_t)((b[8] & 0x3Fu) | 0x80u);
    snprintf(out, 46,
             "urn:uuid:%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
    return 0;
}

json_t *vg_fhir_audit_bundle(json_t *events, const char *base_url)
{
    json_t *entries = NULL, *bundle = NULL;
    if (!json_is_array(events))
        goto out;
    size_t base_len = base_url ? strlen(base_url) : 0;
    while (base_len && base_url[base_len - 1] == '/')
        base_len--;
    entries = json_array();
    if (!entries)
        goto out;

    size_t i;
    json_t *res;
    json_array_foreach(events, i, res)
    {
        const char *id = json_string_value(json_object_get(res, "id"));
        json_t *full;
        if (base_len && base_len <= INT_MAX && id) {
            full = json_sprintf("%.*s/fhir/AuditEvent/%s", (int)base_len, base_url, id);
        } else {
            char urn[46];
            if (random_urn(urn))
                goto out;
            full = json_string(urn);
        }
        if (json_array_append_new(entries, json_pack("{s:o, s:O}", "fullUrl", full, "resource",
                                                     res)))
            goto out;
    }
    bundle = json_pack("{s:s, s:s}", "resourceType", "Bundle", "type", "collection");
    if (!bundle)
        goto out;
    /* FHIR JSON: "arrays SHALL NOT be empty", so no events means no entry. */
    if (json_array_size(entries)) {
        json_t *list = entries;
        entries = NULL;
        if (json_object_set_new(bundle, "entry", list)) {
            json_decref(bundle);
            bundle = NULL;
        }
    }
out:
    json_decref(entries);
    json_decref(events);
    return bundle;
}
