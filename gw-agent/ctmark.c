#include "ctmark.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

static int open_nl(struct mnl_socket **nl)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };

	if (*nl)
		return 0;
	*nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (!*nl)
		return -errno;
	if (mnl_socket_bind(*nl, 0, MNL_SOCKET_AUTOPID) < 0 ||
	    setsockopt(mnl_socket_get_fd(*nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		int e = -errno;

		mnl_socket_close(*nl);
		*nl = NULL;
		return e;
	}
	return 0;
}

void ctmark_close(struct mnl_socket **nl)
{
	if (*nl)
		mnl_socket_close(*nl);
	*nl = NULL;
}

static void put_tuple(struct nlmsghdr *nlh, bool v4, const struct in6_addr *src, uint16_t sport,
		      const struct in6_addr *dst, uint16_t dport, uint8_t proto)
{
	struct nlattr *t = mnl_attr_nest_start(nlh, CTA_TUPLE_ORIG), *ip, *pr;

	ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
	if (v4) {
		mnl_attr_put(nlh, CTA_IP_V4_SRC, 4, src->s6_addr + 12);
		mnl_attr_put(nlh, CTA_IP_V4_DST, 4, dst->s6_addr + 12);
	} else {
		mnl_attr_put(nlh, CTA_IP_V6_SRC, 16, src->s6_addr);
		mnl_attr_put(nlh, CTA_IP_V6_DST, 16, dst->s6_addr);
	}
	mnl_attr_nest_end(nlh, ip);
	pr = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
	mnl_attr_put_u8(nlh, CTA_PROTO_NUM, proto);
	mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(sport));
	mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(dport));
	mnl_attr_nest_end(nlh, pr);
	mnl_attr_nest_end(nlh, t);
}

struct mark_ctx {
	uint32_t mark;
	int found;
};

static int attr_cb(const struct nlattr *a, void *data)
{
	struct mark_ctx *m = data;

	if (mnl_attr_get_type(a) == CTA_MARK && mnl_attr_validate(a, MNL_TYPE_U32) >= 0) {
		m->mark = ntohl(mnl_attr_get_u32(a));
		m->found = 1;
	}
	return MNL_CB_OK;
}

static int msg_cb(const struct nlmsghdr *nlh, void *data)
{
	mnl_attr_parse(nlh, sizeof(struct nfgenmsg), attr_cb, data);
	return MNL_CB_OK;
}

/* Each thread has its own socket, and its own sequence numbers: an answer
 * to an earlier request that timed out never passes for this one's (the
 * seconds' clock did: two flows in one second shared a number). Never 0,
 * which libmnl takes as "any". */
static _Thread_local uint32_t ct_seq;

int ctmark_get(struct mnl_socket **nl, const struct in6_addr *src, uint16_t sport,
	       const struct in6_addr *dst, uint16_t dport, uint8_t proto, uint32_t *ret)
{
	char buf[8192];
	bool v4 = IN6_IS_ADDR_V4MAPPED(src);
	struct nlmsghdr *nlh;
	struct nfgenmsg *g;
	struct mark_ctx m = { 0 };
	uint32_t seq = ++ct_seq ? ct_seq : ++ct_seq;
	unsigned portid;
	ssize_t n;
	int r;

	r = open_nl(nl);
	if (r < 0)
		return r;
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	nlh->nlmsg_seq = seq;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = v4 ? AF_INET : AF_INET6;
	g->version = NFNETLINK_V0;
	g->res_id = 0;
	put_tuple(nlh, v4, src, sport, dst, dport, proto);
	portid = mnl_socket_get_portid(*nl);
	if (mnl_socket_sendto(*nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	/* The answer (and the ack), or an error; stale answers of an
	 * earlier timed-out request carry another sequence number. */
	for (;;) {
		n = mnl_socket_recvfrom(*nl, buf, sizeof(buf));
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		r = mnl_cb_run(buf, (size_t)n, seq, portid, msg_cb, &m);
		if (r < 0 && errno == EPROTO)
			continue;  /* another request's */
		if (r < 0)
			return -errno;
		if (r == MNL_CB_STOP || m.found)
			break;
	}
	if (!m.found)
		return -ENOENT;
	*ret = m.mark;
	return 0;
}
