/* The node agents, as their Leases (docs/cluster.md, the registration
 * contract) describe them. */
#include "sandpit/agent-lease.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/quantity.h"
#include "sandpit/util.h"

void agent_info_done(AgentInfo *a)
{
        free(a->node);
        free(a->endpoint);
        *a = (AgentInfo){0};
}

int agent_info_from_lease(json_object *lease, uint64_t now_us, AgentInfo *ret)
{
        json_object *ann = json_field(json_field(lease, "metadata"), "annotations");
        json_object *spec = json_field(lease, "spec");
        const char *endpoint = json_str(ann, "sandpit.dev/endpoint");
        json_object *cpu = json_field(ann, "sandpit.dev/capacity-cpu");
        json_object *mem = json_field(ann, "sandpit.dev/capacity-memory");
        const char *node = json_str(spec, "holderIdentity");
        if (!endpoint || !cpu || !mem || !node)
                return -EINVAL;
        const char *name = k8s_obj_name(lease);
        if (!name || strncmp(name, AGENT_LEASE_PREFIX, strlen(AGENT_LEASE_PREFIX)) != 0 ||
            !streq(name + strlen(AGENT_LEASE_PREFIX), node))
                return -EINVAL;
        AgentInfo a = {0};
        if (quantity_cpu_from_json(cpu, &a.cpu) < 0 || quantity_bytes_from_json(mem, &a.memory) < 0)
                return -EINVAL;
        json_object *renew = json_field(spec, "renewTime");
        json_object *dur = json_field(spec, "leaseDurationSeconds");
        uint64_t renew_us = 0;
        if (renew && dur && parse_rfc3339_us(json_object_get_string(renew), &renew_us) >= 0)
                a.live = now_us <= renew_us + (uint64_t) json_object_get_int64(dur) * 1000000u;
        a.node = strdup(node);
        a.endpoint = strdup(endpoint);
        if (!a.node || !a.endpoint) {
                agent_info_done(&a);
                return -ENOMEM;
        }
        *ret = a;
        return 0;
}

int agent_lease_find(K8sInformer *leases, const char *ns, const char *node, AgentInfo *ret)
{
        cleanup_free char *key = NULL;
        if (asprintf(&key, "%s/" AGENT_LEASE_PREFIX "%s", ns, node) < 0)
                return -ENOMEM;
        json_object *lease = NULL;
        int r = k8s_informer_get(leases, key, &lease);
        if (r < 0)
                return r;
        r = agent_info_from_lease(lease, now_realtime_us(), ret);
        json_object_put(lease);
        return r == -EINVAL ? -ENOENT : r;
}
