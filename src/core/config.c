#include "core/config.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/retention.h"

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
    cfg->retention.interval_s = 3600;
    vg_strlcpy(cfg->kek_mode, "file", sizeof cfg->kek_mode);
    vg_strlcpy(cfg->pkcs11_key_label, "vigil-kek-wrap", sizeof cfg->pkcs11_key_label);
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

/* A [keys] string: fits, has no control characters (it ends up in paths,
 * token labels and messages). */
static int keys_string(struct load_ctx *c, const char *name, const char *value, char *dst,
                       size_t dst_size)
{
    for (const char *q = value; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f) {
            snprintf(c->err, c->err_size, "[keys] %s: control characters are not allowed", name);
            return 0;
        }
    if (vg_strlcpy(dst, value, dst_size) != 0) {
        snprintf(c->err, c->err_size, "[keys] %s: longer than %zu bytes", name, dst_size - 1);
        return 0;
    }
    return 1;
}

static int env_name_valid(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return 0;
    return 1;
}

static int on_keys(struct load_ctx *c, const char *name, const char *value)
{
    struct vg_config *cfg = c->cfg;
    if (!strcmp(name, "kek")) {
        if (strcmp(value, "file") && strcmp(value, "pkcs11")) {
            snprintf(c->err, c->err_size, "[keys] kek: expected file or pkcs11");
            return 0;
        }
        vg_strlcpy(cfg->kek_mode, value, sizeof cfg->kek_mode);
        return 1;
    }
    if (!strcmp(name, "kek_file"))
        return keys_string(c, name, value, cfg->kek_file, sizeof cfg->kek_file);
    if (!strcmp(name, "pkcs11_module")) {
        /* A relative module path would load whatever library sits in the
         * working directory at start. */
        if (value[0] && value[0] != '/') {
            snprintf(c->err, c->err_size, "[keys] pkcs11_module: expected an absolute path");
            return 0;
        }
        return keys_string(c, name, value, cfg->pkcs11_module, sizeof cfg->pkcs11_module);
    }
    if (!strcmp(name, "pkcs11_token"))
        return keys_string(c, name, value, cfg->pkcs11_token, sizeof cfg->pkcs11_token);
    if (!strcmp(name, "pkcs11_pin_file"))
        return keys_string(c, name, value, cfg->pkcs11_pin_file, sizeof cfg->pkcs11_pin_file);
    if (!strcmp(name, "pkcs11_pin_env")) {
        if (value[0] && !env_name_valid(value)) {
            snprintf(c->err, c->err_size,
                     "[keys] pkcs11_pin_env: expected an environment variable name");
            return 0;
        }
        return keys_string(c, name, value, cfg->pkcs11_pin_env, sizeof cfg->pkcs11_pin_env);
    }
    if (!strcmp(name, "pkcs11_key_label")) {
        if (!value[0]) {
            snprintf(c->err, c->err_size, "[keys] pkcs11_key_label: must not be empty");
            return 0;
        }
        return keys_string(c, name, value, cfg->pkcs11_key_label, sizeof cfg->pkcs11_key_label);
    }
    snprintf(c->err, c->err_size, "unknown setting [keys] %s", name);
    return 0;
}

/* [retention]: interval, or a rule checked now so a typo is an error at
 * load, with its line, not a silent "keep". */
static int on_retention(struct load_ctx *c, const char *name, const char *value)
{
    struct vg_config_retention *r = &c->cfg->retention;
    if (!strcmp(name, "interval")) {
        char *end = NULL;
        long v = strtol(value, &end, 10);
        if (!*value || *end || v < 60 || v > 86400) {
            snprintf(c->err, c->err_size, "[retention] interval: expected seconds, 60 to 86400");
            return 0;
        }
        r->interval_s = (int)v;
        return 1;
    }
    struct vg_retention check = {0};
    char why[160];
    if (vg_retention_set(&check, name, value, why, sizeof why) != 0) {
        snprintf(c->err, c->err_size, "[retention] %s", why);
        return 0;
    }
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->key[i], name)) {
            vg_strlcpy(r->value[i], value, sizeof r->value[i]);
            return 1;
        }
    if (r->n == VG_CONFIG_RETENTION_MAX) {
        snprintf(c->err, c->err_size, "[retention] too many rules (at most %d)",
                 VG_CONFIG_RETENTION_MAX);
        return 0;
    }
    vg_strlcpy(r->key[r->n], name, sizeof r->key[r->n]);
    vg_strlcpy(r->value[r->n], value, sizeof r->value[r->n]);
    r->n++;
    return 1;
}

static int on_kv(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *c = user;
    if (!strcmp(section, "keys"))
        return on_keys(c, name, value);
    if (!strcmp(section, "retention"))
        return on_retention(c, name, value);
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

/* The default vigil.conf: default_conf, then [keys] (default_keys and any
 * active [keys] lines), then default_tail. */
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
    "#device_cert_days = 397\n";

static const char default_keys[] =
    "\n"
    "[keys]\n"
    "# The key-encryption key (KEK) wraps every patient's data key. It never\n"
    "# goes into the database or a backup; losing it loses the readings.\n"
    "# kek = file: the KEK is kek_file (default keys/kek), 32 bytes, 0600.\n"
    "# kek = pkcs11: the KEK is kept encrypted (AES-256-GCM) by a key that\n"
    "# never leaves a PKCS#11 token (an HSM, a smart card, SoftHSM2). kek_file\n"
    "# (default keys/kek.p11) holds only that ciphertext: without the token\n"
    "# and its PIN it opens nothing. The PIN is read from pkcs11_pin_file\n"
    "# (mode 0600 or 0400) or from the environment variable pkcs11_pin_env.\n"
    "# Relative paths are relative to this directory. The module, token and\n"
    "# PIN lines below are examples: they have no default.\n"
    "# `vigil init DIR --kek-pkcs11-...` writes them; see `vigil init --help`.\n"
    "#kek = file\n"
    "#kek_file = keys/kek\n"
    "#pkcs11_module = /usr/lib/softhsm/libsofthsm2.so\n"
    "#pkcs11_token = vigil\n"
    "#pkcs11_pin_file = /etc/vigil/token.pin\n"
    "#pkcs11_pin_env =\n"
    "#pkcs11_key_label = vigil-kek-wrap\n";

static const char default_tail[] =
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
    "#level = info\n"
    "\n"
    "[retention]\n"
    "# How long readings are kept: 'keep' (forever, the default) or a number\n"
    "# with h, d or y. Per LOINC code, per category (vital-signs, laboratory)\n"
    "# or default; the most specific rule wins. A purge\n"
    "# runs every 'interval' seconds and audits each deletion.\n"
    "#default = keep\n"
    "#vital-signs = 2y\n"
    "#8867-4 = 400d\n"
    "#interval = 3600\n";

/* A value written into vigil.conf must read back unchanged through inih:
 * no line breaks or other control characters, no ';' (inline comment), no
 * '#', no blanks at either end (stripped on reading). */
static int ini_value_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t')
        return 0;
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || *v == 0x7f || *v == ';' || *v == '#')
            return 0;
    return 1;
}

static int write_conf(const char *path, const char *keys_active, char *err, size_t err_size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, err_size, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    int ok = vg_write_all(fd, default_conf, sizeof default_conf - 1) == 0 &&
             vg_write_all(fd, default_keys, sizeof default_keys - 1) == 0 &&
             vg_write_all(fd, keys_active, strlen(keys_active)) == 0 &&
             vg_write_all(fd, default_tail, sizeof default_tail - 1) == 0 && fsync(fd) == 0;
    int saved = errno;
    close(fd);
    if (!ok) {
        snprintf(err, err_size, "%s: cannot write: %s", path, strerror(saved));
        (void)unlink(path); /* we created it (O_EXCL): no half configuration */
        return -1;
    }
    return 0;
}

int vg_config_write_default(const char *path, char *err, size_t err_size)
{
    return write_conf(path, "", err, err_size);
}

int vg_config_write_default_keys(const char *path, const struct vg_config *keys, char *err,
                                 size_t err_size)
{
    char active[2048];
    size_t len = 0;
    if (!keys || strcmp(keys->kek_mode, "pkcs11") != 0)
        return write_conf(path, "", err, err_size);
    const struct {
        const char *name, *value;
    } lines[] = {
        {"kek", keys->kek_mode},
        {"kek_file", keys->kek_file},
        {"pkcs11_module", keys->pkcs11_module},
        {"pkcs11_token", keys->pkcs11_token},
        {"pkcs11_pin_file", keys->pkcs11_pin_file},
        {"pkcs11_pin_env", keys->pkcs11_pin_env},
        {"pkcs11_key_label", keys->pkcs11_key_label},
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        if (!lines[i].value[0])
            continue; /* unset: the default applies */
        if (!ini_value_ok(lines[i].value)) {
            snprintf(err, err_size,
                     "[keys] %s: a value with control characters, ';', '#' or blanks at "
                     "either end cannot be written to vigil.conf",
                     lines[i].name);
            return -1;
        }
        int w = snprintf(active + len, sizeof active - len, "%s = %s\n", lines[i].name,
                         lines[i].value);
        if (w < 0 || (size_t)w >= sizeof active - len) {
            snprintf(err, err_size, "[keys] settings too long");
            return -1;
        }
        len += (size_t)w;
    }
    return write_conf(path, active, err, err_size);
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
