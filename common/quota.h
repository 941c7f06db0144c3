/* Counted limits per client, shared by a daemon's workers. */
#ifndef COMMON_QUOTA_H
#define COMMON_QUOTA_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "hash.h"

/* Limits shared by all workers of a daemon, per kind: handshakes in progress (from
 * accept until relaying starts or the connection is refused and closed)
 * and flows (from the policy check until close). Each kind has a total and
 * a per-client bound. A client is its IPv4 address, or its IPv6 address cut
 * to v6_prefix bits (/64 by default: one subscriber's LAN is one client,
 * whatever addresses it picks from it).
 *
 * An open-addressing table under a mutex, touched at accept, relay start
 * and close, never on the data path. Its hash is SipHash with a random key,
 * so addresses chosen to collide cannot make lookups linear. */
enum quota_kind {
	QUOTA_HANDSHAKE = 0,
	QUOTA_FLOW = 1,
	QUOTA_PARKED = 2,      /* flows holding parked heap (relay.c) */
	QUOTA_KINDS
};

struct quota_entry {
	struct in6_addr a;     /* the client key (prefix-cut) */
	uint32_t n[QUOTA_KINDS];  /* by enum quota_kind */
};

struct quota {
	pthread_mutex_t lock;
	uint32_t max[QUOTA_KINDS], max_per_client[QUOTA_KINDS];
	uint32_t count[QUOTA_KINDS];
	uint8_t v6_prefix;
	struct hash_key key;
	struct quota_entry *tab;
	uint32_t cap, used;
};

int quota_init(struct quota *l, uint8_t v6_prefix);
void quota_free(struct quota *l);
/* Bounds of kind k (0 = unlimited); may change at any time (reload):
 * holders over a lowered bound stay, new ones are refused. */
void quota_set(struct quota *l, enum quota_kind k, uint32_t max, uint32_t max_per_client);
/* Take one of kind k for client a: 0, or -EUSERS (total), -EDQUOT (per
 * client), -ENOMEM. */
int quota_take(struct quota *l, enum quota_kind k, const struct in6_addr *a);
void quota_release(struct quota *l, enum quota_kind k, const struct in6_addr *a);
/* The longest probe sequence in the table (tests). */
uint32_t quota_max_probe(struct quota *l);

#endif
