/* MCP's Streamable HTTP transport on the gateway's /mcp (mcp-http.c). */
#pragma once

#include "mcp.h"

typedef struct GwMcp GwMcp;
typedef struct GwServer GwServer;
typedef struct GwRequest GwRequest;

/* origins: Origin values allowed besides loopback ones (NULL-terminated,
 * copied; may be NULL). idle_s: a session's and its sandbox's idle time (0:
 * MCP_SANDBOX_IDLE_DEFAULT). */
int gw_mcp_new(GwServer *gw, const char *const *origins, unsigned idle_s, GwMcp **ret);
/* Ends every session (deleting their sandboxes); after the HTTP server stopped. */
void gw_mcp_free(GwMcp *m);
/* A request for /mcp, authorised by the gateway's hook (GW_ACTION_MCP). */
void gw_mcp_handle(GwRequest *r);
