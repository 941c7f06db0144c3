/* gw-agent: on a home router, intercepts LAN TCP (nftables TPROXY) and
 * carries each flow over one MPTCP connection to an RFC 8803 concentrator,
 * falling back to a direct connection when no concentrator answers.
 *
 * main() parses options, installs the interception, runs one worker per
 * core (each with its own io_uring and IP_TRANSPARENT listener) and on
 * SIGTERM/SIGINT drains flows, then removes the interception. */
#include "agent.h"
#include "ctmark.h"
#include "web.h"
#include "caps.h"
#include "settings.h"
#include "config.h"
#include "daemon.h"
#include "metrics.h"
#include "opts.h"
#include "sock.h"

#include <errno.h>
#include <sys/stat.h>
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
	aw->rw.parked_quota = &aw->a->hosts;
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
	ctmark_close(&aw->ct_nl);
	return NULL;
}

/* The path manager's question: may a flow of class cls have a join on
 * path pi? (main thread) */
static bool class_allow_path(void *ctx, const struct paths *ps, int cls, unsigned pi, int fi)
{
	struct agent *a = ctx;
	const struct path *p = &ps->p[pi];
	uint32_t best = 0;

	if (cls < 0 || (unsigned)cls >= a->cfg.ncls)
		return true;
	for (unsigned i = 0; i < ps->n; i++) {
		const struct path_fam *f = &ps->p[i].f[fi];

		if (ps->p[i].mode != PATH_OFF && f->usable && f->probe_rtt_us &&
		    (!best || f->probe_rtt_us < best))
			best = f->probe_rtt_us;
	}
	return class_allows(&a->cfg.cls[cls], p->ifname, path_name(p), path_is_metered(p),
			    p->f[fi].usable ? p->f[fi].probe_rtt_us : 0, best);
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
	struct agent_classes *wcs = malloc(sizeof(*wcs));
	struct agent_config *cur = &a->cfg;
	char changed[256] = "";
	bool nft, cls;
	int pc;

	daemon_reload_begin();
	if (!want || !wcs || agent_load_settings(argc, argv, &n, want, wcs) < 0) {
		a->reloads_failed++;
		log_error("reload: %s has errors (above); still running with the previous configuration",
			  cur->config_path[0] ? cur->config_path : "the command line");
		free(want);
		free(wcs);
		daemon_reload_end();
		return;
	}
	intercept_add_lan_prefixes(&n);
	optable_restart_changes(&agent_optable, cur, &n, changed, sizeof(changed));
_Static_assert(UPM_MAX_CONC == AGENT_MAX_CONC, "the path manager knows every concentrator");
#define RESTART_ONLY(cond, what) \
	if (cond) snprintf(changed + strlen(changed), sizeof(changed) - strlen(changed), "%s%s", \
			   changed[0] ? ", " : "", what)
	RESTART_ONLY(!same_addr(&n.metrics, n.metrics_len, &cur->metrics, cur->metrics_len),
		     "metrics_listen");
	RESTART_ONLY(want->manage_endpoints != a->paths.manage_endpoints ||
		     want->userspace_pm != a->paths.userspace_pm, "endpoints");
	RESTART_ONLY(want->fullmesh != a->paths.fullmesh, "cluster");
	RESTART_ONLY(memcmp(&n.mesh, &cur->mesh, sizeof(n.mesh)), "mesh/lend");
	RESTART_ONLY((n.udp_mode == AGENT_UDP_OFF) != (cur->udp_mode == AGENT_UDP_OFF) &&
		     !a->paths.fullmesh, "udp on/off");
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
	if ((n.udp_mode == AGENT_UDP_OFF) != (cur->udp_mode == AGENT_UDP_OFF) || a->paths.fullmesh)
		n.udp_mode = cur->udp_mode;

	cls = classes_differ(wcs, &a->classes);
	nft = n.nlan != cur->nlan || memcmp(n.lan, cur->lan, sizeof(n.lan)) ||
	      n.nbypass != cur->nbypass ||
	      memcmp(n.bypass, cur->bypass, n.nbypass * sizeof(n.bypass[0])) ||
	      n.block_quic != cur->block_quic || n.max_per_host != cur->max_per_host ||
	      agent_udp_quic_carried(&n) != agent_udp_quic_carried(cur);
	/* (a class's new line has a slot only after paths_update: then) */
	if (nft && !cls && intercept_update(&n) < 0) {
		/* Keep the old interception settings with the old table. */
		n.nlan = cur->nlan;
		memcpy(n.lan, cur->lan, sizeof(n.lan));
		n.nbypass = cur->nbypass;
		memcpy(n.bypass, cur->bypass, sizeof(n.bypass));
		n.block_quic = cur->block_quic;
		n.max_per_host = cur->max_per_host;
		n.nudp_class = cur->nudp_class;
		memcpy(n.udp_class, cur->udp_class, sizeof(n.udp_class));
	}
	pthread_mutex_lock(&a->cfg_lock);
	*cur = n;
	pthread_mutex_unlock(&a->cfg_lock);
	quota_set(&a->hosts, QUOTA_FLOW, 0, n.max_per_host);
	/* A lender forwards borrowers to the concentrators as they are now. */
	if (a->mesh.lend_installed &&
	    mesh_set_concentrators(&a->mesh, cur->conc, cur->conc_len, cur->nconc) < 0)
		log_error("--lend %s: the lending table could not follow the new concentrators",
			  a->mesh.cfg.lend_if);
	/* The concentrators may have changed, or been upgraded: offer the
	 * verified stream to each again. */
	for (unsigned k = 0; k < AGENT_MAX_CONC; k++)
		atomic_store(&a->conc_plain[k], false);
	atomic_fetch_add(&a->cfg_gen, 1);
	wait_workers_refreshed(a);
	log_set_level(n.log_level);
	relay_set_parked_share(&a->hosts, (uint64_t)n.max_parked_mib << 20, cur->bufsize);

	pc = 0;
	a->paths.key = cur->keyed ? &cur->key : NULL;
	upm_set_concentrators(&a->paths.upm, cur->conc, cur->nconc);
	if (a->paths.n || want->n) {
		a->paths.probe_to = cur->conc[0];
		a->paths.probe_to_len = cur->conc_len[0];
		pc = paths_update(&a->paths, want);
		/* A capped path added (or given a new cycle): its count from
		 * the state file, if it has one for this cycle. */
		caps_load(&a->caps, &a->paths, a->caps_file);
		a->paths.probe_timeout_ms = a->paths.probe_interval_ms * 3 / 4;
		if (a->paths.rt_open)
			paths_reconcile(&a->paths);
	}
	free(want);
	if (cls) {
		/* The classes need their lines' slots: the table after the
		 * paths. Refused, the old classes stay with the old table. */
		struct agent_classes *old = malloc(sizeof(*old));

		if (old)
			*old = a->classes;
		a->classes = *wcs;
		if (intercept_update(cur) < 0 && old) {
			a->classes = *old;
			log_error("reload: the classes stay as they were");
		} else {
			nft = true;
			if (!a->resolver && agent_classes_domains(&a->classes) &&
			    classes_resolver_start(&a->resolver) < 0)
				log_error("classes: cannot start the domain resolver: domain= classes "
					  "match nothing");
		}
		free(old);
	}
	free(wcs);
	/* The table was replaced: its domain sets are empty until filled. */
	if (nft)
		classes_kick(a->resolver, &a->classes);
	a->reloads_ok++;
	log_info("reloaded %s: %u concentrator%s, %u paths (%d changed)%s",
		 cur->config_path[0] ? cur->config_path : "(no file; command line)",
		 cur->nconc, cur->nconc == 1 ? "" : "s", a->paths.n, pc,
		 nft ? ", interception table replaced" : "");
	daemon_reload_end();
}

/* Our own line, for lending: one of our own (not borrowed) paths can carry
 * flows; with no paths configured, the main table's route is the line and
 * taken as up. */
static bool own_line_up(const struct paths *ps)
{
	bool any = false;

	for (unsigned i = 0; i < ps->n; i++) {
		const struct path *p = &ps->p[i];

		/* A line a cap turned off is still ours (and not up): a
		 * lender whose only line is capped off withdraws. */
		if (p->neighbour || p->mode_cfg == PATH_OFF)
			continue;
		any = true;
		if (p->mode != PATH_OFF && (p->f[0].usable || p->f[1].usable))
			return true;
	}
	return !any;
}

/* The main thread: signals, link/address/route events for the paths (a
 * burst is reconciled 50 ms after its first event, and everything every 2 s
 * regardless), probes, status requests, the STATUS line and the watchdog. */
static void run_loop(struct agent *a, int argc, char **argv, const sigset_t *sigs)
{
	int sfd = signalfd(-1, sigs, SFD_CLOEXEC);
	uint64_t due = 0, periodic = log_now_ms() + 2000, probe_next = 0, mesh_next = 0;
	uint64_t overflow_next = 0, caps_next = 0, regate_next = 0;
	uint64_t wd_every = daemon_watchdog_ms(), wd_next = 0, status_next = 0;
	uint64_t *seen = calloc(a->cfg.workers, sizeof(*seen));

	for (;;) {
		struct pollfd pf[7 + 2 * PATHS_MAX] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = paths_event_fd(&a->paths), .events = POLLIN },
			{ .fd = log_now_ms() < a->control_paused_until ? -1 : a->control_fd,
			  .events = POLLIN },
			{ .fd = mesh_fd(&a->mesh), .events = POLLIN },
			{ .fd = upm_event_fd(&a->paths.upm), .events = POLLIN },
			{ .fd = mesh_lend_fd(&a->mesh), .events = POLLIN },
			{ .fd = a->speedtests.efd, .events = POLLIN },
		};
		unsigned np = paths_probe_fds(&a->paths, pf + 7, 2 * PATHS_MAX);
		uint64_t now = log_now_ms(), next = due ? due : periodic;
		int timeout;

		/* The path manager first: joins for new connections, and the
		 * promotions due (next lowered to the one after). */
		if (a->paths.upm.open)
			upm_tick(&a->paths.upm, &a->paths, now, &next);

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
		if (overflow_next && overflow_next < next)
			next = overflow_next;
		if (caps_next && caps_next < next)
			next = caps_next;
		timeout = next > now ? (int)(next - now) : 0;
		if (poll(pf, 7 + np, timeout) < 0 && errno != EINTR)
			break;
		if (pf[6].fd >= 0 && (pf[6].revents & POLLIN))
			speedtests_main(a);
		if (pf[4].fd >= 0 && (pf[4].revents & POLLIN))
			upm_events(&a->paths.upm, &a->paths, log_now_ms());
		if (pf[2].revents & POLLIN)
			control_accept(a);
		if ((pf[3].fd >= 0 && (pf[3].revents & POLLIN)) ||
		    (pf[5].fd >= 0 && (pf[5].revents & POLLIN))) {
			if (mesh_receive(&a->mesh))
				mesh_next = log_now_ms();  /* a neighbour came or withdrew: now */
			agent_mesh_snapshot(a);
		}
		if ((a->mesh.rx_fd >= 0 || a->mesh.tx_fd >= 0) && log_now_ms() >= mesh_next &&
		    mesh_tick(&a->mesh, &a->paths, own_line_up(&a->paths), log_now_ms(), &mesh_next))
			due = log_now_ms();
		if (a->paths.n && paths_probe_run(&a->paths, pf + 7, np, log_now_ms(), &probe_next))
			due = log_now_ms();  /* a path died or came back: now */
		if (a->cfg.cls_agent && log_now_ms() >= regate_next) {
			/* The classes' lines, with the probes' latest delays. */
			upm_regate(&a->paths.upm, &a->paths, log_now_ms());
			regate_next = log_now_ms() + 1000;
		}
		if (caps_wanted(&a->paths)) {
			uint64_t caps_nx = UINT64_MAX;

			if (caps_tick(&a->caps, &a->paths, a->caps_file, log_now_ms(), &caps_nx))
				due = log_now_ms();  /* a line at a threshold: now */
			caps_next = caps_nx;
		} else {
			caps_next = 0;
		}
		if (overflow_wanted(&a->paths)) {
			uint64_t ovf_next = UINT64_MAX;

			if (overflow_tick(&a->overflow, &a->paths, a->cfg.overflow_share, log_now_ms(),
					  &ovf_next))
				due = log_now_ms();  /* MP_PRIO now */
			overflow_next = ovf_next;
		} else if (overflow_next) {
			overflow_forget(&a->overflow, &a->paths);
			overflow_next = 0;
		}
		if (pf[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGHUP) {
					reload(a, argc, argv);
				} else if (si.ssi_signo == SIGUSR1) {
					/* The concentrator's drain; nothing here. */
				} else {
					log_info("%s: stopping", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
					sd_notify(0, "STOPPING=1");
					break;
				}
			}
		}
		/* 50 ms after the first event of a burst, not the last: events
		 * that keep coming (routes, addresses, neighbours of a link
		 * going down) must not hold back the reconcile that moves flows
		 * off a dead path. A reconcile is idempotent: the rest of a
		 * long burst gets the next one. */
		if (pf[1].fd >= 0 && (pf[1].revents & POLLIN) &&
		    paths_events_drain(&a->paths) > 0 && !due)
			due = log_now_ms() + 50;
		now = log_now_ms();
		if (a->paths.n && ((due && now >= due) || now >= periodic)) {
			paths_reconcile(&a->paths);
			due = 0;
			periodic = now + 2000;
		}
		agent_paths_snapshot(a);
		if (wd_every && now >= wd_next) {
			/* Fed only while every worker's loop turns. */
			if (seen && daemon_workers_alive(&a->workers[0].heartbeat,
							 sizeof(a->workers[0]), a->cfg.workers, seen))
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

int main(int argc, char **argv)
{
	struct agent *a;
	sigset_t sigs;
	bool explicit_file, check;
	int r;

	log_init("gw-agent");
	if (argc >= 2 && !strcmp(argv[1], "status")) {
		const char *path = AGENT_CONTROL_PATH;
		bool json = false;

		for (int i = 2; i < argc; i++) {
			if (!strcmp(argv[i], "--json"))
				json = true;
			else if (!strcmp(argv[i], "--control") && i + 1 < argc)
				path = argv[++i];
			else if (!strncmp(argv[i], "--control=", 10))
				path = argv[i] + 10;
			else {
				fprintf(stderr, "Usage: gw-agent status [--json] [--control PATH]\n");
				return 2;
			}
		}
		return control_status(path, json);
	}
	if (argc >= 2 && !strcmp(argv[1], "speedtest")) {
		const char *path = AGENT_CONTROL_PATH, *line = "";
		unsigned secs = SPEEDTEST_DEFAULT_S;

		for (int i = 2; i < argc; i++) {
			char *end;

			if (!strcmp(argv[i], "--control") && i + 1 < argc) {
				path = argv[++i];
			} else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
				secs = (unsigned)strtoul(argv[++i], &end, 10);
				if (*end || secs < 1 || secs > CONVERT_SPEEDTEST_MAX_S) {
					fprintf(stderr, "gw-agent speedtest: --seconds: 1 to 10\n");
					return 2;
				}
			} else if (argv[i][0] != '-' && !line[0]) {
				line = argv[i];
			} else {
				fprintf(stderr, "Usage: gw-agent speedtest [LINE] [--seconds N] [--control PATH]\n");
				return 2;
			}
		}
		return control_speedtest(path, line, secs);
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return 1;
	a->started_ms = log_now_ms();
	a->control_fd = -1;
	if (speedtests_open(&a->speedtests) < 0)
		return 1;
	for (unsigned k = 0; k < AGENT_MAX_CONC; k++) {
		atomic_init(&a->conc_up[k], -1);
		atomic_init(&a->conc_plain[k], false);
	}
	pthread_mutex_init(&a->snap_lock, NULL);
	pthread_cond_init(&a->snap_cond, NULL);
	pthread_mutex_init(&a->cfg_lock, NULL);
	config_prescan(argc, argv, AGENT_CONFIG_PATH, &explicit_file, &check);
	if (agent_load_settings(argc, argv, &a->cfg, &a->paths, &a->classes) < 0) {
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
	relay_set_parked_share(&a->hosts, (uint64_t)a->cfg.max_parked_mib << 20, a->cfg.bufsize);
	r = intercept_add_lan_prefixes(&a->cfg);
	if (r < 0)
		log_errno(r, "cannot read LAN addresses: %m");

	/* Signals go to the main thread only, through a signalfd. */
	daemon_signals(&sigs);

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
	/* Behind one address several concentrators share (--cluster), a UDP
	 * session's datagrams go to the box address its ACCEPT names, which
	 * is trusted only under a gateway key (docs/udp-carrier.md). */
	if (a->paths.fullmesh && !a->cfg.keyed && a->cfg.udp_mode != AGENT_UDP_OFF) {
		log_warn("udp: not carried with --cluster and no key-file (the boxes' addresses "
			 "are taken from a keyed ACCEPT only): LAN UDP is routed as without the agent");
		a->cfg.udp_mode = AGENT_UDP_OFF;
	}
	if (r == 0)
		r = agent_udp_start(a);
	intercept_set_classes(&a->classes, &a->paths);
	if (r == 0)
		r = intercept_install(&a->cfg);
	if (r == 0 && agent_classes_domains(&a->classes)) {
		if (classes_resolver_start(&a->resolver) < 0)
			log_error("classes: cannot start the domain resolver: domain= classes match "
				  "nothing");
		classes_kick(a->resolver, &a->classes);
	}
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
			a->paths.upm.allow = class_allow_path;
			a->paths.upm.allow_ctx = a;
			upm_set_concentrators(&a->paths.upm, a->cfg.conc, a->cfg.nconc);
			snprintf(a->caps_file, sizeof(a->caps_file), "%s/" CAPS_STATE_FILE,
				 a->cfg.state_dir);
			if (r == 0 && caps_wanted(&a->paths)) {
				/* What the lines used this cycle, before any of them
				 * carries a byte: one over its cap stays off. */
				uint64_t nx = UINT64_MAX;

				if (mkdir(a->cfg.state_dir, 0700) < 0 && errno != EEXIST)
					log_errno(-errno, "caps: cannot make %s: %m (caps are "
						  "not kept across restarts)", a->cfg.state_dir);
				caps_load(&a->caps, &a->paths, a->caps_file);
				caps_tick(&a->caps, &a->paths, a->caps_file, log_now_ms(), &nx);
			}
			if (r == 0)
				paths_reconcile(&a->paths);
		}
		atomic_store(&a->paths_ready, true);
		a->mesh.cfg = a->cfg.mesh;
		a->mesh.rx_fd = a->mesh.tx_fd = -1;
		if (r == 0 && (a->cfg.mesh.borrow_if[0] || a->cfg.mesh.lend_if[0]))
			r = mesh_start(&a->mesh, a->cfg.conc, a->cfg.conc_len, a->cfg.nconc,
				       a->paths.n ? a->paths.p[0].ifname : NULL);
	}
	if (r == 0) {
		r = control_open(a);
		if (r < 0)
			log_errno(r, "control socket %s: %m", a->cfg.control_path);
	}
	if (r == 0)
		r = web_start(a);
	if (r == 0 && a->cfg.metrics_len) {
		char m[ADDR_STRLEN];

		agent_paths_snapshot(a);
		r = metrics_server_start(&a->metrics, &a->cfg.metrics, a->cfg.metrics_len,
					 agent_render_metrics, a);
		if (r < 0)
			log_errno(r, "metrics on %s: %m", addr_format((struct sockaddr *)&a->cfg.metrics, m));
		else
			log_info("metrics at http://%s/metrics",
				 addr_format((struct sockaddr *)&a->cfg.metrics, m));
	}
	if (r == 0) {
		sd_notify(0, "READY=1");
		run_loop(a, argc, argv, &sigs);
		/* New LAN connections go the normal routed way from now (they
		 * are no longer intercepted); the running flows keep their
		 * interception, paths, routes and endpoints while the workers
		 * drain them, and only then are those removed. Removing them
		 * first stalled every running flow for the whole drain. */
		intercept_drain(&a->cfg);
	}
	web_stop(a);
	control_close(a);
	speedtests_close(&a->speedtests);
	metrics_server_stop(&a->metrics);
	atomic_store(&a->stopping, 1);
	for (unsigned i = 0; i < a->cfg.workers; i++) {
		pthread_join(a->workers[i].thread, NULL);
		control_worker_done(&a->workers[i]);  /* the last status snapshot */
	}
	agent_udp_stop(a);
	classes_resolver_stop(a->resolver);
	mesh_stop(&a->mesh, &a->paths);
	caps_save(&a->caps, &a->paths, a->caps_file);
	paths_cleanup(&a->paths);
	intercept_remove(&a->cfg);
	if (r == 0)
		agent_log_summary(a);
	free(a->workers);
	quota_free(&a->hosts);
	free(a);
	return r < 0 || r > 0 ? 1 : 0;
}
