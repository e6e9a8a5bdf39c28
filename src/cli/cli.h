/* cli — the `vigil` subcommands.
 *
 * `init` and `serve` work on a data directory directly. Every other
 * subcommand is a client of the HTTPS API (like a browser or an EHR), so it
 * passes the same authentication and lands in the same audit trail.
 *
 * Each vg_cli_* takes the arguments after its subcommand name and returns
 * the process exit status: 0 success, 1 failure, 2 usage error.
 */
#ifndef VG_CLI_CLI_H
#define VG_CLI_CLI_H

#include "cli/http.h"

int vg_cli_init(int argc, char **argv);
int vg_cli_serve(int argc, char **argv);
int vg_cli_patient(int argc, char **argv);
int vg_cli_device(int argc, char **argv);
int vg_cli_obs(int argc, char **argv);
int vg_cli_sim(int argc, char **argv);
int vg_cli_audit(int argc, char **argv);

/* Client connection options shared by every API subcommand. */
struct vg_cli_conn {
    const char *datadir;    /* -d DIR: derive the rest from a data dir */
    const char *server;     /* --server URL or VIGIL_SERVER */
    const char *token_file; /* --token-file FILE */
    const char *cacert;     /* --cacert FILE or VIGIL_CACERT */
};

/* Consumes a client option at argv[*i] (advancing *i past its value).
 * Returns 1 if it was one, 0 if not, -1 on a missing value. */
int vg_cli_conn_option(struct vg_cli_conn *c, int argc, char **argv, int *i);

/* Builds the HTTP target from the options, the environment (VIGIL_SERVER,
 * VIGIL_TOKEN, VIGIL_CACERT) and, with -d, the data directory. Prints a
 * specific error and returns -1 when something is missing. */
int vg_cli_target(const struct vg_cli_conn *c, struct vg_http_target *t);

/* Help text of the client options, for every subcommand's --help. */
extern const char vg_cli_conn_help[];

/* Calls the API; on a non-2xx answer prints the problem's title and detail
 * and returns -1 (the response is freed). On success returns 0 and the
 * caller frees *resp. 'expect_extra' is a status also taken as success
 * (e.g. 409 when "already exists" is fine), 0 for none. */
int vg_cli_call(const struct vg_http_target *t, const char *method, const char *path,
                const char *body, struct vg_http_response *resp, long expect_extra);

/* The MQTT address from DIR/vigil.conf (for `vigil sim`). */
int vg_cli_datadir_mqtt(const char *datadir, char *out, size_t size);

#endif
