#include "sandpit/quantity.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandpit/macro.h"

int quantity_parse_bytes(const char *s, uint64_t *ret)
{
        static const struct {
                const char *suffix;
                double mult;
        } units[] = {
                {"Ki", 1024.0}, {"Mi", 1048576.0}, {"Gi", 1073741824.0}, {"Ti", 1099511627776.0},
                {"k", 1e3},     {"K", 1e3},        {"M", 1e6},           {"G", 1e9},
                {"T", 1e12},    {"", 1.0},
        };
        if (!s || !*s || strlen(s) > 32)
                return -EINVAL;
        char *end = NULL;
        errno = 0;
        double v = strtod(s, &end);
        if (errno != 0 || end == s || !isfinite(v) || v < 0 || *s == '-' || *s == '+')
                return -EINVAL;
        for (size_t i = 0; i < ARRAY_SIZE(units); i++)
                if (streq(end, units[i].suffix)) {
                        double b = v * units[i].mult;
                        if (b > 9.0e18 || b != floor(b))
                                return -EINVAL;
                        *ret = (uint64_t) b;
                        return 0;
                }
        return -EINVAL;
}

int quantity_bytes_from_json(json_object *v, uint64_t *ret)
{
        if (json_object_is_type(v, json_type_int)) {
                errno = 0;
                int64_t i = json_object_get_int64(v);
                if (i < 0 || errno != 0)
                        return -EINVAL;
                *ret = (uint64_t) i;
                return 0;
        }
        if (json_object_is_type(v, json_type_string))
                return quantity_parse_bytes(json_object_get_string(v), ret);
        return -EINVAL;
}

int quantity_parse_cpu(const char *s, double *ret)
{
        if (!s || !*s || strlen(s) > 32 || *s == '-' || *s == '+')
                return -EINVAL;
        char *end = NULL;
        errno = 0;
        double v = strtod(s, &end);
        if (errno != 0 || end == s || !isfinite(v) || v < 0)
                return -EINVAL;
        if (streq(end, "m"))
                v /= 1000.0;
        else if (*end)
                return -EINVAL;
        *ret = v;
        return 0;
}

int quantity_cpu_from_json(json_object *v, double *ret)
{
        if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
                double d = json_object_get_double(v);
                if (!isfinite(d) || d < 0)
                        return -EINVAL;
                *ret = d;
                return 0;
        }
        if (json_object_is_type(v, json_type_string))
                return quantity_parse_cpu(json_object_get_string(v), ret);
        return -EINVAL;
}

void quantity_format_bytes(uint64_t bytes, char *buf, size_t len)
{
        static const char *const suffix[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi"};
        size_t i = 0;
        while (bytes && bytes % 1024 == 0 && i + 1 < ARRAY_SIZE(suffix)) {
                bytes /= 1024;
                i++;
        }
        (void) snprintf(buf, len, "%llu%s", (unsigned long long) bytes, suffix[i]);
}

void quantity_format_cpu(double cores, char *buf, size_t len)
{
        long long milli = llround(cores * 1000.0);
        if (milli % 1000 == 0)
                (void) snprintf(buf, len, "%lld", milli / 1000);
        else
                (void) snprintf(buf, len, "%lldm", milli);
}
