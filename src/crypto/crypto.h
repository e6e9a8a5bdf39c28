/* crypto — AEAD sealing, hashing, random tokens and key files (libsodium,
 * OpenSSL). Owns no global state beyond libsodium's init.
 *
 * Secrets handed out by these functions live in caller-owned memory; callers
 * wipe them with sodium_memzero() when done. Nothing here logs.
 */
#ifndef VG_CRYPTO_CRYPTO_H
#define VG_CRYPTO_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define VG_KEY_BYTES 32
/* XChaCha20-Poly1305 IETF: 24-byte random nonce + 16-byte tag. */
#define VG_AEAD_NONCE_BYTES 24
#define VG_AEAD_TAG_BYTES 16
#define VG_AEAD_OVERHEAD (VG_AEAD_NONCE_BYTES + VG_AEAD_TAG_BYTES)
#define VG_SHA256_BYTES 32

/* Initialises libsodium once; returns 0 or -1. Safe to call repeatedly. */
int vg_crypto_init(void) VG_WARN_UNUSED;

/* Seals 'pt' under 'key' with associated data 'ad'. Writes nonce || ciphertext
 * || tag to 'out' (capacity at least pt_len + VG_AEAD_OVERHEAD) and its length
 * to *out_len. The nonce is random (XChaCha's 192 bits make collisions
 * negligible). Returns 0 or -1. */
int vg_aead_seal(const uint8_t key[VG_KEY_BYTES], const uint8_t *ad, size_t ad_len,
                 const uint8_t *pt, size_t pt_len, uint8_t *out, size_t *out_len)
    VG_WARN_UNUSED;

/* Opens what vg_aead_seal produced. Writes the plaintext (in_len -
 * VG_AEAD_OVERHEAD bytes) to 'out'. Returns 0, or -1 if the input is short,
 * was altered, or the key or associated data differ. Nothing is written to
 * 'out' on failure that the caller may use. */
int vg_aead_open(const uint8_t key[VG_KEY_BYTES], const uint8_t *ad, size_t ad_len,
                 const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len)
    VG_WARN_UNUSED;

/* SHA-256 of 'len' bytes. */
void vg_sha256(const uint8_t *data, size_t len, uint8_t out[VG_SHA256_BYTES]);

/* Fills 'buf' with 'len' cryptographically random bytes. */
void vg_random(uint8_t *buf, size_t len);

/* Lower-case hex of 'len' bytes into 'out' (capacity >= 2*len+1). */
void vg_hex(const uint8_t *in, size_t len, char *out);

/* A new bearer token: "vgt_" + 43 base64url characters of 32 random bytes,
 * NUL-terminated in 'out' (capacity >= VG_TOKEN_MAX). */
#define VG_TOKEN_MAX 64
void vg_token_new(char out[VG_TOKEN_MAX]);

/* The form a token is stored in: SHA-256 of its text. Tokens have 256 bits
 * of entropy, so a fast hash is enough (no password stretching needed). */
void vg_token_hash(const char *token, size_t len, uint8_t out[VG_SHA256_BYTES]);

/* Constant-time equality of two buffers of 'len' bytes: 1 if equal. */
int vg_ct_equal(const uint8_t *a, const uint8_t *b, size_t len);

/* Key-encryption key file: exactly VG_KEY_BYTES raw bytes, mode 0600.
 * vg_kek_create writes a new random one (O_EXCL: never overwrites) and
 * returns it in 'key'. vg_kek_load reads one, refusing a file that is not a
 * regular file, is readable by group/others, or is not exactly 32 bytes.
 * Both return 0, or -1 with a reason in 'err' (no key bytes in it). */
int vg_kek_create(const char *path, uint8_t key[VG_KEY_BYTES], char *err, size_t err_size)
    VG_WARN_UNUSED;
int vg_kek_load(const char *path, uint8_t key[VG_KEY_BYTES], char *err, size_t err_size)
    VG_WARN_UNUSED;

#endif
