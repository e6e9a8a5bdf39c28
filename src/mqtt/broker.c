#include "mqtt/broker.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <jansson.h>
#include <sodium.h>
#include <openssl/err.h>

#include "core/log.h"
#include "ingest/reading.h"
#include "mqtt/codec.h"
#include "auth/policy.h"
#include "crypto/ca.h"
#include "net/tls.h"
#include "audit/audit.h"
#include "store/fleet.h"

#define CONN_BUCKETS 4096

enum conn_state { AWAIT_TLS, AWAIT_CONNECT, CONNECTED, CLOSING };

struct conn {
    uint64_t id;
    struct vg_broker *b;
    struct bufferevent *bev;
    enum conn_state state;
    char peer[64];
    char device[VG_ID_MAX + 1];
    char obs_topic[VG_ID_MAX + 32];
    char rejects_topic[VG_ID_MAX + 32];
    char info_topic[VG_ID_MAX + 32];
    int sub_rejects;
    /* For the inventory: when the session began and its TLS parameters. */
    int64_t connected_ms;
    char tls_version[16], cipher[64];
    /* A principal (person or application) receiving live data, rather than
     * a device: who it is, and the patients it subscribed to with when each
     * was last decided (decisions are re-checked at most a minute old, so a
     * care-team change or an expired break-glass takes effect). */
    int is_principal;
    struct vg_principal who;
    struct {
        char patient[VG_ID_MAX + 1];
        int64_t decided_ms;
    } subs[16];
    int nsubs;
    unsigned pending; /* jobs at the writer that will answer this conn */
    int paused;       /* reading stopped for back-pressure */
    int free_scheduled;
    struct conn *hnext;
};

struct vg_broker {
    struct event_base *base;
    SSL_CTX *tls;
    const struct vg_config *cfg;
    struct vg_writer *writer;
    struct vg_store *reader;
    struct evconnlistener *listener;
    struct event *done_ev;
    struct conn *conns[CONN_BUCKETS];
    uint64_t next_id;
    size_t nconns;
    int draining;
    struct vg_broker_stats stats;
    /* Device sightings for the inventory, written in one transaction every
     * few seconds rather than one fsync per connect on the loop. */
    struct seen_rec *seen;
    size_t nseen;
    struct event *seen_ev;
    unsigned seen_ticks;
    int seen_failing;
};

struct seen_rec {
    char device[VG_ID_MAX + 1];
    int64_t ms;
    char source[64], tls[16], cipher[64];
};

#define SEEN_MAX 4096
#define SEEN_FLUSH_S 5
/* Connected devices are refreshed every SEEN_FLUSH_S * SEEN_CONNECTED_EVERY s. */
#define SEEN_CONNECTED_EVERY 6

/* ---- connection table ---- */

static struct conn *conn_find(struct vg_broker *b, uint64_t id)
{
    for (struct conn *c = b->conns[id % CONN_BUCKETS]; c; c = c->hnext)
        if (c->id == id)
            return c;
    return NULL;
}

static void conn_unlink(struct conn *c)
{
    struct conn **pp = &c->b->conns[c->id % CONN_BUCKETS];
    while (*pp && *pp != c)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = c->hnext;
}

static void seen_note(struct vg_broker *b, const struct conn *c, int64_t ms);

static void conn_free(struct conn *c)
{
    struct vg_broker *b = c->b;
    if (c->connected_ms && !c->is_principal)
        seen_note(b, c, vg_now_ms());
    conn_unlink(c);
    b->nconns--;
    b->stats.connections_open = b->nconns;
    if (c->bev) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        /* A quiet shutdown skips waiting for the peer's close_notify. */
        if (ssl)
            SSL_set_quiet_shutdown(ssl, 0);
        bufferevent_free(c->bev);
    }
    free(c);
}

/* ---- audit through the writer ---- */

static void audit_target(struct vg_broker *b, struct conn *c, const char *action,
                         const char *target, const char *outcome, const char *detail,
                         uint16_t answer_packet, enum vg_reject notice)
{
    struct vg_job *j = vg_job_new(VG_JOB_AUDIT, 0);
    if (!j) {
        vg_log_error("mqtt: out of memory writing an audit record");
        return;
    }
    const char *kind = c->is_principal ? "user" : "device";
    if (c->device[0])
        snprintf(j->audit.actor, sizeof j->audit.actor, "%s:%s", kind, c->device);
    else
        snprintf(j->audit.actor, sizeof j->audit.actor, "peer");
    vg_strlcpy(j->audit.action, action, sizeof j->audit.action);
    if (target)
        vg_strlcpy(j->audit.target, target, sizeof j->audit.target);
    else if (c->device[0])
        snprintf(j->audit.target, sizeof j->audit.target, "%s:%s", kind, c->device);
    vg_strlcpy(j->audit.outcome, outcome, sizeof j->audit.outcome);
    vg_strlcpy(j->audit.detail, detail, sizeof j->audit.detail);
    vg_strlcpy(j->audit.source, c->peer, sizeof j->audit.source);
    if (answer_packet || notice != VG_REJECT_NONE) {
        j->conn_id = c->id;
        j->packet_id = answer_packet;
        j->qos = answer_packet ? 1 : 0;
        j->whole = notice;
        vg_strlcpy(j->whole_detail, detail, sizeof j->whole_detail);
        c->pending++;
    }
    vg_writer_submit(b->writer, j);
}

static void audit(struct vg_broker *b, struct conn *c, const char *action, const char *outcome,
                  const char *detail, uint16_t answer_packet, enum vg_reject notice)
{
    audit_target(b, c, action, NULL, outcome, detail, answer_packet, notice);
}

/* ---- the inventory's sightings ---- */

static int seen_write(struct vg_broker *b, const struct seen_rec *r)
{
    int rc = vg_fleet_device_seen(b->reader, r->device, r->ms, r->source, r->tls, r->cipher);
    return rc == VG_STORE_NOT_FOUND ? VG_STORE_OK : rc; /* deleted meanwhile: nothing to do */
}

static void seen_flush(struct vg_broker *b, int connected_too)
{
    if (!b->nseen && !connected_too)
        return;
    int64_t now = vg_now_ms();
    int rc = vg_store_begin(b->reader);
    for (size_t i = 0; i < b->nseen && !rc; i++)
        rc = seen_write(b, &b->seen[i]);
    for (size_t i = 0; i < CONN_BUCKETS && connected_too && !rc; i++)
        for (struct conn *c = b->conns[i]; c && !rc; c = c->hnext) {
            if (c->is_principal || c->state != CONNECTED)
                continue;
            struct seen_rec r = {.ms = now};
            vg_strlcpy(r.device, c->device, sizeof r.device);
            vg_strlcpy(r.source, c->peer, sizeof r.source);
            vg_strlcpy(r.tls, c->tls_version, sizeof r.tls);
            vg_strlcpy(r.cipher, c->cipher, sizeof r.cipher);
            rc = seen_write(b, &r);
        }
    if (!rc)
        rc = vg_store_commit(b->reader);
    if (rc) {
        vg_store_rollback(b->reader);
        /* Last-seen times are bookkeeping, not readings: they are dropped
         * rather than queued without bound while the store fails. */
        if (!b->seen_failing)
            vg_log_warn("mqtt: cannot record device sightings: %s", vg_store_errmsg(b->reader));
        b->seen_failing = 1;
    } else {
        b->seen_failing = 0;
    }
    b->nseen = 0;
}

static void seen_note(struct vg_broker *b, const struct conn *c, int64_t ms)
{
    if (b->nseen == SEEN_MAX)
        seen_flush(b, 0);
    struct seen_rec *r = &b->seen[b->nseen++];
    vg_strlcpy(r->device, c->device, sizeof r->device);
    r->ms = ms;
    vg_strlcpy(r->source, c->peer, sizeof r->source);
    vg_strlcpy(r->tls, c->tls_version, sizeof r->tls);
    vg_strlcpy(r->cipher, c->cipher, sizeof r->cipher);
}

static void seen_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vg_broker *b = arg;
    seen_flush(b, ++b->seen_ticks % SEEN_CONNECTED_EVERY == 0);
}

/* ---- output ---- */

static void send_bytes(struct conn *c, const uint8_t *p, size_t n)
{
    if (c->bev && n)
        bufferevent_write(c->bev, p, n);
}

/* A connection is never freed inside one of its own callbacks (the caller
 * may still be looping over its input): freeing is deferred to the next
 * turn of the loop. */
static void deferred_free(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_free(arg);
}

static void schedule_free(struct conn *c)
{
    if (c->free_scheduled)
        return;
    c->free_scheduled = 1;
    c->state = CLOSING;
    bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    struct timeval now = {0, 0};
    if (event_base_once(c->b->base, -1, EV_TIMEOUT, deferred_free, c, &now) != 0)
        vg_log_error("mqtt: cannot schedule closing a connection");
}

/* Closes after the output buffer has drained (so a CONNACK refusal or the
 * last PUBACK reaches the peer). */
static void close_write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct conn *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        schedule_free(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg);

static void conn_close(struct conn *c)
{
    if (c->state == CLOSING)
        return;
    c->state = CLOSING;
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        schedule_free(c);
        return;
    }
    bufferevent_setcb(c->bev, NULL, close_write_cb, event_cb, c);
    /* Do not wait forever on a peer that stops reading. */
    struct timeval tv = {5, 0};
    bufferevent_set_timeouts(c->bev, NULL, &tv);
}

static void protocol_error(struct conn *c, const char *why)
{
    c->b->stats.protocol_errors++;
    vg_log_warn("mqtt: %s %s: closing: %s", c->device[0] ? c->device : "peer", c->peer, why);
    conn_close(c);
}

/* A rejects notice goes to the device on vigil/v1/d/{id}/rejects if it
 * subscribed there. It names reasons and positions, never values. */
static void send_rejects(struct conn *c, const struct vg_job *j)
{
    if (!c->sub_rejects)
        return;
    json_t *o = json_object();
    if (j->packet_id)
        json_object_set_new(o, "packet_id", json_integer(j->packet_id));
    if (j->whole != VG_REJECT_NONE) {
        json_object_set_new(o, "reason", json_string(vg_reject_name(j->whole)));
        json_object_set_new(o, "detail", json_string(j->whole_detail));
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < j->n; i++) {
            if (j->items[i].reject == VG_REJECT_NONE)
                continue;
            json_t *e = json_object();
            json_object_set_new(e, "index", json_integer((json_int_t)i));
            json_object_set_new(e, "reason", json_string(vg_reject_name(j->items[i].reject)));
            json_object_set_new(e, "detail", json_string(j->items[i].detail));
            json_array_append_new(arr, e);
        }
        json_object_set_new(o, "stored", json_integer((json_int_t)j->stored));
        json_object_set_new(o, "rejected", arr);
    }
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text)
        return;
    size_t tlen = strlen(c->rejects_topic), plen = strlen(text);
    size_t need = vg_mqtt_publish_size(tlen, plen, 0);
    uint8_t *buf = need ? malloc(need) : NULL;
    size_t n = buf ? vg_mqtt_encode_publish(buf, need, c->rejects_topic, tlen,
                                            (const uint8_t *)text, plen, 0, 0, 0)
                   : 0;
    send_bytes(c, buf, n);
    free(buf);
    free(text);
}

/* ---- writer completions (on the loop thread) ---- */

static void resume_paused(struct vg_broker *b)
{
    if (b->draining)
        return;
    for (size_t i = 0; i < CONN_BUCKETS; i++)
        for (struct conn *c = b->conns[i]; c; c = c->hnext)
            if (c->paused && c->state == CONNECTED) {
                c->paused = 0;
                bufferevent_enable(c->bev, EV_READ);
            }
}

/* Live data: every stored reading goes to the principals subscribed to its
 * patient, on vigil/v1/p/{patient}/obs, normalised. A subscription whose
 * decision is over a minute old is decided again first (and dropped, with
 * an audit record, if it no longer holds). */
static void republish(struct vg_broker *b, const struct vg_job *j)
{
    if (j->kind != VG_JOB_READINGS || j->status != VG_STORE_OK || !j->stored || !j->patient[0])
        return;
    char topic[VG_ID_MAX + 32];
    snprintf(topic, sizeof topic, "vigil/v1/p/%s/obs", j->patient);
    int64_t now = vg_now_ms();
    for (size_t bucket = 0; bucket < CONN_BUCKETS; bucket++)
        for (struct conn *c = b->conns[bucket]; c; c = c->hnext) {
            if (!c->is_principal || c->state != CONNECTED)
                continue;
            int k;
            for (k = 0; k < c->nsubs; k++)
                if (!strcmp(c->subs[k].patient, j->patient))
                    break;
            if (k == c->nsubs)
                continue;
            if (now - c->subs[k].decided_ms > 60000) {
                struct vg_resource res = {j->patient, NULL};
                struct vg_decision d;
                vg_policy_decide(b->reader, &c->who, VG_ACT_OBS_SUBSCRIBE, &res, now, &d);
                if (!d.allow) {
                    char target[VG_ID_MAX + 16];
                    snprintf(target, sizeof target, "patient:%s", j->patient);
                    audit_target(b, c, "obs.subscribe", target, "denied", d.reason, 0, VG_REJECT_NONE);
                    c->subs[k] = c->subs[--c->nsubs];
                    continue;
                }
                c->subs[k].decided_ms = now;
            }
            for (size_t i = 0; i < j->n; i++) {
                const struct vg_reading_item *it = &j->items[i];
                if (it->reject != VG_REJECT_NONE)
                    continue;
                char t[32];
                vg_time_format(it->reading.time_ms, t);
                json_t *o = json_pack("{s:s, s:s, s:s, s:f, s:s, s:s}", "patient", j->patient,
                                      "device", j->device, "code", it->reading.code, "value",
                                      it->reading.value, "unit", it->reading.unit, "time", t);
                char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
                json_decref(o);
                if (!text)
                    continue;
                size_t tl = strlen(topic), plen = strlen(text);
                size_t need = vg_mqtt_publish_size(tl, plen, 0);
                uint8_t *buf = need ? malloc(need) : NULL;
                size_t n = buf ? vg_mqtt_encode_publish(buf, need, topic, tl, (const uint8_t *)text,
                                                        plen, 0, 0, 0)
                               : 0;
                send_bytes(c, buf, n);
                free(buf);
                sodium_memzero(text, plen);
                free(text);
            }
        }
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vg_broker *b = arg;
    struct vg_job *j = vg_writer_take_done(b->writer);
    while (j) {
        struct vg_job *next = j->next;
        if (j->kind == VG_JOB_READINGS && j->status == VG_STORE_OK) {
            b->stats.readings_stored += j->stored;
            b->stats.readings_refused += j->whole == VG_REJECT_NONE ? j->refused : 0;
        }
        republish(b, j);
        struct conn *c = j->conn_id ? conn_find(b, j->conn_id) : NULL;
        if (c) {
            c->pending--;
            if (c->state != CLOSING && j->status == VG_STORE_OK) {
                /* Durable now: acknowledge (invariant 3). */
                if (j->qos == 1 && j->packet_id) {
                    uint8_t ack[4];
                    send_bytes(c, ack, vg_mqtt_encode_puback(ack, sizeof ack, j->packet_id));
                }
                if (j->refused || j->whole != VG_REJECT_NONE)
                    send_rejects(c, j);
            }
            /* On failure nothing is acknowledged: a QoS 1 device resends. */
        }
        vg_job_free(j);
        j = next;
    }
    if (vg_writer_depth(b->writer) <= (size_t)b->cfg->writer_queue_max / 2)
        resume_paused(b);
}

void vg_broker_writer_notify(void *broker)
{
    struct vg_broker *b = broker;
    event_active(b->done_ev, EV_READ, 0);
}

/* ---- packet handlers ---- */

static void set_keepalive(struct conn *c, uint16_t keepalive)
{
    /* §3.1.2.10: the server closes a connection silent for 1.5 × keepalive.
     * vigil also caps the keepalive at max_keepalive_s (MQTT 3.1.1 has no
     * way to tell the client; MQTT 5's server keepalive will), and a
     * keepalive of 0 gets the cap: no connection may sit idle forever. */
    long ka = keepalive;
    if (ka == 0 || ka > c->b->cfg->max_keepalive_s)
        ka = c->b->cfg->max_keepalive_s;
    long ms = ka * 1500;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, &tv, NULL);
}

static void refuse_connect(struct conn *c, uint8_t rc, const char *detail)
{
    uint8_t out[4];
    c->b->stats.connections_refused++;
    vg_log_warn("mqtt: connect refused from %s (%s): %s", c->peer,
                c->device[0] ? c->device : "no id", detail);
    audit(c->b, c, "mqtt.connect", "refused", detail, 0, VG_REJECT_NONE);
    send_bytes(c, out, vg_mqtt_encode_connack(out, sizeof out, 0, rc));
    conn_close(c);
}

static void takeover(struct vg_broker *b, struct conn *fresh)
{
    /* §3.1.4-2: a second connection with the same client id replaces the
     * first. */
    for (size_t i = 0; i < CONN_BUCKETS; i++)
        for (struct conn *c = b->conns[i]; c; c = c->hnext)
            if (c != fresh && c->state == CONNECTED && c->is_principal == fresh->is_principal &&
                !strcmp(c->device, fresh->device)) {
                vg_log_info("mqtt: %s reconnected from %s; closing its older session", c->device,
                            fresh->peer);
                audit(b, c, "mqtt.takeover", "success", "a newer connection took over", 0,
                      VG_REJECT_NONE);
                conn_close(c);
                return;
            }
}

static void handle_connect(struct conn *c, const struct vg_mqtt_connect *m)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    char cn[VG_ID_MAX + 1];
    if (vg_tls_peer_cn(ssl, cn, sizeof cn) != 0 || !vg_id_valid(cn)) {
        refuse_connect(c, VG_CONNACK_NOT_AUTHORIZED, "certificate has no valid device id (CN)");
        return;
    }
    vg_strlcpy(c->device, cn, sizeof c->device);
    c->is_principal = vg_tls_peer_has_ou(ssl, VG_CA_PRINCIPAL_OU);
    if (m->client_id.len != strlen(cn) || memcmp(m->client_id.p, cn, m->client_id.len) != 0) {
        refuse_connect(c, VG_CONNACK_ID_REJECTED,
                       c->is_principal ? "client id does not equal the certificate's principal id"
                                       : "client id does not equal the certificate's device id");
        return;
    }
    if (c->is_principal) {
        char fp[65], enrolled[65];
        int prc = vg_account_get_for_cert(c->b->reader, cn, vg_now_ms(), &c->who, enrolled);
        if (prc != VG_STORE_OK) {
            refuse_connect(c, prc == VG_STORE_NOT_FOUND ? VG_CONNACK_NOT_AUTHORIZED : VG_CONNACK_UNAVAILABLE,
                           prc == VG_STORE_NOT_FOUND ? "no such principal, or it is disabled"
                                                     : "account registry unavailable");
            return;
        }
        if (strlen(enrolled) != 64 || vg_tls_peer_fingerprint(ssl, fp) != 0 ||
            !vg_ct_equal((const uint8_t *)fp, (const uint8_t *)enrolled, 64)) {
            refuse_connect(c, VG_CONNACK_NOT_AUTHORIZED,
                           "certificate is not the one issued to this principal");
            return;
        }
        takeover(c->b, c);
        c->state = CONNECTED;
        set_keepalive(c, m->keepalive);
        c->b->stats.connections_accepted++;
        uint8_t out[4];
        send_bytes(c, out, vg_mqtt_encode_connack(out, sizeof out, 0, VG_CONNACK_ACCEPTED));
        vg_log_info("mqtt: principal %s connected from %s for live data", cn, c->peer);
        audit(c->b, c, "mqtt.connect", "success", "principal, live data", 0, VG_REJECT_NONE);
        return;
    }
    struct vg_device_info dev;
    int rc = vg_store_device_get(c->b->reader, cn, &dev);
    if (rc == VG_STORE_NOT_FOUND) {
        refuse_connect(c, VG_CONNACK_NOT_AUTHORIZED, "device is not enrolled");
        return;
    }
    if (rc != VG_STORE_OK) {
        refuse_connect(c, VG_CONNACK_UNAVAILABLE, "device registry unavailable");
        return;
    }
    char fp[65];
    if (strcmp(dev.status, "active") != 0) {
        refuse_connect(c, VG_CONNACK_NOT_AUTHORIZED, "device is not active");
        return;
    }
    if (vg_tls_peer_fingerprint(ssl, fp) != 0 ||
        !vg_ct_equal((const uint8_t *)fp, (const uint8_t *)dev.cert_fingerprint, 64)) {
        refuse_connect(c, VG_CONNACK_NOT_AUTHORIZED,
                       "certificate is not the one this device was enrolled with");
        return;
    }
    int quarantined = vg_fleet_quarantined(c->b->reader, cn);
    if (quarantined != 0) {
        refuse_connect(c, quarantined > 0 ? VG_CONNACK_NOT_AUTHORIZED : VG_CONNACK_UNAVAILABLE,
                       quarantined > 0 ? "device is quarantined" : "device registry unavailable");
        return;
    }
    snprintf(c->obs_topic, sizeof c->obs_topic, "vigil/v1/d/%s/obs", cn);
    snprintf(c->rejects_topic, sizeof c->rejects_topic, "vigil/v1/d/%s/rejects", cn);
    snprintf(c->info_topic, sizeof c->info_topic, "vigil/v1/d/%s/info", cn);
    takeover(c->b, c);
    c->state = CONNECTED;
    set_keepalive(c, m->keepalive);
    c->b->stats.connections_accepted++;
    uint8_t out[4];
    send_bytes(c, out, vg_mqtt_encode_connack(out, sizeof out, 0, VG_CONNACK_ACCEPTED));
    const char *cipher = SSL_get_cipher_name(ssl);
    vg_strlcpy(c->tls_version, SSL_get_version(ssl), sizeof c->tls_version);
    vg_strlcpy(c->cipher, cipher ? cipher : "", sizeof c->cipher);
    c->connected_ms = vg_now_ms();
    seen_note(c->b, c, c->connected_ms);
    char detail[128];
    snprintf(detail, sizeof detail, "%s %s", c->tls_version, c->cipher);
    vg_log_info("mqtt: %s connected from %s (%s)", cn, c->peer, detail);
    audit(c->b, c, "mqtt.connect", "success", detail, 0, VG_REJECT_NONE);
}

/* A device describing itself on vigil/v1/d/{id}/info (usually retained):
 * {"manufacturer":..., "model":..., "serial":..., "firmware":..., "class":...}.
 * Stored with its audit record in one transaction on the loop's handle (a
 * rare message), acknowledged after the commit. Location and patient are
 * not the device's to say: administrators set those. */
static int info_field(json_t *v, const char **out, char *why, size_t why_size, const char *key)
{
    const char *s = json_string_value(v);
    size_t len = s ? strlen(s) : 0;
    if (!s || len == 0 || len >= VG_FLEET_TEXT) {
        snprintf(why, why_size, "'%s' must be a string of 1 to %d bytes", key, VG_FLEET_TEXT - 1);
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            snprintf(why, why_size, "'%s' contains a control character", key);
            return -1;
        }
    *out = s;
    return 0;
}

static void handle_info(struct conn *c, const struct vg_mqtt_publish *p)
{
    struct vg_broker *b = c->b;
    char why[160] = "";
    struct vg_device_info_update u = {0};
    json_error_t e;
    json_t *o = p->payload.len <= 4096
                    ? json_loadb((const char *)p->payload.p, p->payload.len,
                                 JSON_REJECT_DUPLICATES, &e)
                    : NULL;
    if (!json_is_object(o) || json_object_size(o) == 0) {
        snprintf(why, sizeof why, "the info payload must be a non-empty JSON object of at most 4096 bytes");
    } else {
        const char *key;
        json_t *v;
        json_object_foreach(o, key, v) {
            const char **slot = !strcmp(key, "manufacturer") ? &u.manufacturer
                                : !strcmp(key, "model")      ? &u.model
                                : !strcmp(key, "serial")     ? &u.serial
                                : !strcmp(key, "firmware")   ? &u.firmware
                                : !strcmp(key, "class")      ? &u.device_class
                                                             : NULL;
            if (!slot) {
                snprintf(why, sizeof why,
                         "unknown member (allowed: manufacturer, model, serial, firmware, class)");
                break;
            }
            if (info_field(v, slot, why, sizeof why, key) != 0)
                break;
        }
        if (!why[0] && u.device_class && !vg_fleet_class_lookup(u.device_class))
            snprintf(why, sizeof why, "unknown device class (see `vigil device classes`)");
    }
    if (why[0]) {
        json_decref(o);
        b->stats.publishes_refused++;
        vg_log_warn("mqtt: %s sent an invalid info message; refused", c->device);
        audit(b, c, "device.info", "refused", why, p->qos ? p->packet_id : 0, VG_REJECT_MALFORMED);
        return;
    }
    char detail[192];
    snprintf(detail, sizeof detail, "%s%s%s%s", u.model ? "model " : "", u.model ? u.model : "",
             u.firmware ? " firmware " : "", u.firmware ? u.firmware : "");
    char actor[VG_ID_MAX + 8], target[VG_ID_MAX + 8];
    snprintf(actor, sizeof actor, "device:%s", c->device);
    snprintf(target, sizeof target, "device:%s", c->device);
    struct vg_audit_event ev = {0, actor, "device.info", target, "success", detail, c->peer};
    int rc = vg_store_begin(b->reader);
    if (!rc)
        rc = vg_fleet_device_describe(b->reader, c->device, &u, vg_now_ms());
    if (!rc)
        rc = vg_audit_append(b->reader, &ev);
    if (!rc)
        rc = vg_store_commit(b->reader);
    json_decref(o);
    if (rc) {
        vg_store_rollback(b->reader);
        vg_log_error("mqtt: cannot store %s's info: %s", c->device, vg_store_errmsg(b->reader));
        return; /* not acknowledged: the device resends */
    }
    vg_log_info("mqtt: %s described itself (%s)", c->device, detail);
    if (p->qos == 1) {
        uint8_t ack[4];
        send_bytes(c, ack, vg_mqtt_encode_puback(ack, sizeof ack, p->packet_id));
    }
}

static void handle_publish(struct conn *c, const struct vg_mqtt_publish *p)
{
    struct vg_broker *b = c->b;
    b->stats.publishes++;
    if (p->qos > 1) {
        /* QoS 2 arrives with the full broker (issue 7); closing is the only
         * refusal MQTT 3.1.1 has for it. */
        protocol_error(c, "QoS 2 is not supported");
        return;
    }
    if (!c->is_principal && p->topic.len == strlen(c->info_topic) &&
        !memcmp(p->topic.p, c->info_topic, p->topic.len)) {
        handle_info(c, p);
        return;
    }
    /* The decision point sees which device's topic this is; only the
     * device itself may publish there (and nobody else publishes at all). */
    char topic_dev[VG_ID_MAX + 1] = "";
    static const char prefix[] = "vigil/v1/d/";
    size_t pl = sizeof prefix - 1;
    if (p->topic.len > pl + 4 && !memcmp(p->topic.p, prefix, pl) &&
        !memcmp(p->topic.p + p->topic.len - 4, "/obs", 4) && p->topic.len - pl - 4 <= VG_ID_MAX) {
        memcpy(topic_dev, p->topic.p + pl, p->topic.len - pl - 4);
        topic_dev[p->topic.len - pl - 4] = '\0';
    }
    struct vg_principal dev_who = {0};
    vg_strlcpy(dev_who.id, c->device, sizeof dev_who.id);
    vg_strlcpy(dev_who.kind, "device", sizeof dev_who.kind);
    struct vg_resource res = {NULL, topic_dev[0] && vg_id_valid(topic_dev) ? topic_dev : NULL};
    struct vg_decision dec;
    vg_policy_decide(b->reader, c->is_principal ? &c->who : &dev_who, VG_ACT_DEVICE_PUBLISH, &res,
                     vg_now_ms(), &dec);
    if (!dec.allow) {
        b->stats.publishes_refused++;
        vg_log_warn("mqtt: %s published to a topic it may not use; refused", c->device);
        /* Acknowledged (after the refusal is audited) so the device does not
         * resend it forever; nothing is stored. */
        audit(b, c, "mqtt.publish", "refused",
              c->is_principal ? "only devices publish readings"
                              : "a device may publish only to vigil/v1/d/{its id}/obs",
              p->packet_id, VG_REJECT_TOPIC);
        return;
    }
    int64_t now = vg_now_ms();
    struct vg_reading_item items[VG_READINGS_MAX];
    size_t count = 0;
    char detail[128] = "";
    enum vg_reject whole = vg_reading_decode(p->payload.p, p->payload.len, now, items,
                                             VG_READINGS_MAX, &count, detail, sizeof detail);
    struct vg_job *j = vg_job_new(VG_JOB_READINGS, whole == VG_REJECT_NONE ? count : 0);
    if (!j) {
        protocol_error(c, "out of memory");
        return;
    }
    if (whole != VG_REJECT_NONE) {
        b->stats.publishes_refused++;
        j->whole = whole;
        vg_strlcpy(j->whole_detail, detail, sizeof j->whole_detail);
    } else {
        memcpy(j->items, items, count * sizeof items[0]);
    }
    sodium_memzero(items, sizeof items);
    vg_strlcpy(j->device, c->device, sizeof j->device);
    vg_strlcpy(j->source, c->peer, sizeof j->source);
    j->received_ms = now;
    j->conn_id = c->id;
    j->packet_id = p->packet_id;
    j->qos = p->qos;
    c->pending++;
    vg_writer_submit(b->writer, j);
    /* Back-pressure: stop reading this device until the writer catches up;
     * TCP then pushes back on the device instead of memory growing here. */
    if (vg_writer_depth(b->writer) > (size_t)b->cfg->writer_queue_max) {
        c->paused = 1;
        bufferevent_disable(c->bev, EV_READ);
    }
}

/* A principal's SUBSCRIBE to vigil/v1/p/{patient}/obs: one patient per
 * filter (no wildcards: each patient is its own decision), decided and
 * audited whatever the outcome. */
static uint8_t subscribe_patient(struct conn *c, const struct vg_mqtt_str *f)
{
    static const char prefix[] = "vigil/v1/p/";
    size_t pl = sizeof prefix - 1;
    char patient[VG_ID_MAX + 1] = "";
    if (f->len > pl + 4 && !memcmp(f->p, prefix, pl) && !memcmp(f->p + f->len - 4, "/obs", 4) &&
        f->len - pl - 4 <= VG_ID_MAX) {
        memcpy(patient, f->p + pl, f->len - pl - 4);
        patient[f->len - pl - 4] = '\0';
    }
    if (!vg_id_valid(patient)) {
        audit(c->b, c, "obs.subscribe", "denied",
              "subscribe to vigil/v1/p/{patient}/obs, one patient per filter, no wildcards", 0,
              VG_REJECT_NONE);
        return VG_SUBACK_FAILURE;
    }
    char target[VG_ID_MAX + 16];
    snprintf(target, sizeof target, "patient:%s", patient);
    struct vg_resource res = {patient, NULL};
    struct vg_decision d;
    int64_t now = vg_now_ms();
    vg_policy_decide(c->b->reader, &c->who, VG_ACT_OBS_SUBSCRIBE, &res, now, &d);
    if (!d.allow) {
        audit_target(c->b, c, "obs.subscribe", target, "denied", d.reason, 0, VG_REJECT_NONE);
        return VG_SUBACK_FAILURE;
    }
    int slot = -1;
    for (int i = 0; i < c->nsubs; i++)
        if (!strcmp(c->subs[i].patient, patient))
            slot = i;
    if (slot < 0) {
        if (c->nsubs == (int)(sizeof c->subs / sizeof c->subs[0])) {
            audit_target(c->b, c, "obs.subscribe", target, "refused", "too many subscriptions", 0,
                         VG_REJECT_NONE);
            return VG_SUBACK_FAILURE;
        }
        slot = c->nsubs++;
        vg_strlcpy(c->subs[slot].patient, patient, sizeof c->subs[slot].patient);
    }
    c->subs[slot].decided_ms = now;
    char detail[400];
    snprintf(detail, sizeof detail, "live readings, basis %s%s%s", d.basis,
             d.breakglass_reason[0] ? ", break-glass reason: " : "", d.breakglass_reason);
    audit_target(c->b, c, "obs.subscribe", target, "success", detail, 0, VG_REJECT_NONE);
    return 0; /* granted at QoS 0 */
}

static void handle_subscribe(struct conn *c, const struct vg_mqtt_subscribe *s)
{
    uint8_t codes[VG_MQTT_MAX_FILTERS];
    if (c->is_principal) {
        for (size_t i = 0; i < s->count; i++)
            codes[i] = subscribe_patient(c, &s->filters[i]);
        uint8_t out[4 + VG_MQTT_MAX_FILTERS];
        send_bytes(c, out, vg_mqtt_encode_suback(out, sizeof out, s->packet_id, codes, s->count));
        return;
    }
    for (size_t i = 0; i < s->count; i++) {
        if (s->filters[i].len == strlen(c->rejects_topic) &&
            !memcmp(s->filters[i].p, c->rejects_topic, s->filters[i].len)) {
            c->sub_rejects = 1;
            codes[i] = 0; /* notices are sent at QoS 0 */
        } else {
            codes[i] = VG_SUBACK_FAILURE;
            audit(c->b, c, "mqtt.subscribe", "denied",
                  "a device may subscribe only to vigil/v1/d/{its id}/rejects", 0,
                  VG_REJECT_NONE);
        }
    }
    uint8_t out[4 + VG_MQTT_MAX_FILTERS];
    send_bytes(c, out, vg_mqtt_encode_suback(out, sizeof out, s->packet_id, codes, s->count));
}

static void handle_unsubscribe(struct conn *c, const struct vg_mqtt_subscribe *s)
{
    for (size_t i = 0; i < s->count && c->is_principal; i++)
        for (int k = 0; k < c->nsubs; k++) {
            char topic[VG_ID_MAX + 32];
            snprintf(topic, sizeof topic, "vigil/v1/p/%s/obs", c->subs[k].patient);
            if (s->filters[i].len == strlen(topic) && !memcmp(s->filters[i].p, topic, strlen(topic))) {
                c->subs[k] = c->subs[--c->nsubs];
                break;
            }
        }
    for (size_t i = 0; i < s->count; i++)
        if (s->filters[i].len == strlen(c->rejects_topic) &&
            !memcmp(s->filters[i].p, c->rejects_topic, s->filters[i].len))
            c->sub_rejects = 0;
    uint8_t out[4];
    send_bytes(c, out, vg_mqtt_encode_unsuback(out, sizeof out, s->packet_id));
}

static const char *rc_text(int rc)
{
    switch (rc) {
    case VG_MQTT_TOO_LARGE: return "packet larger than max_packet_bytes";
    case VG_MQTT_LIMIT: return "packet beyond a protocol limit";
    case VG_MQTT_BAD_PROTOCOL: return "unsupported protocol version";
    default: return "malformed packet";
    }
}

static void handle_packet(struct conn *c, const uint8_t *pkt, size_t len)
{
    struct vg_mqtt_packet m;
    int rc = vg_mqtt_decode(pkt, len, &m);
    if (rc == VG_MQTT_BAD_PROTOCOL && c->state == AWAIT_CONNECT) {
        refuse_connect(c, VG_CONNACK_BAD_PROTOCOL, "unsupported MQTT protocol version");
        return;
    }
    if (rc != VG_MQTT_OK) {
        protocol_error(c, rc_text(rc));
        return;
    }
    if (c->state == AWAIT_CONNECT) {
        /* §3.1.0-1: the first packet must be CONNECT. */
        if (m.type != VG_MQTT_CONNECT) {
            protocol_error(c, "first packet is not CONNECT");
            return;
        }
        handle_connect(c, &m.u.connect);
        return;
    }
    switch (m.type) {
    case VG_MQTT_PUBLISH: handle_publish(c, &m.u.publish); break;
    case VG_MQTT_SUBSCRIBE: handle_subscribe(c, &m.u.subscribe); break;
    case VG_MQTT_UNSUBSCRIBE: handle_unsubscribe(c, &m.u.subscribe); break;
    case VG_MQTT_PINGREQ: {
        uint8_t out[2];
        send_bytes(c, out, vg_mqtt_encode_pingresp(out, sizeof out));
        break;
    }
    case VG_MQTT_PUBACK: break; /* vigil sends only QoS 0 to devices */
    case VG_MQTT_DISCONNECT:
        vg_log_info("mqtt: %s disconnected", c->device);
        audit(c->b, c, "mqtt.disconnect", "success", "DISCONNECT from the device", 0,
              VG_REJECT_NONE);
        conn_close(c);
        break;
    case VG_MQTT_CONNECT: protocol_error(c, "second CONNECT"); break; /* §3.1.0-2 */
    default: protocol_error(c, "packet type not valid from a client"); break;
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (c->state == AWAIT_CONNECT || c->state == CONNECTED) {
        size_t avail = evbuffer_get_length(in);
        if (avail < 2)
            return;
        /* Input is bounded by the read watermark (max_packet_bytes + 16),
         * so making it contiguous costs at most one packet's copy. */
        const uint8_t *head = evbuffer_pullup(in, -1);
        size_t hl, total;
        /* Tighter limit before CONNECT is accepted (style.md #2). */
        size_t max = c->state == CONNECTED ? (size_t)c->b->cfg->max_packet_bytes : 4096;
        int rc = vg_mqtt_frame(head, avail, max, &hl, &total);
        if (rc == VG_MQTT_NEED_MORE)
            return;
        if (rc != VG_MQTT_OK) {
            protocol_error(c, rc_text(rc));
            return;
        }
        handle_packet(c, head, total);
        if (c->state == CLOSING)
            return;
        evbuffer_drain(in, total);
        if (c->paused)
            return;
    }
}

static const char *tls_refusal(struct bufferevent *bev, char *buf, size_t size)
{
    unsigned long e = bufferevent_get_openssl_error(bev);
    if (!e)
        return "connection closed during TLS handshake";
    const char *reason = ERR_reason_error_string(e);
    snprintf(buf, size, "TLS handshake failed: %s", reason ? reason : "unknown reason");
    while (bufferevent_get_openssl_error(bev))
        ;
    return buf;
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        c->state = AWAIT_CONNECT;
        return;
    }
    if (c->state == CLOSING) {
        schedule_free(c);
        return;
    }
    if (c->state == AWAIT_TLS) {
        char buf[160];
        const char *why = (what & BEV_EVENT_TIMEOUT) ? "TLS handshake not finished in time"
                                                       : tls_refusal(bev, buf, sizeof buf);
        c->b->stats.connections_refused++;
        vg_log_warn("mqtt: connection from %s refused: %s", c->peer, why);
        audit(c->b, c, "tls.handshake", "refused", why, 0, VG_REJECT_NONE);
        schedule_free(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        const char *why = c->state == AWAIT_CONNECT ? "no CONNECT in time" : "keepalive expired";
        vg_log_info("mqtt: %s %s: %s", c->device[0] ? c->device : "peer", c->peer, why);
        if (c->state == AWAIT_CONNECT)
            audit(c->b, c, "mqtt.connect", "refused", why, 0, VG_REJECT_NONE);
        else
            audit(c->b, c, "mqtt.disconnect", "success", why, 0, VG_REJECT_NONE);
    } else if (c->state == CONNECTED) {
        vg_log_info("mqtt: %s disconnected", c->device);
        audit(c->b, c, "mqtt.disconnect", "success", "connection closed by the device", 0,
              VG_REJECT_NONE);
    }
    schedule_free(c);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    struct vg_broker *b = arg;
    if (b->draining || b->nconns >= (size_t)b->cfg->max_connections) {
        vg_log_warn("mqtt: connection refused: %s",
                    b->draining ? "shutting down" : "max_connections reached");
        b->stats.connections_refused++;
        evutil_closesocket(fd);
        return;
    }
    int one = 1;
    /* Small MQTT packets must not wait on Nagle's algorithm. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL *ssl = SSL_new(b->tls);
    struct conn *c = calloc(1, sizeof *c);
    if (!ssl || !c) {
        SSL_free(ssl);
        free(c);
        evutil_closesocket(fd);
        return;
    }
    c->b = b;
    c->id = ++b->next_id;
    c->state = AWAIT_TLS;
    vg_tls_peer_addr(fd, c->peer, sizeof c->peer);
    c->bev = bufferevent_openssl_socket_new(b->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        SSL_free(ssl);
        free(c);
        evutil_closesocket(fd);
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    c->hnext = b->conns[c->id % CONN_BUCKETS];
    b->conns[c->id % CONN_BUCKETS] = c;
    b->nconns++;
    b->stats.connections_open = b->nconns;
    /* Slow-loris guard: TLS handshake and CONNECT within the deadline. */
    struct timeval tv = {b->cfg->connect_timeout_s, 0};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    /* Pre-CONNECT input is bounded by the 4 KiB frame limit in read_cb;
     * the watermark bounds what a connected peer can queue unread. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, (size_t)b->cfg->max_packet_bytes + 16);
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* ---- lifecycle ---- */

struct vg_broker *vg_broker_new(struct event_base *base, SSL_CTX *tls,
                                const struct vg_config *cfg, struct vg_writer *writer,
                                struct vg_store *reader)
{
    struct vg_broker *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->base = base;
    b->tls = tls;
    b->cfg = cfg;
    b->writer = writer;
    b->reader = reader;
    b->done_ev = event_new(base, -1, 0, done_cb, b);
    b->seen = calloc(SEEN_MAX, sizeof *b->seen);
    b->seen_ev = event_new(base, -1, EV_PERSIST, seen_timer_cb, b);
    struct timeval every = {SEEN_FLUSH_S, 0};
    if (!b->done_ev || !b->seen || !b->seen_ev || event_add(b->seen_ev, &every) != 0) {
        if (b->done_ev)
            event_free(b->done_ev);
        if (b->seen_ev)
            event_free(b->seen_ev);
        free(b->seen);
        free(b);
        return NULL;
    }
    return b;
}

static void listener_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    vg_log_error("mqtt: accept failed: %s", strerror(errno));
}

int vg_broker_listen(struct vg_broker *b, const char *addr, char *err, size_t err_size)
{
    char host[128], port[16];
    if (vg_config_split_addr(addr, host, sizeof host, port, sizeof port) != 0) {
        snprintf(err, err_size, "MQTT listen address '%s': expected ADDR:PORT", addr);
        return -1;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, err_size, "MQTT listen address '%s': %s", addr, gai_strerror(gai));
        return -1;
    }
    b->listener = evconnlistener_new_bind(b->base, accept_cb, b,
                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                              LEV_OPT_CLOSE_ON_EXEC,
                                          1024, res->ai_addr, (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (!b->listener) {
        snprintf(err, err_size, "cannot listen for MQTT on %s: %s", addr, strerror(errno));
        return -1;
    }
    evconnlistener_set_error_cb(b->listener, listener_error_cb);
    return 0;
}

void vg_broker_drain(struct vg_broker *b)
{
    b->draining = 1;
    if (b->listener)
        evconnlistener_disable(b->listener);
    for (size_t i = 0; i < CONN_BUCKETS; i++)
        for (struct conn *c = b->conns[i]; c; c = c->hnext)
            bufferevent_disable(c->bev, EV_READ);
}

int vg_broker_idle(struct vg_broker *b)
{
    if (vg_writer_depth(b->writer) != 0)
        return 0;
    for (size_t i = 0; i < CONN_BUCKETS; i++)
        for (struct conn *c = b->conns[i]; c; c = c->hnext)
            if (c->pending || evbuffer_get_length(bufferevent_get_output(c->bev)))
                return 0;
    return 1;
}

void vg_broker_stats(const struct vg_broker *b, struct vg_broker_stats *out) { *out = b->stats; }

struct vg_writer *vg_broker_writer(struct vg_broker *b) { return b->writer; }

int vg_broker_disconnect_device(struct vg_broker *b, const char *id, const char *why)
{
    int n = 0;
    for (size_t i = 0; i < CONN_BUCKETS; i++)
        for (struct conn *c = b->conns[i]; c; c = c->hnext)
            if (!c->is_principal && c->state == CONNECTED && !strcmp(c->device, id)) {
                char detail[64];
                snprintf(detail, sizeof detail, "session closed: device %s", why);
                audit(b, c, "mqtt.disconnect", "success", detail, 0, VG_REJECT_NONE);
                conn_close(c);
                n++;
            }
    return n;
}

void vg_broker_free(struct vg_broker *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < CONN_BUCKETS; i++)
        while (b->conns[i])
            conn_free(b->conns[i]);
    seen_flush(b, 0);
    if (b->listener)
        evconnlistener_free(b->listener);
    event_free(b->done_ev);
    event_free(b->seen_ev);
    free(b->seen);
    free(b);
}
