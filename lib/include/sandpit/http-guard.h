/* Bookkeeping of a TCP listener's connections that have not authenticated
 * yet, so that they cannot take every slot (docs/security.md, "Connection
 * slots"): at most max_total of them, at most max_per_addr from one client
 * address, none older than max_age_ms. A new connection is always let in; the
 * oldest unauthenticated ones make room for it and get dropped (drop() is
 * called with their handle, e.g. to shutdown() their socket). A connection
 * that authenticates leaves the bookkeeping's limits.
 *
 * Thread-safe: one mutex guards the whole structure; drop() runs with it
 * held, so it must not call back into the guard. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct HttpGuard HttpGuard;
typedef struct HttpGuardConn HttpGuardConn;

#define HTTP_GUARD_ADDR_MAX 16 /* bytes of an address key (IPv6) */

typedef struct {
        unsigned max_total;    /* unauthenticated connections in all; >= 1 */
        unsigned max_per_addr; /* ... from one address; >= 1 */
        uint64_t max_age_ms;   /* an unauthenticated connection older is dropped; 0: no limit */
        void (*drop)(void *cls, int handle);
        void *cls;
} HttpGuardConfig;

int http_guard_new(const HttpGuardConfig *cfg, HttpGuard **ret);
void http_guard_free(HttpGuard *g);

/* A new connection from addr (addr_len <= HTTP_GUARD_ADDR_MAX bytes, compared
 * as bytes) at now_ms (monotonic); drops what must make room. *ret is its
 * entry, for http_guard_authenticated() and http_guard_remove(). */
int http_guard_add(HttpGuard *g, const void *addr, size_t addr_len, int handle, uint64_t now_ms,
                   HttpGuardConn **ret);
/* The connection proved itself: it no longer counts, and is never dropped. */
void http_guard_authenticated(HttpGuard *g, HttpGuardConn *c);
/* The connection is gone (closed); frees c. NULL is fine. */
void http_guard_remove(HttpGuard *g, HttpGuardConn *c);

/* Unauthenticated connections counted now (from addr when addr is non-NULL),
 * and how many were dropped since the start. For tests and metrics. */
unsigned http_guard_unauthenticated(HttpGuard *g, const void *addr, size_t addr_len);
uint64_t http_guard_dropped(HttpGuard *g);
