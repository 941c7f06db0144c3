/* The household's status page (web.c): served by the agent on a LAN
 * address behind a token, from files built into the binary. */
#ifndef GW_AGENT_WEB_H
#define GW_AGENT_WEB_H

#include <stddef.h>

struct web_asset {
	const char *path;              /* "/app.js" */
	const unsigned char *data;
	size_t len;
};
extern const struct web_asset web_assets[];  /* web_assets.c, generated */

struct agent;
/* Reads (or makes, 32 random hex digits, mode 600) the token file and
 * starts the page server: 0 or -errno (said in the log). Nothing when
 * web-listen is off. */
int web_start(struct agent *a);
void web_stop(struct agent *a);
/* The page's address with its token, for `gw-agent status`: "" when off. */
void web_url(const struct agent *a, char *buf, size_t len);

#endif
