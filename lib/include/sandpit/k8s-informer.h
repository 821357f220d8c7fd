/* An informer: a K8sWatch in its own thread keeping a cache of one resource
 * type (key "namespace/name", or "name" when cluster-scoped, to the object),
 * and telling handlers what changed.
 *
 * Threads: the cache belongs to the informer thread. Handlers run on it,
 * with borrowed objects that are valid only during the call: read them, do
 * not modify them, and deep-copy (json_object_deep_copy) or serialize what
 * must outlive the call or go to another thread (typically a handler just
 * adds the key to a K8sWorkQueue). Other threads read the cache only through
 * k8s_informer_get()/_keys(), which copy under the cache lock.
 *
 * After a relist the handlers get the difference to the cache: add for new
 * keys, update where the resourceVersion changed, delete (with the last
 * object known) for keys that are gone, so no change is lost across a 410. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "sandpit/k8s-watch.h"

typedef struct K8sInformer K8sInformer;

typedef struct {
        void (*on_add)(const char *key, json_object *obj, void *userdata);
        void (*on_update)(const char *key, json_object *old_obj, json_object *new_obj,
                          void *userdata);
        void (*on_delete)(const char *key, json_object *obj, void *userdata);
} K8sInformerHandlers;

/* client and handlers' userdata are borrowed; handlers may be NULL. */
int k8s_informer_new(K8sClient *client, const K8sWatchOptions *opts,
                     const K8sInformerHandlers *handlers, void *userdata, K8sInformer **ret);
/* Stops (if running) and frees. */
void k8s_informer_free(K8sInformer *inf);
int k8s_informer_start(K8sInformer *inf);
/* Stops the watch and joins the thread; idempotent. */
void k8s_informer_stop(K8sInformer *inf);

/* True once the first list is in the cache and its handlers have run. */
bool k8s_informer_has_synced(K8sInformer *inf);
/* -ETIMEDOUT after timeout_ms; the thread's error if it stopped first. */
int k8s_informer_wait_synced(K8sInformer *inf, long timeout_ms);
/* A deep copy of the cached object; -ENOENT when absent. */
int k8s_informer_get(K8sInformer *inf, const char *key, json_object **ret);
/* Every cached key, sorted; NULL-terminated strv. */
int k8s_informer_keys(K8sInformer *inf, char ***ret);
size_t k8s_informer_size(K8sInformer *inf);
/* Calls fn with every cached object, borrowed, under the cache lock (so the
 * informer's thread waits meanwhile): fn reads only, keeps nothing and does
 * not call back into the informer. For cheap aggregates such as metrics. */
void k8s_informer_foreach(K8sInformer *inf,
                          void (*fn)(const char *key, json_object *obj, void *userdata),
                          void *userdata);
void k8s_informer_get_stats(K8sInformer *inf, K8sWatchStats *ret);
