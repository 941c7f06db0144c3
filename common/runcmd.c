#include "runcmd.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <spawn.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The helper starts as a program started from a shell would: no signal
 * blocked, every signal at its default. The daemons block SIGTERM and
 * SIGHUP (they take them with sigtimedwait) and ignore SIGPIPE; a helper
 * that inherited that could not be stopped by its own signals. */
static void spawn_attr(posix_spawnattr_t *at)
{
	sigset_t none, all;

	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_init(at);
	posix_spawnattr_setsigmask(at, &none);
	posix_spawnattr_setsigdefault(at, &all);
	/* A process group of its own, so the deadline kills what it started
	 * too (a shell's children would otherwise live on). */
	posix_spawnattr_setpgroup(at, 0);
	posix_spawnattr_setflags(at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
				 POSIX_SPAWN_SETPGROUP);
}

/* Runs argv with input on stdin; its stdout into out[0..out_cap) (*out_len
 * set) when out is given, else to /dev/null. The exit status, or -errno. */
static int spawn_io(char *const argv[], const char *input, bool show_errors, char *out,
		    size_t out_cap, size_t *out_len, int timeout_ms)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	int in[2] = { -1, -1 }, op[2] = { -1, -1 }, st = 0, r, pidfd;
	size_t len = input ? strlen(input) : 0, off = 0, got = 0;
	int64_t deadline = now_ms() + timeout_ms;
	pid_t pid;

	if (pipe2(in, O_CLOEXEC) < 0)
		return -errno;
	if (out && pipe2(op, O_CLOEXEC) < 0) {
		r = -errno;
		close(in[0]);
		close(in[1]);
		return r;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	if (!show_errors)
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	if (out)
		posix_spawn_file_actions_adddup2(&fa, op[1], 1);
	else
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	spawn_attr(&at);
	r = posix_spawnp(&pid, argv[0], &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(in[0]);
	if (out)
		close(op[1]);
	if (r) {
		close(in[1]);
		if (out)
			close(op[0]);
		return -r;
	}
	/* Wait for the exit, feed stdin and read stdout, all against the
	 * deadline: a helper that hangs, never reads its input or never stops
	 * writing is killed with its whole group. A pidfd wakes us at the
	 * exit; without one (kernels before 5.3), 10 ms polls. */
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (!len) {
		close(in[1]);
		in[1] = -1;
	} else {
		fcntl(in[1], F_SETFL, O_NONBLOCK);
	}
	if (out)
		fcntl(op[0], F_SETFL, O_NONBLOCK);
	for (;;) {
		struct pollfd p[3];
		nfds_t n = 0;
		int64_t left;
		int ipos = -1, opos = -1;
		pid_t w = out && op[0] >= 0 ? 0 : waitpid(pid, &st, WNOHANG);

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			r = -errno;
			goto out;
		}
		left = deadline - now_ms();
		if (left <= 0) {
			kill(-pid, SIGKILL);
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			r = -ETIMEDOUT;
			goto out;
		}
		/* While its output is open, that (its end) is what we wait for:
		 * the exit comes after (a pidfd would stay readable meanwhile). */
		if (pidfd >= 0 && !(out && op[0] >= 0))
			p[n++] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
		if (in[1] >= 0) {
			ipos = (int)n;
			p[n++] = (struct pollfd){ .fd = in[1], .events = POLLOUT };
		}
		if (out && op[0] >= 0) {
			opos = (int)n;
			p[n++] = (struct pollfd){ .fd = op[0], .events = POLLIN };
		}
		if (poll(p, n, (int)(pidfd >= 0 || opos >= 0 ? left : (left < 10 ? left : 10))) <= 0)
			continue;
		if (ipos >= 0 && p[ipos].revents) {
			ssize_t k = write(in[1], input + off, len - off);

			if (k > 0)
				off += (size_t)k;
			/* Done, or the helper closed its stdin (EPIPE). */
			if (off == len || (k < 0 && errno != EAGAIN && errno != EINTR)) {
				close(in[1]);
				in[1] = -1;
			}
		}
		if (opos >= 0 && p[opos].revents) {
			char sink[512];
			ssize_t k = got < out_cap ? read(op[0], out + got, out_cap - got) :
				read(op[0], sink, sizeof(sink));  /* past the buffer: dropped */

			if (k > 0 && got < out_cap)
				got += (size_t)k;
			if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) {
				close(op[0]);  /* its end of output: now its exit */
				op[0] = -1;
			}
		}
	}
	r = WIFEXITED(st) ? WEXITSTATUS(st) : -ECHILD;
out:
	if (in[1] >= 0)
		close(in[1]);
	if (out && op[0] >= 0)
		close(op[0]);
	if (pidfd >= 0)
		close(pidfd);
	if (out_len)
		*out_len = got;
	return r;
}

int spawn_run_timeout(char *const argv[], const char *input, bool show_errors, int timeout_ms)
{
	return spawn_io(argv, input, show_errors, NULL, 0, NULL, timeout_ms);
}

int spawn_output(char *const argv[], char *out, size_t cap, size_t *len, int timeout_ms)
{
	return spawn_io(argv, NULL, false, out, cap, len, timeout_ms);
}

int spawn_run(char *const argv[], const char *input, bool show_errors)
{
	return spawn_run_timeout(argv, input, show_errors, SPAWN_TIMEOUT_MS);
}

void script_append(char *buf, size_t cap, const char *fmt, ...)
{
	size_t len = strlen(buf);
	va_list ap;

	if (len >= cap)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + len, cap - len, fmt, ap);
	va_end(ap);
}

json_t *spawn_nft_json(char *const argv[], size_t cap, int timeout_ms, int *ret_err)
{
	char *buf = malloc(cap);
	size_t len = 0;
	json_error_t err;
	json_t *root = NULL;
	int r;

	if (!buf) {
		*ret_err = -ENOMEM;
		return NULL;
	}
	r = spawn_output(argv, buf, cap, &len, timeout_ms);
	if (r == 0 && !(root = json_loadb(buf, len, 0, &err)))
		r = -EBADMSG;
	free(buf);
	*ret_err = r;
	return root;
}
