/* sandpit's MCP server (docs/mcp.md): JSON-RPC 2.0 and the Model Context
 * Protocol's lifecycle and tools, independent of the transport. A session is
 * one client's state (negotiated revision, calls in flight, the sandbox its
 * tools use when given no sandbox id); the transports (mcp-http.c on the
 * gateway's /mcp, mcp-stdio.c for `sandpit mcp`) read messages, hand them to
 * mcp_session_handle() and write what it answers. The tools work through the
 * gateway's backend (GwBackend) and lib's agent client, so they run in local
 * mode and in a cluster alike. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "gateway.h"

#define MCP_PROTOCOL_LATEST "2025-11-25"
/* The session sandbox's timeout, renewed while the session uses it. */
#define MCP_SANDBOX_IDLE_DEFAULT 900u
#define MCP_LABEL_SESSION        "sandpit.dev/mcp-session"
#define MCP_SESSION_ID_LEN       32u

/* JSON-RPC 2.0 error codes. */
#define MCP_PARSE_ERROR      (-32700)
#define MCP_INVALID_REQUEST  (-32600)
#define MCP_METHOD_NOT_FOUND (-32601)
#define MCP_INVALID_PARAMS   (-32602)
#define MCP_INTERNAL_ERROR   (-32603)

/* Asked before a tool touches a sandbox (sandbox_id "" to create one):
 * 0 allowed, else a negative errno and a sentence in err. request is the
 * transport's McpIo.request (the HTTP request's credentials on the gateway). */
typedef int (*McpAuthorizeFn)(void *userdata, void *request, const char *tool,
                              const char *sandbox_id, char *err, size_t errlen);

typedef struct {
        const GwBackend *backend; /* borrowed: outlives every session */
        /* What node-wide facts (the templates' languages) are asked of: the
         * backend unscoped by a namespace (borrowed); NULL: backend. */
        const GwBackend *node_backend;
        McpAuthorizeFn authorize; /* NULL: everything allowed */
        void *authorize_userdata;
        unsigned sandbox_idle_s;   /* 0: MCP_SANDBOX_IDLE_DEFAULT */
        const char *template_name; /* the session sandbox's template; NULL: "default" */
} McpConfig;

/* How messages made while a request runs (progress) reach the client. */
typedef struct {
        /* msg is borrowed. A negative return (-EPIPE: the client went) stops
         * the request. NULL: such messages are dropped. */
        int (*send)(json_object *msg, void *userdata);
        void *userdata;
        void *request; /* handed to McpConfig.authorize */
        /* The transport's own stop flag for a tools/call (a client that went
         * away), which notifications/cancelled then sets too; NULL: the
         * core's. */
        volatile sig_atomic_t *cancel;
} McpIo;

typedef struct McpSession McpSession;

/* cfg is copied (its strings and backend are borrowed). */
int mcp_session_new(const McpConfig *cfg, McpSession **ret);
/* Ends the session: cancels nothing (the caller has waited for its calls) and
 * deletes the session's sandbox. NULL is fine. */
void mcp_session_free(McpSession *s);
const char *mcp_session_id(const McpSession *s);
/* The negotiated revision, "" before initialize. */
const char *mcp_session_protocol(const McpSession *s);
/* Stops every call in flight (they answer nothing). */
void mcp_session_cancel_all(McpSession *s);

/* Handles one message (a request, notification, response, or a batch of
 * them), blocking while a tool runs. *ret: what to answer (an object, or an
 * array for a batch), NULL when nothing (notifications, a cancelled call).
 * Returns 0, or -ENOMEM. */
int mcp_session_handle(McpSession *s, json_object *msg, const McpIo *io, json_object **ret);

/* Parses one message's text. A malformed one gives -EBADMSG and *ret_error,
 * the JSON-RPC parse error to answer. */
int mcp_parse(const char *data, size_t len, json_object **ret, json_object **ret_error);

enum {
        MCP_MSG_REQUEST = 1 << 0,    /* holds a request (needs an answer) */
        MCP_MSG_INITIALIZE = 1 << 1, /* an initialize request (alone) */
        MCP_MSG_TOOLS_CALL = 1 << 2, /* a tools/call request (alone) */
        MCP_MSG_BATCH = 1 << 3,      /* a JSON array */
};
unsigned mcp_message_kind(json_object *msg);

bool mcp_protocol_supported(const char *version);
/* {"jsonrpc":"2.0","id":id,"error":{"code","message"}}; id borrowed (NULL: null). */
json_object *mcp_error_new(json_object *id, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
