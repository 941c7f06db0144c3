/* Gateway cookies (common/cookie.c) and the per-client limits
 * (common/quota.c): a made cookie checks out; every way it can be wrong is
 * refused with its own reason; the limits hold per client (IPv6 per /64)
 * and in total, and come back on release. */
#include "cookie.h"
#include "quota.h"
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#define NOW 1700000000u

static struct in6_addr A(const char *s)
{
	struct in6_addr a;

	inet_pton(AF_INET6, s, &a);
	return a;
}

static void test_cookie(void)
{
	struct cookie_key k[2], scoped;
	struct cookie_keys ks = { .k = k, .n = 2 };
	struct cookie_dest dst = { .port = 443, .addr = A("::ffff:203.0.113.2") };
	struct cookie_dest other = dst;
	struct in6_addr me = A("::ffff:198.51.100.2"), them = A("::ffff:198.51.100.3");
	struct addr_prefix pfx;
	struct cookie_fields f;
	uint8_t c[COOKIE_LEN + 2], c2[COOKIE_LEN];

	memset(k, 0, sizeof(k));
	k[0].id = 7; k[0].any = true;
	k[1].id = 9; k[1].any = true; k[1].nat = true;
	for (int i = 0; i < COOKIE_SECRET_LEN; i++) {
		k[0].secret[i] = (uint8_t)i;
		k[1].secret[i] = (uint8_t)(100 + i);
	}
	CHECK_INT(cookie_make(c, &k[0], 0, NOW, &me, &dst), COOKIE_LEN);
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN, &me, &dst, NOW, &f), COOKIE_OK);
	CHECK(f.kid == 7 && f.time == NOW && f.flags == 0);
	/* Two cookies differ by their nonce. */
	CHECK_INT(cookie_make(c2, &k[0], 0, NOW, &me, &dst), COOKIE_LEN);
	CHECK(memcmp(c, c2, COOKIE_LEN) != 0);
	/* Zero padding behind it is allowed; anything else is malformed. */
	c[COOKIE_LEN] = c[COOKIE_LEN + 1] = 0;
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN + 2, &me, &dst, NOW, &f), COOKIE_OK);
	c[COOKIE_LEN + 1] = 1;
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN + 2, &me, &dst, NOW, &f), COOKIE_MALFORMED);
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN - 1, &me, &dst, NOW, &f), COOKIE_MALFORMED);
	/* The window: 90 s either side. */
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN, &me, &dst, NOW + 90, &f), COOKIE_OK);
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN, &me, &dst, NOW - 90, &f), COOKIE_OK);
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN, &me, &dst, NOW + 91, &f), COOKIE_STALE);
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN, &me, &dst, NOW - 91, &f), COOKIE_STALE);
	/* Another client address, destination, port: the MAC does not match. */
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN, &them, &dst, NOW, &f), COOKIE_BAD_MAC);
	other.addr = A("::ffff:203.0.113.3");
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN, &me, &other, NOW, &f), COOKIE_BAD_MAC);
	other = dst; other.port = 444;
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN, &me, &other, NOW, &f), COOKIE_BAD_MAC);
	/* Each bit of the MAC and of the signed fields matters. */
	for (int i = 0; i < COOKIE_LEN; i++) {
		enum cookie_reason r;

		memcpy(c2, c, COOKIE_LEN);
		c2[i] ^= 0x04;
		r = cookie_check(&ks, c2, COOKIE_LEN, &me, &dst, NOW, &f);
		CHECK(r != COOKIE_OK);
	}
	/* An unknown key; a key scoped to other prefixes. */
	k[0].id = 8;
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN, &me, &dst, NOW, &f), COOKIE_UNKNOWN_KEY);
	k[0].id = 7;
	scoped = k[0];
	scoped.any = false;
	CHECK_INT(addr_parse_prefix("192.0.2.0/24", &pfx), 0);
	scoped.scope = &pfx;
	scoped.nscope = 1;
	{
		struct cookie_keys one = { .k = &scoped, .n = 1 };

		CHECK_INT(cookie_check(&one, c, COOKIE_LEN, &me, &dst, NOW, &f), COOKIE_SCOPE);
	}
	/* NAT: left out of the MAC, accepted only for a nat key. */
	CHECK_INT(cookie_make(c, &k[1], COOKIE_F_NAT, NOW, NULL, &dst), COOKIE_LEN);
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN, &them, &dst, NOW, &f), COOKIE_OK);
	CHECK_INT(cookie_make(c, &k[0], COOKIE_F_NAT, NOW, NULL, &dst), COOKIE_LEN);
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN, &me, &dst, NOW, &f), COOKIE_NAT);
	/* An Info-only probe (no destination) is its own cookie. */
	CHECK_INT(cookie_make(c, &k[0], 0, NOW, &me, NULL), COOKIE_LEN);
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN, &me, NULL, NOW, &f), COOKIE_OK);
	CHECK_INT(cookie_check(&ks, c, COOKIE_LEN, &me, &dst, NOW, &f), COOKIE_BAD_MAC);
}

static void test_quota(void)
{
	struct quota q;
	struct in6_addr a = A("::ffff:198.51.100.2"), b = A("::ffff:198.51.100.3");
	struct in6_addr v6a = A("2001:db8:1:2::1"), v6b = A("2001:db8:1:2:ffff::9"),
			v6c = A("2001:db8:1:3::1");

	CHECK_INT(quota_init(&q, 64), 0);
	quota_set(&q, QUOTA_FLOW, 5, 2);
	CHECK_INT(quota_take(&q, QUOTA_FLOW, &a), 0);
	CHECK_INT(quota_take(&q, QUOTA_FLOW, &a), 0);
	CHECK(quota_take(&q, QUOTA_FLOW, &a) < 0);            /* per client */
	CHECK_INT(quota_take(&q, QUOTA_FLOW, &b), 0);
	/* One /64 is one client, whatever addresses it picks. */
	CHECK_INT(quota_take(&q, QUOTA_FLOW, &v6a), 0);
	CHECK_INT(quota_take(&q, QUOTA_FLOW, &v6b), 0);
	CHECK(quota_take(&q, QUOTA_FLOW, &v6a) < 0);
	/* The total: 5 taken. */
	CHECK(quota_take(&q, QUOTA_FLOW, &v6c) < 0);
	/* Handshakes are counted apart. */
	quota_set(&q, QUOTA_HANDSHAKE, 0, 1);
	CHECK_INT(quota_take(&q, QUOTA_HANDSHAKE, &a), 0);
	CHECK(quota_take(&q, QUOTA_HANDSHAKE, &a) < 0);
	/* Released, they come back. */
	quota_release(&q, QUOTA_FLOW, &a);
	CHECK_INT(quota_take(&q, QUOTA_FLOW, &v6c), 0);
	quota_release(&q, QUOTA_FLOW, &v6b);
	CHECK_INT(quota_take(&q, QUOTA_FLOW, &a), 0);
	quota_free(&q);
}

int main(void)
{
	RUN(test_cookie);
	RUN(test_quota);
	return check_finish();
}
