/* The gateway's cluster mapping (gateway/src/cluster-map.c): an E2B create
 * body, through e2b-api's agent body, into a Sandbox object; Sandbox objects
 * back into E2B's views; setTimeout as spec.timeout; where a create stands. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "cluster-map.h"
#include "e2b-api.h"
#include "sandpit/util.h"

static json_object *parse(const char *s)
{
        json_object *o = json_tokener_parse(s);
        if (!o)
                fail_msg("bad test JSON: %s", s);
        return o;
}

static const char *plain(json_object *o)
{
        return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* An E2B v2 create body as control.c hands it to the backend: the agent's
 * body, with the secure label. */
static json_object *agent_body(const char *e2b, bool internet)
{
        GwE2bConfig cfg = {.internet = internet};
        json_object *b = parse(e2b);
        GwE2bCreate c = {0};
        char err[256] = "";
        assert_int_equal(gw_e2b_create_parse(b, false, &cfg, &c, err, sizeof(err)), 0);
        json_object *req = NULL;
        assert_int_equal(gw_e2b_create_to_agent(&c, &req, err, sizeof(err)), 0);
        gw_e2b_create_done(&c);
        json_object_put(b);
        json_object *labels = NULL;
        assert_true(json_object_object_get_ex(req, "labels", &labels));
        json_object_object_add(labels, GW_CLUSTER_ANN_SECURE, json_object_new_string("true"));
        return req;
}

static void test_create_maps_to_a_sandbox(void **state)
{
        (void) state;
        json_object *req = agent_body("{\"templateID\":\"code-interpreter-v1\",\"timeout\":120,"
                                      "\"metadata\":{\"user\":\"u1\",\"run\":\"7\"},"
                                      "\"envVars\":{\"A\":\"1\",\"B_2\":\"x y\"}}",
                                      true);
        json_object *obj = NULL;
        char err[256] = "";
        assert_int_equal(gw_cluster_sandbox_new(req, "team-a", "abc123", &obj, err, sizeof(err)),
                         0);
        json_object *want = parse(
                "{\"apiVersion\":\"sandpit.dev/v1alpha1\",\"kind\":\"Sandbox\","
                "\"metadata\":{\"name\":\"abc123\",\"namespace\":\"team-a\","
                "\"labels\":{\"sandpit.dev/created-by\":\"e2b-gateway\"},"
                "\"annotations\":{\"sandpit.dev/e2b-template\":\"code-interpreter-v1\","
                "\"sandpit.dev/e2b-secure\":\"true\"}},"
                "\"spec\":{\"template\":\"code-interpreter\",\"timeout\":\"120s\",\"expiryPolicy\":"
                "\"Delete\","
                "\"labels\":{\"user\":\"u1\",\"run\":\"7\"},"
                "\"env\":[{\"name\":\"A\",\"value\":\"1\"},{\"name\":\"B_2\",\"value\":\"x y\"}],"
                "\"network\":{\"egress\":{\"policy\":\"Allow\"}}}}");
        if (!json_object_equal(obj, want))
                fail_msg("got %s", plain(obj));
        json_object_put(want);
        json_object_put(obj);
        json_object_put(req);
}

static void test_create_egress(void **state)
{
        (void) state;
        char err[256] = "";
        json_object *obj = NULL;
        /* No sandbox networking on the agents: E2B's default becomes no egress. */
        json_object *req = agent_body("{\"templateID\":\"base\"}", false);
        assert_int_equal(gw_cluster_sandbox_new(req, "ns", "a", &obj, err, sizeof(err)), 0);
        json_object *spec = NULL;
        assert_true(json_object_object_get_ex(obj, "spec", &spec));
        assert_false(json_object_object_get_ex(spec, "network", NULL)); /* the CRD's Deny */
        json_object_put(obj);
        json_object_put(req);
        /* allowOut: an AllowList. */
        req = agent_body("{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"0.0.0.0/0\"],"
                         "\"allowOut\":[\"198.18.0.0/15\",\"198.19.1.1\"]}}",
                         true);
        assert_int_equal(gw_cluster_sandbox_new(req, "ns", "a", &obj, err, sizeof(err)), 0);
        json_object *net = NULL;
        assert_true(json_object_object_get_ex(obj, "spec", &spec));
        assert_true(json_object_object_get_ex(spec, "network", &net));
        json_object *want = parse("{\"egress\":{\"policy\":\"AllowList\",\"allow\":"
                                  "[{\"cidr\":\"198.18.0.0/15\"},{\"cidr\":\"198.19.1.1/32\"}]}}");
        if (!json_object_equal(net, want))
                fail_msg("got %s", plain(net));
        json_object_put(want);
        json_object_put(obj);
        json_object_put(req);
        /* A deny list without 0.0.0.0/0: the CRD has none. */
        req = agent_body("{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"198.18.0.0/15\"]}}",
                         true);
        obj = NULL;
        assert_int_equal(gw_cluster_sandbox_new(req, "ns", "a", &obj, err, sizeof(err)),
                         -EOPNOTSUPP);
        assert_null(obj);
        assert_non_null(strstr(err, "deny list"));
        json_object_put(req);
}

static void test_create_refusals(void **state)
{
        (void) state;
        char err[256] = "";
        json_object *obj = NULL;
        /* A sandpit template name E2B takes but a Sandbox cannot hold. */
        json_object *req = agent_body("{\"templateID\":\"My_Template\"}", true);
        assert_int_equal(gw_cluster_sandbox_new(req, "ns", "a", &obj, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "DNS label"));
        json_object_put(req);
        /* What the mapping does not know is refused, not dropped. */
        req = parse("{\"template\":\"default\",\"cpu\":2}");
        assert_int_equal(gw_cluster_sandbox_new(req, "ns", "a", &obj, err, sizeof(err)),
                         -EOPNOTSUPP);
        assert_non_null(strstr(err, "cpu"));
        json_object_put(req);
        req = parse("{\"template\":\"default\",\"timeout\":604801}");
        assert_int_equal(gw_cluster_sandbox_new(req, "ns", "a", &obj, err, sizeof(err)), -EINVAL);
        json_object_put(req);
        assert_null(obj);
}

/* autoPause: the agent's on_timeout "pause" is expiryPolicy Pause, and back. */
static void test_auto_pause(void **state)
{
        (void) state;
        char err[256] = "";
        json_object *obj = NULL, *spec = NULL, *view = NULL, *v = NULL;
        json_object *req = agent_body("{\"templateID\":\"base\",\"autoPause\":true}", true);
        assert_int_equal(gw_cluster_sandbox_new(req, "ns", "a", &obj, err, sizeof(err)), 0);
        assert_true(json_object_object_get_ex(obj, "spec", &spec));
        assert_true(json_object_object_get_ex(spec, "expiryPolicy", &v));
        assert_string_equal(json_object_get_string(v), "Pause");
        assert_int_equal(gw_cluster_sandbox_view(obj, &view), 0);
        assert_true(json_object_object_get_ex(view, "on_timeout", &v));
        assert_string_equal(json_object_get_string(v), "pause");
        json_object_put(view);
        json_object_put(obj);
        json_object_put(req);
        /* Without it: Delete, shown as "delete". */
        req = agent_body("{\"templateID\":\"base\"}", true);
        assert_int_equal(gw_cluster_sandbox_new(req, "ns", "a", &obj, err, sizeof(err)), 0);
        assert_int_equal(gw_cluster_sandbox_view(obj, &view), 0);
        assert_true(json_object_object_get_ex(view, "on_timeout", &v));
        assert_string_equal(json_object_get_string(v), "delete");
        json_object_put(view);
        json_object_put(obj);
        json_object_put(req);
        obj = NULL;
        req = parse("{\"template\":\"default\",\"on_timeout\":\"stop\"}");
        assert_int_equal(gw_cluster_sandbox_new(req, "ns", "a", &obj, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "on_timeout"));
        assert_null(obj);
        json_object_put(req);
}

#define RUNNING_SBX                                                                            \
        "{\"apiVersion\":\"sandpit.dev/v1alpha1\",\"kind\":\"Sandbox\","                       \
        "\"metadata\":{\"name\":\"abc123\",\"namespace\":\"default\",\"uid\":\"u-1\","         \
        "\"creationTimestamp\":\"2026-11-22T12:00:00Z\",\"generation\":1,"                     \
        "\"annotations\":{\"sandpit.dev/e2b-template\":\"base\",\"sandpit.dev/e2b-secure\":"   \
        "\"true\"}},"                                                                          \
        "\"spec\":{\"template\":\"default\",\"timeout\":\"300s\",\"labels\":{\"user\":\"u1\"," \
        "\"sandpit.dev/x\":\"dropped\"},\"network\":{\"egress\":{\"policy\":\"AllowList\","    \
        "\"allow\":[{\"cidr\":\"198.18.0.0/15\"}]}}},"                                         \
        "\"status\":{\"phase\":\"%s\",\"nodeName\":\"node-a\",\"sandboxID\":\"sbx-u-1\","      \
        "\"startedAt\":\"2026-11-22T12:00:01.000000Z\","                                       \
        "\"expiresAt\":\"2026-11-22T12:05:00.500000Z\","                                       \
        "\"resources\":{\"cpu\":\"1500m\",\"memory\":\"512Mi\",\"disk\":\"256Mi\",\"pids\":512}}}"

static json_object *sbx(const char *phase)
{
        char buf[2048];
        snprintf(buf, sizeof(buf), RUNNING_SBX, phase);
        return parse(buf);
}

static void test_sandbox_to_e2b(void **state)
{
        (void) state;
        json_object *obj = sbx("Running");
        json_object *agent = NULL, *e2b = NULL;
        assert_int_equal(gw_cluster_sandbox_view(obj, &agent), 0);
        assert_string_equal(json_object_get_string(json_object_object_get(agent, "node")),
                            "node-a");
        assert_string_equal(json_object_get_string(json_object_object_get(agent, "agent_id")),
                            "sbx-u-1");
        GwE2bConfig cfg = {.internet = true};
        assert_int_equal(gw_e2b_sandbox_from_agent(agent, GW_E2B_VIEW_DETAIL, &cfg, "tok", &e2b),
                         0);
        json_object *want = parse(
                "{\"sandboxID\":\"abc123\",\"templateID\":\"base\",\"alias\":\"base\","
                "\"clientID\":\"sandpit\",\"envdVersion\":\"" GW_E2B_ENVD_VERSION "\","
                "\"envdAccessToken\":\"tok\",\"domain\":null,\"metadata\":{\"user\":\"u1\"},"
                "\"startedAt\":\"2026-11-22T12:00:01.000000Z\","
                "\"endAt\":\"2026-11-22T12:05:00.500000Z\",\"state\":\"running\",\"cpuCount\":2,"
                "\"memoryMB\":512,\"diskSizeMB\":256,\"volumeMounts\":[],"
                "\"network\":{\"allowOut\":[\"198.18.0.0/15\"],\"denyOut\":[\"0.0.0.0/0\"]},"
                "\"allowInternetAccess\":true,"
                "\"lifecycle\":{\"onTimeout\":\"kill\",\"autoResume\":false}}");
        if (!json_object_equal(e2b, want))
                fail_msg("got %s", plain(e2b));
        /* The secure mark reaches the labels the access-token check reads. */
        json_object *labels = json_object_object_get(agent, "labels");
        assert_string_equal(
                json_object_get_string(json_object_object_get(labels, GW_CLUSTER_ANN_SECURE)),
                "true");
        json_object_put(want);
        json_object_put(e2b);
        json_object_put(agent);
        json_object_put(obj);

        obj = sbx("Paused");
        assert_int_equal(gw_cluster_sandbox_view(obj, &agent), 0);
        assert_string_equal(json_object_get_string(json_object_object_get(agent, "state")),
                            "paused");
        json_object_put(agent);
        json_object_put(obj);
}

static void test_states_e2b_does_not_know(void **state)
{
        (void) state;
        static const struct {
                const char *phase, *agent_state;
        } cases[] = {{"Pending", "creating"}, {"Expired", "expired"}, {"Failed", "failed"}};
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                json_object *obj = sbx(cases[i].phase), *agent = NULL, *e2b = NULL;
                assert_int_equal(gw_cluster_sandbox_view(obj, &agent), 0);
                assert_string_equal(json_object_get_string(json_object_object_get(agent, "state")),
                                    cases[i].agent_state);
                assert_int_equal(
                        gw_e2b_sandbox_from_agent(agent, GW_E2B_VIEW_LISTED, NULL, NULL, &e2b),
                        -ENOENT);
                json_object_put(agent);
                json_object_put(obj);
        }
        /* Being deleted: gone for E2B, whatever the phase. */
        json_object *obj = sbx("Running"), *agent = NULL;
        json_object_object_add(json_object_object_get(obj, "metadata"), "deletionTimestamp",
                               json_object_new_string("2026-11-22T12:01:00Z"));
        assert_int_equal(gw_cluster_sandbox_view(obj, &agent), 0);
        assert_string_equal(json_object_get_string(json_object_object_get(agent, "state")),
                            "deleting");
        json_object_put(agent);
        json_object_put(obj);
        /* The smallest object (kubectl apply of a name only). */
        obj = parse("{\"metadata\":{\"name\":\"tiny\"}}");
        assert_int_equal(gw_cluster_sandbox_view(obj, &agent), 0);
        assert_string_equal(json_object_get_string(json_object_object_get(agent, "state")),
                            "creating");
        json_object_put(agent);
        json_object_put(obj);
        obj = parse("{\"metadata\":{}}");
        assert_int_equal(gw_cluster_sandbox_view(obj, &agent), -EINVAL);
        json_object_put(obj);
}

/* An MCP session's sandbox keeps its session label through the Sandbox
 * object, as a label of the object (kubectl get sbx -l), and back. */
static void test_mcp_session_label_round_trip(void **state)
{
        (void) state;
        json_object *req = parse("{\"template\":\"default\",\"timeout\":900,\"labels\":{"
                                 "\"" GW_CLUSTER_LABEL_MCP_SESSION "\":\"s0123456789\","
                                 "\"run\":\"1\"}}");
        json_object *obj = NULL, *agent = NULL;
        char err[256] = "";
        assert_int_equal(gw_cluster_sandbox_new(req, "ns", "a", &obj, err, sizeof(err)), 0);
        json_object *md = json_object_object_get(obj, "metadata");
        json_object *want = parse("{\"sandpit.dev/created-by\":\"e2b-gateway\","
                                  "\"sandpit.dev/mcp-session\":\"s0123456789\"}");
        if (!json_object_equal(json_object_object_get(md, "labels"), want))
                fail_msg("got %s", plain(obj));
        json_object_put(want);
        /* Not in spec.labels, where the operator would drop it. */
        want = parse("{\"run\":\"1\"}");
        if (!json_object_equal(
                    json_object_object_get(json_object_object_get(obj, "spec"), "labels"), want))
                fail_msg("got %s", plain(obj));
        json_object_put(want);
        assert_int_equal(gw_cluster_sandbox_view(obj, &agent), 0);
        json_object *labels = json_object_object_get(agent, "labels");
        assert_string_equal(json_object_get_string(
                                    json_object_object_get(labels, GW_CLUSTER_LABEL_MCP_SESSION)),
                            "s0123456789");
        assert_string_equal(json_object_get_string(json_object_object_get(labels, "run")), "1");
        json_object_put(agent);
        json_object_put(obj);
        json_object_put(req);
        /* Without one, none. */
        req = parse("{\"template\":\"default\"}");
        assert_int_equal(gw_cluster_sandbox_new(req, "ns", "a", &obj, err, sizeof(err)), 0);
        assert_int_equal(gw_cluster_sandbox_view(obj, &agent), 0);
        assert_false(json_object_object_get_ex(json_object_object_get(agent, "labels"),
                                               GW_CLUSTER_LABEL_MCP_SESSION, NULL));
        json_object_put(agent);
        json_object_put(obj);
        json_object_put(req);
}

static void test_timeout_counts_from_the_creation(void **state)
{
        (void) state;
        json_object *obj = sbx("Running");
        char t[32], err[256] = "";
        uint64_t expires = 0;
        assert_int_equal(parse_rfc3339_us("2026-11-22T12:05:00.500000Z", &expires), 0);
        /* Created at expiresAt - 300 s; now 100 s later; 600 s from now. */
        uint64_t now = expires - 200u * 1000000u;
        assert_int_equal(gw_cluster_timeout_for(obj, now, 600, t, sizeof(t), err, sizeof(err)), 0);
        assert_string_equal(t, "700s");
        /* A fraction of a second of age counts as a whole one (never short). */
        assert_int_equal(gw_cluster_timeout_for(obj, now + 1, 600, t, sizeof(t), err, sizeof(err)),
                         0);
        assert_string_equal(t, "701s");
        assert_int_equal(gw_cluster_timeout_for(obj, now, GW_CLUSTER_TIMEOUT_MAX_S, t, sizeof(t),
                                                err, sizeof(err)),
                         -EINVAL);
        assert_non_null(strstr(err, "168h"));
        json_object_put(obj);
        /* Not placed yet: from its creationTimestamp. */
        obj = parse("{\"metadata\":{\"name\":\"x\",\"creationTimestamp\":\"2026-11-22T12:00:00Z\"},"
                    "\"spec\":{\"timeout\":\"300s\"}}");
        uint64_t created = 0;
        assert_int_equal(parse_rfc3339_us("2026-11-22T12:00:00Z", &created), 0);
        assert_int_equal(gw_cluster_timeout_for(obj, created + 10u * 1000000u, 60, t, sizeof(t),
                                                err, sizeof(err)),
                         0);
        assert_string_equal(t, "70s");
        json_object_put(obj);
}

static json_object *with_ready(const char *phase, const char *reason, const char *message)
{
        char buf[512];
        snprintf(buf, sizeof(buf),
                 "{\"metadata\":{\"name\":\"x\"},\"status\":{%s%s%s\"conditions\":[{\"type\":"
                 "\"Ready\",\"status\":\"False\",\"reason\":\"%s\",\"message\":\"%s\"}]}}",
                 phase ? "\"phase\":\"" : "", phase ? phase : "", phase ? "\"," : "", reason,
                 message);
        return parse(buf);
}

static void test_ready(void **state)
{
        (void) state;
        char err[256] = "";
        json_object *o = sbx("Running");
        assert_int_equal(gw_cluster_ready(o, err, sizeof(err)), 1);
        json_object_put(o);
        o = with_ready("Pending", "Creating", "the sandbox is being created");
        assert_int_equal(gw_cluster_ready(o, err, sizeof(err)), 0);
        assert_non_null(strstr(err, "Creating"));
        json_object_put(o);
        o = with_ready("Pending", "Unschedulable", "no node has room");
        assert_int_equal(gw_cluster_ready(o, err, sizeof(err)), 0);
        assert_non_null(strstr(err, "no node has room"));
        json_object_put(o);
        o = with_ready("Pending", "InvalidTemplate", "an image template");
        assert_int_equal(gw_cluster_ready(o, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "InvalidTemplate: an image template"));
        json_object_put(o);
        o = with_ready("Failed", "CreateFailed", "node refused");
        assert_int_equal(gw_cluster_ready(o, err, sizeof(err)), -EINVAL);
        json_object_put(o);
        o = with_ready("Failed", "NodeLost", "gone");
        assert_int_equal(gw_cluster_ready(o, err, sizeof(err)), -EIO);
        json_object_put(o);
        o = parse("{\"metadata\":{\"name\":\"x\"}}");
        assert_int_equal(gw_cluster_ready(o, err, sizeof(err)), 0);
        assert_non_null(strstr(err, "not yet placed"));
        json_object_object_add(json_object_object_get(o, "metadata"), "deletionTimestamp",
                               json_object_new_string("2026-11-22T12:01:00Z"));
        assert_int_equal(gw_cluster_ready(o, err, sizeof(err)), -ECANCELED);
        json_object_put(o);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_create_maps_to_a_sandbox),
                cmocka_unit_test(test_create_egress),
                cmocka_unit_test(test_create_refusals),
                cmocka_unit_test(test_auto_pause),
                cmocka_unit_test(test_sandbox_to_e2b),
                cmocka_unit_test(test_states_e2b_does_not_know),
                cmocka_unit_test(test_mcp_session_label_round_trip),
                cmocka_unit_test(test_timeout_counts_from_the_creation),
                cmocka_unit_test(test_ready),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
