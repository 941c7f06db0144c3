/* `gw-agent speedtest [LINE]` and the page's button: each line's down and
 * up capacity measured against the first concentrator, one line at a
 * time (the others carry the household's traffic meanwhile), over a
 * plain TCP connection bound to the line's address: down, the
 * concentrator sends for N seconds and the agent counts; up, the agent
 * sends and the concentrator says what arrived (docs/speedtest.md). The
 * concentrator serves keyed gateways only: a key-file is needed. */
#ifndef GW_AGENT_SPEEDTEST_H
#define GW_AGENT_SPEEDTEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "paths.h"

#define SPEEDTEST_DEFAULT_S 5

struct speedtest_result {
	char name[40];             /* the path's name when it was run */
	bool running;
	uint64_t down_bps, up_bps;
	time_t at;                 /* Unix seconds, 0 = never */
	char error[120];           /* the last attempt's, "" = none */
};

struct agent_speedtests {
	pthread_mutex_t lock;
	pthread_cond_t done;
	int efd;                       /* eventfd: a request or a result for the main thread */
	char want[40];                 /* a requested line, "" = none */
	unsigned seconds;
	bool busy;                     /* requested or running */
	bool stop;
	bool thread_running;
	struct speedtest_result r[PATHS_MAX];  /* by path slot */
	uint64_t runs, failures;
};

struct agent;
int speedtests_open(struct agent_speedtests *st);
/* Any thread: asks for a test of LINE. 0, -EBUSY (one is running, *why
 * says which) or -ENOMEM. */
int agent_speedtest_request(struct agent *a, const char *line, unsigned seconds, char *why,
			    size_t len);
/* Main thread, when efd is readable: starts what was asked, applies what
 * finished (the figures become overflow's capacity where down=/up= are
 * not given). */
void speedtests_main(struct agent *a);
/* Stopping: a running test ends within a second; waits. */
void speedtests_close(struct agent_speedtests *st);

#endif
