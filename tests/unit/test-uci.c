/* common/uci: OpenWrt configuration files, read as a router's files are
 * written, and the mistakes people make in them, each named with file,
 * line, option and reason. */
#include "uci.h"
#include "check.h"

#include <errno.h>
#include <stdlib.h>
#include <malloc.h>
#include <time.h>

static int parse(const char *text, struct uci_file *f, char *err)
{
	return uci_parse(text, strlen(text), "network", f, err, 256);
}

static void test_router_files(void)
{
	static const char network[] =
		"\n"
		"config interface 'loopback'\n"
		"\toption device 'lo'\n"
		"\toption proto 'static'\n"
		"\toption ipaddr '127.0.0.1'\n"
		"\n"
		"config interface 'wan1'   # the DSL line\n"
		"\toption device 'eth1'\n"
		"\toption proto dhcp\n"
		"\toption multipath \"master\"\n"
		"\n"
		"config interface 'wan2'\n"
		"\toption ifname eth2\n"
		"\toption multipath 'backup'\n"
		"config device\n"
		"\toption name 'br-lan'\n"
		"\tlist ports 'lan1'\n"
		"\tlist ports 'lan2'\n";
	struct uci_file f;
	char err[256] = "";
	const struct uci_option *o;

	CHECK_INT(parse(network, &f, err), 0);
	CHECK(err[0] == 0);
	CHECK_INT(f.nsec, 4);
	CHECK(!strcmp(f.sec[1].type, "interface") && !strcmp(f.sec[1].name, "wan1"));
	CHECK_INT(f.sec[1].line, 7);
	o = uci_get(&f.sec[1], "multipath");
	CHECK(o && !o->is_list && o->nvalues == 1 && !strcmp(o->values[0], "master"));
	CHECK_INT(o ? o->line : 0, 10);
	o = uci_get(&f.sec[1], "proto");
	CHECK(o && !strcmp(o->values[0], "dhcp"));
	o = uci_get(&f.sec[2], "ifname");
	CHECK(o && !strcmp(o->values[0], "eth2"));
	CHECK(!strcmp(f.sec[3].name, ""));  /* anonymous */
	o = uci_get(&f.sec[3], "ports");
	CHECK(o && o->is_list && o->nvalues == 2 && !strcmp(o->values[1], "lan2"));
	CHECK(uci_get(&f.sec[3], "nothere") == NULL);
	uci_free(&f);
}

static void test_words(void)
{
	struct uci_file f;
	char err[256] = "";
	const struct uci_option *o;

	CHECK_INT(parse("package gw-agent\nconfig agent main\n"
			"\toption a 'x'\"y\"z\n"
			"\toption b \"say \\\"hi\\\" \\\\ # not a comment\"\n"
			"\toption c 'it''s'\n"
			"\toption d ''\n"
			"\toption e 'spaces are kept  '\r\n", &f, err), 0);
	if (f.nsec == 1) {
		o = uci_get(&f.sec[0], "a");
		CHECK(o && !strcmp(o->values[0], "xyz"));
		o = uci_get(&f.sec[0], "b");
		CHECK(o && !strcmp(o->values[0], "say \"hi\" \\ # not a comment"));
		o = uci_get(&f.sec[0], "c");
		CHECK(o && !strcmp(o->values[0], "its"));
		o = uci_get(&f.sec[0], "d");
		CHECK(o && !strcmp(o->values[0], ""));
		o = uci_get(&f.sec[0], "e");
		CHECK(o && !strcmp(o->values[0], "spaces are kept  "));
	}
	CHECK(f.nsec == 1);
	uci_free(&f);
}

/* Each mistake: the message, exactly. */
static void bad(const char *text, const char *want)
{
	struct uci_file f;
	char err[256] = "";
	int r = parse(text, &f, err);

	CHECK_INT(r, -EINVAL);
	CHECK_INT(f.nsec, 0);
	if (strcmp(err, want)) {
		check_failed++;
		fprintf(stderr, "for %s\n  got:  %s\n  want: %s\n", text, err, want);
	}
}

static void test_mistakes(void)
{
	bad("config interface 'wan'\n\toption multipath 'master\n",
	    "network:2: unterminated quote");
	bad("option multipath master\n", "network:1: option before any config line");
	bad("config interface wan\n\toptoin multipath master\n",
	    "network:2: 'optoin' is not package, config, option or list");
	bad("config interface wan\n\toption multipath\n",
	    "network:2: option 'multipath': no value");
	bad("config interface wan\n\toption multipath on off\n",
	    "network:2: option 'multipath': more than one value (quote a value with spaces)");
	bad("config interface wan\n\toption multipath on\n\toption multipath off\n",
	    "network:3: option 'multipath': given twice (line 2)");
	bad("config interface wan\n\tlist ports a\n\toption ports b\n",
	    "network:3: option 'ports': both an option and a list (line 2)");
	bad("config interface wan\n\toption multi-path on\n",
	    "network:2: option name 'multi-path' is not letters, digits and _");
	bad("config\n", "network:1: config without a type");
	bad("config interface 'wan 1'\n",
	    "network:1: section name 'wan 1' is not letters, digits and _");
	bad("config interface wan\nconfig interface wan\n",
	    "network:2: section 'wan' given twice (line 1)");
	bad("config interface wan\n\toption x a\\\n", "network:2: a backslash ends the line");
	bad("config interface wan extra words\n",
	    "network:1: config takes a type and a name, no more");
}

static void test_limits(void)
{
	struct uci_file f;
	char err[256] = "";
	size_t n = 5000;
	char *big = malloc(n + 64);

	snprintf(big, 64, "config a b\n\toption v '");
	memset(big + strlen(big), 'x', n);
	strcpy(big + strlen("config a b\n\toption v '") + n, "'\n");
	CHECK_INT(parse(big, &f, err), -EINVAL);
	CHECK(!strcmp(err, "network:2: value longer than 4096 bytes"));
	free(big);
	CHECK_INT(uci_parse("config a b\n\toption v 'x\0y'\n", 26, "network", &f, err, sizeof(err)),
		  -EINVAL);
	CHECK(!strcmp(err, "network:2: a NUL byte in a value"));
	CHECK_INT(uci_load("/nonexistent/uci", &f, err, sizeof(err)), -ENOENT);
	CHECK(!strcmp(err, "/nonexistent/uci: No such file or directory"));
}

/* 1 MiB (the largest file read) of the shapes that cost the most per byte:
 * the memory a parsed file holds is bounded by the file's size (it used to
 * hold 463 MiB: every word allocated at 4,097 bytes), and the time by a
 * small multiple of it (the duplicate checks were quadratic; printed, not
 * asserted). Measured with mallinfo2 (heap in use before and after), in
 * this process: a fork under qemu-user (the cross tests) can hang. Under
 * AddressSanitizer mallinfo2 says nothing, and the bound is not checked.
 * The structures are a few words per line: at most 24 bytes of memory per
 * byte of file. */
#define PER_BYTE 24

static char *fill(const char *(*line)(unsigned i, char *buf), size_t *len)
{
	char *t = malloc(UCI_MAX_FILE + 1), lb[128];
	size_t n = 0;

	for (unsigned i = 0;; i++) {
		const char *l = line(i, lb);
		size_t ll = strlen(l);

		if (n + ll > UCI_MAX_FILE)
			break;
		memcpy(t + n, l, ll);
		n += ll;
	}
	t[n] = 0;
	*len = n;
	return t;
}

static const char *many_sections(unsigned i, char *b)
{
	sprintf(b, "config t s%u\n", i);
	return b;
}

static const char *anonymous_sections(unsigned i, char *b)
{
	(void)i;
	return strcpy(b, "config t\n");
}

static const char *many_options(unsigned i, char *b)
{
	if (!i)
		return strcpy(b, "config t s\n");
	sprintf(b, "option o%u v\n", i);
	return b;
}

static const char *long_list(unsigned i, char *b)
{
	return strcpy(b, i ? "list l v\n" : "config t s\n");
}

static size_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

static void bounded(const char *what, const char *(*line)(unsigned, char *))
{
	size_t len, before, after;
	char *text = fill(line, &len);
	struct uci_file f;
	char err[256];
	struct timespec t0, t1;
	int r;

	before = heap_in_use();
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	r = uci_parse(text, len, "big", &f, err, sizeof(err));
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
	after = heap_in_use();
	CHECK_INT(r, 0);
	printf("# %s: %zu bytes parsed, %zu KiB held, %ld ms CPU\n", what, len,
	       (after - before) / 1024,
	       (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
	if (before || after)  /* 0 and 0: AddressSanitizer's allocator */
		CHECK(after - before <= PER_BYTE * len);
	if (r == 0)
		uci_free(&f);
	free(text);
}

static void test_big_files(void)
{
	bounded("named sections", many_sections);
	bounded("anonymous sections", anonymous_sections);
	bounded("options", many_options);
	bounded("one long list", long_list);
}

int main(void)
{
	RUN(test_router_files);
	RUN(test_words);
	RUN(test_mistakes);
	RUN(test_limits);
	RUN(test_big_files);
	return check_finish();
}
