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
const K8sResource operator_templates = {"sandpit.dev", "v1alpha1", "sandboxtemplates", true};

/* The built-in defaults (docs/crd-reference.md), the agent's too. */
static const SandboxResources defaults = {1.0, (uint64_t) 512 << 20, (uint64_t) 512 << 20, 512};

void sandbox_template_done(SandboxTemplateInfo *t)
{
        free(t->agent_template);
        free(t->image);
        free(t->pull_secret);
        json_putp(&t->resources);
        json_putp(&t->obj);
        json_putp(&t->start_cmd);
        free(t->runtime);
        json_putp(&t->build);
        free(t->built_image);
        *t = (SandboxTemplateInfo){0};
}

/* spec.startCmd {command | shell | fromImage, waitForPort, readyTimeout, user,
 * cwd} as the agent's start_cmd (docs/templates.md); NULL in *ret when there
 * is none. -EINVAL with msg for a readyTimeout that is not a duration; the
 * rest the CRD's schema checks, and the agent. */
static int start_cmd_json(json_object *spec, const char *name, json_object **ret, char *msg,
                          size_t msglen)
{
        json_object *sc = json_field(spec, "startCmd");
        *ret = NULL;
        if (!sc || !json_object_is_type(sc, json_type_object))
                return 0;
        cleanup_json json_object *o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        static const struct {
                const char *crd, *agent;
        } keys[] = {
                {"command", "command"},           {"shell", "command"}, {"fromImage", "from_image"},
                {"waitForPort", "wait_for_port"}, {"user", "user"},     {"cwd", "cwd"}};
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
                json_object *v = json_field(sc, keys[i].crd);
                if (v)
                        json_object_object_add(o, keys[i].agent, json_object_get(v));
        }
        const char *rt = json_str(sc, "readyTimeout");
        if (rt) {
                long s = 0;
                if (parse_duration_s(rt, &s) < 0) {
                        snprintf(msg, msglen,
                                 "SandboxTemplate %s: spec.startCmd.readyTimeout: not a duration",
                                 name);
                        return -EINVAL;
                }
                json_object_object_add(o, "ready_timeout", json_object_new_int64(s < 1 ? 1 : s));
        }
        *ret = TAKE_PTR(o);
        return 0;
}

int sandbox_template_resolve(Operator *op, json_object *sbx, SandboxTemplateInfo *ret, char *msg,
                             size_t msglen)
{
        const char *name = json_object_get_string(json_field(json_field(sbx, "spec"), "template"));
        if (!name || !*name) {
                snprintf(msg, msglen, "spec.template is empty");
                return -EINVAL;
        }
        cleanup_json json_object *tmpl = NULL;
        K8sError e = {0};
        int r = k8s_get(op->client, &operator_templates, k8s_obj_namespace(sbx), name, &tmpl, &e);
        if (r == -ENOENT) {
                /* No object: the agents' own template of that name (docs/operator.md). */
                *ret = (SandboxTemplateInfo){.agent_template = strdup(name)};
                return ret->agent_template ? 0 : -ENOMEM;
        }
        if (r < 0)
                return r;
        return sandbox_template_from_object(tmpl, ret, msg, msglen);
}

int sandbox_template_from_object(json_object *tmpl, SandboxTemplateInfo *ret, char *msg,
                                 size_t msglen)
{
        const char *name = k8s_obj_name(tmpl);
        int r = 0;
        json_object *spec = json_field(tmpl, "spec"), *source = json_field(spec, "source");
        const char *path = json_str(source, "path"), *image = json_str(source, "image");
        const char *runtime = json_str(spec, "runtime");
        cleanup_json json_object *start_cmd = NULL;
        if ((r = start_cmd_json(spec, name, &start_cmd, msg, msglen)) < 0)
                return r;
        json_object *build = json_field(source, "build");
        if (build && ((image && *image) || path)) {
                snprintf(msg, msglen,
                         "SandboxTemplate %s: source.build goes with neither image nor path", name);
                return -ENOTSUP;
        }
        if (build) {
                /* The agents build it before each create (template-build.c). */
                if ((r = template_build_check(build, name, msg, msglen)) < 0)
                        return r;
                const char *uid = k8s_obj_uid(tmpl);
                if (!uid || !*uid) {
                        snprintf(msg, msglen, "SandboxTemplate %s: no metadata.uid", name);
                        return -EINVAL;
                }
                *ret = (SandboxTemplateInfo){
                        .resources = json_object_get(json_field(spec, "resources")),
                        .found = true,
                        .obj = json_object_get(tmpl),
                        .start_cmd = TAKE_PTR(start_cmd),
                        .runtime = runtime && *runtime ? strdup(runtime) : NULL,
                        .build = json_object_get(build),
                };
                if (asprintf(&ret->built_image, TEMPLATE_BUILD_PREFIX "%s:latest", uid) < 0)
                        ret->built_image = NULL;
                else if (asprintf(&ret->agent_template, "image:%s", ret->built_image) < 0)
                        ret->agent_template = NULL;
                if (!ret->built_image || !ret->agent_template ||
                    (runtime && *runtime && !ret->runtime)) {
                        sandbox_template_done(ret);
                        return -ENOMEM;
                }
                return 0;
        }
        if (image && *image) {
                /* The agents pull it (docs/images.md); a bad reference is theirs to refuse. */
                const char *secret = json_str(source, "pullSecret");
                *ret = (SandboxTemplateInfo){
                        .image = strdup(image),
                        .resources = json_object_get(json_field(spec, "resources")),
                        .found = true,
                        .pull_secret = secret && *secret ? strdup(secret) : NULL,
                        .obj = json_object_get(tmpl),
                        .start_cmd = TAKE_PTR(start_cmd),
                        .runtime = runtime && *runtime ? strdup(runtime) : NULL,
                };
                if (!ret->image || (secret && *secret && !ret->pull_secret) ||
                    (runtime && *runtime && !ret->runtime) ||
                    asprintf(&ret->agent_template, "image:%s", image) < 0) {
                        ret->agent_template = NULL;
                        sandbox_template_done(ret);
                        return -ENOMEM;
                }
                return 0;
        }
        if (!path) {
                snprintf(msg, msglen, "SandboxTemplate %s: none of source.path, image and build",
                         name);
                return -ENOTSUP;
        }
        /* source.path is <the agents' --templates-dir>/<name> on every node. */
        size_t n = strlen(path);
        while (n > 1 && path[n - 1] == '/')
                n--;
        const char *base = path + n;
        while (base > path && base[-1] != '/')
                base--;
        if (base == path + n) {
                snprintf(msg, msglen, "SandboxTemplate %s: source.path %s names no directory", name,
                         path);
                return -ENOTSUP;
        }
        *ret = (SandboxTemplateInfo){
                .agent_template = strndup(base, (size_t) (path + n - base)),
                .resources = json_object_get(json_field(spec, "resources")),
                .found = true,
                .obj = json_object_get(tmpl),
                .start_cmd = TAKE_PTR(start_cmd),
                .runtime = runtime && *runtime ? strdup(runtime) : NULL,
        };
        if (!ret->agent_template || (runtime && *runtime && !ret->runtime)) {
                sandbox_template_done(ret);
                return -ENOMEM;
        }
        return 0;
}

/* A resource: the Sandbox's, else the template's, else NULL. */
static json_object *resource(json_object *sbx, const SandboxTemplateInfo *t, const char *name)
{
        json_object *v = json_field(json_field(json_field(sbx, "spec"), "resources"), name);
        return v ? v : t ? json_field(t->resources, name) : NULL;
}

int sandbox_resources(json_object *sbx, const SandboxTemplateInfo *t, SandboxResources *ret)
{
        SandboxResources r = defaults;
        json_object *cpu = resource(sbx, t, "cpu"), *mem = resource(sbx, t, "memory");
        json_object *disk = resource(sbx, t, "disk"), *pids = resource(sbx, t, "pids");
        if (cpu && quantity_cpu_from_json(cpu, &r.cpu) < 0)
                return -EINVAL;
        if (mem && quantity_bytes_from_json(mem, &r.memory) < 0)
                return -EINVAL;
        if (disk && quantity_bytes_from_json(disk, &r.disk) < 0)
                return -EINVAL;
        if (pids) {
                if (!json_object_is_type(pids, json_type_int))
                        return -EINVAL;
                r.pids = json_object_get_int64(pids);
        }
        *ret = r;
        return 0;
}

int sandbox_placed_resources(json_object *sbx, SandboxResources *ret)
{
        json_object *st = json_field(json_field(sbx, "status"), "resources");
        SandboxResources r = {0};
        if (st && quantity_cpu_from_json(json_field(st, "cpu"), &r.cpu) == 0 &&
            quantity_bytes_from_json(json_field(st, "memory"), &r.memory) == 0) {
                *ret = r;
                return 0;
        }
        return sandbox_resources(sbx, NULL, ret);
}

json_object *sandbox_resources_json(const SandboxResources *r)
{
        char cpu[32], mem[32], disk[32];
        quantity_format_cpu(r->cpu, cpu, sizeof(cpu));
        quantity_format_bytes(r->memory, mem, sizeof(mem));
        quantity_format_bytes(r->disk, disk, sizeof(disk));
        json_object *o = json_object_new_object();
        json_object_object_add(o, "cpu", json_object_new_string(cpu));
        json_object_object_add(o, "memory", json_object_new_string(mem));
        json_object_object_add(o, "disk", json_object_new_string(disk));
        json_object_object_add(o, "pids", json_object_new_int64(r->pids));
        return o;
}

#define DOCKERCONFIGJSON "kubernetes.io/dockerconfigjson"

int sandbox_pull_auth(Operator *op, const char *ns, const char *name, json_object **ret, char *msg,
                      size_t msglen)
{
        cleanup_json json_object *secret = NULL;
        K8sError e = {0};
        int r = k8s_get(op->client, &operator_secrets, ns, name, &secret, &e);
        if (r == -ENOENT) {
                snprintf(msg, msglen, "pullSecret %s: no Secret %s in namespace %s", name, name,
                         ns);
                return -ENOENT;
        }
        if (r < 0)
                return r;
        const char *type = json_str(secret, "type");
        json_object *v = json_field(json_field(secret, "data"), ".dockerconfigjson");
        if (!type || !streq(type, DOCKERCONFIGJSON) || !v) {
                snprintf(msg, msglen,
                         "pullSecret %s: the Secret is of type %s, not " DOCKERCONFIGJSON
                         " with a .dockerconfigjson key",
                         name, type ? type : "(none)");
                return -EINVAL;
        }
        uint8_t *raw = NULL;
        size_t len = 0;
        json_object *doc = NULL;
        r = base64_decode(json_object_get_string(v), &raw, &len);
        if (r == 0) {
                if (json_parse_strict((const char *) raw, len, 16, &doc, NULL) < 0 ||
                    !json_object_is_type(doc, json_type_object) ||
                    !json_object_is_type(json_field(doc, "auths"), json_type_object)) {
                        json_putp(&doc);
                        r = -EINVAL;
                }
                explicit_bzero(raw, len);
                free(raw);
        }
        if (r < 0) {
                snprintf(msg, msglen,
                         "pullSecret %s: .dockerconfigjson is not a docker config with an "
                         "\"auths\" object",
                         name);
                return -EINVAL;
        }
        *ret = doc;
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
        json_object *v = json_field(json_field(secret, "data"), key);
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
        json_object *env = json_field(json_field(sbx, "spec"), "env");
        json_object *plain = json_object_new_object(), *secret = json_object_new_object();
        json_object_object_add(body, "env", plain);
        json_object_object_add(body, "secret_env", secret);
        size_t n = env ? json_object_array_length(env) : 0;
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(env, i);
                const char *name = json_object_get_string(json_field(e, "name"));
                json_object *ref = json_field(json_field(e, "valueFrom"), "secretKeyRef");
                if (!name)
                        continue;
                if (!ref) {
                        json_object *v = json_field(e, "value");
                        json_object_object_add(
                                plain, name,
                                json_object_new_string(v ? json_object_get_string(v) : ""));
                        continue;
                }
                const char *sname = json_object_get_string(json_field(ref, "name"));
                const char *skey = json_object_get_string(json_field(ref, "key"));
                json_object *opt = json_field(ref, "optional");
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

/* The CRD spells a port's protocol as Kubernetes does ("TCP", "UDP", the
 * default "TCP"); the agent takes "tcp", "udp" or "any". Anything else is
 * passed on for the agent to refuse. */
static json_object *agent_protocol(const char *p)
{
        if (streq(p, "TCP") || streq(p, "tcp"))
                return json_object_new_string("tcp");
        if (streq(p, "UDP") || streq(p, "udp"))
                return json_object_new_string("udp");
        return json_object_new_string(p);
}

json_object *sandbox_network_json(json_object *sbx)
{
        json_object *egress = json_field(json_field(json_field(sbx, "spec"), "network"), "egress");
        const char *policy = json_object_get_string(json_field(egress, "policy"));
        if (!policy || streq(policy, "Deny"))
                return NULL;
        json_object *net = json_object_new_object();
        if (streq(policy, "Allow")) {
                json_object_object_add(net, "egress", json_object_new_string("allow"));
                return net;
        }
        json_object_object_add(net, "egress", json_object_new_string("allowlist"));
        json_object *allow = json_object_new_array();
        json_object_object_add(net, "allow", allow);
        json_object *list = json_field(egress, "allow");
        size_t n = list ? json_object_array_length(list) : 0;
        for (size_t i = 0; i < n; i++) {
                json_object *a = json_object_array_get_idx(list, i);
                const char *cidr = json_object_get_string(json_field(a, "cidr"));
                const char *host = json_object_get_string(json_field(a, "host"));
                json_object *ports = json_field(a, "ports");
                size_t np = ports ? json_object_array_length(ports) : 0;
                /* The agent takes one protocol an entry: one entry a port. */
                for (size_t j = 0; j < (np ? np : 1); j++) {
                        json_object *entry = json_object_new_object();
                        /* host (a DNS name or "*.domain") or cidr: one of them. */
                        json_object_object_add(entry, host ? "host" : "cidr",
                                               json_object_new_string(host   ? host
                                                                      : cidr ? cidr
                                                                             : ""));
                        if (np) {
                                json_object *p = json_object_array_get_idx(ports, j);
                                json_object *proto = json_field(p, "protocol");
                                json_object *pl = json_object_new_array();
                                json_object_array_add(pl, json_object_new_int(json_object_get_int(
                                                                  json_field(p, "port"))));
                                json_object_object_add(entry, "ports", pl);
                                if (proto)
                                        json_object_object_add(
                                                entry, "protocol",
                                                agent_protocol(json_object_get_string(proto)));
                        }
                        json_object_array_add(allow, entry);
                }
        }
        return net;
}

int sandbox_create_body(Operator *op, json_object *sbx, const SandboxTemplateInfo *t,
                        const char *id, json_object **ret, char *msg, size_t msglen)
{
        json_object *spec = json_field(sbx, "spec");
        SandboxResources res = {0};
        if (sandbox_resources(sbx, t, &res) < 0) {
                snprintf(msg, msglen, "spec.resources: not a quantity");
                return -EINVAL;
        }
        cleanup_json json_object *body = json_object_new_object();
        json_object_object_add(body, "id", json_object_new_string(id));
        json_object_object_add(body, "template", json_object_new_string(t->agent_template));
        json_object_object_add(body, "cpu", json_object_new_double(res.cpu));
        json_object_object_add(body, "memory", json_object_new_uint64(res.memory));
        json_object_object_add(body, "pids", json_object_new_int64(res.pids));
        json_object_object_add(body, "disk", json_object_new_uint64(res.disk));
        long timeout = 300;
        json_object *tv = json_field(spec, "timeout");
        if (tv && parse_duration_s(json_object_get_string(tv), &timeout) < 0) {
                snprintf(msg, msglen, "spec.timeout: not a duration");
                return -EINVAL;
        }
        json_object_object_add(body, "timeout", json_object_new_int64(timeout < 1 ? 1 : timeout));
        /* expiryPolicy Pause: the agent pauses it at the deadline by itself too,
         * so a slow or absent operator never lets it be deleted instead. */
        const char *policy = json_str(spec, "expiryPolicy");
        if (policy && streq(policy, "Pause"))
                json_object_object_add(body, "on_timeout", json_object_new_string("pause"));
        json_object *user = json_field(spec, "user");
        if (user)
                json_object_object_add(body, "user",
                                       json_object_new_string(json_object_get_string(user)));
        /* The user's labels, then the operator's marks (keys under
         * sandpit.dev/ are reserved: a user's are dropped). */
        json_object *labels = json_object_new_object();
        json_object_object_add(body, "labels", labels);
        json_object *user_labels = json_field(spec, "labels");
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
        json_object *net = sandbox_network_json(sbx);
        if (net)
                json_object_object_add(body, "network", net);
        if (t && t->start_cmd)
                json_object_object_add(body, "start_cmd", json_object_get(t->start_cmd));
        if (t && t->runtime)
                json_object_object_add(body, "runtime", json_object_new_string(t->runtime));
        int r = add_env(op, sbx, body, msg, msglen);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(body);
        return 0;
}
