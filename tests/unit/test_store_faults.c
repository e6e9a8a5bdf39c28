/* Failing disks: a fault-injecting SQLite VFS, registered as the default
 * over "unix", fails the Nth xWrite / xSync / xTruncate (SQLite's own
 * "io error" loop: N = 1, 2, 3 ... until a run triggers no fault), and
 * after each failure the store must be intact: integrity_check ok, every
 * reading committed before still there and opening, the failed batch all or
 * nothing, the audit chain verifying. Then the writer thread itself: failed
 * jobs come back with VG_STORE_IO / VG_STORE_FULL and are not reported
 * committed, it backs off without touching the disk, logs one line per
 * episode, reopens its connection after an I/O error, refuses readings
 * below its free-space reserve while still writing audit records, and
 * commits again once the fault clears. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/log.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "store/writer.h"

/* ---- the fault VFS ---- */

#define OP_WRITE 1u
#define OP_SYNC 2u
#define OP_TRUNCATE 4u

/* Shared with the writer thread: atomics. */
static struct {
    atomic_int armed;
    atomic_uint ops;     /* which calls are counted and failed */
    atomic_int nth;      /* fail the nth counted call (1 = first) */
    atomic_int persist;  /* ... and every later one (a dead disk) */
    atomic_int full;     /* xWrite fails with SQLITE_FULL, not IOERR */
    atomic_int calls;    /* counted calls since armed */
    atomic_int fired;    /* faults injected since armed */
} F;

static sqlite3_vfs *unix_vfs;
static sqlite3_vfs fault_vfs;

struct ffile {
    sqlite3_file base;
    sqlite3_file *real; /* the unix VFS's file, right after this struct */
};

static void arm(unsigned ops, int nth, int persist, int full)
{
    atomic_store(&F.armed, 0);
    atomic_store(&F.ops, ops);
    atomic_store(&F.nth, nth);
    atomic_store(&F.persist, persist);
    atomic_store(&F.full, full);
    atomic_store(&F.calls, 0);
    atomic_store(&F.fired, 0);
    atomic_store(&F.armed, 1);
}

static void disarm(void) { atomic_store(&F.armed, 0); }

static int should_fail(unsigned op)
{
    if (!atomic_load(&F.armed) || !(atomic_load(&F.ops) & op))
        return 0;
    int k = atomic_fetch_add(&F.calls, 1) + 1;
    int nth = atomic_load(&F.nth);
    if (k == nth || (atomic_load(&F.persist) && k > nth)) {
        atomic_fetch_add(&F.fired, 1);
        return 1;
    }
    return 0;
}

#define REAL(f) (((struct ffile *)(f))->real)

static int f_close(sqlite3_file *f)
{
    int rc = REAL(f)->pMethods->xClose(REAL(f));
    return rc;
}
static int f_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}
static int f_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    if (should_fail(OP_WRITE))
        return atomic_load(&F.full) ? SQLITE_FULL : SQLITE_IOERR_WRITE;
    return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}
static int f_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    if (should_fail(OP_TRUNCATE))
        return SQLITE_IOERR_TRUNCATE;
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int f_sync(sqlite3_file *f, int flags)
{
    if (should_fail(OP_SYNC))
        return SQLITE_IOERR_FSYNC;
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int f_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int f_lock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xLock(REAL(f), l); }
static int f_unlock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xUnlock(REAL(f), l); }
static int f_check_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int f_control(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int f_sector(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
static int f_devchar(sqlite3_file *f) { return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f)); }
static int f_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, pp);
}
static int f_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void f_shm_barrier(sqlite3_file *f) { REAL(f)->pMethods->xShmBarrier(REAL(f)); }
static int f_shm_unmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int f_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}
static int f_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods fault_io = {
    3,        f_close,  f_read,       f_write,   f_truncate,     f_sync,      f_size,
    f_lock,   f_unlock, f_check_reserved, f_control, f_sector, f_devchar, f_shm_map,
    f_shm_lock, f_shm_barrier, f_shm_unmap, f_fetch, f_unfetch,
};

static int f_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out)
{
    (void)vfs;
    struct ffile *ff = (struct ffile *)file;
    ff->real = (sqlite3_file *)(ff + 1);
    int rc = unix_vfs->xOpen(unix_vfs, name, ff->real, flags, out);
    /* Ours only if the real one opened (else SQLite must not call xClose). */
    ff->base.pMethods = ff->real->pMethods ? &fault_io : NULL;
    return rc;
}

static void fault_vfs_register(void)
{
    if (unix_vfs)
        return;
    unix_vfs = sqlite3_vfs_find("unix");
    assert_non_null(unix_vfs);
    assert_true(unix_vfs->iVersion >= 3);
    /* A copy of "unix" (its pAppData included) with our xOpen in front. */
    fault_vfs = *unix_vfs;
    fault_vfs.zName = "vgfault";
    fault_vfs.szOsFile = (int)sizeof(struct ffile) + unix_vfs->szOsFile;
    fault_vfs.xOpen = f_open;
    fault_vfs.pNext = NULL;
    assert_int_equal(sqlite3_vfs_register(&fault_vfs, 1), SQLITE_OK);
    assert_ptr_equal(sqlite3_vfs_find(NULL), &fault_vfs);
}

/* ---- fixtures ---- */

#define T0 1795946400000LL /* effective times of the readings */
#define PRE 5              /* readings committed before any fault */

static char workdir[64];
static char template_db[128];
static uint8_t kek[VG_KEY_BYTES];
static int64_t next_t = T0;

static struct vg_reading reading_at(int64_t t, double value)
{
    struct vg_reading r;
    memset(&r, 0, sizeof r);
    snprintf(r.code, sizeof r.code, "8867-4");
    snprintf(r.unit, sizeof r.unit, "/min");
    r.value = value;
    r.time_ms = t;
    return r;
}

static void exec_ok(struct vg_store *st, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(vg_store_db(st), sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("sql failed: %s: %s", sql, msg ? msg : "");
}

static int64_t count_rows(struct vg_store *st, const char *sql)
{
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(vg_store_db(st), sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

static void add_device(struct vg_store *st, const char *patient, const char *device)
{
    struct vg_device_info d = {0};
    snprintf(d.id, sizeof d.id, "%s", device);
    snprintf(d.status, sizeof d.status, "active");
    snprintf(d.cert_serial, sizeof d.cert_serial, "01");
    memset(d.cert_fingerprint, 'a', 64);
    d.enrolled_ms = 1;
    assert_int_equal(vg_store_patient_add(st, patient, 1000), VG_STORE_OK);
    assert_int_equal(vg_store_device_add(st, &d), VG_STORE_OK);
    assert_int_equal(vg_store_device_assign(st, device, patient, 1000), VG_STORE_OK);
}

static void audit_event(struct vg_store *st, const char *action, const char *detail)
{
    struct vg_audit_event ev = {0, "system", action, "", "success", detail, ""};
    assert_int_equal(vg_audit_append(st, &ev), VG_STORE_OK);
}

/* The template: patients p1 (with PRE readings and a data key) and p2 (no
 * readings yet: a batch for it creates its data key), devices d1 and d2,
 * a few audit records. Closed, so it is one file. */
static int group_setup(void **state)
{
    (void)state;
    assert_int_equal(vg_crypto_init(), 0);
    fault_vfs_register();
    snprintf(workdir, sizeof workdir, "/tmp/vg-faults-XXXXXX");
    assert_non_null(mkdtemp(workdir));
    snprintf(template_db, sizeof template_db, "%s/template.db", workdir);
    vg_random(kek, sizeof kek);
    char err[256];
    assert_int_equal(vg_store_create(template_db, kek, err, sizeof err), VG_STORE_OK);
    struct vg_store *st;
    assert_int_equal(vg_store_open(template_db, kek, &st, err, sizeof err), VG_STORE_OK);
    assert_int_equal(vg_store_begin(st), VG_STORE_OK);
    add_device(st, "p1", "d1");
    add_device(st, "p2", "d2");
    audit_event(st, "test.setup", "patients and devices");
    assert_int_equal(vg_store_commit(st), VG_STORE_OK);
    for (int i = 0; i < PRE; i++) {
        char id[VG_OBS_ID_MAX];
        struct vg_reading r = reading_at(next_t++, 60 + i);
        assert_int_equal(vg_store_begin(st), VG_STORE_OK);
        assert_int_equal(vg_store_reading_put(st, "p1", "d1", &r, T0, id), VG_STORE_OK);
        audit_event(st, "readings.store", "one reading");
        assert_int_equal(vg_store_commit(st), VG_STORE_OK);
    }
    vg_store_close(st);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", workdir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY);
    assert_true(in >= 0);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        assert_int_equal(vg_write_all(out, buf, (size_t)n), 0);
    assert_int_equal(n, 0);
    close(in);
    close(out);
}

/* A fresh copy of the template at 'path' (no WAL or shm left over). */
static void fresh_copy(const char *path)
{
    char side[160];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    copy_file(template_db, path);
}

struct seen {
    int n;
    int bad; /* a reading of p1 that is not one of those sent */
};

static int check_p1(void *ctx, const struct vg_obs *o)
{
    struct seen *s = ctx;
    s->n++;
    int64_t k = o->reading.time_ms - T0;
    /* Reading k of p1 was sent with value 60 + k (template and batches). */
    if (k < 0 || o->reading.value != (double)(60 + k) || strcmp(o->reading.code, "8867-4"))
        s->bad++;
    return 0;
}

/* Reopens without faults: integrity_check ok, the audit chain verifies,
 * and every reading of p1 (those committed before included) opens with
 * the value it was sent with. Returns the open store. */
static struct vg_store *check_intact(const char *path)
{
    char err[256];
    struct vg_store *st;
    disarm();
    assert_int_equal(vg_store_open(path, kek, &st, err, sizeof err), VG_STORE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(vg_store_db(st), "PRAGMA integrity_check", -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "ok");
    sqlite3_finalize(s);

    struct seen seen = {0};
    struct vg_obs_query q = {0};
    q.patient = "p1";
    int n = vg_store_obs_query(st, &q, check_p1, &seen);
    assert_true(n >= PRE);
    assert_int_equal(n, seen.n);
    assert_int_equal(seen.bad, 0);

    struct vg_audit_verify_result res;
    assert_int_equal(vg_audit_verify_db(vg_store_db(st), NULL, NULL, &res), 0);
    assert_true(res.ok);
    return st;
}

/* After a fault: the store is intact, and the batch of 'k' readings left
 * all or nothing. Returns how many of them are there (0 or k). */
static int check_after(const char *path, int64_t readings_before, int64_t audit_before, int k)
{
    struct vg_store *st = check_intact(path);
    int64_t readings = count_rows(st, "SELECT count(*) FROM readings");
    int64_t audit = count_rows(st, "SELECT count(*) FROM audit");
    int present = (int)(readings - readings_before);
    if (present != 0 && present != k)
        fail_msg("a failed batch left %d of its %d readings", present, k);
    /* Its audit record commits with it, or not at all. */
    assert_int_equal(audit - audit_before, present ? 1 : 0);
    vg_store_close(st);
    return present;
}

/* The writer's transaction, by hand: 3 readings for p1, 1 for p2 (its
 * first: a data key is created), one audit record. */
static int batch(struct vg_store *st, int64_t t)
{
    char id[VG_OBS_ID_MAX];
    int rc = vg_store_begin(st);
    for (int i = 0; i < 3 && rc == VG_STORE_OK; i++) {
        struct vg_reading r = reading_at(t + i, (double)(60 + (t + i - T0)));
        rc = vg_store_reading_put(st, "p1", "d1", &r, T0, id);
    }
    if (rc == VG_STORE_OK) {
        struct vg_reading r = reading_at(t + 3, 70);
        rc = vg_store_reading_put(st, "p2", "d2", &r, T0, id);
    }
    if (rc == VG_STORE_OK) {
        struct vg_audit_event ev = {0, "device:d1", "readings.store", "patient:p1", "success",
                                    "stored 4 readings", ""};
        rc = vg_audit_append(st, &ev);
    }
    if (rc == VG_STORE_OK)
        rc = vg_store_commit(st);
    if (rc != VG_STORE_OK)
        vg_store_rollback(st);
    return rc;
}

enum variant {
    PERSIST = 1, /* the disk stays failing (through the close) */
    CKPT = 2,    /* every commit checkpoints the WAL into the database */
    CRASH = 4,   /* the process dies right after the batch: the files as
                    they are then are what the next start finds */
};

/* Copies the database and its WAL as they are (no shm: a new process
 * rebuilds the wal-index from the WAL). */
static void snapshot(const char from[160], const char to[160])
{
    char a[200], b[200];
    copy_file(from, to);
    snprintf(a, sizeof a, "%s-wal", from);
    snprintf(b, sizeof b, "%s-wal", to);
    unlink(b);
    if (access(a, F_OK) == 0)
        copy_file(a, b);
    snprintf(b, sizeof b, "%s-shm", to);
    unlink(b);
}

/* SQLite's I/O-error loop: for N = 1, 2, ... fail the Nth counted call
 * (and, PERSIST, every later one, through the close too) until a run
 * triggers no fault. */
static void io_error_loop(unsigned ops, int full, int variant)
{
    char path[160];
    snprintf(path, sizeof path, "%s/loop.db", workdir);
    int failed = 0, present_after_failure = 0, n;
    const int expect = full ? VG_STORE_FULL : VG_STORE_IO;
    for (n = 1; n < 500; n++) {
        fresh_copy(path);
        char err[256];
        struct vg_store *st;
        assert_int_equal(vg_store_open(path, kek, &st, err, sizeof err), VG_STORE_OK);
        if (variant & CKPT)
            exec_ok(st, "PRAGMA wal_autocheckpoint=1"); /* every commit checkpoints */
        int64_t readings_before = count_rows(st, "SELECT count(*) FROM readings");
        int64_t audit_before = count_rows(st, "SELECT count(*) FROM audit");
        int64_t t = T0 + 1000;

        arm(ops, n, variant & PERSIST, full);
        int rc = batch(st, t);
        int fired_in_batch = atomic_load(&F.fired);
        int follow = 0;
        char crashed[160];
        snprintf(crashed, sizeof crashed, "%s/crashed.db", workdir);
        if (variant & CRASH)
            snapshot(path, crashed);
        if (!(variant & PERSIST)) {
            /* A transient fault: the same connection goes on and commits. */
            disarm();
            if (rc != VG_STORE_OK) {
                assert_int_equal(batch(st, t), VG_STORE_OK);
                follow = 1;
            }
        }
        vg_store_close(st); /* under PERSIST: the disk is still failing */
        int fired = atomic_load(&F.fired);
        disarm();

        if (rc != VG_STORE_OK) {
            failed++;
            assert_true(fired_in_batch > 0);
            assert_int_equal(rc, expect);
        } else if (fired_in_batch && !(variant & CKPT)) {
            fail_msg("N=%d: a fault fired during the batch, yet it reported committed", n);
        }
        int present = check_after(variant & CRASH ? crashed : path, readings_before,
                                  audit_before, 4);
        if (rc == VG_STORE_OK || follow)
            assert_int_equal(present, 4); /* committed means there */
        else if (present)
            present_after_failure++; /* frames written, fsync failed: never acknowledged */
        if (!fired)
            break;
    }
    assert_true(n < 500);     /* the loop ended: some N triggers nothing */
    assert_true(failed > 0);  /* and faults did make batches fail */
    print_message("# ops %u%s%s%s%s: %d runs, %d batches failed, %d of them present after "
                  "recovery (all or nothing)\n",
                  ops, full ? " full" : "", variant & PERSIST ? " persistent" : " transient",
                  variant & CKPT ? " checkpointing" : "", variant & CRASH ? " crash" : "",
                  n, failed, present_after_failure);
}

static void test_io_error_loop_persistent(void **state)
{
    (void)state;
    io_error_loop(OP_WRITE | OP_SYNC | OP_TRUNCATE, 0, PERSIST);
}

static void test_io_error_loop_transient(void **state)
{
    (void)state;
    io_error_loop(OP_WRITE | OP_SYNC | OP_TRUNCATE, 0, 0);
}

/* The process dies right after the failed batch: what the files hold
 * then must open as all or nothing. */
static void test_io_error_loop_crash(void **state)
{
    (void)state;
    io_error_loop(OP_WRITE | OP_SYNC | OP_TRUNCATE, 0, PERSIST | CRASH);
    io_error_loop(OP_WRITE | OP_SYNC | OP_TRUNCATE, 0, PERSIST | CKPT | CRASH);
}

static void test_io_error_loop_checkpoints(void **state)
{
    (void)state;
    io_error_loop(OP_WRITE | OP_SYNC | OP_TRUNCATE, 0, PERSIST | CKPT);
    io_error_loop(OP_WRITE | OP_SYNC | OP_TRUNCATE, 0, CKPT);
}

static void test_disk_full_loop(void **state)
{
    (void)state;
    io_error_loop(OP_WRITE, 1, PERSIST);
    io_error_loop(OP_WRITE, 1, 0);
}

/* The VFS itself: with nothing armed, nothing fails (else every test above
 * could pass for the wrong reason). */
static void test_vfs_passes_through_when_disarmed(void **state)
{
    (void)state;
    char path[160];
    snprintf(path, sizeof path, "%s/quiet.db", workdir);
    fresh_copy(path);
    char err[256];
    struct vg_store *st;
    assert_int_equal(vg_store_open(path, kek, &st, err, sizeof err), VG_STORE_OK);
    disarm();
    assert_int_equal(batch(st, T0 + 2000), VG_STORE_OK);
    vg_store_close(st);
    assert_int_equal(atomic_load(&F.fired), 0);
}

/* ---- the writer thread ---- */

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static int done_flag;

static void notify(void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&done_lock);
    done_flag = 1;
    pthread_cond_broadcast(&done_cond);
    pthread_mutex_unlock(&done_lock);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Submits a job of 'n' readings from d1 at times t.. and waits for it to
 * come back; returns its status (and stored count). */
static int submit_wait(struct vg_writer *w, int64_t t, size_t n, size_t *stored)
{
    struct vg_job *j = vg_job_new(VG_JOB_READINGS, n);
    assert_non_null(j);
    snprintf(j->device, sizeof j->device, "d1");
    snprintf(j->source, sizeof j->source, "127.0.0.1");
    j->received_ms = vg_now_ms();
    j->qos = 1;
    j->packet_id = 7;
    for (size_t i = 0; i < n; i++)
        j->items[i].reading = reading_at(t + (int64_t)i, (double)(60 + (t + (int64_t)i - T0)));
    vg_writer_submit(w, j);
    struct vg_job *got = NULL;
    int64_t deadline = now_ms() + 10000;
    while (!got && now_ms() < deadline) {
        pthread_mutex_lock(&done_lock);
        while (!done_flag) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 50 * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&done_cond, &done_lock, &until);
            if (now_ms() > deadline)
                break;
        }
        done_flag = 0;
        pthread_mutex_unlock(&done_lock);
        got = vg_writer_take_done(w);
    }
    assert_non_null(got);
    assert_ptr_equal(got, j);
    assert_null(got->next);
    int status = got->status;
    if (stored)
        *stored = got->stored;
    vg_job_free(got);
    return status;
}

static int submit_audit_wait(struct vg_writer *w)
{
    struct vg_job *j = vg_job_new(VG_JOB_AUDIT, 0);
    assert_non_null(j);
    snprintf(j->audit.actor, sizeof j->audit.actor, "system");
    snprintf(j->audit.action, sizeof j->audit.action, "test.audit");
    snprintf(j->audit.outcome, sizeof j->audit.outcome, "success");
    vg_writer_submit(w, j);
    struct vg_job *got = NULL;
    for (int i = 0; i < 1000 && !got; i++) {
        usleep(10000);
        got = vg_writer_take_done(w);
    }
    assert_non_null(got);
    int status = got->status;
    vg_job_free(got);
    return status;
}

/* stderr into a file, to count the writer's log lines. */
struct capture {
    int saved;
    char path[160];
};

static void capture_start(struct capture *c, const char *name)
{
    snprintf(c->path, sizeof c->path, "%s/%s.log", workdir, name);
    int fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    c->saved = dup(2);
    assert_true(c->saved >= 0);
    assert_true(dup2(fd, 2) >= 0);
    close(fd);
}

static void capture_stop(struct capture *c)
{
    fflush(stderr);
    assert_true(dup2(c->saved, 2) >= 0);
    close(c->saved);
}

static int lines_with(const struct capture *c, const char *needle)
{
    FILE *f = fopen(c->path, "r");
    assert_non_null(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

/* The figures of the "commits succeed again" line. */
static int episode_counts(const struct capture *c, uint64_t *batches, uint64_t *readings)
{
    FILE *f = fopen(c->path, "r");
    assert_non_null(f);
    char line[1024];
    int rc = -1;
    while (rc && fgets(line, sizeof line, f)) {
        /* "...; B batches (R readings) were not acknowledged meanwhile" */
        const char *p = strstr(line, "commits succeed again");
        p = p ? strstr(p, "; ") : NULL;
        if (!p)
            continue;
        char *end;
        unsigned long long b = strtoull(p + 2, &end, 10);
        if (strncmp(end, " batches (", 10) != 0)
            continue;
        unsigned long long r = strtoull(end + 10, &end, 10);
        if (strncmp(end, " readings)", 10) != 0)
            continue;
        *batches = b;
        *readings = r;
        rc = 0;
    }
    fclose(f);
    return rc;
}

static int readings_at(const char *path, int64_t t, int n)
{
    /* How many of d1's readings at t..t+n-1 are stored, through a query
     * (which opens each). */
    char err[256];
    struct vg_store *st;
    assert_int_equal(vg_store_open(path, kek, &st, err, sizeof err), VG_STORE_OK);
    struct seen seen = {0};
    struct vg_obs_query q = {0};
    q.patient = "p1";
    q.from_ms = t;
    q.to_ms = t + n;
    int got = vg_store_obs_query(st, &q, check_p1, &seen);
    assert_int_equal(seen.bad, 0);
    vg_store_close(st);
    return got;
}

static void assert_stats_sane(const struct vg_writer_stats *s)
{
    static const uint64_t bounds[VG_WRITER_LATENCY_BUCKETS] = VG_WRITER_LATENCY_BOUNDS_US;
    assert_int_equal(s->commit_count, s->batches_committed);
    for (int i = 1; i < VG_WRITER_LATENCY_BUCKETS; i++) {
        assert_true(bounds[i] > bounds[i - 1]);
        assert_true(s->commit_le[i] >= s->commit_le[i - 1]);
    }
    assert_true(s->commit_le[VG_WRITER_LATENCY_BUCKETS - 1] <= s->commit_count);
    assert_true(s->commit_sum_us >= s->last_commit_us);
}

static void test_writer_io_error_then_recovers(void **state)
{
    (void)state;
    char path[160];
    snprintf(path, sizeof path, "%s/writer-io.db", workdir);
    fresh_copy(path);
    char err[256];
    /* Like vigil serve: another connection (the API's) stays open. */
    struct vg_store *reader;
    assert_int_equal(vg_store_open(path, kek, &reader, err, sizeof err), VG_STORE_OK);
    struct vg_writer_opts opts = {0};
    opts.batch_max = 100;
    opts.reserve_bytes = -1;
    struct capture cap;
    capture_start(&cap, "writer-io");
    struct vg_writer *w = vg_writer_start(path, kek, &opts, notify, NULL, err, sizeof err);
    assert_non_null(w);

    size_t stored = 0;
    int64_t ta = T0 + 3000, tb = T0 + 3100, tc = T0 + 3200, td = T0 + 3300;
    int sa = submit_wait(w, ta, 3, &stored);
    assert_int_equal(sa, VG_STORE_OK);
    assert_int_equal(stored, 3);

    /* fsync fails from now on: the batch comes back VG_STORE_IO. */
    arm(OP_SYNC, 1, 1, 0);
    int sb = submit_wait(w, tb, 3, NULL);
    int64_t b_done = now_ms();
    assert_int_equal(sb, VG_STORE_IO);
    assert_true(atomic_load(&F.fired) > 0);
    /* Backing off: the next job is answered without touching the disk. */
    int calls = atomic_load(&F.calls);
    int sc = submit_wait(w, tc, 2, NULL);
    assert_int_equal(sc, VG_STORE_IO);
    if (now_ms() - b_done < 90)
        assert_int_equal(atomic_load(&F.calls), calls);
    struct vg_writer_stats s;
    vg_writer_stats(w, &s);
    assert_int_equal(s.failing, VG_STORE_IO);
    assert_true(s.batches_failed_io >= 2);
    assert_true(s.readings_failed >= 5);
    assert_int_equal(s.batches_committed, 1);
    assert_int_equal(s.readings_committed, 3);

    /* Another failing attempt after the backoff: still one log line. */
    usleep(150000);
    assert_int_equal(submit_wait(w, tc, 2, NULL), VG_STORE_IO);

    /* The disk heals: within the backoff (<= 1 s) a job commits again, on a
     * reopened connection. */
    disarm();
    int sd = VG_STORE_IO;
    int64_t deadline = now_ms() + 15000; /* generous: ASan builds on a loaded machine */
    while (sd != VG_STORE_OK && now_ms() < deadline) {
        sd = submit_wait(w, td, 2, &stored);
        if (sd != VG_STORE_OK)
            usleep(50000);
    }
    assert_int_equal(sd, VG_STORE_OK);
    assert_int_equal(stored, 2);
    vg_writer_stats(w, &s);
    assert_int_equal(s.failing, 0);
    assert_true(s.reopens >= 1);
    assert_int_equal(s.batches_committed, 2);
    assert_int_equal(s.readings_committed, 5);
    assert_stats_sane(&s);
    vg_writer_stop(w);
    capture_stop(&cap);
    vg_store_close(reader);

    assert_int_equal(lines_with(&cap, "I/O error"), 1);
    assert_int_equal(lines_with(&cap, "commits succeed again"), 1);
    assert_int_equal(lines_with(&cap, "disk full"), 0);
    /* Committed jobs are there; the failed ones (their frames overwritten
     * by the next commit) are not. */
    assert_int_equal(readings_at(path, ta, 3), 3);
    assert_int_equal(readings_at(path, td, 2), 2);
    assert_int_equal(readings_at(path, tb, 3), 0);
    assert_int_equal(readings_at(path, tc, 2), 0);
    vg_store_close(check_intact(path));
}

static void test_writer_disk_full_then_recovers(void **state)
{
    (void)state;
    char path[160];
    snprintf(path, sizeof path, "%s/writer-full.db", workdir);
    fresh_copy(path);
    char err[256];
    struct vg_store *reader;
    assert_int_equal(vg_store_open(path, kek, &reader, err, sizeof err), VG_STORE_OK);
    struct vg_writer_opts opts = {0};
    opts.batch_max = 100;
    opts.reserve_bytes = -1;
    struct capture cap;
    capture_start(&cap, "writer-full");
    struct vg_writer *w = vg_writer_start(path, kek, &opts, notify, NULL, err, sizeof err);
    assert_non_null(w);

    int64_t t = T0 + 4000;
    arm(OP_WRITE, 1, 1, 1); /* every write: SQLITE_FULL */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(submit_wait(w, t + 10 * i, 2, NULL), VG_STORE_FULL);
        if (i % 2)
            usleep(150000); /* past the backoff: a real attempt again */
    }
    struct vg_writer_stats s;
    vg_writer_stats(w, &s);
    assert_int_equal(s.failing, VG_STORE_FULL);
    assert_int_equal(s.batches_failed_full, 4);
    assert_int_equal(s.readings_failed, 8);
    assert_int_equal(s.batches_committed, 0);
    assert_int_equal(s.reopens, 0); /* a full disk is not an I/O error */

    disarm();
    int st = VG_STORE_FULL;
    int64_t deadline = now_ms() + 15000; /* generous: ASan builds on a loaded machine */
    while (st != VG_STORE_OK && now_ms() < deadline) {
        st = submit_wait(w, t + 100, 2, NULL);
        if (st != VG_STORE_OK)
            usleep(50000);
    }
    assert_int_equal(st, VG_STORE_OK);
    vg_writer_stats(w, &s);
    assert_int_equal(s.failing, 0);
    assert_stats_sane(&s);
    vg_writer_stop(w);
    capture_stop(&cap);
    vg_store_close(reader);

    assert_int_equal(lines_with(&cap, "disk full"), 1);
    assert_int_equal(lines_with(&cap, "commits succeed again"), 1);
    /* The recovery line counts what the episode refused: the 4 batches
     * above and the attempts answered during the last backoff. */
    uint64_t batches = 0, readings = 0;
    assert_int_equal(episode_counts(&cap, &batches, &readings), 0);
    assert_int_equal(batches, s.batches_failed_full);
    assert_int_equal(readings, s.readings_failed);
    assert_true(batches >= 4);
    assert_int_equal(readings_at(path, t, 40), 0);
    assert_int_equal(readings_at(path, t + 100, 2), 2);
    vg_store_close(check_intact(path));
}

/* Below the reserve: readings refused unwritten (VG_STORE_FULL), audit
 * records still written; a reserve the disk satisfies refuses nothing. */
static void test_writer_reserve(void **state)
{
    (void)state;
    char path[160];
    snprintf(path, sizeof path, "%s/writer-reserve.db", workdir);
    fresh_copy(path);
    char err[256];
    struct vg_writer_opts opts = {0};
    opts.batch_max = 100;
    opts.reserve_bytes = INT64_MAX / 2; /* no disk has that much free */
    struct capture cap;
    capture_start(&cap, "writer-reserve");
    struct vg_writer *w = vg_writer_start(path, kek, &opts, notify, NULL, err, sizeof err);
    assert_non_null(w);
    int64_t t = T0 + 5000;
    arm(OP_WRITE | OP_SYNC | OP_TRUNCATE, 1000000, 0, 0); /* count calls, fail none */
    assert_int_equal(submit_wait(w, t, 2, NULL), VG_STORE_FULL);
    assert_int_equal(atomic_load(&F.calls), 0); /* refused without writing */
    assert_int_equal(submit_wait(w, t + 10, 2, NULL), VG_STORE_FULL);
    assert_int_equal(submit_audit_wait(w), VG_STORE_OK);
    assert_true(atomic_load(&F.calls) > 0); /* the audit record was written */
    disarm();
    struct vg_writer_stats s;
    vg_writer_stats(w, &s);
    assert_int_equal(s.failing, VG_STORE_FULL); /* an audit commit does not end it */
    assert_int_equal(s.batches_failed_full, 2);
    assert_int_equal(s.batches_committed, 1);
    vg_writer_stop(w);
    capture_stop(&cap);
    assert_int_equal(lines_with(&cap, "disk full"), 1);
    assert_int_equal(lines_with(&cap, "kept for the audit trail"), 1);
    assert_int_equal(readings_at(path, t, 20), 0);

    /* Negative: a reserve the filesystem has room for refuses nothing. */
    opts.reserve_bytes = 4096;
    w = vg_writer_start(path, kek, &opts, notify, NULL, err, sizeof err);
    assert_non_null(w);
    assert_int_equal(submit_wait(w, t, 2, NULL), VG_STORE_OK);
    vg_writer_stop(w);
    assert_int_equal(readings_at(path, t, 2), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vfs_passes_through_when_disarmed),
        cmocka_unit_test(test_io_error_loop_persistent),
        cmocka_unit_test(test_io_error_loop_transient),
        cmocka_unit_test(test_io_error_loop_checkpoints),
        cmocka_unit_test(test_io_error_loop_crash),
        cmocka_unit_test(test_disk_full_loop),
        cmocka_unit_test(test_writer_io_error_then_recovers),
        cmocka_unit_test(test_writer_disk_full_then_recovers),
        cmocka_unit_test(test_writer_reserve),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
