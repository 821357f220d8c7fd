/* The raw-bytes paths of the HTTP library, server and client together: bodies
 * spooled to a file past the buffered-body cap (and 413 past the route's own
 * limit), responses served from a file, and http_request_raw() both ways;
 * TLS settings the server refuses. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "sandpit/http-client.h"
#include "sandpit/http-server.h"
#include "sandpit/macro.h"

#define MAX_BODY  ((size_t) 1 << 20)
#define BIG       ((size_t) 5 << 20)
#define SPOOL_MAX ((size_t) 8 << 20)

static size_t spool_limit(HttpRequest *req, void *userdata)
{
        (void) userdata;
        return streq(http_request_path(req), "/spool") ? SPOOL_MAX : 0;
}

static uint32_t checksum(const uint8_t *p, size_t n)
{
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < n; i++)
                h = (h ^ p[i]) * 16777619u;
        return h;
}

static void handler(HttpRequest *req, void *userdata)
{
        (void) userdata;
        const char *path = http_request_path(req);
        if (streq(path, "/spool") || streq(path, "/buffered")) {
                int fd = http_request_body_fd(req);
                size_t len = 0;
                const char *body = http_request_body(req, &len);
                uint8_t *copy = NULL;
                if (fd >= 0) {
                        off_t size = lseek(fd, 0, SEEK_END);
                        copy = malloc((size_t) size + 1);
                        assert_non_null(copy);
                        assert_int_equal(pread(fd, copy, (size_t) size, 0), size);
                        len = (size_t) size;
                        body = (const char *) copy;
                }
                json_object *o = json_object_new_object();
                (void) json_object_object_add(o, "spooled", json_object_new_boolean(fd >= 0));
                (void) json_object_object_add(o, "size", json_object_new_int64((int64_t) len));
                (void) json_object_object_add(
                        o, "sum", json_object_new_int64(checksum((const uint8_t *) body, len)));
                free(copy);
                http_respond_json(req, 200, o);
                return;
        }
        if (streq(path, "/file")) {
                int fd = memfd_create("file", MFD_CLOEXEC);
                assert_true(fd >= 0);
                uint8_t *data = malloc(BIG);
                assert_non_null(data);
                for (size_t i = 0; i < BIG; i++)
                        data[i] = (uint8_t) (i * 7 + (i >> 13));
                assert_int_equal(write(fd, data, BIG), (ssize_t) BIG);
                free(data);
                http_respond_fd(req, 200, "application/octet-stream", fd, BIG);
                return;
        }
        http_respond_error(req, 404, "no such route");
}

typedef struct {
        char dir[64];
        char sock[96];
        char url[128];
        HttpServer *srv;
        HttpClient *client;
} Fixture;

static int setup(void **state)
{
        Fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        (void) snprintf(f->dir, sizeof(f->dir), "/tmp/sandpit-http-raw-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        (void) snprintf(f->sock, sizeof(f->sock), "%s/s.sock", f->dir);
        (void) snprintf(f->url, sizeof(f->url), "unix://%s", f->sock);
        HttpServerConfig cfg = {
                .unix_path = f->sock, .max_body = MAX_BODY, .spool_limit = spool_limit};
        assert_int_equal(http_server_start(&cfg, handler, NULL, &f->srv), 0);
        assert_int_equal(http_client_new(f->url, NULL, &f->client), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        Fixture *f = *state;
        http_client_free(f->client);
        http_server_free(f->srv);
        (void) rmdir(f->dir);
        free(f);
        return 0;
}

static int body_fd(size_t n, uint32_t *ret_sum)
{
        int fd = memfd_create("body", MFD_CLOEXEC);
        assert_true(fd >= 0);
        uint8_t *data = malloc(n);
        assert_non_null(data);
        for (size_t i = 0; i < n; i++)
                data[i] = (uint8_t) (i ^ (i >> 9));
        assert_int_equal(write(fd, data, n), (ssize_t) n);
        *ret_sum = checksum(data, n);
        free(data);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        return fd;
}

static void test_spooled_upload(void **state)
{
        Fixture *f = *state;
        uint32_t sum = 0;
        int fd = body_fd(BIG, &sum);
        long status = 0;
        json_object *o = NULL, *v = NULL;
        assert_int_equal(http_request_raw(f->client, "PUT", "/spool", fd, NULL, NULL, &status, &o),
                         0);
        assert_int_equal(status, 200);
        assert_true(json_object_object_get_ex(o, "spooled", &v) && json_object_get_boolean(v));
        assert_true(json_object_object_get_ex(o, "size", &v));
        assert_int_equal(json_object_get_int64(v), (int64_t) BIG);
        assert_true(json_object_object_get_ex(o, "sum", &v));
        assert_int_equal(json_object_get_int64(v), sum);
        json_object_put(o);
        (void) close(fd);
}

static void test_limits(void **state)
{
        Fixture *f = *state;
        uint32_t sum = 0;
        long status = 0;
        json_object *o = NULL;
        /* Past the route's spool limit. */
        int fd = body_fd(SPOOL_MAX + 1, &sum);
        assert_int_equal(http_request_raw(f->client, "PUT", "/spool", fd, NULL, NULL, &status, &o),
                         0);
        assert_int_equal(status, 413);
        json_object_put(o);
        (void) close(fd);
        /* Other routes keep the buffered cap. */
        fd = body_fd(MAX_BODY + 1, &sum);
        assert_int_equal(
                http_request_raw(f->client, "POST", "/buffered", fd, NULL, NULL, &status, &o), 0);
        assert_int_equal(status, 413);
        json_object_put(o);
        (void) close(fd);
        fd = body_fd(1000, &sum);
        assert_int_equal(
                http_request_raw(f->client, "POST", "/buffered", fd, NULL, NULL, &status, &o), 0);
        assert_int_equal(status, 200);
        json_object *v = NULL;
        assert_true(json_object_object_get_ex(o, "spooled", &v) && !json_object_get_boolean(v));
        json_object_put(o);
        (void) close(fd);
}

typedef struct {
        size_t len;
        uint32_t sum;
        bool ok;
} Sink;

static int on_data(const char *data, size_t len, void *userdata)
{
        Sink *s = userdata;
        for (size_t i = 0; i < len; i++) {
                size_t k = s->len + i;
                if ((uint8_t) data[i] != (uint8_t) (k * 7 + (k >> 13)))
                        s->ok = false;
        }
        s->len += len;
        return 0;
}

static void test_file_response(void **state)
{
        Fixture *f = *state;
        Sink s = {.ok = true};
        long status = 0;
        json_object *o = NULL;
        assert_int_equal(http_request_raw(f->client, "GET", "/file", -1, on_data, &s, &status, &o),
                         0);
        assert_int_equal(status, 200);
        assert_null(o);
        assert_int_equal(s.len, BIG);
        assert_true(s.ok);
        /* An error answer comes back parsed, not through on_data. */
        Sink e = {.ok = true};
        assert_int_equal(http_request_raw(f->client, "GET", "/nope", -1, on_data, &e, &status, &o),
                         0);
        assert_int_equal(status, 404);
        assert_int_equal(e.len, 0);
        assert_non_null(o);
        json_object_put(o);
}

static void nop_handler(HttpRequest *req, void *userdata)
{
        (void) userdata;
        http_respond_empty(req, 204);
}

/* A certificate without its key (or the other way round), TLS without a TCP
 * listener, and files that are not there: refused, nothing left listening. */
static void test_tls_refused(void **state)
{
        (void) state;
        HttpServer *s = NULL;
        HttpServerConfig c = {.tcp_listen = "127.0.0.1:0", .tcp_open = true, .max_body = 1024};
        c.tls_cert_file = "/nonexistent/cert.pem";
        assert_int_equal(http_server_start(&c, nop_handler, NULL, &s), -EINVAL);
        c.tls_cert_file = NULL;
        c.tls_key_file = "/nonexistent/key.pem";
        assert_int_equal(http_server_start(&c, nop_handler, NULL, &s), -EINVAL);
        c.tls_cert_file = "/nonexistent/cert.pem";
        assert_int_equal(http_server_start(&c, nop_handler, NULL, &s), -ENOENT);
        c.tcp_listen = NULL;
        assert_int_equal(http_server_start(&c, nop_handler, NULL, &s), -EINVAL);
        assert_null(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_spooled_upload, setup, teardown),
                cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
                cmocka_unit_test_setup_teardown(test_file_response, setup, teardown),
                cmocka_unit_test(test_tls_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
