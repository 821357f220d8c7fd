/* The gateway's HTTP server (gateway.h): lib's http-server on TCP, every
 * request routed by gw_route_resolve() to the control plane, envd or the code
 * interpreter, after the authorise hook. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "connect.h"
#include "gw-internal.h"
#include "mcp.h"
#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"

const char *gw_header(const GwRequest *r, const char *name)
{
        for (char **h = r->headers; h && h[0] && h[1]; h += 2)
                if (strcasecmp(h[0], name) == 0)
                        return h[1];
        return NULL;
}

void gw_reply_e2b_error(HttpRequest *req, int r, const char *message)
{
        unsigned status = gw_e2b_status_from_errno(r);
        http_respond_error(req, status, "%s", message && *message ? message : strerror(-r));
}

void gw_reply_json(HttpRequest *req, unsigned status, json_object *body, const char *const *headers)
{
        const char *s = json_object_to_json_string_ext(
                body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        char *copy = s ? strdup(s) : NULL;
        json_object_put(body);
        if (!copy) {
                http_respond_error(req, 500, "out of memory");
                return;
        }
        const char *hs[16];
        size_t n = 0;
        hs[n++] = "Content-Type";
        hs[n++] = "application/json";
        for (size_t i = 0; headers && headers[i] && headers[i + 1] && n + 3 < 16; i += 2) {
                hs[n++] = headers[i];
                hs[n++] = headers[i + 1];
        }
        hs[n] = NULL;
        http_respond_raw(req, status, (char *const *) hs, copy, strlen(copy));
}

static GwAction action_of(const GwRequest *r)
{
        switch (r->route.kind) {
        case GW_ROUTE_CONTROL:
                return streq(r->path, "/mcp") ? GW_ACTION_MCP : GW_ACTION_CONTROL;
        case GW_ROUTE_CODE:
                return strncmp(r->path, "/contexts", 9) == 0 ? GW_ACTION_CONTEXTS : GW_ACTION_CODE;
        case GW_ROUTE_PORT:
                return GW_ACTION_PORT;
        case GW_ROUTE_ENVD:
                break;
        }
        return GW_ACTION_ENVD;
}

/* A request that is not let through, in the error shape its route uses. */
static void refuse(GwRequest *r, GwAction action, int k, const char *err)
{
        if (action == GW_ACTION_MCP) {
                /* MCP's: a JSON-RPC error, with the HTTP status (401 for a
                 * missing or wrong credential, as MCP's authorization rules
                 * say, with the scheme the gateway takes besides X-API-KEY). */
                unsigned status = gw_e2b_status_from_errno(k);
                static const char *const hs[] = {"WWW-Authenticate", "Bearer realm=\"sandpit\"",
                                                 NULL};
                gw_reply_json(r->req, status,
                              mcp_error_new(NULL, MCP_INVALID_REQUEST, "%s",
                                            err && *err ? err : strerror(-k)),
                              status == 401 ? hs : NULL);
                return;
        }
        if (r->route.kind == GW_ROUTE_ENVD && r->path[0] == '/' && strchr(r->path + 1, '/')) {
                /* A Connect procedure: its error shape. */
                GwConnectCode c = gw_connect_code_from_errno(k);
                json_object *body = NULL;
                if (gw_connect_error_new(c, err, &body) < 0) {
                        http_respond_error(r->req, 500, "out of memory");
                        return;
                }
                gw_reply_json(r->req, gw_connect_code_http_status(c), body, NULL);
        } else {
                gw_reply_e2b_error(r->req, k, err);
        }
}

static void handle(HttpRequest *req, void *userdata)
{
        GwServer *gw = userdata;
        GwRequest r = {.gw = gw,
                       .req = req,
                       .method = http_request_method(req),
                       .path = http_request_path(req)};
        cleanup_strv char **headers = NULL;
        if (http_request_headers(req, &headers) < 0) {
                http_respond_error(req, 500, "out of memory");
                return;
        }
        r.headers = headers;
        char err[512] = "";
        int k = gw_route_resolve(gw_header(&r, "Host"), gw_header(&r, "E2b-Sandbox-Id"),
                                 gw_header(&r, "E2b-Sandbox-Port"), gw->e2b.domain, &r.route, err,
                                 sizeof(err));
        if (k < 0) {
                http_respond_error(req, 400, "%s", err);
                return;
        }
        GwAuthRequest ar = {.action = action_of(&r),
                            .method = r.method,
                            .path = r.path,
                            .api_key = gw_header(&r, "X-API-KEY"),
                            .access_token = gw_header(&r, "X-Access-Token"),
                            .sandbox_id = r.route.sandbox_id,
                            .authorization = gw_header(&r, "Authorization"),
                            .namespace_hint = gw_header(&r, "X-Sandpit-Namespace"),
                            .ret_namespace = r.ns};
        k = gw->authorize(gw, &ar, err, sizeof(err), gw->authorize_userdata);
        r.ns[sizeof(r.ns) - 1] = 0;
        gw_scope_request(&r);
        if (k == 0 && r.route.kind != GW_ROUTE_CONTROL && gw->backend.ops->agent_id)
                /* From here on the data plane speaks the agent's id. */
                k = gw->backend.ops->agent_id(gw->backend.data, r.route.sandbox_id,
                                              r.route.sandbox_id, sizeof(r.route.sandbox_id), err,
                                              sizeof(err));
        if (k < 0) {
                refuse(&r, ar.action, k, err);
                return;
        }
        switch (r.route.kind) {
        case GW_ROUTE_CONTROL:
                if (ar.action == GW_ACTION_MCP)
                        gw_mcp_handle(&r);
                else
                        gw_control_handle(&r);
                break;
        case GW_ROUTE_ENVD:
                gw_envd_handle(&r);
                break;
        case GW_ROUTE_CODE:
                gw_code_handle(&r);
                break;
        case GW_ROUTE_PORT:
                gw_proxy_handle(&r);
                break;
        }
}

int gw_server_start(const GwConfig *cfg, GwServer **ret)
{
        GwServer *gw = calloc(1, sizeof(*gw));
        if (!gw)
                return -ENOMEM;
        gw->e2b = cfg->e2b;
        gw->backend = cfg->backend;
        gw->authorize = cfg->authorize ? cfg->authorize : gw_authorize_local;
        gw->authorize_userdata = cfg->authorize_userdata;
        pthread_mutex_init(&gw->lock, NULL);
        int r = 0;
        if (cfg->token_file && !(gw->token_file = strdup(cfg->token_file)))
                r = -ENOMEM;
        if (r == 0)
                r = gw_mcp_new(gw, cfg->mcp_origins, cfg->mcp_idle_s, &gw->mcp);
        if (r == 0)
                r = gw_watchers_new(&gw->watchers);
        if (r == 0)
                r = gw_token_load(gw);
        if (r == 0 && gw->n_tokens > 0) {
                /* Tokens of sandboxes that went while no gateway ran. */
                char err[256];
                json_object *all = NULL;
                if (gw->backend.ops->list(gw->backend.data, &all, err, sizeof(err)) == 0) {
                        gw_token_prune(gw, all);
                        json_object_put(all);
                }
        }
        if (r < 0) {
                gw_server_free(gw);
                return r;
        }
        HttpServerConfig hc = {.tcp_listen = cfg->listen,
                               .tcp_open = true,
                               .tls_cert_file = cfg->tls_cert_file,
                               .tls_key_file = cfg->tls_key_file,
                               .max_body = cfg->max_body ? cfg->max_body : GW_MAX_BODY};
        r = http_server_start(&hc, handle, gw, &gw->http);
        if (r < 0) {
                gw_server_free(gw);
                return r;
        }
        *ret = gw;
        return 0;
}

unsigned gw_server_port(const GwServer *gw)
{
        return http_server_tcp_port(gw->http);
}

void gw_server_free(GwServer *gw)
{
        if (!gw)
                return;
        http_server_free(gw->http);
        gw_watchers_free(gw->watchers);
        gw_mcp_free(gw->mcp);
        gw_backend_done(&gw->backend);
        if (gw->tokens)
                explicit_bzero(gw->tokens, gw->n_tokens * sizeof(*gw->tokens));
        free(gw->tokens);
        free(gw->token_file);
        pthread_mutex_destroy(&gw->lock);
        free(gw);
}
