/* The Convert handshake's decision, pure: the bytes a client has sent so
 * far, its address, the policy and the time in; what to do out. No I/O, no
 * locks, no clock: session.c does those, and the handshake fuzzer
 * (tests/fuzz/fuzz-handshake.c) drives exactly this with hostile bytes. */
#ifndef CONCENTRATOR_DECIDE_H
#define CONCENTRATOR_DECIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "convert.h"
#include "policy.h"

enum decide_kind {
	DECIDE_MORE = 0,      /* the message is not complete yet */
	DECIDE_REFUSE,        /* answer with Error code (and value), close */
	DECIDE_INFO,          /* an Info request: answer with what we support */
	DECIDE_CONNECT,       /* connect to dst:port, MSS mss (0: default) */
	DECIDE_SPEEDTEST,     /* a keyed gateway's speed test: st_dir, st_seconds */
};

struct decision {
	enum decide_kind kind;
	uint32_t msg_len;             /* the message's bytes (not MORE) */
	uint8_t code;                 /* REFUSE */
	uint8_t value_len;
	uint8_t value[2];
	const char *reason;           /* static; REFUSE */
	enum cookie_reason cookie;    /* the Cookie check (COOKIE_OK without keys) */
	bool keyed;                   /* a valid cookie was checked: the caller */
	struct cookie_fields fields;  /* still checks fields for a replay */
	struct in6_addr dst;          /* CONNECT */
	uint16_t port;
	int mss;
	uint32_t verified_max;        /* CONNECT: the client offers a verified
				       * stream, taking records this large; 0 = not */
	bool speedtest;               /* the request asked for a speed test */
	uint8_t st_dir, st_seconds;   /* SPEEDTEST */
};

/* The TCP option kinds a Connect TLV may ask for. */
extern const uint8_t decide_supported_kinds[4];

/* Decide on buf[0..len) from client peer (eof: the client closed its side).
 * p: the policy (destinations, keys); now: Unix seconds. A cookie's
 * one-time use is the caller's to check (replay_check with ret->fields,
 * when ret->keyed): it is state, and this is not. */
void decide(const struct policy *p, const struct in6_addr *peer, const uint8_t *buf,
	    size_t len, bool eof, uint32_t now, struct decision *ret);
/* The refusal text for a cookie reason. */
const char *decide_cookie_text(enum cookie_reason why);

#endif
