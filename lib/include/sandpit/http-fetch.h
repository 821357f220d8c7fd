/* One HTTP(S) GET into a file, for the builder's ADD of a URL (docs/build.md):
 * on the libcurl core the other clients use (curl-internal.h). */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct {
        uint64_t max_bytes; /* past it: -EFBIG */
        long timeout_ms;    /* the whole transfer */
        long max_redirects;
} HttpFetchOptions;

/* GETs url (http or https only, redirects to those only, no proxy from the
 * environment) and writes a 2xx body to fd. *ret_last_modified: the
 * Last-Modified time (seconds), 0 without. Errors with the reason in err:
 * -ENOENT a 404 (-EREMOTEIO another non-2xx), -EHOSTUNREACH a name that does
 * not resolve, -ECONNREFUSED, -ETIMEDOUT, -EFBIG, -ELOOP too many redirects. */
int http_fetch(const char *url, int fd, const HttpFetchOptions *o, int64_t *ret_last_modified,
               char *err, size_t errlen);
