/* concentrator/policy: client allow-list, destination rules, limits. */
#include "check.h"
#include "policy.h"

#include <arpa/inet.h>
#include <errno.h>

static struct in6_addr A(const char *s)
{
	struct addr_prefix p;

	if (addr_parse_prefix(s, &p) < 0)
		fprintf(stderr, "bad test address %s\n", s);
	return p.addr;
}

static struct addr_prefix P(const char *s)
{
	struct addr_prefix p;

	if (addr_parse_prefix(s, &p) < 0)
		fprintf(stderr, "bad test prefix %s\n", s);
	return p;
}

static int denied(const struct policy *p, const char *a)
{
	struct in6_addr x = A(a);
	const char *why = NULL;
	int r = policy_check_dest(p, &x, 80, &why);

	if (r < 0 && !why)
		return -1;
	return r < 0;
}

static void test_default_denies(void)
{
	struct policy p;
	static const char *const deny[] = {
		"127.0.0.1", "0.0.0.0", "10.1.2.3", "172.16.0.1", "172.31.255.255",
		"192.168.1.1", "100.64.0.1", "100.127.255.254", "169.254.1.1",
		"224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
		"::", "::1", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
		"::10.0.0.1",             /* IPv4-compatible */
		"64:ff9b::a00:1",         /* NAT64 of 10.0.0.1 */
		"64:ff9b::7f00:1",        /* NAT64 of 127.0.0.1 */
		"2002:c0a8:101::1",       /* 6to4 of 192.168.1.1 */
		"64:ff9b:1::1",           /* local-use NAT64 */
	};
	static const char *const allow[] = {
		"192.0.2.1", "198.51.100.1", "203.0.113.1", "198.18.0.1", "198.19.255.255",
		"2001:db8::1", "8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1",
		"64:ff9b::808:808",       /* NAT64 of 8.8.8.8 */
		"2606:4700::1111",
	};

	CHECK_INT(policy_init(&p), 0);
	for (size_t i = 0; i < sizeof(deny) / sizeof(deny[0]); i++)
		if (denied(&p, deny[i]) != 1) {
			check_failed++;
			fprintf(stderr, "%s should be denied\n", deny[i]);
		}
	for (size_t i = 0; i < sizeof(allow) / sizeof(allow[0]); i++)
		if (denied(&p, allow[i]) != 0) {
			check_failed++;
			fprintf(stderr, "%s should be allowed\n", allow[i]);
		}
	/* Port 0 is never a destination. */
	{
		struct in6_addr x = A("203.0.113.1");
		const char *why;
		CHECK_INT(policy_check_dest(&p, &x, 0, &why), -EACCES);
	}
	policy_free(&p);
}

static void test_overrides(void)
{
	struct policy p;
	struct addr_prefix x;

	CHECK_INT(policy_init(&p), 0);
	/* Longer operator allow carves a hole in a built-in deny. */
	x = P("10.20.0.0/16");
	CHECK_INT(policy_add_dest(&p, &x, true, false), 0);
	CHECK_INT(denied(&p, "10.20.1.1"), 0);
	CHECK_INT(denied(&p, "10.21.1.1"), 1);
	/* And a longer deny inside the allow wins again. */
	x = P("10.20.30.0/24");
	CHECK_INT(policy_add_dest(&p, &x, false, false), 0);
	CHECK_INT(denied(&p, "10.20.30.1"), 1);
	/* Equal length: operator beats built-in. */
	x = P("127.0.0.0/8");
	CHECK_INT(policy_add_dest(&p, &x, true, false), 0);
	CHECK_INT(denied(&p, "127.0.0.2"), 0);
	/* Equal length and origin: deny beats allow. */
	x = P("203.0.113.0/24");
	CHECK_INT(policy_add_dest(&p, &x, true, false), 0);
	CHECK_INT(policy_add_dest(&p, &x, false, false), 0);
	CHECK_INT(denied(&p, "203.0.113.9"), 1);
	/* A deny of a public range. */
	x = P("2001:db8:bad::/48");
	CHECK_INT(policy_add_dest(&p, &x, false, false), 0);
	CHECK_INT(denied(&p, "2001:db8:bad::1"), 1);
	CHECK_INT(denied(&p, "2001:db8:600d::1"), 0);
	policy_free(&p);
}

static void test_clients(void)
{
	struct policy p;
	struct addr_prefix x;
	struct in6_addr a;

	CHECK_INT(policy_init(&p), 0);
	a = A("198.51.100.2");
	CHECK(!policy_client_allowed(&p, &a));  /* nobody by default */
	x = P("198.51.100.0/30");
	CHECK_INT(policy_add_client(&p, &x), 0);
	CHECK(policy_client_allowed(&p, &a));
	a = A("198.51.100.4");
	CHECK(!policy_client_allowed(&p, &a));
	p.allow_any_client = true;
	CHECK(policy_client_allowed(&p, &a));
	policy_free(&p);
}

static void test_limits(void)
{
	struct limits l;
	struct in6_addr a = A("198.51.100.2"), b = A("2001:db8::2");

	CHECK_INT(limits_init(&l, 5, 2), 0);
	CHECK_INT(limits_take(&l, &a), 0);
	CHECK_INT(limits_take(&l, &a), 0);
	CHECK_INT(limits_take(&l, &a), -EDQUOT);
	CHECK_INT(limits_take(&l, &b), 0);
	CHECK_INT(limits_take(&l, &b), 0);
	{
		struct in6_addr c = A("192.0.2.9");
		CHECK_INT(limits_take(&l, &c), 0);
		CHECK_INT(limits_take(&l, &c), -EUSERS);  /* 5 in total */
		limits_release(&l, &c);
	}
	limits_release(&l, &a);
	CHECK_INT(limits_take(&l, &a), 0);
	limits_release(&l, &a);
	limits_release(&l, &a);
	limits_release(&l, &a);  /* one too many: ignored, never underflows */
	CHECK_INT(l.flows, 2);
	limits_release(&l, &b);
	limits_release(&l, &b);
	CHECK_INT(l.flows, 0);
	CHECK_INT(l.used, 0);
	limits_free(&l);

	/* Many clients: growth and backward-shift deletion keep counts right. */
	CHECK_INT(limits_init(&l, 0, 3), 0);
	for (int round = 0; round < 2; round++) {
		for (uint32_t i = 0; i < 5000; i++) {
			struct in6_addr x = A("2001:db8::");
			memcpy(x.s6_addr + 12, &i, 4);
			CHECK_INT(limits_take(&l, &x), 0);
			if (i % 3 == 0)
				CHECK_INT(limits_take(&l, &x), 0);
		}
		for (uint32_t i = 0; i < 5000; i += 2) {
			struct in6_addr x = A("2001:db8::");
			memcpy(x.s6_addr + 12, &i, 4);
			limits_release(&l, &x);
			if (i % 3 == 0)
				limits_release(&l, &x);
		}
		for (uint32_t i = 1; i < 5000; i += 2) {
			struct in6_addr x = A("2001:db8::");
			memcpy(x.s6_addr + 12, &i, 4);
			limits_release(&l, &x);
			if (i % 3 == 0)
				limits_release(&l, &x);
		}
		CHECK_INT(l.flows, 0);
		CHECK_INT(l.used, 0);
	}
	limits_free(&l);
}

int main(void)
{
	RUN(test_default_denies);
	RUN(test_overrides);
	RUN(test_clients);
	RUN(test_limits);
	return check_finish();
}
