/* advisory/version — firmware versions and the version expressions found in
 * security advisories, compared without guessing.
 *
 * Advisories name affected versions in many hands: "12.1.3", "<= 2.2.0",
 * "<12.2.8.410", "<=5.17.1-754993421", "vers:all" with its "*", "9.x", "2.2.0 and
 * prior", and free text no program can read ("9.x (with Wireless Battery
 * Modules >= 22D19 | <= v22D28)"). The one rule of this module: when it
 * cannot be sure, it says so (VG_VMATCH_UNKNOWN, VG_VERSION_INCOMPARABLE) —
 * it never turns "cannot tell" into "not affected".
 *
 * VERSION SYNTAX (vg_version_parse). After trimming ASCII blanks: an
 * optional 'v' or 'V', then 1..VG_VERSION_SEGS_MAX decimal numbers separated
 * by '.', each at most 19 digits (leading zeros allowed: "075" is 75), then
 * an optional tail of [A-Za-z0-9._+~-] (no blanks, no other punctuation, no
 * separator last or twice in a row):
 *   "-<digits>"     a BUILD number: "5.17.1-754993421" is build 754993421
 *                   of 5.17.1 (CISA's use; NOT a semver pre-release);
 *   "-<idents>"     a semver PRE-release (SemVer 2.0.0 §9) when the part
 *                   after '-' is dot-separated [0-9A-Za-z-] identifiers and
 *                   is not all digits: "1.2.0-rc.1";
 *   "+<anything>"   build metadata, ignored (SemVer §10), also after a
 *                   pre-release or build: "1.0-rc1+g1234";
 *   anything else   an OPAQUE tail: "22D19", "2.1b", "1.0.RELEASE", "9.x".
 *
 * COMPARISON (vg_version_compare). Numbers compare numerically, a missing
 * trailing number counts as 0: 1.2 == 1.2.0, 1.10 > 1.9. If the numbers are
 * equal the tails decide: pre-release < none == build 0 < build N; two
 * pre-releases by SemVer §11; two opaque tails are equal only when
 * identical ignoring case, otherwise INCOMPARABLE ("22D19" vs "22D28"). A
 * version with an opaque tail is also INCOMPARABLE with one that differs
 * from it only past its last number ("2.1b" vs "2.1.5": nobody knows
 * whether the 'b' comes before or after the .5), but "2.1b" < "2.3".
 *
 * EXPRESSION SYNTAX (vg_vexpr_parse), case-insensitive, blanks optional
 * around operators:
 *   "*", "all", "all versions", "any", "any version"            every version
 *   "vers:<scheme>/<c>|<c>|..."     purl VERS (package-url vers spec); each
 *                   <c> is "*" (alone) or [=,!=,<,<=,>,>=]<version>; the
 *                   spec's evaluation (sorted constraints, pairwise) is
 *                   used for every scheme with the comparison above; a
 *                   percent-encoded or unparseable version, duplicate or
 *                   mutually incomparable versions make it TEXT;
 *   "<version>" or "=<version>" or "==<version>"                exactly
 *   "<op> <version>" ... up to VG_VEXPR_MAX, joined by blanks, ',' or "&&"
 *                   with op one of < <= > >= = == != : all must hold;
 *   "N.x", "N.M.x", "N.*", "N.X"                                 prefix
 *   "<version> and prior|earlier|before|below|older|lower"       <=
 *   "<version> or earlier|prior|lower|older|below"               <=
 *   "<version> and|or later|after|above|newer|higher"            >=
 *   "prior to|before|earlier than|older than|lower than <version>" <
 *   (each optionally preceded by "version" or "versions")
 *   "<version or N.x> model <token>"  a version of one model: the token
 *                   (letters and digits, with at least one digit) is kept
 *                   for the caller to compare with the device's model;
 * anything else is TEXT: never IN, never OUT, always UNKNOWN.
 *
 * Pure: no allocation, no I/O, no globals; thread-safe. Parsed versions and
 * expressions BORROW the string they were parsed from (tails and model
 * tokens point into it): keep it alive while you use them.
 */
#ifndef VG_ADVISORY_VERSION_H
#define VG_ADVISORY_VERSION_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define VG_VERSION_SEGS_MAX 12
#define VG_VERSION_TEXT_MAX 128  /* longest version string accepted */
#define VG_VEXPR_MAX 16          /* constraints in one expression */
#define VG_VEXPR_TEXT_MAX 1024   /* longest expression parsed at all */

/* vg_version_compare's answer when the order cannot be known. */
#define VG_VERSION_INCOMPARABLE 2

enum vg_version_tail {
    VG_VTAIL_NONE,
    VG_VTAIL_BUILD,  /* "-754993421" */
    VG_VTAIL_PRE,    /* "-rc.1" */
    VG_VTAIL_OPAQUE, /* "D19", ".RELEASE" */
};

struct vg_version {
    uint64_t seg[VG_VERSION_SEGS_MAX];
    size_t nseg;               /* 1..VG_VERSION_SEGS_MAX */
    enum vg_version_tail tail_kind;
    const char *tail;          /* borrowed: BUILD digits, PRE identifiers
                                  (without '-'), or the OPAQUE tail; NULL
                                  for NONE */
    size_t tail_len;
    uint64_t build;            /* BUILD only: the number */
};

/* Parses 'len' bytes of 's' (no NUL needed). Returns 0, or -1 if it is not
 * a version by the syntax above (the empty string, "abc", "9.x model 3",
 * "1..2", a 20-digit number, more than VG_VERSION_SEGS_MAX numbers...). */
int vg_version_parse(const char *s, size_t len, struct vg_version *out) VG_WARN_UNUSED;

/* -1, 0 or 1 as a is before, equal to or after b; VG_VERSION_INCOMPARABLE
 * when that cannot be known (see above). */
int vg_version_compare(const struct vg_version *a, const struct vg_version *b);

/* Convenience for tests and callers holding two strings: parses both and
 * compares; VG_VERSION_INCOMPARABLE when either does not parse. */
int vg_version_compare_str(const char *a, const char *b);

enum vg_vop { VG_VOP_EQ, VG_VOP_NE, VG_VOP_LT, VG_VOP_LE, VG_VOP_GT, VG_VOP_GE, VG_VOP_PREFIX };

struct vg_vconstraint {
    enum vg_vop op;
    struct vg_version v;       /* for PREFIX: the numbers before ".x" */
};

enum vg_vexpr_kind {
    VG_VEXPR_ANY,      /* every version */
    VG_VEXPR_ALL_OF,   /* every constraint must hold (1..VG_VEXPR_MAX) */
    VG_VEXPR_VERS,     /* purl vers evaluation over the constraints */
    VG_VEXPR_MODEL,    /* ALL_OF, plus a model token the caller checks */
    VG_VEXPR_TEXT,     /* not understood: always UNKNOWN */
};

struct vg_vexpr {
    enum vg_vexpr_kind kind;
    size_t n;
    struct vg_vconstraint c[VG_VEXPR_MAX];
    const char *model;         /* MODEL only: borrowed token */
    size_t model_len;
};

/* Parses 'len' bytes of 's'. Never fails: what it does not understand is
 * VG_VEXPR_TEXT (so is anything longer than VG_VEXPR_TEXT_MAX). */
void vg_vexpr_parse(const char *s, size_t len, struct vg_vexpr *out);

enum vg_vmatch { VG_VMATCH_OUT, VG_VMATCH_IN, VG_VMATCH_UNKNOWN };

/* Is version 'v' in 'e'? 'v' NULL means the device's version is not known:
 * IN for VG_VEXPR_ANY, UNKNOWN otherwise. TEXT is always UNKNOWN; for MODEL
 * only the version part is evaluated here. */
enum vg_vmatch vg_vexpr_match(const struct vg_vexpr *e, const struct vg_version *v);

/* "out", "in", "unknown". */
const char *vg_vmatch_name(enum vg_vmatch m);

#endif
