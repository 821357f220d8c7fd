/* lib/json: the member getters (absent, null and mistyped members) and the
 * strict parse (surrounding white space only, depth bound, bad input), the
 * API's timeout check. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

static json_object *parse(const char *text)
{
        json_object *o = NULL;
        assert_int_equal(json_parse_strict(text, strlen(text), 0, &o, NULL), 0);
        return o;
}

static void test_getters(void **state)
{
        (void) state;
        cleanup_json json_object *o =
                parse("{\"s\": \"x\", \"i\": 7, \"d\": 2.9, \"b\": true, \"n\": null, "
                      "\"o\": {\"k\": \"v\"}, \"a\": [1]}");

        assert_string_equal(json_str(o, "s"), "x");
        assert_null(json_str(o, "i"));
        assert_null(json_str(o, "n"));
        assert_null(json_str(o, "missing"));
        assert_null(json_str(NULL, "s"));

        assert_int_equal(json_int(o, "i", -1), 7);
        assert_int_equal(json_int(o, "d", -1), 2);
        assert_int_equal(json_int(o, "s", -1), -1);
        assert_int_equal(json_int(o, "b", -1), -1);
        assert_int_equal(json_int(NULL, "i", -5), -5);

        assert_true(json_boolean(o, "b", false));
        assert_false(json_boolean(o, "i", false)); /* a number is not a boolean */
        assert_true(json_boolean(o, "missing", true));

        assert_string_equal(json_text(o, "s"), "x");
        assert_string_equal(json_text(o, "i"), "7");
        assert_string_equal(json_text(o, "b"), "true");
        assert_null(json_text(o, "n"));
        assert_null(json_text(o, "missing"));

        json_object *inner = json_obj(o, "o");
        assert_non_null(inner);
        assert_string_equal(json_str(inner, "k"), "v");
        assert_null(json_obj(o, "a"));
        assert_null(json_obj(o, "s"));
        assert_non_null(json_field(o, "a"));
        assert_null(json_field(o, "n")); /* null reads as absent */
        /* A non-object holder reads as having no members. */
        assert_null(json_field(json_field(o, "a"), "k"));
        assert_null(json_str(json_field(o, "s"), "s"));
}

static void test_parse_accepts(void **state)
{
        (void) state;
        cleanup_json json_object *a = parse("  {\"a\": 1}\r\n\t ");
        assert_true(json_object_is_type(a, json_type_object));
        cleanup_json json_object *b = parse("[1, 2]");
        assert_int_equal(json_object_array_length(b), 2);
        cleanup_json json_object *c = parse("\"s\"");
        assert_string_equal(json_object_get_string(c), "s");
        /* A number or literal at the very end (no delimiter after it). */
        cleanup_json json_object *n = parse("123");
        assert_int_equal(json_object_get_int64(n), 123);
        cleanup_json json_object *t = parse("true");
        assert_true(json_object_get_boolean(t));
        /* Only len bytes count: what follows is not read. */
        cleanup_json json_object *d = NULL;
        assert_int_equal(json_parse_strict("{}garbage", 2, 0, &d, NULL), 0);
        assert_true(json_object_is_type(d, json_type_object));
}

static void expect_bad(const char *text, size_t len, int depth, const char *why_part)
{
        json_object *o = (json_object *) 0x1; /* untouched on failure */
        const char *why = NULL;
        assert_int_equal(json_parse_strict(text, len, depth, &o, &why), -EBADMSG);
        assert_ptr_equal(o, (json_object *) 0x1);
        assert_non_null(why);
        if (why_part && !strstr(why, why_part))
                fail_msg("\"%s\": reason \"%s\" lacks \"%s\"", text, why, why_part);
}

static void test_parse_rejects(void **state)
{
        (void) state;
        expect_bad("", 0, 0, "end of input");
        expect_bad("   \n", 4, 0, "end of input");
        expect_bad("{\"a\": 1", 7, 0, "end of input");
        expect_bad("{\"a\": 1} x", 10, 0, "trailing data");
        expect_bad("{} {}", 5, 0, "trailing data");
        expect_bad("{a: 1}", 6, 0, NULL);
        expect_bad("null", 4, 0, "null");
        expect_bad("nul", 3, 0, NULL);
        expect_bad("12x", 3, 0, NULL);
        expect_bad("[[[1]]]", 7, 2, NULL); /* deeper than allowed */
        /* Without ret_why it still fails cleanly. */
        json_object *o = NULL;
        assert_int_equal(json_parse_strict("{", 1, 0, &o, NULL), -EBADMSG);
        assert_null(o);
        assert_int_equal(json_parse_strict(NULL, 0, 0, &o, NULL), -EBADMSG);
        cleanup_json json_object *deep = NULL;
        assert_int_equal(json_parse_strict("[[[1]]]", 7, 8, &deep, NULL), 0);
}

static void test_timeout(void **state)
{
        (void) state;
        uint64_t ms = 0;
        cleanup_json json_object *o =
                parse("{\"one\": 1, \"max\": 604800, \"over\": 604801, \"zero\": 0, "
                      "\"neg\": -1, \"frac\": 0.0015, \"fmax\": 604800.0, "
                      "\"fover\": 604800.001, \"s\": \"5\", \"b\": true}");
        assert_int_equal(json_timeout_ms(json_field(o, "one"), true, &ms), 0);
        assert_int_equal(ms, 1000);
        assert_int_equal(json_timeout_ms(json_field(o, "max"), true, &ms), 0);
        assert_int_equal(ms, (uint64_t) TIMEOUT_MAX_S * 1000);
        assert_int_equal(json_timeout_ms(json_field(o, "frac"), false, &ms), 0);
        assert_int_equal(ms, 2); /* rounded up */
        assert_int_equal(json_timeout_ms(json_field(o, "fmax"), false, &ms), 0);
        ms = 7;
        static const char *const bad_whole[] = {"over", "zero", "neg", "frac",
                                                "fmax", "s",    "b",   "missing"};
        for (size_t i = 0; i < ARRAY_SIZE(bad_whole); i++)
                if (json_timeout_ms(json_field(o, bad_whole[i]), true, &ms) != -EINVAL)
                        fail_msg("whole %s accepted", bad_whole[i]);
        static const char *const bad[] = {"over", "zero", "neg", "fover", "s", "b", "missing"};
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                if (json_timeout_ms(json_field(o, bad[i]), false, &ms) != -EINVAL)
                        fail_msg("%s accepted", bad[i]);
        assert_int_equal(ms, 7); /* untouched on failure */
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_getters),
                cmocka_unit_test(test_parse_accepts),
                cmocka_unit_test(test_parse_rejects),
                cmocka_unit_test(test_timeout),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
