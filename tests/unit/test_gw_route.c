/* The gateway's request routing: by E2b-Sandbox-Id/-Port headers, by host name
 * "<port>-<id>.<domain>", both agreeing, and the errors for bad ids, ports and
 * hosts. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "route.h"

#define DOMAIN "sbx.example.com"

static void resolves(const char *host, const char *id, const char *port, const char *domain,
                     GwRouteKind kind, const char *want_id, uint16_t want_port)
{
        GwRoute r;
        char err[256] = "";
        memset(&r, 0xaa, sizeof(r));
        int x = gw_route_resolve(host, id, port, domain, &r, err, sizeof(err));
        if (x != 0)
                fail_msg("%s / %s / %s: %s", host ? host : "-", id ? id : "-", port ? port : "-",
                         err);
        assert_int_equal(r.kind, kind);
        assert_string_equal(r.sandbox_id, want_id);
        assert_int_equal(r.port, want_port);
}

static void refuses(const char *host, const char *id, const char *port, const char *domain,
                    const char *want_msg)
{
        GwRoute r = {.kind = GW_ROUTE_ENVD};
        char err[256] = "";
        assert_int_equal(gw_route_resolve(host, id, port, domain, &r, err, sizeof(err)), -EINVAL);
        if (!strstr(err, want_msg))
                fail_msg("message \"%s\" lacks \"%s\"", err, want_msg);
}

static void test_headers(void **state)
{
        (void) state;
        resolves("10.0.0.5:3001", "sbx1", "49983", NULL, GW_ROUTE_ENVD, "sbx1", 49983);
        resolves("10.0.0.5:3001", "sbx1", "49999", NULL, GW_ROUTE_CODE, "sbx1", 49999);
        resolves("localhost:3001", "a-b-c", "8080", DOMAIN, GW_ROUTE_PORT, "a-b-c", 8080);
        resolves(NULL, "x", "1", NULL, GW_ROUTE_PORT, "x", 1);
        resolves(NULL, "x", "65535", NULL, GW_ROUTE_PORT, "x", 65535);
        /* the debug mode id */
        refuses(NULL, "debug_sandbox_id", "49983", NULL, "E2b-Sandbox-Id must be");
        refuses(NULL, "sbx1", NULL, NULL, "must be sent together");
        refuses(NULL, NULL, "49983", NULL, "must be sent together");
        refuses(NULL, "", "49983", NULL, "E2b-Sandbox-Id must be");
        refuses(NULL, "-abc", "49983", NULL, "E2b-Sandbox-Id must be");
        refuses(NULL, "ABC", "49983", NULL, "E2b-Sandbox-Id must be");
        refuses(NULL, "a/b", "49983", NULL, "E2b-Sandbox-Id must be");
        char long_id[80];
        memset(long_id, 'a', 64);
        long_id[64] = 0;
        refuses(NULL, long_id, "49983", NULL, "E2b-Sandbox-Id must be");
        long_id[63] = 0;
        resolves(NULL, long_id, "49983", NULL, GW_ROUTE_ENVD, long_id, 49983);
        static const char *const bad_ports[] = {"0",  "65536",  "049983", "",
                                                "-1", "49983 ", "4a",     "123456"};
        for (size_t i = 0; i < sizeof(bad_ports) / sizeof(bad_ports[0]); i++)
                refuses(NULL, "sbx1", bad_ports[i], NULL, "E2b-Sandbox-Port must be");
}

static void test_control_plane(void **state)
{
        (void) state;
        resolves(NULL, NULL, NULL, NULL, GW_ROUTE_CONTROL, "", 0);
        resolves("10.0.0.5:3000", NULL, NULL, DOMAIN, GW_ROUTE_CONTROL, "", 0);
        resolves("api." DOMAIN, NULL, NULL, DOMAIN, GW_ROUTE_CONTROL, "", 0);
        resolves("api." DOMAIN ":443", NULL, NULL, DOMAIN, GW_ROUTE_CONTROL, "", 0);
        resolves(DOMAIN, NULL, NULL, DOMAIN, GW_ROUTE_CONTROL, "", 0);
        resolves("[::1]:3000", NULL, NULL, DOMAIN, GW_ROUTE_CONTROL, "", 0);
        /* a sandbox-looking host under another domain, or deeper down */
        resolves("49983-sbx1.other.com", NULL, NULL, DOMAIN, GW_ROUTE_CONTROL, "", 0);
        resolves("49983-sbx1.x." DOMAIN, NULL, NULL, DOMAIN, GW_ROUTE_CONTROL, "", 0);
        resolves("49983-sbx1" DOMAIN, NULL, NULL, DOMAIN, GW_ROUTE_CONTROL, "", 0);
        /* host routing off without a domain */
        resolves("49983-sbx1." DOMAIN, NULL, NULL, NULL, GW_ROUTE_CONTROL, "", 0);
        resolves("49983-sbx1." DOMAIN, NULL, NULL, "", GW_ROUTE_CONTROL, "", 0);
}

static void test_host(void **state)
{
        (void) state;
        resolves("49983-sbx1." DOMAIN, NULL, NULL, DOMAIN, GW_ROUTE_ENVD, "sbx1", 49983);
        resolves("49999-sbx1." DOMAIN ":443", NULL, NULL, DOMAIN, GW_ROUTE_CODE, "sbx1", 49999);
        resolves("8000-my-sbx-2." DOMAIN, NULL, NULL, DOMAIN, GW_ROUTE_PORT, "my-sbx-2", 8000);
        /* case-insensitive host names, a trailing dot, the domain with one */
        resolves("49983-SBX1.SBX.Example.COM.", NULL, NULL, DOMAIN, GW_ROUTE_ENVD, "sbx1", 49983);
        resolves("49983-sbx1." DOMAIN, NULL, NULL, DOMAIN ".", GW_ROUTE_ENVD, "sbx1", 49983);
        refuses("49983." DOMAIN, NULL, NULL, DOMAIN, "<port>-<sandbox id>.<domain>");
        refuses("0-sbx1." DOMAIN, NULL, NULL, DOMAIN, "the port before '-'");
        refuses("70000-sbx1." DOMAIN, NULL, NULL, DOMAIN, "the port before '-'");
        refuses("4x-sbx1." DOMAIN, NULL, NULL, DOMAIN, "the port before '-'");
        refuses("49983-." DOMAIN, NULL, NULL, DOMAIN, "the sandbox id");
        refuses("49983--x." DOMAIN, NULL, NULL, DOMAIN, "the sandbox id");
        refuses("49983-a_b." DOMAIN, NULL, NULL, DOMAIN, "the sandbox id");
        char host[200];
        memset(host, 0, sizeof(host));
        memcpy(host, "1-", 2);
        memset(host + 2, 'a', 64);
        strcat(host, "." DOMAIN);
        refuses(host, NULL, NULL, DOMAIN, "the sandbox id");
}

static void test_both(void **state)
{
        (void) state;
        /* E2B_DOMAIN mode: the SDK sends the headers too; they agree */
        resolves("49983-sbx1." DOMAIN, "sbx1", "49983", DOMAIN, GW_ROUTE_ENVD, "sbx1", 49983);
        refuses("49983-sbx1." DOMAIN, "sbx2", "49983", DOMAIN, "but the E2b-Sandbox-Id/-Port");
        refuses("49983-sbx1." DOMAIN, "sbx1", "49999", DOMAIN, "but the E2b-Sandbox-Id/-Port");
        /* headers with a control-plane host: the headers decide */
        resolves("api." DOMAIN, "sbx1", "49999", DOMAIN, GW_ROUTE_CODE, "sbx1", 49999);
        assert_string_equal(gw_route_kind_name(GW_ROUTE_CODE), "code");
        assert_string_equal(gw_route_kind_name(GW_ROUTE_CONTROL), "control");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_headers),
                cmocka_unit_test(test_control_plane),
                cmocka_unit_test(test_host),
                cmocka_unit_test(test_both),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
