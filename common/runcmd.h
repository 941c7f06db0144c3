/* Running a helper program (nft, ip, tc) the way both daemons do. */
#ifndef COMMON_RUNCMD_H
#define COMMON_RUNCMD_H

#include <stdbool.h>

/* Run argv (looked up in PATH) with input on stdin (may be NULL); its
 * output goes to /dev/null, its errors too unless show_errors. Returns the
 * exit status or -errno. */
int spawn_run(char *const argv[], const char *input, bool show_errors);

#endif
