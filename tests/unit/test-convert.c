/* RFC 8803 codec tests. Byte vectors are written out by hand from the RFC's
 * layout, not produced by the encoder under test. */
#include "check.h"
#include "convert.h"

#include <arpa/inet.h>
#include <errno.h>

static const struct convert_decode_opts from_client = { .role = CONVERT_FROM_CLIENT };
static const struct convert_decode_opts from_conv = { .role = CONVERT_FROM_CONVERTER };

/* Connect to [::ffff:203.0.113.2]:80, no options: 4 + 20 bytes. */
static const uint8_t connect_v4[] = {
	0x01, 0x06, 0x22, 0x63,                         /* v1, 6 words, magic */
	0x0a, 0x05, 0x00, 0x50,                         /* Connect, 5 words, port 80 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,       /* ::ffff: */
	203, 0, 113, 2,
};

static int decode(const uint8_t *b, size_t n, const struct convert_decode_opts *o,
		  struct convert_msg *m, struct convert_diag *d)
{
	return convert_decode(b, n, o, m, d);
}

/* Expect -EBADMSG with this code; returns the diag for more checks. */
static struct convert_diag expect_bad(const uint8_t *b, size_t n,
				      const struct convert_decode_opts *o,
				      uint8_t code, int line)
{
	struct convert_msg m;
	struct convert_diag d;
	int r = decode(b, n, o, &m, &d);

	if (r != -EBADMSG || d.code != code || !d.reason) {
		check_failed++;
		fprintf(stderr, "%s:%d: expected -EBADMSG code %u, got r=%d code %u (%s)\n",
			__FILE__, line, code, r, d.code, d.reason ? d.reason : "-");
	}
	return d;
}
#define EXPECT_BAD(b, n, o, code) expect_bad((b), (n), (o), (code), __LINE__)

static void test_connect_vector(void)
{
	struct convert_msg m;
	struct convert_diag d;
	struct in6_addr want;
	uint8_t buf[64];
	struct convert_writer w;
	int r;

	CHECK_INT(sizeof(connect_v4), 24);
	r = decode(connect_v4, sizeof(connect_v4), &from_client, &m, &d);
	CHECK_INT(r, 24);
	CHECK_INT(m.len, 24);
	CHECK_INT(m.present, CONVERT_HAS_CONNECT);
	CHECK_INT(m.connect.port, 80);
	CHECK(inet_pton(AF_INET6, "::ffff:203.0.113.2", &want) == 1);
	CHECK_MEM(&m.connect.addr, &want, 16);
	CHECK(convert_addr_is_v4(&m.connect.addr));
	CHECK_INT(m.connect.tcp_opts.len, 0);

	/* The encoder produces exactly the hand-written bytes. */
	convert_writer_init(&w, buf, sizeof(buf));
	convert_addr_from_v4(&want, htonl(0xcb007102));
	convert_put_connect(&w, &want, 80, NULL, 0);
	r = convert_writer_finish(&w);
	CHECK_INT(r, 24);
	CHECK_MEM(buf, connect_v4, 24);
}

static void test_connect_v6_with_options(void)
{
	/* Connect to [2001:db8::1]:443 with MSS 1460 and SACK-permitted, the
	 * options padded with EOL to a word. */
	static const uint8_t v[] = {
		0x01, 0x07, 0x22, 0x63,
		0x0a, 0x06, 0x01, 0xbb,
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
		0x02, 0x04, 0x05, 0xb4,  /* MSS 1460 */
	};
	static const uint8_t v_sack[] = {
		0x01, 0x08, 0x22, 0x63,
		0x0a, 0x07, 0x01, 0xbb,
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
		0x02, 0x04, 0x05, 0xb4,
		0x04, 0x02, 0x00, 0x00,  /* SACK-permitted, EOL padding */
	};
	struct convert_msg m;
	struct convert_diag d;
	struct in6_addr a;
	uint8_t buf[64];
	struct convert_writer w;
	static const uint8_t opts[] = { 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02 };

	CHECK_INT(decode(v, sizeof(v), &from_client, &m, &d), 28);
	CHECK_INT(m.connect.port, 443);
	CHECK(!convert_addr_is_v4(&m.connect.addr));
	CHECK_INT(m.connect.tcp_opts.len, 4);
	CHECK_MEM(m.connect.tcp_opts.p, v + 24, 4);

	CHECK_INT(decode(v_sack, sizeof(v_sack), &from_client, &m, &d), 32);
	CHECK_INT(m.connect.tcp_opts.len, 6); /* stops at EOL */

	inet_pton(AF_INET6, "2001:db8::1", &a);
	convert_writer_init(&w, buf, sizeof(buf));
	convert_put_connect(&w, &a, 443, opts, sizeof(opts));
	CHECK_INT(convert_writer_finish(&w), 32);
	CHECK_MEM(buf, v_sack, 32);
}

static void test_replies_vectors(void)
{
	static const uint8_t ok[] = { 0x01, 0x01, 0x22, 0x63 };
	static const uint8_t not_auth[] = { 0x01, 0x02, 0x22, 0x63, 0x1e, 0x01, 0x20, 0x00 };
	/* Destination Unreachable with a 2-byte value: 5 bytes -> 2 words. */
	static const uint8_t unreach[] = {
		0x01, 0x03, 0x22, 0x63, 0x1e, 0x02, 0x61, 0x03, 0x01, 0x00, 0x00, 0x00,
	};
	struct convert_msg m;
	struct convert_diag d;
	uint8_t buf[32];
	static const uint8_t val[] = { 0x03, 0x01 };

	CHECK_INT(convert_encode_success(buf, sizeof(buf)), 4);
	CHECK_MEM(buf, ok, 4);
	CHECK_INT(decode(ok, 4, &from_conv, &m, &d), 4);
	CHECK_INT(m.present, 0);

	CHECK_INT(convert_encode_error(buf, sizeof(buf), CONVERT_E_NOT_AUTHORIZED, NULL, 0), 8);
	CHECK_MEM(buf, not_auth, 8);
	CHECK_INT(decode(not_auth, 8, &from_conv, &m, &d), 8);
	CHECK_INT(m.present, CONVERT_HAS_ERROR);
	CHECK_INT(m.error.code, 32);

	CHECK_INT(convert_encode_error(buf, sizeof(buf), 97, val, 2), 12);
	CHECK_MEM(buf, unreach, 12);
	CHECK_INT(decode(unreach, 12, &from_conv, &m, &d), 12);
	CHECK_INT(m.error.code, 97);
	CHECK(m.error.value.len >= 2);
	CHECK_MEM(m.error.value.p, val, 2);
}

static void test_info_cookie_vectors(void)
{
	static const uint8_t info[] = { 0x01, 0x02, 0x22, 0x63, 0x01, 0x01, 0x00, 0x00 };
	static const uint8_t cookie_connect[] = {
		0x01, 0x09, 0x22, 0x63,
		0x16, 0x03, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04,
		0x0a, 0x05, 0x1f, 0x90,  /* port 8080 */
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 10,
	};
	static const uint8_t ck[] = { 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4 };
	struct convert_msg m;
	struct convert_diag d;

	CHECK_INT(decode(info, sizeof(info), &from_client, &m, &d), 8);
	CHECK_INT(m.present, CONVERT_HAS_INFO);

	CHECK_INT(decode(cookie_connect, sizeof(cookie_connect), &from_client, &m, &d), 36);
	CHECK_INT(m.present, CONVERT_HAS_CONNECT | CONVERT_HAS_COOKIE);
	CHECK_INT(m.cookie.len, 8);
	CHECK_MEM(m.cookie.p, ck, 8);
	CHECK_INT(m.connect.port, 8080);
	CHECK_INT(m.connect.addr.s6_addr[15], 10);
}

/* Every TLV encoded then decoded comes back identical. */
static void test_round_trips(void)
{
	uint8_t buf[CONVERT_MAX_LEN], big[CONVERT_MAX_LEN];
	struct convert_writer w;
	struct convert_msg m;
	struct convert_diag d;
	struct in6_addr a;
	static const uint8_t kinds[] = { 2, 3, 4, 8, 30 };
	static const uint8_t hdr[] = { 0x00, 0x50, 0xc3, 0x50, 1, 2, 3, 4, 5, 6, 7, 8,
				       0x80, 0x12, 0xff, 0xff, 0, 0, 0, 0,
				       0x02, 0x04, 0x05, 0xb4 };
	static const uint8_t tfo[] = { 0x22, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1 };
	int n;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + 1);

	/* Client side: Info + Connect (with options) + Cookie. */
	inet_pton(AF_INET6, "2001:db8:1:2:3:4:5:6", &a);
	convert_writer_init(&w, buf, sizeof(buf));
	convert_put_info(&w);
	convert_put_connect(&w, &a, 65535, tfo, sizeof(tfo));
	convert_put_cookie(&w, big, 37);
	n = convert_writer_finish(&w);
	CHECK(n > 0 && n % 4 == 0);
	CHECK_INT(decode(buf, (size_t)n, &from_client, &m, &d), n);
	CHECK_INT(m.present, CONVERT_HAS_INFO | CONVERT_HAS_CONNECT | CONVERT_HAS_COOKIE);
	CHECK_INT(m.connect.port, 65535);
	CHECK_MEM(&m.connect.addr, &a, 16);
	CHECK_INT(m.connect.tcp_opts.len, sizeof(tfo));
	CHECK_MEM(m.connect.tcp_opts.p, tfo, sizeof(tfo));
	/* Cookie comes back with its padding: the codec cannot tell padding
	 * from value, so cookies are compared over a whole number of words. */
	CHECK_INT(m.cookie.len, 40);
	CHECK_MEM(m.cookie.p, big, 37);

	/* Converter side: Extended TCP Header + Supported + Error. */
	convert_writer_init(&w, buf, sizeof(buf));
	convert_put_ext_tcp_hdr(&w, hdr, sizeof(hdr));
	convert_put_supported_ext(&w, kinds, sizeof(kinds));
	convert_put_error(&w, CONVERT_E_UNSUPPORTED_TCP_OPTION, kinds + 4, 1);
	n = convert_writer_finish(&w);
	CHECK(n > 0);
	CHECK_INT(decode(buf, (size_t)n, &from_conv, &m, &d), n);
	CHECK_INT(m.present, CONVERT_HAS_EXT_TCP_HDR | CONVERT_HAS_SUPPORTED_EXT | CONVERT_HAS_ERROR);
	CHECK_INT(m.ext_tcp_hdr.len, sizeof(hdr));
	CHECK_MEM(m.ext_tcp_hdr.p, hdr, sizeof(hdr));
	CHECK_INT(m.supported_ext.len, sizeof(kinds));
	CHECK_MEM(m.supported_ext.p, kinds, sizeof(kinds));
	CHECK_INT(m.error.code, 33);
	CHECK_INT(m.error.value.p[0], 30);

	/* Largest possible message: one cookie filling 1020 bytes. */
	convert_writer_init(&w, buf, sizeof(buf));
	convert_put_cookie(&w, big, 1020 - 4 - 4);
	convert_put_info(&w);
	CHECK_INT(convert_writer_finish(&w), -EMSGSIZE); /* one word too many */
	convert_writer_init(&w, buf, sizeof(buf));
	convert_put_cookie(&w, big, 1020 - 4 - 4 - 4);
	convert_put_info(&w);
	CHECK_INT(convert_writer_finish(&w), 1020);
	CHECK_INT(buf[1], 255);
	CHECK_INT(decode(buf, 1020, &from_client, &m, &d), 1020);
	CHECK_INT(m.cookie.len, 1008);
}

/* Application bytes right behind the message are the first payload. */
static void test_payload_follows(void)
{
	uint8_t buf[128];
	struct convert_msg m;
	struct convert_diag d;
	static const char req[] = "GET / HTTP/1.1\r\n";

	int n;

	memcpy(buf, connect_v4, sizeof(connect_v4));
	memcpy(buf + sizeof(connect_v4), req, sizeof(req) - 1);
	n = decode(buf, sizeof(connect_v4) + sizeof(req) - 1, &from_client, &m, &d);
	/* The decoder says where the payload starts (its return value and
	 * m.len): there, and not a byte later, is the request. */
	CHECK_INT(n, 24);
	CHECK_INT(m.len, 24);
	if (n > 0 && (size_t)n < sizeof(buf))
		CHECK_MEM(buf + n, req, sizeof(req) - 1);
	/* And the message's fields did not swallow any of it. */
	CHECK_INT(m.connect.tcp_opts.len, 0);
}

/* Fed one byte at a time, the decoder asks for more until it is complete,
 * and never asks for more than the message still needs. */
static void test_incremental(void)
{
	uint8_t buf[64];
	struct convert_msg m;
	struct convert_diag d;
	int r;

	memcpy(buf, connect_v4, sizeof(connect_v4));
	for (size_t n = 0; n < sizeof(connect_v4); n++) {
		r = decode(buf, n, &from_client, &m, &d);
		CHECK_INT(r, 0);
		CHECK(d.need >= 1 && n + d.need <= sizeof(connect_v4));
	}
	CHECK_INT(decode(buf, 0, &from_client, &m, &d), 0);
	CHECK_INT(d.need, 4);
	CHECK_INT(decode(buf, 4, &from_client, &m, &d), 0);
	CHECK_INT(d.need, 20);
	CHECK_INT(decode(buf, 24, &from_client, &m, &d), 24);
}

/* The stream ended before the message did. */
static void test_eof(void)
{
	struct convert_decode_opts eof = { .role = CONVERT_FROM_CLIENT, .flags = CONVERT_F_EOF };
	struct convert_msg m;
	struct convert_diag d;

	EXPECT_BAD(connect_v4, 0, &eof, CONVERT_E_MALFORMED);
	EXPECT_BAD(connect_v4, 3, &eof, CONVERT_E_MALFORMED);
	d = EXPECT_BAD(connect_v4, 23, &eof, CONVERT_E_MALFORMED);
	CHECK_INT(d.offset, 23);
	CHECK_INT(decode(connect_v4, 24, &eof, &m, &d), 24);
}

static void test_bad_header(void)
{
	uint8_t b[32];
	struct convert_decode_opts small = { .role = CONVERT_FROM_CLIENT, .max_len = 64 };
	struct convert_diag d;

	/* Zero total length. */
	memcpy(b, connect_v4, 24);
	b[1] = 0;
	EXPECT_BAD(b, 24, &from_client, CONVERT_E_MALFORMED);
	EXPECT_BAD(b, 2, &from_client, CONVERT_E_MALFORMED); /* known at byte 2 */

	/* Wrong version: Unsupported Version carrying the version we speak. */
	memcpy(b, connect_v4, 24);
	b[0] = 2;
	d = EXPECT_BAD(b, 24, &from_client, CONVERT_E_UNSUPPORTED_VERSION);
	CHECK_INT(d.value_len, 1);
	CHECK_INT(d.value[0], 1);
	b[0] = 0;
	EXPECT_BAD(b, 4, &from_client, CONVERT_E_UNSUPPORTED_VERSION);

	/* Wrong magic, in either byte, before the version is judged. */
	memcpy(b, connect_v4, 24);
	b[3] = 0x64;
	EXPECT_BAD(b, 24, &from_client, CONVERT_E_MALFORMED);
	b[3] = 0x63;
	b[2] = 0x23;
	EXPECT_BAD(b, 3, &from_client, CONVERT_E_MALFORMED);
	EXPECT_BAD((const uint8_t *)"GET / HTTP/1.1\r\n", 16, &from_client, CONVERT_E_MALFORMED);

	/* A total length larger than this side accepts: refused from the
	 * header alone, before the rest is buffered. */
	memcpy(b, connect_v4, 24);
	b[1] = 17;  /* 68 bytes > 64 */
	d = EXPECT_BAD(b, 4, &small, CONVERT_E_MALFORMED);
	CHECK_INT(d.offset, 1);
	b[1] = 255;
	EXPECT_BAD(b, 2, &small, CONVERT_E_MALFORMED);
}

static void test_bad_tlvs(void)
{
	uint8_t b[64];
	struct convert_diag d;

	/* TLV length zero. */
	memcpy(b, connect_v4, 24);
	b[5] = 0;
	d = EXPECT_BAD(b, 24, &from_client, CONVERT_E_MALFORMED);
	CHECK_INT(d.offset, 5);

	/* TLV overrunning the message. */
	memcpy(b, connect_v4, 24);
	b[5] = 6;
	EXPECT_BAD(b, 24, &from_client, CONVERT_E_MALFORMED);
	/* ... even though more bytes follow in the buffer. */
	memset(b + 24, 0, 8);
	EXPECT_BAD(b, 32, &from_client, CONVERT_E_MALFORMED);

	/* Connect too short: 4 words instead of 5. */
	memcpy(b, connect_v4, 20);
	b[1] = 5;
	b[5] = 4;
	d = EXPECT_BAD(b, 20, &from_client, CONVERT_E_MALFORMED);
	CHECK_INT(d.offset, 4);
	/* Connect of one word. */
	{
		static const uint8_t v[] = { 1, 2, 0x22, 0x63, 0x0a, 0x01, 0x00, 0x50 };
		EXPECT_BAD(v, sizeof(v), &from_client, CONVERT_E_MALFORMED);
	}

	/* Info with a wrong length. */
	{
		static const uint8_t v[] = { 1, 3, 0x22, 0x63, 0x01, 0x02, 0, 0, 0, 0, 0, 0 };
		EXPECT_BAD(v, sizeof(v), &from_client, CONVERT_E_MALFORMED);
	}

	/* Duplicate Connect. */
	memcpy(b, connect_v4, 24);
	memcpy(b + 24, connect_v4 + 4, 20);
	b[1] = 11;
	EXPECT_BAD(b, 44, &from_client, CONVERT_E_MALFORMED);

	/* Request with no Connect and no Info (header only, or a cookie only). */
	{
		static const uint8_t hdr[] = { 1, 1, 0x22, 0x63 };
		static const uint8_t ck[] = { 1, 2, 0x22, 0x63, 0x16, 0x01, 0, 0 };
		EXPECT_BAD(hdr, 4, &from_client, CONVERT_E_MALFORMED);
		EXPECT_BAD(ck, 8, &from_client, CONVERT_E_MALFORMED);
	}

	/* Malformed TCP options inside Connect: length 0, length 1, overrun. */
	{
		uint8_t v[28];
		memcpy(v, connect_v4, 24);
		v[1] = 7;
		v[5] = 6;
		v[24] = 2; v[25] = 0; v[26] = 0; v[27] = 0;
		d = EXPECT_BAD(v, 28, &from_client, CONVERT_E_MALFORMED);
		CHECK_INT(d.offset, 24);
		v[25] = 1;
		EXPECT_BAD(v, 28, &from_client, CONVERT_E_MALFORMED);
		v[25] = 5;
		EXPECT_BAD(v, 28, &from_client, CONVERT_E_MALFORMED);
		v[24] = 1; v[25] = 1; v[26] = 1; v[27] = 8;  /* NOPs then kind 8 cut */
		d = EXPECT_BAD(v, 28, &from_client, CONVERT_E_MALFORMED);
		CHECK_INT(d.offset, 27);
		v[27] = 1;  /* all NOPs: fine */
		{
			struct convert_msg m;
			CHECK_INT(decode(v, 28, &from_client, &m, &d), 28);
			CHECK_INT(m.connect.tcp_opts.len, 4);
		}
	}
}

/* Unknown types in each IANA range, the reserved type 0, and known TLVs in
 * the wrong direction. */
static void test_unknown_tlvs(void)
{
	/* 192 and 193 are ours (Verified Stream, Speed Test); the rest of
	 * private use is not. */
	static const uint8_t types[] = { 2, 9, 11, 19, 23, 29, 31, 127, 128, 191, 194, 255 };
	uint8_t b[32];
	struct convert_diag d;

	for (size_t i = 0; i < sizeof(types); i++) {
		memcpy(b, connect_v4, 24);
		b[1] = 7;
		b[24] = types[i]; b[25] = 1; b[26] = 0; b[27] = 0;
		d = EXPECT_BAD(b, 28, &from_client, CONVERT_E_UNSUPPORTED_MESSAGE);
		CHECK_INT(d.value_len, 1);
		CHECK_INT(d.value[0], types[i]);
		CHECK_INT(d.offset, 24);
		/* Also from the converter side. */
		b[0] = 1; b[1] = 2; b[4] = types[i]; b[5] = 1; b[6] = 0; b[7] = 0;
		d = EXPECT_BAD(b, 8, &from_conv, CONVERT_E_UNSUPPORTED_MESSAGE);
		CHECK_INT(d.value[0], types[i]);
	}

	/* Type 0 is reserved: malformed rather than unsupported. */
	memcpy(b, connect_v4, 24);
	b[1] = 7;
	b[24] = 0; b[25] = 1; b[26] = 0; b[27] = 0;
	EXPECT_BAD(b, 28, &from_client, CONVERT_E_MALFORMED);

	/* An Error TLV from a client; a Connect TLV from the converter. */
	{
		static const uint8_t err[] = { 1, 2, 0x22, 0x63, 0x1e, 0x01, 0x60, 0x00 };
		d = EXPECT_BAD(err, 8, &from_client, CONVERT_E_UNSUPPORTED_MESSAGE);
		CHECK_INT(d.value[0], 30);
		d = EXPECT_BAD(connect_v4, 24, &from_conv, CONVERT_E_UNSUPPORTED_MESSAGE);
		CHECK_INT(d.value[0], 10);
	}
}

/* Verified Stream (private use 192): wire bytes, both directions, and every
 * way it can be wrong. */
static void test_verified(void)
{
	/* Connect to 192.0.2.1:80 + Verified Stream v1, records up to 65536. */
	static const uint8_t req[] = {
		1, 8, 0x22, 0x63,
		10, 5, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1,
		192, 2, 1, 0, 0, 1, 0, 0,
	};
	uint8_t b[64];
	struct convert_writer w;
	struct convert_msg m;
	struct convert_diag d;
	struct in6_addr a;

	convert_addr_from_v4(&a, htonl(0xc0000201));
	convert_writer_init(&w, b, sizeof(b));
	convert_put_connect(&w, &a, 80, NULL, 0);
	convert_put_verified(&w, 65536);
	CHECK_INT(convert_writer_finish(&w), (int)sizeof(req));
	CHECK(!memcmp(b, req, sizeof(req)));
	CHECK_INT(decode(req, sizeof(req), &from_client, &m, &d), (int)sizeof(req));
	CHECK(m.present & CONVERT_HAS_VERIFIED);
	CHECK_INT((int)m.verified.max_record, 65536);
	/* The converter's agreement: header + the same TLV. */
	convert_writer_init(&w, b, sizeof(b));
	convert_put_verified(&w, 32768);
	CHECK_INT(convert_writer_finish(&w), 12);
	CHECK_INT(decode(b, 12, &from_conv, &m, &d), 12);
	CHECK((m.present & CONVERT_HAS_VERIFIED) && m.verified.max_record == 32768);
	/* Another version: not offered, no error; in a reply, malformed. */
	memcpy(b, req, sizeof(req));
	b[26] = 2;
	CHECK_INT(decode(b, sizeof(req), &from_client, &m, &d), (int)sizeof(req));
	CHECK(!(m.present & CONVERT_HAS_VERIFIED));
	{
		uint8_t rep[12] = { 1, 3, 0x22, 0x63, 192, 2, 2, 0, 0, 1, 0, 0 };

		EXPECT_BAD(rep, 12, &from_conv, CONVERT_E_MALFORMED);
		rep[6] = 1;
		CHECK_INT(decode(rep, 12, &from_conv, &m, &d), 12);
	}
	/* Records below 16384, a wrong length, twice: malformed. */
	memcpy(b, req, sizeof(req));
	b[29] = 0; b[30] = 0x3f; b[31] = 0xff;
	d = EXPECT_BAD(b, sizeof(req), &from_client, CONVERT_E_MALFORMED);
	memcpy(b, req, sizeof(req));
	b[1] = 7; b[25] = 1;
	EXPECT_BAD(b, 28, &from_client, CONVERT_E_MALFORMED);
	memcpy(b, req, sizeof(req));
	memcpy(b + 32, req + 24, 8);
	b[1] = 10;
	EXPECT_BAD(b, 40, &from_client, CONVERT_E_MALFORMED);
	/* The writer refuses a record size under the minimum. */
	convert_writer_init(&w, b, sizeof(b));
	CHECK_INT(convert_put_verified(&w, 16383), -EINVAL);
	CHECK(!strcmp(convert_tlv_name(192), "verified_stream"));
}

static void test_writer_errors(void)
{
	uint8_t buf[16];
	struct convert_writer w;
	struct in6_addr a = IN6ADDR_ANY_INIT;
	static const uint8_t badopt[] = { 2, 1 };

	convert_writer_init(&w, buf, 3);
	CHECK_INT(convert_writer_finish(&w), -ENOBUFS);

	convert_writer_init(&w, buf, sizeof(buf));
	CHECK_INT(convert_put_connect(&w, &a, 80, NULL, 0), -ENOBUFS);
	CHECK_INT(convert_put_info(&w), -ENOBUFS);  /* sticky */
	CHECK_INT(convert_writer_finish(&w), -ENOBUFS);

	convert_writer_init(&w, buf, sizeof(buf));
	CHECK_INT(convert_put_connect(&w, &a, 80, badopt, sizeof(badopt)), -EINVAL);
	CHECK_INT(convert_writer_finish(&w), -EINVAL);

	convert_writer_init(&w, buf, sizeof(buf));
	CHECK_INT(convert_put_cookie(&w, NULL, 4), -EINVAL);

	CHECK_INT(convert_encode_error(buf, 7, 1, NULL, 0), -ENOBUFS);
	{
		struct convert_diag d = { .code = 0, .value_len = 1, .value = { 1 } };
		static const uint8_t v[] = { 1, 2, 0x22, 0x63, 0x1e, 0x01, 0x00, 0x01 };
		CHECK_INT(convert_encode_diag(buf, sizeof(buf), &d), 8);
		CHECK_MEM(buf, v, 8);
	}
}

static void test_bad_args(void)
{
	struct convert_msg m;
	struct convert_diag d;
	struct convert_decode_opts o = { .role = 7 };

	CHECK_INT(convert_decode(NULL, 4, &from_client, &m, &d), -EINVAL);
	CHECK_INT(convert_decode(connect_v4, 24, NULL, &m, &d), -EINVAL);
	CHECK_INT(convert_decode(connect_v4, 24, &o, &m, &d), -EINVAL);
	o.role = CONVERT_FROM_CLIENT;
	o.max_len = 2;
	CHECK_INT(convert_decode(connect_v4, 24, &o, &m, &d), -EINVAL);
	o.max_len = 1021;
	CHECK_INT(convert_decode(connect_v4, 24, &o, &m, &d), -EINVAL);
}

static void test_names(void)
{
	static const unsigned codes[] = { 0, 1, 2, 3, 32, 33, 64, 65, 96, 97 };

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		CHECK(strcmp(convert_error_name(codes[i]), "unknown") != 0);
	CHECK(strcmp(convert_error_name(4), "unknown") == 0);
	CHECK(strcmp(convert_error_name(97), "destination_unreachable") == 0);
	CHECK(strcmp(convert_tlv_name(10), "connect") == 0);
	CHECK(strcmp(convert_tlv_name(11), "unknown") == 0);
}

/* The Speed Test TLV (193): a request of its own (no Connect or Info
 * needed), its value kept for the cookie, every field checked. */
static void test_speedtest(void)
{
	uint8_t b[64], val[CONVERT_SPEEDTEST_VALUE_LEN];
	static const uint8_t want[] = { 1, 3, 0x22, 0x63, 193, 2, 1, 2, 7, 0, 0, 0 };
	struct convert_writer w;
	struct convert_msg m;
	struct convert_diag d;
	int n;

	convert_writer_init(&w, b, sizeof(b));
	CHECK_INT(convert_put_speedtest(&w, CONVERT_SPEEDTEST_UP, 7, val), 0);
	n = convert_writer_finish(&w);
	CHECK_INT(n, 12);
	CHECK(!memcmp(b, want, sizeof(want)));
	CHECK(!memcmp(val, want + 6, 6));
	CHECK_INT(decode(b, 12, &from_client, &m, &d), 12);
	CHECK_INT(m.present, CONVERT_HAS_SPEEDTEST);
	CHECK_INT(m.speedtest.direction, 2);
	CHECK_INT(m.speedtest.seconds, 7);
	CHECK_INT(m.speedtest.value.len, 6);
	CHECK(m.speedtest.value.p == b + 6);
	CHECK_INT(decode(b, 12, &from_conv, &m, &d), 12);  /* the echo */
	b[6] = 2;
	EXPECT_BAD(b, 12, &from_client, CONVERT_E_UNSUPPORTED_MESSAGE);
	b[6] = 1; b[7] = 3;
	EXPECT_BAD(b, 12, &from_client, CONVERT_E_MALFORMED);
	b[7] = 1; b[8] = 0;
	EXPECT_BAD(b, 12, &from_client, CONVERT_E_MALFORMED);
	b[8] = 11;
	EXPECT_BAD(b, 12, &from_client, CONVERT_E_MALFORMED);
	b[8] = 10; b[11] = 1;
	EXPECT_BAD(b, 12, &from_client, CONVERT_E_MALFORMED);
	b[11] = 0;
	CHECK_INT(decode(b, 12, &from_client, &m, &d), 12);
	convert_writer_init(&w, b, sizeof(b));
	CHECK(convert_put_speedtest(&w, 0, 5, NULL) < 0);
	convert_writer_init(&w, b, sizeof(b));
	CHECK(convert_put_speedtest(&w, 1, 11, NULL) < 0);
	CHECK(!strcmp(convert_tlv_name(CONVERT_TLV_SPEEDTEST), "speed_test"));
}

int main(void)
{
	RUN(test_connect_vector);
	RUN(test_connect_v6_with_options);
	RUN(test_replies_vectors);
	RUN(test_info_cookie_vectors);
	RUN(test_round_trips);
	RUN(test_payload_follows);
	RUN(test_incremental);
	RUN(test_eof);
	RUN(test_bad_header);
	RUN(test_bad_tlvs);
	RUN(test_unknown_tlvs);
	RUN(test_verified);
	RUN(test_speedtest);
	RUN(test_writer_errors);
	RUN(test_bad_args);
	RUN(test_names);
	return check_finish();
}
