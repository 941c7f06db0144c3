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
#define REPLAYMSG_TAGS 2
#define REPLAYMSG_LEN(n) (REPLAYMSG_HDR + (n) * REPLAYMSG_ENTRY + REPLAYMSG_TAGS * REPLAYMSG_TAG)

/* The message, in network order:
 *
 *   "gwrp" | version 2 | count (1..64) | 2 bytes zero |
 *   count x (key id u32 | cookie time u32 | nonce u64) | 2 tags (16 bytes each)
 *
 * Each entry is a cookie the sending box took (its replay cache has it:
 * policy.h); the receiving box puts it into its own. Each tag is
 * HMAC-SHA256, truncated to 16 bytes, over "mptcp-ha replay 2" and every
 * byte before the tags, with one of the keys the boxes share: the
 * sender's primary, then its backup (the primary again when it has none),
 * so that a box one key rotation ahead or behind still verifies it
 * (peers.c). */
struct replaymsg_entry {
	uint32_t kid, time;
	uint64_t nonce;
};

/* The number of entries (1..REPLAYMSG_MAX) into out[], or -EBADMSG with
 * *why set; never crashes, any bytes. The tags are not checked here. */
int replaymsg_parse(const uint8_t *buf, size_t len, struct replaymsg_entry *out,
		    const char **why);
/* Everything but the tags, for n entries (1..REPLAYMSG_MAX) into out
 * (REPLAYMSG_LEN(n) bytes); returns the offset of the first tag. */
size_t replaymsg_build(uint8_t *out, const struct replaymsg_entry *e, unsigned n);

#endif
