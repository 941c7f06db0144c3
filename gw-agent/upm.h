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
#include <sys/socket.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#include "log.h"
#include "pm.h"

#define UPM_PROMOTE_MS 100
#define UPM_PATHS 16                 /* = PATHS_MAX (paths.h checks) */
#define UPM_MAX_CONNS (1u << 15)     /* table slots at most: 2.6 MiB, 16,384 connections */
#define UPM_MAX_CONC 4               /* = AGENT_MAX_CONC */
#define UPM_EVENTS_PER_TURN 512      /* then the main loop's other work */

struct upm_conn {
	uint32_t token;                  /* 0: free slot */
	uint8_t fam;                     /* 0 IPv4, 1 IPv6 */
	uint8_t init_path;               /* the first subflow's path, 0xff: none */
	bool remote_set;                 /* rem/rport known (cluster: once announced) */
	uint16_t rport;
	uint16_t init_sport;             /* the first subflow's local port */
	uint16_t sub;                    /* paths with a join of ours (connecting or up) */
	uint16_t active;                 /* of those, made active */
	uint16_t queued;                 /* of those, a promotion is queued */
	struct in6_addr rem;              /* where joins go */
	struct in6_addr rem0;             /* the first subflow's far end (the shared
					   * address in a cluster) */
	uint16_t rport0;
	uint16_t sport[UPM_PATHS];       /* each join's local port, 0 until established */
	int8_t cls;                      /* its traffic class (pin, no-metered), -1 none */
	bool init_gated;                 /* its first subflow made backup by its class */
	bool young;                      /* its joins wait for --join-after */
	bool service;                    /* to a concentrator's own port (not another
					  * service of that host): only these follow
					  * an ANNOUNCE (cluster) and use a
					  * neighbour's line (lenders forward only
					  * that port) */
};

struct paths;

/* A flow of a class, registered by a worker before its SYN (its first
 * subflow's address and port), taken by the connection's ESTABLISHED. */
#define UPM_PENDING 256
#define UPM_PENDING_MS 60000
struct upm_pending {
	struct in6_addr addr;
	uint16_t port;
	int8_t cls;
	uint64_t at_ms;                  /* 0: free */
};

/* Something due for a connection later: a promotion (path: the join's
 * path, sport: that join's port, since a path's next join is another;
 * due_ms: when), or its joins opened (path UPM_JOINS_DUE; due_ms: when the
 * connection was established, so that a reload's new --join-after applies
 * to the connections already waiting). */
#define UPM_JOINS_DUE 0xff
struct upm_promo {
	uint32_t token;
	uint8_t path;
	uint16_t sport;
	uint64_t due_ms;
};

/* A FIFO of those in due order: every entry of one queue waits as long. */
struct upm_fifo {
	struct upm_promo *q;
	uint32_t cap, head, len;
};

struct upm_stats {
	atomic_uint_fast64_t conns, joins, join_errors, promoted, destroyed, events_lost;
	/* connections closed before --join-after: no join opened */
	atomic_uint_fast64_t short_lived;
};

struct upm {
	bool open;
	struct pm cmd, ev;
	struct upm_conn *tab;
	uint32_t cap, used;              /* power of two; used < cap / 2 */
	struct upm_fifo promos;          /* joins to make active, UPM_PROMOTE_MS after they are up */
	struct upm_fifo later;           /* connections whose joins wait (paths' join_after_ms) */
	char saved_pm[32];               /* the sysctl's value before us */
	uint8_t sysctl;                  /* 0: path_manager, 1: pm_type (before 6.15) */
	bool fullmesh;                   /* --cluster: joins to the announced address */
	/* Only connections to these addresses (any port) are managed
	 * (anyone on the router can make MPTCP connections from a path's
	 * address; its connections elsewhere keep one subflow). */
	struct in6_addr conc[UPM_MAX_CONC];
	uint16_t conc_port[UPM_MAX_CONC];
	unsigned nconc;
	struct upm_stats st;
	struct log_ratelimit rl;
	/* Classes: whether class cls may have a join on path pi (main
	 * thread; NULL: every path). */
	bool (*allow)(void *ctx, const struct paths *ps, int cls, unsigned pi, int fi);
	void *allow_ctx;
	pthread_mutex_t pend_lock;
	atomic_uint npend;
	struct upm_pending pend[UPM_PENDING];
};

struct paths;

/* Any thread: the connection from addr:port will be of class cls. 0, or
 * -ENOSPC (too many starting at once). */
int upm_class_pending(struct upm *u, const struct in6_addr *addr, uint16_t port, int cls,
		      uint64_t now_ms);
/* Main thread, each second: the class's lines again for every flow of a
 * class (a line whose delay rose past a latency-sensitive class's gate is
 * made backup for it, MP_PRIO; one back under it active again, or joined). */
void upm_regate(struct upm *u, struct paths *ps, uint64_t now_ms);

/* Switch this namespace to the userspace path manager and listen to its
 * events: 0, or -errno (no userspace PM in this kernel: -EPROTONOSUPPORT). */
int upm_open(struct upm *u, bool fullmesh);
/* Back to the path manager there was before (one teardown). */
void upm_close(struct upm *u);
int upm_event_fd(const struct upm *u);
/* --endpoints kernel: the kernel's path manager must be the namespace's
 * (a killed agent may have left the userspace one): 1 when it was put
 * back, 0 when it was already, -EPERM when it could not be. */
int upm_kernel_pm_ensure(void);
/* The concentrators (start, reload): connections to others are not ours. */
void upm_set_concentrators(struct upm *u, const struct sockaddr_storage *conc, unsigned n);
/* Events queued: the table follows; joins opened for new connections.
 * Returns how many events, or -ENOBUFS after a loss (logged). */
int upm_events(struct upm *u, struct paths *ps, uint64_t now_ms);
/* One event (what upm_events does with each; tests). */
void upm_event(struct upm *u, struct paths *ps, const struct pm_event *e, uint64_t now_ms);
/* After lost events: the table brought in line with the kernel's MPTCP
 * sockets (sock_diag): gone ones deleted, established ones of ours added
 * (their joins opened). Returns how many were deleted, or -errno. */
int upm_resync(struct upm *u, struct paths *ps, uint64_t now_ms);
/* The connection with this token, or NULL. */
struct upm_conn *upm_conn_find(struct upm *u, uint32_t token);
/* Promotions and joins due: made; *next_ms lowered to the next one's time. */
void upm_tick(struct upm *u, struct paths *ps, uint64_t now_ms, uint64_t *next_ms);
/* A path's family was enabled (or its address or flags changed): joins
 * from it on every connection that lacks one; backup or active as flags
 * say. */
void upm_path_on(struct upm *u, struct paths *ps, unsigned pi, int fi);
/* Disabled: its joins are closed on every connection. */
void upm_path_off(struct upm *u, struct paths *ps, unsigned pi, int fi);
/* Its backup flag changed: MP_PRIO on its joins. */
void upm_path_prio(struct upm *u, struct paths *ps, unsigned pi, int fi, bool backup,
		   uint64_t now_ms);

#endif
