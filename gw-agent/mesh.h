/* The mesh: home routers of one ISP on a shared (Wi-Fi) segment lend each
 * other their lines. A lender announces itself on the segment; a borrower
 * keeps one path per lending neighbour. */
#ifndef GW_AGENT_MESH_H
#define GW_AGENT_MESH_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meshmsg.h"
#include "addr.h"
#include "paths.h"

#include "cookie.h"

#define MESH_MAX_NEIGHBOURS PATHS_MAX_NEIGHBOURS
#define MESH_STATIC_MAX 8
#define MESH_ANNOUNCE_MS 1000     /* a lender says so this often */
#define MESH_EXPIRE_MS 3500       /* a neighbour silent this long is gone */
#define MESH_MAX_CONC 8            /* concentrators a lender forwards to */
#define MESH_MAX_JOINS 4           /* joins= prefixes of a lender */
#define MESH_CLOCK_MS 30000       /* an announcement's sequence (its sender's
				   * clock) this far from ours is refused */
#define MESH_BORROW_EXPIRE_MS 10000  /* a borrower silent this long loses its
				      * borrow address at the lender */
#define MESH_NEW_BORROWERS 8      /* taken by a lender in one second at most */

/* What became of an announcement (metrics: gw_agent_mesh_announcements_total). */
enum mesh_result {
	MESH_R_OK,
	MESH_R_MALFORMED,
	MESH_R_UNAUTHENTICATED,        /* version 1, no key */
	MESH_R_NO_KEY,                 /* we hold no mesh key: none accepted */
	MESH_R_SENDER,                 /* its sender field is not its source */
	MESH_R_OFF_LINK,               /* source not on the mesh's subnet */
	MESH_R_UNKNOWN_KEY,
	MESH_R_BAD_TAG,
	MESH_R_SCOPE,                  /* the key is not for that address */
	MESH_R_CLOCK,                  /* sequence too far from our clock */
	MESH_R_REPLAYED,               /* sequence not above the last one */
	MESH_R_FULL,                   /* MESH_MAX_NEIGHBOURS known already */
	MESH_R_TAKEN,                  /* a borrow request for an address another
					* live borrower has (same last byte) */
	MESH_R_MAX,
};
const char *mesh_result_name(enum mesh_result r);

struct mesh_neighbour {
	struct in6_addr addr;          /* its IPv4 mesh address (mapped) */
	uint64_t seen_ms;              /* last announcement; 0 = static */
	uint64_t last_seq;             /* its last accepted sequence */
	bool lending;
	bool is_static;
	bool addr_added;               /* our borrow address is on the interface */
	bool conflict;                 /* its borrow address is another's: not used */
	struct path *path;
};

/* A borrower as its lender knows it: by its borrow address for us,
 * 100.64.L.B, so by B, its mesh address's last byte (the slot). */
struct mesh_borrower {
	struct in6_addr addr;          /* its mesh address (mapped); zero = free */
	uint64_t last_seq;             /* its last accepted request's sequence */
	uint64_t seen_ms;              /* then (log_now_ms) */
	uint64_t retry_ms;             /* taking it failed: not before then */
	uint64_t mac_since_ms;         /* its MAC address taken then */
	uint8_t mac[6];                /* what its request names */
	bool allowed;                  /* in the lending table's set, and its
					* neighbour entry pinned */
};

struct mesh_config {
	char borrow_if[IFNAMSIZ];      /* --mesh; "" = not borrowing */
	enum path_mode mode;           /* of every neighbour path */
	struct in6_addr statics[MESH_STATIC_MAX];  /* neighbour=ADDR */
	unsigned nstatic;
	char lend_if[IFNAMSIZ];        /* --lend; "" = not lending */
	unsigned lend_flows;           /* per borrower, 0 = any */
	unsigned lend_total;           /* all borrowers together */
	/* Yielding to our own household: with uplink= our line's upload is
	 * shaped (HTB on wan) just under the line's own rate, so the queue
	 * is ours, and lent traffic only gets what our own leaves, at most
	 * rate=. tc syntax ("19mbit"), "" = not shaped. */
	char lend_uplink[16], lend_rate[16];
	char lend_wan[IFNAMSIZ];       /* "" = our first own path */
	/* joins=PREFIX: where a cluster's boxes have their own (join)
	 * addresses, which borrowers reach at the concentrators' ports. */
	struct addr_prefix lend_joins[MESH_MAX_JOINS];
	unsigned nlend_joins;
	/* --mesh-key: lenders sign announcements with the first key,
	 * borrowers accept those signed with any (within its prefixes). ""
	 * = no announcements sent or accepted: static neighbours only. */
	char key_path[256];
};

struct mesh {
	struct mesh_config cfg;
	/* borrowing */
	int rx_fd;
	struct in6_addr own;           /* our IPv4 mesh address */
	bool have_own;
	unsigned own_plen;             /* its prefix length: what is on-link */
	struct mesh_neighbour nb[MESH_MAX_NEIGHBOURS];
	unsigned nnb;
	uint64_t results[MESH_R_MAX];  /* announcements received, by result */
	uint64_t next_refusal_log_ms;
	struct cookie_keys keys;       /* --mesh-key; keys.n == 0: none */
	uint64_t last_tx_seq;
	/* lending */
	int tx_fd;
	bool lend_installed;
	bool lending;                  /* what we said last */
	bool tx_failed;                /* the last announcement could not leave */
	uint64_t next_announce_ms, next_route_ms;
	struct in6_addr lend_own;
	unsigned lend_plen;            /* its prefix length: borrowers are on-link */
	/* Borrowers that sent a verified borrow request, by the last byte of
	 * their mesh address; with a mesh key only their borrow addresses are
	 * forwarded. */
	struct mesh_borrower br[256];
	unsigned nallowed;
	uint64_t req_results[MESH_R_MAX];  /* borrow requests received, by result */
	uint64_t next_req_log_ms;
	uint64_t next_request_ms;      /* borrower: our next round of requests */
	uint64_t new_window_ms;        /* new borrowers taken in this second */
	unsigned new_in_window;
	/* what borrowers may reach: our concentrators, and joins= prefixes
	 * at their ports */
	struct sockaddr_storage conc[MESH_MAX_CONC];
	socklen_t conc_len[MESH_MAX_CONC];
	unsigned nconc;
	bool shaped;                   /* our HTB is on lend_wan */
	bool counting;                 /* the gw_agent_mesh table is ours */
};

/* Bytes through the mesh per borrow address (nftables counters of the
 * table gw_agent_mesh): what each neighbour path carried. */
struct mesh_count {
	struct in6_addr addr;
	uint64_t rx, tx;
};
/* Up to max entries into ret; how many, or -errno. Spawns nft: for status
 * and metrics, not the data path. */
int mesh_counters(struct mesh_count *ret, unsigned max);
/* The bytes of addr in c[0..n), 0 when absent. */
void mesh_count_find(const struct mesh_count *c, int n, const struct in6_addr *addr,
		     uint64_t *rx, uint64_t *tx);

/* The mesh key file path: its keys into ret (caller frees); 0 or -EINVAL
 * with the errors on stderr. For --check-config and mesh_start. */
int mesh_load_keys(const char *path, struct cookie_keys *ret);
/* "IFACE[,mode=on|backup][,neighbour=ADDR]...": into cfg (borrowing). */
int mesh_parse_borrow(struct mesh_config *cfg, const char *spec, const char **why);
/* "IFACE[,flows=N][,total=N][,uplink=RATE[,rate=RATE][,wan=IFACE]][,joins=PREFIX]...":
 * into cfg. */
int mesh_parse_lend(struct mesh_config *cfg, const char *spec, const char **why);

/* conc[0..nconc): our concentrators (a lender forwards borrowers to them,
 * and to its joins= prefixes at their ports). wan: our first own path's
 * interface, for uplink= without wan= (NULL: none configured). */
int mesh_start(struct mesh *m, const struct sockaddr_storage *conc, const socklen_t *conc_len,
	       unsigned nconc, const char *wan);
/* A reload's concentrators: the lending table follows, replaced in one
 * transaction (the old one stays if nft refuses the new). 0 or -errno. */
int mesh_set_concentrators(struct mesh *m, const struct sockaddr_storage *conc,
			   const socklen_t *conc_len, unsigned nconc);
void mesh_stop(struct mesh *m, struct paths *ps);
/* The descriptors to poll (announcements, borrow requests), -1 = none. */
int mesh_fd(const struct mesh *m);
int mesh_lend_fd(const struct mesh *m);
/* Read what arrived; returns true when the set of neighbours changed. */
bool mesh_receive(struct mesh *m);
/* Expire silent neighbours, bring their paths up or down, announce our
 * line (up = some own path can carry flows); true when paths changed.
 * next_ms: when to call again. */
bool mesh_tick(struct mesh *m, struct paths *ps, bool own_line_up, uint64_t now,
	       uint64_t *next_ms);

#endif
