/* Verified stream: the records our agent and concentrator exchange over
 * MPTCP when both offered it in the RFC 8803 handshake (the private-use
 * Verified Stream TLV, proto/convert.h). It exists because the kernel's
 * MPTCP has been seen handing a receiver a run of wrong bytes
 * (docs/kernel-defects.md): with records, such bytes are caught before they
 * are passed on, and the flow is reset instead of delivered wrong.
 *
 * Each direction is a sequence of records:
 *
 *   | type (u8) = 1 | data length (u24) | data | CRC32C (u32) |
 *
 * all in network order. The CRC32C runs over the whole direction's data so
 * far (it is chained from record to record, starting at 0), so a record
 * that is intact in itself but in the wrong place fails as well. A record's
 * data is 1 byte up to the receiver's max_record (from its TLV). Anything
 * else (another type, a zero or oversized length, a stream that ends inside
 * a record) is a broken stream, and a wrong CRC is damage: either way the
 * flow is reset, and counted.
 *
 * Pure: no I/O. */
#ifndef COMMON_VSTREAM_H
#define COMMON_VSTREAM_H

#include <stddef.h>
#include <stdint.h>

#define VSTREAM_HDR      4
#define VSTREAM_TAG      4
#define VSTREAM_OVERHEAD (VSTREAM_HDR + VSTREAM_TAG)
#define VSTREAM_T_DATA   1
#define VSTREAM_MAX_DATA 0xffffffu

/* CRC-32C (Castagnoli, reflected, as iSCSI and SCTP), continuing from crc
 * (0 to start; the usual pre- and post-inversion are inside). Uses the
 * CPU's CRC32C instruction where there is one (x86-64 SSE4.2, ARMv8 CRC). */
uint32_t vstream_crc(uint32_t crc, const void *data, size_t len);
/* The portable table version, for tests to compare with. */
uint32_t vstream_crc_sw(uint32_t crc, const void *data, size_t len);

static inline void vstream_put_hdr(uint8_t *p, uint32_t len)
{
	p[0] = VSTREAM_T_DATA;
	p[1] = (uint8_t)(len >> 16);
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
}

static inline void vstream_put_tag(uint8_t *p, uint32_t crc)
{
	p[0] = (uint8_t)(crc >> 24);
	p[1] = (uint8_t)(crc >> 16);
	p[2] = (uint8_t)(crc >> 8);
	p[3] = (uint8_t)crc;
}

static inline uint32_t vstream_get_tag(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The data length a record header announces, or -EBADMSG when it is not a
 * data record of 1..max bytes. */
int vstream_hdr_len(const uint8_t *p, uint32_t max);

#endif
