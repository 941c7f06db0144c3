/* Data caps per line (caps.h): counting, the state file. */
#include "caps.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"

bool caps_wanted(const struct paths *ps)
{
	for (unsigned i = 0; i < ps->n; i++)
		if (ps->p[i].cap.bytes && !ps->p[i].neighbour)
			return true;
	return false;
}

static int if_counter(const char *ifname, uint64_t *ret)
{
	uint64_t rx = 0, tx = 0;
	int r = iface_bytes(ifname, &rx, &tx);

	*ret = rx + tx;
	return r;
}

/* The directory's entry made durable too (the rename). */
static void fsync_dir(const char *file)
{
	char dir[4096];
	char *slash;
	int fd;

	snprintf(dir, sizeof(dir), "%s", file);
	slash = strrchr(dir, '/');
	if (!slash)
		return;
	*(slash == dir ? slash + 1 : slash) = 0;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

int caps_save(struct caps_state *st, struct paths *ps, const char *file)
{
	char tmp[4200];
	FILE *f;
	int fd, r = 0;

	/* Not before the file was read: a start that failed early must not
	 * write zeros over what the lines used. */
	if (!st->loaded || !caps_wanted(ps) || !file[0])
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	/* A new file, never through a link someone left there. */
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		r = -errno;
		if (fd >= 0)
			close(fd);
		return log_errno(r, "caps: cannot write %s: %m", tmp);
	}
	fprintf(f, "gw-agent caps 1\n");
	for (unsigned i = 0; i < ps->n; i++) {
		struct path *p = &ps->p[i];

		if (p->cap.bytes && !p->neighbour && p->cap.cycle_start > 0)
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
	fsync_dir(file);
	for (unsigned i = 0; i < ps->n; i++)
		ps->p[i].cap.saved = ps->p[i].cap.used;
	return 0;
}

/* "IFACE START BYTES\n": 0 with the fields, or -EINVAL. */
static int parse_line(const char *line, char ifname[IFNAMSIZ], time_t *start, uint64_t *used)
{
	const char *sp1 = strchr(line, ' '), *sp2;
	char *end;
	long long s;
	unsigned long long u;

	if (!sp1 || sp1 == line || (size_t)(sp1 - line) >= IFNAMSIZ)
		return -EINVAL;
	memcpy(ifname, line, (size_t)(sp1 - line));
	ifname[sp1 - line] = 0;
	errno = 0;
	s = strtoll(sp1 + 1, &end, 10);
	if (errno || end == sp1 + 1 || *end != ' ' || s <= 0 || s > 100000000000ll)
		return -EINVAL;
	sp2 = end + 1;
	if (!strchr("0123456789", *sp2))
		return -EINVAL;
	u = strtoull(sp2, &end, 10);
	if (errno || *end != '\n' || u > CAPS_MAX_BYTES)
		return -EINVAL;
	*start = (time_t)s;
	*used = u;
	return 0;
}

int caps_load(struct caps_state *st, struct paths *ps, const char *file)
{
	char line[128];
	unsigned lineno = 0;
	struct stat sb;
	bool skip = false;
	FILE *f;
	int fd;

	if (!caps_wanted(ps) || !file[0])
		return 0;
	fd = open(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {
			st->loaded = true;   /* the first start: nothing to keep */
			return 0;
		}
		return log_errno(-errno, "caps: cannot read %s: %m (counting from 0, and not "
				 "writing it)", file);
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || !(f = fdopen(fd, "r"))) {
		close(fd);
		log_error("caps: %s is not a regular file (counting from 0, and not writing it)",
			  file);
		return -EINVAL;
	}
	while (fgets(line, sizeof(line), f)) {
		char ifname[IFNAMSIZ];
		time_t start;
		uint64_t used;
		bool whole = strchr(line, '\n') != NULL;

		if (skip) {              /* the rest of a line too long */
			skip = !whole;
			continue;
		}
		lineno++;
		if (!whole) {
			log_warn("caps: %s: line %u: too long (skipped)", file, lineno);
			skip = true;
			continue;
		}
		if (lineno == 1) {
			if (strcmp(line, "gw-agent caps 1\n") != 0) {
				log_warn("caps: %s: line 1: not a caps file of this version "
					 "(counting from 0)", file);
				break;
			}
			continue;
		}
		if (parse_line(line, ifname, &start, &used) < 0) {
			log_warn("caps: %s: line %u: not IFACE CYCLE-START BYTES (skipped)", file,
				 lineno);
			continue;
		}
		for (unsigned i = 0; i < ps->n; i++) {
			struct path *p = &ps->p[i];

			/* Only a path not counting yet (at start, or a cap
			 * added by a reload). */
			if (p->neighbour || !p->cap.bytes || p->cap.cycle_start || p->cap.have_ctr ||
			    strcmp(p->ifname, ifname))
				continue;
			p->cap.cycle_start = start;
			p->cap.used = p->cap.saved = used;
		}
	}
	if (lineno == 0)
		log_warn("caps: %s is empty (a power cut while it was written?): counting from 0",
			 file);
	fclose(f);
	st->loaded = true;
	return 0;
}

bool caps_tick(struct caps_state *st, struct paths *ps, const char *file, uint64_t now_ms,
	       uint64_t *next_ms)
{
	bool changed = false, save = false, first = !st->started;
	time_t now = time(NULL);

	if (now_ms < st->next_ms) {
		if (st->next_ms < *next_ms)
			*next_ms = st->next_ms;
		return false;
	}
	st->next_ms = now_ms + CAPS_SAMPLE_MS;
	if (st->next_ms < *next_ms)
		*next_ms = st->next_ms;
	if (first) {
		st->started = true;
		st->last_save_ms = now_ms;   /* the periodic save 15 minutes on */
	}
	for (unsigned i = 0; i < ps->n; i++) {
		struct path *p = &ps->p[i];
		struct path_cap *c = &p->cap;
		uint64_t ctr = 0;
		time_t start;
		int level;

		if (!c->bytes || p->neighbour)
			continue;
		/* The cycle. Only ever forward: a clock set back (a router
		 * without a clock before NTP, a step) leaves the cycle and
		 * its count alone. A new cycle= adopts the cycle that holds
		 * now, its count kept. */
		start = caps_cycle_start(now, c->day, c->ndays, c->cycle_start);
		if (c->recycle || !c->cycle_start) {
			c->recycle = false;
			c->cycle_start = start;
			save = true;
		} else if (start > c->cycle_start) {
			log_info("caps: %s: a new cycle (%.3f GB used in the last)", p->ifname,
				 c->used / 1e9);
			c->cycle_start = start;
			c->used = 0;
			save = true;
		}
		/* The line's bytes both ways; a counter that went back (the
		 * interface made anew: a PPP session, a modem) counts from 0. */
		if (if_counter(p->ifname, &ctr) == 0) {
			if (c->have_ctr)
				c->used += ctr >= c->ctr ? ctr - c->ctr : ctr;
			c->ctr = ctr;
			c->have_ctr = true;
		} else {
			c->have_ctr = false;
		}
		level = caps_level(c);
		if (c->grace_until_ms && (now_ms >= c->grace_until_ms || level != c->level)) {
			enum path_mode before = p->mode;

			c->grace_until_ms = 0;
			p->mode = caps_effective_mode(p);
			changed |= p->mode != before;
		}
		if (level != c->level) {
			enum path_mode before = p->mode;

			c->level = level;
			p->mode = caps_effective_mode(p);
			/* Into an off from a line that carries (not at the
			 * agent's start: nothing is in flight then): backup
			 * first. */
			if (p->mode == PATH_OFF && before != PATH_OFF && !first) {
				c->grace_until_ms = now_ms + CAPS_OFF_GRACE_MS;
				p->mode = caps_effective_mode(p);
			}
			save = true;
			if (level >= 0)
				log_info("caps: %s: %u%% of its %.3f GB used: %s%s", p->ifname,
					 c->at[level].pct, c->bytes / 1e9, path_mode_name(p->mode),
					 c->grace_until_ms ? " (then off in 2 s)" : "");
			else
				log_info("caps: %s: under its thresholds: %s", p->ifname,
					 path_mode_name(p->mode));
			changed |= p->mode != before;
		}
		if (c->used != c->saved && now_ms - st->last_save_ms >= CAPS_SAVE_S * 1000ull)
			save = true;
	}
	if (save) {
		caps_save(st, ps, file);  /* a failure is logged, and tried again later */
		st->last_save_ms = now_ms;
	}
	return changed;
}
