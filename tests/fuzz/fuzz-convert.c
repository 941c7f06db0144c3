/* libFuzzer harness for the RFC 8803 decoder.
 *
 * First input byte picks the context (role, size limit, EOF flag); the rest
 * is the bytes received. Beyond "no crash, no out-of-bounds read" (ASan), it
 * checks the decoder's contract:
 *  - the result is a length, 0 (need more) or -EBADMSG, nothing else;
 *  - a complete message lies within the input and is a whole number of words;
 *  - no shorter prefix of it is complete, and "need" never overshoots it;
 *  - every slice of the decoded message points inside the message;
 *  - re-encoding the decoded fields and decoding again gives the same fields;
 *  - every failure names a reason and encodes into an Error reply that a
 *    client decodes back to the same code. */
#include "convert.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

static void check_slice(const struct convert_bytes *s, const uint8_t *msg,
			size_t len)
{
	if (s->len == 0)
		return;
	REQUIRE(s->p >= msg && s->p + s->len <= msg + len);
}

static void reencode(const struct convert_msg *m, enum convert_role role)
{
	uint8_t buf[CONVERT_MAX_LEN];
	struct convert_writer w;
	struct convert_decode_opts o = { .role = role };
	struct convert_msg m2;
	struct convert_diag d;
	int n;

	convert_writer_init(&w, buf, sizeof(buf));
	if (m->present & CONVERT_HAS_INFO)
		convert_put_info(&w);
	if (m->present & CONVERT_HAS_CONNECT)
		convert_put_connect(&w, &m->connect.addr, m->connect.port,
				    m->connect.tcp_opts.p, m->connect.tcp_opts.len);
	if (m->present & CONVERT_HAS_COOKIE)
		convert_put_cookie(&w, m->cookie.p, m->cookie.len);
	if (m->present & CONVERT_HAS_EXT_TCP_HDR)
		convert_put_ext_tcp_hdr(&w, m->ext_tcp_hdr.p, m->ext_tcp_hdr.len);
	if (m->present & CONVERT_HAS_SUPPORTED_EXT)
		convert_put_supported_ext(&w, m->supported_ext.p, m->supported_ext.len);
	if (m->present & CONVERT_HAS_ERROR)
		convert_put_error(&w, m->error.code, m->error.value.p, m->error.value.len);
	if (m->present & CONVERT_HAS_VERIFIED)
		convert_put_verified(&w, m->verified.max_record);
	if (m->present & CONVERT_HAS_SPEEDTEST)
		convert_put_speedtest(&w, m->speedtest.direction, m->speedtest.seconds, NULL);
	n = convert_writer_finish(&w);
	/* Re-encoding never grows a message: padding is only ever removed. */
	REQUIRE(n > 0 && n <= m->len);
	REQUIRE(convert_decode(buf, (size_t)n, &o, &m2, &d) == n);
	REQUIRE(m2.present == m->present);
	if (m->present & CONVERT_HAS_CONNECT) {
		REQUIRE(m2.connect.port == m->connect.port);
		REQUIRE(!memcmp(&m2.connect.addr, &m->connect.addr, 16));
		REQUIRE(m2.connect.tcp_opts.len == m->connect.tcp_opts.len);
		REQUIRE(!m->connect.tcp_opts.len ||
			!memcmp(m2.connect.tcp_opts.p, m->connect.tcp_opts.p,
				m->connect.tcp_opts.len));
	}
	if (m->present & CONVERT_HAS_COOKIE)
		REQUIRE(m2.cookie.len == m->cookie.len &&
			(!m->cookie.len || !memcmp(m2.cookie.p, m->cookie.p, m->cookie.len)));
	if (m->present & CONVERT_HAS_SUPPORTED_EXT)
		REQUIRE(m2.supported_ext.len == m->supported_ext.len &&
			(!m->supported_ext.len ||
			 !memcmp(m2.supported_ext.p, m->supported_ext.p, m->supported_ext.len)));
	if (m->present & CONVERT_HAS_ERROR)
		REQUIRE(m2.error.code == m->error.code &&
			m2.error.value.len == m->error.value.len);
	if (m->present & CONVERT_HAS_VERIFIED)
		REQUIRE(m2.verified.max_record == m->verified.max_record &&
			m->verified.max_record >= CONVERT_VERIFIED_MIN_RECORD);
	if (m->present & CONVERT_HAS_SPEEDTEST)
		REQUIRE(m2.speedtest.direction == m->speedtest.direction &&
			m2.speedtest.seconds == m->speedtest.seconds &&
			(m->speedtest.direction == CONVERT_SPEEDTEST_DOWN ||
			 m->speedtest.direction == CONVERT_SPEEDTEST_UP) &&
			m->speedtest.seconds >= 1 && m->speedtest.seconds <= CONVERT_SPEEDTEST_MAX_S &&
			m2.speedtest.value.len == CONVERT_SPEEDTEST_VALUE_LEN &&
			!memcmp(m2.speedtest.value.p, m->speedtest.value.p, CONVERT_SPEEDTEST_VALUE_LEN));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct convert_decode_opts o = { 0 };
	struct convert_msg m;
	struct convert_diag d;
	uint8_t ctl;
	int r;

	if (size < 1)
		return 0;
	ctl = data[0];
	data++;
	size--;
	o.role = (ctl & 1) ? CONVERT_FROM_CONVERTER : CONVERT_FROM_CLIENT;
	o.flags = (ctl & 2) ? CONVERT_F_EOF : 0;
	/* Half the inputs use a size limit between 4 and 128 bytes. */
	o.max_len = (ctl & 4) ? (uint16_t)(4 + ((ctl >> 3) * 4)) : 0;

	r = convert_decode(data, size, &o, &m, &d);
	if (r > 0) {
		REQUIRE((size_t)r <= size && r % 4 == 0 && r == m.len);
		REQUIRE(!o.max_len || r <= o.max_len);
		check_slice(&m.connect.tcp_opts, data, (size_t)r);
		check_slice(&m.cookie, data, (size_t)r);
		check_slice(&m.ext_tcp_hdr, data, (size_t)r);
		check_slice(&m.supported_ext, data, (size_t)r);
		check_slice(&m.error.value, data, (size_t)r);
		REQUIRE(m.present != 0 || o.role == CONVERT_FROM_CONVERTER);
		/* Prefixes: incomplete, and asking for no more than the rest. */
		o.flags = 0;
		for (size_t k = 0; k < (size_t)r; k++) {
			struct convert_msg mp;
			struct convert_diag dp;

			REQUIRE(convert_decode(data, k, &o, &mp, &dp) == 0);
			REQUIRE(dp.need >= 1 && k + dp.need <= (size_t)r);
		}
		reencode(&m, o.role);
	} else if (r == 0) {
		REQUIRE(!(o.flags & CONVERT_F_EOF));
		REQUIRE(d.need >= 1 && d.need <= CONVERT_MAX_LEN);
	} else {
		uint8_t reply[16];
		struct convert_decode_opts oc = { .role = CONVERT_FROM_CONVERTER };
		struct convert_msg mr;
		struct convert_diag dr;
		int n;

		REQUIRE(r == -EBADMSG && d.reason != NULL);
		REQUIRE(d.code <= CONVERT_E_UNSUPPORTED_MESSAGE);
		n = convert_encode_diag(reply, sizeof(reply), &d);
		REQUIRE(n == 8);
		REQUIRE(convert_decode(reply, (size_t)n, &oc, &mr, &dr) == n);
		REQUIRE(mr.present == CONVERT_HAS_ERROR && mr.error.code == d.code);
	}
	return 0;
}
