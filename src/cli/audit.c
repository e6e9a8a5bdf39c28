/* vigil audit — verify, list, report and export the audit trail. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>

#include "audit/audit.h"
#include "cli/cli.h"

static const char audit_help[] =
    "Usage:\n"
    "  vigil audit verify DIR [--from-checkpoint FILE] [--pubkey FILE]\n"
    "      Verifies DIR's trail offline (the server may be stopped): every record's\n"
    "      hash and link, and every signed checkpoint in the database and in\n"
    "      DIR/audit/checkpoints.log (or FILE: a copy kept elsewhere) against\n"
    "      DIR/keys/audit.pub (or --pubkey). Exit 0 if it verifies, 1 if not.\n"
    "  vigil audit verify [connection options]\n"
    "      Asks the running server to verify its trail.\n"
    "  vigil audit list [FILTERS] [--json] [connection options]\n"
    "  vigil audit report patient PATIENT [--format table|csv|json] [connection options]\n"
    "      Every disclosure of the patient's data (HIPAA accounting of access).\n"
    "  vigil audit export --format fhir|jsonl [FILTERS] [--out FILE] [connection options]\n"
    "      FHIR R4 AuditEvent Bundle, or one JSON record per line.\n"
    "\n"
    "FILTERS: --patient ID, --principal ID, --action NAME (a prefix ending in '.'\n"
    "matches a family, e.g. obs.), --outcome success|refused|denied|failure,\n"
    "--since TIME, --until TIME (RFC 3339 or epoch ms), --limit N (all pages are\n"
    "fetched up to N records; default 100 for list, everything for export).\n\n";

/* ---- verify ---- */

static int verify_local(const char *dir, const char *cp_file, const char *pub_file)
{
    char db_path[PATH_MAX], pk_path[PATH_MAX], default_cp[PATH_MAX], err[512];
    snprintf(db_path, sizeof db_path, "%s/vigil.db", dir);
    snprintf(pk_path, sizeof pk_path, "%s/keys/audit.pub", dir);
    snprintf(default_cp, sizeof default_cp, "%s/audit/checkpoints.log", dir);
    uint8_t pk[VG_AUDIT_PK_BYTES];
    if (vg_audit_pub_load(pub_file ? pub_file : pk_path, pk, err, sizeof err) != 0) {
        fprintf(stderr, "vigil audit verify: %s\n", err);
        return 1;
    }
    if (!cp_file && access(default_cp, R_OK) == 0)
        cp_file = default_cp;
    sqlite3 *db = NULL;
    /* Read-only and immutable to nothing else: verification must not
     * change what it checks. */
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        fprintf(stderr, "vigil audit verify: cannot open %s: %s\n", db_path,
                db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return 1;
    }
    sqlite3_busy_timeout(db, 10000);
    struct vg_audit_verify_result res;
    int rc = vg_audit_verify_db(db, pk, cp_file, &res);
    sqlite3_close(db);
    if (rc < 0) {
        fprintf(stderr, "vigil audit verify: %s\n", res.why);
        return 1;
    }
    if (res.ok) {
        char t[32] = "never";
        if (res.latest_cp_ts)
            vg_time_format(res.latest_cp_ts, t);
        printf("OK: %lld records, chain intact; %lld signed checkpoints verified"
               " (latest covers record %lld, signed %s)%s%s\n",
               (long long)res.records, (long long)res.checkpoints, (long long)res.latest_cp_seq, t,
               cp_file ? "; checked against " : "", cp_file ? cp_file : "");
        if (res.latest_cp_seq < res.last_seq)
            printf("note: records %lld..%lld are after the latest checkpoint (signed at the next"
                   " checkpoint)\n", (long long)res.latest_cp_seq + 1, (long long)res.last_seq);
        return 0;
    }
    printf("FAILED at record %lld: %s\n(%lld records verified before it)\n", (long long)res.bad_seq,
           res.why, (long long)res.records);
    return 1;
}

static int verify_remote(const struct vg_http_target *t)
{
    struct vg_http_response resp;
    if (vg_cli_call(t, "GET", "/api/v1/audit/verify", NULL, &resp, 0) != 0)
        return 1;
    json_t *r = json_loadb(resp.body, resp.body_len, 0, NULL);
    vg_http_response_free(&resp);
    int ok = json_is_true(json_object_get(r, "ok"));
    if (ok)
        printf("OK: %lld records, chain intact; %lld signed checkpoints verified (server-side)\n",
               (long long)json_integer_value(json_object_get(r, "records")),
               (long long)json_integer_value(json_object_get(r, "checkpoints")));
    else
        printf("FAILED at record %lld: %s\n", (long long)json_integer_value(json_object_get(r, "bad_seq")),
               json_string_value(json_object_get(r, "why")));
    json_decref(r);
    return ok ? 0 : 1;
}

/* ---- list, report, export ---- */

struct filters {
    const char *v[9]; /* in the order of filter_names */
};
static const char *const filter_names[] = {"--patient", "--principal", "--action", "--outcome",
                                           "--since",   "--until",     "--limit",  NULL};
static const char *const filter_params[] = {"patient", "principal", "action", "outcome",
                                            "since",   "until",     "limit"};

struct qbuf {
    char s[2048];
    size_t n;
};

static void qadd(struct qbuf *b, const char *k, const char *v)
{
    /* Percent-encode everything but unreserved characters. */
    int w = snprintf(b->s + b->n, sizeof b->s - b->n, "%s%s=", b->n ? "&" : "", k);
    if (w < 0 || (size_t)w >= sizeof b->s - b->n)
        return;
    b->n += (size_t)w;
    for (const unsigned char *p = (const unsigned char *)v; *p && b->n + 4 < sizeof b->s; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~')
            b->s[b->n++] = (char)*p;
        else
            b->n += (size_t)snprintf(b->s + b->n, 4, "%%%02X", *p);
    }
    b->s[b->n] = '\0';
}

/* Fetches pages until 'want' records (0 = all) or the end. Calls fn with
 * each page's body. */
typedef int (*page_fn)(void *ctx, json_t *page, const char *body, size_t len);

static int fetch_pages(const struct vg_http_target *t, const char *route, const struct qbuf *q,
                       long want, page_fn fn, void *ctx, int ndjson)
{
    char path[4096];
    snprintf(path, sizeof path, "%s?%s", route, q->s);
    long got = 0;
    for (;;) {
        struct vg_http_response resp;
        if (vg_cli_call(t, "GET", path, NULL, &resp, 0) != 0)
            return -1;
        json_t *page = ndjson ? NULL : json_loadb(resp.body, resp.body_len, 0, NULL);
        if (!ndjson && !page) {
            fprintf(stderr, "vigil: the server's answer is not JSON\n");
            vg_http_response_free(&resp);
            return -1;
        }
        long n = fn(ctx, page, resp.body, resp.body_len);
        got += n;
        const char *next = NULL;
        if (page) {
            next = json_string_value(json_object_get(page, "next"));
            if (!next) {
                json_t *link = json_array_get(json_object_get(page, "link"), 0);
                next = json_string_value(json_object_get(link, "url"));
            }
        }
        char next_copy[4096] = "";
        if (next)
            snprintf(next_copy, sizeof next_copy, "%s", next);
        json_decref(page);
        vg_http_response_free(&resp);
        if (!next_copy[0] || n == 0 || (want && got >= want))
            return 0;
        snprintf(path, sizeof path, "%s", next_copy);
    }
}

struct printer {
    const char *format; /* table, csv, json */
    json_t *all;        /* json: accumulated */
    int rows; /* printed so far (the header goes before the first) */
};

static void csv_field(const char *s, int last)
{
    /* RFC 4180: quote every field, double embedded quotes. */
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
    putchar(last ? '\n' : ',');
}

static int print_page(void *ctx, json_t *page, const char *body, size_t len)
{
    (void)body;
    (void)len;
    struct printer *p = ctx;
    json_t *records = json_object_get(page, "records");
    size_t i;
    json_t *r;
    if (!strcmp(p->format, "json")) {
        json_array_extend(p->all, records);
        return (int)json_array_size(records);
    }
    json_array_foreach(records, i, r)
    {
        const char *f[8] = {NULL};
        char seq[24];
        snprintf(seq, sizeof seq, "%lld", (long long)json_integer_value(json_object_get(r, "seq")));
        static const char *const keys[] = {"time", "actor", "action", "target", "outcome", "detail", "source"};
        f[0] = seq;
        for (int k = 0; k < 7; k++) {
            f[k + 1] = json_string_value(json_object_get(r, keys[k]));
            if (!f[k + 1])
                f[k + 1] = "";
        }
        if (!strcmp(p->format, "csv")) {
            if (!p->rows++)
                printf("seq,time,actor,action,target,outcome,detail,source\n");
            for (int k = 0; k < 8; k++)
                csv_field(f[k], k == 7);
        } else {
            if (!p->rows++)
                printf("%-7s %-24s %-22s %-18s %-20s %-8s %s\n", "SEQ", "TIME", "ACTOR", "ACTION",
                       "TARGET", "OUTCOME", "DETAIL");
            printf("%-7s %-24s %-22s %-18s %-20s %-8s %s\n", f[0], f[1], f[2], f[3], f[4], f[5], f[6]);
        }
    }
    return (int)json_array_size(records);
}

struct exporter {
    FILE *out;
    int fhir;
    json_t *entries;
};

static int export_page(void *ctx, json_t *page, const char *body, size_t len)
{
    struct exporter *e = ctx;
    if (e->fhir) {
        json_t *entries = json_object_get(page, "entry");
        json_array_extend(e->entries, entries);
        return (int)json_array_size(entries);
    }
    fwrite(body, 1, len, e->out);
    int n = 0;
    for (size_t i = 0; i < len; i++)
        n += body[i] == '\n';
    return n;
}

int vg_cli_audit(int argc, char **argv)
{
    struct vg_cli_conn c = {0};
    const char *pos[3] = {NULL};
    int npos = 0, json = 0;
    const char *cp_file = NULL, *pub_file = NULL, *format = NULL, *out_path = NULL;
    struct filters fl = {{NULL}};
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("%s%s", audit_help, vg_cli_conn_help);
            return 0;
        }
        int r = vg_cli_conn_option(&c, argc, argv, &i);
        if (r < 0)
            return 2;
        if (r)
            continue;
        const char **slot = !strcmp(argv[i], "--from-checkpoint") ? &cp_file
                            : !strcmp(argv[i], "--pubkey")        ? &pub_file
                            : !strcmp(argv[i], "--format")        ? &format
                            : !strcmp(argv[i], "--out")           ? &out_path
                                                                  : NULL;
        for (int k = 0; !slot && filter_names[k]; k++)
            if (!strcmp(argv[i], filter_names[k]))
                slot = &fl.v[k];
        if (!strcmp(argv[i], "--json")) {
            json = 1;
            continue;
        }
        if (slot) {
            if (i + 1 >= argc) {
                fprintf(stderr, "vigil audit: %s needs a value\n", argv[i]);
                return 2;
            }
            *slot = argv[++i];
            continue;
        }
        if (argv[i][0] == '-' || npos >= 3) {
            fprintf(stderr, "vigil audit: unexpected argument '%s'\n\n%s", argv[i], audit_help);
            return 2;
        }
        pos[npos++] = argv[i];
    }
    if (npos == 0) {
        fprintf(stderr, "%s%s", audit_help, vg_cli_conn_help);
        return 2;
    }
    const char *sub = pos[0];
    if (!strcmp(sub, "verify") && npos == 2)
        return verify_local(pos[1], cp_file, pub_file);

    struct vg_http_target t;
    struct qbuf q = {"", 0};
    long limit = 0;
    for (int k = 0; filter_names[k]; k++)
        if (fl.v[k] && strcmp(filter_names[k], "--limit"))
            qadd(&q, filter_params[k], fl.v[k]);
    if (fl.v[6]) {
        char *end;
        limit = strtol(fl.v[6], &end, 10);
        if (*end || limit < 1) {
            fprintf(stderr, "vigil audit: --limit must be a positive integer\n");
            return 2;
        }
    }
    int rc;
    if (!strcmp(sub, "verify") && npos == 1) {
        if (vg_cli_target(&c, &t) != 0)
            return 1;
        rc = verify_remote(&t);
    } else if (!strcmp(sub, "list") && npos == 1) {
        if (vg_cli_target(&c, &t) != 0)
            return 1;
        if (!limit)
            limit = 100;
        char l[24];
        snprintf(l, sizeof l, "%ld", limit < 1000 ? limit : 1000);
        qadd(&q, "limit", l);
        struct printer p = {json ? "json" : "table", json_array(), 0};
        rc = fetch_pages(&t, "/api/v1/audit", &q, limit, print_page, &p, 0);
        if (rc == 0 && json) {
            json_dumpf(p.all, stdout, JSON_INDENT(2));
            putchar('\n');
        }
        json_decref(p.all);
        rc = rc ? 1 : 0;
    } else if (!strcmp(sub, "report") && npos == 3 && !strcmp(pos[1], "patient")) {
        if (!vg_id_valid(pos[2])) {
            fprintf(stderr, "vigil audit: invalid patient id\n");
            return 2;
        }
        if (format && strcmp(format, "table") && strcmp(format, "csv") && strcmp(format, "json")) {
            fprintf(stderr, "vigil audit report: --format table, csv or json\n");
            return 2;
        }
        if (vg_cli_target(&c, &t) != 0)
            return 1;
        qadd(&q, "patient", pos[2]);
        qadd(&q, "disclosures", "1");
        qadd(&q, "limit", "1000");
        struct printer p = {format ? format : "table", json_array(), 0};
        rc = fetch_pages(&t, "/api/v1/audit", &q, limit, print_page, &p, 0);
        if (rc == 0 && !strcmp(p.format, "json")) {
            json_t *doc = json_pack("{s:s, s:O}", "patient", pos[2], "disclosures", p.all);
            json_dumpf(doc, stdout, JSON_INDENT(2));
            putchar('\n');
            json_decref(doc);
        } else if (rc == 0 && !strcmp(p.format, "table")) {
            printf("(%d disclosures of patient %s's data)\n", p.rows, pos[2]);
        }
        json_decref(p.all);
        rc = rc ? 1 : 0;
    } else if (!strcmp(sub, "export") && npos == 1) {
        if (!format || (strcmp(format, "fhir") && strcmp(format, "jsonl"))) {
            fprintf(stderr, "vigil audit export: --format fhir or --format jsonl is required\n");
            return 2;
        }
        if (vg_cli_target(&c, &t) != 0)
            return 1;
        qadd(&q, "format", format);
        qadd(&q, "limit", "10000");
        FILE *out = out_path ? fopen(out_path, "we") : stdout;
        if (!out) {
            fprintf(stderr, "vigil audit export: cannot write %s: %s\n", out_path, strerror(errno));
            return 1;
        }
        struct exporter e = {out, !strcmp(format, "fhir"), json_array()};
        rc = fetch_pages(&t, "/api/v1/audit/export", &q, limit, export_page, &e, !e.fhir);
        if (rc == 0 && e.fhir) {
            json_t *bundle = json_pack("{s:s, s:s, s:O}", "resourceType", "Bundle", "type",
                                       "collection", "entry", e.entries);
            json_dumpf(bundle, out, JSON_INDENT(2));
            fputc('\n', out);
            json_decref(bundle);
        }
        json_decref(e.entries);
        if (out != stdout && fclose(out) != 0)
            rc = -1;
        rc = rc ? 1 : 0;
    } else {
        fprintf(stderr, "%s%s", audit_help, vg_cli_conn_help);
        return 2;
    }
    sodium_memzero(t.token, sizeof t.token);
    return rc;
}
