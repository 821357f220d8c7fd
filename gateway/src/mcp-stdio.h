/* MCP over stdio: `sandpit mcp` (docs/mcp.md). */
#pragma once

#include <signal.h>

#include "mcp.h"

/* Serves one session on in_fd/out_fd until end of input or *stop (may be
 * NULL) is set by a signal that wait_mask (for ppoll, may be NULL) lets
 * through. Then cancels the calls in flight, waits for them and ends the
 * session, deleting its sandbox. 0, or a negative errno when reading failed. */
int mcp_stdio_serve(const McpConfig *cfg, int in_fd, int out_fd, const volatile sig_atomic_t *stop,
                    const sigset_t *wait_mask);
