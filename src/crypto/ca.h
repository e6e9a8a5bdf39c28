/* crypto/ca — vigil's own certificate authority (OpenSSL 3, EC P-256).
 *
 * vigil issues the server certificate and every device certificate; a
 * device's certificate subject CN is its device id. Private keys of devices
 * are returned to the caller once (PEM) and never stored by vigil.
 *
 * Files written here are created with O_EXCL; private keys mode 0600,
 * certificates 0644. All functions return 0, or -1 with a reason in 'err'.
 */
#ifndef VG_CRYPTO_CA_H
#define VG_CRYPTO_CA_H

#include <stddef.h>

#include "core/util.h"

/* Creates a self-signed CA (CN 'name', basicConstraints CA:TRUE pathlen 0,
 * keyUsage keyCertSign+cRLSign, validity 'days'). */
int vg_ca_create(const char *cert_path, const char *key_path, const char *name,
                 int days, char *err, size_t err_size) VG_WARN_UNUSED;

/* Issues the TLS server certificate signed by the CA: CN 'hostname', SAN
 * DNS:localhost, IP:127.0.0.1, IP:::1 and DNS:'hostname' (if it differs from
 * localhost), extendedKeyUsage serverAuth, validity 'days'. */
int vg_ca_issue_server(const char *ca_cert_path, const char *ca_key_path,
                       const char *cert_path, const char *key_path,
                       const char *hostname, int days, char *err, size_t err_size)
    VG_WARN_UNUSED;

/* What vg_ca_issue_client returns. All strings heap-allocated; free with
 * vg_ca_issued_free(), which wipes the private key. */
struct vg_ca_issued {
    char *cert_pem;
    char *key_pem;
    char serial_hex[41];       /* certificate serial, lower-case hex */
    char fingerprint_hex[65];  /* SHA-256 of the DER certificate */
    long long not_after;       /* epoch seconds */
};

/* Issues a client certificate for 'cn' (an id that vg_id_valid accepts) with
 * a fresh P-256 key: extendedKeyUsage clientAuth, a random 128-bit serial,
 * validity 'days'. */
int vg_ca_issue_client(const char *ca_cert_path, const char *ca_key_path,
                       const char *cn, int days, struct vg_ca_issued *out,
                       char *err, size_t err_size) VG_WARN_UNUSED;
void vg_ca_issued_free(struct vg_ca_issued *issued);

/* The subject OU that marks a certificate issued to a principal (a person
 * or a service application, for live data over MQTT) rather than to a
 * device: the broker tells the two apart by it, since ids may coincide. */
#define VG_CA_PRINCIPAL_OU "principal"

/* Like vg_ca_issue_client, for principal 'id', with OU=principal. */
int vg_ca_issue_principal(const char *ca_cert_path, const char *ca_key_path, const char *id,
                          int days, struct vg_ca_issued *out, char *err, size_t err_size)
    VG_WARN_UNUSED;

#endif
