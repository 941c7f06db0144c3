/* libFuzzer harness for the cluster's cookie messages
 * (concentrator/replaymsg.c): bytes anyone who can reach a box's
 * replay-listen port can send. Beyond "no crash", checked against this
 * file's own reading of the format in replaymsg.h: n entries exactly for
 * "gwrp", version 2, a count n of 1 to 64, two zero bytes and a length of
 * 8 + 16 n + 32 (two tags); the entries are the bytes read here (big-endian);
 * building them again gives the same bytes up to the tag; anything else is
 * -EBADMSG with a reason. */
#include "replaymsg.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

static uint64_t be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	while (n--)
		v = v << 8 | *p++;
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct replaymsg_entry e[REPLAYMSG_MAX];
	const char *why = NULL;
	unsigned n = size >= 6 ? data[5] : 0;
	bool valid = size >= 8 && !memcmp(data, "gwrp", 4) && data[4] == 2 && n >= 1 &&
		n <= 64 && !data[6] && !data[7] && size == 8 + 16 * (size_t)n + 32;
	int r;

	memset(e, 0xa5, sizeof(e));
	r = replaymsg_parse(data, size, e, &why);
	REQUIRE(r == -EBADMSG || (r >= 1 && r <= REPLAYMSG_MAX));
	REQUIRE((r > 0) == valid);
	if (r > 0) {
		uint8_t out[REPLAYMSG_LEN(REPLAYMSG_MAX)];

		REQUIRE((unsigned)r == n);
		for (unsigned i = 0; i < n; i++) {
			const uint8_t *p = data + 8 + 16 * i;

			REQUIRE(e[i].kid == be(p, 4) && e[i].time == be(p + 4, 4) &&
				e[i].nonce == be(p + 8, 8));
		}
		REQUIRE(replaymsg_build(out, e, n) == size - 32);
		REQUIRE(!memcmp(out, data, size - 32));
	} else {
		REQUIRE(why && *why);
	}
	return 0;
}
