/* MPTCP endpoints and limits through the kernel's in-kernel path manager,
 * over generic netlink (family "mptcp_pm") with libmnl: what `ip mptcp
 * endpoint` and `ip mptcp limits` do, without running ip. Library code: no
 * logging; every function returns >= 0 or -errno. Addresses are in6, IPv4
 * mapped (::ffff:a.b.c.d). */
#ifndef GW_AGENT_PM_H
#define GW_AGENT_PM_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nl.h"

struct pm {
	struct nl nl;
	uint16_t family;     /* resolved genl family id */
};

struct pm_endpoint {
	uint8_t id;
	uint32_t flags;       /* PM_FLAG_* */
	int32_t ifindex;
	struct in6_addr addr;
};

#define PM_FLAG_SIGNAL   (1u << 0)
#define PM_FLAG_SUBFLOW  (1u << 1)
#define PM_FLAG_BACKUP   (1u << 2)
#define PM_FLAG_FULLMESH (1u << 3)

int pm_open(struct pm *pm);
void pm_close(struct pm *pm);
/* Add an endpoint; the kernel picks the id, which is returned (1..255). */
int pm_add(struct pm *pm, const struct in6_addr *a, int ifindex, uint32_t flags);
int pm_del(struct pm *pm, uint8_t id);
/* An endpoint's flags changed in place (backup: MP_PRIO on its subflows
 * of every connection): 0 or -errno. */
int pm_set_flags(struct pm *pm, uint8_t id, uint32_t flags);
int pm_flush(struct pm *pm);
int pm_set_limits(struct pm *pm, uint32_t subflows, uint32_t add_addr_accepted);
int pm_get_limits(struct pm *pm, uint32_t *ret_subflows, uint32_t *ret_add_addr_accepted);
/* Up to max endpoints into ret; returns how many there are. */
int pm_dump(struct pm *pm, struct pm_endpoint *ret, unsigned max);
const char *pm_flags_str(uint32_t flags, char *buf, size_t len);

/* The userspace path manager (net.mptcp.path_manager=userspace): subflows
 * of one connection, named by its token. loc_port/rem_port in host order;
 * loc_port 0 = any (create), rem_port is the connection's. */
int pm_subflow_create(struct pm *pm, uint32_t token, const struct in6_addr *loc, uint8_t loc_id,
		      int ifindex, uint32_t flags, const struct in6_addr *rem, uint16_t rem_port);
int pm_subflow_destroy(struct pm *pm, uint32_t token, const struct in6_addr *loc,
		       uint16_t loc_port, const struct in6_addr *rem, uint16_t rem_port);
/* The local address id of one connection withdrawn (REMOVE): its
 * subflows closed, connecting or up, the id free again, RM_ADDR sent. */
int pm_remove_id(struct pm *pm, uint32_t token, uint8_t loc_id);
/* MP_PRIO on that one subflow: flags PM_FLAG_BACKUP or 0. */
int pm_subflow_set_flags(struct pm *pm, uint32_t token, const struct in6_addr *loc,
			 uint16_t loc_port, const struct in6_addr *rem, uint16_t rem_port,
			 uint32_t flags);

/* Events (MPTCP_EVENT_*) of every MPTCP connection in this namespace, on a
 * socket of their own: pm_events_open joins the multicast group. */
struct pm_event {
	uint8_t type;              /* MPTCP_EVENT_* */
	uint32_t token;
	uint8_t loc_id, rem_id;
	bool has_addrs;            /* saddr/daddr present */
	struct in6_addr saddr, daddr;  /* IPv4 mapped */
	uint16_t sport, dport;     /* host order, 0 = absent */
	bool backup, server_side;
	int32_t ifindex;
	uint8_t error;
};
int pm_events_open(struct pm *ev);
/* What is queued, without blocking, up to about max events (whole
 * datagrams): cb for each. Returns how many, or -ENOBUFS when the kernel
 * dropped some (the socket overran: whoever keeps state from events must
 * look again). */
int pm_events_read(struct pm *ev, unsigned max,
		   void (*cb)(const struct pm_event *e, void *data), void *data);
/* The parser alone (fuzzed): 0, or -EINVAL for a malformed message. */
int pm_event_parse(const struct nlmsghdr *nlh, struct pm_event *ret);

#endif
