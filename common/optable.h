/* One table per daemon for every setting: its command-line name, its key in
 * the config file, how its value is parsed and where it is stored, its
 * default, whether a reload applies it, and its help. getopt's array, the
 * config file's key list, --help, the man pages and the README's reference
 * tables are all made from it (--help=man8, --help=man5, --help=markdown;
 * tests/docs checks the committed pages against them), so a setting cannot
 * mean one thing on the command line and another in a file or the docs.
 *
 * Simple settings (a number in a range, seconds, a path, a log level, a
 * flag) are parsed and stored here, at an offset in the daemon's config
 * struct; the rest (addresses, prefixes, path specs) stay in the daemon's
 * own parser, called for OT_CUSTOM entries. */
#ifndef COMMON_OPTABLE_H
#define COMMON_OPTABLE_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum opt_type {
	OT_CUSTOM,      /* the daemon's parser */
	OT_UINT,        /* whole number in [min, max] (uint16/32/unsigned by size) */
	OT_POW2,        /* power of two in [min, max], unsigned */
	OT_MS,          /* seconds (fractions allowed) up to max s, stored as ms */
	OT_MS_NONZERO,  /* the same, more than 0 */
	OT_SECONDS_UP,  /* seconds up to max, stored as whole seconds rounded up */
	OT_STRING,      /* text shorter than size (paths) */
	OT_ABSPATH,     /* "" or an absolute path shorter than size */
	OT_LOG_LEVEL,   /* error|warning|info|debug, int */
	OT_TRUE,        /* no value: sets a bool */
	OT_FALSE,       /* no value: clears a bool */
	OT_META,        /* --config, --check-config, --help, --version */
};

enum opt_reload {
	OPT_LIVE,       /* a reload (SIGHUP) applies it to running workers */
	OPT_RESTART,    /* read at start only; a reload names it if changed */
	OPT_NA,         /* not a setting (--help, --config) */
};

struct opt_spec {
	const char *name;          /* long option, without -- */
	int id;                    /* the daemon's option number (>= 256) */
	const char *arg;           /* the value's name in --help; NULL: no value */
	const char *key;           /* config file key path; NULL: command line only */
	enum config_kind kind;
	int id_false;              /* CONFIG_BOOL: the option false stands for */
	const char *const *fields; /* CONFIG_SPEC_LIST */
	enum opt_type type;
	unsigned long min, max;
	size_t off, size;          /* OT_* other than CUSTOM/META: where, how big */
	enum opt_reload reload;
	const char *deflt;         /* the default, as the docs say it; NULL: none */
	const char *help;          /* what it does, for --help; the docs wrap it */
	const char *more;          /* further sentences for the man pages and README */
	bool hidden;               /* an alias or negation: not listed on its own */
	bool key_only;             /* a second config key for the option above it
				    * (not a command-line option) */
};

#define OPT_AT(type, field) .off = offsetof(type, field), .size = sizeof(((type *)0)->field)

/* The entries both daemons have, meaning the same in both: the log level,
 * the metrics address, the config file, --check-config, --version, --help.
 * cfgtype has int log_level; files names what --check-config also reads. */
#define OPTABLE_COMMON_ENTRIES(cfgtype, o_log, o_metrics, o_config, o_check, o_version, o_help, \
			       config_path, files) \
	{ "log-level", o_log, "LEVEL", "log_level", CONFIG_STRING, .type = OT_LOG_LEVEL, \
	  OPT_AT(cfgtype, log_level), .reload = OPT_LIVE, .deflt = "info", \
	  .help = "error, warning, info or debug" }, \
	{ "metrics-listen", o_metrics, "ADDR:PORT", "metrics_listen", CONFIG_STRING, \
	  .reload = OPT_RESTART, .deflt = "off", \
	  .help = "serve Prometheus metrics at /metrics (a bare PORT binds 127.0.0.1)" }, \
	{ "config", o_config, "FILE", NULL, 0, .type = OT_META, .reload = OPT_NA, \
	  .deflt = config_path ", read if it exists", \
	  .help = "the configuration file, JSON or uci; the command line wins over it" }, \
	{ "check-config", o_check, NULL, NULL, 0, .type = OT_META, .reload = OPT_NA, \
	  .help = "check the configuration (and " files ") and exit: 0 when good" }, \
	{ "version", o_version, NULL, NULL, 0, .type = OT_META, .reload = OPT_NA, \
	  .help = "print the version and exit" }, \
	{ "help", o_help, NULL, NULL, 0, .type = OT_META, .reload = OPT_NA, \
	  .help = "this help; --help=man8, man5 or markdown print the reference as the man " \
		  "pages and README carry it" }

/* The bound on parked sends' heap (relay.h), the same in both daemons but
 * for its default: cfgtype has uint32_t max_parked_mib. */
#define OPTABLE_MAX_PARKED(cfgtype, o_id, deflt_text) \
	{ "max-parked-memory", o_id, "MIB", "max_parked_memory", CONFIG_NUMBER, \
	  .type = OT_UINT, .min = 0, .max = 1 << 20, OPT_AT(cfgtype, max_parked_mib), \
	  .reload = OPT_LIVE, .deflt = deflt_text, \
	  .help = "heap for the sends of peers that stopped reading, all flows together " \
		  "(0 = no bound); past it such a flow is reset (counted)", \
	  .more = "Each stalled flow parks at most one buffer; without the bound many flows " \
		  "whose peers never read (4,096 of one client at a concentrator) could take " \
		  "the box's memory." }

/* The UDP carrier's idle timeouts, the same in both daemons: cfgtype has
 * unsigned udp_timeout_s, udp_stream_timeout_s. */
#define OPTABLE_UDP_TIMEOUTS(cfgtype, o_t, o_st) \
	{ "udp-timeout", o_t, "SEC", "udp.timeout", CONFIG_NUMBER, .type = OT_SECONDS_UP, \
	  .max = 86400, OPT_AT(cfgtype, udp_timeout_s), .reload = OPT_LIVE, .deflt = "30", \
	  .help = "a UDP flow is closed after this long idle (conntrack's udp_timeout)" }, \
	{ "udp-stream-timeout", o_st, "SEC", "udp.stream_timeout", CONFIG_NUMBER, \
	  .type = OT_SECONDS_UP, .max = 86400, OPT_AT(cfgtype, udp_stream_timeout_s), \
	  .reload = OPT_LIVE, .deflt = "180", \
	  .help = "one that is assured (an answer, then another datagram from the LAN: a DNS " \
		  "query and its answer are not), after this long idle" }

struct optable {
	const char *program;       /* "gw-agent" */
	const char *synopsis;      /* the usage lines after "Usage: " */
	const char *summary;       /* one line */
	const char *version;       /* --version prints "program version" */
	const struct opt_spec *opts;   /* ends with name NULL */
};

/* getopt_long's array (ends with a zero entry) and config.c's key list
 * (ends with path NULL), malloc'd; NULL when out of memory. */
struct option *optable_getopt(const struct optable *t);
struct config_key *optable_keys(const struct optable *t);
const struct opt_spec *optable_find(const struct optable *t, int id);

/* Parses and stores a simple setting into cfg, and does what the common
 * entries do (--version and --help print and exit; --config and
 * --check-config were read before parsing). Returns 0, -EINVAL after
 * reporting (opts.c), or 1 when the entry is the daemon's to parse. */
int optable_apply(const struct optable *t, void *cfg, int id, const char *arg);

/* config_load_all (config.h) with getopt's array and the key list made from
 * the table, once per process (they are kept for reloads). */
int optable_load_all(const struct optable *t, int argc, char **argv, const char *default_file,
		     config_apply_fn apply, void *ctx, bool *cmdline, char *ret_path,
		     size_t path_len);

/* Appends to buf (", "-separated) the config key, or option name, of each
 * stored OPT_RESTART setting whose value differs between a and b. */
void optable_restart_changes(const struct optable *t, const void *a, const void *b,
			     char *buf, size_t len);

/* Copies each stored OPT_RESTART setting from cur into n: a reload keeps
 * them as they run. */
void optable_restart_keep(const struct optable *t, void *n, const void *cur);

/* --help (text), --help=man8 (the OPTIONS section of the program's man
 * page), --help=man5 (the KEYS section of its config file's page),
 * --help=markdown (the README's reference table). Returns 0, or -EINVAL for
 * an unknown format. */
int optable_print(const struct optable *t, FILE *f, const char *format);

#endif
