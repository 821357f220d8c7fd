/* The code interpreter's pure parts: `sandpit code` arguments and output,
 * language names, and the read-only mounts of the bundle. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "bundle.h"
#include "cli.h"
#include "code.h"
#include "sandpit/macro.h"
#include "test-support.h"

#define PARSE(cmd, a, ...) cli_parse_args((cmd), ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (a))

static void test_args(void **state)
{
        (void) state;
        CliArgs a;
        CliCommand cmd;
        assert_int_equal(cli_command_from_name("code", &cmd), 0);
        assert_int_equal(cmd, CLI_CMD_CODE);

        assert_int_equal(PARSE(CLI_CMD_CODE, &a, "code", "--lang", "js", "--context", "c1", "-e",
                               "A=b", "--timeout", "2.5", "--save-images", "/tmp/x", "ID", "1+1"),
                         0);
        assert_json(a.exec, "{\"language\":\"js\",\"context\":\"c1\",\"env\":{\"A\":\"b\"},"
                            "\"timeout\":2.5,\"code\":\"1+1\"}");
        assert_string_equal(a.save_images, "/tmp/x");
        assert_false(a.read_stdin);
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_CODE, &a, "code", "ID"), 0);
        assert_true(a.read_stdin);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_CODE, &a, "code", "ID", "-"), 0);
        assert_true(a.read_stdin);
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_CODE, &a, "code"), -EINVAL);
        assert_non_null(strstr(a.error, "missing sandbox id"));
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_CODE, &a, "code", "ID", "x", "y"), -EINVAL);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_CODE, &a, "code", "--shell", "ID", "x"), -EINVAL);
        cli_args_done(&a);
}

/* Feeds NDJSON lines, parsed, to a CliCodeState writing to two pipes; returns the
 * finish status and what each pipe got. */
static int feed(const char *const *lines, const char *save_dir, char *out, char *err, size_t len)
{
        int po[2], pe[2];
        assert_int_equal(pipe(po), 0);
        assert_int_equal(pipe(pe), 0);
        CliCodeState s;
        cli_code_state_init(&s, po[1], pe[1], save_dir);
        int status = -1;
        for (const char *const *l = lines; *l; l++) {
                /* As lib's agent client hands events over: parsed, or the
                 * stream fails. */
                json_object *ev = NULL;
                if (json_parse_strict(*l, strlen(*l), 0, &ev, NULL) < 0 ||
                    cli_code_on_event(ev, &s) < 0)
                        status = -2;
                json_object_put(ev);
        }
        if (status == -1)
                status = s.ended ? cli_code_finish(&s) : -3;
        cli_code_state_done(&s);
        (void) close(po[1]);
        (void) close(pe[1]);
        ssize_t n = read(po[0], out, len - 1);
        out[n > 0 ? n : 0] = 0;
        n = read(pe[0], err, len - 1);
        err[n > 0 ? n : 0] = 0;
        (void) close(po[0]);
        (void) close(pe[0]);
        return status;
}

static void test_output(void **state)
{
        (void) state;
        char out[4096], err[4096];
        const char *const ok[] = {
                "{\"type\":\"number_of_executions\",\"execution_count\":1}",
                "{\"type\":\"stdout\",\"text\":\"hi\\n\"}",
                "{\"type\":\"stderr\",\"text\":\"warn\\n\"}",
                "{\"type\":\"result\",\"text\":\"2\",\"is_main_result\":true}",
                "{\"type\":\"result\",\"text\":\"{'a': 1}\",\"json\":{\"a\":1},"
                "\"is_main_result\":false}",
                "{\"type\":\"end_of_execution\",\"timed_out\":false}",
                NULL,
        };
        assert_int_equal(feed(ok, NULL, out, err, sizeof(out)), 0);
        /* display data as it comes, the main result at the end */
        assert_string_equal(out, "hi\n{'a': 1}\n2\n");
        assert_string_equal(err, "warn\n");

        const char *const error[] = {
                "{\"type\":\"error\",\"name\":\"ZeroDivisionError\",\"value\":\"division by "
                "zero\",\"traceback\":\"Traceback:\\nZeroDivisionError: division by zero\\n\"}",
                "{\"type\":\"end_of_execution\",\"timed_out\":false}",
                NULL,
        };
        assert_int_equal(feed(error, NULL, out, err, sizeof(out)), CLI_EXIT_FAILURE);
        assert_string_equal(err, "Traceback:\nZeroDivisionError: division by zero\n");

        const char *const timeout[] = {
                "{\"type\":\"error\",\"name\":\"TimeoutError\",\"value\":\"timed out\","
                "\"traceback\":\"KeyboardInterrupt\\n\"}",
                "{\"type\":\"end_of_execution\",\"timed_out\":true}",
                NULL,
        };
        assert_int_equal(feed(timeout, NULL, out, err, sizeof(out)), CLI_EXIT_TIMEOUT);
        assert_string_equal(err, "KeyboardInterrupt\nTimeoutError: timed out\n");

        const char *const bad[] = {"not json", NULL};
        assert_int_equal(feed(bad, NULL, out, err, sizeof(out)), -2);
        const char *const unended[] = {"{\"type\":\"stdout\",\"text\":\"x\"}", NULL};
        assert_int_equal(feed(unended, NULL, out, err, sizeof(out)), -3);
}

static void test_save_images(void **state)
{
        (void) state;
        char dir[] = "/tmp/sandpit-test-code-XXXXXX", out[4096], err[4096], path[256];
        assert_non_null(mkdtemp(dir));
        /* "iVBORw0KGgo=" is the PNG signature's first 8 bytes */
        const char *const lines[] = {
                "{\"type\":\"result\",\"png\":\"iVBORw0KGgo=\",\"text\":\"<Figure>\","
                "\"is_main_result\":false}",
                "{\"type\":\"end_of_execution\",\"timed_out\":false}",
                NULL,
        };
        assert_int_equal(feed(lines, dir, out, err, sizeof(out)), 0);
        (void) snprintf(path, sizeof(path), "[image saved to %s/image-1.png]\n", dir);
        assert_string_equal(out, path);
        (void) snprintf(path, sizeof(path), "%s/image-1.png", dir);
        int fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        unsigned char buf[16];
        assert_int_equal(read(fd, buf, sizeof(buf)), 8);
        assert_memory_equal(buf, "\x89PNG\r\n\x1a\n", 8);
        (void) close(fd);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);

        /* without a directory, a note instead of the image */
        assert_int_equal(feed(lines, NULL, out, err, sizeof(out)), 0);
        assert_non_null(strstr(out, "--save-images"));
}

static void test_languages(void **state)
{
        (void) state;
        assert_string_equal(code_language_normalize("python"), "python");
        assert_string_equal(code_language_normalize("js"), "javascript");
        assert_string_equal(code_language_normalize("javascript"), "javascript");
        assert_string_equal(code_language_normalize("bash"), "bash");
        assert_string_equal(code_language_normalize("typescript"), "typescript");
        assert_string_equal(code_language_normalize("ts"), "typescript");
        assert_string_equal(code_language_normalize("r"), "r");
        assert_string_equal(code_language_normalize("java"), "java");
        assert_null(code_language_normalize("R"));
        assert_null(code_language_normalize("tsx"));
        assert_null(code_language_normalize("Python"));
        assert_null(code_language_normalize(""));
        assert_null(code_language_normalize(NULL));
}

static json_object *find_mount(json_object *config, const char *dest)
{
        json_object *mounts = NULL, *d = NULL;
        assert_true(json_object_object_get_ex(config, "mounts", &mounts));
        for (size_t i = 0; i < json_object_array_length(mounts); i++) {
                json_object *m = json_object_array_get_idx(mounts, i);
                if (json_object_object_get_ex(m, "destination", &d) &&
                    streq(json_object_get_string(d), dest))
                        return m;
        }
        return NULL;
}

static void test_bundle_mounts(void **state)
{
        (void) state;
        BundleSpec spec = {.id = "abc",
                           .rootfs = "/r/rootfs",
                           .control_dir = "/r/ctl",
                           .init_binary = "/bin/init",
                           .cgroups_path = "/sandpit/abc"};
        json_object *config = NULL;
        assert_int_equal(bundle_config_new(&spec, &config), 0);
        assert_null(find_mount(config, CODE_SOCKETS_MOUNT));
        assert_null(find_mount(config, CODE_KERNELS_MOUNT));
        json_object_put(config);

        spec.kernels_dir = "/usr/share/sandpit/kernels";
        spec.code_dir = "/r/code";
        assert_int_equal(bundle_config_new(&spec, &config), 0);
        const char *dests[] = {CODE_SOCKETS_MOUNT, CODE_KERNELS_MOUNT};
        const char *sources[] = {"/r/code", "/usr/share/sandpit/kernels"};
        for (size_t i = 0; i < ARRAY_SIZE(dests); i++) {
                json_object *m = find_mount(config, dests[i]), *src = NULL, *opts = NULL;
                assert_non_null(m);
                assert_true(json_object_object_get_ex(m, "source", &src));
                assert_string_equal(json_object_get_string(src), sources[i]);
                assert_true(json_object_object_get_ex(m, "options", &opts));
                bool ro = false, noexec = false;
                for (size_t k = 0; k < json_object_array_length(opts); k++) {
                        const char *o = json_object_get_string(json_object_array_get_idx(opts, k));
                        ro = ro || streq(o, "ro");
                        noexec = noexec || streq(o, "noexec");
                }
                assert_true(ro && noexec);
        }
        json_object_put(config);

        spec.code_dir = "relative";
        assert_int_equal(bundle_config_new(&spec, &config), -EINVAL);
}

int main(void)
{
        (void) signal(SIGPIPE, SIG_IGN);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_args),          cmocka_unit_test(test_output),
                cmocka_unit_test(test_save_images),   cmocka_unit_test(test_languages),
                cmocka_unit_test(test_bundle_mounts),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
