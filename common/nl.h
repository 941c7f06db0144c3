/* A netlink socket with libmnl, as both netlink users in the agent need it:
 * the generic-netlink path manager (pm.c) and rtnetlink (routes.c). Library
 * code: no logging; 0 or -errno. */
#ifndef COMMON_NL_H
#define COMMON_NL_H

#include <libmnl/libmnl.h>
#include <stdint.h>

struct nl {
	struct mnl_socket *sock;
	uint32_t seq;
	unsigned portid;
};

/* bus: NETLINK_GENERIC, NETLINK_ROUTE, ... */
int nl_open(struct nl *nl, int bus);
void nl_close(struct nl *nl);
/* Send nlh and run cb over the answers until the ACK or the end of the dump;
 * an NLMSG_ERROR answer comes back as its -errno. */
int nl_talk(struct nl *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data);

/* A generic-netlink request header in buf (nl_talk sends it). */
struct nlmsghdr *nl_genl_put(char *buf, uint16_t type, uint8_t cmd, uint16_t flags,
			     uint32_t seq, uint8_t version);
/* The id of generic-netlink family name: 0, -ENOENT (not in this
 * kernel) or -errno. */
int nl_genl_family(struct nl *nl, const char *name, uint16_t *ret_id);
/* The same, and the id of its multicast group `group` (-ENOENT when the
 * family or the group is not there). */
int nl_genl_family_group(struct nl *nl, const char *name, uint16_t *ret_id,
			 const char *group, uint32_t *ret_group);

static inline uint32_t nl_next_seq(struct nl *nl)
{
	return ++nl->seq;
}

#endif
