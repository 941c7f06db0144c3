/* libFuzzer harness for the metrics server's request parser, the one parser
 * of network bytes in common/metrics.c. The input is what a client sent.
 * Beyond ASan's "no crash, no read past the buffer" it checks the contract:
 *  - the result is 0, -EAGAIN or -EINVAL;
 *  - -EAGAIN exactly when no blank line ends the head yet, and then every
 *    prefix of the input is -EAGAIN too (more bytes never un-complete it);
 *  - on 0: method is 1-7 capital letters and path 1-255 printable ASCII
 *    bytes starting with '/', no '?', both NUL-terminated, and both appear
 *    in the request line as sent (a NUL inside a method was the first
 *    finding);
 *  - parsing is deterministic;
 * and of http_parse (the agent's page server), on the same input:
 *  - the same result, method and path;
 *  - the query is printable ASCII and follows "PATH?" in the request line;
 *  - a cookie or bearer token is 1-64 of [A-Za-z0-9_-] and appears in the
 *    request after "gwa=" or "Bearer " followed by a delimiter. */
#include "metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

static bool has_blank_line(const char *s, size_t n)
{
	for (size_t k = 0; k + 1 < n; k++)
		if ((s[k] == '\n' && s[k + 1] == '\n') ||
		    (k + 3 < n && !memcmp(s + k, "\r\n\r\n", 4)))
			return true;
	return false;
}

static bool token_chars(const char *t)
{
	size_t n = strlen(t);

	if (n < 1 || n > HTTP_TOKEN_MAX)
		return false;
	for (size_t k = 0; k < n; k++)
		if (!((t[k] >= 'a' && t[k] <= 'z') || (t[k] >= 'A' && t[k] <= 'Z') ||
		      (t[k] >= '0' && t[k] <= '9') || t[k] == '_' || t[k] == '-'))
			return false;
	return true;
}

/* prefix + t, then a delimiter or the end, somewhere in req. */
static bool shown_after(const char *req, size_t size, const char *prefix, const char *t)
{
	char want[HTTP_TOKEN_MAX + 16];
	size_t wl = (size_t)snprintf(want, sizeof(want), "%s%s", prefix, t);

	for (const char *p = req; p && (size_t)(p - req) + wl <= size;
	     p = memmem(p + 1, size - (size_t)(p + 1 - req), want, wl)) {
		if (memcmp(p, want, wl))
			continue;
		if ((size_t)(p - req) + wl == size)
			return true;
		char d = p[wl];
		if (d == ';' || d == ' ' || d == '\r' || d == '\n')
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *req = calloc(1, size ? size : 1);
	char method[8], path[256], m2[8], p2[256];
	int r, r2;

	if (!req)
		return 0;
	if (size)
		memcpy(req, data, size);
	memset(method, 'x', sizeof(method));
	memset(path, 'x', sizeof(path));
	r = metrics_http_parse(req, size, method, path);
	REQUIRE(r == 0 || r == -EAGAIN || r == -EINVAL);
	REQUIRE((r == -EAGAIN) == !has_blank_line(req, size));
	if (r == -EAGAIN && size > 0)
		REQUIRE(metrics_http_parse(req, size - 1, m2, p2) == -EAGAIN);
	if (r == 0) {
		size_t ml = strnlen(method, sizeof(method)), pl = strnlen(path, sizeof(path));

		REQUIRE(ml >= 1 && ml <= 7 && pl >= 1 && pl <= 255 && path[0] == '/');
		REQUIRE(!strchr(path, '?'));
		for (size_t k = 0; k < ml; k++)
			REQUIRE(method[k] >= 'A' && method[k] <= 'Z');
		for (size_t k = 0; k < pl; k++)
			REQUIRE((unsigned char)path[k] >= 0x21 && (unsigned char)path[k] <= 0x7e);
		REQUIRE(size > ml && !memcmp(req, method, ml) && req[ml] == ' ');
		REQUIRE(size > ml + pl && !memcmp(req + ml + 1, path, pl));
	}
	{
		struct http_req h;
		int rh = http_parse(req, size, &h);

		REQUIRE(rh == r);
		if (rh == 0) {
			size_t ml = strlen(h.method), pl = strlen(h.path), ql = strlen(h.query);

			REQUIRE(!strcmp(h.method, method) && !strcmp(h.path, path));
			for (size_t k = 0; k < ql; k++)
				REQUIRE((unsigned char)h.query[k] >= 0x21 &&
					(unsigned char)h.query[k] <= 0x7e);
			if (ql)
				REQUIRE(size > ml + 1 + pl + 1 + ql && req[ml + 1 + pl] == '?' &&
					!memcmp(req + ml + 2 + pl, h.query, ql));
			if (h.cookie[0])
				REQUIRE(token_chars(h.cookie) && shown_after(req, size, "gwa=", h.cookie));
			if (h.bearer[0])
				REQUIRE(token_chars(h.bearer) &&
					shown_after(req, size, "Bearer ", h.bearer));
			if (h.xrw)
				REQUIRE(memmem(req, size, "gw-agent", 8) != NULL);
		}
	}
	r2 = metrics_http_parse(req, size, m2, p2);
	REQUIRE(r2 == r);
	if (r == 0)
		REQUIRE(!strcmp(m2, method) && !strcmp(p2, path));
	free(req);
	return 0;
}
