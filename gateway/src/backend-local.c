/* The gateway's local backend (gateway.h): the sandboxes of one agent, through
 * lib's agent client, a client per call since the ops run on many threads. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "sandpit/macro.h"

typedef struct {
        char *url;
        char *token;
} Local;

static int client(Local *l, AgentClient **ret, char *err, size_t errlen)
{
        int r = agent_client_new(l->url, l->token, ret);
        if (r < 0)
                snprintf(err, errlen, "cannot reach the agent: %s", strerror(-r));
        return r;
}

/* Copies the agent's message into err after a failed call; when the agent
 * did not answer, says which agent could not be reached. */
static int failed(Local *l, AgentClient *c, int r, char *err, size_t errlen)
{
        const AgentClientError *e = agent_client_error(c);
        if (e->status == 0)
                snprintf(err, errlen, "cannot reach the agent at %s: %s", l->url, strerror(-r));
        else
                snprintf(err, errlen, "%s", e->message[0] ? e->message : strerror(-r));
        return r;
}

#define WITH_CLIENT(l, c, err, errlen)                        \
        cleanup_agent_client AgentClient *c = NULL;           \
        do {                                                  \
                int cr_ = client((l), &(c), (err), (errlen)); \
                if (cr_ < 0)                                  \
                        return cr_;                           \
        } while (0)

static int local_create(void *b, json_object *req, json_object **ret, char *err, size_t errlen)
{
        WITH_CLIENT(b, c, err, errlen);
        int r = agent_client_create(c, req, ret);
        return r < 0 ? failed(b, c, r, err, errlen) : 0;
}

static int local_get(void *b, const char *id, json_object **ret, char *err, size_t errlen)
{
        WITH_CLIENT(b, c, err, errlen);
        int r = agent_client_get(c, id, ret);
        return r < 0 ? failed(b, c, r, err, errlen) : 0;
}

static int local_list(void *b, json_object **ret, char *err, size_t errlen)
{
        WITH_CLIENT(b, c, err, errlen);
        int r = agent_client_list(c, NULL, ret);
        return r < 0 ? failed(b, c, r, err, errlen) : 0;
}

static int local_remove(void *b, const char *id, char *err, size_t errlen)
{
        WITH_CLIENT(b, c, err, errlen);
        int r = agent_client_delete(c, id);
        return r < 0 ? failed(b, c, r, err, errlen) : 0;
}

static int local_set_timeout(void *b, const char *id, uint64_t timeout_s, char *err, size_t errlen)
{
        WITH_CLIENT(b, c, err, errlen);
        int r = agent_client_set_deadline(c, id, timeout_s, NULL);
        return r < 0 ? failed(b, c, r, err, errlen) : 0;
}

static int local_pause(void *b, const char *id, char *err, size_t errlen)
{
        WITH_CLIENT(b, c, err, errlen);
        int r = agent_client_pause(c, id, true, NULL);
        return r < 0 ? failed(b, c, r, err, errlen) : 0;
}

static int local_resume(void *b, const char *id, uint64_t timeout_s, json_object **ret, char *err,
                        size_t errlen)
{
        WITH_CLIENT(b, c, err, errlen);
        int r = agent_client_resume(c, id, timeout_s, ret);
        return r < 0 ? failed(b, c, r, err, errlen) : 0;
}

static int local_metrics(void *b, const char *id, int64_t start, int64_t end, json_object **ret,
                         char *err, size_t errlen)
{
        WITH_CLIENT(b, c, err, errlen);
        int r = agent_client_metrics(c, id, start, end, ret);
        return r < 0 ? failed(b, c, r, err, errlen) : 0;
}

static int local_agent(void *b, const char *id, AgentClient **ret, char *err, size_t errlen)
{
        (void) id;
        return client(b, ret, err, errlen);
}

static int local_agent_address(void *b, const char *id, char **url, char **token, char *err,
                               size_t errlen)
{
        Local *l = b;
        cleanup_agent_client AgentClient *c = NULL;
        /* The sandbox must exist here: an unknown one is a 404, not the
         * agent's answer to a proxied request. */
        int r = client(l, &c, err, errlen);
        if (r < 0)
                return r;
        json_object *info = NULL;
        r = agent_client_get(c, id, &info);
        if (r < 0)
                return failed(l, c, r, err, errlen);
        json_object_put(info);
        char *u = strdup(l->url), *t = l->token ? strdup(l->token) : NULL;
        if (!u || (l->token && !t)) {
                free(u);
                free(t);
                return -ENOMEM;
        }
        *url = u;
        *token = t;
        return 0;
}

static void local_free(void *b)
{
        Local *l = b;
        if (!l)
                return;
        free(l->url);
        if (l->token)
                explicit_bzero(l->token, strlen(l->token));
        free(l->token);
        free(l);
}

static const GwBackendOps local_ops = {
        .create = local_create,
        .get = local_get,
        .list = local_list,
        .remove = local_remove,
        .set_timeout = local_set_timeout,
        .pause = local_pause,
        .resume = local_resume,
        .metrics = local_metrics,
        .agent = local_agent,
        .agent_address = local_agent_address,
        .free = local_free,
};

int gw_backend_local_new(const char *agent_url, const char *token, GwBackend *ret)
{
        Local *l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->url = strdup(agent_url);
        l->token = token ? strdup(token) : NULL;
        if (!l->url || (token && !l->token)) {
                local_free(l);
                return -ENOMEM;
        }
        *ret = (GwBackend){.ops = &local_ops, .data = l};
        return 0;
}

void gw_backend_done(GwBackend *b)
{
        if (b->ops && b->ops->free)
                b->ops->free(b->data);
        *b = (GwBackend){0};
}
