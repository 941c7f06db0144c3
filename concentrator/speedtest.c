/* Speed tests (speedtest.h). A test is at most 10 s of one TCP connection
 * at the speed of the gateway's line, so a thread per test, with
 * blocking sockets and timeouts, costs less than a place in the workers'
 * data path would, and keeps that path as it is. */
#include "speedtest.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536

void speedtests_init(struct speedtests *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->idle, NULL);
}

static struct speedtest_key *key_slot(struct speedtests *st, uint32_t kid, uint32_t now)
{
	struct speedtest_key *free_k = NULL, *oldest = NULL;

	for (unsigned i = 0; i < SPEEDTEST_KEYS; i++) {
		struct speedtest_key *k = &st->keys[i];

		if (k->kid == kid && k->in_hour)
			return k;
		if (!k->in_hour && !free_k)
			free_k = k;
		if (!k->running && (!oldest || k->hour_start < oldest->hour_start))
			oldest = k;
	}
	if (!free_k) {
		/* Forgetting a key whose hour is over loses nothing; one
		 * within its hour gets a fresh count (bounded: SPEEDTEST_KEYS
		 * keys testing at once would be needed). */
		free_k = oldest;
		for (unsigned i = 0; i < SPEEDTEST_KEYS; i++)
			if (!st->keys[i].running && now - st->keys[i].hour_start >= 3600) {
				free_k = &st->keys[i];
				break;
			}
	}
	if (!free_k)
		return NULL;
	memset(free_k, 0, sizeof(*free_k));
	free_k->kid = kid;
	free_k->hour_start = now;
	return free_k;
}

int speedtest_admit(struct speedtests *st, uint32_t kid, uint32_t now)
{
	struct speedtest_key *k;
	int r = 0;

	pthread_mutex_lock(&st->lock);
	k = st->stopping || st->running >= SPEEDTEST_MAX ? NULL : key_slot(st, kid, now);
	if (!k) {
		r = -EBUSY;
	} else {
		if (now - k->hour_start >= 3600) {
			k->hour_start = now;
			k->in_hour = 0;
		}
		if (k->running)
			r = -EBUSY;
		else if (k->in_hour >= SPEEDTEST_PER_HOUR)
			r = -EDQUOT;
		else {
			k->running = true;
			k->in_hour++;
			st->running++;
		}
	}
	pthread_mutex_unlock(&st->lock);
	if (r < 0)
		atomic_fetch_add(&st->refused_limit, 1);
	return r;
}

void speedtest_release(struct speedtests *st, uint32_t kid)
{
	pthread_mutex_lock(&st->lock);
	for (unsigned i = 0; i < SPEEDTEST_KEYS; i++)
		if (st->keys[i].kid == kid && st->keys[i].running)
			st->keys[i].running = false;
	if (st->running)
		st->running--;
	pthread_cond_broadcast(&st->idle);
	pthread_mutex_unlock(&st->lock);
}

struct job {
	struct speedtests *st;
	int fd;
	uint32_t kid;
	uint8_t dir, seconds;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits up to 500 ms for fd to be ready for ev: > 0 ready, 0 not yet. */
static int wait_fd(int fd, short ev)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int r = poll(&p, 1, 500);

	return r < 0 ? -errno : r;
}

static void *job_main(void *arg)
{
	struct job *j = arg;
	struct speedtests *st = j->st;
	uint64_t t0 = now_ms(), end = t0 + (uint64_t)j->seconds * 1000, got = 0, first = 0, last = 0;
	static const uint8_t zeros[CHUNK];
	uint8_t buf[CHUNK];

	if (j->dir == 1) {
		/* Down: zeros until the time is up, then a FIN. */
		while (now_ms() < end && !st->stopping) {
			ssize_t n;

			if (wait_fd(j->fd, POLLOUT) <= 0)
				continue;
			n = send(j->fd, zeros, sizeof(zeros), MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				break;
			if (n > 0)
				got += (uint64_t)n;
		}
		shutdown(j->fd, SHUT_WR);
		/* The gateway closes once it has it all (or 3 s). */
		for (uint64_t until = now_ms() + 3000; now_ms() < until && !st->stopping;) {
			if (wait_fd(j->fd, POLLIN) > 0 && recv(j->fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
				break;
		}
	} else {
		/* Up: count until the gateway's FIN (or the time and 3 s
		 * more), then say what arrived, first byte to last. */
		uint8_t rep[SPEEDTEST_REPORT_LEN];
		uint32_t ms;

		while (now_ms() < end + 3000 && !st->stopping) {
			ssize_t n;

			if (wait_fd(j->fd, POLLIN) <= 0)
				continue;
			n = recv(j->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				break;
			if (n > 0) {
				last = now_ms();
				if (!first)
					first = last;
				got += (uint64_t)n;
			}
		}
		ms = (uint32_t)(last - first);
		for (int i = 0; i < 8; i++)
			rep[i] = (uint8_t)(got >> (56 - 8 * i));
		rep[8] = (uint8_t)(ms >> 24);
		rep[9] = (uint8_t)(ms >> 16);
		rep[10] = (uint8_t)(ms >> 8);
		rep[11] = (uint8_t)ms;
		if (wait_fd(j->fd, POLLOUT) > 0)
			(void)!send(j->fd, rep, sizeof(rep), MSG_NOSIGNAL | MSG_DONTWAIT);
		shutdown(j->fd, SHUT_WR);
	}
	close(j->fd);
	atomic_fetch_add(&st->served[j->dir], 1);
	atomic_fetch_add(&st->bytes, got);
	speedtest_release(st, j->kid);
	free(j);
	return NULL;
}

void speedtest_run(struct speedtests *st, int fd, uint32_t kid, uint8_t dir, uint8_t seconds)
{
	struct job *j = malloc(sizeof(*j));
	pthread_attr_t at;
	pthread_t th;
	int e = -1;

	if (j) {
		*j = (struct job){ st, fd, kid, dir, seconds };
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		/* (the chunk buffer is on the stack) */
		pthread_attr_setstacksize(&at, 256 * 1024);
		e = pthread_create(&th, &at, job_main, j);
		pthread_attr_destroy(&at);
	}
	if (e) {
		log_warn("speed test: cannot start a thread: %s", strerror(e > 0 ? e : ENOMEM));
		free(j);
		close(fd);
		speedtest_release(st, kid);
	}
}

void speedtests_stop(struct speedtests *st)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;  /* a test ends within a second of the flag */
	pthread_mutex_lock(&st->lock);
	st->stopping = true;
	while (st->running)
		if (pthread_cond_timedwait(&st->idle, &st->lock, &until) == ETIMEDOUT) {
			log_warn("speed test: %u not ended at the stop", st->running);
			break;
		}
	pthread_mutex_unlock(&st->lock);
}
