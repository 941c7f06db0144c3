#include "relay.h"
#include "log.h"
#include "vstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <malloc.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Give freed heap pages back (glibc's malloc_trim). Not under AddressSanitizer:
 * its allocator is not glibc's, and libasan does not intercept malloc_trim,
 * so the call would initialise glibc's own malloc from a worker thread and
 * make that thread's exit trip glibc's arena accounting ("malloc assertion
 * failure in __malloc_arena_thread_freeres", hostile.sh under ASan). */
#if defined(__SANITIZE_ADDRESS__)
#define RELAY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RELAY_ASAN 1
#endif
#endif
static void heap_trim(void)
{
#ifndef RELAY_ASAN
	malloc_trim(0);
#endif
}

static struct relay *slot_get(struct relay_worker *w, uint32_t slot)
{
	if (slot >= w->nslots)
		return NULL;
	return &w->chunks[slot / RELAY_CHUNK][slot % RELAY_CHUNK];
}

static int pool_grow(struct relay_worker *w)
{
	struct relay **chunks, *c;
	uint32_t base = w->nslots;

	if (w->nslots >= w->max_slots)
		return -ENOSPC;
	chunks = realloc(w->chunks, (w->nchunks + 1) * sizeof(*chunks));
	if (!chunks)
		return -ENOMEM;
	w->chunks = chunks;
	c = calloc(RELAY_CHUNK, sizeof(*c));
	if (!c)
		return -ENOMEM;
	w->chunks[w->nchunks++] = c;
	w->nslots += RELAY_CHUNK;
	/* Push in reverse so low slots are used first. */
	for (uint32_t i = RELAY_CHUNK; i-- > 0;) {
		c[i].slot = base + i;
		c[i].fd[0] = c[i].fd[1] = -1;
		c[i].next_free = w->free_head;
		w->free_head = base + i + 1;
	}
	return 0;
}

static void clock_update(struct relay_worker *w)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	w->now_s = (uint32_t)ts.tv_sec;
	w->now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int relay_worker_init(struct relay_worker *w, const struct relay_ops *ops,
		      void *owner, unsigned entries, unsigned nbufs,
		      unsigned bufsize, uint32_t max_slots)
{
	int r;

	memset(w, 0, sizeof(*w));
	w->ops = ops;
	w->owner = owner;
	w->max_slots = max_slots;
	r = ring_init(&w->ring, entries, &w->ring_flags);
	if (r < 0)
		return r;
	r = ring_bufs_setup(&w->ring, &w->bufs, 0, nbufs, bufsize);
	if (r < 0) {
		io_uring_queue_exit(&w->ring);
		return r;
	}
	w->spare = malloc(nbufs * sizeof(*w->spare));
	if (!w->spare) {
		ring_bufs_free(&w->ring, &w->bufs);
		io_uring_queue_exit(&w->ring);
		return -ENOMEM;
	}
	w->ring_target = w->bufs.added;
	clock_update(w);
	return 0;
}

void relay_worker_free(struct relay_worker *w)
{
	ring_bufs_free(&w->ring, &w->bufs);
	io_uring_queue_exit(&w->ring);
	for (uint32_t i = 0; i < w->nchunks; i++)
		free(w->chunks[i]);
	free(w->chunks);
	free(w->waitq);
	free(w->spare);
	w->chunks = NULL;
	w->waitq = NULL;
	w->spare = NULL;
}

struct io_uring_sqe *relay_sqe(struct relay_worker *w, struct relay *r,
			       unsigned op)
{
	struct io_uring_sqe *sqe = ring_get_sqe(&w->ring);

	if (!sqe)
		return NULL;
	if (r) {
		io_uring_sqe_set_data64(sqe, ring_ud(op, r->slot, r->gen));
		r->inflight++;
	} else {
		io_uring_sqe_set_data64(sqe, ring_ud(op, RELAY_NO_SLOT, 0));
	}
	return sqe;
}

int relay_submit_timed(struct relay_worker *w, struct relay *r,
		       const struct io_uring_sqe *tmpl, unsigned op,
		       unsigned timeout_op, struct __kernel_timespec *ts)
{
	struct io_uring_sqe *sqe, *t;

	if (ring_get_sqe_pair(&w->ring, &sqe, &t) < 0)
		return -EBUSY;
	*sqe = *tmpl;
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, ring_ud(op, r->slot, r->gen));
	io_uring_prep_link_timeout(t, ts, 0);
	io_uring_sqe_set_data64(t, ring_ud(timeout_op, r->slot, r->gen));
	r->inflight += 2;
	return 0;
}

struct relay *relay_new(struct relay_worker *w, int fd)
{
	struct relay *r;
	uint32_t gen;

	if (!w->free_head && pool_grow(w) < 0)
		return NULL;
	r = slot_get(w, w->free_head - 1);
	w->free_head = r->next_free;
	gen = r->gen;
	{
		uint32_t slot = r->slot;

		memset(r, 0, sizeof(*r));
		r->slot = slot;
	}
	r->gen = gen;
	r->fd[0] = fd;
	r->fd[1] = -1;
	r->state = RELAY_HANDSHAKE;
	r->since_s = r->active_s = w->now_s;
	w->stats.opened++;
	w->stats.active++;
	return r;
}

static bool vs_take_hdr(struct relay_worker *w, struct relay *r);

static void arm_recv(struct relay_worker *w, struct relay *r, int d)
{
	struct io_uring_sqe *sqe;

	/* The next record's whole header came behind the last record: on to
	 * its data. */
	if (r->vs && d == r->vs->side && r->vs->rx_len == 0 &&
	    r->vs->rx_hdr_got == VSTREAM_HDR && !vs_take_hdr(w, r))
		return;
	sqe = relay_sqe(w, r, RELAY_OP_RECV0 + d);
	if (!sqe) {
		relay_close(w, r, RELAY_END_RESET, true);
		return;
	}
	if (r->vs && d == r->vs->side && r->vs->rx_len == 0) {
		/* A record's header (what of it did not come behind the last
		 * record), into the flow's own bytes: no buffer is held while
		 * a verified flow is idle. */
		io_uring_prep_recv(sqe, r->fd[d], r->vs->rx_hdr + r->vs->rx_hdr_got,
				   VSTREAM_HDR - r->vs->rx_hdr_got, MSG_WAITALL);
	} else if (r->vs && d == r->vs->side && r->vs->rx_buf) {
		/* The rest of a record that came in pieces, into its heap. */
		struct relay_vs *vs = r->vs;

		io_uring_prep_recv(sqe, r->fd[d], vs->rx_buf + vs->rx_got,
				   vs->rx_len + VSTREAM_TAG - vs->rx_got, 0);
	} else {
		unsigned len = w->bufs.size;

		if (r->vs && d == r->vs->side)
			/* this record and the next one's header, no more */
			len = r->vs->rx_len + VSTREAM_TAG + VSTREAM_HDR;
		else if (r->vs && len > r->vs->peer_max)
			len = r->vs->peer_max;   /* records the peer can take */
		/* Never MSG_WAITALL with a ring buffer: the buffer would wait on
		 * the peer, and the ring's accounting (and its release of idle
		 * pages) assumes a receive fills its buffer in one go. */
		io_uring_prep_recv(sqe, r->fd[d], NULL, len, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = w->bufs.bgid;
	}
	r->half[d].state = HALF_RECV;
}

/* The half that frames records for fd[vs->side]. */
static bool vs_framing(const struct relay *r, int d)
{
	return r->vs && d != r->vs->side;
}

static void arm_send(struct relay_worker *w, struct relay *r, int d)
{
	struct relay_half *h = &r->half[d];
	struct io_uring_sqe *sqe = relay_sqe(w, r, RELAY_OP_SEND0 + d);

	if (!sqe) {
		relay_close(w, r, RELAY_END_RESET, true);
		return;
	}
	if (vs_framing(r, d) && !h->parked) {
		/* Header, data (in the ring buffer) and tag, from where the
		 * last partial send stopped. */
		struct relay_vs *vs = r->vs;
		uint32_t dlen = h->len - VSTREAM_OVERHEAD, off = h->off;
		struct { uint8_t *p; uint32_t n; } part[3] = {
			{ vs->tx_hdr, VSTREAM_HDR },
			{ ring_bufs_ptr(&w->bufs, h->bid), dlen },
			{ vs->tx_tag, VSTREAM_TAG },
		};
		unsigned n = 0;

		for (int i = 0; i < 3; i++) {
			if (off >= part[i].n) {
				off -= part[i].n;
				continue;
			}
			vs->tx_iov[n].iov_base = part[i].p + off;
			vs->tx_iov[n].iov_len = part[i].n - off;
			off = 0;
			n++;
		}
		memset(&vs->tx_msg, 0, sizeof(vs->tx_msg));
		vs->tx_msg.msg_iov = vs->tx_iov;
		vs->tx_msg.msg_iovlen = n;
		io_uring_prep_sendmsg(sqe, r->fd[!d], &vs->tx_msg, MSG_NOSIGNAL);
	} else {
		io_uring_prep_send(sqe, r->fd[!d],
				   (h->parked ? h->parked : ring_bufs_ptr(&w->bufs, h->bid)) + h->off,
				   h->len - h->off, MSG_NOSIGNAL);
	}
	if (h->state != HALF_SEND)
		h->send_s = w->now_s;
	h->state = HALF_SEND;
}

static void wait_push(struct relay_worker *w, struct relay *r, int d)
{
	if (w->wait_len == w->wait_cap) {
		uint32_t cap = w->wait_cap ? w->wait_cap * 2 : 64;
		struct relay_wait *q = malloc(cap * sizeof(*q));

		if (!q) {
			relay_close(w, r, RELAY_END_RESET, true);
			return;
		}
		for (uint32_t i = 0; i < w->wait_len; i++)
			q[i] = w->waitq[(w->wait_head + i) % w->wait_cap];
		free(w->waitq);
		w->waitq = q;
		w->wait_cap = cap;
		w->wait_head = 0;
	}
	w->waitq[(w->wait_head + w->wait_len) % w->wait_cap] =
		(struct relay_wait){ .slot = r->slot, .gen = r->gen, .dir = (uint8_t)d };
	w->wait_len++;
	r->half[d].state = HALF_WAITBUF;
}

/* A buffer came back: let the longest-waiting half try again. Entries whose
 * flow has closed or moved on are skipped. */
static void wait_pop(struct relay_worker *w)
{
	while (w->wait_len) {
		struct relay_wait e = w->waitq[w->wait_head];
		struct relay *r;

		w->wait_head = (w->wait_head + 1) % w->wait_cap;
		w->wait_len--;
		r = slot_get(w, e.slot);
		if (r && r->gen == e.gen && r->state == RELAY_PUMP &&
		    r->half[e.dir].state == HALF_WAITBUF) {
			arm_recv(w, r, e.dir);
			return;
		}
	}
}

/* A buffer is free again: into the ring if the ring is below its target or
 * someone waits for one, else onto the spare stack. */
static void buf_put(struct relay_worker *w, uint16_t bid)
{
	if (w->bufs.avail >= w->ring_target && !w->wait_len) {
		w->spare[w->nspare++] = bid;
		return;
	}
	ring_bufs_put(&w->bufs, bid);
	wait_pop(w);
}

/* Demand fell: hand the memory of the spare buffers beyond the new target
 * back to the kernel (the bottom of the stack: least recently used). They
 * stay ours; a later burst faults fresh zero pages in. So a worker's RSS
 * follows its load instead of its largest burst. */
static void bufs_release_cold(struct relay_worker *w)
{
	unsigned keep = w->ring_target;

	/* Whole pages only: a page shared with a buffer in use must stay. */
	if (w->bufs.size % (unsigned)sysconf(_SC_PAGESIZE))
		return;
	for (unsigned i = 0; i + keep < w->nspare; i++)
		madvise(ring_bufs_ptr(&w->bufs, w->spare[i]), w->bufs.size, MADV_DONTNEED);
}

/* The load is over (the target is back at its minimum): give back the
 * memory of every buffer sitting free in the ring as well. Those are all
 * buffers not held by a send (or the spare stack), since a receive picks
 * its buffer and copies into it in one go. That go runs in this thread
 * only when the ring defers its task work to us (DEFER_TASKRUN): then no
 * copy can be under way while we zap pages, and a later receive simply
 * faults fresh ones in. Without it, the ring's buffers stay resident. */
static void bufs_release_ring(struct relay_worker *w)
{
	uint8_t *held;

	if (!(w->ring_flags & IORING_SETUP_DEFER_TASKRUN) || w->ring_released ||
	    w->bufs.size % (unsigned)sysconf(_SC_PAGESIZE))
		return;
	held = calloc(w->bufs.count, 1);
	if (!held)
		return;
	for (struct relay *r = NULL; (r = relay_next(w, r));)
		for (int d = 0; d < 2; d++)
			if (r->half[d].state == HALF_SEND && !r->half[d].parked)
				held[r->half[d].bid] = 1;
	for (unsigned i = 0; i < w->nspare; i++)
		held[w->spare[i]] = 1;
	for (unsigned b = 0; b < w->bufs.added; b++)
		if (!held[b])
			madvise(ring_bufs_ptr(&w->bufs, (uint16_t)b), w->bufs.size, MADV_DONTNEED);
	free(held);
	w->ring_released = true;
}

/* Receives found the ring empty: demand is up. Double the target, refill
 * from the spare stack (most recently used first: warm), then with buffers
 * never used yet. Returns how many went in. */
static unsigned bufs_refill(struct relay_worker *w)
{
	unsigned n = 0;

	w->last_nobufs_ms = w->now_ms;
	w->ring_released = false;
	if (w->ring_target < w->bufs.count)
		w->ring_target = w->ring_target * 2 < w->bufs.count ? w->ring_target * 2 : w->bufs.count;
	while (w->nspare && w->bufs.avail < w->ring_target) {
		ring_bufs_put(&w->bufs, w->spare[--w->nspare]);
		n++;
	}
	if (w->bufs.avail < w->ring_target)
		n += ring_bufs_grow(&w->bufs, w->ring_target - w->bufs.avail);
	return n;
}

/* Heap held by parked sends and gathered records, every worker of the
 * process together, and its bound (0: none). Each flow holds at most one
 * buffer's worth, but flows are many: 4,096 per client at the concentrator
 * would be half a GiB for one client whose peers never read. */
static atomic_uint_fast64_t parked_total, parked_limit;

void relay_set_parked_limit(uint64_t bytes)
{
	atomic_store(&parked_limit, bytes);
}

void relay_set_parked_share(struct quota *q, uint64_t bytes, uint32_t bufsize)
{
	uint64_t share = bufsize ? bytes / 8 / bufsize : 0;

	relay_set_parked_limit(bytes);
	quota_set(q, QUOTA_PARKED, 0, !bytes ? 0 : share < 16 ? 16 : (uint32_t)share);
}

/* n more bytes of heap for r, stalled, within the bound and within r's
 * client's share: false (and counted) when it would pass either, and the
 * caller resets that flow. */
static bool parked_take(struct relay_worker *w, struct relay *r, uint64_t n)
{
	uint64_t lim = atomic_load(&parked_limit);

	if (!r->parked_held && w->parked_quota &&
	    quota_take(w->parked_quota, QUOTA_PARKED, &r->peer) < 0) {
		w->stats.parked_refused++;
		return false;
	}
	if (atomic_fetch_add(&parked_total, n) + n > lim && lim) {
		atomic_fetch_sub(&parked_total, n);
		if (!r->parked_held && w->parked_quota)
			quota_release(w->parked_quota, QUOTA_PARKED, &r->peer);
		w->stats.parked_refused++;
		return false;
	}
	r->parked_held += (uint32_t)n;
	w->stats.parked_bytes += n;
	return true;
}

static void parked_give(struct relay_worker *w, struct relay *r, uint64_t n)
{
	atomic_fetch_sub(&parked_total, n);
	w->stats.parked_bytes -= n;
	r->parked_held -= (uint32_t)n;
	if (!r->parked_held && w->parked_quota)
		quota_release(w->parked_quota, QUOTA_PARKED, &r->peer);
}

/* The half's data is sent (or the flow is gone): give back whatever holds
 * it, the ring buffer or the parked copy. */
static void half_release(struct relay_worker *w, struct relay *r, struct relay_half *h)
{
	if (h->parked) {
		parked_give(w, r, h->len);
		free(h->parked);
		h->parked = NULL;
	} else {
		buf_put(w, h->bid);
	}
}

/* Move the unsent bytes of h off the ring (RELAY_PARK_S). -ENOMEM keeps
 * them where they are; -ENOBUFS: the bound on parked memory would be
 * passed (the caller resets the flow). */
static int half_park(struct relay_worker *w, struct relay *r, int d)
{
	struct relay_half *h = &r->half[d];
	uint32_t n = h->len - h->off;
	uint8_t *p;

	if (!parked_take(w, r, n))
		return -ENOBUFS;
	p = malloc(n ? n : 1);
	if (!p) {
		parked_give(w, r, n);
		return -ENOMEM;
	}
	if (vs_framing(r, d)) {
		/* The rest of the record as it goes on the wire. */
		uint32_t dlen = h->len - VSTREAM_OVERHEAD;
		uint8_t *rec = malloc(h->len);

		if (!rec) {
			free(p);
			parked_give(w, r, n);
			return -ENOMEM;
		}
		memcpy(rec, r->vs->tx_hdr, VSTREAM_HDR);
		memcpy(rec + VSTREAM_HDR, ring_bufs_ptr(&w->bufs, h->bid), dlen);
		memcpy(rec + VSTREAM_HDR + dlen, r->vs->tx_tag, VSTREAM_TAG);
		memcpy(p, rec + h->off, n);
		free(rec);
		/* Its data counts as relayed now (the parked sends count none). */
		{
			uint32_t lo = h->off > VSTREAM_HDR ? h->off : VSTREAM_HDR;
			uint32_t hi = h->len - VSTREAM_TAG;
			uint64_t data = hi > lo ? hi - lo : 0;

			h->bytes += data;
			w->stats.bytes[d] += data;
		}
	} else {
		memcpy(p, ring_bufs_ptr(&w->bufs, h->bid) + h->off, n);
	}
	buf_put(w, h->bid);
	h->parked = p;
	h->off = 0;
	h->len = n;
	w->stats.parked++;
	return 0;
}

/* Every tick: cancel sends that have stalled for RELAY_PARK_S on the ring;
 * on_send parks them when the cancel lands. */
static void park_stalled(struct relay_worker *w)
{
	for (struct relay *r = NULL; (r = relay_next(w, r));) {
		if (r->state != RELAY_PUMP)
			continue;
		for (int d = 0; d < 2; d++) {
			struct relay_half *h = &r->half[d];
			struct io_uring_sqe *sqe;

			if (h->state != HALF_SEND || h->parked || h->parking ||
			    w->now_s - h->send_s < RELAY_PARK_S)
				continue;
			sqe = relay_sqe(w, r, RELAY_OP_CANCEL);
			if (!sqe)
				return;
			io_uring_prep_cancel64(sqe, ring_ud(RELAY_OP_SEND0 + d, r->slot, r->gen), 0);
			h->parking = 1;
		}
	}
}

int relay_verify(struct relay_worker *w, struct relay *r, int side, uint32_t peer_max)
{
	struct relay_vs *vs = calloc(1, sizeof(*vs));

	if (!vs)
		return -ENOMEM;
	vs->side = (uint8_t)side;
	vs->own_max = relay_vs_max(w);
	vs->peer_max = peer_max < VSTREAM_MAX_DATA ? peer_max : VSTREAM_MAX_DATA;
	r->vs = vs;
	w->stats.verified++;
	return 0;
}

/* Damage or a broken stream: reset the flow (both sides), never pass on. */
static void vs_fail(struct relay_worker *w, struct relay *r, bool damaged, const char *why)
{
	static __thread struct log_ratelimit rl = LOG_RATELIMIT_INIT(10, 10000);
	char peer[INET6_ADDRSTRLEN] = "?";

	if (damaged)
		w->stats.vs_damaged++;
	else
		w->stats.vs_broken++;
	if (log_ratelimit_ok(&rl, w->now_ms)) {
		inet_ntop(AF_INET6, &r->peer, peer, sizeof(peer));
		log_warn("verified stream from %s: %s after %llu bytes; flow reset, nothing of it passed on",
			 peer, why, (unsigned long long)r->half[r->vs->side].bytes);
	}
	relay_close(w, r, RELAY_END_RESET, true);
}

/* A whole record's data and tag at p: true when its CRC matches (the
 * chain moves on), else the flow is reset. */
static bool vs_check(struct relay_worker *w, struct relay *r, const uint8_t *p)
{
	struct relay_vs *vs = r->vs;
	uint32_t crc = vstream_crc(vs->rx_crc, p, vs->rx_len);

	if (crc != vstream_get_tag(p + vs->rx_len)) {
		vs_fail(w, r, true, "a record's bytes do not match its CRC (damaged in transit)");
		return false;
	}
	vs->rx_crc = crc;
	return true;
}

/* The header in rx_hdr is whole: the record's length taken (false: not a
 * header, or a record larger than we take; the flow is reset). */
static bool vs_take_hdr(struct relay_worker *w, struct relay *r)
{
	struct relay_vs *vs = r->vs;
	int n = vstream_hdr_len(vs->rx_hdr, vs->own_max);

	if (n < 0) {
		vs_fail(w, r, false, "not a record header (or a record too large)");
		return false;
	}
	vs->rx_len = (uint32_t)n;
	vs->rx_hdr_got = 0;
	r->active_s = w->now_s;
	return true;
}

/* The deframing half's receive: a header (or its rest), or a record's data
 * and tag with what came of the next header. */
static void vs_on_recv(struct relay_worker *w, struct relay *r, const struct io_uring_cqe *cqe)
{
	struct relay_vs *vs = r->vs;
	int d = vs->side;
	struct relay_half *h = &r->half[d];
	int res = cqe->res;

	if (vs->rx_len == 0) {
		/* An error goes on to on_recv's own handling (a reset); EOF
		 * with part of a header here is a cut stream, not an end. */
		if (res < 0)
			return;
		if (res == 0) {
			vs_fail(w, r, false, "the stream ended inside a record header");
			return;
		}
		vs->rx_hdr_got = (uint8_t)(vs->rx_hdr_got + res);
		if (vs->rx_hdr_got < VSTREAM_HDR) {
			/* MSG_WAITALL came back short: the stream ended. */
			vs_fail(w, r, false, "the stream ended inside a record header");
			return;
		}
		if (vs_take_hdr(w, r))
			arm_recv(w, r, d);
		return;
	}
	if (res > 0 && vs->rx_buf) {
		/* More of a record that came in pieces. */
		vs->rx_got += (uint32_t)res;
		r->active_s = w->now_s;
		if (vs->rx_got < vs->rx_len + VSTREAM_TAG) {
			arm_recv(w, r, d);
			return;
		}
		if (!vs_check(w, r, vs->rx_buf))
			return;
		w->stats.vs_gathered++;
		/* Sent from the heap, as a parked send is (half_release frees
		 * it); only the data counts as held now. */
		parked_give(w, r, VSTREAM_TAG);
		h->parked = vs->rx_buf;
		vs->rx_buf = NULL;
		h->off = 0;
		h->len = vs->rx_len;
		vs->rx_len = 0;
		arm_send(w, r, d);
		return;
	}
	if (res > 0) {
		uint8_t *p;

		h->bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		w->bufs.avail--;
		p = ring_bufs_ptr(&w->bufs, h->bid);
		r->active_s = w->now_s;
		if ((uint32_t)res < vs->rx_len + VSTREAM_TAG) {
			/* Part of the record: gather it on the heap and give the
			 * ring buffer back, so a slow peer holds no shared
			 * buffer (at most one record of heap, as a parked send). */
			if (!parked_take(w, r, vs->rx_len + VSTREAM_TAG)) {
				buf_put(w, h->bid);
				relay_close(w, r, RELAY_END_RESET, true);
				return;
			}
			vs->rx_buf = malloc(vs->rx_len + VSTREAM_TAG);
			if (!vs->rx_buf) {
				parked_give(w, r, vs->rx_len + VSTREAM_TAG);
				buf_put(w, h->bid);
				relay_close(w, r, RELAY_END_RESET, true);
				return;
			}
			memcpy(vs->rx_buf, p, (size_t)res);
			vs->rx_got = (uint32_t)res;
			buf_put(w, h->bid);
			arm_recv(w, r, d);
			return;
		}
		if (!vs_check(w, r, p)) {
			buf_put(w, h->bid);
			return;
		}
		/* What came behind the tag is the next record's header (or
		 * its start), checked when it is whole. (No more than a
		 * header was asked for: arm_recv.) */
		if ((uint32_t)res - vs->rx_len - VSTREAM_TAG > VSTREAM_HDR) {
			buf_put(w, h->bid);
			vs_fail(w, r, false, "more than a record and a header in one receive");
			return;
		}
		vs->rx_hdr_got = (uint8_t)((uint32_t)res - vs->rx_len - VSTREAM_TAG);
		memcpy(vs->rx_hdr, p + vs->rx_len + VSTREAM_TAG, vs->rx_hdr_got);
		w->stats.vs_whole++;
		h->off = 0;
		h->len = vs->rx_len;
		vs->rx_len = 0;
		arm_send(w, r, d);
		return;
	}
	if (res == 0) {
		vs_fail(w, r, false, "the stream ended inside a record");
		return;
	}
}

void relay_start(struct relay_worker *w, struct relay *r)
{
	r->state = RELAY_PUMP;
	r->active_s = w->now_s;
	arm_recv(w, r, 0);
	if (r->state == RELAY_PUMP)
		arm_recv(w, r, 1);
}

static void relay_free(struct relay_worker *w, struct relay *r)
{
	for (int d = 0; d < 2; d++) {
		/* A buffer (or parked copy) still held by a cancelled send
		 * goes back. */
		if (r->half[d].state == HALF_SEND)
			half_release(w, r, &r->half[d]);
		if (r->fd[d] >= 0)
			close(r->fd[d]);
		r->fd[d] = -1;
	}
	if (w->ops->on_free)
		w->ops->on_free(w, r);
	if (r->vs && r->vs->rx_buf) {
		parked_give(w, r, r->vs->rx_len + VSTREAM_TAG);
		free(r->vs->rx_buf);
	}
	free(r->vs);
	r->vs = NULL;
	r->priv = NULL;
	r->state = RELAY_FREE;
	r->gen = (r->gen + 1) & 0xffffff;
	r->next_free = w->free_head;
	w->free_head = r->slot + 1;
	w->stats.active--;
}

void relay_close(struct relay_worker *w, struct relay *r, enum relay_end end,
		 bool reset)
{
	if (r->state == RELAY_CLOSING || r->state == RELAY_FREE)
		return;
	r->state = RELAY_CLOSING;
	r->end = (uint8_t)end;
	w->stats.closed[end]++;
	if (w->ops->on_close)
		w->ops->on_close(w, r);
	for (int d = 0; d < 2; d++) {
		if (r->fd[d] < 0)
			continue;
		if (reset) {
			/* close() then sends RST (MP_FASTCLOSE on MPTCP). */
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };

			setsockopt(r->fd[d], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
	}
	if (r->inflight == 0) {
		relay_free(w, r);
		return;
	}
	/* Cancel whatever is pending on either socket; the flow is freed when
	 * the last completion (the cancels' own included) arrives. */
	for (int d = 0; d < 2; d++) {
		struct io_uring_sqe *sqe;

		if (r->fd[d] < 0)
			continue;
		sqe = relay_sqe(w, r, RELAY_OP_CANCEL);
		if (!sqe)
			continue;
		io_uring_prep_cancel_fd(sqe, r->fd[d], IORING_ASYNC_CANCEL_ALL);
	}
}

void relay_close_all(struct relay_worker *w, enum relay_end end)
{
	/* With a reset: a flow cut short must not look finished. A FIN in
	 * the middle of a transfer tells the peer that the other side has
	 * said all it had to say (a response without a length would be
	 * taken as complete, and a verified stream cut between records
	 * would end cleanly). */
	for (struct relay *r = NULL; (r = relay_next(w, r));)
		relay_close(w, r, end, true);
}

static void on_recv(struct relay_worker *w, struct relay *r, int d,
		    const struct io_uring_cqe *cqe)
{
	struct relay_half *h = &r->half[d];

	if (r->vs && d == r->vs->side && (cqe->res > 0 || r->vs->rx_len || r->vs->rx_hdr_got)) {
		vs_on_recv(w, r, cqe);
		if (cqe->res > 0 || r->state != RELAY_PUMP)
			return;
		/* -ENOBUFS and errors while reading a record's body: below. */
	}
	if (cqe->res > 0) {
		h->bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		h->off = 0;
		h->len = (uint32_t)cqe->res;
		w->bufs.avail--;
		r->active_s = w->now_s;
		if (vs_framing(r, d)) {
			struct relay_vs *vs = r->vs;
			uint32_t n = h->len;

			vs->tx_crc = vstream_crc(vs->tx_crc, ring_bufs_ptr(&w->bufs, h->bid), n);
			vstream_put_hdr(vs->tx_hdr, n);
			vstream_put_tag(vs->tx_tag, vs->tx_crc);
			h->len = n + VSTREAM_OVERHEAD;
		}
		arm_send(w, r, d);
		return;
	}
	if (cqe->res == 0) {
		/* EOF: pass the FIN on, keep the other direction going. This
		 * half's last bytes were sent before it received again. A
		 * plain shutdown(2), not IORING_OP_SHUTDOWN: io_uring cannot
		 * issue that one without blocking and hands each to an io-wq
		 * worker thread, a thread wakeup per ended flow (12% of all
		 * CPU with one request per connection, benches/fleet.sh
		 * rate); on a socket shutdown(SHUT_WR) does not block. */
		if (w->ops->on_eof)
			w->ops->on_eof(w, r, d);
		if (shutdown(r->fd[!d], SHUT_WR) < 0 && errno != ENOTCONN) {
			relay_close(w, r, RELAY_END_RESET, true);
			return;
		}
		h->state = HALF_DONE;
		if (r->half[!d].state == HALF_DONE)
			relay_close(w, r, RELAY_END_DONE, false);
		return;
	}
	if (cqe->res == -ENOBUFS) {
		/* The ring is empty: give it more while there are more,
		 * else wait for one to come back. */
		if (bufs_refill(w)) {
			arm_recv(w, r, d);
			return;
		}
		w->stats.nobufs++;
		wait_push(w, r, d);
		return;
	}
	if (cqe->res == -EINTR || cqe->res == -EAGAIN) {
		arm_recv(w, r, d);
		return;
	}
	relay_close(w, r, RELAY_END_RESET, true);
}

static void on_send(struct relay_worker *w, struct relay *r, int d,
		    const struct io_uring_cqe *cqe)
{
	struct relay_half *h = &r->half[d];

	bool parking = h->parking;

	h->parking = 0;
	if (cqe->res > 0) {
		uint64_t data = (uint64_t)cqe->res;

		if (vs_framing(r, d) && !h->parked) {
			/* Relayed bytes are the data; the framing is ours. */
			uint32_t lo = h->off, hi = h->off + (uint32_t)cqe->res;
			uint32_t d0 = VSTREAM_HDR, d1 = h->len - VSTREAM_TAG;

			lo = lo > d0 ? lo : d0;
			hi = hi < d1 ? hi : d1;
			data = hi > lo ? hi - lo : 0;
		} else if (vs_framing(r, d)) {
			data = 0;   /* a parked record: counted when it was parked */
		}
		h->off += (uint32_t)cqe->res;
		h->bytes += data;
		w->stats.bytes[d] += data;
		h->send_s = w->now_s;
		if (h->off < h->len) {
			if (parking && !h->parked && half_park(w, r, d) == -ENOBUFS) {
				relay_close(w, r, RELAY_END_RESET, true);
				return;
			}
			arm_send(w, r, d);
			return;
		}
		h->state = HALF_IDLE;
		half_release(w, r, h);
		/* buf_put may have re-armed another flow only; this half
		 * receives again right away. */
		arm_recv(w, r, d);
		return;
	}
	if (cqe->res == -ECANCELED && parking) {
		/* Our own cancel of a stalled send: same bytes, off the ring;
		 * past the bound on parked memory, the flow is reset instead
		 * (the peer that does not read is the one that waits). */
		if (!h->parked && half_park(w, r, d) == -ENOBUFS) {
			relay_close(w, r, RELAY_END_RESET, true);
			return;
		}
		arm_send(w, r, d);
		return;
	}
	if (cqe->res == -EINTR || cqe->res == -EAGAIN) {
		arm_send(w, r, d);
		return;
	}
	/* The receiving side is gone: reset both. */
	relay_close(w, r, RELAY_END_RESET, true);
}

static void dispatch(struct relay_worker *w, const struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;
	unsigned op = ring_ud_op(ud);
	uint32_t slot = ring_ud_slot(ud);
	struct relay *r = NULL;

	if (slot != RELAY_NO_SLOT) {
		r = slot_get(w, slot);
		/* Cannot happen: a slot is only reused after its last
		 * completion. Guard anyway, and never leak a buffer. */
		if (!r || r->gen != ring_ud_gen(ud) || r->state == RELAY_FREE) {
			if (cqe->flags & IORING_CQE_F_BUFFER) {
				w->bufs.avail--;
				buf_put(w, (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
			}
			return;
		}
		if (!(cqe->flags & IORING_CQE_F_MORE))
			r->inflight--;
		if (r->state == RELAY_CLOSING) {
			if (cqe->flags & IORING_CQE_F_BUFFER) {
				w->bufs.avail--;
				buf_put(w, (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
			}
			if (r->inflight == 0)
				relay_free(w, r);
			return;
		}
	}

	switch (op) {
	case RELAY_OP_RECV0: case RELAY_OP_RECV1:
		on_recv(w, r, (int)(op - RELAY_OP_RECV0), cqe);
		break;
	case RELAY_OP_SEND0: case RELAY_OP_SEND1:
		on_send(w, r, (int)(op - RELAY_OP_SEND0), cqe);
		break;
		break;
	case RELAY_OP_CANCEL:
		break;
	default:
		if (op >= RELAY_OP_USER)
			w->ops->handle(w, r, op, cqe);
		break;
	}
	/* The handler may have closed the flow with nothing left in flight. */
	if (r && r->state == RELAY_CLOSING && r->inflight == 0)
		relay_free(w, r);
}

int relay_worker_poll(struct relay_worker *w, unsigned timeout_ms)
{
	struct __kernel_timespec ts = {
		.tv_sec = timeout_ms / 1000,
		.tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
	};
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int r;

	r = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
	clock_update(w);
	if (r < 0 && r != -ETIME && r != -EINTR)
		return r;
	io_uring_for_each_cqe(&w->ring, head, cqe) {
		dispatch(w, cqe);
		n++;
	}
	io_uring_cq_advance(&w->ring, n);
	return (int)n;
}

struct relay *relay_next(struct relay_worker *w, struct relay *r)
{
	uint32_t i = r ? r->slot + 1 : 0;

	for (; i < w->nslots; i++) {
		struct relay *x = slot_get(w, i);

		if (x->state != RELAY_FREE)
			return x;
	}
	return NULL;
}

uint32_t relay_active(const struct relay_worker *w)
{
	return (uint32_t)w->stats.active;
}

void relay_stats_add(struct relay_stats *sum, const struct relay_stats *st)
{
	for (int d = 0; d < 2; d++)
		sum->bytes[d] += st->bytes[d];
	for (int k = 0; k < RELAY_END_MAX; k++)
		sum->closed[k] += st->closed[k];
	sum->opened += st->opened;
	sum->nobufs += st->nobufs;
	sum->parked += st->parked;
	sum->parked_bytes += st->parked_bytes;
	sum->parked_refused += st->parked_refused;
	sum->active += st->active;
	sum->verified += st->verified;
	sum->vs_damaged += st->vs_damaged;
	sum->vs_whole += st->vs_whole;
	sum->vs_gathered += st->vs_gathered;
	sum->vs_broken += st->vs_broken;
}

#define RELAY_TICK_MS 250

int relay_worker_run(struct relay_worker *w, const struct relay_loop_ops *ops,
		     atomic_int *stopping, unsigned drain_ms, bool *accept_paused)
{
	uint64_t last_tick = 0, deadline = 0, trim_at = 0, trim_first = 0, trim_churn = 0;
	uint64_t parked_peak = 0;
	bool accepting = true, closed_all = false;
	int r;

	for (;;) {
		r = relay_worker_poll(w, RELAY_TICK_MS);
		if (r < 0)
			return r;
		if (w->now_ms - last_tick < RELAY_TICK_MS)
			continue;
		last_tick = w->now_ms;
		if (accepting && atomic_load(stopping)) {
			ops->stop_accepting(w);
			accepting = false;
			deadline = w->now_ms + drain_ms;
		}
		if (accepting && *accept_paused) {
			*accept_paused = false;
			ops->resume_accepting(w);
		}
		ops->tick(w);
		park_stalled(w);
		/* Demand fell (5 s without an empty ring): halve the target
		 * each second; returned buffers go to the spare stack until
		 * the ring is at the target again. */
		if (w->ring_target > RING_BUFS_START && w->now_ms - w->last_nobufs_ms > 5000 &&
		    w->now_ms - w->last_shrink_ms >= 1000) {
			w->ring_target /= 2;
			w->last_shrink_ms = w->now_ms;
			bufs_release_cold(w);
			if (w->ring_target == RING_BUFS_START)
				bufs_release_ring(w);
		}
		/* And quiet for 2 s at the smallest ring: give back the pages
		 * of its free buffers, once per quiet spell. A load that never
		 * emptied the ring (so never grew it, and never shrank it back)
		 * still faulted its buffers in: that memory stayed resident
		 * (concentrator.sh's RSS check met it about once in ten runs,
		 * 4.5 MiB over its start after 1,000 flows). */
		{
			uint64_t moved = w->stats.bytes[0] + w->stats.bytes[1];

			if (moved != w->quiet_bytes) {
				w->quiet_bytes = moved;
				w->quiet_since_ms = w->now_ms;
				w->ring_released = false;
			}
			if (w->ring_target == RING_BUFS_START && w->now_ms - w->quiet_since_ms >= 2000 &&
			    w->now_ms - w->last_nobufs_ms > 5000)
				bufs_release_ring(w);
		}
		/* Handshakes hold a few KiB of heap each, freed when relaying
		 * starts; after a burst of new flows glibc keeps those pages.
		 * Hand them back once the burst is over (1 s after the last
		 * 256 flows opened or closed, or 5 s into a long burst), so
		 * idle memory stays what idle flows need. */
		/* Flows opened and closed: a burst of either leaves freed
		 * heap behind (a crowd of handshakes closes seconds after it
		 * opened). */
		uint64_t churn = 2 * w->stats.opened - w->stats.active;  /* opens + closes */

		if (churn - trim_churn >= 256) {
			trim_churn = churn;
			if (!trim_first)
				trim_first = w->now_ms;
			trim_at = w->now_ms + 1000;
		}
		/* Parked copies (peers that never read) come and go in bursts,
		 * up to --max-parked-memory: once this worker's have fallen by
		 * 1 MiB from their peak, the freed heap goes back as well (the
		 * soak met a burst that left 8 MiB resident for good). */
		if (w->stats.parked_bytes > parked_peak)
			parked_peak = w->stats.parked_bytes;
		if (parked_peak - w->stats.parked_bytes >= (1u << 20)) {
			parked_peak = w->stats.parked_bytes;
			if (!trim_first)
				trim_first = w->now_ms;
			trim_at = w->now_ms;
		}
		if (trim_first && (w->now_ms >= trim_at || w->now_ms - trim_first >= 5000)) {
			trim_first = 0;
			heap_trim();
		}
		if (!accepting) {
			if (relay_active(w) == 0)
				return 0;
			if (!closed_all && w->now_ms >= deadline) {
				relay_close_all(w, RELAY_END_SHUTDOWN);
				closed_all = true;
			}
		}
	}
}

void relay_worker_abandon(struct relay_worker *w)
{
	for (struct relay *x = NULL; (x = relay_next(w, x));) {
		for (int d = 0; d < 2; d++)
			if (x->fd[d] >= 0)
				close(x->fd[d]);
		x->fd[0] = x->fd[1] = -1;
		if (w->ops->on_free)
			w->ops->on_free(w, x);
		if (x->vs)
			free(x->vs->rx_buf);
		free(x->vs);
		x->vs = NULL;
	}
}
