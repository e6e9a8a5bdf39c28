/* posture/behavior — per-device behaviour metrics, rules and alarms.
 * The contract (what is learned, the cap policy, costs) is in behavior.h.
 */
#include "posture/behavior.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per device, per rule. */
struct rule_state {
    double value, threshold; /* of the window that raised the alarm */
    int64_t since_ms;
    uint32_t bad, good;      /* consecutive violating / non-violating windows */
    uint8_t alarmed;
};

/* Per device, per metric that some percentile rule looks at. The ring of
 * learned windows lives after the struct array in the device's block. */
struct hist {
    uint32_t head;  /* next slot to write */
    uint32_t count; /* learned windows in the ring, at most K */
    uint32_t n_held;
    uint64_t held[VG_BEHAVIOR_HELD_MAX]; /* a violating streak, not yet learned */
};

struct dev {
    struct dev *hnext;       /* bucket chain */
    struct dev *prev, *next; /* activity order: head is the most recent */
    uint64_t hash;
    int64_t last_event_ms;
    uint64_t cur[VG_METRIC_COUNT]; /* the open window */
    uint64_t addr[VG_BEHAVIOR_ADDR_SET];
    uint8_t n_addr, addr_overflow;
    uint8_t partial;  /* first seen after the open window began */
    unsigned alarms;  /* rules in alarm on this device */
    struct rule_state *rs;
    struct hist *h;
    uint64_t *ring;
    char id[VG_ID_MAX + 1];
};

struct vg_behavior {
    struct vg_behavior_config cfg;
    struct vg_behavior_rule rules[VG_BEHAVIOR_RULES_MAX];
    int hist_slot[VG_METRIC_COUNT]; /* index into a device's histories, or -1 */
    unsigned n_hist;
    unsigned char key[crypto_shorthash_KEYBYTES];
    struct dev **buckets;
    size_t mask;
    struct dev *head, *tail;
    size_t tracked;
    size_t dev_size, off_rs, off_h, off_ring;
    int started;
    int64_t win_start;
    unsigned settle; /* empty windows after which nothing changes any more */
    uint64_t dropped_total, dropped_window, evictions, windows_closed;
    size_t alarms_active;
    uint64_t *scratch; /* n_hist * K values, sorted per metric at each close */
};

static const char *const metric_names[VG_METRIC_COUNT] = {
    "messages",      "bytes",           "max-payload",      "connect-attempts",
    "auth-failures", "refused-publishes", "source-addresses",
};

const char *vg_metric_name(enum vg_metric m)
{
    return (unsigned)m < VG_METRIC_COUNT ? metric_names[m] : "unknown";
}

int vg_metric_parse(const char *name, enum vg_metric *out)
{
    for (unsigned i = 0; name && i < VG_METRIC_COUNT; i++)
        if (!strcmp(name, metric_names[i])) {
            *out = (enum vg_metric)i;
            return 0;
        }
    return -1;
}

const char *vg_cmp_symbol(enum vg_cmp c)
{
    switch (c) {
    case VG_CMP_GT: return ">";
    case VG_CMP_GE: return ">=";
    case VG_CMP_LT: return "<";
    case VG_CMP_LE: return "<=";
    }
    return "?";
}

const char *vg_mitigation_name(enum vg_mitigation m)
{
    switch (m) {
    case VG_MITIGATE_NOTIFY: return "notify";
    case VG_MITIGATE_QUARANTINE: return "quarantine";
    case VG_MITIGATE_REVOKE: return "revoke";
    }
    return "unknown";
}

static int name_ok(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    if (n == 0 || n == size)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int vg_behavior_rule_check(const struct vg_behavior_rule *r, char *err, size_t err_size)
{
    const char *why = NULL;
    if (!name_ok(r->name, sizeof r->name))
        why = "name must be 1-47 of A-Z a-z 0-9 . _ -";
    else if ((unsigned)r->metric >= VG_METRIC_COUNT)
        why = "unknown metric";
    else if ((unsigned)r->cmp > VG_CMP_LE)
        why = "unknown comparison";
    else if (r->percentile > 100)
        why = "percentile must be 1-100 (0 for a fixed threshold)";
    else if (r->percentile == 0 && !isfinite(r->threshold))
        why = "threshold must be a finite number";
    else if (!isfinite(r->factor) || r->factor < 0)
        why = "factor must be a finite number >= 0";
    else if (r->alarm_after < 1 || r->alarm_after > VG_BEHAVIOR_STREAK_MAX)
        why = "alarm_after must be 1-1000 windows";
    else if (r->clear_after < 1 || r->clear_after > VG_BEHAVIOR_STREAK_MAX)
        why = "clear_after must be 1-1000 windows";
    else if ((unsigned)r->mitigation > VG_MITIGATE_REVOKE)
        why = "unknown mitigation";
    if (!why)
        return 0;
    snprintf(err, err_size, "rule '%.*s': %s", (int)strnlen(r->name, sizeof r->name), r->name,
             why);
    return -1;
}

static size_t round_up(size_t n)
{
    size_t a = _Alignof(max_align_t);
    return (n + a - 1) / a * a;
}

static int64_t floor_window(int64_t t, int64_t w)
{
    int64_t q = t / w;
    if (t % w < 0)
        q--;
    return q * w;
}

int vg_behavior_create(const struct vg_behavior_config *cfg, struct vg_behavior **out,
                       char *err, size_t err_size)
{
    *out = NULL;
    const char *why = NULL;
    if (cfg->window_ms < 1000 || cfg->window_ms > 86400000)
        why = "window must be 1 s to 1 day";
    else if (cfg->history_windows < 1 || cfg->history_windows > VG_BEHAVIOR_HISTORY_MAX)
        why = "history_windows must be 1-1440";
    else if (cfg->min_history < 1 || cfg->min_history > cfg->history_windows)
        why = "min_history must be 1 to history_windows";
    else if (cfg->max_devices < 1 || cfg->max_devices > VG_BEHAVIOR_DEVICES_MAX)
        why = "max_devices must be 1 to 4194304";
    else if (cfg->evict_idle_ms < 0)
        why = "evict_idle_ms must be >= 0";
    else if (cfg->n_rules > VG_BEHAVIOR_RULES_MAX || (cfg->n_rules && !cfg->rules))
        why = "at most 32 rules";
    if (why) {
        snprintf(err, err_size, "behaviour config: %s", why);
        return -1;
    }
    for (size_t i = 0; i < cfg->n_rules; i++)
        if (vg_behavior_rule_check(&cfg->rules[i], err, err_size) != 0)
            return -1;
    if (sodium_init() < 0) {
        snprintf(err, err_size, "behaviour: libsodium failed to initialise");
        return -1;
    }

    struct vg_behavior *e = calloc(1, sizeof *e);
    if (!e)
        goto oom;
    e->cfg = *cfg;
    if (cfg->n_rules)
        memcpy(e->rules, cfg->rules, cfg->n_rules * sizeof *cfg->rules);
    e->cfg.rules = e->rules;
    unsigned max_alarm = 0, max_clear = 0;
    for (unsigned m = 0; m < VG_METRIC_COUNT; m++)
        e->hist_slot[m] = -1;
    for (size_t i = 0; i < cfg->n_rules; i++) {
        const struct vg_behavior_rule *r = &e->rules[i];
        if (r->percentile && e->hist_slot[r->metric] < 0)
            e->hist_slot[r->metric] = (int)e->n_hist++;
        if (r->alarm_after > max_alarm)
            max_alarm = r->alarm_after;
        if (r->clear_after > max_clear)
            max_clear = r->clear_after;
    }
    /* After this many empty windows every streak has settled and the ring
     * holds nothing but the same value: more would change nothing. */
    e->settle = cfg->history_windows + max_alarm + max_clear + 2;

    size_t k = cfg->history_windows;
    e->off_rs = round_up(sizeof(struct dev));
    e->off_h = e->off_rs + round_up(cfg->n_rules * sizeof(struct rule_state));
    e->off_ring = e->off_h + round_up(e->n_hist * sizeof(struct hist));
    e->dev_size = e->off_ring + e->n_hist * k * sizeof(uint64_t);

    size_t nb = 16;
    while (nb < cfg->max_devices * 2)
        nb <<= 1;
    e->mask = nb - 1;
    e->buckets = calloc(nb, sizeof *e->buckets);
    e->scratch = calloc(e->n_hist ? e->n_hist * k : 1, sizeof *e->scratch);
    if (!e->buckets || !e->scratch)
        goto oom;
    randombytes_buf(e->key, sizeof e->key);
    *out = e;
    return 0;
oom:
    vg_behavior_free(e);
    snprintf(err, err_size, "behaviour: out of memory");
    return -1;
}

void vg_behavior_free(struct vg_behavior *e)
{
    if (!e)
        return;
    struct dev *d = e->head;
    while (d) {
        struct dev *n = d->next;
        free(d);
        d = n;
    }
    free(e->buckets);
    free(e->scratch);
    free(e);
}

static uint64_t keyed_hash(const struct vg_behavior *e, const void *p, size_t n)
{
    unsigned char h[crypto_shorthash_BYTES];
    uint64_t v;
    crypto_shorthash(h, p, n, e->key);
    memcpy(&v, h, sizeof v);
    return v;
}

static void lru_unlink(struct vg_behavior *e, struct dev *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else
        e->head = d->next;
    if (d->next)
        d->next->prev = d->prev;
    else
        e->tail = d->prev;
    d->prev = d->next = NULL;
}

static void lru_push_head(struct vg_behavior *e, struct dev *d)
{
    d->prev = NULL;
    d->next = e->head;
    if (e->head)
        e->head->prev = d;
    e->head = d;
    if (!e->tail)
        e->tail = d;
}

static void bucket_unlink(struct vg_behavior *e, struct dev *d)
{
    struct dev **pp = &e->buckets[d->hash & e->mask];
    while (*pp && *pp != d)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = d->hnext;
    d->hnext = NULL;
}

static struct dev *find(const struct vg_behavior *e, const char *id, size_t len, uint64_t h)
{
    for (struct dev *d = e->buckets[h & e->mask]; d; d = d->hnext)
        if (d->hash == h && !memcmp(d->id, id, len + 1))
            return d;
    return NULL;
}

/* A device at the cap may be replaced: idle long enough, and no alarm (an
 * alarm must stay visible until it clears). */
static struct dev *evictable(struct vg_behavior *e, int64_t now_ms)
{
    if (e->cfg.evict_idle_ms <= 0)
        return NULL;
    struct dev *d = e->tail;
    for (unsigned i = 0; d && i < VG_BEHAVIOR_EVICT_SCAN; i++, d = d->prev)
        if (!d->alarms && now_ms - d->last_event_ms >= e->cfg.evict_idle_ms)
            return d;
    return NULL;
}

static void start(struct vg_behavior *e, int64_t now_ms)
{
    e->started = 1;
    e->win_start = floor_window(now_ms, e->cfg.window_ms);
}

/* The device's state, tracked from now on if it was not. NULL when it cannot
 * be tracked. */
static struct dev *device(struct vg_behavior *e, const char *id, int64_t now_ms)
{
    if (!id)
        return NULL;
    size_t len = strnlen(id, VG_ID_MAX + 1);
    if (len == 0 || len > VG_ID_MAX)
        return NULL;
    if (!e->started)
        start(e, now_ms);
    uint64_t h = keyed_hash(e, id, len);
    struct dev *d = find(e, id, len, h);
    if (d) {
        /* Move to the head once per window, not on every event: the order
         * the cap policy needs is "idle longest last", and window
         * granularity gives it without touching neighbours' cache lines on
         * every message. */
        if (d != e->head && d->last_event_ms < e->win_start) {
            lru_unlink(e, d);
            lru_push_head(e, d);
        }
        if (now_ms > d->last_event_ms)
            d->last_event_ms = now_ms;
        return d;
    }
    if (e->tracked < e->cfg.max_devices) {
        d = malloc(e->dev_size);
        if (!d)
            return NULL;
        e->tracked++;
    } else {
        d = evictable(e, now_ms);
        if (!d)
            return NULL;
        lru_unlink(e, d);
        bucket_unlink(e, d);
        e->evictions++;
    }
    memset(d, 0, e->dev_size);
    unsigned char *base = (unsigned char *)d;
    d->rs = (struct rule_state *)(void *)(base + e->off_rs);
    d->h = (struct hist *)(void *)(base + e->off_h);
    d->ring = (uint64_t *)(void *)(base + e->off_ring);
    memcpy(d->id, id, len + 1);
    d->hash = h;
    d->last_event_ms = now_ms;
    d->partial = now_ms > e->win_start;
    d->hnext = e->buckets[h & e->mask];
    e->buckets[h & e->mask] = d;
    lru_push_head(e, d);
    return d;
}

static int drop(struct vg_behavior *e)
{
    e->dropped_total++;
    e->dropped_window++;
    return -1;
}

int vg_behavior_record_message(struct vg_behavior *e, const char *id, size_t bytes, int64_t now_ms)
{
    struct dev *d = device(e, id, now_ms);
    if (!d)
        return drop(e);
    d->cur[VG_METRIC_MESSAGES]++;
    d->cur[VG_METRIC_BYTES] += bytes;
    if (bytes > d->cur[VG_METRIC_MAX_PAYLOAD])
        d->cur[VG_METRIC_MAX_PAYLOAD] = bytes;
    return 0;
}

static int count(struct vg_behavior *e, const char *id, enum vg_metric m, int64_t now_ms)
{
    struct dev *d = device(e, id, now_ms);
    if (!d)
        return drop(e);
    d->cur[m]++;
    return 0;
}

int vg_behavior_record_connect_attempt(struct vg_behavior *e, const char *id, int64_t now_ms)
{
    return count(e, id, VG_METRIC_CONNECT_ATTEMPTS, now_ms);
}

int vg_behavior_record_auth_failure(struct vg_behavior *e, const char *id, int64_t now_ms)
{
    return count(e, id, VG_METRIC_AUTH_FAILURES, now_ms);
}

int vg_behavior_record_refused_publish(struct vg_behavior *e, const char *id, int64_t now_ms)
{
    return count(e, id, VG_METRIC_REFUSED_PUBLISHES, now_ms);
}

int vg_behavior_record_source(struct vg_behavior *e, const char *id, const void *addr,
                              size_t addr_len, int64_t now_ms)
{
    if (!addr || addr_len == 0 || addr_len > 32)
        return drop(e);
    struct dev *d = device(e, id, now_ms);
    if (!d)
        return drop(e);
    uint64_t h = keyed_hash(e, addr, addr_len);
    for (unsigned i = 0; i < d->n_addr; i++)
        if (d->addr[i] == h)
            return 0;
    if (d->n_addr < VG_BEHAVIOR_ADDR_SET)
        d->addr[d->n_addr++] = h;
    else
        d->addr_overflow = 1;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int compare(enum vg_cmp c, double v, double t)
{
    switch (c) {
    case VG_CMP_GT: return v > t;
    case VG_CMP_GE: return v >= t;
    case VG_CMP_LT: return v < t;
    case VG_CMP_LE: return v <= t;
    }
    return 0;
}

static void learn(struct vg_behavior *e, struct dev *d, unsigned slot, uint64_t v)
{
    struct hist *h = &d->h[slot];
    uint32_t k = e->cfg.history_windows;
    d->ring[(size_t)slot * k + h->head] = v;
    h->head = (h->head + 1) % k;
    if (h->count < k)
        h->count++;
}

struct emit {
    vg_behavior_cb cb;
    void *ctx;
    size_t n;
};

static void report(struct emit *em, const struct vg_behavior_event *ev)
{
    em->n++;
    if (em->cb)
        em->cb(em->ctx, ev);
}

/* Evaluates every rule on one device for the window [ws, we) and resets its
 * counters for the next. */
static void close_device(struct vg_behavior *e, struct dev *d, int64_t ws, int64_t we,
                         struct emit *em)
{
    uint64_t vals[VG_METRIC_COUNT];
    memcpy(vals, d->cur, sizeof vals);
    vals[VG_METRIC_SOURCE_ADDRS] = d->n_addr + (d->addr_overflow ? 1u : 0u);

    /* Sorted copy of each history that percentile rules read. */
    uint32_t k = e->cfg.history_windows;
    for (unsigned s = 0; s < e->n_hist; s++)
        if (d->h[s].count >= e->cfg.min_history) {
            memcpy(e->scratch + (size_t)s * k, d->ring + (size_t)s * k,
                   d->h[s].count * sizeof(uint64_t));
            qsort(e->scratch + (size_t)s * k, d->h[s].count, sizeof(uint64_t), cmp_u64);
        }

    int violated[VG_METRIC_COUNT] = {0}, raised[VG_METRIC_COUNT] = {0};
    for (size_t i = 0; i < e->cfg.n_rules; i++) {
        const struct vg_behavior_rule *r = &e->rules[i];
        struct rule_state *st = &d->rs[i];
        double v = (double)vals[r->metric], thr = 0;
        /* A partial window can only under-count: it proves an upper bound
         * was crossed, never that a lower one was. */
        int evaluable = !(d->partial && (r->cmp == VG_CMP_LT || r->cmp == VG_CMP_LE));
        if (r->percentile) {
            unsigned s = (unsigned)e->hist_slot[r->metric];
            uint32_t n = d->h[s].count;
            if (n < e->cfg.min_history) {
                evaluable = 0;
            } else {
                /* Nearest rank: the smallest value with at least p% of the
                 * history at or below it. */
                size_t rank = ((size_t)r->percentile * n + 99) / 100;
                if (rank < 1)
                    rank = 1;
                thr = (double)e->scratch[(size_t)s * k + rank - 1] *
                      (r->factor > 0 ? r->factor : 1.0);
            }
        } else {
            thr = r->threshold;
        }
        int bad = evaluable && compare(r->cmp, v, thr);
        if (bad) {
            violated[r->metric] = 1;
            if (st->bad < VG_BEHAVIOR_STREAK_MAX)
                st->bad++;
            st->good = 0;
        } else {
            if (st->good < VG_BEHAVIOR_STREAK_MAX)
                st->good++;
            st->bad = 0;
        }
        struct vg_behavior_event ev = {.device = d->id, .rule = r, .rule_index = i, .value = v,
                                       .threshold = thr, .window_start_ms = ws,
                                       .window_end_ms = we};
        if (!st->alarmed && st->bad >= r->alarm_after) {
            st->alarmed = 1;
            st->value = v;
            st->threshold = thr;
            st->since_ms = we;
            d->alarms++;
            e->alarms_active++;
            raised[r->metric] = 1;
            ev.change = VG_BEHAVIOR_RAISED;
            report(em, &ev);
        } else if (st->alarmed && st->good >= r->clear_after) {
            st->alarmed = 0;
            d->alarms--;
            e->alarms_active--;
            ev.change = VG_BEHAVIOR_CLEARED;
            report(em, &ev);
        }
    }

    /* What the history learns (behavior.h): hold a violating streak back,
     * learn it if it ends without an alarm, discard it if it raises one, and
     * learn nothing while the metric is in alarm. */
    for (unsigned m = 0; m < VG_METRIC_COUNT; m++) {
        if (e->hist_slot[m] < 0 || d->partial)
            continue;
        unsigned s = (unsigned)e->hist_slot[m];
        struct hist *h = &d->h[s];
        int in_alarm = 0;
        for (size_t i = 0; i < e->cfg.n_rules; i++)
            if (e->rules[i].metric == (enum vg_metric)m && d->rs[i].alarmed)
                in_alarm = 1;
        if (raised[m] || in_alarm) {
            h->n_held = 0;
        } else if (violated[m]) {
            if (h->n_held < VG_BEHAVIOR_HELD_MAX)
                h->held[h->n_held++] = vals[m];
        } else {
            for (uint32_t j = 0; j < h->n_held; j++)
                learn(e, d, s, h->held[j]);
            h->n_held = 0;
            learn(e, d, s, vals[m]);
        }
    }

    memset(d->cur, 0, sizeof d->cur);
    d->n_addr = 0;
    d->addr_overflow = 0;
    d->partial = 0;
}

size_t vg_behavior_tick(struct vg_behavior *e, int64_t now_ms, vg_behavior_cb cb, void *ctx)
{
    struct emit em = {cb, ctx, 0};
    if (!e->started) {
        start(e, now_ms);
        return 0;
    }
    int64_t w = e->cfg.window_ms;
    unsigned closed = 0;
    while (now_ms - e->win_start >= w) {
        if (closed == e->settle) {
            /* Everything has settled on empty windows; skip the rest. */
            e->win_start = floor_window(now_ms, w);
            break;
        }
        int64_t ws = e->win_start, we = ws + w;
        for (struct dev *d = e->head; d; d = d->next)
            close_device(e, d, ws, we, &em);
        if (e->dropped_window) {
            struct vg_behavior_event ev = {.change = VG_BEHAVIOR_DROPPED,
                                           .dropped = e->dropped_window,
                                           .window_start_ms = ws, .window_end_ms = we};
            e->dropped_window = 0;
            report(&em, &ev);
        }
        e->windows_closed++;
        e->win_start = we;
        closed++;
    }
    return em.n;
}

int vg_behavior_forget(struct vg_behavior *e, const char *id)
{
    if (!id)
        return 0;
    size_t len = strnlen(id, VG_ID_MAX + 1);
    if (len == 0 || len > VG_ID_MAX)
        return 0;
    struct dev *d = find(e, id, len, keyed_hash(e, id, len));
    if (!d)
        return 0;
    lru_unlink(e, d);
    bucket_unlink(e, d);
    e->alarms_active -= d->alarms;
    e->tracked--;
    free(d);
    return 1;
}

size_t vg_behavior_alarms(const struct vg_behavior *e, struct vg_behavior_alarm *out, size_t max)
{
    size_t n = 0;
    for (const struct dev *d = e->head; d; d = d->next) {
        if (!d->alarms)
            continue;
        for (size_t i = 0; i < e->cfg.n_rules; i++) {
            if (!d->rs[i].alarmed)
                continue;
            if (n < max) {
                struct vg_behavior_alarm *a = &out[n];
                memset(a, 0, sizeof *a);
                memcpy(a->device, d->id, sizeof a->device);
                memcpy(a->rule, e->rules[i].name, sizeof a->rule);
                a->metric = e->rules[i].metric;
                a->cmp = e->rules[i].cmp;
                a->mitigation = e->rules[i].mitigation;
                a->value = d->rs[i].value;
                a->threshold = d->rs[i].threshold;
                a->since_ms = d->rs[i].since_ms;
            }
            n++;
        }
    }
    return n;
}

void vg_behavior_stats(const struct vg_behavior *e, struct vg_behavior_stats *out)
{
    out->tracked = e->tracked;
    out->max_devices = e->cfg.max_devices;
    out->dropped_events = e->dropped_total;
    out->evictions = e->evictions;
    out->windows_closed = e->windows_closed;
    out->alarms_active = e->alarms_active;
}
