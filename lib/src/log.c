#include "sandpit/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sandpit/macro.h"

static const char *log_component = "sandpit";
static LogFormat log_format = LOG_FORMAT_JSON;
static LogLevel log_min_level = LOG_LEVEL_INFO;
/* Serialises whole lines so records from different threads never interleave. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {
        [LOG_LEVEL_DEBUG] = "debug",
        [LOG_LEVEL_INFO] = "info",
        [LOG_LEVEL_WARNING] = "warning",
        [LOG_LEVEL_ERROR] = "error",
};

void log_setup(const char *component, LogFormat format, LogLevel min_level)
{
        log_component = component;
        log_format = format;
        log_min_level = min_level;
}

int log_parse_format(const char *s, LogFormat *ret)
{
        if (streq(s, "json"))
                *ret = LOG_FORMAT_JSON;
        else if (streq(s, "text"))
                *ret = LOG_FORMAT_TEXT;
        else
                return -EINVAL;
        return 0;
}

int log_parse_level(const char *s, LogLevel *ret)
{
        for (size_t i = 0; i < ARRAY_SIZE(level_names); i++)
                if (streq(s, level_names[i])) {
                        *ret = (LogLevel) i;
                        return 0;
                }
        return -EINVAL;
}

static void json_escape(FILE *f, const char *s)
{
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        fprintf(f, "\\%c", *p);
                else if (*p == '\n')
                        fputs("\\n", f);
                else if (*p < 0x20)
                        fprintf(f, "\\u%04x", *p);
                else
                        fputc(*p, f);
        }
        fputc('"', f);
}

int log_full(LogLevel level, int err, const char *sandbox, const char *fmt, ...)
{
        int ret = err != 0 ? -abs(err) : (level == LOG_LEVEL_ERROR ? -EIO : 0);
        if (level < log_min_level)
                return ret;

        char msg[2048];
        va_list ap;
        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);

        struct timespec ts;
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        (void) gmtime_r(&ts.tv_sec, &tm);
        char tbuf[64];
        (void) strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);

        char ebuf[128] = "";
        if (err != 0)
                (void) snprintf(ebuf, sizeof(ebuf), "%s", strerror(abs(err)));

        (void) pthread_mutex_lock(&log_lock);
        if (log_format == LOG_FORMAT_TEXT) {
                fprintf(stderr, "%s.%03ldZ %s %s: %s%s%s%s%s\n", tbuf, ts.tv_nsec / 1000000,
                        level_names[level], log_component, sandbox ? sandbox : "",
                        sandbox ? ": " : "", msg, err ? ": " : "", ebuf);
        } else {
                fprintf(stderr, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"component\":", tbuf,
                        ts.tv_nsec / 1000000, level_names[level]);
                json_escape(stderr, log_component);
                fputs(",\"msg\":", stderr);
                json_escape(stderr, msg);
                if (err) {
                        fputs(",\"err\":", stderr);
                        json_escape(stderr, ebuf);
                }
                if (sandbox) {
                        fputs(",\"sandbox\":", stderr);
                        json_escape(stderr, sandbox);
                }
                fputs("}\n", stderr);
        }
        (void) fflush(stderr);
        (void) pthread_mutex_unlock(&log_lock);
        return ret;
}
