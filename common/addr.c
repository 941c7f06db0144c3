#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool addr_is_v4mapped(const struct in6_addr *a)
{
	return IN6_IS_ADDR_V4MAPPED(a);
}

static void map_v4(struct in6_addr *ret, const struct in_addr *v4)
{
	memset(ret, 0, sizeof(*ret));
	ret->s6_addr[10] = 0xff;
	ret->s6_addr[11] = 0xff;
	memcpy(ret->s6_addr + 12, &v4->s_addr, 4);
}

static int parse_port(const char *s, uint16_t *ret)
{
	char *end;
	unsigned long v;

	if (!*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno || v > 65535)
		return -ERANGE;
	*ret = (uint16_t)v;
	return 0;
}

int addr_parse_hostport(const char *s, int default_port,
			struct sockaddr_storage *ret, socklen_t *ret_len)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port_s = NULL;
	uint16_t port;
	size_t hl;
	int r;

	if (!s)
		return -EINVAL;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close)
			return -EINVAL;
		hl = (size_t)(close - s - 1);
		if (close[1] == ':')
			port_s = close + 2;
		else if (close[1] != '\0')
			return -EINVAL;
		s++;
	} else {
		const char *colon = strrchr(s, ':');

		/* An unbracketed address with several colons is IPv6 without
		 * a port; require brackets for a port to stay unambiguous. */
		if (colon && strchr(s, ':') == colon) {
			hl = (size_t)(colon - s);
			port_s = colon + 1;
		} else {
			hl = strlen(s);
		}
	}
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';

	if (port_s) {
		r = parse_port(port_s, &port);
		if (r < 0)
			return r;
	} else if (default_port >= 0 && default_port <= 65535) {
		port = (uint16_t)default_port;
	} else {
		return -EINVAL;
	}

	memset(ret, 0, sizeof(*ret));
	{
		struct sockaddr_in *sin = (struct sockaddr_in *)ret;
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ret;

		if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
			sin->sin_family = AF_INET;
			sin->sin_port = htons(port);
			*ret_len = sizeof(*sin);
			return 0;
		}
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
			sin6->sin6_family = AF_INET6;
			sin6->sin6_port = htons(port);
			*ret_len = sizeof(*sin6);
			return 0;
		}
	}
	return -EINVAL;
}

int addr_parse_prefix(const char *s, struct addr_prefix *ret)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash;
	struct in6_addr a;
	struct in_addr v4;
	unsigned long len;
	size_t hl;
	int is_v4, max;

	if (!s)
		return -EINVAL;
	slash = strchr(s, '/');
	hl = slash ? (size_t)(slash - s) : strlen(s);
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';

	if (inet_pton(AF_INET, host, &v4) == 1) {
		map_v4(&a, &v4);
		is_v4 = 1;
	} else if (inet_pton(AF_INET6, host, &a) == 1) {
		is_v4 = 0;
	} else {
		return -EINVAL;
	}
	max = is_v4 ? 32 : 128;
	if (slash) {
		char *end;

		if (!slash[1] || slash[1] == '-' || slash[1] == '+')
			return -EINVAL;
		errno = 0;
		len = strtoul(slash + 1, &end, 10);
		if (*end)
			return -EINVAL;
		if (errno || len > (unsigned long)max)
			return -ERANGE;
	} else {
		len = (unsigned long)max;
	}
	if (is_v4)
		len += 96;

	/* Host bits below the prefix must be zero. */
	for (unsigned bit = (unsigned)len; bit < 128; bit++)
		if (a.s6_addr[bit / 8] & (0x80 >> (bit % 8)))
			return -EINVAL;

	ret->addr = a;
	ret->len = (uint8_t)len;
	return 0;
}

bool addr_prefix_match(const struct addr_prefix *p, const struct in6_addr *a)
{
	unsigned full = p->len / 8, rem = p->len % 8;

	if (memcmp(p->addr.s6_addr, a->s6_addr, full) != 0)
		return false;
	if (rem) {
		uint8_t mask = (uint8_t)(0xff << (8 - rem));

		if ((p->addr.s6_addr[full] ^ a->s6_addr[full]) & mask)
			return false;
	}
	return true;
}

int addr_to_in6(const struct sockaddr *sa, struct in6_addr *ret_addr,
		uint16_t *ret_port)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		map_v4(ret_addr, &sin->sin_addr);
		if (ret_port)
			*ret_port = ntohs(sin->sin_port);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		*ret_addr = sin6->sin6_addr;
		if (ret_port)
			*ret_port = ntohs(sin6->sin6_port);
		return 0;
	}
	return -EAFNOSUPPORT;
}

socklen_t addr_from_in6(const struct in6_addr *a, uint16_t port,
			struct sockaddr_storage *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (addr_is_v4mapped(a)) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ret;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, a->s6_addr + 12, 4);
		return sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ret;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		sin6->sin6_addr = *a;
		return sizeof(*sin6);
	}
}

const char *addr_format_in6(const struct in6_addr *a, uint16_t port,
			    char buf[ADDR_STRLEN])
{
	char h[INET6_ADDRSTRLEN];
	int v4 = addr_is_v4mapped(a);

	if (v4)
		inet_ntop(AF_INET, a->s6_addr + 12, h, sizeof(h));
	else
		inet_ntop(AF_INET6, a, h, sizeof(h));
	if (!port)
		snprintf(buf, ADDR_STRLEN, "%s", h);
	else if (v4)
		snprintf(buf, ADDR_STRLEN, "%s:%u", h, port);
	else
		snprintf(buf, ADDR_STRLEN, "[%s]:%u", h, port);
	return buf;
}

const char *addr_format(const struct sockaddr *sa, char buf[ADDR_STRLEN])
{
	struct in6_addr a;
	uint16_t port;

	if (addr_to_in6(sa, &a, &port) < 0) {
		snprintf(buf, ADDR_STRLEN, "(family %d)", sa->sa_family);
		return buf;
	}
	return addr_format_in6(&a, port, buf);
}

const char *addr_format_prefix(const struct addr_prefix *p,
			       char buf[ADDR_STRLEN])
{
	char h[INET6_ADDRSTRLEN];

	if (addr_is_v4mapped(&p->addr) && p->len >= 96) {
		inet_ntop(AF_INET, p->addr.s6_addr + 12, h, sizeof(h));
		snprintf(buf, ADDR_STRLEN, "%s/%u", h, p->len - 96);
	} else {
		inet_ntop(AF_INET6, &p->addr, h, sizeof(h));
		snprintf(buf, ADDR_STRLEN, "%s/%u", h, p->len);
	}
	return buf;
}

const char *const addr_special_ranges[] = {
	/* IPv4 (matched as ::ffff:a.b.c.d) */
	"0.0.0.0/8",        /* this network, unspecified */
	"168.63.129.16/32", /* a cloud platform's host service (Azure's) */
	"10.0.0.0/8",       /* RFC 1918 */
	"100.64.0.0/10",    /* CGNAT, RFC 6598 */
	"127.0.0.0/8",      /* loopback */
	"169.254.0.0/16",   /* link-local */
	"172.16.0.0/12",    /* RFC 1918 */
	"192.168.0.0/16",   /* RFC 1918 */
	"224.0.0.0/4",      /* multicast */
	"240.0.0.0/4",      /* reserved, includes 255.255.255.255 */
	/* IPv6 */
	"::/128",           /* unspecified */
	"::1/128",          /* loopback */
	"::/96",            /* IPv4-compatible (deprecated) */
	"100::/64",         /* discard-only */
	"64:ff9b:1::/48",   /* local-use NAT64 */
	"fc00::/7",         /* unique local */
	"fe80::/10",        /* link-local */
	"fec0::/10",        /* site-local (deprecated) */
	"ff00::/8",         /* multicast */
};
const unsigned addr_nspecial_ranges = sizeof(addr_special_ranges) / sizeof(addr_special_ranges[0]);

static bool in_special(const struct in6_addr *a)
{
	for (unsigned i = 0; i < addr_nspecial_ranges; i++) {
		struct addr_prefix p;

		if (addr_parse_prefix(addr_special_ranges[i], &p) == 0 && addr_prefix_match(&p, a))
			return true;
	}
	return false;
}

bool addr_is_special(const struct in6_addr *a)
{
	static const uint8_t nat64[12] = { 0x00, 0x64, 0xff, 0x9b };
	struct in6_addr v4 = { .s6_addr = { [10] = 0xff, [11] = 0xff } };

	if (in_special(a))
		return true;
	if (!memcmp(a->s6_addr, nat64, 12)) {
		memcpy(v4.s6_addr + 12, a->s6_addr + 12, 4);
		return in_special(&v4);
	}
	if (a->s6_addr[0] == 0x20 && a->s6_addr[1] == 0x02) {
		memcpy(v4.s6_addr + 12, a->s6_addr + 2, 4);
		return in_special(&v4);
	}
	return false;
}
