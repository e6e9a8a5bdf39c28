/* Unit tests for crypto/crypto and crypto/ca: AEAD tamper cases, hash
 * known answers, tokens, key-file refusals, and certificates checked with
 * OpenSSL's own verifier (positive and negative). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "crypto/ca.h"
#include "crypto/crypto.h"

/* ---- fixtures ---------------------------------------------------------- */

struct tmp {
    char dir[256];
    char path[4][512]; /* scratch for tmp_path(): four may be live at once */
    unsigned next;
};

static int tmp_setup(void **state)
{
    struct tmp *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    snprintf(t->dir, sizeof t->dir, "/tmp/vg_test_crypto_XXXXXX");
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    *state = t;
    return 0;
}

static int tmp_teardown(void **state)
{
    struct tmp *t = *state;
    DIR *d = opendir(t->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char p[600];
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", t->dir, e->d_name);
            if (unlink(p) != 0)
                (void)rmdir(p);
        }
        closedir(d);
    }
    (void)rmdir(t->dir);
    free(t);
    return 0;
}

static const char *tmp_path(struct tmp *t, const char *name)
{
    char buf[sizeof t->path[0]];
    char *p = t->path[t->next++ % 4];
    snprintf(buf, sizeof buf, "%s/%s", t->dir, name);
    memcpy(p, buf, sizeof buf);
    return p;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static int test_init(void **state)
{
    (void)state;
    return vg_crypto_init();
}

/* ---- AEAD -------------------------------------------------------------- */

static const uint8_t AD[] = "patient=p1|device=d1|t=1700000000000|code=8867-4";
static const uint8_t PT[] = "{\"hr\":72}";

static void seal_sample(uint8_t key[VG_KEY_BYTES], uint8_t *sealed, size_t *sealed_len)
{
    vg_random(key, VG_KEY_BYTES);
    assert_int_equal(vg_aead_seal(key, AD, sizeof AD, PT, sizeof PT, sealed, sealed_len), 0);
    assert_int_equal(*sealed_len, sizeof PT + VG_AEAD_OVERHEAD);
}

static void test_aead_round_trip(void **state)
{
    (void)state;
    uint8_t key[VG_KEY_BYTES], sealed[sizeof PT + VG_AEAD_OVERHEAD], again[sizeof sealed];
    uint8_t plain[sizeof PT];
    size_t sealed_len = 0, again_len = 0, plain_len = 0;

    seal_sample(key, sealed, &sealed_len);
    assert_int_equal(vg_aead_open(key, AD, sizeof AD, sealed, sealed_len, plain, &plain_len), 0);
    assert_int_equal(plain_len, sizeof PT);
    assert_memory_equal(plain, PT, sizeof PT);

    /* Random nonces: sealing the same plaintext twice gives different output. */
    assert_int_equal(vg_aead_seal(key, AD, sizeof AD, PT, sizeof PT, again, &again_len), 0);
    assert_int_equal(again_len, sealed_len);
    assert_memory_not_equal(again, sealed, sealed_len);

    /* Empty plaintext and empty AD round-trip too. */
    uint8_t empty_sealed[VG_AEAD_OVERHEAD], dummy[1];
    size_t empty_len = 0, dummy_len = 99;
    assert_int_equal(vg_aead_seal(key, NULL, 0, NULL, 0, empty_sealed, &empty_len), 0);
    assert_int_equal(empty_len, VG_AEAD_OVERHEAD);
    assert_int_equal(vg_aead_open(key, NULL, 0, empty_sealed, empty_len, dummy, &dummy_len), 0);
    assert_int_equal(dummy_len, 0);
}

static void assert_tamper_fails(size_t offset)
{
    uint8_t key[VG_KEY_BYTES], sealed[sizeof PT + VG_AEAD_OVERHEAD], plain[sizeof PT];
    size_t sealed_len = 0, plain_len = 12345;

    seal_sample(key, sealed, &sealed_len);
    sealed[offset] ^= 0x01;
    assert_int_equal(vg_aead_open(key, AD, sizeof AD, sealed, sealed_len, plain, &plain_len), -1);
    assert_int_equal(plain_len, 0);
}

static void test_aead_flipped_nonce_fails(void **state)
{
    (void)state;
    assert_tamper_fails(0);
    assert_tamper_fails(VG_AEAD_NONCE_BYTES - 1);
}

static void test_aead_flipped_ciphertext_fails(void **state)
{
    (void)state;
    assert_tamper_fails(VG_AEAD_NONCE_BYTES);
    assert_tamper_fails(VG_AEAD_NONCE_BYTES + sizeof PT - 1);
}

static void test_aead_flipped_tag_fails(void **state)
{
    (void)state;
    assert_tamper_fails(VG_AEAD_NONCE_BYTES + sizeof PT);
    assert_tamper_fails(sizeof PT + VG_AEAD_OVERHEAD - 1);
}

static void test_aead_different_ad_fails(void **state)
{
    (void)state;
    uint8_t key[VG_KEY_BYTES], sealed[sizeof PT + VG_AEAD_OVERHEAD], plain[sizeof PT];
    uint8_t other_ad[sizeof AD];
    size_t sealed_len = 0, plain_len = 0;

    seal_sample(key, sealed, &sealed_len);
    memcpy(other_ad, AD, sizeof AD);
    other_ad[8] = '2'; /* patient=p2: a row swapped to another patient */
    assert_int_equal(
        vg_aead_open(key, other_ad, sizeof other_ad, sealed, sealed_len, plain, &plain_len), -1);
    assert_int_equal(vg_aead_open(key, AD, sizeof AD - 1, sealed, sealed_len, plain, &plain_len),
                     -1);
    assert_int_equal(vg_aead_open(key, NULL, 0, sealed, sealed_len, plain, &plain_len), -1);
}

static void test_aead_different_key_fails(void **state)
{
    (void)state;
    uint8_t key[VG_KEY_BYTES], other[VG_KEY_BYTES];
    uint8_t sealed[sizeof PT + VG_AEAD_OVERHEAD], plain[sizeof PT];
    size_t sealed_len = 0, plain_len = 0;

    seal_sample(key, sealed, &sealed_len);
    memcpy(other, key, sizeof other);
    other[VG_KEY_BYTES - 1] ^= 0x80;
    assert_int_equal(vg_aead_open(other, AD, sizeof AD, sealed, sealed_len, plain, &plain_len),
                     -1);
}

static void test_aead_short_input_fails(void **state)
{
    (void)state;
    uint8_t key[VG_KEY_BYTES], sealed[sizeof PT + VG_AEAD_OVERHEAD], plain[sizeof PT];
    size_t sealed_len = 0, plain_len = 0;

    seal_sample(key, sealed, &sealed_len);
    assert_int_equal(
        vg_aead_open(key, AD, sizeof AD, sealed, VG_AEAD_OVERHEAD - 1, plain, &plain_len), -1);
    assert_int_equal(vg_aead_open(key, AD, sizeof AD, sealed, 0, plain, &plain_len), -1);
    /* Truncated by one byte: the tag no longer matches. */
    assert_int_equal(vg_aead_open(key, AD, sizeof AD, sealed, sealed_len - 1, plain, &plain_len),
                     -1);
}

/* ---- hashing, hex, tokens, comparison ---------------------------------- */

static void test_sha256_known_answers(void **state)
{
    (void)state;
    uint8_t md[VG_SHA256_BYTES];
    char hex[2 * VG_SHA256_BYTES + 1];

    vg_sha256((const uint8_t *)"abc", 3, md);
    vg_hex(md, sizeof md, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    vg_sha256((const uint8_t *)"", 0, md);
    vg_hex(md, sizeof md, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    vg_sha256((const uint8_t *)two_blocks, strlen(two_blocks), md);
    vg_hex(md, sizeof md, hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_hex(void **state)
{
    (void)state;
    const uint8_t in[] = {0x00, 0x0f, 0xab, 0xff};
    char out[2 * sizeof in + 1];
    vg_hex(in, sizeof in, out);
    assert_string_equal(out, "000fabff");
    vg_hex(in, 0, out);
    assert_string_equal(out, "");
}

static void test_token_format(void **state)
{
    (void)state;
    char a[VG_TOKEN_MAX], b[VG_TOKEN_MAX];

    vg_token_new(a);
    vg_token_new(b);
    assert_memory_equal(a, "vgt_", 4);
    assert_int_equal(strlen(a), 4 + 43);
    for (const char *p = a + 4; *p; p++) {
        int ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                 (*p >= '0' && *p <= '9') || *p == '-' || *p == '_';
        assert_true(ok);
    }
    assert_string_not_equal(a, b);
}

static void test_token_hash(void **state)
{
    (void)state;
    char tok[VG_TOKEN_MAX], other[VG_TOKEN_MAX];
    uint8_t h1[VG_SHA256_BYTES], h2[VG_SHA256_BYTES], h3[VG_SHA256_BYTES], direct[VG_SHA256_BYTES];

    vg_token_new(tok);
    vg_token_new(other);
    vg_token_hash(tok, strlen(tok), h1);
    vg_token_hash(tok, strlen(tok), h2);
    vg_token_hash(other, strlen(other), h3);
    vg_sha256((const uint8_t *)tok, strlen(tok), direct);
    assert_memory_equal(h1, h2, sizeof h1);
    assert_memory_equal(h1, direct, sizeof h1);
    assert_memory_not_equal(h1, h3, sizeof h1);
}

static void test_ct_equal(void **state)
{
    (void)state;
    uint8_t a[32], b[32];
    vg_random(a, sizeof a);
    memcpy(b, a, sizeof b);
    assert_int_equal(vg_ct_equal(a, b, sizeof a), 1);
    b[31] ^= 1;
    assert_int_equal(vg_ct_equal(a, b, sizeof a), 0);
    b[31] ^= 1;
    b[0] ^= 0x80;
    assert_int_equal(vg_ct_equal(a, b, sizeof a), 0);
    assert_int_equal(vg_ct_equal(a, b, 0), 1);
}

/* ---- key-encryption key files ------------------------------------------ */

static void test_kek_create_load(void **state)
{
    struct tmp *t = *state;
    uint8_t created[VG_KEY_BYTES], loaded[VG_KEY_BYTES], zero[VG_KEY_BYTES] = {0};
    char err[512] = "";
    struct stat st;
    const char *path = tmp_path(t, "kek");

    assert_int_equal(vg_kek_create(path, created, err, sizeof err), 0);
    assert_memory_not_equal(created, zero, sizeof zero);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, VG_KEY_BYTES);
    assert_int_equal(vg_kek_load(path, loaded, err, sizeof err), 0);
    assert_memory_equal(created, loaded, sizeof loaded);
}

static void test_kek_create_refuses_existing(void **state)
{
    struct tmp *t = *state;
    uint8_t key[VG_KEY_BYTES], first[VG_KEY_BYTES], loaded[VG_KEY_BYTES];
    char err[512] = "";
    const char *path = tmp_path(t, "kek");

    assert_int_equal(vg_kek_create(path, first, err, sizeof err), 0);
    assert_int_equal(vg_kek_create(path, key, err, sizeof err), -1);
    assert_non_null(strstr(err, "already exists"));
    assert_non_null(strstr(err, path));
    /* The original key is untouched. */
    assert_int_equal(vg_kek_load(path, loaded, err, sizeof err), 0);
    assert_memory_equal(first, loaded, sizeof loaded);
}

static void test_kek_load_refuses_group_readable(void **state)
{
    struct tmp *t = *state;
    uint8_t raw[VG_KEY_BYTES], key[VG_KEY_BYTES];
    char err[512] = "";
    const char *path = tmp_path(t, "kek");

    vg_random(raw, sizeof raw);
    write_file(path, raw, sizeof raw, 0644);
    assert_int_equal(vg_kek_load(path, key, err, sizeof err), -1);
    assert_non_null(strstr(err, "chmod 600"));
    assert_non_null(strstr(err, path));
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(vg_kek_load(path, key, err, sizeof err), -1);
    assert_int_equal(chmod(path, 0604), 0);
    assert_int_equal(vg_kek_load(path, key, err, sizeof err), -1);
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(vg_kek_load(path, key, err, sizeof err), 0);
    assert_memory_equal(raw, key, sizeof key);
}

static void test_kek_load_refuses_wrong_size(void **state)
{
    struct tmp *t = *state;
    uint8_t raw[VG_KEY_BYTES + 1], key[VG_KEY_BYTES];
    char err[512] = "";

    vg_random(raw, sizeof raw);
    write_file(tmp_path(t, "short"), raw, VG_KEY_BYTES - 1, 0600);
    assert_int_equal(vg_kek_load(tmp_path(t, "short"), key, err, sizeof err), -1);
    assert_non_null(strstr(err, "not 32 bytes"));

    write_file(tmp_path(t, "long"), raw, VG_KEY_BYTES + 1, 0600);
    assert_int_equal(vg_kek_load(tmp_path(t, "long"), key, err, sizeof err), -1);
    assert_non_null(strstr(err, "not 32 bytes"));

    write_file(tmp_path(t, "empty"), raw, 0, 0600);
    assert_int_equal(vg_kek_load(tmp_path(t, "empty"), key, err, sizeof err), -1);
}

static void test_kek_load_refuses_directory_and_symlink(void **state)
{
    struct tmp *t = *state;
    uint8_t key[VG_KEY_BYTES];
    char err[512] = "", real[512];

    assert_int_equal(mkdir(tmp_path(t, "dir"), 0700), 0);
    assert_int_equal(vg_kek_load(tmp_path(t, "dir"), key, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file"));

    /* A symlink to a perfectly good key file is still refused. */
    snprintf(real, sizeof real, "%s", tmp_path(t, "real"));
    assert_int_equal(vg_kek_create(real, key, err, sizeof err), 0);
    assert_int_equal(symlink(real, tmp_path(t, "link")), 0);
    assert_int_equal(vg_kek_load(tmp_path(t, "link"), key, err, sizeof err), -1);
    assert_non_null(strstr(err, "symbolic link"));

    /* vg_kek_create does not follow a symlink either (O_EXCL|O_NOFOLLOW). */
    assert_int_equal(symlink(tmp_path(t, "nowhere"), tmp_path(t, "dangling")), 0);
    assert_int_equal(vg_kek_create(tmp_path(t, "dangling"), key, err, sizeof err), -1);
    assert_int_equal(access(tmp_path(t, "nowhere"), F_OK), -1);

    assert_int_equal(vg_kek_load(tmp_path(t, "missing"), key, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open"));
}

/* ---- certificate authority --------------------------------------------- */

static X509 *load_cert_file(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    assert_non_null(b);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(x);
    return x;
}

static X509 *cert_from_pem(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    assert_non_null(b);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(x);
    return x;
}

/* X509_verify_cert of 'leaf' against a store holding only 'ca'. Returns 1
 * if valid; *verr gets the verification error. */
static int verify_against(X509 *ca, X509 *leaf, int purpose, int *verr)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
    int ok = X509_verify_cert(ctx);
    *verr = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return ok;
}

static void subject_cn(X509 *x, char *out, size_t out_size)
{
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out,
                                          (int)out_size) > 0);
}

static void make_ca(struct tmp *t, const char *cert, const char *key, const char *name)
{
    char err[512] = "", c[600], k[600];
    snprintf(c, sizeof c, "%s/%s", t->dir, cert);
    snprintf(k, sizeof k, "%s/%s", t->dir, key);
    if (vg_ca_create(c, k, name, 3650, err, sizeof err) != 0)
        fail_msg("vg_ca_create: %s", err);
}

static void test_ca_create(void **state)
{
    struct tmp *t = *state;
    char err[512] = "", cn[128], ca_crt[600], ca_key[600];
    struct stat st;
    int verr = 0;

    make_ca(t, "ca.crt", "ca.key", "vigil test CA");
    snprintf(ca_crt, sizeof ca_crt, "%s/ca.crt", t->dir);
    snprintf(ca_key, sizeof ca_key, "%s/ca.key", t->dir);
    assert_int_equal(stat(ca_key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    X509 *ca = load_cert_file(ca_crt);
    subject_cn(ca, cn, sizeof cn);
    assert_string_equal(cn, "vigil test CA");
    assert_int_equal(X509_check_ca(ca), 1);
    assert_true(X509_get_extension_flags(ca) & EXFLAG_SS);
    assert_true(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
    assert_int_equal(X509_get_pathlen(ca), 0);
    assert_non_null(X509_get0_subject_key_id(ca));
    assert_non_null(X509_get0_authority_key_id(ca));
    assert_int_equal(verify_against(ca, ca, X509_PURPOSE_ANY, &verr), 1);

    /* The key is PKCS#8 PEM and matches the certificate. */
    BIO *b = BIO_new_file(ca_key, "r");
    char first_line[64] = "";
    assert_non_null(b);
    assert_true(BIO_gets(b, first_line, sizeof first_line) > 0);
    assert_string_equal(first_line, "-----BEGIN PRIVATE KEY-----\n");
    BIO_free(b);

    /* O_EXCL: a second create over the same files is refused and changes
     * nothing. */
    assert_int_equal(vg_ca_create(ca_crt, ca_key, "other", 3650, err, sizeof err), -1);
    assert_non_null(strstr(err, "already exists"));
    X509 *again = load_cert_file(ca_crt);
    assert_int_equal(X509_cmp(ca, again), 0);
    X509_free(again);

    /* A failed create (cert path taken) leaves no key file behind. */
    char k2[600];
    snprintf(k2, sizeof k2, "%s/ca2.key", t->dir);
    assert_int_equal(vg_ca_create(ca_crt, k2, "other", 3650, err, sizeof err), -1);
    assert_int_equal(access(k2, F_OK), -1);

    assert_int_equal(vg_ca_create(tmp_path(t, "x.crt"), tmp_path(t, "y.key"), "", 10, err,
                                  sizeof err),
                     -1);
    X509_free(ca);
}

static void test_ca_issue_server(void **state)
{
    struct tmp *t = *state;
    char err[512] = "", ca_crt[600], ca_key[600], crt[600], key[600], cn[128];
    struct stat st;
    int verr = 0;

    make_ca(t, "ca.crt", "ca.key", "vigil test CA");
    snprintf(ca_crt, sizeof ca_crt, "%s/ca.crt", t->dir);
    snprintf(ca_key, sizeof ca_key, "%s/ca.key", t->dir);
    snprintf(crt, sizeof crt, "%s/server.crt", t->dir);
    snprintf(key, sizeof key, "%s/server.key", t->dir);
    if (vg_ca_issue_server(ca_crt, ca_key, crt, key, "gw1.example.org", 825, err, sizeof err))
        fail_msg("vg_ca_issue_server: %s", err);
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    X509 *ca = load_cert_file(ca_crt);
    X509 *srv = load_cert_file(crt);
    assert_int_equal(verify_against(ca, srv, X509_PURPOSE_SSL_SERVER, &verr), 1);
    assert_int_equal(verify_against(ca, srv, X509_PURPOSE_SSL_CLIENT, &verr), 0);
    subject_cn(srv, cn, sizeof cn);
    assert_string_equal(cn, "gw1.example.org");
    assert_int_equal(X509_check_ca(srv), 0);
    assert_true(X509_get_extended_key_usage(srv) & XKU_SSL_SERVER);
    assert_int_equal(X509_check_host(srv, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(srv, "gw1.example.org", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(srv, "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_ip_asc(srv, "::1", 0), 1);
    assert_int_equal(X509_check_host(srv, "gw2.example.org", 0, 0, NULL), 0);
    assert_int_equal(X509_check_ip_asc(srv, "10.0.0.1", 0), 0);

    /* Issuing over existing files is refused. */
    assert_int_equal(
        vg_ca_issue_server(ca_crt, ca_key, crt, key, "localhost", 825, err, sizeof err), -1);
    X509_free(srv);
    X509_free(ca);
}

static void test_ca_server_hostname_not_injectable(void **state)
{
    struct tmp *t = *state;
    char err[512] = "", ca_crt[600], ca_key[600], crt[600], key[600];
    int verr = 0;

    make_ca(t, "ca.crt", "ca.key", "vigil test CA");
    snprintf(ca_crt, sizeof ca_crt, "%s/ca.crt", t->dir);
    snprintf(ca_key, sizeof ca_key, "%s/ca.key", t->dir);

    /* A host name carrying extension syntax must not smuggle in a SAN. */
    snprintf(crt, sizeof crt, "%s/s1.crt", t->dir);
    snprintf(key, sizeof key, "%s/s1.key", t->dir);
    if (vg_ca_issue_server(ca_crt, ca_key, crt, key, "evil.example,IP:10.0.0.1", 30, err,
                           sizeof err) == 0) {
        X509 *srv = load_cert_file(crt);
        assert_int_equal(X509_check_ip_asc(srv, "10.0.0.1", 0), 0);
        assert_int_equal(X509_check_host(srv, "evil.example", 0, 0, NULL), 0);
        assert_int_equal(X509_check_host(srv, "localhost", 0, 0, NULL), 1);
        X509_free(srv);
    }

    /* An IP address as host name becomes an IP SAN. */
    snprintf(crt, sizeof crt, "%s/s2.crt", t->dir);
    snprintf(key, sizeof key, "%s/s2.key", t->dir);
    if (vg_ca_issue_server(ca_crt, ca_key, crt, key, "192.0.2.7", 30, err, sizeof err))
        fail_msg("vg_ca_issue_server: %s", err);
    X509 *ca = load_cert_file(ca_crt);
    X509 *srv = load_cert_file(crt);
    assert_int_equal(verify_against(ca, srv, X509_PURPOSE_SSL_SERVER, &verr), 1);
    assert_int_equal(X509_check_ip_asc(srv, "192.0.2.7", 0), 1);
    X509_free(srv);
    X509_free(ca);
}

static void test_ca_issue_client(void **state)
{
    struct tmp *t = *state;
    char err[512] = "", ca_crt[600], ca_key[600], cn[128];
    struct vg_ca_issued a, b;
    int verr = 0;

    make_ca(t, "ca.crt", "ca.key", "vigil test CA");
    snprintf(ca_crt, sizeof ca_crt, "%s/ca.crt", t->dir);
    snprintf(ca_key, sizeof ca_key, "%s/ca.key", t->dir);
    long long before = (long long)time(NULL);
    if (vg_ca_issue_client(ca_crt, ca_key, "pulseox-0042", 365, &a, err, sizeof err) != 0)
        fail_msg("vg_ca_issue_client: %s", err);
    assert_int_equal(vg_ca_issue_client(ca_crt, ca_key, "pulseox-0043", 365, &b, err, sizeof err),
                     0);

    X509 *ca = load_cert_file(ca_crt);
    X509 *x = cert_from_pem(a.cert_pem);
    assert_int_equal(verify_against(ca, x, X509_PURPOSE_SSL_CLIENT, &verr), 1);
    assert_int_equal(verify_against(ca, x, X509_PURPOSE_SSL_SERVER, &verr), 0);
    subject_cn(x, cn, sizeof cn);
    assert_string_equal(cn, "pulseox-0042");
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT);
    assert_false(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
    assert_int_equal(X509_check_ca(x), 0);

    /* The returned key is PKCS#8 and belongs to the certificate. */
    assert_memory_equal(a.key_pem, "-----BEGIN PRIVATE KEY-----\n", 28);
    BIO *kb = BIO_new_mem_buf(a.key_pem, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    BIO_free(kb);
    assert_non_null(k);
    assert_int_equal(X509_check_private_key(x, k), 1);
    assert_true(EVP_PKEY_is_a(k, "EC"));
    assert_int_equal(EVP_PKEY_get_bits(k), 256);
    EVP_PKEY_free(k);

    /* Fingerprint = SHA-256 of the DER; serial = the certificate's. */
    unsigned char md[32];
    unsigned int md_len = 0;
    char hex[65];
    assert_int_equal(X509_digest(x, EVP_sha256(), md, &md_len), 1);
    vg_hex(md, md_len, hex);
    assert_string_equal(a.fingerprint_hex, hex);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *bn_hex = BN_bn2hex(bn);
    for (char *p = bn_hex; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    assert_string_equal(a.serial_hex, bn_hex);
    assert_false(BN_is_negative(bn));
    assert_true(BN_num_bits(bn) <= 127);
    assert_true(BN_num_bits(bn) > 64); /* fails with probability 2^-63 */
    OPENSSL_free(bn_hex);
    BN_free(bn);
    assert_string_not_equal(a.serial_hex, b.serial_hex);
    assert_string_not_equal(a.fingerprint_hex, b.fingerprint_hex);

    long long expect = before + 365LL * 86400;
    assert_true(a.not_after >= expect - 5 && a.not_after <= expect + 120);

    X509_free(x);
    X509_free(ca);
    vg_ca_issued_free(&a);
    vg_ca_issued_free(&b);
    assert_null(a.key_pem);
    assert_null(a.cert_pem);
    vg_ca_issued_free(&a); /* idempotent */
}

static void test_ca_issue_client_invalid_id(void **state)
{
    struct tmp *t = *state;
    char err[512] = "", ca_crt[600], ca_key[600], long_id[VG_ID_MAX + 2];
    struct vg_ca_issued out;
    const char *bad[] = {"../x", "", "a/b", "-lead", "CN=x,O=y", "sp ace", long_id};

    memset(long_id, 'a', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    make_ca(t, "ca.crt", "ca.key", "vigil test CA");
    snprintf(ca_crt, sizeof ca_crt, "%s/ca.crt", t->dir);
    snprintf(ca_key, sizeof ca_key, "%s/ca.key", t->dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(vg_ca_issue_client(ca_crt, ca_key, bad[i], 30, &out, err, sizeof err),
                         -1);
        assert_null(out.cert_pem);
        assert_null(out.key_pem);
        assert_non_null(strstr(err, "invalid"));
    }
    assert_int_equal(vg_ca_issue_client(ca_crt, ca_key, NULL, 30, &out, err, sizeof err), -1);
    assert_int_equal(vg_ca_issue_client(ca_crt, ca_key, "ok-id", 0, &out, err, sizeof err), -1);
    assert_int_equal(vg_ca_issue_client(ca_crt, tmp_path(t, "missing.key"), "ok-id", 30, &out,
                                        err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "read CA key"));
}

static void test_ca_second_ca_rejected(void **state)
{
    struct tmp *t = *state;
    char err[512] = "", c1[600], k1[600], c2[600], k2[600];
    struct vg_ca_issued other;
    int verr = 0;

    make_ca(t, "ca1.crt", "ca1.key", "vigil test CA");
    make_ca(t, "ca2.crt", "ca2.key", "vigil test CA"); /* same name, different key */
    snprintf(c1, sizeof c1, "%s/ca1.crt", t->dir);
    snprintf(k1, sizeof k1, "%s/ca1.key", t->dir);
    snprintf(c2, sizeof c2, "%s/ca2.crt", t->dir);
    snprintf(k2, sizeof k2, "%s/ca2.key", t->dir);
    if (vg_ca_issue_client(c2, k2, "pump-7", 30, &other, err, sizeof err) != 0)
        fail_msg("vg_ca_issue_client: %s", err);

    X509 *ca1 = load_cert_file(c1);
    X509 *ca2 = load_cert_file(c2);
    X509 *x = cert_from_pem(other.cert_pem);
    assert_int_equal(verify_against(ca1, x, X509_PURPOSE_SSL_CLIENT, &verr), 0);
    assert_int_not_equal(verr, X509_V_OK);
    assert_int_equal(verify_against(ca2, x, X509_PURPOSE_SSL_CLIENT, &verr), 1);

    /* A CA key that does not match the CA certificate is refused. */
    struct vg_ca_issued mixed;
    assert_int_equal(vg_ca_issue_client(c1, k2, "pump-8", 30, &mixed, err, sizeof err), -1);
    assert_non_null(strstr(err, "does not match"));

    /* A leaf certificate cannot act as the CA. */
    char leaf_crt[600], leaf_key[600];
    snprintf(leaf_crt, sizeof leaf_crt, "%s/leaf.crt", t->dir);
    snprintf(leaf_key, sizeof leaf_key, "%s/leaf.key", t->dir);
    assert_int_equal(vg_ca_issue_server(c1, k1, leaf_crt, leaf_key, "localhost", 30, err,
                                        sizeof err),
                     0);
    assert_int_equal(
        vg_ca_issue_client(leaf_crt, leaf_key, "pump-9", 30, &mixed, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a CA"));

    X509_free(x);
    X509_free(ca1);
    X509_free(ca2);
    vg_ca_issued_free(&other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aead_round_trip),
        cmocka_unit_test(test_aead_flipped_nonce_fails),
        cmocka_unit_test(test_aead_flipped_ciphertext_fails),
        cmocka_unit_test(test_aead_flipped_tag_fails),
        cmocka_unit_test(test_aead_different_ad_fails),
        cmocka_unit_test(test_aead_different_key_fails),
        cmocka_unit_test(test_aead_short_input_fails),
        cmocka_unit_test(test_sha256_known_answers),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_token_format),
        cmocka_unit_test(test_token_hash),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test_setup_teardown(test_kek_create_load, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_kek_create_refuses_existing, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_kek_load_refuses_group_readable, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_kek_load_refuses_wrong_size, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_kek_load_refuses_directory_and_symlink, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_ca_create, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_ca_issue_server, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_ca_server_hostname_not_injectable, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_ca_issue_client, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_ca_issue_client_invalid_id, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_ca_second_ca_rejected, tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, test_init, NULL);
}
