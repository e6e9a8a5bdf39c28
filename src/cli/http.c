/* cli/http — blocking HTTPS/1.1 client for the vigil CLI.
 *
 * A request is: resolve, connect (non-blocking connect bounded by a poll),
 * TLS 1.3 handshake verified against the one CA file, send the request,
 * read until the response's framing says it is complete (or the server
 * closes), then parse. The response parser is a set of pure functions over
 * the received bytes (parse_head, chunked_scan) that return "complete",
 * "need more" or "malformed", so truncation is always detected.
 */
#include "cli/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sodium.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

/* Limits on what the server may send (style.md #3: every buffer has a
 * ceiling). */
#define HTTP_MAX_HEAD (64 * 1024)     /* status line + headers */
#define HTTP_MAX_CHUNK_LINE 4096      /* chunk size line incl. extensions */
#define HTTP_MAX_TRAILER_LINE 8192
#define HTTP_MAX_PATH 8192
#define HTTP_MAX_METHOD 16
#define HTTP_READ_CHUNK (16 * 1024)

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t err_size,
                                                          const char *fmt, ...)
{
    if (!err || err_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

/* The first queued OpenSSL error as text, and clears the queue. */
static const char *ossl_reason(char *buf, size_t size)
{
    unsigned long e = ERR_get_error();
    const char *reason = NULL;

    if (e && ERR_SYSTEM_ERROR(e))
        reason = strerror(ERR_GET_REASON(e));
    else if (e)
        reason = ERR_reason_error_string(e);
    if (e && !reason) {
        ERR_error_string_n(e, buf, size);
        reason = buf;
    }
    ERR_clear_error();
    return reason ? reason : "unknown TLS error";
}

/* ---- URL and target validation ------------------------------------------ */

static int is_ipv4(const char *s)
{
    struct in_addr a;
    return inet_pton(AF_INET, s, &a) == 1;
}

static int is_ipv6(const char *s)
{
    struct in6_addr a;
    return inet_pton(AF_INET6, s, &a) == 1;
}

/* A DNS name (letters, digits, '-', '.'; no empty label, no label starting
 * or ending with '-') or a dotted IPv4 address. Keeps the Host header and
 * certificate name check free of surprises. */
static int host_name_valid(const char *h)
{
    size_t len = strlen(h), label = 0;
    int only_digits_and_dots = 1;

    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i <= len; i++) {
        char c = h[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || h[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        int digit = c >= '0' && c <= '9';
        if (!alpha && !digit && c != '-')
            return 0;
        if (label == 0 && c == '-')
            return 0;
        if (!digit)
            only_digits_and_dots = 0;
        label++;
    }
    /* "999.1.2.3" would be looked up as a name; call it what it is. */
    return !only_digits_and_dots || is_ipv4(h);
}

/* 1..65535 in plain decimal. */
static int port_valid(const char *p, size_t len)
{
    unsigned long v = 0;
    if (len == 0 || len > 5)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

int vg_http_target_from_url(struct vg_http_target *t, const char *url, char *err,
                            size_t err_size)
{
    char host[sizeof t->host];
    char port[sizeof t->port] = "443";
    static const char scheme[] = "https://";
    const size_t scheme_len = sizeof scheme - 1;

    if (!t || !url) {
        set_err(err, err_size, "no URL given");
        return -1;
    }
    if (strncasecmp(url, scheme, scheme_len) != 0) {
        if (strncasecmp(url, "http://", 7) == 0)
            set_err(err, err_size, "plain http:// is refused: the vigil API is https:// only");
        else
            set_err(err, err_size, "URL must start with https://");
        return -1;
    }
    const char *auth = url + scheme_len;
    size_t auth_len = strcspn(auth, "/?#");
    const char *rest = auth + auth_len;
    if (*rest == '?' || *rest == '#' || (*rest == '/' && rest[1] != '\0')) {
        set_err(err, err_size, "URL must be https://HOST[:PORT] without a path, query or "
                               "fragment");
        return -1;
    }
    if (memchr(auth, '@', auth_len)) {
        set_err(err, err_size, "URL must not contain user information (user@host)");
        return -1;
    }
    if (auth_len == 0) {
        set_err(err, err_size, "URL has no host");
        return -1;
    }

    const char *port_start = NULL;
    size_t port_len = 0;
    if (auth[0] == '[') {
        const char *close = memchr(auth, ']', auth_len);
        size_t host_len = close ? (size_t)(close - auth - 1) : 0;
        if (!close || host_len == 0 || host_len >= sizeof host) {
            set_err(err, err_size, "URL has a malformed [IPv6] host");
            return -1;
        }
        memcpy(host, auth + 1, host_len);
        host[host_len] = '\0';
        if (!is_ipv6(host)) {
            set_err(err, err_size, "URL has a malformed [IPv6] host");
            return -1;
        }
        const char *after = close + 1;
        size_t after_len = auth_len - (size_t)(after - auth);
        if (after_len > 0) {
            if (after[0] != ':') {
                set_err(err, err_size, "URL has unexpected characters after the [IPv6] host");
                return -1;
            }
            port_start = after + 1;
            port_len = after_len - 1;
        }
    } else {
        const char *colon = memchr(auth, ':', auth_len);
        if (colon && memchr(colon + 1, ':', auth_len - (size_t)(colon - auth) - 1)) {
            set_err(err, err_size, "an IPv6 address in a URL must be in brackets: "
                                   "https://[::1]:PORT");
            return -1;
        }
        size_t host_len = colon ? (size_t)(colon - auth) : auth_len;
        if (host_len == 0 || host_len >= sizeof host) {
            set_err(err, err_size, "URL has no valid host");
            return -1;
        }
        memcpy(host, auth, host_len);
        host[host_len] = '\0';
        if (colon) {
            port_start = colon + 1;
            port_len = auth_len - host_len - 1;
        }
        if (!host_name_valid(host)) {
            set_err(err, err_size, "URL has an invalid host name");
            return -1;
        }
    }
    if (port_start) {
        if (!port_valid(port_start, port_len)) {
            set_err(err, err_size, "URL has an invalid port (1..65535)");
            return -1;
        }
        memcpy(port, port_start, port_len);
        port[port_len] = '\0';
    }
    memcpy(t->host, host, sizeof t->host);
    memcpy(t->port, port, sizeof t->port);
    return 0;
}

/* Checks a target filled in by hand as strictly as one parsed from a URL:
 * its fields end up in request headers. */
static int target_valid(const struct vg_http_target *t, char *err, size_t err_size)
{
    if (strnlen(t->host, sizeof t->host) == sizeof t->host ||
        strnlen(t->port, sizeof t->port) == sizeof t->port ||
        strnlen(t->cacert, sizeof t->cacert) == sizeof t->cacert ||
        strnlen(t->token, sizeof t->token) == sizeof t->token) {
        set_err(err, err_size, "request target has an unterminated field");
        return 0;
    }
    if (!is_ipv6(t->host) && !host_name_valid(t->host)) {
        set_err(err, err_size, "request target has an invalid host");
        return 0;
    }
    if (!port_valid(t->port, strlen(t->port))) {
        set_err(err, err_size, "request target has an invalid port");
        return 0;
    }
    if (t->cacert[0] == '\0') {
        set_err(err, err_size, "no CA certificate file given to verify the server");
        return 0;
    }
    for (const char *p = t->token; *p; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            set_err(err, err_size, "the API token contains characters not allowed in a header");
            return 0;
        }
    }
    return 1;
}

static int method_valid(const char *m)
{
    size_t n = 0;
    for (; m[n]; n++)
        if (m[n] < 'A' || m[n] > 'Z')
            return 0;
    return n >= 1 && n <= HTTP_MAX_METHOD;
}

/* origin-form: "/" followed by visible ASCII only (no space, CR, LF). */
static int path_valid(const char *p)
{
    size_t n = 0;
    if (p[0] != '/')
        return 0;
    for (; p[n]; n++)
        if ((unsigned char)p[n] <= 0x20 || (unsigned char)p[n] >= 0x7f)
            return 0;
    return n <= HTTP_MAX_PATH;
}

/* ---- response parsing (pure) -------------------------------------------- */

enum { PARSE_MALFORMED = -1, PARSE_MORE = 0, PARSE_DONE = 1 };

struct head {
    long status;
    size_t body_off;    /* where the body starts */
    int chunked;
    int has_length;
    size_t length;      /* Content-Length, when has_length */
    char content_type[128];
};

static int is_tchar(unsigned char c)
{
    /* RFC 9110 §5.6.2 token characters. */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *find_crlf(const char *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++)
        if (p[i] == '\r' && p[i + 1] == '\n')
            return p + i;
    return NULL;
}

/* Parses one header field line [p, p+len) into the head. */
static int parse_field(const char *p, size_t len, struct head *h, const char **why)
{
    size_t name_len = 0;
    while (name_len < len && is_tchar((unsigned char)p[name_len]))
        name_len++;
    /* RFC 9112 §5.1: no whitespace between the name and the colon. */
    if (name_len == 0 || name_len == len || p[name_len] != ':') {
        *why = "malformed header line";
        return PARSE_MALFORMED;
    }
    const char *v = p + name_len + 1;
    size_t vlen = len - name_len - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            *why = "control character in a header value";
            return PARSE_MALFORMED;
        }
    }

    if (name_len == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
        size_t n = 0;
        if (vlen == 0 || vlen > 12) {
            *why = "invalid Content-Length";
            return PARSE_MALFORMED;
        }
        for (size_t i = 0; i < vlen; i++) {
            if (v[i] < '0' || v[i] > '9') {
                *why = "invalid Content-Length";
                return PARSE_MALFORMED;
            }
            n = n * 10 + (size_t)(v[i] - '0');
        }
        if (n > VG_HTTP_MAX_RESPONSE) {
            *why = "Content-Length exceeds 64 MiB";
            return PARSE_MALFORMED;
        }
        if (h->has_length && h->length != n) {
            *why = "conflicting Content-Length headers";
            return PARSE_MALFORMED;
        }
        h->has_length = 1;
        h->length = n;
    } else if (name_len == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
        if (vlen != 7 || strncasecmp(v, "chunked", 7) != 0 || h->chunked) {
            *why = "unsupported Transfer-Encoding";
            return PARSE_MALFORMED;
        }
        h->chunked = 1;
    } else if (name_len == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
        size_t n = vlen < sizeof h->content_type - 1 ? vlen : sizeof h->content_type - 1;
        memcpy(h->content_type, v, n);
        h->content_type[n] = '\0';
    }
    return PARSE_DONE;
}

/* Parses the status line and header fields at the start of buf[0..len),
 * skipping interim 1xx responses. PARSE_DONE once a final response's header
 * section is complete; PARSE_MORE if more bytes are needed. */
static int parse_head(const char *buf, size_t len, struct head *h, const char **why)
{
    size_t pos = 0;

    for (;;) {
        memset(h, 0, sizeof *h);
        const char *start = buf + pos;
        size_t avail = len - pos;
        const char *eol = find_crlf(start, avail);
        if (!eol)
            goto need_more;

        /* status-line = HTTP-version SP status-code SP [ reason-phrase ] */
        size_t line_len = (size_t)(eol - start);
        if (line_len < 12 || memcmp(start, "HTTP/1.", 7) != 0 || start[7] < '0' ||
            start[7] > '9' || start[8] != ' ' || start[9] < '1' || start[9] > '5' ||
            start[10] < '0' || start[10] > '9' || start[11] < '0' || start[11] > '9' ||
            (line_len > 12 && start[12] != ' ')) {
            *why = "malformed status line";
            return PARSE_MALFORMED;
        }
        h->status = (start[9] - '0') * 100 + (start[10] - '0') * 10 + (start[11] - '0');

        const char *line = eol + 2;
        for (;;) {
            size_t left = len - (size_t)(line - buf);
            const char *end = find_crlf(line, left);
            if (!end)
                goto need_more;
            if (end == line) {
                h->body_off = (size_t)(end + 2 - buf);
                break;
            }
            if (*line == ' ' || *line == '\t') {
                *why = "obsolete header line folding";
                return PARSE_MALFORMED;
            }
            int rc = parse_field(line, (size_t)(end - line), h, why);
            if (rc != PARSE_DONE)
                return rc;
            line = end + 2;
            if ((size_t)(line - buf) > HTTP_MAX_HEAD) {
                *why = "header section exceeds 64 KiB";
                return PARSE_MALFORMED;
            }
        }
        if (h->status == 101) {
            *why = "unexpected 101 Switching Protocols";
            return PARSE_MALFORMED;
        }
        if (h->status >= 200)
            return PARSE_DONE;
        pos = h->body_off; /* interim 1xx response: the real one follows */
    }
need_more:
    if (len > HTTP_MAX_HEAD) {
        *why = "header section exceeds 64 KiB";
        return PARSE_MALFORMED;
    }
    return PARSE_MORE;
}

/* Resumable scanner of a chunked body (RFC 9112 §7.1). 'pos' is where the
 * next chunk-size or trailer line starts; 'out' counts decoded bytes. With
 * 'decode', chunk data is moved down to buf[body_off + out] in place (the
 * output never overtakes the input). */
struct chunked {
    size_t pos;
    size_t out;
    int in_trailers;
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int chunked_scan(char *buf, size_t len, size_t body_off, struct chunked *st, int decode,
                        const char **why)
{
    for (;;) {
        const char *line = buf + st->pos;
        size_t avail = len - st->pos;
        size_t max_line = st->in_trailers ? HTTP_MAX_TRAILER_LINE : HTTP_MAX_CHUNK_LINE;
        const char *eol = find_crlf(line, avail < max_line + 2 ? avail : max_line + 2);
        if (!eol) {
            if (avail >= max_line + 2) {
                *why = st->in_trailers ? "trailer line too long" : "chunk size line too long";
                return PARSE_MALFORMED;
            }
            return PARSE_MORE;
        }
        size_t line_len = (size_t)(eol - line);

        if (st->in_trailers) {
            st->pos += line_len + 2;
            if (line_len == 0)
                return PARSE_DONE; /* trailers are ignored */
            continue;
        }

        /* chunk-size [ chunk-ext ] CRLF */
        size_t size = 0, i = 0;
        for (; i < line_len && hexval(line[i]) >= 0; i++) {
            size = size * 16 + (size_t)hexval(line[i]);
            if (size > VG_HTTP_MAX_RESPONSE) {
                *why = "chunk size exceeds 64 MiB";
                return PARSE_MALFORMED;
            }
        }
        if (i == 0) {
            *why = "malformed chunk size";
            return PARSE_MALFORMED;
        }
        while (i < line_len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i < line_len && line[i] != ';') {
            *why = "malformed chunk size";
            return PARSE_MALFORMED;
        }
        size_t data = st->pos + line_len + 2;
        if (size == 0) {
            st->pos = data;
            st->in_trailers = 1;
            continue;
        }
        if (len - data < size + 2)
            return PARSE_MORE;
        if (buf[data + size] != '\r' || buf[data + size + 1] != '\n') {
            *why = "chunk data not followed by CRLF";
            return PARSE_MALFORMED;
        }
        if (decode)
            memmove(buf + body_off + st->out, buf + data, size);
        st->out += size;
        st->pos = data + size + 2;
    }
}

/* ---- transport ----------------------------------------------------------- */

/* Blocks SIGPIPE for this thread while a request runs, and afterwards
 * discards a SIGPIPE the request raised (the classic libcurl technique):
 * OpenSSL writes with write(2), which raises SIGPIPE on a closed peer. */
struct sigpipe_guard {
    sigset_t old;
    int was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigemptyset(&pending);
    g->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void sigpipe_restore(struct sigpipe_guard *g)
{
    if (!g->was_pending) {
        sigset_t set, pending;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        sigemptyset(&pending);
        if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
            struct timespec zero = {0, 0};
            while (sigtimedwait(&set, NULL, &zero) == SIGPIPE) {
            }
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* Connects to one address within VG_HTTP_TIMEOUT_MS. Returns the connected
 * blocking socket with I/O timeouts set, or -1 with errno set. */
static int connect_one(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS)
            goto fail;
        int64_t deadline = vg_mono_ms() + VG_HTTP_TIMEOUT_MS;
        for (;;) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int64_t left = deadline - vg_mono_ms();
            if (left <= 0) {
                errno = ETIMEDOUT;
                goto fail;
            }
            int n = poll(&pfd, 1, (int)left);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                goto fail;
            if (n == 0) {
                errno = ETIMEDOUT;
                goto fail;
            }
            break;
        }
        int so_error = 0;
        socklen_t sl = sizeof so_error;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &sl) != 0)
            goto fail;
        if (so_error != 0) {
            errno = so_error;
            goto fail;
        }
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
        goto fail;
    struct timeval tv = {.tv_sec = VG_HTTP_TIMEOUT_MS / 1000,
                         .tv_usec = (VG_HTTP_TIMEOUT_MS % 1000) * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
        goto fail;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

/* Tries every address of host:port in turn. */
static int tcp_connect(const struct vg_http_target *t, const char *where, char *err,
                       size_t err_size)
{
    struct addrinfo hints, *res = NULL;
    int last_errno = 0;
    int fd = -1;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int g = getaddrinfo(t->host, t->port, &hints, &res);
    if (g != 0) {
        set_err(err, err_size, "cannot resolve %s: %s", t->host,
                g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
        return -1;
    }
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = connect_one(ai);
        if (fd >= 0)
            break;
        last_errno = errno;
    }
    freeaddrinfo(res);
    if (fd < 0)
        set_err(err, err_size, "cannot connect to %s: %s", where,
                strerror(last_errno ? last_errno : ECONNREFUSED));
    return fd;
}

/* Why an SSL_* call on a blocking socket with SO_RCVTIMEO/SO_SNDTIMEO
 * failed: a timeout surfaces as WANT_READ/WANT_WRITE (the socket returned
 * EAGAIN). Clears the OpenSSL error queue. */
static const char *tls_io_reason(SSL *ssl, int ret, char *buf, size_t size)
{
    int saved = errno;
    int e = SSL_get_error(ssl, ret);
    const char *reason;

    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
        (e == SSL_ERROR_SYSCALL && (saved == EAGAIN || saved == EWOULDBLOCK))) {
        snprintf(buf, size, "timed out after %d s", VG_HTTP_TIMEOUT_MS / 1000);
        reason = buf;
    } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        reason = saved ? strerror(saved) : "connection closed by the server";
    } else if (e == SSL_ERROR_ZERO_RETURN) {
        reason = "connection closed by the server";
    } else {
        reason = ossl_reason(buf, size);
    }
    ERR_clear_error();
    return reason;
}

static SSL_CTX *tls_context(const struct vg_http_target *t, char *err, size_t err_size)
{
    char buf[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (!ctx) {
        set_err(err, err_size, "cannot create TLS context: %s", ossl_reason(buf, sizeof buf));
        return NULL;
    }
    /* TLS 1.3 only; trust exactly the vigil CA, not the system store. */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
        set_err(err, err_size, "cannot require TLS 1.3: %s", ossl_reason(buf, sizeof buf));
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(ctx, t->cacert, NULL) != 1) {
        set_err(err, err_size, "cannot load CA certificate file %s: %s", t->cacert,
                ossl_reason(buf, sizeof buf));
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static int tls_handshake(SSL *ssl, const struct vg_http_target *t, int fd, const char *where,
                         char *err, size_t err_size)
{
    char buf[256];
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    int ip = is_ipv4(t->host) || is_ipv6(t->host);

    if (SSL_set_fd(ssl, fd) != 1) {
        set_err(err, err_size, "cannot set up TLS: %s", ossl_reason(buf, sizeof buf));
        return -1;
    }
    if (ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(param, t->host) != 1) {
            set_err(err, err_size, "cannot set expected server address: %s",
                    ossl_reason(buf, sizeof buf));
            return -1;
        }
    } else {
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (X509_VERIFY_PARAM_set1_host(param, t->host, 0) != 1 ||
            SSL_set_tlsext_host_name(ssl, t->host) != 1) {
            set_err(err, err_size, "cannot set expected server name: %s",
                    ossl_reason(buf, sizeof buf));
            return -1;
        }
    }

    ERR_clear_error();
    int ret = SSL_connect(ssl);
    if (ret != 1) {
        long vr = SSL_get_verify_result(ssl);
        const char *reason = tls_io_reason(ssl, ret, buf, sizeof buf);
        if (vr != X509_V_OK)
            set_err(err, err_size, "TLS handshake with %s failed: %s (%s)", where, reason,
                    X509_verify_cert_error_string(vr));
        else
            set_err(err, err_size, "TLS handshake with %s failed: %s", where, reason);
        return -1;
    }
    /* Belt and braces: SSL_VERIFY_PEER already aborts on failure. */
    if (SSL_get_verify_result(ssl) != X509_V_OK || !SSL_get0_peer_certificate(ssl)) {
        set_err(err, err_size, "TLS handshake with %s failed: server certificate not verified",
                where);
        return -1;
    }
    return 0;
}

static int tls_write_all(SSL *ssl, const char *data, size_t len, const char *where, char *err,
                         size_t err_size)
{
    while (len > 0) {
        size_t n = 0;
        int ret = SSL_write_ex(ssl, data, len, &n);
        if (ret != 1) {
            char buf[256];
            set_err(err, err_size, "cannot send request to %s: %s", where,
                    tls_io_reason(ssl, ret, buf, sizeof buf));
            return -1;
        }
        data += n;
        len -= n;
    }
    return 0;
}

/* vsnprintf into a new heap string; NULL when out of memory. */
__attribute__((format(printf, 2, 3))) static char *format_alloc(size_t *out_len,
                                                                const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : malloc((size_t)n + 1);
    if (s) {
        vsnprintf(s, (size_t)n + 1, fmt, ap2);
        *out_len = (size_t)n;
    }
    va_end(ap2);
    return s;
}

/* Builds the request head. Returns a heap string the caller wipes and
 * frees (it may carry the bearer token), or NULL. */
static char *request_head(const struct vg_http_target *t, const char *method, const char *path,
                          int send_length, size_t body_len, int has_body, size_t *out_len)
{
    char host_hdr[sizeof t->host + sizeof t->port + 4];
    char length_hdr[64] = "";
    int v6 = strchr(t->host, ':') != NULL;
    int default_port = strcmp(t->port, "443") == 0;
    int auth = t->token[0] != '\0';

    snprintf(host_hdr, sizeof host_hdr, "%s%s%s%s%s", v6 ? "[" : "", t->host, v6 ? "]" : "",
             default_port ? "" : ":", default_port ? "" : t->port);
    if (send_length)
        snprintf(length_hdr, sizeof length_hdr, "Content-Length: %zu\r\n", body_len);

    return format_alloc(out_len,
                        "%s %s HTTP/1.1\r\n"
                        "Host: %s\r\n"
                        "User-Agent: vigil-cli\r\n"
                        "Accept: application/json\r\n"
                        "Connection: close\r\n"
                        "%s%s%s" /* Authorization */
                        "%s"     /* Content-Type */
                        "%s"     /* Content-Length */
                        "\r\n",
                        method, path, host_hdr, auth ? "Authorization: Bearer " : "",
                        auth ? t->token : "", auth ? "\r\n" : "",
                        has_body ? "Content-Type: application/json\r\n" : "", length_hdr);
}

struct rbuf {
    char *data;
    size_t len;
    size_t cap;
};

/* Makes room for at least one more read. The buffer never exceeds
 * VG_HTTP_MAX_RESPONSE + 1 bytes, so "more than the maximum" is seen. */
static int rbuf_reserve(struct rbuf *b)
{
    if (b->len < b->cap)
        return 0;
    if (b->cap >= VG_HTTP_MAX_RESPONSE + 1)
        return -1;
    size_t cap = b->cap ? b->cap * 2 : HTTP_READ_CHUNK;
    if (cap > VG_HTTP_MAX_RESPONSE + 1)
        cap = VG_HTTP_MAX_RESPONSE + 1;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

/* Whether the bytes so far hold a whole response. Updates the cached head
 * and chunk scanner; returns PARSE_DONE, PARSE_MORE or PARSE_MALFORMED. */
static int response_complete(struct rbuf *b, int no_body, int *have_head, struct head *h,
                             struct chunked *cs, const char **why)
{
    if (!*have_head) {
        if (b->len == 0)
            return PARSE_MORE;
        int rc = parse_head(b->data, b->len, h, why);
        if (rc != PARSE_DONE)
            return rc;
        *have_head = 1;
        cs->pos = h->body_off;
    }
    if (no_body || h->status == 204 || h->status == 304)
        return PARSE_DONE;
    if (h->chunked)
        return chunked_scan(b->data, b->len, h->body_off, cs, 0, why);
    if (h->has_length)
        return b->len - h->body_off >= h->length ? PARSE_DONE : PARSE_MORE;
    return PARSE_MORE; /* delimited by the close */
}

/* Parses the whole response in 'rb' into 'resp' once the reading is over.
 * The body is decoded in place and moved to the front of the buffer, which
 * then passes to 'resp' (rb->data becomes NULL). Needs rb->cap > rb->len
 * or a non-empty header before the body (always true), for the final NUL.
 * 'clean_eof' tells whether the server closed with a TLS close_notify. */
static int finish_response(struct rbuf *rb, int no_body, int clean_eof, const char *where,
                           struct vg_http_response *resp, char *err, size_t err_size)
{
    struct head h;
    const char *why = "incomplete response";
    size_t n_body = 0;

    int state = rb->len ? parse_head(rb->data, rb->len, &h, &why) : PARSE_MORE;
    if (state == PARSE_MALFORMED) {
        set_err(err, err_size, "malformed response from %s: %s", where, why);
        return -1;
    }
    if (state == PARSE_MORE) {
        set_err(err, err_size, "response from %s was cut short (incomplete header)", where);
        return -1;
    }
    if (no_body || h.status == 204 || h.status == 304) {
        n_body = 0;
    } else if (h.chunked) {
        struct chunked dec = {h.body_off, 0, 0};
        state = chunked_scan(rb->data, rb->len, h.body_off, &dec, 1, &why);
        if (state == PARSE_MALFORMED) {
            set_err(err, err_size, "malformed response from %s: %s", where, why);
            return -1;
        }
        if (state == PARSE_MORE) {
            set_err(err, err_size, "response from %s was cut short (incomplete chunked body)",
                    where);
            return -1;
        }
        n_body = dec.out;
    } else if (h.has_length) {
        if (rb->len - h.body_off < h.length) {
            set_err(err, err_size, "response from %s was cut short (%zu of %zu body bytes)",
                    where, rb->len - h.body_off, h.length);
            return -1;
        }
        n_body = h.length;
    } else {
        /* Body delimited by the close: only a TLS close_notify proves that
         * nobody cut it short. */
        if (!clean_eof) {
            set_err(err, err_size,
                    "response from %s may be truncated (connection closed without TLS "
                    "close_notify)",
                    where);
            return -1;
        }
        n_body = rb->len - h.body_off;
    }

    /* The status line before the body (body_off > 0) leaves room for the
     * terminating NUL. */
    memmove(rb->data, rb->data + h.body_off, n_body);
    rb->data[n_body] = '\0';
    char *shrunk = realloc(rb->data, n_body + 1);
    if (shrunk)
        rb->data = shrunk;
    resp->status = h.status;
    resp->body = rb->data;
    resp->body_len = n_body;
    memcpy(resp->content_type, h.content_type, sizeof resp->content_type);
    rb->data = NULL;
    rb->len = rb->cap = 0;
    return 0;
}

int vg_http_parse_response(const char *data, size_t len, int head_request,
                           struct vg_http_response *resp, char *err, size_t err_size)
{
    if (!resp) {
        set_err(err, err_size, "no response given");
        return -1;
    }
    memset(resp, 0, sizeof *resp);
    if (!data && len > 0) {
        set_err(err, err_size, "no response data given");
        return -1;
    }
    if (len > VG_HTTP_MAX_RESPONSE) {
        set_err(err, err_size, "response exceeds %zu MiB", VG_HTTP_MAX_RESPONSE / (1024 * 1024));
        return -1;
    }
    struct rbuf rb = {malloc(len + 1), len, len + 1};
    if (!rb.data) {
        set_err(err, err_size, "cannot parse response: out of memory");
        return -1;
    }
    if (len > 0)
        memcpy(rb.data, data, len);
    int rc = finish_response(&rb, head_request, 1, "server", resp, err, err_size);
    free(rb.data);
    return rc;
}

int vg_http_request(const struct vg_http_target *t, const char *method, const char *path,
                    const char *body, size_t body_len, struct vg_http_response *resp,
                    char *err, size_t err_size)
{
    int rc = -1;
    int fd = -1;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    char *head = NULL;
    size_t head_len = 0;
    struct rbuf rb = {NULL, 0, 0};
    struct head h;
    struct chunked cs = {0, 0, 0};
    int have_head = 0;
    int eof = 0, clean_eof = 0;
    const char *why = NULL;
    char where[sizeof t->host + sizeof t->port + 4];
    struct sigpipe_guard guard;

    if (!resp) {
        set_err(err, err_size, "no response given");
        return -1;
    }
    memset(resp, 0, sizeof *resp);
    memset(&h, 0, sizeof h);
    if (!t || !method || !path || (!body && body_len > 0)) {
        set_err(err, err_size, "invalid request arguments");
        return -1;
    }
    if (!target_valid(t, err, err_size))
        return -1;
    if (!method_valid(method)) {
        set_err(err, err_size, "invalid HTTP method");
        return -1;
    }
    if (!path_valid(path)) {
        set_err(err, err_size, "invalid request path (must start with / and hold no spaces "
                               "or control characters)");
        return -1;
    }
    int v6 = strchr(t->host, ':') != NULL;
    snprintf(where, sizeof where, "%s%s%s:%s", v6 ? "[" : "", t->host, v6 ? "]" : "", t->port);
    int no_body = strcmp(method, "HEAD") == 0;
    int send_length = body != NULL || strcmp(method, "POST") == 0 ||
                      strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;

    head = request_head(t, method, path, send_length, body_len, body != NULL, &head_len);
    if (!head) {
        set_err(err, err_size, "cannot build request: out of memory");
        return -1;
    }

    sigpipe_block(&guard);
    ERR_clear_error();
    if (!(ctx = tls_context(t, err, err_size)))
        goto cleanup;
    if (!(ssl = SSL_new(ctx))) {
        char buf[256];
        set_err(err, err_size, "cannot create TLS connection: %s", ossl_reason(buf, sizeof buf));
        goto cleanup;
    }
    if ((fd = tcp_connect(t, where, err, err_size)) < 0)
        goto cleanup;
    if (tls_handshake(ssl, t, fd, where, err, err_size) != 0)
        goto cleanup;
    if (tls_write_all(ssl, head, head_len, where, err, err_size) != 0)
        goto cleanup;
    if (body_len > 0 && tls_write_all(ssl, body, body_len, where, err, err_size) != 0)
        goto cleanup;

    /* Read until the framing says the response is complete, or the server
     * closes. */
    for (;;) {
        int state = response_complete(&rb, no_body, &have_head, &h, &cs, &why);
        if (state == PARSE_MALFORMED) {
            set_err(err, err_size, "malformed response from %s: %s", where, why);
            goto cleanup;
        }
        if (state == PARSE_DONE)
            break;
        if (eof)
            break;
        if (rbuf_reserve(&rb) != 0) {
            if (rb.cap >= VG_HTTP_MAX_RESPONSE + 1)
                set_err(err, err_size, "response from %s exceeds %zu MiB", where,
                        VG_HTTP_MAX_RESPONSE / (1024 * 1024));
            else
                set_err(err, err_size, "cannot read response from %s: out of memory", where);
            goto cleanup;
        }
        size_t n = 0;
        errno = 0;
        int ret = SSL_read_ex(ssl, rb.data + rb.len, rb.cap - rb.len, &n);
        if (ret == 1) {
            rb.len += n;
            if (rb.len > VG_HTTP_MAX_RESPONSE) {
                set_err(err, err_size, "response from %s exceeds %zu MiB", where,
                        VG_HTTP_MAX_RESPONSE / (1024 * 1024));
                goto cleanup;
            }
            continue;
        }
        int e = SSL_get_error(ssl, ret);
        if (e == SSL_ERROR_ZERO_RETURN) {
            eof = clean_eof = 1;
        } else if ((e == SSL_ERROR_SSL &&
                    ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) ||
                   (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)) {
            /* The server closed TCP without close_notify: fine when the
             * framing shows the response is whole, checked below. */
            ERR_clear_error();
            eof = 1;
        } else {
            char buf[256];
            set_err(err, err_size, "cannot read response from %s: %s", where,
                    tls_io_reason(ssl, ret, buf, sizeof buf));
            goto cleanup;
        }
    }

    if (!have_head && rb.len == 0) {
        set_err(err, err_size, "%s closed the connection without a response", where);
        goto cleanup;
    }
    rc = finish_response(&rb, no_body, clean_eof, where, resp, err, err_size);
cleanup:
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    OPENSSL_cleanse(head, head_len);
    free(head);
    free(rb.data);
    ERR_clear_error();
    sigpipe_restore(&guard);
    return rc;
}

void vg_http_response_free(struct vg_http_response *resp)
{
    if (!resp)
        return;
    /* Answers carry tokens and private keys: wipe before freeing. */
    if (resp->body)
        sodium_memzero(resp->body, resp->body_len);
    free(resp->body);
    memset(resp, 0, sizeof *resp);
}
