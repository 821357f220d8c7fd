/* POST /v1/sandboxes/{id}/pause and /resume (docs/agent-api.md). */
#include "api-pause.h"

#include <errno.h>
#include <string.h>

#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

/* Parses an optional JSON body (empty = {}). Answers 400 itself on bad input. */
static int parse_optional_body(HttpRequest *req, json_object **ret)
{
        size_t len = 0;
        (void) http_request_body(req, &len);
        if (len == 0) {
                *ret = json_object_new_object();
                return *ret ? 0 : -ENOMEM;
        }
        return http_request_parse_json(req, ret);
}

static void respond(HttpRequest *req, const char *id, int r, const char *err, json_object *obj,
                    const char *what)
{
        if (r == -ENOENT)
                api_sandbox_not_found(req, id);
        else if (r == -EBUSY)
                http_respond_error(req, 409, "%s", err);
        else if (r < 0)
                api_respond_errno(req, r, err, what);
        else
                http_respond_json(req, 200, obj);
}

static bool check_route(HttpRequest *req, const char *rest)
{
        if (*rest) {
                http_respond_error(req, 404, "no such route");
                return false;
        }
        if (!streq(http_request_method(req), "POST")) {
                http_respond_error(req, 405, "use POST");
                return false;
        }
        return true;
}

void api_sandbox_pause(Agent *a, HttpRequest *req, const char *id, const char *rest)
{
        if (!check_route(req, rest))
                return;
        cleanup_json json_object *body = NULL;
        if (parse_optional_body(req, &body) < 0)
                return;
        bool stop_deadline = true, ok = true;
        json_object_object_foreach(body, key, val) {
                if (streq(key, "stop_deadline") && json_object_is_type(val, json_type_boolean))
                        stop_deadline = json_object_get_boolean(val);
                else
                        ok = false;
        }
        if (!ok) {
                http_respond_error(req, 400, "body must be {} or {\"stop_deadline\": BOOLEAN}");
                return;
        }
        char err[256] = "";
        json_object *obj = NULL;
        int r = sandbox_pause(a, id, stop_deadline, &obj, err, sizeof(err));
        respond(req, id, r, err, obj, "cannot pause");
}

void api_sandbox_resume(Agent *a, HttpRequest *req, const char *id, const char *rest)
{
        if (!check_route(req, rest))
                return;
        cleanup_json json_object *body = NULL;
        if (parse_optional_body(req, &body) < 0)
                return;
        uint64_t timeout_ms = 0;
        bool ok = true;
        json_object_object_foreach(body, key, val) {
                if (!streq(key, "timeout") || json_timeout_ms(val, true, &timeout_ms) < 0)
                        ok = false;
        }
        if (!ok) {
                http_respond_error(req, 400,
                                   "body must be {} or {\"timeout\": SECONDS} with 1 <= SECONDS "
                                   "<= %d",
                                   TIMEOUT_MAX_S);
                return;
        }
        char err[256] = "";
        json_object *obj = NULL;
        int r = sandbox_resume(a, id, timeout_ms / 1000, &obj, err, sizeof(err));
        respond(req, id, r, err, obj, "cannot resume");
}
