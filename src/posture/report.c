/* posture/report — the compliance evidence report and the posture summary.
 * The contract is in report.h; the status rules are listed in
 * docs/posture.md, and each one is a function below that turns evidence
 * into evidence lines and issues. An item's status is the worst of its
 * issues, so it cannot say "in place" while an issue stands.
 */
#include "posture/report.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS ((int64_t)86400000)

const char *vg_report_status_name(enum vg_report_status s)
{
    switch (s) {
    case VG_REPORT_IN_PLACE: return "in place";
    case VG_REPORT_PARTIAL: return "partial";
    case VG_REPORT_GAP: return "gap";
    }
    return "unknown";
}

const char *vg_obligation_name(enum vg_obligation o)
{
    switch (o) {
    case VG_OBL_REQUIRED: return "required";
    case VG_OBL_ADDRESSABLE: return "addressable";
    case VG_OBL_MANDATORY: return "mandatory";
    case VG_OBL_RECOMMENDED: return "recommended";
    }
    return "unknown";
}

const char *vg_framework_title(enum vg_framework f)
{
    switch (f) {
    case VG_FW_HIPAA_312: return "HIPAA Security Rule, 45 CFR 164.312: technical safeguards";
    case VG_FW_HIPAA_308:
        return "HIPAA Security Rule, 45 CFR 164.308: administrative safeguards software supports";
    case VG_FW_ETSI: return "ETSI EN 303 645: cyber security baseline provisions";
    }
    return "unknown";
}

/* ---- formatting helpers ---- */

/* 1204331 -> "1,204,331" */
static void fmt_count(uint64_t v, char out[32])
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

/* "2026-11-29 10:02 UTC", or "never" for 0. */
static void fmt_time(int64_t ms, char out[32])
{
    if (ms <= 0) {
        snprintf(out, 32, "never");
        return;
    }
    char iso[32];
    vg_time_format(ms, iso);
    snprintf(out, 32, "%.10s %.5s UTC", iso, iso + 11);
}

/* Share of 'part' in 'whole', rounded down so that anything short of all
 * never shows as 100%. */
static void fmt_pct(uint64_t part, uint64_t whole, char out[16])
{
    if (whole == 0 || part >= whole) {
        snprintf(out, 16, "100%%");
        return;
    }
    double p = floor((double)part / (double)whole * 10000.0) / 100.0;
    if (p >= 99.99)
        p = 99.99;
    snprintf(out, 16, "%.2f%%", p);
}

static const char *plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* ---- building items ---- */

struct texts { /* caller strings, cleaned once */
    char gateway[128], version[64], failure[200];
};

static struct vg_report_item *item(struct vg_report *r, enum vg_framework fw, const char *ref,
                                   const char *title, enum vg_obligation ob,
                                   const char *controls)
{
    struct vg_report_item *it = &r->items[r->n_items++];
    memset(it, 0, sizeof *it);
    it->framework = fw;
    it->ref = ref;
    it->title = title;
    it->obligation = ob;
    it->controls = controls;
    return it;
}

static void line(struct vg_report_item *it, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void line(struct vg_report_item *it, const char *fmt, ...)
{
    if (it->n_evidence == VG_REPORT_LINES)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->evidence[it->n_evidence], sizeof it->evidence[0], fmt, ap);
    va_end(ap);
    vg_posture_utf8_fix(it->evidence[it->n_evidence++]);
}

/* An issue: what is wrong (formatted) and how to fix it. The last slot is
 * kept for the worst status, so a full list can never hide a gap. */
static void issue(struct vg_report_item *it, enum vg_report_status st, const char *fix,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void issue(struct vg_report_item *it, enum vg_report_status st, const char *fix,
                  const char *fmt, ...)
{
    struct vg_report_issue *is;
    if (it->n_issues < VG_REPORT_LINES) {
        is = &it->issues[it->n_issues++];
    } else {
        is = &it->issues[VG_REPORT_LINES - 1];
        if (is->status > st)
            return;
    }
    is->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(is->what, sizeof is->what, fmt, ap);
    va_end(ap);
    snprintf(is->fix, sizeof is->fix, "%s", fix);
    vg_posture_utf8_fix(is->what);
    vg_posture_utf8_fix(is->fix);
}

static void settle(struct vg_report_item *it)
{
    it->status = VG_REPORT_IN_PLACE;
    for (size_t i = 0; i < it->n_issues; i++)
        if (it->issues[i].status > it->status)
            it->status = it->issues[i].status;
}

/* A standard made of implementation specifications is as good as the worst
 * of them. */
static void aggregate(struct vg_report_item *std, struct vg_report_item *const *parts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        settle(parts[i]);
        if (parts[i]->status == VG_REPORT_IN_PLACE)
            continue;
        char fix[96];
        snprintf(fix, sizeof fix, "See %s below.", parts[i]->ref);
        issue(std, parts[i]->status, fix, "%s %s is %s.", parts[i]->ref, parts[i]->title,
              vg_report_status_name(parts[i]->status));
    }
}

/* ---- listeners ---- */

struct tls_view {
    size_t n, plaintext, legacy, tls12; /* legacy: TLS 1.0 / 1.1 */
};

static struct tls_view tls_view(const struct vg_report_evidence *ev)
{
    struct tls_view v = {.n = ev->n_listeners};
    for (size_t i = 0; i < ev->n_listeners; i++) {
        enum vg_tls_min m = ev->listeners[i].min_tls;
        if (m == VG_TLS_MIN_NONE || (unsigned)m > VG_TLS_MIN_1_3)
            v.plaintext++;
        else if (m == VG_TLS_MIN_1_0 || m == VG_TLS_MIN_1_1)
            v.legacy++;
        else if (m == VG_TLS_MIN_1_2)
            v.tls12++;
    }
    return v;
}

static void listener_lines(struct vg_report_item *it, const struct vg_report_evidence *ev)
{
    if (ev->n_listeners == 0)
        line(it, "no listener reported");
    for (size_t i = 0; i < ev->n_listeners && i < VG_REPORT_LINES - 2; i++) {
        const struct vg_report_listener *l = &ev->listeners[i];
        char name[64];
        vg_posture_clean(name, sizeof name, l->name ? l->name : "unnamed");
        const char *tls = l->min_tls == VG_TLS_MIN_1_3   ? "TLS 1.3 only"
                          : l->min_tls == VG_TLS_MIN_1_2 ? "TLS 1.2 and 1.3"
                          : l->min_tls == VG_TLS_MIN_1_1 ? "TLS 1.1 and later"
                          : l->min_tls == VG_TLS_MIN_1_0 ? "TLS 1.0 and later"
                                                     : "plaintext accepted";
        line(it, "listener %s: %s%s", name, tls,
             l->client_cert ? ", client certificate required" : "");
    }
}

static const char fix_tls13[] =
    "Allow TLS 1.3 only on every listener in vigil.conf once its clients support it, "
    "then restart `vigil serve`.";
static const char fix_plaintext[] =
    "Remove the plaintext listener from vigil.conf: vigil's own listeners are TLS only.";
static const char fix_no_listeners[] =
    "Collect the listener settings from vigil.conf into the evidence and run the report again.";

/* ---- HIPAA 164.312 ---- */

static struct vg_report_item *unique_ids(struct vg_report *r, const struct vg_report_evidence *ev)
{
    struct vg_report_item *it = item(
        r, VG_FW_HIPAA_312, "164.312(a)(2)(i)", "Unique user identification", VG_OBL_REQUIRED,
        "Each person and service has its own account and each device its own certificate "
        "from vigil's CA; every audit record names the principal or device.");
    char a[32], d[32];
    fmt_count(ev->accounts, a);
    fmt_count(ev->devices, d);
    line(it, "unique user identification: %s %s (%u people, %u services), %u shared", a,
         plural(ev->accounts, "account", "accounts"), ev->people, ev->services,
         ev->accounts_shared);
    line(it, "devices: %s, each with its own certificate; %u sharing an identity", d,
         ev->devices_shared_identity);
    if (ev->accounts == 0)
        issue(it, VG_REPORT_GAP, "Gather the account list into the evidence and run the report "
                                 "again.",
              "No accounts were reported, so unique identification cannot be shown.");
    if (ev->accounts_shared)
        issue(it, VG_REPORT_GAP,
              "Give each person their own account (`vigil user add ID --role ROLE`) and "
              "disable the shared ones (`vigil user disable ID`).",
              "%u %s used by several people: their actions cannot be told apart.",
              ev->accounts_shared, plural(ev->accounts_shared, "account is", "accounts are"));
    if (ev->devices_shared_identity)
        issue(it, VG_REPORT_PARTIAL,
              "Revoke the shared certificates and give each device its own (fleet-audit "
              "finding identity-shared).",
              "%u %s an identity with another device.", ev->devices_shared_identity,
              plural(ev->devices_shared_identity, "device shares", "devices share"));
    return it;
}

static struct vg_report_item *emergency(struct vg_report *r, const struct vg_report_evidence *ev)
{
    struct vg_report_item *it = item(
        r, VG_FW_HIPAA_312, "164.312(a)(2)(ii)", "Emergency access procedure", VG_OBL_REQUIRED,
        "Break-glass: a clinician outside a patient's care team opens a time-boxed grant with "
        "a mandatory reason (`vigil breakglass PATIENT --reason TEXT`); it is audited and "
        "alerts the auditors.");
    if (ev->breakglass_minutes > 0)
        line(it, "break-glass grants last %lld minutes; %u opened in the period, %u not yet "
                 "reviewed",
             (long long)ev->breakglass_minutes, ev->breakglass_grants,
             ev->breakglass_unreviewed);
    else
        line(it, "break-glass is disabled");
    if (ev->breakglass_minutes <= 0)
        issue(it, VG_REPORT_GAP,
              "Set `breakglass_minutes` under `[access]` in vigil.conf (for example 60).",
              "There is no emergency access procedure: in an emergency nobody outside the care "
              "team can reach a patient's data through vigil.");
    if (ev->breakglass_unreviewed)
        issue(it, VG_REPORT_PARTIAL,
              "An auditor reviews each grant and its reason: `vigil audit list --action "
              "breakglass.`.",
              "%u break-glass %s not been reviewed.", ev->breakglass_unreviewed,
              plural(ev->breakglass_unreviewed, "grant has", "grants have"));
    return it;
}

static struct vg_report_item *logoff(struct vg_report *r, const struct vg_report_evidence *ev)
{
    struct vg_report_item *it = item(
        r, VG_FW_HIPAA_312, "164.312(a)(2)(iii)", "Automatic logoff", VG_OBL_ADDRESSABLE,
        "Sessions end after an idle time and after an absolute lifetime (`idle_timeout_s` "
        "and `lifetime_s` under `[session]` in vigil.conf); service tokens expire.");
    if (ev->session_idle_s > 0)
        line(it, "automatic logoff after %lld idle minutes; sessions last at most %lld hours",
             (long long)(ev->session_idle_s / 60), (long long)(ev->session_lifetime_s / 3600));
    else
        line(it, "idle sessions are not ended");
    if (ev->session_idle_s <= 0)
        issue(it, VG_REPORT_GAP, "Set `idle_timeout_s` under `[session]` in vigil.conf (900).",
              "Idle sessions never end: an unattended screen stays signed in.");
    else if (ev->session_idle_s > 1800)
        issue(it, VG_REPORT_PARTIAL, "Lower `idle_timeout_s` under `[session]` to 1800 or less.",
              "Idle sessions last %lld minutes, longer than the 30 minutes NIST SP 800-63B "
              "allows at AAL2.",
              (long long)(ev->session_idle_s / 60));
    if (ev->session_lifetime_s <= 0 || ev->session_lifetime_s > 43200)
        issue(it, VG_REPORT_PARTIAL, "Set `lifetime_s` under `[session]` to 43200 or less.",
              "Sessions are not re-authenticated within 12 hours.");
    return it;
}

static void kek_line(struct vg_report_item *it, const struct vg_report_evidence *ev)
{
    const char *kind = ev->kek_place == VG_KEK_PLACE_TOKEN ? "in a PKCS#11 token"
                       : ev->kek_place == VG_KEK_PLACE_FILE ? "in a file kept apart from the data"
                                                     : "in an unknown place";
    line(it, "key-encryption key %s%s", kind,
         ev->kek_place == VG_KEK_PLACE_UNKNOWN ? ""
         : ev->kek_protected            ? ", protected (readable by vigil only, not in backups)"
                                        : ", NOT protected");
}

static void sealed_line(struct vg_report_item *it, const struct vg_report_evidence *ev)
{
    char pct[16], total[32];
    fmt_pct(ev->readings_sealed, ev->readings_total, pct);
    fmt_count(ev->readings_total, total);
    line(it, "encryption at rest: %s of %s %s sealed (XChaCha20-Poly1305, per-patient keys)",
         pct, total, plural(ev->readings_total, "reading", "readings"));
}

static const char fix_unsealed[] =
    "Find how unsealed readings reached the database (an import or an old version), seal or "
    "delete them, and run the report again.";

static void unsealed_issue(struct vg_report_item *it, const struct vg_report_evidence *ev)
{
    if (ev->readings_sealed >= ev->readings_total)
        return;
    char n[32];
    fmt_count(ev->readings_total - ev->readings_sealed, n);
    issue(it, VG_REPORT_GAP, fix_unsealed, "%s %s stored without encryption.", n,
          plural(ev->readings_total - ev->readings_sealed, "reading is", "readings are"));
}

static void kek_issues(struct vg_report_item *it, const struct vg_report_evidence *ev)
{
    if (ev->kek_place == VG_KEK_PLACE_UNKNOWN)
        issue(it, VG_REPORT_GAP,
              "Report where the KEK is (`keys/kek` or a PKCS#11 token) and run the report again.",
              "Where the key-encryption key is kept could not be established.");
    else if (!ev->kek_protected)
        issue(it, VG_REPORT_PARTIAL,
              "Make `keys/kek` mode 0600 owned by vigil, keep it out of backups (`vigil backup` "
              "never copies it), or move it to a PKCS#11 token.",
              "The key-encryption key is readable by others or stored with the data.");
}

static struct vg_report_item *encryption(struct vg_report *r, const struct vg_report_evidence *ev)
{
    struct vg_report_item *it = item(
        r, VG_FW_HIPAA_312, "164.312(a)(2)(iv)", "Encryption and decryption", VG_OBL_ADDRESSABLE,
        "Readings are sealed before they touch the disk, under per-patient data keys wrapped "
        "by the key-encryption key (KEK), which is kept apart from the database and backups.");
    sealed_line(it, ev);
    kek_line(it, ev);
    unsealed_issue(it, ev);
    kek_issues(it, ev);
    return it;
}

static void audit_lines(struct vg_report_item *it, const struct vg_report_evidence *ev,
                        const struct texts *t)
{
    char when[32], cp[32], n[32];
    fmt_time(ev->audit_verified_ms, when);
    fmt_time(ev->audit_last_checkpoint_ms, cp);
    fmt_count(ev->audit_records, n);
    switch (ev->audit_chain) {
    case VG_EVIDENCE_PASSED:
        line(it, "audit controls: chain verified at %s, %s records, last signed checkpoint %s",
             when, n, cp);
        break;
    case VG_EVIDENCE_FAILED:
        line(it, "audit controls: chain verification FAILED at %s (%s); %s records", when,
             t->failure[0] ? t->failure : "no reason given", n);
        break;
    default:
        line(it, "audit controls: chain not verified; %s records, last signed checkpoint %s", n,
             cp);
        break;
    }
}

static const char fix_chain[] =
    "Treat it as an incident: `vigil audit verify DIR` names the first bad record; compare "
    "with the checkpoints shipped off the gateway and restore from a verified backup.";

static struct vg_report_item *audit_controls(struct vg_report *r,
                                             const struct vg_report_evidence *ev,
                                             const struct texts *t)
{
    struct vg_report_item *it = item(
        r, VG_FW_HIPAA_312, "164.312(b)", "Audit controls", VG_OBL_REQUIRED,
        "Every connection, refusal, stored batch, read of patient data and change is an "
        "append-only, hash-chained audit record; the chain head is signed (Ed25519) at "
        "checkpoints; `vigil audit verify` checks it offline; records can be shipped live to "
        "a SIEM (RFC 5424 syslog over TLS).");
    audit_lines(it, ev, t);
    line(it, "live shipping to a SIEM: %s",
         ev->audit_shipping == VG_SHIPPING_ON        ? "on"
         : ev->audit_shipping == VG_SHIPPING_FAILING ? "configured but FAILING"
                                                     : "off");
    if (ev->audit_chain == VG_EVIDENCE_FAILED)
        issue(it, VG_REPORT_GAP, fix_chain,
              "The audit chain failed verification: records may have been altered or removed.");
    else if (ev->audit_chain == VG_EVIDENCE_NOT_RUN)
        issue(it, VG_REPORT_PARTIAL, "Run `vigil audit verify DIR` (for example nightly).",
              "The audit chain has not been verified.");
    else if (ev->generated_ms - ev->audit_verified_ms > 7 * DAY_MS)
        issue(it, VG_REPORT_PARTIAL, "Run `vigil audit verify DIR` at least weekly.",
              "The last verification of the audit chain is more than 7 days old.");
    if (ev->audit_last_checkpoint_ms <= 0)
        issue(it, VG_REPORT_PARTIAL,
              "Check that `keys/audit.key` is present and `vigil serve` writes checkpoints "
              "(`checkpoint_records`, `checkpoint_seconds` under `[audit]`).",
              "No signed checkpoint exists, so a truncated tail would go unnoticed.");
    if (ev->audit_shipping == VG_SHIPPING_OFF)
        issue(it, VG_REPORT_PARTIAL,
              "Set `syslog = HOST:PORT` and `syslog_ca = FILE` under `[audit]` in vigil.conf.",
              "The audit trail exists only on this gateway: destroyed with it, it is gone.");
    else if (ev->audit_shipping == VG_SHIPPING_FAILING)
        issue(it, VG_REPORT_PARTIAL,
              "Check that the receiver set by `syslog` under `[audit]` is reachable and that "
              "its certificate is signed by `syslog_ca`.",
              "Shipping to the SIEM is failing.");
    return it;
}

static struct vg_report_item *authenticate_ephi(struct vg_report *r,
                                                const struct vg_report_evidence *ev)
{
    struct vg_report_item *it = item(
        r, VG_FW_HIPAA_312, "164.312(c)(2)", "Mechanism to authenticate ePHI",
        VG_OBL_ADDRESSABLE,
        "Each sealed reading carries a Poly1305 tag bound to its row (patient, device, code, "
        "key); it is checked on every read and a failure is refused, never served.");
    char pct[16], total[32];
    fmt_pct(ev->readings_sealed, ev->readings_total, pct);
    fmt_count(ev->readings_total, total);
    line(it, "%s of %s readings carry an authentication tag; %llu failed authentication in "
             "the period",
         pct, total, (unsigned long long)ev->integrity_failures);
    unsealed_issue(it, ev);
    if (ev->integrity_failures)
        issue(it, VG_REPORT_PARTIAL,
              "Investigate as an incident: find the rows in the audit trail (reads ending in "
              "\"Integrity check failed\") and restore them from a verified backup.",
              "%llu stored %s failed authentication: data was altered or damaged.",
              (unsigned long long)ev->integrity_failures,
              plural(ev->integrity_failures, "reading", "readings"));
    return it;
}

static struct vg_report_item *person_auth(struct vg_report *r, const struct vg_report_evidence *ev)
{
    struct vg_report_item *it = item(
        r, VG_FW_HIPAA_312, "164.312(d)", "Person or entity authentication", VG_OBL_REQUIRED,
        "People: Argon2id password and a TOTP second factor; services: scoped tokens stored "
        "only as hashes; devices: mutual TLS with a per-device certificate whose name must "
        "equal the MQTT client id.");
    line(it, "people: %u, %u without a second factor (%u of %u administrators)", ev->people,
         ev->people_without_mfa, ev->admins_without_mfa, ev->admins);
    char devs[32];
    fmt_count(ev->devices, devs);
    line(it, "devices: %s with certificates; %u weak keys, %u expired, %u sharing an identity",
         devs, ev->devices_weak_key, ev->devices_cert_expired, ev->devices_shared_identity);
    if (ev->people > 0 && ev->people_without_mfa >= ev->people)
        issue(it, VG_REPORT_GAP, "Enroll a second factor for everyone: `vigil user totp ID`.",
              "Nobody signs in with a second factor.");
    else if (ev->admins_without_mfa)
        issue(it, VG_REPORT_PARTIAL,
              "Enroll a second factor for each (`vigil user totp ID`); see fleet-audit "
              "findings mfa-missing.",
              "%u %s without a second factor.", ev->admins_without_mfa,
              plural(ev->admins_without_mfa, "administrator signs in", "administrators sign in"));
    if (ev->people_without_mfa > ev->admins_without_mfa && ev->people_without_mfa < ev->people)
        issue(it, VG_REPORT_PARTIAL, "Enroll a second factor for each: `vigil user totp ID`.",
              "%u other %s without a second factor.",
              ev->people_without_mfa - ev->admins_without_mfa,
              plural(ev->people_without_mfa - ev->admins_without_mfa, "person signs in",
                     "people sign in"));
    if (ev->devices_shared_identity)
        issue(it, VG_REPORT_PARTIAL,
              "Revoke the shared certificates and issue each device its own (finding "
              "identity-shared).",
              "%u %s an identity, so they cannot be told apart.", ev->devices_shared_identity,
              plural(ev->devices_shared_identity, "device shares", "devices share"));
    if (ev->devices_weak_key)
        issue(it, VG_REPORT_PARTIAL,
              "Issue new certificates with P-256 keys (finding weak-key).",
              "%u %s a weak key.", ev->devices_weak_key,
              plural(ev->devices_weak_key, "device authenticates with",
                     "devices authenticate with"));
    return it;
}

static struct vg_report_item *tls_integrity(struct vg_report *r,
                                            const struct vg_report_evidence *ev)
{
    struct vg_report_item *it = item(
        r, VG_FW_HIPAA_312, "164.312(e)(2)(i)", "Integrity controls", VG_OBL_ADDRESSABLE,
        "TLS protects every record with an AEAD cipher: an alteration in transit ends the "
        "connection.");
    struct tls_view v = tls_view(ev);
    listener_lines(it, ev);
    if (v.n == 0)
        issue(it, VG_REPORT_GAP, fix_no_listeners, "No listener settings were reported.");
    if (v.plaintext)
        issue(it, VG_REPORT_GAP, fix_plaintext,
              "%zu %s plaintext: nothing detects alteration in transit.", v.plaintext,
              v.plaintext == 1 ? "listener accepts" : "listeners accept");
    if (v.legacy)
        issue(it, VG_REPORT_PARTIAL, fix_tls13,
              "%zu %s TLS 1.0 or 1.1 (deprecated by RFC 8996).", v.legacy,
              v.legacy == 1 ? "listener accepts" : "listeners accept");
    return it;
}

static void tls_encryption_issues(struct vg_report_item *it, const struct vg_report_evidence *ev)
{
    struct tls_view v = tls_view(ev);
    if (v.n == 0)
        issue(it, VG_REPORT_GAP, fix_no_listeners, "No listener settings were reported.");
    if (v.plaintext)
        issue(it, VG_REPORT_GAP, fix_plaintext, "%zu %s plaintext: data crosses the network "
                                                "readable by anyone on the path.",
              v.plaintext, v.plaintext == 1 ? "listener accepts" : "listeners accept");
    if (v.legacy)
        issue(it, VG_REPORT_GAP, fix_tls13, "%zu %s TLS 1.0 or 1.1 (deprecated by RFC 8996).",
              v.legacy, v.legacy == 1 ? "listener accepts" : "listeners accept");
    if (v.tls12)
        issue(it, VG_REPORT_PARTIAL, fix_tls13,
              "%zu %s TLS 1.2; vigil's baseline is TLS 1.3 only.", v.tls12,
              v.tls12 == 1 ? "listener still accepts" : "listeners still accept");
}

static struct vg_report_item *tls_encryption(struct vg_report *r,
                                             const struct vg_report_evidence *ev)
{
    struct vg_report_item *it = item(
        r, VG_FW_HIPAA_312, "164.312(e)(2)(ii)", "Encryption", VG_OBL_ADDRESSABLE,
        "TLS 1.3 on every listener by default (TLS 1.2 only as an opt-in); no plaintext "
        "listener; devices must present a certificate from vigil's CA.");
    listener_lines(it, ev);
    tls_encryption_issues(it, ev);
    return it;
}

static void hipaa_312(struct vg_report *r, const struct vg_report_evidence *ev,
                      const struct texts *t)
{
    struct vg_report_item *ac = item(
        r, VG_FW_HIPAA_312, "164.312(a)(1)", "Access control", VG_OBL_REQUIRED,
        "Every door (HTTPS API, CLI, MQTT publish and subscribe) asks one access decision, deny "
        "by default: roles, care teams, time-boxed break-glass, scoped service tokens.");
    line(ac, "access decisions: one function, deny by default; %u %s with the admin role "
             "(which sees no patient data)",
         ev->admins, plural(ev->admins, "account", "accounts"));
    struct vg_report_item *a[4];
    a[0] = unique_ids(r, ev);
    a[1] = emergency(r, ev);
    a[2] = logoff(r, ev);
    a[3] = encryption(r, ev);
    aggregate(ac, a, 4);

    audit_controls(r, ev, t);

    struct vg_report_item *ci = item(
        r, VG_FW_HIPAA_312, "164.312(c)(1)", "Integrity", VG_OBL_REQUIRED,
        "Sealed readings are bound to their row, so an altered, moved or swapped value fails "
        "to open; audit records are hash-chained and signed.");
    line(ci, "audit chain: %s", ev->audit_chain == VG_EVIDENCE_PASSED   ? "verified"
                                : ev->audit_chain == VG_EVIDENCE_FAILED ? "FAILED verification"
                                                                     : "not verified");
    if (ev->audit_chain == VG_EVIDENCE_FAILED)
        issue(ci, VG_REPORT_GAP, fix_chain, "The audit chain failed verification.");
    struct vg_report_item *c2 = authenticate_ephi(r, ev);
    aggregate(ci, &c2, 1);

    struct vg_report_item *pa = person_auth(r, ev);
    (void)pa;

    struct vg_report_item *ts = item(
        r, VG_FW_HIPAA_312, "164.312(e)(1)", "Transmission security", VG_OBL_REQUIRED,
        "Every listener speaks TLS; devices authenticate with mutual TLS.");
    line(ts, "%zu %s reported", ev->n_listeners, ev->n_listeners == 1 ? "listener" : "listeners");
    struct vg_report_item *e[2];
    e[0] = tls_integrity(r, ev);
    e[1] = tls_encryption(r, ev);
    aggregate(ts, e, 2);
}

/* ---- HIPAA 164.308 ---- */

static void hipaa_308(struct vg_report *r, const struct vg_report_evidence *ev)
{
    struct vg_report_item *it = item(
        r, VG_FW_HIPAA_308, "164.308(a)(1)(ii)(D)", "Information system activity review",
        VG_OBL_REQUIRED,
        "Audit queries, per-patient disclosure reports and exports (`vigil audit "
        "list|report|export`), behaviour alarms and fleet-audit findings.");
    unsigned open = 0;
    for (unsigned s = 0; s < VG_SEV_COUNT; s++)
        open += ev->findings_open[s];
    line(it, "%u audit %s by auditors in the period; %u behaviour %s raised; %u open %s",
         ev->audit_reviews, plural(ev->audit_reviews, "review", "reviews"), ev->alarms_raised,
         plural(ev->alarms_raised, "alarm", "alarms"), open,
         plural(open, "finding", "findings"));
    if (ev->audit_chain == VG_EVIDENCE_FAILED)
        issue(it, VG_REPORT_GAP, fix_chain,
              "The audit trail failed verification, so a review of it cannot be relied on.");
    if (ev->audit_reviews == 0)
        issue(it, VG_REPORT_PARTIAL,
              "An auditor reviews activity regularly: `vigil audit list --since DATE`, and "
              "`vigil audit report patient ID` for disclosures.",
              "Nobody reviewed the audit trail in the period.");
    if (ev->findings_open[VG_SEV_CRITICAL])
        issue(it, VG_REPORT_PARTIAL, "Work through the critical findings of `vigil posture`.",
              "%u critical %s open.", ev->findings_open[VG_SEV_CRITICAL],
              plural(ev->findings_open[VG_SEV_CRITICAL], "finding is", "findings are"));

    it = item(r, VG_FW_HIPAA_308, "164.308(a)(5)(ii)(C)", "Log-in monitoring",
              VG_OBL_ADDRESSABLE,
              "Every login attempt is audited; repeated failures lock the account name or the "
              "source address and raise an alert.");
    line(it, "%u failed %s and %u %s in the period; lockout after %u failures",
         ev->failed_logins, plural(ev->failed_logins, "login", "logins"), ev->lockouts,
         plural(ev->lockouts, "lockout", "lockouts"), ev->login_max_failures);
    if (ev->login_max_failures == 0)
        issue(it, VG_REPORT_GAP,
              "Set `max_failures` under `[login]` in vigil.conf (for example 5).",
              "Failed logins do not lock out: passwords can be guessed without limit.");

    it = item(r, VG_FW_HIPAA_308, "164.308(a)(5)(ii)(D)", "Password management",
              VG_OBL_ADDRESSABLE,
              "Passwords are hashed with Argon2id, must be long enough and not on a list of "
              "common passwords (NIST SP 800-63B); people change their own with `vigil passwd`.");
    char common[32];
    fmt_count(ev->common_passwords, common);
    line(it, "password hashing: %s; at least %u characters; %s common passwords refused",
         ev->password_argon2id ? "Argon2id" : "NOT Argon2id", ev->password_min_length, common);
    if (!ev->password_argon2id)
        issue(it, VG_REPORT_GAP, "Upgrade vigil; passwords are rehashed at the next login.",
              "Passwords are not hashed with Argon2id.");
    if (ev->password_min_length < 8)
        issue(it, VG_REPORT_GAP, "Require at least 8 characters (vigil's default is 12).",
              "Passwords may be shorter than the 8 characters NIST SP 800-63B requires.");
    if (ev->common_passwords == 0)
        issue(it, VG_REPORT_PARTIAL, "Install a vigil build that carries its common-password list.",
              "Passwords are not checked against a list of common or breached passwords.");

    it = item(r, VG_FW_HIPAA_308, "164.308(a)(5)(i)", "Security awareness and training",
              VG_OBL_REQUIRED,
              "Training completions are recorded per person; overdue training is a fleet-audit "
              "finding (training-overdue).");
    line(it, "%u required %s; %u people: %u up to date, %u overdue", ev->training_courses,
         plural(ev->training_courses, "course", "courses"), ev->training_people,
         ev->training_current, ev->training_overdue);
    if (ev->training_courses == 0)
        issue(it, VG_REPORT_GAP,
              "List the required courses in the training policy and record completions.",
              "No security training programme is recorded.");
    else if (ev->training_people > 0 && ev->training_current == 0)
        issue(it, VG_REPORT_GAP, "Have everyone complete the required courses and record them.",
              "Nobody is up to date with security training.");
    else if (ev->training_overdue)
        issue(it, VG_REPORT_PARTIAL,
              "Have them complete it and record it (fleet-audit findings training-overdue).",
              "%u %s overdue for security training.", ev->training_overdue,
              plural(ev->training_overdue, "person is", "people are"));
}

/* ---- ETSI EN 303 645 ---- */

static void etsi(struct vg_report *r, const struct vg_report_evidence *ev, const struct texts *t)
{
    struct tls_view v = tls_view(ev);
    struct vg_report_item *it;
    char when[32], n1[32], n2[32];

    it = item(r, VG_FW_ETSI, "5.1", "No universal default passwords", VG_OBL_MANDATORY,
              "Devices have no passwords: each gets its own certificate and key at enrollment. "
              "People choose passwords checked against a common list; the bootstrap admin "
              "token is printed once; repeated failures lock out (5.1-5).");
    line(it, "%u initial %s still in use; lockout after %u failed logins",
         ev->default_credentials, plural(ev->default_credentials, "credential", "credentials"),
         ev->login_max_failures);
    if (ev->default_credentials)
        issue(it, VG_REPORT_GAP,
              "Replace them: sign in and set a password (`vigil passwd`), revoke the bootstrap "
              "token (`vigil token revoke ID`).",
              "%u initial %s never replaced.", ev->default_credentials,
              plural(ev->default_credentials, "credential was", "credentials were"));
    if (ev->login_max_failures == 0)
        issue(it, VG_REPORT_PARTIAL, "Set `max_failures` under `[login]` in vigil.conf.",
              "Nothing limits password guessing (5.1-5).");

    it = item(r, VG_FW_ETSI, "5.2", "Implement a means to manage reports of vulnerabilities",
              VG_OBL_MANDATORY,
              "A published vulnerability disclosure policy; security advisories (CSAF) are "
              "imported and matched to the fleet's firmware.");
    fmt_time(ev->advisories_updated_ms, when);
    line(it, "vulnerability disclosure policy: %s; %u %s imported, last update %s",
         ev->vuln_policy_published ? "published" : "NOT published", ev->advisories_imported,
         plural(ev->advisories_imported, "advisory", "advisories"), when);
    if (!ev->vuln_policy_published)
        issue(it, VG_REPORT_GAP,
              "Publish how to report a vulnerability (a contact and a response time) and "
              "record it in the evidence.",
              "No vulnerability disclosure policy is published.");
    if (ev->advisories_imported == 0)
        issue(it, VG_REPORT_PARTIAL,
              "Import the manufacturers' CSAF advisories for the fleet's models.",
              "No advisory has been imported, so vulnerable firmware goes unnoticed.");
    else if (ev->generated_ms - ev->advisories_updated_ms > 30 * DAY_MS)
        issue(it, VG_REPORT_PARTIAL, "Import advisories at least monthly.",
              "The advisories were last updated more than 30 days ago.");

    it = item(r, VG_FW_ETSI, "5.3", "Keep software updated", VG_OBL_MANDATORY,
              "Firmware versions are tracked per device and matched against advisories; each "
              "affected device is a finding with the advisory's remediation.");
    line(it, "%u %s affected by an advisory (%u critical or high), %u to check by hand",
         ev->devices_advisory, plural(ev->devices_advisory, "device", "devices"),
         ev->devices_advisory_severe, ev->devices_advisory_review);
    if (ev->devices_advisory_severe)
        issue(it, VG_REPORT_GAP,
              "Update their firmware, or quarantine them until it can be (findings advisory).",
              "%u %s firmware with a critical or high advisory.", ev->devices_advisory_severe,
              plural(ev->devices_advisory_severe, "device runs", "devices run"));
    else if (ev->devices_advisory)
        issue(it, VG_REPORT_PARTIAL, "Plan their firmware updates (findings advisory).",
              "%u %s firmware with a known vulnerability.", ev->devices_advisory,
              plural(ev->devices_advisory, "device runs", "devices run"));
    if (ev->devices_advisory_review)
        issue(it, VG_REPORT_PARTIAL,
              "Check each against the advisory's affected versions (findings advisory-review).",
              "%u %s against an advisory by hand.", ev->devices_advisory_review,
              plural(ev->devices_advisory_review, "device needs checking",
                     "devices need checking"));

    it = item(r, VG_FW_ETSI, "5.4", "Securely store sensitive security parameters",
              VG_OBL_MANDATORY,
              "The KEK is kept apart from the data (a 0600 file or a PKCS#11 token); data keys "
              "are stored wrapped; the CA and audit signing keys are readable by vigil only; no "
              "secret is compiled in.");
    kek_line(it, ev);
    line(it, "CA and audit signing keys: %s",
         ev->keys_protected ? "readable by vigil only" : "NOT protected");
    kek_issues(it, ev);
    if (!ev->keys_protected)
        issue(it, VG_REPORT_PARTIAL,
              "Make `pki/ca.key` and `keys/audit.key` mode 0600, owned by the user running vigil.",
              "The CA key or the audit signing key is readable by others.");

    it = item(r, VG_FW_ETSI, "5.5", "Communicate securely", VG_OBL_MANDATORY,
              "TLS 1.3 for devices (mutual) and clients; per-device certificates; weak device "
              "keys are findings.");
    listener_lines(it, ev);
    line(it, "%u %s with a weak key", ev->devices_weak_key,
         plural(ev->devices_weak_key, "device", "devices"));
    tls_encryption_issues(it, ev);
    if (ev->devices_weak_key)
        issue(it, VG_REPORT_PARTIAL, "Issue new certificates with P-256 keys (finding weak-key).",
              "%u %s a weak key.", ev->devices_weak_key,
              plural(ev->devices_weak_key, "device uses", "devices use"));

    it = item(r, VG_FW_ETSI, "5.6", "Minimize exposed attack surfaces", VG_OBL_MANDATORY,
              "Only the documented listeners (MQTT over TLS, HTTPS) are opened and each "
              "requires authentication; a device may publish only to its own topic.");
    line(it, "%zu %s; %u open %s not in the documented list", ev->n_listeners,
         ev->n_listeners == 1 ? "listener" : "listeners", ev->ports_undocumented,
         plural(ev->ports_undocumented, "port", "ports"));
    if (ev->ports_undocumented)
        issue(it, VG_REPORT_GAP,
              "Close the ports vigil does not document (docs/api.md) or explain them.",
              "%u undocumented %s open on the gateway.", ev->ports_undocumented,
              plural(ev->ports_undocumented, "port is", "ports are"));
    if (v.plaintext)
        issue(it, VG_REPORT_GAP, fix_plaintext, "A plaintext listener is exposed.");
    if (v.n == 0)
        issue(it, VG_REPORT_GAP, fix_no_listeners, "No listener settings were reported.");

    it = item(r, VG_FW_ETSI, "5.7", "Ensure software integrity", VG_OBL_RECOMMENDED,
              "The installed binary can be checked against the release manifest; the audit "
              "trail is tamper-evident.");
    line(it, "vigil %s: binary %s", t->version[0] ? t->version : "(version unknown)",
         ev->binary_integrity == VG_EVIDENCE_PASSED   ? "matches the release manifest"
         : ev->binary_integrity == VG_EVIDENCE_FAILED ? "does NOT match the release manifest"
                                                   : "not checked");
    if (ev->binary_integrity == VG_EVIDENCE_FAILED)
        issue(it, VG_REPORT_GAP,
              "Treat it as an incident: stop the gateway, reinstall vigil from the signed "
              "release and find how the binary changed.",
              "The installed vigil binary differs from the release.");
    else if (ev->binary_integrity == VG_EVIDENCE_NOT_RUN)
        issue(it, VG_REPORT_PARTIAL,
              "Check the binary against the release manifest (for example with the package "
              "manager's verify).",
              "The installed binary has not been checked.");

    it = item(r, VG_FW_ETSI, "5.8", "Ensure that personal data is secure", VG_OBL_MANDATORY,
              "Readings are encrypted at rest per patient and in transit; every read is decided "
              "and audited; patient data never appears in logs.");
    sealed_line(it, ev);
    kek_line(it, ev);
    unsealed_issue(it, ev);
    kek_issues(it, ev);
    if (v.plaintext)
        issue(it, VG_REPORT_GAP, fix_plaintext, "A listener accepts plaintext.");

    it = item(r, VG_FW_ETSI, "5.9", "Make systems resilient to outages", VG_OBL_RECOMMENDED,
              "Acknowledged means stored (durable group commit); online backups without the "
              "KEK (`vigil backup`); `vigil restore` checks the KEK and the audit chain.");
    fmt_time(ev->last_backup_ms, n1);
    fmt_time(ev->last_restore_test_ms, n2);
    line(it, "last backup %s; last restore test %s", n1, n2);
    if (ev->last_backup_ms <= 0)
        issue(it, VG_REPORT_GAP, "Schedule `vigil backup DIR OUT` daily.",
              "No backup has been made.");
    else if (ev->generated_ms - ev->last_backup_ms > 7 * DAY_MS)
        issue(it, VG_REPORT_PARTIAL, "Schedule `vigil backup DIR OUT` daily.",
              "The last backup is more than 7 days old.");
    if (ev->last_restore_test_ms <= 0 || ev->generated_ms - ev->last_restore_test_ms > 365 * DAY_MS)
        issue(it, VG_REPORT_PARTIAL,
              "Restore a backup to a scratch directory (`vigil restore OUT NEWDIR --kek FILE`) "
              "at least yearly.",
              "No restore has been tested in the last year.");

    it = item(r, VG_FW_ETSI, "5.10", "Examine system telemetry data", VG_OBL_RECOMMENDED,
              "Per-device behaviour metrics with fixed and percentile rules; alarms are audited "
              "and can notify, quarantine or revoke.");
    line(it, "%u behaviour %s; %u %s raised in the period, %u active", ev->behavior_rules,
         plural(ev->behavior_rules, "rule", "rules"), ev->alarms_raised,
         plural(ev->alarms_raised, "alarm", "alarms"), ev->alarms_active);
    if (ev->behavior_rules == 0)
        issue(it, VG_REPORT_GAP,
              "Configure behaviour rules (docs/posture.md has a starting set).",
              "No behaviour rule watches the devices' telemetry.");

    it = item(r, VG_FW_ETSI, "5.11", "Make it easy for users to delete user data",
              VG_OBL_MANDATORY,
              "`vigil patient erase ID --reason TEXT` destroys a patient's data keys "
              "(crypto-shredding): their readings can never be opened again.");
    line(it, "%u %s erased in the period; %u erasure %s pending", ev->patients_erased,
         plural(ev->patients_erased, "patient", "patients"), ev->erasures_pending,
         plural(ev->erasures_pending, "request", "requests"));
    if (ev->erasures_pending)
        issue(it, VG_REPORT_PARTIAL, "Carry them out with `vigil patient erase ID --reason TEXT`.",
              "%u erasure %s waiting.", ev->erasures_pending,
              plural(ev->erasures_pending, "request is", "requests are"));

    it = item(r, VG_FW_ETSI, "5.12", "Make installation and maintenance of devices easy",
              VG_OBL_RECOMMENDED,
              "`vigil init` creates a secure working configuration; every setting has a safe "
              "default; each finding states its fix.");
    line(it, "%u %s weaker than vigil's defaults", ev->insecure_overrides,
         plural(ev->insecure_overrides, "setting", "settings"));
    if (ev->insecure_overrides)
        issue(it, VG_REPORT_PARTIAL,
              "Return them to the defaults of a fresh `vigil init`, or record why they differ.",
              "%u %s weaker than vigil's secure defaults.", ev->insecure_overrides,
              plural(ev->insecure_overrides, "setting is", "settings are"));

    it = item(r, VG_FW_ETSI, "5.13", "Validate input data", VG_OBL_MANDATORY,
              "Every reading is checked (LOINC code, UCUM unit, plausible range, time); "
              "malformed MQTT packets and JSON are refused; each parser has a fuzz harness.");
    fmt_count(ev->readings_refused, n1);
    fmt_count(ev->publishes_refused, n2);
    fmt_time(ev->fuzz_run_ms, when);
    line(it, "%s %s and %s %s refused in the period", n1,
         plural(ev->readings_refused, "reading", "readings"), n2,
         plural(ev->publishes_refused, "publish", "publishes"));
    line(it, "%u fuzz %s, last run %s: %s", ev->fuzz_targets,
         plural(ev->fuzz_targets, "target", "targets"), when,
         ev->fuzzing == VG_EVIDENCE_PASSED   ? "no crash"
         : ev->fuzzing == VG_EVIDENCE_FAILED ? "CRASHES found"
                                          : "not run");
    if (ev->fuzzing == VG_EVIDENCE_FAILED)
        issue(it, VG_REPORT_GAP,
              "Fix the crashing inputs before the next release and add each as a regression "
              "test.",
              "Fuzzing found inputs that crash a parser.");
    else if (ev->fuzzing == VG_EVIDENCE_NOT_RUN)
        issue(it, VG_REPORT_PARTIAL, "Run the fuzz harnesses (`make check` runs a short pass).",
              "No fuzzing run is recorded.");
}

void vg_report_assess(const struct vg_report_evidence *ev, struct vg_report *out)
{
    memset(out, 0, sizeof *out);
    struct texts t;
    vg_posture_clean(t.gateway, sizeof t.gateway, ev->gateway);
    vg_posture_clean(t.version, sizeof t.version, ev->version);
    vg_posture_clean(t.failure, sizeof t.failure, ev->audit_failure);
    hipaa_312(out, ev, &t);
    hipaa_308(out, ev);
    etsi(out, ev, &t);
    for (size_t i = 0; i < out->n_items; i++) {
        settle(&out->items[i]);
        out->count[out->items[i].status]++;
    }
}

const struct vg_report_item *vg_report_item(const struct vg_report *r, const char *ref)
{
    for (size_t i = 0; i < r->n_items; i++)
        if (!strcmp(r->items[i].ref, ref))
            return &r->items[i];
    return NULL;
}

/* ---- rendering ---- */

static void html_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* Text with `commands` as <code>. Caller strings never carry a backtick
 * (vg_posture_clean), so only vigil's own commands open a code span. */
static void html_rich(FILE *f, const char *s)
{
    char buf[512];
    int code = 0;
    while (*s) {
        const char *tick = strchr(s, '`');
        size_t n = tick ? (size_t)(tick - s) : strlen(s);
        if (n >= sizeof buf)
            n = sizeof buf - 1;
        memcpy(buf, s, n);
        buf[n] = '\0';
        html_text(f, buf);
        s += n;
        if (*s == '`') {
            fputs(code ? "</code>" : "<code>", f);
            code = !code;
            s++;
        }
    }
    if (code)
        fputs("</code>", f);
}

/* Markdown: backslash-escapes the punctuation that could start markup,
 * except inside `code spans`, which are literal in Markdown. */
static void md_text(FILE *f, const char *s)
{
    int code = 0;
    for (; *s; s++) {
        if (*s == '`') {
            code = !code;
            fputc('`', f);
        } else if (!code && strchr("\\*_[]<>|&~#!", *s)) {
            fputc('\\', f);
            fputc(*s, f);
        } else {
            fputc(*s, f);
        }
    }
}

static const char *status_class(enum vg_report_status s)
{
    return s == VG_REPORT_GAP ? "gap" : s == VG_REPORT_PARTIAL ? "partial" : "inplace";
}

static void header_facts(const struct vg_report_evidence *ev, const struct texts *t,
                         char *out, size_t size)
{
    char gen[32], from[32], to[32];
    fmt_time(ev->generated_ms, gen);
    fmt_time(ev->period_start_ms, from);
    fmt_time(ev->period_end_ms, to);
    snprintf(out, size, "Gateway %s, vigil %s. Generated %s; review period %s to %s.",
             t->gateway[0] ? t->gateway : "(unnamed)", t->version[0] ? t->version : "(unknown)",
             gen, from, to);
    vg_posture_utf8_fix(out);
}

static void findings_line(const struct vg_report_evidence *ev, char *out, size_t size)
{
    snprintf(out, size,
             "Open fleet-audit findings: %u critical, %u high, %u medium, %u low, %u info "
             "(%u suppressed).",
             ev->findings_open[VG_SEV_CRITICAL], ev->findings_open[VG_SEV_HIGH],
             ev->findings_open[VG_SEV_MEDIUM], ev->findings_open[VG_SEV_LOW],
             ev->findings_open[VG_SEV_INFO], ev->findings_suppressed);
}

static void render_md(const struct vg_report *r, const struct vg_report_evidence *ev,
                      const struct texts *t, FILE *f)
{
    char buf[512];
    fputs("# Compliance evidence report\n\n", f);
    header_facts(ev, t, buf, sizeof buf);
    md_text(f, buf);
    fprintf(f, "\n\n**%u in place, %u partial, %u gap.** ", r->count[VG_REPORT_IN_PLACE],
            r->count[VG_REPORT_PARTIAL], r->count[VG_REPORT_GAP]);
    findings_line(ev, buf, sizeof buf);
    md_text(f, buf);
    fputs("\n\n| Reference | Safeguard | Obligation | Status |\n|---|---|---|---|\n", f);
    for (size_t i = 0; i < r->n_items; i++) {
        const struct vg_report_item *it = &r->items[i];
        fprintf(f, "| %s%s | ", it->framework == VG_FW_ETSI ? "EN 303 645 " : "", it->ref);
        md_text(f, it->title);
        fprintf(f, " | %s | %s |\n", vg_obligation_name(it->obligation),
                it->status == VG_REPORT_IN_PLACE ? "in place"
                : it->status == VG_REPORT_PARTIAL ? "**partial**"
                                                  : "**GAP**");
    }
    int fw = -1;
    for (size_t i = 0; i < r->n_items; i++) {
        const struct vg_report_item *it = &r->items[i];
        if ((int)it->framework != fw) {
            fw = (int)it->framework;
            fputs("\n## ", f);
            md_text(f, vg_framework_title(it->framework));
            fputs("\n", f);
        }
        fprintf(f, "\n### %s%s ", it->framework == VG_FW_ETSI ? "Provision " : "§", it->ref);
        md_text(f, it->title);
        fprintf(f, "\n\n%s, **%s**.\n\n*Controls:* ", vg_obligation_name(it->obligation),
                vg_report_status_name(it->status));
        md_text(f, it->controls);
        fputs("\n\n*Evidence:*\n\n", f);
        for (size_t j = 0; j < it->n_evidence; j++) {
            fputs("- ", f);
            md_text(f, it->evidence[j]);
            fputc('\n', f);
        }
        if (it->n_issues) {
            fputs("\n*Gaps and remediation:*\n\n", f);
            for (size_t j = 0; j < it->n_issues; j++) {
                fprintf(f, "- **%s:** ", vg_report_status_name(it->issues[j].status));
                md_text(f, it->issues[j].what);
                fputs(" Remediation: ", f);
                md_text(f, it->issues[j].fix);
                fputc('\n', f);
            }
        }
    }
}

static void render_html(const struct vg_report *r, const struct vg_report_evidence *ev,
                        const struct texts *t, FILE *f)
{
    char buf[512];
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<title>Compliance evidence report</title>\n<style>\n"
          "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}\n"
          "table{border-collapse:collapse}td,th{border:1px solid #999;padding:.2em .5em;"
          "text-align:left}\n"
          ".gap{background:#f8d0d0}.partial{background:#fbecc0}.inplace{background:#d5efd5}\n"
          "code{background:#eee}\n</style>\n</head>\n<body>\n"
          "<h1>Compliance evidence report</h1>\n<p>",
          f);
    header_facts(ev, t, buf, sizeof buf);
    html_text(f, buf);
    fprintf(f, "</p>\n<p><strong>%u in place, %u partial, %u gap.</strong> ",
            r->count[VG_REPORT_IN_PLACE], r->count[VG_REPORT_PARTIAL], r->count[VG_REPORT_GAP]);
    findings_line(ev, buf, sizeof buf);
    html_text(f, buf);
    fputs("</p>\n<table>\n<thead><tr><th>Reference</th><th>Safeguard</th><th>Obligation</th>"
          "<th>Status</th></tr></thead>\n<tbody>\n",
          f);
    for (size_t i = 0; i < r->n_items; i++) {
        const struct vg_report_item *it = &r->items[i];
        fprintf(f, "<tr class=\"%s\"><td><a href=\"#item-%zu\">%s", status_class(it->status), i,
                it->framework == VG_FW_ETSI ? "EN 303 645 " : "");
        html_text(f, it->ref);
        fputs("</a></td><td>", f);
        html_text(f, it->title);
        fprintf(f, "</td><td>%s</td><td>%s</td></tr>\n", vg_obligation_name(it->obligation),
                vg_report_status_name(it->status));
    }
    fputs("</tbody>\n</table>\n", f);
    int fw = -1;
    for (size_t i = 0; i < r->n_items; i++) {
        const struct vg_report_item *it = &r->items[i];
        if ((int)it->framework != fw) {
            fw = (int)it->framework;
            fputs("<h2>", f);
            html_text(f, vg_framework_title(it->framework));
            fputs("</h2>\n", f);
        }
        fprintf(f, "<section id=\"item-%zu\">\n<h3>%s", i,
                it->framework == VG_FW_ETSI ? "Provision " : "§");
        html_text(f, it->ref);
        fputc(' ', f);
        html_text(f, it->title);
        fprintf(f, "</h3>\n<p>%s, <span class=\"%s\">%s</span></p>\n<p>Controls: ",
                vg_obligation_name(it->obligation), status_class(it->status),
                vg_report_status_name(it->status));
        html_rich(f, it->controls);
        fputs("</p>\n<p>Evidence:</p>\n<ul>\n", f);
        for (size_t j = 0; j < it->n_evidence; j++) {
            fputs("<li>", f);
            html_rich(f, it->evidence[j]);
            fputs("</li>\n", f);
        }
        fputs("</ul>\n", f);
        if (it->n_issues) {
            fputs("<p>Gaps and remediation:</p>\n<ul>\n", f);
            for (size_t j = 0; j < it->n_issues; j++) {
                fprintf(f, "<li class=\"%s\"><strong>%s:</strong> ",
                        status_class(it->issues[j].status),
                        vg_report_status_name(it->issues[j].status));
                html_rich(f, it->issues[j].what);
                fputs(" Remediation: ", f);
                html_rich(f, it->issues[j].fix);
                fputs("</li>\n", f);
            }
            fputs("</ul>\n", f);
        }
        fputs("</section>\n", f);
    }
    fputs("</body>\n</html>\n", f);
}

/* jansson helpers: any failure (memory, invalid UTF-8) makes the whole
 * document fail rather than come out incomplete. */
static int jset(json_t *o, const char *k, json_t *v)
{
    return v ? json_object_set_new(o, k, v) : -1;
}

static int jpush(json_t *a, json_t *v)
{
    return v ? json_array_append_new(a, v) : -1;
}

static json_t *jtime(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char iso[32];
    vg_time_format(ms, iso);
    return json_string(iso);
}

static json_t *json_item(const struct vg_report_item *it)
{
    json_t *o = json_object(), *ev = json_array(), *is = json_array();
    int rc = (o && ev && is) ? 0 : -1;
    rc |= jset(o, "ref", json_string(it->ref));
    rc |= jset(o, "title", json_string(it->title));
    rc |= jset(o, "obligation", json_string(vg_obligation_name(it->obligation)));
    rc |= jset(o, "status", json_string(vg_report_status_name(it->status)));
    rc |= jset(o, "controls", json_string(it->controls));
    for (size_t j = 0; ev && j < it->n_evidence; j++)
        rc |= jpush(ev, json_string(it->evidence[j]));
    for (size_t j = 0; is && j < it->n_issues; j++)
        rc |= jpush(is, json_pack("{s:s,s:s,s:s}", "status",
                                  vg_report_status_name(it->issues[j].status), "gap",
                                  it->issues[j].what, "remediation", it->issues[j].fix));
    if (o) {
        rc |= jset(o, "evidence", ev);
        rc |= jset(o, "gaps", is);
    } else {
        json_decref(ev);
        json_decref(is);
    }
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int render_json(const struct vg_report *r, const struct vg_report_evidence *ev,
                       const struct texts *t, FILE *f)
{
    json_t *root = json_object();
    if (!root)
        return -1;
    int rc = 0;
    rc |= jset(root, "report", json_string("compliance-evidence"));
    rc |= jset(root, "gateway", t->gateway[0] ? json_string(t->gateway) : json_null());
    rc |= jset(root, "version", t->version[0] ? json_string(t->version) : json_null());
    rc |= jset(root, "generated", jtime(ev->generated_ms));
    rc |= jset(root, "period", json_pack("{s:o,s:o}", "start", jtime(ev->period_start_ms), "end",
                                         jtime(ev->period_end_ms)));
    rc |= jset(root, "summary",
               json_pack("{s:i,s:i,s:i}", "in_place", (json_int_t)r->count[VG_REPORT_IN_PLACE],
                         "partial", (json_int_t)r->count[VG_REPORT_PARTIAL], "gap",
                         (json_int_t)r->count[VG_REPORT_GAP]));
    json_t *fo = json_object();
    for (unsigned s = 0; fo && s < VG_SEV_COUNT; s++)
        rc |= jset(fo, vg_severity_name((enum vg_severity)s),
                   json_integer((json_int_t)ev->findings_open[s]));
    rc |= jset(fo, "suppressed", json_integer((json_int_t)ev->findings_suppressed));
    rc |= jset(root, "findings_open", fo);

    json_t *sections = json_array();
    rc |= jset(root, "sections", sections);
    for (unsigned fw = 0; sections && fw < VG_FW_COUNT; fw++) {
        static const char *const ids[VG_FW_COUNT] = {"hipaa-164.312", "hipaa-164.308",
                                                     "etsi-en-303-645"};
        json_t *items = json_array();
        for (size_t i = 0; items && i < r->n_items; i++)
            if (r->items[i].framework == (enum vg_framework)fw)
                rc |= jpush(items, json_item(&r->items[i]));
        rc |= jpush(sections, json_pack("{s:s,s:s,s:o}", "id", ids[fw], "title",
                                        vg_framework_title((enum vg_framework)fw), "items",
                                        items));
    }
    if (rc == 0)
        rc = json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (rc == 0)
        fputc('\n', f);
    json_decref(root);
    return rc ? -1 : 0;
}

int vg_report_render(const struct vg_report_evidence *ev, enum vg_report_format fmt, FILE *out)
{
    struct vg_report *r = malloc(sizeof *r);
    if (!r)
        return -1;
    vg_report_assess(ev, r);
    struct texts t;
    vg_posture_clean(t.gateway, sizeof t.gateway, ev->gateway);
    vg_posture_clean(t.version, sizeof t.version, ev->version);
    vg_posture_clean(t.failure, sizeof t.failure, ev->audit_failure);
    int rc = 0;
    switch (fmt) {
    case VG_REPORT_MD: render_md(r, ev, &t, out); break;
    case VG_REPORT_HTML: render_html(r, ev, &t, out); break;
    case VG_REPORT_JSON: rc = render_json(r, ev, &t, out); break;
    default: rc = -1;
    }
    free(r);
    if (fflush(out) != 0 || ferror(out))
        rc = -1;
    return rc;
}

/* ---- the posture summary ---- */

static void fmt_num(double v, char out[32])
{
    if (isfinite(v) && v >= 0 && v < 1e18 && v == floor(v))
        fmt_count((uint64_t)v, out);
    else if (isfinite(v))
        snprintf(out, 32, "%.1f", v);
    else
        snprintf(out, 32, "?");
}

struct ranked {
    size_t index;
    unsigned score;
};

static int by_score(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

int vg_report_posture_summary(const struct vg_posture_summary_input *in, FILE *f)
{
    size_t n = in->n_devices;
    unsigned *score = calloc(n ? n : 1, sizeof *score);
    struct ranked *rank = calloc(n ? n : 1, sizeof *rank);
    if (!score || !rank) {
        free(score);
        free(rank);
        return -1;
    }
    struct vg_findings none = {0};
    const struct vg_findings *fs = in->findings ? in->findings : &none;
    vg_findings_risk(fs, n, score);

    unsigned band[VG_RISK_BAND_COUNT] = {0}, active = 0, quarantined = 0, revoked = 0;
    size_t nr = 0;
    for (size_t i = 0; i < n; i++) {
        const struct vg_posture_device *d = &in->devices[i];
        if (d->status == VG_DEVICE_REVOKED) {
            revoked++;
            continue; /* out of service: not part of the risk picture */
        }
        if (d->status == VG_DEVICE_QUARANTINED)
            quarantined++;
        else
            active++;
        band[vg_risk_band(score[i])]++;
        if (score[i] > 0)
            rank[nr++] = (struct ranked){i, score[i]};
    }
    qsort(rank, nr, sizeof *rank, by_score);

    char now[32], c[5][32];
    fmt_time(in->now_ms, now);
    fprintf(f, "vigil posture at %s\n\n", now);
    fmt_count(n, c[0]);
    fmt_count(active, c[1]);
    fmt_count(quarantined, c[2]);
    fmt_count(revoked, c[3]);
    fprintf(f, "Devices       %s: %s active, %s quarantined, %s revoked\n", c[0], c[1], c[2],
            c[3]);
    for (int b = VG_RISK_CRITICAL; b >= VG_RISK_NONE; b--)
        fmt_count(band[b], c[VG_RISK_CRITICAL - b]);
    fprintf(f, "  by risk     critical %s | high %s | medium %s | low %s | none %s\n", c[0],
            c[1], c[2], c[3], c[4]);
    if (nr) {
        fputs("  riskiest   ", f);
        for (size_t i = 0; i < nr && i < VG_SUMMARY_LIST_MAX; i++) {
            char id[VG_ID_MAX + 1];
            vg_posture_clean(id, sizeof id, in->devices[rank[i].index].id);
            fprintf(f, "%s %s %u (%s)", i ? "," : "", id, rank[i].score,
                    vg_risk_band_name(vg_risk_band(rank[i].score)));
        }
        fputc('\n', f);
    }

    unsigned open[VG_SEV_COUNT], suppressed = 0, total_open = 0;
    vg_findings_count(fs, open, &suppressed);
    for (int s = 0; s < VG_SEV_COUNT; s++)
        total_open += open[s];
    fprintf(f, "\nFindings      %u open: critical %u | high %u | medium %u | low %u | info %u"
               " (%u suppressed)\n",
            total_open, open[VG_SEV_CRITICAL], open[VG_SEV_HIGH], open[VG_SEV_MEDIUM],
            open[VG_SEV_LOW], open[VG_SEV_INFO], suppressed);
    unsigned shown = 0;
    for (size_t i = 0; i < fs->count && shown < VG_SUMMARY_LIST_MAX; i++) {
        const struct vg_finding *x = &fs->items[i];
        if (x->suppressed)
            continue;
        char title[sizeof x->title];
        vg_posture_clean(title, sizeof title, x->title);
        fprintf(f, "  %-9s %s\n", vg_severity_name(x->severity), title);
        shown++;
    }
    if (total_open > shown)
        fprintf(f, "  and %u more\n", total_open - shown);

    fprintf(f, "\nAlarms        %zu active\n", in->n_alarms);
    for (size_t i = 0; i < in->n_alarms && i < VG_SUMMARY_LIST_MAX; i++) {
        const struct vg_behavior_alarm *a = &in->alarms[i];
        char id[VG_ID_MAX + 1], rule[VG_BEHAVIOR_RULE_NAME_MAX], v[32], th[32], since[32];
        vg_posture_clean(id, sizeof id, a->device);
        vg_posture_clean(rule, sizeof rule, a->rule);
        fmt_num(a->value, v);
        fmt_num(a->threshold, th);
        fmt_time(a->since_ms, since);
        fprintf(f, "  %s: %s, %s %s %s %s, since %s (mitigation: %s)\n", id, rule,
                vg_metric_name(a->metric), v, vg_cmp_symbol(a->cmp), th, since,
                vg_mitigation_name(a->mitigation));
    }
    if (in->n_alarms > VG_SUMMARY_LIST_MAX)
        fprintf(f, "  and %zu more\n", in->n_alarms - VG_SUMMARY_LIST_MAX);

    fprintf(f, "\nQuarantined   %u", quarantined);
    unsigned q = 0;
    for (size_t i = 0; i < n && q < VG_SUMMARY_LIST_MAX; i++)
        if (in->devices[i].status == VG_DEVICE_QUARANTINED) {
            char id[VG_ID_MAX + 1];
            vg_posture_clean(id, sizeof id, in->devices[i].id);
            fprintf(f, "%s %s", q ? "," : ":", id);
            q++;
        }
    if (quarantined > q)
        fprintf(f, ", and %u more", quarantined - q);
    fputc('\n', f);

    free(score);
    free(rank);
    return (fflush(f) != 0 || ferror(f)) ? -1 : 0;
}
