/* Data caps per line (path options cap=, cycle=, at=): a volume per billing
 * cycle, counted from the line's own bytes both ways (its interface's
 * counters, each second), kept across restarts in a small state file
 * written seldom (router flash wears), and actions at thresholds: the line
 * becomes an overflow line, a backup line or off. A line leaving a flow
 * leaves it as its mode says: backup by MP_PRIO, off by closing its
 * subflows (after 2 s as backup, so they close empty); the connection goes
 * on over the other lines, never reset. Main thread only. */
#ifndef GW_AGENT_CAPS_H
#define GW_AGENT_CAPS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "paths.h"

#define CAPS_SAMPLE_MS 1000
/* A line reaching an "off" is made backup first (MP_PRIO: both ends stop
 * putting new data on it, what is in flight arrives), closed this much
 * later: its subflows close with nothing in them. */
#define CAPS_OFF_GRACE_MS 2000
#define CAPS_SAVE_S 900            /* the state file at most this often (and at events) */
#define CAPS_STATE_FILE "caps"     /* in the state directory */
#define CAPS_MAX_BYTES 100000000000000000ull  /* 1e17: no plan is larger */

/* ---- pure (capsparse.c, unit-tested) ---- */

/* "10G", "500M", "1.5T", "800MB", "12000000B", decimal (what operators
 * bill): bytes, or -EINVAL. */
int caps_parse_size(const char *s, uint64_t *ret);
/* "80:overflow/100:off": thresholds in percent (1-100, rising) and actions
 * (overflow, backup, off). 0 or -EINVAL. */
int caps_parse_at(const char *s, struct path_cap *c);
/* "15" (billing day of the month, 1-28) or "30d" (every N days, 1-366).
 * 0 or -EINVAL. */
int caps_parse_cycle(const char *s, struct path_cap *c);
/* The start of the cycle that holds now (local time): the last day-th of
 * a month at 00:00 not after now; or for a cycle of ndays, the anchor plus
 * the whole cycles since (anchor 0: today's 00:00; an anchor after now,
 * the clock set back: the anchor). */
time_t caps_cycle_start(time_t now, unsigned day, unsigned ndays, time_t anchor);
/* The index of the highest threshold c->used has reached, -1: none. */
int caps_level(const struct path_cap *c);
/* The mode a capped path runs in: its configured mode, or the strictest
 * action of the thresholds reached when that is stricter (an off still in
 * its grace: backup). */
enum path_mode caps_effective_mode(const struct path *p);

/* ---- counting (caps.c) ---- */

struct caps_state {
	uint64_t next_ms, last_save_ms;
	bool started;              /* the first sample is taken */
	bool loaded;               /* the state file was read (or is not there yet):
				    * only then may it be written */
};

/* The state file's figures for the paths that have a cap and count
 * nothing yet (at start, or a cap added by a reload), of the current
 * cycle only. 0, or -errno (logged; the counts start at 0 and the file is
 * then never written over). */
int caps_load(struct caps_state *st, struct paths *ps, const char *file);
/* Every CAPS_SAMPLE_MS: counts, rolls cycles, applies thresholds, saves
 * when due. Returns true when a path's mode changed (reconcile then). */
bool caps_tick(struct caps_state *st, struct paths *ps, const char *file, uint64_t now_ms,
	       uint64_t *next_ms);
/* Saves now (at stop). */
int caps_save(struct caps_state *st, struct paths *ps, const char *file);
bool caps_wanted(const struct paths *ps);

#endif
