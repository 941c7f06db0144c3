/* One worker per core: its own io_uring, buffer ring and SO_REUSEPORT
 * listener per listen address, so workers share nothing on the data path.
 * The kernel spreads new connections over the listeners. */
#include "concentrator.h"
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

static const struct relay_ops conc_relay_ops = {
	.handle = session_handle,
	.on_eof = session_eof,
	.on_close = session_close,
	.on_free = session_free,
};

/* An MPTCP listener (falling back to TCP where MPTCP is disabled) bound to
 * addr. SO_REUSEPORT and IPV6_V6ONLY must be set before bind. */
static int listener_open(const struct conc_config *cfg, const struct sockaddr_storage *addr,
			 socklen_t len, bool *ret_mptcp)
{
	int fd, one = 1, zero = 0, qlen = 4096;

	fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP);
	*ret_mptcp = fd >= 0;
	if (fd < 0)
		fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (addr->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)addr;

		/* [::] serves IPv4 too; a specific v6 address only itself. */
		if (IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr))
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	}
	/* Accept data in the SYN (0-RTT Convert). Best effort: without it,
	 * clients still work with one more round trip. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen)) < 0)
		warn_no_mptcp_tfo();
	if (cfg->tfo_key_len && tfokey_apply(fd, cfg->tfo_key, cfg->tfo_key_len) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)addr, len) < 0)
		goto fail;
	if (listen(fd, 4096) < 0)
		goto fail;
	return fd;
fail:
	{
		int e = -errno;

		close(fd);
		return e;
	}
}

void warn_no_mptcp_tfo(void)
{
	static atomic_bool said;

	if (!atomic_exchange(&said, true))
		log_warn("this kernel (%s) has no TCP Fast Open for MPTCP (Linux 6.2+): a gateway's "
			 "Convert message follows the handshake, one round trip more per flow",
			 kernel_release());
}

void worker_arm_accept(struct conc_worker *cw, unsigned li)
{
	struct io_uring_sqe *sqe = relay_sqe(&cw->rw, NULL, OP_ACCEPT);

	if (!sqe)
		return;
	io_uring_prep_multishot_accept(sqe, cw->lfd[li], NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ring_ud(OP_ACCEPT, RELAY_NO_SLOT, li));
	cw->accept_armed[li] = true;
}

static void stop_listening(struct relay_worker *w)
{
	struct conc_worker *cw = w->owner;
	const struct conc_config *cfg = &cw->c->cfg;

	for (unsigned i = 0; i < cfg->nlisten; i++) {
		struct io_uring_sqe *sqe;

		if (cw->lfd[i] < 0)
			continue;
		if (cw->c->ninherited) {
			/* systemd's socket: it must keep listening for the next
			 * start, so no shutdown; cancel our accept on it instead. */
			sqe = relay_sqe(w, NULL, RELAY_OP_CANCEL);
			if (sqe)
				io_uring_prep_cancel_fd(sqe, cw->lfd[i], IORING_ASYNC_CANCEL_ALL);
			io_uring_submit(&w->ring);
		} else {
			/* Our own listener: shutting it down ends its multishot
			 * accept. */
			shutdown(cw->lfd[i], SHUT_RDWR);
		}
		close(cw->lfd[i]);
		cw->lfd[i] = -1;
	}
	cw->listening = false;
}

static void resume_accepting(struct relay_worker *w)
{
	struct conc_worker *cw = w->owner;

	for (unsigned i = 0; i < cw->c->cfg.nlisten; i++)
		if (!cw->accept_armed[i])
			worker_arm_accept(cw, i);
}

static void tick(struct relay_worker *w)
{
	session_tick(w->owner);
}

static const struct relay_loop_ops conc_loop_ops = {
	.stop_accepting = stop_listening,
	.resume_accepting = resume_accepting,
	.tick = tick,
};

static void report_ready(struct conc_worker *cw, int result)
{
	struct conc *c = cw->c;

	pthread_mutex_lock(&c->ready_lock);
	cw->init_result = result;
	c->ready++;
	pthread_cond_broadcast(&c->ready_cond);
	pthread_mutex_unlock(&c->ready_lock);
}

void *worker_main(void *arg)
{
	struct conc_worker *cw = arg;
	struct conc *c = cw->c;
	const struct conc_config *cfg = &c->cfg;
	int r;

	cw->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT(20, 1000);
	/* An equal share of the handshakes, rounded up (so at least one). */
	cw->hs_max = (cfg->max_handshakes + cfg->workers - 1) / cfg->workers;
	for (unsigned i = 0; i < CONC_MAX_LISTEN; i++)
		cw->lfd[i] = -1;

	/* A connection holds a flow limit, a handshake limit or both: the
	 * pool never needs more than the two together. */
	r = relay_worker_init(&cw->rw, &conc_relay_ops, cw, 4096, cfg->nbufs,
			      cfg->bufsize, cfg->max_flows + cfg->max_handshakes);
	cw->rw.parked_quota = &cw->c->limits;
	if (r < 0) {
		log_errno(r, "worker %u: io_uring setup: %m%s", cw->id, ring_setup_why(r));
		report_ready(cw, r);
		return NULL;
	}
	for (unsigned i = 0; i < cfg->nlisten; i++) {
		bool mptcp;
		char a[ADDR_STRLEN];

		if (c->ninherited) {
			r = fcntl(c->inherited[i], F_DUPFD_CLOEXEC, 0);
			if (r < 0)
				r = -errno;
			else if (cfg->tfo_key_len)
				tfokey_apply(r, cfg->tfo_key, cfg->tfo_key_len);
			mptcp = true;  /* main() has warned if it is not */
		} else {
			r = listener_open(cfg, &cfg->listen[i], cfg->listen_len[i], &mptcp);
		}
		if (r < 0) {
			log_errno(r, "listen on %s: %m",
				  addr_format((const struct sockaddr *)&cfg->listen[i], a));
			goto out;
		}
		if (!mptcp && cw->id == 0)
			log_warn("%s: listening with plain TCP on %s (gateways fall back to one path)",
				 sock_mptcp_why(), addr_format((const struct sockaddr *)&cfg->listen[i], a));
		cw->lfd[i] = r;
		worker_arm_accept(cw, i);
	}
	cw->listening = true;
	report_ready(cw, 0);

	r = relay_worker_run(&cw->rw, &conc_loop_ops, &c->stopping,
			     cfg->drain_timeout_ms, &cw->accept_paused);
	if (r < 0)
		log_errno(r, "worker %u: io_uring wait: %m", cw->id);
	r = 0;
out:
	if (!cw->listening && cw->init_result == 0 && r < 0)
		report_ready(cw, r);
	for (unsigned i = 0; i < cfg->nlisten; i++)
		if (cw->lfd[i] >= 0)
			close(cw->lfd[i]);
	relay_worker_abandon(&cw->rw);  /* after a failed wait */
	relay_worker_free(&cw->rw);
	return NULL;
}
