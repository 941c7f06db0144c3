/* common/runcmd: helper programs (nft, ip, tc) run with a clean signal
 * state, whatever the daemon blocks or ignores, and never hang the daemon:
 * one that does not finish, or never reads its input, is killed at the
 * deadline (issue 20). */
#include "runcmd.h"
#include "check.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>

static char *sh(const char *script)
{
	static char *argv[4];

	argv[0] = "sh";
	argv[1] = "-c";
	argv[2] = (char *)script;
	argv[3] = NULL;
	return (char *)argv;
}

#define RUN_SH(script, input) spawn_run((char *const *)(void *)sh(script), (input), true)

static void test_status_and_input(void)
{
	CHECK_INT(RUN_SH("exit 3", NULL), 3);
	CHECK_INT(RUN_SH("read x; [ \"$x\" = hello ]", "hello\n"), 0);
	CHECK_INT(RUN_SH("read x; [ \"$x\" = hello ]", "bye\n"), 1);
}

/* As in the daemons: SIGTERM and SIGHUP blocked, SIGPIPE ignored. The
 * helper sees none of it, and its own SIGTERM ends it. */
static void test_signals(void)
{
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGHUP);
	sigprocmask(SIG_BLOCK, &s, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Read by the shell itself, not by a grep it forks: while the shell
	 * waits for a child, it blocks signals of its own (dash does), and a
	 * loaded machine let grep see that (the suite met it). */
	CHECK_INT(RUN_SH("while read -r k v; do case $k in SigBlk:) case $v in *[!0]*) exit 1;; "
			 "esac; exit 0;; esac; done < /proc/$$/status; exit 2", NULL), 0);
	/* Signals 1-16 (HUP, INT, PIPE, TERM among them) not ignored; glibc
	 * leaves its own internal 32 and 33 ignored. */
	CHECK_INT(RUN_SH("grep '^SigIgn:' /proc/$$/status | grep -q '0000$'", NULL), 0);
	CHECK_INT(RUN_SH("kill -TERM $$; exit 0", NULL), -ECHILD);
}

static void test_deadline(void)
{
	char *big = malloc(1 << 20);

	CHECK(big != NULL);
	if (!big)
		return;
	memset(big, 'x', 1 << 20);
	big[(1 << 20) - 1] = 0;
	/* Hangs, in a child of its own that holds our stderr: killed with it
	 * (else meson, reading that stderr, waits for it). */
	CHECK_INT(spawn_run_timeout((char *const *)(void *)sh("sleep 30 & wait"), NULL, true, 300),
		  -ETIMEDOUT);
	/* Never reads a megabyte of input (more than a pipe holds). */
	CHECK_INT(spawn_run_timeout((char *const *)(void *)sh("sleep 30"), big, true, 300),
		  -ETIMEDOUT);
	/* Reads it all: done well before the deadline. */
	CHECK_INT(spawn_run_timeout((char *const *)(void *)sh("wc -c > /dev/null"), big, true,
				    10000), 0);
	/* Closes its input at once: its status, not a broken pipe. */
	CHECK_INT(spawn_run_timeout((char *const *)(void *)sh("exec 0<&-; exit 4"), big, true,
				    10000), 4);
	free(big);
}

static void test_output(void)
{
	char buf[64];
	size_t n = 0;

	CHECK_INT(spawn_output((char *const *)(void *)sh("echo hello; exit 2"), buf, sizeof(buf), &n,
			       10000), 2);
	CHECK_INT(n, 6);
	CHECK(!memcmp(buf, "hello\n", 6));
	/* A megabyte of output: the first 64 bytes kept, the rest read and
	 * dropped, so the helper is not stuck on a full pipe. */
	CHECK_INT(spawn_output((char *const *)(void *)sh("head -c 1048576 /dev/zero"), buf,
			       sizeof(buf), &n, 10000), 0);
	CHECK_INT(n, 64);
	/* Writes a little, then hangs: killed at the deadline. */
	CHECK_INT(spawn_output((char *const *)(void *)sh("echo x; sleep 30 & wait"), buf, sizeof(buf),
			       &n, 300), -ETIMEDOUT);
	CHECK_INT(n, 2);
}

int main(void)
{
	RUN(test_status_and_input);
	RUN(test_signals);
	RUN(test_deadline);
	RUN(test_output);
	return check_finish();
}
