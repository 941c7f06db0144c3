/* Logging to stderr. Under systemd (JOURNAL_STREAM set) each line starts with
 * a "<N>" syslog priority that journald reads; otherwise lines are plain with
 * a timestamp. Library code (proto/, ring, relay) does not log: callers do. */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include <errno.h>
#include <stdint.h>
#include <syslog.h>

void log_init(const char *ident);
void log_set_level(int level);          /* LOG_ERR .. LOG_DEBUG */
int log_get_level(void);
int log_parse_level(const char *s);     /* "error".."debug" or -EINVAL */

void log_msg(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Logs with errno set from err (a -errno value) so %m names it; returns err
 * so callers can write: return log_errno(r, "bind %s: %m", a); */
int log_errno_at(int level, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_get_level() >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_errno(err, ...) log_errno_at(LOG_ERR, (err), __VA_ARGS__)

/* Token bucket for per-event log lines (refused flows), so a flood of bad
 * clients costs a bounded number of lines. One per thread; not shared. */
struct log_ratelimit {
	uint64_t window_start_ms;
	unsigned burst;       /* lines allowed per window */
	unsigned interval_ms;
	unsigned used;
	unsigned suppressed;
};

#define LOG_RATELIMIT_INIT(b, ms) { .burst = (b), .interval_ms = (ms) }
/* Returns 1 when a line may be logged now. When a new window opens after
 * suppression, logs how many lines were dropped. */
int log_ratelimit_ok(struct log_ratelimit *rl, uint64_t now_ms);

uint64_t log_now_ms(void); /* CLOCK_MONOTONIC in ms */
uint64_t log_now_us(void); /* and in microseconds */

#endif
