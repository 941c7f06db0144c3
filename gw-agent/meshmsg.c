/* Mesh announcements and borrow addresses (meshmsg.h). */
#include "meshmsg.h"

#include "bytes.h"

#include <errno.h>
#include <string.h>

static const uint8_t magic[4] = { 'g', 'w', 'm', 'l' };

int mesh_announce_parse(const uint8_t *buf, size_t len, struct mesh_announce *ret,
			const char **why)
{
	if (len >= 5 && !memcmp(buf, magic, 4) && buf[4] == 1) {
		*why = "version 1 (no key): unauthenticated";
		return -EBADMSG;
	}
	if (len != MESH_ANNOUNCE_LEN && len != MESH_REQUEST_LEN) {
		*why = "not 40 or 48 bytes";
		return -EBADMSG;
	}
	if (memcmp(buf, magic, 4)) {
		*why = "no gwml magic";
		return -EBADMSG;
	}
	if (buf[4] != 2) {
		*why = "unknown version";
		return -EBADMSG;
	}
	if ((buf[5] != 0 && buf[5] != 1 && buf[5] != 3) || buf[6] || buf[7]) {
		*why = "unknown flags";
		return -EBADMSG;
	}
	if ((buf[5] == 3) != (len == MESH_REQUEST_LEN)) {
		*why = "a borrow request is 48 bytes, an announcement 40";
		return -EBADMSG;
	}
	if (len == MESH_REQUEST_LEN && (buf[30] || buf[31])) {
		*why = "reserved bytes set";
		return -EBADMSG;
	}
	memset(ret, 0, sizeof(*ret));
	ret->lending = buf[5] & 1;
	ret->borrow = buf[5] & 2;
	ret->kid = (uint32_t)be_get(buf + 8, 4);
	ret->seq = be_get(buf + 12, 8);
	ret->sender.s6_addr[10] = ret->sender.s6_addr[11] = 0xff;
	memcpy(&ret->sender.s6_addr[12], buf + 20, 4);
	if (ret->borrow)
		memcpy(ret->mac, buf + MESH_ANNOUNCE_SIGNED, 6);
	memcpy(ret->tag, buf + len - MESH_TAG_LEN, MESH_TAG_LEN);
	return 0;
}

size_t mesh_announce_build(uint8_t *out, const struct mesh_announce *a)
{
	size_t signed_len = a->borrow ? MESH_REQUEST_SIGNED : MESH_ANNOUNCE_SIGNED;

	memcpy(out, magic, 4);
	out[4] = 2;
	out[5] = a->borrow ? 3 : a->lending ? 1 : 0;
	out[6] = out[7] = 0;
	be_put(out + 8, a->kid, 4);
	be_put(out + 12, a->seq, 8);
	memcpy(out + 20, &a->sender.s6_addr[12], 4);
	if (a->borrow) {
		memcpy(out + MESH_ANNOUNCE_SIGNED, a->mac, 6);
		out[30] = out[31] = 0;
	}
	memcpy(out + signed_len, a->tag, MESH_TAG_LEN);
	return signed_len + MESH_TAG_LEN;
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
