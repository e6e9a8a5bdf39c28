/* Unit tests for store/retention: rule parsing and precedence, and the
 * audited purge (only what is due goes, within the budget, each deletion
 * on the audit trail). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "crypto/crypto.h"
#include "store/retention.h"
#include "store/store.h"

#define DAY INT64_C(86400000)
static const int64_t NOW = INT64_C(1795946400000); /* 2026-11-29T06:00:00Z-ish */

static void test_rules_parse(void **state)
{
    (void)state;
    struct vg_retention r = {0};
    char err[200];
    assert_int_equal(vg_retention_set(&r, "default", "keep", err, sizeof err), 0);
    assert_int_equal(vg_retention_set(&r, "8867-4", "30d", err, sizeof err), 0);
    assert_int_equal(vg_retention_set(&r, "laboratory", "2y", err, sizeof err), 0);
    assert_int_equal(vg_retention_set(&r, "9279-1", "12h", err, sizeof err), 0);
    assert_int_equal(vg_retention_for(&r, "8867-4"), 30 * DAY);
    assert_int_equal(vg_retention_for(&r, "2339-0"), 2 * 365 * DAY); /* via category */
    assert_int_equal(vg_retention_for(&r, "9279-1"), 12 * 3600000);
    assert_int_equal(vg_retention_for(&r, "8310-5"), 0);             /* default: keep */
    assert_int_equal(vg_retention_longest(&r), 0); /* something is kept forever */
    /* A code rule beats its category; replacing a rule keeps one entry. */
    assert_int_equal(vg_retention_set(&r, "vital-signs", "1y", err, sizeof err), 0);
    assert_int_equal(vg_retention_set(&r, "8867-4", "60d", err, sizeof err), 0);
    assert_int_equal(vg_retention_for(&r, "8867-4"), 60 * DAY);
    assert_int_equal(vg_retention_for(&r, "8310-5"), 365 * DAY);
    assert_int_equal(r.n, 5);
    assert_int_equal(vg_retention_longest(&r), 2 * 365 * DAY);
}

static void test_rules_refused(void **state)
{
    (void)state;
    struct vg_retention r = {0};
    char err[200];
    const char *bad_values[] = {"", "30", "d", "0d", "-1d", "30w", "30dd", "101y", "1e3d",
                                "99999999999999999999d", "forever"};
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
        err[0] = 0;
        assert_int_equal(vg_retention_set(&r, "8867-4", bad_values[i], err, sizeof err), -1);
        assert_non_null(strstr(err, "keep"));
    }
    assert_int_equal(vg_retention_set(&r, "1234-5", "30d", err, sizeof err), -1);
    assert_non_null(strstr(err, "not a code"));
    assert_int_equal(vg_retention_set(&r, "imaging", "30d", err, sizeof err), -1);
    assert_non_null(strstr(err, "nor a category"));
    assert_int_equal(vg_retention_set(&r, "category:vital-signs", "30d", err, sizeof err), -1);
    assert_int_equal(r.n, 0); /* nothing half-added */
}

struct fx {
    char dir[64], db[128];
    struct vg_store *st;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_int_equal(vg_crypto_init(), 0);
    snprintf(f->dir, sizeof f->dir, "/tmp/vg-ret-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/vigil.db", f->dir);
    uint8_t kek[VG_KEY_BYTES];
    vg_random(kek, sizeof kek);
    char err[256];
    assert_int_equal(vg_store_create(f->db, kek, err, sizeof err), VG_STORE_OK);
    assert_int_equal(vg_store_open(f->db, kek, &f->st, err, sizeof err), VG_STORE_OK);
    struct vg_device_info d = {.id = "dev1", .status = "active", .cert_serial = "01",
                               .enrolled_ms = 1};
    memset(d.cert_fingerprint, 'a', 64);
    assert_int_equal(vg_store_begin(f->st), 0);
    assert_int_equal(vg_store_patient_add(f->st, "P1", 1), VG_STORE_OK);
    assert_int_equal(vg_store_device_add(f->st, &d), VG_STORE_OK);
    assert_int_equal(vg_store_device_assign(f->st, "dev1", "P1", 1), VG_STORE_OK);
    /* Heart rate and temperature, one reading a day for 100 days. */
    for (int day = 0; day < 100; day++) {
        struct vg_reading hr = {.code = "8867-4", .unit = "/min", .value = 70,
                                .time_ms = NOW - day * DAY};
        struct vg_reading t = {.code = "8310-5", .unit = "Cel", .value = 37,
                               .time_ms = NOW - day * DAY};
        char id[VG_OBS_ID_MAX];
        assert_int_equal(vg_store_reading_put(f->st, "P1", "dev1", &hr, NOW, id), VG_STORE_OK);
        assert_int_equal(vg_store_reading_put(f->st, "P1", "dev1", &t, NOW, id), VG_STORE_OK);
    }
    assert_int_equal(vg_store_commit(f->st), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    vg_store_close(f->st);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int64_t scalar(struct vg_store *st, const char *sql)
{
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(vg_store_db(st), sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static void test_purge_deletes_only_due_and_audits(void **state)
{
    struct fx *f = *state;
    struct vg_retention r = {0};
    char err[200];
    assert_int_equal(vg_retention_set(&r, "8867-4", "30d", err, sizeof err), 0);
    int64_t audit_before = scalar(f->st, "SELECT count(*) FROM audit");
    struct vg_purge_report rep;
    assert_int_equal(vg_retention_purge(f->st, &r, NOW, 100000, &rep), VG_STORE_OK);
    /* Days 0..30 are within 30 days (day 30 is exactly at the limit, in an
     * hour that has not wholly passed it): 31 kept, 69 deleted. */
    assert_int_equal(rep.deleted, 69);
    assert_int_equal(rep.codes, 1);
    assert_int_equal(rep.more, 0);
    assert_int_equal(scalar(f->st, "SELECT count(*) FROM readings WHERE code = '8867-4'"), 31);
    assert_int_equal(scalar(f->st, "SELECT count(*) FROM readings WHERE code = '8310-5'"), 100);
    /* One audit record for the deletion, and the chain still verifies. */
    assert_int_equal(scalar(f->st, "SELECT count(*) FROM audit") - audit_before, 1);
    assert_int_equal(scalar(f->st, "SELECT count(*) FROM audit WHERE action = 'retention.purge'"
                                   " AND target = 'code:8867-4' AND detail LIKE 'deleted 69 %'"),
                     1);
    int64_t records = 0, bad = 0;
    char why[256];
    assert_int_equal(vg_audit_verify(f->st, &records, &bad, why, sizeof why), 0);
    assert_true(records >= 1);
    /* A second run finds nothing due and writes nothing. */
    assert_int_equal(vg_retention_purge(f->st, &r, NOW, 100000, &rep), VG_STORE_OK);
    assert_int_equal(rep.deleted, 0);
    assert_int_equal(scalar(f->st, "SELECT count(*) FROM audit") - audit_before, 1);
}

static void test_purge_budget(void **state)
{
    struct fx *f = *state;
    struct vg_retention r = {0};
    char err[200];
    assert_int_equal(vg_retention_set(&r, "default", "10d", err, sizeof err), 0);
    struct vg_purge_report rep;
    assert_int_equal(vg_retention_purge(f->st, &r, NOW, 50, &rep), VG_STORE_OK);
    assert_int_equal(rep.deleted, 50);
    assert_int_equal(rep.more, 1);
    assert_int_equal(vg_retention_purge(f->st, &r, NOW, 1000, &rep), VG_STORE_OK);
    assert_int_equal(rep.deleted, 2 * 89 - 50);
    assert_int_equal(rep.more, 0);
    assert_int_equal(scalar(f->st, "SELECT count(*) FROM readings"), 2 * 11);
}

static void test_keep_deletes_nothing(void **state)
{
    struct fx *f = *state;
    struct vg_retention r = {0}; /* built-in default: keep */
    struct vg_purge_report rep;
    assert_int_equal(vg_retention_purge(f->st, &r, NOW + 1000 * 365 * DAY, 100000, &rep),
                     VG_STORE_OK);
    assert_int_equal(rep.deleted, 0);
    assert_int_equal(scalar(f->st, "SELECT count(*) FROM readings"), 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_parse),
        cmocka_unit_test(test_rules_refused),
        cmocka_unit_test_setup_teardown(test_purge_deletes_only_due_and_audits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_deletes_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
