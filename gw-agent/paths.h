/* WAN/mesh paths: one routing table, rules and MPTCP endpoint per usable
 * path, kept in step with links, addresses and routes. */
#ifndef GW_AGENT_PATHS_H
#define GW_AGENT_PATHS_H

#include "cookie.h"
#include <net/if.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "pm.h"
#include "routes.h"
#include "upm.h"

#define PATHS_MAX 16
/* Of those, at most this many neighbours' (the mesh's): the rest stay for
 * WAN paths, which a reload can add. */
#define PATHS_MAX_NEIGHBOURS 8

enum path_mode {
	PATH_ON = 0,      /* use it */
	PATH_MASTER,      /* use it; it carries the default route (DHCP's job) */
	PATH_BACKUP,      /* subflow marked backup: used when no on/master is */
	PATH_HANDOVER,    /* no subflow at all until no on/master path is up */
	PATH_OVERFLOW,    /* backup, made active while the on/master lines are full
			   * (a metered line: overflow.c) */
	PATH_OFF,         /* never */
};

/* Whether the path's network carries MPTCP to the concentrator, from the
 * probes (every MPTCP_RECHECK-th one, and the first, is an MPTCP
 * connection; the others are plain TCP). */
enum path_mptcp {
	PATH_MPTCP_UNKNOWN = 0,
	PATH_MPTCP_YES,
	PATH_MPTCP_NO,         /* option stripped, or MPTCP SYNs dropped */
};
#define MPTCP_RECHECK 30

struct path_fam {
	bool usable;
	bool probe_dead;           /* far side unreachable though carrier is up */
	unsigned probe_fails;
	int probe_fd;              /* probe in progress, -1 = none */
	uint64_t probe_start_ms, probe_next_ms;
	uint64_t probe_start_us;   /* for the RTT: veth answers in microseconds */
	uint32_t probe_rtt_us;     /* last successful probe */
	uint64_t probe_ok_ms;      /* ... and when it ended (atomic: the UDP thread reads it) */
	uint8_t probe_buf[64];
	unsigned probe_got;
	bool probe_sent;           /* Info sent, waiting for the reply */
	uint16_t probe_err;        /* last probe's Error code + 1, 0 = none */
	bool probe_mptcp;          /* the probe in progress is an MPTCP one */
	bool mptcp_suspect;        /* an MPTCP probe failed: a plain one decides */
	uint8_t mptcp_strikes;     /* MPTCP probes failed with plain ones answered */
	bool mptcp_retry;          /* probe with MPTCP again next */
	unsigned probe_count;
	enum path_mptcp mptcp;
	bool was_usable;
	bool have_addr, have_gw;
	struct in6_addr addr, gw;
	bool gw_given;
	struct in6_addr gw_cfg;
	uint8_t ep_id;             /* our endpoint, 0 = none (agent PM: path index + 1
				    * while joins are opened from this path) */
	uint32_t ep_flags;
	struct in6_addr ep_addr;
	bool rule_from;            /* "from addr" rule installed for rule_addr */
	struct in6_addr rule_addr;
	bool rule_oif;
};

/* A line's data cap (caps.h). */
#define CAP_MAX_AT 4
struct path_cap {
	uint64_t bytes;            /* 0: no cap */
	uint8_t day;               /* billing day of the month (1-28), or 0 ... */
	uint16_t ndays;            /* ... a cycle of this many days */
	uint8_t nat;
	struct { uint8_t pct; uint8_t action; } at[CAP_MAX_AT];  /* action: enum path_mode */
	/* Counting (main thread). */
	time_t cycle_start;
	uint64_t used;             /* bytes both ways this cycle */
	uint64_t saved;            /* used as last saved */
	uint64_t ctr;              /* the interface's rx + tx at the last sample */
	bool have_ctr;
	int level;                 /* index of the highest threshold reached, -1: none */
	uint64_t grace_until_ms;   /* reaching an off: backup until then (0: none) */
	bool recycle;              /* cycle= changed: adopt the cycle of now, count kept */
};

struct path {
	char ifname[IFNAMSIZ];
	/* A neighbour's line through the mesh (mesh.c): the mesh interface,
	 * a source address of our own for this neighbour only (what makes the
	 * kernel open a subflow per neighbour), a table whose default goes via
	 * the neighbour. Neither configured nor reloaded: the mesh adds them,
	 * and turns them off (keeping the slot) when the neighbour leaves. */
	bool neighbour;
	struct in6_addr nb_via, nb_src;
	char name[40];             /* status and metrics: ifname, or ifname~neighbour */
	enum path_mode mode;       /* in effect: mode_cfg, or a cap's action */
	enum path_mode mode_cfg;   /* as configured */
	struct path_cap cap;
	/* What the line carries at most (down=, up=; 0: not given), bits a
	 * second: the capacity overflow.c measures the on/master lines'
	 * use against. */
	uint64_t down_bps, up_bps;
	uint64_t st_down_bps, st_up_bps;  /* the last speed test's (speedtest.c) */
	uint32_t table, prio;
	int ifindex;
	bool up;
	struct path_fam f[2];      /* 0: IPv4, 1: IPv6 */
};

struct paths {
	struct path p[PATHS_MAX];
	unsigned n;
	bool manage_endpoints;     /* false: --endpoints mptcpd */
	bool userspace_pm;         /* --endpoints agent: joins by upm.c, no endpoints */
	struct upm upm;
	bool fullmesh;             /* --cluster: subflows to announced addresses */
	bool overflow_on;          /* overflow lines active now (overflow.c) */
	struct pm pm;
	struct rt rt;
	struct rt ev;
	bool pm_open, rt_open, ev_open;
	unsigned changes;          /* endpoint/route changes made (for logs) */
	uint32_t table_base, prio_base;
	bool inited;               /* paths_init ran: there is state to clean up */
	/* Probes: an RFC 8803 Info exchange with the concentrator from each
	 * path's address; unset family = no probes. */
	struct sockaddr_storage probe_to;
	socklen_t probe_to_len;
	const struct cookie_key *key;  /* probes carry a Cookie when set */
	atomic_uint_fast64_t reconciles;  /* paths_reconcile() runs (metrics) */
	unsigned probe_interval_ms, probe_timeout_ms;
	/* --join-after: joins (upm.c) only for connections that live this
	 * long, 0 at once. The short flows of web pages and API calls end
	 * within a few round trips, before a join could carry anything (it
	 * starts backup), and a join's handshake and teardown cost both ends
	 * more than such a flow itself (the kernel's mptcp_worker). */
	unsigned join_after_ms;
	/* Where new flows should start: a live on/master path's address. */
	pthread_mutex_t src_lock;
	unsigned nsrc[2];
	struct in6_addr srcs[2][PATHS_MAX];
	char srcif[2][PATHS_MAX][IFNAMSIZ];   /* their interfaces */
	bool srcnb[2][PATHS_MAX];             /* a neighbour's (the mesh's) */
	char srcname[2][PATHS_MAX][40];       /* path_name() */
	uint8_t srcid[2][PATHS_MAX];          /* their index in p[] */
	bool srcprimary[2][PATHS_MAX];        /* on/master (else backup/handover) */
	bool srcmetered[2][PATHS_MAX];        /* an overflow line not active now */
	bool srcmeter[2][PATHS_MAX];          /* a metered line (overflow, or a cap) */
};

/* "IFACE[,mode=on|master|backup|handover|overflow|off][,gateway=ADDR]
 * [,down=RATE][,up=RATE]". On error returns -EINVAL with *ret_why set to a
 * static reason. */
int paths_parse(struct paths *ps, const char *spec, const char **ret_why);
const char *path_mode_name(enum path_mode m);
/* "19mbit", "512kbit", "1.5gbit" (what tc takes): bits a second, or
 * -EINVAL. */
int rate_parse(const char *s, uint64_t *ret_bps);
/* "on", "master", ...: 0, or -EINVAL. */
int path_mode_parse(const char *s, enum path_mode *ret);
/* Tables table_base+1.., rule priorities prio_base+i. */
int paths_init(struct paths *ps, uint32_t table_base, uint32_t prio_base);
/* Bring tables, rules and endpoints in line with what the links show. */
int paths_reconcile(struct paths *ps);
/* Remove everything we installed. */
void paths_cleanup(struct paths *ps);
/* A reload: take modes, gateways and the probe interval from want (parsed
 * paths only); add new paths; turn off removed ones (their state removed
 * from the kernel). Returns how many paths changed; reconcile after. */
int paths_update(struct paths *ps, const struct paths *want);
int paths_event_fd(const struct paths *ps);
int paths_events_drain(struct paths *ps);

/* Probes: fill pfd[] (up to max) with the probe sockets to poll and return
 * how many; paths_probe_run() starts due probes, advances the ones pfd says
 * are ready, times out the slow ones, and returns true when a path's
 * liveness changed (reconcile then). next_ms: when to call again. */
unsigned paths_probe_fds(struct paths *ps, struct pollfd *pfd, unsigned max);
bool paths_probe_run(struct paths *ps, const struct pollfd *pfd, unsigned n,
		     uint64_t now_ms, uint64_t *next_ms);
/* A neighbour path through ifname via `via` from source `src` (IPv4
 * mapped), in mode: added, or its slot brought back. Returns the path or
 * NULL (no slot left). */
struct path *paths_neighbour_up(struct paths *ps, const char *ifname, const struct in6_addr *via,
				const struct in6_addr *src, enum path_mode mode);
/* The neighbour left: its endpoint, rule and route go, the slot stays. */
void paths_neighbour_down(struct paths *ps, struct path *p);
/* The name status and metrics show. */
static inline const char *path_name(const struct path *p)
{
	return p->name[0] ? p->name : p->ifname;
}

/* The addresses new flows of family (AF_INET/AF_INET6) should start from,
 * best first; 0 when there are no paths (use the main table). */
unsigned paths_sources(struct paths *ps, int family, struct in6_addr *ret, unsigned max);
/* The same with what the UDP carrier needs: which path (its index, a
 * stable id while the agent runs), its interface and kind. */
struct path_src {
	struct in6_addr addr;
	char ifname[IFNAMSIZ];
	char name[40];           /* path_name(): a neighbour's names it */
	uint64_t probe_ok_ms;    /* its last probe answered by the concentrator's address */
	uint8_t id;
	bool neighbour, primary;
	bool metered;            /* an overflow line, not active now */
	bool meter;              /* a metered line: mode overflow, or a data cap */
	uint32_t rtt_us;         /* its last probe's round trip, 0 = none yet */
};
/* A metered line: the household pays by the byte there (its mode as
 * configured is overflow, or it has a data cap). */
bool path_is_metered(const struct path *p);
unsigned paths_sources_ex(struct paths *ps, int family, struct path_src *ret, unsigned max);
/* The first usable own (WAN, not a neighbour's) path's address and
 * interface, in the order flows start: for the direct fallback. */
bool paths_wan_source(struct paths *ps, int family, struct in6_addr *ret,
		      char ifname[IFNAMSIZ]);

/* The Cookie value for a request on socket fd, bound or connected (its
 * local address is what the concentrator sees, unless the key says NAT),
 * for dst (NULL: an Info probe). */
void paths_cookie(const struct cookie_key *k, int fd, const struct cookie_dest *dst,
		  uint8_t out[COOKIE_LEN]);

#endif
