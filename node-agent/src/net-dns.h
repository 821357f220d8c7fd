/* The agent's resolver for sandboxes whose allowlist names hosts
 * (docs/networking.md, "Names in allowlists"): a UDP and TCP DNS forwarder
 * on the gateway address, port 53, run by one thread with poll(). A query for
 * a name the sandbox's policy allows goes to the upstream --dns server, and
 * the A records of the answer are added to that entry's nftables set with
 * their TTL (clamped to NET_DNS_TTL_MIN..NET_DNS_TTL_MAX) before the answer
 * is passed on; any other query is answered REFUSED. The sandbox is known by
 * the query's source address, which the input chain checks against the veth
 * it came in on. */
#pragma once

#include <stdint.h>

#include "net-policy.h"

#define NET_DNS_TTL_MIN             30
#define NET_DNS_TTL_MAX             3600
#define NET_DNS_UPSTREAM_TIMEOUT_MS 5000

typedef struct NetDns NetDns;

/* Binds listen:53 (UDP and TCP, IP_FREEBIND: the address exists only while a
 * veth does) and starts the thread. */
int net_dns_new(const char *table, uint32_t listen, uint32_t upstream, NetDns **ret);
void net_dns_free(NetDns *d);
/* The host entries of the sandbox at ip, whose chain is chain (the sets are
 * "<chain>-h<k>"); a policy without any removes it. */
int net_dns_set(NetDns *d, uint32_t ip, const char *chain, const NetPolicy *p);
void net_dns_del(NetDns *d, uint32_t ip);
