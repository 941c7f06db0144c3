/* The concentrator's speed test admission (concentrator/speedtest.c): two
 * at once on the box, one at a time per key, SPEEDTEST_PER_HOUR per key
 * per hour, a new hour a new count, many keys bounded. */
#include "check.h"
#include "speedtest.h"

#include <errno.h>

static void test_limits(void)
{
	struct speedtests st;
	uint32_t t = 1000000;

	speedtests_init(&st);
	CHECK_INT(speedtest_admit(&st, 1, t), 0);
	CHECK_INT(speedtest_admit(&st, 1, t), -EBUSY);   /* one per key */
	CHECK_INT(speedtest_admit(&st, 2, t), 0);
	CHECK_INT(speedtest_admit(&st, 3, t), -EBUSY);   /* two on the box */
	speedtest_release(&st, 1);
	CHECK_INT(speedtest_admit(&st, 3, t), 0);
	speedtest_release(&st, 2);
	speedtest_release(&st, 3);
	CHECK_INT(st.running, 0);
	CHECK(atomic_load(&st.refused_limit) == 2);
}

static void test_hourly(void)
{
	struct speedtests st;
	uint32_t t = 2000000;

	speedtests_init(&st);
	for (unsigned i = 0; i < SPEEDTEST_PER_HOUR; i++) {
		CHECK_INT(speedtest_admit(&st, 7, t + i), 0);
		speedtest_release(&st, 7);
	}
	CHECK_INT(speedtest_admit(&st, 7, t + 100), -EDQUOT);
	CHECK_INT(speedtest_admit(&st, 8, t + 100), 0);  /* another key is not held up */
	speedtest_release(&st, 8);
	CHECK_INT(speedtest_admit(&st, 7, t + 3600), 0);  /* a new hour */
	speedtest_release(&st, 7);
}

/* More keys than remembered: each still gets its tests, none is stuck. */
static void test_many_keys(void)
{
	struct speedtests st;
	uint32_t t = 3000000;

	speedtests_init(&st);
	for (uint32_t k = 1; k <= 3 * SPEEDTEST_KEYS; k++) {
		CHECK_INT(speedtest_admit(&st, k, t), 0);
		speedtest_release(&st, k);
	}
	CHECK_INT(st.running, 0);
	CHECK_INT(speedtest_admit(&st, 1, t), 0);
	CHECK_INT(speedtest_admit(&st, 2, t), 0);
	CHECK_INT(speedtest_admit(&st, 3, t), -EBUSY);
	speedtest_release(&st, 1);
	speedtest_release(&st, 2);
}

int main(void)
{
	RUN(test_limits);
	RUN(test_hourly);
	RUN(test_many_keys);
	return check_finish();
}
