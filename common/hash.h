/* SipHash-2-4 (Aumasson and Bernstein): a keyed hash for tables whose keys
 * an attacker chooses (client addresses). With a secret random key the
 * attacker cannot make entries collide, so lookups stay O(1). */
#ifndef COMMON_HASH_H
#define COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

struct hash_key {
	uint64_t k0, k1;
};

/* A fresh random key (getrandom). 0 or -errno. */
int hash_key_random(struct hash_key *ret);
uint64_t hash_siphash24(const struct hash_key *k, const void *data, size_t len);

#endif
