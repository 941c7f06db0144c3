/* The agent's counters: summed over workers, the paths as metrics show
 * them, the Prometheus page, the summary logged at stop (stats.c). */
#include "agent.h"
#include "metrics.h"
#include "sock.h"

#include <inttypes.h>
#include <math.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

void agent_totals(const struct agent *a, struct agent_counters *ret_n,
		  struct relay_stats *ret_s)
{
	memset(ret_n, 0, sizeof(*ret_n));
	memset(ret_s, 0, sizeof(*ret_s));
	for (unsigned i = 0; i < a->nworkers; i++) {
		const struct agent_counters *n = &a->workers[i].n;
		const struct relay_stats *st = &a->workers[i].rw.stats;

		ret_n->intercepted += n->intercepted;
		ret_n->via_concentrator += n->via_concentrator;
		ret_n->fallback_direct += n->fallback_direct;
		ret_n->fallback_refused += n->fallback_refused;
		ret_n->failed += n->failed;
		ret_n->host_limit_hits += n->host_limit_hits;
		ret_n->fell_back += n->fell_back;
		ret_n->accept_paused += n->accept_paused;
		ret_n->class_flows += n->class_flows;
		ret_n->class_no_line += n->class_no_line;
		ret_n->class_errors += n->class_errors;
		for (int k = 0; k < 256; k++)
			ret_n->conc_errors[k] += n->conc_errors[k];
		for (int k = 0; k < AGENT_MAX_CONC; k++) {
			ret_n->conc_ok[k] += n->conc_ok[k];
			ret_n->conc_failed[k] += n->conc_failed[k];
		}
		relay_stats_add(ret_s, st);
	}
}

/* Main thread: copy what metrics show of the paths (they are ours). */
void agent_mesh_snapshot(struct agent *a)
{
	pthread_mutex_lock(&a->snap_lock);
	memcpy(a->mesh_results, a->mesh.results, sizeof(a->mesh_results));
	memcpy(a->mesh_req_results, a->mesh.req_results, sizeof(a->mesh_req_results));
	a->mesh_borrowers = a->mesh.nallowed;
	pthread_mutex_unlock(&a->snap_lock);
}

void agent_paths_snapshot(struct agent *a)
{
	struct paths *ps = &a->paths;
	unsigned n = 0;
	bool conc0_seen = false, conc0_up = false;

	pthread_mutex_lock(&a->snap_lock);
	for (unsigned i = 0; i < ps->n; i++)
		for (int fi = 0; fi < 2; fi++) {
			const struct path *p = &ps->p[i];
			const struct path_fam *f = &p->f[fi];
			struct path_metric *m;

			/* IPv6 on a path that never had an address: not a path. */
			if (fi == 1 && !f->have_addr && IN6_IS_ADDR_UNSPECIFIED(&f->addr))
				continue;
			m = &a->pm[n++];

			memcpy(m->ifname, p->ifname, IFNAMSIZ);
			m->neighbour = p->neighbour;
			m->src = p->nb_src;
			{
				const char *nm = path_name(p);
				size_t k = strnlen(nm, sizeof(m->name) - 1);

				memcpy(m->name, nm, k);
				m->name[k] = 0;
			}
			m->mode = path_mode_name(p->mode);
			m->state = control_path_state(p, fi);
			m->family = fi ? AF_INET6 : AF_INET;
			m->usable = f->usable && p->mode != PATH_OFF;
			m->endpoint = f->ep_id != 0;
			m->probe_rtt_us = f->usable ? f->probe_rtt_us : 0;
			m->mptcp = f->mptcp;
			m->cap_bytes = fi == 0 && !p->neighbour ? p->cap.bytes : 0;
			m->cap_used = p->cap.used;
			m->cap_pct = p->cap.level >= 0 && p->cap.level < p->cap.nat
				     ? p->cap.at[p->cap.level].pct : 0;
			/* The probes talk to the first concentrator. */
			if ((a->paths.probe_to.ss_family == AF_INET6) == (fi == 1) &&
			    f->have_addr && p->mode != PATH_OFF && ps->probe_interval_ms) {
				conc0_seen = true;
				conc0_up |= f->usable && f->probe_rtt_us;
			}
		}
	a->npm = n;
	a->ovf = a->overflow.fig;
	memcpy(a->mesh_results, a->mesh.results, sizeof(a->mesh_results));
	memcpy(a->mesh_req_results, a->mesh.req_results, sizeof(a->mesh_req_results));
	a->mesh_borrowers = a->mesh.nallowed;
	pthread_mutex_unlock(&a->snap_lock);
	if (conc0_seen)
		atomic_store_explicit(&a->conc_up[0], conc0_up ? 1 : 0, memory_order_relaxed);
}

/* One counter per mesh result (announcements, or borrow requests). */
static void mesh_results_metric(struct mbuf *b, const char *name, const char *help,
				const uint64_t results[MESH_R_MAX])
{
	char l[64];

	metrics_head(b, name, "counter", help);
	for (unsigned k = 0; k < MESH_R_MAX; k++) {
		snprintf(l, sizeof(l), "result=\"%s\"", mesh_result_name(k));
		metrics_u64(b, name, l, results[k]);
	}
}

void agent_render_metrics(void *ctx, struct mbuf *b)
{
	struct agent *a = ctx;
	struct agent_counters t;
	struct relay_stats st;
	uint64_t up, down, active;
	struct path_metric pm[2 * PATHS_MAX];
	struct agent_config cfg;
	unsigned npm;
	char l[256], e1[64], e2[64];
	struct control_counts cc = { .read = false };

	uint64_t mesh_results[MESH_R_MAX], mesh_req_results[MESH_R_MAX];
	unsigned mesh_borrowers;
	struct overflow_figures ovf;

	pthread_mutex_lock(&a->snap_lock);
	ovf = a->ovf;
	npm = a->npm;
	memcpy(pm, a->pm, sizeof(pm));
	memcpy(mesh_results, a->mesh_results, sizeof(mesh_results));
	memcpy(mesh_req_results, a->mesh_req_results, sizeof(mesh_req_results));
	mesh_borrowers = a->mesh_borrowers;
	pthread_mutex_unlock(&a->snap_lock);
	pthread_mutex_lock(&a->cfg_lock);
	cfg = a->cfg;
	pthread_mutex_unlock(&a->cfg_lock);
	agent_totals(a, &t, &st);
	up = st.bytes[0];
	down = st.bytes[1];
	active = st.active;
	metrics_one(b, "gw_agent_class_flows_total", "counter",
		    "Flows of a pin or no-metered class (their lines chosen by the class).",
		    t.class_flows);
	metrics_head(b, "gw_agent_class_resets_total", "counter",
		     "Flows of a class reset: no_line (no line the class allows is up, or too many "
		     "starting at once), conntrack (its mark could not be read: carried unclassed).");
	metrics_u64(b, "gw_agent_class_resets_total", "reason=\"no_line\"", t.class_no_line);
	metrics_u64(b, "gw_agent_class_resets_total", "reason=\"conntrack\"", t.class_errors);
	metrics_one(b, "gw_agent_web_requests_total", "counter",
		    "Requests to the household's page (web-listen).", atomic_load(&a->web_requests));
	metrics_one(b, "gw_agent_web_refused_total", "counter",
		    "Page requests refused for a missing or wrong token.", atomic_load(&a->web_refused));
	{
		struct agent_speedtests *sp = &a->speedtests;
		uint64_t runs, fails;

		pthread_mutex_lock(&sp->lock);
		runs = sp->runs;
		fails = sp->failures;
		metrics_head(b, "gw_agent_speedtest_bits_per_second", "gauge",
			     "Each line's last measured capacity (gw-agent speedtest), by direction.");
		for (unsigned i = 0; i < PATHS_MAX; i++) {
			const struct speedtest_result *r = &sp->r[i];
			char n[128];

			if (!r->name[0] || !r->down_bps)
				continue;
			metrics_label(r->name, n, sizeof(n));
			snprintf(l, sizeof(l), "path=\"%s\",direction=\"down\"", n);
			metrics_u64(b, "gw_agent_speedtest_bits_per_second", l, r->down_bps);
			snprintf(l, sizeof(l), "path=\"%s\",direction=\"up\"", n);
			metrics_u64(b, "gw_agent_speedtest_bits_per_second", l, r->up_bps);
		}
		pthread_mutex_unlock(&sp->lock);
		metrics_head(b, "gw_agent_speedtests_total", "counter",
			     "Speed tests asked for, by result (failed: refused here or by the "
			     "concentrator, or no figure).");
		metrics_u64(b, "gw_agent_speedtests_total", "result=\"ok\"", runs - fails);
		metrics_u64(b, "gw_agent_speedtests_total", "result=\"failed\"", fails);
	}
	metrics_head(b, "gw_agent_info", "gauge", "Version of the running agent.");
	metrics_u64(b, "gw_agent_info", "version=\"" AGENT_VERSION "\"", 1);
	metrics_head(b, "gw_agent_path_up", "gauge",
		     "1 when the path can carry subflows (carrier, address, gateway, probes).");
	for (unsigned i = 0; i < npm; i++) {
		snprintf(l, sizeof(l), "path=\"%s\",family=\"%s\",mode=\"%s\"",
			 metrics_label(pm[i].name, e1, sizeof(e1)),
			 pm[i].family == AF_INET6 ? "ipv6" : "ipv4", pm[i].mode);
		metrics_u64(b, "gw_agent_path_up", l, pm[i].usable);
	}
	metrics_head(b, "gw_agent_path_state", "gauge",
		     "The path's state as gw-agent status shows it (value always 1).");
	for (unsigned i = 0; i < npm; i++) {
		snprintf(l, sizeof(l), "path=\"%s\",family=\"%s\",state=\"%s\"",
			 metrics_label(pm[i].name, e1, sizeof(e1)),
			 pm[i].family == AF_INET6 ? "ipv6" : "ipv4",
			 metrics_label(pm[i].state, e2, sizeof(e2)));
		metrics_u64(b, "gw_agent_path_state", l, 1);
	}
	{
		bool any = false;

		for (unsigned i = 0; i < npm; i++)
			any |= pm[i].cap_bytes != 0;
		if (any) {
			static const char *const name[3] = { "gw_agent_cap_bytes",
				"gw_agent_cap_used_bytes", "gw_agent_cap_reached_percent" };
			static const char *const help[3] = {
				"A line's data cap per billing cycle (path cap=), bytes.",
				"What the line carried this cycle, both ways, bytes.",
				/* one literal: clang takes a split one in an array for a
				 * missing comma */
				"The highest threshold (at=) the line reached this cycle, percent of its cap; 0: none." };

			/* One group per metric, as the exposition format wants. */
			for (int m = 0; m < 3; m++) {
				metrics_head(b, name[m], "gauge", help[m]);
				for (unsigned i = 0; i < npm; i++) {
					if (!pm[i].cap_bytes)
						continue;
					snprintf(l, sizeof(l), "path=\"%s\"",
						 metrics_label(pm[i].name, e1, sizeof(e1)));
					metrics_u64(b, name[m], l, m == 0 ? pm[i].cap_bytes :
						    m == 1 ? pm[i].cap_used : pm[i].cap_pct);
				}
			}
		}
	}
	metrics_head(b, "gw_agent_path_endpoint", "gauge",
		     "1 when the agent keeps an MPTCP endpoint on the path's address (--endpoints "
		     "agent: when it opens joins from it).");
	for (unsigned i = 0; i < npm; i++) {
		snprintf(l, sizeof(l), "path=\"%s\",family=\"%s\"",
			 metrics_label(pm[i].name, e1, sizeof(e1)),
			 pm[i].family == AF_INET6 ? "ipv6" : "ipv4");
		metrics_u64(b, "gw_agent_path_endpoint", l, pm[i].endpoint);
	}
	metrics_head(b, "gw_agent_path_manager_joins_total", "counter",
		     "Joins the agent opened as the path manager (--endpoints agent), by outcome: "
		     "opened (as backup), promoted (made active 100 ms after established), "
		     "failed (the kernel refused to open), closed (path down or gone).");
	{
		const struct upm_stats *u = &a->paths.upm.st;
		static const char *const what[] = { "opened", "promoted", "failed", "closed" };
		const atomic_uint_fast64_t *v[] = { &u->joins, &u->promoted, &u->join_errors,
						    &u->destroyed };

		for (unsigned k = 0; k < 4; k++) {
			snprintf(l, sizeof(l), "outcome=\"%s\"", what[k]);
			metrics_u64(b, "gw_agent_path_manager_joins_total", l,
				    atomic_load_explicit(v[k], memory_order_relaxed));
		}
		metrics_one(b, "gw_agent_path_manager_connections_total", "counter",
			    "MPTCP connections from the paths' addresses the agent has managed.",
			    atomic_load_explicit(&u->conns, memory_order_relaxed));
		metrics_one(b, "gw_agent_path_manager_short_connections_total", "counter",
			    "MPTCP connections that ended before --join-after: they had one "
			    "subflow, and no join was opened for them.",
			    atomic_load_explicit(&u->short_lived, memory_order_relaxed));
		metrics_one(b, "gw_agent_path_manager_event_losses_total", "counter",
			    "Times the kernel dropped MPTCP events for the agent (its queue "
			    "overran): connections then may use fewer paths, never wrong bytes.",
			    atomic_load_explicit(&u->events_lost, memory_order_relaxed));
	}
	metrics_head(b, "gw_agent_path_mptcp", "gauge",
		     "1 when MPTCP probes get through the path's network, 0 when it strips or "
		     "drops MPTCP (no subflows there); absent until known.");
	for (unsigned i = 0; i < npm; i++) {
		if (pm[i].mptcp == PATH_MPTCP_UNKNOWN)
			continue;
		snprintf(l, sizeof(l), "path=\"%s\",family=\"%s\"",
			 metrics_label(pm[i].name, e1, sizeof(e1)),
			 pm[i].family == AF_INET6 ? "ipv6" : "ipv4");
		metrics_u64(b, "gw_agent_path_mptcp", l, pm[i].mptcp == PATH_MPTCP_YES);
	}
	metrics_head(b, "gw_agent_path_reconciles_total", "counter",
		     "Times the paths' routes, rules and endpoints were brought in line with the "
		     "links and addresses (after events, and every 2 s).");
	metrics_u64(b, "gw_agent_path_reconciles_total", "",
		    atomic_load_explicit(&a->paths.reconciles, memory_order_relaxed));
	metrics_head(b, "gw_agent_path_probe_rtt_seconds", "gauge",
		     "Round trip of the last successful probe to the concentrator (live paths).");
	for (unsigned i = 0; i < npm; i++) {
		if (!pm[i].probe_rtt_us)
			continue;
		snprintf(l, sizeof(l), "path=\"%s\",family=\"%s\"",
			 metrics_label(pm[i].name, e1, sizeof(e1)),
			 pm[i].family == AF_INET6 ? "ipv6" : "ipv4");
		metrics_f64(b, "gw_agent_path_probe_rtt_seconds", l, pm[i].probe_rtt_us / 1e6);
	}
	metrics_head(b, "gw_agent_path_bytes_total", "counter",
		     "Bytes through the path's interface (all traffic, as the kernel counts it); "
		     "a neighbour's path: what went through that neighbour.");
	for (unsigned i = 0; i < npm; i++) {
		uint64_t rx, tx;

		if (i && !strcmp(pm[i].name, pm[i - 1].name))
			continue;  /* one interface, two families */
		control_path_bytes(pm[i].ifname, pm[i].neighbour, &pm[i].src, &cc, &rx, &tx);
		metrics_label(pm[i].name, e1, sizeof(e1));
		snprintf(l, sizeof(l), "path=\"%s\",direction=\"rx\"", e1);
		metrics_u64(b, "gw_agent_path_bytes_total", l, rx);
		snprintf(l, sizeof(l), "path=\"%s\",direction=\"tx\"", e1);
		metrics_u64(b, "gw_agent_path_bytes_total", l, tx);
	}
	metrics_one(b, "gw_agent_flows_active", "gauge", "LAN flows open now.",
		    active);
	metrics_one(b, "gw_agent_flows_intercepted_total", "counter", "LAN TCP connections intercepted.",
		    t.intercepted);
	metrics_head(b, "gw_agent_flows_total", "counter",
		     "Intercepted flows by how they were carried: via a concentrator, directly "
		     "(no concentrator reachable), or failed (reset).");
	metrics_u64(b, "gw_agent_flows_total", "via=\"concentrator\"", t.via_concentrator);
	metrics_u64(b, "gw_agent_flows_total", "via=\"direct\"", t.fallback_direct);
	metrics_u64(b, "gw_agent_flows_total", "via=\"failed\"", t.failed);
	metrics_one(b, "gw_agent_flows_fallen_back_total", "counter",
		    "Flows whose MPTCP connection fell back to plain TCP (one path, no failover); "
		    "each makes the kernel forget the concentrator's TFO cookie.",
		    t.fell_back);
	if (cfg.mesh.borrow_if[0])
		mesh_results_metric(b, "gw_agent_mesh_announcements_total",
				    "Mesh announcements received, by what became of them (ok, or why "
				    "refused).", mesh_results);
	if (cfg.mesh.lend_if[0]) {
		mesh_results_metric(b, "gw_agent_mesh_borrow_requests_total",
				    "Borrow requests received as a lender, by what became of them (ok, "
				    "or why refused).", mesh_req_results);
		metrics_one(b, "gw_agent_mesh_borrowers", "gauge",
			    "Borrowers whose borrow addresses we forward now (verified requests; "
			    "0 without a mesh key, when any borrow address is forwarded).",
			    mesh_borrowers);
	}
	metrics_head(b, "gw_agent_accept_pauses_total", "counter",
		     "Times accepting paused for want of descriptors, by socket.");
	metrics_u64(b, "gw_agent_accept_pauses_total", "socket=\"lan\"", t.accept_paused);
	metrics_u64(b, "gw_agent_accept_pauses_total", "socket=\"status\"",
		    atomic_load(&a->control_pauses));
	metrics_one(b, "gw_agent_host_limit_hits_total", "counter",
		    "LAN connections reset because their address had max_flows_per_host open.",
		    t.host_limit_hits);
	{
		int64_t dev = intercept_device_limit_hits();

		if (dev >= 0)
			metrics_one(b, "gw_agent_device_limit_hits_total", "counter",
				    "New LAN connections reset by nftables because their device (MAC "
				    "address) had max_flows_per_host open, whatever its addresses.",
				    (uint64_t)dev);
	}
	metrics_one(b, "gw_agent_fallbacks_direct_total", "counter",
		    "Flows that went directly because no concentrator answered.",
		    t.fallback_direct);
	metrics_one(b, "gw_agent_fallbacks_refused_total", "counter",
		    "Flows reset instead of going directly: their destination is not the public "
		    "Internet, or no own path is up (the router's own connection would pass by "
		    "its forwarding firewall).",
		    t.fallback_refused);
	metrics_head(b, "gw_agent_concentrator_up", "gauge",
		     "Concentrator reachability: 1 reached, 0 not, from the last connect or probe.");
	metrics_head(b, "gw_agent_concentrator_connects_total", "counter",
		     "Connections to each concentrator, by result.");
	for (unsigned k = 0; k < cfg.nconc; k++) {
		char ca[ADDR_STRLEN];
		int up_state = atomic_load_explicit(&a->conc_up[k], memory_order_relaxed);

		addr_format((const struct sockaddr *)&cfg.conc[k], ca);
		snprintf(l, sizeof(l), "concentrator=\"%s\"", ca);
		if (up_state >= 0)
			metrics_u64(b, "gw_agent_concentrator_up", l, (uint64_t)up_state);
		snprintf(l, sizeof(l), "concentrator=\"%s\",result=\"ok\"", ca);
		metrics_u64(b, "gw_agent_concentrator_connects_total", l, t.conc_ok[k]);
		snprintf(l, sizeof(l), "concentrator=\"%s\",result=\"failed\"", ca);
		metrics_u64(b, "gw_agent_concentrator_connects_total", l, t.conc_failed[k]);
	}
	metrics_head(b, "gw_agent_concentrator_errors_total", "counter",
		     "RFC 8803 Error replies received, by code.");
	for (unsigned k = 0; k < 256; k++) {
		const char *name = convert_error_name(k);

		if (!strcmp(name, "unknown") && !t.conc_errors[k])
			continue;
		snprintf(l, sizeof(l), "code=\"%u\",reason=\"%s\"", k, name);
		metrics_u64(b, "gw_agent_concentrator_errors_total", l, t.conc_errors[k]);
	}
	metrics_head(b, "gw_agent_bytes_total", "counter",
		     "Bytes relayed: up = LAN to Internet, down = Internet to LAN.");
	metrics_u64(b, "gw_agent_bytes_total", "direction=\"up\"", up);
	metrics_u64(b, "gw_agent_bytes_total", "direction=\"down\"", down);
	metrics_parked(b, "gw_agent", st.parked, st.parked_bytes, st.parked_refused);
	metrics_verified(b, "gw_agent", st.verified, st.vs_damaged, st.vs_broken, st.vs_whole,
			 st.vs_gathered);
	metrics_head(b, "gw_agent_config_reloads_total", "counter", "SIGHUP reloads, by result.");
	metrics_u64(b, "gw_agent_config_reloads_total", "result=\"ok\"", a->reloads_ok);
	metrics_u64(b, "gw_agent_config_reloads_total", "result=\"failed\"", a->reloads_failed);
	if (ovf.configured || ovf.switches) {
		static const char *const dir[2] = { "down", "up" };

		metrics_head(b, "gw_agent_overflow_active", "gauge",
			     "1 while the overflow lines (path mode=overflow) carry data: the on and "
			     "master lines are full.");
		metrics_u64(b, "gw_agent_overflow_active", "", ovf.active);
		metrics_head(b, "gw_agent_overflow_switches_total", "counter",
			     "Overflow lines made active, and backup again, each counted.");
		metrics_u64(b, "gw_agent_overflow_switches_total", "", ovf.switches);
		metrics_head(b, "gw_agent_overflow_bits_per_second", "gauge",
			     "Last second: what the usable on and master lines carry at most "
			     "(capacity), what they carried (unmetered), what the overflow lines "
			     "carried (overflow).");
		for (int d = 0; d < 2; d++) {
			snprintf(l, sizeof(l), "lines=\"capacity\",direction=\"%s\"", dir[d]);
			metrics_u64(b, "gw_agent_overflow_bits_per_second", l, ovf.cap_bps[d]);
			snprintf(l, sizeof(l), "lines=\"unmetered\",direction=\"%s\"", dir[d]);
			metrics_u64(b, "gw_agent_overflow_bits_per_second", l, ovf.use_bps[d]);
			snprintf(l, sizeof(l), "lines=\"overflow\",direction=\"%s\"", dir[d]);
			metrics_u64(b, "gw_agent_overflow_bits_per_second", l, ovf.ovf_bps[d]);
		}
	}
	agent_udp_render_metrics(a, b);
}

void agent_log_summary(struct agent *a)
{
	struct agent_counters t;
	struct relay_stats st;
	uint64_t up, down;

	agent_totals(a, &t, &st);
	up = st.bytes[0];
	down = st.bytes[1];
	log_info("intercepted %llu: via concentrator %llu, direct fallback %llu, failed %llu; "
		 "bytes up %llu down %llu",
		 (unsigned long long)t.intercepted, (unsigned long long)t.via_concentrator,
		 (unsigned long long)t.fallback_direct, (unsigned long long)t.failed,
		 (unsigned long long)up,
		 (unsigned long long)down);
	for (int k = 0; k < 256; k++)
		if (t.conc_errors[k])
			log_info("concentrator error %d %s: %llu", k,
				 convert_error_name((unsigned)k),
				 (unsigned long long)t.conc_errors[k]);
}

