/* The agent's HTTP API handler (docs/agent-api.md). */
#pragma once

#include "sandpit/http-server.h"

void api_handle(HttpRequest *req, void *userdata);
