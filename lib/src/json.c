/* json-c helpers: member getters and the strict parse (see sandpit/json.h). */
#include "sandpit/json.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "sandpit/util.h"

json_object *json_field(json_object *o, const char *name)
{
        json_object *v = NULL;
        if (!o || !json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, name, &v))
                return NULL;
        return v;
}

const char *json_str(json_object *o, const char *name)
{
        json_object *v = json_field(o, name);
        return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

json_object *json_obj(json_object *o, const char *name)
{
        json_object *v = json_field(o, name);
        return json_object_is_type(v, json_type_object) ? v : NULL;
}

const char *json_text(json_object *o, const char *name)
{
        json_object *v = json_field(o, name);
        return v ? json_object_get_string(v) : NULL;
}

int64_t json_int(json_object *o, const char *name, int64_t fallback)
{
        json_object *v = json_field(o, name);
        if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
                return fallback;
        return json_object_get_int64(v);
}

bool json_boolean(json_object *o, const char *name, bool fallback)
{
        json_object *v = json_field(o, name);
        return json_object_is_type(v, json_type_boolean) ? json_object_get_boolean(v) : fallback;
}

int json_timeout_ms(json_object *v, bool whole, uint64_t *ret_ms)
{
        bool is_int = json_object_is_type(v, json_type_int);
        if (!is_int && (whole || !json_object_is_type(v, json_type_double)))
                return -EINVAL;
        if (is_int) {
                int64_t s = json_object_get_int64(v);
                if (s <= 0 || s > TIMEOUT_MAX_S)
                        return -EINVAL;
                *ret_ms = (uint64_t) s * 1000;
                return 0;
        }
        double t = json_object_get_double(v);
        if (!isfinite(t) || t <= 0 || t > TIMEOUT_MAX_S)
                return -EINVAL;
        *ret_ms = (uint64_t) ceil(t * 1000.0);
        return 0;
}

static bool is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int json_parse_strict(const char *data, size_t len, int max_depth, json_object **ret,
                      const char **ret_why)
{
        const char *why = NULL;
        if (len > INT32_MAX)
                return -E2BIG;
        size_t start = 0;
        while (start < len && is_space(data[start]))
                start++;
        if (start == len) {
                if (ret_why)
                        *ret_why = "unexpected end of input";
                return -EBADMSG;
        }
        json_tokener *tok = max_depth > 0 ? json_tokener_new_ex(max_depth) : json_tokener_new();
        if (!tok)
                return -ENOMEM;
        json_object *o = json_tokener_parse_ex(tok, data, (int) len);
        enum json_tokener_error jerr = json_tokener_get_error(tok);
        size_t end = json_tokener_get_parse_end(tok);
        if (jerr == json_tokener_continue) {
                /* A number or literal at the very end waits for a delimiter:
                 * a NUL byte ends the input. */
                o = json_tokener_parse_ex(tok, "", 1);
                if (json_tokener_get_error(tok) == json_tokener_success)
                        jerr = json_tokener_success;
                end = len;
        }
        json_tokener_free(tok);
        if (jerr == json_tokener_continue) {
                why = "unexpected end of input";
        } else if (jerr != json_tokener_success) {
                why = json_tokener_error_desc(jerr);
        } else if (!o) {
                why = "the value is null";
        } else {
                for (size_t i = end; i < len; i++)
                        if (!is_space(data[i])) {
                                why = "trailing data after the JSON value";
                                break;
                        }
        }
        if (why) {
                json_object_put(o);
                if (ret_why)
                        *ret_why = why;
                return -EBADMSG;
        }
        *ret = o;
        return 0;
}
