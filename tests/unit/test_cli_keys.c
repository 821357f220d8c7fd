/* `sandpit keys create` on the cluster's Secret (cli/src/keys.c) racing
 * another writer, made deterministic: k8s_get, k8s_update and k8s_create are
 * wrapped (test_cli_keys.ldflags) and play a script in which someone else
 * writes the Secret between the CLI's read and its write. The write must be
 * conditional (the resourceVersion read), lost writes read again, and a name
 * taken meanwhile refused rather than stored twice. */
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
#include <json-c/json.h>

#include "../../cli/src/keys.h"
#include "sandpit/apikey.h"
#include "sandpit/json.h"
#include "sandpit/k8s-client.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

int __wrap_k8s_get(K8sClient *c, const K8sResource *res, const char *ns, const char *name,
                   json_object **ret, K8sError *err);
int __wrap_k8s_update(K8sClient *c, const K8sResource *res, json_object *obj, json_object **ret,
                      K8sError *err);
int __wrap_k8s_create(K8sClient *c, const K8sResource *res, const char *ns, json_object *obj,
                      json_object **ret, K8sError *err);

/* The Secret as the "server" holds it (NULL: none), and what happens to the
 * CLI's next writes. */
static struct {
        json_object *secret;
        int rv;
        int gets, updates, creates;
        /* Before the CLI's write number n (1-based), another writer adds a
         * key of this name (NULL: nobody). */
        const char *sneak[4];
} srv;

static char kubeconfig[64];

static json_object *record(const char *name, char id[APIKEY_ID_LEN + 1])
{
        char key[APIKEY_LEN + 1];
        ApiKey k;
        assert_int_equal(apikey_generate("team-a", name, key, &k), 0);
        json_object *o = NULL;
        assert_int_equal(apikey_record_to_json(&k, &o), 0);
        char *b64 = NULL;
        const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        assert_int_equal(base64_encode(text, strlen(text), &b64), 0);
        json_object *s = json_object_new_string(b64);
        free(b64);
        json_object_put(o);
        memcpy(id, k.id, sizeof(k.id));
        return s;
}

static void bump(void)
{
        char rv[16];
        snprintf(rv, sizeof(rv), "%d", ++srv.rv);
        json_object *md = json_obj(srv.secret, "metadata");
        json_object_object_add(md, "resourceVersion", json_object_new_string(rv));
}

/* Another writer adds a key named name. */
static void other_writer(const char *name)
{
        if (!srv.secret) {
                srv.secret = json_tokener_parse("{\"metadata\":{\"name\":\"sandpit-api-keys\","
                                                "\"namespace\":\"sandpit-system\"},\"data\":{}}");
                assert_non_null(srv.secret);
        }
        char id[APIKEY_ID_LEN + 1];
        json_object *rec = record(name, id);
        json_object_object_add(json_obj(srv.secret, "data"), id, rec);
        bump();
}

static const char *sneak_before_write(void)
{
        int n = srv.updates + srv.creates; /* this write's number, 1-based */
        return n >= 1 && n <= 4 ? srv.sneak[n - 1] : NULL;
}

int __wrap_k8s_get(K8sClient *c, const K8sResource *res, const char *ns, const char *name,
                   json_object **ret, K8sError *err)
{
        (void) c;
        (void) err;
        assert_string_equal(res->resource, "secrets");
        assert_string_equal(ns, "sandpit-system");
        assert_string_equal(name, "sandpit-api-keys");
        srv.gets++;
        if (!srv.secret)
                return -ENOENT;
        *ret = json_tokener_parse(json_object_to_json_string(srv.secret));
        return 0;
}

int __wrap_k8s_update(K8sClient *c, const K8sResource *res, json_object *obj, json_object **ret,
                      K8sError *err)
{
        (void) c;
        (void) res;
        (void) ret;
        srv.updates++;
        const char *sneak = sneak_before_write();
        if (sneak)
                other_writer(sneak);
        /* Conditional on the resourceVersion it was read at. */
        const char *rv = json_str(json_obj(obj, "metadata"), "resourceVersion");
        assert_non_null(rv);
        if (atoi(rv) != srv.rv) {
                err->status = 409;
                snprintf(err->reason, sizeof(err->reason), "Conflict");
                return -EBUSY;
        }
        json_object_put(srv.secret);
        srv.secret = json_tokener_parse(json_object_to_json_string(obj));
        bump();
        return 0;
}

int __wrap_k8s_create(K8sClient *c, const K8sResource *res, const char *ns, json_object *obj,
                      json_object **ret, K8sError *err)
{
        (void) c;
        (void) res;
        (void) ns;
        (void) ret;
        srv.creates++;
        const char *sneak = sneak_before_write();
        if (sneak)
                other_writer(sneak);
        if (srv.secret) {
                err->status = 409;
                snprintf(err->reason, sizeof(err->reason), "AlreadyExists");
                return -EEXIST;
        }
        srv.secret = json_tokener_parse(json_object_to_json_string(obj));
        bump();
        return 0;
}

/* The names of the keys the Secret holds, sorted, comma-separated. */
static void names(char *buf, size_t len)
{
        ApiKeySet s = {0};
        assert_int_equal(apikey_set_from_secret(srv.secret, &s, NULL), 0);
        buf[0] = 0;
        const char *sorted[8];
        size_t n = s.n < 8 ? s.n : 8;
        for (size_t i = 0; i < n; i++)
                sorted[i] = s.keys[i].name;
        for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && strcmp(sorted[j - 1], sorted[j]) > 0; j--) {
                        const char *t = sorted[j];
                        sorted[j] = sorted[j - 1];
                        sorted[j - 1] = t;
                }
        for (size_t i = 0; i < n; i++)
                snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i ? "," : "", sorted[i]);
        apikey_set_done(&s);
}

static int create(const char *name)
{
        char *argv[] = {"keys",   "--kubeconfig", kubeconfig,    "create", "--namespace",
                        "team-a", "--name",       (char *) name, NULL};
        /* The key goes to stdout: not into the test's output. */
        fflush(stdout);
        int saved = dup(STDOUT_FILENO);
        FILE *null = freopen("/dev/null", "w", stdout);
        assert_non_null(null);
        int r = cli_keys_main(8, argv);
        fflush(stdout);
        dup2(saved, STDOUT_FILENO);
        close(saved);
        optind = 0;
        return r;
}

static int setup(void **state)
{
        (void) state;
        memset(&srv, 0, sizeof(srv));
        return 0;
}

static int teardown(void **state)
{
        (void) state;
        json_object_put(srv.secret);
        srv.secret = NULL;
        return 0;
}

/* Someone adds the same name between the read and the write: the CLI's
 * write is refused (409), it reads again and says the name is taken. */
static void test_same_name_written_meanwhile(void **state)
{
        (void) state;
        other_writer("old");
        srv.sneak[0] = "ci";
        assert_int_not_equal(create("ci"), 0);
        assert_int_equal(srv.updates, 1);
        assert_int_equal(srv.gets, 2);
        char buf[128];
        names(buf, sizeof(buf));
        assert_string_equal(buf, "ci,old"); /* one ci: the other writer's */
}

/* Another key written meanwhile: the CLI's write is refused, it reads again
 * and adds its key beside the other's (nothing lost). */
static void test_other_name_written_meanwhile(void **state)
{
        (void) state;
        other_writer("old");
        srv.sneak[0] = "other";
        srv.sneak[1] = "third";
        assert_int_equal(create("ci"), 0);
        assert_int_equal(srv.updates, 3);
        char buf[128];
        names(buf, sizeof(buf));
        assert_string_equal(buf, "ci,old,other,third");
}

/* No Secret yet, and another makes it first with the same name: the
 * CLI's create is AlreadyExists, it reads again and refuses the name. */
static void test_secret_made_meanwhile(void **state)
{
        (void) state;
        srv.sneak[0] = "ci";
        assert_int_not_equal(create("ci"), 0);
        assert_int_equal(srv.creates, 1);
        assert_int_equal(srv.updates, 0);
        char buf[128];
        names(buf, sizeof(buf));
        assert_string_equal(buf, "ci");
        /* With another name it adds to the Secret made meanwhile. */
        memset(srv.sneak, 0, sizeof(srv.sneak));
        json_object_put(srv.secret);
        srv.secret = NULL;
        srv.creates = srv.updates = 0;
        srv.sneak[0] = "other";
        assert_int_equal(create("ci"), 0);
        assert_int_equal(srv.creates, 1);
        assert_int_equal(srv.updates, 1);
        names(buf, sizeof(buf));
        assert_string_equal(buf, "ci,other");
}

int main(void)
{
        snprintf(kubeconfig, sizeof(kubeconfig), "/tmp/test-cli-keys-XXXXXX");
        int fd = mkstemp(kubeconfig);
        if (fd < 0)
                return 1;
        static const char doc[] =
                "{\"current-context\":\"x\",\"clusters\":[{\"name\":\"c\",\"cluster\":"
                "{\"server\":\"https://198.18.0.1:6443\",\"certificate-authority\":"
                "\"/etc/ssl/certs/ca-certificates.crt\"}}],"
                "\"users\":[{\"name\":\"u\",\"user\":{\"token\":\"t\"}}],"
                "\"contexts\":[{\"name\":\"x\",\"context\":{\"cluster\":\"c\",\"user\":\"u\"}}]}";
        if (write(fd, doc, sizeof(doc) - 1) != (ssize_t) sizeof(doc) - 1)
                return 1;
        close(fd);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_same_name_written_meanwhile, setup, teardown),
                cmocka_unit_test_setup_teardown(test_other_name_written_meanwhile, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_made_meanwhile, setup, teardown),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        unlink(kubeconfig);
        return r;
}
