/* core/log — one line per event on stderr, with a level.
 *
 * Contract: messages are formatted by the caller; they must never carry PHI
 * (clinical values, patient names) or secrets (keys, tokens, passwords).
 * Identifiers of devices, patients and principals are allowed: they are
 * pseudonymous handles, and operators need them to act on a log line.
 * Thread-safe: each call writes one whole line with a single write(2).
 */
#ifndef VG_CORE_LOG_H
#define VG_CORE_LOG_H

enum vg_log_level { VG_LOG_DEBUG = 0, VG_LOG_INFO, VG_LOG_WARN, VG_LOG_ERROR };

/* Messages below this level are dropped (default VG_LOG_INFO). */
void vg_log_set_level(enum vg_log_level level);

void vg_log(enum vg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define vg_log_debug(...) vg_log(VG_LOG_DEBUG, __VA_ARGS__)
#define vg_log_info(...)  vg_log(VG_LOG_INFO, __VA_ARGS__)
#define vg_log_warn(...)  vg_log(VG_LOG_WARN, __VA_ARGS__)
#define vg_log_error(...) vg_log(VG_LOG_ERROR, __VA_ARGS__)

#endif
