/* Sandbox status: Kubernetes-style conditions. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "operator.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

static json_object *find_condition(json_object *conds, const char *type)
{
        size_t n = json_object_array_length(conds);
        for (size_t i = 0; i < n; i++) {
                json_object *c = json_object_array_get_idx(conds, i);
                const char *t = json_text(c, "type");
                if (t && streq(t, type))
                        return c;
        }
        return NULL;
}

static const char *condition_field(json_object *status, const char *type, const char *name)
{
        json_object *conds = json_field(status, "conditions");
        if (!json_object_is_type(conds, json_type_array))
                return NULL;
        return json_text(find_condition(conds, type), name);
}

const char *status_condition_status(json_object *status, const char *type)
{
        return condition_field(status, type, "status");
}

const char *status_condition_reason(json_object *status, const char *type)
{
        return condition_field(status, type, "reason");
}

void status_set_condition(json_object *status, const char *type, const char *cstatus,
                          const char *reason, const char *message, int64_t generation)
{
        json_object *conds = NULL;
        if (!json_object_object_get_ex(status, "conditions", &conds) ||
            !json_object_is_type(conds, json_type_array)) {
                conds = json_object_new_array();
                json_object_object_add(status, "conditions", conds);
        }
        json_object *c = find_condition(conds, type);
        if (!c) {
                c = json_object_new_object();
                json_object_object_add(c, "type", json_object_new_string(type));
                json_object_array_add(conds, c);
        }
        json_object *old = NULL;
        bool changed = !json_object_object_get_ex(c, "status", &old) ||
                       !streq(json_object_get_string(old), cstatus);
        json_object_object_add(c, "status", json_object_new_string(cstatus));
        json_object_object_add(c, "reason", json_object_new_string(reason));
        json_object_object_add(c, "message", json_object_new_string(message ? message : ""));
        json_object_object_add(c, "observedGeneration", json_object_new_int64(generation));
        if (changed || !json_object_object_get_ex(c, "lastTransitionTime", NULL)) {
                char ts[64];
                /* metav1.Time has second precision. */
                format_rfc3339_us(now_realtime_us() / 1000000u * 1000000u, ts, sizeof(ts));
                char *dot = strchr(ts, '.');
                if (dot) {
                        dot[0] = 'Z';
                        dot[1] = '\0';
                }
                json_object_object_add(c, "lastTransitionTime", json_object_new_string(ts));
        }
}
