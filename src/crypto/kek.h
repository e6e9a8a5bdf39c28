/* crypto/kek — where vigil's key-encryption key (KEK) lives, and the one
 * place that creates, loads and replaces it.
 *
 * The key hierarchy has three levels when a token is used, two without:
 *
 *   token key  AES-256, generated inside a PKCS#11 token (HSM, smart card,
 *              SoftHSM2), CKA_SENSITIVE and not CKA_EXTRACTABLE: it is never
 *              outside the token, in vigil's memory or on its disk.
 *      |  encrypts (AES-256-GCM, in the token)
 *   KEK        32 random bytes. Mode "file": keys/kek, in the clear, 0600.
 *              Mode "pkcs11": only keys/kek.p11, the KEK encrypted by the
 *              token key; the clear KEK exists only in vigil's locked memory
 *              while it runs. Never in the database or a backup.
 *      |  wraps (XChaCha20-Poly1305, src/store)
 *   data keys  one or more per patient, stored wrapped in the database;
 *              they seal the readings.
 *
 * So in pkcs11 mode a copy of the data directory (even with kek.p11)
 * opens nothing without the token and its PIN, and a wrong PIN, another
 * token, a missing or altered kek.p11 all stop vigil instead of letting it
 * start with a fresh key over old data. What the token does not protect
 * against: someone who can use the token and its PIN (or read vigil's
 * memory while it runs) can recover the KEK; the PIN file is the secret to
 * guard.
 *
 * kek.p11, version 1 (all lengths in bytes):
 *   "VGKEKP11" (8) | version 1 (1) | label length L, 1..64 (1) |
 *   CKA_LABEL of the token key (L) | GCM IV (12) | ciphertext || tag (48)
 * The associated data is "vigil/kek/v1", a NUL, then the file's first
 * 10 + L bytes, so neither the version nor the key label can be changed
 * without the decryption failing. The file names the token key that
 * encrypted it: pkcs11_key_label in vigil.conf chooses the key for newly
 * written files (create, stage), which lets a rotation move to a new
 * token key.
 *
 * Ownership: a struct vg_kek_source is plain data (paths, labels), no
 * secrets, no handles; copy it freely. KEKs are written to caller-owned
 * buffers (ideally sodium_malloc'd); callers wipe them. The PIN is read
 * from its file or variable for each token operation and wiped right
 * after C_Login; it is never logged or put in a message.
 *
 * Thread-safety: none needed; these run at start, in init and restore, and
 * in key rotation, never concurrently (see crypto/p11.h).
 *
 * Errors: -1 with a reason in 'err' naming the file or token and, for the
 * token, the PKCS#11 return value. No key bytes or PIN in it.
 */
#ifndef VG_CRYPTO_KEK_H
#define VG_CRYPTO_KEK_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/util.h"
#include "crypto/crypto.h"
#include "crypto/p11.h"

enum vg_kek_kind {
    VG_KEK_FILE = 0,   /* keys/kek, 32 raw bytes */
    VG_KEK_PKCS11 = 1, /* keys/kek.p11, encrypted by a token key */
};

#define VG_KEK_PATH_MAX 1024

struct vg_kek_source {
    enum vg_kek_kind kind;
    char path[VG_KEK_PATH_MAX];                 /* the KEK file or kek.p11 */
    char module[512];                           /* pkcs11: module path */
    char token[VG_P11_TOKEN_LABEL_MAX + 1];     /* pkcs11: token label */
    char key_label[VG_P11_KEY_LABEL_MAX + 1];   /* pkcs11: key for new files */
    char pin_file[VG_KEK_PATH_MAX];             /* pkcs11: PIN file, or "" */
    char pin_env[64];                           /* pkcs11: PIN variable, or "" */
};

/* The source described by vigil.conf's [keys] for data directory
 * 'datadir' (relative kek_file and pkcs11_pin_file are taken relative to
 * it). Refuses an incomplete pkcs11 setting: no module, no token, neither
 * or both of pkcs11_pin_file and pkcs11_pin_env. Touches no file. */
int vg_kek_source_from_config(const struct vg_config *cfg, const char *datadir,
                              struct vg_kek_source *out, char *err, size_t err_size)
    VG_WARN_UNUSED;

/* "keys/kek" style description for messages: the file, or the token, key
 * label and kek.p11. Never fails (truncates). */
void vg_kek_source_describe(const struct vg_kek_source *src, char *buf, size_t buf_size);

/* Checks, writing nothing, that the source can be used: for pkcs11 that
 * the PIN can be read, the module loads, the token is there, the login
 * works and a key labelled key_label, if the token has one, is acceptable
 * (vg_p11_key_find). For a file source there is nothing to check: 0.
 * `vigil init` runs it before it creates anything. */
int vg_kek_source_probe(const struct vg_kek_source *src, char *err, size_t err_size)
    VG_WARN_UNUSED;

/* A new random KEK at the source, returned in 'kek'. File: vg_kek_create
 * (O_EXCL). Token: finds the token key, generating it if absent, encrypts
 * the KEK in the token, checks that it decrypts back, and writes kek.p11
 * (O_EXCL, 0600, fsync'd with its directory). Never overwrites. */
int vg_kek_source_create(const struct vg_kek_source *src, uint8_t kek[VG_KEY_BYTES], char *err,
                         size_t err_size) VG_WARN_UNUSED;

/* Stores a given KEK at the source like vg_kek_source_create (O_EXCL):
 * `vigil restore` puts the KEK it was given into the new directory. */
int vg_kek_source_save(const struct vg_kek_source *src, const uint8_t kek[VG_KEY_BYTES],
                       char *err, size_t err_size) VG_WARN_UNUSED;

/* Loads the KEK. Refuses (never creates): a missing file; one that is a
 * symlink, not regular, readable by group or others, of the wrong size or
 * format; for pkcs11 also a missing token or token key, a wrong PIN or PIN
 * file readable by others, and a kek.p11 that does not decrypt (altered,
 * or made under another token key). Whether the KEK is the database's is
 * the store's check (vg_store_open). */
int vg_kek_source_load(const struct vg_kek_source *src, uint8_t kek[VG_KEY_BYTES], char *err,
                       size_t err_size) VG_WARN_UNUSED;

/* ---- rotation: a staged next KEK beside the current one ----
 *
 * The next KEK lives in path + ".next" (keys/kek.next, keys/kek.p11.next)
 * in the same format as the current one. The rotation (`vigil keys
 * rotate-kek`) stages it, rewraps the data keys under it in one database
 * transaction, then promotes it. A crash in between leaves both files, and
 * whichever opens the database (vg_store_open_ring) says how far it got. */

#define VG_KEK_LOADED 1
#define VG_KEK_NONE 0

/* Writes 'kek' as the staged next KEK: into path.next.tmp (a stale one is
 * removed first), fsync, then linked to path.next without replacing it,
 * and the directory fsync'd. Refuses when a next KEK is already staged: it
 * may be the only key that opens the database (promote or discard it
 * first, knowingly). */
int vg_kek_source_stage_next(const struct vg_kek_source *src, const uint8_t kek[VG_KEY_BYTES],
                             char *err, size_t err_size) VG_WARN_UNUSED;

/* VG_KEK_LOADED (1) with the staged KEK in 'kek', VG_KEK_NONE (0) when
 * nothing is staged, -1 when something is staged but does not load (the
 * same refusals as vg_kek_source_load). */
int vg_kek_source_load_next(const struct vg_kek_source *src, uint8_t kek[VG_KEY_BYTES],
                            char *err, size_t err_size) VG_WARN_UNUSED;

/* Renames path.next over path (the current KEK is gone afterwards) and
 * fsyncs the directory. Checks first, without the token, that the staged
 * file is well-formed (right size/format, 0600, regular), so a damaged
 * file never replaces a good one. -1 if nothing is staged. */
int vg_kek_source_promote_next(const struct vg_kek_source *src, char *err, size_t err_size)
    VG_WARN_UNUSED;

/* Removes path.next (overwriting a clear file KEK with zeros first, best
 * effort: flash and copy-on-write file systems may keep old blocks) and
 * fsyncs the directory. 0 also when nothing was staged. */
int vg_kek_source_discard_next(const struct vg_kek_source *src, char *err, size_t err_size)
    VG_WARN_UNUSED;

#endif
