/* libFuzzer harness for the MCP core: the bytes are one message (or batch)
 * from a client, handled by a fresh session before and after initialize (in
 * a 2025-03-26 session, where batches are taken), over a fake backend whose
 * agent cannot be reached. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "mcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int f_create(void *b, json_object *req, json_object **ret, char *err, size_t errlen)
{
        (void) b;
        (void) req;
        (void) err;
        (void) errlen;
        *ret = json_tokener_parse("{\"id\":\"sbx1\",\"state\":\"running\",\"labels\":{}}");
        return *ret ? 0 : -ENOMEM;
}

static int f_get(void *b, const char *id, json_object **ret, char *err, size_t errlen)
{
        (void) b;
        (void) id;
        return f_create(b, NULL, ret, err, errlen);
}

static int f_list(void *b, json_object **ret, char *err, size_t errlen)
{
        (void) b;
        (void) err;
        (void) errlen;
        *ret = json_tokener_parse("[{\"id\":\"sbx1\",\"labels\":{\"a\":\"b\"}}]");
        return *ret ? 0 : -ENOMEM;
}

static int f_id(void *b, const char *id, char *err, size_t errlen)
{
        (void) b;
        snprintf(err, errlen, "sandbox %s not found", id);
        return strcmp(id, "sbx1") == 0 ? 0 : -ENOENT;
}

static int f_timeout(void *b, const char *id, uint64_t s, char *err, size_t errlen)
{
        (void) s;
        return f_id(b, id, err, errlen);
}

static int f_resume(void *b, const char *id, uint64_t s, json_object **ret, char *err,
                    size_t errlen)
{
        (void) s;
        int r = f_id(b, id, err, errlen);
        return r < 0 ? r : f_get(b, id, ret, err, errlen);
}

static int f_metrics(void *b, const char *id, int64_t s, int64_t e, json_object **ret, char *err,
                     size_t errlen)
{
        (void) s;
        (void) e;
        return f_resume(b, id, 0, ret, err, errlen);
}

static int f_agent(void *b, const char *id, AgentClient **ret, char *err, size_t errlen)
{
        (void) b;
        (void) id;
        (void) ret;
        snprintf(err, errlen, "no agent");
        return -ECONNREFUSED;
}

static const GwBackendOps ops = {.create = f_create,
                                 .get = f_get,
                                 .list = f_list,
                                 .remove = f_id,
                                 .set_timeout = f_timeout,
                                 .pause = f_id,
                                 .resume = f_resume,
                                 .metrics = f_metrics,
                                 .agent = f_agent};

static void one(McpSession *s, json_object *msg)
{
        McpIo io = {0};
        json_object *resp = NULL;
        if (mcp_session_handle(s, msg, &io, &resp) == 0)
                json_object_put(resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const GwBackend backend = {.ops = &ops};
        static const char init[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\","
                                   "\"params\":{\"protocolVersion\":\"2025-03-26\"}}";
        json_object *msg = NULL, *perr = NULL;
        int r = mcp_parse((const char *) data, size, &msg, &perr);
        json_object_put(perr);
        if (r < 0)
                return 0;
        (void) mcp_message_kind(msg);
        McpConfig cfg = {.backend = &backend};
        McpSession *s = NULL;
        if (mcp_session_new(&cfg, &s) == 0) {
                one(s, msg);
                json_object *i = json_tokener_parse(init);
                one(s, i);
                json_object_put(i);
                one(s, msg);
                mcp_session_free(s);
        }
        json_object_put(msg);
        return 0;
}
