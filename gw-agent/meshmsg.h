/* What mesh routers say to each other (mesh.c): pure, no state, so the
 * parser of these bytes from the mesh can be fuzzed on its own. */
#ifndef GW_AGENT_MESHMSG_H
#define GW_AGENT_MESHMSG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESH_PORT 5126            /* UDP, announcements on the segment */
#define MESH_ANNOUNCE_LEN 8

/* The announcement, 8 bytes: "gwml", version 1, flags (bit 0: lending now;
 * 0 = withdrawn, its line is down), two bytes zero. The lender is the
 * datagram's source address. */
struct mesh_announce {
	bool lending;
};
/* 0, or -EBADMSG with *why set (never crashes, any bytes). */
int mesh_announce_parse(const uint8_t *buf, size_t len, struct mesh_announce *ret,
			const char **why);
void mesh_announce_build(uint8_t out[MESH_ANNOUNCE_LEN], bool lending);

/* The address a borrower uses for the neighbour `lender`: 100.64.L.B,
 * with L and B the last bytes of the lender's and the borrower's IPv4
 * mesh addresses. One address per neighbour is what makes the kernel open
 * one subflow per neighbour; the lender routes 100.64.L.0/24 on-link on
 * its mesh interface, so replies find the borrower with no per-borrower
 * state. (Unique as long as mesh addresses differ in their last byte: a
 * segment of up to 254 routers.) */
void mesh_borrow_addr(const struct in6_addr *lender, const struct in6_addr *borrower,
		      struct in6_addr *ret);

#endif
