/* The gateway's E2B control-plane JSON: create bodies (what the SDKs send, per
 * E2B-WIRE.md) into sandpit parameters and the agent's create body, agent
 * sandboxes into E2B's views, list filters and nextToken pages, small bodies,
 * error bodies. */
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

#include "e2b-api.h"
#include "sandbox.h"
#include "test-support.h"

static const GwE2bConfig net_cfg = {.internet = true};
static const GwE2bConfig nonet_cfg = {.internet = false};

static const char *plain_unescaped(json_object *o)
{
        return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* Parses body, turns it into the agent's body and compares that with want. */
static void maps_to(const char *body, bool v1, const GwE2bConfig *cfg, const char *want)
{
        json_object *b = parse(body);
        GwE2bCreate c;
        char err[256] = "";
        int r = gw_e2b_create_parse(b, v1, cfg, &c, err, sizeof(err));
        if (r != 0)
                fail_msg("%s: %d %s", body, r, err);
        json_object *agent = NULL;
        assert_int_equal(gw_e2b_create_to_agent(&c, &agent, err, sizeof(err)), 0);
        assert_string_equal(plain_unescaped(agent), want);
        json_object_put(agent);
        gw_e2b_create_done(&c);
        json_object_put(b);
}

static void refused(const char *body, bool v1, const GwE2bConfig *cfg, const char *want_msg)
{
        json_object *b = parse(body);
        GwE2bCreate c;
        char err[256] = "";
        assert_int_equal(gw_e2b_create_parse(b, v1, cfg, &c, err, sizeof(err)), -EINVAL);
        if (!strstr(err, want_msg))
                fail_msg("%s: message \"%s\" lacks \"%s\"", body, err, want_msg);
        json_object_put(b);
}

static void test_create_sdk_bodies(void **state)
{
        (void) state;
        /* @e2b/code-interpreter Sandbox.create() with no options */
        json_object *b = parse("{\"templateID\":\"code-interpreter-v1\"}");
        GwE2bCreate c;
        char err[256] = "";
        assert_int_equal(gw_e2b_create_parse(b, false, &net_cfg, &c, err, sizeof(err)), 0);
        assert_string_equal(c.template_id, "code-interpreter-v1");
        assert_string_equal(c.template_name, "code-interpreter");
        assert_int_equal(c.timeout_s, 300);
        assert_true(c.secure); /* v2 always secures */
        assert_false(c.auto_pause);
        assert_int_equal(c.egress, GW_E2B_EGRESS_ALLOW); /* E2B's default: internet on */
        assert_int_equal(json_object_object_length(c.labels), 0);
        assert_int_equal(json_object_object_length(c.env), 0);
        gw_e2b_create_done(&c);
        json_object_put(b);

        maps_to("{\"templateID\":\"code-interpreter-v1\"}", false, &net_cfg,
                "{\"template\":\"code-interpreter\",\"timeout\":300,\"labels\":{\"sandpit.dev/"
                "e2b-template\":"
                "\"code-interpreter-v1\"},\"network\":{\"egress\":\"allow\"}}");
        /* without sandbox networking, the default of internet access is none */
        maps_to("{\"templateID\":\"base\"}", false, &nonet_cfg,
                "{\"template\":\"default\",\"timeout\":300,\"labels\":{\"sandpit.dev/"
                "e2b-template\":"
                "\"base\"},\"network\":{\"egress\":\"deny\"}}");
        /* the example: metadata, envs, timeoutMs 120000 */
        maps_to("{\"templateID\":\"code-interpreter-v1\",\"metadata\":{\"user\":\"u1\"},"
                "\"envVars\":{\"FOO\":\"bar\"},\"timeout\":120}",
                false, &nonet_cfg,
                "{\"template\":\"code-interpreter\",\"timeout\":120,\"labels\":{\"user\":\"u1\","
                "\"sandpit.dev/e2b-template\":\"code-interpreter-v1\"},\"env\":{\"FOO\":\"bar\"},"
                "\"network\":{\"egress\":\"deny\"}}");
        /* v1 as @e2b/mcp-server sends it */
        b = parse("{\"autoPause\":false,\"templateID\":\"code-interpreter-v1\",\"timeout\":300,"
                  "\"allow_internet_access\":true}");
        assert_int_equal(gw_e2b_create_parse(b, true, &nonet_cfg, &c, err, sizeof(err)), 0);
        assert_false(c.secure);
        assert_int_equal(c.egress, GW_E2B_EGRESS_DENY);
        gw_e2b_create_done(&c);
        json_object_put(b);
        b = parse("{\"templateID\":\"base\",\"secure\":true}");
        assert_int_equal(gw_e2b_create_parse(b, true, &nonet_cfg, &c, err, sizeof(err)), 0);
        assert_true(c.secure);
        gw_e2b_create_done(&c);
        json_object_put(b);
        /* a sandpit template by its own name; nulls are unset */
        maps_to("{\"templateID\":\"host\",\"metadata\":null,\"timeout\":null,\"mcp\":null,"
                "\"volumeMounts\":[],\"autoResume\":{\"enabled\":false},\"autoPauseMemory\":false}",
                false, &nonet_cfg,
                "{\"template\":\"host\",\"timeout\":300,\"labels\":{\"sandpit.dev/e2b-template\":"
                "\"host\"},\"network\":{\"egress\":\"deny\"}}");
        /* configured aliases replace the defaults */
        static const GwE2bAlias aliases[] = {{"python", "py312"}, {NULL, NULL}};
        GwE2bConfig cfg = {.aliases = aliases};
        maps_to("{\"templateID\":\"python\"}", false, &cfg,
                "{\"template\":\"py312\",\"timeout\":300,\"labels\":{\"sandpit.dev/e2b-template\":"
                "\"python\"},\"network\":{\"egress\":\"deny\"}}");
        maps_to("{\"templateID\":\"base\"}", false, &cfg,
                "{\"template\":\"base\",\"timeout\":300,\"labels\":{\"sandpit.dev/e2b-template\":"
                "\"base\"},\"network\":{\"egress\":\"deny\"}}");
}

static void test_create_network(void **state)
{
        (void) state;
        maps_to("{\"templateID\":\"base\",\"allow_internet_access\":false}", false, &net_cfg,
                "{\"template\":\"default\",\"timeout\":300,\"labels\":{\"sandpit.dev/"
                "e2b-template\":"
                "\"base\"},\"network\":{\"egress\":\"deny\"}}");
        /* deny everything but a list: E2B's ALL_TRAFFIC idiom */
        maps_to("{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"0.0.0.0/0\"],"
                "\"allowOut\":[\"198.18.0.1\",\"198.18.4.0/24\"]}}",
                false, &net_cfg,
                "{\"template\":\"default\",\"timeout\":300,\"labels\":{\"sandpit.dev/"
                "e2b-template\":"
                "\"base\"},\"network\":{\"egress\":\"allowlist\",\"allow\":[{\"cidr\":\"198.18.0."
                "1\"},"
                "{\"cidr\":\"198.18.4.0/24\"}]}}");
        /* domains in allowOut become host entries */
        maps_to("{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"0.0.0.0/0\"],"
                "\"allowOut\":[\"api.example.com\",\"*.example.org\",\"198.18.0.1\"]}}",
                false, &net_cfg,
                "{\"template\":\"default\",\"timeout\":300,\"labels\":{\"sandpit.dev/"
                "e2b-template\":"
                "\"base\"},\"network\":{\"egress\":\"allowlist\",\"allow\":[{\"host\":\"api."
                "example.com\"},{\"host\":\"*.example.org\"},{\"cidr\":\"198.18.0.1\"}]}}");
        /* the same with allow_internet_access false */
        maps_to("{\"templateID\":\"base\",\"allow_internet_access\":false,\"network\":{"
                "\"allowOut\":[\"198.18.0.1\"]}}",
                false, &net_cfg,
                "{\"template\":\"default\",\"timeout\":300,\"labels\":{\"sandpit.dev/"
                "e2b-template\":"
                "\"base\"},\"network\":{\"egress\":\"allowlist\",\"allow\":[{\"cidr\":\"198.18.0."
                "1\"}"
                "]}}");
        /* everything but a list */
        maps_to("{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"198.18.0.0/15\"],"
                "\"allowOut\":[\"203.0.113.7\"],\"allowPublicTraffic\":true,\"rules\":{}}}",
                false, &net_cfg,
                "{\"template\":\"default\",\"timeout\":300,\"labels\":{\"sandpit.dev/"
                "e2b-template\":"
                "\"base\"},\"network\":{\"egress\":\"allow\",\"deny\":[{\"cidr\":\"198.18.0.0/15\"}"
                "]}}");
        /* allowOut 0.0.0.0/0 wins over denyOut 0.0.0.0/0 */
        maps_to("{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"0.0.0.0/0\"],"
                "\"allowOut\":[\"0.0.0.0/0\"]}}",
                false, &net_cfg,
                "{\"template\":\"default\",\"timeout\":300,\"labels\":{\"sandpit.dev/"
                "e2b-template\":"
                "\"base\"},\"network\":{\"egress\":\"allow\"}}");

        /* empty lists say nothing, with or without sandbox networking */
        maps_to("{\"templateID\":\"base\",\"allow_internet_access\":false,\"network\":{"
                "\"allowOut\":[],\"denyOut\":[]}}",
                false, &net_cfg,
                "{\"template\":\"default\",\"timeout\":300,\"labels\":{\"sandpit.dev/"
                "e2b-template\":"
                "\"base\"},\"network\":{\"egress\":\"deny\"}}");
        maps_to("{\"templateID\":\"base\",\"network\":{\"allowOut\":[],\"denyOut\":[]}}", false,
                &nonet_cfg,
                "{\"template\":\"default\",\"timeout\":300,\"labels\":{\"sandpit.dev/"
                "e2b-template\":"
                "\"base\"},\"network\":{\"egress\":\"deny\"}}");

        refused("{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"198.18.0.0/15\"],"
                "\"allowOut\":[\"198.18.1.1\"]}}",
                false, &net_cfg, "only supported when denyOut is 0.0.0.0/0");
        refused("{\"templateID\":\"base\",\"network\":{\"allowOut\":[\"198.18.1.1\"]}}", false,
                &nonet_cfg, "need sandbox networking");
        refused("{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"198.18.0.0/15\"]}}", false,
                &nonet_cfg, "need sandbox networking");
        /* denying everything needs no sandbox networking */
        maps_to("{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"0.0.0.0/0\"]}}", false,
                &nonet_cfg,
                "{\"template\":\"default\",\"timeout\":300,\"labels\":{\"sandpit.dev/"
                "e2b-template\":"
                "\"base\"},\"network\":{\"egress\":\"deny\"}}");
        /* allowOut 0.0.0.0/0 wins over any denyOut */
        maps_to("{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"198.18.0.0/15\"],"
                "\"allowOut\":[\"0.0.0.0/0\"]}}",
                false, &net_cfg,
                "{\"template\":\"default\",\"timeout\":300,\"labels\":{\"sandpit.dev/"
                "e2b-template\":"
                "\"base\"},\"network\":{\"egress\":\"allow\"}}");
        refused("{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"example.com\"]}}", false,
                &net_cfg, "domains only in allowOut");
        refused("{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"::1/128\"]}}", false,
                &net_cfg, "not an IPv4 address or CIDR");
        refused("{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"198.18.0.1/15\"]}}", false,
                &net_cfg, "host bits set");
        refused("{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"198.18.0.0/33\"]}}", false,
                &net_cfg, "not an IPv4 address");
        refused("{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"01.2.3.4\"]}}", false,
                &net_cfg, "not an IPv4 address");
        refused("{\"templateID\":\"base\",\"network\":{\"denyOut\":[1]}}", false, &net_cfg,
                "not an IPv4 address");
        refused("{\"templateID\":\"base\",\"network\":{\"denyOut\":\"0.0.0.0/0\"}}", false,
                &net_cfg, "must be an array");
        refused("{\"templateID\":\"base\",\"network\":{\"egressProxy\":{\"address\":\"h:1\"}}}",
                false, &net_cfg, "network.egressProxy is not supported");
        refused("{\"templateID\":\"base\",\"network\":{\"maskRequestHost\":\"x\"}}", false,
                &net_cfg, "network.maskRequestHost is not supported");
        refused("{\"templateID\":\"base\",\"network\":{\"allowPublicTraffic\":false}}", false,
                &net_cfg, "allowPublicTraffic false");
        refused("{\"templateID\":\"base\",\"network\":{\"rules\":{\"a.com\":[]}}}", false, &net_cfg,
                "network.rules");
        refused("{\"templateID\":\"base\",\"network\":{\"httpsPorts\":[3000]}}", false, &net_cfg,
                "httpsPorts");
        refused("{\"templateID\":\"base\",\"network\":{\"foo\":1}}", false, &net_cfg,
                "network: unknown field \"foo\"");
        refused("{\"templateID\":\"base\",\"network\":[]}", false, &net_cfg,
                "network must be an object");
        refused("{\"templateID\":\"base\",\"allow_internet_access\":\"yes\"}", false, &net_cfg,
                "allow_internet_access must be true or false");
}

static void test_create_errors(void **state)
{
        (void) state;
        refused("{}", false, NULL, "templateID is required");
        refused("{\"templateID\":\"\"}", false, NULL, "templateID must be a non-empty string");
        refused("{\"templateID\":5}", false, NULL, "templateID must be a non-empty string");
        refused("{\"templateID\":\"../etc\"}", false, NULL, "is not a template name");
        refused("{\"templateID\":\"base:latest\"}", false, NULL, "is not a template name");
        refused("{\"templateID\":\".hidden\"}", false, NULL, "is not a template name");
        refused("{\"templateID\":\"base\",\"timeout\":0}", false, NULL,
                "timeout must be an integer number of seconds from 1 to 604800");
        refused("{\"templateID\":\"base\",\"timeout\":604801}", false, NULL, "from 1 to 604800");
        refused("{\"templateID\":\"base\",\"timeout\":\"120\"}", false, NULL, "timeout must be");
        refused("{\"templateID\":\"base\",\"timeout\":1.5}", false, NULL, "timeout must be");
        refused("{\"templateID\":\"base\",\"metadata\":{\"a\":1}}", false, NULL,
                "values must be strings");
        refused("{\"templateID\":\"base\",\"metadata\":[]}", false, NULL,
                "metadata must be an object");
        refused("{\"templateID\":\"base\",\"metadata\":{\"a=b\":\"c\"}}", false, NULL,
                "keys must be 1-256 characters without '=' or ','");
        refused("{\"templateID\":\"base\",\"metadata\":{\"\":\"c\"}}", false, NULL,
                "keys must be 1-256");
        refused("{\"templateID\":\"base\",\"metadata\":{\"sandpit.dev/name\":\"x\"}}", false, NULL,
                "reserved for sandpit");
        refused("{\"templateID\":\"base\",\"envVars\":{\"A=B\":\"c\"}}", false, NULL,
                "envVars A=B: names must be");
        refused("{\"templateID\":\"base\",\"envVars\":{\"A\":\"b\\u0000c\"}}", false, NULL,
                "without NUL");
        refused("{\"templateID\":\"base\",\"envVars\":{\"A\":null}}", false, NULL,
                "values must be strings");
        refused("{\"templateID\":\"base\",\"secure\":false}", false, NULL,
                "secure: false is not supported");
        refused("{\"templateID\":\"base\",\"secure\":1}", true, NULL,
                "secure must be true or false");
        refused("{\"templateID\":\"base\",\"autoResume\":{\"enabled\":true}}", false, NULL,
                "autoResume is not supported");
        refused("{\"templateID\":\"base\",\"autoResume\":true}", false, NULL,
                "autoResume must be {\"enabled\": true|false}");
        refused("{\"templateID\":\"base\",\"volumeMounts\":[{\"name\":\"v\",\"path\":\"/mnt\"}]}",
                false, NULL, "volumeMounts are not supported");
        refused("{\"templateID\":\"base\",\"mcp\":{}}", false, NULL, "mcp is not supported");
        refused("{\"templateID\":\"base\",\"iam\":{\"tokens\":{}}}", false, NULL,
                "iam is not supported");
        refused("{\"templateID\":\"base\",\"templateId\":\"x\"}", false, NULL,
                "unknown field \"templateId\"");
        refused("[]", false, NULL, "must be a JSON object");

        /* autoPause: the agent's on_timeout "pause" */
        json_object *b = parse("{\"templateID\":\"base\",\"autoPause\":true}");
        GwE2bCreate c;
        char err[256] = "";
        assert_int_equal(gw_e2b_create_parse(b, false, NULL, &c, err, sizeof(err)), 0);
        assert_true(c.auto_pause);
        json_object *agent = NULL;
        assert_int_equal(gw_e2b_create_to_agent(&c, &agent, err, sizeof(err)), 0);
        json_object *ot = NULL;
        assert_true(json_object_object_get_ex(agent, "on_timeout", &ot));
        assert_string_equal(json_object_get_string(ot), "pause");
        json_object_put(agent);
        gw_e2b_create_done(&c);
        json_object_put(b);
}

/* What the gateway writes, the agent's own create parser takes. */
static void test_agent_accepts(void **state)
{
        (void) state;
        static const char *const bodies[] = {
                "{\"templateID\":\"code-interpreter-v1\"}",
                "{\"templateID\":\"base\",\"metadata\":{\"user\":\"u1\",\"k\":\"a b&c\"},"
                "\"envVars\":{\"FOO\":\"bar\"},\"timeout\":604800}",
                "{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"0.0.0.0/0\"],"
                "\"allowOut\":[\"198.18.0.1\",\"198.18.4.0/24\"]}}",
                "{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"198.18.0.0/15\"]}}",
                "{\"templateID\":\"base\",\"allow_internet_access\":false,\"timeout\":1}",
                "{\"templateID\":\"base\",\"autoPause\":true,\"timeout\":5}",
        };
        for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
                json_object *b = parse(bodies[i]);
                GwE2bCreate c;
                char err[256] = "";
                assert_int_equal(gw_e2b_create_parse(b, false, &net_cfg, &c, err, sizeof(err)), 0);
                json_object *agent = NULL;
                assert_int_equal(gw_e2b_create_to_agent(&c, &agent, err, sizeof(err)), 0);
                SandboxSpec spec;
                int r = sandbox_spec_from_json(agent, &spec, err, sizeof(err));
                if (r != 0)
                        fail_msg("agent refused %s: %s", plain_unescaped(agent), err);
                assert_string_equal(spec.template_name, c.template_name);
                assert_int_equal(spec.timeout_s, c.timeout_s);
                json_object *v = NULL;
                assert_true(json_object_object_get_ex(spec.labels, "sandpit.dev/e2b-template", &v));
                assert_string_equal(json_object_get_string(v), c.template_id);
                assert_int_equal(json_object_object_length(spec.labels),
                                 json_object_object_length(c.labels) + 1);
                sandbox_spec_done(&spec);
                json_object_put(agent);
                gw_e2b_create_done(&c);
                json_object_put(b);
        }
}

static const char agent_sb[] =
        "{\"id\":\"i7c1q0x9d2kd3m8e4z5a\",\"template\":\"default\",\"state\":\"running\","
        "\"cpu\":1.5,\"memory\":536870912,\"pids\":512,\"disk\":1073741824,\"user\":\"user\","
        "\"env\":{},\"secret_env\":[],\"labels\":{\"user\":\"u1\",\"sandpit.dev/e2b-template\":"
        "\"code-interpreter-v1\",\"sandpit.dev/name\":\"x\"},\"timeout\":300,"
        "\"created_at\":\"2026-11-22T10:00:00.000Z\",\"started_at\":\"2026-11-22T10:00:00.080Z\","
        "\"expires_at\":\"2026-11-22T10:05:00.000Z\",\"network\":{\"egress\":\"allowlist\","
        "\"allow\":[{\"cidr\":\"198.18.0.1\",\"protocol\":\"any\"}],\"ip\":\"198.18.64.2\"},"
        "\"oom_kills\":0}";

static void test_views(void **state)
{
        (void) state;
        json_object *sb = parse(agent_sb);
        json_object *o = NULL;
        GwE2bConfig cfg = {.domain = "sbx.example.com"};
        assert_int_equal(gw_e2b_sandbox_from_agent(sb, GW_E2B_VIEW_SANDBOX, &cfg, "tok", &o), 0);
        assert_string_equal(
                plain_unescaped(o),
                "{\"sandboxID\":\"i7c1q0x9d2kd3m8e4z5a\",\"templateID\":"
                "\"code-interpreter-v1\",\"alias\":\"code-interpreter-v1\",\"clientID\":"
                "\"sandpit\",\"envdVersion\":\"0.5.7\",\"envdAccessToken\":\"tok\","
                "\"domain\":\"sbx.example.com\",\"trafficAccessToken\":null}");
        json_object_put(o);
        assert_int_equal(gw_e2b_sandbox_from_agent(sb, GW_E2B_VIEW_SANDBOX, NULL, NULL, &o), 0);
        assert_string_equal(
                plain_unescaped(o),
                "{\"sandboxID\":\"i7c1q0x9d2kd3m8e4z5a\",\"templateID\":"
                "\"code-interpreter-v1\",\"alias\":\"code-interpreter-v1\",\"clientID\":"
                "\"sandpit\",\"envdVersion\":\"0.5.7\",\"domain\":null,"
                "\"trafficAccessToken\":null}");
        json_object_put(o);
        assert_int_equal(gw_e2b_sandbox_from_agent(sb, GW_E2B_VIEW_LISTED, NULL, NULL, &o), 0);
        assert_string_equal(
                plain_unescaped(o),
                "{\"sandboxID\":\"i7c1q0x9d2kd3m8e4z5a\",\"templateID\":"
                "\"code-interpreter-v1\",\"alias\":\"code-interpreter-v1\",\"clientID\":"
                "\"sandpit\",\"envdVersion\":\"0.5.7\",\"metadata\":{\"user\":\"u1\"},"
                "\"startedAt\":\"2026-11-22T10:00:00.080Z\",\"endAt\":"
                "\"2026-11-22T10:05:00.000Z\",\"state\":\"running\",\"cpuCount\":2,"
                "\"memoryMB\":512,\"diskSizeMB\":1024,\"volumeMounts\":[]}");
        json_object_put(o);
        assert_int_equal(gw_e2b_sandbox_from_agent(sb, GW_E2B_VIEW_DETAIL, NULL, "tok", &o), 0);
        json_object *v = NULL;
        assert_true(json_object_object_get_ex(o, "network", &v));
        assert_string_equal(plain_unescaped(v),
                            "{\"allowOut\":[\"198.18.0.1\"],\"denyOut\":[\"0.0.0.0/0\"]}");
        assert_true(json_object_object_get_ex(o, "allowInternetAccess", &v));
        assert_true(json_object_get_boolean(v));
        assert_true(json_object_object_get_ex(o, "lifecycle", &v));
        assert_string_equal(plain_unescaped(v), "{\"onTimeout\":\"kill\",\"autoResume\":false}");
        assert_true(json_object_object_get_ex(o, "envdAccessToken", &v));
        assert_true(json_object_object_get_ex(o, "state", &v));
        json_object_put(o);
        /* the agent's on_timeout "pause" (autoPause) */
        json_object_object_add(sb, "on_timeout", json_object_new_string("pause"));
        assert_int_equal(gw_e2b_sandbox_from_agent(sb, GW_E2B_VIEW_DETAIL, NULL, NULL, &o), 0);
        assert_true(json_object_object_get_ex(o, "lifecycle", &v));
        assert_string_equal(plain(v), "{\"onTimeout\":\"pause\",\"autoResume\":false}");
        json_object_put(o);
        json_object_put(sb);

        /* a native sandbox (no gateway label), egress deny, paused */
        sb = parse("{\"id\":\"n1\",\"template\":\"host\",\"state\":\"paused\",\"cpu\":0.5,"
                   "\"labels\":{},\"network\":{\"egress\":\"deny\"}}");
        assert_int_equal(gw_e2b_sandbox_from_agent(sb, GW_E2B_VIEW_DETAIL, NULL, NULL, &o), 0);
        assert_true(json_object_object_get_ex(o, "templateID", &v));
        assert_string_equal(json_object_get_string(v), "host");
        assert_true(json_object_object_get_ex(o, "cpuCount", &v));
        assert_int_equal(json_object_get_int(v), 1);
        assert_true(json_object_object_get_ex(o, "state", &v));
        assert_string_equal(json_object_get_string(v), "paused");
        assert_true(json_object_object_get_ex(o, "allowInternetAccess", &v));
        assert_false(json_object_get_boolean(v));
        assert_true(json_object_object_get_ex(o, "network", &v));
        assert_string_equal(plain_unescaped(v), "{\"allowOut\":[],\"denyOut\":[\"0.0.0.0/0\"]}");
        assert_false(json_object_object_get_ex(o, "envdAccessToken", &v));
        json_object_put(o);
        json_object_put(sb);

        sb = parse("{\"id\":\"n1\",\"template\":\"host\",\"state\":\"running\","
                   "\"network\":{\"egress\":\"allow\",\"deny\":[{\"cidr\":\"198.18.0.0/15\"}]}}");
        assert_int_equal(gw_e2b_sandbox_from_agent(sb, GW_E2B_VIEW_DETAIL, NULL, NULL, &o), 0);
        assert_true(json_object_object_get_ex(o, "network", &v));
        assert_string_equal(plain_unescaped(v),
                            "{\"allowOut\":[],\"denyOut\":[\"198.18.0.0/15\"]}");
        json_object_put(o);
        json_object_put(sb);

        sb = parse("{\"id\":\"n1\",\"state\":\"exited\"}");
        assert_int_equal(gw_e2b_sandbox_from_agent(sb, GW_E2B_VIEW_DETAIL, NULL, NULL, &o),
                         -ENOENT);
        json_object_put(sb);
        sb = parse("{\"state\":\"running\"}");
        assert_int_equal(gw_e2b_sandbox_from_agent(sb, GW_E2B_VIEW_DETAIL, NULL, NULL, &o),
                         -EINVAL);
        json_object_put(sb);
        assert_int_equal(gw_e2b_sandbox_from_agent(NULL, GW_E2B_VIEW_DETAIL, NULL, NULL, &o),
                         -EINVAL);
}

static void test_metadata_filter(void **state)
{
        (void) state;
        char **f = NULL;
        char err[256] = "";
        /* GET /v2/sandboxes?metadata=user%3Dabc, as the server hands it over */
        assert_int_equal(gw_e2b_metadata_filter_parse("user=abc", &f, err, sizeof(err)), 0);
        assert_string_equal(f[0], "user=abc");
        assert_null(f[1]);
        free(f[0]);
        free(f);
        /* {'my key':'a&b=c'}: the wire has metadata=my%252520key%3Da%252526b%25253Dc */
        assert_int_equal(gw_e2b_metadata_filter_parse("my%2520key=a%2526b%253Dc&x=1&&", &f, err,
                                                      sizeof(err)),
                         0);
        assert_string_equal(f[0], "my key=a&b=c");
        assert_string_equal(f[1], "x=1");
        assert_null(f[2]);
        for (char **p = f; *p; p++)
                free(*p);
        free(f);
        assert_int_equal(gw_e2b_metadata_filter_parse("", &f, err, sizeof(err)), 0);
        assert_null(f[0]);
        free(f);
        static const char *const bad[] = {"=v", "a%zz=1", "a=%2", "a%253D=1", "a=%2500", "%252C=1"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(gw_e2b_metadata_filter_parse(bad[i], &f, err, sizeof(err)),
                                 -EINVAL);
}

/* An agent list of n sandboxes "s0".."s{n-1}", started one second apart in
 * reverse id order, labels team=a for even ones, s3 paused, s4 exited. */
static json_object *agent_list(int n)
{
        json_object *arr = json_object_new_array();
        for (int i = 0; i < n; i++) {
                char buf[512];
                (void) snprintf(buf, sizeof(buf),
                                "{\"id\":\"s%d\",\"template\":\"default\",\"state\":\"%s\","
                                "\"labels\":{\"team\":\"%s\"},"
                                "\"started_at\":\"2026-11-22T10:00:%02d.000Z\"}",
                                i,
                                i == 3   ? "paused"
                                : i == 4 ? "exited"
                                         : "running",
                                i % 2 ? "b" : "a", 59 - i);
                json_object_array_add(arr, parse(buf));
        }
        json_object *o = json_object_new_object();
        json_object_object_add(o, "sandboxes", arr);
        return o;
}

/* Pages through the list with limit and returns the ids joined by ','. */
static void pages(json_object *list, GwE2bListParams p, char *out, size_t outlen, int *ret_pages)
{
        char token[256] = "";
        out[0] = 0;
        *ret_pages = 0;
        for (;;) {
                GwE2bListQuery q;
                char err[256] = "";
                p.next_token = token[0] ? token : NULL;
                int r = gw_e2b_list_query_parse(&p, true, &q, err, sizeof(err));
                if (r != 0)
                        fail_msg("query: %s", err);
                json_object *page = NULL;
                char *next = NULL;
                assert_int_equal(gw_e2b_list_page(list, &q, NULL, &page, &next), 0);
                (*ret_pages)++;
                for (size_t i = 0; i < json_object_array_length(page); i++) {
                        json_object *id = NULL;
                        assert_true(json_object_object_get_ex(json_object_array_get_idx(page, i),
                                                              "sandboxID", &id));
                        if (out[0])
                                strncat(out, ",", outlen - strlen(out) - 1);
                        strncat(out, json_object_get_string(id), outlen - strlen(out) - 1);
                }
                json_object_put(page);
                gw_e2b_list_query_done(&q);
                if (!next)
                        break;
                assert_true(strlen(next) < sizeof(token));
                assert_null(strpbrk(next, "+/=")); /* safe in a query string */
                strcpy(token, next);
                free(next);
                assert_true(*ret_pages < 50);
        }
}

static void test_list(void **state)
{
        (void) state;
        json_object *list = agent_list(8);
        char ids[256];
        int n = 0;
        /* ascending start time: s7 started first */
        pages(list, (GwE2bListParams){0}, ids, sizeof(ids), &n);
        assert_string_equal(ids, "s7,s6,s5,s3,s2,s1,s0");
        assert_int_equal(n, 1);
        pages(list, (GwE2bListParams){.limit = "2"}, ids, sizeof(ids), &n);
        assert_string_equal(ids, "s7,s6,s5,s3,s2,s1,s0");
        assert_int_equal(n, 4);
        pages(list, (GwE2bListParams){.limit = "3", .order = "desc"}, ids, sizeof(ids), &n);
        assert_string_equal(ids, "s0,s1,s2,s3,s5,s6,s7");
        assert_int_equal(n, 3);
        /* an exact multiple of the limit ends without an empty page */
        pages(list, (GwE2bListParams){.limit = "7"}, ids, sizeof(ids), &n);
        assert_int_equal(n, 1);
        pages(list, (GwE2bListParams){.metadata = "team=a", .limit = "1"}, ids, sizeof(ids), &n);
        assert_string_equal(ids, "s6,s2,s0");
        pages(list, (GwE2bListParams){.state = "paused"}, ids, sizeof(ids), &n);
        assert_string_equal(ids, "s3");
        pages(list, (GwE2bListParams){.state = "running"}, ids, sizeof(ids), &n);
        assert_string_equal(ids, "s7,s6,s5,s2,s1,s0");
        pages(list, (GwE2bListParams){.started_after = "2026-11-22T10:00:57Z"}, ids, sizeof(ids),
              &n);
        assert_string_equal(ids, "s1,s0");
        pages(list, (GwE2bListParams){.template_id = "default", .limit = "100"}, ids, sizeof(ids),
              &n);
        assert_string_equal(ids, "s7,s6,s5,s3,s2,s1,s0");
        pages(list, (GwE2bListParams){.template_id = "base"}, ids, sizeof(ids), &n);
        assert_string_equal(ids, "");
        /* the gateway's own labels are not metadata */
        pages(list, (GwE2bListParams){.metadata = "sandpit.dev/e2b-template=default"}, ids,
              sizeof(ids), &n);
        assert_string_equal(ids, "");
        json_object_put(list);

        /* a bare array is taken too; v1 lists everything */
        json_object *arr = json_object_new_array();
        json_object_array_add(arr, parse("{\"id\":\"a\",\"state\":\"running\","
                                         "\"started_at\":\"2026-11-22T10:00:00.000Z\"}"));
        GwE2bListQuery q;
        char err[256] = "";
        assert_int_equal(
                gw_e2b_list_query_parse(&(GwE2bListParams){0}, false, &q, err, sizeof(err)), 0);
        json_object *page = NULL;
        char *next = (char *) 1;
        assert_int_equal(gw_e2b_list_page(arr, &q, NULL, &page, &next), 0);
        assert_int_equal(json_object_array_length(page), 1);
        assert_null(next);
        json_object_put(page);
        gw_e2b_list_query_done(&q);
        json_object_put(arr);
        json_object *bad = parse("{\"x\":1}");
        assert_int_equal(gw_e2b_list_query_parse(&(GwE2bListParams){0}, true, &q, err, sizeof(err)),
                         0);
        assert_int_equal(gw_e2b_list_page(bad, &q, NULL, &page, &next), -EINVAL);
        gw_e2b_list_query_done(&q);
        json_object_put(bad);
}

static void test_list_query_errors(void **state)
{
        (void) state;
        static const struct {
                GwE2bListParams p;
                bool paginate;
                const char *msg;
        } bad[] = {
                {{.state = "running,stopped"}, true, "state must be"},
                {{.state = ""}, true, "state must be"},
                {{.state = "running,"}, true, "state must be"},
                {{.limit = "0"}, true, "limit must be an integer from 1 to 100"},
                {{.limit = "101"}, true, "limit must be"},
                {{.limit = "ten"}, true, "limit must be"},
                {{.order = "up"}, true, "order must be asc or desc"},
                {{.started_after = "yesterday"}, true, "startedAfter must be"},
                {{.next_token = "!!"}, true, "nextToken is not valid"},
                {{.next_token = "YWJj"}, true, "nextToken is not valid"},
                {{.metadata = "=x"}, true, "metadata filter"},
                {{.limit = "5"}, false, "only taken by GET /v2/sandboxes"},
                {{.next_token = "x"}, false, "only taken by GET /v2/sandboxes"},
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                GwE2bListQuery q;
                char err[256] = "";
                assert_int_equal(
                        gw_e2b_list_query_parse(&bad[i].p, bad[i].paginate, &q, err, sizeof(err)),
                        -EINVAL);
                if (!strstr(err, bad[i].msg))
                        fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, bad[i].msg);
        }
        GwE2bListQuery q;
        char err[256] = "";
        assert_int_equal(gw_e2b_list_query_parse(&(GwE2bListParams){.state = "paused,running"},
                                                 true, &q, err, sizeof(err)),
                         0);
        assert_true(q.running && q.paused);
        assert_int_equal(q.limit, 100);
        assert_false(q.desc);
        gw_e2b_list_query_done(&q);
}

static void test_metrics(void **state)
{
        (void) state;
        json_object *now = parse(
                "{\"id\":\"s1\",\"state\":\"running\",\"timestamp\":\"2026-11-22T10:01:00.000Z\","
                "\"timestamp_unix\":1795341660,\"cpu_count\":1.5,\"cpu_used_pct\":49.87,"
                "\"memory_used\":10485760,\"memory_limit\":536870912,\"disk_used\":8388608,"
                "\"disk_total\":536870912,\"pids\":3}");
        json_object *o = NULL;
        assert_int_equal(gw_e2b_metrics_from_agent(now, &o), 0);
        assert_string_equal(plain_unescaped(o), "[{\"timestamp\":\"2026-11-22T10:01:00.000Z\","
                                                "\"timestampUnix\":1795341660,\"cpuCount\":2,"
                                                "\"cpuUsedPct\":49.87,\"memUsed\":10485760,"
                                                "\"memTotal\":536870912,\"memCache\":0,"
                                                "\"diskUsed\":8388608,\"diskTotal\":536870912}]");
        json_object_put(o);
        json_object_put(now);
        json_object *win = parse("{\"id\":\"s1\",\"interval_ms\":1000,\"metrics\":["
                                 "{\"timestamp\":\"2026-11-22T10:01:00.000Z\",\"cpu_count\":1},"
                                 "{\"timestamp\":\"2026-11-22T10:01:01.000Z\",\"cpu_count\":1}]}");
        assert_int_equal(gw_e2b_metrics_from_agent(win, &o), 0);
        assert_int_equal(json_object_array_length(o), 2);
        json_object *t = NULL;
        assert_true(json_object_object_get_ex(json_object_array_get_idx(o, 1), "timestamp", &t));
        assert_string_equal(json_object_get_string(t), "2026-11-22T10:01:01.000Z");
        json_object_put(o);
        json_object_put(win);
        win = parse("{\"metrics\":[]}");
        assert_int_equal(gw_e2b_metrics_from_agent(win, &o), 0);
        assert_string_equal(plain_unescaped(o), "[]");
        json_object_put(o);
        json_object_put(win);
        static const char *const bad[] = {"[]", "{\"metrics\":{}}", "{\"metrics\":[1]}", "{}"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                json_object *b = parse(bad[i]);
                o = NULL;
                assert_int_equal(gw_e2b_metrics_from_agent(b, &o), -EINVAL);
                assert_null(o);
                json_object_put(b);
        }
}

static void test_small_bodies(void **state)
{
        (void) state;
        char err[256] = "";
        uint64_t s = 0;
        json_object *b = parse("{\"timeout\":60}");
        assert_int_equal(gw_e2b_timeout_body_parse(b, &s, err, sizeof(err)), 0);
        assert_int_equal(s, 60);
        json_object_put(b);
        b = parse("{}");
        assert_int_equal(gw_e2b_timeout_body_parse(b, &s, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "timeout is required"));
        assert_int_equal(gw_e2b_connect_body_parse(b, &s, err, sizeof(err)), 0);
        assert_int_equal(s, 0);
        assert_int_equal(gw_e2b_pause_body_parse(b, err, sizeof(err)), 0);
        json_object_put(b);
        b = parse("{\"timeout\":-1}");
        assert_int_equal(gw_e2b_timeout_body_parse(b, &s, err, sizeof(err)), -EINVAL);
        json_object_put(b);
        b = parse("{\"timeout\":30,\"memory\":false}");
        assert_int_equal(gw_e2b_connect_body_parse(b, &s, err, sizeof(err)), 0);
        assert_int_equal(s, 30);
        assert_int_equal(gw_e2b_timeout_body_parse(b, &s, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "unknown field \"memory\""));
        json_object_put(b);
        b = parse("{\"memory\":false}");
        assert_int_equal(gw_e2b_pause_body_parse(b, err, sizeof(err)), 0);
        json_object_put(b);
        b = parse("{\"memory\":\"no\"}");
        assert_int_equal(gw_e2b_pause_body_parse(b, err, sizeof(err)), -EINVAL);
        assert_int_equal(gw_e2b_connect_body_parse(b, &s, err, sizeof(err)), -EINVAL);
        json_object_put(b);
        assert_int_equal(gw_e2b_pause_body_parse(NULL, err, sizeof(err)), 0);
        assert_int_equal(gw_e2b_connect_body_parse(NULL, &s, err, sizeof(err)), 0);
        b = parse("[1]");
        assert_int_equal(gw_e2b_pause_body_parse(b, err, sizeof(err)), -EINVAL);
        json_object_put(b);
}

static void test_errors(void **state)
{
        (void) state;
        json_object *o = NULL;
        assert_int_equal(gw_e2b_error_new(404, "sandbox x not found", &o), 0);
        assert_string_equal(plain_unescaped(o),
                            "{\"code\":404,\"message\":\"sandbox x not found\"}");
        json_object_put(o);
        assert_int_equal(gw_e2b_status_from_errno(-ENOENT), 404);
        assert_int_equal(gw_e2b_status_from_errno(-EEXIST), 409);
        assert_int_equal(gw_e2b_status_from_errno(-EBUSY), 409);
        assert_int_equal(gw_e2b_status_from_errno(-EINVAL), 400);
        assert_int_equal(gw_e2b_status_from_errno(-EACCES), 403);
        assert_int_equal(gw_e2b_status_from_errno(-ENOKEY), 401);
        assert_int_equal(gw_e2b_status_from_errno(-EAGAIN), 429);
        assert_int_equal(gw_e2b_status_from_errno(-EOPNOTSUPP), 501);
        assert_int_equal(gw_e2b_status_from_errno(-ETIMEDOUT), 504);
        assert_int_equal(gw_e2b_status_from_errno(-EIO), 500);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_create_sdk_bodies),
                cmocka_unit_test(test_create_network),
                cmocka_unit_test(test_create_errors),
                cmocka_unit_test(test_agent_accepts),
                cmocka_unit_test(test_views),
                cmocka_unit_test(test_metadata_filter),
                cmocka_unit_test(test_list),
                cmocka_unit_test(test_list_query_errors),
                cmocka_unit_test(test_metrics),
                cmocka_unit_test(test_small_bodies),
                cmocka_unit_test(test_errors),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
