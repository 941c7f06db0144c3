/* mptcp-concentrator: terminates MPTCP connections from gateways speaking
 * RFC 8803 (0-RTT TCP Convert) and re-originates plain TCP.
 *
 * main() parses options, starts one worker thread per core and waits for
 * SIGTERM/SIGINT; then workers stop accepting, let flows drain for
 * --drain-timeout, and close what is left. */
#include "concentrator.h"
#include "config.h"
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
"  --own-address CIDR          also this host's, never a destination (a 1:1 NAT's\n"
"                              public address); repeatable\n"
"  --nat64-prefix PFX/96       a NAT64 prefix besides 64:ff9b::/96: the IPv4 address\n"
"                              it embeds must pass the IPv4 rules; repeatable\n"
"  --tfo-key-file FILE         the listeners' TCP Fast Open key (created if missing),\n"
"                              kept across restarts and shared by the boxes of a\n"
"                              service (default: in the systemd state directory)\n"
"  --keys FILE                 per-gateway keys: every client must put a valid\n"
"                              authenticator in its Cookie TLV (default: the\n"
"                              systemd credential \"keys\", if there is one)\n"
"  --workers N                 worker threads (default: CPU count)\n"
"  --max-flows N               flows at once (default: fit the fd limit)\n"
"  --max-flows-per-client N    flows at once per client (default 4096, 0 = unlimited)\n"
"  --max-handshakes N          connections not yet relaying (reading the request,\n"
"                              connecting, refusing) at once (default: 4096, or a\n"
"                              quarter of what the fd limit allows)\n"
"  --max-handshakes-per-client N  of those per client (default 1024, 0 = unlimited);\n"
"                              over either, a connection is reset at once\n"
"  --client-prefix6 LEN        IPv6 clients are counted per /LEN (default 64); IPv4\n"
"                              per address\n"
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
"  --metrics-listen ADDR:PORT  serve Prometheus metrics at /metrics (a bare PORT\n"
"                              binds 127.0.0.1; default off)\n"
"  --config FILE               JSON configuration (default " CONC_CONFIG_PATH ",\n"
"                              read if it exists); the command line wins\n"
"  --check-config              check the configuration and exit\n"
"  --version, --help\n", CONVERT_DEFAULT_PORT);
}

enum {
	O_LISTEN = 256, O_ALLOW_CLIENT, O_ALLOW_ANY, O_ALLOW_DEST, O_DENY_DEST,
	O_WORKERS, O_MAX_FLOWS, O_MAX_PER_CLIENT, O_HS_TIMEOUT, O_CONNECT_TIMEOUT,
	O_IDLE_TIMEOUT, O_DRAIN_TIMEOUT, O_KEEPALIVE, O_BUFFERS, O_BUFFER_SIZE, O_LOG_LEVEL,
	O_METRICS, O_CONFIG, O_CHECK_CONFIG, O_NO_ALLOW_ANY,
	O_MAX_HS, O_MAX_HS_PER_CLIENT, O_CLIENT_PREFIX6, O_KEYS, O_OWN, O_NAT64, O_TFO_KEY,
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
	{ "max-handshakes", required_argument, NULL, O_MAX_HS },
	{ "max-handshakes-per-client", required_argument, NULL, O_MAX_HS_PER_CLIENT },
	{ "client-prefix6", required_argument, NULL, O_CLIENT_PREFIX6 },
	{ "keys", required_argument, NULL, O_KEYS },
	{ "own-address", required_argument, NULL, O_OWN },
	{ "nat64-prefix", required_argument, NULL, O_NAT64 },
	{ "tfo-key-file", required_argument, NULL, O_TFO_KEY },
	{ "handshake-timeout", required_argument, NULL, O_HS_TIMEOUT },
	{ "connect-timeout", required_argument, NULL, O_CONNECT_TIMEOUT },
	{ "idle-timeout", required_argument, NULL, O_IDLE_TIMEOUT },
	{ "drain-timeout", required_argument, NULL, O_DRAIN_TIMEOUT },
	{ "keepalive", required_argument, NULL, O_KEEPALIVE },
	{ "buffers", required_argument, NULL, O_BUFFERS },
	{ "buffer-size", required_argument, NULL, O_BUFFER_SIZE },
	{ "log-level", required_argument, NULL, O_LOG_LEVEL },
	{ "metrics-listen", required_argument, NULL, O_METRICS },
	{ "config", required_argument, NULL, O_CONFIG },
	{ "check-config", no_argument, NULL, O_CHECK_CONFIG },
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

struct parse {
	struct conc_config *cfg;
	bool cmdline;
	bool cleared[O_HELP - O_LISTEN + 1];  /* lists the command line replaced */
};

/* Command-line values replace a config file's list, not add to it. */
static void clear_list_once(struct parse *p, int c)
{
	struct conc_config *cfg = p->cfg;

	if (!p->cmdline || p->cleared[c - O_LISTEN])
		return;
	p->cleared[c - O_LISTEN] = true;
	switch (c) {
	case O_LISTEN: cfg->nlisten = 0; break;
	case O_ALLOW_CLIENT: policy_clear_operator(&cfg->policy, true, false, false); break;
	case O_ALLOW_DEST: policy_clear_operator(&cfg->policy, false, true, false); break;
	case O_DENY_DEST: policy_clear_operator(&cfg->policy, false, false, true); break;
	case O_OWN: cfg->policy.nown_extra = 0; break;
	case O_NAT64: cfg->policy.nnat64 = 0; break;
	}
}

/* One setting, from the command line or a config file (config.c turns
 * JSON values into this same text), so both are checked by the same code. */
static int apply_opt(void *ctx, int c, const char *arg)
{
	struct parse *p = ctx;
	struct conc_config *cfg = p->cfg;
	const char *name = opt_name(long_opts, c);
	unsigned long v;
	unsigned ms;
	int r;

	clear_list_once(p, c);
	switch (c) {
	case O_LISTEN:
		if (cfg->nlisten == CONC_MAX_LISTEN)
			return opt_error(name, arg, "is one listen address too many");
		r = addr_parse_hostport(arg, CONVERT_DEFAULT_PORT, &cfg->listen[cfg->nlisten],
					&cfg->listen_len[cfg->nlisten]);
		if (r < 0)
			return opt_error(name, arg, "is not ADDR:PORT or [ADDR]:PORT");
		cfg->nlisten++;
		return 0;
	case O_ALLOW_CLIENT: {
		struct addr_prefix pfx;

		if ((r = parse_prefix_opt(name, arg, &pfx)) < 0)
			return r;
		return policy_add_client(&cfg->policy, &pfx);
	}
	case O_ALLOW_ANY:
		cfg->policy.allow_any_client = true;
		return 0;
	case O_NO_ALLOW_ANY:
		cfg->policy.allow_any_client = false;
		return 0;
	case O_ALLOW_DEST:
	case O_DENY_DEST: {
		struct addr_prefix pfx;

		if ((r = parse_prefix_opt(name, arg, &pfx)) < 0)
			return r;
		return policy_add_dest(&cfg->policy, &pfx, c == O_ALLOW_DEST, false);
	}
	case O_WORKERS:
		if ((r = opt_uint(name, arg, 1, 256, &v)) < 0)
			return r;
		cfg->workers = (unsigned)v;
		return 0;
	case O_MAX_FLOWS:
		if ((r = opt_uint(name, arg, 1, 10000000, &v)) < 0)
			return r;
		cfg->max_flows = (uint32_t)v;
		return 0;
	case O_MAX_PER_CLIENT:
		if ((r = opt_uint(name, arg, 0, 10000000, &v)) < 0)
			return r;
		cfg->max_per_client = (uint32_t)v;
		return 0;
	case O_MAX_HS:
		if ((r = opt_uint(name, arg, 1, 10000000, &v)) < 0)
			return r;
		cfg->max_handshakes = (uint32_t)v;
		return 0;
	case O_MAX_HS_PER_CLIENT:
		if ((r = opt_uint(name, arg, 0, 10000000, &v)) < 0)
			return r;
		cfg->max_hs_per_client = (uint32_t)v;
		return 0;
	case O_OWN:
	case O_NAT64: {
		struct addr_prefix pfx;

		if ((r = parse_prefix_opt(name, arg, &pfx)) < 0)
			return r;
		if (c == O_OWN)
			return policy_add_own_extra(&cfg->policy, &pfx);
		r = policy_add_nat64(&cfg->policy, &pfx);
		if (r == -EINVAL)
			return opt_error(name, arg, "is not an IPv6 /96 prefix");
		if (r == -ENOSPC)
			return opt_error(name, arg, "is one NAT64 prefix too many (8 at most)");
		return r;
	}
	case O_TFO_KEY:
		if (strlen(arg) >= sizeof(cfg->tfo_key_path))
			return opt_error(name, arg, "is too long a path");
		strcpy(cfg->tfo_key_path, arg);
		return 0;
	case O_KEYS:
		if (strlen(arg) >= sizeof(cfg->policy.keys_path))
			return opt_error(name, arg, "is too long a path");
		strcpy(cfg->policy.keys_path, arg);
		return 0;
	case O_CLIENT_PREFIX6:
		if ((r = opt_uint(name, arg, 1, 128, &v)) < 0)
			return r;
		cfg->client_prefix6 = (unsigned)v;
		return 0;
	case O_HS_TIMEOUT:
	case O_CONNECT_TIMEOUT:
		if ((r = opt_seconds_ms(name, arg, 3600, &ms)) < 0)
			return r;
		if (ms == 0)
			return opt_error(name, arg, "must be more than 0");
		*(c == O_HS_TIMEOUT ? &cfg->handshake_timeout_ms : &cfg->connect_timeout_ms) = ms;
		return 0;
	case O_IDLE_TIMEOUT:
		if ((r = opt_seconds_ms(name, arg, 30 * 86400, &ms)) < 0)
			return r;
		cfg->idle_timeout_s = (ms + 999) / 1000;
		return 0;
	case O_DRAIN_TIMEOUT:
		if ((r = opt_seconds_ms(name, arg, 3600, &ms)) < 0)
			return r;
		cfg->drain_timeout_ms = ms;
		return 0;
	case O_KEEPALIVE:
		if ((r = opt_uint(name, arg, 0, 7200, &v)) < 0)
			return r;
		cfg->keepalive_s = (unsigned)v;
		return 0;
	case O_BUFFERS:
		return opt_pow2(name, arg, 2, 32768, &cfg->nbufs);
	case O_BUFFER_SIZE:
		if ((r = opt_uint(name, arg, 1024, 4 << 20, &v)) < 0)
			return r;
		cfg->bufsize = (unsigned)v;
		return 0;
	case O_LOG_LEVEL:
		return opt_log_level(name, arg, &cfg->log_level);
	case O_METRICS:
		return metrics_opt_listen(name, arg, &cfg->metrics, &cfg->metrics_len);
	case O_CONFIG:
	case O_CHECK_CONFIG:
		return 0;  /* handled before parsing */
	case O_VERSION:
		printf("mptcp-concentrator " VERSION "\n");
		exit(0);
	case O_HELP:
		usage(stdout);
		exit(0);
	}
	usage(stderr);
	return -EINVAL;
}

static const struct config_key config_keys[] = {
	{ "listen", O_LISTEN, CONFIG_LIST, 0, NULL },
	{ "workers", O_WORKERS, CONFIG_NUMBER, 0, NULL },
	{ "max_flows", O_MAX_FLOWS, CONFIG_NUMBER, 0, NULL },
	{ "log_level", O_LOG_LEVEL, CONFIG_STRING, 0, NULL },
	{ "metrics_listen", O_METRICS, CONFIG_STRING, 0, NULL },
	{ "policy.allow_clients", O_ALLOW_CLIENT, CONFIG_LIST, 0, NULL },
	{ "policy.allow_any_client", O_ALLOW_ANY, CONFIG_BOOL, O_NO_ALLOW_ANY, NULL },
	{ "policy.allow_destinations", O_ALLOW_DEST, CONFIG_LIST, 0, NULL },
	{ "policy.deny_destinations", O_DENY_DEST, CONFIG_LIST, 0, NULL },
	{ "policy.max_flows_per_client", O_MAX_PER_CLIENT, CONFIG_NUMBER, 0, NULL },
	{ "max_handshakes", O_MAX_HS, CONFIG_NUMBER, 0, NULL },
	{ "policy.max_handshakes_per_client", O_MAX_HS_PER_CLIENT, CONFIG_NUMBER, 0, NULL },
	{ "policy.ipv6_client_prefix", O_CLIENT_PREFIX6, CONFIG_NUMBER, 0, NULL },
	{ "policy.keys_file", O_KEYS, CONFIG_STRING, 0, NULL },
	{ "policy.own_addresses", O_OWN, CONFIG_LIST, 0, NULL },
	{ "tfo_key_file", O_TFO_KEY, CONFIG_STRING, 0, NULL },
	{ "policy.nat64_prefixes", O_NAT64, CONFIG_LIST, 0, NULL },
	{ "timeouts.handshake", O_HS_TIMEOUT, CONFIG_NUMBER, 0, NULL },
	{ "timeouts.connect", O_CONNECT_TIMEOUT, CONFIG_NUMBER, 0, NULL },
	{ "timeouts.idle", O_IDLE_TIMEOUT, CONFIG_NUMBER, 0, NULL },
	{ "timeouts.drain", O_DRAIN_TIMEOUT, CONFIG_NUMBER, 0, NULL },
	{ "timeouts.keepalive", O_KEEPALIVE, CONFIG_NUMBER, 0, NULL },
	{ "buffers.count", O_BUFFERS, CONFIG_NUMBER, 0, NULL },
	{ "buffers.size", O_BUFFER_SIZE, CONFIG_NUMBER, 0, NULL },
	{ NULL, 0, 0, 0, NULL },
};

static void config_defaults(struct conc_config *cfg)
{
	cfg->handshake_timeout_ms = 5000;
	cfg->connect_timeout_ms = 10000;
	cfg->idle_timeout_s = 7200;
	cfg->drain_timeout_ms = 10000;
	cfg->keepalive_s = 60;
	cfg->max_per_client = 4096;
	cfg->max_hs_per_client = 1024;
	cfg->client_prefix6 = 64;
	cfg->nbufs = 1024;
	cfg->bufsize = 65536;
	cfg->log_level = LOG_INFO;
	cfg->workers = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	if (cfg->workers < 1)
		cfg->workers = 1;
}

/* The key file named by --keys / policy.keys_file, or else the systemd
 * credential "keys" (LoadCredential=keys:...), which is how a key file
 * readable only by root reaches a daemon running as a dynamic user. Read
 * at start and at every reload: rotating keys is editing the file and
 * reloading. */
static int load_keys(struct policy *p)
{
	char errs[2048], cred[sizeof(p->keys_path)];
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	int r;

	if (!p->keys_path[0] && dir) {
		if ((size_t)snprintf(cred, sizeof(cred), "%s/keys", dir) < sizeof(cred) &&
		    access(cred, F_OK) == 0)
			strcpy(p->keys_path, cred);
	}
	if (!p->keys_path[0])
		return 0;
	r = cookie_keys_load(p->keys_path, &p->keys, errs, sizeof(errs));
	if (r < 0) {
		fputs(errs[0] ? errs : "key file: out of memory\n", stderr);
		return r;
	}
	return 0;
}

/* Defaults, then the config file, then the command line, then checks that
 * span settings. Used at start and again for each reload, into a fresh cfg
 * (with its own policy) that is either adopted or freed. */
static int load_settings(int argc, char **argv, struct conc_config *cfg)
{
	struct parse p = { .cfg = cfg };
	bool explicit_file, check;
	/* The file's name, for messages (config_load_all reads it). */
	const char *file = config_prescan(argc, argv, CONC_CONFIG_PATH, &explicit_file, &check);
	int r;

	memset(cfg, 0, sizeof(*cfg));
	config_defaults(cfg);
	if (policy_init(&cfg->policy) < 0)
		return -ENOMEM;
	if (config_load_all(argc, argv, file, long_opts, config_keys, apply_opt, &p, &p.cmdline,
			    cfg->config_path, sizeof(cfg->config_path)) < 0)
		return -EINVAL;
	if (!cfg->policy.allow_any_client && cfg->policy.nclients == 0) {
		fprintf(stderr,
			"mptcp-concentrator: no client allowed (--allow-client, or policy.allow_clients\n"
			"in %s): refusing to start as an open proxy. Name the gateways'\n"
			"prefixes, or set --allow-any-client / policy.allow_any_client if every\n"
			"address may use this concentrator.\n", file);
		return -EINVAL;
	}
	r = load_keys(&cfg->policy);
	if (r < 0)
		return r;
	if (!cfg->tfo_key_path[0] && getenv("STATE_DIRECTORY")) {
		/* systemd's StateDirectory=: kept across restarts. */
		const char *d = getenv("STATE_DIRECTORY");

		if (strlen(d) + sizeof("/tfo-key") <= sizeof(cfg->tfo_key_path))
			snprintf(cfg->tfo_key_path, sizeof(cfg->tfo_key_path), "%s/tfo-key", d);
	}
	if (cfg->tfo_key_path[0]) {
		r = tfokey_load(cfg->tfo_key_path, cfg->tfo_key, &cfg->tfo_key_len);
		if (r < 0)
			return r;
	}
	if (cfg->nlisten == 0) {
		r = addr_parse_hostport("[::]", CONVERT_DEFAULT_PORT, &cfg->listen[0],
					&cfg->listen_len[0]);
		if (r < 0)
			return r;
		cfg->nlisten = 1;
	}
	r = policy_add_own_addresses(&cfg->policy);
	if (r < 0)
		log_errno(r, "cannot list local addresses, they are not denied: %m");
	return 0;
}

static bool same_listen(const struct conc_config *a, const struct conc_config *b)
{
	if (a->nlisten != b->nlisten)
		return false;
	for (unsigned i = 0; i < a->nlisten; i++)
		if (a->listen_len[i] != b->listen_len[i] ||
		    memcmp(&a->listen[i], &b->listen[i], a->listen_len[i]))
			return false;
	return true;
}

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

	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)log_now_us());
	if (load_settings(argc, argv, &n) < 0) {
		policy_free(&n.policy);
		c->reloads_failed++;
		log_error("reload: %s has errors (above); still running with the previous configuration",
			  cur->config_path[0] ? cur->config_path : "the command line");
		sd_notify(0, "READY=1");
		return;
	}
#define RESTART_ONLY(cond, what) \
	if (cond) snprintf(changed + strlen(changed), sizeof(changed) - strlen(changed), "%s%s", \
			   changed[0] ? ", " : "", what)
	RESTART_ONLY(!c->ninherited && !same_listen(cur, &n), "listen");
	RESTART_ONLY(n.workers != cur->workers, "workers");
	RESTART_ONLY(n.max_flows && n.max_flows != cur->max_flows, "max_flows");
	RESTART_ONLY(n.max_handshakes && n.max_handshakes != cur->max_handshakes, "max_handshakes");
	RESTART_ONLY(n.client_prefix6 != cur->client_prefix6, "policy.ipv6_client_prefix");
	RESTART_ONLY(n.nbufs != cur->nbufs || n.bufsize != cur->bufsize, "buffers");
	RESTART_ONLY(n.drain_timeout_ms != cur->drain_timeout_ms, "timeouts.drain");
	RESTART_ONLY(n.metrics_len != cur->metrics_len ||
		     memcmp(&n.metrics, &cur->metrics, n.metrics_len), "metrics_listen");
#undef RESTART_ONLY
	if (changed[0])
		log_warn("reload: %s changed but take%s effect only after a restart",
			 changed, strchr(changed, ',') ? "" : "s");

	if (n.tfo_key_len && (n.tfo_key_len != cur->tfo_key_len ||
			      memcmp(n.tfo_key, cur->tfo_key, n.tfo_key_len))) {
		rotate_tfo_key(c, &n);
	}
	pthread_rwlock_wrlock(&c->live_lock);
	policy_free(&cur->policy);
	cur->policy = n.policy;
	cur->handshake_timeout_ms = n.handshake_timeout_ms;
	cur->connect_timeout_ms = n.connect_timeout_ms;
	cur->idle_timeout_s = n.idle_timeout_s;
	cur->keepalive_s = n.keepalive_s;
	cur->max_per_client = n.max_per_client;
	cur->max_hs_per_client = n.max_hs_per_client;
	cur->log_level = n.log_level;
	memcpy(cur->config_path, n.config_path, sizeof(cur->config_path));
	pthread_rwlock_unlock(&c->live_lock);
	quota_set(&c->limits, QUOTA_FLOW, cur->max_flows, n.max_per_client);
	quota_set(&c->limits, QUOTA_HANDSHAKE, cur->max_handshakes, n.max_hs_per_client);
	log_set_level(n.log_level);
	c->reloads_ok++;
	log_info("reloaded %s: %u client prefixes%s, %u destination rules, %u flows per client, "
		 "%u gateway keys",
		 cur->config_path[0] ? cur->config_path : "(no file; command line)",
		 cur->policy.nclients, cur->policy.allow_any_client ? " (any client)" : "",
		 cur->policy.nrules, cur->max_per_client, cur->policy.keys.n);
	sd_notify(0, "READY=1");
}

/* The workers' counters and relay stats summed. Each is written by its
 * worker only and read here without locks (aligned 64-bit: never torn). */
static void conc_totals(const struct conc *c, struct conc_counters *ret_n,
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

static void log_summary(struct conc *c)
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
	for (int k = 0; k < 256; k++)
		if (t.refused[k])
			log_info("refused with error %d %s: %llu", k,
				 convert_error_name((unsigned)k),
				 (unsigned long long)t.refused[k]);
}

/* Socket activation: systemd created the listeners (a .socket unit; with
 * SocketProtocol=mptcp from systemd 257 on, plain TCP before). They replace
 * --listen; their addresses are read back for the logs and the deny list. */
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
		setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen));
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

/* Histogram bounds: upstream connect latency (seconds) and subflows. */
const double conc_connect_bounds[CONC_CONNECT_BUCKETS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
const double conc_subflow_bounds[CONC_SUBFLOW_BUCKETS] = { 0, 1, 2, 3, 4, 6, 8 };

static void render_metrics(void *ctx, struct mbuf *b)
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
	metrics_u64(b, "mptcp_concentrator_info", "version=\"" VERSION "\"", 1);
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
	metrics_parked(b, "mptcp_concentrator", s.parked, s.parked_bytes);
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
}

/* One line for `systemctl status`. */
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

/* The watchdog is fed only while every worker's loop is turning (each bumps
 * its heartbeat every tick), so a stuck worker gets the daemon restarted. */
static bool workers_alive(struct conc *c, uint64_t *seen)
{
	bool ok = true;

	for (unsigned i = 0; i < c->cfg.workers; i++) {
		uint64_t h = atomic_load_explicit(&c->workers[i].heartbeat, memory_order_relaxed);

		if (h == seen[i])
			ok = false;
		seen[i] = h;
	}
	return ok;
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
	uint64_t wd_usec = 0, *seen = calloc(c->cfg.workers, sizeof(*seen));
	uint64_t period_ms = 5000, next_status = 0;

	if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec / 2000 < period_ms)
		period_ms = wd_usec / 2000 ? wd_usec / 2000 : 1;
	for (;;) {
		struct timespec ts = { .tv_sec = (time_t)(period_ms / 1000),
				       .tv_nsec = (long)(period_ms % 1000) * 1000000 };
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
		}
		if (wd_usec && seen && workers_alive(c, seen))
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
	if (load_settings(argc, argv, &c->cfg) < 0) {
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
	if (!c->cfg.max_flows)
		c->cfg.max_flows = fit - c->cfg.max_handshakes / 2;
	else if (c->cfg.max_flows > fit)
		log_warn("--max-flows %u exceeds what the open-file limit allows (%u)",
			 c->cfg.max_flows, fit);

	if (quota_init(&c->limits, (uint8_t)c->cfg.client_prefix6) < 0 ||
	    replay_init(&c->replay, CONC_REPLAY_ENTRIES) < 0)
		return 1;
	quota_set(&c->limits, QUOTA_FLOW, c->cfg.max_flows, c->cfg.max_per_client);
	quota_set(&c->limits, QUOTA_HANDSHAKE, c->cfg.max_handshakes, c->cfg.max_hs_per_client);

	/* Signals go to the main thread only, through sigtimedwait(). */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

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
					 render_metrics, c);
		if (r < 0)
			log_errno(r, "metrics on %s: %m",
				  addr_format((struct sockaddr *)&c->cfg.metrics, a));
		else
			log_info("metrics at http://%s/metrics",
				 addr_format((struct sockaddr *)&c->cfg.metrics, a));
	}
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
		atomic_store(&c->stopping, 1);
	}
	for (unsigned i = 0; i < c->cfg.workers; i++)
		pthread_join(c->workers[i].thread, NULL);
	ownaddr_stop(c);
	metrics_server_stop(&c->metrics);
	if (r == 0)
		log_summary(c);

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
