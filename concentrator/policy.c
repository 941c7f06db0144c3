#include "policy.h"
#include "log.h"
#include "nl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <linux/nexthop.h>
#include <linux/rtnetlink.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>


int policy_init(struct policy *p)
{
	memset(p, 0, sizeof(*p));
	/* The built-in denials: everything that is not the public Internet
	 * (addr.h); the operator's allow-dest can open a part. */
	for (unsigned i = 0; i < addr_nspecial_ranges; i++) {
		struct addr_prefix pfx;
		int r = addr_parse_prefix(addr_special_ranges[i], &pfx);

		if (r < 0)
			return r;
		r = policy_add_dest(p, &pfx, false, true);
		if (r < 0)
			return r;
	}
	return 0;
}

void policy_clear_operator(struct policy *p, bool clients, bool allow_rules, bool deny_rules)
{
	unsigned k = 0;

	if (clients)
		p->nclients = 0;
	for (unsigned i = 0; i < p->nrules; i++) {
		const struct policy_rule *r = &p->rules[i];

		if (!r->builtin && ((r->allow && allow_rules) || (!r->allow && deny_rules)))
			continue;
		p->rules[k++] = *r;
	}
	p->nrules = k;
}

void policy_free(struct policy *p)
{
	cookie_keys_free(&p->keys);
	free(p->own);
	free(p->own_extra);
	p->own = p->own_extra = NULL;
	p->nown = p->nown_extra = 0;
	free(p->clients);
	free(p->rules);
	p->clients = NULL;
	p->rules = NULL;
	p->nclients = p->nrules = 0;
}

int policy_add_client(struct policy *p, const struct addr_prefix *pfx)
{
	struct addr_prefix *c = realloc(p->clients, (p->nclients + 1) * sizeof(*c));

	if (!c)
		return -ENOMEM;
	c[p->nclients++] = *pfx;
	p->clients = c;
	return 0;
}

int policy_add_dest(struct policy *p, const struct addr_prefix *pfx, bool allow,
		    bool builtin)
{
	struct policy_rule *r = realloc(p->rules, (p->nrules + 1) * sizeof(*r));

	if (!r)
		return -ENOMEM;
	r[p->nrules++] = (struct policy_rule){ .prefix = *pfx, .allow = allow,
					       .builtin = builtin };
	p->rules = r;
	return 0;
}

#define OWN_MAX_NH POLICY_MAX_NH  /* nexthop objects followed per lookup */

struct own_list {
	struct addr_prefix *a;
	unsigned n, cap;
	int err;
	/* Nexthop objects (RTA_NH_ID, NHA_GROUP) still to look up, and
	 * looked up: each once, at most OWN_MAX_NH. */
	uint32_t nh[OWN_MAX_NH];
	unsigned nnh;
	bool nh_full;
};

static void own_add_nh(struct own_list *l, uint32_t id)
{
	for (unsigned i = 0; i < l->nnh; i++)
		if (l->nh[i] == id)
			return;
	if (l->nnh < OWN_MAX_NH)
		l->nh[l->nnh++] = id;
	else
		l->nh_full = true;
}

static void own_add(struct own_list *l, const struct addr_prefix *pfx)
{
	if (l->err)
		return;
	if (l->n == l->cap) {
		unsigned nc = l->cap ? 2 * l->cap : 16;
		struct addr_prefix *na = realloc(l->a, nc * sizeof(*na));

		if (!na) {
			l->err = -ENOMEM;
			return;
		}
		l->a = na;
		l->cap = nc;
	}
	l->a[l->n++] = *pfx;
}

static int local_route_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
	struct own_list *l = data;
	const struct nlattr *attr;
	struct addr_prefix pfx = { .len = 0 };
	bool have = false;

	if (rtm->rtm_type != RTN_LOCAL || (rtm->rtm_family != AF_INET && rtm->rtm_family != AF_INET6))
		return MNL_CB_OK;
	mnl_attr_for_each(attr, nlh, sizeof(*rtm)) {
		if (mnl_attr_get_type(attr) != RTA_DST)
			continue;
		if (rtm->rtm_family == AF_INET && mnl_attr_get_payload_len(attr) == 4) {
			pfx.addr.s6_addr[10] = pfx.addr.s6_addr[11] = 0xff;
			memcpy(pfx.addr.s6_addr + 12, mnl_attr_get_payload(attr), 4);
			pfx.len = (uint8_t)(96 + rtm->rtm_dst_len);
			have = rtm->rtm_dst_len <= 32;
		} else if (rtm->rtm_family == AF_INET6 && mnl_attr_get_payload_len(attr) == 16) {
			memcpy(pfx.addr.s6_addr, mnl_attr_get_payload(attr), 16);
			pfx.len = rtm->rtm_dst_len;
			have = rtm->rtm_dst_len <= 128;
		}
	}
	if (have)
		own_add(l, &pfx);
	return MNL_CB_OK;
}

/* The local table's routes of type local, both families. */
static int list_local_routes(struct own_list *l)
{
	struct nl nl;
	int r = nl_open(&nl, NETLINK_ROUTE), one = 1;

	if (r < 0)
		return r;
	/* Only the local table is dumped (strict checking filters by table):
	 * a box that carries a full routing table must not dump it here. */
	setsockopt(mnl_socket_get_fd(nl.sock), SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof(one));
	for (int fam = 0; fam < 2 && r >= 0; fam++) {
		char buf[256];
		struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
		struct rtmsg *rtm;

		nlh->nlmsg_type = RTM_GETROUTE;
		nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
		nlh->nlmsg_seq = nl_next_seq(&nl);
		rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
		rtm->rtm_family = fam ? AF_INET6 : AF_INET;
		rtm->rtm_table = RT_TABLE_LOCAL;
		mnl_attr_put_u32(nlh, RTA_TABLE, RT_TABLE_LOCAL);
		r = nl_talk(&nl, nlh, local_route_cb, l);
	}
	nl_close(&nl);
	return r < 0 ? r : l->err;
}

static void own_add_gateway(struct own_list *l, int family, const void *a, size_t len)
{
	struct addr_prefix pfx = { .len = 128 };

	if (family == AF_INET && len == 4) {
		pfx.addr.s6_addr[10] = pfx.addr.s6_addr[11] = 0xff;
		memcpy(pfx.addr.s6_addr + 12, a, 4);
	} else if (family == AF_INET6 && len == 16) {
		memcpy(pfx.addr.s6_addr, a, 16);
	} else {
		return;
	}
	own_add(l, &pfx);
}

/* RTA_GATEWAY or RTA_VIA (which names its own family) of a route or of one
 * of its next hops. */
static void gateway_attr(struct own_list *l, int family, const struct nlattr *attr)
{
	const uint8_t *p = mnl_attr_get_payload(attr);
	size_t len = mnl_attr_get_payload_len(attr);

	if (mnl_attr_get_type(attr) == RTA_GATEWAY) {
		own_add_gateway(l, family, p, len);
	} else if (mnl_attr_get_type(attr) == RTA_NH_ID && len == 4) {
		own_add_nh(l, mnl_attr_get_u32(attr));
	} else if (mnl_attr_get_type(attr) == RTA_VIA && len >= sizeof(struct rtvia)) {
		const struct rtvia *v = (const struct rtvia *)p;

		own_add_gateway(l, v->rtvia_family, v->rtvia_addr, len - sizeof(*v));
	}
}

static int router_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
	struct own_list *l = data;
	const struct nlattr *attr;

	if (rtm->rtm_type != RTN_UNICAST)
		return MNL_CB_OK;
	mnl_attr_for_each(attr, nlh, sizeof(*rtm)) {
		if (mnl_attr_get_type(attr) == RTA_MULTIPATH) {
			const struct rtnexthop *nh = mnl_attr_get_payload(attr);
			int left = (int)mnl_attr_get_payload_len(attr);

			while (left >= (int)sizeof(*nh) && nh->rtnh_len >= sizeof(*nh) &&
			       nh->rtnh_len <= left) {
				const struct nlattr *a = (const struct nlattr *)RTNH_DATA(nh);
				int alen = nh->rtnh_len - (int)sizeof(*nh);

				for (; mnl_attr_ok(a, alen);
				     alen -= MNL_ALIGN(a->nla_len), a = mnl_attr_next(a))
					gateway_attr(l, rtm->rtm_family, a);
				left -= RTNH_ALIGN(nh->rtnh_len);
				nh = RTNH_NEXT(nh);
			}
		} else {
			gateway_attr(l, rtm->rtm_family, attr);
		}
	}
	return MNL_CB_OK;
}

/* A nexthop object (RTM_GETNEXTHOP): its gateway, or its group's members
 * (looked up in turn by list_routers). */
static int nexthop_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nhmsg *nhm = mnl_nlmsg_get_payload(nlh);
	struct own_list *l = data;
	const struct nlattr *attr;

	mnl_attr_for_each(attr, nlh, sizeof(*nhm)) {
		const uint8_t *p = mnl_attr_get_payload(attr);
		size_t len = mnl_attr_get_payload_len(attr);

		if (mnl_attr_get_type(attr) == NHA_GATEWAY) {
			own_add_gateway(l, nhm->nh_family, p, len);
		} else if (mnl_attr_get_type(attr) == NHA_GROUP) {
			for (size_t o = 0; o + sizeof(struct nexthop_grp) <= len;
			     o += sizeof(struct nexthop_grp)) {
				struct nexthop_grp g;

				memcpy(&g, p + o, sizeof(g));
				own_add_nh(l, g.id);
			}
		}
	}
	return MNL_CB_OK;
}

/* The box's routers: the next hops of the route it would use towards the
 * Internet, one lookup per family (RTM_F_FIB_MATCH returns the route
 * itself, so every next hop of a multipath default), never a dump (a box
 * may carry a full table). IPv4 asks for 1.0.0.1, an address nobody routes
 * locally; IPv6 for "::", which only a default route covers. A router's
 * management may trust the box's address: it is no destination. Next hops
 * given as nexthop objects (ip nexthop: RTA_NH_ID) are looked up, a
 * group's members too, OWN_MAX_NH at most. */
static int list_routers(struct own_list *l)
{
	static const uint8_t v4[4] = { 1, 0, 0, 1 };
	static const uint8_t v6[16] = { 0 };
	struct nl nl;
	int r = nl_open(&nl, NETLINK_ROUTE);

	if (r < 0) {
		log_debug("own addresses: cannot look up the routers: %s", strerror(-r));
		return 0;
	}
	for (int fam = 0; fam < 2; fam++) {
		char buf[256];
		struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
		struct rtmsg *rtm;

		nlh->nlmsg_type = RTM_GETROUTE;
		nlh->nlmsg_flags = NLM_F_REQUEST;
		nlh->nlmsg_seq = nl_next_seq(&nl);
		rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
		rtm->rtm_family = fam ? AF_INET6 : AF_INET;
		rtm->rtm_flags = RTM_F_FIB_MATCH;
		rtm->rtm_dst_len = fam ? 128 : 32;
		mnl_attr_put(nlh, RTA_DST, fam ? 16 : 4, fam ? (const void *)v6 : (const void *)v4);
		/* Best effort: no route, a blackhole or prohibit route, a
		 * family disabled at boot (ipv6.disable=1) all mean no router
		 * here, and must not cost the list of own addresses. */
		r = nl_talk(&nl, nlh, router_cb, l);
		if (r < 0)
			log_debug("own addresses: no IPv%c router found: %s", fam ? '6' : '4',
				  strerror(-r));
	}
	/* l->nh grows while it is walked (a group's members). */
	for (unsigned i = 0; i < l->nnh; i++) {
		char buf[128];
		struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
		struct nhmsg *nhm;

		nlh->nlmsg_type = RTM_GETNEXTHOP;
		nlh->nlmsg_flags = NLM_F_REQUEST;
		nlh->nlmsg_seq = nl_next_seq(&nl);
		nhm = mnl_nlmsg_put_extra_header(nlh, sizeof(*nhm));
		nhm->nh_family = AF_UNSPEC;
		mnl_attr_put_u32(nlh, NHA_ID, l->nh[i]);
		r = nl_talk(&nl, nlh, nexthop_cb, l);
		if (r < 0)
			log_debug("own addresses: nexthop %u: %s", l->nh[i], strerror(-r));
	}
	if (l->nh_full)
		log_warn("own addresses: the default route has more than %u nexthop objects: the "
			 "routers behind the rest are not denied as destinations (--deny-dest)",
			 OWN_MAX_NH);
	nl_close(&nl);
	return l->err;
}

int policy_list_own(struct addr_prefix **ret, unsigned *ret_n)
{
	return policy_list_own_nh(ret, ret_n, NULL, NULL);
}

int policy_list_own_nh(struct addr_prefix **ret, unsigned *ret_n, uint32_t *nh, unsigned *nnh)
{
	struct ifaddrs *ifa, *i;
	struct own_list l = { 0 };
	int r;

	if (getifaddrs(&ifa) < 0)
		return -errno;
	for (i = ifa; i; i = i->ifa_next) {
		struct addr_prefix pfx;

		if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET &&
				     i->ifa_addr->sa_family != AF_INET6))
			continue;
		if (addr_to_in6(i->ifa_addr, &pfx.addr, NULL) < 0)
			continue;
		pfx.len = 128;
		own_add(&l, &pfx);
	}
	freeifaddrs(ifa);
	r = l.err ? l.err : list_local_routes(&l);
	if (r >= 0)
		r = list_routers(&l);
	if (r < 0) {
		free(l.a);
		return r;
	}
	if (nh) {
		memcpy(nh, l.nh, l.nnh * sizeof(*nh));
		*nnh = l.nnh;
	}
	*ret = l.a;
	*ret_n = l.n;
	return 0;
}

void policy_set_own(struct policy *p, struct addr_prefix *own, unsigned n)
{
	free(p->own);
	p->own = own;
	p->nown = n;
	p->own_known = true;
}

int policy_add_own_addresses(struct policy *p)
{
	struct addr_prefix *own;
	unsigned n;
	int r = policy_list_own(&own, &n);

	if (r < 0)
		return r;
	policy_set_own(p, own, n);
	return 0;
}

int policy_add_own_extra(struct policy *p, const struct addr_prefix *pfx)
{
	struct addr_prefix *o = realloc(p->own_extra, (p->nown_extra + 1) * sizeof(*o));

	if (!o)
		return -ENOMEM;
	o[p->nown_extra++] = *pfx;
	p->own_extra = o;
	return 0;
}

int policy_add_nat64(struct policy *p, const struct addr_prefix *pfx)
{
	if (pfx->len != 96 || addr_is_v4mapped(&pfx->addr))
		return -EINVAL;
	if (p->nnat64 == POLICY_MAX_NAT64)
		return -ENOSPC;
	p->nat64[p->nnat64++] = *pfx;
	return 0;
}

bool policy_client_allowed(const struct policy *p, const struct in6_addr *a)
{
	if (p->allow_any_client)
		return true;
	for (unsigned i = 0; i < p->nclients; i++)
		if (addr_prefix_match(&p->clients[i], a))
			return true;
	return false;
}

/* The deciding rule for a: longest prefix; operator over built-in; deny
 * over allow. NULL when no rule matches (allowed). */
static const struct policy_rule *best_rule(const struct policy *p,
					   const struct in6_addr *a)
{
	const struct policy_rule *best = NULL;

	for (unsigned i = 0; i < p->nrules; i++) {
		const struct policy_rule *r = &p->rules[i];

		if (!addr_prefix_match(&r->prefix, a))
			continue;
		if (!best || r->prefix.len > best->prefix.len ||
		    (r->prefix.len == best->prefix.len &&
		     (r->builtin < best->builtin ||
		      (r->builtin == best->builtin && r->allow < best->allow))))
			best = r;
	}
	return best;
}

static bool is_own(const struct policy *p, const struct in6_addr *a)
{
	for (unsigned i = 0; i < p->nown; i++)
		if (addr_prefix_match(&p->own[i], a))
			return true;
	for (unsigned i = 0; i < p->nown_extra; i++)
		if (addr_prefix_match(&p->own_extra[i], a))
			return true;
	return false;
}

/* Denied, and why (static). Own addresses first: no rule opens them. */
static const char *dest_denied(const struct policy *p, const struct in6_addr *a)
{
	const struct policy_rule *r;

	if (!p->own_known)
		return "this box's own addresses are not known yet (cannot list them)";
	if (is_own(p, a))
		return "destination is the concentrator itself or its router";
	r = best_rule(p, a);
	return r && !r->allow ? "destination denied by policy" : NULL;
}

int policy_check_dest(const struct policy *p, const struct in6_addr *a,
		      uint16_t port, const char **ret_reason)
{
	static const struct addr_prefix wkp = {  /* 64:ff9b::/96, RFC 6052 */
		.addr = { .s6_addr = { 0x00, 0x64, 0xff, 0x9b } }, .len = 96 };
	const char *why;
	struct in6_addr v4;

	if (port == 0) {
		*ret_reason = "destination port 0";
		return -EACCES;
	}
	why = dest_denied(p, a);
	if (why) {
		*ret_reason = why;
		return -EACCES;
	}
	/* IPv4 embedded in IPv6 reaches the IPv4 address through a
	 * translator or relay: it must pass the IPv4 checks too. */
	memset(&v4, 0, sizeof(v4));
	v4.s6_addr[10] = v4.s6_addr[11] = 0xff;
	for (unsigned i = 0; i <= p->nnat64; i++) {
		if (!addr_prefix_match(i == p->nnat64 ? &wkp : &p->nat64[i], a))
			continue;
		memcpy(v4.s6_addr + 12, a->s6_addr + 12, 4);
		if (dest_denied(p, &v4)) {
			*ret_reason = "NAT64 destination embeds a denied IPv4 address";
			return -EACCES;
		}
	}
	if (a->s6_addr[0] == 0x20 && a->s6_addr[1] == 0x02) {
		memcpy(v4.s6_addr + 12, a->s6_addr + 2, 4);
		if (dest_denied(p, &v4)) {
			*ret_reason = "6to4 destination embeds a denied IPv4 address";
			return -EACCES;
		}
	}
	return 0;
}

/* ---- replay cache ---- */

int replay_init(struct replay *rp, uint32_t cap)
{
	int r;

	memset(rp, 0, sizeof(*rp));
	if (!cap)
		return -EINVAL;
	r = hash_key_random(&rp->key);
	if (r < 0)
		return r;
	rp->cap = cap;
	rp->nbuckets = 1;
	while (rp->nbuckets < cap)
		rp->nbuckets <<= 1;
	rp->e = calloc(cap, sizeof(*rp->e));
	rp->bucket = calloc(rp->nbuckets, sizeof(*rp->bucket));
	rp->k = calloc(cap, sizeof(*rp->k));
	rp->kbucket = calloc(rp->nbuckets, sizeof(*rp->kbucket));
	rp->heap = calloc(cap, sizeof(*rp->heap));
	if (!rp->e || !rp->bucket || !rp->k || !rp->kbucket || !rp->heap) {
		free(rp->e);
		free(rp->bucket);
		free(rp->k);
		free(rp->kbucket);
		free(rp->heap);
		memset(rp, 0, sizeof(*rp));
		return -ENOMEM;
	}
	pthread_mutex_init(&rp->lock, NULL);
	return 0;
}

void replay_free(struct replay *rp)
{
	if (!rp->e)
		return;
	pthread_mutex_destroy(&rp->lock);
	free(rp->e);
	free(rp->bucket);
	free(rp->k);
	free(rp->kbucket);
	free(rp->heap);
	memset(rp, 0, sizeof(*rp));
}

static uint32_t replay_bucket(const struct replay *rp, uint32_t kid, uint64_t nonce)
{
	struct { uint64_t n; uint32_t k; } key = { nonce, kid };

	return (uint32_t)hash_siphash24(&rp->key, &key, 12) & (rp->nbuckets - 1);
}

static uint32_t replay_kbucket(const struct replay *rp, uint32_t kid)
{
	return (uint32_t)hash_siphash24(&rp->key, &kid, sizeof(kid)) & (rp->nbuckets - 1);
}

/* An entry at time t can be replayed until cookie_check refuses t; kept
 * twice that long, so a step of the clock does not bring it back. */
static bool replay_live(uint32_t t, uint32_t now)
{
	return (uint64_t)t + 2 * COOKIE_MAX_AGE_S >= now;
}

/* The heap orders records by entries held, most first: its top gives up an
 * entry when the table is full. */
static void heap_set(struct replay *rp, uint32_t pos, uint32_t ki)
{
	rp->heap[pos] = ki;
	rp->k[ki].heap = pos;
}

static void heap_up(struct replay *rp, uint32_t pos)
{
	uint32_t ki = rp->heap[pos];

	while (pos) {
		uint32_t parent = (pos - 1) / 2;

		if (rp->k[rp->heap[parent]].count >= rp->k[ki].count)
			break;
		heap_set(rp, pos, rp->heap[parent]);
		pos = parent;
	}
	heap_set(rp, pos, ki);
}

static void heap_down(struct replay *rp, uint32_t pos)
{
	uint32_t ki = rp->heap[pos];

	for (;;) {
		uint32_t c = 2 * pos + 1;

		if (c >= rp->nheap)
			break;
		if (c + 1 < rp->nheap && rp->k[rp->heap[c + 1]].count > rp->k[rp->heap[c]].count)
			c++;
		if (rp->k[rp->heap[c]].count <= rp->k[ki].count)
			break;
		heap_set(rp, pos, rp->heap[c]);
		pos = c;
	}
	heap_set(rp, pos, ki);
}

static void idle_unlink(struct replay *rp, uint32_t ki)
{
	struct replay_key *k = &rp->k[ki];

	if (k->iprev)
		rp->k[k->iprev - 1].inext = k->inext;
	else
		rp->ihead = k->inext;
	if (k->inext)
		rp->k[k->inext - 1].iprev = k->iprev;
	else
		rp->itail = k->iprev;
	k->iprev = k->inext = 0;
	k->idle = false;
}

/* Forget a record: out of its kid chain, the heap and the idle list. */
static void key_release(struct replay *rp, uint32_t ki)
{
	struct replay_key *k = &rp->k[ki];
	uint32_t *link = &rp->kbucket[replay_kbucket(rp, k->kid)];
	uint32_t pos = k->heap, last;

	while (*link && *link != ki + 1)
		link = &rp->k[*link - 1].next;
	if (*link)
		*link = k->next;
	if (k->idle)
		idle_unlink(rp, ki);
	last = rp->heap[--rp->nheap];
	if (pos < rp->nheap) {
		heap_set(rp, pos, last);
		heap_up(rp, pos);
		heap_down(rp, rp->k[last].heap);
	}
	memset(k, 0, sizeof(*k));
	k->next = rp->kfree;
	rp->kfree = ki + 1;
}

/* A record left with no entries: kept (idle) while its floor can still
 * refuse a cookie, else forgotten. */
static void key_settle(struct replay *rp, uint32_t ki, uint32_t now)
{
	struct replay_key *k = &rp->k[ki];

	if (k->count || k->idle)
		return;
	if (!k->floor || !replay_live(k->floor, now)) {
		key_release(rp, ki);
		return;
	}
	k->idle = true;
	k->iprev = rp->itail;
	k->inext = 0;
	if (rp->itail)
		rp->k[rp->itail - 1].inext = ki + 1;
	else
		rp->ihead = ki + 1;
	rp->itail = ki + 1;
}

/* Drop record ki's oldest entry; evicted (not expired): its time becomes
 * the record's floor. */
static void entry_drop_oldest(struct replay *rp, uint32_t ki, bool evicted)
{
	struct replay_key *k = &rp->k[ki];
	uint32_t ei = k->head - 1;
	struct replay_entry *e = &rp->e[ei];
	uint32_t *link = &rp->bucket[replay_bucket(rp, k->kid, e->nonce)];

	while (*link && *link != ei + 1)
		link = &rp->e[*link - 1].next;
	if (*link)
		*link = e->next;
	if (evicted && e->time > k->floor)
		k->floor = e->time;
	k->head = e->knext;
	if (!k->head)
		k->tail = 0;
	k->count--;
	heap_down(rp, k->heap);
	memset(e, 0, sizeof(*e));
	e->next = rp->efree;
	rp->efree = ei + 1;
	rp->len--;
}

static void key_expire(struct replay *rp, uint32_t ki, uint32_t now)
{
	while (rp->k[ki].head && !replay_live(rp->e[rp->k[ki].head - 1].time, now))
		entry_drop_oldest(rp, ki, false);
	key_settle(rp, ki, now);
}

static int64_t key_find(struct replay *rp, uint32_t kid)
{
	for (uint32_t i = rp->kbucket[replay_kbucket(rp, kid)]; i; i = rp->k[i - 1].next)
		if (rp->k[i - 1].kid == kid)
			return i - 1;
	return -1;
}

static int64_t key_new(struct replay *rp, uint32_t kid, uint32_t now)
{
	uint32_t ki, b;

	/* Idle records whose floor has passed are no longer needed. */
	while (rp->ihead && !replay_live(rp->k[rp->ihead - 1].floor, now))
		key_release(rp, rp->ihead - 1);
	if (rp->kfree) {
		ki = rp->kfree - 1;
		rp->kfree = rp->k[ki].next;
	} else if (rp->kused < rp->cap) {
		ki = rp->kused++;  /* pages never used stay unbacked */
	} else {
		return -ENOSPC;
	}
	b = replay_kbucket(rp, kid);
	rp->k[ki] = (struct replay_key){ .kid = kid, .used = true, .next = rp->kbucket[b] };
	rp->kbucket[b] = ki + 1;
	heap_set(rp, rp->nheap++, ki);
	return ki;
}

int replay_check(struct replay *rp, uint32_t kid, uint64_t nonce, uint32_t time, uint32_t now)
{
	struct replay_key *k;
	int64_t found;
	uint32_t b, ki, ei;
	int r = 0;

	pthread_mutex_lock(&rp->lock);
	/* One record's expired entries a call, round robin, so keys that went
	 * quiet give their room back. */
	if (rp->sweep < rp->kused && rp->k[rp->sweep].used)
		key_expire(rp, rp->sweep, now);
	if (++rp->sweep >= rp->kused)
		rp->sweep = 0;

	found = key_find(rp, kid);
	if (found >= 0) {
		ki = (uint32_t)found;
		k = &rp->k[ki];
		if (time <= k->floor) {
			r = -ESTALE;
			goto out;
		}
		b = replay_bucket(rp, kid, nonce);
		for (uint32_t i = rp->bucket[b]; i; i = rp->e[i - 1].next)
			if (rp->e[i - 1].nonce == nonce && rp->e[i - 1].rec == ki) {
				r = -EALREADY;
				goto out;
			}
		key_expire(rp, ki, now);
		found = key_find(rp, kid);  /* expiry may have forgotten it */
	}
	if (found < 0) {
		found = key_new(rp, kid, now);
		if (found < 0) {
			r = -ESTALE;
			goto out;
		}
	}
	ki = (uint32_t)found;
	k = &rp->k[ki];
	if (k->idle)
		idle_unlink(rp, ki);
	if (rp->len == rp->cap) {
		/* Full: the key holding the most gives up its oldest (this
		 * key, when that is this key), and refuses anything as old
		 * from now on. */
		uint32_t top = rp->heap[0];

		entry_drop_oldest(rp, top, true);
		if (top != ki)
			key_settle(rp, top, now);
		if (time <= k->floor) {
			key_settle(rp, ki, now);
			r = -ESTALE;
			goto out;
		}
	}
	if (rp->efree) {
		ei = rp->efree - 1;
		rp->efree = rp->e[ei].next;
	} else {
		ei = rp->eused++;  /* len < cap: never past cap */
	}
	b = replay_bucket(rp, kid, nonce);
	rp->e[ei] = (struct replay_entry){ .nonce = nonce, .rec = ki, .time = time,
					   .next = rp->bucket[b] };
	rp->bucket[b] = ei + 1;
	if (k->tail)
		rp->e[k->tail - 1].knext = ei + 1;
	else
		k->head = ei + 1;
	k->tail = ei + 1;
	k->count++;
	heap_up(rp, k->heap);
	rp->len++;
out:
	pthread_mutex_unlock(&rp->lock);
	return r;
}
