/* OpenWrt's uci configuration files (/etc/config/NAME), read without
 * libuci: the format is small.
 *
 *   package NAME                  (optional, ignored)
 *   config TYPE ['NAME']          a section
 *   	option KEY 'VALUE'         one value
 *   	list KEY 'VALUE'           one more value of a list
 *   # a comment
 *
 * Words are unquoted, 'single quoted' (taken as is) or "double quoted"
 * (a backslash takes the next character as is); adjacent pieces make one
 * word ('a'"b"c is abc). Names (types, section names, keys) are letters,
 * digits and _. A key given as option and as list is an error, as is an
 * option given twice (uci keeps the last; a router's file that says it
 * twice is a mistake worth naming).
 *
 * Errors name the file, the line, the option when there is one, and the
 * reason: "network:12: option 'multipath': unterminated quote". */
#ifndef COMMON_UCI_H
#define COMMON_UCI_H

#include <stdbool.h>
#include <stddef.h>

#define UCI_MAX_FILE (1u << 20)
#define UCI_MAX_VALUE 4096

struct uci_option {
	char *key;
	char **values;
	unsigned nvalues;
	bool is_list;
	unsigned line;
};

struct uci_section {
	char *type;
	char *name;                    /* "" when anonymous */
	unsigned line;
	struct uci_option *opts;
	unsigned nopts;
};

struct uci_file {
	struct uci_section *sec;
	unsigned nsec;
};

/* Parses len bytes of text (file names the file in errors). 0, or -EINVAL
 * with the first error in err ("FILE:LINE: ..."), or -ENOMEM / -EFBIG.
 * On error *ret holds nothing (freed). */
int uci_parse(const char *text, size_t len, const char *file, struct uci_file *ret,
	      char *err, size_t errlen);
/* Reads and parses path; errors name path. */
int uci_load(const char *path, struct uci_file *ret, char *err, size_t errlen);
void uci_free(struct uci_file *f);

/* The option key of section s, NULL if absent. */
const struct uci_option *uci_get(const struct uci_section *s, const char *key);

#endif
