/* Several concentrators behind one service address (ROADMAP, README
 * "Several concentrators"). Routers in front spread connections over the
 * boxes with ECMP, which hashes each packet's 4-tuple: a gateway's second
 * subflow would land on any box. So a box of a cluster:
 *   - refuses joins to the shared address (the MP_CAPABLE C flag, from
 *     net.mptcp.allow_join_initial_addr_port=0), and
 *   - announces its own unicast address (ADD_ADDR, a signal endpoint), to
 *     which gateways open their extra subflows (fullmesh endpoints), and
 *   - puts a route for the service address into a table of its own while
 *     it is ready and not draining: the routing daemon (BIRD, FRR) imports
 *     that table and announces the address, and withdraws it as soon as the
 *     route goes (at drain, stop or crash: a crash leaves the route, but
 *     systemd's restart or the routing daemon's BFD/hold timer follow).
 * Changing these needs CAP_NET_ADMIN (the cluster drop-in gives it). */
#include "concentrator.h"
#include "pm.h"
#include "runcmd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define JOIN_SYSCTL "/proc/sys/net/mptcp/allow_join_initial_addr_port"

static int join_sysctl(void)
{
	char v[4] = "";
	int fd = open(JOIN_SYSCTL, O_RDWR | O_CLOEXEC), r = 0;

	if (fd < 0)
		fd = open(JOIN_SYSCTL, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (read(fd, v, sizeof(v) - 1) < 0)
		r = -errno;
	else if (v[0] != '0' && (lseek(fd, 0, SEEK_SET) < 0 || write(fd, "0\n", 2) != 2))
		r = -errno;
	close(fd);
	return r;
}

static int service_routes(struct conc *c, bool add)
{
	char table[16], pfx[ADDR_STRLEN + 4];
	int bad = 0;

	snprintf(table, sizeof(table), "%u", c->cfg.route_table);
	for (unsigned i = 0; i < c->cfg.nservice; i++) {
		const struct addr_prefix *p = &c->cfg.service[i];
		char *argv[] = { "ip", addr_is_v4mapped(&p->addr) ? "-4" : "-6", "route",
				 add ? "replace" : "del", pfx, "dev", "lo", "table", table,
				 "proto", "static", NULL };

		addr_format_prefix(p, pfx);
		if (spawn_run(argv, NULL, add) != 0) {
			bad++;
			if (add)
				log_error("cluster: cannot add the route for %s to table %s "
					  "(needs CAP_NET_ADMIN: the cluster drop-in)", pfx, table);
		}
	}
	return bad ? -EPERM : 0;
}

int cluster_start(struct conc *c)
{
	const struct conc_config *cfg = &c->cfg;
	char a[ADDR_STRLEN];
	struct pm pm;
	int r;

	if (cfg->have_join_addr) {
		struct pm_endpoint eps[64];
		int n;

		r = join_sysctl();
		if (r < 0) {
			log_errno(r, "cluster: joins must not go to the shared address, and "
				  "net.mptcp.allow_join_initial_addr_port could not be set to 0 (%m): "
				  "set it before starting (deploy/examples)");
			return r;
		}
		r = pm_open(&pm);
		if (r < 0)
			return log_errno(r, "cluster: MPTCP path manager: %m");
		n = pm_dump(&pm, eps, 64);
		for (int i = 0; i < n; i++)
			if (!memcmp(&eps[i].addr, &cfg->join_addr, sizeof(cfg->join_addr)) &&
			    (eps[i].flags & PM_FLAG_SIGNAL))
				c->join_ep_id = 0xff;  /* the operator's own: leave it */
		if (!c->join_ep_id) {
			r = pm_add(&pm, &cfg->join_addr, 0, PM_FLAG_SIGNAL);
			if (r < 0) {
				pm_close(&pm);
				return log_errno(r, "cluster: cannot announce %s to gateways (ip mptcp "
						 "endpoint add ... signal: %m; needs CAP_NET_ADMIN, the "
						 "cluster drop-in)",
						 addr_format_in6(&cfg->join_addr, 0, a));
			}
			c->join_ep_id = (uint8_t)r;
		}
		pm_close(&pm);
		log_info("cluster: joins go to %s (announced), not to the service address",
			 addr_format_in6(&cfg->join_addr, 0, a));
	}
	if (cfg->nservice) {
		r = service_routes(c, true);
		if (r < 0)
			return r;
		c->service_up = true;
		log_info("cluster: service routes in table %u: announced", cfg->route_table);
	}
	return 0;
}

void cluster_withdraw(struct conc *c)
{
	if (!c->service_up)
		return;
	service_routes(c, false);
	c->service_up = false;
	log_info("cluster: service routes withdrawn from table %u", c->cfg.route_table);
}

void cluster_stop(struct conc *c)
{
	struct pm pm;

	cluster_withdraw(c);
	if (!c->join_ep_id || c->join_ep_id == 0xff)
		return;
	if (pm_open(&pm) == 0) {
		pm_del(&pm, c->join_ep_id);
		pm_close(&pm);
	}
	c->join_ep_id = 0;
}
