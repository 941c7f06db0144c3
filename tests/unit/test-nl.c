/* common/nl.c against the kernel, in a network namespace of its own with
 * thousands of addresses: a dump given up by its callback, and dumps the
 * kernel interrupts because addresses change under them, leave the socket in
 * step, so the next request gets its own answer (issue 20: one interrupted
 * dump used to fail every later request with EPROTO until a restart). */
#include "nl.h"
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define ADDRS 4000

/* 10.0.0.0 + n /32 on lo. */
static int address(struct nl *nl, uint32_t n, bool add)
{
	char buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifaddrmsg *ifa;

	nlh->nlmsg_type = add ? RTM_NEWADDR : RTM_DELADDR;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
	nlh->nlmsg_seq = nl_next_seq(nl);
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = 32;
	ifa->ifa_index = 1;  /* lo */
	mnl_attr_put_u32(nlh, IFA_LOCAL, htonl(0x0a000000u + n));
	mnl_attr_put_u32(nlh, IFA_ADDRESS, htonl(0x0a000000u + n));
	return nl_talk(nl, nlh, NULL, NULL);
}

static int lo_up(struct nl *nl)
{
	char buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;

	nlh->nlmsg_type = RTM_NEWLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = nl_next_seq(nl);
	ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_index = 1;
	ifm->ifi_flags = ifm->ifi_change = IFF_UP;
	return nl_talk(nl, nlh, NULL, NULL);
}

static int count_cb(const struct nlmsghdr *nlh, void *data)
{
	(void)nlh;
	(*(unsigned *)data)++;
	return MNL_CB_OK;
}

static int fail_cb(const struct nlmsghdr *nlh, void *data)
{
	(void)nlh;
	(void)data;
	errno = ECANCELED;
	return MNL_CB_ERROR;
}

/* Every IPv4 address (the kernel marks the dump interrupted when the
 * addresses change while it runs). */
static int dump_addresses(struct nl *nl, mnl_cb_t cb, unsigned *n)
{
	char buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifaddrmsg *ifa;

	nlh->nlmsg_type = RTM_GETADDR;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = nl_next_seq(nl);
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	*n = 0;
	return nl_talk(nl, nlh, cb, n);
}

/* One link by index, asked without a dump: its one reply, then the ACK. */
static int get_lo(struct nl *nl, unsigned *n)
{
	char buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;

	nlh->nlmsg_type = RTM_GETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = nl_next_seq(nl);
	ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_index = 1;
	*n = 0;
	return nl_talk(nl, nlh, count_cb, n);
}

static struct nl nl;

static void test_given_up(void)
{
	unsigned n;

	for (int i = 0; i < 20; i++) {
		CHECK_INT(dump_addresses(&nl, fail_cb, &n), -ECANCELED);
		CHECK_INT(get_lo(&nl, &n), 0);
		CHECK_INT(n, 1);
		CHECK_INT(dump_addresses(&nl, count_cb, &n), 0);
		CHECK(n >= ADDRS);
	}
}

static atomic_bool stop;

static void *churn(void *arg)
{
	struct nl c;
	uint32_t i = 0;

	(void)arg;
	if (nl_open(&c, NETLINK_ROUTE) < 0)
		return NULL;
	while (!atomic_load(&stop)) {
		address(&c, ADDRS + (i % 64), true);
		address(&c, ADDRS + (i % 64), false);
		i++;
	}
	nl_close(&c);
	return NULL;
}

static void test_interrupted(void)
{
	unsigned n, intr = 0, other = 0;
	pthread_t t;

	CHECK_INT(pthread_create(&t, NULL, churn, NULL), 0);
	for (int i = 0; i < 300; i++) {
		int r = dump_addresses(&nl, count_cb, &n);

		if (r == -EINTR)
			intr++;
		else if (r < 0)
			other++;
		CHECK_INT(get_lo(&nl, &n), 0);
		CHECK_INT(n, 1);
	}
	atomic_store(&stop, true);
	pthread_join(t, NULL);
	printf("# 300 dumps under churn: %u interrupted, %u other errors\n", intr, other);
	CHECK_INT(other, 0);
	CHECK(intr > 0);  /* the churn did interrupt dumps: the case was met */
	CHECK_INT(dump_addresses(&nl, count_cb, &n), 0);
	CHECK(n >= ADDRS);
}

int main(void)
{
	if (unshare(CLONE_NEWNET) < 0) {
		printf("1..0 # SKIP needs a network namespace of its own (root)\n");
		return 77;
	}
	if (nl_open(&nl, NETLINK_ROUTE) < 0 || lo_up(&nl) < 0) {
		printf("Bail out! no rtnetlink\n");
		return 1;
	}
	for (uint32_t i = 0; i < ADDRS; i++)
		if (address(&nl, i, true) < 0) {
			printf("Bail out! cannot add address %u\n", i);
			return 1;
		}
	RUN(test_given_up);
	RUN(test_interrupted);
	nl_close(&nl);
	return check_finish();
}
