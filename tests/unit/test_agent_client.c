/* Unit tests of lib's typed agent client (lib/src/agent-client.c) against
 * the fake agent of fake-agent.h (lib's http-server on 127.0.0.1 port 0): it records
 * each request (method, path with its query, body, bearer token) and answers
 * what the test set, a whole body or NDJSON. What is checked: the paths and
 * bodies of every call, how answers, streams and transport failures become
 * results, errnos and the agent's message. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake-agent.h"
#include "sandpit/agent-client.h"
#include "sandpit/http-server.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define TOKEN "agent-token-0123456789"
#define ID    "sbx-7"

static int setup(void **state)
{
        if (fake_agent_start(TOKEN) < 0)
                return -1;
        AgentClient *c = NULL;
        if (agent_client_new(fake.url, TOKEN, &c) < 0)
                return -1;
        agent_client_set_timeout(c, 10000);
        *state = c;
        return 0;
}

static int teardown(void **state)
{
        agent_client_free(*state);
        fake_agent_stop();
        return 0;
}

static void test_sandboxes(void **state)
{
        AgentClient *c = *state;
        json_object *ret = NULL;
        json_object *req = json_tokener_parse("{\"template\":\"default\",\"timeout\":60}");
        answer(201, "{\"id\":\"" ID "\",\"state\":\"running\"}");
        assert_int_equal(agent_client_create(c, req, &ret), 0);
        assert_string_equal(request(), "POST /v1/sandboxes");
        assert_string_equal(body(), plain(req));
        assert_string_equal(fake.auth, "Bearer " TOKEN);
        assert_string_equal(json_object_get_string(json_object_object_get(ret, "id")), ID);
        json_object_put(ret);
        ret = NULL;
        answer(409, "{\"code\":409,\"reason\":\"AlreadyExists\",\"message\":\"id in use\"}");
        assert_int_equal(agent_client_create(c, req, &ret), -EEXIST);
        assert_null(ret);
        assert_int_equal(agent_client_error(c)->status, 409);
        assert_string_equal(agent_client_error(c)->message, "id in use");
        /* A create given up for a concurrent DELETE is no id in use: nothing
         * of it is left to adopt. */
        answer(409, "{\"code\":409,\"reason\":\"Conflict\",\"message\":\"sandbox " ID
                    " was deleted while it was being created\"}");
        assert_int_equal(agent_client_create(c, req, &ret), -EBUSY);
        assert_null(ret);
        assert_int_equal(agent_client_error(c)->status, 409);
        /* Only the reason says AlreadyExists: a 409 without one is a conflict. */
        answer(409, "{\"code\":409,\"message\":\"id in use\"}");
        assert_int_equal(agent_client_create(c, req, &ret), -EBUSY);
        json_object_put(req);

        answer(404, "{\"code\":404,\"message\":\"sandbox x not found\"}");
        int r = agent_client_get(c, ID, &ret);
        assert_int_equal(r, -ENOENT);
        assert_true(agent_client_not_found(c, r));
        assert_string_equal(request(), "GET /v1/sandboxes/" ID);
        assert_string_equal(agent_client_error(c)->message, "sandbox x not found");

        answer(200, "{\"sandboxes\":[{\"id\":\"a\"},{\"id\":\"b\"}]}");
        const char *labels[] = {"team=ml", "a b=c&d", NULL};
        assert_int_equal(agent_client_list(c, labels, &ret), 0);
        assert_string_equal(request(), "GET /v1/sandboxes?label=team=ml&label=a b=c&d");
        assert_int_equal(json_object_array_length(ret), 2);
        json_object_put(ret);
        ret = NULL;
        answer(200, "{\"nothing\":1}");
        assert_int_equal(agent_client_list(c, NULL, &ret), -EBADMSG);
        assert_null(ret);

        answer(204, NULL);
        assert_int_equal(agent_client_delete(c, ID), 0);
        assert_string_equal(request(), "DELETE /v1/sandboxes/" ID);
        assert_string_equal(agent_client_error(c)->message, "");

        answer(200, "{\"id\":\"" ID "\"}");
        assert_int_equal(agent_client_set_deadline(c, ID, 600, NULL), 0);
        assert_string_equal(request(), "POST /v1/sandboxes/" ID "/timeout");
        assert_string_equal(body(), "{\"timeout\":600}");
        answer(200, "{\"state\":\"paused\"}");
        assert_int_equal(agent_client_pause(c, ID, false, NULL), 0);
        assert_string_equal(request(), "POST /v1/sandboxes/" ID "/pause");
        assert_string_equal(body(), "{\"stop_deadline\":false}");
        answer(409, "{\"code\":409,\"message\":\"already paused\"}");
        assert_int_equal(agent_client_pause(c, ID, true, NULL), -EBUSY);
        answer(200, "{\"state\":\"running\"}");
        assert_int_equal(agent_client_resume(c, ID, 0, NULL), 0);
        assert_string_equal(body(), "{}");
        assert_int_equal(agent_client_resume(c, ID, 30, &ret), 0);
        assert_string_equal(request(), "POST /v1/sandboxes/" ID "/resume");
        assert_string_equal(body(), "{\"timeout\":30}");
        json_object_put(ret);
        ret = NULL;

        answer(200, "{\"metrics\":[]}");
        assert_int_equal(agent_client_metrics(c, ID, 10, 20, &ret), 0);
        assert_string_equal(request(), "GET /v1/sandboxes/" ID "/metrics?start=10&end=20");
        json_object_put(ret);
        ret = NULL;
        assert_int_equal(agent_client_metrics(c, ID, -1, -1, &ret), 0);
        assert_string_equal(request(), "GET /v1/sandboxes/" ID "/metrics");
        json_object_put(ret);
        /* A 2xx other than the call's own is not success. */
        answer(200, "{}");
        assert_int_equal(agent_client_delete(c, ID), -EIO);
}

typedef struct {
        char types[256];
        int n;
        int stop_after;
} Events;

static int on_event(json_object *ev, void *userdata)
{
        Events *e = userdata;
        json_object *t = json_object_object_get(ev, "type");
        size_t l = strlen(e->types);
        snprintf(e->types + l, sizeof(e->types) - l, "%s%s", l ? "," : "",
                 t ? json_object_get_string(t) : "?");
        e->n++;
        return e->stop_after && e->n >= e->stop_after ? -ECANCELED : 0;
}

static void test_images(void **state)
{
        AgentClient *c = *state;
        json_object *ret = NULL;
        answer(200, "{\"name\":\"r.io/a:v1\",\"layers\":[]}");
        assert_int_equal(agent_client_image_pull(c, "r.io/a:v1", &ret), 0);
        assert_string_equal(request(), "POST /v1/images/pull");
        assert_string_equal(body(), "{\"image\":\"r.io/a:v1\"}");
        assert_string_equal(json_object_get_string(json_object_object_get(ret, "name")),
                            "r.io/a:v1");
        json_object_put(ret);
        ret = NULL;
        answer(502, "{\"code\":502,\"message\":\"layer refused\"}");
        assert_int_equal(agent_client_image_pull(c, "r.io/a:v1", &ret), -EIO);
        assert_null(ret);
        assert_int_equal(agent_client_error(c)->status, 502);
        assert_string_equal(agent_client_error(c)->message, "layer refused");

        answer(200, "{\"images\":[{\"name\":\"x\"}]}");
        assert_int_equal(agent_client_image_list(c, &ret), 0);
        assert_string_equal(request(), "GET /v1/images");
        assert_int_equal(json_object_array_length(ret), 1);
        json_object_put(ret);

        answer(204, NULL);
        assert_int_equal(agent_client_image_remove(c, "r.io/a:v1@sha256:00"), 0);
        assert_string_equal(request(), "DELETE /v1/images?image=r.io/a:v1@sha256:00");
        answer(409, "{\"code\":409,\"message\":\"in use\"}");
        assert_int_equal(agent_client_image_remove(c, "r.io/a:v1"), -EBUSY);
}

static void test_pools(void **state)
{
        AgentClient *c = *state;
        json_object *ret = NULL;
        answer(200, "{\"pools\":[{\"name\":\"warm\"}],\"shrinks\":0}");
        assert_int_equal(agent_client_pools(c, &ret), 0);
        assert_string_equal(request(), "GET /v1/pools");
        assert_int_equal(json_object_array_length(json_field(ret, "pools")), 1);
        json_object_put(ret);

        json_object *req = json_tokener_parse("{\"template\":\"host\",\"size\":2}");
        answer(200, "{\"name\":\"sbxt-1\",\"size\":2}");
        assert_int_equal(agent_client_pool_put(c, "sbxt-1", req, &ret), 0);
        assert_string_equal(request(), "PUT /v1/pools/sbxt-1");
        assert_string_equal(body(), plain(req));
        assert_string_equal(json_str(ret, "name"), "sbxt-1");
        json_object_put(ret);
        answer(409, "{\"code\":409,\"message\":\"pool warm already has this shape\"}");
        assert_int_equal(agent_client_pool_put(c, "sbxt-1", req, NULL), -EBUSY);
        assert_string_equal(agent_client_error(c)->message, "pool warm already has this shape");
        json_object_put(req);

        answer(204, NULL);
        assert_int_equal(agent_client_pool_delete(c, "sbxt-1"), 0);
        assert_string_equal(request(), "DELETE /v1/pools/sbxt-1");
        answer(404, "{\"code\":404,\"message\":\"pool sbxt-1 not found\"}");
        assert_int_equal(agent_client_pool_delete(c, "sbxt-1"), -ENOENT);
}

static void test_exec_and_processes(void **state)
{
        AgentClient *c = *state;
        json_object *req = json_tokener_parse("{\"cmd\":[\"echo\",\"hi\"]}");
        answer_ndjson("{\"type\":\"start\",\"pid\":7}\n{\"type\":\"stdout\",\"data\":\"hi\\n\"}\n"
                      "{\"type\":\"exit\",\"pid\":7,\"exit_code\":0}\n");
        Events ev = {0};
        assert_int_equal(agent_client_exec(c, ID, req, on_event, &ev), 0);
        assert_string_equal(request(), "POST /v1/sandboxes/" ID "/exec");
        assert_string_equal(body(), plain(req));
        assert_string_equal(ev.types, "start,stdout,exit");
        /* The callback stops the stream: its result is the call's. */
        Events stop = {.stop_after = 1};
        assert_int_equal(agent_client_exec(c, ID, req, on_event, &stop), -ECANCELED);
        assert_int_equal(stop.n, 1);
        /* A line that is not JSON. */
        answer_ndjson("{\"type\":\"start\"}\nnot json\n");
        Events bad = {0};
        assert_int_equal(agent_client_exec(c, ID, req, on_event, &bad), -EBADMSG);
        /* Nor is a line with something after its object, or one that is not an object. */
        answer_ndjson("{\"type\":\"start\"} {\"type\":\"x\"}\n");
        Events trailing = {0};
        assert_int_equal(agent_client_exec(c, ID, req, on_event, &trailing), -EBADMSG);
        assert_int_equal(trailing.n, 0);
        answer_ndjson("[1,2]\n");
        Events array = {0};
        assert_int_equal(agent_client_exec(c, ID, req, on_event, &array), -EBADMSG);
        assert_int_equal(array.n, 0);
        /* Refused before the stream. */
        answer(400, "{\"code\":400,\"message\":\"no such binary\"}");
        Events none = {0};
        assert_int_equal(agent_client_exec(c, ID, req, on_event, &none), -EINVAL);
        assert_int_equal(none.n, 0);
        assert_string_equal(agent_client_error(c)->message, "no such binary");

        answer(201, "{\"pid\":42}");
        int pid = 0;
        assert_int_equal(agent_client_exec_background(c, ID, req, &pid), 0);
        assert_int_equal(pid, 42);
        assert_string_equal(body(), "{\"cmd\":[\"echo\",\"hi\"],\"background\":true}");
        json_object_put(req);

        answer(200, "{\"processes\":[{\"pid\":42}]}");
        json_object *procs = NULL;
        assert_int_equal(agent_client_processes(c, ID, &procs), 0);
        assert_string_equal(request(), "GET /v1/sandboxes/" ID "/processes");
        assert_int_equal(json_object_array_length(procs), 1);
        json_object_put(procs);

        answer_ndjson("{\"type\":\"stdout\",\"data\":\"x\"}\n{\"type\":\"exit\"}");
        Events st = {0};
        assert_int_equal(agent_client_process_stream(c, ID, 42, on_event, &st), 0);
        assert_string_equal(request(), "GET /v1/sandboxes/" ID "/processes/42/stream");
        assert_string_equal(st.types, "stdout,exit"); /* a last line without "\n" too */

        answer(204, NULL);
        assert_int_equal(agent_client_process_stdin(c, ID, 42, "abc", 3, true), 0);
        assert_string_equal(request(), "POST /v1/sandboxes/" ID "/processes/42/stdin");
        assert_string_equal(body(), "{\"data_b64\":\"YWJj\",\"eof\":true}");
        assert_int_equal(agent_client_process_signal(c, ID, 42, "SIGKILL"), 0);
        assert_string_equal(request(), "POST /v1/sandboxes/" ID "/processes/42/signal");
        assert_string_equal(body(), "{\"signal\":\"SIGKILL\"}");
        answer(404, "{\"code\":404,\"message\":\"no process 43\"}");
        assert_int_equal(agent_client_process_signal(c, ID, 43, "SIGKILL"), -ENOENT);
}

typedef struct {
        char data[64];
        size_t len;
} Bytes;

static int on_data(const char *data, size_t len, void *userdata)
{
        Bytes *b = userdata;
        assert_true(b->len + len < sizeof(b->data));
        memcpy(b->data + b->len, data, len);
        b->len += len;
        return 0;
}

static void test_files(void **state)
{
        AgentClient *c = *state;
        /* The file's bytes as they are (the fake sends them as one body). */
        answer_ndjson("raw\x01\x02 bytes");
        Bytes b = {0};
        assert_int_equal(agent_client_file_read(c, ID, "/home/user/a b&c.txt", "root", on_data, &b),
                         0);
        assert_string_equal(request(),
                            "GET /v1/sandboxes/" ID "/files?path=/home/user/a b&c.txt&user=root");
        assert_int_equal(b.len, 11);
        assert_memory_equal(b.data, "raw\x01\x02 bytes", 11);
        answer(404, "{\"code\":404,\"message\":\"no such file\"}");
        Bytes none = {0};
        int r = agent_client_file_read(c, ID, "/nope", NULL, on_data, &none);
        assert_int_equal(r, -ENOENT);
        assert_true(agent_client_not_found(c, r));
        assert_int_equal(none.len, 0);

        answer(200, "{\"entry\":{\"name\":\"a.txt\",\"size\":5}}");
        json_object *entry = NULL;
        assert_int_equal(agent_client_file_write(c, ID, "a.txt", NULL, "he\0lo", 5, &entry), 0);
        assert_string_equal(request(), "PUT /v1/sandboxes/" ID "/files?path=a.txt");
        assert_int_equal(fake.body_len, 5);
        assert_memory_equal(fake.body, "he\0lo", 5);
        assert_string_equal(json_object_get_string(json_object_object_get(entry, "name")), "a.txt");
        json_object_put(entry);
        entry = NULL;

        answer(200, "{\"entries\":[{\"name\":\"a\"}]}");
        json_object *list = NULL;
        assert_int_equal(agent_client_ls(c, ID, "/home/user", NULL, 2, &list), 0);
        assert_string_equal(request(), "GET /v1/sandboxes/" ID "/fs/ls?path=/home/user&depth=2");
        assert_int_equal(json_object_array_length(list), 1);
        json_object_put(list);
        answer(200, "{\"entry\":{\"name\":\"a\"}}");
        assert_int_equal(agent_client_stat(c, ID, "/a", NULL, &entry), 0);
        assert_string_equal(request(), "GET /v1/sandboxes/" ID "/fs/stat?path=/a");
        json_object_put(entry);
        entry = NULL;
        answer(200, "{\"exists\":false}");
        bool exists = true;
        assert_int_equal(agent_client_exists(c, ID, "/a", NULL, &exists), 0);
        assert_false(exists);
        answer(201, "{\"entry\":{\"name\":\"d\"}}");
        assert_int_equal(agent_client_mkdir(c, ID, "/d", "user", true, NULL), 0);
        assert_string_equal(request(), "POST /v1/sandboxes/" ID "/fs/mkdir?user=user");
        assert_string_equal(body(), "{\"path\":\"/d\",\"parents\":true}");
        answer(409, "{\"code\":409,\"message\":\"exists\"}");
        assert_int_equal(agent_client_mkdir(c, ID, "/d", NULL, false, NULL), -EEXIST);
        answer(204, NULL);
        assert_int_equal(agent_client_rm(c, ID, "/d", NULL, true), 0);
        assert_string_equal(body(), "{\"path\":\"/d\",\"recursive\":true}");
        answer(409, "{\"code\":409,\"message\":\"not empty\"}");
        assert_int_equal(agent_client_rm(c, ID, "/d", NULL, false), -ENOTEMPTY);
        answer_ndjson("{\"type\":\"start\"}\n{\"type\":\"create\",\"path\":\"/d/x\"}\n");
        Events w = {0};
        assert_int_equal(agent_client_watch(c, ID, "/d", NULL, true, on_event, &w), 0);
        assert_string_equal(request(), "GET /v1/sandboxes/" ID "/watch?path=/d&recursive=true");
        assert_string_equal(w.types, "start,create");
        answer(200, "{\"entry\":{\"name\":\"b\"}}");
        assert_int_equal(agent_client_mv(c, ID, "/a", "/b", NULL, true, &entry), 0);
        assert_string_equal(request(), "POST /v1/sandboxes/" ID "/fs/mv");
        assert_string_equal(body(),
                            "{\"source\":\"/a\",\"destination\":\"/b\",\"overwrite\":true}");
        json_object_put(entry);
}

/* Archives both ways, and the max_bytes a client asks for on uploads and
 * archives (not on file reads, where the agent takes none). */
static void test_archives_and_limits(void **state)
{
        AgentClient *c = *state;
        answer_ndjson("\x1f\x8b tar.gz bytes");
        Bytes b = {0};
        assert_int_equal(agent_client_archive_read(c, ID, "/home/user/d", NULL, on_data, &b), 0);
        assert_string_equal(request(),
                            "GET /v1/sandboxes/" ID "/archive?path=/home/user/d&format=tar.gz");
        assert_int_equal(b.len, 15);
        assert_memory_equal(b.data, "\x1f\x8b tar.gz bytes", 15);
        answer(413, "{\"code\":413,\"message\":\"the tree holds more than max_bytes\"}");
        Bytes none = {0};
        assert_int_equal(agent_client_archive_read(c, ID, "/big", "root", on_data, &none), -E2BIG);
        assert_int_equal(none.len, 0);
        assert_string_equal(agent_client_error(c)->message, "the tree holds more than max_bytes");

        cleanup_close int fd = memfd_create("archive", MFD_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write_all(fd, "PK\x03\x04", 4), 0);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        answer(200, "{\"path\":\"/d\",\"entries\":3,\"bytes\":10}");
        json_object *res = NULL;
        assert_int_equal(agent_client_archive_write_fd(c, ID, "/d", "user", fd, &res), 0);
        assert_string_equal(request(), "PUT /v1/sandboxes/" ID "/archive?path=/d&user=user");
        assert_int_equal(fake.body_len, 4);
        assert_memory_equal(fake.body, "PK\x03\x04", 4);
        assert_int_equal(json_object_get_int(json_object_object_get(res, "entries")), 3);
        json_object_put(res);

        /* A second client with its own connection keeps the settings. */
        agent_client_set_max_bytes(c, UINT64_C(68719476736));
        cleanup_agent_client AgentClient *d = NULL;
        assert_int_equal(agent_client_dup(c, &d), 0);
        agent_client_set_max_bytes(c, 0);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        answer(200, "{\"path\":\"/d\",\"entries\":1,\"bytes\":4}");
        assert_int_equal(agent_client_archive_write_fd(d, ID, "/d", NULL, fd, NULL), 0);
        assert_string_equal(request(),
                            "PUT /v1/sandboxes/" ID "/archive?path=/d&max_bytes=68719476736");
        assert_string_equal(fake.auth, "Bearer " TOKEN);
        answer_ndjson("x");
        Bytes one = {0};
        assert_int_equal(agent_client_archive_read(d, ID, "/d", NULL, on_data, &one), 0);
        assert_string_equal(request(), "GET /v1/sandboxes/" ID
                                       "/archive?path=/d&format=tar.gz&max_bytes=68719476736");
        answer(200, "{\"entry\":{\"name\":\"f\"}}");
        assert_int_equal(agent_client_file_write(d, ID, "/f", NULL, "x", 1, NULL), 0);
        assert_string_equal(request(),
                            "PUT /v1/sandboxes/" ID "/files?path=/f&max_bytes=68719476736");
        answer_ndjson("x");
        Bytes f = {0};
        assert_int_equal(agent_client_file_read(d, ID, "/f", NULL, on_data, &f), 0);
        assert_string_equal(request(), "GET /v1/sandboxes/" ID "/files?path=/f");
        /* The original's limit is its own. */
        answer(200, "{\"entry\":{\"name\":\"f\"}}");
        assert_int_equal(agent_client_file_write(c, ID, "/f", NULL, "x", 1, NULL), 0);
        assert_string_equal(request(), "PUT /v1/sandboxes/" ID "/files?path=/f");

        /* An error without a message says the status. */
        answer(502, NULL);
        assert_int_equal(agent_client_archive_read(c, ID, "/d", NULL, on_data, &none), -EIO);
        assert_string_equal(agent_client_error(c)->message, "the agent answered HTTP 502");
}

static void test_code_and_contexts(void **state)
{
        AgentClient *c = *state;
        json_object *req = json_tokener_parse("{\"code\":\"1+1\"}");
        answer_ndjson("{\"type\":\"result\",\"text\":\"2\"}\n\n{\"type\":\"end_of_execution\"}\n");
        Events ev = {0};
        assert_int_equal(agent_client_code(c, ID, req, on_event, &ev), 0);
        assert_string_equal(request(), "POST /v1/sandboxes/" ID "/code");
        assert_string_equal(ev.types, "result,end_of_execution"); /* empty lines skipped */
        json_object_put(req);
        answer(409, "{\"code\":409,\"message\":\"sandbox is paused\"}");
        Events none = {0};
        assert_int_equal(agent_client_code(c, ID, NULL, on_event, &none), -EBUSY);

        json_object *ctx = NULL;
        answer(201, "{\"id\":\"k1\",\"language\":\"python\",\"cwd\":\"/tmp\"}");
        assert_int_equal(agent_client_context_create(c, ID, "python", "/tmp", &ctx), 0);
        assert_string_equal(request(), "POST /v1/sandboxes/" ID "/contexts");
        assert_string_equal(body(), "{\"language\":\"python\",\"cwd\":\"/tmp\"}");
        json_object_put(ctx);
        ctx = NULL;
        answer(200, "{\"contexts\":[{\"id\":\"k1\"}]}");
        assert_int_equal(agent_client_context_list(c, ID, &ctx), 0);
        assert_int_equal(json_object_array_length(ctx), 1);
        json_object_put(ctx);
        ctx = NULL;
        answer(204, NULL);
        assert_int_equal(agent_client_context_delete(c, ID, "k1"), 0);
        assert_string_equal(request(), "DELETE /v1/sandboxes/" ID "/contexts/k1");
        answer(200, "{\"id\":\"k1\"}");
        assert_int_equal(agent_client_context_restart(c, ID, "k1", NULL), 0);
        assert_string_equal(request(), "POST /v1/sandboxes/" ID "/contexts/k1/restart");
}

static void test_transport_failure(void **state)
{
        (void) state;
        /* A port nothing listens on: bound, then closed. */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof(sa);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &sl), 0);
        char url[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(sa.sin_port));
        close(fd);
        cleanup_agent_client AgentClient *c = NULL;
        assert_int_equal(agent_client_new(url, NULL, &c), 0);
        json_object *ret = NULL;
        int r = agent_client_get(c, ID, &ret);
        assert_int_equal(r, -ECONNREFUSED);
        assert_false(agent_client_not_found(c, r));
        assert_int_equal(agent_client_error(c)->status, 0);
        assert_true(agent_client_error(c)->message[0] != 0);
        assert_null(ret);
        /* A wrong token: the agent's 401. */
        cleanup_agent_client AgentClient *w = NULL;
        char good[64];
        snprintf(good, sizeof(good), "%s", fake.url);
        assert_int_equal(agent_client_new(good, "wrong-token-0123456789", &w), 0);
        assert_int_equal(agent_client_get(w, ID, &ret), -EACCES);
        assert_int_equal(agent_client_error(w)->status, 401);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sandboxes),
                cmocka_unit_test(test_images),
                cmocka_unit_test(test_pools),
                cmocka_unit_test(test_exec_and_processes),
                cmocka_unit_test(test_files),
                cmocka_unit_test(test_archives_and_limits),
                cmocka_unit_test(test_code_and_contexts),
                cmocka_unit_test(test_transport_failure),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
