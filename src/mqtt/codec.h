/* mqtt/codec — pure MQTT 3.1.1 encoder and decoder (OASIS MQTT 3.1.1).
 *
 * Owns nothing and allocates nothing. Decoders read a bounded buffer that
 * the caller owns; every string and payload in a decoded packet BORROWS
 * from that buffer and is valid only while it is. Decoders never trust a
 * length from the peer before checking it against the bytes present.
 *
 * Usage on the receive path:
 *   1. vg_mqtt_frame() on the bytes buffered so far: it says whether a whole
 *      packet is there and how long it is, refusing over-long remaining
 *      lengths and packets larger than the configured maximum BEFORE the
 *      body is buffered or allocated;
 *   2. vg_mqtt_decode() on the whole packet: checks the fixed-header flags
 *      of its type, every field, UTF-8 of every string (§1.5.3), and fills
 *      a struct vg_mqtt_packet.
 */
#ifndef VG_MQTT_CODEC_H
#define VG_MQTT_CODEC_H

#include <stddef.h>
#include <stdint.h>

enum vg_mqtt_type {
    VG_MQTT_CONNECT = 1,
    VG_MQTT_CONNACK = 2,
    VG_MQTT_PUBLISH = 3,
    VG_MQTT_PUBACK = 4,
    VG_MQTT_PUBREC = 5,
    VG_MQTT_PUBREL = 6,
    VG_MQTT_PUBCOMP = 7,
    VG_MQTT_SUBSCRIBE = 8,
    VG_MQTT_SUBACK = 9,
    VG_MQTT_UNSUBSCRIBE = 10,
    VG_MQTT_UNSUBACK = 11,
    VG_MQTT_PINGREQ = 12,
    VG_MQTT_PINGRESP = 13,
    VG_MQTT_DISCONNECT = 14,
};

/* Results. Negative values are errors after which the connection must be
 * closed (§4.8: "the Server MUST close the Network Connection"). */
enum vg_mqtt_rc {
    VG_MQTT_OK = 0,
    VG_MQTT_NEED_MORE = 1,     /* vg_mqtt_frame: not a whole packet yet */
    VG_MQTT_MALFORMED = -1,    /* violates the packet's wire format */
    VG_MQTT_TOO_LARGE = -2,    /* larger than the configured maximum */
    VG_MQTT_BAD_PROTOCOL = -3, /* CONNECT with an unsupported name/level:
                                  reply CONNACK 0x01 before closing */
    VG_MQTT_LIMIT = -4,        /* within the format but beyond a fixed limit
                                  of this codec (e.g. too many filters) */
};

/* CONNACK return codes (§3.2.2.3). */
enum vg_mqtt_connack_rc {
    VG_CONNACK_ACCEPTED = 0x00,
    VG_CONNACK_BAD_PROTOCOL = 0x01,
    VG_CONNACK_ID_REJECTED = 0x02,
    VG_CONNACK_UNAVAILABLE = 0x03,
    VG_CONNACK_BAD_CREDENTIALS = 0x04,
    VG_CONNACK_NOT_AUTHORIZED = 0x05,
};

#define VG_SUBACK_FAILURE 0x80

/* The most topic filters one SUBSCRIBE/UNSUBSCRIBE may carry here. */
#define VG_MQTT_MAX_FILTERS 16

/* A borrowed, length-counted string or byte run; not NUL-terminated. */
struct vg_mqtt_str {
    const uint8_t *p;
    size_t len;
};

struct vg_mqtt_connect {
    uint8_t protocol_level; /* 4 for 3.1.1 (3 for "MQIsdp" 3.1 is accepted) */
    int clean_session;
    uint16_t keepalive;     /* seconds, 0 = none */
    struct vg_mqtt_str client_id;
    int has_will;
    uint8_t will_qos;
    int will_retain;
    struct vg_mqtt_str will_topic, will_message;
    int has_username, has_password;
    struct vg_mqtt_str username, password;
};

struct vg_mqtt_publish {
    int dup, retain;
    uint8_t qos;            /* 0, 1 or 2 */
    struct vg_mqtt_str topic; /* validated: UTF-8, no wildcards, non-empty */
    uint16_t packet_id;     /* non-zero when qos > 0, else 0 */
    struct vg_mqtt_str payload;
};

struct vg_mqtt_subscribe {
    uint16_t packet_id;
    size_t count;           /* 1..VG_MQTT_MAX_FILTERS */
    struct vg_mqtt_str filters[VG_MQTT_MAX_FILTERS]; /* validated filters */
    uint8_t qos[VG_MQTT_MAX_FILTERS]; /* requested QoS (0..2); unused for
                                         UNSUBSCRIBE */
};

/* Packets a server or a client may receive. PUBACK/PUBREC/PUBREL/PUBCOMP/
 * UNSUBACK carry only packet_id; PINGREQ/PINGRESP/DISCONNECT carry nothing. */
struct vg_mqtt_packet {
    enum vg_mqtt_type type;
    union {
        struct vg_mqtt_connect connect;
        struct vg_mqtt_publish publish;
        struct vg_mqtt_subscribe subscribe; /* SUBSCRIBE and UNSUBSCRIBE */
        struct {
            int session_present;
            uint8_t rc;
        } connack;
        struct {
            uint16_t packet_id;
            size_t count;
            uint8_t codes[VG_MQTT_MAX_FILTERS];
        } suback;
        uint16_t packet_id; /* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK */
    } u;
};

/* Looks at the start of 'buf' ('len' bytes buffered so far). On VG_MQTT_OK,
 * a whole packet of *total bytes is present; *header_len is the size of its
 * fixed header (2..5). Returns VG_MQTT_NEED_MORE if more bytes are needed,
 * VG_MQTT_MALFORMED for a remaining length over 4 bytes (§2.2.3) or a
 * reserved packet type (0 or 15), VG_MQTT_TOO_LARGE when the packet would be
 * larger than 'max_packet' bytes — as soon as the remaining length is known. */
int vg_mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet,
                  size_t *header_len, size_t *total);

/* Decodes one whole packet of 'len' bytes (fixed header included), as framed
 * by vg_mqtt_frame(). Returns VG_MQTT_OK and fills *out, or an error. */
int vg_mqtt_decode(const uint8_t *pkt, size_t len, struct vg_mqtt_packet *out);

/* Topic rules (§4.7). A topic name: 1..65535 bytes of valid UTF-8, no
 * U+0000, no '+' or '#'. A filter: same, but '+' must fill a whole level and
 * '#' must be the whole last level. Return 1 if valid, else 0. */
int vg_mqtt_topic_valid(const uint8_t *t, size_t len);
int vg_mqtt_filter_valid(const uint8_t *f, size_t len);

/* Does 'filter' (valid) match 'topic' (valid)? Topics starting with '$' are
 * not matched by filters starting with a wildcard (§4.7.2). Returns 1/0. */
int vg_mqtt_topic_match(const uint8_t *filter, size_t flen,
                        const uint8_t *topic, size_t tlen);

/* UTF-8 well-formedness per §1.5.3: no overlongs, no surrogates, no U+0000.
 * Returns 1 if valid. */
int vg_mqtt_utf8_valid(const uint8_t *s, size_t len);

/* Encoders write into 'out' (capacity 'cap') and return the number of bytes
 * written, or 0 if 'cap' is too small or an argument is out of range. */
size_t vg_mqtt_encode_connack(uint8_t *out, size_t cap, int session_present, uint8_t rc);
size_t vg_mqtt_encode_puback(uint8_t *out, size_t cap, uint16_t packet_id);
size_t vg_mqtt_encode_suback(uint8_t *out, size_t cap, uint16_t packet_id,
                             const uint8_t *codes, size_t count);
size_t vg_mqtt_encode_unsuback(uint8_t *out, size_t cap, uint16_t packet_id);
size_t vg_mqtt_encode_pingresp(uint8_t *out, size_t cap);
size_t vg_mqtt_encode_publish(uint8_t *out, size_t cap, const char *topic, size_t topic_len,
                              const uint8_t *payload, size_t payload_len, uint8_t qos,
                              int retain, uint16_t packet_id);
/* Size a PUBLISH with these lengths would take (for sizing a buffer). */
size_t vg_mqtt_publish_size(size_t topic_len, size_t payload_len, uint8_t qos);

/* Client-side encoders (used by `vigil sim`, tests and the bench client). */
size_t vg_mqtt_encode_connect(uint8_t *out, size_t cap, const char *client_id,
                              uint16_t keepalive, int clean_session,
                              const char *username, const char *password);
size_t vg_mqtt_encode_subscribe(uint8_t *out, size_t cap, uint16_t packet_id,
                                const char *filter, uint8_t qos);
size_t vg_mqtt_encode_pingreq(uint8_t *out, size_t cap);
size_t vg_mqtt_encode_disconnect(uint8_t *out, size_t cap);

#endif
