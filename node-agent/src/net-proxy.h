/* The port proxy: an HTTP request to the agent, forwarded to 127.0.0.1:port
 * inside a sandbox's network namespace (so it works under any egress policy,
 * and without sandbox networking too), websocket upgrades included. */
#pragma once

#include "sandpit/http-server.h"

/* Answers req with the sandbox server's response (502 if nothing answers).
 * path is what follows the port in the route: "" or "/...". */
void net_proxy_http(HttpRequest *req, const char *netns_path, unsigned port, const char *path);
