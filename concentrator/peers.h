/* The boxes of a cluster share the cookies they take (README, "Several
 * concentrators"): each tells its siblings, at once, of every cookie its
 * replay cache took, and puts theirs into its own, so a cookie used at one
 * box is refused at the others too. */
#ifndef CONC_PEERS_H
#define CONC_PEERS_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#define CONC_MAX_PEERS 8

/* What became of a message from the network (metrics). */
enum peer_result {
	PEER_M_OK,
	PEER_M_STRANGER,       /* not from a configured peer's address and port */
	PEER_M_MALFORMED,
	PEER_M_BAD_TAG,        /* not authenticated with our key or the backup */
	PEER_M_MAX,
};
/* What became of an entry of an authenticated message. */
enum peer_entry {
	PEER_E_NEW,            /* remembered: refused here from now on */
	PEER_E_SEEN,           /* this box had taken it too (a replay that beat
				* the message, or the same cookie at both) */
	PEER_E_STALE,          /* too old to be taken anyway */
	PEER_E_MAX,
};

struct peers {
	int fd;                                  /* -1: not sharing */
	struct sockaddr_storage peer[CONC_MAX_PEERS];
	socklen_t peer_len[CONC_MAX_PEERS];
	unsigned n;
	pthread_mutex_t key_lock;
	uint8_t key[32];                         /* the TFO key: primary, backup */
	unsigned key_len;
	pthread_t thread;
	int stop[2];
	long next_log_s;                         /* the thread's: refusals logged */
	atomic_uint_fast64_t told, tell_failed;  /* entries sent, sends failed */
	atomic_uint_fast64_t msgs[PEER_M_MAX], entries[PEER_E_MAX];
};

struct conc;
struct mbuf;

/* With cfg.npeers: the socket on cfg.replay_listen and the receiving
 * thread. 0 (also when not configured) or -errno, logged. */
int peers_start(struct conc *c);
/* A cookie (kid, nonce, time) our replay cache just took: to every peer,
 * now (one datagram each, one system call). Any thread. */
void peers_tell(struct conc *c, uint32_t kid, uint64_t nonce, uint32_t time);
/* The TFO key changed (reload): messages are signed with the new one and
 * taken with either. */
void peers_set_key(struct conc *c);
/* The TFO key as peers_set_key last took it (primary, then backup), and
 * its length (0: none, 16 or 32). Any thread. */
unsigned peers_key(struct conc *c, uint8_t out[32]);
void peers_stop(struct conc *c);
void peers_render_metrics(const struct conc *c, struct mbuf *b);

#endif
