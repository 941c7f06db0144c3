/* pathemu: a delay line for the test and bench paths. This kernel has no
 * netem, so delay, jitter and loss come from here: two TUN devices, and
 * every packet read from one is written to the other after its delay,
 * unless it is lost. Rate is left to tbf on the links around it.
 *
 *   pathemu --a tunA --b tunB [--tap] [--delay-ab MS] [--delay-ba MS]
 *           [--jitter-ab MS] [--jitter-ba MS] [--loss-ab P] [--loss-ba P]
 *           [--seed N]
 *
 * --tap: TAP devices (Ethernet frames) instead of TUN: bridged each to one
 * end of a link, they put the delay line inside the link, invisible to
 * routing (lib.sh's emu_insert does that to an existing veth pair).
 *
 * Delays are per direction (a->b, b->a), so RTT = delay-ab + delay-ba.
 * Jitter adds a uniform 0..J ms, without reordering: a packet never leaves
 * before the one ahead of it (a real path's queue does not reorder). Loss
 * is a probability per packet (0..1). Runs until SIGTERM/SIGINT; prints
 * one JSON line of counts then. Holds at most 65,536 packets per
 * direction (a queue beyond that drops, as a full buffer would). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define QCAP 65536
#define PKT_MAX 2048

struct pkt {
	uint64_t due_us;
	uint16_t len;
	uint8_t data[PKT_MAX];
};

struct dir {
	int in, out;               /* read from in, write to out */
	double delay_us, jitter_us, loss;
	struct pkt *q;             /* FIFO of QCAP */
	uint32_t head, len;
	uint64_t last_due;
	uint64_t rx, tx, lost, overflow;
};

static volatile sig_atomic_t stop;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static void on_signal(int s)
{
	(void)s;
	stop = 1;
}

/* xorshift64*: reproducible with --seed. */
static double uniform(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (double)((rng * 2685821657736338717ull) >> 11) / (double)(1ull << 53);
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int tun_open(const char *name, bool tap)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = (tap ? IFF_TAP : IFF_TUN) | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

/* Read what is waiting on d->in into the queue (or drop it). */
static void take(struct dir *d, uint64_t now)
{
	for (;;) {
		struct pkt *p;
		uint64_t due;
		ssize_t n;

		if (d->len == QCAP) {
			uint8_t junk[PKT_MAX];

			n = read(d->in, junk, sizeof(junk));
			if (n <= 0)
				return;
			d->rx++;
			d->overflow++;
			continue;
		}
		p = &d->q[(d->head + d->len) % QCAP];
		n = read(d->in, p->data, sizeof(p->data));
		if (n <= 0)
			return;
		d->rx++;
		if (d->loss > 0 && uniform() < d->loss) {
			d->lost++;
			continue;
		}
		due = now + (uint64_t)(d->delay_us + (d->jitter_us > 0 ? uniform() * d->jitter_us : 0));
		if (due < d->last_due)
			due = d->last_due;  /* no reordering */
		d->last_due = due;
		p->due_us = due;
		p->len = (uint16_t)n;
		d->len++;
	}
}

/* Write what is due; returns microseconds until the next is (or -1). */
static int64_t give(struct dir *d, uint64_t now)
{
	while (d->len) {
		struct pkt *p = &d->q[d->head];

		if (p->due_us > now)
			return (int64_t)(p->due_us - now);
		if (write(d->out, p->data, p->len) < 0 && errno == EAGAIN)
			return 100;  /* the device queue is full: retry soon */
		d->tx++;
		d->head = (d->head + 1) % QCAP;
		d->len--;
	}
	return -1;
}

static void usage(void)
{
	fprintf(stderr, "usage: pathemu --a TUN --b TUN [--tap] [--delay-ab MS] [--delay-ba MS] "
		"[--jitter-ab MS] [--jitter-ba MS] [--loss-ab P] [--loss-ba P] [--seed N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "a", required_argument, NULL, 'a' }, { "b", required_argument, NULL, 'b' },
		{ "delay-ab", required_argument, NULL, 1 }, { "delay-ba", required_argument, NULL, 2 },
		{ "jitter-ab", required_argument, NULL, 3 }, { "jitter-ba", required_argument, NULL, 4 },
		{ "loss-ab", required_argument, NULL, 5 }, { "loss-ba", required_argument, NULL, 6 },
		{ "seed", required_argument, NULL, 7 }, { "tap", no_argument, NULL, 8 }, { 0 },
	};
	struct dir d[2];
	const char *na = NULL, *nb = NULL;
	bool tap = false;
	int c;

	memset(d, 0, sizeof(d));
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		double v = optarg ? strtod(optarg, NULL) : 0;

		switch (c) {
		case 'a': na = optarg; break;
		case 'b': nb = optarg; break;
		case 1: d[0].delay_us = v * 1000; break;
		case 2: d[1].delay_us = v * 1000; break;
		case 3: d[0].jitter_us = v * 1000; break;
		case 4: d[1].jitter_us = v * 1000; break;
		case 5: d[0].loss = v; break;
		case 6: d[1].loss = v; break;
		case 7: rng = strtoull(optarg, NULL, 0) | 1; break;
		case 8: tap = true; break;
		default: usage();
		}
	}
	if (!na || !nb || d[0].loss < 0 || d[0].loss > 1 || d[1].loss < 0 || d[1].loss > 1)
		usage();
	d[0].in = d[1].out = tun_open(na, tap);
	d[0].out = d[1].in = tun_open(nb, tap);
	if (d[0].in < 0 || d[0].out < 0) {
		fprintf(stderr, "pathemu: cannot open %s/%s: %s\n", na, nb,
			strerror(-(d[0].in < 0 ? d[0].in : d[0].out)));
		return 1;
	}
	for (int i = 0; i < 2; i++) {
		d[i].q = malloc(sizeof(struct pkt) * QCAP);
		if (!d[i].q)
			return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	printf("pathemu: %s <-> %s ready\n", na, nb);
	fflush(stdout);
	while (!stop) {
		struct pollfd pf[2] = { { .fd = d[0].in, .events = POLLIN },
					{ .fd = d[1].in, .events = POLLIN } };
		uint64_t now = now_us();
		int64_t w0 = give(&d[0], now), w1 = give(&d[1], now), w = -1;

		if (w0 >= 0)
			w = w0;
		if (w1 >= 0 && (w < 0 || w1 < w))
			w = w1;
		struct timespec ts = { .tv_sec = w < 0 ? 0 : w / 1000000,
				       .tv_nsec = w < 0 ? 100000000 : (w % 1000000) * 1000 };

		/* ppoll: microsecond waits, so delays are exact to well under
		 * a millisecond. */
		if (ppoll(pf, 2, &ts, NULL) < 0 && errno != EINTR)
			break;
		now = now_us();
		if (pf[0].revents & POLLIN)
			take(&d[0], now);
		if (pf[1].revents & POLLIN)
			take(&d[1], now);
	}
	printf("{\"ab\": {\"rx\": %llu, \"tx\": %llu, \"lost\": %llu, \"overflow\": %llu}, "
	       "\"ba\": {\"rx\": %llu, \"tx\": %llu, \"lost\": %llu, \"overflow\": %llu}}\n",
	       (unsigned long long)d[0].rx, (unsigned long long)d[0].tx,
	       (unsigned long long)d[0].lost, (unsigned long long)d[0].overflow,
	       (unsigned long long)d[1].rx, (unsigned long long)d[1].tx,
	       (unsigned long long)d[1].lost, (unsigned long long)d[1].overflow);
	free(d[0].q);
	free(d[1].q);
	return 0;
}
