#include "opts.h"

#include "log.h"
#include "sock.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

extern char *program_invocation_short_name;

const char *opt_name(const struct option *opts, int val)
{
	for (const struct option *o = opts; o->name; o++)
		if (o->val == val)
			return o->name;
	return "";
}

static const char *src_file, *src_key;

void opt_source(const char *file, const char *key)
{
	src_file = file;
	src_key = key;
}

/* Under systemd stderr is the journal: "<3>" makes these errors. */
static const char *prio(void)
{
	return getenv("JOURNAL_STREAM") ? "<3>" : "";
}

int opt_error(const char *opt, const char *val, const char *why)
{
	if (src_file)
		fprintf(stderr, "%s%s: %s: \"%s\" %s\n", prio(), src_file, src_key, val, why);
	else
		fprintf(stderr, "%s%s: --%s: \"%s\" %s\n", prio(), program_invocation_short_name,
			opt, val, why);
	return -EINVAL;
}

int opt_source_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s%s: ", prio(), src_file ? src_file : program_invocation_short_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -EINVAL;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int opt_hex_bytes(const char *s, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi, lo;

		if (!s[2 * i] || (hi = hex_digit(s[2 * i])) < 0 || (lo = hex_digit(s[2 * i + 1])) < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int opt_uint(const char *opt, const char *s, unsigned long min, unsigned long max,
	     unsigned long *ret)
{
	char *end;
	unsigned long v;
	/* Hex for marks and tables; plain decimal otherwise, so that "010"
	 * means ten rather than octal eight. */
	int base = (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? 16 : 10;

	errno = 0;
	v = strtoul(s, &end, base);
	if (!*s || *end || s[0] == '-' || s[0] == '+' || errno)
		return opt_error(opt, s, "is not a whole number");
	if (v < min || v > max) {
		char why[96];

		snprintf(why, sizeof(why), "is out of range (%lu..%lu)", min, max);
		return opt_error(opt, s, why);
	}
	*ret = v;
	return 0;
}

int opt_pow2(const char *opt, const char *s, unsigned long min, unsigned long max,
	     unsigned *ret)
{
	unsigned long v;
	int r = opt_uint(opt, s, min, max, &v);

	if (r < 0)
		return r;
	if (v & (v - 1))
		return opt_error(opt, s, "is not a power of 2");
	*ret = (unsigned)v;
	return 0;
}

int opt_log_level(const char *opt, const char *s, int *ret_level)
{
	int r = log_parse_level(s);

	if (r < 0)
		return opt_error(opt, s, "is not error, warning, info or debug");
	*ret_level = r;
	return 0;
}

int opt_seconds_ms(const char *opt, const char *s, unsigned max_s, unsigned *ret_ms)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (!*s || *end || errno || isnan(v))
		return opt_error(opt, s, "is not a number of seconds");
	if (v < 0 || v > max_s) {
		char why[64];

		snprintf(why, sizeof(why), "is out of range (0..%u seconds)", max_s);
		return opt_error(opt, s, why);
	}
	*ret_ms = (unsigned)(v * 1000 + 0.5);
	return 0;
}

uint32_t opt_fit_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1000;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 20000000)
		return 10000000;
	return rl.rlim_cur > 256 ? (uint32_t)(rl.rlim_cur - 128) / 2 : 64;
}

int opt_congestion(const char *opt, const char *s, char *ret, size_t len)
{
	char avail[256], why[320];

	if (strlen(s) >= len || strpbrk(s, " /"))
		return opt_error(opt, s, "is not a congestion control name");
	if (*s && sock_congestion_check(s, avail, sizeof(avail)) < 0) {
		snprintf(why, sizeof(why), "is not a congestion control this kernel has (%s%s)",
			 avail[0] ? "available: " : "", avail[0] ? avail : "none listed");
		return opt_error(opt, s, why);
	}
	strcpy(ret, s);
	return 0;
}
