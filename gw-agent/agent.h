/* gw-agent: types shared by main.c, flow.c and intercept.c. */
#ifndef GW_AGENT_H
#define GW_AGENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "addr.h"
#include "convert.h"
#include "log.h"
#include "metrics.h"
#include "paths.h"
#include "mesh.h"
#include "overflow.h"
#include "caps.h"
#include "classes.h"
#include "speedtest.h"
#include "cookie.h"
#include "quota.h"
#include "relay.h"
#include "udp.h"

#define AGENT_MAX_CONC 4
#define AGENT_MAX_LAN 8
#define AGENT_MAX_BYPASS 64
#define AGENT_VERSION "0.1.0"
#define AGENT_CONTROL_PATH "/run/gw-agent/control.sock"
#define AGENT_CONFIG_PATH "/etc/gw-agent/gw-agent.json"

/* struct relay flags */
#define AGENT_FLOW_DIRECT 0x01  /* fallen back to a direct connection */
#define AGENT_FLOW_HOSTQ  0x02  /* counted in the LAN host's quota */

enum agent_fallback {
	FALLBACK_DIRECT = 0,  /* connect straight to the destination */
	FALLBACK_RESET,       /* fail closed: reset the LAN connection */
};

struct agent_config {
	struct sockaddr_storage conc[AGENT_MAX_CONC];
	socklen_t conc_len[AGENT_MAX_CONC];
	unsigned nconc;
	char lan[AGENT_MAX_LAN][32];
	unsigned nlan;
	struct addr_prefix bypass[AGENT_MAX_BYPASS];  /* operator's and LAN's */
	unsigned nbypass;
	enum agent_fallback fallback;
	bool block_quic;
	uint16_t port;                 /* TPROXY listener */
	uint32_t mark, table;
	unsigned workers;
	unsigned connect_timeout_ms;   /* TCP connect to a concentrator */
	unsigned reply_timeout_ms;     /* Convert reply after connecting */
	unsigned keepalive_s;
	unsigned idle_timeout_s;
	unsigned nbufs, bufsize;
	uint32_t max_flows;
	uint32_t max_per_host;         /* flows at once per LAN host, 0 = any */
	uint32_t max_parked_mib;       /* relay_set_parked_limit, 0 = none */
	unsigned rcvbuf;               /* MPTCP receive buffer, 0 = autotune */
	char control_path[108];        /* status socket, "" = none */
	char state_dir[200];           /* the caps file's directory */
	int log_level;
	struct sockaddr_storage metrics;  /* --metrics-listen; metrics_len 0 = off */
	socklen_t metrics_len;
	struct sockaddr_storage web;   /* --web-listen; web_len 0 = off */
	socklen_t web_len;
	char web_token_path[256];      /* --web-token-file, "" = state_dir/web-token */
	char config_path[256];         /* the file read, "" = none */
	char key_path[256];            /* --key-file, "" = none */
	char congestion[16];           /* --congestion, "" = the system's */
	bool fast_open;                /* --fast-open: Convert message in the SYN */
	bool verify_stream;            /* --verify-stream: offer records */
	bool keyed;                    /* key holds this gateway's key */
	struct cookie_key key;         /* (its scope is unused: NULL) */
	struct mesh_config mesh;       /* --mesh, --lend (restart only) */
	/* LAN UDP (udp.c). */
	int udp_mode;                  /* AGENT_UDP_OFF or enum udpc_mode */
	struct udp_class udp_class[AGENT_UDP_MAX_CLASSES];
	unsigned nudp_class;
	uint32_t udp_max_flows;
	uint32_t udp_per_host;         /* LAN sources per device (address, IPv6 /128) */
	uint32_t overflow_share;       /* percent: overflow lines active over it */
	/* Traffic classes the agent applies (pin, no-metered), by index;
	 * a->classes has them all (the nftables side). */
	struct class_act cls[CLASS_MAX];
	unsigned ncls;
	bool cls_agent;                /* one of them is pin or no-metered */
	unsigned udp_timeout_s, udp_stream_timeout_s;
};

struct agent_counters {
	uint64_t intercepted;
	uint64_t via_concentrator;
	uint64_t fallback_direct;
	uint64_t fallback_refused;     /* reset: the fallback would escape the firewall */
	uint64_t failed;               /* reset: no concentrator and no fallback */
	uint64_t host_limit_hits;      /* LAN connections reset: host at its cap */
	uint64_t fell_back;            /* MPTCP connections fallen back to TCP */
	uint64_t accept_paused;        /* accepts paused for want of descriptors */
	uint64_t class_flows;          /* flows of a pin or no-metered class */
	uint64_t class_no_line;        /* reset: no line their class allows is up */
	uint64_t class_errors;         /* conntrack unreadable: class not applied */
	uint64_t conc_errors[256];     /* Error codes from the concentrator */
	uint64_t conc_ok[AGENT_MAX_CONC], conc_failed[AGENT_MAX_CONC];  /* connects */
};

struct agent;

struct agent_worker {
	struct agent *a;
	unsigned id;
	pthread_t thread;
	struct relay_worker rw;
	struct mnl_socket *ct_nl;      /* ctmark.h: flows' classes */
	int lfd;
	bool accept_armed;
	bool accept_paused;
	bool listening;
	struct log_ratelimit rl;
	struct agent_counters n;
	/* This worker's copy of a->cfg, refreshed at its tick after a reload,
	 * so flows never read what the main thread may be writing. */
	struct agent_config cfg;
	unsigned cfg_gen;
	atomic_uint cfg_seen;          /* cfg_gen, for the main thread to read */
	atomic_uint_fast64_t heartbeat;  /* every tick: the watchdog checks it */
	int init_result;
	unsigned snap_gen;             /* last status request answered */
	char *snap;                    /* its flows, text (under a->snap_lock) */
	void *snap_json;               /* and as a JSON array (json_t), the same */
};

/* A path/family as metrics show it, copied by the main thread (which owns
 * the paths) under snap_lock after each change. */
struct path_metric {
	char ifname[IFNAMSIZ];
	char name[40];                 /* path_name(): ifname, or ifname~neighbour */
	bool neighbour;
	struct in6_addr src;           /* a neighbour's: our address for it */
	const char *mode, *state;      /* static strings */
	int family;
	bool usable, endpoint;
	uint32_t probe_rtt_us;         /* 0 = none yet */
	int mptcp;                     /* enum path_mptcp */
	uint64_t cap_bytes, cap_used;  /* its data cap (0: none) and this cycle's bytes */
	unsigned cap_pct;              /* the highest threshold reached (percent), 0: none */
};

struct agent {
	struct agent_config cfg;       /* main thread; writes under cfg_lock */
	bool mptcp_tfo;                /* the kernel has TFO for MPTCP (6.2+) */
	unsigned nworkers;             /* cfg.workers at start; never changes */
	pthread_mutex_t cfg_lock;
	atomic_uint cfg_gen;
	struct paths paths;
	struct mesh mesh;              /* main thread */
	struct quota hosts;            /* flows per LAN host (whole addresses) */
	atomic_int stopping;
	struct agent_worker *workers;
	pthread_mutex_t ready_lock;
	pthread_cond_t ready_cond;
	unsigned ready;
	uint64_t started_ms;
	int control_fd;
	/* Status requests: a client bumps snap_req, workers answer on their
	 * next tick (control.c). */
	atomic_uint snap_req;
	struct control_pathmap {       /* path addresses, for naming subflows */
		struct in6_addr addr[2 * PATHS_MAX];
		char name[2 * PATHS_MAX][40];
		unsigned n;
	} snap_map;                    /* written by the main thread, under snap_lock */
	pthread_mutex_t snap_lock;
	pthread_cond_t snap_cond;
	unsigned control_clients;
	int control_cfd[4];            /* their sockets (-1: free), for control_close */
	bool control_closing;          /* control_close: clients stop at once */
	uint64_t control_paused_until;  /* accept failed for want of fds */
	atomic_uint_fast64_t control_pauses;
	struct path_metric pm[2 * PATHS_MAX];  /* under snap_lock */
	uint64_t mesh_results[MESH_R_MAX];     /* under snap_lock: mesh.results */
	uint64_t mesh_req_results[MESH_R_MAX]; /* under snap_lock: mesh.req_results */
	unsigned mesh_borrowers;               /* under snap_lock: mesh.nallowed */
	struct overflow overflow;              /* main thread */
	char caps_file[220];                   /* state_dir/caps, "" before start */
	struct caps_state caps;                /* main thread */
	struct overflow_figures ovf;           /* under snap_lock: overflow.fig */
	unsigned npm;
	/* Concentrator reachability: 1 ok, 0 failed, -1 not tried yet; set by
	 * workers (last connect) and for the first one by the probes. */
	atomic_int conc_up[AGENT_MAX_CONC];
	/* A concentrator that answered our Verified Stream TLV with
	 * Unsupported Message: not offered it again (cleared at reload). */
	atomic_bool conc_plain[AGENT_MAX_CONC];
	struct metrics_server metrics;
	uint64_t reloads_ok, reloads_failed;
	struct agent_udp *udp;         /* udp.c; NULL: UDP not carried */
	atomic_bool paths_ready;       /* paths_init ran (the UDP thread may read them) */
	struct agent_classes classes;  /* main thread (the nftables table's) */
	struct agent_speedtests speedtests;  /* speedtest.c */
	struct metrics_server web;     /* web.c: the household's page */
	char web_token[HTTP_TOKEN_MAX + 1];
	atomic_uint_fast64_t web_requests, web_refused;
	struct class_resolver *resolver;  /* NULL: no class names a domain yet */
};

/* main.c: the reload-safe view of the settings a worker uses. */
void agent_worker_refresh(struct agent_worker *aw);
/* The workers' counters and relay stats summed. Each is written by its
 * worker only and read here without locks (aligned 64-bit: never torn). */
/* stats.c: the paths as metrics show them (main thread, under snap_lock),
 * the Prometheus page, the summary logged at stop. */
void agent_paths_snapshot(struct agent *a);
/* The mesh's announcement counters, for metrics (main thread). */
void agent_mesh_snapshot(struct agent *a);
void agent_render_metrics(void *ctx, struct mbuf *b);
void agent_log_summary(struct agent *a);
void agent_totals(const struct agent *a, struct agent_counters *ret_n,
		  struct relay_stats *ret_s);

/* intercept.c: nftables table, policy rule and local route. */
/* Runs argv (nft, ip) with input on its stdin; its exit status or -errno. */
int agent_cmd(char *const argv[], const char *input, bool show_errors);
int intercept_install(const struct agent_config *cfg);
/* The traffic classes the table carries from the next install or update
 * on, and the paths whose slots their lines are (main thread). */
void intercept_set_classes(const struct agent_classes *cs, const struct paths *ps);
/* A reload: replace the nftables table in one transaction (LAN interfaces,
 * bypass prefixes, QUIC blocking), never leaving a moment without it. */
int intercept_update(const struct agent_config *cfg);
void intercept_remove(const struct agent_config *cfg);
/* Stopping: the same table, but new connections are no longer taken (their
 * SYNs go the routed way) while intercepted flows keep going. */
int intercept_drain(const struct agent_config *cfg);
/* LAN interface prefixes, appended to cfg->bypass. */
int intercept_add_lan_prefixes(struct agent_config *cfg);
/* LAN devices (MAC addresses) whose flows nftables counts against
 * max_flows_per_host; and the new connections it reset over the cap
 * (-errno when the table cannot be read). */
#define INTERCEPT_MAX_DEVICES 4096
int64_t intercept_device_limit_hits(void);

/* control.c: the status socket and `gw-agent status`. */
int control_open(struct agent *a);
void control_accept(struct agent *a);
void control_close(struct agent *a);
void control_worker_tick(struct agent_worker *aw);
int control_status(const char *path, bool json);
/* `gw-agent speedtest [LINE]`: every own line (or LINE), one at a time. */
int control_speedtest(const char *path, const char *line, unsigned seconds);
/* A stopped worker's last status snapshot, freed. */
void control_worker_done(struct agent_worker *aw);
const char *control_path_state(const struct path *p, int fi);
void control_iface_bytes(const char *ifname, uint64_t *ret_rx, uint64_t *ret_tx);
/* An interface's byte counters (received, sent): 0, or -errno (it is
 * gone). For status, overflow lines and caps. */
int iface_bytes(const char *ifname, uint64_t *ret_rx, uint64_t *ret_tx);
/* A path's bytes: its interface's, or for a neighbour's path (mesh.c) what
 * went through that neighbour. cc: zeroed by the caller, filled at the
 * first neighbour. */
struct control_counts {
	bool read;
	int n;
	struct mesh_count c[MESH_MAX_NEIGHBOURS * 2];
};
void control_path_bytes(const char *ifname, bool neighbour, const struct in6_addr *src,
			struct control_counts *cc, uint64_t *ret_rx, uint64_t *ret_tx);

/* flow.c */
enum agent_op {
	AOP_ACCEPT = RELAY_OP_USER,
	AOP_CONN_POLL,
	AOP_TIMEOUT,
	AOP_SEND,
	AOP_REPLY,
	AOP_DIRECT_CONNECT,
	AOP_LAN_SEND,
};
void flow_accept(struct agent_worker *aw, int fd);
/* Whether a flow of class act may use the line ifname (path name, whether
 * metered). */
bool class_allows(const struct class_act *act, const char *ifname, const char *name, bool meter,
		  uint32_t rtt_us, uint32_t best_us);
void flow_handle(struct relay_worker *w, struct relay *r, unsigned op,
		 const struct io_uring_cqe *cqe);
void flow_close(struct relay_worker *w, struct relay *r);
void flow_free(struct relay_worker *w, struct relay *r);
void flow_tick(struct agent_worker *aw);
void agent_arm_accept(struct agent_worker *aw);

/* tfocache.c: forget the kernel's TFO cookie for a concentrator. */
int tfo_cookie_forget(const struct in6_addr *dst);

#endif
