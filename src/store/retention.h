/* store/retention — how long readings are kept, and the purge that
 * enforces it.
 *
 * Policy (vigil.conf [retention], see core/config.h): a rule per LOINC code
 * ("8867-4 = 30d"), per FHIR category ("vital-signs = 1y"), and a
 * default ("default = keep", the built-in). The most specific rule wins:
 * code, then category, then default. "keep" means forever.
 *
 * The purge deletes readings whose effective time is older than their
 * retention. Only the hour of a reading is stored in the clear, so it works
 * at hour granularity and errs on the side of keeping: a reading goes in
 * the first purge after its whole hour has passed the limit. Each code's
 * deletion is one transaction with one audit record ("retention.purge") that
 * says how many readings went and the cut-off, so the trail shows every
 * deletion. The store runs with secure_delete on, so deleted ciphertext is
 * overwritten, not left in free pages.
 *
 * Pure policy functions; vg_retention_purge uses the store it is given
 * (in autocommit mode: it runs its own transactions).
 */
#ifndef VG_STORE_RETENTION_H
#define VG_STORE_RETENTION_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"
#include "store/store.h"

#define VG_RETENTION_RULES_MAX 32
#define VG_RETENTION_KEY_MAX 48

struct vg_retention_rule {
    char key[VG_RETENTION_KEY_MAX]; /* "default", a category name or a LOINC code */
    int64_t keep_ms;                /* 0 = keep forever */
};

struct vg_retention {
    size_t n;
    struct vg_retention_rule rules[VG_RETENTION_RULES_MAX];
};

/* Adds or replaces the rule for 'key' from a value: "keep", or a positive
 * whole number followed by h (hours), d (days) or y (365 days), at most 100
 * years. The key must be "default", a category of the vital-sign table
 * (vital-signs, laboratory), or a code of that table. Returns 0, or -1 with the
 * reason in err. */
int vg_retention_set(struct vg_retention *r, const char *key, const char *value, char *err,
                     size_t err_size) VG_WARN_UNUSED;

/* The retention of 'code' (0 = keep forever) under the most specific rule. */
int64_t vg_retention_for(const struct vg_retention *r, const char *code);

/* The longest finite retention configured, or 0 if anything is kept
 * forever (for the fleet audit's "retention longer than policy"). */
int64_t vg_retention_longest(const struct vg_retention *r);

struct vg_purge_report {
    int64_t deleted;  /* readings deleted in this run */
    int codes;        /* codes with at least one deletion */
    int more;         /* 1 if the budget ran out with readings still due */
};

/* Deletes at most 'budget' due readings, code by code, each code in its
 * own transaction with its audit record (actor "system"). Returns 0 or a
 * vg_store_rc (what was committed before the failure stays committed and
 * audited). */
int vg_retention_purge(struct vg_store *st, const struct vg_retention *r, int64_t now_ms,
                       int64_t budget, struct vg_purge_report *out) VG_WARN_UNUSED;

#endif
