/* Unit tests for metrics.c: the Prometheus text exposition (names, HELP/TYPE
 * lines, cumulative histogram buckets, +Inf, sum and count) and the CPU rate
 * between two samples. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static void test_prometheus_format(void **state)
{
        (void) state;
        MetricsNode n = {0};
        n.sandboxes[SANDBOX_RUNNING] = 3;
        n.sandboxes[SANDBOX_PAUSED] = 1;
        n.creations = 7;
        n.create_failures = 2;
        n.execs = 42;
        n.teardown_pending = 5;
        n.metrics_reads = 1234;
        n.metrics_watched = 2;
        prom_histogram_init(&n.create, metrics_create_buckets, METRICS_BUCKETS);
        n.create.buckets[1] = 3;  /* <= 0.0025: warm pool claims */
        n.create.buckets[5] = 1;  /* <= 0.05 */
        n.create.buckets[7] = 4;  /* <= 0.25 */
        n.create.buckets[10] = 2; /* <= 2.5 */
        n.create.count = 10;
        n.create.sum = 1.506;
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(metrics_format_prometheus(&n, &text, &len), 0);
        assert_int_equal(strlen(text), len);
        static const char *const want[] = {
                "# TYPE sandpit_sandboxes gauge\n",
                "sandpit_sandboxes{state=\"running\"} 3\n",
                "sandpit_sandboxes{state=\"paused\"} 1\n",
                "sandpit_sandboxes{state=\"creating\"} 0\n",
                "sandpit_sandboxes{state=\"exited\"} 0\n",
                "sandpit_sandboxes{state=\"deleting\"} 0\n",
                "# TYPE sandpit_sandbox_creations_total counter\nsandpit_sandbox_creations_total "
                "7\n",
                "# TYPE sandpit_sandbox_create_failures_total counter\n"
                "sandpit_sandbox_create_failures_total 2\n",
                "# TYPE sandpit_sandbox_create_duration_seconds histogram\n",
                "sandpit_sandbox_create_duration_seconds_bucket{le=\"0.001\"} 0\n"
                "sandpit_sandbox_create_duration_seconds_bucket{le=\"0.0025\"} 3\n"
                "sandpit_sandbox_create_duration_seconds_bucket{le=\"0.005\"} 3\n"
                "sandpit_sandbox_create_duration_seconds_bucket{le=\"0.01\"} 3\n"
                "sandpit_sandbox_create_duration_seconds_bucket{le=\"0.025\"} 3\n"
                "sandpit_sandbox_create_duration_seconds_bucket{le=\"0.05\"} 4\n"
                "sandpit_sandbox_create_duration_seconds_bucket{le=\"0.1\"} 4\n"
                "sandpit_sandbox_create_duration_seconds_bucket{le=\"0.25\"} 8\n"
                "sandpit_sandbox_create_duration_seconds_bucket{le=\"0.5\"} 8\n"
                "sandpit_sandbox_create_duration_seconds_bucket{le=\"1\"} 8\n"
                "sandpit_sandbox_create_duration_seconds_bucket{le=\"2.5\"} 10\n",
                "sandpit_sandbox_create_duration_seconds_bucket{le=\"60\"} 10\n"
                "sandpit_sandbox_create_duration_seconds_bucket{le=\"+Inf\"} 10\n"
                "sandpit_sandbox_create_duration_seconds_sum 1.506000\n"
                "sandpit_sandbox_create_duration_seconds_count 10\n",
                "# TYPE sandpit_exec_total counter\nsandpit_exec_total 42\n",
                "# TYPE sandpit_teardown_pending gauge\nsandpit_teardown_pending 5\n",
                "# TYPE sandpit_metrics_reads_total counter\nsandpit_metrics_reads_total 1234\n",
                "# TYPE sandpit_metrics_watched gauge\nsandpit_metrics_watched 2\n",
        };
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
                if (!strstr(text, want[i]))
                        fail_msg("missing:\n%s\nin:\n%s", want[i], text);
        /* Every line is a comment or "name[{labels}] value"; every HELP has a TYPE. */
        size_t help = 0, type = 0;
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
                if (strncmp(line, "# HELP ", 7) == 0) {
                        help++;
                        continue;
                }
                if (strncmp(line, "# TYPE ", 7) == 0) {
                        type++;
                        continue;
                }
                assert_true(strncmp(line, "sandpit_", 8) == 0);
                char *sp = strrchr(line, ' ');
                assert_non_null(sp);
                char *end = NULL;
                (void) strtod(sp + 1, &end);
                assert_true(*end == '\0' && end != sp + 1);
        }
        assert_int_equal(help, 8);
        assert_int_equal(type, 8);
        free(text);
}

static void test_cpu_between(void **state)
{
        (void) state;
        MetricsSample a = {
                .ts_us = 1000000, .cpu_usage_ns = 5000000000ull, .cpu_count = 2, .host_cores = 4};
        MetricsSample b = a;
        b.ts_us = 3000000;               /* 2 s later */
        b.cpu_usage_ns += 3000000000ull; /* 3 s of CPU */
        metrics_cpu_between(&a, &b);
        assert_true(b.cpu_used_cores > 1.499 && b.cpu_used_cores < 1.501);
        assert_true(b.cpu_used_pct > 74.99 && b.cpu_used_pct < 75.01); /* of a 2-core quota */
        assert_true(b.cpu_host_pct > 37.49 && b.cpu_host_pct < 37.51); /* of 4 host cores */
        /* No previous sample, time not moving, or a counter that went back: 0. */
        metrics_cpu_between(NULL, &b);
        assert_true(b.cpu_used_cores == 0);
        MetricsSample c = a;
        metrics_cpu_between(&a, &c);
        assert_true(c.cpu_used_pct == 0);
        MetricsSample d = b;
        d.cpu_usage_ns = 1;
        metrics_cpu_between(&b, &d);
        assert_true(d.cpu_used_cores == 0);
}

static void test_sample_json(void **state)
{
        (void) state;
        MetricsSample s = {.ts_us = 1700000000123456ull,
                           .cpu_count = 1.5,
                           .cpu_used_pct = 12.345,
                           .memory_used = 10,
                           .memory_limit = 20,
                           .disk_used = 3,
                           .disk_total = 4,
                           .pids = 5,
                           .oom_kills = 1};
        json_object *o = metrics_sample_to_json(&s);
        const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        assert_non_null(strstr(text, "\"timestamp\":\"2023-11-14T22:13:20.123Z\""));
        assert_non_null(strstr(text, "\"timestamp_unix\":1700000000"));
        assert_non_null(strstr(text, "\"cpu_count\":1.50"));
        assert_non_null(strstr(text, "\"cpu_used_pct\":12.35")
                                ?: strstr(text, "\"cpu_used_pct\":12.34"));
        assert_non_null(strstr(text, "\"memory_used\":10,\"memory_limit\":20"));
        assert_non_null(strstr(text, "\"disk_used\":3,\"disk_total\":4"));
        assert_non_null(strstr(text, "\"oom_kills\":1"));
        json_object_put(o);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_prometheus_format),
                cmocka_unit_test(test_cpu_between),
                cmocka_unit_test(test_sample_json),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
