/* auth/policy — the one access decision behind every door.
 *
 * vg_policy_decide(principal, action, resource) → allow or deny, with the
 * basis of an allow ("role", "care-team", "break-glass", "scope", "self")
 * and the reason of a deny in words a person can act on. The HTTPS API, the
 * CLI (through the API), MQTT subscriptions to live data and device
 * publishing all call it; deny is the default for every pair not listed.
 *
 * The callers audit the decisions that touch patient data (allowed or
 * denied) and every denial.
 */
#ifndef VG_AUTH_POLICY_H
#define VG_AUTH_POLICY_H

#include <stdint.h>

#include "auth/account.h"
#include "store/store.h"

enum vg_action {
    VG_ACT_OBS_READ,       /* read a patient's observations */
    VG_ACT_OBS_SUBSCRIBE,  /* receive a patient's readings live (MQTT) */
    VG_ACT_BREAKGLASS,     /* open an emergency grant on a patient */
    VG_ACT_PATIENT_CREATE,
    VG_ACT_DEVICE_ENROLL,
    VG_ACT_DEVICE_ASSIGN,
    VG_ACT_USER_MANAGE,    /* accounts, roles, tokens, certificates, care teams */
    VG_ACT_AUDIT_READ,     /* read, report, export, verify the audit trail */
    VG_ACT_STATS_READ,
    VG_ACT_DEVICE_PUBLISH, /* a device sending readings */
    VG_ACT_PATIENT_ERASE,  /* crypto-shredding a patient's readings */
    VG_ACT_KEYS_ROTATE,    /* new data keys, KEK rotation */
    VG_ACT_POSTURE_READ,   /* inventory, findings, alarms, compliance report */
    VG_ACT_POSTURE_MANAGE, /* advisories, suppressions, quarantine, release,
                              revocation, device descriptions, training */
    VG_ACT_ALERTS_SUBSCRIBE, /* receive security alerts live (MQTT) */
    VG_ACT_COUNT
};

/* Stable name, e.g. "obs.read" (used in audit records and tests). */
const char *vg_action_name(enum vg_action a);

/* Does this action disclose or touch patient data (so its decisions are
 * audited whatever they are)? */
int vg_action_touches_patient(enum vg_action a);

struct vg_resource {
    const char *patient; /* the patient concerned, or NULL */
    const char *device;  /* the device concerned, or NULL */
};

struct vg_decision {
    int allow;
    const char *basis;        /* of an allow: "role", "care-team", ... */
    char reason[200];         /* of a deny, or a note on an allow */
    char breakglass_reason[256]; /* the grant's reason, for the audit */
};

/* Decides at now_ms. Reads care teams and break-glass grants from 'st'.
 * Never fails open: a store error is a deny. */
void vg_policy_decide(struct vg_store *st, const struct vg_principal *p, enum vg_action a,
                      const struct vg_resource *r, int64_t now_ms, struct vg_decision *d);

#endif
