/* Unit tests of the gateway's server (gateway/src/server.c, control.c,
 * envd.c, code.c, pump.c, tokens.c) in local mode, under ASan: the real
 * server and local backend in front of lib's http-server on 127.0.0.1 port 0
 * standing in for the agent, driven with libcurl as the SDK would. What is
 * checked: the agent calls each E2B request becomes, the E2B and Connect
 * shapes of the answers (streams frame by frame), the access token; and a
 * backend whose ids are not the agent's (agent_id) and that keeps the tokens
 * itself (token_get), as the cluster backend does. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "../../gateway/src/gateway.h"
#include "../../gateway/src/mcp.h"
#include "sandpit/http-server.h"
#include "sandpit/macro.h"

#define TOKEN "agent-token-0123456789"
#define ID    "sbxgw1"
#define SANDBOX                                                                                 \
        "{\"id\":\"" ID "\",\"template\":\"default\",\"state\":\"running\",\"cpu\":1,"          \
        "\"memory\":536870912,\"disk\":536870912,\"labels\":{\"sandpit.dev/e2b-template\":"     \
        "\"base\",\"sandpit.dev/e2b-secure\":\"true\",\"u\":\"1\"},\"started_at\":"             \
        "\"2026-01-01T00:00:00.000Z\",\"expires_at\":\"2026-01-01T00:05:00.000Z\",\"network\":" \
        "{\"egress\":\"deny\"}}"

static struct {
        HttpServer *agent;
        GwServer *gw;
        char gw_url[64];
        char token[64]; /* the sandbox's access token, from create */
        pthread_mutex_t lock;
        char calls[4096]; /* "METHOD path;" of every agent call */
        char last_body[4096];
        size_t last_len;
        bool gone; /* the sandbox was deleted */
} t;

static void respond(HttpRequest *req, unsigned status, const char *ct, const char *body)
{
        const char *hs[] = {"Content-Type", ct, NULL};
        char *b = body ? strdup(body) : NULL;
        http_respond_raw(req, status, (char *const *) hs, b, b ? strlen(b) : 0);
}

static void agent_handle(HttpRequest *req, void *userdata)
{
        (void) userdata;
        const char *m = http_request_method(req), *p = http_request_path(req);
        size_t len = 0;
        const char *body = http_request_body(req, &len);
        pthread_mutex_lock(&t.lock);
        size_t l = strlen(t.calls);
        snprintf(t.calls + l, sizeof(t.calls) - l, "%s %s;", m, p);
        t.last_len = len < sizeof(t.last_body) ? len : sizeof(t.last_body) - 1;
        if (body)
                memcpy(t.last_body, body, t.last_len);
        t.last_body[t.last_len] = 0;
        bool gone = t.gone;
        pthread_mutex_unlock(&t.lock);
        if (gone || strstr(p, "/nosuch")) {
                respond(req, 404, "application/json",
                        "{\"code\":404,\"message\":\"no such sandbox\"}");
        } else if (streq(p, "/v1/sandboxes") && streq(m, "POST")) {
                respond(req, 201, "application/json", SANDBOX);
        } else if (streq(p, "/v1/sandboxes/" ID) && streq(m, "GET")) {
                respond(req, 200, "application/json", SANDBOX);
        } else if (streq(p, "/v1/sandboxes/" ID) && streq(m, "DELETE")) {
                pthread_mutex_lock(&t.lock);
                t.gone = true;
                pthread_mutex_unlock(&t.lock);
                http_respond_empty(req, 204);
        } else if (streq(p, "/v1/sandboxes/" ID "/exec")) {
                respond(req, 201, "application/json", "{\"pid\":7}");
        } else if (streq(p, "/v1/sandboxes/" ID "/processes/7/stream")) {
                respond(req, 200, "application/x-ndjson",
                        "{\"type\":\"stdout\",\"data\":\"hi\\n\"}\n"
                        "{\"type\":\"exit\",\"pid\":7,\"exit_code\":3,\"signal\":0}\n");
        } else if (streq(p, "/v1/sandboxes/" ID "/code")) {
                respond(req, 200, "application/x-ndjson",
                        "{\"type\":\"result\",\"text\":\"2\",\"is_main_result\":true}\n"
                        "{\"type\":\"end_of_execution\"}\n");
        } else if (streq(p, "/v1/sandboxes/" ID "/files") && streq(m, "GET")) {
                const char *path = http_request_query(req, "path");
                if (path && streq(path, "/missing"))
                        respond(req, 404, "application/json",
                                "{\"code\":404,\"message\":\"no file\"}");
                else
                        respond(req, 200, "application/octet-stream", "file bytes");
        } else if (streq(p, "/v1/sandboxes/" ID "/files")) {
                respond(req, 200, "application/json",
                        "{\"entry\":{\"name\":\"a.txt\",\"type\":\"file\",\"path\":\"/home/user/"
                        "a.txt\"}}");
        } else {
                respond(req, 404, "application/json", "{\"code\":404,\"message\":\"no route\"}");
        }
}

typedef struct {
        long status;
        char body[8192];
        size_t len;
        char session[64]; /* Mcp-Session-Id */
} Reply;

static size_t on_header(char *data, size_t size, size_t n, void *userdata)
{
        Reply *r = userdata;
        size_t len = size * n;
        if (len > 16 && strncasecmp(data, "Mcp-Session-Id: ", 16) == 0)
                snprintf(r->session, sizeof(r->session), "%.*s", (int) strcspn(data + 16, "\r\n"),
                         data + 16);
        return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *userdata)
{
        Reply *r = userdata;
        size_t len = size * n;
        if (r->len + len < sizeof(r->body)) {
                memcpy(r->body + r->len, data, len);
                r->len += len;
                r->body[r->len] = 0;
        }
        return len;
}

/* One request to the gateway; headers: NULL-terminated "Name: value". */
static Reply call(const char *method, const char *path, const char *const *headers,
                  const char *body, size_t len)
{
        Reply r = {0};
        CURL *c = curl_easy_init();
        assert_non_null(c);
        char url[256];
        snprintf(url, sizeof(url), "%s%s", t.gw_url, path);
        struct curl_slist *hs = NULL;
        for (size_t i = 0; headers && headers[i]; i++)
                hs = curl_slist_append(hs, headers[i]);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
        if (body) {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long) len);
        }
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        curl_slist_free_all(hs);
        curl_easy_cleanup(c);
        return r;
}

static const char *calls(void)
{
        static char buf[4096];
        pthread_mutex_lock(&t.lock);
        snprintf(buf, sizeof(buf), "%s", t.calls);
        t.calls[0] = 0;
        pthread_mutex_unlock(&t.lock);
        return buf;
}

static int setup(void **state)
{
        (void) state;
        pthread_mutex_init(&t.lock, NULL);
        HttpServerConfig cfg = {.tcp_listen = "127.0.0.1:0", .token = TOKEN, .max_body = 1 << 20};
        if (http_server_start(&cfg, agent_handle, NULL, &t.agent) < 0)
                return -1;
        char url[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u", http_server_tcp_port(t.agent));
        static const char *const origins[] = {"https://app.example", NULL};
        GwConfig gc = {.listen = "127.0.0.1:0", .mcp_origins = origins};
        if (gw_backend_local_new(url, TOKEN, &gc.backend) < 0 || gw_server_start(&gc, &t.gw) < 0)
                return -1;
        snprintf(t.gw_url, sizeof(t.gw_url), "http://127.0.0.1:%u", gw_server_port(t.gw));
        return 0;
}

static int teardown(void **state)
{
        (void) state;
        gw_server_free(t.gw);
        http_server_free(t.agent);
        pthread_mutex_destroy(&t.lock);
        return 0;
}

static const char *const KEY[] = {"X-API-KEY: k", "Content-Type: application/json", NULL};

static void test_create_and_token(void **state)
{
        (void) state;
        Reply r = call("POST", "/v2/sandboxes", NULL, "{\"templateID\":\"base\"}", 21);
        assert_int_equal(r.status, 401); /* no API key */
        assert_string_equal(calls(), "");
        const char *body = "{\"templateID\":\"base\",\"metadata\":{\"u\":\"1\"}}";
        r = call("POST", "/v2/sandboxes", KEY, body, strlen(body));
        assert_int_equal(r.status, 201);
        assert_string_equal(calls(), "POST /v1/sandboxes;");
        assert_non_null(strstr(t.last_body, "\"sandpit.dev/e2b-secure\":\"true\""));
        json_object *o = json_tokener_parse(r.body);
        assert_non_null(o);
        const char *tok = json_object_get_string(json_object_object_get(o, "envdAccessToken"));
        assert_non_null(tok);
        assert_int_equal(strlen(tok), 48);
        assert_null(strstr(t.last_body, tok)); /* never sent to the agent */
        snprintf(t.token, sizeof(t.token), "%s", tok);
        assert_string_equal(json_object_get_string(json_object_object_get(o, "sandboxID")), ID);
        json_object_put(o);
        /* A bad body never reaches the agent. */
        r = call("POST", "/v2/sandboxes", KEY, "{\"timeout\":5}", 13);
        assert_int_equal(r.status, 400);
        assert_non_null(strstr(r.body, "\"code\":400"));
        assert_string_equal(calls(), "");
}

static void test_process_start_stream(void **state)
{
        (void) state;
        char tokh[128];
        snprintf(tokh, sizeof(tokh), "X-Access-Token: %s", t.token);
        const char *hs[] = {"E2b-Sandbox-Id: " ID, "E2b-Sandbox-Port: 49983", tokh,
                            "Content-Type: application/connect+json", NULL};
        const char msg[] = "{\"process\":{\"cmd\":\"/bin/bash\",\"args\":[\"-c\",\"x\"]}}";
        char env[128];
        size_t n = sizeof(msg) - 1;
        env[0] = 0;
        env[1] = (char) (n >> 24);
        env[2] = (char) (n >> 16);
        env[3] = (char) (n >> 8);
        env[4] = (char) n;
        memcpy(env + 5, msg, n);
        Reply r = call("POST", "/process.Process/Start", hs, env, n + 5);
        assert_int_equal(r.status, 200);
        assert_string_equal(calls(), "POST /v1/sandboxes/" ID "/exec;GET /v1/sandboxes/" ID
                                     "/processes/7/stream;");
        /* Frames: start, data, end, end-stream. */
        const char *want[] = {"{\"event\":{\"start\":{\"pid\":7}}}",
                              "{\"event\":{\"data\":{\"stdout\":\"aGkK\"}}}",
                              "{\"event\":{\"end\":{\"exitCode\":3,\"exited\":true,\"status\":"
                              "\"exit status 3\"}}}",
                              "{}"};
        size_t off = 0;
        for (size_t i = 0; i < 4; i++) {
                assert_true(off + 5 <= r.len);
                uint8_t flags = (uint8_t) r.body[off];
                size_t len = ((size_t) (uint8_t) r.body[off + 1] << 24) |
                             ((size_t) (uint8_t) r.body[off + 2] << 16) |
                             ((size_t) (uint8_t) r.body[off + 3] << 8) | (uint8_t) r.body[off + 4];
                assert_int_equal(flags, i == 3 ? 2 : 0);
                assert_int_equal(len, strlen(want[i]));
                assert_memory_equal(r.body + off + 5, want[i], len);
                off += 5 + len;
        }
        assert_int_equal(off, r.len);
        /* A wrong token: nothing reaches the agent's process routes. */
        const char *bad[] = {"E2b-Sandbox-Id: " ID, "E2b-Sandbox-Port: 49983",
                             "X-Access-Token: nope", "Content-Type: application/connect+json",
                             NULL};
        r = call("POST", "/process.Process/Start", bad, env, n + 5);
        assert_int_equal(r.status, 401);
        assert_non_null(strstr(r.body, "\"code\":\"unauthenticated\""));
        assert_string_equal(calls(), "");
}

static void test_execute_and_files(void **state)
{
        (void) state;
        char tokh[128];
        snprintf(tokh, sizeof(tokh), "X-Access-Token: %s", t.token);
        const char *code[] = {"E2b-Sandbox-Id: " ID, "E2b-Sandbox-Port: 49999", tokh,
                              "Content-Type: application/json", NULL};
        Reply r = call("POST", "/execute", code, "{\"code\":\"1+1\"}", 14);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "{\"type\":\"result\",\"text\":\"2\",\"is_main_result\":true}\n"
                                    "{\"type\":\"end_of_execution\"}\n");
        assert_string_equal(calls(), "POST /v1/sandboxes/" ID "/code;");
        assert_string_equal(t.last_body, "{\"code\":\"1+1\"}");

        const char *envd[] = {"E2b-Sandbox-Id: " ID, "E2b-Sandbox-Port: 49983", tokh, NULL};
        r = call("GET", "/files?path=%2Fhome%2Fuser%2Fa.txt", envd, NULL, 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "file bytes");
        r = call("GET", "/files?path=%2Fmissing", envd, NULL, 0);
        assert_int_equal(r.status, 404);
        assert_non_null(strstr(r.body, "\"code\":404"));
        calls();

        const char *up[] = {"E2b-Sandbox-Id: " ID, "E2b-Sandbox-Port: 49983", tokh,
                            "Content-Type: multipart/form-data; boundary=XyZ", NULL};
        const char mp[] = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
                          "filename=\"/home/user/a.txt\"\r\nContent-Type: "
                          "application/octet-stream\r\n\r\nhi\r\nthere\r\n--XyZ--\r\n";
        r = call("POST", "/files", up, mp, sizeof(mp) - 1);
        assert_int_equal(r.status, 200);
        assert_string_equal(calls(), "PUT /v1/sandboxes/" ID "/files;");
        assert_int_equal(t.last_len, 9);
        assert_string_equal(t.last_body, "hi\r\nthere");
        assert_string_equal(
                r.body, "[{\"name\":\"a.txt\",\"type\":\"file\",\"path\":\"/home/user/a.txt\"}]");
        const char broken[] = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nhi";
        r = call("POST", "/files?path=x", up, broken, sizeof(broken) - 1);
        assert_int_equal(r.status, 400);
        assert_string_equal(calls(), "");
}

static void test_kill(void **state)
{
        (void) state;
        Reply r = call("DELETE", "/sandboxes/" ID, KEY, NULL, 0);
        assert_int_equal(r.status, 204);
        assert_string_equal(calls(), "DELETE /v1/sandboxes/" ID ";");
        r = call("DELETE", "/sandboxes/" ID, KEY, NULL, 0);
        assert_int_equal(r.status, 404);
        assert_non_null(strstr(r.body, "\"code\":404"));
        /* The token went with the sandbox: envd asks the agent, which has no such sandbox. */
        char tokh[128];
        snprintf(tokh, sizeof(tokh), "X-Access-Token: %s", t.token);
        const char *envd[] = {"E2b-Sandbox-Id: " ID, "E2b-Sandbox-Port: 49983", tokh, NULL};
        calls();
        r = call("GET", "/files?path=a", envd, NULL, 0);
        assert_int_equal(r.status, 404);
        assert_string_equal(calls(), "GET /v1/sandboxes/" ID ";");
}

/* A backend whose ids are not the agent's (as the cluster backend's): "alias1"
 * is the agent's ID, "ghost" has a token but no running sandbox; tokens are
 * the backend's (token_get), not the server's. Everything else is the local
 * backend's. */
#define ALIAS_TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef"
static GwBackend inner;

static int w_get(void *b, const char *id, json_object **ret, char *err, size_t errlen)
{
        (void) b;
        if (streq(id, "alias1"))
                return inner.ops->get(inner.data, ID, ret, err, errlen);
        snprintf(err, errlen, "sandbox %s not found", id);
        return -ENOENT;
}

static int w_agent_id(void *b, const char *id, char *ret, size_t retlen, char *err, size_t errlen)
{
        (void) b;
        if (!streq(id, "alias1")) {
                snprintf(err, errlen, "sandbox %s is not running", id);
                return -ENOENT;
        }
        snprintf(ret, retlen, "%s", ID);
        return 0;
}

static int w_agent(void *b, const char *id, AgentClient **ret, char *err, size_t errlen)
{
        (void) b;
        assert_string_equal(id, ID); /* the data plane speaks the agent's id */
        return inner.ops->agent(inner.data, id, ret, err, errlen);
}

static int w_token_get(void *b, const char *id, char *ret, size_t retlen)
{
        (void) b;
        if (!streq(id, "alias1") && !streq(id, "ghost"))
                return -ENOENT;
        snprintf(ret, retlen, "%s", ALIAS_TOKEN);
        return 0;
}

static void w_free(void *b)
{
        (void) b;
        gw_backend_done(&inner);
}

static const GwBackendOps wrapped_ops = {
        .get = w_get,
        .agent = w_agent,
        .agent_id = w_agent_id,
        .token_get = w_token_get,
        .free = w_free,
};

static void test_agent_ids_and_backend_tokens(void **state)
{
        (void) state;
        char url[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u", http_server_tcp_port(t.agent));
        GwConfig gc = {.listen = "127.0.0.1:0", .backend = {.ops = &wrapped_ops}};
        assert_int_equal(gw_backend_local_new(url, TOKEN, &inner), 0);
        GwServer *gw = NULL;
        assert_int_equal(gw_server_start(&gc, &gw), 0);
        char saved[64];
        snprintf(saved, sizeof(saved), "%s", t.gw_url);
        snprintf(t.gw_url, sizeof(t.gw_url), "http://127.0.0.1:%u", gw_server_port(gw));
        pthread_mutex_lock(&t.lock);
        t.gone = false;
        pthread_mutex_unlock(&t.lock);
        calls();

        const char *ok[] = {"E2b-Sandbox-Id: alias1", "E2b-Sandbox-Port: 49983",
                            "X-Access-Token: " ALIAS_TOKEN, NULL};
        Reply r = call("GET", "/files?path=/a", ok, NULL, 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "file bytes");
        assert_string_equal(calls(), "GET /v1/sandboxes/" ID "/files;");
        /* The backend's token is the one checked. */
        const char *wrong[] = {"E2b-Sandbox-Id: alias1", "E2b-Sandbox-Port: 49983",
                               "X-Access-Token: " ID, NULL};
        r = call("GET", "/files?path=/a", wrong, NULL, 0);
        assert_int_equal(r.status, 401);
        assert_string_equal(calls(), "");
        /* Authorised, but the backend has no running sandbox: 404 in each
         * route's shape, and the agent is never asked. */
        const char *ghost[] = {"E2b-Sandbox-Id: ghost", "E2b-Sandbox-Port: 49983",
                               "X-Access-Token: " ALIAS_TOKEN, NULL};
        r = call("GET", "/files?path=/a", ghost, NULL, 0);
        assert_int_equal(r.status, 404);
        assert_non_null(strstr(r.body, "\"code\":404"));
        const char *rpc[] = {"E2b-Sandbox-Id: ghost", "E2b-Sandbox-Port: 49983",
                             "X-Access-Token: " ALIAS_TOKEN, "Content-Type: application/json",
                             NULL};
        const char *stat = "{\"path\":\"/a\"}";
        r = call("POST", "/filesystem.Filesystem/Stat", rpc, stat, strlen(stat));
        assert_int_equal(r.status, 404);
        assert_non_null(strstr(r.body, "\"code\":\"not_found\""));
        assert_non_null(strstr(r.body, "ghost is not running"));
        assert_string_equal(calls(), "");

        gw_server_free(gw);
        snprintf(t.gw_url, sizeof(t.gw_url), "%s", saved);
}

/* MCP at /mcp: Origin, the session header, a tool through the backend. */
static void test_mcp(void **state)
{
        (void) state;
        pthread_mutex_lock(&t.lock);
        t.gone = false; /* test_kill deleted it */
        pthread_mutex_unlock(&t.lock);
        static const char init[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\","
                                   "\"params\":{\"protocolVersion\":\"2025-11-25\"}}";
        const char *evil[] = {"Content-Type: application/json", "Origin: https://evil.example",
                              NULL};
        Reply r = call("POST", "/mcp", evil, init, strlen(init));
        assert_int_equal(r.status, 403);
        const char *ok[] = {"Content-Type: application/json", "Origin: https://app.example",
                            "Accept: application/json, text/event-stream", NULL};
        r = call("POST", "/mcp", ok, init, strlen(init));
        assert_int_equal(r.status, 200);
        assert_int_equal(strlen(r.session), MCP_SESSION_ID_LEN);
        char sid[96];
        snprintf(sid, sizeof(sid), "Mcp-Session-Id: %s", r.session);
        const char *in[] = {"Content-Type: application/json",
                            "Accept: application/json, text/event-stream", sid, NULL};
        calls();
        static const char create[] =
                "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{"
                "\"name\":\"create_sandbox\",\"arguments\":{\"metadata\":{\"u\":\"1\"}}}}";
        r = call("POST", "/mcp", in, create, strlen(create));
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "event: message\ndata: {"));
        if (!strstr(r.body, "\"sandbox_id\":\"" ID "\""))
                fail_msg("no sandbox in %s", r.body);
        assert_string_equal(calls(), "POST /v1/sandboxes;");
        assert_non_null(strstr(t.last_body, "\"labels\":{\"u\":\"1\"}"));
        /* DELETE ends the session; it made no sandbox of its own to delete. */
        r = call("DELETE", "/mcp", in, NULL, 0);
        assert_int_equal(r.status, 204);
        assert_string_equal(calls(), "");
        static const char ping[] = "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}";
        r = call("POST", "/mcp", in, ping, strlen(ping));
        assert_int_equal(r.status, 404);
}

/* An HTTP session unused for its idle time ends at the next request to
 * /mcp, and its sandbox with it. */
static void test_mcp_idle(void **state)
{
        (void) state;
        pthread_mutex_lock(&t.lock);
        t.gone = false;
        pthread_mutex_unlock(&t.lock);
        char agent_url[64], saved[64];
        snprintf(agent_url, sizeof(agent_url), "http://127.0.0.1:%u",
                 http_server_tcp_port(t.agent));
        GwConfig gc = {.listen = "127.0.0.1:0", .mcp_idle_s = 1};
        GwServer *gw = NULL;
        assert_int_equal(gw_backend_local_new(agent_url, TOKEN, &gc.backend), 0);
        assert_int_equal(gw_server_start(&gc, &gw), 0);
        snprintf(saved, sizeof(saved), "%s", t.gw_url);
        snprintf(t.gw_url, sizeof(t.gw_url), "http://127.0.0.1:%u", gw_server_port(gw));
        static const char init[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\","
                                   "\"params\":{\"protocolVersion\":\"2025-11-25\"}}";
        const char *json[] = {"Content-Type: application/json", NULL};
        Reply r = call("POST", "/mcp", json, init, strlen(init));
        assert_int_equal(r.status, 200);
        char sid[96];
        snprintf(sid, sizeof(sid), "Mcp-Session-Id: %s", r.session);
        const char *in[] = {"Content-Type: application/json", sid, NULL};
        static const char metrics[] = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\","
                                      "\"params\":{\"name\":\"get_metrics\"}}";
        calls();
        r = call("POST", "/mcp", in, metrics, strlen(metrics));
        assert_int_equal(r.status, 200); /* JSON: no text/event-stream in Accept */
        assert_non_null(strstr(calls(), "POST /v1/sandboxes;"));
        /* Other requests come (no session: 400) until the idle one is reaped. */
        static const char ping[] = "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}";
        bool deleted = false;
        for (int i = 0; i < 400 && !deleted; i++) {
                assert_int_equal(call("POST", "/mcp", json, ping, strlen(ping)).status, 400);
                deleted = strstr(calls(), "DELETE /v1/sandboxes/" ID ";") != NULL;
                if (!deleted)
                        usleep(50 * 1000);
        }
        assert_true(deleted);
        assert_int_equal(call("POST", "/mcp", in, ping, strlen(ping)).status, 404);
        gw_server_free(gw);
        snprintf(t.gw_url, sizeof(t.gw_url), "%s", saved);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_create_and_token),
                cmocka_unit_test(test_process_start_stream),
                cmocka_unit_test(test_execute_and_files),
                cmocka_unit_test(test_kill),
                cmocka_unit_test(test_agent_ids_and_backend_tokens),
                cmocka_unit_test(test_mcp),
                cmocka_unit_test(test_mcp_idle),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
