/* api — the HTTPS REST and FHIR API (libevent evhttp over OpenSSL, TLS 1.3).
 *
 * Every route except GET /healthz needs "Authorization: Bearer <token>".
 * Errors are application/problem+json (RFC 9457) with a specific title.
 * Every call that reads or changes data writes an audit record in the same
 * transaction as the change (for reads: before the data is sent, and no
 * data is sent if the record cannot be written).
 *
 * Borrows the event base, TLS context, config, a store handle used only on
 * the loop's thread, and the broker (for its counters). Owns its listener.
 */
#ifndef VG_API_API_H
#define VG_API_API_H

#include <stddef.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "core/config.h"
#include "mqtt/broker.h"
#include "store/store.h"

struct vg_api;

/* 'datadir' locates pki/ca.pem and pki/ca.key for device enrollment. */
struct vg_api *vg_api_new(struct event_base *base, SSL_CTX *tls, const struct vg_config *cfg,
                          struct vg_store *st, const char *datadir, struct vg_broker *broker);
int vg_api_listen(struct vg_api *api, const char *addr, char *err, size_t err_size)
    VG_WARN_UNUSED;
void vg_api_free(struct vg_api *api);

/* Where the KEK lives (crypto/kek.h), for POST /api/v1/keys/rotate-kek:
 * copied. Without it the route answers 503. */
struct vg_kek_source;
void vg_api_set_kek_source(struct vg_api *api, const struct vg_kek_source *src);

#endif
