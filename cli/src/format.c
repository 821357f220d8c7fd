#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "cli.h"
#include "sandpit/macro.h"

int cli_parse_kv(const char *s, json_object *map)
{
        const char *eq = strchr(s, '=');
        if (!eq || eq == s)
                return -EINVAL;

        json_object *v = json_object_new_string(eq + 1);
        if (!v)
                return -ENOMEM;
        char *key = strndup(s, (size_t) (eq - s));
        int r = key && json_object_object_add(map, key, v) == 0 ? 0 : -ENOMEM;
        free(key);
        if (r < 0)
                json_object_put(v);
        return r;
}

int cli_parse_int(const char *s, int64_t min, int64_t max, int64_t *ret)
{
        char *end = NULL;

        if (!s || !*s || isspace((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno == ERANGE || *end != '\0')
                return -EINVAL;
        if (v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

static int parse_double(const char *s, double *ret)
{
        char *end = NULL;

        if (!s || !*s || isspace((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        double v = strtod(s, &end);
        if (errno == ERANGE || *end != '\0' || !isfinite(v))
                return -EINVAL;
        *ret = v;
        return 0;
}

int cli_parse_seconds(const char *s, double *ret)
{
        double v = 0;
        int r = parse_double(s, &v);
        if (r < 0)
                return r;
        if (v <= 0)
                return -ERANGE;
        *ret = v;
        return 0;
}

int cli_quantity_json(const char *s, json_object **ret)
{
        json_object *o = NULL;
        int64_t i = 0;
        double d = 0;

        if (!s || !*s)
                return -EINVAL;
        /* Only plain decimal digits become numbers; "1e3", "0x10" and the like go
         * to the agent as strings for it to judge. */
        if (strspn(s, "0123456789") == strlen(s) && cli_parse_int(s, 0, INT64_MAX, &i) == 0)
                o = json_object_new_int64(i);
        else if (strspn(s, "0123456789.") == strlen(s) && parse_double(s, &d) == 0)
                o = json_object_new_double(d);
        else
                o = json_object_new_string(s);
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

void cli_format_bytes(int64_t bytes, char *buf, size_t len)
{
        static const char *const units[] = {"Ki", "Mi", "Gi", "Ti", "Pi"};

        if (bytes < 1024) {
                (void) snprintf(buf, len, "%" PRId64, bytes);
                return;
        }
        size_t u = 0;
        int64_t scale = 1024;
        while (u + 1 < ARRAY_SIZE(units) && bytes / scale >= 1024) {
                scale *= 1024;
                u++;
        }
        if (bytes % scale == 0)
                (void) snprintf(buf, len, "%" PRId64 "%s", bytes / scale, units[u]);
        else
                (void) snprintf(buf, len, "%.1f%s", (double) bytes / (double) scale, units[u]);
}

void cli_format_remaining(const char *timestamp, time_t now, char *buf, size_t len)
{
        struct tm tm = {0};

        const char *end = timestamp ? strptime(timestamp, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
        if (!end) {
                (void) snprintf(buf, len, "%s", timestamp ? timestamp : "-");
                return;
        }
        time_t t = timegm(&tm);
        if (t == (time_t) -1) {
                (void) snprintf(buf, len, "%s", timestamp);
                return;
        }

        long long left = (long long) t - (long long) now;
        if (left <= 0)
                (void) snprintf(buf, len, "expired");
        else if (left < 60)
                (void) snprintf(buf, len, "%llds", left);
        else if (left < 3600)
                (void) snprintf(buf, len, "%lldm%02llds", left / 60, left % 60);
        else if (left < 86400)
                (void) snprintf(buf, len, "%lldh%02lldm", left / 3600, left % 3600 / 60);
        else
                (void) snprintf(buf, len, "%lldd%02lldh", left / 86400, left % 86400 / 3600);
}

int cli_print_table(FILE *f, const char *const *cells, size_t n_cols, size_t n_rows)
{
        size_t *widths = calloc(n_cols ? n_cols : 1, sizeof(size_t));
        if (!widths)
                return -ENOMEM;

        for (size_t r = 0; r < n_rows; r++)
                for (size_t c = 0; c < n_cols; c++) {
                        const char *s = cells[r * n_cols + c];
                        size_t w = s ? strlen(s) : 0;
                        if (w > widths[c])
                                widths[c] = w;
                }

        for (size_t r = 0; r < n_rows; r++) {
                for (size_t c = 0; c < n_cols; c++) {
                        const char *s = cells[r * n_cols + c] ? cells[r * n_cols + c] : "";
                        if (c + 1 == n_cols)
                                fputs(s, f);
                        else
                                fprintf(f, "%-*s   ", (int) widths[c], s);
                }
                fputc('\n', f);
        }
        free(widths);
        return ferror(f) ? -EIO : 0;
}

void cli_one_line(const char *s, char *buf, size_t len)
{
        if (len == 0)
                return;
        size_t i = 0;
        for (; s && s[i] && i + 1 < len; i++)
                buf[i] = iscntrl((unsigned char) s[i]) ? ' ' : s[i];
        buf[i] = '\0';
}
