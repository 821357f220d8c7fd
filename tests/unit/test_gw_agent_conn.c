/* The port proxy's connections to an agent (gateway/src/agent-conn.h): the
 * URL split, and the TLS transport against lib's HTTP server with TLS (as the
 * agent serves it): the CA and the name are checked, a failure says why and
 * leaves no fd open, plain http:// is refused unless allowed, a large body
 * and an upgraded connection go through both ways, an address that never
 * answers times out. Certificates: tls-pem.h. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent-conn.h"
#include "sandpit/http-server.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "tls-pem.h"

#define TOKEN    "conn-token-0123456789abcdef"
#define BIG_SIZE ((size_t) 300 * 1024)

static TlsPemFiles pem;
static const char *ca = pem.ca, *other = pem.other, *empty = pem.empty;
static pid_t server_pid = -1;
static char url[64], plain_url[64];

static void echo_run(void *cls, int fd, const char *extra, size_t extra_len)
{
        (void) cls;
        if (extra_len > 0 && send_all(fd, extra, extra_len) < 0)
                return;
        /* blocking reads and writes, as the agent's tunnel does them */
        char buf[4096];
        ssize_t n;
        while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
                if (send_all(fd, buf, (size_t) n) < 0)
                        return;
}

static void echo_destroy(void *cls)
{
        (void) cls;
}

static void handler(HttpRequest *req, void *userdata)
{
        (void) userdata;
        const char *path = http_request_path(req);
        if (strcmp(path, "/big") == 0) {
                char *body = malloc(BIG_SIZE);
                assert_non_null(body);
                for (size_t i = 0; i < BIG_SIZE; i++)
                        body[i] = (char) ('a' + i % 26);
                http_respond_raw(req, 200, NULL, body, BIG_SIZE);
                return;
        }
        if (strcmp(path, "/echo") == 0) {
                static const HttpUpgradeOps ops = {.run = echo_run, .destroy = echo_destroy};
                static char *const hs[] = {"Upgrade", "test-echo", NULL};
                http_respond_upgrade(req, hs, &ops, NULL);
                return;
        }
        http_respond_error(req, 404, "no");
}

static int setup(void **state)
{
        (void) state;
        if (tls_pem_files_make(&pem, "conn") < 0)
                return -1;
        /* The servers run in a child, so that this process's fds are the
         * client's alone and can be counted. */
        int pp[2];
        if (pipe2(pp, O_CLOEXEC) < 0)
                return -1;
        server_pid = fork();
        if (server_pid < 0)
                return -1;
        if (server_pid == 0) {
                HttpServer *srv = NULL, *plain_srv = NULL;
                HttpServerConfig c = {.tcp_listen = "127.0.0.1:0",
                                      .token = TOKEN,
                                      .tls_cert_file = pem.cert,
                                      .tls_key_file = pem.key,
                                      .max_body = 1024};
                HttpServerConfig p = {
                        .tcp_listen = "127.0.0.1:0", .token = TOKEN, .max_body = 1024};
                unsigned ports[2] = {0, 0};
                if (http_server_start(&c, handler, NULL, &srv) == 0 &&
                    http_server_start(&p, handler, NULL, &plain_srv) == 0) {
                        ports[0] = http_server_tcp_port(srv);
                        ports[1] = http_server_tcp_port(plain_srv);
                }
                (void) write_all(pp[1], ports, sizeof(ports));
                for (;;)
                        pause();
        }
        close(pp[1]);
        unsigned ports[2] = {0, 0};
        ssize_t n = read_full(pp[0], ports, sizeof(ports));
        close(pp[0]);
        if (n != (ssize_t) sizeof(ports) || ports[0] == 0)
                return -1;
        snprintf(url, sizeof(url), "https://127.0.0.1:%u/ignored", ports[0]);
        snprintf(plain_url, sizeof(plain_url), "http://127.0.0.1:%u", ports[1]);
        return 0;
}

static int teardown(void **state)
{
        (void) state;
        if (server_pid > 0) {
                (void) kill(server_pid, SIGKILL);
                (void) waitpid(server_pid, NULL, 0);
        }
        tls_pem_files_remove(&pem);
        return 0;
}

static int count_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        assert_non_null(d);
        int n = 0;
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

static void test_url_host_port(void **state)
{
        (void) state;
        char h[64], p[8];
        assert_int_equal(
                gw_url_host_port("https://10.0.0.1:8443/x", "443", h, sizeof(h), p, sizeof(p)), 0);
        assert_string_equal(h, "10.0.0.1");
        assert_string_equal(p, "8443");
        assert_int_equal(gw_url_host_port("https://agent", "443", h, sizeof(h), p, sizeof(p)), 0);
        assert_string_equal(h, "agent");
        assert_string_equal(p, "443");
        assert_int_equal(
                gw_url_host_port("http://[fd00::1]:80?q", "443", h, sizeof(h), p, sizeof(p)), 0);
        assert_string_equal(h, "fd00::1");
        assert_string_equal(p, "80");
        assert_int_equal(gw_url_host_port("https://[::1]", "443", h, sizeof(h), p, sizeof(p)), 0);
        assert_string_equal(h, "::1");
        assert_string_equal(p, "443");
        const char *bad[] = {"https://",       "https://:80",   "https://h:",      "https://h:0",
                             "https://h:x",    "https://h:1x/", "https://h:70000", "https://[::1",
                             "https://[::1]x", "https://[]:1",  "no-scheme",       "https://,]/",
                             "https://u@h:1",  "https://h x:1"};
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                assert_int_equal(gw_url_host_port(bad[i], "443", h, sizeof(h), p, sizeof(p)),
                                 -EINVAL);
        char tiny[4];
        assert_int_equal(
                gw_url_host_port("https://long-host:1", "443", tiny, sizeof(tiny), p, sizeof(p)),
                -ENAMETOOLONG);
}

/* The response head of a request over c, up to its blank line; the rest of
 * what was read is the body's start: *body_len of it at *body. */
static void request(GwConn *c, const char *head, char *buf, size_t cap, size_t *len)
{
        assert_int_equal(gw_conn_send(c, head, strlen(head)), 0);
        *len = 0;
        while (!memmem(buf, *len, "\r\n\r\n", 4)) {
                assert_true(*len < cap);
                ssize_t n = gw_conn_recv(c, buf + *len, cap - *len);
                assert_true(n > 0);
                *len += (size_t) n;
        }
}

/* A TLS connection to the test server with the right CA and name. */
static GwConn *open_verified(void)
{
        AgentClientTls tls = {.ca_file = ca, .server_name = "sandpit-agent"};
        GwConn *c = NULL;
        char err[256] = "";
        assert_int_equal(gw_conn_open(url, &tls, GW_AGENT_CONNECT_TIMEOUT_MS, &c, err, sizeof(err)),
                         0);
        return c;
}

static void test_tls_verified(void **state)
{
        (void) state;
        GwConn *c = open_verified();
        char *buf = malloc(BIG_SIZE + 4096);
        assert_non_null(buf);
        size_t len = 0;
        request(c,
                "GET /big HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer " TOKEN
                "\r\nConnection: close\r\n\r\n",
                buf, BIG_SIZE + 4096, &len);
        assert_memory_equal(buf, "HTTP/1.1 200", 12);
        /* then to the end of the stream: the whole body, byte for byte */
        ssize_t n;
        while ((n = gw_conn_recv(c, buf + len, BIG_SIZE + 4096 - len)) > 0)
                len += (size_t) n;
        assert_int_equal(n, 0);
        char *body = (char *) memmem(buf, len, "\r\n\r\n", 4) + 4;
        assert_int_equal(len - (size_t) (body - buf), BIG_SIZE);
        for (size_t i = 0; i < BIG_SIZE; i += 4099)
                assert_int_equal(body[i], 'a' + i % 26);
        free(buf);
        gw_conn_free(c);
}

static void test_tls_upgrade_both_ways(void **state)
{
        (void) state;
        GwConn *c = open_verified();
        char buf[8192];
        size_t len = 0;
        request(c,
                "GET /echo HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer " TOKEN
                "\r\nConnection: Upgrade\r\nUpgrade: test-echo\r\n\r\n",
                buf, sizeof(buf), &len);
        assert_memory_equal(buf, "HTTP/1.1 101", 12);
        size_t head = (size_t) ((char *) memmem(buf, len, "\r\n\r\n", 4) + 4 - buf);
        assert_int_equal(len, head); /* nothing comes before we send */
        for (int round = 0; round < 3; round++) {
                char msg[32];
                int m = snprintf(msg, sizeof(msg), "ping %d", round);
                assert_int_equal(gw_conn_send(c, msg, (size_t) m), 0);
                size_t got = 0;
                while (got < (size_t) m) {
                        ssize_t n = gw_conn_recv(c, buf + got, sizeof(buf) - got);
                        if (n <= 0)
                                fail_msg("recv %zd", n);
                        got += (size_t) n;
                }
                assert_int_equal(got, (size_t) m);
                assert_memory_equal(buf, msg, (size_t) m);
        }
        /* a burst larger than the socket buffers, echoed whole */
        size_t big = (size_t) 2 << 20;
        char *out = malloc(big), *in = malloc(big);
        assert_non_null(out);
        assert_non_null(in);
        for (size_t i = 0; i < big; i++)
                out[i] = (char) (i * 7 + i / 4096);
        size_t sent = 0, got = 0;
        while (got < big) {
                /* interleaved, so neither side's buffers fill up for good */
                if (sent < big) {
                        size_t k = big - sent < 65536 ? big - sent : 65536;
                        assert_int_equal(gw_conn_send(c, out + sent, k), 0);
                        sent += k;
                }
                while (got < sent) {
                        ssize_t n = gw_conn_recv(c, in + got, sent - got);
                        if (n <= 0)
                                fail_msg("recv %zd after %zu of %zu", n, got, big);
                        got += (size_t) n;
                }
        }
        assert_memory_equal(in, out, big);
        free(in);
        free(out);
        gw_conn_free(c);
}

/* Each refusal: its errno, a reason in err, and no fd left open. */
static void refused_within(const char *u, const AgentClientTls *tls, int timeout_ms, int want,
                           const char *needle)
{
        int before = count_fds();
        GwConn *c = NULL;
        char err[256] = "";
        assert_int_equal(gw_conn_open(u, tls, timeout_ms, &c, err, sizeof(err)), want);
        assert_null(c);
        if (!strstr(err, needle))
                fail_msg("\"%s\" does not say \"%s\"", err, needle);
        assert_int_equal(count_fds(), before);
}

static void refused(const char *u, const AgentClientTls *tls, int want, const char *needle)
{
        refused_within(u, tls, GW_AGENT_CONNECT_TIMEOUT_MS, want, needle);
}

static void test_tls_refused(void **state)
{
        (void) state;
        AgentClientTls other_ca = {.ca_file = other, .server_name = "sandpit-agent"};
        refused(url, &other_ca, -EKEYREJECTED, "issuer");
        refused(url, &other_ca, -EKEYREJECTED, "sandpit-agent");
        AgentClientTls other_name = {.ca_file = ca, .server_name = "other-agent"};
        refused(url, &other_name, -EKEYREJECTED, "other-agent");
        /* no name: the URL's host, which the certificate does not carry */
        AgentClientTls no_name = {.ca_file = ca};
        refused(url, &no_name, -EKEYREJECTED, "127.0.0.1");
        /* the system's CAs do not know this one */
        AgentClientTls system = {.server_name = "sandpit-agent"};
        refused(url, &system, -EKEYREJECTED, "not accepted");
        AgentClientTls missing = {.ca_file = "/nonexistent/ca.pem", .server_name = "x"};
        refused(url, &missing, -EKEYREJECTED, "/nonexistent/ca.pem");
        AgentClientTls no_cert = {.ca_file = empty, .server_name = "x"};
        refused(url, &no_cert, -EKEYREJECTED, "no certificate");
        /* TLS to a plain HTTP server: the handshake fails */
        char to_plain[80];
        snprintf(to_plain, sizeof(to_plain), "https://%s", plain_url + strlen("http://"));
        AgentClientTls good = {.ca_file = ca, .server_name = "sandpit-agent"};
        refused(to_plain, &good, -ECONNABORTED, "handshake");
        /* plain http:// only when allowed */
        refused(plain_url, &good, -EPROTONOSUPPORT, "--agent-insecure-http");
        refused("ftp://127.0.0.1:1", &good, -EPROTONOSUPPORT, "scheme");
        AgentClientTls allow = {.allow_http = true};
        GwConn *c = NULL;
        char err[256] = "";
        assert_int_equal(
                gw_conn_open(plain_url, &allow, GW_AGENT_CONNECT_TIMEOUT_MS, &c, err, sizeof(err)),
                0);
        gw_conn_free(c);
        refused("http://127.0.0.1:1", &allow, -ECONNREFUSED, "connect");
}

/* An agent address that never answers: a loopback listener whose backlog
 * is full, so the kernel drops further SYNs. The connect gives up after its
 * bound with -ETIMEDOUT and a reason, plain and TLS alike, leaving no fd. */
static void test_connect_timeout(void **state)
{
        (void) state;
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(l >= 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof(sa);
        assert_int_equal(bind(l, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(l, 0), 0);
        assert_int_equal(getsockname(l, (struct sockaddr *) &sa, &sl), 0);
        /* Backlog 0 holds one connection; the others' SYNs are dropped. */
        int fill[3];
        for (size_t i = 0; i < ARRAY_SIZE(fill); i++) {
                fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                assert_true(fill[i] >= 0);
                int r = connect(fill[i], (struct sockaddr *) &sa, sizeof(sa));
                assert_true(r == 0 || errno == EINPROGRESS);
        }
        /* Positive control: the one queued connection is complete, the last
         * is still waiting for its SYN's answer. */
        struct pollfd pf[2] = {{.fd = fill[0], .events = POLLOUT},
                               {.fd = fill[ARRAY_SIZE(fill) - 1], .events = POLLOUT}};
        assert_int_equal(poll(pf, 2, 5000), 1);
        assert_true(pf[0].revents & POLLOUT);
        assert_int_equal(pf[1].revents, 0);
        char u[64];
        snprintf(u, sizeof(u), "http://127.0.0.1:%u", ntohs(sa.sin_port));
        AgentClientTls allow = {.allow_http = true};
        refused_within(u, &allow, 300, -ETIMEDOUT, "did not answer the connect within 300 ms");
        snprintf(u, sizeof(u), "https://127.0.0.1:%u", ntohs(sa.sin_port));
        AgentClientTls good = {.ca_file = ca, .server_name = "sandpit-agent"};
        refused_within(u, &good, 300, -ETIMEDOUT, "did not answer the connect");
        for (size_t i = 0; i < ARRAY_SIZE(fill); i++)
                close(fill[i]);
        close(l);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_url_host_port),         cmocka_unit_test(test_tls_verified),
                cmocka_unit_test(test_tls_upgrade_both_ways), cmocka_unit_test(test_tls_refused),
                cmocka_unit_test(test_connect_timeout),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
