/* UDP carrier cryptography (udpcrypt.h). */
#include "udpcrypt.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

static void hmac(const uint8_t secret[COOKIE_SECRET_LEN], const uint8_t *in, size_t n,
		 uint8_t out[UDPC_MAC_LEN])
{
	unsigned outlen = UDPC_MAC_LEN;

	/* HMAC-SHA256 with a 32-byte key over a few dozen bytes cannot fail
	 * short of a broken library; a zero MAC then never matches. */
	if (!HMAC(EVP_sha256(), secret, COOKIE_SECRET_LEN, in, n, out, &outlen))
		memset(out, 0, UDPC_MAC_LEN);
}

static const char hello_label[] = "mptcp-ha udp hello 1";
static const char accept_label[] = "mptcp-ha udp accept 2";
static const char reset_label[] = "mptcp-ha udp reset 2";
static const char proof_label[] = "mptcp-ha udp reset proof 1";
static const char token_label[] = "mptcp-ha udp token 1";
static const char up_label[] = "mptcp-ha udp up 1";
static const char down_label[] = "mptcp-ha udp down 1";

void udpcrypt_hello_mac(const uint8_t secret[COOKIE_SECRET_LEN], const uint8_t *buf,
			uint8_t out[UDPC_MAC_LEN])
{
	uint8_t in[sizeof(hello_label) - 1 + UDPC_HELLO_LEN - UDPC_MAC_LEN];

	memcpy(in, hello_label, sizeof(hello_label) - 1);
	memcpy(in + sizeof(hello_label) - 1, buf, UDPC_HELLO_LEN - UDPC_MAC_LEN);
	hmac(secret, in, sizeof(in), out);
}

void udpcrypt_accept_mac(const uint8_t secret[COOKIE_SECRET_LEN], const uint8_t *buf,
			 const uint8_t nonce_c[UDPC_NONCE_LEN], uint8_t out[UDPC_ACCEPT_MAC_LEN])
{
	uint8_t in[sizeof(accept_label) - 1 + UDPC_NONCE_LEN + UDPC_ACCEPT_LEN - UDPC_ACCEPT_MAC_LEN];
	uint8_t mac[UDPC_MAC_LEN];
	size_t n = 0;

	memcpy(in, accept_label, sizeof(accept_label) - 1);
	n += sizeof(accept_label) - 1;
	memcpy(in + n, buf, UDPC_HDR_LEN);
	n += UDPC_HDR_LEN;
	memcpy(in + n, nonce_c, UDPC_NONCE_LEN);
	n += UDPC_NONCE_LEN;
	/* The server nonce, the sealed token and the box address. */
	memcpy(in + n, buf + UDPC_HDR_LEN, UDPC_ACCEPT_LEN - UDPC_ACCEPT_MAC_LEN - UDPC_HDR_LEN);
	n += UDPC_ACCEPT_LEN - UDPC_ACCEPT_MAC_LEN - UDPC_HDR_LEN;
	hmac(secret, in, n, mac);
	memcpy(out, mac, UDPC_ACCEPT_MAC_LEN);
}

bool udpcrypt_mac_equal(const uint8_t *a, const uint8_t *b)
{
	return CRYPTO_memcmp(a, b, UDPC_MAC_LEN) == 0;
}

bool udpcrypt_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

int udpcrypt_reset_token(const uint8_t *key, size_t klen, const void *ident, size_t identlen,
			 uint32_t sid, uint8_t out[UDPC_TOKEN_LEN])
{
	uint8_t in[sizeof(reset_label) - 1 + 128 + 4], mac[EVP_MAX_MD_SIZE];
	size_t n = sizeof(reset_label) - 1;
	unsigned ml = 0;

	if (identlen > 128)
		return -EINVAL;
	memcpy(in, reset_label, n);
	memcpy(in + n, ident, identlen);
	n += identlen;
	put32(in + n, sid);
	n += 4;
	if (!HMAC(EVP_sha256(), key, (int)klen, in, n, mac, &ml) || ml < UDPC_TOKEN_LEN)
		return -EIO;
	memcpy(out, mac, UDPC_TOKEN_LEN);
	return 0;
}

int udpcrypt_reset_proof(const uint8_t token[UDPC_TOKEN_LEN], uint32_t sid, uint64_t pn,
			 const uint8_t tag[UDPC_TAG_LEN], uint8_t out[UDPC_TOKEN_LEN])
{
	uint8_t in[sizeof(proof_label) - 1 + 12 + UDPC_TAG_LEN], mac[EVP_MAX_MD_SIZE];
	size_t n = sizeof(proof_label) - 1;
	unsigned ml = 0;

	memcpy(in, proof_label, n);
	put32(in + n, sid);
	put32(in + n + 4, (uint32_t)(pn >> 32));
	put32(in + n + 8, (uint32_t)pn);
	n += 12;
	memcpy(in + n, tag, UDPC_TAG_LEN);
	n += UDPC_TAG_LEN;
	if (!HMAC(EVP_sha256(), token, UDPC_TOKEN_LEN, in, n, mac, &ml) || ml < UDPC_TOKEN_LEN)
		return -EIO;
	memcpy(out, mac, UDPC_TOKEN_LEN);
	return 0;
}

void udpcrypt_token_seal(const uint8_t down[UDPC_KEY_LEN], uint8_t token[UDPC_TOKEN_LEN])
{
	uint8_t pad[UDPC_MAC_LEN];

	hmac(down, (const uint8_t *)token_label, sizeof(token_label) - 1, pad);
	for (unsigned i = 0; i < UDPC_TOKEN_LEN; i++)
		token[i] ^= pad[i];
}

static void derive(const uint8_t secret[COOKIE_SECRET_LEN], const char *label, size_t llen,
		   const uint8_t *nc, const uint8_t *ns, uint32_t sid, uint8_t out[UDPC_KEY_LEN])
{
	uint8_t in[32 + 2 * UDPC_NONCE_LEN + 4];
	size_t n = 0;

	memcpy(in, label, llen);
	n += llen;
	memcpy(in + n, nc, UDPC_NONCE_LEN);
	n += UDPC_NONCE_LEN;
	memcpy(in + n, ns, UDPC_NONCE_LEN);
	n += UDPC_NONCE_LEN;
	in[n++] = (uint8_t)(sid >> 24);
	in[n++] = (uint8_t)(sid >> 16);
	in[n++] = (uint8_t)(sid >> 8);
	in[n++] = (uint8_t)sid;
	hmac(secret, in, n, out);
}

void udpcrypt_session_keys(const uint8_t secret[COOKIE_SECRET_LEN],
			   const uint8_t nonce_c[UDPC_NONCE_LEN],
			   const uint8_t nonce_s[UDPC_NONCE_LEN], uint32_t sid,
			   uint8_t up[UDPC_KEY_LEN], uint8_t down[UDPC_KEY_LEN])
{
	derive(secret, up_label, sizeof(up_label) - 1, nonce_c, nonce_s, sid, up);
	derive(secret, down_label, sizeof(down_label) - 1, nonce_c, nonce_s, sid, down);
}

int udpcrypt_random(void *p, size_t n)
{
	return RAND_bytes(p, (int)n) == 1 ? 0 : -EIO;
}

int udpc_aead_init(struct udpc_aead *a, const uint8_t key[UDPC_KEY_LEN], int enc)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

	a->ctx = NULL;
	if (!c)
		return -ENOMEM;
	if (EVP_CipherInit_ex(c, EVP_chacha20_poly1305(), NULL, key, NULL, enc) != 1) {
		EVP_CIPHER_CTX_free(c);
		return -ENOMEM;
	}
	a->ctx = c;
	a->enc = enc;
	return 0;
}

void udpc_aead_free(struct udpc_aead *a)
{
	EVP_CIPHER_CTX_free(a->ctx);
	a->ctx = NULL;
}

static void nonce_of(uint64_t pn, uint8_t iv[12])
{
	memset(iv, 0, 4);
	for (int i = 0; i < 8; i++)
		iv[4 + i] = (uint8_t)(pn >> (56 - 8 * i));
}

int udpc_seal(struct udpc_aead *a, uint64_t pn, uint8_t *buf, size_t len)
{
	EVP_CIPHER_CTX *c = a->ctx;
	uint8_t iv[12];
	int n, f;

	if (!c || !a->enc || len < UDPC_HDR_LEN || len > INT32_MAX)
		return -EIO;
	nonce_of(pn, iv);
	if (EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, 1) != 1 ||
	    EVP_CipherUpdate(c, NULL, &n, buf, UDPC_HDR_LEN) != 1 ||
	    EVP_CipherUpdate(c, buf + UDPC_HDR_LEN, &n, buf + UDPC_HDR_LEN,
			     (int)(len - UDPC_HDR_LEN)) != 1 ||
	    EVP_CipherFinal_ex(c, buf + UDPC_HDR_LEN + n, &f) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, UDPC_TAG_LEN, buf + len) != 1)
		return -EIO;
	return (int)(len + UDPC_TAG_LEN);
}

int udpc_open(struct udpc_aead *a, uint64_t pn, uint8_t *buf, size_t len)
{
	EVP_CIPHER_CTX *c = a->ctx;
	uint8_t iv[12];
	int n, f;
	size_t body;

	if (!c || a->enc || len < UDPC_HDR_LEN + UDPC_TAG_LEN || len > INT32_MAX)
		return -EBADMSG;
	body = len - UDPC_HDR_LEN - UDPC_TAG_LEN;
	nonce_of(pn, iv);
	if (EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, 0) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, UDPC_TAG_LEN,
				buf + len - UDPC_TAG_LEN) != 1 ||
	    EVP_CipherUpdate(c, NULL, &n, buf, UDPC_HDR_LEN) != 1 ||
	    EVP_CipherUpdate(c, buf + UDPC_HDR_LEN, &n, buf + UDPC_HDR_LEN, (int)body) != 1 ||
	    EVP_CipherFinal_ex(c, buf + UDPC_HDR_LEN + n, &f) != 1)
		return -EBADMSG;
	return (int)body;
}
