#include "api/api.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>

#include "api/auditevent.h"
#include "api/body.h"
#include "api/fhir.h"
#include "audit/audit.h"
#include "auth/account.h"
#include "auth/policy.h"
#include "core/log.h"
#include "crypto/ca.h"
#include "crypto/crypto.h"
#include "net/tls.h"
#include "store/fleet.h"
#include "crypto/kek.h"
#include "store/keyring.h"

struct vg_api {
    struct event_base *base;
    SSL_CTX *tls;
    const struct vg_config *cfg;
    struct vg_store *st;
    struct vg_broker *broker;
    struct evhttp *http;
    char ca_cert[PATH_MAX], ca_key[PATH_MAX];
    char base_url[160];
    char *ca_pem; /* handed out with every enrollment */
    char audit_pub[PATH_MAX], checkpoint_log[PATH_MAX];
    char observer[256]; /* this gateway's name in exported audit events */
    struct vg_kek_source kek_src;
    int has_kek_src;
};

/* What one request carries through its handler. */
struct req {
    struct vg_api *api;
    struct evhttp_request *r;
    struct vg_principal who;   /* set by authenticate() */
    const char *token;         /* the bearer token as presented */
    char actor[VG_ID_MAX + 16];
    char source[64];
};

/* ---- responses ---- */

static void send_json(struct req *q, int status, const char *reason, json_t *body,
                      const char *content_type)
{
    struct evbuffer *out = evbuffer_new();
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text) {
        evbuffer_add(out, text, strlen(text));
        evbuffer_add(out, "\n", 1);
        sodium_memzero(text, strlen(text));
        free(text);
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(q->r);
    evhttp_add_header(h, "Content-Type", content_type);
    /* Responses may hold PHI or a private key: never cache them. */
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_send_reply(q->r, status, reason, out);
    evbuffer_free(out);
}

static void ok(struct req *q, int status, json_t *body)
{
    send_json(q, status, status == 201 ? "Created" : "OK", body, "application/json");
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

/* RFC 9457 problem details. 'detail' must not carry PHI or secrets. */
static void problem(struct req *q, int status, const char *title, const char *detail)
{
    json_t *p = json_pack("{s:s, s:s, s:i}", "type", "about:blank", "title", title, "status",
                          status);
    if (detail)
        json_object_set_new(p, "detail", json_string(detail));
    if (status == 401)
        evhttp_add_header(evhttp_request_get_output_headers(q->r), "WWW-Authenticate",
                          "Bearer realm=\"vigil\"");
    send_json(q, status, reason_phrase(status), p, "application/problem+json");
}

/* ---- audit ---- */

static int audit_now(struct req *q, const char *action, const char *target, const char *outcome,
                     const char *detail)
{
    struct vg_audit_event ev = {0, q->actor, action, target, outcome, detail, q->source};
    return vg_audit_append(q->api->st, &ev);
}

/* An audit record in a transaction of its own (refusals, reads). */
static int audit_alone(struct req *q, const char *action, const char *target,
                       const char *outcome, const char *detail)
{
    if (vg_store_begin(q->api->st) != VG_STORE_OK)
        return -1;
    if (audit_now(q, action, target, outcome, detail) != VG_STORE_OK ||
        vg_store_commit(q->api->st) != VG_STORE_OK) {
        vg_store_rollback(q->api->st);
        return -1;
    }
    return 0;
}

/* ---- request helpers ---- */

/* Parses the JSON body: an object with exactly the members listed. */
static json_t *read_body(struct req *q, const char *const *allowed)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(q->r);
    size_t len = evbuffer_get_length(in);
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(q->r), "Content-Type");
    if (len <= (size_t)q->api->cfg->max_http_body_bytes &&
        (!ct || strncmp(ct, "application/json", 16) != 0)) {
        problem(q, 415, "Body must be application/json", NULL);
        return NULL;
    }
    json_t *body;
    char title[64];
    enum vg_body_rc rc = vg_body_parse((const char *)evbuffer_pullup(in, (ev_ssize_t)len), len,
                                       (size_t)q->api->cfg->max_http_body_bytes, allowed, &body,
                                       title, sizeof title);
    if (rc != VG_BODY_OK) {
        problem(q, 400, title,
                rc == VG_BODY_UNKNOWN_MEMBER ? "the body has a member this route does not take"
                : rc == VG_BODY_TOO_LARGE    ? "the body exceeds max_http_body_bytes"
                                             : NULL);
        return NULL;
    }
    return body;
}

/* A required string member that is a valid id. */
static const char *body_id(struct req *q, json_t *body, const char *name)
{
    const char *v = json_string_value(json_object_get(body, name));
    if (!v || !vg_id_valid(v)) {
        char d[160];
        snprintf(d, sizeof d,
                 "'%s' must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit",
                 name);
        problem(q, 400, "Invalid identifier", d);
        return NULL;
    }
    return v;
}

static int authenticate(struct req *q)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(q->r), "Authorization");
    const char *why = NULL;
    if (!h)
        why = "no Authorization header";
    else if (strncmp(h, "Bearer ", 7) != 0 || strlen(h + 7) > 256)
        why = "Authorization is not a bearer token";
    if (!why) {
        int rc = vg_account_authenticate(q->api->st, h + 7, vg_now_ms(), &q->who);
        if (rc == VG_STORE_OK) {
            q->token = h + 7;
            snprintf(q->actor, sizeof q->actor, "user:%s", q->who.id);
            return 0;
        }
        why = rc == VG_STORE_NOT_FOUND ? "unknown, expired, idle-timed-out or revoked token"
                                       : "token store unavailable";
    }
    vg_log_warn("api: %s refused from %s: %s",
                evhttp_uri_get_path(evhttp_request_get_evhttp_uri(q->r)), q->source, why);
    (void)audit_alone(q, "api.auth", "", "refused", why);
    problem(q, 401, "Authentication required", "send a valid bearer token (log in again if your session ended)");
    return -1;
}

/* The one decision point (auth/policy.h) for this request. Denials are
 * answered (403) and audited; allowed decisions on patient data are
 * audited by the route with what it disclosed. */
static int authorize(struct req *q, enum vg_action a, const char *patient, const char *device,
                     struct vg_decision *d)
{
    struct vg_resource res = {patient, device};
    vg_policy_decide(q->api->st, &q->who, a, &res, vg_now_ms(), d);
    if (d->allow)
        return 0;
    char target[VG_ID_MAX + 16] = "";
    if (patient)
        snprintf(target, sizeof target, "patient:%s", patient);
    else if (device)
        snprintf(target, sizeof target, "device:%s", device);
    (void)audit_alone(q, vg_action_name(a), target, "denied", d->reason);
    vg_log_warn("api: %s denied %s: %s", q->who.id, vg_action_name(a), d->reason);
    problem(q, 403, "Forbidden", d->reason);
    return -1;
}

/* ---- routes ---- */

static void post_patient(struct req *q)
{
    static const char *const allowed[] = {"id", NULL};
    struct vg_decision d;
    if (authorize(q, VG_ACT_PATIENT_CREATE, NULL, NULL, &d) != 0)
        return;
    json_t *body = read_body(q, allowed);
    if (!body)
        return;
    const char *id = body_id(q, body, "id");
    if (!id) {
        json_decref(body);
        return;
    }
    char target[VG_ID_MAX + 16];
    snprintf(target, sizeof target, "patient:%s", id);
    struct vg_store *st = q->api->st;
    int rc = vg_store_begin(st);
    if (!rc)
        rc = vg_store_patient_add(st, id, vg_now_ms());
    if (!rc)
        rc = audit_now(q, "patient.create", target, "success", "");
    if (!rc)
        rc = vg_store_commit(st);
    if (rc) {
        vg_store_rollback(st);
        /* A refused change is recorded too: who tried what. */
        (void)audit_alone(q, "patient.create", target, "failure",
                          rc == VG_STORE_EXISTS ? "already exists" : "store unavailable");
        if (rc == VG_STORE_EXISTS)
            problem(q, 409, "Patient already exists", NULL);
        else
            problem(q, 503, "Store unavailable", NULL);
    } else {
        vg_log_info("api: %s created patient %s", q->who.id, id);
        ok(q, 201, json_pack("{s:s}", "id", id));
    }
    json_decref(body);
}

static void post_device(struct req *q)
{
    static const char *const allowed[] = {"id", NULL};
    struct vg_decision d;
    if (authorize(q, VG_ACT_DEVICE_ENROLL, NULL, NULL, &d) != 0)
        return;
    json_t *body = read_body(q, allowed);
    if (!body)
        return;
    const char *id = body_id(q, body, "id");
    if (!id) {
        json_decref(body);
        return;
    }
    struct vg_device_info dev;
    struct vg_store *st = q->api->st;
    if (vg_store_device_get(st, id, &dev) == VG_STORE_OK) {
        char t[VG_ID_MAX + 16];
        snprintf(t, sizeof t, "device:%s", id);
        (void)audit_alone(q, "device.enroll", t, "failure", "already enrolled");
        problem(q, 409, "Device already enrolled", NULL);
        json_decref(body);
        return;
    }
    struct vg_ca_issued iss = {0};
    char err[256];
    if (vg_ca_issue_client(q->api->ca_cert, q->api->ca_key, id, q->api->cfg->device_cert_days,
                           &iss, err, sizeof err) != 0) {
        vg_log_error("api: cannot issue a certificate for %s: %s", id, err);
        problem(q, 500, "Cannot issue device certificate", NULL);
        json_decref(body);
        return;
    }
    memset(&dev, 0, sizeof dev);
    vg_strlcpy(dev.id, id, sizeof dev.id);
    vg_strlcpy(dev.status, "active", sizeof dev.status);
    vg_strlcpy(dev.cert_serial, iss.serial_hex, sizeof dev.cert_serial);
    vg_strlcpy(dev.cert_fingerprint, iss.fingerprint_hex, sizeof dev.cert_fingerprint);
    dev.enrolled_ms = vg_now_ms();
    dev.cert_not_after_ms = iss.not_after * 1000;
    char target[VG_ID_MAX + 16], detail[128];
    snprintf(target, sizeof target, "device:%s", id);
    snprintf(detail, sizeof detail, "certificate serial %s", iss.serial_hex);
    int rc = vg_store_begin(st);
    if (!rc)
        rc = vg_store_device_add(st, &dev);
    /* vg_ca_issue_client makes a P-256 key (crypto/ca.h); the inventory
     * records it for the fleet audit's key-strength check. */
    if (!rc)
        rc = vg_fleet_device_key(st, id, "EC P-256", 256, dev.enrolled_ms);
    if (!rc)
        rc = audit_now(q, "device.enroll", target, "success", detail);
    if (!rc)
        rc = vg_store_commit(st);
    if (rc) {
        vg_store_rollback(st);
        problem(q, rc == VG_STORE_EXISTS ? 409 : 503,
                rc == VG_STORE_EXISTS ? "Device already enrolled" : "Store unavailable", NULL);
    } else {
        char exp[32];
        vg_time_format(dev.cert_not_after_ms, exp);
        vg_log_info("api: %s enrolled device %s (serial %s)", q->who.id, id, iss.serial_hex);
        /* The private key goes to the caller once and is never stored. */
        ok(q, 201,
           json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "certificate", iss.cert_pem,
                     "private_key", iss.key_pem, "ca", q->api->ca_pem, "serial", iss.serial_hex, "expires", exp));
    }
    vg_ca_issued_free(&iss);
    json_decref(body);
}

static void put_assignment(struct req *q, const char *device)
{
    static const char *const allowed[] = {"patient", NULL};
    if (!vg_id_valid(device)) {
        problem(q, 404, "No such device", NULL);
        return;
    }
    struct vg_decision d;
    if (authorize(q, VG_ACT_DEVICE_ASSIGN, NULL, device, &d) != 0)
        return;
    json_t *body = read_body(q, allowed);
    if (!body)
        return;
    const char *patient = body_id(q, body, "patient");
    if (!patient) {
        json_decref(body);
        return;
    }
    struct vg_store *st = q->api->st;
    char target[VG_ID_MAX + 16], detail[VG_ID_MAX + 32];
    snprintf(target, sizeof target, "device:%s", device);
    snprintf(detail, sizeof detail, "assigned to patient:%s", patient);
    int rc = vg_store_begin(st);
    if (!rc)
        rc = vg_store_device_assign(st, device, patient, vg_now_ms());
    if (!rc)
        rc = audit_now(q, "device.assign", target, "success", detail);
    if (!rc)
        rc = vg_store_commit(st);
    if (rc) {
        char why[256];
        vg_strlcpy(why, vg_store_errmsg(st), sizeof why);
        vg_store_rollback(st);
        (void)audit_alone(q, "device.assign", target, "failure",
                          rc == VG_STORE_NOT_FOUND ? why : "store unavailable");
        if (rc == VG_STORE_NOT_FOUND)
            problem(q, 404, strstr(why, "patient") ? "No such patient" : "No such device", NULL);
        else
            problem(q, 503, "Store unavailable", NULL);
        json_decref(body);
        return;
    }
    vg_log_info("api: %s assigned device %s to patient %s", q->who.id, device, patient);
    ok(q, 200, json_pack("{s:s, s:s}", "device", device, "patient", patient));
    json_decref(body);
}

/* ---- FHIR Observation search ---- */

/* FHIR date search (R4 search, "date"): a value of YYYY, YYYY-MM,
 * YYYY-MM-DD (UTC) or a full dateTime stands for the range it covers;
 * prefixes eq (default), gt, ge, lt, le narrow [from, to). Returns 0 or -1. */
static int apply_date_param(const char *v, int64_t *from, int64_t *to)
{
    char prefix[3] = "eq";
    if (strlen(v) > 2 && v[0] >= 'a' && v[0] <= 'z' && v[1] >= 'a' && v[1] <= 'z') {
        memcpy(prefix, v, 2);
        v += 2;
    }
    int64_t start, end;
    size_t len = strlen(v);
    int y, m = 1, d = 1;
    char buf[40];
    if (len == 4 || len == 7 || len == 10) {
        char *e;
        y = (int)strtol(v, &e, 10);
        if (e != v + 4 || (len >= 7 && (v[4] != '-' || (m = (int)strtol(v + 5, &e, 10), e != v + 7))) ||
            (len == 10 && (v[7] != '-' || (d = (int)strtol(v + 8, &e, 10), e != v + 10))))
            return -1;
        snprintf(buf, sizeof buf, "%04d-%02d-%02dT00:00:00Z", y, m, d);
        if (vg_time_parse_rfc3339(buf, strlen(buf), &start) != 0)
            return -1;
        if (len == 4)
            snprintf(buf, sizeof buf, "%04d-01-01T00:00:00Z", y + 1);
        else if (len == 7)
            snprintf(buf, sizeof buf, "%04d-%02d-01T00:00:00Z", m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1);
        if (len == 10)
            end = start + 86400000;
        else if (vg_time_parse_rfc3339(buf, strlen(buf), &end) != 0)
            return -1;
    } else {
        if (vg_time_parse_rfc3339(v, len, &start) != 0)
            return -1;
        end = start + 1; /* precise to the millisecond here */
    }
    if (!strcmp(prefix, "eq")) {
        if (start > *from) *from = start;
        if (end < *to) *to = end;
    } else if (!strcmp(prefix, "ge") || !strcmp(prefix, "gt")) {
        int64_t b = !strcmp(prefix, "ge") ? start : end;
        if (b > *from) *from = b;
    } else if (!strcmp(prefix, "lt") || !strcmp(prefix, "le")) {
        int64_t b = !strcmp(prefix, "lt") ? start : end;
        if (b < *to) *to = b;
    } else {
        return -1;
    }
    return 0;
}

/* Renders entries straight into the response as they come: a day of 1 Hz
 * data is 86,400 entries, too many to build as a tree first. */
struct page {
    struct evbuffer *out;
    const char *base_url;
    size_t count;        /* page size */
    size_t written;
    int has_next;
    int64_t last_ms;
    char last_id[VG_OBS_ID_MAX];
};

static int page_add(void *ctx, const struct vg_obs *o)
{
    struct page *pg = ctx;
    if (pg->written == pg->count) {
        pg->has_next = 1; /* one more than the page: there is a next page */
        return 1;
    }
    vg_fhir_observation_write(pg->out, pg->base_url, o, pg->written == 0);
    pg->written++;
    pg->last_ms = o->reading.time_ms;
    vg_strlcpy(pg->last_id, o->id, sizeof pg->last_id);
    return 0;
}

#define OBS_PAGE_MAX 100000

static void get_observations(struct req *q, const struct evhttp_uri *uri)
{
    struct evkeyvalq params;
    const char *query = evhttp_uri_get_query(uri);
    if (evhttp_parse_query_str(query ? query : "", &params) != 0) {
        problem(q, 400, "Malformed query string", NULL);
        return;
    }
    const char *patient = NULL, *code = NULL;
    long count = 100;
    int bad = 0, ascending = 0;
    char bad_why[160] = "";
    struct vg_obs_query oq;
    memset(&oq, 0, sizeof oq);
    int64_t from = 0, to = INT64_MAX;
    for (struct evkeyval *kv = params.tqh_first; kv && !bad; kv = kv->next.tqe_next) {
        char *end;
        if (!strcmp(kv->key, "patient") || !strcmp(kv->key, "subject")) {
            patient = kv->value;
            if (!strncmp(patient, "Patient/", 8))
                patient += 8;
        } else if (!strcmp(kv->key, "code")) {
            const char *bar = strchr(kv->value, '|');
            if (bar && strncmp(kv->value, "http://loinc.org|", 17) != 0) {
                bad = 1;
                snprintf(bad_why, sizeof bad_why, "only LOINC codes (http://loinc.org|CODE) are stored");
            }
            code = bar ? bar + 1 : kv->value;
        } else if (!strcmp(kv->key, "date")) {
            if (apply_date_param(kv->value, &from, &to) != 0) {
                bad = 1;
                snprintf(bad_why, sizeof bad_why,
                         "date: [eq|gt|ge|lt|le]YYYY[-MM[-DD]] or an RFC 3339 date-time");
            }
        } else if (!strcmp(kv->key, "_count")) {
            count = strtol(kv->value, &end, 10);
            if (*end || count < 1 || count > OBS_PAGE_MAX) {
                bad = 1;
                snprintf(bad_why, sizeof bad_why, "_count must be an integer from 1 to %d", OBS_PAGE_MAX);
            }
        } else if (!strcmp(kv->key, "_sort")) {
            if (!strcmp(kv->value, "date"))
                ascending = 1;
            else if (strcmp(kv->value, "-date")) {
                bad = 1;
                snprintf(bad_why, sizeof bad_why, "_sort is date or -date");
            }
        } else if (!strcmp(kv->key, "_cursor")) {
            /* Our own paging token: "<effective ms>.<reading id>". */
            long long ms = strtoll(kv->value, &end, 10);
            if (*end != '.' || ms < 0 || strlen(end + 1) != 32 || strspn(end + 1, "0123456789abcdef") != 32) {
                bad = 1;
                snprintf(bad_why, sizeof bad_why, "_cursor is not one this server made");
            } else {
                oq.cursor_ms = ms;
                vg_strlcpy(oq.cursor_id, end + 1, sizeof oq.cursor_id);
            }
        } else {
            bad = 1;
            snprintf(bad_why, sizeof bad_why, "unsupported search parameter '%.32s'", kv->key);
        }
    }
    if (!bad && (!patient || !vg_id_valid(patient))) {
        bad = 1;
        snprintf(bad_why, sizeof bad_why, "the 'patient' parameter with a valid patient id is required");
    }
    if (bad) {
        evhttp_clear_headers(&params);
        problem(q, 400, "Invalid search", bad_why);
        return;
    }
    char target[VG_ID_MAX + 16];
    snprintf(target, sizeof target, "patient:%s", patient);
    struct vg_decision dec;
    if (authorize(q, VG_ACT_OBS_READ, patient, NULL, &dec) != 0) {
        evhttp_clear_headers(&params);
        return;
    }
    if (vg_store_patient_exists(q->api->st, patient) != VG_STORE_OK) {
        (void)audit_alone(q, "obs.read", target, "failure", "no such patient");
        evhttp_clear_headers(&params);
        problem(q, 404, "No such patient", NULL);
        return;
    }
    if (vg_store_patient_erased(q->api->st, patient) == 1) {
        (void)audit_alone(q, "obs.read", target, "failure", "patient erased");
        evhttp_clear_headers(&params);
        problem(q, 410, "Patient erased", "this patient's readings were crypto-shredded and cannot be read");
        return;
    }
    oq.patient = patient;
    oq.code = code;
    oq.limit = (size_t)count + 1;
    oq.from_ms = from;
    oq.to_ms = to == INT64_MAX ? 0 : to;
    oq.ascending = ascending;
    struct page pg = {evbuffer_new(), q->api->base_url, (size_t)count, 0, 0, 0, ""};
    evbuffer_add_printf(pg.out, "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"entry\":[");
    int n = to <= from ? 0 : vg_store_obs_query(q->api->st, &oq, page_add, &pg);
    if (n < 0) {
        evbuffer_free(pg.out); /* its bytes never leave the process */
        const char *why = n == VG_STORE_INTEGRITY ? "a stored reading failed its integrity check"
                                                  : "store unavailable";
        vg_log_error("api: reading observations of %s failed: %s", patient, vg_store_errmsg(q->api->st));
        (void)audit_alone(q, "obs.read", target, "failure", why);
        evhttp_clear_headers(&params);
        problem(q, n == VG_STORE_INTEGRITY ? 500 : 503,
                n == VG_STORE_INTEGRITY ? "Integrity check failed" : "Store unavailable", why);
        return;
    }
    char detail[200], detail_bg[700];
    snprintf(detail, sizeof detail, "FHIR Observation search%s%s%s: %zu results%s, roles %s, basis %s",
             code ? " code=" : "", code ? code : "", from || to != INT64_MAX ? " with a date range" : "",
             pg.written, pg.has_next ? " (more pages)" : "", q->who.roles, dec.basis);
    if (dec.breakglass_reason[0])
        snprintf(detail_bg, sizeof detail_bg, "%s, break-glass reason: %s", detail, dec.breakglass_reason);
    /* Audit before disclosure: no record, no data (invariant 4). A
     * break-glass read carries the grant's reason. */
    if (audit_alone(q, dec.breakglass_reason[0] ? "obs.breakglass" : "obs.read", target, "success",
                    dec.breakglass_reason[0] ? detail_bg : detail) != 0) {
        evbuffer_free(pg.out);
        evhttp_clear_headers(&params);
        problem(q, 503, "Audit trail unavailable", "patient data is not served without an audit record");
        return;
    }
    /* Links: self, and next (the same search after this page's last
     * reading). 'total' only when this page is the whole result. */
    evbuffer_add_printf(pg.out, "],\"link\":[{\"relation\":\"self\",\"url\":");
    char url[2048];
    snprintf(url, sizeof url, "%s/fhir/Observation%s%.1900s", q->api->base_url, query ? "?" : "",
             query ? query : "");
    vg_fhir_json_string(pg.out, url);
    evbuffer_add(pg.out, "}", 1);
    if (pg.has_next) {
        struct evbuffer *nb = evbuffer_new();
        evbuffer_add_printf(nb, "%s/fhir/Observation?", q->api->base_url);
        for (struct evkeyval *kv = params.tqh_first; kv; kv = kv->next.tqe_next) {
            if (!strcmp(kv->key, "_cursor"))
                continue;
            char *enc = evhttp_encode_uri(kv->value);
            evbuffer_add_printf(nb, "%s=%s&", kv->key, enc ? enc : "");
            free(enc);
        }
        evbuffer_add_printf(nb, "_cursor=%lld.%s", (long long)pg.last_ms, pg.last_id);
        evbuffer_add(nb, "", 1);
        evbuffer_add_printf(pg.out, ",{\"relation\":\"next\",\"url\":");
        vg_fhir_json_string(pg.out, (const char *)evbuffer_pullup(nb, -1));
        evbuffer_add(pg.out, "}", 1);
        evbuffer_free(nb);
    }
    evbuffer_add(pg.out, "]", 1);
    if (!pg.has_next && !oq.cursor_id[0])
        evbuffer_add_printf(pg.out, ",\"total\":%zu", pg.written);
    evbuffer_add(pg.out, "}\n", 2);
    evhttp_clear_headers(&params);
    struct evkeyvalq *h = evhttp_request_get_output_headers(q->r);
    evhttp_add_header(h, "Content-Type", "application/fhir+json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_send_reply(q->r, 200, "OK", pg.out);
    evbuffer_free(pg.out);
}

/* ---- the audit trail ---- */

static int require_audit_reader(struct req *q)
{
    struct vg_decision d;
    return authorize(q, VG_ACT_AUDIT_READ, NULL, NULL, &d);
}

struct audit_params {
    struct vg_audit_filter f;
    const char *format;
    char why[128];
};

static int parse_time_param(const char *v, int64_t *out)
{
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*v && !*end && n >= 0) {
        *out = n;
        return 0;
    }
    return vg_time_parse_rfc3339(v, strlen(v), out);
}

/* Parses the audit filters; returns -1 with p->why on a bad one. The
 * query's values stay owned by 'params'. */
static int parse_audit_params(struct evkeyvalq *params, struct audit_params *p, size_t max_limit)
{
    memset(p, 0, sizeof *p);
    p->f.limit = 100;
    for (struct evkeyval *kv = params->tqh_first; kv; kv = kv->next.tqe_next) {
        const char *k = kv->key, *v = kv->value;
        char *end;
        if (!strcmp(k, "patient")) {
            if (!vg_id_valid(v))
                goto bad;
            p->f.patient = v;
        } else if (!strcmp(k, "principal")) {
            if (strlen(v) > VG_ID_MAX + 16 || !*v)
                goto bad;
            p->f.principal = v;
        } else if (!strcmp(k, "action")) {
            if (strlen(v) > 64 || !*v)
                goto bad;
            p->f.action = v;
        } else if (!strcmp(k, "outcome")) {
            if (strcmp(v, "success") && strcmp(v, "refused") && strcmp(v, "denied") &&
                strcmp(v, "failure"))
                goto bad;
            p->f.outcome = v;
        } else if (!strcmp(k, "since")) {
            if (parse_time_param(v, &p->f.since_ms) != 0)
                goto bad;
        } else if (!strcmp(k, "until")) {
            if (parse_time_param(v, &p->f.until_ms) != 0)
                goto bad;
        } else if (!strcmp(k, "after")) {
            long long n = strtoll(v, &end, 10);
            if (*end || n < 0)
                goto bad;
            p->f.after_seq = n;
        } else if (!strcmp(k, "limit")) {
            long n = strtol(v, &end, 10);
            if (*end || n < 1 || (size_t)n > max_limit)
                goto bad;
            p->f.limit = (size_t)n;
        } else if (!strcmp(k, "disclosures")) {
            p->f.disclosures_only = !strcmp(v, "1") || !strcmp(v, "true");
        } else if (!strcmp(k, "format")) {
            if (strcmp(v, "fhir") && strcmp(v, "jsonl"))
                goto bad;
            p->format = v;
        } else {
            snprintf(p->why, sizeof p->why, "unsupported parameter");
            return -1;
        }
        continue;
    bad:
        snprintf(p->why, sizeof p->why, "invalid value for '%.32s'", k);
        return -1;
    }
    return 0;
}

static json_t *record_json(const struct vg_audit_record *r)
{
    char t[32];
    vg_time_format(r->ts_ms, t);
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "seq", (json_int_t)r->seq, "time",
                     t, "actor", r->actor, "action", r->action, "target", r->target, "outcome",
                     r->outcome, "detail", r->detail, "source", r->source);
}

struct audit_collect {
    json_t *arr;
    int64_t last_seq;
    int fhir;
    const char *observer;
};

static int collect_record(void *ctx, const struct vg_audit_record *r)
{
    struct audit_collect *c = ctx;
    json_array_append_new(c->arr, c->fhir ? vg_fhir_audit_event(r, c->observer) : record_json(r));
    c->last_seq = r->seq;
    return 0;
}

/* The URL of the next page: the same query with after= the last seq. */
static char *next_url(const char *path, struct evkeyvalq *params, int64_t last_seq)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "%s?", path);
    for (struct evkeyval *kv = params->tqh_first; kv; kv = kv->next.tqe_next) {
        if (!strcmp(kv->key, "after"))
            continue;
        char *enc = evhttp_encode_uri(kv->value);
        evbuffer_add_printf(b, "%s=%s&", kv->key, enc ? enc : "");
        free(enc);
    }
    evbuffer_add_printf(b, "after=%lld", (long long)last_seq);
    size_t len = evbuffer_get_length(b);
    char *out = malloc(len + 1);
    if (out) {
        evbuffer_remove(b, out, len);
        out[len] = '\0';
    }
    evbuffer_free(b);
    return out;
}

static void get_audit(struct req *q, const struct evhttp_uri *uri, int export)
{
    if (require_audit_reader(q) != 0)
        return;
    struct evkeyvalq params;
    const char *query = evhttp_uri_get_query(uri);
    if (evhttp_parse_query_str(query ? query : "", &params) != 0) {
        problem(q, 400, "Malformed query string", NULL);
        return;
    }
    struct audit_params p;
    if (parse_audit_params(&params, &p, export ? 10000 : 1000) != 0 || (export && !p.format)) {
        problem(q, 400, "Invalid audit query", p.why[0] ? p.why : "format=fhir or format=jsonl is required");
        evhttp_clear_headers(&params);
        return;
    }
    struct audit_collect c = {json_array(), 0, export && !strcmp(p.format, "fhir"), q->api->observer};
    int n = vg_audit_query(vg_store_db(q->api->st), &p.f, collect_record, &c);
    if (n < 0) {
        json_decref(c.arr);
        evhttp_clear_headers(&params);
        problem(q, 503, "Store unavailable", NULL);
        return;
    }
    char detail[200];
    snprintf(detail, sizeof detail, "%s %d records%s%s", export ? "exported" : "listed", n,
             p.f.patient ? " about patient:" : "", p.f.patient ? p.f.patient : "");
    /* Who looked at the trail is part of the trail. */
    char target[VG_ID_MAX + 16] = "";
    if (p.f.patient)
        snprintf(target, sizeof target, "patient:%s", p.f.patient);
    if (audit_alone(q, export ? "audit.export" : "audit.read", target, "success", detail) != 0) {
        json_decref(c.arr);
        evhttp_clear_headers(&params);
        problem(q, 503, "Audit trail unavailable", NULL);
        return;
    }
    const char *path = evhttp_uri_get_path(uri);
    char *next = (size_t)n == p.f.limit ? next_url(path, &params, c.last_seq) : NULL;
    evhttp_clear_headers(&params);
    if (!export) {
        ok(q, 200, json_pack("{s:o, s:s?}", "records", c.arr, "next", next));
    } else if (c.fhir) {
        json_t *bundle = vg_fhir_audit_bundle(c.arr, q->api->base_url);
        if (next && bundle)
            json_object_set_new(bundle, "link", json_pack("[{s:s, s:s}]", "relation", "next", "url", next));
        send_json(q, 200, "OK", bundle, "application/fhir+json");
    } else {
        /* JSON lines: one record per line, the SIEM-friendly form. */
        struct evbuffer *out = evbuffer_new();
        size_t i;
        json_t *rec;
        json_array_foreach(c.arr, i, rec)
        {
            char *line = json_dumps(rec, JSON_COMPACT);
            if (line) {
                evbuffer_add_printf(out, "%s\n", line);
                free(line);
            }
        }
        json_decref(c.arr);
        struct evkeyvalq *h = evhttp_request_get_output_headers(q->r);
        evhttp_add_header(h, "Content-Type", "application/x-ndjson");
        evhttp_add_header(h, "Cache-Control", "no-store");
        if (next)
            evhttp_add_header(h, "X-Next-Page", next);
        evhttp_send_reply(q->r, 200, "OK", out);
        evbuffer_free(out);
    }
    free(next);
}

static void get_audit_verify(struct req *q)
{
    if (require_audit_reader(q) != 0)
        return;
    uint8_t pk[VG_AUDIT_PK_BYTES];
    char err[256];
    if (vg_audit_pub_load(q->api->audit_pub, pk, err, sizeof err) != 0) {
        vg_log_error("api: %s", err);
        problem(q, 503, "Audit public key unavailable", NULL);
        return;
    }
    const char *cp_file = access(q->api->checkpoint_log, R_OK) == 0 ? q->api->checkpoint_log : NULL;
    struct vg_audit_verify_result res;
    int rc = vg_audit_verify_db(vg_store_db(q->api->st), pk, cp_file, &res);
    if (rc < 0) {
        problem(q, 503, "Cannot read the audit trail", res.why);
        return;
    }
    char detail[300];
    snprintf(detail, sizeof detail, "%s: %lld records, %lld checkpoints%s%.200s",
             res.ok ? "verified" : "FAILED", (long long)res.records, (long long)res.checkpoints,
             res.ok ? "" : ": ", res.ok ? "" : res.why);
    (void)audit_alone(q, "audit.verify", "", res.ok ? "success" : "failure", detail);
    char cp_time[32] = "";
    if (res.latest_cp_ts)
        vg_time_format(res.latest_cp_ts, cp_time);
    ok(q, 200, json_pack("{s:b, s:I, s:I, s:I, s:I, s:s?, s:I, s:s?}", "ok", res.ok, "records",
                         (json_int_t)res.records, "last_seq", (json_int_t)res.last_seq,
                         "checkpoints", (json_int_t)res.checkpoints, "latest_checkpoint_seq",
                         (json_int_t)res.latest_cp_seq, "latest_checkpoint_time",
                         res.latest_cp_ts ? cp_time : NULL, "bad_seq", (json_int_t)res.bad_seq,
                         "why", res.ok ? NULL : res.why));
}

/* ---- people and access ---- */

/* The answer to a failed change: 404 with 'not_found' when something named
 * does not exist, 503 when the store failed. */
static void answer_store_error(struct req *q, int rc, const char *not_found)
{
    if (rc == VG_STORE_NOT_FOUND)
        problem(q, 404, not_found, NULL);
    else
        problem(q, 503, "Store unavailable", NULL);
}

static struct vg_login_policy login_policy(const struct vg_config *cfg)
{
    struct vg_login_policy pol = {
        (int64_t)cfg->session_lifetime_s * 1000, (int64_t)cfg->session_idle_s * 1000,
        cfg->login_max_failures, cfg->login_addr_max_failures,
        (int64_t)cfg->login_window_s * 1000, (int64_t)cfg->login_lockout_s * 1000};
    return pol;
}

/* A string member that may be absent (NULL) but, when present, must be a
 * string of at most 'max' bytes. Returns -1 after answering 400. */
static int opt_string(struct req *q, json_t *body, const char *name, size_t max, const char **out)
{
    json_t *v = json_object_get(body, name);
    *out = NULL;
    if (!v)
        return 0;
    if (!json_is_string(v) || json_string_length(v) > max) {
        char d[96];
        snprintf(d, sizeof d, "'%s' must be a string of at most %zu bytes", name, max);
        problem(q, 400, "Invalid member", d);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* A JSON array of ids (or roles) joined with spaces into 'out'. */
static int id_list(struct req *q, json_t *arr, const char *name, int ids, char *out, size_t size)
{
    out[0] = '\0';
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > 64) {
        char d[96];
        snprintf(d, sizeof d, "'%s' must be a non-empty array of at most 64 strings", name);
        problem(q, 400, "Invalid member", d);
        return -1;
    }
    size_t used = 0, i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        const char *v = json_string_value(e);
        if (!v || (ids && !vg_id_valid(v)) || strlen(v) > VG_ID_MAX) {
            char d[96];
            snprintf(d, sizeof d, "'%s' holds an invalid entry", name);
            problem(q, 400, "Invalid member", d);
            return -1;
        }
        int w = snprintf(out + used, size - used, "%s%s", used ? " " : "", v);
        if (w < 0 || (size_t)w >= size - used) {
            problem(q, 400, "Invalid member", "list too long");
            return -1;
        }
        used += (size_t)w;
    }
    return 0;
}

static void post_login(struct req *q)
{
    static const char *const allowed[] = {"user", "password", "totp", NULL};
    json_t *body = read_body(q, allowed);
    if (!body)
        return;
    const char *user, *pw, *code;
    if (opt_string(q, body, "user", VG_ID_MAX, &user) || opt_string(q, body, "password", 1024, &pw) ||
        opt_string(q, body, "totp", 16, &code)) {
        json_decref(body);
        return;
    }
    if (!user || !pw || !code) {
        json_decref(body);
        problem(q, 400, "Missing member", "user, password and totp are required");
        return;
    }
    struct vg_login_policy pol = login_policy(q->api->cfg);
    struct vg_login_outcome out;
    enum vg_login_result r = vg_account_login(q->api->st, &pol, user, pw, code, q->source,
                                              vg_now_ms(), &out);
    /* The password is PHI-adjacent secret material: gone from memory now. */
    sodium_memzero((char *)pw, strlen(pw));
    char target[VG_ID_MAX + 16] = "";
    if (vg_id_valid(user) && r == VG_LOGIN_OK)
        snprintf(target, sizeof target, "user:%s", user);
    vg_strlcpy(q->actor, r == VG_LOGIN_OK ? "" : "peer", sizeof q->actor);
    if (r == VG_LOGIN_OK)
        snprintf(q->actor, sizeof q->actor, "user:%s", out.who.id);
    if (r == VG_LOGIN_OK) {
        char detail[96];
        snprintf(detail, sizeof detail, "session %s opened", out.who.token_id);
        if (audit_alone(q, "user.login", target, "success", detail) != 0) {
            if (vg_account_revoke_token_text(q->api->st, out.token) != VG_STORE_OK)
                vg_log_error("api: could not revoke an unaudited session");
            sodium_memzero(out.token, sizeof out.token);
            problem(q, 503, "Audit trail unavailable", NULL);
        } else {
            char exp[32];
            vg_time_format(out.expires_ms, exp);
            vg_log_info("api: %s logged in from %s", out.who.id, q->source);
            json_t *roles = json_array();
            for (const char *p = out.who.roles; *p;) {
                size_t n = strcspn(p, " ");
                json_array_append_new(roles, json_stringn(p, n));
                p += n;
                while (*p == ' ')
                    p++;
            }
            ok(q, 200, json_pack("{s:s, s:s, s:i, s:o}", "token", out.token, "expires", exp,
                                 "idle_timeout_s", q->api->cfg->session_idle_s, "roles", roles));
            sodium_memzero(out.token, sizeof out.token);
        }
    } else if (r == VG_LOGIN_LOCKED) {
        (void)audit_alone(q, "user.login", "", "refused", out.why);
        char retry[24];
        snprintf(retry, sizeof retry, "%lld", (long long)(out.retry_after_ms / 1000 + 1));
        evhttp_add_header(evhttp_request_get_output_headers(q->r), "Retry-After", retry);
        problem(q, 429, "Too many failed logins", "try again later");
    } else if (r == VG_LOGIN_FAILED) {
        /* The record keeps the real reason; the client learns nothing
         * about which part failed or whether the account exists. */
        (void)audit_alone(q, "user.login", "", "failure", out.why);
        vg_log_warn("api: failed login from %s", q->source);
        if (out.lockout_started) {
            char what[160];
            snprintf(what, sizeof what, "login lockout started after repeated failures (%s%s%s)",
                     out.lockout_started & 1 ? "account name" : "",
                     out.lockout_started == 3 ? " and " : "",
                     out.lockout_started & 2 ? "source address" : "");
            vg_log_error("alert: %s from %s", what, q->source);
            (void)audit_alone(q, "alert.raised", "", "failure", what);
        }
        problem(q, 401, "Login failed", NULL);
    } else {
        problem(q, 503, "Store unavailable", NULL);
    }
    json_decref(body);
}

static void post_logout(struct req *q)
{
    if (vg_account_revoke_token_text(q->api->st, q->token) != VG_STORE_OK) {
        problem(q, 503, "Store unavailable", NULL);
        return;
    }
    (void)audit_alone(q, "user.logout", "", "success", q->who.session ? "session ended" : "token revoked");
    evhttp_send_reply(q->r, 204, "No Content", NULL);
}

/* Runs fn inside a transaction with its audit record; answers 5xx/4xx on
 * failure. Returns the store rc. */
static int audited_change(struct req *q, const char *action, const char *target, const char *detail,
                          int rc)
{
    struct vg_store *st = q->api->st;
    if (!rc)
        rc = audit_now(q, action, target, "success", detail);
    if (!rc)
        rc = vg_store_commit(st);
    if (rc) {
        vg_store_rollback(st);
        (void)audit_alone(q, action, target, "failure", rc == VG_STORE_NOT_FOUND ? "not found"
                                                        : rc == VG_STORE_EXISTS  ? "already exists"
                                                                                 : "refused");
    }
    return rc;
}

static void post_user(struct req *q)
{
    static const char *const allowed[] = {"id", "roles", "password", "kind", NULL};
    struct vg_decision d;
    if (authorize(q, VG_ACT_USER_MANAGE, NULL, NULL, &d) != 0)
        return;
    json_t *body = read_body(q, allowed);
    if (!body)
        return;
    const char *id = body_id(q, body, "id"), *pw = NULL, *kind = NULL;
    char roles[128];
    if (!id || opt_string(q, body, "password", 1024, &pw) || opt_string(q, body, "kind", 16, &kind) ||
        id_list(q, json_object_get(body, "roles"), "roles", 0, roles, sizeof roles)) {
        json_decref(body);
        return;
    }
    char uri[512] = "", why[160] = "", target[VG_ID_MAX + 16];
    snprintf(target, sizeof target, "user:%s", id);
    int rc = vg_store_begin(q->api->st);
    if (!rc)
        rc = vg_account_create(q->api->st, id, kind ? kind : "user", roles, pw, vg_now_ms(), uri,
                               sizeof uri, why, sizeof why);
    if (pw)
        sodium_memzero((char *)pw, strlen(pw));
    char detail[160];
    snprintf(detail, sizeof detail, "%s with roles %s", kind ? kind : "user", roles);
    rc = audited_change(q, "user.create", target, detail, rc);
    if (rc == VG_STORE_EXISTS)
        problem(q, 409, "Account already exists", NULL);
    else if (rc == VG_STORE_ERROR && why[0])
        problem(q, 400, "Account refused", why);
    else if (rc)
        problem(q, 503, "Store unavailable", NULL);
    else
        ok(q, 201, json_pack("{s:s, s:s, s:s, s:s?}", "id", id, "kind", kind ? kind : "user",
                             "roles", roles, "totp_uri", uri[0] ? uri : NULL));
    sodium_memzero(uri, sizeof uri);
    json_decref(body);
}

static void get_users(struct req *q)
{
    struct vg_decision d;
    if (authorize(q, VG_ACT_USER_MANAGE, NULL, NULL, &d) != 0)
        return;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(vg_store_db(q->api->st),
                           "SELECT id, kind, role, disabled, totp_sealed IS NOT NULL, last_login_ms"
                           " FROM principals ORDER BY id", -1, &s, NULL) != SQLITE_OK) {
        problem(q, 503, "Store unavailable", NULL);
        return;
    }
    json_t *users = json_array();
    while (sqlite3_step(s) == SQLITE_ROW) {
        char last[32] = "";
        int64_t ll = sqlite3_column_int64(s, 5);
        if (ll)
            vg_time_format(ll, last);
        json_array_append_new(users, json_pack("{s:s, s:s, s:s, s:b, s:b, s:s?}", "id",
                                               sqlite3_column_text(s, 0), "kind", sqlite3_column_text(s, 1),
                                               "roles", sqlite3_column_text(s, 2), "disabled",
                                               sqlite3_column_int(s, 3), "mfa", sqlite3_column_int(s, 4),
                                               "last_login", ll ? last : NULL));
    }
    sqlite3_finalize(s);
    (void)audit_alone(q, "user.list", "", "success", "");
    ok(q, 200, json_pack("{s:o}", "users", users));
}

/* /api/v1/users/{id}/{roles|disable|totp|certificate} */
static void user_action(struct req *q, const char *id, const char *what, enum evhttp_cmd_type cmd)
{
    struct vg_decision d;
    if (authorize(q, VG_ACT_USER_MANAGE, NULL, NULL, &d) != 0)
        return;
    char target[VG_ID_MAX + 16];
    snprintf(target, sizeof target, "user:%s", id);
    struct vg_store *st = q->api->st;
    if (!strcmp(what, "roles") && cmd == EVHTTP_REQ_PUT) {
        static const char *const allowed[] = {"roles", NULL};
        json_t *body = read_body(q, allowed);
        char roles[128], norm[64], why[160];
        if (!body)
            return;
        if (id_list(q, json_object_get(body, "roles"), "roles", 0, roles, sizeof roles)) {
            json_decref(body);
            return;
        }
        json_decref(body);
        if (vg_roles_normalise(roles, norm, sizeof norm, why, sizeof why) != 0) {
            problem(q, 400, "Invalid roles", why);
            return;
        }
        struct vg_principal p;
        int rc = vg_store_begin(st);
        if (!rc)
            rc = vg_account_get(st, id, &p);
        if (!rc && strcmp(p.kind, "user") && strcmp(norm, "integration") &&
            strcmp(id, "admin")) {
            vg_store_rollback(st);
            problem(q, 400, "Invalid roles", "a service principal has the role integration only");
            return;
        }
        if (!rc)
            rc = vg_account_set_roles(st, id, norm);
        char detail[96];
        snprintf(detail, sizeof detail, "roles now %s", norm);
        rc = audited_change(q, "user.role", target, detail, rc);
        if (rc)
            answer_store_error(q, rc, "No such account");
        else
            ok(q, 200, json_pack("{s:s, s:s}", "id", id, "roles", norm));
    } else if (!strcmp(what, "disable") && cmd == EVHTTP_REQ_POST) {
        int rc = vg_store_begin(st);
        if (!rc)
            rc = vg_account_disable(st, id);
        rc = audited_change(q, "user.disable", target, "disabled; its tokens and sessions revoked", rc);
        if (rc)
            answer_store_error(q, rc, "No such account");
        else
            ok(q, 200, json_pack("{s:s, s:b}", "id", id, "disabled", 1));
    } else if (!strcmp(what, "totp") && cmd == EVHTTP_REQ_POST) {
        char uri[512] = "";
        int rc = vg_store_begin(st);
        if (!rc)
            rc = vg_account_new_totp(st, id, uri, sizeof uri);
        rc = audited_change(q, "user.totp", target, "new second factor enrolled", rc);
        if (rc)
            answer_store_error(q, rc, "No such person");
        else
            ok(q, 200, json_pack("{s:s, s:s}", "id", id, "totp_uri", uri));
        sodium_memzero(uri, sizeof uri);
    } else if (!strcmp(what, "certificate") && cmd == EVHTTP_REQ_POST) {
        struct vg_principal p;
        if (vg_account_get(st, id, &p) != VG_STORE_OK) {
            problem(q, 404, "No such account", NULL);
            return;
        }
        struct vg_ca_issued iss = {0};
        char err[256];
        if (vg_ca_issue_principal(q->api->ca_cert, q->api->ca_key, id, q->api->cfg->device_cert_days,
                                  &iss, err, sizeof err) != 0) {
            vg_log_error("api: cannot issue a certificate for %s: %s", id, err);
            problem(q, 500, "Cannot issue certificate", NULL);
            return;
        }
        char detail[96];
        snprintf(detail, sizeof detail, "client certificate serial %s", iss.serial_hex);
        int rc = vg_store_begin(st);
        if (!rc)
            rc = vg_account_set_cert(st, id, iss.fingerprint_hex);
        rc = audited_change(q, "user.certificate", target, detail, rc);
        if (rc)
            problem(q, 503, "Store unavailable", NULL);
        else
            ok(q, 201, json_pack("{s:s, s:s, s:s, s:s}", "id", id, "certificate", iss.cert_pem,
                                 "private_key", iss.key_pem, "ca", q->api->ca_pem));
        vg_ca_issued_free(&iss);
    } else {
        problem(q, 405, "Method not allowed", NULL);
    }
}

static void put_my_password(struct req *q)
{
    static const char *const allowed[] = {"current", "new", NULL};
    if (!q->who.session) {
        problem(q, 403, "Forbidden", "only a logged-in person changes their password");
        return;
    }
    json_t *body = read_body(q, allowed);
    if (!body)
        return;
    const char *cur, *fresh;
    if (opt_string(q, body, "current", 1024, &cur) || opt_string(q, body, "new", 1024, &fresh)) {
        json_decref(body);
        return;
    }
    if (!cur || !fresh) {
        json_decref(body);
        problem(q, 400, "Missing member", "current and new are required");
        return;
    }
    char why[160] = "", target[VG_ID_MAX + 16];
    snprintf(target, sizeof target, "user:%s", q->who.id);
    int rc = vg_store_begin(q->api->st);
    if (!rc)
        rc = vg_account_set_password(q->api->st, q->who.id, cur, fresh, q->who.token_id, why, sizeof why);
    sodium_memzero((char *)cur, strlen(cur));
    sodium_memzero((char *)fresh, strlen(fresh));
    json_decref(body);
    rc = audited_change(q, "user.password", target, "password changed; other sessions ended", rc);
    if (rc == VG_STORE_INTEGRITY)
        problem(q, 403, "Forbidden", "the current password is wrong");
    else if (rc == VG_STORE_ERROR && why[0])
        problem(q, 400, "Password refused", why);
    else if (rc)
        problem(q, 503, "Store unavailable", NULL);
    else
        evhttp_send_reply(q->r, 204, "No Content", NULL);
}

static void post_token(struct req *q)
{
    static const char *const allowed[] = {"principal", "scopes", "patients", "expires_in_s", NULL};
    struct vg_decision d;
    if (authorize(q, VG_ACT_USER_MANAGE, NULL, NULL, &d) != 0)
        return;
    json_t *body = read_body(q, allowed);
    if (!body)
        return;
    const char *principal = body_id(q, body, "principal");
    char scopes[128], patients[1024] = "*";
    json_t *pat = json_object_get(body, "patients");
    json_t *exp = json_object_get(body, "expires_in_s");
    if (!principal || id_list(q, json_object_get(body, "scopes"), "scopes", 0, scopes, sizeof scopes) ||
        (pat && id_list(q, pat, "patients", 1, patients, sizeof patients))) {
        json_decref(body);
        return;
    }
    if (exp && (!json_is_integer(exp) || json_integer_value(exp) < 60 ||
                json_integer_value(exp) > 366LL * 86400)) {
        json_decref(body);
        problem(q, 400, "Invalid member", "expires_in_s must be an integer from 60 to 31622400");
        return;
    }
    for (const char *p = scopes; *p;) {
        size_t n = strcspn(p, " ");
        if (!((n == 8 && !strncmp(p, "obs.read", 8)) || (n == 13 && !strncmp(p, "obs.subscribe", 13)) ||
              (n == 10 && !strncmp(p, "stats.read", 10)))) {
            json_decref(body);
            problem(q, 400, "Invalid member", "scopes are obs.read, obs.subscribe and stats.read");
            return;
        }
        p += n;
        while (*p == ' ')
            p++;
    }
    struct vg_principal p;
    int64_t now = vg_now_ms();
    /* Ninety days unless asked otherwise: no token lives forever by default. */
    int64_t expires = now + (exp ? json_integer_value(exp) : 90LL * 86400) * 1000;
    char token[VG_TOKEN_MAX], id[20], target[VG_ID_MAX + 16], detail[1400];
    snprintf(target, sizeof target, "user:%s", principal);
    int rc = vg_store_begin(q->api->st);
    if (!rc)
        rc = vg_account_get(q->api->st, principal, &p);
    if (!rc && (strcmp(p.kind, "service") || !vg_word_in(p.roles, "integration"))) {
        vg_store_rollback(q->api->st);
        json_decref(body);
        problem(q, 400, "Not a service principal", "tokens are issued to service principals with the integration role");
        return;
    }
    if (!rc)
        rc = vg_token_issue(q->api->st, principal, scopes, patients, now, expires, token, id);
    /* A token for every patient is a wildcard grant: allowed, but called
     * out in the record (and later by the fleet audit). */
    snprintf(detail, sizeof detail, "token %.19s scopes %.127s patients %.1023s%s", id, scopes,
             patients, !strcmp(patients, "*") ? " (wildcard grant)" : "");
    rc = audited_change(q, "token.issue", target, detail, rc);
    json_decref(body);
    if (rc) {
        answer_store_error(q, rc, "No such principal");
        return;
    }
    char when[32];
    vg_time_format(expires, when);
    ok(q, 201, json_pack("{s:s, s:s, s:s}", "id", id, "token", token, "expires", when));
    sodium_memzero(token, sizeof token);
}

static void delete_token(struct req *q, const char *id)
{
    struct vg_decision d;
    if (authorize(q, VG_ACT_USER_MANAGE, NULL, NULL, &d) != 0)
        return;
    if (strlen(id) != 16 || strspn(id, "0123456789abcdef") != 16) {
        problem(q, 404, "No such token", NULL);
        return;
    }
    char detail[48];
    snprintf(detail, sizeof detail, "token %s revoked", id);
    int rc = vg_store_begin(q->api->st);
    if (!rc)
        rc = vg_token_revoke(q->api->st, id);
    rc = audited_change(q, "token.revoke", "", detail, rc);
    if (rc)
        answer_store_error(q, rc, "No such token");
    else
        evhttp_send_reply(q->r, 204, "No Content", NULL);
}

static void post_careteam(struct req *q)
{
    static const char *const allowed[] = {"user", "patient", "end", NULL};
    struct vg_decision d;
    if (authorize(q, VG_ACT_USER_MANAGE, NULL, NULL, &d) != 0)
        return;
    json_t *body = read_body(q, allowed);
    if (!body)
        return;
    const char *user = body_id(q, body, "user"), *patient = user ? body_id(q, body, "patient") : NULL;
    const char *end_s = NULL;
    if (!user || !patient || opt_string(q, body, "end", 40, &end_s)) {
        json_decref(body);
        return;
    }
    int64_t now = vg_now_ms(), end = 0, id = 0;
    if (end_s && (vg_time_parse_rfc3339(end_s, strlen(end_s), &end) != 0 || end <= now)) {
        json_decref(body);
        problem(q, 400, "Invalid member", "'end' must be an RFC 3339 time in the future");
        return;
    }
    struct vg_principal p;
    char target[VG_ID_MAX + 16], detail[VG_ID_MAX + 64];
    snprintf(target, sizeof target, "patient:%s", patient);
    snprintf(detail, sizeof detail, "user:%s joins the care team", user);
    int rc = vg_store_begin(q->api->st);
    if (!rc)
        rc = vg_account_get(q->api->st, user, &p);
    if (!rc && strcmp(p.kind, "user")) {
        vg_store_rollback(q->api->st);
        json_decref(body);
        problem(q, 400, "Not a person", "care teams are made of people");
        return;
    }
    if (!rc)
        rc = vg_careteam_add(q->api->st, user, patient, now, end, &id);
    rc = audited_change(q, "careteam.assign", target, detail, rc);
    json_decref(body);
    if (rc)
        answer_store_error(q, rc, "No such user or patient");
    else
        ok(q, 201, json_pack("{s:I}", "id", (json_int_t)id));
}

static void delete_careteam(struct req *q, const char *id_s)
{
    struct vg_decision d;
    if (authorize(q, VG_ACT_USER_MANAGE, NULL, NULL, &d) != 0)
        return;
    char *end;
    long long id = strtoll(id_s, &end, 10);
    if (*end || id <= 0) {
        problem(q, 404, "No such assignment", NULL);
        return;
    }
    char detail[48];
    snprintf(detail, sizeof detail, "care team assignment %lld ended", id);
    int rc = vg_store_begin(q->api->st);
    if (!rc)
        rc = vg_careteam_end(q->api->st, id, vg_now_ms());
    rc = audited_change(q, "careteam.end", "", detail, rc);
    if (rc)
        answer_store_error(q, rc, "No such assignment");
    else
        evhttp_send_reply(q->r, 204, "No Content", NULL);
}

static void get_careteam(struct req *q, const struct evhttp_uri *uri)
{
    struct evkeyvalq params;
    const char *query = evhttp_uri_get_query(uri);
    if (evhttp_parse_query_str(query ? query : "", &params) != 0) {
        problem(q, 400, "Malformed query string", NULL);
        return;
    }
    const char *user = evhttp_find_header(&params, "user");
    if (user && !vg_id_valid(user)) {
        evhttp_clear_headers(&params);
        problem(q, 400, "Invalid search", "invalid user id");
        return;
    }
    /* People may see their own assignments; managing all is admin's. */
    if (!user || strcmp(user, q->who.id)) {
        struct vg_decision d;
        if (authorize(q, VG_ACT_USER_MANAGE, NULL, NULL, &d) != 0) {
            evhttp_clear_headers(&params);
            return;
        }
    }
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(vg_store_db(q->api->st),
                           "SELECT id, user_id, patient_id, start_ms, end_ms FROM careteam"
                           " WHERE ?1 IS NULL OR user_id = ?1 ORDER BY id", -1, &s, NULL) != SQLITE_OK) {
        evhttp_clear_headers(&params);
        problem(q, 503, "Store unavailable", NULL);
        return;
    }
    if (user)
        sqlite3_bind_text(s, 1, user, -1, SQLITE_TRANSIENT);
    json_t *arr = json_array();
    while (sqlite3_step(s) == SQLITE_ROW) {
        char a[32], b[32] = "";
        vg_time_format(sqlite3_column_int64(s, 3), a);
        int has_end = sqlite3_column_type(s, 4) != SQLITE_NULL;
        if (has_end)
            vg_time_format(sqlite3_column_int64(s, 4), b);
        json_array_append_new(arr, json_pack("{s:I, s:s, s:s, s:s, s:s?}", "id",
                                             (json_int_t)sqlite3_column_int64(s, 0), "user",
                                             sqlite3_column_text(s, 1), "patient",
                                             sqlite3_column_text(s, 2), "start", a, "end",
                                             has_end ? b : NULL));
    }
    sqlite3_finalize(s);
    evhttp_clear_headers(&params);
    ok(q, 200, json_pack("{s:o}", "assignments", arr));
}

static void post_breakglass(struct req *q)
{
    static const char *const allowed[] = {"patient", "reason", NULL};
    json_t *body = read_body(q, allowed);
    if (!body)
        return;
    const char *patient = body_id(q, body, "patient"), *reason = NULL;
    if (!patient || opt_string(q, body, "reason", 500, &reason)) {
        json_decref(body);
        return;
    }
    if (!reason || strlen(reason) < 10) {
        json_decref(body);
        problem(q, 400, "A reason is required", "give the reason for emergency access (10 to 500 characters)");
        return;
    }
    for (const char *c = reason; *c; c++)
        if ((unsigned char)*c < 0x20) {
            json_decref(body);
            problem(q, 400, "Invalid reason", "the reason must be one line of text");
            return;
        }
    struct vg_decision d;
    if (authorize(q, VG_ACT_BREAKGLASS, patient, NULL, &d) != 0) {
        json_decref(body);
        return;
    }
    int64_t now = vg_now_ms(), id = 0;
    int64_t dur = (int64_t)q->api->cfg->breakglass_minutes * 60000;
    char target[VG_ID_MAX + 16], detail[700];
    snprintf(target, sizeof target, "patient:%s", patient);
    snprintf(detail, sizeof detail, "break-glass for %d min, reason: %s", q->api->cfg->breakglass_minutes,
             reason);
    int rc = vg_store_begin(q->api->st);
    if (!rc)
        rc = vg_breakglass_open(q->api->st, q->who.id, patient, reason, now, dur, &id);
    /* Auditors are alerted: an alert record in the same transaction. */
    if (!rc) {
        char alert[VG_ID_MAX * 2 + 64];
        snprintf(alert, sizeof alert, "break-glass opened by user:%s on patient:%s", q->who.id, patient);
        struct vg_audit_event ev = {0, "system", "alert.raised", target, "success", alert, ""};
        rc = vg_audit_append(q->api->st, &ev);
    }
    rc = audited_change(q, "breakglass.open", target, detail, rc);
    if (rc) {
        json_decref(body);
        answer_store_error(q, rc, "No such patient");
        return;
    }
    vg_log_warn("alert: break-glass opened by %s on patient %s", q->who.id, patient);
    char until[32];
    vg_time_format(now + dur, until);
    ok(q, 201, json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id, "patient", patient, "expires", until));
    json_decref(body); /* 'patient' points into it */
}

/* POST /api/v1/patients/{id}/erase {"reason"} — crypto-shredding — and
 * POST /api/v1/patients/{id}/rotate-key. */
static void patient_keys_action(struct req *q, const char *patient, const char *what)
{
    int erase = !strcmp(what, "erase");
    struct vg_decision d;
    if (authorize(q, erase ? VG_ACT_PATIENT_ERASE : VG_ACT_KEYS_ROTATE, patient, NULL, &d) != 0)
        return;
    const char *reason = NULL;
    json_t *body = NULL;
    if (erase) {
        static const char *const allowed[] = {"reason", NULL};
        body = read_body(q, allowed);
        if (!body)
            return;
        if (opt_string(q, body, "reason", 500, &reason)) {
            json_decref(body);
            return;
        }
        if (!reason || strlen(reason) < 10 || strpbrk(reason, "\r\n")) {
            json_decref(body);
            problem(q, 400, "A reason is required", "say why the patient's data is erased (one line, 10 to 500 bytes)");
            return;
        }
    }
    char target[VG_ID_MAX + 16], detail[700];
    snprintf(target, sizeof target, "patient:%s", patient);
    int keys = 0;
    int rc = vg_store_begin(q->api->st);
    if (!rc)
        rc = erase ? vg_store_patient_erase(q->api->st, patient, vg_now_ms(), &keys)
                   : vg_store_patient_rotate_key(q->api->st, patient);
    if (erase)
        snprintf(detail, sizeof detail, "data keys destroyed (crypto-shredding), reason: %s", reason);
    else
        snprintf(detail, sizeof detail, "active data key retired; new readings get a new key");
    rc = audited_change(q, erase ? "patient.erase" : "keys.rotate", target, detail, rc);
    if (rc) {
        json_decref(body);
        answer_store_error(q, rc, "No such patient");
        return;
    }
    if (erase) {
        /* Move the pages that held the keys out of the WAL as well. */
        int truncated = vg_store_wal_truncate(q->api->st) == VG_STORE_OK;
        vg_log_warn("api: %s erased patient %s (%d data keys destroyed)", q->who.id, patient, keys);
        ok(q, 200, json_pack("{s:s, s:i, s:b}", "patient", patient, "keys_destroyed", keys,
                             "wal_truncated", truncated));
    } else {
        vg_log_info("api: %s rotated the data key of patient %s", q->who.id, patient);
        ok(q, 200, json_pack("{s:s, s:b}", "patient", patient, "rotated", 1));
    }
    json_decref(body);
}


/* ---- the device inventory (fleet posture) ---- */

static json_t *inventory_json(const struct vg_device_inventory *d)
{
    char t[32];
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", d->id, "status",
                          d->status, "manufacturer", d->manufacturer, "model", d->model, "serial",
                          d->serial, "firmware", d->firmware, "class", d->device_class, "location",
                          d->location, "patient", d->patient);
    json_t *cred = json_pack("{s:s, s:s, s:s, s:i}", "kind", "x509", "serial", d->cert_serial,
                             "key_type", d->key_type[0] ? d->key_type : "unknown", "key_bits",
                             d->key_bits);
    vg_time_format(d->cert_not_after_ms, t);
    json_object_set_new(cred, "not_after", json_string(t));
    if (d->cert_not_before_ms) {
        vg_time_format(d->cert_not_before_ms, t);
        json_object_set_new(cred, "not_before", json_string(t));
    }
    json_object_set_new(o, "credential", cred);
    vg_time_format(d->enrolled_ms, t);
    json_object_set_new(o, "enrolled", json_string(t));
    if (d->last_seen_ms) {
        json_t *ls = json_pack("{s:s, s:s, s:s}", "source", d->last_source, "tls", d->last_tls,
                               "cipher", d->last_cipher);
        vg_time_format(d->last_seen_ms, t);
        json_object_set_new(ls, "time", json_string(t));
        json_object_set_new(o, "last_seen", ls);
    } else {
        json_object_set_new(o, "last_seen", json_null());
    }
    if (d->quarantined) {
        vg_time_format(d->quarantined_ms, t);
        json_object_set_new(o, "quarantine",
                            json_pack("{s:s, s:s}", "since", t, "reason", d->quarantine_reason));
    } else {
        json_object_set_new(o, "quarantine", json_null());
    }
    return o;
}

static int inventory_append(void *ctx, const struct vg_device_inventory *d)
{
    json_array_append_new(ctx, inventory_json(d));
    return 0;
}

static void get_devices(struct req *q)
{
    struct vg_decision d;
    if (authorize(q, VG_ACT_POSTURE_READ, NULL, NULL, &d) != 0)
        return;
    json_t *arr = json_array();
    int n = vg_fleet_device_list(q->api->st, vg_now_ms(), inventory_append, arr);
    char detail[64];
    snprintf(detail, sizeof detail, "device inventory, %d devices", n < 0 ? 0 : n);
    if (n < 0 || audit_alone(q, "posture.read", "devices", "success", detail) != 0) {
        json_decref(arr);
        problem(q, 503, "Store unavailable", NULL);
        return;
    }
    ok(q, 200, json_pack("{s:o}", "devices", arr));
}

static void get_device(struct req *q, const char *id)
{
    struct vg_decision d;
    if (authorize(q, VG_ACT_POSTURE_READ, NULL, id, &d) != 0)
        return;
    struct vg_device_inventory inv;
    int rc = vg_fleet_device_get(q->api->st, id, vg_now_ms(), &inv);
    char target[VG_ID_MAX + 16];
    snprintf(target, sizeof target, "device:%s", id);
    if (rc == VG_STORE_OK && audit_alone(q, "posture.read", target, "success", "device inventory") != 0)
        rc = VG_STORE_ERROR;
    if (rc) {
        answer_store_error(q, rc, "No such device");
        return;
    }
    ok(q, 200, inventory_json(&inv));
}

/* A fleet text member: absent, or 1..95 printable bytes. */
static int fleet_text(struct req *q, json_t *body, const char *name, const char **out)
{
    if (opt_string(q, body, name, VG_FLEET_TEXT - 1, out))
        return -1;
    if (!*out)
        return 0;
    int bad = !**out;
    for (const char *c = *out; *c && !bad; c++)
        bad = (unsigned char)*c < 0x20 || *c == 0x7f;
    if (bad) {
        char det[96];
        snprintf(det, sizeof det, "'%s' must be 1 to %d printable bytes", name, VG_FLEET_TEXT - 1);
        problem(q, 400, "Invalid member", det);
        return -1;
    }
    return 0;
}

/* PATCH /api/v1/devices/{id}: what an administrator or biomedical engineer
 * records about a device (location above all; the rest when the device
 * cannot report it itself). */
static void patch_device(struct req *q, const char *id)
{
    static const char *const allowed[] = {"manufacturer", "model", "serial", "firmware", "class",
                                          "location", NULL};
    struct vg_decision d;
    if (authorize(q, VG_ACT_POSTURE_MANAGE, NULL, id, &d) != 0)
        return;
    json_t *body = read_body(q, allowed);
    if (!body)
        return;
    struct vg_device_info_update u = {0};
    if (fleet_text(q, body, "manufacturer", &u.manufacturer) ||
        fleet_text(q, body, "model", &u.model) || fleet_text(q, body, "serial", &u.serial) ||
        fleet_text(q, body, "firmware", &u.firmware) ||
        fleet_text(q, body, "class", &u.device_class) ||
        fleet_text(q, body, "location", &u.location)) {
        json_decref(body);
        return;
    }
    if (u.device_class && !vg_fleet_class_lookup(u.device_class)) {
        json_decref(body);
        problem(q, 400, "Unknown device class",
                "one of pulse-oximeter, bp-cuff, infusion-pump, monitor, thermometer, scale, "
                "glucometer, ecg, other");
        return;
    }
    char target[VG_ID_MAX + 16], detail[128];
    snprintf(target, sizeof target, "device:%s", id);
    snprintf(detail, sizeof detail, "inventory updated (%zu fields)", json_object_size(body));
    int rc = vg_store_begin(q->api->st);
    if (!rc)
        rc = vg_fleet_device_describe(q->api->st, id, &u, vg_now_ms());
    rc = audited_change(q, "device.describe", target, detail, rc);
    json_decref(body);
    if (rc) {
        answer_store_error(q, rc, "No such device");
        return;
    }
    get_device(q, id);
}

/* POST /api/v1/devices/{id}/quarantine|release|revoke {"reason"}: each
 * needs a reason, is audited with it, and takes effect on a live session
 * at once (quarantine and revocation close it). */
static void device_action(struct req *q, const char *id, const char *what)
{
    static const char *const allowed[] = {"reason", NULL};
    struct vg_decision d;
    if (authorize(q, VG_ACT_POSTURE_MANAGE, NULL, id, &d) != 0)
        return;
    json_t *body = read_body(q, allowed);
    if (!body)
        return;
    const char *reason = NULL;
    if (opt_string(q, body, "reason", 180, &reason)) {
        json_decref(body);
        return;
    }
    if (!reason || strlen(reason) < 10 || strpbrk(reason, "\r\n")) {
        json_decref(body);
        problem(q, 400, "A reason is required", "say why (one line, 10 to 180 bytes)");
        return;
    }
    int64_t now = vg_now_ms();
    char target[VG_ID_MAX + 16], detail[256], action[32];
    snprintf(target, sizeof target, "device:%s", id);
    snprintf(action, sizeof action, "device.%s", what);
    snprintf(detail, sizeof detail, "reason: %s", reason);
    int rc = vg_store_begin(q->api->st);
    if (!rc)
        rc = !strcmp(what, "quarantine") ? vg_fleet_quarantine(q->api->st, id, reason, now)
             : !strcmp(what, "release")  ? vg_fleet_release(q->api->st, id)
                                         : vg_fleet_revoke(q->api->st, id);
    rc = audited_change(q, action, target, detail, rc);
    json_decref(body);
    if (rc) {
        answer_store_error(q, rc, "No such device");
        return;
    }
    if (strcmp(what, "release") != 0) {
        int closed = vg_broker_disconnect_device(
            q->api->broker, id, !strcmp(what, "quarantine") ? "quarantined" : "revoked");
        vg_log_warn("api: %s %s device %s (%d session%s closed)", q->who.id,
                    !strcmp(what, "quarantine") ? "quarantined" : "revoked", id, closed,
                    closed == 1 ? "" : "s");
    } else {
        vg_log_info("api: %s released device %s from quarantine", q->who.id, id);
    }
    get_device(q, id);
}

/* "{id}/quarantine" (or release, revoke) -> id and verb; 1 if it is one. */
static int device_action_path(const char *rest, char id[VG_ID_MAX + 1], char verb[16])
{
    const char *slash = strchr(rest, '/');
    if (!slash || (size_t)(slash - rest) > VG_ID_MAX)
        return 0;
    if (strcmp(slash + 1, "quarantine") && strcmp(slash + 1, "release") && strcmp(slash + 1, "revoke"))
        return 0;
    memcpy(id, rest, (size_t)(slash - rest));
    id[slash - rest] = '\0';
    vg_strlcpy(verb, slash + 1, 16);
    return vg_id_valid(id);
}


/* GET /metrics: Prometheus text format (version 0.0.4). Counters only, no
 * identifiers of devices or patients: safe for a monitoring system to keep. */
static void metric(struct evbuffer *o, const char *name, const char *type, const char *help,
                   uint64_t v)
{
    evbuffer_add_printf(o, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type,
                        name, v);
}

static void get_metrics(struct req *q)
{
    struct vg_decision d;
    if (authorize(q, VG_ACT_STATS_READ, NULL, NULL, &d) != 0)
        return;
    struct vg_broker_stats b;
    vg_broker_stats(q->api->broker, &b);
    struct vg_writer *w = vg_broker_writer(q->api->broker);
    struct vg_writer_stats ws;
    vg_writer_stats(w, &ws);
    struct evbuffer *o = evbuffer_new();
    metric(o, "vigil_mqtt_connections_open", "gauge", "MQTT connections open now.",
           b.connections_open);
    metric(o, "vigil_mqtt_connections_accepted_total", "counter", "CONNECTs accepted.",
           b.connections_accepted);
    metric(o, "vigil_mqtt_connections_refused_total", "counter",
           "Connections refused at TLS or CONNECT.", b.connections_refused);
    metric(o, "vigil_mqtt_publishes_total", "counter", "PUBLISH packets received.", b.publishes);
    metric(o, "vigil_mqtt_publishes_refused_total", "counter",
           "Publishes refused (topic, payload).", b.publishes_refused);
    metric(o, "vigil_mqtt_protocol_errors_total", "counter",
           "Connections closed for malformed input.", b.protocol_errors);
    metric(o, "vigil_readings_stored_total", "counter", "Readings stored.", b.readings_stored);
    metric(o, "vigil_readings_refused_total", "counter", "Readings refused by validation.",
           b.readings_refused);
    metric(o, "vigil_writer_queue_depth", "gauge",
           "Readings and audit records waiting for the store writer.", vg_writer_depth(w));
    metric(o, "vigil_writer_queue_limit", "gauge",
           "Queue depth above which device sockets stop being read (back-pressure).",
           (uint64_t)q->api->cfg->writer_queue_max);
    evbuffer_add_printf(o, "# HELP vigil_writer_batches_total Group commits by outcome.\n"
                           "# TYPE vigil_writer_batches_total counter\n"
                           "vigil_writer_batches_total{outcome=\"committed\"} %" PRIu64 "\n"
                           "vigil_writer_batches_total{outcome=\"disk_full\"} %" PRIu64 "\n"
                           "vigil_writer_batches_total{outcome=\"io_error\"} %" PRIu64 "\n"
                           "vigil_writer_batches_total{outcome=\"error\"} %" PRIu64 "\n",
                        ws.batches_committed, ws.batches_failed_full, ws.batches_failed_io,
                        ws.batches_failed_other);
    metric(o, "vigil_writer_readings_committed_total", "counter",
           "Readings made durable by the writer.", ws.readings_committed);
    metric(o, "vigil_writer_readings_failed_total", "counter",
           "Readings in batches that could not be committed (not acknowledged).",
           ws.readings_failed);
    metric(o, "vigil_writer_failing", "gauge",
           "1 while commits fail (disk full or I/O error), else 0.", ws.failing != 0);
    static const uint64_t bounds[VG_WRITER_LATENCY_BUCKETS] = VG_WRITER_LATENCY_BOUNDS_US;
    evbuffer_add_printf(o, "# HELP vigil_writer_commit_seconds Group commit latency, BEGIN to "
                           "durable COMMIT.\n# TYPE vigil_writer_commit_seconds histogram\n");
    for (int i = 0; i < VG_WRITER_LATENCY_BUCKETS; i++)
        evbuffer_add_printf(o, "vigil_writer_commit_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                            (double)bounds[i] / 1e6, ws.commit_le[i]);
    evbuffer_add_printf(o,
                        "vigil_writer_commit_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
                        "vigil_writer_commit_seconds_sum %.6f\n"
                        "vigil_writer_commit_seconds_count %" PRIu64 "\n",
                        ws.commit_count, (double)ws.commit_sum_us / 1e6, ws.commit_count);
    struct evkeyvalq *h = evhttp_request_get_output_headers(q->r);
    evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_send_reply(q->r, 200, "OK", o);
    evbuffer_free(o);
}

/* POST /api/v1/keys/rotate-kek {"reason"?}: a new KEK, online.
 * Order matters for crash safety: the new KEK is made durable first
 * (staged next to the current one), then one transaction rewraps every key
 * under it with its audit record, then the staged KEK replaces the old.
 * A crash between the commit and the replacement is finished at the next
 * start (serve.c: the database says which KEK opens it). */
struct rotate_ctx {
    struct req *q;
    const char *reason;
};

static int rotate_audit(void *ctx, struct vg_store *st, const struct vg_kek_rotation *r)
{
    (void)st;
    struct rotate_ctx *rc = ctx;
    char detail[400];
    snprintf(detail, sizeof detail,
             "KEK rotated: %d data keys, %d TOTP seeds, %d other values rewrapped; readings "
             "untouched%s%s",
             r->data_keys, r->secrets, r->other, rc->reason ? "; reason: " : "",
             rc->reason ? rc->reason : "");
    return audit_now(rc->q, "keys.rotate-kek", "kek", "success", detail);
}

static void post_rotate_kek(struct req *q)
{
    static const char *const allowed[] = {"reason", NULL};
    struct vg_decision d;
    if (authorize(q, VG_ACT_KEYS_ROTATE, NULL, NULL, &d) != 0)
        return;
    const char *reason = NULL;
    json_t *body = NULL;
    struct evbuffer *in = evhttp_request_get_input_buffer(q->r);
    if (evbuffer_get_length(in)) {
        if (!(body = read_body(q, allowed)))
            return;
        if (opt_string(q, body, "reason", 300, &reason)) {
            json_decref(body);
            return;
        }
        if (reason && strpbrk(reason, "\r\n")) {
            json_decref(body);
            problem(q, 400, "Invalid member", "'reason' must be one line");
            return;
        }
    }
    if (!q->api->has_kek_src) {
        json_decref(body);
        problem(q, 503, "KEK rotation unavailable", NULL);
        return;
    }
    char err[512];
    uint8_t *next = sodium_malloc(VG_KEY_BYTES);
    if (!next) {
        json_decref(body);
        problem(q, 503, "Out of memory", NULL);
        return;
    }
    vg_random(next, VG_KEY_BYTES);
    if (vg_kek_source_stage_next(&q->api->kek_src, next, err, sizeof err) != 0) {
        sodium_free(next);
        json_decref(body);
        vg_log_error("api: KEK rotation: cannot stage the new KEK: %s", err);
        (void)audit_alone(q, "keys.rotate-kek", "kek", "failure", "cannot store the new KEK");
        problem(q, 503, "Cannot store the new KEK", "nothing changed; see the server log");
        return;
    }
    struct vg_kek_rotation r;
    struct rotate_ctx ctx = {q, reason};
    int rc = vg_store_rotate_kek(q->api->st, next, &r, rotate_audit, &ctx);
    sodium_free(next);
    if (rc) {
        vg_log_error("api: KEK rotation failed, nothing changed: %s", vg_store_errmsg(q->api->st));
        if (vg_kek_source_discard_next(&q->api->kek_src, err, sizeof err) != 0)
            vg_log_error("api: KEK rotation: cannot remove the staged KEK: %s", err);
        (void)audit_alone(q, "keys.rotate-kek", "kek", "failure",
                          rc == VG_STORE_INTEGRITY ? "a wrapped key fails its integrity check"
                                                   : "store error");
        json_decref(body);
        problem(q, rc == VG_STORE_INTEGRITY ? 409 : 503, "KEK rotation failed",
                rc == VG_STORE_INTEGRITY
                    ? "a value sealed under the KEK fails its integrity check; nothing changed"
                    : "nothing changed; see the server log");
        return;
    }
    /* Committed: the database now opens only with the new KEK. */
    if (vg_kek_source_promote_next(&q->api->kek_src, err, sizeof err) != 0) {
        vg_log_error("api: KEK rotation committed but the new KEK could not replace the old "
                     "file (%s); both are kept and the next start finishes it", err);
    } else {
        vg_store_rotate_kek_done(q->api->st);
    }
    vg_log_warn("api: %s rotated the KEK (%d data keys rewrapped)", q->who.id, r.data_keys);
    json_decref(body);
    ok(q, 200, json_pack("{s:b, s:i, s:i, s:i}", "rotated", 1, "data_keys", r.data_keys,
                         "secrets", r.secrets, "other", r.other));
}

void vg_api_set_kek_source(struct vg_api *api, const struct vg_kek_source *src)
{
    api->kek_src = *src;
    api->has_kek_src = 1;
}

static void get_stats(struct req *q)
{
    struct vg_decision d;
    if (authorize(q, VG_ACT_STATS_READ, NULL, NULL, &d) != 0)
        return;
    struct vg_broker_stats s;
    vg_broker_stats(q->api->broker, &s);
    ok(q, 200,
       json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "connections_open",
                 (json_int_t)s.connections_open, "connections_accepted",
                 (json_int_t)s.connections_accepted, "connections_refused",
                 (json_int_t)s.connections_refused, "publishes", (json_int_t)s.publishes,
                 "readings_stored", (json_int_t)s.readings_stored, "readings_refused",
                 (json_int_t)s.readings_refused, "publishes_refused",
                 (json_int_t)s.publishes_refused, "protocol_errors",
                 (json_int_t)s.protocol_errors));
}

static void route(struct evhttp_request *r, void *arg)
{
    struct req q = {.api = arg, .r = r, .actor = "peer"};
    struct evhttp_connection *conn = evhttp_request_get_connection(r);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    if (bev)
        vg_tls_peer_addr(bufferevent_getfd(bev), q.source, sizeof q.source);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(r);
    const char *path = evhttp_uri_get_path(uri);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(r);
    if (!path)
        path = "/";

    if (!strcmp(path, "/healthz")) {
        if (cmd != EVHTTP_REQ_GET)
            problem(&q, 405, "Method not allowed", NULL);
        else
            ok(&q, 200, json_pack("{s:s}", "status", "ok"));
        return;
    }
    if (!strcmp(path, "/api/v1/login")) {
        if (cmd == EVHTTP_REQ_POST)
            post_login(&q);
        else
            problem(&q, 405, "Method not allowed", NULL);
        return;
    }
    if (authenticate(&q) != 0)
        return;

    static const char user_prefix[] = "/api/v1/users/";
    static const char token_prefix[] = "/api/v1/tokens/";
    static const char team_prefix[] = "/api/v1/careteam/";
    char seg[VG_ID_MAX + 2], what[16];
    if (!strcmp(path, "/api/v1/logout") && cmd == EVHTTP_REQ_POST) {
        post_logout(&q);
        return;
    }
    if (!strcmp(path, "/api/v1/me/password") && cmd == EVHTTP_REQ_PUT) {
        put_my_password(&q);
        return;
    }
    if (!strcmp(path, "/api/v1/users")) {
        if (cmd == EVHTTP_REQ_POST)
            post_user(&q);
        else if (cmd == EVHTTP_REQ_GET)
            get_users(&q);
        else
            problem(&q, 405, "Method not allowed", NULL);
        return;
    }
    if (!strncmp(path, user_prefix, sizeof user_prefix - 1)) {
        const char *rest = path + sizeof user_prefix - 1, *slash = strchr(rest, '/');
        size_t n = slash ? (size_t)(slash - rest) : 0;
        if (!slash || n == 0 || n > VG_ID_MAX || strlen(slash + 1) >= sizeof what) {
            problem(&q, 404, "No such route", NULL);
            return;
        }
        memcpy(seg, rest, n);
        seg[n] = '\0';
        vg_strlcpy(what, slash + 1, sizeof what);
        if (!vg_id_valid(seg))
            problem(&q, 404, "No such account", NULL);
        else
            user_action(&q, seg, what, cmd);
        return;
    }
    if (!strcmp(path, "/api/v1/tokens") && cmd == EVHTTP_REQ_POST) {
        post_token(&q);
        return;
    }
    if (!strncmp(path, token_prefix, sizeof token_prefix - 1) && cmd == EVHTTP_REQ_DELETE) {
        delete_token(&q, path + sizeof token_prefix - 1);
        return;
    }
    if (!strcmp(path, "/api/v1/careteam")) {
        if (cmd == EVHTTP_REQ_POST)
            post_careteam(&q);
        else if (cmd == EVHTTP_REQ_GET)
            get_careteam(&q, uri);
        else
            problem(&q, 405, "Method not allowed", NULL);
        return;
    }
    if (!strncmp(path, team_prefix, sizeof team_prefix - 1) && cmd == EVHTTP_REQ_DELETE) {
        delete_careteam(&q, path + sizeof team_prefix - 1);
        return;
    }
    static const char patient_prefix[] = "/api/v1/patients/";
    if (!strncmp(path, patient_prefix, sizeof patient_prefix - 1) && cmd == EVHTTP_REQ_POST) {
        const char *rest = path + sizeof patient_prefix - 1, *slash = strchr(rest, '/');
        size_t n = slash ? (size_t)(slash - rest) : 0;
        if (!slash || n == 0 || n > VG_ID_MAX ||
            (strcmp(slash + 1, "erase") && strcmp(slash + 1, "rotate-key"))) {
            problem(&q, 404, "No such route", NULL);
            return;
        }
        memcpy(seg, rest, n);
        seg[n] = '\0';
        if (!vg_id_valid(seg))
            problem(&q, 404, "No such patient", NULL);
        else
            patient_keys_action(&q, seg, slash + 1);
        return;
    }
    if (!strcmp(path, "/api/v1/breakglass") && cmd == EVHTTP_REQ_POST) {
        post_breakglass(&q);
        return;
    }

    static const char dev_prefix[] = "/api/v1/devices/";
    size_t dlen = sizeof dev_prefix - 1;
    char action_id[VG_ID_MAX + 1], action_verb[16];
    if (!strcmp(path, "/api/v1/patients")) {
        if (cmd == EVHTTP_REQ_POST)
            post_patient(&q);
        else
            problem(&q, 405, "Method not allowed", NULL);
    } else if (!strcmp(path, "/api/v1/devices")) {
        if (cmd == EVHTTP_REQ_POST)
            post_device(&q);
        else if (cmd == EVHTTP_REQ_GET)
            get_devices(&q);
        else
            problem(&q, 405, "Method not allowed", NULL);
    } else if (!strncmp(path, dev_prefix, dlen) && vg_id_valid(path + dlen)) {
        if (cmd == EVHTTP_REQ_GET)
            get_device(&q, path + dlen);
        else if (cmd == EVHTTP_REQ_PATCH)
            patch_device(&q, path + dlen);
        else
            problem(&q, 405, "Method not allowed", NULL);
    } else if (!strncmp(path, dev_prefix, dlen) && device_action_path(path + dlen, action_id, action_verb)) {
        if (cmd == EVHTTP_REQ_POST)
            device_action(&q, action_id, action_verb);
        else
            problem(&q, 405, "Method not allowed", NULL);
    } else if (!strncmp(path, dev_prefix, dlen) && strlen(path) > dlen + 8 &&
               !strcmp(path + strlen(path) - 8, "/patient")) {
        char device[VG_ID_MAX + 2];
        size_t idlen = strlen(path) - dlen - 8;
        if (idlen > VG_ID_MAX) {
            problem(&q, 404, "No such device", NULL);
            return;
        }
        memcpy(device, path + dlen, idlen);
        device[idlen] = '\0';
        if (cmd == EVHTTP_REQ_PUT)
            put_assignment(&q, device);
        else
            problem(&q, 405, "Method not allowed", NULL);
    } else if (!strcmp(path, "/fhir/Observation")) {
        if (cmd == EVHTTP_REQ_GET)
            get_observations(&q, uri);
        else
            problem(&q, 405, "Method not allowed", NULL);
    } else if (!strcmp(path, "/api/v1/audit") || !strcmp(path, "/api/v1/audit/export")) {
        if (cmd == EVHTTP_REQ_GET)
            get_audit(&q, uri, !strcmp(path, "/api/v1/audit/export"));
        else
            problem(&q, 405, "Method not allowed", NULL);
    } else if (!strcmp(path, "/api/v1/audit/verify")) {
        if (cmd == EVHTTP_REQ_GET)
            get_audit_verify(&q);
        else
            problem(&q, 405, "Method not allowed", NULL);
    } else if (!strcmp(path, "/api/v1/stats")) {
        get_stats(&q);
    } else if (!strcmp(path, "/api/v1/keys/rotate-kek")) {
        if (cmd == EVHTTP_REQ_POST)
            post_rotate_kek(&q);
        else
            problem(&q, 405, "Method not allowed", NULL);
    } else if (!strcmp(path, "/metrics")) {
        if (cmd == EVHTTP_REQ_GET)
            get_metrics(&q);
        else
            problem(&q, 405, "Method not allowed", NULL);
    } else {
        problem(&q, 404, "No such route", NULL);
    }
}

static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
    struct vg_api *api = arg;
    SSL *ssl = SSL_new(api->tls);
    if (!ssl)
        return NULL;
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

struct vg_api *vg_api_new(struct event_base *base, SSL_CTX *tls, const struct vg_config *cfg,
                          struct vg_store *st, const char *datadir, struct vg_broker *broker)
{
    struct vg_api *api = calloc(1, sizeof *api);
    if (!api)
        return NULL;
    api->base = base;
    api->tls = tls;
    api->cfg = cfg;
    api->st = st;
    api->broker = broker;
    snprintf(api->ca_cert, sizeof api->ca_cert, "%s/pki/ca.pem", datadir);
    snprintf(api->ca_key, sizeof api->ca_key, "%s/pki/ca.key", datadir);
    snprintf(api->audit_pub, sizeof api->audit_pub, "%s/keys/audit.pub", datadir);
    snprintf(api->checkpoint_log, sizeof api->checkpoint_log, "%s/audit/checkpoints.log", datadir);
    if (gethostname(api->observer, sizeof api->observer - 1) != 0)
        vg_strlcpy(api->observer, "vigil", sizeof api->observer);
    FILE *f = fopen(api->ca_cert, "re");
    if (f) {
        api->ca_pem = calloc(1, 16384);
        size_t n = api->ca_pem ? fread(api->ca_pem, 1, 16383, f) : 0;
        (void)n;
        fclose(f);
    }
    api->http = evhttp_new(base);
    if (!api->http || !api->ca_pem) {
        if (api->http)
            evhttp_free(api->http);
        free(api->ca_pem);
        free(api);
        return NULL;
    }
    evhttp_set_bevcb(api->http, make_bev, api);
    evhttp_set_gencb(api->http, route, api);
    /* Bodies up to the configured limit are read and judged (a 400 with a
     * problem body past it); evhttp drops anything four times larger
     * before buffering it. */
    evhttp_set_max_body_size(api->http, (ev_ssize_t)cfg->max_http_body_bytes * 4);
    evhttp_set_max_headers_size(api->http, 16384);
    evhttp_set_timeout(api->http, 30);
    evhttp_set_allowed_methods(api->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                              EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE);
    return api;
}

int vg_api_listen(struct vg_api *api, const char *addr, char *err, size_t err_size)
{
    char host[128], port[16];
    if (vg_config_split_addr(addr, host, sizeof host, port, sizeof port) != 0) {
        snprintf(err, err_size, "API listen address '%s': expected ADDR:PORT", addr);
        return -1;
    }
    if (!evhttp_bind_socket_with_handle(api->http, host, (ev_uint16_t)strtol(port, NULL, 10))) {
        snprintf(err, err_size, "cannot listen for HTTPS on %s", addr);
        return -1;
    }
    snprintf(api->base_url, sizeof api->base_url, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s",
             host, port);
    return 0;
}

void vg_api_free(struct vg_api *api)
{
    if (!api)
        return;
    evhttp_free(api->http);
    free(api->ca_pem);
    free(api);
}
