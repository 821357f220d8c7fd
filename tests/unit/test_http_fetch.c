/* lib/http-fetch: which addresses an ADD of a URL may connect to (the pure
 * classifier, the CIDR parser, and the check on socket addresses). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "sandpit/http-fetch.h"
#include "sandpit/macro.h"

/* The IPv6 form of a literal (IPv4 as ::ffff:a.b.c.d). */
static void addr16(const char *s, uint8_t a[16])
{
        struct in_addr v4;
        if (inet_pton(AF_INET, s, &v4) == 1) {
                memset(a, 0, 10);
                a[10] = a[11] = 0xff;
                memcpy(a + 12, &v4, 4);
                return;
        }
        assert_int_equal(inet_pton(AF_INET6, s, a), 1);
}

static HttpAddrClass class_of(const char *s, const HttpFetchOptions *o)
{
        uint8_t a[16];
        addr16(s, a);
        return http_fetch_addr_class(a, o);
}

static void test_special_and_public(void **state)
{
        (void) state;
        const HttpFetchOptions none = {0};
        static const char *special[] = {
                "127.0.0.1",
                "127.255.255.254",
                "0.0.0.0",
                "0.1.2.3",
                "10.0.0.1",
                "172.16.0.1",
                "172.31.255.255",
                "192.168.1.1",
                "169.254.169.254",
                "100.64.0.1",
                "100.127.255.255",
                "192.0.0.8",
                "224.0.0.1",
                "239.255.255.250",
                "240.0.0.1",
                "255.255.255.255",
                "::",
                "::1",
                "::127.0.0.1",
                "::ffff:127.0.0.1",
                "::ffff:10.1.2.3",
                "::ffff:169.254.169.254",
                "fe80::1",
                "febf::1",
                "fec0::1",
                "fc00::1",
                "fd12:3456::1",
                "ff02::1",
                "64:ff9b::7f00:1",
                "64:ff9b::a9fe:a9fe",
                "2002:7f00:1::1",
                "2002:a9fe:a9fe::",
        };
        for (size_t i = 0; i < ARRAY_SIZE(special); i++) {
                if (class_of(special[i], &none) != HTTP_ADDR_SPECIAL)
                        fail_msg("%s is not special", special[i]);
        }
        static const char *public[] = {
                "1.1.1.1",        "8.8.8.8",         "172.15.255.255",  "172.32.0.1",
                "100.63.255.255", "100.128.0.0",     "169.253.255.255", "192.0.1.1",
                "192.169.0.1",    "198.18.0.1",      "223.255.255.255", "11.0.0.1",
                "2001:db8::1",    "2606:4700::1111", "::ffff:8.8.8.8",  "64:ff9b::808:808",
                "fbff::1",        "2002:808:808::1",
        };
        for (size_t i = 0; i < ARRAY_SIZE(public); i++) {
                if (class_of(public[i], &none) != HTTP_ADDR_PUBLIC)
                        fail_msg("%s is not public", public[i]);
        }
}

static void test_allow_and_deny(void **state)
{
        (void) state;
        HttpFetchCidr allow[2], deny[1];
        assert_int_equal(http_fetch_cidr_parse("127.0.0.1/32", &allow[0]), 0);
        assert_int_equal(http_fetch_cidr_parse("fd00::/8", &allow[1]), 0);
        assert_int_equal(http_fetch_cidr_parse("198.18.0.0/15", &deny[0]), 0);
        const HttpFetchOptions o = {.allow = allow, .nallow = 2, .deny = deny, .ndeny = 1};
        assert_int_equal(class_of("127.0.0.1", &o), HTTP_ADDR_ALLOWED);
        /* the IPv4-mapped spelling is the same address */
        assert_int_equal(class_of("::ffff:127.0.0.1", &o), HTTP_ADDR_ALLOWED);
        assert_int_equal(class_of("127.0.0.2", &o), HTTP_ADDR_SPECIAL);
        assert_int_equal(class_of("::1", &o), HTTP_ADDR_SPECIAL);
        assert_int_equal(class_of("fd12::1", &o), HTTP_ADDR_ALLOWED);
        assert_int_equal(class_of("fc00::1", &o), HTTP_ADDR_SPECIAL);
        assert_int_equal(class_of("198.19.255.255", &o), HTTP_ADDR_DENIED);
        assert_int_equal(class_of("198.20.0.0", &o), HTTP_ADDR_PUBLIC);
        /* an allow range wins over a deny one */
        const HttpFetchOptions both = {.allow = deny, .nallow = 1, .deny = deny, .ndeny = 1};
        assert_int_equal(class_of("198.18.3.4", &both), HTTP_ADDR_ALLOWED);
}

static void test_cidr_parse(void **state)
{
        (void) state;
        HttpFetchCidr c;
        uint8_t a[16];
        assert_int_equal(http_fetch_cidr_parse("10.0.0.0/8", &c), 0);
        assert_int_equal(c.prefix, 104);
        addr16("10.255.0.1", a);
        assert_true(http_fetch_cidr_contains(&c, a));
        addr16("11.0.0.0", a);
        assert_false(http_fetch_cidr_contains(&c, a));
        assert_int_equal(http_fetch_cidr_parse("192.168.1.7", &c), 0);
        assert_int_equal(c.prefix, 128);
        assert_int_equal(http_fetch_cidr_parse("::1", &c), 0);
        assert_int_equal(c.prefix, 128);
        assert_int_equal(http_fetch_cidr_parse("fe80::/10", &c), 0);
        addr16("febf:ffff::1", a);
        assert_true(http_fetch_cidr_contains(&c, a));
        addr16("fec0::", a);
        assert_false(http_fetch_cidr_contains(&c, a));
        assert_int_equal(http_fetch_cidr_parse("0.0.0.0/0", &c), 0);
        addr16("8.8.8.8", a);
        assert_true(http_fetch_cidr_contains(&c, a));
        addr16("2001:db8::1", a);
        assert_false(http_fetch_cidr_contains(&c, a)); /* IPv4 /0 is IPv4 only */
        static const char *bad[] = {"",           "10.0.0.1/8", "10.0.0.0/33", "::/129",
                                    "10.0.0.0/",  "10.0.0.0/x", "example.com", "10.0.0.0/-1",
                                    "fe80::1/10", "1.2.3.4/ 8", "0x7f000001"};
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                if (http_fetch_cidr_parse(bad[i], &c) != -EINVAL)
                        fail_msg("\"%s\" parsed", bad[i]);
        }
}

static void test_addr_check(void **state)
{
        (void) state;
        char why[128];
        const HttpFetchOptions none = {0};
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(80)};
        assert_int_equal(inet_pton(AF_INET, "169.254.169.254", &in.sin_addr), 1);
        assert_int_equal(http_fetch_addr_check((struct sockaddr *) &in, &none, why, sizeof(why)),
                         -EACCES);
        assert_string_equal(why, "169.254.169.254 is a private/loopback/link-local address");
        struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(80)};
        assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6.sin6_addr), 1);
        assert_int_equal(http_fetch_addr_check((struct sockaddr *) &in6, &none, why, sizeof(why)),
                         -EACCES);
        assert_string_equal(why, "::ffff:127.0.0.1 is a private/loopback/link-local address");
        HttpFetchCidr deny;
        assert_int_equal(http_fetch_cidr_parse("198.18.0.0/15", &deny), 0);
        const HttpFetchOptions o = {.deny = &deny, .ndeny = 1};
        assert_int_equal(inet_pton(AF_INET, "198.18.0.9", &in.sin_addr), 1);
        assert_int_equal(http_fetch_addr_check((struct sockaddr *) &in, &o, why, sizeof(why)),
                         -EACCES);
        assert_string_equal(why, "198.18.0.9 is in a range this node blocks");
        /* a documentation address is on none of this machine's interfaces */
        assert_int_equal(inet_pton(AF_INET6, "2001:db8::7", &in6.sin6_addr), 1);
        assert_int_equal(http_fetch_addr_check((struct sockaddr *) &in6, &none, why, sizeof(why)),
                         0);
        struct sockaddr un = {.sa_family = AF_UNIX};
        assert_int_equal(http_fetch_addr_check(&un, &none, why, sizeof(why)), -EACCES);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_special_and_public),
                cmocka_unit_test(test_allow_and_deny),
                cmocka_unit_test(test_cidr_parse),
                cmocka_unit_test(test_addr_check),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
