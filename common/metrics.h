/* Prometheus text exposition (format 0.0.4) and the small HTTP server both
 * daemons use for /metrics.
 *
 * The server is a thread of its own: it accepts one scrape at a time, calls
 * the daemon's render function, which reads counters the workers keep (each
 * written by one thread only, read here without locks: aligned 64-bit loads
 * are never torn), and writes the answer with 2 s timeouts. Nothing on the
 * data path ever waits for it. */
#ifndef COMMON_METRICS_H
#define COMMON_METRICS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* A growing text buffer. On allocation failure it stops growing (the text is
 * cut short, never corrupt) and sets failed. */
struct mbuf {
	char *s;
	size_t len, cap;
	bool failed;
};

void mbuf_printf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mbuf_free(struct mbuf *b);
/* Adds label="value" (value escaped) to every sample of the page in b, so
 * pages from several boxes stay apart in one Prometheus. */
void metrics_label_all(struct mbuf *b, const char *label, const char *value);

/* "# HELP name help\n# TYPE name type\n" */
void metrics_head(struct mbuf *b, const char *name, const char *type, const char *help);
/* One sample: labels is "" or `a="x",b="y"` (values escaped with
 * metrics_label()). */
void metrics_u64(struct mbuf *b, const char *name, const char *labels, uint64_t v);
void metrics_f64(struct mbuf *b, const char *name, const char *labels, double v);
/* A metric with one unlabelled series: its head and its value. */
void metrics_one(struct mbuf *b, const char *name, const char *type, const char *help,
		 uint64_t v);
/* A label value escaped for the exposition (\\, \", \n), into buf. */
const char *metrics_label(const char *v, char *buf, size_t len);

/* Histograms: counts per upper bound (cumulative when written), plus +Inf,
 * count and sum. Bounds are the daemon's, in the unit the name says. */
#define METRICS_HIST_MAX 16
struct metrics_hist {
	uint64_t bucket[METRICS_HIST_MAX + 1];  /* non-cumulative; last = +Inf */
	uint64_t count;
	double sum;
};
void metrics_hist_observe(struct metrics_hist *h, const double *bounds, unsigned n, double v);
/* Adds src into dst (summing workers' histograms). */
void metrics_hist_add(struct metrics_hist *dst, const struct metrics_hist *src, unsigned n);
void metrics_hist_write(struct mbuf *b, const char *name, const char *labels,
			const double *bounds, unsigned n, const struct metrics_hist *h);

/* "PORT" (loopback), "ADDR:PORT" or "[V6]:PORT". -EINVAL / -ERANGE. */
int metrics_parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len);

/* The request line of an HTTP request head of len bytes (untrusted: from
 * the network): method (up to 7 chars) and path (up to 255, query cut
 * off), NUL-terminated. -EAGAIN until the head's blank line is in;
 * -EINVAL for anything that is not "METHOD /path ...". */
int metrics_http_parse(const char *req, size_t len, char method[8], char path[256]);

/* The same, with what a page server needs besides: the query (after '?',
 * up to 255 printable bytes, "" without), and the token a client shows
 * in a Cookie header ("gwa=TOKEN") or "Authorization: Bearer TOKEN" (up
 * to 64 of [A-Za-z0-9_-], "" when absent or anything else). Headers are
 * looked at up to the blank line only. */
#define HTTP_TOKEN_MAX 64
struct http_req {
	char method[8];
	char path[256];
	char query[256];
	char cookie[HTTP_TOKEN_MAX + 1];
	char bearer[HTTP_TOKEN_MAX + 1];
	bool xrw;                     /* "X-Requested-With: gw-agent" was sent */
};
int http_parse(const char *req, size_t len, struct http_req *ret);

/* A page server's answer (status "200 OK", body in b). headers: extra
 * header lines, each ending in \r\n, or "". */
struct http_answer {
	const char *status;
	const char *type;
	char headers[640];
	struct mbuf b;
};
/* Fills ans for req; the server writes it and frees ans->b. */
typedef void (*http_handler_fn)(void *ctx, const struct http_req *req, struct http_answer *ans);

/* The --metrics-listen option (both daemons): "" = off (*ret_len 0), else
 * metrics_parse_listen(), errors reported through opts.c. */
int metrics_opt_listen(const char *opt, const char *arg, struct sockaddr_storage *ret,
		       socklen_t *ret_len);

/* PREFIX_parked_sends_total and PREFIX_parked_bytes: sends to peers that
 * stopped reading, moved off the shared buffers (relay.h, RELAY_PARK_S). */
void metrics_parked(struct mbuf *b, const char *prefix, uint64_t parked, uint64_t bytes,
		    uint64_t refused);
/* Verified streams: flows, records received (and how many came in pieces),
 * and resets for damaged or broken records. */
void metrics_verified(struct mbuf *b, const char *prefix, uint64_t flows, uint64_t damaged,
		      uint64_t broken, uint64_t whole, uint64_t gathered);

typedef void (*metrics_render_fn)(void *ctx, struct mbuf *b);

struct metrics_server {
	int fd;
	int stop_pipe[2];
	pthread_t thread;
	bool running;
	metrics_render_fn render;
	http_handler_fn handle;       /* set: a page server (http_server_start) */
	void *ctx;
	uint64_t scrapes;
};

/* Binds and listens (errors returned, nothing started), then serves GET
 * /metrics from a thread until metrics_server_stop(). */
int metrics_server_start(struct metrics_server *m, const struct sockaddr_storage *addr,
			 socklen_t len, metrics_render_fn render, void *ctx);
void metrics_server_stop(struct metrics_server *m);
/* The same server, every request given to handle (GET, HEAD and POST; a
 * request body is not read). Stopped with metrics_server_stop(). */
int http_server_start(struct metrics_server *m, const struct sockaddr_storage *addr,
		      socklen_t len, http_handler_fn handle, void *ctx);

#endif
