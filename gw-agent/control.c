/* The control socket and `gw-agent status`: the `multipath -c` of the old
 * firmware. A unix stream socket (root only, 0600: it lists who talks to
 * whom on the LAN); a client sends one line ("status") and reads a report
 * until EOF.
 *
 * Paths belong to the main thread and flows to the workers, and neither is
 * read from another thread: the main thread formats the paths when it
 * accepts the connection, then a short-lived thread asks every worker for a
 * snapshot of its flows (each worker writes one on its next tick, within
 * 250 ms, and reads its own sockets' subflows with MPTCP_SUBFLOW_ADDRS and
 * MPTCP_TCPINFO), waits up to a second, writes the report and closes. So a
 * slow or stuck client never holds up the event loop or the data path. */
#include "agent.h"
#include "sock.h"
#include "web.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/mptcp.h>
#include <linux/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef SOL_MPTCP
#define SOL_MPTCP 284
#endif

#define CONTROL_MAX_CLIENTS 4  /* a->control_cfd's size */
#define SNAP_MAX_SUBFLOWS 16
#define SNAP_MAX_JSON_FLOWS 256  /* per worker: the page lists no more */

/* "12.3 MiB": for people, not for parsers (metrics are for parsers). */
static const char *human_bytes(uint64_t v, char buf[16])
{
	static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double d = (double)v;
	unsigned u = 0;

	while (d >= 1024 && u < 4) {
		d /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, 16, "%llu B", (unsigned long long)v);
	else
		snprintf(buf, 16, "%.1f %s", d, unit[u]);
	return buf;
}

/* A counter file's number: 0, or -errno. */
static int read_u64_file(const char *path, uint64_t *ret)
{
	char buf[32];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	*ret = strtoull(buf, NULL, 10);
	return 0;
}

void control_path_bytes(const char *ifname, bool neighbour, const struct in6_addr *src,
			struct control_counts *cc, uint64_t *ret_rx, uint64_t *ret_tx)
{
	if (!neighbour) {
		control_iface_bytes(ifname, ret_rx, ret_tx);
		return;
	}
	/* What went through this neighbour, not the whole mesh interface's;
	 * the counters are read once per status or scrape. */
	if (!cc->read) {
		cc->n = mesh_counters(cc->c, MESH_MAX_NEIGHBOURS * 2);
		cc->read = true;
	}
	mesh_count_find(cc->c, cc->n, src, ret_rx, ret_tx);
}

int iface_bytes(const char *ifname, uint64_t *ret_rx, uint64_t *ret_tx)
{
	char p[96];
	int r;

	snprintf(p, sizeof(p), "/sys/class/net/%s/statistics/rx_bytes", ifname);
	r = read_u64_file(p, ret_rx);
	snprintf(p, sizeof(p), "/sys/class/net/%s/statistics/tx_bytes", ifname);
	return r < 0 ? r : read_u64_file(p, ret_tx);
}

void control_iface_bytes(const char *ifname, uint64_t *ret_rx, uint64_t *ret_tx)
{
	*ret_rx = *ret_tx = 0;
	if (iface_bytes(ifname, ret_rx, ret_tx) < 0)
		*ret_rx = *ret_tx = 0;   /* gone: nothing to show */
}

const char *control_path_state(const struct path *p, int fi)
{
	const struct path_fam *f = &p->f[fi];

	if (p->mode == PATH_OFF)
		return p->neighbour ? "gone" : "off";
	if (!p->up)
		return "down (link)";
	if (!f->have_addr)
		return "down (no address)";
	if (!f->have_gw)
		return "down (no gateway)";
	if (f->probe_dead)
		return "down (probe)";
	if (f->mptcp == PATH_MPTCP_NO)
		return "up (no MPTCP)";
	if (p->mode == PATH_HANDOVER && !f->ep_id)
		return "standby";
	return "up";
}

/* Main thread: the header and the paths. */
static void format_paths(struct agent *a, struct mbuf *t)
{
	struct agent_counters n;
	struct relay_stats st;
	uint64_t intercepted, via, direct, failed, active;
	char c[ADDR_STRLEN];
	uint64_t up_s = (log_now_ms() - a->started_ms) / 1000;

	agent_totals(a, &n, &st);
	intercepted = n.intercepted;
	via = n.via_concentrator;
	direct = n.fallback_direct;
	failed = n.failed;
	active = st.active;
	mbuf_printf(t, "gw-agent %s, up %lluh%02llum%02llus, %u workers\n", AGENT_VERSION,
		 (unsigned long long)(up_s / 3600), (unsigned long long)(up_s / 60 % 60),
		 (unsigned long long)(up_s % 60), a->cfg.workers);
	mbuf_printf(t, "flows: %llu active; %llu intercepted: %llu via concentrator, "
		 "%llu direct fallback, %llu failed\n",
		 (unsigned long long)active, (unsigned long long)intercepted,
		 (unsigned long long)via, (unsigned long long)direct,
		 (unsigned long long)failed);
	{
		char url[400];

		web_url(a, url, sizeof(url));
		if (url[0])
			mbuf_printf(t, "page %s\n", url);
	}
	for (unsigned i = 0; i < a->cfg.nconc; i++)
		mbuf_printf(t, "concentrator %s%s\n",
			 addr_format((const struct sockaddr *)&a->cfg.conc[i], c),
			 i == 0 ? (a->paths.n && a->paths.probe_interval_ms ? " (probed)" : "")
				: " (backup)");
	if (!a->paths.n) {
		mbuf_printf(t, "\nno paths configured: subflows follow the main routing table\n");
		return;
	}
	struct control_counts cc = { .read = false };
	/* As wide as the longest name (a neighbour's, IFACE~ADDRESS): the
	 * columns after it stay in line. */
	int w = 10;

	for (unsigned i = 0; i < a->paths.n; i++)
		if ((int)strlen(path_name(&a->paths.p[i])) > w)
			w = (int)strlen(path_name(&a->paths.p[i]));
	mbuf_printf(t, "\n%-*s %-8s %-18s %-28s %-26s %-10s %-11s %-11s %s\n", w, "PATH", "MODE",
		 "STATE", "ADDRESS", "GATEWAY", "PROBE RTT", "RX", "TX", "ENDPOINT");
	for (unsigned i = 0; i < a->paths.n; i++) {
		const struct path *p = &a->paths.p[i];
		uint64_t rx, tx;
		char rxb[16], txb[16];

		control_path_bytes(p->ifname, p->neighbour, &p->nb_src, &cc, &rx, &tx);
		for (int fi = 0; fi < 2; fi++) {
			const struct path_fam *f = &p->f[fi];
			char ad[ADDR_STRLEN] = "-", gw[ADDR_STRLEN] = "-", rtt[16] = "-", ep[24] = "-";

			if (fi == 1 && !f->have_addr)
				continue;
			if (f->have_addr)
				addr_format_in6(&f->addr, 0, ad);
			if (f->have_gw)
				addr_format_in6(&f->gw, 0, gw);
			if (f->usable && f->probe_rtt_us && a->paths.probe_interval_ms)
				snprintf(rtt, sizeof(rtt), "%.1f ms", f->probe_rtt_us / 1000.0);
			if (f->ep_id)
				snprintf(ep, sizeof(ep), "%u%s", f->ep_id,
					 (f->ep_flags & PM_FLAG_BACKUP) ? " backup" : "");
			mbuf_printf(t, "%-*s %-8s %-18s %-28s %-26s %-10s %-11s %-11s %s\n", w,
				 fi == 0 ? path_name(p) : "", fi == 0 ? path_mode_name(p->mode) : "",
				 control_path_state(p, fi), ad, gw, rtt,
				 fi == 0 ? human_bytes(rx, rxb) : "", fi == 0 ? human_bytes(tx, txb) : "",
				 ep);
		}
	}
	for (unsigned i = 0; i < a->paths.n; i++) {
		const struct path *p = &a->paths.p[i];
		const struct path_cap *cp = &p->cap;
		char since[16] = "?", at[96] = "";
		struct tm tm;

		if (!cp->bytes || p->neighbour)
			continue;
		if (cp->cycle_start && localtime_r(&cp->cycle_start, &tm))
			strftime(since, sizeof(since), "%Y-%m-%d", &tm);
		for (unsigned k = 0; k < cp->nat; k++)
			snprintf(at + strlen(at), sizeof(at) - strlen(at), "%s%u%%: %s", k ? ", " : "",
				 cp->at[k].pct, path_mode_name((enum path_mode)cp->at[k].action));
		/* Decimal, as operators bill: GB, or MB for a small cap. */
		double unit = cp->bytes >= 1000000000ull ? 1e9 : 1e6;

		mbuf_printf(t, "cap %s: %.2f of %.2f %s (%llu%%) since %s; at %s; %s%s\n", p->ifname,
			    cp->used / unit, cp->bytes / unit, unit > 1e6 ? "GB" : "MB",
			    (unsigned long long)(cp->used / (cp->bytes / 100 ? cp->bytes / 100 : 1)),
			    since, at,
			    cp->level >= 0 ? "reached: the line is " : "under the thresholds",
			    cp->level >= 0 ? path_mode_name(p->mode) : "");
	}
	pthread_mutex_lock(&a->speedtests.lock);
	for (unsigned i = 0; i < a->paths.n; i++) {
		const struct speedtest_result *r = &a->speedtests.r[i];
		char when[32] = "";
		struct tm tm;

		if (strcmp(r->name, path_name(&a->paths.p[i])) || (!r->at && !r->running))
			continue;
		if (r->at && localtime_r(&r->at, &tm))
			strftime(when, sizeof(when), " at %Y-%m-%d %H:%M", &tm);
		if (r->running)
			mbuf_printf(t, "speedtest %s: running\n", r->name);
		else if (r->error[0])
			mbuf_printf(t, "speedtest %s: failed%s: %s\n", r->name, when, r->error);
		else
			mbuf_printf(t, "speedtest %s: %.1f Mbit/s down, %.1f Mbit/s up%s\n", r->name,
				    r->down_bps / 1e6, r->up_bps / 1e6, when);
	}
	pthread_mutex_unlock(&a->speedtests.lock);
	if (overflow_wanted(&a->paths)) {
		const struct overflow_figures *o = &a->overflow.fig;

		if (!a->overflow.last_ms)
			mbuf_printf(t, "overflow: backup (measuring: the first figures within a second)\n");
		else if (!o->configured)
			mbuf_printf(t, "overflow: backup (no on or master line with down= or up= is up, "
				    "or no overflow line is)\n");
		else
			mbuf_printf(t, "overflow: %s; on/master lines %.1f of %.1f Mbit/s down, %.1f of "
				    "%.1f up; overflow lines %.1f down, %.1f up (active over %u%%)\n",
				    o->active ? "active" : "backup", o->use_bps[0] / 1e6,
				    o->cap_bps[0] / 1e6, o->use_bps[1] / 1e6, o->cap_bps[1] / 1e6,
				    o->ovf_bps[0] / 1e6, o->ovf_bps[1] / 1e6, a->cfg.overflow_share);
	}
}

static json_t *jaddr(const struct in6_addr *a, bool have)
{
	char b[ADDR_STRLEN];

	return have ? json_string(addr_format_in6(a, 0, b)) : json_null();
}

/* Main thread: what format_paths says, as JSON (status json, the page). */
static json_t *json_paths(struct agent *a)
{
	struct agent_counters n;
	struct relay_stats st;
	struct control_counts cc = { .read = false };
	struct timespec now;
	json_t *root = json_object(), *conc = json_array(), *lines = json_array(),
	       *cls = json_array();
	char c[ADDR_STRLEN];

	if (!root || !conc || !lines || !cls) {
		json_decref(root);
		json_decref(conc);
		json_decref(lines);
		json_decref(cls);
		return NULL;
	}
	agent_totals(a, &n, &st);
	clock_gettime(CLOCK_REALTIME, &now);
	json_object_set_new(root, "version", json_string(AGENT_VERSION));
	json_object_set_new(root, "time_ms", json_integer((json_int_t)now.tv_sec * 1000 +
							   now.tv_nsec / 1000000));
	json_object_set_new(root, "uptime_s",
			    json_integer((json_int_t)((log_now_ms() - a->started_ms) / 1000)));
	json_object_set_new(root, "workers", json_integer(a->cfg.workers));
	json_object_set_new(root, "flows_summary",
			    json_pack("{sIsIsIsIsI}", "active", (json_int_t)st.active,
				      "intercepted", (json_int_t)n.intercepted,
				      "via_concentrator", (json_int_t)n.via_concentrator,
				      "direct_fallback", (json_int_t)n.fallback_direct,
				      "failed", (json_int_t)n.failed));
	for (unsigned i = 0; i < a->cfg.nconc; i++)
		json_array_append_new(conc, json_string(addr_format((const struct sockaddr *)&a->cfg.conc[i], c)));
	json_object_set_new(root, "concentrators", conc);
	for (unsigned i = 0; i < a->paths.n; i++) {
		const struct path *p = &a->paths.p[i];
		const struct path_cap *cp = &p->cap;
		json_t *l = json_object(), *fams = json_array();
		uint64_t rx, tx;

		if (!l || !fams) {
			json_decref(l);
			json_decref(fams);
			continue;
		}
		control_path_bytes(p->ifname, p->neighbour, &p->nb_src, &cc, &rx, &tx);
		json_object_set_new(l, "name", json_string(path_name(p)));
		json_object_set_new(l, "interface", json_string(p->ifname));
		json_object_set_new(l, "neighbour", json_boolean(p->neighbour));
		json_object_set_new(l, "mode", json_string(path_mode_name(p->mode)));
		json_object_set_new(l, "mode_configured", json_string(path_mode_name(p->mode_cfg)));
		json_object_set_new(l, "rx_bytes", json_integer((json_int_t)rx));
		json_object_set_new(l, "tx_bytes", json_integer((json_int_t)tx));
		json_object_set_new(l, "down_bps", json_integer((json_int_t)p->down_bps));
		json_object_set_new(l, "up_bps", json_integer((json_int_t)p->up_bps));
		for (int fi = 0; fi < 2; fi++) {
			const struct path_fam *f = &p->f[fi];

			if (fi == 1 && !f->have_addr)
				continue;
			json_array_append_new(fams, json_pack(
				"{sssssoso so so sb}", "family", fi ? "ipv6" : "ipv4",
				"state", control_path_state(p, fi),
				"address", jaddr(&f->addr, f->have_addr),
				"gateway", jaddr(&f->gw, f->have_gw),
				"probe_rtt_ms", f->usable && f->probe_rtt_us && a->paths.probe_interval_ms
					? json_real(f->probe_rtt_us / 1000.0) : json_null(),
				"endpoint", f->ep_id ? json_integer(f->ep_id) : json_null(),
				"backup", f->ep_id && (f->ep_flags & PM_FLAG_BACKUP)));
		}
		json_object_set_new(l, "families", fams);
		if (cp->bytes && !p->neighbour) {
			json_t *at = json_array();

			for (unsigned k = 0; at && k < cp->nat; k++)
				json_array_append_new(at, json_pack("{sIss}", "percent", (json_int_t)cp->at[k].pct,
					"action", path_mode_name((enum path_mode)cp->at[k].action)));
			json_object_set_new(l, "cap", json_pack("{sIsIsIsoso}",
				"bytes", (json_int_t)cp->bytes, "used_bytes", (json_int_t)cp->used,
				"cycle_start", (json_int_t)cp->cycle_start,
				"reached", cp->level >= 0 ? json_string(path_mode_name(p->mode)) : json_null(),
				"at", at ? at : json_null()));
		} else {
			json_object_set_new(l, "cap", json_null());
		}
		json_array_append_new(lines, l);
	}
	json_object_set_new(root, "lines", lines);
	if (overflow_wanted(&a->paths) && a->overflow.last_ms) {
		const struct overflow_figures *o = &a->overflow.fig;

		/* (json_pack's I takes a json_int_t: every number cast) */
		json_object_set_new(root, "overflow", json_pack("{sbsbs[II]s[II]s[II]sI}",
			"configured", (int)o->configured, "active", (int)o->active,
			"use_bps", (json_int_t)o->use_bps[0], (json_int_t)o->use_bps[1],
			"capacity_bps", (json_int_t)o->cap_bps[0], (json_int_t)o->cap_bps[1],
			"overflow_bps", (json_int_t)o->ovf_bps[0], (json_int_t)o->ovf_bps[1],
			"share_percent", (json_int_t)a->cfg.overflow_share));
	} else {
		json_object_set_new(root, "overflow", json_null());
	}
	for (unsigned k = 0; k < a->classes.n; k++) {
		const struct agent_class *x = &a->classes.c[k];
		json_t *doms = json_array();

		for (unsigned d = 0; doms && d < x->ndomain; d++)
			json_array_append_new(doms, json_string(x->domain[d]));
		json_t *ls = json_array();

		for (unsigned l = 0; ls && l < x->nlines; l++)
			json_array_append_new(ls, json_string(x->lines[l]));
		json_array_append_new(cls, json_pack("{sssssossso}", "name", x->name,
			"action", x->action == CLASS_PIN ? "pin" : x->action == CLASS_NO_METERED ?
				  "no-metered" : "bypass",
			"lines", ls ? ls : json_null(), "line", x->line,
			"domains", doms ? doms : json_null()));
	}
	json_object_set_new(root, "classes", cls);
	{
		json_t *sts = json_object();

		pthread_mutex_lock(&a->speedtests.lock);
		for (unsigned i = 0; sts && i < a->paths.n; i++) {
			const struct speedtest_result *r = &a->speedtests.r[i];

			if (strcmp(r->name, path_name(&a->paths.p[i])) || (!r->at && !r->running))
				continue;
			json_object_set_new(sts, r->name, json_pack("{sbsIsIsIss}", "running", r->running,
				"down_bps", (json_int_t)r->down_bps, "up_bps", (json_int_t)r->up_bps,
				"at", (json_int_t)r->at, "error", r->error));
		}
		pthread_mutex_unlock(&a->speedtests.lock);
		json_object_set_new(root, "speedtests", sts ? sts : json_null());
	}
	return root;
}

/* The path a subflow's local address belongs to, from the main thread's
 * map (a copy: paths are the main thread's). A path keeps its last address
 * in the map, so a subflow of a path that just went down still names it. */
static const char *path_of(const struct control_pathmap *m, const struct in6_addr *a)
{
	for (unsigned i = 0; i < m->n; i++)
		if (!memcmp(&m->addr[i], a, sizeof(*a)))
			return m->name[i];
	return "?";
}

/* Main thread. */
static void pathmap_fill(const struct paths *ps, struct control_pathmap *m)
{
	m->n = 0;
	for (unsigned i = 0; i < ps->n; i++)
		for (int fi = 0; fi < 2; fi++)
			if (!IN6_IS_ADDR_UNSPECIFIED(&ps->p[i].f[fi].addr)) {
				m->addr[m->n] = ps->p[i].f[fi].addr;
				snprintf(m->name[m->n], sizeof(m->name[m->n]), "%s",
					 path_name(&ps->p[i]));
				m->n++;
			}
}

static const char *tcp_state_name(unsigned s)
{
	/* The kernel's TCP states (include/net/tcp_states.h, not in uapi). */
	static const char *n[] = {
		"?", "established", "syn-sent", "syn-recv", "fin-wait-1", "fin-wait-2",
		"time-wait", "closed", "close-wait", "last-ack", "listen", "closing",
	};

	return s < sizeof(n) / sizeof(n[0]) && n[s] ? n[s] : "?";
}

/* One MPTCP socket's subflows. The two getsockopts each walk the
 * connection's subflow list; if a subflow came or went in between, the
 * counts differ and we retry once, then show addresses only. */
static void format_subflows(const struct control_pathmap *ps, int fd, struct mbuf *t,
			    json_t *js)
{
	struct {
		struct mptcp_subflow_data d;
		struct mptcp_subflow_addrs a[SNAP_MAX_SUBFLOWS];
	} ab;
	struct {
		struct mptcp_subflow_data d;
		struct tcp_info ti[SNAP_MAX_SUBFLOWS];
	} tb;
	unsigned n = 0, nt = 0;

	for (int attempt = 0; attempt < 2; attempt++) {
		socklen_t al = sizeof(ab), tl = sizeof(tb);

		memset(&ab, 0, sizeof(ab));
		memset(&tb, 0, sizeof(tb));
		ab.d.size_subflow_data = sizeof(ab.d);
		ab.d.size_user = sizeof(ab.a[0]);
		tb.d.size_subflow_data = sizeof(tb.d);
		tb.d.size_user = sizeof(tb.ti[0]);
		if (getsockopt(fd, SOL_MPTCP, MPTCP_SUBFLOW_ADDRS, &ab, &al) < 0) {
			mbuf_printf(t, "    subflows: unavailable (%s)\n", strerror(errno));
			return;
		}
		n = ab.d.num_subflows;
		nt = getsockopt(fd, SOL_MPTCP, MPTCP_TCPINFO, &tb, &tl) == 0 ? tb.d.num_subflows : 0;
		if (n == nt)
			break;
	}
	mbuf_printf(t, "    %u subflow%s\n", n, n == 1 ? "" : "s");
	for (unsigned i = 0; i < n && i < SNAP_MAX_SUBFLOWS; i++) {
		const uint8_t *rec = (const uint8_t *)ab.a + (size_t)i * ab.d.size_user;
		struct mptcp_subflow_addrs sa;
		struct tcp_info ti;
		struct in6_addr la;
		char l[ADDR_STRLEN], r[ADDR_STRLEN], sb[16], rb[16];
		size_t k;

		if (ab.d.size_user < sizeof(sa.sa_local) * 2)
			break;
		memset(&sa, 0, sizeof(sa));
		memcpy(&sa, rec, ab.d.size_user < sizeof(sa) ? ab.d.size_user : sizeof(sa));
		addr_format(&sa.sa_local, l);
		addr_format(&sa.sa_remote, r);
		if (addr_to_in6(&sa.sa_local, &la, NULL) < 0)
			memset(&la, 0, sizeof(la));
		mbuf_printf(t, "    %-8s %s -> %s", path_of(ps, &la), l, r);
		if (n != nt || tb.d.size_user == 0) {
			mbuf_printf(t, "\n");
			if (js)
				json_array_append_new(js, json_pack("{ssssss}", "line", path_of(ps, &la),
								     "local", l, "remote", r));
			continue;
		}
		memset(&ti, 0, sizeof(ti));
		k = tb.d.size_user < sizeof(ti) ? tb.d.size_user : sizeof(ti);
		memcpy(&ti, (const uint8_t *)tb.ti + (size_t)i * tb.d.size_user, k);
		if (js)
			json_array_append_new(js, json_pack("{sssssssssfsIsIsI}", "line", path_of(ps, &la),
				"local", l, "remote", r, "state", tcp_state_name(ti.tcpi_state),
				"rtt_ms", ti.tcpi_rtt / 1000.0, "sent_bytes", (json_int_t)ti.tcpi_bytes_acked,
				"received_bytes", (json_int_t)ti.tcpi_bytes_received,
				"retransmits", (json_int_t)ti.tcpi_total_retrans));
		mbuf_printf(t, "  %s rtt %.1f ms cwnd %u sent %s received %s retrans %u\n",
			 tcp_state_name(ti.tcpi_state), ti.tcpi_rtt / 1000.0, ti.tcpi_snd_cwnd,
			 human_bytes(ti.tcpi_bytes_acked, sb), human_bytes(ti.tcpi_bytes_received, rb),
			 ti.tcpi_total_retrans);
	}
}

/* Worker thread: its flows, into a fresh buffer, and as JSON (*ret_json,
 * an array, the first SNAP_MAX_JSON_FLOWS). */
static char *format_flows(struct agent_worker *aw, const struct control_pathmap *map,
			  json_t **ret_json)
{
	struct relay_worker *w = &aw->rw;
	struct mbuf t = { 0 };
	json_t *jf = json_array();
	unsigned nj = 0;

	for (struct relay *r = NULL; (r = relay_next(w, r));) {
		char p[ADDR_STRLEN], d[ADDR_STRLEN], ub[16], db[16];
		bool direct = r->flags & AGENT_FLOW_DIRECT;
		const char *how = r->state == RELAY_HANDSHAKE ? "connecting" :
				  direct ? "direct (fallback)" : "via concentrator";
		json_t *js = NULL;

		if (r->state != RELAY_PUMP && r->state != RELAY_HANDSHAKE)
			continue;
		addr_format_in6(&r->peer, 0, p);
		addr_format_in6(&r->far, r->far_port, d);
		mbuf_printf(&t, "%s -> %s  %s  up %s down %s  %us\n", p, d, how,
			 human_bytes(r->half[0].bytes, ub), human_bytes(r->half[1].bytes, db),
			 w->now_s - r->since_s);
		if (jf && nj < SNAP_MAX_JSON_FLOWS) {
			js = json_array();
			json_array_append_new(jf, json_pack("{sssssssIsIsIso}", "client", p,
				"destination", d, "state", how, "up_bytes", (json_int_t)r->half[0].bytes,
				"down_bytes", (json_int_t)r->half[1].bytes,
				"age_s", (json_int_t)(w->now_s - r->since_s),
				"subflows", js ? json_incref(js) : json_null()));
			nj++;
		}
		if (r->state == RELAY_PUMP && !direct && r->fd[1] >= 0)
			format_subflows(map, r->fd[1], &t, js);
		json_decref(js);
	}
	*ret_json = jf;
	if (!t.s)
		t.s = strdup("");
	return t.s;
}

void control_worker_tick(struct agent_worker *aw)
{
	struct agent *a = aw->a;
	unsigned req = atomic_load(&a->snap_req);
	struct control_pathmap map;
	json_t *j = NULL;
	char *s;

	if (req == aw->snap_gen)
		return;
	pthread_mutex_lock(&a->snap_lock);
	map = a->snap_map;
	pthread_mutex_unlock(&a->snap_lock);
	s = format_flows(aw, &map, &j);
	pthread_mutex_lock(&a->snap_lock);
	free(aw->snap);
	aw->snap = s;
	json_decref(aw->snap_json);
	aw->snap_json = j;
	aw->snap_gen = req;
	pthread_cond_broadcast(&a->snap_cond);
	pthread_mutex_unlock(&a->snap_lock);
}

struct control_client {
	struct agent *a;
	int fd;
	struct mbuf t;
	json_t *j;                     /* the same as JSON (main thread's part) */
};

static void say(struct control_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct control_client *c, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		sock_write_all_until(c->fd, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1,
				     log_now_ms() + 5000);
}

/* "speedtest SECONDS [LINE]": each of our own lines that is up (or LINE),
 * one after the other, each line's result said as it comes. */
static void client_speedtest(struct control_client *c, const char *args)
{
	struct agent *a = c->a;
	struct agent_speedtests *st = &a->speedtests;
	char one[48] = "", names[PATHS_MAX][48];
	unsigned secs = 0, n = 0, failed = 0;
	json_t *l;
	size_t i;

	if (sscanf(args, "%u %47s", &secs, one) < 1 || secs < 1 || secs > CONVERT_SPEEDTEST_MAX_S) {
		say(c, "error: speedtest SECONDS [LINE], SECONDS 1-10\n");
		return;
	}
	json_array_foreach(c->j ? json_object_get(c->j, "lines") : NULL, i, l) {
		const char *name = json_string_value(json_object_get(l, "name"));

		if (!name || n == PATHS_MAX)
			continue;
		if (one[0] ? !strcmp(one, name) : !json_is_true(json_object_get(l, "neighbour")))
			snprintf(names[n++], sizeof(names[0]), "%s", name);
	}
	if (one[0] && !n)
		snprintf(names[n++], sizeof(names[0]), "%s", one);  /* said: no such line */
	if (!n)
		say(c, "no lines to test (no --path)\n");
	for (unsigned k = 0; k < n; k++) {
		char why[160];
		uint64_t until = log_now_ms() + 2000ull * secs + 20000;
		bool done = false;

		if (agent_speedtest_request(a, names[k], secs, why, sizeof(why)) < 0) {
			say(c, "%s: not tested: %s\n", names[k], why);
			failed++;
			continue;
		}
		pthread_mutex_lock(&st->lock);
		while (st->busy && !a->control_closing && log_now_ms() < until) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 300000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&st->done, &st->lock, &ts);
		}
		done = !st->busy;
		{
			/* The result under the name asked for. */
			struct speedtest_result res = { .error = "no such line" };

			for (unsigned s = 0; s < PATHS_MAX; s++)
				if (!strcmp(st->r[s].name, names[k]))
					res = st->r[s];
			pthread_mutex_unlock(&st->lock);
			if (!done)
				say(c, "%s: no result in time\n", names[k]);
			else if (res.error[0] || !res.at)
				say(c, "%s: failed: %s\n", names[k], res.error[0] ? res.error : "no result");
			else
				say(c, "%s: %.1f Mbit/s down, %.1f Mbit/s up\n", names[k],
				    res.down_bps / 1e6, res.up_bps / 1e6);
			failed += !done || res.error[0] || !res.at;
		}
		if (a->control_closing)
			break;
	}
	say(c, failed ? "done: %u failed\n" : "done\n", failed);
}

static void *client_main(void *arg)
{
	struct control_client *c = arg;
	struct agent *a = c->a;
	/* The request within 2 s, the whole answer within 5 s more: a client
	 * that trickles or reads slowly holds a thread (of
	 * CONTROL_MAX_CLIENTS) no longer. */
	uint64_t deadline = log_now_ms() + 2000;
	char line[64];
	ssize_t n;
	unsigned req;
	struct timespec until;
	bool json;
	json_t *jflows;

	n = sock_read_until(c->fd, line, sizeof(line) - 1, deadline);
	line[n > 0 ? n : 0] = 0;
	line[strcspn(line, "\r\n")] = 0;
	if (!strncmp(line, "speedtest ", 10)) {
		client_speedtest(c, line + 10);
		goto out;
	}
	if (strcmp(line, "status") != 0 && strcmp(line, "status json") != 0) {
		const char *msg = "error: unknown command (this agent knows: status, status json, "
				  "speedtest SECONDS [LINE])\n";

		sock_write_all_until(c->fd, msg, strlen(msg), log_now_ms() + 5000);
		goto out;
	}
	json = !strcmp(line, "status json");
	if (json && !c->j) {
		const char *msg = "{\"error\": \"out of memory\"}\n";

		sock_write_all_until(c->fd, msg, strlen(msg), log_now_ms() + 5000);
		goto out;
	}
	jflows = json ? json_array() : NULL;

	req = atomic_fetch_add(&a->snap_req, 1) + 1;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	mbuf_printf(&c->t, "\nFLOWS (LAN client -> destination)\n");
	pthread_mutex_lock(&a->snap_lock);
	for (unsigned i = 0; i < a->cfg.workers; i++) {
		struct agent_worker *aw = &a->workers[i];

		while ((int)(aw->snap_gen - req) < 0 && !a->control_closing &&
		       pthread_cond_timedwait(&a->snap_cond, &a->snap_lock, &until) == 0)
			;
		if ((int)(aw->snap_gen - req) < 0)
			mbuf_printf(&c->t, "(worker %u did not answer)\n", i);
		else
			mbuf_printf(&c->t, "%s", aw->snap ? aw->snap : "");
		/* A copy: the worker replaces (and frees) its own. */
		if (jflows && (int)(aw->snap_gen - req) >= 0 && aw->snap_json) {
			json_t *cp = json_deep_copy(aw->snap_json);

			if (cp)
				json_array_extend(jflows, cp);
			json_decref(cp);
		}
	}
	pthread_mutex_unlock(&a->snap_lock);
	if (json) {
		char *s;

		json_object_set_new(c->j, "flows", jflows ? jflows : json_null());
		s = json_dumps(c->j, JSON_COMPACT);
		if (s) {
			sock_write_all_until(c->fd, s, strlen(s), log_now_ms() + 5000);
			sock_write_all_until(c->fd, "\n", 1, log_now_ms() + 5000);
		}
		free(s);
		goto out;
	}
	{
		char *u = agent_udp_status(a);

		if (u)
			mbuf_printf(&c->t, "\nUDP (LAN source, mode, path)\n%s", u);
		free(u);
	}
	if (c->t.s)
		sock_write_all_until(c->fd, c->t.s, c->t.len, log_now_ms() + 5000);
out:
	pthread_mutex_lock(&a->snap_lock);
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (a->control_cfd[i] == c->fd)
			a->control_cfd[i] = -1;
	pthread_mutex_unlock(&a->snap_lock);
	close(c->fd);
	free(c->t.s);
	json_decref(c->j);
	pthread_mutex_lock(&a->snap_lock);
	a->control_clients--;
	pthread_cond_broadcast(&a->snap_cond);
	pthread_mutex_unlock(&a->snap_lock);
	free(c);
	return NULL;
}

int control_open(struct agent *a)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	const char *path = a->cfg.control_path;
	char dir[sizeof(sun.sun_path)];
	char *slash;
	int fd;

	a->control_fd = -1;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		a->control_cfd[i] = -1;
	if (!*path)
		return 0;
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, path);
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* A socket file left by a killed agent: if nobody answers on it, it
	 * is stale and ours to replace. */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		close(fd);
		return -EADDRINUSE;
	}
	unlink(path);
	if (fchmod(fd, 0600) < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(path, 0600) < 0 || listen(fd, 8) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	a->control_fd = fd;
	return 0;
}

void control_accept(struct agent *a)
{
	struct control_client *c;
	pthread_attr_t attr;
	pthread_t th;
	int fd = accept4(a->control_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0) {
		/* Out of descriptors: the main loop leaves the socket alone
		 * for a while rather than spin on it. */
		if (sock_accept_starved(-errno)) {
			a->control_paused_until = log_now_ms() + SOCK_ACCEPT_PAUSE_MS;
			atomic_fetch_add(&a->control_pauses, 1);
		}
		return;
	}
	pthread_mutex_lock(&a->snap_lock);
	if (a->control_clients >= CONTROL_MAX_CLIENTS) {
		pthread_mutex_unlock(&a->snap_lock);
		close(fd);
		return;
	}
	a->control_clients++;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (a->control_cfd[i] < 0) {
			a->control_cfd[i] = fd;
			break;
		}
	pathmap_fill(&a->paths, &a->snap_map);
	pthread_mutex_unlock(&a->snap_lock);
	c = calloc(1, sizeof(*c));
	if (c) {
		c->a = a;
		c->fd = fd;
		format_paths(a, &c->t);
		c->j = json_paths(a);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &attr, client_main, c) == 0) {
			pthread_attr_destroy(&attr);
			return;
		}
		pthread_attr_destroy(&attr);
		free(c->t.s);
		json_decref(c->j);
		free(c);
	}
	pthread_mutex_lock(&a->snap_lock);
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (a->control_cfd[i] == fd)
			a->control_cfd[i] = -1;
	a->control_clients--;
	pthread_mutex_unlock(&a->snap_lock);
	close(fd);
}

void control_close(struct agent *a)
{
	if (a->control_fd < 0)
		return;
	close(a->control_fd);
	a->control_fd = -1;
	unlink(a->cfg.control_path);
	/* Clients still being answered use a, which goes after this: they
	 * are stopped (their sockets shut, their wait for the workers ended)
	 * and waited for to the last, however long their own deadlines
	 * (up to 8 s) would have let them live. */
	pthread_mutex_lock(&a->snap_lock);
	a->control_closing = true;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (a->control_cfd[i] >= 0)
			shutdown(a->control_cfd[i], SHUT_RDWR);
	pthread_cond_broadcast(&a->snap_cond);
	while (a->control_clients > 0)
		pthread_cond_wait(&a->snap_cond, &a->snap_lock);
	pthread_mutex_unlock(&a->snap_lock);
}

/* `gw-agent status`: the client side. */
void control_worker_done(struct agent_worker *aw)
{
	free(aw->snap);
	aw->snap = NULL;
	json_decref(aw->snap_json);
	aw->snap_json = NULL;
}

/* The client side of status and speedtest: connect, send cmd, copy the
 * answer to stdout. */
static int control_cmd(const char *path, const char *what, const char *cmd, bool *ret_failed)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char buf[8192];
	ssize_t n;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "gw-agent %s: %s: path too long\n", what, path);
		return 2;
	}
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		fprintf(stderr, "gw-agent %s: cannot reach the agent at %s: %s "
			"(is gw-agent running? see --control)\n", what, path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	if (sock_write_all(fd, cmd, strlen(cmd)) < 0) {
		fprintf(stderr, "gw-agent %s: %s: %s\n", what, path, strerror(errno));
		close(fd);
		return 1;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (ret_failed && (memmem(buf, (size_t)n, "failed", 6) || memmem(buf, (size_t)n, "error:", 6) ||
				   memmem(buf, (size_t)n, "not tested", 10)))
			*ret_failed = true;
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			break;
		fflush(stdout);
	}
	close(fd);
	return n < 0 ? 1 : 0;
}

int control_speedtest(const char *path, const char *line, unsigned seconds)
{
	char cmd[96];
	bool failed = false;
	int r;

	snprintf(cmd, sizeof(cmd), "speedtest %u %s\n", seconds, line);
	r = control_cmd(path, "speedtest", cmd, &failed);
	return r ? r : failed ? 1 : 0;
}

int control_status(const char *path, bool json)
{
	return control_cmd(path, "status", json ? "status json\n" : "status\n", NULL);
}
