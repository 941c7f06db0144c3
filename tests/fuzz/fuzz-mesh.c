/* libFuzzer harness for the mesh announcement parser (gw-agent/meshmsg.c):
 * the bytes any device on the mesh segment can send to the agent's UDP
 * port. Beyond "no crash", checked against this file's own reading of the
 * format in meshmsg.h: 0 exactly for 40 bytes of "gwml", version 2, flags
 * 0, 1 or 3 (a borrow request), two zero bytes; the fields are the bytes read here (big-endian);
 * building the parsed value gives the same 40 bytes back; anything else is
 * -EBADMSG with a reason. */
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
	bool valid = size == 40 && !memcmp(data, "gwml", 4) && data[4] == 2 &&
		(data[5] <= 1 || data[5] == 3) && !data[6] && !data[7];

	memset(&a, 0xa5, sizeof(a));
	r = mesh_announce_parse(data, size, &a, &why);
	REQUIRE(r == 0 || r == -EBADMSG);
	REQUIRE((r == 0) == valid);
	if (r == 0) {
		uint8_t out[MESH_ANNOUNCE_LEN];
		uint64_t seq = 0;
		uint32_t kid = 0;

		for (int i = 0; i < 4; i++)
			kid = kid << 8 | data[8 + i];
		for (int i = 0; i < 8; i++)
			seq = seq << 8 | data[12 + i];
		REQUIRE(a.lending == (data[5] != 0));
		REQUIRE(a.borrow == (data[5] == 3));
		REQUIRE(a.kid == kid && a.seq == seq);
		for (int i = 0; i < 10; i++)
			REQUIRE(a.sender.s6_addr[i] == 0);
		REQUIRE(a.sender.s6_addr[10] == 0xff && a.sender.s6_addr[11] == 0xff);
		REQUIRE(!memcmp(&a.sender.s6_addr[12], data + 20, 4));
		REQUIRE(!memcmp(a.tag, data + 24, 16));
		mesh_announce_build(out, &a);
		REQUIRE(!memcmp(out, data, MESH_ANNOUNCE_LEN));
	} else {
		REQUIRE(why && *why);
	}
	return 0;
}
