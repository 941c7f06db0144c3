/* RFC 8803 (0-RTT TCP Convert Protocol) wire codec.
 *
 * Pure: no I/O, no logging, no allocation, no global state. Every function
 * returns >= 0 on success or -errno. Decoded messages point into the caller's
 * buffer, so a struct convert_msg is valid only while that buffer is.
 *
 * Wire layout (all integers in network order):
 *
 *   fixed header   | version=1 (u8) | total length in 32-bit words, header
 *                  | included (u8)  | magic 0x2263 (u16) |
 *   each TLV       | type (u8) | length in 32-bit words, whole TLV (u8) | value,
 *                  padded with zeros to a multiple of 4 bytes |
 *
 *   Info (1)              len 1: 2 reserved bytes
 *   Connect (10)          port (u16), address (16 bytes, IPv4 as ::ffff:a.b.c.d),
 *                         then optional TCP options (kind/len encoded as in TCP)
 *   Extended TCP Hdr (20) 2 reserved bytes, then the TCP header bytes the server
 *                         returned in its SYN+ACK
 *   Supported Ext (21)    2 reserved bytes, then one byte per TCP option kind
 *   Cookie (22)           2 reserved bytes, then an opaque value
 *   Error (30)            error code (u8), then an optional value
 *   Verified Stream (192) private use (IANA: 192-255), this project's: version
 *                         (u8, 1), reserved (u8, 0), the largest record this
 *                         side receives, in data bytes (u32). Offered by a
 *                         client, echoed by a converter that agrees: from the
 *                         reply on, both directions are records
 *                         (common/vstream.h). Unknown to other converters,
 *                         which answer Unsupported Message (2) naming it.
 *   Speed Test (193)      private use, this project's: version (u8, 1),
 *                         direction (u8: 1 down, the converter sends; 2 up,
 *                         the client sends), seconds (u8, 1-10), reserved
 *                         (u8 and u16, 0). Asked by a keyed client instead of
 *                         a Connect, echoed by a converter that serves it:
 *                         then the bytes of the test (see docs/speedtest.md).
 *
 * After the Convert message, the bytes of the connection are application data:
 * a decoder that reports a complete message of length L leaves buf[L..] to the
 * caller as the first payload. */
#ifndef PROTO_CONVERT_H
#define PROTO_CONVERT_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define CONVERT_VERSION      1
#define CONVERT_MAGIC        0x2263
#define CONVERT_DEFAULT_PORT 5124
#define CONVERT_HDR_LEN      4
#define CONVERT_WORD         4
/* The total length field is one byte counting 32-bit words. */
#define CONVERT_MAX_LEN      (255 * CONVERT_WORD)
/* Connect TLV without TCP options: type, len, port, 16-byte address. */
#define CONVERT_CONNECT_LEN  20

enum convert_tlv_type {
	CONVERT_TLV_INFO = 1,
	CONVERT_TLV_CONNECT = 10,
	CONVERT_TLV_EXT_TCP_HDR = 20,
	CONVERT_TLV_SUPPORTED_EXT = 21,
	CONVERT_TLV_COOKIE = 22,
	CONVERT_TLV_ERROR = 30,
	CONVERT_TLV_VERIFIED = 192,
	CONVERT_TLV_SPEEDTEST = 193,
};

#define CONVERT_SPEEDTEST_VALUE_LEN 6
#define CONVERT_SPEEDTEST_VERSION   1
#define CONVERT_SPEEDTEST_DOWN      1
#define CONVERT_SPEEDTEST_UP        2
#define CONVERT_SPEEDTEST_MAX_S     10

/* Verified Stream TLV: the length of its value, and the version we speak. */
#define CONVERT_VERIFIED_VALUE_LEN 6
#define CONVERT_VERIFIED_VERSION   1
/* The smallest record size a side may ask for: smaller records would let a
 * peer multiply the other side's receives and completions per byte. */
#define CONVERT_VERIFIED_MIN_RECORD 16384

/* Error codes. Ranges (IANA registry): 0-31 message validation, 32-63
 * client-side, 64-95 converter-side, 96-127 caused by the destination. */
enum convert_error_code {
	CONVERT_E_UNSUPPORTED_VERSION = 0,
	CONVERT_E_MALFORMED = 1,
	CONVERT_E_UNSUPPORTED_MESSAGE = 2,
	CONVERT_E_MISSING_COOKIE = 3,
	CONVERT_E_NOT_AUTHORIZED = 32,
	CONVERT_E_UNSUPPORTED_TCP_OPTION = 33,
	CONVERT_E_RESOURCE_EXCEEDED = 64,
	CONVERT_E_NETWORK_FAILURE = 65,
	CONVERT_E_CONNECTION_RESET = 96,
	CONVERT_E_DESTINATION_UNREACHABLE = 97,
};

/* Which side sent the bytes being decoded. A converter decodes requests from
 * clients (Info, Connect, Cookie); a client decodes the converter's reply
 * (Extended TCP Header, Supported TCP Extensions, Error). A known TLV arriving
 * in the wrong direction is answered like an unknown one. */
enum convert_role {
	CONVERT_FROM_CLIENT = 0,
	CONVERT_FROM_CONVERTER = 1,
};

/* Bits of convert_msg.present. */
#define CONVERT_HAS_INFO          (1u << 0)
#define CONVERT_HAS_CONNECT       (1u << 1)
#define CONVERT_HAS_EXT_TCP_HDR   (1u << 2)
#define CONVERT_HAS_SUPPORTED_EXT (1u << 3)
#define CONVERT_HAS_COOKIE        (1u << 4)
#define CONVERT_HAS_ERROR         (1u << 5)
#define CONVERT_HAS_VERIFIED      (1u << 6)
#define CONVERT_HAS_SPEEDTEST     (1u << 7)

/* Byte slice pointing into the decoded buffer. */
struct convert_bytes {
	const uint8_t *p;
	uint16_t len;
};

struct convert_msg {
	uint16_t len;          /* bytes of header + TLVs; payload starts here */
	uint32_t present;      /* CONVERT_HAS_* */
	struct {
		uint16_t port;         /* host order */
		struct in6_addr addr;  /* IPv4 as ::ffff:a.b.c.d */
		struct convert_bytes tcp_opts; /* validated TCP options, up to EOL */
	} connect;
	struct convert_bytes cookie;
	struct convert_bytes ext_tcp_hdr;
	struct convert_bytes supported_ext; /* option kinds, zero padding removed */
	struct {
		uint8_t code;
		struct convert_bytes value; /* includes the TLV's padding */
	} error;
	struct {
		uint32_t max_record;   /* data bytes per record the sender takes */
	} verified;               /* only with CONVERT_HAS_VERIFIED (version 1) */
	struct {
		uint8_t direction;     /* CONVERT_SPEEDTEST_DOWN or _UP */
		uint8_t seconds;       /* 1..CONVERT_SPEEDTEST_MAX_S */
		struct convert_bytes value;  /* the TLV's 6 value bytes (for the cookie) */
	} speedtest;              /* only with CONVERT_HAS_SPEEDTEST */
};

/* Decoder limits and context. */
#define CONVERT_F_EOF (1u << 0) /* no more bytes will arrive on this stream */

struct convert_decode_opts {
	enum convert_role role;
	/* Largest message this side accepts, in bytes (4..1020); 0 = 1020. A
	 * longer total length is refused before any byte of it is buffered. */
	uint16_t max_len;
	unsigned flags; /* CONVERT_F_* */
};

/* Why a decode did not complete. On 0 (incomplete), only need is set; on
 * -EBADMSG, the Error TLV to answer with and a reason for logs and metrics. */
struct convert_diag {
	size_t need;          /* at least this many more bytes are needed */
	uint8_t code;         /* enum convert_error_code to answer with */
	uint8_t value_len;    /* 0..2 */
	uint8_t value[2];     /* Error TLV value (see convert_decode) */
	uint16_t offset;      /* byte offset of the offending field */
	const char *reason;   /* static string, never NULL after -EBADMSG */
};

/* Decode the Convert message at the start of buf[0..len).
 *
 * Returns:
 *   > 0       the message is complete and valid; the value is its length in
 *             bytes; *ret_msg is filled and points into buf.
 *   0         more bytes are needed; ret_diag->need >= 1 is how many at least.
 *   -EBADMSG  the message is invalid; ret_diag says which Error TLV to answer
 *             with. Error values: Unsupported Version carries the supported
 *             version (1); Unsupported Message carries the offending TLV type;
 *             Malformed carries nothing.
 *   -EINVAL   bad arguments.
 *
 * Never reads past buf+len, never loops on a zero length, never allocates.
 * Validation is complete before returning > 0: every TLV length, the Connect
 * TLV's TCP options, duplicates, and the TLVs allowed in that direction.
 * A request must carry a Connect or an Info TLV. */
int convert_decode(const uint8_t *buf, size_t len,
		   const struct convert_decode_opts *opts,
		   struct convert_msg *ret_msg, struct convert_diag *ret_diag);

/* Message writer. Usage:
 *   struct convert_writer w;
 *   convert_writer_init(&w, buf, sizeof(buf));
 *   convert_put_connect(&w, &addr, 80, NULL, 0);
 *   int n = convert_writer_finish(&w);   // length or -errno
 * The first error sticks: later puts do nothing and finish returns it.
 * -ENOBUFS: the buffer is too small; -EMSGSIZE: over CONVERT_MAX_LEN or a
 * TLV over 255 words; -EINVAL: invalid argument (for example malformed TCP
 * options in a Connect). */
struct convert_writer {
	uint8_t *buf;
	size_t cap;
	size_t len;
	int err;
};

void convert_writer_init(struct convert_writer *w, void *buf, size_t cap);
int convert_put_info(struct convert_writer *w);
int convert_put_connect(struct convert_writer *w, const struct in6_addr *addr,
			uint16_t port, const uint8_t *tcp_opts, size_t opts_len);
int convert_put_cookie(struct convert_writer *w, const void *data, size_t len);
int convert_put_ext_tcp_hdr(struct convert_writer *w, const void *hdr,
			    size_t len);
int convert_put_supported_ext(struct convert_writer *w, const uint8_t *kinds,
			      size_t n);
int convert_put_error(struct convert_writer *w, uint8_t code,
		      const void *value, size_t value_len);
/* Verified Stream, version 1; max_record >= CONVERT_VERIFIED_MIN_RECORD. */
int convert_put_verified(struct convert_writer *w, uint32_t max_record);
/* The Speed Test TLV; its 6 value bytes into value_out (NULL: not wanted),
 * which a client's cookie covers. */
int convert_put_speedtest(struct convert_writer *w, uint8_t direction, uint8_t seconds,
			  uint8_t value_out[CONVERT_SPEEDTEST_VALUE_LEN]);
/* Put a TLV of any type with raw value bytes (used by tests and for private
 * TLVs); the value is padded to a word boundary. */
int convert_put_raw(struct convert_writer *w, uint8_t type, const void *value,
		    size_t value_len);
int convert_writer_finish(struct convert_writer *w);

/* One-call encoders for the replies a converter sends. Return the length. */
int convert_encode_success(void *buf, size_t cap);
int convert_encode_error(void *buf, size_t cap, uint8_t code,
			 const void *value, size_t value_len);
/* The Error reply for a failed decode, from its diag. */
int convert_encode_diag(void *buf, size_t cap, const struct convert_diag *d);

/* Check TCP options as carried in a Connect TLV: each option is EOL (0),
 * NOP (1) or kind,len>=2,data within bounds. Returns the length up to and
 * excluding the first EOL, or -EINVAL with *ret_bad_off set. */
int convert_tcp_opts_check(const uint8_t *p, size_t len, size_t *ret_bad_off);

/* Names for logs and metrics; "unknown" for unassigned values. */
const char *convert_error_name(unsigned code);
const char *convert_tlv_name(unsigned type);

/* IPv4 <-> ::ffff:a.b.c.d. in_be is in network order. */
void convert_addr_from_v4(struct in6_addr *ret, uint32_t in_be);
int convert_addr_is_v4(const struct in6_addr *a);

#endif
