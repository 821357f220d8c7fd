/* List-then-watch of one resource type, kept going for as long as it runs
 * (client-go's reflector):
 *
 * - list (paginated) and hand the items to on_list with the list's
 *   resourceVersion; then watch from it with allowWatchBookmarks=true and
 *   timeoutSeconds, handing each ADDED/MODIFIED/DELETED to on_event;
 * - every event, BOOKMARK included, advances the resourceVersion the next
 *   watch starts from;
 * - a stream that ends (timeout, server closed it) is reopened at once from
 *   that resourceVersion; one cut off after it delivered events likewise;
 * - 410 Gone, as the HTTP status or as an ERROR event, means the
 *   resourceVersion is compacted away: list again (on_list gets the full
 *   state, so nothing is lost);
 * - 429, 5xx, transport errors and garbled streams back off exponentially
 *   with jitter, bounded by backoff_max_ms, at least Retry-After; other
 *   failures (404 while a CRD is missing, 403) back off and list again.
 *
 * k8s_watch_run() blocks in its caller's thread; k8s_watch_stop() and
 * k8s_watch_get_stats() may be called from any thread. */
#pragma once

#include <stdbool.h>

#include <json-c/json.h>

#include "sandpit/k8s-client.h"
#include "sandpit/k8s-watch-parser.h"

typedef struct K8sWatch K8sWatch;

typedef struct {
        K8sResource resource;       /* its strings must outlive the watch */
        const char *namespace;      /* NULL: all namespaces */
        const char *label_selector; /* NULL: all */
        const char *field_selector;
        long page_size;          /* list limit; 0: K8S_WATCH_PAGE_SIZE */
        long timeout_s;          /* timeoutSeconds; 0: random in [300, 600) as client-go */
        long backoff_initial_ms; /* 0: 200 */
        long backoff_max_ms;     /* 0: 30000 */
} K8sWatchOptions;

#define K8S_WATCH_PAGE_SIZE 500

typedef struct {
        /* The whole state as listed (items is the List's array, borrowed),
         * at resource_version. Runs first and after every relist. */
        int (*on_list)(json_object *items, const char *resource_version, void *userdata);
        /* One ADDED, MODIFIED or DELETED event; BOOKMARK and ERROR stay inside. */
        int (*on_event)(const K8sWatchEvent *ev, void *userdata);
        /* A negative return from either stops k8s_watch_run() with it. */
} K8sWatchOps;

typedef struct {
        unsigned long lists;      /* successful lists (the first one and relists) */
        unsigned long watches;    /* watch requests answered 200 */
        unsigned long reconnects; /* watches reopened from a kept resourceVersion */
        unsigned long gone;       /* 410s: as a status or as an ERROR event */
        unsigned long events;     /* ADDED/MODIFIED/DELETED delivered */
        unsigned long bookmarks;
        unsigned long failures; /* failed lists and watches (each backs off) */
        long last_backoff_ms;
        int last_error;
        char resource_version[64]; /* where the next watch starts */
} K8sWatchStats;

/* client is borrowed and must outlive the watch; opts is copied (not its strings). */
int k8s_watch_new(K8sClient *client, const K8sWatchOptions *opts, const K8sWatchOps *ops,
                  void *userdata, K8sWatch **ret);
void k8s_watch_free(K8sWatch *w);
/* Until k8s_watch_stop() (then 0) or a callback's error. */
int k8s_watch_run(K8sWatch *w);
/* Asks run to return; a watch in flight ends within about a second. */
void k8s_watch_stop(K8sWatch *w);
void k8s_watch_get_stats(K8sWatch *w, K8sWatchStats *ret);
/* The delay before retry number attempt (0-based): min(max, initial * 2^attempt),
 * then jittered into [d/2, d) with *seed; at least retry_after_s. */
long k8s_backoff_ms(long initial_ms, long max_ms, unsigned attempt, long retry_after_s,
                    unsigned long *seed);
