/* Unit tests for posture/report: every status follows from the evidence
 * (each rule driven from "in place" to "partial" or "gap"), every issue has
 * a remediation, live evidence lines, HTML and Markdown escaping of hostile
 * strings, JSON that parses back with every section, no patient identifier
 * anywhere, and the one-screen posture summary.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "posture/report.h"

#define NOW 1795946400000LL /* 2026-11-29T10:00:00Z */
#define HOUR 3600000LL
#define DAY 86400000LL
#define PATIENT_CANARY "PATIENT-CANARY-4711"

static struct vg_report_listener listeners[2];

/* Evidence of a gateway with every safeguard in place. */
static struct vg_report_evidence good(void)
{
    listeners[0] = (struct vg_report_listener){"mqtt", VG_TLS_MIN_1_3, 1};
    listeners[1] = (struct vg_report_listener){"api", VG_TLS_MIN_1_3, 0};
    return (struct vg_report_evidence){
        .generated_ms = NOW, .period_start_ms = NOW - 30 * DAY, .period_end_ms = NOW,
        .gateway = "gw-ward-3", .version = "0.1.0",
        .readings_total = 1204331, .readings_sealed = 1204331, .kek_place = VG_KEK_PLACE_TOKEN,
        .kek_protected = 1, .keys_protected = 1,
        .audit_chain = VG_EVIDENCE_PASSED, .audit_verified_ms = NOW - HOUR + 120000,
        .audit_records = 2311004, .audit_last_checkpoint_ms = NOW - HOUR + 60000,
        .audit_shipping = VG_SHIPPING_ON, .audit_reviews = 4,
        .accounts = 14, .people = 12, .services = 2, .admins = 2,
        .session_idle_s = 900, .session_lifetime_s = 43200,
        .breakglass_minutes = 60, .breakglass_grants = 1,
        .login_max_failures = 5, .failed_logins = 37, .lockouts = 2,
        .password_argon2id = 1, .password_min_length = 12, .common_passwords = 10000,
        .training_courses = 1, .training_people = 12, .training_current = 12,
        .devices = 1204,
        .listeners = listeners, .n_listeners = 2,
        .vuln_policy_published = 1, .advisories_imported = 30,
        .advisories_updated_ms = NOW - 2 * DAY,
        .behavior_rules = 6, .alarms_raised = 3,
        .binary_integrity = VG_EVIDENCE_PASSED,
        .last_backup_ms = NOW - DAY, .last_restore_test_ms = NOW - 100 * DAY,
        .patients_erased = 1, .readings_refused = 1520, .publishes_refused = 12,
        .fuzz_targets = 4, .fuzzing = VG_EVIDENCE_PASSED, .fuzz_run_ms = NOW - DAY};
}

static struct vg_report *assess(const struct vg_report_evidence *ev)
{
    static struct vg_report r;
    vg_report_assess(ev, &r);
    return &r;
}

static enum vg_report_status status_of(const struct vg_report_evidence *ev, const char *ref)
{
    const struct vg_report_item *it = vg_report_item(assess(ev), ref);
    if (!it)
        fail_msg("no item %s", ref);
    return it->status;
}

/* Invariants of any report: every item not in place says why and how to fix
 * it; an item in place has no issue; the counts add up. */
static void check_invariants(const struct vg_report *r)
{
    unsigned count[3] = {0};
    for (size_t i = 0; i < r->n_items; i++) {
        const struct vg_report_item *it = &r->items[i];
        count[it->status]++;
        assert_true(it->n_evidence > 0);
        assert_true(it->controls && it->controls[0]);
        if (it->status == VG_REPORT_IN_PLACE)
            assert_int_equal(it->n_issues, 0);
        else
            assert_true(it->n_issues > 0);
        enum vg_report_status worst = VG_REPORT_IN_PLACE;
        for (size_t j = 0; j < it->n_issues; j++) {
            assert_true(it->issues[j].what[0] && it->issues[j].fix[0]);
            if (it->issues[j].status > worst)
                worst = it->issues[j].status;
        }
        assert_int_equal(worst, it->status);
    }
    for (int s = 0; s < 3; s++)
        assert_int_equal(count[s], r->count[s]);
}

static void test_all_in_place(void **state)
{
    (void)state;
    struct vg_report_evidence ev = good();
    struct vg_report *r = assess(&ev);
    check_invariants(r);
    for (size_t i = 0; i < r->n_items; i++)
        if (r->items[i].status != VG_REPORT_IN_PLACE)
            fail_msg("%s is %s: %s", r->items[i].ref, vg_report_status_name(r->items[i].status),
                     r->items[i].issues[0].what);
    /* Every required item is there. */
    const char *refs[] = {"164.312(a)(1)", "164.312(a)(2)(i)", "164.312(a)(2)(ii)",
                          "164.312(a)(2)(iii)", "164.312(a)(2)(iv)", "164.312(b)",
                          "164.312(c)(1)", "164.312(c)(2)", "164.312(d)", "164.312(e)(1)",
                          "164.312(e)(2)(i)", "164.312(e)(2)(ii)", "164.308(a)(1)(ii)(D)",
                          "164.308(a)(5)(ii)(C)", "164.308(a)(5)(ii)(D)", "164.308(a)(5)(i)",
                          "5.1", "5.2", "5.3", "5.4", "5.5", "5.6", "5.7", "5.8", "5.9", "5.10",
                          "5.11", "5.12", "5.13"};
    assert_int_equal(r->n_items, sizeof refs / sizeof refs[0]);
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++)
        assert_non_null(vg_report_item(r, refs[i]));
    assert_int_equal(vg_report_item(r, "164.312(a)(2)(i)")->obligation, VG_OBL_REQUIRED);
    assert_int_equal(vg_report_item(r, "164.312(a)(2)(iii)")->obligation, VG_OBL_ADDRESSABLE);
    assert_int_equal(vg_report_item(r, "5.10")->obligation, VG_OBL_RECOMMENDED);
}

/* One evidence change per case, and the items it must move. */
struct change {
    int id;
    const char *what;
    const char *ref[6];
    enum vg_report_status want[6];
};

#define P VG_REPORT_PARTIAL
#define G VG_REPORT_GAP
#define OK VG_REPORT_IN_PLACE

static const struct change changes[] = {
    {1, "shared account", {"164.312(a)(2)(i)", "164.312(a)(1)"}, {G, G}},
    {2, "no accounts", {"164.312(a)(2)(i)", "164.312(a)(1)"}, {G, G}},
    {3, "shared device identity", {"164.312(a)(2)(i)", "164.312(d)", "164.312(a)(1)"}, {P, P, P}},
    {4, "break-glass disabled", {"164.312(a)(2)(ii)", "164.312(a)(1)"}, {G, G}},
    {5, "break-glass unreviewed", {"164.312(a)(2)(ii)", "164.312(a)(1)"}, {P, P}},
    {6, "no idle logoff", {"164.312(a)(2)(iii)", "164.312(a)(1)"}, {G, G}},
    {7, "idle 1801 s", {"164.312(a)(2)(iii)", "164.312(a)(1)"}, {P, P}},
    {8, "idle 1800 s", {"164.312(a)(2)(iii)"}, {OK}},
    {9, "lifetime over 12 h", {"164.312(a)(2)(iii)", "164.312(a)(1)"}, {P, P}},
    {10, "one reading unsealed",
     {"164.312(a)(2)(iv)", "164.312(c)(2)", "164.312(c)(1)", "5.8", "164.312(a)(1)"},
     {G, G, G, G, G}},
    {11, "KEK unknown", {"164.312(a)(2)(iv)", "5.4", "5.8", "164.312(a)(1)"}, {G, G, G, G}},
    {12, "KEK unprotected", {"164.312(a)(2)(iv)", "5.4", "5.8", "164.312(a)(1)"}, {P, P, P, P}},
    {13, "audit chain failed",
     {"164.312(b)", "164.312(c)(1)", "164.308(a)(1)(ii)(D)"}, {G, G, G}},
    {14, "audit chain never verified", {"164.312(b)", "164.312(c)(1)"}, {P, OK}},
    {15, "verification 8 days old", {"164.312(b)"}, {P}},
    {16, "no checkpoint", {"164.312(b)"}, {P}},
    {17, "shipping off", {"164.312(b)"}, {P}},
    {18, "shipping failing", {"164.312(b)"}, {P}},
    {19, "integrity failure", {"164.312(c)(2)", "164.312(c)(1)"}, {P, P}},
    {20, "nobody has MFA", {"164.312(d)"}, {G}},
    {21, "an admin without MFA", {"164.312(d)"}, {P}},
    {22, "a clinician without MFA", {"164.312(d)"}, {P}},
    {23, "weak device key", {"164.312(d)", "5.5"}, {P, P}},
    {24, "TLS 1.2 allowed",
     {"164.312(e)(2)(ii)", "164.312(e)(2)(i)", "164.312(e)(1)", "5.5"}, {P, OK, P, P}},
    {25, "TLS 1.0 allowed", {"164.312(e)(2)(ii)", "164.312(e)(2)(i)", "164.312(e)(1)", "5.5"},
     {G, P, G, G}},
    {26, "plaintext listener",
     {"164.312(e)(2)(i)", "164.312(e)(2)(ii)", "164.312(e)(1)", "5.5", "5.6", "5.8"},
     {G, G, G, G, G, G}},
    {27, "no listener evidence",
     {"164.312(e)(2)(i)", "164.312(e)(2)(ii)", "164.312(e)(1)", "5.5", "5.6"}, {G, G, G, G, G}},
    {28, "no audit review", {"164.308(a)(1)(ii)(D)"}, {P}},
    {29, "critical finding open", {"164.308(a)(1)(ii)(D)"}, {P}},
    {30, "no lockout", {"164.308(a)(5)(ii)(C)", "5.1"}, {G, P}},
    {31, "not Argon2id", {"164.308(a)(5)(ii)(D)"}, {G}},
    {32, "7-character passwords", {"164.308(a)(5)(ii)(D)"}, {G}},
    {33, "no common-password list", {"164.308(a)(5)(ii)(D)"}, {P}},
    {34, "no training programme", {"164.308(a)(5)(i)"}, {G}},
    {35, "training overdue", {"164.308(a)(5)(i)"}, {P}},
    {36, "nobody trained", {"164.308(a)(5)(i)"}, {G}},
    {37, "default credential", {"5.1"}, {G}},
    {38, "no disclosure policy", {"5.2"}, {G}},
    {39, "no advisories", {"5.2"}, {P}},
    {40, "advisories 31 days old", {"5.2"}, {P}},
    {41, "severe advisory", {"5.3"}, {G}},
    {42, "medium advisory", {"5.3"}, {P}},
    {43, "advisory to review", {"5.3"}, {P}},
    {44, "keys readable", {"5.4"}, {P}},
    {45, "undocumented port", {"5.6"}, {G}},
    {46, "binary tampered", {"5.7"}, {G}},
    {47, "binary unchecked", {"5.7"}, {P}},
    {48, "never backed up", {"5.9"}, {G}},
    {49, "backup 8 days old", {"5.9"}, {P}},
    {50, "restore never tested", {"5.9"}, {P}},
    {51, "no behaviour rules", {"5.10"}, {G}},
    {52, "erasure pending", {"5.11"}, {P}},
    {53, "insecure override", {"5.12"}, {P}},
    {54, "fuzzing crashed", {"5.13"}, {G}},
    {55, "fuzzing not run", {"5.13"}, {P}},
};

static struct vg_report_listener changed_listeners[2];

static void apply(int id, struct vg_report_evidence *ev)
{
    memcpy(changed_listeners, listeners, sizeof listeners);
    switch (id) {
    case 1: ev->accounts_shared = 1; break;
    case 2: ev->accounts = 0; break;
    case 3: ev->devices_shared_identity = 2; break;
    case 4: ev->breakglass_minutes = 0; break;
    case 5: ev->breakglass_unreviewed = 1; break;
    case 6: ev->session_idle_s = 0; break;
    case 7: ev->session_idle_s = 1801; break;
    case 8: ev->session_idle_s = 1800; break;
    case 9: ev->session_lifetime_s = 43201; break;
    case 10: ev->readings_sealed--; break;
    case 11: ev->kek_place = VG_KEK_PLACE_UNKNOWN; break;
    case 12: ev->kek_protected = 0; break;
    case 13: ev->audit_chain = VG_EVIDENCE_FAILED; break;
    case 14: ev->audit_chain = VG_EVIDENCE_NOT_RUN; break;
    case 15: ev->audit_verified_ms = NOW - 8 * DAY; break;
    case 16: ev->audit_last_checkpoint_ms = 0; break;
    case 17: ev->audit_shipping = VG_SHIPPING_OFF; break;
    case 18: ev->audit_shipping = VG_SHIPPING_FAILING; break;
    case 19: ev->integrity_failures = 1; break;
    case 20: ev->people_without_mfa = ev->people; ev->admins_without_mfa = ev->admins; break;
    case 21: ev->people_without_mfa = 1; ev->admins_without_mfa = 1; break;
    case 22: ev->people_without_mfa = 1; break;
    case 23: ev->devices_weak_key = 1; break;
    case 24: changed_listeners[0].min_tls = VG_TLS_MIN_1_2; break;
    case 25: changed_listeners[1].min_tls = VG_TLS_MIN_1_0; break;
    case 26: changed_listeners[1].min_tls = VG_TLS_MIN_NONE; break;
    case 27: ev->n_listeners = 0; break;
    case 28: ev->audit_reviews = 0; break;
    case 29: ev->findings_open[VG_SEV_CRITICAL] = 1; break;
    case 30: ev->login_max_failures = 0; break;
    case 31: ev->password_argon2id = 0; break;
    case 32: ev->password_min_length = 7; break;
    case 33: ev->common_passwords = 0; break;
    case 34: ev->training_courses = 0; break;
    case 35: ev->training_overdue = 1; ev->training_current = 11; break;
    case 36: ev->training_current = 0; ev->training_overdue = 12; break;
    case 37: ev->default_credentials = 1; break;
    case 38: ev->vuln_policy_published = 0; break;
    case 39: ev->advisories_imported = 0; break;
    case 40: ev->advisories_updated_ms = NOW - 31 * DAY; break;
    case 41: ev->devices_advisory_severe = 1; ev->devices_advisory = 1; break;
    case 42: ev->devices_advisory = 1; break;
    case 43: ev->devices_advisory_review = 1; break;
    case 44: ev->keys_protected = 0; break;
    case 45: ev->ports_undocumented = 1; break;
    case 46: ev->binary_integrity = VG_EVIDENCE_FAILED; break;
    case 47: ev->binary_integrity = VG_EVIDENCE_NOT_RUN; break;
    case 48: ev->last_backup_ms = 0; break;
    case 49: ev->last_backup_ms = NOW - 8 * DAY; break;
    case 50: ev->last_restore_test_ms = 0; break;
    case 51: ev->behavior_rules = 0; break;
    case 52: ev->erasures_pending = 1; break;
    case 53: ev->insecure_overrides = 1; break;
    case 54: ev->fuzzing = VG_EVIDENCE_FAILED; break;
    case 55: ev->fuzzing = VG_EVIDENCE_NOT_RUN; break;
    default: fail_msg("no change %d", id);
    }
    if (ev->n_listeners)
        ev->listeners = changed_listeners;
}

/* Each change moves exactly the items it names, to exactly the status it
 * names; undoing it brings them back to "in place". */
static void test_status_follows_evidence(void **state)
{
    (void)state;
    int wrong = 0;
    for (size_t c = 0; c < sizeof changes / sizeof changes[0]; c++) {
        const struct change *ch = &changes[c];
        struct vg_report_evidence ev = good();
        for (size_t k = 0; k < 6 && ch->ref[k]; k++)
            assert_int_equal(status_of(&ev, ch->ref[k]), VG_REPORT_IN_PLACE);
        apply(ch->id, &ev);
        struct vg_report *r = assess(&ev);
        check_invariants(r);
        for (size_t i = 0; i < r->n_items; i++) {
            const struct vg_report_item *it = &r->items[i];
            enum vg_report_status want = VG_REPORT_IN_PLACE;
            for (size_t k = 0; k < 6 && ch->ref[k]; k++)
                if (!strcmp(ch->ref[k], it->ref))
                    want = ch->want[k];
            if (it->status != want) {
                print_error("%s: %s is %s, expected %s\n", ch->what, it->ref,
                            vg_report_status_name(it->status), vg_report_status_name(want));
                wrong++;
            }
        }
    }
    assert_int_equal(wrong, 0);
}

static char *render(const struct vg_report_evidence *ev, enum vg_report_format fmt)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(vg_report_render(ev, fmt, f), 0);
    fclose(f);
    return buf;
}

static void test_live_evidence_lines(void **state)
{
    (void)state;
    struct vg_report_evidence ev = good();
    char *md = render(&ev, VG_REPORT_MD);
    assert_non_null(strstr(md, "encryption at rest: 100% of 1,204,331 readings sealed"));
    assert_non_null(strstr(md, "key-encryption key in a PKCS\\#11 token"));
    assert_non_null(strstr(md, "audit controls: chain verified at 2026-11-29 09:02 UTC, "
                               "2,311,004 records, last signed checkpoint 2026-11-29 09:01 UTC"));
    assert_non_null(strstr(md, "unique user identification: 14 accounts (12 people, 2 "
                               "services), 0 shared"));
    assert_non_null(strstr(md, "automatic logoff after 15 idle minutes"));
    assert_non_null(strstr(md, "listener mqtt: TLS 1.3 only, client certificate required"));
    /* A summary table at the top, before the first section. */
    char *table = strstr(md, "| Reference | Safeguard | Obligation | Status |");
    char *section = strstr(md, "\n## ");
    assert_true(table && section && table < section);
    assert_non_null(strstr(md, "**29 in place, 0 partial, 0 gap.**"));
    free(md);

    /* One reading short of all: never rounded up to 100%. */
    ev.readings_sealed--;
    md = render(&ev, VG_REPORT_MD);
    assert_non_null(strstr(md, "encryption at rest: 99.99% of 1,204,331 readings sealed"));
    assert_non_null(strstr(md, "- **gap:** 1 reading is stored without encryption."));
    assert_non_null(strstr(md, "| 164.312(a)(2)(iv) | Encryption and decryption | addressable | "
                               "**GAP** |"));
    free(md);

    ev = good();
    ev.audit_chain = VG_EVIDENCE_FAILED;
    ev.audit_failure = "record 1,002: hash mismatch";
    md = render(&ev, VG_REPORT_MD);
    assert_non_null(strstr(md, "chain verification FAILED at 2026-11-29 09:02 UTC (record "
                               "1,002: hash mismatch)"));
    free(md);
}

static const char hostile[] = "<script>alert(\"x\")</script>&'`|*_[a](javascript:b)";

static void test_html_escapes_hostile_strings(void **state)
{
    (void)state;
    struct vg_report_evidence ev = good();
    ev.gateway = hostile;
    ev.version = "1.0\"><b>bold</b>";
    ev.audit_chain = VG_EVIDENCE_FAILED;
    ev.audit_failure = "<img src=x onerror=alert(1)>";
    struct vg_report_listener l[1] = {{"<i>mqtt</i>", VG_TLS_MIN_1_3, 1}};
    ev.listeners = l;
    ev.n_listeners = 1;
    char *html = render(&ev, VG_REPORT_HTML);
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "<img"));
    assert_null(strstr(html, "<b>"));
    assert_null(strstr(html, "<i>"));
    assert_non_null(strstr(html, "1.0&quot;&gt;&lt;b&gt;bold&lt;/b&gt;"));
    assert_non_null(strstr(html, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"));
    assert_non_null(strstr(html, "&lt;img src=x onerror=alert(1)&gt;"));
    assert_non_null(strstr(html, "listener &lt;i&gt;mqtt&lt;/i&gt;"));
    /* Only vigil's own commands become code. */
    assert_non_null(strstr(html, "<code>vigil audit verify DIR</code>"));
    /* Balanced: as many <code> as </code>. */
    size_t open = 0, close = 0;
    for (const char *p = html; (p = strstr(p, "<code>")); p++)
        open++;
    for (const char *p = html; (p = strstr(p, "</code>")); p++)
        close++;
    assert_int_equal(open, close);
    free(html);
}

static void test_markdown_escapes_hostile_strings(void **state)
{
    (void)state;
    struct vg_report_evidence ev = good();
    ev.gateway = hostile;
    struct vg_report_listener l[1] = {{"a|b*c_<x>", VG_TLS_MIN_1_3, 1}};
    ev.listeners = l;
    ev.n_listeners = 1;
    char *md = render(&ev, VG_REPORT_MD);
    assert_null(strstr(md, "<script>"));
    assert_non_null(strstr(md, "\\<script\\>"));
    assert_non_null(strstr(md, "\\[a\\](javascript:b)"));
    assert_non_null(strstr(md, "listener a\\|b\\*c\\_\\<x\\>"));
    /* The backtick of the hostile string cannot open a code span. */
    assert_null(strstr(md, "&'`"));
    free(md);
}

static void test_json_parses_back_with_every_section(void **state)
{
    (void)state;
    struct vg_report_evidence ev = good();
    ev.gateway = hostile;
    ev.version = "0.1.0\xff\xfe"; /* invalid UTF-8 must not break the document */
    ev.findings_open[VG_SEV_HIGH] = 3;
    ev.breakglass_minutes = 0;
    char *text = render(&ev, VG_REPORT_JSON);
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (!root)
        fail_msg("JSON does not parse: %s at line %d", jerr.text, jerr.line);
    assert_string_equal(json_string_value(json_object_get(root, "gateway")),
                        "<script>alert(\"x\")</script>&''|*_[a](javascript:b)");
    assert_string_equal(json_string_value(json_object_get(root, "version")), "0.1.0??");
    assert_string_equal(json_string_value(json_object_get(root, "generated")),
                        "2026-11-29T10:00:00.000Z");
    json_t *sum = json_object_get(root, "summary");
    assert_int_equal(json_integer_value(json_object_get(sum, "gap")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "findings_open"),
                                                        "high")),
                     3);
    json_t *sections = json_object_get(root, "sections");
    assert_int_equal(json_array_size(sections), 3);
    const char *ids[] = {"hipaa-164.312", "hipaa-164.308", "etsi-en-303-645"};
    size_t counts[] = {12, 4, 13}, gaps = 0;
    for (size_t s = 0; s < 3; s++) {
        json_t *sec = json_array_get(sections, s);
        assert_string_equal(json_string_value(json_object_get(sec, "id")), ids[s]);
        json_t *items = json_object_get(sec, "items");
        assert_int_equal(json_array_size(items), counts[s]);
        for (size_t i = 0; i < json_array_size(items); i++) {
            json_t *it = json_array_get(items, i);
            const char *keys[] = {"ref", "title", "obligation", "status", "controls"};
            for (size_t k = 0; k < 5; k++)
                assert_true(json_is_string(json_object_get(it, keys[k])));
            assert_true(json_array_size(json_object_get(it, "evidence")) > 0);
            json_t *g = json_object_get(it, "gaps");
            assert_true(json_is_array(g));
            if (!strcmp(json_string_value(json_object_get(it, "status")), "gap")) {
                gaps++;
                assert_true(json_array_size(g) > 0);
                json_t *first = json_array_get(g, 0);
                assert_true(strlen(json_string_value(json_object_get(first, "remediation"))) > 0);
            }
        }
    }
    assert_int_equal(gaps, 2); /* (a)(2)(ii) and (a)(1) */
    json_decref(root);
    free(text);
}

static void test_unknown_format_fails(void **state)
{
    (void)state;
    struct vg_report_evidence ev = good();
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(vg_report_render(&ev, (enum vg_report_format)9, f), -1);
    fclose(f);
    free(buf);
}

/* ---- the summary, and patient data end to end ---- */

struct scene {
    struct vg_posture_device dev[4];
    struct vg_posture_snapshot snap;
    struct vg_findings f;
    struct vg_behavior_alarm alarms[7];
};

static void scene(struct scene *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < 4; i++)
        s->dev[i] = (struct vg_posture_device){
            .device_class = "bedside-monitor", .location = "ward 3", .patient = PATIENT_CANARY,
            .status = VG_DEVICE_ACTIVE, .cert_not_before_ms = NOW - DAY,
            .cert_not_after_ms = NOW + 300 * DAY, .key_type = VG_KEY_ED25519,
            .enrolled_ms = NOW - DAY, .last_seen_ms = NOW, .concurrent_sessions = 1};
    s->dev[0].id = "mon-1";
    s->dev[0].concurrent_sessions = 2; /* critical: 75 */
    s->dev[1].id = "mon-2";
    s->dev[1].location = NULL; /* low: 5 */
    s->dev[2].id = "pump-9";
    s->dev[2].status = VG_DEVICE_QUARANTINED;
    s->dev[3].id = "old-4";
    s->dev[3].status = VG_DEVICE_REVOKED;
    s->snap = (struct vg_posture_snapshot){.now_ms = NOW, .devices = s->dev, .n_devices = 4,
                                           .config.audit_shipping = VG_SHIPPING_ON,
                                           .policy.cert_expiry_warn_days = 30};
    char err[200];
    if (vg_findings_audit(&s->snap, &s->f, err, sizeof err) != 0)
        fail_msg("%s", err);
    for (int i = 0; i < 7; i++) {
        s->alarms[i] = (struct vg_behavior_alarm){.metric = VG_METRIC_MESSAGES, .cmp = VG_CMP_GT,
                                                  .mitigation = VG_MITIGATE_QUARANTINE,
                                                  .value = 5230, .threshold = 1000,
                                                  .since_ms = NOW - 60000};
        snprintf(s->alarms[i].device, sizeof s->alarms[i].device, "mon-%d", i + 1);
        snprintf(s->alarms[i].rule, sizeof s->alarms[i].rule, "flood");
    }
}

static char *summary(const struct scene *s, size_t n_alarms)
{
    struct vg_posture_summary_input in = {.now_ms = NOW, .devices = s->dev, .n_devices = 4,
                                          .findings = &s->f, .alarms = s->alarms,
                                          .n_alarms = n_alarms};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(vg_report_posture_summary(&in, f), 0);
    fclose(f);
    return buf;
}

static void test_posture_summary(void **state)
{
    (void)state;
    struct scene s;
    scene(&s);
    char *out = summary(&s, 1);
    assert_non_null(strstr(out, "Devices       4: 2 active, 1 quarantined, 1 revoked"));
    assert_non_null(strstr(out, "by risk     critical 1 | high 0 | medium 0 | low 1 | none 1"));
    assert_non_null(strstr(out, "riskiest    mon-1 75 (critical), mon-2 5 (low)"));
    assert_non_null(strstr(out, "2 open: critical 1 | high 0 | medium 0 | low 1 | info 0 "
                                "(0 suppressed)"));
    assert_non_null(strstr(out, "critical  Device mon-1: identity used by two devices at once"));
    assert_non_null(strstr(out, "Alarms        1 active"));
    assert_non_null(strstr(out, "mon-1: flood, messages 5,230 > 1,000, since 2026-11-29 09:59 "
                                "UTC (mitigation: quarantine)"));
    assert_non_null(strstr(out, "Quarantined   1: pump-9"));
    free(out);

    /* Many alarms still fit one screen; a hostile id is defused. */
    snprintf(s.alarms[0].device, sizeof s.alarms[0].device, "x\x1b[2Jy");
    out = summary(&s, 7);
    assert_non_null(strstr(out, "and 2 more"));
    assert_null(strchr(out, '\x1b'));
    size_t lines = 0;
    for (const char *p = out; *p; p++)
        lines += *p == '\n';
    assert_true(lines <= 24);
    free(out);
    vg_findings_free(&s.f);
}

/* From a snapshot full of patient ids to every output: none of it leaks.
 * The evidence struct has no field that could carry patient data; what the
 * caller derives from findings is counts. */
static void test_no_patient_data_anywhere(void **state)
{
    (void)state;
    struct scene s;
    scene(&s);
    char *out = summary(&s, 3);
    assert_null(strstr(out, PATIENT_CANARY));
    free(out);

    struct vg_report_evidence ev = good();
    unsigned sup = 0;
    vg_findings_count(&s.f, ev.findings_open, &sup);
    ev.findings_suppressed = sup;
    ev.devices_shared_identity = 1;
    enum vg_report_format fmts[3] = {VG_REPORT_MD, VG_REPORT_HTML, VG_REPORT_JSON};
    for (int i = 0; i < 3; i++) {
        char *text = render(&ev, fmts[i]);
        assert_null(strstr(text, PATIENT_CANARY));
        assert_null(strstr(text, "ward 3"));
        free(text);
    }
    vg_findings_free(&s.f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_in_place),
        cmocka_unit_test(test_status_follows_evidence),
        cmocka_unit_test(test_live_evidence_lines),
        cmocka_unit_test(test_html_escapes_hostile_strings),
        cmocka_unit_test(test_markdown_escapes_hostile_strings),
        cmocka_unit_test(test_json_parses_back_with_every_section),
        cmocka_unit_test(test_unknown_format_fails),
        cmocka_unit_test(test_posture_summary),
        cmocka_unit_test(test_no_patient_data_anywhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
