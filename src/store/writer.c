#include "store/writer.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void summarise_refusals(const struct vg_job *j, char *out, size_t size)
{
    /* "3 refused: implausible-value x2, unknown-code x1" — reasons only. */
    size_t counts[VG_REJECT_STORE + 1] = {0};
    size_t total = 0;
    for (size_t i = 0; i < j->n; i++)
        if (j->items[i].reject != VG_REJECT_NONE && j->items[i].reject <= VG_REJECT_STORE) {
            counts[j->items[i].reject]++;
            total++;
        }
    int off = snprintf(out, size, "%zu refused:", total);
    for (int r = 1; r <= VG_REJECT_STORE && off > 0 && (size_t)off < size; r++)
        if (counts[r])
            off += snprintf(out + off, size - (size_t)off, " %s x%zu", vg_reject_name(r), counts[r]);
}

static int write_readings(struct vg_writer *w, struct vg_job *j)
{
    char actor[VG_ID_MAX + 16], target[VG_ID_MAX + 16], detail[256];
    snprintf(actor, sizeof actor, "device:%s", j->device);
    j->stored = j->refused = 0;

    if (j->whole != VG_REJECT_NONE) {
        j->refused = 1;
        snprintf(detail, sizeof detail, "%s: %s", vg_reject_name(j->whole), j->whole_detail);
        struct vg_audit_event ev = {0, actor, "mqtt.publish", actor, "refused", detail, j->source};
        return vg_audit_append(w->st, &ev);
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

    int64_t tmin = INT64_MAX, tmax = INT64_MIN;
    for (size_t i = 0; i < j->n; i++) {
        struct vg_reading_item *it = &j->items[i];
        if (it->reject != VG_REJECT_NONE) {
            j->refused++;
            continue;
        }
        char id[VG_OBS_ID_MAX];
        if ((rc = vg_store_reading_put(w->st, j->patient, j->device, &it->reading,
                                       j->received_ms, id)) != VG_STORE_OK)
            return rc;
        j->stored++;
        if (it->reading.time_ms < tmin)
            tmin = it->reading.time_ms;
        if (it->reading.time_ms > tmax)
            tmax = it->reading.time_ms;
    }
    if (j->stored) {
        char a[32], b[32];
        vg_time_format(tmin, a);
        vg_time_format(tmax, b);
        snprintf(target, sizeof target, "patient:%s", j->patient);
        snprintf(detail, sizeof detail, "stored %zu readings from %s, effective %s to %s",
                 j->stored, j->device, a, b);
        struct vg_audit_event ev = {0, actor, "readings.store", target, "success", detail, j->source};
        if ((rc = vg_audit_append(w->st, &ev)))
            return rc;
    }
    if (j->refused) {
        summarise_refusals(j, detail, sizeof detail);
        snprintf(target, sizeof target, j->patient[0] ? "patient:%s" : "device:%s",
                 j->patient[0] ? j->patient : j->device);
        struct vg_audit_event ev = {0, actor, "readings.refuse", target, "refused", detail, j->source};
        if ((rc = vg_audit_append(w->st, &ev)))
            return rc;
    }
    return VG_STORE_OK;
}

static int write_job(struct vg_writer *w, struct vg_job *j)
{
    if (j->kind == VG_JOB_READINGS)
        return write_readings(w, j);
    struct vg_audit_event ev = {0,          j->audit.actor,  j->audit.action, j->audit.target,
                                j->audit.outcome, j->audit.detail, j->audit.source};
    return vg_audit_append(w->st, &ev);
}

static void write_batch(struct vg_writer *w, struct vg_job *batch)
{
    int rc = vg_store_begin(w->st);
    for (struct vg_job *j = batch; j && rc == VG_STORE_OK; j = j->next)
        rc = write_job(w, j);
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

static void *writer_main(void *arg)
{
    struct vg_writer *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->wake, &w->lock);
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
    return NULL;
}

struct vg_writer *vg_writer_start(const char *db_path, const uint8_t kek[VG_KEY_BYTES],
                                  size_t batch_max, vg_writer_notify_fn notify,
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
    w->batch_max = batch_max ? batch_max : 1;
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
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
}
