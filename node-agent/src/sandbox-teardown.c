/* The teardown queue (sandbox-teardown.h): a FIFO of jobs and a fixed set of
 * worker threads; one lock for all of it. */
#include "sandbox-teardown.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#define MAX_WORKERS 16

typedef struct Job {
        void *job;
        struct Job *next;
} Job;

struct TeardownQueue {
        TeardownFn fn;
        void *userdata;
        /* lock protects everything below; cond: a job came, or stopping. */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        Job *head, *tail;
        size_t pending; /* queued plus running */
        bool stopping;
        unsigned nthreads;
        pthread_t threads[MAX_WORKERS];
};

static void *worker_main(void *arg)
{
        TeardownQueue *q = arg;
        (void) pthread_mutex_lock(&q->lock);
        for (;;) {
                while (!q->head && !q->stopping)
                        (void) pthread_cond_wait(&q->cond, &q->lock);
                Job *j = q->head;
                if (!j) /* stopping and drained */
                        break;
                q->head = j->next;
                if (!q->head)
                        q->tail = NULL;
                (void) pthread_mutex_unlock(&q->lock);
                q->fn(j->job, q->userdata);
                free(j);
                (void) pthread_mutex_lock(&q->lock);
                q->pending--;
        }
        (void) pthread_mutex_unlock(&q->lock);
        return NULL;
}

static void stop_and_join(TeardownQueue *q)
{
        (void) pthread_mutex_lock(&q->lock);
        q->stopping = true;
        (void) pthread_cond_broadcast(&q->cond);
        (void) pthread_mutex_unlock(&q->lock);
        for (unsigned i = 0; i < q->nthreads; i++)
                (void) pthread_join(q->threads[i], NULL);
        q->nthreads = 0;
}

void teardown_queue_free(TeardownQueue *q)
{
        if (!q)
                return;
        stop_and_join(q);
        (void) pthread_cond_destroy(&q->cond);
        (void) pthread_mutex_destroy(&q->lock);
        free(q);
}

int teardown_queue_new(unsigned workers, TeardownFn fn, void *userdata, TeardownQueue **ret)
{
        if (workers == 0 || workers > MAX_WORKERS || !fn || !ret)
                return -EINVAL;
        TeardownQueue *q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->fn = fn;
        q->userdata = userdata;
        (void) pthread_mutex_init(&q->lock, NULL);
        (void) pthread_cond_init(&q->cond, NULL);
        for (unsigned i = 0; i < workers; i++) {
                int r = -pthread_create(&q->threads[i], NULL, worker_main, q);
                if (r < 0) {
                        teardown_queue_free(q);
                        return r;
                }
                q->nthreads++;
        }
        *ret = q;
        return 0;
}

int teardown_queue_push(TeardownQueue *q, void *job)
{
        if (!q)
                return -ESHUTDOWN;
        Job *j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        j->job = job;
        (void) pthread_mutex_lock(&q->lock);
        if (q->stopping) {
                (void) pthread_mutex_unlock(&q->lock);
                free(j);
                return -ESHUTDOWN;
        }
        if (q->tail)
                q->tail->next = j;
        else
                q->head = j;
        q->tail = j;
        q->pending++;
        (void) pthread_cond_signal(&q->cond);
        (void) pthread_mutex_unlock(&q->lock);
        return 0;
}

size_t teardown_queue_pending(TeardownQueue *q)
{
        if (!q)
                return 0;
        (void) pthread_mutex_lock(&q->lock);
        size_t n = q->pending;
        (void) pthread_mutex_unlock(&q->lock);
        return n;
}
