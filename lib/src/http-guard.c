/* The unauthenticated connections of a listener, oldest first (see
 * http-guard.h). Lists are short (max_total entries), so lookups scan. */
#include "sandpit/http-guard.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct HttpGuardConn {
        unsigned char addr[HTTP_GUARD_ADDR_MAX];
        size_t addr_len;
        int handle;
        uint64_t since_ms;
        bool listed; /* in the unauthenticated list (not dropped, not authenticated) */
        HttpGuardConn *prev, *next;
};

struct HttpGuard {
        HttpGuardConfig cfg;
        pthread_mutex_t lock;       /* guards everything below and every entry */
        HttpGuardConn *head, *tail; /* unauthenticated, oldest first */
        unsigned n;
        uint64_t dropped;
};

int http_guard_new(const HttpGuardConfig *cfg, HttpGuard **ret)
{
        if (!cfg || cfg->max_total == 0 || cfg->max_per_addr == 0)
                return -EINVAL;
        HttpGuard *g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        g->cfg = *cfg;
        (void) pthread_mutex_init(&g->lock, NULL);
        *ret = g;
        return 0;
}

void http_guard_free(HttpGuard *g)
{
        if (!g)
                return;
        /* Entries belong to their connections, which are gone by now. */
        (void) pthread_mutex_destroy(&g->lock);
        free(g);
}

static void unlink_locked(HttpGuard *g, HttpGuardConn *c)
{
        if (!c->listed)
                return;
        if (c->prev)
                c->prev->next = c->next;
        else
                g->head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                g->tail = c->prev;
        c->prev = c->next = NULL;
        c->listed = false;
        g->n--;
}

static void drop_locked(HttpGuard *g, HttpGuardConn *c)
{
        unlink_locked(g, c);
        g->dropped++;
        if (g->cfg.drop)
                g->cfg.drop(g->cfg.cls, c->handle);
}

static bool same_addr(const HttpGuardConn *c, const void *addr, size_t addr_len)
{
        return c->addr_len == addr_len && (addr_len == 0 || memcmp(c->addr, addr, addr_len) == 0);
}

int http_guard_add(HttpGuard *g, const void *addr, size_t addr_len, int handle, uint64_t now_ms,
                   HttpGuardConn **ret)
{
        if (addr_len > HTTP_GUARD_ADDR_MAX)
                return -EINVAL;
        HttpGuardConn *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        if (addr_len)
                memcpy(c->addr, addr, addr_len);
        c->addr_len = addr_len;
        c->handle = handle;
        c->since_ms = now_ms;

        (void) pthread_mutex_lock(&g->lock);
        /* Past their deadline for the headers. */
        while (g->cfg.max_age_ms && g->head && now_ms - g->head->since_ms >= g->cfg.max_age_ms)
                drop_locked(g, g->head);
        /* Room from the same address first, then from all. */
        unsigned same = 0;
        for (HttpGuardConn *p = g->head; p; p = p->next)
                same += same_addr(p, addr, addr_len);
        for (HttpGuardConn *p = g->head, *next = NULL; p && same >= g->cfg.max_per_addr; p = next) {
                next = p->next;
                if (same_addr(p, addr, addr_len)) {
                        drop_locked(g, p);
                        same--;
                }
        }
        while (g->head && g->n >= g->cfg.max_total)
                drop_locked(g, g->head);
        c->prev = g->tail;
        if (g->tail)
                g->tail->next = c;
        else
                g->head = c;
        g->tail = c;
        c->listed = true;
        g->n++;
        (void) pthread_mutex_unlock(&g->lock);
        *ret = c;
        return 0;
}

void http_guard_authenticated(HttpGuard *g, HttpGuardConn *c)
{
        if (!c)
                return;
        (void) pthread_mutex_lock(&g->lock);
        unlink_locked(g, c);
        (void) pthread_mutex_unlock(&g->lock);
}

void http_guard_remove(HttpGuard *g, HttpGuardConn *c)
{
        if (!c)
                return;
        (void) pthread_mutex_lock(&g->lock);
        unlink_locked(g, c);
        (void) pthread_mutex_unlock(&g->lock);
        free(c);
}

unsigned http_guard_unauthenticated(HttpGuard *g, const void *addr, size_t addr_len)
{
        (void) pthread_mutex_lock(&g->lock);
        unsigned n = 0;
        if (!addr)
                n = g->n;
        else
                for (HttpGuardConn *p = g->head; p; p = p->next)
                        n += same_addr(p, addr, addr_len);
        (void) pthread_mutex_unlock(&g->lock);
        return n;
}

uint64_t http_guard_dropped(HttpGuard *g)
{
        (void) pthread_mutex_lock(&g->lock);
        uint64_t n = g->dropped;
        (void) pthread_mutex_unlock(&g->lock);
        return n;
}
