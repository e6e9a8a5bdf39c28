#include "store/writer.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "audit/audit.h"
#include "core/log.h"
#include "store/store.h"

struct vg_writer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct vg_job *head, *tail;       /* queued */
    struct vg_job *done_head, *done_tail;
    size_t depth;
    size_t batch_max;
    int stopping;
    int last_failed;                  /* log a failing disk once, not per batch */
    struct vg_store *st;
    uint8_t *audit_sk;                /* sodium_malloc'd, or NULL */
    int cp_records, cp_seconds;
    char *cp_log_path;
    int cp_syslog;
    int64_t cp_last_ms;               /* monotonic time of the last one */
    long cp_pending;                  /* audit records since then */
    vg_writer_notify_fn notify;
    void *notify_ctx;
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
        w->cp_pending++;
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

static void write_batch(struct vg_writer *w, struct vg_job *batch)
{
    struct agg_list aggs = {0};
    int rc = vg_store_begin(w->st);
    for (struct vg_job *j = batch; j && rc == VG_STORE_OK; j = j->next)
        rc = write_job(w, j, &aggs);
    if (rc == VG_STORE_OK)
        rc = write_aggregates(w, &aggs);
    free(aggs.v);
    if (rc == VG_STORE_OK)
        rc = vg_store_commit(w->st);
    if (rc != VG_STORE_OK) {
        vg_store_rollback(w->st);
        if (!w->last_failed)
            vg_log_error("store: batch not committed, nothing of it acknowledged: %s",
                         vg_store_errmsg(w->st));
        w->last_failed = 1;
    } else if (w->last_failed) {
        vg_log_info("store: commits succeed again");
        w->last_failed = 0;
    }
    for (struct vg_job *j = batch; j; j = j->next)
        j->status = rc;
}

static void checkpoint(struct vg_writer *w)
{
    if (!w->audit_sk)
        return;
    struct vg_audit_checkpoint cp;
    int rc = vg_audit_checkpoint_write(w->st, w->audit_sk, w->cp_log_path, &cp);
    if (rc < 0) {
        vg_log_error("audit: cannot write a signed checkpoint: %s", vg_store_errmsg(w->st));
        return; /* retried at the next occasion */
    }
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

        write_batch(w, batch);
        if (checkpoint_due(w))
            checkpoint(w);

        pthread_mutex_lock(&w->lock);
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

struct vg_writer *vg_writer_start(const char *db_path, const uint8_t kek[VG_KEY_BYTES],
                                  const struct vg_writer_opts *opts, vg_writer_notify_fn notify,
                                  void *notify_ctx, char *err, size_t err_size)
{
    struct vg_writer *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    if (vg_store_open(db_path, kek, &w->st, err, err_size) != VG_STORE_OK) {
        free(w);
        return NULL;
    }
    w->batch_max = opts->batch_max ? opts->batch_max : 1;
    if (opts->audit_sk) {
        w->audit_sk = sodium_malloc(VG_AUDIT_SK_BYTES);
        if (!w->audit_sk) {
            snprintf(err, err_size, "out of memory");
            vg_store_close(w->st);
            free(w);
            return NULL;
        }
        memcpy(w->audit_sk, opts->audit_sk, VG_AUDIT_SK_BYTES);
        w->cp_records = opts->cp_records > 0 ? opts->cp_records : 1000;
        w->cp_seconds = opts->cp_seconds > 0 ? opts->cp_seconds : 60;
        w->cp_log_path = opts->cp_log_path ? strdup(opts->cp_log_path) : NULL;
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
        vg_store_close(w->st);
        free(w);
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
    vg_store_close(w->st);
    sodium_free(w->audit_sk);
    free(w->cp_log_path);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
}
