/* The client's pure parts: which errnos are retried, URL building (core and group
 * resources, namespaced and cluster-scoped, names that would escape their
 * path segment), query encoding, back-off bounds, object keys, Event shape. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sandpit/k8s-client.h"
#include "sandpit/k8s-event.h"
#include "sandpit/k8s-watch.h"
#include "sandpit/macro.h"

/* The status table itself is tested in test_http_status.c; what the client
 * retries: every status-derived errno that means "later" (429 -EAGAIN, 5xx -EIO),
 * and the transport failures. */
static void test_errno_mapping(void **state)
{
        (void) state;
        assert_true(k8s_errno_is_transient(http_status_to_errno(429, "TooManyRequests")));
        assert_true(k8s_errno_is_transient(http_status_to_errno(503, "ServiceUnavailable")));
        assert_false(k8s_errno_is_transient(http_status_to_errno(403, "Forbidden")));
        assert_false(k8s_errno_is_transient(http_status_to_errno(409, "Conflict")));
        assert_false(k8s_errno_is_transient(http_status_to_errno(410, "Expired")));
        assert_true(k8s_errno_is_transient(-EAGAIN));
        assert_true(k8s_errno_is_transient(-EIO)); /* 5xx */
        assert_true(k8s_errno_is_transient(-ECONNREFUSED));
        assert_true(k8s_errno_is_transient(-ECONNRESET));
        assert_false(k8s_errno_is_transient(-EBUSY));
        assert_false(k8s_errno_is_transient(-ENOENT));
        assert_false(k8s_errno_is_transient(-EKEYREJECTED));
}

static void check_path(const K8sResource *res, const char *ns, const char *name, const char *sub,
                       const char *want)
{
        char *p = NULL;
        assert_int_equal(k8s_path(res, ns, name, sub, &p), 0);
        assert_string_equal(p, want);
        free(p);
}

static void test_paths(void **state)
{
        (void) state;
        const K8sResource secrets = {"", "v1", "secrets", true};
        const K8sResource ns = {NULL, "v1", "namespaces", false};
        const K8sResource sbx = {"sandpit.dev", "v1alpha1", "sandboxes", true};
        const K8sResource crd = {"apiextensions.k8s.io", "v1", "customresourcedefinitions", false};

        check_path(&secrets, "default", "s1", NULL, "/api/v1/namespaces/default/secrets/s1");
        check_path(&secrets, NULL, NULL, NULL, "/api/v1/secrets");
        check_path(&ns, "ignored", "kube-system", "status",
                   "/api/v1/namespaces/kube-system/status");
        check_path(&sbx, "team-a", "box", "status",
                   "/apis/sandpit.dev/v1alpha1/namespaces/team-a/sandboxes/box/status");
        check_path(&sbx, "team-a", NULL, NULL,
                   "/apis/sandpit.dev/v1alpha1/namespaces/team-a/sandboxes");
        check_path(&crd, NULL, "sandboxes.sandpit.dev", NULL,
                   "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/sandboxes.sandpit.dev");

        /* a name must not leave its path segment or smuggle a query */
        static const char *const bad[] = {"a/b",  "..",  ".",    "a?watch=1", "a#b",
                                          "a%2f", "a b", "a\nb", "",          "a\\b"};
        char *p = NULL;
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                assert_int_equal(k8s_path(&secrets, "default", bad[i], NULL, &p), -EINVAL);
                assert_int_equal(k8s_path(&secrets, bad[i], "x", NULL, &p), -EINVAL);
        }
        assert_int_equal(k8s_path(&secrets, "default", NULL, "status", &p), -EINVAL);
        assert_int_equal(k8s_path(&secrets, "default", "x", "../y", &p), -EINVAL);
}

static void test_query(void **state)
{
        (void) state;
        char *u = strdup("/api/v1/secrets");
        assert_non_null(u);
        assert_int_equal(k8s_url_add_query(&u, "labelSelector", "app in (a,b),!x"), 0);
        assert_int_equal(k8s_url_add_query(&u, "skip", NULL), 0);
        assert_int_equal(k8s_url_add_query(&u, "continue", "eyJ2Ijo=&x=1"), 0);
        assert_string_equal(u, "/api/v1/secrets?labelSelector=app%20in%20%28a%2Cb%29%2C%21x"
                               "&continue=eyJ2Ijo%3D%26x%3D1");
        free(u);
}

static void test_backoff_bounds(void **state)
{
        (void) state;
        unsigned long seed = 42;
        for (unsigned attempt = 0; attempt < 40; attempt++) {
                long full = 100;
                for (unsigned i = 0; i < attempt && full < 5000; i++)
                        full *= 2;
                if (full > 5000)
                        full = 5000;
                for (int n = 0; n < 50; n++) {
                        long d = k8s_backoff_ms(100, 5000, attempt, 0, &seed);
                        assert_true(d >= full / 2);
                        assert_true(d < full || (full == 1 && d == 1));
                }
        }
        /* jitter: not every delay the same */
        long a = k8s_backoff_ms(1000, 1000, 0, 0, &seed);
        int differ = 0;
        for (int n = 0; n < 20; n++)
                differ |= k8s_backoff_ms(1000, 1000, 0, 0, &seed) != a;
        assert_true(differ);
        /* Retry-After is a floor */
        assert_true(k8s_backoff_ms(100, 5000, 0, 3, &seed) >= 3000);
}

static void test_strip_managed_fields(void **state)
{
        (void) state;
        json_object *o = json_tokener_parse(
                "{\"metadata\":{\"name\":\"n\",\"managedFields\":[{\"manager\":\"kubectl\","
                "\"fieldsV1\":{\"f:spec\":{}}}]},\"spec\":{\"managedFields\":1}}");
        k8s_obj_strip_managed_fields(o);
        assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                            "{\"metadata\":{\"name\":\"n\"},\"spec\":{\"managedFields\":1}}");
        k8s_obj_strip_managed_fields(o); /* none left: nothing changes */
        json_object_put(o);
        o = json_tokener_parse("{\"metadata\":7}");
        k8s_obj_strip_managed_fields(o);
        k8s_obj_strip_managed_fields(NULL);
        json_object_put(o);
}

static void test_obj_key(void **state)
{
        (void) state;
        json_object *o = json_tokener_parse(
                "{\"metadata\":{\"name\":\"n\",\"namespace\":\"ns\",\"resourceVersion\":\"7\","
                "\"uid\":\"u-1\"}}");
        char *k = NULL;
        assert_int_equal(k8s_obj_key(o, &k), 0);
        assert_string_equal(k, "ns/n");
        free(k);
        assert_string_equal(k8s_obj_resource_version(o), "7");
        assert_string_equal(k8s_obj_uid(o), "u-1");
        json_object_put(o);
        o = json_tokener_parse("{\"metadata\":{\"name\":\"cluster-wide\"}}");
        assert_int_equal(k8s_obj_key(o, &k), 0);
        assert_string_equal(k, "cluster-wide");
        free(k);
        json_object_put(o);
        o = json_tokener_parse("{\"metadata\":{}}");
        assert_int_equal(k8s_obj_key(o, &k), -EINVAL);
        json_object_put(o);
}

static void test_event_build(void **state)
{
        (void) state;
        json_object *sbx = json_tokener_parse(
                "{\"apiVersion\":\"sandpit.dev/v1alpha1\",\"kind\":\"Sandbox\",\"metadata\":{"
                "\"name\":\"box\",\"namespace\":\"team-a\",\"uid\":\"u-9\","
                "\"resourceVersion\":\"12\"}}");
        char note[1500];
        /* 1023 ASCII bytes then a 2-byte character: the cut may not split it */
        memset(note, 'x', 1023);
        memcpy(note + 1023, "\xc3\xa9yyyy", 7);
        note[1030] = '\0';
        K8sEventInfo info = {
                .type = "Warning",
                .reason = "NoAgentWithRoom",
                .note = note,
                .reporting_controller = "sandpit.dev/operator",
                .reporting_instance = "op-0",
        };
        json_object *ev = NULL, *v = NULL, *ref = NULL;
        assert_int_equal(k8s_event_build(sbx, &info, &ev), 0);
        assert_true(json_object_object_get_ex(ev, "note", &v));
        assert_int_equal(json_object_get_string_len(v), 1023);
        assert_true(json_object_object_get_ex(ev, "action", &v));
        assert_string_equal(json_object_get_string(v), "NoAgentWithRoom");
        assert_true(json_object_object_get_ex(ev, "regarding", &ref));
        assert_true(json_object_object_get_ex(ref, "uid", &v));
        assert_string_equal(json_object_get_string(v), "u-9");
        assert_true(json_object_object_get_ex(ref, "kind", &v));
        assert_string_equal(json_object_get_string(v), "Sandbox");
        assert_string_equal(k8s_obj_namespace(ev), "team-a");
        /* a name as client-go makes it, "<object>.<hex time>": a generateName
         * ending in '.' is refused by the API server */
        json_object *meta = NULL;
        assert_true(json_object_object_get_ex(ev, "metadata", &meta));
        assert_false(json_object_object_get_ex(meta, "generateName", &v));
        const char *ev_name = k8s_obj_name(ev);
        assert_non_null(ev_name);
        assert_int_equal(strncmp(ev_name, "box.", 4), 0);
        assert_true(strlen(ev_name) > 4 &&
                    strspn(ev_name + 4, "0123456789abcdef") == strlen(ev_name + 4));
        json_object *ev2 = NULL;
        assert_int_equal(k8s_event_build(sbx, &info, &ev2), 0);
        assert_string_not_equal(k8s_obj_name(ev2), ev_name);
        json_object_put(ev2);
        assert_true(json_object_object_get_ex(ev, "eventTime", &v));
        /* MicroTime: 2026-11-22T10:00:00.123456Z */
        assert_int_equal(json_object_get_string_len(v), 27);
        json_object_put(ev);

        info.type = "Error";
        assert_int_equal(k8s_event_build(sbx, &info, &ev), -EINVAL);
        info.type = "Normal";
        info.reporting_instance = NULL;
        assert_int_equal(k8s_event_build(sbx, &info, &ev), -EINVAL);
        json_object_put(sbx);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_errno_mapping),
                cmocka_unit_test(test_paths),
                cmocka_unit_test(test_query),
                cmocka_unit_test(test_backoff_bounds),
                cmocka_unit_test(test_obj_key),
                cmocka_unit_test(test_event_build),
                cmocka_unit_test(test_strip_managed_fields),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
