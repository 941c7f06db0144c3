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

int policy_add_own_addresses(struct policy *p)
{
	struct ifaddrs *ifa, *i;
	int r = 0;

	if (getifaddrs(&ifa) < 0)
		return -errno;
	for (i = ifa; i && r >= 0; i = i->ifa_next) {
		struct addr_prefix pfx;

		if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET &&
				     i->ifa_addr->sa_family != AF_INET6))
			continue;
		if (addr_to_in6(i->ifa_addr, &pfx.addr, NULL) < 0)
			continue;
		pfx.len = 128;
		r = policy_add_dest(p, &pfx, false, true);
	}
	freeifaddrs(ifa);
	return r;
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

static bool dest_denied(const struct policy *p, const struct in6_addr *a)
{
	const struct policy_rule *r = best_rule(p, a);

	return r && !r->allow;
}

int policy_check_dest(const struct policy *p, const struct in6_addr *a,
		      uint16_t port, const char **ret_reason)
{
	static const uint8_t nat64[12] = { 0x00, 0x64, 0xff, 0x9b };
	struct in6_addr v4;

	if (port == 0) {
		*ret_reason = "destination port 0";
		return -EACCES;
	}
	if (dest_denied(p, a)) {
		*ret_reason = "destination denied by policy";
		return -EACCES;
	}
	/* IPv4 embedded in IPv6 reaches the IPv4 address through a
	 * translator or relay: it must pass the IPv4 rules too. */
	memset(&v4, 0, sizeof(v4));
	v4.s6_addr[10] = v4.s6_addr[11] = 0xff;
	if (memcmp(a->s6_addr, nat64, sizeof(nat64)) == 0) {
		memcpy(v4.s6_addr + 12, a->s6_addr + 12, 4);
		if (dest_denied(p, &v4)) {
			*ret_reason = "NAT64 destination embeds a denied IPv4 address";
			return -EACCES;
		}
	} else if (a->s6_addr[0] == 0x20 && a->s6_addr[1] == 0x02) {
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

/* ---- limits ---- */

int limits_init(struct limits *l, uint8_t v6_prefix)
{
	int r;

	memset(l, 0, sizeof(*l));
	l->v6_prefix = v6_prefix > 128 ? 128 : v6_prefix;
	r = hash_key_random(&l->key);
	if (r < 0)
		return r;
	l->cap = 1024;
	l->tab = calloc(l->cap, sizeof(*l->tab));
	if (!l->tab)
		return -ENOMEM;
	pthread_mutex_init(&l->lock, NULL);
	return 0;
}

void limits_set(struct limits *l, enum limits_kind k, uint32_t max, uint32_t max_per_client)
{
	pthread_mutex_lock(&l->lock);
	l->max[k] = max;
	l->max_per_client[k] = max_per_client;
	pthread_mutex_unlock(&l->lock);
}

void limits_free(struct limits *l)
{
	if (!l->tab)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l->tab);
	l->tab = NULL;
}

/* The client key: IPv4 (mapped) whole, IPv6 cut to v6_prefix bits. */
static struct in6_addr client_key(const struct limits *l, const struct in6_addr *a)
{
	struct in6_addr k = *a;
	unsigned bits = l->v6_prefix;

	if (IN6_IS_ADDR_V4MAPPED(a))
		return k;
	for (unsigned i = 0; i < 16; i++) {
		if (bits >= 8) {
			bits -= 8;
			continue;
		}
		k.s6_addr[i] &= (uint8_t)(0xff00 >> bits);
		bits = 0;
	}
	return k;
}

static uint32_t slot_of(const struct limits *l, const struct in6_addr *k)
{
	return (uint32_t)hash_siphash24(&l->key, k, sizeof(*k)) & (l->cap - 1);
}

static bool entry_used(const struct limits_entry *e)
{
	return e->n[0] || e->n[1];
}

/* Entry for key k, or the empty slot where it would go. Linear probing; an
 * entry whose counts drop to 0 is removed with backward-shift deletion so
 * probes never need tombstones. */
static struct limits_entry *lookup(struct limits *l, const struct in6_addr *k)
{
	uint32_t i = slot_of(l, k);

	for (;;) {
		struct limits_entry *e = &l->tab[i];

		if (!entry_used(e) || memcmp(&e->a, k, sizeof(*k)) == 0)
			return e;
		i = (i + 1) & (l->cap - 1);
	}
}

static int grow(struct limits *l)
{
	struct limits_entry *old = l->tab;
	uint32_t ocap = l->cap;

	l->tab = calloc(ocap * 2, sizeof(*l->tab));
	if (!l->tab) {
		l->tab = old;
		return -ENOMEM;
	}
	l->cap = ocap * 2;
	for (uint32_t i = 0; i < ocap; i++)
		if (entry_used(&old[i]))
			*lookup(l, &old[i].a) = old[i];
	free(old);
	return 0;
}

int limits_take(struct limits *l, enum limits_kind kind, const struct in6_addr *a)
{
	struct in6_addr k = client_key(l, a);
	struct limits_entry *e;
	int r = 0;

	pthread_mutex_lock(&l->lock);
	if (l->max[kind] && l->count[kind] >= l->max[kind]) {
		r = -EUSERS;
		goto out;
	}
	if ((l->used + 1) * 2 > l->cap && grow(l) < 0) {
		r = -ENOMEM;
		goto out;
	}
	e = lookup(l, &k);
	if (l->max_per_client[kind] && e->n[kind] >= l->max_per_client[kind]) {
		r = -EDQUOT;
		goto out;
	}
	if (!entry_used(e)) {
		e->a = k;
		l->used++;
	}
	e->n[kind]++;
	l->count[kind]++;
out:
	pthread_mutex_unlock(&l->lock);
	return r;
}

void limits_release(struct limits *l, enum limits_kind kind, const struct in6_addr *a)
{
	struct in6_addr k = client_key(l, a);
	struct limits_entry *e;

	pthread_mutex_lock(&l->lock);
	e = lookup(l, &k);
	if (e->n[kind] == 0)
		goto out;  /* not taken: a bug elsewhere, but never underflow */
	l->count[kind]--;
	if (--e->n[kind] == 0 && !entry_used(e)) {
		/* Backward-shift delete. */
		uint32_t i = (uint32_t)(e - l->tab), j = i;

		l->used--;
		for (;;) {
			uint32_t home;

			j = (j + 1) & (l->cap - 1);
			if (!entry_used(&l->tab[j]))
				break;
			home = slot_of(l, &l->tab[j].a);
			/* Move j back to i if its home is not in (i, j]. */
			if ((j > i && (home <= i || home > j)) ||
			    (j < i && (home <= i && home > j))) {
				l->tab[i] = l->tab[j];
				memset(&l->tab[j], 0, sizeof(l->tab[j]));
				i = j;
			}
		}
		memset(&l->tab[i], 0, sizeof(l->tab[i]));
	}
out:
	pthread_mutex_unlock(&l->lock);
}

uint32_t limits_max_probe(struct limits *l)
{
	uint32_t worst = 0;

	pthread_mutex_lock(&l->lock);
	for (uint32_t i = 0; i < l->cap; i++) {
		uint32_t home, d;

		if (!entry_used(&l->tab[i]))
			continue;
		home = slot_of(l, &l->tab[i].a);
		d = (i - home) & (l->cap - 1);
		if (d + 1 > worst)
			worst = d + 1;
	}
	pthread_mutex_unlock(&l->lock);
	return worst;
}
