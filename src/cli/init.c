/* vigil init DIR — a new data directory with secure defaults. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "cli/cli.h"
#include "core/config.h"
#include "crypto/ca.h"
#include "crypto/crypto.h"
#include "crypto/kek.h"
#include "store/store.h"

static const char init_help[] =
    "Usage: vigil init DIR [--kek-pkcs11-module PATH --kek-pkcs11-token LABEL\n"
    "                       (--kek-pkcs11-pin-file FILE | --kek-pkcs11-pin-env VAR)\n"
    "                       [--kek-pkcs11-key-label LABEL]]\n"
    "\n"
    "Creates DIR (mode 0700) with:\n"
    "  vigil.conf          commented configuration (listeners, limits, keys)\n"
    "  pki/ca.pem, ca.key  vigil's certificate authority (EC P-256)\n"
    "  pki/server.pem/.key the TLS server certificate (localhost, 127.0.0.1, host name)\n"
    "  keys/kek            the key-encryption key (32 random bytes, 0600)\n"
    "  keys/audit.key/.pub the Ed25519 key that signs audit checkpoints\n"
    "  vigil.db            the SQLite database (WAL)\n"
    "  admin.token         the first admin's API token (0600)\n"
    "Refuses a DIR that exists and is not empty. Never prints a key.\n"
    "\n"
    "With --kek-pkcs11-*, the key-encryption key is kept by a PKCS#11 token\n"
    "instead (an HSM, a smart card, SoftHSM2): the token's AES-256 key LABEL\n"
    "(default vigil-kek-wrap; generated in the token if absent, never\n"
    "extractable) encrypts the KEK, and DIR holds only keys/kek.p11, that\n"
    "ciphertext, instead of keys/kek. vigil.conf's [keys] section records the\n"
    "module (absolute path of the .so), the token label and where the user\n"
    "PIN is read from: a file of mode 0600 or 0400, or an environment\n"
    "variable. Without the token and its PIN the data cannot be opened.\n";

/* The [keys] settings from the --kek-pkcs11-* options, into 'cfg'. 0, or
 * -1 after saying why on stderr. */
static int keys_from_args(struct vg_config *cfg, const char *module, const char *token,
                          const char *pin_file, const char *pin_env, const char *key_label)
{
    if (!module && !token && !pin_file && !pin_env && !key_label)
        return 0; /* kek = file, the default */
    if (!module || !token || !pin_file == !pin_env) {
        fprintf(stderr, "vigil init: a PKCS#11 KEK needs --kek-pkcs11-module, "
                        "--kek-pkcs11-token and one of --kek-pkcs11-pin-file or "
                        "--kek-pkcs11-pin-env\n");
        return -1;
    }
    char abs[PATH_MAX];
    vg_strlcpy(cfg->kek_mode, "pkcs11", sizeof cfg->kek_mode);
    if (module[0] != '/') {
        fprintf(stderr, "vigil init: --kek-pkcs11-module needs an absolute path\n");
        return -1;
    }
    if (vg_strlcpy(cfg->pkcs11_module, module, sizeof cfg->pkcs11_module) != 0 ||
        vg_strlcpy(cfg->pkcs11_token, token, sizeof cfg->pkcs11_token) != 0 || !token[0]) {
        fprintf(stderr, "vigil init: module path too long, or token label empty or longer "
                        "than 32 bytes\n");
        return -1;
    }
    if (pin_file) {
        /* vigil.conf reads relative paths against the data directory; the
         * user gave one relative to here. Record where it really is. */
        if (!realpath(pin_file, abs)) {
            fprintf(stderr, "vigil init: PIN file %s: %s\n", pin_file, strerror(errno));
            return -1;
        }
        if (vg_strlcpy(cfg->pkcs11_pin_file, abs, sizeof cfg->pkcs11_pin_file) != 0) {
            fprintf(stderr, "vigil init: PIN file path too long\n");
            return -1;
        }
    }
    if (pin_env && vg_strlcpy(cfg->pkcs11_pin_env, pin_env, sizeof cfg->pkcs11_pin_env) != 0) {
        fprintf(stderr, "vigil init: --kek-pkcs11-pin-env name too long\n");
        return -1;
    }
    if (key_label &&
        (!key_label[0] ||
         vg_strlcpy(cfg->pkcs11_key_label, key_label, sizeof cfg->pkcs11_key_label) != 0)) {
        fprintf(stderr, "vigil init: --kek-pkcs11-key-label must be 1 to %d bytes\n",
                VG_P11_KEY_LABEL_MAX);
        return -1;
    }
    return 0;
}

static int dir_usable(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 1 : -1;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = 0;
    closedir(d);
    return empty ? 1 : 0;
}

static int write_secret_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    close(fd);
    return ok ? 0 : -1;
}

int vg_cli_init(int argc, char **argv)
{
    const char *dir = NULL, *module = NULL, *token_label = NULL, *pin_file = NULL,
               *pin_env = NULL, *key_label = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(init_help, stdout);
            return 0;
        } else if (!strcmp(a, "--kek-pkcs11-module") && has_value) {
            module = argv[++i];
        } else if (!strcmp(a, "--kek-pkcs11-token") && has_value) {
            token_label = argv[++i];
        } else if (!strcmp(a, "--kek-pkcs11-pin-file") && has_value) {
            pin_file = argv[++i];
        } else if (!strcmp(a, "--kek-pkcs11-pin-env") && has_value) {
            pin_env = argv[++i];
        } else if (!strcmp(a, "--kek-pkcs11-key-label") && has_value) {
            key_label = argv[++i];
        } else if (a[0] != '-' && !dir) {
            dir = a;
        } else {
            fprintf(stderr, "vigil init: unexpected argument '%s'\n\n%s", a, init_help);
            return 2;
        }
    }
    if (!dir) {
        fputs(init_help, stderr);
        return 2;
    }
    char err[512], path[PATH_MAX], p2[PATH_MAX], p3[PATH_MAX], p4[PATH_MAX];
    struct vg_config keys_cfg;
    struct vg_kek_source ks;
    vg_config_defaults(&keys_cfg);
    if (keys_from_args(&keys_cfg, module, token_label, pin_file, pin_env, key_label) != 0)
        return 2;
    if (vg_kek_source_from_config(&keys_cfg, dir, &ks, err, sizeof err) != 0) {
        fprintf(stderr, "vigil init: %s\n", err);
        return 2;
    }
    int usable = dir_usable(dir);
    if (usable <= 0) {
        fprintf(stderr, "vigil init: %s %s; refusing to touch it\n", dir,
                usable == 0 ? "exists and is not empty" : "cannot be read");
        return 1;
    }
    /* A wrong PIN, a missing token or an unusable token key stops here,
     * before anything is created. */
    if (vg_kek_source_probe(&ks, err, sizeof err) != 0) {
        fprintf(stderr, "vigil init: %s\n", err);
        return 1;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "vigil init: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (chmod(dir, 0700) != 0) {
        fprintf(stderr, "vigil init: chmod %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (vg_crypto_init() != 0) {
        fprintf(stderr, "vigil init: cannot initialise libsodium\n");
        return 1;
    }
    snprintf(path, sizeof path, "%s/pki", dir);
    snprintf(p2, sizeof p2, "%s/keys", dir);
    if (mkdir(path, 0700) != 0 || mkdir(p2, 0700) != 0) {
        fprintf(stderr, "vigil init: cannot create %s/pki or keys: %s\n", dir, strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "%s/vigil.conf", dir);
    if (vg_config_write_default_keys(path, &keys_cfg, err, sizeof err) != 0) {
        fprintf(stderr, "vigil init: %s\n", err);
        return 1;
    }
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0)
        vg_strlcpy(host, "localhost", sizeof host);
    char ca_name[300];
    snprintf(ca_name, sizeof ca_name, "vigil CA %s", host);
    snprintf(path, sizeof path, "%s/pki/ca.pem", dir);
    snprintf(p2, sizeof p2, "%s/pki/ca.key", dir);
    snprintf(p3, sizeof p3, "%s/pki/server.pem", dir);
    snprintf(p4, sizeof p4, "%s/pki/server.key", dir);
    if (vg_ca_create(path, p2, ca_name, 3650, err, sizeof err) != 0 ||
        vg_ca_issue_server(path, p2, p3, p4, host, 825, err, sizeof err) != 0) {
        fprintf(stderr, "vigil init: %s\n", err);
        return 1;
    }

    uint8_t kek[VG_KEY_BYTES];
    if (vg_kek_source_create(&ks, kek, err, sizeof err) != 0) {
        fprintf(stderr, "vigil init: %s\n", err);
        return 1;
    }
    snprintf(path, sizeof path, "%s/keys/audit.key", dir);
    snprintf(p2, sizeof p2, "%s/keys/audit.pub", dir);
    snprintf(p3, sizeof p3, "%s/audit", dir);
    if (vg_audit_key_create(path, p2, err, sizeof err) != 0 || mkdir(p3, 0700) != 0) {
        fprintf(stderr, "vigil init: %s\n", err[0] ? err : "cannot create the audit directory");
        sodium_memzero(kek, sizeof kek);
        return 1;
    }
    snprintf(path, sizeof path, "%s/vigil.db", dir);
    struct vg_store *st = NULL;
    int rc = vg_store_create(path, kek, err, sizeof err);
    if (rc == VG_STORE_OK)
        rc = vg_store_open(path, kek, &st, err, sizeof err);
    sodium_memzero(kek, sizeof kek);
    if (rc != VG_STORE_OK) {
        fprintf(stderr, "vigil init: %s\n", err);
        return 1;
    }

    char token[VG_TOKEN_MAX];
    uint8_t hash[VG_SHA256_BYTES];
    vg_token_new(token);
    vg_token_hash(token, strlen(token), hash);
    int64_t now = vg_now_ms();
    struct vg_audit_event e1 = {now, "system", "vigil.init", "", "success",
                                "data directory created", ""};
    struct vg_audit_event e2 = {now, "system", "principal.create", "user:admin", "success",
                                "first admin account with an API token", ""};
    rc = vg_store_begin(st);
    if (!rc)
        rc = vg_store_principal_add(st, "admin", "admin", now);
    if (!rc)
        rc = vg_store_token_add(st, "admin", hash, now, 0);
    if (!rc)
        rc = vg_audit_append(st, &e1);
    if (!rc)
        rc = vg_audit_append(st, &e2);
    if (!rc)
        rc = vg_store_commit(st);
    if (rc) {
        fprintf(stderr, "vigil init: cannot create the admin account: %s\n", vg_store_errmsg(st));
        vg_store_rollback(st);
        vg_store_close(st);
        return 1;
    }
    int version = vg_store_schema_version(st);
    vg_store_close(st);
    snprintf(path, sizeof path, "%s/admin.token", dir);
    rc = write_secret_file(path, token);
    sodium_memzero(token, sizeof token);
    if (rc != 0) {
        fprintf(stderr, "vigil init: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    char kek_line[VG_KEK_PATH_MAX + 256];
    if (ks.kind == VG_KEK_PKCS11)
        snprintf(kek_line, sizeof kek_line,
                 "  %s  key-encryption key, encrypted by key '%s' of PKCS#11 token '%s'\n"
                 "      (opens nothing without the token and its PIN; back it up apart from "
                 "the database)\n",
                 ks.path, ks.key_label, ks.token);
    else
        snprintf(kek_line, sizeof kek_line,
                 "  %s          key-encryption key (0600; back it up apart from the database)\n",
                 ks.path);
    printf("vigil: initialised %s\n"
           "  %s/vigil.conf        configuration (listeners, limits, keys)\n"
           "  %s/pki/ca.pem        certificate authority (key: pki/ca.key, 0600)\n"
           "  %s/pki/server.pem    TLS server certificate for localhost, 127.0.0.1, %s\n"
           "%s"
           "  %s/keys/audit.key    audit signing key (0600; audit.pub is what verifiers trust)\n"
           "  %s/vigil.db          database, schema version %d\n"
           "  %s/admin.token       API token of user 'admin' (0600)\n"
           "Next: vigil serve %s\n",
           dir, dir, dir, dir, host, kek_line, dir, dir, version, dir, dir);
    return 0;
}
