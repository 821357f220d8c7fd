/* The code interpreter's routes (api-code.c), dispatched from api.c's
 * sub-resource table. */
#pragma once

#include "api-internal.h"

void api_code_handle(Agent *a, HttpRequest *req, const char *id, const char *rest);
void api_contexts_handle(Agent *a, HttpRequest *req, const char *id, const char *rest);
