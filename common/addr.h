/* Socket addresses: parse, format, compare, prefix match. IPv4 is handled as
 * IPv4-mapped IPv6 (::ffff:a.b.c.d) everywhere inside the daemons, which is
 * also how RFC 8803 carries it, so one prefix table covers both families. */
#ifndef COMMON_ADDR_H
#define COMMON_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An address prefix; IPv4 prefixes are stored mapped, len 96 + n. */
struct addr_prefix {
	struct in6_addr addr;
	uint8_t len;            /* 0..128 */
};

/* "ADDR:PORT", "[V6]:PORT" or, with default_port >= 0, also "ADDR" or "[V6]".
 * Fills *ret (sockaddr_in or sockaddr_in6) and *ret_len.
 * -EINVAL on syntax errors, -ERANGE on a bad port. */
int addr_parse_hostport(const char *s, int default_port,
			struct sockaddr_storage *ret, socklen_t *ret_len);

/* "10.0.0.0/8", "2001:db8::/32", or a bare address (/32 or /128).
 * Host bits set below the prefix are an error (-EINVAL), as a typo there
 * usually means the operator meant a different prefix. -ERANGE for a
 * length over 32/128. */
int addr_parse_prefix(const char *s, struct addr_prefix *ret);

bool addr_prefix_match(const struct addr_prefix *p, const struct in6_addr *a);

/* sockaddr_in/in6 -> in6 (mapped for IPv4) and port (host order). */
int addr_to_in6(const struct sockaddr *sa, struct in6_addr *ret_addr,
		uint16_t *ret_port);
/* in6 (mapped for IPv4) + port -> sockaddr_in or sockaddr_in6. */
socklen_t addr_from_in6(const struct in6_addr *a, uint16_t port,
			struct sockaddr_storage *ret);

bool addr_is_v4mapped(const struct in6_addr *a);

/* Destinations that are not the public Internet: private, CGNAT,
 * loopback, link-local, multicast, reserved, unique-local and the like
 * (IPv4 as ::ffff:a.b.c.d). The concentrator denies them unless its
 * operator allows them; the agent never connects to them itself. */
extern const char *const addr_special_ranges[];
extern const unsigned addr_nspecial_ranges;
/* Whether a is in one of them, or embeds (NAT64 64:ff9b::/96, 6to4
 * 2002::/16) an IPv4 address that is. */
bool addr_is_special(const struct in6_addr *a);

#define ADDR_STRLEN (INET6_ADDRSTRLEN + 8)
/* "203.0.113.2:80" or "[2001:db8::1]:443"; port 0 prints no port. */
const char *addr_format_in6(const struct in6_addr *a, uint16_t port,
			    char buf[ADDR_STRLEN]);
const char *addr_format(const struct sockaddr *sa, char buf[ADDR_STRLEN]);
const char *addr_format_prefix(const struct addr_prefix *p,
			       char buf[ADDR_STRLEN]);

#endif
