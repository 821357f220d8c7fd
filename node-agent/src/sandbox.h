/* Sandbox lifecycle: create (rootfs, cgroup, bundle, runc), delete, re-adopt
 * after an agent restart, deadlines. */
#pragma once

#include "agent.h"

int agent_init(Agent *a);
void agent_done(Agent *a);
/* Starts the monitor thread (deadlines, dead inits). */
int agent_start_monitor(Agent *a);

/* Parses a create request. On error returns -EINVAL with a message in err. */
int sandbox_spec_from_json(json_object *req, SandboxSpec *ret, char *err, size_t errlen);

/* Creates and starts a sandbox; takes ownership of spec's contents on success
 * and failure. err receives a message for the caller on failure. */
int sandbox_create(Agent *a, SandboxSpec *spec, json_object **ret_obj, char *err, size_t errlen);
int sandbox_delete(Agent *a, const char *id);
int sandbox_set_timeout(Agent *a, const char *id, uint64_t timeout_s, json_object **ret_obj);
/* Replaces the egress policy of a running sandbox, live; takes policy's
 * contents on success. -ENOENT, -EBUSY (not running), -EINVAL with err. */
int sandbox_set_network(Agent *a, const char *id, NetPolicy *policy, json_object **ret_obj,
                        char *err, size_t errlen);
/* The path of the sandbox's network namespace; -ENOENT, -EBUSY (not running). */
int sandbox_netns_path(Agent *a, const char *id, char **ret);
/* The API view of a sandbox; -ENOENT if unknown. */
int sandbox_get_json(Agent *a, const char *id, json_object **ret);
/* All sandboxes whose labels match every "k=v" in selectors. */
int sandbox_list_json(Agent *a, char **selectors, json_object **ret);

/* What exec needs, copied out under the lock. */
typedef struct {
        char *socket_path;
        char **env;
        char *user;
        char *id;
} SandboxExecInfo;
int sandbox_exec_info(Agent *a, const char *id, SandboxExecInfo *ret);
void sandbox_exec_info_done(SandboxExecInfo *i);

/* Re-adopts running sandboxes found in the state dir and removes the remains
 * of those that cannot be adopted. Called once at startup. */
int sandbox_recover(Agent *a);
