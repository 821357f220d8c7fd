/* Reconciliation of one Sandbox (docs/operator.md): finalizer first, then a
 * node, then the sandbox on that node's agent, then status; deletion
 * through the finalizer. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator.h"
#include "sandpit/k8s-event.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

const K8sResource operator_sandboxes = {"sandpit.dev", "v1alpha1", "sandboxes", true};

#define AGENT_TIMEOUT_MS 120000L
#define BUILD_TIMEOUT_MS 1800000L /* a template's build: its RUN steps */
#define BUILD_WAIT_MS    1000L    /* requeue while the same build runs for another Sandbox */

static bool has_finalizer(json_object *obj)
{
        json_object *f = json_field(json_field(obj, "metadata"), "finalizers");
        size_t n = f ? json_object_array_length(f) : 0;
        for (size_t i = 0; i < n; i++)
                if (streq(json_object_get_string(json_object_array_get_idx(f, i)),
                          OPERATOR_FINALIZER))
                        return true;
        return false;
}

static void post_event(Operator *op, json_object *obj, const char *type, const char *reason,
                       const char *note)
{
        if (leader_check(op->leader) < 0)
                return;
        K8sError e = {0};
        int r = k8s_event_post(op->client, obj,
                               &(K8sEventInfo){.type = type,
                                               .reason = reason,
                                               .note = note,
                                               .reporting_controller = OPERATOR_CONTROLLER,
                                               .reporting_instance = op->instance},
                               NULL, &e);
        if (r < 0)
                log_warning_errno(r, "Failed to post event %s: %s", reason, e.message);
}

/* Writes the finalizer list (with ours added or removed) conditionally on
 * the object's resourceVersion; *obj becomes the server's answer. */
static int set_finalizer(Operator *op, json_object **obj, bool add)
{
        if (leader_check(op->leader) < 0)
                return -ECANCELED;
        json_object *old = json_field(json_field(*obj, "metadata"), "finalizers");
        json_object *list = json_object_new_array();
        size_t n = old ? json_object_array_length(old) : 0;
        for (size_t i = 0; i < n; i++) {
                const char *f = json_object_get_string(json_object_array_get_idx(old, i));
                if (!streq(f, OPERATOR_FINALIZER))
                        json_object_array_add(list, json_object_new_string(f));
        }
        if (add)
                json_object_array_add(list, json_object_new_string(OPERATOR_FINALIZER));
        cleanup_json json_object *patch = json_object_new_object();
        json_object *meta = json_object_new_object();
        json_object_object_add(patch, "metadata", meta);
        json_object_object_add(meta, "finalizers", list);
        json_object_object_add(meta, "resourceVersion",
                               json_object_new_string(k8s_obj_resource_version(*obj)));
        json_object *out = NULL;
        K8sError e = {0};
        int r = k8s_patch(op->client, &operator_sandboxes, k8s_obj_namespace(*obj),
                          k8s_obj_name(*obj), NULL, K8S_PATCH_MERGE, patch, &out, &e);
        if (r < 0)
                return log_warning_errno(r, "Failed to %s the finalizer of %s/%s: %s",
                                         add ? "add" : "remove", k8s_obj_namespace(*obj),
                                         k8s_obj_name(*obj), e.message);
        json_object_put(*obj);
        *obj = out;
        return 0;
}

/* Patches status to st when it differs from the object's; *obj becomes the
 * server's answer. */
static int write_status(Operator *op, json_object **obj, json_object *st)
{
        json_object *cur = json_field(*obj, "status");
        if (cur && json_object_equal(cur, st))
                return 0;
        if (leader_check(op->leader) < 0)
                return -ECANCELED;
        cleanup_json json_object *patch = json_object_new_object();
        json_object_object_add(patch, "status", json_object_get(st));
        json_object *out = NULL;
        K8sError e = {0};
        int r = k8s_patch(op->client, &operator_sandboxes, k8s_obj_namespace(*obj),
                          k8s_obj_name(*obj), "status", K8S_PATCH_MERGE, patch, &out, &e);
        if (r < 0)
                return log_warning_errno(r, "Failed to patch the status of %s/%s: %s",
                                         k8s_obj_namespace(*obj), k8s_obj_name(*obj), e.message);
        json_object_put(*obj);
        *obj = out;
        return 0;
}

/* How to reach agent a; -ECANCELED once this term is over (an agent call
 * acts on the node). */
static int agent_conn(Operator *op, const AgentInfo *a, AgentConn *ret)
{
        if (leader_check(op->leader) < 0)
                return -ECANCELED;
        *ret = (AgentConn){
                .endpoint = a->endpoint, .token = op->agent_token, .timeout_ms = AGENT_TIMEOUT_MS};
        return 0;
}

static int64_t generation(json_object *obj)
{
        json_object *g = json_field(json_field(obj, "metadata"), "generation");
        return g ? json_object_get_int64(g) : 0;
}

static long finalize(Operator *op, json_object **obj, const char *key)
{
        if (!has_finalizer(*obj))
                return 0;
        json_object *st = json_field(*obj, "status");
        const char *node = json_str(st, "nodeName");
        const char *id = json_str(st, "sandboxID");
        if (node && id) {
                AgentInfo a = {0};
                int r = agents_find(op, node, &a);
                if (r >= 0) {
                        AgentConn c = {0};
                        AgentClientError ae = {0};
                        r = agent_conn(op, &a, &c);
                        if (r >= 0)
                                r = op->agent->remove(&c, id, &ae);
                        bool live = a.live;
                        agent_info_done(&a);
                        if (agent_error_not_found(r, &ae))
                                r = 0;
                        if (r < 0 && ae.status) {
                                log_warning("Agent %s refused to delete %s: %ld %s", node, id,
                                            ae.status, agent_error_message(&ae));
                                return -EAGAIN;
                        }
                        /* A lost node has nothing left to clean that we could reach. */
                        if (r < 0 && live)
                                return r;
                } else
                        log_warning(
                                "Sandbox %s: node %s has no agent registered; nothing to delete",
                                key, node);
        }
        int r = set_finalizer(op, obj, false);
        if (r < 0)
                return r;
        scheduler_forget(op, key);
        log_info("Sandbox %s: deleted from its node, finalizer removed", key);
        return 0;
}

/* Whether obj's condition type on the API server is cstatus with reason
 * already: read afresh, as the informer's cache may lag behind this
 * operator's own last status write, and a reconcile that follows that write
 * would say again what it said (docs/operator.md, "Events"). Asked only when
 * the cache says the reason is new, so once per change; a failed read is a
 * no (an Event twice rather than none). */
static bool said_already(Operator *op, const K8sResource *res, json_object *obj, const char *type,
                         const char *cstatus, const char *reason)
{
        cleanup_json json_object *fresh = NULL;
        K8sError e = {0};
        int r = k8s_get(op->client, res, k8s_obj_namespace(obj), k8s_obj_name(obj), &fresh, &e);
        if (r < 0) {
                log_debug_errno(r, "Failed to read %s/%s afresh: %s", k8s_obj_namespace(obj),
                                k8s_obj_name(obj), e.message);
                return false;
        }
        const char *uid = k8s_obj_uid(obj), *fuid = k8s_obj_uid(fresh);
        if (!uid || !fuid || !streq(uid, fuid))
                return false;
        json_object *st = json_field(fresh, "status");
        const char *s = status_condition_status(st, type);
        const char *why = status_condition_reason(st, type);
        return s && streq(s, cstatus) && why && streq(why, reason);
}

/* Ready=False with reason and an Event the first time; retried with backoff. */
static long wait_for_user(Operator *op, json_object **obj, json_object *st, const char *reason,
                          const char *msg)
{
        int64_t gen = generation(*obj);
        /* Borrowed from st: read before st changes. */
        const char *was = status_condition_reason(st, "Ready");
        bool first = (!was || !streq(was, reason)) &&
                     !said_already(op, &operator_sandboxes, *obj, "Ready", "False", reason);
        status_set_condition(st, "Ready", "False", reason, msg, gen);
        int r = write_status(op, obj, st);
        if (first)
                post_event(op, *obj, "Warning", reason, msg);
        log_info("Sandbox %s/%s: %s", k8s_obj_namespace(*obj), k8s_obj_name(*obj), msg);
        return r < 0 ? r : -EAGAIN;
}

/* Not placed yet: a node with room, recorded in status before anything is
 * created there (so a retry goes to the same node with the same id). */
static long schedule(Operator *op, json_object **obj, json_object *st, const char *key)
{
        char msg[512];
        SandboxTemplateInfo t = {0};
        int r = sandbox_template_resolve(op, *obj, &t, msg, sizeof(msg));
        if (r == -ENOTSUP || r == -EINVAL) {
                json_object_object_add(st, "phase", json_object_new_string("Pending"));
                return wait_for_user(op, obj, st, "InvalidTemplate", msg);
        }
        if (r < 0)
                return r;
        SandboxResources req = {0};
        r = sandbox_resources(*obj, &t, &req);
        char pool[64];
        bool pooled = pools_for_sandbox(*obj, &t, pool, sizeof(pool)) >= 0;
        cleanup_free char *image = TAKE_PTR(t.image);
        bool build = t.build != NULL;
        sandbox_template_done(&t);
        if (r < 0)
                return -EINVAL;
        AgentInfo a = {0};
        int64_t gen = generation(*obj);
        r = scheduler_place(op, key, req.cpu, req.memory, pooled ? pool : NULL, &a, msg,
                            sizeof(msg));
        if (r == -ENOSPC) {
                const char *was = status_condition_status(st, "Scheduled");
                /* st was read afresh (reconcile_sandbox): not the cache's. */
                bool first = !was || !streq(was, "False");
                json_object_object_add(st, "phase", json_object_new_string("Pending"));
                json_object_object_add(st, "observedGeneration", json_object_new_int64(gen));
                status_set_condition(st, "Scheduled", "False", "Unschedulable", msg, gen);
                status_set_condition(st, "Ready", "False", "Unschedulable", msg, gen);
                r = write_status(op, obj, st);
                if (first)
                        post_event(op, *obj, "Warning", "Unschedulable", msg);
                log_info("Sandbox %s: %s", key, msg);
                return r < 0 ? r : -EAGAIN;
        }
        if (r < 0)
                return r;
        cleanup_free char *id = NULL;
        if (asprintf(&id, SANDBOX_ID_PREFIX "%s", k8s_obj_uid(*obj)) < 0) {
                agent_info_done(&a);
                return -ENOMEM;
        }
        snprintf(msg, sizeof(msg), "placed on node %s", a.node);
        json_object_object_add(st, "phase", json_object_new_string("Pending"));
        json_object_object_add(st, "nodeName", json_object_new_string(a.node));
        json_object_object_add(st, "sandboxID", json_object_new_string(id));
        json_object_object_add(st, "resources", sandbox_resources_json(&req));
        json_object_object_add(st, "observedGeneration", json_object_new_int64(gen));
        status_set_condition(st, "Scheduled", "True", "Scheduled", msg, gen);
        if (image) {
                /* The create pulls it unless the node has it (docs/images.md). */
                char pmsg[768];
                snprintf(pmsg, sizeof(pmsg), "node %s pulls image %s unless it has it", a.node,
                         image);
                status_set_condition(st, "Ready", "False", "PullingImage", pmsg, gen);
        } else if (build) {
                /* The node builds the template's image before the create. */
                char bmsg[512];
                snprintf(bmsg, sizeof(bmsg),
                         "node %s builds the template's image (cached steps run nothing)", a.node);
                status_set_condition(st, "Ready", "False", "BuildingTemplate", bmsg, gen);
        } else {
                status_set_condition(st, "Ready", "False", "Creating",
                                     "the sandbox is being created", gen);
        }
        agent_info_done(&a);
        r = write_status(op, obj, st);
        if (r < 0) {
                scheduler_forget(op, key);
                return r;
        }
        post_event(op, *obj, "Normal", "Scheduled", msg);
        return 0;
}

static long fail(Operator *op, json_object **obj, json_object *st, const char *phase,
                 const char *reason, const char *msg)
{
        int64_t gen = generation(*obj);
        bool first = !said_already(op, &operator_sandboxes, *obj, "Ready", "False", reason);
        json_object_object_add(st, "phase", json_object_new_string(phase));
        json_object_object_add(st, "observedGeneration", json_object_new_int64(gen));
        status_set_condition(st, "Ready", "False", reason, msg, gen);
        int r = write_status(op, obj, st);
        if (first)
                post_event(op, *obj, "Warning", reason, msg);
        return r;
}

/* Running status from the agent's sandbox object. */
static void status_from_agent(json_object *st, json_object *sandbox, int64_t gen)
{
        const char *state = json_str(sandbox, "state");
        bool paused = state && streq(state, "paused");
        json_object_object_add(st, "phase", json_object_new_string(paused ? "Paused" : "Running"));
        const char *started = json_str(sandbox, "started_at");
        const char *expires = json_str(sandbox, "expires_at");
        if (started && !json_field(st, "startedAt"))
                json_object_object_add(st, "startedAt", json_object_new_string(started));
        if (expires)
                json_object_object_add(st, "expiresAt", json_object_new_string(expires));
        const char *ip = json_str(json_field(sandbox, "network"), "ip");
        if (ip)
                json_object_object_add(st, "ip", json_object_new_string(ip));
        json_object_object_add(st, "observedGeneration", json_object_new_int64(gen));
        if (paused) {
                status_set_condition(st, "Ready", "False", "Paused", "the sandbox is paused", gen);
                status_set_condition(st, "Paused", "True", "Paused",
                                     "every process of the sandbox is frozen", gen);
        } else {
                status_set_condition(st, "Ready", "True", "Running", "the sandbox runs commands",
                                     gen);
                if (status_condition_status(st, "Paused"))
                        status_set_condition(st, "Paused", "False", "Resumed", "", gen);
        }
}

/* The status obj (a SandboxTemplate) should have after a pull or a build:
 * its own with Ready cstatus/reason and the image's digest and size;
 * *changed when Ready's status or reason differs from obj's. */
static json_object *template_status_want(const SandboxTemplateInfo *t, json_object *obj,
                                         const char *cstatus, const char *reason, const char *msg,
                                         json_object *img, bool *changed)
{
        json_object *cur = json_field(obj, "status");
        json_object *st = NULL;
        if (cur ? json_object_deep_copy(cur, &st, NULL) < 0 : !(st = json_object_new_object()))
                return NULL;
        const char *was = status_condition_status(st, "Ready");
        const char *was_reason = status_condition_reason(st, "Ready");
        *changed = !was || !streq(was, cstatus) || !was_reason || !streq(was_reason, reason);
        int64_t gen = generation(obj);
        status_set_condition(st, "Ready", cstatus, reason, msg, gen);
        json_object_object_add(st, "observedGeneration", json_object_new_int64(gen));
        const char *digest = json_str(img, "digest");
        json_object *size = json_field(img, "size");
        if (digest)
                json_object_object_add(st, "digest", json_object_new_string(digest));
        if (size && json_object_is_type(size, json_type_int))
                json_object_object_add(st, "size",
                                       json_object_new_int64(json_object_get_int64(size)));
        if (t->built_image)
                json_object_object_add(st, "image", json_object_new_string(t->built_image));
        return st;
}

#define TEMPLATE_STATUS_TRIES 4

/* The SandboxTemplate's status after a pull for one of its Sandboxes: Ready
 * with the image's digest and size, or not with why; an Event when Ready
 * changes. Best effort: the Sandbox's own status says the same. Compared
 * with the cache first; once that says there is something to write, with the
 * template read afresh, and written conditionally on what was read: the
 * cache may lag behind this operator's last write, and the Sandboxes of one
 * template reconcile at the same time on other workers, so only the write
 * that changes Ready posts the Event. */
static void template_status(Operator *op, const SandboxTemplateInfo *t, const char *cstatus,
                            const char *reason, const char *msg, json_object *img)
{
        if (!t->obj)
                return;
        bool changed = false;
        cleanup_json json_object *st =
                template_status_want(t, t->obj, cstatus, reason, msg, img, &changed);
        json_object *cur = json_field(t->obj, "status");
        if (!st || (cur && json_object_equal(cur, st)))
                return;
        const char *ns = k8s_obj_namespace(t->obj), *name = k8s_obj_name(t->obj);
        for (int i = 0; i < TEMPLATE_STATUS_TRIES; i++) {
                cleanup_json json_object *fresh = NULL;
                K8sError e = {0};
                int r = k8s_get(op->client, &operator_templates, ns, name, &fresh, &e);
                if (r < 0) {
                        log_warning_errno(r, "Failed to read SandboxTemplate %s/%s: %s", ns, name,
                                          e.message);
                        return;
                }
                json_object_put(st);
                st = template_status_want(t, fresh, cstatus, reason, msg, img, &changed);
                if (!st)
                        return;
                cur = json_field(fresh, "status");
                if (cur && json_object_equal(cur, st)) {
                        /* Written already (the cache lagged): said already. */
                        json_object_object_add(t->obj, "status", json_object_get(st));
                        return;
                }
                if (leader_check(op->leader) < 0)
                        return;
                cleanup_json json_object *patch = json_object_new_object();
                json_object *meta = json_object_new_object();
                json_object_object_add(patch, "metadata", meta);
                json_object_object_add(meta, "resourceVersion",
                                       json_object_new_string(k8s_obj_resource_version(fresh)));
                json_object_object_add(patch, "status", json_object_get(st));
                cleanup_json json_object *out = NULL;
                e = (K8sError){0};
                r = k8s_patch(op->client, &operator_templates, ns, name, "status", K8S_PATCH_MERGE,
                              patch, &out, &e);
                if (r == -EBUSY)
                        continue; /* written meanwhile (another Sandbox's reconcile) */
                if (r < 0) {
                        log_warning_errno(r,
                                          "Failed to patch the status of SandboxTemplate %s/%s: %s",
                                          ns, name, e.message);
                        return;
                }
                /* What the next call compares with (a build: Building, then Built). */
                json_object_object_add(t->obj, "status", json_object_get(st));
                if (changed)
                        post_event(op, t->obj,
                                   streq(cstatus, "True") || streq(reason, "Building") ? "Normal"
                                                                                       : "Warning",
                                   reason, msg);
                return;
        }
        log_warning("SandboxTemplate %s/%s: status not written after %d conflicts", ns, name,
                    TEMPLATE_STATUS_TRIES);
}

/* An image template: the node pulls the image (or checks its copy against
 * the template's credentials, docs/images.md) before the create, with the
 * credentials of source.pullSecret, else the node's own. 0 when it has it. */
static long pull_image(Operator *op, json_object **obj, json_object *st, const AgentInfo *a,
                       const SandboxTemplateInfo *t)
{
        char msg[768];
        cleanup_json json_object *auth = NULL, *req = NULL, *img = NULL;
        if (t->pull_secret) {
                int r = sandbox_pull_auth(op, k8s_obj_namespace(*obj), t->pull_secret, &auth, msg,
                                          sizeof(msg));
                if (r == -ENOENT || r == -EINVAL) {
                        const char *reason =
                                r == -ENOENT ? "PullSecretNotFound" : "InvalidPullSecret";
                        template_status(op, t, "False", reason, msg, NULL);
                        return wait_for_user(op, obj, st, reason, msg);
                }
                if (r < 0)
                        return r;
        }
        req = json_object_new_object();
        json_object_object_add(req, "image", json_object_new_string(t->image));
        json_object_object_add(req, "refresh", json_object_new_boolean(false));
        json_object_object_add(req, "verify", json_object_new_boolean(true));
        if (auth)
                json_object_object_add(req, "auth", json_object_get(auth));
        AgentConn c = {0};
        AgentClientError ae = {0};
        int r = agent_conn(op, a, &c);
        if (r < 0)
                return r;
        r = op->agent->image_pull(&c, req, &img, &ae);
        if (r < 0 &&
            (ae.status == 400 || ae.status == 401 || ae.status == 403 || ae.status == 404 ||
             ae.status == 413 || ae.status == 415 || ae.status == 502)) {
                /* A bad reference, a denied, unknown or unusable image: said,
                 * and retried (the registry, the Secret or the template may be
                 * fixed). */
                snprintf(msg, sizeof(msg), "node %s cannot pull the image: %s", a->node,
                         agent_error_message(&ae));
                template_status(op, t, "False", "ImagePullFailed", msg, NULL);
                return wait_for_user(op, obj, st, "ImagePullFailed", msg);
        }
        if (r < 0) {
                if (!ae.status)
                        return r;
                log_warning("Sandbox %s/%s: node %s answered the pull %ld: %s",
                            k8s_obj_namespace(*obj), k8s_obj_name(*obj), a->node, ae.status,
                            agent_error_message(&ae));
                return -EAGAIN;
        }
        snprintf(msg, sizeof(msg), "node %s has image %s as %s", a->node, t->image,
                 json_str(img, "digest") ?: "?");
        template_status(op, t, "True", "Pulled", msg, img);
        return 0;
}

/* A build template: the node builds its image (template-build.c) before the
 * create; every step is cached on the node, so a build with nothing changed
 * runs nothing. 0 when the node has the image of the template as it is. */
static long build_template(Operator *op, json_object **obj, json_object *st, const AgentInfo *a,
                           const SandboxTemplateInfo *t)
{
        char msg[1536];
        int64_t tgen = generation(t->obj);
        json_object *tst = json_field(t->obj, "status");
        json_object *og = json_field(tst, "observedGeneration");
        /* A generation no build has tried yet (a failed one stays failed
         * until a build of it works: no Event at every retry). */
        if (!status_condition_status(tst, "Ready") || !og || json_object_get_int64(og) != tgen) {
                snprintf(msg, sizeof(msg), "building generation %lld of the template on node %s",
                         (long long) tgen, a->node);
                template_status(op, t, "False", "Building", msg, NULL);
        }
        cleanup_json json_object *cm = NULL;
        const char *ctx = json_str(t->build, "context");
        int r = 0;
        if (ctx) {
                K8sError e = {0};
                r = k8s_get(op->client, &operator_configmaps, k8s_obj_namespace(t->obj), ctx, &cm,
                            &e);
                if (r == -ENOENT) {
                        snprintf(msg, sizeof(msg),
                                 "source.build.context: no ConfigMap %s in namespace %s", ctx,
                                 k8s_obj_namespace(t->obj));
                        template_status(op, t, "False", "ContextNotFound", msg, NULL);
                        return wait_for_user(op, obj, st, "ContextNotFound", msg);
                }
                if (r < 0)
                        return log_warning_errno(r, "Failed to read ConfigMap %s/%s: %s",
                                                 k8s_obj_namespace(t->obj), ctx, e.message);
        }
        cleanup_close int fd = -1;
        r = template_build_context(json_str(t->build, "dockerfile"), cm, &fd, msg, sizeof(msg));
        if (r == -EINVAL) {
                template_status(op, t, "False", "InvalidContext", msg, NULL);
                return wait_for_user(op, obj, st, "InvalidContext", msg);
        }
        if (r < 0)
                return r;
        cleanup_json json_object *params = template_build_params(t);
        if (!params)
                return -ENOMEM;
        AgentConn c = {0};
        AgentClientError ae = {0};
        TemplateBuildResult res = {0};
        if ((r = agent_conn(op, a, &c)) < 0)
                return r;
        c.timeout_ms = BUILD_TIMEOUT_MS;
        r = template_build_begin(a->node, t->built_image);
        if (r == -EBUSY)
                return BUILD_WAIT_MS; /* another Sandbox's build of it on this node */
        if (r < 0)
                return r;
        r = op->agent->template_build(&c, params, fd, template_build_event, &res, &ae);
        template_build_end(a->node, t->built_image);
        if (r < 0 && (ae.status == 400 || ae.status == 413)) {
                /* The Dockerfile does not parse, or the context is too big. */
                snprintf(res.error, sizeof(res.error), "%s", agent_error_message(&ae));
        } else if (r < 0) {
                if (!ae.status)
                        return r;
                log_warning("Sandbox %s/%s: node %s answered the build %ld: %s",
                            k8s_obj_namespace(*obj), k8s_obj_name(*obj), a->node, ae.status,
                            agent_error_message(&ae));
                return -EAGAIN;
        }
        if (res.error[0]) {
                /* Said on both, and retried with backoff (the ConfigMap or the
                 * template may be fixed; a change of the template is a new
                 * generation). */
                snprintf(msg, sizeof(msg), "node %s: %s", a->node, res.error);
                template_status(op, t, "False", "BuildFailed", msg, NULL);
                return wait_for_user(op, obj, st, "BuildFailed", msg);
        }
        if (!res.done) {
                log_warning("Sandbox %s/%s: node %s's build ended without a result",
                            k8s_obj_namespace(*obj), k8s_obj_name(*obj), a->node);
                return -EAGAIN;
        }
        cleanup_json json_object *img = json_object_new_object();
        if (!img)
                return -ENOMEM;
        json_object_object_add(img, "digest", json_object_new_string(res.digest));
        snprintf(msg, sizeof(msg), "generation %lld built as %s", (long long) tgen, res.digest);
        template_status(op, t, "True", "Built", msg, img);
        return 0;
}

static long create_on_agent(Operator *op, json_object **obj, json_object *st, const char *key,
                            const AgentInfo *a)
{
        const char *id = json_str(st, "sandboxID");
        char msg[768];
        cleanup_json json_object *body = NULL;
        SandboxTemplateInfo t = {0};
        int r = sandbox_template_resolve(op, *obj, &t, msg, sizeof(msg));
        if (r == -ENOTSUP || r == -EINVAL)
                return wait_for_user(op, obj, st, "InvalidTemplate", msg);
        if (r < 0)
                return r;
        if (t.image && (r = (int) pull_image(op, obj, st, a, &t)) != 0) {
                sandbox_template_done(&t);
                return r;
        }
        if (t.build && (r = (int) build_template(op, obj, st, a, &t)) != 0) {
                sandbox_template_done(&t);
                return r;
        }
        r = sandbox_create_body(op, *obj, &t, id, &body, msg, sizeof(msg));
        bool image = t.image != NULL;
        sandbox_template_done(&t);
        if (r == -ENOENT)
                return wait_for_user(op, obj, st, "SecretNotFound", msg);
        if (r == -EINVAL)
                return fail(op, obj, st, "Failed", "InvalidSpec", msg);
        if (r < 0)
                return r;

        AgentConn c = {0};
        AgentClientError ae = {0};
        cleanup_json json_object *resp = NULL;
        r = agent_conn(op, a, &c);
        if (r < 0)
                return r;
        r = op->agent->create(&c, body, &resp, &ae);
        if (r == -EEXIST) {
                /* Created by an earlier attempt that did not get to write status. */
                r = agent_conn(op, a, &c);
                if (r < 0)
                        return r;
                r = op->agent->get(&c, id, &resp, &ae);
                if (r < 0 && !ae.status)
                        return r;
                if (r < 0) {
                        log_warning("Sandbox %s: id %s in use on %s but not readable: %ld", key, id,
                                    a->node, ae.status);
                        return -EAGAIN;
                }
                log_info("Sandbox %s: already on %s as %s: adopted", key, a->node, id);
        } else if (r == -EBUSY && ae.status == 409) {
                /* Given up for a DELETE of the id that came meanwhile: the agent
                 * left nothing to adopt. The next pass sees why (the object
                 * going away) or creates again. */
                log_info("Sandbox %s: create on %s cancelled by a delete: %s", key, a->node,
                         agent_error_message(&ae));
                return -EAGAIN;
        } else if (image && (ae.status == 403 || ae.status == 404 || ae.status == 413 ||
                             ae.status == 415 || ae.status == 502)) {
                /* The image went bad between the pull above and the create (a
                 * GC, a registry that now denies it): said, and retried. A 400
                 * is the sandbox's own (a start command that exited): below. */
                snprintf(msg, sizeof(msg), "node %s cannot pull the image: %s", a->node,
                         agent_error_message(&ae));
                return wait_for_user(op, obj, st, "ImagePullFailed", msg);
        } else if (ae.status == 501) {
                /* The node lacks the template's runtime (spec.runtime): said,
                 * and retried (installing it on the node is the fix). */
                snprintf(msg, sizeof(msg), "node %s: %s", a->node, agent_error_message(&ae));
                return wait_for_user(op, obj, st, "RuntimeUnavailable", msg);
        } else if (r == -EINVAL && ae.status) {
                snprintf(msg, sizeof(msg), "node %s refused the sandbox: %s", a->node,
                         agent_error_message(&ae));
                return fail(op, obj, st, "Failed", "CreateFailed", msg);
        } else if (!ae.status && (r == -EKEYREJECTED || r == -EPROTONOSUPPORT)) {
                /* The agent's certificate does not verify (--agent-ca), or its
                 * address is plain HTTP: said, and retried (a fix is the
                 * operator's or the agent's configuration). */
                snprintf(msg, sizeof(msg), "node %s's agent at %s: %s", a->node, a->endpoint,
                         ae.message[0] ? ae.message : strerror(-r));
                return wait_for_user(op, obj, st,
                                     r == -EKEYREJECTED ? "AgentTLSFailed" : "AgentInsecureHTTP",
                                     msg);
        } else if (r < 0) {
                if (!ae.status)
                        return r;
                log_warning("Sandbox %s: node %s answered %ld: %s", key, a->node, ae.status,
                            agent_error_message(&ae));
                return -EAGAIN;
        }
        status_from_agent(st, resp, generation(*obj));
        r = write_status(op, obj, st);
        if (r < 0)
                return r;
        post_event(op, *obj, "Normal", "Started", "the sandbox runs commands");
        log_info("Sandbox %s: running on %s as %s", key, a->node, id);
        return 0;
}

/* At the deadline: the sandbox goes from its node, then the object is kept
 * as Expired or deleted, as spec.expiryPolicy asks. */
static long expire(Operator *op, json_object **obj, json_object *st, const char *key,
                   const AgentInfo *a)
{
        const char *id = json_str(st, "sandboxID");
        AgentConn c = {0};
        AgentClientError ae = {0};
        int r = agent_conn(op, a, &c);
        if (r < 0)
                return r;
        r = op->agent->remove(&c, id, &ae);
        if (r < 0 && !agent_error_not_found(r, &ae)) {
                if (!ae.status)
                        return r;
                log_warning("Sandbox %s: node %s refused to delete it at its deadline: %ld %s", key,
                            a->node, ae.status, agent_error_message(&ae));
                return -EAGAIN;
        }
        const char *policy = json_str(json_field(*obj, "spec"), "expiryPolicy");
        scheduler_forget(op, key);
        if (policy && streq(policy, "Delete")) {
                K8sError e = {0};
                if (leader_check(op->leader) < 0)
                        return -ECANCELED;
                r = k8s_delete(op->client, &operator_sandboxes, k8s_obj_namespace(*obj),
                               k8s_obj_name(*obj), &(K8sPreconditions){.uid = k8s_obj_uid(*obj)},
                               NULL, &e);
                if (r < 0 && r != -ENOENT)
                        return log_warning_errno(r, "Failed to delete expired %s: %s", key,
                                                 e.message);
                log_info("Sandbox %s: expired, deleted (expiryPolicy Delete)", key);
                return 0;
        }
        int64_t gen = generation(*obj);
        json_object_object_add(st, "phase", json_object_new_string("Expired"));
        json_object_object_add(st, "observedGeneration", json_object_new_int64(gen));
        status_set_condition(st, "Ready", "False", "Expired",
                             "the sandbox was stopped at its deadline", gen);
        status_set_condition(st, "Expired", "True", "DeadlineReached",
                             "the sandbox was stopped at its deadline", gen);
        r = write_status(op, obj, st);
        if (r < 0)
                return r;
        post_event(op, *obj, "Normal", "Expired", "the sandbox was stopped at its deadline");
        log_info("Sandbox %s: expired (expiryPolicy Retain)", key);
        return 0;
}

uint64_t sandbox_wanted_deadline_us(json_object *sbx, json_object *sandbox)
{
        const char *created = json_str(sandbox, "created_at");
        const char *timeout = json_str(json_field(sbx, "spec"), "timeout");
        uint64_t start = 0;
        long t = 300;
        if (!created || parse_rfc3339_us(created, &start) < 0 ||
            (timeout && parse_duration_s(timeout, &t) < 0))
                return 0;
        return start + (uint64_t) (t < 1 ? 1 : t) * 1000000u;
}

/* The agent's deadline is in whole seconds from the moment it is set. */
#define DEADLINE_SLACK_US 1500000u

/* spec.timeout changed: the agent's deadline moves to want; *sb becomes
 * the agent's answer. */
static int move_deadline(Operator *op, json_object **obj, const char *key, const AgentInfo *a,
                         const char *id, uint64_t want, json_object **sb)
{
        AgentConn c = {0};
        AgentClientError ae = {0};
        cleanup_json json_object *resp = NULL;
        int r = agent_conn(op, a, &c);
        if (r < 0)
                return r;
        r = op->agent->set_timeout(&c, id, want, &resp, &ae);
        if (r < 0 && !ae.status)
                return r;
        const char *expires = r < 0 ? NULL : json_str(resp, "expires_at");
        if (!expires) {
                log_warning("Sandbox %s: cannot move its deadline on %s: %ld %s", key, a->node,
                            ae.status, agent_error_message(&ae));
                return -EAGAIN;
        }
        char msg[128];
        snprintf(msg, sizeof(msg), "spec.timeout changed: the sandbox now expires at %s", expires);
        post_event(op, *obj, "Normal", "TimeoutChanged", msg);
        log_info("Sandbox %s: %s", key, msg);
        json_object_put(*sb);
        *sb = TAKE_PTR(resp);
        return 0;
}

static bool pause_at_deadline(json_object *obj)
{
        const char *policy = json_str(json_field(obj, "spec"), "expiryPolicy");
        return policy && streq(policy, "Pause");
}

/* expiryPolicy Pause: whether the sandbox is past its deadline and so must be
 * paused. want is the deadline spec.timeout gives, cur the agent's. The
 * agent pauses it at its own deadline (whole seconds, so a moment before
 * want): while the agent says so and spec.timeout has not moved past that,
 * it stays paused; moving spec.timeout past now resumes it. */
static bool deadline_reached(json_object *obj, json_object *sb, uint64_t want, uint64_t cur,
                             uint64_t now)
{
        if (!pause_at_deadline(obj) || !want)
                return false;
        if (want <= now)
                return true;
        json_object *dp = json_field(sb, "deadline_paused");
        return dp && json_object_get_boolean(dp) && want <= cur + DEADLINE_SLACK_US;
}

static long sync_running(Operator *op, json_object **obj, json_object *st, const char *key,
                         const AgentInfo *a)
{
        const char *id = json_str(st, "sandboxID");
        const char *expires = json_str(st, "expiresAt");
        uint64_t deadline = 0, now = now_realtime_us();
        if (expires && parse_rfc3339_us(expires, &deadline) >= 0 && now >= deadline &&
            !pause_at_deadline(*obj))
                return expire(op, obj, st, key, a);

        AgentConn c = {0};
        AgentClientError ae = {0};
        cleanup_json json_object *sb = NULL;
        int r = agent_conn(op, a, &c);
        if (r < 0)
                return r;
        r = op->agent->get(&c, id, &sb, &ae);
        if (r < 0 && !ae.status)
                return r;
        if (agent_error_not_found(r, &ae)) {
                /* The agent removes a sandbox at its deadline by itself. */
                if (deadline && now_realtime_us() + 2000000u >= deadline)
                        return expire(op, obj, st, key, a);
                char msg[256];
                snprintf(msg, sizeof(msg), "node %s no longer has sandbox %s", a->node, id);
                scheduler_forget(op, key);
                return fail(op, obj, st, "Failed", "SandboxLost", msg);
        }
        if (r < 0)
                return -EAGAIN;
        const char *state = json_str(sb, "state");
        if (state && streq(state, "exited")) {
                scheduler_forget(op, key);
                return fail(op, obj, st, "Failed", "SandboxExited",
                            "the sandbox's init process died");
        }
        /* spec.timeout is counted from the sandbox's creation on its node. */
        uint64_t want = sandbox_wanted_deadline_us(*obj, sb), cur = 0;
        const char *cur_s = json_str(sb, "expires_at");
        if (!cur_s || parse_rfc3339_us(cur_s, &cur) < 0)
                cur = 0;
        bool at_deadline = deadline_reached(*obj, sb, want, cur, now_realtime_us());
        json_object *p = json_field(json_field(*obj, "spec"), "paused");
        bool want_paused = (p && json_object_get_boolean(p)) || at_deadline;
        bool paused = state && streq(state, "paused");
        const char *was = status_condition_reason(st, "Paused");
        /* Said once, whoever paused it (the agent does at its own deadline). */
        bool tell_deadline = at_deadline && !(was && streq(was, "DeadlineReached"));
        if (want_paused != paused) {
                cleanup_json json_object *resp = NULL;
                r = agent_conn(op, a, &c);
                if (r < 0)
                        return r;
                /* The deadline keeps running while paused: the lifetime counts
                 * from startedAt (docs/crd-reference.md). */
                r = want_paused ? op->agent->pause(&c, id, at_deadline, &resp, &ae)
                                : op->agent->resume(&c, id, &resp, &ae);
                if (r < 0 && !ae.status)
                        return r;
                if (r < 0) {
                        log_warning("Sandbox %s: %s on %s: %ld %s", key,
                                    want_paused ? "pause" : "resume", a->node, ae.status,
                                    agent_error_message(&ae));
                        return -EAGAIN;
                }
                json_object_put(sb);
                sb = TAKE_PTR(resp);
                if (!at_deadline)
                        post_event(op, *obj, "Normal", want_paused ? "Paused" : "Resumed",
                                   want_paused ? "the sandbox is paused"
                                               : "the sandbox is running again");
        }
        if (tell_deadline)
                post_event(op, *obj, "Normal", "Paused",
                           "the sandbox is paused at its deadline (expiryPolicy Pause)");
        /* When spec.timeout changed, the agent's deadline follows (not while
         * paused at it: the deadline is what keeps it paused). */
        cur_s = json_str(sb, "expires_at");
        if (!at_deadline && want && cur_s && parse_rfc3339_us(cur_s, &cur) >= 0 &&
            (want > cur + DEADLINE_SLACK_US || want + DEADLINE_SLACK_US < cur)) {
                if (want <= now_realtime_us())
                        return expire(op, obj, st, key, a); /* shortened into the past */
                r = move_deadline(op, obj, key, a, id, want, &sb);
                if (r < 0)
                        return r;
        }
        cur_s = json_str(sb, "expires_at");
        if (cur_s)
                (void) parse_rfc3339_us(cur_s, &deadline);
        status_from_agent(st, sb, generation(*obj));
        if (at_deadline)
                status_set_condition(st, "Paused", "True", "DeadlineReached",
                                     "paused at its deadline (expiryPolicy Pause); move "
                                     "spec.timeout past now to resume it",
                                     generation(*obj));
        r = write_status(op, obj, st);
        if (r < 0)
                return r;
        if (at_deadline)
                return 0; /* until spec.timeout moves */
        /* Back at the deadline. */
        now = now_realtime_us();
        if (deadline > now)
                return (long) ((deadline - now) / 1000u) + 1;
        return 0;
}

long reconcile_sandbox(Operator *op, const char *key)
{
        if (leader_check(op->leader) < 0)
                return -ECANCELED;
        cleanup_json json_object *obj = NULL;
        int r = k8s_informer_get(op->sandboxes, key, &obj);
        if (r == -ENOENT) {
                scheduler_forget(op, key);
                return 0;
        }
        if (r < 0)
                return r;
        if (json_field(json_field(obj, "metadata"), "deletionTimestamp"))
                return finalize(op, &obj, key);
        if (!has_finalizer(obj)) {
                r = set_finalizer(op, &obj, true);
                if (r < 0)
                        return r;
        }
        json_object *cur = json_field(obj, "status");
        cleanup_json json_object *st = cur ? json_object_get(cur) : json_object_new_object();
        /* Worked on as a copy: obj is replaced by each write's answer. */
        json_object *copy = NULL;
        if (json_object_deep_copy(st, &copy, NULL) < 0)
                return -ENOMEM;
        json_object_put(st);
        st = copy;

        const char *phase = json_str(st, "phase");
        if (phase && (streq(phase, "Failed") || streq(phase, "Expired")))
                return 0;
        if (!json_str(st, "nodeName")) {
                /* The cache may lag behind our own last write: read afresh. */
                json_object *fresh = NULL;
                K8sError e = {0};
                r = k8s_get(op->client, &operator_sandboxes, k8s_obj_namespace(obj),
                            k8s_obj_name(obj), &fresh, &e);
                if (r < 0)
                        return r;
                json_object_put(obj);
                obj = fresh;
                json_object *fst = json_field(obj, "status");
                if (fst && json_str(fst, "nodeName"))
                        return -EAGAIN; /* placed meanwhile: the cache will catch up */
                if (fst) {
                        json_object_put(st);
                        st = NULL;
                        if (json_object_deep_copy(fst, &st, NULL) < 0)
                                return -ENOMEM;
                }
                r = (int) schedule(op, &obj, st, key);
                if (r < 0)
                        return r;
        }
        const char *node = json_str(st, "nodeName");
        bool created = json_str(st, "startedAt") != NULL;
        AgentInfo a = {0};
        r = agents_find(op, node, &a);
        if (r == -ENOENT) {
                /* Deregistered: maybe an agent restarting, which re-adopts its
                 * sandboxes. Lost only once that has taken too long. */
                uint64_t absent_ms = agents_absent_ms(op, node);
                if (absent_ms < op->node_lost_grace_ms) {
                        agent_info_done(&a);
                        log_debug("Sandbox %s: node %s has no agent registered for %" PRIu64
                                  " ms; NodeLost after %" PRIu64 " ms",
                                  key, node, absent_ms, op->node_lost_grace_ms);
                        uint64_t left = op->node_lost_grace_ms - absent_ms;
                        return (long) (left < 5000 ? left : 5000) + 1;
                }
        }
        if (r < 0 || !a.live) {
                agent_info_done(&a);
                char msg[256];
                snprintf(msg, sizeof(msg), "node %s %s", node,
                         r < 0 ? "has no agent registered" : "stopped renewing its lease");
                scheduler_forget(op, key);
                return fail(op, &obj, st, "Failed", "NodeLost", msg);
        }
        long ret = created ? sync_running(op, &obj, st, key, &a)
                           : create_on_agent(op, &obj, st, key, &a);
        agent_info_done(&a);
        return ret;
}
