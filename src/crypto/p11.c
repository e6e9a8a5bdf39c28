/* crypto/p11 — a PKCS#11 token used for one thing: AES-GCM with a key that
 * cannot leave it.
 *
 * The module is loaded with dlopen() rather than linked: the token is a
 * deployment choice (SoftHSM2 in tests, a network HSM or smart card in a
 * hospital), and a build must not depend on any particular one. The types
 * come from p11-kit's pkcs11.h, the only part of p11-kit used.
 */
#include "crypto/p11.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

/* pkg-config's include path (-I/usr/include/p11-kit-1) when the build
 * passes it; the same header through its full path otherwise. */
#if __has_include(<p11-kit/pkcs11.h>)
#include <p11-kit/pkcs11.h>
#else
#include <p11-kit-1/p11-kit/pkcs11.h>
#endif

struct vg_p11 {
    void *dl;
    CK_FUNCTION_LIST_PTR fn;
    CK_SESSION_HANDLE session;
    int have_session;
    int logged_in;        /* we logged in, so we log out */
    int initialized_here; /* we called C_Initialize, so we finalise */
};

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

#define RV(name) {name, #name}
static const struct {
    CK_RV rv;
    const char *name;
} rv_names[] = {
    RV(CKR_OK),
    RV(CKR_CANCEL),
    RV(CKR_HOST_MEMORY),
    RV(CKR_SLOT_ID_INVALID),
    RV(CKR_GENERAL_ERROR),
    RV(CKR_FUNCTION_FAILED),
    RV(CKR_ARGUMENTS_BAD),
    RV(CKR_NO_EVENT),
    RV(CKR_NEED_TO_CREATE_THREADS),
    RV(CKR_CANT_LOCK),
    RV(CKR_ATTRIBUTE_READ_ONLY),
    RV(CKR_ATTRIBUTE_SENSITIVE),
    RV(CKR_ATTRIBUTE_TYPE_INVALID),
    RV(CKR_ATTRIBUTE_VALUE_INVALID),
    RV(CKR_DATA_INVALID),
    RV(CKR_DATA_LEN_RANGE),
    RV(CKR_DEVICE_ERROR),
    RV(CKR_DEVICE_MEMORY),
    RV(CKR_DEVICE_REMOVED),
    RV(CKR_ENCRYPTED_DATA_INVALID),
    RV(CKR_ENCRYPTED_DATA_LEN_RANGE),
    RV(CKR_FUNCTION_CANCELED),
    RV(CKR_FUNCTION_NOT_PARALLEL),
    RV(CKR_FUNCTION_NOT_SUPPORTED),
    RV(CKR_KEY_HANDLE_INVALID),
    RV(CKR_KEY_SIZE_RANGE),
    RV(CKR_KEY_TYPE_INCONSISTENT),
    RV(CKR_KEY_NOT_NEEDED),
    RV(CKR_KEY_CHANGED),
    RV(CKR_KEY_NEEDED),
    RV(CKR_KEY_INDIGESTIBLE),
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED),
    RV(CKR_KEY_NOT_WRAPPABLE),
    RV(CKR_KEY_UNEXTRACTABLE),
    RV(CKR_MECHANISM_INVALID),
    RV(CKR_MECHANISM_PARAM_INVALID),
    RV(CKR_OBJECT_HANDLE_INVALID),
    RV(CKR_OPERATION_ACTIVE),
    RV(CKR_OPERATION_NOT_INITIALIZED),
    RV(CKR_PIN_INCORRECT),
    RV(CKR_PIN_INVALID),
    RV(CKR_PIN_LEN_RANGE),
    RV(CKR_PIN_EXPIRED),
    RV(CKR_PIN_LOCKED),
    RV(CKR_SESSION_CLOSED),
    RV(CKR_SESSION_COUNT),
    RV(CKR_SESSION_HANDLE_INVALID),
    RV(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
    RV(CKR_SESSION_READ_ONLY),
    RV(CKR_SESSION_EXISTS),
    RV(CKR_SESSION_READ_ONLY_EXISTS),
    RV(CKR_SESSION_READ_WRITE_SO_EXISTS),
    RV(CKR_TEMPLATE_INCOMPLETE),
    RV(CKR_TEMPLATE_INCONSISTENT),
    RV(CKR_TOKEN_NOT_PRESENT),
    RV(CKR_TOKEN_NOT_RECOGNIZED),
    RV(CKR_TOKEN_WRITE_PROTECTED),
    RV(CKR_USER_ALREADY_LOGGED_IN),
    RV(CKR_USER_NOT_LOGGED_IN),
    RV(CKR_USER_PIN_NOT_INITIALIZED),
    RV(CKR_USER_TYPE_INVALID),
    RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    RV(CKR_USER_TOO_MANY_TYPES),
    RV(CKR_RANDOM_SEED_NOT_SUPPORTED),
    RV(CKR_RANDOM_NO_RNG),
    RV(CKR_DOMAIN_PARAMS_INVALID),
    RV(CKR_BUFFER_TOO_SMALL),
    RV(CKR_SAVED_STATE_INVALID),
    RV(CKR_INFORMATION_SENSITIVE),
    RV(CKR_STATE_UNSAVEABLE),
    RV(CKR_CRYPTOKI_NOT_INITIALIZED),
    RV(CKR_CRYPTOKI_ALREADY_INITIALIZED),
    RV(CKR_MUTEX_BAD),
    RV(CKR_MUTEX_NOT_LOCKED),
    RV(CKR_FUNCTION_REJECTED),
};
#undef RV

const char *vg_p11_rv_name(unsigned long rv, char *buf, size_t buf_size)
{
    for (size_t i = 0; i < sizeof rv_names / sizeof rv_names[0]; i++)
        if (rv_names[i].rv == rv)
            return rv_names[i].name;
    if (buf && buf_size > 0) {
        snprintf(buf, buf_size, "CKR_0x%08lx", rv);
        return buf;
    }
    return "CKR_(unknown)";
}

/* "CKR_PIN_INCORRECT" for messages; 'b' is a caller's scratch buffer. */
#define RVN(rv, b) vg_p11_rv_name((rv), (b), sizeof(b))

/* A blank-padded, fixed-width PKCS#11 label field as a C string. */
static void label_from_field(const CK_UTF8CHAR *field, size_t width, char *out, size_t out_size)
{
    size_t n = width;
    while (n > 0 && (field[n - 1] == ' ' || field[n - 1] == '\0'))
        n--;
    if (n >= out_size)
        n = out_size - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = field[i];
        /* Labels go into error messages: keep them printable. */
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[n] = '\0';
}

/* Loads and initialises the module (p->dl, p->fn). 0 or -1. */
static int load_module(struct vg_p11 *p, const char *module, char *err, size_t err_size)
{
    struct stat st;
    if (module[0] != '/') {
        set_err(err, err_size, "PKCS#11 module path %s is not absolute", module);
        return -1;
    }
    /* The module runs inside vigil with the KEK in reach: a library that
     * someone else can replace is someone else's code in the gateway. */
    if (stat(module, &st) != 0) {
        set_err(err, err_size, "PKCS#11 module %s: %s", module, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, err_size, "PKCS#11 module %s is not a regular file", module);
        return -1;
    }
    if ((st.st_mode & 022) != 0) {
        set_err(err, err_size, "PKCS#11 module %s is writable by group or others (refused)",
                module);
        return -1;
    }
    p->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl) {
        const char *why = dlerror();
        set_err(err, err_size, "cannot load PKCS#11 module %s: %s", module, why ? why : "?");
        return -1;
    }
    void *sym = dlsym(p->dl, "C_GetFunctionList");
    if (!sym) {
        set_err(err, err_size, "%s is not a PKCS#11 module (no C_GetFunctionList)", module);
        return -1;
    }
    /* dlsym returns an object pointer; copy its bits into a function
     * pointer rather than casting between the two kinds (ISO C). */
    CK_C_GetFunctionList get_list;
    _Static_assert(sizeof get_list == sizeof sym, "function and object pointers differ");
    memcpy(&get_list, &sym, sizeof get_list);
    char rb[24];
    CK_RV rv = get_list(&p->fn);
    if (rv != CKR_OK || !p->fn) {
        set_err(err, err_size, "PKCS#11 module %s: C_GetFunctionList failed: %s", module,
                RVN(rv, rb));
        return -1;
    }
    if (p->fn->version.major != 2) {
        set_err(err, err_size, "PKCS#11 module %s speaks Cryptoki %u.%u; vigil needs 2.x", module,
                p->fn->version.major, p->fn->version.minor);
        return -1;
    }
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    rv = p->fn->C_Initialize(&args);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        p->initialized_here = 0; /* someone else in this process owns it */
    } else if (rv != CKR_OK) {
        set_err(err, err_size, "PKCS#11 module %s: C_Initialize failed: %s", module, RVN(rv, rb));
        return -1;
    } else {
        p->initialized_here = 1;
    }
    return 0;
}

/* The slot holding the token labelled 'want'. 0 or -1. */
static int find_slot(struct vg_p11 *p, const char *module, const char *want, CK_SLOT_ID *slot,
                     char *err, size_t err_size)
{
    char rb[24];
    CK_ULONG count = 0;
    CK_SLOT_ID *slots = NULL;
    int rc = -1;
    int found = 0;
    char seen[160] = "";
    size_t seen_len = 0;

    CK_RV rv = p->fn->C_GetSlotList(CK_TRUE, NULL, &count);
    if (rv != CKR_OK) {
        set_err(err, err_size, "PKCS#11 module %s: C_GetSlotList failed: %s", module, RVN(rv, rb));
        return -1;
    }
    if (count > 0) {
        /* The list can grow between the two calls (a token inserted). */
        count += 4;
        slots = calloc(count, sizeof *slots);
        if (!slots) {
            set_err(err, err_size, "out of memory");
            return -1;
        }
        rv = p->fn->C_GetSlotList(CK_TRUE, slots, &count);
        if (rv != CKR_OK) {
            set_err(err, err_size, "PKCS#11 module %s: C_GetSlotList failed: %s", module,
                    RVN(rv, rb));
            goto out;
        }
    }
    for (CK_ULONG i = 0; i < count; i++) {
        CK_TOKEN_INFO ti;
        char label[VG_P11_TOKEN_LABEL_MAX + 1];
        if (p->fn->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue; /* removed meanwhile: not ours either way */
        label_from_field(ti.label, sizeof ti.label, label, sizeof label);
        if (!(ti.flags & CKF_TOKEN_INITIALIZED))
            continue; /* SoftHSM2 always shows one empty slot */
        if (strcmp(label, want) != 0) {
            int w = snprintf(seen + seen_len, sizeof seen - seen_len, "%s'%s'",
                             seen_len ? ", " : "", label);
            if (w > 0 && (size_t)w < sizeof seen - seen_len)
                seen_len += (size_t)w;
            continue;
        }
        if (found++) {
            set_err(err, err_size,
                    "PKCS#11 module %s has more than one token labelled '%s' (ambiguous)", module,
                    want);
            goto out;
        }
        if (!(ti.flags & CKF_USER_PIN_INITIALIZED)) {
            set_err(err, err_size, "token '%s' has no user PIN yet (CKR_USER_PIN_NOT_INITIALIZED)",
                    want);
            goto out;
        }
        if (ti.flags & CKF_USER_PIN_LOCKED) {
            set_err(err, err_size, "token '%s': the user PIN is locked (CKR_PIN_LOCKED)", want);
            goto out;
        }
        *slot = slots[i];
    }
    if (!found) {
        set_err(err, err_size, "no token labelled '%s' in PKCS#11 module %s "
                "(CKR_TOKEN_NOT_PRESENT; tokens present: %s)",
                want, module, seen_len ? seen : "none");
        goto out;
    }
    rc = 0;
out:
    free(slots);
    return rc;
}

int vg_p11_open(const char *module, const char *token_label, const uint8_t *pin, size_t pin_len,
                int rw, struct vg_p11 **out, char *err, size_t err_size)
{
    char rb[24];
    CK_SLOT_ID slot = 0;

    if (out)
        *out = NULL;
    if (!module || !token_label || !pin || !out) {
        set_err(err, err_size, "PKCS#11: module, token label and PIN are all required");
        return -1;
    }
    size_t tl = strlen(token_label);
    if (tl == 0 || tl > VG_P11_TOKEN_LABEL_MAX) {
        set_err(err, err_size, "PKCS#11 token label must be 1 to %d bytes",
                VG_P11_TOKEN_LABEL_MAX);
        return -1;
    }
    if (pin_len == 0 || pin_len > VG_P11_PIN_MAX) {
        set_err(err, err_size, "PKCS#11 PIN for token '%s' is empty or longer than %d bytes",
                token_label, VG_P11_PIN_MAX);
        return -1;
    }
    struct vg_p11 *p = calloc(1, sizeof *p);
    if (!p) {
        set_err(err, err_size, "out of memory");
        return -1;
    }
    if (load_module(p, module, err, err_size) != 0 ||
        find_slot(p, module, token_label, &slot, err, err_size) != 0)
        goto fail;
    CK_FLAGS flags = CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0);
    CK_RV rv = p->fn->C_OpenSession(slot, flags, NULL, NULL, &p->session);
    if (rv != CKR_OK) {
        set_err(err, err_size, "token '%s': cannot open a session: %s", token_label, RVN(rv, rb));
        goto fail;
    }
    p->have_session = 1;
    /* C_Login takes a non-const pointer; tokens do not write through it. */
    rv = p->fn->C_Login(p->session, CKU_USER, (CK_UTF8CHAR_PTR)(uintptr_t)pin, pin_len);
    if (rv == CKR_USER_ALREADY_LOGGED_IN) {
        p->logged_in = 0; /* another session of this process logged in */
    } else if (rv != CKR_OK) {
        set_err(err, err_size, "token '%s': login refused: %s%s", token_label, RVN(rv, rb),
                rv == CKR_PIN_INCORRECT ? " (wrong PIN)"
                : rv == CKR_PIN_LOCKED  ? " (too many wrong PINs; the token's SO must unlock it)"
                                        : "");
        goto fail;
    } else {
        p->logged_in = 1;
    }
    *out = p;
    return 0;
fail:
    vg_p11_close(p);
    return -1;
}

void vg_p11_close(struct vg_p11 *p)
{
    if (!p)
        return;
    if (p->fn) {
        if (p->logged_in)
            (void)p->fn->C_Logout(p->session);
        if (p->have_session)
            (void)p->fn->C_CloseSession(p->session);
        if (p->initialized_here)
            (void)p->fn->C_Finalize(NULL);
    }
    if (p->dl)
        dlclose(p->dl);
    free(p);
}

int vg_p11_key_find(struct vg_p11 *p, const char *label, unsigned long *handle, char *err,
                    size_t err_size)
{
    char rb[24];
    if (!p || !label || !handle) {
        set_err(err, err_size, "PKCS#11: no session or key label");
        return -1;
    }
    size_t ll = strlen(label);
    if (ll == 0 || ll > VG_P11_KEY_LABEL_MAX) {
        set_err(err, err_size, "PKCS#11 key label must be 1 to %d bytes", VG_P11_KEY_LABEL_MAX);
        return -1;
    }
    /* Any secret key with the label, of whatever type: an HMAC or DES key
     * labelled like ours must be reported, not stepped around by generating
     * a second key with the same label. */
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_LABEL, (void *)(uintptr_t)label, ll},
    };
    CK_OBJECT_HANDLE found[2];
    CK_ULONG nfound = 0;
    CK_RV rv = p->fn->C_FindObjectsInit(p->session, tmpl, 2);
    if (rv != CKR_OK) {
        set_err(err, err_size, "PKCS#11: cannot search for key '%s': %s", label, RVN(rv, rb));
        return -1;
    }
    rv = p->fn->C_FindObjects(p->session, found, 2, &nfound);
    CK_RV rv2 = p->fn->C_FindObjectsFinal(p->session);
    if (rv == CKR_OK)
        rv = rv2;
    if (rv != CKR_OK) {
        set_err(err, err_size, "PKCS#11: cannot search for key '%s': %s", label, RVN(rv, rb));
        return -1;
    }
    if (nfound == 0)
        return 0;
    if (nfound > 1) {
        set_err(err, err_size, "token holds more than one secret key labelled '%s' (ambiguous)",
                label);
        return -1;
    }
    CK_KEY_TYPE kt = 0;
    CK_ULONG vlen = 0;
    CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, enc = CK_FALSE, dec = CK_FALSE;
    CK_ATTRIBUTE attrs[] = {
        {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_VALUE_LEN, &vlen, sizeof vlen},
        {CKA_SENSITIVE, &sensitive, sizeof sensitive},
        {CKA_EXTRACTABLE, &extractable, sizeof extractable},
        {CKA_ENCRYPT, &enc, sizeof enc},
        {CKA_DECRYPT, &dec, sizeof dec},
    };
    rv = p->fn->C_GetAttributeValue(p->session, found[0], attrs, sizeof attrs / sizeof attrs[0]);
    if (rv != CKR_OK) {
        set_err(err, err_size, "PKCS#11: cannot read the attributes of key '%s': %s", label,
                RVN(rv, rb));
        return -1;
    }
    if (kt != CKK_AES || vlen != 32) {
        set_err(err, err_size, "token key '%s' is not an AES-256 key (refused)", label);
        return -1;
    }
    if (sensitive != CK_TRUE || extractable != CK_FALSE) {
        set_err(err, err_size,
                "token key '%s' could leave the token (CKA_SENSITIVE %s, CKA_EXTRACTABLE %s): "
                "refused; vigil needs a sensitive, non-extractable key",
                label, sensitive == CK_TRUE ? "true" : "false",
                extractable == CK_FALSE ? "false" : "true");
        return -1;
    }
    if (enc != CK_TRUE || dec != CK_TRUE) {
        set_err(err, err_size, "token key '%s' is not allowed to encrypt and decrypt", label);
        return -1;
    }
    *handle = found[0];
    return 1;
}

int vg_p11_key_generate(struct vg_p11 *p, const char *label, unsigned long *handle, char *err,
                        size_t err_size)
{
    char rb[24];
    if (!p || !label || !handle) {
        set_err(err, err_size, "PKCS#11: no session or key label");
        return -1;
    }
    size_t ll = strlen(label);
    if (ll == 0 || ll > VG_P11_KEY_LABEL_MAX) {
        set_err(err, err_size, "PKCS#11 key label must be 1 to %d bytes", VG_P11_KEY_LABEL_MAX);
        return -1;
    }
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG vlen = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_VALUE_LEN, &vlen, sizeof vlen},
        {CKA_LABEL, (void *)(uintptr_t)label, ll},
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_ENCRYPT, &yes, sizeof yes},
        {CKA_DECRYPT, &yes, sizeof yes},
        /* Only what vigil does with it: a key that can wrap could export
         * other keys, one that can derive could seed new ones. */
        {CKA_WRAP, &no, sizeof no},
        {CKA_UNWRAP, &no, sizeof no},
        {CKA_SIGN, &no, sizeof no},
        {CKA_VERIFY, &no, sizeof no},
        {CKA_DERIVE, &no, sizeof no},
    };
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE h = 0;
    CK_RV rv = p->fn->C_GenerateKey(p->session, &mech, tmpl, sizeof tmpl / sizeof tmpl[0], &h);
    if (rv != CKR_OK) {
        set_err(err, err_size, "PKCS#11: cannot generate AES-256 key '%s' in the token: %s%s",
                label, RVN(rv, rb),
                rv == CKR_SESSION_READ_ONLY ? " (read-only session)" : "");
        return -1;
    }
    *handle = h;
    return 0;
}

static void gcm_params(CK_GCM_PARAMS *gp, const uint8_t *iv, const uint8_t *aad, size_t aad_len)
{
    memset(gp, 0, sizeof *gp);
    gp->pIv = (CK_BYTE_PTR)(uintptr_t)iv;
    gp->ulIvLen = VG_P11_GCM_IV_BYTES;
    gp->ulIvBits = VG_P11_GCM_IV_BYTES * 8;
    gp->pAAD = (CK_BYTE_PTR)(uintptr_t)aad;
    gp->ulAADLen = aad_len;
    gp->ulTagBits = VG_P11_GCM_TAG_BYTES * 8;
}

int vg_p11_gcm_encrypt(struct vg_p11 *p, unsigned long handle,
                       const uint8_t iv[VG_P11_GCM_IV_BYTES], const uint8_t *aad, size_t aad_len,
                       const uint8_t *pt, size_t pt_len, uint8_t *out, size_t out_cap,
                       size_t *out_len, char *err, size_t err_size)
{
    char rb[24];
    if (out_len)
        *out_len = 0;
    if (!p || !iv || (!aad && aad_len) || !pt || !out || !out_len ||
        pt_len > SIZE_MAX - VG_P11_GCM_TAG_BYTES || out_cap < pt_len + VG_P11_GCM_TAG_BYTES) {
        set_err(err, err_size, "PKCS#11 encrypt: bad arguments");
        return -1;
    }
    CK_GCM_PARAMS gp;
    gcm_params(&gp, iv, aad, aad_len);
    CK_MECHANISM mech = {CKM_AES_GCM, &gp, sizeof gp};
    CK_RV rv = p->fn->C_EncryptInit(p->session, &mech, handle);
    if (rv != CKR_OK) {
        set_err(err, err_size, "PKCS#11: AES-GCM encrypt in the token failed: %s", RVN(rv, rb));
        return -1;
    }
    CK_ULONG n = out_cap;
    rv = p->fn->C_Encrypt(p->session, (CK_BYTE_PTR)(uintptr_t)pt, pt_len, out, &n);
    if (rv != CKR_OK || n != pt_len + VG_P11_GCM_TAG_BYTES) {
        sodium_memzero(out, out_cap);
        set_err(err, err_size, "PKCS#11: AES-GCM encrypt in the token failed: %s",
                rv != CKR_OK ? RVN(rv, rb) : "unexpected output length");
        return -1;
    }
    *out_len = n;
    return 0;
}

int vg_p11_gcm_decrypt(struct vg_p11 *p, unsigned long handle,
                       const uint8_t iv[VG_P11_GCM_IV_BYTES], const uint8_t *aad, size_t aad_len,
                       const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                       size_t *out_len, char *err, size_t err_size)
{
    char rb[24];
    if (out_len)
        *out_len = 0;
    if (!p || !iv || (!aad && aad_len) || !in || !out || !out_len ||
        in_len < VG_P11_GCM_TAG_BYTES || out_cap < in_len - VG_P11_GCM_TAG_BYTES) {
        set_err(err, err_size, "PKCS#11 decrypt: bad arguments");
        return -1;
    }
    /* Modules may want room for all of 'in' (tag included) before they
     * check the tag: decrypt into a local buffer that has it, copy out only
     * what authenticated, and wipe the rest. */
    uint8_t buf[256];
    if (in_len > sizeof buf) {
        set_err(err, err_size, "PKCS#11 decrypt: input too long");
        return -1;
    }
    CK_GCM_PARAMS gp;
    gcm_params(&gp, iv, aad, aad_len);
    CK_MECHANISM mech = {CKM_AES_GCM, &gp, sizeof gp};
    CK_RV rv = p->fn->C_DecryptInit(p->session, &mech, handle);
    if (rv != CKR_OK) {
        set_err(err, err_size, "PKCS#11: AES-GCM decrypt in the token failed: %s", RVN(rv, rb));
        return -1;
    }
    CK_ULONG n = sizeof buf;
    rv = p->fn->C_Decrypt(p->session, (CK_BYTE_PTR)(uintptr_t)in, in_len, buf, &n);
    if (rv != CKR_OK || n != in_len - VG_P11_GCM_TAG_BYTES) {
        sodium_memzero(buf, sizeof buf);
        sodium_memzero(out, out_cap);
        set_err(err, err_size, "PKCS#11: AES-GCM decrypt in the token failed: %s",
                rv != CKR_OK ? RVN(rv, rb) : "unexpected output length");
        return -1;
    }
    memcpy(out, buf, n);
    sodium_memzero(buf, sizeof buf);
    *out_len = n;
    return 0;
}
