/* The concentrator's end of the UDP carrier.
 *
 * One thread (UDP is a small share of a household's bytes; one core carries
 * several hundred thousand datagrams a second) with an io_uring of its own
 * over the carrier sockets (one per listen address, the TCP port's number
 * in UDP) and one socket per LAN flow: a multishot receive on each (into
 * provided buffers, common/ring.h), and sends queued as they are made and
 * submitted together with the next wait, so a burst of datagrams costs one
 * system call, not one or two each.
 *
 * Sessions. A gateway opens one with a HELLO authenticated with its key
 * (or, without keys, from an allowed address); we answer with an ACCEPT no
 * larger than the HELLO and keep nothing for a HELLO that fails. After
 * that every datagram is sealed with the session's keys and carries a
 * packet number that is taken once: forged, altered, replayed and
 * duplicated (redundant mode) datagrams are dropped, counted, unanswered.
 * A session's datagrams may come from any of the gateway's paths.
 *
 * Flows. A flow is one LAN source (address and port) of one session: its
 * own socket, bound to an ephemeral port, sends to every destination the
 * LAN source sends to, so the mapping is endpoint-independent (RFC 4787
 * REQ-1: what games and WebRTC need). Answers are accepted from any port
 * of an address the flow has sent to (address-dependent filtering, REQ-8's
 * stricter choice): a household's devices get nothing from hosts they never
 * contacted, and hole punching still works. Every new destination address
 * passes the same policy as TCP. Answers go back by the path the flow's
 * latest datagram names (and in redundant mode by its second one too).
 *
 * Paths. A path's answers go to an address only once a PING from it has
 * echoed a challenge sent there sealed (struct upath): an observer who
 * resends a gateway's datagram from a forged source cannot steer answers
 * to its victim.
 *
 * Bounds, per owner (a key, or without keys an address or IPv6 /64):
 * 8 sessions (a ninth HELLO makes way only for one silent for 10 s, so a
 * replayed or forged HELLO cannot evict a talking gateway), flows and a
 * datagram rate; in all: sessions, flows (and so descriptors, set aside at
 * start), replies (a RESET for an unknown session is 48 bytes, less than any
 * datagram that causes it, 20 a second per source /24 or /56). Idle flows
 * expire like conntrack's: 30 s, or 180 s once "assured" (an answer, then
 * another datagram from the LAN: a DNS query and its answer are not). After a
 * reload, sessions whose key or client is gone are closed and flows check
 * their destinations again. */
#include "concentrator.h"
#include "udp.h"
#include "udpcrypt.h"
#include "hash.h"
#include "ring.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <semaphore.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define UDP_BUFSZ 65536
#define UDP_PATHS 15               /* path ids 0-14 (a DATA names two in one byte) */
#define UDP_PEERS 32               /* addresses a flow accepts answers from */
#define UDP_SESS_PER_OWNER 8
#define UDP_SESSION_IDLE_MS 180000
#define UDP_STALE_SESSION_MS 10000 /* a session silent this long may make way */
#define UDP_UNCONFIRMED_MS 2000    /* one never confirmed, this long after its ACCEPT */
#define UDP_PINGS_PER_S 200        /* per session, beside the datagram rate */
#define UDP_RESET_BUCKETS 1024     /* RESET and HELLO budgets, by source prefix */
#define UDP_RESETS_PER_S 100       /* per /24 (IPv4) or /56 (IPv6) */
#define UDP_HELLOS_PER_S 20        /* the same, before any MAC is computed */
#define UDP_CHALLENGE_MS 5000      /* a path's challenge stands this long */
/* The ring: receives land in provided buffers of UDP_RB_SIZE (what
 * io_uring_recvmsg_out, the source address, the packet-info control
 * message and the largest datagram take), up to UDP_RB_COUNT of them
 * (ring_bufs starts with a few and grows when receives find none). Sends
 * are copied into one of UDP_SEND_SLOTS slots until their completion; a
 * larger datagram, or one with every slot in flight, is sent at once. */
#define UDP_RING_ENTRIES 1024
#define UDP_RB_GID 1
#define UDP_RB_COUNT 256
#define UDP_CM_LEN (CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo)))
#define UDP_RB_SIZE (sizeof(struct io_uring_recvmsg_out) + sizeof(struct sockaddr_storage) + \
		     UDP_CM_LEN + UDP_BUFSZ)
#define UDP_SEND_SLOTS 512
enum { UOP_CARRIER = 1, UOP_FLOW, UOP_SEND, UOP_CANCEL };

/* Where a path's answers go. A new address for a path is used only once a
 * PING from it has echoed the challenge the concentrator sent there in a
 * (sealed) PONG: a datagram copied by an observer and resent from a forged
 * source cannot steer answers to that source. */
struct upath {
	struct sockaddr_storage to;
	socklen_t tolen;
	struct in6_addr local;         /* the address it was sent to (our reply's source) */
	unsigned carrier;              /* which carrier socket */
	uint64_t last_ms;              /* 0: not validated yet */
	struct sockaddr_storage cand;  /* a new address, being validated */
	socklen_t candlen;
	uint64_t challenge, challenge_ms;
};

/* Who a session belongs to: its key, or without keys the client address
 * (IPv6: its /64). Limits are the owner's, whatever its sessions. */
struct uowner {
	uint32_t kid;
	struct in6_addr addr;
	uint32_t nsess, nflows;
	uint64_t tokens, tokens_ms;    /* datagram rate: thousandths of a datagram */
};

struct usess {
	uint32_t sid;                  /* 0: free slot */
	uint32_t owner;                /* index into owners */
	struct udpc_aead rx, tx;
	struct udpc_window win;
	uint64_t pn_out;
	uint64_t created_ms, last_ms;
	bool confirmed;                /* a sealed datagram came: the gateway holds the keys */
	/* The HELLO's path (its flags byte) and source: the ACCEPT went there,
	 * so the first sealed datagram proves the gateway is there. */
	uint8_t hello_path;
	struct upath hello_from;
	unsigned gen;                  /* policy generation its key was checked at */
	uint64_t key_fp;               /* its key's secret, hashed: a reload that changes it
					* under the same id closes the session */
	struct upath path[UDP_PATHS];
	uint64_t ping_tokens, ping_ms;
	uint32_t nflows;
	uint32_t next;                 /* sid chain, index + 1 */
};

struct uflow {
	int fd;                        /* -1: free */
	uint32_t gen;                  /* 24 bits: its receive's user_data (ring_ud) */
	uint32_t sess;                 /* index */
	uint32_t id;
	uint8_t mode, p0, p1;          /* answer paths (0xff: none) */
	bool armed;                    /* its multishot receive is on the ring */
	bool replied;                  /* an answer came */
	bool assured;                  /* ... and then another datagram from the LAN */
	unsigned pgen;                 /* policy generation its peers were checked at */
	uint64_t last_ms;
	struct in6_addr peer[UDP_PEERS];
	uint16_t peer_port[UDP_PEERS]; /* the port first sent to, to check the policy again */
	unsigned npeer, peer_next;
	uint32_t next;                 /* (session, id) chain, index + 1 */
	uint32_t free_next;
};

struct carrier {
	int fd;
	int family;
	bool armed;                    /* its multishot receive is on the ring */
};

struct udp_srv {
	struct conc *c;
	pthread_t thread;
	sem_t started;                 /* the thread's ring is up, or failed */
	int start_result;
	struct io_uring ring;
	bool ring_live;                /* only the thread submits, and only then */
	struct ring_bufs rb;
	struct msghdr car_msg, flow_msg;  /* multishot receives: name and control room */
	struct ring_sendq sq;
	struct carrier car[CONC_MAX_LISTEN];
	unsigned ncar;
	struct usess *s;
	struct uowner *o;              /* scap owners at most (one per session) */
	uint32_t scap, *sbucket, snb;
	struct uflow *f;
	uint32_t fcap, *fbucket, fnb, ffree, nflows;
	uint8_t reset_rand[16];        /* reset secret without a TFO key file */
	uint8_t ident[96];             /* this box: --box and --join-address */
	size_t identlen;
	struct budget { uint64_t window_ms; unsigned n; } resets[UDP_RESET_BUCKETS],
		hellos[UDP_RESET_BUCKETS];
	struct hash_key hk;
	struct log_ratelimit rl, rl_sess;
	struct udp_stats st;
	uint8_t out[UDP_BUFSZ + 64];
};

static const char *const refusal_names[UDPR_MAX] = {
	"malformed", "client", "key", "stale", "sessions", "unknown_session", "bad_tag",
	"replay", "old", "policy", "flow_limit", "filtered", "socket", "rate", "version",
};

const char *udp_refusal_name(unsigned r)
{
	return r < UDPR_MAX ? refusal_names[r] : "unknown";
}

static bool same_sockaddr(const struct sockaddr_storage *a, socklen_t al,
			  const struct sockaddr_storage *b, socklen_t bl)
{
	struct in6_addr x, y;
	uint16_t xp, yp;

	if (!al || !bl || addr_to_in6((const struct sockaddr *)a, &x, &xp) < 0 ||
	    addr_to_in6((const struct sockaddr *)b, &y, &yp) < 0)
		return false;
	return xp == yp && !memcmp(&x, &y, sizeof(x));
}

/* ---- the ring ---- */

/* A multishot receive on carrier socket ci. */
static void arm_carrier(struct udp_srv *u, unsigned ci)
{
	/* Without room, the loop re-arms it within a second. */
	u->car[ci].armed = ring_recvmsg_multishot(&u->ring, u->car[ci].fd, &u->car_msg, UDP_RB_GID,
						  ring_ud(UOP_CARRIER, ci, 0));
}

/* A multishot receive on flow f's socket. */
static void arm_flow(struct udp_srv *u, struct uflow *f)
{
	/* Without room, the sweep tries again. */
	f->armed = ring_recvmsg_multishot(&u->ring, f->fd, &u->flow_msg, UDP_RB_GID,
					  ring_ud(UOP_FLOW, (uint32_t)(f - u->f), f->gen));
}

/* Flow f's socket closed: through the ring while it is up (its receive
 * cancelled, behind the sends queued for it: ring_cancel_close), else at
 * once. */
static void flow_close_fd(struct udp_srv *u, struct uflow *f)
{
	if (u->ring_live)
		ring_cancel_close(&u->ring, ring_ud(UOP_FLOW, (uint32_t)(f - u->f), f->gen), f->fd,
				  ring_ud(UOP_CANCEL, 0, 0));
	else
		close(f->fd);
}

/* buf[0..len) by socket fd to `to` (with cm[0..cmlen) as control data),
 * queued on the ring while it is up (common/ring.h). */
static bool tx(struct udp_srv *u, int fd, const struct sockaddr_storage *to, socklen_t tolen,
	       const void *cm, size_t cmlen, const void *buf, size_t len)
{
	return ring_sendq_send(&u->sq, u->ring_live ? &u->ring : NULL, fd, to, tolen, cm, cmlen,
			       buf, len);
}

/* ---- sessions ---- */

static uint32_t sid_bucket(const struct udp_srv *u, uint32_t sid)
{
	return (uint32_t)(hash_siphash24(&u->hk, &sid, sizeof(sid)) & (u->snb - 1));
}

static struct usess *sess_find(struct udp_srv *u, uint32_t sid)
{
	for (uint32_t i = u->sbucket[sid_bucket(u, sid)]; i; i = u->s[i - 1].next)
		if (u->s[i - 1].sid == sid)
			return &u->s[i - 1];
	return NULL;
}

static void flow_free(struct udp_srv *u, struct uflow *f);

static void sess_free(struct udp_srv *u, struct usess *s)
{
	uint32_t idx = (uint32_t)(s - u->s), *pp;

	if (!s->sid)
		return;
	/* Its flows first (they point at it). */
	for (uint32_t i = 0; i < u->fcap && s->nflows; i++)
		if (u->f[i].fd >= 0 && u->f[i].sess == idx)
			flow_free(u, &u->f[i]);
	for (pp = &u->sbucket[sid_bucket(u, s->sid)]; *pp; pp = &u->s[*pp - 1].next)
		if (*pp == idx + 1) {
			*pp = s->next;
			break;
		}
	udpc_aead_free(&s->rx);
	udpc_aead_free(&s->tx);
	u->o[s->owner].nsess--;
	memset(s, 0, sizeof(*s));
	u->st.sessions_active--;
}

/* The owner record for (kid, addr): found, or a free one (nsess 0 and no
 * flows), or NULL. */
static struct uowner *owner_get(struct udp_srv *u, uint32_t kid, const struct in6_addr *addr)
{
	struct uowner *free_o = NULL;

	for (uint32_t i = 0; i <= u->scap; i++) {
		struct uowner *o = &u->o[i];

		if (!o->nsess && !o->nflows) {
			if (!free_o)
				free_o = o;
			continue;
		}
		if (o->kid == kid && (kid || !memcmp(&o->addr, addr, sizeof(*addr))))
			return o;
	}
	if (free_o) {
		memset(free_o, 0, sizeof(*free_o));
		free_o->kid = kid;
		free_o->addr = *addr;
	}
	return free_o;
}

/* A slot for a new session of owner o, or NULL. At the owner's limit only
 * a session silent for UDP_STALE_SESSION_MS (or never confirmed) makes
 * way: a forged or replayed HELLO cannot evict a gateway that is talking.
 * With the table full, the oldest unconfirmed session older than that
 * makes way. */
static struct usess *sess_slot(struct udp_srv *u, struct uowner *o, uint64_t now)
{
	struct usess *victim = NULL, *free_slot = NULL, *unconf = NULL;
	uint32_t oi = (uint32_t)(o - u->o);

	for (uint32_t i = 0; i < u->scap; i++) {
		struct usess *s = &u->s[i];
		bool stale;

		if (!s->sid) {
			if (!free_slot)
				free_slot = s;
			continue;
		}
		/* Silent for 10 s, or never confirmed 2 s after its ACCEPT
		 * (an agent sends its PINGs at once): a younger one is not
		 * evicted, so HELLOs forged from a keyless gateway's address
		 * cannot keep taking its new session away. */
		stale = now - s->last_ms >= UDP_STALE_SESSION_MS ||
			(!s->confirmed && now - s->created_ms >= UDP_UNCONFIRMED_MS);
		if (!s->confirmed && stale && (!unconf || s->created_ms < unconf->created_ms))
			unconf = s;
		if (s->owner == oi && stale && (!victim || s->last_ms < victim->last_ms))
			victim = s;
	}
	if (o->nsess >= UDP_SESS_PER_OWNER) {
		if (!victim)
			return NULL;
		sess_free(u, victim);
		return victim;
	}
	if (free_slot)
		return free_slot;
	if (unconf) {
		sess_free(u, unconf);
		return unconf;
	}
	return NULL;
}

/* ---- flows ---- */

static uint32_t flow_bucket(const struct udp_srv *u, uint32_t sess, uint32_t id)
{
	uint32_t k[2] = { sess, id };

	return (uint32_t)(hash_siphash24(&u->hk, k, sizeof(k)) & (u->fnb - 1));
}

static struct uflow *flow_find(struct udp_srv *u, uint32_t sess, uint32_t id)
{
	for (uint32_t i = u->fbucket[flow_bucket(u, sess, id)]; i; i = u->f[i - 1].next)
		if (u->f[i - 1].sess == sess && u->f[i - 1].id == id)
			return &u->f[i - 1];
	return NULL;
}

static void flow_free(struct udp_srv *u, struct uflow *f)
{
	uint32_t idx = (uint32_t)(f - u->f), *pp;

	if (f->fd < 0)
		return;
	for (pp = &u->fbucket[flow_bucket(u, f->sess, f->id)]; *pp; pp = &u->f[*pp - 1].next)
		if (*pp == idx + 1) {
			*pp = f->next;
			break;
		}
	flow_close_fd(u, f);
	f->fd = -1;
	f->armed = false;
	f->gen = (f->gen + 1) & 0xffffff;
	u->s[f->sess].nflows--;
	u->o[u->s[f->sess].owner].nflows--;
	u->nflows--;
	u->st.flows_active--;
	f->free_next = u->ffree;
	u->ffree = idx + 1;
}

static bool flow_knows(const struct uflow *f, const struct in6_addr *a)
{
	for (unsigned i = 0; i < f->npeer; i++)
		if (!memcmp(&f->peer[i], a, sizeof(*a)))
			return true;
	return false;
}

static void flow_learn(struct uflow *f, const struct in6_addr *a, uint16_t port)
{
	unsigned i = f->npeer < UDP_PEERS ? f->npeer++ : f->peer_next;

	if (f->npeer == UDP_PEERS && i == f->peer_next)
		f->peer_next = (f->peer_next + 1) % UDP_PEERS;
	f->peer[i] = *a;
	f->peer_port[i] = port;
}

/* After a reload or an own-address change: the addresses a flow learned
 * pass the policy again, or are forgotten (their answers filtered, the
 * flow's next datagram to them checked anew). */
static void flow_recheck(struct udp_srv *u, struct uflow *f, unsigned gen)
{
	unsigned k = 0;

	pthread_rwlock_rdlock(&u->c->live_lock);
	for (unsigned i = 0; i < f->npeer; i++) {
		const char *reason;

		if (policy_check_dest(&u->c->cfg.policy, &f->peer[i], f->peer_port[i], &reason) < 0)
			continue;
		f->peer[k] = f->peer[i];
		f->peer_port[k++] = f->peer_port[i];
	}
	pthread_rwlock_unlock(&u->c->live_lock);
	f->npeer = k;
	f->peer_next = 0;
	f->pgen = gen;
}

static struct uflow *flow_new(struct udp_srv *u, uint32_t sidx, uint32_t id, enum udp_refusal *why)
{
	struct conc *c = u->c;
	struct sockaddr_in6 any = { .sin6_family = AF_INET6 };
	struct uowner *o = &u->o[u->s[sidx].owner];
	struct uflow *f;
	uint32_t per_gw;
	int fd, zero = 0;

	pthread_rwlock_rdlock(&c->live_lock);
	per_gw = c->cfg.udp_per_gateway;
	pthread_rwlock_unlock(&c->live_lock);
	if (!u->ffree || (per_gw && o->nflows >= per_gw)) {
		*why = UDPR_FLOW_LIMIT;
		return NULL;
	}
	fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0 ||
	    bind(fd, (struct sockaddr *)&any, sizeof(any)) < 0) {
		if (fd >= 0)
			close(fd);
		*why = UDPR_SOCKET;
		return NULL;
	}
	f = &u->f[u->ffree - 1];
	u->ffree = f->free_next;
	f->fd = fd;
	arm_flow(u, f);
	f->sess = sidx;
	f->id = id;
	f->replied = f->assured = false;
	f->npeer = f->peer_next = 0;
	f->p0 = f->p1 = 0xff;
	f->pgen = atomic_load(&c->policy_gen);
	{
		uint32_t b = flow_bucket(u, sidx, id);

		f->next = u->fbucket[b];
		u->fbucket[b] = (uint32_t)(f - u->f) + 1;
	}
	u->s[sidx].nflows++;
	o->nflows++;
	u->nflows++;
	u->st.flows_active++;
	u->st.flows_total++;
	return f;
}

/* ---- sending ---- */

/* buf[0..len) to addr, from local (the address the gateway wrote to). */
static void send_to(struct udp_srv *u, unsigned carrier, const struct sockaddr_storage *to,
		    socklen_t tolen, const struct in6_addr *local, const void *buf, size_t len)
{
	union {
		char b[CMSG_SPACE(sizeof(struct in6_pktinfo))];
		struct cmsghdr align;
	} cm;
	size_t cmlen;
	struct cmsghdr *c;

	memset(&cm, 0, sizeof(cm));
	c = (struct cmsghdr *)cm.b;
	if (addr_is_v4mapped(local)) {
		struct in_pktinfo pi = { 0 };

		memcpy(&pi.ipi_spec_dst, &local->s6_addr[12], 4);
		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		cmlen = CMSG_SPACE(sizeof(pi));
	} else {
		struct in6_pktinfo pi = { .ipi6_addr = *local };

		c->cmsg_level = IPPROTO_IPV6;
		c->cmsg_type = IPV6_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		cmlen = CMSG_SPACE(sizeof(pi));
	}
	if ((u->car[carrier].family == AF_INET && !addr_is_v4mapped(local)) ||
	    IN6_IS_ADDR_UNSPECIFIED(local))
		cmlen = 0;
	tx(u, u->car[carrier].fd, to, tolen, cm.b, cmlen, buf, len);
}

static void send_path(struct udp_srv *u, const struct upath *p, const void *buf, size_t len)
{
	send_to(u, p->carrier, &p->to, p->tolen, &p->local, buf, len);
}

/* A budget per source prefix (/24, /56) and second, in table t. */
static bool budget_ok(struct udp_srv *u, struct budget *t, unsigned per_s,
		      const struct sockaddr_storage *src, uint64_t now)
{
	struct in6_addr a;
	unsigned b;

	if (addr_to_in6((const struct sockaddr *)src, &a, NULL) < 0)
		return false;
	if (addr_is_v4mapped(&a))
		a.s6_addr[15] = 0;
	else
		memset(&a.s6_addr[7], 0, 9);
	b = (unsigned)(hash_siphash24(&u->hk, &a, sizeof(a)) % UDP_RESET_BUCKETS);
	if (now - t[b].window_ms >= 1000) {
		t[b].window_ms = now;
		t[b].n = 0;
	}
	return t[b].n++ < per_s;
}

/* A session's reset token (docs/udp-carrier.md, RESET): under the TFO
 * key, which outlives a restart (the state directory's, or the operator's
 * file), and this box's identity (its --box name and join address: boxes
 * sharing a key cannot answer for each other's sessions); which=1 under
 * the previous key (the same without one). Without a TFO key file, under
 * a secret of this run: after a restart the agent then waits out its 10 s
 * instead. 0 or -EIO. */
static int reset_token(struct udp_srv *u, uint32_t sid, unsigned which, uint8_t out[UDPC_TOKEN_LEN])
{
	uint8_t key[32];
	unsigned n = peers_key(u->c, key);
	int r;

	if (n >= 16)
		r = udpcrypt_reset_token(which && n == 32 ? key + 16 : key, 16, u->ident, u->identlen,
					 sid, out);
	else
		r = udpcrypt_reset_token(u->reset_rand, sizeof(u->reset_rand), u->ident, u->identlen,
					 sid, out);
	explicit_bzero(key, sizeof(key));
	return r;
}

/* RESET for a sealed datagram (hdr h, its tag) of an unknown session: the
 * header echoed and two proofs that we held the session (48 bytes, less
 * than any datagram that can cause it), within the source prefix's
 * budget. */
static void send_reset(struct udp_srv *u, unsigned ci, const struct sockaddr_storage *src,
		       socklen_t srclen, const struct in6_addr *local, const struct udpc_hdr *h,
		       const uint8_t tag[UDPC_TAG_LEN], uint64_t now)
{
	struct udpc_hdr r = { .type = UDPC_RESET, .sid = h->sid, .pn = h->pn };
	uint8_t b[UDPC_RESET_LEN], tok[UDPC_TOKEN_LEN];

	if (!budget_ok(u, u->resets, UDP_RESETS_PER_S, src, now))
		return;
	udpc_put_hdr(b, &r);
	for (unsigned k = 0; k < 2; k++)
		if (reset_token(u, h->sid, k, tok) < 0 ||
		    udpcrypt_reset_proof(tok, h->sid, h->pn, tag, b + UDPC_HDR_LEN + k * UDPC_TOKEN_LEN) < 0) {
			explicit_bzero(tok, sizeof(tok));
			return;
		}
	explicit_bzero(tok, sizeof(tok));
	send_to(u, ci, src, srclen, local, b, sizeof(b));
	u->st.resets_sent++;
}

/* ---- from gateways ---- */

static void refuse(struct udp_srv *u, enum udp_refusal why, const struct sockaddr *from,
		   uint64_t now)
{
	char a[ADDR_STRLEN];

	u->st.refused[why]++;
	if (why != UDPR_REPLAY && why != UDPR_RATE && log_ratelimit_ok(&u->rl, now))
		log_info("udp: %s: datagram refused (%s%s)", addr_format(from, a), udp_refusal_name(why),
			 why == UDPR_VERSION ? ": its agent speaks another carrier version; "
					       "upgrade agents and concentrators together" : "");
}

/* Whether the session's key (or, keyless, its client) is still allowed:
 * checked again after each reload, against the HELLO's own source (not the
 * owner's /64) and the key's secret and scope as they are now. */
static bool sess_still_allowed(struct udp_srv *u, struct usess *s)
{
	const struct policy *p = &u->c->cfg.policy;
	const struct uowner *o = &u->o[s->owner];
	struct in6_addr src;
	bool ok;

	if (addr_to_in6((const struct sockaddr *)&s->hello_from.to, &src, NULL) < 0)
		return false;
	pthread_rwlock_rdlock(&u->c->live_lock);
	if (!policy_client_allowed(p, &src)) {
		ok = false;
	} else if (!p->keys.n) {
		ok = o->kid == 0;
	} else {
		const struct cookie_key *k = o->kid ? cookie_keys_find(&p->keys, o->kid) : NULL;

		ok = k && hash_siphash24(&u->hk, k->secret, sizeof(k->secret)) == s->key_fp;
		if (ok && !k->any && !k->nat) {
			ok = false;
			for (unsigned i = 0; i < k->nscope && !ok; i++)
				ok = addr_prefix_match(&k->scope[i], &src);
		}
	}
	pthread_rwlock_unlock(&u->c->live_lock);
	return ok;
}

static void on_hello(struct udp_srv *u, uint8_t *buf, unsigned ci, const struct sockaddr_storage *src,
		     socklen_t srclen, const struct in6_addr *local, uint64_t now)
{
	uint8_t hdr_flags = buf[1];
	struct conc *c = u->c;
	struct udpc_hello h;
	uint8_t secret[COOKIE_SECRET_LEN] = { 0 }, mac[UDPC_MAC_LEN], ns[UDPC_NONCE_LEN];
	uint8_t up[UDPC_KEY_LEN], down[UDPC_KEY_LEN], acc[UDPC_ACCEPT_LEN] = { 0 };
	struct in6_addr addr, owner_addr;
	enum udp_refusal why = UDPR_MAX;
	uint32_t unow = (uint32_t)time(NULL), sid;
	struct usess *s = NULL;
	struct uowner *o = NULL;
	struct udpc_hdr ah = { .type = UDPC_ACCEPT };

	/* Each HELLO costs MACs, a table scan and the replay cache: a budget
	 * per source prefix first. */
	if (!budget_ok(u, u->hellos, UDP_HELLOS_PER_S, src, now)) {
		refuse(u, UDPR_RATE, (const struct sockaddr *)src, now);
		return;
	}
	addr_to_in6((const struct sockaddr *)src, &addr, NULL);
	udpc_parse_hello(buf, &h);
	pthread_rwlock_rdlock(&c->live_lock);
	if (!policy_client_allowed(&c->cfg.policy, &addr)) {
		why = UDPR_CLIENT;
	} else if (c->cfg.policy.keys.n) {
		const struct cookie_key *k = cookie_keys_find(&c->cfg.policy.keys, h.kid);
		bool in_scope = k && (k->any || k->nat);

		for (unsigned i = 0; k && i < k->nscope && !in_scope; i++)
			in_scope = addr_prefix_match(&k->scope[i], &addr);
		if (!k || !in_scope)
			why = UDPR_KEY;
		else
			memcpy(secret, k->secret, sizeof(secret));
	} else if (h.kid) {
		why = UDPR_KEY;
	}
	pthread_rwlock_unlock(&c->live_lock);
	if (why == UDPR_MAX) {
		udpcrypt_hello_mac(secret, buf, mac);
		if (!udpcrypt_mac_equal(mac, h.mac))
			why = UDPR_KEY;
		else if (h.time + COOKIE_MAX_AGE_S < unow || h.time > unow + COOKIE_MAX_AGE_S)
			why = UDPR_STALE;
	}
	if (why == UDPR_MAX && h.kid) {
		uint64_t n64;

		memcpy(&n64, h.nonce, sizeof(n64));
		if (replay_check(&c->replay, h.kid, n64, h.time, unow) < 0)
			why = UDPR_STALE;
		else
			peers_tell(c, h.kid, n64, h.time);
	}
	/* Keyless, the owner is the address (IPv6: its /64). */
	owner_addr = addr;
	if (!h.kid && !addr_is_v4mapped(&owner_addr))
		memset(&owner_addr.s6_addr[8], 0, 8);
	if (why == UDPR_MAX && (!(o = owner_get(u, h.kid, &owner_addr)) || !(s = sess_slot(u, o, now))))
		why = UDPR_SESSIONS;
	if (why != UDPR_MAX) {
		explicit_bzero(secret, sizeof(secret));
		refuse(u, why, (const struct sockaddr *)src, now);
		return;
	}
	do {
		if (udpcrypt_random(&sid, sizeof(sid)) < 0 || udpcrypt_random(ns, sizeof(ns)) < 0)
			goto out;
	} while (!sid || sess_find(u, sid));
	udpcrypt_session_keys(secret, h.nonce, ns, sid, up, down);
	memset(s, 0, sizeof(*s));
	if (udpc_aead_init(&s->rx, up, 0) < 0 || udpc_aead_init(&s->tx, down, 1) < 0) {
		udpc_aead_free(&s->rx);
		udpc_aead_free(&s->tx);
		goto out;
	}
	s->sid = sid;
	s->owner = (uint32_t)(o - u->o);
	s->hello_path = hdr_flags;
	memcpy(&s->hello_from.to, src, srclen);
	s->hello_from.tolen = srclen;
	s->hello_from.local = *local;
	s->hello_from.carrier = ci;
	/* One of several boxes behind a shared address: the session's
	 * datagrams come to this box's own address from now on (the shared
	 * one's routing may take each path to another box), and so do the
	 * answers go from it. Only within the family the gateway used. */
	if (c->cfg.have_join_addr &&
	    addr_is_v4mapped(&c->cfg.join_addr) == addr_is_v4mapped(local)) {
		memcpy(acc + UDPC_ACCEPT_BOX, &c->cfg.join_addr, 16);
		s->hello_from.local = c->cfg.join_addr;
	}
	o->nsess++;
	s->created_ms = s->last_ms = now;
	s->gen = atomic_load(&c->policy_gen);
	s->key_fp = h.kid ? hash_siphash24(&u->hk, secret, sizeof(secret)) : 0;
	{
		uint32_t b = sid_bucket(u, sid);

		s->next = u->sbucket[b];
		u->sbucket[b] = (uint32_t)(s - u->s) + 1;
	}
	u->st.sessions_active++;
	u->st.sessions_total++;
	ah.sid = sid;
	udpc_put_hdr(acc, &ah);
	memcpy(acc + UDPC_HDR_LEN, ns, UDPC_NONCE_LEN);
	/* The reset token, sealed under the down key: the agent alone learns
	 * it, and a RESET after a restart proves we held the session. */
	if (reset_token(u, sid, 0, acc + UDPC_ACCEPT_TOKEN) < 0)
		goto out;   /* no ACCEPT: the slot goes unconfirmed in 2 s */
	udpcrypt_token_seal(down, acc + UDPC_ACCEPT_TOKEN);
	udpcrypt_accept_mac(secret, acc, h.nonce, acc + UDPC_ACCEPT_LEN - UDPC_ACCEPT_MAC_LEN);
	send_to(u, ci, src, srclen, local, acc, sizeof(acc));
	if (log_ratelimit_ok(&u->rl_sess, now)) {
		char a[ADDR_STRLEN];

		log_info("udp: session %08x for %s (key %u)", sid,
			 addr_format((const struct sockaddr *)src, a), h.kid);
	}
out:
	explicit_bzero(secret, sizeof(secret));
	explicit_bzero(up, sizeof(up));
	explicit_bzero(down, sizeof(down));
}

/* A token bucket per owner: up to udp_rate_per_gateway datagrams a
 * second, bursts of a quarter second of it. */
static bool rate_ok(struct udp_srv *u, struct uowner *o, uint64_t now)
{
	uint64_t rate, cap;

	pthread_rwlock_rdlock(&u->c->live_lock);
	rate = u->c->cfg.udp_rate_per_gateway;
	pthread_rwlock_unlock(&u->c->live_lock);
	if (!rate)
		return true;
	cap = rate * 1000 / 4 + 1000;
	if (!o->tokens_ms) {
		o->tokens = cap;
	} else if (now > o->tokens_ms) {
		o->tokens += (now - o->tokens_ms) * rate;
		if (o->tokens > cap)
			o->tokens = cap;
	}
	o->tokens_ms = now;
	if (o->tokens < 1000)
		return false;
	o->tokens -= 1000;
	return true;
}

/* PINGs have a bucket of their own per session (UDP_PINGS_PER_S): a
 * gateway at its datagram rate still gets its PONGs, and its paths stay. */
static bool ping_ok(struct usess *s, uint64_t now)
{
	uint64_t cap = UDP_PINGS_PER_S * 1000;

	if (!s->ping_ms)
		s->ping_tokens = cap;
	else if (now > s->ping_ms)
		s->ping_tokens += (now - s->ping_ms) * UDP_PINGS_PER_S;
	if (s->ping_tokens > cap)
		s->ping_tokens = cap;
	s->ping_ms = now;
	if (s->ping_tokens < 1000)
		return false;
	s->ping_tokens -= 1000;
	return true;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* A PING on path id from src: validates the path's address (see struct
 * upath) and answers with a PONG of the same size, to src. */
static void on_ping(struct udp_srv *u, struct usess *s, const uint8_t *in, unsigned ci,
		    const struct sockaddr_storage *src, socklen_t srclen,
		    const struct in6_addr *local, uint64_t now)
{
	struct udpc_hdr ph = { .type = UDPC_PONG, .sid = s->sid };
	uint8_t id = in[0], *p = u->out + UDPC_HDR_LEN;
	uint64_t echo = get64(in + 12), challenge = 0;
	struct upath *pa;
	int n;

	if (id >= UDP_PATHS)
		return;
	pa = &s->path[id];
	if (pa->last_ms && same_sockaddr(&pa->to, pa->tolen, src, srclen)) {
		pa->last_ms = now;
		pa->carrier = ci;
		pa->local = *local;
		if (pa->candlen && now - pa->challenge_ms >= UDP_CHALLENGE_MS) {
			pa->candlen = 0;   /* a candidate that never answered */
			pa->challenge = 0;
		}
	} else if (pa->challenge && echo == pa->challenge &&
		   same_sockaddr(&pa->cand, pa->candlen, src, srclen)) {
		/* The gateway read our sealed PONG at this address: it is the
		 * path's now. */
		memcpy(&pa->to, src, srclen);
		pa->tolen = srclen;
		pa->local = *local;
		pa->carrier = ci;
		pa->last_ms = now;
		pa->challenge = 0;
		pa->candlen = 0;
	} else if (pa->challenge && same_sockaddr(&pa->cand, pa->candlen, src, srclen) &&
		   now - pa->challenge_ms < UDP_CHALLENGE_MS) {
		/* The same candidate, its challenge in flight (PINGs go every
		 * 80 ms, answers take a round trip): the same challenge again,
		 * or none would ever be echoed on a slow line. */
		challenge = pa->challenge;
	} else {
		if (udpcrypt_random(&challenge, sizeof(challenge)) < 0 || !challenge)
			return;
		memcpy(&pa->cand, src, srclen);
		pa->candlen = srclen;
		pa->challenge = challenge;
		pa->challenge_ms = now;
	}
	u->st.pings++;
	ph.pn = ++s->pn_out;
	udpc_put_hdr(u->out, &ph);
	memset(p, 0, UDPC_PING_INNER);
	p[0] = id;
	memcpy(p + 4, in + 4, 8);         /* the agent's opaque value */
	put64(p + 12, challenge);
	n = udpc_seal(&s->tx, ph.pn, u->out, UDPC_HDR_LEN + UDPC_PING_INNER);
	if (n > 0)
		send_to(u, ci, src, srclen, local, u->out, (size_t)n);
}

static void on_data(struct udp_srv *u, struct usess *s, uint8_t *plain, size_t len, uint8_t flags,
		    const struct sockaddr *from, uint64_t now)
{
	struct conc *c = u->c;
	struct udpc_data d;
	struct uflow *f;
	enum udp_refusal why;
	struct sockaddr_storage to;
	socklen_t tolen;
	uint32_t sidx = (uint32_t)(s - u->s);
	unsigned gen = atomic_load(&c->policy_gen);

	if (udpc_parse_data(plain, len, &d, NULL) < 0) {
		refuse(u, UDPR_MALFORMED, from, now);
		return;
	}
	f = flow_find(u, sidx, d.flow);
	if (!f && (flags & UDPC_F_STEER))
		return;
	if (!f) {
		f = flow_new(u, sidx, d.flow, &why);
		if (!f) {
			refuse(u, why, from, now);
			return;
		}
		if (d.mode < UDPC_MODE_MAX)
			u->st.flows_by_mode[d.mode]++;
	}
	f->last_ms = now;
	f->mode = d.mode;
	if (f->replied && !(flags & UDPC_F_STEER))
		f->assured = true;
	/* Where answers go: paths the gateway names (addresses come from
	 * validated PINGs only). */
	f->p0 = (d.path & 15) < UDP_PATHS ? d.path & 15 : 0xff;
	f->p1 = d.path >> 4 && (d.path >> 4) - 1 < UDP_PATHS ? (uint8_t)((d.path >> 4) - 1) : 0xff;
	if (flags & UDPC_F_STEER)
		return;
	if (f->pgen != gen)
		flow_recheck(u, f, gen);
	if (!flow_knows(f, &d.addr)) {
		const char *reason = NULL;
		int r;

		pthread_rwlock_rdlock(&c->live_lock);
		r = policy_check_dest(&c->cfg.policy, &d.addr, d.port, &reason);
		pthread_rwlock_unlock(&c->live_lock);
		if (r < 0) {
			refuse(u, UDPR_POLICY, from, now);
			return;
		}
		flow_learn(f, &d.addr, d.port);
	}
	tolen = addr_from_in6(&d.addr, d.port, &to);
	if (to.ss_family == AF_INET) {
		/* The flow's socket is IPv6 (dual-stack): the mapped form. */
		struct sockaddr_in6 *m = (struct sockaddr_in6 *)&to;

		memset(m, 0, sizeof(*m));
		m->sin6_family = AF_INET6;
		m->sin6_port = htons(d.port);
		m->sin6_addr = d.addr;
		tolen = sizeof(*m);
	}
	if (tx(u, f->fd, &to, tolen, NULL, 0, d.payload, d.len)) {
		u->st.dgrams_up++;
		u->st.bytes_up += d.len;
	}
}

/* A keyed gateway's new session is confirmed: its sessions silent for 2 s
 * are an earlier run's (it restarted, or took a RESET), and their flows
 * would hold its share of flows for minutes. A keyless owner is an address
 * several gateways may share (CGNAT): its sessions stay. */
static void sess_supersede(struct udp_srv *u, struct usess *s, uint64_t now)
{
	if (!u->o[s->owner].kid)
		return;
	for (uint32_t i = 0; i < u->scap; i++) {
		struct usess *o = &u->s[i];

		if (o != s && o->sid && o->owner == s->owner && now - o->last_ms >= 2000)
			sess_free(u, o);
	}
}

static void on_carrier(struct udp_srv *u, unsigned ci, uint8_t *buf, size_t len,
		       const struct sockaddr_storage *src, socklen_t srclen,
		       const struct in6_addr *local, uint64_t now)
{
	struct udpc_hdr h;
	struct usess *s;
	int n, r;

	if (udpc_parse_hdr(buf, len, UDPC_TO_CONC, &h, NULL) < 0) {
		/* A version 2 agent's HELLO (72 bytes) is told apart from
		 * garbage: its operator is told to upgrade it. */
		refuse(u, len == 72 && buf[0] == 0x21 ? UDPR_VERSION : UDPR_MALFORMED,
		       (const struct sockaddr *)src, now);
		return;
	}
	if (h.type == UDPC_HELLO) {
		on_hello(u, buf, ci, src, srclen, local, now);
		return;
	}
	s = sess_find(u, h.sid);
	if (!s) {
		u->st.refused[UDPR_UNKNOWN_SESSION]++;
		/* Sealed (a HELLO has its own branch): the tag ends it. */
		send_reset(u, ci, src, srclen, local, &h, buf + len - UDPC_TAG_LEN, now);
		return;
	}
	r = udpc_window_check(&s->win, h.pn);
	if (r < 0) {
		refuse(u, r == -EALREADY ? UDPR_REPLAY : UDPR_OLD, (const struct sockaddr *)src, now);
		return;
	}
	n = udpc_open(&s->rx, h.pn, buf, len);
	if (n < 0) {
		refuse(u, UDPR_BAD_TAG, (const struct sockaddr *)src, now);
		return;
	}
	udpc_window_mark(&s->win, h.pn);
	s->last_ms = now;
	if (!s->confirmed) {
		s->confirmed = true;
		if (s->hello_path < UDP_PATHS && !s->path[s->hello_path].last_ms) {
			s->path[s->hello_path] = s->hello_from;
			s->path[s->hello_path].last_ms = now;
		}
		sess_supersede(u, s, now);
	}
	if (h.type == UDPC_PING) {
		if (!ping_ok(s, now)) {
			refuse(u, UDPR_RATE, (const struct sockaddr *)src, now);
			return;
		}
		on_ping(u, s, buf + UDPC_HDR_LEN, ci, src, srclen, local, now);
		return;
	}
	/* The gateway's rate, counted after authentication so forged
	 * datagrams cannot spend an honest gateway's share. */
	if (!rate_ok(u, &u->o[s->owner], now)) {
		refuse(u, UDPR_RATE, (const struct sockaddr *)src, now);
		return;
	}
	on_data(u, s, buf + UDPC_HDR_LEN, (size_t)n, h.flags, (const struct sockaddr *)src, now);
}

/* A datagram from a gateway, in provided buffer b (res bytes, as a
 * multishot recvmsg writes it): its source, the address it was sent to
 * (packet info), then on_carrier. */
static void carrier_dgram(struct udp_srv *u, unsigned ci, uint8_t *b, int res, uint64_t now)
{
	struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(b, res, &u->car_msg);
	struct in6_addr local = IN6ADDR_ANY_INIT;
	struct sockaddr_storage src = { 0 };
	struct cmsghdr *c;

	if (!o)
		return;
	memcpy(&src, io_uring_recvmsg_name(o),
	       o->namelen < sizeof(src) ? o->namelen : sizeof(src));
	if (o->flags & MSG_TRUNC) {
		refuse(u, UDPR_MALFORMED, (struct sockaddr *)&src, now);
		return;
	}
	for (c = io_uring_recvmsg_cmsg_firsthdr(o, &u->car_msg); c;
	     c = io_uring_recvmsg_cmsg_nexthdr(o, &u->car_msg, c)) {
		if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			local = pi.ipi6_addr;
		} else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			convert_addr_from_v4(&local, pi.ipi_addr.s_addr);
		}
	}
	on_carrier(u, ci, io_uring_recvmsg_payload(o, &u->car_msg),
		   io_uring_recvmsg_payload_length(o, res, &u->car_msg), &src,
		   o->namelen < sizeof(src) ? o->namelen : sizeof(src), &local, now);
}

/* ---- from the Internet ---- */

/* The path for a flow's answers: the one it names if that is validated
 * and not moving (a PING from another address for it is being validated:
 * its NAT mapping or address likely changed), else its second, else the
 * session's validated path heard from last (a gateway's proven address
 * beats a lost answer: right after a new session, or while a path's new
 * address is being validated). */
static const struct upath *answer_path(const struct usess *s, uint8_t p0, uint8_t p1)
{
	const struct upath *best = NULL;

	if (p0 < UDP_PATHS && s->path[p0].last_ms && !s->path[p0].candlen)
		return &s->path[p0];
	if (p1 < UDP_PATHS && s->path[p1].last_ms && !s->path[p1].candlen)
		return &s->path[p1];
	for (unsigned i = 0; i < UDP_PATHS; i++)
		if (s->path[i].last_ms && (!best || s->path[i].last_ms > best->last_ms))
			best = &s->path[i];
	return best;
}

/* An answer for flow f from the Internet, in provided buffer b (res
 * bytes, as a multishot recvmsg writes it): sealed for the gateway and
 * sent by the path (or two) its latest datagram names. */
static void flow_dgram(struct udp_srv *u, struct uflow *f, uint8_t *b, int res, uint64_t now)
{
	struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(b, res, &u->flow_msg);
	struct usess *s = &u->s[f->sess];
	unsigned gen = atomic_load(&u->c->policy_gen);
	struct udpc_hdr h = { .type = UDPC_DATA, .sid = s->sid };
	struct udpc_data d = { .flow = f->id, .mode = f->mode, .path = f->p0 };
	struct sockaddr_storage src = { 0 };
	const struct upath *to;
	unsigned n;
	int len;

	if (!o)
		return;
	n = io_uring_recvmsg_payload_length(o, res, &u->flow_msg);
	if ((o->flags & MSG_TRUNC) || n > UDPC_MAX_PAYLOAD) {
		u->st.down_unsent++;
		return;
	}
	if (f->pgen != gen)
		flow_recheck(u, f, gen);
	memcpy(&src, io_uring_recvmsg_name(o), o->namelen < sizeof(src) ? o->namelen : sizeof(src));
	addr_to_in6((struct sockaddr *)&src, &d.addr, &d.port);
	if (!flow_knows(f, &d.addr)) {
		u->st.refused[UDPR_FILTERED]++;
		return;
	}
	to = answer_path(s, f->p0, f->p1);
	if (!to) {
		u->st.down_unsent++;    /* no validated path to send it by yet */
		return;
	}
	f->replied = true;
	f->last_ms = now;
	h.pn = ++s->pn_out;
	udpc_put_hdr(u->out, &h);
	udpc_put_data_inner(u->out + UDPC_HDR_LEN, &d);
	memcpy(u->out + UDPC_HDR_LEN + UDPC_DATA_INNER, io_uring_recvmsg_payload(o, &u->flow_msg), n);
	len = udpc_seal(&s->tx, h.pn, u->out, UDPC_HDR_LEN + UDPC_DATA_INNER + (size_t)n);
	if (len < 0)
		return;
	send_path(u, to, u->out, (size_t)len);
	/* Redundant: the same sealed bytes by the second path too; the
	 * gateway takes whichever comes first, once. */
	if (f->mode == UDPC_REDUNDANT && f->p1 < UDP_PATHS && &s->path[f->p1] != to &&
	    s->path[f->p1].last_ms && now - s->path[f->p1].last_ms < 5000)
		send_path(u, &s->path[f->p1], u->out, (size_t)len);
	u->st.dgrams_down++;
	u->st.bytes_down += n;
}

/* ---- expiry ---- */

static void sweep(struct udp_srv *u, uint64_t now)
{
	unsigned t1, t2, gen = atomic_load(&u->c->policy_gen);

	pthread_rwlock_rdlock(&u->c->live_lock);
	t1 = u->c->cfg.udp_timeout_s;
	t2 = u->c->cfg.udp_stream_timeout_s;
	pthread_rwlock_unlock(&u->c->live_lock);
	for (uint32_t i = 0; i < u->fcap; i++) {
		struct uflow *f = &u->f[i];

		if (f->fd >= 0 && now - f->last_ms >= (uint64_t)(f->assured ? t2 : t1) * 1000) {
			flow_free(u, f);
			u->st.flows_expired++;
		} else if (f->fd >= 0 && !f->armed) {
			arm_flow(u, f);   /* the ring had no room when it was made */
		}
	}
	for (uint32_t i = 0; i < u->scap; i++) {
		struct usess *s = &u->s[i];

		if (!s->sid)
			continue;
		if (s->gen != gen) {
			/* A reload: is its key (or client) still allowed? */
			s->gen = gen;
			if (!sess_still_allowed(u, s)) {
				log_info("udp: session %08x closed: its key or address is no longer "
					 "allowed", s->sid);
				sess_free(u, s);
				continue;
			}
		}
		if (now - s->last_ms >= UDP_SESSION_IDLE_MS) {
			if (log_ratelimit_ok(&u->rl_sess, now))
				log_info("udp: session %08x idle, closed", s->sid);
			sess_free(u, s);
		}
	}
}

/* One completion. Receives hand their provided buffer back once the
 * datagram is handled; a multishot receive that ends (no F_MORE: the
 * buffers ran out, or an error) is armed again, with more buffers when
 * they ran out. A flow's completions after it was freed carry an old
 * generation and only give their buffer back. */
static void on_cqe(struct udp_srv *u, const struct io_uring_cqe *cqe, uint64_t now)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	uint32_t slot = ring_ud_slot(ud);
	bool more = cqe->flags & IORING_CQE_F_MORE;
	bool has_buf = cqe->flags & IORING_CQE_F_BUFFER;
	uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
	uint8_t *b = has_buf ? ring_bufs_ptr(&u->rb, bid) : NULL;

	switch (ring_ud_op(ud)) {
	case UOP_SEND:
		ring_sendq_done(&u->sq, cqe);
		break;
	case UOP_CARRIER:
		if (slot >= u->ncar)
			break;
		if (cqe->res >= 0 && b)
			carrier_dgram(u, slot, b, cqe->res, now);
		if (!more) {
			u->car[slot].armed = false;
			if (cqe->res == -ENOBUFS)
				ring_bufs_grow(&u->rb, 32);
			/* Another error (no multishot receive in this kernel, ...)
			 * is tried again by the loop, each second, not at once. */
			if (cqe->res >= 0 || cqe->res == -ENOBUFS)
				arm_carrier(u, slot);
			else if (log_ratelimit_ok(&u->rl, now))
				log_errno(cqe->res, "udp: receiving on a carrier socket: %m");
		}
		break;
	case UOP_FLOW: {
		struct uflow *f = slot < u->fcap ? &u->f[slot] : NULL;

		if (!f || f->fd < 0 || f->gen != ring_ud_gen(ud))
			break;   /* freed (and perhaps reused) since */
		if (cqe->res >= 0 && b)
			flow_dgram(u, f, b, cqe->res, now);
		/* flow_dgram does not free flows: f is still f. */
		if (!more) {
			f->armed = false;
			if (cqe->res == -ENOBUFS)
				ring_bufs_grow(&u->rb, 32);
			if (cqe->res >= 0 || cqe->res == -ENOBUFS)
				arm_flow(u, f);   /* else the sweep, in a second */
		}
		break;
	}
	default:
		break;
	}
	if (b)
		ring_bufs_put(&u->rb, bid);
}

/* The thread: its ring (SINGLE_ISSUER: made here, used only here), the
 * receives, then completions until the concentrator stops, the expiry
 * sweep every second; the ring goes with the thread. */
static void *udp_main(void *arg)
{
	struct udp_srv *u = arg;
	uint64_t next_sweep = log_now_ms() + 1000;
	int r = ring_init_with_bufs(&u->ring, UDP_RING_ENTRIES, &u->rb, UDP_RB_GID, UDP_RB_COUNT,
				    UDP_RB_SIZE);

	u->start_result = r;
	if (r < 0) {
		sem_post(&u->started);
		return NULL;
	}
	u->ring_live = true;
	for (unsigned i = 0; i < u->ncar; i++)
		arm_carrier(u, i);
	sem_post(&u->started);
	while (!atomic_load(&u->c->stopping)) {
		struct __kernel_timespec ts = { .tv_nsec = 250 * 1000000 };
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		uint64_t now;

		/* The sends and re-arms made since, submitted with the wait. */
		io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
		now = log_now_ms();
		io_uring_for_each_cqe(&u->ring, head, cqe) {
			on_cqe(u, cqe, now);
			n++;
		}
		io_uring_cq_advance(&u->ring, n);
		if (now >= next_sweep) {
			sweep(u, now);
			for (unsigned i = 0; i < u->ncar; i++)
				if (!u->car[i].armed)
					arm_carrier(u, i);
			next_sweep = now + 1000;
		}
	}
	io_uring_submit(&u->ring);         /* closes the sweep queued, above all */
	u->ring_live = false;
	io_uring_queue_exit(&u->ring);     /* its requests first, then their buffers */
	ring_bufs_free(&u->ring, &u->rb);
	return NULL;
}

/* ---- start, stop, metrics ---- */

static struct udp_srv *srv_of(const struct conc *c)
{
	return c->udp;
}

static int carrier_open(const struct sockaddr_storage *a, socklen_t len)
{
	int fd = socket(a->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	int big = 4 << 20;

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
	/* A 1,472-byte LAN datagram is 1,528 bytes carried: over a 1,500-byte
	 * path it goes as two IP fragments rather than not at all. */
	setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &(int){ IP_PMTUDISC_DONT }, sizeof(int));
	if (a->ss_family == AF_INET6) {
		setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
		setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &(int){ IPV6_PMTUDISC_DONT },
			   sizeof(int));
	}
	if (bind(fd, (const struct sockaddr *)a, len) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

static void srv_free(struct udp_srv *u)
{
	if (!u)
		return;
	for (uint32_t i = 0; u->s && i < u->scap; i++)
		sess_free(u, &u->s[i]);
	for (unsigned i = 0; i < u->ncar; i++)
		close(u->car[i].fd);
	ring_sendq_free(&u->sq);
	free(u->s);
	free(u->o);
	free(u->sbucket);
	free(u->f);
	free(u->fbucket);
	free(u);
}

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n && p < (1u << 30))
		p <<= 1;
	return p;
}

int udp_start(struct conc *c)
{
	struct udp_srv *u;
	char a[ADDR_STRLEN];
	int r;

	if (!c->cfg.udp)
		return 0;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->c = c;
	u->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT(10, 10000);
	u->rl_sess = (struct log_ratelimit)LOG_RATELIMIT_INIT(20, 10000);
	if (hash_key_random(&u->hk) < 0 || udpcrypt_random(u->reset_rand, sizeof(u->reset_rand)) < 0) {
		free(u);
		return log_errno(-EIO, "udp: no random key for its tables");
	}
	u->fcap = c->cfg.udp_max_flows;
	u->scap = c->cfg.udp_max_flows / 4 + 64;
	u->fnb = pow2_at_least(u->fcap);
	u->snb = pow2_at_least(u->scap);
	u->s = calloc(u->scap, sizeof(*u->s));
	/* Owners in use never outnumber sessions: one more record means a
	 * new owner always finds one (and then a session slot may make way). */
	u->o = calloc(u->scap + 1, sizeof(*u->o));
	u->sbucket = calloc(u->snb, sizeof(*u->sbucket));
	u->f = calloc(u->fcap, sizeof(*u->f));
	u->fbucket = calloc(u->fnb, sizeof(*u->fbucket));
	if (!u->s || !u->o || !u->sbucket || !u->f || !u->fbucket ||
	    ring_sendq_init(&u->sq, UDP_SEND_SLOTS, UOP_SEND) < 0) {
		srv_free(u);
		return log_errno(-ENOMEM, "udp: out of memory");
	}
	for (uint32_t i = 0; i < u->fcap; i++) {
		u->f[i].fd = -1;
		u->f[i].free_next = i + 2 <= u->fcap ? i + 2 : 0;
	}
	u->ffree = u->fcap ? 1 : 0;
	/* The box's identity in its reset tokens: its name, its own address. */
	u->identlen = strnlen(c->cfg.box, sizeof(c->cfg.box));
	memcpy(u->ident, c->cfg.box, u->identlen);
	if (c->cfg.have_join_addr) {
		memcpy(u->ident + u->identlen, &c->cfg.join_addr, sizeof(c->cfg.join_addr));
		u->identlen += sizeof(c->cfg.join_addr);
	}
	/* Gateways send a session's datagrams to the join address once the
	 * ACCEPT names it: a carrier socket must take them there. */
	if (c->cfg.have_join_addr) {
		bool covered = false;
		char ja[ADDR_STRLEN];

		for (unsigned i = 0; i < c->cfg.nlisten && !covered; i++) {
			struct in6_addr la;

			addr_to_in6((const struct sockaddr *)&c->cfg.listen[i], &la, NULL);
			covered = !memcmp(&la, &c->cfg.join_addr, sizeof(la)) ||
				  (c->cfg.listen[i].ss_family == AF_INET6 &&
				   IN6_IS_ADDR_UNSPECIFIED(&la)) ||
				  (c->cfg.listen[i].ss_family == AF_INET &&
				   addr_is_v4mapped(&c->cfg.join_addr) && !memcmp(&la.s6_addr[12], "\0\0\0\0", 4));
		}
		if (!covered) {
			srv_free(u);
			log_error("udp: no listen address covers the join address %s: gateways "
				  "would send their UDP there (listen on it, or on [::])",
				  addr_format_in6(&c->cfg.join_addr, 0, ja));
			return -EINVAL;
		}
	}
	/* What multishot receives leave room for before each payload. */
	u->car_msg.msg_namelen = sizeof(struct sockaddr_storage);
	u->car_msg.msg_controllen = UDP_CM_LEN;
	u->flow_msg.msg_namelen = sizeof(struct sockaddr_storage);
	for (unsigned i = 0; i < c->cfg.nlisten; i++) {
		int fd = carrier_open(&c->cfg.listen[i], c->cfg.listen_len[i]);

		if (fd < 0) {
			srv_free(u);
			return log_errno(fd, "udp: cannot bind %s: %m",
					 addr_format((struct sockaddr *)&c->cfg.listen[i], a));
		}
		u->car[u->ncar].fd = fd;
		u->car[u->ncar++].family = c->cfg.listen[i].ss_family;
	}
	sem_init(&u->started, 0, 0);
	c->udp = u;
	r = pthread_create(&u->thread, NULL, udp_main, u);
	if (r) {
		c->udp = NULL;
		sem_destroy(&u->started);
		srv_free(u);
		return log_errno(-r, "udp: cannot start its thread: %m");
	}
	sem_wait(&u->started);
	sem_destroy(&u->started);
	if (u->start_result < 0) {
		r = u->start_result;
		pthread_join(u->thread, NULL);
		c->udp = NULL;
		srv_free(u);
		return log_errno(r, "udp: io_uring: %m%s", ring_setup_why(r));
	}
	log_info("udp: carrying gateways' UDP on the listen ports (%u flows at most, %u per "
		 "gateway)", u->fcap, c->cfg.udp_per_gateway);
	return 0;
}

void udp_stop(struct conc *c)
{
	struct udp_srv *u = c->udp;

	if (!u)
		return;
	pthread_join(u->thread, NULL);   /* c->stopping is set: within 250 ms */
	c->udp = NULL;
	srv_free(u);
}

void udp_render_metrics(const struct conc *c, struct mbuf *b)
{
	const struct udp_srv *u = srv_of(c);
	const struct udp_stats *s;
	char l[64];

	if (!u)
		return;
	s = &u->st;
	metrics_one(b, "mptcp_concentrator_udp_sessions_active", "gauge",
		    "Gateways' UDP carrier sessions open.", s->sessions_active);
	metrics_one(b, "mptcp_concentrator_udp_sessions_total", "counter",
		    "UDP carrier sessions opened.", s->sessions_total);
	metrics_one(b, "mptcp_concentrator_udp_flows_active", "gauge",
		    "LAN UDP flows (sources) with a socket here.", s->flows_active);
	metrics_head(b, "mptcp_concentrator_udp_flows_total", "counter",
		     "LAN UDP flows opened, by the steering mode of their first datagram.");
	for (unsigned m = 0; m < UDPC_MODE_MAX; m++) {
		snprintf(l, sizeof(l), "mode=\"%s\"", udpc_mode_name(m));
		metrics_u64(b, "mptcp_concentrator_udp_flows_total", l, s->flows_by_mode[m]);
	}
	metrics_one(b, "mptcp_concentrator_udp_flows_expired_total", "counter",
		    "LAN UDP flows closed for idleness.", s->flows_expired);
	metrics_head(b, "mptcp_concentrator_udp_datagrams_total", "counter",
		     "LAN datagrams carried, by direction.");
	metrics_u64(b, "mptcp_concentrator_udp_datagrams_total", "direction=\"up\"", s->dgrams_up);
	metrics_u64(b, "mptcp_concentrator_udp_datagrams_total", "direction=\"down\"", s->dgrams_down);
	metrics_head(b, "mptcp_concentrator_udp_bytes_total", "counter",
		     "LAN datagram bytes carried (payload), by direction.");
	metrics_u64(b, "mptcp_concentrator_udp_bytes_total", "direction=\"up\"", s->bytes_up);
	metrics_u64(b, "mptcp_concentrator_udp_bytes_total", "direction=\"down\"", s->bytes_down);
	metrics_one(b, "mptcp_concentrator_udp_pings_total", "counter",
		    "Path pings answered.", s->pings);
	metrics_one(b, "mptcp_concentrator_udp_down_unsent_total", "counter",
		    "Answers from the Internet not sent on: no validated path yet, or too large.",
		    s->down_unsent);
	metrics_one(b, "mptcp_concentrator_udp_send_errors_total", "counter",
		    "Carrier and flow datagrams the kernel refused to send.", u->sq.errors);
	metrics_one(b, "mptcp_concentrator_udp_sends_direct_total", "counter",
		    "Datagrams sent at once instead of queued on the ring (too large for a "
		    "send slot, or every slot in flight).", u->sq.direct);
	metrics_one(b, "mptcp_concentrator_udp_resets_sent_total", "counter",
		    "RESETs sent for datagrams of unknown sessions (at most 20 a second per /24 or /56).",
		    s->resets_sent);
	metrics_head(b, "mptcp_concentrator_udp_refused_total", "counter",
		     "Carrier datagrams dropped, by reason (replay: also redundant copies).");
	for (unsigned k = 0; k < UDPR_MAX; k++) {
		snprintf(l, sizeof(l), "reason=\"%s\"", udp_refusal_name(k));
		metrics_u64(b, "mptcp_concentrator_udp_refused_total", l, s->refused[k]);
	}
}
