/* The code interpreter, port 49999 (E2B-WIRE §5): /execute passes the agent's
 * code events through as E2B's NDJSON lines (the agent already writes them in
 * that format), /contexts maps onto the agent's contexts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw-internal.h"
#include "pump.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"

typedef struct {
        AgentClient *agent;
        char *id;
        json_object *req;
        GwPump *pump;
} Exec;

static void exec_free(void *userdata)
{
        Exec *e = userdata;
        agent_client_free(e->agent);
        free(e->id);
        if (e->req)
                json_object_put(e->req);
        free(e);
}

static int exec_event(json_object *ev, void *userdata)
{
        Exec *e = userdata;
        const char *s = json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return -ENOMEM;
        int k = gw_pump_write(e->pump, s, strlen(s));
        return k < 0 ? k : gw_pump_write(e->pump, "\n", 1);
}

static int exec_run(GwPump *p, void *userdata)
{
        Exec *e = userdata;
        e->pump = p;
        agent_client_set_cancel(e->agent, gw_pump_cancel_flag(p));
        return agent_client_code(e->agent, e->id, e->req, exec_event, e);
}

static void reply_text(HttpRequest *req, unsigned status, const char *msg)
{
        static const char *const hs[] = {"Content-Type", "text/plain; charset=utf-8", NULL};
        char *b = strdup(msg);
        http_respond_raw(req, status, (char *const *) hs, b, b ? strlen(b) : 0);
}

static void exec_fail(HttpRequest *req, int r, void *userdata)
{
        Exec *e = userdata;
        const AgentClientError *err = agent_client_error(e->agent);
        if (r == 0) {
                /* An empty stream: nothing ran. */
                reply_text(req, 200, "");
                return;
        }
        unsigned status = err->status >= 400 ? (unsigned) err->status : gw_e2b_status_from_errno(r);
        reply_text(req, status, err->message[0] ? err->message : strerror(-r));
}

/* E2B's language names onto the agent's. */
static const char *language(const char *l)
{
        if (streq(l, "js"))
                return "javascript";
        if (streq(l, "ts"))
                return "typescript";
        return l;
}

static void execute(GwRequest *r)
{
        cleanup_json json_object *body = NULL;
        if (http_request_parse_json(r->req, &body) < 0)
                return;
        const char *code = json_str(body, "code");
        if (!code) {
                reply_text(r->req, 400, "code is required");
                return;
        }
        cleanup_json json_object *req = json_object_new_object();
        if (!req) {
                reply_text(r->req, 500, "out of memory");
                return;
        }
        json_object_object_add(req, "code", json_object_new_string(code));
        const char *lang = json_str(body, "language");
        const char *ctx = json_str(body, "context_id");
        if (lang && ctx) {
                reply_text(r->req, 400, "give a language or a context, not both");
                return;
        }
        if (lang)
                json_object_object_add(req, "language", json_object_new_string(language(lang)));
        if (ctx)
                json_object_object_add(req, "context", json_object_new_string(ctx));
        json_object *env = json_field(body, "env_vars");
        if (env && json_object_is_type(env, json_type_object))
                json_object_object_add(req, "env", json_object_get(env));
        char err[512] = "";
        Exec *e = calloc(1, sizeof(*e));
        if (!e || !(e->id = strdup(r->route.sandbox_id))) {
                free(e);
                reply_text(r->req, 500, "out of memory");
                return;
        }
        int k = r->gw->backend.ops->agent(r->gw->backend.data, e->id, &e->agent, err, sizeof(err));
        if (k < 0) {
                exec_free(e);
                reply_text(r->req, gw_e2b_status_from_errno(k), err);
                return;
        }
        e->req = TAKE_PTR(req);
        gw_pump_respond(r->req, "application/x-ndjson", exec_run, exec_fail, exec_free, e);
}

/* An agent context as E2B's {"id","language","cwd"}. */
static json_object *context_view(json_object *c)
{
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        static const char *const keys[] = {"id", "language", "cwd"};
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
                const char *v = json_str(c, keys[i]);
                json_object_object_add(o, keys[i], json_object_new_string(v ? v : ""));
        }
        return o;
}

static void contexts(GwRequest *r, AgentClient *a)
{
        const char *id = r->route.sandbox_id;
        const char *rest = r->path + strlen("/contexts");
        cleanup_json json_object *res = NULL;
        int k;
        if (!*rest && streq(r->method, "POST")) {
                cleanup_json json_object *body = NULL;
                size_t len = 0;
                if (http_request_body(r->req, &len) && len > 0 &&
                    http_request_parse_json(r->req, &body) < 0)
                        return;
                const char *lang = json_str(body, "language");
                k = agent_client_context_create(a, id, lang ? language(lang) : NULL,
                                                json_str(body, "cwd"), &res);
                if (k < 0)
                        goto fail;
                gw_reply_json(r->req, 200, context_view(res), NULL);
                return;
        }
        if (!*rest && streq(r->method, "GET")) {
                k = agent_client_context_list(a, id, &res);
                if (k < 0)
                        goto fail;
                json_object *arr = json_object_new_array();
                for (size_t i = 0; arr && i < json_object_array_length(res); i++)
                        json_object_array_add(arr, context_view(json_object_array_get_idx(res, i)));
                gw_reply_json(r->req, 200, arr, NULL);
                return;
        }
        if (rest[0] == '/' && rest[1]) {
                cleanup_free char *ctx = strdup(rest + 1);
                if (!ctx) {
                        reply_text(r->req, 500, "out of memory");
                        return;
                }
                char *slash = strchr(ctx, '/');
                if (slash)
                        *slash++ = 0;
                if (!slash && streq(r->method, "DELETE")) {
                        k = agent_client_context_delete(a, id, ctx);
                        if (k < 0)
                                goto fail;
                        http_respond_empty(r->req, 204);
                        return;
                }
                if (slash && streq(slash, "restart") && streq(r->method, "POST")) {
                        k = agent_client_context_restart(a, id, ctx, NULL);
                        if (k < 0)
                                goto fail;
                        http_respond_empty(r->req, 204);
                        return;
                }
        }
        reply_text(r->req, 404, "no such route of the code interpreter");
        return;
fail:;
        const AgentClientError *e = agent_client_error(a);
        unsigned status = e->status >= 400 ? (unsigned) e->status : gw_e2b_status_from_errno(k);
        reply_text(r->req, status, e->message[0] ? e->message : strerror(-k));
}

void gw_code_handle(GwRequest *r)
{
        if (streq(r->path, "/execute")) {
                if (!streq(r->method, "POST")) {
                        reply_text(r->req, 405, "POST /execute");
                        return;
                }
                execute(r);
                return;
        }
        if (streq(r->path, "/health")) {
                reply_text(r->req, 200, "OK");
                return;
        }
        if (strncmp(r->path, "/contexts", 9) == 0) {
                char err[512] = "";
                cleanup_agent_client AgentClient *a = NULL;
                int k = r->gw->backend.ops->agent(r->gw->backend.data, r->route.sandbox_id, &a, err,
                                                  sizeof(err));
                if (k < 0) {
                        reply_text(r->req, gw_e2b_status_from_errno(k), err);
                        return;
                }
                contexts(r, a);
                return;
        }
        reply_text(r->req, 404, "no such route of the code interpreter");
}
