/* Unit tests of the operator's agent calls (operator/src/agent-ops.c, an
 * adapter over lib's AgentClient, itself tested in test_agent_client.c)
 * against the fake agent of fake-agent.h (lib's http-server on 127.0.0.1
 * port 0), which records each request and answers what the test set. What is checked:
 * that each op makes its call with the connection's endpoint, token and
 * arguments (the deadline as whole seconds left), and that answers and
 * transport failures come back as errno, status and message. */
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

#include "../../operator/src/operator.h"
#include "fake-agent.h"
#include "sandpit/http-server.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define TOKEN "agent-token"
#define ID    "sbx-0b6f9d4e"

static int setup(void **state)
{
        (void) state;
        return fake_agent_start(TOKEN);
}

static int teardown(void **state)
{
        (void) state;
        fake_agent_stop();
        return 0;
}

static AgentConn conn(void)
{
        return (AgentConn){.endpoint = fake.url, .token = TOKEN, .timeout_ms = 10000};
}

static void test_create(void **state)
{
        (void) state;
        const AgentConn c = conn();
        AgentClientError e = {0};
        json_object *ret = NULL;
        json_object *req = json_tokener_parse("{\"id\":\"" ID "\",\"template\":\"default\"}");

        answer(201, "{\"id\":\"" ID "\",\"state\":\"running\"}");
        assert_int_equal(agent_http_ops.create(&c, req, &ret, &e), 0);
        assert_string_equal(request(), "POST /v1/sandboxes");
        json_object *sent = request_body();
        assert_true(json_object_equal(sent, req));
        json_object_put(sent);
        assert_string_equal(json_str(ret, "state"), "running");
        assert_int_equal(e.status, 201);
        json_object_put(ret);
        ret = NULL;

        /* The id is in use. */
        answer(409, "{\"code\":409,\"reason\":\"AlreadyExists\",\"message\":\"id " ID " in use\"}");
        assert_int_equal(agent_http_ops.create(&c, req, &ret, &e), -EEXIST);
        assert_null(ret);
        assert_int_equal(e.status, 409);
        assert_string_equal(e.message, "id " ID " in use");

        /* Given up for a concurrent delete: a conflict, not an id in use. */
        answer(409, "{\"code\":409,\"reason\":\"Conflict\",\"message\":\"sandbox " ID
                    " was deleted while it was being created\"}");
        assert_int_equal(agent_http_ops.create(&c, req, &ret, &e), -EBUSY);
        assert_null(ret);
        assert_int_equal(e.status, 409);

        /* Refused. */
        answer(400, "{\"code\":400,\"message\":\"template \\\"x\\\" not found\"}");
        assert_int_equal(agent_http_ops.create(&c, req, &ret, &e), -EINVAL);
        assert_int_equal(e.status, 400);
        assert_string_equal(e.message, "template \"x\" not found");
        assert_string_equal(agent_error_message(&e), "template \"x\" not found");

        /* A server error without a message. */
        answer(503, NULL);
        assert_int_equal(agent_http_ops.create(&c, req, &ret, &e), -EIO);
        assert_int_equal(e.status, 503);
        assert_string_equal(agent_error_message(&e), "the agent answered HTTP 503");

        /* A success status other than the create's. */
        answer(200, "{}");
        assert_int_equal(agent_http_ops.create(&c, req, &ret, &e), -EIO);
        assert_null(ret);
        json_object_put(req);
}

static void test_get_and_remove(void **state)
{
        (void) state;
        const AgentConn c = conn();
        AgentClientError e = {0};
        json_object *ret = NULL;
        answer(200, "{\"id\":\"" ID "\",\"state\":\"paused\"}");
        assert_int_equal(agent_http_ops.get(&c, ID, &ret, &e), 0);
        assert_string_equal(request(), "GET /v1/sandboxes/" ID);
        assert_string_equal(json_str(ret, "state"), "paused");
        json_object_put(ret);
        ret = NULL;

        answer(404, "{\"code\":404,\"message\":\"sandbox " ID " not found\"}");
        assert_int_equal(agent_http_ops.get(&c, ID, &ret, &e), -ENOENT);
        assert_null(ret);
        assert_true(agent_error_not_found(-ENOENT, &e));

        answer(204, NULL);
        assert_int_equal(agent_http_ops.remove(&c, ID, &e), 0);
        assert_string_equal(request(), "DELETE /v1/sandboxes/" ID);

        answer(404, "{\"code\":404,\"message\":\"sandbox " ID " not found\"}");
        int r = agent_http_ops.remove(&c, ID, &e);
        assert_int_equal(r, -ENOENT);
        assert_true(agent_error_not_found(r, &e));

        answer(500, "{\"code\":500,\"message\":\"umount: busy\"}");
        r = agent_http_ops.remove(&c, ID, &e);
        assert_int_equal(r, -EIO);
        assert_false(agent_error_not_found(r, &e));
        assert_string_equal(e.message, "umount: busy");
}

static void test_list(void **state)
{
        (void) state;
        const AgentConn c = conn();
        AgentClientError e = {0};
        json_object *ret = NULL;
        answer(200, "{\"sandboxes\":[{\"id\":\"a\"},{\"id\":\"b\"}]}");
        assert_int_equal(
                agent_http_ops.list(&c, LABEL_MANAGED_BY "=" LABEL_MANAGED_BY_VALUE, &ret, &e), 0);
        assert_string_equal(request(),
                            "GET /v1/sandboxes?label=sandpit.dev/managed-by=sandpit-operator");
        assert_string_equal(plain(ret), "[{\"id\":\"a\"},{\"id\":\"b\"}]");
        json_object_put(ret);
        ret = NULL;

        /* All of them; an answer without a list is malformed. */
        answer(200, "{}");
        assert_int_equal(agent_http_ops.list(&c, NULL, &ret, &e), -EBADMSG);
        assert_string_equal(request(), "GET /v1/sandboxes"); /* no label */
        assert_null(ret);
}

static void test_actions(void **state)
{
        (void) state;
        const AgentConn c = conn();
        AgentClientError e = {0};
        json_object *ret = NULL;

        answer(200, "{\"state\":\"paused\"}");
        assert_int_equal(agent_http_ops.pause(&c, ID, false, &ret, &e), 0);
        assert_string_equal(request(), "POST /v1/sandboxes/" ID "/pause");
        json_object *sent = request_body();
        assert_string_equal(plain(sent), "{\"stop_deadline\":false}");
        json_object_put(sent);
        json_object_put(ret);
        ret = NULL;

        answer(200, "{\"state\":\"running\"}");
        assert_int_equal(agent_http_ops.resume(&c, ID, &ret, &e), 0);
        assert_string_equal(request(), "POST /v1/sandboxes/" ID "/resume");
        sent = request_body();
        assert_string_equal(plain(sent), "{}");
        json_object_put(sent);
        json_object_put(ret);
        ret = NULL;

        /* The deadline as whole seconds from now, rounded up: 91 (90 when the
         * call took more than half a second). */
        answer(200, "{\"expires_at\":\"2026-11-22T12:00:00Z\"}");
        uint64_t deadline = now_realtime_us() + UINT64_C(90500000);
        assert_int_equal(agent_http_ops.set_timeout(&c, ID, deadline, &ret, &e), 0);
        assert_string_equal(request(), "POST /v1/sandboxes/" ID "/timeout");
        sent = request_body();
        json_object *t = json_field(sent, "timeout");
        assert_non_null(t);
        assert_in_range(json_object_get_int64(t), 90, 91);
        json_object_put(sent);
        assert_string_equal(json_str(ret, "expires_at"), "2026-11-22T12:00:00Z");
        json_object_put(ret);
        ret = NULL;

        answer(409, "{\"code\":409,\"message\":\"sandbox " ID " is not running\"}");
        assert_int_equal(agent_http_ops.resume(&c, ID, &ret, &e), -EBUSY);
        assert_int_equal(e.status, 409);
        assert_null(ret);
}

/* The image pull: the request body as given (auth included), the image back;
 * a denied pull as -EACCES with the agent's status and message. */
static void test_image_pull(void **state)
{
        (void) state;
        const AgentConn c = conn();
        AgentClientError e = {0};
        json_object *ret = NULL;
        json_object *req =
                json_tokener_parse("{\"image\":\"r.io/a:1\",\"refresh\":false,\"verify\":true,"
                                   "\"auth\":{\"auths\":{\"r.io\":{\"auth\":\"dTpw\"}}}}");

        answer(200, "{\"name\":\"r.io/a:1\",\"digest\":\"sha256:00\",\"size\":7}");
        assert_int_equal(agent_http_ops.image_pull(&c, req, &ret, &e), 0);
        assert_string_equal(request(), "POST /v1/images/pull");
        json_object *sent = request_body();
        assert_true(json_object_equal(sent, req));
        json_object_put(sent);
        assert_string_equal(json_str(ret, "digest"), "sha256:00");
        json_object_put(ret);
        ret = NULL;

        answer(403, "{\"code\":403,\"message\":\"r.io/a:1: denied\"}");
        assert_int_equal(agent_http_ops.image_pull(&c, req, &ret, &e), -EACCES);
        assert_int_equal(e.status, 403);
        assert_string_equal(e.message, "r.io/a:1: denied");
        assert_null(ret);
        json_object_put(req);
}

static void test_token_and_transport(void **state)
{
        (void) state;
        AgentClientError e = {0};
        json_object *ret = NULL;
        answer(200, "{}");
        AgentConn c = conn();
        c.token = "wrong";
        assert_int_equal(agent_http_ops.get(&c, ID, &ret, &e), -EACCES);
        assert_int_equal(e.status, 401);

        /* No agent at all: -ENOENT as a 404 would be, but no status, so not
         * "gone"; the transport's text. */
        char endpoint[128];
        snprintf(endpoint, sizeof(endpoint), "unix:///nonexistent-%d/agent.sock", (int) getpid());
        c = (AgentConn){.endpoint = endpoint, .token = TOKEN, .timeout_ms = 10000};
        int r = agent_http_ops.get(&c, ID, &ret, &e);
        assert_int_equal(r, -ENOENT);
        assert_int_equal(e.status, 0);
        assert_true(e.message[0] != '\0');
        assert_false(agent_error_not_found(r, &e));
        assert_null(ret);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_create),     cmocka_unit_test(test_get_and_remove),
                cmocka_unit_test(test_list),       cmocka_unit_test(test_actions),
                cmocka_unit_test(test_image_pull), cmocka_unit_test(test_token_and_transport),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
