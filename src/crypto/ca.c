/* crypto/ca — vigil's own certificate authority (OpenSSL 3, EC P-256).
 *
 * Every certificate is built the same way (build_cert): a fresh random
 * serial, notBefore five minutes in the past so a peer whose clock runs a
 * little behind still accepts it, the subject "CN=<name>, O=vigil", the
 * extensions the caller lists, and an ECDSA-SHA256 signature.
 *
 * Files are written from a memory BIO (whose buffer OpenSSL cleanses on
 * free) to a file created with O_EXCL|O_NOFOLLOW, then fsync'd; a file this
 * module created is unlinked again if a later step fails, so a failed call
 * leaves no half-made CA behind. Error messages name the step and carry the
 * OpenSSL reason, never key material.
 */
#include "crypto/ca.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Upper bound of a certificate's validity: 100 years. */
#define CA_MAX_DAYS 36500
/* Accepted clock skew: notBefore is set this far in the past. */
#define CA_BACKDATE_SECONDS (5 * 60)
/* RFC 5280 ub-common-name. */
#define CA_CN_MAX 64
/* 128-bit serials (RFC 5280 §4.1.2.2 allows up to 20 octets; CA/B Forum
 * asks for at least 64 bits of randomness). */
#define CA_SERIAL_BYTES 16

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

/* "cannot <step>: <first OpenSSL error>", then clears the error queue. The
 * first queued error is the root cause; later ones are the call chain. */
static void set_ossl_err(char *err, size_t err_size, const char *step)
{
    unsigned long e = ERR_get_error();
    const char *reason = NULL;
    char buf[256];

    if (e && ERR_SYSTEM_ERROR(e))
        reason = strerror(ERR_GET_REASON(e));
    else if (e)
        reason = ERR_reason_error_string(e);
    if (e && !reason) {
        ERR_error_string_n(e, buf, sizeof buf);
        reason = buf;
    }
    set_err(err, err_size, "cannot %s: %s", step, reason ? reason : "unknown OpenSSL error");
    ERR_clear_error();
}

static int days_valid(int days, char *err, size_t err_size)
{
    if (days < 1 || days > CA_MAX_DAYS) {
        set_err(err, err_size, "certificate validity of %d days is out of range (1..%d)", days,
                CA_MAX_DAYS);
        return 0;
    }
    return 1;
}

/* A CA name: 1..64 printable ASCII characters (it is only ever shown). */
static int ca_name_valid(const char *name)
{
    size_t n = 0;
    if (!name)
        return 0;
    for (; name[n]; n++) {
        if ((unsigned char)name[n] < 0x20 || (unsigned char)name[n] > 0x7e)
            return 0;
    }
    return n >= 1 && n <= CA_CN_MAX;
}

/* A conservative host name (RFC 1123): dot-separated labels of 1..63
 * letters, digits and hyphens, not starting or ending with a hyphen, at most
 * 253 characters, no trailing dot, and not all-numeric in the last label
 * (that would be an IPv4 address, handled separately). Anything that passes
 * is also safe inside an OpenSSL extension config string (no ',' or ':'). */
static int hostname_valid(const char *h)
{
    size_t len = h ? strlen(h) : 0;
    size_t label = 0;
    int last_label_alpha = 0;

    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i <= len; i++) {
        char c = h[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || h[i - 1] == '-')
                return 0;
            label = 0;
            if (c == '.')
                last_label_alpha = 0;
            continue;
        }
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        int digit = c >= '0' && c <= '9';
        if (!alpha && !digit && c != '-')
            return 0;
        if (label == 0 && c == '-')
            return 0;
        if (alpha || c == '-')
            last_label_alpha = 1;
        label++;
    }
    return last_label_alpha;
}

static int is_ip_literal(const char *h)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* Writes all of 'len' bytes, retrying on EINTR and short writes. */

/* Writes the contents of memory BIO 'mem' to a new file 'path' (O_EXCL,
 * never follows a symlink) with 'mode', and fsyncs it. On failure the file,
 * if this call created it, is removed. 'what' names the file in errors. */
static int write_new_file(const char *path, mode_t mode, BIO *mem, const char *what, char *err,
                          size_t err_size)
{
    int rc = -1;
    int fd = -1;
    char *data = NULL;
    long len = BIO_get_mem_data(mem, &data);

    if (len <= 0 || !data) {
        set_err(err, err_size, "cannot write %s %s: nothing to write", what, path);
        return -1;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        if (errno == EEXIST)
            set_err(err, err_size, "%s %s already exists (refusing to overwrite it)", what,
                    path);
        else
            set_err(err, err_size, "cannot create %s %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (vg_write_all(fd, data, (size_t)len) != 0) {
        set_err(err, err_size, "cannot write %s %s: %s", what, path, strerror(errno));
        goto cleanup;
    }
    if (fsync(fd) != 0) {
        set_err(err, err_size, "cannot sync %s %s: %s", what, path, strerror(errno));
        goto cleanup;
    }
    rc = close(fd);
    fd = -1;
    if (rc != 0)
        set_err(err, err_size, "cannot close %s %s: %s", what, path, strerror(errno));
cleanup:
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        (void)unlink(path);
    return rc;
}

static EVP_PKEY *new_p256_key(char *err, size_t err_size)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!key)
        set_ossl_err(err, err_size, "generate P-256 key");
    return key;
}

/* Sets a random positive non-zero serial of up to 127 bits. */
static int set_random_serial(X509 *x, char *err, size_t err_size)
{
    int rc = -1;
    unsigned char raw[CA_SERIAL_BYTES];
    BIGNUM *bn = NULL;

    do {
        if (RAND_bytes(raw, sizeof raw) != 1) {
            set_ossl_err(err, err_size, "generate certificate serial");
            goto cleanup;
        }
        raw[0] &= 0x7f; /* DER INTEGER: keep it positive */
        BN_free(bn);
        bn = BN_bin2bn(raw, sizeof raw, NULL);
        if (!bn) {
            set_ossl_err(err, err_size, "generate certificate serial");
            goto cleanup;
        }
    } while (BN_is_zero(bn));
    if (!BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))) {
        set_ossl_err(err, err_size, "set certificate serial");
        goto cleanup;
    }
    rc = 0;
cleanup:
    BN_free(bn);
    OPENSSL_cleanse(raw, sizeof raw);
    return rc;
}

struct ext_spec {
    int nid;
    const char *value;
};

/* Adds extensions in order. SKID must precede AKID: the AKID of a
 * self-signed certificate is taken from its own SKID. */
static int add_extensions(X509 *subject, X509 *issuer, EVP_PKEY *issuer_key,
                          const struct ext_spec *exts, size_t n, char *err, size_t err_size)
{
    X509V3_CTX ctx;

    for (size_t i = 0; i < n; i++) {
        X509V3_set_ctx(&ctx, issuer, subject, NULL, NULL, 0);
        if (X509V3_set_issuer_pkey(&ctx, issuer_key) != 1) {
            set_ossl_err(err, err_size, "prepare certificate extensions");
            return -1;
        }
        X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, exts[i].nid, exts[i].value);
        if (!ext) {
            char step[96];
            snprintf(step, sizeof step, "build %s extension", OBJ_nid2sn(exts[i].nid));
            set_ossl_err(err, err_size, step);
            return -1;
        }
        int ok = X509_add_ext(subject, ext, -1);
        X509_EXTENSION_free(ext);
        if (!ok) {
            char step[96];
            snprintf(step, sizeof step, "add %s extension", OBJ_nid2sn(exts[i].nid));
            set_ossl_err(err, err_size, step);
            return -1;
        }
    }
    return 0;
}

/* Builds and signs a certificate for 'subject_key' named 'cn'. 'issuer' is
 * NULL for a self-signed certificate (then 'issuer_key' is the subject's
 * own key). Returns a new X509 the caller frees, or NULL with 'err' set. */
static X509 *build_cert(const char *cn, const char *ou, EVP_PKEY *subject_key, X509 *issuer,
                        EVP_PKEY *issuer_key, int days, const struct ext_spec *exts,
                        size_t n_exts, char *err, size_t err_size)
{
    X509 *x = X509_new();
    X509_NAME *name = NULL;

    if (!x) {
        set_ossl_err(err, err_size, "allocate certificate");
        goto fail;
    }
    if (X509_set_version(x, X509_VERSION_3) != 1) {
        set_ossl_err(err, err_size, "set certificate version");
        goto fail;
    }
    if (set_random_serial(x, err, err_size) != 0)
        goto fail;

    name = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                   -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"vigil",
                                   -1, -1, 0) != 1 ||
        (ou && X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_UTF8, (const unsigned char *)ou,
                                          -1, -1, 0) != 1)) {
        set_ossl_err(err, err_size, "set certificate subject");
        goto fail;
    }
    if (X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) != 1) {
        set_ossl_err(err, err_size, "set certificate issuer");
        goto fail;
    }
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -CA_BACKDATE_SECONDS) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL)) {
        set_ossl_err(err, err_size, "set certificate validity");
        goto fail;
    }
    if (X509_set_pubkey(x, subject_key) != 1) {
        set_ossl_err(err, err_size, "set certificate public key");
        goto fail;
    }
    if (add_extensions(x, issuer ? issuer : x, issuer_key, exts, n_exts, err, err_size) != 0)
        goto fail;
    if (X509_sign(x, issuer_key, EVP_sha256()) <= 0) {
        set_ossl_err(err, err_size, "sign certificate");
        goto fail;
    }
    return x;
fail:
    X509_free(x);
    return NULL;
}

static BIO *pem_of_cert(X509 *x, char *err, size_t err_size)
{
    BIO *mem = BIO_new(BIO_s_mem());
    if (!mem || PEM_write_bio_X509(mem, x) != 1) {
        set_ossl_err(err, err_size, "encode certificate as PEM");
        BIO_free(mem);
        return NULL;
    }
    return mem;
}

/* PKCS#8 "PRIVATE KEY" PEM, unencrypted: the file mode protects it. The
 * memory BIO's buffer is cleansed by OpenSSL when the BIO is freed. */
static BIO *pem_of_key(EVP_PKEY *key, char *err, size_t err_size)
{
    BIO *mem = BIO_new(BIO_s_mem());
    if (!mem || PEM_write_bio_PrivateKey(mem, key, NULL, NULL, 0, NULL, NULL) != 1) {
        set_ossl_err(err, err_size, "encode private key as PEM");
        BIO_free(mem);
        return NULL;
    }
    return mem;
}

/* Writes key then certificate; if the certificate cannot be written, the
 * key file is removed again. */
static int write_key_and_cert(const char *cert_path, const char *key_path, X509 *cert,
                              EVP_PKEY *key, char *err, size_t err_size)
{
    int rc = -1;
    BIO *key_pem = pem_of_key(key, err, err_size);
    BIO *cert_pem = key_pem ? pem_of_cert(cert, err, err_size) : NULL;

    if (!key_pem || !cert_pem)
        goto cleanup;
    if (write_new_file(key_path, 0600, key_pem, "key file", err, err_size) != 0)
        goto cleanup;
    if (write_new_file(cert_path, 0644, cert_pem, "certificate file", err, err_size) != 0) {
        (void)unlink(key_path);
        goto cleanup;
    }
    rc = 0;
cleanup:
    BIO_free(cert_pem);
    BIO_free(key_pem);
    return rc;
}

/* PEM password callback that refuses: vigil's keys are never encrypted, and
 * OpenSSL's default callback would prompt on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* Loads the CA certificate and key, and checks they belong together and
 * that the certificate is a CA. Caller frees both on success. */
static int load_ca(const char *cert_path, const char *key_path, X509 **cert_out,
                   EVP_PKEY **key_out, char *err, size_t err_size)
{
    int rc = -1;
    BIO *bio = NULL;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    char step[64 + 4096];

    bio = BIO_new_file(cert_path, "r");
    if (!bio || !(cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL))) {
        snprintf(step, sizeof step, "read CA certificate %s", cert_path);
        set_ossl_err(err, err_size, step);
        goto cleanup;
    }
    BIO_free(bio);
    bio = BIO_new_file(key_path, "r");
    if (!bio || !(key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL))) {
        snprintf(step, sizeof step, "read CA key %s", key_path);
        set_ossl_err(err, err_size, step);
        goto cleanup;
    }
    if (X509_check_private_key(cert, key) != 1) {
        ERR_clear_error();
        set_err(err, err_size, "CA key %s does not match CA certificate %s", key_path,
                cert_path);
        goto cleanup;
    }
    if (X509_check_ca(cert) < 1) {
        set_err(err, err_size, "certificate %s is not a CA certificate", cert_path);
        goto cleanup;
    }
    *cert_out = cert;
    *key_out = key;
    cert = NULL;
    key = NULL;
    rc = 0;
cleanup:
    BIO_free(bio);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

int vg_ca_create(const char *cert_path, const char *key_path, const char *name, int days,
                 char *err, size_t err_size)
{
    int rc = -1;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    static const struct ext_spec exts[] = {
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
        {NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
        {NID_key_usage, "critical,keyCertSign,cRLSign"},
    };

    ERR_clear_error();
    if (!cert_path || !key_path) {
        set_err(err, err_size, "no path given for the CA certificate or key");
        goto cleanup;
    }
    if (!ca_name_valid(name)) {
        set_err(err, err_size, "CA name must be 1..%d printable ASCII characters", CA_CN_MAX);
        goto cleanup;
    }
    if (!days_valid(days, err, err_size))
        goto cleanup;
    if (!(key = new_p256_key(err, err_size)))
        goto cleanup;
    cert = build_cert(name, NULL, key, NULL, key, days, exts, sizeof exts / sizeof exts[0], err,
                      err_size);
    if (!cert)
        goto cleanup;
    rc = write_key_and_cert(cert_path, key_path, cert, key, err, err_size);
cleanup:
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

int vg_ca_issue_server(const char *ca_cert_path, const char *ca_key_path, const char *cert_path,
                       const char *key_path, const char *hostname, int days, char *err,
                       size_t err_size)
{
    int rc = -1;
    X509 *ca_cert = NULL;
    EVP_PKEY *ca_key = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char san[320];
    const char *cn = "localhost";

    ERR_clear_error();
    if (!ca_cert_path || !ca_key_path || !cert_path || !key_path) {
        set_err(err, err_size, "no path given for a CA or server certificate or key");
        goto cleanup;
    }
    if (!days_valid(days, err, err_size))
        goto cleanup;

    /* The host name goes into an extension config string, so only names
     * that pass the strict check (no ',' or other syntax) or parse as an IP
     * address are used; anything else is left out and the certificate
     * covers localhost only. */
    snprintf(san, sizeof san, "DNS:localhost,IP:127.0.0.1,IP:::1");
    if (hostname && *hostname && strcasecmp(hostname, "localhost") != 0) {
        if (is_ip_literal(hostname)) {
            if (strcmp(hostname, "127.0.0.1") != 0 && strcmp(hostname, "::1") != 0) {
                size_t used = strlen(san);
                snprintf(san + used, sizeof san - used, ",IP:%s", hostname);
            }
            cn = hostname;
        } else if (hostname_valid(hostname)) {
            size_t used = strlen(san);
            snprintf(san + used, sizeof san - used, ",DNS:%s", hostname);
            if (strlen(hostname) <= CA_CN_MAX)
                cn = hostname;
        }
    }
    const struct ext_spec exts[] = {
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "serverAuth"},
        {NID_subject_alt_name, san},
    };

    if (load_ca(ca_cert_path, ca_key_path, &ca_cert, &ca_key, err, err_size) != 0)
        goto cleanup;
    if (!(key = new_p256_key(err, err_size)))
        goto cleanup;
    cert = build_cert(cn, NULL, key, ca_cert, ca_key, days, exts, sizeof exts / sizeof exts[0], err,
                      err_size);
    if (!cert)
        goto cleanup;
    rc = write_key_and_cert(cert_path, key_path, cert, key, err, err_size);
cleanup:
    X509_free(cert);
    EVP_PKEY_free(key);
    X509_free(ca_cert);
    EVP_PKEY_free(ca_key);
    return rc;
}

/* Copies a memory BIO's contents into a new NUL-terminated string. */
static char *bio_strdup(BIO *mem)
{
    char *data = NULL;
    long len = BIO_get_mem_data(mem, &data);
    if (len <= 0 || !data)
        return NULL;
    char *s = malloc((size_t)len + 1);
    if (!s)
        return NULL;
    memcpy(s, data, (size_t)len);
    s[len] = '\0';
    return s;
}

static void hex_lower(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

static int issue_client(const char *ca_cert_path, const char *ca_key_path, const char *cn,
                        const char *ou, int days, struct vg_ca_issued *out, char *err,
                        size_t err_size)
{
    int rc = -1;
    X509 *ca_cert = NULL;
    EVP_PKEY *ca_key = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    BIO *cert_pem = NULL;
    BIO *key_pem = NULL;
    static const struct ext_spec exts[] = {
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "clientAuth"},
    };

    if (!out) {
        set_err(err, err_size, "no output given for the issued certificate");
        return -1;
    }
    memset(out, 0, sizeof *out);
    ERR_clear_error();
    if (!ca_cert_path || !ca_key_path) {
        set_err(err, err_size, "no path given for the CA certificate or key");
        goto cleanup;
    }
    if (!vg_id_valid(cn)) {
        set_err(err, err_size,
                "invalid certificate subject id (1..%d characters of A-Z a-z 0-9 . _ -, "
                "starting with a letter or digit)",
                VG_ID_MAX);
        goto cleanup;
    }
    if (!days_valid(days, err, err_size))
        goto cleanup;
    if (load_ca(ca_cert_path, ca_key_path, &ca_cert, &ca_key, err, err_size) != 0)
        goto cleanup;
    if (!(key = new_p256_key(err, err_size)))
        goto cleanup;
    cert = build_cert(cn, ou, key, ca_cert, ca_key, days, exts, sizeof exts / sizeof exts[0], err,
                      err_size);
    if (!cert)
        goto cleanup;

    if (!(cert_pem = pem_of_cert(cert, err, err_size)) ||
        !(key_pem = pem_of_key(key, err, err_size)))
        goto cleanup;
    if (!(out->cert_pem = bio_strdup(cert_pem)) || !(out->key_pem = bio_strdup(key_pem))) {
        set_err(err, err_size, "cannot copy issued certificate: out of memory");
        goto cleanup;
    }

    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    int serial_len = ASN1_STRING_length(serial);
    if (serial_len <= 0 || (size_t)serial_len * 2 >= sizeof out->serial_hex) {
        set_err(err, err_size, "cannot read certificate serial: unexpected length");
        goto cleanup;
    }
    hex_lower(ASN1_STRING_get0_data(serial), (size_t)serial_len, out->serial_hex);

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (X509_digest(cert, EVP_sha256(), md, &md_len) != 1 || md_len != 32) {
        set_ossl_err(err, err_size, "compute certificate fingerprint");
        goto cleanup;
    }
    hex_lower(md, md_len, out->fingerprint_hex);

    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) {
        set_ossl_err(err, err_size, "read certificate expiry");
        goto cleanup;
    }
    out->not_after = (long long)timegm(&tm);
    rc = 0;
cleanup:
    if (rc != 0)
        vg_ca_issued_free(out);
    BIO_free(key_pem);
    BIO_free(cert_pem);
    X509_free(cert);
    EVP_PKEY_free(key);
    X509_free(ca_cert);
    EVP_PKEY_free(ca_key);
    return rc;
}

void vg_ca_issued_free(struct vg_ca_issued *issued)
{
    if (!issued)
        return;
    if (issued->key_pem) {
        OPENSSL_cleanse(issued->key_pem, strlen(issued->key_pem));
        free(issued->key_pem);
    }
    free(issued->cert_pem);
    memset(issued, 0, sizeof *issued);
}

int vg_ca_issue_client(const char *ca_cert_path, const char *ca_key_path, const char *cn,
                       int days, struct vg_ca_issued *out, char *err, size_t err_size)
{
    return issue_client(ca_cert_path, ca_key_path, cn, NULL, days, out, err, err_size);
}

int vg_ca_issue_principal(const char *ca_cert_path, const char *ca_key_path, const char *id,
                          int days, struct vg_ca_issued *out, char *err, size_t err_size)
{
    return issue_client(ca_cert_path, ca_key_path, id, VG_CA_PRINCIPAL_OU, days, out, err, err_size);
}
