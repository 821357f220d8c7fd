/* The operator's agent calls (agent-ops.h) on lib's typed client of the
 * agent API (sandpit/agent-client.h): one client per call, as a libcurl
 * handle is not shared between the workers' threads. */
#include "agent-ops.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sandpit/agent-client.h"
#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/util.h"

static int open_client(const AgentConn *conn, AgentClientError *err, AgentClient **ret)
{
        *err = (AgentClientError){0};
        int r = agent_client_new(conn->endpoint, conn->token, ret);
        if (r == -EPROTONOSUPPORT)
                snprintf(err->message, sizeof(err->message),
                         "%s is plain HTTP: refused without --agent-insecure-http", conn->endpoint);
        else if (r < 0)
                snprintf(err->message, sizeof(err->message), "cannot make a client: %s",
                         strerror(-r));
        if (r < 0)
                return log_warning_errno(r, "Agent %s: %s", conn->endpoint, err->message);
        agent_client_set_timeout(*ret, conn->timeout_ms);
        return 0;
}

/* r, with what the agent answered in err; a transport failure is logged. */
static int done(const AgentConn *conn, AgentClient *c, const char *what, const char *id, int r,
                AgentClientError *err)
{
        if (!c)
                return r;
        *err = *agent_client_error(c);
        if (r < 0 && !err->status)
                log_warning_errno(r, "Agent %s: %s %s: %s", conn->endpoint, what, id ? id : "",
                                  err->message);
        return r;
}

static int agent_create(const AgentConn *conn, json_object *req, json_object **ret,
                        AgentClientError *err)
{
        cleanup_agent_client AgentClient *c = NULL;
        int r = open_client(conn, err, &c);
        if (r >= 0)
                r = agent_client_create(c, req, ret);
        return done(conn, c, "create", json_str(req, "id"), r, err);
}

static int agent_get(const AgentConn *conn, const char *id, json_object **ret,
                     AgentClientError *err)
{
        cleanup_agent_client AgentClient *c = NULL;
        int r = open_client(conn, err, &c);
        if (r >= 0)
                r = agent_client_get(c, id, ret);
        return done(conn, c, "get", id, r, err);
}

static int agent_list(const AgentConn *conn, const char *label, json_object **ret,
                      AgentClientError *err)
{
        const char *const labels[] = {label, NULL};
        cleanup_agent_client AgentClient *c = NULL;
        int r = open_client(conn, err, &c);
        if (r >= 0)
                r = agent_client_list(c, label ? labels : NULL, ret);
        return done(conn, c, "list", label, r, err);
}

static int agent_remove(const AgentConn *conn, const char *id, AgentClientError *err)
{
        cleanup_agent_client AgentClient *c = NULL;
        int r = open_client(conn, err, &c);
        if (r >= 0)
                r = agent_client_delete(c, id);
        return done(conn, c, "delete", id, r, err);
}

static int agent_set_timeout(const AgentConn *conn, const char *id, uint64_t deadline_us,
                             json_object **ret, AgentClientError *err)
{
        uint64_t now = now_realtime_us();
        uint64_t s = deadline_us > now ? (deadline_us - now + 999999u) / 1000000u : 1;
        cleanup_agent_client AgentClient *c = NULL;
        int r = open_client(conn, err, &c);
        if (r >= 0)
                r = agent_client_set_deadline(c, id, s, ret);
        return done(conn, c, "timeout", id, r, err);
}

static int agent_pause(const AgentConn *conn, const char *id, bool stop_deadline, json_object **ret,
                       AgentClientError *err)
{
        cleanup_agent_client AgentClient *c = NULL;
        int r = open_client(conn, err, &c);
        if (r >= 0)
                r = agent_client_pause(c, id, stop_deadline, ret);
        return done(conn, c, "pause", id, r, err);
}

static int agent_resume(const AgentConn *conn, const char *id, json_object **ret,
                        AgentClientError *err)
{
        cleanup_agent_client AgentClient *c = NULL;
        int r = open_client(conn, err, &c);
        if (r >= 0)
                r = agent_client_resume(c, id, 0, ret);
        return done(conn, c, "resume", id, r, err);
}

static int agent_image_pull(const AgentConn *conn, json_object *req, json_object **ret,
                            AgentClientError *err)
{
        cleanup_agent_client AgentClient *c = NULL;
        int r = open_client(conn, err, &c);
        if (r >= 0)
                r = agent_client_image_pull_req(c, req, ret);
        return done(conn, c, "image pull", json_str(req, "image"), r, err);
}

static int agent_template_build(const AgentConn *conn, json_object *params, int tar_fd,
                                AgentEventFn on_event, void *userdata, AgentClientError *err)
{
        cleanup_agent_client AgentClient *c = NULL;
        int r = open_client(conn, err, &c);
        if (r >= 0)
                r = agent_client_template_build(c, params, tar_fd, on_event, userdata);
        return done(conn, c, "template build", json_str(params, "tag"), r, err);
}

static int agent_pools(const AgentConn *conn, json_object **ret, AgentClientError *err)
{
        cleanup_agent_client AgentClient *c = NULL;
        int r = open_client(conn, err, &c);
        if (r >= 0)
                r = agent_client_pools(c, ret);
        return done(conn, c, "pools", NULL, r, err);
}

static int agent_pool_put(const AgentConn *conn, const char *name, json_object *req,
                          AgentClientError *err)
{
        cleanup_agent_client AgentClient *c = NULL;
        int r = open_client(conn, err, &c);
        if (r >= 0)
                r = agent_client_pool_put(c, name, req, NULL);
        return done(conn, c, "pool put", name, r, err);
}

static int agent_pool_delete(const AgentConn *conn, const char *name, AgentClientError *err)
{
        cleanup_agent_client AgentClient *c = NULL;
        int r = open_client(conn, err, &c);
        if (r >= 0)
                r = agent_client_pool_delete(c, name);
        return done(conn, c, "pool delete", name, r, err);
}

const AgentOps agent_http_ops = {
        .image_pull = agent_image_pull,
        .create = agent_create,
        .get = agent_get,
        .list = agent_list,
        .remove = agent_remove,
        .set_timeout = agent_set_timeout,
        .pause = agent_pause,
        .resume = agent_resume,
        .template_build = agent_template_build,
        .pools = agent_pools,
        .pool_put = agent_pool_put,
        .pool_delete = agent_pool_delete,
};
