/* The Convert handshake of one client connection, from accept to relaying:
 *
 *   READ      receive until the Convert message is complete (it may come in
 *             pieces, or with application bytes behind it)
 *   CONNECT   policy passed: connect to the destination, with a timeout
 *   REPLY     send the success reply
 *   PAYLOAD   send the application bytes that came with the message
 *   -> relay_start()
 *
 * Any refusal goes ERR_REPLY (send header + Error TLV) -> shutdown(SHUT_WR)
 * -> DRAIN (read until the client closes) -> close. Draining matters: a
 * close() with unread bytes in the receive queue sends RST, which can
 * destroy the Error reply before the client reads it.
 *
 * The session buffer exists only during the handshake and is freed before
 * relaying starts, so an established idle flow holds no user-space buffer. */
#include "concentrator.h"
#include "decide.h"
#include "speedtest.h"
#include "sock.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <unistd.h>

enum phase {
	PH_READ = 1,
	PH_CONNECT,
	PH_REPLY,
	PH_PAYLOAD,
	PH_ERR_REPLY,
	PH_DRAIN,
	PH_VERIFY,   /* message in, waiting for the client's handshake to end */
	PH_SPEEDTEST,  /* the reply to a speed test going out, then speedtest.c's */
};

#define FLAG_LIMITED 0x01   /* holds a slot in the shared limits */
#define FLAG_MPTCP   0x02
#define FLAG_KEYED   0x04   /* the client's MPTCP key is in: replies may go */
#define FLAG_RELAYED 0x08   /* reached relaying */
#define FLAG_COUNTED 0x10   /* in the subflow histogram already */
#define FLAG_HS      0x20   /* holds a handshake slot in the shared limits */
#define FLAG_ST      0x40   /* holds a speed test's admission (speedtest.c) */

/* A refused client gets this long (or the handshake timeout, if shorter)
 * to read its Error and close, so refusals cannot pile up: a source that is
 * not even allowed holds a descriptor for a second, not a handshake
 * timeout. */
#define REFUSE_DRAIN_MS 1000

struct session {
	uint64_t since_ms;            /* start of the handshake */
	uint64_t connect_us;          /* upstream connect started (latency) */
	uint32_t len;                 /* bytes in buf */
	uint32_t msg_len;             /* Convert message length, once known */
	uint32_t out_off, out_len;    /* what is being sent from out/buf */
	struct __kernel_timespec connect_ts;
	struct __kernel_timespec key_ts;  /* re-check for the client's key (2 ms, doubling) */
	struct __kernel_timespec verify_ts;  /* re-check the client's handshake */
	struct sockaddr_storage dst;
	socklen_t dst_len;
	uint8_t code;                 /* Error code being sent, if refusing */
	uint32_t vmax;                /* verified stream agreed: the client's record size */
	uint32_t st_kid;              /* PH_SPEEDTEST: the key, direction, seconds */
	uint8_t st_dir, st_seconds;
	uint8_t out[64];              /* reply being sent */
	/* The worker's handshakes in the order they were accepted (those
	 * with FLAG_HS): at the limit the oldest gives way, whatever it is
	 * doing, found without a scan. */
	struct relay *hs_prev, *hs_next;
	uint8_t buf[CONVERT_MAX_LEN + 2048]; /* message + early payload */
};

static struct session *S(struct relay *r)
{
	return r->priv;
}

static void hs_recv(struct relay_worker *w, struct relay *r, unsigned op)
{
	struct session *s = S(r);
	struct io_uring_sqe *sqe = relay_sqe(w, r, op);

	if (!sqe) {
		relay_close(w, r, RELAY_END_HANDSHAKE, true);
		return;
	}
	if (op == OP_DRAIN_RECV)  /* discard: reuse the start of buf */
		io_uring_prep_recv(sqe, r->fd[0], s->buf, sizeof(s->buf), 0);
	else
		io_uring_prep_recv(sqe, r->fd[0], s->buf + s->len,
				   sizeof(s->buf) - s->len, 0);
}

/* Send out_len bytes from p (continuing at out_off) on fd. A reply to the
 * client waits, in 2 ms steps, until its MPTCP connection has the client's
 * key: written earlier (a TFO SYN accepted, the third ACK not in yet), the
 * kernel would hold it until the client sends again, which it never does
 * while waiting for the reply (sock_mptcp_key_received()). The handshake
 * timeout still bounds the wait. */
static void hs_send(struct relay_worker *w, struct relay *r, int fd,
		    const uint8_t *p)
{
	struct session *s = S(r);
	struct io_uring_sqe *sqe;

	if (fd == r->fd[0] && (r->flags & FLAG_MPTCP) && !(r->flags & FLAG_KEYED)) {
		if (sock_mptcp_key_received(fd)) {
			r->flags |= FLAG_KEYED;
		} else {
			struct conc_worker *cw = w->owner;

			cw->n.tfo_key_waits++;
			sqe = relay_sqe(w, r, OP_KEY_WAIT);
			if (!sqe) {
				relay_close(w, r, RELAY_END_HANDSHAKE, true);
				return;
			}
			/* 2 ms, doubling to 128 ms: a real client's key
			 * arrives within a round trip; one that never sends
			 * its final ACK costs a few wakeups a second, not
			 * 500, until the handshake timeout. */
			s->key_ts.tv_sec = 0;
			s->key_ts.tv_nsec = !s->key_ts.tv_nsec ? 2000000 :
				s->key_ts.tv_nsec < 128000000 ? s->key_ts.tv_nsec * 2 : 128000000;
			io_uring_prep_timeout(sqe, &s->key_ts, 0, 0);
			return;
		}
	}
	sqe = relay_sqe(w, r, OP_HS_SEND);
	if (!sqe) {
		relay_close(w, r, RELAY_END_HANDSHAKE, true);
		return;
	}
	io_uring_prep_send(sqe, fd, p + s->out_off, s->out_len - s->out_off,
			   MSG_NOSIGNAL);
}

static void log_refusal(struct conc_worker *cw, struct relay *r, uint8_t code,
			const char *reason)
{
	struct session *s = S(r);
	char a[ADDR_STRLEN], d[ADDR_STRLEN] = "-";

	if (!log_ratelimit_ok(&cw->rl, cw->rw.now_ms))
		return;
	if (s && s->dst_len)
		addr_format((struct sockaddr *)&s->dst, d);
	log_info("refused %s -> %s: error %u %s (%s)",
		 addr_format_in6(&r->peer, 0, a), d, code,
		 convert_error_name(code), reason);
}

/* Answer with an Error TLV, then close gracefully (see the file comment). */
static void refuse(struct conc_worker *cw, struct relay *r, uint8_t code,
		   const void *value, size_t value_len, const char *reason)
{
	struct relay_worker *w = &cw->rw;
	struct session *s = S(r);
	int n;

	cw->n.refused[code]++;
	log_refusal(cw, r, code, reason);
	if (r->fd[1] >= 0) {
		close(r->fd[1]);
		r->fd[1] = -1;
	}
	n = convert_encode_error(s->out, sizeof(s->out), code, value, value_len);
	if (n < 0) {
		relay_close(w, r, RELAY_END_REFUSED, true);
		return;
	}
	s->code = code;
	s->out_off = 0;
	s->out_len = (uint32_t)n;
	s->since_ms = w->now_ms;  /* the drain gets REFUSE_DRAIN_MS */
	r->phase = PH_ERR_REPLY;
	hs_send(w, r, r->fd[0], s->out);
}

static void start_connect(struct conc_worker *cw, struct relay *r,
			  const struct decision *d)
{
	struct relay_worker *w = &cw->rw;
	struct session *s = S(r);
	const struct conc_config *cfg = &cw->c->cfg;
	struct io_uring_sqe tmpl;
	unsigned keepalive_s, connect_ms;
	int fd, mss = d->mss;

	s->dst_len = addr_from_in6(&d->dst, d->port, &s->dst);
	r->far = d->dst;
	r->far_port = d->port;
	pthread_rwlock_rdlock(&cw->c->live_lock);
	keepalive_s = cfg->keepalive_s;
	connect_ms = cfg->connect_timeout_ms;
	pthread_rwlock_unlock(&cw->c->live_lock);

	fd = socket(s->dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0) {
		int e = errno;

		if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
			cw->n.limit_hits++;
			refuse(cw, r, CONVERT_E_RESOURCE_EXCEEDED, NULL, 0,
			       "out of sockets");
		} else {
			refuse(cw, r, CONVERT_E_NETWORK_FAILURE, NULL, 0,
			       "cannot create upstream socket");
		}
		return;
	}
	sock_nodelay(fd);
	sock_keepalive(fd, keepalive_s);
	if (mss)
		setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss));
	r->fd[1] = fd;

	s->connect_us = log_now_us();
	s->connect_ts.tv_sec = connect_ms / 1000;
	s->connect_ts.tv_nsec = (long long)(connect_ms % 1000) * 1000000;
	memset(&tmpl, 0, sizeof(tmpl));
	io_uring_prep_connect(&tmpl, fd, (struct sockaddr *)&s->dst, s->dst_len);
	if (relay_submit_timed(w, r, &tmpl, OP_CONNECT, OP_CONNECT_TIMEOUT, &s->connect_ts) < 0) {
		relay_close(w, r, RELAY_END_HANDSHAKE, true);
		return;
	}
	r->phase = PH_CONNECT;
}

/* decide() on what the client has sent, under the policy lock. Returns
 * whether keys are configured (cookies are counted then). */
static bool decide_now(struct conc_worker *cw, struct relay *r, bool eof, struct decision *d)
{
	struct session *s = S(r);
	bool keyed;

	pthread_rwlock_rdlock(&cw->c->live_lock);
	decide(&cw->c->cfg.policy, &r->peer, s->buf, s->len, eof, (uint32_t)time(NULL), d);
	keyed = cw->c->cfg.policy.keys.n > 0;
	pthread_rwlock_unlock(&cw->c->live_lock);
	return keyed;
}

/* The replay cache starts empty at every start, and a NAT cookie is tied
 * to no address: one seen before a restart could be used again, from
 * anywhere, within its window. So a NAT cookie must be dated from this
 * start on (or from now, if the clock was stepped back since) and at most
 * NAT_COOKIE_AHEAD_S ahead: then one used before the start can only come
 * back from a gateway whose clock runs ahead, and only from the last
 * NAT_COOKIE_AHEAD_S before the start. A gateway makes a fresh cookie per
 * connection, so only requests in flight across a restart meet this. */
#define NAT_COOKIE_AHEAD_S 10

static bool nat_cookie_stale(const struct conc *c, const struct cookie_fields *f, uint32_t now)
{
	uint32_t start = (uint32_t)c->started_unix;

	if (!(f->flags & COOKIE_F_NAT))
		return false;
	if (now < start)
		start = now;
	return f->time < start || f->time > now + NAT_COOKIE_AHEAD_S;
}

/* A complete request and its decision: act on it. A valid cookie is good
 * once for a connection: its nonce is checked against the replay cache
 * here, at the last moment, so a request held for verification does not
 * use it up. Info-only requests (the gateways' probes, one per path a
 * second) and refused ones take no entry: a replay of either gets an answer
 * and nothing else, and they would crowd out the connections' cookies. */
static void act(struct conc_worker *cw, struct relay *r, struct decision *d, bool keyed)
{
	struct session *s = S(r);

	if (d->keyed && (d->kind == DECIDE_CONNECT || d->kind == DECIDE_SPEEDTEST)) {
		uint32_t now = (uint32_t)time(NULL);
		int rc = nat_cookie_stale(cw->c, &d->fields, now)
				 ? -ESTALE
				 : replay_check(&cw->c->replay, d->fields.kid, d->fields.nonce,
						d->fields.time, now);

		if (rc < 0) {
			d->cookie = rc == -EALREADY ? COOKIE_REPLAYED : COOKIE_STALE;
			d->kind = DECIDE_REFUSE;
			d->code = CONVERT_E_NOT_AUTHORIZED;
			d->value_len = 0;
			d->reason = decide_cookie_text(d->cookie);
		} else {
			/* The other boxes refuse it from now on (peers.c). */
			peers_tell(cw->c, d->fields.kid, d->fields.nonce, d->fields.time);
		}
	}
	if (keyed && (d->keyed || d->cookie != COOKIE_OK))
		cw->n.cookie[d->cookie]++;
	if (d->speedtest && d->kind == DECIDE_REFUSE)
		atomic_fetch_add(&cw->c->speedtests.refused_unkeyed, 1);
	switch (d->kind) {
	case DECIDE_MORE:
		break;
	case DECIDE_REFUSE:
		refuse(cw, r, d->code, d->value, d->value_len, d->reason);
		return;
	case DECIDE_INFO: {
		/* Info alone: say what we support, then close. */
		struct convert_writer wr;
		int n;

		convert_writer_init(&wr, s->out, sizeof(s->out));
		convert_put_supported_ext(&wr, decide_supported_kinds, sizeof(decide_supported_kinds));
		n = convert_writer_finish(&wr);
		if (n < 0) {
			relay_close(&cw->rw, r, RELAY_END_REFUSED, true);
			return;
		}
		s->code = 0;
		s->out_off = 0;
		s->out_len = (uint32_t)n;
		r->phase = PH_ERR_REPLY;  /* same path: send, shut, drain */
		hs_send(&cw->rw, r, r->fd[0], s->out);
		return;
	}
	case DECIDE_SPEEDTEST: {
		struct convert_writer wr;
		int n, rc = speedtest_admit(&cw->c->speedtests, d->fields.kid, (uint32_t)time(NULL));

		if (rc < 0) {
			refuse(cw, r, CONVERT_E_RESOURCE_EXCEEDED, NULL, 0,
			       rc == -EDQUOT ? "speed test: this key's tests for the hour are used up"
					     : "speed test: another one is running");
			return;
		}
		convert_writer_init(&wr, s->out, sizeof(s->out));
		convert_put_speedtest(&wr, d->st_dir, d->st_seconds, NULL);
		n = convert_writer_finish(&wr);
		if (n < 0) {
			speedtest_release(&cw->c->speedtests, d->fields.kid);
			relay_close(&cw->rw, r, RELAY_END_REFUSED, true);
			return;
		}
		/* However the session ends before the hand-off (a reset, the
		 * handshake timeout, an eviction, the stop), session_close
		 * gives the admission back. */
		r->flags |= FLAG_ST;
		s->st_kid = d->fields.kid;
		s->st_dir = d->st_dir;
		s->st_seconds = d->st_seconds;
		s->out_off = 0;
		s->out_len = (uint32_t)n;
		r->phase = PH_SPEEDTEST;
		hs_send(&cw->rw, r, r->fd[0], s->out);
		return;
	}
	case DECIDE_CONNECT:
		/* Agreed when on and our buffers make records big enough. */
		if (cw->c->cfg.verify_stream && relay_vs_max(&cw->rw) >= CONVERT_VERIFIED_MIN_RECORD)
			s->vmax = d->verified_max;
		start_connect(cw, r, d);
		return;
	}
	relay_close(&cw->rw, r, RELAY_END_HANDSHAKE, true);
}

/* Re-check a PH_VERIFY client after verify_ts (2 ms, doubling to 128 ms:
 * a real client answers within a round trip, a forged one never). */
static void verify_wait(struct relay_worker *w, struct relay *r)
{
	struct io_uring_sqe *sqe = relay_sqe(w, r, OP_VERIFY_WAIT);

	if (!sqe) {
		relay_close(w, r, RELAY_END_HANDSHAKE, true);
		return;
	}
	io_uring_prep_timeout(sqe, &S(r)->verify_ts, 0, 0);
}

static void on_verify_wait(struct conc_worker *cw, struct relay *r)
{
	struct session *s = S(r);
	struct decision d;
	bool keyed;

	if (!sock_handshake_complete(r->fd[0])) {
		if (s->verify_ts.tv_nsec < 128000000)
			s->verify_ts.tv_nsec *= 2;
		verify_wait(&cw->rw, r);
		return;
	}
	/* The client is real: decide now (the policy may have changed). */
	r->phase = PH_READ;
	keyed = decide_now(cw, r, false, &d);
	act(cw, r, &d, keyed);
}

static void on_hs_recv(struct conc_worker *cw, struct relay *r,
		       const struct io_uring_cqe *cqe)
{
	struct relay_worker *w = &cw->rw;
	struct session *s = S(r);
	struct decision d;
	bool keyed;

	if (cqe->res < 0) {
		relay_close(w, r, RELAY_END_HANDSHAKE, true);
		return;
	}
	s->len += (uint32_t)cqe->res;
	keyed = decide_now(cw, r, cqe->res == 0, &d);
	if (d.kind == DECIDE_MORE) {
		/* buf holds a whole maximum-size message, so room remains. */
		hs_recv(w, r, OP_HS_RECV);
		return;
	}
	s->msg_len = d.msg_len;
	if (!sock_handshake_complete(r->fd[0]) &&
	    (cw->c->tfo_sysctl_fd < 0 || sock_tfo_cookieless(cw->c->tfo_sysctl_fd) != 0)) {
		/* Taken from a SYN that the kernel accepted without a TFO
		 * cookie (0x200; the sysctl is read now, as it may have
		 * changed): the source may be forged. Nothing on its behalf
		 * until it answers our SYN-ACK (the handshake timeout bounds
		 * the wait). With cookies required, the cookie proved the
		 * source and 0-RTT stays 0-RTT. */
		cw->n.unverified_waits++;
		r->phase = PH_VERIFY;
		s->verify_ts.tv_sec = 0;
		s->verify_ts.tv_nsec = 2000000;
		verify_wait(w, r);
		return;
	}
	act(cw, r, &d, keyed);
}

static uint8_t connect_error_code(int err)
{
	switch (err) {
	case -ECONNREFUSED:
	case -ECONNRESET:
		return CONVERT_E_CONNECTION_RESET;
	case -ECANCELED:      /* our timeout fired */
	case -ETIMEDOUT:
	case -ENETUNREACH:
	case -EHOSTUNREACH:
	case -EHOSTDOWN:
	case -EACCES:         /* ICMP administratively prohibited */
	case -EPERM:
		return CONVERT_E_DESTINATION_UNREACHABLE;
	default:
		return CONVERT_E_NETWORK_FAILURE;
	}
}

static void on_connect(struct conc_worker *cw, struct relay *r,
		       const struct io_uring_cqe *cqe)
{
	struct relay_worker *w = &cw->rw;
	struct session *s = S(r);
	int n;

	if (cqe->res < 0) {
		uint8_t code = connect_error_code(cqe->res);
		char why[64];

		snprintf(why, sizeof(why), "connect: %s",
			 cqe->res == -ECANCELED ? "timed out" : strerror(-cqe->res));
		/* why is only used before refuse() returns. */
		refuse(cw, r, code, NULL, 0, why);
		return;
	}
	cw->n.connected++;
	metrics_hist_observe(&cw->n.connect_latency, conc_connect_bounds, CONC_CONNECT_BUCKETS,
			     (double)(log_now_us() - s->connect_us) / 1e6);
	if (s->vmax) {
		/* Agreed: the same TLV back, with the records we take. */
		struct convert_writer wr;

		convert_writer_init(&wr, s->out, sizeof(s->out));
		convert_put_verified(&wr, relay_vs_max(w));
		n = convert_writer_finish(&wr);
	} else {
		n = convert_encode_success(s->out, sizeof(s->out));
	}
	if (n < 0) {
		relay_close(w, r, RELAY_END_HANDSHAKE, true);
		return;
	}
	s->out_off = 0;
	s->out_len = (uint32_t)n;
	r->phase = PH_REPLY;
	hs_send(w, r, r->fd[0], s->out);
}

/* r takes a handshake slot: the newest of the worker's. */
static void hs_hold(struct conc_worker *cw, struct relay *r)
{
	struct session *s = S(r);

	r->flags |= FLAG_HS;
	cw->hs_n++;
	s->hs_prev = cw->hs_tail;
	s->hs_next = NULL;
	if (cw->hs_tail)
		S(cw->hs_tail)->hs_next = r;
	else
		cw->hs_head = r;
	cw->hs_tail = r;
}

/* r's handshake slot goes back (its flow relays now, or it closes). */
static void hs_release(struct conc_worker *cw, struct relay *r)
{
	struct session *s = S(r);

	if (!(r->flags & FLAG_HS))
		return;
	r->flags &= (uint8_t)~FLAG_HS;
	cw->hs_n--;
	quota_release(&cw->c->limits, QUOTA_HANDSHAKE, &r->peer);
	if (s->hs_prev)
		S(s->hs_prev)->hs_next = s->hs_next;
	else
		cw->hs_head = s->hs_next;
	if (s->hs_next)
		S(s->hs_next)->hs_prev = s->hs_prev;
	else
		cw->hs_tail = s->hs_prev;
	s->hs_prev = s->hs_next = NULL;
}

static void start_relay(struct relay_worker *w, struct relay *r)
{
	struct conc_worker *cw = w->owner;

	hs_release(cw, r);
	uint32_t vmax = S(r)->vmax;

	r->flags |= FLAG_RELAYED;
	free(r->priv);
	r->priv = NULL;
	r->phase = 0;
	if (vmax && relay_verify(w, r, 0, vmax) < 0) {
		/* The client now sends records: without the state to read
		 * them, the flow cannot go on. */
		relay_close(w, r, RELAY_END_RESET, true);
		return;
	}
	relay_start(w, r);
}

static void on_hs_send(struct conc_worker *cw, struct relay *r,
		       const struct io_uring_cqe *cqe)
{
	struct relay_worker *w = &cw->rw;
	struct session *s = S(r);

	if (cqe->res < 0) {
		relay_close(w, r, r->phase == PH_ERR_REPLY ? RELAY_END_REFUSED :
			    RELAY_END_HANDSHAKE, true);
		return;
	}
	s->out_off += (uint32_t)cqe->res;
	if (s->out_off < s->out_len) {
		hs_send(w, r, r->phase == PH_PAYLOAD ? r->fd[1] : r->fd[0],
			r->phase == PH_PAYLOAD ? s->buf + s->msg_len : s->out);
		return;
	}

	switch (r->phase) {
	case PH_REPLY:
		if (s->len > s->msg_len) {
			/* Application bytes that came with the message. */
			s->out_off = 0;
			s->out_len = s->len - s->msg_len;
			r->phase = PH_PAYLOAD;
			hs_send(w, r, r->fd[1], s->buf + s->msg_len);
			return;
		}
		start_relay(w, r);
		return;
	case PH_PAYLOAD:
		r->half[0].bytes += s->out_len;
		w->stats.bytes[0] += s->out_len;
		start_relay(w, r);
		return;
	case PH_SPEEDTEST: {
		/* The connection is the test's from here: the slot goes (and
		 * with it the handshake's place in the limits). */
		int fd = r->fd[0];
		uint32_t kid = s->st_kid;
		uint8_t dir = s->st_dir, secs = s->st_seconds;

		r->fd[0] = -1;
		r->flags &= (uint8_t)~FLAG_ST;  /* the test's own from here */
		relay_close(w, r, RELAY_END_DONE, false);
		speedtest_run(&cw->c->speedtests, fd, kid, dir, secs);
		return;
	}
	case PH_ERR_REPLY:
		/* shutdown(2) directly: IORING_OP_SHUTDOWN would go to an
		 * io-wq thread (relay.c, on_recv). */
		if (shutdown(r->fd[0], SHUT_WR) < 0) {
			relay_close(w, r, RELAY_END_REFUSED, false);
			return;
		}
		r->phase = PH_DRAIN;
		hs_recv(w, r, OP_DRAIN_RECV);
		return;
	}
}

void session_handle(struct relay_worker *w, struct relay *r, unsigned op,
		    const struct io_uring_cqe *cqe)
{
	struct conc_worker *cw = w->owner;

	switch (op) {
	case OP_ACCEPT: {
		unsigned li = ring_ud_gen(cqe->user_data);

		if (!(cqe->flags & IORING_CQE_F_MORE))
			cw->accept_armed[li] = false;
		if (cqe->res >= 0) {
			session_accept(cw, cqe->res);
		} else if (cqe->res == -EMFILE || cqe->res == -ENFILE ||
			   cqe->res == -ENOBUFS || cqe->res == -ENOMEM) {
			/* Out of descriptors: pause rather than spin; the
			 * tick re-arms once flows have closed. */
			if (!cw->accept_paused) {
				cw->n.accept_paused++;
				if (log_ratelimit_ok(&cw->rl, w->now_ms))
					log_warn("worker %u: accept: %s; pausing",
						 cw->id, strerror(-cqe->res));
			}
			cw->accept_paused = true;
			return;
		}
		if (!cw->accept_armed[li] && cw->listening && !cw->accept_paused)
			worker_arm_accept(cw, li);
		return;
	}
	case OP_HS_RECV:
		on_hs_recv(cw, r, cqe);
		return;
	case OP_CONNECT:
		on_connect(cw, r, cqe);
		return;
	case OP_CONNECT_TIMEOUT:
		return;
	case OP_HS_SEND:
		on_hs_send(cw, r, cqe);
		return;
	case OP_VERIFY_WAIT:
		on_verify_wait(cw, r);
		return;
	case OP_KEY_WAIT:  /* -ETIME: the 2 ms are up; try again */
		hs_send(w, r, r->fd[0], S(r)->out);
		return;
	case OP_DRAIN_RECV:
		if (cqe->res > 0) {
			hs_recv(w, r, OP_DRAIN_RECV);
			return;
		}
		relay_close(w, r, RELAY_END_REFUSED, cqe->res < 0);
		return;
	}
}

/* Resets fd at once (RST): nothing is spent on a connection over the
 * handshake limits, not even an Error reply. */
static void reset_now(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* The oldest handshake of this worker, whatever it is doing (reading its
 * request, waiting for the client's handshake or key, connecting upstream,
 * sending its refusal), is closed and its slot handed back at once: so a
 * handshake gets at least as long as the limit's worth of newer ones take
 * to arrive, and one that completes within a round trip is never locked
 * out by connections held open, refused or connecting to a blackhole.
 * false when this worker holds none. O(1): the list is in accept order. */
static bool evict_oldest_handshake(struct conc_worker *cw)
{
	struct relay *old = cw->hs_head;
	bool refusing;

	if (!old)
		return false;
	refusing = old->phase == PH_ERR_REPLY || old->phase == PH_DRAIN;
	hs_release(cw, old);
	cw->n.hs_evictions++;
	relay_close(&cw->rw, old, refusing ? RELAY_END_REFUSED : RELAY_END_HANDSHAKE, true);
	return true;
}

void session_accept(struct conc_worker *cw, int fd)
{
	struct relay_worker *w = &cw->rw;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct in6_addr peer;
	struct relay *r;
	struct session *s;
	bool allowed;
	int rc;

	cw->n.accepted++;
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    addr_to_in6((struct sockaddr *)&ss, &peer, NULL) < 0) {
		reset_now(fd);
		return;
	}
	/* First of all, before any memory: handshakes in progress from this
	 * client (its /64 for IPv6). Whoever opens connections faster than it
	 * completes them is reset, allowed or not. Then the total: at this
	 * worker's share of it, its oldest handshake gives way, whatever it
	 * is doing: many addresses holding connections open must not lock
	 * out a client that completes its request within a round trip. The
	 * share is the worker's own (the table counts only per client), so
	 * no other worker can take the slot between the eviction and this
	 * connection, and a full worker always has one to evict. */
	rc = quota_take(&cw->c->limits, QUOTA_HANDSHAKE, &peer);
	if (rc == 0 && cw->hs_n >= cw->hs_max && !evict_oldest_handshake(cw)) {
		quota_release(&cw->c->limits, QUOTA_HANDSHAKE, &peer);
		rc = -EUSERS;
	}
	if (rc < 0) {
		cw->n.hs_limit_hits++;
		if (log_ratelimit_ok(&cw->rl, w->now_ms)) {
			char a[ADDR_STRLEN];

			log_info("reset %s: too many handshakes in progress", addr_format_in6(&peer, 0, a));
		}
		reset_now(fd);
		return;
	}
	r = relay_new(w, fd);
	if (!r) {
		/* Pool at its bound: nothing to answer with. */
		quota_release(&cw->c->limits, QUOTA_HANDSHAKE, &peer);
		cw->n.limit_hits++;
		reset_now(fd);
		return;
	}
	r->peer = peer;
	s = malloc(sizeof(*s));
	if (!s) {
		quota_release(&cw->c->limits, QUOTA_HANDSHAKE, &peer);
		relay_close(w, r, RELAY_END_REFUSED, true);
		return;
	}
	s->since_ms = w->now_ms;
	s->key_ts.tv_nsec = 0;
	s->len = s->msg_len = 0;
	s->dst_len = 0;
	s->vmax = 0;   /* not calloc: the 3 KiB buffer needs no zeroing */
	r->priv = s;
	r->phase = PH_READ;
	hs_hold(cw, r);

	/* A plain-TCP client reaches an MPTCP listener as a fallback socket. */
	if (sock_is_mptcp(fd)) {
		cw->n.mptcp++;
		r->flags |= FLAG_MPTCP;
	} else {
		cw->n.fallback++;
	}
	sock_nodelay(fd);
	pthread_rwlock_rdlock(&cw->c->live_lock);
	sock_keepalive(fd, cw->c->cfg.keepalive_s);
	sock_congestion(fd, cw->c->cfg.congestion);  /* restart-only: no lock */
	allowed = policy_client_allowed(&cw->c->cfg.policy, &r->peer);
	pthread_rwlock_unlock(&cw->c->live_lock);
	if (!allowed) {
		refuse(cw, r, CONVERT_E_NOT_AUTHORIZED, NULL, 0,
		       "client address not allowed");
		return;
	}
	rc = quota_take(&cw->c->limits, QUOTA_FLOW, &r->peer);
	if (rc < 0) {
		cw->n.limit_hits++;
		refuse(cw, r, CONVERT_E_RESOURCE_EXCEEDED, NULL, 0,
		       rc == -EDQUOT ? "too many flows from this client" :
		       "too many flows");
		return;
	}
	r->flags |= FLAG_LIMITED;
	hs_recv(w, r, OP_HS_RECV);
}

/* The subflows an MPTCP flow has, into the histogram, once per flow: at
 * the first FIN in either direction, while the connection is still open
 * both ways (once both DATA_FINs are through, the kernel may already have
 * dropped the subflows), or when it closes without one. */
static void count_subflows(struct conc_worker *cw, struct relay *r)
{
	int n;

	if (!(r->flags & FLAG_RELAYED) || !(r->flags & FLAG_MPTCP) ||
	    (r->flags & FLAG_COUNTED) || r->fd[0] < 0)
		return;
	r->flags |= FLAG_COUNTED;
	if (!sock_is_mptcp(r->fd[0]))
		cw->n.fell_back++;  /* accepted as MPTCP, ended as TCP */
	n = sock_mptcp_subflows(r->fd[0]);
	if (n >= 0)
		metrics_hist_observe(&cw->n.subflows, conc_subflow_bounds, CONC_SUBFLOW_BUCKETS, n);
}

void session_eof(struct relay_worker *w, struct relay *r, int d)
{
	count_subflows(w->owner, r);
}

/* One line per relayed flow that failed (reset or socket error), so an
 * operator can see which gateway or server is misbehaving; normal ends are
 * counted, not logged. */
void session_close(struct relay_worker *w, struct relay *r)
{
	struct conc_worker *cw = w->owner;
	char a[ADDR_STRLEN], b[ADDR_STRLEN];

	count_subflows(cw, r);  /* a flow that ended without a FIN (reset, idle) */
	if (r->flags & FLAG_ST) {
		r->flags &= (uint8_t)~FLAG_ST;
		speedtest_release(&cw->c->speedtests, S(r)->st_kid);
	}
	if (r->end != RELAY_END_RESET || !r->far_port ||
	    !log_ratelimit_ok(&cw->rl, w->now_ms))
		return;
	log_info("flow %s -> %s reset after %llu bytes up, %llu down",
		 addr_format_in6(&r->peer, 0, a), addr_format_in6(&r->far, r->far_port, b),
		 (unsigned long long)r->half[0].bytes, (unsigned long long)r->half[1].bytes);
}

void session_free(struct relay_worker *w, struct relay *r)
{
	struct conc_worker *cw = w->owner;

	if (r->flags & FLAG_LIMITED)
		quota_release(&cw->c->limits, QUOTA_FLOW, &r->peer);
	if (r->priv)
		hs_release(cw, r);
	free(r->priv);
	r->priv = NULL;
}

/* A quiet MPTCP flow whose subflows are all gone (keepalive killed them, or
 * every path failed) stays open forever unless we look: the kernel keeps
 * it for an MP_JOIN that will not come from a gateway that lost power. Give
 * it one keepalive period to re-join over another path, then reset it so the
 * upstream socket is freed too. Checked only on idle flows, every half
 * keepalive period: a getsockopt per idle flow per 30 s by default. */
static void check_orphan(struct conc_worker *cw, struct relay *r)
{
	struct relay_worker *w = &cw->rw;
	unsigned ka = cw->keepalive_s;  /* this tick's copy */
	unsigned every = ka / 2 ? ka / 2 : 1;
	int live;

	if (!ka || w->now_s - r->active_s < ka || w->now_s - r->checked_s < every)
		return;
	r->checked_s = w->now_s;
	live = sock_mptcp_live_subflows(r->fd[0]);
	if (live != 0) {
		r->orphan_s = 0;
		return;
	}
	if (!r->orphan_s) {
		r->orphan_s = w->now_s;
		return;
	}
	if (w->now_s - r->orphan_s >= ka) {
		cw->n.orphans++;
		relay_close(w, r, RELAY_END_RESET, true);
	}
}

/* Close handshakes that have taken too long: clients that never complete
 * their Convert message, and refused clients that never close. Connects have
 * their own timeout (linked to the connect). */
void session_tick(struct conc_worker *cw)
{
	struct relay_worker *w = &cw->rw;
	const struct conc_config *cfg = &cw->c->cfg;
	unsigned hs_ms, idle_s;

	atomic_fetch_add_explicit(&cw->heartbeat, 1, memory_order_relaxed);
	pthread_rwlock_rdlock(&cw->c->live_lock);
	hs_ms = cfg->handshake_timeout_ms;
	idle_s = cfg->idle_timeout_s;
	cw->keepalive_s = cfg->keepalive_s;
	pthread_rwlock_unlock(&cw->c->live_lock);
	for (struct relay *r = NULL; (r = relay_next(w, r));) {
		bool refusing = r->phase == PH_ERR_REPLY || r->phase == PH_DRAIN;

		if (r->state == RELAY_HANDSHAKE && r->priv &&
		    r->phase != PH_CONNECT &&
		    w->now_ms - S(r)->since_ms >= (refusing && hs_ms > REFUSE_DRAIN_MS ?
						   REFUSE_DRAIN_MS : hs_ms)) {
			if (r->phase == PH_VERIFY)
				cw->n.unverified_dropped++;
			if (r->phase == PH_READ) {
				cw->n.handshake_timeouts++;
				if (log_ratelimit_ok(&cw->rl, w->now_ms)) {
					char a[ADDR_STRLEN];

					log_info("handshake timeout from %s after %u bytes",
						 addr_format_in6(&r->peer, 0, a), S(r)->len);
				}
			}
			relay_close(w, r, r->phase == PH_READ || r->phase == PH_VERIFY ?
				    RELAY_END_HANDSHAKE : RELAY_END_REFUSED, true);
		} else if (r->state == RELAY_PUMP && idle_s &&
			   w->now_s - r->active_s >= idle_s) {
			relay_close(w, r, RELAY_END_IDLE, false);
		} else if (r->state == RELAY_PUMP && (r->flags & FLAG_MPTCP)) {
			check_orphan(cw, r);
		}
	}
}
