/* Accounts and access: `vigil login`, `logout`, `passwd`, `user`, `token`,
 * `careteam` and `breakglass` — clients of the routes in docs/api.md — and
 * the session file `login` saves for every other client command.
 *
 * Secrets (passwords, authenticator codes, session and service tokens) are
 * held in fixed buffers that are wiped with sodium_memzero once used. A
 * request body that carries one is encoded into such a buffer by the small
 * JSON writer below, never through jansson (whose heap copies are freed
 * unwiped); an answer that carries one has its body, and jansson's copy of
 * the value, wiped before they are freed. Secrets are never printed, except
 * a new service token without --out, once, as asked. While they are held,
 * the process dumps no core and cannot be attached to (PR_SET_DUMPABLE).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "auth/totp.h"
#include "cli/cli.h"
#include "core/util.h"

/* Longest typed secret, in bytes (a 128-character password is at most 512
 * bytes of UTF-8), NUL included. */
#define SECRET_MAX 1024
/* Longest session file accepted. */
#define SESSION_FILE_MAX 16384
/* Most items in a comma-separated list (roles, scopes, patients). */
#define LIST_MAX 64

/* ---- small helpers -------------------------------------------------------- */

/* Keeps secrets out of core dumps and away from ptrace by the same user. */
static void protect_secrets(void)
{
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        /* Best effort: the secrets are still wiped after use. */
    }
}

/* Tokens go into an HTTP header: printable ASCII without spaces, and they
 * must fit struct vg_http_target's buffer. */
static int token_ok(const char *tok)
{
    size_t n = strlen(tok);
    if (n == 0 || n >= sizeof ((struct vg_http_target *)0)->token)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (tok[i] < 0x21 || tok[i] > 0x7e)
            return 0;
    return 1;
}

/* Wipes jansson's copy of the string member 'key' of 'o' in place. */
static void json_wipe_member(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        sodium_memzero((char *)json_string_value(v), json_string_length(v));
}

/* Parses an answer body as a JSON object and frees the response (wiping
 * its body first when 'secret'). NULL, after printing why, when it is not
 * one. The caller owns (json_decref) the result. */
static json_t *answer_object(struct vg_http_response *resp, int secret)
{
    json_t *o = json_loadb(resp->body, resp->body_len, 0, NULL);
    if (secret)
        sodium_memzero(resp->body, resp->body_len);
    vg_http_response_free(resp);
    if (!json_is_object(o)) {
        fprintf(stderr, "vigil: the server's answer is not a JSON object\n");
        json_decref(o);
        return NULL;
    }
    return o;
}

/* "TITLE: DETAIL" of a problem+json answer into 'out' ("" when it has
 * neither). */
static void problem_text(const struct vg_http_response *resp, char *out, size_t size)
{
    json_t *p = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *title = json_string_value(json_object_get(p, "title"));
    const char *detail = json_string_value(json_object_get(p, "detail"));
    snprintf(out, size, "%s%s%s", title ? title : "", title && detail ? ": " : "",
             detail ? detail : "");
    json_decref(p);
}

/* The same line vg_cli_call prints for a refused call. */
static void print_problem(const struct vg_http_response *resp)
{
    char text[512];
    problem_text(resp, text, sizeof text);
    fprintf(stderr, "vigil: server answered %ld: %s\n", resp->status,
            text[0] ? text : "(no problem description)");
}

/* An id the server returned, string or integer, as text. */
static const char *json_id(json_t *v, char *buf, size_t size)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    return "?";
}

/* A time the server returned: RFC 3339 text as is; an integer is taken as
 * epoch seconds (milliseconds when it is that large) and formatted. */
static const char *json_time(json_t *v, char *buf, size_t size)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v) && size >= 32) {
        json_int_t n = json_integer_value(v);
        vg_time_format(n > 100000000000LL ? (int64_t)n : (int64_t)n * 1000, buf);
        return buf;
    }
    return NULL;
}

/* A comma-separated list, each item checked by 'valid'. */
struct list {
    int n;
    char item[LIST_MAX][VG_ID_MAX + 1];
};

static int split_list(const char *csv, struct list *l, const char *what,
                      int (*valid)(const char *))
{
    memset(l, 0, sizeof *l);
    const char *p = csv;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (l->n == LIST_MAX || len == 0 || len > VG_ID_MAX) {
            fprintf(stderr, "vigil: %s: '%s' is not a list of 1 to %d items separated by commas\n",
                    what, csv, LIST_MAX);
            return -1;
        }
        memcpy(l->item[l->n], p, len);
        l->item[l->n][len] = '\0';
        if (!valid(l->item[l->n])) {
            fprintf(stderr, "vigil: %s: invalid item '%s'\n", what, l->item[l->n]);
            return -1;
        }
        for (int k = 0; k < l->n; k++)
            if (!strcmp(l->item[k], l->item[l->n])) {
                fprintf(stderr, "vigil: %s: '%s' is listed twice\n", what, l->item[k]);
                return -1;
            }
        l->n++;
        if (!p[len])
            return 0;
        p += len + 1;
    }
}

/* A role name as the API spells them: lower-case letters, digits, '_'. */
static int role_valid(const char *r)
{
    if (!*r || strlen(r) > 32)
        return 0;
    for (; *r; r++)
        if (!((*r >= 'a' && *r <= 'z') || (*r >= '0' && *r <= '9') || *r == '_'))
            return 0;
    return 1;
}

static int scope_valid(const char *s)
{
    return !strcmp(s, "obs.read") || !strcmp(s, "obs.subscribe");
}

static json_t *list_json(const struct list *l)
{
    json_t *a = json_array();
    for (int i = 0; i < l->n; i++)
        json_array_append_new(a, json_string(l->item[i]));
    return a;
}

/* Sends a JSON body built by jansson (no secrets in it); takes 'body'. */
static int call_json(const struct vg_http_target *t, const char *method, const char *path,
                     json_t *body, struct vg_http_response *resp)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        fprintf(stderr, "vigil: out of memory\n");
        return -1;
    }
    int rc = vg_cli_call(t, method, path, text, resp, 0);
    free(text);
    return rc;
}

static void target_url(const struct vg_http_target *t, char *out, size_t size)
{
    snprintf(out, size, strchr(t->host, ':') ? "https://[%s]:%s" : "https://%s:%s", t->host,
             t->port);
}

/* Length in Unicode code points of UTF-8 text. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* ---- a JSON writer for bodies that carry secrets --------------------------- */

/* Writes into a caller-owned buffer (which the caller wipes); 'full' is
 * sticky: once something did not fit, the body is unusable. */
struct jbuf {
    char *p;
    size_t cap, len;
    int full;
};

static void jb_raw(struct jbuf *b, const char *s, size_t n)
{
    if (b->full || n >= b->cap - b->len) {
        b->full = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* A JSON string (RFC 8259 §7): quote, backslash and control characters
 * escaped; other bytes as they are (the server checks the UTF-8). */
static void jb_str(struct jbuf *b, const char *s)
{
    char esc[8];
    jb_raw(b, "\"", 1);
    for (const unsigned char *u = (const unsigned char *)s; *u; u++) {
        if (*u == '"' || *u == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*u;
            jb_raw(b, esc, 2);
        } else if (*u < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *u);
            jb_raw(b, esc, 6);
        } else {
            esc[0] = (char)*u;
            jb_raw(b, esc, 1);
        }
    }
    jb_raw(b, "\"", 1);
    sodium_memzero(esc, sizeof esc);
}

/* Opens the object, or adds a member "key":"val" (val NULL: only the key
 * and colon, for the caller to write the value). */
static void jb_member(struct jbuf *b, const char *key, const char *val)
{
    jb_raw(b, b->len == 0 ? "{" : ",", 1);
    jb_str(b, key);
    jb_raw(b, ":", 1);
    if (val)
        jb_str(b, val);
}

static void jb_list(struct jbuf *b, const char *key, const struct list *l)
{
    jb_member(b, key, NULL);
    jb_raw(b, "[", 1);
    for (int i = 0; i < l->n; i++) {
        if (i)
            jb_raw(b, ",", 1);
        jb_str(b, l->item[i]);
    }
    jb_raw(b, "]", 1);
}

/* Closes the object; returns 0, or -1 when it did not fit. */
static int jb_end(struct jbuf *b)
{
    jb_raw(b, "}", 1);
    if (b->full)
        fprintf(stderr, "vigil: the request is too long\n");
    return b->full ? -1 : 0;
}

/* ---- reading secrets -------------------------------------------------------- */

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

static void fd_puts(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* Reads one line from 'fd' byte by byte (no stdio buffer keeps a copy),
 * without its "\n" or "\r\n". Returns 0, or -1 (after printing why unless a
 * signal interrupted it). */
static int read_line_fd(int fd, char *buf, size_t cap, const char *what)
{
    size_t n = 0;
    char ch = 0;
    int rc = -1;
    for (;;) {
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR && !got_signal)
            continue;
        if (r < 0) {
            if (!got_signal)
                fprintf(stderr, "vigil: cannot read the %s: %s\n", what, strerror(errno));
            goto out;
        }
        if (r == 0) {
            if (n == 0) {
                fprintf(stderr, "vigil: no %s given (end of input)\n", what);
                goto out;
            }
            break;
        }
        if (ch == '\n')
            break;
        if (ch == '\0') {
            fprintf(stderr, "vigil: the %s contains a NUL byte\n", what);
            goto out;
        }
        if (n + 1 >= cap) {
            fprintf(stderr, "vigil: the %s is too long\n", what);
            goto out;
        }
        buf[n++] = ch;
    }
    if (n && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    rc = 0;
out:
    ch = 0;
    if (rc)
        sodium_memzero(buf, cap);
    return rc;
}

/* Asks for a secret: on the terminal without echo when standard input is
 * one (like readpassphrase(3): the terminal's settings are restored, also
 * when a signal arrives, and the signal is then delivered); otherwise the
 * next line of standard input. Returns 0 or -1. */
static int read_secret(const char *prompt, const char *what, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (!isatty(STDIN_FILENO)) {
        fputs(prompt, stderr);
        fflush(stderr);
        int rc = read_line_fd(STDIN_FILENO, buf, cap, what);
        fputc('\n', stderr);
        return rc;
    }
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "vigil: cannot open the terminal: %s\n", strerror(errno));
        return -1;
    }
    struct termios saved, quiet;
    if (tcgetattr(fd, &saved) != 0) {
        fprintf(stderr, "vigil: cannot read the terminal settings: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    quiet = saved;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    quiet.c_lflag |= ICANON;

    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP};
    enum { NSIGS = sizeof sigs / sizeof sigs[0] };
    struct sigaction sa, old[NSIGS];
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: read() returns EINTR */
    sigemptyset(&sa.sa_mask);
    got_signal = 0;
    for (int i = 0; i < NSIGS; i++)
        sigaction(sigs[i], &sa, &old[i]);

    fd_puts(fd, prompt);
    int rc = -1;
    if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0)
        fprintf(stderr, "\nvigil: cannot turn off echo: %s\n", strerror(errno));
    else
        rc = read_line_fd(fd, buf, cap, what);
    while (tcsetattr(fd, TCSAFLUSH, &saved) != 0 && errno == EINTR) {
    }
    fd_puts(fd, "\n");
    close(fd);
    for (int i = 0; i < NSIGS; i++)
        sigaction(sigs[i], &old[i], NULL);
    if (got_signal) {
        sodium_memzero(buf, cap);
        raise(got_signal);
        fprintf(stderr, "vigil: interrupted\n");
        return -1;
    }
    return rc;
}

/* Asks for a new password twice; 0 when both agree, else -1. */
static int read_new_password(const char *prompt, const char *again, char *buf, size_t cap)
{
    char repeat[SECRET_MAX];
    int rc = -1;
    if (read_secret(prompt, "password", buf, cap) == 0 &&
        read_secret(again, "repeated password", repeat, sizeof repeat) == 0) {
        size_t n = strlen(buf);
        if (n != strlen(repeat) || sodium_memcmp(buf, repeat, n) != 0)
            fprintf(stderr, "vigil: the two passwords differ; nothing was changed\n");
        else
            rc = 0;
    }
    sodium_memzero(repeat, sizeof repeat);
    if (rc)
        sodium_memzero(buf, cap);
    return rc;
}

/* An authenticator code: 6 digits, spaces allowed ("123 456"), removed. */
static int normalize_code(char *code)
{
    size_t n = 0;
    for (size_t i = 0; code[i]; i++) {
        if (code[i] == ' ')
            continue;
        if (code[i] < '0' || code[i] > '9' || n == VG_TOTP_DIGITS)
            return -1;
        code[n++] = code[i];
    }
    code[n] = '\0';
    return n == VG_TOTP_DIGITS ? 0 : -1;
}

/* ---- the session file ------------------------------------------------------ */

/* $XDG_CONFIG_HOME (when absolute, per the XDG base directory spec), else
 * $HOME/.config, else the passwd entry's home/.config. */
static int config_base(char *out, size_t size)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    if (xdg && xdg[0] == '/')
        return vg_strlcpy(out, xdg, size);
    const char *home = getenv("HOME");
    if (!home || home[0] != '/') {
        struct passwd *pw = getpwuid(getuid());
        home = pw && pw->pw_dir && pw->pw_dir[0] == '/' ? pw->pw_dir : NULL;
    }
    if (!home)
        return -1;
    int n = snprintf(out, size, "%s/.config", home);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

int vg_cli_session_path(char *out, size_t size)
{
    char base[PATH_MAX];
    if (config_base(base, sizeof base) != 0)
        return -1;
    int n = snprintf(out, size, "%s/vigil/session", base);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

int vg_cli_session_expired(const struct vg_cli_session *s)
{
    int64_t ms;
    if (vg_time_parse_rfc3339(s->expires, strlen(s->expires), &ms) != 0)
        return 0;
    return ms <= vg_now_ms();
}

int vg_cli_session_load(struct vg_cli_session *s, int quiet)
{
    char path[PATH_MAX], buf[SESSION_FILE_MAX];
    const char *why = NULL;
    int rc = -1, fd = -1;
    size_t len = 0;
    json_t *o = NULL;
    memset(s, 0, sizeof *s);
    if (vg_cli_session_path(path, sizeof path) != 0)
        return 0; /* no home directory: no session */
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        why = errno == ELOOP ? "it is a symbolic link" : strerror(errno);
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        why = strerror(errno);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        why = "it is not a regular file";
        goto out;
    }
    if (st.st_uid != geteuid()) {
        why = "it belongs to another user";
        goto out;
    }
    if (st.st_mode & 077) {
        why = "other users may access it (mode is not 0600); delete it and log in again";
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            why = strerror(errno);
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == sizeof buf - 1) {
            why = "it is too large";
            goto out;
        }
    }
    o = json_loadb(buf, len, 0, NULL);
    const char *server = json_string_value(json_object_get(o, "server"));
    const char *cacert = json_string_value(json_object_get(o, "cacert"));
    const char *user = json_string_value(json_object_get(o, "user"));
    const char *token = json_string_value(json_object_get(o, "token"));
    const char *expires = json_string_value(json_object_get(o, "expires"));
    struct vg_http_target probe;
    char err[256];
    memset(&probe, 0, sizeof probe);
    if (!server || !cacert || !user || !token || !expires) {
        why = "it is not a session (server, cacert, user, token, expires)";
    } else if (vg_http_target_from_url(&probe, server, err, sizeof err) != 0 ||
               vg_strlcpy(s->server, server, sizeof s->server) != 0) {
        why = "its server is not an https:// URL";
    } else if (cacert[0] != '/' || vg_strlcpy(s->cacert, cacert, sizeof s->cacert) != 0) {
        why = "its cacert is not an absolute path";
    } else if (!vg_id_valid(user) || vg_strlcpy(s->user, user, sizeof s->user) != 0) {
        why = "its user is not a valid id";
    } else if (!token_ok(token) || vg_strlcpy(s->token, token, sizeof s->token) != 0) {
        why = "its token is malformed";
    } else if (vg_strlcpy(s->expires, expires, sizeof s->expires) != 0) {
        why = "its expiry is malformed";
    } else {
        rc = 1;
    }
out:
    if (fd >= 0)
        close(fd);
    json_wipe_member(o, "token");
    json_decref(o);
    sodium_memzero(buf, sizeof buf);
    if (rc == 1)
        return 1;
    sodium_memzero(s, sizeof *s);
    if (quiet)
        return 0;
    fprintf(stderr, "vigil: cannot use the session file %s: %s\n", path, why);
    return -1;
}

/* Replaces the session file atomically: a 0600 temporary file in the same
 * 0700 directory, fsync, rename, fsync of the directory. Returns 0, or -1
 * after printing why. 'path' receives the file's path. */
static int session_save(const struct vg_cli_session *s, char *path, size_t path_size)
{
    char base[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX], body[8192];
    struct jbuf b = {body, sizeof body, 0, 0};
    int fd = -1, rc = -1;
    tmp[0] = '\0';
    if (config_base(base, sizeof base) != 0 || vg_cli_session_path(path, path_size) != 0 ||
        snprintf(dir, sizeof dir, "%s/vigil", base) >= (int)sizeof dir ||
        snprintf(tmp, sizeof tmp, "%s/.session.XXXXXX", dir) >= (int)sizeof tmp) {
        fprintf(stderr, "vigil: cannot find a place for the session file (set HOME or "
                        "XDG_CONFIG_HOME)\n");
        tmp[0] = '\0';
        goto out;
    }
    if (mkdir(base, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "vigil: cannot create %s: %s\n", base, strerror(errno));
        tmp[0] = '\0';
        goto out;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "vigil: cannot create %s: %s\n", dir, strerror(errno));
        tmp[0] = '\0';
        goto out;
    }
    struct stat st;
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
        fprintf(stderr, "vigil: %s is not a directory of yours\n", dir);
        tmp[0] = '\0';
        goto out;
    }
    if ((st.st_mode & 077) && chmod(dir, 0700) != 0) {
        fprintf(stderr, "vigil: cannot make %s private (0700): %s\n", dir, strerror(errno));
        tmp[0] = '\0';
        goto out;
    }
    jb_member(&b, "server", s->server);
    jb_member(&b, "cacert", s->cacert);
    jb_member(&b, "user", s->user);
    jb_member(&b, "token", s->token);
    jb_member(&b, "expires", s->expires);
    if (jb_end(&b) != 0) {
        tmp[0] = '\0';
        goto out;
    }
    jb_raw(&b, "\n", 1);
    fd = mkostemp(tmp, O_CLOEXEC); /* created 0600 */
    if (fd < 0) {
        fprintf(stderr, "vigil: cannot create a file in %s: %s\n", dir, strerror(errno));
        tmp[0] = '\0';
        goto out;
    }
    if (fchmod(fd, 0600) != 0 || write(fd, body, b.len) != (ssize_t)b.len || fsync(fd) != 0) {
        fprintf(stderr, "vigil: cannot write %s: %s\n", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        fprintf(stderr, "vigil: cannot write %s: %s\n", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "vigil: cannot rename %s to %s: %s\n", tmp, path, strerror(errno));
        goto out;
    }
    tmp[0] = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0) {
            /* The file is in place; only its durability across a crash is
             * in doubt, and a lost session means logging in again. */
        }
        close(dfd);
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (tmp[0])
        unlink(tmp);
    sodium_memzero(body, sizeof body);
    return rc;
}

/* The connection options that make no sense for commands that work on the
 * stored session. */
static int session_only_options(const struct vg_cli_conn *c, const char *cmd)
{
    if (c->datadir || c->token_file) {
        fprintf(stderr, "vigil %s: works on the session saved by `vigil login`; -d and "
                        "--token-file do not apply\n", cmd);
        return -1;
    }
    return 0;
}

/* ---- vigil login ----------------------------------------------------------- */

static const char login_help[] =
    "Usage: vigil login USER [connection options]\n"
    "\n"
    "Signs USER in (POST /api/v1/login) with their password and the 6-digit code\n"
    "of their authenticator app, and saves the session in\n"
    "$XDG_CONFIG_HOME/vigil/session (default ~/.config/vigil/session; directory\n"
    "0700, file 0600) together with the server and CA certificate used, so later\n"
    "commands need no connection options. Prints when the session ends; it also\n"
    "ends after a while without use (the server's [session] settings).\n"
    "\n"
    "Prompts for \"Password: \" and \"Authenticator code: \" on the terminal,\n"
    "without echo. When standard input is not a terminal, the password is its\n"
    "first line and the code its second.\n"
    "\n"
    "A failed login says only \"login failed\" (the server does not say what was\n"
    "wrong). Repeated failures lock the account name and the source address for a\n"
    "while; the server's message then says so.\n"
    "\n"
    "Connection options choose the server (default: the one of the saved session).\n\n";

int vg_cli_login(int argc, char **argv)
{
    if (vg_cli_is_help(argc, argv)) {
        printf("%s%s", login_help, vg_cli_conn_help);
        return 0;
    }
    struct vg_cli_conn c = {0};
    const char *pos[1];
    int n = vg_cli_parse_args(argc, argv, &c, pos, 1, NULL, NULL, NULL, NULL);
    if (n != 1) {
        fprintf(stderr, "%s%s", login_help, vg_cli_conn_help);
        return 2;
    }
    if (!vg_id_valid(pos[0])) {
        fprintf(stderr, "vigil: '%s' is not a valid user id\n", pos[0]);
        return 2;
    }
    c.anonymous = 1;
    struct vg_http_target t;
    if (vg_cli_target(&c, &t) != 0)
        return 1;
    protect_secrets();

    char pw[SECRET_MAX], code[SECRET_MAX], body[8 * SECRET_MAX], err[512], path[PATH_MAX];
    char when[32];
    struct jbuf b = {body, sizeof body, 0, 0};
    struct vg_cli_session s;
    struct vg_http_response resp;
    json_t *answer = NULL;
    int rc = 1;
    memset(&s, 0, sizeof s);
    memset(&resp, 0, sizeof resp);
    body[0] = '\0';
    code[0] = '\0';
    if (read_secret("Password: ", "password", pw, sizeof pw) != 0 ||
        read_secret("Authenticator code: ", "authenticator code", code, sizeof code) != 0)
        goto out;
    if (normalize_code(code) != 0) {
        fprintf(stderr, "vigil: the authenticator code is %d digits\n", VG_TOTP_DIGITS);
        goto out;
    }
    jb_member(&b, "user", pos[0]);
    jb_member(&b, "password", pw);
    jb_member(&b, "totp", code);
    sodium_memzero(pw, sizeof pw);
    sodium_memzero(code, sizeof code);
    if (jb_end(&b) != 0)
        goto out;
    if (vg_http_request(&t, "POST", "/api/v1/login", body, b.len, &resp, err, sizeof err) != 0) {
        fprintf(stderr, "vigil: %s\n", err);
        goto out;
    }
    sodium_memzero(body, sizeof body);
    if (resp.status == 401) {
        /* Unknown user, wrong password or code, replayed code, disabled:
         * the server does not say which, and neither do we. */
        fprintf(stderr, "vigil: login failed\n");
        goto out;
    }
    if (resp.status == 429) {
        problem_text(&resp, err, sizeof err);
        fprintf(stderr, "vigil: %s\n", err[0] ? err : "too many failed logins; try again later");
        goto out;
    }
    if (resp.status < 200 || resp.status > 299) {
        print_problem(&resp);
        goto out;
    }
    if (!(answer = answer_object(&resp, 1)))
        goto out;
    const char *token = json_string_value(json_object_get(answer, "token"));
    const char *expires = json_time(json_object_get(answer, "expires"), when, sizeof when);
    if (!token || !token_ok(token) || !expires) {
        fprintf(stderr, "vigil: the server's login answer has no usable token and expiry\n");
        goto out;
    }
    target_url(&t, s.server, sizeof s.server);
    char abs[PATH_MAX];
    vg_strlcpy(s.cacert, realpath(t.cacert, abs) ? abs : t.cacert, sizeof s.cacert);
    vg_strlcpy(s.user, pos[0], sizeof s.user);
    vg_strlcpy(s.token, token, sizeof s.token);
    vg_strlcpy(s.expires, expires, sizeof s.expires);
    if (session_save(&s, path, sizeof path) != 0) {
        /* A session nobody can use is ended rather than left valid. */
        vg_strlcpy(t.token, s.token, sizeof t.token);
        if (vg_http_request(&t, "POST", "/api/v1/logout", NULL, 0, &resp, err, sizeof err) == 0)
            vg_http_response_free(&resp);
        fprintf(stderr, "vigil: the session was not saved, and has been ended\n");
        goto out;
    }
    printf("logged in as %s until %s\n", s.user, s.expires);
    rc = 0;
out:
    sodium_memzero(pw, sizeof pw);
    sodium_memzero(code, sizeof code);
    sodium_memzero(body, sizeof body);
    sodium_memzero(&s, sizeof s);
    sodium_memzero(t.token, sizeof t.token);
    if (resp.body)
        sodium_memzero(resp.body, resp.body_len);
    vg_http_response_free(&resp);
    json_wipe_member(answer, "token");
    json_decref(answer);
    return rc;
}

/* ---- vigil logout ---------------------------------------------------------- */

static const char logout_help[] =
    "Usage: vigil logout [--server URL] [--cacert FILE]\n"
    "\n"
    "Ends the session saved by `vigil login` (POST /api/v1/logout: the server\n"
    "revokes its token) and deletes the session file. The file is deleted even\n"
    "when the server cannot be reached; vigil then says so and exits 1, as the\n"
    "token stays valid on the server until it expires or goes unused.\n"
    "  --server URL   must be the session's server (default: it)\n"
    "  --cacert FILE  vigil's CA certificate (default: the session's)\n"
    "-d and --token-file do not apply.\n\n";

int vg_cli_logout(int argc, char **argv)
{
    if (vg_cli_is_help(argc, argv)) {
        printf("%s%s", logout_help, vg_cli_conn_help);
        return 0;
    }
    struct vg_cli_conn c = {0};
    if (vg_cli_parse_args(argc, argv, &c, NULL, 0, NULL, NULL, NULL, NULL) != 0) {
        fprintf(stderr, "%s", logout_help);
        return 2;
    }
    if (session_only_options(&c, "logout") != 0)
        return 2;
    char path[PATH_MAX], err[512];
    if (vg_cli_session_path(path, sizeof path) != 0) {
        fprintf(stderr, "vigil: not logged in (no home directory)\n");
        return 1;
    }
    struct vg_cli_session s;
    int r = vg_cli_session_load(&s, 0);
    sodium_memzero(&s, sizeof s);
    if (r == 0) {
        fprintf(stderr, "vigil: not logged in (no session in %s)\n", path);
        return 1;
    }
    if (r < 0) {
        if (unlink(path) == 0)
            fprintf(stderr, "vigil: removed the unusable session file %s\n", path);
        return 1;
    }
    c.session_only = 1;
    struct vg_http_target t;
    if (vg_cli_target(&c, &t) != 0)
        return 1; /* e.g. another --server: keep the session */
    struct vg_http_response resp;
    int ended = 0;
    if (vg_http_request(&t, "POST", "/api/v1/logout", NULL, 0, &resp, err, sizeof err) != 0) {
        fprintf(stderr, "vigil: %s\n", err);
    } else {
        if (resp.status >= 200 && resp.status <= 299)
            ended = 1;
        else if (resp.status == 401)
            ended = 2; /* already expired, idle-timed-out or revoked */
        else
            print_problem(&resp);
        vg_http_response_free(&resp);
    }
    sodium_memzero(t.token, sizeof t.token);
    if (unlink(path) != 0 && errno != ENOENT) {
        fprintf(stderr, "vigil: cannot delete %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (!ended) {
        fprintf(stderr, "vigil: the server did not confirm the logout; the session file was "
                        "deleted, but its token stays valid on the server until it expires or "
                        "goes unused\n");
        return 1;
    }
    printf(ended == 2 ? "logged out (the server had already ended the session)\n"
                      : "logged out\n");
    return 0;
}

/* ---- vigil passwd ---------------------------------------------------------- */

static const char passwd_help[] =
    "Usage: vigil passwd [--server URL] [--cacert FILE]\n"
    "\n"
    "Changes the password of the user logged in with `vigil login` (PUT\n"
    "/api/v1/me/password). Prompts for the current password and the new one\n"
    "twice, without echo; when standard input is not a terminal, reads them\n"
    "from its first three lines. The two new ones must match. The server\n"
    "checks the new one: at least 12 characters, not a common or breached\n"
    "password, not the user id; its reason is shown when it refuses.\n"
    "  --server URL   must be the session's server (default: it)\n"
    "  --cacert FILE  vigil's CA certificate (default: the session's)\n"
    "-d and --token-file do not apply.\n\n";

int vg_cli_passwd(int argc, char **argv)
{
    if (vg_cli_is_help(argc, argv)) {
        printf("%s%s", passwd_help, vg_cli_conn_help);
        return 0;
    }
    struct vg_cli_conn c = {0};
    if (vg_cli_parse_args(argc, argv, &c, NULL, 0, NULL, NULL, NULL, NULL) != 0) {
        fprintf(stderr, "%s", passwd_help);
        return 2;
    }
    if (session_only_options(&c, "passwd") != 0)
        return 2;
    c.session_only = 1;
    struct vg_http_target t;
    if (vg_cli_target(&c, &t) != 0)
        return 1;
    protect_secrets();
    char cur[SECRET_MAX], pw[SECRET_MAX], body[16 * SECRET_MAX], err[512];
    struct jbuf b = {body, sizeof body, 0, 0};
    struct vg_http_response resp;
    int rc = 1;
    memset(&resp, 0, sizeof resp);
    pw[0] = '\0';
    if (read_secret("Current password: ", "current password", cur, sizeof cur) != 0 ||
        read_new_password("New password: ", "Repeat the new password: ", pw, sizeof pw) != 0)
        goto out;
    if (!strcmp(cur, pw)) {
        fprintf(stderr, "vigil: the new password is the current one; nothing was changed\n");
        goto out;
    }
    jb_member(&b, "current", cur);
    jb_member(&b, "new", pw);
    sodium_memzero(cur, sizeof cur);
    sodium_memzero(pw, sizeof pw);
    if (jb_end(&b) != 0)
        goto out;
    if (vg_http_request(&t, "PUT", "/api/v1/me/password", body, b.len, &resp, err,
                        sizeof err) != 0) {
        fprintf(stderr, "vigil: %s\n", err);
        goto out;
    }
    if (resp.status >= 200 && resp.status <= 299) {
        printf("password changed\n");
        rc = 0;
    } else if (resp.status == 401) {
        fprintf(stderr, "vigil: the session has ended; run `vigil login` again\n");
    } else {
        /* 403: the current password is wrong; 400: the policy's reason. */
        problem_text(&resp, err, sizeof err);
        fprintf(stderr, "vigil: password not changed: %s\n",
                err[0] ? err : resp.status == 403 ? "the current password is wrong"
                                                  : "refused by the server");
    }
out:
    sodium_memzero(cur, sizeof cur);
    sodium_memzero(pw, sizeof pw);
    sodium_memzero(body, sizeof body);
    sodium_memzero(t.token, sizeof t.token);
    vg_http_response_free(&resp);
    return rc;
}

/* ---- vigil user ------------------------------------------------------------ */

static const char user_help[] =
    "Usage: vigil user add ID --role ROLE[,ROLE...] [--service] [connection options]\n"
    "       vigil user list [--json] [connection options]\n"
    "       vigil user disable ID [connection options]\n"
    "       vigil user role ID ROLE[,ROLE...] [connection options]\n"
    "       vigil user totp ID [connection options]\n"
    "       vigil user cert ID --out DIR [connection options]\n"
    "\n"
    "Manages accounts (admin). IDs are 1-64 of A-Z a-z 0-9 . _ - ; roles are\n"
    "admin, clinician, nurse, biomed, auditor and integration (docs/api.md).\n"
    "\n"
    "add      creates the account ID. A person is asked for an initial password\n"
    "         twice (no echo; the first two lines of standard input when it is\n"
    "         not a terminal) and gets a second factor: a QR code and its\n"
    "         otpauth:// URI are printed once, to scan into an authenticator app.\n"
    "  --role ROLE[,ROLE...]  its roles (required, except with --service)\n"
    "  --service  a service principal for an integration: no password and no\n"
    "             second factor; it uses tokens from `vigil token add`. Its role\n"
    "             defaults to integration.\n"
    "list     shows every account: ID KIND ROLES DISABLED MFA LAST-LOGIN\n"
    "  --json     print the server's JSON answer instead\n"
    "disable  disables ID; all its sessions and tokens are revoked\n"
    "role     replaces ID's roles with the ones given\n"
    "totp     gives ID a new second factor (prints the new QR code and URI);\n"
    "         the old one stops working\n"
    "cert     issues ID a client certificate for live data over MQTT (CN = ID)\n"
    "         and writes DIR/ID.pem, DIR/ID.key (0600) and DIR/ca.pem; vigil\n"
    "         keeps no copy of the key\n"
    "  --out DIR  where to write them (created 0700 if missing)\n\n";

/* Prints an enrollment URI and its QR code, then wipes jansson's copy. */
static int print_totp(json_t *answer, const char *id)
{
    json_t *v = json_object_get(answer, "totp_uri");
    const char *uri = json_string_value(v);
    if (!uri || strncmp(uri, "otpauth://", 10)) {
        fprintf(stderr, "vigil: the server's answer has no otpauth:// URI\n");
        return -1;
    }
    printf("Scan this QR code into %s's authenticator app now; it is shown only once:\n\n", id);
    char *qr = vg_totp_qr_text(uri);
    if (qr) {
        fputs(qr, stdout);
        sodium_memzero(qr, strlen(qr));
        free(qr);
    } else {
        printf("(the QR code could not be drawn; enter the URI below instead)\n");
    }
    printf("\nor enter this URI in the app:\ntotp_uri: %s\n", uri);
    fflush(stdout);
    json_wipe_member(answer, "totp_uri");
    return 0;
}

static int user_add(const struct vg_http_target *t, const char *id, const struct list *roles,
                    const char *roles_csv, int service)
{
    char pw[SECRET_MAX], body[8 * SECRET_MAX + 4096];
    struct jbuf b = {body, sizeof body, 0, 0};
    struct vg_http_response resp;
    json_t *answer = NULL;
    int rc = -1;
    pw[0] = '\0';
    body[0] = '\0';
    jb_member(&b, "id", id);
    jb_list(&b, "roles", roles);
    if (service) {
        jb_member(&b, "kind", "service");
    } else {
        protect_secrets();
        if (read_new_password("Initial password: ", "Repeat the password: ", pw, sizeof pw) != 0)
            goto out;
        jb_member(&b, "password", pw);
        sodium_memzero(pw, sizeof pw);
    }
    if (jb_end(&b) != 0)
        goto out;
    int r = vg_cli_call(t, "POST", "/api/v1/users", body, &resp, 0);
    sodium_memzero(body, sizeof body);
    if (r != 0)
        goto out;
    if (!(answer = answer_object(&resp, 1)))
        goto out;
    const char *kind = json_string_value(json_object_get(answer, "kind"));
    printf("%s %s added with roles %s\n", service ? "service" : "user", id,
           roles_csv ? roles_csv : "integration");
    if (service || (kind && !strcmp(kind, "service"))) {
        printf("Give it a token with: vigil token add %s --scope obs.read\n", id);
        rc = 0;
    } else {
        rc = print_totp(answer, id);
        if (rc == 0)
            printf("%s signs in with: vigil login %s\n", id, id);
    }
out:
    sodium_memzero(pw, sizeof pw);
    sodium_memzero(body, sizeof body);
    json_wipe_member(answer, "totp_uri");
    json_decref(answer);
    return rc;
}

/* Roles as "a,b": the server gives an array, or one space-separated
 * string. */
static void roles_text(json_t *v, char *out, size_t size)
{
    size_t len = 0, k;
    json_t *r;
    out[0] = '\0';
    if (json_is_string(v)) {
        vg_strlcpy(out, json_string_value(v), size);
        for (char *p = out; *p; p++)
            if (*p == ' ')
                *p = ',';
        return;
    }
    json_array_foreach(v, k, r)
    {
        const char *name = json_string_value(r);
        int n = snprintf(out + len, size - len, "%s%s", k ? "," : "", name ? name : "?");
        if (n < 0 || (size_t)n >= size - len)
            break;
        len += (size_t)n;
    }
}

static int user_list(const struct vg_http_target *t, int as_json)
{
    struct vg_http_response resp;
    if (vg_cli_call(t, "GET", "/api/v1/users", NULL, &resp, 0) != 0)
        return -1;
    if (as_json) {
        fwrite(resp.body, 1, resp.body_len, stdout);
        if (resp.body_len && resp.body[resp.body_len - 1] != '\n')
            putchar('\n');
        vg_http_response_free(&resp);
        return 0;
    }
    json_t *answer = answer_object(&resp, 0);
    if (!answer)
        return -1;
    printf("%-24s  %-8s  %-28s  %-8s  %-3s  %s\n", "ID", "KIND", "ROLES", "DISABLED", "MFA",
           "LAST-LOGIN");
    size_t i;
    json_t *u;
    char roles[256], when[32];
    json_array_foreach(json_object_get(answer, "users"), i, u)
    {
        roles_text(json_object_get(u, "roles"), roles, sizeof roles);
        const char *id = json_string_value(json_object_get(u, "id"));
        const char *kind = json_string_value(json_object_get(u, "kind"));
        const char *last = json_time(json_object_get(u, "last_login"), when, sizeof when);
        printf("%-24s  %-8s  %-28s  %-8s  %-3s  %s\n", id ? id : "?", kind ? kind : "?",
               roles[0] ? roles : "-", json_is_true(json_object_get(u, "disabled")) ? "yes" : "no",
               json_is_true(json_object_get(u, "mfa")) ? "yes" : "no", last ? last : "never");
    }
    json_decref(answer);
    return 0;
}

/* DIR/ID.pem, DIR/ID.key and DIR/ca.pem from a certificate answer, as
 * `vigil device enroll` writes them. */
static int user_cert(const struct vg_http_target *t, const char *id, const char *out)
{
    char path[PATH_MAX], name[VG_ID_MAX + 8];
    static const char *const ext[] = {"key", "pem"};
    for (int i = 0; i < 2; i++) {
        /* Refuse before the server issues a certificate that cannot be kept. */
        snprintf(path, sizeof path, "%s/%s.%s", out, id, ext[i]);
        if (access(path, F_OK) == 0) {
            fprintf(stderr, "vigil: %s already exists; refusing to overwrite it\n", path);
            return -1;
        }
    }
    if (mkdir(out, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "vigil: cannot create %s: %s\n", out, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "/api/v1/users/%s/certificate", id);
    struct vg_http_response resp;
    if (vg_cli_call(t, "POST", path, NULL, &resp, 0) != 0)
        return -1;
    json_t *answer = answer_object(&resp, 1);
    if (!answer)
        return -1;
    const char *cert = json_string_value(json_object_get(answer, "certificate"));
    const char *key = json_string_value(json_object_get(answer, "private_key"));
    const char *ca = json_string_value(json_object_get(answer, "ca"));
    int rc = -1;
    if (!cert || !key || !ca) {
        fprintf(stderr, "vigil: the server's certificate answer is incomplete\n");
    } else {
        snprintf(name, sizeof name, "%s.key", id);
        if (vg_cli_write_file(out, name, key, 0600) == 0) {
            snprintf(name, sizeof name, "%s.pem", id);
            if (vg_cli_write_file(out, name, cert, 0644) == 0 && vg_cli_write_ca(out, ca) == 0)
                rc = 0;
        }
    }
    json_wipe_member(answer, "private_key");
    json_decref(answer);
    if (rc == 0)
        printf("certificate for %s: %s/%s.pem, %s/%s.key (keep it secret), %s/ca.pem\n", id, out,
               id, out, id, out);
    return rc;
}

int vg_cli_user(int argc, char **argv)
{
    if (vg_cli_is_help(argc, argv)) {
        printf("%s%s", user_help, vg_cli_conn_help);
        return 0;
    }
    struct vg_cli_conn c = {0};
    const char *pos[3];
    static const char *const flags[] = {"--service", "--json", NULL};
    static const char *const valued[] = {"--role", "--out", NULL};
    int flag_set[2] = {0, 0};
    const char *values[2] = {NULL, NULL};
    int n = vg_cli_parse_args(argc, argv, &c, pos, 3, flags, flag_set, valued, values);
    const char *sub = n >= 1 ? pos[0] : "";
    int service = flag_set[0], as_json = flag_set[1];
    const char *role = values[0], *out = values[1];
    int ok = n >= 1;
    if (!strcmp(sub, "add"))
        ok = n == 2 && (role || service) && !as_json && !out;
    else if (!strcmp(sub, "list"))
        ok = n == 1 && !service && !role && !out;
    else if (!strcmp(sub, "disable") || !strcmp(sub, "totp"))
        ok = n == 2 && !service && !as_json && !role && !out;
    else if (!strcmp(sub, "role"))
        ok = n == 3 && !service && !as_json && !role && !out;
    else if (!strcmp(sub, "cert"))
        ok = n == 2 && out && !service && !as_json && !role;
    else
        ok = 0;
    if (!ok) {
        fprintf(stderr, "%s%s", user_help, vg_cli_conn_help);
        return 2;
    }
    if (n >= 2 && !vg_id_valid(pos[1])) {
        fprintf(stderr, "vigil: '%s' is not a valid id\n", pos[1]);
        return 2;
    }
    struct list roles;
    if (!strcmp(sub, "role") && split_list(pos[2], &roles, "roles", role_valid) != 0)
        return 2;
    if (!strcmp(sub, "add") &&
        split_list(role ? role : "integration", &roles, "--role", role_valid) != 0)
        return 2;
    struct vg_http_target t;
    if (vg_cli_target(&c, &t) != 0)
        return 1;
    int rc = -1;
    char path[VG_ID_MAX + 64];
    struct vg_http_response resp;
    if (!strcmp(sub, "add")) {
        rc = user_add(&t, pos[1], &roles, role, service);
    } else if (!strcmp(sub, "list")) {
        rc = user_list(&t, as_json);
    } else if (!strcmp(sub, "disable")) {
        snprintf(path, sizeof path, "/api/v1/users/%s/disable", pos[1]);
        rc = vg_cli_call(&t, "POST", path, NULL, &resp, 0);
        if (rc == 0) {
            vg_http_response_free(&resp);
            printf("user %s disabled; its sessions and tokens are revoked\n", pos[1]);
        }
    } else if (!strcmp(sub, "role")) {
        snprintf(path, sizeof path, "/api/v1/users/%s/roles", pos[1]);
        rc = call_json(&t, "PUT", path, json_pack("{s:o}", "roles", list_json(&roles)), &resp);
        if (rc == 0) {
            vg_http_response_free(&resp);
            printf("user %s now has the roles %s\n", pos[1], pos[2]);
        }
    } else if (!strcmp(sub, "totp")) {
        snprintf(path, sizeof path, "/api/v1/users/%s/totp", pos[1]);
        rc = vg_cli_call(&t, "POST", path, NULL, &resp, 0);
        if (rc == 0) {
            json_t *answer = answer_object(&resp, 1);
            rc = answer ? print_totp(answer, pos[1]) : -1;
            if (rc == 0)
                printf("%s's previous authenticator entry no longer works\n", pos[1]);
            json_decref(answer);
        }
    } else {
        rc = user_cert(&t, pos[1], out);
    }
    sodium_memzero(t.token, sizeof t.token);
    return rc ? 1 : 0;
}

/* ---- vigil token ----------------------------------------------------------- */

static const char token_help[] =
    "Usage: vigil token add PRINCIPAL --scope SCOPE[,SCOPE] [--patients P1,P2,...]\n"
    "                       [--expires-in SECONDS] [--out FILE] [connection options]\n"
    "       vigil token revoke ID [connection options]\n"
    "\n"
    "Service tokens for integrations (admin).\n"
    "add     issues a bearer token to PRINCIPAL (POST /api/v1/tokens). The token\n"
    "        is shown only once: written to FILE, or else printed alone on\n"
    "        standard output (its id and expiry go to standard error).\n"
    "  --scope SCOPE[,SCOPE]   what it may do: obs.read, obs.subscribe (required)\n"
    "  --patients P1,P2,...    only these patients' data (default: all patients)\n"
    "  --expires-in SECONDS    its lifetime (default: the server's)\n"
    "  --out FILE              write the token to FILE, created with mode 0600;\n"
    "                          an existing FILE is never overwritten\n"
    "revoke  revokes the token with the id ID that `token add` printed\n\n";

/* The request of `token add`, checked before anything is sent. */
struct token_req {
    struct list scopes, patients;
    int all_patients;
    long long seconds; /* 0: the server's default */
};

static int token_parse(struct token_req *r, const char *scopes_csv, const char *patients_csv,
                       const char *expires_in)
{
    memset(r, 0, sizeof *r);
    r->all_patients = !patients_csv;
    if (split_list(scopes_csv, &r->scopes, "--scope", scope_valid) != 0 ||
        (patients_csv && split_list(patients_csv, &r->patients, "--patients", vg_id_valid) != 0))
        return -1;
    if (expires_in) {
        char *end = NULL;
        errno = 0;
        r->seconds = strtoll(expires_in, &end, 10);
        if (errno || end == expires_in || *end || r->seconds < 1 || r->seconds > INT32_MAX) {
            fprintf(stderr, "vigil: --expires-in must be a number of seconds (1-%d)\n",
                    INT32_MAX);
            return -1;
        }
    }
    return 0;
}

static int token_add(const struct vg_http_target *t, const char *principal,
                     const struct token_req *r, const char *out)
{
    struct stat st;
    if (out && lstat(out, &st) == 0) {
        fprintf(stderr, "vigil: %s already exists; refusing to overwrite it\n", out);
        return 1;
    }
    json_t *body = json_pack("{s:s, s:o}", "principal", principal, "scopes", list_json(&r->scopes));
    if (!r->all_patients)
        json_object_set_new(body, "patients", list_json(&r->patients));
    if (r->seconds)
        json_object_set_new(body, "expires_in_s", json_integer(r->seconds));
    protect_secrets();
    struct vg_http_response resp;
    if (call_json(t, "POST", "/api/v1/tokens", body, &resp) != 0)
        return 1;
    json_t *answer = answer_object(&resp, 1);
    if (!answer)
        return 1;
    char idbuf[32], when[32];
    const char *id = json_id(json_object_get(answer, "id"), idbuf, sizeof idbuf);
    const char *token = json_string_value(json_object_get(answer, "token"));
    const char *expires = json_time(json_object_get(answer, "expires"), when, sizeof when);
    int rc = 1;
    if (!token || !token_ok(token)) {
        fprintf(stderr, "vigil: the server's answer has no usable token; revoke it with: vigil "
                        "token revoke %s\n", id);
    } else if (!out) {
        fprintf(stderr, "token %s for %s (expires %s); it is shown only this once:\n", id,
                principal, expires ? expires : "?");
        printf("%s\n", token);
        fflush(stdout);
        rc = 0;
    } else {
        int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        size_t len = strlen(token);
        int ok = fd >= 0 && write(fd, token, len) == (ssize_t)len && write(fd, "\n", 1) == 1 &&
                 fsync(fd) == 0;
        int saved = errno;
        if (fd >= 0 && close(fd) != 0 && ok) {
            ok = 0;
            saved = errno;
        }
        if (ok) {
            printf("token %s for %s written to %s (expires %s)\n", id, principal, out,
                   expires ? expires : "?");
            rc = 0;
        } else {
            if (fd >= 0)
                unlink(out);
            fprintf(stderr, "vigil: cannot write %s: %s; the token was not kept: revoke it with: "
                            "vigil token revoke %s\n", out, strerror(saved), id);
        }
    }
    json_wipe_member(answer, "token");
    json_decref(answer);
    return rc;
}

int vg_cli_token(int argc, char **argv)
{
    if (vg_cli_is_help(argc, argv)) {
        printf("%s%s", token_help, vg_cli_conn_help);
        return 0;
    }
    struct vg_cli_conn c = {0};
    const char *pos[2];
    static const char *const valued[] = {"--scope", "--patients", "--expires-in", "--out", NULL};
    const char *v[4] = {NULL, NULL, NULL, NULL};
    int n = vg_cli_parse_args(argc, argv, &c, pos, 2, NULL, NULL, valued, v);
    int add = n == 2 && !strcmp(pos[0], "add") && v[0];
    int revoke = n == 2 && !strcmp(pos[0], "revoke") && !v[0] && !v[1] && !v[2] && !v[3];
    if (!add && !revoke) {
        fprintf(stderr, "%s%s", token_help, vg_cli_conn_help);
        return 2;
    }
    if (!vg_id_valid(pos[1])) {
        fprintf(stderr, "vigil: '%s' is not a valid id\n", pos[1]);
        return 2;
    }
    struct token_req req;
    if (add && token_parse(&req, v[0], v[1], v[2]) != 0)
        return 2;
    struct vg_http_target t;
    if (vg_cli_target(&c, &t) != 0)
        return 1;
    int rc;
    if (add) {
        rc = token_add(&t, pos[1], &req, v[3]);
    } else {
        char path[VG_ID_MAX + 32];
        struct vg_http_response resp;
        snprintf(path, sizeof path, "/api/v1/tokens/%s", pos[1]);
        rc = vg_cli_call(&t, "DELETE", path, NULL, &resp, 0) ? 1 : 0;
        if (rc == 0) {
            vg_http_response_free(&resp);
            printf("token %s revoked\n", pos[1]);
        }
    }
    sodium_memzero(t.token, sizeof t.token);
    return rc;
}

/* ---- vigil careteam -------------------------------------------------------- */

static const char careteam_help[] =
    "Usage: vigil careteam add USER PATIENT [--until TIME] [connection options]\n"
    "       vigil careteam end ID [connection options]\n"
    "       vigil careteam list [--user USER] [--json] [connection options]\n"
    "\n"
    "Care teams: a clinician or nurse sees the data of the patients they are\n"
    "assigned to, and only while the assignment lasts.\n"
    "add   assigns USER to PATIENT from now on (admin); prints the assignment id\n"
    "  --until TIME   the assignment ends then (RFC 3339, e.g.\n"
    "                 2026-12-31T18:00:00Z); default: until ended\n"
    "end   ends the assignment ID now (admin)\n"
    "list  shows assignments: ID USER PATIENT START END (admin; or a user's own)\n"
    "  --user USER    only USER's assignments\n"
    "  --json         print the server's JSON answer instead\n\n";

int vg_cli_careteam(int argc, char **argv)
{
    if (vg_cli_is_help(argc, argv)) {
        printf("%s%s", careteam_help, vg_cli_conn_help);
        return 0;
    }
    struct vg_cli_conn c = {0};
    const char *pos[3];
    static const char *const flags[] = {"--json", NULL};
    static const char *const valued[] = {"--until", "--user", NULL};
    int flag_set[1] = {0};
    const char *v[2] = {NULL, NULL};
    int n = vg_cli_parse_args(argc, argv, &c, pos, 3, flags, flag_set, valued, v);
    const char *sub = n >= 1 ? pos[0] : "";
    int add = n == 3 && !strcmp(sub, "add") && !v[1] && !flag_set[0];
    int end = n == 2 && !strcmp(sub, "end") && !v[0] && !v[1] && !flag_set[0];
    int list = n == 1 && !strcmp(sub, "list") && !v[0];
    if (!add && !end && !list) {
        fprintf(stderr, "%s%s", careteam_help, vg_cli_conn_help);
        return 2;
    }
    for (int i = 1; i < n; i++)
        if (!vg_id_valid(pos[i])) {
            fprintf(stderr, "vigil: '%s' is not a valid id\n", pos[i]);
            return 2;
        }
    int64_t ms;
    if (v[0] && vg_time_parse_rfc3339(v[0], strlen(v[0]), &ms) != 0) {
        fprintf(stderr, "vigil: --until '%s' is not an RFC 3339 time\n", v[0]);
        return 2;
    }
    if (v[1] && !vg_id_valid(v[1])) {
        fprintf(stderr, "vigil: '%s' is not a valid user id\n", v[1]);
        return 2;
    }
    struct vg_http_target t;
    if (vg_cli_target(&c, &t) != 0)
        return 1;
    int rc = -1;
    char path[VG_ID_MAX + 48], idbuf[32], when[2][32];
    struct vg_http_response resp;
    if (add) {
        json_t *body = json_pack("{s:s, s:s}", "user", pos[1], "patient", pos[2]);
        if (v[0])
            json_object_set_new(body, "end", json_string(v[0]));
        rc = call_json(&t, "POST", "/api/v1/careteam", body, &resp);
        json_t *answer = rc == 0 ? answer_object(&resp, 0) : NULL;
        if (answer)
            printf("assignment %s: %s on the care team of patient %s until %s\n",
                   json_id(json_object_get(answer, "id"), idbuf, sizeof idbuf), pos[1], pos[2],
                   v[0] ? v[0] : "ended");
        else
            rc = -1;
        json_decref(answer);
    } else if (end) {
        snprintf(path, sizeof path, "/api/v1/careteam/%s", pos[1]);
        rc = vg_cli_call(&t, "DELETE", path, NULL, &resp, 0);
        if (rc == 0) {
            vg_http_response_free(&resp);
            printf("assignment %s ended\n", pos[1]);
        }
    } else {
        snprintf(path, sizeof path, "/api/v1/careteam%s%s", v[1] ? "?user=" : "",
                 v[1] ? v[1] : "");
        rc = vg_cli_call(&t, "GET", path, NULL, &resp, 0);
        if (rc == 0 && flag_set[0]) {
            fwrite(resp.body, 1, resp.body_len, stdout);
            if (resp.body_len && resp.body[resp.body_len - 1] != '\n')
                putchar('\n');
            vg_http_response_free(&resp);
        } else if (rc == 0) {
            json_t *answer = answer_object(&resp, 0);
            size_t i;
            json_t *a;
            if (!answer)
                rc = -1;
            else
                printf("%-12s  %-24s  %-24s  %-24s  %s\n", "ID", "USER", "PATIENT", "START",
                       "END");
            json_array_foreach(json_object_get(answer, "assignments"), i, a)
            {
                const char *user = json_string_value(json_object_get(a, "user"));
                const char *patient = json_string_value(json_object_get(a, "patient"));
                const char *start = json_time(json_object_get(a, "start"), when[0], 32);
                const char *stop = json_time(json_object_get(a, "end"), when[1], 32);
                printf("%-12s  %-24s  %-24s  %-24s  %s\n",
                       json_id(json_object_get(a, "id"), idbuf, sizeof idbuf), user ? user : "?",
                       patient ? patient : "?", start ? start : "?", stop ? stop : "-");
            }
            json_decref(answer);
        }
    }
    sodium_memzero(t.token, sizeof t.token);
    return rc ? 1 : 0;
}

/* ---- vigil breakglass ------------------------------------------------------ */

static const char breakglass_help[] =
    "Usage: vigil breakglass PATIENT --reason \"TEXT\" [connection options]\n"
    "\n"
    "Emergency access (break-glass) for a clinician to a patient who is not on\n"
    "their care team (POST /api/v1/breakglass). The grant lasts a limited time\n"
    "(the server's breakglass_minutes, 60 by default). Every access under it is\n"
    "audited with the reason, and auditors are alerted at once.\n"
    "  --reason \"TEXT\"  why access is needed now (10-500 characters; required)\n\n";

int vg_cli_breakglass(int argc, char **argv)
{
    if (vg_cli_is_help(argc, argv)) {
        printf("%s%s", breakglass_help, vg_cli_conn_help);
        return 0;
    }
    struct vg_cli_conn c = {0};
    const char *pos[1];
    static const char *const valued[] = {"--reason", NULL};
    const char *reason = NULL;
    int n = vg_cli_parse_args(argc, argv, &c, pos, 1, NULL, NULL, valued, &reason);
    if (n != 1 || !reason) {
        fprintf(stderr, "%s%s", breakglass_help, vg_cli_conn_help);
        return 2;
    }
    if (!vg_id_valid(pos[0])) {
        fprintf(stderr, "vigil: '%s' is not a valid patient id\n", pos[0]);
        return 2;
    }
    size_t chars = utf8_chars(reason);
    if (chars < 10 || chars > 500) {
        fprintf(stderr, "vigil: --reason must be 10 to 500 characters (it is %zu)\n", chars);
        return 2;
    }
    for (const char *p = reason; *p; p++)
        if ((unsigned char)*p < 0x20) {
            fprintf(stderr, "vigil: --reason must be one line of text\n");
            return 2;
        }
    struct vg_http_target t;
    if (vg_cli_target(&c, &t) != 0)
        return 1;
    struct vg_http_response resp;
    int rc = call_json(&t, "POST", "/api/v1/breakglass",
                       json_pack("{s:s, s:s}", "patient", pos[0], "reason", reason), &resp);
    sodium_memzero(t.token, sizeof t.token);
    if (rc)
        return 1;
    /* The grant exists once the server said so: the warning is printed
     * even if its answer cannot be read. */
    json_t *answer = answer_object(&resp, 0);
    char idbuf[32], when[32];
    const char *expires = json_time(json_object_get(answer, "expires"), when, sizeof when);
    printf("break-glass access to patient %s granted until %s (grant %s)\n", pos[0],
           expires ? expires : "?", json_id(json_object_get(answer, "id"), idbuf, sizeof idbuf));
    printf("WARNING: every access to this patient's data under this grant is audited with your\n"
           "reason, and auditors have been alerted.\n");
    json_decref(answer);
    return 0;
}
