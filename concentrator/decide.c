#include "decide.h"

#include <string.h>

/* The kernel sends SACK-permitted, timestamps and window scale on its own;
 * MSS is applied with TCP_MAXSEG. Anything else cannot be honoured. */
const uint8_t decide_supported_kinds[4] = { 2, 3, 4, 8 };

static bool kind_supported(uint8_t k)
{
	return memchr(decide_supported_kinds, k, sizeof(decide_supported_kinds)) != NULL;
}

static void refuse(struct decision *d, uint8_t code, const char *reason)
{
	d->kind = DECIDE_REFUSE;
	d->code = code;
	d->reason = reason;
}

const char *decide_cookie_text(enum cookie_reason why)
{
	switch (why) {
	case COOKIE_MISSING: return "no Cookie TLV: this concentrator requires a gateway key";
	case COOKIE_MALFORMED: return "malformed cookie";
	case COOKIE_UNKNOWN_KEY: return "cookie names an unknown key";
	case COOKIE_SCOPE: return "cookie key not for this client address";
	case COOKIE_NAT: return "NAT cookie for a key without nat";
	case COOKIE_STALE: return "stale cookie (clock or replay window)";
	case COOKIE_BAD_MAC: return "cookie authenticator does not match";
	case COOKIE_REPLAYED: return "replayed cookie";
	default: return "cookie refused";
	}
}

/* With keys, the Cookie must be a valid, fresh authenticator for this
 * client and this destination. */
static enum cookie_reason check_cookie(const struct policy *p, const struct in6_addr *peer,
				       const struct convert_msg *m, uint32_t now,
				       struct decision *d)
{
	struct cookie_dest dst, *dp = NULL;
	enum cookie_reason why;

	if (!p->keys.n)
		return COOKIE_OK;
	if (!(m->present & CONVERT_HAS_COOKIE))
		return COOKIE_MISSING;
	if (m->present & CONVERT_HAS_CONNECT) {
		dst = (struct cookie_dest){ .port = m->connect.port, .addr = m->connect.addr,
					    .opts = m->connect.tcp_opts.p,
					    .opts_len = m->connect.tcp_opts.len };
		dp = &dst;
	} else if (m->present & CONVERT_HAS_SPEEDTEST) {
		/* A speed test's cookie covers the test asked for: no
		 * destination, the TLV's value as its "options" (so an Info
		 * probe's cookie is not one). */
		dst = (struct cookie_dest){ .opts = m->speedtest.value.p,
					    .opts_len = m->speedtest.value.len };
		dp = &dst;
	}
	why = cookie_check(&p->keys, m->cookie.p, m->cookie.len, peer, dp, now, &d->fields);
	d->keyed = why == COOKIE_OK;
	return why;
}

void decide(const struct policy *p, const struct in6_addr *peer, const uint8_t *buf,
	    size_t len, bool eof, uint32_t now, struct decision *d)
{
	struct convert_decode_opts o = { .role = CONVERT_FROM_CLIENT,
					 .flags = eof ? CONVERT_F_EOF : 0 };
	struct convert_msg m;
	struct convert_diag dg;
	const char *reason = NULL;
	int n;

	memset(d, 0, sizeof(*d));
	n = convert_decode(buf, len, &o, &m, &dg);
	if (n == 0) {
		d->kind = DECIDE_MORE;
		return;
	}
	if (n < 0) {
		refuse(d, dg.code, dg.reason);
		d->value_len = dg.value_len;
		memcpy(d->value, dg.value, sizeof(d->value));
		return;
	}
	d->msg_len = (uint32_t)n;
	d->speedtest = (m.present & CONVERT_HAS_SPEEDTEST) != 0;
	/* The key first: nothing about the request is acted on, or even
	 * judged aloud, for a client that has not proven who it is. */
	d->cookie = check_cookie(p, peer, &m, now, d);
	if (d->cookie != COOKIE_OK) {
		refuse(d, d->cookie == COOKIE_MISSING ? CONVERT_E_MISSING_COOKIE :
		       CONVERT_E_NOT_AUTHORIZED, decide_cookie_text(d->cookie));
		return;
	}
	if (m.present & CONVERT_HAS_SPEEDTEST) {
		/* Served to gateways that proved who they are only: an
		 * unkeyed concentrator serves none (its clients are known by
		 * address alone, which a test's bytes could be aimed with). */
		if (m.present & (CONVERT_HAS_CONNECT | CONVERT_HAS_VERIFIED)) {
			refuse(d, CONVERT_E_MALFORMED, "a Speed Test TLV with a Connect or Verified Stream TLV");
			return;
		}
		if (!d->keyed) {
			refuse(d, CONVERT_E_NOT_AUTHORIZED, "a speed test needs a gateway key");
			return;
		}
		if (len > (size_t)n) {
			refuse(d, CONVERT_E_MALFORMED, "bytes behind a speed test request");
			return;
		}
		d->kind = DECIDE_SPEEDTEST;
		d->st_dir = m.speedtest.direction;
		d->st_seconds = m.speedtest.seconds;
		return;
	}
	if (!(m.present & CONVERT_HAS_CONNECT)) {
		d->kind = DECIDE_INFO;
		return;
	}
	/* The decoder validated the options' lengths. */
	for (size_t i = 0; i < m.connect.tcp_opts.len;) {
		const uint8_t *op = m.connect.tcp_opts.p + i;

		if (op[0] == 1) {
			i++;
			continue;
		}
		if (!kind_supported(op[0])) {
			refuse(d, CONVERT_E_UNSUPPORTED_TCP_OPTION, "unsupported TCP option in Connect");
			d->value_len = 1;
			d->value[0] = op[0];
			return;
		}
		if (op[0] == 2 && op[1] == 4)
			d->mss = (op[2] << 8) | op[3];
		i += op[1];
	}
	if (policy_check_dest(p, &m.connect.addr, m.connect.port, &reason) < 0) {
		refuse(d, CONVERT_E_NOT_AUTHORIZED, reason);
		return;
	}
	if (m.present & CONVERT_HAS_VERIFIED) {
		/* From the reply on, the client's bytes are records: bytes
		 * already behind its request cannot be (it must wait for the
		 * reply, as our agent does). */
		if (len > (size_t)n) {
			refuse(d, CONVERT_E_MALFORMED,
			       "bytes behind a request that asks for a verified stream");
			return;
		}
		d->verified_max = m.verified.max_record;
	}
	d->kind = DECIDE_CONNECT;
	d->dst = m.connect.addr;
	d->port = m.connect.port;
}
