/* Kubeconfig and in-cluster configuration: the variants kubectl accepts
 * (block YAML and JSON, files relative to the kubeconfig, inline data, token
 * and tokenFile, named contexts, KUBECONFIG), and what must be refused
 * (missing contexts and files, bad base64, insecure-skip-tls-verify, plain
 * http, a certificate without its key, credential plugins). The four
 * kubeconfigs the fixture API server writes are parsed in test_k8s_live. */
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

#include "sandpit/k8s-config.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "sandpit/yaml.h"

static char dir[64];

static void put(const char *name, const char *content)
{
        char path[256];
        (void) snprintf(path, sizeof(path), "%s/%s", dir, name);
        assert_int_equal(write_file_atomic(path, content, strlen(content), 0600), 0);
}

static char *path_of(const char *name)
{
        static char path[256];
        (void) snprintf(path, sizeof(path), "%s/%s", dir, name);
        return path;
}

static int setup(void **state)
{
        (void) state;
        (void) snprintf(dir, sizeof(dir), "/tmp/test-k8s-config-XXXXXX");
        if (!mkdtemp(dir))
                return -1;
        return 0;
}

static int teardown(void **state)
{
        (void) state;
        return rm_rf(dir) < 0 ? -1 : 0;
}

/* "PEM" in base64 is "UEVN"; "CA!" is "Q0Eh". */
static const char block_yaml[] =
        "apiVersion: v1\n"
        "kind: Config\n"
        "current-context: dev\n"
        "clusters:\n"
        "- name: c1\n"
        "  cluster:\n"
        "    server: https://127.0.0.1:6443/\n"
        "    certificate-authority: ca.crt   # relative to the kubeconfig\n"
        "- name: c2\n"
        "  cluster:\n"
        "    server: https://[::1]:8443\n"
        "    certificate-authority-data: Q0Eh\n"
        "users:\n"
        "- name: tok\n"
        "  user:\n"
        "    token: \"s3cret\"\n"
        "- name: cert\n"
        "  user:\n"
        "    client-certificate-data: UEVN\n"
        "    client-key: keys/client.key\n"
        "- name: tf\n"
        "  user:\n"
        "    tokenFile: token\n"
        "contexts:\n"
        "- name: dev\n"
        "  context: {cluster: c1, user: tok, namespace: team-a}\n"
        "- name: prod\n"
        "  context:\n"
        "    cluster: c2\n"
        "    user: cert\n"
        "- name: tf\n"
        "  context: {cluster: c1, user: tf}\n"
        "- name: nouser\n"
        "  context: {cluster: c2}\n";

static void test_current_and_named_context(void **state)
{
        (void) state;
        char err[256];
        K8sConfig *cfg = NULL;
        put("ca.crt", "CA-FILE\n");
        assert_int_equal(mkdir_p(path_of("keys"), 0700), 0);
        put("keys/client.key", "KEY");
        put("token", "  file-token\n");
        put("config", block_yaml);

        assert_int_equal(
                k8s_config_from_kubeconfig(path_of("config"), NULL, &cfg, err, sizeof(err)), 0);
        assert_string_equal(cfg->server, "https://127.0.0.1:6443");
        assert_string_equal(cfg->context, "dev");
        assert_string_equal(cfg->namespace, "team-a");
        assert_string_equal(cfg->token, "s3cret");
        assert_int_equal(cfg->ca_len, 8);
        assert_memory_equal(cfg->ca, "CA-FILE\n", 8);
        assert_null(cfg->cert);
        k8s_config_free(cfg);

        assert_int_equal(
                k8s_config_from_kubeconfig(path_of("config"), "prod", &cfg, err, sizeof(err)), 0);
        assert_string_equal(cfg->server, "https://[::1]:8443");
        assert_string_equal(cfg->namespace, "default");
        assert_memory_equal(cfg->ca, "CA!", 3);
        assert_memory_equal(cfg->cert, "PEM", 3);
        assert_memory_equal(cfg->key, "KEY", 3);
        assert_null(cfg->token);
        k8s_config_free(cfg);

        assert_int_equal(
                k8s_config_from_kubeconfig(path_of("config"), "tf", &cfg, err, sizeof(err)), 0);
        assert_null(cfg->token);
        assert_string_equal(cfg->token_file, path_of("token"));
        k8s_config_free(cfg);

        /* a context without a user: no credentials, still valid */
        assert_int_equal(
                k8s_config_from_kubeconfig(path_of("config"), "nouser", &cfg, err, sizeof(err)), 0);
        assert_null(cfg->token);
        assert_null(cfg->cert);
        k8s_config_free(cfg);
}

static void test_kubeconfig_env_first_file(void **state)
{
        (void) state;
        char err[256], env[300];
        K8sConfig *cfg = NULL;
        put("ca.crt", "CA-FILE\n");
        put("token", "t\n");
        put("keys-missing-is-fine-here", "");
        put("config", block_yaml);
        assert_int_equal(mkdir_p(path_of("keys"), 0700), 0);
        put("keys/client.key", "KEY");
        (void) snprintf(env, sizeof(env), "%s:/nonexistent/other", path_of("config"));
        assert_int_equal(setenv("KUBECONFIG", env, 1), 0);
        assert_int_equal(k8s_config_from_kubeconfig(NULL, NULL, &cfg, err, sizeof(err)), 0);
        assert_string_equal(cfg->context, "dev");
        k8s_config_free(cfg);

        /* only the first file counts: a context from the second is not found */
        (void) snprintf(env, sizeof(env), "/nonexistent/first:%s", path_of("config"));
        assert_int_equal(setenv("KUBECONFIG", env, 1), 0);
        assert_int_equal(k8s_config_from_kubeconfig(NULL, NULL, &cfg, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "/nonexistent/first"));
        assert_int_equal(unsetenv("KUBECONFIG"), 0);
}

/* A minimal kubeconfig around one cluster and one user body. */
static int load_with(const char *cluster, const char *user, const char *context, char *err,
                     size_t errlen, K8sConfig **ret)
{
        char buf[2048];
        (void) snprintf(buf, sizeof(buf),
                        "{\"current-context\":\"x\",\"clusters\":[{\"name\":\"c\",\"cluster\":%s}],"
                        "\"users\":[{\"name\":\"u\",\"user\":%s}],"
                        "\"contexts\":[{\"name\":\"x\",\"context\":{\"cluster\":\"c\",\"user\":"
                        "\"u\"}}]}",
                        cluster, user);
        put("k.json", buf);
        return k8s_config_from_kubeconfig(path_of("k.json"), context, ret, err, errlen);
}

static void test_refused(void **state)
{
        (void) state;
        static const struct {
                const char *cluster, *user, *context;
                int r;
                const char *msg;
        } cases[] = {
                {"{\"server\":\"https://h\"}", "{}", "nope", -ENOENT, "context \"nope\""},
                {"{\"server\":\"https://h\",\"insecure-skip-tls-verify\":true}", "{}", NULL, -EPERM,
                 "insecure-skip-tls-verify"},
                {"{\"server\":\"http://h:8080\"}", "{}", NULL, -EINVAL, "https"},
                {"{}", "{}", NULL, -EINVAL, "no server"},
                {"{\"server\":\"https://h\",\"certificate-authority-data\":\"!!not base64\"}", "{}",
                 NULL, -EINVAL, "certificate-authority-data is not valid base64"},
                {"{\"server\":\"https://h\"}", "{\"client-key-data\":\"UEVN=x\"}", NULL, -EINVAL,
                 "base64"},
                {"{\"server\":\"https://h\",\"certificate-authority\":\"missing.crt\"}", "{}", NULL,
                 -ENOENT, "missing.crt"},
                {"{\"server\":\"https://h\"}",
                 "{\"client-certificate\":\"/nonexistent/c.crt\","
                 "\"client-key-data\":\"UEVN\"}",
                 NULL, -ENOENT, "/nonexistent/c.crt"},
                {"{\"server\":\"https://h\"}", "{\"client-certificate-data\":\"UEVN\"}", NULL,
                 -EINVAL, "needs its key"},
                {"{\"server\":\"https://h\"}", "{\"tokenFile\":\"no-such-token\"}", NULL, -ENOENT,
                 "no-such-token"},
                {"{\"server\":\"https://h\"}", "{\"exec\":{\"command\":\"aws\"}}", NULL,
                 -EOPNOTSUPP, "exec"},
                {"{\"server\":\"https://h\"}", "{\"username\":\"a\",\"password\":\"b\"}", NULL,
                 -EOPNOTSUPP, "not supported"},
                {"{\"server\":\"https://h\"}", "{\"token\":\"a\\nb\"}", NULL, -EINVAL,
                 "line break"},
                {"{\"server\":7}", "{}", NULL, -EINVAL, "no server"},
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                char err[256] = "";
                K8sConfig *cfg = NULL;
                int r = load_with(cases[i].cluster, cases[i].user, cases[i].context, err,
                                  sizeof(err), &cfg);
                if (r != cases[i].r || !strstr(err, cases[i].msg))
                        fail_msg("case %zu: %d \"%s\", expected %d \"%s\"", i, r, err, cases[i].r,
                                 cases[i].msg);
                assert_null(cfg);
        }
}

static void test_refused_files(void **state)
{
        (void) state;
        char err[256];
        K8sConfig *cfg = NULL;
        assert_int_equal(k8s_config_from_kubeconfig(path_of("none"), NULL, &cfg, err, sizeof(err)),
                         -ENOENT);
        put("bad.yaml", "clusters: [unclosed\n");
        assert_int_equal(
                k8s_config_from_kubeconfig(path_of("bad.yaml"), NULL, &cfg, err, sizeof(err)),
                -EINVAL);
        put("list.yaml", "- a\n- b\n");
        assert_int_equal(
                k8s_config_from_kubeconfig(path_of("list.yaml"), NULL, &cfg, err, sizeof(err)),
                -EINVAL);
        put("nocur.yaml", "clusters: []\n");
        assert_int_equal(
                k8s_config_from_kubeconfig(path_of("nocur.yaml"), NULL, &cfg, err, sizeof(err)),
                -ENOENT);
        assert_non_null(strstr(err, "no current-context"));
        put("empty-token", "\n \n");
        put("k2.yaml", "current-context: x\n"
                       "clusters: [{name: c, cluster: {server: 'https://h'}}]\n"
                       "users: [{name: u, user: {tokenFile: empty-token}}]\n"
                       "contexts: [{name: x, context: {cluster: c, user: u}}]\n");
        assert_int_equal(
                k8s_config_from_kubeconfig(path_of("k2.yaml"), NULL, &cfg, err, sizeof(err)),
                -EINVAL);
        /* an alias bomb is refused, not expanded */
        put("bomb.yaml", "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                         "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                         "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                         "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                         "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                         "current-context: x\n");
        assert_int_equal(
                k8s_config_from_kubeconfig(path_of("bomb.yaml"), NULL, &cfg, err, sizeof(err)),
                -EINVAL);
        assert_null(cfg);
}

static void test_yaml_scalars(void **state)
{
        (void) state;
        json_object *o = NULL;
        const char *y = "a: 1\nb: -2.5\nc: true\nd: ~\ne: '1'\nf: v1alpha1\ng: [x, {h: null}]\n"
                        "i: \"true\"\nj: 1.2.3\n";
        assert_int_equal(yaml_to_json(y, strlen(y), &o), 0);
        assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                            "{\"a\":1,\"b\":-2.5,\"c\":true,\"d\":null,\"e\":\"1\",\"f\":"
                            "\"v1alpha1\",\"g\":[\"x\",{\"h\":null}],\"i\":\"true\",\"j\":"
                            "\"1.2.3\"}");
        json_object_put(o);
        assert_int_equal(yaml_to_json("", 0, &o), -ENODATA);
        assert_int_equal(yaml_to_json("[a, b]: c\n", 10, &o), -EINVAL);
}

static void test_in_cluster(void **state)
{
        (void) state;
        char err[256];
        K8sConfig *cfg = NULL;
        char sa[128];
        (void) snprintf(sa, sizeof(sa), "%s/sa", dir);
        assert_int_equal(mkdir_p(sa, 0700), 0);

        assert_int_equal(unsetenv("KUBERNETES_SERVICE_HOST"), 0);
        assert_int_equal(k8s_config_in_cluster(sa, &cfg, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "KUBERNETES_SERVICE_HOST"));

        assert_int_equal(setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1), 0);
        assert_int_equal(setenv("KUBERNETES_SERVICE_PORT", "443", 1), 0);
        assert_int_equal(k8s_config_in_cluster(sa, &cfg, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "sa/token"));

        put("sa/token", "eyJhbGciOi\n");
        assert_int_equal(k8s_config_in_cluster(sa, &cfg, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "ca.crt"));

        put("sa/ca.crt", "CA");
        assert_int_equal(k8s_config_in_cluster(sa, &cfg, err, sizeof(err)), 0);
        assert_string_equal(cfg->server, "https://10.96.0.1:443");
        assert_string_equal(cfg->namespace, "default");
        assert_null(cfg->token);
        assert_non_null(strstr(cfg->token_file, "sa/token"));
        assert_memory_equal(cfg->ca, "CA", 2);
        k8s_config_free(cfg);

        put("sa/namespace", "sandpit-system\n");
        assert_int_equal(setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1), 0);
        assert_int_equal(k8s_config_in_cluster(sa, &cfg, err, sizeof(err)), 0);
        assert_string_equal(cfg->server, "https://[fd00::1]:443");
        assert_string_equal(cfg->namespace, "sandpit-system");
        k8s_config_free(cfg);
        assert_int_equal(unsetenv("KUBERNETES_SERVICE_HOST"), 0);
        assert_int_equal(unsetenv("KUBERNETES_SERVICE_PORT"), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_current_and_named_context, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kubeconfig_env_first_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refused_files, setup, teardown),
                cmocka_unit_test(test_yaml_scalars),
                cmocka_unit_test_setup_teardown(test_in_cluster, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
