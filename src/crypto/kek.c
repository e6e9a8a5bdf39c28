/* crypto/kek — the KEK's source: a file, or a file that only a PKCS#11
 * token can decrypt. See kek.h for the hierarchy and the file format.
 *
 * Everything that writes a key file writes it whole before it appears
 * under its name (O_EXCL for a new one, a temporary file then a link for a
 * staged one) and fsyncs the file and its directory, so a crash leaves the
 * old state or the new one, never a truncated key.
 */
#include "crypto/kek.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define P11_MAGIC "VGKEKP11"
#define P11_MAGIC_LEN 8
#define P11_VERSION 1
#define P11_AAD_PURPOSE "vigil/kek/v1"
#define P11_CT_LEN (VG_KEY_BYTES + VG_P11_GCM_TAG_BYTES)
/* magic, version, label length, label, IV, ciphertext || tag */
#define P11_FILE_MAX \
    (P11_MAGIC_LEN + 2 + VG_P11_KEY_LABEL_MAX + VG_P11_GCM_IV_BYTES + P11_CT_LEN)
#define P11_FILE_MIN (P11_MAGIC_LEN + 2 + 1 + VG_P11_GCM_IV_BYTES + P11_CT_LEN)

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

/* ---- paths ------------------------------------------------------------- */

/* 'rel' under 'dir' unless it is absolute. 0 or -1 (too long). */
static int join_path(char *out, size_t out_size, const char *dir, const char *rel)
{
    int n = rel[0] == '/' ? snprintf(out, out_size, "%s", rel)
                          : snprintf(out, out_size, "%s/%s", dir, rel);
    return n < 0 || (size_t)n >= out_size ? -1 : 0;
}

static int suffixed(char *out, size_t out_size, const char *path, const char *suffix)
{
    int n = snprintf(out, out_size, "%s%s", path, suffix);
    return n < 0 || (size_t)n >= out_size ? -1 : 0;
}

/* fsync of the directory holding 'path', so a create, link, rename or
 * unlink in it survives a crash. Unlike the file data this is reported:
 * a rename that is not durable is a rotation that may silently undo. */
static int fsync_dir_of(const char *path, char *err, size_t err_size)
{
    char dir[VG_KEK_PATH_MAX];
    if (vg_strlcpy(dir, path, sizeof dir) != 0) {
        set_err(err, err_size, "path too long: %s", path);
        return -1;
    }
    char *slash = strrchr(dir, '/');
    if (!slash)
        vg_strlcpy(dir, ".", sizeof dir);
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        set_err(err, err_size, "cannot open directory %s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = fsync(dfd);
    int saved = errno;
    close(dfd);
    /* Some file systems cannot fsync a directory (EINVAL): nothing more
     * can be done there, and the data itself is synced. */
    if (rc != 0 && saved != EINVAL) {
        set_err(err, err_size, "cannot sync directory %s: %s", dir, strerror(saved));
        return -1;
    }
    return 0;
}

/* ---- config ------------------------------------------------------------ */

int vg_kek_source_from_config(const struct vg_config *cfg, const char *datadir,
                              struct vg_kek_source *out, char *err, size_t err_size)
{
    if (!cfg || !datadir || !out) {
        set_err(err, err_size, "no configuration or data directory");
        return -1;
    }
    memset(out, 0, sizeof *out);
    int p11 = !strcmp(cfg->kek_mode, "pkcs11");
    if (!p11 && strcmp(cfg->kek_mode, "file") != 0) {
        set_err(err, err_size, "vigil.conf [keys] kek: expected file or pkcs11");
        return -1;
    }
    out->kind = p11 ? VG_KEK_PKCS11 : VG_KEK_FILE;
    const char *rel = cfg->kek_file[0] ? cfg->kek_file : p11 ? "keys/kek.p11" : "keys/kek";
    if (join_path(out->path, sizeof out->path, datadir, rel) != 0) {
        set_err(err, err_size, "vigil.conf [keys] kek_file: path too long");
        return -1;
    }
    if (!p11)
        return 0;
    if (!cfg->pkcs11_module[0] || !cfg->pkcs11_token[0]) {
        set_err(err, err_size,
                "vigil.conf [keys] kek = pkcs11 needs pkcs11_module and pkcs11_token");
        return -1;
    }
    if (!cfg->pkcs11_pin_file[0] == !cfg->pkcs11_pin_env[0]) {
        set_err(err, err_size,
                "vigil.conf [keys] kek = pkcs11 needs exactly one of pkcs11_pin_file and "
                "pkcs11_pin_env");
        return -1;
    }
    if (cfg->pkcs11_module[0] != '/') {
        set_err(err, err_size, "vigil.conf [keys] pkcs11_module: expected an absolute path");
        return -1;
    }
    if (strlen(cfg->pkcs11_token) > VG_P11_TOKEN_LABEL_MAX) {
        set_err(err, err_size, "vigil.conf [keys] pkcs11_token: at most %d bytes",
                VG_P11_TOKEN_LABEL_MAX);
        return -1;
    }
    const char *label = cfg->pkcs11_key_label[0] ? cfg->pkcs11_key_label : "vigil-kek-wrap";
    if (vg_strlcpy(out->module, cfg->pkcs11_module, sizeof out->module) != 0 ||
        vg_strlcpy(out->token, cfg->pkcs11_token, sizeof out->token) != 0 ||
        vg_strlcpy(out->key_label, label, sizeof out->key_label) != 0 ||
        vg_strlcpy(out->pin_env, cfg->pkcs11_pin_env, sizeof out->pin_env) != 0 ||
        (cfg->pkcs11_pin_file[0] &&
         join_path(out->pin_file, sizeof out->pin_file, datadir, cfg->pkcs11_pin_file) != 0)) {
        set_err(err, err_size, "vigil.conf [keys]: a pkcs11 setting is too long");
        return -1;
    }
    return 0;
}

void vg_kek_source_describe(const struct vg_kek_source *src, char *buf, size_t buf_size)
{
    if (!buf || buf_size == 0)
        return;
    if (src->kind == VG_KEK_PKCS11)
        snprintf(buf, buf_size, "%s (encrypted by key '%s' of PKCS#11 token '%s')", src->path,
                 src->key_label, src->token);
    else
        snprintf(buf, buf_size, "%s", src->path);
}

/* ---- files ------------------------------------------------------------- */

/* Writes 'len' bytes to the new file 'path' (O_EXCL, 0600) and syncs it.
 * Removes it again on failure (it is ours: O_EXCL). Does not sync the
 * directory. */
static int write_new_file(const char *path, const uint8_t *data, size_t len, char *err,
                          size_t err_size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            set_err(err, err_size, "key file %s already exists (refusing to overwrite it)", path);
        else
            set_err(err, err_size, "cannot create key file %s: %s", path, strerror(errno));
        return -1;
    }
    const char *what = "write";
    int ok = vg_write_all(fd, data, len) == 0;
    if (ok && !(ok = fsync(fd) == 0))
        what = "sync";
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        what = "close";
        saved = errno;
    }
    if (!ok) {
        set_err(err, err_size, "cannot %s key file %s: %s", what, path, strerror(saved));
        (void)unlink(path);
        return -1;
    }
    return 0;
}

/* Reads a private key file of min..max bytes into 'buf' (capacity > max).
 * The same refusals as vg_kek_load: symlink, not regular, group/other
 * access, wrong size. 'missing' is set when the file does not exist. */
static int read_key_file(const char *path, uint8_t *buf, size_t cap, size_t min, size_t max,
                         size_t *len, int *missing, char *err, size_t err_size)
{
    int rc = -1;
    struct stat st;
    size_t got = 0;

    *len = 0;
    if (missing)
        *missing = 0;
    /* O_NONBLOCK: a FIFO planted at the path must not hang the start. */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT && missing)
            *missing = 1;
        if (errno == ELOOP)
            set_err(err, err_size, "key file %s is a symbolic link (refused)", path);
        else
            set_err(err, err_size, "cannot open key file %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        set_err(err, err_size, "cannot stat key file %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, err_size, "key file %s is not a regular file", path);
        goto out;
    }
    if ((st.st_mode & 077) != 0) {
        set_err(err, err_size, "key file %s is readable by group or others (chmod 600)", path);
        goto out;
    }
    if (st.st_size < (off_t)min || st.st_size > (off_t)max) {
        set_err(err, err_size, "key file %s has the wrong size (corrupt or truncated)", path);
        goto out;
    }
    /* One byte more than allowed, so growth after fstat() is caught. */
    while (got < cap && got <= max) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            set_err(err, err_size, "cannot read key file %s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    if (got < min || got > max) {
        set_err(err, err_size, "key file %s has the wrong size (corrupt or truncated)", path);
        goto out;
    }
    *len = got;
    rc = 0;
out:
    close(fd);
    if (rc != 0)
        sodium_memzero(buf, cap);
    return rc;
}

/* ---- the PIN ----------------------------------------------------------- */

/* The user PIN from the PIN file or variable, into 'pin' (caller wipes).
 * Never puts the PIN in 'err'. */
static int read_pin(const struct vg_kek_source *src, uint8_t pin[VG_P11_PIN_MAX + 2],
                    size_t *pin_len, char *err, size_t err_size)
{
    *pin_len = 0;
    if (src->pin_env[0]) {
        const char *v = getenv(src->pin_env);
        size_t n = v ? strlen(v) : 0;
        if (n == 0) {
            set_err(err, err_size, "PKCS#11 PIN: environment variable %s is not set or empty",
                    src->pin_env);
            return -1;
        }
        if (n > VG_P11_PIN_MAX) {
            set_err(err, err_size, "PKCS#11 PIN in %s is longer than %d bytes", src->pin_env,
                    VG_P11_PIN_MAX);
            return -1;
        }
        memcpy(pin, v, n);
        *pin_len = n;
        return 0;
    }
    char why[VG_KEK_PATH_MAX + 128];
    size_t n = 0;
    /* The same private-file rules as a key file: a PIN others can read is
     * a PIN others have. Room for the PIN and a "\r\n". */
    if (read_key_file(src->pin_file, pin, VG_P11_PIN_MAX + 2, 1, VG_P11_PIN_MAX + 2, &n, NULL,
                      why, sizeof why) != 0) {
        /* read_key_file says "key file"; this is the PIN file. */
        const char *tail = strstr(why, src->pin_file);
        tail = tail ? tail + strlen(src->pin_file) : why;
        set_err(err, err_size, "PKCS#11 PIN file %s%s", src->pin_file, tail);
        return -1;
    }
    if (n > 0 && pin[n - 1] == '\n')
        n--;
    if (n > 0 && pin[n - 1] == '\r')
        n--;
    if (n == 0 || n > VG_P11_PIN_MAX) {
        sodium_memzero(pin, VG_P11_PIN_MAX + 2);
        set_err(err, err_size, "PKCS#11 PIN file %s is empty or longer than %d bytes",
                src->pin_file, VG_P11_PIN_MAX);
        return -1;
    }
    *pin_len = n;
    return 0;
}

/* A logged-in session on the source's token. The PIN is wiped before this
 * returns, whatever happened. */
static int p11_begin(const struct vg_kek_source *src, int rw, struct vg_p11 **p, char *err,
                     size_t err_size)
{
    uint8_t pin[VG_P11_PIN_MAX + 2];
    size_t pin_len = 0;
    int rc = read_pin(src, pin, &pin_len, err, err_size);
    if (rc == 0)
        rc = vg_p11_open(src->module, src->token, pin, pin_len, rw, p, err, err_size);
    sodium_memzero(pin, sizeof pin);
    return rc;
}

/* ---- kek.p11 ----------------------------------------------------------- */

struct p11_blob {
    uint8_t bytes[P11_FILE_MAX];
    size_t len;
    size_t header_len; /* magic, version, label length, label */
    char label[VG_P11_KEY_LABEL_MAX + 1];
    const uint8_t *iv;
    const uint8_t *ct; /* P11_CT_LEN bytes */
};

/* Associated data: purpose, NUL, the file header. */
static size_t p11_aad(const struct p11_blob *b, uint8_t *aad, size_t cap)
{
    size_t plen = sizeof P11_AAD_PURPOSE; /* with its NUL */
    if (plen + b->header_len > cap)
        return 0;
    memcpy(aad, P11_AAD_PURPOSE, plen);
    memcpy(aad + plen, b->bytes, b->header_len);
    return plen + b->header_len;
}

/* Parses the bytes of a kek.p11 (b->bytes, b->len). 0 or -1. */
static int p11_parse(struct p11_blob *b, const char *path, char *err, size_t err_size)
{
    if (b->len < P11_FILE_MIN || memcmp(b->bytes, P11_MAGIC, P11_MAGIC_LEN) != 0) {
        set_err(err, err_size, "%s is not a vigil token-encrypted KEK (bad magic or size)", path);
        return -1;
    }
    if (b->bytes[P11_MAGIC_LEN] != P11_VERSION) {
        set_err(err, err_size, "%s has format version %u; this vigil reads version %d", path,
                b->bytes[P11_MAGIC_LEN], P11_VERSION);
        return -1;
    }
    size_t ll = b->bytes[P11_MAGIC_LEN + 1];
    if (ll == 0 || ll > VG_P11_KEY_LABEL_MAX ||
        b->len != P11_MAGIC_LEN + 2 + ll + VG_P11_GCM_IV_BYTES + P11_CT_LEN) {
        set_err(err, err_size, "%s is corrupt (label length and file size disagree)", path);
        return -1;
    }
    const uint8_t *label = b->bytes + P11_MAGIC_LEN + 2;
    for (size_t i = 0; i < ll; i++)
        if (label[i] < 0x20 || label[i] >= 0x7f) {
            set_err(err, err_size, "%s is corrupt (the key label is not printable)", path);
            return -1;
        }
    memcpy(b->label, label, ll);
    b->label[ll] = '\0';
    b->header_len = P11_MAGIC_LEN + 2 + ll;
    b->iv = b->bytes + b->header_len;
    b->ct = b->iv + VG_P11_GCM_IV_BYTES;
    return 0;
}

/* The token key for new files: found, or generated when absent. */
static int p11_key_for_writing(struct vg_p11 *p, const struct vg_kek_source *src,
                               unsigned long *h, char *err, size_t err_size)
{
    int f = vg_p11_key_find(p, src->key_label, h, err, err_size);
    if (f < 0)
        return -1;
    if (f == 0 && vg_p11_key_generate(p, src->key_label, h, err, err_size) != 0)
        return -1;
    return 0;
}

/* Decrypts a parsed blob in the token: the KEK into 'kek'. */
static int p11_decrypt(struct vg_p11 *p, const struct vg_kek_source *src,
                       const struct p11_blob *b, const char *path, uint8_t kek[VG_KEY_BYTES],
                       char *err, size_t err_size)
{
    unsigned long h = 0;
    uint8_t aad[sizeof P11_AAD_PURPOSE + P11_FILE_MAX];
    char why[256];
    int f = vg_p11_key_find(p, b->label, &h, why, sizeof why);
    if (f < 0) {
        set_err(err, err_size, "cannot decrypt %s: %s", path, why);
        return -1;
    }
    if (f == 0) {
        set_err(err, err_size,
                "cannot decrypt %s: token '%s' has no key labelled '%s' (deleted, or another "
                "token); vigil will not start with a new key over existing data",
                path, src->token, b->label);
        return -1;
    }
    size_t aad_len = p11_aad(b, aad, sizeof aad);
    size_t out_len = 0;
    if (vg_p11_gcm_decrypt(p, h, b->iv, aad, aad_len, b->ct, P11_CT_LEN, kek, VG_KEY_BYTES,
                           &out_len, why, sizeof why) != 0 ||
        out_len != VG_KEY_BYTES) {
        sodium_memzero(kek, VG_KEY_BYTES);
        set_err(err, err_size,
                "%s does not decrypt under key '%s' of token '%s' (altered, or made under "
                "another token key): %s",
                path, b->label, src->token, why);
        return -1;
    }
    return 0;
}

/* Encrypts 'kek' in the token into a new blob, and decrypts it back as a
 * check that what is about to be written will load. */
static int p11_encrypt(const struct vg_kek_source *src, const uint8_t kek[VG_KEY_BYTES],
                       struct p11_blob *b, char *err, size_t err_size)
{
    struct vg_p11 *p = NULL;
    unsigned long h = 0;
    uint8_t aad[sizeof P11_AAD_PURPOSE + P11_FILE_MAX];
    uint8_t back[VG_KEY_BYTES];
    int rc = -1;
    size_t ll = strlen(src->key_label);

    memset(b, 0, sizeof *b);
    if (ll == 0 || ll > VG_P11_KEY_LABEL_MAX) {
        set_err(err, err_size, "PKCS#11 key label must be 1 to %d bytes", VG_P11_KEY_LABEL_MAX);
        return -1;
    }
    memcpy(b->bytes, P11_MAGIC, P11_MAGIC_LEN);
    b->bytes[P11_MAGIC_LEN] = P11_VERSION;
    b->bytes[P11_MAGIC_LEN + 1] = (uint8_t)ll;
    memcpy(b->bytes + P11_MAGIC_LEN + 2, src->key_label, ll);
    b->header_len = P11_MAGIC_LEN + 2 + ll;
    uint8_t *iv = b->bytes + b->header_len;
    uint8_t *ct = iv + VG_P11_GCM_IV_BYTES;
    b->len = b->header_len + VG_P11_GCM_IV_BYTES + P11_CT_LEN;
    vg_random(iv, VG_P11_GCM_IV_BYTES);
    size_t aad_len = p11_aad(b, aad, sizeof aad);

    if (p11_begin(src, 1, &p, err, err_size) != 0 ||
        p11_key_for_writing(p, src, &h, err, err_size) != 0)
        goto out;
    size_t ct_len = 0;
    if (vg_p11_gcm_encrypt(p, h, iv, aad, aad_len, kek, VG_KEY_BYTES, ct, P11_CT_LEN, &ct_len,
                           err, err_size) != 0)
        goto out;
    if (p11_parse(b, "the new token-encrypted KEK", err, err_size) != 0 ||
        p11_decrypt(p, src, b, "the new token-encrypted KEK", back, err, err_size) != 0)
        goto out;
    if (!vg_ct_equal(back, kek, VG_KEY_BYTES)) {
        set_err(err, err_size, "token '%s' did not decrypt the KEK back to itself", src->token);
        goto out;
    }
    rc = 0;
out:
    vg_p11_close(p);
    sodium_memzero(back, sizeof back);
    return rc;
}

/* ---- the source -------------------------------------------------------- */

/* The bytes stored for 'kek' at a source: the key itself, or kek.p11. */
static int encode(const struct vg_kek_source *src, const uint8_t kek[VG_KEY_BYTES],
                  struct p11_blob *b, char *err, size_t err_size)
{
    if (src->kind == VG_KEK_PKCS11)
        return p11_encrypt(src, kek, b, err, err_size);
    memset(b, 0, sizeof *b);
    memcpy(b->bytes, kek, VG_KEY_BYTES);
    b->len = VG_KEY_BYTES;
    return 0;
}

/* Loads the KEK from 'path' in the source's format. 'missing' as in
 * read_key_file. */
static int load_from(const struct vg_kek_source *src, const char *path,
                     uint8_t kek[VG_KEY_BYTES], int *missing, char *err, size_t err_size)
{
    struct p11_blob b;
    struct vg_p11 *p = NULL;
    int rc = -1;

    int gone = 0;
    struct stat st;
    memset(&b, 0, sizeof b);
    if (missing)
        *missing = 0;
    if (lstat(path, &st) != 0 && errno == ENOENT) {
        gone = 1;
    } else if (src->kind == VG_KEK_FILE) {
        /* The file primitive, with the wording operators already know. */
        rc = vg_kek_load(path, kek, err, err_size);
        goto out;
    } else if (read_key_file(path, b.bytes, sizeof b.bytes, P11_FILE_MIN, P11_FILE_MAX, &b.len,
                             &gone, err, err_size) != 0) {
        goto out;
    }
    if (gone) {
        if (missing)
            *missing = 1;
        set_err(err, err_size,
                "the %s %s is missing; vigil will not start with a new key over existing "
                "data (restore the file from where it is kept)",
                src->kind == VG_KEK_PKCS11 ? "token-encrypted KEK" : "KEK file", path);
        goto out;
    }
    if (p11_parse(&b, path, err, err_size) != 0 || p11_begin(src, 0, &p, err, err_size) != 0 ||
        p11_decrypt(p, src, &b, path, kek, err, err_size) != 0)
        goto out;
    rc = 0;
out:
    vg_p11_close(p);
    sodium_memzero(&b, sizeof b);
    return rc;
}

int vg_kek_source_probe(const struct vg_kek_source *src, char *err, size_t err_size)
{
    struct vg_p11 *p = NULL;
    unsigned long h = 0;
    if (!src) {
        set_err(err, err_size, "no KEK source");
        return -1;
    }
    if (src->kind == VG_KEK_FILE)
        return 0;
    int rc = p11_begin(src, 0, &p, err, err_size);
    if (rc == 0 && vg_p11_key_find(p, src->key_label, &h, err, err_size) < 0)
        rc = -1;
    vg_p11_close(p);
    return rc;
}

int vg_kek_source_save(const struct vg_kek_source *src, const uint8_t kek[VG_KEY_BYTES],
                       char *err, size_t err_size)
{
    struct p11_blob b;
    struct stat st;
    if (!src || !kek) {
        set_err(err, err_size, "no KEK source");
        return -1;
    }
    /* Before the token is touched (it may generate a key): O_EXCL below
     * is what actually guarantees no overwrite. */
    if (lstat(src->path, &st) == 0) {
        set_err(err, err_size, "key file %s already exists (refusing to overwrite it)",
                src->path);
        return -1;
    }
    int rc = encode(src, kek, &b, err, err_size);
    if (rc == 0)
        rc = write_new_file(src->path, b.bytes, b.len, err, err_size);
    if (rc == 0 && fsync_dir_of(src->path, err, err_size) != 0) {
        (void)unlink(src->path);
        rc = -1;
    }
    sodium_memzero(&b, sizeof b);
    return rc;
}

int vg_kek_source_create(const struct vg_kek_source *src, uint8_t kek[VG_KEY_BYTES], char *err,
                         size_t err_size)
{
    if (!src || !kek) {
        set_err(err, err_size, "no KEK source");
        return -1;
    }
    if (src->kind == VG_KEK_FILE)
        return vg_kek_create(src->path, kek, err, err_size);
    uint8_t fresh[VG_KEY_BYTES];
    vg_random(fresh, sizeof fresh);
    int rc = vg_kek_source_save(src, fresh, err, err_size);
    if (rc == 0)
        memcpy(kek, fresh, VG_KEY_BYTES);
    sodium_memzero(fresh, sizeof fresh);
    return rc;
}

int vg_kek_source_load(const struct vg_kek_source *src, uint8_t kek[VG_KEY_BYTES], char *err,
                       size_t err_size)
{
    if (!src || !kek) {
        set_err(err, err_size, "no KEK source");
        return -1;
    }
    return load_from(src, src->path, kek, NULL, err, err_size);
}

/* ---- rotation ---------------------------------------------------------- */

int vg_kek_source_stage_next(const struct vg_kek_source *src, const uint8_t kek[VG_KEY_BYTES],
                             char *err, size_t err_size)
{
    char next[VG_KEK_PATH_MAX], tmp[VG_KEK_PATH_MAX];
    struct p11_blob b;
    struct stat st;
    int rc = -1;

    if (!src || !kek) {
        set_err(err, err_size, "no KEK source");
        return -1;
    }
    if (suffixed(next, sizeof next, src->path, ".next") != 0 ||
        suffixed(tmp, sizeof tmp, src->path, ".next.tmp") != 0) {
        set_err(err, err_size, "key file path too long: %s", src->path);
        return -1;
    }
    if (lstat(next, &st) == 0) {
        set_err(err, err_size,
                "a next KEK is already staged in %s (promote or discard it first)", next);
        return -1;
    }
    /* A temporary left by a crash is nobody's key yet. */
    if (unlink(tmp) != 0 && errno != ENOENT) {
        set_err(err, err_size, "cannot remove stale %s: %s", tmp, strerror(errno));
        return -1;
    }
    if (encode(src, kek, &b, err, err_size) != 0 ||
        write_new_file(tmp, b.bytes, b.len, err, err_size) != 0)
        goto out;
    /* link() refuses an existing target, unlike rename(): a next KEK that
     * appeared meanwhile is never replaced. */
    if (link(tmp, next) != 0) {
        set_err(err, err_size, "cannot stage %s: %s", next, strerror(errno));
        (void)unlink(tmp);
        goto out;
    }
    (void)unlink(tmp);
    if (fsync_dir_of(next, err, err_size) != 0)
        goto out;
    rc = 0;
out:
    sodium_memzero(&b, sizeof b);
    return rc;
}

int vg_kek_source_load_next(const struct vg_kek_source *src, uint8_t kek[VG_KEY_BYTES],
                            char *err, size_t err_size)
{
    char next[VG_KEK_PATH_MAX];
    int missing = 0;
    if (!src || !kek) {
        set_err(err, err_size, "no KEK source");
        return -1;
    }
    if (suffixed(next, sizeof next, src->path, ".next") != 0) {
        set_err(err, err_size, "key file path too long: %s", src->path);
        return -1;
    }
    if (load_from(src, next, kek, &missing, err, err_size) == 0)
        return VG_KEK_LOADED;
    if (missing) {
        if (err && err_size)
            err[0] = '\0';
        return VG_KEK_NONE;
    }
    return -1;
}

int vg_kek_source_promote_next(const struct vg_kek_source *src, char *err, size_t err_size)
{
    char next[VG_KEK_PATH_MAX];
    struct p11_blob b;
    int missing = 0;
    int rc = -1;

    if (!src) {
        set_err(err, err_size, "no KEK source");
        return -1;
    }
    if (suffixed(next, sizeof next, src->path, ".next") != 0) {
        set_err(err, err_size, "key file path too long: %s", src->path);
        return -1;
    }
    memset(&b, 0, sizeof b);
    size_t min = src->kind == VG_KEK_PKCS11 ? P11_FILE_MIN : VG_KEY_BYTES;
    size_t max = src->kind == VG_KEK_PKCS11 ? P11_FILE_MAX : VG_KEY_BYTES;
    if (read_key_file(next, b.bytes, sizeof b.bytes, min, max, &b.len, &missing, err,
                      err_size) != 0) {
        if (missing)
            set_err(err, err_size, "no next KEK is staged (%s does not exist)", next);
        goto out;
    }
    if (src->kind == VG_KEK_PKCS11 && p11_parse(&b, next, err, err_size) != 0)
        goto out;
    if (rename(next, src->path) != 0) {
        set_err(err, err_size, "cannot promote %s to %s: %s", next, src->path, strerror(errno));
        goto out;
    }
    if (fsync_dir_of(src->path, err, err_size) != 0)
        goto out;
    rc = 0;
out:
    sodium_memzero(&b, sizeof b);
    return rc;
}

int vg_kek_source_discard_next(const struct vg_kek_source *src, char *err, size_t err_size)
{
    char next[VG_KEK_PATH_MAX];
    struct stat st;
    if (!src) {
        set_err(err, err_size, "no KEK source");
        return -1;
    }
    if (suffixed(next, sizeof next, src->path, ".next") != 0) {
        set_err(err, err_size, "key file path too long: %s", src->path);
        return -1;
    }
    if (lstat(next, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        set_err(err, err_size, "cannot stat %s: %s", next, strerror(errno));
        return -1;
    }
    if (src->kind == VG_KEK_FILE && S_ISREG(st.st_mode)) {
        /* A clear KEK: overwrite before unlinking (best effort). */
        int fd = open(next, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            uint8_t zero[VG_KEY_BYTES] = {0};
            if (vg_write_all(fd, zero, sizeof zero) == 0)
                (void)fsync(fd);
            close(fd);
        }
    }
    if (unlink(next) != 0) {
        set_err(err, err_size, "cannot remove %s: %s", next, strerror(errno));
        return -1;
    }
    return fsync_dir_of(next, err, err_size);
}
