/* Unit tests of the warm pools' pure parts (operator/src/pools.c): reading
 * spec.warmPool, spreading a total over the nodes, the pool's name and PUT
 * body from a template (the shape a Sandbox of it is created with), the
 * comparison with an agent's pool, and which Sandboxes claim from it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../operator/src/operator.h"

#define TUID "5d1e7a2b-8c3f-4e9a-b6d0-1f2e3a4b5c6d"

static json_object *parse(const char *s)
{
        json_object *o = json_tokener_parse(s);
        assert_non_null(o);
        return o;
}

static json_object *tmpl(const char *spec)
{
        char buf[2048];
        snprintf(buf, sizeof(buf),
                 "{\"metadata\":{\"name\":\"small\",\"namespace\":\"team\",\"uid\":\"" TUID
                 "\"},\"spec\":%s}",
                 spec);
        return parse(buf);
}

static void test_spec(void **state)
{
        (void) state;
        static const struct {
                const char *spec;
                int r;
                bool per_node;
                unsigned size;
        } cases[] = {
                {"{\"warmPool\":{\"sizePerNode\":3}}", 0, true, 3},
                {"{\"warmPool\":{\"total\":7}}", 0, false, 7},
                {"{\"warmPool\":{\"sizePerNode\":0}}", 0, true, 0},
                {"{}", -ENOENT, false, 0},
                {"{\"warmPool\":null}", -ENOENT, false, 0},
                {"{\"warmPool\":{}}", -EINVAL, false, 0},
                {"{\"warmPool\":{\"size\":2}}", -EINVAL, false, 0},
                {"{\"warmPool\":{\"sizePerNode\":1,\"total\":2}}", -EINVAL, false, 0},
                {"{\"warmPool\":{\"sizePerNode\":-1}}", -EINVAL, false, 0},
                {"{\"warmPool\":{\"total\":1001}}", -EINVAL, false, 0},
                {"{\"warmPool\":{\"total\":\"2\"}}", -EINVAL, false, 0},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                json_object *t = tmpl(cases[i].spec);
                WarmPoolSpec w = {.per_node = !cases[i].per_node, .size = 99};
                assert_int_equal(pools_spec(t, &w), cases[i].r);
                if (cases[i].r == 0) {
                        assert_int_equal(w.per_node, cases[i].per_node);
                        assert_int_equal(w.size, cases[i].size);
                } else {
                        assert_int_equal(w.size, 99); /* untouched */
                }
                json_object_put(t);
        }
}

static void test_spread(void **state)
{
        (void) state;
        WarmPoolSpec per = {.per_node = true, .size = 4};
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(pools_node_size(&per, 3, i), 4);
        /* 7 over 3 nodes: 3, 2, 2 (the first ones take the remainder) */
        WarmPoolSpec total = {.per_node = false, .size = 7};
        assert_int_equal(pools_node_size(&total, 3, 0), 3);
        assert_int_equal(pools_node_size(&total, 3, 1), 2);
        assert_int_equal(pools_node_size(&total, 3, 2), 2);
        unsigned sum = 0;
        for (size_t i = 0; i < 5; i++)
                sum += pools_node_size(&total, 5, i);
        assert_int_equal(sum, 7);
        /* fewer than the nodes: one each on the first ones */
        WarmPoolSpec two = {.per_node = false, .size = 2};
        assert_int_equal(pools_node_size(&two, 4, 1), 1);
        assert_int_equal(pools_node_size(&two, 4, 2), 0);
        /* no node, or out of range */
        assert_int_equal(pools_node_size(&total, 0, 0), 0);
        assert_int_equal(pools_node_size(&total, 3, 3), 0);
}

static void test_name(void **state)
{
        (void) state;
        json_object *t = tmpl("{}");
        char buf[64];
        assert_int_equal(pools_name(t, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "sbxt-" TUID);
        char small[8];
        assert_int_equal(pools_name(t, small, sizeof(small)), -ENAMETOOLONG);
        json_object_put(t);
        t = parse("{\"metadata\":{\"name\":\"x\"}}");
        assert_int_equal(pools_name(t, buf, sizeof(buf)), -EINVAL);
        json_object_put(t);
}

static void test_request(void **state)
{
        (void) state;
        char msg[256] = "";
        json_object *req = NULL;
        json_object *t = tmpl("{\"source\":{\"path\":\"/var/lib/sandpit/templates/host/\"},"
                              "\"resources\":{\"cpu\":\"250m\",\"memory\":\"96Mi\"},"
                              "\"languages\":[\"bash\"],\"warmPool\":{\"sizePerNode\":2}}");
        assert_int_equal(pools_request(t, &req, msg, sizeof(msg)), 0);
        /* the template's resources, the built-in defaults for the rest */
        assert_string_equal(json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN),
                            "{\"template\":\"host\",\"cpu\":0.25,\"memory\":100663296,"
                            "\"pids\":512,\"disk\":536870912,\"kernel\":false}");
        /* an agent's pool of it; then one thing different at a time */
        json_object *pool = parse("{\"name\":\"sbxt-" TUID "\",\"template\":\"host\",\"cpu\":0.25,"
                                  "\"memory\":100663296,\"pids\":512,\"disk\":536870912,"
                                  "\"size\":2,\"ready\":1,\"kernel\":false}");
        assert_true(pools_same(pool, req, 2));
        assert_false(pools_same(pool, req, 3));
        /* the agent's key: one pool a shape, whatever its size and kernel */
        assert_true(pools_same_shape(pool, req));
        static const char *const diffs[][2] = {
                {"template", "\"other\""}, {"cpu", "0.5"}, {"memory", "1"},
                {"pids", "100"},           {"disk", "1"},  {"kernel", "true"},
        };
        for (size_t i = 0; i < sizeof(diffs) / sizeof(diffs[0]); i++) {
                json_object *p = NULL;
                assert_int_equal(json_object_deep_copy(pool, &p, NULL), 0);
                json_object_object_add(p, diffs[i][0], parse(diffs[i][1]));
                assert_false(pools_same(p, req, 2));
                assert_int_equal(pools_same_shape(p, req), strcmp(diffs[i][0], "kernel") == 0);
                json_object_put(p);
        }
        /* an image pool, put as "r/x" and named canonically by the agent: of
         * the same shape as a request spelled either way, the same pool only
         * as asked */
        json_object *img = parse("{\"name\":\"p\",\"template\":\"image:r/x:latest\","
                                 "\"requested_template\":\"image:r/x\",\"cpu\":0.25,"
                                 "\"memory\":100663296,\"pids\":512,\"disk\":536870912,"
                                 "\"size\":2,\"kernel\":false}");
        json_object *as_named = parse("{\"template\":\"image:r/x:latest\",\"cpu\":0.25,"
                                      "\"memory\":100663296,\"pids\":512,\"disk\":536870912,"
                                      "\"kernel\":false}");
        assert_true(pools_same_shape(img, as_named));
        assert_false(pools_same(img, as_named, 2));
        json_object_object_add(as_named, "template", json_object_new_string("image:r/x"));
        assert_true(pools_same_shape(img, as_named));
        assert_true(pools_same(img, as_named, 2));
        json_object_put(as_named);
        json_object_put(img);
        json_object_put(pool);
        json_object_put(req);
        json_object_put(t);

        /* python offered (or no languages said): a pre-started kernel */
        t = tmpl("{\"source\":{\"path\":\"/t/py\"},\"languages\":[\"bash\",\"python\"]}");
        assert_int_equal(pools_request(t, &req, msg, sizeof(msg)), 0);
        assert_true(json_object_get_boolean(json_field(req, "kernel")));
        json_object_put(req);
        json_object_put(t);
        t = tmpl("{\"source\":{\"path\":\"/t/py\"}}");
        assert_int_equal(pools_request(t, &req, msg, sizeof(msg)), 0);
        assert_true(json_object_get_boolean(json_field(req, "kernel")));
        assert_string_equal(json_str(req, "template"), "py");
        json_object_put(req);
        json_object_put(t);

        /* an image template: the agents' image:REF */
        t = tmpl("{\"source\":{\"image\":\"python:3.12-slim\"}}");
        assert_int_equal(pools_request(t, &req, msg, sizeof(msg)), 0);
        assert_string_equal(json_str(req, "template"), "image:python:3.12-slim");
        json_object_put(req);
        json_object_put(t);

        /* never pooled: a start command; a bad quantity; no source */
        req = NULL;
        t = tmpl("{\"source\":{\"path\":\"/t/host\"},\"startCmd\":{\"shell\":\"sleep 9\"}}");
        assert_int_equal(pools_request(t, &req, msg, sizeof(msg)), -ENOTSUP);
        assert_non_null(strstr(msg, "startCmd"));
        assert_null(req);
        json_object_put(t);
        t = tmpl("{\"source\":{\"path\":\"/t/host\"},\"resources\":{\"cpu\":\"lots\"}}");
        assert_int_equal(pools_request(t, &req, msg, sizeof(msg)), -EINVAL);
        assert_null(req);
        json_object_put(t);
        t = tmpl("{\"source\":{}}");
        assert_int_equal(pools_request(t, &req, msg, sizeof(msg)), -ENOTSUP);
        assert_null(req);
        json_object_put(t);
}

static void test_for_sandbox(void **state)
{
        (void) state;
        char msg[256] = "", buf[64];
        json_object *t = tmpl("{\"source\":{\"path\":\"/t/host\"},"
                              "\"resources\":{\"cpu\":\"250m\",\"memory\":\"96Mi\"},"
                              "\"warmPool\":{\"total\":2}}");
        SandboxTemplateInfo info = {0};
        assert_int_equal(sandbox_template_from_object(t, &info, msg, sizeof(msg)), 0);
        /* no resources of its own, or the template's own values: that pool */
        json_object *sbx = parse("{\"spec\":{\"template\":\"small\"}}");
        assert_int_equal(pools_for_sandbox(sbx, &info, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "sbxt-" TUID);
        json_object_put(sbx);
        sbx = parse("{\"spec\":{\"template\":\"small\",\"resources\":{\"cpu\":\"250m\","
                    "\"pids\":512}}}");
        assert_int_equal(pools_for_sandbox(sbx, &info, buf, sizeof(buf)), 0);
        json_object_put(sbx);
        /* another shape: a cold create */
        sbx = parse("{\"spec\":{\"template\":\"small\",\"resources\":{\"memory\":\"128Mi\"}}}");
        assert_int_equal(pools_for_sandbox(sbx, &info, buf, sizeof(buf)), -ENOENT);
        json_object_put(sbx);
        sandbox_template_done(&info);
        json_object_put(t);

        /* a template without warmPool, and none at all */
        t = tmpl("{\"source\":{\"path\":\"/t/host\"}}");
        assert_int_equal(sandbox_template_from_object(t, &info, msg, sizeof(msg)), 0);
        sbx = parse("{\"spec\":{\"template\":\"small\"}}");
        assert_int_equal(pools_for_sandbox(sbx, &info, buf, sizeof(buf)), -ENOENT);
        assert_int_equal(pools_for_sandbox(sbx, NULL, buf, sizeof(buf)), -ENOENT);
        json_object_put(sbx);
        sandbox_template_done(&info);
        json_object_put(t);
}

static void test_status(void **state)
{
        (void) state;
        json_object *s = pools_status_json(1, 4, NULL);
        assert_string_equal(json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN),
                            "{\"ready\":1,\"total\":4}");
        json_object_put(s);
        s = pools_status_json(0, 0, "node n1 refused the pool: no");
        assert_string_equal(json_str(s, "message"), "node n1 refused the pool: no");
        json_object_put(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_spec),        cmocka_unit_test(test_spread),
                cmocka_unit_test(test_name),        cmocka_unit_test(test_request),
                cmocka_unit_test(test_for_sandbox), cmocka_unit_test(test_status),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
