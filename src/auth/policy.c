#include "auth/policy.h"

#include <stdio.h>
#include <string.h>

static const char *const action_names[VG_ACT_COUNT] = {
    [VG_ACT_OBS_READ] = "obs.read",           [VG_ACT_OBS_SUBSCRIBE] = "obs.subscribe",
    [VG_ACT_BREAKGLASS] = "breakglass.open",  [VG_ACT_PATIENT_CREATE] = "patient.create",
    [VG_ACT_DEVICE_ENROLL] = "device.enroll", [VG_ACT_DEVICE_ASSIGN] = "device.assign",
    [VG_ACT_USER_MANAGE] = "user.manage",     [VG_ACT_AUDIT_READ] = "audit.read",
    [VG_ACT_STATS_READ] = "stats.read",       [VG_ACT_DEVICE_PUBLISH] = "device.publish",
    [VG_ACT_PATIENT_ERASE] = "patient.erase", [VG_ACT_KEYS_ROTATE] = "keys.rotate",
    [VG_ACT_POSTURE_READ] = "posture.read",   [VG_ACT_POSTURE_MANAGE] = "posture.manage",
    [VG_ACT_ALERTS_SUBSCRIBE] = "alerts.subscribe",
};

const char *vg_action_name(enum vg_action a)
{
    return a < VG_ACT_COUNT && action_names[a] ? action_names[a] : "unknown";
}

int vg_action_touches_patient(enum vg_action a)
{
    return a == VG_ACT_OBS_READ || a == VG_ACT_OBS_SUBSCRIBE || a == VG_ACT_BREAKGLASS;
}

/* Which roles may do the actions that do not depend on a relationship to a
 * patient. Everything absent is denied. */
static const struct {
    const char *role;
    enum vg_action action;
} role_grants[] = {
    {"admin", VG_ACT_PATIENT_CREATE}, {"admin", VG_ACT_DEVICE_ENROLL},
    {"admin", VG_ACT_DEVICE_ASSIGN},  {"admin", VG_ACT_USER_MANAGE},
    {"admin", VG_ACT_STATS_READ},     {"biomed", VG_ACT_DEVICE_ENROLL},
    {"security", VG_ACT_STATS_READ},
    {"biomed", VG_ACT_DEVICE_ASSIGN}, {"biomed", VG_ACT_STATS_READ},
    {"auditor", VG_ACT_AUDIT_READ},   {"admin", VG_ACT_PATIENT_ERASE},
    {"admin", VG_ACT_KEYS_ROTATE},
    /* Fleet posture: the security team and biomedical engineering read it
     * and act on it; auditors read it (the compliance report is evidence). */
    {"admin", VG_ACT_POSTURE_READ},   {"security", VG_ACT_POSTURE_READ},
    {"biomed", VG_ACT_POSTURE_READ},  {"auditor", VG_ACT_POSTURE_READ},
    {"admin", VG_ACT_POSTURE_MANAGE}, {"security", VG_ACT_POSTURE_MANAGE},
    {"biomed", VG_ACT_POSTURE_MANAGE},
    {"admin", VG_ACT_ALERTS_SUBSCRIBE}, {"security", VG_ACT_ALERTS_SUBSCRIBE},
    {"biomed", VG_ACT_ALERTS_SUBSCRIBE},
};

/* A deny with its reason (printf-style, checked by the compiler). */
#define DENY(d, ...)                                                                    \
    do {                                                                                \
        (d)->allow = 0;                                                                 \
        (d)->basis = NULL;                                                              \
        snprintf((d)->reason, sizeof (d)->reason, __VA_ARGS__);                         \
    } while (0)

static void allow(struct vg_decision *d, const char *basis)
{
    d->allow = 1;
    d->basis = basis;
    d->reason[0] = '\0';
}

/* Patient data for people: the care team, else an open break-glass grant
 * (clinicians only). */
static void decide_patient_access(struct vg_store *st, const struct vg_principal *p,
                                  const char *patient, int64_t now, struct vg_decision *d)
{
    int clinical = vg_word_in(p->roles, "clinician") || vg_word_in(p->roles, "nurse");
    if (!clinical) {
        DENY(d, "role %s may not see patient data", p->roles);
        return;
    }
    int member = vg_careteam_member(st, p->id, patient, now);
    if (member < 0) {
        DENY(d, "access decision unavailable");
        return;
    }
    if (member) {
        allow(d, "care-team");
        return;
    }
    if (vg_word_in(p->roles, "clinician")) {
        int64_t end = 0;
        int bg = vg_breakglass_active(st, p->id, patient, now, d->breakglass_reason,
                                      sizeof d->breakglass_reason, &end);
        if (bg < 0) {
            DENY(d, "access decision unavailable");
            return;
        }
        if (bg) {
            allow(d, "break-glass");
            return;
        }
        DENY(d, "patient %s is not on your care team; use break-glass with a reason in an emergency",
             patient);
        return;
    }
    DENY(d, "patient %s is not on your care team", patient);
}

/* Service principals: only their token's scopes, for its patients. */
static void decide_scoped(const struct vg_principal *p, enum vg_action a, const char *patient,
                          struct vg_decision *d)
{
    const char *scope = vg_action_name(a);
    if (!vg_word_in(p->scopes, scope)) {
        DENY(d, "the token has no %s scope", scope);
        return;
    }
    if (!patient || (!vg_word_in(p->patients, "*") && !vg_word_in(p->patients, patient))) {
        DENY(d, "the token does not cover patient %s", patient ? patient : "(none)");
        return;
    }
    allow(d, "scope");
}

void vg_policy_decide(struct vg_store *st, const struct vg_principal *p, enum vg_action a,
                      const struct vg_resource *r, int64_t now, struct vg_decision *d)
{
    memset(d, 0, sizeof *d);
    const char *patient = r ? r->patient : NULL;
    if (a >= VG_ACT_COUNT) {
        DENY(d, "unknown action");
        return;
    }
    /* Devices do one thing: publish their own readings. */
    if (!strcmp(p->kind, "device")) {
        if (a == VG_ACT_DEVICE_PUBLISH && r && r->device && !strcmp(r->device, p->id))
            allow(d, "self");
        else
            DENY(d, "a device may only publish its own readings");
        return;
    }
    if (a == VG_ACT_DEVICE_PUBLISH) {
        DENY(d, "only devices publish readings");
        return;
    }
    /* Integrations act only within their token's scopes. (The bootstrap
     * admin token is a service principal with the admin role: it goes
     * through the role table below like any admin.) */
    if (!strcmp(p->kind, "service") && vg_word_in(p->roles, "integration")) {
        if (a == VG_ACT_OBS_READ || a == VG_ACT_OBS_SUBSCRIBE)
            decide_scoped(p, a, patient, d);
        else if (a == VG_ACT_STATS_READ && vg_word_in(p->scopes, "stats.read"))
            allow(d, "scope"); /* a metrics scraper: counters, no patient data */
        else
            DENY(d, "a service principal acts only within its token's scopes");
        return;
    }
    switch (a) {
    case VG_ACT_OBS_READ:
    case VG_ACT_OBS_SUBSCRIBE:
        if (!patient) {
            DENY(d, "no patient given");
            return;
        }
        decide_patient_access(st, p, patient, now, d);
        return;
    case VG_ACT_BREAKGLASS:
        if (!vg_word_in(p->roles, "clinician") || strcmp(p->kind, "user")) {
            DENY(d, "only a clinician may use break-glass");
            return;
        }
        if (!patient) {
            DENY(d, "no patient given");
            return;
        }
        int member = vg_careteam_member(st, p->id, patient, now);
        if (member < 0)
            DENY(d, "access decision unavailable");
        else if (member)
            DENY(d, "patient %s is already on your care team; no break-glass needed", patient);
        else
            allow(d, "role");
        return;
    default:
        for (size_t i = 0; i < sizeof role_grants / sizeof role_grants[0]; i++)
            if (role_grants[i].action == a && vg_word_in(p->roles, role_grants[i].role)) {
                allow(d, "role");
                return;
            }
        DENY(d, "your roles (%s) do not allow this", p->roles);
        return;
    }
}
