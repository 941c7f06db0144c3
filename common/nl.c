#include "nl.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* Large enough for a dump batch of links, addresses or routes. */
#define NL_BUF 16384

int nl_open(struct nl *nl, int bus)
{
	int r;

	memset(nl, 0, sizeof(*nl));
	nl->sock = mnl_socket_open(bus);
	if (!nl->sock)
		return -errno;
	if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
		r = -errno;
		nl_close(nl);
		return r;
	}
	nl->portid = mnl_socket_get_portid(nl->sock);
	nl->seq = (uint32_t)time(NULL);
	return 0;
}

void nl_close(struct nl *nl)
{
	if (nl->sock)
		mnl_socket_close(nl->sock);
	nl->sock = NULL;
}

int nl_talk(struct nl *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
	char buf[NL_BUF];
	int r;

	if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		r = (int)mnl_socket_recvfrom(nl->sock, buf, sizeof(buf));
		if (r < 0)
			return -errno;
		r = mnl_cb_run(buf, (size_t)r, nlh->nlmsg_seq, nl->portid, cb, data);
		if (r <= 0)
			return r < 0 ? -errno : 0;
	}
}
