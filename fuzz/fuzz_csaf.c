/* libFuzzer harness for advisory/csaf: vg_csaf_parse on arbitrary bytes;
 * when a document parses, its contents are checked against the module's
 * promises and devices are matched against it — fixed ones, and ones built
 * from the document's own products, which must find themselves. abort() on
 * any broken promise so libFuzzer records the input. */
#include "advisory/csaf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

/* Printable: no control characters except, where allowed, '\n'. */
static int clean(const char *s, int nl_ok)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && !(nl_ok && c == '\n')) || c == 0x7f)
            return 0;
    }
    return 1;
}

static int alnum_count(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
             (unsigned char)*s >= 0x80;
    return n;
}

static void check_match(const struct vg_csaf_info *info, const struct vg_csaf_match *m)
{
    check(m->status <= VG_CSAF_AFFECTED);
    check(strcmp(vg_csaf_status_name(m->status), "unknown") != 0 || m->status == VG_CSAF_UNKNOWN);
    check(m->nhits <= info->nvulns && m->nhits <= VG_CSAF_VULNS_MAX);
    check(m->nproducts <= VG_CSAF_MATCH_PRODUCTS_MAX);
    check(m->nremediations <= VG_CSAF_MATCH_REMEDIATIONS_MAX);
    for (size_t i = 0; i < m->nproducts; i++)
        check(m->products[i] < info->nproducts);
    if (m->status == VG_CSAF_NO_MATCH || m->status == VG_CSAF_NOT_AFFECTED) {
        check(m->nhits == 0 && m->nremediations == 0 && m->max_score == -1 && m->review == NULL);
        check((m->status == VG_CSAF_NO_MATCH) == (m->nproducts == 0 && !m->products_truncated));
        return;
    }
    check(m->nproducts > 0 && m->nhits > 0);
    double max = -1;
    int any_aff = 0, any_unk = 0;
    for (size_t i = 0; i < m->nhits; i++) {
        const struct vg_csaf_hit *h = &m->hits[i];
        check(h->vuln >= info->vulns && h->vuln < info->vulns + info->nvulns);
        check(i == 0 || h->vuln > m->hits[i - 1].vuln); /* document order, once */
        check(h->cve == h->vuln->cve);
        check(h->status == VG_CSAF_AFFECTED || h->status == VG_CSAF_UNKNOWN);
        check(h->score == -1 || (h->score >= 0 && h->score <= 10));
        check(h->score <= h->vuln->max_score);
        check(h->vector != NULL);
        any_aff |= h->status == VG_CSAF_AFFECTED;
        any_unk |= h->status == VG_CSAF_UNKNOWN;
        if (h->status == m->status && h->score > max)
            max = h->score;
    }
    check(m->status == (any_aff ? VG_CSAF_AFFECTED : VG_CSAF_UNKNOWN));
    check(m->max_score == max);
    check((m->review != NULL) == any_unk);
    for (size_t i = 0; i < m->nremediations; i++)
        check(m->remediations[i] != NULL && m->remediations[i]->details != NULL);
}

static void match_one(const struct vg_csaf_doc *d, const char *mfr, const char *model,
                      const char *fw, struct vg_csaf_match *m, int must_match)
{
    struct vg_csaf_device dev;
    if (vg_csaf_device_init(&dev, mfr, model, fw) != 0)
        return; /* e.g. "A Inc": nothing left to match on */
    vg_csaf_match(d, &dev, m);
    check_match(vg_csaf_info(d), m);
    if (must_match)
        check(m->status != VG_CSAF_NO_MATCH);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[128];
    memset(err, 0xA5, sizeof err);
    struct vg_csaf_doc *d = (struct vg_csaf_doc *)err; /* must come back NULL on error */
    enum vg_csaf_err rc = vg_csaf_parse(data, size, &d, err, sizeof err);
    check(memchr(err, '\0', sizeof err) != NULL);
    check(strcmp(vg_csaf_strerror(rc), "unknown") != 0);
    if (rc != VG_CSAF_OK) {
        check(d == NULL);
        check(err[0] == '$');
        return 0;
    }
    check(d != NULL && err[0] == '\0');

    const struct vg_csaf_info *info = vg_csaf_info(d);
    size_t idlen = strlen(info->id);
    check(idlen > 0 && idlen <= VG_CSAF_ID_MAX && clean(info->id, 0));
    check(strlen(info->title) <= VG_CSAF_TITLE_MAX && clean(info->title, 0));
    check(info->nproducts <= VG_CSAF_PRODUCTS_MAX && info->nvulns <= VG_CSAF_VULNS_MAX);
    for (size_t p = 0; p < info->nproducts; p++) {
        const struct vg_csaf_product *pr = &info->products[p];
        check(pr->id[0] && clean(pr->id, 0) && clean(pr->vendor, 0) && clean(pr->name, 0));
        check(clean(pr->version, 0) && strlen(pr->full_name) <= VG_CSAF_TITLE_MAX);
        for (size_t q = 0; q < p; q++)
            check(strcmp(info->products[q].id, pr->id) != 0);
    }
    for (size_t v = 0; v < info->nvulns; v++) {
        const struct vg_csaf_vuln *vu = &info->vulns[v];
        check(vu->max_score == -1 || (vu->max_score >= 0 && vu->max_score <= 10));
        for (size_t i = 0; i < vu->nstatus; i++)
            check(vu->status[i].product < info->nproducts &&
                  vu->status[i].status <= VG_CSAF_PS_UNDER_INVESTIGATION);
        for (size_t i = 0; i < vu->nscores; i++) {
            check(vu->scores[i].base <= vu->max_score);
            for (size_t k = 0; k < vu->scores[i].nproducts; k++)
                check(vu->scores[i].products[k] < info->nproducts);
        }
        for (size_t i = 0; i < vu->nremediations; i++) {
            const struct vg_csaf_remediation *r = &vu->remediations[i];
            check(strlen(r->details) <= VG_CSAF_TEXT_MAX && clean(r->details, 1));
            for (size_t k = 0; k < r->nproducts; k++)
                check(r->products[k] < info->nproducts);
        }
    }

    struct vg_csaf_match *m = malloc(sizeof *m);
    if (m == NULL)
        abort();
    match_one(d, "Acme Medical", "Pump 3000", "2.1.0", m, 0);
    match_one(d, "BD", "Alaris Guardrails Editor", "12.1.3", m, 0);
    match_one(d, "Baxter", "Sigma Spectrum 35700BAX2", "", m, 0);
    /* A device named exactly like a product of the document must find it. */
    for (size_t p = 0; p < info->nproducts && p < 8; p++) {
        const struct vg_csaf_product *pr = &info->products[p];
        int named = pr->in_tree && alnum_count(pr->vendor) >= 2 && alnum_count(pr->name) >= 2 &&
                    strlen(pr->vendor) <= VG_CSAF_DEVICE_FIELD_MAX &&
                    strlen(pr->name) <= VG_CSAF_DEVICE_FIELD_MAX;
        const char *fw = strlen(pr->version) <= VG_CSAF_DEVICE_FIELD_MAX ? pr->version : "";
        match_one(d, pr->vendor, pr->name, fw, m, named);
    }
    free(m);
    vg_csaf_free(d);
    return 0;
}
