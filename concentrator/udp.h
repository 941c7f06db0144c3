/* The concentrator's end of the UDP carrier (proto/udpc.h,
 * docs/udp-carrier.md): gateways' sessions on the listen addresses' UDP
 * ports, and each LAN UDP flow re-originated from a socket of its own. */
#ifndef CONCENTRATOR_UDP_H
#define CONCENTRATOR_UDP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "udpc.h"

struct conc;
struct mbuf;

enum udp_refusal {
	UDPR_MALFORMED = 0,   /* the codec refused it */
	UDPR_CLIENT,          /* HELLO from an address not allowed */
	UDPR_KEY,             /* HELLO: unknown key, scope, bad MAC */
	UDPR_STALE,           /* HELLO: time outside the window, or replayed */
	UDPR_SESSIONS,        /* HELLO: no session left */
	UDPR_UNKNOWN_SESSION, /* DATA/PING for a session we do not have */
	UDPR_BAD_TAG,         /* sealed datagram that does not open */
	UDPR_REPLAY,          /* packet number seen (or a redundant copy) */
	UDPR_OLD,             /* packet number below the window */
	UDPR_POLICY,          /* destination denied */
	UDPR_FLOW_LIMIT,      /* flows per gateway or in all */
	UDPR_FILTERED,        /* an answer from an address the flow never sent to */
	UDPR_SOCKET,          /* no socket for a new flow (descriptors) */
	UDPR_RATE,            /* over the gateway's datagram rate */
	UDPR_VERSION,         /* another carrier version (an agent not upgraded) */
	UDPR_MAX,
};

struct udp_stats {
	uint64_t sessions_total, flows_total, flows_expired;
	uint64_t dgrams_up, dgrams_down, bytes_up, bytes_down;
	uint64_t pings, resets_sent, down_unsent;
	uint64_t flows_by_mode[UDPC_MODE_MAX];
	uint64_t refused[UDPR_MAX];
	uint32_t sessions_active, flows_active;
};

struct udp_srv;

/* Binds the listen addresses' UDP ports and starts the thread; 0 or
 * -errno (logged). */
int udp_start(struct conc *c);
void udp_stop(struct conc *c);
/* The metrics lines (stats.c). */
void udp_render_metrics(const struct conc *c, struct mbuf *b);
const char *udp_refusal_name(unsigned r);

#endif
