/* Unit tests for pool.c: the --pool flag (TEMPLATE[:KEY=VALUE,...]=SIZE) as a
 * pool name and the body PUT /v1/pools/NAME takes, and its refusals. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pool.h"
#include "sandpit/json.h"

static void parse_ok(const char *arg, const char *want_name, const char *want_body)
{
        char *name = NULL, err[256] = "";
        json_object *body = NULL;
        assert_int_equal(pool_flag_parse(arg, &name, &body, err, sizeof(err)), 0);
        assert_string_equal(name, want_name);
        assert_string_equal(json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN),
                            want_body);
        free(name);
        json_object_put(body);
}

static void test_flag_forms(void **state)
{
        (void) state;
        parse_ok("default=4", "default", "{\"template\":\"default\",\"size\":4}");
        parse_ok("host=0", "host", "{\"template\":\"host\",\"size\":0}");
        parse_ok("host:cpu=250m,memory=256Mi,pids=64,disk=1Gi,name=small=8", "small",
                 "{\"template\":\"host\",\"size\":8,\"cpu\":\"250m\",\"memory\":\"256Mi\","
                 "\"pids\":64,\"disk\":\"1Gi\"}");
        /* pids that is not a number stays a string: PUT's validation refuses it */
        parse_ok("host:pids=many=1", "host",
                 "{\"template\":\"host\",\"size\":1,\"pids\":\"many\"}");
}

static void test_flag_refusals(void **state)
{
        (void) state;
        static const char *const bad[] = {
                "host",      "host=",         "=3",           "host=x",     "host=-1",
                "host=1001", "host:gpu=1=2",  "host:cpu=1",   "host:cpu=2", "host:name=Bad=1",
                "Bad=1",     "host:memory=1", "host:name==1",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char *name = NULL, err[256] = "";
                json_object *body = NULL;
                int r = pool_flag_parse(bad[i], &name, &body, err, sizeof(err));
                if (r != -EINVAL)
                        fail_msg("--pool %s: %d, want -EINVAL", bad[i], r);
                assert_non_null(strstr(err, "--pool"));
                assert_null(name);
                assert_null(body);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_flag_forms),
                cmocka_unit_test(test_flag_refusals),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
