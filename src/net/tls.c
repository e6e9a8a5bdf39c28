#include "net/tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "crypto/crypto.h"

static void ssl_err(char *err, size_t size, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    snprintf(err, size, "%s: %s", what, buf);
    ERR_clear_error();
}

SSL_CTX *vg_tls_server_ctx(const char *cert_path, const char *key_path,
                           const char *client_ca_path, char *err, size_t err_size)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_err(err, err_size, "cannot create TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        ssl_err(err, err_size, "cannot load server certificate");
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ssl_err(err, err_size, "cannot load server key");
        goto fail;
    }
    if (client_ca_path) {
        /* The trust store is vigil's CA and nothing else: a certificate
         * from any other CA, however valid elsewhere, is refused. */
        if (SSL_CTX_load_verify_locations(ctx, client_ca_path, NULL) != 1) {
            ssl_err(err, err_size, "cannot load client CA");
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca_path);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        SSL_CTX_set_verify_depth(ctx, 2);
        static const unsigned char sid_ctx[] = "vigil-mqtt";
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int vg_tls_peer_cn(SSL *ssl, char *out, size_t size)
{
    if (SSL_get_verify_result(ssl) != X509_V_OK)
        return -1;
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (!cert)
        return -1;
    int rc = -1;
    X509_NAME *name = X509_get_subject_name(cert);
    int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    /* Exactly one CN: two would make "the" device id ambiguous. */
    if (idx >= 0 && X509_NAME_get_index_by_NID(name, NID_commonName, idx) < 0) {
        ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
        int len = ASN1_STRING_length(s);
        const unsigned char *p = ASN1_STRING_get0_data(s);
        if (len > 0 && (size_t)len < size && !memchr(p, 0, (size_t)len)) {
            memcpy(out, p, (size_t)len);
            out[len] = '\0';
            rc = 0;
        }
    }
    X509_free(cert);
    return rc;
}

int vg_tls_peer_has_ou(SSL *ssl, const char *ou)
{
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (!cert)
        return 0;
    X509_NAME *name = X509_get_subject_name(cert);
    int found = 0;
    for (int idx = -1; (idx = X509_NAME_get_index_by_NID(name, NID_organizationalUnitName, idx)) >= 0;) {
        ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
        size_t len = (size_t)ASN1_STRING_length(v);
        if (len == strlen(ou) && !memcmp(ASN1_STRING_get0_data(v), ou, len))
            found = 1;
    }
    X509_free(cert);
    return found;
}

int vg_tls_peer_fingerprint(SSL *ssl, char out[65])
{
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (!cert)
        return -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    int ok = X509_digest(cert, EVP_sha256(), md, &len) == 1 && len == 32;
    X509_free(cert);
    if (!ok)
        return -1;
    vg_hex(md, 32, out);
    return 0;
}

void vg_tls_peer_addr(int fd, char *out, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(out, size, "%s:%d", host, port);
}
