/* mptcp-concentrator: terminates MPTCP connections from gateways speaking
 * RFC 8803 (0-RTT TCP Convert) and re-originates plain TCP.
 *
 * main() parses options, starts one worker thread per core and waits for
 * SIGTERM/SIGINT; then workers stop accepting, let flows drain for
 * --drain-timeout, and close what is left. */
#include "concentrator.h"
#include "udp.h"
#include "settings.h"
#include "config.h"
#include "daemon.h"
#include "metrics.h"
#include "opts.h"
#include "sock.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "sdnotify.h"
#include <unistd.h>

/* A new TCP Fast Open key at reload: set on every listener at once. When
 * the file names only a new primary, the previous primary becomes the
 * backup, so the cookies gateways hold stay good through the rotation. */
static void rotate_tfo_key(struct conc *c, struct conc_config *n)
{
	struct conc_config *cur = &c->cfg;
	unsigned bad = 0;

	if (n->tfo_key_len == 16 && cur->tfo_key_len) {
		memcpy(n->tfo_key + 16, cur->tfo_key, 16);
		n->tfo_key_len = 32;
	}
	if (!memcmp(n->tfo_key, cur->tfo_key, 16) && cur->tfo_key_len)
		return;  /* the same primary: nothing to rotate */
	for (unsigned w = 0; w < cur->workers; w++)
		for (unsigned i = 0; i < cur->nlisten; i++)
			if (c->workers[w].lfd[i] >= 0 &&
			    tfokey_apply(c->workers[w].lfd[i], n->tfo_key, n->tfo_key_len) < 0)
				bad++;
	memcpy(cur->tfo_key, n->tfo_key, sizeof(cur->tfo_key));
	cur->tfo_key_len = n->tfo_key_len;
	if (bad)
		log_warn("reload: the new TCP Fast Open key could not be set on %u listeners", bad);
	else
		log_info("reload: new TCP Fast Open key on every listener (the previous one kept as backup)");
}

/* SIGHUP: read everything again. Policy, per-client limit, timeouts,
 * keepalive and log level change at once (workers see them under
 * live_lock); listeners, workers, flow and buffer pools and the metrics
 * address need a restart and are named. A file with errors changes
 * nothing. */
static void reload(struct conc *c, int argc, char **argv)
{
	struct conc_config n;
	struct conc_config *cur = &c->cfg;
	char changed[256] = "";

	daemon_reload_begin();
	if (conc_load_settings(argc, argv, &n) < 0) {
		policy_free(&n.policy);
		c->reloads_failed++;
		log_error("reload: %s has errors (above); still running with the previous configuration",
			  cur->config_path[0] ? cur->config_path : "the command line");
		daemon_reload_end();
		return;
	}
	conc_restart_changes(cur, &n, c->ninherited > 0, changed, sizeof(changed));
	if (changed[0])
		log_warn("reload: %s changed but take%s effect only after a restart",
			 changed, strchr(changed, ',') ? "" : "s");

	if (n.tfo_key_len && (n.tfo_key_len != cur->tfo_key_len ||
			      memcmp(n.tfo_key, cur->tfo_key, n.tfo_key_len))) {
		rotate_tfo_key(c, &n);
		peers_set_key(c);
	}
	pthread_rwlock_wrlock(&c->live_lock);
	/* The own-address list is the watcher's (ownaddr.c), which may have
	 * refreshed it since this reload listed it: keep the live one. Without
	 * a watcher, the reload's listing, unless it failed. */
	if (c->own_nl || !n.policy.own_known) {
		policy_set_own(&n.policy, cur->policy.own, cur->policy.nown);
		n.policy.own_known = cur->policy.own_known;
		cur->policy.own = NULL;
		cur->policy.nown = 0;
	}
	policy_free(&cur->policy);
	cur->policy = n.policy;
	cur->handshake_timeout_ms = n.handshake_timeout_ms;
	cur->connect_timeout_ms = n.connect_timeout_ms;
	cur->idle_timeout_s = n.idle_timeout_s;
	cur->keepalive_s = n.keepalive_s;
	cur->max_per_client = n.max_per_client;
	cur->max_hs_per_client = n.max_hs_per_client;
	cur->udp_per_gateway = n.udp_per_gateway;
	cur->udp_rate_per_gateway = n.udp_rate_per_gateway;
	cur->udp_timeout_s = n.udp_timeout_s;
	cur->udp_stream_timeout_s = n.udp_stream_timeout_s;
	cur->log_level = n.log_level;
	/* UDP flows check their destinations again, sessions their keys. */
	atomic_fetch_add(&c->policy_gen, 1);
	memcpy(cur->config_path, n.config_path, sizeof(cur->config_path));
	pthread_rwlock_unlock(&c->live_lock);
	quota_set(&c->limits, QUOTA_FLOW, cur->max_flows, n.max_per_client);
	quota_set(&c->limits, QUOTA_HANDSHAKE, 0, n.max_hs_per_client);  /* total: per worker */
	log_set_level(n.log_level);
	cur->max_parked_mib = n.max_parked_mib;
	relay_set_parked_share(&c->limits, (uint64_t)n.max_parked_mib << 20, cur->bufsize);
	c->reloads_ok++;
	log_info("reloaded %s: %u client prefixes%s, %u destination rules, %u flows per client, "
		 "%u gateway keys",
		 cur->config_path[0] ? cur->config_path : "(no file; command line)",
		 cur->policy.nclients, cur->policy.allow_any_client ? " (any client)" : "",
		 cur->policy.nrules, cur->max_per_client, cur->policy.keys.n);
	daemon_reload_end();
}

static int take_activated_sockets(struct conc *c)
{
	int n = sd_listen_fds(1);

	if (n <= 0)
		return 0;
	if (n > CONC_MAX_LISTEN) {
		log_error("systemd passed %d sockets; at most %d are used", n, CONC_MAX_LISTEN);
		n = CONC_MAX_LISTEN;
	}
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i, proto = 0, qlen = 4096;
		socklen_t pl = sizeof(proto);
		char a[ADDR_STRLEN];

		if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
			log_error("socket activation: descriptor %d is not a listening stream socket", fd);
			return -EINVAL;
		}
		c->cfg.listen_len[i] = sizeof(c->cfg.listen[i]);
		getsockname(fd, (struct sockaddr *)&c->cfg.listen[i], &c->cfg.listen_len[i]);
		getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &pl);
		/* 0-RTT needs TFO on the listener; systemd sets it only with
		 * FastOpen=yes. */
		if (setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen)) < 0 &&
		    proto == IPPROTO_MPTCP)
			warn_no_mptcp_tfo();
		if (proto != IPPROTO_MPTCP)
			log_warn("socket activation: %s is a plain TCP socket: gateways will fall back "
				 "to TCP on it (SocketProtocol=mptcp in the .socket unit needs systemd 257)",
				 addr_format((struct sockaddr *)&c->cfg.listen[i], a));
		c->inherited[i] = fd;
	}
	c->ninherited = (unsigned)n;
	c->cfg.nlisten = (unsigned)n;
	policy_add_own_addresses(&c->cfg.policy);
	log_info("socket activation: %d listener%s from systemd (--listen and \"listen\" ignored)",
		 n, n == 1 ? "" : "s");
	return 0;
}

static void notify_status(struct conc *c)
{
	struct conc_counters t;
	struct relay_stats s;
	uint64_t refused = 0;

	conc_totals(c, &t, &s);
	for (int k = 0; k < 256; k++)
		refused += t.refused[k];
	sd_notifyf(0, "STATUS=%llu flows active, %llu accepted, %llu refused; %.1f GB up, %.1f GB down",
		   (unsigned long long)s.active, (unsigned long long)t.accepted,
		   (unsigned long long)refused, s.bytes[0] / 1e9, s.bytes[1] / 1e9);
}

/* net.ipv4.tcp_fastopen may change under us; a change is logged once. */
static void check_tfo_sysctl(struct conc *c)
{
	int v = c->tfo_sysctl_fd >= 0 ? sock_tfo_cookieless(c->tfo_sysctl_fd) : 0;

	if (v < 0)
		v = 0;
	if (v != atomic_load(&c->tfo_cookieless)) {
		if (v)
			log_warn("net.ipv4.tcp_fastopen has 0x200: the kernel accepts data in SYNs without a "
				 "cookie, so a SYN from a forged address arrives as a connection. Requests "
				 "from such SYNs now wait for the handshake (no 0-RTT); set it to 3 "
				 "(deploy/sysctl/90-mptcp-concentrator.conf)");
		else
			log_info("net.ipv4.tcp_fastopen requires TFO cookies: 0-RTT requests are served at the SYN");
		atomic_store(&c->tfo_cookieless, v);
	}
}

/* The main thread after start: signals, the STATUS line every 5 s and the
 * watchdog at half its interval. Returns when told to stop. */
static void run_main(struct conc *c, int argc, char **argv, const sigset_t *sigs)
{
	uint64_t *seen = calloc(c->cfg.workers, sizeof(*seen));
	uint64_t wd_ms = daemon_watchdog_ms(), period_ms = 5000, next_status = 0;

	if (wd_ms && wd_ms < period_ms)
		period_ms = wd_ms;
	for (;;) {
		uint64_t wait_ms = c->draining_since_ms && period_ms > 200 ? 200 : period_ms;
		struct timespec ts = { .tv_sec = (time_t)(wait_ms / 1000),
				       .tv_nsec = (long)(wait_ms % 1000) * 1000000 };
		int sig = sigtimedwait(sigs, NULL, &ts);
		uint64_t now = log_now_ms();

		if (sig == SIGHUP) {
			reload(c, argc, argv);
			check_tfo_sysctl(c);
		} else if (sig == SIGTERM || sig == SIGINT) {
			log_info("%s: stopping; draining flows for up to %u ms",
				 sig == SIGTERM ? "SIGTERM" : "SIGINT", c->cfg.drain_timeout_ms);
			sd_notify(0, "STOPPING=1");
			break;
		} else if (sig == SIGUSR1 && !c->draining_since_ms) {
			/* Drain (a box of a cluster out for maintenance): the
			 * service address is withdrawn, running flows go on, and
			 * when they are done (or at the deadline) the daemon stops
			 * as at SIGTERM, with a clean exit. */
			cluster_withdraw(c);
			c->draining_since_ms = now;
			log_info("SIGUSR1: draining: no new flows are routed here; stopping when the "
				 "running flows end, at most %u s", c->cfg.drain_deadline_s);
			sd_notify(0, "STATUS=draining");
		}
		if (c->draining_since_ms) {
			struct conc_counters t;
			struct relay_stats st;

			conc_totals(c, &t, &st);
			if (st.active == 0 ||
			    now - c->draining_since_ms >= (uint64_t)c->cfg.drain_deadline_s * 1000) {
				log_info("drained: %llu flows left after %.1f s; stopping",
					 (unsigned long long)st.active,
					 (double)(now - c->draining_since_ms) / 1000);
				sd_notify(0, "STOPPING=1");
				break;
			}
		}
		/* The watchdog is fed only while every worker's loop turns
		 * (each bumps its heartbeat every tick): a stuck worker gets the
		 * daemon restarted. */
		if (wd_ms && seen && daemon_workers_alive(&c->workers[0].heartbeat,
							  sizeof(c->workers[0]), c->cfg.workers, seen))
			sd_notify(0, "WATCHDOG=1");
		if (now >= next_status) {
			check_tfo_sysctl(c);
			notify_status(c);
			next_status = now + 5000;
		}
	}
	free(seen);
}

int main(int argc, char **argv)
{
	struct conc *c;
	sigset_t sigs;
	uint32_t fit;
	bool explicit_file, check;
	int r;

	log_init("mptcp-concentrator");
	c = calloc(1, sizeof(*c));
	if (!c)
		return 1;
	c->started_unix = (uint64_t)time(NULL);
	config_prescan(argc, argv, CONC_CONFIG_PATH, &explicit_file, &check);
	if (conc_load_settings(argc, argv, &c->cfg) < 0) {
		policy_free(&c->cfg.policy);
		free(c);
		return 2;
	}
	if (check) {
		printf("%s: configuration OK (%s%s)\n", program_invocation_short_name,
		       c->cfg.config_path[0] ? c->cfg.config_path : "no config file",
		       c->cfg.config_path[0] ? " and the command line" : ", command line only");
		policy_free(&c->cfg.policy);
		free(c);
		return 0;
	}
	log_set_level(c->cfg.log_level);
	pthread_rwlock_init(&c->live_lock, NULL);
	if (take_activated_sockets(c) < 0) {
		policy_free(&c->cfg.policy);
		free(c);
		return 1;
	}

	/* Descriptors: two per flow, one per connection refused while its
	 * Error goes out. fit is flows at two each; handshakes take a quarter
	 * of it (at most 4096) unless set, and flows what is left. */
	fit = opt_fit_fd_limit();
	if (!c->cfg.max_handshakes)
		c->cfg.max_handshakes = fit / 4 < 4096 ? (fit / 4 ? fit / 4 : 1) : 4096;
	/* UDP flows hold one descriptor each: at most half the descriptors
	 * (fit pairs), taken before TCP's share. */
	if (c->cfg.udp && c->cfg.udp_max_flows > fit) {
		log_warn("--udp-max-flows %u lowered to %u: the open-file limit allows no more",
			 c->cfg.udp_max_flows, fit);
		c->cfg.udp_max_flows = fit;
	}
	if (!c->cfg.max_flows)
		c->cfg.max_flows = fit - c->cfg.max_handshakes / 2 -
				   (c->cfg.udp ? (c->cfg.udp_max_flows + 1) / 2 : 0);
	else if (c->cfg.max_flows > fit)
		log_warn("--max-flows %u exceeds what the open-file limit allows (%u)",
			 c->cfg.max_flows, fit);

	speedtests_init(&c->speedtests);
	if (quota_init(&c->limits, (uint8_t)c->cfg.client_prefix6) < 0 ||
	    replay_init(&c->replay, c->cfg.replay_entries) < 0)
		return 1;
	/* Before the workers: they tell the peers of every cookie taken. */
	if (peers_start(c) < 0)
		return 1;
	quota_set(&c->limits, QUOTA_FLOW, c->cfg.max_flows, c->cfg.max_per_client);
	/* Handshakes in total are counted by each worker against its share
	 * (worker.c); the table holds only the per-client limit. */
	quota_set(&c->limits, QUOTA_HANDSHAKE, 0, c->cfg.max_hs_per_client);
	relay_set_parked_share(&c->limits, (uint64_t)c->cfg.max_parked_mib << 20, c->cfg.bufsize);

	/* Signals go to the main thread only, through sigtimedwait(). */
	daemon_signals(&sigs);

	c->tfo_sysctl_fd = sock_tfo_sysctl_open();
	if (c->tfo_sysctl_fd >= 0 && sock_tfo_cookieless(c->tfo_sysctl_fd) > 0)
		check_tfo_sysctl(c);
	pthread_mutex_init(&c->ready_lock, NULL);
	pthread_cond_init(&c->ready_cond, NULL);
	c->workers = calloc(c->cfg.workers, sizeof(*c->workers));
	if (!c->workers)
		return 1;
	for (unsigned i = 0; i < c->cfg.workers; i++) {
		c->workers[i].c = c;
		c->workers[i].id = i;
		r = pthread_create(&c->workers[i].thread, NULL, worker_main, &c->workers[i]);
		if (r) {
			log_errno(-r, "cannot start worker %u: %m", i);
			return 1;
		}
	}
	pthread_mutex_lock(&c->ready_lock);
	while (c->ready < c->cfg.workers)
		pthread_cond_wait(&c->ready_cond, &c->ready_lock);
	pthread_mutex_unlock(&c->ready_lock);
	r = 0;
	for (unsigned i = 0; i < c->cfg.workers; i++)
		if (c->workers[i].init_result < 0)
			r = c->workers[i].init_result;
	if (r == 0) {
		int e = ownaddr_start(c);

		if (e < 0)
			log_errno(e, "cannot follow address changes (rtnetlink): own addresses are those "
				  "at start and at each reload: %m");
	}
	if (r == 0 && c->cfg.metrics_len) {
		char a[ADDR_STRLEN];

		r = metrics_server_start(&c->metrics, &c->cfg.metrics, c->cfg.metrics_len,
					 conc_render_metrics, c);
		if (r < 0)
			log_errno(r, "metrics on %s: %m",
				  addr_format((struct sockaddr *)&c->cfg.metrics, a));
		else
			log_info("metrics at http://%s/metrics",
				 addr_format((struct sockaddr *)&c->cfg.metrics, a));
	}
	if (r == 0)
		r = udp_start(c);
	if (r == 0)
		r = cluster_start(c);
	if (r < 0) {
		atomic_store(&c->stopping, 1);
	} else {
		char a[ADDR_STRLEN];

		for (unsigned i = 0; i < c->cfg.nlisten; i++)
			log_info("listening on %s (%u workers, max %u flows)",
				 addr_format((struct sockaddr *)&c->cfg.listen[i], a),
				 c->cfg.workers, c->cfg.max_flows);
		sd_notify(0, "READY=1");
		notify_status(c);
		run_main(c, argc, argv, &sigs);
		/* The routing daemon withdraws the address first, then flows
		 * drain. */
		cluster_withdraw(c);
		atomic_store(&c->stopping, 1);
	}
	for (unsigned i = 0; i < c->cfg.workers; i++)
		pthread_join(c->workers[i].thread, NULL);
	speedtests_stop(&c->speedtests);
	/* Metrics first: a scrape reads the UDP thread's counters. */
	metrics_server_stop(&c->metrics);
	udp_stop(c);
	peers_stop(c);
	ownaddr_stop(c);
	cluster_stop(c);
	if (r == 0)
		conc_log_summary(c);

	for (unsigned i = 0; i < c->ninherited; i++)
		close(c->inherited[i]);
	quota_free(&c->limits);
	replay_free(&c->replay);
	if (c->tfo_sysctl_fd >= 0)
		close(c->tfo_sysctl_fd);
	policy_free(&c->cfg.policy);
	pthread_rwlock_destroy(&c->live_lock);
	free(c->workers);
	free(c);
	return r < 0 ? 1 : 0;
}
