#include "store/fleet.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

/* Expected reporting intervals: a spot-check device (BP cuff, scale,
 * thermometer) may report a few times a day; a continuous monitor every
 * few seconds. The fleet audit flags a device silent for longer. */
static const struct vg_device_class classes[] = {
    {"pulse-oximeter", "pulse oximeter", 3600},
    {"bp-cuff", "blood-pressure cuff", 86400},
    {"infusion-pump", "infusion pump", 3600},
    {"monitor", "bedside monitor", 600},
    {"thermometer", "thermometer", 86400},
    {"scale", "weight scale", 7 * 86400},
    {"glucometer", "glucose meter", 86400},
    {"ecg", "electrocardiograph", 86400},
    {"other", "other device", 86400},
};

const struct vg_device_class *vg_fleet_class_lookup(const char *name)
{
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (!strcmp(classes[i].name, name))
            return &classes[i];
    return NULL;
}

const struct vg_device_class *vg_fleet_class_at(size_t i)
{
    return i < sizeof classes / sizeof classes[0] ? &classes[i] : NULL;
}

static int step_done(sqlite3_stmt *s)
{
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    if (step == SQLITE_DONE)
        return VG_STORE_OK;
    return (step & 0xff) == SQLITE_FULL ? VG_STORE_FULL : VG_STORE_ERROR;
}

static int prep(struct vg_store *st, const char *sql, sqlite3_stmt **s)
{
    return sqlite3_prepare_v2(vg_store_db(st), sql, -1, s, NULL) == SQLITE_OK ? VG_STORE_OK
                                                                              : VG_STORE_ERROR;
}

static int changed_or_missing(struct vg_store *st, int rc)
{
    if (rc)
        return rc;
    return sqlite3_changes(vg_store_db(st)) ? VG_STORE_OK : VG_STORE_NOT_FOUND;
}

int vg_fleet_device_describe(struct vg_store *st, const char *id,
                             const struct vg_device_info_update *u, int64_t now_ms)
{
    sqlite3_stmt *s;
    /* COALESCE keeps what a NULL field does not mention. */
    if (prep(st,
             "UPDATE devices SET manufacturer = COALESCE(?2, manufacturer),"
             " model = COALESCE(?3, model), serial = COALESCE(?4, serial),"
             " firmware = COALESCE(?5, firmware), class = COALESCE(?6, class),"
             " location = COALESCE(?7, location), info_ms = ?8 WHERE id = ?1",
             &s))
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    const char *v[] = {u->manufacturer, u->model, u->serial, u->firmware, u->device_class,
                       u->location};
    for (int i = 0; i < 6; i++) {
        if (v[i])
            sqlite3_bind_text(s, 2 + i, v[i], -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 2 + i);
    }
    sqlite3_bind_int64(s, 8, now_ms);
    return changed_or_missing(st, step_done(s));
}

int vg_fleet_device_key(struct vg_store *st, const char *id, const char *key_type, int key_bits,
                        int64_t not_before_ms)
{
    sqlite3_stmt *s;
    if (prep(st, "UPDATE devices SET key_type = ?2, key_bits = ?3, cert_not_before_ms = ?4"
                 " WHERE id = ?1", &s))
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key_type, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, key_bits);
    sqlite3_bind_int64(s, 4, not_before_ms);
    return changed_or_missing(st, step_done(s));
}

int vg_fleet_device_seen(struct vg_store *st, const char *id, int64_t ms, const char *source,
                         const char *tls, const char *cipher)
{
    sqlite3_stmt *s;
    if (prep(st, "UPDATE devices SET last_seen_ms = max(last_seen_ms, ?2), last_source = ?3,"
                 " last_tls = ?4, last_cipher = ?5 WHERE id = ?1", &s))
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, ms);
    sqlite3_bind_text(s, 3, source ? source : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, tls ? tls : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, cipher ? cipher : "", -1, SQLITE_STATIC);
    return changed_or_missing(st, step_done(s));
}

#define DEVICE_COLUMNS                                                                             \
    "SELECT d.id, d.status, d.manufacturer, d.model, d.serial, d.firmware, d.class, d.location,"  \
    " COALESCE((SELECT a.patient_id FROM assignments a WHERE a.device_id = d.id"                  \
    "   AND a.start_ms <= ?1 AND (a.end_ms IS NULL OR a.end_ms > ?1)"                             \
    "   ORDER BY a.start_ms DESC LIMIT 1), ''),"                                                  \
    " d.cert_serial, d.cert_fingerprint, d.key_type, d.key_bits, d.enrolled_ms,"                  \
    " d.cert_not_before_ms, d.cert_not_after_ms, d.info_ms, d.last_seen_ms, d.last_source,"       \
    " d.last_tls, d.last_cipher, d.quarantined_ms, COALESCE(d.quarantine_reason, '')"             \
    " FROM devices d"

static void copy(char *dst, size_t size, sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    vg_strlcpy(dst, t ? (const char *)t : "", size);
}

static void row_to_inventory(sqlite3_stmt *s, struct vg_device_inventory *d)
{
    memset(d, 0, sizeof *d);
    copy(d->id, sizeof d->id, s, 0);
    copy(d->status, sizeof d->status, s, 1);
    copy(d->manufacturer, sizeof d->manufacturer, s, 2);
    copy(d->model, sizeof d->model, s, 3);
    copy(d->serial, sizeof d->serial, s, 4);
    copy(d->firmware, sizeof d->firmware, s, 5);
    copy(d->device_class, sizeof d->device_class, s, 6);
    copy(d->location, sizeof d->location, s, 7);
    copy(d->patient, sizeof d->patient, s, 8);
    copy(d->cert_serial, sizeof d->cert_serial, s, 9);
    copy(d->cert_fingerprint, sizeof d->cert_fingerprint, s, 10);
    copy(d->key_type, sizeof d->key_type, s, 11);
    d->key_bits = sqlite3_column_int(s, 12);
    d->enrolled_ms = sqlite3_column_int64(s, 13);
    d->cert_not_before_ms = sqlite3_column_int64(s, 14);
    d->cert_not_after_ms = sqlite3_column_int64(s, 15);
    d->info_ms = sqlite3_column_int64(s, 16);
    d->last_seen_ms = sqlite3_column_int64(s, 17);
    copy(d->last_source, sizeof d->last_source, s, 18);
    copy(d->last_tls, sizeof d->last_tls, s, 19);
    copy(d->last_cipher, sizeof d->last_cipher, s, 20);
    d->quarantined = sqlite3_column_type(s, 21) != SQLITE_NULL;
    d->quarantined_ms = sqlite3_column_int64(s, 21);
    copy(d->quarantine_reason, sizeof d->quarantine_reason, s, 22);
}

int vg_fleet_device_get(struct vg_store *st, const char *id, int64_t now_ms,
                        struct vg_device_inventory *out)
{
    sqlite3_stmt *s;
    if (prep(st, DEVICE_COLUMNS " WHERE d.id = ?2", &s))
        return VG_STORE_ERROR;
    sqlite3_bind_int64(s, 1, now_ms);
    sqlite3_bind_text(s, 2, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(s), rc;
    if (step == SQLITE_ROW) {
        row_to_inventory(s, out);
        rc = VG_STORE_OK;
    } else {
        rc = step == SQLITE_DONE ? VG_STORE_NOT_FOUND : VG_STORE_ERROR;
    }
    sqlite3_finalize(s);
    return rc;
}

int vg_fleet_device_list(struct vg_store *st, int64_t now_ms, vg_fleet_device_fn fn, void *ctx)
{
    sqlite3_stmt *s;
    if (prep(st, DEVICE_COLUMNS " ORDER BY d.id", &s))
        return VG_STORE_ERROR;
    sqlite3_bind_int64(s, 1, now_ms);
    int n = 0, step;
    struct vg_device_inventory d;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        row_to_inventory(s, &d);
        n++;
        if (fn(ctx, &d))
            break;
    }
    sqlite3_finalize(s);
    return step == SQLITE_ROW || step == SQLITE_DONE ? n : VG_STORE_ERROR;
}

int vg_fleet_quarantine(struct vg_store *st, const char *id, const char *reason, int64_t now_ms)
{
    sqlite3_stmt *s;
    if (prep(st, "UPDATE devices SET quarantined_ms = COALESCE(quarantined_ms, ?2),"
                 " quarantine_reason = COALESCE(quarantine_reason, ?3) WHERE id = ?1", &s))
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now_ms);
    sqlite3_bind_text(s, 3, reason, -1, SQLITE_STATIC);
    return changed_or_missing(st, step_done(s));
}

int vg_fleet_release(struct vg_store *st, const char *id)
{
    sqlite3_stmt *s;
    if (prep(st, "UPDATE devices SET quarantined_ms = NULL, quarantine_reason = NULL"
                 " WHERE id = ?1", &s))
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    return changed_or_missing(st, step_done(s));
}

int vg_fleet_quarantined(struct vg_store *st, const char *id)
{
    sqlite3_stmt *s;
    if (prep(st, "SELECT quarantined_ms IS NOT NULL FROM devices WHERE id = ?1", &s))
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(s);
    int rc = step == SQLITE_ROW ? sqlite3_column_int(s, 0) : step == SQLITE_DONE ? 0 : VG_STORE_ERROR;
    sqlite3_finalize(s);
    return rc;
}

int vg_fleet_revoke(struct vg_store *st, const char *id)
{
    sqlite3_stmt *s;
    if (prep(st, "UPDATE devices SET status = 'revoked' WHERE id = ?1", &s))
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    return changed_or_missing(st, step_done(s));
}

int vg_fleet_training_add(struct vg_store *st, const char *user, const char *course,
                          int64_t completed_ms, const char *recorded_by, int64_t now_ms)
{
    sqlite3_stmt *s;
    if (prep(st, "INSERT INTO training(user_id, course, completed_ms, recorded_by, recorded_ms)"
                 " VALUES (?1, ?2, ?3, ?4, ?5)", &s))
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, course, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, completed_ms);
    sqlite3_bind_text(s, 4, recorded_by, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, now_ms);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    if (step == SQLITE_DONE)
        return VG_STORE_OK;
    if ((step & 0xff) == SQLITE_CONSTRAINT)
        return VG_STORE_NOT_FOUND; /* no such user (foreign key) */
    return VG_STORE_ERROR;
}

int64_t vg_fleet_training_last(struct vg_store *st, const char *user, const char *course)
{
    sqlite3_stmt *s;
    if (prep(st, "SELECT max(completed_ms) FROM training WHERE user_id = ?1 AND course = ?2", &s))
        return 0;
    sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, course, -1, SQLITE_STATIC);
    int64_t v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    return v;
}

int vg_fleet_suppress(struct vg_store *st, const char *finding_key, const char *reason,
                      int64_t expires_ms, const char *by, int64_t now_ms)
{
    sqlite3_stmt *s;
    if (prep(st, "INSERT OR REPLACE INTO suppressions(finding_key, reason, expires_ms,"
                 " created_by, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)", &s))
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, finding_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, expires_ms);
    sqlite3_bind_text(s, 4, by, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, now_ms);
    return step_done(s);
}

int vg_fleet_advisory_put(struct vg_store *st, const char *id, const char *title,
                          const char *version, const char *released, const char *sha256_hex,
                          const uint8_t *doc, size_t len, const char *by, int64_t now_ms)
{
    sqlite3_stmt *s;
    /* A newer revision of the same advisory replaces the older one. */
    if (prep(st, "INSERT OR REPLACE INTO advisories(id, title, version, released, sha256, doc,"
                 " imported_ms, imported_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", &s))
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, title, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, version, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, released, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, sha256_hex, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 6, doc, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 7, now_ms);
    sqlite3_bind_text(s, 8, by, -1, SQLITE_STATIC);
    return step_done(s);
}

int vg_fleet_advisory_each(struct vg_store *st, vg_fleet_advisory_fn fn, void *ctx)
{
    sqlite3_stmt *s;
    if (prep(st, "SELECT id, doc FROM advisories ORDER BY id", &s))
        return VG_STORE_ERROR;
    int n = 0, step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        n++;
        if (fn(ctx, (const char *)sqlite3_column_text(s, 0), sqlite3_column_blob(s, 1),
               (size_t)sqlite3_column_bytes(s, 1)))
            break;
    }
    sqlite3_finalize(s);
    return step == SQLITE_ROW || step == SQLITE_DONE ? n : VG_STORE_ERROR;
}

int64_t vg_fleet_alarm_raise(struct vg_store *st, const char *device, const char *rule,
                             const char *metric, double value, double threshold,
                             const char *mitigation, int64_t now_ms)
{
    sqlite3_stmt *s;
    if (prep(st, "INSERT INTO alarms(device_id, rule, metric, value, threshold, mitigation,"
                 " raised_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", &s))
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, device, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, rule, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, metric, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 4, value);
    sqlite3_bind_double(s, 5, threshold);
    sqlite3_bind_text(s, 6, mitigation, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 7, now_ms);
    int rc = step_done(s);
    return rc ? rc : sqlite3_last_insert_rowid(vg_store_db(st));
}

int vg_fleet_alarm_clear(struct vg_store *st, const char *device, const char *rule, int64_t now_ms)
{
    sqlite3_stmt *s;
    if (prep(st, "UPDATE alarms SET cleared_ms = ?3 WHERE device_id = ?1 AND rule = ?2"
                 " AND cleared_ms IS NULL", &s))
        return VG_STORE_ERROR;
    sqlite3_bind_text(s, 1, device, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, rule, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now_ms);
    return changed_or_missing(st, step_done(s));
}
