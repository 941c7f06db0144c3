#include "daemon.h"

#include "log.h"
#include "sdnotify.h"

#include <pthread.h>
#include <stdatomic.h>

void daemon_signals(sigset_t *ret)
{
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(ret);
	sigaddset(ret, SIGTERM);
	sigaddset(ret, SIGINT);
	sigaddset(ret, SIGHUP);
	sigaddset(ret, SIGUSR1);  /* the concentrator's drain */
	pthread_sigmask(SIG_BLOCK, ret, NULL);
}

uint64_t daemon_watchdog_ms(void)
{
	uint64_t usec = 0;

	if (sd_watchdog_enabled(0, &usec) <= 0)
		return 0;
	return usec / 2000 ? usec / 2000 : 1;
}

bool daemon_workers_alive(const void *first, size_t stride, unsigned n, uint64_t *seen)
{
	bool ok = true;

	for (unsigned i = 0; i < n; i++) {
		const atomic_uint_fast64_t *beat =
			(const atomic_uint_fast64_t *)((const char *)first + i * stride);
		uint64_t h = atomic_load_explicit(beat, memory_order_relaxed);

		if (h == seen[i])
			ok = false;
		seen[i] = h;
	}
	return ok;
}

void daemon_reload_begin(void)
{
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)log_now_us());
}

void daemon_reload_end(void)
{
	sd_notify(0, "READY=1");
}
