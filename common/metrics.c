#include "metrics.h"

#include "addr.h"
#include "log.h"
#include "opts.h"
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

void mbuf_printf(struct mbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed)
		return;
	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if (b->s && (size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap - b->len <= (size_t)n)
			cap *= 2;
		char *s = realloc(b->s, cap);
		if (!s) {
			b->failed = true;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
}

void mbuf_free(struct mbuf *b)
{
	free(b->s);
	*b = (struct mbuf){ 0 };
}

void metrics_head(struct mbuf *b, const char *name, const char *type, const char *help)
{
	mbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_u64(struct mbuf *b, const char *name, const char *labels, uint64_t v)
{
	if (*labels)
		mbuf_printf(b, "%s{%s} %llu\n", name, labels, (unsigned long long)v);
	else
		mbuf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static const char *f64_text(double v, char buf[40])
{
	if (isnan(v))
		return "NaN";
	if (isinf(v))
		return v > 0 ? "+Inf" : "-Inf";
	snprintf(buf, 40, "%.9g", v);
	return buf;
}

void metrics_f64(struct mbuf *b, const char *name, const char *labels, double v)
{
	char t[40];

	if (*labels)
		mbuf_printf(b, "%s{%s} %s\n", name, labels, f64_text(v, t));
	else
		mbuf_printf(b, "%s %s\n", name, f64_text(v, t));
}

const char *metrics_label(const char *v, char *buf, size_t len)
{
	size_t o = 0;

	for (; *v && o + 3 < len; v++) {
		if (*v == '\\' || *v == '"') {
			buf[o++] = '\\';
			buf[o++] = *v;
		} else if (*v == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else {
			buf[o++] = *v;
		}
	}
	buf[o] = 0;
	return buf;
}

void metrics_hist_observe(struct metrics_hist *h, const double *bounds, unsigned n, double v)
{
	unsigned i = 0;

	while (i < n && v > bounds[i])
		i++;
	h->bucket[i]++;
	h->count++;
	h->sum += v;
}

void metrics_hist_add(struct metrics_hist *dst, const struct metrics_hist *src, unsigned n)
{
	for (unsigned i = 0; i <= n; i++)
		dst->bucket[i] += src->bucket[i];
	dst->count += src->count;
	dst->sum += src->sum;
}

void metrics_hist_write(struct mbuf *b, const char *name, const char *labels,
			const double *bounds, unsigned n, const struct metrics_hist *h)
{
	uint64_t cum = 0;
	char t[40];

	for (unsigned i = 0; i <= n; i++) {
		cum += h->bucket[i];
		mbuf_printf(b, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, *labels ? "," : "",
			    i < n ? f64_text(bounds[i], t) : "+Inf", (unsigned long long)cum);
	}
	/* The count is the +Inf bucket: the same number, read once. */
	if (*labels) {
		mbuf_printf(b, "%s_sum{%s} %s\n", name, labels, f64_text(h->sum, t));
		mbuf_printf(b, "%s_count{%s} %llu\n", name, labels, (unsigned long long)cum);
	} else {
		mbuf_printf(b, "%s_sum %s\n", name, f64_text(h->sum, t));
		mbuf_printf(b, "%s_count %llu\n", name, (unsigned long long)cum);
	}
}

int metrics_parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len)
{
	char buf[80];

	/* A bare port means loopback: metrics are not for the world unless the
	 * operator names an address. */
	if (*s && strspn(s, "0123456789") == strlen(s)) {
		snprintf(buf, sizeof(buf), "127.0.0.1:%s", s);
		s = buf;
	}
	return addr_parse_hostport(s, -1, ret, ret_len);
}

int metrics_opt_listen(const char *opt, const char *arg, struct sockaddr_storage *ret,
		       socklen_t *ret_len)
{
	if (!*arg) {
		*ret_len = 0;
		return 0;
	}
	if (metrics_parse_listen(arg, ret, ret_len) < 0)
		return opt_error(opt, arg, "is not PORT, ADDR:PORT or [ADDR6]:PORT");
	return 0;
}

static void respond(int fd, uint64_t until, const char *status, const char *type,
		    const char *body, size_t len, bool head)
{
	char hdr[256];
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n", status, type, len);

	if (sock_write_all_until(fd, hdr, (size_t)n, until) == 0 && !head)
		sock_write_all_until(fd, body, len, until);
}

void metrics_one(struct mbuf *b, const char *name, const char *type, const char *help,
		 uint64_t v)
{
	metrics_head(b, name, type, help);
	metrics_u64(b, name, "", v);
}

void metrics_parked(struct mbuf *b, const char *prefix, uint64_t parked, uint64_t bytes,
		    uint64_t refused)
{
	char name[96];

	snprintf(name, sizeof(name), "%s_parked_sends_total", prefix);
	metrics_one(b, name, "counter",
		    "Sends stalled for 2 s on a peer that does not read, moved off the shared buffers.",
		    parked);
	snprintf(name, sizeof(name), "%s_parked_bytes", prefix);
	metrics_one(b, name, "gauge", "Heap held now by parked sends (at most one buffer each).", bytes);
	snprintf(name, sizeof(name), "%s_parked_refused_total", prefix);
	metrics_one(b, name, "counter",
		    "Flows reset because parking their stalled send would pass max_parked_memory.",
		    refused);
}

void metrics_verified(struct mbuf *b, const char *prefix, uint64_t flows, uint64_t damaged,
		      uint64_t broken, uint64_t whole, uint64_t gathered)
{
	char name[96];

	snprintf(name, sizeof(name), "%s_stream_records_total", prefix);
	metrics_head(b, name, "counter",
		     "Verified-stream records received and passed on, by how they came: whole (in "
		     "one receive, checked in the shared buffer) or gathered (in pieces, copied "
		     "to the heap first: more CPU per byte).");
	metrics_u64(b, name, "how=\"whole\"", whole);
	metrics_u64(b, name, "how=\"gathered\"", gathered);
	snprintf(name, sizeof(name), "%s_verified_flows_total", prefix);
	metrics_one(b, name, "counter",
		    "Flows carried as a verified stream (records with a CRC-32C over MPTCP).", flows);
	snprintf(name, sizeof(name), "%s_stream_integrity_failures_total", prefix);
	metrics_head(b, name, "counter",
		     "Verified flows reset because what arrived over MPTCP was wrong: damaged = a "
		     "record's bytes did not match its CRC (nothing of it passed on), broken = not "
		     "a record at all, or cut inside one.");
	metrics_u64(b, name, "kind=\"damaged\"", damaged);
	metrics_u64(b, name, "kind=\"broken\"", broken);
}

/* Header name (case-insensitive) at line start s: its value's start. */
static const char *header_value(const char *s, const char *end, const char *name)
{
	size_t n = strlen(name);

	if ((size_t)(end - s) <= n || strncasecmp(s, name, n) || s[n] != ':')
		return NULL;
	s += n + 1;
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	return s;
}

/* A token: up to HTTP_TOKEN_MAX of [A-Za-z0-9_-], ending at end, ';', a
 * space or the line's end; anything else gives "". */
static void take_token(const char *s, const char *end, char out[HTTP_TOKEN_MAX + 1])
{
	size_t n = 0;

	while (s + n < end && n <= HTTP_TOKEN_MAX &&
	       ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
		(s[n] >= '0' && s[n] <= '9') || s[n] == '_' || s[n] == '-'))
		n++;
	if (n == 0 || n > HTTP_TOKEN_MAX ||
	    (s + n < end && s[n] != ';' && s[n] != ' ' && s[n] != '\r' && s[n] != '\n'))
		return;
	memcpy(out, s, n);
	out[n] = '\0';
}

int http_parse(const char *req, size_t len, struct http_req *ret)
{
	char full[256];
	const char *line, *end = NULL;
	char *q;
	int r;

	memset(ret, 0, sizeof(*ret));
	r = metrics_http_parse(req, len, ret->method, ret->path);
	if (r < 0)
		return r;
	/* The path as sent, for its query (metrics_http_parse cut it). */
	{
		size_t i = strlen(ret->method) + 1, p = 0;

		while (i < len && req[i] != ' ' && req[i] != '\r' && req[i] != '\n' && p < 255)
			full[p++] = req[i++];
		full[p] = '\0';
	}
	q = strchr(full, '?');
	if (q)
		snprintf(ret->query, sizeof(ret->query), "%s", q + 1);
	/* The head ends at the first blank line (it is there: parsed). */
	for (size_t k = 0; k + 1 < len && !end; k++)
		if (req[k] == '\n' && req[k + 1] == '\n')
			end = req + k + 1;
		else if (k + 3 < len && !memcmp(req + k, "\r\n\r\n", 4))
			end = req + k + 2;
	line = memchr(req, '\n', (size_t)(end - req));
	while (line && line < end) {
		const char *s = line + 1, *e = memchr(s, '\n', (size_t)(end - s)), *v;

		if (!e)
			e = end;
		if ((v = header_value(s, e, "Authorization")) && e - v > 7 && !strncmp(v, "Bearer ", 7))
			take_token(v + 7, e, ret->bearer);
		if ((v = header_value(s, e, "X-Requested-With")) && e - v >= 8 &&
		    !strncmp(v, "gw-agent", 8) && (e - v == 8 || v[8] == '\r' || v[8] == '\n'))
			ret->xrw = true;
		if ((v = header_value(s, e, "Cookie")))
			/* "a=1; gwa=TOKEN; b=2" */
			for (const char *c = v; c && c < e;) {
				while (c < e && (*c == ' ' || *c == ';'))
					c++;
				if (e - c > 4 && !strncmp(c, "gwa=", 4))
					take_token(c + 4, e, ret->cookie);
				c = memchr(c, ';', (size_t)(e - c));
			}
		line = e < end ? e : NULL;
	}
	return 0;
}

int metrics_http_parse(const char *req, size_t len, char method[8], char path[256])
{
	size_t i = 0, m = 0, p = 0;

	/* Wait for the end of the head; a scraper sends nothing after it. */
	bool done = false;
	for (size_t k = 0; k + 1 < len && !done; k++)
		done = (req[k] == '\n' && req[k + 1] == '\n') ||
		       (k + 3 < len && !memcmp(req + k, "\r\n\r\n", 4));
	if (!done)
		return -EAGAIN;
	while (i < len && req[i] != ' ' && req[i] != '\r' && req[i] != '\n') {
		if (m == 7 || req[i] < 'A' || req[i] > 'Z')  /* GET, HEAD, ... */
			return -EINVAL;
		method[m++] = req[i++];
	}
	method[m] = 0;
	if (!m || i >= len || req[i] != ' ')
		return -EINVAL;
	i++;
	while (i < len && req[i] != ' ' && req[i] != '\r' && req[i] != '\n') {
		/* Printable ASCII only: no NUL or controls in what we compare. */
		if (p == 255 || (unsigned char)req[i] < 0x21 || (unsigned char)req[i] > 0x7e)
			return -EINVAL;
		path[p++] = req[i++];
	}
	path[p] = 0;
	if (!p || path[0] != '/')
		return -EINVAL;
	path[strcspn(path, "?")] = 0;  /* /metrics?x=y is /metrics */
	return 0;
}

/* One request: the head only (scrapers send no body), up to 4 KiB, within
 * METRICS_REQUEST_MS from the accept, and the answer within
 * METRICS_ANSWER_MS more: a client that trickles bytes or reads slowly
 * holds this one-at-a-time server no longer than that. */
#define METRICS_REQUEST_MS 2000
#define METRICS_ANSWER_MS 5000
static void serve(struct metrics_server *m, int fd)
{
	char req[4096], method[8], path[256];
	/* A page server (the LAN's) is asked by browsers that send at once:
	 * 1 s, so a device that connects and says nothing holds it less. */
	uint64_t deadline = log_now_ms() + (m->handle ? 1000 : METRICS_REQUEST_MS), until;
	size_t got = 0;
	int r = -EAGAIN;

	while (got < sizeof(req) && r == -EAGAIN) {
		ssize_t n = sock_read_until(fd, req + got, sizeof(req) - got, deadline);

		if (n <= 0)
			return;
		got += (size_t)n;
		r = metrics_http_parse(req, got, method, path);
	}
	until = log_now_ms() + METRICS_ANSWER_MS;
	if (r < 0) {
		respond(fd, until, "400 Bad Request", "text/plain", "bad request\n", 12, false);
		return;
	}
	if (m->handle) {
		struct http_req hr;
		struct http_answer ans = { .status = "404 Not Found", .type = "text/plain" };
		char hdr[1024];
		int n;

		if (http_parse(req, got, &hr) < 0)
			return;
		m->handle(m->ctx, &hr, &ans);
		if (strlen(ans.headers) >= sizeof(ans.headers) - 1) {
			/* Never a header cut short (a cookie without its
			 * attributes): the page's own error. */
			mbuf_free(&ans.b);
			respond(fd, until, "500 Internal Server Error", "text/plain", "headers too long\n",
				17, false);
			return;
		}
		n = snprintf(hdr, sizeof(hdr),
			     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			     "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n", ans.status,
			     ans.type, ans.b.len, ans.headers);
		if (n > 0 && (size_t)n < sizeof(hdr) &&
		    sock_write_all_until(fd, hdr, (size_t)n, until) == 0 && strcmp(hr.method, "HEAD") &&
		    ans.b.len)
			sock_write_all_until(fd, ans.b.s, ans.b.len, until);
		mbuf_free(&ans.b);
		return;
	}
	bool head = !strcmp(method, "HEAD");
	if (strcmp(method, "GET") && !head) {
		respond(fd, until, "405 Method Not Allowed", "text/plain", "GET /metrics\n", 13, false);
		return;
	}
	if (!strcmp(path, "/metrics")) {
		struct mbuf b = { 0 };

		m->scrapes++;
		m->render(m->ctx, &b);
		if (b.failed)
			respond(fd, until, "500 Internal Server Error", "text/plain", "out of memory\n", 14,
				head);
		else
			respond(fd, until, "200 OK", "text/plain; version=0.0.4; charset=utf-8",
				b.s ? b.s : "", b.len, head);
		mbuf_free(&b);
	} else if (!strcmp(path, "/")) {
		static const char body[] = "metrics at /metrics\n";

		respond(fd, until, "200 OK", "text/plain", body, sizeof(body) - 1, head);
	} else {
		respond(fd, until, "404 Not Found", "text/plain", "not found: try /metrics\n", 24, head);
	}
}

static void *server_main(void *arg)
{
	struct metrics_server *m = arg;

	for (;;) {
		struct pollfd pf[2] = {
			{ .fd = m->fd, .events = POLLIN },
			{ .fd = m->stop_pipe[0], .events = POLLIN },
		};

		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents)
			break;
		if (pf[0].revents & POLLIN) {
			int c = accept4(m->fd, NULL, NULL, SOCK_CLOEXEC);

			if (c >= 0) {
				serve(m, c);
				close(c);
			} else if (sock_accept_starved(-errno)) {
				/* The listener stays readable: wait for
				 * descriptors (or the stop) instead of spinning. */
				if (poll(pf + 1, 1, SOCK_ACCEPT_PAUSE_MS) > 0)
					break;
			}
		}
	}
	return NULL;
}

static int server_start(struct metrics_server *m, const struct sockaddr_storage *addr,
			socklen_t len, metrics_render_fn render, http_handler_fn handle, void *ctx)
{
	int one = 1, e;

	m->running = false;
	m->render = render;
	m->handle = handle;
	m->ctx = ctx;
	m->fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (m->fd < 0)
		return -errno;
	setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(m->fd, (const struct sockaddr *)addr, len) < 0 || listen(m->fd, 16) < 0)
		goto fail;
	if (pipe2(m->stop_pipe, O_CLOEXEC) < 0)
		goto fail;
	e = pthread_create(&m->thread, NULL, server_main, m);
	if (e == 0)
		pthread_setname_np(m->thread, "metrics");
	if (e) {
		close(m->stop_pipe[0]);
		close(m->stop_pipe[1]);
		close(m->fd);
		m->fd = -1;
		return -e;
	}
	m->running = true;
	return 0;
fail:
	e = -errno;
	close(m->fd);
	m->fd = -1;
	return e;
}

int metrics_server_start(struct metrics_server *m, const struct sockaddr_storage *addr,
			 socklen_t len, metrics_render_fn render, void *ctx)
{
	return server_start(m, addr, len, render, NULL, ctx);
}

int http_server_start(struct metrics_server *m, const struct sockaddr_storage *addr,
		      socklen_t len, http_handler_fn handle, void *ctx)
{
	return server_start(m, addr, len, NULL, handle, ctx);
}

void metrics_server_stop(struct metrics_server *m)
{
	if (!m->running)
		return;
	/* A one-byte write to an empty pipe cannot fail short. */
	(void)!write(m->stop_pipe[1], "x", 1);
	pthread_join(m->thread, NULL);
	close(m->stop_pipe[0]);
	close(m->stop_pipe[1]);
	close(m->fd);
	m->fd = -1;
	m->running = false;
}

void metrics_label_all(struct mbuf *b, const char *label, const char *value)
{
	struct mbuf out = { 0 };
	char esc[192];
	size_t i = 0;

	if (b->failed || !b->s)
		return;
	metrics_label(value, esc, sizeof(esc));
	while (i < b->len) {
		size_t end = i, name;

		while (end < b->len && b->s[end] != '\n')
			end++;
		if (b->s[i] == '#' || end == i) {
			mbuf_printf(&out, "%.*s\n", (int)(end - i), b->s + i);
		} else {
			/* name{labels} value, or name value */
			for (name = i; name < end && b->s[name] != '{' && b->s[name] != ' '; name++)
				;
			if (name < end && b->s[name] == '{')
				mbuf_printf(&out, "%.*s%s=\"%s\",%.*s\n", (int)(name + 1 - i), b->s + i,
					    label, esc, (int)(end - name - 1), b->s + name + 1);
			else
				mbuf_printf(&out, "%.*s{%s=\"%s\"}%.*s\n", (int)(name - i), b->s + i,
					    label, esc, (int)(end - name), b->s + name);
		}
		i = end + 1;
	}
	if (out.failed) {
		mbuf_free(&out);
		b->failed = true;
		return;
	}
	mbuf_free(b);
	*b = out;
}
