#include "ring.h"

#include <unistd.h>

#include <fcntl.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int ring_init(struct io_uring *ring, unsigned entries, unsigned *ret_flags)
{
	/* Newest first; each fallback keeps the daemon working on an older
	 * kernel, only a little slower. */
	static const unsigned tries[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
			IORING_SETUP_SUBMIT_ALL,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
		0,
	};
	int r = -EINVAL;

	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		struct io_uring_params p;

		memset(&p, 0, sizeof(p));
		p.flags = tries[i] | IORING_SETUP_CQSIZE;
		/* Multishot accept and many flows: a roomy CQ avoids overflow. */
		p.cq_entries = entries * 4;
		r = io_uring_queue_init_params(entries, ring, &p);
		if (r == 0) {
			if (ret_flags)
				*ret_flags = tries[i];
			return 0;
		}
		if (r != -EINVAL)
			return r;
	}
	return r;
}

const char *ring_setup_why(int err)
{
	char v[8] = "";
	int fd;

	if (err == -ENOSYS)
		return ": this kernel has no io_uring (CONFIG_IO_URING)";
	if (err == -EINVAL)
		return ": this kernel's io_uring lacks what is used here (provided-buffer rings, 5.19+)";
	if (err != -EPERM && err != -EACCES)
		return "";
	fd = open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, v, sizeof(v) - 1) < 0)
			v[0] = 0;
		close(fd);
	}
	if (v[0] == '2')
		return ": io_uring is disabled (sysctl kernel.io_uring_disabled = 2; set it to 0)";
	if (v[0] == '1')
		return ": io_uring is restricted (sysctl kernel.io_uring_disabled = 1): set it to 0, "
		       "or run in the group kernel.io_uring_group names";
	return ": not permitted (a seccomp filter or container policy blocking io_uring?)";
}

int ring_bufs_setup(struct io_uring *ring, struct ring_bufs *b, uint16_t bgid,
		    unsigned count, unsigned size)
{
	struct io_uring_buf_reg reg;
	void *mem;
	int r;

	memset(b, 0, sizeof(*b));
	if (count == 0 || count > 32768 || (count & (count - 1)) || size == 0)
		return -EINVAL;
	b->ring_bytes = (size_t)count * sizeof(struct io_uring_buf);
	mem = mmap(NULL, b->ring_bytes, PROT_READ | PROT_WRITE,
		   MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	b->br = mem;
	/* Buffer memory is mapped, not malloc'd: untouched pages cost no RSS
	 * until a flow actually receives into them. */
	mem = mmap(NULL, (size_t)count * size, PROT_READ | PROT_WRITE,
		   MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (mem == MAP_FAILED) {
		r = -errno;
		munmap(b->br, b->ring_bytes);
		b->br = NULL;
		return r;
	}
	b->base = mem;
	b->count = count;
	b->size = size;
	b->bgid = bgid;

	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)b->br;
	reg.ring_entries = count;
	reg.bgid = bgid;
	r = io_uring_register_buf_ring(ring, &reg, 0);
	if (r < 0) {
		munmap(b->base, (size_t)count * size);
		munmap(b->br, b->ring_bytes);
		memset(b, 0, sizeof(*b));
		return r;
	}
	io_uring_buf_ring_init(b->br);
	ring_bufs_grow(b, RING_BUFS_START);
	return 0;
}

unsigned ring_bufs_grow(struct ring_bufs *b, unsigned n)
{
	if (n > b->count - b->added)
		n = b->count - b->added;
	for (unsigned i = 0; i < n; i++)
		io_uring_buf_ring_add(b->br, ring_bufs_ptr(b, (uint16_t)(b->added + i)), b->size,
				      (unsigned short)(b->added + i),
				      io_uring_buf_ring_mask(b->count), (int)i);
	io_uring_buf_ring_advance(b->br, (int)n);
	b->added += n;
	b->avail += n;
	return n;
}

void ring_bufs_put(struct ring_bufs *b, uint16_t bid)
{
	io_uring_buf_ring_add(b->br, ring_bufs_ptr(b, bid), b->size, bid,
			      io_uring_buf_ring_mask(b->count), 0);
	io_uring_buf_ring_advance(b->br, 1);
	b->avail++;
}

void ring_bufs_free(struct io_uring *ring, struct ring_bufs *b)
{
	if (!b || !b->br)
		return;
	io_uring_unregister_buf_ring(ring, b->bgid);
	munmap(b->base, (size_t)b->count * b->size);
	munmap(b->br, b->ring_bytes);
	memset(b, 0, sizeof(*b));
}

struct io_uring_sqe *ring_get_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	return sqe;
}

int ring_get_sqe_pair(struct io_uring *ring, struct io_uring_sqe **ret_op,
		      struct io_uring_sqe **ret_timeout)
{
	if (io_uring_sq_space_left(ring) < 2)
		io_uring_submit(ring);
	if (io_uring_sq_space_left(ring) < 2)
		return -EBUSY;
	*ret_op = io_uring_get_sqe(ring);
	*ret_timeout = io_uring_get_sqe(ring);
	return 0;
}

int ring_sendq_init(struct ring_sendq *q, uint32_t n, unsigned op)
{
	memset(q, 0, sizeof(*q));
	/* Mapped, not allocated: zero pages that nothing touches before a
	 * slot is first used (slots are taken in order), so a router that
	 * carries little UDP never holds the 2 KiB slots in memory. (calloc
	 * would map them only above glibc's moving mmap threshold, and
	 * clear them otherwise.) */
	if (n) {
		void *m = mmap(NULL, (size_t)n * sizeof(*q->slot), PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (m == MAP_FAILED)
			return -ENOMEM;
		q->slot = m;
	}
	q->n = n;
	q->op = op;
	return 0;
}

void ring_sendq_free(struct ring_sendq *q)
{
	if (q->slot)
		munmap(q->slot, (size_t)q->n * sizeof(*q->slot));
	q->slot = NULL;
	q->n = q->free = q->fresh = 0;
}

bool ring_sendq_send(struct ring_sendq *q, struct io_uring *ring, int fd, const void *to,
		     socklen_t tolen, const void *cm, size_t cmlen, const void *buf, size_t len)
{
	struct io_uring_sqe *sqe;
	/* The free list, else a slot never used yet. */
	uint32_t i = q->free ? q->free : q->fresh < q->n ? q->fresh + 1 : 0;

	if (ring && i && len <= RING_SEND_INLINE && cmlen <= sizeof(q->slot[0].cm.b) &&
	    tolen <= sizeof(q->slot[0].to) && (sqe = ring_get_sqe(ring))) {
		struct ring_send *s = &q->slot[i - 1];

		if (i == q->free)
			q->free = s->next_free;
		else
			q->fresh++;
		memcpy(s->data, buf, len);
		s->iov = (struct iovec){ .iov_base = s->data, .iov_len = len };
		s->mh = (struct msghdr){ .msg_iov = &s->iov, .msg_iovlen = 1 };
		if (to && tolen) {
			memcpy(&s->to, to, tolen);
			s->mh.msg_name = &s->to;
			s->mh.msg_namelen = tolen;
		}
		if (cmlen) {
			memcpy(s->cm.b, cm, cmlen);
			s->mh.msg_control = s->cm.b;
			s->mh.msg_controllen = cmlen;
		}
		/* A full socket buffer drops the datagram, as a direct send
		 * would, instead of parking it (and its slot) in the kernel. */
		io_uring_prep_sendmsg(sqe, fd, &s->mh, MSG_DONTWAIT);
		io_uring_sqe_set_data64(sqe, ring_ud(q->op, i - 1, 0));
		return true;
	}
	{
		struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
		struct msghdr mh = { .msg_name = (void *)to, .msg_namelen = to ? tolen : 0,
				     .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = cmlen ? (void *)cm : NULL, .msg_controllen = cmlen };

		q->direct++;
		if (sendmsg(fd, &mh, MSG_DONTWAIT) >= 0)
			return true;
		q->errors++;
		return false;
	}
}

void ring_sendq_done(struct ring_sendq *q, const struct io_uring_cqe *cqe)
{
	uint32_t slot = ring_ud_slot(io_uring_cqe_get_data64(cqe));

	if (slot >= q->n)
		return;
	if (cqe->res < 0)
		q->errors++;
	q->slot[slot].next_free = q->free;
	q->free = slot + 1;
}

int ring_init_with_bufs(struct io_uring *ring, unsigned entries, struct ring_bufs *b,
			uint16_t bgid, unsigned count, unsigned size)
{
	unsigned flags;
	int r = ring_init(ring, entries, &flags);

	if (r < 0)
		return r;
	r = ring_bufs_setup(ring, b, bgid, count, size);
	if (r < 0)
		io_uring_queue_exit(ring);
	return r;
}

bool ring_recvmsg_multishot(struct io_uring *ring, int fd, struct msghdr *msg, uint16_t bgid,
			    uint64_t ud)
{
	struct io_uring_sqe *sqe = ring_get_sqe(ring);

	if (!sqe)
		return false;
	io_uring_prep_recvmsg_multishot(sqe, fd, msg, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = bgid;
	io_uring_sqe_set_data64(sqe, ud);
	return true;
}

void ring_cancel_close(struct io_uring *ring, uint64_t ud, int fd, uint64_t done_ud)
{
	struct io_uring_sqe *cancel, *cl;

	if (ring_get_sqe_pair(ring, &cancel, &cl) < 0) {
		io_uring_submit(ring);
		close(fd);
		return;
	}
	io_uring_prep_cancel64(cancel, ud, 0);
	io_uring_sqe_set_data64(cancel, done_ud);
	cancel->flags |= IOSQE_CQE_SKIP_SUCCESS;
	io_uring_prep_close(cl, fd);
	io_uring_sqe_set_data64(cl, done_ud);
	cl->flags |= IOSQE_CQE_SKIP_SUCCESS;
}
