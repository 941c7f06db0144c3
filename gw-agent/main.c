/* gw-agent: on a home router, intercepts LAN TCP (nftables TPROXY) and
 * carries each flow over one MPTCP connection to an RFC 8803 concentrator,
 * falling back to a direct connection when no concentrator answers.
 *
 * main() parses options, installs the interception, runs one worker per
 * core (each with its own io_uring and IP_TRANSPARENT listener) and on
 * SIGTERM/SIGINT drains flows, then removes the interception. */
#include "agent.h"
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
#include <systemd/sd-daemon.h>
#include <unistd.h>


static void usage(FILE *f)
{
	fprintf(f,
"Usage: gw-agent --concentrator ADDR:PORT --lan IFACE [OPTIONS]\n"
"       gw-agent status [--control PATH]\n"
"Carries LAN TCP flows over MPTCP to an RFC 8803 concentrator.\n"
"\n"
"  --concentrator ADDR:PORT  concentrator (port default 5124); repeat for backups,\n"
"                            tried in order\n"
"  --lan IFACE               LAN interface whose TCP is intercepted; repeatable\n"
"  --bypass CIDR             destinations never intercepted; repeatable\n"
"  --path IFACE[,mode=on|master|backup|handover|off][,gateway=ADDR]\n"
"                            a WAN or mesh path for subflows; repeatable\n"
"  --endpoints kernel|mptcpd manage MPTCP endpoints here (default) or leave them\n"
"                            to mptcpd and only do routing\n"
"  --probe-interval SEC      probe each path's reach to the concentrator this often\n"
"                            (default 1; 0 = off); two failures mark it down\n"
"  --fallback direct|reset   no concentrator reachable: connect directly (default)\n"
"                            or reset the LAN connection (fail closed)\n"
"  --block-quic / --no-block-quic\n"
"                            answer LAN UDP to port 443 with ICMP port-unreachable\n"
"                            so browsers use TCP (default: on)\n"
"  --port N                  TPROXY listener port (default 5125)\n"
"  --mark N, --table N       fwmark and routing table for TPROXY (default 19792)\n"
"  --connect-timeout SEC     connecting to a concentrator (default 3)\n"
"  --reply-timeout SEC       waiting for its Convert reply (default 15)\n"
"  --keepalive SEC           TCP keepalive idle time (default 60, 0 = off)\n"
"  --rcvbuf BYTES            receive buffer of each MPTCP connection (default\n"
"                            4194304; 0 = kernel autotuning)\n"
"  --idle-timeout SEC        close flows idle this long (default 7200, 0 = never)\n"
"  --workers N               worker threads (default: CPU count)\n"
"  --buffers N, --buffer-size BYTES  per worker (default 256 x 32768)\n"
"  --control PATH            status socket for `gw-agent status` (default\n"
"                            " AGENT_CONTROL_PATH "; \"\" = none)\n"
"  --log-level LEVEL         error, warning, info, debug (default info)\n"
"  --version, --help\n");
}

enum {
	O_CONC = 256, O_LAN, O_BYPASS, O_FALLBACK, O_BLOCK_QUIC, O_NO_BLOCK_QUIC,
	O_PORT, O_MARK, O_TABLE, O_CONNECT_TIMEOUT, O_REPLY_TIMEOUT, O_KEEPALIVE,
	O_IDLE_TIMEOUT, O_WORKERS, O_BUFFERS, O_BUFFER_SIZE, O_LOG_LEVEL, O_VERSION,
	O_HELP, O_WANPATH, O_ENDPOINTS, O_PROBE, O_RCVBUF, O_CONTROL,
};

static const struct option long_opts[] = {
	{ "concentrator", required_argument, NULL, O_CONC },
	{ "lan", required_argument, NULL, O_LAN },
	{ "bypass", required_argument, NULL, O_BYPASS },
	{ "fallback", required_argument, NULL, O_FALLBACK },
	{ "path", required_argument, NULL, O_WANPATH },
	{ "endpoints", required_argument, NULL, O_ENDPOINTS },
	{ "probe-interval", required_argument, NULL, O_PROBE },
	{ "rcvbuf", required_argument, NULL, O_RCVBUF },
	{ "control", required_argument, NULL, O_CONTROL },
	{ "block-quic", no_argument, NULL, O_BLOCK_QUIC },
	{ "no-block-quic", no_argument, NULL, O_NO_BLOCK_QUIC },
	{ "port", required_argument, NULL, O_PORT },
	{ "mark", required_argument, NULL, O_MARK },
	{ "table", required_argument, NULL, O_TABLE },
	{ "connect-timeout", required_argument, NULL, O_CONNECT_TIMEOUT },
	{ "reply-timeout", required_argument, NULL, O_REPLY_TIMEOUT },
	{ "keepalive", required_argument, NULL, O_KEEPALIVE },
	{ "idle-timeout", required_argument, NULL, O_IDLE_TIMEOUT },
	{ "workers", required_argument, NULL, O_WORKERS },
	{ "buffers", required_argument, NULL, O_BUFFERS },
	{ "buffer-size", required_argument, NULL, O_BUFFER_SIZE },
	{ "log-level", required_argument, NULL, O_LOG_LEVEL },
	{ "version", no_argument, NULL, O_VERSION },
	{ "help", no_argument, NULL, O_HELP },
	{ 0 },
};

static int parse_args(int argc, char **argv, struct agent *a)
{
	struct agent_config *cfg = &a->cfg;
	unsigned long v;
	unsigned ms;
	int c, r, lvl;

	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		const char *name = "";

		for (const struct option *o = long_opts; o->name; o++)
			if (o->val == c)
				name = o->name;
		switch (c) {
		case O_CONC:
			if (cfg->nconc == AGENT_MAX_CONC)
				return opt_error(name, optarg, "is one concentrator too many");
			if (addr_parse_hostport(optarg, CONVERT_DEFAULT_PORT,
						&cfg->conc[cfg->nconc], &cfg->conc_len[cfg->nconc]) < 0)
				return opt_error(name, optarg, "is not ADDR[:PORT] or [ADDR6][:PORT]");
			cfg->nconc++;
			break;
		case O_LAN:
			if (cfg->nlan == AGENT_MAX_LAN)
				return opt_error(name, optarg, "is one LAN interface too many");
			if (!*optarg || strlen(optarg) >= sizeof(cfg->lan[0]) ||
			    strpbrk(optarg, "\"\\ /{}"))
				return opt_error(name, optarg, "is not an interface name");
			strcpy(cfg->lan[cfg->nlan++], optarg);
			break;
		case O_BYPASS:
			if (cfg->nbypass >= AGENT_MAX_BYPASS - AGENT_MAX_LAN * 4)
				return opt_error(name, optarg, "is one bypass prefix too many");
			r = addr_parse_prefix(optarg, &cfg->bypass[cfg->nbypass]);
			if (r < 0)
				return opt_error(name, optarg, "is not a prefix (ADDR/LEN with host bits zero)");
			cfg->nbypass++;
			break;
		case O_WANPATH: {
			const char *why = "";

			if (paths_parse(&a->paths, optarg, &why) < 0)
				return opt_error(name, optarg, why);
			break;
		}
		case O_RCVBUF:
			if ((r = opt_uint(name, optarg, 0, 256 << 20, &v)) < 0)
				return r;
			cfg->rcvbuf = (unsigned)v;
			break;
		case O_CONTROL:
			if (strlen(optarg) >= sizeof(cfg->control_path) ||
			    (*optarg && *optarg != '/'))
				return opt_error(name, optarg, "is not an absolute path under 108 bytes");
			strcpy(cfg->control_path, optarg);
			break;
		case O_PROBE:
			if ((r = opt_seconds_ms(name, optarg, 3600, &ms)) < 0)
				return r;
			a->paths.probe_interval_ms = ms;
			break;
		case O_ENDPOINTS:
			if (!strcmp(optarg, "kernel"))
				a->paths.manage_endpoints = true;
			else if (!strcmp(optarg, "mptcpd"))
				a->paths.manage_endpoints = false;
			else
				return opt_error(name, optarg, "is not kernel or mptcpd");
			break;
		case O_FALLBACK:
			if (!strcmp(optarg, "direct"))
				cfg->fallback = FALLBACK_DIRECT;
			else if (!strcmp(optarg, "reset"))
				cfg->fallback = FALLBACK_RESET;
			else
				return opt_error(name, optarg, "is not direct or reset");
			break;
		case O_BLOCK_QUIC:
			cfg->block_quic = true;
			break;
		case O_NO_BLOCK_QUIC:
			cfg->block_quic = false;
			break;
		case O_PORT:
			if ((r = opt_uint(name, optarg, 1, 65535, &v)) < 0)
				return r;
			cfg->port = (uint16_t)v;
			break;
		case O_MARK:
		case O_TABLE:
			if ((r = opt_uint(name, optarg, 1, 0x7fffffff, &v)) < 0)
				return r;
			if (c == O_MARK)
				cfg->mark = (uint32_t)v;
			else
				cfg->table = (uint32_t)v;
			break;
		case O_CONNECT_TIMEOUT:
		case O_REPLY_TIMEOUT:
			if ((r = opt_seconds_ms(name, optarg, 3600, &ms)) < 0)
				return r;
			if (!ms)
				return opt_error(name, optarg, "must be more than 0");
			if (c == O_CONNECT_TIMEOUT)
				cfg->connect_timeout_ms = ms;
			else
				cfg->reply_timeout_ms = ms;
			break;
		case O_KEEPALIVE:
			if ((r = opt_uint(name, optarg, 0, 7200, &v)) < 0)
				return r;
			cfg->keepalive_s = (unsigned)v;
			break;
		case O_IDLE_TIMEOUT:
			if ((r = opt_uint(name, optarg, 0, 30 * 86400, &v)) < 0)
				return r;
			cfg->idle_timeout_s = (unsigned)v;
			break;
		case O_WORKERS:
			if ((r = opt_uint(name, optarg, 1, 64, &v)) < 0)
				return r;
			cfg->workers = (unsigned)v;
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
			if ((r = opt_log_level(name, optarg, &lvl)) < 0)
				return r;
			log_set_level(lvl);
			break;
		case O_VERSION:
			printf("gw-agent " AGENT_VERSION "\n");
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
		fprintf(stderr, "gw-agent: unexpected argument \"%s\"\n", argv[optind]);
		return -EINVAL;
	}
	if (!cfg->nconc) {
		fprintf(stderr, "gw-agent: --concentrator ADDR:PORT is required\n");
		return -EINVAL;
	}
	if (!cfg->nlan) {
		fprintf(stderr, "gw-agent: --lan IFACE is required (the interface to intercept)\n");
		return -EINVAL;
	}
	return 0;
}

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

static void tick(struct relay_worker *w)
{
	flow_tick(w->owner);
	control_worker_tick(w->owner);
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
	r = relay_worker_init(&aw->rw, &agent_relay_ops, aw, 1024, cfg->nbufs,
			      cfg->bufsize, cfg->max_flows);
	if (r < 0) {
		log_errno(r, "worker %u: io_uring setup: %m", aw->id);
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

/* The main thread: signals, and link/address/route events for the paths,
 * which are reconciled 50 ms after the last event of a burst (a DHCP renew
 * or a link bounce comes as several messages) and every 2 s regardless. */
static void run_loop(struct agent *a, const sigset_t *sigs)
{
	int sfd = signalfd(-1, sigs, SFD_CLOEXEC);
	uint64_t due = 0, periodic = log_now_ms() + 2000;

	uint64_t probe_next = 0;

	for (;;) {
		struct pollfd pf[3 + 2 * PATHS_MAX] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = paths_event_fd(&a->paths), .events = POLLIN },
			{ .fd = a->control_fd, .events = POLLIN },
		};
		unsigned np = paths_probe_fds(&a->paths, pf + 3, 2 * PATHS_MAX);
		uint64_t now = log_now_ms(), next = due ? due : periodic;
		int timeout;

		if (a->paths.n && probe_next && probe_next < next)
			next = probe_next;
		timeout = next > now ? (int)(next - now) : 0;
		if (poll(pf, 3 + np, timeout) < 0 && errno != EINTR)
			break;
		if (pf[2].revents & POLLIN)
			control_accept(a);
		if (a->paths.n && paths_probe_run(&a->paths, pf + 3, np, log_now_ms(), &probe_next))
			due = log_now_ms();  /* a path died or came back: now */
		if (pf[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGHUP) {
					log_info("SIGHUP: nothing to reload without a config file");
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
	}
	if (sfd >= 0)
		close(sfd);
}

static void log_summary(struct agent *a)
{
	struct agent_counters t = { 0 };
	uint64_t up = 0, down = 0;

	for (unsigned i = 0; i < a->cfg.workers; i++) {
		const struct agent_worker *w = &a->workers[i];

		t.intercepted += w->n.intercepted;
		t.via_concentrator += w->n.via_concentrator;
		t.fallback_direct += w->n.fallback_direct;
		t.failed += w->n.failed;
		t.early_bytes += w->n.early_bytes;
		for (int k = 0; k < 256; k++)
			t.conc_errors[k] += w->n.conc_errors[k];
		up += w->rw.stats.bytes[0];
		down += w->rw.stats.bytes[1];
	}
	log_info("intercepted %llu: via concentrator %llu, direct fallback %llu, failed %llu; "
		 "early bytes in SYN %llu; bytes up %llu down %llu",
		 (unsigned long long)t.intercepted, (unsigned long long)t.via_concentrator,
		 (unsigned long long)t.fallback_direct, (unsigned long long)t.failed,
		 (unsigned long long)t.early_bytes, (unsigned long long)up,
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
	strcpy(a->cfg.control_path, AGENT_CONTROL_PATH);
	pthread_mutex_init(&a->snap_lock, NULL);
	pthread_cond_init(&a->snap_cond, NULL);
	a->cfg.fallback = FALLBACK_DIRECT;
	a->cfg.block_quic = true;
	a->cfg.port = 5125;
	a->cfg.mark = 0x4d50;
	a->cfg.table = 0x4d50;
	a->cfg.connect_timeout_ms = 3000;
	a->cfg.reply_timeout_ms = 15000;
	a->cfg.keepalive_s = 60;
	a->cfg.idle_timeout_s = 7200;
	a->cfg.nbufs = 256;
	a->cfg.bufsize = 32768;
	a->cfg.rcvbuf = 4 << 20;
	a->cfg.workers = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	if (a->cfg.workers < 1)
		a->cfg.workers = 1;
	a->paths.manage_endpoints = true;
	a->paths.probe_interval_ms = 1000;
	if (parse_args(argc, argv, a) < 0)
		return 2;
	a->cfg.max_flows = opt_fit_fd_limit();
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
		if (a->paths.n) {
			/* Probes talk to the first concentrator; a timeout well
			 * under the interval keeps one probe per path in flight. */
			a->paths.probe_to = a->cfg.conc[0];
			a->paths.probe_to_len = a->cfg.conc_len[0];
			a->paths.probe_timeout_ms = a->paths.probe_interval_ms * 3 / 4;
			r = paths_init(&a->paths, a->cfg.table, 10000);
			if (r == 0)
				paths_reconcile(&a->paths);
		}
	}
	if (r == 0) {
		r = control_open(a);
		if (r < 0)
			log_errno(r, "control socket %s: %m", a->cfg.control_path);
	}
	if (r == 0) {
		sd_notify(0, "READY=1");
		run_loop(a, &sigs);
		control_close(a);
		/* Stop intercepting before the listeners close: new LAN
		 * connections go the normal routed way meanwhile. */
		paths_cleanup(&a->paths);
		intercept_remove(&a->cfg);
	}
	atomic_store(&a->stopping, 1);
	for (unsigned i = 0; i < a->cfg.workers; i++) {
		pthread_join(a->workers[i].thread, NULL);
		free(a->workers[i].snap);  /* the last status snapshot */
	}
	if (r == 0)
		log_summary(a);
	free(a->workers);
	free(a);
	return r < 0 || r > 0 ? 1 : 0;
}
