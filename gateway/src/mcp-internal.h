/* Shared between the MCP core (mcp.c) and its tools (mcp-tools.c). */
#pragma once

#include <pthread.h>
#include <signal.h>
#include <stdint.h>

#include "mcp.h"

/* What a tool returns at most: each text output stream, an image or a file
 * read whole, a download. Beyond it the result says what was left out. */
#define MCP_TEXT_MAX      ((size_t) 64 * 1024)
#define MCP_FILE_MAX      ((size_t) 256 * 1024)
#define MCP_IMAGE_MAX     ((size_t) 5 * 1024 * 1024)
#define MCP_ARCHIVE_MAX   ((size_t) 10 * 1024 * 1024)
#define MCP_LIST_MAX      1000u
#define MCP_PROGRESS_TAIL 400u /* bytes of output a progress message carries */

typedef struct McpInflight {
        char key[128]; /* the request id as JSON text */
        volatile sig_atomic_t own;
        volatile sig_atomic_t *cancel; /* &own, or the transport's */
        struct McpInflight *next;
} McpInflight;

struct McpSession {
        McpConfig cfg;
        char id[MCP_SESSION_ID_LEN + 1];
        pthread_mutex_t lock; /* guards protocol, initialized, inflight */
        char protocol[16];
        bool initialized;
        McpInflight *inflight;
        /* Serialises making and renewing the session sandbox; guards the two below. */
        pthread_mutex_t sandbox_lock;
        char sandbox[64];            /* "" until the first tool needs one */
        uint64_t sandbox_renewed_us; /* monotonic */
};

/* One tools/call. */
typedef struct {
        McpSession *s;
        const McpIo *io;
        const char *tool;
        json_object *args;           /* borrowed; checked against the input schema */
        json_object *progress_token; /* borrowed, or NULL */
        volatile sig_atomic_t *cancel;
        bool structured;      /* the revision has structuredContent (2025-06-18 on) */
        json_object *content; /* the result's content array */
        json_object *structured_content;
        bool is_error;
        char note[256]; /* said first in the result's text (a sandbox replaced) */
        double progress;
        uint64_t progress_us;
} McpCall;

typedef struct {
        const char *name;
        const char *title;
        const char *description;
        const char *input_schema;  /* JSON text */
        const char *output_schema; /* JSON text, NULL when the result is not structured */
        bool read_only, destructive, idempotent, open_world;
        int (*run)(McpCall *c);
} McpTool;

extern const McpTool mcp_tools[];
extern const size_t mcp_n_tools;
const McpTool *mcp_tool_find(const char *name);
/* args against the tool's input schema (types, required, no unknown names):
 * -EINVAL with a sentence in err. */
int mcp_tool_check_args(const McpTool *t, json_object *args, char *err, size_t errlen);
/* Runs t; the result is in c (is_error for a failure the model can act on).
 * -ECANCELED when the call was cancelled (nothing is answered). */
int mcp_tool_run(const McpTool *t, McpCall *c);

/* run_code's languages (mcp-languages.c). mcp_node_info: the node's GET
 * /v1/info, -EOPNOTSUPP where it does not say them (a cluster's backend, an
 * older agent); another negative errno when the agent did not answer. */
int mcp_node_info(const McpConfig *cfg, json_object **ret);
/* The languages template tmpl lists (borrowed), NULL when it lists none
 * (every language is tried). */
json_object *mcp_template_languages(json_object *info, const char *tmpl);
/* lang in langs; true when langs is NULL. */
bool mcp_language_listed(json_object *langs, const char *lang);
/* "default: python, javascript, bash; host: ...", malloc'd. */
int mcp_languages_text(json_object *info, char **ret);
/* tool (run_code's tools/list entry) with the node's languages: its
 * language enum the union over the templates, its description each
 * template's list and the session sandbox's. */
int mcp_run_code_view(json_object *info, const char *session_template, json_object *tool);
