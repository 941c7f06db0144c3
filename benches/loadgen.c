/* Load generator and sink for benches/ (not a test).
 *
 *   loadgen sink --listen ADDR:PORT
 *       epoll server (MPTCP listener; plain TCP falls back) that reads and
 *       discards; prints nothing until SIGTERM, then total bytes.
 *   loadgen send --to ADDR:PORT [--convert DST:PORT] --flows N --seconds T
 *       N flows (one thread each) sending as fast as possible for T s, over
 *       MPTCP; with --convert, each flow first sends an RFC 8803 Connect to
 *       DST and waits for the reply, so it goes through the concentrator.
 *       Prints JSON: bytes, seconds, gbit_s. --tcp: plain TCP instead.
 *   loadgen idle --to ADDR:PORT [--convert DST:PORT] --flows N
 *       opens N flows one after another and holds them; prints "ready N"
 *       and waits for SIGTERM. One fd per flow here.
 */
#include "addr.h"
#include "convert.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static struct sockaddr_storage to;
static socklen_t to_len;
static int use_convert;
static int proto = IPPROTO_MPTCP;  /* --tcp: plain TCP, to isolate MPTCP's share */
static struct in6_addr conv_addr;
static uint16_t conv_port;
static double seconds = 10;
static atomic_ullong total;
/* Flows that could not be opened, or ended before their time (reset,
 * refused): a figure with any of these is not a throughput figure. */
static atomic_uint broken;

static void on_signal(int s) { (void)s; stop = 1; }

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int open_flow(void)
{
	int fd = socket(to.ss_family, SOCK_STREAM, proto);

	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&to, to_len) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	if (use_convert) {
		uint8_t msg[64], reply[64];
		struct convert_writer w;
		struct convert_decode_opts o = { .role = CONVERT_FROM_CONVERTER };
		struct convert_msg m;
		struct convert_diag d;
		size_t got = 0;
		int n, r;

		convert_writer_init(&w, msg, sizeof(msg));
		convert_put_connect(&w, &conv_addr, conv_port, NULL, 0);
		n = convert_writer_finish(&w);
		if (n < 0 || write(fd, msg, (size_t)n) != n) {
			close(fd);
			return -EIO;
		}
		for (;;) {
			ssize_t k = read(fd, reply + got, sizeof(reply) - got);
			if (k <= 0) {
				close(fd);
				return -ECONNRESET;
			}
			got += (size_t)k;
			r = convert_decode(reply, got, &o, &m, &d);
			if (r > 0)
				break;
			if (r < 0) {
				close(fd);
				return -EBADMSG;
			}
		}
		if (m.present & CONVERT_HAS_ERROR) {
			fprintf(stderr, "converter answered error %u\n", m.error.code);
			close(fd);
			return -ECONNREFUSED;
		}
	}
	return fd;
}

static void *sender(void *arg)
{
	static char buf[256 << 10];
	unsigned long long n = 0;
	double end;
	int fd = open_flow();

	(void)arg;
	if (fd < 0) {
		fprintf(stderr, "flow: %s\n", strerror(-fd));
		atomic_fetch_add(&broken, 1);
		return NULL;
	}
	end = now() + seconds;
	while (!stop && now() < end) {
		ssize_t k = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);
		if (k <= 0) {
			fprintf(stderr, "flow ended early: %s\n", k < 0 ? strerror(errno) : "closed");
			atomic_fetch_add(&broken, 1);
			break;
		}
		n += (unsigned long long)k;
	}
	shutdown(fd, SHUT_WR);
	{
		char b[64];
		while (read(fd, b, sizeof(b)) > 0)
			;
	}
	close(fd);
	atomic_fetch_add(&total, n);
	return NULL;
}

static int run_send(int flows)
{
	pthread_t t[256];
	double t0 = now(), dt;

	for (int i = 0; i < flows; i++)
		pthread_create(&t[i], NULL, sender, NULL);
	for (int i = 0; i < flows; i++)
		pthread_join(t[i], NULL);
	dt = now() - t0;
	printf("{\"flows\": %d, \"bytes\": %llu, \"seconds\": %.3f, \"gbit_s\": %.3f, \"broken\": %u}\n",
	       flows, (unsigned long long)total, dt, (double)total * 8 / dt / 1e9,
	       atomic_load(&broken));
	return total && !atomic_load(&broken) ? 0 : 1;
}

static int run_idle(int flows)
{
	int *fds = calloc((size_t)flows, sizeof(int)), n = 0;

	for (; n < flows && !stop; n++) {
		fds[n] = open_flow();
		if (fds[n] < 0) {
			fprintf(stderr, "flow %d: %s\n", n, strerror(-fds[n]));
			break;
		}
	}
	/* A proxy may accept a connection and then reset it (a cap per
	 * client): count only the flows still open a moment later. */
	if (n && !stop) {
		int alive = 0;

		sleep(1);
		for (int i = 0; i < n; i++) {
			char b;
			ssize_t k = recv(fds[i], &b, 1, MSG_PEEK | MSG_DONTWAIT);

			if (k > 0 || (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)))
				alive++;
		}
		if (alive < n)
			fprintf(stderr, "%d of %d flows were closed or reset after opening\n", n - alive, n);
		n = alive;
	}
	printf("ready %d\n", n);
	fflush(stdout);
	while (!stop)
		pause();
	for (int i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
	return 0;
}

static int run_sink(void)
{
	static char buf[256 << 10];
	int one = 1, lfd, ep;
	struct epoll_event ev = { .events = EPOLLIN }, evs[256];
	unsigned long long n = 0;

	lfd = socket(to.ss_family, SOCK_STREAM | SOCK_NONBLOCK, IPPROTO_MPTCP);
	if (lfd < 0)
		lfd = socket(to.ss_family, SOCK_STREAM | SOCK_NONBLOCK, IPPROTO_TCP);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&to, to_len) < 0 || listen(lfd, 4096) < 0) {
		perror("sink listen");
		return 1;
	}
	ep = epoll_create1(0);
	ev.data.fd = lfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	while (!stop) {
		int k = epoll_wait(ep, evs, 256, 200);
		for (int i = 0; i < k; i++) {
			int fd = evs[i].data.fd;
			if (fd == lfd) {
				int c;
				while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					ev.data.fd = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
				continue;
			}
			for (;;) {
				ssize_t r = read(fd, buf, sizeof(buf));
				if (r > 0) {
					n += (unsigned long long)r;
					continue;
				}
				if (r == 0 || (errno != EAGAIN && errno != EINTR))
					close(fd);
				break;
			}
		}
	}
	printf("{\"sink_bytes\": %llu}\n", n);
	return 0;
}

int main(int argc, char **argv)
{
	int flows = 1;
	const char *mode = argc > 1 ? argv[1] : "";
	struct rlimit rl;

	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
		if (!strcmp(a, "--to") || !strcmp(a, "--listen")) {
			if (addr_parse_hostport(v, -1, &to, &to_len) < 0) {
				fprintf(stderr, "%s: bad address %s\n", a, v);
				return 2;
			}
		} else if (!strcmp(a, "--convert")) {
			struct sockaddr_storage d;
			socklen_t dl;
			if (addr_parse_hostport(v, -1, &d, &dl) < 0 ||
			    addr_to_in6((struct sockaddr *)&d, &conv_addr, &conv_port) < 0) {
				fprintf(stderr, "--convert: bad address %s\n", v);
				return 2;
			}
			use_convert = 1;
		} else if (!strcmp(a, "--tcp")) {
			proto = IPPROTO_TCP;
			continue;
		} else if (!strcmp(a, "--flows")) {
			flows = atoi(v);
		} else if (!strcmp(a, "--seconds")) {
			seconds = atof(v);
		} else {
			fprintf(stderr, "unknown argument %s\n", a);
			return 2;
		}
		i++;
	}
	if (!strcmp(mode, "sink"))
		return run_sink();
	if (!strcmp(mode, "send"))
		return run_send(flows > 0 && flows <= 256 ? flows : 1);
	if (!strcmp(mode, "idle"))
		return run_idle(flows);
	fprintf(stderr, "usage: loadgen sink|send|idle ...\n");
	return 2;
}
