/* Unit tests for crypto/kek and crypto/p11: the KEK in a file and in a
 * PKCS#11 token (SoftHSM2), [keys] in vigil.conf, and staged rotation
 * files. Every refusal has its test: missing, wrong mode, wrong size,
 * symlink, wrong PIN, wrong token, altered or foreign kek.p11, a token key
 * that could leave the token.
 *
 * SoftHSM2 is required (scripts/install-deps installs it): without it the
 * PKCS#11 tests fail rather than skip, so a machine that cannot test the
 * token path cannot pass. Tokens live in a temporary directory of this
 * test (SOFTHSM2_CONF); PINs are random per run and never printed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#if __has_include(<p11-kit/pkcs11.h>)
#include <p11-kit/pkcs11.h>
#else
#include <p11-kit-1/p11-kit/pkcs11.h>
#endif

#include "core/config.h"
#include "crypto/crypto.h"
#include "crypto/kek.h"
#include "crypto/p11.h"

#define SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define TOKEN_A "vg-test-a"
#define TOKEN_B "vg-test-b"

/* ---- fixture: a temporary directory with two SoftHSM2 tokens ----------- */

static char g_dir[256];
static char g_user_pin[33]; /* hex of 16 random bytes */
static char g_so_pin[33];

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static const char *tpath(const char *name)
{
    static char bufs[4][1024];
    static unsigned next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", g_dir, name);
    return b;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static size_t read_file(const char *path, uint8_t *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, cap);
    close(fd);
    assert_true(n >= 0);
    return (size_t)n;
}

/* Raw PKCS#11, independent of crypto/p11, to set tokens up and to look at
 * what vigil left in them. */
struct raw {
    void *dl;
    CK_FUNCTION_LIST_PTR fn;
    CK_SESSION_HANDLE s;
};

static void raw_load(struct raw *r)
{
    memset(r, 0, sizeof *r);
    r->dl = dlopen(SOFTHSM_MODULE, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(r->dl);
    void *sym = dlsym(r->dl, "C_GetFunctionList");
    assert_non_null(sym);
    CK_C_GetFunctionList get;
    memcpy(&get, &sym, sizeof get);
    assert_int_equal(get(&r->fn), CKR_OK);
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    assert_int_equal(r->fn->C_Initialize(&args), CKR_OK);
}

static void raw_unload(struct raw *r)
{
    r->fn->C_Finalize(NULL);
    dlclose(r->dl);
}

static void padded(CK_UTF8CHAR out[32], const char *label)
{
    memset(out, ' ', 32);
    memcpy(out, label, strlen(label));
}

/* Initialises the first free slot as token 'label' with the test's PINs. */
static void raw_init_token(const char *label)
{
    struct raw r;
    raw_load(&r);
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    assert_int_equal(r.fn->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    CK_SLOT_ID free_slot = 0;
    int found = 0;
    for (CK_ULONG i = 0; i < n && !found; i++) {
        CK_TOKEN_INFO ti;
        assert_int_equal(r.fn->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        if (!(ti.flags & CKF_TOKEN_INITIALIZED)) {
            free_slot = slots[i];
            found = 1;
        }
    }
    assert_true(found);
    CK_UTF8CHAR lab[32];
    padded(lab, label);
    assert_int_equal(r.fn->C_InitToken(free_slot, (CK_UTF8CHAR_PTR)g_so_pin, strlen(g_so_pin), lab),
                     CKR_OK);
    CK_SESSION_HANDLE s;
    assert_int_equal(r.fn->C_OpenSession(free_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
                                         NULL, &s),
                     CKR_OK);
    assert_int_equal(r.fn->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)g_so_pin, strlen(g_so_pin)),
                     CKR_OK);
    assert_int_equal(r.fn->C_InitPIN(s, (CK_UTF8CHAR_PTR)g_user_pin, strlen(g_user_pin)), CKR_OK);
    r.fn->C_Logout(s);
    r.fn->C_CloseSession(s);
    raw_unload(&r);
}

/* A logged-in read-write session on token 'label'. */
static void raw_session(struct raw *r, const char *label)
{
    raw_load(r);
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    assert_int_equal(r->fn->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    CK_UTF8CHAR want[32];
    padded(want, label);
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        assert_int_equal(r->fn->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        if (memcmp(ti.label, want, 32) != 0)
            continue;
        assert_int_equal(r->fn->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                              NULL, NULL, &r->s),
                         CKR_OK);
        assert_int_equal(
            r->fn->C_Login(r->s, CKU_USER, (CK_UTF8CHAR_PTR)g_user_pin, strlen(g_user_pin)),
            CKR_OK);
        return;
    }
    fail_msg("token %s not found", label);
}

static void raw_close(struct raw *r)
{
    r->fn->C_Logout(r->s);
    r->fn->C_CloseSession(r->s);
    raw_unload(r);
}

/* Handles of secret keys labelled 'label' (at most 4). */
static CK_ULONG raw_find(struct raw *r, const char *label, CK_OBJECT_HANDLE out[4])
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, (void *)label, strlen(label)}};
    CK_ULONG n = 0;
    assert_int_equal(r->fn->C_FindObjectsInit(r->s, t, 2), CKR_OK);
    assert_int_equal(r->fn->C_FindObjects(r->s, out, 4, &n), CKR_OK);
    assert_int_equal(r->fn->C_FindObjectsFinal(r->s), CKR_OK);
    return n;
}

static int group_setup(void **state)
{
    (void)state;
    if (access(SOFTHSM_MODULE, R_OK) != 0) {
        fprintf(stderr, "test_kek: %s is missing: install softhsm2 (scripts/install-deps); "
                        "the PKCS#11 KEK cannot be tested without it\n",
                SOFTHSM_MODULE);
        return -1; /* cmocka fails the whole group: no silent skip */
    }
    if (vg_crypto_init() != 0)
        return -1;
    snprintf(g_dir, sizeof g_dir, "/tmp/vg_test_kek_XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    uint8_t r[16];
    vg_random(r, sizeof r);
    vg_hex(r, sizeof r, g_user_pin);
    vg_random(r, sizeof r);
    vg_hex(r, sizeof r, g_so_pin);
    char conf[1024], tokens[600];
    snprintf(tokens, sizeof tokens, "%s/tokens", g_dir);
    if (mkdir(tokens, 0700) != 0)
        return -1;
    snprintf(conf, sizeof conf,
             "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
             tokens);
    char cpath[600];
    snprintf(cpath, sizeof cpath, "%s/softhsm2.conf", g_dir);
    FILE *f = fopen(cpath, "w");
    if (!f)
        return -1;
    fputs(conf, f);
    fclose(f);
    setenv("SOFTHSM2_CONF", cpath, 1);
    raw_init_token(TOKEN_A);
    raw_init_token(TOKEN_B);
    write_file(tpath("pin"), g_user_pin, strlen(g_user_pin), 0600);
    /* A PIN file as editors leave it: with a newline. Also the right PIN. */
    char withnl[40];
    snprintf(withnl, sizeof withnl, "%s\n", g_user_pin);
    write_file(tpath("pin-nl"), withnl, strlen(withnl), 0400);
    char wrong[40];
    snprintf(wrong, sizeof wrong, "%s", g_user_pin);
    wrong[0] = wrong[0] == '0' ? '1' : '0';
    write_file(tpath("wrongpin"), wrong, strlen(wrong), 0600);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_dir[0])
        rm_tree(g_dir);
    sodium_memzero(g_user_pin, sizeof g_user_pin);
    sodium_memzero(g_so_pin, sizeof g_so_pin);
    return 0;
}

/* A fresh data directory "d<N>/keys" for each test. */
static const char *new_datadir(void)
{
    static char bufs[4][512]; /* up to four live at once in one test */
    static int n;
    char *d = bufs[n % 4];
    snprintf(d, sizeof bufs[0], "%s/d%d", g_dir, ++n);
    assert_int_equal(mkdir(d, 0700), 0);
    char k[600];
    snprintf(k, sizeof k, "%s/keys", d);
    assert_int_equal(mkdir(k, 0700), 0);
    return d;
}

static void p11_source(struct vg_kek_source *src, const char *datadir, const char *token,
                       const char *pin_file, const char *key_label)
{
    struct vg_config cfg;
    char err[512] = "";
    vg_config_defaults(&cfg);
    vg_strlcpy(cfg.kek_mode, "pkcs11", sizeof cfg.kek_mode);
    vg_strlcpy(cfg.pkcs11_module, SOFTHSM_MODULE, sizeof cfg.pkcs11_module);
    vg_strlcpy(cfg.pkcs11_token, token, sizeof cfg.pkcs11_token);
    vg_strlcpy(cfg.pkcs11_pin_file, pin_file, sizeof cfg.pkcs11_pin_file);
    if (key_label)
        vg_strlcpy(cfg.pkcs11_key_label, key_label, sizeof cfg.pkcs11_key_label);
    if (vg_kek_source_from_config(&cfg, datadir, src, err, sizeof err) != 0)
        fail_msg("from_config: %s", err);
    assert_int_equal(src->kind, VG_KEK_PKCS11);
}

static void file_source(struct vg_kek_source *src, const char *datadir)
{
    struct vg_config cfg;
    char err[512] = "";
    vg_config_defaults(&cfg);
    assert_int_equal(vg_kek_source_from_config(&cfg, datadir, src, err, sizeof err), 0);
    assert_int_equal(src->kind, VG_KEK_FILE);
}

/* The message must mention 'needle' and never the PIN. */
static void assert_refused(int rc, const char *err, const char *needle)
{
    if (rc != -1)
        fail_msg("accepted; expected a refusal mentioning '%s'", needle);
    if (!strstr(err, needle))
        fail_msg("refusal does not mention '%s': %s", needle, err);
    assert_null(strstr(err, g_user_pin));
}

/* ---- file source ------------------------------------------------------- */

static void test_file_create_load(void **state)
{
    (void)state;
    struct vg_kek_source src;
    uint8_t k1[VG_KEY_BYTES], k2[VG_KEY_BYTES];
    char err[512];
    const char *d = new_datadir();
    file_source(&src, d);
    char want[600];
    snprintf(want, sizeof want, "%s/keys/kek", d);
    assert_string_equal(src.path, want);
    assert_int_equal(vg_kek_source_probe(&src, err, sizeof err), 0);
    assert_int_equal(vg_kek_source_create(&src, k1, err, sizeof err), 0);
    struct stat st;
    assert_int_equal(stat(src.path, &st), 0);
    assert_int_equal(st.st_size, 32);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(vg_kek_source_load(&src, k2, err, sizeof err), 0);
    assert_memory_equal(k1, k2, VG_KEY_BYTES);
    /* Never over an existing key. */
    assert_refused(vg_kek_source_create(&src, k2, err, sizeof err), err, "already exists");
    assert_refused(vg_kek_source_save(&src, k2, err, sizeof err), err, "already exists");
    assert_int_equal(vg_kek_source_load(&src, k2, err, sizeof err), 0);
    assert_memory_equal(k1, k2, VG_KEY_BYTES);
}

static void test_file_refusals(void **state)
{
    (void)state;
    struct vg_kek_source src;
    uint8_t k[VG_KEY_BYTES], orig[VG_KEY_BYTES];
    char err[512];
    const char *d = new_datadir();
    file_source(&src, d);

    assert_refused(vg_kek_source_load(&src, k, err, sizeof err), err, "missing");
    struct stat st;
    assert_int_equal(lstat(src.path, &st), -1); /* and nothing was created */

    assert_int_equal(vg_kek_source_create(&src, orig, err, sizeof err), 0);
    assert_int_equal(chmod(src.path, 0644), 0);
    assert_refused(vg_kek_source_load(&src, k, err, sizeof err), err, "chmod 600");

    write_file(src.path, orig, 16, 0600);
    assert_refused(vg_kek_source_load(&src, k, err, sizeof err), err, "32 bytes");
    uint8_t longer[33] = {0};
    write_file(src.path, longer, sizeof longer, 0600);
    assert_refused(vg_kek_source_load(&src, k, err, sizeof err), err, "32 bytes");

    char real[600];
    snprintf(real, sizeof real, "%s/real-kek", d);
    write_file(real, orig, sizeof orig, 0600);
    unlink(src.path);
    assert_int_equal(symlink(real, src.path), 0);
    assert_refused(vg_kek_source_load(&src, k, err, sizeof err), err, "symbolic link");

    unlink(src.path);
    assert_int_equal(mkdir(src.path, 0700), 0);
    assert_refused(vg_kek_source_load(&src, k, err, sizeof err), err, "not a regular file");
    rmdir(src.path);
}

static void test_file_rotation(void **state)
{
    (void)state;
    struct vg_kek_source src;
    uint8_t cur[VG_KEY_BYTES], next[VG_KEY_BYTES], k[VG_KEY_BYTES];
    char err[512], next_path[1100];
    const char *d = new_datadir();
    file_source(&src, d);
    snprintf(next_path, sizeof next_path, "%s.next", src.path);
    assert_int_equal(vg_kek_source_create(&src, cur, err, sizeof err), 0);

    assert_int_equal(vg_kek_source_load_next(&src, k, err, sizeof err), VG_KEK_NONE);
    assert_refused(vg_kek_source_promote_next(&src, err, sizeof err), err, "no next KEK");
    assert_int_equal(vg_kek_source_discard_next(&src, err, sizeof err), 0); /* nothing: fine */

    vg_random(next, sizeof next);
    assert_int_equal(vg_kek_source_stage_next(&src, next, err, sizeof err), 0);
    struct stat st;
    assert_int_equal(stat(next_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(vg_kek_source_load_next(&src, k, err, sizeof err), VG_KEK_LOADED);
    assert_memory_equal(k, next, VG_KEY_BYTES);
    /* The current one is untouched until promotion. */
    assert_int_equal(vg_kek_source_load(&src, k, err, sizeof err), 0);
    assert_memory_equal(k, cur, VG_KEY_BYTES);
    /* A second staging would lose the first: refused. */
    uint8_t other[VG_KEY_BYTES];
    vg_random(other, sizeof other);
    assert_refused(vg_kek_source_stage_next(&src, other, err, sizeof err), err, "already staged");
    assert_int_equal(vg_kek_source_load_next(&src, k, err, sizeof err), VG_KEK_LOADED);
    assert_memory_equal(k, next, VG_KEY_BYTES);

    assert_int_equal(vg_kek_source_promote_next(&src, err, sizeof err), 0);
    assert_int_equal(vg_kek_source_load(&src, k, err, sizeof err), 0);
    assert_memory_equal(k, next, VG_KEY_BYTES);
    assert_int_equal(vg_kek_source_load_next(&src, k, err, sizeof err), VG_KEK_NONE);

    /* Stage then discard: the current key stays, nothing is staged. */
    assert_int_equal(vg_kek_source_stage_next(&src, other, err, sizeof err), 0);
    assert_int_equal(vg_kek_source_discard_next(&src, err, sizeof err), 0);
    assert_int_equal(lstat(next_path, &st), -1);
    assert_int_equal(vg_kek_source_load_next(&src, k, err, sizeof err), VG_KEK_NONE);
    assert_int_equal(vg_kek_source_load(&src, k, err, sizeof err), 0);
    assert_memory_equal(k, next, VG_KEY_BYTES);

    /* A stale temporary from a crash does not block a new staging. */
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.next.tmp", src.path);
    write_file(tmp, "junk", 4, 0600);
    assert_int_equal(vg_kek_source_stage_next(&src, other, err, sizeof err), 0);
    assert_int_equal(lstat(tmp, &st), -1);
    assert_int_equal(vg_kek_source_discard_next(&src, err, sizeof err), 0);
}

static void test_file_rotation_refusals(void **state)
{
    (void)state;
    struct vg_kek_source src;
    uint8_t cur[VG_KEY_BYTES], k[VG_KEY_BYTES];
    char err[512], next_path[1100];
    const char *d = new_datadir();
    file_source(&src, d);
    snprintf(next_path, sizeof next_path, "%s.next", src.path);
    assert_int_equal(vg_kek_source_create(&src, cur, err, sizeof err), 0);

    /* A damaged staged key: load_next says error (-1, not "none"), and
     * promote refuses to put it over the good one. */
    write_file(next_path, cur, 16, 0600);
    assert_int_equal(vg_kek_source_load_next(&src, k, err, sizeof err), -1);
    assert_refused(vg_kek_source_promote_next(&src, err, sizeof err), err, "wrong size");
    assert_int_equal(vg_kek_source_load(&src, k, err, sizeof err), 0);
    assert_memory_equal(k, cur, VG_KEY_BYTES);

    write_file(next_path, cur, sizeof cur, 0644);
    assert_int_equal(vg_kek_source_load_next(&src, k, err, sizeof err), -1);
    assert_true(strstr(err, "chmod 600") != NULL);
    assert_refused(vg_kek_source_promote_next(&src, err, sizeof err), err, "chmod 600");

    unlink(next_path);
    assert_int_equal(symlink(src.path, next_path), 0);
    assert_int_equal(vg_kek_source_load_next(&src, k, err, sizeof err), -1);
    assert_refused(vg_kek_source_promote_next(&src, err, sizeof err), err, "symbolic link");
    assert_int_equal(vg_kek_source_discard_next(&src, err, sizeof err), 0);
    struct stat st;
    assert_int_equal(lstat(next_path, &st), -1);
    assert_int_equal(vg_kek_source_load(&src, k, err, sizeof err), 0); /* link target intact */
    assert_memory_equal(k, cur, VG_KEY_BYTES);
}

/* ---- [keys] in vigil.conf ---------------------------------------------- */

static const char *conf_tmp(const char *text)
{
    const char *p = tpath("conf.ini");
    write_file(p, text, strlen(text), 0600);
    return p;
}

static void test_config_keys(void **state)
{
    (void)state;
    struct vg_config cfg;
    struct vg_kek_source src;
    char err[512];
    vg_config_defaults(&cfg);
    assert_string_equal(cfg.kek_mode, "file");
    assert_string_equal(cfg.pkcs11_key_label, "vigil-kek-wrap");

    const char *p = conf_tmp("[keys]\nkek = pkcs11\npkcs11_module = /usr/lib/x.so\n"
                             "pkcs11_token = ward 7\npkcs11_pin_file = secrets/pin\n"
                             "pkcs11_key_label = k1\n");
    vg_config_defaults(&cfg);
    if (vg_config_load(p, &cfg, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_string_equal(cfg.kek_mode, "pkcs11");
    assert_string_equal(cfg.pkcs11_token, "ward 7");
    assert_int_equal(vg_kek_source_from_config(&cfg, "/data", &src, err, sizeof err), 0);
    assert_string_equal(src.path, "/data/keys/kek.p11");
    assert_string_equal(src.pin_file, "/data/secrets/pin");
    assert_string_equal(src.module, "/usr/lib/x.so");
    assert_string_equal(src.key_label, "k1");

    p = conf_tmp("[keys]\nkek_file = /safe/kek\n");
    vg_config_defaults(&cfg);
    assert_int_equal(vg_config_load(p, &cfg, err, sizeof err), 0);
    assert_int_equal(vg_kek_source_from_config(&cfg, "/data", &src, err, sizeof err), 0);
    assert_int_equal(src.kind, VG_KEK_FILE);
    assert_string_equal(src.path, "/safe/kek");

    const char *bad[] = {
        "[keys]\nkek = hsm\n",
        "[keys]\npkcs11_module = lib/x.so\n",
        "[keys]\npkcs11_pin_env = 1PIN\n",
        "[keys]\npkcs11_pin_env = PIN-X\n",
        "[keys]\npkcs11_token = 0123456789abcdef0123456789abcdef0\n",
        "[keys]\npkcs11_key_label =\n",
        "[keys]\npkcs11_slot = 0\n",
        "[keys]\npin = 1234\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = conf_tmp(bad[i]);
        vg_config_defaults(&cfg);
        err[0] = '\0';
        if (vg_config_load(p, &cfg, err, sizeof err) != -1)
            fail_msg("accepted bad config: %s", bad[i]);
        assert_true(strlen(err) > 0);
    }

    /* Incomplete token settings are refused when the source is built. */
    const char *incomplete[] = {
        "[keys]\nkek = pkcs11\npkcs11_token = t\npkcs11_pin_file = /p\n",
        "[keys]\nkek = pkcs11\npkcs11_module = /m.so\npkcs11_pin_file = /p\n",
        "[keys]\nkek = pkcs11\npkcs11_module = /m.so\npkcs11_token = t\n",
        "[keys]\nkek = pkcs11\npkcs11_module = /m.so\npkcs11_token = t\n"
        "pkcs11_pin_file = /p\npkcs11_pin_env = VIGIL_PIN\n",
    };
    for (size_t i = 0; i < sizeof incomplete / sizeof incomplete[0]; i++) {
        p = conf_tmp(incomplete[i]);
        vg_config_defaults(&cfg);
        assert_int_equal(vg_config_load(p, &cfg, err, sizeof err), 0);
        err[0] = '\0';
        if (vg_kek_source_from_config(&cfg, "/data", &src, err, sizeof err) != -1)
            fail_msg("accepted incomplete [keys]: %s", incomplete[i]);
        assert_non_null(strstr(err, "pkcs11"));
    }
}

static void test_config_write_keys(void **state)
{
    (void)state;
    struct vg_config w, r;
    char err[512];
    const char *p = tpath("written.conf");
    unlink(p);
    vg_config_defaults(&w);
    vg_strlcpy(w.kek_mode, "pkcs11", sizeof w.kek_mode);
    vg_strlcpy(w.pkcs11_module, SOFTHSM_MODULE, sizeof w.pkcs11_module);
    vg_strlcpy(w.pkcs11_token, "ward 7 token", sizeof w.pkcs11_token);
    vg_strlcpy(w.pkcs11_pin_env, "VIGIL_TOKEN_PIN", sizeof w.pkcs11_pin_env);
    vg_strlcpy(w.pkcs11_key_label, "kek-wrap-2", sizeof w.pkcs11_key_label);
    assert_int_equal(vg_config_write_default_keys(p, &w, err, sizeof err), 0);
    vg_config_defaults(&r);
    if (vg_config_load(p, &r, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_string_equal(r.kek_mode, "pkcs11");
    assert_string_equal(r.pkcs11_module, SOFTHSM_MODULE);
    assert_string_equal(r.pkcs11_token, "ward 7 token");
    assert_string_equal(r.pkcs11_pin_env, "VIGIL_TOKEN_PIN");
    assert_string_equal(r.pkcs11_pin_file, "");
    assert_string_equal(r.pkcs11_key_label, "kek-wrap-2");
    assert_string_equal(r.mqtt_listen, "127.0.0.1:8883"); /* the rest still there */
    /* O_EXCL */
    assert_int_equal(vg_config_write_default_keys(p, &w, err, sizeof err), -1);
    unlink(p);

    /* Values that would not read back as written are refused, and no
     * file is left behind. */
    const char *bad[] = {"a;b", " lead", "trail ", "x#y", "new\nline"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vg_strlcpy(w.pkcs11_token, bad[i], sizeof w.pkcs11_token);
        err[0] = '\0';
        if (vg_config_write_default_keys(p, &w, err, sizeof err) != -1)
            fail_msg("wrote token label '%s'", bad[i]);
        assert_true(strlen(err) > 0);
        assert_int_equal(access(p, F_OK), -1);
    }

    /* The default file (kek = file) loads and leaves [keys] at defaults. */
    vg_config_defaults(&w);
    assert_int_equal(vg_config_write_default_keys(p, &w, err, sizeof err), 0);
    vg_config_defaults(&r);
    assert_int_equal(vg_config_load(p, &r, err, sizeof err), 0);
    assert_string_equal(r.kek_mode, "file");
    assert_string_equal(r.pkcs11_module, "");
    unlink(p);
}

/* ---- PKCS#11 ----------------------------------------------------------- */

static void test_p11_create_load(void **state)
{
    (void)state;
    struct vg_kek_source src;
    uint8_t k1[VG_KEY_BYTES], k2[VG_KEY_BYTES];
    uint8_t blob[512];
    char err[512];
    const char *d = new_datadir();
    p11_source(&src, d, TOKEN_A, tpath("pin"), "create-load");
    assert_int_equal(vg_kek_source_probe(&src, err, sizeof err), 0);
    if (vg_kek_source_create(&src, k1, err, sizeof err) != 0)
        fail_msg("create: %s", err);
    if (vg_kek_source_load(&src, k2, err, sizeof err) != 0)
        fail_msg("load: %s", err);
    assert_memory_equal(k1, k2, VG_KEY_BYTES);

    /* kek.p11: 0600, the format of kek.h, and the KEK nowhere in it. */
    struct stat st;
    assert_int_equal(stat(src.path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    size_t n = read_file(src.path, blob, sizeof blob);
    size_t ll = strlen("create-load");
    assert_int_equal(n, 8 + 2 + ll + 12 + 48);
    assert_memory_equal(blob, "VGKEKP11", 8);
    assert_int_equal(blob[8], 1);
    assert_int_equal(blob[9], ll);
    assert_memory_equal(blob + 10, "create-load", ll);
    assert_null(memmem(blob, n, k1, VG_KEY_BYTES));
    assert_null(memmem(blob, n, k1, 8)); /* not even a part of it */
    /* No clear KEK file was made. */
    char kek_clear[600];
    snprintf(kek_clear, sizeof kek_clear, "%s/keys/kek", d);
    assert_int_equal(access(kek_clear, F_OK), -1);

    /* The same KEK loads again with the PIN file that ends in a newline,
     * and twice in a row (the module is finalised and reloaded). */
    p11_source(&src, d, TOKEN_A, tpath("pin-nl"), "create-load");
    assert_int_equal(vg_kek_source_load(&src, k2, err, sizeof err), 0);
    assert_memory_equal(k1, k2, VG_KEY_BYTES);
    assert_int_equal(vg_kek_source_load(&src, k2, err, sizeof err), 0);
    assert_memory_equal(k1, k2, VG_KEY_BYTES);

    /* Never over an existing kek.p11. */
    assert_refused(vg_kek_source_create(&src, k2, err, sizeof err), err, "already exists");
    assert_int_equal(vg_kek_source_load(&src, k2, err, sizeof err), 0);
    assert_memory_equal(k1, k2, VG_KEY_BYTES);

    /* A second data directory on the same token reuses the token key
     * (one key, not one per init) with its own KEK. */
    const char *d2 = new_datadir();
    uint8_t k3[VG_KEY_BYTES];
    p11_source(&src, d2, TOKEN_A, tpath("pin"), "create-load");
    assert_int_equal(vg_kek_source_create(&src, k3, err, sizeof err), 0);
    assert_memory_not_equal(k1, k3, VG_KEY_BYTES);
    struct raw r;
    CK_OBJECT_HANDLE h[4];
    raw_session(&r, TOKEN_A);
    assert_int_equal(raw_find(&r, "create-load", h), 1);
    raw_close(&r);
}

static void test_p11_key_not_extractable(void **state)
{
    (void)state;
    struct vg_kek_source src;
    uint8_t k[VG_KEY_BYTES];
    char err[512];
    p11_source(&src, new_datadir(), TOKEN_A, tpath("pin"), "attrs");
    assert_int_equal(vg_kek_source_create(&src, k, err, sizeof err), 0);

    struct raw r;
    CK_OBJECT_HANDLE h[4];
    raw_session(&r, TOKEN_A);
    assert_int_equal(raw_find(&r, "attrs", h), 1);
    uint8_t value[64];
    CK_ATTRIBUTE va = {CKA_VALUE, value, sizeof value};
    CK_RV rv = r.fn->C_GetAttributeValue(r.s, h[0], &va, 1);
    assert_int_equal(rv, CKR_ATTRIBUTE_SENSITIVE);
    assert_int_equal((long)va.ulValueLen, -1L); /* CK_UNAVAILABLE_INFORMATION */

    CK_BBOOL sens = CK_FALSE, extr = CK_TRUE, never = CK_FALSE, tok = CK_FALSE, wrap = CK_TRUE,
             priv = CK_FALSE;
    CK_KEY_TYPE kt = 0;
    CK_ULONG len = 0;
    CK_ATTRIBUTE a[] = {
        {CKA_SENSITIVE, &sens, sizeof sens},   {CKA_EXTRACTABLE, &extr, sizeof extr},
        {CKA_NEVER_EXTRACTABLE, &never, sizeof never}, {CKA_TOKEN, &tok, sizeof tok},
        {CKA_WRAP, &wrap, sizeof wrap},        {CKA_PRIVATE, &priv, sizeof priv},
        {CKA_KEY_TYPE, &kt, sizeof kt},        {CKA_VALUE_LEN, &len, sizeof len},
    };
    assert_int_equal(r.fn->C_GetAttributeValue(r.s, h[0], a, sizeof a / sizeof a[0]), CKR_OK);
    assert_int_equal(sens, CK_TRUE);
    assert_int_equal(extr, CK_FALSE);
    assert_int_equal(never, CK_TRUE);
    assert_int_equal(tok, CK_TRUE);
    assert_int_equal(wrap, CK_FALSE);
    assert_int_equal(priv, CK_TRUE);
    assert_int_equal(kt, CKK_AES);
    assert_int_equal(len, 32);

    /* Wrapping it out under another key is refused too. */
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES;
    CK_ULONG vlen = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE wt[] = {
        {CKA_CLASS, &cls, sizeof cls}, {CKA_KEY_TYPE, &aes, sizeof aes},
        {CKA_VALUE_LEN, &vlen, sizeof vlen}, {CKA_TOKEN, &no, sizeof no},
        {CKA_WRAP, &yes, sizeof yes},
    };
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE wk;
    assert_int_equal(r.fn->C_GenerateKey(r.s, &gen, wt, sizeof wt / sizeof wt[0], &wk), CKR_OK);
    CK_MECHANISM kw = {CKM_AES_KEY_WRAP, NULL, 0};
    uint8_t wrapped[128];
    CK_ULONG wl = sizeof wrapped;
    rv = r.fn->C_WrapKey(r.s, &kw, wk, h[0], wrapped, &wl);
    assert_int_not_equal(rv, CKR_OK);
    raw_close(&r);
}

static void test_p11_refuses_weak_token_key(void **state)
{
    (void)state;
    /* Someone left an extractable AES key under vigil's label: vigil
     * must not encrypt its KEK with it, nor add a second key beside it. */
    struct raw r;
    raw_session(&r, TOKEN_A);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES;
    CK_ULONG vlen = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    const char *label = "weak";
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof cls},       {CKA_KEY_TYPE, &aes, sizeof aes},
        {CKA_VALUE_LEN, &vlen, sizeof vlen}, {CKA_TOKEN, &yes, sizeof yes},
        {CKA_SENSITIVE, &no, sizeof no},     {CKA_EXTRACTABLE, &yes, sizeof yes},
        {CKA_ENCRYPT, &yes, sizeof yes},     {CKA_DECRYPT, &yes, sizeof yes},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE h;
    assert_int_equal(r.fn->C_GenerateKey(r.s, &gen, t, sizeof t / sizeof t[0], &h), CKR_OK);
    raw_close(&r);

    struct vg_kek_source src;
    uint8_t k[VG_KEY_BYTES];
    char err[512];
    const char *d = new_datadir();
    p11_source(&src, d, TOKEN_A, tpath("pin"), "weak");
    assert_refused(vg_kek_source_probe(&src, err, sizeof err), err, "could leave the token");
    assert_refused(vg_kek_source_create(&src, k, err, sizeof err), err, "could leave the token");
    assert_int_equal(access(src.path, F_OK), -1);
    CK_OBJECT_HANDLE hs[4];
    raw_session(&r, TOKEN_A);
    assert_int_equal(raw_find(&r, "weak", hs), 1);
    raw_close(&r);
}

static void test_p11_wrong_pin(void **state)
{
    (void)state;
    struct vg_kek_source src;
    uint8_t k[VG_KEY_BYTES];
    char err[512];
    const char *d = new_datadir();
    p11_source(&src, d, TOKEN_A, tpath("pin"), "pin-test");
    assert_int_equal(vg_kek_source_create(&src, k, err, sizeof err), 0);

    p11_source(&src, d, TOKEN_A, tpath("wrongpin"), "pin-test");
    uint8_t out[VG_KEY_BYTES];
    memset(out, 0xa5, sizeof out);
    assert_refused(vg_kek_source_load(&src, out, err, sizeof err), err, "CKR_PIN_INCORRECT");
    assert_null(memmem(out, sizeof out, k, 8));
    assert_refused(vg_kek_source_probe(&src, err, sizeof err), err, "CKR_PIN_INCORRECT");
    /* A wrong PIN never makes a key or a file either. */
    const char *d2 = new_datadir();
    p11_source(&src, d2, TOKEN_A, tpath("wrongpin"), "pin-test-new");
    assert_refused(vg_kek_source_create(&src, k, err, sizeof err), err, "CKR_PIN_INCORRECT");
    assert_int_equal(access(src.path, F_OK), -1);

    /* The PIN file must be private, and present. */
    write_file(tpath("pin-644"), g_user_pin, strlen(g_user_pin), 0644);
    p11_source(&src, d, TOKEN_A, tpath("pin-644"), "pin-test");
    assert_refused(vg_kek_source_load(&src, out, err, sizeof err), err, "group or others");
    assert_refused(vg_kek_source_load(&src, out, err, sizeof err), err, "PIN file");
    p11_source(&src, d, TOKEN_A, tpath("no-such-pin"), "pin-test");
    assert_refused(vg_kek_source_load(&src, out, err, sizeof err), err, "PIN file");
    write_file(tpath("pin-empty"), "\n", 1, 0600);
    p11_source(&src, d, TOKEN_A, tpath("pin-empty"), "pin-test");
    assert_refused(vg_kek_source_load(&src, out, err, sizeof err), err, "empty");
}

static void test_p11_pin_env(void **state)
{
    (void)state;
    struct vg_config cfg;
    struct vg_kek_source src;
    uint8_t k1[VG_KEY_BYTES], k2[VG_KEY_BYTES];
    char err[512];
    const char *d = new_datadir();
    vg_config_defaults(&cfg);
    vg_strlcpy(cfg.kek_mode, "pkcs11", sizeof cfg.kek_mode);
    vg_strlcpy(cfg.pkcs11_module, SOFTHSM_MODULE, sizeof cfg.pkcs11_module);
    vg_strlcpy(cfg.pkcs11_token, TOKEN_A, sizeof cfg.pkcs11_token);
    vg_strlcpy(cfg.pkcs11_pin_env, "VG_TEST_KEK_PIN", sizeof cfg.pkcs11_pin_env);
    assert_int_equal(vg_kek_source_from_config(&cfg, d, &src, err, sizeof err), 0);
    unsetenv("VG_TEST_KEK_PIN");
    assert_refused(vg_kek_source_create(&src, k1, err, sizeof err), err, "VG_TEST_KEK_PIN");
    setenv("VG_TEST_KEK_PIN", g_user_pin, 1);
    assert_int_equal(vg_kek_source_create(&src, k1, err, sizeof err), 0);
    assert_int_equal(vg_kek_source_load(&src, k2, err, sizeof err), 0);
    assert_memory_equal(k1, k2, VG_KEY_BYTES);
    setenv("VG_TEST_KEK_PIN", "not-the-pin", 1);
    assert_refused(vg_kek_source_load(&src, k2, err, sizeof err), err, "CKR_PIN_INCORRECT");
    unsetenv("VG_TEST_KEK_PIN");
}

static void test_p11_wrong_token(void **state)
{
    (void)state;
    struct vg_kek_source src;
    uint8_t k[VG_KEY_BYTES];
    char err[512];
    const char *d = new_datadir();
    p11_source(&src, d, TOKEN_A, tpath("pin"), "token-test");
    assert_int_equal(vg_kek_source_create(&src, k, err, sizeof err), 0);
    p11_source(&src, d, "vg-no-such-token", tpath("pin"), "token-test");
    assert_refused(vg_kek_source_load(&src, k, err, sizeof err), err, "CKR_TOKEN_NOT_PRESENT");
    assert_refused(vg_kek_source_load(&src, k, err, sizeof err), err, "vg-no-such-token");

    /* And a module that is not there, or not a PKCS#11 module. */
    struct vg_config cfg;
    vg_config_defaults(&cfg);
    vg_strlcpy(cfg.kek_mode, "pkcs11", sizeof cfg.kek_mode);
    vg_strlcpy(cfg.pkcs11_token, TOKEN_A, sizeof cfg.pkcs11_token);
    vg_strlcpy(cfg.pkcs11_pin_file, tpath("pin"), sizeof cfg.pkcs11_pin_file);
    vg_strlcpy(cfg.pkcs11_module, "/nonexistent/libnothing.so", sizeof cfg.pkcs11_module);
    assert_int_equal(vg_kek_source_from_config(&cfg, d, &src, err, sizeof err), 0);
    assert_refused(vg_kek_source_load(&src, k, err, sizeof err), err, "/nonexistent/libnothing.so");
    const char *libc = "/lib/x86_64-linux-gnu/libc.so.6";
    if (access(libc, R_OK) == 0) {
        vg_strlcpy(cfg.pkcs11_module, libc, sizeof cfg.pkcs11_module);
        assert_int_equal(vg_kek_source_from_config(&cfg, d, &src, err, sizeof err), 0);
        assert_refused(vg_kek_source_load(&src, k, err, sizeof err), err, "C_GetFunctionList");
    }
    /* A module others may write to is someone else's code: refused. */
    const char *copy = tpath("writable-module.so");
    uint8_t *lib = malloc(1 << 20);
    assert_non_null(lib);
    int in = open(SOFTHSM_MODULE, O_RDONLY);
    assert_true(in >= 0);
    int out = open(copy, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    assert_true(out >= 0);
    ssize_t n;
    while ((n = read(in, lib, 1 << 20)) > 0)
        assert_int_equal(write(out, lib, (size_t)n), n);
    close(in);
    close(out);
    free(lib);
    assert_int_equal(chmod(copy, 0666), 0);
    vg_strlcpy(cfg.pkcs11_module, copy, sizeof cfg.pkcs11_module);
    assert_int_equal(vg_kek_source_from_config(&cfg, d, &src, err, sizeof err), 0);
    assert_refused(vg_kek_source_load(&src, k, err, sizeof err), err, "writable by group");
    unlink(copy);
}

static void test_p11_altered_file(void **state)
{
    (void)state;
    struct vg_kek_source src;
    uint8_t k[VG_KEY_BYTES], out[VG_KEY_BYTES];
    uint8_t orig[512], buf[512];
    char err[512];
    const char *d = new_datadir();
    p11_source(&src, d, TOKEN_A, tpath("pin"), "alter");
    assert_int_equal(vg_kek_source_create(&src, k, err, sizeof err), 0);
    size_t n = read_file(src.path, orig, sizeof orig);

    /* Flip one bit in every byte position in turn: each is refused. The
     * magic, version and label fail before or at the token; IV,
     * ciphertext and tag fail GCM's check in the token. */
    for (size_t i = 0; i < n; i++) {
        memcpy(buf, orig, n);
        buf[i] ^= 0x01;
        write_file(src.path, buf, n, 0600);
        err[0] = '\0';
        if (vg_kek_source_load(&src, out, err, sizeof err) != -1)
            fail_msg("a kek.p11 with byte %zu altered was accepted", i);
        assert_true(strlen(err) > 0);
    }
    /* The tag in particular, with the token's own verdict in the message. */
    memcpy(buf, orig, n);
    buf[n - 1] ^= 0x80;
    write_file(src.path, buf, n, 0600);
    assert_refused(vg_kek_source_load(&src, out, err, sizeof err), err, "does not decrypt");
    assert_refused(vg_kek_source_load(&src, out, err, sizeof err), err, "CKR_");

    /* Truncated, extended, world-readable, a symlink: refused. */
    write_file(src.path, orig, n - 1, 0600);
    assert_refused(vg_kek_source_load(&src, out, err, sizeof err), err, "kek.p11");
    memcpy(buf, orig, n);
    buf[n] = 0;
    write_file(src.path, buf, n + 1, 0600);
    assert_refused(vg_kek_source_load(&src, out, err, sizeof err), err, "kek.p11");
    write_file(src.path, orig, n, 0644);
    assert_refused(vg_kek_source_load(&src, out, err, sizeof err), err, "chmod 600");
    const char *elsewhere = tpath("kek.p11.elsewhere");
    write_file(elsewhere, orig, n, 0600);
    unlink(src.path);
    assert_int_equal(symlink(elsewhere, src.path), 0);
    assert_refused(vg_kek_source_load(&src, out, err, sizeof err), err, "symbolic link");

    /* Ciphertext from the same token key with the same IV, but made
     * for another purpose (no associated data): the format is right, the
     * key is right, and it is still refused — the file is bound to
     * "vigil/kek/v1" and its own header. */
    {
        struct raw r;
        CK_OBJECT_HANDLE h[4];
        raw_session(&r, TOKEN_A);
        assert_int_equal(raw_find(&r, "alter", h), 1);
        size_t hdr = 8 + 2 + strlen("alter");
        CK_GCM_PARAMS gp;
        memset(&gp, 0, sizeof gp);
        gp.pIv = orig + hdr;
        gp.ulIvLen = 12;
        gp.ulIvBits = 96;
        gp.pAAD = NULL;
        gp.ulAADLen = 0;
        gp.ulTagBits = 128;
        CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof gp};
        uint8_t other[VG_KEY_BYTES];
        vg_random(other, sizeof other);
        CK_ULONG cl = 64;
        memcpy(buf, orig, n);
        assert_int_equal(r.fn->C_EncryptInit(r.s, &m, h[0]), CKR_OK);
        assert_int_equal(r.fn->C_Encrypt(r.s, other, sizeof other, buf + hdr + 12, &cl), CKR_OK);
        assert_int_equal(cl, 48);
        raw_close(&r);
        write_file(src.path, buf, n, 0600);
        assert_refused(vg_kek_source_load(&src, out, err, sizeof err), err, "does not decrypt");
    }

    /* Restored intact, it loads again. */
    unlink(src.path);
    write_file(src.path, orig, n, 0600);
    assert_int_equal(vg_kek_source_load(&src, out, err, sizeof err), 0);
    assert_memory_equal(out, k, VG_KEY_BYTES);
}

static void test_p11_missing_file(void **state)
{
    (void)state;
    struct vg_kek_source src;
    uint8_t k[VG_KEY_BYTES];
    char err[512];
    const char *d = new_datadir();
    p11_source(&src, d, TOKEN_A, tpath("pin"), "missing");
    assert_int_equal(vg_kek_source_create(&src, k, err, sizeof err), 0);
    assert_int_equal(unlink(src.path), 0);
    assert_refused(vg_kek_source_load(&src, k, err, sizeof err), err, "missing");
    assert_int_equal(access(src.path, F_OK), -1); /* not recreated */
}

static void test_p11_foreign_token_key(void **state)
{
    (void)state;
    struct vg_kek_source a, b;
    uint8_t ka[VG_KEY_BYTES], kb[VG_KEY_BYTES], out[VG_KEY_BYTES];
    uint8_t blob[512];
    char err[512];
    /* Two tokens, each with its own key under the same label. */
    const char *da = new_datadir();
    const char *db = new_datadir();
    p11_source(&a, da, TOKEN_A, tpath("pin"), "shared-label");
    p11_source(&b, db, TOKEN_B, tpath("pin"), "shared-label");
    assert_int_equal(vg_kek_source_create(&a, ka, err, sizeof err), 0);
    assert_int_equal(vg_kek_source_create(&b, kb, err, sizeof err), 0);
    /* A's kek.p11 in B's place: B's token key cannot decrypt it. */
    size_t n = read_file(a.path, blob, sizeof blob);
    write_file(b.path, blob, n, 0600);
    assert_refused(vg_kek_source_load(&b, out, err, sizeof err), err, "another token key");

    /* The token key deleted (re-created under the same label): refused
     * with "no key" first, then "does not decrypt". */
    struct raw r;
    CK_OBJECT_HANDLE h[4];
    raw_session(&r, TOKEN_A);
    assert_int_equal(raw_find(&r, "shared-label", h), 1);
    assert_int_equal(r.fn->C_DestroyObject(r.s, h[0]), CKR_OK);
    raw_close(&r);
    assert_refused(vg_kek_source_load(&a, out, err, sizeof err), err, "no key labelled");
    const char *dc = new_datadir();
    struct vg_kek_source c;
    p11_source(&c, dc, TOKEN_A, tpath("pin"), "shared-label");
    assert_int_equal(vg_kek_source_create(&c, out, err, sizeof err), 0); /* a new token key */
    assert_refused(vg_kek_source_load(&a, out, err, sizeof err), err, "does not decrypt");
}

static void test_p11_rotation(void **state)
{
    (void)state;
    struct vg_kek_source src;
    uint8_t cur[VG_KEY_BYTES], next[VG_KEY_BYTES], k[VG_KEY_BYTES];
    char err[512], next_path[1100];
    const char *d = new_datadir();
    p11_source(&src, d, TOKEN_A, tpath("pin"), "rot-1");
    snprintf(next_path, sizeof next_path, "%s.next", src.path);
    assert_int_equal(vg_kek_source_create(&src, cur, err, sizeof err), 0);
    assert_int_equal(vg_kek_source_load_next(&src, k, err, sizeof err), VG_KEK_NONE);

    /* Stage under a new token key: the label in vigil.conf changed. */
    p11_source(&src, d, TOKEN_A, tpath("pin"), "rot-2");
    vg_random(next, sizeof next);
    if (vg_kek_source_stage_next(&src, next, err, sizeof err) != 0)
        fail_msg("stage: %s", err);
    uint8_t blob[512];
    size_t n = read_file(next_path, blob, sizeof blob);
    assert_null(memmem(blob, n, next, VG_KEY_BYTES));
    assert_memory_equal(blob + 10, "rot-2", 5);
    assert_int_equal(vg_kek_source_load_next(&src, k, err, sizeof err), VG_KEK_LOADED);
    assert_memory_equal(k, next, VG_KEY_BYTES);
    /* The current kek.p11 names rot-1 and still loads. */
    assert_int_equal(vg_kek_source_load(&src, k, err, sizeof err), 0);
    assert_memory_equal(k, cur, VG_KEY_BYTES);
    assert_refused(vg_kek_source_stage_next(&src, cur, err, sizeof err), err, "already staged");

    /* An altered staged file: load_next says error, promote refuses a
     * file that is not even well-formed. */
    uint8_t bad[512];
    memcpy(bad, blob, n);
    bad[n - 1] ^= 1;
    write_file(next_path, bad, n, 0600);
    assert_int_equal(vg_kek_source_load_next(&src, k, err, sizeof err), -1);
    assert_non_null(strstr(err, "does not decrypt"));
    write_file(next_path, bad, 20, 0600);
    assert_refused(vg_kek_source_promote_next(&src, err, sizeof err), err, "wrong size");
    assert_int_equal(vg_kek_source_load(&src, k, err, sizeof err), 0);
    assert_memory_equal(k, cur, VG_KEY_BYTES);

    write_file(next_path, blob, n, 0600);
    assert_int_equal(vg_kek_source_promote_next(&src, err, sizeof err), 0);
    assert_int_equal(vg_kek_source_load(&src, k, err, sizeof err), 0);
    assert_memory_equal(k, next, VG_KEY_BYTES);
    assert_int_equal(vg_kek_source_load_next(&src, k, err, sizeof err), VG_KEK_NONE);

    assert_int_equal(vg_kek_source_stage_next(&src, cur, err, sizeof err), 0);
    assert_int_equal(vg_kek_source_discard_next(&src, err, sizeof err), 0);
    assert_int_equal(vg_kek_source_load_next(&src, k, err, sizeof err), VG_KEK_NONE);
    assert_int_equal(vg_kek_source_load(&src, k, err, sizeof err), 0);
    assert_memory_equal(k, next, VG_KEY_BYTES);
}

static void test_p11_rv_names(void **state)
{
    (void)state;
    char b[24];
    assert_string_equal(vg_p11_rv_name(CKR_PIN_INCORRECT, b, sizeof b), "CKR_PIN_INCORRECT");
    assert_string_equal(vg_p11_rv_name(CKR_TOKEN_NOT_PRESENT, b, sizeof b),
                        "CKR_TOKEN_NOT_PRESENT");
    assert_string_equal(vg_p11_rv_name(0x12345678UL, b, sizeof b), "CKR_0x12345678");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_create_load),
        cmocka_unit_test(test_file_refusals),
        cmocka_unit_test(test_file_rotation),
        cmocka_unit_test(test_file_rotation_refusals),
        cmocka_unit_test(test_config_keys),
        cmocka_unit_test(test_config_write_keys),
        cmocka_unit_test(test_p11_rv_names),
        cmocka_unit_test(test_p11_create_load),
        cmocka_unit_test(test_p11_key_not_extractable),
        cmocka_unit_test(test_p11_refuses_weak_token_key),
        cmocka_unit_test(test_p11_wrong_pin),
        cmocka_unit_test(test_p11_pin_env),
        cmocka_unit_test(test_p11_wrong_token),
        cmocka_unit_test(test_p11_altered_file),
        cmocka_unit_test(test_p11_missing_file),
        cmocka_unit_test(test_p11_foreign_token_key),
        cmocka_unit_test(test_p11_rotation),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
