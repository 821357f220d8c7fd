/* http-client against a tiny hand-written HTTP/1.1 server on a unix socket,
 * running in a thread of the test. It answers canned responses by path and
 * closes each connection after one response. */
#include <errno.h>
#include <limits.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "sandpit/http-client.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

typedef struct {
        char dir[64];
        char path[96];
        char url[160];
        int listen_fd;
        pthread_t thread;
        volatile int stop;
        /* The last request, written by the server thread under lock. */
        pthread_mutex_t lock;
        char method[16];
        char target[256];
        char headers[8192];
        char body[8192];
} Server;

static bool send_str(int fd, const char *s)
{
        return send_all(fd, s, strlen(s)) == 0;
}

static void send_response(int fd, const char *status, const char *type, const char *body)
{
        char head[512];
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n",
                         status, type, strlen(body));
        if (send_all(fd, head, (size_t) n) == 0)
                (void) send_str(fd, body);
}

static bool send_chunk(int fd, const char *data)
{
        char head[32];
        int n = snprintf(head, sizeof(head), "%zx\r\n", strlen(data));
        bool ok = send_all(fd, head, (size_t) n) == 0 && send_str(fd, data) && send_str(fd, "\r\n");
        /* Each chunk in its own write callback: wait until curl has read this
         * one (a unix socket's SIOCOUTQ counts what the peer has not read yet),
         * bounded in case the client stopped reading. */
        for (int i = 0, left = 1; ok && left > 0 && i < 5000; i++) {
                if (ioctl(fd, SIOCOUTQ, &left) < 0)
                        break;
                if (left > 0)
                        (void) usleep(1000);
        }
        return ok;
}

/* Lines split mid-line and mid-UTF-8 across chunks, a blank line, CRLF, and a
 * last line with no newline at all. */
static const char *const stream_chunks[] = {
        "{\"type\":\"start\",\"pid\":7}\n{\"type\":\"std",
        "out\",\"data\":\"h\xc3",
        "\xa9llo\\n\"}\n",
        "\n{\"type\":\"stderr\",\"data\":\"oops\"}\r\n{\"type\":\"exit\",",
        "\"pid\":7,\"exit_code\":3}",
};

static void handle(Server *s, int fd)
{
        char buf[8192];
        size_t len = 0;
        char *end = NULL;

        while (!end && len < sizeof(buf) - 1) {
                ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
                if (n <= 0)
                        return;
                len += (size_t) n;
                buf[len] = '\0';
                end = strstr(buf, "\r\n\r\n");
        }
        if (!end)
                return;
        *end = '\0';
        char *body = end + 4;
        size_t have = len - (size_t) (body - buf);

        size_t content_length = 0;
        const char *cl = strcasestr(buf, "\r\nContent-Length:");
        if (cl)
                content_length = strtoul(cl + strlen("\r\nContent-Length:"), NULL, 10);
        while (have < content_length && len < sizeof(buf) - 1) {
                ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
                if (n <= 0)
                        break;
                len += (size_t) n;
                have += (size_t) n;
        }
        buf[len] = '\0';

        char method[16] = "", target[256] = "";
        if (sscanf(buf, "%15s %255s", method, target) != 2)
                return;

        pthread_mutex_lock(&s->lock);
        snprintf(s->method, sizeof(s->method), "%s", method);
        snprintf(s->target, sizeof(s->target), "%s", target);
        snprintf(s->headers, sizeof(s->headers), "%s", buf);
        snprintf(s->body, sizeof(s->body), "%s", body);
        pthread_mutex_unlock(&s->lock);

        if (streq(target, "/v1/json")) {
                send_response(fd, "200 OK", "application/json", "{\"a\": 1, \"b\": \"x/y\"}\n");
        } else if (streq(target, "/v1/echo")) {
                send_response(fd, "201 Created", "application/json", body[0] ? body : "{}");
        } else if (streq(target, "/v1/empty")) {
                (void) send_str(fd, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        } else if (streq(target, "/v1/notjson")) {
                send_response(fd, "200 OK", "text/plain", "hello");
        } else if (streq(target, "/v1/html500")) {
                send_response(fd, "500 Internal Server Error", "text/html", "<html>x</html>");
        } else if (streq(target, "/v1/slow")) {
                for (int i = 0; i < 30 && !s->stop; i++)
                        (void) usleep(100000);
                send_response(fd, "200 OK", "application/json", "{}");
        } else if (streq(target, "/v1/stream") || streq(target, "/v1/stream-forever")) {
                (void) send_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                                    "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
                for (size_t i = 0; i < ARRAY_SIZE(stream_chunks); i++)
                        (void) send_chunk(fd, stream_chunks[i]);
                /* Until the client goes away. */
                if (streq(target, "/v1/stream-forever"))
                        for (int i = 0; i < 100 && !s->stop && send_chunk(fd, "\n"); i++)
                                (void) usleep(80000);
                (void) send_str(fd, "0\r\n\r\n");
        } else {
                send_response(fd, "404 Not Found", "application/json",
                              "{\"code\": 404, \"message\": \"sandbox nope not found\"}");
        }
}

static void *server_main(void *userdata)
{
        Server *s = userdata;
        while (!s->stop) {
                struct pollfd p = {.fd = s->listen_fd, .events = POLLIN};
                if (poll(&p, 1, 50) <= 0)
                        continue;
                int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                handle(s, fd);
                (void) shutdown(fd, SHUT_WR);
                (void) close(fd);
        }
        return NULL;
}

static int server_setup(void **state)
{
        Server *s = calloc(1, sizeof(*s));
        assert_non_null(s);
        snprintf(s->dir, sizeof(s->dir), "/tmp/sandpit-http-test-XXXXXX");
        assert_non_null(mkdtemp(s->dir));
        snprintf(s->path, sizeof(s->path), "%s/agent.sock", s->dir);
        snprintf(s->url, sizeof(s->url), "unix://%s", s->path);
        pthread_mutex_init(&s->lock, NULL);

        s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(s->listen_fd >= 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->path);
        assert_int_equal(bind(s->listen_fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(s->listen_fd, 16), 0);
        assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
        *state = s;
        return 0;
}

static int server_teardown(void **state)
{
        Server *s = *state;
        s->stop = 1;
        pthread_join(s->thread, NULL);
        close(s->listen_fd);
        unlink(s->path);
        rmdir(s->dir);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return 0;
}

static HttpClient *client_for(const Server *s, const char *token)
{
        HttpClient *c = NULL;
        assert_int_equal(http_client_new(s->url, token, &c), 0);
        return c;
}

static void test_json_get(void **state)
{
        Server *s = *state;
        cleanup_http_client HttpClient *c = client_for(s, NULL);
        json_object *body = NULL, *v = NULL;
        long status = 0;

        assert_int_equal(http_request_json(c, "GET", "/v1/json", NULL, &status, &body), 0);
        assert_int_equal(status, 200);
        assert_non_null(body);
        assert_true(json_object_object_get_ex(body, "b", &v));
        assert_string_equal(json_object_get_string(v), "x/y");
        json_object_put(body);

        pthread_mutex_lock(&s->lock);
        assert_string_equal(s->method, "GET");
        assert_null(strcasestr(s->headers, "Authorization"));
        pthread_mutex_unlock(&s->lock);
        assert_string_equal(http_client_last_error(c), "");
}

static void test_json_post_body_and_token(void **state)
{
        Server *s = *state;
        cleanup_http_client HttpClient *c = client_for(s, "s3cret");
        json_object *req = json_object_new_object();
        json_object_object_add(req, "cmd", json_object_new_string("a/b"));
        json_object *body = NULL, *v = NULL;
        long status = 0;

        assert_int_equal(http_request_json(c, "POST", "/v1/echo", req, &status, &body), 0);
        assert_int_equal(status, 201);
        assert_true(json_object_object_get_ex(body, "cmd", &v));
        assert_string_equal(json_object_get_string(v), "a/b");
        json_object_put(body);

        pthread_mutex_lock(&s->lock);
        assert_string_equal(s->method, "POST");
        assert_string_equal(s->body, "{\"cmd\":\"a/b\"}");
        assert_non_null(strstr(s->headers, "Authorization: Bearer s3cret\r\n"));
        assert_non_null(strstr(s->headers, "Content-Type: application/json\r\n"));
        assert_null(strcasestr(s->headers, "Expect:"));
        pthread_mutex_unlock(&s->lock);

        /* Same client, a second request; the req object stays ours. */
        assert_int_equal(http_request_json(c, "PUT", "/v1/echo", req, &status, NULL), 0);
        assert_int_equal(status, 201);
        pthread_mutex_lock(&s->lock);
        assert_string_equal(s->method, "PUT");
        pthread_mutex_unlock(&s->lock);

        /* A copy talks to the same server with the same token. */
        cleanup_http_client HttpClient *dup = NULL;
        assert_int_equal(http_client_dup(c, &dup), 0);
        assert_string_equal(http_client_url(dup), s->url);
        assert_int_equal(http_request_json(dup, "PATCH", "/v1/echo", req, &status, NULL), 0);
        assert_int_equal(status, 201);
        pthread_mutex_lock(&s->lock);
        assert_string_equal(s->method, "PATCH");
        assert_non_null(strstr(s->headers, "Authorization: Bearer s3cret\r\n"));
        pthread_mutex_unlock(&s->lock);
        json_object_put(req);
}

static void test_json_delete_no_content(void **state)
{
        Server *s = *state;
        cleanup_http_client HttpClient *c = client_for(s, NULL);
        json_object *body = (json_object *) 0x1;
        long status = 0;

        assert_int_equal(http_request_json(c, "DELETE", "/v1/empty", NULL, &status, &body), 0);
        assert_int_equal(status, 204);
        assert_null(body);
        pthread_mutex_lock(&s->lock);
        assert_string_equal(s->method, "DELETE");
        pthread_mutex_unlock(&s->lock);

        /* POST without a body sends an empty one. */
        assert_int_equal(http_request_json(c, "POST", "/v1/empty", NULL, &status, NULL), 0);
        assert_int_equal(status, 204);
}

static void test_json_404_message(void **state)
{
        Server *s = *state;
        cleanup_http_client HttpClient *c = client_for(s, NULL);
        json_object *body = NULL, *v = NULL;
        long status = 0;

        assert_int_equal(http_request_json(c, "GET", "/v1/sandboxes/nope", NULL, &status, &body),
                         0);
        assert_int_equal(status, 404);
        assert_int_equal(http_status_to_errno(status, NULL), -ENOENT);
        assert_true(json_object_object_get_ex(body, "message", &v));
        assert_string_equal(json_object_get_string(v), "sandbox nope not found");
        json_object_put(body);
}

static void test_json_not_json(void **state)
{
        Server *s = *state;
        cleanup_http_client HttpClient *c = client_for(s, NULL);
        json_object *body = (json_object *) 0x1;
        long status = 0;

        assert_int_equal(http_request_json(c, "GET", "/v1/notjson", NULL, &status, &body),
                         -EBADMSG);
        /* ret_ parameters are left alone on failure. */
        assert_ptr_equal(body, (json_object *) 0x1);

        assert_int_equal(http_request_json(c, "GET", "/v1/html500", NULL, &status, &body), 0);
        assert_int_equal(status, 500);
        assert_null(body);
        assert_int_equal(http_status_to_errno(status, NULL), -EIO);
}

typedef struct {
        char lines[16][256];
        size_t n;
        int fail_at; /* return -EPIPE on this line (1-based), 0 never */
} Lines;

static int collect_line(const char *line, size_t len, void *userdata)
{
        Lines *l = userdata;
        assert_int_equal(strlen(line), len);
        if (l->n < ARRAY_SIZE(l->lines))
                snprintf(l->lines[l->n], sizeof(l->lines[0]), "%s", line);
        l->n++;
        if (l->fail_at > 0 && (size_t) l->fail_at == l->n)
                return -EPIPE;
        return 0;
}

static void test_stream_lines_across_chunks(void **state)
{
        Server *s = *state;
        cleanup_http_client HttpClient *c = client_for(s, NULL);
        Lines l = {0};
        json_object *body = (json_object *) 0x1;
        long status = 0;

        assert_int_equal(
                http_request_stream(c, "GET", "/v1/stream", NULL, collect_line, &l, &status, &body),
                0);
        assert_int_equal(status, 200);
        assert_null(body);
        assert_int_equal(l.n, 4);
        assert_string_equal(l.lines[0], "{\"type\":\"start\",\"pid\":7}");
        assert_string_equal(l.lines[1], "{\"type\":\"stdout\",\"data\":\"h\xc3\xa9llo\\n\"}");
        assert_string_equal(l.lines[2], "{\"type\":\"stderr\",\"data\":\"oops\"}");
        assert_string_equal(l.lines[3], "{\"type\":\"exit\",\"pid\":7,\"exit_code\":3}");

        pthread_mutex_lock(&s->lock);
        assert_non_null(strstr(s->headers, "Accept: application/x-ndjson"));
        pthread_mutex_unlock(&s->lock);
}

static void test_stream_error_body(void **state)
{
        Server *s = *state;
        cleanup_http_client HttpClient *c = client_for(s, NULL);
        Lines l = {0};
        json_object *body = NULL, *v = NULL;
        json_object *req = json_object_new_object();
        long status = 0;

        assert_int_equal(http_request_stream(c, "POST", "/v1/sandboxes/nope/exec", req,
                                             collect_line, &l, &status, &body),
                         0);
        json_object_put(req);
        assert_int_equal(status, 404);
        assert_int_equal(l.n, 0);
        assert_true(json_object_object_get_ex(body, "message", &v));
        assert_string_equal(json_object_get_string(v), "sandbox nope not found");
        json_object_put(body);
}

static void test_stream_callback_aborts(void **state)
{
        Server *s = *state;
        cleanup_http_client HttpClient *c = client_for(s, NULL);
        Lines l = {.fail_at = 2};
        long status = 0;

        assert_int_equal(
                http_request_stream(c, "GET", "/v1/stream", NULL, collect_line, &l, &status, NULL),
                -EPIPE);
        assert_int_equal(l.n, 2);
}

static volatile sig_atomic_t cancel_flag;

static int cancel_on_exit_line(const char *line, size_t len, void *userdata)
{
        (void) userdata;
        (void) len;
        if (strstr(line, "\"exit\""))
                cancel_flag = 1;
        return 0;
}

static void test_stream_cancel(void **state)
{
        Server *s = *state;
        cleanup_http_client HttpClient *c = client_for(s, NULL);
        long status = 0;

        /* The server keeps the stream open after the exit line; the flag must
         * end the transfer. */
        cancel_flag = 0;
        http_client_set_cancel(c, &cancel_flag);
        assert_int_equal(http_request_stream(c, "GET", "/v1/stream-forever", NULL,
                                             cancel_on_exit_line, NULL, &status, NULL),
                         -ECANCELED);
        assert_true(cancel_flag);
        http_client_set_cancel(c, NULL);

        /* Detached: the next request works. */
        json_object *body = NULL;
        assert_int_equal(http_request_json(c, "GET", "/v1/json", NULL, &status, &body), 0);
        json_object_put(body);
}

static void test_timeout(void **state)
{
        Server *s = *state;
        cleanup_http_client HttpClient *c = client_for(s, NULL);
        long status = 0;

        http_client_set_timeout(c, 300);
        assert_int_equal(http_request_json(c, "GET", "/v1/slow", NULL, &status, NULL), -ETIMEDOUT);
        assert_string_not_equal(http_client_last_error(c), "");
}

static void test_missing_socket(void **state)
{
        (void) state;
        cleanup_http_client HttpClient *c = NULL;
        long status = 0;

        assert_int_equal(http_client_new("unix:///nonexistent/sandpit/agent.sock", NULL, &c), 0);
        assert_int_equal(http_request_json(c, "GET", "/healthz", NULL, &status, NULL), -ENOENT);
        assert_string_not_equal(http_client_last_error(c), "");
}

static void test_refused_unix(void **state)
{
        (void) state;
        char dir[] = "/tmp/sandpit-http-test-XXXXXX";
        char path[96];
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/stale.sock", dir);

        /* A socket file nobody listens on any more. */
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        close(fd);

        char url[160];
        snprintf(url, sizeof(url), "unix://%s", path);
        cleanup_http_client HttpClient *c = NULL;
        long status = 0;
        assert_int_equal(http_client_new(url, NULL, &c), 0);
        Lines l = {0};
        assert_int_equal(
                http_request_stream(c, "GET", "/v1/stream", NULL, collect_line, &l, &status, NULL),
                -ECONNREFUSED);
        unlink(path);
        rmdir(dir);
}

static void test_refused_tcp(void **state)
{
        (void) state;
        /* Find a free port, then leave it closed. */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof(sa);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &sl), 0);
        close(fd);

        char url[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/", ntohs(sa.sin_port));
        cleanup_http_client HttpClient *c = NULL;
        long status = 0;
        assert_int_equal(http_client_new(url, "t", &c), 0);
        assert_string_equal(http_client_url(c), url);
        assert_int_equal(http_request_json(c, "GET", "/healthz", NULL, &status, NULL),
                         -ECONNREFUSED);
}

static void test_bad_urls(void **state)
{
        (void) state;
        HttpClient *c = NULL;
        assert_int_equal(http_client_new("ftp://x", NULL, &c), -EINVAL);
        assert_int_equal(http_client_new("unix://relative.sock", NULL, &c), -EINVAL);
        assert_int_equal(http_client_new("http://", NULL, &c), -EINVAL);
        assert_int_equal(http_client_new("/run/sandpit/agent.sock", NULL, &c), -EINVAL);
        assert_int_equal(http_client_new("http://h:1", "bad\ntoken", &c), -EINVAL);
        assert_null(c);
        assert_int_equal(http_client_new("https://h:1", NULL, &c), 0);
        long status = 0;
        assert_int_equal(http_request_json(c, "GET", "relative", NULL, &status, NULL), -EINVAL);
        http_client_free(c);
        http_client_free(NULL);
}

/* The splitter on its own: every way of cutting the input in two, and in
 * single bytes, gives the same lines. */
static const char split_input[] = "{\"a\":1}\n\r\n{\"b\":\"\xc3\xa9\"}\r\n\n{\"c\":3}";

static void check_split_lines(const Lines *l)
{
        assert_int_equal(l->n, 3);
        assert_string_equal(l->lines[0], "{\"a\":1}");
        assert_string_equal(l->lines[1], "{\"b\":\"\xc3\xa9\"}");
        assert_string_equal(l->lines[2], "{\"c\":3}");
}

static void test_splitter_every_cut(void **state)
{
        (void) state;
        size_t len = strlen(split_input);

        for (size_t cut = 0; cut <= len; cut++) {
                HttpLineSplitter sp = {0};
                Lines l = {0};
                assert_int_equal(http_line_splitter_feed(&sp, split_input, cut, collect_line, &l),
                                 0);
                assert_int_equal(http_line_splitter_feed(&sp, split_input + cut, len - cut,
                                                         collect_line, &l),
                                 0);
                assert_int_equal(http_line_splitter_finish(&sp, collect_line, &l), 0);
                check_split_lines(&l);
                http_line_splitter_done(&sp);
        }

        HttpLineSplitter sp;
        http_line_splitter_init(&sp);
        Lines l = {0};
        for (size_t i = 0; i < len; i++)
                assert_int_equal(http_line_splitter_feed(&sp, split_input + i, 1, collect_line, &l),
                                 0);
        assert_int_equal(http_line_splitter_finish(&sp, collect_line, &l), 0);
        check_split_lines(&l);
        /* finish is idempotent. */
        assert_int_equal(http_line_splitter_finish(&sp, collect_line, &l), 0);
        assert_int_equal(l.n, 3);
        http_line_splitter_done(&sp);
}

static void test_splitter_limits(void **state)
{
        (void) state;
        HttpLineSplitter sp = {.max_line = 8};
        Lines l = {0};

        assert_int_equal(http_line_splitter_feed(&sp, "12345678\n", 9, collect_line, &l), 0);
        assert_int_equal(l.n, 1);
        assert_int_equal(http_line_splitter_feed(&sp, "12345", 5, collect_line, &l), 0);
        assert_int_equal(http_line_splitter_feed(&sp, "6789", 4, collect_line, &l), -E2BIG);
        http_line_splitter_done(&sp);

        HttpLineSplitter sp2 = {0};
        Lines l2 = {.fail_at = 1};
        assert_int_equal(http_line_splitter_feed(&sp2, "a\nb\n", 4, collect_line, &l2), -EPIPE);
        assert_int_equal(l2.n, 1);
        http_line_splitter_done(&sp2);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_json_get, server_setup, server_teardown),
                cmocka_unit_test_setup_teardown(test_json_post_body_and_token, server_setup,
                                                server_teardown),
                cmocka_unit_test_setup_teardown(test_json_delete_no_content, server_setup,
                                                server_teardown),
                cmocka_unit_test_setup_teardown(test_json_404_message, server_setup,
                                                server_teardown),
                cmocka_unit_test_setup_teardown(test_json_not_json, server_setup, server_teardown),
                cmocka_unit_test_setup_teardown(test_stream_lines_across_chunks, server_setup,
                                                server_teardown),
                cmocka_unit_test_setup_teardown(test_stream_error_body, server_setup,
                                                server_teardown),
                cmocka_unit_test_setup_teardown(test_stream_callback_aborts, server_setup,
                                                server_teardown),
                cmocka_unit_test_setup_teardown(test_stream_cancel, server_setup, server_teardown),
                cmocka_unit_test_setup_teardown(test_timeout, server_setup, server_teardown),
                cmocka_unit_test(test_missing_socket),
                cmocka_unit_test(test_refused_unix),
                cmocka_unit_test(test_refused_tcp),
                cmocka_unit_test(test_bad_urls),
                cmocka_unit_test(test_splitter_every_cut),
                cmocka_unit_test(test_splitter_limits),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
