/* Unit tests for audit/ship: the RFC 5424 formatter (exact output, PRI,
 * SD-PARAM escaping, MSGID and HOSTNAME sanitising, capacity, empty fields,
 * one line of valid UTF-8), and the shipper against an in-process TLS
 * receiver that reads RFC 5425 octet-counted frames: in-order delivery,
 * the state file, resuming, draining on stop, an idle connection closed by
 * the receiver, a receiver certificate from another CA (nothing delivered,
 * one failing alert) and recovery from it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "audit/ship.h"
#include "core/util.h"
#include "crypto/ca.h"

/* ---- the formatter ------------------------------------------------------ */

/* 2026-11-29T10:00:00.123Z */
#define TS_SAMPLE INT64_C(1795946400123)

static struct vg_audit_record sample(void)
{
    struct vg_audit_record r = {42,
                                TS_SAMPLE,
                                "device:mon-7",
                                "readings.store",
                                "patient:P1",
                                "success",
                                "stored 3 readings from mon-7 for P1",
                                "127.0.0.1:5555"};
    return r;
}

/* RFC 5424 syntax for what vigil emits: PRI, VERSION 1, a UTC timestamp
 * with milliseconds or "-", HOSTNAME, APP-NAME vigil, PROCID "-", MSGID,
 * one SD-ELEMENT whose values escape '"', '\' and ']', an optional MSG. */
static const char syslog_re[] =
    "^<1(08|09)>1 (-|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z) "
    "[!-~]{1,255} vigil - [!-~]{1,32} "
    "\\[vigil@32473 seq=\"-?[0-9]+\""
    "( (actor|target|outcome|source)=\"([^]\"\\\\]|\\\\[]\"\\\\])*\"){4}\\]"
    "( [^\n]*)?$";

static void assert_syslog_valid(const char *msg)
{
    regex_t re;
    assert_int_equal(regcomp(&re, syslog_re, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, msg, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("not a valid vigil RFC 5424 message: %s", msg);
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            fail_msg("control character 0x%02x in: %s", *p, msg);
}

static void test_format_sample_exact(void **state)
{
    (void)state;
    struct vg_audit_record r = sample();
    char out[1024];
    static const char want[] =
        "<109>1 2026-11-29T10:00:00.123Z gw1 vigil - readings.store [vigil@32473 seq=\"42\" "
        "actor=\"device:mon-7\" target=\"patient:P1\" outcome=\"success\" "
        "source=\"127.0.0.1:5555\"] stored 3 readings from mon-7 for P1";
    int n = vg_audit_syslog_format(&r, "gw1", out, sizeof out);
    assert_string_equal(out, want);
    assert_int_equal(n, (int)strlen(want));
    assert_syslog_valid(out);
}

static void test_format_pri_by_outcome(void **state)
{
    (void)state;
    static const struct {
        const char *outcome;
        const char *pri;
    } cases[] = {
        {"success", "<109>1 "}, /* 13*8 + notice(5) */
        {"refused", "<108>1 "}, /* 13*8 + warning(4) */
        {"denied", "<108>1 "},
        {"failure", "<108>1 "},
        {"Success", "<108>1 "}, /* anything but exactly "success" is a warning */
        {"", "<108>1 "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct vg_audit_record r = sample();
        r.outcome = cases[i].outcome;
        char out[1024];
        assert_true(vg_audit_syslog_format(&r, "gw1", out, sizeof out) > 0);
        if (strncmp(out, cases[i].pri, strlen(cases[i].pri)) != 0)
            fail_msg("outcome '%s': expected %s, got %.10s", cases[i].outcome, cases[i].pri, out);
        assert_syslog_valid(out);
    }
}

static void test_format_sd_escaping(void **state)
{
    (void)state;
    struct vg_audit_record r = sample();
    r.actor = "a\"b\\c]d";
    r.target = "]";
    r.source = "\\\\";
    r.detail = "detail keeps \"quotes\", \\ and ] as they are";
    char out[1024];
    assert_true(vg_audit_syslog_format(&r, "gw1", out, sizeof out) > 0);
    assert_non_null(strstr(out, " actor=\"a\\\"b\\\\c\\]d\" "));
    assert_non_null(strstr(out, " target=\"\\]\" "));
    assert_non_null(strstr(out, " source=\"\\\\\\\\\"]"));
    /* MSG is not an SD-PARAM: nothing is escaped there. */
    assert_non_null(strstr(out, "\"] detail keeps \"quotes\", \\ and ] as they are"));
    assert_syslog_valid(out);
}

static void test_format_msgid_sanitised(void **state)
{
    (void)state;
    static const struct {
        const char *action;
        const char *msgid;
    } cases[] = {
        {"obs read", "obs_read"},
        {"a\tb\nc", "a_b_c"},
        {"0123456789abcdef0123456789ABCDEF-too-long", "0123456789abcdef0123456789ABCDEF"},
        {"caf\xc3\xa9", "caf__"},
        {"", "-"},
        {NULL, "-"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct vg_audit_record r = sample();
        r.action = cases[i].action;
        char out[1024], want[128];
        assert_true(vg_audit_syslog_format(&r, "gw1", out, sizeof out) > 0);
        snprintf(want, sizeof want, " gw1 vigil - %s [vigil@32473 ", cases[i].msgid);
        if (!strstr(out, want))
            fail_msg("action %zu: expected '%s' in %s", i, want, out);
        assert_syslog_valid(out);
    }
}

static void test_format_hostname_sanitised(void **state)
{
    (void)state;
    struct vg_audit_record r = sample();
    char out[2048], host[400];
    assert_true(vg_audit_syslog_format(&r, "my host", out, sizeof out) > 0);
    assert_non_null(strstr(out, "Z my_host vigil - "));
    memset(host, 'h', sizeof host - 1);
    host[sizeof host - 1] = '\0';
    assert_true(vg_audit_syslog_format(&r, host, out, sizeof out) > 0);
    /* cut at 255 (RFC 5424 HOSTNAME = 1*255PRINTUSASCII) */
    char *h = strstr(out, "Z ") + 2;
    assert_int_equal(strcspn(h, " "), 255);
    assert_syslog_valid(out);
}

static void test_format_capacity(void **state)
{
    (void)state;
    struct vg_audit_record r = sample();
    char full[1024], out[1024];
    int n = vg_audit_syslog_format(&r, "gw1", full, sizeof full);
    assert_true(n > 0);
    /* Exactly enough: the text and its NUL. */
    assert_int_equal(vg_audit_syslog_format(&r, "gw1", out, (size_t)n + 1), n);
    assert_string_equal(out, full);
    /* One byte short, and much too small: -1, still NUL-terminated. */
    memset(out, 'x', sizeof out);
    assert_int_equal(vg_audit_syslog_format(&r, "gw1", out, (size_t)n), -1);
    assert_true(memchr(out, '\0', (size_t)n) != NULL);
    memset(out, 'x', sizeof out);
    assert_int_equal(vg_audit_syslog_format(&r, "gw1", out, 10), -1);
    assert_true(memchr(out, '\0', 10) != NULL);
    out[0] = 'x';
    assert_int_equal(vg_audit_syslog_format(&r, "gw1", out, 1), -1);
    assert_int_equal(out[0], '\0');
    assert_int_equal(vg_audit_syslog_format(&r, "gw1", out, 0), -1);
    /* An escape that would not fit is not half-written either. */
    r.detail = "";
    r.source = "]";
    n = vg_audit_syslog_format(&r, "gw1", full, sizeof full);
    assert_true(n > 0);
    assert_int_equal(vg_audit_syslog_format(&r, "gw1", out, (size_t)n), -1);
}

static void test_format_empty_fields(void **state)
{
    (void)state;
    struct vg_audit_record r = {0, 0, "", "", "", "", "", ""};
    char out[512];
    static const char want[] = "<108>1 1970-01-01T00:00:00.000Z - vigil - - [vigil@32473 "
                               "seq=\"0\" actor=\"\" target=\"\" outcome=\"\" source=\"\"]";
    assert_int_equal(vg_audit_syslog_format(&r, "", out, sizeof out), (int)strlen(want));
    assert_string_equal(out, want);
    assert_syslog_valid(out);
    /* NULL strings are empty, too; no MSG means no trailing space. */
    struct vg_audit_record z = {7, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    assert_true(vg_audit_syslog_format(&z, NULL, out, sizeof out) > 0);
    assert_non_null(strstr(out, " - vigil - - [vigil@32473 seq=\"7\" actor=\"\""));
    assert_int_equal(out[strlen(out) - 1], ']');
    assert_syslog_valid(out);
}

static void test_format_timestamp_range(void **state)
{
    (void)state;
    struct vg_audit_record r = sample();
    char out[1024];
    r.ts_ms = -1;
    assert_true(vg_audit_syslog_format(&r, "gw1", out, sizeof out) > 0);
    assert_non_null(strstr(out, "<109>1 - gw1 vigil - "));
    r.ts_ms = INT64_C(253402300800000); /* year 10000 */
    assert_true(vg_audit_syslog_format(&r, "gw1", out, sizeof out) > 0);
    assert_non_null(strstr(out, "<109>1 - gw1 vigil - "));
    r.ts_ms = INT64_C(253402300799999);
    assert_true(vg_audit_syslog_format(&r, "gw1", out, sizeof out) > 0);
    assert_non_null(strstr(out, "<109>1 9999-12-31T23:59:59.999Z gw1 "));
    assert_syslog_valid(out);
}

static void test_format_one_line_valid_utf8(void **state)
{
    (void)state;
    struct vg_audit_record r = sample();
    r.detail = "line1\nline2\r<13>1 forged";
    r.actor = "dev\x1b[0m";
    r.target = "Z\xc3\xbcrich \xe2\x82\xac"; /* "Zürich €": valid UTF-8 stays */
    /* a stray byte, a truncated pair, a surrogate, above U+10FFFF, overlong */
    r.source = "\xff\xc3\x28\xed\xa0\x80\xf4\x90\x80\x80\xc0\xaf";
    char out[1024];
    assert_true(vg_audit_syslog_format(&r, "gw1", out, sizeof out) > 0);
    assert_non_null(strstr(out, "] line1?line2?<13>1 forged"));
    assert_non_null(strstr(out, " actor=\"dev?[0m\" "));
    assert_non_null(strstr(out, " target=\"Z\xc3\xbcrich \xe2\x82\xac\" "));
    assert_non_null(strstr(out, " source=\"?\?(?????????\"]"));
    assert_syslog_valid(out);
}

/* ---- a TLS receiver for the shipper --------------------------------------- */

#define MAX_MSGS 64

struct receiver {
    int lfd;
    int port;
    pthread_t thread;
    pthread_mutex_t mu;
    SSL_CTX *ctx;          /* swapped by tests; under mu */
    int stop;              /* under mu */
    int close_when_idle;   /* close each connection after 150 ms of silence */
    int conns;             /* handshakes completed */
    int failed_handshakes;
    char sni[256];
    char *msgs[MAX_MSGS];
    int n_msgs;
    int bad_frames;
};

static int rx_stopped(struct receiver *rx)
{
    pthread_mutex_lock(&rx->mu);
    int s = rx->stop;
    pthread_mutex_unlock(&rx->mu);
    return s;
}

static int sni_cb(SSL *ssl, int *al, void *arg)
{
    (void)al;
    struct receiver *rx = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    pthread_mutex_lock(&rx->mu);
    snprintf(rx->sni, sizeof rx->sni, "%s", name ? name : "");
    pthread_mutex_unlock(&rx->mu);
    return SSL_TLSEXT_ERR_OK;
}

/* Reads "LEN SP MSG" frames until the peer closes, the receiver stops, or
 * (close_when_idle) nothing came for 150 ms after at least one message. */
static void rx_serve(struct receiver *rx, SSL *ssl, int fd)
{
    static char buf[256 * 1024];
    size_t have = 0;
    int64_t last = vg_mono_ms();
    int got_any = 0;
    for (;;) {
        if (rx_stopped(rx))
            return;
        if (rx->close_when_idle && got_any && vg_mono_ms() - last > 150) {
            SSL_shutdown(ssl);
            return;
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (SSL_pending(ssl) == 0 && poll(&p, 1, 20) <= 0)
            continue;
        int n = SSL_read(ssl, buf + have, (int)(sizeof buf - have));
        if (n <= 0) {
            int e = SSL_get_error(ssl, n);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                continue;
            return;
        }
        have += (size_t)n;
        last = vg_mono_ms();
        for (;;) {
            size_t i = 0, len = 0;
            while (i < have && i < 7 && buf[i] >= '0' && buf[i] <= '9')
                len = len * 10 + (size_t)(buf[i++] - '0');
            if (i == have)
                break; /* need more */
            if (i == 0 || buf[0] == '0' || buf[i] != ' ' || len > sizeof buf - 16) {
                pthread_mutex_lock(&rx->mu);
                rx->bad_frames++;
                pthread_mutex_unlock(&rx->mu);
                return;
            }
            if (have < i + 1 + len)
                break;
            pthread_mutex_lock(&rx->mu);
            if (rx->n_msgs < MAX_MSGS)
                rx->msgs[rx->n_msgs++] = strndup(buf + i + 1, len);
            pthread_mutex_unlock(&rx->mu);
            got_any = 1;
            memmove(buf, buf + i + 1 + len, have - (i + 1 + len));
            have -= i + 1 + len;
        }
    }
}

static void *rx_main(void *arg)
{
    struct receiver *rx = arg;
    /* The receiver's own writes must not kill the test with SIGPIPE when
     * the shipper hangs up; the shipper itself gets no such help. */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    while (!rx_stopped(rx)) {
        struct pollfd p = {rx->lfd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int fd = accept(rx->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        struct timeval tv = {0, 50000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        pthread_mutex_lock(&rx->mu);
        SSL *ssl = SSL_new(rx->ctx);
        pthread_mutex_unlock(&rx->mu);
        SSL_set_fd(ssl, fd);
        int64_t deadline = vg_mono_ms() + 3000;
        int r;
        while ((r = SSL_accept(ssl)) != 1) {
            int e = SSL_get_error(ssl, r);
            if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || rx_stopped(rx) ||
                vg_mono_ms() > deadline)
                break;
        }
        if (r == 1) {
            pthread_mutex_lock(&rx->mu);
            rx->conns++;
            pthread_mutex_unlock(&rx->mu);
            rx_serve(rx, ssl, fd);
        } else {
            pthread_mutex_lock(&rx->mu);
            rx->failed_handshakes++;
            pthread_mutex_unlock(&rx->mu);
        }
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
    }
    return NULL;
}

static SSL_CTX *server_ctx(const char *cert, const char *key, struct receiver *rx)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, rx);
    return ctx;
}

/* Listens on 'addr' (a loopback address), port chosen by the kernel. */
static void rx_start_at(struct receiver *rx, SSL_CTX *ctx, const char *addr)
{
    memset(rx, 0, sizeof *rx);
    pthread_mutex_init(&rx->mu, NULL);
    rx->ctx = ctx;
    rx->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(rx->lfd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, addr, &a.sin_addr), 1);
    assert_int_equal(bind(rx->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(rx->lfd, 8), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(rx->lfd, (struct sockaddr *)&a, &len), 0);
    rx->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&rx->thread, NULL, rx_main, rx), 0);
}

static void rx_start(struct receiver *rx, SSL_CTX *ctx) { rx_start_at(rx, ctx, "127.0.0.1"); }

static void rx_set_ctx(struct receiver *rx, SSL_CTX *ctx)
{
    pthread_mutex_lock(&rx->mu);
    SSL_CTX *old = rx->ctx;
    rx->ctx = ctx;
    pthread_mutex_unlock(&rx->mu);
    SSL_CTX_free(old);
}

static void rx_stop(struct receiver *rx)
{
    pthread_mutex_lock(&rx->mu);
    rx->stop = 1;
    pthread_mutex_unlock(&rx->mu);
    pthread_join(rx->thread, NULL);
    close(rx->lfd);
    for (int i = 0; i < rx->n_msgs; i++)
        free(rx->msgs[i]);
    SSL_CTX_free(rx->ctx);
    pthread_mutex_destroy(&rx->mu);
}

static int rx_count(struct receiver *rx)
{
    pthread_mutex_lock(&rx->mu);
    int n = rx->n_msgs;
    pthread_mutex_unlock(&rx->mu);
    return n;
}

/* ---- fixture: a database, two CAs, certificates ---------------------------- */

struct alerts {
    pthread_mutex_t mu;
    int failing, recovered;
    char last[512];
};

struct fx {
    char dir[64];
    char db_path[128], state[128];
    char ca[128], ca_key[128], crt[128], key[128];
    char ca2[128], ca2_key[128], crt2[128], key2[128];
    sqlite3 *db;
    struct alerts al;
    char hostname[256];
};

static void on_alert(void *ctx, int failing, const char *what)
{
    struct alerts *a = ctx;
    pthread_mutex_lock(&a->mu);
    if (failing)
        a->failing++;
    else
        a->recovered++;
    snprintf(a->last, sizeof a->last, "%s", what);
    pthread_mutex_unlock(&a->mu);
}

static void alert_counts(struct fx *f, int *failing, int *recovered)
{
    pthread_mutex_lock(&f->al.mu);
    *failing = f->al.failing;
    *recovered = f->al.recovered;
    pthread_mutex_unlock(&f->al.mu);
}

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("sql failed: %s: %s", sql, msg ? msg : "");
}

static const char *const actions[] = {"vigil.start", "patient.create", "device.enroll",
                                      "mqtt.connect", "readings.store", "obs.read",
                                      "api.auth", "vigil.stop"};

/* Appends record 'seq' (as the store writer would, on its own connection). */
static void add_record(struct fx *f, long long seq)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(f->db,
                                        "INSERT INTO audit(seq, ts_ms, actor, action, target,"
                                        " outcome, detail, source, prev, hash) VALUES"
                                        " (?1, ?2, 'user:admin', ?3, 'patient:P1', ?4,"
                                        " 'record ' || ?1, '127.0.0.1', zeroblob(32),"
                                        " zeroblob(32))",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_int64(st, 2, TS_SAMPLE + seq);
    sqlite3_bind_text(st, 3, actions[seq % 8], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, seq % 3 ? "success" : "refused", -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

/* What record 'seq' must look like on the wire. */
static void expected(struct fx *f, long long seq, char *out, size_t cap)
{
    char detail[64], source[] = "127.0.0.1";
    snprintf(detail, sizeof detail, "record %lld", seq);
    struct vg_audit_record r = {seq,          TS_SAMPLE + seq,  "user:admin",
                                actions[seq % 8], "patient:P1", seq % 3 ? "success" : "refused",
                                detail,       source};
    assert_true(vg_audit_syslog_format(&r, f->hostname, out, cap) > 0);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    pthread_mutex_init(&f->al.mu, NULL);
    snprintf(f->dir, sizeof f->dir, "/tmp/vg-ship-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db_path, sizeof f->db_path, "%s/vigil.db", f->dir);
    snprintf(f->state, sizeof f->state, "%s/audit/ship.state", f->dir);
    snprintf(f->ca, sizeof f->ca, "%s/ca.pem", f->dir);
    snprintf(f->ca_key, sizeof f->ca_key, "%s/ca.key", f->dir);
    snprintf(f->crt, sizeof f->crt, "%s/server.pem", f->dir);
    snprintf(f->key, sizeof f->key, "%s/server.key", f->dir);
    snprintf(f->ca2, sizeof f->ca2, "%s/ca2.pem", f->dir);
    snprintf(f->ca2_key, sizeof f->ca2_key, "%s/ca2.key", f->dir);
    snprintf(f->crt2, sizeof f->crt2, "%s/server2.pem", f->dir);
    snprintf(f->key2, sizeof f->key2, "%s/server2.key", f->dir);
    char err[512] = "";
    if (vg_ca_create(f->ca, f->ca_key, "ship test CA", 2, err, sizeof err) != 0 ||
        vg_ca_issue_server(f->ca, f->ca_key, f->crt, f->key, "localhost", 2, err, sizeof err) !=
            0 ||
        vg_ca_create(f->ca2, f->ca2_key, "some other CA", 2, err, sizeof err) != 0 ||
        vg_ca_issue_server(f->ca2, f->ca2_key, f->crt2, f->key2, "localhost", 2, err,
                           sizeof err) != 0)
        fail_msg("test PKI: %s", err);
    assert_int_equal(sqlite3_open(f->db_path, &f->db), SQLITE_OK);
    exec_sql(f->db, "PRAGMA journal_mode=WAL;"
                    "CREATE TABLE audit(seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL,"
                    " actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,"
                    " outcome TEXT NOT NULL, detail TEXT NOT NULL, source TEXT NOT NULL,"
                    " prev BLOB NOT NULL, hash BLOB NOT NULL);");
    if (gethostname(f->hostname, sizeof f->hostname - 1) != 0 || !f->hostname[0])
        snprintf(f->hostname, sizeof f->hostname, "-");
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    sqlite3_close(f->db);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    pthread_mutex_destroy(&f->al.mu);
    free(f);
    return 0;
}

static struct vg_audit_shipper *ship(struct fx *f, int port, const char *host)
{
    char target[64], err[512] = "";
    snprintf(target, sizeof target, "%s:%d", host, port);
    struct vg_audit_shipper *s =
        vg_audit_ship_start(f->db_path, target, f->ca, f->state, on_alert, &f->al, err, sizeof err);
    if (!s)
        fail_msg("vg_audit_ship_start: %s", err);
    return s;
}

/* Polls until the shipper's position is 'want' (or 'ms' pass). */
static int wait_position(struct vg_audit_shipper *s, long long want, int ms)
{
    int64_t end = vg_mono_ms() + ms;
    while (vg_audit_ship_position(s) != want && vg_mono_ms() < end)
        usleep(10000);
    return vg_audit_ship_position(s) == want;
}

static int wait_count(struct receiver *rx, int want, int ms)
{
    int64_t end = vg_mono_ms() + ms;
    while (rx_count(rx) < want && vg_mono_ms() < end)
        usleep(10000);
    return rx_count(rx) >= want;
}

static void assert_received(struct fx *f, struct receiver *rx, long long first, long long last)
{
    char want[1024];
    pthread_mutex_lock(&rx->mu);
    int n = rx->n_msgs;
    pthread_mutex_unlock(&rx->mu);
    assert_int_equal(n, (int)(last - first + 1));
    for (long long seq = first; seq <= last; seq++) {
        expected(f, seq, want, sizeof want);
        assert_string_equal(rx->msgs[seq - first], want);
        assert_syslog_valid(rx->msgs[seq - first]);
    }
    assert_int_equal(rx->bad_frames, 0);
}

static void assert_state_file(struct fx *f, const char *want)
{
    char buf[64] = "";
    FILE *fp = fopen(f->state, "r");
    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

/* ---- the shipper ---------------------------------------------------------- */

/* Waits for the first failing alert; returns how many there were. */
static int wait_failing(struct fx *f, int ms)
{
    int failing = 0, recovered = 0;
    int64_t end = vg_mono_ms() + ms;
    while (failing == 0 && vg_mono_ms() < end) {
        usleep(10000);
        alert_counts(f, &failing, &recovered);
    }
    return failing;
}

static void test_ship_delivers_in_order_and_resumes(void **state)
{
    struct fx *f = *state;
    struct receiver rx;
    for (long long i = 1; i <= 3; i++)
        add_record(f, i);
    rx_start(&rx, server_ctx(f->crt, f->key, &rx));

    struct vg_audit_shipper *s = ship(f, rx.port, "127.0.0.1");
    assert_true(wait_position(s, 3, 10000));
    /* Records appended while it runs follow, in order. */
    for (long long i = 4; i <= 6; i++)
        add_record(f, i);
    assert_true(wait_position(s, 6, 10000));
    assert_true(wait_count(&rx, 6, 2000));
    vg_audit_ship_stop(s, 1000);
    assert_received(f, &rx, 1, 6);
    assert_state_file(f, "6\n");
    assert_int_equal(rx.sni[0], '\0'); /* no SNI for an IP address */

    /* A restart resumes after the saved position: nothing twice. */
    add_record(f, 7);
    s = ship(f, rx.port, "127.0.0.1");
    assert_int_equal(vg_audit_ship_position(s), 6);
    assert_true(wait_position(s, 7, 10000));
    assert_true(wait_count(&rx, 7, 2000));
    usleep(300000);
    vg_audit_ship_stop(s, 1000);
    assert_received(f, &rx, 1, 7);
    assert_state_file(f, "7\n");

    int failing, recovered;
    alert_counts(f, &failing, &recovered);
    assert_int_equal(failing, 0);
    assert_int_equal(recovered, 0);
    rx_stop(&rx);
}

static void test_ship_by_name_sends_sni(void **state)
{
    struct fx *f = *state;
    struct receiver rx;
    add_record(f, 1);
    rx_start(&rx, server_ctx(f->crt, f->key, &rx));
    /* "localhost" may resolve to ::1 first, where nobody listens: the
     * shipper moves on to 127.0.0.1. */
    struct vg_audit_shipper *s = ship(f, rx.port, "localhost");
    assert_true(wait_position(s, 1, 10000));
    vg_audit_ship_stop(s, 1000);
    assert_received(f, &rx, 1, 1);
    assert_string_equal(rx.sni, "localhost");
    rx_stop(&rx);
}

static void test_ship_tls12_receiver(void **state)
{
    struct fx *f = *state;
    struct receiver rx;
    add_record(f, 1);
    SSL_CTX *ctx = server_ctx(f->crt, f->key, &rx);
    assert_int_equal(SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION), 1);
    rx_start(&rx, ctx);
    struct vg_audit_shipper *s = ship(f, rx.port, "127.0.0.1");
    assert_true(wait_position(s, 1, 10000));
    vg_audit_ship_stop(s, 1000);
    assert_received(f, &rx, 1, 1);
    rx_stop(&rx);
}

static void test_ship_stop_drains(void **state)
{
    struct fx *f = *state;
    struct receiver rx;
    rx_start(&rx, server_ctx(f->crt, f->key, &rx));
    add_record(f, 1);
    struct vg_audit_shipper *s = ship(f, rx.port, "127.0.0.1");
    assert_true(wait_position(s, 1, 10000));
    /* Appended just before stop: the drain ships them. */
    for (long long i = 2; i <= 5; i++)
        add_record(f, i);
    vg_audit_ship_stop(s, 3000);
    assert_state_file(f, "5\n");
    assert_true(wait_count(&rx, 5, 2000));
    assert_received(f, &rx, 1, 5);
    rx_stop(&rx);
}

static void test_ship_reconnects_after_idle_close(void **state)
{
    struct fx *f = *state;
    struct receiver rx;
    rx_start(&rx, server_ctx(f->crt, f->key, &rx));
    rx.close_when_idle = 1;
    add_record(f, 1);
    struct vg_audit_shipper *s = ship(f, rx.port, "127.0.0.1");
    assert_true(wait_position(s, 1, 10000));
    usleep(500000); /* the receiver closes the idle connection */
    add_record(f, 2);
    add_record(f, 3);
    assert_true(wait_position(s, 3, 10000));
    assert_true(wait_count(&rx, 3, 2000));
    vg_audit_ship_stop(s, 1000);
    assert_received(f, &rx, 1, 3);
    pthread_mutex_lock(&rx.mu);
    assert_true(rx.conns >= 2);
    pthread_mutex_unlock(&rx.mu);
    int failing, recovered;
    alert_counts(f, &failing, &recovered);
    assert_int_equal(failing, 0); /* a receiver closing an idle connection is no failure */
    rx_stop(&rx);
}

static void test_ship_refuses_other_ca_then_recovers(void **state)
{
    struct fx *f = *state;
    struct receiver rx;
    for (long long i = 1; i <= 3; i++)
        add_record(f, i);
    /* The receiver presents a certificate from a CA the shipper does not
     * trust (same names, same SANs). */
    rx_start(&rx, server_ctx(f->crt2, f->key2, &rx));
    struct vg_audit_shipper *s = ship(f, rx.port, "127.0.0.1");

    assert_int_equal(wait_failing(f, 5000), 1);
    int failing = 0, recovered = 0;
    pthread_mutex_lock(&f->al.mu);
    assert_non_null(strstr(f->al.last, "failing"));
    assert_non_null(strstr(f->al.last, "certificate verify failed"));
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", rx.port);
    assert_non_null(strstr(f->al.last, target));
    pthread_mutex_unlock(&f->al.mu);

    /* It keeps retrying (1 s, then 2 s) without alerting again and without
     * delivering a byte. */
    usleep(1500000);
    alert_counts(f, &failing, &recovered);
    assert_int_equal(failing, 1);
    assert_int_equal(recovered, 0);
    assert_int_equal(rx_count(&rx), 0);
    assert_int_equal(vg_audit_ship_position(s), 0);
    pthread_mutex_lock(&rx.mu);
    assert_true(rx.failed_handshakes >= 2);
    assert_int_equal(rx.conns, 0);
    pthread_mutex_unlock(&rx.mu);
    assert_int_equal(access(f->state, F_OK), -1);

    /* The receiver gets the right certificate: the next retry delivers
     * everything once and alerts "recovered" once. */
    rx_set_ctx(&rx, server_ctx(f->crt, f->key, &rx));
    assert_true(wait_position(s, 3, 10000));
    alert_counts(f, &failing, &recovered);
    assert_int_equal(failing, 1);
    assert_int_equal(recovered, 1);
    pthread_mutex_lock(&f->al.mu);
    assert_non_null(strstr(f->al.last, "recovered"));
    pthread_mutex_unlock(&f->al.mu);
    vg_audit_ship_stop(s, 1000);
    assert_received(f, &rx, 1, 3);
    rx_stop(&rx);
}

static void test_ship_refuses_wrong_address(void **state)
{
    struct fx *f = *state;
    struct receiver rx;
    add_record(f, 1);
    /* The right CA, but the certificate names 127.0.0.1, ::1 and
     * localhost, not the 127.0.0.2 the shipper dials. */
    rx_start_at(&rx, server_ctx(f->crt, f->key, &rx), "127.0.0.2");
    struct vg_audit_shipper *s = ship(f, rx.port, "127.0.0.2");
    assert_int_equal(wait_failing(f, 5000), 1);
    pthread_mutex_lock(&f->al.mu);
    assert_non_null(strstr(f->al.last, "IP address mismatch"));
    pthread_mutex_unlock(&f->al.mu);
    vg_audit_ship_stop(s, 0);
    assert_int_equal(rx_count(&rx), 0);
    pthread_mutex_lock(&rx.mu);
    assert_int_equal(rx.conns, 0);
    pthread_mutex_unlock(&rx.mu);
    rx_stop(&rx);
}

static void test_ship_stop_is_prompt_when_failing(void **state)
{
    struct fx *f = *state;
    struct receiver rx;
    add_record(f, 1);
    rx_start(&rx, server_ctx(f->crt2, f->key2, &rx));
    struct vg_audit_shipper *s = ship(f, rx.port, "127.0.0.1");
    assert_int_equal(wait_failing(f, 5000), 1);
    int64_t t0 = vg_mono_ms();
    vg_audit_ship_stop(s, 300);
    assert_true(vg_mono_ms() - t0 < 1500);
    assert_int_equal(rx_count(&rx), 0);
    rx_stop(&rx);
}

static void test_ship_nobody_listening(void **state)
{
    struct fx *f = *state;
    add_record(f, 1);
    /* A port nobody listens on (bound, never listened). */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    struct vg_audit_shipper *s = ship(f, ntohs(a.sin_port), "127.0.0.1");
    assert_int_equal(wait_failing(f, 5000), 1);
    pthread_mutex_lock(&f->al.mu);
    assert_non_null(strstr(f->al.last, "refused"));
    pthread_mutex_unlock(&f->al.mu);
    vg_audit_ship_stop(s, 0);
    close(fd);
}

static void test_ship_state_file_corrupt_or_ahead(void **state)
{
    struct fx *f = *state;
    struct receiver rx;
    rx_start(&rx, server_ctx(f->crt, f->key, &rx));
    add_record(f, 1);
    add_record(f, 2);
    char dir[160];
    snprintf(dir, sizeof dir, "%s/audit", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);

    /* Corrupt: shipped again from the start. */
    write_file(f->state, "12abc\n");
    struct vg_audit_shipper *s = ship(f, rx.port, "127.0.0.1");
    assert_int_equal(vg_audit_ship_position(s), 0);
    assert_true(wait_position(s, 2, 10000));
    vg_audit_ship_stop(s, 1000);
    assert_state_file(f, "2\n");

    /* Ahead of the trail (a replaced database): from the start, too. */
    write_file(f->state, "99\n");
    s = ship(f, rx.port, "127.0.0.1");
    assert_int_equal(vg_audit_ship_position(s), 0);
    assert_true(wait_position(s, 2, 10000));
    vg_audit_ship_stop(s, 1000);

    /* Valid, without the newline: resumes. */
    write_file(f->state, "1");
    s = ship(f, rx.port, "127.0.0.1");
    assert_int_equal(vg_audit_ship_position(s), 1);
    assert_true(wait_position(s, 2, 10000));
    vg_audit_ship_stop(s, 1000);
    assert_true(wait_count(&rx, 5, 2000));
    assert_int_equal(rx_count(&rx), 5); /* 1,2 + 1,2 + 2 */
    rx_stop(&rx);
}

static void test_ship_start_errors(void **state)
{
    struct fx *f = *state;
    char err[512];
    char missing_db[160], bad_ca[160];
    snprintf(missing_db, sizeof missing_db, "%s/nope.db", f->dir);
    snprintf(bad_ca, sizeof bad_ca, "%s/nope.pem", f->dir);
    err[0] = '\0';
    assert_null(vg_audit_ship_start(f->db_path, "no-port", f->ca, f->state, on_alert, &f->al,
                                    err, sizeof err));
    assert_non_null(strstr(err, "HOST:PORT"));
    err[0] = '\0';
    assert_null(vg_audit_ship_start(f->db_path, "127.0.0.1:6514", bad_ca, f->state, on_alert,
                                    &f->al, err, sizeof err));
    assert_non_null(strstr(err, "CA"));
    err[0] = '\0';
    assert_null(vg_audit_ship_start(missing_db, "127.0.0.1:6514", f->ca, f->state, on_alert,
                                    &f->al, err, sizeof err));
    assert_true(err[0] != '\0');
    vg_audit_ship_stop(NULL, 0);
}

int main(void)
{
    /* vigil serve ignores SIGPIPE; the shipper must not depend on it, so
     * this test leaves the default (fatal) disposition in place. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_sample_exact),
        cmocka_unit_test(test_format_pri_by_outcome),
        cmocka_unit_test(test_format_sd_escaping),
        cmocka_unit_test(test_format_msgid_sanitised),
        cmocka_unit_test(test_format_hostname_sanitised),
        cmocka_unit_test(test_format_capacity),
        cmocka_unit_test(test_format_empty_fields),
        cmocka_unit_test(test_format_timestamp_range),
        cmocka_unit_test(test_format_one_line_valid_utf8),
        cmocka_unit_test_setup_teardown(test_ship_delivers_in_order_and_resumes, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_ship_by_name_sends_sni, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ship_tls12_receiver, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ship_stop_drains, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ship_reconnects_after_idle_close, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_ship_refuses_other_ca_then_recovers, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_ship_refuses_wrong_address, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ship_stop_is_prompt_when_failing, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_ship_nobody_listening, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ship_state_file_corrupt_or_ahead, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_ship_start_errors, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
