/* Routes of sandbox networking: the egress policy and the port proxy. */
#pragma once

#include "api-internal.h"

/* GET, PUT or POST /v1/sandboxes/{id}/network */
void api_net_handle_network(Agent *a, HttpRequest *req, const char *id, const char *rest);
/* ANY /v1/sandboxes/{id}/ports/{port}[/path] */
void api_net_handle_ports(Agent *a, HttpRequest *req, const char *id, const char *rest);
