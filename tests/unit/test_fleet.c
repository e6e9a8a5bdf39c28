/* Unit tests for store/fleet: the device inventory, quarantine and
 * revocation, training, suppressions, advisories and alarms. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "store/fleet.h"
#include "store/store.h"

struct fx {
    char dir[64], db[128];
    struct vg_store *st;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_int_equal(vg_crypto_init(), 0);
    snprintf(f->dir, sizeof f->dir, "/tmp/vg-fleet-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/vigil.db", f->dir);
    uint8_t kek[VG_KEY_BYTES];
    vg_random(kek, sizeof kek);
    char err[256];
    assert_int_equal(vg_store_create(f->db, kek, err, sizeof err), VG_STORE_OK);
    assert_int_equal(vg_store_open(f->db, kek, &f->st, err, sizeof err), VG_STORE_OK);
    struct vg_device_info d = {.id = "ox-1", .status = "active", .cert_serial = "01",
                               .enrolled_ms = 1000, .cert_not_after_ms = 9000};
    memset(d.cert_fingerprint, 'a', 64);
    assert_int_equal(vg_store_device_add(f->st, &d), VG_STORE_OK);
    snprintf(d.id, sizeof d.id, "bp-2");
    assert_int_equal(vg_store_device_add(f->st, &d), VG_STORE_OK);
    assert_int_equal(vg_store_patient_add(f->st, "P1", 1), VG_STORE_OK);
    assert_int_equal(vg_store_device_assign(f->st, "ox-1", "P1", 2000), VG_STORE_OK);
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

static void test_inventory(void **state)
{
    struct fx *f = *state;
    struct vg_device_info_update u = {.manufacturer = "Acme Medical", .model = "OX-200",
                                      .firmware = "2.1.0", .device_class = "pulse-oximeter"};
    assert_int_equal(vg_fleet_device_describe(f->st, "ox-1", &u, 5000), VG_STORE_OK);
    /* A later report that names only the firmware keeps the rest. */
    struct vg_device_info_update fw = {.firmware = "2.2.0", .location = "Ward 4 bed 12"};
    assert_int_equal(vg_fleet_device_describe(f->st, "ox-1", &fw, 6000), VG_STORE_OK);
    assert_int_equal(vg_fleet_device_key(f->st, "ox-1", "EC P-256", 256, 900), VG_STORE_OK);
    assert_int_equal(vg_fleet_device_seen(f->st, "ox-1", 7000, "127.0.0.1:5000", "TLSv1.3",
                                          "TLS_AES_256_GCM_SHA384"),
                     VG_STORE_OK);
    /* An older sighting does not move last-seen backwards. */
    assert_int_equal(vg_fleet_device_seen(f->st, "ox-1", 6500, "127.0.0.1:5001", "TLSv1.3", ""),
                     VG_STORE_OK);
    struct vg_device_inventory d;
    assert_int_equal(vg_fleet_device_get(f->st, "ox-1", 8000, &d), VG_STORE_OK);
    assert_string_equal(d.manufacturer, "Acme Medical");
    assert_string_equal(d.model, "OX-200");
    assert_string_equal(d.firmware, "2.2.0");
    assert_string_equal(d.device_class, "pulse-oximeter");
    assert_string_equal(d.location, "Ward 4 bed 12");
    assert_string_equal(d.patient, "P1");
    assert_string_equal(d.key_type, "EC P-256");
    assert_int_equal(d.key_bits, 256);
    assert_int_equal(d.last_seen_ms, 7000);
    assert_int_equal(d.info_ms, 6000);
    assert_int_equal(d.cert_not_after_ms, 9000);
    assert_false(d.quarantined);
    /* Unknown devices are refused, not created. */
    assert_int_equal(vg_fleet_device_describe(f->st, "nope", &u, 1), VG_STORE_NOT_FOUND);
    assert_int_equal(vg_fleet_device_seen(f->st, "nope", 1, "", "", ""), VG_STORE_NOT_FOUND);
    assert_int_equal(vg_fleet_device_get(f->st, "nope", 1, &d), VG_STORE_NOT_FOUND);
    assert_non_null(vg_fleet_class_lookup("infusion-pump"));
    assert_null(vg_fleet_class_lookup("toaster"));
}

static int count_cb(void *ctx, const struct vg_device_inventory *d)
{
    (void)d;
    (*(int *)ctx)++;
    return 0;
}

static void test_list_quarantine_revoke(void **state)
{
    struct fx *f = *state;
    int n = 0;
    assert_int_equal(vg_fleet_device_list(f->st, 1, count_cb, &n), 2);
    assert_int_equal(n, 2);
    assert_int_equal(vg_fleet_quarantined(f->st, "bp-2"), 0);
    assert_int_equal(vg_fleet_quarantine(f->st, "bp-2", "flood alarm", 100), VG_STORE_OK);
    assert_int_equal(vg_fleet_quarantine(f->st, "bp-2", "again", 200), VG_STORE_OK);
    struct vg_device_inventory d;
    assert_int_equal(vg_fleet_device_get(f->st, "bp-2", 300, &d), VG_STORE_OK);
    assert_true(d.quarantined);
    assert_int_equal(d.quarantined_ms, 100); /* the first time is kept */
    assert_string_equal(d.quarantine_reason, "flood alarm");
    assert_int_equal(vg_fleet_quarantined(f->st, "bp-2"), 1);
    assert_int_equal(vg_fleet_release(f->st, "bp-2"), VG_STORE_OK);
    assert_int_equal(vg_fleet_quarantined(f->st, "bp-2"), 0);
    assert_int_equal(vg_fleet_quarantine(f->st, "nope", "x", 1), VG_STORE_NOT_FOUND);
    assert_int_equal(vg_fleet_revoke(f->st, "bp-2"), VG_STORE_OK);
    struct vg_device_info info;
    assert_int_equal(vg_store_device_get(f->st, "bp-2", &info), VG_STORE_OK);
    assert_string_equal(info.status, "revoked");
}

static void test_training_suppress_alarms(void **state)
{
    struct fx *f = *state;
    assert_int_equal(vg_store_principal_add(f->st, "alice", "clinician", 1), VG_STORE_OK);
    assert_int_equal(vg_fleet_training_last(f->st, "alice", "hipaa"), 0);
    assert_int_equal(vg_fleet_training_add(f->st, "alice", "hipaa", 500, "admin", 600), VG_STORE_OK);
    assert_int_equal(vg_fleet_training_add(f->st, "alice", "hipaa", 400, "admin", 700), VG_STORE_OK);
    assert_int_equal(vg_fleet_training_last(f->st, "alice", "hipaa"), 500);
    assert_int_equal(vg_fleet_training_add(f->st, "mallory", "hipaa", 1, "admin", 1),
                     VG_STORE_NOT_FOUND);
    assert_int_equal(vg_fleet_suppress(f->st, "cert-expiring:ox-1", "replacement ordered", 9999,
                                       "admin", 1),
                     VG_STORE_OK);
    int64_t id = vg_fleet_alarm_raise(f->st, "ox-1", "flood", "messages", 900, 100, "quarantine", 10);
    assert_true(id > 0);
    assert_int_equal(vg_fleet_alarm_clear(f->st, "ox-1", "flood", 20), VG_STORE_OK);
    assert_int_equal(vg_fleet_alarm_clear(f->st, "ox-1", "flood", 30), VG_STORE_NOT_FOUND);
}

static int adv_cb(void *ctx, const char *id, const uint8_t *doc, size_t len)
{
    (void)doc;
    (void)len;
    assert_string_equal(id, "ICSMA-00-000-01");
    (*(int *)ctx)++;
    return 0;
}

static void test_advisories(void **state)
{
    struct fx *f = *state;
    const char doc[] = "{\"document\":{}}";
    assert_int_equal(vg_fleet_advisory_put(f->st, "ICSMA-00-000-01", "t", "1", "2024-01-01", "00",
                                           (const uint8_t *)doc, sizeof doc - 1, "admin", 1),
                     VG_STORE_OK);
    /* A newer revision replaces the older one. */
    assert_int_equal(vg_fleet_advisory_put(f->st, "ICSMA-00-000-01", "t", "2", "2024-02-01", "00",
                                           (const uint8_t *)doc, sizeof doc - 1, "admin", 2),
                     VG_STORE_OK);
    int n = 0;
    assert_int_equal(vg_fleet_advisory_each(f->st, adv_cb, &n), 1);
    assert_int_equal(n, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_inventory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_quarantine_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_training_suppress_alarms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_advisories, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
