/* A backend as a caller bound to one namespace sees it (docs/auth.md): create
 * labels the sandbox with the namespace (GW_LABEL_NAMESPACE), list shows only
 * that namespace's sandboxes, and every op on one sandbox answers 404 for
 * another namespace's, exactly as for one that does not exist, so nothing
 * says it is there. The data plane's ops (agent, agent_address) answer the
 * same 404 for another namespace's sandbox: MCP's tools reach sandboxes
 * through them with no access token. Where the backend's ids are not the
 * agent's (the cluster backend: a Sandbox's name and its status.sandboxID),
 * agent_id checks the name and the data plane's ops the agent's id. (The
 * gateway's own data plane, envd and the code interpreter, uses the server's
 * backend: the sandbox's access token guards it.) */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gw-internal.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"

#define INNER(b) (((struct GwScope *) (b))->inner)
#define NS(b)    (((struct GwScope *) (b))->ns)

static bool in_namespace(json_object *sbx, const char *ns)
{
        const char *v = json_str(json_obj(sbx, "labels"), GW_LABEL_NAMESPACE);
        return v && streq(v, ns);
}

static int not_found(const char *id, char *err, size_t errlen)
{
        snprintf(err, errlen, "sandbox %s not found", id);
        return -ENOENT;
}

/* 0 when sandbox id is in the scope's namespace. */
static int check(void *b, const char *id, char *err, size_t errlen)
{
        cleanup_json json_object *sbx = NULL;
        int r = INNER(b).ops->get(INNER(b).data, id, &sbx, err, errlen);
        if (r < 0)
                return r;
        return in_namespace(sbx, NS(b)) ? 0 : not_found(id, err, errlen);
}

static int s_create(void *b, json_object *agent_req, json_object **ret, char *err, size_t errlen)
{
        json_object *labels = json_obj(agent_req, "labels");
        if (!labels) {
                labels = json_object_new_object();
                if (!labels || json_object_object_add(agent_req, "labels", labels) < 0) {
                        json_object_put(labels);
                        return -ENOMEM;
                }
        }
        if (json_object_object_add(labels, GW_LABEL_NAMESPACE, json_object_new_string(NS(b))) < 0)
                return -ENOMEM;
        return INNER(b).ops->create(INNER(b).data, agent_req, ret, err, errlen);
}

static int s_get(void *b, const char *id, json_object **ret, char *err, size_t errlen)
{
        cleanup_json json_object *sbx = NULL;
        int r = INNER(b).ops->get(INNER(b).data, id, &sbx, err, errlen);
        if (r < 0)
                return r;
        if (!in_namespace(sbx, NS(b)))
                return not_found(id, err, errlen);
        *ret = TAKE_PTR(sbx);
        return 0;
}

static int s_list(void *b, json_object **ret, char *err, size_t errlen)
{
        cleanup_json json_object *all = NULL;
        int r = INNER(b).ops->list(INNER(b).data, &all, err, errlen);
        if (r < 0)
                return r;
        cleanup_json json_object *mine = json_object_new_array();
        if (!mine)
                return -ENOMEM;
        for (size_t i = 0; i < json_object_array_length(all); i++) {
                json_object *s = json_object_array_get_idx(all, i);
                if (in_namespace(s, NS(b)) && json_object_array_add(mine, json_object_get(s)) < 0) {
                        json_object_put(s);
                        return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(mine);
        return 0;
}

static int s_remove(void *b, const char *id, char *err, size_t errlen)
{
        int r = check(b, id, err, errlen);
        return r < 0 ? r : INNER(b).ops->remove(INNER(b).data, id, err, errlen);
}

static int s_set_timeout(void *b, const char *id, uint64_t timeout_s, char *err, size_t errlen)
{
        int r = check(b, id, err, errlen);
        return r < 0 ? r : INNER(b).ops->set_timeout(INNER(b).data, id, timeout_s, err, errlen);
}

static int s_pause(void *b, const char *id, char *err, size_t errlen)
{
        int r = check(b, id, err, errlen);
        return r < 0 ? r : INNER(b).ops->pause(INNER(b).data, id, err, errlen);
}

static int s_resume(void *b, const char *id, uint64_t timeout_s, json_object **ret, char *err,
                    size_t errlen)
{
        int r = check(b, id, err, errlen);
        return r < 0 ? r : INNER(b).ops->resume(INNER(b).data, id, timeout_s, ret, err, errlen);
}

static int s_metrics(void *b, const char *id, int64_t start, int64_t end, json_object **ret,
                     char *err, size_t errlen)
{
        int r = check(b, id, err, errlen);
        return r < 0 ? r : INNER(b).ops->metrics(INNER(b).data, id, start, end, ret, err, errlen);
}

/* 0 when the sandbox the agent knows as agent_id is in the scope's
 * namespace: for a backend whose ids are not the agent's (agent_id), the
 * data plane's ops take the agent's id, which get() does not know. */
static int check_agent_id(void *b, const char *agent_id, char *err, size_t errlen)
{
        if (!INNER(b).ops->agent_id)
                return check(b, agent_id, err, errlen);
        cleanup_json json_object *mine = NULL;
        int r = s_list(b, &mine, err, errlen);
        if (r < 0)
                return r;
        for (size_t i = 0; i < json_object_array_length(mine); i++) {
                const char *aid = json_str(json_object_array_get_idx(mine, i), "agent_id");
                if (aid && streq(aid, agent_id))
                        return 0;
        }
        return not_found(agent_id, err, errlen);
}

static int s_agent_id(void *b, const char *id, char *ret, size_t retlen, char *err, size_t errlen)
{
        int r = check(b, id, err, errlen);
        return r < 0 ? r : INNER(b).ops->agent_id(INNER(b).data, id, ret, retlen, err, errlen);
}

static int s_agent(void *b, const char *agent_id, AgentClient **ret, char *err, size_t errlen)
{
        int r = check_agent_id(b, agent_id, err, errlen);
        return r < 0 ? r : INNER(b).ops->agent(INNER(b).data, agent_id, ret, err, errlen);
}

static int s_agent_address(void *b, const char *agent_id, char **url, char **token, char *err,
                           size_t errlen)
{
        int r = check_agent_id(b, agent_id, err, errlen);
        return r < 0 ? r
                     : INNER(b).ops->agent_address(INNER(b).data, agent_id, url, token, err,
                                                   errlen);
}

static const GwBackendOps scoped_ops = {
        .create = s_create,
        .get = s_get,
        .list = s_list,
        .remove = s_remove,
        .set_timeout = s_set_timeout,
        .pause = s_pause,
        .resume = s_resume,
        .metrics = s_metrics,
        .agent = s_agent,
        .agent_address = s_agent_address,
        .agent_id = s_agent_id,
        .free = NULL, /* a view: the server owns the backend */
};

void gw_scope_backend(const GwBackend *inner, const char *ns, GwScope *scope, GwBackend *ret)
{
        if (!ns[0]) {
                *ret = *inner;
                return;
        }
        scope->inner = *inner;
        if (inner->ops->in_namespace)
                inner->ops->in_namespace(inner->data, ns, scope->view, &scope->inner);
        scope->ns = ns;
        /* The optional ops as the inner backend has them. */
        scope->ops = scoped_ops;
        if (!scope->inner.ops->agent_address)
                scope->ops.agent_address = NULL;
        if (!scope->inner.ops->agent_id)
                scope->ops.agent_id = NULL;
        ret->ops = &scope->ops;
        ret->data = scope;
}

void gw_scope_request(GwRequest *r)
{
        gw_scope_backend(&r->gw->backend, r->ns, &r->scope, &r->backend);
}
