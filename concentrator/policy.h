/* Who may use the concentrator and where it may connect.
 *
 * Clients: an allow-list of source prefixes; with none, nobody, unless
 * allow_any is set, so the daemon is never an open proxy by accident.
 *
 * Destinations: rules of (prefix, allow|deny); the longest matching prefix
 * decides, at equal length an operator's rule beats a built-in one and deny
 * beats allow. Built-in denies cover loopback, unspecified, RFC 1918, CGNAT,
 * link-local, multicast, 240/4 and broadcast, ULA, site-local, discard-only
 * and IPv4-compatible. The concentrator's own addresses are denied before
 * any rule, so no allow rule can open them: those of its interfaces (kept
 * current as addresses come and go: a VIP moved by keepalived, a new IPv6
 * temporary address) and those the operator names (a 1:1 NAT's public
 * address). IPv4 is matched in its mapped form, so ::ffff:10.0.0.1 is
 * 10.0.0.1; IPv4 embedded in NAT64 (64:ff9b::/96 and the operator's own /96
 * prefixes) and 6to4 (2002::/16) addresses must pass the IPv4 checks too.
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

#define POLICY_MAX_NAT64 8

struct policy {
	struct addr_prefix *own;   /* this host's addresses (interfaces, and the
				    * local table's routes: AnyIP prefixes) */
	unsigned nown;
	bool own_known;             /* listed at least once: until then every
				     * destination is refused (fail closed) */
	struct addr_prefix *own_extra;  /* the operator's (--own-address) */
	unsigned nown_extra;
	struct addr_prefix nat64[POLICY_MAX_NAT64];  /* operator's /96 prefixes */
	unsigned nnat64;
	struct cookie_keys keys;   /* per-gateway keys; none: no cookie asked */
	char keys_path[256];
	struct addr_prefix *clients;
	unsigned nclients;
	bool allow_any_client;
	bool open_proxy;              /* allow_any_client without keys: meant */
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
/* This host's addresses, now (getifaddrs, and the routes of type local in
 * the local table: `ip route add local 192.0.2.0/24 dev lo` makes the box
 * answer every address in it), into a fresh array: 0 or -errno. The
 * caller swaps it into p->own (policy_set_own) under its lock. */
int policy_list_own(struct addr_prefix **ret, unsigned *ret_n);
/* The same, and the nexthop objects its routers came from (up to
 * POLICY_MAX_NH ids into nh, how many into *nnh): their changes are news
 * (ownaddr.c). */
#define POLICY_MAX_NH 32
int policy_list_own_nh(struct addr_prefix **ret, unsigned *ret_n, uint32_t *nh, unsigned *nnh);
void policy_set_own(struct policy *p, struct addr_prefix *own, unsigned n);
int policy_add_own_addresses(struct policy *p);
int policy_add_own_extra(struct policy *p, const struct addr_prefix *pfx);
/* A NAT64 prefix (must be a /96): -EINVAL otherwise, -ENOSPC past 8. */
int policy_add_nat64(struct policy *p, const struct addr_prefix *pfx);

bool policy_client_allowed(const struct policy *p, const struct in6_addr *a);
/* 0 when allowed; -EACCES with *ret_reason (static string) when not. */
int policy_check_dest(const struct policy *p, const struct in6_addr *a,
		      uint16_t port, const char **ret_reason);

/* Cookies seen (key id and nonce) while they are within their time window,
 * so each is good once. Bounded (cap entries) and fair between keys: each
 * key has its own entries, in arrival order, and its own floor. When the
 * table is full, the key holding the most entries gives up its oldest, and
 * from then on that key's cookies not newer than it are refused as stale
 * (the window shrinks rather than a nonce being forgotten early). So what
 * one key sends, how many and how dated, costs that key alone: a key that
 * holds no more than its share (the table divided among the keys using it)
 * is never refused a new cookie. One record per key in use, at most cap. */
struct replay_entry {
	uint64_t nonce;
	uint32_t rec;                /* its key's record */
	uint32_t time;
	uint32_t next;               /* hash chain or free list, index + 1 */
	uint32_t knext;              /* its key's list (arrival order), index + 1 */
};

struct replay_key {
	uint32_t kid, floor;         /* cookies with time <= floor are stale */
	uint32_t count;              /* entries held */
	uint32_t head, tail;         /* entries, oldest first, index + 1 */
	uint32_t heap;               /* position in the heap */
	uint32_t next;               /* key hash chain or free list, index + 1 */
	uint32_t iprev, inext;       /* idle list (no entries, floor live) */
	bool used, idle;
};

struct replay {
	pthread_mutex_t lock;
	struct hash_key key;
	struct replay_entry *e;      /* cap entries */
	uint32_t *bucket;            /* nbuckets heads of (kid, nonce) chains */
	struct replay_key *k;        /* cap key records */
	uint32_t *kbucket;           /* nbuckets heads of kid chains */
	uint32_t *heap;              /* records in use, most entries first */
	uint32_t cap, nbuckets, len, nheap;
	uint32_t efree, kfree;       /* free lists, index + 1 */
	uint32_t eused, kused;       /* entries, records ever used */
	uint32_t ihead, itail;       /* idle records, oldest first */
	uint32_t sweep;              /* next record to expire entries of */
};

int replay_init(struct replay *rp, uint32_t cap);
void replay_free(struct replay *rp);
/* 0 when (kid, nonce) is new (and now remembered), -EALREADY when seen,
 * -ESTALE when time is at or below the key's floor (or the table has no
 * record left for a new key). The window itself is cookie_check's: entries
 * are kept until 2 * COOKIE_MAX_AGE_S past their time. now: Unix seconds. */
int replay_check(struct replay *rp, uint32_t kid, uint64_t nonce, uint32_t time, uint32_t now);

#endif
