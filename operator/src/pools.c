/* Warm pools of SandboxTemplates (docs/operator.md#warm-pools): a template's
 * spec.warmPool becomes the pool "sbxt-<uid>" on each live agent (PUT
 * /v1/pools with the shape a Sandbox of the template is created with, so its
 * creates claim from it), sized per node or spread from a total. One pass
 * (pools_sync()) reads each live agent's pools once (GET /v1/pools), puts
 * what differs, deletes the operator's pools no template wants, keeps the
 * agents' views for the scheduler and writes each template's
 * status.warmPool. It runs from the work queue (key POOLS_KEY) on template
 * and agent events and at every periodic resync: no polling of its own. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define POOLS_AGENT_TIMEOUT_MS 120000L /* a PUT of an image pool pulls it */

/* One pool as the last pass saw it on one node. */
struct PoolView {
        char *node;
        char *pool;
        long ready;
        struct PoolView *next;
};

static size_t strv_count(char **v)
{
        size_t n = 0;
        while (v && v[n])
                n++;
        return n;
}

static void views_free(PoolView *v)
{
        while (v) {
                PoolView *n = v->next;
                free(v->node);
                free(v->pool);
                free(v);
                v = n;
        }
}

void pools_free(Operator *op)
{
        views_free(op->pool_views);
        op->pool_views = NULL;
}

int pools_spec(json_object *tmpl, WarmPoolSpec *ret)
{
        json_object *w = json_field(json_field(tmpl, "spec"), "warmPool");
        if (!w || !json_object_is_type(w, json_type_object))
                return -ENOENT;
        json_object *per = json_field(w, "sizePerNode"), *total = json_field(w, "total");
        /* The schema allows exactly one; anything else is not acted on. */
        if (!per == !total)
                return -EINVAL;
        json_object *v = per ? per : total;
        if (!json_object_is_type(v, json_type_int))
                return -EINVAL;
        int64_t n = json_object_get_int64(v);
        if (n < 0 || n > POOLS_MAX_SIZE)
                return -EINVAL;
        *ret = (WarmPoolSpec){.per_node = !!per, .size = (unsigned) n};
        return 0;
}

unsigned pools_node_size(const WarmPoolSpec *w, size_t nodes, size_t index)
{
        if (w->per_node)
                return w->size;
        if (!nodes || index >= nodes)
                return 0;
        unsigned each = (unsigned) (w->size / nodes);
        return each + (index < w->size % nodes ? 1u : 0u);
}

int pools_name(json_object *tmpl, char *buf, size_t len)
{
        const char *uid = k8s_obj_uid(tmpl);
        if (!uid || !*uid)
                return -EINVAL;
        int n = snprintf(buf, len, POOLS_NAME_PREFIX "%s", uid);
        return n < 0 || (size_t) n >= len ? -ENAMETOOLONG : 0;
}

int pools_request(json_object *tmpl, json_object **ret, char *msg, size_t msglen)
{
        SandboxTemplateInfo t = {0};
        int r = sandbox_template_from_object(tmpl, &t, msg, msglen);
        if (r < 0)
                return r;
        SandboxResources res = {0};
        r = sandbox_resources(NULL, &t, &res);
        if (r < 0) {
                snprintf(msg, msglen, "spec.resources: not a quantity");
                sandbox_template_done(&t);
                return -EINVAL;
        }
        if (t.start_cmd || t.runtime || t.build) {
                snprintf(msg, msglen, "%s",
                         t.start_cmd ? "a template with a startCmd is never pooled (its "
                                       "sandboxes start it)"
                         : t.build   ? "a template with source.build is not pooled yet (its "
                                       "image is built at a sandbox's create)"
                                     : "a template that names a runtime is never pooled (the "
                                       "nodes' pools run their default runtime)");
                sandbox_template_done(&t);
                return -ENOTSUP;
        }
        /* As sandbox_create_body() puts them: equal shapes claim. */
        json_object *o = json_object_new_object();
        json_object_object_add(o, "template", json_object_new_string(t.agent_template));
        json_object_object_add(o, "cpu", json_object_new_double(res.cpu));
        json_object_object_add(o, "memory", json_object_new_uint64(res.memory));
        json_object_object_add(o, "pids", json_object_new_int64(res.pids));
        json_object_object_add(o, "disk", json_object_new_uint64(res.disk));
        /* A pre-started python kernel only where python is offered (or not said). */
        json_object *langs = json_field(json_field(tmpl, "spec"), "languages");
        bool python = !langs || !json_object_is_type(langs, json_type_array);
        size_t nl = python ? 0 : json_object_array_length(langs);
        for (size_t i = 0; i < nl && !python; i++)
                python = streq(json_object_get_string(json_object_array_get_idx(langs, i)) ?: "",
                               "python");
        json_object_object_add(o, "kernel", json_object_new_boolean(python));
        sandbox_template_done(&t);
        *ret = o;
        return 0;
}

static bool int_equal(json_object *a, json_object *b)
{
        return a && b && json_object_get_int64(a) == json_object_get_int64(b);
}

bool pools_same_shape(json_object *pool, json_object *req)
{
        /* An image's pool is named canonically by the agent: compared as
         * asked, and as the agent named it. */
        const char *asked = json_str(pool, "requested_template"), *t = json_str(pool, "template");
        const char *want = json_str(req, "template");
        json_object *cpu = json_field(pool, "cpu"), *wcpu = json_field(req, "cpu");
        return want && ((asked && streq(asked, want)) || (t && streq(t, want))) && cpu && wcpu &&
               fabs(json_object_get_double(cpu) - json_object_get_double(wcpu)) < 1e-6 &&
               int_equal(json_field(pool, "memory"), json_field(req, "memory")) &&
               int_equal(json_field(pool, "pids"), json_field(req, "pids")) &&
               int_equal(json_field(pool, "disk"), json_field(req, "disk"));
}

bool pools_same(json_object *pool, json_object *req, unsigned size)
{
        /* As asked: a pool put with another spelling of its image is put again. */
        const char *t = json_str(pool, "requested_template") ?: json_str(pool, "template");
        const char *want = json_str(req, "template");
        json_object *sz = json_field(pool, "size");
        return t && want && streq(t, want) && pools_same_shape(pool, req) &&
               json_object_get_boolean(json_field(pool, "kernel")) ==
                       json_object_get_boolean(json_field(req, "kernel")) &&
               sz && json_object_get_int64(sz) == (int64_t) size;
}

/* A template that wants pools, for one pass. */
typedef struct {
        json_object *obj; /* the cached template */
        char name[64];    /* its pool's name */
        WarmPoolSpec spec;
        json_object *req; /* the PUT body without size; NULL: cannot be pooled */
        char msg[384];    /* why not, or the last agent's refusal */
        long ready, total;
} Want;

static void wants_free(Want *w, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                json_object_put(w[i].obj);
                json_object_put(w[i].req);
        }
        free(w);
}

static int by_node(const void *a, const void *b)
{
        return strcmp(((const AgentInfo *) a)->node, ((const AgentInfo *) b)->node);
}

/* The live agents, sorted by node name (the spread of a total follows it). */
static int live_agents(Operator *op, AgentInfo **ret, size_t *ret_n)
{
        cleanup_strv char **keys = NULL;
        int r = k8s_informer_keys(op->leases, &keys);
        if (r < 0)
                return r;
        size_t n = 0, cap = strv_count(keys);
        AgentInfo *a = calloc(cap ? cap : 1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        uint64_t now = now_realtime_us();
        STRV_FOREACH(k, keys) {
                json_object *lease = NULL;
                if (k8s_informer_get(op->leases, *k, &lease) < 0)
                        continue;
                r = agent_info_from_lease(lease, now, &a[n]);
                json_object_put(lease);
                if (r < 0)
                        continue;
                if (a[n].live && a[n].endpoint && a[n].node)
                        n++;
                else
                        agent_info_done(&a[n]);
        }
        qsort(a, n, sizeof(*a), by_node);
        *ret = a;
        *ret_n = n;
        return 0;
}

/* The older template first (then by namespace and name): of two with one
 * shape, it is the one that gets the pool where neither has it yet. */
static int by_age(const void *a, const void *b)
{
        json_object *x = ((const Want *) a)->obj, *y = ((const Want *) b)->obj;
        const char *tx = json_str(json_field(x, "metadata"), "creationTimestamp") ?: "";
        const char *ty = json_str(json_field(y, "metadata"), "creationTimestamp") ?: "";
        int c = strcmp(tx, ty);
        if (c == 0)
                c = strcmp(k8s_obj_namespace(x) ?: "", k8s_obj_namespace(y) ?: "");
        return c ? c : strcmp(k8s_obj_name(x) ?: "", k8s_obj_name(y) ?: "");
}

static Want *wanted(Operator *op, size_t *ret_n)
{
        cleanup_strv char **keys = NULL;
        if (k8s_informer_keys(op->templates, &keys) < 0)
                return NULL;
        size_t n = 0;
        Want *w = calloc(strv_count(keys) + 1, sizeof(*w));
        if (!w)
                return NULL;
        STRV_FOREACH(k, keys) {
                json_object *o = NULL;
                if (k8s_informer_get(op->templates, *k, &o) < 0)
                        continue;
                Want *x = &w[n];
                if (json_field(json_field(o, "metadata"), "deletionTimestamp") ||
                    pools_spec(o, &x->spec) < 0 || pools_name(o, x->name, sizeof(x->name)) < 0) {
                        json_object_put(o);
                        continue;
                }
                x->obj = o;
                if (pools_request(o, &x->req, x->msg, sizeof(x->msg)) < 0)
                        x->req = NULL;
                n++;
        }
        qsort(w, n, sizeof(*w), by_age);
        *ret_n = n;
        return w;
}

static json_object *find_pool(json_object *pools, const char *name)
{
        size_t n =
                json_object_is_type(pools, json_type_array) ? json_object_array_length(pools) : 0;
        for (size_t i = 0; i < n; i++) {
                json_object *p = json_object_array_get_idx(pools, i);
                const char *pn = json_str(p, "name");
                if (pn && streq(pn, name))
                        return p;
        }
        return NULL;
}

static int add_view(PoolView **views, const char *node, const char *pool, long ready)
{
        PoolView *v = calloc(1, sizeof(*v));
        if (!v || !(v->node = strdup(node)) || !(v->pool = strdup(pool))) {
                views_free(v);
                return -ENOMEM;
        }
        v->ready = ready;
        v->next = *views;
        *views = v;
        return 0;
}

/* The want that keeps the pool named name on this node, or NULL. */
static Want *keeper(Want *w, size_t nw, const char *name, size_t nodes, size_t index)
{
        for (size_t i = 0; i < nw; i++)
                if (streq(w[i].name, name) && w[i].req &&
                    pools_node_size(&w[i].spec, nodes, index) > 0)
                        return &w[i];
        return NULL;
}

/* The agent keys its pools by shape as well as by name (a second pool of
 * one shape is refused, 409, at every pass): the pool of another name that
 * has, or will have once this pass is done, x's shape on this agent, or
 * NULL. A pool there already keeps its shape; of two new ones the older
 * template's is put. *ret_owner: the template whose pool it is, when it is
 * one of the operator's. */
static const char *shape_taken(json_object *have, Want *w, size_t nw, const Want *x, size_t nodes,
                               size_t index, const Want **ret_owner)
{
        *ret_owner = NULL;
        size_t n = json_object_is_type(have, json_type_array) ? json_object_array_length(have) : 0;
        for (size_t j = 0; j < n; j++) {
                json_object *shape = json_object_array_get_idx(have, j);
                const char *name = json_str(shape, "name");
                const Want *k = NULL;
                if (!name || streq(name, x->name))
                        continue;
                if (strncmp(name, POOLS_NAME_PREFIX, strlen(POOLS_NAME_PREFIX)) == 0) {
                        /* the operator's: deleted already, or put with its template's shape */
                        if (!(k = keeper(w, nw, name, nodes, index)))
                                continue;
                        shape = k->req;
                }
                if (pools_same_shape(shape, x->req)) {
                        *ret_owner = k;
                        return name;
                }
        }
        if (find_pool(have, x->name))
                return NULL;
        for (const Want *k = w; k < x; k++)
                if (k->req && pools_node_size(&k->spec, nodes, index) > 0 &&
                    !find_pool(have, k->name) && pools_same_shape(k->req, x->req)) {
                        *ret_owner = k;
                        return k->name;
                }
        return NULL;
}

/* One agent: its pools made to match the wants; views of what it has. The
 * operator's pools no template wants here go first, so that their shapes
 * are free for the puts. */
static int sync_agent(Operator *op, const AgentInfo *a, size_t nodes, size_t index, Want *w,
                      size_t nw, PoolView **views)
{
        const AgentConn c = {.endpoint = a->endpoint,
                             .token = op->agent_token,
                             .timeout_ms = POOLS_AGENT_TIMEOUT_MS};
        AgentClientError ae = {0};
        cleanup_json json_object *resp = NULL;
        int r = op->agent->pools(&c, &resp, &ae);
        if (r < 0)
                return log_warning_errno(r, "Warm pools: node %s: cannot list its pools: %ld %s",
                                         a->node, ae.status, agent_error_message(&ae));
        json_object *have = json_field(resp, "pools");
        /* The operator's pools (its prefix) that no template wants here. */
        size_t n = json_object_is_type(have, json_type_array) ? json_object_array_length(have) : 0;
        for (size_t j = 0; j < n; j++) {
                const char *name = json_str(json_object_array_get_idx(have, j), "name");
                if (!name || strncmp(name, POOLS_NAME_PREFIX, strlen(POOLS_NAME_PREFIX)) != 0 ||
                    keeper(w, nw, name, nodes, index))
                        continue;
                if (leader_check(op->leader) < 0)
                        return -ECANCELED;
                r = op->agent->pool_delete(&c, name, &ae);
                if (r < 0 && !agent_error_not_found(r, &ae)) {
                        log_warning("Warm pools: node %s: cannot delete pool %s: %ld %s", a->node,
                                    name, ae.status, agent_error_message(&ae));
                        continue;
                }
                log_info("Warm pools: node %s: pool %s removed (no template wants it)", a->node,
                         name);
        }
        /* The pools there first, then the new ones: the shapes they leave are free. */
        for (size_t step = 0; step < 2 * nw; step++) {
                size_t i = step % nw;
                unsigned size = w[i].req ? pools_node_size(&w[i].spec, nodes, index) : 0;
                json_object *p = find_pool(have, w[i].name);
                if (!size || (p != NULL) != (step < nw))
                        continue; /* not here: deleted above when it was there */
                if (p && pools_same(p, w[i].req, size)) {
                        json_object *ready = json_field(p, "ready");
                        long k = ready ? (long) json_object_get_int64(ready) : 0;
                        w[i].ready += k;
                        if (add_view(views, a->node, w[i].name, k) < 0)
                                return -ENOMEM;
                        continue;
                }
                /* A shape the node already pools under another name: not put
                 * (it would be refused, at every pass), and said why. */
                const Want *owner = NULL;
                const char *taken = shape_taken(have, w, nw, &w[i], nodes, index, &owner);
                if (taken) {
                        if (owner)
                                snprintf(w[i].msg, sizeof(w[i].msg),
                                         "no pool of its own: SandboxTemplate %.63s/%.63s has the "
                                         "same shape (template and resources), and node %.64s "
                                         "pools it once",
                                         k8s_obj_namespace(owner->obj), k8s_obj_name(owner->obj),
                                         a->node);
                        else
                                snprintf(w[i].msg, sizeof(w[i].msg),
                                         "no pool of its own: node %.64s's pool %.63s has the "
                                         "same shape (template and resources)",
                                         a->node, taken);
                        w[i].total -= size;
                        /* its old shape's pool: nothing claims from it now */
                        if (p && leader_check(op->leader) == 0 &&
                            (r = op->agent->pool_delete(&c, w[i].name, &ae)) < 0 &&
                            !agent_error_not_found(r, &ae))
                                log_warning("Warm pools: node %s: cannot delete pool %s: %ld %s",
                                            a->node, w[i].name, ae.status,
                                            agent_error_message(&ae));
                        continue;
                }
                if (leader_check(op->leader) < 0)
                        return -ECANCELED;
                cleanup_json json_object *req = NULL;
                if (json_object_deep_copy(w[i].req, &req, NULL) < 0)
                        return -ENOMEM;
                json_object_object_add(req, "size", json_object_new_int64(size));
                r = op->agent->pool_put(&c, w[i].name, req, &ae);
                if (r < 0) {
                        snprintf(w[i].msg, sizeof(w[i].msg), "node %.64s refused the pool: %.160s",
                                 a->node, agent_error_message(&ae));
                        log_warning("Warm pools: %s/%s: %s", k8s_obj_namespace(w[i].obj),
                                    k8s_obj_name(w[i].obj), w[i].msg);
                        continue;
                }
                log_info("Warm pools: node %s keeps %u of SandboxTemplate %s/%s (pool %s)", a->node,
                         size, k8s_obj_namespace(w[i].obj), k8s_obj_name(w[i].obj), w[i].name);
        }
        return 0;
}

json_object *pools_status_json(long ready, long total, const char *msg)
{
        json_object *o = json_object_new_object();
        json_object_object_add(o, "ready", json_object_new_int64(ready));
        json_object_object_add(o, "total", json_object_new_int64(total));
        if (msg && *msg)
                json_object_object_add(o, "message", json_object_new_string(msg));
        return o;
}

/* status.warmPool of tmpl made want (NULL: removed), when it differs. */
static void write_status(Operator *op, json_object *tmpl, json_object *want)
{
        json_object *cur = json_field(json_field(tmpl, "status"), "warmPool");
        if ((!cur && !want) || (cur && want && json_object_equal(cur, want)) ||
            leader_check(op->leader) < 0)
                return;
        cleanup_json json_object *patch = json_object_new_object();
        json_object *st = json_object_new_object();
        json_object_object_add(patch, "status", st);
        json_object *wp = NULL;
        if (want) {
                /* a merge patch keeps what it does not name: a message gone is null */
                wp = json_object_new_object();
                json_object_object_foreach(want, k, v)
                        json_object_object_add(wp, k, json_object_get(v));
                if (cur && json_object_is_type(cur, json_type_object)) {
                        json_object_object_foreach(cur, ck, cv) {
                                (void) cv;
                                if (!json_field(want, ck))
                                        json_object_object_add(wp, ck, NULL);
                        }
                }
        }
        json_object_object_add(st, "warmPool", wp);
        cleanup_json json_object *out = NULL;
        K8sError e = {0};
        int r = k8s_patch(op->client, &operator_templates, k8s_obj_namespace(tmpl),
                          k8s_obj_name(tmpl), "status", K8S_PATCH_MERGE, patch, &out, &e);
        if (r < 0 && r != -ENOENT)
                log_warning_errno(r, "Failed to patch the status of SandboxTemplate %s/%s: %s",
                                  k8s_obj_namespace(tmpl), k8s_obj_name(tmpl), e.message);
}

/* Templates without a warmPool whose status still shows one. */
static void clear_statuses(Operator *op)
{
        cleanup_strv char **keys = NULL;
        if (k8s_informer_keys(op->templates, &keys) < 0)
                return;
        STRV_FOREACH(k, keys) {
                cleanup_json json_object *o = NULL;
                WarmPoolSpec s = {0};
                if (k8s_informer_get(op->templates, *k, &o) >= 0 && pools_spec(o, &s) == -ENOENT)
                        write_status(op, o, NULL);
        }
}

long pools_sync(Operator *op)
{
        if (!op->templates)
                return 0;
        /* An empty cache before the first list would remove every pool. */
        if (!k8s_informer_has_synced(op->templates) || !k8s_informer_has_synced(op->leases))
                return -EAGAIN;
        AgentInfo *agents = NULL;
        size_t na = 0, nw = 0;
        int r = live_agents(op, &agents, &na);
        if (r < 0)
                return r;
        Want *w = wanted(op, &nw);
        if (!w) {
                free(agents);
                return -ENOMEM;
        }
        for (size_t i = 0; i < nw; i++)
                for (size_t j = 0; j < na && w[i].req; j++)
                        w[i].total += pools_node_size(&w[i].spec, na, j);
        PoolView *views = NULL;
        int failed = 0;
        for (size_t i = 0; i < na && r != -ECANCELED && r != -ENOMEM; i++) {
                r = sync_agent(op, &agents[i], na, i, w, nw, &views);
                if (r < 0)
                        failed = r;
        }
        for (size_t i = 0; i < na; i++)
                agent_info_done(&agents[i]);
        free(agents);
        if (r == -ECANCELED || r == -ENOMEM) {
                views_free(views);
                wants_free(w, nw);
                return r;
        }
        pthread_mutex_lock(&op->placements_lock);
        PoolView *old = op->pool_views;
        op->pool_views = views;
        pthread_mutex_unlock(&op->placements_lock);
        views_free(old);
        for (size_t i = 0; i < nw; i++) {
                cleanup_json json_object *st = pools_status_json(w[i].ready, w[i].total, w[i].msg);
                write_status(op, w[i].obj, st);
        }
        wants_free(w, nw);
        clear_statuses(op);
        log_debug("Warm pools: pass done (%zu agents, %zu templates with a warmPool)", na, nw);
        /* An agent that did not answer is tried again soon, not at the next resync. */
        return failed < 0 ? failed : 0;
}

long pools_ready_locked(Operator *op, const char *pool, const char *node)
{
        for (PoolView *v = op->pool_views; v; v = v->next)
                if (streq(v->pool, pool) && streq(v->node, node))
                        return v->ready;
        return 0;
}

void pools_take_locked(Operator *op, const char *pool, const char *node)
{
        for (PoolView *v = op->pool_views; v; v = v->next)
                if (streq(v->pool, pool) && streq(v->node, node) && v->ready > 0) {
                        v->ready--;
                        return;
                }
}

int pools_for_sandbox(json_object *sbx, const SandboxTemplateInfo *t, char *buf, size_t len)
{
        WarmPoolSpec s = {0};
        if (!t || !t->obj || t->start_cmd || t->runtime || t->build || pools_spec(t->obj, &s) < 0)
                return -ENOENT;
        SandboxResources mine = {0}, pooled = {0};
        if (sandbox_resources(sbx, t, &mine) < 0 || sandbox_resources(NULL, t, &pooled) < 0)
                return -ENOENT;
        if (fabs(mine.cpu - pooled.cpu) > 1e-6 || mine.memory != pooled.memory ||
            mine.disk != pooled.disk || mine.pids != pooled.pids)
                return -ENOENT;
        return pools_name(t->obj, buf, len);
}
