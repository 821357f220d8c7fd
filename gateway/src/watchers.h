/* envd's polling watchers (filesystem.Filesystem CreateWatcher,
 * GetWatcherEvents, RemoveWatcher; what the Python SDK's watch_dir and older
 * SDKs use): each watcher is the agent's watch stream, run on a thread of its
 * own, its events kept until polled. A watcher belongs to the sandbox it was
 * made in and to this gateway (in a cluster, this replica). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "sandpit/agent-client.h"

#define GW_WATCHER_ID_LEN     24u   /* characters of a watcher id */
#define GW_WATCHERS_MAX       256u  /* per gateway; more is resource_exhausted */
#define GW_WATCHER_EVENTS_MAX 4096u /* kept between two polls; older ones are dropped */
#define GW_WATCHER_IDLE_S     600u  /* not polled for this long: removed */
#define GW_WATCHER_ENDED_S    60u   /* its stream ended this long ago: removed */

typedef struct GwWatchers GwWatchers;

int gw_watchers_new(GwWatchers **ret);
/* Stops and frees every watcher. */
void gw_watchers_free(GwWatchers *ws);

/* Starts watching path (a directory) in sandbox sid with agent (taken, also
 * on failure) and answers once the agent's watch has started: id gets the
 * watcher's id. On failure -errno and err: the agent's answer (-ENOENT for a
 * missing path), -ENOSPC when GW_WATCHERS_MAX run. */
int gw_watcher_create(GwWatchers *ws, AgentClient *agent, const char *sid, const char *path,
                      const char *user, bool recursive, char id[GW_WATCHER_ID_LEN + 1], char *err,
                      size_t errlen);
/* *ret: the events since the last poll, envd's FilesystemEvent objects
 * ({"name", "type"}), oldest first. A watcher whose stream ended (its
 * sandbox deleted or its directory removed) answers what it still held,
 * then -ENOENT with the reason; an unknown id, or one of another sandbox,
 * is -ENOENT. */
int gw_watcher_events(GwWatchers *ws, const char *sid, const char *id, json_object **ret, char *err,
                      size_t errlen);
/* Stops and removes it; -ENOENT when there is none of that id in sid. */
int gw_watcher_remove(GwWatchers *ws, const char *sid, const char *id);
/* How many there are (tests, /metrics). */
size_t gw_watchers_count(GwWatchers *ws);

/* An agent watch event as envd's FilesystemEvent ({"name" relative to dir,
 * "type": "EVENT_TYPE_..."}); NULL for start, keepalive and what envd has no
 * type for. Shared with WatchDir (envd.c). */
json_object *gw_watch_event_to_envd(json_object *ev, const char *dir);
