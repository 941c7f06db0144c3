/* Interception: TCP arriving on the LAN interfaces is handed to the agent's
 * IP_TRANSPARENT listener by an nftables TPROXY rule in a table the agent
 * owns. TPROXY'd packets carry a mark; a policy rule sends marked packets to
 * a table whose only route is "local default dev lo", so the kernel delivers
 * them locally instead of forwarding them.
 *
 * Not intercepted: traffic to the router itself (fib daddr type local), to
 * loopback, link-local, the LAN prefixes and the --bypass prefixes; those are
 * routed as usual. With block_quic, UDP to port 443 from the LAN is answered
 * with ICMP port-unreachable so browsers fall back from QUIC to TCP.
 *
 * Everything is removed at stop, and removed again at start in case a
 * previous run crashed. The nft and ip programs are driven through their
 * script interfaces: the kernel's own tools validate what we ask for. */
#include "agent.h"
#include "runcmd.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define NFT_TABLE "gw_agent"

static const struct agent_classes *classes;
static const struct paths *class_paths;

void intercept_set_classes(const struct agent_classes *cs, const struct paths *ps)
{
	classes = cs;
	class_paths = ps;
}

/* The classes' marks to the paths' tables: mark+1+slot to table+1+slot
 * (paths.c numbers them so), for every slot, once: a line added by a
 * reload finds its rule there. "ip -batch", one process per family. */
static int class_rules(const struct agent_config *cfg, bool add)
{
	static const char *const fams[] = { "-4", "-6" };
	char script[2048] = "";
	int rc = 0;

	for (unsigned i = 0; i < PATHS_MAX; i++)
		script_append(script, sizeof(script), "rule %s fwmark %u lookup %u\n",
			      add ? "add" : "del", cfg->mark + 1 + i, cfg->table + 1 + i);
	for (int f = 0; f < 2; f++) {
		char *argv[] = { "ip", (char *)fams[f], "-force", "-batch", "-", NULL };
		int r = spawn_run(argv, script, add);

		if (r != 0 && add)
			rc = r < 0 ? r : -EINVAL;
	}
	return rc;
}

int agent_cmd(char *const argv[], const char *input, bool show_errors)
{
	return spawn_run(argv, input, show_errors);
}

static int ip(bool show, const char *fam, const char *a, const char *b,
	      const char *c, const char *d, const char *e, const char *f,
	      const char *g, const char *h)
{
	char *argv[] = { "ip", (char *)fam, (char *)a, (char *)b, (char *)c,
			 (char *)d, (char *)e, (char *)f, (char *)g, (char *)h, NULL };

	return spawn_run(argv, NULL, show);
}

void intercept_remove(const struct agent_config *cfg)
{
	char *del[] = { "nft", "delete", "table", "inet", NFT_TABLE, NULL };
	char mark[16], table[16];
	static const char *const fams[] = { "-4", "-6" };

	snprintf(mark, sizeof(mark), "%u", cfg->mark);
	snprintf(table, sizeof(table), "%u", cfg->table);
	spawn_run(del, NULL, false);
	class_rules(cfg, false);
	for (int i = 0; i < 2; i++) {
		/* Every copy of the rule, in case several runs left one. */
		for (int k = 0; k < 16; k++)
			if (ip(false, fams[i], "rule", "del", "fwmark", mark, "lookup",
			       table, NULL, NULL) != 0)
				break;
		ip(false, fams[i], "route", "flush", "table", table, NULL, NULL, NULL, NULL);
	}
}

/* The whole table as one nft script; replace: first empty and delete the
 * old one in the same transaction, so the swap is atomic. */
static int nft_script(const struct agent_config *cfg, bool replace, bool drain, bool devlimit,
		      char *script, size_t cap)
{
	char lans[512] = "", p[ADDR_STRLEN];

	for (unsigned i = 0; i < cfg->nlan; i++)
		script_append(lans, sizeof(lans), "%s\"%s\"", i ? ", " : "", cfg->lan[i]);

	script[0] = '\0';
	if (replace)
		script_append(script, cap, "table inet " NFT_TABLE " {}\ndelete table inet " NFT_TABLE "\n");
	script_append(script, cap, "table inet " NFT_TABLE " {\n");
	script_append(script, cap,
	       "\tset bypass4 { type ipv4_addr; flags interval; auto-merge; elements = { 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/4, 255.255.255.255/32");
	for (unsigned i = 0; i < cfg->nbypass; i++)
		if (addr_is_v4mapped(&cfg->bypass[i].addr) && cfg->bypass[i].len >= 96)
			script_append(script, cap, ", %s", addr_format_prefix(&cfg->bypass[i], p));
	script_append(script, cap, " } }\n");
	script_append(script, cap,
	       "\tset bypass6 { type ipv6_addr; flags interval; auto-merge; elements = { ::1/128, fe80::/10, ff00::/8");
	for (unsigned i = 0; i < cfg->nbypass; i++)
		if (!addr_is_v4mapped(&cfg->bypass[i].addr))
			script_append(script, cap, ", %s", addr_format_prefix(&cfg->bypass[i], p));
	script_append(script, cap, " } }\n");
	if (classes && classes_nft_sets(classes, script, cap) < 0)
		return log_errno(-E2BIG, "nftables script too long (the classes)");
	/* max_flows_per_host per device, not per address: a device picks as
	 * many IPv6 (or IPv4) addresses on the LAN as it likes, but its
	 * frames carry its MAC address. nftables counts each MAC's
	 * connections in conntrack and resets a new one over the cap; the
	 * agent's own count per address stays for LANs without Ethernet
	 * headers. The set is bounded: a device that forges MAC addresses
	 * fills it, after which new MACs go uncounted here and meet the
	 * per-address cap and the total. */
	script_append(script, cap,
	       "\tset lan_dev { type ifname . ether_addr; size %u; flags dynamic; }\n"
	       "\tcounter device_limit { }\n", INTERCEPT_MAX_DEVICES);
	script_append(script, cap,
	       "\tchain prerouting {\n"
	       "\t\ttype filter hook prerouting priority mangle; policy accept;\n"
	       "\t\tiifname != { %s } return\n"
	       "\t\tfib daddr type local return\n"
	       "\t\tip daddr @bypass4 return\n"
	       "\t\tip6 daddr @bypass6 return\n", lans);
	/* Classes first (their chain, below): a device sent out of a line
	 * goes so while stopping too. */
	if (classes && classes->n)
		script_append(script, cap, "\t\tjump classes\n");
	/* Stopping: a new connection's SYN goes the routed way; the flows
	 * being drained keep theirs (tproxy finds their sockets). */
	if (drain)
		script_append(script, cap, "\t\ttcp flags & (syn | ack) == syn return\n");
	if (devlimit && cfg->max_per_host)
		script_append(script, cap,
		       "\t\ttcp flags & (syn | ack) == syn ct state new "
		       "add @lan_dev { iifname . ether saddr ct count over %u } "
		       "counter name device_limit reject with tcp reset\n", cfg->max_per_host);
	script_append(script, cap,
	       "\t\tmeta l4proto tcp tproxy to :%u meta mark set %u accept\n", cfg->port, cfg->mark);
	/* LAN UDP to the agent's UDP socket (the same port number), but QUIC
	 * unless carried (the forward chain below refuses it), and none while
	 * stopping. */
	if (cfg->udp_mode != AGENT_UDP_OFF && !drain) {
		if (!agent_udp_quic_carried(cfg))
			script_append(script, cap, "\t\tudp dport 443 return\n");
		/* Only sources the LAN interface could answer (a reverse-path
		 * check): a device forging an Internet host's address would
		 * otherwise have the concentrator's answers sent to that host. */
		script_append(script, cap, "\t\tmeta l4proto udp fib saddr . iif oif missing return\n");
		script_append(script, cap,
		       "\t\tmeta l4proto udp tproxy to :%u meta mark set %u accept\n", cfg->port,
		       cfg->mark);
	}
	script_append(script, cap, "\t}\n");
	if (cfg->block_quic && !agent_udp_quic_carried(cfg))
		script_append(script, cap,
		       "\tchain forward {\n"
		       "\t\ttype filter hook forward priority filter; policy accept;\n"
		       "\t\tiifname { %s } udp dport 443 reject with icmpx type port-unreachable\n"
		       "\t}\n", lans);
	if (classes && class_paths &&
	    classes_nft_rules(classes, class_paths, cfg->mark, script, cap) < 0)
		return log_errno(-E2BIG, "nftables script too long (the classes)");
	if (classes && classes_nft_nat(classes, cfg->mark, script, cap) < 0)
		return log_errno(-E2BIG, "nftables script too long (the classes)");
	script_append(script, cap, "}\n");
	if (strlen(script) >= cap - 1)
		return log_errno(-E2BIG, "nftables script too long (too many --bypass)");
	return 0;
}

/* Whether this kernel's nftables can count connections (nft_connlimit,
 * `ct count`); a router without the module still intercepts, with the
 * per-device cap left to the agent's per-address count. */
static bool devlimit_ok = true;

/* Install (replace: in place of the running one) the table; the script is
 * logged on failure. 0, or -errno / nft's exit status. */
static int run_table(const struct agent_config *cfg, bool replace, bool drain, const char *what)
{
	char *nft[] = { "nft", "-f", "-", NULL };
	static char script[65536];
	int r = nft_script(cfg, replace, drain, devlimit_ok, script, sizeof(script));

	if (r < 0)
		return r;
	r = spawn_run(nft, script, true);
	if (r != 0 && devlimit_ok && cfg->max_per_host &&
	    nft_script(cfg, replace, drain, false, script, sizeof(script)) == 0 &&
	    spawn_run(nft, script, true) == 0) {
		devlimit_ok = false;
		log_warn("nftables cannot count connections per LAN device here (is the "
			    "nft_connlimit module missing?): max_flows_per_host is counted per "
			    "address only");
		return 0;
	}
	if (r != 0) {
		log_error("nft refused the %s interception table (exit %d); script was:\n%s", what, r,
			  script);
		return r < 0 ? r : -EINVAL;
	}
	return 0;
}

/* Replace the table in one nft transaction: the running one, or (drain)
 * the one that takes no new connection. */
int intercept_update(const struct agent_config *cfg)
{
	return run_table(cfg, true, false, "new (the old one stays)");
}

int intercept_drain(const struct agent_config *cfg)
{
	return run_table(cfg, true, true, "draining");
}

int intercept_install(const struct agent_config *cfg)
{
	char mark[16], table[16];
	static const char *const fams[] = { "-4", "-6" };
	int r;

	intercept_remove(cfg);
	r = run_table(cfg, false, false, "first");
	if (r != 0)
		return r;
	snprintf(mark, sizeof(mark), "%u", cfg->mark);
	snprintf(table, sizeof(table), "%u", cfg->table);
	for (int i = 0; i < 2; i++) {
		r = ip(true, fams[i], "rule", "add", "fwmark", mark, "lookup", table, NULL, NULL);
		if (r == 0)
			r = ip(true, fams[i], "route", "add", "local", "default", "dev", "lo",
			       "table", table);
		if (r != 0) {
			log_error("ip %s rule/route for the TPROXY mark failed (exit %d)", fams[i], r);
			intercept_remove(cfg);
			return r < 0 ? r : -EINVAL;
		}
	}
	r = class_rules(cfg, true);
	if (r != 0) {
		log_error("ip rules for the classes' marks failed (exit %d)", r);
		intercept_remove(cfg);
		return r;
	}
	return 0;
}

int64_t intercept_device_limit_hits(void)
{
	char *argv[] = { "nft", "-j", "list", "counter", "inet", NFT_TABLE, "device_limit", NULL };
	json_t *root, *o;
	size_t i;
	int64_t n = -ENOENT;
	int r;

	root = spawn_nft_json(argv, 4096, 5000, &r);
	if (!root)
		return r < 0 ? r : -EIO;
	json_array_foreach(json_object_get(root, "nftables"), i, o) {
		json_t *c = json_object_get(o, "counter");

		if (c && json_is_integer(json_object_get(c, "packets")))
			n = json_integer_value(json_object_get(c, "packets"));
	}
	json_decref(root);
	return n;
}

int intercept_add_lan_prefixes(struct agent_config *cfg)
{
	struct ifaddrs *ifa, *i;

	if (getifaddrs(&ifa) < 0)
		return -errno;
	for (i = ifa; i; i = i->ifa_next) {
		struct addr_prefix pfx;
		struct in6_addr mask;
		bool is_lan = false;
		unsigned len = 0;

		if (!i->ifa_addr || !i->ifa_netmask ||
		    (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
			continue;
		for (unsigned k = 0; k < cfg->nlan; k++)
			if (strcmp(i->ifa_name, cfg->lan[k]) == 0)
				is_lan = true;
		if (!is_lan || cfg->nbypass >= AGENT_MAX_BYPASS)
			continue;
		addr_to_in6(i->ifa_addr, &pfx.addr, NULL);
		addr_to_in6(i->ifa_netmask, &mask, NULL);
		/* Mapped masks start with ::ffff: (96 one-bits of our own). */
		for (unsigned b = addr_is_v4mapped(&pfx.addr) ? 96 : 0; b < 128; b++)
			if (mask.s6_addr[b / 8] & (0x80 >> (b % 8)))
				len = b + 1;
		if (addr_is_v4mapped(&pfx.addr) && len < 96)
			len = 96;
		for (unsigned b = len; b < 128; b++)
			pfx.addr.s6_addr[b / 8] &= (uint8_t)~(0x80 >> (b % 8));
		pfx.len = (uint8_t)len;
		cfg->bypass[cfg->nbypass++] = pfx;
	}
	freeifaddrs(ifa);
	return 0;
}
