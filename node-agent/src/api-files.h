/* HTTP handlers for a sandbox's files (docs/agent-api.md, "Files"):
 * /v1/sandboxes/{id}/files, /fs/..., /archive and /watch. */
#pragma once

#include <stddef.h>

#include "api-internal.h"

void api_files_handle(Agent *a, HttpRequest *req, const char *id, const char *rest);
void api_fs_handle(Agent *a, HttpRequest *req, const char *id, const char *rest);
void api_archive_handle(Agent *a, HttpRequest *req, const char *id, const char *rest);
void api_watch_handle(Agent *a, HttpRequest *req, const char *id, const char *rest);
/* HttpServerConfig.spool_limit: uploads to /files and /archive are spooled
 * (up to max_bytes, default FILES_UPLOAD_DEFAULT_MAX) instead of buffered. */
size_t api_files_spool_limit(HttpRequest *req, void *userdata);

#define FILES_UPLOAD_DEFAULT_MAX ((size_t) 1 << 30)
#define FILES_UPLOAD_MAX         ((size_t) 64 << 30)
