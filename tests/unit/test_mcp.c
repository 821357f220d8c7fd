/* The MCP core (gateway/src/mcp.c, mcp-tools.c, mcp-stdio.c) in front of a
 * fake backend: JSON-RPC errors (bad JSON, invalid requests, unknown methods,
 * wrong params), revision negotiation, batches, tools/list, argument checks
 * as isError results that make nothing, the session sandbox made once and
 * deleted at the end, cancellation, and the stdio transport over pipes. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "mcp-internal.h"
#include "mcp-stdio.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

/* ---- a fake backend: counts, and one sandbox "sbx1" ---- */

typedef struct {
        int creates;
        int removes;
        char removed[64];
        json_object *last_create;
        bool agent_refused;
} Fake;

static int fake_create(void *b, json_object *req, json_object **ret, char *err, size_t errlen)
{
        (void) err;
        (void) errlen;
        Fake *f = b;
        f->creates++;
        json_object_put(f->last_create);
        f->last_create = json_object_get(req);
        *ret = json_tokener_parse("{\"id\":\"sbx1\",\"template\":\"default\",\"state\":\"running\","
                                  "\"labels\":{}}");
        return 0;
}

static int fake_get(void *b, const char *id, json_object **ret, char *err, size_t errlen)
{
        (void) b;
        if (!streq(id, "sbx1")) {
                snprintf(err, errlen, "sandbox %s not found", id);
                return -ENOENT;
        }
        *ret = json_tokener_parse(
                "{\"id\":\"sbx1\",\"template\":\"default\",\"state\":\"running\"}");
        return 0;
}

static int fake_list(void *b, json_object **ret, char *err, size_t errlen)
{
        (void) b;
        (void) err;
        (void) errlen;
        *ret = json_tokener_parse(
                "[{\"id\":\"sbx1\",\"template\":\"default\",\"state\":\"running\","
                "\"labels\":{\"team\":\"a\"}},{\"id\":\"sbx2\",\"state\":"
                "\"paused\",\"labels\":{\"team\":\"b\"}}]");
        return 0;
}

static int fake_remove(void *b, const char *id, char *err, size_t errlen)
{
        (void) err;
        (void) errlen;
        Fake *f = b;
        f->removes++;
        snprintf(f->removed, sizeof(f->removed), "%s", id);
        return 0;
}

static int fake_set_timeout(void *b, const char *id, uint64_t s, char *err, size_t errlen)
{
        (void) b;
        (void) s;
        if (streq(id, "sbx1"))
                return 0;
        snprintf(err, errlen, "sandbox %s not found", id);
        return -ENOENT;
}

static int fake_agent(void *b, const char *id, AgentClient **ret, char *err, size_t errlen)
{
        (void) id;
        (void) ret;
        Fake *f = b;
        f->agent_refused = true;
        snprintf(err, errlen, "cannot reach the agent: Connection refused");
        return -ECONNREFUSED;
}

static const GwBackendOps fake_ops = {
        .create = fake_create,
        .get = fake_get,
        .list = fake_list,
        .remove = fake_remove,
        .set_timeout = fake_set_timeout,
        .agent = fake_agent,
};

typedef struct {
        Fake fake;
        GwBackend backend;
        McpSession *s;
} Fixture;

static int setup(void **state)
{
        Fixture *fx = calloc(1, sizeof(*fx));
        fx->backend = (GwBackend){.ops = &fake_ops, .data = &fx->fake};
        McpConfig cfg = {.backend = &fx->backend};
        assert_int_equal(mcp_session_new(&cfg, &fx->s), 0);
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        Fixture *fx = *state;
        mcp_session_free(fx->s);
        json_object_put(fx->fake.last_create);
        free(fx);
        return 0;
}

/* Handles text, answers the response (NULL when none). */
static json_object *rpc(McpSession *s, const char *text)
{
        json_object *msg = NULL, *perr = NULL;
        int r = mcp_parse(text, strlen(text), &msg, &perr);
        if (r == -EBADMSG)
                return perr;
        assert_int_equal(r, 0);
        McpIo io = {0};
        json_object *resp = NULL;
        assert_int_equal(mcp_session_handle(s, msg, &io, &resp), 0);
        json_object_put(msg);
        return resp;
}

static int error_code(json_object *resp)
{
        return (int) json_int(json_obj(resp, "error"), "code", 0);
}

static void init(McpSession *s, const char *version)
{
        char buf[256];
        snprintf(buf, sizeof(buf),
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
                 "\"protocolVersion\":\"%s\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\","
                 "\"version\":\"1\"}}}",
                 version);
        cleanup_json json_object *r = rpc(s, buf);
        assert_non_null(json_obj(r, "result"));
        json_object_put(rpc(s, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"));
}

static void test_protocol_errors(void **state)
{
        Fixture *fx = *state;
        json_object *r = rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":1,");
        assert_int_equal(error_code(r), MCP_PARSE_ERROR);
        assert_true(json_object_is_type(json_field(r, "id"), json_type_null));
        json_object_put(r);
        r = rpc(fx->s, "{} trailing");
        assert_int_equal(error_code(r), MCP_PARSE_ERROR);
        json_object_put(r);
        /* Not JSON-RPC 2.0, no method, a bad id type, params not an object. */
        r = rpc(fx->s, "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}");
        assert_int_equal(error_code(r), MCP_INVALID_REQUEST);
        json_object_put(r);
        r = rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":1}");
        assert_int_equal(error_code(r), MCP_INVALID_REQUEST);
        json_object_put(r);
        r = rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"ping\"}");
        assert_int_equal(error_code(r), MCP_INVALID_REQUEST);
        json_object_put(r);
        r = rpc(fx->s, "42");
        assert_int_equal(error_code(r), MCP_INVALID_REQUEST);
        json_object_put(r);
        r = rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":[]}");
        assert_int_equal(error_code(r), MCP_INVALID_PARAMS);
        json_object_put(r);
        /* Ping works before initialize; other methods do not. */
        r = rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}");
        assert_non_null(json_obj(r, "result"));
        assert_string_equal(json_str(r, "id"), "p");
        json_object_put(r);
        r = rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}");
        assert_int_equal(error_code(r), MCP_INVALID_REQUEST);
        json_object_put(r);
        /* initialize without a version. */
        r = rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"initialize\",\"params\":{}}");
        assert_int_equal(error_code(r), MCP_INVALID_PARAMS);
        json_object_put(r);
        init(fx->s, "2025-11-25");
        r = rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"resources/list\"}");
        assert_int_equal(error_code(r), MCP_METHOD_NOT_FOUND);
        assert_int_equal(json_int(r, "id", 0), 4);
        json_object_put(r);
        /* A second initialize, tools/call without a name, an unknown tool,
         * arguments that are not an object. */
        r = rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"initialize\",\"params\":{"
                       "\"protocolVersion\":\"2025-11-25\"}}");
        assert_int_equal(error_code(r), MCP_INVALID_REQUEST);
        json_object_put(r);
        r = rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":{}}");
        assert_int_equal(error_code(r), MCP_INVALID_PARAMS);
        json_object_put(r);
        r = rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{"
                       "\"name\":\"nope\"}}");
        assert_int_equal(error_code(r), MCP_INVALID_PARAMS);
        json_object_put(r);
        r = rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{"
                       "\"name\":\"run_code\",\"arguments\":[]}}");
        assert_int_equal(error_code(r), MCP_INVALID_PARAMS);
        json_object_put(r);
        /* Notifications and responses get no answer. */
        assert_null(rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/whatever\"}"));
        assert_null(rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}"));
        assert_int_equal(fx->fake.creates, 0);
}

static void test_negotiation(void **state)
{
        Fixture *fx = *state;
        /* An unknown revision gets our newest; a known one is kept. */
        cleanup_json json_object *r =
                rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
                           "\"protocolVersion\":\"2030-01-01\",\"capabilities\":{}}}");
        json_object *res = json_obj(r, "result");
        assert_string_equal(json_str(res, "protocolVersion"), MCP_PROTOCOL_LATEST);
        assert_non_null(json_obj(json_obj(res, "capabilities"), "tools"));
        assert_string_equal(json_str(json_obj(res, "serverInfo"), "name"), "sandpit");
        assert_true(mcp_protocol_supported("2025-06-18"));
        assert_true(mcp_protocol_supported("2025-03-26"));
        assert_false(mcp_protocol_supported("2025-01-01"));
        assert_false(mcp_protocol_supported(NULL));
}

static void test_batches(void **state)
{
        Fixture *fx = *state;
        /* 2025-11-25 has no batches. */
        init(fx->s, "2025-11-25");
        json_object *r = rpc(fx->s, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]");
        assert_int_equal(error_code(r), MCP_INVALID_REQUEST);
        json_object_put(r);

        McpConfig cfg = {.backend = &fx->backend};
        McpSession *old = NULL;
        assert_int_equal(mcp_session_new(&cfg, &old), 0);
        init(old, "2025-03-26");
        r = rpc(old, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},"
                     "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"},"
                     "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"nope\"},"
                     "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"initialize\",\"params\":{}}]");
        assert_true(json_object_is_type(r, json_type_array));
        assert_int_equal(json_object_array_length(r), 3);
        assert_non_null(json_obj(json_object_array_get_idx(r, 0), "result"));
        assert_int_equal(error_code(json_object_array_get_idx(r, 1)), MCP_METHOD_NOT_FOUND);
        assert_int_equal(error_code(json_object_array_get_idx(r, 2)), MCP_INVALID_REQUEST);
        json_object_put(r);
        r = rpc(old, "[]");
        assert_int_equal(error_code(r), MCP_INVALID_REQUEST);
        json_object_put(r);
        /* Only notifications: nothing to answer. */
        assert_null(rpc(old, "[{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"}]"));
        mcp_session_free(old);
}

static void test_tools_list(void **state)
{
        Fixture *fx = *state;
        init(fx->s, "2025-06-18");
        cleanup_json json_object *r =
                rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}");
        json_object *tools = json_field(json_obj(r, "result"), "tools");
        assert_int_equal(json_object_array_length(tools), mcp_n_tools);
        for (size_t i = 0; i < json_object_array_length(tools); i++) {
                json_object *t = json_object_array_get_idx(tools, i);
                assert_string_equal(json_str(json_obj(t, "inputSchema"), "type"), "object");
                assert_non_null(json_obj(t, "annotations"));
                json_object *out = json_obj(t, "outputSchema");
                if (out)
                        assert_string_equal(json_str(out, "type"), "object");
                assert_non_null(json_str(t, "title"));
                assert_non_null(json_str(t, "description"));
        }
        /* 2025-03-26 has annotations, but no outputSchema or title. */
        McpConfig cfg = {.backend = &fx->backend};
        McpSession *old = NULL;
        assert_int_equal(mcp_session_new(&cfg, &old), 0);
        init(old, "2025-03-26");
        cleanup_json json_object *r2 =
                rpc(old, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}");
        json_object *t0 = json_object_array_get_idx(json_field(json_obj(r2, "result"), "tools"), 0);
        assert_null(json_field(t0, "outputSchema"));
        assert_null(json_field(t0, "title"));
        assert_non_null(json_obj(t0, "annotations"));
        mcp_session_free(old);
        cleanup_json json_object *r3 = rpc(fx->s, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":"
                                                  "\"tools/list\",\"params\":{\"cursor\":\"x\"}}");
        assert_int_equal(error_code(r3), MCP_INVALID_PARAMS);
}

static json_object *call(McpSession *s, const char *name, const char *args)
{
        char buf[1024];
        snprintf(buf, sizeof(buf),
                 "{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"tools/call\",\"params\":{\"name\":"
                 "\"%s\",\"arguments\":%s}}",
                 name, args);
        json_object *r = rpc(s, buf);
        assert_non_null(json_obj(r, "result"));
        return r;
}

static bool is_error(json_object *r)
{
        return json_boolean(json_obj(r, "result"), "isError", false);
}

static const char *first_text(json_object *r)
{
        json_object *c = json_field(json_obj(r, "result"), "content");
        return json_str(json_object_array_get_idx(c, 0), "text");
}

/* run_code's view of the node's languages (mcp-languages.c): the enum the
 * union over the templates, every language once a template lists none. */
static void test_run_code_languages(void **state)
{
        (void) state;
        json_object *info = json_tokener_parse(
                "{\"templates\":[\"default\",\"stats\"],\"template_languages\":{"
                "\"default\":[\"python\",\"bash\"],\"stats\":[\"r\",\"python\"]}}");
        json_object *tool = json_tokener_parse(
                "{\"description\":\"Run code.\",\"inputSchema\":{\"properties\":{"
                "\"language\":{\"type\":\"string\",\"enum\":[]}}}}");
        assert_non_null(info);
        assert_non_null(tool);
        assert_int_equal(mcp_run_code_view(info, "default", tool), 0);
        json_object *en = json_field(
                json_obj(json_obj(json_obj(tool, "inputSchema"), "properties"), "language"),
                "enum");
        assert_string_equal(json_object_to_json_string_ext(en, JSON_C_TO_STRING_PLAIN),
                            "[\"python\",\"r\",\"bash\"]");
        assert_string_equal(json_str(tool, "description"),
                            "Run code. Languages by template on this node: default: python, bash; "
                            "stats: r, python. This session's sandbox (template default) runs "
                            "python, bash.");
        assert_false(mcp_language_listed(mcp_template_languages(info, "default"), "r"));
        assert_true(mcp_language_listed(mcp_template_languages(info, "stats"), "r"));
        /* Not listed: every language is tried. */
        assert_true(mcp_language_listed(mcp_template_languages(info, "image"), "java"));
        json_object_put(info);
        json_object_put(tool);

        info = json_tokener_parse("{\"templates\":[\"default\",\"any\"],\"template_languages\":"
                                  "{\"default\":[\"python\"]}}");
        tool = json_tokener_parse("{\"description\":\"Run code.\",\"inputSchema\":{"
                                  "\"properties\":{\"language\":{\"type\":\"string\"}}}}");
        assert_int_equal(mcp_run_code_view(info, "any", tool), 0);
        en = json_field(json_obj(json_obj(json_obj(tool, "inputSchema"), "properties"), "language"),
                        "enum");
        assert_int_equal(json_object_array_length(en), 6);
        assert_non_null(strstr(json_str(tool, "description"),
                               "any: any (not listed: tried). This session's sandbox (template "
                               "any) runs any of them."));
        json_object_put(info);
        json_object_put(tool);
}

static void test_bad_arguments_make_nothing(void **state)
{
        Fixture *fx = *state;
        init(fx->s, "2025-11-25");
        static const struct {
                const char *tool, *args, *says;
        } cases[] = {
                {"run_code", "{}", "missing argument 'code'"},
                {"run_code", "{\"code\":5}", "'code' must be a string"},
                {"run_code", "{\"code\":\"1\",\"language\":\"cobol\"}", "must be one of"},
                {"run_code", "{\"code\":\"1\",\"timeout\":-1}", "out of range"},
                {"run_code", "{\"code\":\"1\",\"env\":{\"A\":1}}", "must map names to strings"},
                {"run_code", "{\"code\":\"1\",\"language\":\"python\",\"context\":\"c\"}",
                 "not both"},
                {"run_command", "{\"command\":\"true\",\"bogus\":1}", "unknown argument 'bogus'"},
                {"run_command", "{\"command\":\"true\",\"sandbox_id\":\"../x\"}",
                 "not a sandbox id"},
                {"set_timeout", "{\"timeout\":1.5}", "'timeout' must be an integer"},
                {"create_sandbox", "{\"allow\":[\"10.0.0.0/8\"]}", "allow goes with"},
                {"create_sandbox", "{\"metadata\":{\"sandpit.dev/x\":\"1\"}}", "sandpit's own"},
                {"kill_sandbox", "{}", "no sandbox_id given"},
                {"write_file", "{\"path\":\"a\",\"content\":\"!!\",\"encoding\":\"base64\"}",
                 "not valid base64"},
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                cleanup_json json_object *r = call(fx->s, cases[i].tool, cases[i].args);
                assert_true(is_error(r));
                if (!strstr(first_text(r), cases[i].says))
                        fail_msg("%s %s: '%s' does not say '%s'", cases[i].tool, cases[i].args,
                                 first_text(r), cases[i].says);
        }
        /* None of it made a sandbox. */
        assert_int_equal(fx->fake.creates, 0);
}

static void test_session_sandbox(void **state)
{
        Fixture *fx = *state;
        init(fx->s, "2025-11-25");
        /* The agent cannot be reached: an isError result naming it; the
         * session sandbox was made once, with the session's label. */
        cleanup_json json_object *r = call(fx->s, "run_command", "{\"command\":\"true\"}");
        assert_true(is_error(r));
        assert_non_null(strstr(first_text(r), "Connection refused"));
        cleanup_json json_object *r2 = call(fx->s, "run_code", "{\"code\":\"1\"}");
        assert_int_equal(fx->fake.creates, 1);
        json_object *labels = json_obj(fx->fake.last_create, "labels");
        assert_string_equal(json_str(labels, MCP_LABEL_SESSION), mcp_session_id(fx->s));
        assert_string_equal(json_str(fx->fake.last_create, "template"), "default");
        /* list_sandboxes filters by metadata and marks the session's. */
        cleanup_json json_object *l =
                call(fx->s, "list_sandboxes", "{\"metadata\":{\"team\":\"b\"}}");
        json_object *sbs =
                json_field(json_obj(json_obj(l, "result"), "structuredContent"), "sandboxes");
        assert_int_equal(json_object_array_length(sbs), 1);
        assert_string_equal(json_str(json_object_array_get_idx(sbs, 0), "sandbox_id"), "sbx2");
        /* An unknown sandbox: an isError result that says what to do. */
        cleanup_json json_object *k =
                call(fx->s, "set_timeout", "{\"sandbox_id\":\"zzz\",\"timeout\":60}");
        assert_true(is_error(k));
        assert_non_null(strstr(first_text(k), "list_sandboxes"));
        /* The session ends: its sandbox is deleted. */
        mcp_session_free(fx->s);
        fx->s = NULL;
        assert_int_equal(fx->fake.removes, 1);
        assert_string_equal(fx->fake.removed, "sbx1");
}

static void test_kill_session_sandbox(void **state)
{
        Fixture *fx = *state;
        init(fx->s, "2025-11-25");
        json_object_put(call(fx->s, "run_code", "{\"code\":\"1\"}"));
        cleanup_json json_object *k = call(fx->s, "kill_sandbox", "{}");
        assert_false(is_error(k));
        assert_int_equal(fx->fake.removes, 1);
        /* Forgotten: the end of the session deletes nothing more. */
        mcp_session_free(fx->s);
        fx->s = NULL;
        assert_int_equal(fx->fake.removes, 1);
}

/* ---- stdio over pipes ---- */

typedef struct {
        GwBackend *backend;
        int in, out;
        int r;
} Serve;

static void *serve_thread(void *arg)
{
        Serve *sv = arg;
        McpConfig cfg = {.backend = sv->backend};
        sv->r = mcp_stdio_serve(&cfg, sv->in, sv->out, NULL, NULL);
        close(sv->out);
        return NULL;
}

static void test_stdio(void **state)
{
        Fixture *fx = *state;
        int in[2], out[2];
        assert_int_equal(pipe(in), 0);
        assert_int_equal(pipe(out), 0);
        Serve sv = {.backend = &fx->backend, .in = in[0], .out = out[1]};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, serve_thread, &sv), 0);
        static const char msgs[] =
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
                "\"protocolVersion\":\"2025-11-25\"}}\n"
                "\n"
                "not json\n"
                "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
                "\"run_code\",\"arguments\":{\"code\":\"1\"}}}\n";
        assert_int_equal(write_all(in[1], msgs, strlen(msgs)), 0);
        close(in[1]);
        pthread_join(t, NULL);
        assert_int_equal(sv.r, 0);
        char buf[8192];
        ssize_t n = read_full(out[0], buf, sizeof(buf) - 1);
        assert_true(n > 0);
        buf[n] = 0;
        close(in[0]);
        close(out[0]);
        /* Three answers, one a line: initialize, the parse error, the call. */
        int lines = 0, parse_errors = 0, results = 0;
        for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l;
             l = strtok_r(NULL, "\n", &save)) {
                cleanup_json json_object *o = json_tokener_parse(l);
                assert_non_null(o);
                lines++;
                if (error_code(o) == MCP_PARSE_ERROR)
                        parse_errors++;
                if (json_obj(o, "result"))
                        results++;
        }
        assert_int_equal(lines, 3);
        assert_int_equal(parse_errors, 1);
        assert_int_equal(results, 2);
        /* End of input ended the session: the sandbox the call made is gone. */
        assert_int_equal(fx->fake.creates, 1);
        assert_int_equal(fx->fake.removes, 1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_protocol_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_negotiation, setup, teardown),
                cmocka_unit_test_setup_teardown(test_batches, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tools_list, setup, teardown),
                cmocka_unit_test_setup_teardown(test_run_code_languages, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_arguments_make_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_session_sandbox, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kill_session_sandbox, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stdio, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
