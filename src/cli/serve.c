/* vigil serve DIR — the gateway process. */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "api/api.h"
#include "audit/audit.h"
#include "audit/ship.h"
#include "cli/cli.h"
#include "core/config.h"
#include "core/log.h"
#include "crypto/crypto.h"
#include "crypto/kek.h"
#include "store/keyring.h"
#include "store/retention.h"
#include "mqtt/broker.h"
#include "net/tls.h"
#include "store/store.h"
#include "store/writer.h"

static const char serve_help[] =
    "Usage: vigil serve DIR [--mqtt-listen ADDR:PORT] [--api-listen ADDR:PORT]\n"
    "\n"
    "Runs the gateway on the data directory DIR (made by `vigil init`):\n"
    "  MQTT 3.1.1 over TLS 1.3 with client certificates for devices\n"
    "  (default 127.0.0.1:8883), and the HTTPS REST/FHIR API (default\n"
    "  127.0.0.1:8443). Listeners come from DIR/vigil.conf unless overridden:\n"
    "  --mqtt-listen ADDR:PORT   MQTT/TLS listener\n"
    "  --api-listen ADDR:PORT    HTTPS listener\n"
    "SIGINT or SIGTERM stops accepting, commits and acknowledges what is in\n"
    "flight, and exits. Logs go to stderr, one line per event.\n";

struct serve {
    struct event_base *base;
    struct vg_broker *broker;
    struct event *tick;
    /* The retention purge (store/retention.h), on the loop's store handle. */
    struct vg_store *reader;
    struct vg_retention retention;
    int retention_interval_s;
    struct event *purge;
    int64_t stop_deadline;
    int stopping;
};

static void notify_trampoline(void *arg)
{
    struct serve *s = arg;
    struct vg_broker *b = __atomic_load_n(&s->broker, __ATOMIC_ACQUIRE);
    if (b)
        vg_broker_writer_notify(b);
}

/* Deletes what the retention rules say is due, at most PURGE_BUDGET
 * readings per turn so the loop is never held long; comes back in a second
 * while more is due, else after the configured interval. */
#define PURGE_BUDGET 20000
static void purge_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct serve *s = arg;
    struct vg_purge_report rep;
    int rc = vg_retention_purge(s->reader, &s->retention, vg_now_ms(), PURGE_BUDGET, &rep);
    if (rc)
        vg_log_error("retention: purge failed (will retry): %s", vg_store_errmsg(s->reader));
    else if (rep.deleted)
        vg_log_info("retention: deleted %lld readings past their retention (%d codes)%s",
                    (long long)rep.deleted, rep.codes, rep.more ? "; more to do" : "");
    struct timeval next = {rep.more && !rc ? 1 : s->retention_interval_s, 0};
    event_add(s->purge, &next);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct serve *s = arg;
    if (vg_broker_idle(s->broker) || vg_mono_ms() > s->stop_deadline)
        event_base_loopbreak(s->base);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct serve *s = arg;
    if (s->stopping) {
        vg_log_warn("serve: second signal; stopping now");
        event_base_loopbreak(s->base);
        return;
    }
    s->stopping = 1;
    vg_log_info("serve: %s received; finishing in-flight work", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    vg_broker_drain(s->broker);
    s->stop_deadline = vg_mono_ms() + 10000;
    struct timeval tv = {0, 20000};
    event_add(s->tick, &tv);
}

static void audit_system_outcome(struct vg_writer *w, const char *action, const char *outcome,
                                 const char *detail)
{
    struct vg_job *j = vg_job_new(VG_JOB_AUDIT, 0);
    if (!j)
        return;
    vg_strlcpy(j->audit.actor, "system", sizeof j->audit.actor);
    vg_strlcpy(j->audit.action, action, sizeof j->audit.action);
    vg_strlcpy(j->audit.outcome, outcome, sizeof j->audit.outcome);
    vg_strlcpy(j->audit.detail, detail, sizeof j->audit.detail);
    vg_writer_submit(w, j);
}

static void audit_system(struct vg_writer *w, const char *action, const char *detail)
{
    audit_system_outcome(w, action, "success", detail);
}

/* The SIEM feed failing is an alert: logged, and recorded in the trail
 * itself (which keeps the record until shipping recovers). */
struct ship_alert_ctx {
    pthread_mutex_t lock;
    struct vg_writer *writer; /* NULL once the writer is stopping */
};

static void ship_alert(void *ctx, int failing, const char *what)
{
    struct ship_alert_ctx *a = ctx;
    if (failing)
        vg_log_error("alert: %s", what);
    else
        vg_log_info("audit: %s", what);
    /* The shipper outlives the writer by a moment at shutdown (it ships the
     * vigil.stop record): an alert in that window is logged only. */
    pthread_mutex_lock(&a->lock);
    if (a->writer)
        audit_system_outcome(a->writer, failing ? "alert.raised" : "alert.cleared",
                             failing ? "failure" : "success", what);
    pthread_mutex_unlock(&a->lock);
}

/* Loads keys/audit.key. A data dir from before signed checkpoints gets a
 * key now — but only while no checkpoint exists: a missing key with
 * checkpoints on record means the key was lost, and replacing it would
 * make forged checkpoints indistinguishable from real ones. */
static int load_audit_key(const char *dir, struct vg_store *st, uint8_t *sk, char *err, size_t err_size)
{
    char sk_path[PATH_MAX], pk_path[PATH_MAX];
    snprintf(sk_path, sizeof sk_path, "%s/keys/audit.key", dir);
    snprintf(pk_path, sizeof pk_path, "%s/keys/audit.pub", dir);
    if (access(sk_path, F_OK) != 0) {
        sqlite3_stmt *s;
        int have = 1;
        if (sqlite3_prepare_v2(vg_store_db(st), "SELECT count(*) FROM audit_checkpoints", -1, &s,
                               NULL) == SQLITE_OK) {
            if (sqlite3_step(s) == SQLITE_ROW)
                have = sqlite3_column_int(s, 0) > 0;
            sqlite3_finalize(s);
        }
        if (have) {
            snprintf(err, err_size, "the audit signing key %.300s is missing but signed checkpoints"
                                    " exist; restore the key from backup", sk_path);
            return -1;
        }
        if (vg_audit_key_create(sk_path, pk_path, err, err_size) != 0)
            return -1;
        vg_log_warn("serve: created an audit signing key (%s); the data dir predates it", sk_path);
    }
    return vg_audit_key_load(sk_path, sk, err, err_size);
}

/* SHA-256 of vigil.conf, recorded at start so configuration changes between
 * runs show in the trail. */
static void config_digest(const char *path, char out[17])
{
    uint8_t buf[65536], md[VG_SHA256_BYTES];
    FILE *f = fopen(path, "re");
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    vg_sha256(buf, n, md);
    vg_hex(md, 8, out);
}

int vg_cli_serve(int argc, char **argv)
{
    const char *dir = NULL, *mqtt_listen = NULL, *api_listen = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(serve_help, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--mqtt-listen") && i + 1 < argc) {
            mqtt_listen = argv[++i];
        } else if (!strcmp(argv[i], "--api-listen") && i + 1 < argc) {
            api_listen = argv[++i];
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "vigil serve: unexpected argument '%s'\n\n%s", argv[i], serve_help);
            return 2;
        }
    }
    if (!dir) {
        fputs(serve_help, stderr);
        return 2;
    }
    char path[PATH_MAX], p2[PATH_MAX], p3[PATH_MAX], err[512];
    struct vg_config cfg;
    vg_config_defaults(&cfg);
    snprintf(path, sizeof path, "%s/vigil.conf", dir);
    if (vg_config_load(path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "vigil serve: %s\n", err);
        return 1;
    }
    if (mqtt_listen)
        vg_strlcpy(cfg.mqtt_listen, mqtt_listen, sizeof cfg.mqtt_listen);
    if (api_listen)
        vg_strlcpy(cfg.api_listen, api_listen, sizeof cfg.api_listen);
    vg_log_set_level(!strcmp(cfg.log_level, "debug")  ? VG_LOG_DEBUG
                     : !strcmp(cfg.log_level, "warn") ? VG_LOG_WARN
                     : !strcmp(cfg.log_level, "error") ? VG_LOG_ERROR
                                                       : VG_LOG_INFO);
    if (vg_crypto_init() != 0) {
        fprintf(stderr, "vigil serve: cannot initialise libsodium\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    /* The KEK must be the one this database was created with; a missing or
     * wrong key stops here and is never replaced by a fresh one. */
    uint8_t *kek = sodium_malloc(VG_KEY_BYTES);
    struct vg_kek_source kek_src; /* vigil.conf [keys]: keys/kek or a PKCS#11 token */
    if (!kek || vg_kek_source_from_config(&cfg, dir, &kek_src, err, sizeof err) != 0 ||
        vg_kek_source_load(&kek_src, kek, err, sizeof err) != 0) {
        fprintf(stderr, "vigil serve: cannot start: %s\n", kek ? err : "out of memory");
        sodium_free(kek);
        return 1;
    }
    snprintf(path, sizeof path, "%s/vigil.db", dir);
    struct vg_store *reader = NULL;
    /* One keyring for both connections (store/keyring.h). A KEK staged by
     * a rotation that was interrupted is tried too; the database says
     * which of the two opens it, and the other is dropped. */
    struct vg_keyring *ring = vg_keyring_new(kek);
    uint8_t *staged = sodium_malloc(VG_KEY_BYTES);
    int has_staged = ring && staged ? vg_kek_source_load_next(&kek_src, staged, err, sizeof err) : -1;
    if (has_staged < 0) {
        fprintf(stderr, "vigil serve: cannot start: %s\n", ring && staged ? err : "out of memory");
        vg_keyring_unref(ring);
        sodium_free(staged);
        sodium_free(kek);
        return 1;
    }
    if (has_staged == VG_KEK_LOADED)
        vg_keyring_rotate(ring, staged);
    sodium_free(staged);
    int which = 0;
    int orc = vg_store_open_ring(path, ring, &reader, &which, err, sizeof err);
    if (orc == VG_STORE_OK && has_staged == VG_KEK_LOADED) {
        if (which == 0) {
            /* The rotation committed; its KEK replaces the old file now. */
            if (vg_kek_source_promote_next(&kek_src, err, sizeof err) == 0) {
                vg_keyring_forget_previous(ring);
                vg_log_warn("serve: finished an interrupted KEK rotation (the new KEK is in place)");
            } else {
                vg_log_error("serve: cannot put the rotated KEK in place: %s", err);
            }
        } else {
            vg_keyring_revert(ring);
            if (vg_kek_source_discard_next(&kek_src, err, sizeof err) == 0)
                vg_log_warn("serve: a KEK rotation had not committed; its staged key was removed");
            else
                vg_log_error("serve: cannot remove an uncommitted staged KEK: %s", err);
        }
    }
    if (orc != VG_STORE_OK) {
        fprintf(stderr, "vigil serve: cannot start: %s\n", err);
        vg_keyring_unref(ring);
        sodium_free(kek);
        return 1;
    }
    vg_keyring_unref(ring); /* the reader holds it; the writer takes its own reference */
    struct serve s = {0};
    uint8_t *audit_sk = sodium_malloc(VG_AUDIT_SK_BYTES);
    if (!audit_sk || load_audit_key(dir, reader, audit_sk, err, sizeof err) != 0) {
        fprintf(stderr, "vigil serve: cannot start: %s\n", audit_sk ? err : "out of memory");
        sodium_free(kek);
        sodium_free(audit_sk);
        vg_store_close(reader);
        return 1;
    }
    snprintf(p3, sizeof p3, "%s/audit", dir);
    mkdir(p3, 0700);
    snprintf(p3, sizeof p3, "%s/audit/checkpoints.log", dir);
    struct vg_writer_opts wopts = {.batch_max = (size_t)cfg.batch_max,
                                   .audit_sk = audit_sk,
                                   .cp_records = cfg.checkpoint_records,
                                   .cp_seconds = cfg.checkpoint_seconds,
                                   .cp_log_path = p3,
                                   .cp_syslog = cfg.checkpoint_syslog,
                                   .keyring = vg_store_keyring(reader)};
    struct vg_writer *writer =
        vg_writer_start(path, kek, &wopts, notify_trampoline, &s, err, sizeof err);
    sodium_free(kek);
    sodium_free(audit_sk);
    if (!writer) {
        fprintf(stderr, "vigil serve: cannot start: %s\n", err);
        vg_store_close(reader);
        return 1;
    }
    struct vg_audit_shipper *shipper = NULL;
    struct ship_alert_ctx alert_ctx = {PTHREAD_MUTEX_INITIALIZER, writer};
    if (cfg.syslog_target[0]) {
        char ca[PATH_MAX], state[PATH_MAX];
        if (cfg.syslog_ca[0] == '/' )
            vg_strlcpy(ca, cfg.syslog_ca, sizeof ca);
        else
            snprintf(ca, sizeof ca, "%s/%s", dir, cfg.syslog_ca[0] ? cfg.syslog_ca : "pki/syslog-ca.pem");
        snprintf(state, sizeof state, "%s/audit/ship.state", dir);
        shipper = vg_audit_ship_start(path, cfg.syslog_target, ca, state, ship_alert, &alert_ctx,
                                      err, sizeof err);
        if (!shipper) {
            fprintf(stderr, "vigil serve: cannot start audit shipping: %s\n", err);
            vg_writer_stop(writer);
            vg_store_close(reader);
            return 1;
        }
        vg_log_info("serve: shipping the audit trail to %s (RFC 5425)", cfg.syslog_target);
    }

    snprintf(path, sizeof path, "%s/pki/server.pem", dir);
    snprintf(p2, sizeof p2, "%s/pki/server.key", dir);
    snprintf(p3, sizeof p3, "%s/pki/ca.pem", dir);
    SSL_CTX *mqtt_tls = vg_tls_server_ctx(path, p2, p3, err, sizeof err);
    SSL_CTX *api_tls = mqtt_tls ? vg_tls_server_ctx(path, p2, NULL, err, sizeof err) : NULL;
    int status = 1;
    struct vg_api *api = NULL;
    evthread_use_pthreads();
    s.base = event_base_new();
    if (!mqtt_tls || !api_tls || !s.base) {
        fprintf(stderr, "vigil serve: cannot start: %s\n", s.base ? err : "no event base");
        goto out;
    }
    s.broker = vg_broker_new(s.base, mqtt_tls, &cfg, writer, reader);
    api = s.broker ? vg_api_new(s.base, api_tls, &cfg, reader, dir, s.broker) : NULL;
    if (api)
        vg_api_set_kek_source(api, &kek_src);
    if (!api) {
        fprintf(stderr, "vigil serve: cannot start: out of memory or unreadable pki/ca.pem\n");
        goto out;
    }
    if (vg_broker_listen(s.broker, cfg.mqtt_listen, err, sizeof err) != 0 ||
        vg_api_listen(api, cfg.api_listen, err, sizeof err) != 0) {
        fprintf(stderr, "vigil serve: cannot start: %s\n", err);
        goto out;
    }
    struct event *sigint = evsignal_new(s.base, SIGINT, signal_cb, &s);
    struct event *sigterm = evsignal_new(s.base, SIGTERM, signal_cb, &s);
    s.tick = event_new(s.base, -1, EV_PERSIST, tick_cb, &s);
    s.reader = reader;
    s.retention_interval_s = cfg.retention.interval_s;
    for (int i = 0; i < cfg.retention.n; i++)
        if (vg_retention_set(&s.retention, cfg.retention.key[i], cfg.retention.value[i], err,
                             sizeof err) != 0)
            vg_log_error("retention: %s", err); /* checked at load; cannot happen */
    if (s.retention.n) { /* rules that all say "keep" find nothing: harmless */
        s.purge = event_new(s.base, -1, 0, purge_cb, &s);
        struct timeval soon = {1, 0}; /* first run shortly after start */
        if (s.purge)
            event_add(s.purge, &soon);
    }
    event_add(sigint, NULL);
    event_add(sigterm, NULL);
    char detail[600], digest[17];
    snprintf(path, sizeof path, "%s/vigil.conf", dir);
    config_digest(path, digest);
    snprintf(detail, sizeof detail, "mqtts://%s https://%s, vigil.conf sha256 %s..., audit shipping %s",
             cfg.mqtt_listen, cfg.api_listen, digest, cfg.syslog_target[0] ? cfg.syslog_target : "off");
    audit_system(writer, "vigil.start", detail);
    vg_log_info("serve: MQTT/TLS on %s, HTTPS API on %s, data in %s", cfg.mqtt_listen,
                cfg.api_listen, dir);
    event_base_dispatch(s.base);
    vg_log_info("serve: stopped accepting; closing");
    audit_system(writer, "vigil.stop", s.stopping ? "signal" : "event loop ended");
    event_free(sigint);
    event_free(sigterm);
    event_free(s.tick);
    if (s.purge)
        event_free(s.purge);
    status = 0;
out:
    vg_api_free(api);
    struct vg_broker *b = s.broker;
    /* The writer may still notify: make it see no broker before freeing. */
    __atomic_store_n(&s.broker, NULL, __ATOMIC_RELEASE);
    vg_broker_free(b);
    pthread_mutex_lock(&alert_ctx.lock);
    alert_ctx.writer = NULL;
    pthread_mutex_unlock(&alert_ctx.lock);
    vg_writer_stop(writer); /* commits what is queued, including vigil.stop */
    if (shipper)
        vg_audit_ship_stop(shipper, 2000);
    vg_store_close(reader);
    if (s.base)
        event_base_free(s.base);
    SSL_CTX_free(mqtt_tls);
    SSL_CTX_free(api_tls);
    if (status == 0)
        vg_log_info("serve: stopped cleanly");
    return status;
}
