/* TLS of lib's HTTP client against lib's HTTP server (libmicrohttpd with
 * GnuTLS): http_client_set_tls() checks the server's certificate against a
 * CA file and a fixed name whatever host the URL names (curl's CONNECT_TO),
 * and agent_client_set_tls() applies that to every agent client of a process
 * and refuses http:// when told to. The certificates are tls-pem.h's. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandpit/agent-client.h"
#include "sandpit/http-client.h"
#include "sandpit/http-server.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "tls-pem.h"

#define TOKEN "tls-token-0123456789abcdef"

static TlsPemFiles pem;
static const char *ca = pem.ca, *other = pem.other;
static HttpServer *srv;
static char url[64];

static void handler(HttpRequest *req, void *userdata)
{
        (void) userdata;
        json_object *o = json_object_new_array();
        json_object *w = json_object_new_object();
        (void) json_object_object_add(w, "sandboxes", o);
        http_respond_json(req, 200, w);
}

static int setup(void **state)
{
        (void) state;
        if (tls_pem_files_make(&pem, "tls") < 0)
                return -1;
        HttpServerConfig c = {.tcp_listen = "127.0.0.1:0",
                              .token = TOKEN,
                              .tls_cert_file = pem.cert,
                              .tls_key_file = pem.key,
                              .max_body = 1024};
        if (http_server_start(&c, handler, NULL, &srv) < 0)
                return -1;
        snprintf(url, sizeof(url), "https://127.0.0.1:%u", http_server_tcp_port(srv));
        return 0;
}

static int teardown(void **state)
{
        (void) state;
        http_server_free(srv);
        tls_pem_files_remove(&pem);
        return 0;
}

/* One GET through a client of u with these TLS settings: 0 and the status,
 * or the transport's errno. */
static int get(const char *u, const char *ca_file, const char *name, long *status)
{
        cleanup_http_client HttpClient *c = NULL;
        assert_int_equal(http_client_new(u, TOKEN, &c), 0);
        http_client_set_timeout(c, 10000);
        int r = http_client_set_tls(c, ca_file, name);
        if (r < 0)
                return r;
        cleanup_http_client HttpClient *d = NULL; /* a dup keeps the settings */
        assert_int_equal(http_client_dup(c, &d), 0);
        *status = 0;
        r = http_request_json(d, "GET", "/v1/sandboxes", NULL, status, NULL);
        return r;
}

static void test_verify(void **state)
{
        (void) state;
        long status = 0;
        assert_int_equal(get(url, ca, "sandpit-agent", &status), 0);
        assert_int_equal(status, 200);
        /* the URL's own host (127.0.0.1) is not the certificate's name */
        assert_int_equal(get(url, ca, NULL, &status), -EKEYREJECTED);
        assert_int_equal(get(url, ca, "other-agent", &status), -EKEYREJECTED);
        assert_int_equal(get(url, other, "sandpit-agent", &status), -EKEYREJECTED);
        /* the system's CAs do not know this one */
        assert_int_equal(get(url, NULL, "sandpit-agent", &status), -EKEYREJECTED);
        /* set again without a name: the URL's own host again (not the certificate's) */
        {
                cleanup_http_client HttpClient *c = NULL;
                assert_int_equal(http_client_new(url, TOKEN, &c), 0);
                http_client_set_timeout(c, 10000);
                assert_int_equal(http_client_set_tls(c, ca, "sandpit-agent"), 0);
                assert_int_equal(http_request_json(c, "GET", "/v1/sandboxes", NULL, &status, NULL),
                                 0);
                assert_int_equal(http_client_set_tls(c, ca, NULL), 0);
                assert_int_equal(http_request_json(c, "GET", "/v1/sandboxes", NULL, &status, NULL),
                                 -EKEYREJECTED);
        }
        /* a prefix after the port is kept */
        char prefixed[96];
        snprintf(prefixed, sizeof(prefixed), "%s/", url);
        assert_int_equal(get(prefixed, ca, "sandpit-agent", &status), 0);
        assert_int_equal(status, 200);
}

static void test_set_tls_refused(void **state)
{
        (void) state;
        cleanup_http_client HttpClient *c = NULL;
        assert_int_equal(http_client_new("http://127.0.0.1:1", NULL, &c), 0);
        assert_int_equal(http_client_set_tls(c, ca, NULL), -EINVAL);
        const char *bad_urls[] = {"https://h:0", "https://h:x", "https://h:70000", "https://[::1",
                                  "https://[::1]x"};
        for (size_t i = 0; i < ARRAY_SIZE(bad_urls); i++) {
                cleanup_http_client HttpClient *b = NULL;
                assert_int_equal(http_client_new(bad_urls[i], NULL, &b), 0);
                assert_int_equal(http_client_set_tls(b, NULL, "sandpit-agent"), -EINVAL);
        }
        const char *good_urls[] = {"https://h", "https://h:8443/p", "https://[::1]:8443",
                                   "https://[::1]"};
        for (size_t i = 0; i < ARRAY_SIZE(good_urls); i++) {
                cleanup_http_client HttpClient *g = NULL;
                assert_int_equal(http_client_new(good_urls[i], NULL, &g), 0);
                assert_int_equal(http_client_set_tls(g, ca, "sandpit-agent"), 0);
                assert_string_equal(http_client_url(g), good_urls[i]);
        }
        const char *bad_names[] = {"", "a:b", "a/b", "a b", "[x]"};
        cleanup_http_client HttpClient *n = NULL;
        assert_int_equal(http_client_new("https://h:1", NULL, &n), 0);
        for (size_t i = 0; i < ARRAY_SIZE(bad_names); i++)
                assert_int_equal(http_client_set_tls(n, NULL, bad_names[i]), -EINVAL);
}

static void test_agent_client_tls(void **state)
{
        (void) state;
        AgentClient *c = NULL;
        /* the process's settings: this CA and name, no plain HTTP */
        assert_int_equal(agent_client_set_tls(
                                 &(AgentClientTls){.ca_file = ca, .server_name = "sandpit-agent"}),
                         0);
        assert_int_equal(agent_client_new("http://127.0.0.1:1", TOKEN, &c), -EPROTONOSUPPORT);
        assert_null(c);
        assert_int_equal(agent_client_new("unix:///nonexistent.sock", NULL, &c), 0);
        agent_client_free(c);
        c = NULL;
        assert_int_equal(agent_client_new(url, TOKEN, &c), 0);
        agent_client_set_timeout(c, 10000);
        json_object *list = NULL;
        assert_int_equal(agent_client_list(c, NULL, &list), 0);
        json_object_put(list);
        AgentClient *d = NULL;
        assert_int_equal(agent_client_dup(c, &d), 0);
        assert_int_equal(agent_client_list(d, NULL, &list), 0);
        json_object_put(list);
        agent_client_free(d);
        agent_client_free(c);
        c = NULL;

        /* another CA: the certificate is refused, and said */
        assert_int_equal(agent_client_set_tls(&(AgentClientTls){.ca_file = other,
                                                                .server_name = "sandpit-agent",
                                                                .allow_http = true}),
                         0);
        assert_int_equal(agent_client_new(url, TOKEN, &c), 0);
        agent_client_set_timeout(c, 10000);
        assert_int_equal(agent_client_list(c, NULL, &list), -EKEYREJECTED);
        assert_int_equal(agent_client_error(c)->status, 0);
        assert_true(agent_client_error(c)->message[0] != '\0');
        agent_client_free(c);
        c = NULL;
        /* allow_http: http:// is taken (nothing listens there) */
        assert_int_equal(agent_client_new("http://127.0.0.1:1", TOKEN, &c), 0);
        agent_client_free(c);
        c = NULL;

        assert_int_equal(agent_client_set_tls(&(AgentClientTls){.server_name = ""}), -EINVAL);
        assert_int_equal(agent_client_set_tls(NULL), 0);
        assert_int_equal(agent_client_new("http://127.0.0.1:1", TOKEN, &c), 0);
        agent_client_free(c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_verify),
                cmocka_unit_test(test_set_tls_refused),
                cmocka_unit_test(test_agent_client_tls),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
