/* Sandbox networking (docs/networking.md): with --sandbox-cidr every sandbox
 * gets a network namespace made by the agent, a veth pair to the node, an
 * address leased from the node's range and an egress policy enforced in the
 * agent's nftables table. Without it, sandboxes keep the loopback-only
 * namespace runc makes, and only the deny policy is accepted. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net-policy.h"

typedef struct {
        const char *sandbox_cidr; /* NULL: networking off */
        char **blocked_cidrs;     /* strv, may be NULL */
        const char *dns;          /* resolver address for the sandboxes' resolv.conf */
        const char *table;        /* nftables table name (family ip) */
} NetConfig;

typedef struct NetManager NetManager;

/* Parses the config, loads the lease file from state_dir/network and, when
 * enabled, turns on IPv4 forwarding. Touches no sandbox and no rule yet. */
int net_manager_new(const NetConfig *cfg, const char *state_dir, NetManager **ret);
void net_manager_free(NetManager *m);
bool net_enabled(const NetManager *m);
/* -EINVAL with a message when the node cannot give the policy. */
int net_check_policy(const NetManager *m, const NetPolicy *p, char *err, size_t errlen);

typedef struct {
        uint32_t ip;       /* 0 when networking is off */
        char *netns_path;  /* for the OCI config; NULL: the runtime makes one */
        char *resolv_path; /* bound at /etc/resolv.conf; NULL: none */
} NetSandboxInfo;
void net_sandbox_info_done(NetSandboxInfo *i);

/* Lease, namespace, veth, rules; all or nothing. dir is the sandbox dir. With
 * userns_path (NULL: none) the namespace is owned by that user namespace. */
int net_sandbox_setup(NetManager *m, const char *id, const char *dir, const char *userns_path,
                      const NetPolicy *p, NetSandboxInfo *ret);
/* Releases whatever of the above exists; dir may be NULL. */
int net_sandbox_teardown(NetManager *m, const char *id, const char *dir);
/* Replaces the sandbox's rules in one transaction. */
int net_sandbox_set_policy(NetManager *m, const char *id, const NetPolicy *p);
/* The leased address, or -ENOENT. */
int net_sandbox_ip(NetManager *m, const char *id, uint32_t *ret);
/* The namespace path of a sandbox dir ("<dir>/netns"); caller frees. */
char *net_netns_path(const char *dir);

typedef struct {
        const char *id;
        const NetPolicy *policy;
        const char *dir; /* the sandbox dir (its resolv.conf); may be NULL */
} NetAdopted;
/* After re-adoption: releases leases (and veths) of sandboxes not adopted and
 * rebuilds the agent's table with exactly the adopted ones, atomically. */
int net_recover(NetManager *m, const NetAdopted *adopted, size_t n);
