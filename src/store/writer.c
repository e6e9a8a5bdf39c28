#include "store/writer.h"

#include "store/keyring.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <syslog.h>
#include <time.h>

#include "audit/audit.h"
#include "core/log.h"
#include "store/store.h"

/* After a real disk-full or I/O failure, the next attempt waits this long
 * (doubling from MIN up to MAX); jobs arriving meanwhile are answered at
 * once with the same status. */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000

struct vg_writer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct vg_job *head, *tail;       /* queued */
    struct vg_job *done_head, *done_tail;
    size_t depth;
    size_t batch_max;
    int stopping;
    struct vg_writer_stats stats;     /* under lock */

    /* The writer thread's alone from here on. */
    struct vg_store *st;              /* NULL: reopen before the next write */
    char *db_path;
    char *db_dir;                     /* the directory statvfs looks at */
    uint8_t *kek;                     /* sodium_malloc'd: reopening needs it */
    struct vg_keyring *keyring;       /* shared KEK, or NULL (then 'kek') */
    int64_t reserve;                  /* bytes kept free; 0 = none */
    /* The current failure episode; fail_rc 0 = commits succeed. */
    int fail_rc;                      /* VG_STORE_FULL, VG_STORE_IO, VG_STORE_ERROR */
    int fail_soft;                    /* the last failure was the reserve, not the disk */
    int64_t fail_since_ms;
    uint64_t fail_batches, fail_readings;
    int64_t backoff_ms, retry_at_ms;  /* retry_at_ms 0 = not backing off */
    int cp_failed;                    /* a checkpoint failure was logged */
    int stop_seen;                    /* copy of 'stopping' taken under the lock */
    long batch_records;               /* audit records in the open transaction */

    uint8_t *audit_sk;                /* sodium_malloc'd, or NULL */
    int cp_records, cp_seconds;
    char *cp_log_path;
    int cp_syslog;
    int64_t cp_last_ms;               /* monotonic time of the last one */
    long cp_pending;                  /* audit records committed since then */
    vg_writer_notify_fn notify;
    void *notify_ctx;
};

/* What one batch did, added to the stats under the lock. */
struct outcome {
    uint64_t committed, failed_full, failed_io, failed_other;
    uint64_t readings_committed, readings_failed;
    int64_t commit_us; /* -1: nothing committed */
};

static size_t job_weight(const struct vg_job *j) { return j->kind == VG_JOB_READINGS && j->n ? j->n : 1; }

struct vg_job *vg_job_new(enum vg_job_kind kind, size_t n)
{
    struct vg_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->kind = kind;
    if (n) {
        j->items = calloc(n, sizeof *j->items);
        if (!j->items) {
            free(j);
            return NULL;
        }
    }
    j->n = n;
    return j;
}

void vg_job_free(struct vg_job *job)
{
    if (!job)
        return;
    /* Readings are PHI: do not leave them in freed heap memory. */
    if (job->items)
        sodium_memzero(job->items, job->n * sizeof *job->items);
    free(job->items);
    free(job);
}

/* Readings are audited per device and patient per batch — count, time
 * range, refusal reasons — not one record per reading. */
struct agg {
    char device[VG_ID_MAX + 1];
    char patient[VG_ID_MAX + 1];
    char source[64];
    size_t stored, refused, duplicates;
    int64_t tmin, tmax;
    size_t reasons[VG_REJECT_STORE + 1];
};

struct agg_list {
    struct agg *v;
    size_t n, cap;
};

static struct agg *agg_for(struct agg_list *l, const struct vg_job *j)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].device, j->device) && !strcmp(l->v[i].patient, j->patient))
            return &l->v[i];
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct agg *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    struct agg *a = &l->v[l->n++];
    memset(a, 0, sizeof *a);
    vg_strlcpy(a->device, j->device, sizeof a->device);
    vg_strlcpy(a->patient, j->patient, sizeof a->patient);
    vg_strlcpy(a->source, j->source, sizeof a->source);
    a->tmin = INT64_MAX;
    a->tmax = INT64_MIN;
    return a;
}

static int append(struct vg_writer *w, const struct vg_audit_event *ev)
{
    int rc = vg_audit_append(w->st, ev);
    if (rc == VG_STORE_OK)
        w->batch_records++; /* counted for checkpoints once committed */
    return rc;
}

static int write_readings(struct vg_writer *w, struct vg_job *j, struct agg_list *aggs)
{
    char actor[VG_ID_MAX + 16], detail[256];
    snprintf(actor, sizeof actor, "device:%s", j->device);
    j->stored = j->refused = j->duplicates = 0;

    if (j->whole != VG_REJECT_NONE) {
        /* A payload that is not readings at all is an anomaly worth its own
         * record (fleet posture looks for these). */
        j->refused = 1;
        snprintf(detail, sizeof detail, "%s: %s", vg_reject_name(j->whole), j->whole_detail);
        struct vg_audit_event ev = {0, actor, "mqtt.publish", actor, "refused", detail, j->source};
        return append(w, &ev);
    }

    /* The device's assignment at receive time decides the patient
     * (invariant 2); the payload never does. */
    int rc = vg_store_device_patient(w->st, j->device, j->received_ms, j->patient);
    if (rc == VG_STORE_NOT_FOUND) {
        j->patient[0] = '\0';
        for (size_t i = 0; i < j->n; i++)
            if (j->items[i].reject == VG_REJECT_NONE) {
                j->items[i].reject = VG_REJECT_UNASSIGNED;
                snprintf(j->items[i].detail, sizeof j->items[i].detail,
                         "device is not assigned to a patient; assign it before sending readings");
            }
    } else if (rc) {
        return rc;
    }

    struct agg *a = agg_for(aggs, j);
    if (!a)
        return VG_STORE_ERROR;
    for (size_t i = 0; i < j->n; i++) {
        struct vg_reading_item *it = &j->items[i];
        if (it->reject != VG_REJECT_NONE) {
            j->refused++;
            a->refused++;
            if (it->reject <= VG_REJECT_STORE)
                a->reasons[it->reject]++;
            continue;
        }
        char id[VG_OBS_ID_MAX];
        rc = vg_store_reading_put(w->st, j->patient, j->device, &it->reading, j->received_ms, id);
        if (rc == VG_STORE_DUPLICATE) {
            j->duplicates++;
            a->duplicates++;
            continue;
        }
        if (rc != VG_STORE_OK)
            return rc;
        j->stored++;
        a->stored++;
        if (it->reading.time_ms < a->tmin)
            a->tmin = it->reading.time_ms;
        if (it->reading.time_ms > a->tmax)
            a->tmax = it->reading.time_ms;
    }
    return VG_STORE_OK;
}

static int write_aggregates(struct vg_writer *w, const struct agg_list *aggs)
{
    for (size_t i = 0; i < aggs->n; i++) {
        const struct agg *a = &aggs->v[i];
        char actor[VG_ID_MAX + 16], target[VG_ID_MAX + 16], detail[256];
        snprintf(actor, sizeof actor, "device:%s", a->device);
        if (a->patient[0])
            snprintf(target, sizeof target, "patient:%s", a->patient);
        else
            snprintf(target, sizeof target, "device:%s", a->device);
        if (a->stored) {
            char t0[32], t1[32];
            vg_time_format(a->tmin, t0);
            vg_time_format(a->tmax, t1);
            snprintf(detail, sizeof detail, "stored %zu readings from %s, effective %s to %s%s",
                     a->stored, a->device, t0, t1, a->duplicates ? " (and resends already stored)" : "");
            struct vg_audit_event ev = {0, actor, "readings.store", target, "success", detail, a->source};
            int rc = append(w, &ev);
            if (rc)
                return rc;
        }
        if (a->duplicates && !a->stored) {
            snprintf(detail, sizeof detail, "%zu resent readings from %s were already stored",
                     a->duplicates, a->device);
            struct vg_audit_event ev = {0, actor, "readings.duplicate", target, "success", detail, a->source};
            int rc = append(w, &ev);
            if (rc)
                return rc;
        }
        if (a->refused) {
            /* "3 refused: implausible-value x2, unknown-code x1" — reasons
             * only, never values. */
            int off = snprintf(detail, sizeof detail, "%zu refused:", a->refused);
            for (int r = 1; r <= VG_REJECT_STORE && off > 0 && (size_t)off < sizeof detail; r++)
                if (a->reasons[r])
                    off += snprintf(detail + off, sizeof detail - (size_t)off, " %s x%zu",
                                    vg_reject_name(r), a->reasons[r]);
            struct vg_audit_event ev = {0, actor, "readings.refuse", target, "refused", detail, a->source};
            int rc = append(w, &ev);
            if (rc)
                return rc;
        }
    }
    return VG_STORE_OK;
}

static int write_job(struct vg_writer *w, struct vg_job *j, struct agg_list *aggs)
{
    if (j->kind == VG_JOB_READINGS)
        return write_readings(w, j, aggs);
    struct vg_audit_event ev = {0,          j->audit.actor,  j->audit.action, j->audit.target,
                                j->audit.outcome, j->audit.detail, j->audit.source};
    return append(w, &ev);
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The three kinds a job can fail with (writer.h). */
static int failure_kind(int rc)
{
    return rc == VG_STORE_FULL || rc == VG_STORE_IO ? rc : VG_STORE_ERROR;
}

/* Readings a job would store: what the reserve refuses. */
static size_t job_readings(const struct vg_job *j)
{
    if (j->kind != VG_JOB_READINGS || j->whole != VG_REJECT_NONE)
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < j->n; i++)
        if (j->items[i].reject == VG_REJECT_NONE)
            n++;
    return n;
}

/* 1 when free space on the database's filesystem is below the reserve
 * (with the figures in 'why'). A statvfs failure says nothing: SQLite will
 * find out. */
static int below_reserve(struct vg_writer *w, char *why, size_t why_size)
{
    struct statvfs sv;
    if (w->reserve <= 0 || statvfs(w->db_dir, &sv) != 0)
        return 0;
    uint64_t avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    if (avail >= (uint64_t)w->reserve)
        return 0;
    snprintf(why, why_size, "%llu KiB free, below the %llu KiB kept for the audit trail",
             (unsigned long long)(avail / 1024), (unsigned long long)(w->reserve / 1024));
    return 1;
}

static int reopen(struct vg_writer *w)
{
    char err[256];
    struct vg_store *st;
    if ((w->keyring ? vg_store_open_ring(w->db_path, w->keyring, &st, NULL, err, sizeof err)
                    : vg_store_open(w->db_path, w->kek, &st, err, sizeof err)) != VG_STORE_OK) {
        vg_log_debug("store: cannot reopen the database yet: %s", err);
        return -1;
    }
    w->st = st;
    pthread_mutex_lock(&w->lock);
    w->stats.reopens++;
    pthread_mutex_unlock(&w->lock);
    return 0;
}

/* Starts or continues a failure episode. One log line when it starts or
 * changes kind; 'real' failures (SQLite's, not the reserve's) start the
 * backoff, and an I/O error retires the connection. */
static void note_failure(struct vg_writer *w, int kind, int real, const char *detail)
{
    if (w->fail_rc != kind) {
        if (!w->fail_rc) {
            w->fail_since_ms = vg_mono_ms();
            w->fail_batches = w->fail_readings = 0;
        }
        if (kind == VG_STORE_FULL)
            vg_log_error("store: disk full: readings are not acknowledged until space is freed on "
                         "the filesystem of %s (%s)", w->db_path, detail);
        else if (kind == VG_STORE_IO)
            vg_log_error("store: I/O error on %s (%s): readings are not acknowledged; the "
                         "database connection is reopened before the next attempt",
                         w->db_path, detail);
        else
            vg_log_error("store: batch not committed, nothing of it acknowledged: %s", detail);
        w->fail_rc = kind;
    }
    w->fail_soft = !real;
    if (real && (kind == VG_STORE_FULL || kind == VG_STORE_IO)) {
        w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (w->backoff_ms > BACKOFF_MAX_MS)
            w->backoff_ms = BACKOFF_MAX_MS;
        w->retry_at_ms = vg_mono_ms() + w->backoff_ms;
    } else if (real) {
        /* Not the disk (an audit record refused, SQLite's own error): no
         * reason to hold back the next batch. */
        w->backoff_ms = 0;
        w->retry_at_ms = 0;
    }
    if (real && kind == VG_STORE_IO && w->st) {
        /* What this connection's pager holds, and what it believes is on
         * disk, is in doubt after a failed write or fsync: start afresh. */
        vg_store_close(w->st);
        w->st = NULL;
    }
}

static void note_success(struct vg_writer *w)
{
    if (w->fail_rc) {
        vg_log_info("store: commits succeed again after %.1f s; %llu batches (%llu readings) were "
                    "not acknowledged meanwhile",
                    (double)(vg_mono_ms() - w->fail_since_ms) / 1000.0,
                    (unsigned long long)w->fail_batches, (unsigned long long)w->fail_readings);
        w->fail_rc = 0;
    }
    w->fail_soft = 0;
    w->backoff_ms = 0;
    w->retry_at_ms = 0;
}

/* Counts the jobs of 'batch' that failed with 'rc' as one failed batch of
 * that kind (a batch split by the reserve counts once per kind). */
static void count_failed(struct vg_writer *w, struct vg_job *batch, int rc, struct outcome *o)
{
    uint64_t readings = 0;
    int any = 0;
    for (struct vg_job *j = batch; j; j = j->next)
        if (j->status == rc) {
            readings += job_readings(j);
            any = 1;
        }
    if (!any)
        return;
    w->fail_batches++;
    w->fail_readings += readings;
    o->readings_failed += readings;
    if (rc == VG_STORE_FULL)
        o->failed_full++;
    else if (rc == VG_STORE_IO)
        o->failed_io++;
    else
        o->failed_other++;
}

/* Writes the jobs of 'batch' whose status is VG_STORE_OK in one
 * transaction. Returns VG_STORE_OK once committed (durable), else the
 * failure, rolled back. */
static int commit_jobs(struct vg_writer *w, struct vg_job *batch)
{
    struct agg_list aggs = {0};
    w->batch_records = 0;
    int rc = vg_store_begin(w->st);
    for (struct vg_job *j = batch; j && rc == VG_STORE_OK; j = j->next)
        if (j->status == VG_STORE_OK)
            rc = write_job(w, j, &aggs);
    if (rc == VG_STORE_OK)
        rc = write_aggregates(w, &aggs);
    free(aggs.v);
    if (rc == VG_STORE_OK)
        rc = vg_store_commit(w->st);
    if (rc != VG_STORE_OK) {
        vg_store_rollback(w->st);
        return rc;
    }
    w->cp_pending += w->batch_records;
    return VG_STORE_OK;
}

static void write_batch(struct vg_writer *w, struct vg_job *batch, struct outcome *o)
{
    o->commit_us = -1;
    for (struct vg_job *j = batch; j; j = j->next)
        j->status = VG_STORE_OK;

    /* Backing off after a failing disk: answer now, touch nothing. At stop
     * every job gets its attempt (vigil.stop among them). */
    if (w->retry_at_ms && vg_mono_ms() < w->retry_at_ms && !w->stop_seen) {
        for (struct vg_job *j = batch; j; j = j->next)
            j->status = w->fail_rc;
        count_failed(w, batch, w->fail_rc, o);
        return;
    }
    if (!w->st && reopen(w) != 0) {
        note_failure(w, VG_STORE_IO, 1, "the database cannot be reopened");
        for (struct vg_job *j = batch; j; j = j->next)
            j->status = VG_STORE_IO;
        count_failed(w, batch, VG_STORE_IO, o);
        return;
    }

    /* Below the reserve, readings are refused unwritten; the rest (audit
     * records) still go in. Statuses mark which is which, so the batch
     * keeps its order (PUBACKs go out in the order PUBLISHes came). */
    size_t to_store = 0, refused = 0, to_write = 0;
    for (struct vg_job *j = batch; j; j = j->next)
        to_store += job_readings(j);
    char why[128] = "";
    if (to_store && below_reserve(w, why, sizeof why)) {
        for (struct vg_job *j = batch; j; j = j->next)
            if (job_readings(j)) {
                j->status = VG_STORE_FULL;
                refused++;
            }
        to_store = 0;
    }
    for (struct vg_job *j = batch; j; j = j->next)
        to_write += j->status == VG_STORE_OK;

    int rc = VG_STORE_OK;
    if (to_write) {
        int64_t t0 = mono_us();
        rc = commit_jobs(w, batch);
        if (rc == VG_STORE_OK) {
            o->commit_us = mono_us() - t0;
            o->committed++;
            for (struct vg_job *j = batch; j; j = j->next)
                if (j->status == VG_STORE_OK && j->kind == VG_JOB_READINGS)
                    o->readings_committed += j->stored;
        } else {
            rc = failure_kind(rc);
            for (struct vg_job *j = batch; j; j = j->next)
                if (j->status == VG_STORE_OK)
                    j->status = rc;
        }
    }

    if (rc != VG_STORE_OK) {
        char detail[256];
        vg_strlcpy(detail, vg_store_errmsg(w->st), sizeof detail);
        note_failure(w, rc, 1, detail);
    } else if (refused) {
        note_failure(w, VG_STORE_FULL, 0, why);
    } else if (to_write && (to_store || !w->fail_soft)) {
        /* An audit-only commit says nothing about readings while the
         * reserve refuses them; any commit says the disk works again. */
        note_success(w);
    }
    count_failed(w, batch, VG_STORE_FULL, o);
    count_failed(w, batch, VG_STORE_IO, o);
    count_failed(w, batch, VG_STORE_ERROR, o);
}

static void checkpoint(struct vg_writer *w)
{
    if (!w->audit_sk)
        return;
    /* Not while backing off from a failing disk (at stop: one try). */
    if (w->retry_at_ms && vg_mono_ms() < w->retry_at_ms && !w->stop_seen)
        return;
    if (!w->st && reopen(w) != 0)
        return;
    struct vg_audit_checkpoint cp;
    int rc = vg_audit_checkpoint_write(w->st, w->audit_sk, w->cp_log_path, &cp);
    if (rc < 0) {
        /* During a failure episode the store's error is already logged. */
        if (!w->cp_failed && !w->fail_rc)
            vg_log_error("audit: cannot write a signed checkpoint: %s", vg_store_errmsg(w->st));
        w->cp_failed = 1;
        if (rc == VG_STORE_IO) {
            vg_store_close(w->st);
            w->st = NULL;
        }
        w->cp_last_ms = vg_mono_ms(); /* retried at the next occasion */
        w->cp_pending = 0;
        return;
    }
    if (w->cp_failed)
        vg_log_info("audit: signed checkpoints are written again");
    w->cp_failed = 0;
    if (rc == 0) {
        vg_log_debug("audit: checkpoint at record %lld", (long long)cp.seq);
        if (w->cp_syslog) {
            char head[2 * VG_SHA256_BYTES + 1], sig[2 * VG_AUDIT_SIG_BYTES + 1];
            vg_hex(cp.head, sizeof cp.head, head);
            vg_hex(cp.sig, sizeof cp.sig, sig);
            syslog(LOG_AUTH | LOG_NOTICE, "vigil-audit-checkpoint/v1 seq=%lld ts=%lld head=%s sig=%s",
                   (long long)cp.seq, (long long)cp.ts_ms, head, sig);
        }
    }
    w->cp_last_ms = vg_mono_ms();
    w->cp_pending = 0;
}

static int checkpoint_due(struct vg_writer *w)
{
    return w->audit_sk && (w->cp_pending >= w->cp_records ||
                           vg_mono_ms() - w->cp_last_ms >= (int64_t)w->cp_seconds * 1000);
}

static void add_outcome(struct vg_writer *w, const struct outcome *o)
{
    static const uint64_t bounds[VG_WRITER_LATENCY_BUCKETS] = VG_WRITER_LATENCY_BOUNDS_US;
    struct vg_writer_stats *s = &w->stats;
    s->batches_committed += o->committed;
    s->batches_failed_full += o->failed_full;
    s->batches_failed_io += o->failed_io;
    s->batches_failed_other += o->failed_other;
    s->readings_committed += o->readings_committed;
    s->readings_failed += o->readings_failed;
    s->failing = w->fail_rc;
    if (o->commit_us >= 0) {
        uint64_t us = (uint64_t)o->commit_us;
        s->last_commit_us = us;
        s->commit_count++;
        s->commit_sum_us += us;
        for (int i = 0; i < VG_WRITER_LATENCY_BUCKETS; i++)
            if (us <= bounds[i])
                s->commit_le[i]++;
    }
}

static void *writer_main(void *arg)
{
    struct vg_writer *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->head && !w->stopping) {
            if (!w->audit_sk) {
                pthread_cond_wait(&w->wake, &w->lock);
                continue;
            }
            /* Sleep until the next checkpoint is due; records appended by
             * other connections (the API) are covered by the timer. */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += w->cp_seconds;
            if (pthread_cond_timedwait(&w->wake, &w->lock, &until) != 0 && !w->head) {
                pthread_mutex_unlock(&w->lock);
                checkpoint(w);
                pthread_mutex_lock(&w->lock);
            }
        }
        w->stop_seen = w->stopping;
        if (!w->head && w->stopping)
            break;
        /* Take what is queued, up to batch_max readings. */
        struct vg_job *batch = w->head, *last = w->head;
        size_t weight = job_weight(last);
        while (last->next && weight + job_weight(last->next) <= w->batch_max) {
            last = last->next;
            weight += job_weight(last);
        }
        w->head = last->next;
        if (!w->head)
            w->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&w->lock);

        struct outcome o = {0};
        write_batch(w, batch, &o);
        if (checkpoint_due(w))
            checkpoint(w);

        pthread_mutex_lock(&w->lock);
        add_outcome(w, &o);
        w->depth -= weight;
        if (w->done_tail)
            w->done_tail->next = batch;
        else
            w->done_head = batch;
        w->done_tail = last;
        pthread_mutex_unlock(&w->lock);
        if (w->notify)
            w->notify(w->notify_ctx);
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    checkpoint(w); /* the last word: vouch for everything written */
    return NULL;
}

/* Frees what vg_writer_start allocated (the thread is not running). */
static void writer_free(struct vg_writer *w)
{
    vg_store_close(w->st);
    sodium_free(w->audit_sk);
    sodium_free(w->kek);
    vg_keyring_unref(w->keyring);
    free(w->cp_log_path);
    free(w->db_path);
    free(w->db_dir);
    free(w);
}

struct vg_writer *vg_writer_start(const char *db_path, const uint8_t kek[VG_KEY_BYTES],
                                  const struct vg_writer_opts *opts, vg_writer_notify_fn notify,
                                  void *notify_ctx, char *err, size_t err_size)
{
    struct vg_writer *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    w->db_path = strdup(db_path);
    w->db_dir = strdup(db_path);
    w->kek = sodium_malloc(VG_KEY_BYTES);
    if (!w->db_path || !w->db_dir || !w->kek ||
        (opts->audit_sk && !(w->audit_sk = sodium_malloc(VG_AUDIT_SK_BYTES))) ||
        (opts->audit_sk && opts->cp_log_path && !(w->cp_log_path = strdup(opts->cp_log_path)))) {
        snprintf(err, err_size, "out of memory");
        writer_free(w);
        return NULL;
    }
    char *slash = strrchr(w->db_dir, '/');
    if (!slash)
        vg_strlcpy(w->db_dir, ".", strlen(w->db_dir) + 1);
    else if (slash == w->db_dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    memcpy(w->kek, kek, VG_KEY_BYTES);
    if (opts->keyring) {
        vg_keyring_ref(opts->keyring);
        w->keyring = opts->keyring;
    }
    if ((w->keyring ? vg_store_open_ring(db_path, w->keyring, &w->st, NULL, err, err_size)
                    : vg_store_open(db_path, kek, &w->st, err, err_size)) != VG_STORE_OK) {
        writer_free(w);
        return NULL;
    }
    w->batch_max = opts->batch_max ? opts->batch_max : 1;
    w->reserve = opts->reserve_bytes == 0 ? VG_WRITER_RESERVE_DEFAULT
                 : opts->reserve_bytes < 0 ? 0
                                           : opts->reserve_bytes;
    if (opts->audit_sk) {
        memcpy(w->audit_sk, opts->audit_sk, VG_AUDIT_SK_BYTES);
        w->cp_records = opts->cp_records > 0 ? opts->cp_records : 1000;
        w->cp_seconds = opts->cp_seconds > 0 ? opts->cp_seconds : 60;
        w->cp_syslog = opts->cp_syslog;
        if (w->cp_syslog)
            openlog("vigil", LOG_PID, LOG_AUTH);
        w->cp_last_ms = vg_mono_ms();
    }
    w->notify = notify;
    w->notify_ctx = notify_ctx;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        snprintf(err, err_size, "cannot start the store writer thread");
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        writer_free(w);
        return NULL;
    }
    return w;
}

void vg_writer_submit(struct vg_writer *w, struct vg_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->tail)
        w->tail->next = job;
    else
        w->head = job;
    w->tail = job;
    w->depth += job_weight(job);
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

size_t vg_writer_depth(struct vg_writer *w)
{
    pthread_mutex_lock(&w->lock);
    size_t d = w->depth;
    pthread_mutex_unlock(&w->lock);
    return d;
}

struct vg_job *vg_writer_take_done(struct vg_writer *w)
{
    pthread_mutex_lock(&w->lock);
    struct vg_job *list = w->done_head;
    w->done_head = w->done_tail = NULL;
    pthread_mutex_unlock(&w->lock);
    return list;
}

void vg_writer_stats(struct vg_writer *w, struct vg_writer_stats *out)
{
    pthread_mutex_lock(&w->lock);
    *out = w->stats;
    pthread_mutex_unlock(&w->lock);
}

void vg_writer_stop(struct vg_writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    struct vg_job *j = w->done_head;
    while (j) {
        struct vg_job *next = j->next;
        vg_job_free(j);
        j = next;
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    writer_free(w);
}
