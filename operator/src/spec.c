/* From a Sandbox's spec to the agent's POST /v1/sandboxes request. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator.h"
#include "sandpit/macro.h"
#include "sandpit/quantity.h"
#include "sandpit/util.h"

const K8sResource operator_secrets = {"", "v1", "secrets", true};

#define DEFAULT_CPU    1.0
#define DEFAULT_MEMORY ((uint64_t) 512 * 1024 * 1024)

static json_object *field(json_object *o, const char *name)
{
        json_object *v = NULL;
        return o && json_object_object_get_ex(o, name, &v) ? v : NULL;
}

int sandbox_requests(json_object *sbx, SandboxRequests *ret)
{
        json_object *res = field(field(sbx, "spec"), "resources");
        SandboxRequests r = {DEFAULT_CPU, DEFAULT_MEMORY};
        json_object *cpu = field(res, "cpu"), *mem = field(res, "memory");
        if (cpu && quantity_cpu_from_json(cpu, &r.cpu) < 0)
                return -EINVAL;
        if (mem && quantity_bytes_from_json(mem, &r.memory) < 0)
                return -EINVAL;
        *ret = r;
        return 0;
}

/* The value of key in Secret ns/name; -ENOENT when either is missing. */
static int read_secret(Operator *op, const char *ns, const char *name, const char *key,
                       json_object **ret)
{
        cleanup_json json_object *secret = NULL;
        K8sError e = {0};
        int r = k8s_get(op->client, &operator_secrets, ns, name, &secret, &e);
        if (r < 0)
                return r;
        json_object *v = field(field(secret, "data"), key);
        if (!v)
                return -ENOENT;
        uint8_t *raw = NULL;
        size_t len = 0;
        r = base64_decode(json_object_get_string(v), &raw, &len);
        if (r < 0)
                return r;
        *ret = json_object_new_string_len((const char *) raw, (int) len);
        explicit_bzero(raw, len);
        free(raw);
        return *ret ? 0 : -ENOMEM;
}

static int add_env(Operator *op, json_object *sbx, json_object *body, char *msg, size_t msglen)
{
        json_object *env = field(field(sbx, "spec"), "env");
        json_object *plain = json_object_new_object(), *secret = json_object_new_object();
        json_object_object_add(body, "env", plain);
        json_object_object_add(body, "secret_env", secret);
        size_t n = env ? json_object_array_length(env) : 0;
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(env, i);
                const char *name = json_object_get_string(field(e, "name"));
                json_object *ref = field(field(e, "valueFrom"), "secretKeyRef");
                if (!name)
                        continue;
                if (!ref) {
                        json_object *v = field(e, "value");
                        json_object_object_add(
                                plain, name,
                                json_object_new_string(v ? json_object_get_string(v) : ""));
                        continue;
                }
                const char *sname = json_object_get_string(field(ref, "name"));
                const char *skey = json_object_get_string(field(ref, "key"));
                json_object *opt = field(ref, "optional");
                json_object *value = NULL;
                int r = sname && skey ? read_secret(op, k8s_obj_namespace(sbx), sname, skey, &value)
                                      : -EINVAL;
                if (r == -ENOENT && opt && json_object_get_boolean(opt))
                        continue;
                if (r < 0) {
                        snprintf(msg, msglen, "env %s: secret %s key %s: %s", name,
                                 sname ? sname : "?", skey ? skey : "?",
                                 r == -ENOENT ? "not found" : strerror(-r));
                        return r;
                }
                json_object_object_add(secret, name, value);
        }
        return 0;
}

static void add_network(json_object *sbx, json_object *body)
{
        json_object *egress = field(field(field(sbx, "spec"), "network"), "egress");
        const char *policy = json_object_get_string(field(egress, "policy"));
        if (!policy || streq(policy, "Deny"))
                return;
        json_object *net = json_object_new_object();
        json_object_object_add(body, "network", net);
        if (streq(policy, "Allow")) {
                json_object_object_add(net, "egress", json_object_new_string("allow"));
                return;
        }
        json_object_object_add(net, "egress", json_object_new_string("allowlist"));
        json_object *allow = json_object_new_array();
        json_object_object_add(net, "allow", allow);
        json_object *list = field(egress, "allow");
        size_t n = list ? json_object_array_length(list) : 0;
        for (size_t i = 0; i < n; i++) {
                json_object *a = json_object_array_get_idx(list, i);
                const char *cidr = json_object_get_string(field(a, "cidr"));
                json_object *ports = field(a, "ports");
                size_t np = ports ? json_object_array_length(ports) : 0;
                /* The agent takes one protocol an entry: one entry a port. */
                for (size_t j = 0; j < (np ? np : 1); j++) {
                        json_object *entry = json_object_new_object();
                        json_object_object_add(entry, "cidr",
                                               json_object_new_string(cidr ? cidr : ""));
                        if (np) {
                                json_object *p = json_object_array_get_idx(ports, j);
                                json_object *proto = field(p, "protocol");
                                json_object *pl = json_object_new_array();
                                json_object_array_add(pl, json_object_new_int(json_object_get_int(
                                                                  field(p, "port"))));
                                json_object_object_add(entry, "ports", pl);
                                if (proto)
                                        json_object_object_add(
                                                entry, "protocol",
                                                json_object_new_string(
                                                        json_object_get_string(proto)));
                        }
                        json_object_array_add(allow, entry);
                }
        }
}

int sandbox_create_body(Operator *op, json_object *sbx, const char *id, json_object **ret,
                        char *msg, size_t msglen)
{
        json_object *spec = field(sbx, "spec");
        SandboxRequests req = {0};
        if (sandbox_requests(sbx, &req) < 0) {
                snprintf(msg, msglen, "spec.resources: not a quantity");
                return -EINVAL;
        }
        cleanup_json json_object *body = json_object_new_object();
        json_object_object_add(body, "id", json_object_new_string(id));
        json_object *tmpl = field(spec, "template");
        json_object_object_add(
                body, "template",
                json_object_new_string(tmpl ? json_object_get_string(tmpl) : "default"));
        json_object_object_add(body, "cpu", json_object_new_double(req.cpu));
        json_object_object_add(body, "memory", json_object_new_uint64(req.memory));
        json_object *res = field(spec, "resources");
        json_object *pids = field(res, "pids"), *disk = field(res, "disk");
        if (pids)
                json_object_object_add(body, "pids",
                                       json_object_new_int64(json_object_get_int64(pids)));
        if (disk) {
                uint64_t d = 0;
                if (quantity_bytes_from_json(disk, &d) < 0) {
                        snprintf(msg, msglen, "spec.resources.disk: not a quantity");
                        return -EINVAL;
                }
                json_object_object_add(body, "disk", json_object_new_uint64(d));
        }
        long timeout = 300;
        json_object *t = field(spec, "timeout");
        if (t && parse_duration_s(json_object_get_string(t), &timeout) < 0) {
                snprintf(msg, msglen, "spec.timeout: not a duration");
                return -EINVAL;
        }
        json_object_object_add(body, "timeout", json_object_new_int64(timeout < 1 ? 1 : timeout));
        json_object *user = field(spec, "user");
        if (user)
                json_object_object_add(body, "user",
                                       json_object_new_string(json_object_get_string(user)));
        /* The user's labels, then the operator's marks (keys under
         * sandpit.dev/ are reserved: a user's are dropped). */
        json_object *labels = json_object_new_object();
        json_object_object_add(body, "labels", labels);
        json_object *user_labels = field(spec, "labels");
        if (user_labels && json_object_is_type(user_labels, json_type_object)) {
                json_object_object_foreach(user_labels, lk, lv) {
                        if (strncmp(lk, LABEL_RESERVED_PREFIX, strlen(LABEL_RESERVED_PREFIX)) != 0)
                                json_object_object_add(labels, lk, json_object_get(lv));
                }
        }
        json_object_object_add(labels, LABEL_MANAGED_BY,
                               json_object_new_string(LABEL_MANAGED_BY_VALUE));
        json_object_object_add(labels, LABEL_NAMESPACE,
                               json_object_new_string(k8s_obj_namespace(sbx)));
        json_object_object_add(labels, LABEL_NAME, json_object_new_string(k8s_obj_name(sbx)));
        add_network(sbx, body);
        int r = add_env(op, sbx, body, msg, msglen);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(body);
        return 0;
}
