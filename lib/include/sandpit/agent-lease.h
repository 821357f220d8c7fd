/* The node agents as their registration Leases describe them (the contract
 * in docs/cluster.md): read by the operator (placement, deletion, the orphan
 * resync) and by the gateway's cluster backend (the data plane goes to the
 * agent that runs a sandbox). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "sandpit/k8s-informer.h"

/* The Lease of node N is named AGENT_LEASE_PREFIX N. */
#define AGENT_LEASE_PREFIX "sandpit-agent-"

typedef struct {
        char *node;
        char *endpoint;
        double cpu;
        uint64_t memory;
        bool live;
} AgentInfo;

void agent_info_done(AgentInfo *a);
/* Parses one Lease; -EINVAL when it is not an agent's (or is malformed). */
int agent_info_from_lease(json_object *lease, uint64_t now_us, AgentInfo *ret);
/* The agent of node from leases, an informer of the Leases in namespace ns;
 * -ENOENT when none registered. */
int agent_lease_find(K8sInformer *leases, const char *ns, const char *node, AgentInfo *ret);
