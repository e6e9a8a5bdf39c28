/* vigil sim — simulated devices: enrolls N devices on N patients through
 * the API and streams plausible vitals over mutual-TLS MQTT at QoS 1,
 * counting only readings whose PUBACK came back (i.e. that are stored). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "cli/cli.h"
#include "core/config.h"
#include "crypto/crypto.h"
#include "mqtt/codec.h"

int vg_cli_device_enroll(const struct vg_http_target *t, const char *id, const char *out);

static const char sim_help[] =
    "Usage: vigil sim [--devices N] [--rate R] [--for SECONDS] [--out DIR]\n"
    "                 [--mqtt HOST:PORT] [--prefix P] [connection options]\n"
    "\n"
    "Enrolls N simulated devices (P-dev-001...) on N patients (P-pat-001...),\n"
    "reusing certificates already in DIR, and streams plausible vital signs\n"
    "over MQTT/TLS with client certificates at QoS 1.\n"
    "  --devices N      devices (default 3, at most 1000)\n"
    "  --rate R         readings per second per device (default 1)\n"
    "  --for SECONDS    stop after SECONDS (default 0: until Ctrl-C)\n"
    "  --out DIR        where device certificates live (default DATADIR/sim,\n"
    "                   or ./sim-certs without -d)\n"
    "  --mqtt HOST:PORT MQTT listener (default from DATADIR/vigil.conf)\n"
    "  --prefix P       id prefix (default sim)\n"
    "Prints how many readings were acknowledged (stored) and refused.\n\n";

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

struct dev {
    char id[VG_ID_MAX + 1];
    int fd;
    SSL *ssl;
    uint8_t in[4096];
    size_t in_len;
    uint16_t next_pid;
    unsigned inflight;
    double hr, spo2, rr, temp, sys;
    int phase;
};

static int dial(const char *addr, char *err, size_t errsz)
{
    char host[128], port[16];
    if (vg_config_split_addr(addr, host, sizeof host, port, sizeof port) != 0) {
        snprintf(err, errsz, "bad MQTT address '%s'", addr);
        return -1;
    }
    if (!strcmp(host, "0.0.0.0"))
        vg_strlcpy(host, "127.0.0.1", sizeof host);
    struct addrinfo hints = {0}, *res, *ai;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        snprintf(err, errsz, "%s: %s", addr, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errsz, "cannot connect to %s: %s", addr, strerror(errno));
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int write_all(struct dev *d, const uint8_t *p, size_t n)
{
    while (n) {
        int w = SSL_write(d->ssl, p, (int)n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until one whole packet is buffered; returns its length, 0 on
 * timeout, -1 on error. */
static int read_packet(struct dev *d, int timeout_ms, struct vg_mqtt_packet *pkt, size_t *len)
{
    for (;;) {
        size_t hl, total;
        int rc = vg_mqtt_frame(d->in, d->in_len, sizeof d->in, &hl, &total);
        if (rc == VG_MQTT_OK) {
            if (vg_mqtt_decode(d->in, total, pkt) != VG_MQTT_OK)
                return -1;
            *len = total;
            return 1;
        }
        if (rc != VG_MQTT_NEED_MORE)
            return -1;
        if (!SSL_pending(d->ssl)) {
            struct pollfd pfd = {d->fd, POLLIN, 0};
            int pr = poll(&pfd, 1, timeout_ms);
            if (pr == 0)
                return 0;
            if (pr < 0)
                return errno == EINTR ? 0 : -1;
        }
        int r = SSL_read(d->ssl, d->in + d->in_len, (int)(sizeof d->in - d->in_len));
        if (r <= 0)
            return -1;
        d->in_len += (size_t)r;
    }
}

static void consume(struct dev *d, size_t n)
{
    memmove(d->in, d->in + n, d->in_len - n);
    d->in_len -= n;
}

static int connect_device(struct dev *d, SSL_CTX *ctx, const char *addr, char *err, size_t errsz)
{
    d->fd = dial(addr, err, errsz);
    if (d->fd < 0)
        return -1;
    d->ssl = SSL_new(ctx);
    SSL_set_fd(d->ssl, d->fd);
    /* Check the gateway's certificate names the address we dialled. */
    char host[128], port[16];
    if (vg_config_split_addr(addr, host, sizeof host, port, sizeof port) == 0) {
        if (!strcmp(host, "0.0.0.0"))
            vg_strlcpy(host, "127.0.0.1", sizeof host);
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(d->ssl), host) != 1) {
            X509_VERIFY_PARAM_set1_host(SSL_get0_param(d->ssl), host, 0);
            SSL_set_tlsext_host_name(d->ssl, host);
        }
    }
    if (SSL_connect(d->ssl) != 1) {
        snprintf(err, errsz, "TLS to %s failed: %s", addr, ERR_reason_error_string(ERR_get_error()));
        return -1;
    }
    uint8_t buf[256];
    size_t n = vg_mqtt_encode_connect(buf, sizeof buf, d->id, 60, 1, NULL, NULL);
    struct vg_mqtt_packet p;
    size_t len;
    if (write_all(d, buf, n) != 0 || read_packet(d, 5000, &p, &len) != 1 ||
        p.type != VG_MQTT_CONNACK) {
        snprintf(err, errsz, "%s: no CONNACK", d->id);
        return -1;
    }
    consume(d, len);
    if (p.u.connack.rc != 0) {
        snprintf(err, errsz, "%s: CONNACK refused with code %u", d->id, p.u.connack.rc);
        return -1;
    }
    /* Hear about refused readings. */
    char topic[VG_ID_MAX + 32];
    snprintf(topic, sizeof topic, "vigil/v1/d/%s/rejects", d->id);
    n = vg_mqtt_encode_subscribe(buf, sizeof buf, 1, topic, 0);
    if (write_all(d, buf, n) != 0)
        return -1;
    d->next_pid = 2;
    return 0;
}

static double jitter(double v, double step, double lo, double hi)
{
    v += ((double)(randombytes_uniform(2001)) / 1000.0 - 1.0) * step;
    return v < lo ? lo : v > hi ? hi : v;
}

/* One reading; cycles through the vitals a bedside monitor reports. */
static int make_reading(struct dev *d, char *out, size_t size)
{
    static const char *const codes[] = {"8867-4", "59408-5", "9279-1", "8310-5", "8480-6"};
    static const char *const units[] = {"/min", "%", "/min", "Cel", "mm[Hg]"};
    double v;
    int k = d->phase++ % 5;
    switch (k) {
    case 0: v = d->hr = jitter(d->hr, 2, 55, 110); break;
    case 1: v = d->spo2 = jitter(d->spo2, 0.5, 90, 100); break;
    case 2: v = d->rr = jitter(d->rr, 1, 10, 24); break;
    case 3: v = d->temp = jitter(d->temp, 0.05, 36, 38.5); break;
    default: v = d->sys = jitter(d->sys, 2, 95, 150); break;
    }
    char t[32];
    vg_time_format(vg_now_ms(), t);
    return snprintf(out, size, "{\"code\":\"%s\",\"value\":%.1f,\"unit\":\"%s\",\"time\":\"%s\"}",
                    codes[k], round(v * 10) / 10, units[k], t);
}

int vg_cli_sim(int argc, char **argv)
{
    struct vg_cli_conn c = {0};
    const char *ndev_s = "3", *rate_s = "1", *for_s = "0", *out = NULL, *mqtt = NULL,
               *prefix = "sim";
    for (int i = 0; i < argc; i++) {
        int r = vg_cli_conn_option(&c, argc, argv, &i);
        if (r < 0)
            return 2;
        if (r)
            continue;
        const char **slot = !strcmp(argv[i], "--devices") ? &ndev_s
                            : !strcmp(argv[i], "--rate")  ? &rate_s
                            : !strcmp(argv[i], "--for")   ? &for_s
                            : !strcmp(argv[i], "--out")   ? &out
                            : !strcmp(argv[i], "--mqtt")  ? &mqtt
                            : !strcmp(argv[i], "--prefix") ? &prefix
                                                          : NULL;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("%s%s", sim_help, vg_cli_conn_help);
            return 0;
        }
        if (!slot || i + 1 >= argc) {
            fprintf(stderr, "vigil sim: unexpected argument '%s'\n\n%s%s", argv[i], sim_help,
                    vg_cli_conn_help);
            return 2;
        }
        *slot = argv[++i];
    }
    char *e1, *e2, *e3;
    long ndev = strtol(ndev_s, &e1, 10);
    double rate = strtod(rate_s, &e2);
    long seconds = strtol(for_s, &e3, 10);
    if (*e1 || *e2 || *e3 || ndev < 1 || ndev > 1000 || !(rate > 0 && rate <= 1000) ||
        seconds < 0 || strlen(prefix) > 40 || !vg_id_valid(prefix)) {
        fprintf(stderr, "vigil sim: --devices 1-1000, --rate > 0 (<= 1000), --for >= 0, a short --prefix\n");
        return 2;
    }
    if (vg_crypto_init() != 0)
        return 1;
    struct vg_http_target t;
    if (vg_cli_target(&c, &t) != 0)
        return 1;
    char outbuf[PATH_MAX], mqttbuf[128];
    if (!out) {
        snprintf(outbuf, sizeof outbuf, "%s", c.datadir ? c.datadir : ".");
        strncat(outbuf, c.datadir ? "/sim" : "/sim-certs", sizeof outbuf - strlen(outbuf) - 1);
        out = outbuf;
    }
    if (!mqtt) {
        if (!c.datadir) {
            fprintf(stderr, "vigil sim: give --mqtt HOST:PORT or -d DIR\n");
            return 2;
        }
        if (vg_cli_datadir_mqtt(c.datadir, mqttbuf, sizeof mqttbuf) != 0)
            return 1;
        mqtt = mqttbuf;
    }
    mkdir(out, 0700);

    struct dev *devs = calloc((size_t)ndev, sizeof *devs);
    if (!devs)
        return 1;
    int status = 1;
    SSL_CTX *ctx = NULL;
    for (long i = 0; i < ndev; i++) {
        struct dev *d = &devs[i];
        char patient[VG_ID_MAX + 1], path[PATH_MAX], body[128];
        snprintf(d->id, sizeof d->id, "%s-dev-%03ld", prefix, i + 1);
        snprintf(patient, sizeof patient, "%s-pat-%03ld", prefix, i + 1);
        d->fd = -1;
        d->hr = 72 + (double)(i % 10);
        d->spo2 = 97;
        d->rr = 15;
        d->temp = 36.8;
        d->sys = 120;
        d->phase = (int)i;
        struct vg_http_response resp;
        snprintf(body, sizeof body, "{\"id\":\"%s\"}", patient);
        if (vg_cli_call(&t, "POST", "/api/v1/patients", body, &resp, 409) != 0)
            goto out;
        vg_http_response_free(&resp);
        snprintf(path, sizeof path, "%s/%s.pem", out, d->id);
        if (access(path, R_OK) != 0 && vg_cli_device_enroll(&t, d->id, out) != 0) {
            fprintf(stderr, "vigil sim: cannot enroll %s (if it is enrolled already, its key is "
                            "not in %s: use another --prefix)\n", d->id, out);
            goto out;
        }
        snprintf(path, sizeof path, "/api/v1/devices/%s/patient", d->id);
        snprintf(body, sizeof body, "{\"patient\":\"%s\"}", patient);
        if (vg_cli_call(&t, "PUT", path, body, &resp, 0) != 0)
            goto out;
        vg_http_response_free(&resp);
    }
    sodium_memzero(t.token, sizeof t.token);

    char ca[PATH_MAX];
    snprintf(ca, sizeof ca, "%s/ca.pem", out);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    for (long i = 0; i < ndev; i++) {
        struct dev *d = &devs[i];
        char cert[PATH_MAX], key[PATH_MAX], err[256];
        snprintf(cert, sizeof cert, "%s/%s.pem", out, d->id);
        snprintf(key, sizeof key, "%s/%s.key", out, d->id);
        /* One context per device: each carries its own certificate. */
        SSL_CTX_free(ctx);
        ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 ||
            SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            fprintf(stderr, "vigil sim: cannot load %s's certificate, key or CA from %s\n", d->id, out);
            goto out;
        }
        if (connect_device(d, ctx, mqtt, err, sizeof err) != 0) {
            fprintf(stderr, "vigil sim: %s\n", err);
            goto out;
        }
    }
    printf("sim: %ld devices connected to %s, %.3g readings/s each%s\n", ndev, mqtt, rate,
           seconds ? "" : " (Ctrl-C to stop)");
    fflush(stdout);

    int64_t start = vg_mono_ms(), next_report = start + 5000;
    int64_t period = (int64_t)(1000.0 / rate);
    if (period < 1)
        period = 1;
    int64_t next_tick = start;
    unsigned long long sent = 0, acked = 0, refused = 0;
    while (!stop_flag && (seconds == 0 || vg_mono_ms() - start < seconds * 1000)) {
        int64_t now = vg_mono_ms();
        if (now >= next_tick) {
            /* Publish one reading from every device, then collect the
             * PUBACKs: the gateway can commit them as one batch. */
            for (long i = 0; i < ndev; i++) {
                struct dev *d = &devs[i];
                char payload[256], topic[VG_ID_MAX + 32];
                uint8_t buf[512];
                int plen = make_reading(d, payload, sizeof payload);
                snprintf(topic, sizeof topic, "vigil/v1/d/%s/obs", d->id);
                uint16_t pid = d->next_pid++;
                if (d->next_pid == 0)
                    d->next_pid = 1;
                size_t n = vg_mqtt_encode_publish(buf, sizeof buf, topic, strlen(topic),
                                                  (const uint8_t *)payload, (size_t)plen, 1, 0, pid);
                if (write_all(d, buf, n) != 0) {
                    fprintf(stderr, "vigil sim: %s: connection lost\n", d->id);
                    goto out;
                }
                d->inflight++;
                sent++;
            }
            next_tick += period;
            if (next_tick < now - 1000)
                next_tick = now; /* fell behind: do not burst to catch up */
        }
        for (long i = 0; i < ndev; i++) {
            struct dev *d = &devs[i];
            struct vg_mqtt_packet p;
            size_t len;
            int r;
            while ((r = read_packet(d, 0, &p, &len)) == 1) {
                if (p.type == VG_MQTT_PUBACK && d->inflight) {
                    d->inflight--;
                    acked++;
                } else if (p.type == VG_MQTT_PUBLISH) {
                    refused++;
                }
                consume(d, len);
            }
            if (r < 0) {
                fprintf(stderr, "vigil sim: %s: connection closed by the gateway\n", d->id);
                goto out;
            }
        }
        if (vg_mono_ms() >= next_report) {
            printf("sim: %llu sent, %llu acknowledged (stored), %llu refused\n", sent, acked, refused);
            fflush(stdout);
            next_report += 5000;
        }
        int64_t wait = next_tick - vg_mono_ms();
        struct pollfd pfds[64];
        nfds_t np = 0;
        for (long i = 0; i < ndev && np < 64; i++)
            pfds[np++] = (struct pollfd){devs[i].fd, POLLIN, 0};
        if (wait > 0)
            poll(pfds, np, wait > 100 ? 100 : (int)wait);
    }
    /* Wait briefly for outstanding acknowledgements before leaving. */
    int64_t until = vg_mono_ms() + 3000;
    for (long i = 0; i < ndev; i++) {
        struct dev *d = &devs[i];
        struct vg_mqtt_packet p;
        size_t len;
        while (d->inflight && vg_mono_ms() < until) {
            int r = read_packet(d, 200, &p, &len);
            if (r < 0)
                break;
            if (r == 1) {
                if (p.type == VG_MQTT_PUBACK) {
                    d->inflight--;
                    acked++;
                } else if (p.type == VG_MQTT_PUBLISH) {
                    refused++;
                }
                consume(d, len);
            }
        }
        uint8_t buf[2];
        (void)write_all(d, buf, vg_mqtt_encode_disconnect(buf, sizeof buf));
    }
    printf("sim: done: %llu sent, %llu acknowledged (stored), %llu refused\n", sent, acked, refused);
    status = 0;
out:
    for (long i = 0; i < ndev; i++) {
        if (devs[i].ssl) {
            SSL_shutdown(devs[i].ssl);
            SSL_free(devs[i].ssl);
        }
        if (devs[i].fd >= 0)
            close(devs[i].fd);
    }
    SSL_CTX_free(ctx);
    free(devs);
    return status;
}
