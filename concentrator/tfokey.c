/* The TCP Fast Open key of the concentrator's listeners. The kernel's own
 * key is random at every boot and per host: after a reboot, a rotation or
 * on another box of the same service, every cookie a gateway holds is
 * refused with its SYN's data, and the kernel falls those MPTCP
 * connections back to TCP (one path). So the concentrator owns its key: in
 * a file (created with a random key if missing), kept across restarts,
 * the same on every box that is given the same file, set on each listener
 * (TCP_FASTOPEN_KEY) as a primary and a backup: after a rotation the old
 * key stays valid as the backup, and cookies made with it still work.
 *
 * The file: one line of 32 hex digits (the primary), optionally a second
 * (the backup); mode 600. */
#include "concentrator.h"
#include "opts.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* 32 hex digits, then the end of the line: nothing else (sscanf's %2x took
 * "-1", spaces and "0x" as digits). */
static int hex16(const char *s, uint8_t out[16])
{
	if (opt_hex_bytes(s, out, 16) < 0)
		return -EINVAL;
	return s[32] == 0 || s[32] == '\n' ? 0 : -EINVAL;
}

static int create_key(const char *path)
{
	uint8_t k[16];
	char line[40];
	int fd, r = 0;

	if (RAND_bytes(k, sizeof(k)) != 1)
		return -EIO;
	for (int i = 0; i < 16; i++)
		snprintf(line + 2 * i, 3, "%02x", k[i]);
	line[32] = '\n';
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, line, 33) != 33)
		r = -EIO;
	close(fd);
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(line, sizeof(line));
	return r;
}

int tfokey_load(const char *path, uint8_t ret[32], unsigned *ret_len)
{
	char line[2][80] = { "", "" };
	struct stat st;
	FILE *f;
	int r, n = 0;

	if (access(path, F_OK) < 0 && errno == ENOENT) {
		r = create_key(path);
		if (r < 0) {
			fprintf(stderr, "%s: cannot create a TCP Fast Open key: %s\n", path, strerror(-r));
			return r;
		}
	}
	f = fopen(path, "re");
	if (!f) {
		r = -errno;
		fprintf(stderr, "%s: %s\n", path, strerror(-r));
		return r;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077)) {
		fclose(f);
		fprintf(stderr, "%s: holds a secret but its mode is %04o: make it readable by its owner "
			"only (chmod 600)\n", path, (unsigned)(st.st_mode & 07777));
		return -EACCES;
	}
	while (n < 2 && fgets(line[n], sizeof(line[n]), f))
		if (line[n][0] != '#' && line[n][0] != '\n')
			n++;
	fclose(f);
	r = n ? hex16(line[0], ret) : -EINVAL;
	if (r == 0 && n == 2)
		r = hex16(line[1], ret + 16);
	OPENSSL_cleanse(line, sizeof(line));
	if (r < 0) {
		fprintf(stderr, "%s: a TCP Fast Open key is a line of 32 hex digits (16 random bytes), "
			"optionally a second line with the previous key\n", path);
		return r;
	}
	*ret_len = n == 2 ? 32 : 16;
	return 0;
}

int tfokey_apply(int fd, const uint8_t *key, unsigned len)
{
	return setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_KEY, key, len) < 0 ? -errno : 0;
}
