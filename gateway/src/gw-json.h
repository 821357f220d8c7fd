/* json-c conveniences for the gateway's modules. */
#pragma once

#include <stdbool.h>

#include <json-c/json.h>

/* TODO(libdedupe): replace with the lib JSON header's cleanup attribute and
 * field getter once it is on main (these are gateway-local stand-ins). */
static inline void gw_json_putp(json_object **o)
{
        if (*o)
                json_object_put(*o);
}
#define cleanup_gw_json __attribute__((cleanup(gw_json_putp)))

/* o's member name, or NULL (also when o is NULL or not an object): borrowed. */
static inline json_object *gw_json_field(json_object *o, const char *name)
{
        json_object *v = NULL;
        return o && json_object_is_type(o, json_type_object) &&
                               json_object_object_get_ex(o, name, &v)
                       ? v
                       : NULL;
}

/* o's member name when it is a string, else NULL: borrowed. */
static inline const char *gw_json_str(json_object *o, const char *name)
{
        json_object *v = gw_json_field(o, name);
        return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}
