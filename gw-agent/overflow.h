/* mode=overflow: a metered line (LTE, say) that carries data only while the
 * unmetered ones (on/master) are full, RFC 8157's "DSL first", on the
 * kernel's own MPTCP: its subflows stay backup (MP_PRIO) and are made
 * active while the on/master lines' use is over a share of their capacity
 * (down=, up=), back to backup once the whole demand fits them again.
 * Main thread only; the figures go out with the paths' snapshot. */
#ifndef GW_AGENT_OVERFLOW_H
#define GW_AGENT_OVERFLOW_H

#include <stdbool.h>
#include <stdint.h>

#include "paths.h"

#define OVERFLOW_SAMPLE_MS 1000
#define OVERFLOW_UP_SAMPLES 2      /* samples over the share in a row: active */
#define OVERFLOW_DOWN_SAMPLES 5    /* ... with the demand under it less 20 points: backup */

struct overflow_figures {
	bool configured;           /* an overflow path and an on/master capacity exist */
	bool active;
	uint64_t cap_bps[2];       /* [0] down, [1] up: the usable on/master lines' */
	uint64_t use_bps[2];       /* what those lines carried (their interfaces' bytes) */
	uint64_t ovf_bps[2];       /* what the overflow lines carried */
	uint64_t switches;         /* to active and back, each counted */
};

struct overflow {
	uint64_t next_ms, last_ms;
	uint64_t rx[PATHS_MAX], tx[PATHS_MAX];
	bool have[PATHS_MAX];
	unsigned above, below;
	struct overflow_figures fig;
};

/* Every OVERFLOW_SAMPLE_MS (earlier calls return at once, *next_ms
 * lowered to the next sample): samples the lines and decides. Returns
 * true when ps->overflow_on changed (reconcile then). share: percent. */
bool overflow_tick(struct overflow *o, struct paths *ps, unsigned share, uint64_t now_ms,
		   uint64_t *next_ms);
/* No overflow path any more (a reload): off, figures cleared (the count
 * of switches kept). */
void overflow_forget(struct overflow *o, struct paths *ps);
/* Whether ps has an overflow path (configuration checks, status). */
bool overflow_wanted(const struct paths *ps);

#endif
