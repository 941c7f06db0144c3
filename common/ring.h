/* io_uring setup, provided-buffer rings and user_data packing.
 *
 * user_data never holds a pointer: it packs op (8 bits) | generation (24
 * bits) | slot (32 bits). The generation catches completions that arrive for
 * a slot that has since been freed and reused. */
#ifndef COMMON_RING_H
#define COMMON_RING_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Tries IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN (6.1+), then
 * COOP_TASKRUN, then no flags. Must be called from the thread that will use
 * the ring (SINGLE_ISSUER). *ret_flags says which setup flags took. */
int ring_init(struct io_uring *ring, unsigned entries, unsigned *ret_flags);

/* A provided-buffer ring: up to count buffers of size bytes, registered as
 * group bgid. liburing 2.3 (Debian 12) has no io_uring_setup_buf_ring(), so
 * this maps and registers the ring itself.
 *
 * The kernel takes buffers from the head and we return them at the tail, so
 * a ring cycles through every buffer it holds: with all of them in it, each
 * receive lands in the buffer used longest ago, cold in every cache (with
 * 1024 x 64 KiB that is 64 MiB of streaming copies). So the ring starts
 * with RING_BUFS_START buffers and grows (ring_bufs_grow) only when
 * receives find it empty: the set in use stays as small, and as warm, as
 * the load allows. */
struct ring_bufs {
	struct io_uring_buf_ring *br;
	uint8_t *base;
	size_t ring_bytes;
	unsigned count;   /* power of two */
	unsigned size;
	unsigned avail;   /* buffers currently in the ring */
	unsigned added;   /* buffers handed to the ring so far (<= count) */
	uint16_t bgid;
};

#define RING_BUFS_START 32

/* What an io_uring setup error means here, for its message ("" if nothing
 * more to say): disabled by sysctl, missing from the kernel, too old. */
const char *ring_setup_why(int err);

int ring_bufs_setup(struct io_uring *ring, struct ring_bufs *b, uint16_t bgid,
		    unsigned count, unsigned size);
void ring_bufs_free(struct io_uring *ring, struct ring_bufs *b);
/* Give buffer bid back to the kernel. */
void ring_bufs_put(struct ring_bufs *b, uint16_t bid);
/* Hand up to n more of the count buffers to the ring; how many it added
 * (0 when all are in use already). */
unsigned ring_bufs_grow(struct ring_bufs *b, unsigned n);

static inline uint8_t *ring_bufs_ptr(const struct ring_bufs *b, uint16_t bid)
{
	return b->base + (size_t)bid * b->size;
}

static inline uint64_t ring_ud(unsigned op, uint32_t slot, uint32_t gen)
{
	return ((uint64_t)(op & 0xff) << 56) | ((uint64_t)(gen & 0xffffff) << 32) | slot;
}

static inline unsigned ring_ud_op(uint64_t ud) { return (unsigned)(ud >> 56); }
static inline uint32_t ring_ud_gen(uint64_t ud) { return (uint32_t)(ud >> 32) & 0xffffff; }
static inline uint32_t ring_ud_slot(uint64_t ud) { return (uint32_t)ud; }

/* An SQE, submitting queued ones first if the SQ is full. Never NULL unless
 * the kernel refuses to take any SQE (then -EBUSY semantics: caller retries
 * on the next loop). */
struct io_uring_sqe *ring_get_sqe(struct io_uring *ring);

/* Two adjacent SQEs, for an operation and the LINK_TIMEOUT linked behind
 * it: both or neither. Taking them one at a time can fill the SQ between
 * the two, and ring_get_sqe() would then submit the operation alone, with
 * IOSQE_IO_LINK pointing at nothing: it runs unbounded (an upstream connect
 * then lasts the kernel's ~127 s). So room for both is made first. 0, or
 * -EBUSY when the kernel takes no queued SQE to make room. */
int ring_get_sqe_pair(struct io_uring *ring, struct io_uring_sqe **ret_op,
		      struct io_uring_sqe **ret_timeout);

/* A ring (ring_init) with a provided-buffer ring (ring_bufs_setup) on it:
 * 0, or -errno with nothing left set up. From the thread that will use it. */
int ring_init_with_bufs(struct io_uring *ring, unsigned entries, struct ring_bufs *b,
			uint16_t bgid, unsigned count, unsigned size);
/* A multishot recvmsg on fd into buffers of group bgid, msg saying how
 * much room names and control data get (it must outlive the request),
 * completions tagged ud. False when the SQ has no room (try later). */
bool ring_recvmsg_multishot(struct io_uring *ring, int fd, struct msghdr *msg, uint16_t bgid,
			    uint64_t ud);

/* Close fd through the ring after cancelling the request tagged ud on it
 * (its multishot receive): both queued behind every SQE already made for
 * fd, so its number is not free for another socket before those have run
 * (a send queued for it would otherwise go out of the new one). Their
 * completions are skipped unless they fail (tagged done_ud then). Without
 * room on the SQ even after submitting, fd is closed at once once what was
 * queued is submitted. */
void ring_cancel_close(struct io_uring *ring, uint64_t ud, int fd, uint64_t done_ud);

/* Datagram sends queued on a ring, batched with whatever is submitted
 * next (the UDP carrier at both ends): each send gets a slot holding its
 * own copy of the datagram, its address and control data until its
 * completion (user_data op, slot). A datagram larger than a slot, or one
 * with every slot in flight (or no ring: ring NULL), is sent at once. */
#define RING_SEND_INLINE 2048

struct ring_send {
	struct msghdr mh;
	struct iovec iov;
	struct sockaddr_storage to;
	union {
		char b[64];            /* control data (packet info: 40 at most) */
		uint64_t align;        /* struct cmsghdr's (it ends in a flexible array) */
	} cm;
	uint32_t next_free;        /* index + 1 */
	uint8_t data[RING_SEND_INLINE];
};

struct ring_sendq {
	struct ring_send *slot;
	uint32_t n, free;          /* free list, index + 1 */
	uint32_t fresh;            /* slots [fresh, n) never used (not on the list) */
	unsigned op;               /* the completions' op */
	uint64_t direct, errors;   /* sent at once; refused (at once or at completion) */
};

/* 0 or -ENOMEM. */
int ring_sendq_init(struct ring_sendq *q, uint32_t n, unsigned op);
void ring_sendq_free(struct ring_sendq *q);
/* buf[0..len) by socket fd (to: tolen bytes, NULL for a connected socket;
 * cm: cmlen bytes of control data): queued on ring, or sent at once.
 * False when the kernel refused it at once. */
bool ring_sendq_send(struct ring_sendq *q, struct io_uring *ring, int fd, const void *to,
		     socklen_t tolen, const void *cm, size_t cmlen, const void *buf, size_t len);
/* A completion whose op is q->op: its slot is free again. */
void ring_sendq_done(struct ring_sendq *q, const struct io_uring_cqe *cqe);

#endif
