/* crypto — AEAD sealing, hashing, random tokens and key files.
 *
 * AEAD is libsodium's XChaCha20-Poly1305 (IETF): the 192-bit nonce is drawn
 * at random for every seal, so no counter state has to survive restarts.
 * Key files are raw 32-byte blobs; loading one refuses anything that is not
 * a private regular file of exactly the right size, because a key that
 * other users can read is already compromised and a short one is corrupt.
 */
#include "crypto/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

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

int vg_crypto_init(void)
{
    /* sodium_init: 0 = initialised now, 1 = already initialised, -1 = error. */
    return sodium_init() < 0 ? -1 : 0;
}

int vg_aead_seal(const uint8_t key[VG_KEY_BYTES], const uint8_t *ad, size_t ad_len,
                 const uint8_t *pt, size_t pt_len, uint8_t *out, size_t *out_len)
{
    unsigned long long clen = 0;

    if (!key || !out || !out_len || (!pt && pt_len > 0) || (!ad && ad_len > 0))
        return -1;
    if (pt_len > crypto_aead_xchacha20poly1305_ietf_MESSAGEBYTES_MAX ||
        pt_len > SIZE_MAX - VG_AEAD_OVERHEAD)
        return -1;

    uint8_t *nonce = out;
    randombytes_buf(nonce, VG_AEAD_NONCE_BYTES);
    if (crypto_aead_xchacha20poly1305_ietf_encrypt(out + VG_AEAD_NONCE_BYTES, &clen, pt,
                                                   pt_len, ad, ad_len, NULL, nonce,
                                                   key) != 0)
        return -1;
    *out_len = VG_AEAD_NONCE_BYTES + (size_t)clen;
    return 0;
}

int vg_aead_open(const uint8_t key[VG_KEY_BYTES], const uint8_t *ad, size_t ad_len,
                 const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len)
{
    unsigned long long mlen = 0;

    if (out_len)
        *out_len = 0;
    if (!key || !in || !out || !out_len || (!ad && ad_len > 0))
        return -1;
    if (in_len < VG_AEAD_OVERHEAD)
        return -1;

    const uint8_t *nonce = in;
    size_t ct_len = in_len - VG_AEAD_NONCE_BYTES;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL, in + VG_AEAD_NONCE_BYTES,
                                                   ct_len, ad, ad_len, nonce, key) != 0) {
        /* libsodium already clears 'out' on a bad tag; be explicit anyway so
         * the contract does not depend on a library detail. */
        sodium_memzero(out, in_len - VG_AEAD_OVERHEAD);
        return -1;
    }
    *out_len = (size_t)mlen;
    return 0;
}

void vg_sha256(const uint8_t *data, size_t len, uint8_t out[VG_SHA256_BYTES])
{
    static const uint8_t empty[1] = {0};
    crypto_hash_sha256(out, data ? data : empty, data ? len : 0);
}

void vg_random(uint8_t *buf, size_t len)
{
    randombytes_buf(buf, len);
}

void vg_hex(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

#define TOKEN_PREFIX "vgt_"
#define TOKEN_RANDOM_BYTES 32

void vg_token_new(char out[VG_TOKEN_MAX])
{
    uint8_t raw[TOKEN_RANDOM_BYTES];
    size_t prefix_len = sizeof TOKEN_PREFIX - 1;

    _Static_assert(sizeof TOKEN_PREFIX - 1 +
                           sodium_base64_ENCODED_LEN(TOKEN_RANDOM_BYTES,
                                                     sodium_base64_VARIANT_URLSAFE_NO_PADDING) <=
                       VG_TOKEN_MAX,
                   "VG_TOKEN_MAX too small for a token");
    randombytes_buf(raw, sizeof raw);
    memcpy(out, TOKEN_PREFIX, prefix_len);
    sodium_bin2base64(out + prefix_len, VG_TOKEN_MAX - prefix_len, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
}

void vg_token_hash(const char *token, size_t len, uint8_t out[VG_SHA256_BYTES])
{
    vg_sha256((const uint8_t *)token, len, out);
}

int vg_ct_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    if (len == 0)
        return 1;
    return sodium_memcmp(a, b, len) == 0;
}

/* Writes all of 'len' bytes, retrying on EINTR and short writes. */

/* Makes the directory entry of a newly created file durable. Best effort:
 * some file systems refuse fsync on a directory, and the file itself has
 * already been synced. */
static void fsync_parent_dir(const char *path)
{
    char dir[4096];
    if (vg_strlcpy(dir, path, sizeof dir) != 0)
        return;
    char *slash = strrchr(dir, '/');
    if (!slash) {
        dir[0] = '.';
        dir[1] = '\0';
    } else if (slash == dir) {
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return;
    (void)fsync(dfd);
    close(dfd);
}

int vg_kek_create(const char *path, uint8_t key[VG_KEY_BYTES], char *err, size_t err_size)
{
    int rc = -1;
    int fd = -1;
    int created = 0;
    uint8_t fresh[VG_KEY_BYTES];

    if (!path || !key) {
        set_err(err, err_size, "no key file path given");
        goto out;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            set_err(err, err_size, "key file %s already exists (refusing to overwrite it)",
                    path);
        else
            set_err(err, err_size, "cannot create key file %s: %s", path, strerror(errno));
        goto out;
    }
    created = 1;
    randombytes_buf(fresh, sizeof fresh);
    if (vg_write_all(fd, fresh, sizeof fresh) != 0) {
        set_err(err, err_size, "cannot write key file %s: %s", path, strerror(errno));
        goto out;
    }
    if (fsync(fd) != 0) {
        set_err(err, err_size, "cannot sync key file %s: %s", path, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        set_err(err, err_size, "cannot close key file %s: %s", path, strerror(errno));
        goto out;
    }
    fd = -1;
    fsync_parent_dir(path);
    memcpy(key, fresh, VG_KEY_BYTES);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rc != 0 && created)
        (void)unlink(path); /* we created it (O_EXCL): never leave a half key */
    sodium_memzero(fresh, sizeof fresh);
    return rc;
}

int vg_kek_load(const char *path, uint8_t key[VG_KEY_BYTES], char *err, size_t err_size)
{
    int rc = -1;
    int fd = -1;
    uint8_t buf[VG_KEY_BYTES + 1];
    size_t got = 0;
    struct stat st;

    /* O_NONBLOCK: a FIFO planted at the path must not hang the caller; it is
     * refused below as not a regular file. */
    if (!path || !key) {
        set_err(err, err_size, "no key file path given");
        goto out;
    }
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        if (errno == ELOOP)
            set_err(err, err_size, "key file %s is a symbolic link (refused)", path);
        else
            set_err(err, err_size, "cannot open key file %s: %s", path, strerror(errno));
        goto out;
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
    if (st.st_size != VG_KEY_BYTES) {
        set_err(err, err_size, "key file %s is not %d bytes (corrupt or truncated)", path,
                VG_KEY_BYTES);
        goto out;
    }
    /* Read one byte more than needed, so a file that grew after fstat() is
     * still caught. */
    while (got < sizeof buf) {
        ssize_t n = read(fd, buf + got, sizeof buf - got);
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
    if (got != VG_KEY_BYTES) {
        set_err(err, err_size, "key file %s is not %d bytes (corrupt or truncated)", path,
                VG_KEY_BYTES);
        goto out;
    }
    memcpy(key, buf, VG_KEY_BYTES);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    sodium_memzero(buf, sizeof buf);
    return rc;
}
