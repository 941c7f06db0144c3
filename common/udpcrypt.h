/* The UDP carrier's cryptography (proto/udpc.h has the format): HELLO and
 * ACCEPT authenticators, session keys, and DATA/PING sealing with
 * ChaCha20-Poly1305 (OpenSSL). ChaCha20 because home routers' CPUs rarely
 * have AES instructions, where it is several times faster than AES-GCM.
 *
 * Without gateway keys (an address allow-list only) both sides use a secret
 * of 32 zero bytes and key id 0: the session keys then rest on the two
 * nonces, which only the two ends saw, so a forged source still cannot
 * write into a session it did not open. */
#ifndef COMMON_UDPCRYPT_H
#define COMMON_UDPCRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "cookie.h"
#include "udpc.h"

#define UDPC_KEY_LEN 32

/* HELLO's MAC: buf is the whole HELLO (its last 32 bytes are not read). */
void udpcrypt_hello_mac(const uint8_t secret[COOKIE_SECRET_LEN], const uint8_t *buf,
			uint8_t out[UDPC_MAC_LEN]);
/* ACCEPT's MAC (UDPC_ACCEPT_MAC_LEN bytes): buf is the whole ACCEPT (its
 * last UDPC_ACCEPT_MAC_LEN bytes are not read); nonce_c the HELLO's nonce. */
void udpcrypt_accept_mac(const uint8_t secret[COOKIE_SECRET_LEN], const uint8_t *buf,
			 const uint8_t nonce_c[UDPC_NONCE_LEN], uint8_t out[UDPC_ACCEPT_MAC_LEN]);
/* Constant-time comparison of two MACs (UDPC_MAC_LEN bytes): true when equal. */
bool udpcrypt_mac_equal(const uint8_t *a, const uint8_t *b);
/* The same for n bytes. */
bool udpcrypt_equal(const uint8_t *a, const uint8_t *b, size_t n);
/* A session's reset token under the concentrator's reset secret (key of
 * klen bytes) and the box's identity (ident[0..identlen), may be empty):
 * 0, or -EIO (then nothing may be sent with it). */
int udpcrypt_reset_token(const uint8_t *key, size_t klen, const void *ident, size_t identlen,
			 uint32_t sid, uint8_t out[UDPC_TOKEN_LEN]);
/* What a RESET carries instead of the token itself: a MAC under the token
 * over the session id, packet number and tag of the datagram it answers,
 * which only that datagram's sender can check (and nobody can collect in
 * advance). 0 or -EIO. */
int udpcrypt_reset_proof(const uint8_t token[UDPC_TOKEN_LEN], uint32_t sid, uint64_t pn,
			 const uint8_t tag[UDPC_TAG_LEN], uint8_t out[UDPC_TOKEN_LEN]);
/* XORs token with what the session's down key makes of it: seals it in
 * an ACCEPT, and opens it again. */
void udpcrypt_token_seal(const uint8_t down[UDPC_KEY_LEN], uint8_t token[UDPC_TOKEN_LEN]);
/* The session's keys: up (agent to concentrator) and down. */
void udpcrypt_session_keys(const uint8_t secret[COOKIE_SECRET_LEN],
			   const uint8_t nonce_c[UDPC_NONCE_LEN],
			   const uint8_t nonce_s[UDPC_NONCE_LEN], uint32_t sid,
			   uint8_t up[UDPC_KEY_LEN], uint8_t down[UDPC_KEY_LEN]);
/* Random bytes (OpenSSL's generator): 0 or -EIO. */
int udpcrypt_random(void *p, size_t n);

/* One direction's sealing or opening state. */
struct udpc_aead {
	void *ctx;               /* EVP_CIPHER_CTX */
	int enc;
};
/* 0 or -ENOMEM. */
int udpc_aead_init(struct udpc_aead *a, const uint8_t key[UDPC_KEY_LEN], int enc);
void udpc_aead_free(struct udpc_aead *a);
/* Seal buf[UDPC_HDR_LEN..len) in place (the header, already written,
 * authenticated) and append the tag: buf must have room for len +
 * UDPC_TAG_LEN. pn is the header's. Returns the new length or -EIO. */
int udpc_seal(struct udpc_aead *a, uint64_t pn, uint8_t *buf, size_t len);
/* Open buf[0..len) in place: returns the plaintext's length after the
 * header (len - UDPC_HDR_LEN - UDPC_TAG_LEN), or -EBADMSG when the tag is
 * wrong (nothing may be used then). */
int udpc_open(struct udpc_aead *a, uint64_t pn, uint8_t *buf, size_t len);

#endif
