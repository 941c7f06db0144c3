/* mptcp-concentrator: types shared by main.c, worker.c and session.c. */
#ifndef CONCENTRATOR_H
#define CONCENTRATOR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "convert.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "relay.h"
#include "speedtest.h"
#include "peers.h"

#define CONC_MAX_LISTEN 16
#define CONC_MAX_SERVICE 4
#define CONC_CONFIG_PATH "/etc/mptcp-concentrator/concentrator.json"
#define CONC_CONNECT_BUCKETS 13
#define CONC_SUBFLOW_BUCKETS 7
/* Cookies remembered: 4 MiB; at 1,000 keyed connections a second that is
 * a whole 180 s window. */
#define CONC_REPLAY_ENTRIES (1u << 18)
extern const double conc_connect_bounds[CONC_CONNECT_BUCKETS];
extern const double conc_subflow_bounds[CONC_SUBFLOW_BUCKETS];

struct conc_config {
	struct sockaddr_storage listen[CONC_MAX_LISTEN];
	socklen_t listen_len[CONC_MAX_LISTEN];
	unsigned nlisten;
	unsigned workers;
	unsigned handshake_timeout_ms;
	unsigned connect_timeout_ms;
	unsigned idle_timeout_s;      /* 0: never */
	unsigned drain_timeout_ms;
	unsigned keepalive_s;         /* 0: off */
	uint32_t max_flows;
	uint32_t max_parked_mib;       /* relay_set_parked_limit, 0 = none */
	uint32_t max_per_client;      /* 0: unlimited */
	uint32_t max_handshakes;      /* in progress at once; 0: default */
	uint32_t max_hs_per_client;   /* 0: unlimited */
	unsigned client_prefix6;      /* IPv6 clients counted per this prefix */
	uint32_t replay_entries;      /* replay cache size */
	unsigned nbufs, bufsize;      /* per worker buffer ring */
	bool verify_stream;           /* --verify-stream: agree to records */
	int log_level;
	struct sockaddr_storage metrics;  /* --metrics-listen; metrics_len 0 = off */
	socklen_t metrics_len;
	char config_path[256];        /* the file read, "" = none */
	char tfo_key_path[256];       /* "" = the kernel's key */
	char congestion[16];          /* --congestion, "" = the system's */
	/* One of several boxes behind a shared service address (cluster.c). */
	struct in6_addr join_addr;    /* --join-address (mapped for IPv4) */
	bool have_join_addr;
	struct addr_prefix service[CONC_MAX_SERVICE];  /* --service-route */
	unsigned nservice;
	unsigned route_table;         /* --route-table */
	unsigned drain_deadline_s;    /* SIGUSR1: flows get this long */
	char box[64];                 /* --box: the metrics' box label */
	/* --replay-peer, --replay-listen: cookies shared with the other
	 * boxes (peers.c). */
	struct sockaddr_storage peer[CONC_MAX_PEERS];
	socklen_t peer_len[CONC_MAX_PEERS];
	unsigned npeers;
	struct sockaddr_storage replay_listen;
	socklen_t replay_listen_len;
	/* The UDP carrier (udp.c). */
	bool udp;                     /* --udp */
	uint32_t udp_max_flows;       /* --udp-max-flows */
	uint32_t udp_per_gateway;     /* --udp-max-flows-per-gateway (reload) */
	uint32_t udp_rate_per_gateway;  /* datagrams a second per session (reload) */
	unsigned udp_timeout_s;       /* until a flow's first answer (reload) */
	unsigned udp_stream_timeout_s;  /* after it (reload) */
	uint8_t tfo_key[32];          /* primary, then backup */
	unsigned tfo_key_len;         /* 0, 16 or 32 */
	/* Changed by a reload (main thread, under conc.live_lock): policy,
	 * handshake/connect/idle timeouts, keepalive, max_per_client. */
	struct policy policy;
};

/* Counters a worker keeps, written by that worker only; summed for logs
 * and metrics (read from other threads without locks). */
struct conc_counters {
	uint64_t accepted;
	uint64_t mptcp, fallback;     /* client connections by kind */
	uint64_t refused[256];        /* by Convert error code */
	uint64_t handshake_timeouts;
	uint64_t limit_hits;
	uint64_t hs_limit_hits;       /* connections reset: too many handshakes */
	uint64_t hs_evictions;        /* oldest waiting handshakes closed for new */
	uint64_t cookie[COOKIE_REASON_MAX];  /* Cookie checks by result */
	uint64_t connected;           /* upstream connects that succeeded */
	uint64_t accept_paused;
	uint64_t orphans;             /* MPTCP flows closed with no subflow left */
	uint64_t tfo_key_waits;       /* 2 ms waits for a TFO client's third ACK */
	uint64_t unverified_waits;    /* requests from cookieless TFO SYNs held */
	uint64_t unverified_dropped;  /* ... whose sender never completed */
	uint64_t fell_back;           /* MPTCP flows that fell back to TCP */
	struct metrics_hist connect_latency;  /* seconds, conc_connect_bounds */
	struct metrics_hist subflows;         /* per MPTCP flow at its end */
};

struct conc;

struct conc_worker {
	struct conc *c;
	unsigned id;
	pthread_t thread;
	struct relay_worker rw;
	int lfd[CONC_MAX_LISTEN];
	bool accept_armed[CONC_MAX_LISTEN];
	bool accept_paused;
	bool listening;               /* false once stopping */
	struct log_ratelimit rl;
	struct conc_counters n;
	int init_result;              /* reported to main before the loop */
	atomic_uint_fast64_t heartbeat;  /* every tick: the watchdog checks it */
	unsigned keepalive_s;         /* this tick's copy of cfg.keepalive_s */
	struct relay *hs_head, *hs_tail;  /* handshakes, oldest first (session.c) */
	/* Handshakes this worker holds, and its share of max_handshakes: at
	 * the share it evicts its own oldest, so a slot freed for a new
	 * connection is never taken by another worker first. */
	unsigned hs_n, hs_max;
};

struct conc {
	struct conc_config cfg;
	struct quota limits;
	struct replay replay;         /* cookies seen, kept across reloads */
	struct peers peers;           /* ... and told to the other boxes */
	/* ownaddr.c: the thread that keeps cfg.policy.own current. */
	struct mnl_socket *own_nl;
	pthread_t own_thread;
	int own_stop[2];
	atomic_uint_fast64_t own_refreshes;
	uint32_t own_nh[POLICY_MAX_NH];  /* nexthop objects of the routers (live_lock) */
	unsigned own_nnh;
	atomic_int stopping;
	/* net.ipv4.tcp_fastopen has 0x200, as last logged by the main thread
	 * (start, reload, every 5 s). Workers read the sysctl themselves,
	 * through tfo_sysctl_fd (opened at start; -errno if it could not be). */
	atomic_int tfo_cookieless;
	int tfo_sysctl_fd;
	struct conc_worker *workers;
	pthread_mutex_t ready_lock;
	pthread_cond_t ready_cond;
	unsigned ready;               /* workers that finished init */
	pthread_rwlock_t live_lock;   /* reloadable parts of cfg */
	struct metrics_server metrics;
	uint64_t started_unix;
	uint64_t reloads_ok, reloads_failed;
	/* Socket activation: listeners systemd passed (sd_listen_fds), used
	 * instead of --listen. Workers accept on duplicates of them. */
	int inherited[CONC_MAX_LISTEN];
	unsigned ninherited;
	/* cluster.c: what we added to the kernel, removed at stop. */
	uint8_t join_ep_id;           /* our signal endpoint, 0 = none */
	atomic_bool service_up;       /* the service routes are in */
	atomic_uint_fast64_t draining_since_ms;  /* SIGUSR1, 0 = not draining */
	struct udp_srv *udp;          /* udp.c; NULL: not carrying UDP */
	/* Bumped when destinations or keys may have changed (reload, own
	 * addresses): UDP flows and sessions are checked again. */
	atomic_uint policy_gen;
	struct speedtests speedtests;  /* speedtest.c */
};

/* cluster.c: one box of several behind a shared service address. At
 * start (after the workers listen): joins kept off the service address
 * (net.mptcp.allow_join_initial_addr_port=0), our own --join-address
 * announced to gateways (a signal endpoint), the service routes put in
 * --route-table for the routing daemon to announce. 0 or -errno after
 * saying what is missing. */
int cluster_start(struct conc *c);
/* The routes out (drain, stop): the routing daemon withdraws the address. */
void cluster_withdraw(struct conc *c);
/* At exit: the endpoint we added. */
void cluster_stop(struct conc *c);

/* stats.c: the workers' counters and relay stats summed (read without
 * locks: each is written by its worker only); the metrics page; the
 * summary logged at stop. */
void conc_totals(const struct conc *c, struct conc_counters *ret_n, struct relay_stats *ret_s);
void conc_render_metrics(void *ctx, struct mbuf *b);
void conc_log_summary(struct conc *c);

/* ownaddr.c: 0 or -errno (then own addresses are the start's list). */
struct mnl_socket;
int ownaddr_start(struct conc *c);
void ownaddr_stop(struct conc *c);

/* tfokey.c: the listeners' TCP Fast Open key. Load creates a missing file
 * with a random key; errors are printed naming the file. */
int tfokey_load(const char *path, uint8_t ret[32], unsigned *ret_len);
/* Once per process: the kernel refused TCP Fast Open on an MPTCP listener
 * (Linux before 6.2): 0-RTT clients take one more round trip. */
void warn_no_mptcp_tfo(void);
int tfokey_apply(int fd, const uint8_t *key, unsigned len);

/* worker.c */
void *worker_main(void *arg);
void worker_arm_accept(struct conc_worker *cw, unsigned li);

/* session.c: the Convert handshake of one accepted client connection. */
enum conc_op {
	OP_ACCEPT = RELAY_OP_USER,
	OP_HS_RECV,
	OP_CONNECT,
	OP_CONNECT_TIMEOUT,
	OP_HS_SEND,
	OP_KEY_WAIT,     /* reply held until the client's MPTCP key is in */
	OP_VERIFY_WAIT,  /* request held until the client's handshake is done */
	OP_DRAIN_RECV,
};

void session_accept(struct conc_worker *cw, int fd);
void session_handle(struct relay_worker *w, struct relay *r, unsigned op,
		    const struct io_uring_cqe *cqe);
void session_close(struct relay_worker *w, struct relay *r);
void session_eof(struct relay_worker *w, struct relay *r, int d);
void session_free(struct relay_worker *w, struct relay *r);
void session_tick(struct conc_worker *cw);

#endif
