/* The node agents, as their Leases (docs/operator.md, the registration
 * contract) describe them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "operator.h"
#include "sandpit/macro.h"
#include "sandpit/quantity.h"
#include "sandpit/util.h"

const K8sResource operator_leases = {"coordination.k8s.io", "v1", "leases", true};

void agent_info_done(AgentInfo *a)
{
        free(a->node);
        free(a->endpoint);
        *a = (AgentInfo){0};
}

static json_object *get_path(json_object *o, const char *a, const char *b)
{
        json_object *x = NULL;
        if (!json_object_object_get_ex(o, a, &x))
                return NULL;
        if (b && !json_object_object_get_ex(x, b, &x))
                return NULL;
        return x;
}

int agent_info_from_lease(json_object *lease, uint64_t now_us, AgentInfo *ret)
{
        json_object *ann = get_path(lease, "metadata", "annotations");
        json_object *spec = get_path(lease, "spec", NULL);
        json_object *ep = get_path(ann, "sandpit.dev/endpoint", NULL);
        json_object *cpu = get_path(ann, "sandpit.dev/capacity-cpu", NULL);
        json_object *mem = get_path(ann, "sandpit.dev/capacity-memory", NULL);
        json_object *holder = get_path(spec, "holderIdentity", NULL);
        if (!ep || !cpu || !mem || !holder || !json_object_is_type(ep, json_type_string) ||
            !json_object_is_type(holder, json_type_string))
                return -EINVAL;
        const char *node = json_object_get_string(holder);
        const char *name = k8s_obj_name(lease);
        if (!name || strncmp(name, LEASE_NAME_PREFIX, strlen(LEASE_NAME_PREFIX)) != 0 ||
            !streq(name + strlen(LEASE_NAME_PREFIX), node))
                return -EINVAL;
        AgentInfo a = {0};
        if (quantity_cpu_from_json(cpu, &a.cpu) < 0 || quantity_bytes_from_json(mem, &a.memory) < 0)
                return -EINVAL;
        json_object *renew = get_path(spec, "renewTime", NULL);
        json_object *dur = get_path(spec, "leaseDurationSeconds", NULL);
        uint64_t renew_us = 0;
        if (renew && dur && parse_rfc3339_us(json_object_get_string(renew), &renew_us) >= 0)
                a.live = now_us <= renew_us + (uint64_t) json_object_get_int64(dur) * 1000000u;
        a.node = strdup(node);
        a.endpoint = strdup(json_object_get_string(ep));
        if (!a.node || !a.endpoint) {
                agent_info_done(&a);
                return -ENOMEM;
        }
        *ret = a;
        return 0;
}

int agents_find(Operator *op, const char *node, AgentInfo *ret)
{
        cleanup_free char *key = NULL;
        if (asprintf(&key, "%s/%s%s", op->namespace, LEASE_NAME_PREFIX, node) < 0)
                return -ENOMEM;
        json_object *lease = NULL;
        int r = k8s_informer_get(op->leases, key, &lease);
        if (r < 0)
                return r;
        r = agent_info_from_lease(lease, now_realtime_us(), ret);
        json_object_put(lease);
        return r == -EINVAL ? -ENOENT : r;
}
