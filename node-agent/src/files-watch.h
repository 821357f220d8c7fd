/* Watching a directory of a sandbox (inotify on the merged overlay; changes
 * made inside the sandbox go through the same overlay inodes and are seen). */
#pragma once

#include <stdbool.h>

#include "fsroot.h"
#include "sandpit/http-server.h"

typedef struct FsWatch FsWatch;

/* Watches abspath (a directory the user can read), and with recursive every
 * directory below it, including those made later. The stream is NDJSON:
 * {"type":"start"} once the watches are in place, then one line per event,
 * {"type":"create|write|remove|rename|chmod","path":P,"name":N,"is_dir":B},
 * {"type":"keepalive"} every 30 s of quiet, and {"type":"overflow"} when
 * the kernel dropped events. The stream ends when the directory goes away.
 * -EAGAIN when the agent already serves its maximum of watch streams. */
int fs_watch_new(const FsRoot *root, const char *abspath, bool recursive, FsWatch **ret);
extern const HttpStreamOps fs_watch_ops;
