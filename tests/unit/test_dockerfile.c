/* node-agent/dockerfile.c: instructions, continuations, comments, JSON and
 * shell forms, substitution, and errors with their line numbers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dockerfile.h"
#include "sandpit/macro.h"

static int parse(const char *text, Dockerfile *d, char *err, size_t errlen)
{
        return dockerfile_parse(text, strlen(text), d, err, errlen);
}

static void test_instructions(void **state)
{
        (void) state;
        const char *text = "# syntax=docker/dockerfile:1\n"
                           "ARG BASE=default\n"
                           "\n"
                           "from $BASE AS build\n"
                           "RUN apt-get update && \\\n"
                           "    # a comment inside a continuation\n"
                           "    echo done\n"
                           "RUN [\"/bin/sh\", \"-c\", \"echo hi\"]\n"
                           "RUN [not json\n"
                           "COPY --chown=1000:1000 a b /dst/\n"
                           "ADD [\"x y\", \"/z\"]\n"
                           "ENV A=1 B=\"two words\"\n"
                           "ENV LEGACY some value\n"
                           "WORKDIR /app\n"
                           "USER 1000\n"
                           "CMD [\"python\", \"-m\", \"http.server\"]\n"
                           "ENTRYPOINT exec server   \n"
                           "LABEL a=b\n"
                           "EXPOSE 80\n";
        Dockerfile d = {0};
        char err[256] = "";
        assert_int_equal(parse(text, &d, err, sizeof(err)), 0);
        assert_int_equal(d.n, 15);
        assert_int_equal(d.v[0].kind, DF_ARG);
        assert_int_equal(d.v[0].line, 2);
        assert_int_equal(d.v[1].kind, DF_FROM);
        assert_int_equal(d.v[1].line, 4);
        assert_string_equal(d.v[1].args, "$BASE AS build");
        assert_int_equal(d.v[2].kind, DF_RUN);
        assert_int_equal(d.v[2].line, 5);
        assert_string_equal(d.v[2].args, "apt-get update &&  echo done");
        assert_null(d.v[2].argv);
        assert_int_equal(d.v[3].line, 8);
        assert_non_null(d.v[3].argv);
        assert_string_equal(d.v[3].argv[2], "echo hi");
        assert_null(d.v[3].argv[3]);
        assert_null(d.v[4].argv); /* not JSON: the shell form, as Docker does */
        assert_string_equal(d.v[4].args, "[not json");
        assert_int_equal(d.v[5].kind, DF_COPY);
        assert_string_equal(d.v[5].chown, "1000:1000");
        assert_string_equal(d.v[5].args, "a b /dst/");
        assert_int_equal(d.v[6].kind, DF_ADD);
        assert_string_equal(d.v[6].argv[0], "x y");
        assert_int_equal(d.v[11].kind, DF_CMD);
        assert_string_equal(d.v[11].argv[1], "-m");
        assert_int_equal(d.v[12].kind, DF_ENTRYPOINT);
        assert_string_equal(d.v[12].args, "exec server");
        assert_int_equal(d.v[13].kind, DF_LABEL);
        assert_int_equal(d.v[14].line, 19);
        dockerfile_done(&d);
}

static void test_words_and_substitution(void **state)
{
        (void) state;
        char *vars[] = {"A=1", "B=two words", "A=3", "EMPTY=", NULL};
        char **w = NULL;
        char err[128] = "";
        assert_int_equal(dockerfile_words("$A ${A}x ${NOPE:-dflt} ${EMPTY:-e} ${A:+set} "
                                          "${NOPE:+no}z \\$A '$A' \"$B\" a\\ b $ $1",
                                          vars, &w, err, sizeof(err)),
                         0);
        const char *want[] = {"3",  "3x",        "dflt", "e", "set", "z", "$A",
                              "$A", "two words", "a b",  "$", "$1",  NULL};
        for (size_t i = 0; want[i]; i++) {
                assert_non_null(w[i]);
                assert_string_equal(w[i], want[i]);
        }
        assert_null(w[12]);
        strv_free(w);

        /* No vars: kept as written. */
        assert_int_equal(dockerfile_words("$A \"\" ''", NULL, &w, err, sizeof(err)), 0);
        assert_string_equal(w[0], "$A");
        assert_string_equal(w[1], "");
        assert_string_equal(w[2], "");
        assert_null(w[3]);
        strv_free(w);

        assert_int_equal(dockerfile_words("'open", vars, &w, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "single quote"));
        assert_int_equal(dockerfile_words("\"open", vars, &w, err, sizeof(err)), -EINVAL);
        assert_int_equal(dockerfile_words("${A", vars, &w, err, sizeof(err)), -EINVAL);
        assert_int_equal(dockerfile_words("${A:-x", vars, &w, err, sizeof(err)), -EINVAL);
        assert_int_equal(dockerfile_words("${1}", vars, &w, err, sizeof(err)), -EINVAL);

        assert_int_equal(dockerfile_env_pairs("X=$A Y=\"${B}!\"", vars, &w, err, sizeof(err)), 0);
        assert_string_equal(w[0], "X=3");
        assert_string_equal(w[1], "Y=two words!");
        assert_null(w[2]);
        strv_free(w);
        assert_int_equal(dockerfile_env_pairs("PATH /a:$A  /b", vars, &w, err, sizeof(err)), 0);
        assert_string_equal(w[0], "PATH=/a:3 /b");
        strv_free(w);
        assert_int_equal(dockerfile_env_pairs("ONLY", vars, &w, err, sizeof(err)), 0);
        assert_string_equal(w[0], "ONLY");
        strv_free(w);
        assert_int_equal(dockerfile_env_pairs("X=1 nope", vars, &w, err, sizeof(err)), -EINVAL);
        assert_int_equal(dockerfile_env_pairs("9X=1", vars, &w, err, sizeof(err)), -EINVAL);
}

static void test_errors(void **state)
{
        (void) state;
        static const struct {
                const char *text, *want;
        } bad[] = {
                {"FROM x\n\nFROB y\n", "line 3: unknown instruction FROB"},
                {"FROM x\nSHELL [\"/bin/bash\"]\n", "line 2: SHELL is not supported"},
                {"RUN echo\n", "line 1: RUN before FROM"},
                {"FROM x\nCOPY onlyone\n", "line 2: COPY needs a source and a destination"},
                {"FROM x\nADD --from=a b c\n", "line 2: ADD flag --from=a is not supported"},
                {"FROM x\nCOPY --checksum=sha256:00 b c\n", "line 2: COPY flag --checksum"},
                {"FROM x AS a\nFROM y AS A\n", "line 2: stage name a is used twice"},
                {"FROM x AS 1a\n", "line 1: FROM: stage name 1a is not"},
                {"FROM x AS a/b\n", "line 1: FROM: stage name a/b is not"},
                {"FROM x AS a\nCOPY --from=a f /g\n", "line 2: COPY --from=a names its own stage"},
                {"FROM x\nCOPY --from=0 f /g\n", "line 2: COPY --from=0 names its own stage"},
                {"FROM x\nCOPY --from=3 f /g\n", "line 2: COPY --from=3: no such stage"},
                {"FROM x\nCOPY --from=later f /g\nFROM y AS later\n",
                 "line 2: COPY --from=later names a later stage"},
                {"FROM x\nADD --checksum=md5:abc http://h/f /f\n",
                 "line 2: ADD --checksum takes sha256:"},
                {"FROM x\nADD --checksum=sha256:"
                 "0000000000000000000000000000000000000000000000000000000000000000 local /f\n",
                 "line 2: ADD --checksum needs one http(s) URL source"},
                {"FROM x\nADD --checksum=sha256:"
                 "0000000000000000000000000000000000000000000000000000000000000000 "
                 "http://h/a http://h/b /d/\n",
                 "line 2: ADD --checksum needs one http(s) URL source"},
                {"FROM x\nRUN\n", "line 2: RUN needs an argument"},
                {"FROM x\nRUN []\n", "line 2: RUN [] has no command"},
                {"FROM x\nENV A\n", "line 2: ENV A has no value"},
                {"FROM x\nENV 1A=b\n", "line 2: ENV: "},
                {"FROM x\nARG A=1 B=2\n", "line 2: ARG takes one"},
                {"FROM x\nWORKDIR /a /b\n", "line 2: WORKDIR: takes one argument"},
                {"FROM x\n\\\n\nUSER 'a\n", "line 2: USER: unterminated single quote"},
                {"FROM a b\n", "line 1: FROM: expected FROM IMAGE [AS NAME]"},
                {"# only a comment\n", "no FROM instruction"},
                {"", "no FROM instruction"},
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                Dockerfile d = {0};
                char err[256] = "";
                int r = parse(bad[i].text, &d, err, sizeof(err));
                if (r != -EINVAL || !strstr(err, bad[i].want))
                        fail_msg("%s: got %d \"%s\", want \"%s\"", bad[i].text, r, err,
                                 bad[i].want);
                assert_null(d.v);
        }
        Dockerfile d = {0};
        char err[128] = "";
        assert_int_equal(dockerfile_parse("FROM x\nRUN a\0b\n", 15, &d, err, sizeof(err)),
                         -EBADMSG);
        assert_non_null(strstr(err, "line 2"));
}

static void test_stages(void **state)
{
        (void) state;
        const char *text = "ARG V=1\n"
                           "FROM base:$V AS Build\n"
                           "RUN make\n"
                           "FROM other AS unused\n"
                           "RUN true\n"
                           "FROM build AS test\n"
                           "RUN make test\n"
                           "FROM scratchy\n"
                           "COPY --from=build --chown=1:2 /out/app /app\n"
                           "COPY --from=0 /x /y\n"
                           "COPY --from=registry.example/img:1 /z /z\n"
                           "ADD --checksum=sha256:"
                           "abababababababababababababababababababababababababababababababab "
                           "https://h.test/f.tgz /f\n";
        Dockerfile d = {0};
        char err[256] = "";
        assert_int_equal(parse(text, &d, err, sizeof(err)), 0);
        assert_int_equal(d.nstages, 4);
        assert_string_equal(d.stages[0].name, "build"); /* lowercased */
        assert_int_equal(d.stages[0].first, 1);
        assert_string_equal(d.stages[1].name, "unused");
        assert_null(d.stages[3].name);
        assert_int_equal(d.stages[3].first, 7);
        assert_int_equal(d.v[0].stage, -1); /* the ARG before FROM */
        assert_int_equal(d.v[1].stage, 0);
        assert_int_equal(d.v[1].from_stage, -1);
        assert_int_equal(d.v[5].from_stage, 0); /* FROM build */
        assert_int_equal(d.v[8].stage, 3);
        assert_string_equal(d.v[8].from, "build");
        assert_string_equal(d.v[8].chown, "1:2");
        assert_string_equal(d.v[8].args, "/out/app /app");
        assert_int_equal(d.v[8].from_stage, 0);
        assert_int_equal(d.v[9].from_stage, 0);
        assert_int_equal(d.v[10].from_stage, -1);
        assert_string_equal(d.v[10].from, "registry.example/img:1");
        assert_non_null(d.v[11].checksum);
        assert_string_equal(d.v[11].args, "https://h.test/f.tgz /f");

        /* The last stage needs build (COPY --from), not unused nor test. */
        bool needed[4];
        size_t t = 99;
        assert_int_equal(dockerfile_plan(&d, NULL, needed, &t, err, sizeof(err)), 0);
        assert_int_equal(t, 3);
        assert_true(needed[0]);
        assert_false(needed[1]);
        assert_false(needed[2]);
        assert_true(needed[3]);
        /* --target test: itself and build (its FROM). */
        assert_int_equal(dockerfile_plan(&d, "TEST", needed, &t, err, sizeof(err)), 0);
        assert_int_equal(t, 2);
        assert_true(needed[0]);
        assert_false(needed[1]);
        assert_true(needed[2]);
        assert_false(needed[3]);
        assert_int_equal(dockerfile_plan(&d, "nope", needed, &t, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "target stage nope"));
        dockerfile_done(&d);
        assert_null(d.stages);
        assert_int_equal(d.nstages, 0);
}

static void test_continuation_at_end_and_crlf(void **state)
{
        (void) state;
        Dockerfile d = {0};
        char err[128] = "";
        assert_int_equal(parse("FROM x\r\nRUN a \\\r\n  b \\", &d, err, sizeof(err)), 0);
        assert_int_equal(d.n, 2);
        assert_string_equal(d.v[0].args, "x");
        assert_string_equal(d.v[1].args, "a  b");
        dockerfile_done(&d);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_instructions),
                cmocka_unit_test(test_words_and_substitution),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_stages),
                cmocka_unit_test(test_continuation_at_end_and_crlf),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
