/* The watch event stream of the Kubernetes API: one JSON object a line,
 * {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}, arriving in
 * chunks that may split anywhere (mid-line, mid-UTF-8). Pure: no I/O, so it
 * is unit-tested at every split point and fuzzed (tests/fuzz/fuzz_watch.c). */
#pragma once

#include <stddef.h>

#include <json-c/json.h>

#include "sandpit/http-client.h"
#include "sandpit/k8s-client.h"

/* A watch event line may be long (a big object); beyond this it is -E2BIG. */
#define K8S_WATCH_LINE_MAX ((size_t) 16 * 1024 * 1024)

typedef enum {
        K8S_WATCH_ADDED,
        K8S_WATCH_MODIFIED,
        K8S_WATCH_DELETED,
        K8S_WATCH_BOOKMARK,
        K8S_WATCH_ERROR,
} K8sWatchEventType;

typedef struct {
        K8sWatchEventType type;
        json_object *object;          /* borrowed, valid during the callback */
        const char *resource_version; /* metadata.resourceVersion; NULL for ERROR */
        long code;                    /* ERROR: the Status code (410: relist), else 0 */
} K8sWatchEvent;

/* A negative return stops parsing and is returned by the feed call. */
typedef int (*K8sWatchEventFn)(const K8sWatchEvent *ev, void *userdata);

typedef struct {
        HttpLineSplitter lines;
        K8sWatchEventFn fn;
        void *userdata;
        unsigned long events;  /* delivered */
        unsigned long skipped; /* lines of an unknown event type, ignored */
} K8sWatchParser;

void k8s_watch_parser_init(K8sWatchParser *p, K8sWatchEventFn fn, void *userdata);
void k8s_watch_parser_done(K8sWatchParser *p);
/* -EBADMSG for a line that is not an event (not JSON, no type/object, an
 * ADDED/MODIFIED/DELETED/BOOKMARK object without metadata.resourceVersion);
 * the stream is then not to be trusted: reconnect. */
int k8s_watch_parser_feed(K8sWatchParser *p, const char *data, size_t len);
/* The end of the stream: a partial last line is -EPIPE (a cut connection). */
int k8s_watch_parser_finish(K8sWatchParser *p);

const char *k8s_watch_event_type_name(K8sWatchEventType t);
