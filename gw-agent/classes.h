/* Traffic classes (--class): LAN traffic picked by device, destination and
 * port, or by domain names the router resolves, and sent straight out of
 * one line instead of through the concentrator (action bypass).
 *
 * Matching is nftables' (the agent's own table, intercept.c): a class's
 * first packet of a new connection gets a conntrack mark, every packet of
 * that connection then a packet mark that an ip rule routes through the
 * line's own table (the path's, paths.c), and the agent's postrouting
 * chain masquerades it as the line's address. A connection keeps its
 * class for its life: reloads change only new connections. */
#ifndef GW_AGENT_CLASSES_H
#define GW_AGENT_CLASSES_H

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#include "addr.h"

#define CLASS_MAX 16
#define CLASS_MAX_MACS 8
#define CLASS_MAX_DEVS 8          /* device addresses or prefixes */
#define CLASS_MAX_DSTS 16
#define CLASS_MAX_PORTS 8
#define CLASS_MAX_DOMAINS 8
#define CLASS_DOMAIN_LEN 254
#define CLASS_DOMAIN_ADDRS 64     /* remembered per domain */
#define CLASS_DOMAIN_KEEP_S 600   /* an address no longer returned is kept so long */
#define CLASS_RESOLVE_S 60        /* domains resolved again this often */

enum class_action {
	CLASS_BYPASS = 1,         /* straight out of line (or the main table) */
	CLASS_PIN,                /* through the concentrator, on these lines only */
	CLASS_NO_METERED,         /* through the concentrator, never on a metered line */
	CLASS_CARRY,              /* through the concentrator, any line (with rtt=) */
};
#define CLASS_MAX_LINES 4

struct agent_class {
	char name[32];
	enum class_action action;
	char line[16];            /* bypass: the path's interface, "" = main table */
	char lines[CLASS_MAX_LINES][16];  /* pin: the paths' interfaces */
	unsigned nlines;
	unsigned rtt_ms;          /* latency-sensitive: no line this much slower than the best, 0 = any */
	int udp_mode;             /* its UDP flows' carrier mode (enum udpc_mode), -1 = by port */
	uint8_t mac[CLASS_MAX_MACS][6];
	unsigned nmac;
	struct addr_prefix dev[CLASS_MAX_DEVS];
	unsigned ndev;
	struct addr_prefix dst[CLASS_MAX_DSTS];
	unsigned ndst;
	uint16_t port_lo[CLASS_MAX_PORTS], port_hi[CLASS_MAX_PORTS];
	unsigned nport;
	char domain[CLASS_MAX_DOMAINS][CLASS_DOMAIN_LEN];
	unsigned ndomain;
};

struct agent_classes {
	struct agent_class c[CLASS_MAX];
	unsigned n;
};

/* One --class value: NAME[,device=..][,dst=..][,port=..][,domain=..],
 * action=bypass[,line=IFACE]; lists joined with '+'. Appended to cs. 0,
 * or -EINVAL with *why (static text) saying what is wrong. */
int class_parse(struct agent_classes *cs, const char *spec, const char **why);

/* The marks: mark+1+slot routes through path slot's table, mark+CLASS_MARK_MAIN
 * the main table's way; a pin or no-metered class k's connections carry
 * ct mark mark+CLASS_MARK_AGENT+k, which the agent reads (ctmark.h). */
#define CLASS_MARK_MAIN (1 + 16)
#define CLASS_MARK_AGENT 32

/* What a worker needs of a class to carry its flows (agent_config). */
struct class_act {
	uint8_t action;                  /* enum class_action */
	uint8_t nlines;
	uint16_t rtt_ms;                 /* the delay gate, 0 = none */
	int8_t udp_mode;                 /* enum udpc_mode, -1 = by port (udp-class) */
	char lines[CLASS_MAX_LINES][16];
};
/* Whether a class is the agent's to apply (pin, no-metered). */
bool class_by_agent(const struct agent_class *c);

/* nftables text for the agent's table (intercept.c). slot_of: a line's
 * path slot, or -1. Appends to script; 0 or -E2BIG. */
struct paths;
int classes_nft_sets(const struct agent_classes *cs, char *script, size_t cap);
int classes_nft_rules(const struct agent_classes *cs, const struct paths *ps, uint32_t mark,
		      char *script, size_t cap);
int classes_nft_nat(const struct agent_classes *cs, uint32_t mark, char *script, size_t cap);
bool classes_differ(const struct agent_classes *a, const struct agent_classes *b);
/* Whether a class names a domain. */
bool agent_classes_domains(const struct agent_classes *cs);

/* The domains' addresses: a thread resolves every class's domains at start,
 * after each reload (classes_kick) and every CLASS_RESOLVE_S, and fills the
 * classes' sets with what it got and what it got in the last
 * CLASS_DOMAIN_KEEP_S (a CDN's answers rotate; a device may still use an
 * older one). */
struct class_resolver;
int classes_resolver_start(struct class_resolver **ret);
/* The classes to resolve now (copied); wakes the thread. */
void classes_kick(struct class_resolver *r, const struct agent_classes *cs);
void classes_resolver_stop(struct class_resolver *r);
/* Domain names resolved, addresses in the sets, failed lookups. */
void classes_resolver_stats(struct class_resolver *r, uint64_t *ret_lookups,
			    uint64_t *ret_failed, unsigned *ret_addrs);

#endif
