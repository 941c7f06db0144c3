/* The agent's end of the UDP carrier.
 *
 * One thread with an io_uring of its own (common/ring.h: multishot
 * receives into provided buffers, sends queued and submitted together with
 * the next wait) over: the TPROXY socket that receives every intercepted
 * LAN datagram with its original destination; one carrier socket per path,
 * bound to the path's address (its "from" rule routes it out of that line,
 * as the MPTCP subflows are) and connected to the first concentrator (or
 * to the box address its session's ACCEPT named: docs/udp-carrier.md); a
 * raw socket per family that hands answers to LAN devices from the address
 * and port they wrote to.
 *
 * Why raw sockets for the answers: a UDP socket bound to a remote address
 * and port (IP_TRANSPARENT) would do it too, but it collides with the
 * router's own services bound to the wildcard address (dnsmasq on port 53
 * makes every bind to 8.8.8.8:53 fail), costs a descriptor per remote, and
 * TPROXY then delivers that remote's later datagrams to it. With raw
 * sockets nothing is bound; we write the IP and UDP headers and, for
 * answers larger than the LAN's MTU, the fragments.
 *
 * A flow is a LAN source (address, port): its id travels in every
 * datagram, and the concentrator keeps one socket per flow, so a source
 * keeps one public address and port whatever line carries it. Each
 * datagram is steered by its class's mode over the live paths (the main
 * thread's list, read every 20 ms); when a flow's path changes without a
 * datagram to carry the news, a STEER datagram tells the concentrator
 * where its answers should now go. */
#include "agent.h"
#include "ctmark.h"
#include "udp.h"
#include "udpcrypt.h"
#include "hash.h"
#include "quota.h"
#include "ring.h"

#include <errno.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <semaphore.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define UDP_BUFSZ 65536
/* The ring: receives land in provided buffers of UDP_RB_SIZE (what
 * io_uring_recvmsg_out, a source address, the original-destination
 * control message and the largest datagram take), up to UDP_RB_COUNT;
 * sends are copied into one of UDP_SEND_SLOTS slots until they complete. */
#define UDP_RING_ENTRIES 512
#define UDP_RB_GID 1
#define UDP_RB_COUNT 64
#define UDP_CM_LEN CMSG_SPACE(sizeof(struct sockaddr_in6))
#define UDP_RB_SIZE (sizeof(struct io_uring_recvmsg_out) + sizeof(struct sockaddr_storage) + \
		     UDP_CM_LEN + UDP_BUFSZ)
#define UDP_SEND_SLOTS 256
enum { UOP_LAN = 1, UOP_CAR, UOP_SEND, UOP_CANCEL };
#define UDP_SENT_TAGS 1024       /* tags of the datagrams sent lately (RESET proofs) */
#define TICK_MS 20
#define PING_MS 1000              /* per path, while no UDP flow is busy */
#define PING_BUSY_MS 80           /* ... while one is (a datagram in the last 2 s) */
#define BUSY_MS 2000
#define HELLO_MS 1000
#define SESSION_DEAD_MS 10000     /* no answer at all for this long: a new HELLO */
#define BOX_GONE_MS 2000          /* ... a box's session, with every line out */
#define BOX_IGNORE_MS 300000      /* box addresses unused after boxes that never answered */
#define PATH_PONG_DEAD_MS 3500    /* a path whose pings go unanswered this long is not used */
#define PATH_PONG_DEAD_BUSY_MS 160  /* ... while UDP is busy: plus twice its round trip */

_Static_assert(PATHS_MAX <= 32, "path ids index stats arrays of 32");

struct ucar {
	int fd;                      /* -1: none */
	uint32_t gen;                /* its receive's user_data: changes at each close */
	bool armed;                  /* its multishot receive is on the ring */
	struct in6_addr addr;
	char name[40];               /* the path's (path_name()) */
	bool live, primary;
	bool neighbour;              /* a mesh neighbour's line: no HELLOs by it */
	bool metered;                /* an overflow line not active now */
	uint64_t probe_ok_ms;        /* the main thread's last probe answered on it */
	uint32_t rtt_us;             /* smoothed, from PONGs; 0 = none yet */
	uint64_t last_ping_ms, last_pong_ms;
	uint64_t challenge;          /* the last PONG's: our next PING echoes it */
	uint64_t echo_ms;            /* the last PING sent at once to echo one */
	uint64_t unanswered_ms;      /* the first PING since the last PONG, 0: none */
	bool dead;                   /* judged so by its PINGs: until a PONG comes */
};

struct uflow {
	struct in6_addr lan;
	uint16_t lport;
	uint16_t gen;
	bool used, replied, assured;   /* an answer came; then another datagram */
	bool counted;                /* in flows_by_mode */
	int8_t cls_mode;             /* its class's mode (from its first datagram's
				      * conntrack mark), -1: by destination port */
	uint8_t mode, p0, p1;        /* paths of the last datagram (0xff: none) */
	uint64_t last_ms;
	uint32_t next;               /* hash chain or free list, index + 1 */
};

struct agent_udp {
	struct agent *a;
	pthread_t thread;
	sem_t started;               /* the thread's ring is up, or failed */
	int start_result;
	struct io_uring ring;
	bool ring_live;              /* only the thread submits, and only then */
	struct ring_bufs rb;
	struct ring_sendq sq;
	struct msghdr lan_msg, car_msg;  /* multishot receives: name and control room */
	bool lan_armed;
	int lfd, raw4, raw6;
	int family;                  /* the concentrator's */
	struct sockaddr_storage conc;
	socklen_t conc_len;
	/* Where the paths' sockets are connected: the concentrator, or the
	 * box address of the session's ACCEPT (one of several boxes behind
	 * the concentrator's address). */
	struct sockaddr_storage peer;
	socklen_t peer_len;
	struct in6_addr box;         /* the session's box address, or :: */
	bool box_answered;           /* a sealed datagram came since that ACCEPT */
	unsigned box_strikes;        /* boxes in a row that never answered */
	uint64_t box_ignore_until;   /* box addresses ignored until then */
	/* The session. */
	uint32_t kid;
	uint8_t secret[COOKIE_SECRET_LEN];
	uint32_t sid;                /* 0: none */
	uint8_t nonce_c[UDPC_NONCE_LEN];
	uint8_t reset_token[UDPC_TOKEN_LEN];  /* the session's, from its ACCEPT */
	/* The tags of the datagrams sent lately, by packet number: a RESET
	 * proves itself over one of them. */
	struct { uint64_t pn; uint8_t tag[UDPC_TAG_LEN]; } sent[UDP_SENT_TAGS];
	uint64_t hello_ms;
	unsigned hello_n;
	struct udpc_aead tx, rx;
	struct udpc_window win;
	uint64_t pn_out;
	uint64_t last_rx_ms;
	uint64_t busy_ms;            /* a LAN datagram carried, either way */
	uint64_t busy_since;         /* when UDP last turned busy */
	/* Paths, by id (the index in paths.p[]). */
	struct ucar car[PATHS_MAX];
	unsigned srcgen;
	uint8_t order[PATHS_MAX];    /* live paths, primary first */
	unsigned norder;
	/* Flows. */
	struct uflow *f;
	uint32_t fcap, *fb, fnb, nflows, ffree;
	struct hash_key hk;
	struct quota hosts;          /* LAN sources per device address */
	/* Settings, copied at each tick. */
	int mode;
	struct udp_class cls[AGENT_UDP_MAX_CLASSES];
	unsigned ncls;
	/* Traffic classes with a UDP mode: read per new flow from its
	 * conntrack mark (ctmark.h), as the TCP workers do. */
	struct class_act tcls[CLASS_MAX];
	unsigned ntcls;
	bool tcls_udp;               /* one of them has udp= */
	uint32_t mark;
	struct mnl_socket *ct_nl;
	unsigned timeout_s, stream_timeout_s;
	unsigned lan_mtu;
	uint16_t port;               /* the agent's own (TPROXY) port */
	uint64_t next_expiry_ms;
	pthread_mutex_t lock;        /* st, and the flow table for status */
	struct agent_udp_stats st;
	struct log_ratelimit rl;
	uint8_t out[UDP_BUFSZ + 128];
};

static const char *const drop_names[AUD_MAX] = {
	"no_session", "no_path", "flow_limit", "host_limit", "own_port", "malformed", "bad_tag",
	"replay", "old", "unknown_flow", "send", "reset_token",
};

const char *agent_udp_drop_name(unsigned d)
{
	return d < AUD_MAX ? drop_names[d] : "unknown";
}

int agent_udp_class_parse(const char *s, struct udp_class *ret, const char **ret_why)
{
	const char *eq = strchr(s, '=');
	char *end;
	unsigned long lo, hi;
	enum udpc_mode m;

	if (!eq) {
		*ret_why = "is not PORT[-PORT]=MODE";
		return -EINVAL;
	}
	lo = strtoul(s, &end, 10);
	hi = lo;
	if (end != s && *end == '-')
		hi = strtoul(end + 1, &end, 10);
	if (end == s || end != eq || lo < 1 || hi > 65535 || lo > hi) {
		*ret_why = "has no port range of 1-65535 before '='";
		return -EINVAL;
	}
	if (udpc_mode_parse(eq + 1, &m) < 0) {
		*ret_why = "names no mode (failover, lowest-delay or redundant)";
		return -EINVAL;
	}
	ret->lo = (uint16_t)lo;
	ret->hi = (uint16_t)hi;
	ret->mode = (uint8_t)m;
	return 0;
}

bool agent_udp_quic_carried(const struct agent_config *cfg)
{
	if (!cfg->block_quic)
		return true;
	for (unsigned i = 0; i < cfg->nudp_class; i++)
		if (cfg->udp_class[i].lo <= 443 && cfg->udp_class[i].hi >= 443)
			return true;
	return false;
}

int agent_udp_mode_for(const struct udp_class *c, unsigned n, int deflt, uint16_t port)
{
	for (unsigned i = 0; i < n; i++)
		if (port >= c[i].lo && port <= c[i].hi)
			return c[i].mode;
	return deflt;
}

/* ---- flows ---- */

static uint32_t fbucket(const struct agent_udp *u, const struct in6_addr *a, uint16_t port)
{
	uint8_t k[18];

	memcpy(k, a, 16);
	k[16] = (uint8_t)(port >> 8);
	k[17] = (uint8_t)port;
	return (uint32_t)(hash_siphash24(&u->hk, k, sizeof(k)) & (u->fnb - 1));
}

static uint32_t flow_id(const struct agent_udp *u, const struct uflow *f)
{
	return (uint32_t)f->gen << 16 | (uint32_t)(f - u->f);
}

static struct uflow *flow_by_id(struct agent_udp *u, uint32_t id)
{
	uint32_t idx = id & 0xffff;

	if (idx >= u->fcap || !u->f[idx].used || u->f[idx].gen != id >> 16)
		return NULL;
	return &u->f[idx];
}

static void flow_unlink(struct agent_udp *u, struct uflow *f)
{
	uint32_t idx = (uint32_t)(f - u->f), *pp;

	quota_release(&u->hosts, QUOTA_FLOW, &f->lan);
	for (pp = &u->fb[fbucket(u, &f->lan, f->lport)]; *pp; pp = &u->f[*pp - 1].next)
		if (*pp == idx + 1) {
			*pp = f->next;
			break;
		}
	f->used = false;
	f->gen++;
	f->next = u->ffree;
	u->ffree = idx + 1;
	u->nflows--;
}

static struct uflow *flow_get(struct agent_udp *u, const struct in6_addr *lan, uint16_t lport,
			      uint64_t now)
{
	uint32_t b = fbucket(u, lan, lport);
	struct uflow *f;

	for (uint32_t i = u->fb[b]; i; i = u->f[i - 1].next) {
		f = &u->f[i - 1];
		if (f->lport == lport && !memcmp(&f->lan, lan, sizeof(*lan)))
			return f;
	}
	if (!u->ffree)
		return NULL;
	/* One device's share: its sources beyond it are dropped, so it
	 * cannot take the household's whole table. */
	if (quota_take(&u->hosts, QUOTA_FLOW, lan) < 0) {
		u->st.drops[AUD_HOST_LIMIT]++;
		return NULL;
	}
	f = &u->f[u->ffree - 1];
	u->ffree = f->next;
	f->used = true;
	f->replied = f->assured = f->counted = false;
	f->cls_mode = -2;            /* not asked yet (on_lan) */
	f->lan = *lan;
	f->lport = lport;
	f->p0 = f->p1 = 0xff;
	f->last_ms = now;
	f->next = u->fb[b];
	u->fb[b] = (uint32_t)(f - u->f) + 1;
	u->nflows++;
	u->st.flows_total++;
	return f;
}

/* ---- carrier ---- */

static void drop(struct agent_udp *u, enum agent_udp_drop why)
{
	u->st.drops[why]++;
}

/* A multishot receive on the LAN socket, or on path c's carrier socket. */
static void arm_lan(struct agent_udp *u)
{
	/* Without room, the tick tries again. */
	u->lan_armed = ring_recvmsg_multishot(&u->ring, u->lfd, &u->lan_msg, UDP_RB_GID,
					      ring_ud(UOP_LAN, 0, 0));
}

static void arm_car(struct agent_udp *u, struct ucar *c)
{
	c->armed = u->ring_live && c->fd >= 0 &&
		ring_recvmsg_multishot(&u->ring, c->fd, &u->car_msg, UDP_RB_GID,
				       ring_ud(UOP_CAR, (uint32_t)(c - u->car), c->gen));
}

static int car_open(struct agent_udp *u, struct ucar *c)
{
	struct sockaddr_storage src;
	socklen_t sl = addr_from_in6(&c->addr, 0, &src);
	int fd = socket(u->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (u->family == AF_INET6 && src.ss_family == AF_INET) {
		close(fd);
		return -EAFNOSUPPORT;
	}
	if (IN6_IS_ADDR_UNSPECIFIED(&c->addr) ||
	    (addr_is_v4mapped(&c->addr) && !memcmp(&c->addr.s6_addr[12], "\0\0\0\0", 4)))
		sl = 0;   /* the main table's path: the kernel picks the source */
	/* Carried datagrams may be up to 56 bytes over the path's MTU: sent
	 * as fragments, not refused. */
	setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &(int){ IP_PMTUDISC_DONT }, sizeof(int));
	if (u->family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &(int){ IPV6_PMTUDISC_DONT },
			   sizeof(int));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &(int){ 1 << 20 }, sizeof(int));
	if ((sl && bind(fd, (struct sockaddr *)&src, sl) < 0) ||
	    connect(fd, (struct sockaddr *)&u->peer, u->peer_len) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	c->fd = fd;
	arm_car(u, c);
	return 0;
}

/* Path c's socket closed: through the ring while it is up (its receive
 * cancelled, behind the sends queued for it: ring_cancel_close), else at
 * once. */
static void car_close(struct agent_udp *u, struct ucar *c)
{
	if (c->fd >= 0 && u->ring_live)
		ring_cancel_close(&u->ring, ring_ud(UOP_CAR, (uint32_t)(c - u->car), c->gen), c->fd,
				  ring_ud(UOP_CANCEL, 0, 0));
	else if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->armed = false;
	c->gen = (c->gen + 1) & 0xffffff;
	c->rtt_us = 0;
	c->last_pong_ms = 0;
	c->challenge = 0;
	c->unanswered_ms = 0;
	c->dead = false;
}

static bool busy(const struct agent_udp *u, uint64_t now)
{
	return now - u->busy_ms < BUSY_MS;
}

static void mark_busy(struct agent_udp *u, uint64_t now)
{
	if (!busy(u, now))
		u->busy_since = now;
	u->busy_ms = now;
}

/* Live by the main thread's probes and links, and answering our pings: a
 * path is out once a PING has gone unanswered for 3.5 s, or while UDP is
 * busy (pings every 80 ms) for 160 ms plus twice the path's round trip (so
 * a queue on a loaded line is not taken for a cut). A cut the links do not
 * show (the far side's, or a carrier loss the kernel reports up to a
 * second late) is left within about 300 ms. Judged from unanswered PINGs,
 * not from the last PONG: when UDP turns busy after a quiet while, the
 * last PONG is old but nothing is wrong. Without a session there are no
 * PINGs, and the HELLO still needs a path. */
static bool car_usable(struct agent_udp *u, struct ucar *c, uint64_t now)
{
	bool b = busy(u, now);
	uint64_t dead = b ? PATH_PONG_DEAD_BUSY_MS + 2 * (uint64_t)c->rtt_us / 1000
			  : PATH_PONG_DEAD_MS;
	uint64_t since = c->unanswered_ms;

	if (!c->live || c->fd < 0)
		return false;
	if (!u->sid || !since)
		return true;
	if (c->dead)
		return false;   /* until a PONG: no flapping back as UDP turns quiet */
	/* A PING left unanswered in a quiet while is not judged by the busy
	 * threshold from before UDP turned busy. */
	if (b && since < u->busy_since)
		since = u->busy_since;
	if (now - since < dead)
		return true;
	c->dead = true;
	return false;
}

static void car_send(struct agent_udp *u, uint8_t id, const void *buf, size_t len)
{
	struct ucar *c = &u->car[id];

	if (c->fd < 0 || !ring_sendq_send(&u->sq, u->ring_live ? &u->ring : NULL, c->fd, NULL, 0,
					   NULL, 0, buf, len)) {
		drop(u, AUD_SEND);
		return;
	}
	u->st.path_dgrams[id]++;
	u->st.path_bytes[id] += len;
}

/* Every path's socket connected to addr (the concentrator's, or a box's):
 * a connected UDP socket takes datagrams from its peer alone. A socket
 * that cannot be is closed (refresh_paths opens it again). */
static void car_retarget(struct agent_udp *u, const struct sockaddr_storage *addr, socklen_t len)
{
	if (len == u->peer_len && !memcmp(addr, &u->peer, len))
		return;
	memcpy(&u->peer, addr, len);
	u->peer_len = len;
	for (unsigned i = 0; i < PATHS_MAX; i++)
		if (u->car[i].fd >= 0 &&
		    connect(u->car[i].fd, (const struct sockaddr *)addr, len) < 0)
			car_close(u, &u->car[i]);
}

static void session_reset(struct agent_udp *u)
{
	udpc_aead_free(&u->tx);
	udpc_aead_free(&u->rx);
	u->sid = 0;
	u->st.session_up = false;
	memset(&u->win, 0, sizeof(u->win));
	memset(u->sent, 0, sizeof(u->sent));
	u->pn_out = 0;
	u->hello_ms = 0;
	u->hello_n = 0;   /* the first HELLO by the best path */
	for (unsigned i = 0; i < PATHS_MAX; i++) {
		u->car[i].unanswered_ms = 0;
		u->car[i].dead = false;
		u->car[i].rtt_us = 0;   /* the next session's box measures its own */
	}
	/* The next HELLO goes to the concentrator's address (a box that
	 * went away is replaced there). */
	car_retarget(u, &u->conc, u->conc_len);
	memset(&u->box, 0, sizeof(u->box));
}

static void send_hello(struct agent_udp *u, uint64_t now)
{
	uint8_t b[UDPC_HELLO_LEN];
	struct udpc_hdr h = { .type = UDPC_HELLO };
	struct udpc_hello hv = { .kid = u->kid, .time = (uint32_t)time(NULL) };
	uint8_t own[PATHS_MAX], id;
	unsigned nown = 0;

	/* Only by our own lines: through a neighbour the HELLO would come
	 * from the lender's address, and the session would be the lender's
	 * (its limits, keyless; refused with a key scoped to our address).
	 * A session opened on our line goes on over the neighbours'. */
	for (unsigned i = 0; i < u->norder; i++)
		if (!u->car[u->order[i]].neighbour)
			own[nown++] = u->order[i];
	if (!nown)
		return;
	/* A fresh nonce each time: the concentrator takes each once. The
	 * paths in turn, in case the first one's far side is what is dead. */
	if (udpcrypt_random(u->nonce_c, sizeof(u->nonce_c)) < 0)
		return;
	memcpy(hv.nonce, u->nonce_c, sizeof(hv.nonce));
	id = own[u->hello_n++ % nown];
	h.flags = id;   /* the path it goes by: answers may use it at once */
	udpc_put_hdr(b, &h);
	udpc_put_hello(b, &hv);
	udpcrypt_hello_mac(u->secret, b, b + UDPC_HELLO_LEN - UDPC_MAC_LEN);
	car_send(u, id, b, sizeof(b));
	u->hello_ms = now;
}

/* The tag of the datagram numbered pn, for RESETs that answer it. */
static void sent_tag(struct agent_udp *u, uint64_t pn, const uint8_t *tag)
{
	unsigned k = (unsigned)(pn % UDP_SENT_TAGS);

	u->sent[k].pn = pn;
	memcpy(u->sent[k].tag, tag, UDPC_TAG_LEN);
}

/* A box address from an authentic ACCEPT is used only with a gateway key:
 * keyless, the ACCEPT's MAC rests on the HELLO's nonce, which an observer
 * of a line sees, and a forged box address would take every line's
 * datagrams where the forger likes. And only a unicast address of our
 * family that is not ours, loopback or link-local; not while boxes that
 * never answered have us on the shared address. */
static bool box_usable(struct agent_udp *u, const struct in6_addr *a, uint64_t now)
{
	const uint8_t *v4 = &a->s6_addr[12];

	if (IN6_IS_ADDR_UNSPECIFIED(a) || !u->kid || now < u->box_ignore_until ||
	    addr_is_v4mapped(a) != (u->family == AF_INET))
		return false;
	if (addr_is_v4mapped(a))
		return v4[0] != 0 && v4[0] != 127 && v4[0] < 224 && !(v4[0] == 169 && v4[1] == 254);
	return !IN6_IS_ADDR_LOOPBACK(a) && !IN6_IS_ADDR_MULTICAST(a) && !IN6_IS_ADDR_LINKLOCAL(a) &&
	       !IN6_IS_ADDR_V4COMPAT(a);
}

static void on_accept(struct agent_udp *u, const uint8_t *b, uint64_t now)
{
	struct udpc_hdr h;
	uint8_t mac[UDPC_ACCEPT_MAC_LEN], up[UDPC_KEY_LEN], down[UDPC_KEY_LEN];
	struct in6_addr box;
	int r;

	if (u->sid || !u->hello_ms || udpc_parse_hdr(b, UDPC_ACCEPT_LEN, UDPC_TO_AGENT, &h, NULL) < 0)
		return;
	udpcrypt_accept_mac(u->secret, b, u->nonce_c, mac);
	if (!udpcrypt_equal(mac, b + UDPC_ACCEPT_LEN - UDPC_ACCEPT_MAC_LEN, UDPC_ACCEPT_MAC_LEN))
		return;   /* not for our last HELLO (or forged) */
	udpcrypt_session_keys(u->secret, u->nonce_c, b + UDPC_HDR_LEN, h.sid, up, down);
	/* The reset token, sealed under the down key: only we learn it. */
	memcpy(u->reset_token, b + UDPC_ACCEPT_TOKEN, UDPC_TOKEN_LEN);
	udpcrypt_token_seal(down, u->reset_token);
	r = udpc_aead_init(&u->tx, up, 1);
	if (r == 0)
		r = udpc_aead_init(&u->rx, down, 0);
	explicit_bzero(up, sizeof(up));
	explicit_bzero(down, sizeof(down));
	if (r < 0) {
		udpc_aead_free(&u->tx);
		udpc_aead_free(&u->rx);
		return;
	}
	/* A box address (the ACCEPT's MAC covers it): the session's
	 * datagrams go there, at the concentrator's port, on every path. One
	 * of another family than ours cannot be used: the shared address is
	 * kept, as without one. */
	memcpy(&box, b + UDPC_ACCEPT_BOX, sizeof(box));
	if (box_usable(u, &box, now)) {
		struct sockaddr_storage to;
		struct in6_addr ca;
		uint16_t conc_port = 0;
		socklen_t tl;

		addr_to_in6((const struct sockaddr *)&u->conc, &ca, &conc_port);
		tl = addr_from_in6(&box, conc_port, &to);

		car_retarget(u, &to, tl);
		u->box = box;
		u->box_answered = false;
	}
	u->sid = h.sid;
	u->pn_out = 0;
	memset(&u->win, 0, sizeof(u->win));
	u->last_rx_ms = now;
	u->st.sessions++;
	u->st.session_up = true;
	/* Every flow's path is news to the new session, and every path: PING
	 * them now (the concentrator sends answers only by paths it has
	 * validated). */
	for (uint32_t i = 0; i < u->fcap; i++)
		u->f[i].p0 = u->f[i].p1 = 0xff;
	for (unsigned i = 0; i < PATHS_MAX; i++) {
		u->car[i].last_ping_ms = 0;
		u->car[i].challenge = 0;
	}
	log_info("udp: session %08x with the concentrator", h.sid);
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* PING on path id: its send time (for the round trip) and the challenge
 * of the path's last PONG, which validates the address it comes from. */
static void send_ping(struct agent_udp *u, uint8_t id, uint64_t now)
{
	struct udpc_hdr h = { .type = UDPC_PING, .sid = u->sid };
	uint64_t us = now_us(), ch = u->car[id].challenge;
	uint8_t *p = u->out + UDPC_HDR_LEN;
	int n;

	if (!u->sid)
		return;
	h.pn = ++u->pn_out;
	udpc_put_hdr(u->out, &h);
	memset(p, 0, UDPC_PING_INNER);
	p[0] = id;
	for (int i = 0; i < 8; i++) {
		p[4 + i] = (uint8_t)(us >> (56 - 8 * i));
		p[12 + i] = (uint8_t)(ch >> (56 - 8 * i));
	}
	n = udpc_seal(&u->tx, h.pn, u->out, UDPC_HDR_LEN + UDPC_PING_INNER);
	if (n > 0) {
		sent_tag(u, h.pn, u->out + n - UDPC_TAG_LEN);
		car_send(u, id, u->out, (size_t)n);
	}
	u->car[id].last_ping_ms = now;
	if (!u->car[id].unanswered_ms)
		u->car[id].unanswered_ms = now;
}

static void on_pong(struct agent_udp *u, const uint8_t *p, uint64_t now)
{
	uint8_t id = p[0];
	uint64_t sent = 0, ch = 0, us = now_us();
	uint32_t rtt;

	if (id >= PATHS_MAX || u->car[id].fd < 0)
		return;
	for (int i = 0; i < 8; i++) {
		sent = sent << 8 | p[4 + i];
		ch = ch << 8 | p[12 + i];
	}
	if (sent <= us && us - sent < 60000000) {
		rtt = (uint32_t)(us - sent);
		u->car[id].rtt_us = u->car[id].rtt_us ? (u->car[id].rtt_us * 7 + rtt) / 8 : rtt;
	}
	u->car[id].last_pong_ms = now;
	u->car[id].unanswered_ms = 0;
	u->car[id].dead = false;
	if (!ch)
		u->car[id].challenge = 0;
	/* A challenge: the concentrator has not validated this path's
	 * address (new session, or the path's NAT mapping changed). Echo a
	 * new one at once, at most 10 a second (a NAT that changes ports on
	 * every packet would otherwise keep the two ends busy). */
	if (ch && ch != u->car[id].challenge) {
		u->car[id].challenge = ch;
		if (now - u->car[id].echo_ms >= 100) {
			u->car[id].echo_ms = now;
			send_ping(u, id, now);
		}
	}
}

/* ---- to the LAN ---- */

static uint16_t csum_add(uint32_t sum, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (n & 1)
		sum += (uint32_t)(b[n - 1] << 8);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* The UDP checksum over the pseudo-header, header and payload. */
static uint16_t udp_csum(const struct in6_addr *src, const struct in6_addr *dst, bool v4,
			 const struct udphdr *uh, const uint8_t *payload, size_t len)
{
	uint32_t sum = 0;
	uint8_t ph[40];
	size_t pl;
	uint32_t ulen = (uint32_t)(sizeof(*uh) + len);
	uint16_t s;

	if (v4) {
		memcpy(ph, &src->s6_addr[12], 4);
		memcpy(ph + 4, &dst->s6_addr[12], 4);
		ph[8] = 0;
		ph[9] = IPPROTO_UDP;
		ph[10] = (uint8_t)(ulen >> 8);
		ph[11] = (uint8_t)ulen;
		pl = 12;
	} else {
		memcpy(ph, src, 16);
		memcpy(ph + 16, dst, 16);
		ph[32] = (uint8_t)(ulen >> 24);
		ph[33] = (uint8_t)(ulen >> 16);
		ph[34] = (uint8_t)(ulen >> 8);
		ph[35] = (uint8_t)ulen;
		ph[36] = ph[37] = ph[38] = 0;
		ph[39] = IPPROTO_UDP;
		pl = 40;
	}
	sum = csum_add(sum, ph, pl);
	sum = csum_add(sum, uh, sizeof(*uh));
	sum = csum_add(sum, payload, len);
	s = (uint16_t)~sum;
	return htons(s ? s : 0xffff);
}

/* payload from remote (raddr, rport) to the LAN device (laddr, lport),
 * as one packet or, over the LAN's MTU, as fragments. */
static int lan_send(struct agent_udp *u, const struct in6_addr *raddr, uint16_t rport,
		    const struct in6_addr *laddr, uint16_t lport, const uint8_t *payload, size_t len)
{
	bool v4 = addr_is_v4mapped(laddr);
	uint8_t pkt[1600 + 64];
	struct udphdr uh = { .source = htons(rport), .dest = htons(lport),
			     .len = htons((uint16_t)(sizeof(uh) + len)) };
	struct sockaddr_storage to;
	socklen_t tl = addr_from_in6(laddr, 0, &to);
	size_t total = sizeof(uh) + len, off = 0, mtu = u->lan_mtu;
	uint32_t ident;
	int fd = v4 ? u->raw4 : u->raw6;

	if (fd < 0 || v4 != addr_is_v4mapped(raddr) || total > 65535 - 48)
		return -EINVAL;
	uh.check = udp_csum(raddr, laddr, v4, &uh, payload, len);
	if (udpcrypt_random(&ident, sizeof(ident)) < 0)
		ident = (uint32_t)log_now_ms();
	if (mtu < 1280)
		mtu = 1280;
	if (mtu > 1600)
		mtu = 1600;
	while (off < total) {
		size_t hl = v4 ? 20 : 40 + 8, room = mtu - hl, chunk = total - off;
		bool more;
		uint8_t *d = pkt + hl;
		size_t taken = 0;

		if (!v4 && total + 40 <= mtu)
			hl = 40;  /* no fragment header when it fits */
		room = mtu - hl;
		if (chunk > room)
			chunk = room & ~(size_t)7;
		more = off + chunk < total;
		/* The UDP header is the first 8 bytes of the whole. */
		d = pkt + hl;
		if (off < sizeof(uh)) {
			size_t h = sizeof(uh) - off < chunk ? sizeof(uh) - off : chunk;

			memcpy(d, (uint8_t *)&uh + off, h);
			taken = h;
		}
		memcpy(d + taken, payload + (off + taken - sizeof(uh)), chunk - taken);
		if (v4) {
			struct iphdr *ip = (struct iphdr *)pkt;

			memset(ip, 0, sizeof(*ip));
			ip->version = 4;
			ip->ihl = 5;
			ip->ttl = 64;
			ip->protocol = IPPROTO_UDP;
			ip->tot_len = htons((uint16_t)(hl + chunk));
			ip->id = htons((uint16_t)ident ? (uint16_t)ident : 1);
			ip->frag_off = htons((uint16_t)((more ? IP_MF : 0) | (off / 8)));
			memcpy(&ip->saddr, &raddr->s6_addr[12], 4);
			memcpy(&ip->daddr, &laddr->s6_addr[12], 4);
		} else {
			struct ip6_hdr *ip = (struct ip6_hdr *)pkt;

			memset(ip, 0, 40);
			ip->ip6_flow = htonl(6u << 28);
			ip->ip6_hlim = 64;
			ip->ip6_src = *raddr;
			ip->ip6_dst = *laddr;
			ip->ip6_plen = htons((uint16_t)(hl - 40 + chunk));
			if (hl == 40) {
				ip->ip6_nxt = IPPROTO_UDP;
			} else {
				struct ip6_frag *fh = (struct ip6_frag *)(pkt + 40);

				ip->ip6_nxt = IPPROTO_FRAGMENT;
				fh->ip6f_nxt = IPPROTO_UDP;
				fh->ip6f_reserved = 0;
				fh->ip6f_offlg = htons((uint16_t)(off | (more ? 1 : 0)));
				fh->ip6f_ident = htonl(ident);
			}
		}
		if (!ring_sendq_send(&u->sq, u->ring_live ? &u->ring : NULL, fd, &to, tl, NULL, 0,
				     pkt, hl + chunk))
			return -errno;
		off += chunk;
	}
	return 0;
}

/* ---- from the concentrator ---- */

static void on_car(struct agent_udp *u, uint8_t *b, size_t len, uint64_t now)
{
	struct udpc_hdr h;
	struct udpc_data d;
	struct uflow *f;
	int n, r;

	if (udpc_parse_hdr(b, len, UDPC_TO_AGENT, &h, NULL) < 0) {
		drop(u, AUD_MALFORMED);
		return;
	}
	if (h.type == UDPC_ACCEPT) {
		on_accept(u, b, now);
		return;
	}
	if (!u->sid || h.sid != u->sid)
		return;
	if (h.type == UDPC_RESET) {
		/* Only for one of the datagrams we sent lately (an off-path
		 * forger knows neither the session nor the numbers), with a
		 * proof under the session's reset token over that datagram's
		 * tag (an observer of the path sees the session, the numbers
		 * and the tags, never the token). */
		const uint8_t *t = b + UDPC_HDR_LEN;
		const unsigned k = (unsigned)(h.pn % UDP_SENT_TAGS);
		uint8_t proof[UDPC_TOKEN_LEN];

		if (u->sent[k].pn != h.pn || !h.pn ||
		    udpcrypt_reset_proof(u->reset_token, h.sid, h.pn, u->sent[k].tag, proof) < 0 ||
		    (!udpcrypt_equal(t, proof, UDPC_TOKEN_LEN) &&
		     !udpcrypt_equal(t + UDPC_TOKEN_LEN, proof, UDPC_TOKEN_LEN))) {
			drop(u, AUD_RESET_TOKEN);
			return;
		}
		{
			log_info("udp: the concentrator does not know session %08x (restarted?): "
				 "opening a new one", u->sid);
			u->st.resets_taken++;
			session_reset(u);
		}
		return;
	}
	r = udpc_window_check(&u->win, h.pn);
	if (r < 0) {
		drop(u, r == -EALREADY ? AUD_REPLAY : AUD_OLD);
		return;
	}
	n = udpc_open(&u->rx, h.pn, b, len);
	if (n < 0) {
		drop(u, AUD_BAD_TAG);
		return;
	}
	udpc_window_mark(&u->win, h.pn);
	u->last_rx_ms = now;
	if (!u->box_answered) {
		u->box_answered = true;
		u->box_strikes = 0;
	}
	if (h.type == UDPC_PONG) {
		on_pong(u, b + UDPC_HDR_LEN, now);
		return;
	}
	if (udpc_parse_data(b + UDPC_HDR_LEN, (size_t)n, &d, NULL) < 0) {
		drop(u, AUD_MALFORMED);
		return;
	}
	f = flow_by_id(u, d.flow);
	if (!f) {
		drop(u, AUD_UNKNOWN_FLOW);
		return;
	}
	f->replied = true;
	f->last_ms = now;
	mark_busy(u, now);
	if (lan_send(u, &d.addr, d.port, &f->lan, f->lport, d.payload, d.len) < 0) {
		drop(u, AUD_SEND);
		return;
	}
	u->st.dgrams_down++;
	u->st.bytes_down += d.len;
}

/* A datagram from the concentrator, in provided buffer b (res bytes, as
 * a multishot recvmsg writes it). */
static void car_dgram(struct agent_udp *u, uint8_t *b, int res, uint64_t now)
{
	struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(b, res, &u->car_msg);

	if (!o || (o->flags & MSG_TRUNC))
		return;
	on_car(u, io_uring_recvmsg_payload(o, &u->car_msg),
	       io_uring_recvmsg_payload_length(o, res, &u->car_msg), now);
}

/* ---- from the LAN ---- */

/* The paths for a datagram of mode on flow f: how many (0..2) in ret. */
static unsigned choose(struct agent_udp *u, struct uflow *f, int mode, uint8_t ret[2])
{
	if (!u->norder)
		return 0;
	switch (mode) {
	case UDPC_REDUNDANT:
		ret[0] = u->order[0];
		if (u->norder < 2)
			return 1;
		ret[1] = u->order[1];
		return 2;
	case UDPC_LOWEST_DELAY: {
		uint8_t best = u->order[0];

		for (unsigned i = 1; i < u->norder; i++) {
			const struct ucar *c = &u->car[u->order[i]];

			if (c->rtt_us && (!u->car[best].rtt_us || c->rtt_us < u->car[best].rtt_us))
				best = u->order[i];
		}
		/* Hysteresis: stay on the flow's path while it is live and
		 * within 20% + 2 ms of the best. */
		for (unsigned i = 0; i < u->norder; i++)
			if (u->order[i] == f->p0 && u->car[f->p0].rtt_us &&
			    u->car[f->p0].rtt_us <= u->car[best].rtt_us * 6 / 5 + 2000)
				best = f->p0;
		ret[0] = best;
		return 1;
	}
	default:
		ret[0] = u->order[0];
		return 1;
	}
}

/* Seal and send one DATA for f (payload may be empty with STEER). */
static void send_data(struct agent_udp *u, struct uflow *f, int mode, uint8_t flags,
		      const struct in6_addr *raddr, uint16_t rport, const uint8_t *payload,
		      size_t len, const uint8_t *paths, unsigned np)
{
	struct udpc_hdr h = { .type = UDPC_DATA, .flags = flags, .sid = u->sid };
	struct udpc_data d = { .flow = flow_id(u, f), .mode = (uint8_t)mode, .port = rport };
	int n;

	if (raddr)
		d.addr = *raddr;
	/* One sealing for all copies: the same packet number, so the far end
	 * takes whichever copy comes first and drops the other. The path
	 * byte names where answers go: the first path, and in redundant
	 * mode the second one too (plus 1, in the high nibble). */
	d.path = (uint8_t)(paths[0] | (np > 1 ? (paths[1] + 1) << 4 : 0));
	h.pn = ++u->pn_out;
	udpc_put_hdr(u->out, &h);
	udpc_put_data_inner(u->out + UDPC_HDR_LEN, &d);
	if (len)
		memcpy(u->out + UDPC_HDR_LEN + UDPC_DATA_INNER, payload, len);
	n = udpc_seal(&u->tx, h.pn, u->out, UDPC_HDR_LEN + UDPC_DATA_INNER + len);
	if (n < 0)
		return;
	sent_tag(u, h.pn, u->out + n - UDPC_TAG_LEN);
	for (unsigned i = 0; i < np; i++)
		car_send(u, paths[i], u->out, (size_t)n);
	f->p1 = np > 1 ? paths[1] : 0xff;
	f->p0 = paths[0];
	f->mode = (uint8_t)mode;
}

static void on_lan(struct agent_udp *u, const struct in6_addr *src, uint16_t sport,
		   const struct in6_addr *dst, uint16_t dport, const uint8_t *p, size_t len,
		   uint64_t now)
{
	int mode;
	struct uflow *f;
	uint8_t paths[2];
	unsigned np;

	/* Sent to the agent's own port: not intercepted but addressed to the
	 * router (TPROXY never hands us its own port's traffic otherwise).
	 * Carried, it could come back to this port: a loop. */
	if (dport == u->port) {
		drop(u, AUD_OWN_PORT);
		return;
	}
	if (!u->sid) {
		drop(u, AUD_NO_SESSION);
		return;
	}
	f = flow_get(u, src, sport, now);
	if (!f) {
		if (u->nflows >= u->fcap)
			drop(u, AUD_FLOW_LIMIT);
		return;
	}
	if (f->cls_mode == -2) {
		/* A new LAN source: its class's UDP mode, if it has one. */
		uint32_t m;

		f->cls_mode = -1;
		if (u->tcls_udp &&
		    ctmark_get(&u->ct_nl, src, sport, dst, dport, IPPROTO_UDP, &m) == 0 &&
		    m >= u->mark + CLASS_MARK_AGENT && m < u->mark + CLASS_MARK_AGENT + u->ntcls)
			f->cls_mode = u->tcls[m - u->mark - CLASS_MARK_AGENT].udp_mode;
	}
	mode = f->cls_mode >= 0 ? f->cls_mode : agent_udp_mode_for(u->cls, u->ncls, u->mode, dport);
	np = choose(u, f, mode, paths);
	if (!np) {
		drop(u, AUD_NO_PATH);
		return;
	}
	if (!f->counted && mode < UDPC_MODE_MAX) {
		f->counted = true;
		u->st.flows_by_mode[mode]++;
	}
	f->last_ms = now;
	if (f->replied)
		f->assured = true;
	mark_busy(u, now);
	send_data(u, f, mode, 0, dst, dport, p, len, paths, np);
	u->st.dgrams_up++;
	u->st.bytes_up += len;
}

/* An intercepted LAN datagram, in provided buffer b (res bytes, as a
 * multishot recvmsg writes it): its source and its original destination
 * (TPROXY's control message), then on_lan. */
static void lan_dgram(struct agent_udp *u, uint8_t *b, int res, uint64_t now)
{
	struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(b, res, &u->lan_msg);
	struct sockaddr_storage src = { 0 };
	struct in6_addr sa, da = IN6ADDR_ANY_INIT;
	uint16_t sp, dp = 0;
	struct cmsghdr *c;
	unsigned n;

	if (!o || (o->flags & MSG_TRUNC))
		return;
	n = io_uring_recvmsg_payload_length(o, res, &u->lan_msg);
	if (n > UDPC_MAX_PAYLOAD)
		return;
	for (c = io_uring_recvmsg_cmsg_firsthdr(o, &u->lan_msg); c;
	     c = io_uring_recvmsg_cmsg_nexthdr(o, &u->lan_msg, c))
		if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_ORIGDSTADDR) ||
		    (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR)) {
			struct sockaddr_storage od;

			memset(&od, 0, sizeof(od));
			memcpy(&od, CMSG_DATA(c), c->cmsg_len - CMSG_LEN(0) < sizeof(od)
						  ? c->cmsg_len - CMSG_LEN(0) : sizeof(od));
			addr_to_in6((struct sockaddr *)&od, &da, &dp);
		}
	memcpy(&src, io_uring_recvmsg_name(o), o->namelen < sizeof(src) ? o->namelen : sizeof(src));
	if (!dp || addr_to_in6((struct sockaddr *)&src, &sa, &sp) < 0)
		return;
	on_lan(u, &sa, sp, &da, dp, io_uring_recvmsg_payload(o, &u->lan_msg), n, now);
}

/* ---- the paths, the session, expiry ---- */

static void refresh_paths(struct agent_udp *u, uint64_t now)
{
	struct path_src src[PATHS_MAX];
	unsigned n = 0;
	bool seen[PATHS_MAX] = { false };
	uint8_t old[PATHS_MAX];
	unsigned nold = u->norder;

	memcpy(old, u->order, sizeof(old));
	if (!atomic_load(&u->a->paths_ready))
		return;
	if (u->a->paths.n) {
		n = paths_sources_ex(&u->a->paths, u->family, src, PATHS_MAX);
	} else {
		/* No paths configured: one, by the main routing table. */
		memset(&src[0], 0, sizeof(src[0]));
		if (u->family == AF_INET)
			convert_addr_from_v4(&src[0].addr, 0);
		strcpy(src[0].ifname, "default");
		strcpy(src[0].name, "default");
		src[0].primary = true;
		n = 1;
	}
	for (unsigned i = 0; i < n; i++) {
		struct ucar *c;

		/* A neighbour's line is a path too (its lender forwards the
		 * carrier to the concentrators' port, as MPTCP's subflows);
		 * ids above 14 do not fit a DATA's paths byte. */
		if (src[i].id >= UDPC_MAX_PATH_ID + 1)
			continue;
		c = &u->car[src[i].id];
		seen[src[i].id] = true;
		if (c->fd >= 0 && memcmp(&c->addr, &src[i].addr, sizeof(c->addr)))
			car_close(u, c);   /* the path's address changed */
		c->addr = src[i].addr;
		memcpy(c->name, src[i].name, sizeof(c->name));
		c->primary = src[i].primary;
		c->neighbour = src[i].neighbour;
		c->metered = src[i].metered;
		c->probe_ok_ms = src[i].probe_ok_ms;
		if (c->fd < 0) {
			int r = car_open(u, c);

			if (r < 0) {
				if (log_ratelimit_ok(&u->rl, now))
					log_errno(r, "udp: no carrier socket on %s: %m", c->name);
				continue;
			}
			c->last_pong_ms = 0;
			c->last_ping_ms = 0;
		} else if (!c->live) {
			/* Back up: PING it now, and use it meanwhile. */
			c->last_ping_ms = 0;
			c->unanswered_ms = 0;
			c->dead = false;
		}
		c->live = true;
	}
	/* A path gone down keeps its socket (and so its source port): when it
	 * comes back, the concentrator still knows its address and need not
	 * validate it again. */
	for (unsigned i = 0; i < PATHS_MAX; i++)
		if (!seen[i])
			u->car[i].live = false;
	/* Live paths, primary first, in the main thread's order. An overflow
	 * (metered) line not active now only when no primary one is left:
	 * redundant and lowest-delay flows would use it all day. */
	u->norder = 0;
	for (int pass = 0; pass < 2; pass++) {
		unsigned nprimary = u->norder;

		for (unsigned i = 0; i < n; i++) {
			uint8_t id = src[i].id;

			if (id <= UDPC_MAX_PATH_ID && seen[id] && u->car[id].primary == (pass == 0) &&
			    !(pass == 1 && nprimary && u->car[id].metered) &&
			    car_usable(u, &u->car[id], now))
				u->order[u->norder++] = id;
		}
	}
	if ((nold != u->norder || memcmp(old, u->order, nold)) && u->sid) {
		/* Flows whose path is gone or no longer first: tell the
		 * concentrator now, not at their next datagram. */
		unsigned moved = 0;

		for (uint32_t i = 0; i < u->fcap; i++) {
			struct uflow *f = &u->f[i];
			uint8_t paths[2];
			unsigned np;

			if (!f->used || f->p0 == 0xff)
				continue;
			np = choose(u, f, f->mode, paths);
			if (!np || (paths[0] == f->p0 && (np < 2 || paths[1] == f->p1)))
				continue;
			send_data(u, f, f->mode, UDPC_F_STEER, NULL, 0, NULL, 0, paths, np);
			u->st.steers++;
			moved++;
		}
		if (moved) {
			u->st.failovers++;
			log_info("udp: %u flow%s moved to %s", moved, moved == 1 ? "" : "s",
				 u->norder ? u->car[u->order[0]].name : "no path");
		}
	}
}

/* The concentrator's (shared) address answered the main thread's probes
 * on one of our lines after the box last answered us: the line works, the
 * box does not (an outage of every line stops the probes too). */
static bool box_silent_alone(const struct agent_udp *u)
{
	for (unsigned i = 0; i < PATHS_MAX; i++)
		if (u->car[i].live && u->car[i].fd >= 0 && u->car[i].probe_ok_ms > u->last_rx_ms)
			return true;
	return false;
}

static void tick(struct agent_udp *u, uint64_t now)
{
	struct agent *a = u->a;
	char bx[ADDR_STRLEN];
	struct sockaddr_storage conc;
	socklen_t conc_len;
	uint32_t kid;
	uint8_t secret[COOKIE_SECRET_LEN] = { 0 };

	pthread_mutex_lock(&a->cfg_lock);
	u->mode = a->cfg.udp_mode;
	u->ncls = a->cfg.nudp_class;
	memcpy(u->cls, a->cfg.udp_class, sizeof(u->cls));
	u->ntcls = a->cfg.ncls;
	memcpy(u->tcls, a->cfg.cls, sizeof(u->tcls));
	u->mark = a->cfg.mark;
	u->tcls_udp = false;
	for (unsigned k = 0; k < u->ntcls; k++)
		u->tcls_udp |= u->tcls[k].action != CLASS_BYPASS && u->tcls[k].udp_mode >= 0;
	u->timeout_s = a->cfg.udp_timeout_s;
	u->stream_timeout_s = a->cfg.udp_stream_timeout_s;
	quota_set(&u->hosts, QUOTA_FLOW, 0, a->cfg.udp_per_host);
	conc = a->cfg.conc[0];
	conc_len = a->cfg.conc_len[0];
	kid = a->cfg.keyed ? a->cfg.key.id : 0;
	if (a->cfg.keyed)
		memcpy(secret, a->cfg.key.secret, sizeof(secret));
	pthread_mutex_unlock(&a->cfg_lock);

	pthread_mutex_lock(&u->lock);
	/* A reload gave another concentrator or key: a new session, on new
	 * sockets (connected to the new address). */
	if (conc_len != u->conc_len || memcmp(&conc, &u->conc, conc_len) || kid != u->kid ||
	    memcmp(secret, u->secret, sizeof(secret))) {
		log_info("udp: the concentrator or the key changed: a new session");
		session_reset(u);
		for (unsigned i = 0; i < PATHS_MAX; i++)
			car_close(u, &u->car[i]);
		u->conc = u->peer = conc;
		u->conc_len = u->peer_len = conc_len;
		u->family = conc.ss_family;
		u->kid = kid;
		memcpy(u->secret, secret, sizeof(secret));
	}
	explicit_bzero(secret, sizeof(secret));
	refresh_paths(u, now);
	/* A box (one of several behind the concentrator's address) that
	 * answers on no line while the shared address answers the probes on
	 * one has gone: the shared address routes to another by now. Not
	 * sooner than BOX_GONE_MS of silence; an outage of every line is not
	 * taken for it (the probes fail too), so the flows keep their
	 * mappings through it. A box that never answered at all (its address
	 * unreachable from our lines, or not listened on) twice in a row:
	 * box addresses are left unused for a while, and the shared address
	 * is used as it is. */
	if (u->sid && !IN6_IS_ADDR_UNSPECIFIED(&u->box) && !u->norder &&
	    now - u->last_rx_ms > BOX_GONE_MS && box_silent_alone(u)) {
		if (!u->box_answered && ++u->box_strikes >= 2) {
			u->box_ignore_until = now + BOX_IGNORE_MS;
			u->box_strikes = 0;
			log_warn("udp: box %s never answered, twice: its address is not reachable "
				 "from our lines? Box addresses unused for %u s (UDP by the "
				 "concentrator's address)", addr_format_in6(&u->box, 0, bx),
				 BOX_IGNORE_MS / 1000);
		} else {
			log_info("udp: box %s answers on no line, the concentrator's address does: "
				 "a new session there", addr_format_in6(&u->box, 0, bx));
		}
		session_reset(u);
	}
	if (u->sid && now - u->last_rx_ms > SESSION_DEAD_MS) {
		log_info("udp: no answer from the concentrator for %u s: a new session",
			 SESSION_DEAD_MS / 1000);
		session_reset(u);
	}
	if (!u->sid && now - u->hello_ms >= HELLO_MS)
		send_hello(u, now);
	/* Fast pings only on the lines flows use or would fail over to (the
	 * first two usable): a metered backup line further down is not pinged
	 * 12 times a second all day because a console keeps UDP busy. */
	for (unsigned i = 0; i < PATHS_MAX && u->sid; i++) {
		bool fast = busy(u, now) &&
			    ((u->norder > 0 && u->order[0] == i) || (u->norder > 1 && u->order[1] == i) ||
			     u->car[i].dead);

		if (u->car[i].fd >= 0 && u->car[i].live &&
		    now - u->car[i].last_ping_ms >= (fast ? PING_BUSY_MS : PING_MS))
			send_ping(u, (uint8_t)i, now);
	}
	for (uint32_t i = 0; i < u->fcap && now >= u->next_expiry_ms; i++) {
		struct uflow *f = &u->f[i];

		if (f->used &&
		    now - f->last_ms >= (uint64_t)(f->assured ? u->stream_timeout_s : u->timeout_s) * 1000) {
			flow_unlink(u, f);
			u->st.flows_expired++;
		}
	}
	if (now >= u->next_expiry_ms)
		u->next_expiry_ms = now + 1000;
	u->st.flows_active = u->nflows;
	pthread_mutex_unlock(&u->lock);
}

/* The smallest MTU of the LAN interfaces (a reload may change them). */
static unsigned lan_mtu(struct agent *a)
{
	char lan[AGENT_MAX_LAN][32];
	unsigned mtu = 0, nlan;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	pthread_mutex_lock(&a->cfg_lock);
	nlan = a->cfg.nlan;
	memcpy(lan, a->cfg.lan, sizeof(lan));
	pthread_mutex_unlock(&a->cfg_lock);
	for (unsigned i = 0; fd >= 0 && i < nlan; i++) {
		struct ifreq ifr = { 0 };

		size_t l = strnlen(lan[i], sizeof(lan[i]));

		if (l >= sizeof(ifr.ifr_name))
			continue;
		memcpy(ifr.ifr_name, lan[i], l);
		if (ioctl(fd, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0 &&
		    (!mtu || (unsigned)ifr.ifr_mtu < mtu))
			mtu = (unsigned)ifr.ifr_mtu;
	}
	if (fd >= 0)
		close(fd);
	return mtu ? mtu : 1500;
}

/* One completion (under u->lock). Receives hand their buffer back once
 * the datagram is handled; a multishot receive that ends (the buffers ran
 * out, or an error) is armed again, with more buffers when they ran out.
 * A closed path's completions carry an old generation. */
static void on_cqe(struct agent_udp *u, const struct io_uring_cqe *cqe, uint64_t now)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	uint32_t slot = ring_ud_slot(ud);
	bool more = cqe->flags & IORING_CQE_F_MORE;
	uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
	uint8_t *b = (cqe->flags & IORING_CQE_F_BUFFER) ? ring_bufs_ptr(&u->rb, bid) : NULL;

	switch (ring_ud_op(ud)) {
	case UOP_SEND:
		if (cqe->res < 0)
			drop(u, AUD_SEND);
		ring_sendq_done(&u->sq, cqe);
		break;
	case UOP_LAN:
		if (cqe->res >= 0 && b)
			lan_dgram(u, b, cqe->res, now);
		if (!more) {
			u->lan_armed = false;
			if (cqe->res == -ENOBUFS)
				ring_bufs_grow(&u->rb, 16);
			/* Another error is tried again by the tick, not at once. */
			if (cqe->res >= 0 || cqe->res == -ENOBUFS)
				arm_lan(u);
			else if (log_ratelimit_ok(&u->rl, now))
				log_errno(cqe->res, "udp: receiving on the LAN socket: %m");
		}
		break;
	case UOP_CAR: {
		struct ucar *c = slot < PATHS_MAX ? &u->car[slot] : NULL;

		if (!c || c->fd < 0 || c->gen != ring_ud_gen(ud))
			break;   /* closed since */
		if (cqe->res >= 0 && b)
			car_dgram(u, b, cqe->res, now);
		if (!more && c->fd >= 0 && c->gen == ring_ud_gen(ud)) {
			c->armed = false;
			if (cqe->res == -ENOBUFS)
				ring_bufs_grow(&u->rb, 16);
			if (cqe->res >= 0 || cqe->res == -ENOBUFS)
				arm_car(u, c);   /* else the tick */
		}
		break;
	}
	default:
		break;
	}
	if (b)
		ring_bufs_put(&u->rb, bid);
}

/* The thread: its ring (made here, used only here), the LAN receive, then
 * completions and the 20 ms tick until the agent stops; the ring goes with
 * the thread. */
static void *udp_main(void *arg)
{
	struct agent_udp *u = arg;
	uint64_t next_tick = 0, next_mtu = 0;
	int r = ring_init_with_bufs(&u->ring, UDP_RING_ENTRIES, &u->rb, UDP_RB_GID, UDP_RB_COUNT,
				    UDP_RB_SIZE);

	u->start_result = r;
	if (r < 0) {
		sem_post(&u->started);
		return NULL;
	}
	u->ring_live = true;
	arm_lan(u);
	sem_post(&u->started);
	while (!atomic_load(&u->a->stopping)) {
		uint64_t now = log_now_ms(), wait = next_tick > now ? next_tick - now : 0;
		struct __kernel_timespec ts = { .tv_sec = (long long)(wait / 1000),
						.tv_nsec = (long long)(wait % 1000) * 1000000 };
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		/* The sends and re-arms made since, submitted with the wait. */
		io_uring_submit_and_wait_timeout(&u->ring, &cqe, wait ? 1 : 0, &ts, NULL);
		now = log_now_ms();
		pthread_mutex_lock(&u->lock);
		io_uring_for_each_cqe(&u->ring, head, cqe) {
			on_cqe(u, cqe, now);
			n++;
		}
		io_uring_cq_advance(&u->ring, n);
		pthread_mutex_unlock(&u->lock);
		if (now >= next_mtu) {
			u->lan_mtu = lan_mtu(u->a);
			next_mtu = now + 10000;
		}
		if (now >= next_tick) {
			if (!u->lan_armed)
				arm_lan(u);
			for (unsigned i = 0; i < PATHS_MAX; i++)
				if (u->car[i].fd >= 0 && !u->car[i].armed)
					arm_car(u, &u->car[i]);
			tick(u, now);
			next_tick = now + TICK_MS;
		}
	}
	pthread_mutex_lock(&u->lock);
	io_uring_submit(&u->ring);   /* what the last tick queued */
	u->ring_live = false;        /* the sockets now close at once */
	for (unsigned i = 0; i < PATHS_MAX; i++)
		car_close(u, &u->car[i]);
	pthread_mutex_unlock(&u->lock);
	io_uring_queue_exit(&u->ring);     /* its requests first, then their buffers */
	ring_bufs_free(&u->ring, &u->rb);
	return NULL;
}

/* ---- start, stop, status, metrics ---- */

static int lan_open(uint16_t port)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port),
				  .sin6_addr = IN6ADDR_ANY_INIT };
	int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, zero = 0;

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0 ||
	    setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_IP, IP_RECVORIGDSTADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &(int){ 1 << 20 }, sizeof(int));
	return fd;
}

static void udp_free(struct agent_udp *u)
{
	if (!u)
		return;
	for (unsigned i = 0; i < PATHS_MAX; i++)
		car_close(u, &u->car[i]);
	session_reset(u);
	if (u->lfd >= 0)
		close(u->lfd);
	if (u->raw4 >= 0)
		close(u->raw4);
	if (u->raw6 >= 0)
		close(u->raw6);
	ring_sendq_free(&u->sq);
	explicit_bzero(u->secret, sizeof(u->secret));
	quota_free(&u->hosts);
	ctmark_close(&u->ct_nl);
	free(u->f);
	free(u->fb);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

int agent_udp_start(struct agent *a)
{
	struct agent_udp *u;
	int r;

	if (a->cfg.udp_mode == AGENT_UDP_OFF)
		return 0;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->a = a;
	u->lfd = u->raw4 = u->raw6 = -1;
	pthread_mutex_init(&u->lock, NULL);
	for (unsigned i = 0; i < PATHS_MAX; i++)
		u->car[i].fd = -1;
	u->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT(5, 10000);
	u->fcap = a->cfg.udp_max_flows;
	u->fnb = 1;
	while (u->fnb < u->fcap)
		u->fnb <<= 1;
	u->f = calloc(u->fcap, sizeof(*u->f));
	u->fb = calloc(u->fnb, sizeof(*u->fb));
	/* Per address (IPv6 too: a home LAN is one /64), as the TCP cap. */
	if (!u->f || !u->fb || hash_key_random(&u->hk) < 0 || quota_init(&u->hosts, 128) < 0 ||
	    ring_sendq_init(&u->sq, UDP_SEND_SLOTS, UOP_SEND) < 0) {
		udp_free(u);
		return log_errno(-ENOMEM, "udp: out of memory");
	}
	for (uint32_t i = 0; i < u->fcap; i++)
		u->f[i].next = i + 2 <= u->fcap ? i + 2 : 0;
	u->ffree = u->fcap ? 1 : 0;
	u->port = a->cfg.port;
	u->conc = u->peer = a->cfg.conc[0];
	u->conc_len = u->peer_len = a->cfg.conc_len[0];
	u->family = u->conc.ss_family;
	u->kid = a->cfg.keyed ? a->cfg.key.id : 0;
	if (a->cfg.keyed)
		memcpy(u->secret, a->cfg.key.secret, sizeof(u->secret));
	u->lan_mtu = 1500;
	/* What multishot receives leave room for before each payload. */
	u->lan_msg.msg_namelen = sizeof(struct sockaddr_storage);
	u->lan_msg.msg_controllen = UDP_CM_LEN;
	u->lfd = lan_open(a->cfg.port);
	u->raw4 = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	u->raw6 = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	if (u->raw6 >= 0 && setsockopt(u->raw6, IPPROTO_IPV6, IPV6_HDRINCL, &(int){ 1 }, sizeof(int)) < 0) {
		close(u->raw6);
		u->raw6 = -1;
	}
	if (u->lfd < 0 || u->raw4 < 0) {
		r = u->lfd < 0 ? u->lfd : -errno;
		udp_free(u);
		return log_errno(r, "udp: cannot open the LAN sockets (port %u): %m", a->cfg.port);
	}
	if (u->raw6 < 0)
		log_warn("udp: no raw IPv6 socket here: LAN IPv6 UDP gets no answers");
	sem_init(&u->started, 0, 0);
	a->udp = u;
	r = pthread_create(&u->thread, NULL, udp_main, u);
	if (r) {
		a->udp = NULL;
		sem_destroy(&u->started);
		udp_free(u);
		return log_errno(-r, "udp: cannot start its thread: %m");
	}
	sem_wait(&u->started);
	sem_destroy(&u->started);
	if (u->start_result < 0) {
		r = u->start_result;
		pthread_join(u->thread, NULL);
		a->udp = NULL;
		udp_free(u);
		return log_errno(r, "udp: io_uring: %m%s", ring_setup_why(r));
	}
	log_info("udp: carrying LAN UDP (%s by default, %u classes, QUIC %s; %u flows at most)",
		 udpc_mode_name((unsigned)a->cfg.udp_mode), a->cfg.nudp_class,
		 agent_udp_quic_carried(&a->cfg) ? "carried" : "to TCP", u->fcap);
	return 0;
}

void agent_udp_stop(struct agent *a)
{
	struct agent_udp *u = a->udp;

	if (!u)
		return;
	atomic_store(&a->stopping, 1);
	pthread_join(u->thread, NULL);
	a->udp = NULL;
	udp_free(u);
}

char *agent_udp_status(struct agent *a)
{
	struct agent_udp *u = a->udp;
	char *out = NULL, bx[ADDR_STRLEN];
	size_t len = 0;
	FILE *f;

	if (!u || !(f = open_memstream(&out, &len)))
		return NULL;
	pthread_mutex_lock(&u->lock);
	fprintf(f, "udp: session %s%s%s%s, %u flow%s\n", u->sid ? "up" : "down",
		IN6_IS_ADDR_UNSPECIFIED(&u->box) ? "" : " (box ",
		IN6_IS_ADDR_UNSPECIFIED(&u->box) ? "" : addr_format_in6(&u->box, 0, bx),
		IN6_IS_ADDR_UNSPECIFIED(&u->box) ? "" : ")", u->nflows, u->nflows == 1 ? "" : "s");
	for (unsigned i = 0; i < PATHS_MAX; i++) {
		const struct ucar *c = &u->car[i];

		if (c->fd >= 0)
			fprintf(f, "  path %-20s %s rtt %.1f ms\n", c->name,
				c->live && !c->dead ? "usable" : "unusable", c->rtt_us / 1000.0);
	}
	for (uint32_t i = 0, shown = 0; i < u->fcap && shown < 200; i++) {
		const struct uflow *fl = &u->f[i];
		char s[ADDR_STRLEN];

		if (!fl->used)
			continue;
		shown++;
		fprintf(f, "  %s %s via %s%s%s\n", addr_format_in6(&fl->lan, fl->lport, s),
			udpc_mode_name(fl->mode), fl->p0 < PATHS_MAX ? u->car[fl->p0].name : "-",
			fl->p1 < PATHS_MAX ? "+" : "", fl->p1 < PATHS_MAX ? u->car[fl->p1].name : "");
	}
	pthread_mutex_unlock(&u->lock);
	fclose(f);
	return out;
}

void agent_udp_render_metrics(struct agent *a, struct mbuf *b)
{
	struct agent_udp *u = a->udp;
	struct agent_udp_stats s;
	char l[96];

	if (!u)
		return;
	pthread_mutex_lock(&u->lock);
	s = u->st;
	pthread_mutex_unlock(&u->lock);
	metrics_one(b, "gw_agent_udp_session_up", "gauge",
		    "1 while the UDP carrier session with the concentrator is open.", s.session_up);
	metrics_one(b, "gw_agent_udp_sessions_total", "counter", "UDP carrier sessions opened.",
		    s.sessions);
	metrics_one(b, "gw_agent_udp_flows_active", "gauge", "LAN UDP flows (sources) carried.",
		    s.flows_active);
	metrics_head(b, "gw_agent_udp_flows_total", "counter",
		     "LAN UDP flows started, by the steering mode of their first datagram.");
	for (unsigned m = 0; m < UDPC_MODE_MAX; m++) {
		snprintf(l, sizeof(l), "mode=\"%s\"", udpc_mode_name(m));
		metrics_u64(b, "gw_agent_udp_flows_total", l, s.flows_by_mode[m]);
	}
	metrics_one(b, "gw_agent_udp_flows_expired_total", "counter",
		    "LAN UDP flows forgotten after being idle.", s.flows_expired);
	metrics_head(b, "gw_agent_udp_datagrams_total", "counter", "LAN datagrams carried.");
	metrics_u64(b, "gw_agent_udp_datagrams_total", "direction=\"up\"", s.dgrams_up);
	metrics_u64(b, "gw_agent_udp_datagrams_total", "direction=\"down\"", s.dgrams_down);
	metrics_head(b, "gw_agent_udp_bytes_total", "counter", "LAN datagram bytes carried.");
	metrics_u64(b, "gw_agent_udp_bytes_total", "direction=\"up\"", s.bytes_up);
	metrics_u64(b, "gw_agent_udp_bytes_total", "direction=\"down\"", s.bytes_down);
	metrics_head(b, "gw_agent_udp_path_datagrams_total", "counter",
		     "Carrier datagrams sent by path (copies included).");
	metrics_head(b, "gw_agent_udp_path_bytes_total", "counter",
		     "Carrier bytes sent by path (copies included).");
	for (unsigned i = 0; i < PATHS_MAX && i < a->paths.n; i++) {
		char name[64];

		snprintf(l, sizeof(l), "path=\"%s\"",
			 metrics_label(path_name(&a->paths.p[i]), name, sizeof(name)));
		metrics_u64(b, "gw_agent_udp_path_datagrams_total", l, s.path_dgrams[i]);
		metrics_u64(b, "gw_agent_udp_path_bytes_total", l, s.path_bytes[i]);
	}
	metrics_one(b, "gw_agent_udp_steers_total", "counter",
		    "STEER datagrams sent: flows moved to another path without a datagram of theirs.",
		    s.steers);
	metrics_one(b, "gw_agent_udp_failovers_total", "counter",
		    "Changes of the live paths that moved UDP flows.", s.failovers);
	metrics_one(b, "gw_agent_udp_session_resets_total", "counter",
		    "Sessions the concentrator no longer knew (RESET), reopened.", s.resets_taken);
	metrics_head(b, "gw_agent_udp_dropped_total", "counter",
		     "Datagrams not carried or not delivered, by reason (replay: redundant copies).");
	for (unsigned k = 0; k < AUD_MAX; k++) {
		snprintf(l, sizeof(l), "reason=\"%s\"", agent_udp_drop_name(k));
		metrics_u64(b, "gw_agent_udp_dropped_total", l, s.drops[k]);
	}
}
