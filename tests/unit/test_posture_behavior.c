/* Unit tests for posture/behavior: simulated devices driven into each alarm
 * (flood, brute force, foreign topics, oversized payloads, many addresses),
 * alarm after exactly N windows and not at N-1, clear after exactly M,
 * percentile rules against the device's own history, and the tracking cap.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "posture/behavior.h"

#define W 60000LL                  /* window length */
#define T0 1795946400000LL         /* a window boundary (divisible by W) */
#define AT(w) (T0 + (w) * W)       /* start of window w */

struct seen {
    struct vg_behavior_event ev[64];
    char device[64][VG_ID_MAX + 1];
    size_t n;
};

static void collect(void *ctx, const struct vg_behavior_event *ev)
{
    struct seen *s = ctx;
    if (s->n == 64)
        fail_msg("too many events");
    s->ev[s->n] = *ev;
    snprintf(s->device[s->n], sizeof s->device[0], "%s", ev->device ? ev->device : "");
    s->n++;
}

static struct vg_behavior_rule rule(const char *name, enum vg_metric m, enum vg_cmp c,
                                    double threshold, unsigned alarm_after, unsigned clear_after,
                                    enum vg_mitigation mit)
{
    struct vg_behavior_rule r = {.metric = m, .cmp = c, .threshold = threshold,
                                 .alarm_after = alarm_after, .clear_after = clear_after,
                                 .mitigation = mit};
    snprintf(r.name, sizeof r.name, "%s", name);
    return r;
}

static struct vg_behavior *engine(const struct vg_behavior_rule *rules, size_t n,
                                  unsigned history, unsigned min_history, size_t max_devices)
{
    struct vg_behavior_config cfg = {.window_ms = W, .history_windows = history,
                                     .min_history = min_history, .max_devices = max_devices,
                                     .evict_idle_ms = 10 * W, .rules = rules, .n_rules = n};
    struct vg_behavior *e = NULL;
    char err[200] = "";
    if (vg_behavior_create(&cfg, &e, err, sizeof err) != 0)
        fail_msg("create: %s", err);
    return e;
}

static void send(struct vg_behavior *e, const char *dev, unsigned n, size_t bytes, int64_t t)
{
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(vg_behavior_record_message(e, dev, bytes, t), 0);
}

/* Closes window w (ticks at the start of w+1); returns the events. */
static size_t close_window(struct vg_behavior *e, int64_t w, struct seen *s)
{
    s->n = 0;
    size_t n = vg_behavior_tick(e, AT(w + 1), collect, s);
    assert_int_equal(n, s->n);
    return n;
}

static void test_flood_alarm_after_n_and_clear_after_m(void **state)
{
    (void)state;
    struct vg_behavior_rule r = rule("flood", VG_METRIC_MESSAGES, VG_CMP_GT, 100, 3, 2,
                                     VG_MITIGATE_QUARANTINE);
    struct vg_behavior *e = engine(&r, 1, 10, 5, 16);
    struct seen s;
    int64_t w = 0;
    /* Two flooding windows: N-1, no alarm yet. */
    for (; w < 2; w++) {
        send(e, "pulseox-1", 150, 80, AT(w));
        assert_int_equal(close_window(e, w, &s), 0);
    }
    /* The third raises exactly one alarm, with what decided it. */
    send(e, "pulseox-1", 150, 80, AT(w));
    assert_int_equal(close_window(e, w, &s), 1);
    assert_int_equal(s.ev[0].change, VG_BEHAVIOR_RAISED);
    assert_string_equal(s.device[0], "pulseox-1");
    assert_string_equal(s.ev[0].rule->name, "flood");
    assert_int_equal(s.ev[0].rule->mitigation, VG_MITIGATE_QUARANTINE);
    assert_true(s.ev[0].value == 150 && s.ev[0].threshold == 100);
    assert_true(s.ev[0].window_start_ms == AT(2) && s.ev[0].window_end_ms == AT(3));
    w++;
    /* Still flooding: no second RAISED. */
    send(e, "pulseox-1", 150, 80, AT(w));
    assert_int_equal(close_window(e, w, &s), 0);
    w++;
    /* Back to normal: M-1 quiet windows keep the alarm, the M-th clears it. */
    send(e, "pulseox-1", 10, 80, AT(w));
    assert_int_equal(close_window(e, w, &s), 0);
    struct vg_behavior_stats st;
    vg_behavior_stats(e, &st);
    assert_int_equal(st.alarms_active, 1);
    w++;
    send(e, "pulseox-1", 10, 80, AT(w));
    assert_int_equal(close_window(e, w, &s), 1);
    assert_int_equal(s.ev[0].change, VG_BEHAVIOR_CLEARED);
    assert_true(s.ev[0].value == 10);
    vg_behavior_stats(e, &st);
    assert_int_equal(st.alarms_active, 0);
    vg_behavior_free(e);
}

/* Exactly at the threshold is not over it; an interrupted streak starts
 * again. */
static void test_flood_boundary_and_interrupted_streak(void **state)
{
    (void)state;
    struct vg_behavior_rule r = rule("flood", VG_METRIC_MESSAGES, VG_CMP_GT, 100, 3, 2,
                                     VG_MITIGATE_NOTIFY);
    struct vg_behavior *e = engine(&r, 1, 10, 5, 16);
    struct seen s;
    int64_t w = 0;
    for (; w < 6; w++) {
        send(e, "bp-1", 100, 10, AT(w));
        assert_int_equal(close_window(e, w, &s), 0);
    }
    unsigned pattern[] = {101, 101, 5, 101, 101, 5};
    for (size_t i = 0; i < 6; i++, w++) {
        send(e, "bp-1", pattern[i], 10, AT(w));
        assert_int_equal(close_window(e, w, &s), 0);
    }
    vg_behavior_free(e);
}

static void test_brute_force(void **state)
{
    (void)state;
    struct vg_behavior_rule rules[2] = {
        rule("auth-brute", VG_METRIC_AUTH_FAILURES, VG_CMP_GE, 5, 1, 2, VG_MITIGATE_REVOKE),
        rule("reconnect-storm", VG_METRIC_CONNECT_ATTEMPTS, VG_CMP_GT, 20, 2, 3,
             VG_MITIGATE_NOTIFY),
    };
    struct vg_behavior *e = engine(rules, 2, 10, 5, 16);
    struct seen s;
    /* 4 failures: under the bar. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(vg_behavior_record_auth_failure(e, "pump-3", AT(0)), 0);
    assert_int_equal(close_window(e, 0, &s), 0);
    /* 5 failures: alarm at once (alarm_after 1), mitigation revoke. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(vg_behavior_record_auth_failure(e, "pump-3", AT(1)), 0);
    assert_int_equal(close_window(e, 1, &s), 1);
    assert_int_equal(s.ev[0].change, VG_BEHAVIOR_RAISED);
    assert_string_equal(s.ev[0].rule->name, "auth-brute");
    assert_int_equal(s.ev[0].rule->mitigation, VG_MITIGATE_REVOKE);
    /* 30 connection attempts in two windows in a row. */
    for (int64_t w = 2; w < 4; w++) {
        for (int i = 0; i < 30; i++)
            assert_int_equal(vg_behavior_record_connect_attempt(e, "pump-3", AT(w)), 0);
        /* The second also clears auth-brute (2 windows without failures). */
        assert_int_equal(close_window(e, w, &s), w == 2 ? 0 : 2);
    }
    int raised = 0, cleared = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (s.ev[i].change == VG_BEHAVIOR_RAISED &&
            !strcmp(s.ev[i].rule->name, "reconnect-storm") && s.ev[i].value == 30)
            raised = 1;
        if (s.ev[i].change == VG_BEHAVIOR_CLEARED && !strcmp(s.ev[i].rule->name, "auth-brute"))
            cleared = 1;
    }
    assert_true(raised && cleared);
    vg_behavior_free(e);
}

static void test_foreign_topics(void **state)
{
    (void)state;
    struct vg_behavior_rule r = rule("foreign-topics", VG_METRIC_REFUSED_PUBLISHES, VG_CMP_GT,
                                     0, 2, 2, VG_MITIGATE_QUARANTINE);
    struct vg_behavior *e = engine(&r, 1, 10, 5, 16);
    struct seen s;
    /* Normal traffic never touches the metric. */
    send(e, "mon-7", 20, 100, AT(0));
    assert_int_equal(close_window(e, 0, &s), 0);
    assert_int_equal(vg_behavior_record_refused_publish(e, "mon-7", AT(1)), 0);
    assert_int_equal(close_window(e, 1, &s), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(vg_behavior_record_refused_publish(e, "mon-7", AT(2)), 0);
    assert_int_equal(close_window(e, 2, &s), 1);
    assert_int_equal(s.ev[0].change, VG_BEHAVIOR_RAISED);
    assert_true(s.ev[0].value == 3);
    struct vg_behavior_alarm a[4];
    assert_int_equal(vg_behavior_alarms(e, a, 4), 1);
    assert_string_equal(a[0].device, "mon-7");
    assert_string_equal(a[0].rule, "foreign-topics");
    assert_int_equal(a[0].metric, VG_METRIC_REFUSED_PUBLISHES);
    assert_int_equal(a[0].cmp, VG_CMP_GT);
    assert_int_equal(a[0].mitigation, VG_MITIGATE_QUARANTINE);
    assert_true(a[0].value == 3 && a[0].threshold == 0 && a[0].since_ms == AT(3));
    vg_behavior_free(e);
}

static void test_oversized_payload(void **state)
{
    (void)state;
    struct vg_behavior_rule r = rule("oversized", VG_METRIC_MAX_PAYLOAD, VG_CMP_GT, 4096, 1, 1,
                                     VG_MITIGATE_NOTIFY);
    struct vg_behavior *e = engine(&r, 1, 10, 5, 16);
    struct seen s;
    /* Many payloads adding up to far more than 4096 bytes: not one too big. */
    send(e, "cuff-2", 200, 4096, AT(0));
    assert_int_equal(close_window(e, 0, &s), 0);
    send(e, "cuff-2", 50, 100, AT(1));
    send(e, "cuff-2", 1, 70000, AT(1));
    assert_int_equal(close_window(e, 1, &s), 1);
    assert_int_equal(s.ev[0].change, VG_BEHAVIOR_RAISED);
    assert_true(s.ev[0].value == 70000);
    vg_behavior_free(e);
}

/* Distinct addresses are counted once each, exactly up to the set size,
 * then saturate one above it. */
static void test_source_addresses(void **state)
{
    (void)state;
    struct vg_behavior_rule r = rule("roaming", VG_METRIC_SOURCE_ADDRS, VG_CMP_GT, 2, 1, 1,
                                     VG_MITIGATE_NOTIFY);
    struct vg_behavior *e = engine(&r, 1, 10, 5, 16);
    struct seen s;
    unsigned char a[4] = {10, 0, 0, 1}, b[4] = {10, 0, 0, 2}, c[4] = {10, 0, 0, 3};
    for (int i = 0; i < 50; i++) {
        assert_int_equal(vg_behavior_record_source(e, "mon-1", a, 4, AT(0)), 0);
        assert_int_equal(vg_behavior_record_source(e, "mon-1", b, 4, AT(0)), 0);
    }
    assert_int_equal(close_window(e, 0, &s), 0); /* 2 distinct, not > 2 */
    assert_int_equal(vg_behavior_record_source(e, "mon-1", a, 4, AT(1)), 0);
    assert_int_equal(vg_behavior_record_source(e, "mon-1", b, 4, AT(1)), 0);
    assert_int_equal(vg_behavior_record_source(e, "mon-1", c, 4, AT(1)), 0);
    assert_int_equal(close_window(e, 1, &s), 1);
    assert_true(s.ev[0].value == 3);
    for (unsigned char i = 0; i < 40; i++) {
        unsigned char v6[16] = {0x20, 0x01, 0x0d, 0xb8};
        v6[15] = i;
        assert_int_equal(vg_behavior_record_source(e, "mon-1", v6, 16, AT(2)), 0);
    }
    assert_int_equal(close_window(e, 2, &s), 0); /* still in alarm */
    struct vg_behavior_alarm al;
    assert_int_equal(vg_behavior_alarms(e, &al, 1), 1);
    /* An address of no length or absurd length is refused. */
    assert_int_equal(vg_behavior_record_source(e, "mon-1", a, 0, AT(3)), -1);
    assert_int_equal(vg_behavior_record_source(e, "mon-1", a, 33, AT(3)), -1);
    vg_behavior_free(e);

    /* Saturation value: exactly VG_BEHAVIOR_ADDR_SET + 1. */
    struct vg_behavior_rule r2 = rule("many", VG_METRIC_SOURCE_ADDRS, VG_CMP_GE,
                                      VG_BEHAVIOR_ADDR_SET + 1, 1, 1, VG_MITIGATE_NOTIFY);
    e = engine(&r2, 1, 10, 5, 16);
    for (unsigned char i = 0; i < VG_BEHAVIOR_ADDR_SET; i++) {
        unsigned char v4[4] = {192, 168, 0, i};
        assert_int_equal(vg_behavior_record_source(e, "mon-2", v4, 4, AT(0)), 0);
    }
    assert_int_equal(close_window(e, 0, &s), 0); /* exactly 8: not 9 */
    for (unsigned char i = 0; i < 100; i++) {
        unsigned char v4[4] = {192, 168, 1, i};
        assert_int_equal(vg_behavior_record_source(e, "mon-2", v4, 4, AT(1)), 0);
    }
    assert_int_equal(close_window(e, 1, &s), 1);
    assert_true(s.ev[0].value == VG_BEHAVIOR_ADDR_SET + 1);
    vg_behavior_free(e);
}

/* A percentile rule compares each device with its own past: the same
 * traffic is an anomaly for one and normal for another. */
static void test_percentile_own_history(void **state)
{
    (void)state;
    struct vg_behavior_rule r = rule("unusual-volume", VG_METRIC_MESSAGES, VG_CMP_GT, 0, 2, 2,
                                     VG_MITIGATE_NOTIFY);
    r.percentile = 99;
    struct vg_behavior *e = engine(&r, 1, 20, 5, 16);
    struct seen s;
    int64_t w = 0;
    unsigned quiet[5] = {8, 12, 10, 9, 11}, busy[5] = {990, 1010, 1000, 1005, 995};
    for (; w < 5; w++) {
        send(e, "quiet", quiet[w], 10, AT(w));
        send(e, "busy", busy[w], 10, AT(w));
        assert_int_equal(close_window(e, w, &s), 0);
    }
    /* 50 messages: far above quiet's p99 (12), far below busy's. */
    for (int i = 0; i < 2; i++, w++) {
        send(e, "quiet", 50, 10, AT(w));
        send(e, "busy", 50, 10, AT(w));
        size_t n = close_window(e, w, &s);
        assert_int_equal(n, (size_t)i); /* alarm on the second window only */
    }
    assert_string_equal(s.device[0], "quiet");
    assert_true(s.ev[0].threshold == 12 && s.ev[0].value == 50);
    /* The flood is not learned: however long it lasts, the alarm stays. */
    for (int i = 0; i < 30; i++, w++) {
        send(e, "quiet", 50, 10, AT(w));
        send(e, "busy", 1000, 10, AT(w));
        assert_int_equal(close_window(e, w, &s), 0);
    }
    /* busy above its own p99 (1010) twice: its own alarm. */
    for (int i = 0; i < 2; i++, w++) {
        send(e, "quiet", 10, 10, AT(w));
        send(e, "busy", 1500, 10, AT(w));
        close_window(e, w, &s);
    }
    /* quiet cleared after 2 normal windows; busy raised. */
    assert_int_equal(s.n, 2);
    for (size_t i = 0; i < 2; i++) {
        if (!strcmp(s.device[i], "quiet"))
            assert_int_equal(s.ev[i].change, VG_BEHAVIOR_CLEARED);
        else
            /* its history is now the 1000s it sent (the ring holds 20) */
            assert_true(s.ev[i].change == VG_BEHAVIOR_RAISED && s.ev[i].threshold == 1000);
    }
    vg_behavior_free(e);
}

/* A one-window blip that raises no alarm is learned; without it the same
 * traffic afterwards would alarm. */
static void test_percentile_learns_blips(void **state)
{
    (void)state;
    struct vg_behavior_rule r = rule("unusual-volume", VG_METRIC_MESSAGES, VG_CMP_GT, 0, 2, 1,
                                     VG_MITIGATE_NOTIFY);
    r.percentile = 99;
    for (int blip = 0; blip < 2; blip++) {
        struct vg_behavior *e = engine(&r, 1, 20, 5, 16);
        struct seen s;
        int64_t w = 0;
        for (; w < 5; w++) {
            send(e, "d1", 10, 10, AT(w));
            close_window(e, w, &s);
        }
        send(e, "d1", blip ? 30 : 10, 10, AT(w));
        assert_int_equal(close_window(e, w, &s), 0);
        w++;
        send(e, "d1", 10, 10, AT(w));
        assert_int_equal(close_window(e, w, &s), 0);
        w++;
        size_t alarms = 0;
        for (int i = 0; i < 2; i++, w++) {
            send(e, "d1", 25, 10, AT(w));
            alarms += close_window(e, w, &s);
        }
        assert_int_equal(alarms, blip ? 0 : 1);
        vg_behavior_free(e);
    }
}

/* No percentile alarm before min_history windows of history; the first
 * window after it counts. Factor scales the percentile. */
static void test_percentile_min_history(void **state)
{
    (void)state;
    struct vg_behavior_rule r = rule("x3-median", VG_METRIC_BYTES, VG_CMP_GT, 0, 1, 1,
                                     VG_MITIGATE_NOTIFY);
    r.percentile = 50;
    r.factor = 3;
    struct vg_behavior *e = engine(&r, 1, 20, 4, 16);
    struct seen s;
    int64_t w = 0;
    /* Windows 0-3 build the history (4 windows); a huge one cannot alarm. */
    for (; w < 3; w++) {
        send(e, "d", 10, 100, AT(w)); /* 1000 bytes */
        assert_int_equal(close_window(e, w, &s), 0);
    }
    send(e, "d", 10, 10000, AT(w)); /* 100000 bytes with 3 windows of history */
    assert_int_equal(close_window(e, w, &s), 0);
    w++;
    /* History now 1000, 1000, 1000, 100000: median (nearest rank) 1000, x3 = 3000. */
    send(e, "d", 30, 100, AT(w)); /* 3000: not over */
    assert_int_equal(close_window(e, w, &s), 0);
    w++;
    send(e, "d", 31, 100, AT(w)); /* 3100: over */
    assert_int_equal(close_window(e, w, &s), 1);
    assert_true(s.ev[0].threshold == 3000 && s.ev[0].value == 3100);
    vg_behavior_free(e);
}

/* A device first seen mid-window: its partial window proves a flood but not
 * silence. */
static void test_partial_first_window(void **state)
{
    (void)state;
    struct vg_behavior_rule rules[2] = {
        rule("silent", VG_METRIC_MESSAGES, VG_CMP_LT, 1, 1, 1, VG_MITIGATE_NOTIFY),
        rule("flood", VG_METRIC_MESSAGES, VG_CMP_GT, 100, 1, 1, VG_MITIGATE_NOTIFY),
    };
    struct vg_behavior *e = engine(rules, 2, 10, 5, 16);
    struct seen s;
    assert_int_equal(vg_behavior_tick(e, AT(0), collect, &s), 0); /* starts the clock */
    assert_int_equal(vg_behavior_record_connect_attempt(e, "late", AT(0) + W / 2), 0);
    send(e, "flooder", 500, 10, AT(0) + W - 1);
    assert_int_equal(close_window(e, 0, &s), 1);
    assert_string_equal(s.device[0], "flooder");
    assert_string_equal(s.ev[0].rule->name, "flood");
    /* The next, full window with no message is silence. */
    assert_int_equal(close_window(e, 1, &s), 3); /* late silent, flooder silent + flood cleared */
    vg_behavior_free(e);
}

/* A late tick closes every elapsed window, so streaks count real time. */
static void test_late_tick(void **state)
{
    (void)state;
    struct vg_behavior_rule r = rule("silent", VG_METRIC_MESSAGES, VG_CMP_LT, 1, 3, 1,
                                     VG_MITIGATE_NOTIFY);
    struct vg_behavior *e = engine(&r, 1, 10, 5, 16);
    struct seen s = {0};
    send(e, "mon", 5, 10, AT(0));
    assert_int_equal(vg_behavior_tick(e, AT(1), collect, &s), 0);
    s.n = 0;
    assert_int_equal(vg_behavior_tick(e, AT(3), collect, &s), 0); /* 2 silent windows */
    assert_int_equal(vg_behavior_tick(e, AT(4), collect, &s), 1); /* the 3rd */
    /* A day late: bounded work, the alarm still stands, nothing new. */
    s.n = 0;
    assert_int_equal(vg_behavior_tick(e, AT(4) + 86400000LL, collect, &s), 0);
    struct vg_behavior_stats st;
    vg_behavior_stats(e, &st);
    assert_int_equal(st.alarms_active, 1);
    assert_true(st.windows_closed < 100);
    /* And the windows still line up afterwards. */
    send(e, "mon", 5, 10, AT(4) + 86400000LL);
    assert_int_equal(vg_behavior_tick(e, AT(5) + 86400000LL, collect, &s), 1);
    assert_int_equal(s.ev[0].change, VG_BEHAVIOR_CLEARED);
    vg_behavior_free(e);
}

/* At the cap, a new device replaces an idle one without an alarm, never an
 * active or alarmed one; otherwise its events are dropped and reported. */
static void test_tracking_cap(void **state)
{
    (void)state;
    struct vg_behavior_rule r = rule("flood", VG_METRIC_MESSAGES, VG_CMP_GT, 100, 1, 5,
                                     VG_MITIGATE_NOTIFY);
    struct vg_behavior *e = engine(&r, 1, 10, 5, 2);
    struct seen s;
    send(e, "dev-a", 1, 10, AT(0));
    send(e, "dev-b", 1, 10, AT(0));
    assert_int_equal(vg_behavior_record_message(e, "dev-c", 10, AT(0)), -1);
    assert_int_equal(vg_behavior_record_auth_failure(e, "dev-c", AT(0)), -1);
    assert_int_equal(close_window(e, 0, &s), 1);
    assert_int_equal(s.ev[0].change, VG_BEHAVIOR_DROPPED);
    assert_null(s.ev[0].device);
    assert_int_equal(s.ev[0].dropped, 2);
    struct vg_behavior_stats st;
    vg_behavior_stats(e, &st);
    assert_int_equal(st.tracked, 2);
    assert_int_equal(st.dropped_events, 2);
    /* The drop count is per window. */
    assert_int_equal(close_window(e, 1, &s), 0);

    /* dev-b keeps talking and floods (alarm); dev-a stays idle 10 windows. */
    for (int64_t w = 2; w < 11; w++) {
        send(e, "dev-b", w == 2 ? 200 : 1, 10, AT(w));
        close_window(e, w, &s);
    }
    /* Only 9 windows idle: dev-a not yet evictable. */
    assert_int_equal(vg_behavior_record_message(e, "dev-c", 10, AT(9) + 1), -1);
    /* 10 windows idle: dev-c takes dev-a's place. */
    assert_int_equal(vg_behavior_record_message(e, "dev-c", 10, AT(10)), 0);
    vg_behavior_stats(e, &st);
    assert_int_equal(st.tracked, 2);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(vg_behavior_forget(e, "dev-a"), 0);
    assert_int_equal(vg_behavior_forget(e, "dev-c"), 1);
    vg_behavior_free(e);

    /* A device in alarm is not replaced, however long it has been idle. */
    struct vg_behavior_rule r2 = rule("flood", VG_METRIC_MESSAGES, VG_CMP_GT, 100, 1, 1000,
                                      VG_MITIGATE_NOTIFY);
    e = engine(&r2, 1, 10, 5, 1);
    send(e, "dev-b", 200, 10, AT(0));
    assert_int_equal(close_window(e, 0, &s), 1);
    assert_int_equal(vg_behavior_record_message(e, "dev-d", 10, AT(100)), -1);
    vg_behavior_stats(e, &st);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(vg_behavior_alarms(e, NULL, 0), 1);
    /* Invalid ids are never tracked. */
    assert_int_equal(vg_behavior_record_message(e, NULL, 1, AT(100)), -1);
    assert_int_equal(vg_behavior_record_message(e, "", 1, AT(100)), -1);
    char longid[VG_ID_MAX + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_equal(vg_behavior_record_message(e, longid, 1, AT(100)), -1);
    vg_behavior_free(e);
}

static void test_forget(void **state)
{
    (void)state;
    struct vg_behavior_rule r = rule("flood", VG_METRIC_MESSAGES, VG_CMP_GT, 100, 1, 1,
                                     VG_MITIGATE_NOTIFY);
    struct vg_behavior *e = engine(&r, 1, 10, 5, 4);
    struct seen s;
    send(e, "x", 200, 1, AT(0));
    assert_int_equal(close_window(e, 0, &s), 1);
    assert_int_equal(vg_behavior_forget(e, "x"), 1);
    assert_int_equal(vg_behavior_forget(e, "x"), 0);
    struct vg_behavior_stats st;
    vg_behavior_stats(e, &st);
    assert_int_equal(st.alarms_active, 0);
    assert_int_equal(st.tracked, 0);
    assert_int_equal(close_window(e, 1, &s), 0);
    vg_behavior_free(e);
}

/* Many devices through the hash table and activity list: each keeps its own
 * counts. */
static void test_many_devices(void **state)
{
    (void)state;
    struct vg_behavior_rule r = rule("flood", VG_METRIC_MESSAGES, VG_CMP_GT, 5, 1, 1,
                                     VG_MITIGATE_NOTIFY);
    struct vg_behavior *e = engine(&r, 1, 10, 5, 1000);
    char id[32];
    for (unsigned round = 0; round < 7; round++)
        for (unsigned i = 0; i < 1000; i++) {
            snprintf(id, sizeof id, "dev-%u", i);
            if (round < (i % 2 ? 6u : 5u))
                assert_int_equal(vg_behavior_record_message(e, id, 1, AT(0)), 0);
        }
    size_t n = vg_behavior_tick(e, AT(1), NULL, NULL);
    assert_int_equal(n, 500);
    vg_behavior_free(e);
}

static void test_config_rejects(void **state)
{
    (void)state;
    struct vg_behavior_rule good = rule("ok", VG_METRIC_MESSAGES, VG_CMP_GT, 1, 1, 1,
                                        VG_MITIGATE_NOTIFY);
    char err[200];
    assert_int_equal(vg_behavior_rule_check(&good, err, sizeof err), 0);
    struct vg_behavior_rule bad[9];
    for (int i = 0; i < 9; i++)
        bad[i] = good;
    bad[0].name[0] = '\0';
    snprintf(bad[1].name, sizeof bad[1].name, "has space");
    bad[2].metric = VG_METRIC_COUNT;
    bad[3].cmp = (enum vg_cmp)7;
    bad[4].percentile = 101;
    bad[5].threshold = NAN;
    bad[6].alarm_after = 0;
    bad[7].clear_after = VG_BEHAVIOR_STREAK_MAX + 1;
    bad[8].factor = -1;
    for (int i = 0; i < 9; i++) {
        err[0] = '\0';
        if (vg_behavior_rule_check(&bad[i], err, sizeof err) != -1)
            fail_msg("bad rule %d accepted", i);
        assert_true(err[0] != '\0');
    }
    struct vg_behavior_config base = {.window_ms = W, .history_windows = 10, .min_history = 5,
                                      .max_devices = 10, .rules = &good, .n_rules = 1};
    struct vg_behavior_config c[7];
    for (int i = 0; i < 7; i++)
        c[i] = base;
    c[0].window_ms = 0;
    c[1].history_windows = 0;
    c[2].history_windows = VG_BEHAVIOR_HISTORY_MAX + 1;
    c[3].min_history = 11;
    c[4].max_devices = 0;
    c[5].n_rules = VG_BEHAVIOR_RULES_MAX + 1;
    c[6].rules = &bad[4];
    struct vg_behavior *e = NULL;
    for (int i = 0; i < 7; i++) {
        if (vg_behavior_create(&c[i], &e, err, sizeof err) != -1)
            fail_msg("bad config %d accepted", i);
        assert_null(e);
    }
    assert_int_equal(vg_behavior_create(&base, &e, err, sizeof err), 0);
    vg_behavior_free(e);
    enum vg_metric m;
    assert_int_equal(vg_metric_parse("refused-publishes", &m), 0);
    assert_int_equal(m, VG_METRIC_REFUSED_PUBLISHES);
    assert_int_equal(vg_metric_parse("nope", &m), -1);
    assert_string_equal(vg_metric_name(VG_METRIC_SOURCE_ADDRS), "source-addresses");
    assert_string_equal(vg_mitigation_name(VG_MITIGATE_REVOKE), "revoke");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flood_alarm_after_n_and_clear_after_m),
        cmocka_unit_test(test_flood_boundary_and_interrupted_streak),
        cmocka_unit_test(test_brute_force),
        cmocka_unit_test(test_foreign_topics),
        cmocka_unit_test(test_oversized_payload),
        cmocka_unit_test(test_source_addresses),
        cmocka_unit_test(test_percentile_own_history),
        cmocka_unit_test(test_percentile_learns_blips),
        cmocka_unit_test(test_percentile_min_history),
        cmocka_unit_test(test_partial_first_window),
        cmocka_unit_test(test_late_tick),
        cmocka_unit_test(test_tracking_cap),
        cmocka_unit_test(test_forget),
        cmocka_unit_test(test_many_devices),
        cmocka_unit_test(test_config_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
