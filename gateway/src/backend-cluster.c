/* The gateway's cluster backend (gateway.h, docs/gateway.md "Cluster mode"):
 * E2B's sandboxes are Sandbox objects, so Sandbox.list() and `kubectl get sbx`
 * show the same ones. Writes go to the API server; reads come from the
 * operator's Sandbox informer (a direct GET when the cache has not seen an
 * object yet), and every write waits until the cache shows the operator's
 * answer, so one replica reads its own writes. The data plane goes to the
 * agent that runs the sandbox, found through its Lease (lib's agent-lease.h).
 *
 * Threads: the ops run on many threads at once. lock guards changes,
 * stopping and the token cache; the informers and the client are
 * thread-safe. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster-map.h"
#include "gw-internal.h"
#include "sandpit/agent-lease.h"
#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

static const K8sResource sandboxes_res = {"sandpit.dev", "v1alpha1", "sandboxes", true};
static const K8sResource secrets_res = {"", "v1", "secrets", true};

/* Each wait also wakes this often, should a change go unnotified. */
#define WAIT_POLL_MS    250L
#define TOKEN_CACHE_MAX 4096u
/* Slots of the agent id -> node cache (direct-mapped: a collision replaces). */
#define NODE_CACHE_SLOTS 1024u

/* Where an agent id lives: fixed once the operator placed it (a Sandbox is
 * never moved), so an entry is right for as long as that sandbox exists. */
typedef struct {
        char agent_id[GW_ROUTE_ID_MAX + 1];
        char node[254];
} CachedNode;

typedef struct {
        char id[GW_ROUTE_ID_MAX + 1];
        char ns[GW_NAMESPACE_MAX + 1];
        char uid[64];
        char token[GW_TOKEN_LEN + 1];
} CachedToken;

typedef struct {
        K8sClient *client;
        K8sInformer *sandboxes;
        K8sInformer *leases;
        char *lease_ns;
        char *ns;
        char *agent_token;
        long timeout_ms;

        pthread_mutex_t lock;
        pthread_cond_t changed;
        uint64_t changes;
        bool stopping;
        CachedToken *tokens;
        size_t n_tokens;
        CachedNode nodes[NODE_CACHE_SLOTS];
} Cluster;

/* The namespace the op running on this thread acts in: set for the length of
 * an op by the view of one namespace (cluster_in_namespace(): a caller with
 * an API key or a Kubernetes token), or by the data plane's ops from where
 * the Sandbox is (bind_to()). NULL: the configured one (--gateway-namespace:
 * --gateway-auth none). A thread-local rather than a parameter, so that every
 * helper below asks one place. */
static __thread const char *bound_ns;

static const char *cluster_namespace(const Cluster *c)
{
        return bound_ns ? bound_ns : c->ns;
}

typedef struct {
        const char *prefix; /* "/NAME" */
        char ns[GW_NAMESPACE_MAX + 1];
} FindNs;

static void find_ns(const char *key, json_object *obj, void *userdata)
{
        (void) obj;
        FindNs *f = userdata;
        const char *slash = strchr(key, '/');
        if (!f->ns[0] && slash && streq(slash, f->prefix) &&
            (size_t) (slash - key) <= GW_NAMESPACE_MAX)
                memcpy(f->ns, key, (size_t) (slash - key));
}

/* For an op of the unbound backend on Sandbox name (the data plane and the
 * access tokens: their requests carry no namespace): binds this thread to
 * the namespace the cache has the Sandbox in, when that is not the
 * configured one (a caller's own namespace). ns holds it. True when bound:
 * the caller sets bound_ns back to NULL. Gateway names are 20 random
 * characters, so one name is in one namespace. */
static bool bind_to(Cluster *c, const char *name, char ns[GW_NAMESPACE_MAX + 1])
{
        if (bound_ns)
                return false;
        char key[512];
        json_object *o = NULL;
        int n = snprintf(key, sizeof(key), "%s/%s", c->ns, name);
        if (n > 0 && (size_t) n < sizeof(key) && k8s_informer_get(c->sandboxes, key, &o) == 0) {
                json_object_put(o);
                return false;
        }
        char suffix[256];
        n = snprintf(suffix, sizeof(suffix), "/%s", name);
        if (n < 0 || (size_t) n >= sizeof(suffix))
                return false;
        FindNs f = {.prefix = suffix};
        k8s_informer_foreach(c->sandboxes, find_ns, &f);
        if (!f.ns[0])
                return false;
        memcpy(ns, f.ns, sizeof(f.ns));
        bound_ns = ns;
        return true;
}

static int cache_key(const Cluster *c, const char *name, char *buf, size_t len)
{
        int n = snprintf(buf, len, "%s/%s", cluster_namespace(c), name);
        return n < 0 || (size_t) n >= len ? -ENAMETOOLONG : 0;
}

/* The cached Sandbox name; -ENOENT when the cache has none. */
static int cached(Cluster *c, const char *name, json_object **ret)
{
        char key[512];
        int r = cache_key(c, name, key, sizeof(key));
        return r < 0 ? r : k8s_informer_get(c->sandboxes, key, ret);
}

static bool terminating(json_object *sbx)
{
        return json_field(json_field(sbx, "metadata"), "deletionTimestamp") != NULL;
}

/* Sandbox name as it is now, not being deleted: from the cache, else from
 * the API (another replica may have made it a moment ago). */
static int live(Cluster *c, const char *name, json_object **ret, char *err, size_t errlen)
{
        json_object *obj = NULL;
        int r = cached(c, name, &obj);
        if (r == -ENOENT) {
                K8sError ke = {0};
                r = k8s_get(c->client, &sandboxes_res, cluster_namespace(c), name, &obj, &ke);
                if (r < 0 && r != -ENOENT) {
                        snprintf(err, errlen, "cannot read Sandbox %s: %s", name, ke.message);
                        return r;
                }
        }
        if (r < 0 || terminating(obj)) {
                json_object_put(obj);
                snprintf(err, errlen, "sandbox %s not found", name);
                return -ENOENT;
        }
        *ret = obj;
        return 0;
}

/* What a wait waits for: 1 reached, 0 not yet (err says where it stands),
 * < 0 never (err says why). obj is NULL when the cache has no such object. */
typedef int (*WaitFn)(json_object *obj, const void *userdata, char *err, size_t errlen);

static int wait_for(Cluster *c, const char *name, WaitFn fn, const void *userdata, char *err,
                    size_t errlen)
{
        uint64_t deadline = now_monotonic_us() + (uint64_t) c->timeout_ms * 1000u;
        for (;;) {
                pthread_mutex_lock(&c->lock);
                uint64_t seen = c->changes;
                bool stopping = c->stopping;
                pthread_mutex_unlock(&c->lock);
                json_object *obj = NULL;
                int r = cached(c, name, &obj);
                if (r < 0 && r != -ENOENT)
                        return r;
                r = fn(obj, userdata, err, errlen);
                json_object_put(obj);
                if (r != 0)
                        return r;
                if (stopping) {
                        snprintf(err, errlen, "the gateway is stopping");
                        return -ECANCELED;
                }
                uint64_t now = now_monotonic_us();
                if (now >= deadline) {
                        size_t n = strlen(err);
                        snprintf(err + n, errlen - n, " (after %.1f s)",
                                 (double) c->timeout_ms / 1000.0);
                        return -ETIMEDOUT;
                }
                long ms = (long) ((deadline - now) / 1000u) + 1;
                struct timespec ts;
                deadline_after_ms(&ts, ms < WAIT_POLL_MS ? ms : WAIT_POLL_MS);
                pthread_mutex_lock(&c->lock);
                while (c->changes == seen && !c->stopping)
                        if (pthread_cond_timedwait(&c->changed, &c->lock, &ts) == ETIMEDOUT)
                                break;
                pthread_mutex_unlock(&c->lock);
        }
}

static bool same_object(json_object *obj, const char *uid)
{
        const char *u = k8s_obj_uid(obj);
        return obj && u && streq(u, uid);
}

static int until_ready(json_object *obj, const void *uid, char *err, size_t errlen)
{
        if (!same_object(obj, uid)) {
                snprintf(err, errlen, "the Sandbox is not placed yet");
                return obj ? -ECANCELED : 0;
        }
        return gw_cluster_ready(obj, err, errlen);
}

static int until_gone(json_object *obj, const void *uid, char *err, size_t errlen)
{
        if (!same_object(obj, uid))
                return 1;
        snprintf(err, errlen, "the Sandbox is still being deleted");
        return 0;
}

typedef struct {
        const char *uid;
        int64_t generation;
        const char *phase; /* NULL: any */
} Acted;

/* The operator has acted on generation (and the phase is the one asked). */
static int until_acted(json_object *obj, const void *userdata, char *err, size_t errlen)
{
        const Acted *a = userdata;
        if (!same_object(obj, a->uid) || terminating(obj)) {
                snprintf(err, errlen, "the sandbox is gone");
                return -ENOENT;
        }
        json_object *st = json_field(obj, "status");
        const char *phase = json_str(st, "phase");
        if (phase && (streq(phase, "Failed") || streq(phase, "Expired"))) {
                snprintf(err, errlen, "the sandbox is %s", phase);
                return -EIO;
        }
        int64_t seen = json_int(st, "observedGeneration", 0);
        if (seen >= a->generation && (!a->phase || (phase && streq(phase, a->phase))))
                return 1;
        snprintf(err, errlen, "the operator has not acted on the change yet (phase %s)",
                 phase ? phase : "none");
        return 0;
}

static void api_error(char *err, size_t errlen, const char *what, const K8sError *ke, int r)
{
        snprintf(err, errlen, "%s: %s", what, ke->message[0] ? ke->message : strerror(-r));
}

/* Deletes the Sandbox with uid (a precondition: never a newer one of the
 * same name) and waits until it is gone or the timeout passes. */
static int delete_object(Cluster *c, const char *name, const char *uid, char *err, size_t errlen)
{
        K8sError ke = {0};
        int r = k8s_delete(c->client, &sandboxes_res, cluster_namespace(c), name,
                           &(K8sPreconditions){.uid = uid}, NULL, &ke);
        if (r == -ENOENT || r == -EBUSY || r == -EEXIST) {
                snprintf(err, errlen, "sandbox %s not found", name);
                return -ENOENT;
        }
        if (r < 0) {
                api_error(err, errlen, "cannot delete the Sandbox", &ke, r);
                return r;
        }
        char werr[256] = "";
        r = wait_for(c, name, until_gone, uid, werr, sizeof(werr));
        if (r == -ETIMEDOUT)
                log_warning("gateway: Sandbox %s/%s: %s; answered as deleted", cluster_namespace(c),
                            name, werr);
        return 0;
}

static int view(json_object *sbx, json_object **ret, char *err, size_t errlen)
{
        int r = gw_cluster_sandbox_view(sbx, ret);
        if (r < 0)
                snprintf(err, errlen, "cannot read the Sandbox");
        return r;
}

static int cluster_create(void *b, json_object *req, json_object **ret, char *err, size_t errlen)
{
        Cluster *c = b;
        char name[21];
        int r = random_id(name, 20);
        if (r < 0)
                return r;
        cleanup_json json_object *obj = NULL;
        r = gw_cluster_sandbox_new(req, cluster_namespace(c), name, &obj, err, errlen);
        if (r < 0)
                return r;
        cleanup_json json_object *made = NULL;
        K8sError ke = {0};
        r = k8s_create(c->client, &sandboxes_res, cluster_namespace(c), obj, &made, &ke);
        if (r < 0 && ke.status == 403 && strstr(ke.message, "exceeded quota")) {
                /* A ResourceQuota on count/sandboxes.sandpit.dev: E2B's 429
                 * (the SDK's RateLimitError), nothing made. */
                snprintf(err, errlen,
                         "namespace %s has as many sandboxes as its ResourceQuota allows; kill "
                         "one first (%s)",
                         cluster_namespace(c), ke.message);
                return -EAGAIN;
        }
        if (r < 0) {
                api_error(err, errlen, "cannot create the Sandbox", &ke, r);
                return r == -EEXIST ? -EBUSY : r;
        }
        const char *uid = k8s_obj_uid(made);
        if (!uid) {
                snprintf(err, errlen, "the API server answered a Sandbox without a uid");
                return -EIO;
        }
        r = wait_for(c, name, until_ready, uid, err, errlen);
        if (r != 1) {
                /* Nothing is left behind: the operator's finalizer removes
                 * the sandbox from its node before the object goes. */
                char derr[256] = "";
                int d = delete_object(c, name, uid, derr, sizeof(derr));
                if (d < 0 && d != -ENOENT)
                        log_warning("gateway: Sandbox %s/%s: %s", cluster_namespace(c), name, derr);
                if (r == -ETIMEDOUT) {
                        size_t n = strlen(err);
                        snprintf(err + n, errlen - n, "; deleted");
                }
                return r == 0 || r == -ECANCELED ? -EIO : r;
        }
        cleanup_json json_object *now = NULL;
        r = cached(c, name, &now);
        if (r < 0)
                return r;
        return view(now, ret, err, errlen);
}

static int cluster_get(void *b, const char *id, json_object **ret, char *err, size_t errlen)
{
        cleanup_json json_object *obj = NULL;
        int r = live(b, id, &obj, err, errlen);
        return r < 0 ? r : view(obj, ret, err, errlen);
}

typedef struct {
        const char *prefix; /* "namespace/" */
        json_object *list;
        int r;
} ListCtx;

static void list_one(const char *key, json_object *obj, void *userdata)
{
        ListCtx *l = userdata;
        const char *name = k8s_obj_name(obj);
        if (l->r < 0 || strncmp(key, l->prefix, strlen(l->prefix)) != 0 || terminating(obj) ||
            !name || !id_is_valid(name))
                return;
        json_object *v = NULL;
        l->r = gw_cluster_sandbox_view(obj, &v);
        if (l->r == 0 && json_object_array_add(l->list, v) < 0) {
                json_object_put(v);
                l->r = -ENOMEM;
        }
}

static int cluster_list(void *b, json_object **ret, char *err, size_t errlen)
{
        Cluster *c = b;
        char prefix[256];
        snprintf(prefix, sizeof(prefix), "%s/", cluster_namespace(c));
        ListCtx l = {.prefix = prefix, .list = json_object_new_array()};
        if (!l.list)
                return -ENOMEM;
        k8s_informer_foreach(c->sandboxes, list_one, &l);
        if (l.r < 0) {
                json_object_put(l.list);
                snprintf(err, errlen, "cannot list the Sandboxes");
                return l.r;
        }
        *ret = l.list;
        return 0;
}

static int cluster_remove(void *b, const char *id, char *err, size_t errlen)
{
        Cluster *c = b;
        cleanup_json json_object *obj = NULL;
        int r = live(c, id, &obj, err, errlen);
        return r < 0 ? r : delete_object(c, id, k8s_obj_uid(obj), err, errlen);
}

/* Merge-patches spec with patch and waits until the operator acted on it
 * (in phase, when not NULL). */
static int patch_spec(Cluster *c, json_object *obj, json_object *spec, const char *phase, char *err,
                      size_t errlen)
{
        const char *name = k8s_obj_name(obj);
        cleanup_json json_object *patch = json_object_new_object();
        if (!patch || json_object_object_add(patch, "spec", json_object_get(spec)) < 0)
                return -ENOMEM;
        cleanup_json json_object *out = NULL;
        K8sError ke = {0};
        int r = k8s_patch(c->client, &sandboxes_res, cluster_namespace(c), name, NULL,
                          K8S_PATCH_MERGE, patch, &out, &ke);
        if (r < 0) {
                api_error(err, errlen, "cannot change the Sandbox", &ke, r);
                return r;
        }
        Acted a = {.uid = k8s_obj_uid(obj),
                   .generation = json_int(json_field(out, "metadata"), "generation", 0),
                   .phase = phase};
        r = wait_for(c, name, until_acted, &a, err, errlen);
        return r < 0 ? r : 0;
}

/* spec {"timeout": ...} making obj expire timeout_s from now (added to spec). */
static int add_timeout(json_object *spec, json_object *obj, uint64_t timeout_s, char *err,
                       size_t errlen)
{
        char t[32];
        int r = gw_cluster_timeout_for(obj, now_realtime_us(), timeout_s, t, sizeof(t), err,
                                       errlen);
        if (r < 0)
                return r;
        json_object *s = json_object_new_string(t);
        if (!s || json_object_object_add(spec, "timeout", s) < 0) {
                json_object_put(s);
                return -ENOMEM;
        }
        return 0;
}

static int cluster_set_timeout(void *b, const char *id, uint64_t timeout_s, char *err,
                               size_t errlen)
{
        Cluster *c = b;
        cleanup_json json_object *obj = NULL, *spec = json_object_new_object();
        int r = live(c, id, &obj, err, errlen);
        if (r < 0)
                return r;
        if (!spec)
                return -ENOMEM;
        r = add_timeout(spec, obj, timeout_s, err, errlen);
        return r < 0 ? r : patch_spec(c, obj, spec, NULL, err, errlen);
}

static int cluster_pause(void *b, const char *id, char *err, size_t errlen)
{
        Cluster *c = b;
        cleanup_json json_object *obj = NULL, *spec = json_object_new_object();
        int r = live(c, id, &obj, err, errlen);
        if (r < 0)
                return r;
        const char *phase = json_str(json_field(obj, "status"), "phase");
        if (!phase || !streq(phase, "Running") ||
            json_boolean(json_field(obj, "spec"), "paused", false)) {
                snprintf(err, errlen, "sandbox %s is %s", id,
                         phase && streq(phase, "Paused") ? "already paused" : "not running");
                return -EBUSY;
        }
        if (!spec || json_object_object_add(spec, "paused", json_object_new_boolean(true)) < 0)
                return -ENOMEM;
        return patch_spec(c, obj, spec, "Paused", err, errlen);
}

/* The operator paused it at its deadline: condition Paused, reason DeadlineReached. */
static bool paused_at_deadline(json_object *obj)
{
        json_object *conds = json_field(json_field(obj, "status"), "conditions");
        size_t n =
                json_object_is_type(conds, json_type_array) ? json_object_array_length(conds) : 0;
        for (size_t i = 0; i < n; i++) {
                json_object *cd = json_object_array_get_idx(conds, i);
                const char *type = json_str(cd, "type"), *reason = json_str(cd, "reason");
                if (type && streq(type, "Paused"))
                        return reason && streq(reason, "DeadlineReached");
        }
        return false;
}

static int cluster_resume(void *b, const char *id, uint64_t timeout_s, json_object **ret, char *err,
                          size_t errlen)
{
        Cluster *c = b;
        cleanup_json json_object *obj = NULL, *spec = json_object_new_object();
        int r = live(c, id, &obj, err, errlen);
        if (r < 0)
                return r;
        if (!spec || json_object_object_add(spec, "paused", json_object_new_boolean(false)) < 0)
                return -ENOMEM;
        /* Paused at its deadline (expiryPolicy Pause): only a later deadline
         * resumes it; without a timeout it gets a new term of its own length
         * (as the agent's resume does in local mode). */
        long term = 0;
        if (!timeout_s && paused_at_deadline(obj) &&
            parse_duration_s(json_str(json_field(obj, "spec"), "timeout"), &term) == 0)
                timeout_s = (uint64_t) term;
        if (timeout_s > 0 && (r = add_timeout(spec, obj, timeout_s, err, errlen)) < 0)
                return r;
        r = patch_spec(c, obj, spec, "Running", err, errlen);
        if (r < 0)
                return r;
        json_object_put(TAKE_PTR(obj));
        r = cached(c, id, &obj);
        return r < 0 ? r : view(obj, ret, err, errlen);
}

/* A client of the agent of node. */
/* The live agent of node, from its Lease. */
static int node_agent(Cluster *c, const char *node, AgentInfo *ret, char *err, size_t errlen)
{
        AgentInfo a = {0};
        int r = agent_lease_find(c->leases, c->lease_ns, node, &a);
        if (r < 0 || !a.live) {
                snprintf(err, errlen, "node %s %s", node,
                         r < 0 ? "has no agent registered" : "stopped renewing its Lease");
                agent_info_done(&a);
                return -ECONNREFUSED;
        }
        *ret = a;
        return 0;
}

/* A client of the agent of node. */
static int node_client(Cluster *c, const char *node, AgentClient **ret, char *err, size_t errlen)
{
        AgentInfo a = {0};
        int r = node_agent(c, node, &a, err, errlen);
        if (r < 0)
                return r;
        r = agent_client_new(a.endpoint, c->agent_token, ret);
        if (r < 0)
                snprintf(err, errlen, "cannot reach the agent of node %s: %s", node, strerror(-r));
        agent_info_done(&a);
        return r;
}

/* Its slot in the agent id -> node cache (call with the lock held). */
static CachedNode *node_slot(Cluster *c, const char *agent_id)
{
        uint32_t h = 2166136261u; /* FNV-1a */
        for (const char *p = agent_id; *p; p++)
                h = (h ^ (uint8_t) *p) * 16777619u;
        return &c->nodes[h % NODE_CACHE_SLOTS];
}

static void node_remember(Cluster *c, const char *agent_id, const char *node)
{
        if (strlen(agent_id) > GW_ROUTE_ID_MAX || strlen(node) >= sizeof(c->nodes->node))
                return;
        pthread_mutex_lock(&c->lock);
        CachedNode *n = node_slot(c, agent_id);
        snprintf(n->agent_id, sizeof(n->agent_id), "%s", agent_id);
        snprintf(n->node, sizeof(n->node), "%s", node);
        pthread_mutex_unlock(&c->lock);
}

/* Where sandbox id runs: its agent's id and node (borrowed from *ret_obj). */
static int placement(Cluster *c, const char *id, json_object **ret_obj, const char **ret_agent_id,
                     const char **ret_node, char *err, size_t errlen)
{
        json_object *obj = NULL;
        int r = live(c, id, &obj, err, errlen);
        if (r < 0)
                return r;
        json_object *st = json_field(obj, "status");
        const char *phase = json_str(st, "phase");
        const char *aid = json_str(st, "sandboxID"), *node = json_str(st, "nodeName");
        if (!aid || !node || !phase || !(streq(phase, "Running") || streq(phase, "Paused"))) {
                json_object_put(obj);
                snprintf(err, errlen, "sandbox %s is not running", id);
                return -ENOENT;
        }
        *ret_obj = obj;
        *ret_agent_id = aid;
        *ret_node = node;
        return 0;
}

static int cluster_metrics(void *b, const char *id, int64_t start, int64_t end, json_object **ret,
                           char *err, size_t errlen)
{
        Cluster *c = b;
        cleanup_json json_object *obj = NULL;
        const char *aid = NULL, *node = NULL;
        int r = placement(c, id, &obj, &aid, &node, err, errlen);
        if (r < 0)
                return r;
        cleanup_agent_client AgentClient *ac = NULL;
        r = node_client(c, node, &ac, err, errlen);
        if (r < 0)
                return r;
        r = agent_client_metrics(ac, aid, start, end, ret);
        if (r < 0) {
                const AgentClientError *e = agent_client_error(ac);
                snprintf(err, errlen, "%s", e->message[0] ? e->message : strerror(-r));
        }
        return r;
}

static int agent_id_here(void *b, const char *id, char *ret, size_t retlen, char *err,
                         size_t errlen)
{
        Cluster *c = b;
        cleanup_json json_object *obj = NULL;
        const char *aid = NULL, *node = NULL;
        int r = placement(c, id, &obj, &aid, &node, err, errlen);
        if (r < 0)
                return r;
        if (strlen(aid) >= retlen) {
                snprintf(err, errlen, "sandbox %s has an agent id too long", id);
                return -ENAMETOOLONG;
        }
        node_remember(c, aid, node);
        memcpy(ret, aid, strlen(aid) + 1);
        return 0;
}

typedef struct {
        const char *prefix;
        const char *agent_id;
        char *node;
} FindNode;

static void find_node(const char *key, json_object *obj, void *userdata)
{
        FindNode *f = userdata;
        json_object *st = json_field(obj, "status");
        const char *aid = json_str(st, "sandboxID"), *node = json_str(st, "nodeName");
        if (!f->node && aid && node && streq(aid, f->agent_id) &&
            strncmp(key, f->prefix, strlen(f->prefix)) == 0)
                f->node = strdup(node);
}

/* The node holding the sandbox the agent knows as agent_id (the data plane
 * speaks the agent's id: agent_id above), from the cache; malloc'd. */
static int node_of(Cluster *c, const char *agent_id, char **ret, char *err, size_t errlen)
{
        pthread_mutex_lock(&c->lock);
        CachedNode *n = node_slot(c, agent_id);
        char *hit = streq(n->agent_id, agent_id) ? strdup(n->node) : NULL;
        pthread_mutex_unlock(&c->lock);
        if (hit) {
                *ret = hit;
                return 0;
        }
        /* Not resolved by agent_id on this replica lately: look through the
         * cached Sandboxes. */
        char prefix[256] = "";
        if (bound_ns) /* else the data plane: any namespace (agent ids are unique) */
                snprintf(prefix, sizeof(prefix), "%s/", bound_ns);
        FindNode f = {.prefix = prefix, .agent_id = agent_id};
        k8s_informer_foreach(c->sandboxes, find_node, &f);
        if (!f.node) {
                snprintf(err, errlen, "sandbox not found");
                return -ENOENT;
        }
        *ret = f.node;
        return 0;
}

static int cluster_agent(void *b, const char *agent_id, AgentClient **ret, char *err, size_t errlen)
{
        Cluster *c = b;
        cleanup_free char *node = NULL;
        int r = node_of(c, agent_id, &node, err, errlen);
        return r < 0 ? r : node_client(c, node, ret, err, errlen);
}

/* The port proxy: the endpoint of the agent (and its token). */
static int cluster_agent_address(void *b, const char *agent_id, char **url, char **token, char *err,
                                 size_t errlen)
{
        Cluster *c = b;
        cleanup_free char *node = NULL;
        AgentInfo a = {0};
        int r = node_of(c, agent_id, &node, err, errlen);
        if (r >= 0)
                r = node_agent(c, node, &a, err, errlen);
        if (r < 0)
                return r;
        char *t = strdup(c->agent_token);
        if (!t) {
                agent_info_done(&a);
                return -ENOMEM;
        }
        *url = TAKE_PTR(a.endpoint);
        *token = t;
        agent_info_done(&a);
        return 0;
}

/* --- access tokens: a Secret per sandbox, owned by its Sandbox ------------ */

static int secret_name(const char *id, char *buf, size_t len)
{
        int n = snprintf(buf, len, GW_CLUSTER_TOKEN_SECRET_PREFIX "%s", id);
        return n < 0 || (size_t) n >= len ? -ENAMETOOLONG : 0;
}

/* Called with the lock held. */
static CachedToken *token_find(Cluster *c, const char *id)
{
        for (size_t i = 0; i < c->n_tokens; i++)
                if (streq(c->tokens[i].id, id))
                        return &c->tokens[i];
        return NULL;
}

static void token_cache(Cluster *c, const char *id, const char *uid, const char *token)
{
        if (strlen(id) > GW_ROUTE_ID_MAX || strlen(uid) >= sizeof(c->tokens->uid))
                return;
        pthread_mutex_lock(&c->lock);
        CachedToken *t = token_find(c, id);
        if (!t && c->n_tokens >= TOKEN_CACHE_MAX) {
                /* Full: start over (each entry is one GET away). */
                explicit_bzero(c->tokens, c->n_tokens * sizeof(*c->tokens));
                c->n_tokens = 0;
        }
        if (!t) {
                CachedToken *n = realloc(c->tokens, (c->n_tokens + 1) * sizeof(*n));
                if (n) {
                        c->tokens = n;
                        t = &c->tokens[c->n_tokens++];
                }
        }
        if (t) {
                snprintf(t->id, sizeof(t->id), "%s", id);
                snprintf(t->ns, sizeof(t->ns), "%s", cluster_namespace(c));
                snprintf(t->uid, sizeof(t->uid), "%s", uid);
                memcpy(t->token, token, GW_TOKEN_LEN + 1);
        }
        pthread_mutex_unlock(&c->lock);
}

static void token_uncache(Cluster *c, const char *id)
{
        pthread_mutex_lock(&c->lock);
        CachedToken *t = token_find(c, id);
        if (t) {
                size_t i = (size_t) (t - c->tokens);
                explicit_bzero(t, sizeof(*t));
                memmove(t, t + 1, (c->n_tokens - i - 1) * sizeof(*t));
                c->n_tokens--;
        }
        pthread_mutex_unlock(&c->lock);
}

static json_object *secret_new(const Cluster *c, const char *name, const char *id, const char *uid,
                               const char *token_b64)
{
        char text[1024];
        /* Built as text: only names, a uid and base64 go in. */
        int n = snprintf(text, sizeof(text),
                         "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"type\":\"Opaque\","
                         "\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\","
                         "\"labels\":{\"" GW_CLUSTER_LABEL_CREATED_BY "\":\"" GW_CLUSTER_CREATED_BY
                         "\"},"
                         "\"ownerReferences\":[{\"apiVersion\":\"sandpit.dev/v1alpha1\","
                         "\"kind\":\"Sandbox\",\"name\":\"%s\",\"uid\":\"%s\"}]},"
                         "\"data\":{\"token\":\"%s\"}}",
                         name, cluster_namespace(c), id, uid, token_b64);
        json_object *o = n > 0 && (size_t) n < sizeof(text) ? json_tokener_parse(text) : NULL;
        explicit_bzero(text, sizeof(text));
        return o;
}

static int token_put_here(void *b, const char *id, const char *token)
{
        Cluster *c = b;
        char err[256] = "", name[128];
        cleanup_json json_object *obj = NULL;
        int r = secret_name(id, name, sizeof(name));
        if (r < 0)
                return r;
        r = live(c, id, &obj, err, sizeof(err));
        if (r < 0)
                return r;
        const char *uid = k8s_obj_uid(obj);
        cleanup_free char *b64 = NULL;
        r = base64_encode(token, strlen(token), &b64);
        if (r < 0)
                return r;
        cleanup_json json_object *secret = uid ? secret_new(c, name, id, uid, b64) : NULL;
        explicit_bzero(b64, strlen(b64));
        if (!secret)
                return -ENOMEM;
        K8sError ke = {0};
        r = k8s_create(c->client, &secrets_res, cluster_namespace(c), secret, NULL, &ke);
        if (r < 0) {
                log_warning_errno(r,
                                  "gateway: cannot keep the access token of %s in Secret %s/%s: %s",
                                  id, cluster_namespace(c), name, ke.message);
                return r;
        }
        token_cache(c, id, uid, token);
        return 0;
}

static int token_get_here(void *b, const char *id, char *ret, size_t retlen)
{
        Cluster *c = b;
        char err[256] = "", name[128];
        if (retlen < GW_TOKEN_LEN + 1 || secret_name(id, name, sizeof(name)) < 0)
                return -EINVAL;
        cleanup_json json_object *obj = NULL;
        int r = live(c, id, &obj, err, sizeof(err));
        const char *uid = r == 0 ? k8s_obj_uid(obj) : NULL;
        if (!uid)
                return -ENOENT;
        pthread_mutex_lock(&c->lock);
        CachedToken *t = token_find(c, id);
        bool hit = t && streq(t->uid, uid);
        if (hit)
                memcpy(ret, t->token, GW_TOKEN_LEN + 1);
        pthread_mutex_unlock(&c->lock);
        if (hit)
                return 0;
        cleanup_json json_object *secret = NULL;
        K8sError ke = {0};
        r = k8s_get(c->client, &secrets_res, cluster_namespace(c), name, &secret, &ke);
        if (r < 0) {
                if (r != -ENOENT)
                        log_warning_errno(r, "gateway: cannot read Secret %s/%s: %s",
                                          cluster_namespace(c), name, ke.message);
                return r;
        }
        /* A Secret left by an earlier Sandbox of the same name is not this
         * one's: it must be owned by this very object. */
        json_object *owners = json_field(json_field(secret, "metadata"), "ownerReferences");
        const char *owner = json_object_is_type(owners, json_type_array)
                                    ? json_str(json_object_array_get_idx(owners, 0), "uid")
                                    : NULL;
        const char *b64 = json_str(json_field(secret, "data"), "token");
        if (!owner || !streq(owner, uid) || !b64)
                return -ENOENT;
        cleanup_free uint8_t *raw = NULL;
        size_t len = 0;
        r = base64_decode(b64, &raw, &len);
        if (r < 0 || len != GW_TOKEN_LEN) {
                if (raw)
                        explicit_bzero(raw, len);
                return -ENOENT;
        }
        memcpy(ret, raw, GW_TOKEN_LEN);
        ret[GW_TOKEN_LEN] = 0;
        explicit_bzero(raw, len);
        token_cache(c, id, uid, ret);
        return 0;
}

static void token_remove_here(void *b, const char *id)
{
        Cluster *c = b;
        char name[128];
        token_uncache(c, id);
        if (secret_name(id, name, sizeof(name)) < 0)
                return;
        /* The garbage collector deletes it with its Sandbox too; this does
         * it at once, and where no collector runs. */
        K8sError ke = {0};
        int r = k8s_delete(c->client, &secrets_res, cluster_namespace(c), name, NULL, NULL, &ke);
        if (r < 0 && r != -ENOENT)
                log_warning_errno(r, "gateway: cannot delete Secret %s/%s: %s",
                                  cluster_namespace(c), name, ke.message);
}

/* The data plane's ops and the access tokens, in the Sandbox's namespace. */
static int cluster_agent_id(void *b, const char *id, char *ret, size_t retlen, char *err,
                            size_t errlen)
{
        char ns[GW_NAMESPACE_MAX + 1];
        bool bound = bind_to(b, id, ns);
        int r = agent_id_here(b, id, ret, retlen, err, errlen);
        if (bound)
                bound_ns = NULL;
        return r;
}

static int cluster_token_put(void *b, const char *id, const char *token)
{
        char ns[GW_NAMESPACE_MAX + 1];
        bool bound = bind_to(b, id, ns);
        int r = token_put_here(b, id, token);
        if (bound)
                bound_ns = NULL;
        return r;
}

static int cluster_token_get(void *b, const char *id, char *ret, size_t retlen)
{
        char ns[GW_NAMESPACE_MAX + 1];
        bool bound = bind_to(b, id, ns);
        int r = token_get_here(b, id, ret, retlen);
        if (bound)
                bound_ns = NULL;
        return r;
}

/* After a kill the Sandbox is gone: the namespace is the one its token was
 * cached in (else the garbage collector deletes the Secret). */
static void cluster_token_remove(void *b, const char *id)
{
        Cluster *c = b;
        char ns[GW_NAMESPACE_MAX + 1] = "";
        pthread_mutex_lock(&c->lock);
        CachedToken *t = bound_ns ? NULL : token_find(c, id);
        if (t)
                memcpy(ns, t->ns, sizeof(ns));
        pthread_mutex_unlock(&c->lock);
        bool bound = ns[0] != 0;
        if (bound)
                bound_ns = ns;
        token_remove_here(b, id);
        if (bound)
                bound_ns = NULL;
}

/* ---- the backend as one namespace sees it: every op in that namespace */

typedef struct {
        Cluster *c;
        const char *ns;
} ClusterView;

_Static_assert(sizeof(ClusterView) <= GW_BACKEND_VIEW_SIZE, "GW_BACKEND_VIEW_SIZE");

#define VIEW_BEGIN(b)                  \
        ClusterView *v_ = b;           \
        const char *saved_ = bound_ns; \
        bound_ns = v_->ns
#define VIEW_END() bound_ns = saved_

static int v_create(void *b, json_object *req, json_object **ret, char *err, size_t errlen)
{
        VIEW_BEGIN(b);
        int r = cluster_create(v_->c, req, ret, err, errlen);
        VIEW_END();
        return r;
}

static int v_get(void *b, const char *id, json_object **ret, char *err, size_t errlen)
{
        VIEW_BEGIN(b);
        int r = cluster_get(v_->c, id, ret, err, errlen);
        VIEW_END();
        return r;
}

static int v_list(void *b, json_object **ret, char *err, size_t errlen)
{
        VIEW_BEGIN(b);
        int r = cluster_list(v_->c, ret, err, errlen);
        VIEW_END();
        return r;
}

static int v_remove(void *b, const char *id, char *err, size_t errlen)
{
        VIEW_BEGIN(b);
        int r = cluster_remove(v_->c, id, err, errlen);
        VIEW_END();
        return r;
}

static int v_set_timeout(void *b, const char *id, uint64_t timeout_s, char *err, size_t errlen)
{
        VIEW_BEGIN(b);
        int r = cluster_set_timeout(v_->c, id, timeout_s, err, errlen);
        VIEW_END();
        return r;
}

static int v_pause(void *b, const char *id, char *err, size_t errlen)
{
        VIEW_BEGIN(b);
        int r = cluster_pause(v_->c, id, err, errlen);
        VIEW_END();
        return r;
}

static int v_resume(void *b, const char *id, uint64_t timeout_s, json_object **ret, char *err,
                    size_t errlen)
{
        VIEW_BEGIN(b);
        int r = cluster_resume(v_->c, id, timeout_s, ret, err, errlen);
        VIEW_END();
        return r;
}

static int v_metrics(void *b, const char *id, int64_t start, int64_t end, json_object **ret,
                     char *err, size_t errlen)
{
        VIEW_BEGIN(b);
        int r = cluster_metrics(v_->c, id, start, end, ret, err, errlen);
        VIEW_END();
        return r;
}

static int v_agent_id(void *b, const char *id, char *ret, size_t retlen, char *err, size_t errlen)
{
        VIEW_BEGIN(b);
        int r = agent_id_here(v_->c, id, ret, retlen, err, errlen);
        VIEW_END();
        return r;
}

static int v_agent(void *b, const char *agent_id, AgentClient **ret, char *err, size_t errlen)
{
        VIEW_BEGIN(b);
        int r = cluster_agent(v_->c, agent_id, ret, err, errlen);
        VIEW_END();
        return r;
}

static int v_agent_address(void *b, const char *agent_id, char **url, char **token, char *err,
                           size_t errlen)
{
        VIEW_BEGIN(b);
        int r = cluster_agent_address(v_->c, agent_id, url, token, err, errlen);
        VIEW_END();
        return r;
}

static const GwBackendOps view_ops = {
        .create = v_create,
        .get = v_get,
        .list = v_list,
        .remove = v_remove,
        .set_timeout = v_set_timeout,
        .pause = v_pause,
        .resume = v_resume,
        .metrics = v_metrics,
        .agent = v_agent,
        .agent_address = v_agent_address,
        .agent_id = v_agent_id,
        .free = NULL, /* a view: the server owns the backend */
};

static void cluster_in_namespace(void *b, const char *ns, void *view, GwBackend *ret)
{
        ClusterView *v = view;
        *v = (ClusterView){.c = b, .ns = ns};
        ret->ops = &view_ops;
        ret->data = v;
}

static void cluster_free(void *b)
{
        Cluster *c = b;
        if (!c)
                return;
        free(c->lease_ns);
        free(c->ns);
        if (c->agent_token)
                explicit_bzero(c->agent_token, strlen(c->agent_token));
        free(c->agent_token);
        if (c->tokens)
                explicit_bzero(c->tokens, c->n_tokens * sizeof(*c->tokens));
        free(c->tokens);
        pthread_cond_destroy(&c->changed);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

static const GwBackendOps cluster_ops = {
        .create = cluster_create,
        .get = cluster_get,
        .list = cluster_list,
        .remove = cluster_remove,
        .set_timeout = cluster_set_timeout,
        .pause = cluster_pause,
        .resume = cluster_resume,
        .metrics = cluster_metrics,
        .agent = cluster_agent,
        .agent_address = cluster_agent_address,
        .agent_id = cluster_agent_id,
        .token_put = cluster_token_put,
        .token_get = cluster_token_get,
        .token_remove = cluster_token_remove,
        .in_namespace = cluster_in_namespace,
        .free = cluster_free,
};

int gw_backend_cluster_new(const GwClusterConfig *cfg, GwBackend *ret)
{
        if (!cfg->client || !cfg->sandboxes || !cfg->leases || !cfg->lease_namespace ||
            !cfg->namespace || !cfg->agent_token)
                return -EINVAL;
        Cluster *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        pthread_mutex_init(&c->lock, NULL);
        cond_init_monotonic(&c->changed);
        c->client = cfg->client;
        c->sandboxes = cfg->sandboxes;
        c->leases = cfg->leases;
        c->timeout_ms =
                cfg->create_timeout_ms > 0 ? cfg->create_timeout_ms : GW_CLUSTER_CREATE_TIMEOUT_MS;
        c->lease_ns = strdup(cfg->lease_namespace);
        c->ns = strdup(cfg->namespace);
        c->agent_token = strdup(cfg->agent_token);
        if (!c->lease_ns || !c->ns || !c->agent_token) {
                cluster_free(c);
                return -ENOMEM;
        }
        *ret = (GwBackend){.ops = &cluster_ops, .data = c};
        return 0;
}

void gw_backend_cluster_notify(void *data)
{
        Cluster *c = data;
        if (!c)
                return;
        pthread_mutex_lock(&c->lock);
        c->changes++;
        pthread_cond_broadcast(&c->changed);
        pthread_mutex_unlock(&c->lock);
}

void gw_backend_cluster_shutdown(void *data)
{
        Cluster *c = data;
        if (!c)
                return;
        pthread_mutex_lock(&c->lock);
        c->stopping = true;
        pthread_cond_broadcast(&c->changed);
        pthread_mutex_unlock(&c->lock);
}
