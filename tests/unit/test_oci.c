/* lib/oci.c: references, digests, manifests, indexes, image configs,
 * WWW-Authenticate challenges and docker config credentials. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sandpit/macro.h"
#include "sandpit/oci.h"

#define D1 "sha256:0000000000000000000000000000000000000000000000000000000000000001"
#define D2 "sha256:0000000000000000000000000000000000000000000000000000000000000002"
#define D3 "sha256:0000000000000000000000000000000000000000000000000000000000000003"

static void test_ref_parse(void **state)
{
        (void) state;
        static const struct {
                const char *in, *def;
                const char *registry, *repo, *tag, *digest;
        } ok[] = {
                {"reg.example:5000/team/app:1.2", NULL, "reg.example:5000", "team/app", "1.2",
                 NULL},
                {"localhost/app", NULL, "localhost", "app", "latest", NULL},
                {"127.0.0.1:5000/a/b/c@" D1, NULL, "127.0.0.1:5000", "a/b/c", NULL, D1},
                {"r.io/app:v1@" D2, NULL, "r.io", "app", "v1", D2},
                {"python:3.12-slim", "mirror.local", "mirror.local", "python", "3.12-slim", NULL},
                {"team/app", "mirror.local", "mirror.local", "team/app", "latest", NULL},
                {"r.io/my_app.x-y__z", NULL, "r.io", "my_app.x-y__z", "latest", NULL},
        };
        for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
                OciRef r = {0};
                if (oci_ref_parse(ok[i].in, ok[i].def, &r) < 0)
                        fail_msg("%s refused", ok[i].in);
                assert_string_equal(r.registry, ok[i].registry);
                assert_string_equal(r.repository, ok[i].repo);
                if (ok[i].tag)
                        assert_string_equal(r.tag, ok[i].tag);
                else
                        assert_null(r.tag);
                if (ok[i].digest)
                        assert_string_equal(r.digest, ok[i].digest);
                else
                        assert_null(r.digest);
                oci_ref_done(&r);
        }
        static const char *const bad[] = {
                "",
                "python", /* no registry and no default */
                "r.io/",
                "r.io/App",
                "r.io/a//b",
                "r.io/a:",
                "r.io/a:-x",
                "r.io/a@sha256:1234",
                "r.io/a@md5:00000000000000000000000000000000",
                "r.io/a..b",
                "r.io/-a",
                "r i/a",
                "r.io/a:b:c",
                "r.io/a/../b",
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                OciRef r = {0};
                if (oci_ref_parse(bad[i], NULL, &r) != -EINVAL)
                        fail_msg("%s accepted", bad[i]);
        }
        OciRef r = {0};
        char *s = NULL;
        assert_int_equal(oci_ref_parse("r.io/a:v1@" D1, NULL, &r), 0);
        assert_int_equal(oci_ref_format(&r, &s), 0);
        assert_string_equal(s, "r.io/a:v1@" D1);
        free(s);
        oci_ref_done(&r);
}

static void test_digests(void **state)
{
        (void) state;
        assert_true(oci_digest_valid(D1));
        assert_false(oci_digest_valid("sha256:ABCD"));
        assert_false(oci_digest_valid(
                "sha256:000000000000000000000000000000000000000000000000000000000000000A"));
        assert_false(oci_digest_valid(NULL));
        /* sha256("") and sha256("abc"). */
        assert_int_equal(
                oci_digest_check(
                        "", 0,
                        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
                0);
        assert_int_equal(
                oci_digest_check(
                        "abc", 3,
                        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
                0);
        assert_int_equal(
                oci_digest_check(
                        "abd", 3,
                        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
                -EBADMSG);
        OciHasher *h = NULL;
        char got[OCI_DIGEST_MAX];
        assert_int_equal(oci_hasher_new(&h), 0);
        assert_int_equal(oci_hasher_update(h, "a", 1), 0);
        assert_int_equal(oci_hasher_update(h, "bc", 2), 0);
        assert_int_equal(oci_hasher_final(h, got), 0);
        assert_string_equal(
                got, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        oci_hasher_free(h);
}

static int parse(const char *s, const char *ct, OciManifest *m)
{
        return oci_manifest_parse(s, strlen(s), ct, m);
}

static void test_manifest(void **state)
{
        (void) state;
        OciManifest m = {0};
        const char *oci =
                "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
                "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
                "\"digest\":\"" D1 "\",\"size\":10},"
                "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
                "\"digest\":\"" D2 "\",\"size\":20},"
                "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\","
                "\"digest\":\"" D3 "\",\"size\":30}]}";
        assert_int_equal(parse(oci, NULL, &m), 0);
        assert_false(m.is_index);
        assert_string_equal(m.config.digest, D1);
        assert_int_equal(m.n_layers, 2);
        assert_string_equal(m.layers[0].digest, D2);
        assert_int_equal(m.layers[0].size, 20);
        assert_int_equal(m.layers[0].compression, OCI_COMPRESSION_GZIP);
        assert_int_equal(m.layers[1].compression, OCI_COMPRESSION_ZSTD);
        oci_manifest_done(&m);

        /* Docker schema 2, media type only in the Content-Type. */
        const char *docker =
                "{\"schemaVersion\":2,"
                "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\","
                "\"digest\":\"" D1 "\",\"size\":1},"
                "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
                "\"digest\":\"" D2 "\",\"size\":2}]}";
        assert_int_equal(
                parse(docker, "application/vnd.docker.distribution.manifest.v2+json; x=y", &m), 0);
        assert_int_equal(m.n_layers, 1);
        assert_int_equal(m.layers[0].compression, OCI_COMPRESSION_GZIP);
        oci_manifest_done(&m);

        const char *index =
                "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
                "\"manifests\":[{\"digest\":\"" D1 "\",\"size\":5,"
                "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\"}},"
                "{\"digest\":\"" D2 "\",\"size\":6,"
                "\"platform\":{\"os\":\"windows\",\"architecture\":\"amd64\"}},"
                "{\"digest\":\"" D3 "\",\"size\":7,"
                "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}";
        assert_int_equal(parse(index, NULL, &m), 0);
        assert_true(m.is_index);
        assert_string_equal(m.platform.digest, D3);
        assert_int_equal(m.platform.size, 7);
        oci_manifest_done(&m);

        static const struct {
                const char *doc;
                int r;
        } bad[] = {
                {"", -EBADMSG},
                {"<html>", -EBADMSG},
                {"[]", -EBADMSG},
                {"{\"schemaVersion\":1,\"fsLayers\":[]}", -EOPNOTSUPP},
                {"{\"schemaVersion\":2}", -EBADMSG},
                {"{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1
                 "\",\"size\":1},\"layers\":[]}",
                 -EBADMSG},
                {"{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:12\",\"size\":1},"
                 "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
                 "\"digest\":\"" D2 "\",\"size\":1}]}",
                 -EBADMSG},
                {"{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":-1},"
                 "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
                 "\"digest\":\"" D2 "\",\"size\":1}]}",
                 -EBADMSG},
                {"{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":1},"
                 "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.foreign.diff."
                 "tar.gzip\",\"digest\":\"" D2 "\",\"size\":1}]}",
                 -EOPNOTSUPP},
                {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/x-artifact\","
                 "\"digest\":\"" D1 "\",\"size\":1},"
                 "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
                 "\"digest\":\"" D2 "\",\"size\":1}]}",
                 -EOPNOTSUPP},
                {"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
                 "\"manifests\":[{\"digest\":\"" D1 "\",\"size\":5,"
                 "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\"}}]}",
                 -ENOENT},
                {"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
                 "\"manifests\":{}}",
                 -EBADMSG},
                {"{\"schemaVersion\":2} trailing", -EBADMSG},
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                int r = parse(bad[i].doc, NULL, &m);
                if (r != bad[i].r)
                        fail_msg("case %zu: %d, want %d", i, r, bad[i].r);
        }
}

static void test_config(void **state)
{
        (void) state;
        const char *doc = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{"
                          "\"Env\":[\"PATH=/bin\",\"A=b=c\"],\"WorkingDir\":\"/app\","
                          "\"User\":\"1000:1000\",\"Entrypoint\":[\"/bin/sh\",\"-c\"],"
                          "\"Cmd\":[\"echo hi\"]},"
                          "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1 "\"]}}";
        OciImageConfig c = {0};
        assert_int_equal(oci_config_parse(doc, strlen(doc), &c), 0);
        assert_string_equal(c.os, "linux");
        assert_string_equal(c.architecture, "amd64");
        assert_string_equal(c.env[0], "PATH=/bin");
        assert_string_equal(c.env[1], "A=b=c");
        assert_null(c.env[2]);
        assert_string_equal(c.working_dir, "/app");
        assert_string_equal(c.user, "1000:1000");
        assert_string_equal(c.entrypoint[1], "-c");
        assert_string_equal(c.cmd[0], "echo hi");
        assert_string_equal(c.diff_ids[0], D1);
        oci_config_done(&c);

        const char *minimal = "{\"config\":null}";
        assert_int_equal(oci_config_parse(minimal, strlen(minimal), &c), 0);
        assert_non_null(c.env);
        assert_null(c.env[0]);
        assert_null(c.cmd);
        assert_null(c.working_dir);
        oci_config_done(&c);

        static const char *const bad[] = {
                "nope",
                "{\"config\":{\"Env\":\"PATH=/bin\"}}",
                "{\"config\":{\"Env\":[\"NOEQUALS\"]}}",
                "{\"config\":{\"Env\":[\"=x\"]}}",
                "{\"config\":{\"WorkingDir\":\"relative\"}}",
                "{\"config\":{\"Cmd\":[1]}}",
                "{\"config\":{\"User\":7}}",
                "{\"config\":[]}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                if (oci_config_parse(bad[i], strlen(bad[i]), &c) != -EBADMSG)
                        fail_msg("%s accepted", bad[i]);
}

static void test_challenge(void **state)
{
        (void) state;
        OciChallenge c = {0};
        assert_int_equal(oci_challenge_parse("Bearer realm=\"https://auth.example/token\","
                                             "service=\"registry.example\",scope=\"repository:"
                                             "a/b:pull\"",
                                             &c),
                         0);
        assert_string_equal(c.scheme, "bearer");
        assert_string_equal(c.realm, "https://auth.example/token");
        assert_string_equal(c.service, "registry.example");
        assert_string_equal(c.scope, "repository:a/b:pull");
        oci_challenge_done(&c);

        assert_int_equal(oci_challenge_parse("Basic realm=\"x \\\"q\\\" y\", charset=UTF-8", &c),
                         0);
        assert_string_equal(c.scheme, "basic");
        assert_string_equal(c.realm, "x \"q\" y");
        assert_null(c.service);
        oci_challenge_done(&c);

        assert_int_equal(oci_challenge_parse("BEARER realm=https://a/t", &c), 0);
        assert_string_equal(c.realm, "https://a/t");
        oci_challenge_done(&c);

        static const char *const bad[] = {"", "   ", "Bearer realm=\"unterminated", "Bearer =x",
                                          "Bearer realm"};
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                if (oci_challenge_parse(bad[i], &c) != -EBADMSG)
                        fail_msg("'%s' accepted", bad[i]);
}

static void test_docker_config(void **state)
{
        (void) state;
        /* dXNlcjpwYTpzcw== is "user:pa:ss" */
        const char *doc = "{\"auths\":{\"https://other.io/v1/\":{\"auth\":\"b3RoZXI6eA==\"},"
                          "\"http://reg.io:5000\":{\"auth\":\"dXNlcjpwYTpzcw==\"},"
                          "\"plain.io\":{\"username\":\"u\",\"password\":\"p\"}}}";
        char *u = NULL, *p = NULL;
        assert_int_equal(oci_docker_config_auth(doc, strlen(doc), "reg.io:5000", &u, &p), 0);
        assert_string_equal(u, "user");
        assert_string_equal(p, "pa:ss");
        free(u);
        free(p);
        assert_int_equal(oci_docker_config_auth(doc, strlen(doc), "plain.io", &u, &p), 0);
        assert_string_equal(u, "u");
        assert_string_equal(p, "p");
        free(u);
        free(p);
        assert_int_equal(oci_docker_config_auth(doc, strlen(doc), "reg.io", &u, &p), -ENOENT);
        assert_int_equal(oci_docker_config_auth(doc, strlen(doc), "other.io", &u, &p), 0);
        free(u);
        free(p);
        const char *bad = "{\"auths\":{\"r.io\":{\"auth\":\"bm9jb2xvbg==\"}}}"; /* "nocolon" */
        assert_int_equal(oci_docker_config_auth(bad, strlen(bad), "r.io", &u, &p), -EBADMSG);
        assert_int_equal(oci_docker_config_auth("{", 1, "r.io", &u, &p), -EBADMSG);
        assert_int_equal(oci_docker_config_auth("{}", 2, "r.io", &u, &p), -ENOENT);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ref_parse), cmocka_unit_test(test_digests),
                cmocka_unit_test(test_manifest),  cmocka_unit_test(test_config),
                cmocka_unit_test(test_challenge), cmocka_unit_test(test_docker_config),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
