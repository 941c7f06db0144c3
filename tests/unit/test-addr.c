/* common/addr: parsing, prefix matching, formatting. */
#include "addr.h"
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>

static struct in6_addr A(const char *s)
{
	struct in6_addr a;
	struct in_addr v4;

	if (inet_pton(AF_INET, s, &v4) == 1) {
		memset(&a, 0, sizeof(a));
		a.s6_addr[10] = a.s6_addr[11] = 0xff;
		memcpy(a.s6_addr + 12, &v4, 4);
	} else if (inet_pton(AF_INET6, s, &a) != 1) {
		/* A broken test, not a result: stop rather than go on with
		 * whatever a holds. */
		fprintf(stderr, "bad test address %s\n", s);
		exit(1);
	}
	return a;
}

static void test_hostport(void)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char buf[ADDR_STRLEN];

	CHECK_INT(addr_parse_hostport("203.0.113.2:80", -1, &ss, &sl), 0);
	CHECK_INT(ss.ss_family, AF_INET);
	CHECK(strcmp(addr_format((struct sockaddr *)&ss, buf), "203.0.113.2:80") == 0);
	CHECK_INT(addr_parse_hostport("[2001:db8::1]:443", -1, &ss, &sl), 0);
	CHECK_INT(ss.ss_family, AF_INET6);
	CHECK(strcmp(addr_format((struct sockaddr *)&ss, buf), "[2001:db8::1]:443") == 0);
	CHECK_INT(addr_parse_hostport("[::]", 5124, &ss, &sl), 0);
	CHECK_INT(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 5124);
	CHECK_INT(addr_parse_hostport("0.0.0.0", 5124, &ss, &sl), 0);
	CHECK_INT(addr_parse_hostport("0.0.0.0", -1, &ss, &sl), -EINVAL);
	CHECK_INT(addr_parse_hostport("1.2.3.4:65536", -1, &ss, &sl), -ERANGE);
	CHECK_INT(addr_parse_hostport("1.2.3.4:", -1, &ss, &sl), -EINVAL);
	CHECK_INT(addr_parse_hostport("1.2.3.4:-1", -1, &ss, &sl), -EINVAL);
	CHECK_INT(addr_parse_hostport("1.2.3.4:80x", -1, &ss, &sl), -EINVAL);
	CHECK_INT(addr_parse_hostport("[2001:db8::1", -1, &ss, &sl), -EINVAL);
	CHECK_INT(addr_parse_hostport("[2001:db8::1]x", -1, &ss, &sl), -EINVAL);
	CHECK_INT(addr_parse_hostport("example.com:80", -1, &ss, &sl), -EINVAL);
	CHECK_INT(addr_parse_hostport("", 1, &ss, &sl), -EINVAL);
	/* Unbracketed IPv6 is an address without a port. */
	CHECK_INT(addr_parse_hostport("2001:db8::1", 7, &ss, &sl), 0);
	CHECK_INT(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 7);
}

static void test_prefix(void)
{
	struct addr_prefix p;
	char buf[ADDR_STRLEN];
	struct in6_addr a;

	CHECK_INT(addr_parse_prefix("10.0.0.0/8", &p), 0);
	CHECK_INT(p.len, 104);
	CHECK(strcmp(addr_format_prefix(&p, buf), "10.0.0.0/8") == 0);
	a = A("10.255.1.2");
	CHECK(addr_prefix_match(&p, &a));
	a = A("11.0.0.1");
	CHECK(!addr_prefix_match(&p, &a));
	/* An IPv6 address never matches an IPv4 prefix, and vice versa. */
	a = A("a00::1");
	CHECK(!addr_prefix_match(&p, &a));

	CHECK_INT(addr_parse_prefix("100.64.0.0/10", &p), 0);
	a = A("100.127.255.255");
	CHECK(addr_prefix_match(&p, &a));
	a = A("100.128.0.0");
	CHECK(!addr_prefix_match(&p, &a));

	CHECK_INT(addr_parse_prefix("fe80::/10", &p), 0);
	a = A("febf::1");
	CHECK(addr_prefix_match(&p, &a));
	a = A("fec0::1");
	CHECK(!addr_prefix_match(&p, &a));

	CHECK_INT(addr_parse_prefix("0.0.0.0/0", &p), 0);
	a = A("255.255.255.255");
	CHECK(addr_prefix_match(&p, &a));
	a = A("::1");
	CHECK(!addr_prefix_match(&p, &a));
	CHECK_INT(addr_parse_prefix("::/0", &p), 0);
	CHECK(addr_prefix_match(&p, &a));

	CHECK_INT(addr_parse_prefix("192.0.2.7", &p), 0);
	CHECK_INT(p.len, 128);

	CHECK_INT(addr_parse_prefix("10.0.0.0/33", &p), -ERANGE);
	CHECK_INT(addr_parse_prefix("2001:db8::/129", &p), -ERANGE);
	CHECK_INT(addr_parse_prefix("10.0.0.1/8", &p), -EINVAL);  /* host bits */
	CHECK_INT(addr_parse_prefix("10.0.0.0/", &p), -EINVAL);
	CHECK_INT(addr_parse_prefix("10.0.0.0/-1", &p), -EINVAL);
	CHECK_INT(addr_parse_prefix("10.0.0.0/8x", &p), -EINVAL);
	CHECK_INT(addr_parse_prefix("10.0.0/8", &p), -EINVAL);
	CHECK_INT(addr_parse_prefix("/8", &p), -EINVAL);
}

static void test_in6_roundtrip(void)
{
	struct sockaddr_storage ss;
	struct in6_addr a = A("198.51.100.7"), b;
	uint16_t port;
	char buf[ADDR_STRLEN];

	CHECK_INT(addr_from_in6(&a, 8080, &ss), sizeof(struct sockaddr_in));
	CHECK_INT(addr_to_in6((struct sockaddr *)&ss, &b, &port), 0);
	CHECK_MEM(&a, &b, 16);
	CHECK_INT(port, 8080);
	a = A("2001:db8::7");
	CHECK_INT(addr_from_in6(&a, 1, &ss), sizeof(struct sockaddr_in6));
	CHECK(strcmp(addr_format_in6(&a, 0, buf), "2001:db8::7") == 0);
	CHECK(!addr_is_v4mapped(&a));
}

int main(void)
{
	RUN(test_hostport);
	RUN(test_prefix);
	RUN(test_in6_roundtrip);
	return check_finish();
}
