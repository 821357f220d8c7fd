/* The operator's agent calls over HTTP (agent-ops.h): one HttpClient per
 * call, as libcurl handles are not shared between the workers' threads. To
 * be replaced by lib's typed client of the agent API. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent-ops.h"
#include "operator.h"
#include "sandpit/http-client.h"
#include "sandpit/http-status.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

/* One exchange; 0 when the agent answered with success status ok. */
static int call(const AgentConn *c, const char *method, const char *path, json_object *body,
                long ok, json_object **ret, AgentError *err)
{
        *err = (AgentError){0};
        cleanup_http_client HttpClient *h = NULL;
        int r = http_client_new(c->endpoint, c->token, &h);
        if (r < 0)
                return r;
        http_client_set_timeout(h, c->timeout_ms);
        long status = 0;
        cleanup_json json_object *resp = NULL;
        r = http_request_json(h, method, path, body, &status, &resp);
        if (r < 0) {
                snprintf(err->message, sizeof(err->message), "%s", http_client_last_error(h));
                return log_warning_errno(r, "Agent %s: %s %s: %s", c->endpoint, method, path,
                                         err->message);
        }
        err->status = status;
        if (status != ok) {
                const char *m = json_str(resp, "message");
                if (m)
                        snprintf(err->message, sizeof(err->message), "%s", m);
                r = http_status_to_errno(status, NULL);
                /* A 2xx other than the one this call answers with. */
                return r < 0 ? r : -EIO;
        }
        if (ret)
                *ret = TAKE_PTR(resp);
        return 0;
}

static int sandbox_path(const char *id, const char *action, char **ret)
{
        if (asprintf(ret, "/v1/sandboxes/%s%s%s", id, action ? "/" : "", action ? action : "") <
            0) {
                *ret = NULL;
                return -ENOMEM;
        }
        return 0;
}

static int agent_create(const AgentConn *c, json_object *req, json_object **ret, AgentError *err)
{
        int r = call(c, "POST", "/v1/sandboxes", req, 201, ret, err);
        return err->status == 409 ? -EEXIST : r;
}

static int agent_get(const AgentConn *c, const char *id, json_object **ret, AgentError *err)
{
        cleanup_free char *path = NULL;
        int r = sandbox_path(id, NULL, &path);
        if (r < 0)
                return r;
        return call(c, "GET", path, NULL, 200, ret, err);
}

static int agent_list(const AgentConn *c, const char *label, json_object **ret, AgentError *err)
{
        cleanup_free char *path = strdup("/v1/sandboxes");
        if (!path)
                return -ENOMEM;
        int r = k8s_url_add_query(&path, "label", label);
        if (r < 0)
                return r;
        cleanup_json json_object *resp = NULL;
        r = call(c, "GET", path, NULL, 200, &resp, err);
        if (r < 0)
                return r;
        json_object *arr = json_field(resp, "sandboxes");
        *ret = arr && json_object_is_type(arr, json_type_array) ? json_object_get(arr)
                                                                : json_object_new_array();
        return 0;
}

static int agent_remove(const AgentConn *c, const char *id, AgentError *err)
{
        cleanup_free char *path = NULL;
        int r = sandbox_path(id, NULL, &path);
        if (r < 0)
                return r;
        return call(c, "DELETE", path, NULL, 204, NULL, err);
}

static int agent_set_timeout(const AgentConn *c, const char *id, uint64_t deadline_us,
                             json_object **ret, AgentError *err)
{
        uint64_t now = now_realtime_us();
        cleanup_free char *path = NULL;
        int r = sandbox_path(id, "timeout", &path);
        if (r < 0)
                return r;
        int64_t s = deadline_us > now ? (int64_t) ((deadline_us - now + 999999u) / 1000000u) : 1;
        cleanup_json json_object *body = json_object_new_object();
        json_object_object_add(body, "timeout", json_object_new_int64(s));
        return call(c, "POST", path, body, 200, ret, err);
}

static int agent_pause(const AgentConn *c, const char *id, bool stop_deadline, json_object **ret,
                       AgentError *err)
{
        cleanup_free char *path = NULL;
        int r = sandbox_path(id, "pause", &path);
        if (r < 0)
                return r;
        cleanup_json json_object *body = json_object_new_object();
        json_object_object_add(body, "stop_deadline", json_object_new_boolean(stop_deadline));
        return call(c, "POST", path, body, 200, ret, err);
}

static int agent_resume(const AgentConn *c, const char *id, json_object **ret, AgentError *err)
{
        cleanup_free char *path = NULL;
        int r = sandbox_path(id, "resume", &path);
        if (r < 0)
                return r;
        cleanup_json json_object *body = json_object_new_object();
        return call(c, "POST", path, body, 200, ret, err);
}

const AgentOps agent_client_ops = {
        .create = agent_create,
        .get = agent_get,
        .list = agent_list,
        .remove = agent_remove,
        .set_timeout = agent_set_timeout,
        .pause = agent_pause,
        .resume = agent_resume,
};
