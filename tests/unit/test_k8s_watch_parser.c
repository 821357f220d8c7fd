/* The watch event stream parser: every event arrives whole, once, in order,
 * wherever the stream is split (each single split point, and byte by byte);
 * malformed lines are refused; a cut-off last line is reported. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sandpit/k8s-watch-parser.h"
#include "sandpit/macro.h"

typedef struct {
        char log[4096]; /* "TYPE:rv:name;" per event */
        size_t n;
        int fail_at; /* return -EIO at this event (1-based), 0: never */
} Seen;

static int record(const K8sWatchEvent *ev, void *userdata)
{
        Seen *s = userdata;
        char one[256];
        json_object *meta = NULL, *name = NULL;
        (void) json_object_object_get_ex(ev->object, "metadata", &meta);
        (void) json_object_object_get_ex(meta, "name", &name);
        if (ev->type == K8S_WATCH_ERROR)
                (void) snprintf(one, sizeof(one), "ERROR:%ld;", ev->code);
        else
                (void) snprintf(one, sizeof(one), "%s:%s:%s;", k8s_watch_event_type_name(ev->type),
                                ev->resource_version, name ? json_object_get_string(name) : "-");
        size_t l = strlen(one);
        assert_true(s->n + l < sizeof(s->log));
        memcpy(s->log + s->n, one, l + 1);
        s->n += l;
        if (s->fail_at && (int) s->n > 0 && --s->fail_at == 0)
                return -EIO;
        return 0;
}

/* Three events, a UTF-8 name, CRLF, an empty line, a bookmark and an ERROR. */
static const char stream[] =
        "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Lease\",\"metadata\":{\"name\":\"a\","
        "\"resourceVersion\":\"10\"},\"spec\":{\"holderIdentity\":\"x\\n\"}}}\n"
        "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"b\\u00e9\xc3\xa9\","
        "\"resourceVersion\":\"11\"}}}\r\n"
        "\n"
        "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Lease\",\"metadata\":{\"resourceVersion\":"
        "\"15\"}}}\n"
        "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":"
        "\"16\"}}}\n"
        "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\"}}"
        "\n";

static const char expected[] = "ADDED:10:a;MODIFIED:11:b\xc3\xa9\xc3\xa9;BOOKMARK:15:-;"
                               "DELETED:16:a;ERROR:410;";

static void feed_split(const char *data, size_t len, size_t at, Seen *s)
{
        K8sWatchParser p;
        k8s_watch_parser_init(&p, record, s);
        assert_int_equal(k8s_watch_parser_feed(&p, data, at), 0);
        assert_int_equal(k8s_watch_parser_feed(&p, data + at, len - at), 0);
        assert_int_equal(k8s_watch_parser_finish(&p), 0);
        assert_int_equal(p.events, 5);
        k8s_watch_parser_done(&p);
}

static void test_every_split_point(void **state)
{
        (void) state;
        size_t len = sizeof(stream) - 1;
        for (size_t at = 0; at <= len; at++) {
                Seen s = {0};
                feed_split(stream, len, at, &s);
                assert_string_equal(s.log, expected);
        }
}

static void test_every_pair_of_split_points(void **state)
{
        (void) state;
        size_t len = sizeof(stream) - 1;
        for (size_t a = 0; a <= len; a += 3)
                for (size_t b = a; b <= len; b += 5) {
                        Seen s = {0};
                        K8sWatchParser p;
                        k8s_watch_parser_init(&p, record, &s);
                        assert_int_equal(k8s_watch_parser_feed(&p, stream, a), 0);
                        assert_int_equal(k8s_watch_parser_feed(&p, stream + a, b - a), 0);
                        assert_int_equal(k8s_watch_parser_feed(&p, stream + b, len - b), 0);
                        assert_int_equal(k8s_watch_parser_finish(&p), 0);
                        k8s_watch_parser_done(&p);
                        assert_string_equal(s.log, expected);
                }
}

static void test_byte_by_byte(void **state)
{
        (void) state;
        Seen s = {0};
        K8sWatchParser p;
        k8s_watch_parser_init(&p, record, &s);
        for (size_t i = 0; i < sizeof(stream) - 1; i++)
                assert_int_equal(k8s_watch_parser_feed(&p, stream + i, 1), 0);
        assert_int_equal(k8s_watch_parser_finish(&p), 0);
        k8s_watch_parser_done(&p);
        assert_string_equal(s.log, expected);
}

static int parse_one(const char *line)
{
        Seen s = {0};
        K8sWatchParser p;
        k8s_watch_parser_init(&p, record, &s);
        int r = k8s_watch_parser_feed(&p, line, strlen(line));
        if (r == 0)
                r = k8s_watch_parser_finish(&p);
        k8s_watch_parser_done(&p);
        if (r == 0 && s.n == 0)
                return 1; /* accepted, nothing delivered */
        return r;
}

static void test_malformed(void **state)
{
        (void) state;
        static const char *const bad[] = {
                "not json\n",
                "[1,2]\n",
                "{\"type\":\"ADDED\"}\n",
                "{\"object\":{\"metadata\":{\"resourceVersion\":\"1\"}}}\n",
                "{\"type\":\"ADDED\",\"object\":[]}\n",
                "{\"type\":7,\"object\":{}}\n",
                /* events that move the resourceVersion must carry one */
                "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n",
                "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"\"}}}\n",
                "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"resourceVersion\":5}}}\n",
                "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":\"1\"}}} x\n",
                /* two objects on one line */
                "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":\"1\"}}}"
                "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":\"2\"}}}\n",
                /* a truncated object */
                "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":\"1\"}\n",
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                int r = parse_one(bad[i]);
                if (r != -EBADMSG)
                        fail_msg("line %zu: %d, expected -EBADMSG: %s", i, r, bad[i]);
        }
}

static void test_unknown_type_skipped(void **state)
{
        (void) state;
        Seen s = {0};
        K8sWatchParser p;
        k8s_watch_parser_init(&p, record, &s);
        const char *in = "{\"type\":\"FUTURE\",\"object\":{}}\n"
                         "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\","
                         "\"resourceVersion\":\"3\"}}}\n";
        assert_int_equal(k8s_watch_parser_feed(&p, in, strlen(in)), 0);
        assert_int_equal(p.skipped, 1);
        assert_int_equal(p.events, 1);
        k8s_watch_parser_done(&p);
        assert_string_equal(s.log, "ADDED:3:x;");
}

static void test_cut_off_last_line(void **state)
{
        (void) state;
        Seen s = {0};
        K8sWatchParser p;
        k8s_watch_parser_init(&p, record, &s);
        const char *in = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\","
                         "\"resourceVersion\":\"3\"}}}\n{\"type\":\"MODI";
        assert_int_equal(k8s_watch_parser_feed(&p, in, strlen(in)), 0);
        /* the half event is never delivered: the stream was cut */
        assert_int_equal(k8s_watch_parser_finish(&p), -EPIPE);
        assert_string_equal(s.log, "ADDED:3:x;");
        /* a last line without "\n" that is only whitespace is fine */
        assert_int_equal(k8s_watch_parser_feed(&p, " \r", 2), 0);
        assert_int_equal(k8s_watch_parser_finish(&p), 0);
        k8s_watch_parser_done(&p);
}

static void test_callback_error_stops(void **state)
{
        (void) state;
        Seen s = {.fail_at = 2};
        K8sWatchParser p;
        k8s_watch_parser_init(&p, record, &s);
        assert_int_equal(k8s_watch_parser_feed(&p, stream, sizeof(stream) - 1), -EIO);
        k8s_watch_parser_done(&p);
        assert_string_equal(s.log, "ADDED:10:a;MODIFIED:11:b\xc3\xa9\xc3\xa9;");
}

static void test_line_limit(void **state)
{
        (void) state;
        K8sWatchParser p;
        k8s_watch_parser_init(&p, record, &(Seen){0});
        p.lines.max_line = 64;
        char big[200];
        memset(big, ' ', sizeof(big));
        assert_int_equal(k8s_watch_parser_feed(&p, big, sizeof(big)), -E2BIG);
        k8s_watch_parser_done(&p);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_split_point),
                cmocka_unit_test(test_every_pair_of_split_points),
                cmocka_unit_test(test_byte_by_byte),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_unknown_type_skipped),
                cmocka_unit_test(test_cut_off_last_line),
                cmocka_unit_test(test_callback_error_stops),
                cmocka_unit_test(test_line_limit),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
