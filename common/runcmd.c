#include "runcmd.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Run argv with input on stdin (may be NULL); output goes to /dev/null
 * unless show_errors. Returns the exit status or -errno. */
int spawn_run(char *const argv[], const char *input, bool show_errors)
{
	posix_spawn_file_actions_t fa;
	int in[2] = { -1, -1 }, st, r;
	pid_t pid;

	if (pipe2(in, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	if (!show_errors)
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	if (r) {
		close(in[1]);
		return -r;
	}
	if (input) {
		size_t len = strlen(input), off = 0;

		while (off < len) {
			ssize_t k = write(in[1], input + off, len - off);
			if (k <= 0)
				break;
			off += (size_t)k;
		}
	}
	close(in[1]);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -ECHILD;
}

