/* The boxes' cookie messages (replaymsg.h). */
#include "replaymsg.h"

#include "bytes.h"

#include <errno.h>
#include <string.h>

static const uint8_t magic[4] = { 'g', 'w', 'r', 'p' };

int replaymsg_parse(const uint8_t *buf, size_t len, struct replaymsg_entry *out,
		    const char **why)
{
	unsigned n;

	if (len < REPLAYMSG_LEN(1)) {
		*why = "too short";
		return -EBADMSG;
	}
	if (memcmp(buf, magic, 4)) {
		*why = "no gwrp magic";
		return -EBADMSG;
	}
	if (buf[4] != 2) {
		*why = "unknown version (1 had one tag: a box not upgraded)";
		return -EBADMSG;
	}
	n = buf[5];
	if (n < 1 || n > REPLAYMSG_MAX) {
		*why = "entry count out of range";
		return -EBADMSG;
	}
	if (buf[6] || buf[7]) {
		*why = "reserved bytes set";
		return -EBADMSG;
	}
	if (len != REPLAYMSG_LEN(n)) {
		*why = "length does not match the entry count";
		return -EBADMSG;
	}
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *p = buf + REPLAYMSG_HDR + i * REPLAYMSG_ENTRY;

		out[i].kid = (uint32_t)be_get(p, 4);
		out[i].time = (uint32_t)be_get(p + 4, 4);
		out[i].nonce = be_get(p + 8, 8);
	}
	return (int)n;
}

size_t replaymsg_build(uint8_t *out, const struct replaymsg_entry *e, unsigned n)
{
	memcpy(out, magic, 4);
	out[4] = 2;
	out[5] = (uint8_t)n;
	out[6] = out[7] = 0;
	for (unsigned i = 0; i < n; i++) {
		uint8_t *p = out + REPLAYMSG_HDR + i * REPLAYMSG_ENTRY;

		be_put(p, e[i].kid, 4);
		be_put(p + 4, e[i].time, 4);
		be_put(p + 8, e[i].nonce, 8);
	}
	return REPLAYMSG_HDR + n * REPLAYMSG_ENTRY;
}
