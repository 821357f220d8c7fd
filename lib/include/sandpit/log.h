/* Structured logging: one JSON object per line on stderr (ts, level, component,
 * msg, err, sandbox), or plain text with --log-format=text. Library code logs at
 * debug level only; daemons decide what the user sees. Never pass a secret. */
#pragma once

#include <stdbool.h>

typedef enum {
        LOG_LEVEL_DEBUG,
        LOG_LEVEL_INFO,
        LOG_LEVEL_WARNING,
        LOG_LEVEL_ERROR,
} LogLevel;

typedef enum {
        LOG_FORMAT_JSON,
        LOG_FORMAT_TEXT,
} LogFormat;

void log_setup(const char *component, LogFormat format, LogLevel min_level);
int log_parse_format(const char *s, LogFormat *ret);
int log_parse_level(const char *s, LogLevel *ret);

/* Writes one record. err is a negative errno or 0; sandbox may be NULL.
 * Returns err (or -EIO when err is 0 and level is error) so callers can write
 * `return log_error_errno(r, "...")`. */
int log_full(LogLevel level, int err, const char *sandbox, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

#define log_debug(...)             log_full(LOG_LEVEL_DEBUG, 0, NULL, __VA_ARGS__)
#define log_info(...)              log_full(LOG_LEVEL_INFO, 0, NULL, __VA_ARGS__)
#define log_warning(...)           log_full(LOG_LEVEL_WARNING, 0, NULL, __VA_ARGS__)
#define log_error(...)             log_full(LOG_LEVEL_ERROR, 0, NULL, __VA_ARGS__)
#define log_error_errno(r, ...)    log_full(LOG_LEVEL_ERROR, (r), NULL, __VA_ARGS__)
#define log_warning_errno(r, ...)  log_full(LOG_LEVEL_WARNING, (r), NULL, __VA_ARGS__)
#define log_debug_errno(r, ...)    log_full(LOG_LEVEL_DEBUG, (r), NULL, __VA_ARGS__)
#define log_sbx(level, id, r, ...) log_full((level), (r), (id), __VA_ARGS__)
