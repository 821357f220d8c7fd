/* Sandbox networking, the pure part: IPv4 CIDRs, the per-node address pool,
 * egress policies (parsed from and rendered to JSON) and their rendering as
 * nftables commands. No I/O here, so all of it is unit-tested
 * (tests/unit/test_net_policy.c). Addresses are in host byte order. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define NET_MAX_RULES 256
#define NET_MAX_PORTS 32

typedef enum {
        NET_EGRESS_DENY, /* the default: loopback only */
        NET_EGRESS_ALLOWLIST,
        NET_EGRESS_ALLOW,
} NetEgress;

typedef enum {
        NET_PROTO_ANY,
        NET_PROTO_TCP,
        NET_PROTO_UDP,
} NetProto;

typedef struct {
        uint32_t addr;
        uint8_t prefix;
        char host[254]; /* "" or a name ("example.com", "*.example.com"): then no addr */
        NetProto proto;
        size_t nports; /* 0: every port */
        uint16_t port_lo[NET_MAX_PORTS];
        uint16_t port_hi[NET_MAX_PORTS];
} NetRule;

typedef struct {
        NetEgress egress;
        NetRule *allow; /* allowlist entries */
        size_t nallow;
        NetRule *deny; /* denied on top of "allow" */
        size_t ndeny;
} NetPolicy;

/* "a.b.c.d/n" or "a.b.c.d" (= /32). Host bits set are an error. */
int net_cidr_parse(const char *s, uint32_t *ret_addr, uint8_t *ret_prefix);
int net_addr_parse(const char *s, uint32_t *ret_addr);
/* buf of at least 19 bytes; prefix 32 prints the bare address. */
void net_cidr_format(uint32_t addr, uint8_t prefix, char *buf, size_t len);
void net_addr_format(uint32_t addr, char *buf, size_t len);
uint32_t net_prefix_mask(uint8_t prefix);

/* The node's sandbox range. Offset 0 (network) and the last (broadcast) are
 * never leased; offset 1 is the gateway, the node side of every veth. Leases
 * go round-robin, so a released address is reused as late as possible (stale
 * conntrack entries of the previous holder time out meanwhile). */
typedef struct {
        uint32_t net;
        uint8_t prefix;
        uint32_t size; /* addresses in the range */
        uint32_t next; /* next offset to try */
        uint8_t *used; /* one byte per offset */
} NetPool;

/* prefix 16..29. */
int net_pool_init(NetPool *p, uint32_t net, uint8_t prefix);
void net_pool_done(NetPool *p);
uint32_t net_pool_gateway(const NetPool *p);
bool net_pool_contains(const NetPool *p, uint32_t ip);
/* -ENOSPC when full. */
int net_pool_alloc(NetPool *p, uint32_t *ret_ip);
/* Marks ip leased (recovery); -ERANGE outside the leasable range, -EEXIST if taken. */
int net_pool_reserve(NetPool *p, uint32_t ip);
void net_pool_release(NetPool *p, uint32_t ip);

/* {"egress": "deny"|"allowlist"|"allow", "allow": [RULE...], "deny": [RULE...]}
 * with RULE {"cidr": "198.18.0.0/15", "ports": [80, "8000-8080"],
 * "protocol": "tcp"|"udp"|"any"}; in "allow", "host": "example.com" or
 * "*.example.com" instead of "cidr". A NULL or absent object is deny. */
int net_policy_from_json(json_object *o, NetPolicy *ret, char *err, size_t errlen);
json_object *net_policy_to_json(const NetPolicy *p);
int net_policy_copy(const NetPolicy *src, NetPolicy *ret);
void net_policy_done(NetPolicy *p);
const char *net_egress_name(NetEgress e);
/* How many allow entries are host names: each has its own address set,
 * "<chain>-h<k>" for the k-th, filled by the agent's resolver (net-dns.c). */
size_t net_policy_nhosts(const NetPolicy *p);

/* What the rules of one sandbox are rendered against. */
typedef struct {
        const char *table;  /* nft table (family ip) */
        const char *chain;  /* the sandbox's chain */
        const char *ifname; /* node side of its veth */
        uint32_t ip;        /* its address: anything else from it is spoofed */
        uint32_t dns;       /* 0: none */
} NetChainCtx;

/* The k-th host entry's set: "<chain>-h<k>". */
void net_host_set_name(const NetChainCtx *c, size_t k, char *buf, size_t len);

/* Appends "add rule ..." lines for the sandbox's chain (which must exist and
 * be empty) to *buf (malloc'd, grown; *buf may be NULL). */
int net_render_chain_rules(const NetPolicy *p, const NetChainCtx *c, char **buf);

/* The agent's whole table, for a fresh start or a rebuild after a restart. */
typedef struct {
        const char *table;
        const char *if_prefix; /* node sides of veths: "<prefix>*" */
        uint32_t net;          /* the sandbox range */
        uint8_t prefix;
        const uint32_t *blocked_addr; /* --blocked-cidr */
        const uint8_t *blocked_prefix;
        size_t nblocked;
        uint32_t resolver; /* the gateway, where the agent's resolver listens; 0: none */
} NetTableCtx;

/* "add table; delete table; add table ..." (so it replaces any old one in the
 * same transaction), the blocked set, the interface map and the base chains. */
int net_render_table(const NetTableCtx *t, char **buf);
/* Chain creation + rules + map element for one sandbox. */
int net_render_sandbox_add(const NetPolicy *p, const NetChainCtx *c, char **buf);
/* Atomically replaces the sandbox's rules (flush chain + add rules). A host
 * set whose entry names the same host as in old keeps its addresses; the
 * others are emptied, and those old has beyond p's are deleted. */
int net_render_sandbox_update(const NetPolicy *old, const NetPolicy *p, const NetChainCtx *c,
                              char **buf);
/* Removes the map element, the chain and p's host sets. */
int net_render_sandbox_del(const NetPolicy *p, const NetChainCtx *c, char **buf);
