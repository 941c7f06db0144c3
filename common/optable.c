#include "optable.h"

#include "log.h"
#include "opts.h"

#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct option *optable_getopt(const struct optable *t)
{
	size_t n = 0, i = 0;
	struct option *o;

	while (t->opts[n].name)
		n++;
	o = calloc(n + 1, sizeof(*o));
	if (!o)
		return NULL;
	for (const struct opt_spec *s = t->opts; s->name; s++) {
		if (s->key_only)
			continue;
		o[i].name = s->name;
		/* --help takes an optional format (man8, man5, markdown). */
		o[i].has_arg = s->arg ? required_argument :
			!strcmp(s->name, "help") ? optional_argument : no_argument;
		o[i].val = s->id;
		i++;
	}
	return o;
}

struct config_key *optable_keys(const struct optable *t)
{
	size_t n = 0, i = 0;
	struct config_key *k;

	for (const struct opt_spec *s = t->opts; s->name; s++)
		n += s->key != NULL;
	k = calloc(n + 1, sizeof(*k));
	if (!k)
		return NULL;
	for (const struct opt_spec *s = t->opts; s->name; s++) {
		if (!s->key)
			continue;
		k[i].path = s->key;
		k[i].opt = s->id;
		k[i].kind = s->kind;
		k[i].opt_false = s->id_false;
		k[i].fields = s->fields;
		i++;
	}
	return k;
}

const struct opt_spec *optable_find(const struct optable *t, int id)
{
	for (const struct opt_spec *s = t->opts; s->name; s++)
		if (s->id == id && !s->key_only)
			return s;
	return NULL;
}

int optable_load_all(const struct optable *t, int argc, char **argv, const char *default_file,
		     config_apply_fn apply, void *ctx, bool *cmdline, char *ret_path,
		     size_t path_len)
{
	static const struct optable *made_for;
	static struct option *long_opts;
	static struct config_key *keys;

	if (made_for != t) {
		free(long_opts);
		free(keys);
		long_opts = optable_getopt(t);
		keys = optable_keys(t);
		made_for = long_opts && keys ? t : NULL;
		if (!made_for)
			return -ENOMEM;
	}
	return config_load_all(argc, argv, default_file, long_opts, keys, apply, ctx, cmdline,
			       ret_path, path_len);
}

static void store_uint(void *p, size_t size, unsigned long v)
{
	if (size == sizeof(uint16_t))
		*(uint16_t *)p = (uint16_t)v;
	else if (size == sizeof(uint64_t))
		*(uint64_t *)p = v;
	else
		*(uint32_t *)p = (uint32_t)v;
}

int optable_apply(const struct optable *t, void *cfg, int id, const char *arg)
{
	const struct opt_spec *s = optable_find(t, id);
	char *at;
	unsigned long v;
	unsigned ms, u;
	int r;

	if (!s || s->type == OT_CUSTOM)
		return 1;
	if (s->type == OT_META) {
		if (!strcmp(s->name, "version")) {
			printf("%s %s\n", t->program, t->version);
			exit(0);
		}
		if (!strcmp(s->name, "help")) {
			if (optable_print(t, stdout, arg) < 0)
				return opt_error(s->name, arg, "is not a help format (man8, man5, markdown)");
			exit(0);
		}
		return 0;  /* --config, --check-config: read before parsing */
	}
	at = (char *)cfg + s->off;
	switch (s->type) {
	case OT_UINT:
		if ((r = opt_uint(s->name, arg, s->min, s->max, &v)) < 0)
			return r;
		store_uint(at, s->size, v);
		return 0;
	case OT_POW2:
		if ((r = opt_pow2(s->name, arg, s->min, s->max, &u)) < 0)
			return r;
		*(unsigned *)at = u;
		return 0;
	case OT_MS:
	case OT_MS_NONZERO:
	case OT_SECONDS_UP:
		if ((r = opt_seconds_ms(s->name, arg, (unsigned)s->max, &ms)) < 0)
			return r;
		if (s->type == OT_MS_NONZERO && !ms)
			return opt_error(s->name, arg, "must be more than 0");
		*(unsigned *)at = s->type == OT_SECONDS_UP ? (ms + 999) / 1000 : ms;
		return 0;
	case OT_ABSPATH:
	case OT_STRING:
		if (s->type == OT_ABSPATH && *arg && *arg != '/')
			return opt_error(s->name, arg, "is not an absolute path");
		if (strlen(arg) >= s->size)
			return opt_error(s->name, arg, "is too long");
		strcpy(at, arg);
		return 0;
	case OT_LOG_LEVEL:
		return opt_log_level(s->name, arg, (int *)at);
	case OT_TRUE:
	case OT_FALSE:
		*(bool *)at = s->type == OT_TRUE;
		return 0;
	case OT_CUSTOM:
	case OT_META:
		break;
	}
	return 1;
}

static bool is_zero(const char *p, size_t size)
{
	while (size--)
		if (*p++)
			return false;
	return true;
}

static const char *setting_name(const struct opt_spec *s)
{
	return s->key ? s->key : s->name;
}

void optable_restart_changes(const struct optable *t, const void *a, const void *b,
			     char *buf, size_t len)
{
	for (const struct opt_spec *s = t->opts; s->name; s++) {
		size_t used = strlen(buf);

		if (s->reload != OPT_RESTART || s->type == OT_CUSTOM || s->type == OT_META ||
		    s->hidden || !s->size)
			continue;
		if (!memcmp((const char *)a + s->off, (const char *)b + s->off, s->size))
			continue;
		/* 0 where the least value is 1: not set, the daemon works one
		 * out at start (max_flows from the fd limit): keeps it. */
		if (s->type == OT_UINT && s->min >= 1 && is_zero((const char *)b + s->off, s->size))
			continue;
		snprintf(buf + used, len - used, "%s%s", used ? ", " : "", setting_name(s));
	}
}

void optable_restart_keep(const struct optable *t, void *n, const void *cur)
{
	for (const struct opt_spec *s = t->opts; s->name; s++)
		if (s->reload == OPT_RESTART && s->type != OT_CUSTOM && s->type != OT_META &&
		    !s->hidden && s->size)
			memcpy((char *)n + s->off, (const char *)cur + s->off, s->size);
}

/* ---- documentation ---- */

static const char *kind_name(const struct opt_spec *s)
{
	switch (s->kind) {
	case CONFIG_STRING: return "string";
	case CONFIG_NUMBER: return "number";
	case CONFIG_BOOL: return "boolean";
	case CONFIG_LIST: return "list of strings";
	case CONFIG_SPEC_LIST: return "list of strings or objects";
	case CONFIG_UCI_MULTIPATH: return "uci network file";
	}
	return "";
}

/* The option as --help shows it: "--name ARG". */
static void opt_label(const struct opt_spec *s, char *buf, size_t len)
{
	snprintf(buf, len, "--%s%s%s", s->name, s->arg ? " " : "", s->arg ? s->arg : "");
}

/* Words of text, wrapped to width, each line after the first indented. */
static void wrap(FILE *f, const char *text, unsigned col, unsigned indent, unsigned width)
{
	const char *p = text;

	while (*p) {
		const char *w = p;
		size_t n;

		while (*w == ' ')
			w++;
		n = strcspn(w, " ");
		if (!n)
			break;
		if (col > indent && col + 1 + n > width) {
			fprintf(f, "\n%*s", (int)indent, "");
			col = indent;
		} else if (col > indent) {
			fputc(' ', f);
			col++;
		}
		fwrite(w, 1, n, f);
		col += (unsigned)n;
		p = w + n;
	}
	fputc('\n', f);
}

static void print_help(const struct optable *t, FILE *f)
{
	fprintf(f, "Usage: %s\n%s\n\n", t->synopsis, t->summary);
	for (const struct opt_spec *s = t->opts; s->name; s++) {
		char label[256], text[1024];
		int col;

		if (s->hidden)
			continue;
		opt_label(s, label, sizeof(label));
		snprintf(text, sizeof(text), "%s%s%s%s", s->help, s->deflt ? " (default " : "",
			 s->deflt ? s->deflt : "", s->deflt ? ")" : "");
		col = fprintf(f, "  %s", label);
		if (col > 29) {
			fprintf(f, "\n%*s", 30, "");
			col = 30;
		} else {
			fprintf(f, "%*s", 30 - col, "");
			col = 30;
		}
		wrap(f, text, (unsigned)col, 30, 79);
	}
	fprintf(f, "\nSettings and their config file keys: man %s; config files: man %s.conf\n",
		t->program, t->program);
}

/* roff: a backslash and a leading dot or quote are special; '-' is \-. */
static void roff(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '-')
			fputs("\\-", f);
		else if (*s == '\\')
			fputs("\\e", f);
		else
			fputc(*s, f);
	}
}

/* An entry's text in both man pages: what it does, the default, (the config
 * key,) whether a reload applies it. */
static void roff_entry(FILE *f, const struct opt_spec *s, bool with_key)
{
	roff(f, s->help);
	fputs(".", f);
	if (s->more) {
		fputc(' ', f);
		roff(f, s->more);
	}
	if (s->deflt) {
		fputs(" Default: ", f);
		roff(f, s->deflt);
		fputs(".", f);
	}
	if (with_key && s->key) {
		fputs(" Config key: \\fB", f);
		roff(f, s->key);
		fputs("\\fR.", f);
	}
	if (s->reload == OPT_LIVE)
		fputs(" A reload applies it.", f);
	else if (s->reload == OPT_RESTART)
		fputs(" Takes effect at a restart.", f);
	fputc('\n', f);
}

static void print_man8(const struct optable *t, FILE *f)
{
	for (const struct opt_spec *s = t->opts; s->name; s++) {
		if (s->hidden)
			continue;
		/* .BI: the name in bold, the value's name in italics. */
		fputs(s->arg ? ".TP\n.BI \\-\\-" : ".TP\n.B \\-\\-", f);
		roff(f, s->name);
		if (s->arg) {
			fputs(" \" ", f);
			roff(f, s->arg);
			fputs("\"", f);
		}
		fputc('\n', f);
		roff_entry(f, s, true);
	}
}

static void print_man5(const struct optable *t, FILE *f)
{
	for (const struct opt_spec *s = t->opts; s->name; s++) {
		char uci[64];
		bool list;

		if (!s->key)
			continue;
		/* uci: '.' as '_'; a list's entries may be named in the
		 * singular (list concentrator), config.c accepts both. */
		snprintf(uci, sizeof(uci), "%s", s->key);
		for (char *p = uci; *p; p++)
			if (*p == '.')
				*p = '_';
		list = s->kind == CONFIG_LIST || s->kind == CONFIG_SPEC_LIST;
		if (list && strlen(uci) > 2 && uci[strlen(uci) - 1] == 's' &&
		    uci[strlen(uci) - 2] != 's')
			uci[strlen(uci) - 1] = 0;
		if (s->kind == CONFIG_UCI_MULTIPATH) {
			fputs(".TP\n.B option multipath\n(in an interface section of the uci "
			      "network file beside this one; as \\fB\\-\\-", f);
			roff(f, s->name);
			fputs("\\fR) ", f);
			roff(f, s->help);
			fputs(". A reload applies it.\n", f);
			continue;
		}
		fputs(".TP\n.B ", f);
		roff(f, s->key);
		fputs("\n(", f);
		roff(f, kind_name(s));
		if (s->kind != CONFIG_UCI_MULTIPATH) {
			fputs(list ? "; uci: \\fBlist " : "; uci: \\fBoption ", f);
			roff(f, uci);
			fputs("\\fR", f);
		}
		fputs("; as \\fB\\-\\-", f);
		roff(f, s->name);
		fputs("\\fR) ", f);
		roff_entry(f, s, false);
	}
}

static void md(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '|')
			fputs("\\|", f);
		else
			fputc(*s, f);
	}
}

static void print_markdown(const struct optable *t, FILE *f)
{
	fputs("| Option | Config key | Default | Reload | Meaning |\n", f);
	fputs("|---|---|---|---|---|\n", f);
	for (const struct opt_spec *s = t->opts; s->name; s++) {
		char label[256];

		if (s->hidden)
			continue;
		opt_label(s, label, sizeof(label));
		fputs("| `", f);
		md(f, label);
		fputs("` | ", f);
		if (s->key) {
			fputc('`', f);
			md(f, s->key);
			fputc('`', f);
			if (s->kind == CONFIG_LIST || s->kind == CONFIG_SPEC_LIST)
				fputs(" (list)", f);
			else if (s->kind == CONFIG_BOOL)
				fputs(" (bool)", f);
		}
		fputs(" | ", f);
		md(f, s->deflt ? s->deflt : "");
		fprintf(f, " | %s | ", s->reload == OPT_LIVE ? "applied" :
			s->reload == OPT_RESTART ? "restart" : "");
		md(f, s->help);
		if (s->more) {
			fputs(". ", f);
			md(f, s->more);
		}
		fputs(" |\n", f);
	}
}

int optable_print(const struct optable *t, FILE *f, const char *format)
{
	if (!format || !strcmp(format, "text"))
		print_help(t, f);
	else if (!strcmp(format, "man8"))
		print_man8(t, f);
	else if (!strcmp(format, "man5"))
		print_man5(t, f);
	else if (!strcmp(format, "markdown"))
		print_markdown(t, f);
	else
		return -EINVAL;
	return 0;
}
