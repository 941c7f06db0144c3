/* The agent path manager's connection table (gw-agent/upm.c), driven by
 * the events the kernel would send, against an oracle of its own (a plain
 * array of the tokens that should be there): every connection established
 * from one of our paths is found until it closes, none other is kept, the
 * open-addressing table survives clustered tokens (same home slot, wrap
 * around the end) and shrinks back after a burst. No kernel: the table is
 * not opened, so no join is asked for. */
#include "upm.h"
#include "paths.h"
#include "check.h"

#include <arpa/inet.h>
#include <linux/mptcp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SOL_MPTCP
#define SOL_MPTCP 284
#endif
#include <stdlib.h>
#include <string.h>

#define N 20000

static struct in6_addr v4(const char *s)
{
	struct in6_addr a = { 0 };

	a.s6_addr[10] = a.s6_addr[11] = 0xff;
	inet_pton(AF_INET, s, a.s6_addr + 12);
	return a;
}

static struct paths ps;
static struct upm u;
static uint32_t tokens[N];
static bool live[N];

static void ev(uint8_t type, uint32_t token, const char *src, bool server)
{
	struct pm_event e = { .type = type, .token = token, .has_addrs = true,
			      .sport = 40000, .dport = 5124, .server_side = server };

	e.saddr = v4(src);
	e.daddr = v4("192.0.2.1");
	upm_event(&u, &ps, &e, 1000);
}

/* The table holds exactly the oracle's live tokens. */
static void agree(unsigned upto)
{
	unsigned want = 0, wrong = 0;

	for (unsigned i = 0; i < upto; i++) {
		struct upm_conn *c = upm_conn_find(&u, tokens[i]);

		want += live[i];
		if (!!c != live[i] || (c && (c->init_path != 0 || c->rport != 5124)))
			wrong++;
	}
	CHECK_INT(wrong, 0);
	CHECK_INT(u.used, want);
}

static void run(const char *name, uint32_t (*make)(unsigned));
static uint32_t random_token_fn(unsigned i);
static uint32_t clustered_token_fn(unsigned i);

/* 20,000 connections with random tokens: found until closed, table shrinks back */
static void test_random(void)
{
	run("random", random_token_fn);
}

/* 20,000 connections with clustered tokens (wrapping probe chains) */
static void test_clustered(void)
{
	run("clustered", clustered_token_fn);
}

static void run(const char *name, uint32_t (*make)(unsigned))
{
	unsigned i;

	memset(live, 0, sizeof(live));
	for (i = 0; i < N; i++)
		tokens[i] = make(i);
	/* Arrive; every third closes again at once, in arrival order. */
	for (i = 0; i < N; i++) {
		ev(MPTCP_EVENT_ESTABLISHED, tokens[i], "198.51.100.2", false);
		live[i] = true;
		if (i % 3 == 2) {
			ev(MPTCP_EVENT_CLOSED, tokens[i - 1], "198.51.100.2", false);
			live[i - 1] = false;
		}
	}
	agree(N);
	/* A duplicate ESTABLISHED changes nothing; events of unknown tokens
	 * are ignored. */
	ev(MPTCP_EVENT_ESTABLISHED, tokens[0], "198.51.100.2", false);
	ev(MPTCP_EVENT_SUB_CLOSED, 0xdeadbeef, "198.51.100.66", false);
	ev(MPTCP_EVENT_CLOSED, 0xdeadbeef, "198.51.100.2", false);
	agree(N);
	/* Leave in a scrambled order. */
	for (i = 0; i < N; i++) {
		unsigned k = (i * 7919u) % N;

		if (live[k]) {
			ev(MPTCP_EVENT_CLOSED, tokens[k], "198.51.100.2", false);
			live[k] = false;
		}
		if (i % 4999 == 0)
			agree(N);
	}
	agree(N);
	CHECK_INT(u.used, 0);
	CHECK(u.cap <= 128);  /* shrunk back after the burst */
	(void)name;
}

static uint32_t random_token_fn(unsigned i)
{
	return (uint32_t)(i + 1) * 2654435761u | 1;  /* distinct, never 0 */
}

static uint32_t clustered_token_fn(unsigned i)
{
	/* The same low bits for runs of 64: long probe chains that wrap
	 * around the table's end, the backward-shift delete's hard case. */
	return ((uint32_t)(i / 64 + 1) << 20) | (0xffffu - (i % 64));
}

static void test_not_ours(void)
{
	/* Server side, from an address that is no path's, or to a host
	 * other than a concentrator: not managed. */
	struct pm_event other = { .type = MPTCP_EVENT_ESTABLISHED, .token = 80, .has_addrs = true,
				  .sport = 40000, .dport = 5124 };

	ev(MPTCP_EVENT_ESTABLISHED, 77, "198.51.100.2", true);
	ev(MPTCP_EVENT_ESTABLISHED, 78, "10.9.9.9", false);
	other.saddr = v4("198.51.100.2");
	other.daddr = v4("203.0.113.9");
	upm_event(&u, &ps, &other, 1000);
	CHECK(!upm_conn_find(&u, 77));
	CHECK(!upm_conn_find(&u, 78));
	CHECK(!upm_conn_find(&u, 80));
	CHECK_INT(u.used, 0);
	/* Another port of the concentrator's host: managed, joins to it;
	 * but in a cluster only the service's own connections follow an
	 * ANNOUNCE (another port's could be anything's, steering the joins
	 * anywhere). */
	u.fullmesh = true;
	other.daddr = v4("192.0.2.1");
	other.dport = 443;
	upm_event(&u, &ps, &other, 1000);
	CHECK(upm_conn_find(&u, 80) && upm_conn_find(&u, 80)->rport == 443);
	ev(MPTCP_EVENT_ESTABLISHED, 81, "198.51.100.2", false);   /* to 192.0.2.1:5124 */
	{
		struct pm_event an = { .type = MPTCP_EVENT_ANNOUNCED, .token = 80, .has_addrs = true,
				       .dport = 5124 };

		an.daddr = v4("203.0.113.77");
		upm_event(&u, &ps, &an, 1000);
		an.token = 81;
		upm_event(&u, &ps, &an, 1000);
	}
	CHECK(upm_conn_find(&u, 80) && !upm_conn_find(&u, 80)->remote_set);
	CHECK(upm_conn_find(&u, 81) && upm_conn_find(&u, 81)->remote_set);
	u.fullmesh = false;
	other.type = MPTCP_EVENT_CLOSED;
	upm_event(&u, &ps, &other, 1000);
	ev(MPTCP_EVENT_CLOSED, 81, "198.51.100.2", false);
	CHECK_INT(u.used, 0);
	/* From path 2's address: its initial path is 1. */
	ev(MPTCP_EVENT_ESTABLISHED, 79, "198.51.100.66", false);
	CHECK(upm_conn_find(&u, 79) && upm_conn_find(&u, 79)->init_path == 1);
	ev(MPTCP_EVENT_CLOSED, 79, "198.51.100.66", false);
	CHECK_INT(u.used, 0);
}

/* --join-after: a connection's joins wait until it has lasted that long;
 * one that closes before is counted short and never joined. */
static void test_join_after(void)
{
	uint64_t next = UINT64_MAX;
	struct upm_conn *c;

	ps.join_after_ms = 100;
	ev(MPTCP_EVENT_ESTABLISHED, 90, "198.51.100.2", false);   /* at 1000 */
	ev(MPTCP_EVENT_ESTABLISHED, 91, "198.51.100.2", false);
	ev(MPTCP_EVENT_CLOSED, 91, "198.51.100.2", false);
	CHECK_INT(u.st.short_lived, 1);
	c = upm_conn_find(&u, 90);
	CHECK(c && c->young);
	CHECK_INT(u.later.len, 2);
	upm_tick(&u, &ps, 1099, &next);
	CHECK(c->young);
	CHECK_INT((int64_t)next, 1100);
	next = UINT64_MAX;
	upm_tick(&u, &ps, 1100, &next);
	CHECK(!c->young);                /* its joins now (none here: no kernel) */
	CHECK_INT(u.later.len, 0);
	CHECK(next == UINT64_MAX);
	ev(MPTCP_EVENT_CLOSED, 90, "198.51.100.2", false);
	CHECK_INT(u.st.short_lived, 1);  /* it lived: not short */
	/* 0: joins at once, nothing waits */
	ps.join_after_ms = 0;
	ev(MPTCP_EVENT_ESTABLISHED, 92, "198.51.100.2", false);
	CHECK(upm_conn_find(&u, 92) && !upm_conn_find(&u, 92)->young);
	CHECK_INT(u.later.len, 0);
	ev(MPTCP_EVENT_CLOSED, 92, "198.51.100.2", false);
	CHECK_INT(u.used, 0);
	/* A reload that shortens the wait applies to those waiting. */
	ps.join_after_ms = 60000;
	ev(MPTCP_EVENT_ESTABLISHED, 93, "198.51.100.2", false);  /* at 1000 */
	ps.join_after_ms = 100;
	next = UINT64_MAX;
	upm_tick(&u, &ps, 1100, &next);
	CHECK(upm_conn_find(&u, 93) && !upm_conn_find(&u, 93)->young);
	ev(MPTCP_EVENT_CLOSED, 93, "198.51.100.2", false);
	/* A burst of short connections: the queue grows, then is given
	 * back once what it held is due. */
	for (uint32_t t = 1000; t < 1300; t++) {
		ev(MPTCP_EVENT_ESTABLISHED, t, "198.51.100.2", false);
		ev(MPTCP_EVENT_CLOSED, t, "198.51.100.2", false);
	}
	CHECK_INT(u.later.len, 300);
	CHECK_INT(u.st.short_lived, 301);
	upm_tick(&u, &ps, 1100, &next);
	CHECK_INT(u.later.len, 0);
	upm_tick(&u, &ps, 1101, &next);
	CHECK(u.later.q == NULL && u.later.cap == 0);
	ps.join_after_ms = 0;
	CHECK_INT(u.used, 0);
}

/* Lost events: a connection the table never saw (a real MPTCP one, on
 * loopback, from "path 3"'s address to a "concentrator" there) is found
 * in the kernel's sockets and added; a token the kernel no longer has
 * (its CLOSED lost) is deleted. */
static void test_resync(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_storage conc = { 0 };
	socklen_t al = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP), c = -1, s = -1;
	struct mptcp_info mi;
	socklen_t ml = sizeof(mi);

	CHECK(l >= 0);
	if (l < 0)
		return;
	CHECK_INT(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	CHECK_INT(listen(l, 4), 0);
	getsockname(l, (struct sockaddr *)&a, &al);
	memcpy(&conc, &a, sizeof(a));
	upm_set_concentrators(&u, &conc, 1);
	c = socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP);
	CHECK_INT(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	s = accept(l, NULL, NULL);
	CHECK(s >= 0);
	memset(&mi, 0, sizeof(mi));
	CHECK_INT(getsockopt(c, SOL_MPTCP, MPTCP_INFO, &mi, &ml), 0);
	CHECK(mi.mptcpi_token != 0);
	/* a stale entry: ESTABLISHED seen, CLOSED lost */
	ev(MPTCP_EVENT_ESTABLISHED, 0x5eed, "127.0.0.1", false);
	{
		struct pm_event e = { .type = MPTCP_EVENT_ESTABLISHED, .token = 0x5eed,
				      .has_addrs = true, .sport = 1, .dport = ntohs(a.sin_port) };

		e.saddr = v4("127.0.0.1");
		e.daddr = v4("127.0.0.1");
		upm_event(&u, &ps, &e, 1000);
	}
	CHECK(upm_conn_find(&u, 0x5eed) != NULL);
	CHECK(upm_conn_find(&u, mi.mptcpi_token) == NULL);
	CHECK_INT(upm_resync(&u, &ps, 2000), 1);
	CHECK(upm_conn_find(&u, 0x5eed) == NULL);
	CHECK(upm_conn_find(&u, mi.mptcpi_token) != NULL);
	CHECK(upm_conn_find(&u, mi.mptcpi_token) &&
	      upm_conn_find(&u, mi.mptcpi_token)->init_path == 2);
	close(s);
	close(c);
	close(l);
}

int main(void)
{
	ps.n = 3;
	strcpy(ps.p[0].ifname, "gw-p1");
	strcpy(ps.p[1].ifname, "gw-p2");
	strcpy(ps.p[2].ifname, "lo");
	ps.p[2].f[0].addr = ps.p[2].f[0].ep_addr = v4("127.0.0.1");
	for (int i = 0; i < 3; i++) {
		ps.p[i].up = true;
		ps.p[i].f[0].have_addr = true;
		ps.p[i].f[0].ep_id = (uint8_t)(i + 1);
	}
	ps.p[0].f[0].addr = ps.p[0].f[0].ep_addr = v4("198.51.100.2");
	ps.p[1].f[0].addr = ps.p[1].f[0].ep_addr = v4("198.51.100.66");
	u.rl = (struct log_ratelimit)LOG_RATELIMIT_INIT(10, 10000);
	{
		struct sockaddr_storage conc = { 0 };
		struct sockaddr_in *sin = (struct sockaddr_in *)&conc;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(5124);
		inet_pton(AF_INET, "192.0.2.1", &sin->sin_addr);
		upm_set_concentrators(&u, &conc, 1);
	}
	RUN(test_random);
	RUN(test_clustered);
	RUN(test_not_ours);
	RUN(test_join_after);
	RUN(test_resync);
	upm_close(&u);
	return check_finish();
}
