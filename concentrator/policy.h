/* Who may use the concentrator and where it may connect.
 *
 * Clients: an allow-list of source prefixes; with none, nobody, unless
 * allow_any is set, so the daemon is never an open proxy by accident.
 *
 * Destinations: rules of (prefix, allow|deny); the longest matching prefix
 * decides, at equal length an operator's rule beats a built-in one and deny
 * beats allow. Built-in denies cover loopback, unspecified, RFC 1918, CGNAT,
 * link-local, multicast, 240/4 and broadcast, ULA, site-local, discard-only,
 * IPv4-compatible, and the concentrator's own addresses. IPv4 is matched in
 * its mapped form, so ::ffff:10.0.0.1 is 10.0.0.1; IPv4 embedded in NAT64
 * (64:ff9b::/96) and 6to4 (2002::/16) addresses must pass the IPv4 rules too.
 * Documentation and benchmarking ranges are not denied. */
#ifndef CONCENTRATOR_POLICY_H
#define CONCENTRATOR_POLICY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "cookie.h"
#include "hash.h"
#include "quota.h"

struct policy_rule {
	struct addr_prefix prefix;
	uint8_t allow;     /* 1 allow, 0 deny */
	uint8_t builtin;   /* 1 built-in default, 0 operator */
};

struct policy {
	struct cookie_keys keys;   /* per-gateway keys; none: no cookie asked */
	char keys_path[256];
	struct addr_prefix *clients;
	unsigned nclients;
	bool allow_any_client;
	struct policy_rule *rules;
	unsigned nrules;
};

/* Built-in destination denies. Returns 0 or -ENOMEM. */
int policy_init(struct policy *p);
void policy_free(struct policy *p);
int policy_add_client(struct policy *p, const struct addr_prefix *pfx);
int policy_add_dest(struct policy *p, const struct addr_prefix *pfx, bool allow,
		    bool builtin);
/* Forget operator entries (command-line values replace a config file's). */
void policy_clear_operator(struct policy *p, bool clients, bool allow_rules, bool deny_rules);
/* Deny every local address of this host (getifaddrs) and listen address. */
int policy_add_own_addresses(struct policy *p);

bool policy_client_allowed(const struct policy *p, const struct in6_addr *a);
/* 0 when allowed; -EACCES with *ret_reason (static string) when not. */
int policy_check_dest(const struct policy *p, const struct in6_addr *a,
		      uint16_t port, const char **ret_reason);

/* Cookies seen (key id and nonce) while they are within their time window,
 * so each is good once. Bounded: when full, the oldest entry is dropped and
 * every cookie not newer than it is refused as stale from then on, so the
 * window shrinks under load rather than letting a replay through. */
struct replay_entry {
	uint64_t nonce;
	uint32_t kid, time;
	uint32_t next;               /* bucket chain, index + 1; 0 = end */
};

struct replay {
	pthread_mutex_t lock;
	struct hash_key key;
	struct replay_entry *e;      /* FIFO of cap entries */
	uint32_t *bucket;            /* nbuckets heads, index + 1 */
	uint32_t cap, nbuckets, head, len;
	uint32_t floor;              /* cookies with time <= floor are stale */
};

int replay_init(struct replay *rp, uint32_t cap);
void replay_free(struct replay *rp);
/* 0 when (kid, nonce) is new (and now remembered), -EALREADY when seen,
 * -ESTALE when time is at or below the floor. now: Unix seconds. */
int replay_check(struct replay *rp, uint32_t kid, uint64_t nonce, uint32_t time, uint32_t now);

#endif
