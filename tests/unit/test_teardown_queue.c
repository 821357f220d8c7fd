/* node-agent/sandbox-teardown: every pushed job runs once, pending counts
 * queued and running jobs, free drains the queue, pushes after it are refused. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sandbox-teardown.h"

#define NJOBS 200

typedef struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool hold; /* jobs wait until released */
        unsigned started;
        unsigned runs[NJOBS];
} Ctx;

static void job_fn(void *job, void *userdata)
{
        Ctx *c = userdata;
        size_t i = (size_t) (uintptr_t) job;
        pthread_mutex_lock(&c->lock);
        c->started++;
        pthread_cond_broadcast(&c->cond);
        while (c->hold)
                pthread_cond_wait(&c->cond, &c->lock);
        c->runs[i]++;
        pthread_mutex_unlock(&c->lock);
}

static void ctx_init(Ctx *c)
{
        *c = (Ctx){0};
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
}

static void ctx_done(Ctx *c)
{
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
}

static void test_every_job_once_and_drained_by_free(void **state)
{
        (void) state;
        Ctx c;
        ctx_init(&c);
        TeardownQueue *q = NULL;
        assert_int_equal(teardown_queue_new(2, job_fn, &c, &q), 0);
        for (size_t i = 0; i < NJOBS; i++)
                assert_int_equal(teardown_queue_push(q, (void *) (uintptr_t) i), 0);
        teardown_queue_free(q); /* waits for all of them */
        for (size_t i = 0; i < NJOBS; i++)
                assert_int_equal(c.runs[i], 1);
        ctx_done(&c);
}

static void test_pending_counts_queued_and_running(void **state)
{
        (void) state;
        Ctx c;
        ctx_init(&c);
        c.hold = true;
        TeardownQueue *q = NULL;
        assert_int_equal(teardown_queue_new(2, job_fn, &c, &q), 0);
        assert_int_equal(teardown_queue_pending(q), 0);
        for (size_t i = 0; i < 5; i++)
                assert_int_equal(teardown_queue_push(q, (void *) (uintptr_t) i), 0);
        /* Both workers hold a job; three wait in the queue. */
        pthread_mutex_lock(&c.lock);
        while (c.started < 2)
                pthread_cond_wait(&c.cond, &c.lock);
        pthread_mutex_unlock(&c.lock);
        assert_int_equal(teardown_queue_pending(q), 5);
        assert_int_equal(c.started, 2);
        pthread_mutex_lock(&c.lock);
        c.hold = false;
        pthread_cond_broadcast(&c.cond);
        pthread_mutex_unlock(&c.lock);
        teardown_queue_free(q);
        for (size_t i = 0; i < 5; i++)
                assert_int_equal(c.runs[i], 1);
        ctx_done(&c);
}

/* A job that pushes another while the queue is being freed: refused, so the
 * caller does the work itself and nothing is lost or run after free. */
static TeardownQueue *pushing_q;
static int late_push;

static void pushing_fn(void *job, void *userdata)
{
        (void) userdata;
        if (job)
                late_push = teardown_queue_push(pushing_q, NULL);
}

static void test_push_after_free_began_is_refused(void **state)
{
        (void) state;
        assert_int_equal(teardown_queue_new(1, pushing_fn, NULL, &pushing_q), 0);
        assert_int_equal(teardown_queue_push(pushing_q, (void *) 1), 0);
        /* The job may run before or after free began: either its push was
         * taken (and drained) or refused with -ESHUTDOWN. */
        teardown_queue_free(pushing_q);
        assert_true(late_push == 0 || late_push == -ESHUTDOWN);
        assert_int_equal(teardown_queue_push(NULL, NULL), -ESHUTDOWN);
        assert_int_equal(teardown_queue_pending(NULL), 0);
        teardown_queue_free(NULL);
}

static void test_bad_arguments(void **state)
{
        (void) state;
        TeardownQueue *q = NULL;
        assert_int_equal(teardown_queue_new(0, job_fn, NULL, &q), -EINVAL);
        assert_int_equal(teardown_queue_new(2, NULL, NULL, &q), -EINVAL);
        assert_int_equal(teardown_queue_new(2, job_fn, NULL, NULL), -EINVAL);
        assert_null(q);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_job_once_and_drained_by_free),
                cmocka_unit_test(test_pending_counts_queued_and_running),
                cmocka_unit_test(test_push_after_free_began_is_refused),
                cmocka_unit_test(test_bad_arguments),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
