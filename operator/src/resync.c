/* The orphan resync (docs/operator.md): every period, each live agent's
 * sandboxes are compared with the Sandbox objects, and the operator's own
 * sandboxes that no object claims are removed from the node.
 *
 * Only sandboxes with both marks are considered: the label
 * sandpit.dev/managed-by=sandpit-operator and an id "sbx-<uid>". Anything
 * else on an agent is someone else's and is never touched. A sandbox is
 * removed only when (1) it is older than the grace period (its object's
 * create or first status may not have reached the cache yet), (2) the
 * informer cache has no object claiming it, and (3) a direct GET of the
 * object named by its sandpit.dev/namespace and sandpit.dev/name labels
 * confirms that: 404, another uid, or an object that no longer claims it
 * (status on another node or with another sandboxID, or a final phase:
 * Failed or Expired, whose placement the operator has already released). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator.h"
#include "sandpit/k8s-event.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/ticker.h"
#include "sandpit/util.h"

#define RESYNC_AGENT_TIMEOUT_MS 60000L

static atomic_uint_fast64_t passes_total;
static atomic_uint_fast64_t removed_total;

uint64_t orphan_resync_passes_total(void)
{
        return (uint64_t) atomic_load(&passes_total);
}

uint64_t orphan_resync_removed_total(void)
{
        return (uint64_t) atomic_load(&removed_total);
}

static bool uid_matches(json_object *obj, const char *id)
{
        const char *uid = k8s_obj_uid(obj);
        return uid && strncmp(id, SANDBOX_ID_PREFIX, strlen(SANDBOX_ID_PREFIX)) == 0 &&
               streq(id + strlen(SANDBOX_ID_PREFIX), uid);
}

bool orphan_resync_claims(json_object *obj, const char *node, const char *id)
{
        if (!uid_matches(obj, id))
                return false;
        json_object *st = json_field(obj, "status");
        const char *phase = json_str(st, "phase");
        if (phase && (streq(phase, "Failed") || streq(phase, "Expired")))
                return false;
        const char *n = json_str(st, "nodeName"), *sid = json_str(st, "sandboxID");
        /* Not placed yet (or placed elsewhere): it cannot own this one. */
        return n && sid && streq(n, node) && streq(sid, id);
}

/* 1: claimed (keep), 0: orphan, < 0: cannot tell (keep). An orphan whose
 * object still exists (same uid: Failed, Expired) gets it in *ret_owner. */
static int is_claimed(Operator *op, const char *ns, const char *name, const char *node,
                      const char *id, json_object **ret_owner)
{
        cleanup_free char *key = NULL;
        if (asprintf(&key, "%s/%s", ns, name) < 0)
                return -ENOMEM;
        json_object *cached = NULL;
        if (k8s_informer_get(op->sandboxes, key, &cached) >= 0) {
                bool claimed = orphan_resync_claims(cached, node, id);
                json_object_put(cached);
                if (claimed)
                        return 1;
        }
        /* The cache may lag: never remove on its word alone. */
        cleanup_json json_object *fresh = NULL;
        K8sError e = {0};
        int r = k8s_get(op->client, &operator_sandboxes, ns, name, &fresh, &e);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return log_warning_errno(r, "Orphan resync: cannot read Sandbox %s: %s", key,
                                         e.message);
        if (orphan_resync_claims(fresh, node, id))
                return 1;
        const char *uid = k8s_obj_uid(fresh);
        if (uid && streq(id + strlen(SANDBOX_ID_PREFIX), uid))
                *ret_owner = TAKE_PTR(fresh);
        return 0;
}

/* Tells the object's readers (kubectl describe) that its sandbox went. */
static void note_removed(Operator *op, json_object *owner, const char *node, const char *id)
{
        char msg[256];
        snprintf(msg, sizeof(msg), "sandbox %s, left on node %s, was removed (the Sandbox is %s)",
                 id, node,
                 json_str(json_field(owner, "status"), "phase") ?: "no longer placed there");
        K8sError e = {0};
        int r = k8s_event_post(op->client, owner,
                               &(K8sEventInfo){.type = "Normal",
                                               .reason = "OrphanRemoved",
                                               .note = msg,
                                               .reporting_controller = OPERATOR_CONTROLLER,
                                               .reporting_instance = op->instance},
                               NULL, &e);
        if (r < 0)
                log_warning_errno(r, "Failed to post event OrphanRemoved: %s", e.message);
}

static bool allowed(bool (*may_act)(void *), void *data)
{
        return !may_act || may_act(data);
}

bool orphan_resync_marked(json_object *sb, const char **ret_ns, const char **ret_name)
{
        json_object *labels = json_field(sb, "labels");
        const char *id = json_str(sb, "id");
        const char *managed = json_str(labels, LABEL_MANAGED_BY);
        const char *ns = json_str(labels, LABEL_NAMESPACE);
        const char *name = json_str(labels, LABEL_NAME);
        if (!id || !managed || !streq(managed, LABEL_MANAGED_BY_VALUE) ||
            strncmp(id, SANDBOX_ID_PREFIX, strlen(SANDBOX_ID_PREFIX)) != 0 || !ns || !*ns ||
            !name || !*name)
                return false;
        *ret_ns = ns;
        *ret_name = name;
        return true;
}

/* The orphans of one live agent; the number removed. */
static int resync_agent(Operator *op, const AgentInfo *a, long grace_s, bool (*may_act)(void *),
                        void *may_act_data)
{
        const AgentConn c = {.endpoint = a->endpoint,
                             .token = op->agent_token,
                             .timeout_ms = RESYNC_AGENT_TIMEOUT_MS};
        AgentClientError ae = {0};
        cleanup_json json_object *arr = NULL;
        int r = op->agent->list(&c, LABEL_MANAGED_BY "=" LABEL_MANAGED_BY_VALUE, &arr, &ae);
        if (r < 0 && !ae.status)
                return r;
        if (r < 0) {
                log_warning("Orphan resync: node %s answered %ld to the list", a->node, ae.status);
                return -EAGAIN;
        }
        size_t n = json_object_array_length(arr);
        int removed = 0;
        uint64_t now = now_realtime_us();
        for (size_t i = 0; i < n; i++) {
                json_object *sb = json_object_array_get_idx(arr, i);
                const char *id = json_str(sb, "id");
                const char *created = json_str(sb, "created_at");
                const char *ns = NULL, *name = NULL;
                /* Both marks, or it is not ours. */
                if (!orphan_resync_marked(sb, &ns, &name))
                        continue;
                uint64_t created_us = 0;
                if (!created || parse_rfc3339_us(created, &created_us) < 0 ||
                    created_us + (uint64_t) grace_s * 1000000u > now)
                        continue;
                cleanup_json json_object *owner = NULL;
                if (is_claimed(op, ns, name, a->node, id, &owner) != 0)
                        continue;
                if (!allowed(may_act, may_act_data))
                        return removed;
                r = op->agent->remove(&c, id, &ae);
                if (r < 0 && !agent_error_not_found(r, &ae)) {
                        if (ae.status)
                                log_warning("Orphan resync: node %s refused to delete %s: %ld",
                                            a->node, id, ae.status);
                        continue;
                }
                removed++;
                atomic_fetch_add(&removed_total, 1);
                if (owner)
                        note_removed(op, owner, a->node, id);
                log_info("Orphan resync: removed sandbox %s from node %s (no Sandbox %s/%s "
                         "claims it)",
                         id, a->node, ns, name);
        }
        return removed;
}

int orphan_resync_pass(Operator *op, long grace_s, bool (*may_act)(void *), void *may_act_data)
{
        if (!allowed(may_act, may_act_data))
                return 0;
        cleanup_strv char **keys = NULL;
        int r = k8s_informer_keys(op->leases, &keys);
        if (r < 0)
                return r;
        int removed = 0;
        STRV_FOREACH(k, keys) {
                json_object *lease = NULL;
                if (k8s_informer_get(op->leases, *k, &lease) < 0)
                        continue;
                AgentInfo a = {0};
                r = agent_info_from_lease(lease, now_realtime_us(), &a);
                json_object_put(lease);
                if (r < 0)
                        continue;
                if (a.live && a.endpoint) {
                        r = resync_agent(op, &a, grace_s, may_act, may_act_data);
                        if (r > 0)
                                removed += r;
                }
                agent_info_done(&a);
        }
        atomic_fetch_add(&passes_total, 1);
        return removed;
}

struct OrphanResync {
        Operator *op;
        OrphanResyncOptions o;
        Ticker *ticker;
};

static void resync_tick(void *userdata)
{
        OrphanResync *rs = userdata;
        if (rs->o.begin && !rs->o.begin(rs->o.may_act_data))
                return;
        int r = orphan_resync_pass(rs->op, rs->o.grace_s, rs->o.may_act, rs->o.may_act_data);
        if (r < 0)
                log_warning_errno(r, "Orphan resync pass failed");
        else
                log_debug("Orphan resync pass: %d removed", r);
}

int orphan_resync_start(Operator *op, const OrphanResyncOptions *o, OrphanResync **ret)
{
        OrphanResync *rs = calloc(1, sizeof(*rs));
        if (!rs)
                return -ENOMEM;
        rs->op = op;
        rs->o = *o;
        int r = ticker_start(o->period_s * 1000, resync_tick, rs, &rs->ticker);
        if (r < 0) {
                free(rs);
                return r;
        }
        *ret = rs;
        return 0;
}

void orphan_resync_stop(OrphanResync *rs)
{
        if (!rs)
                return;
        ticker_stop(rs->ticker);
        free(rs);
}
