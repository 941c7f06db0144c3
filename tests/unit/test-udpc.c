/* UDP carrier: codec, replay window (against a plain set as oracle), and
 * sealing (round trip, and every single-bit change refused). */
#include "check.h"
#include "udpc.h"
#include "udpcrypt.h"

#include <errno.h>
#include <stdlib.h>

static void test_header_roundtrip(void)
{
	uint8_t b[UDPC_PING_LEN] = { 0 };
	struct udpc_hdr h = { .type = UDPC_PING, .sid = 0xdeadbeef, .pn = 0x0102030405060708ull }, g;
	enum udpc_error e;

	udpc_put_hdr(b, &h);
	CHECK_INT(b[0], 0x34);
	CHECK_INT(b[4], 0xde);
	CHECK_INT(b[15], 0x08);
	CHECK_INT(udpc_parse_hdr(b, sizeof(b), UDPC_TO_CONC, &g, &e), 0);
	CHECK_INT(g.type, UDPC_PING);
	CHECK_INT(g.sid, 0xdeadbeef);
	CHECK(g.pn == 0x0102030405060708ull);
	/* A PING is for the concentrator only. */
	CHECK_INT(udpc_parse_hdr(b, sizeof(b), UDPC_TO_AGENT, &g, &e), -EBADMSG);
	CHECK_INT(e, UDPC_E_TYPE);
	/* Fixed sizes: one byte more or less is refused. */
	CHECK_INT(udpc_parse_hdr(b, sizeof(b) - 1, UDPC_TO_CONC, &g, &e), -EBADMSG);
	CHECK_INT(e, UDPC_E_SHORT);
	CHECK_INT(udpc_parse_hdr(b, sizeof(b) + 0, UDPC_TO_CONC, &g, &e), 0);
}

static void test_header_refusals(void)
{
	uint8_t b[UDPC_HELLO_LEN] = { 0 };
	struct udpc_hdr h = { .type = UDPC_HELLO }, g;
	enum udpc_error e;

	udpc_put_hdr(b, &h);
	CHECK_INT(udpc_parse_hdr(b, sizeof(b), UDPC_TO_CONC, &g, &e), 0);
	CHECK_INT(udpc_parse_hdr(b, UDPC_HDR_LEN - 1, UDPC_TO_CONC, &g, &e), -EBADMSG);
	CHECK_INT(e, UDPC_E_SHORT);
	/* A HELLO naming a session, or a packet number. */
	b[7] = 1;
	CHECK_INT(udpc_parse_hdr(b, sizeof(b), UDPC_TO_CONC, &g, &e), -EBADMSG);
	CHECK_INT(e, UDPC_E_FIELD);
	b[7] = 0;
	b[15] = 1;
	CHECK_INT(udpc_parse_hdr(b, sizeof(b), UDPC_TO_CONC, &g, &e), -EBADMSG);
	b[15] = 0;
	/* Version 2 (before the ACCEPT's box address) and 4, type 0, type 7. */
	b[0] = 0x21;
	CHECK_INT(udpc_parse_hdr(b, sizeof(b), UDPC_TO_CONC, &g, &e), -EBADMSG);
	CHECK_INT(e, UDPC_E_VERSION);
	b[0] = 0x41;
	CHECK_INT(udpc_parse_hdr(b, sizeof(b), UDPC_TO_CONC, &g, &e), -EBADMSG);
	CHECK_INT(e, UDPC_E_VERSION);
	b[0] = 0x30;
	CHECK_INT(udpc_parse_hdr(b, sizeof(b), UDPC_TO_CONC, &g, &e), -EBADMSG);
	CHECK_INT(e, UDPC_E_TYPE);
	b[0] = 0x37;
	CHECK_INT(udpc_parse_hdr(b, sizeof(b), UDPC_TO_CONC, &g, &e), -EBADMSG);
	/* DATA with a packet number 0. */
	h = (struct udpc_hdr){ .type = UDPC_DATA, .sid = 5, .pn = 0 };
	udpc_put_hdr(b, &h);
	CHECK_INT(udpc_parse_hdr(b, UDPC_DATA_OVERHEAD, UDPC_TO_AGENT, &g, &e), -EBADMSG);
	h.pn = 1;
	udpc_put_hdr(b, &h);
	CHECK_INT(udpc_parse_hdr(b, UDPC_DATA_OVERHEAD, UDPC_TO_AGENT, &g, &e), 0);
	CHECK_INT(udpc_parse_hdr(b, UDPC_DATA_OVERHEAD - 1, UDPC_TO_AGENT, &g, &e), -EBADMSG);
}

static void test_data_inner(void)
{
	uint8_t b[UDPC_DATA_INNER + 3];
	struct udpc_data d = { .flow = 77, .mode = UDPC_REDUNDANT, .path = 3, .port = 5353 }, g;
	enum udpc_error e;

	d.addr.s6_addr[15] = 9;
	udpc_put_data_inner(b, &d);
	memcpy(b + UDPC_DATA_INNER, "abc", 3);
	CHECK_INT(udpc_parse_data(b, sizeof(b), &g, &e), 0);
	CHECK_INT(g.flow, 77);
	CHECK_INT(g.mode, UDPC_REDUNDANT);
	CHECK_INT(g.path, 3);
	CHECK_INT(g.port, 5353);
	CHECK_INT(g.addr.s6_addr[15], 9);
	CHECK_INT(g.len, 3);
	CHECK_MEM(g.payload, "abc", 3);
	b[4] = UDPC_MODE_MAX;
	CHECK_INT(udpc_parse_data(b, sizeof(b), &g, &e), -EBADMSG);
	CHECK_INT(e, UDPC_E_FIELD);
	CHECK_INT(udpc_parse_data(b, UDPC_DATA_INNER - 1, &g, &e), -EBADMSG);
}

/* The oracle: every number ever accepted, and the highest. */
static void test_window_oracle(void)
{
	enum { N = 40000000 };
	static bool seen[N + 4096];
	struct udpc_window w = { 0 };
	uint64_t top = 0, x = 12345;
	int mismatches = 0;

	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < 60000; i++) {
		uint64_t pn;
		int want, got;

		x = x * 6364136223846793005ull + 1442695040888963407ull;
		/* Mostly near the top, sometimes far ahead or far behind. */
		switch ((x >> 33) % 16) {
		case 0:
			pn = top + 1 + (x >> 40) % 20000;
			break;
		case 1:
		case 2:
			pn = top > 10000 ? top - (x >> 40) % 10000 : (x >> 40) % 50;
			break;
		default:
			pn = top + 3 - (uint64_t)((x >> 40) % 40 > top ? top : (x >> 40) % 40);
			break;
		}
		if (pn >= N)
			break;
		want = pn == 0 || pn + UDPC_WINDOW <= top ? -ESTALE : seen[pn] ? -EALREADY : 0;
		got = udpc_window_check(&w, pn);
		if (got != want && mismatches++ < 5)
			fprintf(stderr, "pn %llu top %llu: got %d want %d\n", (unsigned long long)pn,
				(unsigned long long)top, got, want);
		if (got == 0) {
			udpc_window_mark(&w, pn);
			seen[pn] = true;
			if (pn > top)
				top = pn;
		}
	}
	CHECK_INT(mismatches, 0);
	CHECK(top > 1000);
}

static void test_seal_open(void)
{
	uint8_t secret[32], nc[16], ns[16], up[32], down[32], up2[32], down2[32];
	uint8_t buf[256], copy[256];
	struct udpc_aead s, o, o_wrong;
	struct udpc_hdr h = { .type = UDPC_DATA, .sid = 42, .pn = 7 };
	int n, m, refused = 0;

	memset(secret, 0x11, sizeof(secret));
	memset(nc, 1, sizeof(nc));
	memset(ns, 2, sizeof(ns));
	udpcrypt_session_keys(secret, nc, ns, 42, up, down);
	CHECK(memcmp(up, down, 32) != 0);
	udpcrypt_session_keys(secret, nc, ns, 43, up2, down2);
	CHECK(memcmp(up, up2, 32) != 0);
	CHECK_INT(udpc_aead_init(&s, up, 1), 0);
	CHECK_INT(udpc_aead_init(&o, up, 0), 0);
	CHECK_INT(udpc_aead_init(&o_wrong, down, 0), 0);
	udpc_put_hdr(buf, &h);
	for (int i = 0; i < 100; i++)
		buf[UDPC_HDR_LEN + i] = (uint8_t)i;
	n = udpc_seal(&s, h.pn, buf, UDPC_HDR_LEN + 100);
	CHECK_INT(n, UDPC_HDR_LEN + 100 + UDPC_TAG_LEN);
	CHECK(buf[UDPC_HDR_LEN + 50] != 50 || buf[UDPC_HDR_LEN + 51] != 51);
	memcpy(copy, buf, (size_t)n);
	CHECK_INT(udpc_open(&o, h.pn, buf, (size_t)n), 100);
	for (int i = 0; i < 100; i++)
		CHECK_INT(buf[UDPC_HDR_LEN + i], i);
	/* The other direction's key, another packet number, any bit flipped
	 * in header, body or tag: refused. */
	memcpy(buf, copy, (size_t)n);
	CHECK_INT(udpc_open(&o_wrong, h.pn, buf, (size_t)n), -EBADMSG);
	memcpy(buf, copy, (size_t)n);
	CHECK_INT(udpc_open(&o, h.pn + 1, buf, (size_t)n), -EBADMSG);
	for (int bit = 0; bit < n * 8; bit++) {
		memcpy(buf, copy, (size_t)n);
		buf[bit / 8] ^= (uint8_t)(1 << (bit % 8));
		m = udpc_open(&o, h.pn, buf, (size_t)n);
		refused += m == -EBADMSG;
	}
	CHECK_INT(refused, n * 8);
	/* Truncated. */
	memcpy(buf, copy, (size_t)n);
	CHECK_INT(udpc_open(&o, h.pn, buf, UDPC_HDR_LEN + UDPC_TAG_LEN - 1), -EBADMSG);
	udpc_aead_free(&s);
	udpc_aead_free(&o);
	udpc_aead_free(&o_wrong);
	udpc_aead_free(&o);   /* twice: no harm */
}

static void test_hello_accept_macs(void)
{
	uint8_t secret[32], other[32], hello[UDPC_HELLO_LEN] = { 0 }, acc[UDPC_ACCEPT_LEN] = { 0 };
	uint8_t mac[32], mac2[32];
	struct udpc_hello hv = { .kid = 3, .time = 1000 }, g;
	struct udpc_hdr h = { .type = UDPC_HELLO };

	memset(secret, 0x22, sizeof(secret));
	memset(other, 0x23, sizeof(other));
	memset(hv.nonce, 9, sizeof(hv.nonce));
	udpc_put_hdr(hello, &h);
	udpc_put_hello(hello, &hv);
	udpcrypt_hello_mac(secret, hello, hello + UDPC_HELLO_LEN - UDPC_MAC_LEN);
	udpc_parse_hello(hello, &g);
	CHECK_INT(g.kid, 3);
	CHECK_INT(g.time, 1000);
	CHECK_MEM(g.nonce, hv.nonce, 16);
	udpcrypt_hello_mac(secret, hello, mac);
	CHECK(udpcrypt_mac_equal(mac, g.mac));
	udpcrypt_hello_mac(other, hello, mac2);
	CHECK(!udpcrypt_mac_equal(mac2, g.mac));
	hello[20]++;     /* the time */
	udpcrypt_hello_mac(secret, hello, mac2);
	CHECK(!udpcrypt_mac_equal(mac2, g.mac));

	h = (struct udpc_hdr){ .type = UDPC_ACCEPT, .sid = 99 };
	udpc_put_hdr(acc, &h);
	memset(acc + UDPC_HDR_LEN, 5, UDPC_NONCE_LEN + UDPC_TOKEN_LEN);
	udpcrypt_accept_mac(secret, acc, hv.nonce, mac);
	udpcrypt_accept_mac(secret, acc, hv.nonce, mac2);
	CHECK(udpcrypt_equal(mac, mac2, UDPC_ACCEPT_MAC_LEN));
	hv.nonce[0] ^= 1;
	udpcrypt_accept_mac(secret, acc, hv.nonce, mac2);
	CHECK(!udpcrypt_equal(mac, mac2, UDPC_ACCEPT_MAC_LEN));
	hv.nonce[0] ^= 1;
	acc[UDPC_HDR_LEN + UDPC_NONCE_LEN] ^= 1;   /* the sealed token is covered */
	udpcrypt_accept_mac(secret, acc, hv.nonce, mac2);
	CHECK(!udpcrypt_equal(mac, mac2, UDPC_ACCEPT_MAC_LEN));
	acc[UDPC_HDR_LEN + UDPC_NONCE_LEN] ^= 1;
	acc[UDPC_ACCEPT_BOX + 15] ^= 1;            /* and so is the box address */
	udpcrypt_accept_mac(secret, acc, hv.nonce, mac2);
	CHECK(!udpcrypt_equal(mac, mac2, UDPC_ACCEPT_MAC_LEN));
	acc[UDPC_ACCEPT_BOX + 15] ^= 1;
	udpcrypt_accept_mac(secret, acc, hv.nonce, mac2);
	CHECK(udpcrypt_equal(mac, mac2, UDPC_ACCEPT_MAC_LEN));
	/* The padding of a HELLO is written as zeros and covered. */
	udpc_put_hello(hello, &hv);
	for (unsigned i = 0; i < UDPC_HELLO_PAD; i++)
		CHECK_INT(hello[UDPC_HDR_LEN + 8 + UDPC_NONCE_LEN + i], 0);
	udpcrypt_hello_mac(secret, hello, mac);
	hello[UDPC_HDR_LEN + 8 + UDPC_NONCE_LEN] = 1;
	udpcrypt_hello_mac(secret, hello, mac2);
	CHECK(!udpcrypt_mac_equal(mac, mac2));
}

/* Reset tokens: a function of the secret, the box and the session id alone
 * (so a restarted concentrator computes the same), sealed in an ACCEPT by
 * an XOR that the agent undoes with the same down key; a RESET carries a
 * proof under the token over the datagram it answers, which changes with
 * any of the session id, the packet number and the tag. */
static void test_reset_token(void)
{
	uint8_t k1[16], k2[16], down[UDPC_KEY_LEN], t1[UDPC_TOKEN_LEN], t2[UDPC_TOKEN_LEN];
	uint8_t t3[UDPC_TOKEN_LEN], tag[UDPC_TAG_LEN], p1[UDPC_TOKEN_LEN], p2[UDPC_TOKEN_LEN];

	memset(k1, 1, sizeof(k1));
	memset(k2, 2, sizeof(k2));
	memset(down, 7, sizeof(down));
	memset(tag, 9, sizeof(tag));
	CHECK_INT(udpcrypt_reset_token(k1, sizeof(k1), "b1", 2, 42, t1), 0);
	CHECK_INT(udpcrypt_reset_token(k1, sizeof(k1), "b1", 2, 42, t2), 0);
	CHECK_MEM(t1, t2, UDPC_TOKEN_LEN);
	CHECK_INT(udpcrypt_reset_token(k1, sizeof(k1), "b1", 2, 43, t2), 0);
	CHECK(!udpcrypt_equal(t1, t2, UDPC_TOKEN_LEN));
	CHECK_INT(udpcrypt_reset_token(k2, sizeof(k2), "b1", 2, 42, t2), 0);
	CHECK(!udpcrypt_equal(t1, t2, UDPC_TOKEN_LEN));
	CHECK_INT(udpcrypt_reset_token(k1, sizeof(k1), "b2", 2, 42, t2), 0);   /* another box */
	CHECK(!udpcrypt_equal(t1, t2, UDPC_TOKEN_LEN));
	memcpy(t3, t1, sizeof(t3));
	udpcrypt_token_seal(down, t3);
	CHECK(!udpcrypt_equal(t1, t3, UDPC_TOKEN_LEN));
	udpcrypt_token_seal(down, t3);
	CHECK_MEM(t1, t3, UDPC_TOKEN_LEN);
	CHECK_INT(udpcrypt_reset_proof(t1, 42, 7, tag, p1), 0);
	CHECK_INT(udpcrypt_reset_proof(t1, 42, 7, tag, p2), 0);
	CHECK_MEM(p1, p2, UDPC_TOKEN_LEN);
	CHECK(!udpcrypt_equal(p1, t1, UDPC_TOKEN_LEN));          /* not the token */
	CHECK_INT(udpcrypt_reset_proof(t1, 42, 8, tag, p2), 0);
	CHECK(!udpcrypt_equal(p1, p2, UDPC_TOKEN_LEN));
	CHECK_INT(udpcrypt_reset_proof(t1, 41, 7, tag, p2), 0);
	CHECK(!udpcrypt_equal(p1, p2, UDPC_TOKEN_LEN));
	tag[15] ^= 1;
	CHECK_INT(udpcrypt_reset_proof(t1, 42, 7, tag, p2), 0);
	CHECK(!udpcrypt_equal(p1, p2, UDPC_TOKEN_LEN));
	CHECK_INT(udpcrypt_reset_proof(t2, 42, 7, tag, p2), 0);
	tag[15] ^= 1;
	CHECK_INT(udpcrypt_reset_proof(t2, 42, 7, tag, p2), 0);
	CHECK(!udpcrypt_equal(p1, p2, UDPC_TOKEN_LEN));
}

static void test_modes(void)
{
	enum udpc_mode m;

	CHECK_INT(udpc_mode_parse("redundant", &m), 0);
	CHECK_INT(m, UDPC_REDUNDANT);
	CHECK_INT(udpc_mode_parse("lowest-delay", &m), 0);
	CHECK_INT(udpc_mode_parse("balance", &m), -EINVAL);
	CHECK(!strcmp(udpc_mode_name(UDPC_FAILOVER), "failover"));
	CHECK(!strcmp(udpc_mode_name(99), "unknown"));
}

int main(void)
{
	RUN(test_header_roundtrip);
	RUN(test_header_refusals);
	RUN(test_data_inner);
	RUN(test_window_oracle);
	RUN(test_seal_open);
	RUN(test_hello_accept_macs);
	RUN(test_reset_token);
	RUN(test_modes);
	return check_finish();
}
