/* The agent's HTTP API handler (docs/agent-api.md). */
#pragma once

#include "sandpit/http-server.h"

/* The agent's version (GET /v1/info, the cluster Lease). */
#define SANDPIT_VERSION "0.1.0"

void api_handle(HttpRequest *req, void *userdata);
