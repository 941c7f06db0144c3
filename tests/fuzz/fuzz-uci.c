/* libFuzzer harness for the uci parser (common/uci.c): a router's
 * /etc/config files, which a user edits by hand. Beyond "no crash, no
 * leak": the result is 0, -EINVAL (with "network:LINE: ..." in err) or
 * -EFBIG; on 0 every section has a valid type, every option at least one
 * value and a plain option exactly one, no key twice in a section, and
 * parsing is deterministic. */
#include "uci.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct uci_file f, g;
	char err[256] = "", err2[256] = "";
	int r = uci_parse((const char *)data, size, "network", &f, err, sizeof(err));
	int r2 = uci_parse((const char *)data, size, "network", &g, err2, sizeof(err2));

	REQUIRE(r == 0 || r == -EINVAL || r == -EFBIG);
	REQUIRE(r == r2 && !strcmp(err, err2));
	if (r == -EINVAL)
		REQUIRE(!strncmp(err, "network:", 8) && err[8] >= '1' && err[8] <= '9');
	if (r < 0) {
		REQUIRE(f.nsec == 0 && f.sec == NULL);
		return 0;
	}
	REQUIRE(f.nsec == g.nsec);
	for (unsigned i = 0; i < f.nsec; i++) {
		const struct uci_section *s = &f.sec[i];

		REQUIRE(name_ok(s->type));
		REQUIRE(!s->name[0] || name_ok(s->name));
		for (unsigned k = 0; k < s->nopts; k++) {
			REQUIRE(name_ok(s->opts[k].key));
			REQUIRE(s->opts[k].nvalues >= 1);
			REQUIRE(s->opts[k].is_list || s->opts[k].nvalues == 1);
			for (unsigned v = 0; v < s->opts[k].nvalues; v++)
				REQUIRE(strlen(s->opts[k].values[v]) <= UCI_MAX_VALUE);
			for (unsigned j = 0; j < k; j++)
				REQUIRE(strcmp(s->opts[j].key, s->opts[k].key));
		}
	}
	uci_free(&f);
	uci_free(&g);
	return 0;
}
