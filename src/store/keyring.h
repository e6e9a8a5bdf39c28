/* store/keyring — the key-encryption key (KEK) in memory, shared by every
 * store connection of a process, and the two-key window of a KEK rotation.
 *
 * Why shared: `vigil serve` has two connections (the API's and the
 * writer's). When an administrator rotates the KEK online, both must start
 * wrapping new data keys under the new KEK at the same instant, and both
 * must still open keys wrapped under the old one until the rotation's
 * transaction has rewrapped them. One object, read-locked for each AEAD
 * operation, gives that without stopping ingestion.
 *
 * Ownership: the keyring holds its keys in sodium_malloc'd memory (guarded,
 * locked, wiped on free). It is reference counted: each store connection
 * using it holds a reference; vg_keyring_unref frees it with the last one.
 * Thread-safety: every function may be called from any thread.
 */
#ifndef VG_STORE_KEYRING_H
#define VG_STORE_KEYRING_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"
#include "crypto/crypto.h"

struct vg_keyring;

/* A keyring whose current KEK is a copy of 'kek'. NULL on out of memory. */
struct vg_keyring *vg_keyring_new(const uint8_t kek[VG_KEY_BYTES]);
void vg_keyring_ref(struct vg_keyring *ring);
void vg_keyring_unref(struct vg_keyring *ring);

/* Seals under the current KEK (see vg_aead_seal). */
int vg_keyring_seal(struct vg_keyring *ring, const uint8_t *ad, size_t ad_len, const uint8_t *pt,
                    size_t pt_len, uint8_t *out, size_t *out_len) VG_WARN_UNUSED;

/* Opens with the current KEK, else with the previous one while a rotation
 * is under way. Returns 0 (opened with the current KEK), 1 (opened with the
 * previous KEK: the caller may rewrap it), or -1 (neither opens it). */
int vg_keyring_open(struct vg_keyring *ring, const uint8_t *ad, size_t ad_len, const uint8_t *in,
                    size_t in_len, uint8_t *out, size_t *out_len) VG_WARN_UNUSED;

/* HMAC-SHA256 keyed by the current KEK (derivations kept for databases
 * created before a value was stored; see store.c's dedup key). */
void vg_keyring_hmac(struct vg_keyring *ring, const uint8_t *msg, size_t len,
                     uint8_t out[VG_SHA256_BYTES]);

/* Rotation: 'next' becomes current and the old current is kept as
 * previous. vg_keyring_revert undoes it (a failed rotation);
 * vg_keyring_forget_previous wipes the previous key (a committed one). */
void vg_keyring_rotate(struct vg_keyring *ring, const uint8_t next[VG_KEY_BYTES]);
void vg_keyring_revert(struct vg_keyring *ring);
void vg_keyring_forget_previous(struct vg_keyring *ring);

/* 1 while a previous KEK is held, else 0. */
int vg_keyring_rotating(struct vg_keyring *ring);

#endif
