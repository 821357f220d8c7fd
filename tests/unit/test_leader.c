/* Unit tests for leader election's pure parts (operator/src/leader.c) and
 * the shared Lease helpers (lib/src/k8s-lease.c): the decision to take,
 * renew or wait, judged by the local clock from when the record was seen to
 * change (so clock skew does not matter), durations and flag checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../operator/src/leader.h"
#include "sandpit/k8s-lease.h"

#define S 1000000u /* one second in µs */

static K8sLeaseRecord rec(const char *holder, long duration_s, const char *renew)
{
        return (K8sLeaseRecord){.holder = (char *) holder,
                                .duration_s = duration_s,
                                .acquire_time = (char *) "",
                                .renew_time = (char *) renew};
}

static void test_decide_free_and_released(void **state)
{
        (void) state;
        K8sLeaseRecord r = rec("", 15, "");
        assert_int_equal(leader_decide(&r, 100 * S, 100 * S, "me"), LEADER_TAKE);
        /* a released lease (holder emptied) is free at once, before its duration */
        r = rec("", 1, "2026-11-22T12:00:00.000000Z");
        assert_int_equal(leader_decide(&r, 100 * S, 100 * S, "me"), LEADER_TAKE);
        r = rec(NULL, 0, NULL);
        assert_int_equal(leader_decide(&r, 0, 0, "me"), LEADER_TAKE);
}

static void test_decide_held_by_other(void **state)
{
        (void) state;
        K8sLeaseRecord r = rec("other", 15, "2026-11-22T12:00:00.000000Z");
        /* seen at 100 s: valid until 115 s (exclusive), as client-go's
         * observedTime + leaseDuration > now */
        assert_int_equal(leader_decide(&r, 100 * S, 100 * S, "me"), LEADER_WAIT);
        assert_int_equal(leader_decide(&r, 100 * S, 115 * S - 1, "me"), LEADER_WAIT);
        assert_int_equal(leader_decide(&r, 100 * S, 115 * S, "me"), LEADER_TAKE);
        assert_int_equal(leader_decide(&r, 100 * S, 500 * S, "me"), LEADER_TAKE);
        /* no duration: expired as soon as seen */
        r = rec("other", 0, "");
        assert_int_equal(leader_decide(&r, 100 * S, 100 * S, "me"), LEADER_TAKE);
        /* identity compares whole strings */
        r = rec("me-too", 15, "");
        assert_int_equal(leader_decide(&r, 100 * S, 100 * S, "me"), LEADER_WAIT);
}

static void test_decide_held_by_self(void **state)
{
        (void) state;
        K8sLeaseRecord r = rec("me", 15, "2026-11-22T12:00:00.000000Z");
        assert_int_equal(leader_decide(&r, 100 * S, 100 * S, "me"), LEADER_RENEW);
        /* even long after (a restart with the same identity): renew, not a transition */
        assert_int_equal(leader_decide(&r, 100 * S, 9000 * S, "me"), LEADER_RENEW);
}

static void test_decide_ignores_remote_clock(void **state)
{
        (void) state;
        /* The holder's clock is an hour behind: its renewTime looks long
         * expired to us, but we just saw it change, so it is valid. */
        K8sLeaseRecord r = rec("other", 15, "2000-01-01T00:00:00.000000Z");
        assert_int_equal(leader_decide(&r, 100 * S, 101 * S, "me"), LEADER_WAIT);
        /* The holder's clock is far ahead: renewTime in the future does not
         * keep a lease alive that stopped changing more than a duration ago. */
        r = rec("other", 15, "2999-01-01T00:00:00.000000Z");
        assert_int_equal(leader_decide(&r, 100 * S, 116 * S, "me"), LEADER_TAKE);
}

static void test_durations(void **state)
{
        (void) state;
        static const struct {
                const char *s;
                long ms;
        } ok[] = {{"15s", 15000},  {"500ms", 500},   {"1.5s", 1500},   {"1m", 60000},
                  {"2", 2000},     {"0.5", 500},     {"3s", 3000},     {"1ms", 1},
                  {"1h", 3600000}, {"1m30s", 90000}, {"24h", 86400000}};
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                long v = -1;
                assert_int_equal(leader_parse_duration_ms(ok[i].s, &v), 0);
                assert_int_equal(v, ok[i].ms);
        }
        static const char *const bad[] = {"",    "s",   "0",     "0s", "-1s", "25h", "1x",
                                          "nan", "inf", "0.1ms", "2d", "1s ", "."};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                long v = -1;
                assert_int_equal(leader_parse_duration_ms(bad[i], &v), -EINVAL);
                assert_int_equal(v, -1);
        }
}

static void test_config_check(void **state)
{
        (void) state;
        LeaderConfig c = {.namespace = "ns",
                          .lease_name = "sandpit-operator",
                          .identity = "host_abc",
                          .lease_duration_ms = 3000,
                          .renew_deadline_ms = 2000,
                          .retry_period_ms = 500};
        assert_null(leader_config_check(&c));
        LeaderConfig b = c;
        b.renew_deadline_ms = 3000;
        assert_non_null(strstr(leader_config_check(&b), "--renew-deadline"));
        b = c;
        b.retry_period_ms = 2000;
        assert_non_null(strstr(leader_config_check(&b), "--retry-period"));
        b = c;
        b.lease_duration_ms = 900;
        b.renew_deadline_ms = 800;
        b.retry_period_ms = 100;
        assert_non_null(strstr(leader_config_check(&b), "--lease-duration"));
        b = c;
        b.lease_name = "Bad/Name";
        assert_non_null(strstr(leader_config_check(&b), "--leader-election-id"));
        b.lease_name = "-x";
        assert_non_null(leader_config_check(&b));
        b = c;
        b.identity = "";
        assert_non_null(strstr(leader_config_check(&b), "--identity"));
}

static void test_lease_record_round_trip(void **state)
{
        (void) state;
        json_object *lease = json_tokener_parse(
                "{\"metadata\":{\"name\":\"x\"},\"spec\":{\"holderIdentity\":\"a\","
                "\"leaseDurationSeconds\":15,\"acquireTime\":\"2026-11-22T12:00:00.000000Z\","
                "\"renewTime\":\"2026-11-22T12:00:05.000000Z\",\"leaseTransitions\":3}}");
        K8sLeaseRecord r = {0};
        assert_int_equal(k8s_lease_record_from_json(lease, &r), 0);
        assert_string_equal(r.holder, "a");
        assert_int_equal(r.duration_s, 15);
        assert_string_equal(r.renew_time, "2026-11-22T12:00:05.000000Z");
        assert_int_equal(r.transitions, 3);
        K8sLeaseRecord w = rec("b", 3, "2026-11-22T12:01:00.000000Z");
        w.transitions = 4;
        assert_int_equal(k8s_lease_record_to_json(&w, lease), 0);
        K8sLeaseRecord back = {0};
        assert_int_equal(k8s_lease_record_from_json(lease, &back), 0);
        assert_true(k8s_lease_record_equal(&w, &back));
        assert_false(k8s_lease_record_equal(&r, &back));
        /* an empty acquireTime is left out, as the API has no empty MicroTime */
        json_object *spec = NULL;
        assert_true(json_object_object_get_ex(lease, "spec", &spec));
        assert_false(json_object_object_get_ex(spec, "acquireTime", NULL));
        k8s_lease_record_done(&r);
        k8s_lease_record_done(&back);
        json_object_put(lease);

        /* no spec at all: an empty record, free to take */
        lease = json_tokener_parse("{\"metadata\":{\"name\":\"x\"}}");
        assert_int_equal(k8s_lease_record_from_json(lease, &r), 0);
        assert_string_equal(r.holder, "");
        assert_int_equal(r.duration_s, 0);
        assert_int_equal(leader_decide(&r, 0, 0, "me"), LEADER_TAKE);
        k8s_lease_record_done(&r);
        json_object_put(lease);
}

static void test_microtime(void **state)
{
        (void) state;
        char buf[K8S_MICROTIME_MAX];
        k8s_format_microtime(UINT64_C(1795348800) * 1000000 + 42, buf, sizeof(buf));
        assert_string_equal(buf, "2026-11-22T12:00:00.000042Z");
}

static void test_no_election_always_leads(void **state)
{
        (void) state;
        assert_true(leader_is_leading(NULL));
        assert_true(leader_wait(NULL));
        assert_true(leader_begin(NULL));
        assert_int_equal(leader_check(NULL), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_decide_free_and_released),
                cmocka_unit_test(test_decide_held_by_other),
                cmocka_unit_test(test_decide_held_by_self),
                cmocka_unit_test(test_decide_ignores_remote_clock),
                cmocka_unit_test(test_durations),
                cmocka_unit_test(test_config_check),
                cmocka_unit_test(test_lease_record_round_trip),
                cmocka_unit_test(test_microtime),
                cmocka_unit_test(test_no_election_always_leads),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
