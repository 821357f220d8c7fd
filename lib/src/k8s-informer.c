#include "sandpit/k8s-informer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

/* Readers on other threads only ever json_object_deep_copy() cached objects
 * under lock; that reads values and never a reference count, so the informer
 * thread's own gets/puts on them do not race with it. */
struct K8sInformer {
        K8sWatch *watch;
        K8sInformerHandlers handlers;
        void *userdata;
        pthread_t thread;
        bool running;
        /* lock guards cache, synced and result; synced_cond signals both. */
        pthread_mutex_t lock;
        pthread_cond_t synced_cond;
        json_object *cache; /* key -> object */
        bool synced;
        bool finished;
        int result;
};

static int key_of(json_object *obj, char **ret)
{
        return k8s_obj_key(obj, ret);
}

/* Replaces the cache with items, then tells the handlers what differs. */
static int on_list(json_object *items, const char *rv, void *userdata)
{
        K8sInformer *inf = userdata;
        json_object *fresh = json_object_new_object();
        (void) rv;
        if (!fresh)
                return -ENOMEM;
        for (size_t i = 0; items && i < json_object_array_length(items); i++) {
                json_object *it = json_object_array_get_idx(items, i);
                cleanup_free char *key = NULL;
                if (key_of(it, &key) < 0)
                        continue; /* nameless: nothing can address it */
                if (json_object_object_add(fresh, key, json_object_get(it)) < 0) {
                        json_object_put(fresh);
                        return -ENOMEM;
                }
        }

        (void) pthread_mutex_lock(&inf->lock);
        json_object *old = inf->cache;
        inf->cache = json_object_get(fresh);
        (void) pthread_mutex_unlock(&inf->lock);

        /* fresh and old are this thread's own references from here. */
        json_object_object_foreach(fresh, key, obj) {
                json_object *prev = NULL;
                if (!old || !json_object_object_get_ex(old, key, &prev)) {
                        if (inf->handlers.on_add)
                                inf->handlers.on_add(key, obj, inf->userdata);
                } else {
                        const char *a = k8s_obj_resource_version(prev);
                        const char *b = k8s_obj_resource_version(obj);
                        if (inf->handlers.on_update && (!a || !b || !streq(a, b)))
                                inf->handlers.on_update(key, prev, obj, inf->userdata);
                }
        }
        if (old) {
                json_object_object_foreach(old, okey, oobj) {
                        if (!json_object_object_get_ex(fresh, okey, NULL) &&
                            inf->handlers.on_delete)
                                inf->handlers.on_delete(okey, oobj, inf->userdata);
                }
        }
        json_object_put(fresh);
        json_object_put(old);

        (void) pthread_mutex_lock(&inf->lock);
        inf->synced = true;
        (void) pthread_cond_broadcast(&inf->synced_cond);
        (void) pthread_mutex_unlock(&inf->lock);
        return 0;
}

static int on_event(const K8sWatchEvent *ev, void *userdata)
{
        K8sInformer *inf = userdata;
        cleanup_free char *key = NULL;
        json_object *prev = NULL;

        if (key_of(ev->object, &key) < 0)
                return 0;
        k8s_obj_strip_managed_fields(ev->object);
        (void) pthread_mutex_lock(&inf->lock);
        if (json_object_object_get_ex(inf->cache, key, &prev))
                prev = json_object_get(prev);
        int r = 0;
        if (ev->type == K8S_WATCH_DELETED)
                json_object_object_del(inf->cache, key);
        else if (json_object_object_add(inf->cache, key, json_object_get(ev->object)) < 0)
                r = -ENOMEM;
        (void) pthread_mutex_unlock(&inf->lock);
        if (r < 0) {
                json_object_put(prev);
                return r;
        }

        if (ev->type == K8S_WATCH_DELETED) {
                if (inf->handlers.on_delete)
                        inf->handlers.on_delete(key, ev->object, inf->userdata);
        } else if (prev) {
                if (inf->handlers.on_update)
                        inf->handlers.on_update(key, prev, ev->object, inf->userdata);
        } else if (inf->handlers.on_add) {
                inf->handlers.on_add(key, ev->object, inf->userdata);
        }
        json_object_put(prev);
        return 0;
}

int k8s_informer_new(K8sClient *client, const K8sWatchOptions *opts,
                     const K8sInformerHandlers *handlers, void *userdata, K8sInformer **ret)
{
        static const K8sWatchOps ops = {.on_list = on_list, .on_event = on_event};
        if (!ret)
                return -EINVAL;
        K8sInformer *inf = calloc(1, sizeof(*inf));
        if (!inf)
                return -ENOMEM;
        if (handlers)
                inf->handlers = *handlers;
        inf->userdata = userdata;
        inf->cache = json_object_new_object();
        if (!inf->cache) {
                free(inf);
                return -ENOMEM;
        }
        int r = k8s_watch_new(client, opts, &ops, inf, &inf->watch);
        if (r < 0) {
                json_object_put(inf->cache);
                free(inf);
                return r;
        }
        (void) pthread_mutex_init(&inf->lock, NULL);
        cond_init_monotonic(&inf->synced_cond);
        *ret = inf;
        return 0;
}

static void *informer_thread(void *arg)
{
        K8sInformer *inf = arg;
        int r = k8s_watch_run(inf->watch);
        if (r < 0)
                log_debug("k8s informer stopped: %s", strerror(-r));
        (void) pthread_mutex_lock(&inf->lock);
        inf->finished = true;
        inf->result = r;
        (void) pthread_cond_broadcast(&inf->synced_cond);
        (void) pthread_mutex_unlock(&inf->lock);
        return NULL;
}

int k8s_informer_start(K8sInformer *inf)
{
        if (inf->running)
                return -EALREADY;
        int r = pthread_create(&inf->thread, NULL, informer_thread, inf);
        if (r != 0)
                return -r;
        inf->running = true;
        return 0;
}

void k8s_informer_stop(K8sInformer *inf)
{
        if (!inf || !inf->running)
                return;
        k8s_watch_stop(inf->watch);
        (void) pthread_join(inf->thread, NULL);
        inf->running = false;
}

void k8s_informer_free(K8sInformer *inf)
{
        if (!inf)
                return;
        k8s_informer_stop(inf);
        k8s_watch_free(inf->watch);
        json_object_put(inf->cache);
        (void) pthread_cond_destroy(&inf->synced_cond);
        (void) pthread_mutex_destroy(&inf->lock);
        free(inf);
}

bool k8s_informer_has_synced(K8sInformer *inf)
{
        (void) pthread_mutex_lock(&inf->lock);
        bool s = inf->synced;
        (void) pthread_mutex_unlock(&inf->lock);
        return s;
}

int k8s_informer_wait_synced(K8sInformer *inf, long timeout_ms)
{
        struct timespec ts;
        deadline_after_ms(&ts, timeout_ms);
        int r = 0;
        (void) pthread_mutex_lock(&inf->lock);
        while (!inf->synced && !inf->finished)
                if (pthread_cond_timedwait(&inf->synced_cond, &inf->lock, &ts) == ETIMEDOUT) {
                        r = -ETIMEDOUT;
                        break;
                }
        if (!inf->synced && inf->finished)
                r = inf->result < 0 ? inf->result : -ECANCELED;
        (void) pthread_mutex_unlock(&inf->lock);
        return r;
}

int k8s_informer_get(K8sInformer *inf, const char *key, json_object **ret)
{
        json_object *o = NULL;
        int r = 0;
        (void) pthread_mutex_lock(&inf->lock);
        if (!json_object_object_get_ex(inf->cache, key, &o))
                r = -ENOENT;
        else if (json_object_deep_copy(o, ret, NULL) < 0)
                r = -ENOMEM;
        (void) pthread_mutex_unlock(&inf->lock);
        return r;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int k8s_informer_keys(K8sInformer *inf, char ***ret)
{
        (void) pthread_mutex_lock(&inf->lock);
        size_t n = (size_t) json_object_object_length(inf->cache);
        char **v = calloc(n + 1, sizeof(char *));
        size_t i = 0;
        if (v) {
                json_object_object_foreach(inf->cache, key, val) {
                        (void) val;
                        v[i] = strdup(key);
                        if (!v[i])
                                break;
                        i++;
                }
        }
        (void) pthread_mutex_unlock(&inf->lock);
        if (!v || i < n) {
                strv_free(v);
                return -ENOMEM;
        }
        qsort(v, n, sizeof(char *), cmp_str);
        *ret = v;
        return 0;
}

size_t k8s_informer_size(K8sInformer *inf)
{
        (void) pthread_mutex_lock(&inf->lock);
        size_t n = (size_t) json_object_object_length(inf->cache);
        (void) pthread_mutex_unlock(&inf->lock);
        return n;
}

void k8s_informer_foreach(K8sInformer *inf,
                          void (*fn)(const char *key, json_object *obj, void *userdata),
                          void *userdata)
{
        (void) pthread_mutex_lock(&inf->lock);
        json_object_object_foreach(inf->cache, key, val)
                fn(key, val, userdata);
        (void) pthread_mutex_unlock(&inf->lock);
}

void k8s_informer_get_stats(K8sInformer *inf, K8sWatchStats *ret)
{
        k8s_watch_get_stats(inf->watch, ret);
}
