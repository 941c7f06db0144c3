/* What the boxes of a cluster tell each other about the cookies they took
 * (peers.c): pure, no state, so the parser of these bytes from the network
 * can be fuzzed on its own. */
#ifndef CONC_REPLAYMSG_H
#define CONC_REPLAYMSG_H

#include <stddef.h>
#include <stdint.h>

#define REPLAYMSG_MAX 64          /* entries in one message */
#define REPLAYMSG_HDR 8
#define REPLAYMSG_ENTRY 16
#define REPLAYMSG_TAG 16
#define REPLAYMSG_LEN(n) (REPLAYMSG_HDR + (n) * REPLAYMSG_ENTRY + REPLAYMSG_TAG)

/* The message, in network order:
 *
 *   "gwrp" | version 1 | count (1..64) | 2 bytes zero |
 *   count x (key id u32 | cookie time u32 | nonce u64) | tag (16 bytes)
 *
 * Each entry is a cookie the sending box took (its replay cache has it:
 * policy.h); the receiving box puts it into its own. The tag is
 * HMAC-SHA256, truncated to 16 bytes, with a key the boxes share, over
 * "mptcp-ha replay 1" and every byte before the tag (peers.c). */
struct replaymsg_entry {
	uint32_t kid, time;
	uint64_t nonce;
};

/* The number of entries (1..REPLAYMSG_MAX) into out[], or -EBADMSG with
 * *why set; never crashes, any bytes. The tag is not checked here. */
int replaymsg_parse(const uint8_t *buf, size_t len, struct replaymsg_entry *out,
		    const char **why);
/* Everything but the tag, for n entries (1..REPLAYMSG_MAX) into out
 * (REPLAYMSG_LEN(n) bytes); returns the offset of the tag. */
size_t replaymsg_build(uint8_t *out, const struct replaymsg_entry *e, unsigned n);

#endif
