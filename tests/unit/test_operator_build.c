/* Unit tests of SandboxTemplate source.build (operator/src/template-build.c
 * and its reading in spec.c): the spec's checks, the image name, the build
 * request's parameters, the context tar (its entries, deterministic bytes,
 * bad keys and data refused) and the agent's progress lines read into a
 * result. */
#include <archive.h>
#include <archive_entry.h>
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

#include "../../operator/src/operator.h"

#define TUID "5d1e7a2b-8c3f-4e9a-b6d0-1f2e3a4b5c6d"

static json_object *parse(const char *s)
{
        json_object *o = json_tokener_parse(s);
        assert_non_null(o);
        return o;
}

static json_object *tmpl(const char *source)
{
        char buf[2048];
        snprintf(buf, sizeof(buf),
                 "{\"metadata\":{\"name\":\"app\",\"namespace\":\"team\",\"uid\":\"" TUID
                 "\"},\"spec\":{\"source\":%s}}",
                 source);
        return parse(buf);
}

static void test_resolve(void **state)
{
        (void) state;
        char msg[512] = "";
        SandboxTemplateInfo t = {0};
        json_object *o = tmpl("{\"build\":{\"dockerfile\":\"FROM host\\n\",\"context\":\"ctx\","
                              "\"buildArgs\":{\"V\":\"2\",\"B_1\":\"x y\"}}}");
        assert_int_equal(sandbox_template_from_object(o, &t, msg, sizeof(msg)), 0);
        assert_string_equal(t.built_image, TEMPLATE_BUILD_PREFIX TUID ":latest");
        assert_string_equal(t.agent_template, "image:" TEMPLATE_BUILD_PREFIX TUID ":latest");
        assert_null(t.image);
        assert_non_null(t.build);
        json_object *p = template_build_params(&t);
        assert_string_equal(json_object_to_json_string_ext(
                                    p, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
                            "{\"tag\":\"" TEMPLATE_BUILD_PREFIX TUID ":latest\","
                            "\"dockerfile\":\".sandpit-dockerfile\","
                            "\"build_arg\":[\"V=2\",\"B_1=x y\"]}");
        json_object_put(p);
        /* never pooled (yet) */
        json_object *sbx = parse("{\"spec\":{\"template\":\"app\"}}");
        char buf[64];
        assert_int_equal(pools_for_sandbox(sbx, &t, buf, sizeof(buf)), -ENOENT);
        json_object_put(sbx);
        sandbox_template_done(&t);
        json_object *req = NULL;
        assert_int_equal(pools_request(o, &req, msg, sizeof(msg)), -ENOTSUP);
        assert_non_null(strstr(msg, "source.build"));
        assert_null(req);
        json_object_put(o);

        /* no buildArgs: none asked */
        o = tmpl("{\"build\":{\"dockerfile\":\"FROM host\\n\"}}");
        assert_int_equal(sandbox_template_from_object(o, &t, msg, sizeof(msg)), 0);
        p = template_build_params(&t);
        assert_int_equal(json_object_array_length(json_field(p, "build_arg")), 0);
        json_object_put(p);
        sandbox_template_done(&t);
        json_object_put(o);

        static const struct {
                const char *source;
                int r;
                const char *says;
        } bad[] = {
                {"{\"image\":\"busybox\",\"build\":{\"dockerfile\":\"FROM host\"}}", -ENOTSUP,
                 "neither image nor path"},
                {"{\"path\":\"/t/host\",\"build\":{\"dockerfile\":\"FROM host\"}}", -ENOTSUP,
                 "neither image nor path"},
                {"{\"build\":{}}", -EINVAL, "dockerfile is empty"},
                {"{\"build\":{\"dockerfile\":\"\"}}", -EINVAL, "dockerfile is empty"},
                {"{\"build\":{\"dockerfile\":7}}", -EINVAL, "dockerfile is empty"},
                {"{\"build\":\"FROM host\"}", -EINVAL, "not an object"},
                {"{\"build\":{\"dockerfile\":\"FROM host\",\"context\":\"\"}}", -EINVAL, "context"},
                {"{\"build\":{\"dockerfile\":\"FROM host\",\"buildArgs\":[\"A=1\"]}}", -EINVAL,
                 "not a map"},
                {"{\"build\":{\"dockerfile\":\"FROM host\",\"buildArgs\":{\"a-b\":\"1\"}}}",
                 -EINVAL, "a-b is not an ARG name"},
                {"{\"build\":{\"dockerfile\":\"FROM host\",\"buildArgs\":{\"1A\":\"1\"}}}", -EINVAL,
                 "1A is not an ARG name"},
                {"{\"build\":{\"dockerfile\":\"FROM host\",\"buildArgs\":{\"A\":1}}}", -EINVAL,
                 "buildArgs.A is not a string"},
                {"{}", -ENOTSUP, "none of source.path, image and build"},
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                msg[0] = '\0';
                o = tmpl(bad[i].source);
                assert_int_equal(sandbox_template_from_object(o, &t, msg, sizeof(msg)), bad[i].r);
                if (!strstr(msg, bad[i].says))
                        fail_msg("%s: \"%s\" does not say \"%s\"", bad[i].source, msg, bad[i].says);
                assert_null(t.agent_template);
                json_object_put(o);
        }
}

/* The tar in fd as "NAME MODE SIZE MTIME UID:CONTENT;..." */
static char *list_tar(int fd)
{
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        struct archive *ar = archive_read_new();
        archive_read_support_format_tar(ar);
        assert_int_equal(archive_read_open_fd(ar, fd, 4096), ARCHIVE_OK);
        char *out = calloc(1, 4096);
        assert_non_null(out);
        struct archive_entry *e;
        while (archive_read_next_header(ar, &e) == ARCHIVE_OK) {
                char data[256] = "";
                la_ssize_t n = archive_read_data(ar, data, sizeof(data) - 1);
                assert_true(n >= 0);
                for (la_ssize_t i = 0; i < n; i++)
                        if (data[i] < ' ')
                                data[i] = '?';
                data[n] = '\0';
                size_t len = strlen(out);
                snprintf(out + len, 4096 - len, "%s %o %lld %lld %lld:%s;",
                         archive_entry_pathname(e), archive_entry_perm(e),
                         (long long) archive_entry_size(e), (long long) archive_entry_mtime(e),
                         (long long) archive_entry_uid(e), data);
        }
        archive_read_free(ar);
        return out;
}

static void test_context(void **state)
{
        (void) state;
        char msg[512] = "";
        int fd = -1;
        /* no ConfigMap: the Dockerfile alone */
        assert_int_equal(template_build_context("FROM host\n", NULL, &fd, msg, sizeof(msg)), 0);
        char *l = list_tar(fd);
        assert_string_equal(l, ".sandpit-dockerfile 644 10 0 0:FROM host?;");
        free(l);
        close(fd);

        /* data and binaryData (decoded), each sorted by key */
        json_object *cm = parse("{\"metadata\":{\"name\":\"ctx\"},"
                                "\"data\":{\"z.txt\":\"zz\",\"a.txt\":\"aa\",\"empty\":\"\"},"
                                "\"binaryData\":{\"bin\":\"AAH/\"}}");
        assert_int_equal(template_build_context("FROM host\n", cm, &fd, msg, sizeof(msg)), 0);
        l = list_tar(fd);
        assert_string_equal(l, ".sandpit-dockerfile 644 10 0 0:FROM host?;"
                               "a.txt 644 2 0 0:aa;empty 644 0 0 0:;z.txt 644 2 0 0:zz;"
                               "bin 644 3 0 0:???;");
        free(l);
        /* the same inputs, the same bytes (the agent's cache keys on them) */
        int fd2 = -1;
        assert_int_equal(template_build_context("FROM host\n", cm, &fd2, msg, sizeof(msg)), 0);
        off_t n1 = lseek(fd, 0, SEEK_END), n2 = lseek(fd2, 0, SEEK_END);
        assert_true(n1 > 0);
        assert_int_equal(n1, n2);
        char *b1 = malloc((size_t) n1), *b2 = malloc((size_t) n2);
        assert_int_equal(pread(fd, b1, (size_t) n1, 0), n1);
        assert_int_equal(pread(fd2, b2, (size_t) n2, 0), n2);
        assert_memory_equal(b1, b2, (size_t) n1);
        free(b1);
        free(b2);
        close(fd);
        close(fd2);
        json_object_put(cm);

        static const struct {
                const char *cm, *says;
        } bad[] = {
                {"{\"metadata\":{\"name\":\"c\"},\"data\":{\"../x\":\"a\"}}", "data.../x"},
                {"{\"metadata\":{\"name\":\"c\"},\"data\":{\"..\":\"a\"}}", "data..."},
                {"{\"metadata\":{\"name\":\"c\"},\"data\":{\"d/x\":\"a\"}}", "data.d/x"},
                {"{\"metadata\":{\"name\":\"c\"},\"data\":{\".sandpit-dockerfile\":\"a\"}}",
                 ".sandpit-dockerfile cannot be a file"},
                {"{\"metadata\":{\"name\":\"c\"},\"data\":{\"x\":1}}", "data.x cannot"},
                {"{\"metadata\":{\"name\":\"c\"},\"data\":[\"x\"]}", "data is not a map"},
                {"{\"metadata\":{\"name\":\"c\"},\"binaryData\":{\"x\":\"!!!\"}}",
                 "binaryData.x is not base64"},
                {"{\"metadata\":{\"name\":\"c\"},\"data\":{\"x\":\"a\"},"
                 "\"binaryData\":{\"x\":\"AA==\"}}",
                 "x is in both data and binaryData"},
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                msg[0] = '\0';
                fd = -1;
                cm = parse(bad[i].cm);
                assert_int_equal(template_build_context("FROM host\n", cm, &fd, msg, sizeof(msg)),
                                 -EINVAL);
                assert_int_equal(fd, -1);
                if (!strstr(msg, bad[i].says))
                        fail_msg("%s: \"%s\" does not say \"%s\"", bad[i].cm, msg, bad[i].says);
                json_object_put(cm);
        }
}

static void test_events(void **state)
{
        (void) state;
        TemplateBuildResult r = {0};
        static const char *const ok[] = {
                "{\"step\":2,\"steps\":3,\"line\":2,\"instruction\":\"RUN make\"}",
                "{\"step\":2,\"steps\":3,\"line\":2,\"stream\":\"stdout\",\"data\":\"x\\n\"}",
                "{\"step\":2,\"steps\":3,\"line\":2,\"cached\":true}",
                "{\"image\":\"localhost/a:latest\",\"digest\":\"sha256:ab\",\"layers\":2}",
        };
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                json_object *ev = parse(ok[i]);
                assert_int_equal(template_build_event(ev, &r), 0);
                assert_int_equal(r.done, i == 3);
                json_object_put(ev);
        }
        assert_string_equal(r.digest, "sha256:ab");
        assert_string_equal(r.error, "");

        /* a failed step: its message and the last line of its output */
        r = (TemplateBuildResult){0};
        json_object *ev =
                parse("{\"step\":2,\"error\":\"step 2 (line 2, RUN): the command exited "
                      "with 3\",\"exit_code\":3,\"output_tail\":\"first\\nlast one\\n\\n\"}");
        assert_int_equal(template_build_event(ev, &r), 0);
        json_object_put(ev);
        assert_false(r.done);
        assert_string_equal(r.error, "step 2 (line 2, RUN): the command exited with 3: last one");
        r = (TemplateBuildResult){0};
        ev = parse("{\"error\":\"step 1 (line 1, FROM): no template nope\",\"output_tail\":\"\"}");
        assert_int_equal(template_build_event(ev, &r), 0);
        json_object_put(ev);
        assert_string_equal(r.error, "step 1 (line 1, FROM): no template nope");
}

static void test_in_flight(void **state)
{
        (void) state;
        assert_int_equal(template_build_begin("n1", "localhost/a:latest"), 0);
        assert_int_equal(template_build_begin("n1", "localhost/a:latest"), -EBUSY);
        /* another node, another image: their own */
        assert_int_equal(template_build_begin("n2", "localhost/a:latest"), 0);
        assert_int_equal(template_build_begin("n1", "localhost/b:latest"), 0);
        template_build_end("n1", "localhost/a:latest");
        assert_int_equal(template_build_begin("n1", "localhost/a:latest"), 0);
        template_build_end("n1", "localhost/a:latest");
        template_build_end("n2", "localhost/a:latest");
        template_build_end("n1", "localhost/b:latest");
        template_build_end("n9", "localhost/none:latest"); /* not in flight: nothing */
        assert_int_equal(template_build_begin("n2", "localhost/a:latest"), 0);
        template_build_end("n2", "localhost/a:latest");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_resolve),
                cmocka_unit_test(test_context),
                cmocka_unit_test(test_events),
                cmocka_unit_test(test_in_flight),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
