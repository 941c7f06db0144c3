/* Overflow lines (overflow.h). */
#include "overflow.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"

bool overflow_wanted(const struct paths *ps)
{
	for (unsigned i = 0; i < ps->n; i++)
		if (ps->p[i].mode == PATH_OVERFLOW && !ps->p[i].neighbour)
			return true;
	return false;
}

static bool usable(const struct path *p)
{
	return p->f[0].usable || p->f[1].usable;
}

/* Per mille of cap (none: 0). */
static uint64_t permille(uint64_t use, uint64_t cap)
{
	return cap ? use * 1000 / cap : 0;
}

void overflow_forget(struct overflow *o, struct paths *ps)
{
	uint64_t switches = o->fig.switches + (ps->overflow_on ? 1 : 0);

	ps->overflow_on = false;
	memset(o, 0, sizeof(*o));
	o->fig.switches = switches;
}

bool overflow_tick(struct overflow *o, struct paths *ps, unsigned share, uint64_t now_ms,
		   uint64_t *next_ms)
{
	struct overflow_figures f = { .switches = o->fig.switches, .active = ps->overflow_on };
	uint64_t dt = now_ms - o->last_ms, fill = 0, demand = 0;
	bool sampled = o->last_ms != 0, was = ps->overflow_on, ovf_up = false;

	if (now_ms < o->next_ms) {
		if (o->next_ms < *next_ms)
			*next_ms = o->next_ms;
		return false;
	}
	o->next_ms = now_ms + OVERFLOW_SAMPLE_MS;
	if (o->next_ms < *next_ms)
		*next_ms = o->next_ms;
	o->last_ms = now_ms;
	for (unsigned i = 0; i < ps->n; i++) {
		const struct path *p = &ps->p[i];
		uint64_t rx = 0, tx = 0, r[2] = { 0, 0 };
		bool primary = p->mode == PATH_ON || p->mode == PATH_MASTER;

		if (p->neighbour || (!primary && p->mode != PATH_OVERFLOW)) {
			o->have[i] = false;   /* its bytes meanwhile are no one second's */
			continue;
		}
		if (iface_bytes(p->ifname, &rx, &tx) < 0) {
			o->have[i] = false;
			continue;
		}
		/* Bits a second since the last sample (a counter that went
		 * back, the interface made anew: no figure this time). */
		if (sampled && o->have[i] && dt && rx >= o->rx[i] && tx >= o->tx[i]) {
			r[0] = (rx - o->rx[i]) * 8000 / dt;
			r[1] = (tx - o->tx[i]) * 8000 / dt;
		}
		o->rx[i] = rx;
		o->tx[i] = tx;
		o->have[i] = true;
		if (p->mode == PATH_OVERFLOW) {
			f.ovf_bps[0] += r[0];
			f.ovf_bps[1] += r[1];
			ovf_up |= usable(p);
		} else if (usable(p)) {
			/* A direction counts where the line's capacity is given. */
			/* down=/up=, else what a speed test measured. */
			uint64_t dn = p->down_bps ? p->down_bps : p->st_down_bps;
			uint64_t up = p->up_bps ? p->up_bps : p->st_up_bps;

			if (dn) {
				f.cap_bps[0] += dn;
				f.use_bps[0] += r[0];
			}
			if (up) {
				f.cap_bps[1] += up;
				f.use_bps[1] += r[1];
			}
		}
	}
	f.configured = overflow_wanted(ps) && (f.cap_bps[0] || f.cap_bps[1]) && ovf_up;
	for (int d = 0; d < 2; d++) {
		uint64_t fl = permille(f.use_bps[d], f.cap_bps[d]);
		uint64_t de = permille(f.use_bps[d] + f.ovf_bps[d], f.cap_bps[d]);

		fill = fl > fill ? fl : fill;
		demand = de > demand ? de : demand;
	}
	if (!f.configured) {
		/* No unmetered line up (or none with a capacity), or no
		 * overflow line up: the overflow lines are backups, which the
		 * kernel uses when nothing else is left. */
		ps->overflow_on = false;
		o->above = o->below = 0;
	} else if (!ps->overflow_on) {
		o->above = fill >= (uint64_t)share * 10 ? o->above + 1 : 0;
		if (o->above >= OVERFLOW_UP_SAMPLES)
			ps->overflow_on = true;
	} else {
		/* Back once everything, the overflow lines' share too, fits
		 * the unmetered lines with room to spare: no flapping at the
		 * edge. */
		unsigned low = share > 20 ? share - 20 : 0;

		o->below = demand < (uint64_t)low * 10 ? o->below + 1 : 0;
		if (o->below >= OVERFLOW_DOWN_SAMPLES)
			ps->overflow_on = false;
	}
	if (ps->overflow_on != was) {
		o->above = o->below = 0;
		f.switches++;
		log_info("overflow: %s (the on/master lines at %llu%% of their capacity down, "
			 "%llu%% up; overflow lines carried %.1f/%.1f Mbit/s)",
			 ps->overflow_on ? "active: the on/master lines are full" :
			 f.configured ? "backup: the demand fits the on/master lines" :
			 "backup: no on/master line with a capacity, or no overflow line, is up",
			 (unsigned long long)(permille(f.use_bps[0], f.cap_bps[0]) / 10),
			 (unsigned long long)(permille(f.use_bps[1], f.cap_bps[1]) / 10),
			 f.ovf_bps[0] / 1e6, f.ovf_bps[1] / 1e6);
	}
	f.active = ps->overflow_on;
	o->fig = f;
	return ps->overflow_on != was;
}
