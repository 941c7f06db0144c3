#include "pm.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/mptcp.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Our flag names mirror the kernel's; stop the build if they drift. */
_Static_assert(PM_FLAG_SIGNAL == MPTCP_PM_ADDR_FLAG_SIGNAL, "flag drift");
_Static_assert(PM_FLAG_SUBFLOW == MPTCP_PM_ADDR_FLAG_SUBFLOW, "flag drift");
_Static_assert(PM_FLAG_BACKUP == MPTCP_PM_ADDR_FLAG_BACKUP, "flag drift");
_Static_assert(PM_FLAG_FULLMESH == MPTCP_PM_ADDR_FLAG_FULLMESH, "flag drift");
_Static_assert(MPTCP_PM_CMD_ADD_ADDR == 1 && MPTCP_PM_CMD_SET_LIMITS == 5 &&
	       MPTCP_PM_ATTR_ADDR == 1 && MPTCP_PM_ADDR_ATTR_IF_IDX == 7,
	       "mptcp_pm uapi numbering");

#define PM_BUF 4096  /* one request */

static int v4mapped(const struct in6_addr *a)
{
	return IN6_IS_ADDR_V4MAPPED(a);
}

/* A request to the mptcp_pm family in buf (PM_BUF bytes). */
static struct nlmsghdr *request(struct pm *pm, char *buf, uint8_t cmd, uint16_t flags)
{
	return nl_genl_put(buf, pm->family, cmd, flags, nl_next_seq(&pm->nl), MPTCP_PM_VER);
}

int pm_open(struct pm *pm)
{
	int r;

	memset(pm, 0, sizeof(*pm));
	r = nl_open(&pm->nl, NETLINK_GENERIC);
	if (r < 0)
		return r;
	r = nl_genl_family(&pm->nl, MPTCP_PM_NAME, &pm->family);
	if (r < 0) {
		pm_close(pm);
		return r == -ENOENT ? -EPROTONOSUPPORT : r;  /* no MPTCP in this kernel */
	}
	return 0;
}

void pm_close(struct pm *pm)
{
	nl_close(&pm->nl);
}

/* No flags attribute (FLAGS_NONE), or this value even when 0 (SET_FLAGS
 * clears backup with an explicit 0). */
#define FLAGS_NONE UINT32_MAX

/* A nested address: MPTCP_PM_ATTR_ADDR (local, or an endpoint) or
 * MPTCP_PM_ATTR_ADDR_REMOTE. a NULL: the id alone (DEL_ADDR). */
static void put_addr(struct nlmsghdr *nlh, uint16_t attr, const struct in6_addr *a,
		     uint16_t port, int with_id, uint8_t id, uint32_t flags, int ifindex)
{
	struct nlattr *nest = mnl_attr_nest_start(nlh, attr);

	if (with_id)
		mnl_attr_put_u8(nlh, MPTCP_PM_ADDR_ATTR_ID, id);
	if (a && v4mapped(a)) {
		mnl_attr_put_u16(nlh, MPTCP_PM_ADDR_ATTR_FAMILY, AF_INET);
		mnl_attr_put(nlh, MPTCP_PM_ADDR_ATTR_ADDR4, 4, a->s6_addr + 12);
	} else if (a) {
		mnl_attr_put_u16(nlh, MPTCP_PM_ADDR_ATTR_FAMILY, AF_INET6);
		mnl_attr_put(nlh, MPTCP_PM_ADDR_ATTR_ADDR6, 16, a);
	}
	if (port)
		mnl_attr_put_u16(nlh, MPTCP_PM_ADDR_ATTR_PORT, port);
	if (flags != FLAGS_NONE)
		mnl_attr_put_u32(nlh, MPTCP_PM_ADDR_ATTR_FLAGS, flags);
	if (ifindex > 0)
		mnl_attr_put_u32(nlh, MPTCP_PM_ADDR_ATTR_IF_IDX, (uint32_t)ifindex);
	mnl_attr_nest_end(nlh, nest);
}

static int addr_attr_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(attr);
	static const enum mnl_attr_data_type want[MPTCP_PM_ADDR_ATTR_MAX + 1] = {
		[MPTCP_PM_ADDR_ATTR_FAMILY] = MNL_TYPE_U16,
		[MPTCP_PM_ADDR_ATTR_ID] = MNL_TYPE_U8,
		[MPTCP_PM_ADDR_ATTR_PORT] = MNL_TYPE_U16,
		[MPTCP_PM_ADDR_ATTR_FLAGS] = MNL_TYPE_U32,
		[MPTCP_PM_ADDR_ATTR_IF_IDX] = MNL_TYPE_U32,
	};

	if (mnl_attr_type_valid(attr, MPTCP_PM_ADDR_ATTR_MAX) < 0)
		return MNL_CB_OK;
	if (type == MPTCP_PM_ADDR_ATTR_ADDR4) {
		if (mnl_attr_validate2(attr, MNL_TYPE_BINARY, 4) < 0)
			return MNL_CB_ERROR;
	} else if (type == MPTCP_PM_ADDR_ATTR_ADDR6) {
		if (mnl_attr_validate2(attr, MNL_TYPE_BINARY, 16) < 0)
			return MNL_CB_ERROR;
	} else if (want[type] && mnl_attr_validate(attr, want[type]) < 0) {
		return MNL_CB_ERROR;
	}
	tb[type] = attr;
	return MNL_CB_OK;
}

static int top_attr_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(attr);

	if (mnl_attr_type_valid(attr, MPTCP_PM_ATTR_MAX) < 0)
		return MNL_CB_OK;
	if (type == MPTCP_PM_ATTR_ADDR && mnl_attr_validate(attr, MNL_TYPE_NESTED) < 0)
		return MNL_CB_ERROR;
	if ((type == MPTCP_PM_ATTR_SUBFLOWS || type == MPTCP_PM_ATTR_RCV_ADD_ADDRS) &&
	    mnl_attr_validate(attr, MNL_TYPE_U32) < 0)
		return MNL_CB_ERROR;
	tb[type] = attr;
	return MNL_CB_OK;
}

struct dump_ctx {
	struct pm_endpoint *out;
	unsigned max, n;
	uint8_t match_id;      /* for pm_add: find the id of what we added */
	struct in6_addr match;
	int matching;
};

static int endpoint_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *tb[MPTCP_PM_ATTR_MAX + 1] = { 0 };
	const struct nlattr *at[MPTCP_PM_ADDR_ATTR_MAX + 1] = { 0 };
	struct dump_ctx *c = data;
	struct pm_endpoint e = { 0 };

	if (mnl_attr_parse(nlh, sizeof(struct genlmsghdr), top_attr_cb, tb) != MNL_CB_OK)
		return MNL_CB_ERROR;
	if (!tb[MPTCP_PM_ATTR_ADDR])
		return MNL_CB_OK;
	if (mnl_attr_parse_nested(tb[MPTCP_PM_ATTR_ADDR], addr_attr_cb, at) != MNL_CB_OK)
		return MNL_CB_ERROR;
	if (at[MPTCP_PM_ADDR_ATTR_ID])
		e.id = mnl_attr_get_u8(at[MPTCP_PM_ADDR_ATTR_ID]);
	if (at[MPTCP_PM_ADDR_ATTR_FLAGS])
		e.flags = mnl_attr_get_u32(at[MPTCP_PM_ADDR_ATTR_FLAGS]);
	if (at[MPTCP_PM_ADDR_ATTR_IF_IDX])
		e.ifindex = (int32_t)mnl_attr_get_u32(at[MPTCP_PM_ADDR_ATTR_IF_IDX]);
	if (at[MPTCP_PM_ADDR_ATTR_ADDR4]) {
		e.addr.s6_addr[10] = e.addr.s6_addr[11] = 0xff;
		memcpy(e.addr.s6_addr + 12, mnl_attr_get_payload(at[MPTCP_PM_ADDR_ATTR_ADDR4]), 4);
	} else if (at[MPTCP_PM_ADDR_ATTR_ADDR6]) {
		memcpy(&e.addr, mnl_attr_get_payload(at[MPTCP_PM_ADDR_ATTR_ADDR6]), 16);
	}
	if (c->matching && !memcmp(&e.addr, &c->match, 16))
		c->match_id = e.id;
	if (c->n < c->max)
		c->out[c->n] = e;
	c->n++;
	return MNL_CB_OK;
}

static int dump(struct pm *pm, struct dump_ctx *c)
{
	char buf[PM_BUF];
	struct nlmsghdr *nlh = request(pm, buf, MPTCP_PM_CMD_GET_ADDR, NLM_F_DUMP);

	return nl_talk(&pm->nl, nlh, endpoint_cb, c);
}

int pm_dump(struct pm *pm, struct pm_endpoint *ret, unsigned max)
{
	struct dump_ctx c = { .out = ret, .max = max };
	int r = dump(pm, &c);

	return r < 0 ? r : (int)c.n;
}

int pm_add(struct pm *pm, const struct in6_addr *a, int ifindex, uint32_t flags)
{
	char buf[PM_BUF];
	struct nlmsghdr *nlh = request(pm, buf, MPTCP_PM_CMD_ADD_ADDR, NLM_F_ACK);
	struct dump_ctx c = { .matching = 1, .match = *a };
	int r;

	put_addr(nlh, MPTCP_PM_ATTR_ADDR, a, 0, 0, 0, flags ? flags : FLAGS_NONE, ifindex);
	r = nl_talk(&pm->nl, nlh, NULL, NULL);
	if (r < 0)
		return r;
	/* ADD_ADDR does not return the id the kernel chose: look it up. */
	r = dump(pm, &c);
	if (r < 0)
		return r;
	return c.match_id ? c.match_id : -ENOENT;
}

int pm_del(struct pm *pm, uint8_t id)
{
	char buf[PM_BUF];
	struct nlmsghdr *nlh = request(pm, buf, MPTCP_PM_CMD_DEL_ADDR, NLM_F_ACK);

	put_addr(nlh, MPTCP_PM_ATTR_ADDR, NULL, 0, 1, id, FLAGS_NONE, 0);
	return nl_talk(&pm->nl, nlh, NULL, NULL);
}

int pm_set_flags(struct pm *pm, uint8_t id, uint32_t flags)
{
	char buf[PM_BUF];
	struct nlmsghdr *nlh = request(pm, buf, MPTCP_PM_CMD_SET_FLAGS, NLM_F_ACK);

	/* By id; an explicit 0 clears backup. The kernel sends MP_PRIO on
	 * every connection's subflows from that endpoint. */
	put_addr(nlh, MPTCP_PM_ATTR_ADDR, NULL, 0, 1, id, flags, 0);
	return nl_talk(&pm->nl, nlh, NULL, NULL);
}

int pm_flush(struct pm *pm)
{
	char buf[PM_BUF];
	struct nlmsghdr *nlh = request(pm, buf, MPTCP_PM_CMD_FLUSH_ADDRS, NLM_F_ACK);

	return nl_talk(&pm->nl, nlh, NULL, NULL);
}

int pm_set_limits(struct pm *pm, uint32_t subflows, uint32_t add_addr_accepted)
{
	char buf[PM_BUF];
	struct nlmsghdr *nlh = request(pm, buf, MPTCP_PM_CMD_SET_LIMITS, NLM_F_ACK);

	mnl_attr_put_u32(nlh, MPTCP_PM_ATTR_SUBFLOWS, subflows);
	mnl_attr_put_u32(nlh, MPTCP_PM_ATTR_RCV_ADD_ADDRS, add_addr_accepted);
	return nl_talk(&pm->nl, nlh, NULL, NULL);
}

struct limits_ctx {
	uint32_t subflows, add;
};

static int limits_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *tb[MPTCP_PM_ATTR_MAX + 1] = { 0 };
	struct limits_ctx *c = data;

	if (mnl_attr_parse(nlh, sizeof(struct genlmsghdr), top_attr_cb, tb) != MNL_CB_OK)
		return MNL_CB_ERROR;
	if (tb[MPTCP_PM_ATTR_SUBFLOWS])
		c->subflows = mnl_attr_get_u32(tb[MPTCP_PM_ATTR_SUBFLOWS]);
	if (tb[MPTCP_PM_ATTR_RCV_ADD_ADDRS])
		c->add = mnl_attr_get_u32(tb[MPTCP_PM_ATTR_RCV_ADD_ADDRS]);
	return MNL_CB_OK;
}

int pm_get_limits(struct pm *pm, uint32_t *ret_subflows, uint32_t *ret_add_addr_accepted)
{
	char buf[PM_BUF];
	struct nlmsghdr *nlh = request(pm, buf, MPTCP_PM_CMD_GET_LIMITS, NLM_F_ACK);
	struct limits_ctx c = { 0 };
	int r = nl_talk(&pm->nl, nlh, limits_cb, &c);

	if (r < 0)
		return r;
	*ret_subflows = c.subflows;
	*ret_add_addr_accepted = c.add;
	return 0;
}

const char *pm_flags_str(uint32_t flags, char *buf, size_t len)
{
	static const struct { uint32_t f; const char *name; } names[] = {
		{ PM_FLAG_SIGNAL, "signal" }, { PM_FLAG_SUBFLOW, "subflow" },
		{ PM_FLAG_BACKUP, "backup" }, { PM_FLAG_FULLMESH, "fullmesh" },
	};
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (flags & names[i].f)
			off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%s",
						off ? " " : "", names[i].name);
	return buf;
}

int pm_subflow_create(struct pm *pm, uint32_t token, const struct in6_addr *loc, uint8_t loc_id,
		      int ifindex, uint32_t flags, const struct in6_addr *rem, uint16_t rem_port)
{
	char buf[PM_BUF];
	struct nlmsghdr *nlh = request(pm, buf, MPTCP_PM_CMD_SUBFLOW_CREATE, NLM_F_ACK);

	mnl_attr_put_u32(nlh, MPTCP_PM_ATTR_TOKEN, token);
	put_addr(nlh, MPTCP_PM_ATTR_ADDR, loc, 0, 1, loc_id, flags, ifindex);
	put_addr(nlh, MPTCP_PM_ATTR_ADDR_REMOTE, rem, rem_port, 0, 0, FLAGS_NONE, 0);
	return nl_talk(&pm->nl, nlh, NULL, NULL);
}

int pm_subflow_destroy(struct pm *pm, uint32_t token, const struct in6_addr *loc,
		       uint16_t loc_port, const struct in6_addr *rem, uint16_t rem_port)
{
	char buf[PM_BUF];
	struct nlmsghdr *nlh = request(pm, buf, MPTCP_PM_CMD_SUBFLOW_DESTROY, NLM_F_ACK);

	mnl_attr_put_u32(nlh, MPTCP_PM_ATTR_TOKEN, token);
	put_addr(nlh, MPTCP_PM_ATTR_ADDR, loc, loc_port, 0, 0, FLAGS_NONE, 0);
	put_addr(nlh, MPTCP_PM_ATTR_ADDR_REMOTE, rem, rem_port, 0, 0, FLAGS_NONE, 0);
	return nl_talk(&pm->nl, nlh, NULL, NULL);
}

int pm_remove_id(struct pm *pm, uint32_t token, uint8_t loc_id)
{
	char buf[PM_BUF];
	struct nlmsghdr *nlh = request(pm, buf, MPTCP_PM_CMD_REMOVE, NLM_F_ACK);

	mnl_attr_put_u32(nlh, MPTCP_PM_ATTR_TOKEN, token);
	mnl_attr_put_u8(nlh, MPTCP_PM_ATTR_LOC_ID, loc_id);
	return nl_talk(&pm->nl, nlh, NULL, NULL);
}

int pm_subflow_set_flags(struct pm *pm, uint32_t token, const struct in6_addr *loc,
			 uint16_t loc_port, const struct in6_addr *rem, uint16_t rem_port,
			 uint32_t flags)
{
	char buf[PM_BUF];
	struct nlmsghdr *nlh = request(pm, buf, MPTCP_PM_CMD_SET_FLAGS, NLM_F_ACK);

	mnl_attr_put_u32(nlh, MPTCP_PM_ATTR_TOKEN, token);
	/* The flags go in the local address; an explicit 0 clears backup. */
	put_addr(nlh, MPTCP_PM_ATTR_ADDR, loc, loc_port, 0, 0, flags, 0);
	put_addr(nlh, MPTCP_PM_ATTR_ADDR_REMOTE, rem, rem_port, 0, 0, FLAGS_NONE, 0);
	return nl_talk(&pm->nl, nlh, NULL, NULL);
}

int pm_events_open(struct pm *ev)
{
	uint32_t grp = 0;
	int r, fd, sz = 4 << 20;

	memset(ev, 0, sizeof(*ev));
	r = nl_open(&ev->nl, NETLINK_GENERIC);
	if (r < 0)
		return r;
	r = nl_genl_family_group(&ev->nl, MPTCP_PM_NAME, &ev->family, MPTCP_PM_EV_GRP_NAME, &grp);
	if (r < 0)
		goto fail;
	fd = mnl_socket_get_fd(ev->nl.sock);
	/* A burst of connections is a burst of events: room for ~20,000
	 * (RCVBUFFORCE: past rmem_max, as root). */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	if (mnl_socket_setsockopt(ev->nl.sock, NETLINK_ADD_MEMBERSHIP, &grp, sizeof(grp)) < 0) {
		r = -errno;
		goto fail;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		r = -errno;
		goto fail;
	}
	return 0;
fail:
	pm_close(ev);
	return r == -ENOENT ? -EPROTONOSUPPORT : r;
}

static int event_attr_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(attr);
	static const enum mnl_attr_data_type want[MPTCP_ATTR_SERVER_SIDE + 1] = {
		[MPTCP_ATTR_TOKEN] = MNL_TYPE_U32,
		[MPTCP_ATTR_FAMILY] = MNL_TYPE_U16,
		[MPTCP_ATTR_LOC_ID] = MNL_TYPE_U8,
		[MPTCP_ATTR_REM_ID] = MNL_TYPE_U8,
		[MPTCP_ATTR_SADDR4] = MNL_TYPE_U32,
		[MPTCP_ATTR_DADDR4] = MNL_TYPE_U32,
		[MPTCP_ATTR_SPORT] = MNL_TYPE_U16,
		[MPTCP_ATTR_DPORT] = MNL_TYPE_U16,
		[MPTCP_ATTR_BACKUP] = MNL_TYPE_U8,
		[MPTCP_ATTR_ERROR] = MNL_TYPE_U8,
		[MPTCP_ATTR_IF_IDX] = MNL_TYPE_U32,
		[MPTCP_ATTR_SERVER_SIDE] = MNL_TYPE_U8,
	};

	if (type > MPTCP_ATTR_SERVER_SIDE)
		return MNL_CB_OK;  /* newer kernel: skip what we do not know */
	if (type == MPTCP_ATTR_SADDR6 || type == MPTCP_ATTR_DADDR6) {
		if (mnl_attr_validate2(attr, MNL_TYPE_BINARY, 16) < 0)
			return MNL_CB_ERROR;
	} else if (want[type] && mnl_attr_validate(attr, want[type]) < 0) {
		return MNL_CB_ERROR;
	}
	tb[type] = attr;
	return MNL_CB_OK;
}

static void event_addr(const struct nlattr *a4, const struct nlattr *a6, struct in6_addr *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (a4) {
		ret->s6_addr[10] = ret->s6_addr[11] = 0xff;
		memcpy(ret->s6_addr + 12, mnl_attr_get_payload(a4), 4);
	} else if (a6) {
		memcpy(ret, mnl_attr_get_payload(a6), 16);
	}
}

int pm_event_parse(const struct nlmsghdr *nlh, struct pm_event *e)
{
	const struct nlattr *tb[MPTCP_ATTR_SERVER_SIDE + 1] = { 0 };
	const struct genlmsghdr *g;

	memset(e, 0, sizeof(*e));
	if (nlh->nlmsg_len < MNL_NLMSG_HDRLEN + sizeof(*g))
		return -EINVAL;
	g = mnl_nlmsg_get_payload(nlh);
	if (mnl_attr_parse(nlh, sizeof(*g), event_attr_cb, tb) != MNL_CB_OK)
		return -EINVAL;
	if (!tb[MPTCP_ATTR_TOKEN])
		return -EINVAL;
	e->type = g->cmd;
	e->token = mnl_attr_get_u32(tb[MPTCP_ATTR_TOKEN]);
	if (tb[MPTCP_ATTR_LOC_ID])
		e->loc_id = mnl_attr_get_u8(tb[MPTCP_ATTR_LOC_ID]);
	if (tb[MPTCP_ATTR_REM_ID])
		e->rem_id = mnl_attr_get_u8(tb[MPTCP_ATTR_REM_ID]);
	/* Both ends of one family, or none. */
	if ((tb[MPTCP_ATTR_SADDR4] || tb[MPTCP_ATTR_SADDR6]) &&
	    (tb[MPTCP_ATTR_DADDR4] || tb[MPTCP_ATTR_DADDR6])) {
		if (!tb[MPTCP_ATTR_SADDR4] != !tb[MPTCP_ATTR_DADDR4])
			return -EINVAL;
		e->has_addrs = true;
		event_addr(tb[MPTCP_ATTR_SADDR4], tb[MPTCP_ATTR_SADDR6], &e->saddr);
		event_addr(tb[MPTCP_ATTR_DADDR4], tb[MPTCP_ATTR_DADDR6], &e->daddr);
	} else if (tb[MPTCP_ATTR_DADDR4] || tb[MPTCP_ATTR_DADDR6]) {
		/* ANNOUNCED: the peer's address only. */
		event_addr(tb[MPTCP_ATTR_DADDR4], tb[MPTCP_ATTR_DADDR6], &e->daddr);
	}
	if (tb[MPTCP_ATTR_SPORT])
		e->sport = ntohs(mnl_attr_get_u16(tb[MPTCP_ATTR_SPORT]));
	if (tb[MPTCP_ATTR_DPORT])
		e->dport = ntohs(mnl_attr_get_u16(tb[MPTCP_ATTR_DPORT]));
	if (tb[MPTCP_ATTR_BACKUP])
		e->backup = mnl_attr_get_u8(tb[MPTCP_ATTR_BACKUP]) != 0;
	if (tb[MPTCP_ATTR_SERVER_SIDE])
		e->server_side = mnl_attr_get_u8(tb[MPTCP_ATTR_SERVER_SIDE]) != 0;
	if (tb[MPTCP_ATTR_IF_IDX])
		e->ifindex = (int32_t)mnl_attr_get_u32(tb[MPTCP_ATTR_IF_IDX]);
	if (tb[MPTCP_ATTR_ERROR])
		e->error = mnl_attr_get_u8(tb[MPTCP_ATTR_ERROR]);
	return 0;
}

int pm_events_read(struct pm *ev, unsigned max,
		   void (*cb)(const struct pm_event *e, void *data), void *data)
{
	char buf[16384];
	int n = 0;

	while ((unsigned)n < max) {
		ssize_t got = mnl_socket_recvfrom(ev->nl.sock, buf, sizeof(buf));
		int len;

		if (got < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return n;
			return -errno;  /* ENOBUFS: the kernel dropped events */
		}
		len = (int)got;
		for (struct nlmsghdr *m = (struct nlmsghdr *)buf; mnl_nlmsg_ok(m, len);
		     m = mnl_nlmsg_next(m, &len)) {
			struct pm_event e;

			if (m->nlmsg_type != ev->family || pm_event_parse(m, &e) < 0)
				continue;
			cb(&e, data);
			n++;
		}
	}
	return n;
}
