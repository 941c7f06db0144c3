#include "policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <stdlib.h>
#include <string.h>

static const char *const builtin_deny[] = {
	/* IPv4 (matched as ::ffff:a.b.c.d) */
	"0.0.0.0/8",        /* this network, unspecified */
	"10.0.0.0/8",       /* RFC 1918 */
	"100.64.0.0/10",    /* CGNAT, RFC 6598 */
	"127.0.0.0/8",      /* loopback */
	"169.254.0.0/16",   /* link-local */
	"172.16.0.0/12",    /* RFC 1918 */
	"192.168.0.0/16",   /* RFC 1918 */
	"224.0.0.0/4",      /* multicast */
	"240.0.0.0/4",      /* reserved, includes 255.255.255.255 */
	/* IPv6 */
	"::/128",           /* unspecified */
	"::1/128",          /* loopback */
	"::/96",            /* IPv4-compatible (deprecated) */
	"100::/64",         /* discard-only */
	"64:ff9b:1::/48",   /* local-use NAT64 */
	"fc00::/7",         /* unique local */
	"fe80::/10",        /* link-local */
	"fec0::/10",        /* site-local (deprecated) */
	"ff00::/8",         /* multicast */
};

int policy_init(struct policy *p)
{
	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < sizeof(builtin_deny) / sizeof(builtin_deny[0]); i++) {
		struct addr_prefix pfx;
		int r = addr_parse_prefix(builtin_deny[i], &pfx);

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

int policy_list_own(struct addr_prefix **ret, unsigned *ret_n)
{
	struct ifaddrs *ifa, *i;
	struct addr_prefix *own = NULL, *o;
	unsigned n = 0;

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
		o = realloc(own, (n + 1) * sizeof(*o));
		if (!o) {
			free(own);
			freeifaddrs(ifa);
			return -ENOMEM;
		}
		own = o;
		own[n++] = pfx;
	}
	freeifaddrs(ifa);
	*ret = own;
	*ret_n = n;
	return 0;
}

void policy_set_own(struct policy *p, struct addr_prefix *own, unsigned n)
{
	free(p->own);
	p->own = own;
	p->nown = n;
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

	if (is_own(p, a))
		return "destination is the concentrator itself";
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
	r = hash_key_random(&rp->key);
	if (r < 0)
		return r;
	rp->cap = cap;
	rp->nbuckets = 1;
	while (rp->nbuckets < cap)
		rp->nbuckets <<= 1;
	rp->e = calloc(cap, sizeof(*rp->e));
	rp->bucket = calloc(rp->nbuckets, sizeof(*rp->bucket));
	if (!rp->e || !rp->bucket) {
		free(rp->e);
		free(rp->bucket);
		rp->e = NULL;
		rp->bucket = NULL;
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
	rp->e = NULL;
	rp->bucket = NULL;
}

static uint32_t replay_bucket(const struct replay *rp, uint32_t kid, uint64_t nonce)
{
	struct { uint64_t n; uint32_t k; } key = { nonce, kid };

	return (uint32_t)hash_siphash24(&rp->key, &key, 12) & (rp->nbuckets - 1);
}

/* Drop the oldest entry (the FIFO head) from its chain. */
static void replay_drop_oldest(struct replay *rp)
{
	struct replay_entry *old = &rp->e[rp->head];
	uint32_t *link = &rp->bucket[replay_bucket(rp, old->kid, old->nonce)];

	while (*link && *link != rp->head + 1)
		link = &rp->e[*link - 1].next;
	if (*link)
		*link = old->next;
	rp->head = (rp->head + 1) % rp->cap;
	rp->len--;
}

int replay_check(struct replay *rp, uint32_t kid, uint64_t nonce, uint32_t time, uint32_t now)
{
	uint32_t b, i;
	int r = 0;

	pthread_mutex_lock(&rp->lock);
	/* Entries past their window can never be replayed: forget them. */
	while (rp->len && rp->e[rp->head].time + 2 * COOKIE_MAX_AGE_S < now)
		replay_drop_oldest(rp);
	if (time <= rp->floor) {
		r = -ESTALE;
		goto out;
	}
	b = replay_bucket(rp, kid, nonce);
	for (i = rp->bucket[b]; i; i = rp->e[i - 1].next)
		if (rp->e[i - 1].nonce == nonce && rp->e[i - 1].kid == kid) {
			r = -EALREADY;
			goto out;
		}
	if (rp->len == rp->cap) {
		/* Full of live entries: forget the oldest, and refuse anything
		 * as old as it from now on. */
		if (rp->e[rp->head].time > rp->floor)
			rp->floor = rp->e[rp->head].time;
		replay_drop_oldest(rp);
		if (time <= rp->floor) {
			r = -ESTALE;
			goto out;
		}
	}
	i = (rp->head + rp->len) % rp->cap;
	rp->e[i] = (struct replay_entry){ .nonce = nonce, .kid = kid, .time = time,
					  .next = rp->bucket[b] };
	rp->bucket[b] = i + 1;
	rp->len++;
out:
	pthread_mutex_unlock(&rp->lock);
	return r;
}

