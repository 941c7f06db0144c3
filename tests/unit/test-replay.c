/* The concentrator's replay cache (concentrator/policy.c): every cookie is
 * good once while it is in its window, whatever the table holds; and when
 * the table is full, what one key does (how many cookies, how they are
 * dated) costs that key alone. The checks keep their own record of what was
 * accepted (the oracle), independent of the cache's structures. */
#include "policy.h"
#include "cookie.h"
#include "check.h"

#include <errno.h>
#include <stdlib.h>

#define NOW 1700000000u

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void test_basics(void)
{
	struct replay rp;

	CHECK_INT(replay_init(&rp, 16), 0);
	CHECK_INT(replay_check(&rp, 1, 42, NOW, NOW), 0);
	CHECK_INT(replay_check(&rp, 1, 42, NOW, NOW), -EALREADY);
	CHECK_INT(replay_check(&rp, 1, 42, NOW, NOW + 60), -EALREADY);
	/* The same nonce under another key is another cookie. */
	CHECK_INT(replay_check(&rp, 2, 42, NOW, NOW), 0);
	CHECK_INT(replay_check(&rp, 2, 42, NOW, NOW), -EALREADY);
	CHECK_INT(replay_check(&rp, 1, 43, NOW + 89, NOW), 0);
	CHECK_INT(replay_check(&rp, 1, 43, NOW + 89, NOW + 170), -EALREADY);
	replay_free(&rp);
	replay_free(&rp);  /* a second free is harmless */
}

/* Entries past their window go, and their room is reused: a table of 16
 * takes 16 new cookies a second for ten minutes without refusing one. */
static void test_expiry(void)
{
	struct replay rp;
	int refused = 0;

	CHECK_INT(replay_init(&rp, 16), 0);
	for (uint32_t t = 0; t < 600; t++)
		for (unsigned i = 0; i < 16; i++)
			refused += replay_check(&rp, 1 + i % 4, rnd(), NOW + t, NOW + t + 2 * COOKIE_MAX_AGE_S + 12) < 0;
	CHECK_INT(refused, 0);
	replay_free(&rp);
}

/* One key holder floods cookies dated at the far end of the window (the
 * review's attack: 24,000 a second, dated now + 89) while an honest gateway
 * keeps connecting: the honest gateway is never refused. */
static void test_future_flood(void)
{
	struct replay rp;
	int honest_refused = 0, honest = 0;

	CHECK_INT(replay_init(&rp, 1024), 0);
	for (uint32_t t = 0; t < 300; t++) {
		for (unsigned i = 0; i < 2000; i++) {
			replay_check(&rp, 666, rnd(), NOW + t + 89, NOW + t);
			if (i % 200 == 0) {
				honest++;
				honest_refused += replay_check(&rp, 7, rnd(), NOW + t, NOW + t) < 0;
			}
		}
	}
	CHECK_INT(honest, 3000);
	CHECK_INT(honest_refused, 0);
	replay_free(&rp);
}

/* No attacker: 50 gateways, one cookie a second each, more than the table
 * holds; one gateway's clock runs 20 s fast. Nobody is refused (the review's
 * simulation at 1:100 refused 10,197 of 18,000 honest cookies). */
static void test_clock_drift(void)
{
	struct replay rp;
	int32_t skew[50];
	int refused = 0, n = 0;

	CHECK_INT(replay_init(&rp, 1024), 0);
	for (unsigned g = 0; g < 50; g++)
		skew[g] = g == 0 ? 20 : (int32_t)(rnd() % 3) - 1;
	for (uint32_t t = 0; t < 400; t++)
		for (unsigned g = 0; g < 50; g++) {
			refused += replay_check(&rp, 100 + g, rnd(), NOW + t + skew[g], NOW + t) < 0;
			n++;
		}
	CHECK_INT(n, 20000);
	CHECK_INT(refused, 0);
	replay_free(&rp);
}

/* When the table is full, a key that holds no more than its share (the
 * table divided among the keys using it) is never refused a new cookie,
 * whatever the heavy keys send: any times in the window, any rate. */
static void test_fair_share(void)
{
	struct replay rp;
	int light_refused = 0, heavy_refused = 0;

	CHECK_INT(replay_init(&rp, 1024), 0);
	for (uint32_t t = 0; t < 400; t++) {
		for (unsigned i = 0; i < 400; i++) {
			uint32_t ts = NOW + t - COOKIE_MAX_AGE_S + (uint32_t)(rnd() % (2 * COOKIE_MAX_AGE_S + 1));

			heavy_refused += replay_check(&rp, 1 + i % 4, rnd(), ts, NOW + t) < 0;
		}
		/* 100 live entries at most: below 1024 / 5. */
		light_refused += replay_check(&rp, 9, rnd(), NOW + t, NOW + t) < 0;
	}
	CHECK_INT(light_refused, 0);
	CHECK(heavy_refused > 0);  /* the table was full: the heavy paid */
	replay_free(&rp);
}

/* Random keys, times, rates and replays of accepted cookies on a small
 * table: no cookie is ever accepted twice while its time is in the window
 * (the oracle is this list of accepted cookies, kept here). */
struct seen { uint32_t kid, time; uint64_t nonce; };

static void never_twice(uint32_t cap, uint32_t keys)
{
	enum { N = 200000 };
	struct seen *acc = calloc(N, sizeof(*acc));
	struct replay rp;
	unsigned nacc = 0, replays = 0, twice = 0;
	uint32_t now = NOW;

	CHECK(acc != NULL);
	if (!acc)
		return;
	CHECK_INT(replay_init(&rp, cap), 0);
	for (unsigned op = 0; op < N; op++) {
		if (rnd() % 50 == 0)
			now += (uint32_t)(rnd() % 4);
		if (nacc && rnd() % 3 == 0) {
			struct seen *s = &acc[nacc - 1 - rnd() % (nacc < 500 ? nacc : 500)];

			if (s->time + COOKIE_MAX_AGE_S < now)
				continue;  /* cookie_check refuses it as stale */
			replays++;
			if (replay_check(&rp, s->kid, s->nonce, s->time, now) == 0)
				twice++;
			continue;
		}
		struct seen s = { .kid = 1 + (uint32_t)(rnd() % keys), .nonce = rnd(),
				  .time = now - COOKIE_MAX_AGE_S +
					  (uint32_t)(rnd() % (2 * COOKIE_MAX_AGE_S + 1)) };
		if (replay_check(&rp, s.kid, s.nonce, s.time, now) == 0)
			acc[nacc++] = s;
	}
	CHECK(replays > 1000);
	CHECK_INT(twice, 0);
	replay_free(&rp);
	free(acc);
}

static void test_never_twice(void)
{
	never_twice(64, 6);
	never_twice(8, 20);  /* more keys than records: refused, never twice */
	never_twice(1, 3);
}

int main(void)
{
	RUN(test_basics);
	RUN(test_expiry);
	RUN(test_future_flood);
	RUN(test_clock_drift);
	RUN(test_fair_share);
	RUN(test_never_twice);
	return check_finish();
}
