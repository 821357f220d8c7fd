/* The MCP core (mcp.h): JSON-RPC 2.0 messages, the lifecycle (initialize,
 * revision negotiation, ping), tools/list and tools/call, cancellation. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp-internal.h"
#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define MCP_SERVER_VERSION SANDPIT_VERSION /* -D from VERSION (mk/config.mk) */

/* Newest first: what the official TypeScript SDK negotiates, and 2024-11-05
 * for older clients (its tools are the same minus the newer fields). */
static const char *const protocols[] = {"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"};

bool mcp_protocol_supported(const char *version)
{
        for (size_t i = 0; version && i < ARRAY_SIZE(protocols); i++)
                if (streq_ptr(version, protocols[i]))
                        return true;
        return false;
}

/* a is at least b (both supported revisions: dates compare as strings). */
static bool protocol_at_least(const char *a, const char *b)
{
        return strcmp(a, b) >= 0;
}

json_object *mcp_error_new(json_object *id, int code, const char *fmt, ...)
{
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        json_object *e = json_object_new_object(), *o = json_object_new_object();
        if (!e || !o) {
                json_object_put(e);
                json_object_put(o);
                return NULL;
        }
        json_object_object_add(e, "code", json_object_new_int(code));
        json_object_object_add(e, "message", json_object_new_string(msg));
        json_object_object_add(o, "jsonrpc", json_object_new_string("2.0"));
        json_object_object_add(o, "id", id ? json_object_get(id) : NULL);
        json_object_object_add(o, "error", e);
        return o;
}

static json_object *result_new(json_object *id, json_object *result)
{
        json_object *o = json_object_new_object();
        if (!o || !result) {
                json_object_put(o);
                json_object_put(result);
                return NULL;
        }
        json_object_object_add(o, "jsonrpc", json_object_new_string("2.0"));
        json_object_object_add(o, "id", json_object_get(id));
        json_object_object_add(o, "result", result);
        return o;
}

int mcp_parse(const char *data, size_t len, json_object **ret, json_object **ret_error)
{
        const char *why = NULL;
        int r = json_parse_strict(data, len, 64, ret, &why);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                *ret_error = mcp_error_new(NULL, MCP_PARSE_ERROR, "Parse error: %s",
                                           why ? why : "not one JSON value");
                return *ret_error ? -EBADMSG : -ENOMEM;
        }
        return 0;
}

static bool is_request(json_object *m)
{
        return json_object_is_type(m, json_type_object) && json_str(m, "method") &&
               json_object_object_get_ex(m, "id", NULL);
}

unsigned mcp_message_kind(json_object *msg)
{
        if (json_object_is_type(msg, json_type_array)) {
                unsigned k = MCP_MSG_BATCH;
                for (size_t i = 0; i < json_object_array_length(msg); i++)
                        if (is_request(json_object_array_get_idx(msg, i)))
                                k |= MCP_MSG_REQUEST;
                return k;
        }
        if (!is_request(msg)) {
                bool notification = json_str(msg, "method") != NULL;
                bool response = json_object_object_get_ex(msg, "result", NULL) ||
                                json_object_object_get_ex(msg, "error", NULL);
                /* Anything else is malformed, and its error is an answer. */
                return notification || response ? 0 : MCP_MSG_REQUEST;
        }
        const char *m = json_str(msg, "method");
        if (streq_ptr(m, "initialize"))
                return MCP_MSG_REQUEST | MCP_MSG_INITIALIZE;
        if (streq_ptr(m, "tools/call"))
                return MCP_MSG_REQUEST | MCP_MSG_TOOLS_CALL;
        return MCP_MSG_REQUEST;
}

int mcp_session_new(const McpConfig *cfg, McpSession **ret)
{
        McpSession *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->cfg = *cfg;
        if (!s->cfg.sandbox_idle_s)
                s->cfg.sandbox_idle_s = MCP_SANDBOX_IDLE_DEFAULT;
        if (!s->cfg.template_name)
                s->cfg.template_name = "default";
        int r = random_id(s->id, MCP_SESSION_ID_LEN);
        if (r < 0) {
                free(s);
                return r;
        }
        pthread_mutex_init(&s->lock, NULL);
        pthread_mutex_init(&s->sandbox_lock, NULL);
        *ret = s;
        return 0;
}

void mcp_session_free(McpSession *s)
{
        if (!s)
                return;
        if (s->sandbox[0]) {
                char err[256] = "";
                int r = s->cfg.backend->ops->remove(s->cfg.backend->data, s->sandbox, err,
                                                    sizeof(err));
                if (r < 0 && r != -ENOENT)
                        log_warning("mcp: cannot delete session sandbox %s: %s", s->sandbox, err);
        }
        pthread_mutex_destroy(&s->lock);
        pthread_mutex_destroy(&s->sandbox_lock);
        free(s);
}

const char *mcp_session_id(const McpSession *s)
{
        return s->id;
}

const char *mcp_session_protocol(const McpSession *s)
{
        return s->protocol;
}

void mcp_session_cancel_all(McpSession *s)
{
        pthread_mutex_lock(&s->lock);
        for (McpInflight *f = s->inflight; f; f = f->next)
                *f->cancel = 1;
        pthread_mutex_unlock(&s->lock);
}

static void id_key(json_object *id, char *buf, size_t len)
{
        const char *t = json_object_to_json_string_ext(id, JSON_C_TO_STRING_PLAIN);
        snprintf(buf, len, "%s", t ? t : "");
}

static void cancel_request(McpSession *s, json_object *params)
{
        json_object *id = json_field(params, "requestId");
        if (!id)
                return;
        char key[128];
        id_key(id, key, sizeof(key));
        pthread_mutex_lock(&s->lock);
        for (McpInflight *f = s->inflight; f; f = f->next)
                if (streq_ptr(f->key, key))
                        *f->cancel = 1;
        pthread_mutex_unlock(&s->lock);
}

static json_object *initialize(McpSession *s, json_object *id, json_object *params)
{
        const char *asked = json_str(params, "protocolVersion");
        if (!asked)
                return mcp_error_new(id, MCP_INVALID_PARAMS,
                                     "initialize needs params.protocolVersion (a string)");
        if (params && json_field(params, "capabilities") &&
            !json_object_is_type(json_field(params, "capabilities"), json_type_object))
                return mcp_error_new(id, MCP_INVALID_PARAMS,
                                     "params.capabilities is not an object");
        pthread_mutex_lock(&s->lock);
        if (s->protocol[0]) {
                pthread_mutex_unlock(&s->lock);
                return mcp_error_new(id, MCP_INVALID_REQUEST, "the session is already initialized");
        }
        /* The client's revision when we speak it, else our newest: the client
         * then decides whether it can go on. */
        snprintf(s->protocol, sizeof(s->protocol), "%s",
                 mcp_protocol_supported(asked) ? asked : MCP_PROTOCOL_LATEST);
        pthread_mutex_unlock(&s->lock);

        json_object *res = json_object_new_object(), *caps = json_object_new_object(),
                    *tools = json_object_new_object(), *info = json_object_new_object();
        if (!res || !caps || !tools || !info) {
                json_object_put(res);
                json_object_put(caps);
                json_object_put(tools);
                json_object_put(info);
                return NULL;
        }
        json_object_object_add(tools, "listChanged", json_object_new_boolean(false));
        json_object_object_add(caps, "tools", tools);
        json_object_object_add(info, "name", json_object_new_string("sandpit"));
        json_object_object_add(info, "title", json_object_new_string("sandpit sandboxes"));
        json_object_object_add(info, "version", json_object_new_string(MCP_SERVER_VERSION));
        json_object_object_add(res, "protocolVersion", json_object_new_string(s->protocol));
        json_object_object_add(res, "capabilities", caps);
        json_object_object_add(res, "serverInfo", info);
        json_object_object_add(
                res, "instructions",
                json_object_new_string(
                        "Runs code and commands in isolated Linux sandboxes (Debian with "
                        "python3, numpy, pandas, matplotlib, nodejs). Tools given no "
                        "sandbox_id share one sandbox that this session creates on first use "
                        "and deletes when the session ends or idles out; state (files, "
                        "variables of run_code) persists across calls in it."));
        return result_new(id, res);
}

static json_object *tool_view(const McpTool *t, const char *protocol)
{
        json_object *o = json_object_new_object();
        json_object *in = json_tokener_parse(t->input_schema);
        if (!o || !in) {
                json_object_put(o);
                json_object_put(in);
                return NULL;
        }
        bool v0618 = protocol_at_least(protocol, "2025-06-18");
        json_object_object_add(o, "name", json_object_new_string(t->name));
        if (v0618)
                json_object_object_add(o, "title", json_object_new_string(t->title));
        json_object_object_add(o, "description", json_object_new_string(t->description));
        json_object_object_add(o, "inputSchema", in);
        if (v0618 && t->output_schema) {
                json_object *out = json_tokener_parse(t->output_schema);
                if (!out) {
                        json_object_put(o);
                        return NULL;
                }
                json_object_object_add(o, "outputSchema", out);
        }
        if (protocol_at_least(protocol, "2025-03-26")) {
                json_object *a = json_object_new_object();
                if (!a) {
                        json_object_put(o);
                        return NULL;
                }
                json_object_object_add(a, "title", json_object_new_string(t->title));
                json_object_object_add(a, "readOnlyHint", json_object_new_boolean(t->read_only));
                if (!t->read_only) {
                        json_object_object_add(a, "destructiveHint",
                                               json_object_new_boolean(t->destructive));
                        json_object_object_add(a, "idempotentHint",
                                               json_object_new_boolean(t->idempotent));
                }
                json_object_object_add(a, "openWorldHint", json_object_new_boolean(t->open_world));
                json_object_object_add(o, "annotations", a);
        }
        return o;
}

static json_object *tools_list(McpSession *s, json_object *id, json_object *params)
{
        json_object *cursor = json_field(params, "cursor");
        if (cursor && !json_object_is_type(cursor, json_type_null))
                /* Every tool fits on the first page: no cursor we gave out. */
                return mcp_error_new(id, MCP_INVALID_PARAMS, "unknown cursor");
        json_object *arr = json_object_new_array();
        if (!arr)
                return NULL;
        /* run_code offers what the node's templates run, where it says. */
        cleanup_json json_object *info = NULL;
        if (mcp_node_info(&s->cfg, &info) == -ENOMEM) {
                json_object_put(arr);
                return NULL;
        }
        for (size_t i = 0; i < mcp_n_tools; i++) {
                json_object *t = tool_view(&mcp_tools[i], s->protocol);
                if (t && info && streq_ptr(mcp_tools[i].name, "run_code") &&
                    mcp_run_code_view(info, s->cfg.template_name, t) < 0) {
                        json_object_put(t);
                        t = NULL;
                }
                if (!t || json_object_array_add(arr, t) < 0) {
                        json_object_put(t);
                        json_object_put(arr);
                        return NULL;
                }
        }
        json_object *res = json_object_new_object();
        if (!res) {
                json_object_put(arr);
                return NULL;
        }
        json_object_object_add(res, "tools", arr);
        return result_new(id, res);
}

static json_object *call_result(McpCall *c)
{
        json_object *res = json_object_new_object();
        if (!res)
                return NULL;
        json_object_object_add(res, "content", json_object_get(c->content));
        if (c->structured && c->structured_content)
                json_object_object_add(res, "structuredContent",
                                       json_object_get(c->structured_content));
        if (c->is_error)
                json_object_object_add(res, "isError", json_object_new_boolean(true));
        return res;
}

static json_object *tools_call(McpSession *s, json_object *id, json_object *params, const McpIo *io)
{
        const char *name = json_str(params, "name");
        if (!name)
                return mcp_error_new(id, MCP_INVALID_PARAMS, "tools/call needs params.name");
        const McpTool *t = mcp_tool_find(name);
        if (!t)
                return mcp_error_new(id, MCP_INVALID_PARAMS,
                                     "unknown tool '%s' (tools/list lists them)", name);
        json_object *args = json_field(params, "arguments");
        if (args && !json_object_is_type(args, json_type_object))
                return mcp_error_new(id, MCP_INVALID_PARAMS, "params.arguments is not an object");
        cleanup_json json_object *empty = args ? NULL : json_object_new_object();
        if (!args && !empty)
                return NULL;

        McpInflight f = {0};
        f.cancel = io->cancel ? io->cancel : &f.own;
        id_key(id, f.key, sizeof(f.key));
        pthread_mutex_lock(&s->lock);
        f.next = s->inflight;
        s->inflight = &f;
        pthread_mutex_unlock(&s->lock);

        McpCall c = {.s = s,
                     .io = io,
                     .tool = t->name,
                     .args = args ? args : empty,
                     .progress_token = json_field(json_obj(params, "_meta"), "progressToken"),
                     .cancel = f.cancel,
                     .structured = protocol_at_least(s->protocol, "2025-06-18"),
                     .content = json_object_new_array()};
        json_object *resp = NULL;
        int r = c.content ? mcp_tool_run(t, &c) : -ENOMEM;
        if (r == 0)
                resp = result_new(id, call_result(&c));
        else if (r != -ECANCELED)
                resp = mcp_error_new(id, MCP_INTERNAL_ERROR, "%s: %s", name, strerror(-r));
        json_object_put(c.content);
        json_object_put(c.structured_content);

        pthread_mutex_lock(&s->lock);
        for (McpInflight **p = &s->inflight; *p; p = &(*p)->next)
                if (*p == &f) {
                        *p = f.next;
                        break;
                }
        pthread_mutex_unlock(&s->lock);
        /* A cancelled request gets no answer (the client has moved on). */
        if (*f.cancel) {
                json_object_put(resp);
                return NULL;
        }
        return resp;
}

/* One message of a batch or alone; -ENOMEM, else 0 with *ret or NULL. */
static int handle_one(McpSession *s, json_object *m, const McpIo *io, json_object **ret)
{
        *ret = NULL;
        if (!json_object_is_type(m, json_type_object)) {
                *ret = mcp_error_new(NULL, MCP_INVALID_REQUEST,
                                     "Invalid Request: a message is a JSON object");
                return *ret ? 0 : -ENOMEM;
        }
        json_object *id = json_field(m, "id");
        bool has_id = json_object_object_get_ex(m, "id", NULL);
        const char *method = json_str(m, "method");
        if (!method && (json_field(m, "result") || json_field(m, "error")))
                return 0; /* a response: we send no requests, so nothing to match */
        if (!streq_ptr(json_str(m, "jsonrpc"), "2.0") || !method ||
            (has_id && !json_object_is_type(id, json_type_string) &&
             !json_object_is_type(id, json_type_int))) {
                *ret = mcp_error_new(has_id && (json_object_is_type(id, json_type_string) ||
                                                json_object_is_type(id, json_type_int))
                                             ? id
                                             : NULL,
                                     MCP_INVALID_REQUEST,
                                     "Invalid Request: needs \"jsonrpc\": \"2.0\", a \"method\" "
                                     "string and an \"id\" that is a string or an integer");
                return *ret ? 0 : -ENOMEM;
        }
        json_object *params = json_field(m, "params");
        if (params && !json_object_is_type(params, json_type_object)) {
                if (has_id)
                        *ret = mcp_error_new(id, MCP_INVALID_PARAMS, "params must be an object");
                return has_id && !*ret ? -ENOMEM : 0;
        }
        if (!has_id) {
                if (streq_ptr(method, "notifications/initialized")) {
                        pthread_mutex_lock(&s->lock);
                        s->initialized = true;
                        pthread_mutex_unlock(&s->lock);
                } else if (streq_ptr(method, "notifications/cancelled")) {
                        cancel_request(s, params);
                }
                return 0; /* other notifications are ignored, as JSON-RPC says */
        }
        if (streq_ptr(method, "initialize"))
                *ret = initialize(s, id, params);
        else if (streq_ptr(method, "ping"))
                *ret = result_new(id, json_object_new_object());
        else if (!s->protocol[0])
                *ret = mcp_error_new(id, MCP_INVALID_REQUEST,
                                     "the session is not initialized: send initialize first");
        else if (streq_ptr(method, "tools/list"))
                *ret = tools_list(s, id, params);
        else if (streq_ptr(method, "tools/call"))
                return (*ret = tools_call(s, id, params, io)), 0;
        else
                *ret = mcp_error_new(id, MCP_METHOD_NOT_FOUND, "Method not found: %s", method);
        return *ret ? 0 : -ENOMEM;
}

int mcp_session_handle(McpSession *s, json_object *msg, const McpIo *io, json_object **ret)
{
        *ret = NULL;
        if (!json_object_is_type(msg, json_type_array))
                return handle_one(s, msg, io, ret);
        size_t n = json_object_array_length(msg);
        pthread_mutex_lock(&s->lock);
        bool batches = s->protocol[0] && !protocol_at_least(s->protocol, "2025-06-18");
        pthread_mutex_unlock(&s->lock);
        if (!batches || n == 0) {
                *ret = mcp_error_new(NULL, MCP_INVALID_REQUEST,
                                     n == 0 ? "Invalid Request: an empty batch"
                                            : "Invalid Request: JSON-RPC batches are only taken "
                                              "in revision 2025-03-26 sessions; send one message "
                                              "at a time");
                return *ret ? 0 : -ENOMEM;
        }
        json_object *out = json_object_new_array();
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *m = json_object_array_get_idx(msg, i), *r1 = NULL;
                if (streq_ptr(json_str(m, "method"), "initialize"))
                        r1 = mcp_error_new(json_field(m, "id"), MCP_INVALID_REQUEST,
                                           "initialize cannot be part of a batch");
                else if (handle_one(s, m, io, &r1) < 0) {
                        json_object_put(out);
                        return -ENOMEM;
                }
                if (r1 && json_object_array_add(out, r1) < 0) {
                        json_object_put(r1);
                        json_object_put(out);
                        return -ENOMEM;
                }
        }
        if (json_object_array_length(out) == 0)
                json_object_put(TAKE_PTR(out));
        *ret = out;
        return 0;
}
