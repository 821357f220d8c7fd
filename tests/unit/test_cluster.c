/* Cluster mode's pure parts: the Lease name from a node name (DNS subdomain
 * names only) and the MicroTime format; option checks that need no server. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster-args.h"
#include "cluster.h"

static void test_lease_name(void **state)
{
        (void) state;
        char *n = NULL;
        assert_int_equal(cluster_lease_name("node-1.example", &n), 0);
        assert_string_equal(n, "sandpit-agent-node-1.example");
        free(n);
        static const char *const bad[] = {"",   "Node", "a/b",  "..",   "-a",
                                          "a-", "a b",  "a%2f", "a\nb", ".a"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                n = NULL;
                assert_int_equal(cluster_lease_name(bad[i], &n), -EINVAL);
                assert_null(n);
        }
        char longname[300];
        memset(longname, 'a', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = 0;
        assert_int_equal(cluster_lease_name(longname, &n), -EINVAL);
        assert_int_equal(cluster_lease_name(NULL, &n), -EINVAL);
}

static void test_microtime(void **state)
{
        (void) state;
        char buf[40];
        cluster_format_microtime(UINT64_C(1795348800) * 1000000 + 42, buf, sizeof(buf));
        assert_string_equal(buf, "2026-11-22T12:00:00.000042Z");
        cluster_format_microtime(999999, buf, sizeof(buf));
        assert_string_equal(buf, "1970-01-01T00:00:00.999999Z");
}

static void test_args_check(void **state)
{
        (void) state;
        char err[256];
        ClusterArgs a = {0};
        assert_int_equal(cluster_args_check(&a, true, NULL, NULL, err, sizeof(err)), 0);
        assert_int_equal(cluster_args_check(&a, false, NULL, NULL, err, sizeof(err)), -EINVAL);
        a = (ClusterArgs){.node_name = "n", .any_cluster_flag = true};
        assert_int_equal(cluster_args_check(&a, true, NULL, NULL, err, sizeof(err)), -EINVAL);
        a = (ClusterArgs){.in_cluster = true, .kubeconfig = "/k", .node_name = "n"};
        assert_int_equal(cluster_args_check(&a, false, "127.0.0.1:1", "/t", err, sizeof(err)),
                         -EINVAL);
        assert_non_null(strstr(err, "one of"));
        a = (ClusterArgs){.in_cluster = true, .node_name = "n", .lease_duration = "3601"};
        assert_int_equal(cluster_args_check(&a, false, "127.0.0.1:1", "/t", err, sizeof(err)),
                         -EINVAL);
        assert_non_null(strstr(err, "--lease-duration"));
        a = (ClusterArgs){.in_cluster = true, .node_name = "n", .capacity_cpu = "-1"};
        assert_int_equal(cluster_args_check(&a, false, "127.0.0.1:1", "/t", err, sizeof(err)),
                         -EINVAL);
        assert_non_null(strstr(err, "--capacity-cpu"));
        a = (ClusterArgs){.in_cluster = true, .node_name = "n"};
        assert_int_equal(cluster_args_check(&a, false, ":7443", "/t", err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "--advertise"));
        assert_null(a.config);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_lease_name),
                cmocka_unit_test(test_microtime),
                cmocka_unit_test(test_args_check),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
