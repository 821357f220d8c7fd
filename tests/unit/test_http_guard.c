/* lib/http-guard: the caps on unauthenticated connections, per address and in
 * all, the header deadline, and what authenticating and closing change. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sandpit/http-guard.h"

typedef struct {
        int dropped[256];
        size_t n;
} Drops;

static void record(void *cls, int handle)
{
        Drops *d = cls;
        assert_true(d->n < 256);
        d->dropped[d->n++] = handle;
}

static const unsigned char ip_a[4] = {198, 18, 0, 1};
static const unsigned char ip_b[4] = {198, 18, 0, 2};
static const unsigned char ip_c[4] = {198, 18, 0, 3};

static HttpGuard *guard(unsigned total, unsigned per_addr, uint64_t age, Drops *d)
{
        HttpGuardConfig cfg = {.max_total = total,
                               .max_per_addr = per_addr,
                               .max_age_ms = age,
                               .drop = record,
                               .cls = d};
        HttpGuard *g = NULL;
        assert_int_equal(http_guard_new(&cfg, &g), 0);
        return g;
}

static void test_bad_config(void **state)
{
        (void) state;
        HttpGuard *g = NULL;
        HttpGuardConfig cfg = {.max_total = 0, .max_per_addr = 1};
        assert_int_equal(http_guard_new(&cfg, &g), -EINVAL);
        cfg = (HttpGuardConfig){.max_total = 1, .max_per_addr = 0};
        assert_int_equal(http_guard_new(&cfg, &g), -EINVAL);
        assert_int_equal(http_guard_new(NULL, &g), -EINVAL);
}

/* The oldest connection of the same address makes room; others stay. */
static void test_per_address_cap_drops_oldest_of_that_address(void **state)
{
        (void) state;
        Drops d = {0};
        HttpGuard *g = guard(100, 3, 0, &d);
        HttpGuardConn *c[8] = {0};
        assert_int_equal(http_guard_add(g, ip_b, 4, 100, 1, &c[0]), 0);
        for (int i = 1; i <= 3; i++)
                assert_int_equal(http_guard_add(g, ip_a, 4, i, (uint64_t) i + 1, &c[i]), 0);
        assert_int_equal(d.n, 0);
        assert_int_equal(http_guard_unauthenticated(g, ip_a, 4), 3);
        assert_int_equal(http_guard_add(g, ip_a, 4, 4, 10, &c[4]), 0);
        assert_int_equal(d.n, 1);
        assert_int_equal(d.dropped[0], 1); /* a's oldest, not b's older one */
        assert_int_equal(http_guard_unauthenticated(g, ip_a, 4), 3);
        assert_int_equal(http_guard_unauthenticated(g, ip_b, 4), 1);
        assert_int_equal(http_guard_unauthenticated(g, NULL, 0), 4);
        assert_int_equal(http_guard_dropped(g), 1);
        for (int i = 0; i <= 4; i++)
                http_guard_remove(g, c[i]);
        assert_int_equal(http_guard_unauthenticated(g, NULL, 0), 0);
        http_guard_free(g);
}

/* Past the total, the oldest of all goes, whatever its address. */
static void test_total_cap_drops_oldest(void **state)
{
        (void) state;
        Drops d = {0};
        HttpGuard *g = guard(4, 4, 0, &d);
        HttpGuardConn *c[16] = {0};
        const unsigned char *ips[] = {ip_a, ip_b, ip_c};
        for (int i = 0; i < 10; i++)
                assert_int_equal(http_guard_add(g, ips[i % 3], 4, i, (uint64_t) i, &c[i]), 0);
        assert_int_equal(http_guard_unauthenticated(g, NULL, 0), 4);
        assert_int_equal(d.n, 6);
        for (int i = 0; i < 6; i++)
                assert_int_equal(d.dropped[i], i);
        /* Removing dropped ones (their close) changes nothing more. */
        for (int i = 0; i < 6; i++)
                http_guard_remove(g, c[i]);
        assert_int_equal(http_guard_unauthenticated(g, NULL, 0), 4);
        for (int i = 6; i < 10; i++)
                http_guard_remove(g, c[i]);
        http_guard_free(g);
}

/* An authenticated connection no longer counts and is never dropped: a
 * flood of strangers cannot push a client with the token out. */
static void test_authenticated_is_exempt(void **state)
{
        (void) state;
        Drops d = {0};
        HttpGuard *g = guard(2, 2, 1000, &d);
        HttpGuardConn *good = NULL, *c[200] = {0};
        assert_int_equal(http_guard_add(g, ip_a, 4, 7, 0, &good), 0);
        http_guard_authenticated(g, good);
        assert_int_equal(http_guard_unauthenticated(g, NULL, 0), 0);
        for (int i = 0; i < 200; i++)
                assert_int_equal(http_guard_add(g, ip_a, 4, 1000 + i, 5000 + (uint64_t) i, &c[i]),
                                 0);
        assert_int_equal(http_guard_unauthenticated(g, NULL, 0), 2);
        for (size_t i = 0; i < d.n; i++)
                assert_int_not_equal(d.dropped[i], 7);
        assert_int_equal(http_guard_dropped(g), 198);
        http_guard_authenticated(g, good); /* twice is harmless */
        http_guard_remove(g, good);
        for (int i = 0; i < 200; i++)
                http_guard_remove(g, c[i]);
        http_guard_free(g);
}

/* Headers must be in within max_age: an older unauthenticated connection
 * (one that trickles bytes so the idle timeout never fires) is dropped when
 * the next connection arrives. */
static void test_header_deadline(void **state)
{
        (void) state;
        Drops d = {0};
        HttpGuard *g = guard(100, 100, 1000, &d);
        HttpGuardConn *a = NULL, *b = NULL, *c = NULL, *e = NULL;
        assert_int_equal(http_guard_add(g, ip_a, 4, 1, 0, &a), 0);
        assert_int_equal(http_guard_add(g, ip_b, 4, 2, 500, &b), 0);
        assert_int_equal(http_guard_add(g, ip_c, 4, 3, 999, &c), 0);
        assert_int_equal(d.n, 0);
        assert_int_equal(http_guard_add(g, ip_c, 4, 4, 1500, &e), 0);
        assert_int_equal(d.n, 2); /* 0 and 500 are 1000 ms old; 999 is not yet */
        assert_int_equal(d.dropped[0], 1);
        assert_int_equal(d.dropped[1], 2);
        assert_int_equal(http_guard_unauthenticated(g, NULL, 0), 2);
        http_guard_remove(g, a);
        http_guard_remove(g, b);
        http_guard_remove(g, c);
        http_guard_remove(g, e);
        http_guard_remove(g, NULL);
        http_guard_free(g);
}

/* Connections without an address (not IPv4) share one key; long keys are refused. */
static void test_addresses(void **state)
{
        (void) state;
        Drops d = {0};
        HttpGuard *g = guard(10, 1, 0, &d);
        HttpGuardConn *a = NULL, *b = NULL, *x = NULL;
        unsigned char too_long[HTTP_GUARD_ADDR_MAX + 1];
        memset(too_long, 1, sizeof(too_long));
        assert_int_equal(http_guard_add(g, too_long, sizeof(too_long), 9, 0, &x), -EINVAL);
        assert_int_equal(http_guard_add(g, NULL, 0, 1, 0, &a), 0);
        assert_int_equal(http_guard_add(g, NULL, 0, 2, 1, &b), 0);
        assert_int_equal(d.n, 1);
        assert_int_equal(d.dropped[0], 1);
        http_guard_remove(g, a);
        http_guard_remove(g, b);
        http_guard_free(g);
        http_guard_free(NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bad_config),
                cmocka_unit_test(test_per_address_cap_drops_oldest_of_that_address),
                cmocka_unit_test(test_total_cap_drops_oldest),
                cmocka_unit_test(test_authenticated_is_exempt),
                cmocka_unit_test(test_header_deadline),
                cmocka_unit_test(test_addresses),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
