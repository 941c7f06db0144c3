/* Per-gateway keys: the authenticator a gateway puts in the RFC 8803 Cookie
 * TLV, and the key files both daemons read.
 *
 * The Cookie TLV's value (after its 2 reserved bytes) is, in network order:
 *
 *   format (u8) = 1 | flags (u8) | key id (u32) | time (u32, Unix seconds)
 *   | nonce (u64, random per connection) | HMAC-SHA256 (32 bytes)
 *
 * The HMAC, with the key's 32-byte secret, covers "mptcp-ha cookie 1", the
 * fields before it, the client's address as the concentrator sees it, and
 * the Connect TLV's port, address and TCP options (zeros for an Info-only
 * probe). So a cookie is good for one gateway address and one destination,
 * for COOKIE_MAX_AGE_S either side of its time, and (the concentrator keeps
 * the nonces it has seen) once.
 *
 * NAT: a gateway that knows its packets are translated on the way (its
 * source address is not the one the concentrator sees) sets COOKIE_F_NAT;
 * the address is then left out of the HMAC (16 zero bytes instead). The
 * concentrator accepts such cookies only for keys marked "nat" in its key
 * file: for those keys, the key alone (and the replay cache) stands for the
 * gateway, wherever it connects from. */
#ifndef COMMON_COOKIE_H
#define COMMON_COOKIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define COOKIE_FORMAT 1
#define COOKIE_LEN 50            /* the value above, without TLV padding */
#define COOKIE_SECRET_LEN 32
#define COOKIE_MAX_AGE_S 90      /* clock difference and delay allowed */
#define COOKIE_F_NAT 0x01

struct cookie_key {
	uint32_t id;
	uint8_t secret[COOKIE_SECRET_LEN];
	bool nat;                    /* COOKIE_F_NAT cookies accepted / sent */
	bool any;                    /* usable from any client address */
	struct addr_prefix *scope;   /* else from these prefixes */
	unsigned nscope;
};

struct cookie_keys {
	struct cookie_key *k;
	unsigned n;
};

/* What a Connect TLV asks for: port, address, TCP options. NULL for an
 * Info-only message. */
struct cookie_dest {
	uint16_t port;
	struct in6_addr addr;
	const uint8_t *opts;
	size_t opts_len;
};

/* The cookie for a connection from client (NULL with COOKIE_F_NAT) to dst,
 * at time now (Unix seconds), with a fresh random nonce. Returns COOKIE_LEN
 * or -errno. */
int cookie_make(uint8_t out[COOKIE_LEN], const struct cookie_key *k, uint8_t flags,
		uint32_t now, const struct in6_addr *client, const struct cookie_dest *dst);

/* Why a cookie was refused; indexes metrics (cookie_reason_name). */
enum cookie_reason {
	COOKIE_OK = 0,
	COOKIE_MISSING,
	COOKIE_MALFORMED,
	COOKIE_UNKNOWN_KEY,
	COOKIE_SCOPE,        /* the key is not for this client address */
	COOKIE_NAT,          /* NAT cookie for a key not marked nat */
	COOKIE_STALE,        /* time outside the window */
	COOKIE_BAD_MAC,
	COOKIE_REPLAYED,
	COOKIE_REASON_MAX,
};
const char *cookie_reason_name(enum cookie_reason r);

/* The fields of a cookie value p[0..len) (TLV padding allowed after it). */
struct cookie_fields {
	uint8_t flags;
	uint32_t kid, time;
	uint64_t nonce;
};

/* Checks p[0..len) from client to dst against keys at time now: format,
 * key, scope, NAT, time and HMAC (constant-time). Replays are the caller's
 * (it keeps the nonces): on COOKIE_OK *ret has them. */
enum cookie_reason cookie_check(const struct cookie_keys *keys, const uint8_t *p, size_t len,
				const struct in6_addr *client, const struct cookie_dest *dst,
				uint32_t now, struct cookie_fields *ret);

/* A key file: one key per line, '#' starts a comment:
 *
 *   ID  SECRET  [any | PREFIX ...] [nat]
 *
 * ID a number (1..4294967295), SECRET 64 hex digits (32 random bytes, e.g.
 * `openssl rand -hex 32`). The concentrator uses every line: who may use
 * the key (any address, or these prefixes; any when nothing is said) and
 * whether NAT cookies are accepted. A gateway uses the first line, and
 * "nat" there says it is behind NAT. The file must not be readable or
 * writable by group or others. Errors name the file, the line and the
 * reason, never the secret; at most 32 are written to errbuf, one per line.
 * Returns the number of keys, or -errno (-EINVAL: errbuf says why). */
int cookie_keys_load(const char *path, struct cookie_keys *ret, char *errbuf, size_t errlen);
void cookie_keys_free(struct cookie_keys *k);
const struct cookie_key *cookie_keys_find(const struct cookie_keys *k, uint32_t id);

#endif
