/* RFC 8803 codec. See convert.h for the wire layout and the contract. */
#include "convert.h"

#include <errno.h>
#include <string.h>

_Static_assert(CONVERT_MAX_LEN == 1020, "total length is 8 bits of words");
_Static_assert(sizeof(struct in6_addr) == 16, "Connect carries 16 bytes");

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Fill diag for an invalid message; returns -EBADMSG for tail calls. */
static int fail(struct convert_diag *d, uint8_t code, size_t off,
		const char *reason)
{
	d->code = code;
	d->value_len = 0;
	d->offset = (uint16_t)off;
	d->reason = reason;
	return -EBADMSG;
}

static int fail_value(struct convert_diag *d, uint8_t code, uint8_t value,
		      size_t off, const char *reason)
{
	fail(d, code, off, reason);
	d->value[0] = value;
	d->value_len = 1;
	return -EBADMSG;
}

int convert_tcp_opts_check(const uint8_t *p, size_t len, size_t *ret_bad_off)
{
	size_t i = 0;

	while (i < len) {
		uint8_t kind = p[i];

		if (kind == 0)  /* EOL: the rest is padding */
			return (int)i;
		if (kind == 1) {  /* NOP */
			i++;
			continue;
		}
		/* Every other option has a length byte that counts itself and
		 * the kind, so it is >= 2; anything less would loop forever. */
		if (len - i < 2 || p[i + 1] < 2 || p[i + 1] > len - i) {
			if (ret_bad_off)
				*ret_bad_off = i;
			return -EINVAL;
		}
		i += p[i + 1];
	}
	return (int)i;
}

/* Which TLVs each direction may carry. */
static int tlv_allowed(enum convert_role role, uint8_t type)
{
	switch (type) {
	case CONVERT_TLV_INFO:
	case CONVERT_TLV_CONNECT:
	case CONVERT_TLV_COOKIE:
		return role == CONVERT_FROM_CLIENT;
	case CONVERT_TLV_EXT_TCP_HDR:
	case CONVERT_TLV_SUPPORTED_EXT:
	case CONVERT_TLV_ERROR:
		return role == CONVERT_FROM_CONVERTER;
	case CONVERT_TLV_VERIFIED:
	case CONVERT_TLV_SPEEDTEST:
		return 1;
	default:
		return 0;
	}
}

/* Decode one TLV of tlen bytes at p (offset off in the message) into m.
 * The caller has checked that tlen >= 4 and that it lies within the message. */
static int decode_tlv(const uint8_t *p, size_t tlen, size_t off,
		      enum convert_role role, struct convert_msg *m,
		      struct convert_diag *d)
{
	uint8_t type = p[0];
	int r;

	if (type == 0)
		return fail(d, CONVERT_E_MALFORMED, off, "TLV type 0 is reserved");
	if (!tlv_allowed(role, type))
		return fail_value(d, CONVERT_E_UNSUPPORTED_MESSAGE, type, off,
				  "unsupported TLV type");

	switch (type) {
	case CONVERT_TLV_INFO:
		if (m->present & CONVERT_HAS_INFO)
			return fail(d, CONVERT_E_MALFORMED, off, "duplicate Info TLV");
		if (tlen != CONVERT_WORD)
			return fail(d, CONVERT_E_MALFORMED, off, "Info TLV length is not 1");
		m->present |= CONVERT_HAS_INFO;
		return 0;

	case CONVERT_TLV_CONNECT: {
		size_t bad = 0;

		if (m->present & CONVERT_HAS_CONNECT)
			return fail(d, CONVERT_E_MALFORMED, off, "duplicate Connect TLV");
		if (tlen < CONVERT_CONNECT_LEN)
			return fail(d, CONVERT_E_MALFORMED, off, "Connect TLV too short");
		r = convert_tcp_opts_check(p + CONVERT_CONNECT_LEN,
					   tlen - CONVERT_CONNECT_LEN, &bad);
		if (r < 0)
			return fail(d, CONVERT_E_MALFORMED,
				    off + CONVERT_CONNECT_LEN + bad,
				    "malformed TCP option in Connect TLV");
		m->connect.port = rd16(p + 2);
		memcpy(&m->connect.addr, p + 4, 16);
		m->connect.tcp_opts.p = p + CONVERT_CONNECT_LEN;
		m->connect.tcp_opts.len = (uint16_t)r;
		m->present |= CONVERT_HAS_CONNECT;
		return 0;
	}

	case CONVERT_TLV_COOKIE:
		if (m->present & CONVERT_HAS_COOKIE)
			return fail(d, CONVERT_E_MALFORMED, off, "duplicate Cookie TLV");
		m->cookie.p = p + 4;
		m->cookie.len = (uint16_t)(tlen - 4);
		m->present |= CONVERT_HAS_COOKIE;
		return 0;

	case CONVERT_TLV_EXT_TCP_HDR:
		if (m->present & CONVERT_HAS_EXT_TCP_HDR)
			return fail(d, CONVERT_E_MALFORMED, off,
				    "duplicate Extended TCP Header TLV");
		m->ext_tcp_hdr.p = p + 4;
		m->ext_tcp_hdr.len = (uint16_t)(tlen - 4);
		m->present |= CONVERT_HAS_EXT_TCP_HDR;
		return 0;

	case CONVERT_TLV_SUPPORTED_EXT: {
		uint16_t n = (uint16_t)(tlen - 4);

		if (m->present & CONVERT_HAS_SUPPORTED_EXT)
			return fail(d, CONVERT_E_MALFORMED, off,
				    "duplicate Supported TCP Extensions TLV");
		/* Kind 0 (EOL) is no extension: trailing zeros are padding. */
		while (n > 0 && p[4 + n - 1] == 0)
			n--;
		m->supported_ext.p = p + 4;
		m->supported_ext.len = n;
		m->present |= CONVERT_HAS_SUPPORTED_EXT;
		return 0;
	}

	case CONVERT_TLV_ERROR:
		if (m->present & CONVERT_HAS_ERROR)
			return fail(d, CONVERT_E_MALFORMED, off, "duplicate Error TLV");
		m->error.code = p[2];
		m->error.value.p = p + 3;
		m->error.value.len = (uint16_t)(tlen - 3);
		m->present |= CONVERT_HAS_ERROR;
		return 0;

	case CONVERT_TLV_VERIFIED:
		if (m->present & CONVERT_HAS_VERIFIED)
			return fail(d, CONVERT_E_MALFORMED, off, "duplicate Verified Stream TLV");
		if (tlen != 2 + CONVERT_VERIFIED_VALUE_LEN)
			return fail(d, CONVERT_E_MALFORMED, off, "Verified Stream TLV length is not 2");
		/* Another version offered is not ours to speak: as if not
		 * offered (the converter does not echo it, the stream stays
		 * plain). In a reply it can only be an answer to our offer of
		 * version 1: anything else is wrong. */
		if (p[2] != CONVERT_VERIFIED_VERSION) {
			if (role == CONVERT_FROM_CONVERTER)
				return fail(d, CONVERT_E_MALFORMED, off + 2,
					    "Verified Stream TLV of another version in a reply");
			return 0;
		}
		m->verified.max_record = rd32(p + 4);
		if (m->verified.max_record < CONVERT_VERIFIED_MIN_RECORD)
			return fail(d, CONVERT_E_MALFORMED, off + 4,
				    "Verified Stream record size below 16384");
		m->present |= CONVERT_HAS_VERIFIED;
		return 0;

	case CONVERT_TLV_SPEEDTEST:
		if (m->present & CONVERT_HAS_SPEEDTEST)
			return fail(d, CONVERT_E_MALFORMED, off, "duplicate Speed Test TLV");
		if (tlen != 2 + CONVERT_SPEEDTEST_VALUE_LEN)
			return fail(d, CONVERT_E_MALFORMED, off, "Speed Test TLV length is not 2");
		if (p[2] != CONVERT_SPEEDTEST_VERSION)
			return fail(d, CONVERT_E_UNSUPPORTED_MESSAGE, off + 2,
				    "Speed Test TLV of another version");
		if (p[3] != CONVERT_SPEEDTEST_DOWN && p[3] != CONVERT_SPEEDTEST_UP)
			return fail(d, CONVERT_E_MALFORMED, off + 3, "Speed Test direction not 1 or 2");
		if (p[4] < 1 || p[4] > CONVERT_SPEEDTEST_MAX_S)
			return fail(d, CONVERT_E_MALFORMED, off + 4, "Speed Test seconds not 1-10");
		if (p[5] || p[6] || p[7])
			return fail(d, CONVERT_E_MALFORMED, off + 5, "Speed Test reserved bytes not 0");
		m->speedtest.direction = p[3];
		m->speedtest.seconds = p[4];
		m->speedtest.value.p = p + 2;
		m->speedtest.value.len = CONVERT_SPEEDTEST_VALUE_LEN;
		m->present |= CONVERT_HAS_SPEEDTEST;
		return 0;
	}
	/* tlv_allowed() admits only the types above. */
	return fail(d, CONVERT_E_UNSUPPORTED_MESSAGE, off, "unsupported TLV type");
}

int convert_decode(const uint8_t *buf, size_t len,
		   const struct convert_decode_opts *opts,
		   struct convert_msg *ret_msg, struct convert_diag *ret_diag)
{
	struct convert_msg m;
	size_t max_len, total, off;
	int eof, r;

	if ((!buf && len) || !opts || !ret_msg || !ret_diag)
		return -EINVAL;
	if (opts->role != CONVERT_FROM_CLIENT && opts->role != CONVERT_FROM_CONVERTER)
		return -EINVAL;
	max_len = opts->max_len ? opts->max_len : CONVERT_MAX_LEN;
	if (max_len < CONVERT_HDR_LEN || max_len > CONVERT_MAX_LEN)
		return -EINVAL;
	eof = !!(opts->flags & CONVERT_F_EOF);

	memset(ret_diag, 0, sizeof(*ret_diag));

	/* Reject as soon as the bytes we have prove the message invalid, so a
	 * peer speaking something else is answered without waiting. The magic
	 * is checked before the version: "GET /" is not Convert at all rather
	 * than Convert version 71. */
	if (len >= 3 && buf[2] != (CONVERT_MAGIC >> 8))
		return fail(ret_diag, CONVERT_E_MALFORMED, 2, "bad magic number");
	if (len >= 4 && buf[3] != (CONVERT_MAGIC & 0xff))
		return fail(ret_diag, CONVERT_E_MALFORMED, 2, "bad magic number");
	if (len >= 4 && buf[0] != CONVERT_VERSION)
		return fail_value(ret_diag, CONVERT_E_UNSUPPORTED_VERSION,
				  CONVERT_VERSION, 0, "unsupported version");
	if (len >= 2 && buf[1] == 0)
		return fail(ret_diag, CONVERT_E_MALFORMED, 1, "total length is zero");
	if (len >= 2 && (size_t)buf[1] * CONVERT_WORD > max_len)
		return fail(ret_diag, CONVERT_E_MALFORMED, 1,
			    "total length exceeds the accepted maximum");
	if (len < CONVERT_HDR_LEN) {
		if (eof)
			return fail(ret_diag, CONVERT_E_MALFORMED, len,
				    "stream ended inside the header");
		ret_diag->need = CONVERT_HDR_LEN - len;
		return 0;
	}

	total = (size_t)buf[1] * CONVERT_WORD;
	if (len < total) {
		if (eof)
			return fail(ret_diag, CONVERT_E_MALFORMED, len,
				    "stream ended inside the message");
		ret_diag->need = total - len;
		return 0;
	}

	memset(&m, 0, sizeof(m));
	m.len = (uint16_t)total;
	for (off = CONVERT_HDR_LEN; off < total;) {
		size_t tlen;

		/* total and every TLV length are whole words, so at least one
		 * word remains here; check anyway rather than trust arithmetic. */
		if (total - off < 2)
			return fail(ret_diag, CONVERT_E_MALFORMED, off,
				    "truncated TLV header");
		tlen = (size_t)buf[off + 1] * CONVERT_WORD;
		if (tlen == 0)
			return fail(ret_diag, CONVERT_E_MALFORMED, off + 1,
				    "TLV length is zero");
		if (tlen > total - off)
			return fail(ret_diag, CONVERT_E_MALFORMED, off + 1,
				    "TLV overruns the message");
		r = decode_tlv(buf + off, tlen, off, opts->role, &m, ret_diag);
		if (r < 0)
			return r;
		off += tlen;
	}

	if (opts->role == CONVERT_FROM_CLIENT &&
	    !(m.present & (CONVERT_HAS_CONNECT | CONVERT_HAS_INFO | CONVERT_HAS_SPEEDTEST)))
		return fail(ret_diag, CONVERT_E_MALFORMED, 0,
			    "request has neither Connect nor Info TLV");

	*ret_msg = m;
	return (int)total;
}

/* ---- writer ---- */

void convert_writer_init(struct convert_writer *w, void *buf, size_t cap)
{
	w->buf = buf;
	w->cap = cap;
	w->len = 0;
	w->err = 0;
	if (!buf || cap < CONVERT_HDR_LEN) {
		w->err = -ENOBUFS;
		return;
	}
	w->buf[0] = CONVERT_VERSION;
	w->buf[1] = 0;  /* set by finish */
	wr16(w->buf + 2, CONVERT_MAGIC);
	w->len = CONVERT_HDR_LEN;
}

/* Append a TLV: type, length, head (fixed part of the value), then body,
 * zero padded. Returns 0 or the sticky error. */
static int put_tlv(struct convert_writer *w, uint8_t type, const void *head,
		   size_t head_len, const void *body, size_t body_len)
{
	size_t raw, tlen;
	uint8_t *p;

	if (w->err)
		return w->err;
	if ((body_len && !body) || (head_len && !head))
		return w->err = -EINVAL;
	raw = 2 + head_len + body_len;
	tlen = (raw + CONVERT_WORD - 1) & ~(size_t)(CONVERT_WORD - 1);
	if (tlen > 255 * CONVERT_WORD || w->len + tlen > CONVERT_MAX_LEN)
		return w->err = -EMSGSIZE;
	if (w->len + tlen > w->cap)
		return w->err = -ENOBUFS;
	p = w->buf + w->len;
	p[0] = type;
	p[1] = (uint8_t)(tlen / CONVERT_WORD);
	if (head_len)
		memcpy(p + 2, head, head_len);
	if (body_len)
		memcpy(p + 2 + head_len, body, body_len);
	memset(p + raw, 0, tlen - raw);
	w->len += tlen;
	return 0;
}

static const uint8_t zero2[2];

int convert_put_info(struct convert_writer *w)
{
	return put_tlv(w, CONVERT_TLV_INFO, zero2, 2, NULL, 0);
}

int convert_put_connect(struct convert_writer *w, const struct in6_addr *addr,
			uint16_t port, const uint8_t *tcp_opts, size_t opts_len)
{
	uint8_t head[18];

	if (!w->err && (!addr || (opts_len &&
	    convert_tcp_opts_check(tcp_opts, opts_len, NULL) < 0)))
		w->err = -EINVAL;
	if (w->err)
		return w->err;
	wr16(head, port);
	memcpy(head + 2, addr, 16);
	return put_tlv(w, CONVERT_TLV_CONNECT, head, sizeof(head), tcp_opts,
		       opts_len);
}

int convert_put_verified(struct convert_writer *w, uint32_t max_record)
{
	uint8_t v[CONVERT_VERIFIED_VALUE_LEN] = {
		CONVERT_VERIFIED_VERSION, 0,
		(uint8_t)(max_record >> 24), (uint8_t)(max_record >> 16),
		(uint8_t)(max_record >> 8), (uint8_t)max_record,
	};

	if (!w->err && max_record < CONVERT_VERIFIED_MIN_RECORD)
		return w->err = -EINVAL;
	return put_tlv(w, CONVERT_TLV_VERIFIED, v, sizeof(v), NULL, 0);
}

int convert_put_speedtest(struct convert_writer *w, uint8_t direction, uint8_t seconds,
			  uint8_t value_out[CONVERT_SPEEDTEST_VALUE_LEN])
{
	uint8_t v[CONVERT_SPEEDTEST_VALUE_LEN] = { CONVERT_SPEEDTEST_VERSION, direction, seconds };

	if (!w->err && ((direction != CONVERT_SPEEDTEST_DOWN && direction != CONVERT_SPEEDTEST_UP) ||
			seconds < 1 || seconds > CONVERT_SPEEDTEST_MAX_S))
		return w->err = -EINVAL;
	if (value_out)
		memcpy(value_out, v, sizeof(v));
	return put_tlv(w, CONVERT_TLV_SPEEDTEST, v, sizeof(v), NULL, 0);
}

int convert_put_cookie(struct convert_writer *w, const void *data, size_t len)
{
	return put_tlv(w, CONVERT_TLV_COOKIE, zero2, 2, data, len);
}

int convert_put_ext_tcp_hdr(struct convert_writer *w, const void *hdr,
			    size_t len)
{
	return put_tlv(w, CONVERT_TLV_EXT_TCP_HDR, zero2, 2, hdr, len);
}

int convert_put_supported_ext(struct convert_writer *w, const uint8_t *kinds,
			      size_t n)
{
	return put_tlv(w, CONVERT_TLV_SUPPORTED_EXT, zero2, 2, kinds, n);
}

int convert_put_error(struct convert_writer *w, uint8_t code,
		      const void *value, size_t value_len)
{
	return put_tlv(w, CONVERT_TLV_ERROR, &code, 1, value, value_len);
}

int convert_put_raw(struct convert_writer *w, uint8_t type, const void *value,
		    size_t value_len)
{
	return put_tlv(w, type, NULL, 0, value, value_len);
}

int convert_writer_finish(struct convert_writer *w)
{
	if (w->err)
		return w->err;
	w->buf[1] = (uint8_t)(w->len / CONVERT_WORD);
	return (int)w->len;
}

int convert_encode_success(void *buf, size_t cap)
{
	struct convert_writer w;

	convert_writer_init(&w, buf, cap);
	return convert_writer_finish(&w);
}

int convert_encode_error(void *buf, size_t cap, uint8_t code,
			 const void *value, size_t value_len)
{
	struct convert_writer w;

	convert_writer_init(&w, buf, cap);
	convert_put_error(&w, code, value, value_len);
	return convert_writer_finish(&w);
}

int convert_encode_diag(void *buf, size_t cap, const struct convert_diag *d)
{
	if (!d || d->value_len > sizeof(d->value))
		return -EINVAL;
	return convert_encode_error(buf, cap, d->code, d->value, d->value_len);
}

/* ---- names ---- */

const char *convert_error_name(unsigned code)
{
	switch (code) {
	case CONVERT_E_UNSUPPORTED_VERSION: return "unsupported_version";
	case CONVERT_E_MALFORMED: return "malformed_message";
	case CONVERT_E_UNSUPPORTED_MESSAGE: return "unsupported_message";
	case CONVERT_E_MISSING_COOKIE: return "missing_cookie";
	case CONVERT_E_NOT_AUTHORIZED: return "not_authorized";
	case CONVERT_E_UNSUPPORTED_TCP_OPTION: return "unsupported_tcp_option";
	case CONVERT_E_RESOURCE_EXCEEDED: return "resource_exceeded";
	case CONVERT_E_NETWORK_FAILURE: return "network_failure";
	case CONVERT_E_CONNECTION_RESET: return "connection_reset";
	case CONVERT_E_DESTINATION_UNREACHABLE: return "destination_unreachable";
	}
	return "unknown";
}

const char *convert_tlv_name(unsigned type)
{
	switch (type) {
	case CONVERT_TLV_INFO: return "info";
	case CONVERT_TLV_CONNECT: return "connect";
	case CONVERT_TLV_EXT_TCP_HDR: return "extended_tcp_header";
	case CONVERT_TLV_SUPPORTED_EXT: return "supported_tcp_extensions";
	case CONVERT_TLV_COOKIE: return "cookie";
	case CONVERT_TLV_ERROR: return "error";
	case CONVERT_TLV_VERIFIED: return "verified_stream";
	case CONVERT_TLV_SPEEDTEST: return "speed_test";
	}
	return "unknown";
}

void convert_addr_from_v4(struct in6_addr *ret, uint32_t in_be)
{
	memset(ret, 0, sizeof(*ret));
	ret->s6_addr[10] = 0xff;
	ret->s6_addr[11] = 0xff;
	memcpy(ret->s6_addr + 12, &in_be, 4);
}

int convert_addr_is_v4(const struct in6_addr *a)
{
	static const uint8_t prefix[12] = { [10] = 0xff, [11] = 0xff };

	return memcmp(a->s6_addr, prefix, sizeof(prefix)) == 0;
}
