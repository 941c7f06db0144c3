/* Small socket helpers both daemons use. Each returns 0 or -errno. */
#ifndef COMMON_SOCK_H
#define COMMON_SOCK_H

#include <stdbool.h>

/* Keepalive after idle_s seconds, probes every idle_s/6 (at least 1 s), 6
 * probes: a dead peer is found in about 2 x idle_s. MPTCP sockets accept
 * these (and pass them to every subflow) but not TCP_USER_TIMEOUT, so this
 * is how a flow whose gateway lost power gets freed. idle_s 0: off. */
int sock_keepalive(int fd, unsigned idle_s);
int sock_nodelay(int fd);
/* True for an MPTCP socket that did not fall back to TCP. */
bool sock_is_mptcp(int fd);

/* Established subflows of an MPTCP socket (0: all paths gone), or -errno.
 * Needed because the kernel does not report a subflow's death to the MPTCP
 * socket (only for fallen-back ones: a connection may regain a subflow by
 * MP_JOIN), so a peer that vanishes leaves a flow that never errors. */
int sock_mptcp_live_subflows(int fd);

#endif
