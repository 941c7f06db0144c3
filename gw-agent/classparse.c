/* --class values (classes.h). Kept apart from the nftables side so the
 * unit test links it alone. */
#include "classes.h"
#include "udpc.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	int n = 0;

	if (strlen(s) != 17 ||
	    sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%n", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &n) != 6 ||
	    n != 17)
		return false;
	for (int i = 0; i < 6; i++) {
		if (!isxdigit((unsigned char)s[3 * i]) || !isxdigit((unsigned char)s[3 * i + 1]))
			return false;
		mac[i] = (uint8_t)v[i];
	}
	return true;
}

/* A host name as DNS has it: labels of letters, digits and '-' (and '_',
 * which some services use), 1-63 each, 253 in all. */
static bool valid_domain(const char *s)
{
	size_t len = strlen(s), label = 0;

	if (!len || len > 253 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (const char *p = s; *p; p++) {
		if (*p == '.') {
			if (!label)
				return false;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

static bool parse_port(const char *s, uint16_t *lo, uint16_t *hi)
{
	char *end;
	unsigned long a, b;

	if (!isdigit((unsigned char)*s))
		return false;
	a = strtoul(s, &end, 10);
	b = a;
	if (*end == '-') {
		if (!isdigit((unsigned char)end[1]))
			return false;
		b = strtoul(end + 1, &end, 10);
	}
	if (*end || a < 1 || a > 65535 || b < a || b > 65535)
		return false;
	*lo = (uint16_t)a;
	*hi = (uint16_t)b;
	return true;
}

/* Each '+'-separated item of val through one(); false with *why set. */
static bool each_item(char *val, struct agent_class *c, const char **why,
		      bool (*one)(struct agent_class *, const char *, const char **))
{
	char *save = NULL;

	if (!*val || val[0] == '+' || val[strlen(val) - 1] == '+' || strstr(val, "++")) {
		*why = "has an empty list or an empty item in one";
		return false;
	}
	for (char *it = strtok_r(val, "+", &save); it; it = strtok_r(NULL, "+", &save))
		if (!one(c, it, why))
			return false;
	return true;
}

static bool one_device(struct agent_class *c, const char *s, const char **why)
{
	if (strchr(s, ':') && strlen(s) == 17 && s[2] == ':' && s[5] == ':') {
		if (c->nmac == CLASS_MAX_MACS) {
			*why = "names more than 8 MAC addresses";
			return false;
		}
		if (!parse_mac(s, c->mac[c->nmac])) {
			*why = "has a device that is not a MAC address (aa:bb:cc:dd:ee:ff)";
			return false;
		}
		c->nmac++;
		return true;
	}
	if (c->ndev == CLASS_MAX_DEVS) {
		*why = "names more than 8 device addresses";
		return false;
	}
	if (addr_parse_prefix(s, &c->dev[c->ndev]) < 0) {
		*why = "has a device that is neither a MAC address nor an address or prefix";
		return false;
	}
	c->ndev++;
	return true;
}

static bool one_dst(struct agent_class *c, const char *s, const char **why)
{
	if (c->ndst == CLASS_MAX_DSTS) {
		*why = "names more than 16 destination prefixes";
		return false;
	}
	if (addr_parse_prefix(s, &c->dst[c->ndst]) < 0) {
		*why = "has a destination that is not an address or prefix (host bits zero)";
		return false;
	}
	c->ndst++;
	return true;
}

static bool one_port(struct agent_class *c, const char *s, const char **why)
{
	if (c->nport == CLASS_MAX_PORTS) {
		*why = "names more than 8 ports or port ranges";
		return false;
	}
	if (!parse_port(s, &c->port_lo[c->nport], &c->port_hi[c->nport])) {
		*why = "has a port that is not 1-65535 or a range N-M";
		return false;
	}
	c->nport++;
	return true;
}

static bool one_domain(struct agent_class *c, const char *s, const char **why)
{
	if (c->ndomain == CLASS_MAX_DOMAINS) {
		*why = "names more than 8 domains";
		return false;
	}
	if (!valid_domain(s)) {
		*why = "has a domain that is not a host name (letters, digits, '-', dots)";
		return false;
	}
	snprintf(c->domain[c->ndomain++], CLASS_DOMAIN_LEN, "%s", s);
	return true;
}

bool class_by_agent(const struct agent_class *c)
{
	return c->action == CLASS_PIN || c->action == CLASS_NO_METERED || c->action == CLASS_CARRY;
}

int class_parse(struct agent_classes *cs, const char *spec, const char **why)
{
	struct agent_class c;
	char buf[4096], *save = NULL, *tok;
	bool first = true;

	memset(&c, 0, sizeof(c));
	c.udp_mode = -1;
	if (cs->n == CLASS_MAX) {
		*why = "is one class too many (16 at most)";
		return -EINVAL;
	}
	if (strlen(spec) >= sizeof(buf)) {
		*why = "is too long";
		return -EINVAL;
	}
	strcpy(buf, spec);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save), first = false) {
		char *eq = strchr(tok, '=');
		bool ok = true;

		if (first) {
			size_t n = strlen(tok);

			if (eq || !n || n >= sizeof(c.name) ||
			    strspn(tok, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != n) {
				*why = "does not start with a class name (letters, digits, '_', '-'; 31 at most)";
				return -EINVAL;
			}
			strcpy(c.name, tok);
			continue;
		}
		if (!eq) {
			*why = "has an item that is not KEY=VALUE";
			return -EINVAL;
		}
		*eq++ = '\0';
		if (!strcmp(tok, "device"))
			ok = each_item(eq, &c, why, one_device);
		else if (!strcmp(tok, "dst"))
			ok = each_item(eq, &c, why, one_dst);
		else if (!strcmp(tok, "port"))
			ok = each_item(eq, &c, why, one_port);
		else if (!strcmp(tok, "domain"))
			ok = each_item(eq, &c, why, one_domain);
		else if (!strcmp(tok, "action")) {
			if (!strcmp(eq, "bypass"))
				c.action = CLASS_BYPASS;
			else if (!strcmp(eq, "pin"))
				c.action = CLASS_PIN;
			else if (!strcmp(eq, "no-metered"))
				c.action = CLASS_NO_METERED;
			else {
				*why = "has an action that is not bypass, pin or no-metered";
				return -EINVAL;
			}
		} else if (!strcmp(tok, "udp")) {
			enum udpc_mode m;

			if (udpc_mode_parse(eq, &m) < 0) {
				*why = "has a udp= that is not failover, lowest-delay or redundant";
				return -EINVAL;
			}
			c.udp_mode = (int)m;
		} else if (!strcmp(tok, "rtt")) {
			char *end;
			unsigned long v = strtoul(eq, &end, 10);

			if (!*eq || *end || v < 1 || v > 1000) {
				*why = "has an rtt= that is not 1-1000 (milliseconds over the best line's delay)";
				return -EINVAL;
			}
			c.rtt_ms = (unsigned)v;
		} else if (!strcmp(tok, "line")) {
			char *save2 = NULL;

			if (!*eq || eq[0] == '+' || eq[strlen(eq) - 1] == '+' || strstr(eq, "++")) {
				*why = "has an empty line";
				return -EINVAL;
			}
			c.nlines = 0;
			for (char *l = strtok_r(eq, "+", &save2); l; l = strtok_r(NULL, "+", &save2)) {
				if (strlen(l) >= sizeof(c.line) || strpbrk(l, "\"\\ /{}~")) {
					*why = "has a line that is not an interface name";
					return -EINVAL;
				}
				if (c.nlines == CLASS_MAX_LINES) {
					*why = "names more than 4 lines";
					return -EINVAL;
				}
				strcpy(c.lines[c.nlines++], l);
			}
			strcpy(c.line, c.lines[0]);
		} else {
			*why = "has a key that is not device, dst, port, domain, action, line, rtt or udp";
			return -EINVAL;
		}
		if (!ok)
			return -EINVAL;
	}
	if (first) {
		*why = "is empty";
		return -EINVAL;
	}
	if (!c.action && (c.rtt_ms || c.udp_mode >= 0))
		c.action = CLASS_CARRY;  /* only the delay gate, or a UDP mode */
	if (!c.action) {
		*why = "has no action= (bypass, pin or no-metered) nor rtt=";
		return -EINVAL;
	}
	if (c.action == CLASS_BYPASS && c.udp_mode >= 0) {
		*why = "has udp= with bypass (out of one line: not carried)";
		return -EINVAL;
	}
	if (c.action == CLASS_BYPASS && c.rtt_ms) {
		*why = "has rtt= with bypass (out of one line: no lines to choose from)";
		return -EINVAL;
	}
	if (c.action == CLASS_BYPASS && c.nlines > 1) {
		*why = "bypasses through more than one line (line= takes one for bypass)";
		return -EINVAL;
	}
	if (c.action == CLASS_PIN && !c.nlines) {
		*why = "pins to no line: give line=IFACE[+IFACE]";
		return -EINVAL;
	}
	if (c.action == CLASS_NO_METERED && c.nlines) {
		*why = "has line= with no-metered (which takes the lines that are not metered)";
		return -EINVAL;
	}
	if (!c.nmac && !c.ndev && !c.ndst && !c.nport && !c.ndomain) {
		*why = "matches everything: give device=, dst=, port= or domain=";
		return -EINVAL;
	}
	for (unsigned i = 0; i < cs->n; i++)
		if (!strcmp(cs->c[i].name, c.name)) {
			*why = "has the name of an earlier class";
			return -EINVAL;
		}
	cs->c[cs->n++] = c;
	return 0;
}
