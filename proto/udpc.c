/* UDP carrier codec (udpc.h). */
#include "udpc.h"

#include <errno.h>
#include <string.h>

static const char *const mode_names[UDPC_MODE_MAX] = {
	[UDPC_FAILOVER] = "failover",
	[UDPC_LOWEST_DELAY] = "lowest-delay",
	[UDPC_REDUNDANT] = "redundant",
};

const char *udpc_mode_name(unsigned m)
{
	return m < UDPC_MODE_MAX ? mode_names[m] : "unknown";
}

int udpc_mode_parse(const char *s, enum udpc_mode *ret)
{
	for (unsigned m = 0; m < UDPC_MODE_MAX; m++)
		if (!strcmp(s, mode_names[m])) {
			*ret = (enum udpc_mode)m;
			return 0;
		}
	return -EINVAL;
}

static const char *const error_names[UDPC_E_MAX] = {
	[UDPC_E_OK] = "ok",
	[UDPC_E_SHORT] = "short",
	[UDPC_E_VERSION] = "version",
	[UDPC_E_TYPE] = "type",
	[UDPC_E_LENGTH] = "length",
	[UDPC_E_FIELD] = "field",
};

const char *udpc_error_name(unsigned e)
{
	return e < UDPC_E_MAX ? error_names[e] : "unknown";
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static int fail(enum udpc_error e, enum udpc_error *ret_err)
{
	if (ret_err)
		*ret_err = e;
	return -EBADMSG;
}

int udpc_parse_hdr(const uint8_t *buf, size_t len, enum udpc_dir dir, struct udpc_hdr *ret,
		   enum udpc_error *ret_err)
{
	size_t min, max;
	uint8_t type;

	if (len < UDPC_HDR_LEN)
		return fail(UDPC_E_SHORT, ret_err);
	if (buf[0] >> 4 != UDPC_VERSION)
		return fail(UDPC_E_VERSION, ret_err);
	type = buf[0] & 0x0f;
	switch (type) {
	case UDPC_HELLO:
		min = max = UDPC_HELLO_LEN;
		break;
	case UDPC_ACCEPT:
		min = max = UDPC_ACCEPT_LEN;
		break;
	case UDPC_DATA:
		min = UDPC_DATA_OVERHEAD;
		max = UDPC_DATA_OVERHEAD + UDPC_MAX_PAYLOAD;
		break;
	case UDPC_PING:
	case UDPC_PONG:
		min = max = UDPC_PING_LEN;
		break;
	case UDPC_RESET:
		min = max = UDPC_RESET_LEN;
		break;
	default:
		return fail(UDPC_E_TYPE, ret_err);
	}
	if ((dir == UDPC_TO_CONC) !=
	    (type == UDPC_HELLO || type == UDPC_DATA || type == UDPC_PING) &&
	    type != UDPC_DATA)
		return fail(UDPC_E_TYPE, ret_err);
	if (len < min)
		return fail(UDPC_E_SHORT, ret_err);
	if (len > max)
		return fail(UDPC_E_LENGTH, ret_err);
	ret->type = type;
	ret->flags = buf[1];
	ret->sid = get32(buf + 4);
	ret->pn = (uint64_t)get32(buf + 8) << 32 | get32(buf + 12);
	/* A HELLO has no session yet; everything else names one. */
	if ((type == UDPC_HELLO) != (ret->sid == 0))
		return fail(UDPC_E_FIELD, ret_err);
	if ((type == UDPC_HELLO || type == UDPC_ACCEPT) ? ret->pn != 0 : ret->pn == 0)
		return fail(UDPC_E_FIELD, ret_err);
	if (ret_err)
		*ret_err = UDPC_E_OK;
	return 0;
}

void udpc_put_hdr(uint8_t out[UDPC_HDR_LEN], const struct udpc_hdr *h)
{
	out[0] = (uint8_t)(UDPC_VERSION << 4 | (h->type & 0x0f));
	out[1] = h->flags;
	out[2] = out[3] = 0;
	put32(out + 4, h->sid);
	put32(out + 8, (uint32_t)(h->pn >> 32));
	put32(out + 12, (uint32_t)h->pn);
}

int udpc_parse_data(const uint8_t *p, size_t len, struct udpc_data *ret, enum udpc_error *ret_err)
{
	if (len < UDPC_DATA_INNER)
		return fail(UDPC_E_SHORT, ret_err);
	if (p[4] >= UDPC_MODE_MAX)
		return fail(UDPC_E_FIELD, ret_err);
	ret->flow = get32(p);
	ret->mode = p[4];
	ret->path = p[5];
	ret->port = (uint16_t)(p[6] << 8 | p[7]);
	memcpy(&ret->addr, p + 8, 16);
	ret->payload = p + UDPC_DATA_INNER;
	ret->len = len - UDPC_DATA_INNER;
	if (ret_err)
		*ret_err = UDPC_E_OK;
	return 0;
}

void udpc_put_data_inner(uint8_t out[UDPC_DATA_INNER], const struct udpc_data *d)
{
	put32(out, d->flow);
	out[4] = d->mode;
	out[5] = d->path;
	out[6] = (uint8_t)(d->port >> 8);
	out[7] = (uint8_t)d->port;
	memcpy(out + 8, &d->addr, 16);
}

void udpc_parse_hello(const uint8_t buf[UDPC_HELLO_LEN], struct udpc_hello *ret)
{
	ret->kid = get32(buf + UDPC_HDR_LEN);
	ret->time = get32(buf + UDPC_HDR_LEN + 4);
	memcpy(ret->nonce, buf + UDPC_HDR_LEN + 8, UDPC_NONCE_LEN);
	ret->mac = buf + UDPC_HELLO_LEN - UDPC_MAC_LEN;
}

void udpc_put_hello(uint8_t buf[UDPC_HELLO_LEN], const struct udpc_hello *h)
{
	put32(buf + UDPC_HDR_LEN, h->kid);
	put32(buf + UDPC_HDR_LEN + 4, h->time);
	memcpy(buf + UDPC_HDR_LEN + 8, h->nonce, UDPC_NONCE_LEN);
	memset(buf + UDPC_HDR_LEN + 8 + UDPC_NONCE_LEN, 0, UDPC_HELLO_PAD);
}

#define WBIT(pn) ((pn) % UDPC_WINDOW)

int udpc_window_check(const struct udpc_window *w, uint64_t pn)
{
	if (pn == 0)
		return -ESTALE;
	if (pn > w->top)
		return 0;
	if (w->top - pn >= UDPC_WINDOW)
		return -ESTALE;
	return (w->bits[WBIT(pn) / 64] >> (WBIT(pn) % 64)) & 1 ? -EALREADY : 0;
}

void udpc_window_mark(struct udpc_window *w, uint64_t pn)
{
	if (pn > w->top) {
		/* Clear the bits of the numbers skipped over (they are new). */
		if (pn - w->top >= UDPC_WINDOW) {
			memset(w->bits, 0, sizeof(w->bits));
		} else {
			/* Whole words where they fit: at most ~260 steps. */
			for (uint64_t n = w->top + 1; n < pn;) {
				if (WBIT(n) % 64 == 0 && pn - n >= 64) {
					w->bits[WBIT(n) / 64] = 0;
					n += 64;
				} else {
					w->bits[WBIT(n) / 64] &= ~(1ull << (WBIT(n) % 64));
					n++;
				}
			}
		}
		w->top = pn;
	}
	w->bits[WBIT(pn) / 64] |= 1ull << (WBIT(pn) % 64);
}
