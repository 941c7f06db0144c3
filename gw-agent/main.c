/* gw-agent: on a home router, intercepts LAN TCP (nftables TPROXY) and
 * carries each flow over one MPTCP connection to an RFC 8803 concentrator,
 * falling back to a direct connection when no concentrator answers.
 *
 * main() parses options, installs the interception, runs one worker per
 * core (each with its own io_uring and IP_TRANSPARENT listener) and on
 * SIGTERM/SIGINT drains flows, then removes the interception. */
#include "agent.h"
#include "settings.h"
#include "config.h"
#include "metrics.h"
#include "opts.h"
#include "sock.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include "sdnotify.h"
#include <unistd.h>


static const struct relay_ops agent_relay_ops = {
	.handle = flow_handle,
	.on_close = flow_close,
	.on_free = flow_free,
};

/* IP_TRANSPARENT lets the listener accept connections addressed to any
 * destination: TPROXY hands them over with their original addresses. */
static int listener_open(uint16_t port)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port),
				  .sin6_addr = IN6ADDR_ANY_INIT };
	int fd, one = 1, zero = 0;

	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0 ||
	    setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4096) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

void agent_arm_accept(struct agent_worker *aw)
{
	struct io_uring_sqe *sqe = relay_sqe(&aw->rw, NULL, AOP_ACCEPT);

	if (!sqe)
		return;
	io_uring_prep_multishot_accept(sqe, aw->lfd, NULL, NULL, SOCK_CLOEXEC);
	aw->accept_armed = true;
}

static void report_ready(struct agent_worker *aw, int result)
{
	struct agent *a = aw->a;

	pthread_mutex_lock(&a->ready_lock);
	aw->init_result = result;
	a->ready++;
	pthread_cond_broadcast(&a->ready_cond);
	pthread_mutex_unlock(&a->ready_lock);
}

static void stop_accepting(struct relay_worker *w)
{
	struct agent_worker *aw = w->owner;

	shutdown(aw->lfd, SHUT_RDWR);
	close(aw->lfd);
	aw->lfd = -1;
	aw->listening = false;
}

static void resume_accepting(struct relay_worker *w)
{
	struct agent_worker *aw = w->owner;

	if (!aw->accept_armed)
		agent_arm_accept(aw);
}

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
		ret_n->failed += n->failed;
		ret_n->host_limit_hits += n->host_limit_hits;
		ret_n->fell_back += n->fell_back;
		ret_n->accept_paused += n->accept_paused;
		for (int k = 0; k < 256; k++)
			ret_n->conc_errors[k] += n->conc_errors[k];
		for (int k = 0; k < AGENT_MAX_CONC; k++) {
			ret_n->conc_ok[k] += n->conc_ok[k];
			ret_n->conc_failed[k] += n->conc_failed[k];
		}
		relay_stats_add(ret_s, st);
	}
}

void agent_worker_refresh(struct agent_worker *aw)
{
	struct agent *a = aw->a;
	unsigned gen = atomic_load(&a->cfg_gen);

	if (gen == aw->cfg_gen)
		return;
	pthread_mutex_lock(&a->cfg_lock);
	aw->cfg = a->cfg;
	aw->cfg_gen = gen;
	pthread_mutex_unlock(&a->cfg_lock);
	atomic_store(&aw->cfg_seen, gen);
}

/* After a reload: wait (a worker tick, 250 ms; at most 1 s) until every
 * worker runs with the new settings, so that "reloaded" (and systemd's
 * READY=1) means new flows use them: a rotated key, above all. */
static void wait_workers_refreshed(struct agent *a)
{
	unsigned gen = atomic_load(&a->cfg_gen);

	for (int i = 0; i < 100; i++) {
		unsigned k = 0;

		while (k < a->nworkers && atomic_load(&a->workers[k].cfg_seen) == gen)
			k++;
		if (k == a->nworkers)
			return;
		usleep(10000);
	}
	log_warn("reload: a worker has not picked up the new settings after 1 s");
}

static void tick(struct relay_worker *w)
{
	struct agent_worker *aw = w->owner;

	atomic_fetch_add_explicit(&aw->heartbeat, 1, memory_order_relaxed);
	agent_worker_refresh(aw);
	flow_tick(aw);
	control_worker_tick(aw);
}

static const struct relay_loop_ops agent_loop_ops = {
	.stop_accepting = stop_accepting,
	.resume_accepting = resume_accepting,
	.tick = tick,
};

static void *worker_main(void *arg)
{
	struct agent_worker *aw = arg;
	struct agent *a = aw->a;
	const struct agent_config *cfg = &a->cfg;
	int r;

	aw->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT(20, 1000);
	aw->lfd = -1;
	aw->cfg_gen = ~0u;
	agent_worker_refresh(aw);
	r = relay_worker_init(&aw->rw, &agent_relay_ops, aw, 1024, cfg->nbufs,
			      cfg->bufsize, cfg->max_flows);
	if (r < 0) {
		log_errno(r, "worker %u: io_uring setup: %m%s", aw->id, ring_setup_why(r));
		report_ready(aw, r);
		return NULL;
	}
	r = listener_open(cfg->port);
	if (r < 0) {
		log_errno(r, "TPROXY listener on port %u: %m", cfg->port);
		relay_worker_free(&aw->rw);
		report_ready(aw, r);
		return NULL;
	}
	aw->lfd = r;
	agent_arm_accept(aw);
	aw->listening = true;
	report_ready(aw, 0);

	/* Flows get 2 s to finish: interception is already off by then. */
	r = relay_worker_run(&aw->rw, &agent_loop_ops, &a->stopping, 2000, &aw->accept_paused);
	if (r < 0)
		log_errno(r, "worker %u: io_uring wait: %m", aw->id);
	if (aw->lfd >= 0)
		close(aw->lfd);
	relay_worker_abandon(&aw->rw);  /* after a failed wait */
	relay_worker_free(&aw->rw);
	return NULL;
}

/* Main thread: copy what metrics show of the paths (they are ours). */
static void paths_snapshot(struct agent *a)
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
			/* The probes talk to the first concentrator. */
			if ((a->paths.probe_to.ss_family == AF_INET6) == (fi == 1) &&
			    f->have_addr && p->mode != PATH_OFF && ps->probe_interval_ms) {
				conc0_seen = true;
				conc0_up |= f->usable && f->probe_rtt_us;
			}
		}
	a->npm = n;
	pthread_mutex_unlock(&a->snap_lock);
	if (conc0_seen)
		atomic_store_explicit(&a->conc_up[0], conc0_up ? 1 : 0, memory_order_relaxed);
}

static void render_metrics(void *ctx, struct mbuf *b)
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

	pthread_mutex_lock(&a->snap_lock);
	npm = a->npm;
	memcpy(pm, a->pm, sizeof(pm));
	pthread_mutex_unlock(&a->snap_lock);
	pthread_mutex_lock(&a->cfg_lock);
	cfg = a->cfg;
	pthread_mutex_unlock(&a->cfg_lock);
	agent_totals(a, &t, &st);
	up = st.bytes[0];
	down = st.bytes[1];
	active = st.active;
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
	metrics_head(b, "gw_agent_path_endpoint", "gauge",
		     "1 when the agent keeps an MPTCP endpoint on the path's address.");
	for (unsigned i = 0; i < npm; i++) {
		snprintf(l, sizeof(l), "path=\"%s\",family=\"%s\"",
			 metrics_label(pm[i].name, e1, sizeof(e1)),
			 pm[i].family == AF_INET6 ? "ipv6" : "ipv4");
		metrics_u64(b, "gw_agent_path_endpoint", l, pm[i].endpoint);
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
	metrics_head(b, "gw_agent_accept_pauses_total", "counter",
		     "Times accepting paused for want of descriptors, by socket.");
	metrics_u64(b, "gw_agent_accept_pauses_total", "socket=\"lan\"", t.accept_paused);
	metrics_u64(b, "gw_agent_accept_pauses_total", "socket=\"status\"",
		    atomic_load(&a->control_pauses));
	metrics_one(b, "gw_agent_host_limit_hits_total", "counter",
		    "LAN connections reset because their device had max_flows_per_host open.",
		    t.host_limit_hits);
	metrics_one(b, "gw_agent_fallbacks_direct_total", "counter",
		    "Flows that went directly because no concentrator answered.",
		    t.fallback_direct);
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
	metrics_parked(b, "gw_agent", st.parked, st.parked_bytes);
	metrics_head(b, "gw_agent_config_reloads_total", "counter", "SIGHUP reloads, by result.");
	metrics_u64(b, "gw_agent_config_reloads_total", "result=\"ok\"", a->reloads_ok);
	metrics_u64(b, "gw_agent_config_reloads_total", "result=\"failed\"", a->reloads_failed);
}

static void notify_status(struct agent *a)
{
	char paths[256] = "";
	struct agent_counters t;
	struct relay_stats st;
	uint64_t active, flows;
	size_t o = 0;

	agent_totals(a, &t, &st);
	active = st.active;
	flows = t.intercepted;
	for (unsigned i = 0; i < a->paths.n && o < sizeof(paths); i++) {
		const struct path *p = &a->paths.p[i];
		bool up = p->f[0].usable || p->f[1].usable;

		o += (size_t)snprintf(paths + o, sizeof(paths) - o, "%s%s %s", i ? ", " : "",
				      p->ifname, p->mode == PATH_OFF ? "off" : up ? "up" : "down");
	}
	sd_notifyf(0, "STATUS=%llu flows active, %llu intercepted; paths: %s",
		   (unsigned long long)active, (unsigned long long)flows,
		   a->paths.n ? paths : "none configured");
}

static bool workers_alive(struct agent *a, uint64_t *seen)
{
	bool ok = true;

	for (unsigned i = 0; i < a->cfg.workers; i++) {
		uint64_t h = atomic_load_explicit(&a->workers[i].heartbeat, memory_order_relaxed);

		if (h == seen[i])
			ok = false;
		seen[i] = h;
	}
	return ok;
}

static bool same_addr(const struct sockaddr_storage *x, socklen_t xl,
		      const struct sockaddr_storage *y, socklen_t yl)
{
	return xl == yl && !memcmp(x, y, xl);
}

/* SIGHUP: read everything again; apply what can change without touching a
 * running flow, name what needs a restart, keep everything on errors. */
static void reload(struct agent *a, int argc, char **argv)
{
	struct agent_config n;
	struct paths *want = calloc(1, sizeof(*want));
	struct agent_config *cur = &a->cfg;
	char changed[256] = "";
	bool nft;
	int pc;

	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)log_now_us());
	if (!want || agent_load_settings(argc, argv, &n, want) < 0) {
		a->reloads_failed++;
		log_error("reload: %s has errors (above); still running with the previous configuration",
			  cur->config_path[0] ? cur->config_path : "the command line");
		free(want);
		sd_notify(0, "READY=1");
		return;
	}
	intercept_add_lan_prefixes(&n);
	optable_restart_changes(&agent_optable, cur, &n, changed, sizeof(changed));
#define RESTART_ONLY(cond, what) \
	if (cond) snprintf(changed + strlen(changed), sizeof(changed) - strlen(changed), "%s%s", \
			   changed[0] ? ", " : "", what)
	RESTART_ONLY(!same_addr(&n.metrics, n.metrics_len, &cur->metrics, cur->metrics_len),
		     "metrics_listen");
	RESTART_ONLY(want->manage_endpoints != a->paths.manage_endpoints, "endpoints");
	RESTART_ONLY(memcmp(&n.mesh, &cur->mesh, sizeof(n.mesh)), "mesh/lend");
#undef RESTART_ONLY
	if (changed[0])
		log_warn("reload: %s changed but take%s effect only after a restart",
			 changed, strchr(changed, ',') ? "" : "s");
	/* Restart-only values stay as they are. */
	optable_restart_keep(&agent_optable, &n, cur);
	n.max_flows = cur->max_flows;
	n.metrics = cur->metrics;
	n.metrics_len = cur->metrics_len;
	n.mesh = cur->mesh;

	nft = n.nlan != cur->nlan || memcmp(n.lan, cur->lan, sizeof(n.lan)) ||
	      n.nbypass != cur->nbypass ||
	      memcmp(n.bypass, cur->bypass, n.nbypass * sizeof(n.bypass[0])) ||
	      n.block_quic != cur->block_quic;
	if (nft && intercept_update(&n) < 0) {
		/* Keep the old interception settings with the old table. */
		n.nlan = cur->nlan;
		memcpy(n.lan, cur->lan, sizeof(n.lan));
		n.nbypass = cur->nbypass;
		memcpy(n.bypass, cur->bypass, sizeof(n.bypass));
		n.block_quic = cur->block_quic;
	}
	pthread_mutex_lock(&a->cfg_lock);
	*cur = n;
	pthread_mutex_unlock(&a->cfg_lock);
	quota_set(&a->hosts, QUOTA_FLOW, 0, n.max_per_host);
	atomic_fetch_add(&a->cfg_gen, 1);
	wait_workers_refreshed(a);
	log_set_level(n.log_level);

	pc = 0;
	a->paths.key = cur->keyed ? &cur->key : NULL;
	if (a->paths.n || want->n) {
		a->paths.probe_to = cur->conc[0];
		a->paths.probe_to_len = cur->conc_len[0];
		pc = paths_update(&a->paths, want);
		a->paths.probe_timeout_ms = a->paths.probe_interval_ms * 3 / 4;
		if (a->paths.rt_open)
			paths_reconcile(&a->paths);
	}
	free(want);
	a->reloads_ok++;
	log_info("reloaded %s: %u concentrator%s, %u paths (%d changed)%s",
		 cur->config_path[0] ? cur->config_path : "(no file; command line)",
		 cur->nconc, cur->nconc == 1 ? "" : "s", a->paths.n, pc,
		 nft ? ", interception table replaced" : "");
	sd_notify(0, "READY=1");
}

/* Our own line, for lending: one of our own (not borrowed) paths can carry
 * flows; with no paths configured, the main table's route is the line and
 * taken as up. */
static bool own_line_up(const struct paths *ps)
{
	bool any = false;

	for (unsigned i = 0; i < ps->n; i++) {
		const struct path *p = &ps->p[i];

		if (p->neighbour || p->mode == PATH_OFF)
			continue;
		any = true;
		if (p->f[0].usable || p->f[1].usable)
			return true;
	}
	return !any;
}

/* The main thread: signals, link/address/route events for the paths (a
 * burst is reconciled 50 ms after its last event, and everything every 2 s
 * regardless), probes, status requests, the STATUS line and the watchdog. */
static void run_loop(struct agent *a, int argc, char **argv, const sigset_t *sigs)
{
	int sfd = signalfd(-1, sigs, SFD_CLOEXEC);
	uint64_t due = 0, periodic = log_now_ms() + 2000, probe_next = 0, mesh_next = 0;
	uint64_t wd_usec = 0, wd_every = 0, wd_next = 0, status_next = 0;
	uint64_t *seen = calloc(a->cfg.workers, sizeof(*seen));

	if (sd_watchdog_enabled(0, &wd_usec) > 0)
		wd_every = wd_usec / 2000 ? wd_usec / 2000 : 1;
	for (;;) {
		struct pollfd pf[4 + 2 * PATHS_MAX] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = paths_event_fd(&a->paths), .events = POLLIN },
			{ .fd = log_now_ms() < a->control_paused_until ? -1 : a->control_fd,
			  .events = POLLIN },
			{ .fd = mesh_fd(&a->mesh), .events = POLLIN },
		};
		unsigned np = paths_probe_fds(&a->paths, pf + 4, 2 * PATHS_MAX);
		uint64_t now = log_now_ms(), next = due ? due : periodic;
		int timeout;

		if (a->paths.n && probe_next && probe_next < next)
			next = probe_next;
		if (pf[2].fd < 0 && a->control_fd >= 0 && a->control_paused_until < next)
			next = a->control_paused_until;
		if (wd_every && wd_next < next)
			next = wd_next;
		if (status_next < next)
			next = status_next;
		if (mesh_next && mesh_next < next)
			next = mesh_next;
		timeout = next > now ? (int)(next - now) : 0;
		if (poll(pf, 4 + np, timeout) < 0 && errno != EINTR)
			break;
		if (pf[2].revents & POLLIN)
			control_accept(a);
		if (pf[3].fd >= 0 && (pf[3].revents & POLLIN) && mesh_receive(&a->mesh))
			mesh_next = log_now_ms();  /* a neighbour came or withdrew: now */
		if ((a->mesh.rx_fd >= 0 || a->mesh.tx_fd >= 0) && log_now_ms() >= mesh_next &&
		    mesh_tick(&a->mesh, &a->paths, own_line_up(&a->paths), log_now_ms(), &mesh_next))
			due = log_now_ms();
		if (a->paths.n && paths_probe_run(&a->paths, pf + 4, np, log_now_ms(), &probe_next))
			due = log_now_ms();  /* a path died or came back: now */
		if (pf[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGHUP) {
					reload(a, argc, argv);
				} else {
					log_info("%s: stopping", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
					sd_notify(0, "STOPPING=1");
					break;
				}
			}
		}
		if (pf[1].fd >= 0 && (pf[1].revents & POLLIN) &&
		    paths_events_drain(&a->paths) > 0)
			due = log_now_ms() + 50;
		now = log_now_ms();
		if (a->paths.n && ((due && now >= due) || now >= periodic)) {
			paths_reconcile(&a->paths);
			due = 0;
			periodic = now + 2000;
		}
		paths_snapshot(a);
		if (wd_every && now >= wd_next) {
			if (seen && workers_alive(a, seen))
				sd_notify(0, "WATCHDOG=1");
			wd_next = now + wd_every;
		}
		if (now >= status_next) {
			notify_status(a);
			status_next = now + 5000;
		}
	}
	free(seen);
	if (sfd >= 0)
		close(sfd);
}

static void log_summary(struct agent *a)
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

int main(int argc, char **argv)
{
	struct agent *a;
	sigset_t sigs;
	bool explicit_file, check;
	int r;

	log_init("gw-agent");
	if (argc >= 2 && !strcmp(argv[1], "status")) {
		const char *path = AGENT_CONTROL_PATH;

		if (argc == 4 && !strcmp(argv[2], "--control"))
			path = argv[3];
		else if (argc == 3 && !strncmp(argv[2], "--control=", 10))
			path = argv[2] + 10;
		else if (argc != 2) {
			fprintf(stderr, "Usage: gw-agent status [--control PATH]\n");
			return 2;
		}
		return control_status(path);
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return 1;
	a->started_ms = log_now_ms();
	a->control_fd = -1;
	for (unsigned k = 0; k < AGENT_MAX_CONC; k++)
		atomic_init(&a->conc_up[k], -1);
	pthread_mutex_init(&a->snap_lock, NULL);
	pthread_cond_init(&a->snap_cond, NULL);
	pthread_mutex_init(&a->cfg_lock, NULL);
	config_prescan(argc, argv, AGENT_CONFIG_PATH, &explicit_file, &check);
	if (agent_load_settings(argc, argv, &a->cfg, &a->paths) < 0) {
		free(a);
		return 2;
	}
	if (check) {
		printf("gw-agent: configuration OK (%s%s)\n",
		       a->cfg.config_path[0] ? a->cfg.config_path : "no config file",
		       a->cfg.config_path[0] ? " and the command line" : ", command line only");
		free(a);
		return 0;
	}
	log_set_level(a->cfg.log_level);
	if (*sock_mptcp_why()) {
		log_error("cannot carry flows over MPTCP: %s", sock_mptcp_why());
		free(a);
		return 1;
	}
	a->mptcp_tfo = sock_mptcp_fastopen();
	if (!a->mptcp_tfo)
		log_warn("this kernel (%s) has no TCP Fast Open for MPTCP (Linux 6.2+): each flow's "
			 "Convert message follows the handshake, one round trip more",
			 kernel_release());
	a->cfg.max_flows = opt_fit_fd_limit();
	if (quota_init(&a->hosts, 128) < 0)
		return 1;
	quota_set(&a->hosts, QUOTA_FLOW, 0, a->cfg.max_per_host);
	r = intercept_add_lan_prefixes(&a->cfg);
	if (r < 0)
		log_errno(r, "cannot read LAN addresses: %m");

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	pthread_mutex_init(&a->ready_lock, NULL);
	pthread_cond_init(&a->ready_cond, NULL);
	a->workers = calloc(a->cfg.workers, sizeof(*a->workers));
	if (!a->workers)
		return 1;
	a->nworkers = a->cfg.workers;
	for (unsigned i = 0; i < a->cfg.workers; i++) {
		a->workers[i].a = a;
		a->workers[i].id = i;
		if (pthread_create(&a->workers[i].thread, NULL, worker_main, &a->workers[i])) {
			log_error("cannot start worker %u", i);
			return 1;
		}
	}
	pthread_mutex_lock(&a->ready_lock);
	while (a->ready < a->cfg.workers)
		pthread_cond_wait(&a->ready_cond, &a->ready_lock);
	pthread_mutex_unlock(&a->ready_lock);
	r = 0;
	for (unsigned i = 0; i < a->cfg.workers; i++)
		if (a->workers[i].init_result < 0)
			r = a->workers[i].init_result;
	/* Listeners first, then the rules that feed them, so no intercepted
	 * connection ever finds nobody listening. */
	if (r == 0)
		r = intercept_install(&a->cfg);
	if (r == 0) {
		char c0[ADDR_STRLEN];

		log_info("intercepting TCP on %s%s (port %u) via %s%s; fallback %s; QUIC %s",
			 a->cfg.lan[0], a->cfg.nlan > 1 ? " and more" : "", a->cfg.port,
			 addr_format((struct sockaddr *)&a->cfg.conc[0], c0),
			 a->cfg.nconc > 1 ? " (+ backups)" : "",
			 a->cfg.fallback == FALLBACK_DIRECT ? "direct" : "reset",
			 a->cfg.block_quic ? "blocked" : "allowed");
		if (a->paths.n || a->cfg.mesh.borrow_if[0]) {
			/* Probes talk to the first concentrator; a timeout well
			 * under the interval keeps one probe per path in flight. */
			a->paths.probe_to = a->cfg.conc[0];
			a->paths.probe_to_len = a->cfg.conc_len[0];
			a->paths.key = a->cfg.keyed ? &a->cfg.key : NULL;
			a->paths.probe_timeout_ms = a->paths.probe_interval_ms * 3 / 4;
			r = paths_init(&a->paths, a->cfg.table, 10000);
			if (r == 0)
				paths_reconcile(&a->paths);
		}
		a->mesh.cfg = a->cfg.mesh;
		a->mesh.rx_fd = a->mesh.tx_fd = -1;
		if (r == 0 && (a->cfg.mesh.borrow_if[0] || a->cfg.mesh.lend_if[0]))
			r = mesh_start(&a->mesh, &a->cfg.conc[0], a->cfg.conc_len[0],
				       a->paths.n ? a->paths.p[0].ifname : NULL);
	}
	if (r == 0) {
		r = control_open(a);
		if (r < 0)
			log_errno(r, "control socket %s: %m", a->cfg.control_path);
	}
	if (r == 0 && a->cfg.metrics_len) {
		char m[ADDR_STRLEN];

		paths_snapshot(a);
		r = metrics_server_start(&a->metrics, &a->cfg.metrics, a->cfg.metrics_len,
					 render_metrics, a);
		if (r < 0)
			log_errno(r, "metrics on %s: %m", addr_format((struct sockaddr *)&a->cfg.metrics, m));
		else
			log_info("metrics at http://%s/metrics",
				 addr_format((struct sockaddr *)&a->cfg.metrics, m));
	}
	if (r == 0) {
		sd_notify(0, "READY=1");
		run_loop(a, argc, argv, &sigs);
		control_close(a);
		/* Stop intercepting before the listeners close: new LAN
		 * connections go the normal routed way meanwhile. */
		mesh_stop(&a->mesh, &a->paths);
		paths_cleanup(&a->paths);
		intercept_remove(&a->cfg);
	} else {
		mesh_stop(&a->mesh, &a->paths);
		paths_cleanup(&a->paths);
		intercept_remove(&a->cfg);
		control_close(a);
	}
	metrics_server_stop(&a->metrics);
	atomic_store(&a->stopping, 1);
	for (unsigned i = 0; i < a->cfg.workers; i++) {
		pthread_join(a->workers[i].thread, NULL);
		free(a->workers[i].snap);  /* the last status snapshot */
	}
	if (r == 0)
		log_summary(a);
	free(a->workers);
	quota_free(&a->hosts);
	free(a);
	return r < 0 || r > 0 ? 1 : 0;
}
