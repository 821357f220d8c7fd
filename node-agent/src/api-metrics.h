/* Routes of metrics.c: GET /v1/sandboxes/{id}/metrics and GET /metrics. */
#pragma once

#include "api-internal.h"

void api_sandbox_metrics(Agent *a, HttpRequest *req, const char *id, const char *rest);
/* The node's counters in Prometheus text format. */
void api_node_metrics(Agent *a, HttpRequest *req);
