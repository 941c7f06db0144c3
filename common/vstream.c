#include "vstream.h"

#include <errno.h>
#include <stdbool.h>

#if defined(__x86_64__) || defined(__aarch64__)
#define VSTREAM_HW 1
#endif

static uint32_t table[8][256];
static bool table_ready;

/* Slicing-by-8 tables for the reflected polynomial 0x82F63B78. Built on
 * first use; a race between two first uses writes the same values. */
static void table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
		table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
	__atomic_store_n(&table_ready, true, __ATOMIC_RELEASE);
}

uint32_t vstream_crc_sw(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE))
		table_init();
	crc = ~crc;
	while (len >= 8) {
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
				     (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
		uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 |
			      (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;

		crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^
		      table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
		      table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
		      table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

/* The loop both instruction sets share: 8 bytes a step, then single bytes. */
#define CRC_HW_LOOP(T, c, p, len, step8, step1) do {	\
	while ((len) >= 8) {					\
		uint64_t v_;					\
								\
		memcpy(&v_, (p), 8);				\
		(c) = (T)step8((c), v_);			\
		(p) += 8;					\
		(len) -= 8;					\
	}							\
	while ((len)--)						\
		(c) = (T)step1((uint32_t)(c), *(p)++);		\
} while (0)

#if defined(__x86_64__)
#include <string.h>
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = ~crc;

	CRC_HW_LOOP(uint64_t, c, p, len, __builtin_ia32_crc32di, __builtin_ia32_crc32qi);
	return ~(uint32_t)c;
}

static bool have_hw(void)
{
	return __builtin_cpu_supports("sse4.2");
}
#elif defined(__aarch64__)
#include <string.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
__attribute__((target("+crc")))
static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint32_t c = ~crc;

	CRC_HW_LOOP(uint32_t, c, p, len, __builtin_aarch64_crc32cx, __builtin_aarch64_crc32cb);
	return ~c;
}

static bool have_hw(void)
{
	return getauxval(AT_HWCAP) & HWCAP_CRC32;
}
#endif

uint32_t vstream_crc(uint32_t crc, const void *data, size_t len)
{
#ifdef VSTREAM_HW
	static int hw = -1;   /* -1 unknown; a race sets the same value */

	if (hw < 0)
		hw = have_hw();
	if (hw)
		return crc_hw(crc, data, len);
#endif
	return vstream_crc_sw(crc, data, len);
}

int vstream_hdr_len(const uint8_t *p, uint32_t max)
{
	uint32_t len = (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];

	if (p[0] != VSTREAM_T_DATA || len == 0 || len > max)
		return -EBADMSG;
	return (int)len;
}
