/* One intercepted LAN connection, from accept to relaying:
 *
 *   accept   the LAN client's connection, delivered by TPROXY; its local
 *            address (getsockname) is where the client wanted to go
 *   SYN      an MPTCP socket to the concentrator; sendto(MSG_FASTOPEN) puts
 *            the Convert message (header + Connect) into the SYN (0-RTT):
 *            the concentrator connects upstream while our handshake ends
 *   POLL     wait until connected (short timeout): a concentrator that does
 *            not answer is tried no longer than --connect-timeout
 *   SEND     the message, if the SYN could not carry it
 *   REPLY    read the Convert reply (bytes behind it are the server's first
 *            bytes and go to the LAN client before relaying starts)
 *   -> relay_start(): the client's bytes follow, only now
 *
 * Not one byte of the client's goes before the reply, neither in the SYN
 * nor right after the handshake: the kernel's MPTCP (6.18) then sometimes
 * delivers the concentrator the right length with the wrong bytes once
 * subflows join (paths.sh "busy agent"; ROADMAP). The reply comes after
 * the concentrator's kernel has the connection's keys; from then on it has
 * never shown. The message itself (consumed by the concentrator, never
 * sent on) still rides in the SYN, so the upstream connect overlaps our
 * handshake.
 *
 * A concentrator that cannot be reached is skipped for the next one; when
 * none can, the flow falls back to a direct connection (default) or is reset
 * (--fallback reset). An Error reply resets the LAN connection, as the closest
 * a transparent proxy can come to what a direct connection would have seen.
 * Once a concentrator has accepted the connection, failing over would send
 * the client's first bytes twice, so a missing reply resets instead. */
#include "agent.h"
#include "ctmark.h"
#include "sock.h"

#include <errno.h>
#include <ifaddrs.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum phase {
	PH_POLL = 1,
	PH_SEND,
	PH_REPLY,
	PH_LAN_SEND,
	PH_DIRECT,
};

struct flow {
	uint64_t since_ms;
	struct sockaddr_storage dst;
	socklen_t dst_len;
	unsigned conc_idx;            /* concentrator being tried */
	int cls;                      /* its class (pin, no-metered) in cfg.cls, -1 none */
	struct in6_addr tried[PATHS_MAX]; /* path addresses tried with this concentrator */
	unsigned ntried;
	uint32_t msg_len;             /* Convert message length in out */
	uint32_t out_off;             /* how much of out has been sent */
	uint32_t in_len;              /* reply bytes received */
	uint32_t lan_off, lan_len;    /* server bytes behind the reply */
	struct __kernel_timespec ts;
	uint32_t cookie_at;           /* Cookie value in out, 0 = none */
	bool vs_offered;              /* the message in out offers a verified stream */
	uint8_t out[128];
	uint8_t in[CONVERT_MAX_LEN + 2048];
};

static struct flow *F(struct relay *r)
{
	return r->priv;
}

static void try_concentrator(struct agent_worker *aw, struct relay *r);

/* Whether a flow of class act may use a line (its interface, path name,
 * whether metered, its probes' round trip and the best line's, 0 = none
 * known). */
bool class_allows(const struct class_act *act, const char *ifname, const char *name, bool meter,
		  uint32_t rtt_us, uint32_t best_us)
{
	/* RFC 8157's idea: a latency-sensitive class stays off a line much
	 * slower than the best (one not yet measured is taken as slow while
	 * another one is measured). */
	if (act->rtt_ms && best_us && (!rtt_us || rtt_us > best_us + act->rtt_ms * 1000u))
		return false;
	if (act->action == CLASS_NO_METERED)
		return !meter;
	if (act->action == CLASS_CARRY)
		return true;
	for (unsigned i = 0; i < act->nlines; i++)
		if (!strcmp(act->lines[i], ifname) || !strcmp(act->lines[i], name))
			return true;
	return false;
}

/* The best live path (carrier and probes say so) not yet tried in this
 * round, and that the flow's class allows, into *ret. false when every
 * such path has been tried, or there are no paths (then the main table
 * decides, once: not for a flow of a class). */
static bool pick_source(struct agent_worker *aw, struct flow *f, int family,
			struct in6_addr *ret)
{
	struct path_src src[PATHS_MAX];
	unsigned n = paths_sources_ex(&aw->a->paths, family, src, PATHS_MAX);
	uint32_t best = 0;

	for (unsigned i = 0; i < n; i++)
		if (src[i].rtt_us && (!best || src[i].rtt_us < best))
			best = src[i].rtt_us;
	for (unsigned i = 0; i < n; i++) {
		bool seen = false;

		if (f->cls >= 0 &&
		    !class_allows(&aw->cfg.cls[f->cls], src[i].ifname, src[i].name, src[i].meter,
				  src[i].rtt_us, best))
			continue;
		for (unsigned k = 0; k < f->ntried; k++)
			if (!memcmp(&f->tried[k], &src[i].addr, sizeof(src[i].addr)))
				seen = true;
		if (!seen) {
			*ret = src[i].addr;
			return true;
		}
	}
	return false;
}

/* Start on a live path, not wherever the main table's default route points:
 * a path whose far side died keeps its carrier and its default route.
 * Whether it is bound to one (a class's flow must be). */
static bool bind_source(struct agent_worker *aw, struct flow *f, int fd, int family,
			bool record)
{
	struct sockaddr_storage ss;
	struct in6_addr src;
	socklen_t sl;

	if (!pick_source(aw, f, family, &src))
		return false;
	if (record && f->ntried < PATHS_MAX)
		f->tried[f->ntried++] = src;
	sl = addr_from_in6(&src, 0, &ss);
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0) {
		log_debug("bind to path address: %m");
		return false;
	}
	if (log_get_level() >= LOG_DEBUG) {
		char a[ADDR_STRLEN];

		log_debug("flow starts from %s", addr_format_in6(&src, 0, a));
	}
	return true;
}

/* A class's flow: its first subflow's address and port told to the path
 * manager, which keeps its joins to the lines the class allows. */
static int class_register(struct agent_worker *aw, struct flow *f, int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct in6_addr a;
	uint16_t port;

	if (!aw->a->paths.upm.open)
		return 0;  /* endpoints agent only (settings.c checks) */
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 || addr_to_in6((struct sockaddr *)&ss, &a, &port) < 0)
		return -errno;
	return upm_class_pending(&aw->a->paths.upm, &a, port, f->cls, aw->rw.now_ms);
}

/* A keyed request covers the address the concentrator will see, so it must
 * be known before the SYN: when no path bound fd, bind it to the source
 * the routing table picks for the concentrator (what connect() would). */
static void bind_route_source(int fd, const struct sockaddr_storage *to, socklen_t tolen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int u;

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    ((ss.ss_family == AF_INET && ((struct sockaddr_in *)&ss)->sin_addr.s_addr) ||
	     (ss.ss_family == AF_INET6 &&
	      !IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr))))
		return;  /* bound already */
	u = socket(to->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (u < 0)
		return;
	sl = sizeof(ss);
	if (connect(u, (const struct sockaddr *)to, tolen) == 0 &&
	    getsockname(u, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			((struct sockaddr_in *)&ss)->sin_port = 0;
		else
			((struct sockaddr_in6 *)&ss)->sin6_port = 0;
		if (bind(fd, (struct sockaddr *)&ss, sl) < 0)
			log_debug("bind to the route's source: %m");
	}
	close(u);
}

/* The current concentrator failed from the current path: another live path
 * not tried yet (the list may have changed meanwhile, as probes declare a
 * path dead), then the next concentrator. */
static void next_attempt(struct agent_worker *aw, struct relay *r)
{
	struct flow *f = F(r);
	struct in6_addr src;

	if (f->ntried && pick_source(aw, f, aw->cfg.conc[f->conc_idx].ss_family, &src))
		return try_concentrator(aw, r);
	f->ntried = 0;
	f->conc_idx++;
	try_concentrator(aw, r);
}
static void give_up(struct agent_worker *aw, struct relay *r, const char *why);

/* tmpl as op on flow r, linked to a timeout of ms (both or neither). */
static bool submit_with_timeout(struct relay_worker *w, struct relay *r,
				const struct io_uring_sqe *tmpl, unsigned op, unsigned ms)
{
	struct flow *f = F(r);

	f->ts.tv_sec = ms / 1000;
	f->ts.tv_nsec = (long long)(ms % 1000) * 1000000;
	return relay_submit_timed(w, r, tmpl, op, AOP_TIMEOUT, &f->ts) == 0;
}

static void log_flow(struct agent_worker *aw, struct relay *r, const char *what)
{
	char a[ADDR_STRLEN], d[ADDR_STRLEN];

	if (!log_ratelimit_ok(&aw->rl, aw->rw.now_ms))
		return;
	log_info("%s -> %s: %s", addr_format_in6(&r->peer, 0, a),
		 addr_format((struct sockaddr *)&F(r)->dst, d), what);
}

static void arm_reply(struct agent_worker *aw, struct relay *r)
{
	struct relay_worker *w = &aw->rw;
	struct flow *f = F(r);
	struct io_uring_sqe tmpl;

	uint32_t want = sizeof(f->in) - f->in_len;

	if (f->vs_offered) {
		/* The reply and not a byte more: what follows it may be
		 * records, which the relay reads. Its header first, then the
		 * length the header gives. */
		uint32_t total = f->in_len < CONVERT_HDR_LEN ? CONVERT_HDR_LEN :
				 (uint32_t)f->in[1] * CONVERT_WORD;

		want = total > f->in_len ? total - f->in_len : 1;
	}
	memset(&tmpl, 0, sizeof(tmpl));
	io_uring_prep_recv(&tmpl, r->fd[1], f->in + f->in_len, want, 0);
	if (!submit_with_timeout(w, r, &tmpl, AOP_REPLY, aw->cfg.reply_timeout_ms))
		relay_close(w, r, RELAY_END_RESET, true);
	r->phase = PH_REPLY;
}

static void arm_send(struct agent_worker *aw, struct relay *r, unsigned op,
		     int fd, const uint8_t *p, uint32_t len)
{
	struct io_uring_sqe *sqe = relay_sqe(&aw->rw, r, op);

	if (!sqe) {
		relay_close(&aw->rw, r, RELAY_END_RESET, true);
		return;
	}
	io_uring_prep_send(sqe, fd, p, len, MSG_NOSIGNAL);
}

static void start_relay(struct agent_worker *aw, struct relay *r)
{
	free(r->priv);
	r->priv = NULL;
	r->phase = 0;
	relay_start(&aw->rw, r);
}

/* The Convert message for this flow into out: Connect, a Cookie to fill in
 * per attempt (it covers the source address) when keyed, and the offer of
 * a verified stream when vs. */
static int build_message(struct agent_worker *aw, struct relay *r, bool vs)
{
	struct flow *f = F(r);
	struct convert_writer cw;
	int len;

	convert_writer_init(&cw, f->out, sizeof(f->out));
	convert_put_connect(&cw, &r->far, r->far_port, NULL, 0);
	f->cookie_at = 0;
	if (aw->cfg.keyed) {
		static const uint8_t zero[COOKIE_LEN];

		f->cookie_at = (uint32_t)cw.len + 4;
		convert_put_cookie(&cw, zero, sizeof(zero));
	}
	if (vs)
		convert_put_verified(&cw, relay_vs_max(&aw->rw));
	len = convert_writer_finish(&cw);
	if (len < 0)
		return len;
	f->msg_len = (uint32_t)len;
	f->vs_offered = vs;
	return 0;
}

/* Open an MPTCP connection to concentrator conc_idx with the Convert
 * message in its SYN. */
static void try_concentrator(struct agent_worker *aw, struct relay *r)
{
	struct relay_worker *w = &aw->rw;
	const struct agent_config *cfg = &aw->cfg;
	struct flow *f = F(r);
	const struct sockaddr_storage *ca;
	struct io_uring_sqe tmpl;
	ssize_t n;
	int fd;

	if (r->fd[1] >= 0) {
		close(r->fd[1]);
		r->fd[1] = -1;
	}
	if (f->conc_idx >= cfg->nconc) {
		give_up(aw, r, "no concentrator reachable");
		return;
	}
	if (f->vs_offered && f->conc_idx < AGENT_MAX_CONC &&
	    atomic_load_explicit(&aw->a->conc_plain[f->conc_idx], memory_order_relaxed) &&
	    build_message(aw, r, false) < 0) {
		relay_close(w, r, RELAY_END_RESET, true);
		return;
	}
	ca = &cfg->conc[f->conc_idx];
	fd = socket(ca->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_MPTCP);
	if (fd < 0) {
		f->conc_idx = cfg->nconc;
		give_up(aw, r, "cannot create an MPTCP socket");
		return;
	}
	sock_nodelay(fd);
	sock_keepalive(fd, cfg->keepalive_s);
	if (cfg->rcvbuf) {
		/* Downloads arrive over several paths whose queues differ by
		 * tens of ms; autotuning starts the MPTCP window at 128 KiB
		 * and the concentrator overruns it (MPTcpExtNoDSSInWindow),
		 * each overrun costing a ~200 ms MPTCP retransmission. A fixed
		 * buffer from the start avoids that. FORCE: rmem_max is small. */
		int sz = (int)cfg->rcvbuf;

		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	sock_congestion(fd, cfg->congestion);
	r->fd[1] = fd;
	f->out_off = 0;
	f->in_len = 0;
	if (!bind_source(aw, f, fd, ca->ss_family, true) && f->cls >= 0) {
		/* Not wherever the main table points: the class says where. */
		aw->n.class_no_line++;
		log_flow(aw, r, "no line its class allows is up: reset");
		relay_close(w, r, RELAY_END_REFUSED, true);
		return;
	}
	if (f->cls >= 0 && class_register(aw, f, fd) < 0) {
		aw->n.class_no_line++;
		log_flow(aw, r, "too many flows of classes starting at once: reset");
		relay_close(w, r, RELAY_END_REFUSED, true);
		return;
	}
	if (f->cookie_at) {
		struct cookie_dest d = { .port = r->far_port, .addr = r->far };

		if (!cfg->key.nat)
			bind_route_source(fd, ca, cfg->conc_len[f->conc_idx]);
		paths_cookie(&cfg->key, fd, &d, f->out + f->cookie_at);
	}

	/* With net.ipv4.tcp_fastopen client bits set this sends a SYN with
	 * data; without a cookie or TFO it sends a plain SYN and returns
	 * EINPROGRESS, and the message follows the handshake. The message
	 * only: the client's bytes wait for the reply (top of file). */
	if (cfg->fast_open && aw->a->mptcp_tfo)
		n = sendto(fd, f->out, f->msg_len, MSG_FASTOPEN | MSG_NOSIGNAL,
			   (const struct sockaddr *)ca, cfg->conc_len[f->conc_idx]);
	else  /* off, or no TFO for MPTCP (6.1): the message after the handshake */
		n = connect(fd, (const struct sockaddr *)ca, cfg->conc_len[f->conc_idx]) < 0 ? -1 : 0;
	if (n >= 0) {
		f->out_off = (uint32_t)n;
	} else if (errno != EINPROGRESS && errno != EAGAIN) {
		next_attempt(aw, r);
		return;
	}
	memset(&tmpl, 0, sizeof(tmpl));
	io_uring_prep_poll_add(&tmpl, fd, POLLOUT);
	if (!submit_with_timeout(w, r, &tmpl, AOP_CONN_POLL, cfg->connect_timeout_ms))
		relay_close(w, r, RELAY_END_RESET, true);
	r->phase = PH_POLL;
}

/* Without --path the main table decides where flows leave: our line is
 * the interface the route to a concentrator leaves by (one of family's
 * when there is one: then *src is the address to start from). */
static bool route_wan(const struct agent_config *cfg, int family, struct in6_addr *src,
		      bool *have_src, char ifname[IFNAMSIZ])
{
	for (int pass = 0; pass < 2; pass++)
		for (unsigned k = 0; k < cfg->nconc; k++) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			struct ifaddrs *ifa, *i;
			struct in6_addr a;
			bool found = false;
			int u;

			if ((cfg->conc[k].ss_family == family) != (pass == 0))
				continue;
			u = socket(cfg->conc[k].ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
			if (u < 0)
				continue;
			if (connect(u, (const struct sockaddr *)&cfg->conc[k], cfg->conc_len[k]) < 0 ||
			    getsockname(u, (struct sockaddr *)&ss, &sl) < 0 ||
			    addr_to_in6((struct sockaddr *)&ss, &a, NULL) < 0) {
				close(u);
				continue;
			}
			close(u);
			if (getifaddrs(&ifa) < 0)
				continue;
			for (i = ifa; i && !found; i = i->ifa_next) {
				struct in6_addr x;

				if (i->ifa_addr && (i->ifa_addr->sa_family == AF_INET ||
						    i->ifa_addr->sa_family == AF_INET6) &&
				    addr_to_in6(i->ifa_addr, &x, NULL) == 0 && !memcmp(&x, &a, sizeof(x))) {
					snprintf(ifname, IFNAMSIZ, "%s", i->ifa_name);
					found = true;
				}
			}
			freeifaddrs(ifa);
			if (found) {
				*src = a;
				*have_src = pass == 0;
				return true;
			}
		}
	return false;
}

/* Not for the router's own fallback connection, beyond addr_is_special:
 * the benchmarking and protocol-assignment ranges (where CPE and ISP
 * equipment sits), and whatever is on-link on our line's interface (the
 * modem, the ISP's neighbours), which the LAN reaches only through the
 * router's forwarding, and its firewall. */
static bool fallback_forbidden(const struct in6_addr *dst, const char *ifname)
{
	static const char *const extra[] = { "198.18.0.0/15", "192.0.0.0/24" };
	struct ifaddrs *ifa, *i;
	bool on_link = false;

	if (addr_is_special(dst))
		return true;
	for (unsigned k = 0; k < sizeof(extra) / sizeof(extra[0]); k++) {
		struct addr_prefix p;

		if (addr_parse_prefix(extra[k], &p) == 0 && addr_prefix_match(&p, dst))
			return true;
	}
	if (getifaddrs(&ifa) < 0)
		return true;  /* cannot tell: not from the router's own address */
	for (i = ifa; i && !on_link; i = i->ifa_next) {
		struct addr_prefix p;
		struct in6_addr mask;
		unsigned bits = 0;

		if (!i->ifa_addr || !i->ifa_netmask || strcmp(i->ifa_name, ifname) ||
		    (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6) ||
		    addr_to_in6(i->ifa_addr, &p.addr, NULL) < 0 ||
		    addr_to_in6(i->ifa_netmask, &mask, NULL) < 0)
			continue;
		for (unsigned b = i->ifa_addr->sa_family == AF_INET ? 12 : 0; b < 16; b++)
			bits += (unsigned)__builtin_popcount(mask.s6_addr[b]);
		p.len = (uint8_t)(bits + (i->ifa_addr->sa_family == AF_INET ? 96 : 0));
		on_link = addr_prefix_match(&p, dst);
	}
	freeifaddrs(ifa);
	return on_link;
}

/* No concentrator: connect to the destination directly, or reset. */
static void give_up(struct agent_worker *aw, struct relay *r, const char *why)
{
	struct relay_worker *w = &aw->rw;
	const struct agent_config *cfg = &aw->cfg;
	struct flow *f = F(r);
	struct io_uring_sqe tmpl;
	struct in6_addr dst, src;
	char ifname[IFNAMSIZ];
	bool have_src = false, have_if;
	int fd;

	if (r->fd[1] >= 0) {
		close(r->fd[1]);
		r->fd[1] = -1;
	}
	/* A class's flow never goes direct: that way out is whichever line
	 * comes first, not one its class allows. */
	if (cfg->fallback == FALLBACK_RESET || f->cls >= 0) {
		aw->n.failed++;
		log_flow(aw, r, why);
		relay_close(w, r, RELAY_END_REFUSED, true);
		return;
	}
	/* The direct connection is the router's own, which its forwarding
	 * firewall never sees: it may go only where a LAN device's forwarded
	 * packets would be let through anyway, the public Internet through one
	 * of our own lines. Not to a private or special range (a management
	 * network, the modem, a VPN's), and only out of a WAN path's interface
	 * (so no route to a VPN or another LAN takes it). */
	if (aw->a->paths.n) {
		struct in6_addr other;

		have_src = paths_wan_source(&aw->a->paths, f->dst.ss_family, &src, ifname);
		have_if = have_src || paths_wan_source(&aw->a->paths, f->dst.ss_family == AF_INET ?
						       AF_INET6 : AF_INET, &other, ifname);
	} else {
		have_if = route_wan(cfg, f->dst.ss_family, &src, &have_src, ifname);
	}
	if (addr_to_in6((struct sockaddr *)&f->dst, &dst, NULL) < 0 || !have_if ||
	    fallback_forbidden(&dst, ifname)) {
		aw->n.fallback_refused++;
		log_flow(aw, r, !have_if ? "no direct fallback: none of our own lines is up" :
			 "no direct fallback: the destination is not the public Internet "
			 "beyond our line");
		relay_close(w, r, RELAY_END_REFUSED, true);
		return;
	}
	fd = socket(f->dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0) {
		aw->n.failed++;
		relay_close(w, r, RELAY_END_REFUSED, true);
		return;
	}
	sock_nodelay(fd);
	sock_keepalive(fd, cfg->keepalive_s);
	{
		struct sockaddr_storage ss;
		socklen_t sl = addr_from_in6(&src, 0, &ss);

		if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname, (socklen_t)strlen(ifname)) < 0 ||
		    (have_src && bind(fd, (struct sockaddr *)&ss, sl) < 0)) {
			close(fd);
			aw->n.failed++;
			log_flow(aw, r, "direct fallback: cannot bind to our line");
			relay_close(w, r, RELAY_END_REFUSED, true);
			return;
		}
	}
	r->fd[1] = fd;
	r->flags |= AGENT_FLOW_DIRECT;
	memset(&tmpl, 0, sizeof(tmpl));
	io_uring_prep_connect(&tmpl, fd, (struct sockaddr *)&f->dst, f->dst_len);
	if (!submit_with_timeout(w, r, &tmpl, AOP_DIRECT_CONNECT, cfg->reply_timeout_ms))
		relay_close(w, r, RELAY_END_RESET, true);
	r->phase = PH_DIRECT;
}

static void on_poll(struct agent_worker *aw, struct relay *r,
		    const struct io_uring_cqe *cqe)
{
	struct flow *f = F(r);
	int err = 0;
	socklen_t l = sizeof(err);

	if (cqe->res < 0 || (cqe->res & (POLLERR | POLLHUP)) ||
	    getsockopt(r->fd[1], SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
		log_debug("concentrator %u not reached (poll %d, error %d)", f->conc_idx, cqe->res, err);
		if (f->conc_idx < AGENT_MAX_CONC) {
			aw->n.conc_failed[f->conc_idx]++;
			atomic_store_explicit(&aw->a->conc_up[f->conc_idx], 0, memory_order_relaxed);
		}
		/* Refused, unreachable or timed out: next path, next concentrator. */
		next_attempt(aw, r);
		return;
	}
	if (f->out_off < f->msg_len) {
		r->phase = PH_SEND;
		arm_send(aw, r, AOP_SEND, r->fd[1], f->out + f->out_off,
			 f->msg_len - f->out_off);
		return;
	}
	arm_reply(aw, r);
}

/* The connection to the concentrator fell back to plain TCP: this flow has
 * one path. The usual cause is a stale TFO cookie (tfocache.c), so the
 * kernel forgets it, and the next flow asks for a new one. */
static void fell_back(struct agent_worker *aw, struct relay *r)
{
	const struct sockaddr_storage *ca = &aw->cfg.conc[F(r)->conc_idx];
	struct in6_addr a;
	int e;

	aw->n.fell_back++;
	if (addr_to_in6((const struct sockaddr *)ca, &a, NULL) < 0)
		return;
	e = tfo_cookie_forget(&a);
	if (log_ratelimit_ok(&aw->rl, aw->rw.now_ms)) {
		char s[ADDR_STRLEN];

		if (e < 0)
			log_warn("the connection to %s fell back to TCP (one path); "
				 "cannot forget its TFO cookie: %s", addr_format_in6(&a, 0, s), strerror(-e));
		else
			log_info("the connection to %s fell back to TCP (one path): its TFO cookie "
				 "is forgotten, the next flow asks for a new one", addr_format_in6(&a, 0, s));
	}
}

static void on_reply(struct agent_worker *aw, struct relay *r,
		     const struct io_uring_cqe *cqe)
{
	struct relay_worker *w = &aw->rw;
	struct flow *f = F(r);
	struct convert_decode_opts o = { .role = CONVERT_FROM_CONVERTER };
	struct convert_msg m;
	struct convert_diag d;
	int n;

	log_debug("reply: %d bytes", cqe->res);
	if (cqe->res <= 0) {
		/* Connected, then closed or silent: the concentrator may already
		 * have passed the client's first bytes on, so no failover. */
		aw->n.failed++;
		log_flow(aw, r, cqe->res == -ECANCELED ? "no Convert reply in time" :
			 "concentrator closed before replying");
		relay_close(w, r, RELAY_END_RESET, true);
		return;
	}
	f->in_len += (uint32_t)cqe->res;
	if (cqe->res == 0)
		o.flags = CONVERT_F_EOF;
	n = convert_decode(f->in, f->in_len, &o, &m, &d);
	if (n == 0) {
		arm_reply(aw, r);
		return;
	}
	if (n < 0) {
		aw->n.failed++;
		log_flow(aw, r, d.reason);
		relay_close(w, r, RELAY_END_RESET, true);
		return;
	}
	if ((m.present & CONVERT_HAS_ERROR) && f->vs_offered &&
	    (m.error.code == CONVERT_E_MALFORMED || m.error.code == CONVERT_E_UNSUPPORTED_MESSAGE) &&
	    f->conc_idx < AGENT_MAX_CONC) {
		/* A converter that does not know our TLV (any RFC 8803 one
		 * but ours) answers Unsupported Message naming it, or calls
		 * the message malformed: ask again without it, and stop
		 * offering it there (until a reload). No byte of the client's
		 * was sent: it waits for the reply. */
		if (!atomic_exchange(&aw->a->conc_plain[f->conc_idx], true))
			log_warn("concentrator %u refused our offer of a verified stream (error %u %s): "
				 "plain RFC 8803 streams to it from now on", f->conc_idx + 1,
				 m.error.code, convert_error_name(m.error.code));
		if (build_message(aw, r, false) < 0) {
			relay_close(w, r, RELAY_END_RESET, true);
			return;
		}
		f->ntried = 0;
		f->in_len = 0;
		try_concentrator(aw, r);
		return;
	}
	if (m.present & CONVERT_HAS_ERROR) {
		char why[64];

		aw->n.conc_errors[m.error.code]++;
		snprintf(why, sizeof(why), "concentrator answered error %u %s",
			 m.error.code, convert_error_name(m.error.code));
		log_flow(aw, r, why);
		/* 64-95: the concentrator's own trouble (resources, network),
		 * not the destination's or the request's: the next
		 * concentrator, then --fallback, as if it were unreachable. */
		if (m.error.code >= CONVERT_E_RESOURCE_EXCEEDED &&
		    m.error.code < CONVERT_E_CONNECTION_RESET) {
			f->ntried = 0;
			f->conc_idx++;
			try_concentrator(aw, r);
			return;
		}
		relay_close(w, r, RELAY_END_REFUSED, true);
		return;
	}
	if (!sock_is_mptcp(r->fd[1]))
		fell_back(aw, r);
	if (f->conc_idx < AGENT_MAX_CONC) {
		aw->n.conc_ok[f->conc_idx]++;
		atomic_store_explicit(&aw->a->conc_up[f->conc_idx], 1, memory_order_relaxed);
	}
	aw->n.via_concentrator++;
	if (f->vs_offered && (m.present & CONVERT_HAS_VERIFIED)) {
		/* Agreed: records both ways from here (the reply was read to
		 * its last byte, so nothing of them is in f->in). */
		if (relay_verify(w, r, 1, m.verified.max_record) < 0) {
			relay_close(w, r, RELAY_END_RESET, true);
			return;
		}
	} else if (m.present & CONVERT_HAS_VERIFIED) {
		aw->n.failed++;
		log_flow(aw, r, "the concentrator agreed to a verified stream we did not offer");
		relay_close(w, r, RELAY_END_RESET, true);
		return;
	}
	if ((uint32_t)n < f->in_len) {
		f->lan_off = (uint32_t)n;
		f->lan_len = f->in_len;
		r->phase = PH_LAN_SEND;
		arm_send(aw, r, AOP_LAN_SEND, r->fd[0], f->in + f->lan_off,
			 f->lan_len - f->lan_off);
		return;
	}
	start_relay(aw, r);
}

void flow_handle(struct relay_worker *w, struct relay *r, unsigned op,
		 const struct io_uring_cqe *cqe)
{
	struct agent_worker *aw = w->owner;
	struct flow *f = r ? F(r) : NULL;

	switch (op) {
	case AOP_ACCEPT:
		if (!(cqe->flags & IORING_CQE_F_MORE))
			aw->accept_armed = false;
		if (cqe->res >= 0)
			flow_accept(aw, cqe->res);
		else if (sock_accept_starved(cqe->res)) {
			/* Out of descriptors: pause rather than spin; the tick
			 * re-arms once flows have closed. */
			if (!aw->accept_paused) {
				aw->n.accept_paused++;
				if (log_ratelimit_ok(&aw->rl, aw->rw.now_ms))
					log_warn("accept: %s; pausing", strerror(-cqe->res));
			}
			aw->accept_paused = true;
		}
		if (!aw->accept_armed && aw->listening && !aw->accept_paused)
			agent_arm_accept(aw);
		return;
	case AOP_TIMEOUT:
		return;
	case AOP_CONN_POLL:
		on_poll(aw, r, cqe);
		return;
	case AOP_SEND:
		if (cqe->res <= 0) {
			next_attempt(aw, r);
			return;
		}
		f->out_off += (uint32_t)cqe->res;
		if (f->out_off < f->msg_len) {
			arm_send(aw, r, AOP_SEND, r->fd[1], f->out + f->out_off,
				 f->msg_len - f->out_off);
			return;
		}
		arm_reply(aw, r);
		return;
	case AOP_REPLY:
		on_reply(aw, r, cqe);
		return;
	case AOP_LAN_SEND:
		if (cqe->res <= 0) {
			relay_close(w, r, RELAY_END_RESET, true);
			return;
		}
		f->lan_off += (uint32_t)cqe->res;
		if (f->lan_off < f->lan_len) {
			arm_send(aw, r, AOP_LAN_SEND, r->fd[0], f->in + f->lan_off,
				 f->lan_len - f->lan_off);
			return;
		}
		start_relay(aw, r);
		return;
	case AOP_DIRECT_CONNECT:
		if (cqe->res < 0) {
			aw->n.failed++;
			log_flow(aw, r, "direct fallback connect failed");
			relay_close(w, r, RELAY_END_RESET, true);
			return;
		}
		aw->n.fallback_direct++;
		start_relay(aw, r);
		return;
	}
}

void flow_accept(struct agent_worker *aw, int fd)
{
	struct relay_worker *w = &aw->rw;
	const struct agent_config *cfg = &aw->cfg;
	struct sockaddr_storage peer;
	socklen_t pl = sizeof(peer);
	struct in6_addr dst;
	uint16_t port;
	struct relay *r;
	struct flow *f;
	ssize_t n;
	char c;

	aw->n.intercepted++;
	r = relay_new(w, fd);
	if (!r) {
		close(fd);
		return;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		relay_close(w, r, RELAY_END_RESET, true);
		return;
	}
	f->cls = -1;
	r->priv = f;
	f->since_ms = w->now_ms;
	f->dst_len = sizeof(f->dst);
	/* TPROXY: the accepted socket's local address is the original
	 * destination. */
	if (getsockname(fd, (struct sockaddr *)&f->dst, &f->dst_len) < 0 ||
	    getpeername(fd, (struct sockaddr *)&peer, &pl) < 0 ||
	    addr_to_in6((struct sockaddr *)&f->dst, &dst, &port) < 0 ||
	    addr_to_in6((struct sockaddr *)&peer, &r->peer, NULL) < 0) {
		relay_close(w, r, RELAY_END_RESET, true);
		return;
	}
	/* One device must not use up the home's quota at the concentrator
	 * (and with it every other device's Internet): a cap per address. */
	if (quota_take(&aw->a->hosts, QUOTA_FLOW, &r->peer) < 0) {
		aw->n.host_limit_hits++;
		if (log_ratelimit_ok(&aw->rl, w->now_ms)) {
			char a[ADDR_STRLEN];

			log_info("%s: %u flows open, its max_flows_per_host; reset",
				 addr_format_in6(&r->peer, 0, a), cfg->max_per_host);
		}
		relay_close(w, r, RELAY_END_REFUSED, true);
		return;
	}
	r->flags |= AGENT_FLOW_HOSTQ;
	/* A connection to the listener itself was not redirected: refuse it
	 * rather than loop it back through the concentrator. */
	if (port == cfg->port) {
		relay_close(w, r, RELAY_END_REFUSED, true);
		return;
	}
	/* The concentrator speaks IPv4 as ::ffff:a.b.c.d; a v4 destination on a
	 * dual-stack listener reads back mapped, which is what we need, and
	 * the direct fallback needs the plain family. */
	f->dst_len = addr_from_in6(&dst, port, &f->dst);
	r->far = dst;
	r->far_port = port;
	/* Its traffic class, which nftables marked the connection with. */
	if (cfg->cls_agent && atomic_load(&aw->a->paths_ready)) {
		uint16_t pport = 0;
		uint32_t m;
		int rc;

		addr_to_in6((struct sockaddr *)&peer, &r->peer, &pport);
		rc = ctmark_get(&aw->ct_nl, &r->peer, pport, &dst, port, IPPROTO_TCP, &m);
		if (rc == 0 && m >= cfg->mark + CLASS_MARK_AGENT &&
		    m < cfg->mark + CLASS_MARK_AGENT + cfg->ncls &&
		    cfg->cls[m - cfg->mark - CLASS_MARK_AGENT].action != CLASS_BYPASS) {
			f->cls = (int)(m - cfg->mark - CLASS_MARK_AGENT);
			aw->n.class_flows++;
		} else if (rc < 0 && rc != -ENOENT) {
			aw->n.class_errors++;
			if (log_ratelimit_ok(&aw->rl, w->now_ms))
				log_warn("classes: cannot read the connection's conntrack mark (%s): its "
					 "class is not applied", strerror(-rc));
		}
	}
	sock_nodelay(fd);
	sock_keepalive(fd, cfg->keepalive_s);

	if (build_message(aw, r, cfg->verify_stream &&
			  relay_vs_max(&aw->rw) >= CONVERT_VERIFIED_MIN_RECORD &&
			  !atomic_load_explicit(&aw->a->conc_plain[0], memory_order_relaxed)) < 0) {
		relay_close(w, r, RELAY_END_RESET, true);
		return;
	}
	/* A client that connected and closed without a byte: nothing to
	 * carry. (Only a peek: its bytes stay for the relay.) */
	n = recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
	if (n == 0) {
		relay_close(w, r, RELAY_END_HANDSHAKE, false);
		return;
	}
	try_concentrator(aw, r);
}

void flow_close(struct relay_worker *w, struct relay *r)
{
	struct agent_worker *aw = w->owner;
	char a[ADDR_STRLEN], b[ADDR_STRLEN];

	if (r->end != RELAY_END_RESET || r->state != RELAY_CLOSING || r->priv ||
	    !log_ratelimit_ok(&aw->rl, w->now_ms))
		return;
	log_info("flow %s -> %s reset after %llu bytes up, %llu down%s",
		 addr_format_in6(&r->peer, 0, a), addr_format_in6(&r->far, r->far_port, b),
		 (unsigned long long)r->half[0].bytes, (unsigned long long)r->half[1].bytes,
		 (r->flags & AGENT_FLOW_DIRECT) ? " (direct)" : "");
}

void flow_free(struct relay_worker *w, struct relay *r)
{
	struct agent_worker *aw = w->owner;

	if (r->flags & AGENT_FLOW_HOSTQ)
		quota_release(&aw->a->hosts, QUOTA_FLOW, &r->peer);
	free(r->priv);
	r->priv = NULL;
}

void flow_tick(struct agent_worker *aw)
{
	struct relay_worker *w = &aw->rw;
	const struct agent_config *cfg = &aw->cfg;

	for (struct relay *r = NULL; (r = relay_next(w, r));) {
		if (r->state == RELAY_PUMP && cfg->idle_timeout_s &&
		    w->now_s - r->active_s >= cfg->idle_timeout_s)
			relay_close(w, r, RELAY_END_IDLE, false);
	}
}
