/* libFuzzer harness for the mesh announcement parser (gw-agent/meshmsg.c):
 * the bytes any device on the mesh segment can send to the agent's UDP
 * port. Beyond "no crash": 0 exactly for 8 bytes of "gwml", version 1,
 * flags 0 or 1 and two zero bytes; then building the parsed value gives the
 * same 8 bytes back; any other input is -EBADMSG with a reason. */
#include "meshmsg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mesh_announce a = { 0 };
	const char *why = NULL;
	int r = mesh_announce_parse(data, size, &a, &why);
	bool valid = size == MESH_ANNOUNCE_LEN && !memcmp(data, "gwml", 4) && data[4] == 1 &&
		data[5] <= 1 && !data[6] && !data[7];

	REQUIRE(r == 0 || r == -EBADMSG);
	REQUIRE((r == 0) == valid);
	if (r == 0) {
		uint8_t out[MESH_ANNOUNCE_LEN];

		mesh_announce_build(out, a.lending);
		REQUIRE(!memcmp(out, data, MESH_ANNOUNCE_LEN));
	} else {
		REQUIRE(why && *why);
	}
	return 0;
}
