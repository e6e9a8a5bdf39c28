/* advisory/version — see version.h for the syntax and the rules. */
#include "advisory/version.h"

#include <string.h>
#include <strings.h>

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_alnum(char c) { return is_digit(c) || is_alpha(c); }
static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && is_blank((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_blank((*s)[*len - 1]))
        (*len)--;
}

static int ci_equal(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && strncasecmp(s, lit, len) == 0;
}

/* SemVer §9: dot-separated, non-empty identifiers of [0-9A-Za-z-]. */
static int semver_idents(const char *s, size_t len)
{
    if (len == 0 || s[0] == '.' || s[len - 1] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (s[i + 1] == '.')
                return 0;
        } else if (!is_alnum(s[i]) && s[i] != '-') {
            return 0;
        }
    }
    return 1;
}

static int all_digits(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!is_digit(s[i]))
            return 0;
    return 1;
}

static uint64_t digits_value(const char *s, size_t len) /* len <= 19 */
{
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    return v;
}

int vg_version_parse(const char *s, size_t len, struct vg_version *out)
{
    memset(out, 0, sizeof *out);
    if (s == NULL)
        return -1;
    trim(&s, &len);
    if (len == 0 || len > VG_VERSION_TEXT_MAX)
        return -1;
    size_t i = 0;
    if ((s[0] == 'v' || s[0] == 'V') && len > 1 && is_digit(s[1]))
        i = 1;
    if (!is_digit(s[i]))
        return -1;
    for (;;) {
        if (out->nseg == VG_VERSION_SEGS_MAX)
            return -1;
        size_t start = i;
        while (i < len && is_digit(s[i]))
            i++;
        /* 19 digits always fit in 64 bits; more is not a version anyone
         * ships, and refusing it avoids a silent wrap. */
        if (i - start > 19)
            return -1;
        out->seg[out->nseg++] = digits_value(s + start, i - start);
        if (i + 1 < len && s[i] == '.' && is_digit(s[i + 1])) {
            i++;
            continue;
        }
        break;
    }
    const char *tail = s + i;
    size_t tlen = len - i;
    if (tlen == 0)
        return 0;
    /* Separators only between letters and digits: "1..2", "1." and "1.2-"
     * are typos, not versions. */
    for (size_t k = 0; k < tlen; k++) {
        int sep = strchr("._+~-", tail[k]) != NULL;
        if (!is_alnum(tail[k]) && !sep)
            return -1;
        if (sep && (k + 1 == tlen || strchr("._+~-", tail[k + 1])))
            return -1;
    }

    /* Build metadata ("+...") never takes part in the order (SemVer §10). */
    const char *plus = memchr(tail, '+', tlen);
    size_t core = plus ? (size_t)(plus - tail) : tlen;
    int meta_ok = !plus || semver_idents(plus + 1, tlen - core - 1);
    if (meta_ok && core == 0)
        return 0;
    if (meta_ok && core >= 2 && tail[0] == '-') {
        if (all_digits(tail + 1, core - 1) && core - 1 <= 19) {
            out->tail_kind = VG_VTAIL_BUILD;
            out->tail = tail + 1;
            out->tail_len = core - 1;
            out->build = digits_value(tail + 1, core - 1);
            return 0;
        }
        if (semver_idents(tail + 1, core - 1)) {
            out->tail_kind = VG_VTAIL_PRE;
            out->tail = tail + 1;
            out->tail_len = core - 1;
            return 0;
        }
    }
    out->tail_kind = VG_VTAIL_OPAQUE;
    out->tail = tail;
    out->tail_len = tlen;
    return 0;
}

/* Numeric identifiers compare as numbers of any length. */
static int numeric_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    while (al > 1 && a[0] == '0') {
        a++;
        al--;
    }
    while (bl > 1 && b[0] == '0') {
        b++;
        bl--;
    }
    if (al != bl)
        return al < bl ? -1 : 1;
    int c = memcmp(a, b, al);
    return (c > 0) - (c < 0);
}

/* SemVer §11.4: identifier by identifier; numeric < alphanumeric; a
 * shorter list that is a prefix of the longer one comes first. */
static int pre_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    size_t i = 0, j = 0;
    while (i < al && j < bl) {
        size_t ie = i, je = j;
        while (ie < al && a[ie] != '.')
            ie++;
        while (je < bl && b[je] != '.')
            je++;
        int an = all_digits(a + i, ie - i), bn = all_digits(b + j, je - j);
        int c;
        if (an && bn) {
            c = numeric_cmp(a + i, ie - i, b + j, je - j);
        } else if (an != bn) {
            c = an ? -1 : 1;
        } else {
            size_t n = ie - i < je - j ? ie - i : je - j;
            c = memcmp(a + i, b + j, n);
            c = (c > 0) - (c < 0);
            if (c == 0 && ie - i != je - j)
                c = ie - i < je - j ? -1 : 1;
        }
        if (c != 0)
            return c;
        i = ie + (ie < al);
        j = je + (je < bl);
    }
    if (i < al)
        return 1;
    if (j < bl)
        return -1;
    return 0;
}

int vg_version_compare(const struct vg_version *a, const struct vg_version *b)
{
    size_t n = a->nseg > b->nseg ? a->nseg : b->nseg;
    int ao = a->tail_kind == VG_VTAIL_OPAQUE, bo = b->tail_kind == VG_VTAIL_OPAQUE;
    for (size_t i = 0; i < n; i++) {
        uint64_t x = i < a->nseg ? a->seg[i] : 0;
        uint64_t y = i < b->nseg ? b->seg[i] : 0;
        if (x == y)
            continue;
        /* Decided by a number one side does not have: with an opaque tail
         * there, that side's next component is unknown ("2.1b" vs 2.1.5). */
        if ((ao && i >= a->nseg) || (bo && i >= b->nseg))
            return VG_VERSION_INCOMPARABLE;
        return x < y ? -1 : 1;
    }
    if (ao || bo) {
        if (ao && bo && a->tail_len == b->tail_len &&
            strncasecmp(a->tail, b->tail, a->tail_len) == 0)
            return 0;
        return VG_VERSION_INCOMPARABLE;
    }
    int ap = a->tail_kind == VG_VTAIL_PRE, bp = b->tail_kind == VG_VTAIL_PRE;
    if (ap && bp)
        return pre_cmp(a->tail, a->tail_len, b->tail, b->tail_len);
    if (ap || bp)
        return ap ? -1 : 1;
    uint64_t x = a->tail_kind == VG_VTAIL_BUILD ? a->build : 0;
    uint64_t y = b->tail_kind == VG_VTAIL_BUILD ? b->build : 0;
    return (x > y) - (x < y);
}

int vg_version_compare_str(const char *a, const char *b)
{
    struct vg_version va, vb;
    if (a == NULL || b == NULL || vg_version_parse(a, strlen(a), &va) != 0 ||
        vg_version_parse(b, strlen(b), &vb) != 0)
        return VG_VERSION_INCOMPARABLE;
    return vg_version_compare(&va, &vb);
}

/* ---- expressions ---- */

/* A wildcard "9.x", "12.1.X", "v9.*": the numbers before it, no tail. */
static int parse_wildcard(const char *s, size_t len, struct vg_version *out)
{
    if (len < 3 || s[len - 2] != '.' ||
        (s[len - 1] != 'x' && s[len - 1] != 'X' && s[len - 1] != '*'))
        return -1;
    if (vg_version_parse(s, len - 2, out) != 0 || out->tail_kind != VG_VTAIL_NONE)
        return -1;
    return 0;
}

enum tok_kind { TK_WORD, TK_OP, TK_SEP };

struct tok {
    enum tok_kind kind;
    const char *s;
    size_t len;
    enum vg_vop op;
};

#define TOKS_MAX (2 * VG_VEXPR_MAX + 8)

/* Blanks separate tokens; "<=" ">=" "==" "!=" "<" ">" "=" are operators,
 * "," and "&&" separators; everything else runs into words. */
static int tokenize(const char *s, size_t len, struct tok *t, size_t *nt)
{
    size_t n = 0, i = 0;
    while (i < len) {
        if (is_blank(s[i])) {
            i++;
            continue;
        }
        if (n == TOKS_MAX)
            return -1;
        struct tok *k = &t[n++];
        k->s = s + i;
        char c = s[i], d = i + 1 < len ? s[i + 1] : '\0';
        if (c == '<' || c == '>' || c == '=' || c == '!') {
            k->kind = TK_OP;
            k->len = d == '=' ? 2 : 1;
            if (c == '!' && d != '=')
                return -1;
            if (c == '<')
                k->op = d == '=' ? VG_VOP_LE : VG_VOP_LT;
            else if (c == '>')
                k->op = d == '=' ? VG_VOP_GE : VG_VOP_GT;
            else if (c == '=')
                k->op = VG_VOP_EQ;
            else
                k->op = VG_VOP_NE;
            i += k->len;
        } else if (c == ',' || (c == '&' && d == '&')) {
            k->kind = TK_SEP;
            k->len = c == ',' ? 1 : 2;
            i += k->len;
        } else {
            k->kind = TK_WORD;
            size_t st = i;
            while (i < len && !is_blank(s[i]) && !strchr("<>=!,", s[i]) &&
                   !(s[i] == '&' && i + 1 < len && s[i + 1] == '&'))
                i++;
            k->len = i - st;
        }
    }
    *nt = n;
    return 0;
}

static int word_in(const struct tok *t, const char *const *list)
{
    if (t->kind != TK_WORD)
        return 0;
    for (size_t i = 0; list[i]; i++)
        if (ci_equal(t->s, t->len, list[i]))
            return 1;
    return 0;
}

static int word_is(const struct tok *t, const char *w)
{
    return t->kind == TK_WORD && ci_equal(t->s, t->len, w);
}

static int tok_version(const struct tok *t, struct vg_version *v)
{
    return t->kind == TK_WORD && vg_version_parse(t->s, t->len, v) == 0 ? 0 : -1;
}

/* A version or a wildcard, as one constraint. */
static int tok_point(const struct tok *t, struct vg_vconstraint *c)
{
    if (t->kind != TK_WORD)
        return -1;
    if (parse_wildcard(t->s, t->len, &c->v) == 0) {
        c->op = VG_VOP_PREFIX;
        return 0;
    }
    c->op = VG_VOP_EQ;
    return tok_version(t, &c->v);
}

/* A model token: letters, digits, '.', '_', '-', at least one digit. */
static int model_token(const struct tok *t)
{
    if (t->kind != TK_WORD || t->len < 2 || t->len > 64)
        return 0;
    int digit = 0;
    for (size_t i = 0; i < t->len; i++) {
        if (!is_alnum(t->s[i]) && !strchr("._-", t->s[i]))
            return 0;
        digit |= is_digit(t->s[i]);
    }
    return digit;
}

static const char *const EARLIER[] = {"prior", "earlier", "before", "below",
                                      "older", "lower",   NULL};
static const char *const LATER[] = {"later", "after", "above", "newer", "higher", NULL};

static void parse_words(const char *s, size_t len, struct vg_vexpr *out)
{
    struct tok t[TOKS_MAX];
    size_t n = 0;
    if (tokenize(s, len, t, &n) != 0 || n == 0)
        return;
    size_t i = 0;
    if (n > 1 && (word_is(&t[0], "version") || word_is(&t[0], "versions")))
        i = 1;
    const struct tok *w = t + i;
    size_t m = n - i;

    /* "2.2.0 and prior", "2.0 or later" */
    if (m == 3 && (word_is(&w[1], "and") || word_is(&w[1], "or")) &&
        (word_in(&w[2], EARLIER) || word_in(&w[2], LATER)) &&
        tok_version(&w[0], &out->c[0].v) == 0) {
        out->c[0].op = word_in(&w[2], EARLIER) ? VG_VOP_LE : VG_VOP_GE;
        out->n = 1;
        out->kind = VG_VEXPR_ALL_OF;
        return;
    }
    /* "prior to 3.0", "before 3.0", "earlier than 3.0" */
    if ((m == 3 && ((word_is(&w[0], "prior") && word_is(&w[1], "to")) ||
                    ((word_is(&w[0], "earlier") || word_is(&w[0], "older") ||
                      word_is(&w[0], "lower")) &&
                     word_is(&w[1], "than"))) &&
         tok_version(&w[2], &out->c[0].v) == 0) ||
        (m == 2 && word_is(&w[0], "before") && tok_version(&w[1], &out->c[0].v) == 0)) {
        out->c[0].op = VG_VOP_LT;
        out->n = 1;
        out->kind = VG_VEXPR_ALL_OF;
        return;
    }
    /* "9.x model 35700BAX3" */
    if (m == 3 && word_is(&w[1], "model") && model_token(&w[2]) &&
        tok_point(&w[0], &out->c[0]) == 0) {
        out->n = 1;
        out->model = w[2].s;
        out->model_len = w[2].len;
        out->kind = VG_VEXPR_MODEL;
        return;
    }
    /* A version or wildcard alone. */
    if (m == 1) {
        if (tok_point(&w[0], &out->c[0]) == 0) {
            out->n = 1;
            out->kind = VG_VEXPR_ALL_OF;
        }
        return;
    }
    /* "<op> v" pairs, optionally joined by ',' or "&&": all must hold. */
    size_t k = 0, nc = 0;
    while (k < m) {
        if (nc > 0 && w[k].kind == TK_SEP)
            k++;
        if (k + 1 >= m || w[k].kind != TK_OP || nc == VG_VEXPR_MAX)
            return;
        out->c[nc].op = w[k].op;
        if (tok_version(&w[k + 1], &out->c[nc].v) != 0)
            return;
        /* "==" arrives as '=' '='; the tokenizer made it one op of len 2. */
        nc++;
        k += 2;
    }
    out->n = nc;
    out->kind = VG_VEXPR_ALL_OF;
}

static int vers_op(const char **s, size_t *len, enum vg_vop *op)
{
    static const struct {
        const char *p;
        enum vg_vop op;
    } ops[] = {{">=", VG_VOP_GE}, {"<=", VG_VOP_LE}, {"!=", VG_VOP_NE},
               {"<", VG_VOP_LT},  {">", VG_VOP_GT},  {"=", VG_VOP_EQ}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        size_t pl = strlen(ops[i].p);
        if (*len >= pl && memcmp(*s, ops[i].p, pl) == 0) {
            *op = ops[i].op;
            *s += pl;
            *len -= pl;
            return 0;
        }
    }
    *op = VG_VOP_EQ;
    return 0;
}

/* purl vers: "vers:<scheme>/<constraint>|<constraint>|..." */
static void parse_vers(const char *s, size_t len, struct vg_vexpr *out)
{
    struct vg_vexpr e;
    memset(&e, 0, sizeof e);
    s += 5;
    len -= 5;
    const char *slash = memchr(s, '/', len);
    if (slash == NULL || slash == s)
        return;
    for (const char *p = s; p < slash; p++)
        if (!is_alnum(*p) && !strchr(".+-", *p))
            return;
    const char *c = slash + 1;
    size_t rest = len - (size_t)(c - s);
    if (rest == 0)
        return;
    while (rest > 0) {
        const char *bar = memchr(c, '|', rest);
        size_t pl = bar ? (size_t)(bar - c) : rest;
        const char *p = c;
        size_t plen = pl;
        trim(&p, &plen);
        if (plen == 0 || e.n == VG_VEXPR_MAX)
            return;
        if (plen == 1 && p[0] == '*') {
            /* "*" is valid only as the sole constraint. */
            if (e.n != 0 || bar != NULL)
                return;
            out->kind = VG_VEXPR_ANY;
            out->n = 0;
            return;
        }
        struct vg_vconstraint *k = &e.c[e.n];
        (void)vers_op(&p, &plen, &k->op);
        trim(&p, &plen);
        /* Percent-encoded versions are not decoded: such a range stays
         * unread (TEXT) rather than read wrongly. */
        if (plen == 0 || memchr(p, '%', plen) || vg_version_parse(p, plen, &k->v) != 0)
            return;
        e.n++;
        if (!bar)
            break;
        c = bar + 1;
        rest -= pl + 1;
        if (rest == 0)
            return; /* trailing '|' */
    }
    /* The evaluation needs the constraints in order, each version once. */
    for (size_t i = 1; i < e.n; i++) {
        for (size_t j = i; j > 0; j--) {
            int cmp = vg_version_compare(&e.c[j - 1].v, &e.c[j].v);
            if (cmp == 0 || cmp == VG_VERSION_INCOMPARABLE)
                return;
            if (cmp < 0)
                break;
            struct vg_vconstraint tmp = e.c[j - 1];
            e.c[j - 1] = e.c[j];
            e.c[j] = tmp;
        }
    }
    e.kind = VG_VEXPR_VERS;
    *out = e;
}

void vg_vexpr_parse(const char *s, size_t len, struct vg_vexpr *out)
{
    memset(out, 0, sizeof *out);
    out->kind = VG_VEXPR_TEXT;
    if (s == NULL)
        return;
    trim(&s, &len);
    if (len == 0 || len > VG_VEXPR_TEXT_MAX)
        return;
    if (ci_equal(s, len, "*") || ci_equal(s, len, "all") || ci_equal(s, len, "all versions") ||
        ci_equal(s, len, "any") || ci_equal(s, len, "any version")) {
        out->kind = VG_VEXPR_ANY;
        return;
    }
    if (len >= 5 && strncasecmp(s, "vers:", 5) == 0) {
        parse_vers(s, len, out);
        return;
    }
    parse_words(s, len, out);
    if (out->kind == VG_VEXPR_TEXT) {
        out->n = 0;
        out->model = NULL;
        out->model_len = 0;
    }
}

/* 1 holds, 0 does not, -1 cannot tell. */
static int holds(const struct vg_vconstraint *c, const struct vg_version *v)
{
    if (c->op == VG_VOP_PREFIX) {
        int unknown = 0;
        for (size_t i = 0; i < c->v.nseg; i++) {
            if (i < v->nseg) {
                if (v->seg[i] != c->v.seg[i])
                    return 0;
            } else if (v->tail_kind == VG_VTAIL_OPAQUE) {
                unknown = 1; /* "9b" against "9.2.x": its .2 is unknown */
            } else if (c->v.seg[i] != 0) {
                return 0;
            }
        }
        return unknown ? -1 : 1;
    }
    int cmp = vg_version_compare(v, &c->v);
    if (cmp == VG_VERSION_INCOMPARABLE)
        return -1;
    switch (c->op) {
    case VG_VOP_EQ: return cmp == 0;
    case VG_VOP_NE: return cmp != 0;
    case VG_VOP_LT: return cmp < 0;
    case VG_VOP_LE: return cmp <= 0;
    case VG_VOP_GT: return cmp > 0;
    case VG_VOP_GE: return cmp >= 0;
    case VG_VOP_PREFIX: break;
    }
    return -1;
}

static int is_lower_bound(enum vg_vop op) { return op == VG_VOP_GT || op == VG_VOP_GE; }
static int is_upper_bound(enum vg_vop op) { return op == VG_VOP_LT || op == VG_VOP_LE; }

/* The vers spec's evaluation; every comparison here is known to be
 * decidable (checked by the caller). */
static enum vg_vmatch vers_match(const struct vg_vexpr *e, const struct vg_version *v)
{
    for (size_t i = 0; i < e->n; i++) {
        enum vg_vop op = e->c[i].op;
        if ((op == VG_VOP_EQ || op == VG_VOP_LE || op == VG_VOP_GE) &&
            vg_version_compare(v, &e->c[i].v) == 0)
            return VG_VMATCH_IN;
    }
    for (size_t i = 0; i < e->n; i++)
        if (e->c[i].op == VG_VOP_NE && vg_version_compare(v, &e->c[i].v) == 0)
            return VG_VMATCH_OUT;
    const struct vg_vconstraint *r[VG_VEXPR_MAX];
    size_t nr = 0;
    for (size_t i = 0; i < e->n; i++)
        if (e->c[i].op != VG_VOP_EQ && e->c[i].op != VG_VOP_NE)
            r[nr++] = &e->c[i];
    if (nr == 1) {
        int cmp = vg_version_compare(v, &r[0]->v);
        if ((is_upper_bound(r[0]->op) && cmp < 0) || (is_lower_bound(r[0]->op) && cmp > 0))
            return VG_VMATCH_IN;
        return VG_VMATCH_OUT;
    }
    for (size_t i = 0; i + 1 < nr; i++) {
        const struct vg_vconstraint *cur = r[i], *nxt = r[i + 1];
        if (i == 0 && is_upper_bound(cur->op) && vg_version_compare(v, &cur->v) < 0)
            return VG_VMATCH_IN;
        if (i + 2 == nr && is_lower_bound(nxt->op) && vg_version_compare(v, &nxt->v) > 0)
            return VG_VMATCH_IN;
        if (is_lower_bound(cur->op) && is_upper_bound(nxt->op) &&
            vg_version_compare(v, &cur->v) > 0 && vg_version_compare(v, &nxt->v) < 0)
            return VG_VMATCH_IN;
    }
    return VG_VMATCH_OUT;
}

enum vg_vmatch vg_vexpr_match(const struct vg_vexpr *e, const struct vg_version *v)
{
    switch (e->kind) {
    case VG_VEXPR_ANY:
        return VG_VMATCH_IN;
    case VG_VEXPR_TEXT:
        return VG_VMATCH_UNKNOWN;
    case VG_VEXPR_VERS:
        if (v == NULL)
            return VG_VMATCH_UNKNOWN;
        for (size_t i = 0; i < e->n; i++)
            if (vg_version_compare(v, &e->c[i].v) == VG_VERSION_INCOMPARABLE)
                return VG_VMATCH_UNKNOWN;
        return vers_match(e, v);
    case VG_VEXPR_ALL_OF:
    case VG_VEXPR_MODEL: {
        if (v == NULL)
            return VG_VMATCH_UNKNOWN;
        enum vg_vmatch r = VG_VMATCH_IN;
        for (size_t i = 0; i < e->n; i++) {
            int h = holds(&e->c[i], v);
            if (h == 0)
                return VG_VMATCH_OUT; /* one false constraint decides */
            if (h < 0)
                r = VG_VMATCH_UNKNOWN;
        }
        return r;
    }
    }
    return VG_VMATCH_UNKNOWN;
}

const char *vg_vmatch_name(enum vg_vmatch m)
{
    switch (m) {
    case VG_VMATCH_OUT: return "out";
    case VG_VMATCH_IN: return "in";
    case VG_VMATCH_UNKNOWN: return "unknown";
    }
    return "unknown";
}
