#include "routes.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/fib_rules.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <time.h>

#define RT_BUF 16384

int rt_open(struct rt *rt)
{
	return nl_open(&rt->nl, NETLINK_ROUTE);
}

void rt_close(struct rt *rt)
{
	nl_close(&rt->nl);
}

int rt_fd(const struct rt *rt)
{
	return mnl_socket_get_fd(rt->nl.sock);
}

static void put_in6(struct nlmsghdr *nlh, uint16_t type, int family,
		    const struct in6_addr *a)
{
	if (family == AF_INET)
		mnl_attr_put(nlh, type, 4, a->s6_addr + 12);
	else
		mnl_attr_put(nlh, type, 16, a);
}

int rt_rule(struct rt *rt, bool add, int family, const struct in6_addr *src,
	    const char *oifname, uint32_t table, uint32_t prio)
{
	char buf[RT_BUF];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct fib_rule_hdr *h;

	nlh->nlmsg_type = add ? RTM_NEWRULE : RTM_DELRULE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
	nlh->nlmsg_seq = nl_next_seq(&rt->nl);
	h = mnl_nlmsg_put_extra_header(nlh, sizeof(*h));
	h->family = (uint8_t)family;
	h->action = FR_ACT_TO_TBL;
	h->table = table < 256 ? (uint8_t)table : RT_TABLE_UNSPEC;
	mnl_attr_put_u32(nlh, FRA_TABLE, table);
	mnl_attr_put_u32(nlh, FRA_PRIORITY, prio);
	if (src) {
		h->src_len = family == AF_INET ? 32 : 128;
		put_in6(nlh, FRA_SRC, family, src);
	}
	if (oifname)
		mnl_attr_put_strz(nlh, FRA_OIFNAME, oifname);
	return nl_talk(&rt->nl, nlh, NULL, NULL);
}

int rt_default(struct rt *rt, bool add, int family, const struct in6_addr *gw,
	       int ifindex, uint32_t table, bool unreachable)
{
	char buf[RT_BUF];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct rtmsg *m;

	nlh->nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_REPLACE : 0);
	nlh->nlmsg_seq = nl_next_seq(&rt->nl);
	m = mnl_nlmsg_put_extra_header(nlh, sizeof(*m));
	m->rtm_family = (uint8_t)family;
	m->rtm_table = table < 256 ? (uint8_t)table : RT_TABLE_UNSPEC;
	m->rtm_protocol = RTPROT_STATIC;
	/* A delete matches any type and scope, as `ip route del` does. */
	m->rtm_scope = !add ? RT_SCOPE_NOWHERE :
		gw || unreachable ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
	m->rtm_type = !add ? RTN_UNSPEC : unreachable ? RTN_UNREACHABLE : RTN_UNICAST;
	mnl_attr_put_u32(nlh, RTA_TABLE, table);
	/* IPv6 checks a gateway against the route's own table first, where
	 * our own default via that gateway makes a refresh fail with
	 * EHOSTUNREACH. The gateway is on this link (we learned it from the
	 * link's routes or the operator named it for this path): say so. */
	if (add && family == AF_INET6 && gw && !unreachable)
		m->rtm_flags |= RTNH_F_ONLINK;
	if (gw && !unreachable)
		put_in6(nlh, RTA_GATEWAY, family, gw);
	if (ifindex > 0 && !unreachable)
		mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)ifindex);
	return nl_talk(&rt->nl, nlh, NULL, NULL);
}

/* ---- reading state ---- */

struct link_ctx {
	const char *name;
	struct rt_link *out;
	int found;
};

static int link_attr_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(attr);

	if (mnl_attr_type_valid(attr, IFLA_MAX) < 0)
		return MNL_CB_OK;
	if (type == IFLA_IFNAME && mnl_attr_validate(attr, MNL_TYPE_STRING) < 0)
		return MNL_CB_ERROR;
	tb[type] = attr;
	return MNL_CB_OK;
}

static int link_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *tb[IFLA_MAX + 1] = { 0 };
	const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
	struct link_ctx *c = data;

	if (mnl_attr_parse(nlh, sizeof(*ifm), link_attr_cb, tb) != MNL_CB_OK)
		return MNL_CB_ERROR;
	if (!tb[IFLA_IFNAME] || strcmp(mnl_attr_get_str(tb[IFLA_IFNAME]), c->name))
		return MNL_CB_OK;
	c->out->ifindex = ifm->ifi_index;
	c->out->up = (ifm->ifi_flags & IFF_UP) && (ifm->ifi_flags & IFF_LOWER_UP);
	c->found = 1;
	return MNL_CB_OK;
}

int rt_link_get(struct rt *rt, const char *ifname, struct rt_link *ret)
{
	char buf[RT_BUF];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;
	struct link_ctx c = { .name = ifname, .out = ret };
	int r;

	nlh->nlmsg_type = RTM_GETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = nl_next_seq(&rt->nl);
	ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	r = nl_talk(&rt->nl, nlh, link_cb, &c);
	if (r < 0)
		return r;
	return c.found ? 0 : -ENODEV;
}

struct addr_ctx {
	int ifindex, family;
	struct in6_addr *out;
	int found;
};

static int addr_attr_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;

	if (mnl_attr_type_valid(attr, IFA_MAX) < 0)
		return MNL_CB_OK;
	tb[mnl_attr_get_type(attr)] = attr;
	return MNL_CB_OK;
}

static void to_in6(int family, const void *p, struct in6_addr *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (family == AF_INET) {
		ret->s6_addr[10] = ret->s6_addr[11] = 0xff;
		memcpy(ret->s6_addr + 12, p, 4);
	} else {
		memcpy(ret, p, 16);
	}
}

static int addr_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *tb[IFA_MAX + 1] = { 0 };
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	struct addr_ctx *c = data;
	const struct nlattr *a;
	size_t want = c->family == AF_INET ? 4 : 16;

	if (c->found || (int)ifa->ifa_index != c->ifindex || ifa->ifa_family != c->family ||
	    ifa->ifa_scope != RT_SCOPE_UNIVERSE)
		return MNL_CB_OK;
	if (ifa->ifa_flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED | IFA_F_DEPRECATED))
		return MNL_CB_OK;
	if (mnl_attr_parse(nlh, sizeof(*ifa), addr_attr_cb, tb) != MNL_CB_OK)
		return MNL_CB_ERROR;
	a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
	if (!a || mnl_attr_validate2(a, MNL_TYPE_BINARY, want) < 0)
		return MNL_CB_OK;
	to_in6(c->family, mnl_attr_get_payload(a), c->out);
	c->found = 1;
	return MNL_CB_OK;
}

int rt_addr_get(struct rt *rt, int ifindex, int family, struct in6_addr *ret)
{
	char buf[RT_BUF];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifaddrmsg *ifa;
	struct addr_ctx c = { .ifindex = ifindex, .family = family, .out = ret };
	int r;

	nlh->nlmsg_type = RTM_GETADDR;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = nl_next_seq(&rt->nl);
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)family;
	r = nl_talk(&rt->nl, nlh, addr_cb, &c);
	if (r < 0)
		return r;
	return c.found ? 0 : -ENOENT;
}

static int route_attr_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(attr);

	if (mnl_attr_type_valid(attr, RTA_MAX) < 0)
		return MNL_CB_OK;
	if ((type == RTA_OIF || type == RTA_TABLE) && mnl_attr_validate(attr, MNL_TYPE_U32) < 0)
		return MNL_CB_ERROR;
	tb[type] = attr;
	return MNL_CB_OK;
}

static int gw_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *tb[RTA_MAX + 1] = { 0 };
	const struct rtmsg *m = mnl_nlmsg_get_payload(nlh);
	struct addr_ctx *c = data;
	uint32_t table;

	if (c->found || m->rtm_family != c->family || m->rtm_dst_len != 0)
		return MNL_CB_OK;
	if (mnl_attr_parse(nlh, sizeof(*m), route_attr_cb, tb) != MNL_CB_OK)
		return MNL_CB_ERROR;
	table = tb[RTA_TABLE] ? mnl_attr_get_u32(tb[RTA_TABLE]) : m->rtm_table;
	if (table != RT_TABLE_MAIN || !tb[RTA_GATEWAY] || !tb[RTA_OIF] ||
	    (int)mnl_attr_get_u32(tb[RTA_OIF]) != c->ifindex ||
	    mnl_attr_validate2(tb[RTA_GATEWAY], MNL_TYPE_BINARY,
			       c->family == AF_INET ? 4 : 16) < 0)
		return MNL_CB_OK;
	to_in6(c->family, mnl_attr_get_payload(tb[RTA_GATEWAY]), c->out);
	c->found = 1;
	return MNL_CB_OK;
}

int rt_gateway_get(struct rt *rt, int ifindex, int family, struct in6_addr *ret)
{
	char buf[RT_BUF];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct rtmsg *m;
	struct addr_ctx c = { .ifindex = ifindex, .family = family, .out = ret };
	int r;

	nlh->nlmsg_type = RTM_GETROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = nl_next_seq(&rt->nl);
	m = mnl_nlmsg_put_extra_header(nlh, sizeof(*m));
	m->rtm_family = (uint8_t)family;
	r = nl_talk(&rt->nl, nlh, gw_cb, &c);
	if (r < 0)
		return r;
	return c.found ? 0 : -ENOENT;
}

int rt_events_open(struct rt *ev)
{
	int r = rt_open(ev);
	unsigned groups[] = { RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR,
			      RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE };

	if (r < 0)
		return r;
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
		if (mnl_socket_setsockopt(ev->nl.sock, NETLINK_ADD_MEMBERSHIP, &groups[i],
					  sizeof(groups[i])) < 0) {
			r = -errno;
			rt_close(ev);
			return r;
		}
	return 0;
}

int rt_events_drain(struct rt *ev, uint32_t own_portid)
{
	char buf[RT_BUF];
	int n = 0;

	for (;;) {
		ssize_t r = recv(mnl_socket_get_fd(ev->nl.sock), buf, sizeof(buf), MSG_DONTWAIT);
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
		int len = (int)r;

		if (r < 0)
			return errno == EAGAIN ? n : (errno == ENOBUFS ? n + 1 : -errno);
		if (r == 0)
			return n;
		/* A notification carries the port id of the socket whose
		 * request caused it (0 for the kernel's own changes). */
		for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len))
			if (nlh->nlmsg_pid != own_portid || !own_portid)
				n++;
	}
}
