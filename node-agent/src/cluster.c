/* Cluster mode: the registration Lease and its heartbeat thread. */
#include "cluster.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sandpit/k8s-lease.h"
#include "sandpit/k8s-watch.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define BACKOFF_INITIAL_MS 500L
#define BACKOFF_MAX_MS     30000L
#define WRITE_ATTEMPTS     4 /* conflicts retried at once before backing off */

static const K8sResource leases = {"coordination.k8s.io", "v1", "leases", true};

struct Cluster {
        K8sClient *client;
        ClusterConfig cfg; /* strings owned below */
        char *node_name, *namespace, *endpoint, *capacity_cpu, *version;
        char *lease_name;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool stopping;
        /* Heartbeat thread only: the Lease as last written (its resourceVersion
         * makes the next update conditional); NULL: unknown, get it first. */
        json_object *lease;
        bool acquired; /* acquireTime set by this process */
};

void cluster_format_microtime(uint64_t us, char *buf, size_t len)
{
        k8s_format_microtime(us, buf, len);
}

int cluster_lease_name(const char *node_name, char **ret)
{
        size_t n = node_name ? strlen(node_name) : 0;
        if (n == 0 || n > 253 - strlen("sandpit-agent-"))
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                char c = node_name[i];
                bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
                if (!alnum && !((c == '-' || c == '.') && i > 0 && i + 1 < n))
                        return -EINVAL;
        }
        char *p = NULL;
        if (asprintf(&p, "sandpit-agent-%s", node_name) < 0)
                return -ENOMEM;
        *ret = p;
        return 0;
}

static json_object *obj_child(json_object *o, const char *key)
{
        json_object *v = NULL;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_object)) {
                v = json_object_new_object();
                (void) json_object_object_add(o, key, v);
        }
        return v;
}

static void set_str(json_object *o, const char *key, const char *value)
{
        (void) json_object_object_add(o, key, json_object_new_string(value));
}

/* Writes the contract's fields into lease (a fresh object or the server's). */
static void fill_lease(Cluster *cl, json_object *lease, const char *now)
{
        set_str(lease, "apiVersion", "coordination.k8s.io/v1");
        set_str(lease, "kind", "Lease");
        json_object *meta = obj_child(lease, "metadata");
        set_str(meta, "name", cl->lease_name);
        set_str(meta, "namespace", cl->namespace);
        json_object *labels = obj_child(meta, "labels");
        set_str(labels, "app.kubernetes.io/component", "sandpit-agent");
        set_str(labels, "sandpit.dev/node", cl->node_name);
        json_object *ann = obj_child(meta, "annotations");
        set_str(ann, "sandpit.dev/endpoint", cl->endpoint);
        set_str(ann, "sandpit.dev/capacity-cpu", cl->capacity_cpu);
        char mem[32];
        (void) snprintf(mem, sizeof(mem), "%llu", (unsigned long long) cl->cfg.capacity_memory);
        set_str(ann, "sandpit.dev/capacity-memory", mem);
        set_str(ann, "sandpit.dev/version", cl->version);

        json_object *spec = obj_child(lease, "spec");
        json_object *holder = NULL;
        bool same_holder = json_object_object_get_ex(spec, "holderIdentity", &holder) &&
                           json_object_is_type(holder, json_type_string) &&
                           streq(json_object_get_string(holder), cl->node_name);
        if (!same_holder && json_object_object_get_ex(spec, "holderIdentity", NULL)) {
                json_object *t = NULL;
                int32_t n = json_object_object_get_ex(spec, "leaseTransitions", &t)
                                    ? json_object_get_int(t)
                                    : 0;
                (void) json_object_object_add(spec, "leaseTransitions", json_object_new_int(n + 1));
        }
        set_str(spec, "holderIdentity", cl->node_name);
        (void) json_object_object_add(spec, "leaseDurationSeconds",
                                      json_object_new_int((int32_t) cl->cfg.lease_duration_s));
        if (!cl->acquired || !json_object_object_get_ex(spec, "acquireTime", NULL))
                set_str(spec, "acquireTime", now);
        set_str(spec, "renewTime", now);
}

/* One heartbeat: create the Lease, or take it over / renew it with a
 * conditional update; a conflict (someone else wrote it) re-reads and
 * retries at once. */
static int heartbeat(Cluster *cl, K8sError *e)
{
        int r = -EAGAIN;
        for (int attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
                char now[40];
                cluster_format_microtime(now_realtime_us(), now, sizeof(now));
                json_object *out = NULL;
                if (!cl->lease) {
                        r = k8s_get(cl->client, &leases, cl->namespace, cl->lease_name, &cl->lease,
                                    e);
                        if (r == -ENOENT) {
                                json_object *fresh = json_object_new_object();
                                cl->acquired = false;
                                fill_lease(cl, fresh, now);
                                r = k8s_create(cl->client, &leases, cl->namespace, fresh, &out, e);
                                json_object_put(fresh);
                                if (r == -EEXIST)
                                        continue; /* created meanwhile: get it */
                                if (r < 0)
                                        return r;
                                log_info("registered: created Lease %s/%s", cl->namespace,
                                         cl->lease_name);
                                cl->lease = out;
                                cl->acquired = true;
                                return 0;
                        }
                        if (r < 0)
                                return r;
                        if (!cl->acquired)
                                log_info("taking over the existing Lease %s/%s", cl->namespace,
                                         cl->lease_name);
                }
                fill_lease(cl, cl->lease, now);
                r = k8s_update(cl->client, &leases, cl->lease, &out, e);
                json_object_put(cl->lease);
                cl->lease = NULL;
                if (r == -EBUSY || r == -ENOENT)
                        continue; /* stale or deleted: re-get (and create) */
                if (r < 0)
                        return r;
                if (!cl->acquired)
                        log_info("registered: took over Lease %s/%s", cl->namespace,
                                 cl->lease_name);
                cl->lease = out;
                cl->acquired = true;
                return 0;
        }
        return r;
}

/* Waits ms or until stopping; true when stopping. */
static bool wait_ms(Cluster *cl, long ms)
{
        struct timespec ts;
        deadline_after_ms(&ts, ms);
        pthread_mutex_lock(&cl->lock);
        while (!cl->stopping && pthread_cond_timedwait(&cl->cond, &cl->lock, &ts) == 0)
                ;
        bool stop = cl->stopping;
        pthread_mutex_unlock(&cl->lock);
        return stop;
}

static void *heartbeat_thread(void *arg)
{
        Cluster *cl = arg;
        unsigned long seed = (unsigned long) now_monotonic_us();
        unsigned failures = 0;
        long period_ms = (long) cl->cfg.lease_duration_s * 1000 / 3;
        if (period_ms < 1)
                period_ms = 1;
        for (;;) {
                K8sError e = {0};
                int r = heartbeat(cl, &e);
                long delay;
                if (r == 0) {
                        if (failures > 0)
                                log_info("Lease %s/%s renewed again after %u failed attempts",
                                         cl->namespace, cl->lease_name, failures);
                        failures = 0;
                        delay = period_ms;
                } else {
                        delay = k8s_backoff_ms(BACKOFF_INITIAL_MS, BACKOFF_MAX_MS, failures,
                                               e.retry_after_s, &seed);
                        /* never wait longer than a renewal period while failing */
                        if (delay > period_ms && period_ms >= BACKOFF_INITIAL_MS)
                                delay = period_ms;
                        if (delay < e.retry_after_s * 1000) /* but the server's word first */
                                delay = e.retry_after_s * 1000;
                        log_full(failures == 0 ? LOG_LEVEL_WARNING : LOG_LEVEL_DEBUG, r, NULL,
                                 "cannot renew Lease %s/%s (HTTP %ld %s: %s); retrying in %ld ms",
                                 cl->namespace, cl->lease_name, e.status, e.reason, e.message,
                                 delay);
                        failures++;
                }
                if (wait_ms(cl, delay))
                        break;
        }
        return NULL;
}

static void cluster_free(Cluster *cl)
{
        if (!cl)
                return;
        k8s_client_free(cl->client);
        json_object_put(cl->lease);
        free(cl->node_name);
        free(cl->namespace);
        free(cl->endpoint);
        free(cl->capacity_cpu);
        free(cl->version);
        free(cl->lease_name);
        pthread_mutex_destroy(&cl->lock);
        pthread_cond_destroy(&cl->cond);
        free(cl);
}

int cluster_start(K8sClient *client, const ClusterConfig *cfg, Cluster **ret)
{
        Cluster *cl = calloc(1, sizeof(*cl));
        if (!cl) {
                k8s_client_free(client);
                return -ENOMEM;
        }
        cl->client = client;
        cl->cfg = *cfg;
        pthread_mutex_init(&cl->lock, NULL);
        cond_init_monotonic(&cl->cond);
        int r = cluster_lease_name(cfg->node_name, &cl->lease_name);
        if (r < 0 || cfg->lease_duration_s == 0 || !cfg->namespace || !cfg->endpoint ||
            !cfg->capacity_cpu || !cfg->version) {
                cluster_free(cl);
                return r < 0 ? r : -EINVAL;
        }
        cl->node_name = strdup(cfg->node_name);
        cl->namespace = strdup(cfg->namespace);
        cl->endpoint = strdup(cfg->endpoint);
        cl->capacity_cpu = strdup(cfg->capacity_cpu);
        cl->version = strdup(cfg->version);
        if (!cl->node_name || !cl->namespace || !cl->endpoint || !cl->capacity_cpu ||
            !cl->version) {
                cluster_free(cl);
                return -ENOMEM;
        }
        /* A request never holds the heartbeat (or shutdown) longer than a period. */
        long timeout_ms = (long) cfg->lease_duration_s * 1000 / 3;
        k8s_client_set_timeout(client, timeout_ms < 2000 ? 2000 : timeout_ms);
        r = -pthread_create(&cl->thread, NULL, heartbeat_thread, cl);
        if (r < 0) {
                cluster_free(cl);
                return r;
        }
        *ret = cl;
        return 0;
}

void cluster_stop(Cluster *cl)
{
        if (!cl)
                return;
        pthread_mutex_lock(&cl->lock);
        cl->stopping = true;
        pthread_cond_signal(&cl->cond);
        pthread_mutex_unlock(&cl->lock);
        (void) pthread_join(cl->thread, NULL);
        K8sError e = {0};
        const char *uid = cl->lease ? k8s_obj_uid(cl->lease) : NULL;
        int r = k8s_delete(cl->client, &leases, cl->namespace, cl->lease_name,
                           uid ? &(K8sPreconditions){.uid = uid} : NULL, NULL, &e);
        if (r < 0 && r != -ENOENT)
                log_full(LOG_LEVEL_WARNING, r, NULL, "cannot delete Lease %s/%s (HTTP %ld %s: %s)",
                         cl->namespace, cl->lease_name, e.status, e.reason, e.message);
        else
                log_info("deregistered: Lease %s/%s deleted", cl->namespace, cl->lease_name);
        cluster_free(cl);
}
