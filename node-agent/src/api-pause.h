/* Routes of pause and resume: POST /v1/sandboxes/{id}/pause and .../resume. */
#pragma once

#include "api-internal.h"

void api_sandbox_pause(Agent *a, HttpRequest *req, const char *id, const char *rest);
void api_sandbox_resume(Agent *a, HttpRequest *req, const char *id, const char *rest);
