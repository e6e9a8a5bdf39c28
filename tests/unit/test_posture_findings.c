/* Unit tests for posture/findings: a clean fleet has no finding; each field
 * pushed just past its limit gives exactly its finding (and just short of
 * it, none); severities, keys, suppressions, order, risk scores, refusals of
 * broken input, and no patient identifier in any text.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "posture/findings.h"

#define NOW 1795946400000LL /* 2026-11-29T10:00:00Z */
#define DAY 86400000LL
#define PATIENT_CANARY "PATIENT-CANARY-4711"

static const char *const courses[] = {"hipaa-basics"};
static const struct vg_posture_class_interval intervals[] = {{"bedside-monitor", 300}};
static const struct vg_posture_training alice_training[] = {{"hipaa-basics", NOW - 30 * DAY}};

struct fleet {
    struct vg_posture_device dev[4];
    struct vg_posture_account acct[3];
    struct vg_posture_listener lst[2];
    struct vg_posture_retention ret[2];
    struct vg_posture_advisory adv[8];
    struct vg_posture_suppression sup[4];
    struct vg_posture_snapshot s;
    struct vg_findings f;
};

static struct vg_posture_device good_device(const char *id, const char *fp)
{
    return (struct vg_posture_device){
        .id = id, .manufacturer = "Acme", .model = "M1", .serial = "SN1", .firmware = "2.1.0",
        .device_class = "bedside-monitor", .location = "ward-3 bed 4", .patient = PATIENT_CANARY,
        .status = VG_DEVICE_ACTIVE, .cert_not_before_ms = NOW - 100 * DAY,
        .cert_not_after_ms = NOW + 200 * DAY, .key_type = VG_KEY_EC, .key_curve = "P-256",
        .cert_fingerprint = fp, .enrolled_ms = NOW - 100 * DAY, .last_seen_ms = NOW - 60000,
        .concurrent_sessions = 1};
}

/* A fleet with nothing to report. */
static void clean_fleet(struct fleet *x)
{
    memset(x, 0, sizeof *x);
    x->dev[0] = good_device("mon-1", "aa01");
    x->dev[1] = good_device("mon-2", "aa02");
    x->acct[0] = (struct vg_posture_account){
        .id = "alice", .roles = "clinician", .mfa_enrolled = 1, .created_ms = NOW - 200 * DAY,
        .last_used_ms = NOW - DAY, .training = alice_training, .n_training = 1};
    x->acct[1] = x->acct[0];
    x->acct[1].id = "root";
    x->acct[1].roles = "admin biomed";
    x->acct[2] = (struct vg_posture_account){.id = "ehr", .is_service = 1,
                                             .roles = "integration",
                                             .created_ms = NOW - 200 * DAY,
                                             .last_used_ms = NOW - 60000};
    x->lst[0] = (struct vg_posture_listener){"mqtt", "127.0.0.1:8883", VG_TLS_MIN_1_3};
    x->lst[1] = (struct vg_posture_listener){"api", "127.0.0.1:8443", VG_TLS_MIN_1_3};
    x->ret[0] = (struct vg_posture_retention){"readings", 365};
    x->ret[1] = (struct vg_posture_retention){"audit", 2190};
    x->s = (struct vg_posture_snapshot){
        .now_ms = NOW, .devices = x->dev, .n_devices = 2, .accounts = x->acct, .n_accounts = 3,
        .config = {.listeners = x->lst, .n_listeners = 2, .audit_shipping = VG_SHIPPING_ON,
                   .retention = x->ret, .n_retention = 2},
        .advisories = x->adv, .suppressions = x->sup,
        .policy = {.cert_max_age_days = 365, .cert_expiry_warn_days = 30,
                   .intervals = intervals, .n_intervals = 1, .default_interval_s = 3600,
                   .account_unused_days = 90, .training_period_days = 365,
                   .required_courses = courses, .n_required_courses = 1,
                   .max_retention_days = 3650}};
}

static void audit(struct fleet *x)
{
    char err[200] = "";
    vg_findings_free(&x->f);
    if (vg_findings_audit(&x->s, &x->f, err, sizeof err) != 0)
        fail_msg("audit failed: %s", err);
}

/* Exactly these keys (in any order), each with the given severity. */
static void expect(struct fleet *x, size_t n, ...)
{
    audit(x);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        const char *key = va_arg(ap, const char *);
        int sev = va_arg(ap, int);
        const struct vg_finding *g = vg_findings_get(&x->f, key);
        if (!g)
            fail_msg("missing finding %s", key);
        if ((int)g->severity != sev)
            fail_msg("%s: severity %s, expected %s", key, vg_severity_name(g->severity),
                     vg_severity_name((enum vg_severity)sev));
        assert_true(g->title[0] && g->explanation[0] && g->remediation[0]);
    }
    va_end(ap);
    if (x->f.count != n) {
        for (size_t i = 0; i < x->f.count; i++)
            print_message("  got %s\n", x->f.items[i].key);
        fail_msg("%zu findings, expected %zu", x->f.count, n);
    }
}

static void test_clean_fleet_has_no_findings(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    expect(&x, 0);
    vg_findings_free(&x.f);
}

static void test_certificate_expiry(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    x.dev[0].cert_not_after_ms = NOW + 30 * DAY + 1; /* just outside the warning */
    expect(&x, 0);
    x.dev[0].cert_not_after_ms = NOW + 30 * DAY;
    expect(&x, 1, "cert-expiring:mon-1", VG_SEV_MEDIUM);
    assert_non_null(strstr(x.f.items[0].remediation, "vigil device renew mon-1 --out DIR"));
    x.dev[0].cert_not_after_ms = NOW + 6 * DAY;
    expect(&x, 1, "cert-expiring:mon-1", VG_SEV_HIGH);
    x.dev[0].cert_not_after_ms = NOW + 1;
    expect(&x, 1, "cert-expiring:mon-1", VG_SEV_HIGH);
    x.dev[0].cert_not_after_ms = NOW;
    expect(&x, 1, "cert-expired:mon-1", VG_SEV_HIGH);
    assert_non_null(strstr(x.f.items[0].explanation, "2026-11-29"));
    /* Out of service: an expired certificate of a revoked device is moot. */
    x.dev[0].status = VG_DEVICE_REVOKED;
    expect(&x, 0);
    vg_findings_free(&x.f);
}

static void test_certificate_age(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    x.dev[1].cert_not_before_ms = NOW - 365 * DAY;
    expect(&x, 0);
    x.dev[1].cert_not_before_ms = NOW - 365 * DAY - 1;
    expect(&x, 1, "cert-old:mon-2", VG_SEV_LOW);
    x.s.policy.cert_max_age_days = 0; /* no limit */
    expect(&x, 0);
    vg_findings_free(&x.f);
}

static void test_weak_keys(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    struct {
        enum vg_key_type type;
        unsigned bits;
        const char *curve;
        int weak;
        enum vg_severity sev;
    } cases[] = {
        {VG_KEY_RSA, 2048, NULL, 0, 0},           {VG_KEY_RSA, 4096, NULL, 0, 0},
        {VG_KEY_RSA, 2047, NULL, 1, VG_SEV_CRITICAL}, {VG_KEY_RSA, 1024, NULL, 1, VG_SEV_CRITICAL},
        {VG_KEY_EC, 0, "P-256", 0, 0},            {VG_KEY_EC, 0, "prime256v1", 0, 0},
        {VG_KEY_EC, 0, "secp384r1", 0, 0},        {VG_KEY_EC, 0, "secp256k1", 1, VG_SEV_CRITICAL},
        {VG_KEY_EC, 0, "secp192r1", 1, VG_SEV_CRITICAL}, {VG_KEY_EC, 0, NULL, 1, VG_SEV_CRITICAL},
        {VG_KEY_ED25519, 0, NULL, 0, 0},          {VG_KEY_UNKNOWN, 0, NULL, 1, VG_SEV_HIGH},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        x.dev[0].key_type = cases[i].type;
        x.dev[0].key_bits = cases[i].bits;
        x.dev[0].key_curve = cases[i].curve;
        if (cases[i].weak)
            expect(&x, 1, "weak-key:mon-1", (int)cases[i].sev);
        else
            expect(&x, 0);
    }
    vg_findings_free(&x.f);
}

static void test_shared_identity(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    x.dev[0].concurrent_sessions = 2;
    expect(&x, 1, "identity-shared:mon-1", VG_SEV_CRITICAL);
    assert_non_null(strstr(x.f.items[0].remediation, "vigil device revoke mon-1"));
    x.dev[0].concurrent_sessions = 1;
    /* The same certificate enrolled for two devices: each is told of the other. */
    x.dev[1].cert_fingerprint = "aa01";
    expect(&x, 2, "identity-shared:mon-1", VG_SEV_CRITICAL, "identity-shared:mon-2",
           VG_SEV_CRITICAL);
    assert_non_null(strstr(vg_findings_get(&x.f, "identity-shared:mon-1")->explanation, "mon-2"));
    assert_non_null(strstr(vg_findings_get(&x.f, "identity-shared:mon-2")->explanation, "mon-1"));
    /* Both causes at once: still one finding per device. */
    x.dev[0].concurrent_sessions = 3;
    expect(&x, 2, "identity-shared:mon-1", VG_SEV_CRITICAL, "identity-shared:mon-2",
           VG_SEV_CRITICAL);
    /* A revoked record keeping the old certificate is not a second holder. */
    x.dev[0].concurrent_sessions = 1;
    x.dev[1].status = VG_DEVICE_REVOKED;
    expect(&x, 0);
    vg_findings_free(&x.f);
}

static void test_revoked_certificate_attempts(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    x.dev[1].status = VG_DEVICE_REVOKED;
    expect(&x, 0);
    x.dev[1].revoked_cert_attempts = 3;
    expect(&x, 1, "revoked-cert-used:mon-2", VG_SEV_MEDIUM);
    assert_non_null(strstr(x.f.items[0].explanation, "3 connection attempts"));
    /* Re-enrolled device, old certificate still knocking: still reported. */
    x.dev[1].status = VG_DEVICE_ACTIVE;
    expect(&x, 1, "revoked-cert-used:mon-2", VG_SEV_MEDIUM);
    vg_findings_free(&x.f);
}

static void test_silent_devices(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    x.dev[0].last_seen_ms = NOW - 300 * 1000; /* exactly the class's interval */
    expect(&x, 0);
    x.dev[0].last_seen_ms = NOW - 300 * 1000 - 1;
    expect(&x, 1, "device-silent:mon-1", VG_SEV_MEDIUM); /* a patient's readings missing */
    x.dev[0].patient = NULL;
    expect(&x, 2, "device-silent:mon-1", VG_SEV_LOW, "device-no-patient:mon-1", VG_SEV_LOW);
    x.dev[0].patient = PATIENT_CANARY;
    /* A class without its own interval uses the default (3600 s). */
    x.dev[0].device_class = "infusion-pump";
    expect(&x, 0);
    x.dev[0].last_seen_ms = NOW - 3601 * 1000;
    expect(&x, 1, "device-silent:mon-1", VG_SEV_MEDIUM);
    /* Never seen: counted from enrollment. */
    x.dev[0].last_seen_ms = 0;
    x.dev[0].enrolled_ms = NOW - 600 * 1000;
    expect(&x, 0);
    x.dev[0].enrolled_ms = NOW - 3601 * 1000;
    expect(&x, 1, "device-silent:mon-1", VG_SEV_MEDIUM);
    assert_non_null(strstr(x.f.items[0].title, "never connected"));
    /* Quarantined devices are expected to be silent. */
    x.dev[0].status = VG_DEVICE_QUARANTINED;
    expect(&x, 0);
    /* No default and no class interval: not checked. */
    x.dev[0].status = VG_DEVICE_ACTIVE;
    x.s.policy.default_interval_s = 0;
    expect(&x, 0);
    vg_findings_free(&x.f);
}

static void test_inventory_gaps(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    x.dev[1].patient = "";
    x.dev[1].location = NULL;
    expect(&x, 2, "device-no-patient:mon-2", VG_SEV_LOW, "device-no-location:mon-2", VG_SEV_LOW);
    assert_non_null(strstr(vg_findings_get(&x.f, "device-no-patient:mon-2")->remediation,
                           "vigil device assign mon-2 PATIENT"));
    /* What someone sent to look for it needs. */
    assert_non_null(strstr(vg_findings_get(&x.f, "device-no-location:mon-2")->explanation,
                           "device mon-2 (Acme M1, serial SN1) is"));
    /* Quarantined: no patient is expected, but it must still be findable. */
    x.dev[1].status = VG_DEVICE_QUARANTINED;
    expect(&x, 1, "device-no-location:mon-2", VG_SEV_LOW);
    vg_findings_free(&x.f);
}

static void test_advisories(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    x.adv[0] = (struct vg_posture_advisory){"mon-1", "ACME-2026-001", "CVE-2026-1111", 9.8,
                                            "Update to firmware 2.2.0.", 1};
    x.adv[1] = (struct vg_posture_advisory){"mon-1", "ACME-2026-002", NULL, 7.0, NULL, 1};
    x.adv[2] = (struct vg_posture_advisory){"mon-1", "ACME-2026-003", NULL, 6.9, NULL, 1};
    x.adv[3] = (struct vg_posture_advisory){"mon-1", "ACME-2026-004", NULL, 0.1, NULL, 1};
    x.adv[4] = (struct vg_posture_advisory){"mon-1", "ACME-2026-005", NULL, 0.0, NULL, 1};
    x.adv[5] = (struct vg_posture_advisory){"mon-2", "ACME-2026-001", NULL, 9.8, NULL, 0};
    x.adv[6] = (struct vg_posture_advisory){"mon-2", "ACME-2026-004", NULL, 2.0, NULL, 0};
    x.adv[7] = (struct vg_posture_advisory){"mon-2", "ACME-2026-006", NULL, -1, NULL, 1};
    x.s.n_advisories = 8;
    expect(&x, 8, "advisory:mon-1:ACME-2026-001", VG_SEV_CRITICAL,
           "advisory:mon-1:ACME-2026-002", VG_SEV_HIGH, "advisory:mon-1:ACME-2026-003",
           VG_SEV_MEDIUM, "advisory:mon-1:ACME-2026-004", VG_SEV_LOW,
           "advisory:mon-1:ACME-2026-005", VG_SEV_INFO,
           /* unknown version: one band lower, never below low, never silent */
           "advisory-review:mon-2:ACME-2026-001", VG_SEV_HIGH,
           "advisory-review:mon-2:ACME-2026-004", VG_SEV_LOW,
           /* unknown score */
           "advisory:mon-2:ACME-2026-006", VG_SEV_MEDIUM);
    const struct vg_finding *g = vg_findings_get(&x.f, "advisory:mon-1:ACME-2026-001");
    assert_non_null(strstr(g->remediation, "Update to firmware 2.2.0."));
    assert_non_null(strstr(g->explanation, "CVE-2026-1111"));
    assert_non_null(strstr(g->explanation, "2.1.0"));
    assert_int_equal(g->device_index, 0);

    /* The same match twice is one finding; the more severe one wins. */
    x.adv[1] = x.adv[0];
    x.adv[1].cvss = 5.0;
    x.s.n_advisories = 2;
    expect(&x, 1, "advisory:mon-1:ACME-2026-001", VG_SEV_CRITICAL);
    /* A device not in the inventory still gets its finding. */
    x.adv[0].device = "ghost-9";
    x.s.n_advisories = 1;
    expect(&x, 1, "advisory:ghost-9:ACME-2026-001", VG_SEV_CRITICAL);
    assert_int_equal(x.f.items[0].device_index, -1);
    /* A revoked device is out of service. */
    x.adv[0].device = "mon-2";
    x.dev[1].status = VG_DEVICE_REVOKED;
    expect(&x, 0);
    vg_findings_free(&x.f);
}

static void test_accounts(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    x.acct[1].mfa_enrolled = 0; /* admin */
    expect(&x, 1, "mfa-missing:root", VG_SEV_HIGH);
    assert_non_null(strstr(x.f.items[0].remediation, "vigil user totp root"));
    x.acct[1].mfa_enrolled = 1;
    x.acct[0].mfa_enrolled = 0; /* clinician */
    expect(&x, 1, "mfa-missing:alice", VG_SEV_MEDIUM);
    x.acct[0].disabled = 1;
    expect(&x, 0);
    x.acct[0].disabled = 0;
    x.acct[0].mfa_enrolled = 1;
    /* Services have no second factor by design. */
    x.acct[2].mfa_enrolled = 0;
    expect(&x, 0);

    x.acct[2].last_used_ms = NOW - 90 * DAY;
    expect(&x, 0);
    x.acct[2].last_used_ms = NOW - 90 * DAY - 1;
    expect(&x, 1, "account-unused:ehr", VG_SEV_LOW);
    assert_non_null(strstr(x.f.items[0].remediation, "vigil user disable ehr"));
    x.acct[2].last_used_ms = NOW;
    x.acct[1].last_used_ms = 0; /* never used, created 200 days ago */
    expect(&x, 1, "account-unused:root", VG_SEV_MEDIUM);
    x.acct[1].created_ms = NOW - 10 * DAY;
    expect(&x, 0);
    vg_findings_free(&x.f);
}

static void test_training(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    struct vg_posture_training t[2] = {{"hipaa-basics", NOW - 365 * DAY},
                                       {"other", NOW - DAY}};
    x.acct[0].training = t;
    x.acct[0].n_training = 2;
    expect(&x, 0);
    t[0].completed_ms = NOW - 365 * DAY - 1;
    expect(&x, 1, "training-overdue:alice:hipaa-basics", VG_SEV_LOW);
    /* The latest completion counts. */
    struct vg_posture_training t2[2] = {{"hipaa-basics", NOW - 400 * DAY},
                                        {"hipaa-basics", NOW - DAY}};
    x.acct[0].training = t2;
    expect(&x, 0);
    /* Never completed: worse. */
    x.acct[1].training = NULL;
    x.acct[1].n_training = 0;
    expect(&x, 1, "training-overdue:root:hipaa-basics", VG_SEV_MEDIUM);
    /* Services are not trained; disabled accounts are not chased. */
    x.acct[1].is_service = 1;
    expect(&x, 0);
    x.acct[1].is_service = 0;
    x.acct[1].disabled = 1;
    expect(&x, 0);
    vg_findings_free(&x.f);
}

static void test_configuration(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    x.lst[0].min_tls = VG_TLS_MIN_1_2;
    expect(&x, 1, "tls-legacy:mqtt", VG_SEV_MEDIUM);
    x.lst[0].min_tls = VG_TLS_MIN_1_1;
    expect(&x, 1, "tls-legacy:mqtt", VG_SEV_HIGH);
    x.lst[0].min_tls = VG_TLS_MIN_1_0;
    x.lst[1].min_tls = VG_TLS_MIN_NONE;
    expect(&x, 2, "tls-legacy:mqtt", VG_SEV_HIGH, "tls-legacy:api", VG_SEV_CRITICAL);
    x.lst[0].min_tls = x.lst[1].min_tls = VG_TLS_MIN_1_3;

    x.s.config.audit_shipping = VG_SHIPPING_OFF;
    expect(&x, 1, "audit-shipping-off:gateway", VG_SEV_LOW);
    assert_non_null(strstr(x.f.items[0].remediation, "syslog = HOST:PORT"));
    x.s.config.audit_shipping = VG_SHIPPING_FAILING;
    expect(&x, 1, "audit-shipping-off:gateway", VG_SEV_MEDIUM);
    x.s.config.audit_shipping = VG_SHIPPING_ON;

    x.ret[0].days = 3650;
    expect(&x, 0);
    x.ret[0].days = 3651;
    expect(&x, 1, "retention-excess:readings", VG_SEV_MEDIUM);
    x.ret[0].days = -1; /* for ever */
    expect(&x, 1, "retention-excess:readings", VG_SEV_MEDIUM);
    assert_non_null(strstr(x.f.items[0].explanation, "for ever"));
    /* A category's own limit overrides the general one. */
    struct vg_posture_retention_limit lim[2] = {{"readings", -1}, {"audit", 2000}};
    x.s.policy.retention_limits = lim;
    x.s.policy.n_retention_limits = 2;
    expect(&x, 1, "retention-excess:audit", VG_SEV_MEDIUM);
    x.s.policy.n_retention_limits = 0;
    x.s.policy.max_retention_days = 0; /* no limit */
    expect(&x, 0);
    vg_findings_free(&x.f);
}

static void test_suppressions(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    x.dev[0].location = NULL;
    x.dev[1].location = NULL;
    x.lst[0].min_tls = VG_TLS_MIN_1_2;
    x.sup[0] = (struct vg_posture_suppression){"device-no-location:mon-1",
                                               "in transit to the ward", NOW + DAY};
    x.sup[1] = (struct vg_posture_suppression){"device-no-location:mon-2", "", NOW + DAY};
    x.sup[2] = (struct vg_posture_suppression){"tls-legacy:mqtt", "legacy pumps until March",
                                               NOW}; /* expires now: no longer applies */
    x.sup[3] = (struct vg_posture_suppression){"device-no-location:mon-1", "longer one",
                                               NOW + 7 * DAY};
    x.s.n_suppressions = 4;
    expect(&x, 3, "device-no-location:mon-1", VG_SEV_LOW, "device-no-location:mon-2",
           VG_SEV_LOW, "tls-legacy:mqtt", VG_SEV_MEDIUM);
    const struct vg_finding *g = vg_findings_get(&x.f, "device-no-location:mon-1");
    assert_true(g->suppressed);
    assert_string_equal(g->suppress_reason, "longer one");
    assert_int_equal(g->suppress_expires_ms, NOW + 7 * DAY);
    assert_false(vg_findings_get(&x.f, "device-no-location:mon-2")->suppressed); /* no reason */
    assert_false(vg_findings_get(&x.f, "tls-legacy:mqtt")->suppressed);         /* expired */
    unsigned open[VG_SEV_COUNT], sup = 99;
    vg_findings_count(&x.f, open, &sup);
    assert_int_equal(sup, 1);
    assert_int_equal(open[VG_SEV_LOW], 1);
    assert_int_equal(open[VG_SEV_MEDIUM], 1);
    /* One millisecond earlier the TLS suppression still applied. */
    x.s.now_ms = NOW - 1;
    audit(&x);
    assert_true(vg_findings_get(&x.f, "tls-legacy:mqtt")->suppressed);
    vg_findings_free(&x.f);
}

/* Severity first (critical first), then key; the same whatever the input
 * order. */
static void test_order_is_deterministic(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    x.dev[0].concurrent_sessions = 2;      /* critical */
    x.dev[0].location = NULL;              /* low */
    x.dev[1].location = NULL;              /* low */
    x.dev[1].cert_not_after_ms = NOW + 10 * DAY; /* medium */
    x.acct[1].mfa_enrolled = 0;            /* high */
    audit(&x);
    const char *want[] = {"identity-shared:mon-1", "mfa-missing:root", "cert-expiring:mon-2",
                          "device-no-location:mon-1", "device-no-location:mon-2"};
    assert_int_equal(x.f.count, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(x.f.items[i].key, want[i]);
    struct vg_posture_device swapped[2] = {x.dev[1], x.dev[0]};
    x.s.devices = swapped;
    audit(&x);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(x.f.items[i].key, want[i]);
    vg_findings_free(&x.f);
}

static void test_risk_scores(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    unsigned score[2];
    audit(&x);
    vg_findings_risk(&x.f, 2, score);
    assert_int_equal(score[0], 0);
    assert_int_equal(vg_risk_band(score[0]), VG_RISK_NONE);
    x.dev[1].location = NULL; /* one low */
    audit(&x);
    vg_findings_risk(&x.f, 2, score);
    assert_int_equal(score[1], VG_RISK_WEIGHT_LOW);
    assert_int_equal(vg_risk_band(score[1]), VG_RISK_LOW);
    x.dev[0].key_type = VG_KEY_RSA; /* critical */
    x.dev[0].key_bits = 1024;
    audit(&x);
    vg_findings_risk(&x.f, 2, score);
    assert_int_equal(score[0], 75);
    assert_int_equal(vg_risk_band(score[0]), VG_RISK_CRITICAL);
    x.dev[0].cert_not_after_ms = NOW - 1; /* + high: capped at 100 */
    audit(&x);
    vg_findings_risk(&x.f, 2, score);
    assert_int_equal(score[0], 100);
    /* Suppressed findings do not count. */
    x.sup[0] = (struct vg_posture_suppression){"weak-key:mon-1", "replacement ordered",
                                               NOW + DAY};
    x.s.n_suppressions = 1;
    audit(&x);
    vg_findings_risk(&x.f, 2, score);
    assert_int_equal(score[0], 40);
    assert_int_equal(vg_risk_band(score[0]), VG_RISK_HIGH);
    assert_int_equal(vg_risk_band(14), VG_RISK_LOW);
    assert_int_equal(vg_risk_band(15), VG_RISK_MEDIUM);
    assert_int_equal(vg_risk_band(39), VG_RISK_MEDIUM);
    assert_int_equal(vg_risk_band(74), VG_RISK_HIGH);
    vg_findings_free(&x.f);
}

static void test_cvss_bands(void **state)
{
    (void)state;
    assert_int_equal(vg_severity_from_cvss(10.0), VG_SEV_CRITICAL);
    assert_int_equal(vg_severity_from_cvss(9.0), VG_SEV_CRITICAL);
    assert_int_equal(vg_severity_from_cvss(8.9), VG_SEV_HIGH);
    assert_int_equal(vg_severity_from_cvss(7.0), VG_SEV_HIGH);
    assert_int_equal(vg_severity_from_cvss(6.9), VG_SEV_MEDIUM);
    assert_int_equal(vg_severity_from_cvss(4.0), VG_SEV_MEDIUM);
    assert_int_equal(vg_severity_from_cvss(3.9), VG_SEV_LOW);
    assert_int_equal(vg_severity_from_cvss(0.1), VG_SEV_LOW);
    assert_int_equal(vg_severity_from_cvss(0.0), VG_SEV_INFO);
    assert_int_equal(vg_severity_from_cvss(-1), VG_SEV_MEDIUM);
    assert_int_equal(vg_severity_from_cvss(NAN), VG_SEV_MEDIUM);
}

/* Broken input fails the whole audit instead of silently leaving a record
 * out. */
static void test_rejects_broken_input(void **state)
{
    (void)state;
    struct fleet x;
    char err[200];
    for (int i = 0; i < 11; i++) {
        clean_fleet(&x);
        switch (i) {
        case 0: x.dev[0].id = NULL; break;
        case 1: x.dev[0].id = "has space"; break;
        case 2: x.dev[1].id = "mon-1"; break; /* listed twice */
        case 3: x.dev[0].status = (enum vg_device_status)9; break;
        case 4: x.dev[0].key_type = (enum vg_key_type)9; break;
        case 5: x.acct[0].id = "bad/id"; break;
        case 6:
            x.adv[0] = (struct vg_posture_advisory){"mon-1", "ID WITH SPACE", NULL, 5, NULL, 1};
            x.s.n_advisories = 1;
            break;
        case 7: {
            static const char *const bad_course[] = {"bad course"};
            x.s.policy.required_courses = bad_course;
            break;
        }
        case 8: x.lst[0].name = "no spaces please"; break;
        case 9: x.ret[0].category = NULL; break;
        case 10:
            x.adv[0] = (struct vg_posture_advisory){"mon-1", "ID`x`", NULL, 5, NULL, 1};
            x.s.n_advisories = 1;
            break;
        }
        err[0] = '\0';
        if (vg_findings_audit(&x.s, &x.f, err, sizeof err) != -1)
            fail_msg("broken input %d accepted", i);
        assert_true(err[0] != '\0');
        vg_findings_free(&x.f);
    }
}

/* No patient identifier reaches any finding text, even with every finding
 * about that device raised; hostile external text is defused. */
static void test_texts_carry_no_patient_and_no_control_characters(void **state)
{
    (void)state;
    struct fleet x;
    clean_fleet(&x);
    x.dev[0].cert_not_after_ms = NOW + DAY;
    x.dev[0].cert_not_before_ms = NOW - 999 * DAY;
    x.dev[0].key_type = VG_KEY_RSA;
    x.dev[0].key_bits = 512;
    x.dev[0].concurrent_sessions = 4;
    x.dev[0].revoked_cert_attempts = 9;
    x.dev[0].last_seen_ms = NOW - 999 * DAY;
    x.dev[0].location = NULL;
    x.dev[0].firmware = "1.0\x1b[2J\xff\xfe";
    x.dev[0].device_class = "evil\nclass";
    x.adv[0] = (struct vg_posture_advisory){"mon-1", "ACME-1", "CVE-2026-1\r\nInjected: yes", 9.1,
                                            "Run `rm -rf /`\x1b[31m now\n", 1};
    x.s.n_advisories = 1;
    audit(&x);
    assert_true(x.f.count >= 7);
    for (size_t i = 0; i < x.f.count; i++) {
        const struct vg_finding *g = &x.f.items[i];
        const char *texts[] = {g->key, g->title, g->explanation, g->remediation};
        for (size_t j = 0; j < 4; j++) {
            if (strstr(texts[j], PATIENT_CANARY))
                fail_msg("%s carries the patient id", g->key);
            for (const unsigned char *p = (const unsigned char *)texts[j]; *p; p++)
                if (*p < 0x20 || *p == 0x7f || *p == 0xff || *p == 0xfe)
                    fail_msg("%s: control or invalid byte 0x%02x", g->key, *p);
        }
    }
    const struct vg_finding *g = vg_findings_get(&x.f, "advisory:mon-1:ACME-1");
    assert_null(strstr(g->remediation, "`rm"));    /* the advisory cannot open a code span */
    assert_non_null(strstr(g->remediation, "'rm")); /* its backtick became an apostrophe */
    vg_findings_free(&x.f);
}

static void test_names(void **state)
{
    (void)state;
    for (int i = 0; i < VG_FIND_KIND_COUNT; i++) {
        const char *a = vg_finding_kind_name((enum vg_finding_kind)i);
        assert_string_not_equal(a, "unknown");
        for (int j = 0; j < i; j++)
            assert_string_not_equal(a, vg_finding_kind_name((enum vg_finding_kind)j));
    }
    assert_string_equal(vg_finding_kind_name(VG_FIND_KIND_COUNT), "unknown");
    assert_string_equal(vg_severity_name(VG_SEV_CRITICAL), "critical");
    char buf[7];
    vg_posture_clean(buf, sizeof buf, "abc\xc3\xa9\xc3\xa9"); /* cut inside a character */
    assert_string_equal(buf, "abc\xc3\xa9?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_fleet_has_no_findings),
        cmocka_unit_test(test_certificate_expiry),
        cmocka_unit_test(test_certificate_age),
        cmocka_unit_test(test_weak_keys),
        cmocka_unit_test(test_shared_identity),
        cmocka_unit_test(test_revoked_certificate_attempts),
        cmocka_unit_test(test_silent_devices),
        cmocka_unit_test(test_inventory_gaps),
        cmocka_unit_test(test_advisories),
        cmocka_unit_test(test_accounts),
        cmocka_unit_test(test_training),
        cmocka_unit_test(test_configuration),
        cmocka_unit_test(test_suppressions),
        cmocka_unit_test(test_order_is_deterministic),
        cmocka_unit_test(test_risk_scores),
        cmocka_unit_test(test_cvss_bands),
        cmocka_unit_test(test_rejects_broken_input),
        cmocka_unit_test(test_texts_carry_no_patient_and_no_control_characters),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
