#include "core/config.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void vg_config_defaults(struct vg_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    vg_strlcpy(cfg->mqtt_listen, "127.0.0.1:8883", sizeof cfg->mqtt_listen);
    vg_strlcpy(cfg->api_listen, "127.0.0.1:8443", sizeof cfg->api_listen);
    cfg->max_connections = 10000;
    cfg->max_packet_bytes = 65536;
    cfg->connect_timeout_s = 10;
    cfg->max_keepalive_s = 3600;
    cfg->max_http_body_bytes = 1 << 20;
    cfg->writer_queue_max = 100000;
    cfg->batch_max = 1000;
    cfg->device_cert_days = 397;
    cfg->session_idle_s = 900;
    cfg->session_lifetime_s = 43200;
    cfg->login_max_failures = 5;
    cfg->login_addr_max_failures = 20;
    cfg->login_window_s = 900;
    cfg->login_lockout_s = 900;
    cfg->breakglass_minutes = 60;
    cfg->checkpoint_records = 1000;
    cfg->checkpoint_seconds = 60;
    vg_strlcpy(cfg->log_level, "info", sizeof cfg->log_level);
}

struct load_ctx {
    struct vg_config *cfg;
    char *err;
    size_t err_size;
};

struct int_key {
    const char *section, *name;
    size_t offset;
    long min, max;
};

static const struct int_key int_keys[] = {
    {"limits", "max_connections", offsetof(struct vg_config, max_connections), 1, 1000000},
    {"limits", "max_packet_bytes", offsetof(struct vg_config, max_packet_bytes), 128, 268435455},
    {"limits", "connect_timeout_s", offsetof(struct vg_config, connect_timeout_s), 1, 300},
    {"limits", "max_keepalive_s", offsetof(struct vg_config, max_keepalive_s), 1, 65535},
    {"limits", "max_http_body_bytes", offsetof(struct vg_config, max_http_body_bytes), 1024, 1 << 28},
    {"limits", "writer_queue_max", offsetof(struct vg_config, writer_queue_max), 1, 10000000},
    {"limits", "batch_max", offsetof(struct vg_config, batch_max), 1, 100000},
    {"pki", "device_cert_days", offsetof(struct vg_config, device_cert_days), 1, 3650},
    {"session", "idle_timeout_s", offsetof(struct vg_config, session_idle_s), 1, 86400},
    {"session", "lifetime_s", offsetof(struct vg_config, session_lifetime_s), 1, 604800},
    {"login", "max_failures", offsetof(struct vg_config, login_max_failures), 1, 100},
    {"login", "address_max_failures", offsetof(struct vg_config, login_addr_max_failures), 1, 10000},
    {"login", "window_s", offsetof(struct vg_config, login_window_s), 10, 86400},
    {"login", "lockout_s", offsetof(struct vg_config, login_lockout_s), 1, 86400},
    {"access", "breakglass_minutes", offsetof(struct vg_config, breakglass_minutes), 1, 1440},
    {"audit", "checkpoint_records", offsetof(struct vg_config, checkpoint_records), 1, 10000000},
    {"audit", "checkpoint_seconds", offsetof(struct vg_config, checkpoint_seconds), 1, 86400},
};

static int on_kv(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *c = user;
    if (!strcmp(section, "listen") && (!strcmp(name, "mqtt") || !strcmp(name, "api"))) {
        char host[128], port[16];
        if (vg_config_split_addr(value, host, sizeof host, port, sizeof port) != 0) {
            snprintf(c->err, c->err_size, "[listen] %s: expected ADDR:PORT", name);
            return 0;
        }
        vg_strlcpy(!strcmp(name, "mqtt") ? c->cfg->mqtt_listen : c->cfg->api_listen, value,
                   sizeof c->cfg->mqtt_listen);
        return 1;
    }
    if (!strcmp(section, "audit") && !strcmp(name, "syslog")) {
        char host[128], port[16];
        if (value[0] && vg_config_split_addr(value, host, sizeof host, port, sizeof port) != 0) {
            snprintf(c->err, c->err_size, "[audit] syslog: expected HOST:PORT or nothing");
            return 0;
        }
        vg_strlcpy(c->cfg->syslog_target, value, sizeof c->cfg->syslog_target);
        return 1;
    }
    if (!strcmp(section, "audit") && !strcmp(name, "checkpoint_syslog")) {
        if (strcmp(value, "on") && strcmp(value, "off")) {
            snprintf(c->err, c->err_size, "[audit] checkpoint_syslog: expected on or off");
            return 0;
        }
        c->cfg->checkpoint_syslog = !strcmp(value, "on");
        return 1;
    }
    if (!strcmp(section, "audit") && !strcmp(name, "syslog_ca")) {
        if (vg_strlcpy(c->cfg->syslog_ca, value, sizeof c->cfg->syslog_ca) != 0) {
            snprintf(c->err, c->err_size, "[audit] syslog_ca: path too long");
            return 0;
        }
        return 1;
    }
    if (!strcmp(section, "log") && !strcmp(name, "level")) {
        if (strcmp(value, "debug") && strcmp(value, "info") && strcmp(value, "warn") &&
            strcmp(value, "error")) {
            snprintf(c->err, c->err_size, "[log] level: expected debug, info, warn or error");
            return 0;
        }
        vg_strlcpy(c->cfg->log_level, value, sizeof c->cfg->log_level);
        return 1;
    }
    for (size_t i = 0; i < sizeof int_keys / sizeof int_keys[0]; i++) {
        const struct int_key *k = &int_keys[i];
        if (strcmp(section, k->section) || strcmp(name, k->name))
            continue;
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < k->min || v > k->max) {
            snprintf(c->err, c->err_size, "[%s] %s: expected an integer in %ld..%ld",
                     section, name, k->min, k->max);
            return 0;
        }
        *(int *)((char *)c->cfg + k->offset) = (int)v;
        return 1;
    }
    snprintf(c->err, c->err_size, "unknown setting [%s] %s", section, name);
    return 0;
}

int vg_config_load(const char *path, struct vg_config *cfg, char *err, size_t err_size)
{
    char reason[192] = "";
    struct load_ctx c = {cfg, reason, sizeof reason};
    int rc = ini_parse(path, on_kv, &c);
    if (rc == -1) {
        snprintf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (rc != 0) {
        snprintf(err, err_size, "%s:%d: %s", path, rc, reason[0] ? reason : "syntax error");
        return -1;
    }
    return 0;
}

static const char default_conf[] =
    "# vigil.conf — configuration of one vigil data directory.\n"
    "# Every setting below shows its default; uncomment to change it.\n"
    "# Unknown settings are errors, so a typo cannot silently weaken security.\n"
    "\n"
    "[listen]\n"
    "# MQTT over TLS 1.3 with client certificates, for devices.\n"
    "# There is no plaintext listener and no anonymous access.\n"
    "mqtt = 127.0.0.1:8883\n"
    "# HTTPS (TLS 1.3) for the REST and FHIR API and the CLI.\n"
    "api = 127.0.0.1:8443\n"
    "\n"
    "[limits]\n"
    "# Concurrent MQTT connections; further ones are refused.\n"
    "#max_connections = 10000\n"
    "# Largest MQTT packet accepted, in bytes.\n"
    "#max_packet_bytes = 65536\n"
    "# Seconds a client has to finish the TLS handshake and send CONNECT.\n"
    "#connect_timeout_s = 10\n"
    "# Longest MQTT keepalive a client may ask for, in seconds.\n"
    "#max_keepalive_s = 3600\n"
    "# Largest HTTP request body, in bytes.\n"
    "#max_http_body_bytes = 1048576\n"
    "# Readings waiting for the store writer; beyond it vigil stops reading\n"
    "# from device sockets until the writer catches up.\n"
    "#writer_queue_max = 100000\n"
    "# Most readings committed in one transaction (group commit).\n"
    "#batch_max = 1000\n"
    "\n"
    "[pki]\n"
    "# Validity of device certificates issued by `vigil device enroll`, days.\n"
    "#device_cert_days = 397\n"
    "\n"
    "[session]\n"
    "# People log in with a password and an authenticator code. A session\n"
    "# ends after idle_timeout_s without use and after lifetime_s in all.\n"
    "#idle_timeout_s = 900\n"
    "#lifetime_s = 43200\n"
    "\n"
    "[login]\n"
    "# max_failures failed logins for one account name, or\n"
    "# address_max_failures from one address, within window_s lock that name\n"
    "# or address for lockout_s seconds and raise an alert.\n"
    "#max_failures = 5\n"
    "#address_max_failures = 20\n"
    "#window_s = 900\n"
    "#lockout_s = 900\n"
    "\n"
    "[access]\n"
    "# A clinician may open a patient outside their care team for this long\n"
    "# by giving a reason (break-glass); every access is audited.\n"
    "#breakglass_minutes = 60\n"
    "\n"
    "[audit]\n"
    "# The audit trail is hash-chained; a checkpoint of its head is signed\n"
    "# with keys/audit.key every checkpoint_records records or\n"
    "# checkpoint_seconds seconds, stored in the database and appended to\n"
    "# audit/checkpoints.log.\n"
    "#checkpoint_records = 1000\n"
    "#checkpoint_seconds = 60\n"
    "# Also send each checkpoint to the local syslog (facility auth), so a\n"
    "# copy lands wherever the host forwards its logs.\n"
    "#checkpoint_syslog = off\n"
    "# Ship every record live to a SIEM as RFC 5424 syslog over TLS\n"
    "# (RFC 5425), e.g. syslog = siem.example.org:6514, verified against\n"
    "# syslog_ca (a path relative to this directory, or absolute).\n"
    "#syslog =\n"
    "#syslog_ca =\n"
    "\n"
    "[log]\n"
    "# debug, info, warn or error. Logs never contain readings or secrets.\n"
    "#level = info\n";

int vg_config_write_default(const char *path, char *err, size_t err_size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, err_size, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    size_t len = sizeof default_conf - 1;
    ssize_t w = write(fd, default_conf, len);
    int ok = w == (ssize_t)len && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        snprintf(err, err_size, "%s: cannot write: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int vg_config_split_addr(const char *addr, char *host, size_t host_size, char *port,
                         size_t port_size)
{
    const char *colon;
    const char *h = addr;
    size_t hlen;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return -1;
        h = addr + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return -1;
        hlen = (size_t)(colon - addr);
    }
    if (hlen == 0 || hlen >= host_size)
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || p < 1 || p > 65535)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, port_size, "%ld", p);
    return 0;
}
