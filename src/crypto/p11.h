/* crypto/p11 — the small part of PKCS#11 vigil needs: one AES-256 key that
 * never leaves a token, used to encrypt and decrypt (AES-GCM) inside it.
 *
 * vigil talks to the module directly: dlopen() of the module path given in
 * vigil.conf, C_GetFunctionList, C_Initialize, the slot whose token label
 * matches, a session, C_Login as the user. No p11-kit proxy and no OpenSSL
 * engine or provider sits in between, so what is configured is what runs.
 *
 * Owns: a struct vg_p11 (module handle, session); vg_p11_close releases it.
 * Borrows: every string and buffer passed in, for the duration of the call.
 * The PIN is used for C_Login and not kept: the caller wipes its copy.
 *
 * Thread-safety: none. One struct vg_p11 at a time per process and module
 * (vg_p11_open initialises the module and vg_p11_close finalises it); vigil
 * opens one briefly when it loads or stores its KEK and closes it at once.
 *
 * Errors: every function that can fail returns -1 and writes a reason into
 * 'err' that names the PKCS#11 return value (CKR_PIN_INCORRECT,
 * CKR_TOKEN_NOT_PRESENT, ...). Reasons never contain the PIN or key bytes.
 */
#ifndef VG_CRYPTO_P11_H
#define VG_CRYPTO_P11_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

/* A token label is at most 32 bytes (CK_TOKEN_INFO.label, blank-padded). */
#define VG_P11_TOKEN_LABEL_MAX 32
/* vigil's own limit for the label of its wrapping key (CKA_LABEL). */
#define VG_P11_KEY_LABEL_MAX 64
/* AES-GCM as vigil uses it: 96-bit IV, 128-bit tag. */
#define VG_P11_GCM_IV_BYTES 12
#define VG_P11_GCM_TAG_BYTES 16
/* Longest PIN vigil accepts (PKCS#11 leaves it to the token). */
#define VG_P11_PIN_MAX 255

struct vg_p11;

/* dlopen()s 'module' (an absolute path), initialises it, finds the one slot
 * whose token is labelled 'token_label', opens a session (read-write if
 * 'rw', which generating a token key needs) and logs in as CKU_USER with
 * 'pin' (pin_len bytes, no NUL needed). On success *out is the caller's, to
 * be released with vg_p11_close. Refuses: a module that does not load or
 * has no C_GetFunctionList, no or two tokens with that label, a wrong or
 * locked PIN. */
int vg_p11_open(const char *module, const char *token_label, const uint8_t *pin, size_t pin_len,
                int rw, struct vg_p11 **out, char *err, size_t err_size) VG_WARN_UNUSED;

/* Logs out, closes the session, finalises and unloads the module. NULL is
 * fine. */
void vg_p11_close(struct vg_p11 *p);

/* The AES-256 secret key labelled 'label' on the token: 1 found (its handle
 * in *handle), 0 none, -1 error. A key that exists but could leak is an
 * error, not a match: it must be CKK_AES of 32 bytes, CKA_SENSITIVE true,
 * CKA_EXTRACTABLE false, able to encrypt and decrypt. (CKA_NEVER_EXTRACTABLE
 * is not required: an operator may import a key under dual control and
 * then lock it.) Two keys with the label are an error too: which one holds
 * the KEK would be a guess. */
int vg_p11_key_find(struct vg_p11 *p, const char *label, unsigned long *handle, char *err,
                    size_t err_size) VG_WARN_UNUSED;

/* Generates that key in the token (C_GenerateKey, CKM_AES_KEY_GEN): a token
 * object, private, sensitive, not extractable, for encrypt/decrypt only
 * (no wrap/unwrap, sign or derive). Needs a read-write session. */
int vg_p11_key_generate(struct vg_p11 *p, const char *label, unsigned long *handle, char *err,
                        size_t err_size) VG_WARN_UNUSED;

/* AES-GCM in the token with key 'handle', IV 'iv' (VG_P11_GCM_IV_BYTES,
 * chosen by the caller at random: vigil encrypts a handful of times per
 * key, far below the birthday bound of a 96-bit IV) and associated data
 * 'aad'. Encrypt writes pt_len + VG_P11_GCM_TAG_BYTES bytes (ciphertext ||
 * tag) to 'out'; decrypt writes in_len - VG_P11_GCM_TAG_BYTES bytes and
 * fails on any alteration, another key, IV or associated data. *out_len gets
 * the length written; out_cap must hold it. On a failed decrypt 'out' is
 * wiped. */
int vg_p11_gcm_encrypt(struct vg_p11 *p, unsigned long handle,
                       const uint8_t iv[VG_P11_GCM_IV_BYTES], const uint8_t *aad, size_t aad_len,
                       const uint8_t *pt, size_t pt_len, uint8_t *out, size_t out_cap,
                       size_t *out_len, char *err, size_t err_size) VG_WARN_UNUSED;
int vg_p11_gcm_decrypt(struct vg_p11 *p, unsigned long handle,
                       const uint8_t iv[VG_P11_GCM_IV_BYTES], const uint8_t *aad, size_t aad_len,
                       const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                       size_t *out_len, char *err, size_t err_size) VG_WARN_UNUSED;

/* The name of a PKCS#11 return value ("CKR_PIN_INCORRECT"), or "CKR_0x..."
 * for one this table does not know; 'buf' (>= 24 bytes) holds the latter. */
const char *vg_p11_rv_name(unsigned long rv, char *buf, size_t buf_size);

#endif
