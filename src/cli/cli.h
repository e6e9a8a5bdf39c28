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

#include <sys/types.h>

#include "cli/http.h"
#include "core/util.h"

int vg_cli_init(int argc, char **argv);
int vg_cli_serve(int argc, char **argv);
int vg_cli_patient(int argc, char **argv);
int vg_cli_device(int argc, char **argv);
int vg_cli_obs(int argc, char **argv);
int vg_cli_sim(int argc, char **argv);
int vg_cli_audit(int argc, char **argv);
int vg_cli_backup(int argc, char **argv);
int vg_cli_keys(int argc, char **argv);
int vg_cli_restore(int argc, char **argv);
/* Accounts and access (src/cli/account.c). */
int vg_cli_login(int argc, char **argv);
int vg_cli_logout(int argc, char **argv);
int vg_cli_passwd(int argc, char **argv);
int vg_cli_user(int argc, char **argv);
int vg_cli_token(int argc, char **argv);
int vg_cli_careteam(int argc, char **argv);
int vg_cli_breakglass(int argc, char **argv);

/* Client connection options shared by every API subcommand. */
struct vg_cli_conn {
    const char *datadir;    /* -d DIR: derive the rest from a data dir */
    const char *server;     /* --server URL or VIGIL_SERVER */
    const char *token_file; /* --token-file FILE */
    const char *cacert;     /* --cacert FILE or VIGIL_CACERT */
    int anonymous;          /* set by `login`: resolve server and CA only, no token */
    int session_only;       /* set by `logout`, `passwd`: the token must be the session's */
};

/* Consumes a client option at argv[*i] (advancing *i past its value).
 * Returns 1 if it was one, 0 if not, -1 on a missing value. */
int vg_cli_conn_option(struct vg_cli_conn *c, int argc, char **argv, int *i);

/* Builds the HTTP target from the options, the environment (VIGIL_SERVER,
 * VIGIL_TOKEN, VIGIL_CACERT), the data directory (-d) and the session saved
 * by `vigil login`. The token is the first of: --token-file, VIGIL_TOKEN,
 * the session (consulted only when none of --token-file, VIGIL_TOKEN and -d
 * is given), -d DIR/admin.token. The server and CA come from the options,
 * else the environment, else -d, else the session. A session token is only
 * ever sent to the server recorded with it, and not once it has expired.
 * Prints a specific error and returns -1 when something is missing. The
 * caller wipes t->token (sodium_memzero) when done. */
int vg_cli_target(const struct vg_cli_conn *c, struct vg_http_target *t);

/* Help text of the client options, for every subcommand's --help. */
extern const char vg_cli_conn_help[];

/* Calls the API; on a non-2xx answer prints the problem's title and detail
 * and returns -1 (the response is freed). On success returns 0 and the
 * caller frees *resp. 'expect_extra' is a status also taken as success
 * (e.g. 409 when "already exists" is fine), 0 for none. */
int vg_cli_call(const struct vg_http_target *t, const char *method, const char *path,
                const char *body, struct vg_http_response *resp, long expect_extra);

/* Parses client options around positional arguments; returns the count of
 * positionals (stored in pos, at most max_pos), or -1 after printing why.
 * Flags in 'flags' (NULL-ended) are booleans, set in 'flag_set'; options in
 * 'valued' (NULL-ended) take a value, stored in 'values'. All borrowed. */
int vg_cli_parse_args(int argc, char **argv, struct vg_cli_conn *c, const char **pos, int max_pos,
                      const char *const *flags, int *flag_set, const char *const *valued,
                      const char **values);

/* 1 if any argument is --help or -h. */
int vg_cli_is_help(int argc, char **argv);

/* Creates DIR/NAME exclusively (O_EXCL, no symlink followed) with 'mode',
 * writes 'text' and fsyncs. Returns 0, or -1 after printing why. */
int vg_cli_write_file(const char *dir, const char *name, const char *text, mode_t mode);

/* Writes DIR/ca.pem unless an identical one is already there (then 0);
 * -1 when a different one is there or the write fails. */
int vg_cli_write_ca(const char *dir, const char *pem);

/* The session `vigil login` saves: JSON {"server","cacert","user","token",
 * "expires"} in $XDG_CONFIG_HOME/vigil/session (default
 * ~/.config/vigil/session), directory 0700, file 0600, replaced atomically.
 * The token is a secret: wipe the struct (sodium_memzero) after use. */
struct vg_cli_session {
    char server[300];        /* https://HOST:PORT it was issued by */
    char cacert[4096];       /* absolute path of the CA file used at login */
    char user[VG_ID_MAX + 1];
    char token[128];
    char expires[64];        /* RFC 3339, as the server gave it */
};

/* The session file's path. Returns 0, or -1 when there is no home
 * directory or the path does not fit. */
int vg_cli_session_path(char *out, size_t size) VG_WARN_UNUSED;

/* Reads the session file into *s. Returns 1 when loaded, 0 when there is
 * none, -1 (after printing why) when it is unreadable, malformed, not owned
 * by the caller or accessible by others. With 'quiet', every problem
 * counts as "none" and nothing is printed. */
int vg_cli_session_load(struct vg_cli_session *s, int quiet) VG_WARN_UNUSED;

/* 1 when the session's "expires" is in the past, else 0 (also when it
 * cannot be parsed: the server then decides). */
int vg_cli_session_expired(const struct vg_cli_session *s);

/* The MQTT address from DIR/vigil.conf (for `vigil sim`). */
int vg_cli_datadir_mqtt(const char *datadir, char *out, size_t size);

#endif
