/* Unit tests for advisory/: the version comparator and expressions, CSAF
 * 2.0 parsing of every real document in tests/data/csaf (expectations from
 * its INDEX.md), device matching on each, and the refusals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "advisory/csaf.h"
#include "advisory/version.h"

#define CSAF_DIR VG_TEST_DATA "/csaf"

/* ---- helpers ---- */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static struct vg_csaf_doc *load(const char *file)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/%s", CSAF_DIR, file);
    size_t len;
    char *buf = slurp(path, &len);
    struct vg_csaf_doc *d = NULL;
    enum vg_csaf_err rc = vg_csaf_parse(buf, len, &d, err, sizeof err);
    free(buf);
    if (rc != VG_CSAF_OK)
        fail_msg("%s: %s: %s", file, vg_csaf_strerror(rc), err);
    assert_non_null(d);
    return d;
}

static struct vg_csaf_doc *parse_str(const char *json)
{
    char err[256];
    struct vg_csaf_doc *d = NULL;
    enum vg_csaf_err rc = vg_csaf_parse(json, strlen(json), &d, err, sizeof err);
    if (rc != VG_CSAF_OK)
        fail_msg("parse: %s: %s", vg_csaf_strerror(rc), err);
    return d;
}

/* Expects 'json' to be refused with 'want', and the message to begin with
 * 'prefix' (the JSON path) and contain 'needle'. */
static void refused(const char *json, size_t len, enum vg_csaf_err want, const char *prefix,
                    const char *needle)
{
    char err[256];
    memset(err, 'x', sizeof err);
    struct vg_csaf_doc *d = (struct vg_csaf_doc *)&err; /* must be reset to NULL */
    enum vg_csaf_err rc = vg_csaf_parse(json, len, &d, err, sizeof err);
    if (rc != want)
        fail_msg("want %s, got %s (%s)", vg_csaf_strerror(want), vg_csaf_strerror(rc),
                 rc == VG_CSAF_OK ? "accepted" : err);
    assert_null(d);
    assert_non_null(memchr(err, '\0', sizeof err));
    if (prefix && strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("message '%s' does not start with '%s'", err, prefix);
    if (needle && strstr(err, needle) == NULL)
        fail_msg("message '%s' does not contain '%s'", err, needle);
}

static void refused_str(const char *json, enum vg_csaf_err want, const char *prefix,
                        const char *needle)
{
    refused(json, strlen(json), want, prefix, needle);
}

static void match(const struct vg_csaf_doc *d, const char *mfr, const char *model, const char *fw,
                  struct vg_csaf_match *m)
{
    struct vg_csaf_device dev;
    if (vg_csaf_device_init(&dev, mfr, model, fw) != 0)
        fail_msg("device '%s' '%s' refused", mfr, model);
    vg_csaf_match(d, &dev, m);
}

/* The hits of one status as "CVE-a CVE-b", in document order. */
static void hits_of(const struct vg_csaf_match *m, enum vg_csaf_status s, char *out, size_t size)
{
    out[0] = '\0';
    for (size_t i = 0; i < m->nhits; i++) {
        if (m->hits[i].status != s)
            continue;
        size_t n = strlen(out);
        snprintf(out + n, size - n, "%s%s", n ? " " : "", m->hits[i].cve);
    }
}

static const struct vg_csaf_hit *hit_for(const struct vg_csaf_match *m, const char *cve)
{
    for (size_t i = 0; i < m->nhits; i++)
        if (strcmp(m->hits[i].cve, cve) == 0)
            return &m->hits[i];
    return NULL;
}

/* ---- versions ---- */

static void test_version_compare(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b;
        int want;
    } t[] = {
        {"1.2", "1.2.0", 0},
        {"1.2.0.0.0", "1.2", 0},
        {"01.02", "1.2", 0},
        {"1.10", "1.9", 1},
        {"1.9", "1.10", -1},
        {"2", "10", -1},
        {"v1.2", "1.2", 0},
        {"V1.2.3", "1.2.3", 0},
        {"  1.2  ", "1.2", 0},
        {"12.2.8.410", "12.2.8.400", 1},
        {"7.2.8.810", "7.2.8.810", 0},
        {"18446744073709551615", "1", VG_VERSION_INCOMPARABLE}, /* 20 digits: refused */
        {"9999999999999999999", "9999999999999999998", 1},
        /* a numeric '-' suffix is a build number, not a pre-release */
        {"5.17.1", "5.17.1-754993421", -1},
        {"5.17.1-754993421", "5.17.1-754993422", -1},
        {"5.17.1-754993421", "5.17.2", -1},
        {"5.17.1-0", "5.17.1", 0},
        /* SemVer 2.0.0 §11's own example order */
        {"1.0.0-alpha", "1.0.0-alpha.1", -1},
        {"1.0.0-alpha.1", "1.0.0-alpha.beta", -1},
        {"1.0.0-alpha.beta", "1.0.0-beta", -1},
        {"1.0.0-beta", "1.0.0-beta.2", -1},
        {"1.0.0-beta.2", "1.0.0-beta.11", -1},
        {"1.0.0-beta.11", "1.0.0-rc.1", -1},
        {"1.0.0-rc.1", "1.0.0", -1},
        {"1.0.0-rc.1", "1.0.0-754993421", -1},
        {"1.0.0+build5", "1.0.0", 0},
        {"1.0.0-rc1+g123", "1.0.0-rc1", 0},
        /* opaque tails: equal only when identical, else nobody knows */
        {"22D19", "22D28", VG_VERSION_INCOMPARABLE},
        {"2.1b", "2.1B", 0},
        {"2.1b", "2.1", VG_VERSION_INCOMPARABLE},
        {"2.1b", "2.1.5", VG_VERSION_INCOMPARABLE},
        {"2.1b", "2.3", -1},
        {"2.1b", "2.0.9", 1},
        {"1.0.RELEASE", "1.0.1", VG_VERSION_INCOMPARABLE},
        {"1.0.RELEASE", "1.1", -1},
        /* garbage never compares */
        {"", "1.0", VG_VERSION_INCOMPARABLE},
        {"abc", "1.0", VG_VERSION_INCOMPARABLE},
        {"v", "1.0", VG_VERSION_INCOMPARABLE},
        {"1..2", "1", VG_VERSION_INCOMPARABLE},
        {"1.", "1", VG_VERSION_INCOMPARABLE},
        {"1.2-", "1.2", VG_VERSION_INCOMPARABLE},
        {"1 2", "1", VG_VERSION_INCOMPARABLE},
        {"-1", "1", VG_VERSION_INCOMPARABLE},
        {"1/2", "1", VG_VERSION_INCOMPARABLE},
        {"1.2.3.4.5.6.7.8.9.10.11.12.13", "1", VG_VERSION_INCOMPARABLE},
        {"MMT-1710", "1", VG_VERSION_INCOMPARABLE},
        {"9.x model 35700BAX3", "9", VG_VERSION_INCOMPARABLE},
        {"1.0", NULL, VG_VERSION_INCOMPARABLE},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int got = vg_version_compare_str(t[i].a, t[i].b);
        int want = t[i].want;
        if (got != want)
            fail_msg("compare('%s', '%s') = %d, want %d", t[i].a, t[i].b ? t[i].b : "(null)", got,
                     want);
        /* antisymmetric */
        if (t[i].b && want != VG_VERSION_INCOMPARABLE)
            assert_int_equal(vg_version_compare_str(t[i].b, t[i].a), -want);
    }
}

static void test_version_parse_parts(void **state)
{
    (void)state;
    struct vg_version v;
    assert_int_equal(vg_version_parse("5.17.1-754993421", 16, &v), 0);
    assert_int_equal(v.nseg, 3);
    assert_int_equal(v.tail_kind, VG_VTAIL_BUILD);
    assert_int_equal(v.build, 754993421);
    assert_int_equal(vg_version_parse("1.0.0-rc.1", 10, &v), 0);
    assert_int_equal(v.tail_kind, VG_VTAIL_PRE);
    assert_int_equal(vg_version_parse("22D19", 5, &v), 0);
    assert_int_equal(v.tail_kind, VG_VTAIL_OPAQUE);
    /* 'len' is honoured: no NUL needed */
    assert_int_equal(vg_version_parse("1.2junk", 3, &v), 0);
    assert_int_equal(v.nseg, 2);
    assert_int_equal(v.tail_kind, VG_VTAIL_NONE);
    assert_int_equal(vg_version_parse(NULL, 0, &v), -1);
    char longv[VG_VERSION_TEXT_MAX + 2];
    memset(longv, 'a', sizeof longv);
    memcpy(longv, "1-", 2);
    longv[sizeof longv - 1] = '\0';
    assert_int_equal(vg_version_parse(longv, strlen(longv), &v), -1);
    longv[VG_VERSION_TEXT_MAX] = '\0';
    assert_int_equal(vg_version_parse(longv, strlen(longv), &v), 0);
}

static enum vg_vmatch in_expr(const char *expr, const char *version)
{
    struct vg_vexpr e;
    struct vg_version v;
    vg_vexpr_parse(expr, strlen(expr), &e);
    if (version == NULL)
        return vg_vexpr_match(&e, NULL);
    if (vg_version_parse(version, strlen(version), &v) != 0)
        fail_msg("test version '%s' does not parse", version);
    return vg_vexpr_match(&e, &v);
}

#define IN VG_VMATCH_IN
#define OUT VG_VMATCH_OUT
#define UNK VG_VMATCH_UNKNOWN

static void test_version_expressions(void **state)
{
    (void)state;
    static const struct {
        const char *expr, *version;
        enum vg_vmatch want;
    } t[] = {
        /* the comparator forms of the real documents */
        {"<= 2.2.0", "2.2.0", IN},
        {"<= 2.2.0", "2.1.9", IN},
        {"<= 2.2.0", "2.2.1", OUT},
        {"<= 2.2.0", NULL, UNK},
        {"<=12.1.3", "12.1.3", IN},
        {"<=12.1.3", "12.1.4", OUT},
        {"<12.2.8.410", "12.2.8.410", OUT},
        {"<12.2.8.410", "12.2.8.409", IN},
        {"<12.2.8.410", "12.2.8", IN},
        {"<=5.8.7.0.36", "5.8.7.0.36", IN},
        {"<=5.8.7.0.36", "5.8.7.1", OUT},
        {"<=5.17.1-754993421", "5.17.1", IN},
        {"<=5.17.1-754993421", "5.17.1-754993421", IN},
        {"<=5.17.1-754993421", "5.17.1-754993422", OUT},
        {"<=5.17.1-754993421", "5.18", OUT},
        {"<=1.52", "1.52", IN},
        {"<=1.52", "1.6", IN}, /* 6 < 52: numbers, not decimals */
        {"<=1.52", "1.53", OUT},
        {"<=22D28", "22D19", UNK},
        {"> 1.0", "1.0", OUT},
        {">=1.0", "1.0", IN},
        {"!=1.0", "1.0", OUT},
        {"!=1.0", "1.1", IN},
        /* exact */
        {"12.1.3", "12.1.3", IN},
        {"12.1.3", "v12.1.3", IN},
        {"12.1.3", "12.1.30", OUT},
        {"= 12.1.3", "12.1.3", IN},
        {"==12.1.3", "12.1.3", IN},
        {"2.7.4", "2.8.0", OUT},
        /* conjunctions */
        {">= 1.0, < 2.0", "1.5", IN},
        {">= 1.0, < 2.0", "2.0", OUT},
        {">=1.0 && <2.0", "0.9", OUT},
        {">1.0 <2.0", "1.0", OUT},
        /* wildcards */
        {"9.x", "9.2.1", IN},
        {"9.x", "9", IN},
        {"9.x", "10.0", OUT},
        {"9.x", "8.9", OUT},
        {"12.1.x", "12.1.7", IN},
        {"12.1.X", "12.2", OUT},
        {"12.1.*", "12b", UNK},
        {"9.x", NULL, UNK},
        /* words */
        {"2.2.0 and prior", "2.2.0", IN},
        {"2.2.0 and prior", "2.3", OUT},
        {"Versions 2.2.0 and prior", "1.0", IN},
        {"2.0 and later", "1.9", OUT},
        {"2.0 or later", "2.0", IN},
        {"prior to 3.0", "3.0", OUT},
        {"prior to 3.0", "2.9", IN},
        {"before 1.5", "1.4.9", IN},
        {"earlier than 1.5", "1.5", OUT},
        /* every version */
        {"vers:all/*", "1.0", IN},
        {"vers:all/*", NULL, IN},
        {"All versions", NULL, IN},
        {"*", "0", IN},
        /* purl vers */
        {"vers:generic/>=1.0|<2.0", "1.5", IN},
        {"vers:generic/>=1.0|<2.0", "1.0", IN},
        {"vers:generic/>=1.0|<2.0", "2.0", OUT},
        {"vers:generic/>=1.0|<2.0", "0.9", OUT},
        {"vers:generic/ >= 1.0 | < 2.0 ", "1.5", IN},
        {"vers:generic/<1.0|>=2.0", "0.5", IN},
        {"vers:generic/<1.0|>=2.0", "1.5", OUT},
        {"vers:generic/<1.0|>=2.0", "3", IN},
        {"vers:semver/1.2.3|>=2.0.0|<5.0.0", "1.2.3", IN},
        {"vers:semver/1.2.3|>=2.0.0|<5.0.0", "1.2.4", OUT},
        {"vers:semver/1.2.3|>=2.0.0|<5.0.0", "3.0.0", IN},
        {"vers:semver/1.2.3|>=2.0.0|<5.0.0", "5.0.0", OUT},
        {"vers:generic/<2.0|!=1.5|>=1.0", "1.5", OUT},
        {"vers:generic/<2.0|!=1.5|>=1.0", "1.4", IN},
        {"vers:generic/>=1.0|<2.0", "1.0b", UNK},
        {"vers:generic/>=1.0|<2.0", NULL, UNK},
        /* not understood: never IN, never OUT */
        {"vers:generic/", "1.0", UNK},
        {"vers:generic/>=1.0|", "1.0", UNK},
        {"vers:/1.0", "1.0", UNK},
        {"vers:generic/1.0|1.0", "1.0", UNK},
        {"vers:generic/>=1.0%2B1", "1.0", UNK},
        {"vers:generic/*|>=1.0", "1.0", UNK},
        {"vers:generic>=1.0", "1.0", UNK},
        {"9.x (with Wireless Battery Modules >= 22D19 | <= v22D28)", "9.1", UNK},
        {"6.x (Wireless Battery Modules (16 | 16D38 | 17 | 17D19 | >= 20D29 | <= v20D32 | >= "
         "22D24 | <= v22D28)",
         "6.0", UNK},
        {"053L000091 (global) / 054U000091 (U.S.) and 053L000092 (global) / 054U000092 (U.S.)",
         "1.0", UNK},
        {"MMT-1710", "1.0", UNK},
        {"MMT-1715 | MMT-1754 | MMT-1755", "1.0", UNK},
        {"smart3250-2.6.27-wlan2.1.7.cramfs", "2.6.27", UNK},
        {"CMS7.820.075.08/0.74(0.75)", "7.820", UNK},
        {"latest", "1.0", UNK},
        {"<= 9.x", "9.0", UNK},
        {"<=", "1.0", UNK},
        {"", "1.0", UNK},
        {"1.0 2.0", "1.0", UNK},
        {"2.2.0 and", "1.0", UNK},
        {"! 1.0", "1.0", UNK},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        enum vg_vmatch got = in_expr(t[i].expr, t[i].version);
        if (got != t[i].want)
            fail_msg("'%s' contains '%s': %s, want %s", t[i].expr,
                     t[i].version ? t[i].version : "(unknown)", vg_vmatch_name(got),
                     vg_vmatch_name(t[i].want));
    }
}

static void test_version_expression_kinds(void **state)
{
    (void)state;
    struct vg_vexpr e;
    const char *s = "9.x model 35700BAX3";
    vg_vexpr_parse(s, strlen(s), &e);
    assert_int_equal(e.kind, VG_VEXPR_MODEL);
    assert_int_equal(e.model_len, 9);
    assert_memory_equal(e.model, "35700BAX3", 9);
    assert_int_equal(in_expr(s, "9.1"), IN);   /* the version part only */
    assert_int_equal(in_expr(s, "8.1"), OUT);
    s = "9.x model";
    vg_vexpr_parse(s, strlen(s), &e);
    assert_int_equal(e.kind, VG_VEXPR_TEXT);
    s = "vers:all/*";
    vg_vexpr_parse(s, strlen(s), &e);
    assert_int_equal(e.kind, VG_VEXPR_ANY);
    s = "vers:generic/<2.0|>=1.0";
    vg_vexpr_parse(s, strlen(s), &e);
    assert_int_equal(e.kind, VG_VEXPR_VERS);
    assert_int_equal(e.n, 2);
    assert_int_equal(e.c[0].op, VG_VOP_GE); /* sorted by version */
    /* more constraints than VG_VEXPR_MAX is TEXT, not a partial reading */
    char buf[512] = "vers:generic/";
    for (int i = 0; i <= VG_VEXPR_MAX; i++) {
        size_t n = strlen(buf);
        snprintf(buf + n, sizeof buf - n, "%s%d.0", i ? "|" : "", i + 1);
    }
    vg_vexpr_parse(buf, strlen(buf), &e);
    assert_int_equal(e.kind, VG_VEXPR_TEXT);
    char big[VG_VEXPR_TEXT_MAX + 10];
    memset(big, ' ', sizeof big);
    memcpy(big, "<=1.0", 5);
    big[sizeof big - 1] = '\0';
    big[sizeof big - 2] = 'x'; /* not blank: the text really is too long */
    vg_vexpr_parse(big, strlen(big), &e);
    assert_int_equal(e.kind, VG_VEXPR_TEXT);
}

/* ---- the real documents ---- */

struct dcase {
    const char *mfr, *model, *fw;
    enum vg_csaf_status status;
    const char *affected; /* CVEs with status AFFECTED, document order */
    const char *unknown;  /* CVEs with status UNKNOWN */
    double max;           /* max_score; -1 when none */
};

struct dexp {
    const char *file, *id, *title, *version, *current;
    size_t nproducts;
    const char *cves;
    struct dcase cases[8];
};

#define A VG_CSAF_AFFECTED
#define N VG_CSAF_NOT_AFFECTED
#define U VG_CSAF_UNKNOWN
#define X VG_CSAF_NO_MATCH

/* Ids, titles, CVEs and product counts from tests/data/csaf/INDEX.md. For
 * every document: an AFFECTED device, NOT_AFFECTED where the document can
 * say so, UNKNOWN and NO_MATCH. */
static const struct dexp DOCS[] = {
    {"icsma-22-167-01.json", "ICSMA-22-167-01", "Hillrom Medical Device Management", "1",
     "2022-06-16T00:00:00.000000Z", 4, "CVE-2022-26388 CVE-2022-26389",
     {{"Baxter", "ELI 380", "2.6.0", A, "CVE-2022-26388 CVE-2022-26389", "", 7.7},
      {"Welch Allyn", "ELI 250c Resting Electrocardiograph", "v2.1.1", A,
       "CVE-2022-26388 CVE-2022-26389", "", 7.7},
      {"Hill-Rom", "Welch Allyn ELI 280", "2.3.2", N, "", "", -1},
      {"Welch Allyn", "ELI 150c", "", U, "", "CVE-2022-26388 CVE-2022-26389", 7.7},
      {"Philips", "ELI 380", "1.0", X, "", "", -1}}},
    {"icsma-22-251-01.json", "ICSMA-22-251-01", "Baxter Sigma Spectrum Infusion Pump (Update A)",
     "2", "2022-09-29T00:00:00.000000Z", 6,
     "CVE-2022-26390 CVE-2022-26392 CVE-2022-26393 CVE-2022-26394",
     {{"Baxter", "Spectrum IQ 35700BAX3", "9.1", A,
       "CVE-2022-26390 CVE-2022-26392 CVE-2022-26393 CVE-2022-26394", "", 7.5},
      {"Baxter", "Sigma Spectrum 35700BAX2", "8.4", A,
       "CVE-2022-26390 CVE-2022-26392 CVE-2022-26393 CVE-2022-26394", "", 7.5},
      {"Baxter", "Sigma Spectrum 35700BAX2", "7.0", N, "", "", -1},
      /* "9.x (with Wireless Battery Modules >= 22D19 | <= v22D28)" */
      {"Baxter Healthcare", "Spectrum IQ LVP", "9.2", U, "",
       "CVE-2022-26390 CVE-2022-26392 CVE-2022-26393 CVE-2022-26394", 7.5},
      {"Baxter", "Sigma Spectrum LVP", "6.0", U, "",
       "CVE-2022-26390 CVE-2022-26392 CVE-2022-26393 CVE-2022-26394", 7.5},
      {"Baxter", "Colleague", "3.0", X, "", "", -1},
      {"Medtronic", "Sigma Spectrum", "8.0", X, "", "", -1}}},
    /* Model numbers where versions belong: never NOT_AFFECTED. */
    {"icsma-22-263-01.json", "ICSMA-22-263-01", "Medtronic NGP 600 Series Insulin Pumps", "1",
     "2022-09-20T00:00:00.000000Z", 4, "CVE-2022-32537",
     {{"Medtronic", "MiniMed 630G MMT-1754", "", A, "CVE-2022-32537", "", 4.8},
      {"Medtronic", "MMT-1782", "", A, "CVE-2022-32537", "", 4.8},
      {"Medtronic MiniMed", "MiniMed 620G", "1.2", U, "", "CVE-2022-32537", 4.8},
      {"Medtronic", "MiniMed 780G", "1.0", X, "", "", -1}}},
    /* Each CVE applies to one of the two products only. */
    {"icsma-22-298-01.json", "ICSMA-22-298-01", "AliveCor KardiaMobile", "1",
     "2022-10-25T06:00:00.000000Z", 2, "CVE-2022-40703 CVE-2022-41627",
     {{"AliveCor Inc.", "KardiaMobile", "", A, "CVE-2022-41627", "", 4.8},
      {"AliveCor", "Kardia App Android", "5.17.1", A, "CVE-2022-40703", "", 5.2},
      {"AliveCor", "Kardia App Android application", "5.17.1-754993421", A, "CVE-2022-40703", "",
       5.2},
      {"AliveCor", "Kardia App Android application", "5.17.1-754993422", N, "", "", -1},
      {"AliveCor", "Kardia App Android application", "5.18", N, "", "", -1},
      {"AliveCor", "Kardia App Android application", "", U, "", "CVE-2022-40703", 5.2},
      {"AliveCor", "KardiaBand", "1", X, "", "", -1}}},
    /* A list of software part numbers: only an exact one decides. */
    {"icsma-23-103-01.json", "ICSMA-23-103-01", "B. Braun Battery Pack SP with Wi-Fi", "1",
     "2023-04-18T19:27:35.022998Z", 1, "CVE-2023-0888",
     {{"B. Braun", "Battery Pack SP with Wi-Fi", "054U000092", A, "CVE-2023-0888", "", 5.5},
      {"B. Braun Melsungen AG", "Battery pack SP with WIFI", "053l000091", A, "CVE-2023-0888", "",
       5.5},
      {"B. Braun Medical", "Battery pack SP with WIFI", "053L000093", U, "", "CVE-2023-0888", 5.5},
      {"BBraun", "Battery Pack SP", "", U, "", "CVE-2023-0888", 5.5},
      {"B. Braun", "Space Pump", "054U000092", X, "", "", -1}}},
    {"icsma-23-194-01.json", "ICSMA-23-194-01", "BD Alaris System with Guardrails Suite MX", "2",
     "2023-10-26T06:00:00.000000Z", 6,
     "CVE-2023-30559 CVE-2023-30560 CVE-2023-30561 CVE-2023-30562 CVE-2023-30563 "
     "CVE-2023-30564 CVE-2023-30565 CVE-2018-1285",
     {/* the exact branch 12.1.3 (CSAFPID-0006): one CVE, scored 3.0 there */
      {"BD", "Alaris Guardrails Editor", "12.1.3", A, "CVE-2023-30562", "", 3.0},
      /* the range branch <=12.1.2 (CSAFPID-0002): all eight */
      {"Becton Dickinson", "BD Alaris Guardrails Editor", "12.1.2", A,
       "CVE-2023-30559 CVE-2023-30560 CVE-2023-30561 CVE-2023-30562 CVE-2023-30563 "
       "CVE-2023-30564 CVE-2023-30565 CVE-2018-1285",
       "", 8.2},
      {"Becton, Dickinson and Company", "Alaris Point-of-Care Unit (PCU) Model 8015", "12.1.3", A,
       "CVE-2023-30559 CVE-2023-30560 CVE-2023-30561 CVE-2023-30562 CVE-2023-30563 "
       "CVE-2023-30564 CVE-2023-30565 CVE-2018-1285",
       "", 8.2},
      {"BD", "Alaris Guardrails Editor", "12.1.4", N, "", "", -1},
      {"BD", "CQI Reporter", "10.18", N, "", "", -1},
      {"BD", "Alaris Systems Manager", "12.3b", U, "",
       "CVE-2023-30559 CVE-2023-30560 CVE-2023-30561 CVE-2023-30562 CVE-2023-30563 "
       "CVE-2023-30564 CVE-2023-30565 CVE-2018-1285",
       8.2},
      {"Baxter", "Alaris Guardrails Editor", "1.0", X, "", "", -1}}},
    {"icsma-23-248-01.json", "ICSMA-23-248-01", "Softneta MedDream PACS Premium", "1",
     "2023-09-05T06:00:00.000000Z", 1, "CVE-2023-40150 CVE-2023-39227",
     {{"Softneta", "MedDream PACS Premium", "7.2.8.810", A, "CVE-2023-40150 CVE-2023-39227", "",
       9.8},
      {"Softneta UAB", "MedDream PACS", "7.3", N, "", "", -1},
      {"Softneta", "MedDream PACS", "7.2.8.810b", U, "", "CVE-2023-40150 CVE-2023-39227", 9.8},
      {"Softneta", "MedDream Viewer", "1", X, "", "", -1}}},
    /* A Welch Allyn product under the vendor Baxter. */
    {"icsma-24-151-02.json", "ICSMA-24-151-02", "Baxter Welch Allyn Connex Spot Monitor", "1",
     "2024-05-30T06:00:00.000000Z", 1, "CVE-2024-1275",
     {{"Welch Allyn", "Connex Spot Monitor", "1.52", A, "CVE-2024-1275", "", 7.4},
      {"Baxter", "CSM", "1.53", N, "", "", -1},
      {"Baxter", "Connex Spot Monitor", "garbage!", U, "", "CVE-2024-1275", 7.4},
      {"Welch Allyn", "Connex Vital Signs Monitor", "1.0", X, "", "", -1}}},
    {"icsma-24-200-01.json", "ICSMA-24-200-01", "Philips Vue PACS (Update A)", "2",
     "2024-11-21T07:00:00.000000Z", 1, "CVE-2021-28165 CVE-2023-40704",
     {{"Philips Healthcare", "Vue PACS", "12.2.8.400", A, "CVE-2021-28165 CVE-2023-40704", "",
       6.8},
      {"Philips", "Vue PACS", "12.2.8.410", N, "", "", -1},
      {"Philips", "Vue PACS", "", U, "", "CVE-2021-28165 CVE-2023-40704", 6.8},
      {"Philips", "IntelliVue MX450", "1", X, "", "", -1}}},
    /* Every version of the monitor (vers:all): never NOT_AFFECTED; the
     * firmware-only CVE-2024-12248 stays undecided for an unlisted image. */
    {"icsma-25-030-01.json", "ICSMA-25-030-01", "Contec Health CMS8000 Patient Monitor (Update A)",
     "2", "2025-02-25T07:00:00.000000Z", 4,
     "CVE-2024-12248 CVE-2025-0626 CVE-2025-0683 CVE-2025-1204",
     {{"Contec", "CMS8000", "CMS7.820.075.08/0.74(0.75)", A,
       "CVE-2024-12248 CVE-2025-0626 CVE-2025-0683 CVE-2025-1204", "", 9.8},
      {"Contec Medical Systems", "CMS8000 Patient Monitor", "2.0", A,
       "CVE-2025-0626 CVE-2025-0683 CVE-2025-1204", "CVE-2024-12248", 7.5},
      {"Contec Health", "CMS8000 Patient Monitor", "", A,
       "CVE-2025-0626 CVE-2025-0683 CVE-2025-1204", "CVE-2024-12248", 7.5},
      {"Contec", "CMS6000", "1", X, "", "", -1}}},
    {"icsma-25-044-01.json", "ICSMA-25-044-01",
     "Qardio Heart Health IOS and Android Application and QardioARM A100", "1",
     "2025-02-13T07:00:00.000000Z", 3, "CVE-2025-20615 CVE-2025-24836 CVE-2025-23421",
     {{"Qardio", "Qardio Heart Health iOS Mobile Application", "2.7.4", A,
       "CVE-2025-20615 CVE-2025-24836 CVE-2025-23421", "", 7.1},
      {"Qardio", "QardioARM A100", "", A, "CVE-2025-20615 CVE-2025-24836 CVE-2025-23421", "",
       7.1},
      {"Qardio Inc", "Heart Health iOS Mobile Application", "2.8.0", N, "", "", -1},
      {"Qardio", "Heart Health Android Mobile Application", "2.5.1 (beta)", U, "",
       "CVE-2025-20615 CVE-2025-24836 CVE-2025-23421", 7.1},
      {"Qardio", "QardioBase 2", "1", X, "", "", -1}}},
    {"icsma-25-058-01.json", "ICSMA-25-058-01",
     "Dario Health USB-C Blood Glucose Monitoring System Starter Kit Android Application", "1",
     "2025-02-27T07:00:00.000000Z", 2,
     "CVE-2025-20060 CVE-2025-23405 CVE-2025-24843 CVE-2025-24849 CVE-2025-20049 "
     "CVE-2025-24318 CVE-2025-24316",
     {{"Dario Health", "Blood Glucose Monitoring System Starter Kit Android Applications",
       "5.8.7.0.36", A,
       "CVE-2025-20060 CVE-2025-23405 CVE-2025-24843 CVE-2025-24849 CVE-2025-20049 "
       "CVE-2025-24318 CVE-2025-24316",
       "", 7.5},
      {"DarioHealth", "Dario Application Database", "", A,
       "CVE-2025-20060 CVE-2025-23405 CVE-2025-24843 CVE-2025-24849 CVE-2025-20049 "
       "CVE-2025-24318 CVE-2025-24316",
       "", 7.5},
      {"Dario", "USB-C Blood Glucose Monitoring System Starter Kit Android Applications",
       "5.8.7.0.37", N, "", "", -1},
      {"Dario", "USB-C Blood Glucose Monitoring System Starter Kit Android Applications", "", U,
       "",
       "CVE-2025-20060 CVE-2025-23405 CVE-2025-24843 CVE-2025-24849 CVE-2025-20049 "
       "CVE-2025-24318 CVE-2025-24316",
       7.5},
      {"Dario", "Dario Blood Pressure Monitor", "1", X, "", "", -1}}},
};
#define NDOCS (sizeof DOCS / sizeof DOCS[0])

/* Every *.json in tests/data/csaf has expectations here, and back. */
static void test_corpus_complete(void **state)
{
    (void)state;
    DIR *dir = opendir(CSAF_DIR);
    assert_non_null(dir);
    size_t seen = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        size_t k = 0;
        while (k < NDOCS && strcmp(DOCS[k].file, e->d_name) != 0)
            k++;
        if (k == NDOCS)
            fail_msg("%s has no expectations in test_advisory.c", e->d_name);
        seen++;
    }
    closedir(dir);
    assert_int_equal(seen, NDOCS);
}

static void test_parse_real_documents(void **state)
{
    (void)state;
    for (size_t k = 0; k < NDOCS; k++) {
        const struct dexp *x = &DOCS[k];
        struct vg_csaf_doc *d = load(x->file);
        const struct vg_csaf_info *i = vg_csaf_info(d);
        assert_string_equal(i->id, x->id);
        assert_string_equal(i->title, x->title);
        assert_string_equal(i->version, x->version);
        assert_string_equal(i->current_release_date, x->current);
        assert_true(i->current_release_ms > 1600000000000);
        if (i->nproducts != x->nproducts)
            fail_msg("%s: %zu products, want %zu", x->file, i->nproducts, x->nproducts);
        char cves[512] = "";
        for (size_t v = 0; v < i->nvulns; v++) {
            size_t n = strlen(cves);
            snprintf(cves + n, sizeof cves - n, "%s%s", v ? " " : "", i->vulns[v].cve);
            assert_true(i->vulns[v].max_score > 0 && i->vulns[v].max_score <= 10);
            assert_true(i->vulns[v].nstatus > 0);
            assert_true(strncmp(i->vulns[v].cwe, "CWE-", 4) == 0);
        }
        assert_string_equal(cves, x->cves);
        for (size_t p = 0; p < i->nproducts; p++) {
            assert_true(i->products[p].in_tree);
            assert_true(i->products[p].vendor[0] && i->products[p].name[0]);
            assert_true(i->products[p].version[0]);
        }
        vg_csaf_free(d);
    }
}

static void test_match_real_documents(void **state)
{
    (void)state;
    struct vg_csaf_match *m = malloc(sizeof *m);
    assert_non_null(m);
    for (size_t k = 0; k < NDOCS; k++) {
        const struct dexp *x = &DOCS[k];
        struct vg_csaf_doc *d = load(x->file);
        int seen[4] = {0};
        for (size_t c = 0; c < 8 && x->cases[c].mfr; c++) {
            const struct dcase *t = &x->cases[c];
            char aff[512], unk[512];
            match(d, t->mfr, t->model, t->fw, m);
            hits_of(m, VG_CSAF_AFFECTED, aff, sizeof aff);
            hits_of(m, VG_CSAF_UNKNOWN, unk, sizeof unk);
            if (m->status != t->status || strcmp(aff, t->affected) != 0 ||
                strcmp(unk, t->unknown) != 0 ||
                (int)(m->max_score * 10 + 0.5) != (int)(t->max * 10 + 0.5))
                fail_msg("%s [%s | %s | %s]: %s affected={%s} unknown={%s} max=%.1f; want %s "
                         "{%s} {%s} %.1f",
                         x->id, t->mfr, t->model, t->fw, vg_csaf_status_name(m->status), aff, unk,
                         m->max_score, vg_csaf_status_name(t->status), t->affected, t->unknown,
                         t->max);
            seen[t->status] = 1;
            /* What comes with each answer. */
            if (t->status == VG_CSAF_NO_MATCH) {
                assert_int_equal(m->nproducts, 0);
                assert_int_equal(m->nhits, 0);
            } else {
                assert_true(m->nproducts > 0);
            }
            if (t->status == VG_CSAF_AFFECTED || t->status == VG_CSAF_UNKNOWN)
                assert_true(m->nremediations > 0);
            else
                assert_int_equal(m->nremediations, 0);
            if (unk[0])
                assert_non_null(m->review);
            else
                assert_null(m->review);
        }
        /* Every document gave at least one AFFECTED and one NO_MATCH. */
        assert_true(seen[VG_CSAF_AFFECTED] && seen[VG_CSAF_NO_MATCH]);
        vg_csaf_free(d);
    }
    free(m);
}

/* ICSMA-23-194-01: the same product in two branches; the score and the
 * remediations follow the branch that decided. */
static void test_match_bd_branches(void **state)
{
    (void)state;
    struct vg_csaf_doc *d = load("icsma-23-194-01.json");
    const struct vg_csaf_info *info = vg_csaf_info(d);
    struct vg_csaf_match *m = malloc(sizeof *m);
    assert_non_null(m);

    match(d, "BD", "Alaris Guardrails Editor", "12.1.3", m);
    assert_int_equal(m->status, VG_CSAF_AFFECTED);
    assert_int_equal(m->nhits, 1);
    assert_ptr_equal(m->hits[0].cve, m->hits[0].vuln->cve); /* borrowed from the doc */
    assert_true(m->hits[0].score == 3.0);
    assert_string_equal(m->hits[0].vector, "CVSS:3.1/AV:A/AC:L/PR:L/UI:R/S:U/C:N/I:L/A:N");
    /* both Guardrails Editor branches matched by name; 0006 decided */
    assert_int_equal(m->nproducts, 2);
    assert_string_equal(info->products[m->products[0]].id, "CSAFPID-0002");
    assert_string_equal(info->products[m->products[1]].id, "CSAFPID-0006");
    int found = 0;
    for (size_t i = 0; i < m->nremediations; i++) {
        const struct vg_csaf_remediation *r = m->remediations[i];
        found |= strncmp(r->details, "BD Alaris System 12.3, which includes BD Alaris Guardrails "
                                     "Editor version 12.1.3",
                         80) == 0;
        /* every remediation returned names the deciding product */
        int names = 0;
        for (size_t p = 0; p < r->nproducts; p++)
            names |= strcmp(info->products[r->products[p]].id, "CSAFPID-0006") == 0;
        assert_true(names);
    }
    assert_true(found);
    assert_int_equal(m->nremediations, 18); /* 18 distinct texts list 0006 */

    match(d, "BD", "Alaris Guardrails Editor", "12.1.2", m);
    const struct vg_csaf_hit *h = hit_for(m, "CVE-2023-30562");
    assert_non_null(h);
    assert_true(h->score == 6.7);
    assert_true(m->max_score == 8.2);
    vg_csaf_free(d);
    free(m);
}

/* ---- matching rules on a synthetic document ---- */

static char *make_doc(const char *vulns)
{
    static const char head[] =
        "{\"document\":{\"csaf_version\":\"2.0\",\"title\":\"Synthetic\",\"category\":\"csaf_"
        "base\","
        "\"tracking\":{\"id\":\"TEST-1\",\"version\":\"1\","
        "\"current_release_date\":\"2024-01-01T00:00:00Z\"}},"
        "\"product_tree\":{\"branches\":[{\"category\":\"vendor\",\"name\":\"Acme Medical Inc.\","
        "\"branches\":[{\"category\":\"product_name\",\"name\":\"Monitor X\",\"branches\":["
        "{\"category\":\"product_version\",\"name\":\"1.0\",\"product\":{\"product_id\":\"P1\"}},"
        "{\"category\":\"product_version\",\"name\":\"2.0\",\"product\":{\"product_id\":\"P2\"}},"
        "{\"category\":\"product_version\",\"name\":\"3.0\",\"product\":{\"product_id\":\"P3\"}},"
        "{\"category\":\"product_version_range\",\"name\":\"<2.0\",\"product\":{\"product_id\":"
        "\"P4\"}}]},"
        "{\"category\":\"product_name\",\"name\":\"Hub\",\"product\":{\"product_id\":\"P5\","
        "\"name\":\"Acme Hub\"}}]}],"
        "\"full_product_names\":[{\"product_id\":\"P6\",\"name\":\"Acme Gateway\"}],"
        "\"product_groups\":[{\"group_id\":\"G1\",\"product_ids\":[\"P2\",\"P3\"]}]},"
        "\"vulnerabilities\":[";
    size_t n = sizeof head + strlen(vulns) + 4;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s%s]}", head, vulns);
    return s;
}

static enum vg_csaf_status status_for(const char *vulns, const char *model, const char *fw)
{
    char *json = make_doc(vulns);
    struct vg_csaf_doc *d = parse_str(json);
    free(json);
    struct vg_csaf_match *m = malloc(sizeof *m);
    assert_non_null(m);
    match(d, "ACME", model, fw, m);
    enum vg_csaf_status s = m->status;
    free(m);
    vg_csaf_free(d);
    return s;
}

static void test_match_status_lists(void **state)
{
    (void)state;
    static const struct {
        const char *vulns, *model, *fw;
        enum vg_csaf_status want;
    } t[] = {
        /* a timeline: affected from 1.0, fixed in 2.0 */
        {"{\"product_status\":{\"first_affected\":[\"P1\"],\"first_fixed\":[\"P2\"]}}", "Monitor X",
         "0.9", N},
        {"{\"product_status\":{\"first_affected\":[\"P1\"],\"first_fixed\":[\"P2\"]}}", "Monitor X",
         "1.0", A},
        {"{\"product_status\":{\"first_affected\":[\"P1\"],\"first_fixed\":[\"P2\"]}}", "Monitor X",
         "1.9.9", A},
        {"{\"product_status\":{\"first_affected\":[\"P1\"],\"first_fixed\":[\"P2\"]}}", "Monitor X",
         "2.0", N},
        {"{\"product_status\":{\"first_affected\":[\"P1\"],\"first_fixed\":[\"P2\"]}}", "Monitor X",
         "", U},
        {"{\"product_status\":{\"first_affected\":[\"P1\"],\"first_fixed\":[\"P2\"]}}", "Monitor X",
         "1.0b", U},
        /* last_affected: affected up to and including it */
        {"{\"product_status\":{\"last_affected\":[\"P2\"]}}", "Monitor X", "2.0", A},
        {"{\"product_status\":{\"last_affected\":[\"P2\"]}}", "Monitor X", "2.0.1", N},
        /* first_fixed alone: everything before it */
        {"{\"product_status\":{\"first_fixed\":[\"P2\"]}}", "Monitor X", "1.5", A},
        {"{\"product_status\":{\"first_fixed\":[\"P2\"]}}", "Monitor X", "2.1", N},
        /* fixed beats nothing; known_affected beats a contradicting fixed */
        {"{\"product_status\":{\"known_affected\":[\"P4\"],\"fixed\":[\"P2\"]}}", "Monitor X",
         "1.5", A},
        {"{\"product_status\":{\"known_affected\":[\"P4\"],\"fixed\":[\"P2\"]}}", "Monitor X",
         "2.0", N},
        {"{\"product_status\":{\"known_affected\":[\"P4\"],\"fixed\":[\"P2\"]}}", "Monitor X",
         "2.5", N},
        {"{\"product_status\":{\"known_affected\":[\"P2\"],\"fixed\":[\"P2\"]}}", "Monitor X",
         "2.0", A},
        {"{\"product_status\":{\"known_not_affected\":[\"P3\"]}}", "Monitor X", "3.0", N},
        {"{\"product_status\":{\"recommended\":[\"P3\"],\"known_affected\":[\"P4\"]}}", "Monitor X",
         "3.0", N},
        /* under investigation: unknown unless the version is out of it */
        {"{\"product_status\":{\"under_investigation\":[\"P4\"]}}", "Monitor X", "1.0", U},
        {"{\"product_status\":{\"under_investigation\":[\"P4\"]}}", "Monitor X", "2.5", N},
        /* a product named without a version: every version */
        {"{\"product_status\":{\"known_affected\":[\"P5\"]}}", "Hub", "", A},
        {"{\"product_status\":{\"known_affected\":[\"P5\"]}}", "Acme Hub", "99", A},
        /* known only by full_product_names: never NOT_AFFECTED */
        {"{\"product_status\":{\"known_affected\":[\"P6\"]}}", "Gateway", "1.0", U},
        /* no vulnerability lists the matched product: not affected */
        {"{\"product_status\":{\"known_affected\":[\"P5\"]}}", "Monitor X", "1.0", N},
        {"{\"product_status\":{\"known_affected\":[\"P4\"]}}", "Monitor Y", "1.0", X},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        enum vg_csaf_status got = status_for(t[i].vulns, t[i].model, t[i].fw);
        if (got != t[i].want)
            fail_msg("case %zu (%s, '%s'): %s, want %s", i, t[i].vulns, t[i].fw,
                     vg_csaf_status_name(got), vg_csaf_status_name(t[i].want));
    }
}

static void test_match_groups_and_scores(void **state)
{
    (void)state;
    char *json = make_doc(
        "{\"cve\":\"CVE-2024-0001\",\"scores\":[{\"products\":[\"P4\"],\"cvss_v3\":{\"baseScore\":"
        "9.1,\"vectorString\":\"V1\"}},{\"products\":[\"P2\",\"P3\"],\"cvss_v3\":{\"baseScore\":4,"
        "\"vectorString\":\"V2\"}}],\"product_status\":{\"known_affected\":[\"P4\",\"P2\"]},"
        "\"remediations\":[{\"category\":\"vendor_fix\",\"details\":\"Update to 2.1\","
        "\"group_ids\":[\"G1\"]},{\"category\":\"vendor_fix\",\"details\":\"Update to 2.0\","
        "\"product_ids\":[\"P4\"],\"url\":\"https://example.org/"
        "fix\"},{\"category\":\"mitigation\","
        "\"details\":\"Update to 2.0\",\"product_ids\":[\"P4\"]},{\"category\":\"vendor_fix\","
        "\"details\":\"Update to 2.0\",\"product_ids\":[\"P4\"]}]},"
        "{\"cve\":\"CVE-2024-0002\",\"product_status\":{\"known_affected\":[\"P4\"]}}");
    struct vg_csaf_doc *d = parse_str(json);
    free(json);
    struct vg_csaf_match *m = malloc(sizeof *m);
    assert_non_null(m);

    /* 1.5 is in P4 (<2.0): its score 9.1, its two distinct remediations */
    match(d, "Acme", "Monitor X", "1.5", m);
    assert_int_equal(m->status, VG_CSAF_AFFECTED);
    assert_int_equal(m->nhits, 2);
    assert_true(m->hits[0].score == 9.1);
    assert_string_equal(m->hits[0].vector, "V1");
    assert_true(m->hits[1].score == -1); /* CVE-2024-0002 has no score */
    assert_true(m->max_score == 9.1);
    assert_int_equal(m->nremediations, 2);
    assert_string_equal(m->remediations[0]->url, "https://example.org/fix");
    assert_string_equal(m->remediations[1]->category, "mitigation");

    /* 2.0 is P2: score 4, and the group's remediation reaches it */
    match(d, "Acme", "Monitor X", "2.0", m);
    assert_int_equal(m->status, VG_CSAF_AFFECTED);
    assert_int_equal(m->nhits, 1);
    assert_true(m->hits[0].score == 4.0);
    assert_int_equal(m->nremediations, 1);
    assert_string_equal(m->remediations[0]->details, "Update to 2.1");
    assert_int_equal(m->remediations[0]->nproducts, 2);

    /* a matched product the vulnerability does not name */
    match(d, "Acme", "Monitor X", "3.0", m);
    assert_int_equal(m->status, VG_CSAF_NOT_AFFECTED);
    assert_true(m->max_score == -1);
    vg_csaf_free(d);
    free(m);
}

static void test_vendor_and_model_rules(void **state)
{
    (void)state;
    struct vg_csaf_doc *bd = load("icsma-23-194-01.json");
    struct vg_csaf_doc *hill = load("icsma-22-167-01.json");
    struct vg_csaf_match *m = malloc(sizeof *m);
    assert_non_null(m);
    static const struct {
        int hill;
        const char *mfr, *model;
        int matches;
    } t[] = {
        {0, "BD", "Alaris Systems Manager", 1},
        {0, "bd", "alaris   systems-manager", 1},
        {0, "Becton Dickinson", "Alaris Systems Manager", 1},
        {0, "Becton, Dickinson & Co.", "Alaris Systems Manager", 1},
        {0, "BECTON DICKINSON AND COMPANY", "Alaris Systems Manager", 1},
        {0, "CareFusion", "Alaris Systems Manager", 0},   /* no alias table */
        {0, "Alaris", "Systems Manager", 1},              /* brand in the product name */
        {0, "BD", "Systems", 1},                          /* a loose model matches broadly */
        {0, "BD", "Guardrails", 1},
        {0, "BD", "Alaris", 1},
        {0, "BD", "Alaris Pump", 0},
        {0, "B", "Alaris Systems Manager", 0},            /* too short to mean anything */
        {0, "Dickinson Bros", "Alaris Systems Manager", 1}, /* a part of the vendor: loose */
        {0, "Beckton", "Alaris Systems Manager", 0},
        {1, "Baxter", "ELI 380", 1},
        {1, "Baxter International", "ELI 380", 1},
        {1, "HillRom", "ELI 380", 1},
        {1, "Hill-Rom", "ELI 380", 1},
        {1, "Hillrom", "ELI 380 Resting Electrocardiograph", 1},
        {1, "Hillrom", "eli-380", 1},
        {1, "Hillrom", "ELI 38", 0},                      /* whole words only */
        {1, "Hillrom", "ELI 3800", 0},
        {1, "Welch Allyn", "ELI 280", 1},
        {1, "Mortara", "ELI 280", 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct vg_csaf_device dev;
        if (vg_csaf_device_init(&dev, t[i].mfr, t[i].model, "1.0") != 0) {
            if (t[i].matches)
                fail_msg("device '%s' refused", t[i].mfr);
            continue;
        }
        vg_csaf_match(t[i].hill ? hill : bd, &dev, m);
        if ((m->status != VG_CSAF_NO_MATCH) != t[i].matches)
            fail_msg("'%s' '%s': %s, want %s", t[i].mfr, t[i].model, vg_csaf_status_name(m->status),
                     t[i].matches ? "a match" : "no-match");
    }
    vg_csaf_free(bd);
    vg_csaf_free(hill);
    free(m);
}

static void test_device_init(void **state)
{
    (void)state;
    struct vg_csaf_device dev;
    char longs[VG_CSAF_DEVICE_FIELD_MAX + 2];
    memset(longs, 'a', sizeof longs);
    longs[sizeof longs - 1] = '\0';
    assert_int_equal(vg_csaf_device_init(&dev, "Acme", "Monitor", NULL), 0);
    assert_string_equal(dev.fw, "");
    assert_int_equal(vg_csaf_device_init(&dev, "Acme", "Monitor", "  V1.2  Build 7 "), 0);
    assert_string_equal(dev.fw, "V1.2  Build 7");
    assert_string_equal(dev.fw_key, "v1.2 build 7");
    assert_int_equal(vg_csaf_device_init(&dev, NULL, "Monitor", "1"), -1);
    assert_int_equal(vg_csaf_device_init(&dev, "Acme", NULL, "1"), -1);
    assert_int_equal(vg_csaf_device_init(&dev, "", "Monitor", "1"), -1);
    assert_int_equal(vg_csaf_device_init(&dev, "-.-", "Monitor", "1"), -1);
    assert_int_equal(vg_csaf_device_init(&dev, "Acme", "X", "1"), -1);
    assert_int_equal(vg_csaf_device_init(&dev, longs, "Monitor", "1"), -1);
    assert_int_equal(vg_csaf_device_init(&dev, "Acme", longs, "1"), -1);
    assert_int_equal(vg_csaf_device_init(&dev, "Acme", "Monitor", longs), -1);
    longs[VG_CSAF_DEVICE_FIELD_MAX] = '\0';
    assert_int_equal(vg_csaf_device_init(&dev, longs, longs, longs), 0);
    /* a refused device matches nothing, even if used anyway */
    assert_int_equal(vg_csaf_device_init(&dev, "", "Monitor", "1"), -1);
    struct vg_csaf_doc *d = load("icsma-23-248-01.json");
    struct vg_csaf_match *m = malloc(sizeof *m);
    assert_non_null(m);
    vg_csaf_match(d, &dev, m);
    assert_int_equal(m->status, VG_CSAF_NO_MATCH);
    vg_csaf_match(NULL, &dev, m);
    assert_int_equal(m->status, VG_CSAF_NO_MATCH);
    free(m);
    vg_csaf_free(d);
}

/* ---- refusals ---- */

static const char MINIMAL[] =
    "{\"document\":{\"csaf_version\":\"2.0\",\"title\":\"T\",\"category\":\"csaf_base\","
    "\"tracking\":{\"id\":\"TEST-1\",\"version\":\"1\",\"current_release_date\":"
    "\"2024-01-01T00:00:00Z\",\"initial_release_date\":\"2024-01-01T00:00:00Z\"}},"
    "\"product_tree\":{\"branches\":[{\"category\":\"vendor\",\"name\":\"Acme\",\"branches\":["
    "{\"category\":\"product_name\",\"name\":\"Pump\",\"branches\":[{\"category\":"
    "\"product_version\",\"name\":\"1.0\",\"product\":{\"product_id\":\"P1\",\"name\":\"Acme Pump "
    "1.0\"}}]}]}],\"full_product_names\":[{\"product_id\":\"P2\",\"name\":\"Acme Hub\"}],"
    "\"relationships\":[{\"category\":\"installed_on\",\"product_reference\":\"P1\","
    "\"relates_to_product_reference\":\"P2\",\"full_product_name\":{\"product_id\":\"P3\","
    "\"name\":\"Pump on Hub\"}}],"
    "\"product_groups\":[{\"group_id\":\"G1\",\"product_ids\":[\"P1\",\"P2\"]}]},"
    "\"vulnerabilities\":[{\"cve\":\"CVE-2024-0001\",\"cwe\":{\"id\":\"CWE-79\",\"name\":\"x\"},"
    "\"scores\":[{\"products\":[\"P1\"],\"cvss_v3\":{\"baseScore\":7.5,\"vectorString\":"
    "\"CVSS:3.1/AV:N\"}}],\"product_status\":{\"known_affected\":[\"P1\"],\"fixed\":[\"P2\"]},"
    "\"remediations\":[{\"category\":\"vendor_fix\",\"details\":\"Update\",\"url\":\"https://x\","
    "\"product_ids\":[\"P1\"],\"group_ids\":[\"G1\"]}]}]}";

static json_t *minimal(void)
{
    json_error_t je;
    json_t *j = json_loads(MINIMAL, 0, &je);
    if (j == NULL)
        fail_msg("MINIMAL: %s", je.text);
    return j;
}

/* Walks "a/b/0/c" (object members and array indexes) from 'root'. With
 * 'last' non-NULL, stops at the parent and copies the final step there. */
static json_t *walk(json_t *root, const char *path, char *last, size_t last_size)
{
    json_t *cur = root;
    const char *p = path;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        char step[64];
        assert_true(n < sizeof step);
        memcpy(step, p, n);
        step[n] = '\0';
        if (last && slash == NULL) {
            snprintf(last, last_size, "%s", step);
            return cur;
        }
        char *end;
        long idx = strtol(step, &end, 10);
        cur = *end == '\0' ? json_array_get(cur, (size_t)idx) : json_object_get(cur, step);
        if (cur == NULL)
            fail_msg("no %s in MINIMAL", path);
        p += n + (slash != NULL);
    }
    return cur;
}

/* Sets the value at 'path' to 'v' (stolen). */
static void set_path(json_t *root, const char *path, json_t *v)
{
    char key[64];
    json_t *parent = walk(root, path, key, sizeof key);
    char *end;
    long idx = strtol(key, &end, 10);
    int rc;
    if (*end != '\0')
        rc = json_object_set_new(parent, key, v);
    else if ((size_t)idx == json_array_size(parent))
        rc = json_array_append_new(parent, v); /* one past the end */
    else
        rc = json_array_set_new(parent, (size_t)idx, v);
    assert_int_equal(rc, 0);
}

static void del_path(json_t *root, const char *parent, const char *key)
{
    assert_int_equal(json_object_del(walk(root, parent, NULL, 0), key), 0);
}

static void refused_json(json_t *j, enum vg_csaf_err want, const char *prefix, const char *needle)
{
    char *s = json_dumps(j, JSON_COMPACT);
    assert_non_null(s);
    refused_str(s, want, prefix, needle);
    free(s);
    json_decref(j);
}

static void test_minimal_accepted(void **state)
{
    (void)state;
    struct vg_csaf_doc *d = parse_str(MINIMAL);
    const struct vg_csaf_info *i = vg_csaf_info(d);
    assert_string_equal(i->id, "TEST-1");
    assert_int_equal(i->nproducts, 3);
    assert_false(i->products[1].in_tree);
    assert_false(i->products[2].in_tree);
    assert_int_equal(i->nvulns, 1);
    assert_int_equal(i->vulns[0].nremediations, 1);
    assert_int_equal(i->vulns[0].remediations[0].nproducts, 3); /* P1 + G1's P1, P2 */
    assert_int_equal(i->vulns[0].nstatus, 2);
    /* one entry per (list, product), lists in enum order */
    assert_int_equal(i->vulns[0].status[0].status, VG_CSAF_PS_FIXED);
    assert_string_equal(i->products[i->vulns[0].status[0].product].id, "P2");
    assert_int_equal(i->vulns[0].status[1].status, VG_CSAF_PS_KNOWN_AFFECTED);
    assert_string_equal(i->products[i->vulns[0].status[1].product].id, "P1");
    assert_string_equal(vg_csaf_pstatus_name(i->vulns[0].status[0].status), "fixed");
    vg_csaf_free(d);
    vg_csaf_free(NULL);
}

static void test_refuse_not_csaf(void **state)
{
    (void)state;
    json_t *j = minimal();
    set_path(j, "document/csaf_version", json_string("1.2"));
    refused_json(j, VG_CSAF_ERR_NOT_CSAF, "$.document.csaf_version:", "2.0");
    j = minimal();
    set_path(j, "document/csaf_version", json_string("2.0 "));
    refused_json(j, VG_CSAF_ERR_NOT_CSAF, "$.document.csaf_version:", NULL);
    j = minimal();
    del_path(j, "document", "csaf_version");
    refused_json(j, VG_CSAF_ERR_NOT_CSAF, "$.document.csaf_version:", "missing");
    j = minimal();
    del_path(j, "", "document");
    refused_json(j, VG_CSAF_ERR_NOT_CSAF, "$.document:", "missing");
    refused_str("[1,2,3]", VG_CSAF_ERR_NOT_CSAF, "$:", "not a JSON object");
    refused_str("{\"resourceType\":\"Bundle\"}", VG_CSAF_ERR_NOT_CSAF, "$.document:", NULL);
    /* the message never quotes the document */
    j = minimal();
    set_path(j, "document/csaf_version", json_string("SECRET-PATIENT-NAME"));
    char *s = json_dumps(j, JSON_COMPACT);
    char err[256];
    struct vg_csaf_doc *d = NULL;
    assert_int_equal(vg_csaf_parse(s, strlen(s), &d, err, sizeof err), VG_CSAF_ERR_NOT_CSAF);
    assert_null(strstr(err, "SECRET"));
    free(s);
    json_decref(j);
}

static void test_refuse_missing(void **state)
{
    (void)state;
    static const struct {
        const char *parent, *key, *prefix;
    } t[] = {
        {"document/tracking", "id", "$.document.tracking.id:"},
        {"document", "tracking", "$.document.tracking:"},
        {"product_tree/branches/0", "category", "$.product_tree.branches[0].category:"},
        {"product_tree/branches/0", "name", "$.product_tree.branches[0].name:"},
        {"product_tree/branches/0", "branches", "$.product_tree.branches[0]:"},
        {"product_tree/branches/0/branches/0/branches/0/product", "product_id",
         "$.product_tree.branches[0].branches[0].branches[0].product.product_id:"},
        {"product_tree/full_product_names/0", "product_id",
         "$.product_tree.full_product_names[0].product_id:"},
        {"product_tree/relationships/0", "full_product_name",
         "$.product_tree.relationships[0].full_product_name:"},
        {"product_tree/product_groups/0", "product_ids",
         "$.product_tree.product_groups[0].product_ids:"},
        {"vulnerabilities/0/scores/0", "products", "$.vulnerabilities[0].scores[0].products:"},
        {"vulnerabilities/0/scores/0/cvss_v3", "baseScore",
         "$.vulnerabilities[0].scores[0].cvss_v3.baseScore:"},
        {"vulnerabilities/0/remediations/0", "details",
         "$.vulnerabilities[0].remediations[0].details:"},
        {"vulnerabilities/0/remediations/0", "category",
         "$.vulnerabilities[0].remediations[0].category:"},
        {"vulnerabilities/0/cwe", "id", "$.vulnerabilities[0].cwe.id:"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        json_t *j = minimal();
        del_path(j, t[i].parent, t[i].key);
        refused_json(j, VG_CSAF_ERR_MISSING, t[i].prefix, NULL);
    }
    /* optional members may be absent */
    json_t *j = minimal();
    del_path(j, "", "vulnerabilities");
    del_path(j, "document", "title");
    del_path(j, "document/tracking", "current_release_date");
    char *s = json_dumps(j, JSON_COMPACT);
    struct vg_csaf_doc *d = parse_str(s);
    assert_string_equal(vg_csaf_info(d)->title, "");
    assert_int_equal(vg_csaf_info(d)->current_release_ms, -1);
    assert_int_equal(vg_csaf_info(d)->nvulns, 0);
    vg_csaf_free(d);
    free(s);
    json_decref(j);
}

static void test_refuse_wrong_types(void **state)
{
    (void)state;
    static const struct {
        const char *path, *prefix;
        int kind; /* 0 number, 1 string, 2 array, 3 object, 4 null, 5 true */
    } t[] = {
        {"document", "$.document:", 1},
        {"document/csaf_version", "$.document.csaf_version:", 0},
        {"document/title", "$.document.title:", 0},
        {"document/tracking", "$.document.tracking:", 2},
        {"document/tracking/id", "$.document.tracking.id:", 0},
        {"document/tracking/id", "$.document.tracking.id:", 4},
        {"document/tracking/version", "$.document.tracking.version:", 0},
        {"document/tracking/current_release_date", "$.document.tracking.current_release_date:", 5},
        {"product_tree", "$.product_tree:", 2},
        {"product_tree/branches", "$.product_tree.branches:", 3},
        {"product_tree/branches/0", "$.product_tree.branches[0]:", 1},
        {"product_tree/branches/0/category", "$.product_tree.branches[0].category:", 0},
        {"product_tree/branches/0/name", "$.product_tree.branches[0].name:", 4},
        {"product_tree/branches/0/branches", "$.product_tree.branches[0].branches:", 3},
        {"product_tree/branches/0/branches/0/branches/0/product",
         "$.product_tree.branches[0].branches[0].branches[0].product:", 2},
        {"product_tree/branches/0/branches/0/branches/0/product/product_id",
         "$.product_tree.branches[0].branches[0].branches[0].product.product_id:", 0},
        {"product_tree/branches/0/branches/0/branches/0/product/name",
         "$.product_tree.branches[0].branches[0].branches[0].product.name:", 2},
        {"product_tree/full_product_names", "$.product_tree.full_product_names:", 3},
        {"product_tree/full_product_names/0", "$.product_tree.full_product_names[0]:", 1},
        {"product_tree/relationships/0/full_product_name",
         "$.product_tree.relationships[0].full_product_name:", 1},
        {"product_tree/product_groups", "$.product_tree.product_groups:", 1},
        {"product_tree/product_groups/0/product_ids/1",
         "$.product_tree.product_groups[0].product_ids[1]:", 0},
        {"vulnerabilities", "$.vulnerabilities:", 3},
        {"vulnerabilities/0", "$.vulnerabilities[0]:", 2},
        {"vulnerabilities/0/cve", "$.vulnerabilities[0].cve:", 0},
        {"vulnerabilities/0/cwe", "$.vulnerabilities[0].cwe:", 1},
        {"vulnerabilities/0/scores", "$.vulnerabilities[0].scores:", 3},
        {"vulnerabilities/0/scores/0", "$.vulnerabilities[0].scores[0]:", 0},
        {"vulnerabilities/0/scores/0/products", "$.vulnerabilities[0].scores[0].products:", 1},
        {"vulnerabilities/0/scores/0/cvss_v3", "$.vulnerabilities[0].scores[0].cvss_v3:", 1},
        {"vulnerabilities/0/scores/0/cvss_v3/baseScore",
         "$.vulnerabilities[0].scores[0].cvss_v3.baseScore:", 1},
        {"vulnerabilities/0/scores/0/cvss_v3/vectorString",
         "$.vulnerabilities[0].scores[0].cvss_v3.vectorString:", 0},
        {"vulnerabilities/0/product_status", "$.vulnerabilities[0].product_status:", 2},
        {"vulnerabilities/0/product_status/known_affected",
         "$.vulnerabilities[0].product_status.known_affected:", 1},
        {"vulnerabilities/0/product_status/known_affected/0",
         "$.vulnerabilities[0].product_status.known_affected[0]:", 0},
        {"vulnerabilities/0/product_status/fixed",
         "$.vulnerabilities[0].product_status.fixed:", 3},
        {"vulnerabilities/0/remediations", "$.vulnerabilities[0].remediations:", 3},
        {"vulnerabilities/0/remediations/0", "$.vulnerabilities[0].remediations[0]:", 4},
        {"vulnerabilities/0/remediations/0/category",
         "$.vulnerabilities[0].remediations[0].category:", 0},
        {"vulnerabilities/0/remediations/0/details",
         "$.vulnerabilities[0].remediations[0].details:", 2},
        {"vulnerabilities/0/remediations/0/url", "$.vulnerabilities[0].remediations[0].url:", 0},
        {"vulnerabilities/0/remediations/0/product_ids",
         "$.vulnerabilities[0].remediations[0].product_ids:", 1},
        {"vulnerabilities/0/remediations/0/group_ids/0",
         "$.vulnerabilities[0].remediations[0].group_ids[0]:", 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        json_t *j = minimal();
        json_t *v = t[i].kind == 0   ? json_integer(42)
                    : t[i].kind == 1 ? json_string("x")
                    : t[i].kind == 2 ? json_array()
                    : t[i].kind == 3 ? json_object()
                    : t[i].kind == 4 ? json_null()
                                     : json_true();
        set_path(j, t[i].path, v);
        refused_json(j, VG_CSAF_ERR_TYPE, t[i].prefix, "expected");
    }
}

static void test_refuse_invalid_values(void **state)
{
    (void)state;
    static const struct {
        const char *path, *value, *prefix, *needle;
    } t[] = {
        {"document/tracking/id", "", "$.document.tracking.id:", "empty"},
        {"document/tracking/id", "ICSMA\x1b[31m", "$.document.tracking.id:", "control"},
        {"document/tracking/id",
         "X1234567890123456789012345678901234567890123456789012345678901234567890123456789012345678"
         "90"
         "123456", /* 97 bytes */
         "$.document.tracking.id:", "longer"},
        {"document/tracking/current_release_date", "yesterday",
         "$.document.tracking.current_release_date:", "RFC 3339"},
        {"document/tracking/initial_release_date", "2024-02-30T00:00:00Z",
         "$.document.tracking.initial_release_date:", "RFC 3339"},
        {"product_tree/branches/0/category", "manufacturer",
         "$.product_tree.branches[0].category:", "category"},
        {"product_tree/branches/0/name", "", "$.product_tree.branches[0].name:", "empty"},
        {"product_tree/full_product_names/0/product_id", "P1", "$.product_tree:", "more than once"},
        {"product_tree/product_groups/0/product_ids/0", "P9",
         "$.product_tree.product_groups[0].product_ids[0]:", "not defined"},
        {"vulnerabilities/0/cve", "CVE-24-1", "$.vulnerabilities[0].cve:", "CVE"},
        {"vulnerabilities/0/cve", "cve-2024-0001", "$.vulnerabilities[0].cve:", "CVE"},
        {"vulnerabilities/0/product_status/known_affected/0", "CSAFPID-9999",
         "$.vulnerabilities[0].product_status.known_affected[0]:", "not defined"},
        {"vulnerabilities/0/scores/0/products/0", "P7",
         "$.vulnerabilities[0].scores[0].products[0]:", "not defined"},
        {"vulnerabilities/0/remediations/0/product_ids/0", "P7",
         "$.vulnerabilities[0].remediations[0].product_ids[0]:", "not defined"},
        {"vulnerabilities/0/remediations/0/group_ids/0", "G9",
         "$.vulnerabilities[0].remediations[0].group_ids[0]:", "not defined"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        json_t *j = minimal();
        set_path(j, t[i].path, json_string(t[i].value));
        refused_json(j, VG_CSAF_ERR_INVALID, t[i].prefix, t[i].needle);
    }
    json_t *j = minimal();
    set_path(j, "vulnerabilities/0/scores/0/cvss_v3/baseScore", json_real(10.5));
    refused_json(j, VG_CSAF_ERR_INVALID,
                 "$.vulnerabilities[0].scores[0].cvss_v3.baseScore:", "0 and 10");
    j = minimal();
    set_path(j, "vulnerabilities/0/scores/0/cvss_v3/baseScore", json_integer(-1));
    refused_json(j, VG_CSAF_ERR_INVALID, "$.vulnerabilities[0].scores[0].cvss_v3.baseScore:", NULL);
    j = minimal();
    set_path(j, "product_tree/product_groups/1",
             json_pack("{s:s,s:[s,s]}", "group_id", "G1", "product_ids", "P1", "P2"));
    refused_json(j, VG_CSAF_ERR_INVALID, "$.product_tree.product_groups:", "more than once");
    /* a branch name longer than VG_CSAF_NAME_MAX is refused, not cut */
    char *longname = malloc(VG_CSAF_NAME_MAX + 2);
    assert_non_null(longname);
    memset(longname, 'a', VG_CSAF_NAME_MAX + 1);
    longname[VG_CSAF_NAME_MAX + 1] = '\0';
    j = minimal();
    set_path(j, "product_tree/branches/0/name", json_string(longname));
    refused_json(j, VG_CSAF_ERR_INVALID, "$.product_tree.branches[0].name:", "longer");
    free(longname);
}

static void test_refuse_syntax(void **state)
{
    (void)state;
    size_t len;
    char path[512];
    snprintf(path, sizeof path, "%s/icsma-22-298-01.json", CSAF_DIR);
    char *buf = slurp(path, &len);
    /* cut anywhere before the last brace: every prefix is refused as
     * truncated JSON (every 97th byte, and the last few) */
    const char *last = strrchr(buf, '}');
    size_t end = (size_t)(last - buf);
    for (size_t cut = 1; cut < end; cut += (cut + 8 < end ? 97 : 1))
        refused(buf, cut, VG_CSAF_ERR_SYNTAX, "$:", "truncated");
    /* and the whole file is fine */
    struct vg_csaf_doc *d = NULL;
    char err[128];
    assert_int_equal(vg_csaf_parse(buf, len, &d, err, sizeof err), VG_CSAF_OK);
    vg_csaf_free(d);
    free(buf);

    refused_str("{\"document\":{},\"document\":{}}", VG_CSAF_ERR_SYNTAX, "$:", "duplicate");
    refused_str("{\"a\":\"\\u0000\"}", VG_CSAF_ERR_SYNTAX, "$:", "NUL");
    refused_str("{\"a\":\"\xff\"}", VG_CSAF_ERR_SYNTAX, "$:", "UTF-8");
    refused_str("{} {}", VG_CSAF_ERR_SYNTAX, "$:", "after");
    refused_str("{\"a\":tru}", VG_CSAF_ERR_SYNTAX, "$:", "not valid JSON");
    refused_str("", VG_CSAF_ERR_SYNTAX, "$:", "empty");
    refused("{\"a\":1}\0", 8, VG_CSAF_ERR_SYNTAX, "$:", NULL);
    /* no output place, no input */
    char e2[64];
    assert_int_equal(vg_csaf_parse("{}", 2, NULL, e2, sizeof e2), VG_CSAF_ERR_INVALID);
    assert_int_equal(vg_csaf_parse(NULL, 5, &d, e2, sizeof e2), VG_CSAF_ERR_INVALID);
    /* a NULL or tiny error buffer is fine */
    assert_int_equal(vg_csaf_parse("[", 1, &d, NULL, 0), VG_CSAF_ERR_SYNTAX);
    assert_int_equal(vg_csaf_parse("[", 1, &d, e2, 1), VG_CSAF_ERR_SYNTAX);
    assert_string_equal(e2, "");
}

static char *repeat(const char *head, const char *item, size_t n, const char *sep, const char *tail)
{
    size_t len = strlen(head) + n * (strlen(item) + strlen(sep)) + strlen(tail) + 1;
    char *s = malloc(len);
    assert_non_null(s);
    char *p = s;
    p += snprintf(p, len, "%s", head);
    for (size_t i = 0; i < n; i++)
        p += snprintf(p, len - (size_t)(p - s), "%s%s", i ? sep : "", item);
    snprintf(p, len - (size_t)(p - s), "%s", tail);
    return s;
}

#define DOC_HEAD                                                                                   \
    "{\"document\":{\"csaf_version\":\"2.0\",\"tracking\":{\"id\":\"T-1\"}},"

static void test_refuse_depth(void **state)
{
    (void)state;
    /* JSON nesting: refused before jansson builds anything */
    char *s = repeat("{\"x\":", "[", VG_CSAF_DEPTH_MAX, "", "");
    refused_str(s, VG_CSAF_ERR_TOO_DEEP, "$:", "nested");
    free(s);
    s = repeat("", "[", 100000, "", "");
    refused_str(s, VG_CSAF_ERR_TOO_DEEP, "$:", "nested");
    free(s);
    /* exactly at the limit is only a syntax matter */
    s = repeat("", "[", VG_CSAF_DEPTH_MAX, "", "");
    refused_str(s, VG_CSAF_ERR_SYNTAX, "$:", "truncated");
    free(s);
    /* brackets inside strings do not count */
    s = repeat(DOC_HEAD "\"x\":\"", "[{", 1000, "", "\"}");
    struct vg_csaf_doc *d = parse_str(s);
    vg_csaf_free(d);
    free(s);
    /* product_tree branches deeper than VG_CSAF_BRANCH_DEPTH_MAX */
    char *open = repeat(DOC_HEAD "\"product_tree\":{\"branches\":",
                        "[{\"category\":\"product_family\",\"name\":\"f\",\"branches\":",
                        VG_CSAF_BRANCH_DEPTH_MAX, "", "");
    char *close = repeat("", "}]", VG_CSAF_BRANCH_DEPTH_MAX, "", "}}");
    size_t n = strlen(open) + strlen(close) + 128;
    char *doc = malloc(n);
    assert_non_null(doc);
    snprintf(doc, n,
             "%s[{\"category\":\"vendor\",\"name\":\"v\",\"product\":{\"product_id\":\"P\"}}]%s",
             open, close);
    refused_str(doc, VG_CSAF_ERR_TOO_DEEP, "$.product_tree.branches[0].branches[0]",
                "branches nested");
    free(doc);
    free(open);
    free(close);
    /* one level less is accepted */
    open = repeat(DOC_HEAD "\"product_tree\":{\"branches\":",
                  "[{\"category\":\"product_family\",\"name\":\"f\",\"branches\":",
                  VG_CSAF_BRANCH_DEPTH_MAX - 1, "", "");
    close = repeat("", "}]", VG_CSAF_BRANCH_DEPTH_MAX - 1, "", "}}");
    n = strlen(open) + strlen(close) + 128;
    doc = malloc(n);
    assert_non_null(doc);
    snprintf(doc, n,
             "%s[{\"category\":\"vendor\",\"name\":\"v\",\"product\":{\"product_id\":\"P\"}}]%s",
             open, close);
    d = parse_str(doc);
    assert_int_equal(vg_csaf_info(d)->nproducts, 1);
    vg_csaf_free(d);
    free(doc);
    free(open);
    free(close);
}

static void test_refuse_limits(void **state)
{
    (void)state;
    /* bigger than VG_CSAF_INPUT_MAX, even if it is only blanks */
    size_t big = VG_CSAF_INPUT_MAX + 1;
    char *s = malloc(big);
    assert_non_null(s);
    memset(s, ' ', big);
    s[0] = '{';
    s[big - 1] = '}';
    refused(s, big, VG_CSAF_ERR_TOO_LARGE, "$:", "larger");
    refused(s, big - 1, VG_CSAF_ERR_SYNTAX, "$:", NULL); /* one byte less: parsed, truncated */
    free(s);

    /* a huge flat array: caught by the value count before jansson */
    s = repeat(DOC_HEAD "\"x\":[", "0", VG_CSAF_VALUES_MAX + 1, ",", "]}");
    refused_str(s, VG_CSAF_ERR_LIMIT, "$:", "JSON values");
    free(s);

    /* one more vulnerability than allowed; exactly the cap is fine */
    s = repeat(DOC_HEAD "\"vulnerabilities\":[", "{}", VG_CSAF_VULNS_MAX + 1, ",", "]}");
    refused_str(s, VG_CSAF_ERR_LIMIT, "$.vulnerabilities:", "more than 256");
    free(s);
    s = repeat(DOC_HEAD "\"vulnerabilities\":[", "{}", VG_CSAF_VULNS_MAX, ",", "]}");
    struct vg_csaf_doc *d = parse_str(s);
    assert_int_equal(vg_csaf_info(d)->nvulns, VG_CSAF_VULNS_MAX);
    vg_csaf_free(d);
    free(s);

    /* products: full_product_names over the cap */
    s = repeat(DOC_HEAD "\"product_tree\":{\"full_product_names\":[", "{\"product_id\":\"P\"}",
               VG_CSAF_PRODUCTS_MAX + 1, ",", "]}}");
    refused_str(s, VG_CSAF_ERR_LIMIT, "$.product_tree.full_product_names:", "more than 2048");
    free(s);
    /* the same count through branches (ids all alike: the cap comes first) */
    s = repeat(DOC_HEAD "\"product_tree\":{\"branches\":[",
               "{\"category\":\"vendor\",\"name\":\"v\",\"product\":{\"product_id\":\"P\"}}",
               VG_CSAF_PRODUCTS_MAX + 1, ",", "]}}");
    refused_str(s, VG_CSAF_ERR_LIMIT, "$.product_tree.branches[2048].product:", "more than 2048");
    free(s);

    /* scores and remediations per vulnerability */
    s = repeat(DOC_HEAD "\"vulnerabilities\":[{\"scores\":[", "{\"products\":[]}",
               VG_CSAF_SCORES_MAX + 1, ",", "]}]}");
    refused_str(s, VG_CSAF_ERR_LIMIT, "$.vulnerabilities[0].scores:", "more than 16");
    free(s);
    s = repeat(DOC_HEAD "\"vulnerabilities\":[{\"remediations\":[",
               "{\"category\":\"none_available\",\"details\":\"d\"}", VG_CSAF_REMEDIATIONS_MAX + 1,
               ",", "]}]}");
    refused_str(s, VG_CSAF_ERR_LIMIT, "$.vulnerabilities[0].remediations:", "more than 64");
    free(s);

    /* product references across the document */
    s = repeat(DOC_HEAD "\"product_tree\":{\"full_product_names\":[{\"product_id\":\"P\"}]},"
                        "\"vulnerabilities\":[{\"product_status\":{\"known_affected\":[",
               "\"P\"", VG_CSAF_REFS_MAX + 1, ",", "]}}]}");
    refused_str(s, VG_CSAF_ERR_LIMIT, "$.vulnerabilities[0].product_status", "more than 65536");
    free(s);

    /* branches in the tree */
    s = repeat(DOC_HEAD "\"product_tree\":{\"branches\":[",
               "{\"category\":\"vendor\",\"name\":\"v\",\"branches\":[]}", VG_CSAF_BRANCHES_MAX + 1,
               ",", "]}}");
    refused_str(s, VG_CSAF_ERR_LIMIT, "$.product_tree.branches[8192]:", "branches");
    free(s);
}

/* Long texts are cut, control characters neutralised, ids kept exact. */
static void test_text_hygiene(void **state)
{
    (void)state;
    json_t *j = minimal();
    char *longtext = malloc(VG_CSAF_TEXT_MAX * 2);
    assert_non_null(longtext);
    memset(longtext, 'a', VG_CSAF_TEXT_MAX * 2 - 1);
    longtext[VG_CSAF_TEXT_MAX * 2 - 1] = '\0';
    /* a 3-byte UTF-8 character straddling the cut */
    memcpy(longtext + VG_CSAF_TEXT_MAX - 4, "\xe2\x82\xac", 3);
    set_path(j, "vulnerabilities/0/remediations/0/details", json_string(longtext));
    set_path(j, "document/title", json_string("Pump\x1b]0;owned\x07 advisory"));
    free(longtext);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    struct vg_csaf_doc *d = parse_str(s);
    free(s);
    const struct vg_csaf_info *i = vg_csaf_info(d);
    assert_string_equal(i->title, "Pump ]0;owned  advisory");
    const char *det = i->vulns[0].remediations[0].details;
    assert_true(strlen(det) <= VG_CSAF_TEXT_MAX);
    assert_int_equal(strcmp(det + strlen(det) - 3, "..."), 0);
    /* cut before the euro sign, never inside it */
    assert_null(strstr(det, "\xe2\x82"));
    json_error_t je;
    json_t *back = json_loads("[\"\"]", 0, &je);
    assert_non_null(back);
    assert_int_equal(json_array_set_new(back, 0, json_string(det)), 0); /* valid UTF-8 */
    json_decref(back);
    vg_csaf_free(d);
}

/* Matching thousands of devices against every document is quick; this
 * guards against an accidental quadratic blow-up, not a benchmark. */
static void test_match_speed(void **state)
{
    (void)state;
    struct vg_csaf_doc *docs[NDOCS];
    for (size_t k = 0; k < NDOCS; k++)
        docs[k] = load(DOCS[k].file);
    struct vg_csaf_match *m = malloc(sizeof *m);
    assert_non_null(m);
    static const char *const mfrs[] = {"Baxter", "BD", "Philips", "Medtronic", "GE HealthCare",
                                       "Contec", "Masimo", "Softneta"};
    static const char *const models[] = {"Sigma Spectrum", "Alaris Guardrails Editor", "Vue PACS",
                                         "MiniMed 630G", "CARESCAPE B450", "CMS8000",
                                         "Radical-7", "MedDream PACS"};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t hits = 0;
    for (int dev = 0; dev < 2000; dev++) {
        struct vg_csaf_device dv;
        char fw[32];
        snprintf(fw, sizeof fw, "%d.%d.%d", dev % 13, dev % 7, dev % 5);
        assert_int_equal(vg_csaf_device_init(&dv, mfrs[dev % 8], models[(dev / 8) % 8], fw), 0);
        for (size_t k = 0; k < NDOCS; k++) {
            vg_csaf_match(docs[k], &dv, m);
            hits += m->status != VG_CSAF_NO_MATCH;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("    2000 devices x %zu documents: %.3f s, %zu matches\n", NDOCS, s, hits);
    assert_true(hits > 0);
    assert_true(s < 5.0); /* typically ~0.05 s; generous for sanitizers */
    for (size_t k = 0; k < NDOCS; k++)
        vg_csaf_free(docs[k]);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_compare),
        cmocka_unit_test(test_version_parse_parts),
        cmocka_unit_test(test_version_expressions),
        cmocka_unit_test(test_version_expression_kinds),
        cmocka_unit_test(test_corpus_complete),
        cmocka_unit_test(test_parse_real_documents),
        cmocka_unit_test(test_match_real_documents),
        cmocka_unit_test(test_match_bd_branches),
        cmocka_unit_test(test_match_status_lists),
        cmocka_unit_test(test_match_groups_and_scores),
        cmocka_unit_test(test_vendor_and_model_rules),
        cmocka_unit_test(test_device_init),
        cmocka_unit_test(test_minimal_accepted),
        cmocka_unit_test(test_refuse_not_csaf),
        cmocka_unit_test(test_refuse_missing),
        cmocka_unit_test(test_refuse_wrong_types),
        cmocka_unit_test(test_refuse_invalid_values),
        cmocka_unit_test(test_refuse_syntax),
        cmocka_unit_test(test_refuse_depth),
        cmocka_unit_test(test_refuse_limits),
        cmocka_unit_test(test_text_hygiene),
        cmocka_unit_test(test_match_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
