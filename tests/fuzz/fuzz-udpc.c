/* libFuzzer harness for the UDP carrier's parsers (proto/udpc.c): the bytes
 * anyone on the Internet can send to the concentrator's UDP port, and a
 * concentrator (or anyone forging its address) to an agent. The first byte
 * picks the direction; the rest is the datagram.
 *
 * Checked against this file's own reading of docs/udp-carrier.md, not the
 * codec's: version 3 in the high nibble; the types allowed each way and
 * their sizes (HELLO 88, ACCEPT 80, PING/PONG 52, RESET 48, DATA 56 up to
 * 65,507); session id zero exactly for HELLO; packet number zero exactly
 * for HELLO and ACCEPT; the fields are the big-endian bytes at their
 * offsets, and writing the header back gives the same bytes (but the two
 * reserved ones). DATA's inner fields (read from the same bytes, as if
 * opened) have a mode below 3 and the payload is the rest. Opening with a
 * fixed key must refuse (these bytes were never sealed with it), and the
 * replay window must refuse what it has marked. */
#include "udpc.h"
#include "udpcrypt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

static uint64_t be(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static bool oracle_valid(const uint8_t *d, size_t n, bool to_agent)
{
	unsigned type;
	size_t min, max;
	uint32_t sid;
	uint64_t pn;

	if (n < 16 || d[0] >> 4 != 3)
		return false;
	type = d[0] & 15;
	switch (type) {
	case 1: if (to_agent) return false; min = max = 88; break;
	case 2: if (!to_agent) return false; min = max = 80; break;
	case 3: min = 56; max = 65507; break;
	case 4: if (to_agent) return false; min = max = 52; break;
	case 5: if (!to_agent) return false; min = max = 52; break;
	case 6: if (!to_agent) return false; min = max = 48; break;
	default: return false;
	}
	if (n < min || n > max)
		return false;
	sid = (uint32_t)be(d + 4, 4);
	pn = be(d + 8, 8);
	if ((type == 1) != (sid == 0))
		return false;
	if (type == 1 || type == 2)
		return pn == 0;
	return pn != 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct udpc_aead open_ctx;
	static bool inited;
	struct udpc_hdr h;
	enum udpc_error e = UDPC_E_MAX;
	bool to_agent;
	const uint8_t *d;
	size_t n;
	int r;

	if (size < 1)
		return 0;
	if (!inited) {
		uint8_t key[UDPC_KEY_LEN];

		memset(key, 0x5a, sizeof(key));
		REQUIRE(udpc_aead_init(&open_ctx, key, 0) == 0);
		inited = true;
	}
	to_agent = data[0] & 1;
	d = data + 1;
	n = size - 1;
	memset(&h, 0xa5, sizeof(h));
	r = udpc_parse_hdr(d, n, to_agent ? UDPC_TO_AGENT : UDPC_TO_CONC, &h, &e);
	REQUIRE(r == 0 || r == -EBADMSG);
	REQUIRE((r == 0) == oracle_valid(d, n, to_agent));
	REQUIRE((r == 0) == (e == UDPC_E_OK));
	if (r != 0)
		return 0;
	REQUIRE(h.type == (d[0] & 15) && h.flags == d[1]);
	REQUIRE(h.sid == be(d + 4, 4) && h.pn == be(d + 8, 8));
	{
		uint8_t out[UDPC_HDR_LEN];

		udpc_put_hdr(out, &h);
		REQUIRE(out[0] == d[0] && out[1] == d[1] && !memcmp(out + 4, d + 4, 12));
	}
	if (h.type == UDPC_DATA) {
		struct udpc_data dd;
		size_t inner = n - UDPC_HDR_LEN - UDPC_TAG_LEN;
		const uint8_t *p = d + UDPC_HDR_LEN;
		uint8_t *copy;

		r = udpc_parse_data(p, inner, &dd, &e);
		REQUIRE((r == 0) == (p[4] < 3));
		if (r == 0) {
			REQUIRE(dd.flow == be(p, 4) && dd.mode == p[4] && dd.path == p[5]);
			REQUIRE(dd.port == be(p + 6, 2) && !memcmp(&dd.addr, p + 8, 16));
			REQUIRE(dd.payload == p + 24 && dd.len == inner - 24);
		}
		copy = malloc(n);
		REQUIRE(copy);
		memcpy(copy, d, n);
		REQUIRE(udpc_open(&open_ctx, h.pn, copy, n) == -EBADMSG);
		free(copy);
	}
	if (h.type == UDPC_HELLO) {
		struct udpc_hello hv;

		udpc_parse_hello(d, &hv);
		REQUIRE(hv.kid == be(d + 16, 4) && hv.time == be(d + 20, 4));
		REQUIRE(!memcmp(hv.nonce, d + 24, 16) && hv.mac == d + 56);   /* after 16 bytes of padding */
	}
	if (h.pn) {
		struct udpc_window w;

		memset(&w, 0, sizeof(w));
		REQUIRE(udpc_window_check(&w, h.pn) == 0);
		udpc_window_mark(&w, h.pn);
		REQUIRE(udpc_window_check(&w, h.pn) == -EALREADY);
		if (h.pn != UINT64_MAX)   /* the next number (none after the last) */
			REQUIRE(udpc_window_check(&w, h.pn + 1) == 0);
		if (h.pn > UDPC_WINDOW)
			REQUIRE(udpc_window_check(&w, h.pn - UDPC_WINDOW) == -ESTALE);
	}
	return 0;
}
