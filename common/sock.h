/* Small socket helpers both daemons use. Each returns 0 or -errno. */
#ifndef COMMON_SOCK_H
#define COMMON_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Keepalive after idle_s seconds, probes every idle_s/6 (at least 1 s), 6
 * probes: a dead peer is found in about 2 x idle_s. MPTCP sockets accept
 * these (and pass them to every subflow) but not TCP_USER_TIMEOUT, so this
 * is how a flow whose gateway lost power gets freed. idle_s 0: off. */
int sock_keepalive(int fd, unsigned idle_s);
/* TCP congestion control by name. On an MPTCP socket the kernel applies it
 * to every subflow, those that join later too. "" leaves the system's. */
int sock_congestion(int fd, const char *name);
/* Whether this kernel has TCP Fast Open for MPTCP (Linux 6.2+; Debian 12's
 * 6.1 has not): without it a Convert message waits for the handshake. */
bool sock_mptcp_fastopen(void);
/* Why this host cannot make MPTCP sockets ("" if it can): no MPTCP in the
 * kernel, or net.mptcp.enabled = 0. */
const char *sock_mptcp_why(void);
/* uname's release ("6.1.0-18-amd64"), for messages. */
const char *kernel_release(void);
/* Whether this kernel has (or can load) that congestion control: 0, or
 * -errno with the available ones in avail. */
int sock_congestion_check(const char *name, char *avail, size_t len);
int sock_nodelay(int fd);
/* All of buf to a socket (EINTR retried); -errno, or -EPIPE when the peer
 * stops taking bytes. */
int sock_write_all(int fd, const void *buf, size_t len);
/* The same with an overall deadline (CLOCK_MONOTONIC milliseconds, as
 * log_now_ms(); UINT64_MAX: none): a peer that takes a byte now and then
 * cannot hold the writer past it. -ETIMEDOUT then. */
int sock_write_all_until(int fd, const void *buf, size_t len, uint64_t deadline_ms);
/* One read of up to len bytes, given up at deadline_ms: bytes read, 0 at
 * EOF, -ETIMEDOUT or -errno. A peer that sends a byte at a time does not
 * extend it. */
ssize_t sock_read_until(int fd, void *buf, size_t len, uint64_t deadline_ms);
/* accept() failed with err (-errno) for want of descriptors or memory: the
 * listener stays readable, so a poll loop that retries at once spins. The
 * caller pauses accepting instead (SOCK_ACCEPT_PAUSE_MS). */
bool sock_accept_starved(int err);
#define SOCK_ACCEPT_PAUSE_MS 100

/* True for an MPTCP socket that did not fall back to TCP. */
bool sock_is_mptcp(int fd);

/* Established subflows of an MPTCP socket (0: all paths gone), or -errno.
 * Needed because the kernel does not report a subflow's death to the MPTCP
 * socket (only for fallen-back ones: a connection may regain a subflow by
 * MP_JOIN), so a peer that vanishes leaves a flow that never errors. */
int sock_mptcp_live_subflows(int fd);
/* All subflows an MPTCP socket lists (any state), or -errno. */
int sock_mptcp_subflows(int fd);

/* False only for an MPTCP socket whose peer's key has not arrived yet: a
 * connection accepted from a TCP Fast Open SYN, before the client's third
 * ACK. The kernel (seen on 6.18) queues data written in that window and
 * does not transmit it when the ACK comes: it leaves only when the client
 * sends something that carries an MPTCP data ACK. A Convert reply written
 * then would wait forever for a client that waits for it, so the
 * concentrator holds replies until this is true. Plain TCP and fallen-back
 * sockets: true (TCP itself sends such data correctly). */
bool sock_mptcp_key_received(int fd);

/* False while a passively opened socket's handshake is incomplete: a
 * connection handed over at a TCP Fast Open SYN whose sender has not yet
 * answered the SYN-ACK. Until then its source address is unproven (the SYN
 * may be forged), so nothing is done on its behalf. */
bool sock_handshake_complete(int fd);
/* net.ipv4.tcp_fastopen of this network namespace, opened once (fd or
 * -errno) and read as often as needed: 1 when it has 0x200 (the kernel
 * accepts data in a SYN without a cookie, so a SYN from a forged address
 * is handed over as a connection with its data), 0 when not, or -errno. */
int sock_tfo_sysctl_open(void);
int sock_tfo_cookieless(int fd);

#endif
