#include "store/keyring.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

struct vg_keyring {
    pthread_rwlock_t lock;
    pthread_mutex_t ref_lock;
    int refs;
    int has_prev;
    uint8_t *keys; /* sodium_malloc'd: [0] current, [1] previous */
};

#define CUR(r) ((r)->keys)
#define PREV(r) ((r)->keys + VG_KEY_BYTES)

struct vg_keyring *vg_keyring_new(const uint8_t kek[VG_KEY_BYTES])
{
    struct vg_keyring *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->keys = sodium_malloc(2 * VG_KEY_BYTES);
    if (!r->keys) {
        free(r);
        return NULL;
    }
    memcpy(CUR(r), kek, VG_KEY_BYTES);
    sodium_memzero(PREV(r), VG_KEY_BYTES);
    pthread_rwlock_init(&r->lock, NULL);
    pthread_mutex_init(&r->ref_lock, NULL);
    r->refs = 1;
    return r;
}

void vg_keyring_ref(struct vg_keyring *r)
{
    pthread_mutex_lock(&r->ref_lock);
    r->refs++;
    pthread_mutex_unlock(&r->ref_lock);
}

void vg_keyring_unref(struct vg_keyring *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->ref_lock);
    int last = --r->refs == 0;
    pthread_mutex_unlock(&r->ref_lock);
    if (!last)
        return;
    sodium_free(r->keys); /* wipes */
    pthread_rwlock_destroy(&r->lock);
    pthread_mutex_destroy(&r->ref_lock);
    free(r);
}

int vg_keyring_seal(struct vg_keyring *r, const uint8_t *ad, size_t ad_len, const uint8_t *pt,
                    size_t pt_len, uint8_t *out, size_t *out_len)
{
    pthread_rwlock_rdlock(&r->lock);
    int rc = vg_aead_seal(CUR(r), ad, ad_len, pt, pt_len, out, out_len);
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int vg_keyring_open(struct vg_keyring *r, const uint8_t *ad, size_t ad_len, const uint8_t *in,
                    size_t in_len, uint8_t *out, size_t *out_len)
{
    pthread_rwlock_rdlock(&r->lock);
    int rc = -1;
    if (vg_aead_open(CUR(r), ad, ad_len, in, in_len, out, out_len) == 0)
        rc = 0;
    else if (r->has_prev && vg_aead_open(PREV(r), ad, ad_len, in, in_len, out, out_len) == 0)
        rc = 1;
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

void vg_keyring_hmac(struct vg_keyring *r, const uint8_t *msg, size_t len,
                     uint8_t out[VG_SHA256_BYTES])
{
    pthread_rwlock_rdlock(&r->lock);
    crypto_auth_hmacsha256(out, msg, len, CUR(r));
    pthread_rwlock_unlock(&r->lock);
}

void vg_keyring_rotate(struct vg_keyring *r, const uint8_t next[VG_KEY_BYTES])
{
    pthread_rwlock_wrlock(&r->lock);
    memcpy(PREV(r), CUR(r), VG_KEY_BYTES);
    memcpy(CUR(r), next, VG_KEY_BYTES);
    r->has_prev = 1;
    pthread_rwlock_unlock(&r->lock);
}

void vg_keyring_revert(struct vg_keyring *r)
{
    pthread_rwlock_wrlock(&r->lock);
    if (r->has_prev) {
        memcpy(CUR(r), PREV(r), VG_KEY_BYTES);
        sodium_memzero(PREV(r), VG_KEY_BYTES);
        r->has_prev = 0;
    }
    pthread_rwlock_unlock(&r->lock);
}

void vg_keyring_forget_previous(struct vg_keyring *r)
{
    pthread_rwlock_wrlock(&r->lock);
    sodium_memzero(PREV(r), VG_KEY_BYTES);
    r->has_prev = 0;
    pthread_rwlock_unlock(&r->lock);
}

int vg_keyring_rotating(struct vg_keyring *r)
{
    pthread_rwlock_rdlock(&r->lock);
    int v = r->has_prev;
    pthread_rwlock_unlock(&r->lock);
    return v;
}
