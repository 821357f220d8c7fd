/* Unit tests for operator/src/metrics.c: reconcile results by return value,
 * phase names, and the exposition (every result and phase present even at 0,
 * the histogram, build info). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../operator/src/operator.h"

static void test_result_mapping(void **state)
{
        (void) state;
        assert_int_equal(op_metrics_result(0), OP_RESULT_SUCCESS);
        assert_int_equal(op_metrics_result(1500), OP_RESULT_REQUEUE);
        assert_int_equal(op_metrics_result(-EAGAIN), OP_RESULT_ERROR);
}

static void test_phase_index(void **state)
{
        (void) state;
        assert_int_equal(op_metrics_phase_index(NULL), 0);
        assert_int_equal(op_metrics_phase_index(""), 0);
        assert_string_equal(op_metrics_phases[op_metrics_phase_index("Running")], "Running");
        assert_string_equal(op_metrics_phases[op_metrics_phase_index("Expired")], "Expired");
        assert_int_equal(op_metrics_phase_index("running"), -1);
        assert_int_equal(op_metrics_phase_index("Terminating"), -1);
}

static void test_format(void **state)
{
        (void) state;
        OpMetricsSnapshot s = {.queue_depth = 3, .queue_delayed = 2, .start_time_s = 1.5e9};
        s.reconciles[OP_RESULT_SUCCESS] = 5;
        s.reconciles[OP_RESULT_ERROR] = 1;
        s.sandboxes[op_metrics_phase_index("Running")] = 4;
        s.sandboxes_other = 1;
        s.informers[0] = (OpInformerStats){.lists = 2, .events = 9, .gone = 1, .synced = true};
        const double b[] = {0.01, 1};
        prom_histogram_init(&s.duration, b, 2);
        prom_histogram_observe(&s.duration, 0.005);
        prom_histogram_observe(&s.duration, 0.5);
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(op_metrics_format(&s, &text, &len), 0);
        assert_int_equal(strlen(text), len);
        static const char *const want[] = {
                "# TYPE sandpit_operator_reconciles_total counter\n",
                "sandpit_operator_reconciles_total{result=\"success\"} 5\n"
                "sandpit_operator_reconciles_total{result=\"requeue\"} 0\n"
                "sandpit_operator_reconciles_total{result=\"error\"} 1\n",
                "# TYPE sandpit_operator_reconcile_duration_seconds histogram\n",
                "sandpit_operator_reconcile_duration_seconds_bucket{le=\"0.01\"} 1\n"
                "sandpit_operator_reconcile_duration_seconds_bucket{le=\"1\"} 2\n"
                "sandpit_operator_reconcile_duration_seconds_bucket{le=\"+Inf\"} 2\n",
                "sandpit_operator_reconcile_duration_seconds_count 2\n",
                "# TYPE sandpit_operator_workqueue_depth gauge\nsandpit_operator_workqueue_depth "
                "3\n",
                "sandpit_operator_workqueue_delayed 2\n",
                "sandpit_operator_sandboxes{phase=\"Pending\"} 0\n"
                "sandpit_operator_sandboxes{phase=\"Running\"} 4\n"
                "sandpit_operator_sandboxes{phase=\"Paused\"} 0\n"
                "sandpit_operator_sandboxes{phase=\"Expired\"} 0\n"
                "sandpit_operator_sandboxes{phase=\"Failed\"} 0\n"
                "sandpit_operator_sandboxes{phase=\"Unknown\"} 1\n",
                "sandpit_operator_informer_synced{resource=\"sandboxes\"} 1\n"
                "sandpit_operator_informer_synced{resource=\"leases\"} 0\n",
                "sandpit_operator_informer_events_total{resource=\"sandboxes\"} 9\n",
                "sandpit_operator_informer_gone_total{resource=\"sandboxes\"} 1\n",
                "sandpit_operator_build_info{version=\"" OPERATOR_VERSION "\"} 1\n",
                "# TYPE sandpit_operator_leader gauge\nsandpit_operator_leader 0\n",
                "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds 1500000000\n",
        };
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
                if (!strstr(text, want[i]))
                        fail_msg("missing:\n%s\nin:\n%s", want[i], text);
        free(text);
}

static void test_note_reconcile(void **state)
{
        (void) state;
        Operator op = {0};
        OpMetricsSnapshot before, after;
        op_metrics_snapshot(&op, &before);
        op_metrics_note_reconcile(0, 0.002);
        op_metrics_note_reconcile(-EAGAIN, 0.2);
        op_metrics_note_reconcile(700, 3);
        op_metrics_snapshot(&op, &after);
        assert_int_equal(after.reconciles[OP_RESULT_SUCCESS] - before.reconciles[OP_RESULT_SUCCESS],
                         1);
        assert_int_equal(after.reconciles[OP_RESULT_ERROR] - before.reconciles[OP_RESULT_ERROR], 1);
        assert_int_equal(after.reconciles[OP_RESULT_REQUEUE] - before.reconciles[OP_RESULT_REQUEUE],
                         1);
        assert_int_equal(after.duration.count - before.duration.count, 3);
        assert_true(after.start_time_s > 1.7e9);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_result_mapping),
                cmocka_unit_test(test_phase_index),
                cmocka_unit_test(test_format),
                cmocka_unit_test(test_note_reconcile),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
