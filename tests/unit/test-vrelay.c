/* The relay with a verified stream (common/vstream.h) on one side, over
 * socketpairs: what it frames is exactly the plain bytes in records of at
 * most the peer's size with a chained CRC-32C; what it deframes comes out
 * byte for byte; a damaged, malformed or truncated record resets the flow
 * and nothing of it (nor anything after it) is passed on. Needs io_uring. */
#include "relay.h"
#include "vstream.h"
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const struct relay_ops ops = { 0 };

struct rig {
	struct relay_worker w;
	struct relay *r;
	int plain, vpeer;   /* our ends: the plain client, the verified peer */
};

static int rig_open(struct rig *g, uint32_t peer_max)
{
	int a[2], b[2], rc;

	rc = relay_worker_init(&g->w, &ops, NULL, 64, 8, 16384, 16);
	if (rc < 0) {
		const char *ci = getenv("CI");

		printf("# io_uring unavailable: %s\n", strerror(-rc));
		exit(ci && !strcmp(ci, "true") ? 1 : 77);
	}
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, a) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, b) == 0);
	g->r = relay_new(&g->w, a[0]);
	g->r->fd[1] = b[0];
	g->plain = a[1];
	g->vpeer = b[1];
	fcntl(g->plain, F_SETFL, O_NONBLOCK);
	fcntl(g->vpeer, F_SETFL, O_NONBLOCK);
	CHECK_INT(relay_verify(&g->w, g->r, 1, peer_max), 0);
	relay_start(&g->w, g->r);
	return 0;
}

static void rig_close(struct rig *g)
{
	for (int i = 0; i < 100 && relay_active(&g->w); i++) {
		relay_close_all(&g->w, RELAY_END_SHUTDOWN);
		relay_worker_poll(&g->w, 5);
	}
	close(g->plain);
	close(g->vpeer);
	relay_worker_free(&g->w);
}

/* Writes of this many bytes at most: 8192, or with pump_random set, any
 * size from 1 to pump_random (a quarter of them under 8 bytes), so records
 * and headers arrive split everywhere. */
static size_t pump_random;

static size_t chunk(void)
{
	if (!pump_random)
		return 8192;
	if (rand() % 4 == 0)
		return 1 + (size_t)rand() % 7;
	return 1 + (size_t)rand() % pump_random;
}

/* Push out into fd and collect from in until in reaches EOF or ~3 s pass;
 * eof_after: shut our write side once all of out is written. */
static size_t pump(struct rig *g, int out, const uint8_t *src, size_t n,
		   int in, uint8_t *dst, size_t cap, int eof_after)
{
	size_t sent = 0, got = 0;
	int done = 0;

	for (int i = 0; i < 30000 && !done; i++) {
		ssize_t k;

		if (sent < n) {
			size_t c = chunk();

			k = write(out, src + sent, n - sent > c ? c : n - sent);
			if (k > 0)
				sent += (size_t)k;
			if (sent == n && eof_after)
				shutdown(out, SHUT_WR);
		}
		relay_worker_poll(&g->w, 1);
		while ((k = read(in, dst + got, cap - got)) > 0)
			got += (size_t)k;
		if (k == 0 || (k < 0 && errno != EAGAIN))
			done = 1;
	}
	return got;
}

/* Records of data (sizes cycling through 1..max) with a chained CRC. */
static size_t make_records(const uint8_t *data, size_t n, uint32_t max, uint8_t *out)
{
	size_t o = 0, i = 0;
	uint32_t crc = 0, sz = 1;

	while (i < n) {
		uint32_t len = (uint32_t)(n - i < sz ? n - i : sz);

		vstream_put_hdr(out + o, len);
		memcpy(out + o + 4, data + i, len);
		crc = vstream_crc(crc, data + i, len);
		vstream_put_tag(out + o + 4 + len, crc);
		o += len + 8;
		i += len;
		sz = sz * 7 % max + 1;
	}
	return o;
}

static uint8_t data[200000], wire[300000], back[300000];

static void fill(void)
{
	srand(11);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)rand();
}

/* Plain in, records out: each at most the peer's size, the chained CRC
 * right, the data the same; EOF passed on after the last record. */
static void test_framing(void)
{
	struct rig g;
	size_t got, o = 0, d = 0;
	uint32_t crc = 0;
	int records = 0, bad = 0;

	rig_open(&g, 4096);
	got = pump(&g, g.plain, data, sizeof(data), g.vpeer, wire, sizeof(wire), 1);
	while (o + 8 <= got) {
		int len = vstream_hdr_len(wire + o, 4096);

		if (len < 0 || o + 8 + (size_t)len > got) {
			bad++;
			break;
		}
		crc = vstream_crc(crc, wire + o + 4, (size_t)len);
		bad += vstream_get_tag(wire + o + 4 + len) != crc;
		bad += memcmp(wire + o + 4, data + d, (size_t)len) != 0;
		d += (size_t)len;
		o += (size_t)len + 8;
		records++;
	}
	CHECK_INT(bad, 0);
	CHECK_INT(o, got);
	CHECK_INT(d, sizeof(data));
	CHECK(records >= (int)(sizeof(data) / 4096));
	/* Relayed bytes are the data, not the framing. */
	CHECK_INT(g.w.stats.bytes[0], sizeof(data));
	rig_close(&g);
}

/* Records in (of every size up to our maximum), plain out. */
static void test_deframing(void)
{
	struct rig g;
	size_t n, got;

	rig_open(&g, 65536);
	n = make_records(data, sizeof(data), relay_vs_max(&g.w), wire);
	got = pump(&g, g.vpeer, wire, n, g.plain, back, sizeof(back), 1);
	CHECK_INT(got, sizeof(data));
	CHECK(!memcmp(back, data, sizeof(data)));
	CHECK_INT(g.w.stats.bytes[1], sizeof(data));
	CHECK_INT(g.w.stats.vs_damaged + g.w.stats.vs_broken, 0);
	rig_close(&g);
}

/* Records arriving in pieces of every size (headers split too, a
 * record's tag and the next header in one piece or several): the same
 * bytes come out, every record counted once, whole or gathered. */
static void test_deframing_splits(void)
{
	for (int round = 0; round < 4; round++) {
		struct rig g;
		size_t n, got, records = 0, o = 0;
		uint32_t max;

		rig_open(&g, 65536);
		max = round % 2 ? relay_vs_max(&g.w) : 600;
		n = make_records(data, sizeof(data), max, wire);
		while (o < n) {
			o += (size_t)vstream_hdr_len(wire + o, 1 << 24) + 8;
			records++;
		}
		srand(100 + (unsigned)round);
		pump_random = round < 2 ? 40 : 3 * 16384;
		got = pump(&g, g.vpeer, wire, n, g.plain, back, sizeof(back), 1);
		pump_random = 0;
		CHECK_INT(got, sizeof(data));
		CHECK(!memcmp(back, data, sizeof(data)));
		CHECK_INT(g.w.stats.vs_whole + g.w.stats.vs_gathered, records);
		CHECK_INT(g.w.stats.vs_damaged + g.w.stats.vs_broken, 0);
		CHECK_INT(g.w.stats.closed[RELAY_END_RESET], 0);
		rig_close(&g);
	}
}

/* A wrong stream: what comes out is exactly the records before the bad
 * one, the flow is reset and counted. */
static void wrong(const char *what, size_t at, uint8_t xor_, int cut, int damaged)
{
	struct rig g;
	size_t n, got, ok = 0, o = 0;

	rig_open(&g, 65536);
	n = make_records(data, sizeof(data), 9000, wire);
	/* The records wholly before offset at are good. */
	while (o < at) {
		int len = vstream_hdr_len(wire + o, 1 << 24);

		if (o + 8 + (size_t)len > at)
			break;
		ok += (size_t)len;
		o += (size_t)len + 8;
	}
	if (cut)
		n = at;
	else
		wire[at] ^= xor_;
	got = pump(&g, g.vpeer, wire, n, g.plain, back, sizeof(back), 1);
	printf("# %s: %zu bytes out of %zu good before it\n", what, got, ok);
	CHECK_INT(got, ok);
	CHECK(!memcmp(back, data, got));
	CHECK_INT(g.w.stats.vs_damaged, damaged);
	CHECK_INT(g.w.stats.vs_broken, !damaged);
	CHECK_INT(g.w.stats.closed[RELAY_END_RESET], 1);
	CHECK_INT(relay_active(&g.w), 0);
	rig_close(&g);
}

static void test_wrong_streams(void)
{
	size_t first_data;

	/* Offsets inside the records make_records() builds for max 9000:
	 * record 0 is 1 byte, record 1 is 8 bytes, record 2 is 57 bytes... */
	first_data = 9 + 16 + 4;                        /* record 2's data */
	wrong("one bit flipped in data", first_data + 3, 0x10, 0, 1);
	wrong("a tag changed", 9 + 16 + 65 - 1, 0x01, 0, 1);
	wrong("an unknown record type", 9 + 16, 0x03, 0, 0);
	wrong("a record longer than we take", 9 + 16 + 1, 0x80, 0, 0);
	wrong("the stream ends inside a record", 9 + 16 + 30, 0, 1, 0);
	wrong("the stream ends inside a header", 9 + 16 + 2, 0, 1, 0);
	wrong("the stream ends after a header's first byte", 9 + 16 + 1, 0, 1, 0);
	wrong("the stream ends before a header's last byte", 9 + 16 + 3, 0, 1, 0);
	/* A run of later bytes put in place of earlier ones, lengths intact:
	 * the kernel defect's signature. */
	{
		struct rig g;
		size_t n, got;

		rig_open(&g, 65536);
		n = make_records(data, sizeof(data), 30000, wire);
		memcpy(wire + 20000, wire + 52768, 2840);
		got = pump(&g, g.vpeer, wire, n, g.plain, back, sizeof(back), 1);
		CHECK(got < 20000);
		CHECK(!memcmp(back, data, got));
		CHECK_INT(g.w.stats.vs_damaged + g.w.stats.vs_broken, 1);
		rig_close(&g);
	}
}

/* Records of 1 to 4 bytes more than we offered (what a peer told
 * the old size, a buffer less 4, would send; or a hostile one): refused,
 * whether or not the buffer could hold them, nothing of them passed on. */
static void test_too_large(void)
{
	for (uint32_t extra = 1; extra <= 4; extra++) {
		struct rig g;
		size_t n, got;
		uint32_t len;

		rig_open(&g, 65536);
		len = relay_vs_max(&g.w) + extra;
		n = make_records(data, 100, 100, wire);      /* a good one first */
		vstream_put_hdr(wire + n, len);
		memcpy(wire + n + 4, data + 100, len);
		vstream_put_tag(wire + n + 4 + len, vstream_crc(vstream_crc(0, data, 100), data + 100, len));
		n += len + 8;
		got = pump(&g, g.vpeer, wire, n, g.plain, back, sizeof(back), 1);
		CHECK_INT(got, 100);
		CHECK_INT(g.w.stats.vs_broken, 1);
		CHECK_INT(g.w.stats.closed[RELAY_END_RESET], 1);
		rig_close(&g);
	}
}

/* A record that comes slowly holds heap (one record at most), never a ring
 * buffer: a peer that announces a record and stalls cannot starve the
 * worker's other flows of buffers. */
static void test_slow_record(void)
{
	struct rig g;
	size_t n, got = 0;
	unsigned avail0;

	rig_open(&g, 65536);
	/* One record of 10,000 bytes. */
	vstream_put_hdr(wire, 10000);
	memcpy(wire + 4, data, 10000);
	vstream_put_tag(wire + 4 + 10000, vstream_crc(0, data, 10000));
	n = 10008;
	for (int i = 0; i < 20; i++)
		relay_worker_poll(&g.w, 1);
	avail0 = g.w.bufs.avail;
	CHECK_INT(write(g.vpeer, wire, 104), 104);
	for (int i = 0; i < 50; i++)
		relay_worker_poll(&g.w, 1);
	CHECK_INT(g.w.bufs.avail, avail0);              /* the ring buffer went back */
	CHECK_INT(g.w.stats.parked_bytes, 10004);       /* the record is on the heap */
	CHECK(read(g.plain, back, sizeof(back)) < 0);  /* nothing passed on yet */
	CHECK_INT(write(g.vpeer, wire + 104, n - 104), (long long)(n - 104));
	for (int i = 0; i < 200 && got < 10000; i++) {
		ssize_t k;

		relay_worker_poll(&g.w, 1);
		while ((k = read(g.plain, back + got, sizeof(back) - got)) > 0)
			got += (size_t)k;
	}
	CHECK_INT(got, 10000);
	CHECK(!memcmp(back, data, 10000));
	CHECK_INT(g.w.stats.parked_bytes, 0);
	rig_close(&g);
}

int main(void)
{
	fill();
	RUN(test_framing);
	RUN(test_deframing);
	RUN(test_deframing_splits);
	RUN(test_wrong_streams);
	RUN(test_too_large);
	RUN(test_slow_record);
	return check_finish();
}
