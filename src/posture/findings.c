/* posture/findings — the fleet audit. The contract is in findings.h; what
 * each finding means and how to fix it is in docs/posture.md.
 */
#include "posture/findings.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS ((int64_t)86400000)

/* Remediation commands, in one place so they follow the CLI. Those marked
 * "planned" do not exist yet (docs/posture.md lists them). */
#define CMD_RENEW "vigil device renew %s --out DIR"     /* planned */
#define CMD_REVOKE "vigil device revoke %s"             /* planned */
#define CMD_QUARANTINE "vigil device quarantine %s"     /* planned */
#define CMD_LOCATE "vigil device set %s --location TEXT" /* planned */
#define CMD_TRAINING "vigil training record %s %s --date YYYY-MM-DD" /* planned */
#define CMD_ASSIGN "vigil device assign %s PATIENT"
#define CMD_TOTP "vigil user totp %s"
#define CMD_DISABLE "vigil user disable %s"
#define CMD_AUDIT_CONNECT "vigil audit list --action mqtt.connect"

static const char *const kind_names[VG_FIND_KIND_COUNT] = {
    "cert-expired",      "cert-expiring",      "cert-old",       "weak-key",
    "identity-shared",   "revoked-cert-used",  "device-silent",  "advisory",
    "advisory-review",   "device-no-patient",  "device-no-location", "mfa-missing",
    "account-unused",    "training-overdue",   "tls-legacy",     "audit-shipping-off",
    "retention-excess",
};

const char *vg_finding_kind_name(enum vg_finding_kind k)
{
    return (unsigned)k < VG_FIND_KIND_COUNT ? kind_names[k] : "unknown";
}

const char *vg_severity_name(enum vg_severity s)
{
    static const char *const n[VG_SEV_COUNT] = {"info", "low", "medium", "high", "critical"};
    return (unsigned)s < VG_SEV_COUNT ? n[s] : "unknown";
}

const char *vg_subject_name(enum vg_subject s)
{
    switch (s) {
    case VG_SUBJ_DEVICE: return "device";
    case VG_SUBJ_ACCOUNT: return "account";
    case VG_SUBJ_LISTENER: return "listener";
    case VG_SUBJ_GATEWAY: return "gateway";
    case VG_SUBJ_RETENTION: return "retention";
    }
    return "unknown";
}

const char *vg_tls_min_name(enum vg_tls_min v)
{
    switch (v) {
    case VG_TLS_MIN_NONE: return "plaintext";
    case VG_TLS_MIN_1_0: return "TLS 1.0";
    case VG_TLS_MIN_1_1: return "TLS 1.1";
    case VG_TLS_MIN_1_2: return "TLS 1.2";
    case VG_TLS_MIN_1_3: return "TLS 1.3";
    }
    return "unknown";
}

/* CVSS v3.1 specification, section 5 "Qualitative Severity Rating Scale". */
enum vg_severity vg_severity_from_cvss(double score)
{
    if (!isfinite(score) || score < 0)
        return VG_SEV_MEDIUM;
    if (score >= 9.0)
        return VG_SEV_CRITICAL;
    if (score >= 7.0)
        return VG_SEV_HIGH;
    if (score >= 4.0)
        return VG_SEV_MEDIUM;
    if (score > 0.0)
        return VG_SEV_LOW;
    return VG_SEV_INFO;
}

enum vg_risk_band vg_risk_band(unsigned score)
{
    if (score >= 75)
        return VG_RISK_CRITICAL;
    if (score >= 40)
        return VG_RISK_HIGH;
    if (score >= 15)
        return VG_RISK_MEDIUM;
    if (score >= 1)
        return VG_RISK_LOW;
    return VG_RISK_NONE;
}

const char *vg_risk_band_name(enum vg_risk_band b)
{
    static const char *const n[VG_RISK_BAND_COUNT] = {"none", "low", "medium", "high",
                                                      "critical"};
    return (unsigned)b < VG_RISK_BAND_COUNT ? n[b] : "unknown";
}

/* ---- small helpers ---- */

static int present(const char *s)
{
    return s && *s;
}

void vg_posture_clean(char *dst, size_t size, const char *src)
{
    if (size == 0)
        return;
    size_t i = 0;
    for (; src && src[i] && i + 1 < size; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c < 0x20 || c == 0x7f) ? ' ' : c == '`' ? '\'' : (char)c;
    }
    dst[i] = '\0';
    vg_posture_utf8_fix(dst);
}

/* Truncation by snprintf can cut a character in two, and these strings go
 * into JSON, which must be valid UTF-8. */
void vg_posture_utf8_fix(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                                 : (c & 0xf8) == 0xf0 ? 4 : 0;
        int ok = n > 0 && !(c == 0xc0 || c == 0xc1 || c > 0xf4);
        for (size_t i = 1; ok && i < n; i++)
            ok = (p[i] & 0xc0) == 0x80;
        if (ok && n == 3) {
            unsigned cp = ((c & 0x0fu) << 12) | ((p[1] & 0x3fu) << 6);
            ok = cp >= 0x800 && !(cp >= 0xd800 && cp <= 0xdfff);
        } else if (ok && n == 4) {
            unsigned cp = ((c & 0x07u) << 18) | ((p[1] & 0x3fu) << 12);
            ok = cp >= 0x10000 && cp <= 0x10ffff;
        }
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

static void date_of(int64_t ms, char out[11])
{
    char full[32];
    vg_time_format(ms, full);
    memcpy(out, full, 10);
    out[10] = '\0';
}

static int64_t whole_days(int64_t ms)
{
    return ms / DAY_MS;
}

static int has_word(const char *set, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = set; p && *p;) {
        while (*p == ' ')
            p++;
        const char *end = p;
        while (*end && *end != ' ')
            end++;
        if ((size_t)(end - p) == n && !memcmp(p, word, n))
            return 1;
        p = end;
    }
    return 0;
}

/* Advisory ids come from imported documents: printable ASCII without spaces
 * (a key stays one word) or backticks (they delimit commands in texts). */
static int advisory_id_ok(const char *s)
{
    size_t n = s ? strnlen(s, VG_ADVISORY_ID_MAX + 1) : 0;
    if (n == 0 || n > VG_ADVISORY_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '`')
            return 0;
    return 1;
}

/* ---- building the list ---- */

struct ctx {
    const struct vg_posture_snapshot *s;
    struct vg_findings *out;
    char *err;
    size_t err_size;
    const struct vg_posture_device **by_id; /* devices sorted by id */
};

static int fail(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->err_size, fmt, ap);
    va_end(ap);
    return -1;
}

/* A new zeroed finding with its key "kind:subject[:extra]"; NULL on failure
 * (err set). */
static struct vg_finding *add(struct ctx *c, enum vg_finding_kind kind, enum vg_severity sev,
                              enum vg_subject st, const char *subject, long dev_index,
                              const char *extra)
{
    struct vg_findings *f = c->out;
    if (f->count == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        if (cap > SIZE_MAX / sizeof *f->items) {
            fail(c, "fleet audit: out of memory");
            return NULL;
        }
        struct vg_finding *n = realloc(f->items, cap * sizeof *n);
        if (!n) {
            fail(c, "fleet audit: out of memory");
            return NULL;
        }
        f->items = n;
        f->cap = cap;
    }
    struct vg_finding *x = &f->items[f->count];
    memset(x, 0, sizeof *x);
    int len = extra ? snprintf(x->key, sizeof x->key, "%s:%s:%s", kind_names[kind], subject, extra)
                    : snprintf(x->key, sizeof x->key, "%s:%s", kind_names[kind], subject);
    if (len < 0 || (size_t)len >= sizeof x->key) {
        fail(c, "fleet audit: finding key too long for %s", subject);
        return NULL;
    }
    x->kind = kind;
    x->severity = sev;
    x->subject_type = st;
    vg_strlcpy(x->subject, subject, sizeof x->subject);
    x->device_index = dev_index;
    f->count++;
    return x;
}

/* ---- devices ---- */

static void describe(const struct vg_posture_device *d, char *out, size_t size);

static int curve_approved(const char *c)
{
    static const char *const ok[] = {"P-256", "prime256v1", "secp256r1",
                                     "P-384", "secp384r1"};
    for (size_t i = 0; c && i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(c, ok[i]))
            return 1;
    return 0;
}

static int64_t expected_interval_s(const struct vg_posture_policy *p, const char *cls)
{
    for (size_t i = 0; present(cls) && i < p->n_intervals; i++)
        if (p->intervals[i].device_class && !strcmp(p->intervals[i].device_class, cls))
            return p->intervals[i].interval_s;
    return p->default_interval_s;
}

static int cert_findings(struct ctx *c, const struct vg_posture_device *d, long idx)
{
    const struct vg_posture_policy *p = &c->s->policy;
    int64_t now = c->s->now_ms;
    struct vg_finding *x;
    char date[11];
    date_of(d->cert_not_after_ms, date);

    if (d->cert_not_after_ms <= now) {
        if (!(x = add(c, VG_FIND_CERT_EXPIRED, VG_SEV_HIGH, VG_SUBJ_DEVICE, d->id, idx, NULL)))
            return -1;
        snprintf(x->title, sizeof x->title, "Device %s: certificate expired", d->id);
        snprintf(x->explanation, sizeof x->explanation,
                 "The certificate of device %s expired on %s. vigil refuses its TLS "
                 "handshake, so the device cannot send readings until it has a new one.",
                 d->id, date);
        snprintf(x->remediation, sizeof x->remediation,
                 "Issue a new certificate with `" CMD_RENEW "` and install it on the device.",
                 d->id);
    } else if (p->cert_expiry_warn_days > 0 &&
               d->cert_not_after_ms - now <= p->cert_expiry_warn_days * DAY_MS) {
        int64_t left = whole_days(d->cert_not_after_ms - now);
        enum vg_severity sev = left < 7 ? VG_SEV_HIGH : VG_SEV_MEDIUM;
        if (!(x = add(c, VG_FIND_CERT_EXPIRING, sev, VG_SUBJ_DEVICE, d->id, idx, NULL)))
            return -1;
        snprintf(x->title, sizeof x->title, "Device %s: certificate expires in %lld days",
                 d->id, (long long)left);
        snprintf(x->explanation, sizeof x->explanation,
                 "The certificate of device %s expires on %s. From then on vigil refuses "
                 "the device and its readings stop.",
                 d->id, date);
        snprintf(x->remediation, sizeof x->remediation,
                 "Before %s, issue a new certificate with `" CMD_RENEW
                 "` and install it on the device.",
                 date, d->id);
    }

    if (p->cert_max_age_days > 0 && d->cert_not_before_ms > 0 &&
        now - d->cert_not_before_ms > p->cert_max_age_days * DAY_MS) {
        date_of(d->cert_not_before_ms, date);
        if (!(x = add(c, VG_FIND_CERT_OLD, VG_SEV_LOW, VG_SUBJ_DEVICE, d->id, idx, NULL)))
            return -1;
        snprintf(x->title, sizeof x->title, "Device %s: certificate older than %lld days",
                 d->id, (long long)p->cert_max_age_days);
        snprintf(x->explanation, sizeof x->explanation,
                 "The certificate of device %s was issued on %s, %lld days ago; policy allows "
                 "%lld. The longer one key is in use, the longer a copied key stays useful.",
                 d->id, date, (long long)whole_days(now - d->cert_not_before_ms),
                 (long long)p->cert_max_age_days);
        snprintf(x->remediation, sizeof x->remediation,
                 "Issue a new certificate and key with `" CMD_RENEW
                 "` and install them on the device.",
                 d->id);
    }

    const char *weak = NULL;
    char why[160];
    enum vg_severity sev = VG_SEV_CRITICAL;
    char curve[48];
    vg_posture_clean(curve, sizeof curve, d->key_curve);
    switch (d->key_type) {
    case VG_KEY_RSA:
        if (d->key_bits < 2048) {
            snprintf(why, sizeof why, "an RSA key of %u bits (at least 2048 are needed)",
                     d->key_bits);
            weak = why;
        }
        break;
    case VG_KEY_EC:
        if (!curve_approved(d->key_curve)) {
            snprintf(why, sizeof why,
                     "an elliptic-curve key on %s, not one of the approved curves P-256 and "
                     "P-384",
                     curve[0] ? curve : "an unnamed curve");
            weak = why;
        }
        break;
    case VG_KEY_ED25519:
    case VG_KEY_ED448:
        break;
    case VG_KEY_UNKNOWN:
        snprintf(why, sizeof why, "a key of a type the audit could not identify");
        weak = why;
        sev = VG_SEV_HIGH;
        break;
    default:
        return fail(c, "fleet audit: device %s: unknown key type", d->id);
    }
    if (weak) {
        if (!(x = add(c, VG_FIND_WEAK_KEY, sev, VG_SUBJ_DEVICE, d->id, idx, NULL)))
            return -1;
        snprintf(x->title, sizeof x->title, "Device %s: weak certificate key", d->id);
        snprintf(x->explanation, sizeof x->explanation,
                 "Device %s authenticates with %s. A key that can be broken lets someone "
                 "else impersonate the device and send readings in its name.",
                 d->id, weak);
        snprintf(x->remediation, sizeof x->remediation,
                 "Issue a new certificate with `" CMD_RENEW
                 "` (vigil generates a P-256 key) and install it on the device.",
                 d->id);
    }
    return 0;
}

static int device_findings(struct ctx *c, const struct vg_posture_device *d, long idx)
{
    const struct vg_posture_policy *p = &c->s->policy;
    int64_t now = c->s->now_ms;
    struct vg_finding *x;
    char date[11];

    if ((unsigned)d->status > VG_DEVICE_QUARANTINED)
        return fail(c, "fleet audit: device %s: unknown status", d->id);

    if (d->revoked_cert_attempts > 0) {
        if (!(x = add(c, VG_FIND_REVOKED_CERT_USED, VG_SEV_MEDIUM, VG_SUBJ_DEVICE, d->id, idx,
                      NULL)))
            return -1;
        snprintf(x->title, sizeof x->title, "Device %s: revoked certificate still in use",
                 d->id);
        snprintf(x->explanation, sizeof x->explanation,
                 "Since the last audit, %u connection attempts presented a revoked certificate "
                 "of device %s. vigil refused them, but something still holds that "
                 "certificate and its key: a device that was not taken out of service, or a "
                 "copy.",
                 d->revoked_cert_attempts, d->id);
        snprintf(x->remediation, sizeof x->remediation,
                 "Find where the attempts come from with `" CMD_AUDIT_CONNECT
                 "` (source addresses), then retrieve or wipe that device.");
    }
    /* A revoked device is out of service: only the attempts above matter. */
    if (d->status == VG_DEVICE_REVOKED)
        return 0;

    if (cert_findings(c, d, idx) != 0)
        return -1;

    if (d->concurrent_sessions > 1) {
        if (!(x = add(c, VG_FIND_IDENTITY_SHARED, VG_SEV_CRITICAL, VG_SUBJ_DEVICE, d->id, idx,
                      NULL)))
            return -1;
        snprintf(x->title, sizeof x->title, "Device %s: identity used by two devices at once",
                 d->id);
        snprintf(x->explanation, sizeof x->explanation,
                 "Up to %u sessions were seen at the same time with the certificate or client "
                 "id of device %s. One device has one session: the credential has been "
                 "copied, and readings in its name may not come from it.",
                 d->concurrent_sessions, d->id);
        snprintf(x->remediation, sizeof x->remediation,
                 "Revoke the certificate with `" CMD_REVOKE
                 "`, issue a new one to the genuine device with `" CMD_RENEW
                 "`, and find the copy from the source addresses in `" CMD_AUDIT_CONNECT "`.",
                 d->id, d->id);
    }

    int64_t interval = expected_interval_s(p, d->device_class);
    if (d->status == VG_DEVICE_ACTIVE && interval > 0) {
        int64_t since = d->last_seen_ms > 0 ? d->last_seen_ms : d->enrolled_ms;
        if (now - since > interval * 1000) {
            enum vg_severity sev = present(d->patient) ? VG_SEV_MEDIUM : VG_SEV_LOW;
            if (!(x = add(c, VG_FIND_DEVICE_SILENT, sev, VG_SUBJ_DEVICE, d->id, idx, NULL)))
                return -1;
            char cls[VG_ID_MAX + 1];
            vg_posture_clean(cls, sizeof cls,
                             present(d->device_class) ? d->device_class : "its class");
            date_of(since, date);
            if (d->last_seen_ms > 0) {
                snprintf(x->title, sizeof x->title, "Device %s: not seen since %s", d->id, date);
                snprintf(x->explanation, sizeof x->explanation,
                         "Device %s last connected on %s, longer ago than the %lld seconds "
                         "expected of %s.%s",
                         d->id, date, (long long)interval, cls,
                         present(d->patient) ? " It is assigned to a patient whose readings "
                                               "are therefore missing."
                                             : "");
            } else {
                snprintf(x->title, sizeof x->title, "Device %s: never connected", d->id);
                snprintf(x->explanation, sizeof x->explanation,
                         "Device %s was enrolled on %s and has never connected (%s is "
                         "expected every %lld seconds).%s",
                         d->id, date, cls, (long long)interval,
                         present(d->patient) ? " It is assigned to a patient." : "");
            }
            snprintf(x->remediation, sizeof x->remediation,
                     "Check the device's power, network and certificate. If it has been taken "
                     "out of service, revoke it with `" CMD_REVOKE "`.",
                     d->id);
        }
    }

    if (d->status == VG_DEVICE_ACTIVE && !present(d->patient)) {
        if (!(x = add(c, VG_FIND_NO_PATIENT, VG_SEV_LOW, VG_SUBJ_DEVICE, d->id, idx, NULL)))
            return -1;
        snprintf(x->title, sizeof x->title, "Device %s: not assigned to a patient", d->id);
        snprintf(x->explanation, sizeof x->explanation,
                 "Device %s is active but assigned to no patient, so vigil refuses its "
                 "readings; an active device nobody accounts for is also easy to lose.",
                 d->id);
        snprintf(x->remediation, sizeof x->remediation,
                 "Assign it with `" CMD_ASSIGN "`, or revoke it with `" CMD_REVOKE
                 "` if it is not in use.",
                 d->id, d->id);
    }
    if (!present(d->location)) {
        if (!(x = add(c, VG_FIND_NO_LOCATION, VG_SEV_LOW, VG_SUBJ_DEVICE, d->id, idx, NULL)))
            return -1;
        snprintf(x->title, sizeof x->title, "Device %s: no location recorded", d->id);
        char what[210];
        describe(d, what, sizeof what);
        snprintf(x->explanation, sizeof x->explanation,
                 "The inventory does not say where device %s%s is. Without a location it "
                 "cannot be found quickly to update, quarantine or retrieve it.",
                 d->id, what);
        snprintf(x->remediation, sizeof x->remediation,
                 "Record where it is with `" CMD_LOCATE "`.", d->id);
    }
    return 0;
}

/* " (Acme M1, serial SN1)" from the inventory, or "" when it says nothing:
 * what someone looking for the device needs. */
static void describe(const struct vg_posture_device *d, char *out, size_t size)
{
    char maker[64], model[64], serial[64];
    vg_posture_clean(maker, sizeof maker, d->manufacturer);
    vg_posture_clean(model, sizeof model, d->model);
    vg_posture_clean(serial, sizeof serial, d->serial);
    if (!maker[0] && !model[0] && !serial[0]) {
        out[0] = '\0';
        return;
    }
    snprintf(out, size, " (%s%s%s%s%s)", maker, maker[0] && model[0] ? " " : "", model,
             serial[0] ? (maker[0] || model[0] ? ", serial " : "serial ") : "", serial);
}

static int cmp_dev_id(const void *a, const void *b)
{
    const struct vg_posture_device *x = *(const struct vg_posture_device *const *)a;
    const struct vg_posture_device *y = *(const struct vg_posture_device *const *)b;
    return strcmp(x->id, y->id);
}

static int cmp_dev_fp(const void *a, const void *b)
{
    const struct vg_posture_device *x = *(const struct vg_posture_device *const *)a;
    const struct vg_posture_device *y = *(const struct vg_posture_device *const *)b;
    int r = strcmp(x->cert_fingerprint, y->cert_fingerprint);
    return r ? r : strcmp(x->id, y->id);
}

/* Two device records holding the same certificate: each is told which other
 * device shares it. */
static int shared_fingerprints(struct ctx *c)
{
    const struct vg_posture_snapshot *s = c->s;
    const struct vg_posture_device **v = malloc((s->n_devices ? s->n_devices : 1) * sizeof *v);
    if (!v)
        return fail(c, "fleet audit: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < s->n_devices; i++)
        if (s->devices[i].status != VG_DEVICE_REVOKED && present(s->devices[i].cert_fingerprint))
            v[n++] = &s->devices[i];
    qsort(v, n, sizeof *v, cmp_dev_fp);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct vg_posture_device *other = NULL;
        if (i > 0 && !strcmp(v[i - 1]->cert_fingerprint, v[i]->cert_fingerprint))
            other = v[i - 1];
        else if (i + 1 < n && !strcmp(v[i + 1]->cert_fingerprint, v[i]->cert_fingerprint))
            other = v[i + 1];
        if (!other)
            continue;
        const struct vg_posture_device *d = v[i];
        struct vg_finding *x = add(c, VG_FIND_IDENTITY_SHARED, VG_SEV_CRITICAL, VG_SUBJ_DEVICE,
                                   d->id, (long)(d - s->devices), NULL);
        if (!x) {
            rc = -1;
            break;
        }
        snprintf(x->title, sizeof x->title, "Device %s: certificate shared with %s", d->id,
                 other->id);
        snprintf(x->explanation, sizeof x->explanation,
                 "Devices %s and %s are enrolled with the very same certificate. Either can "
                 "pose as the other, so readings cannot be told apart by device.",
                 d->id, other->id);
        snprintf(x->remediation, sizeof x->remediation,
                 "Revoke the certificate with `" CMD_REVOKE
                 "` and issue each device its own with `" CMD_RENEW "`.",
                 d->id, d->id);
    }
    free(v);
    return rc;
}

static int advisory_findings(struct ctx *c)
{
    const struct vg_posture_snapshot *s = c->s;
    for (size_t i = 0; i < s->n_advisories; i++) {
        const struct vg_posture_advisory *a = &s->advisories[i];
        if (!a->device || !vg_id_valid(a->device))
            return fail(c, "fleet audit: advisory match %zu: invalid device id", i);
        if (!advisory_id_ok(a->advisory))
            return fail(c, "fleet audit: advisory match %zu: invalid advisory id", i);
        struct vg_posture_device key = {.id = a->device};
        const struct vg_posture_device *kp = &key, **hit = NULL;
        if (s->n_devices)
            hit = bsearch(&kp, c->by_id, s->n_devices, sizeof *c->by_id, cmp_dev_id);
        const struct vg_posture_device *d = hit ? *hit : NULL;
        /* A revoked device is out of service; an unknown one still gets its
         * finding (never silence). */
        if (d && d->status == VG_DEVICE_REVOKED)
            continue;
        long idx = d ? (long)(d - s->devices) : -1;

        enum vg_severity sev = vg_severity_from_cvss(a->cvss);
        enum vg_finding_kind kind = VG_FIND_ADVISORY;
        if (!a->affected) {
            /* Unknown version: one band lower, never below low. */
            kind = VG_FIND_ADVISORY_REVIEW;
            sev = sev > VG_SEV_LOW ? sev - 1 : VG_SEV_LOW;
        }
        struct vg_finding *x = add(c, kind, sev, VG_SUBJ_DEVICE, a->device, idx, a->advisory);
        if (!x)
            return -1;
        char fw[64], cves[200], score[32], fix[320];
        int fw_known = d && present(d->firmware);
        vg_posture_clean(fw, sizeof fw, fw_known ? d->firmware : "unknown");
        vg_posture_clean(cves, sizeof cves, present(a->cves) ? a->cves : "no CVE listed");
        vg_posture_clean(fix, sizeof fix,
                         present(a->remediation) ? a->remediation
                         : a->affected           ? "See the advisory for a fix."
                                                 : "follow the advisory's remediation.");
        if (isfinite(a->cvss) && a->cvss >= 0)
            snprintf(score, sizeof score, "CVSS %.1f", a->cvss);
        else
            snprintf(score, sizeof score, "CVSS unknown");
        if (a->affected) {
            snprintf(x->title, sizeof x->title, "Device %s: firmware affected by %s", a->device,
                     a->advisory);
            char what[210] = "";
            if (d)
                describe(d, what, sizeof what);
            snprintf(x->explanation, sizeof x->explanation,
                     "Advisory %s (%s; %s) applies to the firmware of device %s%s, version %s.",
                     a->advisory, cves, score, a->device, what, fw);
            snprintf(x->remediation, sizeof x->remediation,
                     "%s Until the device is updated, consider `" CMD_QUARANTINE "`.", fix,
                     a->device);
        } else {
            snprintf(x->title, sizeof x->title, "Device %s: check by hand against %s",
                     a->device, a->advisory);
            snprintf(x->explanation, sizeof x->explanation,
                     "Advisory %s (%s; %s) names this model, but whether the firmware of "
                     "device %s (version %s) is affected could not be decided automatically.",
                     a->advisory, cves, score, a->device, fw);
            snprintf(x->remediation, sizeof x->remediation,
                     "%s%s%s the advisory's affected versions. If it is affected: %s If not, "
                     "suppress this finding, giving that as the reason.",
                     fw_known ? "Compare version " : "Read the firmware version from the device "
                                                     "and compare it with",
                     fw_known ? fw : "", fw_known ? " with" : "", fix);
        }
    }
    return 0;
}

/* ---- accounts ---- */

static int account_findings(struct ctx *c, const struct vg_posture_account *a)
{
    const struct vg_posture_policy *p = &c->s->policy;
    int64_t now = c->s->now_ms;
    struct vg_finding *x;
    char date[11];
    if (a->disabled)
        return 0;
    int admin = has_word(a->roles, "admin");

    if (!a->is_service && !a->mfa_enrolled) {
        if (!(x = add(c, VG_FIND_MFA_MISSING, admin ? VG_SEV_HIGH : VG_SEV_MEDIUM,
                      VG_SUBJ_ACCOUNT, a->id, -1, NULL)))
            return -1;
        snprintf(x->title, sizeof x->title, "%s %s has no second factor",
                 admin ? "Administrator" : "Account", a->id);
        snprintf(x->explanation, sizeof x->explanation,
                 "%s signs in with a password alone, so a guessed or phished password is "
                 "enough to act as them%s.",
                 a->id, admin ? ", with administrator rights over accounts and devices" : "");
        snprintf(x->remediation, sizeof x->remediation,
                 "Enroll an authenticator with `" CMD_TOTP "` and have them scan the code.",
                 a->id);
    }

    if (p->account_unused_days > 0) {
        int64_t since = a->last_used_ms > 0 ? a->last_used_ms : a->created_ms;
        if (now - since > p->account_unused_days * DAY_MS) {
            if (!(x = add(c, VG_FIND_ACCOUNT_UNUSED, admin ? VG_SEV_MEDIUM : VG_SEV_LOW,
                          VG_SUBJ_ACCOUNT, a->id, -1, NULL)))
                return -1;
            date_of(since, date);
            snprintf(x->title, sizeof x->title, "Account %s unused for %lld days", a->id,
                     (long long)whole_days(now - since));
            snprintf(x->explanation, sizeof x->explanation,
                     "%s %s has not been used since %s (policy: %lld days). An account "
                     "nobody uses is one nobody would notice being misused.",
                     a->is_service ? "Service principal" : "Account", a->id,
                     a->last_used_ms > 0 ? date : "its creation",
                     (long long)p->account_unused_days);
            snprintf(x->remediation, sizeof x->remediation,
                     "If it is no longer needed, disable it with `" CMD_DISABLE "`.", a->id);
        }
    }

    if (a->is_service || p->training_period_days <= 0)
        return 0;
    for (size_t i = 0; i < p->n_required_courses; i++) {
        const char *course = p->required_courses[i];
        int64_t done = 0;
        for (size_t j = 0; j < a->n_training; j++)
            if (a->training[j].course && !strcmp(a->training[j].course, course) &&
                a->training[j].completed_ms > done)
                done = a->training[j].completed_ms;
        if (done > 0 && now - done <= p->training_period_days * DAY_MS)
            continue;
        if (!(x = add(c, VG_FIND_TRAINING_OVERDUE, done ? VG_SEV_LOW : VG_SEV_MEDIUM,
                      VG_SUBJ_ACCOUNT, a->id, -1, course)))
            return -1;
        snprintf(x->title, sizeof x->title, "%s: security training \"%s\" overdue", a->id,
                 course);
        if (done) {
            date_of(done, date);
            snprintf(x->explanation, sizeof x->explanation,
                     "%s last completed \"%s\" on %s; it must be repeated every %lld days "
                     "(HIPAA 164.308(a)(5), security awareness and training).",
                     a->id, course, date, (long long)p->training_period_days);
        } else {
            snprintf(x->explanation, sizeof x->explanation,
                     "%s has no record of completing the required course \"%s\" (HIPAA "
                     "164.308(a)(5), security awareness and training).",
                     a->id, course);
        }
        snprintf(x->remediation, sizeof x->remediation,
                 "Have them complete the course, then record it with `" CMD_TRAINING "`.",
                 a->id, course);
    }
    return 0;
}

/* ---- configuration ---- */

static int config_findings(struct ctx *c)
{
    const struct vg_posture_config *cfg = &c->s->config;
    const struct vg_posture_policy *p = &c->s->policy;
    struct vg_finding *x;

    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct vg_posture_listener *l = &cfg->listeners[i];
        if (!l->name || !vg_id_valid(l->name))
            return fail(c, "fleet audit: listener %zu: invalid name", i);
        if ((unsigned)l->min_tls > VG_TLS_MIN_1_3)
            return fail(c, "fleet audit: listener %s: unknown TLS version", l->name);
        if (l->min_tls == VG_TLS_MIN_1_3)
            continue;
        enum vg_severity sev = l->min_tls == VG_TLS_MIN_NONE  ? VG_SEV_CRITICAL
                               : l->min_tls == VG_TLS_MIN_1_2 ? VG_SEV_MEDIUM
                                                          : VG_SEV_HIGH;
        if (!(x = add(c, VG_FIND_TLS_LEGACY, sev, VG_SUBJ_LISTENER, l->name, -1, NULL)))
            return -1;
        char addr[80];
        vg_posture_clean(addr, sizeof addr,
                         present(l->address) ? l->address : "its configured address");
        snprintf(x->title, sizeof x->title, "Listener %s accepts %s", l->name,
                 vg_tls_min_name(l->min_tls));
        if (l->min_tls == VG_TLS_MIN_NONE)
            snprintf(x->explanation, sizeof x->explanation,
                     "Listener %s on %s accepts connections without TLS: credentials and "
                     "readings cross the network readable and alterable by anyone on the "
                     "path.",
                     l->name, addr);
        else
            snprintf(x->explanation, sizeof x->explanation,
                     "Listener %s on %s accepts %s. vigil's baseline is TLS 1.3 only: older "
                     "versions keep weaker handshakes and cipher suites%s.",
                     l->name, addr, vg_tls_min_name(l->min_tls),
                     l->min_tls == VG_TLS_MIN_1_2 ? "" : ", and TLS 1.0 and 1.1 are deprecated "
                                                     "(RFC 8996)");
        snprintf(x->remediation, sizeof x->remediation,
                 "Allow TLS 1.3 only on listener %s in vigil.conf once its clients support it, "
                 "then restart `vigil serve`.",
                 l->name);
    }

    if ((unsigned)cfg->audit_shipping > VG_SHIPPING_FAILING)
        return fail(c, "fleet audit: unknown audit shipping state");
    if (cfg->audit_shipping != VG_SHIPPING_ON) {
        int failing = cfg->audit_shipping == VG_SHIPPING_FAILING;
        if (!(x = add(c, VG_FIND_AUDIT_SHIPPING, failing ? VG_SEV_MEDIUM : VG_SEV_LOW,
                      VG_SUBJ_GATEWAY, "gateway", -1, NULL)))
            return -1;
        snprintf(x->title, sizeof x->title, "Audit trail %s",
                 failing ? "shipping is failing" : "is not shipped off the gateway");
        snprintf(x->explanation, sizeof x->explanation,
                 "%s The hash chain shows tampering but cannot bring back records destroyed "
                 "together with the gateway; a copy in a SIEM can, and lets the security "
                 "team see events as they happen.",
                 failing ? "vigil is configured to ship its audit trail to a syslog receiver "
                           "but the feed is failing."
                         : "The audit trail is kept only on this gateway.");
        snprintf(x->remediation, sizeof x->remediation,
                 "%s", failing ? "Check that the receiver set by `syslog` under `[audit]` in "
                                 "vigil.conf is reachable and that its certificate is signed by "
                                 "`syslog_ca`."
                               : "Set `syslog = HOST:PORT` and `syslog_ca = FILE` under "
                                 "`[audit]` in vigil.conf and restart `vigil serve`.");
    }

    for (size_t i = 0; i < cfg->n_retention; i++) {
        const struct vg_posture_retention *r = &cfg->retention[i];
        if (!r->category || !vg_id_valid(r->category))
            return fail(c, "fleet audit: retention %zu: invalid category", i);
        int64_t limit = p->max_retention_days;
        for (size_t j = 0; j < p->n_retention_limits; j++)
            if (p->retention_limits[j].category &&
                !strcmp(p->retention_limits[j].category, r->category))
                limit = p->retention_limits[j].max_days;
        if (limit <= 0) /* 0: no general limit; -1: this category may be kept */
            continue;
        if (r->days >= 0 && r->days <= limit)
            continue;
        if (!(x = add(c, VG_FIND_RETENTION_EXCESS, VG_SEV_MEDIUM, VG_SUBJ_RETENTION,
                      r->category, -1, NULL)))
            return -1;
        char kept[48];
        if (r->days < 0)
            snprintf(kept, sizeof kept, "for ever");
        else
            snprintf(kept, sizeof kept, "for %lld days", (long long)r->days);
        snprintf(x->title, sizeof x->title, "Retention rule %s keeps data longer than policy",
                 r->category);
        snprintf(x->explanation, sizeof x->explanation,
                 "The retention rule %s keeps data %s; policy allows %lld days. Data kept "
                 "beyond its purpose only adds to what a breach could expose.",
                 r->category, kept, (long long)limit);
        snprintf(x->remediation, sizeof x->remediation,
                 "Set `%s = %lldd` (or less) under `[retention]` in vigil.conf and restart "
                 "`vigil serve`.",
                 r->category, (long long)limit);
    }
    return 0;
}

/* ---- ordering, duplicates, suppressions ---- */

static int by_key_then_severity(const void *a, const void *b)
{
    const struct vg_finding *x = a, *y = b;
    int r = strcmp(x->key, y->key);
    if (r)
        return r;
    return (y->severity > x->severity) - (y->severity < x->severity);
}

static int by_severity_then_key(const void *a, const void *b)
{
    const struct vg_finding *x = a, *y = b;
    if (x->severity != y->severity)
        return x->severity > y->severity ? -1 : 1;
    return strcmp(x->key, y->key);
}

static void apply_suppressions(struct ctx *c, struct vg_finding *x)
{
    const struct vg_posture_snapshot *s = c->s;
    for (size_t i = 0; i < s->n_suppressions; i++) {
        const struct vg_posture_suppression *u = &s->suppressions[i];
        /* Only with a reason, only until it expires; of several, the one
         * that lasts longest. */
        if (!u->key || strcmp(u->key, x->key) || !present(u->reason) ||
            u->expires_ms <= s->now_ms)
            continue;
        if (x->suppressed && u->expires_ms <= x->suppress_expires_ms)
            continue;
        x->suppressed = 1;
        x->suppress_expires_ms = u->expires_ms;
        vg_posture_clean(x->suppress_reason, sizeof x->suppress_reason, u->reason);
        vg_posture_utf8_fix(x->suppress_reason);
    }
}

int vg_findings_audit(const struct vg_posture_snapshot *s, struct vg_findings *out, char *err,
                      size_t err_size)
{
    memset(out, 0, sizeof *out);
    struct ctx c = {.s = s, .out = out, .err = err, .err_size = err_size};
    int rc = -1;

    c.by_id = malloc((s->n_devices ? s->n_devices : 1) * sizeof *c.by_id);
    if (!c.by_id)
        return fail(&c, "fleet audit: out of memory");
    for (size_t i = 0; i < s->n_devices; i++) {
        if (!s->devices[i].id || !vg_id_valid(s->devices[i].id)) {
            fail(&c, "fleet audit: device %zu: invalid id", i);
            goto out;
        }
        c.by_id[i] = &s->devices[i];
    }
    qsort(c.by_id, s->n_devices, sizeof *c.by_id, cmp_dev_id);
    for (size_t i = 1; i < s->n_devices; i++)
        if (!strcmp(c.by_id[i - 1]->id, c.by_id[i]->id)) {
            fail(&c, "fleet audit: device %s listed twice", c.by_id[i]->id);
            goto out;
        }
    for (size_t i = 0; i < s->n_devices; i++)
        if (device_findings(&c, &s->devices[i], (long)i) != 0)
            goto out;
    if (shared_fingerprints(&c) != 0 || advisory_findings(&c) != 0)
        goto out;
    for (size_t i = 0; i < s->policy.n_required_courses; i++) {
        const char *course = s->policy.required_courses[i];
        if (!course || !vg_id_valid(course)) {
            fail(&c, "fleet audit: required course %zu: invalid name", i);
            goto out;
        }
    }
    for (size_t i = 0; i < s->n_accounts; i++) {
        if (!s->accounts[i].id || !vg_id_valid(s->accounts[i].id)) {
            fail(&c, "fleet audit: account %zu: invalid id", i);
            goto out;
        }
        if (account_findings(&c, &s->accounts[i]) != 0)
            goto out;
    }
    if (config_findings(&c) != 0)
        goto out;

    /* One finding per key (the most severe), then the published order. */
    if (out->count > 1) /* items is NULL when there is none */
        qsort(out->items, out->count, sizeof *out->items, by_key_then_severity);
    size_t n = 0;
    for (size_t i = 0; i < out->count; i++)
        if (n == 0 || strcmp(out->items[n - 1].key, out->items[i].key))
            out->items[n++] = out->items[i];
    out->count = n;
    for (size_t i = 0; i < n; i++) {
        struct vg_finding *x = &out->items[i];
        vg_posture_utf8_fix(x->title);
        vg_posture_utf8_fix(x->explanation);
        vg_posture_utf8_fix(x->remediation);
        apply_suppressions(&c, x);
    }
    if (out->count > 1)
        qsort(out->items, out->count, sizeof *out->items, by_severity_then_key);
    rc = 0;
out:
    free(c.by_id);
    return rc;
}

void vg_findings_free(struct vg_findings *f)
{
    free(f->items);
    memset(f, 0, sizeof *f);
}

const struct vg_finding *vg_findings_get(const struct vg_findings *f, const char *key)
{
    for (size_t i = 0; i < f->count; i++)
        if (!strcmp(f->items[i].key, key))
            return &f->items[i];
    return NULL;
}

void vg_findings_count(const struct vg_findings *f, unsigned open[VG_SEV_COUNT],
                       unsigned *suppressed)
{
    memset(open, 0, VG_SEV_COUNT * sizeof *open);
    unsigned sup = 0;
    for (size_t i = 0; i < f->count; i++) {
        if (f->items[i].suppressed)
            sup++;
        else if ((unsigned)f->items[i].severity < VG_SEV_COUNT)
            open[f->items[i].severity]++;
    }
    if (suppressed)
        *suppressed = sup;
}

void vg_findings_risk(const struct vg_findings *f, size_t n_devices, unsigned *scores)
{
    static const unsigned weight[VG_SEV_COUNT] = {0, VG_RISK_WEIGHT_LOW, VG_RISK_WEIGHT_MEDIUM,
                                                  VG_RISK_WEIGHT_HIGH, VG_RISK_WEIGHT_CRITICAL};
    for (size_t i = 0; i < n_devices; i++)
        scores[i] = 0;
    for (size_t i = 0; i < f->count; i++) {
        const struct vg_finding *x = &f->items[i];
        if (x->suppressed || x->device_index < 0 || (size_t)x->device_index >= n_devices ||
            (unsigned)x->severity >= VG_SEV_COUNT)
            continue;
        unsigned *sc = &scores[x->device_index];
        *sc += weight[x->severity];
        if (*sc > 100)
            *sc = 100;
    }
}
