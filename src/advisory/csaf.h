/* advisory/csaf — CSAF 2.0 security advisories (OASIS Common Security
 * Advisory Framework v2.0): parse one document, then tell whether a device
 * (manufacturer, model, firmware version) is affected by it.
 *
 * OWNERSHIP. vg_csaf_parse() copies what it needs out of the input (the
 * caller keeps and may free its bytes at once) into one document object,
 * immutable afterwards and freed with one vg_csaf_free(). Every pointer this
 * module hands out — info, products, vulnerabilities, remediations, and
 * everything in a struct vg_csaf_match — BORROWS from that document: it is
 * valid until vg_csaf_free(). Strings are NUL-terminated UTF-8, never NULL
 * ("" when absent). The match result is a caller-owned struct filled in
 * place; matching allocates nothing.
 *
 * THREADS. A parsed document is read-only: any number of threads may match
 * devices against it concurrently. Nothing here has global state.
 *
 * UNTRUSTED INPUT. The document is hostile until proven otherwise. Before
 * jansson sees it: at most VG_CSAF_INPUT_MAX bytes, VG_CSAF_DEPTH_MAX
 * levels of nesting and VG_CSAF_VALUES_MAX values (so a small file cannot
 * expand into a huge tree). While reading it: caps on branches, products,
 * vulnerabilities, scores, remediations and product references, each
 * refused with its own message; duplicate member names, NUL characters and
 * invalid UTF-8 are refused. Control characters in names and texts become
 * spaces (a document cannot drive a terminal); identifiers containing them
 * are refused. Error messages name the JSON path and the rule, never text
 * from the document.
 *
 * WHAT IS READ (everything else is ignored):
 *   document.csaf_version          must be "2.0"
 *   document.title                 truncated to VG_CSAF_TITLE_MAX
 *   document.tracking.id           required, e.g. "ICSMA-23-194-01"
 *   document.tracking.version, .current_release_date, .initial_release_date
 *   product_tree.branches          walked recursively; each product leaf
 *                                  takes the nearest vendor, product_family,
 *                                  product_name and product_version or
 *                                  product_version_range above it
 *   product_tree.full_product_names, .relationships[].full_product_name
 *                                  products without a branch path: they
 *                                  are known (so references resolve) but
 *                                  their version cannot be read (UNKNOWN)
 *   product_tree.product_groups    expanded where remediations use group_ids
 *   vulnerabilities[].cve, .cwe.id, .scores[] (cvss_v3.baseScore and
 *   .vectorString, .products), .product_status (all eight lists),
 *   .remediations[] (category, details, url, product_ids, group_ids)
 * A product id used anywhere must be defined exactly once in the product
 * tree (CSAF 2.0 mandatory tests 6.1.1 and 6.1.2); groups likewise.
 *
 * MATCHING A DEVICE (vg_csaf_match). Three steps.
 *
 * 1. Vendor. Names are compared as lower-case ASCII words ('Point-of-Care'
 *    is "point of care"; bytes >= 0x80 are kept as they are); corporate and
 *    generic words are dropped (inc, corp, co, company, ltd, llc, gmbh, ag,
 *    sa, plc, international, group, holdings, the, and, of, medical, health,
 *    healthcare, systems, technologies, ... — unless nothing else is left).
 *    The manufacturer M matches the vendor branch V when
 *      (a) M's words appear as consecutive whole words of V
 *          ("BD", "Becton Dickinson" in "Becton, Dickinson and Company
 *          (BD)"; "Baxter" in "Hillrom and ELI, Baxter International Inc."),
 *      (b) one of V's parts — V cut at , ; / ( ) & | and the word "and" —
 *          appears as consecutive whole words of M ("Philips Healthcare"
 *          vs "Philips"; "Becton Dickinson & Co." vs "Becton"), or
 *      (c) M without spaces equals consecutive words of V without spaces
 *          ("Hill-Rom" vs "Hillrom", "BBraun" vs "B. Braun");
 *    or, for brands sold under another vendor's name, when M's words appear
 *    in the product's own name ("Welch Allyn" for the Baxter product "Welch
 *    Allyn Connex Spot Monitor"). Limits: no alias table — a manufacturer
 *    known by a name that appears nowhere in the document (an acquirer or a
 *    former name) is NO_MATCH; a one-word part such as "ELI" matches any
 *    manufacturer with that word. M needs at least two letters or digits.
 *
 * 2. Model. The product's name (its product_name branch; else its family;
 *    else its full name) and the device's model, as words, each also tried
 *    without a leading vendor or manufacturer name ("Baxter Spectrum IQ" is
 *    also "Spectrum IQ"), match when either is a run of consecutive whole
 *    words of the other, or they are equal once all spaces are removed
 *    ("Wi-Fi" = "WIFI"). So "ELI 380" matches "Welch Allyn ELI 380 Resting
 *    Electrocardiograph", "MedDream PACS Premium" matches "MedDream PACS",
 *    and "Spectrum" matches both "Sigma Spectrum" and "Sigma Spectrum LVP".
 *    This errs towards matching: a loose model yields more findings to
 *    review, never a silent miss. A product also matches when the version
 *    slot holds model numbers (ICSMA-22-263-01: "MMT-1715 | MMT-1754") and
 *    the device's model contains one of them as whole words; such a token
 *    must have 4+ characters with both letters and digits.
 *
 * 3. Version, for each product that matched 1 and 2, by its version branch
 *    name read with advisory/version.h: IN, OUT or UNKNOWN. A product with
 *    no version branch is every version; one matched through a model number
 *    in its version slot is IN whatever the firmware (the advisory names
 *    that model). "<version or N.x> model <token>"
 *    is IN only when the device's model also contains the token (else
 *    UNKNOWN, or OUT when the version part is OUT). Text that is not a
 *    version expression is IN only when the device's firmware equals it or
 *    one of its '|'-separated alternatives, or one item of a plain list of
 *    identifiers (ICSMA-23-103-01: "053L000091 (global) / 054U000091 (U.S.)
 *    and ..."), ignoring case and blanks; otherwise it is UNKNOWN, never
 *    OUT. An unknown device firmware (empty) is UNKNOWN except against
 *    "every version".
 *
 * Then per vulnerability, over the matched products it lists:
 *   - AFFECTED if a product in known_affected is IN (also first_affected or
 *     last_affected whose version is not one exact version);
 *   - else NOT_AFFECTED if a product in fixed, known_not_affected or
 *     recommended is IN (also first_fixed whose version is not one exact
 *     version);
 *   - else UNKNOWN if any listed product's version could not be decided,
 *     or a product is under_investigation and not OUT;
 *   - else the exact versions in first_affected, last_affected and
 *     first_fixed are read as a timeline (as OSV does with introduced /
 *     last_affected / fixed): the latest such point at or below the device
 *     version decides (first_affected: affected; first_fixed: fixed; a
 *     last_affected point counts once the device is past it); before any
 *     point the device is affected unless a first_affected exists. Limit: a
 *     document listing several release series this way (first_fixed 1.5.3
 *     and 2.1.0) cannot say that 2.0 is affected; CSAF would need separate
 *     product branches for that;
 *   - else the vulnerability says nothing about this device.
 * The document's answer: AFFECTED if any vulnerability is; else UNKNOWN if
 * any is; else NOT_AFFECTED (a product matched, but no vulnerability
 * applies to the device's version); NO_MATCH when no product matched 1+2.
 *
 * For AFFECTED and UNKNOWN the match lists each vulnerability that is
 * AFFECTED or UNKNOWN (an AFFECTED answer may carry UNKNOWN hits too), with
 * the CVSS v3 base score of the score entries that cover the products that
 * decided it (the vulnerability's highest when none covers them), the
 * highest score among hits of the answer's own status, and the remediations
 * of those vulnerabilities whose product_ids or group_ids include a deciding
 * product, without repeats.
 */
#ifndef VG_ADVISORY_CSAF_H
#define VG_ADVISORY_CSAF_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

/* Limits on the input, checked before parsing. The largest CISA medical
 * advisory is under 100 KiB; these leave a wide margin. */
#define VG_CSAF_INPUT_MAX (4u * 1024u * 1024u)
#define VG_CSAF_DEPTH_MAX 64          /* JSON nesting levels */
#define VG_CSAF_VALUES_MAX 200000     /* containers + members + elements */
/* Limits while reading the document. */
#define VG_CSAF_BRANCH_DEPTH_MAX 16   /* nested product_tree branches */
#define VG_CSAF_BRANCHES_MAX 8192
#define VG_CSAF_PRODUCTS_MAX 2048     /* product ids defined */
#define VG_CSAF_GROUPS_MAX 1024
#define VG_CSAF_VULNS_MAX 256
#define VG_CSAF_SCORES_MAX 16         /* per vulnerability */
#define VG_CSAF_REMEDIATIONS_MAX 64   /* per vulnerability */
#define VG_CSAF_REFS_MAX 65536        /* product references, whole document */
#define VG_CSAF_ID_MAX 96             /* tracking id, product/group id, CVE */
#define VG_CSAF_NAME_MAX 1024         /* branch names: longer is refused */
#define VG_CSAF_TITLE_MAX 512         /* title, full product names: truncated */
#define VG_CSAF_TEXT_MAX 2048         /* remediation details: truncated */
#define VG_CSAF_MEM_MAX (48u * 1024u * 1024u) /* the parsed document */
/* Matching. */
#define VG_CSAF_DEVICE_FIELD_MAX 128
#define VG_CSAF_MATCH_REMEDIATIONS_MAX 32
#define VG_CSAF_MATCH_PRODUCTS_MAX 16

enum vg_csaf_err {
    VG_CSAF_OK = 0,
    VG_CSAF_ERR_TOO_LARGE, /* more than VG_CSAF_INPUT_MAX bytes */
    VG_CSAF_ERR_TOO_DEEP,  /* JSON nesting or product_tree branches too deep */
    VG_CSAF_ERR_LIMIT,     /* a count over its cap (values, products, ...) */
    VG_CSAF_ERR_SYNTAX,    /* not well-formed JSON: truncated, bad UTF-8,
                              duplicate member, NUL, trailing garbage */
    VG_CSAF_ERR_NOT_CSAF,  /* not an object with document.csaf_version "2.0" */
    VG_CSAF_ERR_MISSING,   /* a required member is absent */
    VG_CSAF_ERR_TYPE,      /* a member has the wrong JSON type */
    VG_CSAF_ERR_INVALID,   /* right type, wrong value: unknown branch
                              category, undefined or duplicate product id,
                              score out of 0..10, malformed CVE id or date,
                              empty or over-long identifier or name */
    VG_CSAF_ERR_NOMEM,
};

/* Stable short name: "ok", "too-large", "too-deep", "limit", "syntax",
 * "not-csaf", "missing", "type", "invalid", "no-memory". */
const char *vg_csaf_strerror(enum vg_csaf_err e);

struct vg_csaf_doc; /* opaque */

/* Parses 'len' bytes at 'data' (no NUL needed). On success returns
 * VG_CSAF_OK and sets *out (free it with vg_csaf_free). Otherwise returns
 * the reason, leaves *out NULL and writes a one-line message, "<json
 * path>: <what is wrong>", into 'err' (always NUL-terminated when
 * err_size > 0; 'err' may be NULL). */
enum vg_csaf_err vg_csaf_parse(const void *data, size_t len, struct vg_csaf_doc **out, char *err,
                               size_t err_size) VG_WARN_UNUSED;

/* Frees the document and everything borrowed from it. NULL is fine. */
void vg_csaf_free(struct vg_csaf_doc *doc);

struct vg_csaf_product {
    const char *id;        /* product_id, e.g. "CSAFPID-0001" */
    const char *vendor;    /* nearest vendor branch name; "" */
    const char *family;    /* nearest product_family branch name; "" */
    const char *name;      /* nearest product_name branch name; "" */
    const char *version;   /* nearest version branch name; "" = none given */
    int version_is_range;  /* 1: from product_version_range */
    int in_tree;           /* 0: only in full_product_names/relationships */
    const char *full_name; /* product.name, truncated to VG_CSAF_TITLE_MAX */
};

/* The eight product_status lists (CSAF 2.0 §3.2.3.9). */
enum vg_csaf_pstatus {
    VG_CSAF_PS_FIRST_AFFECTED,
    VG_CSAF_PS_FIRST_FIXED,
    VG_CSAF_PS_FIXED,
    VG_CSAF_PS_KNOWN_AFFECTED,
    VG_CSAF_PS_KNOWN_NOT_AFFECTED,
    VG_CSAF_PS_LAST_AFFECTED,
    VG_CSAF_PS_RECOMMENDED,
    VG_CSAF_PS_UNDER_INVESTIGATION,
};

/* The CSAF member name, e.g. "known_affected". */
const char *vg_csaf_pstatus_name(enum vg_csaf_pstatus s);

struct vg_csaf_status_ref {
    uint32_t product;      /* index into vg_csaf_info.products */
    enum vg_csaf_pstatus status;
};

struct vg_csaf_score {
    double base;           /* cvss_v3.baseScore, 0..10 */
    const char *vector;    /* cvss_v3.vectorString; "" */
    const uint32_t *products; /* indexes into vg_csaf_info.products */
    size_t nproducts;
};

struct vg_csaf_remediation {
    const char *category;  /* e.g. "vendor_fix", "mitigation" */
    const char *details;   /* truncated to VG_CSAF_TEXT_MAX bytes ("..." added) */
    const char *url;       /* "" */
    const uint32_t *products; /* product_ids plus the members of group_ids */
    size_t nproducts;
};

struct vg_csaf_vuln {
    const char *cve;       /* "CVE-2023-30562"; "" when the entry has none */
    const char *cwe;       /* cwe.id, e.g. "CWE-345"; "" */
    double max_score;      /* highest cvss_v3 base score; -1 when none */
    const char *max_vector;/* its vector; "" */
    const struct vg_csaf_status_ref *status;
    size_t nstatus;
    const struct vg_csaf_score *scores;   /* only entries with cvss_v3 */
    size_t nscores;
    const struct vg_csaf_remediation *remediations;
    size_t nremediations;
};

struct vg_csaf_info {
    const char *id;                   /* document.tracking.id */
    const char *title;                /* truncated to VG_CSAF_TITLE_MAX; "" */
    const char *version;              /* tracking.version, e.g. "2"; "" */
    const char *current_release_date; /* as written; "" */
    const char *initial_release_date; /* as written; "" */
    int64_t current_release_ms;       /* epoch ms; -1 when absent */
    const struct vg_csaf_product *products;
    size_t nproducts;
    const struct vg_csaf_vuln *vulns;
    size_t nvulns;
};

/* The document's contents, borrowed from it. Never NULL for a parsed doc. */
const struct vg_csaf_info *vg_csaf_info(const struct vg_csaf_doc *doc);

/* A device prepared for matching: normalised once, matched against many
 * documents. Fill it with vg_csaf_device_init only; it holds no pointers,
 * so it may be copied. */
struct vg_csaf_device {
    char mfr[VG_CSAF_DEVICE_FIELD_MAX + 3];      /* " w1 w2 " */
    char mfr_squash[VG_CSAF_DEVICE_FIELD_MAX + 1];
    char model[VG_CSAF_DEVICE_FIELD_MAX + 3];    /* " w1 w2 " */
    size_t model_skip;  /* offset past a leading manufacturer name, or 0 */
    char fw[VG_CSAF_DEVICE_FIELD_MAX + 1];       /* trimmed */
    char fw_key[VG_CSAF_DEVICE_FIELD_MAX + 1];   /* lower case, one blank */
};

/* Prepares a device. 'firmware' may be NULL or "" (unknown: most answers
 * become UNKNOWN). Returns 0, or -1 when manufacturer or model is NULL,
 * has fewer than two letters or digits, or any field is longer than
 * VG_CSAF_DEVICE_FIELD_MAX bytes (refused rather than cut: a cut name
 * could match something else). */
int vg_csaf_device_init(struct vg_csaf_device *dev, const char *manufacturer, const char *model,
                        const char *firmware) VG_WARN_UNUSED;

enum vg_csaf_status {
    VG_CSAF_NO_MATCH = 0,  /* no product of this vendor and model */
    VG_CSAF_NOT_AFFECTED,  /* the product is there; this version is not */
    VG_CSAF_UNKNOWN,       /* the product is there; the version cannot be
                              decided: review by hand */
    VG_CSAF_AFFECTED,
};

/* "no-match", "not-affected", "unknown", "affected". */
const char *vg_csaf_status_name(enum vg_csaf_status s);

struct vg_csaf_hit {
    const struct vg_csaf_vuln *vuln;
    const char *cve;            /* vuln->cve */
    enum vg_csaf_status status; /* VG_CSAF_AFFECTED or VG_CSAF_UNKNOWN */
    double score;               /* CVSS v3 base for the deciding products;
                                   -1 when the vulnerability has none */
    const char *vector;         /* its vector; "" */
};

/* About 11 KiB: allocate it, or keep it off small stacks. */
struct vg_csaf_match {
    enum vg_csaf_status status;
    double max_score;           /* highest hit score among hits whose status
                                   equals 'status'; -1 when none */
    size_t nhits;               /* in document order */
    struct vg_csaf_hit hits[VG_CSAF_VULNS_MAX];
    size_t nremediations;
    const struct vg_csaf_remediation *remediations[VG_CSAF_MATCH_REMEDIATIONS_MAX];
    int remediations_truncated; /* more applied than fit */
    size_t nproducts;           /* products the device matched by vendor and
                                   model (indexes into info.products) */
    uint32_t products[VG_CSAF_MATCH_PRODUCTS_MAX];
    int products_truncated;
    const char *review;         /* with UNKNOWN hits: the first version
                                   expression (or product name) that could
                                   not be decided; else NULL */
};

/* Matches one device against one document and fills *out (always fully
 * overwritten). Pure and reentrant. */
void vg_csaf_match(const struct vg_csaf_doc *doc, const struct vg_csaf_device *dev,
                   struct vg_csaf_match *out);

#endif
