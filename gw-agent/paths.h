/* WAN/mesh paths: one routing table, rules and MPTCP endpoint per usable
 * path, kept in step with links, addresses and routes. */
#ifndef GW_AGENT_PATHS_H
#define GW_AGENT_PATHS_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "pm.h"
#include "routes.h"

#define PATHS_MAX 8

enum path_mode {
	PATH_ON = 0,      /* use it */
	PATH_MASTER,      /* use it; it carries the default route (DHCP's job) */
	PATH_BACKUP,      /* subflow marked backup: used when no on/master is */
	PATH_HANDOVER,    /* no subflow at all until no on/master path is up */
	PATH_OFF,         /* never */
};

struct path_fam {
	bool usable;
	bool was_usable;
	bool have_addr, have_gw;
	struct in6_addr addr, gw;
	bool gw_given;
	struct in6_addr gw_cfg;
	uint8_t ep_id;             /* our endpoint, 0 = none */
	uint32_t ep_flags;
	struct in6_addr ep_addr;
	bool rule_from;            /* "from addr" rule installed for rule_addr */
	struct in6_addr rule_addr;
	bool rule_oif;
};

struct path {
	char ifname[IFNAMSIZ];
	enum path_mode mode;
	uint32_t table, prio;
	int ifindex;
	bool up;
	struct path_fam f[2];      /* 0: IPv4, 1: IPv6 */
};

struct paths {
	struct path p[PATHS_MAX];
	unsigned n;
	bool manage_endpoints;     /* false: --endpoints mptcpd */
	struct pm pm;
	struct rt rt;
	struct rt ev;
	bool pm_open, rt_open, ev_open;
	unsigned changes;          /* endpoint/route changes made (for logs) */
};

/* "IFACE[,mode=on|master|backup|handover|off][,gateway=ADDR]". On error
 * returns -EINVAL with *ret_why set to a static reason. */
int paths_parse(struct paths *ps, const char *spec, const char **ret_why);
const char *path_mode_name(enum path_mode m);
/* Tables table_base+1.., rule priorities prio_base+i. */
int paths_init(struct paths *ps, uint32_t table_base, uint32_t prio_base);
/* Bring tables, rules and endpoints in line with what the links show. */
int paths_reconcile(struct paths *ps);
/* Remove everything we installed. */
void paths_cleanup(struct paths *ps);
int paths_event_fd(const struct paths *ps);
int paths_events_drain(struct paths *ps);

#endif
