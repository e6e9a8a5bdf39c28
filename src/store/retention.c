#include "store/retention.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "ingest/reading.h"

#define HOUR_MS INT64_C(3600000)
#define DAY_MS (24 * HOUR_MS)

static int known_category(const char *name)
{
    const struct vg_vital *v;
    for (size_t i = 0; (v = vg_vital_at(i)); i++)
        if (!strcmp(v->category, name))
            return 1;
    return 0;
}

int vg_retention_set(struct vg_retention *r, const char *key, const char *value, char *err,
                     size_t err_size)
{
    if (strlen(key) >= VG_RETENTION_KEY_MAX) {
        snprintf(err, err_size, "retention key too long");
        return -1;
    }
    if (strcmp(key, "default") != 0 && !known_category(key) &&
        !vg_vital_lookup(key, strlen(key))) {
        snprintf(err, err_size,
                 "'%s' is not a code vigil accepts, nor a category (vital-signs, laboratory), "
                 "nor default",
                 key);
        return -1;
    }
    int64_t keep = 0;
    if (strcmp(value, "keep") != 0) {
        char *end = NULL;
        errno = 0;
        long long n = strtoll(value, &end, 10);
        int64_t unit = 0;
        if (end && end != value && end[0] && !end[1])
            unit = end[0] == 'h' ? HOUR_MS : end[0] == 'd' ? DAY_MS : end[0] == 'y' ? 365 * DAY_MS : 0;
        if (errno || !unit || n <= 0 || n > 100 * 365 * 24 || (int64_t)n * unit > 100 * 365 * DAY_MS) {
            snprintf(err, err_size,
                     "retention for '%s' must be 'keep' or a number with h, d or y "
                     "(e.g. 30d), at most 100 years",
                     key);
            return -1;
        }
        keep = (int64_t)n * unit;
    }
    for (size_t i = 0; i < r->n; i++) {
        if (!strcmp(r->rules[i].key, key)) {
            r->rules[i].keep_ms = keep;
            return 0;
        }
    }
    if (r->n == VG_RETENTION_RULES_MAX) {
        snprintf(err, err_size, "too many retention rules (at most %d)", VG_RETENTION_RULES_MAX);
        return -1;
    }
    vg_strlcpy(r->rules[r->n].key, key, sizeof r->rules[r->n].key);
    r->rules[r->n].keep_ms = keep;
    r->n++;
    return 0;
}

static const struct vg_retention_rule *find(const struct vg_retention *r, const char *key)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->rules[i].key, key))
            return &r->rules[i];
    return NULL;
}

int64_t vg_retention_for(const struct vg_retention *r, const char *code)
{
    const struct vg_retention_rule *rule = find(r, code);
    if (rule)
        return rule->keep_ms;
    const struct vg_vital *v = vg_vital_lookup(code, strlen(code));
    if (v && (rule = find(r, v->category)))
        return rule->keep_ms;
    rule = find(r, "default");
    return rule ? rule->keep_ms : 0;
}

int64_t vg_retention_longest(const struct vg_retention *r)
{
    int64_t longest = 0;
    const struct vg_vital *v;
    for (size_t i = 0; (v = vg_vital_at(i)); i++) {
        int64_t keep = vg_retention_for(r, v->code);
        if (keep == 0)
            return 0;
        if (keep > longest)
            longest = keep;
    }
    return longest;
}

/* Deletes up to 'limit' readings of 'code' in hours before 'cutoff_hour'
 * and audits it, in one transaction. *deleted = rows deleted. */
static int purge_code(struct vg_store *st, const char *code, int64_t cutoff_hour, int64_t keep_ms,
                      int64_t limit, int64_t *deleted)
{
    *deleted = 0;
    int rc = vg_store_begin(st);
    if (rc)
        return rc;
    sqlite3 *db = vg_store_db(st);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db,
                           "DELETE FROM readings WHERE rowid IN (SELECT rowid FROM readings"
                           " WHERE code = ?1 AND hour < ?2 LIMIT ?3)",
                           -1, &s, NULL) != SQLITE_OK) {
        vg_store_rollback(st);
        return VG_STORE_ERROR;
    }
    sqlite3_bind_text(s, 1, code, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, cutoff_hour);
    sqlite3_bind_int64(s, 3, limit);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    if (step != SQLITE_DONE) {
        vg_store_rollback(st);
        return (step & 0xff) == SQLITE_FULL ? VG_STORE_FULL : VG_STORE_ERROR;
    }
    *deleted = sqlite3_changes64(db);
    if (*deleted == 0) {
        vg_store_rollback(st); /* nothing to record */
        return VG_STORE_OK;
    }
    char target[64], detail[160], when[32];
    snprintf(target, sizeof target, "code:%s", code);
    vg_time_format(cutoff_hour * HOUR_MS, when);
    snprintf(detail, sizeof detail, "deleted %" PRId64 " readings older than %s (retention %" PRId64 "h)",
             *deleted, when, keep_ms / HOUR_MS);
    struct vg_audit_event ev = {0, "system", "retention.purge", target, "success", detail, ""};
    rc = vg_audit_append(st, &ev);
    if (!rc)
        rc = vg_store_commit(st);
    if (rc) {
        vg_store_rollback(st);
        *deleted = 0;
    }
    return rc;
}

int vg_retention_purge(struct vg_store *st, const struct vg_retention *r, int64_t now_ms,
                       int64_t budget, struct vg_purge_report *out)
{
    memset(out, 0, sizeof *out);
    const struct vg_vital *v;
    for (size_t i = 0; (v = vg_vital_at(i)); i++) {
        int64_t keep = vg_retention_for(r, v->code);
        if (keep == 0)
            continue;
        if (budget - out->deleted <= 0) {
            out->more = 1;
            break;
        }
        /* Hours that ended before now - keep: every reading in them is due. */
        int64_t cutoff_hour = (now_ms - keep) / HOUR_MS;
        int64_t limit = budget - out->deleted, deleted = 0;
        int rc = purge_code(st, v->code, cutoff_hour, keep, limit, &deleted);
        if (rc)
            return rc;
        if (deleted) {
            out->deleted += deleted;
            out->codes++;
            if (deleted == limit)
                out->more = 1;
        }
    }
    return VG_STORE_OK;
}
