/* The agent's HTTP API handler (docs/agent-api.md). */
#pragma once

#include "sandpit/http-server.h"

/* The agent's version (GET /v1/info, the cluster Lease). */

void api_handle(HttpRequest *req, void *userdata);
