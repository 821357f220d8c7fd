/* Start commands (template.h): the request's start_cmd, a template.json's, and
 * what a create request keeps of it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandbox.h"
#include "sandpit/util.h"
#include "template.h"

static int parse(const char *text, StartCmd **ret, char *err, size_t errlen)
{
        json_object *o = json_tokener_parse(text);
        assert_non_null(o);
        int r = start_cmd_from_json(o, ret, err, errlen);
        json_object_put(o);
        return r;
}

static void test_argv_shell_and_fields(void **state)
{
        (void) state;
        char err[256] = "";
        StartCmd *c = NULL;
        assert_int_equal(parse("{\"command\": [\"python3\", \"-m\", \"http.server\"], "
                               "\"wait_for_port\": 8000, \"ready_timeout\": 2.5, "
                               "\"user\": \"root\", \"cwd\": \"/srv\"}",
                               &c, err, sizeof(err)),
                         0);
        assert_string_equal(c->argv[0], "python3");
        assert_string_equal(c->argv[2], "http.server");
        assert_null(c->argv[3]);
        assert_false(c->from_image);
        assert_int_equal(c->port, 8000);
        assert_int_equal(c->ready_timeout_ms, 2500);
        assert_string_equal(c->user, "root");
        assert_string_equal(c->cwd, "/srv");
        start_cmd_free(c);

        assert_int_equal(parse("{\"command\": \"echo hi; sleep 9\"}", &c, err, sizeof(err)), 0);
        assert_string_equal(c->argv[0], "/bin/sh");
        assert_string_equal(c->argv[1], "-c");
        assert_string_equal(c->argv[2], "echo hi; sleep 9");
        assert_int_equal(c->port, 0);
        assert_int_equal(c->ready_timeout_ms, 60000); /* the default */
        start_cmd_free(c);

        assert_int_equal(
                parse("{\"from_image\": true, \"wait_for_port\": 80}", &c, err, sizeof(err)), 0);
        assert_true(c->from_image);
        assert_null(c->argv);
        start_cmd_free(c);
}

static void test_refused(void **state)
{
        (void) state;
        static const char *const bad[] = {
                "[]",
                "{}",
                "{\"from_image\": false}",
                "{\"command\": []}",
                "{\"command\": \"\"}",
                "{\"command\": [1]}",
                "{\"command\": [\"x\"], \"from_image\": true}",
                "{\"command\": [\"x\"], \"wait_for_port\": 0}",
                "{\"command\": [\"x\"], \"wait_for_port\": 65536}",
                "{\"command\": [\"x\"], \"wait_for_port\": \"80\"}",
                "{\"command\": [\"x\"], \"ready_timeout\": 0}",
                "{\"command\": [\"x\"], \"ready_timeout\": 3601}",
                "{\"command\": [\"x\"], \"cwd\": \"rel\"}",
                "{\"command\": [\"x\"], \"user\": \"a:b\"}",
                "{\"command\": [\"x\"], \"other\": 1}",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char err[256] = "";
                StartCmd *c = NULL;
                int r = parse(bad[i], &c, err, sizeof(err));
                if (r != -EINVAL || !*err || c)
                        fail_msg("%s: %d, \"%s\"", bad[i], r, err);
        }
}

static void test_in_a_create_request(void **state)
{
        (void) state;
        json_object *req = json_tokener_parse(
                "{\"template\": \"host\", \"start_cmd\": {\"command\": [\"sleep\", \"9\"]}}");
        SandboxSpec s;
        char err[256] = "";
        assert_int_equal(sandbox_spec_from_json(req, &s, err, sizeof(err)), 0);
        assert_non_null(s.start_cmd);
        assert_string_equal(s.start_cmd->argv[0], "sleep");
        sandbox_spec_done(&s);
        json_object_put(req);

        req = json_tokener_parse("{\"start_cmd\": {\"wait_for_port\": 1}}");
        assert_int_equal(sandbox_spec_from_json(req, &s, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "start_cmd"));
        json_object_put(req);
}

static void write_template(const char *dir, const char *name, const char *json)
{
        char path[4096];
        (void) snprintf(path, sizeof(path), "%s/%s", dir, name);
        assert_int_equal(mkdir(path, 0755), 0);
        (void) snprintf(path, sizeof(path), "%s/%s/rootfs", dir, name);
        assert_int_equal(mkdir(path, 0755), 0);
        (void) snprintf(path, sizeof(path), "%s/%s/template.json", dir, name);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        (void) fputs(json, f);
        assert_int_equal(fclose(f), 0);
}

static void test_template_json(void **state)
{
        (void) state;
        char dir[] = "/tmp/sandpit-unit-startcmd-XXXXXX";
        assert_non_null(mkdtemp(dir));
        write_template(dir, "web",
                       "{\"name\": \"web\", \"binds\": [], \"start_cmd\": {\"command\": "
                       "[\"httpd\"], \"wait_for_port\": 8080}}");
        write_template(dir, "plain", "{\"name\": \"plain\"}");
        write_template(dir, "broken", "{\"name\": \"broken\", \"start_cmd\": {\"command\": 5}}");
        write_template(dir, "noimage",
                       "{\"name\": \"noimage\", \"start_cmd\": {\"from_image\": true}}");
        Template *t = NULL;
        assert_int_equal(template_load(dir, "web", &t), 0);
        assert_non_null(t->start);
        assert_string_equal(t->start->argv[0], "httpd");
        assert_int_equal(t->start->port, 8080);
        template_free(t);
        assert_int_equal(template_load(dir, "plain", &t), 0);
        assert_null(t->start);
        template_free(t);
        t = NULL;
        assert_int_equal(template_load(dir, "broken", &t), -EBADMSG);
        assert_int_equal(template_load(dir, "noimage", &t), -EBADMSG);
        assert_null(t);
        assert_int_equal(rm_rf(dir), 0);
}

/* template.json's "languages": kept as written; absent is NULL (not said),
 * anything but an array of strings makes the template unusable. */
static void test_template_languages(void **state)
{
        (void) state;
        char dir[] = "/tmp/sandpit-unit-langs-XXXXXX";
        assert_non_null(mkdtemp(dir));
        write_template(dir, "two", "{\"name\": \"two\", \"languages\": [\"python\", \"r\"]}");
        write_template(dir, "none", "{\"name\": \"none\", \"languages\": []}");
        write_template(dir, "unsaid", "{\"name\": \"unsaid\"}");
        write_template(dir, "notarray", "{\"name\": \"notarray\", \"languages\": \"python\"}");
        write_template(dir, "notstring", "{\"name\": \"notstring\", \"languages\": [1]}");
        Template *t = NULL;
        assert_int_equal(template_load(dir, "two", &t), 0);
        assert_non_null(t->languages);
        assert_string_equal(t->languages[0], "python");
        assert_string_equal(t->languages[1], "r");
        assert_null(t->languages[2]);
        template_free(t);
        assert_int_equal(template_load(dir, "none", &t), 0);
        assert_non_null(t->languages);
        assert_null(t->languages[0]);
        template_free(t);
        assert_int_equal(template_load(dir, "unsaid", &t), 0);
        assert_null(t->languages);
        template_free(t);
        t = NULL;
        assert_int_equal(template_load(dir, "notarray", &t), -EBADMSG);
        assert_int_equal(template_load(dir, "notstring", &t), -EBADMSG);
        assert_null(t);
        assert_int_equal(rm_rf(dir), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_argv_shell_and_fields), cmocka_unit_test(test_refused),
                cmocka_unit_test(test_in_a_create_request),   cmocka_unit_test(test_template_json),
                cmocka_unit_test(test_template_languages),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
