/* Minimal test harness: one standalone program per module (liburing style).
 * Exit 0 pass, 1 fail, 77 skip; meson understands all three. */
#ifndef TESTS_CHECK_H
#define TESTS_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int check_failed;
static int check_cases;
static int check_cases_failed;

#define CHECK(cond) do { \
	if (!(cond)) { \
		check_failed++; \
		fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
	} \
} while (0)

#define CHECK_INT(a, b) do { \
	long long _a = (long long)(a), _b = (long long)(b); \
	if (_a != _b) { \
		check_failed++; \
		fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", \
			__FILE__, __LINE__, #a, _a, #b, _b); \
	} \
} while (0)

#define CHECK_MEM(a, b, n) do { \
	if (memcmp((a), (b), (n)) != 0) { \
		check_failed++; \
		fprintf(stderr, "%s:%d: %s differs from %s over %zu bytes\n", \
			__FILE__, __LINE__, #a, #b, (size_t)(n)); \
		check_hexdump("got", (const uint8_t *)(a), (n)); \
		check_hexdump("want", (const uint8_t *)(b), (n)); \
	} \
} while (0)

static inline void check_hexdump(const char *what, const uint8_t *p, size_t n)
{
	fprintf(stderr, "  %-4s", what);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, " %02x", p[i]);
	fprintf(stderr, "\n");
}

#define RUN(fn) do { \
	int _before = check_failed; \
	fn(); \
	check_cases++; \
	if (check_failed != _before) { \
		check_cases_failed++; \
		printf("not ok %d - %s\n", check_cases, #fn); \
	} else { \
		printf("ok %d - %s\n", check_cases, #fn); \
	} \
} while (0)

static inline int check_finish(void)
{
	printf("1..%d\n# %d cases, %d failed\n", check_cases, check_cases,
	       check_cases_failed);
	return check_cases_failed ? 1 : 0;
}

#endif
