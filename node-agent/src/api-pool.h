/* Routes of warm pools (pool.h): GET /v1/pools, GET|PUT|DELETE /v1/pools/{name}. */
#pragma once

#include "api-internal.h"

/* name: the pool's, or NULL for /v1/pools itself. */
void api_pools_handle(Agent *a, HttpRequest *req, const char *name);
