/* The household's status page. A page server thread (common/metrics.c's,
 * one request at a time, 2 s to send it, 5 s to read the answer) on the
 * address web-listen names, usually the router's LAN address.
 *
 * Anyone on the LAN reaches it, so it asks for a token: 128 random bits in
 * a file (web-token-file) that only root reads; `gw-agent status` prints
 * the page's address with it. The first visit, /?token=T, sets a cookie
 * (HttpOnly, SameSite=Strict: another site's page cannot use it) and
 * redirects to /, so the token leaves the address bar. /status.json and
 * the speed test need the cookie (or "Authorization: Bearer T" for
 * scripts). The page's own files (/, /app.js, /app.css) are the same for
 * everyone and carry no data.
 *
 * /status.json is `gw-agent status --json`: the server asks the control
 * socket, as the command does, so the page and the command show the same
 * thing, made by the same code. */
#include "web.h"
#include "agent.h"
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define WEB_STATUS_MAX (4u << 20)     /* a status answer larger than this is cut */
#define WEB_STATUS_MS 3000

static bool token_chars(const char *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
		      (t[i] >= '0' && t[i] <= '9') || t[i] == '_' || t[i] == '-'))
			return false;
	return true;
}

/* The token file: one line, 16-64 of [A-Za-z0-9_-]. Made when missing. */
static int load_token(struct agent *a)
{
	const char *path = a->cfg.web_token_path;
	char buf[128];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0 && errno == ENOENT) {
		uint8_t rnd[16];
		char dir[sizeof(a->cfg.web_token_path)], *slash;

		/* Its directory (the state directory, by default) first. */
		snprintf(dir, sizeof(dir), "%s", path);
		slash = strrchr(dir, '/');
		if (slash && slash != dir) {
			*slash = '\0';
			if (mkdir(dir, 0700) < 0 && errno != EEXIST)
				return log_errno(-errno, "web: cannot make %s: %m", dir);
		}

		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			return log_errno(-EIO, "web: no random bytes for a token");
		for (unsigned i = 0; i < sizeof(rnd); i++)
			snprintf(buf + 2 * i, 3, "%02x", rnd[i]);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			return log_errno(-errno, "web: cannot make the token file %s: %m", path);
		if (write(fd, buf, 32) != 32 || write(fd, "\n", 1) != 1 || fsync(fd) < 0) {
			int e = -errno;

			close(fd);
			unlink(path);
			return log_errno(e ? e : -EIO, "web: cannot write the token file %s: %m", path);
		}
		close(fd);
		log_info("web: made a token for the page in %s", path);
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0)
		return log_errno(-errno, "web: token file %s: %m", path);
	{
		struct stat st;

		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
			close(fd);
			log_error("web: token file %s: not a regular file of mode 600 (it lets anyone "
				  "who reads it see the household's traffic)", path);
			return -EPERM;
		}
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return log_errno(-errno, "web: token file %s: %m", path);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	n = (ssize_t)strlen(buf);
	if (n < 16 || n > HTTP_TOKEN_MAX || !token_chars(buf, (size_t)n)) {
		log_error("web: token file %s: line 1: not 16-64 of A-Z, a-z, 0-9, _ and -", path);
		return -EINVAL;
	}
	memcpy(a->web_token, buf, (size_t)n + 1);
	return 0;
}

static bool token_ok(const struct agent *a, const char *t)
{
	size_t n = strlen(a->web_token);

	return t[0] && strlen(t) == n && CRYPTO_memcmp(t, a->web_token, n) == 0;
}

/* NAME's value in a query (a=1&token=x): into out, or false. */
static bool query_get(const char *q, const char *name, char *out, size_t len)
{
	size_t nl = strlen(name);

	for (const char *p = q; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		if (!strncmp(p, name, nl) && p[nl] == '=') {
			size_t vl = strcspn(p + nl + 1, "&");

			if (vl >= len)
				return false;
			memcpy(out, p + nl + 1, vl);
			out[vl] = '\0';
			return true;
		}
	}
	return false;
}

static void text(struct http_answer *ans, const char *status, const char *msg)
{
	ans->status = status;
	ans->type = "text/plain; charset=utf-8";
	mbuf_printf(&ans->b, "%s\n", msg);
}

/* gw-agent status --json, through the control socket. */
static int status_json(struct agent *a, struct mbuf *b)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	uint64_t deadline = log_now_ms() + WEB_STATUS_MS;
	char buf[16384];
	int fd;

	if (strlen(a->cfg.control_path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, a->cfg.control_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    sock_write_all_until(fd, "status json\n", 12, deadline) < 0) {
		int e = -errno;

		close(fd);
		return e ? e : -EIO;
	}
	for (;;) {
		ssize_t n = sock_read_until(fd, buf, sizeof(buf), deadline);

		if (n <= 0)
			break;
		if (b->len + (size_t)n > WEB_STATUS_MAX) {
			close(fd);
			return -EFBIG;
		}
		mbuf_printf(b, "%.*s", (int)n, buf);
	}
	close(fd);
	return b->len && !b->failed && b->s[0] == '{' ? 0 : -EIO;
}

static void handle(void *ctx, const struct http_req *req, struct http_answer *ans)
{
	struct agent *a = ctx;
	bool get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
	bool authed = token_ok(a, req->cookie) || token_ok(a, req->bearer);
	char qt[HTTP_TOKEN_MAX + 1];

	atomic_fetch_add(&a->web_requests, 1);
	/* No framing by other pages, no referrer (the first visit's URL has
	 * the token), scripts and styles from here only. */
	snprintf(ans->headers, sizeof(ans->headers),
		 "X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n"
		 "X-Content-Type-Options: nosniff\r\n"
		 "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'\r\n");
	if (get && !strcmp(req->path, "/") && query_get(req->query, "token", qt, sizeof(qt))) {
		if (!token_ok(a, qt)) {
			atomic_fetch_add(&a->web_refused, 1);
			text(ans, "403 Forbidden", "wrong token: `gw-agent status` on the router prints "
			     "this page's address with the right one");
			return;
		}
		ans->status = "303 See Other";
		ans->type = "text/plain";
		snprintf(ans->headers + strlen(ans->headers), sizeof(ans->headers) - strlen(ans->headers),
			 "Set-Cookie: gwa=%s; Path=/; HttpOnly; SameSite=Strict\r\nLocation: /\r\n",
			 a->web_token);
		return;
	}
	for (const struct web_asset *w = web_assets; w->path && get; w++) {
		const char *p = !strcmp(req->path, "/") ? "/index.html" : req->path;
		size_t l = strlen(w->path);

		if (strcmp(w->path, p))
			continue;
		ans->status = "200 OK";
		ans->type = l > 3 && !strcmp(w->path + l - 3, ".js") ? "text/javascript; charset=utf-8" :
			    l > 4 && !strcmp(w->path + l - 4, ".css") ? "text/css; charset=utf-8" :
			    "text/html; charset=utf-8";
		mbuf_printf(&ans->b, "%.*s", (int)w->len, (const char *)w->data);
		return;
	}
	if (!strcmp(req->path, "/status.json") || !strcmp(req->path, "/speedtest")) {
		if (!authed) {
			atomic_fetch_add(&a->web_refused, 1);
			text(ans, "403 Forbidden", "needs the page's token (its cookie, or "
			     "Authorization: Bearer TOKEN)");
			return;
		}
		if (!strcmp(req->path, "/status.json")) {
			int r;

			if (!get) {
				text(ans, "405 Method Not Allowed", "GET /status.json");
				return;
			}
			r = status_json(a, &ans->b);
			if (r < 0) {
				mbuf_free(&ans->b);
				ans->b = (struct mbuf){ 0 };
				text(ans, "503 Service Unavailable", "the agent's status is not available now");
				return;
			}
			ans->status = "200 OK";
			ans->type = "application/json";
			return;
		}
		if (strcmp(req->method, "POST")) {
			text(ans, "405 Method Not Allowed", "POST /speedtest?line=NAME");
			return;
		}
		/* Another site's page cannot send this header without the
		 * preflight we never answer: a cross-site form or a forged
		 * link cannot start a test with the household's cookie. */
		if (!req->xrw) {
			atomic_fetch_add(&a->web_refused, 1);
			text(ans, "403 Forbidden", "needs the header X-Requested-With: gw-agent");
			return;
		}
		{
			char line[48], why[160], sec[4];
			unsigned secs = SPEEDTEST_DEFAULT_S;
			int r;

			if (!query_get(req->query, "line", line, sizeof(line))) {
				text(ans, "400 Bad Request", "which line? POST /speedtest?line=NAME[&seconds=N]");
				return;
			}
			if (query_get(req->query, "seconds", sec, sizeof(sec))) {
				secs = (unsigned)atoi(sec);
				if (secs < 1 || secs > CONVERT_SPEEDTEST_MAX_S) {
					text(ans, "400 Bad Request", "seconds: 1 to 10");
					return;
				}
			}
			r = agent_speedtest_request(a, line, secs, why, sizeof(why));
			text(ans, r == 0 ? "202 Accepted" : r == -EBUSY ? "409 Conflict" :
				  r == -ENOENT ? "404 Not Found" : "503 Service Unavailable",
			     r == 0 ? "started" : why);
			return;
		}
	}
	text(ans, "404 Not Found", "not found");
}

int web_start(struct agent *a)
{
	char m[ADDR_STRLEN];
	int r;

	if (!a->cfg.web_len)
		return 0;
	if (!a->cfg.control_path[0]) {
		log_error("web: the page needs the control socket (control is \"\")");
		return -EINVAL;
	}
	r = load_token(a);
	if (r < 0)
		return r;
	r = http_server_start(&a->web, &a->cfg.web, a->cfg.web_len, handle, a);
	if (r < 0)
		return log_errno(r, "web: page on %s: %m",
				 addr_format((struct sockaddr *)&a->cfg.web, m));
	log_info("web: the household's page at http://%s/ (gw-agent status prints it with its token)",
		 addr_format((struct sockaddr *)&a->cfg.web, m));
	return 0;
}

void web_stop(struct agent *a)
{
	metrics_server_stop(&a->web);
}

void web_url(const struct agent *a, char *buf, size_t len)
{
	char m[ADDR_STRLEN];

	if (!a->cfg.web_len || !a->web.running) {
		snprintf(buf, len, "%s", "");
		return;
	}
	snprintf(buf, len, "http://%s/?token=%s", addr_format((const struct sockaddr *)&a->cfg.web, m),
		 a->web_token);
}
