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
 * Ownership: vg_writer_submit takes the job; vg_writer_take_done gives
 * completed jobs back to the caller, who frees them with vg_job_free.
 * Thread-safety: submit, depth and take_done may be called from any thread.
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

    /* Results, set by the writer before the job comes back */
    int status;               /* VG_STORE_OK: committed; else nothing of it is */
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
};

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

/* Commits everything queued, stops the thread, closes the store. Jobs
 * completed but not taken are freed. */
void vg_writer_stop(struct vg_writer *w);

#endif
