/* Unit tests for mqtt/codec: framing, every decoder check with its negative
 * case, topic rules and matching, and the encoders (round trips and
 * capacity/range failures). Packets are written out byte by byte where the
 * exact wire image matters, and built with the small builder below where
 * only one field changes between cases. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "mqtt/codec.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

#define DECODE(arr, pkt) vg_mqtt_decode((arr), sizeof(arr), (pkt))

/* Builds a body field by field, then wraps it in a fixed header. */
struct builder {
    uint8_t body[4096];
    size_t n;
};

static void put_u8(struct builder *b, uint8_t v)
{
    assert_true(b->n < sizeof b->body);
    b->body[b->n++] = v;
}

static void put_u16(struct builder *b, uint16_t v)
{
    put_u8(b, (uint8_t)(v >> 8));
    put_u8(b, (uint8_t)(v & 0xFF));
}

static void put_raw(struct builder *b, const void *p, size_t n)
{
    assert_true(b->n + n <= sizeof b->body);
    memcpy(b->body + b->n, p, n);
    b->n += n;
}

/* A length-prefixed field of n bytes (n given so it may hold a NUL). */
static void put_strn(struct builder *b, const char *s, size_t n)
{
    put_u16(b, (uint16_t)n);
    put_raw(b, s, n);
}

static void put_str(struct builder *b, const char *s) { put_strn(b, s, strlen(s)); }

/* Writes first byte + minimal remaining length + body into out; returns the
 * packet's length. */
static size_t finish(const struct builder *b, uint8_t first, uint8_t *out, size_t cap)
{
    size_t n = 0, rl = b->n;
    assert_true(cap >= b->n + 5);
    out[n++] = first;
    do {
        uint8_t d = (uint8_t)(rl & 0x7F);
        rl >>= 7;
        out[n++] = (uint8_t)(d | (rl ? 0x80 : 0));
    } while (rl);
    memcpy(out + n, b->body, b->n);
    return n + b->n;
}

static int decode_built(const struct builder *b, uint8_t first, struct vg_mqtt_packet *pkt)
{
    static uint8_t wire[4096 + 5];
    size_t n = finish(b, first, wire, sizeof wire);
    return vg_mqtt_decode(wire, n, pkt);
}

static int str_eq(struct vg_mqtt_str s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

/* A CONNECT variable header for 3.1.1 with the given flags and keepalive. */
static void put_connect_header(struct builder *b, uint8_t flags, uint16_t keepalive)
{
    put_str(b, "MQTT");
    put_u8(b, 4);
    put_u8(b, flags);
    put_u16(b, keepalive);
}

static const char OBS_TOPIC[] = "vigil/v1/d/dev-1/obs";
static const char OBS_JSON[] = "{\"type\":\"hr\",\"value\":72,\"unit\":\"/min\"}";

/* ------------------------------------------------------------------------ */
/* Framing                                                                   */
/* ------------------------------------------------------------------------ */

static void test_frame_need_more_every_prefix(void **state)
{
    (void)state;
    uint8_t pkt[512];
    uint8_t payload[200];
    memset(payload, 'x', sizeof payload);
    /* A 2-byte remaining length (rl > 127) exercises the multi-byte path. */
    size_t n = vg_mqtt_encode_publish(pkt, sizeof pkt, OBS_TOPIC, strlen(OBS_TOPIC),
                                      payload, sizeof payload, 1, 0, 9);
    assert_int_not_equal(n, 0);
    for (size_t len = 0; len < n; len++) {
        size_t hl = 99, total = 99;
        assert_int_equal(vg_mqtt_frame(pkt, len, 65536, &hl, &total), VG_MQTT_NEED_MORE);
    }
    size_t hl = 0, total = 0;
    assert_int_equal(vg_mqtt_frame(pkt, n, 65536, &hl, &total), VG_MQTT_OK);
    assert_int_equal(hl, 3);
    assert_int_equal(total, n);
    /* More bytes buffered than one packet: still frames just the first. */
    assert_int_equal(vg_mqtt_frame(pkt, sizeof pkt, 65536, &hl, &total), VG_MQTT_OK);
    assert_int_equal(total, n);

    static const uint8_t ping[] = {0xC0, 0x00};
    assert_int_equal(vg_mqtt_frame(ping, 1, 65536, &hl, &total), VG_MQTT_NEED_MORE);
    assert_int_equal(vg_mqtt_frame(ping, 2, 65536, &hl, &total), VG_MQTT_OK);
    assert_int_equal(hl, 2);
    assert_int_equal(total, 2);
}

static void test_frame_remaining_length_over_four_bytes(void **state)
{
    (void)state;
    size_t hl, total;
    /* §2.2.3: a continuation bit on the fourth length byte is malformed —
     * decided without waiting for a fifth byte. */
    static const uint8_t five[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    assert_int_equal(vg_mqtt_frame(five, sizeof five, SIZE_MAX, &hl, &total),
                     VG_MQTT_MALFORMED);
    assert_int_equal(vg_mqtt_frame(five, 5, SIZE_MAX, &hl, &total), VG_MQTT_MALFORMED);
    assert_int_equal(DECODE(five, &(struct vg_mqtt_packet){0}), VG_MQTT_MALFORMED);
    /* Negative: four continuation-free-at-the-end bytes are fine (the largest
     * length, 268435455), and three with continuation just need more. */
    static const uint8_t four[] = {0x30, 0xFF, 0xFF, 0xFF, 0x7F};
    assert_int_equal(vg_mqtt_frame(four, sizeof four, SIZE_MAX, &hl, &total),
                     VG_MQTT_NEED_MORE);
    assert_int_equal(vg_mqtt_frame(four, 4, SIZE_MAX, &hl, &total), VG_MQTT_NEED_MORE);
}

static void test_frame_too_large_as_soon_as_known(void **state)
{
    (void)state;
    size_t hl, total;
    /* Remaining length 65536 (0x80 0x80 0x04): 4 + 65536 bytes > 65536. No
     * body byte is present: the refusal comes from the header alone. */
    static const uint8_t big[] = {0x30, 0x80, 0x80, 0x04};
    assert_int_equal(vg_mqtt_frame(big, sizeof big, 65536, &hl, &total), VG_MQTT_TOO_LARGE);
    /* Negative: with a larger maximum the same header only needs more. */
    assert_int_equal(vg_mqtt_frame(big, sizeof big, 65540, &hl, &total), VG_MQTT_NEED_MORE);
    /* Boundary: a packet of exactly max_packet bytes is accepted. */
    static const uint8_t ack[] = {0x40, 0x02, 0x00, 0x01};
    assert_int_equal(vg_mqtt_frame(ack, sizeof ack, 4, &hl, &total), VG_MQTT_OK);
    assert_int_equal(vg_mqtt_frame(ack, sizeof ack, 3, &hl, &total), VG_MQTT_TOO_LARGE);
    assert_int_equal(vg_mqtt_frame(ack, 2, 3, &hl, &total), VG_MQTT_TOO_LARGE);
}

static void test_frame_reserved_types(void **state)
{
    (void)state;
    size_t hl, total;
    static const uint8_t t0[] = {0x00, 0x00};
    static const uint8_t t15[] = {0xF0, 0x00};
    /* Refused on the first byte. */
    assert_int_equal(vg_mqtt_frame(t0, 1, 65536, &hl, &total), VG_MQTT_MALFORMED);
    assert_int_equal(vg_mqtt_frame(t15, 1, 65536, &hl, &total), VG_MQTT_MALFORMED);
    assert_int_equal(DECODE(t0, &(struct vg_mqtt_packet){0}), VG_MQTT_MALFORMED);
    assert_int_equal(DECODE(t15, &(struct vg_mqtt_packet){0}), VG_MQTT_MALFORMED);
    /* Negative: types 1 and 14 are fine at the framing layer. */
    static const uint8_t disc[] = {0xE0, 0x00};
    assert_int_equal(vg_mqtt_frame(disc, sizeof disc, 65536, &hl, &total), VG_MQTT_OK);
}

static void test_frame_non_minimal_length_and_stream(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    size_t hl, total;
    /* §2.2.3 does not forbid 0x80 0x00 for zero in 3.1.1: accepted. */
    static const uint8_t ping[] = {0xC0, 0x80, 0x00};
    assert_int_equal(vg_mqtt_frame(ping, sizeof ping, 65536, &hl, &total), VG_MQTT_OK);
    assert_int_equal(hl, 3);
    assert_int_equal(DECODE(ping, &p), VG_MQTT_OK);
    assert_int_equal(p.type, VG_MQTT_PINGREQ);

    /* Several packets back to back are framed one after the other. */
    uint8_t stream[256];
    size_t n = 0;
    n += vg_mqtt_encode_connect(stream + n, sizeof stream - n, "dev-1", 60, 1, NULL, NULL);
    n += vg_mqtt_encode_publish(stream + n, sizeof stream - n, OBS_TOPIC, strlen(OBS_TOPIC),
                                (const uint8_t *)OBS_JSON, strlen(OBS_JSON), 0, 0, 0);
    n += vg_mqtt_encode_pingreq(stream + n, sizeof stream - n);
    n += vg_mqtt_encode_disconnect(stream + n, sizeof stream - n);
    static const enum vg_mqtt_type want[] = {VG_MQTT_CONNECT, VG_MQTT_PUBLISH,
                                             VG_MQTT_PINGREQ, VG_MQTT_DISCONNECT};
    size_t off = 0;
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(vg_mqtt_frame(stream + off, n - off, 65536, &hl, &total), VG_MQTT_OK);
        assert_int_equal(vg_mqtt_decode(stream + off, total, &p), VG_MQTT_OK);
        assert_int_equal(p.type, want[i]);
        off += total;
    }
    assert_int_equal(off, n);
    assert_int_equal(vg_mqtt_frame(stream + off, 0, 65536, &hl, &total), VG_MQTT_NEED_MORE);
}

static void test_decode_length_must_match_frame(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    static const uint8_t ack[] = {0x40, 0x02, 0x00, 0x05, 0xAA};
    assert_int_equal(vg_mqtt_decode(ack, 4, &p), VG_MQTT_OK);
    assert_int_equal(p.u.packet_id, 5);
    /* Short of the declared length, or longer than it. */
    assert_int_equal(vg_mqtt_decode(ack, 3, &p), VG_MQTT_MALFORMED);
    assert_int_equal(vg_mqtt_decode(ack, 5, &p), VG_MQTT_MALFORMED);
    assert_int_equal(vg_mqtt_decode(ack, 0, &p), VG_MQTT_MALFORMED);
    assert_int_equal(vg_mqtt_decode(NULL, 0, &p), VG_MQTT_MALFORMED);
    /* A PUBLISH takes "the rest" as payload: bytes past its declared
     * length must not be swallowed into it. */
    static const uint8_t pub[] = {0x30, 0x05, 0x00, 0x01, 't', 'h', 'i', '!'};
    assert_int_equal(vg_mqtt_decode(pub, 7, &p), VG_MQTT_OK);
    assert_int_equal(p.u.publish.payload.len, 2);
    assert_int_equal(vg_mqtt_decode(pub, 8, &p), VG_MQTT_MALFORMED);
}

/* ------------------------------------------------------------------------ */
/* CONNECT                                                                   */
/* ------------------------------------------------------------------------ */

/* As `mosquitto_pub -V mqttv311 -i dev-1 -k 60 ...` puts it on the wire. */
static const uint8_t MOSQ_CONNECT[] = {
    0x10, 0x11,                          /* CONNECT, remaining length 17 */
    0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, /* protocol name, level 4 */
    0x02,                                /* clean session */
    0x00, 0x3C,                          /* keepalive 60 */
    0x00, 0x05, 'd', 'e', 'v', '-', '1', /* client id */
};

/* The same with -u nurse -P s3cret. */
static const uint8_t MOSQ_CONNECT_AUTH[] = {
    0x10, 0x20,
    0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
    0xC2,                                /* username, password, clean */
    0x00, 0x3C,
    0x00, 0x05, 'd', 'e', 'v', '-', '1',
    0x00, 0x05, 'n', 'u', 'r', 's', 'e',
    0x00, 0x06, 's', '3', 'c', 'r', 'e', 't',
};

static void test_connect_mosquitto_pub(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    assert_int_equal(DECODE(MOSQ_CONNECT, &p), VG_MQTT_OK);
    assert_int_equal(p.type, VG_MQTT_CONNECT);
    assert_int_equal(p.u.connect.protocol_level, 4);
    assert_true(p.u.connect.clean_session);
    assert_int_equal(p.u.connect.keepalive, 60);
    assert_true(str_eq(p.u.connect.client_id, "dev-1"));
    assert_false(p.u.connect.has_will);
    assert_false(p.u.connect.has_username);
    assert_false(p.u.connect.has_password);

    assert_int_equal(DECODE(MOSQ_CONNECT_AUTH, &p), VG_MQTT_OK);
    assert_true(p.u.connect.has_username);
    assert_true(p.u.connect.has_password);
    assert_true(str_eq(p.u.connect.username, "nurse"));
    assert_true(str_eq(p.u.connect.password, "s3cret"));

    /* Our encoder produces the same bytes. */
    uint8_t out[64];
    size_t n = vg_mqtt_encode_connect(out, sizeof out, "dev-1", 60, 1, NULL, NULL);
    assert_int_equal(n, sizeof MOSQ_CONNECT);
    assert_memory_equal(out, MOSQ_CONNECT, n);
    n = vg_mqtt_encode_connect(out, sizeof out, "dev-1", 60, 1, "nurse", "s3cret");
    assert_int_equal(n, sizeof MOSQ_CONNECT_AUTH);
    assert_memory_equal(out, MOSQ_CONNECT_AUTH, n);
}

static void test_connect_truncated_and_trailing(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    uint8_t buf[64];
    /* Each shorter remaining length cuts a field short. */
    for (size_t cut = 1; cut < sizeof MOSQ_CONNECT - 2; cut++) {
        memcpy(buf, MOSQ_CONNECT, sizeof MOSQ_CONNECT);
        buf[1] = (uint8_t)(sizeof MOSQ_CONNECT - 2 - cut);
        assert_int_equal(vg_mqtt_decode(buf, sizeof MOSQ_CONNECT - cut, &p), VG_MQTT_MALFORMED);
    }
    /* One byte past the client id. */
    memcpy(buf, MOSQ_CONNECT, sizeof MOSQ_CONNECT);
    buf[1]++;
    buf[sizeof MOSQ_CONNECT] = 0x00;
    assert_int_equal(vg_mqtt_decode(buf, sizeof MOSQ_CONNECT + 1, &p), VG_MQTT_MALFORMED);
    /* Username flag set but no username field. */
    struct builder b = {0};
    put_connect_header(&b, 0x82, 60);
    put_str(&b, "dev-1");
    assert_int_equal(decode_built(&b, 0x10, &p), VG_MQTT_MALFORMED);
    /* CONNECT's fixed-header flags must be 0 (§2.2.2). */
    memcpy(buf, MOSQ_CONNECT, sizeof MOSQ_CONNECT);
    buf[0] = 0x11;
    assert_int_equal(vg_mqtt_decode(buf, sizeof MOSQ_CONNECT, &p), VG_MQTT_MALFORMED);
}

static void test_connect_protocol_name_and_level(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    static const struct {
        const char *name;
        uint8_t level;
        int want;
    } cases[] = {
        {"MQTT", 4, VG_MQTT_OK},
        {"MQIsdp", 3, VG_MQTT_OK},
        {"MQTT", 5, VG_MQTT_BAD_PROTOCOL},   /* MQTT 5 */
        {"MQTT", 3, VG_MQTT_BAD_PROTOCOL},
        {"MQIsdp", 4, VG_MQTT_BAD_PROTOCOL},
        {"mqtt", 4, VG_MQTT_BAD_PROTOCOL},   /* case matters */
        {"MQT", 4, VG_MQTT_BAD_PROTOCOL},
        {"MQTTX", 4, VG_MQTT_BAD_PROTOCOL},
        {"", 4, VG_MQTT_BAD_PROTOCOL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct builder b = {0};
        put_str(&b, cases[i].name);
        put_u8(&b, cases[i].level);
        put_u8(&b, 0x02);
        put_u16(&b, 30);
        put_str(&b, "dev-1");
        assert_int_equal(decode_built(&b, 0x10, &p), cases[i].want);
        if (cases[i].want == VG_MQTT_OK)
            assert_int_equal(p.u.connect.protocol_level, cases[i].level);
    }
    /* Decided from name and level alone: an MQTT 5 CONNECT whose rest would
     * not parse under 3.1.1 still gets BAD_PROTOCOL (so CONNACK 0x01). */
    static const uint8_t v5[] = {0x10, 0x07, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05};
    assert_int_equal(DECODE(v5, &p), VG_MQTT_BAD_PROTOCOL);
    /* Truncated before the level is merely malformed. */
    static const uint8_t nolevel[] = {0x10, 0x06, 0x00, 0x04, 'M', 'Q', 'T', 'T'};
    assert_int_equal(DECODE(nolevel, &p), VG_MQTT_MALFORMED);
}

static void test_connect_reserved_flag(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    struct builder b = {0};
    put_connect_header(&b, 0x03, 60); /* clean session + reserved bit */
    put_str(&b, "dev-1");
    assert_int_equal(decode_built(&b, 0x10, &p), VG_MQTT_MALFORMED);
    b.body[7] = 0x02; /* the flags byte, reserved bit cleared */
    assert_int_equal(decode_built(&b, 0x10, &p), VG_MQTT_OK);
}

static void test_connect_password_without_username(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    struct builder b = {0};
    put_connect_header(&b, 0x42, 60);
    put_str(&b, "dev-1");
    put_str(&b, "s3cret");
    assert_int_equal(decode_built(&b, 0x10, &p), VG_MQTT_MALFORMED);
    /* Username without password is fine. */
    struct builder u = {0};
    put_connect_header(&u, 0x82, 60);
    put_str(&u, "dev-1");
    put_str(&u, "nurse");
    assert_int_equal(decode_built(&u, 0x10, &p), VG_MQTT_OK);
    assert_true(p.u.connect.has_username);
    assert_false(p.u.connect.has_password);
    /* The encoder refuses to produce the forbidden form. */
    uint8_t out[64];
    assert_int_equal(vg_mqtt_encode_connect(out, sizeof out, "dev-1", 60, 1, NULL, "x"), 0);
}

static void test_connect_will_flags(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    /* A proper will: flag, QoS 1, retain. */
    struct builder ok = {0};
    put_connect_header(&ok, 0x02 | 0x04 | 0x08 | 0x20, 60);
    put_str(&ok, "dev-1");
    put_str(&ok, "vigil/v1/d/dev-1/status");
    put_strn(&ok, "of\0fline", 8); /* binary: a NUL is allowed */
    assert_int_equal(decode_built(&ok, 0x10, &p), VG_MQTT_OK);
    assert_true(p.u.connect.has_will);
    assert_int_equal(p.u.connect.will_qos, 1);
    assert_true(p.u.connect.will_retain);
    assert_true(str_eq(p.u.connect.will_topic, "vigil/v1/d/dev-1/status"));
    assert_int_equal(p.u.connect.will_message.len, 8);

    static const uint8_t bad_flags[] = {
        0x02 | 0x04 | 0x18, /* will QoS 3 [MQTT-3.1.2-14] */
        0x02 | 0x08,        /* will QoS without will flag [MQTT-3.1.2-13] */
        0x02 | 0x10,        /* will QoS 2 without will flag */
        0x02 | 0x20,        /* will retain without will flag [MQTT-3.1.2-15] */
    };
    for (size_t i = 0; i < sizeof bad_flags; i++) {
        /* Will fields only where the Will Flag announces them, so that the
         * flags alone make each packet malformed. */
        struct builder b = {0};
        put_connect_header(&b, bad_flags[i], 60);
        put_str(&b, "dev-1");
        if (bad_flags[i] & 0x04) {
            put_str(&b, "vigil/v1/d/dev-1/status");
            put_str(&b, "offline");
        }
        assert_int_equal(decode_built(&b, 0x10, &p), VG_MQTT_MALFORMED);
    }
    /* A will topic must be a topic name: no wildcard, not empty. */
    static const char *bad_topics[] = {"vigil/+/status", "vigil/#", ""};
    for (size_t i = 0; i < 3; i++) {
        struct builder b = {0};
        put_connect_header(&b, 0x06, 60);
        put_str(&b, "dev-1");
        put_str(&b, bad_topics[i]);
        put_str(&b, "offline");
        assert_int_equal(decode_built(&b, 0x10, &p), VG_MQTT_MALFORMED);
    }
    /* Will flag set, will message missing. */
    struct builder nomsg = {0};
    put_connect_header(&nomsg, 0x06, 60);
    put_str(&nomsg, "dev-1");
    put_str(&nomsg, "vigil/v1/d/dev-1/status");
    assert_int_equal(decode_built(&nomsg, 0x10, &p), VG_MQTT_MALFORMED);
}

static void test_connect_client_id_utf8(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    static const struct {
        const char *id;
        size_t len;
        int want;
    } cases[] = {
        {"d\xC3\xA9v-1", 6, VG_MQTT_OK},        /* "dév-1" */
        {"", 0, VG_MQTT_OK},                    /* §3.1.3.1: zero length ok */
        {"dev\0-1", 6, VG_MQTT_MALFORMED},      /* U+0000 */
        {"dev\xC0\x80", 5, VG_MQTT_MALFORMED},  /* overlong U+0000 */
        {"dev\xFF", 4, VG_MQTT_MALFORMED},      /* never valid */
        {"dev\xED\xA0\x80", 6, VG_MQTT_MALFORMED}, /* surrogate U+D800 */
        {"dev\xC3", 4, VG_MQTT_MALFORMED},      /* truncated sequence */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct builder b = {0};
        put_connect_header(&b, 0x02, 60);
        put_strn(&b, cases[i].id, cases[i].len);
        assert_int_equal(decode_built(&b, 0x10, &p), cases[i].want);
    }
    /* The username is UTF-8 checked too; the password is binary. */
    struct builder u = {0};
    put_connect_header(&u, 0xC2, 60);
    put_str(&u, "dev-1");
    put_strn(&u, "nu\0rse", 6);
    put_str(&u, "pw");
    assert_int_equal(decode_built(&u, 0x10, &p), VG_MQTT_MALFORMED);
    struct builder pw = {0};
    put_connect_header(&pw, 0xC2, 60);
    put_str(&pw, "dev-1");
    put_str(&pw, "nurse");
    put_strn(&pw, "\xFF\0\xC0", 3);
    assert_int_equal(decode_built(&pw, 0x10, &p), VG_MQTT_OK);
    assert_int_equal(p.u.connect.password.len, 3);
}

/* ------------------------------------------------------------------------ */
/* PUBLISH                                                                   */
/* ------------------------------------------------------------------------ */

static void check_publish_roundtrip(uint8_t qos, int retain, uint16_t id,
                                    const char *payload)
{
    uint8_t out[256];
    struct vg_mqtt_packet p;
    size_t plen = strlen(payload);
    size_t n = vg_mqtt_encode_publish(out, sizeof out, OBS_TOPIC, strlen(OBS_TOPIC),
                                      (const uint8_t *)payload, plen, qos, retain, id);
    assert_int_not_equal(n, 0);
    assert_int_equal(n, vg_mqtt_publish_size(strlen(OBS_TOPIC), plen, qos));
    size_t hl, total;
    assert_int_equal(vg_mqtt_frame(out, n, 65536, &hl, &total), VG_MQTT_OK);
    assert_int_equal(total, n);
    assert_int_equal(vg_mqtt_decode(out, n, &p), VG_MQTT_OK);
    assert_int_equal(p.type, VG_MQTT_PUBLISH);
    assert_int_equal(p.u.publish.qos, qos);
    assert_int_equal(p.u.publish.retain, retain);
    assert_false(p.u.publish.dup);
    assert_int_equal(p.u.publish.packet_id, qos ? id : 0);
    assert_true(str_eq(p.u.publish.topic, OBS_TOPIC));
    assert_int_equal(p.u.publish.payload.len, plen);
    if (plen)
        assert_memory_equal(p.u.publish.payload.p, payload, plen);
}

static void test_publish_qos0_roundtrip(void **state)
{
    (void)state;
    check_publish_roundtrip(0, 0, 0, OBS_JSON);
    check_publish_roundtrip(0, 1, 0, ""); /* empty payload is valid (§3.3.3) */
    /* QoS 0 carries no packet id: a given one is not encoded. */
    uint8_t a[128], b[128];
    size_t na = vg_mqtt_encode_publish(a, sizeof a, "t", 1, NULL, 0, 0, 0, 0);
    size_t nb = vg_mqtt_encode_publish(b, sizeof b, "t", 1, NULL, 0, 0, 0, 77);
    assert_int_equal(na, 5);
    assert_int_equal(nb, 5);
    assert_memory_equal(a, b, 5);
}

static void test_publish_qos1_roundtrip(void **state)
{
    (void)state;
    check_publish_roundtrip(1, 0, 1, OBS_JSON);
    check_publish_roundtrip(1, 1, 65535, OBS_JSON);
    check_publish_roundtrip(2, 0, 300, "");
    /* DUP with QoS 1 is valid on the wire. */
    struct vg_mqtt_packet p;
    static const uint8_t dup1[] = {0x3A, 0x05, 0x00, 0x01, 't', 0x00, 0x07};
    assert_int_equal(DECODE(dup1, &p), VG_MQTT_OK);
    assert_true(p.u.publish.dup);
    assert_int_equal(p.u.publish.packet_id, 7);
    assert_int_equal(p.u.publish.payload.len, 0);
}

static void test_publish_bad_qos_and_dup(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    /* QoS 3 [MQTT-3.3.1-4]. */
    static const uint8_t qos3[] = {0x36, 0x05, 0x00, 0x01, 't', 0x00, 0x07};
    assert_int_equal(DECODE(qos3, &p), VG_MQTT_MALFORMED);
    /* DUP on a QoS 0 message [MQTT-3.3.1-2]. */
    static const uint8_t dup0[] = {0x38, 0x03, 0x00, 0x01, 't'};
    assert_int_equal(DECODE(dup0, &p), VG_MQTT_MALFORMED);
    static const uint8_t ok0[] = {0x30, 0x03, 0x00, 0x01, 't'};
    assert_int_equal(DECODE(ok0, &p), VG_MQTT_OK);
    /* The encoder refuses QoS 3 too. */
    uint8_t out[64];
    assert_int_equal(vg_mqtt_encode_publish(out, sizeof out, "t", 1, NULL, 0, 3, 0, 1), 0);
    assert_int_equal(vg_mqtt_publish_size(1, 0, 3), 0);
}

static void test_publish_packet_id(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    /* QoS 1 with packet id 0 [MQTT-2.3.1-1]. */
    static const uint8_t id0[] = {0x32, 0x05, 0x00, 0x01, 't', 0x00, 0x00};
    assert_int_equal(DECODE(id0, &p), VG_MQTT_MALFORMED);
    /* QoS 1 cut before its packet id. */
    static const uint8_t noid[] = {0x32, 0x04, 0x00, 0x01, 't', 0x00};
    assert_int_equal(DECODE(noid, &p), VG_MQTT_MALFORMED);
    /* The same bytes under QoS 0 are topic + a 2-byte payload. */
    static const uint8_t q0[] = {0x30, 0x05, 0x00, 0x01, 't', 0x00, 0x00};
    assert_int_equal(DECODE(q0, &p), VG_MQTT_OK);
    assert_int_equal(p.u.publish.payload.len, 2);
    uint8_t out[64];
    assert_int_equal(vg_mqtt_encode_publish(out, sizeof out, "t", 1, NULL, 0, 1, 0, 0), 0);
    assert_int_equal(vg_mqtt_encode_publish(out, sizeof out, "t", 1, NULL, 0, 2, 0, 0), 0);
}

static void test_publish_bad_topic(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    static const char *bad[] = {"vigil/+/obs", "vigil/#", "+", "#", "a+b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct builder b = {0};
        put_str(&b, bad[i]);
        put_raw(&b, "{}", 2);
        assert_int_equal(decode_built(&b, 0x30, &p), VG_MQTT_MALFORMED);
    }
    /* Empty topic [MQTT-4.7.3-1]. */
    static const uint8_t empty[] = {0x30, 0x04, 0x00, 0x00, '{', '}'};
    assert_int_equal(DECODE(empty, &p), VG_MQTT_MALFORMED);
    /* U+0000 in the topic, and a topic length past the packet's end. */
    static const uint8_t nul[] = {0x30, 0x04, 0x00, 0x02, 'a', 0x00};
    assert_int_equal(DECODE(nul, &p), VG_MQTT_MALFORMED);
    static const uint8_t past[] = {0x30, 0x04, 0x00, 0x05, 'a', 'b'};
    assert_int_equal(DECODE(past, &p), VG_MQTT_MALFORMED);
    /* Negative: '$' and '/' are plain characters in a name. */
    static const uint8_t sys[] = {0x30, 0x07, 0x00, 0x05, '$', 'S', 'Y', 'S', '/'};
    assert_int_equal(DECODE(sys, &p), VG_MQTT_OK);
    /* The encoder refuses what the decoder refuses. */
    uint8_t out[64];
    assert_int_equal(vg_mqtt_encode_publish(out, sizeof out, "a/#", 3, NULL, 0, 0, 0, 0), 0);
    assert_int_equal(vg_mqtt_encode_publish(out, sizeof out, "", 0, NULL, 0, 0, 0, 0), 0);
}

/* ------------------------------------------------------------------------ */
/* SUBSCRIBE / UNSUBSCRIBE                                                   */
/* ------------------------------------------------------------------------ */

static void test_subscribe_valid(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    struct builder b = {0};
    put_u16(&b, 10);
    put_str(&b, "#");
    put_u8(&b, 0);
    put_str(&b, "+/+");
    put_u8(&b, 1);
    put_str(&b, "vigil/v1/d/+/obs");
    put_u8(&b, 2);
    put_str(&b, "$SYS/#");
    put_u8(&b, 0);
    assert_int_equal(decode_built(&b, 0x82, &p), VG_MQTT_OK);
    assert_int_equal(p.type, VG_MQTT_SUBSCRIBE);
    assert_int_equal(p.u.subscribe.packet_id, 10);
    assert_int_equal(p.u.subscribe.count, 4);
    assert_true(str_eq(p.u.subscribe.filters[0], "#"));
    assert_true(str_eq(p.u.subscribe.filters[1], "+/+"));
    assert_true(str_eq(p.u.subscribe.filters[2], "vigil/v1/d/+/obs"));
    assert_int_equal(p.u.subscribe.qos[1], 1);
    assert_int_equal(p.u.subscribe.qos[2], 2);

    /* Round trip via the client encoder. */
    uint8_t out[64];
    size_t n = vg_mqtt_encode_subscribe(out, sizeof out, 3, "vigil/v1/d/+/obs", 1);
    assert_int_not_equal(n, 0);
    assert_int_equal(out[0], 0x82);
    assert_int_equal(vg_mqtt_decode(out, n, &p), VG_MQTT_OK);
    assert_int_equal(p.u.subscribe.count, 1);
    assert_int_equal(p.u.subscribe.packet_id, 3);
    assert_int_equal(p.u.subscribe.qos[0], 1);
    assert_true(str_eq(p.u.subscribe.filters[0], "vigil/v1/d/+/obs"));
}

static void test_subscribe_invalid(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    static const char *bad_filters[] = {"a/#/b", "a+", "a#", "#/a", "+a/b", "a/b+", ""};
    for (size_t i = 0; i < sizeof bad_filters / sizeof bad_filters[0]; i++) {
        struct builder b = {0};
        put_u16(&b, 1);
        put_str(&b, "ok/+");
        put_u8(&b, 0);
        put_str(&b, bad_filters[i]);
        put_u8(&b, 0);
        assert_int_equal(decode_built(&b, 0x82, &p), VG_MQTT_MALFORMED);
    }
    /* Requested QoS 3, or reserved upper bits [MQTT-3-8.3-4]. */
    static const uint8_t bad_qos[] = {0x03, 0x40, 0x80, 0xFC};
    for (size_t i = 0; i < sizeof bad_qos; i++) {
        struct builder b = {0};
        put_u16(&b, 1);
        put_str(&b, "a/b");
        put_u8(&b, bad_qos[i]);
        assert_int_equal(decode_built(&b, 0x82, &p), VG_MQTT_MALFORMED);
    }
    /* No filter at all [MQTT-3.8.3-3]. */
    static const uint8_t none[] = {0x82, 0x02, 0x00, 0x01};
    assert_int_equal(DECODE(none, &p), VG_MQTT_MALFORMED);
    /* Filter without its QoS byte. */
    static const uint8_t noqos[] = {0x82, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'};
    assert_int_equal(DECODE(noqos, &p), VG_MQTT_MALFORMED);
    /* Packet id 0 [MQTT-2.3.1-1]. */
    static const uint8_t id0[] = {0x82, 0x06, 0x00, 0x00, 0x00, 0x01, 'a', 0x00};
    assert_int_equal(DECODE(id0, &p), VG_MQTT_MALFORMED);
    /* Negative of the above: id 1 is fine. */
    static const uint8_t id1[] = {0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00};
    assert_int_equal(DECODE(id1, &p), VG_MQTT_OK);
    /* The encoder refuses bad filters, QoS and ids. */
    uint8_t out[64];
    assert_int_equal(vg_mqtt_encode_subscribe(out, sizeof out, 1, "a/#/b", 0), 0);
    assert_int_equal(vg_mqtt_encode_subscribe(out, sizeof out, 1, "a/b", 3), 0);
    assert_int_equal(vg_mqtt_encode_subscribe(out, sizeof out, 0, "a/b", 0), 0);
}

static void test_subscribe_bad_flags(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    static const uint8_t flags[] = {0x80, 0x81, 0x83, 0x8A};
    uint8_t pkt[] = {0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00};
    for (size_t i = 0; i < sizeof flags; i++) {
        pkt[0] = flags[i];
        assert_int_equal(DECODE(pkt, &p), VG_MQTT_MALFORMED);
    }
    pkt[0] = 0x82;
    assert_int_equal(DECODE(pkt, &p), VG_MQTT_OK);
}

static void test_subscribe_too_many_filters(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    struct builder b = {0};
    put_u16(&b, 2);
    for (int i = 0; i < VG_MQTT_MAX_FILTERS; i++) {
        put_str(&b, "a/+");
        put_u8(&b, 1);
    }
    assert_int_equal(decode_built(&b, 0x82, &p), VG_MQTT_OK);
    assert_int_equal(p.u.subscribe.count, VG_MQTT_MAX_FILTERS);
    put_str(&b, "a/+");
    put_u8(&b, 1);
    assert_int_equal(decode_built(&b, 0x82, &p), VG_MQTT_LIMIT);
    /* Past the limit a malformed entry is still reported as malformed. */
    put_str(&b, "a#");
    put_u8(&b, 1);
    assert_int_equal(decode_built(&b, 0x82, &p), VG_MQTT_MALFORMED);
}

static void test_unsubscribe(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    struct builder b = {0};
    put_u16(&b, 4);
    put_str(&b, "vigil/v1/d/+/obs");
    put_str(&b, "#");
    assert_int_equal(decode_built(&b, 0xA2, &p), VG_MQTT_OK);
    assert_int_equal(p.type, VG_MQTT_UNSUBSCRIBE);
    assert_int_equal(p.u.subscribe.packet_id, 4);
    assert_int_equal(p.u.subscribe.count, 2);
    assert_true(str_eq(p.u.subscribe.filters[1], "#"));
    /* Wrong fixed-header flags [MQTT-3.10.1-1]. */
    assert_int_equal(decode_built(&b, 0xA0, &p), VG_MQTT_MALFORMED);
    /* No filter [MQTT-3.10.3-2]. */
    static const uint8_t none[] = {0xA2, 0x02, 0x00, 0x04};
    assert_int_equal(DECODE(none, &p), VG_MQTT_MALFORMED);
    /* Invalid filter. */
    struct builder bad = {0};
    put_u16(&bad, 4);
    put_str(&bad, "a/#/b");
    assert_int_equal(decode_built(&bad, 0xA2, &p), VG_MQTT_MALFORMED);
    /* Too many. */
    struct builder many = {0};
    put_u16(&many, 4);
    for (int i = 0; i <= VG_MQTT_MAX_FILTERS; i++)
        put_str(&many, "x");
    assert_int_equal(decode_built(&many, 0xA2, &p), VG_MQTT_LIMIT);
}

/* ------------------------------------------------------------------------ */
/* Small packets                                                             */
/* ------------------------------------------------------------------------ */

static void test_pingreq_disconnect(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    static const uint8_t ping[] = {0xC0, 0x00};
    assert_int_equal(DECODE(ping, &p), VG_MQTT_OK);
    assert_int_equal(p.type, VG_MQTT_PINGREQ);
    static const uint8_t ping_flags[] = {0xC1, 0x00};
    assert_int_equal(DECODE(ping_flags, &p), VG_MQTT_MALFORMED);
    static const uint8_t ping_body[] = {0xC0, 0x01, 0x00};
    assert_int_equal(DECODE(ping_body, &p), VG_MQTT_MALFORMED);

    static const uint8_t disc[] = {0xE0, 0x00};
    assert_int_equal(DECODE(disc, &p), VG_MQTT_OK);
    assert_int_equal(p.type, VG_MQTT_DISCONNECT);
    /* §3.14.1: DISCONNECT's flags are reserved, 0. */
    static const uint8_t disc_flags[] = {0xE2, 0x00};
    assert_int_equal(DECODE(disc_flags, &p), VG_MQTT_MALFORMED);
    static const uint8_t disc_body[] = {0xE0, 0x02, 0x00, 0x00};
    assert_int_equal(DECODE(disc_body, &p), VG_MQTT_MALFORMED);

    uint8_t out[2];
    assert_int_equal(vg_mqtt_encode_pingreq(out, sizeof out), 2);
    assert_memory_equal(out, ping, 2);
    assert_int_equal(vg_mqtt_encode_disconnect(out, sizeof out), 2);
    assert_memory_equal(out, disc, 2);
    assert_int_equal(vg_mqtt_encode_pingresp(out, sizeof out), 2);
    assert_int_equal(vg_mqtt_decode(out, 2, &p), VG_MQTT_OK);
    assert_int_equal(p.type, VG_MQTT_PINGRESP);
}

static void test_acks(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    static const struct {
        uint8_t first;
        enum vg_mqtt_type type;
    } ok[] = {
        {0x40, VG_MQTT_PUBACK}, {0x50, VG_MQTT_PUBREC}, {0x62, VG_MQTT_PUBREL},
        {0x70, VG_MQTT_PUBCOMP}, {0xB0, VG_MQTT_UNSUBACK},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint8_t pkt[] = {ok[i].first, 0x02, 0x12, 0x34};
        assert_int_equal(DECODE(pkt, &p), VG_MQTT_OK);
        assert_int_equal(p.type, ok[i].type);
        assert_int_equal(p.u.packet_id, 0x1234);
        /* Flipped flags: PUBREL needs 0010, the others 0000. */
        pkt[0] = (uint8_t)(ok[i].first ^ 0x02);
        assert_int_equal(DECODE(pkt, &p), VG_MQTT_MALFORMED);
    }
    static const uint8_t id0[] = {0x40, 0x02, 0x00, 0x00};
    assert_int_equal(DECODE(id0, &p), VG_MQTT_MALFORMED);
    static const uint8_t longer[] = {0x40, 0x03, 0x00, 0x01, 0x00};
    assert_int_equal(DECODE(longer, &p), VG_MQTT_MALFORMED);
    static const uint8_t shorter[] = {0x40, 0x01, 0x01};
    assert_int_equal(DECODE(shorter, &p), VG_MQTT_MALFORMED);

    uint8_t out[4];
    assert_int_equal(vg_mqtt_encode_puback(out, sizeof out, 0x1234), 4);
    assert_memory_equal(out, ((const uint8_t[]){0x40, 0x02, 0x12, 0x34}), 4);
    assert_int_equal(vg_mqtt_encode_unsuback(out, sizeof out, 9), 4);
    assert_int_equal(vg_mqtt_decode(out, 4, &p), VG_MQTT_OK);
    assert_int_equal(p.type, VG_MQTT_UNSUBACK);
    assert_int_equal(p.u.packet_id, 9);
    assert_int_equal(vg_mqtt_encode_puback(out, sizeof out, 0), 0);
    assert_int_equal(vg_mqtt_encode_unsuback(out, sizeof out, 0), 0);
}

static void test_connack_and_suback_client_side(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    uint8_t out[32];
    assert_int_equal(vg_mqtt_encode_connack(out, sizeof out, 1, VG_CONNACK_ACCEPTED), 4);
    assert_int_equal(vg_mqtt_decode(out, 4, &p), VG_MQTT_OK);
    assert_int_equal(p.type, VG_MQTT_CONNACK);
    assert_true(p.u.connack.session_present);
    assert_int_equal(p.u.connack.rc, 0);
    /* A refusal never claims a session [MQTT-3.2.2-4]. */
    assert_int_equal(vg_mqtt_encode_connack(out, sizeof out, 1, VG_CONNACK_BAD_PROTOCOL), 4);
    assert_memory_equal(out, ((const uint8_t[]){0x20, 0x02, 0x00, 0x01}), 4);
    static const uint8_t sp_refused[] = {0x20, 0x02, 0x01, 0x05};
    assert_int_equal(DECODE(sp_refused, &p), VG_MQTT_MALFORMED);
    static const uint8_t reserved[] = {0x20, 0x02, 0x02, 0x00};
    assert_int_equal(DECODE(reserved, &p), VG_MQTT_MALFORMED);
    assert_int_equal(vg_mqtt_encode_connack(out, sizeof out, 0, 6), 0);

    static const uint8_t codes[] = {0x00, 0x01, 0x02, VG_SUBACK_FAILURE};
    size_t n = vg_mqtt_encode_suback(out, sizeof out, 77, codes, sizeof codes);
    assert_int_equal(n, 8);
    assert_int_equal(vg_mqtt_decode(out, n, &p), VG_MQTT_OK);
    assert_int_equal(p.type, VG_MQTT_SUBACK);
    assert_int_equal(p.u.suback.packet_id, 77);
    assert_int_equal(p.u.suback.count, 4);
    assert_memory_equal(p.u.suback.codes, codes, 4);
    /* Reserved SUBACK code [MQTT-3.9.3-2]; no code at all. */
    static const uint8_t bad_code[] = {0x90, 0x03, 0x00, 0x01, 0x03};
    assert_int_equal(DECODE(bad_code, &p), VG_MQTT_MALFORMED);
    static const uint8_t no_code[] = {0x90, 0x02, 0x00, 0x01};
    assert_int_equal(DECODE(no_code, &p), VG_MQTT_MALFORMED);
    static const uint8_t bad[] = {0x03};
    assert_int_equal(vg_mqtt_encode_suback(out, sizeof out, 1, bad, 1), 0);
    assert_int_equal(vg_mqtt_encode_suback(out, sizeof out, 1, codes, 0), 0);
    assert_int_equal(vg_mqtt_encode_suback(out, sizeof out, 0, codes, 1), 0);
}

static void test_connect_encoder_roundtrip(void **state)
{
    (void)state;
    struct vg_mqtt_packet p;
    uint8_t out[128];
    size_t n = vg_mqtt_encode_connect(out, sizeof out, "", 0, 0, "nurse", NULL);
    assert_int_not_equal(n, 0);
    assert_int_equal(vg_mqtt_decode(out, n, &p), VG_MQTT_OK);
    assert_int_equal(p.u.connect.client_id.len, 0);
    assert_false(p.u.connect.clean_session);
    assert_int_equal(p.u.connect.keepalive, 0);
    assert_true(p.u.connect.has_username);
    assert_false(p.u.connect.has_password);
    /* Invalid UTF-8 in the client id or username is not encoded. */
    assert_int_equal(vg_mqtt_encode_connect(out, sizeof out, "d\xC0\x80", 60, 1, NULL, NULL), 0);
    assert_int_equal(vg_mqtt_encode_connect(out, sizeof out, "d", 60, 1, "\xED\xA0\x80", NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Strings and topics                                                        */
/* ------------------------------------------------------------------------ */

static void test_utf8_valid(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        int want;
    } cases[] = {
        {"", 0, 1},
        {"plain ascii", 11, 1},
        {"\xC2\x80", 2, 1},             /* U+0080, smallest 2-byte */
        {"\xDF\xBF", 2, 1},             /* U+07FF */
        {"\xE0\xA0\x80", 3, 1},         /* U+0800, smallest 3-byte */
        {"\xED\x9F\xBF", 3, 1},         /* U+D7FF, just below surrogates */
        {"\xEE\x80\x80", 3, 1},         /* U+E000, just above */
        {"\xEF\xBB\xBF", 3, 1},         /* U+FEFF BOM: kept, valid */
        {"\xF0\x90\x80\x80", 4, 1},     /* U+10000 */
        {"\xF4\x8F\xBF\xBF", 4, 1},     /* U+10FFFF */
        {"\x01\x7F", 2, 1},             /* controls: SHOULD NOT only */
        {"\0", 1, 0},                   /* U+0000 [MQTT-1.5.3-2] */
        {"\xC0\x80", 2, 0},             /* overlong U+0000 */
        {"\xC1\xBF", 2, 0},             /* overlong */
        {"\xE0\x9F\xBF", 3, 0},         /* overlong 3-byte */
        {"\xF0\x8F\xBF\xBF", 4, 0},     /* overlong 4-byte */
        {"\xED\xA0\x80", 3, 0},         /* U+D800 [MQTT-1.5.3-1] */
        {"\xED\xBF\xBF", 3, 0},         /* U+DFFF */
        {"\xF4\x90\x80\x80", 4, 0},     /* U+110000 */
        {"\xF5\x80\x80\x80", 4, 0},
        {"\x80", 1, 0},                 /* lone continuation */
        {"\xE2\x82", 2, 0},             /* truncated */
        {"\xE2\x28\xA1", 3, 0},         /* bad second byte */
        {"\xE2\x82\x28", 3, 0},         /* bad third byte */
        {"\xF0\x90\x28\x80", 4, 0},     /* bad third byte */
        {"\xF0\x90\x80\x28", 4, 0},     /* bad fourth byte */
        {"\xFE", 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(vg_mqtt_utf8_valid((const uint8_t *)cases[i].s, cases[i].len),
                         cases[i].want);
}

static int topic_ok(const char *s) { return vg_mqtt_topic_valid((const uint8_t *)s, strlen(s)); }
static int filter_ok(const char *s) { return vg_mqtt_filter_valid((const uint8_t *)s, strlen(s)); }

static void test_topic_and_filter_valid(void **state)
{
    (void)state;
    assert_true(topic_ok("vigil/v1/d/dev-1/obs"));
    assert_true(topic_ok("/"));
    assert_true(topic_ok("$SYS/broker"));
    assert_true(topic_ok(" "));
    assert_false(topic_ok(""));
    assert_false(topic_ok("a/+"));
    assert_false(topic_ok("a/#"));
    assert_false(topic_ok("a+b"));

    assert_true(filter_ok("#"));
    assert_true(filter_ok("+"));
    assert_true(filter_ok("+/+"));
    assert_true(filter_ok("/+/"));
    assert_true(filter_ok("a/#"));
    assert_true(filter_ok("+/tennis/#"));
    assert_true(filter_ok("a//b"));
    assert_false(filter_ok(""));
    assert_false(filter_ok("a/#/b"));
    assert_false(filter_ok("a#"));
    assert_false(filter_ok("##"));
    assert_false(filter_ok("a+"));
    assert_false(filter_ok("+a"));
    assert_false(filter_ok("a/++"));

    /* 65535 bytes is the longest; one more is refused (§4.7.3). */
    static uint8_t longest[65536];
    memset(longest, 'a', sizeof longest);
    assert_true(vg_mqtt_topic_valid(longest, 65535));
    assert_false(vg_mqtt_topic_valid(longest, 65536));
    assert_true(vg_mqtt_filter_valid(longest, 65535));
    assert_false(vg_mqtt_filter_valid(longest, 65536));
}

static void test_topic_match(void **state)
{
    (void)state;
    static const struct {
        const char *filter, *topic;
        int want;
    } cases[] = {
        {"a/b", "a/b", 1},
        {"a/b", "a/c", 0},
        {"a/b", "a/b/c", 0},
        {"a/b/c", "a/b", 0},
        {"a/b", "A/b", 0},             /* case-sensitive (§4.7.3) */
        {"#", "a", 1},
        {"#", "a/b/c", 1},
        {"#", "/", 1},
        {"a/#", "a", 1},               /* '#' includes the parent (§4.7.1.2) */
        {"a/#", "a/", 1},
        {"a/#", "a/b/c", 1},
        {"a/#", "ab", 0},
        {"a/#", "b/a", 0},
        {"+", "a", 1},
        {"+", "a/b", 0},
        {"+", "/a", 0},
        {"+/+", "/a", 1},              /* '+' matches a zero-length level */
        {"/+", "/a", 1},
        {"a/+", "a/", 1},
        {"a/+", "a", 0},
        {"a/+/c", "a/b/c", 1},
        {"a/+/c", "a//c", 1},
        {"a/+/c", "a/b/d", 0},
        {"a/+/#", "a/b", 1},
        {"+/+", "a/b", 1},
        {"+/+", "a/b/c", 0},
        {"vigil/v1/d/+/obs", "vigil/v1/d/dev-1/obs", 1},
        {"vigil/v1/d/+/obs", "vigil/v1/d/dev-1/cmd", 0},
        /* §4.7.2: '$' topics are not matched by a leading wildcard. */
        {"#", "$SYS/broker", 0},
        {"+/broker", "$SYS/broker", 0},
        {"+", "$SYS", 0},
        {"$SYS/#", "$SYS/broker", 1},
        {"$SYS/+", "$SYS/broker", 1},
        {"a/#", "a/$b", 1},            /* only the first character counts */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *f = cases[i].filter, *t = cases[i].topic;
        assert_true(filter_ok(f));
        assert_true(topic_ok(t));
        assert_int_equal(vg_mqtt_topic_match((const uint8_t *)f, strlen(f),
                                             (const uint8_t *)t, strlen(t)),
                         cases[i].want);
    }
}

/* ------------------------------------------------------------------------ */
/* Encoders: capacity and range                                              */
/* ------------------------------------------------------------------------ */

/* Every capacity below the exact size fails with 0 and the exact one works. */
#define CHECK_CAPACITY(call_with_cap)                                   \
    do {                                                                \
        uint8_t buf_[512];                                              \
        size_t cap = sizeof buf_;                                       \
        uint8_t *out = buf_;                                            \
        size_t need_ = (call_with_cap);                                 \
        assert_int_not_equal(need_, 0);                                 \
        for (cap = 0; cap < need_; cap++)                               \
            assert_int_equal((call_with_cap), 0);                       \
        cap = need_;                                                    \
        assert_int_equal((call_with_cap), need_);                       \
    } while (0)

static void test_encoders_capacity(void **state)
{
    (void)state;
    static const uint8_t codes[] = {0, 1, 2};
    static uint8_t payload[300];
    CHECK_CAPACITY(vg_mqtt_encode_connack(out, cap, 0, 0));
    CHECK_CAPACITY(vg_mqtt_encode_puback(out, cap, 1));
    CHECK_CAPACITY(vg_mqtt_encode_suback(out, cap, 1, codes, 3));
    CHECK_CAPACITY(vg_mqtt_encode_unsuback(out, cap, 1));
    CHECK_CAPACITY(vg_mqtt_encode_pingresp(out, cap));
    CHECK_CAPACITY(vg_mqtt_encode_pingreq(out, cap));
    CHECK_CAPACITY(vg_mqtt_encode_disconnect(out, cap));
    CHECK_CAPACITY(vg_mqtt_encode_publish(out, cap, OBS_TOPIC, strlen(OBS_TOPIC),
                                          (const uint8_t *)OBS_JSON, strlen(OBS_JSON), 1, 0, 5));
    CHECK_CAPACITY(vg_mqtt_encode_publish(out, cap, OBS_TOPIC, strlen(OBS_TOPIC),
                                          payload, sizeof payload, 0, 0, 0));
    CHECK_CAPACITY(vg_mqtt_encode_connect(out, cap, "dev-1", 60, 1, "nurse", "s3cret"));
    CHECK_CAPACITY(vg_mqtt_encode_subscribe(out, cap, 1, "vigil/#", 1));
    /* A NULL buffer is a zero capacity. */
    assert_int_equal(vg_mqtt_encode_pingreq(NULL, 10), 0);
}

static void test_encoders_out_of_range(void **state)
{
    (void)state;
    static char topic[65537];
    static uint8_t out[65600];
    memset(topic, 'a', sizeof topic - 1);
    /* The longest topic encodes; one byte more does not (§1.5.3). */
    assert_int_equal(vg_mqtt_encode_publish(out, sizeof out, topic, 65535, NULL, 0, 0, 0, 0),
                     vg_mqtt_publish_size(65535, 0, 0));
    assert_int_not_equal(vg_mqtt_publish_size(65535, 0, 0), 0);
    assert_int_equal(vg_mqtt_encode_publish(out, sizeof out, topic, 65536, NULL, 0, 0, 0, 0), 0);
    assert_int_equal(vg_mqtt_publish_size(65536, 0, 0), 0);
    /* Remaining length limit of §2.2.3: 268435455. */
    assert_int_equal(vg_mqtt_publish_size(1, 268435455 - 3, 0), 268435455 + 5);
    assert_int_equal(vg_mqtt_publish_size(1, 268435455 - 2, 0), 0);
    assert_int_equal(vg_mqtt_publish_size(1, 268435455 - 5, 1), 268435455 + 5);
    assert_int_equal(vg_mqtt_publish_size(1, 268435455 - 4, 1), 0);
    assert_int_equal(vg_mqtt_publish_size(1, SIZE_MAX, 0), 0);
    assert_int_equal(vg_mqtt_encode_publish(out, sizeof out, "t", 1, out, SIZE_MAX, 0, 0, 0), 0);
    /* Fixed-header sizes at the length boundaries. */
    assert_int_equal(vg_mqtt_publish_size(1, 124, 0), 2 + 127);
    assert_int_equal(vg_mqtt_publish_size(1, 125, 0), 3 + 128);
    /* Payload length without a payload. */
    assert_int_equal(vg_mqtt_encode_publish(out, sizeof out, "t", 1, NULL, 1, 0, 0, 0), 0);
    /* Over-long client id. */
    topic[65536] = '\0';
    assert_int_equal(vg_mqtt_encode_connect(out, sizeof out, topic, 60, 1, NULL, NULL), 0);
    topic[65535] = '\0';
    assert_int_not_equal(vg_mqtt_encode_connect(out, sizeof out, topic, 60, 1, NULL, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_need_more_every_prefix),
        cmocka_unit_test(test_frame_remaining_length_over_four_bytes),
        cmocka_unit_test(test_frame_too_large_as_soon_as_known),
        cmocka_unit_test(test_frame_reserved_types),
        cmocka_unit_test(test_frame_non_minimal_length_and_stream),
        cmocka_unit_test(test_decode_length_must_match_frame),
        cmocka_unit_test(test_connect_mosquitto_pub),
        cmocka_unit_test(test_connect_truncated_and_trailing),
        cmocka_unit_test(test_connect_protocol_name_and_level),
        cmocka_unit_test(test_connect_reserved_flag),
        cmocka_unit_test(test_connect_password_without_username),
        cmocka_unit_test(test_connect_will_flags),
        cmocka_unit_test(test_connect_client_id_utf8),
        cmocka_unit_test(test_publish_qos0_roundtrip),
        cmocka_unit_test(test_publish_qos1_roundtrip),
        cmocka_unit_test(test_publish_bad_qos_and_dup),
        cmocka_unit_test(test_publish_packet_id),
        cmocka_unit_test(test_publish_bad_topic),
        cmocka_unit_test(test_subscribe_valid),
        cmocka_unit_test(test_subscribe_invalid),
        cmocka_unit_test(test_subscribe_bad_flags),
        cmocka_unit_test(test_subscribe_too_many_filters),
        cmocka_unit_test(test_unsubscribe),
        cmocka_unit_test(test_pingreq_disconnect),
        cmocka_unit_test(test_acks),
        cmocka_unit_test(test_connack_and_suback_client_side),
        cmocka_unit_test(test_connect_encoder_roundtrip),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_topic_and_filter_valid),
        cmocka_unit_test(test_topic_match),
        cmocka_unit_test(test_encoders_capacity),
        cmocka_unit_test(test_encoders_out_of_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
