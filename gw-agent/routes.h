/* Per-path routing over rtnetlink (libmnl): each WAN/mesh path gets a table
 * with its default route and rules "from <path address> lookup T" and
 * "oif <path> lookup T", so a subflow bound to a path's address leaves by
 * that path. Also reads links, addresses and default gateways. Library code:
 * no logging; 0 or -errno. Addresses are in6, IPv4 mapped. */
#ifndef GW_AGENT_ROUTES_H
#define GW_AGENT_ROUTES_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "nl.h"

struct rt {
	struct nl nl;
};

int rt_open(struct rt *rt);
void rt_close(struct rt *rt);

/* Rule "from src/len lookup table" (src NULL: none) or "oif ifname lookup
 * table" (ifname NULL: none), at priority prio. add: create; else delete.
 * Deleting what is not there returns -ENOENT. */
int rt_rule(struct rt *rt, bool add, int family, const struct in6_addr *src,
	    const char *oifname, uint32_t table, uint32_t prio);
/* Default route in table via gw (NULL: on-link) out of ifindex; replace.
 * unreachable: an "unreachable default" instead (gw and ifindex unused). */
int rt_default(struct rt *rt, bool add, int family, const struct in6_addr *gw,
	       int ifindex, uint32_t table, bool unreachable);

struct rt_link {
	int ifindex;
	bool up;        /* IFF_UP and carrier (IFF_LOWER_UP) */
};
int rt_link_get(struct rt *rt, const char *ifname, struct rt_link *ret);

/* The first global address of family on ifindex. -ENOENT when none. */
int rt_addr_get(struct rt *rt, int ifindex, int family, struct in6_addr *ret);
/* The gateway of a default route in the main table out of ifindex. */
int rt_gateway_get(struct rt *rt, int ifindex, int family, struct in6_addr *ret);

/* A socket joined to link, address and route notifications; its fd can be
 * polled and rt_events_drain() reads what is pending. */
int rt_events_open(struct rt *ev);
/* Reads what is pending; returns how many messages came from others than
 * the socket whose port id is own_portid (our own requests' echoes), 0
 * when none; 1 more when the kernel dropped some (ENOBUFS). */
int rt_events_drain(struct rt *ev, uint32_t own_portid);
int rt_fd(const struct rt *rt);

#endif
