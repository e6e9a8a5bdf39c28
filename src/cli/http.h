/* cli/http — the blocking HTTPS/1.1 client the `vigil` CLI uses to talk to
 * the vigil API. One request per connection (Connection: close).
 *
 * Trust: TLS 1.3 only. The server is verified against exactly one CA file
 * (vigil's own CA, t->cacert), never the system trust store, and its
 * certificate must name the target host (DNS name) or IP address.
 *
 * Ownership: every function borrows its arguments. vg_http_request fills a
 * caller-owned struct vg_http_response whose body is heap-allocated; the
 * caller releases it with vg_http_response_free(). The bearer token is
 * never printed nor put into an error message, and the request buffer that
 * carried it is wiped before it is freed.
 *
 * Errors: functions return 0 or -1 with a one-line reason in 'err'
 * (truncated to err_size). Thread-safe as long as callers do not share a
 * response; SIGPIPE is blocked for the calling thread during a request so a
 * server closing early cannot kill the CLI.
 */
#ifndef VG_CLI_HTTP_H
#define VG_CLI_HTTP_H

#include <stddef.h>

#include "core/util.h"

/* Largest response (status line, headers and body) accepted. */
#define VG_HTTP_MAX_RESPONSE ((size_t)64 * 1024 * 1024)
/* Connect timeout per address, and timeout of every read or write. */
#define VG_HTTP_TIMEOUT_MS 10000

/* Where to send requests. 'host' is a DNS name, an IPv4 address or an IPv6
 * address without brackets; 'port' is decimal; 'cacert' is the path of the
 * PEM file holding the CA that must have issued the server certificate;
 * 'token' is a bearer token, or empty for no Authorization header. All four
 * are NUL-terminated within their arrays. */
struct vg_http_target {
    char host[256];
    char port[8];
    char cacert[4096];
    char token[128];
};

/* Sets t->host and t->port from "https://HOST", "https://HOST:PORT" or
 * "https://[IPv6]:PORT" (default port 443), with at most a trailing "/".
 * Refuses http://, user information, a path, query or fragment, and malformed
 * hosts or ports. t->cacert and t->token are left untouched; on failure t is
 * not modified at all. Returns 0 or -1. */
int vg_http_target_from_url(struct vg_http_target *t, const char *url, char *err,
                            size_t err_size) VG_WARN_UNUSED;

/* A received response. 'body' is heap-allocated and NUL-terminated (the NUL
 * is not counted in body_len; the body may itself contain NUL bytes); it is
 * never NULL after a successful request. 'content_type' is the Content-Type
 * header value (truncated to fit), or empty. */
struct vg_http_response {
    long status;
    char *body;
    size_t body_len;
    char content_type[128];
};

/* Sends 'method' (e.g. "GET", "POST") for 'path' (starting with "/") to
 * 't', with 'body' of 'body_len' bytes as application/json when body is not
 * NULL. Sends Host, Connection: close, Content-Length (with a body, and for
 * POST/PUT/PATCH), and "Authorization: Bearer <token>" when t->token is not
 * empty. Reads the whole response (Content-Length, chunked, or up to the
 * close), at most VG_HTTP_MAX_RESPONSE bytes.
 *
 * Returns 0 when a response was received, whatever its status; the caller
 * then owns resp->body. Returns -1 on a connection, TLS or protocol error
 * (with 'resp' zeroed and owning nothing), e.g. "cannot connect to
 * 127.0.0.1:8443: Connection refused" or "TLS handshake with 127.0.0.1:8443
 * failed: certificate verify failed (unable to get local issuer
 * certificate)". */
int vg_http_request(const struct vg_http_target *t, const char *method, const char *path,
                    const char *body, size_t body_len, struct vg_http_response *resp,
                    char *err, size_t err_size) VG_WARN_UNUSED;

/* The response parser vg_http_request uses, exposed for unit tests and the
 * fuzz harness: parses 'len' bytes of 'data' (borrowed) as one complete
 * HTTP/1.1 response, the connection having been closed cleanly after them.
 * 'head_request' says the request was HEAD (no body follows). Skips interim
 * 1xx responses; decodes chunked bodies. Returns 0 with 'resp' filled (the
 * caller frees it with vg_http_response_free), or -1 when the response is
 * malformed or cut short. */
int vg_http_parse_response(const char *data, size_t len, int head_request,
                           struct vg_http_response *resp, char *err, size_t err_size)
    VG_WARN_UNUSED;

/* Frees resp->body and zeroes 'resp'. Safe on a zeroed or freed response. */
void vg_http_response_free(struct vg_http_response *resp);

#endif
