/* The kernel caches the TCP Fast Open cookie a concentrator gave us
 * (tcp_metrics). When the concentrator no longer accepts it (its key
 * changed: a reboot, a rotation, another box behind the same address), a
 * SYN carrying data with it has its data refused, and the kernel then falls
 * the MPTCP connection back to plain TCP: one path, no failover. Forgetting
 * the cookie makes the next connection ask for a fresh one, whole. */
#include "agent.h"
#include "nl.h"

#include <errno.h>
#include <linux/tcp_metrics.h>
#include <string.h>

_Static_assert(TCP_METRICS_CMD_DEL == 2, "TCP_METRICS_CMD_DEL is 2 in the kernel ABI");
_Static_assert(TCP_METRICS_ATTR_ADDR_IPV4 == 1 && TCP_METRICS_ATTR_ADDR_IPV6 == 2,
	       "tcp_metrics address attributes are 1 and 2 in the kernel ABI");

int tfo_cookie_forget(const struct in6_addr *dst)
{
	char buf[256];
	struct nlmsghdr *nlh;
	struct nl nl;
	uint16_t family;
	int r;

	r = nl_open(&nl, NETLINK_GENERIC);
	if (r < 0)
		return r;
	r = nl_genl_family(&nl, TCP_METRICS_GENL_NAME, &family);
	if (r == 0) {
		nlh = nl_genl_put(buf, family, TCP_METRICS_CMD_DEL, NLM_F_ACK, nl_next_seq(&nl),
				  TCP_METRICS_GENL_VERSION);
		/* No source address: every entry for dst, whichever path. */
		if (IN6_IS_ADDR_V4MAPPED(dst))
			mnl_attr_put(nlh, TCP_METRICS_ATTR_ADDR_IPV4, 4, dst->s6_addr + 12);
		else
			mnl_attr_put(nlh, TCP_METRICS_ATTR_ADDR_IPV6, 16, dst->s6_addr);
		r = nl_talk(&nl, nlh, NULL, NULL);
		if (r == -ESRCH || r == -ENOENT)
			r = 0;  /* nothing cached: nothing to forget */
	}
	nl_close(&nl);
	return r;
}
