#include "upm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/mptcp.h>
#include <linux/sock_diag.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "log.h"
#include "nl.h"
#include "paths.h"

_Static_assert(UPM_PATHS == PATHS_MAX, "a join bit per path");

/* path_manager ("kernel", "userspace") since 6.15; before it pm_type
 * ("0", "1", since 5.19), which 6.15+ keeps in step. */
static const char *const pm_sysctl[2] = {
	"/proc/sys/net/mptcp/path_manager", "/proc/sys/net/mptcp/pm_type",
};

static int sysctl_read(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static int sysctl_write(const char *path, const char *v)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, v, strlen(v));
	close(fd);
	return n < 0 ? -errno : 0;
}

static void fifo_free(struct upm_fifo *f)
{
	free(f->q);
	*f = (struct upm_fifo){ 0 };
}

void upm_close(struct upm *u)
{
	if (u->open) {
		/* Connections keep the manager they were made with (the
		 * kernel copies it into each): only new ones go back. What
		 * was there, unless it was the userspace one: that is a
		 * killed agent's leftover (mptcpd users run --endpoints
		 * mptcpd, which never changes it). */
		bool leftover = !strcmp(u->saved_pm, u->sysctl ? "1" : "userspace");

		sysctl_write(pm_sysctl[u->sysctl],
			     leftover || !u->saved_pm[0] ? (u->sysctl ? "0" : "kernel") : u->saved_pm);
		pm_close(&u->ev);
		pm_close(&u->cmd);
	}
	free(u->tab);
	u->tab = NULL;
	u->cap = u->used = 0;
	fifo_free(&u->promos);
	fifo_free(&u->later);
	u->open = false;
}

int upm_class_pending(struct upm *u, const struct in6_addr *addr, uint16_t port, int cls,
		      uint64_t now_ms)
{
	int r = -ENOSPC;

	pthread_mutex_lock(&u->pend_lock);
	for (unsigned i = 0; i < UPM_PENDING; i++) {
		struct upm_pending *p = &u->pend[i];

		if (p->at_ms && now_ms - p->at_ms < UPM_PENDING_MS)
			continue;
		if (!p->at_ms)
			atomic_fetch_add(&u->npend, 1);
		*p = (struct upm_pending){ *addr, port, (int8_t)cls, now_ms ? now_ms : 1 };
		r = 0;
		break;
	}
	pthread_mutex_unlock(&u->pend_lock);
	return r;
}

/* The class registered for addr:port (and the entry freed), or -1. */
static int class_taken(struct upm *u, const struct in6_addr *addr, uint16_t port)
{
	int cls = -1;

	if (!atomic_load(&u->npend))
		return -1;
	pthread_mutex_lock(&u->pend_lock);
	for (unsigned i = 0; i < UPM_PENDING; i++) {
		struct upm_pending *p = &u->pend[i];

		if (p->at_ms && p->port == port && !memcmp(&p->addr, addr, sizeof(*addr))) {
			cls = p->cls;
			p->at_ms = 0;
			atomic_fetch_sub(&u->npend, 1);
			break;
		}
	}
	pthread_mutex_unlock(&u->pend_lock);
	return cls;
}

int upm_open(struct upm *u, bool fullmesh)
{
	int r;

	memset(u, 0, sizeof(*u));
	pthread_mutex_init(&u->pend_lock, NULL);
	u->fullmesh = fullmesh;
	u->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT(10, 10000);
	r = sysctl_read(pm_sysctl[0], u->saved_pm, sizeof(u->saved_pm));
	if (r == -ENOENT) {
		u->sysctl = 1;
		r = sysctl_read(pm_sysctl[1], u->saved_pm, sizeof(u->saved_pm));
	}
	if (r < 0)
		return r == -ENOENT ? -EPROTONOSUPPORT : r;  /* before 5.19 */
	r = pm_open(&u->cmd);
	if (r < 0)
		return r;
	r = pm_events_open(&u->ev);
	if (r < 0) {
		pm_close(&u->cmd);
		return r;
	}
	u->open = true;
	/* Listening first: a connection made in between gets its events. */
	r = sysctl_write(pm_sysctl[u->sysctl], u->sysctl ? "1" : "userspace");
	if (r < 0) {
		upm_close(u);
		return r == -EINVAL ? -EPROTONOSUPPORT : r;
	}
	return 0;
}

int upm_kernel_pm_ensure(void)
{
	char v[32];

	for (int i = 0; i < 2; i++)
		if (sysctl_read(pm_sysctl[i], v, sizeof(v)) == 0) {
			if (strcmp(v, i ? "1" : "userspace"))
				return 0;
			return sysctl_write(pm_sysctl[i], i ? "0" : "kernel") < 0 ? -EPERM : 1;
		}
	return 0;
}

void upm_set_concentrators(struct upm *u, const struct sockaddr_storage *conc, unsigned n)
{
	u->nconc = 0;
	for (unsigned i = 0; i < n && u->nconc < UPM_MAX_CONC; i++) {
		uint16_t port;

		if (addr_to_in6((const struct sockaddr *)&conc[i], &u->conc[u->nconc], &port) == 0)
			u->conc_port[u->nconc++] = port;
	}
}

/* To a concentrator's address, at any port: the router's MPTCP connections
 * to that host (another service there, a second instance) are spread over
 * the lines like the flows, with the same care for the kernel's defect. */
static bool is_concentrator(const struct upm *u, const struct in6_addr *a)
{
	for (unsigned i = 0; i < u->nconc; i++)
		if (!memcmp(&u->conc[i], a, 16))
			return true;
	return false;
}

/* The concentrator's service itself (its address and port). */
static bool is_service(const struct upm *u, const struct in6_addr *a, uint16_t port)
{
	for (unsigned i = 0; i < u->nconc; i++)
		if (u->conc_port[i] == port && !memcmp(&u->conc[i], a, 16))
			return true;
	return false;
}

/* Not unspecified, loopback or multicast (IPv4 mapped or IPv6). */
static bool unicast(const struct in6_addr *a)
{
	if (IN6_IS_ADDR_V4MAPPED(a))
		return a->s6_addr[12] != 0 && a->s6_addr[12] != 127 && a->s6_addr[12] < 224;
	return !IN6_IS_ADDR_UNSPECIFIED(a) && !IN6_IS_ADDR_LOOPBACK(a) && !IN6_IS_ADDR_MULTICAST(a);
}

int upm_event_fd(const struct upm *u)
{
	return u->open ? mnl_socket_get_fd(u->ev.nl.sock) : -1;
}

/* The table: open addressing on the token (random, from the kernel),
 * linear probing, backward-shift deletion. */
struct upm_conn *upm_conn_find(struct upm *u, uint32_t token)
{
	if (!u->cap || !token)
		return NULL;
	for (uint32_t i = token & (u->cap - 1);; i = (i + 1) & (u->cap - 1)) {
		if (u->tab[i].token == token)
			return &u->tab[i];
		if (!u->tab[i].token)
			return NULL;
	}
}

static struct upm_conn *slot_for(struct upm_conn *tab, uint32_t cap, uint32_t token)
{
	uint32_t i = token & (cap - 1);

	while (tab[i].token && tab[i].token != token)
		i = (i + 1) & (cap - 1);
	return &tab[i];
}

static int grow(struct upm *u)
{
	uint32_t cap = u->cap ? u->cap * 2 : 64;
	struct upm_conn *tab;

	if (cap > UPM_MAX_CONNS)
		return -ENOSPC;
	tab = calloc(cap, sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	for (uint32_t i = 0; i < u->cap; i++)
		if (u->tab[i].token)
			*slot_for(tab, cap, u->tab[i].token) = u->tab[i];
	free(u->tab);
	u->tab = tab;
	u->cap = cap;
	return 0;
}

static struct upm_conn *conn_add(struct upm *u, uint32_t token)
{
	struct upm_conn *c;

	if ((u->used + 1) * 2 > u->cap && grow(u) < 0)
		return NULL;
	c = slot_for(u->tab, u->cap, token);
	if (!c->token) {
		memset(c, 0, sizeof(*c));
		c->cls = -1;
		c->token = token;
		u->used++;
	}
	return c;
}

static void conn_del(struct upm *u, struct upm_conn *c)
{
	uint32_t i = (uint32_t)(c - u->tab), j = i, mask = u->cap - 1;

	u->tab[i].token = 0;
	u->used--;
	for (;;) {
		uint32_t home;

		j = (j + 1) & mask;
		if (!u->tab[j].token)
			break;
		home = u->tab[j].token & mask;
		/* Move j back to i when its home is not in (i, j]. */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			u->tab[i] = u->tab[j];
			u->tab[j].token = 0;
			i = j;
		}
	}
	/* Shrink back when a burst is over (the router's memory). */
	if (u->cap > 64 && u->used * 8 < u->cap) {
		uint32_t cap = u->cap / 2;
		struct upm_conn *tab = calloc(cap, sizeof(*tab));

		if (!tab)
			return;
		for (uint32_t k = 0; k < u->cap; k++)
			if (u->tab[k].token)
				*slot_for(tab, cap, u->tab[k].token) = u->tab[k];
		free(u->tab);
		u->tab = tab;
		u->cap = cap;
	}
}

/* False when the queue cannot grow (what was due is then not done: a join
 * stays backup, slower, never wrong; a connection's joins open at once). */
static bool fifo_push(struct upm_fifo *f, uint32_t max, struct upm_promo e)
{
	if (f->len == f->cap) {
		uint32_t cap = f->cap ? f->cap * 2 : 64;
		struct upm_promo *q = cap > max ? NULL : malloc(cap * sizeof(*q));

		if (!q)
			return false;
		for (uint32_t k = 0; k < f->len; k++)
			q[k] = f->q[(f->head + k) % f->cap];
		free(f->q);
		f->q = q;
		f->cap = cap;
		f->head = 0;
	}
	f->q[(f->head + f->len) % f->cap] = e;
	f->len++;
	return true;
}

/* The entry at the head if it is due (wait_ms after its time), else NULL
 * (and *next_ms lowered to when it will be); fifo_pop() takes it. An
 * empty queue that grew past its first size is given back: a burst of
 * short connections leaves no memory behind. */
static struct upm_promo *fifo_due(struct upm_fifo *f, uint64_t now_ms, uint32_t wait_ms,
				  uint64_t *next_ms)
{
	struct upm_promo *e;

	if (!f->len) {
		f->head = 0;
		if (f->cap > 64) {
			free(f->q);
			f->q = NULL;
			f->cap = 0;
		}
		return NULL;
	}
	e = &f->q[f->head];
	if (e->due_ms + wait_ms > now_ms) {
		if (e->due_ms + wait_ms < *next_ms)
			*next_ms = e->due_ms + wait_ms;
		return NULL;
	}
	return e;
}

static void fifo_pop(struct upm_fifo *f)
{
	f->head = (f->head + 1) % f->cap;
	f->len--;
}

static void promo_push(struct upm *u, struct upm_conn *c, uint8_t path, uint64_t due)
{
	if (fifo_push(&u->promos, UPM_PATHS * UPM_MAX_CONNS,
		      (struct upm_promo){ c->token, path, c->sport[path], due }))
		c->queued |= (uint16_t)(1u << path);
}

/* Whether path pi's family fi is one joins are opened from now (paths.c
 * sets ep_id while it wants one), and its local id for the kernel. */
static bool path_enabled(const struct paths *ps, unsigned pi, int fi)
{
	return pi < ps->n && ps->p[pi].f[fi].ep_id;
}

static int path_of_addr(const struct paths *ps, int fi, const struct in6_addr *a, bool ep)
{
	for (unsigned i = 0; i < ps->n; i++) {
		const struct path_fam *f = &ps->p[i].f[fi];

		if (ep ? (f->ep_id && !memcmp(&f->ep_addr, a, 16))
		       : (f->have_addr && !memcmp(&f->addr, a, 16)))
			return (int)i;
	}
	return -1;
}

/* A join's local id: the path's, freed again by REMOVE when the path goes
 * (so a new address may take it); the initial subflow's own address is
 * known to the kernel under id 0 (--cluster's join from it). */
static uint8_t join_id(const struct upm_conn *c, unsigned pi)
{
	return pi == c->init_path ? 0 : (uint8_t)(pi + 1);
}

static void join_forget(struct upm_conn *c, unsigned pi)
{
	uint16_t bit = (uint16_t)(1u << pi);

	c->sub &= (uint16_t)~bit;
	c->active &= (uint16_t)~bit;
	c->sport[pi] = 0;
	/* a queued promotion names the old port: it finds nothing */
}

static void join_open(struct upm *u, struct paths *ps, struct upm_conn *c, unsigned pi)
{
	const struct path *p = &ps->p[pi];
	const struct path_fam *f = &p->f[c->fam];
	char a[ADDR_STRLEN];
	/* Every join starts as backup (see upm.h). */
	uint8_t id = join_id(c, pi);
	int r;

	if ((c->sub & (1u << pi)) || !c->remote_set || !u->open || c->young)
		return;  /* (not open: the table's unit test, no kernel) */
	if (pi == c->init_path && !u->fullmesh)
		return;
	if (c->cls >= 0 && u->allow && !u->allow(u->allow_ctx, ps, c->cls, pi, c->fam))
		return;  /* its class keeps it off this line */
	if (p->neighbour && !c->service)
		return;  /* a lender forwards only the concentrator's port */
	r = pm_subflow_create(&u->cmd, c->token, &f->ep_addr, id, p->neighbour ? 0 : p->ifindex,
			      PM_FLAG_SUBFLOW | PM_FLAG_BACKUP, &c->rem, c->rport);
	if (r < 0) {
		atomic_fetch_add_explicit(&u->st.join_errors, 1, memory_order_relaxed);
		/* -EINVAL: the connection is gone (its CLOSED is queued). */
		if (r != -EINVAL && log_ratelimit_ok(&u->rl, log_now_ms()))
			log_info("path %s: join for connection %08x from %s: %s",
					path_name(p), c->token, addr_format_in6(&f->ep_addr, 0, a),
					strerror(-r));
		return;
	}
	join_forget(c, pi);
	c->sub |= (uint16_t)(1u << pi);
	atomic_fetch_add_explicit(&u->st.joins, 1, memory_order_relaxed);
}

static void join_close(struct upm *u, struct paths *ps, struct upm_conn *c, unsigned pi)
{
	const struct path_fam *f = &ps->p[pi].f[c->fam];

	uint8_t id = join_id(c, pi);
	int r = -ENOENT;

	if (!(c->sub & (1u << pi)))
		return;
	/* By its id: connecting or up, the join goes, and the id is free
	 * for the path's next address. Id 0 is the initial subflow's
	 * address: only this join is closed, by its port (a join still
	 * connecting there finds no bit when it comes up, and is closed). */
	if (id)
		r = pm_remove_id(&u->cmd, c->token, id);
	else if (c->sport[pi])
		r = pm_subflow_destroy(&u->cmd, c->token, &f->ep_addr, c->sport[pi], &c->rem,
				       c->rport);
	if (r == 0)
		atomic_fetch_add_explicit(&u->st.destroyed, 1, memory_order_relaxed);
	join_forget(c, pi);
}

static void joins_open_all(struct upm *u, struct paths *ps, struct upm_conn *c)
{
	for (unsigned pi = 0; pi < ps->n; pi++)
		if (path_enabled(ps, pi, c->fam))
			join_open(u, ps, c, pi);
}

struct ev_ctx {
	struct upm *u;
	struct paths *ps;
	uint64_t now;
};

static void on_event(const struct pm_event *e, void *data)
{
	struct ev_ctx *x = data;

	/* Each event's own time: a turn of many events (each ESTABLISHED
	 * asks the kernel for joins) must not shorten a join's 100 ms. */
	upm_event(x->u, x->ps, e, log_now_ms());
}

/* MP_PRIO on the initial subflow (the kernel's endpoints did this for a
 * backup address): a flow that began on a backup path while the others
 * were down moves off it once they are back. */
static void initial_prio(struct upm *u, struct paths *ps, struct upm_conn *c, bool backup)
{
	const struct path_fam *f = &ps->p[c->init_path].f[c->fam];

	if (c->init_sport && f->have_addr)
		pm_subflow_set_flags(&u->cmd, c->token, &f->addr, c->init_sport, &c->rem0,
				     c->rport0, backup ? PM_FLAG_BACKUP : 0);
}

void upm_event(struct upm *u, struct paths *ps, const struct pm_event *e, uint64_t now_ms)
{
	struct upm_conn *c = upm_conn_find(u, e->token);
	int fi = IN6_IS_ADDR_V4MAPPED(&e->saddr) ? 0 : 1, pi;

	switch (e->type) {
	case MPTCP_EVENT_ESTABLISHED:
		if (e->server_side || !e->has_addrs)
			return;
		if (c)
			conn_del(u, c);  /* a token the kernel gave again: its CLOSED was lost */
		/* Ours: from one of the paths' addresses to a concentrator.
		 * Anyone else's MPTCP connection on the router keeps its one
		 * subflow. */
		pi = path_of_addr(ps, fi, &e->saddr, false);
		if (pi < 0 || !is_concentrator(u, &e->daddr))
			return;
		c = conn_add(u, e->token);
		if (!c) {
			if (log_ratelimit_ok(&u->rl, now_ms))
				log_warn("path manager: no room for more connections (%u tracked): "
					 "no joins for new ones", u->used);
			return;
		}
		atomic_fetch_add_explicit(&u->st.conns, 1, memory_order_relaxed);
		c->fam = (uint8_t)fi;
		c->init_path = (uint8_t)pi;
		/* --cluster: the shared address takes no joins (MP_CAPABLE's
		 * C flag); they go where the box announces itself. */
		c->remote_set = !u->fullmesh;
		c->rem = c->rem0 = e->daddr;
		c->rport = c->rport0 = e->dport;
		c->service = is_service(u, &e->daddr, e->dport);
		c->init_sport = e->sport;
		c->cls = (int8_t)class_taken(u, &e->saddr, e->sport);
		if (ps->p[pi].f[fi].ep_id && (ps->p[pi].f[fi].ep_flags & PM_FLAG_BACKUP))
			initial_prio(u, ps, c, true);
		if (ps->join_after_ms &&
		    /* one per connection the table holds, at most */
		    fifo_push(&u->later, UPM_MAX_CONNS,
			      (struct upm_promo){ c->token, UPM_JOINS_DUE, 0, now_ms })) {
			c->young = true;
			return;
		}
		joins_open_all(u, ps, c);
		return;
	case MPTCP_EVENT_ANNOUNCED:
		/* Only the concentrator service says where its box is: a
		 * connection to another port of the shared address could be
		 * anything's, and would steer the joins anywhere. */
		if (!c || c->remote_set || !u->fullmesh || !c->service)
			return;
		if ((IN6_IS_ADDR_V4MAPPED(&e->daddr) ? 0 : 1) != c->fam || !unicast(&e->daddr))
			return;  /* a box announces an address of its own */
		c->rem = e->daddr;
		if (e->dport)
			c->rport = e->dport;
		c->remote_set = true;
		joins_open_all(u, ps, c);
		return;
	case MPTCP_EVENT_SUB_ESTABLISHED:
		if (!c || !e->has_addrs || (uint8_t)fi != c->fam)
			return;
		pi = path_of_addr(ps, fi, &e->saddr, true);
		if (pi < 0 || (pi == c->init_path && !u->fullmesh && !(c->sub & (1u << pi))))
			return;  /* the initial subflow, or not from a path of ours */
		if (!(c->sub & (1u << pi)) || (c->sport[pi] && c->sport[pi] != e->sport)) {
			/* Not the join we keep for this path (one that was
			 * connecting when its path went, or a second one):
			 * closed now, by its port. */
			pm_subflow_destroy(&u->cmd, c->token, &e->saddr, e->sport, &e->daddr, e->dport);
			return;
		}
		c->sport[pi] = e->sport;
		/* Always queued: a promotion still queued for the path's
		 * previous join names that one's port and will find nothing. */
		if (!(ps->p[pi].f[fi].ep_flags & PM_FLAG_BACKUP))
			promo_push(u, c, (uint8_t)pi, now_ms + UPM_PROMOTE_MS);
		return;
	case MPTCP_EVENT_SUB_CLOSED:
		if (!c || !e->has_addrs || (uint8_t)fi != c->fam)
			return;
		pi = path_of_addr(ps, fi, &e->saddr, true);
		if (pi >= 0 && (c->sub & (1u << pi)) &&
		    (!c->sport[pi] || c->sport[pi] == e->sport))
			join_forget(c, pi);
		return;
	case MPTCP_EVENT_CLOSED:
		if (c && c->young)
			atomic_fetch_add_explicit(&u->st.short_lived, 1, memory_order_relaxed);
		if (c)
			conn_del(u, c);
		return;
	default:
		return;
	}
}

/* After lost events: the kernel's MPTCP sockets as they are now (sock_diag,
 * both families), each as the ESTABLISHED event that might have been lost,
 * and the table's connections that are gone, deleted (a lost CLOSED would
 * keep them until the table is full). Bounded by the sockets there are. */
struct live {
	uint32_t *tok;
	size_t n, cap;
	struct upm *u;
	struct paths *ps;
	uint64_t now;
};

static int diag_cb(const struct nlmsghdr *nlh, void *data)
{
	struct live *l = data;
	const struct inet_diag_msg *m = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *a;
	struct mptcp_info mi;
	struct pm_event e = { .type = MPTCP_EVENT_ESTABLISHED, .has_addrs = true };

	if (nlh->nlmsg_len < MNL_NLMSG_HDRLEN + sizeof(*m))
		return MNL_CB_OK;
	memset(&mi, 0, sizeof(mi));
	mnl_attr_for_each(a, nlh, sizeof(*m))
		if (mnl_attr_get_type(a) == INET_DIAG_INFO)
			memcpy(&mi, mnl_attr_get_payload(a),
			       mnl_attr_get_payload_len(a) < sizeof(mi) ? mnl_attr_get_payload_len(a)
									: sizeof(mi));
	if (!mi.mptcpi_token || m->idiag_state == 10 /* TCP_LISTEN */)
		return MNL_CB_OK;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		uint32_t *t = realloc(l->tok, cap * sizeof(*t));

		if (!t)
			return MNL_CB_ERROR;
		l->tok = t;
		l->cap = cap;
	}
	l->tok[l->n++] = mi.mptcpi_token;
	if (m->idiag_state != 1 /* TCP_ESTABLISHED */ || upm_conn_find(l->u, mi.mptcpi_token))
		return MNL_CB_OK;
	/* Established and not in the table: its ESTABLISHED may be lost. */
	e.token = mi.mptcpi_token;
	if (m->idiag_family == AF_INET) {
		e.saddr.s6_addr[10] = e.saddr.s6_addr[11] = 0xff;
		e.daddr.s6_addr[10] = e.daddr.s6_addr[11] = 0xff;
		memcpy(e.saddr.s6_addr + 12, m->id.idiag_src, 4);
		memcpy(e.daddr.s6_addr + 12, m->id.idiag_dst, 4);
	} else {
		memcpy(&e.saddr, m->id.idiag_src, 16);
		memcpy(&e.daddr, m->id.idiag_dst, 16);
	}
	e.sport = ntohs(m->id.idiag_sport);
	e.dport = ntohs(m->id.idiag_dport);
	upm_event(l->u, l->ps, &e, l->now);
	return MNL_CB_OK;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int upm_resync(struct upm *u, struct paths *ps, uint64_t now_ms)
{
	struct live l = { .u = u, .ps = ps, .now = now_ms };
	struct nl nl;
	int r = nl_open(&nl, NETLINK_SOCK_DIAG);
	unsigned dropped = 0;

	if (r < 0)
		return r;
	for (int fam = 0; fam < 2 && r >= 0; fam++) {
		char buf[256];
		struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
		struct inet_diag_req_v2 *req;

		nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
		nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
		nlh->nlmsg_seq = nl_next_seq(&nl);
		req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
		req->sdiag_family = fam ? AF_INET6 : AF_INET;
		req->idiag_ext = 1 << (INET_DIAG_INFO - 1);
		req->idiag_states = ~0u;
		/* IPPROTO_MPTCP (262) does not fit sdiag_protocol. */
		mnl_attr_put_u32(nlh, INET_DIAG_REQ_PROTOCOL, IPPROTO_MPTCP);
		r = nl_talk(&nl, nlh, diag_cb, &l);
	}
	nl_close(&nl);
	if (r < 0) {
		free(l.tok);
		return r;
	}
	qsort(l.tok, l.n, sizeof(*l.tok), cmp_u32);
	/* The gone ones first (deleting moves entries and may shrink the
	 * table), then each found again and deleted. */
	uint32_t *gone = malloc((u->used ? u->used : 1) * sizeof(*gone));

	if (!gone) {
		free(l.tok);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < u->cap; i++) {
		uint32_t t = u->tab[i].token;

		if (t && !bsearch(&t, l.tok, l.n, sizeof(t), cmp_u32))
			gone[dropped++] = t;
	}
	for (unsigned k = 0; k < dropped; k++) {
		struct upm_conn *c = upm_conn_find(u, gone[k]);

		if (c)
			conn_del(u, c);
	}
	free(gone);
	free(l.tok);
	return (int)dropped;
}

int upm_events(struct upm *u, struct paths *ps, uint64_t now_ms)
{
	struct ev_ctx x = { u, ps, now_ms };
	int r;

	if (!u->open)
		return 0;
	r = pm_events_read(&u->ev, UPM_EVENTS_PER_TURN, on_event, &x);
	if (r == -ENOBUFS) {
		/* Lost: connections seen again from the kernel's sockets;
		 * a lost SUB_ESTABLISHED still leaves its join backup (slower,
		 * never wrong), counted. */
		atomic_fetch_add_explicit(&u->st.events_lost, 1, memory_order_relaxed);
		int d = upm_resync(u, ps, now_ms);

		if (log_ratelimit_ok(&u->rl, now_ms))
			log_warn("path manager: MPTCP events lost (the kernel's queue overran): "
				 "looked again at the kernel's connections (%d gone%s)", d < 0 ? 0 : d,
				 d < 0 ? ", the look failed" : "");
		r = pm_events_read(&u->ev, UPM_EVENTS_PER_TURN, on_event, &x);
	}
	return r;
}

/* MP_PRIO: backup or not, on path pi's join of c. */
static int join_prio(struct upm *u, struct paths *ps, struct upm_conn *c, unsigned pi, bool backup)
{
	const struct path_fam *f = &ps->p[pi].f[c->fam];
	int r = pm_subflow_set_flags(&u->cmd, c->token, &f->ep_addr, c->sport[pi], &c->rem,
				     c->rport, backup ? PM_FLAG_BACKUP : 0);

	if (r == 0 && !backup) {
		c->active |= (uint16_t)(1u << pi);
		atomic_fetch_add_explicit(&u->st.promoted, 1, memory_order_relaxed);
	} else if (r == 0) {
		c->active &= (uint16_t)~(1u << pi);
	} else if (r == -EINVAL) {
		/* Gone, with its SUB_CLOSED or CLOSED on the way (or lost). */
		join_forget(c, pi);
	}
	return r;
}

void upm_tick(struct upm *u, struct paths *ps, uint64_t now_ms, uint64_t *next_ms)
{
	struct upm_promo *q;
	struct upm_conn *c;

	while ((q = fifo_due(&u->later, now_ms, ps->join_after_ms, next_ms))) {
		/* Still open after --join-after. (A token the kernel gave
		 * again meanwhile: the new connection's joins come early,
		 * which costs what joins cost, nothing more.) */
		c = upm_conn_find(u, q->token);
		if (c && c->young) {
			c->young = false;
			joins_open_all(u, ps, c);
		}
		fifo_pop(&u->later);
	}
	while ((q = fifo_due(&u->promos, now_ms, 0, next_ms))) {
		c = upm_conn_find(u, q->token);
		if (c && q->path < UPM_PATHS)
			c->queued &= (uint16_t)~(1u << q->path);
		/* Still there, still the same join of ours (its port), and its
		 * path still wants it active. */
		if (c && q->path < ps->n && (c->sub & (1u << q->path)) &&
		    c->sport[q->path] == q->sport && q->sport &&
		    !(c->active & (1u << q->path)) && path_enabled(ps, q->path, c->fam) &&
		    !(ps->p[q->path].f[c->fam].ep_flags & PM_FLAG_BACKUP) &&
		    (c->cls < 0 || !u->allow || u->allow(u->allow_ctx, ps, c->cls, q->path, c->fam)))
			join_prio(u, ps, c, q->path, false);
		fifo_pop(&u->promos);
	}
}

/* fn on path pi's join of every connection of family fi. */
static void each_conn(struct upm *u, struct paths *ps, unsigned pi, int fi,
		      void (*fn)(struct upm *, struct paths *, struct upm_conn *, unsigned))
{
	if (!u->open)
		return;
	for (uint32_t i = 0; i < u->cap; i++)
		if (u->tab[i].token && u->tab[i].fam == fi)
			fn(u, ps, &u->tab[i], pi);
}

void upm_path_on(struct upm *u, struct paths *ps, unsigned pi, int fi)
{
	each_conn(u, ps, pi, fi, join_open);
}

void upm_path_off(struct upm *u, struct paths *ps, unsigned pi, int fi)
{
	each_conn(u, ps, pi, fi, join_close);
}

void upm_regate(struct upm *u, struct paths *ps, uint64_t now_ms)
{
	if (!u->open || !u->allow)
		return;
	for (uint32_t i = 0; i < u->cap; i++) {
		struct upm_conn *c = &u->tab[i];

		if (!c->token || c->cls < 0)
			continue;
		for (unsigned pi = 0; pi < ps->n; pi++) {
			uint16_t bit = (uint16_t)(1u << pi);
			bool ok = u->allow(u->allow_ctx, ps, c->cls, pi, c->fam);

			if (pi == c->init_path && c->init_sport) {
				/* The first subflow: backup while its line is off
				 * the class's (unless its path wants it so anyway). */
				if (!ok != c->init_gated &&
				    !(ps->p[pi].f[c->fam].ep_flags & PM_FLAG_BACKUP)) {
					initial_prio(u, ps, c, !ok);
					c->init_gated = !ok;
				}
				if (!u->fullmesh)
					continue;
			}
			if (!(c->sub & bit)) {
				if (ok && path_enabled(ps, pi, c->fam))
					join_open(u, ps, c, pi);
			} else if (!ok && (c->active & bit)) {
				join_prio(u, ps, c, pi, true);
			} else if (ok && c->sport[pi] && !(c->active & bit) && !(c->queued & bit) &&
				   path_enabled(ps, pi, c->fam) &&
				   !(ps->p[pi].f[c->fam].ep_flags & PM_FLAG_BACKUP)) {
				promo_push(u, c, (uint8_t)pi, now_ms + UPM_PROMOTE_MS);
			}
		}
	}
}

void upm_path_prio(struct upm *u, struct paths *ps, unsigned pi, int fi, bool backup,
		   uint64_t now_ms)
{
	if (!u->open)
		return;
	for (uint32_t i = 0; i < u->cap; i++) {
		struct upm_conn *c = &u->tab[i];

		if (!c->token || c->fam != fi)
			continue;
		if (c->init_path == pi)
			initial_prio(u, ps, c, backup);
		if (!(c->sub & (1u << pi)) || !c->sport[pi])
			continue;
		if (backup)
			join_prio(u, ps, c, pi, true);
		else if (!(c->active & (1u << pi)) && !(c->queued & (1u << pi)))
			/* Established a while ago, most likely; the same wait
			 * as a new one either way. */
			promo_push(u, c, (uint8_t)pi, now_ms + UPM_PROMOTE_MS);
	}
}
