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
 *  - bytes after the message (0-RTT payload) never change the decision,
 *    and no prefix of the message is already a CONNECT or an INFO.
 * The fixed key 7 (any address) and time let seeds carry valid cookies
 * (gen-corpus.py makes them). */
#include "decide.h"

#include <arpa/inet.h>
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
		a->keyed == b->keyed && !memcmp(&a->dst, &b->dst, sizeof(a->dst)));
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
	REQUIRE(d.kind <= DECIDE_CONNECT);
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
	/* The payload behind the message does not change the decision. */
	if (d.msg_len && d.msg_len < len) {
		decide(p, peer, buf, d.msg_len, eof, NOW, &d2);
		same(&d, &d2);
	}
	/* No shorter prefix is already a request to act on. */
	if (d.msg_len > 1 && (d.kind == DECIDE_INFO || d.kind == DECIDE_CONNECT)) {
		decide(p, peer, buf, d.msg_len - 1, false, NOW, &d2);
		REQUIRE(d2.kind == DECIDE_MORE || d2.kind == DECIDE_REFUSE);
	}
	return 0;
}
