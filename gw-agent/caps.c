/* Data caps per line (caps.h). */
#include "caps.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static int rank(enum path_mode m)
{
	switch (m) {
	case PATH_ON:
	case PATH_MASTER: return 0;
	case PATH_OVERFLOW: return 1;
	case PATH_BACKUP: return 2;
	case PATH_HANDOVER: return 3;
	default: return 4;
	}
}

enum path_mode caps_effective_mode(const struct path *p)
{
	enum path_mode a;

	if (!p->cap.bytes || p->cap.level < 0 || p->cap.level >= p->cap.nat)
		return p->mode_cfg;
	a = (enum path_mode)p->cap.at[p->cap.level].action;
	if (a == PATH_OFF && p->cap.grace_until_ms)
		a = PATH_BACKUP;
	return rank(a) > rank(p->mode_cfg) ? a : p->mode_cfg;
}

bool caps_wanted(const struct paths *ps)
{
	for (unsigned i = 0; i < ps->n; i++)
		if (ps->p[i].cap.bytes && !ps->p[i].neighbour)
			return true;
	return false;
}

static int if_counter(const char *ifname, uint64_t *ret)
{
	uint64_t sum = 0;

	for (int k = 0; k < 2; k++) {
		char path[96], buf[32];
		ssize_t n;
		int fd;

		snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s", ifname,
			 k ? "tx_bytes" : "rx_bytes");
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			return -EIO;
		buf[n] = 0;
		sum += strtoull(buf, NULL, 10);
	}
	*ret = sum;
	return 0;
}

static int level_of(const struct path_cap *c)
{
	int l = -1;

	for (unsigned k = 0; k < c->nat; k++)
		if (c->used >= c->bytes / 100 * c->at[k].pct + c->bytes % 100 * c->at[k].pct / 100)
			l = (int)k;
	return l;
}

int caps_save(struct paths *ps, const char *file)
{
	char tmp[4200];
	FILE *f;
	int fd, r = 0;

	if (!caps_wanted(ps) || !file[0])
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		r = -errno;
		if (fd >= 0)
			close(fd);
		return log_errno(r, "caps: cannot write %s: %m", tmp);
	}
	fprintf(f, "gw-agent caps 1\n");
	for (unsigned i = 0; i < ps->n; i++) {
		struct path *p = &ps->p[i];

		if (p->cap.bytes && !p->neighbour)
			fprintf(f, "%s %lld %llu\n", p->ifname, (long long)p->cap.cycle_start,
				(unsigned long long)p->cap.used);
	}
	/* On the disk before it replaces the old one: a power cut leaves
	 * one or the other whole. */
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		r = -errno;
	if (fclose(f) != 0 && !r)
		r = -errno;
	if (!r && rename(tmp, file) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return log_errno(r, "caps: cannot save %s: %m", file);
	}
	for (unsigned i = 0; i < ps->n; i++)
		ps->p[i].cap.saved = ps->p[i].cap.used;
	return 0;
}

int caps_load(struct paths *ps, const char *file)
{
	char line[128];
	unsigned lineno = 0;
	FILE *f;

	if (!caps_wanted(ps) || !file[0])
		return 0;
	f = fopen(file, "re");
	if (!f) {
		if (errno == ENOENT)
			return 0;   /* the first start */
		return log_errno(-errno, "caps: cannot read %s: %m (counting from 0)", file);
	}
	while (fgets(line, sizeof(line), f)) {
		char ifname[IFNAMSIZ + 1];
		long long start;
		unsigned long long used;

		lineno++;
		if (lineno == 1) {
			if (strcmp(line, "gw-agent caps 1\n") != 0) {
				log_warn("caps: %s: line 1: not a caps file of this version "
					 "(counting from 0)", file);
				break;
			}
			continue;
		}
		if (sscanf(line, "%16s %lld %llu", ifname, &start, &used) != 3 || start < 0) {
			log_warn("caps: %s: line %u: not IFACE CYCLE-START BYTES (skipped)", file,
				 lineno);
			continue;
		}
		for (unsigned i = 0; i < ps->n; i++) {
			struct path *p = &ps->p[i];

			/* Only a path not counting yet (at start, or added by a
			 * reload), and only for the cycle it is in. */
			if (p->neighbour || !p->cap.bytes || p->cap.cycle_start ||
			    strcmp(p->ifname, ifname))
				continue;
			p->cap.cycle_start = (time_t)start;
			p->cap.used = p->cap.saved = used;
		}
	}
	fclose(f);
	return 0;
}

bool caps_tick(struct paths *ps, const char *file, uint64_t now_ms, uint64_t *next_ms)
{
	static uint64_t next, last_save;
	bool changed = false, save = false;
	time_t now = time(NULL);

	if (now_ms < next) {
		if (next < *next_ms)
			*next_ms = next;
		return false;
	}
	next = now_ms + CAPS_SAMPLE_MS;
	if (next < *next_ms)
		*next_ms = next;
	for (unsigned i = 0; i < ps->n; i++) {
		struct path *p = &ps->p[i];
		struct path_cap *c = &p->cap;
		uint64_t ctr = 0;
		time_t start;
		int level;
		bool first;

		if (!c->bytes || p->neighbour)
			continue;
		/* The cycle: a new one starts from 0 (anchored at the old
		 * start for a cycle of days). */
		start = caps_cycle_start(now, c->day, c->ndays, c->cycle_start);
		if (start != c->cycle_start) {
			if (c->cycle_start)
				log_info("caps: %s: a new cycle (%.2f GB used in the last)", p->ifname,
					 c->used / 1e9);
			c->cycle_start = start;
			c->used = 0;
			save = true;
		}
		/* The line's bytes both ways; a counter that went back (the
		 * interface made anew: a PPP session, a modem) counts from 0. */
		first = !c->have_ctr;   /* at start: nothing in flight to wait for */
		if (if_counter(p->ifname, &ctr) == 0) {
			if (c->have_ctr)
				c->used += ctr >= c->ctr ? ctr - c->ctr : ctr;
			c->ctr = ctr;
			c->have_ctr = true;
		} else {
			c->have_ctr = false;
		}
		level = level_of(c);
		if (c->grace_until_ms && now_ms >= c->grace_until_ms) {
			enum path_mode before = p->mode;

			c->grace_until_ms = 0;
			p->mode = caps_effective_mode(p);
			changed |= p->mode != before;
		}
		if (level != c->level) {
			enum path_mode before = p->mode;

			c->level = level;
			/* Into an off from a line that carries: backup first. */
			c->grace_until_ms = level >= 0 && c->at[level].action == PATH_OFF &&
					    before != PATH_OFF && !first ? now_ms + CAPS_OFF_GRACE_MS : 0;
			p->mode = caps_effective_mode(p);
			save = true;
			if (level >= 0)
				log_info("caps: %s: %u%% of its %.3f GB used: %s%s", p->ifname,
					 c->at[level].pct, c->bytes / 1e9,
					 path_mode_name((enum path_mode)c->at[level].action),
					 c->grace_until_ms ? " (backup for 2 s first)" : "");
			else
				log_info("caps: %s: under its thresholds: %s", p->ifname,
					 path_mode_name(p->mode));
			changed |= p->mode != before;
		}
		if (c->used != c->saved && now_ms - last_save >= CAPS_SAVE_S * 1000ull)
			save = true;
	}
	if (save) {
		caps_save(ps, file);  /* a failure is logged, and tried again later */
		last_save = now_ms;
	}
	return changed;
}
