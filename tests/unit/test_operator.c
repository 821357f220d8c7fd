/* Unit tests for the operator's pure parts: durations, RFC 3339 times,
 * conditions (lastTransitionTime only on change), Leases to agents, and a
 * Sandbox's requests. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../operator/src/operator.h"

static void test_durations(void **state)
{
        (void) state;
        static const struct {
                const char *s;
                long want;
        } ok[] = {{"300s", 300}, {"10m", 600}, {"1h30m", 5400},  {"1.5h", 5400},
                  {"250ms", 1},  {"1m1s", 61}, {"168h", 604800}, {"2h0m0.5s", 7201}};
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                long v = -1;
                assert_int_equal(parse_duration_s(ok[i].s, &v), 0);
                assert_int_equal(v, ok[i].want);
        }
        static const char *const bad[] = {"",    "10",  "s",   "-1s", "+1s", "1d",
                                          "1s ", " 1s", "inf", "1x",  "ms"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                long v = -1;
                assert_int_equal(parse_duration_s(bad[i], &v), -EINVAL);
                assert_int_equal(v, -1);
        }
}

static void test_times(void **state)
{
        (void) state;
        uint64_t us = 0;
        assert_int_equal(parse_rfc3339_us("1970-01-01T00:00:01Z", &us), 0);
        assert_int_equal(us, 1000000);
        assert_int_equal(parse_rfc3339_us("1970-01-01T00:00:01.000002Z", &us), 0);
        assert_int_equal(us, 1000002);
        assert_int_equal(parse_rfc3339_us("1970-01-01T00:00:01.5Z", &us), 0);
        assert_int_equal(us, 1500000);
        assert_int_equal(parse_rfc3339_us("1970-01-01T01:00:00+01:00", &us), 0);
        assert_int_equal(us, 0);
        assert_int_equal(parse_rfc3339_us("1970-01-01T00:00:00-00:30", &us), 0);
        assert_int_equal(us, 1800000000);
        assert_int_equal(parse_rfc3339_us("1970-01-01T00:00:00", &us), -EINVAL);
        assert_int_equal(parse_rfc3339_us("1970-01-01T00:00:00Zjunk", &us), -EINVAL);
        assert_int_equal(parse_rfc3339_us("1970-01-01T00:00:00+1:00", &us), -EINVAL);
        assert_int_equal(parse_rfc3339_us("yesterday", &us), -EINVAL);
}

static const char *cond_field(json_object *st, const char *type, const char *name)
{
        json_object *conds = NULL, *v = NULL;
        assert_true(json_object_object_get_ex(st, "conditions", &conds));
        for (size_t i = 0; i < json_object_array_length(conds); i++) {
                json_object *c = json_object_array_get_idx(conds, i), *t = NULL;
                if (json_object_object_get_ex(c, "type", &t) &&
                    strcmp(json_object_get_string(t), type) == 0)
                        return json_object_object_get_ex(c, name, &v) ? json_object_get_string(v)
                                                                      : NULL;
        }
        return NULL;
}

static void test_conditions(void **state)
{
        (void) state;
        json_object *st = json_object_new_object();
        status_set_condition(st, "Ready", "False", "Creating", "wait", 1);
        assert_string_equal(status_condition_status(st, "Ready"), "False");
        assert_null(status_condition_status(st, "Paused"));
        /* an old transition time stays while the status does not change */
        json_object *conds = NULL;
        json_object_object_get_ex(st, "conditions", &conds);
        json_object_object_add(json_object_array_get_idx(conds, 0), "lastTransitionTime",
                               json_object_new_string("2000-01-01T00:00:00Z"));
        status_set_condition(st, "Ready", "False", "Unschedulable", "no room", 2);
        assert_string_equal(cond_field(st, "Ready", "lastTransitionTime"), "2000-01-01T00:00:00Z");
        assert_string_equal(cond_field(st, "Ready", "reason"), "Unschedulable");
        assert_string_equal(cond_field(st, "Ready", "observedGeneration"), "2");
        status_set_condition(st, "Ready", "True", "Running", "", 2);
        const char *ltt = cond_field(st, "Ready", "lastTransitionTime");
        assert_string_not_equal(ltt, "2000-01-01T00:00:00Z");
        assert_int_equal(strlen(ltt), strlen("2000-01-01T00:00:00Z")); /* metav1.Time: seconds */
        status_set_condition(st, "Paused", "False", "Resumed", NULL, 2);
        assert_int_equal(json_object_array_length(conds), 2);
        json_object_put(st);
}

static json_object *lease(const char *name, const char *holder, const char *renew, int duration)
{
        char buf[1024];
        snprintf(buf, sizeof(buf),
                 "{\"metadata\":{\"name\":\"%s\",\"annotations\":{"
                 "\"sandpit.dev/endpoint\":\"http://127.0.0.1:1\","
                 "\"sandpit.dev/capacity-cpu\":\"2\",\"sandpit.dev/"
                 "capacity-memory\":\"1073741824\"}},"
                 "\"spec\":{\"holderIdentity\":\"%s\",\"leaseDurationSeconds\":%d,\"renewTime\":\"%"
                 "s\"}}",
                 name, holder, duration, renew);
        return json_tokener_parse(buf);
}

static void test_leases(void **state)
{
        (void) state;
        uint64_t renew = 0;
        assert_int_equal(parse_rfc3339_us("2026-11-22T12:00:00.000000Z", &renew), 0);
        AgentInfo a = {0};
        json_object *l = lease("sandpit-agent-n1", "n1", "2026-11-22T12:00:00.000000Z", 30);
        assert_int_equal(agent_info_from_lease(l, renew + 30000000, &a), 0);
        assert_string_equal(a.node, "n1");
        assert_string_equal(a.endpoint, "http://127.0.0.1:1");
        assert_true(a.live);
        assert_true(a.cpu == 2.0);
        assert_int_equal(a.memory, 1073741824);
        agent_info_done(&a);
        /* one microsecond past renewTime + leaseDurationSeconds: lost */
        assert_int_equal(agent_info_from_lease(l, renew + 30000001, &a), 0);
        assert_false(a.live);
        agent_info_done(&a);
        json_object_put(l);
        /* a Lease not named after its holder is not an agent's */
        l = lease("sandpit-agent-n2", "n1", "2026-11-22T12:00:00Z", 30);
        assert_int_equal(agent_info_from_lease(l, renew, &a), -EINVAL);
        json_object_put(l);
        l = lease("other", "other", "2026-11-22T12:00:00Z", 30);
        assert_int_equal(agent_info_from_lease(l, renew, &a), -EINVAL);
        json_object_put(l);
        /* a bad renewTime is never live */
        l = lease("sandpit-agent-n1", "n1", "garbage", 30);
        assert_int_equal(agent_info_from_lease(l, renew, &a), 0);
        assert_false(a.live);
        agent_info_done(&a);
        json_object_put(l);
}

static void test_resources(void **state)
{
        (void) state;
        SandboxResources r = {0};
        json_object *o = json_tokener_parse(
                "{\"spec\":{\"resources\":{\"cpu\":\"500m\",\"memory\":\"256Mi\"}}}");
        assert_int_equal(sandbox_resources(o, NULL, &r), 0);
        assert_true(r.cpu == 0.5);
        assert_int_equal(r.memory, 256u << 20);
        assert_int_equal(r.disk, 512u << 20);
        assert_int_equal(r.pids, 512);
        json_object_put(o);
        o = json_tokener_parse("{\"spec\":{}}");
        assert_int_equal(sandbox_resources(o, NULL, &r), 0);
        assert_true(r.cpu == 1.0);
        assert_int_equal(r.memory, 512u << 20);
        json_object_put(o);
        o = json_tokener_parse("{\"spec\":{\"resources\":{\"cpu\":\"lots\"}}}");
        assert_int_equal(sandbox_resources(o, NULL, &r), -EINVAL);
        json_object_put(o);

        /* the Sandbox's values win, the template's fill the rest */
        SandboxTemplateInfo t = {
                .resources = json_tokener_parse(
                        "{\"cpu\":2,\"memory\":\"1Gi\",\"pids\":99,\"disk\":\"64Mi\"}"),
        };
        o = json_tokener_parse("{\"spec\":{\"resources\":{\"memory\":\"128Mi\"}}}");
        assert_int_equal(sandbox_resources(o, &t, &r), 0);
        assert_true(r.cpu == 2.0);
        assert_int_equal(r.memory, 128u << 20);
        assert_int_equal(r.disk, 64u << 20);
        assert_int_equal(r.pids, 99);

        /* status.resources records them: a restarted operator counts the same */
        json_object *st = json_object_new_object();
        json_object_object_add(st, "resources", sandbox_resources_json(&r));
        json_object_object_add(o, "status", st);
        assert_string_equal(json_object_to_json_string_ext(st, JSON_C_TO_STRING_PLAIN),
                            "{\"resources\":{\"cpu\":\"2\",\"memory\":\"128Mi\","
                            "\"disk\":\"64Mi\",\"pids\":99}}");
        SandboxResources placed = {0};
        assert_int_equal(sandbox_placed_resources(o, &placed), 0);
        assert_true(placed.cpu == 2.0);
        assert_int_equal(placed.memory, 128u << 20);
        json_object_put(o);
        sandbox_template_done(&t);
        assert_null(t.resources);
}

/* The CRD defaults a port's protocol to "TCP"; the agent takes "tcp". */
static void test_network(void **state)
{
        (void) state;
        json_object *o = json_tokener_parse(
                "{\"spec\":{\"network\":{\"egress\":{\"policy\":\"AllowList\",\"allow\":["
                "{\"cidr\":\"198.18.0.0\\/15\",\"ports\":[{\"port\":53,\"protocol\":\"UDP\"},"
                "{\"port\":443,\"protocol\":\"TCP\"}]},{\"cidr\":\"198.19.1.0\\/24\"}]}}}}");
        json_object *net = sandbox_network_json(o);
        assert_non_null(net);
        assert_string_equal(json_object_to_json_string_ext(net, JSON_C_TO_STRING_PLAIN),
                            "{\"egress\":\"allowlist\",\"allow\":["
                            "{\"cidr\":\"198.18.0.0\\/15\",\"ports\":[53],\"protocol\":\"udp\"},"
                            "{\"cidr\":\"198.18.0.0\\/15\",\"ports\":[443],\"protocol\":\"tcp\"},"
                            "{\"cidr\":\"198.19.1.0\\/24\"}]}");
        json_object_put(net);
        json_object_put(o);

        o = json_tokener_parse("{\"spec\":{\"network\":{\"egress\":{\"policy\":\"Allow\"}}}}");
        net = sandbox_network_json(o);
        assert_string_equal(json_object_to_json_string_ext(net, JSON_C_TO_STRING_PLAIN),
                            "{\"egress\":\"allow\"}");
        json_object_put(net);
        json_object_put(o);
        o = json_tokener_parse("{\"spec\":{}}");
        assert_null(sandbox_network_json(o));
        json_object_put(o);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_durations),  cmocka_unit_test(test_times),
                cmocka_unit_test(test_conditions), cmocka_unit_test(test_leases),
                cmocka_unit_test(test_resources),  cmocka_unit_test(test_network),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
