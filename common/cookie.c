#include "cookie.h"
#include "opts.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char label[] = "mptcp-ha cookie 1";

/* TCP options in a Connect TLV: at most a whole Convert message. */
#define OPTS_MAX 1020

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* HMAC over the label, the 18 header bytes of c, the client address (zeros
 * when NAT) and the destination. */
static int mac(const struct cookie_key *k, const uint8_t c[18], const struct in6_addr *client,
	       const struct cookie_dest *dst, uint8_t out[32])
{
	uint8_t in[sizeof(label) - 1 + 18 + 16 + 2 + 16 + OPTS_MAX];
	size_t n = 0;
	unsigned outlen = 32;

	memcpy(in + n, label, sizeof(label) - 1);
	n += sizeof(label) - 1;
	memcpy(in + n, c, 18);
	n += 18;
	if (client && !(c[1] & COOKIE_F_NAT))
		memcpy(in + n, client, 16);
	else
		memset(in + n, 0, 16);
	n += 16;
	if (dst) {
		if (dst->opts_len > OPTS_MAX)
			return -EMSGSIZE;
		in[n++] = (uint8_t)(dst->port >> 8);
		in[n++] = (uint8_t)dst->port;
		memcpy(in + n, &dst->addr, 16);
		n += 16;
		if (dst->opts_len)
			memcpy(in + n, dst->opts, dst->opts_len);
		n += dst->opts_len;
	} else {
		memset(in + n, 0, 18);
		n += 18;
	}
	if (!HMAC(EVP_sha256(), k->secret, COOKIE_SECRET_LEN, in, n, out, &outlen) || outlen != 32)
		return -EIO;
	return 0;
}

int cookie_make(uint8_t out[COOKIE_LEN], const struct cookie_key *k, uint8_t flags,
		uint32_t now, const struct in6_addr *client, const struct cookie_dest *dst)
{
	int r;

	out[0] = COOKIE_FORMAT;
	out[1] = flags;
	put32(out + 2, k->id);
	put32(out + 6, now);
	if (RAND_bytes(out + 10, 8) != 1)
		return -EIO;
	r = mac(k, out, client, dst, out + 18);
	return r < 0 ? r : COOKIE_LEN;
}

const char *cookie_reason_name(enum cookie_reason r)
{
	static const char *const names[COOKIE_REASON_MAX] = {
		"ok", "missing", "malformed", "unknown_key", "scope", "nat", "stale",
		"bad_mac", "replayed",
	};

	return (unsigned)r < COOKIE_REASON_MAX ? names[r] : "unknown";
}

const struct cookie_key *cookie_keys_find(const struct cookie_keys *k, uint32_t id)
{
	for (unsigned i = 0; i < k->n; i++)
		if (k->k[i].id == id)
			return &k->k[i];
	return NULL;
}

enum cookie_reason cookie_check(const struct cookie_keys *keys, const uint8_t *p, size_t len,
				const struct in6_addr *client, const struct cookie_dest *dst,
				uint32_t now, struct cookie_fields *ret)
{
	const struct cookie_key *k;
	uint8_t want[32];
	bool in_scope;
	uint32_t t;

	if (len < COOKIE_LEN || p[0] != COOKIE_FORMAT || (p[1] & ~COOKIE_F_NAT))
		return COOKIE_MALFORMED;
	for (size_t i = COOKIE_LEN; i < len; i++)  /* TLV padding */
		if (p[i])
			return COOKIE_MALFORMED;
	k = cookie_keys_find(keys, get32(p + 2));
	if (!k)
		return COOKIE_UNKNOWN_KEY;
	in_scope = k->any;
	for (unsigned i = 0; i < k->nscope && !in_scope; i++)
		in_scope = addr_prefix_match(&k->scope[i], client);
	if (!in_scope)
		return COOKIE_SCOPE;
	if ((p[1] & COOKIE_F_NAT) && !k->nat)
		return COOKIE_NAT;
	t = get32(p + 6);
	if ((t > now ? t - now : now - t) > COOKIE_MAX_AGE_S)
		return COOKIE_STALE;
	if (mac(k, p, client, dst, want) < 0 || CRYPTO_memcmp(want, p + 18, 32) != 0)
		return COOKIE_BAD_MAC;
	ret->flags = p[1];
	ret->kid = k->id;
	ret->time = t;
	memcpy(&ret->nonce, p + 10, 8);
	return COOKIE_OK;
}

void cookie_keys_free(struct cookie_keys *k)
{
	if (!k->k)
		return;
	for (unsigned i = 0; i < k->n; i++) {
		OPENSSL_cleanse(k->k[i].secret, COOKIE_SECRET_LEN);
		free(k->k[i].scope);
	}
	free(k->k);
	k->k = NULL;
	k->n = 0;
}

struct errs {
	char *buf;
	size_t len, used;
	unsigned n;
};

__attribute__((format(printf, 4, 5)))
static void err_add(struct errs *e, const char *path, unsigned line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!e->buf || e->n >= 32 || e->used >= e->len)
		return;
	if (line)
		n = snprintf(e->buf + e->used, e->len - e->used, "%s: line %u: ", path, line);
	else
		n = snprintf(e->buf + e->used, e->len - e->used, "%s: ", path);
	if (n > 0 && (size_t)n < e->len - e->used)
		e->used += (size_t)n;
	va_start(ap, fmt);
	n = vsnprintf(e->buf + e->used, e->len - e->used, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < e->len - e->used)
		e->used += (size_t)n;
	if (e->used + 1 < e->len) {
		e->buf[e->used++] = '\n';
		e->buf[e->used] = 0;
	}
	e->n++;
}

/* One line (NUL-terminated, comment removed) into k. 0, or -EINVAL after
 * adding the reason to e. */
static int parse_line(char *s, const char *path, unsigned line, struct cookie_key *k,
		      struct errs *e)
{
	char *save = NULL, *tok, *end;
	unsigned long long id;
	size_t n;

	memset(k, 0, sizeof(*k));
	tok = strtok_r(s, " \t\r", &save);
	errno = 0;
	id = strtoull(tok, &end, 10);
	if (*end || errno || id == 0 || id > 0xffffffffULL || tok[0] == '-') {
		/* Never echo what may be a secret in the wrong place. */
		err_add(e, path, line, "the key id %s%s%s is not a number from 1 to 4294967295",
			strlen(tok) < 16 ? "\"" : "", strlen(tok) < 16 ? tok : "(first word)",
			strlen(tok) < 16 ? "\"" : "");
		return -EINVAL;
	}
	k->id = (uint32_t)id;
	tok = strtok_r(NULL, " \t\r", &save);
	if (!tok) {
		err_add(e, path, line, "%s", "the secret is missing (64 hex digits after the key id)");
		return -EINVAL;
	}
	n = strlen(tok);
	if (n != 2 * COOKIE_SECRET_LEN) {
		err_add(e, path, line, "the secret has %zu characters; it must be 64 hex digits "
			"(32 random bytes: openssl rand -hex 32)", n);
		return -EINVAL;
	}
	if (opt_hex_bytes(tok, k->secret, COOKIE_SECRET_LEN) < 0) {
		err_add(e, path, line, "%s", "the secret has a character that is not a hex digit");
		return -EINVAL;
	}
	OPENSSL_cleanse(tok, n);
	while ((tok = strtok_r(NULL, " \t\r", &save))) {
		struct addr_prefix pfx, *sc;

		if (!strcmp(tok, "any")) {
			k->any = true;
		} else if (!strcmp(tok, "nat")) {
			k->nat = true;
		} else if (addr_parse_prefix(tok, &pfx) == 0) {
			sc = realloc(k->scope, (k->nscope + 1) * sizeof(*sc));
			if (!sc) {
				free(k->scope);
				return -ENOMEM;
			}
			sc[k->nscope++] = pfx;
			k->scope = sc;
		} else {
			if (strlen(tok) < 44)
				err_add(e, path, line, "\"%s\" is not a prefix, \"any\" or \"nat\"", tok);
			else
				err_add(e, path, line, "a word of %zu characters after the secret is not a "
					"prefix, \"any\" or \"nat\"", strlen(tok));
			free(k->scope);
			k->scope = NULL;
			return -EINVAL;
		}
	}
	if (!k->nscope)
		k->any = true;
	return 0;
}

int cookie_keys_load(const char *path, struct cookie_keys *ret, char *errbuf, size_t errlen)
{
	struct errs e = { .buf = errbuf, .len = errlen };
	struct cookie_keys ks = { 0 };
	struct stat st;
	char *line = NULL;
	size_t cap = 0;
	unsigned no = 0;
	int fd, r = 0;
	FILE *f;

	if (errbuf && errlen)
		errbuf[0] = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		r = -errno;
		err_add(&e, path, 0, "cannot open: %s", strerror(-r));
		return -EINVAL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		err_add(&e, path, 0, "%s", "not a regular file");
		return -EINVAL;
	}
	if (st.st_mode & 077) {
		close(fd);
		err_add(&e, path, 0, "holds secrets but its mode is %04o: make it readable by its owner "
			"only (chmod 600)", (unsigned)(st.st_mode & 07777));
		return -EINVAL;
	}
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	while (getline(&line, &cap, f) >= 0) {
		struct cookie_key k, *nk;
		char *s = line;

		no++;
		s[strcspn(s, "#\n")] = 0;
		s += strspn(s, " \t\r");
		if (!*s)
			continue;
		if (parse_line(s, path, no, &k, &e) < 0) {
			r = -EINVAL;
			continue;
		}
		if (cookie_keys_find(&ks, k.id)) {
			err_add(&e, path, no, "key id %u is used twice", k.id);
			free(k.scope);
			r = -EINVAL;
			continue;
		}
		nk = realloc(ks.k, (ks.n + 1) * sizeof(*nk));
		if (!nk) {
			free(k.scope);
			r = -ENOMEM;
			break;
		}
		ks.k = nk;
		ks.k[ks.n++] = k;
		OPENSSL_cleanse(&k, sizeof(k));
	}
	if (line) {
		OPENSSL_cleanse(line, cap);
		free(line);
	}
	fclose(f);
	if (r == 0 && ks.n == 0) {
		err_add(&e, path, 0, "%s", "has no key (a line: ID SECRET [any | PREFIX ...] [nat])");
		r = -EINVAL;
	}
	if (r < 0) {
		cookie_keys_free(&ks);
		return r;
	}
	*ret = ks;
	return (int)ks.n;
}
