/* The relay engine both daemons share: a pool of flows (struct relay), each
 * with two halves that move bytes between two sockets through one io_uring
 * and a shared provided-buffer ring.
 *
 * Per half, at most one operation is in flight: a receive into a buffer the
 * kernel picks from the ring, then sends of that buffer until it is gone,
 * then the next receive. A half whose send is pending does not receive, so
 * memory per flow is bounded by two buffers, and an idle flow holds none.
 * EOF on one side becomes shutdown(SHUT_WR) on the other (half-close); an
 * error or reset on either side resets both (SO_LINGER 0).
 *
 * A flow is torn down by relay_close() alone, whatever the reason: it cancels
 * what is in flight and frees the flow once the last completion is in, so no
 * completion ever refers to a freed flow.
 *
 * Daemons add their own operations (handshakes, connects) with op codes from
 * RELAY_OP_USER on, and see them in ops->handle. */
#ifndef COMMON_RELAY_H
#define COMMON_RELAY_H

#include <liburing.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ring.h"
#include "quota.h"

enum relay_state {
	RELAY_FREE = 0,
	RELAY_HANDSHAKE,  /* daemon-specific setup; the daemon owns priv */
	RELAY_PUMP,       /* both halves relaying */
	RELAY_CLOSING,    /* waiting for in-flight completions, then freed */
};

enum relay_half_state {
	HALF_IDLE = 0,
	HALF_RECV,
	HALF_SEND,
	HALF_WAITBUF,  /* no buffer was free: queued until one is */
	HALF_DONE,     /* EOF seen and passed on (shutdown(SHUT_WR) of the other side) */
};

/* Why a flow ended; indexes relay_stats.closed. */
enum relay_end {
	RELAY_END_DONE = 0,    /* both directions closed normally */
	RELAY_END_RESET,       /* a peer reset or a socket error */
	RELAY_END_IDLE,        /* idle timeout */
	RELAY_END_REFUSED,     /* refused during the handshake (policy, errors) */
	RELAY_END_HANDSHAKE,   /* handshake timeout or peer gone during it */
	RELAY_END_SHUTDOWN,    /* daemon stopping */
	RELAY_END_MAX,
};

/* Built-in operations; daemons use codes from RELAY_OP_USER. */
enum relay_op {
	RELAY_OP_RECV0 = 1, RELAY_OP_RECV1,
	RELAY_OP_SEND0, RELAY_OP_SEND1,
	RELAY_OP_CANCEL,
	RELAY_OP_USER = 16,
};

struct relay_half {
	uint32_t off, len;   /* bytes of buffer bid sent so far, and received */
	uint16_t bid;
	uint8_t state;       /* enum relay_half_state */
	uint8_t parking;     /* its stalled send is being cancelled to park */
	uint32_t send_s;     /* when the pending send began or last progressed */
	uint8_t *parked;     /* the unsent bytes, off the shared ring (see below) */
	uint64_t bytes;      /* relayed so far */
};

/* A send to a peer that does not read (a zero window: a paused download, a
 * hostile client) would hold its ring buffer for as long as the peer
 * likes, and a few hundred such flows would hold every buffer of the
 * worker and freeze its other flows. So a send that has made no progress
 * for RELAY_PARK_S is cancelled and its unsent bytes (at most one buffer)
 * move to the flow's own heap copy, giving the buffer back. The half still
 * waits for that send before it receives again, so a parked flow costs at
 * most one buffer's worth of heap and never a shared buffer. */
#define RELAY_PARK_S 2
/* The bound on that heap for the whole process (every worker's flows
 * together), 0 = none: a flow whose stall would pass it is reset and
 * counted (relay_stats.parked_refused). Both daemons set it from their
 * --max-parked-memory. */
void relay_set_parked_limit(uint64_t bytes);
/* And the share of it one client may hold: a flow that parks anything
 * takes one QUOTA_PARKED unit of w->parked_quota for its peer (if set),
 * so a client that stalls many flows meets its own bound (an eighth of
 * the total's worth of buffers, 16 at least) long before the total, and
 * never resets another client's flows. The daemons call it with their
 * quota and buffer size whenever the bound is set. */
void relay_set_parked_share(struct quota *q, uint64_t bytes, uint32_t bufsize);

/* A verified stream (common/vstream.h) on one of the flow's sockets: the
 * half that sends into it frames what it received as records; the half
 * that receives from it reads a record's header (4 bytes, into rx_hdr),
 * then its data and tag, and the next record's header behind them when it
 * is there (one receive per record instead of two: records are at most a
 * buffer less 8 bytes, so the three fit): into a ring buffer when they
 * come in one receive (the usual case), else gathered in rx_buf on the
 * heap, so no shared buffer waits on a slow peer. The data is passed on
 * only once its CRC matches. Allocated only for flows that negotiated it. */
struct relay_vs {
	uint8_t side;                /* fd index that speaks records */
	uint8_t rx_hdr[4];           /* the header being read */
	uint8_t rx_hdr_got;          /* of it, bytes already here (came behind a record) */
	uint8_t tx_hdr[4], tx_tag[4];
	uint32_t rx_len;             /* data bytes of the record being read; 0: a header */
	uint32_t rx_got;             /* bytes of data + tag gathered in rx_buf */
	uint8_t *rx_buf;             /* a record that came in pieces (rx_len + 4) */
	uint32_t rx_crc, tx_crc;     /* each direction's chained CRC so far */
	uint32_t peer_max;           /* largest record data the peer takes */
	uint32_t own_max;            /* largest record data we take (buffer - tag - header) */
	struct msghdr tx_msg;        /* the record being sent, from the half's off */
	struct iovec tx_iov[3];
};

struct relay {
	int fd[2];                   /* 0: the client side, 1: the far side */
	struct relay_half half[2];   /* half[d] moves fd[d] -> fd[!d] */
	uint32_t gen;
	uint32_t slot;
	uint32_t next_free;
	uint16_t inflight;           /* SQEs whose final CQE has not come */
	uint8_t state;               /* enum relay_state */
	uint8_t end;                 /* enum relay_end, once closing */
	uint8_t flags;               /* daemon-specific */
	uint8_t phase;               /* daemon-specific handshake phase */
	uint32_t since_s;            /* when the current phase began */
	uint32_t active_s;           /* last byte relayed (coarse seconds) */
	uint32_t checked_s;          /* last subflow check (MPTCP flows) */
	uint32_t orphan_s;           /* first seen with no subflow, 0 = has one */
	struct in6_addr peer;        /* client address, mapped for IPv4 */
	struct in6_addr far;         /* far-side address, for logs */
	uint16_t far_port;
	void *priv;                  /* daemon state during the handshake */
	struct relay_vs *vs;         /* verified stream, or NULL (relay_verify) */
	uint32_t parked_held;        /* heap this flow holds off the ring */
};

struct relay_stats {
	uint64_t bytes[2];           /* per direction: 0 client->far, 1 far->client */
	uint64_t opened;
	uint64_t closed[RELAY_END_MAX];
	uint64_t nobufs;             /* receives that found the buffer ring empty */
	uint64_t parked;             /* stalled sends moved off the ring */
	uint64_t parked_bytes;       /* heap held by parked sends now */
	uint64_t parked_refused;     /* flows reset: parking would pass the bound */
	uint64_t active;
	uint64_t verified;           /* flows that ran as a verified stream */
	uint64_t vs_damaged;         /* records whose CRC did not match: reset */
	uint64_t vs_broken;          /* malformed or truncated records: reset */
	uint64_t vs_whole;           /* records received in one receive */
	uint64_t vs_gathered;        /* records that came in pieces: gathered on the heap */
};

struct relay_worker;

struct relay_ops {
	/* Daemon operations (op >= RELAY_OP_USER). The CQE is final unless it
	 * has IORING_CQE_F_MORE. r is NULL for ops not tied to a flow (slot
	 * RELAY_NO_SLOT), for example accept. Not called for a closing flow. */
	void (*handle)(struct relay_worker *w, struct relay *r, unsigned op,
		       const struct io_uring_cqe *cqe);
	/* Optional: half d saw EOF (its FIN is being passed on); the flow is
	 * still open both ways at the socket level. */
	void (*on_eof)(struct relay_worker *w, struct relay *r, int d);
	/* Called once when a flow starts closing (for logs and counters). */
	void (*on_close)(struct relay_worker *w, struct relay *r);
	/* Called when the flow is freed: release priv and any accounting. */
	void (*on_free)(struct relay_worker *w, struct relay *r);
};

#define RELAY_NO_SLOT UINT32_MAX

struct relay_wait {
	uint32_t slot, gen;
	uint8_t dir;
};

struct relay_worker {
	struct io_uring ring;
	struct ring_bufs bufs;
	/* Buffers kept out of the ring, most recently used on top: the ring
	 * holds about ring_target of them so its FIFO cycles through a small,
	 * cache-warm set; the target doubles when receives find the ring empty
	 * and, after 5 s without that, halves every second (see ring.h). */
	uint16_t *spare;
	unsigned nspare;
	unsigned ring_target;
	bool ring_released;          /* free ring buffers' pages given back */
	uint64_t last_nobufs_ms, last_shrink_ms;
	uint64_t quiet_bytes, quiet_since_ms;  /* bytes relayed, unchanged since */
	unsigned ring_flags;
	const struct relay_ops *ops;
	void *owner;                 /* the daemon's per-worker state */
	struct quota *parked_quota;  /* per-client share of parked heap, or NULL */

	struct relay **chunks;       /* pool: chunks of RELAY_CHUNK flows */
	uint32_t nchunks;
	uint32_t nslots;
	uint32_t free_head;          /* slot + 1, 0 = empty */
	uint32_t max_slots;

	struct relay_wait *waitq;    /* halves waiting for a buffer (FIFO) */
	uint32_t wait_head, wait_len, wait_cap;

	uint32_t now_s;              /* coarse clock, updated each loop */
	uint64_t now_ms;
	struct relay_stats stats;
};

#define RELAY_CHUNK 256

/* Sets up the ring (entries SQEs) and a buffer ring of nbufs x bufsize.
 * max_slots bounds the pool. Call from the worker's own thread. */
int relay_worker_init(struct relay_worker *w, const struct relay_ops *ops,
		      void *owner, unsigned entries, unsigned nbufs,
		      unsigned bufsize, uint32_t max_slots);
/* Frees everything; flows must be closed first (relay_worker_close_all). */
void relay_worker_free(struct relay_worker *w);

/* A new flow in RELAY_HANDSHAKE with fd[0] = fd, fd[1] = -1, or NULL when
 * the pool is full (-ENOSPC) or out of memory. */
struct relay *relay_new(struct relay_worker *w, int fd);
/* Start relaying both ways; both fds must be set. */
void relay_start(struct relay_worker *w, struct relay *r);
/* Before relay_start: fd[side] speaks the verified stream, whose peer takes
 * records of up to peer_max data bytes. -ENOMEM if its state cannot be had
 * (the flow stays plain; the caller resets it: the peer expects records). */
int relay_verify(struct relay_worker *w, struct relay *r, int side, uint32_t peer_max);
/* The largest record data a worker takes: what to offer in the TLV. Its
 * data, tag and the next record's header fit one buffer. */
static inline uint32_t relay_vs_max(const struct relay_worker *w)
{
	return w->bufs.size - 8;
}
/* The one teardown path. reset: close with RST (SO_LINGER 0). */
void relay_close(struct relay_worker *w, struct relay *r, enum relay_end end,
		 bool reset);
/* Close every flow (shutdown), with a reset: none of them had finished. */
void relay_close_all(struct relay_worker *w, enum relay_end end);

/* An SQE for op on flow r (r may be NULL with slot RELAY_NO_SLOT): sets
 * user_data and counts it in flight. NULL only if the SQ is stuck. */
struct io_uring_sqe *relay_sqe(struct relay_worker *w, struct relay *r,
			       unsigned op);

/* The operation tmpl (made with an io_uring_prep_* call on a local SQE) as
 * op on flow r, with a LINK_TIMEOUT of *ts (as timeout_op) linked behind it:
 * both are queued, or neither (-EBUSY, nothing counted in flight). *ts must
 * live until the flow is freed (the flow's own state). The one way both
 * daemons bound an operation in time (ring_get_sqe_pair says why). */
int relay_submit_timed(struct relay_worker *w, struct relay *r,
		       const struct io_uring_sqe *tmpl, unsigned op,
		       unsigned timeout_op, struct __kernel_timespec *ts);

/* Wait up to timeout_ms for completions and dispatch them. */
int relay_worker_poll(struct relay_worker *w, unsigned timeout_ms);

/* The worker's life after setup, the same for both daemons: poll, and every
 * tick (250 ms): stop accepting once *stopping is set, then let flows drain
 * for drain_ms and close the rest; resume accepting after an out-of-fds
 * pause (*accept_paused, set by the accept handler); the daemon's own tick.
 * Returns 0 once stopped and drained, or the io_uring error. */
struct relay_loop_ops {
	void (*stop_accepting)(struct relay_worker *w);
	void (*resume_accepting)(struct relay_worker *w);
	void (*tick)(struct relay_worker *w);
};
int relay_worker_run(struct relay_worker *w, const struct relay_loop_ops *ops,
		     atomic_int *stopping, unsigned drain_ms, bool *accept_paused);
/* After a failed ring: close what is still open without it. */
void relay_worker_abandon(struct relay_worker *w);

/* Iterate over live flows: for (r = NULL; (r = relay_next(w, r));) */
struct relay *relay_next(struct relay_worker *w, struct relay *r);

uint32_t relay_active(const struct relay_worker *w);
/* sum += st (for metrics: each worker's stats, read without locks). */
void relay_stats_add(struct relay_stats *sum, const struct relay_stats *st);

#endif
