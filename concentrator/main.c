/* mptcp-concentrator: terminates MPTCP connections from gateways speaking
 * RFC 8803 (0-RTT TCP Convert) and re-originates plain TCP.
 *
 * main() parses options, starts one worker thread per core and waits for
 * SIGTERM/SIGINT; then workers stop accepting, let flows drain for
 * --drain-timeout, and close what is left. */
#include "concentrator.h"
#include "opts.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define VERSION "0.1.0"

static void usage(FILE *f)
{
	fprintf(f,
"Usage: mptcp-concentrator [OPTIONS]\n"
"Terminates MPTCP (RFC 8803 Convert) connections and re-originates TCP.\n"
"\n"
"  --listen ADDR:PORT          listen address, repeatable (default [::]:%d)\n"
"  --allow-client CIDR         client prefix allowed to connect, repeatable\n"
"  --allow-any-client          allow every client address (open to all!)\n"
"  --allow-dest CIDR           allow destinations in CIDR, overriding a\n"
"                              shorter built-in deny (repeatable)\n"
"  --deny-dest CIDR            deny destinations in CIDR (repeatable)\n"
"  --workers N                 worker threads (default: CPU count)\n"
"  --max-flows N               flows at once (default: fit the fd limit)\n"
"  --max-flows-per-client N    flows at once per client address (default 4096,\n"
"                              0 = unlimited)\n"
"  --handshake-timeout SEC     time to receive a Convert message (default 5)\n"
"  --connect-timeout SEC       upstream connect timeout (default 10)\n"
"  --idle-timeout SEC          close flows idle this long (default 7200, 0 = never)\n"
"  --drain-timeout SEC         on SIGTERM, time flows get to finish (default 10)\n"
"  --keepalive SEC             TCP keepalive idle time on both sockets of a flow;\n"
"                              a dead peer is found in about twice that (default 60,\n"
"                              0 = off)\n"
"  --buffers N                 receive buffers per worker, power of 2 (default 1024)\n"
"  --buffer-size BYTES         size of each buffer (default 65536)\n"
"  --log-level LEVEL           error, warning, info, debug (default info)\n"
"  --version, --help\n", CONVERT_DEFAULT_PORT);
}

enum {
	O_LISTEN = 256, O_ALLOW_CLIENT, O_ALLOW_ANY, O_ALLOW_DEST, O_DENY_DEST,
	O_WORKERS, O_MAX_FLOWS, O_MAX_PER_CLIENT, O_HS_TIMEOUT, O_CONNECT_TIMEOUT,
	O_IDLE_TIMEOUT, O_DRAIN_TIMEOUT, O_KEEPALIVE, O_BUFFERS, O_BUFFER_SIZE, O_LOG_LEVEL,
	O_VERSION, O_HELP,
};

static const struct option long_opts[] = {
	{ "listen", required_argument, NULL, O_LISTEN },
	{ "allow-client", required_argument, NULL, O_ALLOW_CLIENT },
	{ "allow-any-client", no_argument, NULL, O_ALLOW_ANY },
	{ "allow-dest", required_argument, NULL, O_ALLOW_DEST },
	{ "deny-dest", required_argument, NULL, O_DENY_DEST },
	{ "workers", required_argument, NULL, O_WORKERS },
	{ "max-flows", required_argument, NULL, O_MAX_FLOWS },
	{ "max-flows-per-client", required_argument, NULL, O_MAX_PER_CLIENT },
	{ "handshake-timeout", required_argument, NULL, O_HS_TIMEOUT },
	{ "connect-timeout", required_argument, NULL, O_CONNECT_TIMEOUT },
	{ "idle-timeout", required_argument, NULL, O_IDLE_TIMEOUT },
	{ "drain-timeout", required_argument, NULL, O_DRAIN_TIMEOUT },
	{ "keepalive", required_argument, NULL, O_KEEPALIVE },
	{ "buffers", required_argument, NULL, O_BUFFERS },
	{ "buffer-size", required_argument, NULL, O_BUFFER_SIZE },
	{ "log-level", required_argument, NULL, O_LOG_LEVEL },
	{ "version", no_argument, NULL, O_VERSION },
	{ "help", no_argument, NULL, O_HELP },
	{ 0 },
};

static int parse_prefix_opt(const char *opt, const char *s, struct addr_prefix *p)
{
	int r = addr_parse_prefix(s, p);

	if (r == -ERANGE)
		return opt_error(opt, s, "is not a prefix (length over 32 for IPv4, 128 for IPv6)");
	if (r < 0)
		return opt_error(opt, s, "is not a prefix (ADDR/LEN with host bits zero)");
	return 0;
}

static int parse_args(int argc, char **argv, struct conc_config *cfg)
{
	unsigned long v;
	unsigned ms;
	int c, r;

	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		const char *name = NULL;

		for (const struct option *o = long_opts; o->name; o++)
			if (o->val == c)
				name = o->name;
		switch (c) {
		case O_LISTEN:
			if (cfg->nlisten == CONC_MAX_LISTEN)
				return opt_error(name, optarg, "is one listen address too many");
			r = addr_parse_hostport(optarg, CONVERT_DEFAULT_PORT,
						&cfg->listen[cfg->nlisten],
						&cfg->listen_len[cfg->nlisten]);
			if (r < 0)
				return opt_error(name, optarg, "is not ADDR:PORT or [ADDR]:PORT");
			cfg->nlisten++;
			break;
		case O_ALLOW_CLIENT: {
			struct addr_prefix p;

			if ((r = parse_prefix_opt(name, optarg, &p)) < 0)
				return r;
			if ((r = policy_add_client(&cfg->policy, &p)) < 0)
				return r;
			break;
		}
		case O_ALLOW_ANY:
			cfg->policy.allow_any_client = true;
			break;
		case O_ALLOW_DEST:
		case O_DENY_DEST: {
			struct addr_prefix p;

			if ((r = parse_prefix_opt(name, optarg, &p)) < 0)
				return r;
			if ((r = policy_add_dest(&cfg->policy, &p, c == O_ALLOW_DEST, false)) < 0)
				return r;
			break;
		}
		case O_WORKERS:
			if ((r = opt_uint(name, optarg, 1, 256, &v)) < 0)
				return r;
			cfg->workers = (unsigned)v;
			break;
		case O_MAX_FLOWS:
			if ((r = opt_uint(name, optarg, 1, 10000000, &v)) < 0)
				return r;
			cfg->max_flows = (uint32_t)v;
			break;
		case O_MAX_PER_CLIENT:
			if ((r = opt_uint(name, optarg, 0, 10000000, &v)) < 0)
				return r;
			cfg->max_per_client = (uint32_t)v;
			break;
		case O_HS_TIMEOUT:
			if ((r = opt_seconds_ms(name, optarg, 3600, &ms)) < 0)
				return r;
			if (ms == 0)
				return opt_error(name, optarg, "must be more than 0");
			cfg->handshake_timeout_ms = ms;
			break;
		case O_CONNECT_TIMEOUT:
			if ((r = opt_seconds_ms(name, optarg, 3600, &ms)) < 0)
				return r;
			if (ms == 0)
				return opt_error(name, optarg, "must be more than 0");
			cfg->connect_timeout_ms = ms;
			break;
		case O_IDLE_TIMEOUT:
			if ((r = opt_seconds_ms(name, optarg, 30 * 86400, &ms)) < 0)
				return r;
			cfg->idle_timeout_s = (ms + 999) / 1000;
			break;
		case O_DRAIN_TIMEOUT:
			if ((r = opt_seconds_ms(name, optarg, 3600, &ms)) < 0)
				return r;
			cfg->drain_timeout_ms = ms;
			break;
		case O_KEEPALIVE:
			if ((r = opt_uint(name, optarg, 0, 7200, &v)) < 0)
				return r;
			cfg->keepalive_s = (unsigned)v;
			break;
		case O_BUFFERS:
			if ((r = opt_pow2(name, optarg, 2, 32768, &cfg->nbufs)) < 0)
				return r;
			break;
		case O_BUFFER_SIZE:
			if ((r = opt_uint(name, optarg, 1024, 4 << 20, &v)) < 0)
				return r;
			cfg->bufsize = (unsigned)v;
			break;
		case O_LOG_LEVEL:
			if ((r = opt_log_level(name, optarg)) < 0)
				return r;
			break;
		case O_VERSION:
			printf("mptcp-concentrator " VERSION "\n");
			exit(0);
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mptcp-concentrator: unexpected argument \"%s\"\n", argv[optind]);
		return -EINVAL;
	}
	if (!cfg->policy.allow_any_client && cfg->policy.nclients == 0) {
		fprintf(stderr,
			"mptcp-concentrator: no --allow-client given: refusing to start as an\n"
			"open proxy. Name the gateways' prefixes with --allow-client CIDR, or\n"
			"pass --allow-any-client if every address may use this concentrator.\n");
		return -EINVAL;
	}
	return 0;
}

static void log_summary(struct conc *c)
{
	struct conc_counters t = { 0 };
	struct relay_stats s = { 0 };

	for (unsigned i = 0; i < c->cfg.workers; i++) {
		const struct conc_worker *w = &c->workers[i];

		t.accepted += w->n.accepted;
		t.mptcp += w->n.mptcp;
		t.fallback += w->n.fallback;
		t.connected += w->n.connected;
		t.handshake_timeouts += w->n.handshake_timeouts;
		t.limit_hits += w->n.limit_hits;
		t.orphans += w->n.orphans;
		for (int k = 0; k < 256; k++)
			t.refused[k] += w->n.refused[k];
		s.bytes[0] += w->rw.stats.bytes[0];
		s.bytes[1] += w->rw.stats.bytes[1];
	}
	log_info("accepted %llu (mptcp %llu, tcp fallback %llu), connected %llu, "
		 "handshake timeouts %llu, limit hits %llu, flows without subflows %llu, "
		 "bytes up %llu down %llu",
		 (unsigned long long)t.accepted, (unsigned long long)t.mptcp,
		 (unsigned long long)t.fallback, (unsigned long long)t.connected,
		 (unsigned long long)t.handshake_timeouts,
		 (unsigned long long)t.limit_hits, (unsigned long long)t.orphans,
		 (unsigned long long)s.bytes[0], (unsigned long long)s.bytes[1]);
	for (int k = 0; k < 256; k++)
		if (t.refused[k])
			log_info("refused with error %d %s: %llu", k,
				 convert_error_name((unsigned)k),
				 (unsigned long long)t.refused[k]);
}

int main(int argc, char **argv)
{
	struct conc *c;
	sigset_t sigs;
	uint32_t fit;
	int r, sig;

	log_init("mptcp-concentrator");
	c = calloc(1, sizeof(*c));
	if (!c)
		return 1;
	c->cfg.handshake_timeout_ms = 5000;
	c->cfg.connect_timeout_ms = 10000;
	c->cfg.idle_timeout_s = 7200;
	c->cfg.drain_timeout_ms = 10000;
	c->cfg.keepalive_s = 60;
	c->cfg.max_per_client = 4096;
	c->cfg.nbufs = 1024;
	c->cfg.bufsize = 65536;
	c->cfg.workers = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	if (c->cfg.workers < 1)
		c->cfg.workers = 1;
	if (policy_init(&c->cfg.policy) < 0)
		return 1;

	if (parse_args(argc, argv, &c->cfg) < 0)
		return 2;
	if (c->cfg.nlisten == 0) {
		r = addr_parse_hostport("[::]", CONVERT_DEFAULT_PORT, &c->cfg.listen[0],
					&c->cfg.listen_len[0]);
		if (r < 0)
			return 1;
		c->cfg.nlisten = 1;
	}
	r = policy_add_own_addresses(&c->cfg.policy);
	if (r < 0)
		log_errno(r, "cannot list local addresses, they are not denied: %m");

	fit = opt_fit_fd_limit();
	if (!c->cfg.max_flows)
		c->cfg.max_flows = fit;
	else if (c->cfg.max_flows > fit)
		log_warn("--max-flows %u exceeds what the open-file limit allows (%u)",
			 c->cfg.max_flows, fit);

	if (limits_init(&c->limits, c->cfg.max_flows, c->cfg.max_per_client) < 0)
		return 1;

	/* Signals go to this thread only, through sigwait(). */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

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
	if (r < 0) {
		atomic_store(&c->stopping, 1);
	} else {
		char a[ADDR_STRLEN];

		for (unsigned i = 0; i < c->cfg.nlisten; i++)
			log_info("listening on %s (%u workers, max %u flows)",
				 addr_format((struct sockaddr *)&c->cfg.listen[i], a),
				 c->cfg.workers, c->cfg.max_flows);
		sd_notify(0, "READY=1");
		for (;;) {
			if (sigwait(&sigs, &sig) != 0)
				continue;
			if (sig == SIGHUP) {
				log_info("SIGHUP: nothing to reload without a config file");
				continue;
			}
			log_info("%s: stopping; draining flows for up to %u ms",
				 sig == SIGTERM ? "SIGTERM" : "SIGINT", c->cfg.drain_timeout_ms);
			sd_notify(0, "STOPPING=1");
			atomic_store(&c->stopping, 1);
			break;
		}
	}
	for (unsigned i = 0; i < c->cfg.workers; i++)
		pthread_join(c->workers[i].thread, NULL);
	if (r == 0)
		log_summary(c);

	limits_free(&c->limits);
	policy_free(&c->cfg.policy);
	free(c->workers);
	free(c);
	return r < 0 ? 1 : 0;
}
