/* MPTCP endpoints and limits through the kernel's in-kernel path manager,
 * over generic netlink (family "mptcp_pm") with libmnl: what `ip mptcp
 * endpoint` and `ip mptcp limits` do, without running ip. Library code: no
 * logging; every function returns >= 0 or -errno. Addresses are in6, IPv4
 * mapped (::ffff:a.b.c.d). */
#ifndef GW_AGENT_PM_H
#define GW_AGENT_PM_H

#include <netinet/in.h>
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
int pm_flush(struct pm *pm);
int pm_set_limits(struct pm *pm, uint32_t subflows, uint32_t add_addr_accepted);
int pm_get_limits(struct pm *pm, uint32_t *ret_subflows, uint32_t *ret_add_addr_accepted);
/* Up to max endpoints into ret; returns how many there are. */
int pm_dump(struct pm *pm, struct pm_endpoint *ret, unsigned max);
const char *pm_flags_str(uint32_t flags, char *buf, size_t len);

#endif
