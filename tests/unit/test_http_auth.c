/* The TCP listener's defences (docs/security.md, "The agent's TCP listener"):
 * the token is checked before the body is read, a declared oversize body is
 * kept nowhere, and idle connections without the token are capped per
 * address. Real server on 127.0.0.1 port 0, raw sockets. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "sandpit/http-server.h"
#include "sandpit/macro.h"

#define TOKEN "0123456789abcdef0123456789abcdef"

static int handled; /* atomic builtins */

static void handler(HttpRequest *req, void *userdata)
{
        (void) userdata;
        (void) __atomic_add_fetch(&handled, 1, __ATOMIC_SEQ_CST);
        http_respond_empty(req, 204);
}

static int setup(void **state)
{
        HttpServerConfig cfg = {.tcp_listen = "127.0.0.1:0",
                                .token = TOKEN,
                                .max_body = 1 << 20,
                                .max_unauth = 8,
                                .max_unauth_per_ip = 2};
        HttpServer *s = NULL;
        assert_int_equal(http_server_start(&cfg, handler, NULL, &s), 0);
        *state = s;
        return 0;
}

static int teardown(void **state)
{
        http_server_free(*state);
        return 0;
}

static int connect_to(const HttpServer *s)
{
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t) http_server_tcp_port(s)),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        return fd;
}

/* The answer's first bytes, waiting up to 10 s; "" when none came (a server
 * that waits for the body never answers, as the body is never sent). */
static void read_answer(int fd, char *buf, size_t len)
{
        size_t got = 0;
        buf[0] = 0;
        while (got < len - 1 && !strstr(buf, "\r\n\r\n")) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                if (poll(&p, 1, 10000) <= 0)
                        break;
                ssize_t n = read(fd, buf + got, len - 1 - got);
                if (n <= 0)
                        break;
                got += (size_t) n;
                buf[got] = 0;
        }
}

static void send_head(int fd, const char *auth)
{
        char head[512];
        int n = snprintf(head, sizeof(head),
                         "PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %llu\r\n%s%s%s\r\n",
                         (unsigned long long) 300 << 20, auth ? "Authorization: Bearer " : "",
                         auth ? auth : "", auth ? "\r\n" : "");
        assert_int_equal(write(fd, head, (size_t) n), n);
}

static void test_no_token_is_401_before_the_body(void **state)
{
        const char *tokens[] = {NULL, "wrong-token-wrong-token-wrong-tok"};
        for (size_t i = 0; i < ARRAY_SIZE(tokens); i++) {
                int fd = connect_to(*state);
                send_head(fd, tokens[i]); /* and not a byte of the 300 MiB */
                char buf[2048];
                read_answer(fd, buf, sizeof(buf));
                assert_true(strncmp(buf, "HTTP/1.1 401", 12) == 0);
                (void) close(fd);
        }
        assert_int_equal(__atomic_load_n(&handled, __ATOMIC_SEQ_CST), 0);
}

/* With the token, a declared oversize body is read, kept nowhere, and 413. */
static void test_declared_oversize_is_413(void **state)
{
        int fd = connect_to(*state);
        static const char head[] = "PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\n"
                                   "Authorization: Bearer " TOKEN "\r\n\r\n";
        assert_int_equal(write(fd, head, sizeof(head) - 1), (ssize_t) sizeof(head) - 1);
        char *body = calloc(1, (size_t) 2 << 20);
        assert_non_null(body);
        size_t off = 0;
        while (off < ((size_t) 2 << 20)) {
                ssize_t n = write(fd, body + off, ((size_t) 2 << 20) - off);
                assert_true(n > 0);
                off += (size_t) n;
        }
        free(body);
        char buf[2048];
        read_answer(fd, buf, sizeof(buf));
        assert_true(strncmp(buf, "HTTP/1.1 413", 12) == 0);
        assert_non_null(strstr(buf, "application/json"));
        (void) close(fd);
        assert_int_equal(__atomic_load_n(&handled, __ATOMIC_SEQ_CST), 0);
}

static void test_right_token_is_served(void **state)
{
        int fd = connect_to(*state);
        static const char req[] =
                "GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " TOKEN "\r\n\r\n";
        assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t) sizeof(req) - 1);
        char buf[2048];
        read_answer(fd, buf, sizeof(buf));
        assert_true(strncmp(buf, "HTTP/1.1 204", 12) == 0);
        (void) close(fd);
}

/* Five idle connections from one address with a cap of two: the three oldest
 * are shut down, and a client with the token still gets in. */
static void test_idle_connections_capped_per_address(void **state)
{
        int fds[5];
        for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
                fds[i] = connect_to(*state);
        int closed = 0;
        for (size_t i = 0; i < 3; i++) {
                char c;
                struct pollfd p = {.fd = fds[i], .events = POLLIN};
                if (poll(&p, 1, 10000) == 1 && read(fds[i], &c, 1) <= 0)
                        closed++;
        }
        assert_int_equal(closed, 3);
        test_right_token_is_served(state);
        for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
                (void) close(fds[i]);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_no_token_is_401_before_the_body),
                cmocka_unit_test(test_declared_oversize_is_413),
                cmocka_unit_test(test_right_token_is_served),
                cmocka_unit_test(test_idle_connections_capped_per_address),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
