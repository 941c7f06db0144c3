/* Data caps' settings and billing cycles (gw-agent/capsparse.c). The
 * cycle starts are checked against dates worked out by hand, in a zone
 * without daylight saving (UTC) and in one with it (Europe/Berlin). */
#include "check.h"
#include "caps.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void test_sizes(void)
{
	uint64_t b = 0;

	CHECK_INT(caps_parse_size("10G", &b), 0);
	CHECK(b == 10000000000ull);
	CHECK_INT(caps_parse_size("500MB", &b), 0);
	CHECK(b == 500000000ull);
	CHECK_INT(caps_parse_size("1.5T", &b), 0);
	CHECK(b == 1500000000000ull);
	CHECK_INT(caps_parse_size("12000000B", &b), 0);
	CHECK(b == 12000000ull);
	CHECK_INT(caps_parse_size("2K", &b), 0);
	CHECK(b == 2000);
	/* No unit, an unknown one, two, a sign, nothing, zero, absurd. */
	CHECK_INT(caps_parse_size("10", &b), -EINVAL);
	CHECK_INT(caps_parse_size("10X", &b), -EINVAL);
	CHECK_INT(caps_parse_size("10GG", &b), -EINVAL);
	CHECK_INT(caps_parse_size("10BB", &b), -EINVAL);
	CHECK_INT(caps_parse_size("-1G", &b), -EINVAL);
	CHECK_INT(caps_parse_size("", &b), -EINVAL);
	CHECK_INT(caps_parse_size("0G", &b), -EINVAL);
	CHECK_INT(caps_parse_size("999999T", &b), -EINVAL);
	CHECK_INT(caps_parse_size("G", &b), -EINVAL);
}

static void test_thresholds(void)
{
	struct path_cap c;

	memset(&c, 0, sizeof(c));
	CHECK_INT(caps_parse_at("80:overflow/100:off", &c), 0);
	CHECK_INT(c.nat, 2);
	CHECK_INT(c.at[0].pct, 80);
	CHECK_INT(c.at[0].action, PATH_OVERFLOW);
	CHECK_INT(c.at[1].pct, 100);
	CHECK_INT(c.at[1].action, PATH_OFF);
	CHECK_INT(caps_parse_at("50:backup", &c), 0);
	CHECK_INT(c.nat, 1);
	CHECK_INT(c.at[0].action, PATH_BACKUP);
	/* Falling or equal percents, out of range, modes that are no action,
	 * missing parts, too many. */
	CHECK_INT(caps_parse_at("100:off/80:backup", &c), -EINVAL);
	CHECK_INT(caps_parse_at("80:off/80:backup", &c), -EINVAL);
	CHECK_INT(caps_parse_at("0:off", &c), -EINVAL);
	CHECK_INT(caps_parse_at("101:off", &c), -EINVAL);
	CHECK_INT(caps_parse_at("90:on", &c), -EINVAL);
	CHECK_INT(caps_parse_at("90:master", &c), -EINVAL);
	CHECK_INT(caps_parse_at("90", &c), -EINVAL);
	CHECK_INT(caps_parse_at(":off", &c), -EINVAL);
	CHECK_INT(caps_parse_at("", &c), -EINVAL);
	CHECK_INT(caps_parse_at("10:backup/20:backup/30:backup/40:backup/50:off", &c), -EINVAL);
}

static void test_cycle_settings(void)
{
	struct path_cap c;

	memset(&c, 0, sizeof(c));
	CHECK_INT(caps_parse_cycle("15", &c), 0);
	CHECK_INT(c.day, 15);
	CHECK_INT(c.ndays, 0);
	CHECK_INT(caps_parse_cycle("30d", &c), 0);
	CHECK_INT(c.ndays, 30);
	CHECK_INT(c.day, 0);
	CHECK_INT(caps_parse_cycle("29", &c), -EINVAL);   /* not every month has it */
	CHECK_INT(caps_parse_cycle("0", &c), -EINVAL);
	CHECK_INT(caps_parse_cycle("0d", &c), -EINVAL);
	CHECK_INT(caps_parse_cycle("367d", &c), -EINVAL);
	CHECK_INT(caps_parse_cycle("7w", &c), -EINVAL);
	CHECK_INT(caps_parse_cycle("d", &c), -EINVAL);
	CHECK_INT(caps_parse_cycle("", &c), -EINVAL);
}

static time_t at(int y, int mon, int d, int h, int mi)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mon - 1, .tm_mday = d, .tm_hour = h,
			 .tm_min = mi, .tm_isdst = -1 };

	return mktime(&tm);
}

static void cycles_in(const char *tz)
{
	setenv("TZ", tz, 1);
	tzset();
	/* The 15th: on the 20th the cycle began on the 15th; on the 3rd, on
	 * the 15th of the month before; on the 15th at 00:00, that day. */
	CHECK(caps_cycle_start(at(2026, 12, 20, 13, 5), 15, 0, 0) == at(2026, 12, 15, 0, 0));
	CHECK(caps_cycle_start(at(2026, 12, 3, 9, 0), 15, 0, 0) == at(2026, 11, 15, 0, 0));
	CHECK(caps_cycle_start(at(2026, 12, 15, 0, 0), 15, 0, 0) == at(2026, 12, 15, 0, 0));
	CHECK(caps_cycle_start(at(2026, 12, 14, 23, 59), 15, 0, 0) == at(2026, 11, 15, 0, 0));
	/* Across a year, and the 1st. */
	CHECK(caps_cycle_start(at(2027, 1, 10, 12, 0), 15, 0, 0) == at(2026, 12, 15, 0, 0));
	CHECK(caps_cycle_start(at(2027, 1, 1, 0, 30), 1, 0, 0) == at(2027, 1, 1, 0, 0));
	/* Across the spring change of clocks (Berlin: 29 March 2026). */
	CHECK(caps_cycle_start(at(2026, 4, 2, 12, 0), 28, 0, 0) == at(2026, 3, 28, 0, 0));
	/* 30 days: without an anchor today's 00:00; with one, whole cycles
	 * since it (days of 86,400 s). */
	CHECK(caps_cycle_start(at(2026, 12, 5, 17, 0), 0, 30, 0) == at(2026, 12, 5, 0, 0));
	{
		time_t a = at(2026, 12, 5, 0, 0);

		CHECK(caps_cycle_start(a + 29 * 86400 + 3600, 0, 30, a) == a);
		CHECK(caps_cycle_start(a + 30 * 86400 + 1, 0, 30, a) == a + 30 * 86400);
		CHECK(caps_cycle_start(a + 95 * 86400, 0, 30, a) == a + 90 * 86400);
		/* An anchor after now (a clock set back): the cycle stays. */
		CHECK(caps_cycle_start(a - 86400 + 3600, 0, 30, a) == a);
	}
}

static void test_cycles(void)
{
	cycles_in("UTC");
	cycles_in("Europe/Berlin");
}

static void test_levels_and_modes(void)
{
	struct path p;

	memset(&p, 0, sizeof(p));
	p.mode_cfg = PATH_ON;
	p.cap.bytes = 1000;
	CHECK_INT(caps_parse_at("80:overflow/90:off/100:backup", &p.cap), 0);
	p.cap.used = 799;
	CHECK_INT(caps_level(&p.cap), -1);
	p.cap.used = 800;
	CHECK_INT(caps_level(&p.cap), 0);
	p.cap.used = 950;
	CHECK_INT(caps_level(&p.cap), 1);
	p.cap.used = 5000;
	CHECK_INT(caps_level(&p.cap), 2);
	/* The percent of a cap that 100 does not divide, and of the largest. */
	p.cap.bytes = 1001;
	p.cap.used = 800;
	CHECK_INT(caps_level(&p.cap), -1);   /* 80% of 1001 is 800.8 */
	p.cap.used = 801;
	CHECK_INT(caps_level(&p.cap), 0);
	p.cap.bytes = CAPS_MAX_BYTES;
	p.cap.used = CAPS_MAX_BYTES / 10 * 9;
	CHECK_INT(caps_level(&p.cap), 1);
	/* Modes: under the thresholds, the configured one; then the strictest
	 * reached (off at 90% stays off at 100%, whose action is weaker); an
	 * off in its grace is backup; a configured mode stricter than the
	 * action stays. */
	p.cap.bytes = 1000;
	p.cap.level = -1;
	CHECK_INT(caps_effective_mode(&p), PATH_ON);
	p.cap.level = 0;
	CHECK_INT(caps_effective_mode(&p), PATH_OVERFLOW);
	p.cap.level = 1;
	CHECK_INT(caps_effective_mode(&p), PATH_OFF);
	p.cap.level = 2;
	CHECK_INT(caps_effective_mode(&p), PATH_OFF);
	p.cap.grace_until_ms = 1;
	CHECK_INT(caps_effective_mode(&p), PATH_BACKUP);
	p.cap.grace_until_ms = 0;
	p.mode_cfg = PATH_BACKUP;
	p.cap.level = 0;
	CHECK_INT(caps_effective_mode(&p), PATH_BACKUP);
	p.cap.bytes = 0;
	p.cap.level = 2;
	CHECK_INT(caps_effective_mode(&p), PATH_BACKUP);   /* no cap: its mode */
}

int main(void)
{
	RUN(test_sizes);
	RUN(test_thresholds);
	RUN(test_cycle_settings);
	RUN(test_cycles);
	RUN(test_levels_and_modes);
	return check_finish();
}
