/* advisory/csaf — CSAF 2.0 parsing and device matching. The rules are in
 * csaf.h; this file follows them in three parts: the document (arena,
 * pre-scan, JSON walk), name normalisation, and matching. */
#include "advisory/csaf.h"

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "advisory/version.h"

#define NO_VENDOR UINT32_MAX

/* ---- the document ---- */

/* Everything a document owns lives in a few large chunks freed together:
 * one vg_csaf_free() and no per-string bookkeeping. */
struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
};
#define CHUNK_BYTES (64u * 1024u)

struct vendor_x {
    const char *name;
    uint64_t hash;    /* of name: distinct long names cost no strcmp */
    char *words;      /* " w1 w2 " without generic words; "" */
    char *all_words;  /* " w1 w2 " with them */
    char *parts;      /* nparts strings " w ", each NUL-terminated */
    size_t nparts;
};

struct prod_x {
    char *words;      /* the product's name as " w1 w2 "; "" */
    size_t skip;      /* offset past a leading vendor name, or 0 */
    uint32_t vendor;  /* index into vendors, or NO_VENDOR */
};

/* Product ids sorted for lookups. */
struct id_entry {
    const char *id;
    uint32_t product;
};

struct group_x {
    const char *id;
    const uint32_t *products;
    size_t n;
};

struct vg_csaf_doc {
    struct vg_csaf_info info;
    struct vg_csaf_product *products; /* malloc'd, grown while walking */
    struct prod_x *px;                /* parallel to products */
    size_t nproducts, cap;
    struct id_entry *order;           /* product ids, sorted */
    struct vendor_x *vendors;         /* malloc'd */
    size_t nvendors, vcap;
    struct group_x *groups;           /* sorted by id */
    size_t ngroups;
    struct vg_csaf_vuln *vulns;
    struct chunk *arena;
    size_t mem;
    int over_mem;
};

static void *arena_alloc(struct vg_csaf_doc *d, size_t n)
{
    const size_t align = sizeof(max_align_t);
    if (n > VG_CSAF_MEM_MAX) {
        d->over_mem = 1;
        return NULL;
    }
    n = (n + align - 1) / align * align;
    if (n == 0)
        n = align;
    if (d->arena == NULL || d->arena->cap - d->arena->used < n) {
        size_t cap = n > CHUNK_BYTES ? n : CHUNK_BYTES;
        if (d->mem + cap > VG_CSAF_MEM_MAX) {
            d->over_mem = 1;
            return NULL;
        }
        struct chunk *c = malloc(sizeof *c + cap);
        if (c == NULL)
            return NULL;
        c->next = d->arena;
        c->used = 0;
        c->cap = cap;
        d->arena = c;
        d->mem += cap;
    }
    void *p = (unsigned char *)d->arena->data + d->arena->used;
    d->arena->used += n;
    return p;
}

void vg_csaf_free(struct vg_csaf_doc *doc)
{
    if (doc == NULL)
        return;
    struct chunk *c = doc->arena;
    while (c) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    free(doc->products);
    free(doc->px);
    free(doc->vendors);
    free(doc);
}

const struct vg_csaf_info *vg_csaf_info(const struct vg_csaf_doc *doc)
{
    return doc ? &doc->info : NULL;
}

const char *vg_csaf_strerror(enum vg_csaf_err e)
{
    switch (e) {
    case VG_CSAF_OK: return "ok";
    case VG_CSAF_ERR_TOO_LARGE: return "too-large";
    case VG_CSAF_ERR_TOO_DEEP: return "too-deep";
    case VG_CSAF_ERR_LIMIT: return "limit";
    case VG_CSAF_ERR_SYNTAX: return "syntax";
    case VG_CSAF_ERR_NOT_CSAF: return "not-csaf";
    case VG_CSAF_ERR_MISSING: return "missing";
    case VG_CSAF_ERR_TYPE: return "type";
    case VG_CSAF_ERR_INVALID: return "invalid";
    case VG_CSAF_ERR_NOMEM: return "no-memory";
    }
    return "unknown";
}

static const char *const PSTATUS_NAMES[] = {
    [VG_CSAF_PS_FIRST_AFFECTED] = "first_affected",
    [VG_CSAF_PS_FIRST_FIXED] = "first_fixed",
    [VG_CSAF_PS_FIXED] = "fixed",
    [VG_CSAF_PS_KNOWN_AFFECTED] = "known_affected",
    [VG_CSAF_PS_KNOWN_NOT_AFFECTED] = "known_not_affected",
    [VG_CSAF_PS_LAST_AFFECTED] = "last_affected",
    [VG_CSAF_PS_RECOMMENDED] = "recommended",
    [VG_CSAF_PS_UNDER_INVESTIGATION] = "under_investigation",
};
#define PSTATUS_COUNT (sizeof PSTATUS_NAMES / sizeof PSTATUS_NAMES[0])

const char *vg_csaf_pstatus_name(enum vg_csaf_pstatus s)
{
    return (size_t)s < PSTATUS_COUNT ? PSTATUS_NAMES[s] : "unknown";
}

const char *vg_csaf_status_name(enum vg_csaf_status s)
{
    switch (s) {
    case VG_CSAF_NO_MATCH: return "no-match";
    case VG_CSAF_NOT_AFFECTED: return "not-affected";
    case VG_CSAF_UNKNOWN: return "unknown";
    case VG_CSAF_AFFECTED: return "affected";
    }
    return "unknown";
}

/* ---- normalisation (shared by parsing and matching) ---- */

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_blank(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
/* Word characters: ASCII letters and digits, and every byte of a non-ASCII
 * UTF-8 sequence (left as is: no Unicode case folding here). */
static int is_wordch(unsigned char c) { return is_digit(c) || is_alpha(c) || c >= 0x80; }
static char lower(unsigned char c) { return (char)(c >= 'A' && c <= 'Z' ? c + 32 : c); }

/* Words that say what kind of company it is, not which one. */
static const char *const GENERIC[] = {
    "inc", "incorporated", "corp", "corporation", "co", "company", "companies", "ltd", "limited",
    "llc", "llp", "lp", "gmbh", "ag", "sa", "se", "spa", "plc", "bv", "nv", "kg", "oy", "ab",
    "pty", "srl", "kk", "international", "intl", "group", "holding", "holdings", "the", "and",
    "of", "medical", "health", "healthcare", "systems", "system", "technologies", "technology",
    "solutions", NULL};

static int generic_word(const char *w, size_t n)
{
    for (size_t i = 0; GENERIC[i]; i++)
        if (strlen(GENERIC[i]) == n && strncasecmp(w, GENERIC[i], n) == 0)
            return 1;
    return 0;
}

/* Writes " w1 w2 ... " (lower case, one space around each word) into 'out',
 * which must hold len + 3 bytes. Returns its length; 0 and "" when there is
 * no word. */
static size_t words_norm(const char *s, size_t len, char *out, int drop_generic)
{
    size_t o = 0, nw = 0, i = 0;
    out[o++] = ' ';
    while (i < len) {
        while (i < len && !is_wordch((unsigned char)s[i]))
            i++;
        size_t st = i;
        while (i < len && is_wordch((unsigned char)s[i]))
            i++;
        if (i == st)
            break;
        if (drop_generic && generic_word(s + st, i - st))
            continue;
        for (size_t k = st; k < i; k++)
            out[o++] = lower((unsigned char)s[k]);
        out[o++] = ' ';
        nw++;
    }
    if (nw == 0)
        o = 0;
    out[o] = '\0';
    return o;
}

/* A company name's words without the generic ones — or all of them if
 * nothing else is left ("Health Systems Inc." stays as it is). */
static size_t company_norm(const char *s, size_t len, char *out)
{
    size_t n = words_norm(s, len, out, 1);
    return n ? n : words_norm(s, len, out, 0);
}

static size_t squash_len(const char *w)
{
    size_t n = 0;
    for (; *w; w++)
        n += *w != ' ';
    return n;
}

/* Both in " w " form: is 'needle' a run of whole words of 'hay'? */
static int has_words(const char *hay, const char *needle)
{
    return needle[0] && hay[0] && squash_len(needle) >= 2 && strstr(hay, needle) != NULL;
}

static int squash_equal(const char *a, const char *b)
{
    for (;;) {
        while (*a == ' ')
            a++;
        while (*b == ' ')
            b++;
        if (*a != *b)
            return 0;
        if (*a == '\0')
            return 1;
        a++;
        b++;
    }
}

/* Does 'sq' (no spaces) equal some consecutive words of 'words' with the
 * spaces removed? ("hillrom" in " hill rom eli "). */
static int squash_run(const char *words, const char *sq)
{
    size_t n = strlen(sq);
    if (n < 2)
        return 0;
    for (const char *p = words; *p; p++) {
        if (*p != ' ' || p[1] == '\0')
            continue;
        const char *q = p + 1;
        size_t k = 0;
        while (*q && k < n) {
            if (*q == ' ') {
                q++;
                continue;
            }
            if (*q != sq[k])
                break;
            q++;
            k++;
        }
        if (k == n && (*q == ' ' || *q == '\0'))
            return 1;
    }
    return 0;
}

/* When 'words' starts with the words 'prefix' and has more after them:
 * the offset of the rest (still starting with ' '); else 0. */
static size_t prefix_skip(const char *words, const char *prefix)
{
    size_t n = strlen(prefix);
    if (n < 2 || strncmp(words, prefix, n) != 0 || words[n] == '\0')
        return 0;
    return n - 1;
}

static size_t vendor_skip(const struct vendor_x *v, const char *words)
{
    size_t s = v->words[0] ? prefix_skip(words, v->words) : 0;
    const char *p = v->parts;
    for (size_t i = 0; i < v->nparts && s == 0; i++, p += strlen(p) + 1)
        s = prefix_skip(words, p);
    return s;
}

/* ---- parsing ---- */

struct pctx {
    struct vg_csaf_doc *d;
    char *err;
    size_t err_size;
    char path[200];
    size_t plen;
    size_t branches;
    size_t refs;
};

#define TRY(x)                                                                                     \
    do {                                                                                           \
        enum vg_csaf_err rc_ = (x);                                                                \
        if (rc_ != VG_CSAF_OK)                                                                     \
            return rc_;                                                                            \
    } while (0)

__attribute__((format(printf, 4, 5))) static enum vg_csaf_err
fail(struct pctx *c, enum vg_csaf_err rc, const char *key, const char *fmt, ...)
{
    if (c->err == NULL || c->err_size == 0)
        return rc;
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->err_size, "%s%s%s: %s", c->path, key ? "." : "", key ? key : "", msg);
    return rc;
}

static enum vg_csaf_err nomem(struct pctx *c)
{
    if (c->d->over_mem)
        return fail(c, VG_CSAF_ERR_LIMIT, NULL, "the parsed document would need more than %u MiB",
                    VG_CSAF_MEM_MAX / (1024u * 1024u));
    return fail(c, VG_CSAF_ERR_NOMEM, NULL, "out of memory");
}

__attribute__((format(printf, 2, 3))) static size_t path_push(struct pctx *c, const char *fmt, ...)
{
    size_t old = c->plen;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->path + old, sizeof c->path - old, fmt, ap);
    va_end(ap);
    if (n > 0)
        c->plen = old + (size_t)n < sizeof c->path ? old + (size_t)n : sizeof c->path - 1;
    return old;
}

static void path_pop(struct pctx *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

static const char *type_name(json_type t)
{
    switch (t) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    default: return "a value";
    }
}

/* The member 'key' of 'o' if it has type 't' (JSON_REAL: any number).
 * Absent: *out NULL, and MISSING when required. Another type: TYPE. */
static enum vg_csaf_err member(struct pctx *c, const json_t *o, const char *key, json_type t,
                               int required, json_t **out)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (v == NULL)
        return required ? fail(c, VG_CSAF_ERR_MISSING, key, "missing") : VG_CSAF_OK;
    int ok = t == JSON_REAL ? json_is_number(v) : json_typeof(v) == t;
    if (!ok)
        return fail(c, VG_CSAF_ERR_TYPE, key, "expected %s", type_name(t));
    *out = v;
    return VG_CSAF_OK;
}

static enum vg_csaf_err array_member(struct pctx *c, const json_t *o, const char *key, int required,
                                     size_t max, const char *what, json_t **out)
{
    TRY(member(c, o, key, JSON_ARRAY, required, out));
    if (*out && json_array_size(*out) > max)
        return fail(c, VG_CSAF_ERR_LIMIT, key, "more than %zu %s", max, what);
    return VG_CSAF_OK;
}

static int has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 1;
    return 0;
}

static char *copy_raw(struct pctx *c, const char *s, size_t len)
{
    char *p = arena_alloc(c->d, len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

/* A copy safe to print: control characters become spaces (keeping '\n'
 * when asked), and text beyond 'max' bytes is cut at a UTF-8 character
 * boundary and ends in "...". */
static const char *copy_text(struct pctx *c, const char *s, size_t len, size_t max, int keep_nl)
{
    int cut = len > max;
    if (cut) {
        len = max - 3;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    char *p = arena_alloc(c->d, len + 4);
    if (p == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        p[i] = (ch < 0x20 && !(keep_nl && ch == '\n')) || ch == 0x7f ? ' ' : (char)ch;
    }
    if (cut)
        memcpy(p + len, "...", 3);
    p[len + (cut ? 3 : 0)] = '\0';
    return p;
}

/* A required identifier: 1..VG_CSAF_ID_MAX bytes, no control characters. */
static enum vg_csaf_err id_member(struct pctx *c, const json_t *o, const char *key, int required,
                                  const char **out)
{
    json_t *v;
    *out = "";
    TRY(member(c, o, key, JSON_STRING, required, &v));
    if (v == NULL)
        return VG_CSAF_OK;
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len == 0)
        return fail(c, VG_CSAF_ERR_INVALID, key, "empty");
    if (len > VG_CSAF_ID_MAX)
        return fail(c, VG_CSAF_ERR_INVALID, key, "longer than %d bytes", VG_CSAF_ID_MAX);
    if (has_control(s, len))
        return fail(c, VG_CSAF_ERR_INVALID, key, "contains a control character");
    if ((*out = copy_raw(c, s, len)) == NULL)
        return nomem(c);
    return VG_CSAF_OK;
}

/* Optional text, copied by copy_text; "" when absent. */
static enum vg_csaf_err text_member(struct pctx *c, const json_t *o, const char *key, int required,
                                    size_t max, int keep_nl, const char **out)
{
    json_t *v;
    *out = "";
    TRY(member(c, o, key, JSON_STRING, required, &v));
    if (v == NULL)
        return VG_CSAF_OK;
    if ((*out = copy_text(c, json_string_value(v), json_string_length(v), max, keep_nl)) == NULL)
        return nomem(c);
    return VG_CSAF_OK;
}

/* Counts containers and member/element separators, outside strings, and
 * the deepest nesting: a bound on what jansson would build, checked before
 * it builds anything. Malformed input is jansson's to refuse. */
static enum vg_csaf_err prescan(struct pctx *c, const unsigned char *p, size_t n)
{
    size_t depth = 0, values = 1;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = p[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = 0;
            continue;
        }
        switch (ch) {
        case '"':
            in_str = 1;
            break;
        case '{':
        case '[':
            if (++depth > VG_CSAF_DEPTH_MAX)
                return fail(c, VG_CSAF_ERR_TOO_DEEP, NULL, "JSON nested more than %d levels deep",
                            VG_CSAF_DEPTH_MAX);
            values++;
            break;
        case '}':
        case ']':
            if (depth > 0)
                depth--;
            break;
        case ',':
        case ':':
            values++;
            break;
        default:
            break;
        }
        if (values > VG_CSAF_VALUES_MAX)
            return fail(c, VG_CSAF_ERR_LIMIT, NULL, "more than %d JSON values", VG_CSAF_VALUES_MAX);
    }
    return VG_CSAF_OK;
}

static enum vg_csaf_err json_fail(struct pctx *c, const json_error_t *je)
{
    switch (json_error_code(je)) {
    case json_error_out_of_memory:
        return fail(c, VG_CSAF_ERR_NOMEM, NULL, "out of memory");
    case json_error_stack_overflow:
        return fail(c, VG_CSAF_ERR_TOO_DEEP, NULL, "JSON nested too deep");
    case json_error_premature_end_of_input:
        return fail(c, VG_CSAF_ERR_SYNTAX, NULL, "truncated JSON: input ends at line %d", je->line);
    case json_error_end_of_input_expected:
        return fail(c, VG_CSAF_ERR_SYNTAX, NULL, "data after the JSON document (line %d)",
                    je->line);
    case json_error_invalid_utf8:
        return fail(c, VG_CSAF_ERR_SYNTAX, NULL, "invalid UTF-8 (line %d)", je->line);
    case json_error_duplicate_key:
        return fail(c, VG_CSAF_ERR_SYNTAX, NULL, "duplicate member name (line %d)", je->line);
    case json_error_null_character:
    case json_error_null_byte_in_key:
        return fail(c, VG_CSAF_ERR_SYNTAX, NULL, "NUL character in a string (line %d)", je->line);
    case json_error_numeric_overflow:
        return fail(c, VG_CSAF_ERR_SYNTAX, NULL, "number out of range (line %d)", je->line);
    default:
        /* jansson's own text may quote the input; say where, not what. */
        return fail(c, VG_CSAF_ERR_SYNTAX, NULL, "not valid JSON (line %d, column %d)", je->line,
                    je->column);
    }
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct id_entry *)a)->id, ((const struct id_entry *)b)->id);
}

static long product_find(const struct vg_csaf_doc *d, const char *id)
{
    size_t lo = 0, hi = d->nproducts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(d->order[mid].id, id);
        if (cmp == 0)
            return (long)d->order[mid].product;
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static long group_find(const struct vg_csaf_doc *d, const char *id)
{
    size_t lo = 0, hi = d->ngroups;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(d->groups[mid].id, id);
        if (cmp == 0)
            return (long)mid;
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Reads an array of product ids (already type- and size-checked by the
 * caller) into 'out', resolving each. */
static enum vg_csaf_err read_refs(struct pctx *c, const json_t *arr, const char *key, uint32_t *out)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        size_t old = path_push(c, ".%s[%zu]", key, i);
        if (!json_is_string(v))
            return fail(c, VG_CSAF_ERR_TYPE, NULL, "expected a string");
        if (++c->refs > VG_CSAF_REFS_MAX)
            return fail(c, VG_CSAF_ERR_LIMIT, NULL,
                        "more than %d product references in the document", VG_CSAF_REFS_MAX);
        long p = product_find(c->d, json_string_value(v));
        if (p < 0)
            return fail(c, VG_CSAF_ERR_INVALID, NULL, "product id not defined in the product_tree");
        out[i] = (uint32_t)p;
        path_pop(c, old);
    }
    return VG_CSAF_OK;
}

struct branch_ctx {
    const char *vendor, *family, *name, *version;
    int range;
};

static uint32_t vendor_index(struct pctx *c, const char *name, enum vg_csaf_err *rc)
{
    struct vg_csaf_doc *d = c->d;
    *rc = VG_CSAF_OK;
    if (name[0] == '\0')
        return NO_VENDOR;
    /* FNV-1a: a document with thousands of long, distinct vendor names
     * would otherwise cost a quadratic number of long strcmp() calls. */
    uint64_t h = 1469598103934665603u;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211u;
    for (size_t i = d->nvendors; i-- > 0;)
        if (d->vendors[i].name == name ||
            (d->vendors[i].hash == h && strcmp(d->vendors[i].name, name) == 0))
            return (uint32_t)i;
    if (d->nvendors == d->vcap) {
        size_t cap = d->vcap ? d->vcap * 2 : 8;
        struct vendor_x *nv = realloc(d->vendors, cap * sizeof *nv);
        if (nv == NULL) {
            *rc = nomem(c);
            return NO_VENDOR;
        }
        d->vendors = nv;
        d->vcap = cap;
    }
    struct vendor_x *v = &d->vendors[d->nvendors];
    size_t len = strlen(name);
    v->name = name;
    v->hash = h;
    v->words = arena_alloc(d, len + 3);
    v->all_words = arena_alloc(d, len + 3);
    /* Parts: the name cut at punctuation that separates companies and at
     * the word "and"; at most len + 1 of them, each at most len + 3. */
    v->parts = arena_alloc(d, 2 * len + 4);
    char *tmp = arena_alloc(d, len + 3);
    if (v->words == NULL || v->all_words == NULL || v->parts == NULL || tmp == NULL) {
        *rc = nomem(c);
        return NO_VENDOR;
    }
    company_norm(name, len, v->words);
    words_norm(name, len, v->all_words, 0);
    v->nparts = 0;
    size_t o = 0, st = 0;
    for (size_t i = 0; i <= len; i++) {
        int cut = i == len || strchr(",;/()&|", name[i]) != NULL;
        /* " and " between words also separates. */
        if (!cut && i > 0 && is_blank((unsigned char)name[i - 1]) && i + 3 <= len &&
            strncasecmp(name + i, "and", 3) == 0 &&
            (i + 3 == len || !is_wordch((unsigned char)name[i + 3])))
            cut = 1;
        if (!cut)
            continue;
        size_t n = words_norm(name + st, i - st, tmp, 1);
        if (n && squash_len(tmp) >= 2 && o + n + 1 <= 2 * len + 4) {
            memcpy(v->parts + o, tmp, n + 1);
            o += n + 1;
            v->nparts++;
        }
        st = i + (i < len && strncasecmp(name + i, "and", 3) == 0 ? 3 : 1);
    }
    return (uint32_t)d->nvendors++;
}

static enum vg_csaf_err add_product(struct pctx *c, const json_t *prod, const struct branch_ctx *b,
                                    int in_tree)
{
    struct vg_csaf_doc *d = c->d;
    const char *id, *full;
    TRY(id_member(c, prod, "product_id", 1, &id));
    TRY(text_member(c, prod, "name", 0, VG_CSAF_TITLE_MAX, 0, &full));
    if (d->nproducts == VG_CSAF_PRODUCTS_MAX)
        return fail(c, VG_CSAF_ERR_LIMIT, NULL, "more than %d products", VG_CSAF_PRODUCTS_MAX);
    if (d->nproducts == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        struct vg_csaf_product *np = realloc(d->products, cap * sizeof *np);
        if (np == NULL)
            return nomem(c);
        d->products = np;
        struct prod_x *nx = realloc(d->px, cap * sizeof *nx);
        if (nx == NULL)
            return nomem(c);
        d->px = nx;
        d->cap = cap;
    }
    struct vg_csaf_product *p = &d->products[d->nproducts];
    struct prod_x *x = &d->px[d->nproducts];
    p->id = id;
    p->vendor = b->vendor;
    p->family = b->family;
    p->name = b->name;
    p->version = b->version;
    p->version_is_range = b->range;
    p->in_tree = in_tree;
    p->full_name = full;

    enum vg_csaf_err rc;
    x->vendor = vendor_index(c, b->vendor, &rc);
    if (rc != VG_CSAF_OK)
        return rc;
    const char *src = b->name[0] ? b->name : b->family[0] ? b->family : full;
    size_t len = strlen(src);
    if ((x->words = arena_alloc(d, len + 3)) == NULL)
        return nomem(c);
    words_norm(src, len, x->words, 0);
    x->skip =
        x->vendor != NO_VENDOR && x->words[0] ? vendor_skip(&d->vendors[x->vendor], x->words) : 0;
    d->nproducts++;
    return VG_CSAF_OK;
}

static const char *const BRANCH_CATEGORIES[] = {
    "architecture", "host_name", "language", "legacy", "patch_level", "product_family",
    "product_name", "product_version", "product_version_range", "service_pack", "specification",
    "vendor", NULL};

static enum vg_csaf_err walk_branches(struct pctx *c, const json_t *arr, int depth,
                                      const struct branch_ctx *up)
{
    if (depth > VG_CSAF_BRANCH_DEPTH_MAX)
        return fail(c, VG_CSAF_ERR_TOO_DEEP, NULL, "product_tree branches nested more than %d deep",
                    VG_CSAF_BRANCH_DEPTH_MAX);
    size_t i;
    json_t *b;
    json_array_foreach(arr, i, b) {
        size_t old = path_push(c, "[%zu]", i);
        if (!json_is_object(b))
            return fail(c, VG_CSAF_ERR_TYPE, NULL, "expected an object");
        if (++c->branches > VG_CSAF_BRANCHES_MAX)
            return fail(c, VG_CSAF_ERR_LIMIT, NULL, "more than %d branches in the product_tree",
                        VG_CSAF_BRANCHES_MAX);
        json_t *cat, *name, *sub, *prod;
        TRY(member(c, b, "category", JSON_STRING, 1, &cat));
        TRY(member(c, b, "name", JSON_STRING, 1, &name));
        TRY(member(c, b, "branches", JSON_ARRAY, 0, &sub));
        TRY(member(c, b, "product", JSON_OBJECT, 0, &prod));
        const char *cs = json_string_value(cat);
        size_t k = 0;
        while (BRANCH_CATEGORIES[k] && strcmp(BRANCH_CATEGORIES[k], cs) != 0)
            k++;
        if (BRANCH_CATEGORIES[k] == NULL)
            return fail(c, VG_CSAF_ERR_INVALID, "category", "not a CSAF 2.0 branch category");
        size_t nlen = json_string_length(name);
        if (nlen == 0)
            return fail(c, VG_CSAF_ERR_INVALID, "name", "empty");
        if (nlen > VG_CSAF_NAME_MAX)
            return fail(c, VG_CSAF_ERR_INVALID, "name", "longer than %d bytes", VG_CSAF_NAME_MAX);
        if (sub == NULL && prod == NULL)
            return fail(c, VG_CSAF_ERR_MISSING, NULL, "a branch needs 'branches' or 'product'");
        struct branch_ctx here = *up;
        const char *copy = NULL;
        if (!strcmp(cs, "vendor") || !strcmp(cs, "product_family") || !strcmp(cs, "product_name") ||
            !strcmp(cs, "product_version") || !strcmp(cs, "product_version_range")) {
            /* Names are matched, so they are never cut; control characters
             * become spaces like everywhere else. */
            if ((copy = copy_text(c, json_string_value(name), nlen, VG_CSAF_NAME_MAX + 1, 0)) ==
                NULL)
                return nomem(c);
        }
        if (!strcmp(cs, "vendor")) {
            here.vendor = copy;
        } else if (!strcmp(cs, "product_family")) {
            here.family = copy;
        } else if (!strcmp(cs, "product_name")) {
            here.name = copy;
        } else if (!strcmp(cs, "product_version") || !strcmp(cs, "product_version_range")) {
            here.version = copy;
            here.range = !strcmp(cs, "product_version_range");
        }
        if (prod) {
            size_t o2 = path_push(c, ".product");
            TRY(add_product(c, prod, &here, 1));
            path_pop(c, o2);
        }
        if (sub) {
            size_t o2 = path_push(c, ".branches");
            TRY(walk_branches(c, sub, depth + 1, &here));
            path_pop(c, o2);
        }
        path_pop(c, old);
    }
    return VG_CSAF_OK;
}

static enum vg_csaf_err read_product_tree(struct pctx *c, const json_t *tree)
{
    static const struct branch_ctx none = {"", "", "", "", 0};
    json_t *arr;
    size_t i;
    json_t *v;

    TRY(member(c, tree, "branches", JSON_ARRAY, 0, &arr));
    if (arr) {
        size_t old = path_push(c, ".branches");
        TRY(walk_branches(c, arr, 1, &none));
        path_pop(c, old);
    }
    TRY(array_member(c, tree, "full_product_names", 0, VG_CSAF_PRODUCTS_MAX, "products", &arr));
    json_array_foreach(arr, i, v) {
        size_t old = path_push(c, ".full_product_names[%zu]", i);
        if (!json_is_object(v))
            return fail(c, VG_CSAF_ERR_TYPE, NULL, "expected an object");
        TRY(add_product(c, v, &none, 0));
        path_pop(c, old);
    }
    TRY(array_member(c, tree, "relationships", 0, VG_CSAF_PRODUCTS_MAX, "relationships", &arr));
    json_array_foreach(arr, i, v) {
        size_t old = path_push(c, ".relationships[%zu]", i);
        if (!json_is_object(v))
            return fail(c, VG_CSAF_ERR_TYPE, NULL, "expected an object");
        json_t *fpn;
        TRY(member(c, v, "full_product_name", JSON_OBJECT, 1, &fpn));
        path_push(c, ".full_product_name");
        TRY(add_product(c, fpn, &none, 0));
        path_pop(c, old);
    }
    return VG_CSAF_OK;
}

/* Sorts the product ids for lookups; a second definition is an error. */
static enum vg_csaf_err index_products(struct pctx *c)
{
    struct vg_csaf_doc *d = c->d;
    if (d->nproducts == 0)
        return VG_CSAF_OK;
    if ((d->order = arena_alloc(d, d->nproducts * sizeof *d->order)) == NULL)
        return nomem(c);
    for (size_t i = 0; i < d->nproducts; i++) {
        d->order[i].id = d->products[i].id;
        d->order[i].product = (uint32_t)i;
    }
    qsort(d->order, d->nproducts, sizeof *d->order, entry_cmp);
    for (size_t i = 1; i < d->nproducts; i++)
        if (strcmp(d->order[i - 1].id, d->order[i].id) == 0)
            return fail(c, VG_CSAF_ERR_INVALID, "product_tree",
                        "a product id is defined more than once");
    return VG_CSAF_OK;
}

static int group_cmp(const void *a, const void *b)
{
    return strcmp(((const struct group_x *)a)->id, ((const struct group_x *)b)->id);
}

static enum vg_csaf_err read_groups(struct pctx *c, const json_t *tree)
{
    struct vg_csaf_doc *d = c->d;
    json_t *arr, *v;
    size_t i;
    TRY(array_member(c, tree, "product_groups", 0, VG_CSAF_GROUPS_MAX, "product groups", &arr));
    if (arr == NULL || json_array_size(arr) == 0)
        return VG_CSAF_OK;
    d->groups = arena_alloc(d, json_array_size(arr) * sizeof *d->groups);
    if (d->groups == NULL)
        return nomem(c);
    json_array_foreach(arr, i, v) {
        size_t old = path_push(c, ".product_groups[%zu]", i);
        if (!json_is_object(v))
            return fail(c, VG_CSAF_ERR_TYPE, NULL, "expected an object");
        struct group_x *g = &d->groups[i];
        json_t *ids;
        TRY(id_member(c, v, "group_id", 1, &g->id));
        TRY(array_member(c, v, "product_ids", 1, VG_CSAF_PRODUCTS_MAX, "product ids", &ids));
        uint32_t *refs = arena_alloc(d, (json_array_size(ids) + 1) * sizeof *refs);
        if (refs == NULL)
            return nomem(c);
        TRY(read_refs(c, ids, "product_ids", refs));
        g->products = refs;
        g->n = json_array_size(ids);
        d->ngroups++;
        path_pop(c, old);
    }
    qsort(d->groups, d->ngroups, sizeof *d->groups, group_cmp);
    for (i = 1; i < d->ngroups; i++)
        if (strcmp(d->groups[i - 1].id, d->groups[i].id) == 0)
            return fail(c, VG_CSAF_ERR_INVALID, "product_groups",
                        "a group id is defined more than once");
    return VG_CSAF_OK;
}

/* "CVE-" 4 digits "-" 4 or more digits (the CSAF 2.0 schema's pattern). */
static int cve_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 13 || strncmp(s, "CVE-", 4) != 0 || s[8] != '-')
        return 0;
    for (size_t i = 4; i < n; i++)
        if (i != 8 && !is_digit((unsigned char)s[i]))
            return 0;
    return 1;
}

static enum vg_csaf_err read_scores(struct pctx *c, const json_t *vj, struct vg_csaf_vuln *v)
{
    json_t *arr, *s;
    size_t i;
    TRY(array_member(c, vj, "scores", 0, VG_CSAF_SCORES_MAX, "scores", &arr));
    v->max_score = -1;
    v->max_vector = "";
    if (arr == NULL || json_array_size(arr) == 0)
        return VG_CSAF_OK;
    struct vg_csaf_score *sc = arena_alloc(c->d, json_array_size(arr) * sizeof *sc);
    if (sc == NULL)
        return nomem(c);
    json_array_foreach(arr, i, s) {
        size_t old = path_push(c, ".scores[%zu]", i);
        if (!json_is_object(s))
            return fail(c, VG_CSAF_ERR_TYPE, NULL, "expected an object");
        json_t *prods, *cvss, *base;
        TRY(array_member(c, s, "products", 1, VG_CSAF_PRODUCTS_MAX, "products", &prods));
        TRY(member(c, s, "cvss_v3", JSON_OBJECT, 0, &cvss));
        uint32_t *refs = arena_alloc(c->d, (json_array_size(prods) + 1) * sizeof *refs);
        if (refs == NULL)
            return nomem(c);
        TRY(read_refs(c, prods, "products", refs));
        if (cvss) {
            /* Only CVSS v3 is read; a v2-only score just has no cvss_v3. */
            struct vg_csaf_score *o = &sc[v->nscores];
            path_push(c, ".cvss_v3");
            TRY(member(c, cvss, "baseScore", JSON_REAL, 1, &base));
            double b = json_number_value(base);
            if (!(b >= 0.0 && b <= 10.0))
                return fail(c, VG_CSAF_ERR_INVALID, "baseScore", "not between 0 and 10");
            json_t *vec;
            TRY(member(c, cvss, "vectorString", JSON_STRING, 0, &vec));
            if (vec && json_string_length(vec) > 200)
                return fail(c, VG_CSAF_ERR_INVALID, "vectorString", "longer than 200 bytes");
            o->base = b;
            o->vector = "";
            if (vec && (o->vector = copy_text(c, json_string_value(vec), json_string_length(vec),
                                              201, 0)) == NULL)
                return nomem(c);
            o->products = refs;
            o->nproducts = json_array_size(prods);
            if (b > v->max_score) {
                v->max_score = b;
                v->max_vector = o->vector;
            }
            v->nscores++;
        }
        path_pop(c, old);
    }
    v->scores = sc;
    return VG_CSAF_OK;
}

static enum vg_csaf_err read_status(struct pctx *c, const json_t *vj, struct vg_csaf_vuln *v)
{
    json_t *ps, *lists[PSTATUS_COUNT];
    TRY(member(c, vj, "product_status", JSON_OBJECT, 0, &ps));
    if (ps == NULL)
        return VG_CSAF_OK;
    size_t old = path_push(c, ".product_status");
    size_t total = 0;
    for (size_t k = 0; k < PSTATUS_COUNT; k++) {
        TRY(array_member(c, ps, PSTATUS_NAMES[k], 0, VG_CSAF_REFS_MAX, "product ids", &lists[k]));
        total += lists[k] ? json_array_size(lists[k]) : 0;
    }
    if (total > VG_CSAF_REFS_MAX)
        return fail(c, VG_CSAF_ERR_LIMIT, NULL, "more than %d product references in the document",
                    VG_CSAF_REFS_MAX);
    struct vg_csaf_status_ref *refs = arena_alloc(c->d, (total + 1) * sizeof *refs);
    uint32_t *tmp = arena_alloc(c->d, (total + 1) * sizeof *tmp);
    if (refs == NULL || tmp == NULL)
        return nomem(c);
    size_t n = 0;
    for (size_t k = 0; k < PSTATUS_COUNT; k++) {
        if (lists[k] == NULL)
            continue;
        TRY(read_refs(c, lists[k], PSTATUS_NAMES[k], tmp));
        for (size_t i = 0; i < json_array_size(lists[k]); i++) {
            refs[n].product = tmp[i];
            refs[n].status = (enum vg_csaf_pstatus)k;
            n++;
        }
    }
    v->status = refs;
    v->nstatus = n;
    path_pop(c, old);
    return VG_CSAF_OK;
}

static enum vg_csaf_err read_remediations(struct pctx *c, const json_t *vj, struct vg_csaf_vuln *v)
{
    struct vg_csaf_doc *d = c->d;
    json_t *arr, *r;
    size_t i;
    TRY(array_member(c, vj, "remediations", 0, VG_CSAF_REMEDIATIONS_MAX, "remediations", &arr));
    if (arr == NULL || json_array_size(arr) == 0)
        return VG_CSAF_OK;
    struct vg_csaf_remediation *rem = arena_alloc(d, json_array_size(arr) * sizeof *rem);
    if (rem == NULL)
        return nomem(c);
    json_array_foreach(arr, i, r) {
        size_t old = path_push(c, ".remediations[%zu]", i);
        if (!json_is_object(r))
            return fail(c, VG_CSAF_ERR_TYPE, NULL, "expected an object");
        struct vg_csaf_remediation *o = &rem[i];
        json_t *pids, *gids;
        TRY(id_member(c, r, "category", 1, &o->category));
        TRY(text_member(c, r, "details", 1, VG_CSAF_TEXT_MAX, 1, &o->details));
        TRY(text_member(c, r, "url", 0, VG_CSAF_NAME_MAX, 0, &o->url));
        TRY(array_member(c, r, "product_ids", 0, VG_CSAF_PRODUCTS_MAX, "product ids", &pids));
        TRY(array_member(c, r, "group_ids", 0, VG_CSAF_GROUPS_MAX, "group ids", &gids));
        size_t n = pids ? json_array_size(pids) : 0;
        size_t gi;
        json_t *g;
        /* Group members are counted as references too, so group_ids cannot
         * multiply the document's size past the cap. */
        json_array_foreach(gids, gi, g) {
            size_t o2 = path_push(c, ".group_ids[%zu]", gi);
            if (!json_is_string(g))
                return fail(c, VG_CSAF_ERR_TYPE, NULL, "expected a string");
            long k = group_find(d, json_string_value(g));
            if (k < 0)
                return fail(c, VG_CSAF_ERR_INVALID, NULL, "group id not defined in product_groups");
            n += d->groups[k].n;
            c->refs += d->groups[k].n;
            if (c->refs > VG_CSAF_REFS_MAX)
                return fail(c, VG_CSAF_ERR_LIMIT, NULL,
                            "more than %d product references in the document", VG_CSAF_REFS_MAX);
            path_pop(c, o2);
        }
        uint32_t *refs = arena_alloc(d, (n + 1) * sizeof *refs);
        if (refs == NULL)
            return nomem(c);
        size_t m = 0;
        if (pids) {
            TRY(read_refs(c, pids, "product_ids", refs));
            m = json_array_size(pids);
        }
        json_array_foreach(gids, gi, g) {
            const struct group_x *gx = &d->groups[group_find(d, json_string_value(g))];
            memcpy(refs + m, gx->products, gx->n * sizeof *refs);
            m += gx->n;
        }
        o->products = refs;
        o->nproducts = m;
        v->nremediations++;
        path_pop(c, old);
    }
    v->remediations = rem;
    return VG_CSAF_OK;
}

static enum vg_csaf_err read_vulns(struct pctx *c, const json_t *root)
{
    struct vg_csaf_doc *d = c->d;
    json_t *arr, *vj;
    size_t i;
    TRY(array_member(c, root, "vulnerabilities", 0, VG_CSAF_VULNS_MAX, "vulnerabilities", &arr));
    if (arr == NULL || json_array_size(arr) == 0)
        return VG_CSAF_OK;
    d->vulns = arena_alloc(d, json_array_size(arr) * sizeof *d->vulns);
    if (d->vulns == NULL)
        return nomem(c);
    json_array_foreach(arr, i, vj) {
        size_t old = path_push(c, ".vulnerabilities[%zu]", i);
        if (!json_is_object(vj))
            return fail(c, VG_CSAF_ERR_TYPE, NULL, "expected an object");
        struct vg_csaf_vuln *v = &d->vulns[i];
        memset(v, 0, sizeof *v);
        TRY(id_member(c, vj, "cve", 0, &v->cve));
        if (v->cve[0] && !cve_valid(v->cve))
            return fail(c, VG_CSAF_ERR_INVALID, "cve", "not a CVE id (CVE-YYYY-NNNN...)");
        json_t *cwe;
        v->cwe = "";
        TRY(member(c, vj, "cwe", JSON_OBJECT, 0, &cwe));
        if (cwe) {
            size_t o2 = path_push(c, ".cwe");
            TRY(id_member(c, cwe, "id", 1, &v->cwe));
            path_pop(c, o2);
        }
        TRY(read_scores(c, vj, v));
        TRY(read_status(c, vj, v));
        TRY(read_remediations(c, vj, v));
        d->info.nvulns++;
        path_pop(c, old);
    }
    return VG_CSAF_OK;
}

static enum vg_csaf_err read_document(struct pctx *c, const json_t *root)
{
    struct vg_csaf_doc *d = c->d;
    json_t *doc, *ver, *tracking;
    json_t *v = json_object_get(root, "document");
    if (v == NULL)
        return fail(c, VG_CSAF_ERR_NOT_CSAF, "document", "missing: not a CSAF document");
    TRY(member(c, root, "document", JSON_OBJECT, 1, &doc));
    size_t old = path_push(c, ".document");
    if (json_object_get(doc, "csaf_version") == NULL)
        return fail(c, VG_CSAF_ERR_NOT_CSAF, "csaf_version", "missing: not a CSAF document");
    TRY(member(c, doc, "csaf_version", JSON_STRING, 1, &ver));
    if (strcmp(json_string_value(ver), "2.0") != 0)
        return fail(c, VG_CSAF_ERR_NOT_CSAF, "csaf_version", "not \"2.0\" (only CSAF 2.0 is read)");
    TRY(text_member(c, doc, "title", 0, VG_CSAF_TITLE_MAX, 0, &d->info.title));
    TRY(member(c, doc, "tracking", JSON_OBJECT, 1, &tracking));
    path_push(c, ".tracking");
    TRY(id_member(c, tracking, "id", 1, &d->info.id));
    TRY(id_member(c, tracking, "version", 0, &d->info.version));
    TRY(id_member(c, tracking, "current_release_date", 0, &d->info.current_release_date));
    TRY(id_member(c, tracking, "initial_release_date", 0, &d->info.initial_release_date));
    d->info.current_release_ms = -1;
    const char *dates[2] = {d->info.current_release_date, d->info.initial_release_date};
    const char *keys[2] = {"current_release_date", "initial_release_date"};
    for (int k = 0; k < 2; k++) {
        int64_t ms;
        if (dates[k][0] && vg_time_parse_rfc3339(dates[k], strlen(dates[k]), &ms) != 0)
            return fail(c, VG_CSAF_ERR_INVALID, keys[k], "not an RFC 3339 date-time");
        if (k == 0 && dates[k][0])
            d->info.current_release_ms = ms;
    }
    path_pop(c, old);
    return VG_CSAF_OK;
}

enum vg_csaf_err vg_csaf_parse(const void *data, size_t len, struct vg_csaf_doc **out, char *err,
                               size_t err_size)
{
    struct pctx c;
    memset(&c, 0, sizeof c);
    c.err = err;
    c.err_size = err_size;
    c.path[0] = '$';
    c.plen = 1;
    if (err && err_size)
        err[0] = '\0';
    if (out == NULL)
        return fail(&c, VG_CSAF_ERR_INVALID, NULL, "no place for the result");
    *out = NULL;
    if (data == NULL && len > 0)
        return fail(&c, VG_CSAF_ERR_INVALID, NULL, "no input");
    if (len > VG_CSAF_INPUT_MAX)
        return fail(&c, VG_CSAF_ERR_TOO_LARGE, NULL, "input is larger than %u bytes",
                    VG_CSAF_INPUT_MAX);
    if (len == 0)
        return fail(&c, VG_CSAF_ERR_SYNTAX, NULL, "empty input");
    TRY(prescan(&c, data, len));

    json_error_t je;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return json_fail(&c, &je);
    enum vg_csaf_err rc = VG_CSAF_OK;
    struct vg_csaf_doc *d = calloc(1, sizeof *d);
    if (d == NULL) {
        json_decref(root);
        return fail(&c, VG_CSAF_ERR_NOMEM, NULL, "out of memory");
    }
    c.d = d;
    d->info.id = d->info.title = d->info.version = "";
    d->info.current_release_date = d->info.initial_release_date = "";
    d->info.current_release_ms = -1;

    json_t *tree = NULL;
    if (!json_is_object(root)) {
        rc = fail(&c, VG_CSAF_ERR_NOT_CSAF, NULL, "not a JSON object: not a CSAF document");
        goto out;
    }
    if ((rc = read_document(&c, root)) != VG_CSAF_OK)
        goto out;
    if ((rc = member(&c, root, "product_tree", JSON_OBJECT, 0, &tree)) != VG_CSAF_OK)
        goto out;
    if (tree) {
        size_t old = path_push(&c, ".product_tree");
        if ((rc = read_product_tree(&c, tree)) != VG_CSAF_OK)
            goto out;
        path_pop(&c, old);
    }
    if ((rc = index_products(&c)) != VG_CSAF_OK)
        goto out;
    if (tree) {
        size_t old = path_push(&c, ".product_tree");
        if ((rc = read_groups(&c, tree)) != VG_CSAF_OK)
            goto out;
        path_pop(&c, old);
    }
    if ((rc = read_vulns(&c, root)) != VG_CSAF_OK)
        goto out;
    d->info.products = d->products;
    d->info.nproducts = d->nproducts;
    d->info.vulns = d->vulns;
out:
    json_decref(root);
    if (rc != VG_CSAF_OK) {
        vg_csaf_free(d);
        return rc;
    }
    *out = d;
    return VG_CSAF_OK;
}

/* ---- matching ---- */

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && is_blank((unsigned char)(*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_blank((unsigned char)(*s)[*len - 1]))
        (*len)--;
}

int vg_csaf_device_init(struct vg_csaf_device *dev, const char *manufacturer, const char *model,
                        const char *firmware)
{
    memset(dev, 0, sizeof *dev);
    if (manufacturer == NULL || model == NULL)
        return -1;
    size_t ml = strlen(manufacturer), dl = strlen(model), fl = firmware ? strlen(firmware) : 0;
    if (ml > VG_CSAF_DEVICE_FIELD_MAX || dl > VG_CSAF_DEVICE_FIELD_MAX ||
        fl > VG_CSAF_DEVICE_FIELD_MAX)
        return -1;
    if (company_norm(manufacturer, ml, dev->mfr) == 0 || squash_len(dev->mfr) < 2)
        goto bad;
    size_t o = 0;
    for (const char *p = dev->mfr; *p; p++)
        if (*p != ' ')
            dev->mfr_squash[o++] = *p;
    dev->mfr_squash[o] = '\0';
    if (words_norm(model, dl, dev->model, 0) == 0 || squash_len(dev->model) < 2)
        goto bad;
    dev->model_skip = prefix_skip(dev->model, dev->mfr);
    const char *f = firmware ? firmware : "";
    trim(&f, &fl);
    memcpy(dev->fw, f, fl);
    dev->fw[fl] = '\0';
    /* The key compares firmware strings as people write them: case and
     * runs of blanks do not matter. */
    o = 0;
    for (size_t i = 0; i < fl; i++) {
        if (is_blank((unsigned char)f[i])) {
            if (o > 0 && dev->fw_key[o - 1] != ' ')
                dev->fw_key[o++] = ' ';
        } else {
            dev->fw_key[o++] = lower((unsigned char)f[i]);
        }
    }
    dev->fw_key[o] = '\0';
    return 0;
bad:
    memset(dev, 0, sizeof *dev);
    return -1;
}

static int key_equal(const char *s, size_t len, const char *key)
{
    trim(&s, &len);
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (is_blank((unsigned char)s[i])) {
            if (i > 0 && is_blank((unsigned char)s[i - 1]))
                continue;
            if (key[k++] != ' ')
                return 0;
        } else if (key[k++] != lower((unsigned char)s[i])) {
            return 0;
        }
    }
    return key[k] == '\0' && len > 0;
}

/* A token that can stand for a model or part number: 4..64 characters of
 * [A-Za-z0-9._-] with at least one letter and one digit ("MMT-1754"). */
static int model_token(const char *s, size_t len)
{
    if (len < 4 || len > 64)
        return 0;
    int letter = 0, digit = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!is_digit(ch) && !is_alpha(ch) && !strchr("._-", ch))
            return 0;
        letter |= is_alpha(ch);
        digit |= is_digit(ch);
    }
    return letter && digit;
}

static int model_has_token(const struct vg_csaf_device *dev, const char *s, size_t len)
{
    char w[64 + 3];
    if (!model_token(s, len))
        return 0;
    words_norm(s, len, w, 0);
    return has_words(dev->model, w);
}

/* What a free-text version name offers for exact comparison: its
 * '|'-separated alternatives, and — when the whole text is a plain list of
 * identifiers (digit-free parentheses like "(global)" aside) — each item.
 * 'fn' returns 1 to stop; each_alternative then returns 1. */
typedef int (*alt_fn)(const char *s, size_t len, const struct vg_csaf_device *dev);

static int each_alternative(const char *expr, alt_fn fn, const struct vg_csaf_device *dev)
{
    size_t len = strlen(expr);
    if (len > VG_VEXPR_TEXT_MAX)
        return 0;
    for (const char *p = expr;;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        const char *q = p;
        trim(&q, &n);
        if (n && fn(q, n, dev))
            return 1;
        if (!bar)
            break;
        p = bar + 1;
    }
    char buf[VG_VEXPR_TEXT_MAX + 1];
    memcpy(buf, expr, len + 1);
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == ')')
            return 0; /* unbalanced */
        if (buf[i] != '(')
            continue;
        size_t j = i + 1;
        int digit = 0;
        while (j < len && buf[j] != ')' && buf[j] != '(')
            digit |= is_digit((unsigned char)buf[j++]);
        if (j == len || buf[j] == '(' || digit)
            return 0; /* unbalanced, nested, or a condition with numbers */
        memset(buf + i, ' ', j - i + 1);
        i = j;
    }
    /* Every run between separators must be one identifier with a digit. */
    size_t nitems = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < len;) {
            if (is_blank((unsigned char)buf[i]) || strchr("|/,;", buf[i])) {
                i++;
                continue;
            }
            size_t st = i;
            while (i < len && !is_blank((unsigned char)buf[i]) && !strchr("|/,;", buf[i]))
                i++;
            size_t n = i - st;
            if ((n == 3 && strncasecmp(buf + st, "and", 3) == 0) ||
                (n == 2 && strncasecmp(buf + st, "or", 2) == 0))
                continue;
            if (pass == 0) {
                int digit = 0;
                if (n > 64)
                    return 0;
                for (size_t k = st; k < i; k++) {
                    unsigned char ch = (unsigned char)buf[k];
                    if (!is_digit(ch) && !is_alpha(ch) && !strchr("._-", ch))
                        return 0;
                    digit |= is_digit(ch);
                }
                if (!digit)
                    return 0;
                nitems++;
            } else if (fn(buf + st, n, dev)) {
                return 1;
            }
        }
        if (nitems == 0)
            return 0;
    }
    return 0;
}

static int alt_fw_equal(const char *s, size_t len, const struct vg_csaf_device *dev)
{
    return dev->fw_key[0] && key_equal(s, len, dev->fw_key);
}

static int alt_in_model(const char *s, size_t len, const struct vg_csaf_device *dev)
{
    return model_has_token(dev, s, len);
}

/* Does the device's model contain a model number from the version slot? */
static int slot_match(const struct vg_csaf_product *p, const struct vg_csaf_device *dev)
{
    if (!p->in_tree || !p->version[0])
        return 0;
    struct vg_vexpr e;
    vg_vexpr_parse(p->version, strlen(p->version), &e);
    if (e.kind == VG_VEXPR_MODEL)
        return model_has_token(dev, e.model, e.model_len);
    if (e.kind == VG_VEXPR_TEXT)
        return each_alternative(p->version, alt_in_model, dev);
    return 0;
}

static int name_pair(const char *pn, const char *dn)
{
    if (!pn[0] || !dn[0])
        return 0;
    return squash_equal(pn, dn) || has_words(pn, dn) || has_words(dn, pn);
}

static int names_match(const struct vg_csaf_doc *d, const struct prod_x *x,
                       const struct vg_csaf_device *dev)
{
    if (!x->words[0])
        return 0;
    const char *pf[2] = {x->words, x->skip ? x->words + x->skip : NULL};
    size_t vs = x->vendor != NO_VENDOR ? vendor_skip(&d->vendors[x->vendor], dev->model) : 0;
    const char *df[3] = {dev->model, dev->model_skip ? dev->model + dev->model_skip : NULL,
                         vs ? dev->model + vs : NULL};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            if (pf[i] && df[j] && name_pair(pf[i], df[j]))
                return 1;
    return 0;
}

static int vendor_match(const struct vendor_x *v, const struct vg_csaf_device *dev)
{
    if (v->words[0] && has_words(v->words, dev->mfr))
        return 1;
    const char *p = v->parts;
    for (size_t i = 0; i < v->nparts; i++, p += strlen(p) + 1)
        if (has_words(dev->mfr, p))
            return 1;
    /* "DarioHealth" is "Dario Health": glued names keep their generic words. */
    return v->words[0] && (squash_run(v->words, dev->mfr_squash) ||
                           squash_run(v->all_words, dev->mfr_squash));
}

/* Per-product state during one match. */
#define PS_MATCHED 0x01u
#define PS_SLOT 0x02u
#define PS_DONE 0x04u
#define PS_IN 0x08u
#define PS_UNK 0x10u
#define PS_AFF 0x20u  /* decided "affected" for the current vulnerability */
#define PS_REV 0x40u  /* left it undecided for the current vulnerability */

struct mctx {
    const struct vg_csaf_doc *d;
    const struct vg_csaf_device *dev;
    const struct vg_version *ver; /* NULL: firmware unknown or unreadable */
    uint8_t *st;
};

static enum vg_vmatch product_in(struct mctx *m, uint32_t pi)
{
    uint8_t *s = &m->st[pi];
    if (*s & PS_DONE)
        return *s & PS_IN ? VG_VMATCH_IN : *s & PS_UNK ? VG_VMATCH_UNKNOWN : VG_VMATCH_OUT;
    const struct vg_csaf_product *p = &m->d->products[pi];
    enum vg_vmatch r;
    if (!p->in_tree) {
        r = VG_VMATCH_UNKNOWN;
    } else if (!p->version[0]) {
        r = VG_VMATCH_IN; /* named without a version: every version */
    } else {
        struct vg_vexpr e;
        vg_vexpr_parse(p->version, strlen(p->version), &e);
        if (e.kind == VG_VEXPR_TEXT) {
            r = (*s & PS_SLOT) || each_alternative(p->version, alt_fw_equal, m->dev)
                    ? VG_VMATCH_IN
                    : VG_VMATCH_UNKNOWN;
        } else {
            r = vg_vexpr_match(&e, m->ver);
            if (e.kind == VG_VEXPR_MODEL && r != VG_VMATCH_OUT && !(*s & PS_SLOT))
                r = VG_VMATCH_UNKNOWN; /* right version, model number not seen */
        }
    }
    *s |= PS_DONE | (r == VG_VMATCH_IN ? PS_IN : r == VG_VMATCH_UNKNOWN ? PS_UNK : 0);
    return r;
}

/* One exact version ("12.1.3"), as first_/last_affected and first_fixed
 * need; 0 when the product's version is anything else. */
static int exact_version(const struct vg_csaf_product *p, struct vg_version *out)
{
    if (!p->in_tree || !p->version[0])
        return 0;
    struct vg_vexpr e;
    vg_vexpr_parse(p->version, strlen(p->version), &e);
    if (e.kind != VG_VEXPR_ALL_OF || e.n != 1 || e.c[0].op != VG_VOP_EQ)
        return 0;
    *out = e.c[0].v;
    return 1;
}

#define EVENTS_MAX 32

struct event {
    uint32_t product;
    enum vg_csaf_pstatus status;
};

/* first_affected / last_affected / first_fixed points as a timeline: the
 * latest point the device has reached decides. */
static enum vg_csaf_status timeline(struct mctx *m, const struct event *ev, size_t nev)
{
    if (m->ver == NULL)
        return VG_CSAF_UNKNOWN;
    int have_first_affected = 0;
    long best = -1;
    struct vg_version bv;
    memset(&bv, 0, sizeof bv);
    for (size_t i = 0; i < nev; i++) {
        struct vg_version pv;
        if (!exact_version(&m->d->products[ev[i].product], &pv))
            return VG_CSAF_UNKNOWN;
        if (ev[i].status == VG_CSAF_PS_FIRST_AFFECTED)
            have_first_affected = 1;
        int cmp = vg_version_compare(m->ver, &pv);
        if (cmp == VG_VERSION_INCOMPARABLE)
            return VG_CSAF_UNKNOWN;
        int reached = ev[i].status == VG_CSAF_PS_LAST_AFFECTED ? cmp > 0 : cmp >= 0;
        if (!reached)
            continue;
        if (best < 0) {
            best = (long)i;
            bv = pv;
            continue;
        }
        int c2 = vg_version_compare(&pv, &bv);
        if (c2 == VG_VERSION_INCOMPARABLE)
            return VG_CSAF_UNKNOWN;
        if (c2 == 0 && ev[i].status != ev[best].status) {
            /* A last_affected point acts just after its version. */
            if (ev[i].status == VG_CSAF_PS_LAST_AFFECTED)
                c2 = 1;
            else if (ev[best].status == VG_CSAF_PS_LAST_AFFECTED)
                c2 = -1;
            else
                return VG_CSAF_UNKNOWN; /* first_affected and first_fixed at one version */
        }
        if (c2 > 0) {
            best = (long)i;
            bv = pv;
        }
    }
    if (best < 0)
        return have_first_affected ? VG_CSAF_NOT_AFFECTED : VG_CSAF_AFFECTED;
    return ev[best].status == VG_CSAF_PS_FIRST_AFFECTED ? VG_CSAF_AFFECTED : VG_CSAF_NOT_AFFECTED;
}

/* One vulnerability's answer for the matched products; marks the deciding
 * products PS_AFF or PS_REV. VG_CSAF_NO_MATCH: it says nothing. */
static enum vg_csaf_status eval_vuln(struct mctx *m, const struct vg_csaf_vuln *v)
{
    int aff = 0, notaff = 0, unk = 0;
    struct event ev[EVENTS_MAX];
    size_t nev = 0;
    for (size_t i = 0; i < v->nstatus; i++) {
        uint32_t pi = v->status[i].product;
        enum vg_csaf_pstatus s = v->status[i].status;
        if (!(m->st[pi] & PS_MATCHED))
            continue;
        struct vg_version tmp;
        if ((s == VG_CSAF_PS_FIRST_AFFECTED || s == VG_CSAF_PS_LAST_AFFECTED ||
             s == VG_CSAF_PS_FIRST_FIXED) &&
            !(m->st[pi] & PS_SLOT) && exact_version(&m->d->products[pi], &tmp)) {
            if (nev == EVENTS_MAX) {
                unk = 1;
                m->st[pi] |= PS_REV;
            } else {
                ev[nev].product = pi;
                ev[nev].status = s;
                nev++;
            }
            continue;
        }
        enum vg_vmatch in = product_in(m, pi);
        if (in == VG_VMATCH_OUT)
            continue;
        if (in == VG_VMATCH_UNKNOWN || s == VG_CSAF_PS_UNDER_INVESTIGATION) {
            unk = 1;
            m->st[pi] |= PS_REV;
            continue;
        }
        switch (s) {
        case VG_CSAF_PS_KNOWN_AFFECTED:
        case VG_CSAF_PS_FIRST_AFFECTED:
        case VG_CSAF_PS_LAST_AFFECTED:
            aff = 1;
            m->st[pi] |= PS_AFF;
            break;
        case VG_CSAF_PS_FIXED:
        case VG_CSAF_PS_FIRST_FIXED:
        case VG_CSAF_PS_KNOWN_NOT_AFFECTED:
        case VG_CSAF_PS_RECOMMENDED:
            notaff = 1;
            break;
        case VG_CSAF_PS_UNDER_INVESTIGATION:
            break;
        }
    }
    if (aff)
        return VG_CSAF_AFFECTED;
    if (notaff)
        return VG_CSAF_NOT_AFFECTED;
    if (unk)
        return VG_CSAF_UNKNOWN;
    if (nev == 0)
        return VG_CSAF_NO_MATCH;
    enum vg_csaf_status r = timeline(m, ev, nev);
    if (r == VG_CSAF_AFFECTED || r == VG_CSAF_UNKNOWN)
        for (size_t i = 0; i < nev; i++)
            m->st[ev[i].product] |= r == VG_CSAF_AFFECTED ? PS_AFF : PS_REV;
    return r;
}

static void add_remediation(struct vg_csaf_match *out, const struct vg_csaf_remediation *r)
{
    for (size_t i = 0; i < out->nremediations; i++) {
        const struct vg_csaf_remediation *o = out->remediations[i];
        if (o == r ||
            (strcmp(o->category, r->category) == 0 && strcmp(o->details, r->details) == 0))
            return;
    }
    if (out->nremediations == VG_CSAF_MATCH_REMEDIATIONS_MAX) {
        out->remediations_truncated = 1;
        return;
    }
    out->remediations[out->nremediations++] = r;
}

static void record_hit(struct mctx *m, const struct vg_csaf_vuln *v, enum vg_csaf_status s,
                       struct vg_csaf_match *out)
{
    uint8_t mark = s == VG_CSAF_AFFECTED ? PS_AFF : PS_REV;
    struct vg_csaf_hit *h = &out->hits[out->nhits++];
    h->vuln = v;
    h->cve = v->cve;
    h->status = s;
    h->score = -1;
    h->vector = "";
    for (size_t i = 0; i < v->nscores; i++) {
        const struct vg_csaf_score *sc = &v->scores[i];
        for (size_t k = 0; k < sc->nproducts; k++) {
            if (m->st[sc->products[k]] & mark) {
                if (sc->base > h->score) {
                    h->score = sc->base;
                    h->vector = sc->vector;
                }
                break;
            }
        }
    }
    if (h->score < 0) {
        /* No score names the deciding products: the worst one stands. */
        h->score = v->max_score;
        h->vector = v->max_vector;
    }
    for (size_t i = 0; i < v->nremediations; i++) {
        const struct vg_csaf_remediation *r = &v->remediations[i];
        for (size_t k = 0; k < r->nproducts; k++) {
            if (m->st[r->products[k]] & mark) {
                add_remediation(out, r);
                break;
            }
        }
    }
    if (s == VG_CSAF_UNKNOWN && out->review == NULL) {
        for (size_t i = 0; i < v->nstatus; i++) {
            const struct vg_csaf_product *p = &m->d->products[v->status[i].product];
            if (m->st[v->status[i].product] & PS_REV) {
                out->review = p->in_tree && p->version[0] ? p->version
                              : p->name[0]                ? p->name
                                                          : p->full_name;
                break;
            }
        }
    }
}

void vg_csaf_match(const struct vg_csaf_doc *doc, const struct vg_csaf_device *dev,
                   struct vg_csaf_match *out)
{
    memset(out, 0, sizeof *out);
    out->status = VG_CSAF_NO_MATCH;
    out->max_score = -1;
    if (doc == NULL || dev == NULL || dev->mfr[0] == '\0')
        return;
    uint8_t st[VG_CSAF_PRODUCTS_MAX];
    uint8_t vm[VG_CSAF_PRODUCTS_MAX]; /* per vendor: 0 not yet, 1 no, 2 yes */
    memset(vm, 0, doc->nvendors);
    size_t nmatched = 0;
    for (size_t i = 0; i < doc->nproducts; i++) {
        const struct prod_x *x = &doc->px[i];
        st[i] = 0;
        int vok = 0;
        if (x->vendor != NO_VENDOR) {
            if (vm[x->vendor] == 0)
                vm[x->vendor] = vendor_match(&doc->vendors[x->vendor], dev) ? 2 : 1;
            vok = vm[x->vendor] == 2;
        }
        /* A brand inside the product's name ("Welch Allyn ..." by Baxter). */
        if (!vok && x->words[0] && has_words(x->words, dev->mfr))
            vok = 1;
        if (!vok)
            continue;
        int slot = slot_match(&doc->products[i], dev);
        if (!slot && !names_match(doc, x, dev))
            continue;
        st[i] = PS_MATCHED | (slot ? PS_SLOT : 0);
        nmatched++;
        if (out->nproducts < VG_CSAF_MATCH_PRODUCTS_MAX)
            out->products[out->nproducts++] = (uint32_t)i;
        else
            out->products_truncated = 1;
    }
    if (nmatched == 0)
        return;

    struct vg_version ver;
    int has_ver = dev->fw[0] && vg_version_parse(dev->fw, strlen(dev->fw), &ver) == 0;
    struct mctx m = {doc, dev, has_ver ? &ver : NULL, st};
    int any_aff = 0, any_unk = 0;
    for (size_t i = 0; i < doc->info.nvulns; i++) {
        const struct vg_csaf_vuln *v = &doc->vulns[i];
        enum vg_csaf_status s = eval_vuln(&m, v);
        if (s == VG_CSAF_AFFECTED || s == VG_CSAF_UNKNOWN) {
            record_hit(&m, v, s, out);
            any_aff |= s == VG_CSAF_AFFECTED;
            any_unk |= s == VG_CSAF_UNKNOWN;
        }
        for (size_t k = 0; k < v->nstatus; k++)
            st[v->status[k].product] &= (uint8_t)~(PS_AFF | PS_REV);
    }
    out->status = any_aff ? VG_CSAF_AFFECTED : any_unk ? VG_CSAF_UNKNOWN : VG_CSAF_NOT_AFFECTED;
    for (size_t i = 0; i < out->nhits; i++)
        if (out->hits[i].status == out->status && out->hits[i].score > out->max_score)
            out->max_score = out->hits[i].score;
}
