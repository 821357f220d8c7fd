/* Agent create bodies to Sandbox objects and back (cluster-map.h). */
#include "cluster-map.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "e2b-api.h"
#include "gateway.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/quantity.h"
#include "sandpit/util.h"

/* Adds v (taken) as o's member key; a NULL v or a failed add sets *bad. */
static void put(json_object *o, const char *key, json_object *v, bool *bad)
{
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                *bad = true;
        }
}

static void put_str(json_object *o, const char *key, const char *s, bool *bad)
{
        if (s)
                put(o, key, json_object_new_string(s), bad);
}

/* The length of a when it is an array, else 0 (json-c asserts on others). */
static size_t array_len(json_object *a)
{
        return json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

/* A DNS label, as spec.template must be. */
static bool dns_label(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
                        return false;
        return true;
}

static bool reserved(const char *key)
{
        return strncmp(key, GW_E2B_LABEL_PREFIX, strlen(GW_E2B_LABEL_PREFIX)) == 0;
}

/* The agent's network request as spec.network; NULL *ret for deny. */
static int network_spec(json_object *net, json_object **ret, char *err, size_t errlen)
{
        const char *egress = json_str(net, "egress");
        *ret = NULL;
        if (!net || !egress || streq(egress, "deny"))
                return 0;
        json_object *deny = json_field(net, "deny");
        if (array_len(deny) > 0) {
                (void) snprintf(err, errlen,
                                "denyOut without 0.0.0.0/0 is not supported in a cluster: the "
                                "Sandbox's egress policy has no deny list");
                return -EOPNOTSUPP;
        }
        bool bad = false;
        cleanup_json json_object *spec = json_object_new_object();
        json_object *eg = json_object_new_object();
        if (!spec)
                return -ENOMEM;
        put(spec, "egress", eg, &bad);
        if (bad)
                return -ENOMEM;
        if (streq(egress, "allow")) {
                put_str(eg, "policy", "Allow", &bad);
        } else if (streq(egress, "allowlist")) {
                put_str(eg, "policy", "AllowList", &bad);
                json_object *allow = json_object_new_array();
                json_object *rules = json_field(net, "allow");
                for (size_t i = 0; allow && i < array_len(rules); i++) {
                        const char *cidr = json_str(json_object_array_get_idx(rules, i), "cidr");
                        json_object *e = json_object_new_object();
                        if (!e || json_object_array_add(allow, e) < 0) {
                                json_object_put(e);
                                bad = true;
                                break;
                        }
                        /* The CRD's cidr format wants a prefix length. */
                        char buf[64];
                        if (cidr && !strchr(cidr, '/')) {
                                (void) snprintf(buf, sizeof(buf), "%s/32", cidr);
                                cidr = buf;
                        }
                        const char *host = json_str(json_object_array_get_idx(rules, i), "host");
                        put_str(e, host ? "host" : "cidr", host ? host : cidr, &bad);
                }
                put(eg, "allow", allow, &bad);
        } else {
                (void) snprintf(err, errlen, "egress %s is not supported in a cluster", egress);
                return -EOPNOTSUPP;
        }
        if (bad)
                return -ENOMEM;
        *ret = TAKE_PTR(spec);
        return 0;
}

int gw_cluster_sandbox_new(json_object *agent_req, const char *ns, const char *name,
                           json_object **ret, char *err, size_t errlen)
{
        static const char *const known[] = {"template", "timeout",    "labels", "env",
                                            "network",  "on_timeout", NULL};
        json_object_object_foreach(agent_req, key, val) {
                (void) val;
                bool ok = false;
                for (size_t i = 0; known[i] && !ok; i++)
                        ok = streq(key, known[i]);
                if (!ok) {
                        (void) snprintf(err, errlen, "%s is not supported in a cluster", key);
                        return -EOPNOTSUPP;
                }
        }
        const char *tmpl = json_str(agent_req, "template");
        if (!tmpl)
                tmpl = "default";
        if (!dns_label(tmpl)) {
                (void) snprintf(err, errlen,
                                "template %s: in a cluster a template is a SandboxTemplate or "
                                "agent template name, a DNS label (1-63 of a-z, 0-9 and -)",
                                tmpl);
                return -EINVAL;
        }
        /* autoPause: paused at the deadline instead of deleted. */
        const char *on_timeout = json_str(agent_req, "on_timeout");
        if (on_timeout && !streq(on_timeout, "pause") && !streq(on_timeout, "delete")) {
                (void) snprintf(err, errlen, "on_timeout must be \"delete\" or \"pause\"");
                return -EINVAL;
        }
        bool pause_at_deadline = on_timeout && streq(on_timeout, "pause");
        int64_t timeout = json_int(agent_req, "timeout", GW_E2B_TIMEOUT_DEFAULT);
        if (timeout < 1 || (uint64_t) timeout > GW_CLUSTER_TIMEOUT_MAX_S) {
                (void) snprintf(err, errlen, "timeout must be 1 to %u seconds in a cluster",
                                GW_CLUSTER_TIMEOUT_MAX_S);
                return -EINVAL;
        }
        json_object *net = NULL;
        int r = network_spec(json_field(agent_req, "network"), &net, err, errlen);
        if (r < 0)
                return r;

        bool bad = false;
        cleanup_json json_object *o = json_object_new_object();
        json_object *md = json_object_new_object(), *spec = json_object_new_object();
        json_object *mlabels = json_object_new_object(), *ann = json_object_new_object();
        json_object *labels = json_object_new_object(), *env = json_object_new_array();
        if (!o) {
                json_object_put(net);
                json_object_put(md);
                json_object_put(spec);
                json_object_put(mlabels);
                json_object_put(ann);
                json_object_put(labels);
                json_object_put(env);
                return -ENOMEM;
        }
        put_str(o, "apiVersion", "sandpit.dev/v1alpha1", &bad);
        put_str(o, "kind", "Sandbox", &bad);
        put(o, "metadata", md, &bad);
        put(o, "spec", spec, &bad);
        if (bad) {
                json_object_put(mlabels);
                json_object_put(ann);
                json_object_put(labels);
                json_object_put(env);
                json_object_put(net);
                return -ENOMEM;
        }
        put_str(md, "name", name, &bad);
        put_str(md, "namespace", ns, &bad);
        put(md, "labels", mlabels, &bad);
        json_object *alabels = json_field(agent_req, "labels");
        if (mlabels) {
                put_str(mlabels, GW_CLUSTER_LABEL_CREATED_BY, GW_CLUSTER_CREATED_BY, &bad);
                put_str(mlabels, GW_CLUSTER_LABEL_MCP_SESSION,
                        json_str(alabels, GW_CLUSTER_LABEL_MCP_SESSION), &bad);
        }
        const char *e2b_tmpl = json_str(alabels, GW_E2B_LABEL_TEMPLATE);
        const char *secure = json_str(alabels, GW_CLUSTER_ANN_SECURE);
        if (ann) {
                put_str(ann, GW_CLUSTER_ANN_TEMPLATE, e2b_tmpl, &bad);
                if (secure && streq(secure, "true"))
                        put_str(ann, GW_CLUSTER_ANN_SECURE, "true", &bad);
        }
        put(md, "annotations", ann, &bad);

        char tbuf[32];
        (void) snprintf(tbuf, sizeof(tbuf), "%" PRId64 "s", timeout);
        put_str(spec, "template", tmpl, &bad);
        put_str(spec, "timeout", tbuf, &bad);
        /* At the deadline an E2B sandbox is gone, object and all, or (autoPause)
         * paused until a connect moves its deadline. */
        put_str(spec, "expiryPolicy", pause_at_deadline ? "Pause" : "Delete", &bad);
        if (labels && json_object_is_type(alabels, json_type_object)) {
                json_object_object_foreach(alabels, lk, lv) {
                        if (!reserved(lk))
                                put(labels, lk, json_object_get(lv), &bad);
                }
        }
        put(spec, "labels", labels, &bad);
        json_object *aenv = json_field(agent_req, "env");
        if (env && json_object_is_type(aenv, json_type_object)) {
                json_object_object_foreach(aenv, ek, ev) {
                        json_object *e = json_object_new_object();
                        if (!e || json_object_array_add(env, e) < 0) {
                                json_object_put(e);
                                bad = true;
                                break;
                        }
                        put_str(e, "name", ek, &bad);
                        put_str(e, "value", json_object_get_string(ev), &bad);
                }
        }
        put(spec, "env", env, &bad);
        if (net)
                put(spec, "network", net, &bad);
        if (bad)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

static const char *annotation(json_object *sbx, const char *key)
{
        return json_str(json_field(json_field(sbx, "metadata"), "annotations"), key);
}

/* A quantity of status.resources, else of spec.resources; 0 when neither. */
static void resource(json_object *sbx, const char *key, double *cpu, uint64_t *bytes)
{
        json_object *v = json_field(json_field(json_field(sbx, "status"), "resources"), key);
        if (!v)
                v = json_field(json_field(json_field(sbx, "spec"), "resources"), key);
        if (v && cpu && quantity_cpu_from_json(v, cpu) < 0)
                *cpu = 0;
        if (v && bytes && quantity_bytes_from_json(v, bytes) < 0)
                *bytes = 0;
}

static json_object *network_view(json_object *sbx)
{
        json_object *egress = json_field(json_field(json_field(sbx, "spec"), "network"), "egress");
        const char *policy = json_str(egress, "policy");
        bool bad = false;
        json_object *net = json_object_new_object();
        if (!net)
                return NULL;
        if (policy && streq(policy, "Allow")) {
                put_str(net, "egress", "allow", &bad);
        } else if (policy && streq(policy, "AllowList")) {
                put_str(net, "egress", "allowlist", &bad);
                json_object *allow = json_object_new_array();
                json_object *list = json_field(egress, "allow");
                for (size_t i = 0; allow && i < array_len(list); i++) {
                        json_object *e = json_object_new_object();
                        if (!e || json_object_array_add(allow, e) < 0) {
                                json_object_put(e);
                                bad = true;
                                break;
                        }
                        json_object *a = json_object_array_get_idx(list, i);
                        put_str(e, json_str(a, "host") ? "host" : "cidr",
                                json_str(a, "host") ? json_str(a, "host") : json_str(a, "cidr"),
                                &bad);
                }
                put(net, "allow", allow, &bad);
        } else {
                put_str(net, "egress", "deny", &bad);
        }
        put_str(net, "ip", json_str(json_field(sbx, "status"), "ip"), &bad);
        if (bad) {
                json_object_put(net);
                return NULL;
        }
        return net;
}

static const char *state_of(json_object *sbx, char *buf, size_t len)
{
        if (json_field(json_field(sbx, "metadata"), "deletionTimestamp"))
                return "deleting";
        const char *phase = json_str(json_field(sbx, "status"), "phase");
        if (!phase || streq(phase, "Pending"))
                return "creating";
        size_t i = 0;
        for (; phase[i] && i + 1 < len; i++)
                buf[i] = (char) (phase[i] >= 'A' && phase[i] <= 'Z' ? phase[i] - 'A' + 'a'
                                                                    : phase[i]);
        buf[i] = 0;
        return buf;
}

int gw_cluster_sandbox_view(json_object *sbx, json_object **ret)
{
        const char *name = json_str(json_field(sbx, "metadata"), "name");
        json_object *spec = json_field(sbx, "spec"), *st = json_field(sbx, "status");
        if (!name)
                return -EINVAL;
        bool bad = false;
        char state[32];
        cleanup_json json_object *o = json_object_new_object();
        json_object *labels = json_object_new_object();
        if (!o) {
                json_object_put(labels);
                return -ENOMEM;
        }
        put_str(o, "id", name, &bad);
        put_str(o, "template", json_str(spec, "template"), &bad);
        put_str(o, "state", state_of(sbx, state, sizeof(state)), &bad);
        json_object *sl = json_field(spec, "labels");
        if (labels && json_object_is_type(sl, json_type_object)) {
                json_object_object_foreach(sl, k, v) {
                        if (!reserved(k) && json_object_is_type(v, json_type_string))
                                put(labels, k, json_object_get(v), &bad);
                }
        }
        if (labels) {
                put_str(labels, GW_E2B_LABEL_TEMPLATE, annotation(sbx, GW_CLUSTER_ANN_TEMPLATE),
                        &bad);
                put_str(labels, GW_CLUSTER_ANN_SECURE, annotation(sbx, GW_CLUSTER_ANN_SECURE),
                        &bad);
                put_str(labels, GW_CLUSTER_LABEL_MCP_SESSION,
                        json_str(json_field(json_field(sbx, "metadata"), "labels"),
                                 GW_CLUSTER_LABEL_MCP_SESSION),
                        &bad);
                /* The namespace a caller must act in to see it (scope.c). */
                put_str(labels, GW_LABEL_NAMESPACE,
                        json_str(json_field(sbx, "metadata"), "namespace"), &bad);
        }
        put(o, "labels", labels, &bad);
        put_str(o, "created_at", json_str(json_field(sbx, "metadata"), "creationTimestamp"), &bad);
        put_str(o, "started_at", json_str(st, "startedAt"), &bad);
        put_str(o, "expires_at", json_str(st, "expiresAt"), &bad);
        const char *policy = json_str(spec, "expiryPolicy");
        put_str(o, "on_timeout", policy && streq(policy, "Pause") ? "pause" : "delete", &bad);
        double cpu = 0;
        uint64_t memory = 0, disk = 0;
        resource(sbx, "cpu", &cpu, NULL);
        resource(sbx, "memory", NULL, &memory);
        resource(sbx, "disk", NULL, &disk);
        if (cpu > 0)
                put(o, "cpu", json_object_new_double(cpu), &bad);
        if (memory)
                put(o, "memory", json_object_new_int64((int64_t) memory), &bad);
        if (disk)
                put(o, "disk", json_object_new_int64((int64_t) disk), &bad);
        put(o, "network", network_view(sbx), &bad);
        put_str(o, "node", json_str(st, "nodeName"), &bad);
        put_str(o, "agent_id", json_str(st, "sandboxID"), &bad);
        if (bad)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

int gw_cluster_timeout_for(json_object *sbx, uint64_t now_us, uint64_t timeout_s, char *buf,
                           size_t len, char *err, size_t errlen)
{
        json_object *st = json_field(sbx, "status");
        const char *expires = json_str(st, "expiresAt");
        const char *cur = json_str(json_field(sbx, "spec"), "timeout");
        const char *started = json_str(st, "startedAt");
        const char *created = json_str(json_field(sbx, "metadata"), "creationTimestamp");
        uint64_t origin = now_us, t = 0;
        long cur_s = 0;
        if (expires && cur && parse_rfc3339_us(expires, &t) == 0 &&
            parse_duration_s(cur, &cur_s) == 0 && t >= (uint64_t) cur_s * 1000000u)
                origin = t - (uint64_t) cur_s * 1000000u;
        else if ((started && parse_rfc3339_us(started, &t) == 0) ||
                 (created && parse_rfc3339_us(created, &t) == 0))
                origin = t;
        uint64_t age_s = now_us > origin ? (now_us - origin + 999999u) / 1000000u : 0;
        uint64_t want = age_s + timeout_s;
        if (want > GW_CLUSTER_TIMEOUT_MAX_S) {
                (void) snprintf(err, errlen,
                                "the sandbox would live longer than 168h (spec.timeout's limit) "
                                "counted from its creation");
                return -EINVAL;
        }
        (void) snprintf(buf, len, "%" PRIu64 "s", want < 1 ? 1 : want);
        return 0;
}

static const char *ready_field(json_object *st, const char *field)
{
        json_object *conds = json_field(st, "conditions");
        for (size_t i = 0; i < array_len(conds); i++) {
                json_object *c = json_object_array_get_idx(conds, i);
                const char *type = json_str(c, "type");
                if (type && streq(type, "Ready"))
                        return json_str(c, field);
        }
        return NULL;
}

int gw_cluster_ready(json_object *sbx, char *err, size_t errlen)
{
        json_object *st = json_field(sbx, "status");
        const char *phase = json_str(st, "phase");
        const char *reason = ready_field(st, "reason");
        const char *msg = ready_field(st, "message");
        if (json_field(json_field(sbx, "metadata"), "deletionTimestamp")) {
                (void) snprintf(err, errlen, "the Sandbox was deleted while it was being created");
                return -ECANCELED;
        }
        if (phase && (streq(phase, "Running") || streq(phase, "Paused")))
                return 1;
        /* ImagePullFailed too: the operator retries it for a declared
         * Sandbox (the registry may be fixed), but an E2B create is a caller
         * waiting for an answer, who may try again. */
        bool refused =
                reason && (streq(reason, "InvalidTemplate") || streq(reason, "InvalidSpec") ||
                           streq(reason, "CreateFailed") || streq(reason, "ImagePullFailed"));
        if (refused || (phase && (streq(phase, "Failed") || streq(phase, "Expired")))) {
                (void) snprintf(err, errlen, "the sandbox could not be created: %s%s%s",
                                reason ? reason : phase, msg && *msg ? ": " : "", msg ? msg : "");
                return refused ? -EINVAL : -EIO;
        }
        (void) snprintf(err, errlen, "the Sandbox is %s%s%s%s", phase ? phase : "not yet placed",
                        reason ? " (" : "", reason ? reason : "", reason ? ")" : "");
        if (msg && *msg)
                (void) snprintf(err + strlen(err), errlen - strlen(err), ": %s", msg);
        return 0;
}
