/* Unit tests for api/auditevent: audit records as FHIR R4 AuditEvents.
 *
 * Checks the mapping of every action family (type, sub-type, action letter),
 * outcomes, agents and their network address, entities, 'recorded', string
 * clean-up, the Bundle, and that a failed allocation at any point returns
 * NULL without leaking. With VG_FHIR_OUT=DIR set, test_samples_write also
 * writes one AuditEvent per sample record and two Bundles into DIR, for
 * tests/integration/validate_fhir.py to check against the FHIR R4 schema.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/auditevent.h"

#define TS 1795946400250 /* 2026-11-29T10:00:00.250Z */

static json_t *render(const char *action, const char *actor, const char *target,
                      const char *outcome, const char *detail, const char *source)
{
    struct vg_audit_record r = {42, TS, actor, action, target, outcome, detail, source};
    return vg_fhir_audit_event(&r, "gw-test");
}

static const char *str_at(json_t *root, const char *path)
{
    json_t *j = json_object_get(root, path);
    return json_string_value(j);
}

/* The code of the first coding in subtype[] with this system, or NULL. */
static const char *subtype_code(json_t *ev, const char *system)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(ev, "subtype"), i, c)
    {
        if (!strcmp(json_string_value(json_object_get(c, "system")), system))
            return json_string_value(json_object_get(c, "code"));
    }
    return NULL;
}

/* The valueString of entity[0].detail[type], or NULL. */
static const char *detail_of(json_t *ev, const char *type)
{
    json_t *e = json_array_get(json_object_get(ev, "entity"), 0);
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(e, "detail"), i, d)
    {
        if (!strcmp(json_string_value(json_object_get(d, "type")), type))
            return json_string_value(json_object_get(d, "valueString"));
    }
    return NULL;
}

static json_t *agent0(json_t *ev)
{
    return json_array_get(json_object_get(ev, "agent"), 0);
}

static json_t *entity0(json_t *ev)
{
    return json_array_get(json_object_get(ev, "entity"), 0);
}

/* ---- action families ---- */

struct family_case {
    const char *action, *type, *type_display, *dcm_sub, *act;
};

static const struct family_case families[] = {
    /* application activity */
    {"vigil.init", "110100", "Application Activity", NULL, "C"},
    {"vigil.start", "110100", "Application Activity", "110120", "E"},
    {"vigil.stop", "110100", "Application Activity", "110121", "E"},
    /* authentication and sessions */
    {"api.auth", "110114", "User Authentication", "110122", "E"},
    {"user.login", "110114", "User Authentication", "110122", "E"},
    {"user.logout", "110114", "User Authentication", "110123", "E"},
    {"session.expire", "110114", "User Authentication", "110123", "E"},
    {"tls.handshake", "110114", "User Authentication", "110126", "E"},
    {"mqtt.connect", "110114", "User Authentication", "110122", "E"},
    {"mqtt.disconnect", "110114", "User Authentication", "110123", "E"},
    {"mqtt.takeover", "110114", "User Authentication", "110123", "E"},
    /* patient data */
    {"mqtt.publish", "110110", "Patient Record", NULL, "C"},
    {"patient.create", "110110", "Patient Record", NULL, "C"},
    {"patient.erase", "110110", "Patient Record", NULL, "D"},
    {"device.assign", "110110", "Patient Record", NULL, "U"},
    {"readings.store", "110110", "Patient Record", NULL, "C"},
    {"readings.refuse", "110110", "Patient Record", NULL, "C"},
    {"obs.read", "110110", "Patient Record", NULL, "R"},
    {"obs.subscribe", "110110", "Patient Record", NULL, "R"},
    {"obs.breakglass", "110110", "Patient Record", NULL, "R"},
    {"obs.export", "110106", "Export", NULL, "R"},
    {"mqtt.subscribe", "110112", "Query", NULL, "E"},
    /* security administration and alerts */
    {"principal.create", "110113", "Security Alert", "110137", "C"},
    {"user.create", "110113", "Security Alert", "110137", "C"},
    {"device.enroll", "110113", "Security Alert", "110137", "C"},
    {"user.disable", "110113", "Security Alert", "110137", "U"},
    {"device.quarantine", "110113", "Security Alert", "110137", "U"},
    {"device.revoke", "110113", "Security Alert", "110137", "U"},
    {"user.role", "110113", "Security Alert", "110136", "U"},
    {"careteam.assign", "110113", "Security Alert", "110136", "U"},
    {"breakglass.open", "110113", "Security Alert", "110127", "E"},
    {"keys.rotate", "110113", "Security Alert", "110129", "E"},
    {"finding.suppress", "110113", "Security Alert", "110129", "U"},
    {"alert.raised", "110113", "Security Alert", NULL, "E"},
    /* the audit log itself */
    {"audit.checkpoint", "110101", "Audit Log Used", NULL, "E"},
    {"audit.ship", "110101", "Audit Log Used", NULL, "R"},
    /* unknown actions: type by prefix, letter by the last word */
    {"obs.delete", "110110", "Patient Record", NULL, "D"},
    {"patient.update", "110110", "Patient Record", NULL, "U"},
    {"readings.list", "110110", "Patient Record", NULL, "R"},
    {"careteam.remove", "110113", "Security Alert", "110136", "D"},
    {"user.password", "110113", "Security Alert", "110137", "E"},
    {"principal.disable", "110113", "Security Alert", "110137", "U"},
    {"keys.create", "110113", "Security Alert", "110129", "C"},
    {"device.delete", "110113", "Security Alert", NULL, "D"},
    {"alert.cleared", "110113", "Security Alert", NULL, "E"},
    {"breakglass.close", "110113", "Security Alert", NULL, "E"},
    {"finding.raise", "110113", "Security Alert", NULL, "E"},
    {"tls.renegotiate", "110114", "User Authentication", "110126", "E"},
    {"session.start", "110114", "User Authentication", NULL, "E"},
    {"mqtt.ping", "110114", "User Authentication", NULL, "E"},
    {"api.request", "110114", "User Authentication", NULL, "E"},
    {"audit.read", "110101", "Audit Log Used", NULL, "R"},
    {"vigil.reload", "110100", "Application Activity", NULL, "E"},
    {"widget.create", "110100", "Application Activity", NULL, "C"},
    {"noprefix", "110100", "Application Activity", NULL, "E"},
    /* a prefix must match up to its dot */
    {"observe.read", "110100", "Application Activity", NULL, "R"},
};

static void test_action_families(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        const struct family_case *c = &families[i];
        json_t *ev = render(c->action, "user:admin", "", "success", "", "");
        if (!ev)
            fail_msg("%s: no resource", c->action);
        json_t *type = json_object_get(ev, "type");
        assert_string_equal(str_at(type, "system"),
                            "http://dicom.nema.org/resources/ontology/DCM");
        if (strcmp(str_at(type, "code"), c->type) ||
            strcmp(str_at(type, "display"), c->type_display))
            fail_msg("%s: type %s %s, expected %s %s", c->action, str_at(type, "code"),
                     str_at(type, "display"), c->type, c->type_display);
        if (strcmp(str_at(ev, "action"), c->act))
            fail_msg("%s: action %s, expected %s", c->action, str_at(ev, "action"), c->act);
        /* subtype[0] is always vigil's own action name */
        json_t *sub0 = json_array_get(json_object_get(ev, "subtype"), 0);
        assert_string_equal(str_at(sub0, "system"), "urn:vigil:audit-action");
        assert_string_equal(str_at(sub0, "code"), c->action);
        const char *dcm = subtype_code(ev, "http://dicom.nema.org/resources/ontology/DCM");
        if ((dcm == NULL) != (c->dcm_sub == NULL) || (dcm && strcmp(dcm, c->dcm_sub)))
            fail_msg("%s: DICOM sub-type %s, expected %s", c->action, dcm ? dcm : "none",
                     c->dcm_sub ? c->dcm_sub : "none");
        json_decref(ev);
    }
}

static void test_subtype_displays(void **state)
{
    (void)state;
    json_t *ev = render("user.role", "user:admin", "user:alice", "success", "", "");
    json_t *sub1 = json_array_get(json_object_get(ev, "subtype"), 1);
    assert_string_equal(str_at(sub1, "code"), "110136");
    assert_string_equal(str_at(sub1, "display"), "Security Roles Changed");
    json_decref(ev);

    ev = render("obs.read", "user:admin", "patient:P1", "success", "", "");
    assert_int_equal(json_array_size(json_object_get(ev, "subtype")), 2);
    assert_string_equal(subtype_code(ev, "http://hl7.org/fhir/restful-interaction"),
                        "search-type");
    json_decref(ev);

    ev = render("vigil.start", "system", "", "success", "", "");
    sub1 = json_array_get(json_object_get(ev, "subtype"), 1);
    assert_string_equal(str_at(sub1, "display"), "Application Start");
    json_decref(ev);
}

/* ---- outcomes ---- */

static void test_outcomes(void **state)
{
    (void)state;
    struct {
        const char *outcome, *code;
    } cases[] = {{"success", "0"}, {"refused", "4"}, {"denied", "4"},
                 {"failure", "8"}, {"exploded", "8"}, {"", "8"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *ev = render("obs.read", "user:admin", "patient:P1", cases[i].outcome,
                            "why it went so", "");
        assert_non_null(ev);
        assert_string_equal(str_at(ev, "outcome"), cases[i].code);
        if (!strcmp(cases[i].outcome, "success")) {
            assert_null(json_object_get(ev, "outcomeDesc"));
            assert_string_equal(detail_of(ev, "detail"), "why it went so");
            assert_null(detail_of(ev, "outcome"));
        } else {
            assert_string_equal(str_at(ev, "outcomeDesc"), "why it went so");
            assert_null(detail_of(ev, "detail"));
            if (cases[i].outcome[0])
                assert_string_equal(detail_of(ev, "outcome"), cases[i].outcome);
            else
                assert_null(detail_of(ev, "outcome")); /* FHIR strings are never empty */
        }
        json_decref(ev);
    }
    /* an empty detail gives no outcomeDesc: FHIR strings are never empty */
    json_t *ev = render("api.auth", "peer", "", "refused", "", "127.0.0.1:1");
    assert_string_equal(str_at(ev, "outcome"), "4");
    assert_null(json_object_get(ev, "outcomeDesc"));
    json_decref(ev);
    ev = render("vigil.start", "system", "", "success", "", "");
    assert_null(detail_of(ev, "detail"));
    json_decref(ev);
}

/* ---- agents ---- */

struct net_case {
    const char *source, *address, *type; /* address NULL = no network */
};

static void test_agent_network(void **state)
{
    (void)state;
    static const struct net_case cases[] = {
        {"127.0.0.1:5555", "127.0.0.1", "2"},
        {"[::1]:5", "::1", "2"},
        {"", NULL, NULL},
        {"[::1]", "::1", "2"},
        {"::1", "::1", "2"}, /* bare IPv6 without a port */
        {"[2001:db8::7]:8883", "2001:db8::7", "2"},
        {"[fe80::1%eth0]:9", "fe80::1%eth0", "2"},
        {"10.0.0.1", "10.0.0.1", "2"},
        {"gw.example:80", "gw.example", "1"}, /* a name, not an IP literal */
        {":5", NULL, NULL},
        {"[]:5", NULL, NULL},
        {"[::1", NULL, NULL},
        {"[::1]x", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *ev = render("mqtt.connect", "device:dev1", "device:dev1", "success", "",
                            cases[i].source);
        assert_non_null(ev);
        json_t *net = json_object_get(agent0(ev), "network");
        if (!cases[i].address) {
            if (net)
                fail_msg("'%s': network %s, expected none", cases[i].source,
                         str_at(net, "address"));
        } else {
            if (!net)
                fail_msg("'%s': no network", cases[i].source);
            if (strcmp(str_at(net, "address"), cases[i].address) ||
                strcmp(str_at(net, "type"), cases[i].type))
                fail_msg("'%s': %s type %s, expected %s type %s", cases[i].source,
                         str_at(net, "address"), str_at(net, "type"), cases[i].address,
                         cases[i].type);
        }
        /* the whole source, port and all, stays with the entity */
        if (cases[i].source[0])
            assert_string_equal(detail_of(ev, "source"), cases[i].source);
        else
            assert_null(detail_of(ev, "source"));
        json_decref(ev);
    }
}

static void test_agent_who_type_requestor(void **state)
{
    (void)state;
    struct {
        const char *actor, *type_code; /* NULL = no type */
        int requestor;
    } cases[] = {{"user:admin", "humanuser", 1},
                 {"device:dev1", "110150", 1},
                 {"system", "110150", 0},
                 {"peer", NULL, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *ev = render("api.auth", cases[i].actor, "", "success", "", "");
        json_t *agents = json_object_get(ev, "agent");
        assert_int_equal(json_array_size(agents), 1);
        json_t *a = agent0(ev);
        json_t *id = json_object_get(json_object_get(a, "who"), "identifier");
        assert_string_equal(str_at(id, "system"), "urn:vigil:principal");
        assert_string_equal(str_at(id, "value"), cases[i].actor);
        assert_true(json_is_boolean(json_object_get(a, "requestor")));
        assert_int_equal(json_is_true(json_object_get(a, "requestor")), cases[i].requestor);
        json_t *coding = json_array_get(json_object_get(json_object_get(a, "type"), "coding"), 0);
        if (cases[i].type_code)
            assert_string_equal(str_at(coding, "code"), cases[i].type_code);
        else
            assert_null(json_object_get(a, "type"));
        json_decref(ev);
    }
    /* an empty actor still gives a valid (non-empty) identifier */
    json_t *ev = render("api.auth", "", "", "refused", "x", "");
    json_t *id = json_object_get(json_object_get(agent0(ev), "who"), "identifier");
    assert_string_equal(str_at(id, "value"), "unknown");
    json_decref(ev);
}

/* ---- entities ---- */

static void test_entity(void **state)
{
    (void)state;
    json_t *ev = render("obs.read", "user:admin", "patient:P1", "success", "", "");
    json_t *e = entity0(ev);
    assert_int_equal(json_array_size(json_object_get(ev, "entity")), 1);
    assert_string_equal(str_at(json_object_get(e, "what"), "reference"), "Patient/P1");
    assert_string_equal(str_at(json_object_get(e, "type"), "code"), "1");
    assert_string_equal(str_at(json_object_get(e, "role"), "code"), "1");
    assert_string_equal(str_at(json_object_get(e, "role"), "display"), "Patient");
    assert_string_equal(detail_of(ev, "seq"), "42");
    json_decref(ev);

    /* '_' is a valid vigil id but not a FHIR id: no literal reference */
    ev = render("obs.read", "user:admin", "patient:P_1", "success", "", "");
    json_t *id = json_object_get(json_object_get(entity0(ev), "what"), "identifier");
    assert_null(json_object_get(json_object_get(entity0(ev), "what"), "reference"));
    assert_string_equal(str_at(id, "system"), "urn:vigil:patient");
    assert_string_equal(str_at(id, "value"), "P_1");
    json_decref(ev);

    ev = render("device.enroll", "user:admin", "device:dev1", "success", "", "");
    e = entity0(ev);
    id = json_object_get(json_object_get(e, "what"), "identifier");
    assert_string_equal(str_at(id, "system"), "urn:vigil:device");
    assert_string_equal(str_at(id, "value"), "dev1");
    assert_string_equal(str_at(json_object_get(e, "type"), "code"), "2");
    assert_null(json_object_get(e, "role"));
    json_decref(ev);

    ev = render("user.role", "user:admin", "user:alice", "success", "", "");
    e = entity0(ev);
    id = json_object_get(json_object_get(e, "what"), "identifier");
    assert_string_equal(str_at(id, "system"), "urn:vigil:principal");
    assert_string_equal(str_at(id, "value"), "user:alice");
    assert_string_equal(str_at(json_object_get(e, "role"), "code"), "11");
    json_decref(ev);

    /* no target: the entity carries only the record's details */
    ev = render("vigil.start", "system", "", "success", "", "");
    e = entity0(ev);
    assert_null(json_object_get(e, "what"));
    assert_null(json_object_get(e, "type"));
    assert_int_equal(json_array_size(json_object_get(e, "detail")), 1);
    assert_string_equal(detail_of(ev, "seq"), "42");
    json_decref(ev);

    /* an unknown kind of target, and a kind with no id */
    const char *others[] = {"topic:vigil/v1/d/x/obs", "patient:"};
    for (size_t i = 0; i < 2; i++) {
        ev = render("mqtt.publish", "device:dev1", others[i], "refused", "r", "");
        e = entity0(ev);
        id = json_object_get(json_object_get(e, "what"), "identifier");
        assert_string_equal(str_at(id, "system"), "urn:vigil:target");
        assert_string_equal(str_at(id, "value"), others[i]);
        assert_string_equal(str_at(json_object_get(e, "type"), "code"), "4");
        json_decref(ev);
    }
}

/* ---- recorded, id, source ---- */

/* The R4 schema's pattern for 'instant', as a POSIX ERE. */
static const char instant_re[] =
    "^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-"
    "1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?(Z|(\\+|-)((0[0-9]|1[0-3]):[0-"
    "5][0-9]|14:00))$";

static void test_recorded(void **state)
{
    (void)state;
    regex_t re;
    assert_int_equal(regcomp(&re, instant_re, REG_EXTENDED | REG_NOSUB), 0);
    struct {
        int64_t ms;
        const char *want; /* NULL = refused */
    } cases[] = {{TS, "2026-11-29T10:00:00.250Z"},
                 {0, "1970-01-01T00:00:00.000Z"},
                 {1, "1970-01-01T00:00:00.001Z"},
                 {253402300799999, "9999-12-31T23:59:59.999Z"},
                 {253402300800000, NULL},
                 {-1, NULL},
                 {INT64_MIN, NULL},
                 {INT64_MAX, NULL}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct vg_audit_record r = {7, cases[i].ms, "system", "vigil.start", "", "success", "", ""};
        json_t *ev = vg_fhir_audit_event(&r, "gw");
        if (!cases[i].want) {
            assert_null(ev);
            continue;
        }
        assert_non_null(ev);
        const char *rec = str_at(ev, "recorded");
        assert_string_equal(rec, cases[i].want);
        assert_int_equal(regexec(&re, rec, 0, NULL, 0), 0);
        json_decref(ev);
    }
    regfree(&re);
}

static void test_id_source_shape(void **state)
{
    (void)state;
    struct vg_audit_record r = {-3, TS, "system", "vigil.stop", "", "success", "signal", ""};
    json_t *ev = vg_fhir_audit_event(&r, "icu-gw-1");
    assert_string_equal(str_at(ev, "resourceType"), "AuditEvent");
    assert_string_equal(str_at(ev, "id"), "-3");
    json_t *src = json_object_get(ev, "source");
    assert_string_equal(str_at(json_object_get(src, "observer"), "display"), "icu-gw-1");
    json_t *t = json_array_get(json_object_get(src, "type"), 0);
    assert_string_equal(str_at(t, "system"),
                        "http://terminology.hl7.org/CodeSystem/security-source-type");
    assert_string_equal(str_at(t, "code"), "4");
    assert_string_equal(str_at(t, "display"), "Application Server");
    json_decref(ev);

    r.seq = INT64_MAX;
    ev = vg_fhir_audit_event(&r, NULL); /* no observer: "vigil" */
    assert_string_equal(str_at(ev, "id"), "9223372036854775807");
    assert_string_equal(detail_of(ev, "seq"), "9223372036854775807");
    src = json_object_get(ev, "source");
    assert_string_equal(str_at(json_object_get(src, "observer"), "display"), "vigil");
    json_decref(ev);
    ev = vg_fhir_audit_event(&r, "");
    src = json_object_get(ev, "source");
    assert_string_equal(str_at(json_object_get(src, "observer"), "display"), "vigil");
    json_decref(ev);

    assert_null(vg_fhir_audit_event(NULL, "gw"));
}

/* ---- strings ---- */

static void test_strings_cleaned(void **state)
{
    (void)state;
    /* invalid UTF-8 (a lone continuation byte, an overlong '/', a surrogate,
     * a truncated sequence) and control characters become U+FFFD; valid
     * multi-byte text, TAB and LF stay */
#define R "\xEF\xBF\xBD" /* U+FFFD */
    json_t *ev = render("readings.refuse", "device:dev1", "patient:P1", "refused",
                        "a\x80"
                        "b\xC0\xAF"
                        "c\xED\xA0\x80"
                        "d\x01\x1B"
                        "e\tf\ng \xC3\xA9 \xF0\x9F\x98\x80 \xE2\x82",
                        "");
    assert_non_null(ev);
    assert_string_equal(str_at(ev, "outcomeDesc"),
                        "a" R "b" R R "c" R R R "d" R R "e\tf\ng \xC3\xA9 \xF0\x9F\x98\x80 " R R);
    json_decref(ev);

    /* valid UTF-8 with only a control character wrong is cleaned too */
    ev = render("api.auth", "peer", "", "refused", "tab\tok\x07" "bell\x7F", "");
    assert_string_equal(str_at(ev, "outcomeDesc"), "tab\tok" R "bell\x7F");
#undef R
    json_decref(ev);

    /* an action that is not a valid FHIR code is made one */
    ev = render("odd action\x01", "system", "", "success", "", "");
    assert_string_equal(str_at(json_array_get(json_object_get(ev, "subtype"), 0), "code"),
                        "odd_action_");
    json_decref(ev);
    ev = render("", "system", "", "success", "", "");
    assert_string_equal(str_at(json_array_get(json_object_get(ev, "subtype"), 0), "code"),
                        "unknown");
    json_decref(ev);

    /* NULL strings read as "" */
    struct vg_audit_record r = {1, TS, NULL, NULL, NULL, NULL, NULL, NULL};
    ev = vg_fhir_audit_event(&r, "gw");
    assert_non_null(ev);
    assert_string_equal(str_at(ev, "outcome"), "8");
    json_decref(ev);

    /* an observer with a bad byte is cleaned too */
    r = (struct vg_audit_record){1, TS, "system", "vigil.start", "", "success", "", ""};
    ev = vg_fhir_audit_event(&r, "gw\xFF");
    assert_string_equal(
        str_at(json_object_get(json_object_get(ev, "source"), "observer"), "display"),
        "gw\xEF\xBF\xBD");
    json_decref(ev);
}

/* ---- Bundle ---- */

static json_t *two_events(void)
{
    json_t *a = json_array();
    json_array_append_new(a, render("obs.read", "user:admin", "patient:P1", "success", "", ""));
    struct vg_audit_record r = {43, TS + 1, "system", "vigil.stop", "", "success", "signal", ""};
    json_array_append_new(a, vg_fhir_audit_event(&r, "gw-test"));
    return a;
}

static void test_bundle(void **state)
{
    (void)state;
    json_t *b = vg_fhir_audit_bundle(two_events(), "https://gw.example:8443/");
    assert_non_null(b);
    assert_string_equal(str_at(b, "resourceType"), "Bundle");
    assert_string_equal(str_at(b, "type"), "collection");
    assert_null(json_object_get(b, "total")); /* only for searchset and history */
    json_t *entries = json_object_get(b, "entry");
    assert_int_equal(json_array_size(entries), 2);
    json_t *e0 = json_array_get(entries, 0), *e1 = json_array_get(entries, 1);
    assert_string_equal(str_at(e0, "fullUrl"), "https://gw.example:8443/fhir/AuditEvent/42");
    assert_string_equal(str_at(e1, "fullUrl"), "https://gw.example:8443/fhir/AuditEvent/43");
    assert_string_equal(str_at(json_object_get(e0, "resource"), "id"), "42");
    assert_string_equal(str_at(json_object_get(e1, "resource"), "resourceType"), "AuditEvent");
    json_decref(b);

    /* no base URL: random urn:uuid (version 4), different for each entry */
    b = vg_fhir_audit_bundle(two_events(), NULL);
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                             "[0-9a-f]{12}$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    entries = json_object_get(b, "entry");
    const char *u0 = str_at(json_array_get(entries, 0), "fullUrl");
    const char *u1 = str_at(json_array_get(entries, 1), "fullUrl");
    assert_int_equal(regexec(&re, u0, 0, NULL, 0), 0);
    assert_int_equal(regexec(&re, u1, 0, NULL, 0), 0);
    assert_string_not_equal(u0, u1);
    regfree(&re);
    json_decref(b);

    b = vg_fhir_audit_bundle(two_events(), "");
    assert_int_equal(strncmp(str_at(json_array_get(json_object_get(b, "entry"), 0), "fullUrl"),
                             "urn:uuid:", 9),
                     0);
    json_decref(b);

    /* FHIR arrays are never empty: no events, no 'entry' */
    b = vg_fhir_audit_bundle(json_array(), "https://gw");
    assert_non_null(b);
    assert_null(json_object_get(b, "entry"));
    json_decref(b);

    /* not an array: NULL, and the reference is still taken (ASan: no leak) */
    assert_null(vg_fhir_audit_bundle(json_object(), "https://gw"));
    assert_null(vg_fhir_audit_bundle(NULL, "https://gw"));
}

/* ---- allocation failures ---- */

static long alloc_left; /* allocations allowed before failing; < 0 = all */
static long alloc_live; /* allocated and not yet freed */

static void *fail_malloc(size_t n)
{
    if (alloc_left == 0)
        return NULL;
    if (alloc_left > 0)
        alloc_left--;
    void *p = malloc(n);
    if (p)
        alloc_live++;
    return p;
}

static void fail_free(void *p)
{
    if (p)
        alloc_live--;
    free(p);
}

/* Fails the 1st, 2nd, ... allocation in turn (SQLite's and curl's OOM
 * loop): each run returns NULL or a complete resource and frees all it
 * allocated. */
static void test_alloc_failures(void **state)
{
    (void)state;
    json_set_alloc_funcs(fail_malloc, fail_free);
    int done = 0;
    long n = 0;
    for (; n < 10000 && !done; n++) {
        alloc_left = n;
        alloc_live = 0;
        json_t *ev = render("obs.read", "user:admin", "patient:P1", "denied",
                            "bad \x01 byte", "[::1]:5");
        json_t *events = json_array();
        if (ev && events && json_array_append(events, ev) == 0) {
            json_t *b = vg_fhir_audit_bundle(events, n % 2 ? NULL : "https://gw");
            events = NULL;
            if (b) {
                done = json_array_size(json_object_get(b, "entry")) == 1 &&
                       json_object_get(ev, "outcomeDesc") != NULL;
                json_decref(b);
            }
        }
        json_decref(events);
        json_decref(ev);
        if (alloc_live != 0) {
            json_set_alloc_funcs(malloc, free);
            fail_msg("failing allocation %ld leaked %ld blocks", n, alloc_live);
        }
    }
    json_set_alloc_funcs(malloc, free);
    assert_true(done);
    /* the loop really went through the allocations: one resource is more
     * than a hundred of them */
    assert_true(n > 100);
}

/* ---- samples for the schema check ---- */

static const struct vg_audit_record samples[] = {
    {1, 1795940000000, "system", "vigil.init", "", "success", "data directory created", ""},
    {2, 1795940000001, "system", "principal.create", "user:admin", "success", "role admin", ""},
    {3, 1795940005000, "system", "vigil.start", "", "success",
     "mqtt 127.0.0.1:8883, https 127.0.0.1:8443", ""},
    {4, 1795940010000, "peer", "tls.handshake", "", "refused",
     "peer did not return a certificate", "127.0.0.1:5555"},
    {5, 1795940011000, "peer", "api.auth", "", "refused", "unknown, expired or revoked token",
     "[::1]:51544"},
    {6, 1795940012000, "user:admin", "patient.create", "patient:P1", "success", "",
     "127.0.0.1:51000"},
    {7, 1795940013000, "user:admin", "device.enroll", "device:mon-7", "success",
     "certificate serial 5f1c0a", "127.0.0.1:51001"},
    {8, 1795940014000, "user:admin", "device.assign", "device:mon-7", "success",
     "assigned to patient:P1", "127.0.0.1:51002"},
    {9, 1795940020000, "device:mon-7", "mqtt.connect", "device:mon-7", "success",
     "TLSv1.3 TLS_AES_256_GCM_SHA384", "[2001:db8::7]:40001"},
    {10, 1795940020500, "device:mon-7", "mqtt.subscribe", "device:mon-7", "denied",
     "topic filter not allowed: #", "[2001:db8::7]:40001"},
    {11, 1795940021000, "device:mon-7", "mqtt.publish", "device:mon-7", "refused",
     "topic not allowed: vigil/v1/d/mon-8/obs", "[2001:db8::7]:40001"},
    {12, 1795940022000, "device:mon-7", "readings.store", "patient:P1", "success",
     "stored 3 readings from mon-7 for P1, effective 2026-11-29T08:13:40Z to "
     "2026-11-29T08:13:42Z",
     "[2001:db8::7]:40001"},
    {13, 1795940022001, "device:mon-7", "readings.refuse", "patient:P1", "refused",
     "1 refused: value out of range", "[2001:db8::7]:40001"},
    {14, 1795940030000, "user:admin", "obs.read", "patient:P1", "success",
     "GET /fhir/Observation?patient=P1: 3 results", "127.0.0.1:51003"},
    {15, 1795940031000, "user:admin", "obs.read", "patient:P9", "failure", "no such patient",
     "127.0.0.1:51004"},
    {16, 1795940040000, "device:mon-7", "mqtt.takeover", "device:mon-7", "success",
     "a newer connection took over", "[2001:db8::7]:40001"},
    {17, 1795940041000, "device:mon-7", "mqtt.disconnect", "device:mon-7", "success",
     "DISCONNECT from the device", "[2001:db8::7]:40002"},
    {18, 1795940050000, "user:admin", "user.role", "user:alice", "success", "role clinician",
     "127.0.0.1:51005"},
    {19, 1795940051000, "user:alice", "breakglass.open", "patient:P1", "success",
     "emergency: patient unresponsive", "127.0.0.1:51006"},
    {20, 1795940052000, "system", "alert.raised", "device:mon-7", "success",
     "device published 40 refused readings in 60 s", ""},
    {21, 1795940053000, "user:admin", "patient.erase", "patient:P_old", "success",
     "data key destroyed", "127.0.0.1:51007"},
    {22, 1795940060000, "system", "audit.checkpoint", "", "success", "checkpoint at seq 21", ""},
    {23, 1795940061000, "system", "audit.ship", "", "failure", "collector unreachable", ""},
    {24, 1795940070000, "system", "widget.frobnicate", "thing:x y", "exploded",
     "bad bytes \xFF\x01 here", "gw.example:80"},
    {25, 1795940080000, "system", "vigil.stop", "", "success", "signal", ""},
};

static int write_json(const char *dir, const char *name, json_t *j)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return json_dump_file(j, path, JSON_INDENT(2) | JSON_ENSURE_ASCII);
}

static void test_samples_write(void **state)
{
    (void)state;
    size_t n = sizeof samples / sizeof samples[0];
    assert_true(n >= 12);
    const char *dir = getenv("VG_FHIR_OUT");
    if (dir && dir[0] && mkdir(dir, 0755) != 0 && errno != EEXIST)
        fail_msg("cannot create %s: %s", dir, strerror(errno));

    json_t *all = json_array(), *all2 = json_array();
    assert_non_null(all);
    for (size_t i = 0; i < n; i++) {
        json_t *ev = vg_fhir_audit_event(&samples[i], "icu-gw-1");
        if (!ev)
            fail_msg("sample %zu (%s) did not render", i, samples[i].action);
        /* every element FHIR R4 requires (1..1 or 1..*) is there */
        assert_non_null(json_object_get(ev, "type"));
        assert_non_null(json_object_get(ev, "recorded"));
        assert_true(json_array_size(json_object_get(ev, "agent")) >= 1);
        assert_non_null(json_object_get(agent0(ev), "requestor"));
        assert_non_null(json_object_get(json_object_get(ev, "source"), "observer"));
        if (dir && dir[0]) {
            char name[96];
            snprintf(name, sizeof name, "AuditEvent-%02zu-%s.json", i + 1, samples[i].action);
            if (write_json(dir, name, ev))
                fail_msg("cannot write %s/%s", dir, name);
        }
        json_array_append(all2, ev);
        json_array_append_new(all, ev);
    }
    json_t *b = vg_fhir_audit_bundle(all, "https://icu-gw-1.example:8443");
    json_t *b2 = vg_fhir_audit_bundle(all2, NULL);
    assert_non_null(b);
    assert_non_null(b2);
    assert_int_equal(json_array_size(json_object_get(b, "entry")), n);
    if (dir && dir[0]) {
        if (write_json(dir, "Bundle-auditevents.json", b) ||
            write_json(dir, "Bundle-auditevents-urn.json", b2))
            fail_msg("cannot write the Bundles to %s", dir);
        print_message("wrote %zu AuditEvents and 2 Bundles to %s\n", n, dir);
    }
    json_decref(b);
    json_decref(b2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_action_families),
        cmocka_unit_test(test_subtype_displays),
        cmocka_unit_test(test_outcomes),
        cmocka_unit_test(test_agent_network),
        cmocka_unit_test(test_agent_who_type_requestor),
        cmocka_unit_test(test_entity),
        cmocka_unit_test(test_recorded),
        cmocka_unit_test(test_id_source_shape),
        cmocka_unit_test(test_strings_cleaned),
        cmocka_unit_test(test_bundle),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_samples_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
