/* store/writer — the one thread that writes readings and audit records.
 *
 * I/O threads hand it jobs; it takes everything queued (up to batch_max
 * readings), writes it in ONE transaction with the audit records describing
 * it, commits (WAL, synchronous=FULL: durable on return), and only then
 * hands the jobs back through the done list, so a QoS 1 PUBACK is sent only
 * for what is on disk. The batch adapts to load by itself: a lone reading is
 * committed at once; readings that arrive during a commit form the next
 * batch.
 *
 * When the disk fails. A batch that does not commit comes back whole with a
 * failure status (below) and nothing of it stored; the device resends. The
 * writer logs one error line when failures start (and one more only if
 * their kind changes), none per failed batch, and one info line with the
 * count of batches and readings not acknowledged when commits succeed again.
 *   - Disk full. The writer keeps a reserve of free space on the database's
 *     filesystem (vg_writer_opts.reserve_bytes): below it, readings are
 *     refused (VG_STORE_FULL) without being written, while audit-only jobs
 *     are still written, as are the API's audit records of reads: vigil
 *     goes on serving reads (never unaudited) and recording connections
 *     after readings stop. A real SQLITE_FULL is
 *     handled too. Nothing is retried by the writer: devices resend, and
 *     the first batch that commits ends the episode ("resumes by itself").
 *   - I/O error (VG_STORE_IO: write, fsync or truncate failed). The writer
 *     does not trust its connection afterwards: it closes it and opens a
 *     new one before the next batch (fresh page cache and wal-index view;
 *     the next attempt rewrites the data instead of fsyncing again). It
 *     does not exit: in WAL mode a transaction counts only once its commit
 *     frame is written AND synced and the wal-index updated, so the frames
 *     of a batch whose fsync failed are invisible and are overwritten by
 *     the next commit (a crash before that may bring the batch back whole,
 *     never in part: unacknowledged, and a resend of it is deduplicated);
 *     a failed checkpoint sync leaves the WAL in place and
 *     the next checkpoint rewrites every page. A retried fsync is never
 *     taken as proof of durability (PostgreSQL's "fsyncgate"): the failed
 *     batch is not acknowledged, and its readings come back only as the
 *     device's resend, written anew.
 *   - After a real disk-full or I/O failure the writer backs off (100 ms,
 *     doubling to 1 s): until the next attempt is due, jobs are answered at
 *     once with the same status without touching the disk, so devices get
 *     their answer promptly and a flood of resends does not hammer a
 *     failing disk.
 *
 * Ownership: vg_writer_submit takes the job; vg_writer_take_done gives
 * completed jobs back to the caller, who frees them with vg_job_free.
 * Thread-safety: submit, depth, take_done and stats may be called from any
 * thread.
 */
#ifndef VG_STORE_WRITER_H
#define VG_STORE_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"
#include "crypto/crypto.h"
#include "ingest/reading.h"

enum vg_job_kind {
    VG_JOB_READINGS, /* a device's publish: store the accepted readings */
    VG_JOB_AUDIT,    /* an audit record on its own (refusals, connections) */
};

struct vg_job {
    struct vg_job *next;
    enum vg_job_kind kind;

    /* Who to answer when done (0 = nobody). */
    uint64_t conn_id;
    uint16_t packet_id;
    uint8_t qos;

    /* VG_JOB_READINGS input */
    char device[VG_ID_MAX + 1];
    char source[64];          /* peer address, for the audit record */
    int64_t received_ms;
    enum vg_reject whole;     /* whole-payload refusal decided upstream */
    char whole_detail[128];
    size_t n;
    struct vg_reading_item *items; /* n items, owned by the job */

    /* VG_JOB_AUDIT input */
    struct {
        char actor[96], action[48], target[96], outcome[16], detail[192], source[64];
    } audit;

    /* Results, set by the writer before the job comes back. status is one
     * of (store.h):
     *   VG_STORE_OK     committed and durable: acknowledge (PUBACK 0x00);
     *   VG_STORE_FULL   the disk is full (or below the writer's reserve):
     *                   not stored; MQTT 5 reason 0x97 Quota exceeded;
     *   VG_STORE_IO     the OS reported an I/O error (write, fsync): not
     *                   stored; MQTT 5 reason 0x80 Unspecified error;
     *   VG_STORE_ERROR  any other failure (SQLite, an audit record that
     *                   could not be written, out of memory): not stored;
     *                   MQTT 5 reason 0x80.
     * On any status but VG_STORE_OK the job is not acknowledged and the
     * result fields below mean nothing: nothing of it is stored (but for a
     * crash right after a failed fsync, which may leave the whole batch on
     * disk); a QoS 1 3.1.1 device gets no PUBACK and resends. */
    int status;
    char patient[VG_ID_MAX + 1];
    size_t stored, refused;
    size_t duplicates;        /* resends already stored (acknowledged) */
};

/* Allocates a zeroed job with room for n reading items. NULL on OOM. */
struct vg_job *vg_job_new(enum vg_job_kind kind, size_t n);
void vg_job_free(struct vg_job *job);

struct vg_writer;

/* Called on the writer thread after a batch is done (committed or failed);
 * must be cheap and thread-safe (e.g. event_active on the I/O loop). */
typedef void (*vg_writer_notify_fn)(void *ctx);

struct vg_writer_opts {
    size_t batch_max;              /* readings per transaction */
    /* Signed audit checkpoints (audit.h): every cp_records records written
     * by this writer or every cp_seconds seconds if the trail moved, and
     * once more at stop. audit_sk NULL = no checkpoints. */
    const uint8_t *audit_sk;       /* VG_AUDIT_SK_BYTES, copied */
    int cp_records, cp_seconds;
    const char *cp_log_path;       /* copied; NULL = table only */
    int cp_syslog;                 /* also syslog(3) each checkpoint */
    /* Free space (bytes, statvfs f_bavail) kept on the database's
     * filesystem for audit records: below it readings are refused with
     * VG_STORE_FULL. 0 = VG_WRITER_RESERVE_DEFAULT; negative = no reserve
     * (readings are written until SQLite reports the disk full). */
    int64_t reserve_bytes;
    /* The KEK as a keyring shared with the caller's own store connection
     * (store/keyring.h), so an online KEK rotation switches both at once;
     * NULL = a private keyring made from 'kek'. A reference is held. */
    struct vg_keyring *keyring;
};

#define VG_WRITER_RESERVE_DEFAULT (4 * 1024 * 1024)

/* Opens its own store connection on 'db_path' and starts the thread. The
 * KEK and audit key are copied. Returns NULL with a reason in 'err'. */
struct vg_writer *vg_writer_start(const char *db_path, const uint8_t kek[VG_KEY_BYTES],
                                  const struct vg_writer_opts *opts, vg_writer_notify_fn notify,
                                  void *notify_ctx, char *err, size_t err_size);

/* Queues a job (ownership passes to the writer). */
void vg_writer_submit(struct vg_writer *w, struct vg_job *job);

/* Jobs queued or being written, counted in readings (audit jobs count 1):
 * what back-pressure and metrics look at. */
size_t vg_writer_depth(struct vg_writer *w);

/* Takes the list of completed jobs, oldest first (NULL if none). */
struct vg_job *vg_writer_take_done(struct vg_writer *w);

/* Counters for the metrics endpoint, since the writer started. */

/* Upper bounds of the commit-latency histogram buckets, in microseconds
 * (Prometheus le="0.0005" ... le="5"; +Inf is commits). */
#define VG_WRITER_LATENCY_BUCKETS 13
#define VG_WRITER_LATENCY_BOUNDS_US                                                            \
    {500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,     \
     5000000}

struct vg_writer_stats {
    uint64_t batches_committed;
    uint64_t batches_failed_full;   /* came back VG_STORE_FULL */
    uint64_t batches_failed_io;     /* came back VG_STORE_IO */
    uint64_t batches_failed_other;  /* came back VG_STORE_ERROR */
    uint64_t readings_committed;    /* newly stored (resends not counted) */
    uint64_t readings_failed;       /* in jobs that came back not stored */
    uint64_t reopens;               /* connections reopened after I/O errors */
    int failing;                    /* current failure: 0, VG_STORE_FULL,
                                       VG_STORE_IO or VG_STORE_ERROR */
    /* Commit latency: BEGIN to durable COMMIT of a batch that committed. */
    uint64_t last_commit_us;
    uint64_t commit_count;          /* the +Inf bucket */
    uint64_t commit_sum_us;
    uint64_t commit_le[VG_WRITER_LATENCY_BUCKETS]; /* cumulative: commits with
                                                      latency <= bound i */
};

/* Copies the counters into *out. */
void vg_writer_stats(struct vg_writer *w, struct vg_writer_stats *out);

/* Commits everything queued, stops the thread, closes the store. Jobs
 * completed but not taken are freed. */
void vg_writer_stop(struct vg_writer *w);

#endif
