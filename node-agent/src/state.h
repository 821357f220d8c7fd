/* The per-sandbox state file, <dir>/state.json, from which a restarted agent
 * re-adopts its sandboxes. It holds the create request (as accepted) and the
 * runtime facts (times, init pid). */
#pragma once

#include "agent.h"

int state_save(const Sandbox *sb);
/* Allocates a Sandbox from <dir>/state.json (dir, socket_path, pidfd unset). */
int state_load(const char *dir, Sandbox **ret);
/* Names of the entries in sandboxes_dir that look like sandbox ids. */
int state_list(const char *sandboxes_dir, char ***ret);
