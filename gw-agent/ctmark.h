/* A connection's conntrack mark, asked of the kernel over ctnetlink: how
 * nftables tells the agent a flow's traffic class (classes.h) without
 * changing the marks of the router's own sockets. */
#ifndef GW_AGENT_CTMARK_H
#define GW_AGENT_CTMARK_H

#include <netinet/in.h>
#include <stdint.h>

struct mnl_socket;

/* The mark of the connection src:sport -> dst:dport (proto IPPROTO_TCP or
 * _UDP; IPv4 as mapped addresses), into *ret. *nl: a socket opened on
 * first use and kept (one per thread; ctmark_close). 0, -ENOENT (no such
 * connection), or -errno. Waits at most 100 ms. */
int ctmark_get(struct mnl_socket **nl, const struct in6_addr *src, uint16_t sport,
	       const struct in6_addr *dst, uint16_t dport, uint8_t proto, uint32_t *ret);
void ctmark_close(struct mnl_socket **nl);

#endif
