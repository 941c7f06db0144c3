/* The concentrator's own addresses are never destinations. They change
 * while it runs: keepalived moves a VIP in, IPv6 makes a new temporary
 * address, DHCP renews, an AnyIP prefix is routed to lo, a default route's
 * next hop (the box's router, policy.c) changes. A thread listens for
 * rtnetlink address events, local-table and default route events and, 50 ms
 * after a burst of them, lists the addresses again and swaps the list into
 * the live policy. A listing that fails (EMFILE, ENOMEM) keeps the last
 * list and is tried again every second until it works; while none ever
 * worked, every destination is refused (policy.c). This thread owns the
 * list: a reload keeps it (main.c), so a change between a reload's own
 * listing and its swap is not lost. */
#include "concentrator.h"

#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/nexthop.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 0, or -errno when the listing failed (the last list stays). */
static int refresh(struct conc *c)
{
	struct addr_prefix *own;
	uint32_t nh[POLICY_MAX_NH];
	unsigned n, nnh = 0;
	int r = policy_list_own_nh(&own, &n, nh, &nnh);

	if (r < 0) {
		log_errno(r, "own addresses: cannot list them, keeping the last list and trying "
			  "again in a second: %m");
		return r;
	}
	pthread_rwlock_wrlock(&c->live_lock);
	policy_set_own(&c->cfg.policy, own, n);
	memcpy(c->own_nh, nh, nnh * sizeof(*nh));
	c->own_nnh = nnh;
	pthread_rwlock_unlock(&c->live_lock);
	atomic_fetch_add(&c->policy_gen, 1);
	atomic_fetch_add(&c->own_refreshes, 1);
	log_debug("own addresses: %u, refreshed", n);
	return 0;
}

/* Whether a burst of rtnetlink messages holds news for the own list: an
 * address change, a route change in the local table, or a default route's
 * (its next hops are the box's routers); other routes, a full BGP table
 * among them, are not ours to follow. */
/* Whether a nexthop message names an object the routers came from. */
static bool nh_followed(struct conc *c, const struct nlmsghdr *m)
{
	const struct nlattr *attr;
	bool r = false;

	if (m->nlmsg_len < NLMSG_LENGTH(sizeof(struct nhmsg)))
		return false;
	pthread_rwlock_rdlock(&c->live_lock);
	mnl_attr_for_each(attr, m, sizeof(struct nhmsg))
		if (mnl_attr_get_type(attr) == NHA_ID && mnl_attr_get_payload_len(attr) == 4)
			for (unsigned i = 0; i < c->own_nnh && !r; i++)
				r = c->own_nh[i] == mnl_attr_get_u32(attr);
	pthread_rwlock_unlock(&c->live_lock);
	return r;
}

static bool news(struct conc *c, const char *buf, ssize_t len)
{
	int left = (int)len;

	for (const struct nlmsghdr *m = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(m, left);
	     m = mnl_nlmsg_next(m, &left)) {
		if (m->nlmsg_type == RTM_NEWADDR || m->nlmsg_type == RTM_DELADDR)
			return true;
		/* A nexthop object the routers came from changed (others, a
		 * routing daemon's many, are not ours to follow; a default
		 * route moving to a new object is a route event). */
		if ((m->nlmsg_type == RTM_NEWNEXTHOP || m->nlmsg_type == RTM_DELNEXTHOP) &&
		    nh_followed(c, m))
			return true;
		if ((m->nlmsg_type == RTM_NEWROUTE || m->nlmsg_type == RTM_DELROUTE) &&
		    m->nlmsg_len >= NLMSG_LENGTH(sizeof(struct rtmsg))) {
			const struct rtmsg *rtm = NLMSG_DATA(m);

			/* Local routes, and default routes (the routers). */
			if (rtm->rtm_table == RT_TABLE_LOCAL || rtm->rtm_dst_len == 0)
				return true;
		}
	}
	return false;
}

static void *watch_main(void *arg)
{
	struct conc *c = arg;
	char buf[8192];
	int fd = mnl_socket_get_fd(c->own_nl);

	/* "failed" at first: one more listing a second after start, so one
	 * that failed at start (or in ownaddr_start) is tried again. */
	bool failed = true;

	for (;;) {
		struct pollfd pf[2] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = c->own_stop[0], .events = POLLIN },
		};
		bool events = failed;
		int k = poll(pf, 2, failed ? 1000 : -1);

		if (k < 0 && errno != EINTR)
			break;
		if (pf[1].revents)
			break;
		/* A burst (an interface with many addresses going away) is one
		 * refresh: drain, wait 50 ms, drain again. Overflow (ENOBUFS)
		 * loses events, not the refresh. */
		for (int round = 0; round < 2; round++) {
			ssize_t n;

			while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0 || errno == ENOBUFS)
				events |= n <= 0 || news(c, buf, n);
			if (!round && events)
				poll(pf + 1, 1, 50);
		}
		if (events)
			failed = refresh(c) < 0;
	}
	return NULL;
}

int ownaddr_start(struct conc *c)
{
	int r;

	c->own_nl = mnl_socket_open(NETLINK_ROUTE);
	if (!c->own_nl)
		return -errno;
	if (mnl_socket_bind(c->own_nl, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE |
			    RTMGRP_IPV6_ROUTE, MNL_SOCKET_AUTOPID) < 0 ||
	    pipe2(c->own_stop, O_CLOEXEC) < 0) {
		r = -errno;
		mnl_socket_close(c->own_nl);
		c->own_nl = NULL;
		return r;
	}
	/* Nexthop objects (a group above 31: not in bind's bit mask). Best
	 * effort: without it, a changed object is seen at the next route or
	 * address event. */
	{
		int grp = RTNLGRP_NEXTHOP;

		setsockopt(mnl_socket_get_fd(c->own_nl), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &grp,
			   sizeof(grp));
	}
	r = pthread_create(&c->own_thread, NULL, watch_main, c);
	if (r) {
		close(c->own_stop[0]);
		close(c->own_stop[1]);
		mnl_socket_close(c->own_nl);
		c->own_nl = NULL;
		return -r;
	}
	pthread_setname_np(c->own_thread, "ownaddr");
	/* Addresses that changed between the first listing and the
	 * subscription are caught by listing once more now. (A failure here
	 * is retried by the thread at its next event; an unknown list already
	 * refuses every destination.) */
	refresh(c);
	return 0;
}

void ownaddr_stop(struct conc *c)
{
	if (!c->own_nl)
		return;
	(void)!write(c->own_stop[1], "x", 1);
	pthread_join(c->own_thread, NULL);
	close(c->own_stop[0]);
	close(c->own_stop[1]);
	mnl_socket_close(c->own_nl);
	c->own_nl = NULL;
}

