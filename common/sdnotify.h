/* systemd's notification and socket-activation calls, or, built without
 * libsystemd (OpenWrt: procd supervises, nothing listens for READY=1),
 * stand-ins that say "not under systemd": no notifications, no watchdog,
 * no inherited sockets. */
#ifndef COMMON_SDNOTIFY_H
#define COMMON_SDNOTIFY_H

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#else
#include <stdint.h>

#define SD_LISTEN_FDS_START 3

static inline int sd_notify(int unset_environment, const char *state)
{
	(void)unset_environment;
	(void)state;
	return 0;
}

static inline int sd_notifyf(int unset_environment, const char *format, ...)
	__attribute__((format(printf, 2, 3)));
static inline int sd_notifyf(int unset_environment, const char *format, ...)
{
	(void)unset_environment;
	(void)format;
	return 0;
}

static inline int sd_watchdog_enabled(int unset_environment, uint64_t *usec)
{
	(void)unset_environment;
	(void)usec;
	return 0;
}

static inline int sd_listen_fds(int unset_environment)
{
	(void)unset_environment;
	return 0;
}

static inline int sd_is_socket(int fd, int family, int type, int listening)
{
	(void)fd;
	(void)family;
	(void)type;
	(void)listening;
	return 0;
}
#endif

#endif
