/* JSON configuration files for both daemons (jansson).
 *
 * A daemon describes its file as a table: each key path ("policy.allow_clients")
 * maps to one of its command-line options. The loader walks the file, turns
 * each value into the text that option takes on the command line and hands
 * it to the daemon's own option parser, so a setting means the same in both
 * places and is checked by the same code. While it does, opts.c names the
 * file and key in its errors instead of the option:
 *
 *   concentrator.json: policy.allow_clients[2]: "10.0.0.0/33" is not a prefix ...
 *
 * Unknown keys, wrong JSON types and syntax errors are errors too, each with
 * the file, the key path (and line for syntax errors) and the reason. All
 * errors in a file are reported, not just the first. // starts a comment
 * to the end of the line, outside strings (an extension of JSON). */
#ifndef COMMON_CONFIG_H
#define COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

enum config_kind {
	CONFIG_STRING,     /* a JSON string */
	CONFIG_NUMBER,     /* a JSON number, given to the option as decimal text */
	CONFIG_BOOL,       /* true: the option (no value); false: opt_false, if any */
	CONFIG_LIST,       /* an array of strings: the option once per element */
	CONFIG_SPEC_LIST,  /* an array of strings or objects of fields: an object
			    * {"a": x, "b": y, "c": z} becomes "x,b=y,c=z" with
			    * fields[0] = "a" the positional field */
	CONFIG_UCI_MULTIPATH,  /* uci only: each interface of the network file
				* next to it with option multipath becomes
				* "DEVICE,mode=MODE" (OpenWrt's historic
				* per-interface option) */
};

struct config_key {
	const char *path;
	int opt;
	enum config_kind kind;
	int opt_false;
	const char *const *fields;   /* CONFIG_SPEC_LIST, NULL-terminated */
};

/* Called for each value with the option and its text (NULL for options
 * without a value). Returns 0 or -errno after reporting through opts.c. */
typedef int (*config_apply_fn)(void *ctx, int opt, const char *value);

/* A file whose first word (past blank and # lines) is config or package
 * is an OpenWrt uci file (uci.h): the options of its sections are the keys, '.' written as '_'
 * (timeouts_connect), a list key also in the singular (list concentrator);
 * booleans 1/0, true/false, yes/no, on/off. Errors name the file, line and
 * option.
 *
 * Reads file and applies every key. Returns 0, -ENOENT if the file does not
 * exist (nothing printed: the caller decides whether that matters), or
 * -EINVAL after printing every error found. keys ends with path NULL. */
int config_load(const char *file, const struct config_key *keys, config_apply_fn apply,
		void *ctx);

/* --config FILE / --check-config, found before the real parse (the file is
 * applied first and the command line over it). Returns the file to read. */
const char *config_prescan(int argc, char **argv, const char *default_file,
			   bool *ret_explicit, bool *ret_check);

struct option;
/* The whole order, the same for start and reload: the config file (the
 * default one only if it exists), then every option on the command line,
 * through apply; *cmdline is set true between the two so list options can
 * replace the file's lists. ret_path gets the file read ("" = none).
 * Returns 0, or -EINVAL after reporting every error. */
int config_load_all(int argc, char **argv, const char *default_file,
		    const struct option *long_opts, const struct config_key *keys,
		    config_apply_fn apply, void *ctx, bool *cmdline,
		    char *ret_path, size_t path_len);

#endif
