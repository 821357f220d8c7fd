/* The build route (docs/build.md, docs/agent-api.md#build-an-image):
 *   POST /v1/templates/build?tag=NAME[&dockerfile=PATH][&build_arg=K=V...]
 *        [&network=JSON][&memory=Q][&disk=Q][&cpu=N][&pids=N]
 *   body: the build context, a tar (plain, gzip or zstd); answer: NDJSON progress. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "agent.h"
#include "sandpit/http-server.h"

/* Where `sandpit template build` puts a Dockerfile from outside the context:
 * removed from the context once read. */
#define BUILD_OUTSIDE_DOCKERFILE ".sandpit-dockerfile"

/* The largest build context accepted (spooled, not kept in memory). */
#define BUILD_CONTEXT_MAX ((size_t) 1 << 30)

/* true when the request is the build route's (then it has answered). */
bool api_build_handle(Agent *a, HttpRequest *req);
/* The spool limit of the build route's body; 0 for other requests. */
size_t api_build_spool_limit(HttpRequest *req);
