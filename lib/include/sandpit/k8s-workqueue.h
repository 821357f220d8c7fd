/* A work queue of keys ("namespace/name") for controllers, with client-go's
 * workqueue semantics:
 *
 * - a key is queued at most once however often it is added (dirty set);
 * - a key being processed (between get and done) is not handed to a second
 *   worker: added meanwhile, it is queued again when done() is called;
 * - add_after() delays a key (deadlines, timeouts); a key delayed twice keeps
 *   the earlier time;
 * - add_rate_limited() delays it by base * 2^failures (bounded by max), the
 *   failures counted per key until forget().
 *
 * Thread-safe: one mutex guards everything, a condition variable wakes
 * getters. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct K8sWorkQueue K8sWorkQueue;

typedef struct {
        long base_delay_ms; /* 0: 5 (client-go's default) */
        long max_delay_ms;  /* 0: 300000 */
        /* The clock, in microseconds (tests pass a fake one); NULL: monotonic. */
        uint64_t (*now_us)(void *userdata);
        void *now_userdata;
} K8sWorkQueueOptions;

/* opts may be NULL. */
int k8s_workqueue_new(const K8sWorkQueueOptions *opts, K8sWorkQueue **ret);
void k8s_workqueue_free(K8sWorkQueue *q);

/* -ESHUTDOWN after k8s_workqueue_shutdown(). */
int k8s_workqueue_add(K8sWorkQueue *q, const char *key);
/* delay_ms <= 0 adds at once. */
int k8s_workqueue_add_after(K8sWorkQueue *q, const char *key, long delay_ms);
/* Adds after the key's next backoff delay; returns that delay in ms. */
long k8s_workqueue_add_rate_limited(K8sWorkQueue *q, const char *key);
/* The key succeeded: its backoff starts over. */
void k8s_workqueue_forget(K8sWorkQueue *q, const char *key);
unsigned k8s_workqueue_num_requeues(K8sWorkQueue *q, const char *key);

/* The next key (the caller frees it and must call done() with it). Waits up
 * to timeout_ms (< 0: for ever, 0: not at all): -EAGAIN when nothing became
 * ready, -ESHUTDOWN once shut down and drained. */
int k8s_workqueue_get(K8sWorkQueue *q, long timeout_ms, char **ret);
void k8s_workqueue_done(K8sWorkQueue *q, const char *key);

/* Refuses new keys and wakes every getter; queued keys are still handed out. */
void k8s_workqueue_shutdown(K8sWorkQueue *q);
/* Keys ready to be handed out (the queue depth metric). */
size_t k8s_workqueue_len(K8sWorkQueue *q);
/* Keys waiting for their delay. */
size_t k8s_workqueue_delayed(K8sWorkQueue *q);
