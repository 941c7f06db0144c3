/* Data caps' settings and cycles (caps.h): pure functions, with a unit
 * test of their own (tests/unit/test-caps.c). */
#include "caps.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int caps_parse_size(const char *s, uint64_t *ret)
{
	char *end;
	double v;
	double mul;

	if (!*s || strlen(s) > 16 || !strchr("0123456789", s[0]))
		return -EINVAL;
	v = strtod(s, &end);
	switch (*end) {
	case 'B': mul = 1; end--; break;   /* bytes: the B below is the unit */
	case 'K': mul = 1e3; break;
	case 'M': mul = 1e6; break;
	case 'G': mul = 1e9; break;
	case 'T': mul = 1e12; break;
	default: return -EINVAL;
	}
	end++;
	if (*end == 'B')
		end++;
	if (*end || !(v > 0) || v * mul >= 1e17)
		return -EINVAL;
	*ret = (uint64_t)(v * mul);
	return *ret ? 0 : -EINVAL;
}

int caps_parse_at(const char *s, struct path_cap *c)
{
	char buf[96], *save = NULL, *tok;
	unsigned n = 0, last = 0;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	for (tok = strtok_r(buf, "/+", &save); tok; tok = strtok_r(NULL, "/+", &save)) {
		char *colon = strchr(tok, ':'), *end;
		unsigned long pct;
		enum path_mode m;

		if (!colon || n == CAP_MAX_AT)
			return -EINVAL;
		*colon = 0;
		pct = strtoul(tok, &end, 10);
		if (end == tok || *end || pct < 1 || pct > 100 || pct <= last)
			return -EINVAL;
		if (!strcmp(colon + 1, "overflow"))
			m = PATH_OVERFLOW;
		else if (!strcmp(colon + 1, "backup"))
			m = PATH_BACKUP;
		else if (!strcmp(colon + 1, "off"))
			m = PATH_OFF;
		else
			return -EINVAL;
		c->at[n].pct = (uint8_t)pct;
		c->at[n].action = (uint8_t)m;
		last = (unsigned)pct;
		n++;
	}
	if (!n)
		return -EINVAL;
	c->nat = (uint8_t)n;
	return 0;
}

int caps_parse_cycle(const char *s, struct path_cap *c)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (end == s || !strchr("0123456789", s[0]))
		return -EINVAL;
	if (!*end && v >= 1 && v <= 28) {
		c->day = (uint8_t)v;
		c->ndays = 0;
		return 0;
	}
	if (!strcmp(end, "d") && v >= 1 && v <= 366) {
		c->ndays = (uint16_t)v;
		c->day = 0;
		return 0;
	}
	return -EINVAL;
}

time_t caps_cycle_start(time_t now, unsigned day, unsigned ndays, time_t anchor)
{
	struct tm tm;

	localtime_r(&now, &tm);
	if (ndays) {
		time_t len = (time_t)ndays * 86400;

		if (anchor > now)
			return anchor;   /* the clock set back: the cycle stays */
		if (!anchor) {
			tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
			tm.tm_isdst = -1;
			return mktime(&tm);
		}
		/* Whole cycles since the anchor (days of 86,400 s: a cycle
		 * drifts by the daylight-saving hour, no more). */
		return anchor + (now - anchor) / len * len;
	}
	if ((unsigned)tm.tm_mday < day)
		tm.tm_mon--;      /* mktime normalises January's -1 */
	tm.tm_mday = (int)day;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_isdst = -1;
	return mktime(&tm);
}

int caps_level(const struct path_cap *c)
{
	int l = -1;

	/* used >= bytes * pct / 100, exactly: under the cap both products
	 * stay below 1e19 (bytes <= 1e17), and at the cap every threshold
	 * (<= 100%) is reached. */
	for (unsigned k = 0; k < c->nat; k++)
		if (c->used >= c->bytes || c->used * 100 >= c->bytes * c->at[k].pct)
			l = (int)k;
	return l;
}

static int rank(enum path_mode m)
{
	switch (m) {
	case PATH_ON:
	case PATH_MASTER: return 0;
	case PATH_OVERFLOW: return 1;
	case PATH_BACKUP: return 2;
	case PATH_HANDOVER: return 3;
	default: return 4;
	}
}

enum path_mode caps_effective_mode(const struct path *p)
{
	enum path_mode m = p->mode_cfg;

	if (!p->cap.bytes || p->cap.level < 0)
		return m;
	/* The strictest of the thresholds reached ("90:off/100:backup"
	 * stays off at 100%). */
	for (int k = 0; k <= p->cap.level && k < p->cap.nat; k++) {
		enum path_mode a = (enum path_mode)p->cap.at[k].action;

		if (a == PATH_OFF && p->cap.grace_until_ms)
			a = PATH_BACKUP;
		if (rank(a) > rank(m))
			m = a;
	}
	return m;
}
