/* net/tls — OpenSSL server contexts for vigil's listeners.
 *
 * TLS 1.3 only: there is no option to lower it, so no listener can be
 * downgraded (reference/security.md checklist item 7).
 */
#ifndef VG_NET_TLS_H
#define VG_NET_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

/* A server context with 'cert_path'/'key_path'. When 'client_ca_path' is
 * given, peers MUST present a certificate that chains to that CA alone
 * (mutual TLS); otherwise no client certificate is asked for. Returns NULL
 * with a reason in 'err'. The caller frees with SSL_CTX_free. */
SSL_CTX *vg_tls_server_ctx(const char *cert_path, const char *key_path,
                           const char *client_ca_path, char *err, size_t err_size);

/* The subject CN of the verified peer certificate of 'ssl' into 'out'
 * (capacity 'size'). Returns 0, or -1 if there is no verified peer
 * certificate or its CN is missing, repeated or does not fit. */
int vg_tls_peer_cn(SSL *ssl, char *out, size_t size);

/* 1 if the verified peer certificate's subject has an OU equal to 'ou'. */
int vg_tls_peer_has_ou(SSL *ssl, const char *ou);

/* SHA-256 fingerprint (lower-case hex, 64 chars + NUL) of the peer
 * certificate. Returns 0 or -1. */
int vg_tls_peer_fingerprint(SSL *ssl, char out[65]);

/* "host:port" of a connected socket's peer, for logs and audit. */
void vg_tls_peer_addr(int fd, char *out, size_t size);

#endif
