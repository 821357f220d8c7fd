/* lib/ticker: calls on its thread every period, none after ticker_stop. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "sandpit/ticker.h"

static int calls; /* atomic builtins */

static void tick(void *userdata)
{
        (void) __atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST);
        assert_ptr_equal(userdata, &calls);
}

static void test_ticks_until_stopped(void **state)
{
        (void) state;
        Ticker *t = NULL;
        assert_int_equal(ticker_start(5, tick, &calls, &t), 0);
        /* Waits for three calls (bounded, so a ticker that never calls fails). */
        for (int i = 0; i < 2000 && __atomic_load_n(&calls, __ATOMIC_SEQ_CST) < 3; i++)
                nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
        assert_true(__atomic_load_n(&calls, __ATOMIC_SEQ_CST) >= 3);
        ticker_stop(t);
        int after = __atomic_load_n(&calls, __ATOMIC_SEQ_CST);
        nanosleep(&(struct timespec){.tv_nsec = 30000000}, NULL);
        assert_int_equal(__atomic_load_n(&calls, __ATOMIC_SEQ_CST), after);
        ticker_stop(NULL);
}

static void test_bad_arguments(void **state)
{
        (void) state;
        Ticker *t = NULL;
        assert_int_equal(ticker_start(0, tick, NULL, &t), -EINVAL);
        assert_int_equal(ticker_start(10, NULL, NULL, &t), -EINVAL);
        assert_null(t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ticks_until_stopped),
                cmocka_unit_test(test_bad_arguments),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
