/* The node agents of this operator's namespace (lib's agent-lease.h). */
#include "operator.h"

const K8sResource operator_leases = {"coordination.k8s.io", "v1", "leases", true};

int agents_find(Operator *op, const char *node, AgentInfo *ret)
{
        return agent_lease_find(op->leases, op->namespace, node, ret);
}
