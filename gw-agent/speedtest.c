/* A line's speed test (speedtest.h). The main thread owns the paths: it
 * checks the line and copies what the test needs (address, concentrator,
 * key) into a job; the test runs in a thread of its own with blocking
 * sockets and deadlines; the main thread applies its figures. */
#include "speedtest.h"
#include "agent.h"
#include "convert.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONNECT_MS 3000
#define CHUNK 65536

struct st_job {
	struct agent *a;
	unsigned slot, seconds;
	struct in6_addr src;
	struct sockaddr_storage conc;
	socklen_t conc_len;
	struct cookie_key key;
	uint64_t down_bps, up_bps;
	char error[120];
};

int speedtests_open(struct agent_speedtests *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->done, NULL);
	st->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return st->efd < 0 ? -errno : 0;
}

static void wake(struct agent_speedtests *st)
{
	uint64_t one = 1;

	(void)!write(st->efd, &one, sizeof(one));
}

int agent_speedtest_request(struct agent *a, const char *line, unsigned seconds, char *why,
			    size_t len)
{
	struct agent_speedtests *st = &a->speedtests;
	int r = 0;

	if (!line[0] || strlen(line) >= sizeof(st->want)) {
		snprintf(why, len, "no such line");
		return -ENOENT;
	}
	pthread_mutex_lock(&st->lock);
	if (st->busy) {
		snprintf(why, len, "a speed test is running (%s)", st->want);
		r = -EBUSY;
	} else {
		snprintf(st->want, sizeof(st->want), "%s", line);
		st->seconds = seconds;
		st->busy = true;
	}
	pthread_mutex_unlock(&st->lock);
	if (r == 0)
		wake(st);
	return r;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool stopping(struct st_job *j)
{
	bool s;

	pthread_mutex_lock(&j->a->speedtests.lock);
	s = j->a->speedtests.stop;
	pthread_mutex_unlock(&j->a->speedtests.lock);
	return s;
}

static int wait_fd(int fd, short ev, int ms)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int r = poll(&p, 1, ms);

	return r < 0 ? -errno : r;
}

/* Connects from the line's address, sends the request, reads the reply:
 * the socket, or -1 with j->error said. *extra: test bytes that came with
 * the reply. */
static int open_test(struct st_job *j, uint8_t dir, uint64_t *extra)
{
	struct sockaddr_storage ss;
	struct convert_writer w;
	uint8_t msg[128], val[CONVERT_SPEEDTEST_VALUE_LEN], cookie[COOKIE_LEN], in[1200];
	struct cookie_dest cd = { .opts = val, .opts_len = sizeof(val) };
	socklen_t sl = addr_from_in6(&j->src, 0, &ss);
	size_t got = 0;
	uint64_t end = mono_ms() + CONNECT_MS;
	int fd, n, e = 0;
	socklen_t el = sizeof(e);

	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP);
	if (fd < 0) {
		snprintf(j->error, sizeof(j->error), "socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 ||
	    (connect(fd, (struct sockaddr *)&j->conc, j->conc_len) < 0 && errno != EINPROGRESS) ||
	    wait_fd(fd, POLLOUT, CONNECT_MS) <= 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e) {
		snprintf(j->error, sizeof(j->error), "cannot connect to the concentrator over the line: %s",
			 strerror(e ? e : errno ? errno : ETIMEDOUT));
		close(fd);
		return -1;
	}
	convert_writer_init(&w, msg, sizeof(msg));
	convert_put_speedtest(&w, dir, (uint8_t)j->seconds, val);
	{
		struct in6_addr client = j->src;

		if (cookie_make(cookie, &j->key, j->key.nat ? COOKIE_F_NAT : 0, (uint32_t)time(NULL),
				j->key.nat ? NULL : &client, &cd) < 0) {
			snprintf(j->error, sizeof(j->error), "cannot make the request's cookie");
			close(fd);
			return -1;
		}
	}
	convert_put_cookie(&w, cookie, sizeof(cookie));
	n = convert_writer_finish(&w);
	if (n < 0 || send(fd, msg, (size_t)n, MSG_NOSIGNAL) != n) {
		snprintf(j->error, sizeof(j->error), "cannot send the request");
		close(fd);
		return -1;
	}
	for (;;) {
		struct convert_decode_opts o = { .role = CONVERT_FROM_CONVERTER };
		struct convert_msg m;
		struct convert_diag d;
		ssize_t k;
		int r;

		if (mono_ms() >= end || wait_fd(fd, POLLIN, (int)(end - mono_ms())) <= 0) {
			snprintf(j->error, sizeof(j->error), "no answer from the concentrator");
			break;
		}
		k = recv(fd, in + got, sizeof(in) - got, 0);
		if (k <= 0) {
			snprintf(j->error, sizeof(j->error), "the concentrator closed without an answer");
			break;
		}
		got += (size_t)k;
		r = convert_decode(in, got, &o, &m, &d);
		if (r == 0 && got < sizeof(in))
			continue;
		if (r <= 0) {
			snprintf(j->error, sizeof(j->error), "a malformed answer (%s)", d.reason);
			break;
		}
		if (m.present & CONVERT_HAS_ERROR) {
			snprintf(j->error, sizeof(j->error), "refused by the concentrator: error %u %s%s",
				 m.error.code, convert_error_name(m.error.code),
				 m.error.code == CONVERT_E_RESOURCE_EXCEEDED ? " (tests at once or per hour)" : "");
			break;
		}
		if (!(m.present & CONVERT_HAS_SPEEDTEST)) {
			snprintf(j->error, sizeof(j->error), "the concentrator does not serve speed tests");
			break;
		}
		*extra = got - (size_t)r;
		return fd;
	}
	close(fd);
	return -1;
}

static int run_down(struct st_job *j)
{
	uint64_t extra = 0, bytes, first, last, end;
	uint8_t buf[CHUNK];
	int fd = open_test(j, CONVERT_SPEEDTEST_DOWN, &extra);

	if (fd < 0)
		return -1;
	bytes = extra;
	first = last = mono_ms();
	end = first + j->seconds * 1000ull + 3000;
	while (mono_ms() < end && !stopping(j)) {
		ssize_t n;

		if (wait_fd(fd, POLLIN, 500) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			break;
		}
		bytes += (uint64_t)n;
		last = mono_ms();
	}
	close(fd);
	if (last <= first || bytes < 10000) {
		snprintf(j->error, sizeof(j->error), "nothing came down");
		return -1;
	}
	j->down_bps = (uint64_t)((double)bytes * 8000.0 / (double)(last - first));
	return 0;
}

static int run_up(struct st_job *j)
{
	static const uint8_t zeros[CHUNK];
	uint64_t extra = 0, end, bytes;
	uint8_t rep[12];
	size_t got = 0;
	uint32_t ms;
	int fd = open_test(j, CONVERT_SPEEDTEST_UP, &extra);

	if (fd < 0)
		return -1;
	end = mono_ms() + j->seconds * 1000ull;
	while (mono_ms() < end && !stopping(j)) {
		if (wait_fd(fd, POLLOUT, 500) <= 0)
			continue;
		if (send(fd, zeros, sizeof(zeros), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
		    errno != EAGAIN && errno != EINTR)
			break;
	}
	shutdown(fd, SHUT_WR);
	/* What arrived: the concentrator's count, first byte to last. */
	for (end = mono_ms() + 5000; got < sizeof(rep) && mono_ms() < end && !stopping(j);) {
		ssize_t n;

		if (wait_fd(fd, POLLIN, 500) <= 0)
			continue;
		n = recv(fd, rep + got, sizeof(rep) - got, MSG_DONTWAIT);
		if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR)))
			break;
		if (n > 0)
			got += (size_t)n;
	}
	close(fd);
	if (got < sizeof(rep)) {
		snprintf(j->error, sizeof(j->error), "no count of the upload from the concentrator");
		return -1;
	}
	bytes = 0;
	for (int i = 0; i < 8; i++)
		bytes = bytes << 8 | rep[i];
	ms = (uint32_t)rep[8] << 24 | (uint32_t)rep[9] << 16 | (uint32_t)rep[10] << 8 | rep[11];
	/* The concentrator's word, bounded: what the seconds asked for and
	 * 100 Gbit/s could carry at most, over at least 10 ms. */
	if (!ms || bytes < 10000) {
		snprintf(j->error, sizeof(j->error), "nothing went up");
		return -1;
	}
	if (ms < 10 || ms > (j->seconds + 5) * 1000u ||
	    (double)bytes * 8000.0 / ms > 100e9) {
		snprintf(j->error, sizeof(j->error), "the concentrator's count is not plausible");
		return -1;
	}
	j->up_bps = (uint64_t)((double)bytes * 8000.0 / ms);
	return 0;
}

static void *test_main(void *arg)
{
	struct st_job *j = arg;
	struct agent_speedtests *st = &j->a->speedtests;
	bool ok = run_down(j) == 0 && run_up(j) == 0;

	pthread_mutex_lock(&st->lock);
	{
		struct speedtest_result *r = &st->r[j->slot];

		r->running = false;
		r->at = time(NULL);
		if (ok) {
			r->down_bps = j->down_bps;
			r->up_bps = j->up_bps;
			r->error[0] = '\0';
		} else {
			snprintf(r->error, sizeof(r->error), "%s", j->error);
			st->failures++;
		}
		st->runs++;
	}
	st->busy = false;
	/* (the wake before thread_running goes: speedtests_close closes
	 * efd once it has) */
	wake(st);
	st->thread_running = false;
	pthread_cond_broadcast(&st->done);
	pthread_mutex_unlock(&st->lock);
	free(j);
	return NULL;
}

/* The request refused before it ran: said where status shows it. */
static void refuse(struct agent_speedtests *st, int slot, const char *why)
{
	pthread_mutex_lock(&st->lock);
	if (slot >= 0) {
		snprintf(st->r[slot].error, sizeof(st->r[slot].error), "%s", why);
		st->r[slot].at = time(NULL);
	}
	snprintf(st->want, sizeof(st->want), "%s", "");
	st->busy = false;
	st->runs++;
	st->failures++;
	pthread_cond_broadcast(&st->done);
	pthread_mutex_unlock(&st->lock);
	log_info("speed test: %s", why);
}

void speedtests_main(struct agent *a)
{
	struct agent_speedtests *st = &a->speedtests;
	char want[40];
	uint64_t v;
	int slot = -1;
	struct st_job *j;
	pthread_attr_t at;
	pthread_t th;
	const struct path *p = NULL;

	(void)!read(st->efd, &v, sizeof(v));
	/* Finished tests: their figures for overflow. */
	pthread_mutex_lock(&st->lock);
	for (unsigned i = 0; i < a->paths.n; i++)
		if (!st->r[i].running && !strcmp(st->r[i].name, path_name(&a->paths.p[i]))) {
			a->paths.p[i].st_down_bps = st->r[i].error[0] ? a->paths.p[i].st_down_bps : st->r[i].down_bps;
			a->paths.p[i].st_up_bps = st->r[i].error[0] ? a->paths.p[i].st_up_bps : st->r[i].up_bps;
		}
	snprintf(want, sizeof(want), "%s", st->busy && !st->thread_running ? st->want : "");
	pthread_mutex_unlock(&st->lock);
	if (!want[0])
		return;  /* (a request always names a line: agent_speedtest_request) */
	for (unsigned i = 0; i < a->paths.n; i++)
		if (!strcmp(path_name(&a->paths.p[i]), want)) {
			slot = (int)i;
			p = &a->paths.p[i];
		}
	if (!p)
		return refuse(st, -1, "no such line");
	if (p->neighbour)
		return refuse(st, slot, "a neighbour's line is the neighbour's to test");
	if (!a->cfg.keyed)
		return refuse(st, slot, "a speed test needs this gateway's key (key-file): the "
			      "concentrator serves keyed gateways only");
	if (p->mode == PATH_OFF || !p->f[0].usable || !p->f[0].have_addr)
		return refuse(st, slot, "the line is not up (IPv4)");
	j = calloc(1, sizeof(*j));
	if (!j)
		return refuse(st, slot, "out of memory");
	j->a = a;
	j->slot = (unsigned)slot;
	j->seconds = st->seconds;
	j->src = p->f[0].addr;
	j->conc = a->cfg.conc[0];
	j->conc_len = a->cfg.conc_len[0];
	j->key = a->cfg.key;
	pthread_mutex_lock(&st->lock);
	snprintf(st->r[slot].name, sizeof(st->r[slot].name), "%s", path_name(p));
	st->r[slot].running = true;
	st->thread_running = true;
	pthread_mutex_unlock(&st->lock);
	log_info("speed test of %s: %u s down, then %u s up", path_name(p), j->seconds, j->seconds);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 256 * 1024);
	if (pthread_create(&th, &at, test_main, j)) {
		pthread_attr_destroy(&at);
		free(j);
		pthread_mutex_lock(&st->lock);
		st->r[slot].running = false;
		st->thread_running = false;
		pthread_mutex_unlock(&st->lock);
		return refuse(st, slot, "cannot start a thread");
	}
	pthread_attr_destroy(&at);
}

void speedtests_close(struct agent_speedtests *st)
{
	if (st->efd < 0)
		return;
	pthread_mutex_lock(&st->lock);
	st->stop = true;
	while (st->thread_running)
		pthread_cond_wait(&st->done, &st->lock);
	pthread_mutex_unlock(&st->lock);
	close(st->efd);
	st->efd = -1;
}
