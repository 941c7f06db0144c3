/* The concentrator's counters: summed over workers, as Prometheus metrics
 * and as the summary line logged at stop (stats.c). */
#include "concentrator.h"
#include "udp.h"
#include "metrics.h"
#include "settings.h"
#include "sock.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The workers' counters and relay stats summed. Each is written by its
 * worker only and read here without locks (aligned 64-bit: never torn). */
void conc_totals(const struct conc *c, struct conc_counters *ret_n,
			struct relay_stats *ret_s)
{
	memset(ret_n, 0, sizeof(*ret_n));
	memset(ret_s, 0, sizeof(*ret_s));
	for (unsigned i = 0; i < c->cfg.workers; i++) {
		const struct conc_counters *n = &c->workers[i].n;
		const struct relay_stats *st = &c->workers[i].rw.stats;

		ret_n->accepted += n->accepted;
		ret_n->mptcp += n->mptcp;
		ret_n->fallback += n->fallback;
		ret_n->connected += n->connected;
		ret_n->handshake_timeouts += n->handshake_timeouts;
		ret_n->limit_hits += n->limit_hits;
		ret_n->hs_limit_hits += n->hs_limit_hits;
		ret_n->hs_evictions += n->hs_evictions;
		for (int k = 0; k < COOKIE_REASON_MAX; k++)
			ret_n->cookie[k] += n->cookie[k];
		ret_n->accept_paused += n->accept_paused;
		ret_n->orphans += n->orphans;
		ret_n->tfo_key_waits += n->tfo_key_waits;
		ret_n->unverified_waits += n->unverified_waits;
		ret_n->unverified_dropped += n->unverified_dropped;
		ret_n->fell_back += n->fell_back;
		for (int k = 0; k < 256; k++)
			ret_n->refused[k] += n->refused[k];
		metrics_hist_add(&ret_n->connect_latency, &n->connect_latency, CONC_CONNECT_BUCKETS);
		metrics_hist_add(&ret_n->subflows, &n->subflows, CONC_SUBFLOW_BUCKETS);
		relay_stats_add(ret_s, st);
	}
}

void conc_log_summary(struct conc *c)
{
	struct conc_counters t;
	struct relay_stats s;

	conc_totals(c, &t, &s);
	log_info("accepted %llu (mptcp %llu, tcp fallback %llu), connected %llu, "
		 "handshake timeouts %llu, limit hits %llu, flows without subflows %llu, "
		 "bytes up %llu down %llu",
		 (unsigned long long)t.accepted, (unsigned long long)t.mptcp,
		 (unsigned long long)t.fallback, (unsigned long long)t.connected,
		 (unsigned long long)t.handshake_timeouts,
		 (unsigned long long)t.limit_hits, (unsigned long long)t.orphans,
		 (unsigned long long)s.bytes[0], (unsigned long long)s.bytes[1]);
	if (s.vs_damaged || s.vs_broken)
		log_warn("verified streams reset: %llu damaged, %llu broken (of %llu)",
			 (unsigned long long)s.vs_damaged, (unsigned long long)s.vs_broken,
			 (unsigned long long)s.verified);
	for (int k = 0; k < 256; k++)
		if (t.refused[k])
			log_info("refused with error %d %s: %llu", k,
				 convert_error_name((unsigned)k),
				 (unsigned long long)t.refused[k]);
}

/* Socket activation: systemd created the listeners (a .socket unit; with
 * SocketProtocol=mptcp from systemd 257 on, plain TCP before). They replace
 * --listen; their addresses are read back for the logs and the deny list. */
/* Histogram bounds: upstream connect latency (seconds) and subflows. */
const double conc_connect_bounds[CONC_CONNECT_BUCKETS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
const double conc_subflow_bounds[CONC_SUBFLOW_BUCKETS] = { 0, 1, 2, 3, 4, 6, 8 };

void conc_render_metrics(void *ctx, struct mbuf *b)
{
	struct conc *c = ctx;
	struct conc_counters t;
	struct relay_stats s;
	static const char *const outcome[RELAY_END_MAX] = {
		"done", "reset", "idle", "refused", "handshake_failed", "shutdown",
	};
	char l[128];

	conc_totals(c, &t, &s);
	metrics_head(b, "mptcp_concentrator_info", "gauge", "Version of the running concentrator.");
	metrics_u64(b, "mptcp_concentrator_info", "version=\"" CONC_VERSION "\"", 1);
	metrics_one(b, "mptcp_concentrator_start_time_seconds", "gauge",
		    "When the concentrator started (Unix time).",
		    c->started_unix);
	metrics_one(b, "mptcp_concentrator_flows_active", "gauge",
		    "Flows open now (handshaking or relaying).",
		    s.active);
	metrics_one(b, "mptcp_concentrator_flows_max", "gauge", "Flows allowed at once.",
		    c->cfg.max_flows);
	metrics_head(b, "mptcp_concentrator_connections_accepted_total", "counter",
		     "Client connections accepted, by kind: MPTCP, or plain TCP (MPTCP fallback).");
	metrics_u64(b, "mptcp_concentrator_connections_accepted_total", "kind=\"mptcp\"", t.mptcp);
	metrics_u64(b, "mptcp_concentrator_connections_accepted_total", "kind=\"tcp_fallback\"",
		    t.fallback);
	metrics_head(b, "mptcp_concentrator_flows_closed_total", "counter",
		     "Flows ended, by outcome.");
	for (int k = 0; k < RELAY_END_MAX; k++) {
		snprintf(l, sizeof(l), "outcome=\"%s\"", outcome[k]);
		metrics_u64(b, "mptcp_concentrator_flows_closed_total", l, s.closed[k]);
	}
	metrics_head(b, "mptcp_concentrator_refusals_total", "counter",
		     "Convert requests refused, by the RFC 8803 Error code sent.");
	for (unsigned k = 0; k < 256; k++) {
		const char *name = convert_error_name(k);

		if (!strcmp(name, "unknown") && !t.refused[k])
			continue;
		snprintf(l, sizeof(l), "code=\"%u\",reason=\"%s\"", k, name);
		metrics_u64(b, "mptcp_concentrator_refusals_total", l, t.refused[k]);
	}
	pthread_rwlock_rdlock(&c->live_lock);
	metrics_head(b, "mptcp_concentrator_own_addresses", "gauge",
		     "This host's addresses, denied as destinations: its interfaces' (kept current) "
		     "and the operator's own_addresses.");
	metrics_u64(b, "mptcp_concentrator_own_addresses", "",
		    c->cfg.policy.nown + c->cfg.policy.nown_extra);
	pthread_rwlock_unlock(&c->live_lock);
	metrics_head(b, "mptcp_concentrator_own_address_refreshes_total", "counter",
		     "Times the interfaces' addresses were listed again after an address change.");
	metrics_u64(b, "mptcp_concentrator_own_address_refreshes_total", "",
		    atomic_load(&c->own_refreshes));
	metrics_one(b, "mptcp_concentrator_gateway_keys", "gauge",
		    "Per-gateway keys loaded (0: no Cookie asked of clients).",
		    c->cfg.policy.keys.n);
	metrics_head(b, "mptcp_concentrator_cookies_total", "counter",
		     "Cookie TLVs checked, by result: ok, or why the request was refused "
		     "(missing: Error 3; the others: Error 32).");
	for (int k = 0; k < COOKIE_REASON_MAX; k++) {
		snprintf(l, sizeof(l), "result=\"%s\"", cookie_reason_name((enum cookie_reason)k));
		metrics_u64(b, "mptcp_concentrator_cookies_total", l, t.cookie[k]);
	}
	metrics_head(b, "mptcp_concentrator_speedtests_total", "counter",
		     "Gateways' speed tests served (by direction) and refused: unkeyed (no valid "
		     "gateway key, Error 32 or 3), limit (two at once on the box, one per key, 30 "
		     "a key an hour: Error 64).");
	metrics_u64(b, "mptcp_concentrator_speedtests_total", "result=\"down\"",
		    atomic_load(&c->speedtests.served[1]));
	metrics_u64(b, "mptcp_concentrator_speedtests_total", "result=\"up\"",
		    atomic_load(&c->speedtests.served[2]));
	metrics_u64(b, "mptcp_concentrator_speedtests_total", "result=\"unkeyed\"",
		    atomic_load(&c->speedtests.refused_unkeyed));
	metrics_u64(b, "mptcp_concentrator_speedtests_total", "result=\"limit\"",
		    atomic_load(&c->speedtests.refused_limit));
	pthread_mutex_lock(&c->speedtests.lock);
	metrics_one(b, "mptcp_concentrator_speedtests_running", "gauge",
		    "Speed tests admitted and not ended (at most two).", c->speedtests.running);
	pthread_mutex_unlock(&c->speedtests.lock);
	metrics_one(b, "mptcp_concentrator_speedtest_bytes_total", "counter",
		    "Bytes sent and received by speed tests.", atomic_load(&c->speedtests.bytes));
	metrics_one(b, "mptcp_concentrator_handshake_timeouts_total", "counter",
		    "Clients that did not complete a Convert message in time.",
		    t.handshake_timeouts);
	metrics_head(b, "mptcp_concentrator_limit_hits_total", "counter",
		     "Connections refused or reset by a limit: flows (total or per client, or for "
		     "want of sockets; answered with Error 64) and handshakes in progress (total "
		     "or per client; reset at once).");
	metrics_u64(b, "mptcp_concentrator_limit_hits_total", "limit=\"flows\"", t.limit_hits);
	metrics_u64(b, "mptcp_concentrator_limit_hits_total", "limit=\"handshakes\"",
		    t.hs_limit_hits);
	metrics_one(b, "mptcp_concentrator_handshake_evictions_total", "counter",
		    "Handshakes still waiting for their request closed to make room for a new "
		    "connection, the total of handshakes being reached.",
		    t.hs_evictions);
	metrics_one(b, "mptcp_concentrator_handshakes_active", "gauge",
		    "Connections not yet relaying: reading the request, connecting, or refusing.",
		    c->limits.count[QUOTA_HANDSHAKE]);
	metrics_one(b, "mptcp_concentrator_handshakes_max", "gauge", "Handshakes allowed at once.",
		    c->cfg.max_handshakes);
	metrics_one(b, "mptcp_concentrator_orphaned_flows_total", "counter",
		    "MPTCP flows reset because no subflow was left (gateway gone).",
		    t.orphans);
	metrics_one(b, "mptcp_concentrator_tfo_reply_waits_total", "counter",
		    "2 ms waits holding a reply until a TFO client's third ACK arrived.",
		    t.tfo_key_waits);
	metrics_one(b, "mptcp_concentrator_flows_fallen_back_total", "counter",
		    "MPTCP flows that had fallen back to plain TCP by their end (one path): "
		    "typically a TFO cookie made with another key.",
		    t.fell_back);
	metrics_head(b, "mptcp_concentrator_unverified_syn_requests_total", "counter",
		     "Requests taken from a SYN without a TFO cookie (net.ipv4.tcp_fastopen has "
		     "0x200), held until the client completed its handshake, by result.");
	metrics_u64(b, "mptcp_concentrator_unverified_syn_requests_total", "result=\"held\"",
		    t.unverified_waits);
	metrics_u64(b, "mptcp_concentrator_unverified_syn_requests_total",
		    "result=\"never_completed\"", t.unverified_dropped);
	metrics_head(b, "mptcp_concentrator_bytes_total", "counter",
		     "Bytes relayed: up = client to server, down = server to client.");
	metrics_u64(b, "mptcp_concentrator_bytes_total", "direction=\"up\"", s.bytes[0]);
	metrics_u64(b, "mptcp_concentrator_bytes_total", "direction=\"down\"", s.bytes[1]);
	metrics_parked(b, "mptcp_concentrator", s.parked, s.parked_bytes, s.parked_refused);
	metrics_verified(b, "mptcp_concentrator", s.verified, s.vs_damaged, s.vs_broken,
			 s.vs_whole, s.vs_gathered);
	metrics_head(b, "mptcp_concentrator_upstream_connect_seconds", "histogram",
		     "Time to connect to the destination, for connects that succeeded.");
	metrics_hist_write(b, "mptcp_concentrator_upstream_connect_seconds", "",
			   conc_connect_bounds, CONC_CONNECT_BUCKETS, &t.connect_latency);
	metrics_head(b, "mptcp_concentrator_subflows_per_flow", "histogram",
		     "Subflows an MPTCP flow had when it ended.");
	metrics_hist_write(b, "mptcp_concentrator_subflows_per_flow", "",
			   conc_subflow_bounds, CONC_SUBFLOW_BUCKETS, &t.subflows);
	metrics_head(b, "mptcp_concentrator_worker_flows_active", "gauge", "Flows per worker.");
	for (unsigned i = 0; i < c->cfg.workers; i++) {
		snprintf(l, sizeof(l), "worker=\"%u\"", i);
		metrics_u64(b, "mptcp_concentrator_worker_flows_active", l,
			    c->workers[i].rw.stats.active);
	}
	metrics_head(b, "mptcp_concentrator_worker_buffer_waits_total", "counter",
		     "Receives that found the worker's buffer ring empty and waited.");
	for (unsigned i = 0; i < c->cfg.workers; i++) {
		snprintf(l, sizeof(l), "worker=\"%u\"", i);
		metrics_u64(b, "mptcp_concentrator_worker_buffer_waits_total", l,
			    c->workers[i].rw.stats.nobufs);
	}
	metrics_head(b, "mptcp_concentrator_worker_accept_pauses_total", "counter",
		     "Times a worker paused accepting for want of file descriptors.");
	for (unsigned i = 0; i < c->cfg.workers; i++) {
		snprintf(l, sizeof(l), "worker=\"%u\"", i);
		metrics_u64(b, "mptcp_concentrator_worker_accept_pauses_total", l,
			    c->workers[i].n.accept_paused);
	}
	metrics_head(b, "mptcp_concentrator_config_reloads_total", "counter",
		     "SIGHUP reloads, by result.");
	metrics_u64(b, "mptcp_concentrator_config_reloads_total", "result=\"ok\"", c->reloads_ok);
	metrics_u64(b, "mptcp_concentrator_config_reloads_total", "result=\"failed\"",
		    c->reloads_failed);
	metrics_head(b, "mptcp_concentrator_draining", "gauge",
		     "1 while draining (SIGUSR1): the service address withdrawn, flows finishing.");
	metrics_u64(b, "mptcp_concentrator_draining", "", c->draining_since_ms != 0);
	metrics_head(b, "mptcp_concentrator_service_announced", "gauge",
		     "1 while the service routes are in the route table (the address is announced).");
	metrics_u64(b, "mptcp_concentrator_service_announced", "", c->service_up);
	udp_render_metrics(c, b);
	peers_render_metrics(c, b);
	if (c->cfg.box[0])
		metrics_label_all(b, "box", c->cfg.box);
}

/* One line for `systemctl status`. */
