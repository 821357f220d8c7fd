/* The node agents of this operator's namespace (lib's agent-lease.h), and the
 * nodes whose agent is not registered: since when (see agents_absent_ms()). */
#include <stdlib.h>
#include <string.h>

#include "operator.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

const K8sResource operator_leases = {"coordination.k8s.io", "v1", "leases", true};

struct AbsentNode {
        char *node;
        uint64_t since_us; /* monotonic: when a reconcile first found no Lease */
        struct AbsentNode *next;
};

/* Drops node's record, if any; op->placements_lock held. */
static void present_locked(Operator *op, const char *node)
{
        for (AbsentNode **p = &op->absent_nodes; *p; p = &(*p)->next)
                if (streq((*p)->node, node)) {
                        AbsentNode *n = *p;
                        *p = n->next;
                        free(n->node);
                        free(n);
                        return;
                }
}

int agents_find(Operator *op, const char *node, AgentInfo *ret)
{
        int r = agent_lease_find(op->leases, op->namespace, node, ret);
        if (r >= 0) {
                pthread_mutex_lock(&op->placements_lock);
                present_locked(op, node);
                pthread_mutex_unlock(&op->placements_lock);
        }
        return r;
}

uint64_t agents_absent_ms(Operator *op, const char *node)
{
        uint64_t now = now_monotonic_us(), since = now;
        pthread_mutex_lock(&op->placements_lock);
        AbsentNode *n = op->absent_nodes;
        while (n && !streq(n->node, node))
                n = n->next;
        if (n)
                since = n->since_us;
        else {
                n = calloc(1, sizeof(*n));
                if (n && (n->node = strdup(node))) {
                        n->since_us = now;
                        n->next = op->absent_nodes;
                        op->absent_nodes = n;
                } else
                        free(n); /* no memory: counted from now again next time */
        }
        pthread_mutex_unlock(&op->placements_lock);
        return (now - since) / 1000;
}

void agents_free(Operator *op)
{
        while (op->absent_nodes) {
                AbsentNode *n = op->absent_nodes;
                op->absent_nodes = n->next;
                free(n->node);
                free(n);
        }
}
