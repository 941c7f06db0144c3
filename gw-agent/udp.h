/* The agent's end of the UDP carrier (proto/udpc.h, docs/udp-carrier.md):
 * LAN UDP taken by TPROXY, carried over the paths to the first
 * concentrator, answers handed back to the LAN device from the address it
 * wrote to. */
#ifndef GW_AGENT_UDP_H
#define GW_AGENT_UDP_H

#include <stdbool.h>
#include <stdint.h>

#include "udpc.h"

#define AGENT_UDP_OFF (-1)
#define AGENT_UDP_MAX_CLASSES 16

/* A traffic class: destination ports lo..hi get mode. */
struct udp_class {
	uint16_t lo, hi;
	uint8_t mode;
};

enum agent_udp_drop {
	AUD_NO_SESSION = 0,   /* no session with the concentrator yet */
	AUD_NO_PATH,          /* no live path */
	AUD_FLOW_LIMIT,
	AUD_HOST_LIMIT,       /* the LAN device holds its share of sources */
	AUD_OWN_PORT,         /* addressed to the agent's own port (a loop) */
	AUD_MALFORMED,        /* from the concentrator: codec refused */
	AUD_BAD_TAG,
	AUD_REPLAY,           /* seen (redundant copies land here) */
	AUD_OLD,
	AUD_UNKNOWN_FLOW,     /* an answer for a flow that expired */
	AUD_SEND,             /* the LAN or a path refused a send */
	AUD_RESET_TOKEN,      /* a RESET without a proof under the session's reset token */
	AUD_MAX,
};

struct agent_udp_stats {
	uint64_t flows_total, flows_expired, flows_by_mode[UDPC_MODE_MAX];
	uint64_t dgrams_up, dgrams_down, bytes_up, bytes_down;
	uint64_t path_dgrams[32], path_bytes[32];   /* carrier datagrams sent, by path id */
	uint64_t steers, sessions, resets_taken, failovers;
	uint64_t drops[AUD_MAX];
	uint32_t flows_active;
	bool session_up;
};

struct agent;
struct mbuf;

/* Starts the UDP thread (its sockets first); 0 or -errno (logged). */
int agent_udp_start(struct agent *a);
/* Stops it (a->stopping set, or not); no-op when not started. */
void agent_udp_stop(struct agent *a);
void agent_udp_render_metrics(struct agent *a, struct mbuf *b);
/* Text lines for `gw-agent status` (malloc'd, NULL when off). */
char *agent_udp_status(struct agent *a);
const char *agent_udp_drop_name(unsigned d);
/* "PORT[-PORT]=MODE": 0, or -EINVAL with *ret_why. */
int agent_udp_class_parse(const char *s, struct udp_class *ret, const char **ret_why);
/* The mode for destination port: the first class that covers it, else
 * deflt. */
int agent_udp_mode_for(const struct udp_class *c, unsigned n, int deflt, uint16_t port);
/* Whether UDP 443 (QUIC) is carried: QUIC is not blocked, or a class
 * names port 443. Else it is refused so browsers take TCP (whose flows get
 * the sum of the lines, where one UDP flow gets one line). */
struct agent_config;
bool agent_udp_quic_carried(const struct agent_config *cfg);

#endif
