/* Unit tests of reconcile_sandbox() (operator/src/reconcile.c) with a fake
 * agent behind Operator.agent (records every call, acts like an agent with
 * one sandbox table, fails a call when told to) and a fake Kubernetes API:
 * the informers' caches and the client's get, merge patch, delete and
 * Events are replaced with -Wl,--wrap (test_operator_reconcile.ldflags) by
 * one in-memory store, which applies merge patches as the API server does
 * (resourceVersion preconditions, status subresource, deletion once the last
 * finalizer goes). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../operator/src/operator.h"
#include "sandpit/k8s-event.h"
#include "sandpit/k8s-lease.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "test-support.h"

#define UID          "0b6f9d4e-2c1a-4c8e-9f3e-2d5f6a7b8c9d"
#define TEMPLATE_UID "5d1e7a2b-8c3f-4e9a-b6d0-1f2e3a4b5c6d"
#define ID           "sbx-" UID
#define KEY          "default/box"
#define NODE         "n1"
#define ENDPOINT     "http://198.18.0.1:7443"
#define S            UINT64_C(1000000) /* one second in µs */

/* ------------------------------------------------------------ the store */

/* Stand-ins for the two informers: only their addresses are used. */
static char sandboxes_informer, leases_informer, templates_informer;
#define SANDBOXES ((K8sInformer *) (void *) &sandboxes_informer)
#define LEASES    ((K8sInformer *) (void *) &leases_informer)
#define TEMPLATES ((K8sInformer *) (void *) &templates_informer)

static const char *informer_resource(K8sInformer *inf)
{
        return inf == SANDBOXES ? "sandboxes" : inf == TEMPLATES ? "sandboxtemplates" : "leases";
}

typedef struct {
        const char *resource; /* plural: "sandboxes", "leases", "secrets", ... */
        char *key;            /* namespace/name */
        json_object *obj;
} Stored;

static struct {
        Stored objs[16];
        size_t n;
        long rv;              /* the last resourceVersion handed out */
        unsigned patches;     /* successful patches */
        unsigned deletes;     /* k8s_delete calls */
        char events[16][256]; /* "Type Reason: note" */
        size_t nevents;
        /* What the informers answer instead of the store while set (a cache
         * that lags behind the writes): per informer_resource(). */
        struct {
                const char *resource;
                json_object *obj;
        } stale[2];
} api;

static Stored *find(const char *resource, const char *key)
{
        for (size_t i = 0; i < api.n; i++)
                if (api.objs[i].obj && streq(api.objs[i].resource, resource) &&
                    streq(api.objs[i].key, key))
                        return &api.objs[i];
        return NULL;
}

static json_object *copy(json_object *o)
{
        json_object *c = NULL;
        assert_int_equal(json_object_deep_copy(o, &c, NULL), 0);
        return c;
}

static void bump_rv(json_object *obj)
{
        char rv[32];
        snprintf(rv, sizeof(rv), "%ld", ++api.rv);
        json_object_object_add(json_field(obj, "metadata"), "resourceVersion",
                               json_object_new_string(rv));
}

/* Stores obj (taken) under its namespace/name. */
static void put(const char *resource, json_object *obj)
{
        char *key = NULL;
        assert_int_equal(k8s_obj_key(obj, &key), 0);
        bump_rv(obj);
        Stored *s = find(resource, key);
        if (s) {
                free(key);
                json_object_put(s->obj);
                s->obj = obj;
                return;
        }
        assert_true(api.n < sizeof(api.objs) / sizeof(api.objs[0]));
        api.objs[api.n++] = (Stored){resource, key, obj};
}

static void drop(Stored *s)
{
        json_object_put(s->obj);
        free(s->key);
        *s = (Stored){0};
}

/* The stored Sandbox (borrowed), or NULL when it is gone. */
static json_object *sandbox(void)
{
        Stored *s = find("sandboxes", KEY);
        return s ? s->obj : NULL;
}

static json_object *status(void)
{
        return json_field(sandbox(), "status");
}

static const char *phase(void)
{
        return json_str(status(), "phase");
}

/* RFC 7386 merge patch of target (an object) with patch. */
static void merge(json_object *target, json_object *patch)
{
        json_object_object_foreach(patch, k, v) {
                json_object *cur = json_field(target, k);
                if (!v)
                        json_object_object_del(target, k);
                else if (cur && json_object_is_type(cur, json_type_object) &&
                         json_object_is_type(v, json_type_object))
                        merge(cur, v);
                else
                        json_object_object_add(target, k, copy(v));
        }
}

/* The names -Wl,--wrap looks for. NOLINTBEGIN(bugprone-reserved-identifier) */
int __wrap_k8s_informer_get(K8sInformer *inf, const char *key, json_object **ret);
int __wrap_k8s_informer_get(K8sInformer *inf, const char *key, json_object **ret)
{
        for (size_t i = 0; i < sizeof(api.stale) / sizeof(api.stale[0]); i++)
                if (api.stale[i].obj && streq(api.stale[i].resource, informer_resource(inf))) {
                        *ret = copy(api.stale[i].obj);
                        return 0;
                }
        Stored *s = find(informer_resource(inf), key);
        if (!s)
                return -ENOENT;
        *ret = copy(s->obj);
        return 0;
}

int __wrap_k8s_informer_keys(K8sInformer *inf, char ***ret);
int __wrap_k8s_informer_keys(K8sInformer *inf, char ***ret)
{
        const char *resource = informer_resource(inf);
        char **keys = calloc(api.n + 1, sizeof(char *));
        assert_non_null(keys);
        size_t n = 0;
        for (size_t i = 0; i < api.n; i++)
                if (api.objs[i].obj && streq(api.objs[i].resource, resource))
                        keys[n++] = strdup(api.objs[i].key);
        *ret = keys;
        return 0;
}

bool __wrap_k8s_informer_has_synced(K8sInformer *inf);
bool __wrap_k8s_informer_has_synced(K8sInformer *inf)
{
        (void) inf;
        return true;
}

/* The stored object ns/name of res, or NULL with the API server's 404 in err. */
static Stored *lookup(const K8sResource *res, const char *ns, const char *name, K8sError *err)
{
        char key[256];
        snprintf(key, sizeof(key), "%s/%s", ns, name);
        Stored *s = find(res->resource, key);
        if (!s && err) {
                err->status = 404;
                snprintf(err->message, sizeof(err->message), "not found");
        }
        return s;
}

int __wrap_k8s_get(K8sClient *c, const K8sResource *res, const char *ns, const char *name,
                   json_object **ret, K8sError *err);
int __wrap_k8s_get(K8sClient *c, const K8sResource *res, const char *ns, const char *name,
                   json_object **ret, K8sError *err)
{
        (void) c;
        Stored *s = lookup(res, ns, name, err);
        if (!s)
                return -ENOENT;
        *ret = copy(s->obj);
        return 0;
}

int __wrap_k8s_patch(K8sClient *c, const K8sResource *res, const char *ns, const char *name,
                     const char *subresource, K8sPatchType type, json_object *patch,
                     json_object **ret, K8sError *err);
int __wrap_k8s_patch(K8sClient *c, const K8sResource *res, const char *ns, const char *name,
                     const char *subresource, K8sPatchType type, json_object *patch,
                     json_object **ret, K8sError *err)
{
        (void) c;
        assert_int_equal(type, K8S_PATCH_MERGE);
        Stored *s = lookup(res, ns, name, err);
        if (!s)
                return -ENOENT;
        const char *want_rv = json_str(json_field(patch, "metadata"), "resourceVersion");
        if (want_rv && !streq(want_rv, k8s_obj_resource_version(s->obj))) {
                err->status = 409;
                return -EBUSY;
        }
        if (subresource) {
                /* The status subresource takes status only. */
                assert_string_equal(subresource, "status");
                json_object *st = json_field(patch, "status");
                if (!json_field(s->obj, "status"))
                        json_object_object_add(s->obj, "status", json_object_new_object());
                merge(json_field(s->obj, "status"), st);
        } else {
                cleanup_json json_object *p = copy(patch);
                json_object_object_del(p, "status");
                merge(s->obj, p);
        }
        bump_rv(s->obj);
        api.patches++;
        json_object *meta = json_field(s->obj, "metadata");
        json_object *fin = json_field(meta, "finalizers");
        if (json_field(meta, "deletionTimestamp") && (!fin || !json_object_array_length(fin))) {
                /* The last finalizer went: the API server deletes the object. */
                *ret = copy(s->obj);
                drop(s);
                return 0;
        }
        *ret = copy(s->obj);
        return 0;
}

int __wrap_k8s_delete(K8sClient *c, const K8sResource *res, const char *ns, const char *name,
                      const K8sPreconditions *pre, json_object **ret, K8sError *err);
int __wrap_k8s_delete(K8sClient *c, const K8sResource *res, const char *ns, const char *name,
                      const K8sPreconditions *pre, json_object **ret, K8sError *err)
{
        (void) c, (void) pre, (void) ret;
        api.deletes++;
        Stored *s = lookup(res, ns, name, err);
        if (!s)
                return -ENOENT;
        json_object_object_add(json_field(s->obj, "metadata"), "deletionTimestamp",
                               json_object_new_string("2026-11-22T12:00:00Z"));
        return 0;
}

int __wrap_k8s_event_post(K8sClient *c, json_object *regarding, const K8sEventInfo *info,
                          json_object **ret, K8sError *err);
int __wrap_k8s_event_post(K8sClient *c, json_object *regarding, const K8sEventInfo *info,
                          json_object **ret, K8sError *err)
{
        (void) c, (void) ret, (void) err;
        /* The Sandbox's, or (prefixed "template ") its SandboxTemplate's. */
        bool tmpl = streq(k8s_obj_uid(regarding), TEMPLATE_UID);
        if (!tmpl)
                assert_string_equal(k8s_obj_uid(regarding), UID);
        assert_true(api.nevents < sizeof(api.events) / sizeof(api.events[0]));
        snprintf(api.events[api.nevents++], sizeof(api.events[0]), "%s%s %s: %s",
                 tmpl ? "template " : "", info->type, info->reason, info->note ? info->note : "");
        return 0;
}

/* NOLINTEND(bugprone-reserved-identifier) */

/* How many Events begin with prefix ("Warning Unschedulable"). */
static unsigned events(const char *prefix)
{
        unsigned n = 0;
        for (size_t i = 0; i < api.nevents; i++)
                if (strncmp(api.events[i], prefix, strlen(prefix)) == 0)
                        n++;
        return n;
}

/* ------------------------------------------------------------ the agent */

typedef struct {
        char op[16];
        char endpoint[64];
        char id[80];
        json_object *req; /* create's request */
        uint64_t deadline_us;
        bool stop_deadline;
} Call;

typedef struct {
        char op[16];
        int r;
        long status;
        char message[128];
} Failure;

static struct {
        Call calls[32];
        size_t ncalls;
        Failure fail[4]; /* the next call of op answers so, once */
        json_object *sandboxes[4];
        size_t nsandboxes;
        json_object *pools; /* the array GET /v1/pools answers; NULL: none */
} agent;

static const char *time_str(uint64_t us, char *buf)
{
        k8s_format_microtime(us, buf, K8S_MICROTIME_MAX);
        return buf;
}

static json_object **agent_find(const char *id)
{
        for (size_t i = 0; i < agent.nsandboxes; i++)
                if (agent.sandboxes[i] && streq(json_str(agent.sandboxes[i], "id"), id))
                        return &agent.sandboxes[i];
        return NULL;
}

/* A sandbox as the agent shows it, created now with timeout_s. */
static json_object *agent_add(const char *id, long timeout_s)
{
        char t[K8S_MICROTIME_MAX];
        uint64_t now = now_realtime_us();
        json_object *sb = json_object_new_object();
        json_object_object_add(sb, "id", json_object_new_string(id));
        json_object_object_add(sb, "state", json_object_new_string("running"));
        json_object_object_add(sb, "created_at", json_object_new_string(time_str(now, t)));
        json_object_object_add(sb, "started_at", json_object_new_string(t));
        json_object_object_add(sb, "expires_at",
                               json_object_new_string(time_str(now + (uint64_t) timeout_s * S, t)));
        json_object *net = json_object_new_object();
        json_object_object_add(net, "ip", json_object_new_string("198.18.7.2"));
        json_object_object_add(sb, "network", net);
        assert_true(agent.nsandboxes < sizeof(agent.sandboxes) / sizeof(agent.sandboxes[0]));
        agent.sandboxes[agent.nsandboxes++] = sb;
        return sb;
}

static Call *record(const char *what, const AgentConn *c, const char *id)
{
        assert_string_equal(c->token, "agent-token");
        assert_true(c->timeout_ms > 0);
        assert_true(agent.ncalls < sizeof(agent.calls) / sizeof(agent.calls[0]));
        Call *call = &agent.calls[agent.ncalls++];
        *call = (Call){0};
        snprintf(call->op, sizeof(call->op), "%s", what);
        snprintf(call->endpoint, sizeof(call->endpoint), "%s", c->endpoint);
        snprintf(call->id, sizeof(call->id), "%s", id ? id : "");
        return call;
}

/* A failure scripted for what: consumed, and its answer in *err. */
static int scripted(const char *what, AgentClientError *err)
{
        *err = (AgentClientError){0};
        for (size_t i = 0; i < sizeof(agent.fail) / sizeof(agent.fail[0]); i++) {
                Failure *f = &agent.fail[i];
                if (f->r && streq(f->op, what)) {
                        int r = f->r;
                        err->status = f->status;
                        snprintf(err->message, sizeof(err->message), "%s", f->message);
                        *f = (Failure){0};
                        return r;
                }
        }
        return 0;
}

static void fail_next(const char *what, int r, long status, const char *message)
{
        for (size_t i = 0; i < sizeof(agent.fail) / sizeof(agent.fail[0]); i++)
                if (!agent.fail[i].r) {
                        agent.fail[i] = (Failure){.r = r, .status = status};
                        snprintf(agent.fail[i].op, sizeof(agent.fail[i].op), "%s", what);
                        snprintf(agent.fail[i].message, sizeof(agent.fail[i].message), "%s",
                                 message);
                        return;
                }
        fail();
}

static int answer_sandbox(const char *id, json_object **ret, AgentClientError *err)
{
        json_object **sb = agent_find(id);
        if (!sb) {
                err->status = 404;
                snprintf(err->message, sizeof(err->message), "sandbox %s not found", id);
                return -ENOENT;
        }
        *ret = copy(*sb);
        return 0;
}

static int fake_create(const AgentConn *c, json_object *req, json_object **ret,
                       AgentClientError *err)
{
        const char *id = json_str(req, "id");
        Call *call = record("create", c, id);
        call->req = json_object_get(req);
        int r = scripted("create", err);
        if (r < 0)
                return r;
        if (agent_find(id)) {
                err->status = 409;
                snprintf(err->message, sizeof(err->message), "id %s in use", id);
                return -EEXIST;
        }
        json_object *t = json_field(req, "timeout");
        agent_add(id, t ? (long) json_object_get_int64(t) : 300);
        return answer_sandbox(id, ret, err);
}

static int fake_get(const AgentConn *c, const char *id, json_object **ret, AgentClientError *err)
{
        record("get", c, id);
        int r = scripted("get", err);
        return r < 0 ? r : answer_sandbox(id, ret, err);
}

static int fake_list(const AgentConn *c, const char *label, json_object **ret,
                     AgentClientError *err)
{
        (void) label, (void) ret;
        record("list", c, NULL);
        (void) scripted("list", err);
        fail_msg("reconcile_sandbox() does not list");
        return -EIO;
}

static int fake_remove(const AgentConn *c, const char *id, AgentClientError *err)
{
        record("remove", c, id);
        int r = scripted("remove", err);
        if (r < 0)
                return r;
        json_object **sb = agent_find(id);
        if (!sb) {
                err->status = 404;
                return -ENOENT;
        }
        json_object_put(*sb);
        *sb = NULL;
        return 0;
}

static int fake_set_timeout(const AgentConn *c, const char *id, uint64_t deadline_us,
                            json_object **ret, AgentClientError *err)
{
        record("set_timeout", c, id)->deadline_us = deadline_us;
        int r = scripted("set_timeout", err);
        if (r < 0)
                return r;
        json_object **sb = agent_find(id);
        if (sb) {
                char t[K8S_MICROTIME_MAX];
                json_object_object_add(*sb, "expires_at",
                                       json_object_new_string(time_str(deadline_us, t)));
        }
        return answer_sandbox(id, ret, err);
}

static int set_state(const char *id, const char *state, json_object **ret, AgentClientError *err)
{
        json_object **sb = agent_find(id);
        if (sb)
                json_object_object_add(*sb, "state", json_object_new_string(state));
        return answer_sandbox(id, ret, err);
}

static int fake_pause(const AgentConn *c, const char *id, bool stop_deadline, json_object **ret,
                      AgentClientError *err)
{
        record("pause", c, id)->stop_deadline = stop_deadline;
        int r = scripted("pause", err);
        return r < 0 ? r : set_state(id, "paused", ret, err);
}

static int fake_resume(const AgentConn *c, const char *id, json_object **ret, AgentClientError *err)
{
        record("resume", c, id);
        int r = scripted("resume", err);
        return r < 0 ? r : set_state(id, "running", ret, err);
}

/* Has every image; "r.io/team/private:1" only for the credentials of the
 * "pull" Secret. */
static int fake_image_pull(const AgentConn *c, json_object *req, json_object **ret,
                           AgentClientError *err)
{
        const char *image = json_str(req, "image");
        Call *call = record("image_pull", c, image);
        call->req = json_object_get(req);
        int r = scripted("image_pull", err);
        if (r < 0)
                return r;
        const char *auth =
                json_object_to_json_string_ext(json_field(req, "auth"), JSON_C_TO_STRING_PLAIN);
        if (streq(image, "r.io/team/private:1") && !strstr(auth, "dXNlcjpwdw==")) {
                err->status = 403;
                snprintf(err->message, sizeof(err->message), "%s: denied", image);
                return -EACCES;
        }
        *ret = parse("{\"digest\":\"sha256:0123\",\"size\":4096}");
        return 0;
}

static int fake_pools(const AgentConn *c, json_object **ret, AgentClientError *err)
{
        record("pools", c, NULL);
        int r = scripted("pools", err);
        if (r < 0)
                return r;
        if (!agent.pools)
                agent.pools = json_object_new_array();
        *ret = json_object_new_object();
        json_object_object_add(*ret, "pools", copy(agent.pools));
        return 0;
}

static size_t pool_index(const char *name)
{
        size_t n = agent.pools ? json_object_array_length(agent.pools) : 0;
        for (size_t i = 0; i < n; i++)
                if (streq(json_str(json_object_array_get_idx(agent.pools, i), "name"), name))
                        return i;
        return SIZE_MAX;
}

/* Keeps the pool, all of it ready at once. */
static int fake_pool_put(const AgentConn *c, const char *name, json_object *req,
                         AgentClientError *err)
{
        Call *call = record("pool_put", c, name);
        call->req = json_object_get(req);
        int r = scripted("pool_put", err);
        if (r < 0)
                return r;
        json_object *p = copy(req);
        json_object_object_add(p, "name", json_object_new_string(name));
        json_object_object_add(p, "ready", json_object_get(json_field(req, "size")));
        size_t i = pool_index(name);
        if (i != SIZE_MAX)
                json_object_array_put_idx(agent.pools, i, p);
        else
                json_object_array_add(agent.pools, p);
        return 0;
}

static int fake_pool_delete(const AgentConn *c, const char *name, AgentClientError *err)
{
        record("pool_delete", c, name);
        int r = scripted("pool_delete", err);
        if (r < 0)
                return r;
        size_t i = pool_index(name);
        if (i == SIZE_MAX) {
                err->status = 404;
                return -ENOENT;
        }
        json_object_array_del_idx(agent.pools, i, 1);
        return 0;
}

static const AgentOps fake_agent = {
        .pools = fake_pools,
        .pool_put = fake_pool_put,
        .pool_delete = fake_pool_delete,
        .image_pull = fake_image_pull,
        .create = fake_create,
        .get = fake_get,
        .list = fake_list,
        .remove = fake_remove,
        .set_timeout = fake_set_timeout,
        .pause = fake_pause,
        .resume = fake_resume,
};

/* The agent calls made since n, as "op op ..."; for asserting the order. */
static const char *calls_since(size_t n)
{
        static char buf[512];
        buf[0] = '\0';
        for (size_t i = n; i < agent.ncalls; i++) {
                assert_string_equal(agent.calls[i].endpoint, ENDPOINT);
                snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", i > n ? " " : "",
                         agent.calls[i].op);
        }
        return buf;
}

/* ------------------------------------------------------------ fixtures */

static Operator op;

/* The Lease of agent NODE, renewed now, with cpu cores. */
static void lease(const char *cpu)
{
        char t[K8S_MICROTIME_MAX], buf[1024];
        snprintf(buf, sizeof(buf),
                 "{\"metadata\":{\"name\":\"sandpit-agent-" NODE "\",\"namespace\":"
                 "\"sandpit-system\",\"annotations\":{\"sandpit.dev/endpoint\":\"" ENDPOINT "\","
                 "\"sandpit.dev/capacity-cpu\":\"%s\",\"sandpit.dev/capacity-memory\":"
                 "\"8589934592\"}},\"spec\":{\"holderIdentity\":\"" NODE "\","
                 "\"leaseDurationSeconds\":30,\"renewTime\":\"%s\"}}",
                 cpu, time_str(now_realtime_us(), t));
        put("leases", parse(buf));
}

/* A new Sandbox KEY with spec (JSON). */
static void new_sandbox(const char *spec)
{
        char buf[2048];
        snprintf(buf, sizeof(buf),
                 "{\"apiVersion\":\"sandpit.dev/v1alpha1\",\"kind\":\"Sandbox\",\"metadata\":{"
                 "\"name\":\"box\",\"namespace\":\"default\",\"uid\":\"" UID "\","
                 "\"generation\":1},\"spec\":%s}",
                 spec);
        put("sandboxes", parse(buf));
}

#define SPEC                                                                                     \
        "{\"template\":\"default\",\"timeout\":\"10m\",\"resources\":{\"cpu\":\"500m\","         \
        "\"memory\":\"256Mi\"},\"env\":[{\"name\":\"A\",\"value\":\"1\"},{\"name\":\"B\","       \
        "\"valueFrom\":{\"secretKeyRef\":{\"name\":\"creds\",\"key\":\"token\"}}}],"             \
        "\"labels\":{\"team\":\"ml\"},\"network\":{\"egress\":{\"policy\":\"AllowList\","        \
        "\"allow\":[{\"cidr\":\"198.18.0.0/15\",\"ports\":[{\"port\":443,\"protocol\":\"TCP\"}," \
        "{\"port\":53,\"protocol\":\"UDP\"}]}]}}}"

/* A user's edit of the spec: spec.field = value (JSON), generation + 1. */
static void edit_spec(const char *field, const char *value)
{
        json_object *obj = sandbox();
        json_object_object_add(json_field(obj, "spec"), field, parse(value));
        json_object *meta = json_field(obj, "metadata");
        json_object_object_add(
                meta, "generation",
                json_object_new_int64(json_object_get_int64(json_field(meta, "generation")) + 1));
        bump_rv(obj);
}

static int setup(void **state)
{
        (void) state;
        api = (typeof(api)){0};
        agent = (typeof(agent)){0};
        op = (Operator){.sandboxes = SANDBOXES,
                        .leases = LEASES,
                        .templates = TEMPLATES,
                        .namespace = "sandpit-system",
                        .agent_token = (char *) "agent-token",
                        .instance = "unit",
                        .agent = &fake_agent};
        pthread_mutex_init(&op.placements_lock, NULL);
        lease("4");
        /* "s3cr3t" */
        put("secrets", parse("{\"metadata\":{\"name\":\"creds\",\"namespace\":\"default\"},"
                             "\"data\":{\"token\":\"czNjcjN0\"}}"));
        return 0;
}

static int teardown(void **state)
{
        (void) state;
        for (size_t i = 0; i < api.n; i++)
                if (api.objs[i].obj)
                        drop(&api.objs[i]);
        for (size_t i = 0; i < sizeof(api.stale) / sizeof(api.stale[0]); i++)
                json_object_put(api.stale[i].obj);
        for (size_t i = 0; i < agent.ncalls; i++)
                json_object_put(agent.calls[i].req);
        for (size_t i = 0; i < agent.nsandboxes; i++)
                json_object_put(agent.sandboxes[i]);
        json_object_put(agent.pools);
        scheduler_free(&op);
        pools_free(&op);
        agents_free(&op);
        pthread_mutex_destroy(&op.placements_lock);
        return 0;
}

static const char *cond(const char *type, const char *field)
{
        json_object *conds = json_field(status(), "conditions");
        size_t n = conds ? json_object_array_length(conds) : 0;
        for (size_t i = 0; i < n; i++) {
                json_object *c = json_object_array_get_idx(conds, i);
                if (streq(json_str(c, "type"), type))
                        return json_str(c, field);
        }
        return NULL;
}

static bool has_finalizer(void)
{
        json_object *f = json_field(json_field(sandbox(), "metadata"), "finalizers");
        for (size_t i = 0; f && i < json_object_array_length(f); i++)
                if (streq(json_object_get_string(json_object_array_get_idx(f, i)),
                          OPERATOR_FINALIZER))
                        return true;
        return false;
}

/* A new Sandbox reconciled to Running. */
static void running(void)
{
        new_sandbox(SPEC);
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(phase(), "Running");
}

/* ------------------------------------------------------------ the tests */

static void test_create(void **state)
{
        (void) state;
        new_sandbox(SPEC);
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);

        assert_true(has_finalizer());
        assert_string_equal(calls_since(0), "create");
        Call *c = &agent.calls[0];
        assert_string_equal(c->id, ID);
        json_object *req = c->req;
        assert_string_equal(json_str(req, "id"), ID);
        assert_string_equal(json_str(req, "template"), "default");
        assert_true(json_object_get_double(json_field(req, "cpu")) == 0.5);
        assert_int_equal(json_object_get_int64(json_field(req, "memory")), 256 << 20);
        assert_int_equal(json_object_get_int64(json_field(req, "disk")), 512 << 20);
        assert_int_equal(json_object_get_int64(json_field(req, "pids")), 512);
        assert_int_equal(json_object_get_int64(json_field(req, "timeout")), 600);
        assert_string_equal(plain(json_field(req, "env")), "{\"A\":\"1\"}");
        assert_string_equal(plain(json_field(req, "secret_env")), "{\"B\":\"s3cr3t\"}");
        json_object *labels = json_field(req, "labels");
        assert_string_equal(json_str(labels, "team"), "ml");
        assert_string_equal(json_str(labels, LABEL_MANAGED_BY), LABEL_MANAGED_BY_VALUE);
        assert_string_equal(json_str(labels, LABEL_NAMESPACE), "default");
        assert_string_equal(json_str(labels, LABEL_NAME), "box");

        json_object *st = status();
        assert_string_equal(phase(), "Running");
        assert_string_equal(json_str(st, "nodeName"), NODE);
        assert_string_equal(json_str(st, "sandboxID"), ID);
        assert_string_equal(json_str(st, "ip"), "198.18.7.2");
        json_object *sb = *agent_find(ID);
        assert_string_equal(json_str(st, "expiresAt"), json_str(sb, "expires_at"));
        assert_string_equal(json_str(st, "startedAt"), json_str(sb, "started_at"));
        assert_string_equal(plain(json_field(st, "resources")),
                            "{\"cpu\":\"500m\",\"memory\":\"256Mi\",\"disk\":\"512Mi\","
                            "\"pids\":512}");
        assert_string_equal(cond("Scheduled", "status"), "True");
        assert_string_equal(cond("Ready", "status"), "True");
        assert_string_equal(cond("Ready", "reason"), "Running");
        assert_int_equal(json_object_get_int64(json_field(st, "observedGeneration")), 1);
        assert_int_equal(events("Normal Scheduled"), 1);
        assert_int_equal(events("Normal Started"), 1);

        /* Settled: the next reconcile reads the agent, writes nothing and
         * comes back before the deadline. */
        unsigned patches = api.patches;
        long ret = reconcile_sandbox(&op, KEY);
        assert_true(ret > 0 && ret <= 600 * 1000 + 1);
        assert_string_equal(calls_since(1), "get");
        assert_int_equal(api.patches, patches);
}

static void test_create_network(void **state)
{
        (void) state;
        new_sandbox(SPEC);
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(calls_since(0), "create");
        /* One entry a port, the protocol as the agent spells it. */
        assert_string_equal(plain(json_field(agent.calls[0].req, "network")),
                            "{\"egress\":\"allowlist\",\"allow\":["
                            "{\"cidr\":\"198.18.0.0\\/15\",\"ports\":[443],\"protocol\":\"tcp\"},"
                            "{\"cidr\":\"198.18.0.0\\/15\",\"ports\":[53],\"protocol\":\"udp\"}]}");
}

/* A host entry goes to the agent as host, with its ports as a cidr's. */
static void test_create_network_host(void **state)
{
        (void) state;
        new_sandbox("{\"template\":\"default\",\"network\":{\"egress\":{\"policy\":"
                    "\"AllowList\",\"allow\":[{\"host\":\"*.example.com\",\"ports\":[{"
                    "\"port\":443}]},{\"host\":\"api.example.org\"}]}}}");
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(calls_since(0), "create");
        assert_string_equal(plain(json_field(agent.calls[0].req, "network")),
                            "{\"egress\":\"allowlist\",\"allow\":["
                            "{\"host\":\"*.example.com\",\"ports\":[443]},"
                            "{\"host\":\"api.example.org\"}]}");
}

static void test_adopt_existing(void **state)
{
        (void) state;
        /* An earlier attempt created it on the agent but did not write status. */
        agent_add(ID, 600);
        new_sandbox(SPEC);
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(calls_since(0), "create get");
        assert_string_equal(agent.calls[1].id, ID);
        assert_string_equal(phase(), "Running");
        assert_string_equal(json_str(status(), "sandboxID"), ID);
        assert_string_equal(json_str(status(), "expiresAt"),
                            json_str(*agent_find(ID), "expires_at"));
        assert_int_equal(events("Warning"), 0);
        assert_int_equal(agent.nsandboxes, 1);
}

/* A create the agent gave up for a concurrent DELETE (409 Conflict, -EBUSY)
 * is not an id in use: nothing is adopted, the next pass creates again. */
static void test_create_cancelled_by_delete(void **state)
{
        (void) state;
        new_sandbox(SPEC);
        fail_next("create", -EBUSY, 409, "sandbox " ID " was deleted while it was being created");
        assert_true(reconcile_sandbox(&op, KEY) < 0);
        assert_string_equal(calls_since(0), "create"); /* no get: nothing adopted */
        assert_string_equal(phase(), "Pending");
        assert_int_equal(agent.nsandboxes, 0);
        assert_int_equal(events("Warning"), 0);
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(calls_since(0), "create create");
        assert_string_equal(phase(), "Running");
        assert_int_equal(agent.nsandboxes, 1);
}

static void test_agent_refuses(void **state)
{
        (void) state;
        new_sandbox(SPEC);
        fail_next("create", -EINVAL, 400, "template \"default\" not found");
        /* Final: done, not retried. */
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(phase(), "Failed");
        assert_string_equal(cond("Ready", "status"), "False");
        assert_string_equal(cond("Ready", "reason"), "CreateFailed");
        assert_string_equal(cond("Ready", "message"),
                            "node " NODE " refused the sandbox: template \"default\" not found");
        assert_int_equal(events("Warning CreateFailed: node " NODE " refused the sandbox: "
                                "template \"default\" not found"),
                         1);
        /* Failed is final: nothing more happens on the agent. */
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(calls_since(0), "create");
}

/* spec.runtime of a SandboxTemplate goes to the create; a node without that
 * runtime (501) is RuntimeUnavailable and one Event, retried (installing it
 * is the fix), and the sandbox runs once the node has it. */
static void test_template_runtime(void **state)
{
        (void) state;
        put("sandboxtemplates",
            parse("{\"metadata\":{\"name\":\"gv\",\"namespace\":\"default\",\"uid\":\"" TEMPLATE_UID
                  "\",\"generation\":1},\"spec\":{\"source\":{\"path\":\"/var/lib/sandpit/"
                  "templates/default\"},\"runtime\":\"runsc\"}}"));
        new_sandbox("{\"template\":\"gv\",\"timeout\":\"10m\"}");
        for (int i = 0; i < 2; i++) {
                fail_next("create", -EOPNOTSUPP, 501,
                          "runtime runsc is not installed on this node (runsc not found)");
                assert_true(reconcile_sandbox(&op, KEY) < 0);
                assert_string_equal(phase(), "Pending");
                assert_string_equal(cond("Ready", "status"), "False");
                assert_string_equal(cond("Ready", "reason"), "RuntimeUnavailable");
                assert_string_equal(cond("Ready", "message"),
                                    "node " NODE ": runtime runsc is not installed on this node "
                                    "(runsc not found)");
        }
        assert_int_equal(events("Warning RuntimeUnavailable: node " NODE), 1);
        size_t n = agent.ncalls;
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(calls_since(n), "create");
        assert_string_equal(json_str(agent.calls[n].req, "runtime"), "runsc");
        assert_string_equal(json_str(agent.calls[n].req, "template"), "default");
        assert_string_equal(phase(), "Running");
}

/* A SandboxTemplate with source.image: the node pulls it (verify: its copy
 * is checked against the template's credentials) before the create of
 * "image:REF"; PullingImage while that runs; a denied or unknown image is a
 * condition and one Event, retried until it works; the template's status
 * says the same, then Ready with the digest and size. */
static void test_image_template(void **state)
{
        (void) state;
        put("sandboxtemplates",
            parse("{\"metadata\":{\"name\":\"py\",\"namespace\":\"default\",\"uid\":\"" TEMPLATE_UID
                  "\",\"generation\":1},\"spec\":{\"source\":{\"image\":\"r.io/team/py:3\"},"
                  "\"resources\":{\"pids\":64}}}"));
        new_sandbox("{\"template\":\"py\",\"timeout\":\"10m\"}");
        fail_next("image_pull", -ETIMEDOUT, 0, ""); /* a long pull */
        assert_true(reconcile_sandbox(&op, KEY) < 0);
        assert_string_equal(cond("Ready", "reason"), "PullingImage");
        assert_non_null(strstr(cond("Ready", "message"), "r.io/team/py:3"));
        assert_string_equal(agent.calls[0].op, "image_pull");
        assert_json(agent.calls[0].req, "{\"image\":\"r.io/team/py:3\",\"refresh\":false,"
                                        "\"verify\":true}");

        for (int i = 0; i < 2; i++) {
                fail_next("image_pull", -ENOENT, 404, "r.io/team/py:3: manifest: MANIFEST_UNKNOWN");
                assert_true(reconcile_sandbox(&op, KEY) < 0);
                assert_string_equal(cond("Ready", "status"), "False");
                assert_string_equal(cond("Ready", "reason"), "ImagePullFailed");
                assert_non_null(strstr(cond("Ready", "message"), "MANIFEST_UNKNOWN"));
        }
        assert_int_equal(events("Warning ImagePullFailed: node " NODE " cannot pull the image"), 1);
        assert_int_equal(events("template Warning ImagePullFailed: node " NODE), 1);
        assert_string_equal(phase(), "Pending");
        json_object *tst = json_field(find("sandboxtemplates", "default/py")->obj, "status");
        assert_non_null(strstr(plain(tst), "\"reason\":\"ImagePullFailed\""));
        assert_null(json_field(tst, "digest"));

        size_t n = agent.ncalls;
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(calls_since(n), "image_pull create");
        assert_string_equal(json_str(agent.calls[n + 1].req, "template"), "image:r.io/team/py:3");
        assert_int_equal(json_object_get_int64(json_field(agent.calls[n + 1].req, "pids")), 64);
        assert_string_equal(phase(), "Running");
        assert_string_equal(cond("Ready", "reason"), "Running");
        tst = json_field(find("sandboxtemplates", "default/py")->obj, "status");
        assert_string_equal(json_str(tst, "digest"), "sha256:0123");
        assert_int_equal(json_object_get_int64(json_field(tst, "size")), 4096);
        assert_non_null(strstr(plain(tst), "\"status\":\"True\",\"reason\":\"Pulled\""));
        assert_int_equal(events("template Normal Pulled: node " NODE
                                " has image r.io/team/py:3 as sha256:0123"),
                         1);
}

/* The informers' caches lag behind the operator's own status writes (the
 * watch events of the Scheduled write and of the template's come after the
 * next reconcile reads them): the retries read the Sandbox and the template
 * as they were before ImagePullFailed, and say it again neither on the
 * Sandbox nor on the template. Then the same for RuntimeUnavailable. */
static void test_stale_cache_posts_once(void **state)
{
        (void) state;
        put("sandboxtemplates",
            parse("{\"metadata\":{\"name\":\"py\",\"namespace\":\"default\",\"uid\":\"" TEMPLATE_UID
                  "\",\"generation\":1},\"spec\":{\"source\":{\"image\":\"r.io/team/py:3\"}}}"));
        new_sandbox("{\"template\":\"py\",\"timeout\":\"10m\"}");
        fail_next("image_pull", -ETIMEDOUT, 0, ""); /* a long pull */
        assert_true(reconcile_sandbox(&op, KEY) < 0);
        assert_string_equal(cond("Ready", "reason"), "PullingImage");
        /* The caches stop here: Scheduled, PullingImage; the template without status. */
        api.stale[0].resource = "sandboxes";
        api.stale[0].obj = copy(sandbox());
        api.stale[1].resource = "sandboxtemplates";
        api.stale[1].obj = copy(find("sandboxtemplates", "default/py")->obj);
        for (int i = 0; i < 3; i++) {
                fail_next("image_pull", -ENOENT, 404, "r.io/team/py:3: manifest: MANIFEST_UNKNOWN");
                assert_true(reconcile_sandbox(&op, KEY) < 0);
                assert_string_equal(cond("Ready", "reason"), "ImagePullFailed");
        }
        assert_int_equal(events("Warning ImagePullFailed: node " NODE " cannot pull the image"), 1);
        assert_int_equal(events("template Warning ImagePullFailed: node " NODE), 1);
        assert_int_equal(api.nevents, 3); /* and Scheduled */
        json_object *tst = json_field(find("sandboxtemplates", "default/py")->obj, "status");
        assert_non_null(strstr(plain(tst), "\"reason\":\"ImagePullFailed\""));

        /* The pull works, the node lacks the runtime: the cache stops before
         * RuntimeUnavailable. */
        json_object_put(api.stale[0].obj);
        api.stale[0].obj = copy(sandbox());
        json_object_put(api.stale[1].obj);
        api.stale[1].obj = NULL;
        for (int i = 0; i < 3; i++) {
                fail_next("create", -EOPNOTSUPP, 501, "runtime runsc is not installed");
                assert_true(reconcile_sandbox(&op, KEY) < 0);
                assert_string_equal(cond("Ready", "reason"), "RuntimeUnavailable");
        }
        assert_int_equal(events("Warning RuntimeUnavailable: node " NODE), 1);
        assert_int_equal(events("template Normal Pulled: node " NODE), 1);
        assert_int_equal(api.nevents, 5);
}

/* An image template whose sandbox the node refuses after the pull (a start
 * command that exited at once): CreateFailed, not an image problem. */
static void test_image_template_create_refused(void **state)
{
        (void) state;
        put("sandboxtemplates",
            parse("{\"metadata\":{\"name\":\"py\",\"namespace\":\"default\",\"uid\":\"" TEMPLATE_UID
                  "\",\"generation\":1},\"spec\":{\"source\":{\"image\":\"r.io/team/py:3\"}}}"));
        new_sandbox("{\"template\":\"py\",\"timeout\":\"10m\"}");
        fail_next("create", -EINVAL, 400, "start command exited with code 3");
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(calls_since(0), "image_pull create");
        assert_string_equal(phase(), "Failed");
        assert_string_equal(cond("Ready", "reason"), "CreateFailed");
        assert_non_null(strstr(cond("Ready", "message"), "exited with code 3"));
}

/* source.pullSecret: a missing Secret, one of the wrong type, then the right
 * one, whose .dockerconfigjson goes to the pull as "auth". */
static void test_image_pull_secret(void **state)
{
        (void) state;
        put("sandboxtemplates",
            parse("{\"metadata\":{\"name\":\"priv\",\"namespace\":\"default\",\"uid\":"
                  "\"" TEMPLATE_UID "\"},\"spec\":{\"source\":{\"image\":\"r.io/team/private:1\","
                  "\"pullSecret\":\"pull\"}}}"));
        new_sandbox("{\"template\":\"priv\",\"timeout\":\"10m\"}");
        assert_true(reconcile_sandbox(&op, KEY) < 0);
        assert_string_equal(cond("Ready", "reason"), "PullSecretNotFound");
        assert_non_null(strstr(cond("Ready", "message"), "no Secret pull in namespace default"));
        assert_int_equal(events("Warning PullSecretNotFound"), 1);
        assert_int_equal(events("template Warning PullSecretNotFound"), 1);
        assert_int_equal(agent.ncalls, 0);

        put("secrets", parse("{\"metadata\":{\"name\":\"pull\",\"namespace\":\"default\"},"
                             "\"type\":\"Opaque\",\"data\":{\"token\":\"czNjcjN0\"}}"));
        assert_true(reconcile_sandbox(&op, KEY) < 0);
        assert_string_equal(cond("Ready", "reason"), "InvalidPullSecret");
        assert_int_equal(agent.ncalls, 0);

        /* {"auths":{"r.io":{"auth":"dXNlcjpwdw=="}}}, base64 */
        drop(find("secrets", "default/pull"));
        put("secrets", parse("{\"metadata\":{\"name\":\"pull\",\"namespace\":\"default\"},"
                             "\"type\":\"kubernetes.io/dockerconfigjson\",\"data\":{"
                             "\".dockerconfigjson\":"
                             "\"eyJhdXRocyI6eyJyLmlvIjp7ImF1dGgiOiJkWE5sY2pwd2R3PT0ifX19\"}}"));
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(calls_since(0), "image_pull create");
        assert_json(json_field(agent.calls[0].req, "auth"),
                    "{\"auths\":{\"r.io\":{\"auth\":\"dXNlcjpwdw==\"}}}");
        assert_string_equal(phase(), "Running");
        /* the credentials are in neither status nor Events */
        assert_null(strstr(json_object_to_json_string(sandbox()), "dXNlcjpwdw"));
        assert_null(
                strstr(json_object_to_json_string(find("sandboxtemplates", "default/priv")->obj),
                       "dXNlcjpwdw"));
        for (size_t i = 0; i < api.nevents; i++)
                assert_null(strstr(api.events[i], "dXNlcjpwdw"));
}

static void test_agent_transient_errors(void **state)
{
        (void) state;
        static const struct {
                int r;
                long status;
        } cases[] = {{-EIO, 500}, {-ETIMEDOUT, 0}, {-ECONNREFUSED, 0}, {-EIO, 503}};
        new_sandbox(SPEC);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                fail_next("create", cases[i].r, cases[i].status, cases[i].status ? "busy" : "");
                /* Retried with back-off: an error, never Failed. */
                assert_true(reconcile_sandbox(&op, KEY) < 0);
                assert_string_equal(phase(), "Pending");
                assert_string_equal(cond("Ready", "reason"), "Creating");
                assert_string_equal(json_str(status(), "nodeName"), NODE);
        }
        assert_int_equal(events("Warning"), 0);
        /* The agent is back: the same node and id. */
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(phase(), "Running");
        assert_string_equal(calls_since(0), "create create create create create");
        for (size_t i = 0; i < agent.ncalls; i++)
                assert_string_equal(agent.calls[i].id, ID);

        /* The same while it runs: a GET that fails is retried, not Failed. */
        size_t n = agent.ncalls;
        fail_next("get", -ETIMEDOUT, 0, "");
        assert_true(reconcile_sandbox(&op, KEY) < 0);
        fail_next("get", -EIO, 502, "bad gateway");
        assert_true(reconcile_sandbox(&op, KEY) < 0);
        assert_string_equal(calls_since(n), "get get");
        assert_string_equal(phase(), "Running");
}

static void test_pause_resume(void **state)
{
        (void) state;
        running();
        size_t n = agent.ncalls;
        edit_spec("paused", "true");
        assert_true(reconcile_sandbox(&op, KEY) > 0);
        assert_string_equal(calls_since(n), "get pause");
        assert_string_equal(agent.calls[n + 1].id, ID);
        /* The deadline keeps running while paused. */
        assert_false(agent.calls[n + 1].stop_deadline);
        assert_string_equal(phase(), "Paused");
        assert_string_equal(cond("Paused", "status"), "True");
        assert_string_equal(cond("Ready", "status"), "False");
        assert_string_equal(cond("Ready", "reason"), "Paused");
        assert_int_equal(json_object_get_int64(json_field(status(), "observedGeneration")), 2);
        assert_int_equal(events("Normal Paused"), 1);
        /* Paused as asked: nothing more to do. */
        n = agent.ncalls;
        assert_true(reconcile_sandbox(&op, KEY) > 0);
        assert_string_equal(calls_since(n), "get");

        edit_spec("paused", "false");
        n = agent.ncalls;
        assert_true(reconcile_sandbox(&op, KEY) > 0);
        assert_string_equal(calls_since(n), "get resume");
        assert_string_equal(phase(), "Running");
        assert_string_equal(cond("Paused", "status"), "False");
        assert_string_equal(cond("Paused", "reason"), "Resumed");
        assert_string_equal(cond("Ready", "status"), "True");
        assert_int_equal(events("Normal Resumed"), 1);

        /* The agent refuses the pause: retried, the phase stays. */
        edit_spec("paused", "true");
        fail_next("pause", -EBUSY, 409, "sandbox is not running");
        assert_true(reconcile_sandbox(&op, KEY) < 0);
        assert_string_equal(phase(), "Running");
}

/* The object is being deleted (kubectl delete with our finalizer on it). */
static void mark_deleted(void)
{
        json_object_object_add(json_field(sandbox(), "metadata"), "deletionTimestamp",
                               json_object_new_string("2026-11-22T12:00:00Z"));
        bump_rv(sandbox());
}

static void test_delete(void **state)
{
        (void) state;
        running();
        size_t n = agent.ncalls;
        mark_deleted();
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(calls_since(n), "remove");
        assert_string_equal(agent.calls[n].id, ID);
        assert_null(agent_find(ID));
        /* The finalizer removed, the API server deleted the object. */
        assert_null(sandbox());
        /* Gone: nothing more. */
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_int_equal(agent.ncalls, n + 1);
}

static void test_delete_agent_errors(void **state)
{
        (void) state;
        running();
        mark_deleted();
        size_t n = agent.ncalls;
        /* The agent fails: the finalizer stays, retried. */
        fail_next("remove", -EIO, 500, "disk on fire");
        assert_true(reconcile_sandbox(&op, KEY) < 0);
        fail_next("remove", -ETIMEDOUT, 0, "");
        assert_true(reconcile_sandbox(&op, KEY) < 0);
        assert_non_null(sandbox());
        assert_true(has_finalizer());
        /* The agent no longer has it (404): done all the same. */
        fail_next("remove", -ENOENT, 404, "sandbox " ID " not found");
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(calls_since(n), "remove remove remove");
        assert_null(sandbox());
}

static void test_unschedulable(void **state)
{
        (void) state;
        new_sandbox("{\"template\":\"default\",\"resources\":{\"cpu\":\"8\"}}");
        assert_true(reconcile_sandbox(&op, KEY) < 0);
        assert_true(has_finalizer());
        assert_string_equal(phase(), "Pending");
        assert_null(json_str(status(), "nodeName"));
        assert_string_equal(cond("Scheduled", "status"), "False");
        assert_string_equal(cond("Scheduled", "reason"), "Unschedulable");
        assert_string_equal(cond("Ready", "reason"), "Unschedulable");
        assert_non_null(strstr(cond("Scheduled", "message"), "1 agents registered, 1 live"));
        assert_int_equal(events("Warning Unschedulable"), 1);
        /* Retried: the Event only once. */
        assert_true(reconcile_sandbox(&op, KEY) < 0);
        assert_int_equal(events("Warning Unschedulable"), 1);
        assert_int_equal(agent.ncalls, 0);
        /* Room appears: placed and created. */
        lease("16");
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(phase(), "Running");
        assert_string_equal(calls_since(0), "create");
}

static uint64_t us(const char *t)
{
        uint64_t v = 0;
        assert_non_null(t);
        assert_int_equal(parse_rfc3339_us(t, &v), 0);
        return v;
}

/* The node's Lease deleted (its agent stopped on SIGTERM, as a DaemonSet's
 * rolling update does): Running, requeued, until --node-lost-grace has
 * passed without a Lease; a Lease back ends the absence. */
static void test_node_without_lease(void **state)
{
        (void) state;
        running();
        Stored *l = find("leases", "sandpit-system/sandpit-agent-" NODE);
        assert_non_null(l);
        drop(l);
        op.node_lost_grace_ms = 60000;
        unsigned patches = api.patches;
        long ret = reconcile_sandbox(&op, KEY);
        assert_true(ret > 0 && ret <= 5001);
        assert_string_equal(phase(), "Running");
        assert_int_equal(api.patches, patches);
        /* Back: the absence ends, and a later loss counts from zero again. */
        lease("4");
        assert_true(reconcile_sandbox(&op, KEY) > 0);
        assert_null(op.absent_nodes);
        drop(find("leases", "sandpit-system/sandpit-agent-" NODE));
        assert_true(reconcile_sandbox(&op, KEY) > 0);
        assert_string_equal(phase(), "Running");
        /* No grace (or the grace spent): NodeLost at once. */
        op.node_lost_grace_ms = 0;
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(phase(), "Failed");
        assert_string_equal(cond("Ready", "reason"), "NodeLost");
        assert_non_null(strstr(cond("Ready", "message"), "has no agent registered"));
}

static void test_timeout_changed(void **state)
{
        (void) state;
        running();
        uint64_t created = us(json_str(*agent_find(ID), "created_at"));
        /* Declarative: from the creation on the agent, not from now. */
        static const struct {
                const char *timeout;
                uint64_t s;
        } cases[] = {{"\"20m\"", 1200}, {"\"15m\"", 900}};
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                size_t n = agent.ncalls;
                edit_spec("timeout", cases[i].timeout);
                assert_true(reconcile_sandbox(&op, KEY) > 0);
                assert_string_equal(calls_since(n), "get set_timeout");
                assert_string_equal(agent.calls[n + 1].id, ID);
                assert_true(agent.calls[n + 1].deadline_us == created + cases[i].s * S);
                assert_true(us(json_str(status(), "expiresAt")) == created + cases[i].s * S);
                assert_int_equal(events("Normal TimeoutChanged"), i + 1);
        }
        /* Unchanged: the deadline stays. */
        size_t n = agent.ncalls;
        assert_true(reconcile_sandbox(&op, KEY) > 0);
        assert_string_equal(calls_since(n), "get");
}

/* Two templates of one shape: the agent keeps one pool a shape (a second
 * is refused, 409), so only the older one's is put, the other's status says
 * why, and no later pass puts it (no PUT that would be refused every pass);
 * the older one gone, the other's is put. */
static void test_warm_pool_one_shape_two_templates(void **state)
{
        (void) state;
        static const char *const names[] = {"twin-b", "twin-a"};
        static const char *const times[] = {"2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"};
        for (size_t i = 0; i < 2; i++) {
                char buf[512];
                snprintf(buf, sizeof(buf),
                         "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"default\","
                         "\"uid\":\"uid-%s\",\"creationTimestamp\":\"%s\"},\"spec\":{"
                         "\"source\":{\"path\":\"/var/lib/sandpit/templates/host\"},"
                         "\"languages\":[\"bash\"],\"warmPool\":{\"sizePerNode\":%zu}}}",
                         names[i], names[i], times[i], i + 1);
                put("sandboxtemplates", parse(buf));
        }
        agent.pools = parse("[]");
        assert_int_equal(pools_sync(&op), 0);
        assert_string_equal(calls_since(0), "pools pool_put");
        assert_string_equal(agent.calls[1].id, "sbxt-uid-twin-a");
        json_object *b = json_field(
                json_field(find("sandboxtemplates", "default/twin-b")->obj, "status"), "warmPool");
        assert_int_equal(json_object_get_int64(json_field(b, "total")), 0);
        const char *why = json_str(b, "message");
        assert_non_null(why);
        if (!strstr(why, "SandboxTemplate default/twin-a has the same shape") || !strstr(why, NODE))
                fail_msg("status.warmPool.message: %s", why);
        /* the next passes: twin-a's pool seen, twin-b's never put */
        for (int pass = 0; pass < 3; pass++) {
                size_t n = agent.ncalls;
                assert_int_equal(pools_sync(&op), 0);
                assert_string_equal(calls_since(n), "pools");
        }
        /* twin-a gone: its pool goes and twin-b's is put in the same pass */
        drop(find("sandboxtemplates", "default/twin-a"));
        size_t n = agent.ncalls;
        assert_int_equal(pools_sync(&op), 0);
        assert_string_equal(calls_since(n), "pools pool_delete pool_put");
        assert_string_equal(agent.calls[n + 1].id, "sbxt-uid-twin-a");
        assert_string_equal(agent.calls[n + 2].id, "sbxt-uid-twin-b");
        b = json_field(json_field(find("sandboxtemplates", "default/twin-b")->obj, "status"),
                       "warmPool");
        assert_string_equal(json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN),
                            "{\"ready\":0,\"total\":1}");
}

/* The pools pass: the template's pool put on the node with its shape, a
 * stale operator pool removed, another's left; status.warmPool; a second
 * pass changes nothing but the ready count; a Sandbox of the template that
 * sets no resources goes to the node with a ready pooled sandbox though
 * another has more room; warmPool removed: pool and status go. */
static void test_warm_pool(void **state)
{
        (void) state;
        put("sandboxtemplates",
            parse("{\"metadata\":{\"name\":\"small\",\"namespace\":\"default\",\"uid\":"
                  "\"" TEMPLATE_UID
                  "\"},\"spec\":{\"source\":{\"path\":\"/var/lib/sandpit/templates/host\"},"
                  "\"resources\":{\"cpu\":\"250m\",\"memory\":\"96Mi\"},"
                  "\"languages\":[\"bash\"],\"warmPool\":{\"sizePerNode\":2}}}"));
        agent.pools = parse("[{\"name\":\"sbxt-gone\",\"template\":\"host\",\"size\":1},"
                            "{\"name\":\"theirs\",\"template\":\"host\",\"size\":3}]");
        assert_int_equal(pools_sync(&op), 0);
        /* the unwanted pool goes first: its shape is free for the puts */
        assert_string_equal(calls_since(0), "pools pool_delete pool_put");
        assert_string_equal(agent.calls[1].id, "sbxt-gone");
        assert_string_equal(agent.calls[2].id, "sbxt-" TEMPLATE_UID);
        assert_string_equal(
                json_object_to_json_string_ext(agent.calls[2].req, JSON_C_TO_STRING_PLAIN),
                "{\"template\":\"host\",\"cpu\":0.25,\"memory\":100663296,"
                "\"pids\":512,\"disk\":536870912,\"kernel\":false,\"size\":2}");
        assert_int_not_equal(pool_index("theirs"), SIZE_MAX);
        json_object *tmpl = find("sandboxtemplates", "default/small")->obj;
        /* put, not yet seen ready */
        assert_string_equal(
                json_object_to_json_string_ext(json_field(json_field(tmpl, "status"), "warmPool"),
                                               JSON_C_TO_STRING_PLAIN),
                "{\"ready\":0,\"total\":2}");
        /* the next pass: nothing to put, the ready count seen */
        size_t n = agent.ncalls;
        unsigned patches = api.patches;
        assert_int_equal(pools_sync(&op), 0);
        assert_string_equal(calls_since(n), "pools");
        tmpl = find("sandboxtemplates", "default/small")->obj;
        assert_string_equal(
                json_object_to_json_string_ext(json_field(json_field(tmpl, "status"), "warmPool"),
                                               JSON_C_TO_STRING_PLAIN),
                "{\"ready\":2,\"total\":2}");
        assert_int_equal(api.patches, patches + 1);
        /* and once more: no write at all */
        assert_int_equal(pools_sync(&op), 0);
        assert_int_equal(api.patches, patches + 1);

        /* placement: n2 has more room, n1 the ready pooled sandboxes */
        char t[K8S_MICROTIME_MAX];
        char buf[1024];
        snprintf(buf, sizeof(buf),
                 "{\"metadata\":{\"name\":\"sandpit-agent-n2\",\"namespace\":"
                 "\"sandpit-system\",\"annotations\":{\"sandpit.dev/endpoint\":"
                 "\"http://198.18.0.2:7443\",\"sandpit.dev/capacity-cpu\":\"32\","
                 "\"sandpit.dev/capacity-memory\":\"8589934592\"}},\"spec\":{\"holderIdentity\":"
                 "\"n2\",\"leaseDurationSeconds\":30,\"renewTime\":\"%s\"}}",
                 time_str(now_realtime_us(), t));
        put("leases", parse(buf));
        AgentInfo a = {0};
        char msg[256];
        /* another shape: the most room */
        assert_int_equal(
                scheduler_place(&op, "default/cold", 0.5, 1 << 20, NULL, &a, msg, sizeof(msg)), 0);
        assert_string_equal(a.node, "n2");
        agent_info_done(&a);
        new_sandbox("{\"template\":\"small\",\"timeout\":\"10m\"}");
        assert_int_equal(reconcile_sandbox(&op, KEY), 0);
        assert_string_equal(json_str(status(), "nodeName"), NODE);
        /* the view counted that one: a second claim there, then no more */
        assert_int_equal(scheduler_place(&op, "default/w2", 0.25, 96 << 20, "sbxt-" TEMPLATE_UID,
                                         &a, msg, sizeof(msg)),
                         0);
        assert_string_equal(a.node, NODE);
        agent_info_done(&a);
        assert_int_equal(scheduler_place(&op, "default/w3", 0.25, 96 << 20, "sbxt-" TEMPLATE_UID,
                                         &a, msg, sizeof(msg)),
                         0);
        assert_string_equal(a.node, "n2");
        agent_info_done(&a);

        /* warmPool removed: the pools go, and status.warmPool */
        tmpl = find("sandboxtemplates", "default/small")->obj;
        json_object_object_del(json_field(tmpl, "spec"), "warmPool");
        (void) pools_sync(&op);
        assert_int_equal(pool_index("sbxt-" TEMPLATE_UID), SIZE_MAX);
        assert_int_not_equal(pool_index("theirs"), SIZE_MAX);
        tmpl = find("sandboxtemplates", "default/small")->obj;
        assert_null(json_field(json_field(tmpl, "status"), "warmPool"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_create, setup, teardown),
                cmocka_unit_test_setup_teardown(test_create_network_host, setup, teardown),
                cmocka_unit_test_setup_teardown(test_create_network, setup, teardown),
                cmocka_unit_test_setup_teardown(test_adopt_existing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_create_cancelled_by_delete, setup, teardown),
                cmocka_unit_test_setup_teardown(test_agent_refuses, setup, teardown),
                cmocka_unit_test_setup_teardown(test_agent_transient_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_image_template, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stale_cache_posts_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_image_template_create_refused, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_image_pull_secret, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
                cmocka_unit_test_setup_teardown(test_template_runtime, setup, teardown),
                cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
                cmocka_unit_test_setup_teardown(test_delete_agent_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unschedulable, setup, teardown),
                cmocka_unit_test_setup_teardown(test_timeout_changed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_node_without_lease, setup, teardown),
                cmocka_unit_test_setup_teardown(test_warm_pool, setup, teardown),
                cmocka_unit_test_setup_teardown(test_warm_pool_one_shape_two_templates, setup,
                                                teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
