/* Cookies shared between the boxes of a cluster (peers.h).
 *
 * Why: behind one service address, ECMP sends each connection to any box,
 * and a replay cache per box let a cookie seen on the wire be used once
 * more at every other box within its 90 s. Each box now sends every cookie
 * it takes to its siblings the moment it takes it (before the request is
 * acted on), and takes theirs into its own cache. What is left is a race:
 * a replay that reaches another box before the message does (a LAN's
 * delay, well under a millisecond) is still taken; the receiving box
 * counts those (mptcp_concentrator_replay_peer_entries_total{result=
 * "seen"}). Closing it would mean asking a sibling before every 0-RTT
 * request, a round trip and a dependency on every box being up.
 *
 * Messages (replaymsg.h) are UDP between the boxes' replay-listen
 * addresses, taken only from the configured peers' addresses and ports
 * and authenticated with the TFO key the boxes share (HMAC under a label
 * of its own, so the key's two uses do not mix; tagged with the primary
 * and the backup, so a rotation by reload, box after box, loses nothing).
 * Entries are idempotent (a cookie remembered twice is remembered once)
 * and taken only within a cookie's own window, so a recorded message sent
 * again later does nothing, and sooner only repeats what the cache has
 * (counted as seen). */
#include "peers.h"
#include "concentrator.h"
#include "replaymsg.h"

#include "cookie.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static void tag(const uint8_t *key, const uint8_t *msg, size_t len, uint8_t out[REPLAYMSG_TAG])
{
	static const char label[] = "mptcp-ha replay 2";
	uint8_t buf[sizeof(label) - 1 + REPLAYMSG_LEN(REPLAYMSG_MAX)], mac[EVP_MAX_MD_SIZE];
	unsigned ml = 0;

	memcpy(buf, label, sizeof(label) - 1);
	memcpy(buf + sizeof(label) - 1, msg, len);
	HMAC(EVP_sha256(), key, 16, buf, sizeof(label) - 1 + len, mac, &ml);
	memcpy(out, mac, REPLAYMSG_TAG);
}

void peers_tell(struct conc *c, uint32_t kid, uint64_t nonce, uint32_t time)
{
	struct peers *p = &c->peers;
	struct replaymsg_entry e = { .kid = kid, .time = time, .nonce = nonce };
	uint8_t msg[REPLAYMSG_LEN(1)], key[32];
	struct mmsghdr mm[CONC_MAX_PEERS];
	struct iovec iov = { .iov_base = msg, .iov_len = sizeof(msg) };
	unsigned klen, done = 0;
	size_t off;

	if (p->fd < 0)
		return;
	pthread_mutex_lock(&p->key_lock);
	memcpy(key, p->key, sizeof(key));
	klen = p->key_len;
	pthread_mutex_unlock(&p->key_lock);
	off = replaymsg_build(msg, &e, 1);
	tag(key, msg, off, msg + off);
	tag(klen >= 32 ? key + 16 : key, msg, off, msg + off + REPLAYMSG_TAG);
	OPENSSL_cleanse(key, sizeof(key));
	memset(mm, 0, sizeof(mm));
	for (unsigned i = 0; i < p->n; i++) {
		mm[i].msg_hdr.msg_name = &p->peer[i];
		mm[i].msg_hdr.msg_namelen = p->peer_len[i];
		mm[i].msg_hdr.msg_iov = &iov;
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	/* sendmmsg stops at the first message that fails (one peer
	 * unreachable): the rest are sent on, past it. */
	while (done < p->n) {
		int r = sendmmsg(p->fd, mm + done, p->n - done, MSG_DONTWAIT);

		if (r > 0) {
			done += (unsigned)r;
			continue;
		}
		atomic_fetch_add(&p->tell_failed, 1);
		done++;
	}
	atomic_fetch_add(&p->told, 1);
}

/* A refused message, logged at most every 10 s (the thread's own). */
static void refused_log(struct peers *p, const struct sockaddr_storage *from, const char *why)
{
	struct timespec ts;
	char a[ADDR_STRLEN];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (ts.tv_sec < p->next_log_s)
		return;
	p->next_log_s = ts.tv_sec + 10;
	log_warn("replay-listen: a message from %s refused: %s (more are counted, not logged, "
		 "for 10 s)", addr_format((const struct sockaddr *)from, a), why);
}

static bool from_peer(const struct peers *p, const struct sockaddr_storage *from)
{
	struct in6_addr a, b;
	uint16_t pa, pb;

	if (addr_to_in6((const struct sockaddr *)from, &a, &pa) < 0)
		return false;
	for (unsigned i = 0; i < p->n; i++)
		if (addr_to_in6((const struct sockaddr *)&p->peer[i], &b, &pb) == 0 &&
		    pa == pb && !memcmp(&a, &b, sizeof(a)))
			return true;
	return false;
}

static void take(struct conc *c, const uint8_t *buf, size_t len,
		 const struct sockaddr_storage *from)
{
	struct peers *p = &c->peers;
	struct replaymsg_entry e[REPLAYMSG_MAX];
	uint8_t key[32], t[REPLAYMSG_TAG];
	unsigned klen;
	const char *why;
	bool ok = false;
	int n;

	uint32_t now = (uint32_t)time(NULL);

	if (!from_peer(p, from)) {
		atomic_fetch_add(&p->msgs[PEER_M_STRANGER], 1);
		refused_log(p, from, "not from a replay-peer's address and port");
		return;
	}
	n = replaymsg_parse(buf, len, e, &why);
	if (n < 0) {
		atomic_fetch_add(&p->msgs[PEER_M_MALFORMED], 1);
		refused_log(p, from, why);
		return;
	}
	pthread_mutex_lock(&p->key_lock);
	memcpy(key, p->key, sizeof(key));
	klen = p->key_len;
	pthread_mutex_unlock(&p->key_lock);
	/* Either of its tags under either of our keys. */
	for (unsigned k = 0; k + 16 <= klen && !ok; k += 16) {
		size_t body = len - REPLAYMSG_TAGS * REPLAYMSG_TAG;

		tag(key + k, buf, body, t);
		for (unsigned j = 0; j < REPLAYMSG_TAGS && !ok; j++)
			ok = !CRYPTO_memcmp(t, buf + body + j * REPLAYMSG_TAG, REPLAYMSG_TAG);
	}
	OPENSSL_cleanse(key, sizeof(key));
	if (!ok) {
		atomic_fetch_add(&p->msgs[PEER_M_BAD_TAG], 1);
		refused_log(p, from, "not authenticated with our TFO key or its backup (do the "
			    "boxes' tfo_key_file differ?)");
		return;
	}
	atomic_fetch_add(&p->msgs[PEER_M_OK], 1);
	for (int i = 0; i < n; i++) {
		int r = -ESTALE;

		/* Only within the window a cookie is good in (cookie_check's):
		 * older entries, recorded and sent again, would only fill the
		 * cache. */
		if (e[i].time + COOKIE_MAX_AGE_S >= now && e[i].time <= now + COOKIE_MAX_AGE_S)
			r = replay_check(&c->replay, e[i].kid, e[i].nonce, e[i].time, now);
		atomic_fetch_add(&p->entries[r == 0 ? PEER_E_NEW : r == -EALREADY ? PEER_E_SEEN
							: PEER_E_STALE], 1);
	}
}

static void *peers_main(void *arg)
{
	struct conc *c = arg;
	struct peers *p = &c->peers;

	for (;;) {
		struct pollfd pf[2] = { { .fd = p->fd, .events = POLLIN },
					{ .fd = p->stop[0], .events = POLLIN } };

		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents)
			break;
		for (unsigned i = 0; i < 256; i++) {  /* then the stop pipe again */
			uint8_t buf[REPLAYMSG_LEN(REPLAYMSG_MAX) + 1];
			struct sockaddr_storage from;
			socklen_t fl = sizeof(from);
			ssize_t k = recvfrom(p->fd, buf, sizeof(buf), MSG_DONTWAIT,
					     (struct sockaddr *)&from, &fl);

			if (k < 0)
				break;
			take(c, buf, (size_t)k, &from);
		}
	}
	return NULL;
}

unsigned peers_key(struct conc *c, uint8_t out[32])
{
	struct peers *p = &c->peers;
	unsigned n;

	pthread_mutex_lock(&p->key_lock);
	memcpy(out, p->key, sizeof(p->key));
	n = p->key_len;
	pthread_mutex_unlock(&p->key_lock);
	return n;
}

void peers_set_key(struct conc *c)
{
	struct peers *p = &c->peers;

	pthread_mutex_lock(&p->key_lock);
	memcpy(p->key, c->cfg.tfo_key, sizeof(p->key));
	p->key_len = c->cfg.tfo_key_len;
	pthread_mutex_unlock(&p->key_lock);
}

int peers_start(struct conc *c)
{
	struct peers *p = &c->peers;
	const struct conc_config *cfg = &c->cfg;
	char a[ADDR_STRLEN];
	int r;

	p->fd = -1;
	pthread_mutex_init(&p->key_lock, NULL);
	peers_set_key(c);  /* peers_key's, for the UDP carrier too */
	if (!cfg->npeers)
		return 0;
	p->n = cfg->npeers;
	memcpy(p->peer, cfg->peer, sizeof(p->peer));
	memcpy(p->peer_len, cfg->peer_len, sizeof(p->peer_len));
	p->fd = socket(cfg->replay_listen.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (p->fd < 0)
		return log_errno(-errno, "replay-listen: %m");
	if (bind(p->fd, (const struct sockaddr *)&cfg->replay_listen, cfg->replay_listen_len) < 0 ||
	    pipe2(p->stop, O_CLOEXEC) < 0) {
		r = -errno;
		close(p->fd);
		p->fd = -1;
		return log_errno(r, "replay-listen %s: %m",
				 addr_format((const struct sockaddr *)&cfg->replay_listen, a));
	}
	r = pthread_create(&p->thread, NULL, peers_main, c);
	if (r) {
		close(p->stop[0]);
		close(p->stop[1]);
		close(p->fd);
		p->fd = -1;
		return log_errno(-r, "cannot start the replay-peer thread: %m");
	}
	pthread_setname_np(p->thread, "peers");
	log_info("sharing the cookies taken with %u other box%s (replay-listen %s)", p->n,
		 p->n == 1 ? "" : "es",
		 addr_format((const struct sockaddr *)&cfg->replay_listen, a));
	return 0;
}

void peers_stop(struct conc *c)
{
	struct peers *p = &c->peers;

	if (p->fd >= 0) {
		(void)!write(p->stop[1], "x", 1);
		pthread_join(p->thread, NULL);
		close(p->stop[0]);
		close(p->stop[1]);
		close(p->fd);
		p->fd = -1;
	}
	OPENSSL_cleanse(p->key, sizeof(p->key));
	pthread_mutex_destroy(&p->key_lock);
}

void peers_render_metrics(const struct conc *c, struct mbuf *b)
{
	static const char *const mres[PEER_M_MAX] = { "ok", "stranger", "malformed", "bad_tag" };
	static const char *const eres[PEER_E_MAX] = { "new", "seen", "stale" };
	const struct peers *p = &c->peers;
	char l[64];

	if (!c->cfg.npeers)
		return;
	metrics_one(b, "mptcp_concentrator_replay_peer_told_total", "counter",
		    "Cookies taken here and sent to the other boxes (replay-peer).",
		    atomic_load(&p->told));
	metrics_one(b, "mptcp_concentrator_replay_peer_send_failures_total", "counter",
		    "Messages to other boxes that could not be sent.", atomic_load(&p->tell_failed));
	metrics_head(b, "mptcp_concentrator_replay_peer_messages_total", "counter",
		     "Messages received on replay-listen, by what became of them.");
	for (unsigned k = 0; k < PEER_M_MAX; k++) {
		snprintf(l, sizeof(l), "result=\"%s\"", mres[k]);
		metrics_u64(b, "mptcp_concentrator_replay_peer_messages_total", l,
			    atomic_load(&p->msgs[k]));
	}
	metrics_head(b, "mptcp_concentrator_replay_peer_entries_total", "counter",
		     "Cookies other boxes took, by what this box knew of them (seen: taken here "
		     "too, a replay that came before the message).");
	for (unsigned k = 0; k < PEER_E_MAX; k++) {
		snprintf(l, sizeof(l), "result=\"%s\"", eres[k]);
		metrics_u64(b, "mptcp_concentrator_replay_peer_entries_total", l,
			    atomic_load(&p->entries[k]));
	}
}
