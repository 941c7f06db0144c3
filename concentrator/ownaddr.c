/* The concentrator's own addresses are never destinations. They change
 * while it runs: keepalived moves a VIP in, IPv6 makes a new temporary
 * address, DHCP renews. A thread listens for rtnetlink address events and,
 * 50 ms after a burst of them, lists the addresses again and swaps the list
 * into the live policy. */
#include "concentrator.h"

#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void refresh(struct conc *c)
{
	struct addr_prefix *own;
	unsigned n;
	int r = policy_list_own(&own, &n);

	if (r < 0) {
		log_errno(r, "own addresses: cannot list them, keeping the last list: %m");
		return;
	}
	pthread_rwlock_wrlock(&c->live_lock);
	policy_set_own(&c->cfg.policy, own, n);
	pthread_rwlock_unlock(&c->live_lock);
	atomic_fetch_add(&c->own_refreshes, 1);
	log_debug("own addresses: %u, refreshed", n);
}

static void *watch_main(void *arg)
{
	struct conc *c = arg;
	char buf[8192];
	int fd = mnl_socket_get_fd(c->own_nl);

	for (;;) {
		struct pollfd pf[2] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = c->own_stop[0], .events = POLLIN },
		};
		bool events = false;

		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents)
			break;
		/* A burst (an interface with many addresses going away) is one
		 * refresh: drain, wait 50 ms, drain again. Overflow (ENOBUFS)
		 * loses events, not the refresh. */
		for (int round = 0; round < 2; round++) {
			while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0 || errno == ENOBUFS)
				events = true;
			if (!round)
				poll(pf + 1, 1, 50);
		}
		if (events)
			refresh(c);
	}
	return NULL;
}

int ownaddr_start(struct conc *c)
{
	int r;

	c->own_nl = mnl_socket_open(NETLINK_ROUTE);
	if (!c->own_nl)
		return -errno;
	if (mnl_socket_bind(c->own_nl, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR, MNL_SOCKET_AUTOPID) < 0 ||
	    pipe2(c->own_stop, O_CLOEXEC) < 0) {
		r = -errno;
		mnl_socket_close(c->own_nl);
		c->own_nl = NULL;
		return r;
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
	 * subscription are caught by listing once more now. */
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
