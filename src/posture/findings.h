/* posture/findings — the fleet audit: findings about devices, accounts and
 * configuration, and a risk score per device.
 *
 * vg_findings_audit is a pure function of a snapshot the caller fills from
 * the database, the broker's counters, the advisory matcher and vigil.conf.
 * It reads no clock (snapshot.now_ms is the time), no file and no database,
 * and everything in the snapshot is borrowed for the call only. No global
 * state: any thread may call it, on its own snapshot and result.
 *
 * Each finding has a stable key, "<kind>:<subject>" (for advisories
 * "advisory:<device>:<advisory id>", for training
 * "training-overdue:<account>:<course>"), that a suppression names. A
 * suppression applies while now < its expiry and only if it has a reason;
 * a suppressed finding is still returned, marked, with the suppression's
 * reason and expiry. Findings come out sorted by severity (critical first),
 * then key, and each key appears once.
 *
 * Finding texts name devices, accounts, listeners and advisories by id, never
 * a patient: the snapshot's patient field is only tested for presence.
 * Text taken from the snapshot (advisory remediation, firmware, class) has its
 * control characters replaced so it cannot drive a terminal; renderers still
 * escape for their format.
 *
 * Severity mapping, remediation commands and the risk score are documented in
 * docs/posture.md.
 */
#ifndef VG_POSTURE_FINDINGS_H
#define VG_POSTURE_FINDINGS_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

enum vg_severity { VG_SEV_INFO, VG_SEV_LOW, VG_SEV_MEDIUM, VG_SEV_HIGH, VG_SEV_CRITICAL };
#define VG_SEV_COUNT 5

const char *vg_severity_name(enum vg_severity s); /* "critical", ... "info" */

/* The CVSS v3.x qualitative rating of a base score: 0.0 none (info),
 * 0.1-3.9 low, 4.0-6.9 medium, 7.0-8.9 high, 9.0-10.0 critical. A negative
 * or non-finite score (unknown) is medium. */
enum vg_severity vg_severity_from_cvss(double score);

/* ---- the snapshot ---- */

enum vg_device_status { VG_DEVICE_ACTIVE, VG_DEVICE_REVOKED, VG_DEVICE_QUARANTINED };

enum vg_key_type { VG_KEY_UNKNOWN, VG_KEY_RSA, VG_KEY_EC, VG_KEY_ED25519, VG_KEY_ED448 };

struct vg_posture_device {
    const char *id;            /* required, a valid vigil id */
    const char *manufacturer;  /* NULL or "" when unknown, as for all below */
    const char *model;
    const char *serial;
    const char *firmware;
    const char *device_class;  /* e.g. "pulse-oximeter" */
    const char *location;
    const char *patient;       /* only tested for presence, never copied */
    enum vg_device_status status;
    int64_t cert_not_before_ms;
    int64_t cert_not_after_ms;
    enum vg_key_type key_type;
    unsigned key_bits;         /* RSA modulus bits */
    const char *key_curve;     /* EC: "P-256", "prime256v1", "secp384r1", ... */
    const char *cert_fingerprint; /* hex SHA-256 of the DER certificate */
    int64_t enrolled_ms;
    int64_t last_seen_ms;      /* 0 = never connected */
    /* Since the last audit: the most sessions seen at once with this
     * device's certificate or client id, and connection attempts presenting
     * a certificate of this device that was revoked. */
    unsigned concurrent_sessions;
    unsigned revoked_cert_attempts;
};

struct vg_posture_training {
    const char *course;
    int64_t completed_ms; /* latest completion */
};

struct vg_posture_account {
    const char *id;          /* required, a valid vigil id */
    int is_service;          /* a service principal (tokens; no password, no MFA) */
    const char *roles;       /* space-separated, e.g. "admin biomed" */
    int mfa_enrolled;
    int disabled;
    int64_t created_ms;
    int64_t last_used_ms;    /* 0 = never */
    const struct vg_posture_training *training; /* completions, any order */
    size_t n_training;
};

enum vg_tls_min {
    VG_TLS_MIN_NONE, /* plaintext accepted */
    VG_TLS_MIN_1_0,
    VG_TLS_MIN_1_1,
    VG_TLS_MIN_1_2,
    VG_TLS_MIN_1_3,
};
const char *vg_tls_min_name(enum vg_tls_min v); /* "plaintext", "TLS 1.0", ... */

struct vg_posture_listener {
    const char *name;        /* e.g. "mqtt", "api" (an id) */
    const char *address;     /* "127.0.0.1:8883", for the explanation */
    enum vg_tls_min min_tls; /* the lowest version it accepts */
};

struct vg_posture_retention {
    const char *category;    /* a [retention] rule key ("default", "vital-signs",
                                a LOINC code) or another kept category (an id) */
    int64_t days;            /* how long vigil keeps it; -1 = for ever */
};

enum vg_shipping { VG_SHIPPING_OFF, VG_SHIPPING_ON, VG_SHIPPING_FAILING };

struct vg_posture_config {
    const struct vg_posture_listener *listeners;
    size_t n_listeners;
    enum vg_shipping audit_shipping;
    const struct vg_posture_retention *retention;
    size_t n_retention;
};

/* An advisory matched to a device by the advisory matcher (src/advisory/). */
struct vg_posture_advisory {
    const char *device;      /* device id */
    const char *advisory;    /* advisory id, e.g. a CSAF tracking id */
    const char *cves;        /* "CVE-2026-0001 CVE-2026-0002", or NULL */
    double cvss;             /* highest CVSS v3 base score; < 0 unknown */
    const char *remediation; /* the advisory's remediation text, or NULL */
    int affected;            /* 1: firmware known affected; 0: version could
                                not be decided, review by hand */
};

struct vg_posture_suppression {
    const char *key;         /* a finding key */
    const char *reason;      /* required */
    int64_t expires_ms;      /* required; no longer applies from then */
};

struct vg_posture_class_interval {
    const char *device_class;
    int64_t interval_s;      /* longest expected silence */
};

struct vg_posture_retention_limit {
    const char *category;
    int64_t max_days;        /* -1 = may be kept for ever */
};

struct vg_posture_policy {
    int64_t cert_max_age_days;      /* 0 = no limit */
    int64_t cert_expiry_warn_days;  /* e.g. 30 */
    const struct vg_posture_class_interval *intervals;
    size_t n_intervals;
    int64_t default_interval_s;     /* classes not listed; 0 = not checked */
    int64_t account_unused_days;    /* e.g. 90 */
    int64_t training_period_days;   /* e.g. 365 */
    const char *const *required_courses; /* people must complete each */
    size_t n_required_courses;
    int64_t max_retention_days;     /* 0 = no limit */
    const struct vg_posture_retention_limit *retention_limits; /* per category */
    size_t n_retention_limits;
};

struct vg_posture_snapshot {
    int64_t now_ms;
    const struct vg_posture_device *devices;
    size_t n_devices;
    const struct vg_posture_account *accounts;
    size_t n_accounts;
    struct vg_posture_config config;
    const struct vg_posture_advisory *advisories;
    size_t n_advisories;
    const struct vg_posture_suppression *suppressions;
    size_t n_suppressions;
    struct vg_posture_policy policy;
};

/* ---- findings ---- */

enum vg_finding_kind {
    VG_FIND_CERT_EXPIRED,       /* "cert-expired" */
    VG_FIND_CERT_EXPIRING,      /* "cert-expiring" */
    VG_FIND_CERT_OLD,           /* "cert-old" */
    VG_FIND_WEAK_KEY,           /* "weak-key" */
    VG_FIND_IDENTITY_SHARED,    /* "identity-shared" */
    VG_FIND_REVOKED_CERT_USED,  /* "revoked-cert-used" */
    VG_FIND_DEVICE_SILENT,      /* "device-silent" */
    VG_FIND_ADVISORY,           /* "advisory" */
    VG_FIND_ADVISORY_REVIEW,    /* "advisory-review" */
    VG_FIND_NO_PATIENT,         /* "device-no-patient" */
    VG_FIND_NO_LOCATION,        /* "device-no-location" */
    VG_FIND_MFA_MISSING,        /* "mfa-missing" */
    VG_FIND_ACCOUNT_UNUSED,     /* "account-unused" */
    VG_FIND_TRAINING_OVERDUE,   /* "training-overdue" */
    VG_FIND_TLS_LEGACY,         /* "tls-legacy" */
    VG_FIND_AUDIT_SHIPPING,     /* "audit-shipping-off" */
    VG_FIND_RETENTION_EXCESS,   /* "retention-excess" */
    VG_FIND_KIND_COUNT
};

const char *vg_finding_kind_name(enum vg_finding_kind k);

enum vg_subject { VG_SUBJ_DEVICE, VG_SUBJ_ACCOUNT, VG_SUBJ_LISTENER, VG_SUBJ_GATEWAY,
                  VG_SUBJ_RETENTION };
const char *vg_subject_name(enum vg_subject s); /* "device", "account", ... */

#define VG_FINDING_KEY_MAX 240
#define VG_ADVISORY_ID_MAX 96
#define VG_COURSE_MAX 64

struct vg_finding {
    char key[VG_FINDING_KEY_MAX];
    enum vg_finding_kind kind;
    enum vg_severity severity;
    enum vg_subject subject_type;
    char subject[VG_ID_MAX + 1];  /* device/account/listener id, category,
                                     or "gateway" */
    long device_index;            /* index in snapshot.devices, or -1 */
    char title[128];
    char explanation[640];
    char remediation[640];
    int suppressed;
    char suppress_reason[256];
    int64_t suppress_expires_ms;
};

struct vg_findings {
    struct vg_finding *items; /* owned; free with vg_findings_free */
    size_t count, cap;
};

/* Runs the audit. On success *out holds the findings (the caller frees it
 * with vg_findings_free, also after a failure). Returns 0, or -1 with the
 * reason in 'err': an input that breaks the contract (a missing or invalid
 * device or account id, an invalid advisory id or course name, an unknown
 * enum value) or out of memory. A bad input fails the whole audit rather than
 * dropping the record, so nothing is silently left out. */
int vg_findings_audit(const struct vg_posture_snapshot *snap, struct vg_findings *out,
                      char *err, size_t err_size) VG_WARN_UNUSED;

void vg_findings_free(struct vg_findings *f);

/* The finding with this key, or NULL. */
const struct vg_finding *vg_findings_get(const struct vg_findings *f, const char *key);

/* Open (not suppressed) findings per severity, indexed by enum vg_severity,
 * and the number suppressed. */
void vg_findings_count(const struct vg_findings *f, unsigned open[VG_SEV_COUNT],
                       unsigned *suppressed);

/* Copies external text for display: at most size-1 bytes, control
 * characters replaced by spaces, backticks by apostrophes (they delimit
 * commands in finding and report texts), and the result made valid UTF-8
 * (an invalid or cut sequence becomes '?'). NULL copies as "". */
void vg_posture_clean(char *dst, size_t size, const char *src);

/* Makes a NUL-terminated string valid UTF-8 in place, as above. */
void vg_posture_utf8_fix(char *s);

/* ---- risk ---- */

/* A device's risk score, 0-100: the sum of the weights of its open findings
 * (critical 75, high 40, medium 15, low 5, info 0), capped at 100. Suppressed
 * findings do not count. */
#define VG_RISK_WEIGHT_CRITICAL 75
#define VG_RISK_WEIGHT_HIGH 40
#define VG_RISK_WEIGHT_MEDIUM 15
#define VG_RISK_WEIGHT_LOW 5

/* Fills scores[i] for snapshot device i (n_devices entries). */
void vg_findings_risk(const struct vg_findings *f, size_t n_devices, unsigned *scores);

/* Bands: 0 none, 1-14 low, 15-39 medium, 40-74 high, 75-100 critical — so a
 * single finding puts its device in the band of its own severity. */
enum vg_risk_band { VG_RISK_NONE, VG_RISK_LOW, VG_RISK_MEDIUM, VG_RISK_HIGH, VG_RISK_CRITICAL };
#define VG_RISK_BAND_COUNT 5
enum vg_risk_band vg_risk_band(unsigned score);
const char *vg_risk_band_name(enum vg_risk_band b); /* "critical", ..., "none" */

#endif
