/* Mesh announcements and borrow addresses (meshmsg.h). */
#include "meshmsg.h"

#include <errno.h>
#include <string.h>

static const uint8_t magic[4] = { 'g', 'w', 'm', 'l' };

int mesh_announce_parse(const uint8_t *buf, size_t len, struct mesh_announce *ret,
			const char **why)
{
	if (len != MESH_ANNOUNCE_LEN) {
		*why = "not 8 bytes";
		return -EBADMSG;
	}
	if (memcmp(buf, magic, 4)) {
		*why = "no gwml magic";
		return -EBADMSG;
	}
	if (buf[4] != 1) {
		*why = "unknown version";
		return -EBADMSG;
	}
	if (buf[5] & ~1u || buf[6] || buf[7]) {
		*why = "unknown flags";
		return -EBADMSG;
	}
	ret->lending = buf[5] & 1;
	return 0;
}

void mesh_announce_build(uint8_t out[MESH_ANNOUNCE_LEN], bool lending)
{
	memcpy(out, magic, 4);
	out[4] = 1;
	out[5] = lending ? 1 : 0;
	out[6] = out[7] = 0;
}

void mesh_borrow_addr(const struct in6_addr *lender, const struct in6_addr *borrower,
		      struct in6_addr *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->s6_addr[10] = ret->s6_addr[11] = 0xff;
	ret->s6_addr[12] = 100;
	ret->s6_addr[13] = 64;
	ret->s6_addr[14] = lender->s6_addr[15];
	ret->s6_addr[15] = borrower->s6_addr[15];
}

