/* The operator's calls to node agents (docs/agent-api.md), behind an ops
 * struct: agent_http_ops (agent-ops.c) is lib's typed client of the agent
 * API (sandpit/agent-client.h) with the agent's bearer token; the unit tests
 * put a fake in Operator.agent. Every call returns 0 or a negative errno as
 * lib's client does (a transport failure: -ECONNREFUSED, -ETIMEDOUT, -EIO,
 * ...; an answer that is not the success status through lib's table,
 * sandpit/http-status.h: 400 -EINVAL, 404 -ENOENT, 5xx -EIO, ...), and fills
 * err with what the agent answered (status 0: it did not). Returned objects
 * belong to the caller and are set only on success. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "sandpit/agent-client.h"

/* One agent and how to reach it; borrowed strings. */
typedef struct {
        const char *endpoint; /* the agent's base URL, from its Lease */
        const char *token;    /* bearer token: a secret, never logged */
        long timeout_ms;      /* bound on one exchange; 0: none */
} AgentConn;

typedef struct AgentOps {
        /* POST /v1/sandboxes with req (the agent's create body); *ret the new
         * sandbox. 409 "AlreadyExists" (the id is in use) is -EEXIST; any other
         * 409 -EBUSY (a DELETE of the id came during the create: nothing of
         * it is left). */
        int (*create)(const AgentConn *c, json_object *req, json_object **ret,
                      AgentClientError *err);
        /* GET /v1/sandboxes/{id}: *ret the sandbox. */
        int (*get)(const AgentConn *c, const char *id, json_object **ret, AgentClientError *err);
        /* GET /v1/sandboxes, only those with label ("KEY=VALUE"; NULL: all):
         * *ret the array of sandboxes. */
        int (*list)(const AgentConn *c, const char *label, json_object **ret,
                    AgentClientError *err);
        /* DELETE /v1/sandboxes/{id}. */
        int (*remove)(const AgentConn *c, const char *id, AgentClientError *err);
        /* POST /v1/sandboxes/{id}/timeout: the deadline moves to deadline_us
         * (wall clock, µs; the agent takes whole seconds from now, rounded
         * up). *ret the sandbox with its new expires_at. */
        int (*set_timeout)(const AgentConn *c, const char *id, uint64_t deadline_us,
                           json_object **ret, AgentClientError *err);
        /* POST /v1/sandboxes/{id}/pause {"stop_deadline": ...}: *ret the sandbox. */
        int (*pause)(const AgentConn *c, const char *id, bool stop_deadline, json_object **ret,
                     AgentClientError *err);
        /* POST /v1/images/pull with req ({"image", "refresh", "verify",
         * "auth"}; auth is a secret, never logged): *ret the image. */
        int (*image_pull)(const AgentConn *c, json_object *req, json_object **ret,
                          AgentClientError *err);
        /* POST /v1/templates/build with params as the query and the context
         * tar in tar_fd; its progress lines to on_event (docs/build.md). A
         * failed step is a line of the stream (the answer is 200), a bad
         * request (a Dockerfile that does not parse) a 400. */
        int (*template_build)(const AgentConn *c, json_object *params, int tar_fd,
                              AgentEventFn on_event, void *userdata, AgentClientError *err);
        /* POST /v1/sandboxes/{id}/resume: *ret the sandbox. */
        int (*resume)(const AgentConn *c, const char *id, json_object **ret, AgentClientError *err);
        /* GET /v1/pools: *ret the answer ({"pools": [...], ...}). */
        int (*pools)(const AgentConn *c, json_object **ret, AgentClientError *err);
        /* PUT /v1/pools/{name} with req (template, shape, size). */
        int (*pool_put)(const AgentConn *c, const char *name, json_object *req,
                        AgentClientError *err);
        /* DELETE /v1/pools/{name}. */
        int (*pool_delete)(const AgentConn *c, const char *name, AgentClientError *err);
} AgentOps;

/* The agent API through lib's client. */
extern const AgentOps agent_http_ops;

/* The agent answered 404: it does not have the sandbox (not a missing
 * socket, also -ENOENT). */
static inline bool agent_error_not_found(int r, const AgentClientError *err)
{
        return r == -ENOENT && err->status == 404;
}

/* err's message, or "no message". */
static inline const char *agent_error_message(const AgentClientError *err)
{
        return err->message[0] ? err->message : "no message";
}
