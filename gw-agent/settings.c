/* The agent's settings: one table (optable.h) from which the command
 * line, the config file (JSON or uci, with OpenWrt's network file),
 * --help, the man pages and the README's reference table are made;
 * defaults; loading at start and at each reload. */
#include "agent.h"
#include "config.h"
#include "metrics.h"
#include "optable.h"
#include "opts.h"
#include "settings.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	O_CONC = 256, O_LAN, O_BYPASS, O_WANPATH, O_MESH, O_LEND, O_MESH_KEY, O_ENDPOINTS, O_PROBE,
	O_FALLBACK, O_BLOCK_QUIC, O_NO_BLOCK_QUIC, O_PORT, O_MARK, O_TABLE, O_CONNECT_TIMEOUT,
	O_REPLY_TIMEOUT, O_KEEPALIVE, O_RCVBUF, O_IDLE_TIMEOUT, O_WORKERS, O_BUFFERS,
	O_BUFFER_SIZE, O_MAX_PARKED, O_MAX_PER_HOST, O_KEY_FILE, O_CONTROL, O_LOG_LEVEL, O_METRICS, O_CONFIG,
	O_CHECK_CONFIG, O_VERSION, O_HELP, O_CONGESTION, O_FAST_OPEN, O_NO_FAST_OPEN, O_VERIFY, O_NO_VERIFY, O_CLUSTER,
	O_UDP, O_UDP_CLASS, O_UDP_MAX_FLOWS, O_UDP_PER_HOST, O_UDP_TIMEOUT, O_UDP_STREAM_TIMEOUT,
	O_OVERFLOW_SHARE, O_STATE_DIR, O_CLASS, O_WEB, O_WEB_TOKEN, O_JOIN_AFTER, O_MAX,
};

#define AT(field) OPT_AT(struct agent_config, field)

static const char *const path_fields[] = { "interface", "mode", "gateway", "down", "up", "cap",
					   "cycle", "at", NULL };

static const char *const class_fields[] = { "name", "device", "dst", "port", "domain", "action",
					    "line", "rtt", "udp", NULL };

static const struct opt_spec agent_opts[] = {
	{ "concentrator", O_CONC, "ADDR[:PORT]", "concentrators", CONFIG_LIST, .reload = OPT_LIVE,
	  .deflt = "required",
	  .help = "the concentrator (port 5124 if not given); repeat for backups, tried in "
		  "order" },
	{ "lan", O_LAN, "IFACE", "lan", CONFIG_LIST, .reload = OPT_LIVE, .deflt = "required",
	  .help = "a LAN interface whose TCP is intercepted; repeatable" },
	{ "bypass", O_BYPASS, "CIDR", "bypass", CONFIG_LIST, .reload = OPT_LIVE,
	  .help = "destinations never intercepted, besides the LAN's own prefixes; "
		  "repeatable" },
	{ "path", O_WANPATH,
	  "IFACE[,mode=MODE][,gateway=ADDR][,down=RATE][,up=RATE][,cap=SIZE[,cycle=DAY|Nd][,at=PCT:ACTION[/...]]]",
	  "paths", CONFIG_SPEC_LIST,
	  .fields = path_fields, .reload = OPT_LIVE, .deflt = "none: the main routing table",
	  .help = "a WAN or mesh path for subflows, MODE on, master, backup, handover, overflow "
		  "or off; down=/up= what the line carries at most (50mbit); cap= a data cap per "
		  "billing cycle (10G), cycle= its first day of the month (1) or length (30d), "
		  "at= what the line becomes at a share of it (100:off; overflow, backup or off); "
		  "repeatable; in a file a string or {\"interface\", \"mode\", \"gateway\", "
		  "\"down\", \"up\", \"cap\", \"cycle\", \"at\"}",
	  .more = "Modes (OpenWrt's multipath): on: use it; master: use it, it carries the default route; backup: a backup subflow, used when no on or master path is; handover: no subflow until no on or master path is up; overflow: a metered line, a backup subflow made active (MP_PRIO) while the on and master lines carry more than overflow-share of their down= or up= capacity, and backup again once the whole demand fits them (20 points under); off: never. Without gateway=, the one the path's DHCP client installs as its default route. A cap counts the line's bytes both ways (its interface's counters, which a new PPP session or modem restarts: counted on), kept in state-dir across restarts; e.g. lte,mode=on,cap=10G,cycle=15,at=80:overflow/100:off. At a threshold the line takes the stricter of its mode and the action: backup by MP_PRIO, off by closing its subflows (the flows go on over the other lines); a new cycle gives it back its mode." },
	{ "path", O_WANPATH, NULL, "network_multipath", CONFIG_UCI_MULTIPATH, .hidden = true,
	  .key_only = true, .reload = OPT_LIVE,
	  .help = "on, master, backup, handover, overflow or off: the interface's device is a "
		  "path in that mode (what OpenWrt's multipath scripts read; down= and up= for "
		  "overflow go in the agent's own paths list)" },
	{ "class", O_CLASS,
	  "NAME[,device=MAC|ADDR[/LEN]][,dst=PREFIX][,port=N[-M]][,domain=NAME][,action=bypass|pin|no-metered][,line=IFACE[+IFACE]][,rtt=MS][,udp=MODE]",
	  "classes", CONFIG_SPEC_LIST, .fields = class_fields, .reload = OPT_LIVE, .deflt = "none",
	  .help = "LAN traffic that matches: bypass goes straight out of line= (a path's "
		  "interface; without it, the main table's way), not through the concentrator; pin "
		  "is carried on the line= lines only; no-metered never on a metered line (overflow, "
		  "or a cap); rtt= (latency-sensitive) never on a line whose delay exceeds the best "
		  "line's by more than MS; udp= the carrier mode of its UDP (failover, lowest-delay, "
		  "redundant); lists joined with +; repeatable, the first match wins, 16 at most; in a "
		  "file a string or {\"name\", \"device\", \"dst\", \"port\", \"domain\", "
		  "\"action\", \"line\", \"rtt\", \"udp\"}",
	  .more = "What is given must all match: the device (its MAC address, or its addresses), the destination (dst= prefixes, or the addresses domain= names resolve to on the router, looked up at start, at each reload and every minute, each kept 10 minutes after its last answer), and the destination port (TCP and UDP). E.g. tv,device=aa:bb:cc:dd:ee:ff,action=bypass,line=lte or streaming,domain=netflix.com+nflxvideo.net,action=bypass,line=dsl. A connection takes its class when it starts and keeps it: a reload changes new connections only. Out of a line, the connection leaves as the line's address (masquerade, conntrack); while that line is down it has no route (no other line carries it)." },
	{ "mesh", O_MESH, "IFACE[,mode=on|backup][,neighbour=ADDR]...", "mesh", CONFIG_STRING,
	  .reload = OPT_RESTART,
	  .help = "borrow the lines of neighbours on this mesh interface: one path per lending "
		  "neighbour, announced or given",
	  .more = "See \"Mesh\" in the README." },
	{ "lend", O_LEND, "IFACE[,flows=N][,total=N][,uplink=RATE[,rate=RATE][,wan=IFACE]][,joins=PREFIX]", "lend",
	  CONFIG_STRING, .reload = OPT_RESTART, .deflt = "off",
	  .help = "lend our line to the mesh on IFACE: TCP and UDP to the concentrator's port only, from "
		  "borrow addresses for us only, N flows per borrower (256) and total= for all "
		  "(256, a quarter of the concentrator's handshakes per client); with uplink= our own upload goes first and the lent traffic gets the "
		  "rest (at most rate=)",
	  .more = "Only TCP and UDP (MPTCP subflows and the UDP carrier) to our concentrators (each at its port, following reloads) and, for a cluster, to the boxes' own join addresses in the joins= prefixes (up to 4) at the concentrators' ports is forwarded, with NAT. uplink= is our line's upload rate, a little under the line (19mbit); wan= defaults to the first path." },
	{ "mesh-key", O_MESH_KEY, "FILE", "mesh_key_file", CONFIG_STRING, .type = OT_STRING,
	  .off = offsetof(struct agent_config, mesh.key_path),
	  .size = sizeof(((struct agent_config *)0)->mesh.key_path), .reload = OPT_RESTART,
	  .help = "the mesh's keys (lines ID SECRET [PREFIX...]; mode 600): a lender signs its "
		  "announcements with the first, a borrower takes only announcements signed with "
		  "one of them, from an address it is for",
	  .more = "Without it no announcement is sent or taken: a borrower uses only the neighbour= it names. See \"Mesh\" in the README." },
	{ "endpoints", O_ENDPOINTS, "agent|kernel|mptcpd", "endpoints", CONFIG_STRING,
	  .reload = OPT_RESTART, .deflt = "agent",
	  .help = "who opens each flow's subflows: the agent, as the kernel's userspace path "
		  "manager; the kernel's path manager, from endpoints the agent sets; or mptcpd "
		  "(the agent only does routing)",
	  .more = "agent opens every join as a backup subflow and makes it active 100 ms after "
		  "it is established: kernel 6.18 can misplace the first bytes of a join that "
		  "carries data before the concentrator has finished adding it (see "
		  "docs/kernel-defects.md), and kernel endpoints cannot prevent that. agent sets "
		  "net.mptcp.path_manager=userspace in its network namespace (every MPTCP "
		  "connection made there after start: those from the lines' addresses to a "
		  "concentrator's address, at any port, get the joins; others one subflow) and puts back "
		  "what was there when it stops (pm_type=1 on kernels before 6.15); on a kernel "
		  "without a userspace path manager (before 5.19), kernel is "
		  "used. All three talk to the kernel over generic netlink." },
	{ "join-after", O_JOIN_AFTER, "SEC", "join_after", CONFIG_NUMBER, .reload = OPT_LIVE,
	  .deflt = "0.1",
	  .help = "with --endpoints agent, open a connection's other subflows only once it has "
		  "lasted this long (0 = at once)",
	  .more = "Most connections of web pages and apps end within a few round trips, before "
		  "a second subflow could carry anything; opening and closing one costs both ends "
		  "more CPU than such a flow itself. A flow whose line fails in this time moves "
		  "to the others when their subflows open. --endpoints kernel and mptcpd open them "
		  "at once." },
	{ "cluster", O_CLUSTER, NULL, "cluster", CONFIG_BOOL, .reload = OPT_RESTART,
	  .deflt = "off",
	  .help = "the concentrator is one of several behind a shared address: every path also "
		  "opens a subflow to the address the box announces (with --endpoints kernel: "
		  "fullmesh endpoints)",
	  .more = "Such a box takes extra subflows only on its own address (README, \"Several "
		  "concentrators\"); without this option a flow gets one extra subflow in all." },
	{ "probe-interval", O_PROBE, "SEC", "probe_interval", CONFIG_NUMBER, .reload = OPT_LIVE,
	  .deflt = "1",
	  .help = "probe each path's reach to the concentrator this often (0 = off); two "
		  "failures mark it down",
	  .more = "A probe is an RFC 8803 Info exchange bound to the path's address; the first and every 30th also check that MPTCP gets through." },
	{ "fallback", O_FALLBACK, "direct|reset", "fallback", CONFIG_STRING, .reload = OPT_LIVE,
	  .deflt = "direct",
	  .help = "with no concentrator reachable, connect directly, or reset the LAN "
		  "connection (fail closed)",
	  .more = "direct: the home never loses Internet access." },
	{ "block-quic", O_BLOCK_QUIC, NULL, "block_quic", CONFIG_BOOL, O_NO_BLOCK_QUIC,
	  .type = OT_TRUE, AT(block_quic), .reload = OPT_LIVE, .deflt = "on",
	  .help = "answer LAN UDP to port 443 with ICMP port-unreachable, so browsers use TCP" },
	{ "no-block-quic", O_NO_BLOCK_QUIC, NULL, NULL, 0, .type = OT_FALSE, AT(block_quic),
	  .reload = OPT_LIVE, .help = "let LAN QUIC through (not carried over MPTCP)" },
	{ "udp", O_UDP, "MODE|off", "udp.mode", CONFIG_STRING, .reload = OPT_LIVE,
	  .deflt = "failover",
	  .help = "carry LAN UDP to the first concentrator, by default in MODE: failover (the "
		  "best live path), lowest-delay or redundant (every datagram on two paths); off: "
		  "UDP is routed as without the agent",
	  .more = "UDP to the router itself (DNS, DHCP), to the LAN, to bypass prefixes and "
		  "multicast is never taken. A LAN device's UDP leaves from the concentrator's "
		  "address, one public port per device port, whatever line carries it. UDP 443 "
		  "(QUIC) is refused while block-quic is on and no udp-class names port 443: "
		  "browsers then use TCP, whose flows get the sum of the lines. A reload changes "
		  "the mode; turning UDP on or off takes a restart." },
	{ "udp-class", O_UDP_CLASS, "PORT[-PORT]=MODE", "udp.classes", CONFIG_LIST,
	  .reload = OPT_LIVE, .deflt = "none",
	  .help = "UDP to these destination ports in MODE instead; repeatable, the first match "
		  "wins, 16 at most",
	  .more = "Examples: 3478-3481=redundant (calls), 27000-27100=lowest-delay (games), "
		  "443=failover (carry QUIC: one line per flow, no aggregation). redundant doubles "
		  "the upstream bytes of what it matches." },
	{ "udp-max-flows", O_UDP_MAX_FLOWS, "N", "udp.max_flows", CONFIG_NUMBER, .type = OT_UINT,
	  .min = 16, .max = 65536, AT(udp_max_flows), .reload = OPT_RESTART, .deflt = "1024",
	  .help = "LAN UDP sources carried at once; a new one over it is dropped (counted)",
	  .more = "The concentrator's udp-max-flows-per-gateway (1024 by default) should be at "
		  "least this." },
	{ "udp-max-flows-per-host", O_UDP_PER_HOST, "N", "udp.max_flows_per_host", CONFIG_NUMBER,
	  .type = OT_UINT, .min = 0, .max = 65536, AT(udp_per_host), .reload = OPT_LIVE,
	  .deflt = "512",
	  .help = "of those, per LAN device address (0 = no limit); its sources over it are "
		  "dropped (counted)",
	  .more = "A device's sockets each count once, whatever they send to (a BitTorrent "
		  "client's DHT is one); a resolver that asks from a new port each time holds one "
		  "per query for udp-timeout." },
	OPTABLE_UDP_TIMEOUTS(struct agent_config, O_UDP_TIMEOUT, O_UDP_STREAM_TIMEOUT),
	{ "overflow-share", O_OVERFLOW_SHARE, "PERCENT", "overflow_share", CONFIG_NUMBER,
	  .type = OT_UINT, .min = 30, .max = 100, AT(overflow_share), .reload = OPT_LIVE,
	  .deflt = "85",
	  .help = "overflow lines (path mode=overflow) carry data while the on and master lines "
		  "carry more than this share of their capacity (down=, up=), two seconds in a row",
	  .more = "They go back to backup after five seconds in which the whole demand, theirs "
		  "included, fits within this share less 20 points: a 20 Mbit/s stream on a "
		  "50 Mbit/s line never wakes a metered line; a download that fills it does." },
	{ "fast-open", O_FAST_OPEN, NULL, "fast_open", CONFIG_BOOL, O_NO_FAST_OPEN,
	  .type = OT_TRUE, AT(fast_open), .reload = OPT_LIVE, .deflt = "on",
	  .help = "send the Convert message in a TCP Fast Open SYN (0-RTT), where the kernel "
		  "has TFO for MPTCP (Linux 6.2+)",
	  .more = "Off, or on an older kernel (said at start), the message follows the "
		  "handshake: one round trip more per flow. Off helps behind a middlebox that "
		  "drops SYNs carrying data." },
	{ "no-fast-open", O_NO_FAST_OPEN, NULL, NULL, 0, .type = OT_FALSE, AT(fast_open),
	  .reload = OPT_LIVE, .help = "the Convert message after the handshake" },
	{ "verify-stream", O_VERIFY, NULL, "verify_stream", CONFIG_BOOL, O_NO_VERIFY,
	  .type = OT_TRUE, AT(verify_stream), .reload = OPT_LIVE, .deflt = "on",
	  .help = "offer the concentrator a verified stream: records with a CRC-32C both ways, "
		  "so bytes the kernel's MPTCP damaged reset the flow instead of reaching the "
		  "LAN device or the server",
	  .more = "A private-use TLV in the Convert message; a concentrator that does not know "
		  "it answers Unsupported Message, and the agent then asks it again without "
		  "(and keeps not offering it there until a restart or reload). See "
		  "docs/kernel-defects.md." },
	{ "no-verify-stream", O_NO_VERIFY, NULL, NULL, 0, .type = OT_FALSE, AT(verify_stream),
	  .reload = OPT_LIVE, .help = "plain RFC 8803 streams only" },
	{ "port", O_PORT, "N", "port", CONFIG_NUMBER, .type = OT_UINT, .min = 1, .max = 65535,
	  AT(port), .reload = OPT_RESTART, .deflt = "5125", .help = "the TPROXY listener's port",
	  .more = "The IP_TRANSPARENT listener TPROXY delivers to." },
	{ "mark", O_MARK, "N", "mark", CONFIG_NUMBER, .type = OT_UINT, .min = 1,
	  .max = 0x7fffffff, AT(mark), .reload = OPT_RESTART, .deflt = "19792",
	  .help = "fwmark of intercepted packets" },
	{ "table", O_TABLE, "N", "table", CONFIG_NUMBER, .type = OT_UINT, .min = 1,
	  .max = 0x7fffffff, AT(table), .reload = OPT_RESTART, .deflt = "19792",
	  .help = "routing table for TPROXY; the paths' tables follow it" },
	{ "connect-timeout", O_CONNECT_TIMEOUT, "SEC", "timeouts.connect", CONFIG_NUMBER,
	  .type = OT_MS_NONZERO, .max = 3600, AT(connect_timeout_ms), .reload = OPT_LIVE,
	  .deflt = "3", .help = "connecting to a concentrator" },
	{ "reply-timeout", O_REPLY_TIMEOUT, "SEC", "timeouts.reply", CONFIG_NUMBER,
	  .type = OT_MS_NONZERO, .max = 3600, AT(reply_timeout_ms), .reload = OPT_LIVE,
	  .deflt = "15", .help = "waiting for its Convert reply",
	  .more = "Longer than the concentrator's connect timeout." },
	{ "keepalive", O_KEEPALIVE, "SEC", "timeouts.keepalive", CONFIG_NUMBER, .type = OT_UINT,
	  .min = 0, .max = 7200, AT(keepalive_s), .reload = OPT_LIVE, .deflt = "60",
	  .help = "TCP keepalive idle time (0 = off)" },
	{ "rcvbuf", O_RCVBUF, "BYTES", "rcvbuf", CONFIG_NUMBER, .type = OT_UINT, .min = 0,
	  .max = 256 << 20, AT(rcvbuf), .reload = OPT_LIVE, .deflt = "4194304",
	  .help = "receive buffer of each MPTCP connection (0 = kernel autotuning, which "
		  "starts small and costs MPTCP retransmissions on slow paths)" },
	{ "congestion", O_CONGESTION, "NAME", "congestion", CONFIG_STRING, .reload = OPT_LIVE,
	  .deflt = "the system's (net.ipv4.tcp_congestion_control)",
	  .help = "TCP congestion control of every subflow of the flows' MPTCP connections",
	  .more = "Over shaped lines BBR left each subflow about 8% idle here (three 20 Mbit/s "
		  "lines: 0.88-0.92 of their sum), cubic 2% (0.975): set cubic where the system "
		  "default is BBR." },
	{ "idle-timeout", O_IDLE_TIMEOUT, "SEC", "timeouts.idle", CONFIG_NUMBER, .type = OT_UINT,
	  .min = 0, .max = 30 * 86400, AT(idle_timeout_s), .reload = OPT_LIVE, .deflt = "7200",
	  .help = "close flows idle this long (0 = never)" },
	{ "workers", O_WORKERS, "N", "workers", CONFIG_NUMBER, .type = OT_UINT, .min = 1,
	  .max = 64, AT(workers), .reload = OPT_RESTART, .deflt = "the CPU count",
	  .help = "worker threads" },
	{ "buffers", O_BUFFERS, "N", "buffers.count", CONFIG_NUMBER, .type = OT_POW2, .min = 2,
	  .max = 32768, AT(nbufs), .reload = OPT_RESTART, .deflt = "256",
	  .help = "receive buffers per worker, a power of 2" },
	{ "buffer-size", O_BUFFER_SIZE, "BYTES", "buffers.size", CONFIG_NUMBER, .type = OT_UINT,
	  .min = 1024, .max = 4 << 20, AT(bufsize), .reload = OPT_RESTART, .deflt = "32768",
	  .help = "size of each buffer" },
	OPTABLE_MAX_PARKED(struct agent_config, O_MAX_PARKED, "32"),
	{ "max-flows-per-host", O_MAX_PER_HOST, "N", "max_flows_per_host", CONFIG_NUMBER,
	  .type = OT_UINT, .min = 0, .max = 10000000, AT(max_per_host), .reload = OPT_LIVE,
	  .deflt = "1024",
	  .help = "flows at once per LAN device (0 = unlimited): one device cannot use up the "
		  "home's quota at the concentrator. Counted per MAC address by nftables (so a "
		  "device's many IPv6 addresses count as one; new flows over it are reset), and "
		  "per address by the agent" },
	{ "key-file", O_KEY_FILE, "FILE", "key_file", CONFIG_STRING, .type = OT_STRING,
	  AT(key_path), .reload = OPT_LIVE,
	  .help = "this gateway's key (a line ID SECRET [nat]; mode 600): every request "
		  "carries an authenticator in its Cookie TLV",
	  .more = "nat: this gateway's packets are translated before the concentrator. Re-read at each reload." },
	{ "state-dir", O_STATE_DIR, "DIR", "state_dir", CONFIG_STRING, .type = OT_ABSPATH,
	  AT(state_dir), .reload = OPT_RESTART,
	  .deflt = "systemd's StateDirectory, else /var/lib/gw-agent",
	  .help = "where the lines' data caps are kept across restarts (the file caps)",
	  .more = "Written at most every 15 minutes while a capped line carries data, at each "
		  "threshold and new cycle, and at stop: about a hundred bytes, a few times an "
		  "hour (router flash wears). On OpenWrt put it on flash (/etc/gw-agent): /var "
		  "is memory there. A power cut loses at most the last 15 minutes' count." },
	{ "web-listen", O_WEB, "ADDR:PORT", "web.listen", CONFIG_STRING, .reload = OPT_RESTART,
	  .deflt = "off",
	  .help = "serve the household's page here (the router's LAN address, e.g. "
		  "192.168.1.1:8125): each line live, caps, speed tests, connections; it asks "
		  "for a token (web-token-file), and `gw-agent status` prints its address with it",
	  .more = "Off by default: it shows who on the LAN talks to whom. The page and its "
		  "scripts are built into the agent: nothing is fetched from elsewhere. See "
		  "\"The household's page\" in the README." },
	{ "web-token-file", O_WEB_TOKEN, "FILE", "web.token_file", CONFIG_STRING, .type = OT_ABSPATH,
	  AT(web_token_path), .reload = OPT_RESTART, .deflt = "STATE-DIR/web-token",
	  .help = "the page's token (16-64 of A-Z a-z 0-9 _ -, mode 600), made with 128 "
		  "random bits when missing" },
	{ "control", O_CONTROL, "PATH", "control", CONFIG_STRING, .type = OT_ABSPATH,
	  AT(control_path), .reload = OPT_RESTART, .deflt = AGENT_CONTROL_PATH,
	  .help = "status socket for `gw-agent status` (\"\" = none)",
	  .more = "Mode 0600." },
	OPTABLE_COMMON_ENTRIES(struct agent_config, O_LOG_LEVEL, O_METRICS, O_CONFIG, O_CHECK_CONFIG, O_VERSION,
			       O_HELP, AGENT_CONFIG_PATH, "key file"),
	{ .name = NULL },
};

const struct optable agent_optable = {
	.program = "gw-agent",
	.synopsis = "gw-agent --concentrator ADDR[:PORT] --lan IFACE [OPTIONS]\n"
		    "       gw-agent status [--control PATH]",
	.summary = "Carries LAN TCP flows over MPTCP to an RFC 8803 concentrator.",
	.version = AGENT_VERSION,
	.opts = agent_opts,
};

struct parse {
	struct agent_config *cfg;
	struct paths *paths;
	struct agent_classes *classes;
	bool cmdline;
	bool cleared[O_MAX - O_CONC];
};

/* Command-line values replace a config file's list, not add to it. */
static void clear_list_once(struct parse *p, int c)
{
	if (!p->cmdline || c < O_CONC || c >= O_MAX || p->cleared[c - O_CONC])
		return;
	p->cleared[c - O_CONC] = true;
	switch (c) {
	case O_CONC: p->cfg->nconc = 0; break;
	case O_LAN: p->cfg->nlan = 0; break;
	case O_BYPASS: p->cfg->nbypass = 0; break;
	case O_UDP_CLASS: p->cfg->nudp_class = 0; break;
	case O_WANPATH: p->paths->n = 0; break;
	case O_CLASS: p->classes->n = 0; break;
	case O_MESH:
		memset(p->cfg->mesh.borrow_if, 0, sizeof(p->cfg->mesh.borrow_if));
		p->cfg->mesh.nstatic = 0;
		break;
	}
}

/* One setting, from the command line or a config file (config.c turns
 * JSON and uci values into this same text): the table's simple types in
 * optable.c, the rest here. */
static int apply_opt(void *ctx, int c, const char *arg)
{
	struct parse *p = ctx;
	struct agent_config *cfg = p->cfg;
	const struct opt_spec *s = optable_find(&agent_optable, c);
	const char *name = s ? s->name : "";
	const char *why = "";
	unsigned ms;
	int r;

	if (!s)
		return -EINVAL;  /* getopt has said what was wrong */
	clear_list_once(p, c);
	r = optable_apply(&agent_optable, cfg, c, arg);
	if (r <= 0)
		return r;
	switch (c) {
	case O_CONC:
		if (cfg->nconc == AGENT_MAX_CONC)
			return opt_error(name, arg, "is one concentrator too many");
		if (addr_parse_hostport(arg, CONVERT_DEFAULT_PORT, &cfg->conc[cfg->nconc],
					&cfg->conc_len[cfg->nconc]) < 0)
			return opt_error(name, arg, "is not ADDR[:PORT] or [ADDR6][:PORT]");
		cfg->nconc++;
		return 0;
	case O_LAN:
		if (cfg->nlan == AGENT_MAX_LAN)
			return opt_error(name, arg, "is one LAN interface too many");
		if (!*arg || strlen(arg) >= sizeof(cfg->lan[0]) || strpbrk(arg, "\"\\ /{}"))
			return opt_error(name, arg, "is not an interface name");
		strcpy(cfg->lan[cfg->nlan++], arg);
		return 0;
	case O_BYPASS:
		if (cfg->nbypass >= AGENT_MAX_BYPASS - AGENT_MAX_LAN * 4)
			return opt_error(name, arg, "is one bypass prefix too many");
		if (addr_parse_prefix(arg, &cfg->bypass[cfg->nbypass]) < 0)
			return opt_error(name, arg, "is not a prefix (ADDR/LEN with host bits zero)");
		cfg->nbypass++;
		return 0;
	case O_WANPATH:
		if (paths_parse(p->paths, arg, &why) < 0)
			return opt_error(name, arg, why);
		return 0;
	case O_CLASS:
		if (class_parse(p->classes, arg, &why) < 0)
			return opt_error(name, arg, why);
		return 0;
	case O_MESH:
		if (mesh_parse_borrow(&cfg->mesh, arg, &why) < 0)
			return opt_error(name, arg, why);
		return 0;
	case O_LEND:
		if (mesh_parse_lend(&cfg->mesh, arg, &why) < 0)
			return opt_error(name, arg, why);
		return 0;
	case O_METRICS:
		return metrics_opt_listen(name, arg, &cfg->metrics, &cfg->metrics_len);
	case O_WEB:
		return metrics_opt_listen(name, arg, &cfg->web, &cfg->web_len);
	case O_CONGESTION:
		return opt_congestion(name, arg, cfg->congestion, sizeof(cfg->congestion));
	case O_PROBE:
		if ((r = opt_seconds_ms(name, arg, 3600, &ms)) < 0)
			return r;
		p->paths->probe_interval_ms = ms;
		return 0;
	case O_JOIN_AFTER:
		if ((r = opt_seconds_ms(name, arg, 60, &ms)) < 0)
			return r;
		p->paths->join_after_ms = ms;
		return 0;
	case O_ENDPOINTS:
		p->paths->manage_endpoints = strcmp(arg, "mptcpd") != 0;
		p->paths->userspace_pm = !strcmp(arg, "agent");
		if (strcmp(arg, "agent") && strcmp(arg, "kernel") && strcmp(arg, "mptcpd"))
			return opt_error(name, arg, "is not agent, kernel or mptcpd");
		return 0;
	case O_CLUSTER:
		p->paths->fullmesh = true;
		return 0;
	case O_UDP: {
		enum udpc_mode m;

		if (!strcmp(arg, "off")) {
			cfg->udp_mode = AGENT_UDP_OFF;
			return 0;
		}
		if (udpc_mode_parse(arg, &m) < 0)
			return opt_error(name, arg, "is not failover, lowest-delay, redundant or off");
		cfg->udp_mode = (int)m;
		return 0;
	}
	case O_UDP_CLASS:
		if (cfg->nudp_class >= AGENT_UDP_MAX_CLASSES)
			return opt_error(name, arg, "is one class too many (16 at most)");
		if (agent_udp_class_parse(arg, &cfg->udp_class[cfg->nudp_class], &why) < 0)
			return opt_error(name, arg, why);
		cfg->nudp_class++;
		return 0;
	case O_FALLBACK:
		if (!strcmp(arg, "direct"))
			cfg->fallback = FALLBACK_DIRECT;
		else if (!strcmp(arg, "reset"))
			cfg->fallback = FALLBACK_RESET;
		else
			return opt_error(name, arg, "is not direct or reset");
		return 0;
	}
	return -EINVAL;
}

static void config_defaults(struct agent_config *cfg, struct paths *ps)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->fallback = FALLBACK_DIRECT;
	cfg->block_quic = true;
	cfg->udp_mode = UDPC_FAILOVER;
	cfg->udp_max_flows = 1024;
	cfg->udp_per_host = 512;
	cfg->overflow_share = 85;
	cfg->udp_timeout_s = 30;
	cfg->udp_stream_timeout_s = 180;
	cfg->fast_open = true;
	cfg->verify_stream = true;
	cfg->port = 5125;
	cfg->mark = 0x4d50;
	cfg->table = 0x4d50;
	cfg->connect_timeout_ms = 3000;
	cfg->reply_timeout_ms = 15000;
	cfg->keepalive_s = 60;
	cfg->idle_timeout_s = 7200;
	cfg->max_per_host = 1024;
	cfg->max_parked_mib = 32;
	cfg->nbufs = 256;
	cfg->bufsize = 32768;
	cfg->rcvbuf = 4 << 20;
	cfg->log_level = LOG_INFO;
	strcpy(cfg->control_path, AGENT_CONTROL_PATH);
	cfg->workers = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	if (cfg->workers < 1)
		cfg->workers = 1;
	ps->n = 0;
	ps->manage_endpoints = true;
	ps->userspace_pm = true;
	ps->fullmesh = false;
	ps->probe_interval_ms = 1000;
	ps->join_after_ms = 100;
}

/* This gateway's key (the first in --key-file; "nat" there: behind NAT),
 * read at start and at each reload, so a rotated key takes effect with a
 * reload. Only the key is kept; the file's other lines are the
 * concentrator's business. */
static int load_key(struct agent_config *cfg)
{
	struct cookie_keys ks = { 0 };
	char errs[2048];
	int r;

	cfg->keyed = false;
	if (!cfg->key_path[0])
		return 0;
	r = cookie_keys_load(cfg->key_path, &ks, errs, sizeof(errs));
	if (r < 0) {
		fputs(errs[0] ? errs : "key file: out of memory\n", stderr);
		return r;
	}
	cfg->key = ks.k[0];
	cfg->key.scope = NULL;
	cfg->key.nscope = 0;
	cfg->keyed = true;
	cookie_keys_free(&ks);
	return 0;
}

int agent_load_settings(int argc, char **argv, struct agent_config *cfg, struct paths *ps,
			struct agent_classes *cs)
{
	struct parse p = { .cfg = cfg, .paths = ps, .classes = cs };
	bool explicit_file, check, wants_overflow = false;
	/* The file's name, for messages (config_load_all reads it). */
	const char *file = config_prescan(argc, argv, AGENT_CONFIG_PATH, &explicit_file, &check);

	config_defaults(cfg, ps);
	cs->n = 0;
	if (optable_load_all(&agent_optable, argc, argv, file, apply_opt, &p, &p.cmdline,
			    cfg->config_path, sizeof(cfg->config_path)) < 0)
		return -EINVAL;
	if (!cfg->nconc) {
		fprintf(stderr, "gw-agent: no concentrator: --concentrator ADDR:PORT or \"concentrators\" in %s\n",
			file);
		return -EINVAL;
	}
	if (!cfg->nlan) {
		fprintf(stderr, "gw-agent: no LAN interface to intercept: --lan IFACE or \"lan\" in %s\n",
			file);
		return -EINVAL;
	}
	for (unsigned i = 0; i < ps->n; i++)
		for (unsigned k = 0; k < ps->p[i].cap.nat; k++)
			if (ps->p[i].cap.at[k].action == PATH_OVERFLOW)
				wants_overflow = true;
	if (!cfg->state_dir[0])
		snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s",
			 getenv("STATE_DIRECTORY") && getenv("STATE_DIRECTORY")[0] == '/'
			 ? getenv("STATE_DIRECTORY") : "/var/lib/gw-agent");
	if (!cfg->web_token_path[0])
		snprintf(cfg->web_token_path, sizeof(cfg->web_token_path), "%s/web-token",
			 cfg->state_dir);
	if (wants_overflow || overflow_wanted(ps)) {
		bool cap = false;

		for (unsigned i = 0; i < ps->n; i++) {
			bool may_overflow = false;

			/* Not a line a cap may make an overflow line itself. */
			for (unsigned k = 0; k < ps->p[i].cap.nat; k++)
				may_overflow |= ps->p[i].cap.at[k].action == PATH_OVERFLOW;
			cap |= (ps->p[i].mode == PATH_ON || ps->p[i].mode == PATH_MASTER) &&
			       (ps->p[i].down_bps || ps->p[i].up_bps) && !may_overflow;
		}
		if (!cap)
			fprintf(stderr, "gw-agent: warning: paths (--path, or \"paths\" in %s): "
				"mode=overflow (or a cap's at=...:overflow) with no down= or up= on an on "
				"or master path: the overflow lines stay backup until a speed test "
				"(gw-agent speedtest) has measured the on and master lines\n", file);
		if (!ps->manage_endpoints) {
			fprintf(stderr, "gw-agent: paths (--path, or \"paths\" in %s): mode=overflow "
				"needs endpoints agent or kernel (with mptcpd the agent cannot change a "
				"path's priority)\n", file);
			return -EINVAL;
		}
	}
	cfg->ncls = cs->n;
	cfg->cls_agent = false;
	for (unsigned k = 0; k < cs->n; k++) {
		const struct agent_class *c = &cs->c[k];

		for (unsigned l = 0; l < c->nlines; l++) {
			bool found = false;

			for (unsigned i = 0; i < ps->n; i++)
				found |= !strcmp(ps->p[i].ifname, c->lines[l]);
			/* pin: a neighbour's line (mesh) by its interface, too */
			if (c->action == CLASS_PIN && cfg->mesh.borrow_if[0] &&
			    !strcmp(cfg->mesh.borrow_if, c->lines[l]))
				found = true;
			if (!found) {
				fprintf(stderr, "gw-agent: classes (--class, or \"classes\" in %s): class "
					"%s: line=%s is not one of the paths (--path)\n", file, c->name,
					c->lines[l]);
				return -EINVAL;
			}
		}
		cfg->cls[k] = (struct class_act){ .action = (uint8_t)c->action,
						  .nlines = (uint8_t)c->nlines,
						  .rtt_ms = (uint16_t)c->rtt_ms,
						  .udp_mode = (int8_t)c->udp_mode };
		memcpy(cfg->cls[k].lines, c->lines, sizeof(c->lines));
		if (class_by_agent(c)) {
			cfg->cls_agent = true;
			if (!ps->userspace_pm) {
				fprintf(stderr, "gw-agent: classes (--class, or \"classes\" in %s): class %s: "
					"pin and no-metered need endpoints agent (the agent chooses each "
					"flow's subflows)\n", file, c->name);
				return -EINVAL;
			}
		}
	}
	if (cfg->mesh.key_path[0]) {
		/* Read at start; checked here so --check-config names its errors. */
		struct cookie_keys mk = { 0 };
		int r = mesh_load_keys(cfg->mesh.key_path, &mk);

		cookie_keys_free(&mk);
		if (r < 0)
			return r;
		if (!cfg->mesh.borrow_if[0] && !cfg->mesh.lend_if[0])
			fprintf(stderr, "gw-agent: warning: --mesh-key without --mesh or --lend: "
				"not used\n");
	}
	return load_key(cfg);
}

