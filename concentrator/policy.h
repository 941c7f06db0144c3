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

struct policy_rule {
	struct addr_prefix prefix;
	uint8_t allow;     /* 1 allow, 0 deny */
	uint8_t builtin;   /* 1 built-in default, 0 operator */
};

struct policy {
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

/* Flow limits shared by all workers: total flows and flows per client
 * address. A small open-addressing table under a mutex: it is touched once
 * at accept and once at close, never on the data path. */
struct limits {
	pthread_mutex_t lock;
	uint32_t max_flows, max_per_client;
	uint32_t flows;
	struct limits_entry { struct in6_addr a; uint32_t n; } *tab;
	uint32_t cap, used;
};

int limits_init(struct limits *l, uint32_t max_flows, uint32_t max_per_client);
void limits_free(struct limits *l);
/* Take a slot for client a: 0, or -EUSERS (total) / -EDQUOT (per client). */
int limits_take(struct limits *l, const struct in6_addr *a);
void limits_release(struct limits *l, const struct in6_addr *a);
/* A reload: flows over a lowered limit stay; new ones are refused. */
void limits_set_per_client(struct limits *l, uint32_t max_per_client);

#endif
