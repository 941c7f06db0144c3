/* Speed tests for keyed gateways (docs/speedtest.md): after the Convert
 * reply that echoes the Speed Test TLV, the connection belongs to a
 * thread of its own that sends zeros for the test's seconds (down) or
 * reads and counts what the gateway sends, then says how much it got and
 * in how long (up). Bounded: SPEEDTEST_MAX at once on the box, one at a
 * time per key and SPEEDTEST_PER_HOUR a key; what a test sends goes only
 * to the connection that asked (a completed handshake, a valid key). */
#ifndef CONCENTRATOR_SPEEDTEST_H
#define CONCENTRATOR_SPEEDTEST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define SPEEDTEST_MAX 2
#define SPEEDTEST_PER_HOUR 30
#define SPEEDTEST_KEYS 64             /* keys remembered for the hourly count */
#define SPEEDTEST_REPORT_LEN 12       /* up: bytes (u64) and ms (u32), network order */

struct speedtest_key {
	uint32_t kid;
	bool running;
	uint32_t hour_start;              /* Unix seconds */
	uint32_t in_hour;
};

struct speedtests {
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned running;
	atomic_bool stopping;
	struct speedtest_key keys[SPEEDTEST_KEYS];
	atomic_uint_fast64_t served[3];   /* by direction (1 down, 2 up) */
	atomic_uint_fast64_t refused_limit, refused_unkeyed, bytes;
};

void speedtests_init(struct speedtests *st);
/* Whether key kid may run a test now (then it is counted as running):
 * 0, -EBUSY (the box's SPEEDTEST_MAX, or this key's one), -EDQUOT (its
 * hourly count). */
int speedtest_admit(struct speedtests *st, uint32_t kid, uint32_t now);
/* Runs the test on fd (the reply sent) in a thread; fd is its to close.
 * On failure to start, closes fd and releases the admission. */
void speedtest_run(struct speedtests *st, int fd, uint32_t kid, uint8_t dir, uint8_t seconds);
/* An admitted test that will not run after all. */
void speedtest_release(struct speedtests *st, uint32_t kid);
/* Stopping: running tests end within a second; waits for them. */
void speedtests_stop(struct speedtests *st);

#endif
