/* libFuzzer harness for mqtt/codec.
 *
 * The input is treated as a byte stream from a peer: framed packet by packet
 * with the gateway's 64 KiB maximum, and each whole frame decoded. Decoded
 * packets are re-encoded where the codec has an encoder for them, and the
 * re-decoded packet must equal the first (abort() otherwise). The same bytes,
 * cut in two, also exercise the topic rules and matcher, with invariants
 * that must hold for any valid filter and topic.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/codec.h"

#define MAX_PACKET 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static int str_same(struct vg_mqtt_str a, struct vg_mqtt_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* A borrowed string lies inside the packet it was decoded from. */
static void check_within(struct vg_mqtt_str s, const uint8_t *pkt, size_t len)
{
    check(s.len <= len);
    if (s.len > 0)
        check(s.p >= pkt && s.p + s.len <= pkt + len);
}

/* Copies a decoded string into a NUL-terminated buffer for the char*
 * encoders; 0 if it holds a NUL (only binary fields may) and so cannot be
 * passed as a C string. */
static int to_cstr(struct vg_mqtt_str s, char *buf, size_t cap)
{
    if (s.len >= cap || (s.len > 0 && memchr(s.p, 0, s.len)))
        return 0;
    if (s.len > 0)
        memcpy(buf, s.p, s.len);
    buf[s.len] = '\0';
    return 1;
}

static void roundtrip_publish(const struct vg_mqtt_publish *m)
{
    static uint8_t out[MAX_PACKET + 8];
    struct vg_mqtt_packet again;
    size_t want = vg_mqtt_publish_size(m->topic.len, m->payload.len, m->qos);
    size_t n = vg_mqtt_encode_publish(out, sizeof out, (const char *)m->topic.p, m->topic.len,
                                      m->payload.p, m->payload.len, m->qos, m->retain,
                                      m->packet_id);
    /* It fitted in MAX_PACKET bytes with any length encoding; ours is
     * minimal, so it fits here. */
    check(n != 0 && n == want);
    check(vg_mqtt_decode(out, n, &again) == VG_MQTT_OK);
    check(again.type == VG_MQTT_PUBLISH);
    const struct vg_mqtt_publish *r = &again.u.publish;
    check(r->qos == m->qos && r->retain == m->retain && r->packet_id == m->packet_id);
    check(r->dup == 0); /* the encoder never sets DUP */
    check(str_same(r->topic, m->topic) && str_same(r->payload, m->payload));
    /* One byte short must fail, not write past the end. */
    check(vg_mqtt_encode_publish(out, n - 1, (const char *)m->topic.p, m->topic.len,
                                 m->payload.p, m->payload.len, m->qos, m->retain,
                                 m->packet_id) == 0);
}

static void roundtrip_subscribe(const struct vg_mqtt_subscribe *m)
{
    static char filter[MAX_PACKET + 1];
    static uint8_t out[MAX_PACKET + 8];
    struct vg_mqtt_packet again;
    if (m->count != 1 || !to_cstr(m->filters[0], filter, sizeof filter))
        return;
    size_t n = vg_mqtt_encode_subscribe(out, sizeof out, m->packet_id, filter, m->qos[0]);
    check(n != 0);
    check(vg_mqtt_decode(out, n, &again) == VG_MQTT_OK);
    check(again.type == VG_MQTT_SUBSCRIBE && again.u.subscribe.count == 1);
    check(again.u.subscribe.packet_id == m->packet_id);
    check(again.u.subscribe.qos[0] == m->qos[0]);
    check(str_same(again.u.subscribe.filters[0], m->filters[0]));
}

static void roundtrip_connect(const struct vg_mqtt_connect *m)
{
    static char id[MAX_PACKET + 1], user[MAX_PACKET + 1], pass[MAX_PACKET + 1];
    static uint8_t out[MAX_PACKET + 8];
    struct vg_mqtt_packet again;
    /* Our encoder speaks 3.1.1 only and has no will. */
    if (m->protocol_level != 4 || m->has_will)
        return;
    if (!to_cstr(m->client_id, id, sizeof id) ||
        (m->has_username && !to_cstr(m->username, user, sizeof user)) ||
        (m->has_password && !to_cstr(m->password, pass, sizeof pass)))
        return;
    size_t n = vg_mqtt_encode_connect(out, sizeof out, id, m->keepalive, m->clean_session,
                                      m->has_username ? user : NULL,
                                      m->has_password ? pass : NULL);
    check(n != 0);
    check(vg_mqtt_decode(out, n, &again) == VG_MQTT_OK);
    const struct vg_mqtt_connect *r = &again.u.connect;
    check(again.type == VG_MQTT_CONNECT && r->protocol_level == 4);
    check(r->keepalive == m->keepalive && r->clean_session == m->clean_session);
    check(r->has_username == m->has_username && r->has_password == m->has_password);
    check(str_same(r->client_id, m->client_id));
    check(!m->has_username || str_same(r->username, m->username));
    check(!m->has_password || str_same(r->password, m->password));
}

static void check_packet(const struct vg_mqtt_packet *p, const uint8_t *pkt, size_t len)
{
    switch (p->type) {
    case VG_MQTT_CONNECT: {
        const struct vg_mqtt_connect *c = &p->u.connect;
        check(c->protocol_level == 3 || c->protocol_level == 4);
        check(c->will_qos <= 2 && (c->has_will || (!c->will_qos && !c->will_retain)));
        check(!c->has_password || c->has_username);
        check_within(c->client_id, pkt, len);
        check(vg_mqtt_utf8_valid(c->client_id.p, c->client_id.len));
        if (c->has_will)
            check(vg_mqtt_topic_valid(c->will_topic.p, c->will_topic.len));
        roundtrip_connect(c);
        break;
    }
    case VG_MQTT_PUBLISH: {
        const struct vg_mqtt_publish *m = &p->u.publish;
        check(m->qos <= 2 && (m->qos == 0) == (m->packet_id == 0));
        check(vg_mqtt_topic_valid(m->topic.p, m->topic.len));
        check_within(m->topic, pkt, len);
        check_within(m->payload, pkt, len);
        roundtrip_publish(m);
        break;
    }
    case VG_MQTT_SUBSCRIBE:
    case VG_MQTT_UNSUBSCRIBE: {
        const struct vg_mqtt_subscribe *m = &p->u.subscribe;
        check(m->count >= 1 && m->count <= VG_MQTT_MAX_FILTERS && m->packet_id != 0);
        for (size_t i = 0; i < m->count; i++) {
            check(vg_mqtt_filter_valid(m->filters[i].p, m->filters[i].len));
            check_within(m->filters[i], pkt, len);
            check(m->qos[i] <= 2);
        }
        if (p->type == VG_MQTT_SUBSCRIBE)
            roundtrip_subscribe(m);
        break;
    }
    case VG_MQTT_SUBACK: {
        static uint8_t out[64];
        struct vg_mqtt_packet again;
        size_t n = vg_mqtt_encode_suback(out, sizeof out, p->u.suback.packet_id,
                                         p->u.suback.codes, p->u.suback.count);
        check(n != 0 && vg_mqtt_decode(out, n, &again) == VG_MQTT_OK);
        check(again.u.suback.count == p->u.suback.count &&
              memcmp(again.u.suback.codes, p->u.suback.codes, p->u.suback.count) == 0);
        break;
    }
    default:
        break;
    }
}

static void fuzz_stream(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        size_t hl = 0, total = 0;
        int rc = vg_mqtt_frame(data + off, size - off, MAX_PACKET, &hl, &total);
        if (rc != VG_MQTT_OK)
            break; /* need more (end of input) or an error closing the stream */
        check(hl >= 2 && hl <= 5 && total >= hl && total <= size - off && total <= MAX_PACKET);
        struct vg_mqtt_packet p;
        rc = vg_mqtt_decode(data + off, total, &p);
        check(rc == VG_MQTT_OK || rc == VG_MQTT_MALFORMED || rc == VG_MQTT_BAD_PROTOCOL ||
              rc == VG_MQTT_LIMIT);
        if (rc == VG_MQTT_OK)
            check_packet(&p, data + off, total);
        off += total;
    }
}

static void fuzz_topics(const uint8_t *data, size_t size)
{
    if (size == 0)
        return;
    /* The first byte picks where the rest is cut into filter | topic. */
    const uint8_t *rest = data + 1;
    size_t n = size - 1;
    size_t cut = n ? data[0] % (n + 1) : 0;
    const uint8_t *f = rest, *t = rest + cut;
    size_t flen = cut, tlen = n - cut;

    int f_ok = vg_mqtt_filter_valid(f, flen);
    int t_ok = vg_mqtt_topic_valid(t, tlen);
    (void)vg_mqtt_utf8_valid(rest, n);
    /* Safe on any input, meaningful on valid ones. */
    (void)vg_mqtt_topic_match(f, flen, t, tlen);
    if (t_ok) {
        /* A topic name is a filter without wildcards, and matches itself. */
        check(vg_mqtt_filter_valid(t, tlen));
        check(vg_mqtt_topic_match(t, tlen, t, tlen) == 1);
        /* '#' matches every topic but the '$' ones (§4.7.2). */
        check(vg_mqtt_topic_match((const uint8_t *)"#", 1, t, tlen) == (t[0] != '$'));
    }
    if (f_ok && t_ok) {
        int m = vg_mqtt_topic_match(f, flen, t, tlen);
        check(m == 0 || m == 1);
        /* A filter without wildcards matches only the identical topic. */
        if (!memchr(f, '+', flen) && !memchr(f, '#', flen))
            check(m == (flen == tlen && memcmp(f, t, flen) == 0));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_stream(data, size);
    fuzz_topics(data, size);
    return 0;
}
