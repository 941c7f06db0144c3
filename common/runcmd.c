#include "runcmd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
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

int spawn_run_timeout(char *const argv[], const char *input, bool show_errors, int timeout_ms)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	int in[2] = { -1, -1 }, st = 0, r, pidfd;
	size_t len = input ? strlen(input) : 0, off = 0;
	int64_t deadline = now_ms() + timeout_ms;
	pid_t pid;

	if (pipe2(in, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	if (!show_errors)
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	spawn_attr(&at);
	r = posix_spawnp(&pid, argv[0], &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(in[0]);
	if (r) {
		close(in[1]);
		return -r;
	}
	/* Wait for the exit and feed stdin, both against the deadline: a
	 * helper that hangs, or never reads its input, is killed. A pidfd
	 * wakes us at the exit; without one (kernels before 5.3), 10 ms
	 * polls. */
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (!len) {
		close(in[1]);
		in[1] = -1;
	} else {
		fcntl(in[1], F_SETFL, O_NONBLOCK);
	}
	for (;;) {
		struct pollfd p[2];
		nfds_t n = 0;
		int64_t left;
		pid_t w = waitpid(pid, &st, WNOHANG);

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
		if (pidfd >= 0)
			p[n++] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
		if (in[1] >= 0)
			p[n++] = (struct pollfd){ .fd = in[1], .events = POLLOUT };
		if (poll(p, n, (int)(pidfd >= 0 ? left : (left < 10 ? left : 10))) <= 0)
			continue;
		if (in[1] >= 0 && p[n - 1].revents) {
			ssize_t k = write(in[1], input + off, len - off);

			if (k > 0)
				off += (size_t)k;
			/* Done, or the helper closed its stdin (EPIPE). */
			if (off == len || (k < 0 && errno != EAGAIN && errno != EINTR)) {
				close(in[1]);
				in[1] = -1;
			}
		}
	}
	r = WIFEXITED(st) ? WEXITSTATUS(st) : -ECHILD;
out:
	if (in[1] >= 0)
		close(in[1]);
	if (pidfd >= 0)
		close(pidfd);
	return r;
}

int spawn_run(char *const argv[], const char *input, bool show_errors)
{
	return spawn_run_timeout(argv, input, show_errors, SPAWN_TIMEOUT_MS);
}
