/* lib/http-status: the one status <-> errno table, both ways (STYLE.md). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sandpit/http-status.h"
#include "sandpit/macro.h"

static void test_status_to_errno(void **state)
{
        (void) state;
        static const struct {
                long status;
                const char *reason;
                int r;
        } cases[] = {
                {200, NULL, 0},
                {204, NULL, 0},
                {299, NULL, 0},
                {400, "BadRequest", -EINVAL},
                {400, NULL, -EINVAL},
                {422, "Invalid", -EINVAL},
                {401, NULL, -EACCES},
                {403, "Forbidden", -EACCES},
                {404, NULL, -ENOENT},
                {405, NULL, -EOPNOTSUPP},
                {406, NULL, -EOPNOTSUPP},
                {415, NULL, -EOPNOTSUPP},
                {501, NULL, -EOPNOTSUPP},
                {409, "AlreadyExists", -EEXIST},
                {409, "Conflict", -EBUSY},
                {409, NULL, -EBUSY},
                {410, "Expired", -ESTALE},
                {410, NULL, -ESTALE},
                {413, NULL, -E2BIG},
                {429, NULL, -EAGAIN},
                {500, NULL, -EIO},
                {502, NULL, -EIO},
                {503, "ServiceUnavailable", -EIO},
                {503, NULL, -EIO},
                {504, NULL, -EIO},
                {599, NULL, -EIO},
                {0, NULL, -EPROTO},
                {100, NULL, -EPROTO},
                {302, NULL, -EPROTO},
                {418, NULL, -EPROTO},
                {600, NULL, -EPROTO},
                {-1, NULL, -EPROTO},
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                int r = http_status_to_errno(cases[i].status, cases[i].reason);
                if (r != cases[i].r)
                        fail_msg("%ld %s: %d, want %d", cases[i].status,
                                 cases[i].reason ? cases[i].reason : "-", r, cases[i].r);
        }
        /* The reason matters only for 409. */
        assert_int_equal(http_status_to_errno(404, "AlreadyExists"), -ENOENT);
}

static void test_status_from_errno(void **state)
{
        (void) state;
        static const struct {
                int r;
                unsigned status;
        } cases[] = {
                {-ENOENT, 404},    {-ESRCH, 404},     {-EEXIST, 409},      {-EBUSY, 409},
                {-ECHILD, 409},    {-ENOTEMPTY, 409}, {-ECANCELED, 409},   {-EINVAL, 400},
                {-E2BIG, 400},     {-ERANGE, 400},    {-ENOTDIR, 400},     {-EISDIR, 400},
                {-ELOOP, 400},     {-EXDEV, 400},     {-ENXIO, 400},       {-ENAMETOOLONG, 400},
                {-EACCES, 403},    {-EPERM, 403},     {-EFBIG, 413},       {-EMSGSIZE, 413},
                {-ENOSPC, 507},    {-EDQUOT, 507},    {-EAGAIN, 503},      {-ESHUTDOWN, 503},
                {-ETIMEDOUT, 504}, {-EIO, 500},       {-ENOMEM, 500},      {-EPROTO, 500},
                {0, 500},          {-EREMOTEIO, 502}, {-EMEDIUMTYPE, 415}, {-ENOPKG, 501},
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                unsigned st = http_status_from_errno(cases[i].r);
                if (st != cases[i].status)
                        fail_msg("errno %d: %u, want %u", -cases[i].r, st, cases[i].status);
        }
}

/* A failure of the server's own never answers 4xx; a 5xx errno stays. */
static void test_errno_internal(void **state)
{
        (void) state;
        static const int to_eio[] = {-ENOENT, -EINVAL,  -EEXIST, -EBUSY, -ECHILD,   -EACCES,
                                     -EPERM,  -ENOTDIR, -EFBIG,  -ESRCH, -ECANCELED};
        for (size_t i = 0; i < ARRAY_SIZE(to_eio); i++)
                assert_int_equal(http_errno_internal(to_eio[i]), -EIO);
        static const int kept[] = {-EIO,    -ENOMEM,    -EPROTO, -EAGAIN, -ESHUTDOWN,
                                   -ENOSPC, -ETIMEDOUT, -EMFILE, -EBADMSG};
        for (size_t i = 0; i < ARRAY_SIZE(kept); i++)
                assert_int_equal(http_errno_internal(kept[i]), kept[i]);
}

/* Where both directions name a status, going there and back keeps the errno. */
static void test_round_trip(void **state)
{
        (void) state;
        static const int errnos[] = {-ENOENT, -EBUSY, -EINVAL, -EACCES, -EAGAIN};
        for (size_t i = 0; i < ARRAY_SIZE(errnos); i++) {
                unsigned st = http_status_from_errno(errnos[i]);
                int back = http_status_to_errno(st, NULL);
                /* 503 comes back as -EIO: any 5xx is a server fault to a client. */
                if (errnos[i] == -EAGAIN)
                        assert_int_equal(back, -EIO);
                else
                        assert_int_equal(back, errnos[i]);
        }
}

/* The reason beside a 409 tells an id in use from any other conflict, and a
 * client reads it back as the errno class it came from. */
static void test_reason(void **state)
{
        (void) state;
        assert_string_equal(http_reason_from_errno(-EEXIST), "AlreadyExists");
        static const int conflicts[] = {-EBUSY, -ECANCELED, -ENOTEMPTY, -ECHILD};
        for (size_t i = 0; i < ARRAY_SIZE(conflicts); i++) {
                int r = conflicts[i];
                assert_string_equal(http_reason_from_errno(r), "Conflict");
                assert_int_equal(
                        http_status_to_errno(http_status_from_errno(r), http_reason_from_errno(r)),
                        -EBUSY);
        }
        assert_int_equal(http_status_to_errno(http_status_from_errno(-EEXIST),
                                              http_reason_from_errno(-EEXIST)),
                         -EEXIST);
        static const int none[] = {-ENOENT, -EINVAL, -EACCES, -EAGAIN, -EIO, 0};
        for (size_t i = 0; i < ARRAY_SIZE(none); i++)
                assert_null(http_reason_from_errno(none[i]));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_status_to_errno), cmocka_unit_test(test_status_from_errno),
                cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_errno_internal),
                cmocka_unit_test(test_reason),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
