/* posture/report — the compliance evidence report (`vigil report hipaa`) and
 * the one-screen posture summary (`vigil posture`).
 *
 * The caller gathers facts and counts into struct vg_report_evidence (from
 * the database, the audit verifier, vigil.conf, the fleet audit and the
 * behaviour engine); vg_report_assess turns them into one item per HIPAA
 * §164.312 standard and implementation specification, per §164.308 item that
 * software supports, and per ETSI EN 303 645 provision: its obligation, the
 * controls vigil has, evidence lines quoting the facts, and every issue with
 * its remediation. An item's status is derived, never declared: it is "gap"
 * if any issue is a gap, "partial" if any issue is partial, else "in place".
 * Missing evidence (zero listeners, a check never run) is an issue, never a
 * pass. The rules are listed in docs/posture.md.
 *
 * The evidence carries no patient data at all: counts, times, settings and a
 * few caller strings (gateway name, version, verifier message, listener
 * names) that the renderers clean (control characters, backticks) and escape
 * for their format (HTML entities, Markdown backslashes; JSON through
 * jansson).
 *
 * Pure: no clock (generated_ms is an input), no database, no global state
 * (any thread may call it). Rendering writes to the caller's FILE*
 * (open_memstream gives a buffer); vg_report_render allocates one struct
 * vg_report (about 270 KiB) for the call.
 */
#ifndef VG_POSTURE_REPORT_H
#define VG_POSTURE_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/util.h"
#include "posture/behavior.h"
#include "posture/findings.h"

/* Where the key-encryption key is kept (crypto/kek.h's source, seen from
 * the report: a file apart from the data, or a PKCS#11 token). */
enum vg_kek_place { VG_KEK_PLACE_UNKNOWN, VG_KEK_PLACE_FILE, VG_KEK_PLACE_TOKEN };

/* A check that may not have been run. */
enum vg_evidence_check { VG_EVIDENCE_NOT_RUN, VG_EVIDENCE_PASSED, VG_EVIDENCE_FAILED };

struct vg_report_listener {
    const char *name;        /* e.g. "mqtt" */
    enum vg_tls_min min_tls;
    int client_cert;         /* requires a client certificate (mutual TLS) */
};

struct vg_report_evidence {
    int64_t generated_ms;
    int64_t period_start_ms, period_end_ms; /* the review period */
    const char *gateway;     /* a name for this gateway (host name), or NULL */
    const char *version;     /* vigil's version */

    /* Encryption at rest and key storage. */
    uint64_t readings_total, readings_sealed;
    enum vg_kek_place kek_place;
    int kek_protected;       /* file 0600 and kept out of backups, or in a token */
    int keys_protected;      /* CA key and audit signing key readable by vigil only */
    uint64_t integrity_failures; /* stored readings that failed authentication
                                    when read, in the period */

    /* Audit trail. */
    enum vg_evidence_check audit_chain;
    int64_t audit_verified_ms;
    uint64_t audit_records;
    int64_t audit_last_checkpoint_ms; /* 0 = none */
    const char *audit_failure;        /* the verifier's reason when FAILED */
    enum vg_shipping audit_shipping;
    unsigned audit_reviews;  /* audit reads/reports/exports by auditors in the period */

    /* Accounts and authentication. */
    unsigned accounts, people, services;
    unsigned accounts_shared;     /* accounts known to be used by several people */
    unsigned admins, admins_without_mfa, people_without_mfa;
    unsigned default_credentials; /* initial credentials never replaced (e.g. the
                                     bootstrap admin token still valid) */
    int64_t session_idle_s, session_lifetime_s; /* 0 = no limit */
    int64_t breakglass_minutes;   /* 0 = break-glass disabled */
    unsigned breakglass_grants, breakglass_unreviewed;
    unsigned login_max_failures;  /* 0 = no lockout */
    unsigned failed_logins, lockouts;
    int password_argon2id;
    unsigned password_min_length, common_passwords;
    unsigned training_courses, training_people, training_current, training_overdue;

    /* Devices (from the fleet audit). */
    unsigned devices, devices_shared_identity, devices_weak_key, devices_cert_expired;
    unsigned devices_advisory_severe; /* with an open critical/high advisory finding */
    unsigned devices_advisory, devices_advisory_review;

    /* Network. */
    const struct vg_report_listener *listeners;
    size_t n_listeners;
    unsigned ports_undocumented;  /* open ports not in vigil's documented list */

    /* Findings, vulnerabilities, behaviour. */
    unsigned findings_open[VG_SEV_COUNT];
    unsigned findings_suppressed;
    int vuln_policy_published;
    unsigned advisories_imported;
    int64_t advisories_updated_ms;
    unsigned behavior_rules, alarms_active, alarms_raised;

    /* Software, resilience, deletion, input, maintenance. */
    enum vg_evidence_check binary_integrity;
    int64_t last_backup_ms, last_restore_test_ms;
    unsigned patients_erased, erasures_pending;
    uint64_t readings_refused, publishes_refused;
    unsigned fuzz_targets;
    enum vg_evidence_check fuzzing;
    int64_t fuzz_run_ms;
    unsigned insecure_overrides;  /* settings weaker than vigil's defaults */
};

enum vg_report_status { VG_REPORT_IN_PLACE, VG_REPORT_PARTIAL, VG_REPORT_GAP };
const char *vg_report_status_name(enum vg_report_status s); /* "in place", "partial", "gap" */

enum vg_obligation { VG_OBL_REQUIRED, VG_OBL_ADDRESSABLE, VG_OBL_MANDATORY, VG_OBL_RECOMMENDED };
const char *vg_obligation_name(enum vg_obligation o);

enum vg_framework { VG_FW_HIPAA_312, VG_FW_HIPAA_308, VG_FW_ETSI };
#define VG_FW_COUNT 3
const char *vg_framework_title(enum vg_framework f);

#define VG_REPORT_LINES 8
#define VG_REPORT_ITEMS 40

struct vg_report_issue {
    enum vg_report_status status; /* partial or gap */
    char what[256];
    char fix[320];
};

struct vg_report_item {
    enum vg_framework framework;
    const char *ref;      /* "164.312(a)(2)(i)", "5.1" */
    const char *title;
    enum vg_obligation obligation;
    enum vg_report_status status;
    const char *controls; /* what vigil does for it */
    char evidence[VG_REPORT_LINES][256];
    size_t n_evidence;
    struct vg_report_issue issues[VG_REPORT_LINES];
    size_t n_issues;
};

struct vg_report {
    struct vg_report_item items[VG_REPORT_ITEMS];
    size_t n_items;
    unsigned count[3]; /* items per enum vg_report_status */
};

/* Assesses every item from the evidence (pure). */
void vg_report_assess(const struct vg_report_evidence *ev, struct vg_report *out);

/* The item with this ref ("164.312(b)", "5.13"), or NULL. */
const struct vg_report_item *vg_report_item(const struct vg_report *r, const char *ref);

enum vg_report_format { VG_REPORT_MD, VG_REPORT_HTML, VG_REPORT_JSON };

/* Assesses and writes the report. 0, or -1 (out of memory, write error). */
int vg_report_render(const struct vg_report_evidence *ev, enum vg_report_format fmt, FILE *out)
    VG_WARN_UNUSED;

/* What `vigil posture` shows on one screen: devices by risk band (and the
 * riskiest), open findings by severity (and the first few), active alarms,
 * quarantined devices. Everything is borrowed. */
struct vg_posture_summary_input {
    int64_t now_ms;
    const struct vg_posture_device *devices; /* the audited snapshot's */
    size_t n_devices;
    const struct vg_findings *findings;      /* from that snapshot */
    const struct vg_behavior_alarm *alarms;  /* from vg_behavior_alarms */
    size_t n_alarms;
};

#define VG_SUMMARY_LIST_MAX 5 /* entries listed per section */

int vg_report_posture_summary(const struct vg_posture_summary_input *in, FILE *out)
    VG_WARN_UNUSED;

#endif
