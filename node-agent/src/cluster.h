/* Cluster mode: the agent's registration Lease (coordination.k8s.io/v1) in
 * the operator's namespace, kept alive by a heartbeat thread. The contract
 * with the operator is in docs/cluster.md. */
#pragma once

#include <stdint.h>

#include "sandpit/k8s-client.h"

#define CLUSTER_DEFAULT_NAMESPACE      "sandpit-system"
#define CLUSTER_DEFAULT_LEASE_DURATION 30

typedef struct {
        const char *node_name;     /* holderIdentity; the Lease is sandpit-agent-<node_name> */
        const char *namespace;     /* the operator's namespace */
        const char *endpoint;      /* base URL of the agent's TCP API */
        const char *capacity_cpu;  /* cores, decimal string */
        uint64_t capacity_memory;  /* bytes */
        const char *version;       /* agent version */
        unsigned lease_duration_s; /* renewed every lease_duration_s / 3 */
} ClusterConfig;

typedef struct Cluster Cluster;

/* Takes client (freed by cluster_stop, or at once on failure). Starts the
 * heartbeat thread, which creates or takes over the Lease and renews it; an
 * unreachable API is logged and retried with back-off, never fatal. */
int cluster_start(K8sClient *client, const ClusterConfig *cfg, Cluster **ret);
/* Stops the heartbeat, deletes the Lease (best effort, bounded by the
 * client's timeout) and frees everything. NULL is a no-op. */
void cluster_stop(Cluster *cl);

/* "2026-11-22T12:00:00.000000Z" for a CLOCK_REALTIME time in µs; buf >= 28. */
void cluster_format_microtime(uint64_t us, char *buf, size_t len);
/* "sandpit-agent-<node>" after checking that it is a DNS subdomain name
 * (-EINVAL otherwise). */
int cluster_lease_name(const char *node_name, char **ret);
