/* UDP carrier, version 3: LAN UDP between gw-agent and mptcp-concentrator
 * (docs/udp-carrier.md is the specification; this is its codec).
 *
 * Pure: no I/O, no logging, no allocation, no cryptography (common/udpcrypt
 * seals and opens). Every function returns >= 0 or -errno.
 *
 * Every carrier datagram starts with a 16-byte header, network order:
 *
 *   0  version (high 4 bits, 3) | type (low 4 bits)
 *   1  flags: in HELLO the id of the path it is sent by; DATA from an
 *      agent may set UDPC_F_STEER; others send 0 and receivers ignore the
 *      bits they do not know
 *   2  reserved (u16, 0)
 *   4  session id (u32; 0 in HELLO)
 *   8  packet number (u64; 0 in HELLO and ACCEPT)
 *
 * HELLO   agent -> concentrator, 88 bytes: key id (u32, 0 = no keys), time
 *         (u32, Unix seconds), client nonce (16), 16 bytes of padding (0,
 *         ignored: room for the ACCEPT's box address), HMAC-SHA256 (32) over
 *         the label "mptcp-ha udp hello 1", the header and the fields before
 *         it.
 * ACCEPT  concentrator -> agent, 80 bytes (never more than the HELLO that
 *         asked): the new session id in the header, server nonce (16), the
 *         session's reset token (16) XOR HMAC-SHA256(down key, "mptcp-ha udp
 *         token 1") (so only the agent learns it), the box address (16,
 *         IPv4 as ::ffff:a.b.c.d; all zero: none): where the session's
 *         datagrams go from now on, at the same port (one of several boxes
 *         behind a shared address, whose routing may take each path to
 *         another box), then HMAC-SHA256 truncated to 16 over "mptcp-ha udp
 *         accept 2", the header, the client nonce, the server nonce, the
 *         sealed token and the box address.
 * DATA    both ways, sealed (ChaCha20-Poly1305, key of its direction,
 *         nonce = 4 zero bytes | packet number, the header authenticated):
 *         flow id (u32), mode (u8), paths (u8: the id (0-15) of the path
 *         answers should take in the low nibble; in redundant mode the
 *         second one's id plus 1 in the high nibble), remote port (u16), remote
 *         address (16, IPv4 as ::ffff:a.b.c.d), then the LAN datagram; a
 *         16-byte tag at the end. Upstream the remote is the destination,
 *         downstream the source.
 * PING    agent -> concentrator, sealed: path id (u8), 3 zero bytes, an
 *         opaque u64 the answer echoes, the challenge (u64) of the last PONG
 *         on that path (0: none). PONG: the same size back: path id, 3 zero
 *         bytes, the opaque u64, and a challenge (u64, 0: none) that the
 *         next PING from that path must echo before the concentrator sends
 *         anything but PONGs to a new address for it (path validation: an
 *         observer resending a datagram from a forged source cannot steer
 *         a path's answers to its victim).
 * RESET   concentrator -> agent, 48 bytes, echoing the session id and
 *         packet number of a sealed datagram whose session it does not
 *         know, then two proofs (16 each): HMAC-SHA256 truncated to 16,
 *         keyed with the session's reset token, over "mptcp-ha udp reset
 *         proof 1", the session id, the packet number and that datagram's
 *         tag; the token under the concentrator's reset secret and under
 *         its previous one. The token is HMAC-SHA256 truncated to 16 over
 *         "mptcp-ha udp reset 2", the box's identity and the session id,
 *         with a secret the box keeps across restarts (its TFO key): so it
 *         can prove it once held the session, to that datagram's sender
 *         alone, and tokens cannot be collected by asking for RESETs. 48
 *         bytes: less than any datagram that can cause it (PING, 52).
 *
 * Packet numbers count from 1 per session and direction; a receiver keeps a
 * window of UDPC_WINDOW numbers and takes each once: a replayed datagram and
 * the second copy of a redundant one are both dropped there. */
#ifndef PROTO_UDPC_H
#define PROTO_UDPC_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UDPC_VERSION     3
#define UDPC_HDR_LEN     16
#define UDPC_NONCE_LEN   16
#define UDPC_MAC_LEN     32
#define UDPC_TAG_LEN     16
#define UDPC_HELLO_PAD   16
#define UDPC_HELLO_LEN   (UDPC_HDR_LEN + 8 + UDPC_NONCE_LEN + UDPC_HELLO_PAD + UDPC_MAC_LEN) /* 88 */
#define UDPC_TOKEN_LEN   16
#define UDPC_ACCEPT_MAC_LEN 16
/* ACCEPT: header, server nonce, sealed token, box address, MAC. */
#define UDPC_ACCEPT_TOKEN (UDPC_HDR_LEN + UDPC_NONCE_LEN)
#define UDPC_ACCEPT_BOX  (UDPC_ACCEPT_TOKEN + UDPC_TOKEN_LEN)
#define UDPC_ACCEPT_LEN  (UDPC_ACCEPT_BOX + 16 + UDPC_ACCEPT_MAC_LEN)               /* 80 */
#define UDPC_RESET_LEN   (UDPC_HDR_LEN + 2 * UDPC_TOKEN_LEN)                 /* 48 */
#define UDPC_DATA_INNER  24   /* flow, mode, path, port, address */
#define UDPC_DATA_OVERHEAD (UDPC_HDR_LEN + UDPC_DATA_INNER + UDPC_TAG_LEN)   /* 56 */
#define UDPC_PING_INNER  20
#define UDPC_PING_LEN    (UDPC_HDR_LEN + UDPC_PING_INNER + UDPC_TAG_LEN)     /* 52 */
/* The largest LAN datagram carried: what IPv4 can hold, less our overhead. */
#define UDPC_MAX_PAYLOAD (65507 - UDPC_DATA_OVERHEAD)
#define UDPC_WINDOW      8192
#define UDPC_MAX_PATH_ID 14
/* A DATA with no datagram to forward: the flow's answers should take the
 * paths its paths byte names (the agent moved the flow). */
#define UDPC_F_STEER     0x01

enum udpc_type {
	UDPC_HELLO = 1,
	UDPC_ACCEPT = 2,
	UDPC_DATA = 3,
	UDPC_PING = 4,
	UDPC_PONG = 5,
	UDPC_RESET = 6,
};

/* Steering modes (3GPP ATSSS names where they fit): how the agent spreads a
 * flow over the paths, and so where the concentrator answers it. */
enum udpc_mode {
	UDPC_FAILOVER = 0,      /* ATSSS active-standby: the best live path */
	UDPC_LOWEST_DELAY = 1,  /* ATSSS smallest delay */
	UDPC_REDUNDANT = 2,     /* ATSSS redundant: every datagram on two paths */
	UDPC_MODE_MAX,
};
const char *udpc_mode_name(unsigned m);
/* "failover", "lowest-delay", "redundant": 0 or -EINVAL. */
int udpc_mode_parse(const char *s, enum udpc_mode *ret);

struct udpc_hdr {
	uint8_t type;
	uint8_t flags;
	uint32_t sid;
	uint64_t pn;
};

/* The inner fields of a DATA datagram (after opening). */
struct udpc_data {
	uint32_t flow;
	uint8_t mode, path;
	uint16_t port;           /* host order */
	struct in6_addr addr;
	const uint8_t *payload;  /* points into the caller's buffer */
	size_t len;
};

/* Why a datagram was refused (metrics index: udpc_error_name). */
enum udpc_error {
	UDPC_E_OK = 0,
	UDPC_E_SHORT,        /* shorter than its type's fixed part */
	UDPC_E_VERSION,
	UDPC_E_TYPE,         /* unknown type, or not allowed in that direction */
	UDPC_E_LENGTH,       /* a fixed-size type with another size */
	UDPC_E_FIELD,        /* a field out of range (mode, reserved bits) */
	UDPC_E_MAX,
};
const char *udpc_error_name(unsigned e);

/* Which side's datagrams are parsed. */
enum udpc_dir {
	UDPC_TO_CONC = 0,    /* HELLO, DATA, PING */
	UDPC_TO_AGENT = 1,   /* ACCEPT, DATA, PONG, RESET */
};

/* Checks the header of buf[0..len) and that its type fits dir and len.
 * Returns 0 with *ret filled, or -EBADMSG with *ret_err set. */
int udpc_parse_hdr(const uint8_t *buf, size_t len, enum udpc_dir dir, struct udpc_hdr *ret,
		   enum udpc_error *ret_err);
/* Writes the 16-byte header. */
void udpc_put_hdr(uint8_t out[UDPC_HDR_LEN], const struct udpc_hdr *h);

/* The inner fields of an opened DATA (p[0..len), the tag removed):
 * 0 or -EBADMSG (*ret_err). */
int udpc_parse_data(const uint8_t *p, size_t len, struct udpc_data *ret, enum udpc_error *ret_err);
/* Writes the inner fields (UDPC_DATA_INNER bytes) before the payload. */
void udpc_put_data_inner(uint8_t out[UDPC_DATA_INNER], const struct udpc_data *d);

/* HELLO's fields after the header. */
struct udpc_hello {
	uint32_t kid, time;
	uint8_t nonce[UDPC_NONCE_LEN];
	const uint8_t *mac;      /* into the buffer (parse) */
};
void udpc_parse_hello(const uint8_t buf[UDPC_HELLO_LEN], struct udpc_hello *ret);
/* Writes all but the MAC (the last UDPC_MAC_LEN bytes). */
void udpc_put_hello(uint8_t buf[UDPC_HELLO_LEN], const struct udpc_hello *h);

/* Replay window: packet numbers seen, the highest and the UDPC_WINDOW - 1
 * below it. */
struct udpc_window {
	uint64_t top;                       /* highest seen, 0 = none */
	uint64_t bits[UDPC_WINDOW / 64];    /* bit (pn % UDPC_WINDOW) */
};
/* 0 when pn is new and inside the window (nothing changes: mark it once the
 * datagram is authentic), -EALREADY when seen, -ESTALE when below the
 * window or 0. */
int udpc_window_check(const struct udpc_window *w, uint64_t pn);
void udpc_window_mark(struct udpc_window *w, uint64_t pn);

#endif
