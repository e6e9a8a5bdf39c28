/* mqtt/codec — MQTT 3.1.1 (OASIS Standard, 29 October 2014) wire format.
 *
 * Design: every byte that comes from a peer is read through 'struct cursor',
 * whose helpers check the bytes left before they read and report a short
 * read as failure; nothing here indexes a peer buffer directly. Decoders
 * borrow from the caller's buffer (see codec.h) and nothing allocates.
 *
 * Strictness: a packet that breaks a MUST of the standard is MALFORMED and
 * the connection is closed (§4.8). Section numbers and the normative
 * statement ids ([MQTT-x.y.z-n]) below are those of the 3.1.1 standard.
 */
#include "mqtt/codec.h"

#include <string.h>

#include "core/util.h" /* VG_WARN_UNUSED */

/* §2.2.3: the Remaining Length takes at most four bytes of 7 bits each. */
#define MAX_REMAINING_LENGTH 268435455u
#define MAX_REMAINING_BYTES 4
/* §1.5.3: strings are prefixed by a two byte length. */
#define MAX_STRING_LEN 65535u

/* Connect Flags bits (§3.1.2.3). */
#define CF_RESERVED 0x01u
#define CF_CLEAN_SESSION 0x02u
#define CF_WILL 0x04u
#define CF_WILL_QOS_MASK 0x18u
#define CF_WILL_QOS_SHIFT 3
#define CF_WILL_RETAIN 0x20u
#define CF_PASSWORD 0x40u
#define CF_USERNAME 0x80u

/* ------------------------------------------------------------------------ */
/* Bounded reader                                                            */
/* ------------------------------------------------------------------------ */

struct cursor {
    const uint8_t *p;
    size_t len;
    size_t off; /* invariant: off <= len */
};

static void cursor_init(struct cursor *c, const uint8_t *p, size_t len)
{
    c->p = p;
    c->len = p ? len : 0;
    c->off = 0;
}

static size_t cursor_left(const struct cursor *c) { return c->len - c->off; }

/* Each read_* returns 1 on success, 0 (reading nothing) on short input. */
static VG_WARN_UNUSED int read_u8(struct cursor *c, uint8_t *v)
{
    if (cursor_left(c) < 1)
        return 0;
    *v = c->p[c->off++];
    return 1;
}

/* §1.5.2: 16-bit integers are big-endian. */
static VG_WARN_UNUSED int read_u16(struct cursor *c, uint16_t *v)
{
    if (cursor_left(c) < 2)
        return 0;
    *v = (uint16_t)((unsigned)c->p[c->off] << 8 | c->p[c->off + 1]);
    c->off += 2;
    return 1;
}

static VG_WARN_UNUSED int read_bytes(struct cursor *c, size_t n, struct vg_mqtt_str *s)
{
    if (cursor_left(c) < n)
        return 0;
    s->p = c->p + c->off;
    s->len = n;
    c->off += n;
    return 1;
}

/* A length-prefixed field: the two byte length of §1.5.3, also used for the
 * binary Will Message (§3.1.3.3) and Password (§3.1.3.5). No UTF-8 check. */
static VG_WARN_UNUSED int read_bin(struct cursor *c, struct vg_mqtt_str *s)
{
    uint16_t n;
    if (!read_u16(c, &n))
        return 0;
    return read_bytes(c, n, s);
}

/* A UTF-8 encoded string (§1.5.3): length-prefixed and well-formed. */
static VG_WARN_UNUSED int read_str(struct cursor *c, struct vg_mqtt_str *s)
{
    if (!read_bin(c, s))
        return 0;
    return vg_mqtt_utf8_valid(s->p, s->len);
}

/* Everything left, possibly nothing (a PUBLISH payload, §3.3.3). */
static void read_rest(struct cursor *c, struct vg_mqtt_str *s)
{
    s->p = c->p + c->off;
    s->len = cursor_left(c);
    c->off = c->len;
}

/* ------------------------------------------------------------------------ */
/* Fixed header                                                              */
/* ------------------------------------------------------------------------ */

/* Reads the fixed header (§2.2) at the start of 'c'. On VG_MQTT_OK sets the
 * type, the flags nibble, the Remaining Length and the header's size. */
static int read_fixed_header(struct cursor *c, uint8_t *type, uint8_t *flags,
                             uint32_t *remaining, size_t *header_len)
{
    uint8_t b;
    if (!read_u8(c, &b))
        return VG_MQTT_NEED_MORE;
    *type = (uint8_t)(b >> 4);
    *flags = (uint8_t)(b & 0x0F);
    /* §2.2.1: types 0 and 15 are "Reserved; Forbidden". Refused on the
     * first byte so a stream of garbage is dropped without waiting. */
    if (*type == 0 || *type == 15)
        return VG_MQTT_MALFORMED;

    /* §2.2.3: 7 bits per byte, least significant group first, the top bit
     * saying another byte follows; at most four bytes. A non-minimal
     * encoding (e.g. 0x80 0x00 for 0) is not forbidden by 3.1.1 and is
     * accepted; a continuation bit on the fourth byte is not. */
    uint32_t value = 0;
    for (int i = 0; i < MAX_REMAINING_BYTES; i++) {
        if (!read_u8(c, &b))
            return VG_MQTT_NEED_MORE;
        value |= (uint32_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            *remaining = value;
            *header_len = c->off;
            return VG_MQTT_OK;
        }
    }
    return VG_MQTT_MALFORMED;
}

int vg_mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet,
                  size_t *header_len, size_t *total)
{
    struct cursor c;
    uint8_t type, flags;
    uint32_t remaining;
    size_t hlen;

    cursor_init(&c, buf, len);
    int rc = read_fixed_header(&c, &type, &flags, &remaining, &hlen);
    if (rc != VG_MQTT_OK)
        return rc;
    /* hlen <= 5 and remaining <= 2^28-1: the sum cannot overflow size_t.
     * Checked before the body is waited for, so a peer cannot make us
     * buffer more than max_packet by announcing a large packet. */
    size_t need = hlen + remaining;
    if (need > max_packet)
        return VG_MQTT_TOO_LARGE;
    if (len < need)
        return VG_MQTT_NEED_MORE;
    if (header_len)
        *header_len = hlen;
    if (total)
        *total = need;
    return VG_MQTT_OK;
}

/* §2.2.2, Table 2.2: the flags each type must carry. PUBLISH's are
 * DUP/QoS/RETAIN and are checked by decode_publish. "If invalid flags are
 * received, the receiver MUST close the Network Connection" [MQTT-2.2.2-2]. */
static int flags_valid(uint8_t type, uint8_t flags)
{
    switch (type) {
    case VG_MQTT_PUBLISH:
        return 1;
    case VG_MQTT_PUBREL:      /* [MQTT-3.6.1-1] */
    case VG_MQTT_SUBSCRIBE:   /* [MQTT-3.8.1-1] */
    case VG_MQTT_UNSUBSCRIBE: /* [MQTT-3.10.1-1] */
        return flags == 0x2;
    default:
        return flags == 0x0;
    }
}

/* ------------------------------------------------------------------------ */
/* Per-packet decoders. Each reads its variable header and payload from 'c', */
/* which spans exactly the Remaining Length; bytes left over are MALFORMED. */
/* ------------------------------------------------------------------------ */

/* §3.1 CONNECT. */
static int decode_connect(struct cursor *c, struct vg_mqtt_connect *m)
{
    struct vg_mqtt_str name;
    uint8_t level, cflags;

    /* §3.1.2.1/§3.1.2.2: "MQTT" level 4 is 3.1.1; "MQIsdp" level 3 is the
     * 3.1 predecessor, still sent by old device stacks. Anything else is
     * answered with CONNACK 0x01 [MQTT-3.1.2-2] — decided here, before the
     * rest is read, since a newer protocol's CONNECT (e.g. MQTT 5 with its
     * properties) would not parse under these rules. */
    if (!read_bin(c, &name) || !read_u8(c, &level))
        return VG_MQTT_MALFORMED;
    if (name.len == 4 && memcmp(name.p, "MQTT", 4) == 0 && level == 4)
        m->protocol_level = level;
    else if (name.len == 6 && memcmp(name.p, "MQIsdp", 6) == 0 && level == 3)
        m->protocol_level = level;
    else
        return VG_MQTT_BAD_PROTOCOL;

    if (!read_u8(c, &cflags))
        return VG_MQTT_MALFORMED;
    /* §3.1.2.3: "The Server MUST validate that the reserved flag in the
     * CONNECT Control Packet is set to zero" [MQTT-3.1.2-3]. */
    if (cflags & CF_RESERVED)
        return VG_MQTT_MALFORMED;
    m->clean_session = (cflags & CF_CLEAN_SESSION) != 0;
    m->has_will = (cflags & CF_WILL) != 0;
    m->will_qos = (uint8_t)((cflags & CF_WILL_QOS_MASK) >> CF_WILL_QOS_SHIFT);
    m->will_retain = (cflags & CF_WILL_RETAIN) != 0;
    m->has_username = (cflags & CF_USERNAME) != 0;
    m->has_password = (cflags & CF_PASSWORD) != 0;
    /* §3.1.2.6: Will QoS 3 is forbidden [MQTT-3.1.2-14]; without the Will
     * Flag both Will QoS and Will Retain must be 0 [MQTT-3.1.2-13],
     * [MQTT-3.1.2-15]. */
    if (m->will_qos > 2)
        return VG_MQTT_MALFORMED;
    if (!m->has_will && (m->will_qos != 0 || m->will_retain))
        return VG_MQTT_MALFORMED;
    /* §3.1.2.9: "If the User Name Flag is set to 0, the Password Flag MUST
     * be set to 0" [MQTT-3.1.2-22]. Applied to "MQIsdp" too. */
    if (m->has_password && !m->has_username)
        return VG_MQTT_MALFORMED;

    /* §3.1.2.10 */
    if (!read_u16(c, &m->keepalive))
        return VG_MQTT_MALFORMED;

    /* §3.1.3: the payload fields, in this order, present as the flags say.
     * A zero-length Client Identifier is well-formed (§3.1.3.1); whether it
     * is acceptable with clean_session 0 is the server's decision
     * ([MQTT-3.1.3-8], CONNACK 0x02), not the codec's. */
    if (!read_str(c, &m->client_id))
        return VG_MQTT_MALFORMED;
    if (m->has_will) {
        /* §3.1.3.2: the Will Topic is published as a topic name, so it
         * must be one: non-empty and without wildcards (§4.7). */
        if (!read_bin(c, &m->will_topic) ||
            !vg_mqtt_topic_valid(m->will_topic.p, m->will_topic.len))
            return VG_MQTT_MALFORMED;
        if (!read_bin(c, &m->will_message)) /* §3.1.3.3: binary */
            return VG_MQTT_MALFORMED;
    }
    if (m->has_username && !read_str(c, &m->username)) /* §3.1.3.4 */
        return VG_MQTT_MALFORMED;
    if (m->has_password && !read_bin(c, &m->password)) /* §3.1.3.5: binary */
        return VG_MQTT_MALFORMED;
    return VG_MQTT_OK;
}

/* §3.2 CONNACK (client side). */
static int decode_connack(struct cursor *c, struct vg_mqtt_packet *out)
{
    uint8_t ack_flags, rc;
    if (!read_u8(c, &ack_flags) || !read_u8(c, &rc))
        return VG_MQTT_MALFORMED;
    /* §3.2.2.1: bits 7-1 of the Connect Acknowledge Flags are reserved, 0. */
    if (ack_flags & 0xFE)
        return VG_MQTT_MALFORMED;
    /* [MQTT-3.2.2-4]: a refusal carries Session Present 0. Return codes
     * 6-255 are reserved (§3.2.2.3) but carry no MUST; they are passed up
     * for the caller to treat as a refusal. */
    if (rc != VG_CONNACK_ACCEPTED && (ack_flags & 0x01))
        return VG_MQTT_MALFORMED;
    out->u.connack.session_present = ack_flags & 0x01;
    out->u.connack.rc = rc;
    return VG_MQTT_OK;
}

/* A packet identifier, which "MUST contain a non-zero 16-bit Packet
 * Identifier" [MQTT-2.3.1-1] wherever it appears (acks echo one). */
static VG_WARN_UNUSED int read_packet_id(struct cursor *c, uint16_t *id)
{
    return read_u16(c, id) && *id != 0;
}

/* §3.3 PUBLISH. */
static int decode_publish(struct cursor *c, uint8_t flags, struct vg_mqtt_publish *m)
{
    m->dup = (flags & 0x08) != 0;
    m->qos = (uint8_t)((flags >> 1) & 0x03);
    m->retain = (flags & 0x01) != 0;
    /* §3.3.1.2: "A PUBLISH Packet MUST NOT have both QoS bits set to 1"
     * [MQTT-3.3.1-4]. */
    if (m->qos == 3)
        return VG_MQTT_MALFORMED;
    /* §3.3.1.1: "The DUP flag MUST be set to 0 for all QoS 0 messages"
     * [MQTT-3.3.1-2]. */
    if (m->qos == 0 && m->dup)
        return VG_MQTT_MALFORMED;
    /* §3.3.2.1: a UTF-8 string [MQTT-3.3.2-1] without wildcards
     * [MQTT-3.3.2-2]; §4.7.3: at least one character [MQTT-4.7.3-1]. */
    if (!read_bin(c, &m->topic) || !vg_mqtt_topic_valid(m->topic.p, m->topic.len))
        return VG_MQTT_MALFORMED;
    /* §3.3.2.2: the Packet Identifier is present only for QoS 1 and 2. */
    m->packet_id = 0;
    if (m->qos > 0 && !read_packet_id(c, &m->packet_id))
        return VG_MQTT_MALFORMED;
    /* §3.3.3: the payload is whatever remains; zero length is valid. */
    read_rest(c, &m->payload);
    return VG_MQTT_OK;
}

/* §3.8 SUBSCRIBE and §3.10 UNSUBSCRIBE: a packet id and a list of filters,
 * each followed by a Requested QoS byte in SUBSCRIBE only. */
static int decode_filters(struct cursor *c, int with_qos, struct vg_mqtt_subscribe *m)
{
    size_t count = 0;
    if (!read_packet_id(c, &m->packet_id))
        return VG_MQTT_MALFORMED;
    /* Every entry is validated even past the limit, so a packet that is
     * both too long and malformed is reported as malformed. */
    while (cursor_left(c) > 0) {
        struct vg_mqtt_str f;
        uint8_t qos = 0;
        /* §3.8.3 / §3.10.3: UTF-8 strings [MQTT-3.8.3-1] that are valid
         * filters (§4.7.1). */
        if (!read_bin(c, &f) || !vg_mqtt_filter_valid(f.p, f.len))
            return VG_MQTT_MALFORMED;
        /* §3.8.3.1: "The Server MUST treat a SUBSCRIBE packet as malformed
         * ... if any of Reserved bits in the payload are non-zero, or QoS
         * is not 0,1 or 2" [MQTT-3-8.3-4]. */
        if (with_qos && (!read_u8(c, &qos) || qos > 2))
            return VG_MQTT_MALFORMED;
        if (count < VG_MQTT_MAX_FILTERS) {
            m->filters[count] = f;
            m->qos[count] = qos;
        }
        count++;
    }
    /* "The payload of a SUBSCRIBE packet MUST contain at least one Topic
     * Filter / QoS pair" [MQTT-3.8.3-3]; likewise UNSUBSCRIBE
     * [MQTT-3.10.3-2]. */
    if (count == 0)
        return VG_MQTT_MALFORMED;
    if (count > VG_MQTT_MAX_FILTERS)
        return VG_MQTT_LIMIT;
    m->count = count;
    return VG_MQTT_OK;
}

/* §3.9 SUBACK (client side). */
static int decode_suback(struct cursor *c, struct vg_mqtt_packet *out)
{
    size_t count = 0;
    if (!read_packet_id(c, &out->u.suback.packet_id))
        return VG_MQTT_MALFORMED;
    while (cursor_left(c) > 0) {
        uint8_t code;
        if (!read_u8(c, &code))
            return VG_MQTT_MALFORMED;
        /* §3.9.3: "SUBACK return codes other than 0x00, 0x01, 0x02 and
         * 0x80 are reserved and MUST NOT be used" [MQTT-3.9.3-2]. */
        if (code > 2 && code != VG_SUBACK_FAILURE)
            return VG_MQTT_MALFORMED;
        if (count < VG_MQTT_MAX_FILTERS)
            out->u.suback.codes[count] = code;
        count++;
    }
    /* One code per filter of the SUBSCRIBE [MQTT-3.8.4-5], which has one
     * at least. */
    if (count == 0)
        return VG_MQTT_MALFORMED;
    if (count > VG_MQTT_MAX_FILTERS)
        return VG_MQTT_LIMIT;
    out->u.suback.count = count;
    return VG_MQTT_OK;
}

int vg_mqtt_decode(const uint8_t *pkt, size_t len, struct vg_mqtt_packet *out)
{
    struct cursor c;
    uint8_t type, flags;
    uint32_t remaining;
    size_t hlen;
    int rc;

    if (!out)
        return VG_MQTT_MALFORMED;
    memset(out, 0, sizeof *out);
    cursor_init(&c, pkt, len);
    rc = read_fixed_header(&c, &type, &flags, &remaining, &hlen);
    if (rc == VG_MQTT_NEED_MORE)
        return VG_MQTT_MALFORMED; /* not a whole packet */
    if (rc != VG_MQTT_OK)
        return rc;
    /* The caller framed exactly one packet: its length is the header plus
     * the Remaining Length, no more and no less. */
    if (len - hlen != remaining)
        return VG_MQTT_MALFORMED;
    if (!flags_valid(type, flags))
        return VG_MQTT_MALFORMED;
    out->type = (enum vg_mqtt_type)type;

    switch (type) {
    case VG_MQTT_CONNECT:
        rc = decode_connect(&c, &out->u.connect);
        break;
    case VG_MQTT_CONNACK:
        rc = decode_connack(&c, out);
        break;
    case VG_MQTT_PUBLISH:
        rc = decode_publish(&c, flags, &out->u.publish);
        break;
    case VG_MQTT_PUBACK:  /* §3.4 */
    case VG_MQTT_PUBREC:  /* §3.5 */
    case VG_MQTT_PUBREL:  /* §3.6 */
    case VG_MQTT_PUBCOMP: /* §3.7 */
    case VG_MQTT_UNSUBACK: /* §3.11 */
        rc = read_packet_id(&c, &out->u.packet_id) ? VG_MQTT_OK : VG_MQTT_MALFORMED;
        break;
    case VG_MQTT_SUBSCRIBE:
        rc = decode_filters(&c, 1, &out->u.subscribe);
        break;
    case VG_MQTT_UNSUBSCRIBE:
        rc = decode_filters(&c, 0, &out->u.subscribe);
        break;
    case VG_MQTT_SUBACK:
        rc = decode_suback(&c, out);
        break;
    case VG_MQTT_PINGREQ:    /* §3.12: no variable header, no payload */
    case VG_MQTT_PINGRESP:   /* §3.13 */
    case VG_MQTT_DISCONNECT: /* §3.14 */
        rc = VG_MQTT_OK;
        break;
    default: /* 0 and 15 were refused by read_fixed_header */
        rc = VG_MQTT_MALFORMED;
        break;
    }
    if (rc != VG_MQTT_OK)
        return rc;
    /* Bytes past the fields the packet declares are not part of any valid
     * packet of 3.1.1 (for PUBLISH, read_rest took them all). */
    if (cursor_left(&c) != 0)
        return VG_MQTT_MALFORMED;
    return VG_MQTT_OK;
}

/* ------------------------------------------------------------------------ */
/* Strings and topics                                                        */
/* ------------------------------------------------------------------------ */

/* Well-formed UTF-8 as in Unicode's Table 3-7, which §1.5.3 refers to:
 * no overlong forms (C0, C1, E0 80..9F, F0 80..8F), no surrogates
 * U+D800..U+DFFF (ED A0..BF) [MQTT-1.5.3-1], nothing above U+10FFFF
 * (F4 90.., F5..FF), and no U+0000 [MQTT-1.5.3-2]. Control characters and
 * non-characters are only "SHOULD NOT" and are accepted. */
int vg_mqtt_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    if (!s)
        return len == 0;
    while (i < len) {
        uint8_t b = s[i];
        size_t n;
        uint8_t lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (b == 0x00)
            return 0;
        if (b < 0x80) {
            i++;
            continue;
        }
        if (b < 0xC2) {
            return 0; /* stray continuation byte, or overlong C0/C1 */
        } else if (b < 0xE0) {
            n = 1;
        } else if (b < 0xF0) {
            n = 2;
            if (b == 0xE0)
                lo = 0xA0; /* overlong */
            else if (b == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (b < 0xF5) {
            n = 3;
            if (b == 0xF0)
                lo = 0x90; /* overlong */
            else if (b == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            return 0;
        }
        if (len - i - 1 < n)
            return 0; /* truncated sequence */
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        i += n + 1;
    }
    return 1;
}

/* §4.7.3: "All Topic Names and Topic Filters MUST be at least one character
 * long" [MQTT-4.7.3-1] and at most 65535 bytes [MQTT-4.7.3-3], and "MUST
 * NOT include the null character" [MQTT-4.7.3-2]. */
static int topic_common_valid(const uint8_t *t, size_t len)
{
    return t && len >= 1 && len <= MAX_STRING_LEN && vg_mqtt_utf8_valid(t, len);
}

int vg_mqtt_topic_valid(const uint8_t *t, size_t len)
{
    if (!topic_common_valid(t, len))
        return 0;
    /* §4.7.1: wildcards "MUST NOT be used within a Topic Name". */
    for (size_t i = 0; i < len; i++)
        if (t[i] == '+' || t[i] == '#')
            return 0;
    return 1;
}

int vg_mqtt_filter_valid(const uint8_t *f, size_t len)
{
    if (!topic_common_valid(f, len))
        return 0;
    for (size_t i = 0; i < len; i++) {
        int starts_level = i == 0 || f[i - 1] == '/';
        int ends_level = i + 1 == len || f[i + 1] == '/';
        /* §4.7.1.2: '#' "MUST be specified either on its own or following
         * a topic level separator. In either case it MUST be the last
         * character specified in the Topic Filter" [MQTT-4.7.1-2]. */
        if (f[i] == '#' && !(starts_level && i + 1 == len))
            return 0;
        /* §4.7.1.3: '+' "MUST occupy an entire level of the filter"
         * [MQTT-4.7.1-3]. */
        if (f[i] == '+' && !(starts_level && ends_level))
            return 0;
    }
    return 1;
}

/* The level of 's' (length 'len') that starts at 'start': returns its end,
 * the index of the next '/' or 'len'. */
static size_t level_end(const uint8_t *s, size_t len, size_t start)
{
    size_t i = start;
    while (i < len && s[i] != '/')
        i++;
    return i;
}

static int level_is(const uint8_t *s, size_t start, size_t end, uint8_t ch)
{
    return end - start == 1 && s[start] == ch;
}

/* §4.7: matching is level by level, byte for byte (no normalisation,
 * §4.7.3). '+' matches exactly one level, which may be empty ("sport/+"
 * matches "sport/" but not "sport", §4.7.1.3); '#' matches its parent and
 * any number of levels below ("sport/#" matches "sport", §4.7.1.2). Safe on
 * any input, though the result means something only for valid ones. */
int vg_mqtt_topic_match(const uint8_t *filter, size_t flen,
                        const uint8_t *topic, size_t tlen)
{
    size_t fi = 0, ti = 0;
    int topic_done = 0; /* every level of the topic has been matched */

    if (!filter || !topic)
        return 0;
    /* §4.7.2: "The Server MUST NOT match Topic Filters starting with a
     * wildcard character (# or +) with Topic Names beginning with a $
     * character" [MQTT-4.7.2-1]. */
    if (tlen > 0 && topic[0] == '$' && flen > 0 && (filter[0] == '#' || filter[0] == '+'))
        return 0;

    for (;;) {
        size_t fe = level_end(filter, flen, fi);
        if (level_is(filter, fi, fe, '#'))
            return 1; /* this level and all below, or the parent itself */
        if (topic_done)
            return 0; /* the filter has a level the topic lacks */
        size_t te = level_end(topic, tlen, ti);
        if (!level_is(filter, fi, fe, '+') &&
            (fe - fi != te - ti || memcmp(filter + fi, topic + ti, fe - fi) != 0))
            return 0;
        int filter_more = fe < flen, topic_more = te < tlen;
        if (!filter_more)
            return !topic_more;
        fi = fe + 1;
        if (topic_more)
            ti = te + 1;
        else
            topic_done = 1;
    }
}

/* ------------------------------------------------------------------------ */
/* Encoders                                                                  */
/* ------------------------------------------------------------------------ */

/* A bounded writer: the mirror of 'struct cursor'. Writes past 'cap' are
 * refused and make the writer fail for good, so an encoder can write its
 * fields straight down and check once at the end. */
struct writer {
    uint8_t *p;
    size_t cap;
    size_t off;
    int failed;
};

static void writer_init(struct writer *w, uint8_t *p, size_t cap)
{
    w->p = p;
    w->cap = p ? cap : 0;
    w->off = 0;
    w->failed = 0;
}

static void write_bytes(struct writer *w, const void *src, size_t n)
{
    if (w->failed || w->cap - w->off < n) {
        w->failed = 1;
        return;
    }
    if (n > 0)
        memcpy(w->p + w->off, src, n);
    w->off += n;
}

static void write_u8(struct writer *w, uint8_t v) { write_bytes(w, &v, 1); }

static void write_u16(struct writer *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)(v & 0xFF)};
    write_bytes(w, b, 2);
}

/* A length-prefixed field (§1.5.3); the caller has checked n <= 65535. */
static void write_bin(struct writer *w, const void *src, size_t n)
{
    write_u16(w, (uint16_t)n);
    write_bytes(w, src, n);
}

/* The fixed header (§2.2) with the minimal Remaining Length encoding. */
static void write_fixed_header(struct writer *w, uint8_t type, uint8_t flags,
                               size_t remaining)
{
    write_u8(w, (uint8_t)(type << 4 | flags));
    do {
        uint8_t b = (uint8_t)(remaining & 0x7F);
        remaining >>= 7;
        if (remaining > 0)
            b |= 0x80;
        write_u8(w, b);
    } while (remaining > 0);
}

/* Bytes the fixed header takes for this Remaining Length (caller checked
 * remaining <= MAX_REMAINING_LENGTH). */
static size_t fixed_header_size(size_t remaining)
{
    size_t n = 2;
    while (remaining >= 128) {
        remaining >>= 7;
        n++;
    }
    return n;
}

static size_t writer_done(const struct writer *w) { return w->failed ? 0 : w->off; }

/* For packets that are a fixed header and a packet identifier only. */
static size_t encode_id_only(uint8_t *out, size_t cap, uint8_t type, uint8_t flags,
                             uint16_t packet_id)
{
    struct writer w;
    if (packet_id == 0) /* [MQTT-2.3.1-1] */
        return 0;
    writer_init(&w, out, cap);
    write_fixed_header(&w, type, flags, 2);
    write_u16(&w, packet_id);
    return writer_done(&w);
}

static size_t encode_empty(uint8_t *out, size_t cap, uint8_t type)
{
    struct writer w;
    writer_init(&w, out, cap);
    write_fixed_header(&w, type, 0, 0);
    return writer_done(&w);
}

size_t vg_mqtt_encode_connack(uint8_t *out, size_t cap, int session_present, uint8_t rc)
{
    struct writer w;
    /* §3.2.2.3: return codes 6-255 are reserved. */
    if (rc > VG_CONNACK_NOT_AUTHORIZED)
        return 0;
    /* [MQTT-3.2.2-4]: a refusal MUST carry Session Present 0, whatever the
     * caller's session state. */
    uint8_t ack_flags = (rc == VG_CONNACK_ACCEPTED && session_present) ? 1 : 0;
    writer_init(&w, out, cap);
    write_fixed_header(&w, VG_MQTT_CONNACK, 0, 2);
    write_u8(&w, ack_flags);
    write_u8(&w, rc);
    return writer_done(&w);
}

size_t vg_mqtt_encode_puback(uint8_t *out, size_t cap, uint16_t packet_id)
{
    return encode_id_only(out, cap, VG_MQTT_PUBACK, 0, packet_id);
}

size_t vg_mqtt_encode_suback(uint8_t *out, size_t cap, uint16_t packet_id,
                             const uint8_t *codes, size_t count)
{
    struct writer w;
    if (packet_id == 0 || !codes || count == 0 || count > MAX_REMAINING_LENGTH - 2)
        return 0;
    /* §3.9.3: only 0x00, 0x01, 0x02 and 0x80 [MQTT-3.9.3-2]. */
    for (size_t i = 0; i < count; i++)
        if (codes[i] > 2 && codes[i] != VG_SUBACK_FAILURE)
            return 0;
    writer_init(&w, out, cap);
    write_fixed_header(&w, VG_MQTT_SUBACK, 0, 2 + count);
    write_u16(&w, packet_id);
    write_bytes(&w, codes, count);
    return writer_done(&w);
}

size_t vg_mqtt_encode_unsuback(uint8_t *out, size_t cap, uint16_t packet_id)
{
    return encode_id_only(out, cap, VG_MQTT_UNSUBACK, 0, packet_id);
}

size_t vg_mqtt_encode_pingresp(uint8_t *out, size_t cap)
{
    return encode_empty(out, cap, VG_MQTT_PINGRESP);
}

/* The Remaining Length of a PUBLISH, or 0 if it cannot be encoded. */
static size_t publish_remaining(size_t topic_len, size_t payload_len, uint8_t qos)
{
    if (qos > 2 || topic_len == 0 || topic_len > MAX_STRING_LEN)
        return 0;
    size_t header = 2 + topic_len + (qos > 0 ? 2 : 0);
    if (payload_len > MAX_REMAINING_LENGTH - header) /* §2.2.3 */
        return 0;
    return header + payload_len;
}

size_t vg_mqtt_publish_size(size_t topic_len, size_t payload_len, uint8_t qos)
{
    size_t remaining = publish_remaining(topic_len, payload_len, qos);
    if (remaining == 0)
        return 0;
    return fixed_header_size(remaining) + remaining;
}

size_t vg_mqtt_encode_publish(uint8_t *out, size_t cap, const char *topic, size_t topic_len,
                              const uint8_t *payload, size_t payload_len, uint8_t qos,
                              int retain, uint16_t packet_id)
{
    struct writer w;
    size_t remaining = publish_remaining(topic_len, payload_len, qos);
    if (remaining == 0)
        return 0;
    /* Never emit what our own decoder, or a peer's, must refuse: a topic
     * name without wildcards (§3.3.2.1), a non-zero id for QoS > 0
     * [MQTT-2.3.1-1]. */
    if (!vg_mqtt_topic_valid((const uint8_t *)topic, topic_len))
        return 0;
    if (qos > 0 && packet_id == 0)
        return 0;
    if (payload_len > 0 && !payload)
        return 0;
    /* DUP is left 0: a retransmission is the session layer's business. */
    uint8_t flags = (uint8_t)(qos << 1 | (retain ? 1 : 0));
    writer_init(&w, out, cap);
    write_fixed_header(&w, VG_MQTT_PUBLISH, flags, remaining);
    write_bin(&w, topic, topic_len);
    if (qos > 0) /* §3.3.2.2 */
        write_u16(&w, packet_id);
    write_bytes(&w, payload, payload_len);
    return writer_done(&w);
}

size_t vg_mqtt_encode_connect(uint8_t *out, size_t cap, const char *client_id,
                              uint16_t keepalive, int clean_session,
                              const char *username, const char *password)
{
    struct writer w;
    size_t id_len, user_len = 0, pass_len = 0;
    uint8_t cflags = 0;

    if (!client_id)
        client_id = "";
    id_len = strlen(client_id);
    /* §3.1.2.9: no password without a user name [MQTT-3.1.2-22]. */
    if (password && !username)
        return 0;
    if (id_len > MAX_STRING_LEN ||
        !vg_mqtt_utf8_valid((const uint8_t *)client_id, id_len))
        return 0;
    if (username) {
        user_len = strlen(username);
        if (user_len > MAX_STRING_LEN ||
            !vg_mqtt_utf8_valid((const uint8_t *)username, user_len))
            return 0;
        cflags |= CF_USERNAME;
    }
    if (password) {
        pass_len = strlen(password);
        if (pass_len > MAX_STRING_LEN)
            return 0;
        cflags |= CF_PASSWORD;
    }
    if (clean_session)
        cflags |= CF_CLEAN_SESSION;

    /* Name "MQTT" (6) + level (1) + flags (1) + keepalive (2) + fields;
     * at most 10 + 3 * 65537, well inside §2.2.3's limit. */
    size_t remaining = 10 + 2 + id_len + (username ? 2 + user_len : 0) +
                       (password ? 2 + pass_len : 0);
    writer_init(&w, out, cap);
    write_fixed_header(&w, VG_MQTT_CONNECT, 0, remaining);
    write_bin(&w, "MQTT", 4); /* §3.1.2.1 */
    write_u8(&w, 4);          /* §3.1.2.2: 3.1.1 */
    write_u8(&w, cflags);
    write_u16(&w, keepalive);
    write_bin(&w, client_id, id_len);
    if (username)
        write_bin(&w, username, user_len);
    if (password)
        write_bin(&w, password, pass_len);
    return writer_done(&w);
}

size_t vg_mqtt_encode_subscribe(uint8_t *out, size_t cap, uint16_t packet_id,
                                const char *filter, uint8_t qos)
{
    struct writer w;
    size_t flen;
    if (!filter || packet_id == 0 || qos > 2)
        return 0;
    flen = strlen(filter);
    if (!vg_mqtt_filter_valid((const uint8_t *)filter, flen))
        return 0;
    writer_init(&w, out, cap);
    /* §3.8.1: SUBSCRIBE's fixed header flags are 0010 [MQTT-3.8.1-1]. */
    write_fixed_header(&w, VG_MQTT_SUBSCRIBE, 0x2, 2 + 2 + flen + 1);
    write_u16(&w, packet_id);
    write_bin(&w, filter, flen);
    write_u8(&w, qos);
    return writer_done(&w);
}

size_t vg_mqtt_encode_pingreq(uint8_t *out, size_t cap)
{
    return encode_empty(out, cap, VG_MQTT_PINGREQ);
}

size_t vg_mqtt_encode_disconnect(uint8_t *out, size_t cap)
{
    return encode_empty(out, cap, VG_MQTT_DISCONNECT);
}
