/* What both daemons do alike as services: their signals, systemd's
 * notifications around a reload, and a watchdog fed only while every
 * worker's loop turns. */
#ifndef COMMON_DAEMON_H
#define COMMON_DAEMON_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Before any thread starts: SIGPIPE ignored (a peer's reset is an errno),
 * SIGTERM, SIGINT, SIGHUP and SIGUSR1 blocked in every thread, so only the main
 * thread takes them (sigtimedwait or a signalfd on *ret). */
void daemon_signals(sigset_t *ret);

/* How often to feed systemd's watchdog: half its interval, in ms; 0 when
 * there is none. */
uint64_t daemon_watchdog_ms(void);

/* Whether every worker's heartbeat moved since the last call (seen holds
 * the last values). The heartbeats are n atomic counters stride bytes
 * apart from first, one in each worker's struct. */
bool daemon_workers_alive(const void *first, size_t stride, unsigned n, uint64_t *seen);

/* A reload starts (RELOADING=1 with the time, as Type=notify-reload
 * wants) and ends (READY=1), whether it applied or was refused. */
void daemon_reload_begin(void);
void daemon_reload_end(void);

#endif
