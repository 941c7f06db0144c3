/* What mesh routers say to each other (mesh.c): pure, no state, so the
 * parser of these bytes from the mesh can be fuzzed on its own. */
#ifndef GW_AGENT_MESHMSG_H
#define GW_AGENT_MESHMSG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESH_PORT 5126            /* UDP, announcements on the segment */
#define MESH_ANNOUNCE_LEN 40
#define MESH_ANNOUNCE_SIGNED 24   /* bytes the tag covers */
#define MESH_REQUEST_LEN 48       /* a borrow request */
#define MESH_REQUEST_SIGNED 32
#define MESH_TAG_LEN 16

/* The announcement, 40 bytes, in network order:
 *
 *   "gwml" | version 2 | flags (bit 0: lending now; 0 = withdrawn, its line
 *   is down; bit 1: a borrow request, see below) | 2 bytes zero | key id
 *   (u32) | sequence (u64: the sender's clock, ms since 1970, strictly
 *   increasing) | the sender's IPv4 mesh address (4 bytes) | tag (16 bytes)
 *
 * The tag is HMAC-SHA256, truncated to 16 bytes, with the mesh key's
 * secret over "mptcp-ha mesh 2" and the 24 bytes before it (mesh.c). Any
 * household that holds a key the borrower accepts can announce, as the
 * address the key is for, and nothing it sent can be replayed: the
 * sequence must grow and be near the borrower's clock. Version 1 (8 bytes,
 * no key) is refused.
 *
 * A borrow request goes the other way: a borrower sends it to each lender
 * it uses (unicast, every second), and the lender forwards only the borrow
 * addresses of borrowers whose requests it can verify, and only from the
 * link-layer address the request names. 48 bytes: the 24 above with flags
 * 3 (bit 1 and bit 0), then the borrower's MAC address on the mesh
 * interface (6 bytes) and 2 bytes zero, then the tag, over "mptcp-ha
 * borrow 2", the lender's IPv4 mesh address (4 bytes, not sent: the
 * receiver's own) and the 32 bytes before it, so a request for one lender
 * is worth nothing at another and its MAC cannot be changed. */
struct mesh_announce {
	bool lending;
	bool borrow;                   /* a borrow request (then lending too) */
	uint8_t mac[6];                /* a borrow request's: the borrower's */
	uint32_t kid;
	uint64_t seq;
	struct in6_addr sender;        /* v4-mapped */
	uint8_t tag[MESH_TAG_LEN];
};
/* 0, or -EBADMSG with *why set (never crashes, any bytes): an
 * announcement of MESH_ANNOUNCE_LEN bytes or a borrow request of
 * MESH_REQUEST_LEN. The tag is not checked here (mesh.c has the keys). */
int mesh_announce_parse(const uint8_t *buf, size_t len, struct mesh_announce *ret,
			const char **why);
/* The signed bytes (MESH_ANNOUNCE_SIGNED, or MESH_REQUEST_SIGNED for a
 * borrow request), then the tag from a->tag; returns the whole length.
 * out holds MESH_REQUEST_LEN bytes; sender must be v4-mapped. */
size_t mesh_announce_build(uint8_t *out, const struct mesh_announce *a);

/* The address a borrower uses for the neighbour `lender`: 100.64.L.B,
 * with L and B the last bytes of the lender's and the borrower's IPv4
 * mesh addresses. One address per neighbour is what makes the kernel open
 * one subflow per neighbour; the lender routes 100.64.L.0/24 on-link on
 * its mesh interface, so replies find the borrower with no per-borrower
 * state. Unique on a mesh of /24 or smaller; on a larger one two lenders
 * with the same last byte would share it, and mesh.c refuses the second. */
void mesh_borrow_addr(const struct in6_addr *lender, const struct in6_addr *borrower,
		      struct in6_addr *ret);

#endif
