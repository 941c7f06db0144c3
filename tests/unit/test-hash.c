/* common/hash: SipHash-2-4 against the published test vectors of its
 * authors (key 00 01 .. 0f, messages 00 01 .. of every length; lengths 0
 * to 16 cover every tail, 31 and 63 longer ones), and hash_key_random. */
#include "hash.h"
#include "check.h"

static void test_vectors(void)
{
	static const struct { size_t len; uint64_t want; } v[] = {
		{ 0, 0x726fdb47dd0e0e31ull }, { 1, 0x74f839c593dc67fdull },
		{ 2, 0x0d6c8009d9a94f5aull }, { 3, 0x85676696d7fb7e2dull },
		{ 4, 0xcf2794e0277187b7ull }, { 5, 0x18765564cd99a68dull },
		{ 6, 0xcbc9466e58fee3ceull }, { 7, 0xab0200f58b01d137ull },
		{ 8, 0x93f5f5799a932462ull }, { 9, 0x9e0082df0ba9e4b0ull },
		{ 10, 0x7a5dbbc594ddb9f3ull }, { 11, 0xf4b32f46226bada7ull },
		{ 12, 0x751e8fbc860ee5fbull }, { 13, 0x14ea5627c0843d90ull },
		{ 14, 0xf723ca908e7af2eeull }, { 15, 0xa129ca6149be45e5ull },
		{ 16, 0x3f2acc7f57c29bdbull }, { 31, 0x32d892fad841c342ull },
		{ 63, 0x958a324ceb064572ull },
	};
	struct hash_key k = { .k0 = 0x0706050403020100ull, .k1 = 0x0f0e0d0c0b0a0908ull };
	uint8_t msg[64];

	for (unsigned i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)i;
	for (unsigned i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (hash_siphash24(&k, msg, v[i].len) != v[i].want) {
			check_failed++;
			fprintf(stderr, "length %zu: %016llx, want %016llx\n", v[i].len,
				(unsigned long long)hash_siphash24(&k, msg, v[i].len),
				(unsigned long long)v[i].want);
		}
}

static void test_keys(void)
{
	struct hash_key a, b;
	const char m[] = "203.0.113.7";

	CHECK_INT(hash_key_random(&a), 0);
	CHECK_INT(hash_key_random(&b), 0);
	CHECK(a.k0 != b.k0 || a.k1 != b.k1);
	/* Another key, another hash: what keeps chosen inputs from colliding. */
	CHECK(hash_siphash24(&a, m, sizeof(m)) != hash_siphash24(&b, m, sizeof(m)));
	CHECK(hash_siphash24(&a, m, sizeof(m)) == hash_siphash24(&a, m, sizeof(m)));
}

int main(void)
{
	RUN(test_vectors);
	RUN(test_keys);
	return check_finish();
}
