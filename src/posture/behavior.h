/* posture/behavior — per-device behaviour metrics, rules and alarms, in the
 * manner of AWS IoT Device Defender's "Detect".
 *
 * The broker feeds events as they happen (a message, a connection attempt,
 * an authorization failure, a refused publish, a source address). The engine
 * counts them per device in the open window; vg_behavior_tick closes windows
 * and evaluates every rule on every tracked device, reporting each alarm that
 * is raised or cleared through a callback. The caller publishes the alert,
 * audits it and executes the rule's mitigation (notify, quarantine, revoke):
 * the engine only decides, it never acts.
 *
 * Metrics per device per window: messages, bytes, largest payload,
 * connection attempts, authorization failures, refused publishes and distinct
 * source addresses. Distinct addresses are counted exactly up to
 * VG_BEHAVIOR_ADDR_SET; beyond that the metric reads VG_BEHAVIOR_ADDR_SET + 1
 * ("more than the set holds"), so a rule can still fire and memory stays
 * fixed.
 *
 * Rules: metric, comparison, and either a fixed threshold or the p-th
 * percentile (nearest rank, times 'factor') of the device's own last
 * 'history_windows' windows of that metric. A percentile rule is not
 * evaluated — it counts as not violating — until the device has
 * 'min_history' windows of that metric in its history. An alarm is raised
 * after 'alarm_after' consecutive violating windows and cleared after
 * 'clear_after' consecutive non-violating ones.
 *
 * What the history learns (so an attack does not become the baseline): a
 * window that violates any rule on a metric is held back; if the streak ends
 * without an alarm (a blip) the held windows and the current one are learned;
 * if an alarm is raised they are discarded, and nothing is learned for that
 * metric while any rule on it is in alarm. A lasting, legitimate change of
 * behaviour therefore stays in alarm until an operator accepts it with
 * vg_behavior_forget (which drops the device's history and alarms).
 *
 * The first window a device is seen in is partial: it is evaluated for
 * upper-bound rules (> and >=, which a partial window can only under-count),
 * not for lower-bound ones (< and <=), and it is not learned.
 *
 * Costs: each record_* call hashes the device id (SipHash, keyed per engine
 * so ids cannot be chosen to collide), walks one short bucket chain and
 * updates counters — O(1) and no allocation once the device is tracked. A
 * device's state is one allocation made when it is first seen (or the
 * memory of an evicted device, reused). At most 'max_devices' devices are
 * tracked. At the cap, a new device takes the place of the least recently
 * active device (activity order is kept per window) if that device has been
 * idle for 'evict_idle_ms' and has no alarm (up to VG_BEHAVIOR_EVICT_SCAN
 * candidates are looked at); otherwise
 * the new device's events are dropped, counted, and reported once per window
 * as a VG_BEHAVIOR_DROPPED event — never silently.
 *
 * Windows are aligned to multiples of window_ms since the epoch. Events are
 * counted in the open window; call vg_behavior_tick at least once a second so
 * windows close on time. A tick that comes late closes every elapsed window
 * (the later ones empty), up to the number needed to settle every rule and
 * history, then jumps ahead.
 *
 * Thread-safety: none. One thread (the broker's I/O thread) owns the engine
 * and makes every call; the callback runs on that thread inside
 * vg_behavior_tick and must not call the engine.
 *
 * Time is always an input (now_ms); the engine reads no clock.
 */
#ifndef VG_POSTURE_BEHAVIOR_H
#define VG_POSTURE_BEHAVIOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define VG_BEHAVIOR_RULES_MAX 32
#define VG_BEHAVIOR_RULE_NAME_MAX 48
#define VG_BEHAVIOR_HISTORY_MAX 1440  /* windows of history per metric */
#define VG_BEHAVIOR_STREAK_MAX 1000   /* largest alarm_after / clear_after */
#define VG_BEHAVIOR_ADDR_SET 8        /* distinct addresses counted exactly */
#define VG_BEHAVIOR_HELD_MAX 32       /* violating windows held back per metric */
#define VG_BEHAVIOR_DEVICES_MAX (1u << 22)
#define VG_BEHAVIOR_EVICT_SCAN 8

enum vg_metric {
    VG_METRIC_MESSAGES,          /* "messages": PUBLISH packets received */
    VG_METRIC_BYTES,             /* "bytes": payload bytes received */
    VG_METRIC_MAX_PAYLOAD,       /* "max-payload": largest payload, bytes */
    VG_METRIC_CONNECT_ATTEMPTS,  /* "connect-attempts": TLS/CONNECT attempts */
    VG_METRIC_AUTH_FAILURES,     /* "auth-failures": authorization failures */
    VG_METRIC_REFUSED_PUBLISHES, /* "refused-publishes": publishes to topics
                                    the device may not use */
    VG_METRIC_SOURCE_ADDRS,      /* "source-addresses": distinct addresses */
    VG_METRIC_COUNT
};

enum vg_cmp { VG_CMP_GT, VG_CMP_GE, VG_CMP_LT, VG_CMP_LE };

/* What the caller should do when the alarm is raised. */
enum vg_mitigation {
    VG_MITIGATE_NOTIFY,     /* "notify": alert only */
    VG_MITIGATE_QUARANTINE, /* "quarantine": stop accepting its readings */
    VG_MITIGATE_REVOKE,     /* "revoke": revoke its certificate */
};

struct vg_behavior_rule {
    char name[VG_BEHAVIOR_RULE_NAME_MAX]; /* [A-Za-z0-9._-], non-empty */
    enum vg_metric metric;
    enum vg_cmp cmp;
    /* 0: fixed rule, compare with 'threshold'. 1..100: compare with the
     * nearest-rank 'percentile' of the device's history times 'factor'
     * (0 means 1.0); 'threshold' is then unused. */
    unsigned percentile;
    double threshold;
    double factor;
    unsigned alarm_after; /* 1..VG_BEHAVIOR_STREAK_MAX */
    unsigned clear_after; /* 1..VG_BEHAVIOR_STREAK_MAX */
    enum vg_mitigation mitigation;
};

struct vg_behavior_config {
    int64_t window_ms;        /* 1 s .. 1 day, e.g. 60000 */
    unsigned history_windows; /* K: 1..VG_BEHAVIOR_HISTORY_MAX */
    unsigned min_history;     /* N: 1..K windows before percentile rules apply */
    size_t max_devices;       /* 1..VG_BEHAVIOR_DEVICES_MAX */
    int64_t evict_idle_ms;    /* 0: never evict at the cap */
    const struct vg_behavior_rule *rules; /* copied by vg_behavior_create */
    size_t n_rules;                       /* 0..VG_BEHAVIOR_RULES_MAX */
};

enum vg_behavior_change {
    VG_BEHAVIOR_RAISED,  /* rule's alarm raised on 'device' */
    VG_BEHAVIOR_CLEARED, /* rule's alarm cleared on 'device' */
    VG_BEHAVIOR_DROPPED, /* 'dropped' events of untracked devices this window */
};

struct vg_behavior_event {
    enum vg_behavior_change change;
    const char *device;                  /* NULL for DROPPED */
    const struct vg_behavior_rule *rule; /* NULL for DROPPED */
    size_t rule_index;
    double value;      /* the metric in the window that decided */
    double threshold;  /* what it was compared with (computed for percentiles) */
    int64_t window_start_ms, window_end_ms;
    uint64_t dropped;
};

/* Called for each change; everything it points to is valid only during the
 * call. Must not call the engine. */
typedef void (*vg_behavior_cb)(void *ctx, const struct vg_behavior_event *ev);

/* An alarm currently raised, as listed by vg_behavior_alarms. */
struct vg_behavior_alarm {
    char device[VG_ID_MAX + 1];
    char rule[VG_BEHAVIOR_RULE_NAME_MAX];
    enum vg_metric metric;
    enum vg_cmp cmp;
    enum vg_mitigation mitigation;
    double value, threshold; /* of the window that raised it */
    int64_t since_ms;        /* end of the window that raised it */
};

struct vg_behavior_stats {
    size_t tracked;          /* devices tracked now */
    size_t max_devices;
    uint64_t dropped_events; /* since creation */
    uint64_t evictions;
    uint64_t windows_closed;
    size_t alarms_active;
};

struct vg_behavior;

const char *vg_metric_name(enum vg_metric m);
/* Parses a metric name ("messages", ...). 0, or -1 if unknown. */
int vg_metric_parse(const char *name, enum vg_metric *out) VG_WARN_UNUSED;
const char *vg_cmp_symbol(enum vg_cmp c); /* ">", ">=", "<", "<=" */
const char *vg_mitigation_name(enum vg_mitigation m);

/* Checks one rule; 0, or -1 with the reason in 'err'. */
int vg_behavior_rule_check(const struct vg_behavior_rule *r, char *err, size_t err_size)
    VG_WARN_UNUSED;

/* Creates an engine (it copies the config and rules). 0, or -1 with the
 * reason in 'err' (invalid config or rule, out of memory). The caller frees
 * it with vg_behavior_free. */
int vg_behavior_create(const struct vg_behavior_config *cfg, struct vg_behavior **out,
                       char *err, size_t err_size) VG_WARN_UNUSED;
void vg_behavior_free(struct vg_behavior *e);

/* Event feed (hot path). Each returns 0 when counted, -1 when the device
 * could not be tracked (cap reached, invalid id, out of memory) and the event
 * was dropped and counted. 'device' is borrowed for the call. */
int vg_behavior_record_message(struct vg_behavior *e, const char *device, size_t bytes,
                               int64_t now_ms);
int vg_behavior_record_connect_attempt(struct vg_behavior *e, const char *device, int64_t now_ms);
int vg_behavior_record_auth_failure(struct vg_behavior *e, const char *device, int64_t now_ms);
int vg_behavior_record_refused_publish(struct vg_behavior *e, const char *device, int64_t now_ms);
/* 'addr' is the raw address (4 bytes IPv4, 16 bytes IPv6; at most 32). */
int vg_behavior_record_source(struct vg_behavior *e, const char *device, const void *addr,
                              size_t addr_len, int64_t now_ms);

/* Closes every window that ended at or before now_ms, evaluates the rules and
 * calls 'cb' (may be NULL) for each change. Returns the number of events
 * reported. */
size_t vg_behavior_tick(struct vg_behavior *e, int64_t now_ms, vg_behavior_cb cb, void *ctx);

/* Forgets a device: its counters, history and alarms (without CLEARED
 * events: the caller is resetting it on purpose, e.g. an operator accepted a
 * new baseline or the device was removed). Returns 1 if it was tracked. */
int vg_behavior_forget(struct vg_behavior *e, const char *device);

/* Copies up to 'max' active alarms into 'out' (most recently active devices
 * first) and returns how many there are in all. */
size_t vg_behavior_alarms(const struct vg_behavior *e, struct vg_behavior_alarm *out, size_t max);

void vg_behavior_stats(const struct vg_behavior *e, struct vg_behavior_stats *out);

#endif
