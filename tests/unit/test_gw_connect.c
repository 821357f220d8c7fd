/* The gateway's Connect protocol module: envelopes (whole, byte by byte, cut
 * short, compressed, oversized), the end-stream frame, the code table, content
 * types, timeouts and the protobuf canonical JSON helpers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "connect.h"
#include "test-support.h"

static void test_codes(void **state)
{
        (void) state;
        static const struct {
                GwConnectCode c;
                const char *name;
                unsigned http;
                int err;
        } t[] = {
                {GW_CONNECT_NOT_FOUND, "not_found", 404, -ENOENT},
                {GW_CONNECT_ALREADY_EXISTS, "already_exists", 409, -EEXIST},
                {GW_CONNECT_INVALID_ARGUMENT, "invalid_argument", 400, -EINVAL},
                {GW_CONNECT_PERMISSION_DENIED, "permission_denied", 403, -EACCES},
                {GW_CONNECT_RESOURCE_EXHAUSTED, "resource_exhausted", 429, -EAGAIN},
                {GW_CONNECT_DEADLINE_EXCEEDED, "deadline_exceeded", 504, -ETIMEDOUT},
                {GW_CONNECT_CANCELED, "canceled", 499, -ECANCELED},
                {GW_CONNECT_UNIMPLEMENTED, "unimplemented", 501, -EOPNOTSUPP},
                {GW_CONNECT_UNAVAILABLE, "unavailable", 503, -ECONNREFUSED},
                {GW_CONNECT_INTERNAL, "internal", 500, -EIO},
                {GW_CONNECT_UNKNOWN, "unknown", 500, -EPROTO},
                {GW_CONNECT_UNAUTHENTICATED, "unauthenticated", 401, -ENOKEY},
                {GW_CONNECT_FAILED_PRECONDITION, "failed_precondition", 400, -EBUSY},
        };
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
                assert_string_equal(gw_connect_code_name(t[i].c), t[i].name);
                assert_int_equal(gw_connect_code_http_status(t[i].c), t[i].http);
                assert_int_equal(gw_connect_code_to_errno(t[i].c), t[i].err);
                GwConnectCode c = GW_CONNECT_OK;
                assert_int_equal(gw_connect_code_from_name(t[i].name, &c), 0);
                assert_int_equal(c, t[i].c);
                /* the errno a code stands for maps back to that code */
                assert_int_equal(gw_connect_code_from_errno(t[i].err), t[i].c);
        }
        GwConnectCode c;
        assert_int_equal(gw_connect_code_from_name("NOT_FOUND", &c), -EINVAL);
        assert_int_equal(gw_connect_code_from_name("", &c), -EINVAL);
        assert_null(gw_connect_code_name(GW_CONNECT_OK));
        assert_null(gw_connect_code_name((GwConnectCode) 99));
        assert_int_equal(gw_connect_code_from_errno(-EPERM), GW_CONNECT_PERMISSION_DENIED);
        assert_int_equal(gw_connect_code_from_errno(-EMSGSIZE), GW_CONNECT_RESOURCE_EXHAUSTED);
        assert_int_equal(gw_connect_code_from_errno(-EXDEV), GW_CONNECT_INTERNAL);
        assert_int_equal(gw_connect_code_from_errno(0), GW_CONNECT_OK);
        /* what a Connect client assumes for a status without a Connect body */
        assert_int_equal(gw_connect_code_from_http_status(404), GW_CONNECT_UNIMPLEMENTED);
        assert_int_equal(gw_connect_code_from_http_status(400), GW_CONNECT_INTERNAL);
        assert_int_equal(gw_connect_code_from_http_status(502), GW_CONNECT_UNAVAILABLE);
        assert_int_equal(gw_connect_code_from_http_status(418), GW_CONNECT_UNKNOWN);
}

static void test_error_body(void **state)
{
        (void) state;
        json_object *o = NULL;
        assert_int_equal(gw_connect_error_new(GW_CONNECT_NOT_FOUND, "no such file", &o), 0);
        assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                            "{\"code\":\"not_found\",\"message\":\"no such file\"}");
        json_object_put(o);
        assert_int_equal(gw_connect_error_new(GW_CONNECT_INTERNAL, NULL, &o), 0);
        assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                            "{\"code\":\"internal\"}");
        json_object_put(o);
        assert_int_equal(gw_connect_error_new(GW_CONNECT_OK, "x", &o), -EINVAL);
}

static void test_envelope_write(void **state)
{
        (void) state;
        json_object *msg = parse("{\"event\":{\"start\":{\"pid\":12831}}}");
        char *f = NULL;
        size_t n = 0;
        assert_int_equal(gw_connect_frame_message(msg, &f, &n), 0);
        /* the frame from E2B-WIRE.md: 00 00000021 {"event":{"start":{"pid":12831}}} */
        assert_int_equal(n, 5 + 0x21);
        assert_memory_equal(f, "\x00\x00\x00\x00\x21", 5);
        assert_memory_equal(f + 5, "{\"event\":{\"start\":{\"pid\":12831}}}", 0x21);
        free(f);
        json_object_put(msg);

        assert_int_equal(gw_connect_frame_end(GW_CONNECT_OK, NULL, NULL, &f, &n), 0);
        assert_int_equal(n, 7);
        assert_memory_equal(f, "\x02\x00\x00\x00\x02{}", 7);
        free(f);

        json_object *md = parse("{\"k\":[\"v\",\"w\"],\"one\":\"x\"}");
        assert_int_equal(gw_connect_frame_end(GW_CONNECT_DEADLINE_EXCEEDED, "too slow", md, &f, &n),
                         0);
        const char *want = "{\"error\":{\"code\":\"deadline_exceeded\",\"message\":\"too slow\"},"
                           "\"metadata\":{\"k\":[\"v\",\"w\"],\"one\":[\"x\"]}}";
        assert_int_equal(n, 5 + strlen(want));
        assert_int_equal((unsigned char) f[0], GW_CONNECT_FLAG_END_STREAM);
        assert_int_equal(((size_t) (unsigned char) f[3] << 8) | (unsigned char) f[4], strlen(want));
        assert_memory_equal(f + 5, want, strlen(want));
        free(f);
        json_object_put(md);

        md = parse("{\"k\":[1]}");
        assert_int_equal(gw_connect_frame_end(GW_CONNECT_INTERNAL, "x", md, &f, &n), -EINVAL);
        json_object_put(md);
        md = parse("[]");
        assert_int_equal(gw_connect_frame_end(GW_CONNECT_INTERNAL, "x", md, &f, &n), -EINVAL);
        assert_int_equal(gw_connect_frame_message(md, &f, &n), -EINVAL);
        json_object_put(md);

        /* a zero-length envelope */
        assert_int_equal(gw_connect_envelope(0, NULL, 0, &f, &n), 0);
        assert_int_equal(n, 5);
        assert_memory_equal(f, "\0\0\0\0\0", 5);
        free(f);
}

static const char start_body[] = "\x00\x00\x00\x00\x4a"
                                 "{\"process\":{\"cmd\":\"/bin/bash\",\"args\":[\"-l\",\"-c\","
                                 "\"echo hi\"]},\"stdin\":false}";

static void test_reader_whole_and_bytewise(void **state)
{
        (void) state;
        size_t len = sizeof(start_body) - 1;
        assert_int_equal(len, 5 + 0x4a);
        /* whole */
        GwConnectReader r;
        gw_connect_reader_init(&r, 1024);
        size_t used = 0;
        assert_int_equal(gw_connect_reader_feed(&r, start_body, len, &used), 1);
        assert_int_equal(used, len);
        uint8_t flags = 0xff;
        char *msg = NULL;
        size_t n = 0;
        assert_int_equal(gw_connect_reader_take(&r, &flags, &msg, &n), 0);
        assert_int_equal(flags, 0);
        assert_int_equal(n, 0x4a);
        assert_string_equal(msg, start_body + 5);
        free(msg);
        assert_int_equal(gw_connect_reader_take(&r, &flags, &msg, &n), -EAGAIN);
        assert_int_equal(gw_connect_reader_finish(&r), 0);
        gw_connect_reader_done(&r);

        /* one byte at a time, two envelopes back to back */
        char two[2 * sizeof(start_body)];
        memcpy(two, start_body, len);
        memcpy(two + len, start_body, len);
        gw_connect_reader_init(&r, 1024);
        int got = 0;
        for (size_t i = 0; i < 2 * len; i++) {
                int x = gw_connect_reader_feed(&r, two + i, 1, &used);
                assert_true(x == 0 || x == 1);
                assert_int_equal(used, 1);
                if (x == 1) {
                        assert_int_equal(gw_connect_reader_take(&r, &flags, &msg, &n), 0);
                        assert_int_equal(n, 0x4a);
                        assert_memory_equal(msg, start_body + 5, n);
                        free(msg);
                        got++;
                        if (got == 1)
                                assert_int_equal(i, len - 1);
                }
        }
        assert_int_equal(got, 2);
        assert_int_equal(gw_connect_reader_finish(&r), 0);
        gw_connect_reader_done(&r);

        /* a feed stops at the end of an envelope; the rest is fed again */
        gw_connect_reader_init(&r, 1024);
        assert_int_equal(gw_connect_reader_feed(&r, two, 2 * len, &used), 1);
        assert_int_equal(used, len);
        /* not taken yet: nothing more is consumed */
        size_t used2 = 99;
        assert_int_equal(gw_connect_reader_feed(&r, two + used, len, &used2), 1);
        assert_int_equal(used2, 0);
        assert_int_equal(gw_connect_reader_take(&r, &flags, &msg, &n), 0);
        free(msg);
        assert_int_equal(gw_connect_reader_feed(&r, two + used, len, &used2), 1);
        assert_int_equal(used2, len);
        assert_int_equal(gw_connect_reader_take(&r, &flags, &msg, &n), 0);
        free(msg);
        gw_connect_reader_done(&r);
}

static void test_reader_errors(void **state)
{
        (void) state;
        GwConnectReader r;
        size_t used = 0;
        /* truncated header and truncated message */
        for (size_t cut = 1; cut < sizeof(start_body) - 1; cut += 7) {
                gw_connect_reader_init(&r, 1024);
                assert_int_equal(gw_connect_reader_feed(&r, start_body, cut, &used), 0);
                assert_int_equal(gw_connect_reader_finish(&r), -EBADMSG);
                assert_non_null(gw_connect_reader_error(&r));
                gw_connect_reader_done(&r);
        }
        /* compressed */
        gw_connect_reader_init(&r, 1024);
        assert_int_equal(gw_connect_reader_feed(&r, "\x01\x00\x00\x00\x02{}", 7, &used),
                         -EPROTONOSUPPORT);
        assert_non_null(strstr(gw_connect_reader_error(&r), "compressed"));
        /* and stays failed */
        assert_int_equal(gw_connect_reader_feed(&r, "\x00\x00\x00\x00\x02{}", 7, &used),
                         -EPROTONOSUPPORT);
        assert_int_equal(gw_connect_reader_finish(&r), -EPROTONOSUPPORT);
        gw_connect_reader_done(&r);
        /* end-stream from a client, and unknown flag bits */
        gw_connect_reader_init(&r, 1024);
        assert_int_equal(gw_connect_reader_feed(&r, "\x02\x00\x00\x00\x02{}", 7, &used), -EBADMSG);
        gw_connect_reader_done(&r);
        gw_connect_reader_init(&r, 1024);
        assert_int_equal(gw_connect_reader_feed(&r, "\x80\x00\x00\x00\x02{}", 7, &used), -EBADMSG);
        gw_connect_reader_done(&r);
        /* end-stream accepted when reading a response */
        gw_connect_reader_init(&r, 1024);
        r.allow_end_stream = true;
        assert_int_equal(gw_connect_reader_feed(&r, "\x02\x00\x00\x00\x02{}", 7, &used), 1);
        uint8_t flags = 0;
        char *msg = NULL;
        size_t n = 0;
        assert_int_equal(gw_connect_reader_take(&r, &flags, &msg, &n), 0);
        assert_int_equal(flags, GW_CONNECT_FLAG_END_STREAM);
        assert_string_equal(msg, "{}");
        free(msg);
        gw_connect_reader_done(&r);
        /* over the cap: refused from the header alone, nothing allocated */
        gw_connect_reader_init(&r, 16);
        assert_int_equal(gw_connect_reader_feed(&r, "\x00\x00\x00\x00\x11", 5, &used), -EMSGSIZE);
        assert_non_null(strstr(gw_connect_reader_error(&r), "limit"));
        gw_connect_reader_done(&r);
        gw_connect_reader_init(&r, 16);
        assert_int_equal(gw_connect_reader_feed(&r, "\x00\xff\xff\xff\xff", 5, &used), -EMSGSIZE);
        gw_connect_reader_done(&r);
        /* exactly the cap is fine */
        gw_connect_reader_init(&r, 2);
        assert_int_equal(gw_connect_reader_feed(&r, "\x00\x00\x00\x00\x02{}", 7, &used), 1);
        gw_connect_reader_done(&r);
}

static void test_parse_single(void **state)
{
        (void) state;
        json_object *o = NULL;
        const char *why = NULL;
        assert_int_equal(
                gw_connect_parse_single(start_body, sizeof(start_body) - 1, 1024, &o, &why), 0);
        json_object *p = NULL;
        assert_true(json_object_object_get_ex(o, "process", &p));
        json_object_put(o);

        static const struct {
                const char *body;
                size_t len;
                int err;
        } bad[] = {
                {"", 0, -EBADMSG},
                {"\x00\x00\x00", 3, -EBADMSG},
                {"\x00\x00\x00\x00\x03{}", 7, -EBADMSG},         /* cut short */
                {"\x00\x00\x00\x00\x02{}\x00", 8, -EBADMSG},     /* trailing byte */
                {"\x00\x00\x00\x00\x02[]", 7, -EBADMSG},         /* not an object */
                {"\x00\x00\x00\x00\x03{}x", 8, -EBADMSG},        /* junk after JSON */
                {"\x00\x00\x00\x00\x03{\x00}", 8, -EBADMSG},     /* NUL inside */
                {"\x01\x00\x00\x00\x02{}", 7, -EPROTONOSUPPORT}, /* compressed */
                {"\x00\x00\x00\x04\x00", 5, -EMSGSIZE},          /* 1024 > 1000 */
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                why = NULL;
                o = NULL;
                assert_int_equal(gw_connect_parse_single(bad[i].body, bad[i].len, 1000, &o, &why),
                                 bad[i].err);
                assert_null(o);
                assert_non_null(why);
        }
}

static void test_content_type(void **state)
{
        (void) state;
        GwConnectContentType t;
        const char *why = NULL;
        assert_int_equal(gw_connect_content_type_parse("application/json", &t, &why), 0);
        assert_int_equal(t, GW_CONNECT_CT_UNARY_JSON);
        assert_int_equal(gw_connect_content_type_parse("Application/JSON; charset=utf-8", &t, &why),
                         0);
        assert_int_equal(t, GW_CONNECT_CT_UNARY_JSON);
        assert_int_equal(gw_connect_content_type_parse("application/connect+json", &t, &why), 0);
        assert_int_equal(t, GW_CONNECT_CT_STREAM_JSON);
        assert_int_equal(gw_connect_content_type_parse("application/connect+json;charset=\"UTF-8\"",
                                                       &t, &why),
                         0);
        assert_int_equal(gw_connect_content_type_parse("application/proto", &t, &why), -EOPNOTSUPP);
        assert_non_null(strstr(why, "protobuf codec is not supported"));
        assert_int_equal(gw_connect_content_type_parse("application/connect+proto", &t, &why),
                         -EOPNOTSUPP);
        assert_int_equal(gw_connect_content_type_parse("application/grpc", &t, &why), -EINVAL);
        assert_int_equal(gw_connect_content_type_parse("text/plain", &t, &why), -EINVAL);
        assert_int_equal(gw_connect_content_type_parse("application/jsonx", &t, &why), -EINVAL);
        assert_int_equal(gw_connect_content_type_parse("", &t, &why), -EINVAL);
        assert_int_equal(gw_connect_content_type_parse(NULL, &t, &why), -EINVAL);
        assert_int_equal(
                gw_connect_content_type_parse("application/json; charset=latin1", &t, &why),
                -EINVAL);
        assert_non_null(strstr(why, "charset"));
}

static void test_headers(void **state)
{
        (void) state;
        uint64_t ms = 0;
        assert_int_equal(gw_connect_timeout_parse("60000", &ms), 0);
        assert_int_equal(ms, 60000);
        assert_int_equal(gw_connect_timeout_parse("9999999999", &ms), 0);
        assert_int_equal(ms, 9999999999ull);
        assert_int_equal(gw_connect_timeout_parse("0", &ms), 0);
        static const char *const bad[] = {"",   "12345678901", "-1",  "+1",  "1.5",
                                          " 1", "1 ",          "1e3", "0x10"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(gw_connect_timeout_parse(bad[i], &ms), -EINVAL);
        assert_int_equal(gw_connect_timeout_parse(NULL, &ms), -EINVAL);
        assert_int_equal(gw_connect_protocol_version_check(NULL), 0);
        assert_int_equal(gw_connect_protocol_version_check("1"), 0);
        assert_int_equal(gw_connect_protocol_version_check("2"), -EINVAL);
}

static void test_path(void **state)
{
        (void) state;
        char *svc = NULL, *m = NULL;
        assert_int_equal(gw_connect_path_parse("/process.Process/Start", &svc, &m), 0);
        assert_string_equal(svc, "process.Process");
        assert_string_equal(m, "Start");
        free(svc);
        free(m);
        assert_int_equal(gw_connect_path_parse("/a.b_2.C/Get_Watcher3", &svc, &m), 0);
        assert_string_equal(svc, "a.b_2.C");
        assert_string_equal(m, "Get_Watcher3");
        free(svc);
        free(m);
        static const char *const bad[] = {"",
                                          "/",
                                          "process.Process/Start",
                                          "/Process/Start",
                                          "/process.Process/",
                                          "/process.Process",
                                          "//Start",
                                          "/.Process/Start",
                                          "/process./Start",
                                          "/process..Process/Start",
                                          "/process.Process/Start/x",
                                          "/process.Process/St-art",
                                          "/process.Process/Start?x=1",
                                          "/files",
                                          "/health"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                svc = m = NULL;
                assert_int_equal(gw_connect_path_parse(bad[i], &svc, &m), -EINVAL);
                assert_null(svc);
                assert_null(m);
        }
        assert_int_equal(gw_connect_path_parse(NULL, &svc, &m), -EINVAL);
}

static void test_bytes(void **state)
{
        (void) state;
        json_object *j = NULL;
        assert_int_equal(gw_connect_bytes_to_json("hi\n", 3, &j), 0);
        assert_string_equal(json_object_get_string(j), "aGkK");
        json_object_put(j);
        assert_int_equal(gw_connect_bytes_to_json("\xfb\xff", 2, &j), 0);
        assert_string_equal(json_object_get_string(j), "+/8="); /* standard, padded */
        json_object_put(j);

        static const char *const same[] = {"+/8=", "+/8", "-_8=", "-_8"};
        for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
                uint8_t *b = NULL;
                size_t n = 0;
                j = json_object_new_string(same[i]);
                assert_int_equal(gw_connect_bytes_from_json(j, &b, &n), 0);
                assert_int_equal(n, 2);
                assert_memory_equal(b, "\xfb\xff", 2);
                free(b);
                json_object_put(j);
        }
        uint8_t *b = NULL;
        size_t n = 0;
        j = json_object_new_string("");
        assert_int_equal(gw_connect_bytes_from_json(j, &b, &n), 0);
        assert_int_equal(n, 0);
        free(b);
        json_object_put(j);
        static const char *const bad[] = {"a", "a===", "ab!c", "YW Jj"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                j = json_object_new_string(bad[i]);
                assert_int_equal(gw_connect_bytes_from_json(j, &b, &n), -EINVAL);
                json_object_put(j);
        }
        j = json_object_new_string_len("YW\0j", 4);
        assert_int_equal(gw_connect_bytes_from_json(j, &b, &n), -EINVAL);
        json_object_put(j);
        j = json_object_new_int(5);
        assert_int_equal(gw_connect_bytes_from_json(j, &b, &n), -EINVAL);
        json_object_put(j);
        assert_int_equal(gw_connect_bytes_from_json(NULL, &b, &n), -ENODATA);
}

static void test_integers(void **state)
{
        (void) state;
        static const struct {
                const char *json;
                int r;
                int64_t v;
        } i64[] = {
                {"2", 0, 2},
                {"\"2\"", 0, 2},
                {"\"-9223372036854775808\"", 0, INT64_MIN},
                {"\"9223372036854775807\"", 0, INT64_MAX},
                {"\"9223372036854775808\"", -ERANGE, 0},
                {"\"-9223372036854775809\"", -ERANGE, 0},
                {"-42", 0, -42},
                {"1e3", 0, 1000},
                {"1.5", -EINVAL, 0},
                {"\"1.0\"", -EINVAL, 0},
                {"\"01\"", -EINVAL, 0},
                {"\"\"", -EINVAL, 0},
                {"\"-\"", -EINVAL, 0},
                {"\" 1\"", -EINVAL, 0},
                {"true", -EINVAL, 0},
                {"null", -ENODATA, 0},
                {"1e30", -ERANGE, 0},
        };
        for (size_t i = 0; i < sizeof(i64) / sizeof(i64[0]); i++) {
                json_object *j = json_tokener_parse(i64[i].json);
                int64_t v = 0;
                assert_int_equal(gw_connect_int64_from_json(j, &v), i64[i].r);
                if (i64[i].r == 0)
                        assert_true(v == i64[i].v);
                json_object_put(j);
        }
        json_object *j = parse("\"18446744073709551615\"");
        uint64_t u = 0;
        assert_int_equal(gw_connect_uint64_from_json(j, &u), 0);
        assert_true(u == UINT64_MAX);
        json_object_put(j);
        /* json-c clamps numbers that do not fit: the limits themselves, as
         * numbers, are refused rather than read wrong */
        static const char *const clamped[] = {"18446744073709551615", "18446744073709551616",
                                              "99999999999999999999999"};
        for (size_t i = 0; i < sizeof(clamped) / sizeof(clamped[0]); i++) {
                j = parse(clamped[i]);
                assert_int_equal(gw_connect_uint64_from_json(j, &u), -ERANGE);
                json_object_put(j);
        }
        j = parse("18446744073709551614");
        assert_int_equal(gw_connect_uint64_from_json(j, &u), 0);
        assert_true(u == UINT64_MAX - 1);
        json_object_put(j);
        int64_t i64v = 0;
        j = parse("-9223372036854775809");
        assert_int_equal(gw_connect_int64_from_json(j, &i64v), -ERANGE);
        json_object_put(j);
        j = parse("9223372036854775807");
        assert_int_equal(gw_connect_int64_from_json(j, &i64v), 0);
        assert_true(i64v == INT64_MAX);
        json_object_put(j);
        j = parse("9223372036854775808");
        assert_int_equal(gw_connect_int64_from_json(j, &i64v), -ERANGE);
        json_object_put(j);
        j = parse("-1");
        assert_int_equal(gw_connect_uint64_from_json(j, &u), -ERANGE);
        json_object_put(j);
        j = parse("\"-1\"");
        assert_int_equal(gw_connect_uint64_from_json(j, &u), -ERANGE);
        json_object_put(j);
        uint32_t u32 = 0;
        j = parse("4294967295");
        assert_int_equal(gw_connect_uint32_from_json(j, &u32), 0);
        assert_true(u32 == UINT32_MAX);
        json_object_put(j);
        j = parse("4294967296");
        assert_int_equal(gw_connect_uint32_from_json(j, &u32), -ERANGE);
        json_object_put(j);
        int32_t i32 = 0;
        j = parse("\"-2147483648\"");
        assert_int_equal(gw_connect_int32_from_json(j, &i32), 0);
        assert_int_equal(i32, INT32_MIN);
        json_object_put(j);
        j = parse("2147483648");
        assert_int_equal(gw_connect_int32_from_json(j, &i32), -ERANGE);
        json_object_put(j);
        assert_int_equal(gw_connect_int64_to_json(-5, &j), 0);
        assert_string_equal(json_object_to_json_string(j), "\"-5\"");
        json_object_put(j);
}

static void test_timestamps(void **state)
{
        (void) state;
        int64_t s = 0;
        int32_t ns = 0;
        assert_int_equal(gw_connect_timestamp_parse("2024-01-01T00:00:00Z", &s, &ns), 0);
        assert_true(s == 1704067200);
        assert_int_equal(ns, 0);
        assert_int_equal(gw_connect_timestamp_parse("1970-01-01T00:00:00.5Z", &s, &ns), 0);
        assert_true(s == 0);
        assert_int_equal(ns, 500000000);
        assert_int_equal(gw_connect_timestamp_parse("2024-01-01T01:00:00.000000001+01:00", &s, &ns),
                         0);
        assert_true(s == 1704067200);
        assert_int_equal(ns, 1);
        assert_int_equal(gw_connect_timestamp_parse("1969-12-31T23:59:59Z", &s, &ns), 0);
        assert_true(s == -1);
        assert_int_equal(gw_connect_timestamp_parse("2024-02-29T12:00:00Z", &s, &ns), 0);
        assert_int_equal(gw_connect_timestamp_parse("0001-01-01T00:00:00Z", &s, &ns), 0);
        assert_true(s == -62135596800LL);
        assert_int_equal(gw_connect_timestamp_parse("9999-12-31T23:59:59.999999999Z", &s, &ns), 0);
        assert_true(s == 253402300799LL);
        static const char *const bad[] = {"2023-02-29T00:00:00Z",
                                          "2024-01-01 00:00:00Z",
                                          "2024-01-01T00:00:00",
                                          "2024-01-01T24:00:00Z",
                                          "2024-13-01T00:00:00Z",
                                          "2024-01-01T00:00:60Z",
                                          "2024-01-01T00:00:00.Z",
                                          "2024-01-01T00:00:00.1234567890Z",
                                          "2024-01-01T00:00:00Zx",
                                          "2024-1-01T00:00:00Z",
                                          "1700000000",
                                          "",
                                          "0000-01-01T00:00:00Z"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(gw_connect_timestamp_parse(bad[i], &s, &ns), -EINVAL);
        assert_int_equal(gw_connect_timestamp_parse("0001-01-01T00:00:00+00:01", &s, &ns), -ERANGE);

        char buf[40];
        assert_int_equal(gw_connect_timestamp_format(1704067200, 0, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "2024-01-01T00:00:00Z");
        assert_int_equal(gw_connect_timestamp_format(-1, 500000000, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "1969-12-31T23:59:59.500Z");
        assert_int_equal(gw_connect_timestamp_format(0, 1000, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "1970-01-01T00:00:00.000001Z");
        assert_int_equal(gw_connect_timestamp_format(0, 1, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "1970-01-01T00:00:00.000000001Z");
        assert_int_equal(gw_connect_timestamp_format(0, 1000000000, buf, sizeof(buf)), -EINVAL);
        assert_int_equal(gw_connect_timestamp_format(253402300800LL, 0, buf, sizeof(buf)), -EINVAL);
        /* round trip across the range */
        for (int64_t t = -62135596800LL; t < 253402300799LL; t += 86400LL * 997 + 3601) {
                assert_int_equal(gw_connect_timestamp_format(t, 123000000, buf, sizeof(buf)), 0);
                assert_int_equal(gw_connect_timestamp_parse(buf, &s, &ns), 0);
                assert_true(s == t);
                assert_int_equal(ns, 123000000);
        }
}

static const GwConnectEnumValue signals[] = {
        {"SIGNAL_UNSPECIFIED", 0},
        {"SIGNAL_SIGTERM", 15},
        {"SIGNAL_SIGKILL", 9},
        {NULL, 0},
};

static void test_enums(void **state)
{
        (void) state;
        int v = -1;
        json_object *j = parse("\"SIGNAL_SIGKILL\"");
        assert_int_equal(gw_connect_enum_from_json(j, signals, &v), 0);
        assert_int_equal(v, 9);
        json_object_put(j);
        j = parse("15");
        assert_int_equal(gw_connect_enum_from_json(j, signals, &v), 0);
        assert_int_equal(v, 15);
        json_object_put(j);
        j = parse("\"SIGKILL\"");
        assert_int_equal(gw_connect_enum_from_json(j, signals, &v), -EINVAL);
        json_object_put(j);
        j = parse("\"9\"");
        assert_int_equal(gw_connect_enum_from_json(j, signals, &v), -EINVAL);
        json_object_put(j);
        /* json-c reads null as NULL */
        assert_int_equal(gw_connect_enum_from_json(NULL, signals, &v), -ENODATA);
        assert_string_equal(gw_connect_enum_name(signals, 15), "SIGNAL_SIGTERM");
        assert_null(gw_connect_enum_name(signals, 2));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_codes),
                cmocka_unit_test(test_error_body),
                cmocka_unit_test(test_envelope_write),
                cmocka_unit_test(test_reader_whole_and_bytewise),
                cmocka_unit_test(test_reader_errors),
                cmocka_unit_test(test_parse_single),
                cmocka_unit_test(test_content_type),
                cmocka_unit_test(test_headers),
                cmocka_unit_test(test_path),
                cmocka_unit_test(test_bytes),
                cmocka_unit_test(test_integers),
                cmocka_unit_test(test_timestamps),
                cmocka_unit_test(test_enums),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
