/* Placement: which agent gets a new sandbox. An agent offers the capacity
 * its Lease announces; what the operator has placed there (this process's
 * placements, and those recorded in Sandbox statuses) is taken off it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator.h"
#include "sandpit/macro.h"
#include "sandpit/quantity.h"
#include "sandpit/util.h"

static Placement *find(Operator *op, const char *key)
{
        for (Placement *p = op->placements; p; p = p->next)
                if (streq(p->key, key))
                        return p;
        return NULL;
}

static void note_locked(Operator *op, const char *key, const char *node, double cpu,
                        uint64_t memory)
{
        Placement *p = find(op, key);
        if (p) {
                if (!streq(p->node, node)) {
                        char *n = strdup(node);
                        if (!n)
                                return;
                        free(p->node);
                        p->node = n;
                }
                p->cpu = cpu;
                p->memory = memory;
                return;
        }
        p = calloc(1, sizeof(*p));
        if (!p)
                return;
        p->key = strdup(key);
        p->node = strdup(node);
        if (!p->key || !p->node) {
                free(p->key);
                free(p->node);
                free(p);
                return;
        }
        p->cpu = cpu;
        p->memory = memory;
        p->next = op->placements;
        op->placements = p;
}

void scheduler_note(Operator *op, const char *key, const char *node, double cpu, uint64_t memory)
{
        pthread_mutex_lock(&op->placements_lock);
        note_locked(op, key, node, cpu, memory);
        pthread_mutex_unlock(&op->placements_lock);
}

void scheduler_forget(Operator *op, const char *key)
{
        pthread_mutex_lock(&op->placements_lock);
        for (Placement **pp = &op->placements; *pp; pp = &(*pp)->next)
                if (streq((*pp)->key, key)) {
                        Placement *p = *pp;
                        *pp = p->next;
                        free(p->key);
                        free(p->node);
                        free(p);
                        break;
                }
        pthread_mutex_unlock(&op->placements_lock);
}

void scheduler_free(Operator *op)
{
        while (op->placements) {
                Placement *p = op->placements;
                op->placements = p->next;
                free(p->key);
                free(p->node);
                free(p);
        }
}

/* Placements recorded in the cache's statuses that this process has not
 * seen yet (it restarted): noted so they count. */
static void note_from_cache(Operator *op)
{
        cleanup_strv char **keys = NULL;
        if (k8s_informer_keys(op->sandboxes, &keys) < 0)
                return;
        STRV_FOREACH(k, keys) {
                if (find(op, *k))
                        continue;
                json_object *o = NULL;
                if (k8s_informer_get(op->sandboxes, *k, &o) < 0)
                        continue;
                json_object *st = NULL, *node = NULL, *phase = NULL;
                SandboxResources req = {0};
                if (json_object_object_get_ex(o, "status", &st) &&
                    json_object_object_get_ex(st, "nodeName", &node) &&
                    !(json_object_object_get_ex(st, "phase", &phase) &&
                      (streq(json_object_get_string(phase), "Failed") ||
                       streq(json_object_get_string(phase), "Expired"))) &&
                    sandbox_placed_resources(o, &req) >= 0)
                        note_locked(op, *k, json_object_get_string(node), req.cpu, req.memory);
                json_object_put(o);
        }
}

int scheduler_place(Operator *op, const char *key, double cpu, uint64_t memory, const char *pool,
                    AgentInfo *ret, char *msg, size_t msglen)
{
        cleanup_strv char **keys = NULL;
        int r = k8s_informer_keys(op->leases, &keys);
        if (r < 0)
                return r;
        uint64_t now = now_realtime_us();
        unsigned agents = 0, live = 0;
        AgentInfo best = {0};
        double best_free = -1;
        bool best_warm = false;

        pthread_mutex_lock(&op->placements_lock);
        note_from_cache(op);
        STRV_FOREACH(k, keys) {
                json_object *lease = NULL;
                if (k8s_informer_get(op->leases, *k, &lease) < 0)
                        continue;
                AgentInfo a = {0};
                r = agent_info_from_lease(lease, now, &a);
                json_object_put(lease);
                if (r < 0)
                        continue;
                agents++;
                if (!a.live) {
                        agent_info_done(&a);
                        continue;
                }
                live++;
                double used_cpu = 0;
                uint64_t used_mem = 0;
                for (Placement *p = op->placements; p; p = p->next)
                        if (streq(p->node, a.node) && !streq(p->key, key)) {
                                used_cpu += p->cpu;
                                used_mem += p->memory;
                        }
                double free_cpu = a.cpu - used_cpu;
                bool fits = free_cpu + 1e-9 >= cpu && used_mem <= a.memory &&
                            a.memory - used_mem >= memory;
                /* A node with a ready pooled sandbox first, then the most free CPU. */
                bool warm = pool && pools_ready_locked(op, pool, a.node) > 0;
                if (fits && (warm > best_warm || (warm == best_warm && free_cpu > best_free))) {
                        agent_info_done(&best);
                        best = a;
                        best_free = free_cpu;
                        best_warm = warm;
                } else
                        agent_info_done(&a);
        }
        if (best.node)
                note_locked(op, key, best.node, cpu, memory);
        if (best_warm)
                pools_take_locked(op, pool, best.node);
        pthread_mutex_unlock(&op->placements_lock);

        if (!best.node) {
                snprintf(msg, msglen,
                         "no agent has room for %.3g CPU and %llu bytes of memory "
                         "(%u agents registered, %u live)",
                         cpu, (unsigned long long) memory, agents, live);
                return -ENOSPC;
        }
        *ret = best;
        return 0;
}
