/* bench_fill — fills a data directory with one patient's day of 1 Hz
 * readings for one code (86,400 sealed heart rates), through the same store
 * functions the writer uses, for bench/fhir_day.sh.
 *
 *   build/bench_fill DATADIR PATIENT DEVICE DAY_START_EPOCH_MS [N]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "crypto/crypto.h"
#include "store/store.h"

int main(int argc, char **argv)
{
    if (argc < 5 || vg_crypto_init() != 0) {
        fprintf(stderr, "usage: bench_fill DATADIR PATIENT DEVICE DAY_START_MS [N]\n");
        return 2;
    }
    long n = argc > 5 ? strtol(argv[5], NULL, 10) : 86400;
    int64_t start = strtoll(argv[4], NULL, 10);
    char path[4096], err[512];
    uint8_t kek[VG_KEY_BYTES];
    snprintf(path, sizeof path, "%s/keys/kek", argv[1]);
    if (vg_kek_load(path, kek, err, sizeof err) != 0) {
        fprintf(stderr, "bench_fill: %s\n", err);
        return 1;
    }
    snprintf(path, sizeof path, "%s/vigil.db", argv[1]);
    struct vg_store *st;
    if (vg_store_open(path, kek, &st, err, sizeof err) != 0) {
        fprintf(stderr, "bench_fill: %s\n", err);
        return 1;
    }
    struct vg_reading r = {"8867-4", "/min", 0, 0};
    for (long i = 0; i < n; i += 1000) {
        if (vg_store_begin(st) != 0)
            return 1;
        for (long k = i; k < i + 1000 && k < n; k++) {
            char id[VG_OBS_ID_MAX];
            r.value = 55 + (double)(k % 60) + 0.5;
            r.time_ms = start + k * 1000;
            if (vg_store_reading_put(st, argv[2], argv[3], &r, r.time_ms + 20, id) < 0) {
                fprintf(stderr, "bench_fill: %s\n", vg_store_errmsg(st));
                return 1;
            }
        }
        struct vg_audit_event ev = {0, "system", "bench.fill", "", "success", "benchmark data", ""};
        if (vg_audit_append(st, &ev) != 0 || vg_store_commit(st) != 0)
            return 1;
    }
    vg_store_close(st);
    return 0;
}
