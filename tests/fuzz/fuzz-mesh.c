/* libFuzzer harness for the mesh message parser (gw-agent/meshmsg.c): the
 * bytes any device on the mesh segment can send to the agent's UDP port.
 * Beyond "no crash", checked against this file's own reading of the
 * format in meshmsg.h: 0 exactly for "gwml", version 2, two zero bytes at
 * 6, and either flags 0 or 1 in 40 bytes (an announcement) or flags 3 in
 * 48 bytes with two zero bytes at 30 (a borrow request); the fields are the
 * bytes read here (big-endian); building the parsed value gives the same
 * bytes back; anything else is -EBADMSG with a reason. */
#include "meshmsg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mesh_announce a;
	const char *why = NULL;
	int r;
	bool head = size >= 8 && !memcmp(data, "gwml", 4) && data[4] == 2 && !data[6] && !data[7];
	bool announce = head && size == 40 && data[5] <= 1;
	bool request = head && size == 48 && data[5] == 3 && !data[30] && !data[31];

	memset(&a, 0xa5, sizeof(a));
	r = mesh_announce_parse(data, size, &a, &why);
	REQUIRE(r == 0 || r == -EBADMSG);
	REQUIRE((r == 0) == (announce || request));
	if (r == 0) {
		uint8_t out[MESH_REQUEST_LEN];
		uint64_t seq = 0;
		uint32_t kid = 0;

		for (int i = 0; i < 4; i++)
			kid = kid << 8 | data[8 + i];
		for (int i = 0; i < 8; i++)
			seq = seq << 8 | data[12 + i];
		REQUIRE(a.lending == (data[5] != 0));
		REQUIRE(a.borrow == request);
		REQUIRE(a.kid == kid && a.seq == seq);
		for (int i = 0; i < 10; i++)
			REQUIRE(a.sender.s6_addr[i] == 0);
		REQUIRE(a.sender.s6_addr[10] == 0xff && a.sender.s6_addr[11] == 0xff);
		REQUIRE(!memcmp(&a.sender.s6_addr[12], data + 20, 4));
		if (request)
			REQUIRE(!memcmp(a.mac, data + 24, 6));
		REQUIRE(!memcmp(a.tag, data + size - 16, 16));
		REQUIRE(mesh_announce_build(out, &a) == size);
		REQUIRE(!memcmp(out, data, size));
	} else {
		REQUIRE(why && *why);
	}
	return 0;
}
