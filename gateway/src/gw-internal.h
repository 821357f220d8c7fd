/* Shared between the gateway server's files: the server, one request's
 * context, and the per-sandbox access tokens. */
#pragma once

#include <pthread.h>

#include "gateway.h"
#include "mcp-http.h"
#include "route.h"
#include "sandpit/http-server.h"
#include "watchers.h"

#define GW_LABEL_SECURE "sandpit.dev/e2b-secure" /* "true": envd traffic needs the token */
#define GW_TOKEN_LEN    48u                      /* hex characters */

typedef struct {
        char id[GW_ROUTE_ID_MAX + 1];
        char token[GW_TOKEN_LEN + 1];
} GwToken;

struct GwServer {
        HttpServer *http;
        GwE2bConfig e2b;
        GwBackend backend;
        GwAuthorizeFn authorize;
        void *authorize_userdata;
        char *token_file;     /* NULL: tokens in memory only */
        pthread_mutex_t lock; /* guards tokens and token_file */
        GwToken *tokens;
        size_t n_tokens;
        GwMcp *mcp;
        GwWatchers *watchers; /* envd's polling watchers (watchers.c) */
};

/* A backend as a caller of one namespace sees it (scope.c). */
typedef struct GwScope {
        GwBackend inner; /* the backend, or its own view of ns (in_namespace) */
        const char *ns;  /* borrowed */
        void *view[GW_BACKEND_VIEW_SIZE / sizeof(void *)];
        GwBackendOps ops; /* scope.c's, less the optional ones inner lacks */
} GwScope;

typedef struct GwRequest {
        GwServer *gw;
        HttpRequest *req;
        char **headers; /* alternating names and values */
        const char *method;
        const char *path;
        GwRoute route;
        /* The caller's namespace from the authorise hook ("": every one) and
         * the backend as the caller may see it: gw->backend, or with a
         * namespace a view of it scoped to that namespace (scope.c). Control
         * plane handlers use this, never gw->backend. */
        char ns[GW_NAMESPACE_MAX + 1];
        GwBackend backend;
        GwScope scope;
} GwRequest;

/* Sets r->backend from r->ns (scope.c). */
void gw_scope_request(GwRequest *r);
/* *ret: inner itself when ns is "", else a view of it scoped to ns through
 * *scope (which, and ns, must outlive *ret). */
void gw_scope_backend(const GwBackend *inner, const char *ns, GwScope *scope, GwBackend *ret);

/* A request header (case-insensitive), or NULL. */
const char *gw_header(const GwRequest *r, const char *name);
/* E2B's error body {"code","message"} with the status for errno r. */
void gw_reply_e2b_error(HttpRequest *req, int r, const char *message);
/* A JSON body with extra headers (alternating, may be NULL); takes body. */
void gw_reply_json(HttpRequest *req, unsigned status, json_object *body,
                   const char *const *headers);

/* Access tokens (tokens.c). */
int gw_token_new(char ret[GW_TOKEN_LEN + 1]);
int gw_token_put(GwServer *gw, const char *id, const char *token);
/* -ENOENT when id has none. */
int gw_token_get(GwServer *gw, const char *id, char ret[GW_TOKEN_LEN + 1]);
void gw_token_remove(GwServer *gw, const char *id);
/* Drops the tokens of sandboxes not in sandboxes (the agent's list, an
 * array): those that expired or were deleted while no gateway ran. Only at
 * start: a create running alongside would lose its new token. */
void gw_token_prune(GwServer *gw, json_object *sandboxes);
/* Reads gw->token_file (a missing file is no tokens). */
int gw_token_load(GwServer *gw);

/* The parts of the API (control.c, envd.c, code.c). */
void gw_control_handle(GwRequest *r);
void gw_envd_handle(GwRequest *r);
void gw_code_handle(GwRequest *r);

/* A port of a sandbox other than envd's and the code interpreter's (proxy.c). */
void gw_proxy_handle(GwRequest *r);
