#include "sandpit/k8s-workqueue.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/linkhash.h>

#include "sandpit/macro.h"
#include "sandpit/util.h"

typedef struct Item {
        char *key;
        bool dirty;      /* wants processing: queued, or requeued once done */
        bool processing; /* handed out, done() not yet called */
        unsigned failures;
        uint64_t ready_at; /* 0: no delayed add pending */
        struct Item *next; /* in the ready queue */
} Item;

typedef struct {
        uint64_t at;
        char *key;
} Delayed;

struct K8sWorkQueue {
        K8sWorkQueueOptions opts;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct lh_table *items; /* key -> Item, only keys with some state */
        Item *head, *tail;      /* ready queue */
        size_t queued;
        Delayed *heap; /* min-heap on at; entries may be stale (item's ready_at differs) */
        size_t n_heap, cap_heap;
        bool shutting_down;
};

static void item_free_entry(struct lh_entry *e)
{
        Item *it = (Item *) lh_entry_v(e);
        if (it) {
                free(it->key);
                free(it);
        }
}

static uint64_t now(K8sWorkQueue *q)
{
        return q->opts.now_us ? q->opts.now_us(q->opts.now_userdata) : now_monotonic_us();
}

int k8s_workqueue_new(const K8sWorkQueueOptions *opts, K8sWorkQueue **ret)
{
        K8sWorkQueue *q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        if (opts)
                q->opts = *opts;
        if (q->opts.base_delay_ms <= 0)
                q->opts.base_delay_ms = 5;
        if (q->opts.max_delay_ms <= 0)
                q->opts.max_delay_ms = 300000;
        q->items = lh_kchar_table_new(64, item_free_entry);
        if (!q->items) {
                free(q);
                return -ENOMEM;
        }
        (void) pthread_mutex_init(&q->lock, NULL);
        cond_init_monotonic(&q->cond);
        *ret = q;
        return 0;
}

void k8s_workqueue_free(K8sWorkQueue *q)
{
        if (!q)
                return;
        lh_table_free(q->items);
        for (size_t i = 0; i < q->n_heap; i++)
                free(q->heap[i].key);
        free(q->heap);
        (void) pthread_cond_destroy(&q->cond);
        (void) pthread_mutex_destroy(&q->lock);
        free(q);
}

static Item *item_get(K8sWorkQueue *q, const char *key, bool create)
{
        void *v = NULL;
        if (lh_table_lookup_ex(q->items, key, &v))
                return v;
        if (!create)
                return NULL;
        Item *it = calloc(1, sizeof(*it));
        if (!it)
                return NULL;
        it->key = strdup(key);
        if (!it->key || lh_table_insert(q->items, it->key, it) < 0) {
                free(it->key);
                free(it);
                return NULL;
        }
        return it;
}

/* Drops an item that holds no state any more (the table frees it). */
static void item_maybe_drop(K8sWorkQueue *q, Item *it)
{
        if (!it->dirty && !it->processing && it->failures == 0 && it->ready_at == 0)
                (void) lh_table_delete(q->items, it->key);
}

static void enqueue(K8sWorkQueue *q, Item *it)
{
        it->next = NULL;
        if (q->tail)
                q->tail->next = it;
        else
                q->head = it;
        q->tail = it;
        q->queued++;
}

/* Caller holds the lock. */
static int add_locked(K8sWorkQueue *q, const char *key)
{
        if (q->shutting_down)
                return -ESHUTDOWN;
        Item *it = item_get(q, key, true);
        if (!it)
                return -ENOMEM;
        if (it->dirty)
                return 0;
        it->dirty = true;
        if (!it->processing) {
                enqueue(q, it);
                (void) pthread_cond_signal(&q->cond);
        }
        return 0;
}

int k8s_workqueue_add(K8sWorkQueue *q, const char *key)
{
        if (!key)
                return -EINVAL;
        (void) pthread_mutex_lock(&q->lock);
        int r = add_locked(q, key);
        (void) pthread_mutex_unlock(&q->lock);
        return r;
}

static void heap_swap(Delayed *a, Delayed *b)
{
        Delayed t = *a;
        *a = *b;
        *b = t;
}

static int heap_push(K8sWorkQueue *q, uint64_t at, const char *key)
{
        if (q->n_heap == q->cap_heap) {
                size_t cap = q->cap_heap ? q->cap_heap * 2 : 16;
                Delayed *h = realloc(q->heap, cap * sizeof(*h));
                if (!h)
                        return -ENOMEM;
                q->heap = h;
                q->cap_heap = cap;
        }
        char *k = strdup(key);
        if (!k)
                return -ENOMEM;
        size_t i = q->n_heap++;
        q->heap[i] = (Delayed){.at = at, .key = k};
        while (i > 0 && q->heap[(i - 1) / 2].at > q->heap[i].at) {
                heap_swap(&q->heap[(i - 1) / 2], &q->heap[i]);
                i = (i - 1) / 2;
        }
        return 0;
}

static Delayed heap_pop(K8sWorkQueue *q)
{
        Delayed top = q->heap[0];
        q->heap[0] = q->heap[--q->n_heap];
        size_t i = 0;
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, m = i;
                if (l < q->n_heap && q->heap[l].at < q->heap[m].at)
                        m = l;
                if (r < q->n_heap && q->heap[r].at < q->heap[m].at)
                        m = r;
                if (m == i)
                        break;
                heap_swap(&q->heap[i], &q->heap[m]);
                i = m;
        }
        return top;
}

/* Moves the keys whose time has come to the ready queue. */
static void fire_due(K8sWorkQueue *q)
{
        uint64_t t = now(q);
        while (q->n_heap > 0 && q->heap[0].at <= t) {
                Delayed d = heap_pop(q);
                Item *it = item_get(q, d.key, false);
                if (it && it->ready_at == d.at) {
                        it->ready_at = 0;
                        if (add_locked(q, d.key) < 0)
                                item_maybe_drop(q, it);
                }
                free(d.key);
        }
}

static int add_after_locked(K8sWorkQueue *q, const char *key, long delay_ms)
{
        if (q->shutting_down)
                return -ESHUTDOWN;
        if (delay_ms <= 0)
                return add_locked(q, key);
        Item *it = item_get(q, key, true);
        if (!it)
                return -ENOMEM;
        uint64_t at = now(q) + (uint64_t) delay_ms * 1000;
        if (it->ready_at != 0 && it->ready_at <= at)
                return 0;
        int r = heap_push(q, at, key);
        if (r < 0) {
                item_maybe_drop(q, it);
                return r;
        }
        it->ready_at = at;
        /* A getter may be sleeping until a later deadline. */
        (void) pthread_cond_broadcast(&q->cond);
        return 0;
}

int k8s_workqueue_add_after(K8sWorkQueue *q, const char *key, long delay_ms)
{
        if (!key)
                return -EINVAL;
        (void) pthread_mutex_lock(&q->lock);
        int r = add_after_locked(q, key, delay_ms);
        (void) pthread_mutex_unlock(&q->lock);
        return r;
}

long k8s_workqueue_add_rate_limited(K8sWorkQueue *q, const char *key)
{
        if (!key)
                return -EINVAL;
        (void) pthread_mutex_lock(&q->lock);
        long r;
        Item *it = q->shutting_down ? NULL : item_get(q, key, true);
        if (!it) {
                r = q->shutting_down ? -ESHUTDOWN : -ENOMEM;
        } else {
                long d = q->opts.base_delay_ms;
                for (unsigned i = 0; i < it->failures && d < q->opts.max_delay_ms; i++)
                        d *= 2;
                if (d > q->opts.max_delay_ms)
                        d = q->opts.max_delay_ms;
                it->failures++;
                int a = add_after_locked(q, key, d);
                r = a < 0 ? a : d;
        }
        (void) pthread_mutex_unlock(&q->lock);
        return r;
}

void k8s_workqueue_forget(K8sWorkQueue *q, const char *key)
{
        (void) pthread_mutex_lock(&q->lock);
        Item *it = item_get(q, key, false);
        if (it) {
                it->failures = 0;
                item_maybe_drop(q, it);
        }
        (void) pthread_mutex_unlock(&q->lock);
}

unsigned k8s_workqueue_num_requeues(K8sWorkQueue *q, const char *key)
{
        (void) pthread_mutex_lock(&q->lock);
        Item *it = item_get(q, key, false);
        unsigned n = it ? it->failures : 0;
        (void) pthread_mutex_unlock(&q->lock);
        return n;
}

int k8s_workqueue_get(K8sWorkQueue *q, long timeout_ms, char **ret)
{
        struct timespec until;
        uint64_t start = now_monotonic_us();
        int r = 0;

        (void) pthread_mutex_lock(&q->lock);
        for (;;) {
                fire_due(q);
                if (q->head)
                        break;
                if (q->shutting_down) {
                        r = -ESHUTDOWN;
                        goto out;
                }
                long wait_ms = -1;
                if (timeout_ms >= 0) {
                        uint64_t spent = (now_monotonic_us() - start) / 1000;
                        if (spent >= (uint64_t) timeout_ms) {
                                r = -EAGAIN;
                                goto out;
                        }
                        wait_ms = timeout_ms - (long) spent;
                }
                if (q->n_heap > 0) {
                        uint64_t t = now(q);
                        long due =
                                q->heap[0].at > t ? (long) ((q->heap[0].at - t + 999) / 1000) : 0;
                        if (wait_ms < 0 || due < wait_ms)
                                wait_ms = due;
                }
                if (wait_ms < 0) {
                        (void) pthread_cond_wait(&q->cond, &q->lock);
                } else {
                        deadline_after_ms(&until, wait_ms);
                        (void) pthread_cond_timedwait(&q->cond, &q->lock, &until);
                }
        }

        Item *it = q->head;
        char *key = strdup(it->key);
        if (!key) {
                r = -ENOMEM;
                goto out;
        }
        q->head = it->next;
        if (!q->head)
                q->tail = NULL;
        it->next = NULL;
        q->queued--;
        it->dirty = false;
        it->processing = true;
        *ret = key;
out:
        (void) pthread_mutex_unlock(&q->lock);
        return r;
}

void k8s_workqueue_done(K8sWorkQueue *q, const char *key)
{
        (void) pthread_mutex_lock(&q->lock);
        Item *it = item_get(q, key, false);
        if (it && it->processing) {
                it->processing = false;
                if (it->dirty) {
                        enqueue(q, it);
                        (void) pthread_cond_signal(&q->cond);
                } else {
                        item_maybe_drop(q, it);
                }
        }
        (void) pthread_mutex_unlock(&q->lock);
}

void k8s_workqueue_shutdown(K8sWorkQueue *q)
{
        (void) pthread_mutex_lock(&q->lock);
        q->shutting_down = true;
        (void) pthread_cond_broadcast(&q->cond);
        (void) pthread_mutex_unlock(&q->lock);
}

size_t k8s_workqueue_len(K8sWorkQueue *q)
{
        (void) pthread_mutex_lock(&q->lock);
        fire_due(q);
        size_t n = q->queued;
        (void) pthread_mutex_unlock(&q->lock);
        return n;
}

size_t k8s_workqueue_delayed(K8sWorkQueue *q)
{
        size_t n = 0;
        (void) pthread_mutex_lock(&q->lock);
        struct lh_entry *e;
        lh_foreach(q->items, e)
        {
                const Item *it = lh_entry_v(e);
                if (it->ready_at != 0)
                        n++;
        }
        (void) pthread_mutex_unlock(&q->lock);
        return n;
}
