/* API client subcommands: patient, device, obs. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "cli/cli.h"
#include "store/fleet.h"
#include "core/config.h"
#include "ingest/reading.h"

const char vg_cli_conn_help[] =
    "Connection:\n"
    "  -d, --data-dir DIR     use DIR's vigil.conf, admin.token and pki/ca.pem\n"
    "  --server URL           https://HOST:PORT of the API (env VIGIL_SERVER)\n"
    "  --token-file FILE      file holding the bearer token (env VIGIL_TOKEN holds\n"
    "                         the token itself)\n"
    "  --cacert FILE          vigil's CA certificate (env VIGIL_CACERT)\n"
    "The token is the first of: --token-file; VIGIL_TOKEN; the session saved by\n"
    "`vigil login` (used only when none of --token-file, VIGIL_TOKEN and -d is\n"
    "given); -d DIR's admin.token. The server and CA certificate come from\n"
    "--server/--cacert, else VIGIL_SERVER/VIGIL_CACERT, else -d DIR, else the\n"
    "session. A session is only sent to the server that issued it, and not once\n"
    "it has expired. Session file: $XDG_CONFIG_HOME/vigil/session (default\n"
    "~/.config/vigil/session).\n";

int vg_cli_conn_option(struct vg_cli_conn *c, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char **slot = NULL;
    if (!strcmp(a, "-d") || !strcmp(a, "--data-dir"))
        slot = &c->datadir;
    else if (!strcmp(a, "--server"))
        slot = &c->server;
    else if (!strcmp(a, "--token-file"))
        slot = &c->token_file;
    else if (!strcmp(a, "--cacert"))
        slot = &c->cacert;
    if (!slot)
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "vigil: %s needs a value\n", a);
        return -1;
    }
    *slot = argv[++*i];
    return 1;
}

static int read_token(const char *path, char *out, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "vigil: cannot read token file %s: %s\n", path, strerror(errno));
        return -1;
    }
    ssize_t n = read(fd, out, size - 1);
    close(fd);
    if (n <= 0) {
        fprintf(stderr, "vigil: token file %s is empty\n", path);
        return -1;
    }
    out[n] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

int vg_cli_datadir_mqtt(const char *datadir, char *out, size_t size)
{
    struct vg_config cfg;
    char path[PATH_MAX], err[512];
    vg_config_defaults(&cfg);
    snprintf(path, sizeof path, "%s/vigil.conf", datadir);
    if (vg_config_load(path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "vigil: %s\n", err);
        return -1;
    }
    vg_strlcpy(out, cfg.mqtt_listen, size);
    return 0;
}

/* Is 'url' the same server (host and port) as 'session_url'? */
static int same_server(const char *url, const char *session_url)
{
    struct vg_http_target a, b;
    char err[256];
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    if (vg_http_target_from_url(&a, url, err, sizeof err) != 0 ||
        vg_http_target_from_url(&b, session_url, err, sizeof err) != 0)
        return 0;
    return !strcasecmp(a.host, b.host) && !strcmp(a.port, b.port);
}

int vg_cli_target(const struct vg_cli_conn *c, struct vg_http_target *t)
{
    char err[512], url[300] = "", path[PATH_MAX], session_file[PATH_MAX] = "the session file";
    struct vg_cli_session s;
    int have_session = 0, rc = -1;
    memset(t, 0, sizeof *t);
    memset(&s, 0, sizeof s);
    const char *server = c->server ? c->server : getenv("VIGIL_SERVER");
    const char *cacert = c->cacert ? c->cacert : getenv("VIGIL_CACERT");
    const char *token_env = c->session_only ? NULL : getenv("VIGIL_TOKEN");
    /* The session is consulted only when nothing else says which token to
     * use (for `login`: which server to use), so -d and the environment
     * keep meaning what they always meant. */
    int use_session = c->session_only ? 1
                      : c->anonymous  ? !c->datadir && !server
                                      : !c->token_file && !token_env && !c->datadir;
    if (use_session) {
        int r = vg_cli_session_load(&s, c->anonymous);
        if (r < 0)
            goto out;
        have_session = r > 0;
        if (vg_cli_session_path(session_file, sizeof session_file) != 0)
            vg_strlcpy(session_file, "the session file", sizeof session_file);
    }
    if (c->session_only && !have_session) {
        fprintf(stderr, "vigil: not logged in (no session in %s); run `vigil login USER`\n",
                session_file);
        goto out;
    }
    if (!server && c->datadir) {
        struct vg_config cfg;
        vg_config_defaults(&cfg);
        snprintf(path, sizeof path, "%s/vigil.conf", c->datadir);
        if (vg_config_load(path, &cfg, err, sizeof err) != 0) {
            fprintf(stderr, "vigil: %s\n", err);
            goto out;
        }
        char host[128], port[16];
        if (vg_config_split_addr(cfg.api_listen, host, sizeof host, port, sizeof port) != 0)
            goto out;
        /* A wildcard listener is reached on loopback. */
        const char *h = !strcmp(host, "0.0.0.0") ? "127.0.0.1" : !strcmp(host, "::") ? "::1" : host;
        snprintf(url, sizeof url, strchr(h, ':') ? "https://[%s]:%s" : "https://%s:%s", h, port);
        server = url;
    }
    if (have_session && !c->anonymous) {
        /* Never hand a session token to a server that did not issue it. */
        if (server && !same_server(server, s.server)) {
            fprintf(stderr,
                    "vigil: the session in %s is for %s, not %s; log in there, or give "
                    "--token-file\n",
                    session_file, s.server, server);
            goto out;
        }
    }
    if (!server && have_session)
        server = s.server;
    if (!server) {
        fprintf(stderr, "vigil: no server: give -d DIR, --server URL or VIGIL_SERVER%s\n",
                c->anonymous ? "" : ", or run `vigil login USER`");
        goto out;
    }
    if (vg_http_target_from_url(t, server, err, sizeof err) != 0) {
        fprintf(stderr, "vigil: %s\n", err);
        goto out;
    }
    if (!cacert && c->datadir) {
        snprintf(path, sizeof path, "%s/pki/ca.pem", c->datadir);
        cacert = path;
    }
    if (!cacert && have_session)
        cacert = s.cacert;
    if (!cacert) {
        fprintf(stderr, "vigil: no CA certificate: give -d DIR, --cacert FILE or VIGIL_CACERT\n");
        goto out;
    }
    vg_strlcpy(t->cacert, cacert, sizeof t->cacert);
    if (c->anonymous) {
        rc = 0; /* `login` sends no token */
    } else if (c->session_only) {
        rc = vg_strlcpy(t->token, s.token, sizeof t->token);
    } else if (c->token_file) {
        rc = read_token(c->token_file, t->token, sizeof t->token);
    } else if (token_env) {
        rc = vg_strlcpy(t->token, token_env, sizeof t->token);
        if (rc != 0)
            fprintf(stderr, "vigil: VIGIL_TOKEN is too long\n");
    } else if (have_session) {
        if (vg_cli_session_expired(&s))
            fprintf(stderr, "vigil: the session of %s ended at %s; run `vigil login %s`\n",
                    s.user, s.expires, s.user);
        else
            rc = vg_strlcpy(t->token, s.token, sizeof t->token);
    } else if (c->datadir) {
        snprintf(path, sizeof path, "%s/admin.token", c->datadir);
        rc = read_token(path, t->token, sizeof t->token);
    } else {
        fprintf(stderr, "vigil: no token: run `vigil login USER`, or give -d DIR, --token-file "
                        "FILE or VIGIL_TOKEN\n");
    }
out:
    sodium_memzero(&s, sizeof s);
    if (rc != 0)
        sodium_memzero(t->token, sizeof t->token);
    return rc;
}

int vg_cli_call(const struct vg_http_target *t, const char *method, const char *path,
                const char *body, struct vg_http_response *resp, long expect_extra)
{
    char err[512];
    if (vg_http_request(t, method, path, body, body ? strlen(body) : 0, resp, err, sizeof err) != 0) {
        fprintf(stderr, "vigil: %s\n", err);
        return -1;
    }
    if ((resp->status >= 200 && resp->status < 300) || resp->status == expect_extra)
        return 0;
    json_t *p = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *title = json_string_value(json_object_get(p, "title"));
    const char *detail = json_string_value(json_object_get(p, "detail"));
    fprintf(stderr, "vigil: server answered %ld: %s%s%s\n", resp->status,
            title ? title : "(no problem description)", detail ? ": " : "", detail ? detail : "");
    json_decref(p);
    vg_http_response_free(resp);
    return -1;
}

int vg_cli_parse_args(int argc, char **argv, struct vg_cli_conn *c, const char **pos,
                      int max_pos, const char *const *flags, int *flag_set,
                      const char *const *valued, const char **values)
{
    int n = 0;
    for (int i = 0; i < argc; i++) {
        int r = vg_cli_conn_option(c, argc, argv, &i);
        if (r < 0)
            return -1;
        if (r)
            continue;
        int matched = 0;
        for (int f = 0; flags && flags[f]; f++)
            if (!strcmp(argv[i], flags[f])) {
                flag_set[f] = 1;
                matched = 1;
            }
        for (int f = 0; valued && valued[f] && !matched; f++)
            if (!strcmp(argv[i], valued[f])) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "vigil: %s needs a value\n", argv[i]);
                    return -1;
                }
                values[f] = argv[++i];
                matched = 1;
            }
        if (matched)
            continue;
        if (argv[i][0] == '-' || n >= max_pos) {
            fprintf(stderr, "vigil: unexpected argument '%s'\n", argv[i]);
            return -1;
        }
        pos[n++] = argv[i];
    }
    return n;
}

int vg_cli_is_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

/* ---- vigil patient ---- */

static const char patient_help[] =
    "Usage: vigil patient add ID [connection options]\n"
    "       vigil patient erase ID --reason \"TEXT\" [connection options]\n"
    "\n"
    "add    registers a patient with the identifier ID (1-64 of A-Z a-z 0-9 . _ -).\n"
    "erase  destroys the patient's data keys (crypto-shredding, admin): every\n"
    "       stored reading of the patient becomes unreadable at once, by anyone,\n"
    "       for good. Device assignments and care-team membership end. The\n"
    "       erasure is audited with the reason. There is no undo.\n\n";

int vg_cli_patient(int argc, char **argv)
{
    if (vg_cli_is_help(argc, argv)) {
        printf("%s%s", patient_help, vg_cli_conn_help);
        return 0;
    }
    struct vg_cli_conn c = {0};
    const char *pos[2];
    static const char *const valued[] = {"--reason", NULL};
    const char *reason = NULL;
    int n = vg_cli_parse_args(argc, argv, &c, pos, 2, NULL, NULL, valued, &reason);
    int add = n == 2 && !strcmp(pos[0], "add") && !reason;
    int erase = n == 2 && !strcmp(pos[0], "erase") && reason;
    if (!add && !erase) {
        fprintf(stderr, "%s%s", patient_help, vg_cli_conn_help);
        return 2;
    }
    if (!vg_id_valid(pos[1])) {
        fprintf(stderr, "vigil: invalid patient id\n");
        return 2;
    }
    struct vg_http_target t;
    if (vg_cli_target(&c, &t) != 0)
        return 1;
    json_t *body = add ? json_pack("{s:s}", "id", pos[1]) : json_pack("{s:s}", "reason", reason);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char path[VG_ID_MAX + 32];
    snprintf(path, sizeof path, "/api/v1/patients/%s/erase", pos[1]);
    struct vg_http_response resp;
    int rc = vg_cli_call(&t, "POST", add ? "/api/v1/patients" : path, text, &resp, 0);
    free(text);
    sodium_memzero(t.token, sizeof t.token);
    if (rc)
        return 1;
    if (add) {
        printf("patient %s added\n", pos[1]);
    } else {
        json_t *r = json_loadb(resp.body, resp.body_len, 0, NULL);
        printf("patient %s erased: %lld data keys destroyed; their readings can no longer be read\n",
               pos[1], (long long)json_integer_value(json_object_get(r, "keys_destroyed")));
        json_decref(r);
    }
    vg_http_response_free(&resp);
    return 0;
}

static const char keys_help[] =
    "Usage: vigil keys rotate-patient ID [connection options]\n"
    "       vigil keys rotate-kek [--reason TEXT] [connection options]\n"
    "\n"
    "rotate-patient  retires patient ID's data key (admin): readings from now\n"
    "                on are sealed under a new key; earlier readings stay\n"
    "                readable under theirs.\n"
    "rotate-kek      a new key-encryption key, online (admin): every data key\n"
    "                is rewrapped under it in one transaction; readings are not\n"
    "                rewritten. The old KEK then opens nothing in the database;\n"
    "                keep it only as long as backups made before the rotation.\n\n";

int vg_cli_keys(int argc, char **argv)
{
    if (vg_cli_is_help(argc, argv)) {
        printf("%s%s", keys_help, vg_cli_conn_help);
        return 0;
    }
    struct vg_cli_conn c = {0};
    const char *pos[2];
    static const char *const valued[] = {"--reason", NULL};
    const char *values[1] = {NULL};
    int n = vg_cli_parse_args(argc, argv, &c, pos, 2, NULL, NULL, valued, values);
    if (n == 1 && !strcmp(pos[0], "rotate-kek")) {
        struct vg_http_target t;
        if (vg_cli_target(&c, &t) != 0)
            return 1;
        json_t *body = values[0] ? json_pack("{s:s}", "reason", values[0]) : json_object();
        char *text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        struct vg_http_response resp;
        int rc = vg_cli_call(&t, "POST", "/api/v1/keys/rotate-kek", text, &resp, 0);
        free(text);
        sodium_memzero(t.token, sizeof t.token);
        if (rc)
            return 1;
        json_t *r = json_loadb(resp.body, resp.body_len, 0, NULL);
        vg_http_response_free(&resp);
        printf("KEK rotated: %lld data keys and %lld TOTP seeds rewrapped; readings untouched\n",
               (long long)json_integer_value(json_object_get(r, "data_keys")),
               (long long)json_integer_value(json_object_get(r, "secrets")));
        json_decref(r);
        return 0;
    }
    if (n != 2 || strcmp(pos[0], "rotate-patient") || !vg_id_valid(pos[1])) {
        fprintf(stderr, "%s%s", keys_help, vg_cli_conn_help);
        return 2;
    }
    struct vg_http_target t;
    if (vg_cli_target(&c, &t) != 0)
        return 1;
    char path[VG_ID_MAX + 40];
    snprintf(path, sizeof path, "/api/v1/patients/%s/rotate-key", pos[1]);
    struct vg_http_response resp;
    int rc = vg_cli_call(&t, "POST", path, NULL, &resp, 0);
    sodium_memzero(t.token, sizeof t.token);
    if (rc)
        return 1;
    printf("patient %s: new readings will be sealed under a new data key\n", pos[1]);
    vg_http_response_free(&resp);
    return 0;
}

/* ---- vigil device ---- */

static const char device_help[] =
    "Usage: vigil device enroll ID --out DIR [connection options]\n"
    "       vigil device assign ID PATIENT [connection options]\n"
    "       vigil device list [--json] [connection options]\n"
    "       vigil device show ID [connection options]\n"
    "       vigil device set ID [--location L] [--class C] [--manufacturer M]\n"
    "                       [--model M] [--serial S] [--firmware F] [connection options]\n"
    "       vigil device quarantine|release|revoke ID --reason TEXT [connection options]\n"
    "       vigil device classes\n"
    "\n"
    "enroll      issues a client certificate for device ID from vigil's CA and\n"
    "            writes DIR/ID.pem, DIR/ID.key (0600) and DIR/ca.pem. vigil keeps\n"
    "            no copy of the private key.\n"
    "assign      attributes the device's readings to PATIENT from now on.\n"
    "list, show  the inventory: maker, model, firmware, class, location, patient,\n"
    "            credential and its expiry, last seen, source, TLS of the last\n"
    "            session, quarantine. Devices report maker, model, serial,\n"
    "            firmware and class themselves on vigil/v1/d/{id}/info.\n"
    "set         records inventory fields (location above all).\n"
    "quarantine  closes the device's session and refuses it until released;\n"
    "            its readings are kept. revoke refuses its certificate for good.\n"
    "            Each needs a reason (10-180 bytes) and is audited.\n\n";

int vg_cli_write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        fprintf(stderr, "vigil: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    close(fd);
    if (!ok)
        fprintf(stderr, "vigil: cannot write %s\n", path);
    return ok ? 0 : -1;
}

/* Writes ca.pem unless an identical one is already there. */
int vg_cli_write_ca(const char *dir, const char *pem)
{
    char path[PATH_MAX], have[16384];
    snprintf(path, sizeof path, "%s/ca.pem", dir);
    FILE *f = fopen(path, "re");
    if (f) {
        size_t n = fread(have, 1, sizeof have - 1, f);
        fclose(f);
        have[n] = '\0';
        if (!strcmp(have, pem))
            return 0;
        fprintf(stderr, "vigil: %s exists and holds a different CA\n", path);
        return -1;
    }
    return vg_cli_write_file(dir, "ca.pem", pem, 0644);
}

int vg_cli_device_enroll(const struct vg_http_target *t, const char *id, const char *out);
int vg_cli_device_enroll(const struct vg_http_target *t, const char *id, const char *out)
{
    if (mkdir(out, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "vigil: cannot create %s: %s\n", out, strerror(errno));
        return -1;
    }
    json_t *body = json_pack("{s:s}", "id", id);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct vg_http_response resp;
    int rc = vg_cli_call(t, "POST", "/api/v1/devices", text, &resp, 0);
    free(text);
    if (rc)
        return -1;
    json_t *r = json_loadb(resp.body, resp.body_len, 0, NULL);
    sodium_memzero(resp.body, resp.body_len);
    vg_http_response_free(&resp);
    const char *cert = json_string_value(json_object_get(r, "certificate"));
    const char *key = json_string_value(json_object_get(r, "private_key"));
    const char *ca = json_string_value(json_object_get(r, "ca"));
    char name[VG_ID_MAX + 8];
    rc = -1;
    if (!cert || !key || !ca) {
        fprintf(stderr, "vigil: the server's enrollment answer is incomplete\n");
    } else {
        snprintf(name, sizeof name, "%s.key", id);
        if (vg_cli_write_file(out, name, key, 0600) == 0) {
            snprintf(name, sizeof name, "%s.pem", id);
            if (vg_cli_write_file(out, name, cert, 0644) == 0 && vg_cli_write_ca(out, ca) == 0)
                rc = 0;
        }
        sodium_memzero((char *)key, strlen(key));
    }
    json_decref(r);
    return rc;
}

static void print_device_line(json_t *d)
{
    json_t *ls = json_object_get(d, "last_seen");
    json_t *cred = json_object_get(d, "credential");
    printf("%-20s %-8s %-16s %-12s %-10s %-14s %-20s %-20s %s\n",
           json_string_value(json_object_get(d, "id")),
           json_is_object(json_object_get(d, "quarantine"))
               ? "QUARANT"
               : json_string_value(json_object_get(d, "status")),
           json_string_value(json_object_get(d, "class")),
           json_string_value(json_object_get(d, "model")),
           json_string_value(json_object_get(d, "firmware")),
           json_string_value(json_object_get(d, "patient")),
           json_string_value(json_object_get(cred, "not_after")),
           json_is_object(ls) ? json_string_value(json_object_get(ls, "time")) : "never",
           json_string_value(json_object_get(d, "location")));
}

static int device_inventory(const struct vg_http_target *t, const char *id, int as_json)
{
    char path[VG_ID_MAX + 32];
    snprintf(path, sizeof path, id ? "/api/v1/devices/%s" : "/api/v1/devices", id ? id : "");
    struct vg_http_response resp;
    if (vg_cli_call(t, "GET", path, NULL, &resp, 0))
        return -1;
    json_t *r = json_loadb(resp.body, resp.body_len, 0, NULL);
    vg_http_response_free(&resp);
    if (!r) {
        fprintf(stderr, "vigil: the server's answer is not JSON\n");
        return -1;
    }
    if (as_json || id) {
        char *text = json_dumps(r, JSON_INDENT(2));
        printf("%s\n", text ? text : "");
        free(text);
    } else {
        printf("%-20s %-8s %-16s %-12s %-10s %-14s %-20s %-20s %s\n", "DEVICE", "STATUS", "CLASS",
               "MODEL", "FIRMWARE", "PATIENT", "CERT EXPIRES", "LAST SEEN", "LOCATION");
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(r, "devices"), i, d) print_device_line(d);
    }
    json_decref(r);
    return 0;
}

static int device_post(const struct vg_http_target *t, const char *method, const char *id,
                       const char *verb, json_t *body)
{
    char path[VG_ID_MAX + 48];
    snprintf(path, sizeof path, "/api/v1/devices/%s%s%s", id, verb ? "/" : "", verb ? verb : "");
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct vg_http_response resp;
    int rc = vg_cli_call(t, method, path, text, &resp, 0);
    free(text);
    if (rc == 0)
        vg_http_response_free(&resp);
    return rc;
}

int vg_cli_device(int argc, char **argv)
{
    if (vg_cli_is_help(argc, argv)) {
        printf("%s%s", device_help, vg_cli_conn_help);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "classes")) {
        const struct vg_device_class *k;
        for (size_t i = 0; (k = vg_fleet_class_at(i)); i++)
            printf("%-16s %-22s expected to report at least every %d s\n", k->name, k->display,
                   k->expected_interval_s);
        return 0;
    }
    struct vg_cli_conn c = {0};
    const char *pos[3];
    static const char *const valued[] = {"--out",   "--reason", "--location", "--class",
                                         "--manufacturer", "--model", "--serial", "--firmware",
                                         NULL};
    static const char *const flags[] = {"--json", NULL};
    const char *values[8] = {NULL};
    int flag_set[1] = {0};
    int n = vg_cli_parse_args(argc, argv, &c, pos, 3, flags, flag_set, valued, values);
    int enroll = n == 2 && !strcmp(pos[0], "enroll") && values[0];
    int assign = n == 3 && !strcmp(pos[0], "assign");
    int list = n == 1 && !strcmp(pos[0], "list");
    int show = n == 2 && !strcmp(pos[0], "show");
    int set = n == 2 && !strcmp(pos[0], "set");
    int act = n == 2 && values[1] &&
              (!strcmp(pos[0], "quarantine") || !strcmp(pos[0], "release") ||
               !strcmp(pos[0], "revoke"));
    if (list || show || set || act) {
        struct vg_http_target t;
        if (vg_cli_target(&c, &t) != 0)
            return 1;
        int rc;
        if (list || show) {
            rc = device_inventory(&t, show ? pos[1] : NULL, flag_set[0]);
        } else if (set) {
            static const char *const names[] = {"location", "class", "manufacturer", "model",
                                                "serial", "firmware"};
            json_t *body = json_object();
            for (int i = 0; i < 6; i++)
                if (values[2 + i])
                    json_object_set_new(body, names[i], json_string(values[2 + i]));
            if (json_object_size(body) == 0) {
                json_decref(body);
                fprintf(stderr, "vigil device set: name at least one field to set\n");
                sodium_memzero(t.token, sizeof t.token);
                return 2;
            }
            rc = device_post(&t, "PATCH", pos[1], NULL, body);
            if (rc == 0)
                printf("device %s updated\n", pos[1]);
        } else {
            rc = device_post(&t, "POST", pos[1], pos[0], json_pack("{s:s}", "reason", values[1]));
            if (rc == 0)
                printf("device %s: %s done (audited)\n", pos[1], pos[0]);
        }
        sodium_memzero(t.token, sizeof t.token);
        return rc ? 1 : 0;
    }
    if (!enroll && !assign) {
        fprintf(stderr, "%s%s", device_help, vg_cli_conn_help);
        return 2;
    }
    struct vg_http_target t;
    if (vg_cli_target(&c, &t) != 0)
        return 1;
    int rc;
    if (enroll) {
        rc = vg_cli_device_enroll(&t, pos[1], values[0]);
        if (rc == 0)
            printf("device %s enrolled: %s/%s.pem, %s/%s.key (keep it secret), %s/ca.pem\n",
                   pos[1], values[0], pos[1], values[0], pos[1], values[0]);
    } else {
        char path[VG_ID_MAX + 32];
        json_t *body = json_pack("{s:s}", "patient", pos[2]);
        char *text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        snprintf(path, sizeof path, "/api/v1/devices/%s/patient", pos[1]);
        struct vg_http_response resp;
        rc = vg_cli_call(&t, "PUT", path, text, &resp, 0);
        free(text);
        if (rc == 0) {
            printf("device %s assigned to patient %s\n", pos[1], pos[2]);
            vg_http_response_free(&resp);
        }
    }
    sodium_memzero(t.token, sizeof t.token);
    return rc ? 1 : 0;
}

/* ---- vigil obs ---- */

static const char obs_help[] =
    "Usage: vigil obs list PATIENT [--json] [--code LOINC] [--count N] [connection options]\n"
    "\n"
    "Shows the patient's readings, newest first (GET /fhir/Observation).\n"
    "  --json        print the FHIR R4 searchset Bundle as returned\n"
    "  --code LOINC  only this code, e.g. 8867-4\n"
    "  --count N     at most N readings (1-100000, default 100)\n\n";

int vg_cli_obs(int argc, char **argv)
{
    if (vg_cli_is_help(argc, argv)) {
        printf("%s%s", obs_help, vg_cli_conn_help);
        return 0;
    }
    struct vg_cli_conn c = {0};
    const char *pos[2];
    static const char *const flags[] = {"--json", NULL};
    static const char *const valued[] = {"--code", "--count", NULL};
    int flag_set[1] = {0};
    const char *values[2] = {NULL, NULL};
    int n = vg_cli_parse_args(argc, argv, &c, pos, 2, flags, flag_set, valued, values);
    if (n != 2 || strcmp(pos[0], "list") || !vg_id_valid(pos[1])) {
        fprintf(stderr, "%s%s", obs_help, vg_cli_conn_help);
        return 2;
    }
    if (values[0] && !vg_vital_lookup(values[0], strlen(values[0]))) {
        fprintf(stderr, "vigil: unknown LOINC code '%s'\n", values[0]);
        return 2;
    }
    char *end = NULL;
    long count = values[1] ? strtol(values[1], &end, 10) : 100;
    if (values[1] && (*end || count < 1 || count > 100000)) {
        fprintf(stderr, "vigil: --count must be 1-100000\n");
        return 2;
    }
    struct vg_http_target t;
    if (vg_cli_target(&c, &t) != 0)
        return 1;
    char path[256];
    snprintf(path, sizeof path, "/fhir/Observation?patient=%s&_count=%ld%s%s", pos[1], count,
             values[0] ? "&code=http://loinc.org%7C" : "", values[0] ? values[0] : "");
    struct vg_http_response resp;
    int rc = vg_cli_call(&t, "GET", path, NULL, &resp, 0);
    sodium_memzero(t.token, sizeof t.token);
    if (rc)
        return 1;
    if (flag_set[0]) {
        fwrite(resp.body, 1, resp.body_len, stdout);
        vg_http_response_free(&resp);
        return 0;
    }
    json_t *bundle = json_loadb(resp.body, resp.body_len, 0, NULL);
    vg_http_response_free(&resp);
    json_t *entries = json_object_get(bundle, "entry");
    printf("%-24s  %-8s  %-28s  %12s %-8s  %s\n", "EFFECTIVE", "CODE", "WHAT", "VALUE", "UNIT",
           "DEVICE");
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
    {
        json_t *o = json_object_get(e, "resource");
        json_t *coding = json_array_get(json_object_get(json_object_get(o, "code"), "coding"), 0);
        json_t *vq = json_object_get(o, "valueQuantity");
        const char *dev = json_string_value(json_object_get(json_object_get(o, "device"), "reference"));
        printf("%-24s  %-8s  %-28.28s  %12g %-8s  %s\n",
               json_string_value(json_object_get(o, "effectiveDateTime")),
               json_string_value(json_object_get(coding, "code")),
               json_string_value(json_object_get(coding, "display")),
               json_number_value(json_object_get(vq, "value")),
               json_string_value(json_object_get(vq, "unit")),
               dev && !strncmp(dev, "Device/", 7) ? dev + 7 : "");
    }
    /* 'total' is there when this page is the whole result; otherwise the
     * Bundle has a next link and there are more than --count readings. */
    json_t *total = json_object_get(bundle, "total");
    if (total)
        printf("%zu of %lld readings\n", json_array_size(entries),
               (long long)json_integer_value(total));
    else
        printf("%zu readings shown; more match (raise --count, or page with the Bundle's next link)\n",
               json_array_size(entries));
    json_decref(bundle);
    return 0;
}
