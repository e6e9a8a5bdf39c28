/* tests/faults/vgfault.c — an LD_PRELOAD shim that makes writes and syncs of
 * chosen files fail, for vigil's disk-full and I/O-fault tests.
 *
 * Build (the test scripts do):
 *     cc -shared -fPIC -O1 -o vgfault.so tests/faults/vgfault.c -ldl
 * Use:
 *     VGFAULT_PATH=vigil.db VGFAULT_CONTROL=/tmp/x/fault.on \
 *         LD_PRELOAD=/tmp/x/vgfault.so vigil serve DIR
 * An ASan-built program wants its runtime first in the library list:
 *     LD_PRELOAD="$(gcc -print-file-name=libasan.so):/tmp/x/vgfault.so"
 * (or ASAN_OPTIONS=verify_asan_link_order=0).
 *
 * What it intercepts. The calls through which a program (and SQLite's unix
 * VFS on Debian 12: `nm -D libsqlite3.so.0 | grep ' U '` lists write,
 * pwrite64, fdatasync and ftruncate64 — no fsync, no writev) changes a
 * file's contents or makes them durable:
 *     write    write, pwrite, pwrite64, writev, pwritev, pwritev64
 *     sync     fsync, fdatasync
 *     truncate ftruncate, ftruncate64
 * Stores through a shared mapping (SQLite's -shm wal-index) are not calls
 * and cannot be intercepted; stdio's fwrite calls write inside libc and
 * is not seen either.
 *
 * Environment (read once, at load):
 *     VGFAULT_PATH     the shim acts only on files whose path (readlink of
 *                      /proc/self/fd/N) contains this substring. Unset or
 *                      empty: every call passes through untouched.
 *     VGFAULT_OPS      which calls fail: a comma-separated list of write,
 *                      sync, truncate, all (default "write,sync").
 *     VGFAULT_ERRNO    the errno of a failed call: EIO (default), ENOSPC,
 *                      EDQUOT, EROFS, or a number.
 *     VGFAULT_NTH      (a) fail the Nth matching call (1 = the first);
 *     VGFAULT_COUNT        ... and this many matching calls from there
 *                      (default 1; 0 = every call from the Nth on, a disk
 *                      that died).
 *     VGFAULT_CONTROL  (b) a file: while it exists, every matching call
 *                      fails. If it holds text, "OPS [ERRNO]" (e.g. "sync
 *                      EIO" or "write ENOSPC"), that replaces VGFAULT_OPS
 *                      and VGFAULT_ERRNO while it exists, so a test can
 *                      switch kinds of faults on and off at run time.
 *     VGFAULT_LOG      a file to which each failed call appends one line
 *                      "vgfault: CALL PATH ERRNO", so a test can prove a
 *                      fault really fired.
 * A call is "matching" when its kind is in the active OPS and its file's
 * path contains VGFAULT_PATH; only matching calls are counted for NTH.
 *
 * Thread- and signal-safety: after load, the intercepted calls use only
 * system calls (fstat, readlink, access, open, read, write, close) and
 * lock-free atomics; the per-descriptor path cache is guarded by a
 * try-lock that, when taken, resolves the path without the cache instead
 * of waiting. So a call from any thread, or from a signal handler, neither
 * blocks nor allocates.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define OP_WRITE 1u
#define OP_SYNC 2u
#define OP_TRUNCATE 4u

#define PATH_CAP 512
#define CACHE_FDS 1024

/* The real functions, looked up at load (dlsym is not async-signal-safe,
 * so not in the calls themselves unless something writes before our
 * constructor runs). */
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off64_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off64_t);

/* Configuration, fixed after load. */
static char cfg_path[PATH_CAP];
static char cfg_control[PATH_CAP];
static char cfg_log[PATH_CAP];
static unsigned cfg_ops = OP_WRITE | OP_SYNC;
static int cfg_errno = EIO;
static unsigned long cfg_nth;   /* 0 = off */
static unsigned long cfg_count = 1;
static atomic_ulong matched;    /* matching calls seen so far */

/* fd -> verdict, checked against the file's identity so a reused
 * descriptor is resolved again. */
struct slot {
    atomic_flag busy;
    int valid;
    int match;
    dev_t dev;
    ino_t ino;
};
static struct slot cache[CACHE_FDS];

static size_t str_len(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static int str_contains(const char *hay, size_t hay_len, const char *needle)
{
    size_t n = str_len(needle);
    if (!n || n > hay_len)
        return 0;
    for (size_t i = 0; i + n <= hay_len; i++)
        if (!memcmp(hay + i, needle, n))
            return 1;
    return 0;
}

static void copy_env(char *dst, const char *name)
{
    const char *v = getenv(name);
    dst[0] = '\0';
    if (v) {
        size_t n = str_len(v);
        if (n >= PATH_CAP)
            n = PATH_CAP - 1;
        memcpy(dst, v, n);
        dst[n] = '\0';
    }
}

/* Parses "write,sync" / "all" (separators: comma, space, tab); 0 if
 * nothing known was named. */
static unsigned parse_ops(const char *s, size_t len)
{
    unsigned ops = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != ',' && s[j] != ' ' && s[j] != '\t' && s[j] != '\n')
            j++;
        size_t n = j - i;
        if (n == 5 && !memcmp(s + i, "write", 5))
            ops |= OP_WRITE;
        else if (n == 4 && !memcmp(s + i, "sync", 4))
            ops |= OP_SYNC;
        else if (n == 8 && !memcmp(s + i, "truncate", 8))
            ops |= OP_TRUNCATE;
        else if (n == 3 && !memcmp(s + i, "all", 3))
            ops |= OP_WRITE | OP_SYNC | OP_TRUNCATE;
        i = j + 1;
    }
    return ops;
}

/* "EIO", "ENOSPC", "EDQUOT", "EROFS" or decimal digits; 0 if none. */
static int parse_errno(const char *s, size_t len)
{
    if (len == 3 && !memcmp(s, "EIO", 3))
        return EIO;
    if (len == 6 && !memcmp(s, "ENOSPC", 6))
        return ENOSPC;
    if (len == 6 && !memcmp(s, "EDQUOT", 6))
        return EDQUOT;
    if (len == 5 && !memcmp(s, "EROFS", 5))
        return EROFS;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || v > 100000)
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static unsigned long parse_ulong(const char *s, unsigned long dflt)
{
    if (!s || !*s)
        return dflt;
    unsigned long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return dflt;
        v = v * 10 + (unsigned long)(*s - '0');
    }
    return v;
}

static void resolve(void)
{
    real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    real_pwrite = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = (ssize_t(*)(int, const void *, size_t, off64_t))dlsym(RTLD_NEXT, "pwrite64");
    real_writev = (ssize_t(*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
    real_pwritev = (ssize_t(*)(int, const struct iovec *, int, off_t))dlsym(RTLD_NEXT, "pwritev");
    real_pwritev64 =
        (ssize_t(*)(int, const struct iovec *, int, off64_t))dlsym(RTLD_NEXT, "pwritev64");
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    real_ftruncate = (int (*)(int, off_t))dlsym(RTLD_NEXT, "ftruncate");
    real_ftruncate64 = (int (*)(int, off64_t))dlsym(RTLD_NEXT, "ftruncate64");
}

__attribute__((constructor)) static void vgfault_init(void)
{
    resolve();
    copy_env(cfg_path, "VGFAULT_PATH");
    copy_env(cfg_control, "VGFAULT_CONTROL");
    copy_env(cfg_log, "VGFAULT_LOG");
    const char *ops = getenv("VGFAULT_OPS");
    if (ops && *ops) {
        unsigned o = parse_ops(ops, str_len(ops));
        if (o)
            cfg_ops = o;
    }
    const char *e = getenv("VGFAULT_ERRNO");
    if (e && *e) {
        int v = parse_errno(e, str_len(e));
        if (v > 0)
            cfg_errno = v;
    }
    cfg_nth = parse_ulong(getenv("VGFAULT_NTH"), 0);
    cfg_count = parse_ulong(getenv("VGFAULT_COUNT"), 1);
    for (int i = 0; i < CACHE_FDS; i++)
        atomic_flag_clear(&cache[i].busy);
}

/* The path of fd into buf (NUL-terminated); its length, or -1. */
static ssize_t fd_path(int fd, char *buf, size_t size)
{
    char link[32] = "/proc/self/fd/";
    size_t n = str_len(link);
    char digits[12];
    int k = 0;
    unsigned v = (unsigned)fd;
    do {
        digits[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && k < (int)sizeof digits);
    while (k)
        link[n++] = digits[--k];
    link[n] = '\0';
    ssize_t len = readlink(link, buf, size - 1);
    if (len < 0)
        return -1;
    buf[len] = '\0';
    return len;
}

static int path_matches(int fd)
{
    char buf[PATH_CAP];
    ssize_t len = fd_path(fd, buf, sizeof buf);
    return len > 0 && str_contains(buf, (size_t)len, cfg_path);
}

/* Is fd one of the files we act on? Cached per descriptor and file. */
static int fd_selected(int fd)
{
    if (fd < 0)
        return 0;
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return 0;
    if (fd >= CACHE_FDS)
        return path_matches(fd);
    struct slot *s = &cache[fd];
    if (atomic_flag_test_and_set_explicit(&s->busy, memory_order_acquire))
        return path_matches(fd); /* another thread, or we interrupted ourselves */
    int m;
    if (s->valid && s->dev == sb.st_dev && s->ino == sb.st_ino) {
        m = s->match;
    } else {
        m = path_matches(fd);
        s->dev = sb.st_dev;
        s->ino = sb.st_ino;
        s->match = m;
        s->valid = 1;
    }
    atomic_flag_clear_explicit(&s->busy, memory_order_release);
    return m;
}

/* The control file: 1 if it exists (with *ops and *err from its text if
 * it has any), else 0. */
static int control_active(unsigned *ops, int *err)
{
    if (!cfg_control[0] || access(cfg_control, F_OK) != 0)
        return 0;
    int fd = open(cfg_control, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 1; /* it exists: faults on, with the configured kinds */
    char text[128];
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return 1;
    /* "OPS [ERRNO]" */
    size_t i = 0;
    while (i < (size_t)n && text[i] != ' ' && text[i] != '\t' && text[i] != '\n')
        i++;
    unsigned o = parse_ops(text, i);
    if (o)
        *ops = o;
    while (i < (size_t)n && (text[i] == ' ' || text[i] == '\t'))
        i++;
    size_t j = i;
    while (j < (size_t)n && text[j] != ' ' && text[j] != '\t' && text[j] != '\n')
        j++;
    if (j > i) {
        int e = parse_errno(text + i, j - i);
        if (e > 0)
            *err = e;
    }
    return 1;
}

static void append(char *buf, size_t *off, size_t cap, const char *s)
{
    while (*s && *off + 1 < cap)
        buf[(*off)++] = *s++;
}

static const char *errno_name(int e)
{
    switch (e) {
    case EIO: return "EIO";
    case ENOSPC: return "ENOSPC";
    case EDQUOT: return "EDQUOT";
    case EROFS: return "EROFS";
    default: return "errno";
    }
}

static void log_fault(const char *call, int fd, int e)
{
    if (!cfg_log[0] || !real_write)
        return;
    char line[PATH_CAP + 64], path[PATH_CAP];
    size_t off = 0;
    if (fd_path(fd, path, sizeof path) < 0)
        path[0] = '?', path[1] = '\0';
    append(line, &off, sizeof line, "vgfault: ");
    append(line, &off, sizeof line, call);
    append(line, &off, sizeof line, " ");
    append(line, &off, sizeof line, path);
    append(line, &off, sizeof line, " ");
    append(line, &off, sizeof line, errno_name(e));
    line[off++] = '\n';
    int lfd = open(cfg_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0)
        return;
    ssize_t w = real_write(lfd, line, off); /* one write: lines never interleave */
    (void)w;
    close(lfd);
}

/* Should this call fail? Returns the errno to fail with, or 0. */
static int inject(unsigned op, int fd, const char *call)
{
    if (!cfg_path[0])
        return 0;
    int saved = errno;
    int fail = 0;
    /* Cheap tests first: most calls (sockets, logs) are not ours. */
    int maybe_nth = cfg_nth && (cfg_ops & op);
    if ((maybe_nth || cfg_control[0]) && fd_selected(fd)) {
        /* VGFAULT_NTH counts the environment's kinds of calls only, so it
         * means the same whatever the control file says. */
        int nth_hit = 0;
        if (maybe_nth) {
            unsigned long k = atomic_fetch_add(&matched, 1) + 1;
            nth_hit = k >= cfg_nth && (cfg_count == 0 || k < cfg_nth + cfg_count);
        }
        unsigned ops = cfg_ops;
        int err = cfg_errno;
        if (control_active(&ops, &err) && (ops & op))
            fail = err;
        else if (nth_hit)
            fail = cfg_errno;
    }
    if (fail)
        log_fault(call, fd, fail);
    errno = saved;
    return fail;
}

#define LAZY(ptr)                                                                              \
    do {                                                                                       \
        if (!(ptr))                                                                            \
            resolve();                                                                         \
    } while (0)

ssize_t write(int fd, const void *buf, size_t n)
{
    LAZY(real_write);
    int e = inject(OP_WRITE, fd, "write");
    if (e) {
        errno = e;
        return -1;
    }
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    LAZY(real_pwrite);
    int e = inject(OP_WRITE, fd, "pwrite");
    if (e) {
        errno = e;
        return -1;
    }
    return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    LAZY(real_pwrite64);
    int e = inject(OP_WRITE, fd, "pwrite64");
    if (e) {
        errno = e;
        return -1;
    }
    return real_pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    LAZY(real_writev);
    int e = inject(OP_WRITE, fd, "writev");
    if (e) {
        errno = e;
        return -1;
    }
    return real_writev(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    LAZY(real_pwritev);
    int e = inject(OP_WRITE, fd, "pwritev");
    if (e) {
        errno = e;
        return -1;
    }
    return real_pwritev(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
    LAZY(real_pwritev64);
    int e = inject(OP_WRITE, fd, "pwritev64");
    if (e) {
        errno = e;
        return -1;
    }
    return real_pwritev64(fd, iov, cnt, off);
}

int fsync(int fd)
{
    LAZY(real_fsync);
    int e = inject(OP_SYNC, fd, "fsync");
    if (e) {
        errno = e;
        return -1;
    }
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    LAZY(real_fdatasync);
    int e = inject(OP_SYNC, fd, "fdatasync");
    if (e) {
        errno = e;
        return -1;
    }
    return real_fdatasync(fd);
}

int ftruncate(int fd, off_t len)
{
    LAZY(real_ftruncate);
    int e = inject(OP_TRUNCATE, fd, "ftruncate");
    if (e) {
        errno = e;
        return -1;
    }
    return real_ftruncate(fd, len);
}

int ftruncate64(int fd, off64_t len)
{
    LAZY(real_ftruncate64);
    int e = inject(OP_TRUNCATE, fd, "ftruncate64");
    if (e) {
        errno = e;
        return -1;
    }
    return real_ftruncate64(fd, len);
}
