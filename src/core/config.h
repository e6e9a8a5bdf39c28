/* core/config — vigil.conf (INI, read with inih).
 *
 * Every limit has a safe, finite default; a file only overrides. Unknown
 * sections or keys and out-of-range values are errors (a typo in a security
 * setting must not be silently ignored).
 */
#ifndef VG_CORE_CONFIG_H
#define VG_CORE_CONFIG_H

#include <stddef.h>

#include "core/util.h"

/* [retention]: rules as written ("8867-4" = "30d"), checked at load with
 * store/retention.h's vg_retention_set; serve builds the policy from them. */
#define VG_CONFIG_RETENTION_MAX 32
struct vg_config_retention {
    int n;
    int interval_s;            /* how often the purge runs */
    char key[VG_CONFIG_RETENTION_MAX][48];
    char value[VG_CONFIG_RETENTION_MAX][16];
};

struct vg_config {
    /* [listen] */
    char mqtt_listen[128];      /* ADDR:PORT, default 127.0.0.1:8883 */
    char api_listen[128];       /* ADDR:PORT, default 127.0.0.1:8443 */
    /* [limits] */
    int max_connections;        /* concurrent MQTT connections */
    int max_packet_bytes;       /* largest MQTT packet accepted */
    int connect_timeout_s;      /* TLS handshake + CONNECT deadline */
    int max_keepalive_s;        /* longest keepalive a client may ask for */
    int max_http_body_bytes;    /* largest API request body */
    int writer_queue_max;       /* readings waiting for the store writer */
    int batch_max;              /* readings per group commit */
    /* [pki] */
    int device_cert_days;       /* validity of issued device certificates */
    /* [audit] */
    int checkpoint_records;     /* sign a checkpoint every N records... */
    int checkpoint_seconds;     /* ...or every T seconds if records came */
    int checkpoint_syslog;      /* also send checkpoints to the local
                                   syslog(3) (facility auth), 0/1 */
    char syslog_target[128];    /* HOST:PORT of a syslog-over-TLS receiver,
                                   empty = no live shipping */
    char syslog_ca[512];        /* CA file that signed the receiver's
                                   certificate (relative to the data dir) */
    /* [session] */
    int session_idle_s;         /* automatic logoff after this idle time */
    int session_lifetime_s;     /* absolute session lifetime */
    /* [login] */
    int login_max_failures;     /* per account name within login_window_s */
    int login_addr_max_failures;/* per source address within login_window_s */
    int login_window_s;
    int login_lockout_s;
    /* [access] */
    int breakglass_minutes;     /* how long a break-glass grant lasts */
    /* [log] */
    char log_level[16];         /* debug, info, warn, error */
    /* [retention] */
    struct vg_config_retention retention;
    /* [keys] — where the key-encryption key lives (crypto/kek.h) */
    char kek_mode[8];           /* "file" (default) or "pkcs11" */
    char kek_file[512];         /* relative to the data dir or absolute;
                                   empty = keys/kek (file) or keys/kek.p11
                                   (pkcs11: the token-encrypted KEK) */
    char pkcs11_module[512];    /* absolute path of the PKCS#11 module */
    char pkcs11_token[33];      /* token label (at most 32 bytes) */
    char pkcs11_pin_file[512];  /* user PIN file (0600/0400), relative to
                                   the data dir or absolute... */
    char pkcs11_pin_env[64];    /* ...or the environment variable with it */
    char pkcs11_key_label[65];  /* CKA_LABEL of the token's AES-256 key,
                                   default vigil-kek-wrap */
};

/* Fills *cfg with the built-in defaults. */
void vg_config_defaults(struct vg_config *cfg);

/* Loads 'path' over the defaults. Returns 0, or -1 with "file:line: reason"
 * in 'err'. */
int vg_config_load(const char *path, struct vg_config *cfg, char *err, size_t err_size)
    VG_WARN_UNUSED;

/* Writes the commented default vigil.conf to 'path' (O_EXCL, mode 0600). */
int vg_config_write_default(const char *path, char *err, size_t err_size) VG_WARN_UNUSED;

/* The same file, with the [keys] settings of 'keys' written as active lines
 * under the commented defaults when keys->kek_mode is "pkcs11" (`vigil
 * init --kek-pkcs11-...`). Refuses values that would not read back as
 * written: control characters, ';', '#', or leading/trailing blanks. */
int vg_config_write_default_keys(const char *path, const struct vg_config *keys, char *err,
                                 size_t err_size) VG_WARN_UNUSED;

/* Splits "ADDR:PORT" or "[V6]:PORT" into host and port strings. 0 or -1. */
int vg_config_split_addr(const char *addr, char *host, size_t host_size,
                         char *port, size_t port_size) VG_WARN_UNUSED;

#endif
