/* Unit tests for prom.c: histogram bucketing (edges land in their own
 * bucket, past the last bound only in +Inf) and the text it writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sandpit/prom.h"

static const double bounds[] = {0.1, 1, 10};

static char *render(void (*fn)(FILE *f, const void *arg), const void *arg)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        assert_non_null(f);
        fn(f, arg);
        assert_int_equal(fclose(f), 0);
        return buf;
}

static void write_h(FILE *f, const void *arg)
{
        prom_write_histogram(f, "x_seconds", "Some time.", arg);
}

static void test_histogram(void **state)
{
        (void) state;
        PromHistogram h;
        prom_histogram_init(&h, bounds, 3);
        const double obs[] = {0.05, 0.1, 0.5, 1, 3, 100, 1000};
        for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
                prom_histogram_observe(&h, obs[i]);
        assert_int_equal(h.buckets[0], 2);
        assert_int_equal(h.buckets[1], 2);
        assert_int_equal(h.buckets[2], 1);
        assert_int_equal(h.count, 7);
        char *text = render(write_h, &h);
        assert_string_equal(text, "# HELP x_seconds Some time.\n"
                                  "# TYPE x_seconds histogram\n"
                                  "x_seconds_bucket{le=\"0.1\"} 2\n"
                                  "x_seconds_bucket{le=\"1\"} 4\n"
                                  "x_seconds_bucket{le=\"10\"} 5\n"
                                  "x_seconds_bucket{le=\"+Inf\"} 7\n"
                                  "x_seconds_sum 1104.650000\n"
                                  "x_seconds_count 7\n");
        free(text);
}

static void test_init_caps_buckets(void **state)
{
        (void) state;
        double many[PROM_MAX_BUCKETS + 4];
        for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++)
                many[i] = (double) i + 1;
        PromHistogram h;
        prom_histogram_init(&h, many, sizeof(many) / sizeof(many[0]));
        assert_int_equal(h.n_bounds, PROM_MAX_BUCKETS);
        prom_histogram_observe(&h, 1e9);
        assert_int_equal(h.count, 1);
        for (size_t i = 0; i < PROM_MAX_BUCKETS; i++)
                assert_int_equal(h.buckets[i], 0);
}

static void write_samples(FILE *f, const void *arg)
{
        (void) arg;
        prom_write_metric(f, "a_total", "counter", "A count.", 42);
        prom_write_sample(f, "b", "k=\"v\"", 0.25);
        prom_write_sample(f, "c", "", 1795442823.5);
        prom_write_sample(f, "d", NULL, 1e300);
}

static void test_samples(void **state)
{
        (void) state;
        char *text = render(write_samples, NULL);
        assert_string_equal(text, "# HELP a_total A count.\n# TYPE a_total counter\na_total 42\n"
                                  "b{k=\"v\"} 0.25\nc 1795442823.5\nd 1.0000000000000001e+300\n");
        free(text);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_histogram),
                cmocka_unit_test(test_init_caps_buckets),
                cmocka_unit_test(test_samples),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
