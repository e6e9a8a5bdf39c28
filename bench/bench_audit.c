/* bench_audit — what the audit trail costs and how fast it verifies.
 *
 *   build/bench_audit [RECORDS]      (default 1,000,000)
 *   build/bench_audit --verify DB    (only: verify DB's chain, 3 runs)
 *
 * 1. appends RECORDS audit records (1,000 per transaction) and signs a
 *    checkpoint every 10,000, like the writer does;
 * 2. verifies the whole trail with vg_audit_verify_db (hashes, links and
 *    every checkpoint signature): records per second, target >= 1 M/s;
 * 3. ingestion: commits 200,000 sealed readings in batches of 100, once
 *    with the per-batch audit record the writer writes and once without,
 *    and prints the cost of auditing (target <= 10%).
 * Runs in a temporary directory on the same disk as /tmp; synchronous=FULL
 * as in production. Figures go to stdout; nothing is asserted.
 */
#include <inttypes.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/audit.h"
#include "crypto/crypto.h"
#include "store/store.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct vg_store *fresh_store(const char *dir, const char *name, const uint8_t *kek)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct vg_store *st = NULL;
    if (vg_store_create(path, kek, err, sizeof err) != 0 ||
        vg_store_open(path, kek, &st, err, sizeof err) != 0) {
        fprintf(stderr, "bench: %s\n", err);
        exit(1);
    }
    return st;
}

static double ingest(struct vg_store *st, long readings, int with_audit)
{
    struct vg_device_info d = {0};
    snprintf(d.id, sizeof d.id, "dev-1");
    snprintf(d.status, sizeof d.status, "active");
    snprintf(d.cert_serial, sizeof d.cert_serial, "01");
    memset(d.cert_fingerprint, 'a', 64);
    if (vg_store_patient_add(st, "P1", 1) || vg_store_device_add(st, &d) ||
        vg_store_device_assign(st, "dev-1", "P1", 1)) {
        fprintf(stderr, "bench: setup failed: %s\n", vg_store_errmsg(st));
        exit(1);
    }
    struct vg_reading r = {"8867-4", "/min", 72, 1795946400000};
    double t0 = now_s();
    for (long i = 0; i < readings; i += 100) {
        if (vg_store_begin(st) != 0)
            exit(1);
        for (int k = 0; k < 100; k++) {
            char id[VG_OBS_ID_MAX];
            r.value = 60 + (double)((i + k) % 40);
            r.time_ms += 1000;
            if (vg_store_reading_put(st, "P1", "dev-1", &r, r.time_ms, id) != 0)
                exit(1);
        }
        if (with_audit) {
            struct vg_audit_event ev = {0, "device:dev-1", "readings.store", "patient:P1",
                                        "success",
                                        "stored 100 readings from dev-1, effective"
                                        " 2026-11-29T10:00:00.000Z to 2026-11-29T10:01:39.000Z",
                                        "127.0.0.1:50000"};
            if (vg_audit_append(st, &ev) != 0)
                exit(1);
        }
        if (vg_store_commit(st) != 0)
            exit(1);
    }
    return (double)readings / (now_s() - t0);
}

static int verify_only(const char *path)
{
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        return 1;
    for (int run = 0; run < 3; run++) {
        struct vg_audit_verify_result res;
        double t0 = now_s();
        if (vg_audit_verify_db(db, NULL, NULL, &res) != 0)
            return 1;
        double dt = now_s() - t0;
        printf("verify %s: %lld records in %.3f s: %.2f M records/s\n", path,
               (long long)res.records, dt, (double)res.records / dt / 1e6);
    }
    sqlite3_close(db);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--verify"))
        return verify_only(argv[2]);
    long records = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
    if (records < 1000 || vg_crypto_init() != 0)
        return 2;
    char dir[] = "/tmp/vigil-bench-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    uint8_t kek[VG_KEY_BYTES], pk[VG_AUDIT_PK_BYTES], sk[VG_AUDIT_SK_BYTES];
    vg_random(kek, sizeof kek);
    crypto_sign_keypair(pk, sk);

    /* 1. append */
    struct vg_store *st = fresh_store(dir, "audit.db", kek);
    double t0 = now_s();
    for (long i = 0; i < records; i += 1000) {
        if (vg_store_begin(st) != 0)
            return 1;
        for (long k = 0; k < 1000 && i + k < records; k++) {
            char detail[96];
            snprintf(detail, sizeof detail, "stored 10 readings from dev-%ld", (i + k) % 500);
            struct vg_audit_event ev = {0, "device:dev-1", "readings.store", "patient:P1",
                                        "success", detail, "127.0.0.1:50000"};
            if (vg_audit_append(st, &ev) != 0)
                return 1;
        }
        if (vg_store_commit(st) != 0)
            return 1;
        if ((i + 1000) % 10000 == 0) {
            struct vg_audit_checkpoint cp;
            if (vg_audit_checkpoint_write(st, sk, NULL, &cp) < 0)
                return 1;
        }
    }
    double append_rate = (double)records / (now_s() - t0);

    /* 2. verify */
    struct vg_audit_verify_result res;
    t0 = now_s();
    int rc = vg_audit_verify_db(vg_store_db(st), pk, NULL, &res);
    double verify_s = now_s() - t0;
    vg_store_close(st);
    if (getenv("BENCH_KEEP_DB")) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "cp %s/audit.db %s", dir, getenv("BENCH_KEEP_DB"));
        if (system(cmd) != 0)
            return 1;
    }
    if (rc != 0 || !res.ok) {
        fprintf(stderr, "bench: verification failed: %s\n", res.why);
        return 1;
    }

    /* 3. ingestion with and without the audit record */
    long readings = 200000;
    struct vg_store *a = fresh_store(dir, "without.db", kek);
    double without = ingest(a, readings, 0);
    vg_store_close(a);
    struct vg_store *b = fresh_store(dir, "with.db", kek);
    double with = ingest(b, readings, 1);
    vg_store_close(b);

    printf("audit append:  %ld records in batches of 1000: %.0f records/s\n", records, append_rate);
    printf("audit verify:  %lld records, %lld checkpoints in %.3f s: %.2f M records/s"
           " (target >= 1.00 M/s: %s)\n",
           (long long)res.records, (long long)res.checkpoints, verify_s,
           (double)res.records / verify_s / 1e6,
           (double)res.records / verify_s >= 1e6 ? "met" : "NOT met");
    printf("ingest:        %ld sealed readings, batches of 100: %.0f/s without audit,"
           " %.0f/s with audit: cost %.1f%% (target <= 10%%: %s)\n",
           readings, without, with, 100.0 * (1.0 - with / without),
           1.0 - with / without <= 0.10 ? "met" : "NOT met");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
