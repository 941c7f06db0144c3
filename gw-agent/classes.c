/* Traffic classes: their part of the agent's nftables table, and the
 * thread that keeps their domains' addresses in it (classes.h). */
#include "classes.h"
#include "log.h"
#include "paths.h"
#include "runcmd.h"

#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NFT_TABLE "gw_agent"

static int slot_of(const struct paths *ps, const char *line)
{
	for (unsigned i = 0; i < ps->n; i++)
		if (!ps->p[i].neighbour && !strcmp(ps->p[i].ifname, line))
			return (int)i;
	return -1;
}

/* The prefixes of one family as nft elements. */
static void prefixes(char *script, size_t cap, const struct addr_prefix *p, unsigned n, bool v4)
{
	char a[ADDR_STRLEN];
	bool any = false;

	for (unsigned i = 0; i < n; i++) {
		if (addr_is_v4mapped(&p[i].addr) != v4 || (v4 && p[i].len < 96))
			continue;
		script_append(script, cap, "%s%s", any ? ", " : "", addr_format_prefix(&p[i], a));
		any = true;
	}
}

static bool has_family(const struct addr_prefix *p, unsigned n, bool v4)
{
	for (unsigned i = 0; i < n; i++)
		if (addr_is_v4mapped(&p[i].addr) == v4 && (!v4 || p[i].len >= 96))
			return true;
	return false;
}

static void set_of(char *script, size_t cap, unsigned k, const char *what, bool v4,
		   const struct addr_prefix *p, unsigned n)
{
	if (!has_family(p, n, v4))
		return;
	script_append(script, cap, "\tset c%u_%s%c { type ipv%c_addr; flags interval; elements = { ",
		      k, what, v4 ? '4' : '6', v4 ? '4' : '6');
	prefixes(script, cap, p, n, v4);
	script_append(script, cap, " } }\n");
}

int classes_nft_sets(const struct agent_classes *cs, char *script, size_t cap)
{
	for (unsigned k = 0; k < cs->n; k++) {
		const struct agent_class *c = &cs->c[k];

		for (int v4 = 1; v4 >= 0; v4--) {
			set_of(script, cap, k, "dev", v4, c->dev, c->ndev);
			set_of(script, cap, k, "dst", v4, c->dst, c->ndst);
			/* Filled by the resolver thread (flush and add in one
			 * transaction). */
			if (c->ndomain)
				script_append(script, cap, "\tset c%u_dom%c { type ipv%c_addr; }\n", k,
					      v4 ? '4' : '6', v4 ? '4' : '6');
		}
	}
	return strlen(script) >= cap - 1 ? -E2BIG : 0;
}

/* One rule per way the class can match: device (MACs, IPv4 or IPv6
 * addresses) times destination (prefixes or domain addresses, per family),
 * the ports in each. */
int classes_nft_rules(const struct agent_classes *cs, const struct paths *ps, uint32_t mark,
		      char *script, size_t cap)
{
	if (!cs->n)
		return 0;
	/* A chain of its own: the first class that matches ends it, with
	 * accept (bypass: not intercepted) or return (the agent's classes:
	 * on to the TPROXY rules). */
	script_append(script, cap, "\tchain classes {\n");
	/* A connection classed once keeps its way out (reloads included). */
	script_append(script, cap, "\t\tct mark %u-%u meta mark set ct mark accept\n", mark + 1,
		      mark + CLASS_MARK_MAIN);
	for (unsigned k = 0; k < cs->n; k++) {
		const struct agent_class *c = &cs->c[k];
		char devs[3][48], dsts[4][48], ports[256] = "";
		int ndevs = 0, ndsts = 0, devfam[3], dstfam[4];
		uint32_t cm;

		if (class_by_agent(c)) {
			cm = mark + CLASS_MARK_AGENT + k;
		} else if (c->line[0]) {
			int s = slot_of(ps, c->line);

			if (s < 0) {
				log_warn("class %s: line %s is not a path: the class is not applied",
					 c->name, c->line);
				continue;
			}
			cm = mark + 1 + (uint32_t)s;
		} else {
			cm = mark + CLASS_MARK_MAIN;
		}
		if (c->nmac)
			devfam[ndevs++] = -1;  /* written out below: too long for devs */
		if (has_family(c->dev, c->ndev, true)) {
			snprintf(devs[ndevs], sizeof(devs[0]), "ip saddr @c%u_dev4 ", k);
			devfam[ndevs++] = 4;
		}
		if (has_family(c->dev, c->ndev, false)) {
			snprintf(devs[ndevs], sizeof(devs[0]), "ip6 saddr @c%u_dev6 ", k);
			devfam[ndevs++] = 6;
		}
		if (has_family(c->dst, c->ndst, true)) {
			snprintf(dsts[ndsts], sizeof(dsts[0]), "ip daddr @c%u_dst4 ", k);
			dstfam[ndsts++] = 4;
		}
		if (has_family(c->dst, c->ndst, false)) {
			snprintf(dsts[ndsts], sizeof(dsts[0]), "ip6 daddr @c%u_dst6 ", k);
			dstfam[ndsts++] = 6;
		}
		if (c->ndomain) {
			snprintf(dsts[ndsts], sizeof(dsts[0]), "ip daddr @c%u_dom4 ", k);
			dstfam[ndsts++] = 4;
			snprintf(dsts[ndsts], sizeof(dsts[0]), "ip6 daddr @c%u_dom6 ", k);
			dstfam[ndsts++] = 6;
		}
		if (c->nport) {
			script_append(ports, sizeof(ports), "meta l4proto { tcp, udp } th dport { ");
			for (unsigned i = 0; i < c->nport; i++) {
				if (c->port_lo[i] == c->port_hi[i])
					script_append(ports, sizeof(ports), "%s%u", i ? ", " : "",
						      c->port_lo[i]);
				else
					script_append(ports, sizeof(ports), "%s%u-%u", i ? ", " : "",
						      c->port_lo[i], c->port_hi[i]);
			}
			script_append(ports, sizeof(ports), " } ");
		}
		for (int di = 0; di < (ndevs ? ndevs : 1); di++)
			for (int ti = 0; ti < (ndsts ? ndsts : 1); ti++) {
				int df = ndevs ? devfam[di] : -1, tf = ndsts ? dstfam[ti] : -1;

				if (df > 0 && tf > 0 && df != tf)
					continue;  /* an IPv4 device never sends to an IPv6 address */
				script_append(script, cap, "\t\tct state new ");
				if (ndevs && df < 0) {
					script_append(script, cap, "ether saddr { ");
					for (unsigned i = 0; i < c->nmac; i++)
						script_append(script, cap, "%s%02x:%02x:%02x:%02x:%02x:%02x",
							      i ? ", " : "", c->mac[i][0], c->mac[i][1],
							      c->mac[i][2], c->mac[i][3], c->mac[i][4],
							      c->mac[i][5]);
					script_append(script, cap, " } ");
				} else if (ndevs) {
					script_append(script, cap, "%s", devs[di]);
				}
				if (ndsts)
					script_append(script, cap, "%s", dsts[ti]);
				if (class_by_agent(c))
					/* On to the agent, which reads the mark. */
					script_append(script, cap, "%sct mark set %u counter return\n", ports,
						      cm);
				else
					script_append(script, cap, "%sct mark set %u meta mark set %u counter "
						      "accept\n", ports, cm, cm);
			}
	}
	script_append(script, cap, "\t}\n");
	return strlen(script) >= cap - 1 ? -E2BIG : 0;
}

int classes_nft_nat(const struct agent_classes *cs, uint32_t mark, char *script, size_t cap)
{
	bool lines = false;

	for (unsigned k = 0; k < cs->n; k++)
		lines |= cs->c[k].action == CLASS_BYPASS && cs->c[k].line[0] != '\0';
	if (!lines)
		return 0;
	/* Out of a line: as the line's own address (the LAN's prefix is
	 * another line's, or private). */
	script_append(script, cap,
		      "\tchain postrouting {\n"
		      "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
		      "\t\tmeta mark %u-%u masquerade\n"
		      "\t}\n", mark + 1, mark + CLASS_MARK_MAIN - 1);
	return strlen(script) >= cap - 1 ? -E2BIG : 0;
}

bool classes_differ(const struct agent_classes *a, const struct agent_classes *b)
{
	return a->n != b->n || memcmp(a->c, b->c, a->n * sizeof(a->c[0]));
}

bool agent_classes_domains(const struct agent_classes *cs)
{
	for (unsigned k = 0; k < cs->n; k++)
		if (cs->c[k].ndomain)
			return true;
	return false;
}

/* ---- the resolver thread ---- */

struct seen {
	struct in6_addr a;
	time_t last;
};

struct class_resolver {
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool kicked, stop, orphan, done;
	struct agent_classes want;        /* under lock */
	struct agent_classes cur;         /* the thread's copy */
	/* The thread's: per class and domain, what it returned lately. */
	struct seen seen[CLASS_MAX][CLASS_MAX_DOMAINS][CLASS_DOMAIN_ADDRS];
	unsigned nseen[CLASS_MAX][CLASS_MAX_DOMAINS];
	atomic_uint_fast64_t lookups, failed;
	atomic_uint addrs;
	char script[65536];
};

static void remember(struct class_resolver *r, unsigned k, unsigned d, const struct in6_addr *a,
		     time_t now)
{
	struct seen *s = r->seen[k][d];
	unsigned *n = &r->nseen[k][d], oldest = 0;

	for (unsigned i = 0; i < *n; i++) {
		if (!memcmp(&s[i].a, a, sizeof(*a))) {
			s[i].last = now;
			return;
		}
		if (s[i].last < s[oldest].last)
			oldest = i;
	}
	if (*n < CLASS_DOMAIN_ADDRS)
		oldest = (*n)++;
	s[oldest] = (struct seen){ *a, now };
}

/* An answer a class may send out of a line: a public address. Not the
 * router's own networks (a lying or spoofed answer would steer the LAN's
 * traffic to a private network out of the WAN line instead). */
static bool public_addr(const struct in6_addr *a)
{
	static const char *const deny[] = {
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/3", "::/128", "::1/128",
		"fc00::/7", "fe80::/10", "ff00::/8",
	};

	for (unsigned i = 0; i < sizeof(deny) / sizeof(deny[0]); i++) {
		struct addr_prefix p;

		if (addr_parse_prefix(deny[i], &p) == 0 && addr_prefix_match(&p, a))
			return false;
	}
	return true;
}

static void resolve_one(struct class_resolver *r, unsigned k, unsigned d, time_t now)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *i;
	int e = getaddrinfo(r->cur.c[k].domain[d], NULL, &hints, &res);

	atomic_fetch_add(&r->lookups, 1);
	if (e) {
		atomic_fetch_add(&r->failed, 1);
		log_info("class %s: domain %s does not resolve: %s (kept: what it gave in the "
			 "last %u minutes)", r->cur.c[k].name, r->cur.c[k].domain[d],
			 gai_strerror(e), CLASS_DOMAIN_KEEP_S / 60);
		return;
	}
	for (i = res; i; i = i->ai_next) {
		struct in6_addr a;

		if (addr_to_in6(i->ai_addr, &a, NULL) == 0 && public_addr(&a))
			remember(r, k, d, &a, now);
	}
	freeaddrinfo(res);
}

/* Every domain set flushed and filled in one transaction. */
static void fill_sets(struct class_resolver *r, time_t now)
{
	char *s = r->script, a[ADDR_STRLEN];
	unsigned total = 0;
	char *nft[] = { "nft", "-f", "-", NULL };
	bool any = false;

	s[0] = '\0';
	for (unsigned k = 0; k < r->cur.n; k++) {
		const struct agent_class *c = &r->cur.c[k];

		if (!c->ndomain)
			continue;
		any = true;
		for (int v4 = 1; v4 >= 0; v4--) {
			bool first = true;

			script_append(s, sizeof(r->script), "flush set inet " NFT_TABLE " c%u_dom%c\n", k,
				      v4 ? '4' : '6');
			for (unsigned d = 0; d < c->ndomain; d++)
				for (unsigned i = 0; i < r->nseen[k][d]; i++) {
					struct seen *e = &r->seen[k][d][i];

					if (now - e->last > CLASS_DOMAIN_KEEP_S ||
					    addr_is_v4mapped(&e->a) != v4)
						continue;
					script_append(s, sizeof(r->script), "%s%s",
						      first ? "add element inet " NFT_TABLE " c" : ", ",
						      "");
					if (first)
						script_append(s, sizeof(r->script), "%u_dom%c { ", k,
							      v4 ? '4' : '6');
					script_append(s, sizeof(r->script), "%s",
						      addr_format_in6(&e->a, 0, a));
					first = false;
					total++;
				}
			if (!first)
				script_append(s, sizeof(r->script), " }\n");
		}
	}
	if (!any)
		return;
	if (strlen(s) >= sizeof(r->script) - 1) {
		log_error("classes: the domains' addresses do not fit one nft script: not updated");
		return;
	}
	/* Duplicates (two domains, one address) are fine for nft's add. */
	if (spawn_run(nft, s, true) != 0)
		log_warn("classes: nft refused the domains' addresses (the table is being replaced?); "
			 "trying again in %u s", CLASS_RESOLVE_S);
	else
		atomic_store(&r->addrs, total);
}

static bool kicked(struct class_resolver *r)
{
	bool k;

	pthread_mutex_lock(&r->lock);
	k = r->kicked || r->stop;
	pthread_mutex_unlock(&r->lock);
	return k;
}

static void *resolver_main(void *arg)
{
	struct class_resolver *r = arg;
	bool orphan;

	pthread_mutex_lock(&r->lock);
	while (!r->stop) {
		struct timespec until;
		bool changed;
		time_t now;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += CLASS_RESOLVE_S;
		while (!r->kicked && !r->stop)
			if (pthread_cond_timedwait(&r->cond, &r->lock, &until) == ETIMEDOUT)
				break;
		if (r->stop)
			break;
		r->kicked = false;
		changed = classes_differ(&r->cur, &r->want);
		r->cur = r->want;
		pthread_mutex_unlock(&r->lock);
		if (changed) {
			/* What was learnt is per class and domain: forgotten when
			 * the classes change. */
			memset(r->nseen, 0, sizeof(r->nseen));
		}
		now = time(NULL);
		for (unsigned k = 0; k < r->cur.n && !kicked(r); k++)
			for (unsigned d = 0; d < r->cur.c[k].ndomain && !kicked(r); d++)
				resolve_one(r, k, d, now);
		/* A reload meanwhile (new classes, another order): its
		 * table's sets are filled from the new classes, at once. */
		if (!kicked(r))
			fill_sets(r, now);
		pthread_mutex_lock(&r->lock);
	}
	orphan = r->orphan;
	r->done = true;
	pthread_mutex_unlock(&r->lock);
	if (orphan) {
		/* Stop could not wait for a slow lookup: ours to free. */
		pthread_mutex_destroy(&r->lock);
		pthread_cond_destroy(&r->cond);
		free(r);
	}
	return NULL;
}

int classes_resolver_start(struct class_resolver **ret)
{
	struct class_resolver *r = calloc(1, sizeof(*r));
	pthread_condattr_t ca;

	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&r->th, NULL, resolver_main, r)) {
		pthread_mutex_destroy(&r->lock);
		pthread_cond_destroy(&r->cond);
		free(r);
		return -EAGAIN;
	}
	*ret = r;
	return 0;
}

void classes_kick(struct class_resolver *r, const struct agent_classes *cs)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->want = *cs;
	r->kicked = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

void classes_resolver_stop(struct class_resolver *r)
{
	struct timespec until;

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	/* A lookup in progress may take the resolver's timeouts: the stop
	 * does not wait for more than 2 s. */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 2;
	if (pthread_timedjoin_np(r->th, NULL, &until) == 0) {
		pthread_mutex_destroy(&r->lock);
		pthread_cond_destroy(&r->cond);
		free(r);
		return;
	}
	pthread_mutex_lock(&r->lock);
	if (r->done) {  /* it finished meanwhile, not seeing orphan */
		pthread_mutex_unlock(&r->lock);
		pthread_join(r->th, NULL);
		pthread_mutex_destroy(&r->lock);
		pthread_cond_destroy(&r->cond);
		free(r);
		return;
	}
	r->orphan = true;
	pthread_mutex_unlock(&r->lock);
	pthread_detach(r->th);
}

void classes_resolver_stats(struct class_resolver *r, uint64_t *ret_lookups, uint64_t *ret_failed,
			    unsigned *ret_addrs)
{
	*ret_lookups = r ? atomic_load(&r->lookups) : 0;
	*ret_failed = r ? atomic_load(&r->failed) : 0;
	*ret_addrs = r ? atomic_load(&r->addrs) : 0;
}
