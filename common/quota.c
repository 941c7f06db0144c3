#include "quota.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>


int quota_init(struct quota *l, uint8_t v6_prefix)
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

void quota_set(struct quota *l, enum quota_kind k, uint32_t max, uint32_t max_per_client)
{
	pthread_mutex_lock(&l->lock);
	l->max[k] = max;
	l->max_per_client[k] = max_per_client;
	pthread_mutex_unlock(&l->lock);
}

void quota_free(struct quota *l)
{
	if (!l->tab)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l->tab);
	l->tab = NULL;
}

/* The client key: IPv4 (mapped) whole, IPv6 cut to v6_prefix bits. */
static struct in6_addr client_key(const struct quota *l, const struct in6_addr *a)
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

static uint32_t slot_of(const struct quota *l, const struct in6_addr *k)
{
	return (uint32_t)hash_siphash24(&l->key, k, sizeof(*k)) & (l->cap - 1);
}

static bool entry_used(const struct quota_entry *e)
{
	for (unsigned k = 0; k < QUOTA_KINDS; k++)
		if (e->n[k])
			return true;
	return false;
}

/* Entry for key k, or the empty slot where it would go. Linear probing; an
 * entry whose counts drop to 0 is removed with backward-shift deletion so
 * probes never need tombstones. */
static struct quota_entry *lookup(struct quota *l, const struct in6_addr *k)
{
	uint32_t i = slot_of(l, k);

	for (;;) {
		struct quota_entry *e = &l->tab[i];

		if (!entry_used(e) || memcmp(&e->a, k, sizeof(*k)) == 0)
			return e;
		i = (i + 1) & (l->cap - 1);
	}
}

static int grow(struct quota *l)
{
	struct quota_entry *old = l->tab;
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

int quota_take(struct quota *l, enum quota_kind kind, const struct in6_addr *a)
{
	struct in6_addr k = client_key(l, a);
	struct quota_entry *e;
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

void quota_release(struct quota *l, enum quota_kind kind, const struct in6_addr *a)
{
	struct in6_addr k = client_key(l, a);
	struct quota_entry *e;

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

uint32_t quota_max_probe(struct quota *l)
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
