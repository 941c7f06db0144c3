/* The agent as the kernel's userspace path manager (the default): it opens
 * each connection's joins itself, one per path, as backup subflows, and
 * makes them active (MP_PRIO) UPM_PROMOTE_MS after they are established.
 *
 * Why: on 6.18 a join that carries data before the concentrator's kernel
 * has finished adding it to its connection can have its first bytes put at
 * the wrong place in the stream (docs/kernel-defects.md). A backup join
 * carries nothing while another subflow works, and by the time it is made
 * active the far side has long finished it. The in-kernel path manager
 * cannot do this: its backup flag is per address, for every connection at
 * once.
 *
 * State: the connections seen established (client side, from one of our
 * paths' addresses), from the kernel's MPTCP events; which path has a join
 * of ours on each, and its local port once established (to close it).
 * Main thread only. */
#ifndef GW_AGENT_UPM_H
#define GW_AGENT_UPM_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "log.h"
#include "pm.h"

#define UPM_PROMOTE_MS 100
#define UPM_PATHS 16                 /* = PATHS_MAX (paths.h checks) */
#define UPM_MAX_CONNS (1u << 17)     /* table slots at most: 8 MiB, 65,536 connections */

struct upm_conn {
	uint32_t token;                  /* 0: free slot */
	uint8_t fam;                     /* 0 IPv4, 1 IPv6 */
	uint8_t init_path;               /* the first subflow's path, 0xff: none */
	bool remote_set;                 /* rem/rport known (cluster: once announced) */
	uint16_t rport;
	uint16_t sub;                    /* paths with a join of ours */
	uint16_t active;                 /* of those, made active or asked to be */
	struct in6_addr rem;
	uint16_t sport[UPM_PATHS];       /* each join's local port, 0 until established */
};

struct upm_promo {
	uint32_t token;
	uint8_t path;
	uint64_t due_ms;
};

struct upm_stats {
	atomic_uint_fast64_t conns, joins, join_errors, promoted, destroyed, events_lost;
};

struct upm {
	bool open;
	struct pm cmd, ev;
	struct upm_conn *tab;
	uint32_t cap, used;              /* power of two; used < cap / 2 */
	struct upm_promo *q;             /* promotions, due order (FIFO) */
	uint32_t qcap, qhead, qlen;
	char saved_pm[32];               /* the sysctl's value before us */
	uint8_t sysctl;                  /* 0: path_manager, 1: pm_type (before 6.15) */
	bool fullmesh;                   /* --cluster: joins to the announced address */
	struct upm_stats st;
	struct log_ratelimit rl;
};

struct paths;

/* Switch this namespace to the userspace path manager and listen to its
 * events: 0, or -errno (no userspace PM in this kernel: -EPROTONOSUPPORT). */
int upm_open(struct upm *u, bool fullmesh);
/* Back to the path manager there was before (one teardown). */
void upm_close(struct upm *u);
int upm_event_fd(const struct upm *u);
/* Events queued: the table follows; joins opened for new connections.
 * Returns how many events, or -ENOBUFS after a loss (logged). */
int upm_events(struct upm *u, struct paths *ps, uint64_t now_ms);
/* Promotions due: made; *next_ms lowered to the next one's time. */
void upm_tick(struct upm *u, struct paths *ps, uint64_t now_ms, uint64_t *next_ms);
/* A path's family was enabled (or its address or flags changed): joins
 * from it on every connection that lacks one; backup or active as flags
 * say. */
void upm_path_on(struct upm *u, struct paths *ps, unsigned pi, int fi, uint64_t now_ms);
/* Disabled: its joins are closed on every connection. */
void upm_path_off(struct upm *u, struct paths *ps, unsigned pi, int fi);
/* Its backup flag changed: MP_PRIO on its joins. */
void upm_path_prio(struct upm *u, struct paths *ps, unsigned pi, int fi, bool backup,
		   uint64_t now_ms);

#endif
