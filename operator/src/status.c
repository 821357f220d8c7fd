/* Sandbox status: Kubernetes-style conditions and durations. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

int parse_duration_s(const char *s, long *ret)
{
        static const struct {
                const char *unit;
                double seconds;
        } units[] = {{"ms", 0.001}, {"s", 1}, {"m", 60}, {"h", 3600}};
        double total = 0;
        const char *p = s;
        if (!s || !*s)
                return -EINVAL;
        while (*p) {
                char *end = NULL;
                if (!((*p >= '0' && *p <= '9') || *p == '.'))
                        return -EINVAL; /* strtod would take spaces, signs, "inf" */
                errno = 0;
                double v = strtod(p, &end);
                if (end == p || errno)
                        return -EINVAL;
                p = end;
                double mult = 0;
                size_t ulen = 0;
                for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
                        size_t l = strlen(units[i].unit);
                        if (strncmp(p, units[i].unit, l) == 0 && l > ulen) {
                                mult = units[i].seconds;
                                ulen = l;
                        }
                }
                if (!ulen)
                        return -EINVAL;
                p += ulen;
                total += v * mult;
        }
        if (total > 1e9)
                return -EINVAL;
        *ret = (long) ceil(total);
        return 0;
}

/* "2026-11-22T12:00:00.000000Z" (or with an offset) to microseconds. */
int parse_rfc3339_us(const char *s, uint64_t *ret)
{
        struct tm tm = {0};
        const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!p)
                return -EINVAL;
        uint64_t frac = 0;
        if (*p == '.') {
                p++;
                unsigned digits = 0;
                while (*p >= '0' && *p <= '9') {
                        if (digits < 6) {
                                frac = frac * 10 + (uint64_t) (*p - '0');
                                digits++;
                        }
                        p++;
                }
                for (; digits < 6; digits++)
                        frac *= 10;
        }
        long offset = 0;
        if (*p == '+' || *p == '-') {
                /* "+hh:mm" */
                const char *o = p + 1;
                for (int i = 0; i < 5; i++)
                        if (i == 2 ? o[i] != ':' : (o[i] < '0' || o[i] > '9'))
                                return -EINVAL;
                if (o[5])
                        return -EINVAL;
                long hh = (o[0] - '0') * 10 + (o[1] - '0'), mm = (o[3] - '0') * 10 + (o[4] - '0');
                offset = (*p == '-' ? -1 : 1) * (hh * 3600L + mm * 60L);
        } else if (*p != 'Z' || p[1])
                return -EINVAL;
        time_t t = timegm(&tm);
        if (t < 0)
                return -EINVAL;
        *ret = (uint64_t) (t - offset) * 1000000u + frac;
        return 0;
}
