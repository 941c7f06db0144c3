#include "nl.h"

#include <linux/genetlink.h>

#include <errno.h>
#include <stdbool.h>
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

/* The answers to one request are the messages with its sequence number, up
 * to its ACK or error, the end of its dump, or (asked without an ACK) its
 * one reply. Messages of an earlier request that was given up are skipped,
 * and a request is read to its end even when a callback fails or the dump
 * was interrupted (the kernel marks it NLM_F_DUMP_INTR when the table
 * changed under it): one failed exchange must never leave the next one
 * reading another's answers, which used to fail every later request with
 * EPROTO until a restart. */
int nl_talk(struct nl *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
	char buf[NL_BUF];
	uint32_t seq = nlh->nlmsg_seq;
	bool acked = nlh->nlmsg_flags & NLM_F_ACK;
	int err = 0;

	if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl->sock, buf, sizeof(buf));
		int len;

		if (n < 0)
			return -errno;
		len = (int)n;
		for (struct nlmsghdr *m = (struct nlmsghdr *)buf; mnl_nlmsg_ok(m, len);
		     m = mnl_nlmsg_next(m, &len)) {
			bool end = m->nlmsg_type == NLMSG_DONE || m->nlmsg_type == NLMSG_ERROR ||
				   (!(m->nlmsg_flags & NLM_F_MULTI) && !acked);
			int r;

			if (m->nlmsg_seq != seq || (m->nlmsg_pid && m->nlmsg_pid != nl->portid))
				continue;  /* not this request's */
			/* After a failure, only the end is looked for. */
			r = mnl_cb_run(m, m->nlmsg_len, seq, nl->portid, err ? NULL : cb, data);
			if (r < 0 && !err)
				err = errno ? -errno : -EPROTO;
			if (end)
				return err;
		}
	}
}

struct nlmsghdr *nl_genl_put(char *buf, uint16_t type, uint8_t cmd, uint16_t flags,
			     uint32_t seq, uint8_t version)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct genlmsghdr *g;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = seq;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = cmd;
	g->version = version;
	return nlh;
}

static int family_attr_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(attr);

	if (mnl_attr_type_valid(attr, CTRL_ATTR_MAX) < 0)
		return MNL_CB_OK;  /* newer kernel: skip what we do not know */
	if (type == CTRL_ATTR_FAMILY_ID && mnl_attr_validate(attr, MNL_TYPE_U16) < 0)
		return MNL_CB_ERROR;
	if (type == CTRL_ATTR_MCAST_GROUPS && mnl_attr_validate(attr, MNL_TYPE_NESTED) < 0)
		return MNL_CB_ERROR;
	tb[type] = attr;
	return MNL_CB_OK;
}

struct family_ctx {
	uint16_t id;
	const char *group;     /* the multicast group wanted, or NULL */
	uint32_t group_id;
};

/* One entry of CTRL_ATTR_MCAST_GROUPS: its name and id. */
static void family_group(const struct nlattr *grp, struct family_ctx *c)
{
	const struct nlattr *a;
	const char *name = NULL;
	uint32_t id = 0;

	mnl_attr_for_each_nested(a, grp) {
		if (mnl_attr_get_type(a) == CTRL_ATTR_MCAST_GRP_NAME &&
		    mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
			name = mnl_attr_get_str(a);
		else if (mnl_attr_get_type(a) == CTRL_ATTR_MCAST_GRP_ID &&
			 mnl_attr_validate(a, MNL_TYPE_U32) == 0)
			id = mnl_attr_get_u32(a);
	}
	if (name && id && c->group && !strcmp(name, c->group))
		c->group_id = id;
}

static int family_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *tb[CTRL_ATTR_MAX + 1] = { 0 };
	struct family_ctx *c = data;
	const struct nlattr *g;

	if (mnl_attr_parse(nlh, sizeof(struct genlmsghdr), family_attr_cb, tb) != MNL_CB_OK)
		return MNL_CB_ERROR;
	if (tb[CTRL_ATTR_FAMILY_ID])
		c->id = mnl_attr_get_u16(tb[CTRL_ATTR_FAMILY_ID]);
	if (tb[CTRL_ATTR_MCAST_GROUPS])
		mnl_attr_for_each_nested(g, tb[CTRL_ATTR_MCAST_GROUPS])
			family_group(g, c);
	return MNL_CB_OK;
}

int nl_genl_family_group(struct nl *nl, const char *name, uint16_t *ret_id,
			 const char *group, uint32_t *ret_group)
{
	char buf[256];
	struct nlmsghdr *nlh = nl_genl_put(buf, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, NLM_F_ACK,
					   nl_next_seq(nl), 1);
	struct family_ctx c = { .group = group };
	int r;

	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, name);
	r = nl_talk(nl, nlh, family_cb, &c);
	if (r < 0)
		return r;
	if (!c.id || (group && !c.group_id))
		return -ENOENT;
	*ret_id = c.id;
	if (ret_group)
		*ret_group = c.group_id;
	return 0;
}

int nl_genl_family(struct nl *nl, const char *name, uint16_t *ret_id)
{
	return nl_genl_family_group(nl, name, ret_id, NULL, NULL);
}
