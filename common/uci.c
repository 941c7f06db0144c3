/* uci files (uci.h). One pass over the text, line by line: each line is
 * split into words (quotes and escapes resolved), then its keyword decides
 * what the words mean. Nothing is kept of a file that has an error. */
#include "uci.h"
#include "hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_WORDS 4

struct words {
	char *w[MAX_WORDS];
	unsigned n;
	bool too_many;
};

static void words_free(struct words *ws)
{
	for (unsigned i = 0; i < ws->n; i++)
		free(ws->w[i]);
	ws->n = 0;
}

static int fail(char *err, size_t errlen, const char *file, unsigned line, const char *key,
		const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int fail(char *err, size_t errlen, const char *file, unsigned line, const char *key,
		const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (key)
		snprintf(err, errlen, "%s:%u: option '%s': %s", file, line, key, why);
	else
		snprintf(err, errlen, "%s:%u: %s", file, line, why);
	return -EINVAL;
}

/* Splits p[0..len) (one line, no newline) into words, each built in
 * scratch (UCI_MAX_VALUE + 1 bytes) and kept at its own size. Returns 0,
 * or a static reason. */
static const char *split(const char *p, size_t len, struct words *ws, char *scratch)
{
	size_t i = 0;

	ws->n = 0;
	ws->too_many = false;
	while (i < len) {
		char *w;
		size_t wl = 0;

		while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r'))
			i++;
		if (i == len || p[i] == '#')
			break;
		w = scratch;
		while (i < len && p[i] != ' ' && p[i] != '\t' && p[i] != '\r') {
			char q = p[i];

			if (q == '\'' || q == '"') {
				i++;
				while (i < len && p[i] != q) {
					char c = p[i++];

					if (q == '"' && c == '\\') {
						if (i == len)
							break;
						c = p[i++];
					}
					if (wl == UCI_MAX_VALUE)
						return "value longer than 4096 bytes";
					w[wl++] = c;
				}
				if (i == len)
					return "unterminated quote";
				i++;  /* the closing quote */
				continue;
			}
			if (q == '\\') {  /* unquoted: the next character as is */
				i++;
				if (i == len)
					return "a backslash ends the line";
			}
			if (wl == UCI_MAX_VALUE)
				return "value longer than 4096 bytes";
			w[wl++] = p[i++];
		}
		w[wl] = 0;
		if (memchr(w, 0, wl))
			return "a NUL byte in a value";
		if (ws->n == MAX_WORDS) {
			ws->too_many = true;
			continue;
		}
		ws->w[ws->n] = malloc(wl + 1);
		if (!ws->w[ws->n])
			return "out of memory";
		memcpy(ws->w[ws->n++], w, wl + 1);
	}
	return NULL;
}

/* Arrays grow by doubling: one holding n has room up to the next power of
 * two, so a file of n lines costs O(n) copying, not O(n^2). */
static int grow(void *arrp, unsigned n, size_t size)
{
	void **arr = arrp, *na;

	if (n & (n - 1))
		return 0;  /* room left */
	na = realloc(*arr, (n ? 2 * (size_t)n : 1) * size);
	if (!na)
		return -ENOMEM;
	*arr = na;
	return 0;
}

/* The names given so far, for the "given twice" checks in O(1): section
 * names (scope UINT32_MAX) and each section's keys (scope: the section).
 * Keyed SipHash, so a hostile file cannot make its names collide. */
struct name_ent {
	const char *name;            /* owned by the file's structures */
	uint32_t scope, idx;         /* idx: the section or the option */
};

struct names {
	struct hash_key key;
	struct name_ent *e;
	uint32_t *slot;              /* index + 1 into e, open addressing */
	uint32_t n, nslots;
};

static uint32_t names_hash(const struct names *t, uint32_t scope, const char *name)
{
	char buf[4 + 64];
	size_t l = strlen(name);

	memcpy(buf, &scope, 4);
	memcpy(buf + 4, name, l);  /* names are at most 63 bytes */
	return (uint32_t)hash_siphash24(&t->key, buf, 4 + l);
}

/* The entry for (scope, name), or NULL. */
static const struct name_ent *names_find(const struct names *t, uint32_t scope, const char *name)
{
	if (!t->nslots)
		return NULL;
	for (uint32_t i = names_hash(t, scope, name) & (t->nslots - 1);; i = (i + 1) & (t->nslots - 1)) {
		const struct name_ent *e;

		if (!t->slot[i])
			return NULL;
		e = &t->e[t->slot[i] - 1];
		if (e->scope == scope && !strcmp(e->name, name))
			return e;
	}
}

static void names_place(struct names *t, uint32_t ei)
{
	uint32_t i = names_hash(t, t->e[ei].scope, t->e[ei].name) & (t->nslots - 1);

	while (t->slot[i])
		i = (i + 1) & (t->nslots - 1);
	t->slot[i] = ei + 1;
}

static int names_add(struct names *t, uint32_t scope, const char *name, uint32_t idx)
{
	if (grow(&t->e, t->n, sizeof(*t->e)) < 0)
		return -ENOMEM;
	if (2 * (t->n + 1) > t->nslots) {  /* at most half full */
		uint32_t ns = t->nslots ? 2 * t->nslots : 64, *slot = calloc(ns, sizeof(*slot));

		if (!slot)
			return -ENOMEM;
		free(t->slot);
		t->slot = slot;
		t->nslots = ns;
		for (uint32_t i = 0; i < t->n; i++)
			names_place(t, i);
	}
	t->e[t->n] = (struct name_ent){ .name = name, .scope = scope, .idx = idx };
	names_place(t, t->n++);
	return 0;
}

static void names_free(struct names *t)
{
	free(t->e);
	free(t->slot);
	memset(t, 0, sizeof(*t));
}

static bool name_ok(const char *s)
{
	if (!*s || strlen(s) > 63)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static int add_value(struct uci_option *o, char *v)
{
	if (grow(&o->values, o->nvalues, sizeof(*o->values)) < 0)
		return -ENOMEM;
	o->values[o->nvalues++] = v;
	return 0;
}

/* One "option" or "list" line of section s (index si). Takes ownership of
 * ws words 1 and 2 on success. */
static int add_option(struct uci_section *s, uint32_t si, struct names *names, struct words *ws,
		      bool is_list, unsigned line, const char *file, char *err, size_t errlen)
{
	const char *kw = is_list ? "list" : "option";
	const struct name_ent *seen;
	struct uci_option *o = NULL;
	int r;

	if (ws->n < 2)
		return fail(err, errlen, file, line, NULL, "%s without a name", kw);
	if (!name_ok(ws->w[1]))
		return fail(err, errlen, file, line, NULL, "%s name '%.64s' is not letters, digits and _",
			    kw, ws->w[1]);
	if (ws->n < 3)
		return fail(err, errlen, file, line, ws->w[1], "no value");
	if (ws->n > 3 || ws->too_many)
		return fail(err, errlen, file, line, ws->w[1],
			    "more than one value (quote a value with spaces)");
	seen = names_find(names, si, ws->w[1]);
	if (seen)
		o = &s->opts[seen->idx];
	if (o && (!is_list || !o->is_list))
		return fail(err, errlen, file, line, ws->w[1], "%s (line %u)",
			    o->is_list == is_list ? "given twice" : "both an option and a list",
			    o->line);
	if (!o) {
		if (grow(&s->opts, s->nopts, sizeof(*s->opts)) < 0 ||
		    names_add(names, si, ws->w[1], s->nopts) < 0)
			return -ENOMEM;
		o = &s->opts[s->nopts++];
		memset(o, 0, sizeof(*o));
		o->key = ws->w[1];
		ws->w[1] = NULL;
		o->is_list = is_list;
		o->line = line;
	}
	r = add_value(o, ws->w[2]);
	if (r < 0)
		return r;
	ws->w[2] = NULL;
	return 0;
}

void uci_free(struct uci_file *f)
{
	for (unsigned i = 0; i < f->nsec; i++) {
		struct uci_section *s = &f->sec[i];

		for (unsigned k = 0; k < s->nopts; k++) {
			for (unsigned v = 0; v < s->opts[k].nvalues; v++)
				free(s->opts[k].values[v]);
			free(s->opts[k].values);
			free(s->opts[k].key);
		}
		free(s->opts);
		free(s->type);
		free(s->name);
	}
	free(f->sec);
	f->sec = NULL;
	f->nsec = 0;
}

int uci_parse(const char *text, size_t len, const char *file, struct uci_file *ret,
	      char *err, size_t errlen)
{
	struct uci_file f = { 0 };
	struct words ws = { 0 };
	struct names names = { 0 };
	char *scratch;
	unsigned line = 0;
	size_t off = 0;
	int r = 0;

	memset(ret, 0, sizeof(*ret));
	if (len > UCI_MAX_FILE) {
		snprintf(err, errlen, "%s: larger than 1 MiB", file);
		return -EFBIG;
	}
	scratch = malloc(UCI_MAX_VALUE + 1);
	if (!scratch || hash_key_random(&names.key) < 0) {
		free(scratch);
		snprintf(err, errlen, "%s: out of memory", file);
		return -ENOMEM;
	}
	while (off < len && r == 0) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t ll = nl ? (size_t)(nl - (text + off)) : len - off;
		const char *why;

		line++;
		why = split(text + off, ll, &ws, scratch);
		off += ll + (nl ? 1 : 0);
		if (why) {
			r = fail(err, errlen, file, line, NULL, "%s", why);
			break;
		}
		if (!ws.n)
			continue;
		if (!strcmp(ws.w[0], "package")) {
			/* The file's name is its package; nothing to keep. */
		} else if (!strcmp(ws.w[0], "config")) {
			struct uci_section *s;

			if (ws.n < 2 || !name_ok(ws.w[1])) {
				r = fail(err, errlen, file, line, NULL,
					 ws.n < 2 ? "config without a type" :
					 "config type is not letters, digits and _");
			} else if (ws.n > 3 || ws.too_many) {
				r = fail(err, errlen, file, line, NULL, "config takes a type and a name, no more");
			} else if (ws.n == 3 && !name_ok(ws.w[2])) {
				r = fail(err, errlen, file, line, NULL,
					 "section name '%.64s' is not letters, digits and _", ws.w[2]);
			} else if (grow(&f.sec, f.nsec, sizeof(*f.sec)) < 0) {
				r = -ENOMEM;
			} else {
				s = &f.sec[f.nsec++];
				memset(s, 0, sizeof(*s));
				s->line = line;
				s->type = ws.w[1];
				ws.w[1] = NULL;
				s->name = ws.n == 3 ? ws.w[2] : strdup("");
				if (ws.n == 3)
					ws.w[2] = NULL;
				if (!s->name) {
					r = -ENOMEM;
				} else if (s->name[0]) {
					const struct name_ent *seen = names_find(&names, UINT32_MAX, s->name);

					if (seen)
						r = fail(err, errlen, file, line, NULL,
							 "section '%s' given twice (line %u)", s->name,
							 f.sec[seen->idx].line);
					else if (names_add(&names, UINT32_MAX, s->name, f.nsec - 1) < 0)
						r = -ENOMEM;
				}
			}
		} else if (!strcmp(ws.w[0], "option") || !strcmp(ws.w[0], "list")) {
			if (!f.nsec)
				r = fail(err, errlen, file, line, NULL, "%s before any config line", ws.w[0]);
			else
				r = add_option(&f.sec[f.nsec - 1], f.nsec - 1, &names, &ws,
					       ws.w[0][0] == 'l', line, file, err, errlen);
		} else {
			r = fail(err, errlen, file, line, NULL,
				 "'%.32s' is not package, config, option or list", ws.w[0]);
		}
		words_free(&ws);
	}
	words_free(&ws);
	names_free(&names);
	free(scratch);
	if (r == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", file);
	if (r < 0) {
		uci_free(&f);
		return r;
	}
	*ret = f;
	return 0;
}

int uci_load(const char *path, struct uci_file *ret, char *err, size_t errlen)
{
	struct stat st;
	char *buf;
	ssize_t n;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), r;

	memset(ret, 0, sizeof(*ret));
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0 || st.st_size > UCI_MAX_FILE) {
		close(fd);
		snprintf(err, errlen, "%s: larger than 1 MiB", path);
		return -EFBIG;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size && (n = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
		got += (size_t)n;
	close(fd);
	r = uci_parse(buf, got, path, ret, err, errlen);
	free(buf);
	return r;
}

const struct uci_option *uci_get(const struct uci_section *s, const char *key)
{
	for (unsigned i = 0; i < s->nopts; i++)
		if (!strcmp(s->opts[i].key, key))
			return &s->opts[i];
	return NULL;
}
