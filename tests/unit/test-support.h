/* Helpers the unit tests share instead of copying them: argv literals, JSON
 * built from and compared with text. Header-only (each test is one
 * translation unit linked with the archives, mk/build.mk). */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "sandpit/macro.h"

/* A NULL-terminated argv of string literals, and its count. */
#define ARGV(...) ((char *[]){__VA_ARGS__, NULL})
#define ARGC(...) ((int) ARRAY_SIZE(((char *[]){__VA_ARGS__})))

/* s parsed; fails the test when s is not JSON. */
static inline json_object *parse(const char *s)
{
        json_object *o = json_tokener_parse(s);
        if (!o)
                fail_msg("bad test JSON: %s", s);
        return o;
}

/* o as compact JSON text (json-c's form: "/" escaped); owned by o. */
static inline const char *plain(json_object *o)
{
        return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
}

/* Compares o with the JSON text expected (parsed, so key order and spacing do
 * not matter). */
static inline void assert_json(json_object *o, const char *expected)
{
        json_object *e = parse(expected);
        if (!json_object_equal(o, e)) {
                print_error("got      %s\nexpected %s\n", json_object_to_json_string(o),
                            json_object_to_json_string(e));
                json_object_put(e);
                fail();
        }
        json_object_put(e);
}
