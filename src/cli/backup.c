/* vigil backup / vigil restore — an online, consistent copy of a data
 * directory, without its key-encryption key.
 *
 * The database is copied with SQLite's online backup API from a read-only
 * connection, so ingestion goes on while it runs and the copy is one
 * consistent snapshot. The KEK never goes into a backup: a restore needs
 * the KEK file from wherever it is kept (apart from the data), and refuses
 * one that does not open the database.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "cli/cli.h"
#include "core/config.h"
#include "crypto/crypto.h"
#include "crypto/kek.h"
#include "store/store.h"

static const char backup_help[] =
    "Usage: vigil backup DIR OUT\n"
    "       vigil restore OUT NEWDIR (--kek KEKFILE | --kek-p11 KEKP11FILE)\n"
    "\n"
    "backup   copies the data directory DIR into the new directory OUT while\n"
    "         vigil may be running: the database as one consistent snapshot\n"
    "         (SQLite online backup), the configuration, the PKI, the audit\n"
    "         signing key and checkpoints. NOT the key-encryption key\n"
    "         (keys/kek): keep that apart; without it the readings cannot be\n"
    "         read, which is the point.\n"
    "restore  makes NEWDIR (must not exist) from the backup OUT and the KEK in\n"
    "         KEKFILE, checks that the KEK opens the database and that the\n"
    "         audit trail verifies, and prints what it restored.\n"
    "         When the backup's vigil.conf keeps the KEK in a PKCS#11 token\n"
    "         ([keys] kek = pkcs11), give the saved keys/kek.p11 with --kek-p11:\n"
    "         it is decrypted in the token named there (the token and PIN must\n"
    "         be reachable) and NEWDIR gets its own keys/kek.p11, never a clear\n"
    "         keys/kek.\n";

static int copy_file(const char *from, const char *to, mode_t mode)
{
    int in = open(from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0)
        return errno == ENOENT ? 1 : -1; /* optional files may be absent */
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (out < 0) {
        close(in);
        return -1;
    }
    char buf[65536];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (vg_write_all(out, buf, (size_t)n) != 0) {
            rc = -1;
            break;
        }
    if (n < 0 || fsync(out) != 0)
        rc = -1;
    sodium_memzero(buf, sizeof buf);
    close(in);
    close(out);
    return rc;
}

/* The files of a data directory other than the database and the KEK. */
static const struct {
    const char *path;
    mode_t mode;
    int required;
} files[] = {
    {"vigil.conf", 0600, 1},         {"pki/ca.pem", 0644, 1},
    {"pki/ca.key", 0600, 1},         {"pki/server.pem", 0644, 1},
    {"pki/server.key", 0600, 1},     {"keys/audit.key", 0600, 0},
    {"keys/audit.pub", 0644, 0},     {"audit/checkpoints.log", 0600, 0},
    {"admin.token", 0600, 0},
};

static int make_tree(const char *dir)
{
    char p[PATH_MAX];
    if (mkdir(dir, 0700) != 0)
        return -1;
    const char *subs[] = {"pki", "keys", "audit"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, subs[i]);
        if (mkdir(p, 0700) != 0)
            return -1;
    }
    return 0;
}

static int copy_files(const char *from, const char *to)
{
    char a[PATH_MAX], b[PATH_MAX];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(a, sizeof a, "%s/%s", from, files[i].path);
        snprintf(b, sizeof b, "%s/%s", to, files[i].path);
        int rc = copy_file(a, b, files[i].mode);
        if (rc < 0 || (rc == 1 && files[i].required)) {
            fprintf(stderr, "vigil: cannot copy %s: %s\n", a, rc == 1 ? "missing" : strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int db_copy(const char *from, const char *to)
{
    sqlite3 *src = NULL, *dst = NULL;
    int rc = -1;
    if (sqlite3_open_v2(from, &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
        sqlite3_open_v2(to, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        fprintf(stderr, "vigil: cannot open %s or %s\n", from, to);
        goto out;
    }
    sqlite3_busy_timeout(src, 10000);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b) {
        fprintf(stderr, "vigil: backup: %s\n", sqlite3_errmsg(dst));
        goto out;
    }
    /* All pages in one step, inside one read transaction: in WAL mode that
     * does not block the writer, and the copy is the snapshot at its start.
     * (Copying in small steps would restart whenever the writer commits,
     * and under steady ingestion might never finish.) */
    int step;
    while ((step = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || step == SQLITE_LOCKED)
        sqlite3_sleep(20);
    if (sqlite3_backup_finish(b) != SQLITE_OK || step != SQLITE_DONE) {
        fprintf(stderr, "vigil: backup failed: %s\n", sqlite3_errmsg(dst));
        goto out;
    }
    rc = sqlite3_exec(dst, "PRAGMA journal_mode=WAL; PRAGMA integrity_check;", NULL, NULL, NULL) ==
                 SQLITE_OK
             ? 0
             : -1;
out:
    sqlite3_close(src);
    sqlite3_close(dst);
    if (rc == 0)
        chmod(to, 0600);
    return rc;
}

static long long count_rows(const char *db_path, const char *table)
{
    sqlite3 *db;
    long long n = -1;
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
            if (sqlite3_step(s) == SQLITE_ROW)
                n = sqlite3_column_int64(s, 0);
            sqlite3_finalize(s);
        }
    }
    sqlite3_close(db);
    return n;
}

int vg_cli_backup(int argc, char **argv)
{
    if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        fputs(backup_help, stdout);
        return 0;
    }
    if (argc != 2) {
        fputs(backup_help, stderr);
        return 2;
    }
    char from[PATH_MAX], to[PATH_MAX];
    if (make_tree(argv[1]) != 0) {
        fprintf(stderr, "vigil backup: cannot create %s: %s (it must not exist)\n", argv[1], strerror(errno));
        return 1;
    }
    snprintf(from, sizeof from, "%s/vigil.db", argv[0]);
    snprintf(to, sizeof to, "%s/vigil.db", argv[1]);
    if (db_copy(from, to) != 0 || copy_files(argv[0], argv[1]) != 0)
        return 1;
    printf("vigil: backed up %s to %s: %lld readings, %lld audit records (without keys/kek)\n",
           argv[0], argv[1], count_rows(to, "readings"), count_rows(to, "audit"));
    return 0;
}

int vg_cli_restore(int argc, char **argv)
{
    const char *kek_file = NULL, *kek_p11 = NULL, *pos[2] = {NULL, NULL};
    int npos = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(backup_help, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--kek") && i + 1 < argc) {
            kek_file = argv[++i];
        } else if (!strcmp(argv[i], "--kek-p11") && i + 1 < argc) {
            kek_p11 = argv[++i];
        } else if (argv[i][0] != '-' && npos < 2) {
            pos[npos++] = argv[i];
        } else {
            fputs(backup_help, stderr);
            return 2;
        }
    }
    if (npos != 2 || !kek_file == !kek_p11) {
        fputs(backup_help, stderr);
        return 2;
    }
    if (vg_crypto_init() != 0)
        return 1;
    char err[512], path[PATH_MAX], kek_path[PATH_MAX];
    uint8_t kek[VG_KEY_BYTES];
    /* Where NEWDIR keeps its KEK is what the backup's vigil.conf says. */
    struct vg_config cfg;
    struct vg_kek_source ks, given;
    vg_config_defaults(&cfg);
    snprintf(path, sizeof path, "%s/vigil.conf", pos[0]);
    if (vg_config_load(path, &cfg, err, sizeof err) != 0 ||
        vg_kek_source_from_config(&cfg, pos[1], &ks, err, sizeof err) != 0) {
        fprintf(stderr, "vigil restore: %s\n", err);
        return 1;
    }
    if (kek_p11 && ks.kind != VG_KEK_PKCS11) {
        fprintf(stderr, "vigil restore: --kek-p11 needs a backup whose vigil.conf has "
                        "[keys] kek = pkcs11; this one keeps the KEK in a file (use --kek)\n");
        return 2;
    }
    given = ks;
    if (kek_p11 && vg_strlcpy(given.path, kek_p11, sizeof given.path) != 0) {
        fprintf(stderr, "vigil restore: --kek-p11 path too long\n");
        return 2;
    }
    if ((kek_file ? vg_kek_load(kek_file, kek, err, sizeof err)
                  : vg_kek_source_load(&given, kek, err, sizeof err)) != 0) {
        fprintf(stderr, "vigil restore: %s\n", err);
        return 1;
    }
    if (make_tree(pos[1]) != 0) {
        fprintf(stderr, "vigil restore: cannot create %s: %s (it must not exist)\n", pos[1], strerror(errno));
        sodium_memzero(kek, sizeof kek);
        return 1;
    }
    char from[PATH_MAX];
    snprintf(from, sizeof from, "%s/vigil.db", pos[0]);
    snprintf(path, sizeof path, "%s/vigil.db", pos[1]);
    if (db_copy(from, path) != 0 || copy_files(pos[0], pos[1]) != 0) {
        sodium_memzero(kek, sizeof kek);
        return 1;
    }
    /* The KEK must open this database: never a fresh key over old data. */
    struct vg_store *st = NULL;
    if (vg_store_open(path, kek, &st, err, sizeof err) != VG_STORE_OK) {
        fprintf(stderr, "vigil restore: %s\n", err);
        sodium_memzero(kek, sizeof kek);
        return 1;
    }
    struct vg_audit_verify_result res;
    uint8_t pk[VG_AUDIT_PK_BYTES];
    snprintf(kek_path, sizeof kek_path, "%s/keys/audit.pub", pos[1]);
    int have_pk = vg_audit_pub_load(kek_path, pk, err, sizeof err) == 0;
    int vrc = vg_audit_verify_db(vg_store_db(st), have_pk ? pk : NULL, NULL, &res);
    vg_store_close(st);
    /* keys/kek, or keys/kek.p11 encrypted anew in the token. */
    int ok = vg_kek_source_save(&ks, kek, err, sizeof err) == 0;
    sodium_memzero(kek, sizeof kek);
    if (!ok) {
        fprintf(stderr, "vigil restore: %s\n", err);
        return 1;
    }
    if (vrc != 0) {
        fprintf(stderr, "vigil restore: the audit trail of the backup does not verify: %s\n", res.why);
        return 1;
    }
    printf("vigil: restored %s into %s: %lld readings, %lld audit records (chain verified, %lld checkpoints)\n"
           "Next: vigil serve %s\n",
           pos[0], pos[1], count_rows(path, "readings"), (long long)res.records,
           (long long)res.checkpoints, pos[1]);
    return 0;
}
