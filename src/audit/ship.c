/* audit/ship — live export of the audit trail as RFC 5424 over TLS (RFC 5425).
 *
 * Design:
 *
 * - One thread per shipper, with its own read-only SQLite connection (the
 *   database is in WAL mode, so reading never blocks the store writer) and
 *   one TLS connection to the receiver. Every socket operation is
 *   non-blocking and polled in short slices, so a stalled receiver or a stop
 *   request is noticed within SHIP_SLICE_MS.
 *
 * - Delivery is at least once. RFC 5425 has no application-level
 *   acknowledgement, so a batch counts as delivered when it has been written
 *   AND the receiver's TCP has acknowledged every byte of it (SIOCOUTQ reaches
 *   zero). Only then do the state file and the in-memory position advance. A
 *   batch cut short by any error is sent again after reconnecting; records
 *   may then arrive twice, never not at all. Receivers de-duplicate by the
 *   seq SD-PARAM.
 *
 * - Before writing into a connection that sat idle, the shipper checks that
 *   the receiver has not closed it (a clean close is read as EOF); writing
 *   into a half-closed connection would "succeed" locally and lose the batch.
 *
 * - Failures change state once: the first failure logs a warning and calls
 *   alert(ctx, 1, ...); later failures while already failing log at debug
 *   level only; the first batch that succeeds afterwards logs and calls
 *   alert(ctx, 0, "... recovered"). Log lines and alerts carry the target,
 *   a seq number and the OS/OpenSSL reason — never record contents.
 *
 * - Once vg_audit_ship_stop has been entered the alert callback is never
 *   called again (alerts and stop are serialised by alert_mu), so the
 *   callback's context must stay valid until stop is called — a caller
 *   that releases it earlier (e.g. stops the store writer first, to ship
 *   vigil.stop) must make its callback check for that itself.
 */
#include "audit/ship.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/config.h"
#include "core/log.h"
#include "core/util.h"

/* ---- RFC 5424 formatting ------------------------------------------------ */

/* RFC 5424 §6.2.1: facility 13 is "log audit". */
#define SYSLOG_FACILITY 13
#define SYSLOG_SEV_WARNING 4
#define SYSLOG_SEV_NOTICE 5
/* RFC 5424 §6: HOSTNAME = NILVALUE / 1*255PRINTUSASCII,
 * MSGID = NILVALUE / 1*32PRINTUSASCII. */
#define SYSLOG_HOSTNAME_MAX 255
#define SYSLOG_MSGID_MAX 32
/* 9999-12-31T23:59:59.999Z: RFC 5424 DATE-FULLYEAR is exactly 4 digits. */
#define SYSLOG_TS_MAX_MS INT64_C(253402300799999)
/* SD-ID of vigil's parameters: NAME@<private enterprise number> (§7.2.2).
 * 32473 is the number RFC 5612 reserves for documentation; a deployment
 * with its own enterprise number changes it here. */
#define SYSLOG_SD_ID "vigil@32473"

/* A bounded writer: appends only while the text and its NUL fit; once
 * something did not fit it stays failed (and 'len' stays < 'cap'). */
struct sbuf {
    char *p;
    size_t cap, len;
    int overflow;
};

static void sb_put(struct sbuf *b, const void *s, size_t n)
{
    if (b->overflow || n >= b->cap - b->len) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void sb_puts(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_putc(struct sbuf *b, char c) { sb_put(b, &c, 1); }

/* Length (1..4) of the well-formed UTF-8 sequence at s (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0. 'n' is the
 * number of bytes available. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
        return 0;
    if (len == 4 && (cp < 0x10000 || cp > 0x10ffff))
        return 0;
    return len;
}

/* Free text (an SD-PARAM value when 'sd_escape', else the MSG part), as
 * valid UTF-8 on one line: control characters and bytes that are not
 * well-formed UTF-8 become '?', so a stored line cannot be split or forged
 * by a value. Inside SD-PARAM values '"', '\' and ']' are escaped with '\'
 * (RFC 5424 §6.3.3: "MUST be escaped"). */
static void put_text(struct sbuf *b, const char *s, int sd_escape)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t n = strlen((const char *)p);
    for (size_t i = 0; i < n && !b->overflow;) {
        unsigned char c = p[i];
        if (c < 0x20 || c == 0x7f) {
            sb_putc(b, '?');
            i++;
        } else if (c < 0x80) {
            if (sd_escape && (c == '"' || c == '\\' || c == ']'))
                sb_putc(b, '\\');
            sb_putc(b, (char)c);
            i++;
        } else {
            size_t l = utf8_len(p + i, n - i);
            if (l == 0) {
                sb_putc(b, '?');
                i++;
            } else {
                sb_put(b, p + i, l);
                i += l;
            }
        }
    }
}

/* A header token (HOSTNAME, MSGID): 1..max PRINTUSASCII (%d33-126);
 * anything else (space, control, non-ASCII) becomes '_', longer values are
 * cut at 'max', and an empty or NULL value is the NILVALUE "-". */
static void put_token(struct sbuf *b, const char *s, size_t max)
{
    if (!s || !*s) {
        sb_putc(b, '-');
        return;
    }
    for (size_t i = 0; i < max && s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        sb_putc(b, (char)(c >= 33 && c <= 126 ? c : '_'));
    }
}

static void put_param(struct sbuf *b, const char *name, const char *value)
{
    sb_putc(b, ' ');
    sb_puts(b, name);
    sb_puts(b, "=\"");
    put_text(b, value, 1);
    sb_putc(b, '"');
}

int vg_audit_syslog_format(const struct vg_audit_record *r, const char *hostname, char *out,
                           size_t cap)
{
    if (!out || cap == 0)
        return -1;
    struct sbuf b = {out, cap, 0, 0};
    const char *outcome = r->outcome ? r->outcome : "";
    int sev = !strcmp(outcome, "success") ? SYSLOG_SEV_NOTICE : SYSLOG_SEV_WARNING;
    char num[32];

    /* HEADER = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID
     *          SP MSGID */
    snprintf(num, sizeof num, "<%d>1 ", SYSLOG_FACILITY * 8 + sev);
    sb_puts(&b, num);
    if (r->ts_ms >= 0 && r->ts_ms <= SYSLOG_TS_MAX_MS) {
        char ts[32];
        vg_time_format(r->ts_ms, ts);
        sb_puts(&b, ts);
    } else {
        sb_putc(&b, '-');
    }
    sb_putc(&b, ' ');
    put_token(&b, hostname, SYSLOG_HOSTNAME_MAX);
    sb_puts(&b, " vigil - ");
    put_token(&b, r->action, SYSLOG_MSGID_MAX);

    /* STRUCTURED-DATA: one SD-ELEMENT with the record's fields. */
    sb_puts(&b, " [" SYSLOG_SD_ID " seq=\"");
    snprintf(num, sizeof num, "%lld", (long long)r->seq);
    sb_puts(&b, num);
    sb_putc(&b, '"');
    put_param(&b, "actor", r->actor);
    put_param(&b, "target", r->target);
    put_param(&b, "outcome", outcome);
    put_param(&b, "source", r->source);
    sb_putc(&b, ']');

    /* MSG: the detail, without a BOM. RFC 5424 §6.4 allows MSG-ANY; a BOM
     * would make the text MSG-UTF8, but many receivers store it verbatim at
     * the start of the message, and put_text already guarantees valid
     * UTF-8. An empty detail means no MSG (and no SP before it). */
    if (r->detail && r->detail[0]) {
        sb_putc(&b, ' ');
        put_text(&b, r->detail, 0);
    }

    out[b.len] = '\0';
    if (b.overflow || b.len > INT_MAX)
        return -1;
    return (int)b.len;
}

/* ---- the shipper ------------------------------------------------------- */

#define SHIP_BATCH 500                 /* records read per query */
#define SHIP_MSG_MAX (64 * 1024)       /* one formatted message, at most */
#define SHIP_OUT_CAP (256 * 1024)      /* frames written per batch, at most */
#define SHIP_IDLE_MS 200               /* poll interval when caught up */
#define SHIP_BACKOFF_MIN_MS 1000
#define SHIP_BACKOFF_MAX_MS 30000
#define SHIP_CONNECT_MS 5000           /* TCP connect, per address */
#define SHIP_IO_MS 10000               /* handshake; write or ack without progress */
#define SHIP_SLICE_MS 100              /* how often blocked I/O checks for stop */
#define SHIP_FIELD_MAX 256             /* fields kept in an oversized record */

_Static_assert(SHIP_OUT_CAP >= SHIP_MSG_MAX + 16, "one message must fit an empty batch");

struct vg_audit_shipper {
    /* Set by start, read-only afterwards. */
    char target[300];
    char host[256];
    char port[16];
    char hostname[SYSLOG_HOSTNAME_MAX + 1];
    int host_is_ip;
    char *db_path;
    char *state_path;
    char *state_tmp;
    char *state_dir;
    vg_audit_ship_alert_fn alert;
    void *alert_ctx;
    SSL_CTX *ctx;
    pthread_t thread;

    /* Shared with callers, under 'mu'. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int64_t stop_deadline; /* vg_mono_ms() after which the thread quits */
    long long position;

    /* Serialises alerts with vg_audit_ship_stop: no alert after stop. */
    pthread_mutex_t alert_mu;
    int alerts_off;

    /* The shipper thread's own. */
    sqlite3 *db;
    int fd;
    SSL *ssl;
    long long shipped; /* == position, without the lock */
    int failing;
    int state_failing;
    int backoff_ms;
    char *msg;  /* SHIP_MSG_MAX */
    char *out;  /* SHIP_OUT_CAP */
    size_t out_len;
    char why[512];
};

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

__attribute__((format(printf, 2, 3))) static void set_why(struct vg_audit_shipper *s,
                                                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
}

static const char *errstr(int e, char *buf, size_t size)
{
    return strerror_r(e, buf, size); /* GNU: returns the message */
}

/* Stop requested and the drain time used up: give up whatever is going on. */
static int quitting(struct vg_audit_shipper *s)
{
    pthread_mutex_lock(&s->mu);
    int q = s->stop && vg_mono_ms() >= s->stop_deadline;
    pthread_mutex_unlock(&s->mu);
    return q;
}

static int stopping(struct vg_audit_shipper *s)
{
    pthread_mutex_lock(&s->mu);
    int q = s->stop;
    pthread_mutex_unlock(&s->mu);
    return q;
}

/* Sleeps up to 'ms'. A stop request wakes it early; once stopping, it
 * sleeps no later than the drain deadline. */
static void nap(struct vg_audit_shipper *s, int ms)
{
    pthread_mutex_lock(&s->mu);
    int was = s->stop;
    int64_t until = vg_mono_ms() + ms;
    if (s->stop && s->stop_deadline < until)
        until = s->stop_deadline;
    while (s->stop == was && vg_mono_ms() < until) {
        struct timespec ts = {(time_t)(until / 1000), (long)(until % 1000) * 1000000L};
        int rc = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        if (rc != 0 && rc != ETIMEDOUT && rc != EINTR)
            break;
    }
    pthread_mutex_unlock(&s->mu);
}

static void send_alert(struct vg_audit_shipper *s, int failing, const char *what)
{
    pthread_mutex_lock(&s->alert_mu);
    if (!s->alerts_off && s->alert)
        s->alert(s->alert_ctx, failing, what);
    pthread_mutex_unlock(&s->alert_mu);
}

static void enter_failing(struct vg_audit_shipper *s)
{
    if (s->failing) {
        vg_log_debug("audit ship: %s still failing: %s", s->target, s->why);
        return;
    }
    s->failing = 1;
    char what[900];
    snprintf(what, sizeof what, "audit shipping to %s failing: %s", s->target, s->why);
    vg_log_warn("%s (shipped up to seq %lld; retrying with backoff)", what, s->shipped);
    send_alert(s, 1, what);
}

static void leave_failing(struct vg_audit_shipper *s)
{
    s->backoff_ms = SHIP_BACKOFF_MIN_MS;
    if (!s->failing)
        return;
    s->failing = 0;
    char what[400];
    snprintf(what, sizeof what, "audit shipping to %s recovered", s->target);
    vg_log_info("%s (shipped up to seq %lld)", what, s->shipped);
    send_alert(s, 0, what);
}

/* ---- the state file ---- */

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Parses the state file's text: 1..19 decimal digits and an optional
 * newline, nothing else. */
static int parse_state(const char *buf, size_t n, long long *out)
{
    size_t i = 0;
    while (i < n && buf[i] >= '0' && buf[i] <= '9')
        i++;
    if (i == 0 || i > 19 || (i < n && !(buf[i] == '\n' && i + 1 == n)))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || end != buf + i)
        return -1;
    *out = v;
    return 0;
}

/* Reads the last shipped seq. A missing file is 0; an unreadable one is an
 * error (the same fault would stop every save); a corrupt one is 0 with a
 * warning: shipping everything again beats losing records. */
static int read_state(const char *path, long long *pos, char *err, size_t err_size)
{
    char eb[128];
    *pos = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        set_err(err, err_size, "cannot read %s: %s", path, errstr(errno, eb, sizeof eb));
        return -1;
    }
    char buf[32];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            set_err(err, err_size, "cannot read %s: %s", path, errstr(errno, eb, sizeof eb));
            close(fd);
            return -1;
        }
        if (r == 0 || (n += (size_t)r) == sizeof buf - 1)
            break;
    }
    close(fd);
    buf[n] = '\0';
    if (parse_state(buf, n, pos) != 0) {
        vg_log_warn("audit ship: %s is not a sequence number; shipping again from the first "
                    "record",
                    path);
        *pos = 0;
    }
    return 0;
}

/* Writes "SEQ\n" to a temporary file, fsyncs it, renames it over the state
 * file and fsyncs the directory, so the file is always either the old or
 * the new position. A failure is logged once per state change; the batch
 * has been delivered anyway, so the in-memory position still advances (a
 * restart would ship it again). */
static void save_state(struct vg_audit_shipper *s, long long seq)
{
    char line[32], eb[128];
    int n = snprintf(line, sizeof line, "%lld\n", seq);
    int fd = open(s->state_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    int ok = fd >= 0 && write_all(fd, line, (size_t)n) == 0 && fsync(fd) == 0;
    int e = errno;
    if (fd >= 0 && close(fd) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (ok && rename(s->state_tmp, s->state_path) != 0) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        unlink(s->state_tmp);
        if (!s->state_failing)
            vg_log_warn("audit ship: cannot save the position to %s: %s (a restart will ship "
                        "again from seq %lld)",
                        s->state_path, errstr(e, eb, sizeof eb), s->shipped);
        s->state_failing = 1;
        return;
    }
    int dfd = open(s->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0)
            vg_log_debug("audit ship: fsync %s failed", s->state_dir);
        close(dfd);
    }
    if (s->state_failing)
        vg_log_info("audit ship: saving the position to %s works again", s->state_path);
    s->state_failing = 0;
}

/* ---- the connection ---- */

/* Waits until 'fd' is ready for 'events', the deadline passes or the drain
 * time is up. 0 = ready (or in error: the next operation reports it). */
static int wait_fd(struct vg_audit_shipper *s, int fd, short events, int64_t deadline,
                   const char *what)
{
    for (;;) {
        if (quitting(s)) {
            set_why(s, "%s: stopping", what);
            return -1;
        }
        int64_t left = deadline - vg_mono_ms();
        if (left <= 0) {
            set_why(s, "%s: timed out", what);
            return -1;
        }
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, (int)(left < SHIP_SLICE_MS ? left : SHIP_SLICE_MS));
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR) {
            char eb[128];
            set_why(s, "%s: poll: %s", what, errstr(errno, eb, sizeof eb));
            return -1;
        }
    }
}

/* Describes a failed TLS operation: the certificate verification error if
 * there was one, else OpenSSL's first queued reason, else the OS error. */
static void tls_why(struct vg_audit_shipper *s, const char *what, int ssl_error, int sys_errno)
{
    long v = s->ssl ? SSL_get_verify_result(s->ssl) : X509_V_OK;
    unsigned long e = ERR_get_error();
    char buf[256];
    if (v != X509_V_OK) {
        set_why(s, "%s: certificate verify failed: %s", what, X509_verify_cert_error_string(v));
    } else if (e) {
        ERR_error_string_n(e, buf, sizeof buf);
        set_why(s, "%s: %s", what, buf);
    } else if (ssl_error == SSL_ERROR_SYSCALL && sys_errno) {
        set_why(s, "%s: %s", what, errstr(sys_errno, buf, sizeof buf));
    } else if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN) {
        set_why(s, "%s: connection closed by the receiver", what);
    } else {
        set_why(s, "%s: TLS error %d", what, ssl_error);
    }
    ERR_clear_error();
}

static void ship_close(struct vg_audit_shipper *s, int graceful)
{
    if (s->ssl) {
        /* One non-blocking close_notify, only on a healthy connection
         * (OpenSSL forbids SSL_shutdown after a fatal error). */
        if (graceful)
            (void)SSL_shutdown(s->ssl);
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    ERR_clear_error();
}

/* Non-blocking TCP connect to the first address of 'host' that answers.
 * (getaddrinfo itself blocks: a hung DNS server delays a stop.) */
static int tcp_connect(struct vg_audit_shipper *s)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(s->host, s->port, &hints, &res);
    if (rc != 0) {
        set_why(s, "cannot resolve %s: %s", s->host, gai_strerror(rc));
        return -1;
    }
    char eb[128];
    set_why(s, "cannot connect: no address for %s", s->host);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            set_why(s, "cannot connect: socket: %s", errstr(errno, eb, sizeof eb));
            continue;
        }
        int err = 0;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            err = errno;
            if (err == EINPROGRESS) {
                socklen_t len = sizeof err;
                int64_t deadline = vg_mono_ms() + SHIP_CONNECT_MS;
                if (wait_fd(s, fd, POLLOUT, deadline, "cannot connect") != 0) {
                    close(fd);
                    if (quitting(s))
                        break;
                    continue;
                }
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                    err = errno;
            }
        }
        if (err == 0) {
            s->fd = fd;
            break;
        }
        set_why(s, "cannot connect: %s", errstr(err, eb, sizeof eb));
        close(fd);
    }
    freeaddrinfo(res);
    return s->fd >= 0 ? 0 : -1;
}

static int ship_connect(struct vg_audit_shipper *s)
{
    ERR_clear_error();
    if (tcp_connect(s) != 0)
        return -1;
    int one = 1;
    (void)setsockopt(s->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    s->ssl = SSL_new(s->ctx);
    if (!s->ssl || SSL_set_fd(s->ssl, s->fd) != 1) {
        tls_why(s, "cannot set up TLS", 0, 0);
        goto fail;
    }
    /* The receiver's certificate must name the host we dialled: its IP
     * address (a SAN iPAddress) or its DNS name, and SNI carries the name
     * (RFC 6066 §3: never an IP literal). */
    X509_VERIFY_PARAM *vp = SSL_get0_param(s->ssl);
    if (s->host_is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(vp, s->host) != 1) {
            tls_why(s, "cannot set the expected IP address", 0, 0);
            goto fail;
        }
    } else {
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (X509_VERIFY_PARAM_set1_host(vp, s->host, 0) != 1 ||
            SSL_set_tlsext_host_name(s->ssl, s->host) != 1) {
            tls_why(s, "cannot set the expected host name", 0, 0);
            goto fail;
        }
    }
    int64_t deadline = vg_mono_ms() + SHIP_IO_MS;
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(s->ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(s->ssl, r);
        int sys = errno;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (wait_fd(s, s->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline,
                        "TLS handshake") != 0)
                goto fail;
            continue;
        }
        tls_why(s, "TLS handshake failed", e, sys);
        goto fail;
    }
    /* SSL_VERIFY_PEER already failed the handshake otherwise; belt and
     * braces, since everything below trusts this connection. */
    if (SSL_get_verify_result(s->ssl) != X509_V_OK) {
        tls_why(s, "TLS handshake failed", 0, 0);
        goto fail;
    }
    vg_log_debug("audit ship: connected to %s (%s, %s)", s->target, SSL_get_version(s->ssl),
                 SSL_get_cipher_name(s->ssl));
    return 0;
fail:
    ship_close(s, 0);
    return -1;
}

/* Has the receiver closed an idle connection? RFC 5425 receivers send no
 * application data, so anything readable is either a post-handshake
 * message (TLS 1.3 session tickets: harmless), a close_notify, or EOF. */
static int peer_gone(struct vg_audit_shipper *s)
{
    for (int i = 0; i < 16; i++) {
        struct pollfd p = {s->fd, POLLIN, 0};
        int r = poll(&p, 1, 0);
        if (r == 0)
            return 0;
        if (r < 0)
            return errno == EINTR ? 0 : 1;
        if (p.revents & (POLLERR | POLLNVAL))
            return 1;
        char tmp[512];
        ERR_clear_error();
        int n = SSL_read(s->ssl, tmp, sizeof tmp);
        if (n > 0)
            continue; /* unexpected data: discard */
        int e = SSL_get_error(s->ssl, n);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        return 1;
    }
    return 1; /* a receiver that keeps talking is not one we understand */
}

static int ship_write(struct vg_audit_shipper *s, const char *p, size_t len)
{
    int64_t deadline = vg_mono_ms() + SHIP_IO_MS;
    size_t off = 0;
    while (off < len) {
        size_t chunk = len - off < INT_MAX ? len - off : INT_MAX;
        ERR_clear_error();
        int r = SSL_write(s->ssl, p + off, (int)chunk);
        if (r > 0) {
            off += (size_t)r;
            deadline = vg_mono_ms() + SHIP_IO_MS;
            continue;
        }
        int e = SSL_get_error(s->ssl, r);
        int sys = errno;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (wait_fd(s, s->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline,
                        "cannot send") != 0)
                return -1;
            continue;
        }
        tls_why(s, "cannot send", e, sys);
        return -1;
    }
    return 0;
}

/* Waits until the receiver's TCP has acknowledged every byte written, so a
 * batch is confirmed only once it has left this host for good. */
static int wait_acked(struct vg_audit_shipper *s)
{
    int64_t deadline = vg_mono_ms() + SHIP_IO_MS;
    for (;;) {
        int queued = 0;
        if (ioctl(s->fd, SIOCOUTQ, &queued) != 0)
            return 0; /* not supported here: trust the write */
        if (queued == 0)
            return 0;
        if (quitting(s)) {
            set_why(s, "waiting for the receiver's acknowledgement: stopping");
            return -1;
        }
        if (vg_mono_ms() >= deadline) {
            set_why(s, "the receiver acknowledged nothing for %d s", SHIP_IO_MS / 1000);
            return -1;
        }
        /* events 0: wakes only for an error or hang-up (a reset). */
        struct pollfd p = {s->fd, 0, 0};
        if (poll(&p, 1, 5) > 0 && (p.revents & (POLLERR | POLLHUP | POLLNVAL))) {
            set_why(s, "connection lost before the receiver acknowledged the batch");
            return -1;
        }
    }
}

/* ---- one batch ---- */

struct batch {
    struct vg_audit_shipper *s;
    size_t count;
    long long last;
};

/* A record too large for one message (vigil writes short details, so this
 * is a safety net): ship its seq, time, action and outcome with a note
 * instead of stalling the trail behind it. */
static int format_oversized(struct vg_audit_shipper *s, const struct vg_audit_record *r)
{
    struct vg_audit_record m = *r;
    const char **fields[] = {&m.actor, &m.target, &m.outcome, &m.source};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!*fields[i] || strlen(*fields[i]) > SHIP_FIELD_MAX)
            *fields[i] = "";
    m.detail = "record too large for syslog; read it from the audit trail";
    vg_log_warn("audit ship: record %lld exceeds %d bytes as syslog; shipping a placeholder",
                (long long)r->seq, SHIP_MSG_MAX);
    return vg_audit_syslog_format(&m, s->hostname, s->msg, SHIP_MSG_MAX);
}

/* Appends one record as "LEN SP MSG" (RFC 5425 §4.3). The record that
 * does not fit ends the batch and starts the next one. */
static int batch_cb(void *ctx, const struct vg_audit_record *r)
{
    struct batch *b = ctx;
    struct vg_audit_shipper *s = b->s;
    int m = vg_audit_syslog_format(r, s->hostname, s->msg, SHIP_MSG_MAX);
    if (m < 0)
        m = format_oversized(s, r);
    if (m < 0)
        return 1; /* cannot happen: the placeholder is a few hundred bytes */
    char pre[16];
    int p = snprintf(pre, sizeof pre, "%d ", m);
    if (s->out_len + (size_t)p + (size_t)m > SHIP_OUT_CAP)
        return 1;
    memcpy(s->out + s->out_len, pre, (size_t)p);
    memcpy(s->out + s->out_len + p, s->msg, (size_t)m);
    s->out_len += (size_t)p + (size_t)m;
    b->count++;
    b->last = r->seq;
    return 0;
}

/* Ships the next batch. Returns the number of records shipped (0 = caught
 * up), or -1 with a reason in s->why. */
static int ship_batch(struct vg_audit_shipper *s)
{
    struct batch b = {s, 0, s->shipped};
    struct vg_audit_filter f;
    memset(&f, 0, sizeof f);
    f.after_seq = s->shipped;
    f.limit = SHIP_BATCH;
    s->out_len = 0;
    if (vg_audit_query(s->db, &f, batch_cb, &b) < 0) {
        set_why(s, "cannot read the audit trail: %s", sqlite3_errmsg(s->db));
        return -1;
    }
    if (b.count == 0)
        return 0;
    if (peer_gone(s)) {
        /* The receiver closed the idle connection (a restart, an idle
         * timeout): reconnect at once; only a failure to do so counts. */
        vg_log_debug("audit ship: %s closed the connection; reconnecting", s->target);
        ship_close(s, 0);
        if (ship_connect(s) != 0)
            return -1;
    }
    if (ship_write(s, s->out, s->out_len) != 0 || wait_acked(s) != 0)
        return -1;
    s->shipped = b.last;
    save_state(s, b.last);
    pthread_mutex_lock(&s->mu);
    s->position = b.last;
    pthread_mutex_unlock(&s->mu);
    return (int)b.count;
}

static void log_leftover(struct vg_audit_shipper *s)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT coalesce(max(seq), 0) FROM audit", -1, &st, NULL) !=
        SQLITE_OK)
        return;
    if (sqlite3_step(st) == SQLITE_ROW) {
        long long last = sqlite3_column_int64(st, 0);
        if (last > s->shipped)
            vg_log_warn("audit ship: stopped with records %lld..%lld not yet shipped to %s; "
                        "they are shipped after the next start",
                        s->shipped + 1, last, s->target);
    }
    sqlite3_finalize(st);
}

static void *ship_main(void *arg)
{
    struct vg_audit_shipper *s = arg;
    for (;;) {
        if (quitting(s))
            break;
        int n = -1;
        if (s->ssl || ship_connect(s) == 0)
            n = ship_batch(s);
        if (n < 0) {
            ship_close(s, 0);
            if (quitting(s))
                break;
            enter_failing(s);
            nap(s, s->backoff_ms);
            s->backoff_ms = s->backoff_ms >= SHIP_BACKOFF_MAX_MS / 2 ? SHIP_BACKOFF_MAX_MS
                                                                    : s->backoff_ms * 2;
            continue;
        }
        leave_failing(s);
        if (n == 0) {
            if (stopping(s))
                break;
            nap(s, SHIP_IDLE_MS);
        }
    }
    ship_close(s, s->ssl != NULL);
    log_leftover(s);
    return NULL;
}

/* ---- start and stop ---- */

static void shipper_free(struct vg_audit_shipper *s)
{
    if (!s)
        return;
    ship_close(s, 0);
    if (s->db)
        sqlite3_close(s->db);
    SSL_CTX_free(s->ctx);
    free(s->db_path);
    free(s->state_path);
    free(s->state_tmp);
    free(s->state_dir);
    free(s->msg);
    free(s->out);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->alert_mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

static char *dup_cat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 1);
    if (p) {
        memcpy(p, a, la);
        memcpy(p + la, b, lb + 1);
    }
    return p;
}

/* The client context: TLS 1.2 or 1.3, forward-secret AEAD suites only for
 * 1.2, and the configured CA as the only trust anchor (no system store). */
static SSL_CTX *client_ctx(const char *ca_path, char *err, size_t err_size)
{
    char buf[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        goto ossl_fail;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1)
        goto ossl_fail;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_load_verify_locations(ctx, ca_path, NULL) != 1) {
        ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
        set_err(err, err_size, "cannot load the syslog CA %s: %s", ca_path, buf);
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
ossl_fail:
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    set_err(err, err_size, "cannot create the TLS client context: %s", buf);
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

static int open_db(struct vg_audit_shipper *s, long long *max_seq, char *err, size_t err_size)
{
    if (sqlite3_open_v2(s->db_path, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        set_err(err, err_size, "cannot open %s read-only: %s", s->db_path,
                s->db ? sqlite3_errmsg(s->db) : "out of memory");
        return -1;
    }
    sqlite3_busy_timeout(s->db, 5000);
    sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    sqlite3_stmt *st;
    int ok = sqlite3_prepare_v2(s->db, "SELECT coalesce(max(seq), 0) FROM audit", -1, &st, NULL) ==
             SQLITE_OK;
    if (ok) {
        ok = sqlite3_step(st) == SQLITE_ROW;
        if (ok)
            *max_seq = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    if (!ok) {
        set_err(err, err_size, "cannot read the audit trail in %s: %s", s->db_path,
                sqlite3_errmsg(s->db));
        return -1;
    }
    return 0;
}

struct vg_audit_shipper *vg_audit_ship_start(const char *db_path, const char *target,
                                             const char *ca_path, const char *state_path,
                                             vg_audit_ship_alert_fn alert, void *alert_ctx,
                                             char *err, size_t err_size)
{
    if (!db_path || !target || !ca_path || !state_path) {
        set_err(err, err_size, "audit shipping: missing database, target, CA or state path");
        return NULL;
    }
    struct vg_audit_shipper *s = calloc(1, sizeof *s);
    if (!s) {
        set_err(err, err_size, "out of memory");
        return NULL;
    }
    s->fd = -1;
    s->backoff_ms = SHIP_BACKOFF_MIN_MS;
    s->alert = alert;
    s->alert_ctx = alert_ctx;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the clock of vg_mono_ms */
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->alert_mu, NULL);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);

    if (vg_strlcpy(s->target, target, sizeof s->target) != 0 ||
        vg_config_split_addr(target, s->host, sizeof s->host, s->port, sizeof s->port) != 0) {
        set_err(err, err_size, "audit shipping: target '%.200s' is not HOST:PORT", target);
        goto fail;
    }
    unsigned char addr[sizeof(struct in6_addr)];
    s->host_is_ip =
        inet_pton(AF_INET, s->host, addr) == 1 || inet_pton(AF_INET6, s->host, addr) == 1;
    if (gethostname(s->hostname, sizeof s->hostname - 1) != 0 || !s->hostname[0])
        vg_strlcpy(s->hostname, "-", sizeof s->hostname);
    s->hostname[sizeof s->hostname - 1] = '\0';

    s->db_path = strdup(db_path);
    s->state_path = strdup(state_path);
    s->state_tmp = dup_cat(state_path, ".tmp");
    const char *slash = strrchr(state_path, '/');
    s->state_dir = !slash                ? strdup(".")
                   : slash == state_path ? strdup("/")
                                         : strndup(state_path, (size_t)(slash - state_path));
    s->msg = malloc(SHIP_MSG_MAX);
    s->out = malloc(SHIP_OUT_CAP);
    if (!s->db_path || !s->state_path || !s->state_tmp || !s->state_dir || !s->msg || !s->out) {
        set_err(err, err_size, "out of memory");
        goto fail;
    }
    /* The state file's directory (DIR/audit) may not exist yet. */
    if (mkdir(s->state_dir, 0700) != 0 && errno != EEXIST) {
        char eb[128];
        set_err(err, err_size, "cannot create %s: %s", s->state_dir, errstr(errno, eb, sizeof eb));
        goto fail;
    }

    s->ctx = client_ctx(ca_path, err, err_size);
    if (!s->ctx)
        goto fail;
    long long pos = 0, max_seq = 0;
    if (read_state(state_path, &pos, err, err_size) != 0 ||
        open_db(s, &max_seq, err, err_size) != 0)
        goto fail;
    if (pos > max_seq) {
        /* The trail is shorter than what was shipped: the database was
         * replaced. Ship it all again rather than skip its new records. */
        vg_log_warn("audit ship: %s says seq %lld was shipped but the trail ends at %lld; "
                    "shipping again from the first record",
                    state_path, pos, max_seq);
        pos = 0;
    }
    s->position = s->shipped = pos;

    /* The thread takes no signals (the process's handlers run elsewhere)
     * and so a write to a reset connection cannot kill the process with
     * SIGPIPE: blocked, it only fails with EPIPE. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, ship_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        set_err(err, err_size, "cannot start the audit shipping thread");
        goto fail;
    }
    vg_log_info("audit ship: shipping to %s from seq %lld", s->target, pos + 1);
    return s;
fail:
    shipper_free(s);
    return NULL;
}

long long vg_audit_ship_position(struct vg_audit_shipper *s)
{
    pthread_mutex_lock(&s->mu);
    long long p = s->position;
    pthread_mutex_unlock(&s->mu);
    return p;
}

void vg_audit_ship_stop(struct vg_audit_shipper *s, int drain_ms)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->alert_mu);
    s->alerts_off = 1;
    pthread_mutex_unlock(&s->alert_mu);
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    s->stop_deadline = vg_mono_ms() + (drain_ms > 0 ? drain_ms : 0);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    shipper_free(s);
}
