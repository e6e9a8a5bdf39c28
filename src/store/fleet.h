/* store/fleet — the device inventory and the fleet-posture tables
 * (schema step 7): what a device reports about itself, what vigil sees of
 * its sessions, imported advisories, training completions, suppressions,
 * alarms and quarantine.
 *
 * Functions run on the caller's store handle, inside the caller's
 * transaction where they write (the caller audits in the same one).
 * Strings are copied into caller-owned structs; nothing is borrowed past a
 * call. No patient data lives in these tables except the assignment the
 * inventory reports (an identifier, not PHI values).
 */
#ifndef VG_STORE_FLEET_H
#define VG_STORE_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"
#include "store/store.h"

#define VG_FLEET_TEXT 96

struct vg_device_inventory {
    char id[VG_ID_MAX + 1];
    char status[16];                /* active, revoked */
    char manufacturer[VG_FLEET_TEXT], model[VG_FLEET_TEXT], serial[VG_FLEET_TEXT];
    char firmware[VG_FLEET_TEXT], device_class[48], location[VG_FLEET_TEXT];
    char patient[VG_ID_MAX + 1];    /* current assignment, "" if none */
    char cert_serial[41], cert_fingerprint[65];
    char key_type[16];              /* "EC P-256", "RSA", "Ed25519" */
    int key_bits;
    int64_t enrolled_ms, cert_not_before_ms, cert_not_after_ms, info_ms;
    int64_t last_seen_ms;           /* 0 = never connected */
    char last_source[64], last_tls[16], last_cipher[64];
    int quarantined;
    int64_t quarantined_ms;
    char quarantine_reason[192];
};

/* Device classes vigil knows, with how often such a device is expected to
 * report (seconds) — the fleet audit's "not seen" threshold. */
struct vg_device_class {
    const char *name;
    const char *display;
    int expected_interval_s;
};
const struct vg_device_class *vg_fleet_class_lookup(const char *name);
const struct vg_device_class *vg_fleet_class_at(size_t i);

/* What a device says about itself (the retained vigil/v1/d/{id}/info
 * payload) or what an administrator records. Fields that are NULL are left
 * as they are. Validation is the caller's (fleet strings are printable
 * UTF-8 up to VG_FLEET_TEXT-1 bytes; the class must be known). */
struct vg_device_info_update {
    const char *manufacturer, *model, *serial, *firmware, *device_class, *location;
};
int vg_fleet_device_describe(struct vg_store *st, const char *id,
                             const struct vg_device_info_update *u, int64_t now_ms) VG_WARN_UNUSED;

/* Records the key of the enrolled certificate and its validity start. */
int vg_fleet_device_key(struct vg_store *st, const char *id, const char *key_type, int key_bits,
                        int64_t not_before_ms) VG_WARN_UNUSED;

/* A session seen: when, from where, with which TLS version and cipher. */
int vg_fleet_device_seen(struct vg_store *st, const char *id, int64_t ms, const char *source,
                         const char *tls, const char *cipher) VG_WARN_UNUSED;

int vg_fleet_device_get(struct vg_store *st, const char *id, int64_t now_ms,
                        struct vg_device_inventory *out) VG_WARN_UNUSED;

/* Calls fn for every device in id order; stops if fn returns non-zero.
 * Returns the number of devices passed, or a negative vg_store_rc. */
typedef int (*vg_fleet_device_fn)(void *ctx, const struct vg_device_inventory *d);
int vg_fleet_device_list(struct vg_store *st, int64_t now_ms, vg_fleet_device_fn fn, void *ctx)
    VG_WARN_UNUSED;

/* Quarantine: the broker refuses the device's connections while set.
 * VG_STORE_NOT_FOUND for an unknown device; setting twice keeps the first
 * time. Release clears it. 1 if quarantined, 0 if not, or negative. */
int vg_fleet_quarantine(struct vg_store *st, const char *id, const char *reason, int64_t now_ms)
    VG_WARN_UNUSED;
int vg_fleet_release(struct vg_store *st, const char *id) VG_WARN_UNUSED;
int vg_fleet_quarantined(struct vg_store *st, const char *id);

/* Revokes the device's certificate: its status becomes "revoked" and the
 * broker refuses it from then on. */
int vg_fleet_revoke(struct vg_store *st, const char *id) VG_WARN_UNUSED;

/* Security-awareness training. */
int vg_fleet_training_add(struct vg_store *st, const char *user, const char *course,
                          int64_t completed_ms, const char *recorded_by, int64_t now_ms)
    VG_WARN_UNUSED;
/* The latest completion of 'course' by 'user' (0 if never). */
int64_t vg_fleet_training_last(struct vg_store *st, const char *user, const char *course);

/* Suppressions of fleet-audit findings: reason and expiry required. */
int vg_fleet_suppress(struct vg_store *st, const char *finding_key, const char *reason,
                      int64_t expires_ms, const char *by, int64_t now_ms) VG_WARN_UNUSED;

/* Imported CSAF advisories (the raw document is kept; matching re-reads
 * it, so a better matcher applies to old imports too). */
int vg_fleet_advisory_put(struct vg_store *st, const char *id, const char *title,
                          const char *version, const char *released, const char *sha256_hex,
                          const uint8_t *doc, size_t len, const char *by, int64_t now_ms)
    VG_WARN_UNUSED;
typedef int (*vg_fleet_advisory_fn)(void *ctx, const char *id, const uint8_t *doc, size_t len);
int vg_fleet_advisory_each(struct vg_store *st, vg_fleet_advisory_fn fn, void *ctx) VG_WARN_UNUSED;

/* Behaviour alarms: raised (returns the alarm id) and cleared. */
int64_t vg_fleet_alarm_raise(struct vg_store *st, const char *device, const char *rule,
                             const char *metric, double value, double threshold,
                             const char *mitigation, int64_t now_ms);
int vg_fleet_alarm_clear(struct vg_store *st, const char *device, const char *rule,
                         int64_t now_ms) VG_WARN_UNUSED;

#endif
