#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <stdlib.h>
#include <stddef.h>
#include <linux/mptcp.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

/* From linux/tcp.h (5.16+); the libc headers here do not have it. */
#ifndef TCP_IS_MPTCP
#define TCP_IS_MPTCP 43
#endif
_Static_assert(TCP_IS_MPTCP == 43, "TCP_IS_MPTCP is 43 in the kernel ABI");

int sock_keepalive(int fd, unsigned idle_s)
{
	int on = idle_s > 0, idle = (int)idle_s, intvl = (int)idle_s / 6, cnt = 6;

	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) < 0)
		return -errno;
	if (!on)
		return 0;
	if (intvl < 1)
		intvl = 1;
	if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) < 0)
		return -errno;
	return 0;
}

int sock_congestion(int fd, const char *name)
{
	if (!name[0])
		return 0;
	if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, (socklen_t)strlen(name)) < 0)
		return -errno;
	return 0;
}

const char *kernel_release(void)
{
	static struct utsname u;

	if (!u.release[0] && uname(&u) < 0)
		return "unknown";
	return u.release;
}

const char *sock_mptcp_why(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP), e = errno;

	if (fd >= 0) {
		close(fd);
		return "";
	}
	if (e == ENOPROTOOPT)
		return "MPTCP is disabled (sysctl net.mptcp.enabled = 0)";
	if (e == EPROTONOSUPPORT || e == EINVAL)
		return "this kernel has no MPTCP (CONFIG_MPTCP, Linux 5.6+)";
	return strerror(e);
}

bool sock_mptcp_fastopen(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP), on = 1, r;

	if (fd < 0)
		return false;
	/* Added to MPTCP with the rest of its TFO support (6.2). */
	r = setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &on, sizeof(on));
	close(fd);
	return r == 0;
}

int sock_congestion_check(const char *name, char *avail, size_t len)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP), r, afd;
	ssize_t n;

	if (fd < 0)
		return -errno;
	r = sock_congestion(fd, name);
	close(fd);
	avail[0] = 0;
	afd = open("/proc/sys/net/ipv4/tcp_available_congestion_control", O_RDONLY | O_CLOEXEC);
	if (afd >= 0) {
		n = read(afd, avail, len - 1);
		avail[n > 0 ? n : 0] = 0;
		avail[strcspn(avail, "\n")] = 0;
		close(afd);
	}
	return r;
}

int sock_nodelay(int fd)
{
	int one = 1;

	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ? -errno : 0;
}

int sock_write_all(int fd, const void *buf, size_t len)
{
	return sock_write_all_until(fd, buf, len, UINT64_MAX);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait for events on fd until deadline_ms: 0, -ETIMEDOUT or -errno. */
static int wait_until(int fd, short events, uint64_t deadline_ms)
{
	for (;;) {
		struct pollfd pf = { .fd = fd, .events = events };
		uint64_t now = mono_ms();
		int n;

		if (now >= deadline_ms)
			return -ETIMEDOUT;
		n = poll(&pf, 1, deadline_ms == UINT64_MAX ? -1 :
			 deadline_ms - now > INT32_MAX ? INT32_MAX : (int)(deadline_ms - now));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

int sock_write_all_until(int fd, const void *buf, size_t len, uint64_t deadline_ms)
{
	const char *p = buf;

	while (len) {
		ssize_t n;
		int r = wait_until(fd, POLLOUT, deadline_ms);

		if (r < 0)
			return r;
		n = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t sock_read_until(int fd, void *buf, size_t len, uint64_t deadline_ms)
{
	for (;;) {
		ssize_t n;
		int r = wait_until(fd, POLLIN, deadline_ms);

		if (r < 0)
			return r;
		n = recv(fd, buf, len, MSG_DONTWAIT);
		if (n >= 0)
			return n;
		if (errno != EINTR && errno != EAGAIN)
			return -errno;
	}
}

bool sock_accept_starved(int err)
{
	return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

bool sock_is_mptcp(int fd)
{
	int v = 0;
	socklen_t l = sizeof(v);

	/* On a fallen-back MPTCP socket the TCP subflow answers: 0. */
	return getsockopt(fd, IPPROTO_TCP, TCP_IS_MPTCP, &v, &l) == 0 && v;
}

#ifndef SOL_MPTCP
#define SOL_MPTCP 284
#endif

int sock_mptcp_live_subflows(int fd)
{
	/* Header then up to 16 tcp_info records; more subflows than that
	 * means plenty are alive. */
	struct {
		struct mptcp_subflow_data d;
		struct tcp_info ti[16];
	} buf;
	socklen_t len = sizeof(buf);
	unsigned n, live = 0;

	memset(&buf.d, 0, sizeof(buf.d));
	buf.d.size_subflow_data = sizeof(buf.d);
	buf.d.size_user = sizeof(struct tcp_info);
	if (getsockopt(fd, SOL_MPTCP, MPTCP_TCPINFO, &buf, &len) < 0)
		return -errno;
	n = buf.d.num_subflows;
	if (n > 16)
		return (int)n;
	/* The kernel may hand back a shorter tcp_info than ours. */
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *rec = (const uint8_t *)buf.ti + (size_t)i * buf.d.size_user;

		if (buf.d.size_user < 1 || (size_t)(rec - (const uint8_t *)&buf) >= len)
			break;
		if (rec[0] == TCP_ESTABLISHED)  /* tcpi_state is the first byte */
			live++;
	}
	return (int)live;
}

int sock_mptcp_subflows(int fd)
{
	struct mptcp_subflow_data d;
	socklen_t len = sizeof(d);

	memset(&d, 0, sizeof(d));
	d.size_subflow_data = sizeof(d);
	d.size_user = sizeof(struct tcp_info);
	/* A header-only buffer: the kernel fills in the count and no records. */
	if (getsockopt(fd, SOL_MPTCP, MPTCP_TCPINFO, &d, &len) < 0)
		return -errno;
	return (int)d.num_subflows;
}

_Static_assert(MPTCP_INFO_FLAG_FALLBACK == 1, "MPTCP_INFO_FLAG_FALLBACK is bit 0");
_Static_assert(MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED == 2,
	       "MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED is bit 1");

bool sock_mptcp_key_received(int fd)
{
	struct mptcp_info mi;
	socklen_t len = sizeof(mi);

	memset(&mi, 0, sizeof(mi));
	if (getsockopt(fd, SOL_MPTCP, MPTCP_INFO, &mi, &len) < 0 ||
	    len < offsetof(struct mptcp_info, mptcpi_flags) + sizeof(mi.mptcpi_flags))
		return true;  /* not MPTCP: plain TCP */
	return (mi.mptcpi_flags & (MPTCP_INFO_FLAG_FALLBACK | MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED)) != 0;
}

bool sock_handshake_complete(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	/* On an MPTCP socket TCP_INFO describes its first subflow: the
	 * connection the client's SYN opened, fallen back or not. */
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && len >= 1)
		return ti.tcpi_state != TCP_SYN_RECV;
	/* No TCP_INFO: the MPTCP key arrives with the third ACK. */
	return sock_mptcp_key_received(fd);
}

int sock_tfo_sysctl_open(void)
{
	int fd = open("/proc/sys/net/ipv4/tcp_fastopen", O_RDONLY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

int sock_tfo_cookieless(int fd)
{
	char buf[32];
	ssize_t n;

	/* /proc/sys files answer every read at offset 0 with the current
	 * value: one pread, safe from any thread. */
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return n < 0 ? -errno : -EIO;
	buf[n] = 0;
	return (strtol(buf, NULL, 0) & 0x200) != 0;  /* TFO_SERVER_COOKIE_NOT_REQD */
}
