/* The work queue: dedup, the processing set, delayed adds and per-key
 * exponential backoff (on a fake clock, so nothing here depends on timing),
 * shutdown, and many threads adding and working at once. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandpit/k8s-workqueue.h"
#include "sandpit/macro.h"

static uint64_t fake_now;

static uint64_t fake_clock(void *userdata)
{
        (void) userdata;
        return fake_now;
}

static K8sWorkQueue *new_queue(void)
{
        K8sWorkQueueOptions o = {.base_delay_ms = 10, .max_delay_ms = 1000, .now_us = fake_clock};
        K8sWorkQueue *q = NULL;
        fake_now = 1000000;
        assert_int_equal(k8s_workqueue_new(&o, &q), 0);
        return q;
}

static char *get_now(K8sWorkQueue *q)
{
        char *k = NULL;
        int r = k8s_workqueue_get(q, 0, &k);
        return r == 0 ? k : NULL;
}

static void test_dedup_and_order(void **state)
{
        (void) state;
        K8sWorkQueue *q = new_queue();
        assert_int_equal(k8s_workqueue_add(q, "ns/a"), 0);
        assert_int_equal(k8s_workqueue_add(q, "ns/b"), 0);
        assert_int_equal(k8s_workqueue_add(q, "ns/a"), 0);
        assert_int_equal(k8s_workqueue_add(q, "ns/a"), 0);
        assert_int_equal(k8s_workqueue_len(q), 2);

        char *k = get_now(q);
        assert_string_equal(k, "ns/a");
        char *k2 = get_now(q);
        assert_string_equal(k2, "ns/b");
        char *none = NULL;
        assert_int_equal(k8s_workqueue_get(q, 0, &none), -EAGAIN);
        k8s_workqueue_done(q, k);
        k8s_workqueue_done(q, k2);
        free(k);
        free(k2);
        assert_int_equal(k8s_workqueue_len(q), 0);
        k8s_workqueue_free(q);
}

static void test_processing_not_handed_out_twice(void **state)
{
        (void) state;
        K8sWorkQueue *q = new_queue();
        assert_int_equal(k8s_workqueue_add(q, "x"), 0);
        char *k = get_now(q);
        assert_string_equal(k, "x");

        /* added while a worker has it: held back, not given to a second worker */
        assert_int_equal(k8s_workqueue_add(q, "x"), 0);
        assert_int_equal(k8s_workqueue_add(q, "x"), 0);
        assert_int_equal(k8s_workqueue_len(q), 0);
        assert_null(get_now(q));

        /* done: it comes back exactly once */
        k8s_workqueue_done(q, k);
        free(k);
        assert_int_equal(k8s_workqueue_len(q), 1);
        k = get_now(q);
        assert_string_equal(k, "x");
        assert_null(get_now(q));
        k8s_workqueue_done(q, k);
        free(k);
        /* done without a pending add: gone */
        assert_int_equal(k8s_workqueue_len(q), 0);
        assert_null(get_now(q));
        k8s_workqueue_free(q);
}

static void test_add_after(void **state)
{
        (void) state;
        K8sWorkQueue *q = new_queue();
        assert_int_equal(k8s_workqueue_add_after(q, "late", 5000), 0);
        assert_int_equal(k8s_workqueue_add_after(q, "soon", 100), 0);
        assert_int_equal(k8s_workqueue_delayed(q), 2);
        assert_null(get_now(q));

        fake_now += 99 * 1000;
        assert_null(get_now(q));
        fake_now += 1000;
        char *k = get_now(q);
        assert_string_equal(k, "soon");
        k8s_workqueue_done(q, k);
        free(k);
        assert_null(get_now(q));

        /* delayed again with an earlier time: the earlier one wins */
        assert_int_equal(k8s_workqueue_add_after(q, "late", 200), 0);
        fake_now += 200 * 1000;
        k = get_now(q);
        assert_string_equal(k, "late");
        k8s_workqueue_done(q, k);
        free(k);
        /* and the first, later deadline does not bring it back */
        fake_now += 10000 * 1000;
        assert_null(get_now(q));
        assert_int_equal(k8s_workqueue_delayed(q), 0);

        /* a delayed key that is also added now is handed out once */
        assert_int_equal(k8s_workqueue_add_after(q, "both", 50), 0);
        assert_int_equal(k8s_workqueue_add(q, "both"), 0);
        k = get_now(q);
        assert_string_equal(k, "both");
        fake_now += 50 * 1000;
        /* due while processing: held until done */
        assert_null(get_now(q));
        k8s_workqueue_done(q, k);
        free(k);
        k = get_now(q);
        assert_string_equal(k, "both");
        k8s_workqueue_done(q, k);
        free(k);
        assert_null(get_now(q));
        k8s_workqueue_free(q);
}

static void test_rate_limited_backoff(void **state)
{
        (void) state;
        K8sWorkQueue *q = new_queue();
        static const long expect[] = {10, 20, 40, 80, 160, 320, 640, 1000, 1000};
        for (size_t i = 0; i < ARRAY_SIZE(expect); i++) {
                long d = k8s_workqueue_add_rate_limited(q, "f");
                assert_int_equal(d, expect[i]);
                assert_int_equal(k8s_workqueue_num_requeues(q, "f"), i + 1);
                fake_now += (uint64_t) (d - 1) * 1000;
                assert_null(get_now(q));
                fake_now += 1000;
                char *k = get_now(q);
                assert_string_equal(k, "f");
                k8s_workqueue_done(q, k);
                free(k);
        }
        /* another key has its own count */
        assert_int_equal(k8s_workqueue_add_rate_limited(q, "g"), 10);
        k8s_workqueue_forget(q, "f");
        assert_int_equal(k8s_workqueue_num_requeues(q, "f"), 0);
        assert_int_equal(k8s_workqueue_add_rate_limited(q, "f"), 10);
        k8s_workqueue_free(q);
}

static void test_shutdown_drains(void **state)
{
        (void) state;
        K8sWorkQueue *q = new_queue();
        assert_int_equal(k8s_workqueue_add(q, "a"), 0);
        k8s_workqueue_shutdown(q);
        assert_int_equal(k8s_workqueue_add(q, "b"), -ESHUTDOWN);
        assert_int_equal(k8s_workqueue_add_after(q, "c", 10), -ESHUTDOWN);
        char *k = get_now(q);
        assert_string_equal(k, "a");
        k8s_workqueue_done(q, k);
        free(k);
        /* blocking get returns at once when shut down and empty */
        assert_int_equal(k8s_workqueue_get(q, -1, &k), -ESHUTDOWN);
        k8s_workqueue_free(q);
}

/* ------------------------------------------------------------ threads */

#define KEYS    50
#define ROUNDS  40
#define WORKERS 4

typedef struct {
        K8sWorkQueue *q;
        atomic_int busy[KEYS]; /* workers holding key i now: must never exceed 1 */
        atomic_int handled[KEYS];
        atomic_int overlap;
} Shared;

static void *worker(void *arg)
{
        Shared *s = arg;
        char *k = NULL;
        while (k8s_workqueue_get(s->q, -1, &k) == 0) {
                int i = atoi(k);
                if (atomic_fetch_add(&s->busy[i], 1) != 0)
                        atomic_store(&s->overlap, 1);
                atomic_fetch_add(&s->handled[i], 1);
                atomic_fetch_sub(&s->busy[i], 1);
                k8s_workqueue_done(s->q, k);
                free(k);
        }
        return NULL;
}

static void test_threads(void **state)
{
        (void) state;
        static Shared s;
        pthread_t t[WORKERS];
        memset(&s, 0, sizeof(s));
        assert_int_equal(k8s_workqueue_new(NULL, &s.q), 0);
        for (int i = 0; i < WORKERS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, worker, &s), 0);
        for (int r = 0; r < ROUNDS; r++)
                for (int i = 0; i < KEYS; i++) {
                        char key[16];
                        (void) snprintf(key, sizeof(key), "%d", i);
                        assert_int_equal(k8s_workqueue_add(s.q, key), 0);
                        if (r % 10 == 0)
                                assert_int_equal(k8s_workqueue_add_after(s.q, key, 1), 0);
                }
        /* let the delayed adds come due before shutting down */
        while (k8s_workqueue_delayed(s.q) > 0)
                (void) usleep(1000);
        k8s_workqueue_shutdown(s.q);
        for (int i = 0; i < WORKERS; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(atomic_load(&s.overlap), 0);
        for (int i = 0; i < KEYS; i++) {
                /* every key handled at least once after its last add, never more often
                 * than it was added */
                assert_true(atomic_load(&s.handled[i]) >= 1);
                assert_true(atomic_load(&s.handled[i]) <= ROUNDS + ROUNDS / 10);
        }
        assert_int_equal(k8s_workqueue_len(s.q), 0);
        k8s_workqueue_free(s.q);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_dedup_and_order),
                cmocka_unit_test(test_processing_not_handed_out_twice),
                cmocka_unit_test(test_add_after),
                cmocka_unit_test(test_rate_limited_backoff),
                cmocka_unit_test(test_shutdown_drains),
                cmocka_unit_test(test_threads),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
