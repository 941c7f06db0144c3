/* The mesh (mesh.h). Borrowing: announcements from lenders on the mesh
 * segment (UDP broadcast, port MESH_PORT, read on the mesh interface only)
 * and static neighbours become paths of their own (paths_neighbour_up):
 * our per-neighbour address on the mesh interface, a table whose default
 * goes via the neighbour, a rule, an endpoint, probes; a neighbour that
 * withdraws, or is silent for MESH_EXPIRE_MS, loses its path at once (a
 * static one only by its probes).
 *
 * Lending: an nftables table lets the mesh reach the concentrator (its
 * address and port, TCP) through our WAN, translated to our address, and
 * nothing else: not the Internet, not our LAN, not another port; a cap on
 * flows per borrower. A route puts 100.64.L.0/24 on the mesh link so the
 * translated replies find the borrowers. We announce while one of our own
 * paths can carry flows, and withdraw at once when none can.
 *
 * Announcements are signed (meshmsg.h) with a mesh key (--mesh-key), and a
 * borrower takes one only when it is signed with a key it holds, for the
 * address it comes from, from an address on the mesh's own subnet, with a
 * sequence above the last one from there and near our clock. Without a
 * key, none is sent or taken: static neighbours only.
 *
 * Borrow requests: a borrower with a key asks each lender it uses, every
 * second, signed the same way for that lender alone; a lender with a key
 * forwards only the borrow addresses of borrowers whose requests it
 * verified in the last MESH_BORROW_EXPIRE_MS (an nftables set), so a
 * device on the segment without a key cannot use its line by taking a
 * borrow address for itself. */
#include "mesh.h"
#include "agent.h"
#include "runcmd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <time.h>
#include <unistd.h>

#define NFT_LEND "gw_agent_lend"
#define NFT_MESH "gw_agent_mesh"

static int parse_ifname(char *tok, char out[IFNAMSIZ], const char **why)
{
	if (!tok || !*tok || strlen(tok) >= IFNAMSIZ || strpbrk(tok, " /=\"")) {
		*why = "does not start with an interface name";
		return -EINVAL;
	}
	strcpy(out, tok);
	return 0;
}

int mesh_parse_borrow(struct mesh_config *cfg, const char *spec, const char **why)
{
	char buf[512], *save = NULL, *tok;

	if (cfg->borrow_if[0]) {
		*why = "is a second mesh interface (one is supported)";
		return -EINVAL;
	}
	if (strlen(spec) >= sizeof(buf)) {
		*why = "is too long";
		return -EINVAL;
	}
	strcpy(buf, spec);
	if (parse_ifname(strtok_r(buf, ",", &save), cfg->borrow_if, why) < 0)
		return -EINVAL;
	cfg->mode = PATH_ON;
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strncmp(tok, "mode=", 5)) {
			if (path_mode_parse(tok + 5, &cfg->mode) < 0 || cfg->mode == PATH_MASTER ||
			    cfg->mode == PATH_HANDOVER) {
				cfg->borrow_if[0] = 0;
				*why = "has a mode other than on, backup, off";
				return -EINVAL;
			}
		} else if (!strncmp(tok, "neighbour=", 10) || !strncmp(tok, "neighbor=", 9)) {
			const char *a = strchr(tok, '=') + 1;
			struct addr_prefix n;

			if (addr_parse_prefix(a, &n) < 0 || n.len != 128 || !addr_is_v4mapped(&n.addr)) {
				cfg->borrow_if[0] = 0;
				*why = "has a neighbour that is not an IPv4 address";
				return -EINVAL;
			}
			if (cfg->nstatic == MESH_STATIC_MAX) {
				cfg->borrow_if[0] = 0;
				*why = "has more than 8 neighbours";
				return -EINVAL;
			}
			cfg->statics[cfg->nstatic++] = n.addr;
		} else {
			cfg->borrow_if[0] = 0;
			*why = "has an option other than mode= and neighbour=";
			return -EINVAL;
		}
	}
	return 0;
}

/* "19mbit", "512kbit", "1.5gbit": what tc takes, checked here so a typo
 * is a configuration error, not a failed tc call at start. */
static bool rate_ok(const char *s)
{
	uint64_t bps;

	return rate_parse(s, &bps) == 0;
}

int mesh_parse_lend(struct mesh_config *cfg, const char *spec, const char **why)
{
	char buf[256], *save = NULL, *tok;

	if (strlen(spec) >= sizeof(buf)) {
		*why = "is too long";
		return -EINVAL;
	}
	strcpy(buf, spec);
	if (parse_ifname(strtok_r(buf, ",", &save), cfg->lend_if, why) < 0)
		return -EINVAL;
	cfg->lend_flows = 256;
	cfg->lend_total = 256;
	cfg->lend_uplink[0] = cfg->lend_rate[0] = cfg->lend_wan[0] = 0;
	cfg->nlend_joins = 0;
	while ((tok = strtok_r(NULL, ",", &save))) {
		char *end;
		unsigned long v;

		if (!strncmp(tok, "uplink=", 7) || !strncmp(tok, "rate=", 5)) {
			bool up = tok[0] == 'u';
			const char *val = tok + (up ? 7 : 5);

			if (!rate_ok(val)) {
				cfg->lend_if[0] = 0;
				*why = "has a rate that is not NUMBER followed by kbit, mbit or gbit";
				return -EINVAL;
			}
			strcpy(up ? cfg->lend_uplink : cfg->lend_rate, val);
			continue;
		}
		if (!strncmp(tok, "wan=", 4)) {
			if (parse_ifname(tok + 4, cfg->lend_wan, why) < 0) {
				cfg->lend_if[0] = 0;
				*why = "has wan= that is not an interface name";
				return -EINVAL;
			}
			continue;
		}
		if (!strncmp(tok, "joins=", 6)) {
			struct addr_prefix pfx;

			if (addr_parse_prefix(tok + 6, &pfx) < 0 || !addr_is_v4mapped(&pfx.addr) ||
			    pfx.len < 96 + 8) {
				cfg->lend_if[0] = 0;
				*why = "has joins= that is not an IPv4 prefix of /8 or longer";
				return -EINVAL;
			}
			if (cfg->nlend_joins == MESH_MAX_JOINS) {
				cfg->lend_if[0] = 0;
				*why = "has more than 4 joins=";
				return -EINVAL;
			}
			cfg->lend_joins[cfg->nlend_joins++] = pfx;
			continue;
		}
		if (!strncmp(tok, "total=", 6)) {
			errno = 0;
			v = strtoul(tok + 6, &end, 10);
			if (errno || *end || end == tok + 6 || v < 1 || v > 100000) {
				cfg->lend_if[0] = 0;
				*why = "has total= that is not a number from 1 to 100000";
				return -EINVAL;
			}
			cfg->lend_total = (unsigned)v;
			continue;
		}
		if (strncmp(tok, "flows=", 6)) {
			cfg->lend_if[0] = 0;
			*why = "has an option other than flows=, total=, uplink=, rate=, wan=, joins=";
			return -EINVAL;
		}
		errno = 0;
		v = strtoul(tok + 6, &end, 10);
		if (errno || *end || end == tok + 6 || v > 100000) {
			cfg->lend_if[0] = 0;
			*why = "has flows= that is not a number from 0 to 100000";
			return -EINVAL;
		}
		cfg->lend_flows = (unsigned)v;
	}
	return 0;
}

/* The interface's first IPv4 address, and its prefix length (plen may be
 * NULL). */
static int if_addr4(const char *ifname, struct in6_addr *ret, unsigned *plen)
{
	struct ifaddrs *ifa, *i;
	int r = -EADDRNOTAVAIL;

	if (getifaddrs(&ifa) < 0)
		return -errno;
	for (i = ifa; i; i = i->ifa_next)
		if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && !strcmp(i->ifa_name, ifname)) {
			addr_to_in6(i->ifa_addr, ret, NULL);
			if (plen) {
				uint32_t mask = i->ifa_netmask ?
					ntohl(((struct sockaddr_in *)i->ifa_netmask)->sin_addr.s_addr) : ~0u;

				*plen = (unsigned)__builtin_popcount(mask);
			}
			r = 0;
			break;
		}
	freeifaddrs(ifa);
	return r;
}

/* Whether ifname has Ethernet (MAC) addresses: Ethernet, Wi-Fi, bridges
 * and veth do; tun, WireGuard, PPP do not. */
static bool if_ethernet(const char *ifname)
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool r;

	if (fd < 0)
		return false;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	r = ioctl(fd, SIOCGIFHWADDR, &ifr) == 0 && ifr.ifr_hwaddr.sa_family == ARPHRD_ETHER;
	close(fd);
	return r;
}

const char *mesh_result_name(enum mesh_result r)
{
	static const char *const names[MESH_R_MAX] = {
		[MESH_R_OK] = "ok", [MESH_R_MALFORMED] = "malformed",
		[MESH_R_UNAUTHENTICATED] = "unauthenticated", [MESH_R_NO_KEY] = "no_key",
		[MESH_R_SENDER] = "sender", [MESH_R_OFF_LINK] = "off_link",
		[MESH_R_UNKNOWN_KEY] = "unknown_key", [MESH_R_BAD_TAG] = "bad_tag",
		[MESH_R_SCOPE] = "scope", [MESH_R_CLOCK] = "clock",
		[MESH_R_REPLAYED] = "replayed", [MESH_R_FULL] = "full",
		[MESH_R_TAKEN] = "taken",
	};

	return (unsigned)r < MESH_R_MAX ? names[r] : "unknown";
}

int mesh_load_keys(const char *path, struct cookie_keys *ret)
{
	char errs[2048] = "";
	int r = cookie_keys_load(path, ret, errs, sizeof(errs));

	if (r < 0) {
		fprintf(stderr, "%s", errs[0] ? errs : "mesh key file: out of memory\n");
		return r;
	}
	return 0;
}

static uint64_t realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* HMAC-SHA256 with k's secret over the label and the signed bytes,
 * truncated to the tag's length. A borrow request (lender non-NULL) has
 * its own label and the lender's address before the bytes (meshmsg.h). */
static void announce_tag(const struct cookie_key *k, const uint8_t *msg,
			 const struct in6_addr *lender, uint8_t tag[MESH_TAG_LEN])
{
	static const char label[] = "mptcp-ha mesh 2", blabel[] = "mptcp-ha borrow 2";
	uint8_t buf[sizeof(blabel) - 1 + 4 + MESH_REQUEST_SIGNED], mac[EVP_MAX_MD_SIZE];
	size_t n = 0, signed_len = lender ? MESH_REQUEST_SIGNED : MESH_ANNOUNCE_SIGNED;
	unsigned ml = 0;

	if (lender) {
		memcpy(buf, blabel, sizeof(blabel) - 1);
		n = sizeof(blabel) - 1;
		memcpy(buf + n, &lender->s6_addr[12], 4);
		n += 4;
	} else {
		memcpy(buf, label, sizeof(label) - 1);
		n = sizeof(label) - 1;
	}
	memcpy(buf + n, msg, signed_len);
	n += signed_len;
	HMAC(EVP_sha256(), k->secret, COOKIE_SECRET_LEN, buf, n, mac, &ml);
	memcpy(tag, mac, MESH_TAG_LEN);
}

static uint64_t next_seq(struct mesh *m)
{
	uint64_t now = realtime_ms();

	m->last_tx_seq = now > m->last_tx_seq ? now : m->last_tx_seq + 1;
	return m->last_tx_seq;
}

/* Say on the segment whether we lend: signed with our first key, as our
 * lending interface's address, with a sequence above the last one. Without
 * a key we say nothing (no borrower would take it). */
static int announce(struct mesh *m, bool lending)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(MESH_PORT),
				  .sin_addr.s_addr = htonl(INADDR_BROADCAST) };
	struct mesh_announce an = { .lending = lending };
	uint8_t msg[MESH_REQUEST_LEN];

	if (!m->keys.n)
		return 0;
	an.kid = m->keys.k[0].id;
	an.seq = next_seq(m);
	an.sender = m->lend_own;
	mesh_announce_build(msg, &an);
	announce_tag(&m->keys.k[0], msg, NULL, msg + MESH_ANNOUNCE_SIGNED);
	if (sendto(m->tx_fd, msg, MESH_ANNOUNCE_LEN, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		return -errno;
	return 0;
}

/* Ask lender n to forward our borrow address for it, from our MAC
 * address: signed with our first key for n's address, from our mesh
 * address (IP_PKTINFO: the interface has our borrow addresses too). */
static int borrow_request(struct mesh *m, const struct mesh_neighbour *n)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(MESH_PORT) };
	struct mesh_announce an = { .lending = true, .borrow = true };
	uint8_t msg[MESH_REQUEST_LEN];
	struct ifreq ifr = { 0 };
	union {
		char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { .iov_base = msg, .iov_len = sizeof(msg) };
	struct msghdr mh = { .msg_name = &to, .msg_namelen = sizeof(to), .msg_iov = &iov,
			     .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	struct in_pktinfo pi = { 0 };

	if (!m->keys.n || !m->have_own || m->rx_fd < 0)
		return 0;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", m->cfg.borrow_if);
	if (ioctl(m->rx_fd, SIOCGIFHWADDR, &ifr) < 0)
		return -errno;
	memcpy(an.mac, ifr.ifr_hwaddr.sa_data, 6);
	memcpy(&to.sin_addr, &n->addr.s6_addr[12], 4);
	memcpy(&pi.ipi_spec_dst, &m->own.s6_addr[12], 4);
	c->cmsg_level = IPPROTO_IP;
	c->cmsg_type = IP_PKTINFO;
	c->cmsg_len = CMSG_LEN(sizeof(pi));
	memcpy(CMSG_DATA(c), &pi, sizeof(pi));
	an.kid = m->keys.k[0].id;
	an.seq = next_seq(m);
	an.sender = m->own;
	mesh_announce_build(msg, &an);
	announce_tag(&m->keys.k[0], msg, &n->addr, msg + MESH_REQUEST_SIGNED);
	return sendmsg(m->rx_fd, &mh, 0) < 0 ? -errno : 0;
}

static bool on_link(const struct in6_addr *own, unsigned plen, const struct in6_addr *a)
{
	uint32_t x, y, mask = plen ? ~0u << (32 - plen) : 0;

	memcpy(&x, &a->s6_addr[12], 4);
	memcpy(&y, &own->s6_addr[12], 4);
	return ((ntohl(x) ^ ntohl(y)) & mask) == 0;
}

/* Everything about an announcement or a borrow request but its sequence
 * against the last one (that is the sender's): from src, its bytes
 * buf[0..len), received on the interface whose address is own/plen (a
 * borrow request: our lending interface's; borrow says which is wanted). */
static enum mesh_result check_announce(const struct mesh *m, const uint8_t *buf, size_t len,
				       const struct in6_addr *src, bool borrow,
				       const struct in6_addr *own, unsigned plen,
				       struct mesh_announce *an)
{
	const struct cookie_key *k;
	uint8_t tag[MESH_TAG_LEN];
	const char *why;
	uint64_t now;

	if (mesh_announce_parse(buf, len, an, &why) < 0)
		return len >= 5 && !memcmp(buf, "gwml", 4) && buf[4] == 1 ?
			MESH_R_UNAUTHENTICATED : MESH_R_MALFORMED;
	if (!m->keys.n)
		return MESH_R_NO_KEY;
	if (an->borrow != borrow)
		return MESH_R_MALFORMED;
	if (memcmp(&an->sender, src, sizeof(*src)))
		return MESH_R_SENDER;
	if (!own || !on_link(own, plen, src))
		return MESH_R_OFF_LINK;
	k = cookie_keys_find(&m->keys, an->kid);
	if (!k)
		return MESH_R_UNKNOWN_KEY;
	announce_tag(k, buf, borrow ? own : NULL, tag);
	if (CRYPTO_memcmp(tag, an->tag, MESH_TAG_LEN))
		return MESH_R_BAD_TAG;
	if (!k->any && k->nscope) {
		bool in = false;

		for (unsigned i = 0; i < k->nscope && !in; i++)
			in = addr_prefix_match(&k->scope[i], src);
		if (!in)
			return MESH_R_SCOPE;
	}
	now = realtime_ms();
	if (an->seq > now + MESH_CLOCK_MS || an->seq + MESH_CLOCK_MS < now)
		return MESH_R_CLOCK;
	return MESH_R_OK;
}

static int udp_socket(const char *ifname, bool bind_port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(MESH_PORT) };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -errno;
	/* The mesh interface only: announcements from elsewhere are not
	 * neighbours, and ours must not leave by the WAN. */
	if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname, (socklen_t)strlen(ifname)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) < 0 ||
	    (bind_port && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

static int cmd(char *const argv[], const char *input)
{
	return agent_cmd(argv, input, true);
}

static int lend_route(const struct mesh *m, bool add)
{
	char pfx[32];
	char *argv[] = { "ip", "-4", "route", add ? "replace" : "del", pfx, "dev",
			 (char *)m->cfg.lend_if, "scope", "link", NULL };

	snprintf(pfx, sizeof(pfx), "100.64.%u.0/24", m->lend_own.s6_addr[15]);
	return agent_cmd(argv, NULL, add);
}

static void mac_format(const uint8_t mac[6], char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
		 mac[5]);
}

static void lend_remove(struct mesh *m)
{
	char *del[] = { "nft", "delete", "table", "inet", NFT_LEND, NULL };

	agent_cmd(del, NULL, false);
	/* The set went with the table; the pinned neighbour entries go in one
	 * flush (also what a killed agent left: the slots start empty). */
	if (m->lend_own.s6_addr[10]) {
		char pfx[24];
		char *flush[] = { "ip", "-4", "neigh", "flush", "dev", m->cfg.lend_if, "to", pfx,
				  "nud", "permanent", NULL };

		snprintf(pfx, sizeof(pfx), "100.64.%u.0/24", m->lend_own.s6_addr[15]);
		agent_cmd(flush, NULL, false);
	}
	for (unsigned b = 0; b < 256; b++)
		m->br[b].allowed = false;
	m->nallowed = 0;
	if (m->have_own || m->lend_installed)
		lend_route(m, false);
	if (m->shaped) {
		char *argv[] = { "tc", "qdisc", "del", "dev", m->cfg.lend_wan, "root", NULL };

		agent_cmd(argv, NULL, false);
		m->shaped = false;
	}
	m->lend_installed = false;
}

/* Our line's upload, shaped just under the line's rate so the queue forms
 * here, where our own traffic (class 10) goes first and lent traffic
 * (class 20, chosen by the priority the lending table sets) gets what is
 * left, up to rate=. */
static int lend_shape(struct mesh *m)
{
	const char *wan = m->cfg.lend_wan, *up = m->cfg.lend_uplink;
	const char *cap = m->cfg.lend_rate[0] ? m->cfg.lend_rate : up;
	char *const cmds[][20] = {
		{ "tc", "qdisc", "replace", "dev", (char *)wan, "root", "handle", "4d4c:", "htb",
		  "default", "10", NULL },
		{ "tc", "class", "add", "dev", (char *)wan, "parent", "4d4c:", "classid", "4d4c:1",
		  "htb", "rate", (char *)up, "ceil", (char *)up, NULL },
		{ "tc", "class", "add", "dev", (char *)wan, "parent", "4d4c:1", "classid", "4d4c:10",
		  "htb", "rate", (char *)up, "ceil", (char *)up, "prio", "0", NULL },
		{ "tc", "class", "add", "dev", (char *)wan, "parent", "4d4c:1", "classid", "4d4c:20",
		  "htb", "rate", "64kbit", "ceil", (char *)cap, "prio", "1", NULL },
		/* Short queues: a full one is latency for everybody. */
		{ "tc", "qdisc", "add", "dev", (char *)wan, "parent", "4d4c:10", "pfifo", "limit",
		  "128", NULL },
		{ "tc", "qdisc", "add", "dev", (char *)wan, "parent", "4d4c:20", "pfifo", "limit",
		  "64", NULL },
	};

	for (unsigned i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		int r = agent_cmd(cmds[i], NULL, true);

		if (r != 0) {
			log_error("--lend: shaping %s (uplink %s): tc step %u failed (exit %d)",
				  wan, up, i + 1, r);
			m->shaped = true;  /* remove what was made */
			return r < 0 ? r : -EINVAL;
		}
	}
	m->shaped = true;
	return 0;
}

/* Where borrowers may go: the forward chain's rule (starting with the mesh
 * interface) that drops everything else. Borrow addresses are IPv4
 * (100.64.L.B), so only IPv4 concentrators can be reached, at their port
 * by TCP (MPTCP) and UDP (the UDP carrier, same number); with none,
 * nothing is forwarded. A cluster's boxes announce their own addresses to
 * each connection, which borrowers then join: those are reached at the
 * concentrators' ports within the joins= prefixes the operator gives. */
static int lend_dest_rule(const struct mesh *m, const struct sockaddr_storage *conc,
			  unsigned nconc, char *out, size_t cap)
{
	char elems[(MESH_MAX_CONC + MESH_MAX_CONC * MESH_MAX_JOINS) * (ADDR_STRLEN + 12)] = "";
	uint16_t ports[MESH_MAX_CONC];
	unsigned n = 0, np = 0;

	out[0] = '\0';
	for (unsigned i = 0; i < nconc && i < MESH_MAX_CONC; i++) {
		char ca[ADDR_STRLEN];
		struct in6_addr c;
		uint16_t port;
		unsigned k;

		if (addr_to_in6((const struct sockaddr *)&conc[i], &c, &port) < 0 ||
		    !addr_is_v4mapped(&c))
			continue;
		addr_format_in6(&c, 0, ca);
		script_append(elems, sizeof(elems), "%s%s . %u", n++ ? ", " : "", ca, port);
		for (k = 0; k < np && ports[k] != port; k++)
			;
		if (k == np)
			ports[np++] = port;
	}
	for (unsigned j = 0; n && j < m->cfg.nlend_joins; j++)
		for (unsigned k = 0; k < np; k++) {
			char pa[ADDR_STRLEN + 4];

			script_append(elems, sizeof(elems), ", %s . %u",
				      addr_format_prefix(&m->cfg.lend_joins[j], pa), ports[k]);
		}
	if (strlen(elems) >= sizeof(elems) - 1)
		return -E2BIG;
	if (!n)
		script_append(out, cap, "\t\tiifname \"%s\" drop\n", m->cfg.lend_if);
	else
		script_append(out, cap, "\t\tiifname \"%s\" ip daddr . th dport != { %s } drop\n",
			      m->cfg.lend_if, elems);
	return strlen(out) >= cap - 1 ? -E2BIG : 0;
}

/* The lending table as one nft script; replace: in place of the running
 * one, in the same transaction (nothing unfiltered in between). */
static int lend_script(const struct mesh *m, const struct sockaddr_storage *conc,
		       unsigned nconc, bool replace, char *script, size_t size)
{
	char dest_rule[2048], cap[320] = "", prio[96] = "", allowed[224] = "";
	char elems[256 * 38] = "";
	int r = lend_dest_rule(m, conc, nconc, dest_rule, sizeof(dest_rule));

	if (r < 0)
		return log_errno(r, "--lend %s: too many concentrators and joins= for the lending table",
				 m->cfg.lend_if);
	/* TCP refused with a reset, the UDP carrier's datagrams dropped; one
	 * count per borrower for both (the element's, whichever rule made it). */
	if (m->cfg.lend_flows)
		snprintf(cap, sizeof(cap),
			 "\t\tiifname \"%s\" ct state new add @borrowers { ip saddr ct count over %u } "
			 "reject with tcp reset\n"
			 "\t\tiifname \"%s\" meta l4proto udp ct state new "
			 "add @borrowers { ip saddr ct count over %u } drop\n",
			 m->cfg.lend_if, m->cfg.lend_flows, m->cfg.lend_if, m->cfg.lend_flows);
	if (m->cfg.lend_uplink[0])
		snprintf(prio, sizeof(prio), "\t\tiifname \"%s\" meta priority set 4d4c:20\n",
			 m->cfg.lend_if);
	/* With a mesh key, only the borrow addresses of borrowers whose
	 * requests we verified (borrow_allow), kept across a replacement. */
	if (m->keys.n) {
		/* Without an Ethernet header there is no MAC to match
		 * (mesh_start refuses such an interface; this says it again). */
		snprintf(allowed, sizeof(allowed),
			 "\t\tiifname \"%s\" meta iiftype != ether drop\n"
			 "\t\tiifname \"%s\" ip saddr . ether saddr != @allowed drop\n",
			 m->cfg.lend_if, m->cfg.lend_if);
		for (unsigned b = 0; b < 256; b++)
			if (m->br[b].allowed) {
				char mac[18];

				mac_format(m->br[b].mac, mac);
				script_append(elems, sizeof(elems), "%s100.64.%u.%u . %s",
					      elems[0] ? ", " : "", m->lend_own.s6_addr[15], b, mac);
			}
	}
	script[0] = '\0';
	if (replace)
		script_append(script, size, "table inet " NFT_LEND " {}\ndelete table inet " NFT_LEND "\n");
	/* Between mesh nodes (a multi-hop mesh routed through us) is the
	 * mesh's business; from the mesh to anywhere else only TCP and UDP
	 * (MPTCP subflows and the UDP carrier) to our concentrators' ports
	 * (lend_dest_rule) from a borrow address for us
	 * (100.64.L.0/24, L our last byte: what borrowers use for us, at most
	 * 254 of them); replies come back through conntrack's translation.
	 * The flow cap counts new connections per borrower address (only
	 * those to a concentrator get that far), and all of them together
	 * are capped too, so no number of borrowers fills our conntrack table
	 * or the concentrators' limits for our address. */
	script_append(script, size,
		      "table inet " NFT_LEND " {\n"
		      "\tset borrowers { type ipv4_addr; size 256; flags dynamic; }\n"
		      "\tset lent { type ifname; size 1; flags dynamic; }\n"
		      "\tset allowed { type ipv4_addr . ether_addr; size 256; %s%s%s}\n"
		      "\tchain forward {\n"
		      "\t\ttype filter hook forward priority filter - 1; policy accept;\n"
		      "\t\tiifname \"%s\" oifname \"%s\" accept\n"
		      "\t\tiifname \"%s\" meta nfproto != ipv4 drop\n"
		      "\t\tiifname \"%s\" ip saddr != 100.64.%u.0/24 drop\n"
		      "%s"
		      "\t\tiifname \"%s\" meta l4proto != { tcp, udp } drop\n"
		      "%s"
		      "\t\tiifname \"%s\" ct state new add @lent { iifname ct count over %u } "
		      "reject with tcp reset\n"
		      "\t\tiifname \"%s\" meta l4proto udp ct state new "
		      "add @lent { iifname ct count over %u } drop\n"
		      "%s"
		      "%s"
		      "\t}\n"
		      "\tchain postrouting {\n"
		      "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
		      "\t\tiifname \"%s\" oifname != \"%s\" masquerade\n"
		      "\t}\n"
		      "}\n",
		      elems[0] ? "elements = { " : "", elems, elems[0] ? " }; " : "",
		      m->cfg.lend_if, m->cfg.lend_if,
		      m->cfg.lend_if,
		      m->cfg.lend_if, m->lend_own.s6_addr[15],
		      allowed,
		      m->cfg.lend_if,
		      dest_rule,
		      m->cfg.lend_if, m->cfg.lend_total, m->cfg.lend_if, m->cfg.lend_total,
		      cap, prio, m->cfg.lend_if, m->cfg.lend_if);
	if (strlen(script) >= size - 1)
		return log_errno(-E2BIG, "the lending table's script is too long");
	return 0;
}

static int lend_install(struct mesh *m)
{
	char script[20480];
	char *nft[] = { "nft", "-f", "-", NULL };
	int r;

	lend_remove(m);
	r = lend_script(m, m->conc, m->nconc, false, script, sizeof(script));
	if (r < 0)
		return r;
	r = cmd(nft, script);
	if (r != 0) {
		log_error("nft refused the lending table (exit %d); script was:\n%s", r, script);
		return r < 0 ? r : -EINVAL;
	}
	r = lend_route(m, true);
	if (r != 0) {
		lend_remove(m);
		log_error("%s: cannot route 100.64.%u.0/24 for borrowers (exit %d)",
			  m->cfg.lend_if, m->lend_own.s6_addr[15], r);
		return r < 0 ? r : -EINVAL;
	}
	m->lend_installed = true;
	if (m->cfg.lend_uplink[0] && (r = lend_shape(m)) < 0) {
		lend_remove(m);
		return r;
	}
	/* A lender forwards: from the mesh to its WAN, and back. */
	{
		FILE *f = fopen("/proc/sys/net/ipv4/ip_forward", "we");

		if (f) {
			fputs("1", f);
			fclose(f);
		}
	}
	return 0;
}

/* Counters per borrow address, sent and received on the mesh interface
 * (sets with a counter per element, filled by the packets themselves). */
static int count_install(struct mesh *m)
{
	char *nft[] = { "nft", "-f", "-", NULL };
	char script[1024];
	int r;

	snprintf(script, sizeof(script),
		 "table inet " NFT_MESH " {}\ndelete table inet " NFT_MESH "\n"
		 "table inet " NFT_MESH " {\n"
		 "\tset tx { type ipv4_addr; size 512; flags dynamic; counter; }\n"
		 "\tset rx { type ipv4_addr; size 512; flags dynamic; counter; }\n"
		 "\tchain post {\n"
		 "\t\ttype filter hook postrouting priority filter; policy accept;\n"
		 "\t\toifname \"%s\" ip saddr 100.64.0.0/16 update @tx { ip saddr }\n"
		 "\t}\n"
		 "\tchain pre {\n"
		 "\t\ttype filter hook prerouting priority filter; policy accept;\n"
		 "\t\tiifname \"%s\" ip daddr 100.64.0.0/16 update @rx { ip daddr }\n"
		 "\t}\n"
		 "}\n", m->cfg.borrow_if, m->cfg.borrow_if);
	r = cmd(nft, script);
	if (r != 0)
		return log_error("nft refused the mesh counters table (exit %d)", r), -EINVAL;
	m->counting = true;
	return 0;
}

static void count_remove(struct mesh *m)
{
	char *del[] = { "nft", "delete", "table", "inet", NFT_MESH, NULL };

	if (m->counting)
		agent_cmd(del, NULL, false);
	m->counting = false;
}

static int count_elems(json_t *set, bool is_tx, struct mesh_count *ret, int n, unsigned max)
{
	json_t *elems = json_object_get(set, "elem"), *e;
	size_t i;

	json_array_foreach(elems, i, e) {
		json_t *el = json_object_get(e, "elem");
		const char *v = json_string_value(json_object_get(el, "val"));
		json_t *c = json_object_get(el, "counter");
		uint64_t bytes = (uint64_t)json_integer_value(json_object_get(c, "bytes"));
		struct addr_prefix a;
		int k;

		if (!v || addr_parse_prefix(v, &a) < 0)
			continue;
		for (k = 0; k < n; k++)
			if (!memcmp(&ret[k].addr, &a.addr, sizeof(a.addr)))
				break;
		if (k == n) {
			if ((unsigned)n == max)
				continue;
			memset(&ret[n], 0, sizeof(ret[n]));
			ret[n++].addr = a.addr;
		}
		*(is_tx ? &ret[k].tx : &ret[k].rx) = bytes;
	}
	return n;
}

int mesh_counters(struct mesh_count *ret, unsigned max)
{
	/* Two sets of at most 512 elements each: well within 256 KiB. A
	 * helper run as every other (clean signals, a deadline: a stuck nft
	 * must not hang the status socket or a scrape). */
	char *argv[] = { "nft", "-j", "list", "table", "inet", NFT_MESH, NULL };
	json_t *root, *arr, *o;
	size_t i;
	int n = 0, r;

	root = spawn_nft_json(argv, 256 << 10, 5000, &r);
	if (!root)
		return r < 0 ? r : -ENOENT;
	arr = json_object_get(root, "nftables");
	json_array_foreach(arr, i, o) {
		json_t *set = json_object_get(o, "set");
		const char *name = json_string_value(json_object_get(set, "name"));

		if (name && (!strcmp(name, "tx") || !strcmp(name, "rx")))
			n = count_elems(set, name[0] == 't', ret, n, max);
	}
	json_decref(root);
	return n;
}

void mesh_count_find(const struct mesh_count *c, int n, const struct in6_addr *addr,
		     uint64_t *rx, uint64_t *tx)
{
	*rx = *tx = 0;
	for (int i = 0; i < n; i++)
		if (!memcmp(&c[i].addr, addr, sizeof(*addr))) {
			*rx = c[i].rx;
			*tx = c[i].tx;
		}
}

static void set_concentrators(struct mesh *m, const struct sockaddr_storage *conc,
			      const socklen_t *conc_len, unsigned nconc)
{
	m->nconc = nconc < MESH_MAX_CONC ? nconc : MESH_MAX_CONC;
	for (unsigned i = 0; i < m->nconc; i++) {
		m->conc[i] = conc[i];
		m->conc_len[i] = conc_len[i];
	}
}

int mesh_set_concentrators(struct mesh *m, const struct sockaddr_storage *conc,
			   const socklen_t *conc_len, unsigned nconc)
{
	char *nft[] = { "nft", "-f", "-", NULL };
	char script[20480];
	bool same = nconc == m->nconc;
	int r;

	for (unsigned i = 0; same && i < nconc; i++)
		same = conc_len[i] == m->conc_len[i] && !memcmp(&conc[i], &m->conc[i], conc_len[i]);
	if (same)
		return 0;
	if (m->lend_installed) {
		/* The table alone, in one transaction: the route and the
		 * shaping stay, and the old table stays if nft refuses. */
		r = lend_script(m, conc, nconc, true, script, sizeof(script));
		if (r == 0 && (r = cmd(nft, script)) != 0) {
			log_error("nft refused the lending table for the new concentrators (exit %d); "
				  "the old one stays", r);
			r = r < 0 ? r : -EINVAL;
		}
		if (r < 0)
			return r;
		log_info("--lend %s: lending to the new concentrators", m->cfg.lend_if);
	}
	set_concentrators(m, conc, conc_len, nconc);
	return 0;
}

int mesh_start(struct mesh *m, const struct sockaddr_storage *conc, const socklen_t *conc_len,
	       unsigned nconc, const char *wan)
{
	int r;

	m->rx_fd = m->tx_fd = -1;
	set_concentrators(m, conc, conc_len, nconc);
	if (m->cfg.key_path[0] && mesh_load_keys(m->cfg.key_path, &m->keys) < 0)
		return -EINVAL;
	if (m->cfg.lend_uplink[0] && !m->cfg.lend_wan[0]) {
		if (!wan) {
			log_error("--lend %s,uplink=%s: which interface is our line? Give wan= "
				  "(or a --path)", m->cfg.lend_if, m->cfg.lend_uplink);
			return -EINVAL;
		}
		snprintf(m->cfg.lend_wan, sizeof(m->cfg.lend_wan), "%s", wan);
	}
	if (m->cfg.lend_if[0]) {
		r = if_addr4(m->cfg.lend_if, &m->lend_own, &m->lend_plen);
		if (r < 0)
			return log_errno(r, "--lend %s: no IPv4 address on it: %m", m->cfg.lend_if);
		if (m->keys.n && !if_ethernet(m->cfg.lend_if))
			return log_error("--lend %s with --mesh-key: not an Ethernet-like interface "
					 "(Ethernet, Wi-Fi, a bridge): a lender binds each borrower to "
					 "its MAC address", m->cfg.lend_if), -EINVAL;
		r = lend_install(m);
		if (r < 0)
			return r;
		/* Bound to the port, where borrow requests come, unless the
		 * borrowing socket on the same interface takes them. */
		r = udp_socket(m->cfg.lend_if, strcmp(m->cfg.lend_if, m->cfg.borrow_if) != 0);
		if (r < 0) {
			lend_remove(m);
			return log_errno(r, "--lend %s: announcement socket: %m", m->cfg.lend_if);
		}
		m->tx_fd = r;
		if (!m->keys.n)
			log_warn("--lend %s without --mesh-key: no announcements (only borrowers "
				 "that name us as a neighbour= use our line), and any device on the "
				 "mesh that takes a borrow address for us can use our line within "
				 "flows= and total=", m->cfg.lend_if);
		log_info("lending our line to the mesh on %s: TCP to %s only, %u flows in all, %u per borrower%s%s%s%s%s%s",
			 m->cfg.lend_if,
			 m->cfg.nlend_joins ? "our concentrators and joins= at their ports" : "our concentrators",
			 m->cfg.lend_total,
			 m->cfg.lend_flows,
			 m->cfg.lend_flows ? "" : " (no cap)",
			 m->shaped ? "; our own traffic first on " : "", m->shaped ? m->cfg.lend_wan : "",
			 m->shaped ? " (uplink " : "", m->shaped ? m->cfg.lend_uplink : "",
			 m->shaped ? ")" : "");
	}
	if (m->cfg.borrow_if[0]) {
		r = udp_socket(m->cfg.borrow_if, true);
		if (r < 0) {
			mesh_stop(m, NULL);
			return log_errno(r, "--mesh %s: announcement listener: %m", m->cfg.borrow_if);
		}
		m->rx_fd = r;
		r = count_install(m);
		if (r < 0) {
			mesh_stop(m, NULL);
			return r;
		}
		for (unsigned i = 0; i < m->cfg.nstatic && m->nnb < MESH_MAX_NEIGHBOURS; i++) {
			struct mesh_neighbour *n = &m->nb[m->nnb++];

			memset(n, 0, sizeof(*n));
			n->addr = m->cfg.statics[i];
			n->is_static = true;
			n->lending = true;
		}
		log_info("borrowing neighbours' lines through %s (%u static%s)", m->cfg.borrow_if,
			 m->cfg.nstatic, m->keys.n ? "; announcements signed with our mesh keys" :
			 "; no --mesh-key: announcements ignored");
	}
	return 0;
}

/* Another neighbour's path already uses borrow address b (two lenders with
 * the same last byte on a mesh larger than a /24): n gets none, said once,
 * rather than share it and take it away from the other when n leaves. */
static bool borrow_taken(struct mesh *m, struct mesh_neighbour *n, const struct in6_addr *b)
{
	for (unsigned i = 0; i < m->nnb; i++) {
		struct mesh_neighbour *o = &m->nb[i];
		struct in6_addr ob;

		if (o == n || !o->addr_added)
			continue;
		mesh_borrow_addr(&o->addr, &m->own, &ob);
		if (!memcmp(&ob, b, sizeof(ob))) {
			if (!n->conflict) {
				char x[ADDR_STRLEN], y[ADDR_STRLEN];

				log_warn("mesh %s: neighbour %s not used: its borrow address is %s's "
					 "(lenders on one mesh need different last bytes)",
					 m->cfg.borrow_if, addr_format_in6(&n->addr, 0, x),
					 addr_format_in6(&o->addr, 0, y));
			}
			n->conflict = true;
			return true;
		}
	}
	n->conflict = false;
	return false;
}

static void borrow_addr_set(struct mesh *m, struct mesh_neighbour *n, bool add)
{
	struct in6_addr b;
	char a[ADDR_STRLEN + 4];
	char *argv[] = { "ip", "-4", "addr", add ? "replace" : "del", a, "dev",
			 m->cfg.borrow_if, NULL };

	if (add == n->addr_added)
		return;
	mesh_borrow_addr(&n->addr, &m->own, &b);
	addr_format_in6(&b, 0, a);
	strcat(a, "/32");
	if (agent_cmd(argv, NULL, add) == 0 || !add)
		n->addr_added = add;
}

void mesh_stop(struct mesh *m, struct paths *ps)
{
	if (m->tx_fd >= 0) {
		/* Borrowers stop sending here now, not in MESH_EXPIRE_MS. */
		announce(m, false);
		close(m->tx_fd);
		m->tx_fd = -1;
	}
	if (m->cfg.lend_if[0])
		lend_remove(m);
	for (unsigned i = 0; i < m->nnb; i++) {
		if (ps && m->nb[i].path)
			paths_neighbour_down(ps, m->nb[i].path);
		borrow_addr_set(m, &m->nb[i], false);
	}
	if (m->rx_fd >= 0)
		close(m->rx_fd);
	m->rx_fd = -1;
	count_remove(m);
	cookie_keys_free(&m->keys);
}

int mesh_fd(const struct mesh *m)
{
	return m->rx_fd;
}

/* Log a refusal at most every 10 s; counts are in results. */
static void refused(struct mesh *m, uint64_t *next_log, const char *what, const char *ifname,
		    const struct in6_addr *a, enum mesh_result res)
{
	uint64_t now = log_now_ms();

	if (now >= *next_log) {
		char sa[ADDR_STRLEN];

		log_warn("mesh %s: %s from %s refused: %s (more are counted, not logged, for 10 s)",
			 ifname, what, addr_format_in6(a, 0, sa), mesh_result_name(res));
		*next_log = now + 10000;
	}
	(void)m;
}

/* Borrower slot b's element (its borrow address for us and its MAC) in
 * the lending table's set, or out; with it a permanent neighbour entry,
 * so our replies to that address go to that MAC whatever else answers
 * ARP for it. */
static int borrow_allow(struct mesh *m, unsigned b, bool add)
{
	struct mesh_borrower *br = &m->br[b];
	char elem[64], addr[20], mac[18];
	char *nft[] = { "nft", add ? "add" : "delete", "element", "inet", NFT_LEND, "allowed",
			elem, NULL };
	char *neigh_add[] = { "ip", "-4", "neigh", "replace", addr, "lladdr", mac, "dev",
			      m->cfg.lend_if, "nud", "permanent", NULL };
	char *neigh_del[] = { "ip", "-4", "neigh", "del", addr, "dev", m->cfg.lend_if, NULL };
	int r;

	if (br->allowed == add)
		return 0;
	snprintf(addr, sizeof(addr), "100.64.%u.%u", m->lend_own.s6_addr[15], b);
	mac_format(br->mac, mac);
	snprintf(elem, sizeof(elem), "{ %s . %s }", addr, mac);
	if (!add) {
		agent_cmd(nft, NULL, false);
		agent_cmd(neigh_del, NULL, false);
		br->allowed = false;
		m->nallowed--;
		return 0;
	}
	r = agent_cmd(neigh_add, NULL, true);
	if (r == 0)
		r = agent_cmd(nft, NULL, true);
	if (r != 0) {
		agent_cmd(neigh_del, NULL, false);
		/* Not again for every request: in 5 s. */
		br->retry_ms = log_now_ms() + 5000;
		return log_error("--lend %s: borrow address %s for %s not taken (exit %d); "
				 "trying again in 5 s", m->cfg.lend_if, addr, mac, r), -EINVAL;
	}
	br->allowed = true;
	m->nallowed++;
	return 0;
}

/* Our neighbour entries for the allowed borrow addresses again: the
 * kernel drops even permanent ones when the link goes down. One helper
 * for all (ip -batch). */
static void borrow_repin(struct mesh *m)
{
	char script[256 * 96] = "";
	char *argv[] = { "ip", "-4", "-batch", "-", NULL };

	for (unsigned b = 0; b < 256; b++)
		if (m->br[b].allowed) {
			char mac[18];

			mac_format(m->br[b].mac, mac);
			script_append(script, sizeof(script),
				      "neigh replace 100.64.%u.%u lladdr %s dev %s nud permanent\n",
				      m->lend_own.s6_addr[15], b, mac, m->cfg.lend_if);
		}
	if (script[0])
		agent_cmd(argv, script, false);
}

/* A borrow request from a (on our lending interface): verified, its
 * sender's borrow address is forwarded from the MAC address it names
 * (borrow_allow) until it has been silent MESH_BORROW_EXPIRE_MS. New
 * borrowers are taken at most MESH_NEW_BORROWERS a second: each costs
 * helper programs, and a key valid for any address could otherwise have
 * us run hundreds at once. */
static void lend_request(struct mesh *m, const uint8_t *buf, size_t len, const struct in6_addr *a)
{
	struct mesh_announce an;
	enum mesh_result res = MESH_R_OK;
	struct mesh_borrower *br = &m->br[a->s6_addr[15]];
	uint64_t now = log_now_ms();

	if (!m->lend_installed)
		return;
	res = check_announce(m, buf, len, a, true, &m->lend_own, m->lend_plen, &an);
	if (res == MESH_R_OK && br->addr.s6_addr[10] && memcmp(&br->addr, a, sizeof(*a))) {
		/* Another borrower with the same last byte (a mesh larger
		 * than a /24) holds the slot while it is live. */
		if (br->allowed || br->last_seq + MESH_CLOCK_MS >= realtime_ms())
			res = MESH_R_TAKEN;
		else
			memset(br, 0, sizeof(*br));
	}
	if (res == MESH_R_OK && br->addr.s6_addr[10] && an.seq <= br->last_seq)
		res = MESH_R_REPLAYED;
	/* A MAC address change is a new borrower too, and at most one a
	 * slot in MESH_BORROW_EXPIRE_MS (a key holder changing its MAC at
	 * every request must not run helpers at our every wakeup, nor use up
	 * the budget of new borrowers). */
	if (res == MESH_R_OK && br->allowed && memcmp(br->mac, an.mac, 6) &&
	    now < br->mac_since_ms + MESH_BORROW_EXPIRE_MS)
		res = MESH_R_TAKEN;
	if (res == MESH_R_OK && (!br->allowed || memcmp(br->mac, an.mac, 6))) {
		if (now >= m->new_window_ms + 1000) {
			m->new_window_ms = now;
			m->new_in_window = 0;
		}
		if (m->new_in_window >= MESH_NEW_BORROWERS || now < br->retry_ms)
			res = MESH_R_FULL;
	}
	m->req_results[res]++;
	if (res != MESH_R_OK) {
		refused(m, &m->next_req_log_ms, "borrow request", m->cfg.lend_if, a, res);
		return;
	}
	br->addr = *a;
	br->last_seq = an.seq;
	br->seen_ms = now;
	if (br->allowed && memcmp(br->mac, an.mac, 6))
		borrow_allow(m, a->s6_addr[15], false);  /* its MAC changed */
	if (!br->allowed) {
		char sa[ADDR_STRLEN], mac[18];

		m->new_in_window++;
		br->mac_since_ms = now;
		memcpy(br->mac, an.mac, 6);
		mac_format(an.mac, mac);
		if (borrow_allow(m, a->s6_addr[15], true) == 0)
			log_info("mesh %s: lending to %s (borrow address 100.64.%u.%u from %s)",
				 m->cfg.lend_if, addr_format_in6(a, 0, sa), m->lend_own.s6_addr[15],
				 a->s6_addr[15], mac);
	}
}

/* An announcement from a (on our borrowing interface); true when the set
 * of neighbours changed. */
static bool borrow_announce(struct mesh *m, const uint8_t *buf, size_t len,
			    const struct in6_addr *a)
{
	struct mesh_announce an;
	struct mesh_neighbour *n = NULL;
	enum mesh_result res;
	bool changed = false;

	res = check_announce(m, buf, len, a, false, m->have_own ? &m->own : NULL, m->own_plen, &an);
	for (unsigned i = 0; i < m->nnb && res == MESH_R_OK; i++)
		if (!memcmp(&m->nb[i].addr, a, sizeof(*a)))
			n = &m->nb[i];
	if (n && an.seq <= n->last_seq)
		res = MESH_R_REPLAYED;
	if (res == MESH_R_OK && !n) {
		if (!an.lending)
			goto counted;  /* a stranger's withdrawal: nothing to do */
		/* Room is made by mesh_tick, once a departed neighbour's
		 * path, address and sequence are of no more use. */
		if (m->nnb == MESH_MAX_NEIGHBOURS) {
			res = MESH_R_FULL;
		} else {
			n = &m->nb[m->nnb++];
			memset(n, 0, sizeof(*n));
			n->addr = *a;
		}
	}
	if (res != MESH_R_OK) {
		m->results[res]++;
		refused(m, &m->next_refusal_log_ms, "announcement", m->cfg.borrow_if, a, res);
		return false;
	}
	n->last_seq = an.seq;
	n->seen_ms = log_now_ms();
	if (n->lending != an.lending)
		changed = true;
	n->lending = an.lending;
counted:
	m->results[MESH_R_OK]++;
	return changed;
}

/* Everything waiting on fd: announcements for the borrower (when fd is
 * on the borrowing interface), borrow requests for the lender (when it
 * is on the lending one). */
static bool receive_on(struct mesh *m, int fd, bool borrowing, bool lending)
{
	bool changed = false;

	/* At most 64 a call (a flood must not hold the main loop: the rest
	 * wait for the next poll). */
	for (unsigned i = 0; i < 64; i++) {
		uint8_t buf[64];
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		struct in6_addr a;
		bool request;
		ssize_t k = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);

		if (k < 0)
			break;
		if (addr_to_in6((struct sockaddr *)&from, &a, NULL) < 0 || !addr_is_v4mapped(&a))
			continue;
		if ((m->have_own && !memcmp(&a, &m->own, sizeof(a))) ||
		    (m->cfg.lend_if[0] && !memcmp(&a, &m->lend_own, sizeof(a))))
			continue;  /* our own broadcast, looped back */
		request = k == MESH_REQUEST_LEN && buf[5] == 3;
		if (request && lending)
			lend_request(m, buf, (size_t)k, &a);
		else if (!request && borrowing)
			changed |= borrow_announce(m, buf, (size_t)k, &a);
	}
	return changed;
}

int mesh_lend_fd(const struct mesh *m)
{
	return m->cfg.lend_if[0] && strcmp(m->cfg.lend_if, m->cfg.borrow_if) ? m->tx_fd : -1;
}

bool mesh_receive(struct mesh *m)
{
	bool changed = false;
	bool same = m->cfg.lend_if[0] && !strcmp(m->cfg.lend_if, m->cfg.borrow_if);

	if (m->rx_fd >= 0)
		changed = receive_on(m, m->rx_fd, true, same && m->tx_fd >= 0);
	if (mesh_lend_fd(m) >= 0)
		receive_on(m, m->tx_fd, false, true);
	return changed;
}

bool mesh_tick(struct mesh *m, struct paths *ps, bool own_line_up, uint64_t now,
	       uint64_t *next_ms)
{
	bool changed = false;
	uint64_t next = now + 500;

	if (m->tx_fd >= 0 && (now >= m->next_announce_ms || own_line_up != m->lending)) {
		int r;

		if (own_line_up != m->lending)
			log_info("mesh %s: %s", m->cfg.lend_if, own_line_up ?
				 "lending our line" : "our line is down: lending withdrawn");
		m->lending = own_line_up;
		r = announce(m, own_line_up);
		if (r < 0) {
			if (r != -ENETDOWN && r != -ENETUNREACH)
				log_errno(r, "mesh announcement: %m");
			m->tx_failed = true;
		} else if (m->tx_failed || now >= m->next_route_ms) {
			/* The kernel drops our borrowers' route with the mesh
			 * link; put it back once announcements leave again
			 * (and now and then, whatever else removed it). */
			lend_route(m, true);
			borrow_repin(m);
			m->tx_failed = false;
			m->next_route_ms = now + 10000;
		}
		m->next_announce_ms = now + MESH_ANNOUNCE_MS;
	}
	if (m->tx_fd >= 0 && m->next_announce_ms < next)
		next = m->next_announce_ms;
	/* Borrowers that stopped asking lose their borrow address; a slot is
	 * free again once its last sequence is too old to be replayed. */
	for (unsigned b = 0; m->lend_installed && b < 256; b++) {
		struct mesh_borrower *br = &m->br[b];

		if (br->allowed && now - br->seen_ms >= MESH_BORROW_EXPIRE_MS) {
			char sa[ADDR_STRLEN];

			log_info("mesh %s: %s silent for %u ms: no longer lent to", m->cfg.lend_if,
				 addr_format_in6(&br->addr, 0, sa), MESH_BORROW_EXPIRE_MS);
			borrow_allow(m, b, false);
		}
		if (!br->allowed && br->addr.s6_addr[10] && br->last_seq + MESH_CLOCK_MS < realtime_ms())
			memset(br, 0, sizeof(*br));
	}
	if (m->rx_fd >= 0) {
		bool ask = m->keys.n && now >= m->next_request_ms;

		if (ask)
			m->next_request_ms = now + MESH_ANNOUNCE_MS;
		m->have_own = if_addr4(m->cfg.borrow_if, &m->own, &m->own_plen) == 0;
		for (unsigned i = 0; i < m->nnb; i++) {
			struct mesh_neighbour *n = &m->nb[i];
			bool want = m->have_own && n->lending &&
				(n->is_static || now - n->seen_ms < MESH_EXPIRE_MS);

			if (!n->is_static && n->lending && now - n->seen_ms >= MESH_EXPIRE_MS) {
				char a[ADDR_STRLEN];

				log_info("mesh %s: neighbour %s silent for %u ms: gone", m->cfg.borrow_if,
					 addr_format_in6(&n->addr, 0, a), MESH_EXPIRE_MS);
				n->lending = false;
			}
			if (want && (!n->path || n->path->mode == PATH_OFF)) {
				struct in6_addr b;

				mesh_borrow_addr(&n->addr, &m->own, &b);
				if (borrow_taken(m, n, &b))
					continue;
				/* Asked first: the lender forwards our first
				 * subflow's SYN only once it has taken this. */
				borrow_request(m, n);
				n->path = paths_neighbour_up(ps, m->cfg.borrow_if, &n->addr, &b, m->cfg.mode);
				if (n->path)
					borrow_addr_set(m, n, true);
				changed = true;
			} else if (!want && n->path && n->path->mode != PATH_OFF) {
				/* The slot, off now, may go to another neighbour:
				 * n lets go of it (paths_neighbour_up finds n's
				 * own again by address if it is still free). */
				paths_neighbour_down(ps, n->path);
				n->path = NULL;
				borrow_addr_set(m, n, false);
				changed = true;
			} else if (ask && want && n->path && n->path->mode != PATH_OFF) {
				int r = borrow_request(m, n);

				if (r < 0 && r != -ENETDOWN && r != -ENETUNREACH)
					log_errno(r, "mesh %s: borrow request: %m", m->cfg.borrow_if);
			}
		}
		if (m->keys.n && m->next_request_ms < next)
			next = m->next_request_ms;
		/* A departed neighbour's place is free once its path is down, its
		 * address gone, and its last sequence too old to be replayed
		 * (the clock check refuses it): a new lender may have it. */
		for (unsigned i = 0; i < m->nnb;) {
			struct mesh_neighbour *n = &m->nb[i];

			if (!n->is_static && !n->lending && !n->addr_added && !n->path &&
			    n->last_seq + MESH_CLOCK_MS < realtime_ms()) {
				m->nb[i] = m->nb[--m->nnb];
				continue;
			}
			i++;
		}
	}
	*next_ms = next;
	return changed;
}
