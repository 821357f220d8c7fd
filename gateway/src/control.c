/* The REST control plane (E2B-WIRE §3): create, list, get, kill, timeout,
 * pause, connect/resume and metrics over the backend; E2B's error body. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw-internal.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

/* The backend as the caller may see it (scoped to its namespace, scope.c). */
#define BACKEND(r) ((r)->backend.ops)
#define BDATA(r)   ((r)->backend.data)

/* The request's JSON body; an absent or empty one is NULL (not an error). */
static int body_json(GwRequest *r, json_object **ret)
{
        size_t len = 0;
        const char *b = http_request_body(r->req, &len);
        *ret = NULL;
        if (!b || len == 0)
                return 0;
        return http_request_parse_json(r->req, ret);
}

/* Answers the sandbox in view; access token from the store. */
static void reply_sandbox(GwRequest *r, unsigned status, json_object *sbx, GwE2bView view)
{
        const char *id = json_str(sbx, "id");
        char tok[GW_TOKEN_LEN + 1];
        bool have = id && gw_token_get(r->gw, id, tok) == 0;
        json_object *out = NULL;
        int k = gw_e2b_sandbox_from_agent(sbx, view, &r->gw->e2b, have ? tok : NULL, &out);
        explicit_bzero(tok, sizeof(tok));
        if (k < 0) {
                gw_reply_e2b_error(r->req, k,
                                   k == -ENOENT ? "sandbox not found (it is not running or paused)"
                                                : "the agent's sandbox could not be read");
                return;
        }
        gw_reply_json(r->req, status, out, NULL);
}

static void create(GwRequest *r, bool v1)
{
        char err[512] = "";
        cleanup_json json_object *body = NULL;
        if (http_request_parse_json(r->req, &body) < 0)
                return;
        GwE2bCreate c = {0};
        int k = gw_e2b_create_parse(body, v1, &r->gw->e2b, &c, err, sizeof(err));
        if (k < 0) {
                gw_reply_e2b_error(r->req, k, err);
                return;
        }
        cleanup_json json_object *areq = NULL;
        k = gw_e2b_create_to_agent(&c, &areq, err, sizeof(err));
        bool secure = c.secure;
        /* E2B's name of a template of ours, for the error when it is missing. */
        char alias[160] = "";
        if (k == 0 && !streq(c.template_id, c.template_name))
                (void) snprintf(alias, sizeof(alias), "%s", c.template_id);
        gw_e2b_create_done(&c);
        if (k < 0) {
                gw_reply_e2b_error(r->req, k, err);
                return;
        }
        char tok[GW_TOKEN_LEN + 1] = "";
        if (secure) {
                json_object *labels = json_field(areq, "labels");
                if (!labels) {
                        labels = json_object_new_object();
                        if (!labels || json_object_object_add(areq, "labels", labels) < 0) {
                                http_respond_error(r->req, 500, "out of memory");
                                return;
                        }
                }
                if (json_object_object_add(labels, GW_LABEL_SECURE,
                                           json_object_new_string("true")) < 0 ||
                    gw_token_new(tok) < 0) {
                        http_respond_error(r->req, 500, "cannot make an access token");
                        return;
                }
        }
        cleanup_json json_object *sbx = NULL;
        k = BACKEND(r)->create(BDATA(r), areq, &sbx, err, sizeof(err));
        if (k < 0) {
                explicit_bzero(tok, sizeof(tok));
                size_t n = strlen(err);
                if (k == -ENOENT && *alias && n < sizeof(err))
                        (void) snprintf(err + n, sizeof(err) - n,
                                        " (templateID %s maps to it; docs/templates.md says how "
                                        "to build it)",
                                        alias);
                gw_reply_e2b_error(r->req, k == -EEXIST ? -EBUSY : k, err);
                return;
        }
        const char *id = json_str(sbx, "id");
        if (secure && (!id || gw_token_put(r->gw, id, tok) < 0)) {
                explicit_bzero(tok, sizeof(tok));
                if (id)
                        (void) BACKEND(r)->remove(BDATA(r), id, err, sizeof(err));
                http_respond_error(r->req, 500, "cannot keep the sandbox's access token");
                return;
        }
        explicit_bzero(tok, sizeof(tok));
        reply_sandbox(r, 201, sbx, GW_E2B_VIEW_SANDBOX);
}

static void list(GwRequest *r, bool v1)
{
        char err[512] = "";
        GwE2bListParams p = {.metadata = http_request_query(r->req, "metadata"),
                             .state = http_request_query(r->req, "state"),
                             .template_id = http_request_query(r->req, "template"),
                             .started_after = http_request_query(r->req, "startedAfter"),
                             .order = http_request_query(r->req, "order"),
                             .limit = http_request_query(r->req, "limit"),
                             .next_token = http_request_query(r->req, "nextToken")};
        GwE2bListQuery q = {0};
        int k = gw_e2b_list_query_parse(&p, !v1, &q, err, sizeof(err));
        if (k < 0) {
                gw_reply_e2b_error(r->req, k, err);
                return;
        }
        cleanup_json json_object *all = NULL;
        k = BACKEND(r)->list(BDATA(r), &all, err, sizeof(err));
        if (k < 0) {
                gw_e2b_list_query_done(&q);
                gw_reply_e2b_error(r->req, k, err);
                return;
        }
        json_object *page = NULL;
        cleanup_free char *next = NULL;
        k = gw_e2b_list_page(all, &q, &r->gw->e2b, &page, &next);
        gw_e2b_list_query_done(&q);
        if (k < 0) {
                gw_reply_e2b_error(r->req, k, "cannot list the sandboxes");
                return;
        }
        const char *hs[] = {"X-Next-Token", next, NULL};
        gw_reply_json(r->req, 200, page, next ? hs : NULL);
}

static void get(GwRequest *r, const char *id)
{
        char err[512] = "";
        cleanup_json json_object *sbx = NULL;
        int k = BACKEND(r)->get(BDATA(r), id, &sbx, err, sizeof(err));
        if (k < 0) {
                gw_reply_e2b_error(r->req, k, err);
                return;
        }
        reply_sandbox(r, 200, sbx, GW_E2B_VIEW_DETAIL);
}

static void kill_sandbox(GwRequest *r, const char *id)
{
        char err[512] = "";
        int k = BACKEND(r)->remove(BDATA(r), id, err, sizeof(err));
        if (k < 0 && k != -ENOENT) {
                gw_reply_e2b_error(r->req, k, err);
                return;
        }
        /* Scoped to a namespace, -ENOENT may be another namespace's sandbox
         * (scope.c): its token stays. */
        if (k == 0 || !r->ns[0])
                gw_token_remove(r->gw, id);
        if (k < 0)
                gw_reply_e2b_error(r->req, k, err);
        else
                http_respond_empty(r->req, 204);
}

static void set_timeout(GwRequest *r, const char *id)
{
        char err[512] = "";
        cleanup_json json_object *body = NULL;
        if (http_request_parse_json(r->req, &body) < 0)
                return;
        uint64_t s = 0;
        int k = gw_e2b_timeout_body_parse(body, &s, err, sizeof(err));
        if (k == 0)
                k = BACKEND(r)->set_timeout(BDATA(r), id, s, err, sizeof(err));
        if (k < 0)
                gw_reply_e2b_error(r->req, k, err);
        else
                http_respond_empty(r->req, 204);
}

static void pause_sandbox(GwRequest *r, const char *id)
{
        char err[512] = "";
        cleanup_json json_object *body = NULL;
        if (body_json(r, &body) < 0)
                return;
        int k = gw_e2b_pause_body_parse(body, err, sizeof(err));
        if (k == 0)
                k = BACKEND(r)->pause(BDATA(r), id, err, sizeof(err));
        if (k < 0)
                gw_reply_e2b_error(r->req, k, err);
        else
                http_respond_empty(r->req, 204);
}

/* POST /v2/sandboxes/{id}/connect: resumes a paused sandbox (201), or moves a
 * running one's deadline when a timeout is given (200). */
static void connect_sandbox(GwRequest *r, const char *id)
{
        char err[512] = "";
        cleanup_json json_object *body = NULL;
        if (body_json(r, &body) < 0)
                return;
        uint64_t s = 0;
        int k = body ? gw_e2b_connect_body_parse(body, &s, err, sizeof(err)) : 0;
        if (k < 0) {
                gw_reply_e2b_error(r->req, k, err);
                return;
        }
        cleanup_json json_object *sbx = NULL;
        k = BACKEND(r)->get(BDATA(r), id, &sbx, err, sizeof(err));
        if (k < 0) {
                gw_reply_e2b_error(r->req, k, err);
                return;
        }
        const char *state = json_str(sbx, "state");
        if (state && streq(state, "paused")) {
                json_object_put(TAKE_PTR(sbx));
                k = BACKEND(r)->resume(BDATA(r), id, s, &sbx, err, sizeof(err));
                if (k < 0) {
                        gw_reply_e2b_error(r->req, k, err);
                        return;
                }
                reply_sandbox(r, 201, sbx, GW_E2B_VIEW_SANDBOX);
                return;
        }
        if (s > 0) {
                k = BACKEND(r)->set_timeout(BDATA(r), id, s, err, sizeof(err));
                if (k < 0) {
                        gw_reply_e2b_error(r->req, k, err);
                        return;
                }
        }
        reply_sandbox(r, 200, sbx, GW_E2B_VIEW_SANDBOX);
}

/* A query parameter as unix seconds; -1 when absent. */
static int query_unix(GwRequest *r, const char *name, int64_t *ret)
{
        const char *v = http_request_query(r->req, name);
        *ret = -1;
        if (!v)
                return 0;
        char *end = NULL;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno || end == v || *end || n < 0)
                return -EINVAL;
        *ret = n;
        return 0;
}

static void metrics(GwRequest *r, const char *id)
{
        char err[512] = "";
        int64_t start = -1, end = -1;
        if (query_unix(r, "start", &start) < 0 || query_unix(r, "end", &end) < 0) {
                http_respond_error(r->req, 400, "start and end are unix seconds");
                return;
        }
        cleanup_json json_object *m = NULL;
        int k = BACKEND(r)->metrics(BDATA(r), id, start, end, &m, err, sizeof(err));
        if (k < 0) {
                gw_reply_e2b_error(r->req, k, err);
                return;
        }
        json_object *out = NULL;
        k = gw_e2b_metrics_from_agent(m, &out);
        if (k < 0) {
                gw_reply_e2b_error(r->req, -EIO, "the agent's metrics could not be read");
                return;
        }
        gw_reply_json(r->req, 200, out, NULL);
}

void gw_control_handle(GwRequest *r)
{
        const char *m = r->method, *p = r->path;
        bool v2 = strncmp(p, "/v2/", 4) == 0;
        if (v2)
                p += 3;
        if (streq(p, "/sandboxes")) {
                if (streq(m, "POST"))
                        create(r, !v2);
                else if (streq(m, "GET"))
                        list(r, !v2);
                else
                        http_respond_error(r->req, 405, "%s is not allowed on %s", m, r->path);
                return;
        }
        if (!v2 && streq(p, "/health")) {
                http_respond_empty(r->req, 200);
                return;
        }
        if (strncmp(p, "/sandboxes/", 11) != 0) {
                http_respond_error(r->req, 404, "no route %s %s", m, r->path);
                return;
        }
        char id[GW_ROUTE_ID_MAX + 1];
        const char *s = p + 11, *slash = strchr(s, '/');
        size_t n = slash ? (size_t) (slash - s) : strlen(s);
        if (n == 0 || n > GW_ROUTE_ID_MAX) {
                http_respond_error(r->req, 404, "sandbox not found");
                return;
        }
        memcpy(id, s, n);
        id[n] = 0;
        if (!id_is_valid(id)) {
                http_respond_error(r->req, 404, "sandbox %s not found", id);
                return;
        }
        const char *action = slash ? slash + 1 : "";
        if (!*action && !v2 && streq(m, "GET"))
                get(r, id);
        else if (!*action && !v2 && streq(m, "DELETE"))
                kill_sandbox(r, id);
        else if (streq(action, "timeout") && !v2 && streq(m, "POST"))
                set_timeout(r, id);
        else if (streq(action, "pause") && !v2 && streq(m, "POST"))
                pause_sandbox(r, id);
        else if ((streq(action, "connect") || streq(action, "resume")) && streq(m, "POST"))
                connect_sandbox(r, id);
        else if (streq(action, "metrics") && !v2 && streq(m, "GET"))
                metrics(r, id);
        else
                http_respond_error(r->req, 404, "no route %s %s", m, r->path);
}
