/* Verified-stream records: CRC-32C against published vectors (RFC 3720
 * B.4), the CPU instruction against the portable tables, chaining, and the
 * record header's limits. */
#include "vstream.h"
#include "check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void test_vectors(void)
{
	uint8_t b[32];

	CHECK_INT((int64_t)vstream_crc(0, "123456789", 9), 0xE3069283);
	CHECK_INT((int64_t)vstream_crc_sw(0, "123456789", 9), 0xE3069283);
	CHECK_INT((int64_t)vstream_crc(0, "", 0), 0);
	memset(b, 0, sizeof(b));
	CHECK_INT((int64_t)vstream_crc(0, b, 32), 0x8A9136AA);
	memset(b, 0xff, sizeof(b));
	CHECK_INT((int64_t)vstream_crc(0, b, 32), 0x62A8AB43);
	for (int i = 0; i < 32; i++)
		b[i] = (uint8_t)i;
	CHECK_INT((int64_t)vstream_crc(0, b, 32), 0x46DD794E);
	CHECK_INT((int64_t)vstream_crc_sw(0, b, 32), 0x46DD794E);
}

/* Any split of a stream gives the CRC of the whole; the instruction and the
 * tables agree at every length and alignment. */
static void test_chaining(void)
{
	static uint8_t buf[70000];
	uint32_t whole, c;

	srand(7);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)rand();
	whole = vstream_crc_sw(0, buf, sizeof(buf));
	CHECK_INT((int64_t)vstream_crc(0, buf, sizeof(buf)), (int64_t)whole);
	for (int t = 0; t < 200; t++) {
		size_t cut = (size_t)rand() % sizeof(buf);

		c = vstream_crc(vstream_crc(0, buf, cut), buf + cut, sizeof(buf) - cut);
		CHECK_INT((int64_t)c, (int64_t)whole);
	}
	for (size_t off = 0; off < 9; off++)
		for (size_t len = 0; len < 40; len++)
			CHECK_INT((int64_t)vstream_crc(5, buf + off, len),
				  (int64_t)vstream_crc_sw(5, buf + off, len));
	/* Around the lengths where the instruction's three-stream passes
	 * begin and end (3 x 256 and 3 x 4096 bytes), and anywhere. */
	{
		static const size_t edge[] = { 767, 768, 769, 775, 776, 1535, 1536, 1543,
					       12287, 12288, 12289, 12295, 12296, 13055,
					       13056, 13063, 24576, 25343, 69990 };

		for (size_t off = 0; off < 9; off++)
			for (size_t k = 0; k < sizeof(edge) / sizeof(edge[0]); k++)
				CHECK_INT((int64_t)vstream_crc(5, buf + off, edge[k]),
					  (int64_t)vstream_crc_sw(5, buf + off, edge[k]));
		for (int t = 0; t < 300; t++) {
			size_t off = (size_t)rand() % 1000;
			size_t len = (size_t)rand() % (sizeof(buf) - off);
			uint32_t init = (uint32_t)rand();

			CHECK_INT((int64_t)vstream_crc(init, buf + off, len),
				  (int64_t)vstream_crc_sw(init, buf + off, len));
		}
	}
	/* A run moved within the stream changes it (what the kernel does). */
	memcpy(buf + 1000, buf + 33768, 2840);
	CHECK(vstream_crc(0, buf, sizeof(buf)) != whole);
}

static void test_header(void)
{
	uint8_t h[4];

	vstream_put_hdr(h, 65536);
	CHECK(h[0] == 1 && h[1] == 1 && h[2] == 0 && h[3] == 0);
	CHECK_INT(vstream_hdr_len(h, 65536), 65536);
	CHECK_INT(vstream_hdr_len(h, 65535), -EBADMSG);
	vstream_put_hdr(h, 1);
	CHECK_INT(vstream_hdr_len(h, 1024), 1);
	h[3] = 0;
	CHECK_INT(vstream_hdr_len(h, 1024), -EBADMSG);   /* empty record */
	vstream_put_hdr(h, 100);
	h[0] = 2;
	CHECK_INT(vstream_hdr_len(h, 1024), -EBADMSG);   /* unknown type */
	vstream_put_tag(h, 0xE3069283);
	CHECK(h[0] == 0xE3 && h[3] == 0x83);
	CHECK_INT((int64_t)vstream_get_tag(h), 0xE3069283);
}

int main(void)
{
	RUN(test_vectors);
	RUN(test_chaining);
	RUN(test_header);
	return check_finish();
}
