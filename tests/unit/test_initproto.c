/* The agent <-> init wire format: builder and parser (node-agent/src/initproto.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "initproto.h"
#include "sandpit/macro.h"

/* The body of a finished frame as a parsed IpFrame. */
static IpFrame frame_of(const IpBuilder *b)
{
        uint8_t type;
        uint32_t len;
        assert_int_equal(ip_parse_header(b->buf, &type, &len), 0);
        assert_int_equal(len, b->len - IP_HEADER_SIZE);
        return (IpFrame){
                .type = (IpMsgType) type, .body = b->buf + IP_HEADER_SIZE, .body_len = len};
}

static void test_round_trip(void **state)
{
        (void) state;
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_SPAWN);
        ip_put_str(&b, IP_TAG_ARG, "sh");
        ip_put_str(&b, IP_TAG_ARG, "-c");
        ip_put_str(&b, IP_TAG_ARG, "");
        ip_put_str(&b, IP_TAG_ENV, "A=1");
        ip_put_u32(&b, IP_TAG_FLAGS, IP_FLAG_BACKGROUND | IP_FLAG_STDIN_OPEN);
        ip_put_i32(&b, IP_TAG_EXIT_CODE, -1);
        ip_put_u64(&b, IP_TAG_TIMEOUT_MS, UINT64_C(0x0123456789abcdef));
        const uint8_t bin[] = {0, 1, 2, 0xff};
        ip_put_bytes(&b, IP_TAG_DATA, bin, sizeof(bin));
        assert_int_equal(ip_builder_finish(&b), 0);
        /* Header: little-endian body length, then the type. */
        assert_int_equal(b.buf[0] | b.buf[1] << 8 | b.buf[2] << 16 | b.buf[3] << 24,
                         (int) (b.len - IP_HEADER_SIZE));
        assert_int_equal(b.buf[4], IP_MSG_SPAWN);

        IpFrame f = frame_of(&b);
        assert_int_equal(f.type, IP_MSG_SPAWN);
        assert_int_equal(ip_validate(&f), 0);
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        assert_int_equal(ip_get_u32(&f, IP_TAG_FLAGS, &u32), 0);
        assert_int_equal(u32, IP_FLAG_BACKGROUND | IP_FLAG_STDIN_OPEN);
        assert_int_equal(ip_get_i32(&f, IP_TAG_EXIT_CODE, &i32), 0);
        assert_int_equal(i32, -1);
        assert_int_equal(ip_get_u64(&f, IP_TAG_TIMEOUT_MS, &u64), 0);
        assert_true(u64 == UINT64_C(0x0123456789abcdef));
        const uint8_t *v;
        uint32_t n;
        assert_int_equal(ip_get_bytes(&f, IP_TAG_DATA, &v, &n), 0);
        assert_int_equal(n, sizeof(bin));
        assert_memory_equal(v, bin, sizeof(bin));
        cleanup_free char *arg = NULL;
        assert_int_equal(ip_get_strdup(&f, IP_TAG_ARG, &arg), 0);
        assert_string_equal(arg, "sh"); /* the first of the repeated tag */

        /* Repeated tags keep their order, empty strings included. */
        const char *want[] = {"sh", "-c", ""};
        size_t off = 0, i = 0;
        uint8_t tag;
        int r;
        while ((r = ip_next_field(&f, &off, &tag, &v, &n)) > 0)
                if (tag == IP_TAG_ARG) {
                        const char *w = i < ARRAY_SIZE(want) ? want[i] : "<extra>";
                        assert_int_equal(n, strlen(w));
                        assert_memory_equal(v, w, n);
                        i++;
                }
        assert_int_equal(r, 0);
        assert_int_equal(i, 3);
        assert_int_equal(ip_get_u32(&f, IP_TAG_PID, &u32), -ENOENT);
        ip_builder_free(&b);
        assert_null(b.buf);
}

static void test_empty_body(void **state)
{
        (void) state;
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_PING);
        assert_int_equal(ip_builder_finish(&b), 0);
        assert_int_equal(b.len, IP_HEADER_SIZE);
        IpFrame f = frame_of(&b);
        assert_int_equal(ip_validate(&f), 0);
        const uint8_t *v;
        uint32_t n;
        assert_int_equal(ip_get_bytes(&f, IP_TAG_DATA, &v, &n), -ENOENT);
        ip_builder_free(&b);
}

static void test_truncated(void **state)
{
        (void) state;
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_STDIN);
        ip_put_u32(&b, IP_TAG_PID, 42);
        ip_put_str(&b, IP_TAG_DATA, "hello");
        assert_int_equal(ip_builder_finish(&b), 0);
        IpFrame full = frame_of(&b);
        /* Every cut that is not on a field boundary is malformed. */
        for (size_t cut = 0; cut < full.body_len; cut++) {
                IpFrame f = full;
                f.body_len = cut;
                int want = (cut == 0 || cut == IP_FIELD_HEADER + 4) ? 0 : -EPROTO;
                assert_int_equal(ip_validate(&f), want);
        }
        IpFrame f = full;
        f.body_len = IP_FIELD_HEADER + 4 + 3; /* PID whole, DATA header cut */
        const uint8_t *v;
        uint32_t n, pid;
        assert_int_equal(ip_get_bytes(&f, IP_TAG_DATA, &v, &n), -EPROTO);
        assert_int_equal(ip_get_u32(&f, IP_TAG_PID, &pid), 0);
        assert_int_equal(pid, 42);

        /* Over a socket: a frame cut short is an error, EOF before one is not. */
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(ip_write_all(sv[0], b.buf, b.len - 2), 0);
        (void) close(sv[0]);
        uint8_t *body = NULL;
        size_t cap = 0;
        IpFrame got;
        assert_int_equal(ip_read_frame(sv[1], &body, &cap, &got), -EPROTO);
        (void) close(sv[1]);

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(ip_write_all(sv[0], b.buf, b.len), 0);
        assert_int_equal(ip_write_all(sv[0], b.buf, 3), 0);
        (void) close(sv[0]);
        assert_int_equal(ip_read_frame(sv[1], &body, &cap, &got), 1);
        assert_int_equal(got.type, IP_MSG_STDIN);
        assert_int_equal(got.body_len, full.body_len);
        assert_memory_equal(got.body, full.body, full.body_len);
        assert_int_equal(ip_read_frame(sv[1], &body, &cap, &got), -EPROTO); /* half a header */
        assert_int_equal(ip_read_frame(sv[1], &body, &cap, &got), 0);
        (void) close(sv[1]);
        free(body);
        ip_builder_free(&b);
}

static void test_oversize(void **state)
{
        (void) state;
        uint8_t hdr[IP_HEADER_SIZE] = {0, 0, 0x10, 0, IP_MSG_PING}; /* exactly 1 MiB */
        uint8_t type;
        uint32_t len;
        assert_int_equal(ip_parse_header(hdr, &type, &len), 0);
        assert_int_equal(len, IP_MAX_BODY);
        hdr[0] = 1; /* one byte more */
        assert_int_equal(ip_parse_header(hdr, &type, &len), -EPROTO);
        const uint8_t huge[IP_HEADER_SIZE] = {0xff, 0xff, 0xff, 0xff, IP_MSG_PING};
        assert_int_equal(ip_parse_header(huge, &type, &len), -EPROTO);

        /* A field larger than the maximum body poisons the builder... */
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_STDOUT);
        uint8_t *big = calloc(1, IP_MAX_BODY + 1);
        assert_non_null(big);
        ip_put_bytes(&b, IP_TAG_DATA, big, IP_MAX_BODY + 1);
        assert_true(ip_builder_finish(&b) < 0);
        ip_builder_free(&b);
        /* ...and fields that add up to more are refused at finish. */
        ip_builder_init(&b, IP_MSG_STDOUT);
        ip_put_bytes(&b, IP_TAG_DATA, big, (size_t) IP_MAX_BODY);
        assert_int_equal(ip_builder_finish(&b), -EMSGSIZE);
        ip_builder_free(&b);
        free(big);

        /* A field length past the body. */
        const uint8_t body[] = {IP_TAG_DATA, 0xff, 0xff, 0xff, 0xff, 'x'};
        IpFrame f = {.type = IP_MSG_STDIN, .body = body, .body_len = sizeof(body)};
        assert_int_equal(ip_validate(&f), -EPROTO);
}

static void test_nul_in_string(void **state)
{
        (void) state;
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_SPAWN);
        ip_put_bytes(&b, IP_TAG_ARG, "ab\0c", 4);
        ip_put_bytes(&b, IP_TAG_CWD, "/tmp\0", 5);
        ip_put_str(&b, IP_TAG_USER, "root");
        assert_int_equal(ip_builder_finish(&b), 0);
        IpFrame f = frame_of(&b);
        assert_int_equal(ip_validate(&f), 0); /* well-formed; only strings are bad */
        char *s = NULL;
        assert_int_equal(ip_get_strdup(&f, IP_TAG_ARG, &s), -EPROTO);
        assert_int_equal(ip_get_strdup(&f, IP_TAG_CWD, &s), -EPROTO);
        assert_null(s);
        assert_int_equal(ip_get_strdup(&f, IP_TAG_TAG, &s), -ENOENT);
        assert_int_equal(ip_get_strdup(&f, IP_TAG_USER, &s), 0);
        assert_string_equal(s, "root");
        free(s);
        ip_builder_free(&b);
}

static void test_unknown_tags_skipped(void **state)
{
        (void) state;
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_EXIT);
        ip_put_str(&b, (IpTag) 200, "from a newer agent");
        ip_put_bytes(&b, (IpTag) 0, "", 0);
        ip_put_u32(&b, IP_TAG_PID, 7);
        ip_put_u64(&b, (IpTag) 201, 1);
        ip_put_i32(&b, IP_TAG_EXIT_CODE, 3);
        assert_int_equal(ip_builder_finish(&b), 0);
        IpFrame f = frame_of(&b);
        assert_int_equal(ip_validate(&f), 0);
        uint32_t pid;
        int32_t code;
        assert_int_equal(ip_get_u32(&f, IP_TAG_PID, &pid), 0);
        assert_int_equal(pid, 7);
        assert_int_equal(ip_get_i32(&f, IP_TAG_EXIT_CODE, &code), 0);
        assert_int_equal(code, 3);
        ip_builder_free(&b);
}

static void test_wrong_int_size(void **state)
{
        (void) state;
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_SIGNAL);
        ip_put_u64(&b, IP_TAG_SIGNO, 9);       /* u32 expected */
        ip_put_u32(&b, IP_TAG_DURATION_US, 1); /* u64 expected */
        ip_put_bytes(&b, IP_TAG_PID, "", 0);
        assert_int_equal(ip_builder_finish(&b), 0);
        IpFrame f = frame_of(&b);
        uint32_t u32;
        uint64_t u64;
        int32_t i32;
        assert_int_equal(ip_get_u32(&f, IP_TAG_SIGNO, &u32), -EPROTO);
        assert_int_equal(ip_get_u64(&f, IP_TAG_DURATION_US, &u64), -EPROTO);
        assert_int_equal(ip_get_u32(&f, IP_TAG_PID, &u32), -EPROTO);
        assert_int_equal(ip_get_i32(&f, IP_TAG_PID, &i32), -EPROTO);
        ip_builder_free(&b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_empty_body),
                cmocka_unit_test(test_truncated),      cmocka_unit_test(test_oversize),
                cmocka_unit_test(test_nul_in_string),  cmocka_unit_test(test_unknown_tags_skipped),
                cmocka_unit_test(test_wrong_int_size),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
