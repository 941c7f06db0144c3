/* libFuzzer harness for the concentrator's whole handshake decision
 * (concentrator/decide.c): a client's bytes and address in, what the
 * concentrator does out. Byte 0 picks the setting (bit 0: gateway keys
 * required; bit 1: the client closed; bits 2-3: the client's address);
 * the rest is what the client sent. Checked on every input:
 *  - the decision is one of MORE, REFUSE, INFO, CONNECT, and deterministic;
 *  - the client having closed, the answer is never MORE;
 *  - a refusal carries an assigned Error code and a reason, and encodes
 *    into a reply a client decodes back to that code;
 *  - CONNECT only to a destination the policy allows, on a port, and with
 *    keys only when the request's cookie checks out (checked again here);
 *  - INFO or CONNECT with keys only after a valid cookie;
 *  - bytes after the message (0-RTT payload) never change the decision
 *    (but for one offering a verified stream: refused, Error 1), and no
 *    prefix of the message is already a CONNECT or an INFO.
 * The fixed key 7 (any address) and time let seeds carry valid cookies
 * (gen-corpus.py makes them).
 *
 * The verdict is also judged by an oracle written apart from the code under
 * test (it calls none of policy.c, cookie.c or the codec): its own reading
 * of the Connect and Cookie TLVs from the raw bytes, its own table of the
 * address ranges never to be reached (bytes compared, not prefixes
 * parsed), its own HMAC-SHA256 (from SHA-256 digests, not HMAC()). A
 * CONNECT must be one the oracle allows; a request the oracle allows must
 * not be refused as Not Authorized (32). */
#include "decide.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)
#define NOW 1700000000u

static struct policy open_policy, keyed_policy;
static const struct in6_addr *peers[4];
static struct in6_addr peer_store[4];

static void setup(void)
{
	static int done;
	struct addr_prefix pfx;
	static const char *const peer_text[4] = {
		"::ffff:198.51.100.2", "2001:db8:1::2", "::ffff:10.0.0.1", "::1",
	};

	if (done)
		return;
	done = 1;
	REQUIRE(policy_init(&open_policy) == 0);
	policy_set_own(&open_policy, NULL, 0);  /* listed: none (fail-closed otherwise) */
	REQUIRE(addr_parse_prefix("203.0.113.128/25", &pfx) == 0);
	REQUIRE(policy_add_dest(&open_policy, &pfx, false, false) == 0);
	REQUIRE(addr_parse_prefix("10.20.0.0/16", &pfx) == 0);
	REQUIRE(policy_add_dest(&open_policy, &pfx, true, false) == 0);
	open_policy.allow_any_client = true;
	keyed_policy = open_policy;
	keyed_policy.keys.k = calloc(2, sizeof(struct cookie_key));
	REQUIRE(keyed_policy.keys.k);
	keyed_policy.keys.n = 2;
	keyed_policy.keys.k[0].id = 7;
	keyed_policy.keys.k[0].any = true;
	for (int i = 0; i < COOKIE_SECRET_LEN; i++)
		keyed_policy.keys.k[0].secret[i] = (uint8_t)(i + 1);
	keyed_policy.keys.k[1] = keyed_policy.keys.k[0];
	keyed_policy.keys.k[1].id = 9;
	keyed_policy.keys.k[1].nat = true;
	for (int i = 0; i < 4; i++) {
		REQUIRE(inet_pton(AF_INET6, peer_text[i], &peer_store[i]) == 1);
		peers[i] = &peer_store[i];
	}
}

/* ---- the oracle ---- */

/* Is the IPv4 address a.b.c.d one a concentrator must never connect to
 * (this network, RFC 1918, CGNAT, loopback, link-local, multicast,
 * reserved, the cloud host service 168.63.129.16)? */
static int o_bad4(const uint8_t a[4])
{
	return a[0] == 0 || a[0] == 10 || a[0] == 127 || a[0] >= 224 ||
	       (a[0] == 168 && a[1] == 63 && a[2] == 129 && a[3] == 16) ||
	       (a[0] == 100 && (a[1] & 0xc0) == 64) || (a[0] == 169 && a[1] == 254) ||
	       (a[0] == 172 && (a[1] & 0xf0) == 16) || (a[0] == 192 && a[1] == 168);
}

static int o_zero(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++)
			return 0;
	return 1;
}

/* The harness's operator rules: 10.20.0.0/16 allowed (past the RFC 1918
 * deny), 203.0.113.128/25 denied. */
static int o_dest_ok(const uint8_t a[16], uint16_t port)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const uint8_t wkp[12] = { 0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0 };

	if (port == 0)
		return 0;
	if (!memcmp(a, mapped, 12)) {
		const uint8_t *v = a + 12;

		if (v[0] == 10 && v[1] == 20)
			return 1;
		if (v[0] == 203 && v[1] == 0 && v[2] == 113 && v[3] >= 128)
			return 0;
		return !o_bad4(v);
	}
	if (o_zero(a, 12))                      /* ::/96 (and :: and ::1) */
		return 0;
	if (a[0] == 0xff || (a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0x80) == 0x80))
		return 0;                       /* multicast, ULA, link/site-local */
	if (a[0] == 0x01 && o_zero(a + 1, 7))   /* 100::/64 */
		return 0;
	if (!memcmp(a, "\x00\x64\xff\x9b\x00\x01", 6))   /* 64:ff9b:1::/48 */
		return 0;
	if (!memcmp(a, wkp, 12))                /* NAT64: the embedded IPv4 */
		return o_dest_ok((const uint8_t[16]){ [10] = 0xff, [11] = 0xff, a[12], a[13], a[14], a[15] }, port);
	if (a[0] == 0x20 && a[1] == 0x02)       /* 6to4 */
		return o_dest_ok((const uint8_t[16]){ [10] = 0xff, [11] = 0xff, a[2], a[3], a[4], a[5] }, port);
	return 1;
}

static void o_sha256(const uint8_t *a, size_t an, const uint8_t *b, size_t bn, uint8_t out[32])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned n = 32;

	REQUIRE(c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
		EVP_DigestUpdate(c, a, an) == 1 && EVP_DigestUpdate(c, b, bn) == 1 &&
		EVP_DigestFinal_ex(c, out, &n) == 1 && n == 32);
	EVP_MD_CTX_free(c);
}

/* HMAC-SHA256 (RFC 2104) from two digests: H(K^opad || H(K^ipad || m)). */
static void o_hmac(const uint8_t key[32], const uint8_t *m, size_t n, uint8_t out[32])
{
	uint8_t ipad[64], opad[64], inner[32];

	for (int i = 0; i < 64; i++) {
		uint8_t k = i < 32 ? key[i] : 0;

		ipad[i] = k ^ 0x36;
		opad[i] = k ^ 0x5c;
	}
	o_sha256(ipad, 64, m, n, inner);
	o_sha256(opad, 64, inner, 32, out);
}

static uint32_t o_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The oracle's verdict on a request of len bytes (a whole message): 1 when
 * a concentrator with this policy may connect (destination allowed, and
 * with keys a good cookie from this peer), 0 when it must not, -1 when the
 * oracle cannot tell (not a Connect request it can read). The keys are the
 * harness's: id 7 (any address) and 9 (any address, NAT), secret 1..32. */
static int o_verdict(const uint8_t *m, size_t len, int keyed, const struct in6_addr *peer)
{
	const uint8_t *conn = NULL, *cookie = NULL;
	size_t conn_len = 0, cookie_len = 0;

	if (len < 4 || m[0] != 1 || m[2] != 0x22 || m[3] != 0x63 || (size_t)m[1] * 4 != len)
		return -1;
	for (size_t i = 4; i + 2 <= len;) {
		size_t tl = (size_t)m[i + 1] * 4;

		if (tl < 4 || i + tl > len)
			return -1;
		if (m[i] == 10 && !conn) {
			conn = m + i;
			conn_len = tl;
		} else if (m[i] == 22 && !cookie) {
			cookie = m + i;
			cookie_len = tl;
		}
		i += tl;
	}
	if (!conn || conn_len < 20)
		return -1;
	if (!o_dest_ok(conn + 4, (uint16_t)(conn[2] << 8 | conn[3])))
		return 0;
	if (!keyed)
		return 1;
	{
		/* value: 2 reserved, format, flags, id, time, nonce, mac */
		const uint8_t *c = cookie ? cookie + 4 : NULL;
		uint8_t msg[17 + 18 + 16 + 18 + 40], want[32], secret[32];
		size_t n = 0, opts = 0;
		uint32_t id, t;

		if (!c || cookie_len < 4 + 50 || c[0] != 1 || (c[1] & ~1))
			return 0;
		for (size_t i = 4 + 50; i < cookie_len; i++)
			if (cookie[i])
				return 0;
		id = o_be32(c + 2);
		t = o_be32(c + 6);
		if ((id != 7 && id != 9) || ((c[1] & 1) && id != 9))
			return 0;
		if (t + 90u < NOW || t > NOW + 90u)
			return 0;
		/* TCP options up to the first EOL, as a Connect carries them. */
		while (20 + opts < conn_len && conn[20 + opts] != 0) {
			if (conn[20 + opts] == 1) {
				opts++;
				continue;
			}
			if (20 + opts + 1 >= conn_len || conn[20 + opts + 1] < 2)
				return -1;
			opts += conn[20 + opts + 1];
		}
		if (20 + opts > conn_len || opts > 40)
			return -1;
		memcpy(msg, "mptcp-ha cookie 1", 17);
		n = 17;
		memcpy(msg + n, c, 18);
		n += 18;
		if (c[1] & 1)
			memset(msg + n, 0, 16);
		else
			memcpy(msg + n, peer, 16);
		n += 16;
		memcpy(msg + n, conn + 2, 18);
		n += 18;
		memcpy(msg + n, conn + 20, opts);
		n += opts;
		for (int i = 0; i < 32; i++)
			secret[i] = (uint8_t)(i + 1);
		o_hmac(secret, msg, n, want);
		return !memcmp(want, c + 18, 32);
	}
}

static int assigned(uint8_t code)
{
	switch (code) {
	case 0: case 1: case 2: case 3: case 32: case 33:
	case 64: case 65: case 96: case 97:
		return 1;
	}
	return 0;
}

static void same(const struct decision *a, const struct decision *b)
{
	REQUIRE(a->kind == b->kind && a->code == b->code && a->msg_len == b->msg_len &&
		a->port == b->port && a->mss == b->mss && a->cookie == b->cookie &&
		a->keyed == b->keyed && !memcmp(&a->dst, &b->dst, sizeof(a->dst)) &&
		a->st_dir == b->st_dir && a->st_seconds == b->st_seconds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct policy *p;
	const struct in6_addr *peer;
	struct decision d, d2;
	const uint8_t *buf;
	size_t len;
	bool eof;

	if (size < 1)
		return 0;
	setup();
	p = (data[0] & 1) ? &keyed_policy : &open_policy;
	eof = data[0] & 2;
	peer = peers[(data[0] >> 2) & 3];
	buf = data + 1;
	len = size - 1;

	decide(p, peer, buf, len, eof, NOW, &d);
	REQUIRE(d.kind <= DECIDE_SPEEDTEST);
	decide(p, peer, buf, len, eof, NOW, &d2);
	same(&d, &d2);
	if (eof)
		REQUIRE(d.kind != DECIDE_MORE);
	if (d.kind == DECIDE_MORE)
		return 0;
	REQUIRE(d.msg_len <= len);
	if (d.kind == DECIDE_REFUSE) {
		uint8_t out[64];
		struct convert_decode_opts o = { .role = CONVERT_FROM_CONVERTER };
		struct convert_msg m;
		struct convert_diag dg;
		int n;

		REQUIRE(assigned(d.code) && d.reason && d.value_len <= 2);
		n = convert_encode_error(out, sizeof(out), d.code, d.value, d.value_len);
		REQUIRE(n > 0);
		REQUIRE(convert_decode(out, (size_t)n, &o, &m, &dg) == n);
		REQUIRE((m.present & CONVERT_HAS_ERROR) && m.error.code == d.code);
		if (!d.msg_len)
			return 0;  /* the message itself was malformed */
	}
	if (p->keys.n && (d.kind == DECIDE_INFO || d.kind == DECIDE_CONNECT))
		REQUIRE(d.keyed && d.cookie == COOKIE_OK);
	/* A speed test: only for a valid key, whose cookie covers the test's
	 * TLV, with nothing behind the request and no Connect. */
	if (d.kind == DECIDE_SPEEDTEST) {
		struct convert_decode_opts o = { .role = CONVERT_FROM_CLIENT };
		struct convert_msg m;
		struct convert_diag dg;
		struct cookie_fields f;

		REQUIRE(p->keys.n && d.keyed && d.cookie == COOKIE_OK && d.msg_len == len);
		REQUIRE(convert_decode(buf, d.msg_len, &o, &m, &dg) == (int)d.msg_len);
		REQUIRE((m.present & CONVERT_HAS_SPEEDTEST) && !(m.present & CONVERT_HAS_CONNECT));
		REQUIRE(d.st_dir == m.speedtest.direction && d.st_seconds == m.speedtest.seconds);
		REQUIRE((d.st_dir == 1 || d.st_dir == 2) && d.st_seconds >= 1 && d.st_seconds <= 10);
		{
			struct cookie_dest cd = { .opts = m.speedtest.value.p,
						  .opts_len = m.speedtest.value.len };

			REQUIRE(m.present & CONVERT_HAS_COOKIE);
			REQUIRE(cookie_check(&p->keys, m.cookie.p, m.cookie.len, peer, &cd, NOW, &f) ==
				COOKIE_OK);
		}
	}
	if (!p->keys.n)
		REQUIRE(d.kind != DECIDE_SPEEDTEST);
	if (d.kind == DECIDE_CONNECT) {
		const char *why;
		struct convert_decode_opts o = { .role = CONVERT_FROM_CLIENT };
		struct convert_msg m;
		struct convert_diag dg;

		REQUIRE(d.port != 0);
		REQUIRE(policy_check_dest(p, &d.dst, d.port, &why) == 0);
		REQUIRE(d.mss >= 0 && d.mss <= 65535);
		REQUIRE(convert_decode(buf, d.msg_len, &o, &m, &dg) == (int)d.msg_len);
		REQUIRE(m.connect.port == d.port && !memcmp(&m.connect.addr, &d.dst, 16));
		if (p->keys.n) {
			struct cookie_dest cd = { .port = m.connect.port, .addr = m.connect.addr,
						  .opts = m.connect.tcp_opts.p,
						  .opts_len = m.connect.tcp_opts.len };
			struct cookie_fields f;

			REQUIRE(m.present & CONVERT_HAS_COOKIE);
			REQUIRE(cookie_check(&p->keys, m.cookie.p, m.cookie.len, peer, &cd, NOW, &f) ==
				COOKIE_OK);
		}
	}
	/* The independent oracle agrees. */
	if (d.msg_len && (d.kind == DECIDE_CONNECT || (d.kind == DECIDE_REFUSE && d.code == 32))) {
		int v = o_verdict(buf, d.msg_len, p->keys.n > 0, peer);

		if (d.kind == DECIDE_CONNECT)
			REQUIRE(v == 1);
		else
			REQUIRE(v != 1);
	}
	/* The payload behind the message does not change the decision, but
	 * for a request offering a verified stream: bytes may not follow it
	 * before the reply, so with them it is refused as malformed. */
	if (d.msg_len && d.msg_len < len) {
		struct convert_decode_opts o = { .role = CONVERT_FROM_CLIENT };
		struct convert_msg m;
		struct convert_diag dg;

		decide(p, peer, buf, d.msg_len, eof, NOW, &d2);
		if (convert_decode(buf, d.msg_len, &o, &m, &dg) == (int)d.msg_len &&
		    (((m.present & CONVERT_HAS_VERIFIED) && d2.kind == DECIDE_CONNECT) ||
		     d2.kind == DECIDE_SPEEDTEST))
			REQUIRE(d.kind == DECIDE_REFUSE && d.code == CONVERT_E_MALFORMED);
		else
			same(&d, &d2);
	}
	/* No shorter prefix is already a request to act on. */
	if (d.msg_len > 1 && (d.kind == DECIDE_INFO || d.kind == DECIDE_CONNECT ||
			      d.kind == DECIDE_SPEEDTEST)) {
		decide(p, peer, buf, d.msg_len - 1, false, NOW, &d2);
		REQUIRE(d2.kind == DECIDE_MORE || d2.kind == DECIDE_REFUSE);
	}
	return 0;
}
