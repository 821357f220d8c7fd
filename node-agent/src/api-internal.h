/* Helpers shared by the API's per-module handlers (api.c routes to them). */
#pragma once

#include "agent.h"
#include "sandbox.h"
#include "sandpit/http-server.h"
#include "sandpit/json.h"

/* Handles /v1/sandboxes/{id}/{name}{rest}; id is valid, rest is "" or "/...". */
typedef void (*ApiSubresourceHandler)(Agent *a, HttpRequest *req, const char *id, const char *rest);

/* Responds with err if set, else "what: strerror"; status from the errno. */
void api_respond_errno(HttpRequest *req, int r, const char *err, const char *what);
void api_sandbox_not_found(HttpRequest *req, const char *id);
/* Copies what exec needs; on failure responds (404, 409 not running, ...). */
int api_exec_info_or_respond(Agent *a, HttpRequest *req, const char *id, SandboxExecInfo *info);
