/* json-c helpers shared by every component: scope cleanup for json_object,
 * typed member getters, and one strict parse for text from outside.
 *
 * The getters take a possibly NULL object and return borrowed values (valid
 * while the object lives); a member that is absent, JSON null or of another
 * type reads as NULL or as the caller's fallback. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

static inline void json_putp(json_object **o)
{
        if (*o)
                json_object_put(*o);
}
#define cleanup_json __attribute__((cleanup(json_putp)))

/* o's member name of any type, or NULL (also when o is NULL or not an object). */
json_object *json_field(json_object *o, const char *name);
/* o's member name when it is a string, else NULL. */
const char *json_str(json_object *o, const char *name);
/* o's member name when it is an object, else NULL. */
json_object *json_obj(json_object *o, const char *name);
/* o's member name as text: a string as it is, a number or boolean as JSON
 * writes it; NULL when absent or null (for display, not for validation). */
const char *json_text(json_object *o, const char *name);
/* o's member name when it is a number (a double is truncated), else fallback. */
int64_t json_int(json_object *o, const char *name, int64_t fallback);
/* o's member name when it is a boolean, else fallback. */
bool json_boolean(json_object *o, const char *name, bool fallback);

/* v as a timeout: a number of seconds (an integer when whole) > 0 and at most
 * TIMEOUT_MAX_S (util.h); *ret_ms is it in milliseconds, rounded up. Else -EINVAL. */
int json_timeout_ms(json_object *v, bool whole, uint64_t *ret_ms);

/* Parses exactly one JSON value from data[0..len): white space may surround it,
 * nothing else may follow it. max_depth bounds nesting (0: json-c's default of
 * 32). Errors: -EBADMSG malformed, empty or trailing data (*ret_why, when not
 * NULL, then says why, a static string), -E2BIG longer than INT32_MAX,
 * -ENOMEM. */
int json_parse_strict(const char *data, size_t len, int max_depth, json_object **ret,
                      const char **ret_why);
