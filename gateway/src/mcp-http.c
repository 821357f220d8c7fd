/* MCP's Streamable HTTP transport at the gateway's /mcp (docs/mcp.md): POST
 * carries one message (or a 2025-03-26 batch) and is answered with JSON, or,
 * for tools/call, with an SSE stream (progress notifications, then the
 * answer); Mcp-Session-Id names the session made at initialize; DELETE ends
 * it; there is no GET stream (405: the server sends nothing unasked). Origin
 * must be loopback or configured, against DNS rebinding. Sessions idle for
 * longer than their sandbox's idle time are ended at the next request, and
 * their sandboxes expire on their own meanwhile. */
#include "mcp-http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gw-internal.h"
#include "pump.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

/* A comment on a silent SSE stream this often: fetch() in Node.js gives up
 * on a body idle for 300 s, and proxies sooner. */
#define MCP_SSE_KEEPALIVE_MS 15000

typedef struct Entry {
        McpSession *s;
        /* The namespace of the credential that made the session ("": every
         * one): its later requests must be of the same, and its tools see
         * only that namespace's sandboxes (backend). */
        char ns[GW_NAMESPACE_MAX + 1];
        GwScope scope;
        GwBackend backend;
        unsigned refs; /* the table's (while listed) and each request's */
        uint64_t used_us;
        struct Entry *next;
} Entry;

struct GwMcp {
        GwServer *gw;
        McpConfig cfg;
        char **origins;
        pthread_mutex_t lock; /* guards sessions and every Entry's refs and used_us */
        Entry *sessions;
};

/* What the authorise hook needs of the request (copied for an SSE answer,
 * which outlives the handler). */
typedef struct {
        const char *api_key;       /* X-API-KEY */
        const char *authorization; /* Authorization */
        const char *namespace;     /* X-Sandpit-Namespace */
} Caller;

static int authorize(void *userdata, void *request, const char *tool, const char *sandbox_id,
                     char *err, size_t errlen)
{
        GwMcp *m = userdata;
        Caller *c = request;
        char ns[GW_NAMESPACE_MAX + 1] = "";
        GwAuthRequest ar = {.action = GW_ACTION_MCP,
                            .method = "POST",
                            .path = tool,
                            .api_key = c ? c->api_key : NULL,
                            .sandbox_id = sandbox_id,
                            .authorization = c ? c->authorization : NULL,
                            .namespace_hint = c ? c->namespace : NULL,
                            .ret_namespace = ns};
        return m->gw->authorize(m->gw, &ar, err, errlen, m->gw->authorize_userdata);
}

int gw_mcp_new(GwServer *gw, const char *const *origins, unsigned idle_s, GwMcp **ret)
{
        GwMcp *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        size_t n = 0;
        while (origins && origins[n])
                n++;
        m->origins = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; m->origins && i < n; i++)
                if (!(m->origins[i] = strdup(origins[i]))) {
                        strv_free(m->origins);
                        m->origins = NULL;
                }
        if (!m->origins) {
                free(m);
                return -ENOMEM;
        }
        m->gw = gw;
        m->cfg = (McpConfig){.backend = &gw->backend,
                             .authorize = authorize,
                             .authorize_userdata = m,
                             .sandbox_idle_s = idle_s ? idle_s : MCP_SANDBOX_IDLE_DEFAULT};
        pthread_mutex_init(&m->lock, NULL);
        *ret = m;
        return 0;
}

static void entry_put(GwMcp *m, Entry *e)
{
        pthread_mutex_lock(&m->lock);
        bool last = --e->refs == 0;
        pthread_mutex_unlock(&m->lock);
        if (last) {
                mcp_session_free(e->s);
                free(e);
        }
}

void gw_mcp_free(GwMcp *m)
{
        if (!m)
                return;
        /* The HTTP server has stopped: no request holds a session. */
        for (Entry *e = m->sessions, *next; e; e = next) {
                next = e->next;
                mcp_session_free(e->s);
                free(e);
        }
        strv_free(m->origins);
        pthread_mutex_destroy(&m->lock);
        free(m);
}

/* Takes the session out of the table (its last request frees it). */
static Entry *unlink_session(GwMcp *m, const char *id, const char *ns)
{
        pthread_mutex_lock(&m->lock);
        for (Entry **p = &m->sessions; *p; p = &(*p)->next)
                if (streq_ptr(mcp_session_id((*p)->s), id) && streq((*p)->ns, ns)) {
                        Entry *e = *p;
                        *p = e->next;
                        pthread_mutex_unlock(&m->lock);
                        return e;
                }
        pthread_mutex_unlock(&m->lock);
        return NULL;
}

static Entry *session_get(GwMcp *m, const char *id)
{
        pthread_mutex_lock(&m->lock);
        Entry *e = m->sessions;
        while (e && !streq_ptr(mcp_session_id(e->s), id))
                e = e->next;
        if (e) {
                e->refs++;
                e->used_us = now_monotonic_us();
        }
        pthread_mutex_unlock(&m->lock);
        return e;
}

/* Ends the sessions no request has used for their idle time. */
static void reap(GwMcp *m)
{
        uint64_t now = now_monotonic_us(), idle = (uint64_t) m->cfg.sandbox_idle_s * 1000000;
        Entry *dead = NULL;
        pthread_mutex_lock(&m->lock);
        for (Entry **p = &m->sessions; *p;) {
                Entry *e = *p;
                if (e->refs == 1 && now - e->used_us > idle) {
                        *p = e->next;
                        e->next = dead;
                        dead = e;
                } else {
                        p = &e->next;
                }
        }
        pthread_mutex_unlock(&m->lock);
        for (Entry *e = dead, *next; e; e = next) {
                next = e->next;
                entry_put(m, e);
        }
}

/* ---- answers ---- */

static void reply_rpc_error(HttpRequest *req, unsigned status, int code, const char *msg)
{
        gw_reply_json(req, status, mcp_error_new(NULL, code, "%s", msg), NULL);
}

static bool origin_allowed(GwMcp *m, const char *origin)
{
        if (!origin)
                return true; /* not a browser */
        for (char **o = m->origins; *o; o++)
                if (strcasecmp(*o, origin) == 0)
                        return true;
        const char *host = strstr(origin, "://");
        if (!host || (strncasecmp(origin, "http", 4) != 0))
                return false;
        host += 3;
        static const char *const loopback[] = {"localhost", "127.0.0.1", "[::1]"};
        for (size_t i = 0; i < ARRAY_SIZE(loopback); i++) {
                size_t n = strlen(loopback[i]);
                if (strncasecmp(host, loopback[i], n) == 0 &&
                    (host[n] == 0 || host[n] == ':' || host[n] == '/'))
                        return true;
        }
        return false;
}

static bool accepts(const char *accept, const char *type)
{
        return !accept || strstr(accept, type) || strstr(accept, "*/*");
}

/* ---- SSE answers (tools/call) ---- */

typedef struct {
        GwMcp *m;
        Entry *e;
        json_object *msg;
        Caller caller; /* its strings are the job's copies */
} Job;

static void caller_free(Caller *c)
{
        free((char *) c->api_key);
        free((char *) c->authorization);
        free((char *) c->namespace);
}

static int caller_copy(const Caller *c, Caller *ret)
{
        *ret = (Caller){0};
        if ((c->api_key && !(ret->api_key = strdup(c->api_key))) ||
            (c->authorization && !(ret->authorization = strdup(c->authorization))) ||
            (c->namespace && !(ret->namespace = strdup(c->namespace)))) {
                caller_free(ret);
                return -ENOMEM;
        }
        return 0;
}

static void job_free(void *userdata)
{
        Job *j = userdata;
        entry_put(j->m, j->e);
        json_object_put(j->msg);
        caller_free(&j->caller);
        free(j);
}

static int sse_send(json_object *msg, void *userdata)
{
        GwPump *p = userdata;
        const char *s = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN |
                                                                    JSON_C_TO_STRING_NOSLASHESCAPE);
        /* One write an event: a keepalive only ever falls between events. */
        cleanup_free char *ev = NULL;
        int n = s ? asprintf(&ev, "event: message\ndata: %s\n\n", s) : -1;
        if (n < 0)
                return -ENOMEM;
        return gw_pump_write(p, ev, (size_t) n);
}

static int sse_run(GwPump *p, void *userdata)
{
        Job *j = userdata;
        /* Headers at once: the client knows the call is under way, and one
         * that goes away is noticed (which stops the call). */
        int r = gw_pump_write(p, ": sandpit\n\n", 11);
        if (r < 0)
                return r;
        McpIo io = {.send = sse_send,
                    .userdata = p,
                    .request = &j->caller,
                    .cancel = gw_pump_cancel_flag(p)};
        json_object *resp = NULL;
        r = mcp_session_handle(j->e->s, j->msg, &io, &resp);
        if (r == 0 && resp)
                r = sse_send(resp, p);
        json_object_put(resp);
        return r;
}

static void sse_fail(HttpRequest *req, int r, void *userdata)
{
        (void) userdata;
        reply_rpc_error(req, 500, MCP_INTERNAL_ERROR, strerror(-r));
}

/* ---- the methods ---- */

static void post(GwRequest *r, GwMcp *m)
{
        const char *ct = gw_header(r, "Content-Type");
        if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
                reply_rpc_error(r->req, 415, MCP_INVALID_REQUEST,
                                "Unsupported Media Type: POST application/json");
                return;
        }
        const char *accept = gw_header(r, "Accept");
        if (!accepts(accept, "application/json") && !accepts(accept, "text/event-stream")) {
                reply_rpc_error(r->req, 406, MCP_INVALID_REQUEST,
                                "Not Acceptable: accept application/json and text/event-stream");
                return;
        }
        size_t len = 0;
        const char *body = http_request_body(r->req, &len);
        json_object *msg = NULL, *perr = NULL;
        int k = mcp_parse(body ? body : "", len, &msg, &perr);
        if (k < 0) {
                if (perr)
                        gw_reply_json(r->req, 400, perr, NULL);
                else
                        http_respond_error(r->req, 500, "out of memory");
                return;
        }
        unsigned kind = mcp_message_kind(msg);
        Caller caller = {.api_key = gw_header(r, "X-API-KEY"),
                         .authorization = gw_header(r, "Authorization"),
                         .namespace = gw_header(r, "X-Sandpit-Namespace")};
        if (kind & MCP_MSG_INITIALIZE) {
                McpSession *s = NULL;
                json_object *resp = NULL;
                McpIo io = {.request = &caller};
                /* The session is bound to the caller's namespace, and its
                 * tools use the backend as that namespace sees it. */
                Entry *e = calloc(1, sizeof(*e));
                k = e ? 0 : -ENOMEM;
                if (k == 0) {
                        snprintf(e->ns, sizeof(e->ns), "%s", r->ns);
                        gw_scope_backend(&m->gw->backend, e->ns, &e->scope, &e->backend);
                        McpConfig cfg = m->cfg;
                        cfg.backend = &e->backend;
                        cfg.node_backend = &m->gw->backend;
                        k = mcp_session_new(&cfg, &s);
                }
                if (k == 0)
                        k = mcp_session_handle(s, msg, &io, &resp);
                json_object_put(msg);
                if (k < 0 || !json_field(resp, "result")) {
                        mcp_session_free(s);
                        free(e);
                        if (resp)
                                gw_reply_json(r->req, 200, resp, NULL);
                        else
                                http_respond_error(r->req, 500, "out of memory");
                        return;
                }
                e->s = s;
                e->refs = 1;
                e->used_us = now_monotonic_us();
                pthread_mutex_lock(&m->lock);
                e->next = m->sessions;
                m->sessions = e;
                pthread_mutex_unlock(&m->lock);
                const char *hs[] = {"Mcp-Session-Id", mcp_session_id(s), NULL};
                gw_reply_json(r->req, 200, resp, hs);
                return;
        }
        const char *sid = gw_header(r, "Mcp-Session-Id");
        if (!sid) {
                json_object_put(msg);
                reply_rpc_error(r->req, 400, MCP_INVALID_REQUEST,
                                "Bad Request: no Mcp-Session-Id header (send initialize first)");
                return;
        }
        const char *pv = gw_header(r, "MCP-Protocol-Version");
        if (pv && !mcp_protocol_supported(pv)) {
                json_object_put(msg);
                reply_rpc_error(r->req, 400, MCP_INVALID_REQUEST,
                                "Bad Request: unsupported MCP-Protocol-Version");
                return;
        }
        Entry *e = session_get(m, sid);
        if (e && !streq(e->ns, r->ns)) {
                /* Another namespace's session: as one that does not exist. */
                entry_put(m, e);
                e = NULL;
        }
        if (!e) {
                json_object_put(msg);
                reply_rpc_error(r->req, 404, MCP_INVALID_REQUEST,
                                "Session not found (it ended or expired): initialize again");
                return;
        }
        if ((kind & MCP_MSG_TOOLS_CALL) && accepts(accept, "text/event-stream")) {
                Job *j = calloc(1, sizeof(*j));
                if (!j || caller_copy(&caller, &j->caller) < 0) {
                        free(j);
                        json_object_put(msg);
                        entry_put(m, e);
                        http_respond_error(r->req, 500, "out of memory");
                        return;
                }
                j->m = m;
                j->e = e;
                j->msg = msg;
                gw_pump_respond_keepalive(r->req, "text/event-stream", ": keepalive\n\n",
                                          MCP_SSE_KEEPALIVE_MS, sse_run, sse_fail, job_free, j);
                return;
        }
        McpIo io = {.request = &caller};
        json_object *resp = NULL;
        k = mcp_session_handle(e->s, msg, &io, &resp);
        json_object_put(msg);
        entry_put(m, e);
        if (k < 0)
                http_respond_error(r->req, 500, "out of memory");
        else if (!resp)
                http_respond_empty(r->req, 202);
        else
                gw_reply_json(r->req, 200, resp, NULL);
}

static void delete_session(GwRequest *r, GwMcp *m)
{
        const char *sid = gw_header(r, "Mcp-Session-Id");
        if (!sid) {
                reply_rpc_error(r->req, 400, MCP_INVALID_REQUEST,
                                "Bad Request: no Mcp-Session-Id header");
                return;
        }
        Entry *e = unlink_session(m, sid, r->ns);
        if (!e) {
                reply_rpc_error(r->req, 404, MCP_INVALID_REQUEST, "Session not found");
                return;
        }
        mcp_session_cancel_all(e->s);
        /* The table's reference: the sandbox goes now, or with the last
         * request still running. */
        entry_put(m, e);
        http_respond_empty(r->req, 204);
}

void gw_mcp_handle(GwRequest *r)
{
        GwMcp *m = r->gw->mcp;
        if (!origin_allowed(m, gw_header(r, "Origin"))) {
                reply_rpc_error(r->req, 403, MCP_INVALID_REQUEST,
                                "Forbidden: Origin not allowed (loopback or the gateway's "
                                "--mcp-allow-origin)");
                return;
        }
        reap(m);
        if (streq_ptr(r->method, "POST"))
                post(r, m);
        else if (streq_ptr(r->method, "DELETE"))
                delete_session(r, m);
        else {
                static const char *const hs[] = {"Allow", "POST, DELETE", NULL};
                json_object *e = mcp_error_new(
                        NULL, MCP_INVALID_REQUEST,
                        "Method Not Allowed: POST messages, DELETE a session (no GET stream: "
                        "this server sends nothing unasked)");
                gw_reply_json(r->req, 405, e, hs);
        }
}
