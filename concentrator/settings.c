/* The concentrator's settings: one table (optable.h) from which the
 * command line, the config file (JSON or uci), --help, the man pages and
 * the README's reference table are made; defaults; loading at start and
 * at each reload. */
#include "concentrator.h"
#include "optable.h"
#include "opts.h"
#include "settings.h"
#include "config.h"
#include "metrics.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	O_LISTEN = 256, O_ALLOW_CLIENT, O_ALLOW_ANY, O_NO_ALLOW_ANY, O_OPEN_PROXY, O_ALLOW_DEST, O_DENY_DEST,
	O_OWN, O_NAT64, O_TFO_KEY, O_KEYS, O_WORKERS, O_MAX_PARKED, O_MAX_FLOWS, O_MAX_PER_CLIENT, O_MAX_HS,
	O_MAX_HS_PER_CLIENT, O_CLIENT_PREFIX6, O_REPLAY_CACHE, O_HS_TIMEOUT, O_CONNECT_TIMEOUT, O_IDLE_TIMEOUT,
	O_DRAIN_TIMEOUT, O_KEEPALIVE, O_BUFFERS, O_BUFFER_SIZE, O_LOG_LEVEL, O_METRICS,
	O_CONFIG, O_CHECK_CONFIG, O_VERSION, O_HELP, O_CONGESTION, O_JOIN_ADDR, O_SERVICE,
	O_ROUTE_TABLE, O_DRAIN_DEADLINE, O_BOX, O_VERIFY, O_NO_VERIFY, O_UDP, O_NO_UDP, O_UDP_MAX_FLOWS,
	O_UDP_PER_GW, O_UDP_RATE, O_UDP_TIMEOUT, O_UDP_STREAM_TIMEOUT, O_REPLAY_PEER, O_REPLAY_LISTEN,
	O_END,
};

#define AT(field) OPT_AT(struct conc_config, field)

static const struct opt_spec conc_opts[] = {
	{ "listen", O_LISTEN, "ADDR:PORT", "listen", CONFIG_LIST, .reload = OPT_RESTART,
	  .deflt = "[::]:5124",
	  .help = "address to accept gateways' MPTCP connections on; repeatable",
	  .more = "IPv4 a.b.c.d:p or IPv6 [x::y]:p; the default takes IPv4 too." },
	{ "allow-client", O_ALLOW_CLIENT, "CIDR", "policy.allow_clients", CONFIG_LIST,
	  .reload = OPT_LIVE,
	  .help = "a prefix of gateway addresses allowed to connect; repeatable; without one "
		  "(or allow-any-client) the concentrator refuses to start" },
	{ "allow-any-client", O_ALLOW_ANY, NULL, "policy.allow_any_client", CONFIG_BOOL,
	  O_NO_ALLOW_ANY, .type = OT_TRUE, .reload = OPT_LIVE, .deflt = "off",
	  .off = offsetof(struct conc_config, policy.allow_any_client), .size = sizeof(bool),
	  .help = "allow every client address; with keys (--keys), every gateway that holds one",
	  .more = "Without it and without allow-client the daemon refuses to start. Without keys it is an open proxy for the whole Internet: then it refuses to start unless open-proxy says so too." },
	{ "open-proxy", O_OPEN_PROXY, NULL, "policy.open_proxy", CONFIG_BOOL, .type = OT_TRUE,
	  .reload = OPT_LIVE, .deflt = "off",
	  .off = offsetof(struct conc_config, policy.open_proxy), .size = sizeof(bool),
	  .help = "yes, allow-any-client without keys: anyone on the Internet may use this "
		  "concentrator to reach any allowed destination from its address",
	  .more = "Only behind a filter of your own that lets gateways alone reach the listening port." },
	{ "no-allow-any-client", O_NO_ALLOW_ANY, NULL, NULL, 0, .type = OT_FALSE,
	  .off = offsetof(struct conc_config, policy.allow_any_client), .size = sizeof(bool),
	  .reload = OPT_LIVE, .hidden = true, .help = "" },
	{ "allow-dest", O_ALLOW_DEST, "CIDR", "policy.allow_destinations", CONFIG_LIST,
	  .reload = OPT_LIVE,
	  .help = "allow destinations in CIDR, overriding a shorter built-in deny "
		  "(private, loopback, this host); repeatable",
	  .more = "Example: 10.20.0.0/16 opens one internal range; the longest matching prefix decides, at equal length an operator rule beats a built-in one and deny beats allow." },
	{ "deny-dest", O_DENY_DEST, "CIDR", "policy.deny_destinations", CONFIG_LIST,
	  .reload = OPT_LIVE, .help = "deny destinations in CIDR; repeatable" },
	{ "own-address", O_OWN, "CIDR", "policy.own_addresses", CONFIG_LIST, .reload = OPT_LIVE,
	  .help = "also this host's, never a destination (a 1:1 NAT's public address); "
		  "repeatable",
	  .more = "The interfaces' own addresses are followed automatically; no allow-dest opens these." },
	{ "nat64-prefix", O_NAT64, "PFX/96", "policy.nat64_prefixes", CONFIG_LIST,
	  .reload = OPT_LIVE, .deflt = "64:ff9b::/96 only",
	  .help = "another NAT64 prefix: the IPv4 address it embeds must pass the IPv4 rules; "
		  "repeatable, 8 at most" },
	{ "tfo-key-file", O_TFO_KEY, "FILE", "tfo_key_file", CONFIG_STRING, .type = OT_STRING,
	  AT(tfo_key_path), .reload = OPT_LIVE,
	  .deflt = "tfo-key in the systemd state directory",
	  .help = "the listeners' TCP Fast Open key (created if missing), kept across "
		  "restarts and shared by the boxes of a service; a reload with a new key keeps "
		  "the old one as backup",
	  .more = "One line of 32 hex digits (a second line: the previous key), created with a random key if missing, mode 600. Without systemd and without this option the kernel's key is used." },
	{ "keys", O_KEYS, "FILE", "policy.keys_file", CONFIG_STRING, .type = OT_STRING,
	  .off = offsetof(struct conc_config, policy.keys_path),
	  .size = sizeof(((struct conc_config *)0)->policy.keys_path), .reload = OPT_LIVE,
	  .deflt = "the systemd credential \"keys\", if any",
	  .help = "per-gateway keys (lines ID SECRET [PREFIX...]): every client must put a "
		  "valid authenticator in its Cookie TLV",
	  .more = "See \"Running it on the Internet\" in the README." },
	{ "workers", O_WORKERS, "N", "workers", CONFIG_NUMBER, .type = OT_UINT, .min = 1,
	  .max = 256, AT(workers), .reload = OPT_RESTART, .deflt = "the CPU count",
	  .help = "worker threads, each with its own io_uring and listeners" },
	OPTABLE_MAX_PARKED(struct conc_config, O_MAX_PARKED, "256"),
	{ "max-flows", O_MAX_FLOWS, "N", "max_flows", CONFIG_NUMBER, .type = OT_UINT, .min = 1,
	  .max = 10000000, AT(max_flows), .reload = OPT_RESTART,
	  .deflt = "what the open-file limit allows",
	  .help = "flows at once; over it, new requests get Error 'resource exceeded'",
	  .more = "Each flow holds two sockets." },
	{ "max-flows-per-client", O_MAX_PER_CLIENT, "N", "policy.max_flows_per_client",
	  CONFIG_NUMBER, .type = OT_UINT, .min = 0, .max = 10000000, AT(max_per_client),
	  .reload = OPT_LIVE, .deflt = "4096",
	  .help = "flows at once per client (0 = unlimited); over it: Error 'resource exceeded'",
	  .more = "A client is an IPv4 address or an IPv6 prefix (client-prefix6)." },
	{ "max-handshakes", O_MAX_HS, "N", "max_handshakes", CONFIG_NUMBER, .type = OT_UINT,
	  .min = 1, .max = 10000000, AT(max_handshakes), .reload = OPT_RESTART,
	  .deflt = "4096, or a quarter of what the open-file limit allows",
	  .help = "connections not yet relaying (reading the request, connecting, refusing) "
		  "at once",
	  .more = "Each worker holds an equal share (rounded up). At its share a worker closes "
		  "its oldest handshake to make room for a new connection, so connections held "
		  "open cannot lock out a client that sends its request at once." },
	{ "max-handshakes-per-client", O_MAX_HS_PER_CLIENT, "N",
	  "policy.max_handshakes_per_client", CONFIG_NUMBER, .type = OT_UINT, .min = 0,
	  .max = 10000000, AT(max_hs_per_client), .reload = OPT_LIVE, .deflt = "1024",
	  .help = "of those, per client (0 = unlimited); over either, a connection is reset "
		  "at once" },
	{ "client-prefix6", O_CLIENT_PREFIX6, "LEN", "policy.ipv6_client_prefix", CONFIG_NUMBER,
	  .type = OT_UINT, .min = 1, .max = 128, AT(client_prefix6), .reload = OPT_RESTART,
	  .deflt = "64", .help = "IPv6 clients are counted per /LEN (IPv4 per address)",
	  .more = "A subscriber picks any address from its /64." },
	{ "replay-cache", O_REPLAY_CACHE, "N", "policy.replay_cache", CONFIG_NUMBER,
	  .type = OT_UINT, .min = 16, .max = 1u << 26, AT(replay_entries), .reload = OPT_RESTART,
	  .deflt = "262144",
	  .help = "cookies remembered (each is good once), shared fairly between keys",
	  .more = "When full, the key holding the most gives up its oldest cookie and refuses cookies as old from then on: one key's traffic or clock costs that key alone. Size it to the connections all gateways open in three minutes (with replay-peer: at every box of the cluster together); each entry takes about 70 bytes when used." },
	{ "handshake-timeout", O_HS_TIMEOUT, "SEC", "timeouts.handshake", CONFIG_NUMBER,
	  .type = OT_MS_NONZERO, .max = 3600, AT(handshake_timeout_ms), .reload = OPT_LIVE,
	  .deflt = "5", .help = "time a client has to send its Convert message" },
	{ "connect-timeout", O_CONNECT_TIMEOUT, "SEC", "timeouts.connect", CONFIG_NUMBER,
	  .type = OT_MS_NONZERO, .max = 3600, AT(connect_timeout_ms), .reload = OPT_LIVE,
	  .deflt = "10", .help = "upstream connect timeout",
	  .more = "On expiry the client gets Error 97." },
	{ "idle-timeout", O_IDLE_TIMEOUT, "SEC", "timeouts.idle", CONFIG_NUMBER,
	  .type = OT_SECONDS_UP, .max = 30 * 86400, AT(idle_timeout_s), .reload = OPT_LIVE,
	  .deflt = "7200", .help = "close flows idle this long (0 = never)" },
	{ "drain-timeout", O_DRAIN_TIMEOUT, "SEC", "timeouts.drain", CONFIG_NUMBER,
	  .type = OT_MS, .max = 3600, AT(drain_timeout_ms), .reload = OPT_RESTART,
	  .deflt = "10", .help = "at SIGTERM, the time running flows get to finish" },
	{ "keepalive", O_KEEPALIVE, "SEC", "timeouts.keepalive", CONFIG_NUMBER, .type = OT_UINT,
	  .min = 0, .max = 7200, AT(keepalive_s), .reload = OPT_LIVE, .deflt = "60",
	  .help = "TCP keepalive idle time on both sockets of a flow; a dead peer is found in "
		  "about twice that (0 = off)",
	  .more = "MPTCP has no TCP_USER_TIMEOUT. An idle MPTCP flow left with no subflow gets one more such period to re-join over another path, then is reset." },
	{ "congestion", O_CONGESTION, "NAME", "congestion", CONFIG_STRING, .reload = OPT_RESTART,
	  .deflt = "the system's (net.ipv4.tcp_congestion_control)",
	  .help = "TCP congestion control of every subflow of the gateways' MPTCP connections "
		  "(what downloads are sent with)",
	  .more = "See gw-agent's congestion: cubic where the system default is BBR." },
	{ "join-address", O_JOIN_ADDR, "ADDR", "cluster.join_address", CONFIG_STRING,
	  .reload = OPT_RESTART, .deflt = "none: a box on its own",
	  .help = "this box's own unicast address, for one of several boxes behind a shared "
		  "service address: announced to gateways (ADD_ADDR) for their extra subflows, "
		  "which then never go to the shared address",
	  .more = "Sets net.mptcp.allow_join_initial_addr_port=0 and adds a signal endpoint; "
		  "needs CAP_NET_ADMIN (deploy/examples/mptcp-concentrator-cluster.conf). A listen "
		  "address must cover it (the default [::] does)." },
	{ "service-route", O_SERVICE, "PREFIX", "cluster.service_routes", CONFIG_LIST,
	  .reload = OPT_RESTART,
	  .help = "the shared service address: routed to lo in route-table while this box is "
		  "ready and not draining, for the routing daemon (BIRD, FRR) to announce; "
		  "repeatable, 4 at most" },
	{ "route-table", O_ROUTE_TABLE, "N", "cluster.route_table", CONFIG_NUMBER,
	  .type = OT_UINT, .min = 1, .max = 0x7fffffff, AT(route_table), .reload = OPT_RESTART,
	  .deflt = "5124", .help = "the routing table the service routes go into" },
	{ "drain-deadline", O_DRAIN_DEADLINE, "SEC", "cluster.drain_deadline", CONFIG_NUMBER,
	  .type = OT_SECONDS_UP, .max = 7 * 86400, AT(drain_deadline_s), .reload = OPT_LIVE,
	  .deflt = "600",
	  .help = "at SIGUSR1 (drain) the service routes are withdrawn and running flows get "
		  "this long; then the daemon stops as at SIGTERM and exits 0" },
	{ "replay-peer", O_REPLAY_PEER, "ADDR:PORT", "cluster.replay_peers", CONFIG_LIST,
	  .reload = OPT_RESTART,
	  .help = "another box of the cluster (its replay-listen): every cookie this box takes "
		  "is sent there at once, and its cookies are taken here, so a cookie is good "
		  "once in the whole cluster; repeatable, 8 at most",
	  .more = "Needs replay-listen and the TFO key file the boxes share (tfo-key-file), "
		  "which authenticates the messages. A replay that reaches another box before "
		  "the message (a LAN's delay) is still taken, and counted there "
		  "(README, \"Several concentrators\")." },
	{ "replay-listen", O_REPLAY_LISTEN, "ADDR:PORT", "cluster.replay_listen", CONFIG_STRING,
	  .reload = OPT_RESTART, .deflt = "none",
	  .help = "where this box hears the other boxes' cookies (UDP), from the replay-peer "
		  "addresses only; the peers' messages come from their own replay-listen" },
	{ "box", O_BOX, "NAME", "cluster.box", CONFIG_STRING, .type = OT_STRING, AT(box),
	  .reload = OPT_RESTART, .deflt = "none",
	  .help = "a label box=\"NAME\" on every metric, to tell the boxes of a service apart "
		  "in one Prometheus" },
	{ "verify-stream", O_VERIFY, NULL, "verify_stream", CONFIG_BOOL, O_NO_VERIFY,
	  .type = OT_TRUE, AT(verify_stream), .reload = OPT_RESTART, .deflt = "on",
	  .help = "agree to a gateway's offer of a verified stream: records with a CRC-32C both "
		  "ways, so bytes the kernel's MPTCP damaged reset the flow instead of being "
		  "passed on",
	  .more = "Our gw-agent offers it in the Convert message (a private-use TLV); clients "
		  "that do not offer it are served as before. Costs 8 bytes per record and a "
		  "CRC pass over the data at each end (docs/kernel-defects.md)." },
	{ "no-verify-stream", O_NO_VERIFY, NULL, NULL, 0, .type = OT_FALSE, AT(verify_stream),
	  .reload = OPT_RESTART, .help = "answer an offer of a verified stream by not echoing it: "
		  "plain RFC 8803 streams only" },
	{ "udp", O_UDP, NULL, "udp.enabled", CONFIG_BOOL, O_NO_UDP, .type = OT_TRUE, AT(udp),
	  .reload = OPT_RESTART, .deflt = "on",
	  .help = "carry gateways' LAN UDP: the UDP carrier (docs/udp-carrier.md) on each listen "
		  "address's port, in UDP",
	  .more = "Sessions are opened with the same keys (or allow-client prefixes) as TCP; every "
		  "datagram after that is sealed (ChaCha20-Poly1305) and taken once. Each LAN UDP "
		  "source gets a socket of its own here: endpoint-independent mapping, "
		  "address-dependent filtering (RFC 4787)." },
	{ "no-udp", O_NO_UDP, NULL, NULL, 0, .type = OT_FALSE, AT(udp), .reload = OPT_RESTART,
	  .help = "TCP only: no UDP socket is opened" },
	{ "udp-max-flows", O_UDP_MAX_FLOWS, "N", "udp.max_flows", CONFIG_NUMBER, .type = OT_UINT,
	  .min = 16, .max = 1000000, AT(udp_max_flows), .reload = OPT_RESTART, .deflt = "4096",
	  .help = "LAN UDP flows (sources) at once, all gateways together; each holds a socket",
	  .more = "Their descriptors are set aside before max-flows' default is worked out (at most "
		  "half the open-file limit). A quarter as many sessions (gateways), plus 64, can be "
		  "open." },
	{ "udp-max-flows-per-gateway", O_UDP_PER_GW, "N", "udp.max_flows_per_gateway",
	  CONFIG_NUMBER, .type = OT_UINT, .min = 0, .max = 1000000, AT(udp_per_gateway),
	  .reload = OPT_LIVE, .deflt = "1024",
	  .help = "of those, per gateway (its key, or without keys its address or IPv6 prefix; 0 = "
		  "no limit); over it a new flow's datagrams are dropped and counted" },
	{ "udp-rate-per-gateway", O_UDP_RATE, "N", "udp.rate_per_gateway", CONFIG_NUMBER,
	  .type = OT_UINT, .min = 0, .max = 100000000, AT(udp_rate_per_gateway),
	  .reload = OPT_LIVE, .deflt = "50000",
	  .help = "datagrams a second a gateway (its key, or address) may send (0 = no limit); "
		  "over it they are dropped and counted",
	  .more = "Bursts of a quarter second of it pass. 50,000 datagrams of 1,400 bytes are "
		  "560 Mbit/s." },
	OPTABLE_UDP_TIMEOUTS(struct conc_config, O_UDP_TIMEOUT, O_UDP_STREAM_TIMEOUT),
	{ "buffers", O_BUFFERS, "N", "buffers.count", CONFIG_NUMBER, .type = OT_POW2, .min = 2,
	  .max = 32768, AT(nbufs), .reload = OPT_RESTART, .deflt = "1024",
	  .help = "receive buffers per worker, a power of 2",
	  .more = "Shared by all the worker's flows." },
	{ "buffer-size", O_BUFFER_SIZE, "BYTES", "buffers.size", CONFIG_NUMBER, .type = OT_UINT,
	  .min = 1024, .max = 4 << 20, AT(bufsize), .reload = OPT_RESTART, .deflt = "65536",
	  .help = "size of each buffer" },
	OPTABLE_COMMON_ENTRIES(struct conc_config, O_LOG_LEVEL, O_METRICS, O_CONFIG, O_CHECK_CONFIG, O_VERSION,
			       O_HELP, CONC_CONFIG_PATH, "key files"),
	{ .name = NULL },
};

const struct optable conc_optable = {
	.program = "mptcp-concentrator",
	.synopsis = "mptcp-concentrator [OPTIONS]",
	.summary = "Terminates MPTCP (RFC 8803 Convert) connections and re-originates TCP.",
	.version = CONC_VERSION,
	.opts = conc_opts,
};

struct parse {
	struct conc_config *cfg;
	bool cmdline;
	bool cleared[O_END - O_LISTEN];  /* lists the command line replaced */
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

/* Command-line values replace a config file's list, not add to it. */
static void clear_list_once(struct parse *p, int c)
{
	struct conc_config *cfg = p->cfg;

	if (!p->cmdline || p->cleared[c - O_LISTEN])
		return;
	p->cleared[c - O_LISTEN] = true;
	switch (c) {
	case O_LISTEN: cfg->nlisten = 0; break;
	case O_SERVICE: cfg->nservice = 0; break;
	case O_REPLAY_PEER: cfg->npeers = 0; break;
	case O_ALLOW_CLIENT: policy_clear_operator(&cfg->policy, true, false, false); break;
	case O_ALLOW_DEST: policy_clear_operator(&cfg->policy, false, true, false); break;
	case O_DENY_DEST: policy_clear_operator(&cfg->policy, false, false, true); break;
	case O_OWN: cfg->policy.nown_extra = 0; break;
	case O_NAT64: cfg->policy.nnat64 = 0; break;
	}
}

/* One setting, from the command line or a config file (config.c turns
 * JSON and uci values into this same text), so both are checked by the
 * same code: the table's simple types here, the rest below. */
static int apply_opt(void *ctx, int c, const char *arg)
{
	struct parse *p = ctx;
	struct conc_config *cfg = p->cfg;
	const struct opt_spec *s = optable_find(&conc_optable, c);
	const char *name = s ? s->name : "";
	int r;

	if (!s)
		return -EINVAL;  /* getopt has said what was wrong */
	clear_list_once(p, c);
	r = optable_apply(&conc_optable, cfg, c, arg);
	if (r <= 0)
		return r;
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
	case O_ALLOW_DEST:
	case O_DENY_DEST: {
		struct addr_prefix pfx;

		if ((r = parse_prefix_opt(name, arg, &pfx)) < 0)
			return r;
		return policy_add_dest(&cfg->policy, &pfx, c == O_ALLOW_DEST, false);
	}
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
	case O_METRICS:
		return metrics_opt_listen(name, arg, &cfg->metrics, &cfg->metrics_len);
	case O_CONGESTION:
		return opt_congestion(name, arg, cfg->congestion, sizeof(cfg->congestion));
	case O_JOIN_ADDR: {
		struct addr_prefix pfx;

		/* A bare address: /32 and /128 are both 128 bits here (mapped IPv4). */
		if (addr_parse_prefix(arg, &pfx) < 0 || pfx.len != 128)
			return opt_error(name, arg, "is not an address");
		cfg->join_addr = pfx.addr;
		cfg->have_join_addr = true;
		return 0;
	}
	case O_REPLAY_PEER:
		if (cfg->npeers == CONC_MAX_PEERS)
			return opt_error(name, arg, "is one peer too many (8 at most)");
		if (addr_parse_hostport(arg, -1, &cfg->peer[cfg->npeers], &cfg->peer_len[cfg->npeers]) < 0)
			return opt_error(name, arg, "is not ADDR:PORT");
		cfg->npeers++;
		return 0;
	case O_REPLAY_LISTEN:
		if (addr_parse_hostport(arg, -1, &cfg->replay_listen, &cfg->replay_listen_len) < 0)
			return opt_error(name, arg, "is not ADDR:PORT");
		return 0;
	case O_SERVICE:
		if (cfg->nservice == CONC_MAX_SERVICE)
			return opt_error(name, arg, "is one service route too many (4 at most)");
		if ((r = parse_prefix_opt(name, arg, &cfg->service[cfg->nservice])) < 0)
			return r;
		cfg->nservice++;
		return 0;
	}
	return -EINVAL;
}

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
	cfg->replay_entries = CONC_REPLAY_ENTRIES;
	cfg->max_parked_mib = 256;
	cfg->nbufs = 1024;
	cfg->bufsize = 65536;
	cfg->verify_stream = true;
	cfg->udp = true;
	cfg->udp_max_flows = 4096;
	cfg->udp_per_gateway = 1024;
	cfg->udp_rate_per_gateway = 50000;
	cfg->udp_timeout_s = 30;
	cfg->udp_stream_timeout_s = 180;
	cfg->route_table = 5124;
	cfg->drain_deadline_s = 600;
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
int conc_load_settings(int argc, char **argv, struct conc_config *cfg)
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
	if (optable_load_all(&conc_optable, argc, argv, file, apply_opt, &p, &p.cmdline,
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
	if (cfg->policy.allow_any_client && !cfg->policy.keys.n && !cfg->policy.open_proxy) {
		fprintf(stderr,
			"mptcp-concentrator: allow-any-client without gateway keys (--keys, or\n"
			"policy.keys_file in %s) makes an open proxy for the whole Internet:\n"
			"refusing to start. Give the gateways keys, or name their prefixes\n"
			"(--allow-client), or set --open-proxy / policy.open_proxy as well if\n"
			"a filter of your own keeps everyone else out.\n", file);
		return -EINVAL;
	}
	/* The key file named by the operator, not the state directory's
	 * (a random key per box there): the boxes must share it. */
	if (cfg->npeers && (!cfg->replay_listen_len || !cfg->tfo_key_path[0])) {
		fprintf(stderr, "mptcp-concentrator: cluster.replay_peers (--replay-peer) needs %s\n",
			!cfg->replay_listen_len ? "cluster.replay_listen (--replay-listen): where the "
			"other boxes' messages come" : "tfo_key_file (--tfo-key-file), the same file on "
			"every box: the key the boxes share authenticates their messages");
		return -EINVAL;
	}
	/* Not made here (a random key on one box is one that no other box
	 * holds): it must come from the others. */
	if (cfg->npeers && access(cfg->tfo_key_path, F_OK) < 0) {
		fprintf(stderr, "mptcp-concentrator: %s: %s; with cluster.replay_peers the boxes "
			"share one TFO key file: copy it from another box\n", cfg->tfo_key_path,
			strerror(errno));
		return -EINVAL;
	}
	if (cfg->replay_listen_len) {
		struct in6_addr la, pa;
		uint16_t lp, pp;

		addr_to_in6((const struct sockaddr *)&cfg->replay_listen, &la, &lp);
		/* A wildcard would send from whatever address routing picks,
		 * which the peers would not know. */
		if (IN6_IS_ADDR_UNSPECIFIED(&la) || (addr_is_v4mapped(&la) && !la.s6_addr32[3])) {
			fprintf(stderr, "mptcp-concentrator: cluster.replay_listen must be this box's own "
				"address, not a wildcard: the other boxes take messages from that "
				"address alone\n");
			return -EINVAL;
		}
		for (unsigned i = 0; i < cfg->npeers; i++) {
			addr_to_in6((const struct sockaddr *)&cfg->peer[i], &pa, &pp);
			if (pp == lp && !memcmp(&pa, &la, sizeof(pa))) {
				fprintf(stderr, "mptcp-concentrator: cluster.replay_peers: peer %u is "
					"this box's own replay_listen\n", i + 1);
				return -EINVAL;
			}
		}
	}
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
	/* The other boxes are no destinations: their own addresses may trust
	 * ours (metrics, SSH, the replay messages themselves). */
	for (unsigned i = 0; i < cfg->npeers; i++) {
		struct addr_prefix pfx = { .len = 128 };

		addr_to_in6((const struct sockaddr *)&cfg->peer[i], &pfx.addr, NULL);
		r = policy_add_own_extra(&cfg->policy, &pfx);
		if (r < 0)
			return r;
	}
	if (cfg->replay_listen_len && !cfg->npeers) {
		fprintf(stderr, "mptcp-concentrator: cluster.replay_listen (--replay-listen) without "
			"cluster.replay_peers (--replay-peer): no box to share cookies with\n");
		return -EINVAL;
	}
	for (unsigned i = 0; i < cfg->npeers; i++)
		if (cfg->peer[i].ss_family != cfg->replay_listen.ss_family) {
			fprintf(stderr, "mptcp-concentrator: cluster.replay_peers: peer %u is not of "
				"the address family of cluster.replay_listen\n", i + 1);
			return -EINVAL;
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
		log_errno(r, "cannot list local addresses: every destination is refused until they can be: %m");
	return 0;
}


void conc_restart_changes(const struct conc_config *cur, const struct conc_config *n,
			  bool listen_inherited, char *buf, size_t len)
{
	bool same_listen = cur->nlisten == n->nlisten;

	for (unsigned i = 0; same_listen && i < n->nlisten; i++)
		same_listen = cur->listen_len[i] == n->listen_len[i] &&
			      !memcmp(&cur->listen[i], &n->listen[i], n->listen_len[i]);
	buf[0] = 0;
	if (!listen_inherited && !same_listen)
		snprintf(buf, len, "listen");
	optable_restart_changes(&conc_optable, cur, n, buf, len);
	if (n->metrics_len != cur->metrics_len || memcmp(&n->metrics, &cur->metrics, n->metrics_len))
		snprintf(buf + strlen(buf), len - strlen(buf), "%smetrics_listen", buf[0] ? ", " : "");
	if (n->replay_listen_len != cur->replay_listen_len ||
	    memcmp(&n->replay_listen, &cur->replay_listen, n->replay_listen_len))
		snprintf(buf + strlen(buf), len - strlen(buf), "%scluster.replay_listen",
			 buf[0] ? ", " : "");
	bool same_peers = n->npeers == cur->npeers;

	for (unsigned i = 0; same_peers && i < n->npeers; i++)
		same_peers = n->peer_len[i] == cur->peer_len[i] &&
			     !memcmp(&n->peer[i], &cur->peer[i], n->peer_len[i]);
	if (!same_peers)
		snprintf(buf + strlen(buf), len - strlen(buf), "%scluster.replay_peers",
			 buf[0] ? ", " : "");
}
