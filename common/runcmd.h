/* Running a helper program (nft, ip, tc) the way both daemons do. */
#ifndef COMMON_RUNCMD_H
#define COMMON_RUNCMD_H

#include <stdbool.h>
#include <stddef.h>

/* A helper that has not finished by then is killed (SIGKILL). */
#define SPAWN_TIMEOUT_MS 15000

/* Run argv (looked up in PATH) with input on stdin (may be NULL), no signal
 * blocked and every signal at its default; its output goes to /dev/null,
 * its errors too unless show_errors. Returns the exit status, -ETIMEDOUT
 * when it was killed at the deadline, -ECHILD when a signal ended it, or
 * -errno. */
int spawn_run(char *const argv[], const char *input, bool show_errors);
int spawn_run_timeout(char *const argv[], const char *input, bool show_errors, int timeout_ms);
/* The same, with no input and its stdout read into out[0..cap) (*len set;
 * more than cap is read and dropped); its errors to /dev/null. */
int spawn_output(char *const argv[], char *out, size_t cap, size_t *len, int timeout_ms);
/* An nft listing as JSON (`nft -j list ...`): its "nftables" array's
 * parent object, or NULL with *ret_err (-errno, the exit status, or
 * -EBADMSG). Output past cap is dropped. The caller json_decref()s it. */
struct json_t;
struct json_t *spawn_nft_json(char *const argv[], size_t cap, int timeout_ms, int *ret_err);
/* Append to the NUL-terminated script in buf[0..cap) (an nft or tc input),
 * cut at cap: callers check strlen(buf) < cap - 1 before running it. */
void script_append(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
