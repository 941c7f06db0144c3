/* Command-line values for both daemons: each error names the option, the
 * value and the reason ("--workers: "0" is out of range (1..256)"), printed
 * to stderr with the program's name; functions return 0 or -EINVAL. */
#ifndef COMMON_OPTS_H
#define COMMON_OPTS_H

#include <stddef.h>
#include <stdint.h>

struct option;
/* The long name of the option whose value is val ("" if none). */
const char *opt_name(const struct option *opts, int val);
int opt_error(const char *opt, const char *val, const char *why);
/* While a config file is applied (config.c), errors name the file and key
 * instead of the option: opt_source("gw-agent.json", "paths[1]"). NULL
 * file: back to the command line. */
void opt_source(const char *file, const char *key);
/* A message about the source itself (unknown key, wrong JSON type), in the
 * same form as opt_error's. Returns -EINVAL. */
int opt_source_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Exactly 2 * n hex digits at s into out[0..n): 0, or -EINVAL at anything
 * else (a sign, a space, "0x", a short string). Secrets are read with it. */
int opt_hex_bytes(const char *s, uint8_t *out, size_t n);
/* A whole number in [min, max]; decimal, or 0x... hexadecimal. */
int opt_uint(const char *opt, const char *s, unsigned long min, unsigned long max,
	     unsigned long *ret);
/* A power of two in [min, max] (buffer rings). */
int opt_pow2(const char *opt, const char *s, unsigned long min, unsigned long max,
	     unsigned *ret);
/* error, warning, info, debug: into *ret_level (log.h levels). */
int opt_log_level(const char *opt, const char *s, int *ret_level);
/* Seconds, fractions allowed ("0.5"), at most max_s, into milliseconds. */
int opt_seconds_ms(const char *opt, const char *s, unsigned max_s, unsigned *ret_ms);
/* A TCP congestion control this kernel has, into ret (len bytes). */
int opt_congestion(const char *opt, const char *s, char *ret, size_t len);
/* Raise the soft open-file limit to the hard one; the number of flows (two
 * sockets each) that then fit, with some room for everything else. */
uint32_t opt_fit_fd_limit(void);

#endif
