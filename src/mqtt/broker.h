/* mqtt/broker — MQTT 3.1.1 over mutual TLS for devices.
 *
 * Runs on one libevent loop. Owns its listener and connections; borrows the
 * event base, the TLS context, the config, the store writer (readings and
 * audit records go there) and a store handle for reads on the loop's thread
 * (device lookups at CONNECT).
 *
 * Identity: the TLS layer admits only certificates issued by vigil's CA; at
 * CONNECT the certificate's CN is the device id, the MQTT client id must
 * equal it (else CONNACK 0x02), and the device must be enrolled, active and
 * presenting the very certificate it was enrolled with (else CONNACK 0x05).
 * Authorisation: a device publishes only to vigil/v1/d/{id}/obs and
 * subscribes only to vigil/v1/d/{id}/rejects.
 */
#ifndef VG_MQTT_BROKER_H
#define VG_MQTT_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "core/config.h"
#include "store/store.h"
#include "store/writer.h"

struct vg_broker;

struct vg_broker_stats {
    uint64_t connections_open;
    uint64_t connections_accepted;  /* CONNECT accepted */
    uint64_t connections_refused;   /* TLS or CONNECT refused */
    uint64_t publishes;             /* PUBLISH packets received */
    uint64_t readings_stored;
    uint64_t readings_refused;
    uint64_t publishes_refused;     /* wrong topic, malformed payload */
    uint64_t protocol_errors;       /* connections closed for malformed input */
};

/* Creates the broker; nothing listens until vg_broker_listen. */
struct vg_broker *vg_broker_new(struct event_base *base, SSL_CTX *tls,
                                const struct vg_config *cfg, struct vg_writer *writer,
                                struct vg_store *reader);

/* Listens on "ADDR:PORT". Returns 0 or -1 with a reason in 'err'. */
int vg_broker_listen(struct vg_broker *b, const char *addr, char *err, size_t err_size)
    VG_WARN_UNUSED;

/* The store writer's notify function: pass it with the broker as context to
 * vg_writer_start. Thread-safe: only wakes the broker's loop. */
void vg_broker_writer_notify(void *broker);

/* Graceful stop, step 1: stop accepting and stop reading; in-flight readings
 * are still committed and acknowledged. Step 2 (vg_broker_idle) says when
 * nothing is in flight any more. */
void vg_broker_drain(struct vg_broker *b);
int vg_broker_idle(struct vg_broker *b);

void vg_broker_stats(const struct vg_broker *b, struct vg_broker_stats *out);

/* The store writer the broker feeds (borrowed), for its metrics. */
struct vg_writer *vg_broker_writer(struct vg_broker *b);

/* Closes the live session(s) of device 'id' at once (after quarantine or
 * revocation), auditing each with 'why'. Returns how many were closed. */
int vg_broker_disconnect_device(struct vg_broker *b, const char *id, const char *why);

/* Closes every connection and frees the broker. */
void vg_broker_free(struct vg_broker *b);

#endif
