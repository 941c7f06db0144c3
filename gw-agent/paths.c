/* The desired state is a function of what the kernel shows now:
 *
 *   path usable (per family) = link up with carrier, a global address, and
 *     a gateway (configured, or learned from the default route the path's
 *     DHCP client installed in the main table; remembered across a link
 *     bounce, when the kernel has dropped that route)
 *   table T: default via gateway dev path while usable, else "unreachable
 *     default", so a subflow on a dead path fails at once instead of
 *     leaking out of another path with replies that cannot come back;
 *     rules "from addr lookup T" (while the address exists) and "oif path
 *     lookup T", so subflows bound to the address use the path
 *   endpoint: subflow (+backup for backup/handover) on the address, when
 *     usable and the mode wants one (handover: only when no on/master path
 *     is usable)
 *
 * paths_reconcile() computes that and changes only what differs. A path
 * that becomes usable again has its endpoint removed and re-added: adding
 * an endpoint is what makes the in-kernel path manager open a subflow on it
 * for connections that already exist. */
#include "paths.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "convert.h"
#include "caps.h"
#include "log.h"
#include "sock.h"

static const char *const mode_names[] = {
	[PATH_ON] = "on", [PATH_MASTER] = "master", [PATH_BACKUP] = "backup",
	[PATH_HANDOVER] = "handover", [PATH_OVERFLOW] = "overflow", [PATH_OFF] = "off",
};

const char *path_mode_name(enum path_mode m)
{
	return m <= PATH_OFF ? mode_names[m] : "?";
}

int path_mode_parse(const char *s, enum path_mode *ret)
{
	for (unsigned m = 0; m <= PATH_OFF; m++)
		if (!strcmp(s, mode_names[m])) {
			*ret = (enum path_mode)m;
			return 0;
		}
	return -EINVAL;
}

int rate_parse(const char *s, uint64_t *ret_bps)
{
	static const char *const units[] = { "kbit", "mbit", "gbit" };
	size_t n = strspn(s, "0123456789.");
	double v;

	if (!n || n > 8 || strlen(s) >= 16 || s[0] == '.' || strchr(s, '.') != strrchr(s, '.'))
		return -EINVAL;
	v = strtod(s, NULL);
	for (unsigned i = 0; i < 3; i++)
		if (!strcmp(s + n, units[i]) && v > 0) {
			*ret_bps = (uint64_t)(v * (i == 0 ? 1e3 : i == 1 ? 1e6 : 1e9));
			return *ret_bps ? 0 : -EINVAL;
		}
	return -EINVAL;
}

int paths_parse(struct paths *ps, const char *spec, const char **ret_why)
{
	char buf[256], *save = NULL, *tok;
	struct path *p;

	if (ps->n == PATHS_MAX) {
		*ret_why = "is one path too many";
		return -EINVAL;
	}
	if (strlen(spec) >= sizeof(buf)) {
		*ret_why = "is too long";
		return -EINVAL;
	}
	strcpy(buf, spec);
	p = &ps->p[ps->n];
	memset(p, 0, sizeof(*p));
	tok = strtok_r(buf, ",", &save);
	if (!tok || !*tok || strlen(tok) >= IFNAMSIZ || strpbrk(tok, " /=\"")) {
		*ret_why = "does not start with an interface name";
		return -EINVAL;
	}
	strcpy(p->ifname, tok);
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strncmp(tok, "mode=", 5)) {
			if (path_mode_parse(tok + 5, &p->mode) < 0) {
				*ret_why = "has a mode other than on, master, backup, handover, overflow, off";
				return -EINVAL;
			}
		} else if (!strncmp(tok, "down=", 5) || !strncmp(tok, "up=", 3)) {
			bool down = tok[0] == 'd';

			if (rate_parse(tok + (down ? 5 : 3), down ? &p->down_bps : &p->up_bps) < 0) {
				*ret_why = "has a down= or up= that is not NUMBER followed by kbit, mbit or gbit";
				return -EINVAL;
			}
		} else if (!strncmp(tok, "cap=", 4)) {
			if (caps_parse_size(tok + 4, &p->cap.bytes) < 0) {
				*ret_why = "has a cap= that is not a size (10G, 500M: bytes, decimal)";
				return -EINVAL;
			}
		} else if (!strncmp(tok, "cycle=", 6)) {
			if (caps_parse_cycle(tok + 6, &p->cap) < 0) {
				*ret_why = "has a cycle= that is neither a day of the month (1-28) nor "
					   "a number of days (30d)";
				return -EINVAL;
			}
		} else if (!strncmp(tok, "at=", 3)) {
			if (caps_parse_at(tok + 3, &p->cap) < 0) {
				*ret_why = "has an at= that is not PERCENT:ACTION[/PERCENT:ACTION] with "
					   "rising percents (1-100) and actions overflow, backup or off";
				return -EINVAL;
			}
		} else if (!strncmp(tok, "gateway=", 8)) {
			struct addr_prefix a;
			int fi;

			if (addr_parse_prefix(tok + 8, &a) < 0 || a.len != 128) {
				*ret_why = "has a gateway that is not an address";
				return -EINVAL;
			}
			fi = IN6_IS_ADDR_V4MAPPED(&a.addr) ? 0 : 1;
			p->f[fi].gw_cfg = a.addr;
			p->f[fi].gw_given = true;
		} else {
			*ret_why = "has an option other than mode=, gateway=, down=, up=, cap=, "
				   "cycle= or at=";
			return -EINVAL;
		}
	}
	if ((p->cap.nat || p->cap.day || p->cap.ndays) && !p->cap.bytes) {
		*ret_why = "has cycle= or at= without cap=";
		return -EINVAL;
	}
	if (p->cap.bytes && !p->cap.day && !p->cap.ndays)
		p->cap.day = 1;              /* monthly, from the 1st */
	if (p->cap.bytes && !p->cap.nat) {
		p->cap.nat = 1;              /* at the cap: off */
		p->cap.at[0].pct = 100;
		p->cap.at[0].action = PATH_OFF;
	}
	p->cap.level = -1;
	p->mode_cfg = p->mode;
	for (unsigned i = 0; i < ps->n; i++)
		if (!strcmp(ps->p[i].ifname, p->ifname)) {
			*ret_why = "names an interface given twice";
			return -EINVAL;
		}
	ps->n++;
	return 0;
}

static void set_loose_rp_filter(const char *ifname)
{
	char path[128];
	int fd;

	/* Replies to a subflow bound to this path's address may arrive on it
	 * while the main table points elsewhere: strict reverse-path
	 * filtering would drop them. */
	snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/rp_filter", ifname);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "2", 1) < 0)
			log_warn("%s: cannot set rp_filter: %m", ifname);
		close(fd);
	}
}

static void raise_limits(struct paths *ps, unsigned users)
{
	/* --cluster: a flow's joins all go to the address the box announces,
	 * but with one subflow per path the last path's join did not come
	 * when many flows started at once (6.18: the attempt at the shared
	 * address, refused by the C flag, seems to use a slot): twice the
	 * paths. add_addr_accepted: as many as paths (what was always set),
	 * and at least 2 in a cluster (a box's IPv4 and IPv6 addresses). */
	uint32_t want_sf = ps->fullmesh ? 2 * users : users;
	uint32_t want_aa = ps->fullmesh && users < 2 ? 2 : users;
	uint32_t sf = 0, aa = 0;
	int r;

	if (!ps->pm_open)
		return;
	if (want_sf > 8)
		want_sf = 8;
	if (pm_get_limits(&ps->pm, &sf, &aa) == 0 && (sf < want_sf || aa < want_aa)) {
		r = pm_set_limits(&ps->pm, sf > want_sf ? sf : want_sf, aa > want_aa ? aa : want_aa);
		if (r < 0)
			log_errno(r, "cannot raise MPTCP subflow limit to %u: %m", want_sf);
	}
}

int paths_init(struct paths *ps, uint32_t table_base, uint32_t prio_base)
{
	int r;
	unsigned users = 0;

	pthread_mutex_init(&ps->src_lock, NULL);
	ps->inited = true;
	ps->table_base = table_base;
	ps->prio_base = prio_base;
	for (unsigned i = 0; i < ps->n; i++) {
		ps->p[i].f[0].probe_fd = ps->p[i].f[1].probe_fd = -1;
		ps->p[i].table = table_base + 1 + i;
		ps->p[i].prio = prio_base + i;
		if (ps->p[i].mode != PATH_OFF)
			users++;
	}
	r = rt_open(&ps->rt);
	if (r < 0)
		return log_errno(r, "rtnetlink: %m");
	ps->rt_open = true;
	r = rt_events_open(&ps->ev);
	if (r < 0)
		return log_errno(r, "rtnetlink events: %m");
	ps->ev_open = true;
	if (ps->manage_endpoints && ps->userspace_pm) {
		r = upm_open(&ps->upm, ps->fullmesh);
		if (r == 0) {
			log_info("path manager: the agent's (joins open as backup, active after "
				 "%u ms)", UPM_PROMOTE_MS);
		} else {
			log_errno_at(LOG_WARNING, r, "the kernel's userspace path manager cannot be "
				     "used (%m): MPTCP endpoints instead, exposed to the kernel defect "
				     "in docs/kernel-defects.md");
		}
	}
	if (ps->manage_endpoints && !ps->upm.open) {
		r = upm_kernel_pm_ensure();
		if (r)
			log_warn("net.mptcp.path_manager was userspace (a stopped agent's?): %s",
				 r > 0 ? "the kernel's is back, for the endpoints to work" :
				 "could not put the kernel's back; endpoints will do nothing");
		r = pm_open(&ps->pm);
		if (r < 0)
			return log_errno(r, "generic netlink family mptcp_pm: %m");
		ps->pm_open = true;
		/* Our endpoints only: stale ones from a crashed run have our
		 * path addresses and are replaced as paths are reconciled. */
		raise_limits(ps, users);
	}
	for (unsigned i = 0; i < ps->n; i++)
		set_loose_rp_filter(ps->p[i].ifname);
	return 0;
}

/* Remove an endpoint with this address that we did not add (a crashed run's,
 * or a duplicate) so ours can be added. */
static void drop_foreign_endpoint(struct paths *ps, const struct in6_addr *a)
{
	struct pm_endpoint eps[64];
	int n = pm_dump(&ps->pm, eps, 64);

	for (int i = 0; i < n && i < 64; i++)
		if (!memcmp(&eps[i].addr, a, 16))
			pm_del(&ps->pm, eps[i].id);
}

static void fam_observe(struct paths *ps, struct path *p, int fi)
{
	struct path_fam *f = &p->f[fi];
	int family = fi ? AF_INET6 : AF_INET;
	struct in6_addr a;

	if (p->neighbour) {
		/* Our own per-neighbour address (mesh.c added it), IPv4 only. */
		f->have_addr = p->up && fi == 0;
		if (f->have_addr)
			f->addr = p->nb_src;
	} else {
		f->have_addr = p->up && rt_addr_get(&ps->rt, p->ifindex, family, &a) == 0;
		if (f->have_addr)
			f->addr = a;
	}
	if (f->gw_given) {
		f->gw = f->gw_cfg;
		f->have_gw = true;
	} else if (p->up && rt_gateway_get(&ps->rt, p->ifindex, family, &a) == 0) {
		f->gw = a;
		f->have_gw = true;
	}
	/* else: keep the last gateway learned, the kernel dropped the route
	 * with the link and will not give it back until DHCP renews */
	f->usable = p->up && f->have_addr && f->have_gw && !f->probe_dead;
	if (!p->up || !f->have_addr) {
		/* Nothing to probe: no carrier says enough. What the network
		 * does to MPTCP is learned again when it comes back (it may be
		 * another network by then). */
		f->probe_dead = false;
		f->probe_fails = 0;
		f->mptcp = PATH_MPTCP_UNKNOWN;
		f->mptcp_suspect = false;
		f->mptcp_strikes = 0;
		f->mptcp_retry = false;
		f->probe_count = 0;
	}
}

/* The agent as path manager: the same decisions as for an endpoint, made
 * on each connection's joins (upm.c). ep_id is the path's local id while
 * joins are opened from it. */
static void upm_apply(struct paths *ps, struct path *p, int fi, bool want, uint32_t flags,
		      bool bounced)
{
	struct path_fam *f = &p->f[fi];
	unsigned pi = (unsigned)(p - ps->p);
	uint64_t now = log_now_ms();
	char a[ADDR_STRLEN];

	if (f->ep_id && (!want || bounced || memcmp(&f->ep_addr, &f->addr, 16))) {
		upm_path_off(&ps->upm, ps, pi, fi);  /* from the old address */
		f->ep_id = 0;
		ps->changes++;
		if (!want)
			log_info("path %s: joins closed (%s)", path_name(p),
				 !f->usable ? "path down" :
				 f->mptcp == PATH_MPTCP_NO ? "its network does not carry MPTCP" :
				 "not needed");
	}
	if (!want)
		return;
	if (f->ep_id && f->ep_flags != flags) {
		f->ep_flags = flags;
		upm_path_prio(&ps->upm, ps, pi, fi, flags & PM_FLAG_BACKUP, now);
		ps->changes++;
	}
	if (!f->ep_id) {
		f->ep_id = (uint8_t)(pi + 1);
		f->ep_flags = flags;
		f->ep_addr = f->addr;
		ps->changes++;
		log_info("path %s: joins from %s%s", path_name(p), addr_format_in6(&f->addr, 0, a),
			 (flags & PM_FLAG_BACKUP) ? " (backup)" : "");
		upm_path_on(&ps->upm, ps, pi, fi);
	}
}

/* An endpoint's backup flag in place; a kernel that refuses (before
 * 5.17, by id) gets a new endpoint instead, which closes the subflows:
 * said once. */
static int set_flags_logged(struct paths *ps, struct path *p, struct path_fam *f, uint32_t flags)
{
	static bool said;
	int r = pm_set_flags(&ps->pm, f->ep_id, flags);

	if (r < 0 && !said) {
		said = true;
		log_errno(r, "path %s: the kernel would not change endpoint %u's backup flag in "
			  "place (%m): replaced, which closes its subflows", path_name(p), f->ep_id);
	}
	return r;
}

static void fam_apply(struct paths *ps, struct path *p, int fi, bool primary_up)
{
	struct path_fam *f = &p->f[fi];
	int family = fi ? AF_INET6 : AF_INET;
	char a[ADDR_STRLEN];
	bool want_route = f->usable && p->mode != PATH_OFF;
	bool want_rule = f->have_addr && p->mode != PATH_OFF;
	/* A path the probes call dead keeps its real route: its probes must
	 * still leave by it to notice its return, and anything else sent from
	 * its address is lost where it would be lost anyway. Only a path
	 * without carrier gets the unreachable route. */
	bool real_route = p->up && f->have_addr && f->have_gw && p->mode != PATH_OFF;
	/* No subflows over a network that strips MPTCP: their SYNs would
	 * arrive as plain TCP connections or not at all. */
	bool want_ep = want_route && ps->manage_endpoints && f->mptcp != PATH_MPTCP_NO &&
		(p->mode != PATH_HANDOVER || !primary_up);
	/* --cluster, fullmesh: a subflow from this path to every address the
	 * concentrator announces as well (ADD_ADDR): a box that is one of
	 * several behind a shared address takes joins only on its own
	 * address (MP_CAPABLE's C flag), and plain subflow endpoints then
	 * open one join in all, from the default path (seen on 6.18). Not
	 * by default: with one concentrator, fullmesh endpoints made the
	 * kernel's misplaced-mapping defect (ROADMAP) hit keys.sh's flows
	 * after a reload in 3 runs of 3, plain subflow endpoints in 0 of 12. */
	uint32_t flags = PM_FLAG_SUBFLOW | (ps->fullmesh ? PM_FLAG_FULLMESH : 0) |
		((p->mode == PATH_BACKUP || p->mode == PATH_HANDOVER ||
		  (p->mode == PATH_OVERFLOW && !ps->overflow_on)) ? PM_FLAG_BACKUP : 0);
	bool bounced = f->usable && !f->was_usable;
	int r;

	/* Routing: refresh the default route each time (the kernel removes it
	 * when the link goes down); rules follow the address. */
	if (p->mode != PATH_OFF && (real_route || f->have_addr || f->rule_from)) {
		r = rt_default(&ps->rt, true, family, &f->gw, p->ifindex, p->table, !real_route);
		if (r < 0 && r != -EEXIST)
			log_errno(r, "%s: default route in table %u: %m", p->ifname, p->table);
	}
	if (want_rule) {
		if (f->rule_from && memcmp(&f->rule_addr, &f->addr, 16)) {
			rt_rule(&ps->rt, false, family, &f->rule_addr, NULL, p->table, p->prio);
			f->rule_from = false;
		}
		if (!f->rule_from) {
			r = rt_rule(&ps->rt, true, family, &f->addr, NULL, p->table, p->prio);
			f->rule_from = r == 0 || r == -EEXIST;
			f->rule_addr = f->addr;
			ps->changes++;
		}
		if (!f->rule_oif && !p->neighbour) {
			r = rt_rule(&ps->rt, true, family, NULL, p->ifname, p->table, p->prio);
			f->rule_oif = r == 0 || r == -EEXIST;
		}
	} else if (f->rule_from) {
		rt_rule(&ps->rt, false, family, &f->rule_addr, NULL, p->table, p->prio);
		f->rule_from = false;
	}

	if (ps->upm.open) {
		upm_apply(ps, p, fi, want_ep, flags, bounced);
	} else if (want_ep && f->ep_id && !bounced && !memcmp(&f->ep_addr, &f->addr, 16) &&
		   (f->ep_flags ^ flags) == PM_FLAG_BACKUP &&
		   set_flags_logged(ps, p, f, flags) == 0) {
		/* Backup or not (overflow, a reload): in place, by MP_PRIO,
		 * not by a new endpoint, which would close the subflows. */
		f->ep_flags = flags;
		ps->changes++;
		log_info("path %s: endpoint %u %s", path_name(p), f->ep_id,
			 flags & PM_FLAG_BACKUP ? "backup" : "active");
	} else if (want_ep && (!f->ep_id || f->ep_flags != flags || bounced ||
			       memcmp(&f->ep_addr, &f->addr, 16))) {
		if (f->ep_id)
			pm_del(&ps->pm, f->ep_id);
		f->ep_id = 0;
		drop_foreign_endpoint(ps, &f->addr);
		r = pm_add(&ps->pm, &f->addr, p->ifindex, flags);
		if (r > 0) {
			char fl[64];

			f->ep_id = (uint8_t)r;
			f->ep_flags = flags;
			f->ep_addr = f->addr;
			ps->changes++;
			log_info("path %s: endpoint %u %s %s", path_name(p), f->ep_id,
				 addr_format_in6(&f->addr, 0, a), pm_flags_str(flags, fl, sizeof(fl)));
		} else {
			log_errno(r, "path %s: cannot add MPTCP endpoint %s: %m", path_name(p),
				  addr_format_in6(&f->addr, 0, a));
		}
	} else if (!want_ep && f->ep_id) {
		pm_del(&ps->pm, f->ep_id);
		log_info("path %s: endpoint %u removed (%s)", path_name(p), f->ep_id,
			 !f->usable ? "path down" :
			 f->mptcp == PATH_MPTCP_NO ? "its network does not carry MPTCP" : "not needed");
		f->ep_id = 0;
		ps->changes++;
	}
	f->was_usable = f->usable;
}

int paths_reconcile(struct paths *ps)
{
	bool primary_up = false;

	atomic_fetch_add_explicit(&ps->reconciles, 1, memory_order_relaxed);
	for (unsigned i = 0; i < ps->n; i++) {
		struct path *p = &ps->p[i];
		struct rt_link l = { 0 };
		bool was = p->up;

		if (rt_link_get(&ps->rt, p->ifname, &l) == 0) {
			p->ifindex = l.ifindex;
			p->up = l.up;
		} else {
			p->up = false;
		}
		if (was != p->up)
			log_info("path %s (%s): %s", path_name(p), path_mode_name(p->mode),
				 p->up ? "up" : "down");
		for (int fi = 0; fi < 2; fi++)
			fam_observe(ps, p, fi);
		if ((p->mode == PATH_ON || p->mode == PATH_MASTER) &&
		    (p->f[0].usable || p->f[1].usable))
			primary_up = true;
	}
	for (unsigned i = 0; i < ps->n; i++)
		for (int fi = 0; fi < 2; fi++)
			fam_apply(ps, &ps->p[i], fi, primary_up);

	/* Where new flows start, in order: usable on/master paths, then usable
	 * backup/handover ones; never a path known to be dead. A path whose
	 * network strips MPTCP comes late: a flow started there is plain TCP
	 * on that one path for its whole life, so only when nothing else is
	 * left; but an on/master one still before an overflow (metered) line,
	 * which would otherwise carry every such flow whole. */
	pthread_mutex_lock(&ps->src_lock);
	for (int fi = 0; fi < 2; fi++) {
		ps->nsrc[fi] = 0;
		for (int pass = 0; pass < 5; pass++)
			for (unsigned i = 0; i < ps->n; i++) {
				struct path *p = &ps->p[i];
				bool primary = p->mode == PATH_ON || p->mode == PATH_MASTER;
				bool no_mptcp = p->f[fi].mptcp == PATH_MPTCP_NO;
				/* 0 on/master, 1 backup/handover, 2 on/master without
				 * MPTCP, 3 overflow, 4 the others without MPTCP. */
				int rank = primary ? (no_mptcp ? 2 : 0) :
					   no_mptcp ? 4 : p->mode == PATH_OVERFLOW ? 3 : 1;

				if (p->mode == PATH_OFF || !p->f[fi].usable || rank != pass)
					continue;
				memcpy(ps->srcif[fi][ps->nsrc[fi]], p->ifname, IFNAMSIZ);
				ps->srcnb[fi][ps->nsrc[fi]] = p->neighbour;
				snprintf(ps->srcname[fi][ps->nsrc[fi]], sizeof(ps->srcname[fi][0]), "%s",
					 path_name(p));
				ps->srcid[fi][ps->nsrc[fi]] = (uint8_t)i;
				ps->srcprimary[fi][ps->nsrc[fi]] = primary;
				/* Reconciled at once when overflow turns on or off. */
				ps->srcmetered[fi][ps->nsrc[fi]] = p->mode == PATH_OVERFLOW &&
								   !ps->overflow_on;
				ps->srcmeter[fi][ps->nsrc[fi]] = path_is_metered(p);
				ps->srcs[fi][ps->nsrc[fi]++] = p->f[fi].addr;
			}
	}
	pthread_mutex_unlock(&ps->src_lock);
	return 0;
}

bool path_is_metered(const struct path *p)
{
	return p->mode_cfg == PATH_OVERFLOW || p->cap.bytes;
}

unsigned paths_sources(struct paths *ps, int family, struct in6_addr *ret, unsigned max)
{
	struct path_src src[PATHS_MAX];
	unsigned n = paths_sources_ex(ps, family, src, max < PATHS_MAX ? max : PATHS_MAX);

	for (unsigned i = 0; i < n; i++)
		ret[i] = src[i].addr;
	return n;
}

unsigned paths_sources_ex(struct paths *ps, int family, struct path_src *ret, unsigned max)
{
	int fi = family == AF_INET6 ? 1 : 0;
	unsigned n;

	if (!ps->n)
		return 0;
	pthread_mutex_lock(&ps->src_lock);
	n = ps->nsrc[fi] < max ? ps->nsrc[fi] : max;
	for (unsigned i = 0; i < n; i++) {
		ret[i].addr = ps->srcs[fi][i];
		memcpy(ret[i].ifname, ps->srcif[fi][i], IFNAMSIZ);
		ret[i].id = ps->srcid[fi][i];
		ret[i].neighbour = ps->srcnb[fi][i];
		ret[i].metered = ps->srcmetered[fi][i];
		ret[i].meter = ps->srcmeter[fi][i];
		ret[i].rtt_us = __atomic_load_n(&ps->p[ret[i].id].f[fi].probe_rtt_us, __ATOMIC_RELAXED);
		memcpy(ret[i].name, ps->srcname[fi][i], sizeof(ret[i].name));
		ret[i].probe_ok_ms = __atomic_load_n(&ps->p[ret[i].id].f[fi].probe_ok_ms,
						     __ATOMIC_RELAXED);
		ret[i].primary = ps->srcprimary[fi][i];
	}
	pthread_mutex_unlock(&ps->src_lock);
	return n;
}

bool paths_wan_source(struct paths *ps, int family, struct in6_addr *ret,
		      char ifname[IFNAMSIZ])
{
	int fi = family == AF_INET6 ? 1 : 0;
	bool found = false;

	pthread_mutex_lock(&ps->src_lock);
	for (unsigned i = 0; i < ps->nsrc[fi] && !found; i++)
		if (!ps->srcnb[fi][i]) {
			*ret = ps->srcs[fi][i];
			memcpy(ifname, ps->srcif[fi][i], IFNAMSIZ);
			found = true;
		}
	pthread_mutex_unlock(&ps->src_lock);
	return found;
}

/* ---- probes ---- */

static void mptcp_verdict(struct path *p, struct path_fam *f, enum path_mptcp v,
			  const char *why, bool *changed)
{
	char a[ADDR_STRLEN];

	if (f->mptcp == v)
		return;
	if (v == PATH_MPTCP_NO)
		log_warn("path %s: the network from %s to the concentrator does not carry MPTCP (%s): "
			 "no subflows there, new flows start on other paths", path_name(p),
			 addr_format_in6(&f->addr, 0, a), why);
	else if (f->mptcp == PATH_MPTCP_NO)
		log_info("path %s: MPTCP gets through again from %s", path_name(p),
			 addr_format_in6(&f->addr, 0, a));
	f->mptcp = v;
	*changed = true;
}

static void probe_end(struct path *p, struct path_fam *f, bool ok, uint64_t now,
		      unsigned interval, bool *changed)
{
	char a[ADDR_STRLEN];

	if (f->probe_mptcp) {
		/* What the MPTCP probe says is about MPTCP, not reachability:
		 * a reply on a fallen-back connection means the option was
		 * stripped; no reply at all is judged by a plain probe, at
		 * once (SYNs carrying the option dropped, or the path down). */
		if (ok) {
			mptcp_verdict(p, f, sock_is_mptcp(f->probe_fd) ? PATH_MPTCP_YES : PATH_MPTCP_NO,
				      "the probe's connection fell back to TCP", changed);
			f->mptcp_strikes = 0;
		} else {
			f->mptcp_suspect = true;
		}
		if (f->probe_fd >= 0)
			close(f->probe_fd);
		f->probe_fd = -1;
		f->probe_mptcp = false;
		f->probe_next_ms = ok ? now + interval : now;
		if (!ok)
			return;
	} else if (f->mptcp_suspect) {
		/* Twice in a row: an MPTCP probe unanswered, the plain one
		 * right after answered. Once is not enough: a path that was
		 * just coming up (a route still being learned) fails the one
		 * and answers the other, and would lose its subflows until the
		 * next recheck (tests/netns/cluster.sh caught it). */
		f->mptcp_suspect = false;
		if (ok && ++f->mptcp_strikes >= 2)
			mptcp_verdict(p, f, PATH_MPTCP_NO,
				      "plain TCP is answered, connections carrying MPTCP are not", changed);
		else if (ok)
			f->mptcp_retry = true;
	}
	if (f->probe_fd >= 0)
		close(f->probe_fd);
	f->probe_fd = -1;
	f->probe_next_ms = now + interval;
	if (ok) {
		/* (read by the workers: paths_sources_ex) */
		__atomic_store_n(&f->probe_rtt_us, (uint32_t)(log_now_us() - f->probe_start_us),
				 __ATOMIC_RELAXED);
		f->probe_fails = 0;
		/* Read by the UDP thread (paths_sources_ex). */
		__atomic_store_n(&f->probe_ok_ms, now, __ATOMIC_RELAXED);
		if (f->probe_dead) {
			f->probe_dead = false;
			*changed = true;
			log_info("path %s: concentrator reachable again from %s", path_name(p),
				 addr_format_in6(&f->addr, 0, a));
		}
		return;
	}
	if (++f->probe_fails >= 2 && !f->probe_dead) {
		f->probe_dead = true;
		*changed = true;
		log_warn("path %s: concentrator unreachable from %s (carrier up): path marked down",
			 path_name(p), addr_format_in6(&f->addr, 0, a));
	}
}

static void probe_start(struct paths *ps, struct path *p, struct path_fam *f,
			uint64_t now, bool *changed)
{
	struct sockaddr_storage src;
	socklen_t sl;
	int fd, one = 1;

	f->probe_start_ms = now;
	f->probe_start_us = log_now_us();
	sl = addr_from_in6(&f->addr, 0, &src);
	/* Mostly plain TCP (reachability); the first probe and every
	 * MPTCP_RECHECK-th are MPTCP, to learn whether the network carries
	 * it (an MPTCP probe costs the concentrator a connection with joins
	 * from the other paths, so not every time). */
	f->probe_mptcp = !f->mptcp_suspect &&
		(f->mptcp == PATH_MPTCP_UNKNOWN || f->mptcp_retry ||
		 f->probe_count % MPTCP_RECHECK == 0);
	f->mptcp_retry = false;
	f->probe_count++;
	fd = socket(src.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    f->probe_mptcp ? IPPROTO_MPTCP : IPPROTO_TCP);
	if (fd < 0 && f->probe_mptcp) {
		f->probe_mptcp = false;  /* no MPTCP here at all: say nothing */
		fd = socket(src.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	}
	if (fd < 0)
		return;
	f->probe_fd = fd;
	f->probe_got = 0;
	f->probe_sent = false;
	/* Bound to the path's address, the rules send it out of this path. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&src, sl) < 0 ||
	    (connect(fd, (struct sockaddr *)&ps->probe_to, ps->probe_to_len) < 0 &&
	     errno != EINPROGRESS))
		probe_end(p, f, false, now, ps->probe_interval_ms, changed);
}

void paths_cookie(const struct cookie_key *k, int fd, const struct cookie_dest *dst,
		  uint8_t out[COOKIE_LEN])
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct in6_addr src;

	memset(&src, 0, sizeof(src));
	if (!k->nat && (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
			addr_to_in6((struct sockaddr *)&ss, &src, NULL) < 0))
		memset(&src, 0, sizeof(src));
	if (cookie_make(out, k, k->nat ? COOKIE_F_NAT : 0, (uint32_t)time(NULL), &src, dst) < 0)
		memset(out, 0, COOKIE_LEN);  /* refused as malformed: says what went wrong */
}

unsigned paths_probe_fds(struct paths *ps, struct pollfd *pfd, unsigned max)
{
	unsigned n = 0;

	for (unsigned i = 0; i < ps->n; i++)
		for (int fi = 0; fi < 2; fi++) {
			struct path_fam *f = &ps->p[i].f[fi];

			if (f->probe_fd < 0 || n == max)
				continue;
			pfd[n].fd = f->probe_fd;
			/* Connected: send Info; then wait for the reply. */
			pfd[n].events = !f->probe_sent ? POLLOUT : POLLIN;
			pfd[n].revents = 0;
			n++;
		}
	return n;
}

bool paths_probe_run(struct paths *ps, const struct pollfd *pfd, unsigned n,
		     uint64_t now, uint64_t *next_ms)
{
	bool changed = false;
	uint64_t next = now + (ps->probe_interval_ms ? ps->probe_interval_ms : 60000);
	int fam = ps->probe_to.ss_family;

	if (!ps->probe_interval_ms || !fam)
		return false;
	for (unsigned i = 0; i < ps->n; i++)
		for (int fi = 0; fi < 2; fi++) {
			struct path *p = &ps->p[i];
			struct path_fam *f = &p->f[fi];
			short rev = 0;

			if ((fam == AF_INET) != (fi == 0))
				continue;  /* the concentrator is of the other family */
			for (unsigned k = 0; k < n; k++)
				if (pfd[k].fd == f->probe_fd && f->probe_fd >= 0)
					rev = pfd[k].revents;
			if (f->probe_fd >= 0 && rev) {
				if (rev & (POLLERR | POLLHUP) && !(rev & POLLIN)) {
					probe_end(p, f, false, now, ps->probe_interval_ms, &changed);
				} else if ((rev & POLLOUT) && !f->probe_sent) {
					/* Connected: an Info request, answered with the
					 * concentrator's Supported TCP Extensions. */
					struct convert_writer w;
					int len;

					convert_writer_init(&w, f->probe_buf, sizeof(f->probe_buf));
					convert_put_info(&w);
					if (ps->key) {
						uint8_t c[COOKIE_LEN];

						paths_cookie(ps->key, f->probe_fd, NULL, c);
						convert_put_cookie(&w, c, sizeof(c));
					}
					len = convert_writer_finish(&w);
					if (len < 0 || send(f->probe_fd, f->probe_buf, (size_t)len,
							    MSG_NOSIGNAL) != len)
						probe_end(p, f, false, now, ps->probe_interval_ms, &changed);
					else
						f->probe_sent = true;
				} else if (rev & POLLIN) {
					struct convert_decode_opts o = { .role = CONVERT_FROM_CONVERTER,
									 .max_len = 60 };
					struct convert_msg m;
					struct convert_diag d;
					ssize_t k = recv(f->probe_fd, f->probe_buf + f->probe_got,
							 (size_t)(60 - f->probe_got), 0);
					int dr;

					if (k > 0)
						f->probe_got += (unsigned)k;
					else
						o.flags = CONVERT_F_EOF;
					/* A valid reply: the path reaches the concentrator.
					 * An Error about the request or the client (0-63,
					 * e.g. this path's address not allowed) makes the
					 * path as useless for flows as silence; one about
					 * the concentrator's resources (64-95, e.g. this
					 * home at its flow quota) says nothing about the
					 * path, and must not take it down. */
					dr = convert_decode(f->probe_buf, f->probe_got, &o, &m, &d);
					if (dr > 0) {
						/* Said once per change, not once a second. */
						uint16_t e = (m.present & CONVERT_HAS_ERROR) ? m.error.code + 1 : 0;

						if (e && e != f->probe_err)
							log_warn("path %s: the concentrator answers probes with error %u %s%s",
								 path_name(p), e - 1, convert_error_name(e - 1),
								 e - 1 >= CONVERT_E_RESOURCE_EXCEEDED ?
								 " (its resources: the path stays up)" : "");
						f->probe_err = e;
					}
					if (dr != 0)
						probe_end(p, f, dr > 0 && (!(m.present & CONVERT_HAS_ERROR) ||
									   m.error.code >= CONVERT_E_RESOURCE_EXCEEDED),
							  now, ps->probe_interval_ms, &changed);
				}
			}
			if (f->probe_fd >= 0 && now - f->probe_start_ms >= ps->probe_timeout_ms)
				probe_end(p, f, false, now, ps->probe_interval_ms, &changed);
			/* Probe paths with carrier and an address; a dead path is
			 * probed too, to notice its return. */
			if (f->probe_fd < 0 && p->up && f->have_addr && p->mode != PATH_OFF &&
			    now >= f->probe_next_ms) {
				probe_start(ps, p, f, now, &changed);
			}
			if (f->probe_fd >= 0 && f->probe_start_ms + ps->probe_timeout_ms < next)
				next = f->probe_start_ms + ps->probe_timeout_ms;
			if (f->probe_fd < 0 && f->probe_next_ms > now && f->probe_next_ms < next)
				next = f->probe_next_ms;
		}
	*next_ms = next;
	return changed;
}

/* Everything of one path's in the kernel: probes, endpoints, rules, its
 * table's default route. */
static void path_teardown(struct paths *ps, struct path *p)
{
	for (int fi = 0; fi < 2; fi++) {
		struct path_fam *f = &p->f[fi];
		int family = fi ? AF_INET6 : AF_INET;

		if (f->probe_fd >= 0)
			close(f->probe_fd);
		f->probe_fd = -1;
		if (f->ep_id && ps->pm_open)
			pm_del(&ps->pm, f->ep_id);
		if (f->ep_id && ps->upm.open)
			upm_path_off(&ps->upm, ps, (unsigned)(p - ps->p), fi);
		f->ep_id = 0;
		if (!ps->rt_open)
			continue;
		if (f->rule_from)
			rt_rule(&ps->rt, false, family, &f->rule_addr, NULL, p->table, p->prio);
		if (f->rule_oif)
			rt_rule(&ps->rt, false, family, NULL, p->ifname, p->table, p->prio);
		rt_default(&ps->rt, false, family, NULL, 0, p->table, false);
		f->rule_from = f->rule_oif = false;
		f->usable = f->was_usable = false;
	}
}

void paths_cleanup(struct paths *ps)
{
	if (!ps->inited)
		return;  /* paths_init never ran: nothing of ours is out there */
	for (unsigned i = 0; i < ps->n; i++)
		path_teardown(ps, &ps->p[i]);
	if (ps->pm_open)
		pm_close(&ps->pm);
	upm_close(&ps->upm);
	if (ps->ev_open)
		rt_close(&ps->ev);
	if (ps->rt_open)
		rt_close(&ps->rt);
	ps->pm_open = ps->ev_open = ps->rt_open = false;
}

int paths_update(struct paths *ps, const struct paths *want)
{
	unsigned users = 0, changed = 0;

	for (unsigned k = 0; k < want->n; k++) {
		const struct path *w = &want->p[k];
		struct path *p = NULL;

		for (unsigned i = 0; i < ps->n; i++)
			if (!ps->p[i].neighbour && !strcmp(ps->p[i].ifname, w->ifname))
				p = &ps->p[i];
		if (!p) {
			if (ps->n == PATHS_MAX) {
				log_warn("reload: path %s not added: %u paths at most", w->ifname,
					 PATHS_MAX);
				continue;
			}
			p = &ps->p[ps->n];
			*p = *w;
			p->f[0].probe_fd = p->f[1].probe_fd = -1;
			p->table = ps->table_base + 1 + ps->n;
			p->prio = ps->prio_base + ps->n;
			ps->n++;
			set_loose_rp_filter(p->ifname);
			log_info("reload: path %s added (%s)", p->ifname, path_mode_name(p->mode));
			changed++;
			continue;
		}
		if (p->mode_cfg != w->mode)
			log_info("reload: path %s: mode %s -> %s", p->ifname,
				 path_mode_name(p->mode_cfg), path_mode_name(w->mode));
		p->mode_cfg = w->mode;
		/* The cap's settings. What it counted stays, under a new
		 * cycle= too (the cycle that holds now is adopted). A cap
		 * removed or added starts from nothing: the counter's last
		 * figure is not this line's since (the state file may have
		 * one for an added cap: caps_load after). */
		if (!w->cap.bytes || !p->cap.bytes) {
			p->cap.cycle_start = 0;
			p->cap.used = p->cap.saved = 0;
			p->cap.have_ctr = false;
			p->cap.grace_until_ms = 0;
			p->cap.recycle = false;
		} else if (p->cap.day != w->cap.day || p->cap.ndays != w->cap.ndays) {
			p->cap.recycle = true;
		}
		p->cap.bytes = w->cap.bytes;
		p->cap.day = w->cap.day;
		p->cap.ndays = w->cap.ndays;
		p->cap.nat = w->cap.nat;
		memcpy(p->cap.at, w->cap.at, sizeof(p->cap.at));
		/* New thresholds judge what was counted now. */
		p->cap.level = p->cap.bytes ? caps_level(&p->cap) : -1;
		{
			enum path_mode m = caps_effective_mode(p);

			changed += p->mode != m;
			p->mode = m;
		}
		p->down_bps = w->down_bps;
		p->up_bps = w->up_bps;
		for (int fi = 0; fi < 2; fi++) {
			changed += p->f[fi].gw_given != w->f[fi].gw_given ||
				memcmp(&p->f[fi].gw_cfg, &w->f[fi].gw_cfg, 16);
			p->f[fi].gw_given = w->f[fi].gw_given;
			p->f[fi].gw_cfg = w->f[fi].gw_cfg;
		}
	}
	/* A path no longer configured is turned off: its endpoints, rules and
	 * route go; its slot (and table number) stays for a later reload. */
	for (unsigned i = 0; i < ps->n; i++) {
		struct path *p = &ps->p[i];
		bool kept = p->neighbour;  /* the mesh's, not the configuration's */

		for (unsigned k = 0; k < want->n; k++)
			if (!strcmp(p->ifname, want->p[k].ifname))
				kept = true;
		if (!kept && p->mode != PATH_OFF) {
			log_info("reload: path %s removed (off until restart or re-added)", p->ifname);
			path_teardown(ps, p);
			p->mode = p->mode_cfg = PATH_OFF;
			changed++;
		}
		if (p->mode != PATH_OFF)
			users++;
	}
	ps->probe_interval_ms = want->probe_interval_ms;
	ps->join_after_ms = want->join_after_ms;
	raise_limits(ps, users);
	return (int)changed;
}

int paths_event_fd(const struct paths *ps)
{
	return ps->ev_open ? rt_fd(&ps->ev) : -1;
}

int paths_events_drain(struct paths *ps)
{
	/* Our own changes (a path's routes refreshed every 2 s, rules,
	 * addresses of nothing) come back as events too: they are not news,
	 * and taking them as news made every reconcile schedule the next. */
	return ps->ev_open ? rt_events_drain(&ps->ev, ps->rt.nl.portid) : 0;
}

struct path *paths_neighbour_up(struct paths *ps, const char *ifname, const struct in6_addr *via,
				const struct in6_addr *src, enum path_mode mode)
{
	char v[ADDR_STRLEN];
	struct path *p = NULL, *off = NULL;
	unsigned nb = 0;

	for (unsigned i = 0; i < ps->n; i++) {
		if (!ps->p[i].neighbour)
			continue;
		nb++;
		if (!memcmp(&ps->p[i].nb_via, via, sizeof(*via)))
			p = &ps->p[i];
		else if (ps->p[i].mode == PATH_OFF && !off)
			off = &ps->p[i];
	}
	if (!p) {
		uint32_t table, prio;

		/* A departed neighbour's slot (torn down when it went off) is
		 * reused; a new one only up to PATHS_MAX_NEIGHBOURS, so
		 * neighbours coming and going never use up the slots a reload
		 * needs for WAN paths. */
		if (off) {
			p = off;
			table = p->table;
			prio = p->prio;
		} else if (ps->n == PATHS_MAX || nb >= PATHS_MAX_NEIGHBOURS) {
			return NULL;
		} else {
			p = &ps->p[ps->n];
			table = ps->table_base + 1 + ps->n;
			prio = ps->prio_base + ps->n;
			ps->n++;
		}
		memset(p, 0, sizeof(*p));
		p->f[0].probe_fd = p->f[1].probe_fd = -1;
		p->table = table;
		p->prio = prio;
		p->neighbour = true;
		p->nb_via = *via;
		snprintf(p->ifname, sizeof(p->ifname), "%s", ifname);
		snprintf(p->name, sizeof(p->name), "%s~%s", ifname, addr_format_in6(via, 0, v));
		set_loose_rp_filter(ifname);
		raise_limits(ps, ps->n);
	}
	p->nb_src = *src;
	p->mode = p->mode_cfg = mode;
	p->cap.level = -1;
	p->f[0].gw_given = true;
	p->f[0].gw_cfg = *via;
	log_info("path %s: neighbour lends its line (%s)", path_name(p), path_mode_name(mode));
	return p;
}

void paths_neighbour_down(struct paths *ps, struct path *p)
{
	if (p->mode == PATH_OFF)
		return;
	log_info("path %s: neighbour gone", path_name(p));
	path_teardown(ps, p);
	p->mode = p->mode_cfg = PATH_OFF;
}
