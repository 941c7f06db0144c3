#include "config.h"

#include "opts.h"
#include "uci.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct walk {
	const char *file;
	const struct config_key *keys;
	config_apply_fn apply;
	void *ctx;
	int errors;
};

static const char *json_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER:
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "?";
}

static const char *kind_wants(enum config_kind k)
{
	switch (k) {
	case CONFIG_STRING: return "a string";
	case CONFIG_NUMBER: return "a number";
	case CONFIG_BOOL: return "true or false";
	case CONFIG_LIST: return "an array of strings";
	case CONFIG_SPEC_LIST: return "an array of strings or objects";
	case CONFIG_UCI_MULTIPATH: return "nothing (it comes from OpenWrt's network file)";
	}
	return "?";
}

/* Edit distance, for "did you mean": small strings only. */
static unsigned distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned row[64];

	if (la >= 63 || lb >= 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		row[j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		unsigned prev = row[0], cur;

		row[0] = (unsigned)i;
		for (size_t j = 1; j <= lb; j++) {
			cur = row[j];
			unsigned best = prev + (a[i - 1] != b[j - 1]);

			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	return row[lb];
}

static void unknown_key(struct walk *w, const char *path)
{
	const char *best = NULL;
	unsigned bd = 3;

	for (const struct config_key *k = w->keys; k->path; k++) {
		unsigned d = distance(path, k->path);

		if (d < bd) {
			bd = d;
			best = k->path;
		}
	}
	opt_source(w->file, path);
	if (best)
		opt_source_error("%s: unknown key (did you mean %s?)", path, best);
	else
		opt_source_error("%s: unknown key", path);
	w->errors++;
}

static void type_error(struct walk *w, const char *path, const json_t *v, const char *wants)
{
	opt_source(w->file, path);
	opt_source_error("%s: is %s, expected %s", path, json_type_name(v), wants);
	w->errors++;
}

static void apply(struct walk *w, const char *path, int opt, const char *text)
{
	opt_source(w->file, path);
	if (w->apply(w->ctx, opt, text) < 0)
		w->errors++;
}

/* A number as the command line would write it: integers exactly, others
 * as the shortest decimal that reads back the same. */
static void number_text(const json_t *v, char buf[64])
{
	if (json_is_integer(v))
		snprintf(buf, 64, "%lld", (long long)json_integer_value(v));
	else
		snprintf(buf, 64, "%.17g", json_real_value(v));
}

/* {"interface": "wan", "mode": "backup"} -> "wan,mode=backup" */
static int spec_text(struct walk *w, const char *path, const json_t *obj,
		     const char *const *fields, char *buf, size_t len)
{
	const char *key;
	json_t *v;
	size_t off = 0;
	int bad = 0;

	json_object_foreach((json_t *)obj, key, v) {
		bool known = false;

		for (unsigned i = 0; fields[i]; i++)
			if (!strcmp(key, fields[i]))
				known = true;
		if (!known) {
			char kp[400], takes[200] = "";
			size_t tl = 0;

			for (unsigned i = 0; fields[i] && tl < sizeof(takes); i++)
				tl += (size_t)snprintf(takes + tl, sizeof(takes) - tl, "%s%s",
						       i ? ", " : "", fields[i]);
			snprintf(kp, sizeof(kp), "%s.%s", path, key);
			opt_source(w->file, kp);
			opt_source_error("%s: unknown key (this object takes %s)", kp, takes);
			w->errors++;
			bad = 1;
		} else if (!json_is_string(v)) {
			char kp[400];

			snprintf(kp, sizeof(kp), "%s.%s", path, key);
			type_error(w, kp, v, "a string");
			bad = 1;
		}
	}
	/* Go on with the fields that are right: their own errors show too. */
	v = json_object_get(obj, fields[0]);
	if (!v || !json_is_string(v)) {
		if (v)
			return -EINVAL;  /* already reported as a type error */
		opt_source(w->file, path);
		opt_source_error("%s: has no \"%s\"", path, fields[0]);
		w->errors++;
		return -EINVAL;
	}
	off = (size_t)snprintf(buf, len, "%s", json_string_value(v));
	for (unsigned i = 1; fields[i] && off < len; i++) {
		v = json_object_get(obj, fields[i]);
		if (v && json_is_string(v))
			off += (size_t)snprintf(buf + off, len - off, ",%s=%s", fields[i],
						json_string_value(v));
	}
	if (off >= len) {
		opt_source(w->file, path);
		opt_source_error("%s: is too long", path);
		w->errors++;
		return -EINVAL;
	}
	return bad ? 1 : 0;  /* 1: apply, but the object had errors */
}

static void leaf(struct walk *w, const struct config_key *k, const char *path, const json_t *v)
{
	char num[64], item[320];
	size_t i;
	json_t *e;

	switch (k->kind) {
	case CONFIG_STRING:
		if (!json_is_string(v))
			return type_error(w, path, v, kind_wants(k->kind));
		apply(w, path, k->opt, json_string_value(v));
		return;
	case CONFIG_NUMBER:
		if (!json_is_number(v))
			return type_error(w, path, v, kind_wants(k->kind));
		number_text(v, num);
		apply(w, path, k->opt, num);
		return;
	case CONFIG_BOOL:
		if (!json_is_boolean(v))
			return type_error(w, path, v, kind_wants(k->kind));
		if (json_is_true(v))
			apply(w, path, k->opt, NULL);
		else if (k->opt_false)
			apply(w, path, k->opt_false, NULL);
		return;
	case CONFIG_LIST:
	case CONFIG_SPEC_LIST:
		if (!json_is_array(v))
			return type_error(w, path, v, kind_wants(k->kind));
		json_array_foreach((json_t *)v, i, e) {
			snprintf(item, sizeof(item), "%s[%zu]", path, i);
			if (json_is_string(e)) {
				apply(w, item, k->opt, json_string_value(e));
			} else if (k->kind == CONFIG_SPEC_LIST && json_is_object(e)) {
				char spec[256];

				if (spec_text(w, item, e, k->fields, spec, sizeof(spec)) >= 0)
					apply(w, item, k->opt, spec);
			} else {
				type_error(w, item, e, k->kind == CONFIG_LIST ? "a string" :
					   "a string or an object");
			}
		}
		return;
	case CONFIG_UCI_MULTIPATH:
		return type_error(w, path, v, kind_wants(k->kind));
	}
}

static bool has_prefix_path(const struct config_key *keys, const char *path)
{
	size_t n = strlen(path);

	for (const struct config_key *k = keys; k->path; k++)
		if (!strncmp(k->path, path, n) && k->path[n] == '.')
			return true;
	return false;
}

static void walk_object(struct walk *w, const char *prefix, const json_t *obj)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v) {
		char path[256];
		const struct config_key *k;

		snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", key);
		for (k = w->keys; k->path; k++)
			if (!strcmp(k->path, path))
				break;
		if (k->path) {
			leaf(w, k, path, v);
		} else if (has_prefix_path(w->keys, path)) {
			if (json_is_object(v))
				walk_object(w, path, v);
			else
				type_error(w, path, v, "an object");
		} else {
			unknown_key(w, path);
		}
	}
}

/* The file, with // comments blanked out to the end of their line: JSON
 * has none, and an operator's file needs them. A small scanner follows
 * strings (and their escapes), so "//" inside a string (a URL) is kept;
 * blanking with spaces keeps line and column numbers in syntax errors. */
static char *read_commented(FILE *f, size_t *ret_len)
{
	size_t cap = 8192, len = 0, n;
	char *s = malloc(cap);
	bool in_str = false;

	if (!s)
		return NULL;
	while ((n = fread(s + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap) {
			char *t = cap < (16u << 20) ? realloc(s, cap * 2) : NULL;

			if (!t) {
				free(s);
				return NULL;
			}
			s = t;
			cap *= 2;
		}
	}
	for (size_t i = 0; i < len; i++) {
		if (in_str) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				in_str = false;
		} else if (s[i] == '"') {
			in_str = true;
		} else if (s[i] == '/' && i + 1 < len && s[i + 1] == '/') {
			while (i < len && s[i] != '\n')
				s[i++] = ' ';
		}
	}
	*ret_len = len;
	return s;
}

/* ---- uci ---- */

static const struct config_key *uci_key(const struct config_key *keys, const char *name)
{
	for (const struct config_key *k = keys; k->path; k++) {
		char flat[96];
		size_t n;

		if (k->kind == CONFIG_UCI_MULTIPATH)
			continue;
		snprintf(flat, sizeof(flat), "%s", k->path);
		for (char *c = flat; *c; c++)
			if (*c == '.')
				*c = '_';
		if (!strcmp(flat, name))
			return k;
		n = strlen(flat);
		if ((k->kind == CONFIG_LIST || k->kind == CONFIG_SPEC_LIST) && n > 1 &&
		    flat[n - 1] == 's' && !strncmp(flat, name, n - 1) && !name[n - 1])
			return k;
	}
	return NULL;
}

static int uci_bool(const char *v)
{
	static const char *const yes[] = { "1", "true", "yes", "on" }, *const no[] = { "0", "false", "no", "off" };

	for (unsigned i = 0; i < 4; i++) {
		if (!strcmp(v, yes[i]))
			return 1;
		if (!strcmp(v, no[i]))
			return 0;
	}
	return -1;
}

/* uci's "FILE:LINE: why" as our own source error (the same form). */
static int uci_load_error(const char *err, const char *file)
{
	char where[300];
	const char *why = strstr(err + strnlen(err, strlen(file)), ": ");

	snprintf(where, sizeof(where), "%.*s", why ? (int)(why - err) : (int)strlen(err), err);
	opt_source(where, "");
	opt_source_error("%s", why ? why + 2 : "cannot be read");
	opt_source(NULL, NULL);
	return -EINVAL;
}

/* OpenWrt's network file next to file: interfaces with a multipath option
 * become paths (their device; older files say ifname). */
static int uci_multipath(const char *file, int opt, config_apply_fn fn, void *ctx)
{
	char net[512], err[320], where[540], spec[128];
	const char *slash = strrchr(file, '/');
	struct uci_file f;
	int r, bad = 0;

	snprintf(net, sizeof(net), "%.*snetwork", slash ? (int)(slash - file + 1) : 0, file);
	r = uci_load(net, &f, err, sizeof(err));
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return uci_load_error(err, net);
	for (unsigned i = 0; i < f.nsec; i++) {
		const struct uci_section *s = &f.sec[i];
		const struct uci_option *mp = uci_get(s, "multipath");
		const struct uci_option *dev = uci_get(s, "device");

		if (strcmp(s->type, "interface") || !mp)
			continue;
		if (!dev)
			dev = uci_get(s, "ifname");
		snprintf(where, sizeof(where), "%s:%u", net, mp->line);
		opt_source(where, "option 'multipath'");
		if (!dev) {
			bad = opt_source_error("option 'multipath': interface '%s' has no device "
					       "(or ifname) option", s->name);
			continue;
		}
		snprintf(spec, sizeof(spec), "%s,mode=%s", dev->values[0], mp->values[0]);
		if (fn(ctx, opt, spec) < 0)
			bad = -EINVAL;
	}
	uci_free(&f);
	return bad;
}

/* The key whose items a section of this type gives, one per section:
 * "config class 'tv'" for "classes", "config path" for "paths". */
static const struct config_key *uci_section_key(const struct config_key *keys, const char *type)
{
	for (const struct config_key *k = keys; k->path; k++) {
		char one[64];
		size_t n = strlen(k->path);

		if (k->kind != CONFIG_SPEC_LIST || n < 2 || n >= sizeof(one) || strchr(k->path, '.'))
			continue;
		memcpy(one, k->path, n + 1);
		if (n > 4 && !strcmp(one + n - 4, "sses"))
			one[n - 2] = '\0';  /* classes -> class */
		else if (one[n - 1] == 's')
			one[n - 1] = '\0';
		if (!strcmp(one, type))
			return k;
	}
	return NULL;
}

/* A section as one item: its name (or its option named as the first
 * field) first, then FIELD=VALUE for each option, a list's values joined
 * with '+'. */
static int uci_section_item(const char *file, const struct uci_section *s,
			    const struct config_key *key, config_apply_fn fn, void *ctx)
{
	char spec[4096], where[300], what[96];
	size_t off = 0;
	const struct uci_option *first = uci_get(s, key->fields[0]);
	int bad = 0;

	snprintf(where, sizeof(where), "%s:%u", file, s->line);
	snprintf(what, sizeof(what), "config %s '%s'", s->type, s->name);
	opt_source(where, what);
	if (first && (first->is_list || first->nvalues != 1))
		return opt_source_error("option '%s': takes one value", key->fields[0]);
	if (!first && !s->name[0])
		return opt_source_error("config %s: has neither a name nor option '%s'", s->type,
					key->fields[0]);
	if (first && strpbrk(first->values[0], ",+=")) {
		opt_source(where, what);
		return opt_source_error("option '%s': \"%s\" has a ',', '+' or '='", key->fields[0],
					first->values[0]);
	}
	off = (size_t)snprintf(spec, sizeof(spec), "%s", first ? first->values[0] : s->name);
	for (unsigned k = 0; k < s->nopts; k++) {
		const struct uci_option *o = &s->opts[k];
		bool known = false;

		snprintf(where, sizeof(where), "%s:%u", file, o->line);
		opt_source(where, what);
		for (unsigned i = 1; key->fields[i]; i++)
			known |= !strcmp(o->key, key->fields[i]);
		if (!strcmp(o->key, key->fields[0]))
			continue;
		if (!known) {
			char takes[200] = "";
			size_t tl = 0;

			for (unsigned i = 0; key->fields[i] && tl < sizeof(takes); i++)
				tl += (size_t)snprintf(takes + tl, sizeof(takes) - tl, "%s%s",
						       i ? ", " : "", key->fields[i]);
			bad = opt_source_error("option '%s': unknown in a %s section (it takes %s)",
					       o->key, s->type, takes);
			continue;
		}
		for (unsigned v = 0; v < o->nvalues && off < sizeof(spec); v++) {
			if (strchr(o->values[v], ',')) {
				bad = opt_source_error("option '%s': \"%s\" has a comma (a list: one "
						       "value per list line)", o->key, o->values[v]);
				break;
			}
			off += (size_t)snprintf(spec + off, sizeof(spec) - off, "%s%s%s",
						v ? "+" : ",", v ? "" : o->key, v ? "" : "=");
			if (off < sizeof(spec))
				off += (size_t)snprintf(spec + off, sizeof(spec) - off, "%s",
							o->values[v]);
		}
	}
	if (off >= sizeof(spec))
		return opt_source_error("config %s: too long", s->type);
	if (bad)
		return bad;
	snprintf(where, sizeof(where), "%s:%u", file, s->line);
	opt_source(where, what);
	return fn(ctx, key->opt, spec) < 0 ? -EINVAL : 0;
}

static int config_load_uci(const char *file, const struct config_key *keys,
			   config_apply_fn fn, void *ctx)
{
	char err[320], where[300], what[96];
	struct uci_file f;
	int r, bad = 0;

	r = uci_load(file, &f, err, sizeof(err));
	if (r < 0)
		return uci_load_error(err, file);
	for (unsigned i = 0; i < f.nsec; i++) {
		const struct config_key *sk = uci_section_key(keys, f.sec[i].type);

		if (sk) {
			if (uci_section_item(file, &f.sec[i], sk, fn, ctx) < 0)
				bad = -EINVAL;
			continue;
		}
		for (unsigned k = 0; k < f.sec[i].nopts; k++) {
			const struct uci_option *o = &f.sec[i].opts[k];
			const struct config_key *key = uci_key(keys, o->key);

			snprintf(where, sizeof(where), "%s:%u", file, o->line);
			snprintf(what, sizeof(what), "option '%s'", o->key);
			opt_source(where, what);
			if (!key) {
				bad = opt_source_error("option '%s': unknown option", o->key);
				continue;
			}
			if (o->is_list && key->kind != CONFIG_LIST && key->kind != CONFIG_SPEC_LIST) {
				bad = opt_source_error("option '%s': is a list; it takes one value", o->key);
				continue;
			}
			for (unsigned v = 0; v < o->nvalues; v++) {
				if (key->kind == CONFIG_BOOL) {
					int b = uci_bool(o->values[v]);

					if (b < 0)
						bad = opt_source_error("option '%s': \"%s\" is not 1/0, true/false, "
								       "yes/no or on/off", o->key, o->values[v]);
					else if (fn(ctx, b ? key->opt : key->opt_false, NULL) < 0)
						bad = -EINVAL;
				} else if (fn(ctx, key->opt, o->values[v]) < 0) {
					bad = -EINVAL;
				}
			}
		}
	}
	uci_free(&f);
	for (const struct config_key *k = keys; k->path; k++)
		if (k->kind == CONFIG_UCI_MULTIPATH && uci_multipath(file, k->opt, fn, ctx) < 0)
			bad = -EINVAL;
	opt_source(NULL, NULL);
	return bad ? -EINVAL : 0;
}

/* A uci file's first word, past blank and # comment lines, is config or
 * package; anything else is read as JSON (and gets JSON's errors). */
static bool is_uci(FILE *f)
{
	char w[8];
	size_t n = 0;
	int c;

	for (;;) {
		while ((c = getc(f)) == ' ' || c == '\t' || c == '\n' || c == '\r')
			;
		if (c != '#')
			break;
		while ((c = getc(f)) != EOF && c != '\n')
			;
	}
	while (c != EOF && c != ' ' && c != '\t' && c != '\n' && n < sizeof(w) - 1) {
		w[n++] = (char)c;
		c = getc(f);
	}
	w[n] = 0;
	return !strcmp(w, "config") || !strcmp(w, "package");
}

int config_load(const char *file, const struct config_key *keys, config_apply_fn fn,
		void *ctx)
{
	struct walk w = { .keys = keys, .apply = fn, .ctx = ctx };
	json_error_t err;
	json_t *root;
	size_t len;
	char *text;
	FILE *f;

	f = fopen(file, "re");
	if (!f) {
		int e = -errno;

		if (e == -ENOENT)
			return e;
		opt_source(file, "");
		opt_source_error("cannot read: %s", strerror(-e));
		opt_source(NULL, NULL);
		return -EINVAL;
	}
	if (is_uci(f)) {
		fclose(f);
		return config_load_uci(file, keys, fn, ctx);
	}
	rewind(f);
	w.file = file;
	text = read_commented(f, &len);
	fclose(f);
	if (!text) {
		opt_source(file, "");
		opt_source_error("cannot read: %s", strerror(ENOMEM));
		opt_source(NULL, NULL);
		return -EINVAL;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	free(text);
	if (!root) {
		opt_source(file, "");
		opt_source_error("line %d, column %d: %s", err.line, err.column, err.text);
		opt_source(NULL, NULL);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		opt_source(file, "");
		opt_source_error("is %s, expected an object of settings", json_type_name(root));
		w.errors++;
	} else {
		walk_object(&w, "", root);
	}
	json_decref(root);
	opt_source(NULL, NULL);
	return w.errors ? -EINVAL : 0;
}

const char *config_prescan(int argc, char **argv, const char *default_file,
			   bool *ret_explicit, bool *ret_check)
{
	const char *file = default_file;

	*ret_explicit = *ret_check = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--config") && i + 1 < argc) {
			file = argv[++i];
			*ret_explicit = true;
		} else if (!strncmp(argv[i], "--config=", 9)) {
			file = argv[i] + 9;
			*ret_explicit = true;
		} else if (!strcmp(argv[i], "--check-config")) {
			*ret_check = true;
		}
	}
	return file;
}

int config_load_all(int argc, char **argv, const char *default_file,
		    const struct option *long_opts, const struct config_key *keys,
		    config_apply_fn fn, void *ctx, bool *cmdline,
		    char *ret_path, size_t path_len)
{
	bool explicit_file, check;
	const char *file = config_prescan(argc, argv, default_file, &explicit_file, &check);
	int c, r, bad = 0;

	snprintf(ret_path, path_len, "%s", file);
	*cmdline = false;
	r = config_load(file, keys, fn, ctx);
	if (r == -ENOENT) {
		ret_path[0] = 0;
		if (explicit_file)
			bad = opt_source_error("cannot read %s: %s", file, strerror(ENOENT));
	} else if (r < 0) {
		bad = r;
	}
	*cmdline = true;
	optind = 0;  /* glibc: a full re-scan, for reloads */
	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1)
		if (fn(ctx, c, optarg) < 0)
			bad = -EINVAL;
	if (optind < argc)
		bad = opt_source_error("unexpected argument \"%s\"", argv[optind]);
	return bad ? -EINVAL : 0;
}
