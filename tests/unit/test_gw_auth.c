/* Unit tests of API keys (lib/src/apikey.c) and the gateway's authorisation
 * (gateway/src/auth.c, scope.c), under ASan: the key file's format, hashing
 * and lookup, revocation by rewriting the file, namespace scoping of the
 * control plane (a fake backend behind the real server, driven with libcurl),
 * and Kubernetes tokens with TokenReview and SubjectAccessReview answered by
 * a wrapped k8s_request() (counted, to see the cache). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "../../gateway/src/auth.h"
#include "../../gateway/src/gateway.h"
#include "../../gateway/src/gw-internal.h"
#include "sandpit/apikey.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

/* ---- apikey.c */

static void test_generate_and_lookup(void **state)
{
        (void) state;
        char key[APIKEY_LEN + 1], key2[APIKEY_LEN + 1];
        ApiKey k, k2;
        assert_int_equal(apikey_generate("team-a", "ci", key, &k), 0);
        assert_int_equal(apikey_generate("team-b", NULL, key2, &k2), 0);
        assert_int_equal(strlen(key), 44);
        assert_memory_equal(key, "e2b_", 4);
        assert_string_not_equal(key, key2);
        assert_string_equal(k.name, "ci");
        assert_string_equal(k2.name, k2.id); /* the name defaults to the id */
        assert_string_equal(k.ns, "team-a");
        char h[APIKEY_HASH_HEX + 1];
        assert_int_equal(apikey_hash(key, h), 0);
        assert_string_equal(h, k.sha256);
        /* SHA-256 of "abc", the FIPS 180-2 example. */
        assert_int_equal(apikey_hash("abc", h), 0);
        assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        /* The key itself is stored nowhere in the record. */
        assert_null(strstr(k.sha256, key + 4));

        ApiKeySet s = {0};
        assert_int_equal(apikey_set_add(&s, &k), 0);
        assert_int_equal(apikey_set_add(&s, &k2), 0);
        assert_int_equal(apikey_set_add(&s, &k), -EEXIST);
        assert_ptr_equal(apikey_set_lookup(&s, key), &s.keys[0]);
        assert_string_equal(apikey_set_lookup(&s, key2)->ns, "team-b");
        key[10] ^= 1;
        assert_null(apikey_set_lookup(&s, key));
        assert_null(apikey_set_lookup(&s, ""));
        assert_null(apikey_set_lookup(&s, NULL));
        /* Revoked: by name, then gone. */
        ApiKey gone;
        assert_int_equal(apikey_set_remove(&s, "ci", &gone), 0);
        assert_string_equal(gone.id, k.id);
        assert_int_equal(apikey_set_remove(&s, "ci", NULL), -ENOENT);
        assert_int_equal(s.n, 1);
        assert_int_equal(apikey_set_remove(&s, k2.id, NULL), 0);
        assert_null(apikey_set_lookup(&s, key2));
        apikey_set_done(&s);

        assert_int_equal(apikey_generate("Team", NULL, key, &k), -EINVAL);
        assert_int_equal(apikey_generate("-a", NULL, key, &k), -EINVAL);
        assert_int_equal(apikey_generate("a", "no space", key, &k), -EINVAL);
}

static void test_names(void **state)
{
        (void) state;
        assert_true(apikey_namespace_valid("a"));
        assert_true(apikey_namespace_valid("team-a1"));
        assert_false(apikey_namespace_valid(""));
        assert_false(apikey_namespace_valid("a-"));
        assert_false(apikey_namespace_valid("A"));
        assert_false(apikey_namespace_valid("a.b"));
        char long_ns[70];
        memset(long_ns, 'a', 64);
        long_ns[64] = 0;
        assert_false(apikey_namespace_valid(long_ns));
        long_ns[63] = 0;
        assert_true(apikey_namespace_valid(long_ns));
        assert_true(apikey_name_valid("CI.bot_1-x"));
        assert_false(apikey_name_valid("a/b"));
        assert_false(apikey_name_valid(""));
}

static void test_file_format(void **state)
{
        (void) state;
        char key[APIKEY_LEN + 1];
        ApiKey k;
        ApiKeySet s = {0};
        assert_int_equal(apikey_generate("ns1", "one", key, &k), 0);
        assert_int_equal(apikey_set_add(&s, &k), 0);
        cleanup_free char *text = NULL;
        assert_int_equal(apikey_set_format(&s, &text), 0);
        assert_null(strstr(text, key));
        ApiKeySet back = {0};
        assert_int_equal(apikey_set_parse(text, strlen(text), &back), 0);
        assert_int_equal(back.n, 1);
        assert_string_equal(back.keys[0].sha256, k.sha256);
        assert_string_equal(back.keys[0].created, k.created);
        assert_non_null(apikey_set_lookup(&back, key));
        apikey_set_done(&back);
        apikey_set_done(&s);

        static const char *const bad[] = {
                "",
                "[]",
                "{\"keys\":{}}",
                "{\"keys\":[1]}",
                "{\"keys\":[{\"id\":\"abcdefghijkl\",\"name\":\"n\",\"namespace\":\"ns\"}]}",
                "{\"keys\":[{\"id\":\"short\",\"name\":\"n\",\"namespace\":\"ns\",\"sha256\":"
                "\""
                "0000000000000000000000000000000000000000000000000000000000000000"
                "\"}]}",
                "{\"keys\":[{\"id\":\"abcdefghijkl\",\"name\":\"n\",\"namespace\":\"NS\","
                "\"sha256\":"
                "\""
                "0000000000000000000000000000000000000000000000000000000000000000"
                "\"}]}",
                "{\"keys\":[{\"id\":\"abcdefghijkl\",\"name\":\"n\",\"namespace\":\"ns\","
                "\"sha256\":"
                "\""
                "000000000000000000000000000000000000000000000000000000000000000G"
                "\"}]}",
                "{\"keys\":[]} trailing",
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                ApiKeySet x = {0};
                assert_int_equal(apikey_set_parse(bad[i], strlen(bad[i]), &x), -EBADMSG);
        }
        const char ok[] = "{\"keys\":[]}";
        assert_int_equal(apikey_set_parse(ok, sizeof(ok) - 1, &s), 0);
        assert_int_equal(s.n, 0);
}

static void test_secret_format(void **state)
{
        (void) state;
        char key[APIKEY_LEN + 1];
        ApiKey k;
        assert_int_equal(apikey_generate("ns1", NULL, key, &k), 0);
        cleanup_json json_object *rec = NULL;
        assert_int_equal(apikey_record_to_json(&k, &rec), 0);
        const char *txt = json_object_to_json_string(rec);
        cleanup_free char *b64 = NULL;
        assert_int_equal(base64_encode(txt, strlen(txt), &b64), 0);
        char doc[2048];
        snprintf(doc, sizeof(doc),
                 "{\"data\":{\"%s\":\"%s\",\"other\":\"bm90IGpzb24=\",\"wrongid\":\"%s\"}}", k.id,
                 b64, b64);
        cleanup_json json_object *secret = json_tokener_parse(doc);
        assert_non_null(secret);
        ApiKeySet s = {0};
        size_t bad = 0;
        assert_int_equal(apikey_set_from_secret(secret, &s, &bad), 0);
        assert_int_equal(s.n, 1);
        assert_int_equal(bad, 2);
        assert_non_null(apikey_set_lookup(&s, key));
        apikey_set_done(&s);
        cleanup_json json_object *empty = json_tokener_parse("{\"metadata\":{}}");
        assert_int_equal(apikey_set_from_secret(empty, &s, NULL), 0);
        assert_int_equal(s.n, 0);
}

static int add_one(ApiKeySet *s, void *userdata)
{
        return apikey_set_add(s, userdata);
}

/* ---- the server with a fake backend */

static struct {
        pthread_mutex_t lock;
        json_object *sandboxes; /* the agent's native objects */
        unsigned next;
        char dir[64];
        char key_file[128];
        GwServer *gw;
        GwAuth *auth;
        char url[64];
        char key_a[APIKEY_LEN + 1], key_b[APIKEY_LEN + 1];
        /* k8s_request's wrap */
        unsigned reviews, sars;
        char last_sar[2048];
} t;

static int f_create(void *b, json_object *req, json_object **ret, char *err, size_t errlen)
{
        (void) b;
        (void) err;
        (void) errlen;
        pthread_mutex_lock(&t.lock);
        char id[32];
        snprintf(id, sizeof(id), "sbx%u", ++t.next);
        char doc[1024];
        snprintf(doc, sizeof(doc),
                 "{\"id\":\"%s\",\"template\":\"default\",\"state\":\"running\",\"cpu\":1,"
                 "\"memory\":536870912,\"disk\":536870912,\"started_at\":"
                 "\"2026-01-01T00:00:00.000Z\",\"expires_at\":\"2026-01-01T00:05:00.000Z\","
                 "\"network\":{\"egress\":\"deny\"}}",
                 id);
        json_object *s = json_tokener_parse(doc);
        json_object *labels = json_obj(req, "labels");
        json_object_object_add(s, "labels",
                               labels ? json_object_get(labels) : json_object_new_object());
        json_object_array_add(t.sandboxes, s);
        *ret = json_object_get(s);
        pthread_mutex_unlock(&t.lock);
        return 0;
}

static int find(const char *id)
{
        for (size_t i = 0; i < json_object_array_length(t.sandboxes); i++)
                if (streq(json_str(json_object_array_get_idx(t.sandboxes, i), "id"), id))
                        return (int) i;
        return -1;
}

static int f_get(void *b, const char *id, json_object **ret, char *err, size_t errlen)
{
        (void) b;
        pthread_mutex_lock(&t.lock);
        int i = find(id);
        if (i >= 0)
                *ret = json_object_get(json_object_array_get_idx(t.sandboxes, (size_t) i));
        pthread_mutex_unlock(&t.lock);
        if (i < 0)
                snprintf(err, errlen, "no sandbox %s", id);
        return i < 0 ? -ENOENT : 0;
}

static int f_list(void *b, json_object **ret, char *err, size_t errlen)
{
        (void) b;
        (void) err;
        (void) errlen;
        pthread_mutex_lock(&t.lock);
        *ret = NULL;
        json_object_deep_copy(t.sandboxes, ret, NULL);
        pthread_mutex_unlock(&t.lock);
        return 0;
}

static int f_remove(void *b, const char *id, char *err, size_t errlen)
{
        (void) b;
        pthread_mutex_lock(&t.lock);
        int i = find(id);
        if (i >= 0)
                json_object_array_del_idx(t.sandboxes, (size_t) i, 1);
        pthread_mutex_unlock(&t.lock);
        if (i < 0)
                snprintf(err, errlen, "no sandbox %s", id);
        return i < 0 ? -ENOENT : 0;
}

static int f_set_timeout(void *b, const char *id, uint64_t s, char *err, size_t errlen)
{
        (void) s;
        json_object *o = NULL;
        int r = f_get(b, id, &o, err, errlen);
        json_object_put(o);
        return r;
}

static int f_pause(void *b, const char *id, char *err, size_t errlen)
{
        return f_set_timeout(b, id, 0, err, errlen);
}

static int f_resume(void *b, const char *id, uint64_t s, json_object **ret, char *err,
                    size_t errlen)
{
        (void) s;
        return f_get(b, id, ret, err, errlen);
}

static int f_metrics(void *b, const char *id, int64_t start, int64_t end, json_object **ret,
                     char *err, size_t errlen)
{
        (void) b;
        (void) id;
        (void) start;
        (void) end;
        (void) ret;
        snprintf(err, errlen, "no metrics");
        return -EOPNOTSUPP;
}

static int f_agent(void *b, const char *id, AgentClient **ret, char *err, size_t errlen)
{
        (void) b;
        (void) id;
        (void) ret;
        snprintf(err, errlen, "no data plane here");
        return -EOPNOTSUPP;
}

static const GwBackendOps fake_ops = {
        .create = f_create,
        .get = f_get,
        .list = f_list,
        .remove = f_remove,
        .set_timeout = f_set_timeout,
        .pause = f_pause,
        .resume = f_resume,
        .metrics = f_metrics,
        .agent = f_agent,
};

/* k8s_request, wrapped: TokenReview knows "tok-a" (a ServiceAccount of
 * team-a) and "tok-u" (a user); SubjectAccessReview allows team-a's account
 * create/list/get in team-a, and the user get in team-b. */
int __wrap_k8s_request(K8sClient *c, const char *method, const char *path, const char *content_type,
                       json_object *body, json_object **ret, K8sError *err);
int __wrap_k8s_request(K8sClient *c, const char *method, const char *path, const char *content_type,
                       json_object *body, json_object **ret, K8sError *err)
{
        (void) c;
        (void) content_type;
        (void) err;
        assert_string_equal(method, "POST");
        json_object *spec = json_obj(body, "spec");
        char doc[1024];
        if (streq(path, "/apis/authentication.k8s.io/v1/tokenreviews")) {
                const char *tok = json_str(spec, "token");
                pthread_mutex_lock(&t.lock);
                t.reviews++;
                pthread_mutex_unlock(&t.lock);
                if (streq(tok, "tok-down"))
                        return -ECONNREFUSED;
                const char *user = streq(tok, "tok-a")   ? "system:serviceaccount:team-a:runner"
                                   : streq(tok, "tok-u") ? "alice"
                                                         : NULL;
                if (user)
                        snprintf(doc, sizeof(doc),
                                 "{\"status\":{\"authenticated\":true,\"user\":{\"username\":"
                                 "\"%s\",\"uid\":\"u1\",\"groups\":[\"g1\"]}}}",
                                 user);
                else
                        snprintf(doc, sizeof(doc), "{\"status\":{\"authenticated\":false}}");
        } else {
                assert_string_equal(path, "/apis/authorization.k8s.io/v1/subjectaccessreviews");
                json_object *ra = json_obj(spec, "resourceAttributes");
                const char *user = json_str(spec, "user"), *ns = json_str(ra, "namespace"),
                           *verb = json_str(ra, "verb");
                assert_string_equal(json_str(ra, "group"), "sandpit.dev");
                assert_string_equal(json_str(ra, "resource"), "sandboxes");
                assert_string_equal(json_str(spec, "uid"), "u1");
                pthread_mutex_lock(&t.lock);
                t.sars++;
                snprintf(t.last_sar, sizeof(t.last_sar), "%s %s %s", user, verb, ns);
                pthread_mutex_unlock(&t.lock);
                bool ok = (streq(user, "system:serviceaccount:team-a:runner") &&
                           streq(ns, "team-a") &&
                           (streq(verb, "create") || streq(verb, "list") || streq(verb, "get"))) ||
                          (streq(user, "alice") && streq(ns, "team-b") && streq(verb, "get"));
                snprintf(doc, sizeof(doc), "{\"status\":{\"allowed\":%s}}", ok ? "true" : "false");
        }
        *ret = json_tokener_parse(doc);
        return 0;
}

typedef struct {
        long status;
        char body[8192];
        size_t len;
} Reply;

static size_t on_body(char *data, size_t size, size_t n, void *userdata)
{
        Reply *r = userdata;
        size_t len = size * n;
        if (r->len + len < sizeof(r->body)) {
                memcpy(r->body + r->len, data, len);
                r->len += len;
                r->body[r->len] = 0;
        }
        return len;
}

static Reply callv(const char *method, const char *path, const char *const *hdrs, const char *body);

/* hdr, hdr2: one "Name: value" header each, or NULL. */
static Reply call2(const char *method, const char *path, const char *hdr, const char *hdr2,
                   const char *body)
{
        const char *hs[] = {hdr ? hdr : hdr2, hdr ? hdr2 : NULL, NULL};
        return callv(method, path, hs, body);
}

/* hdrs: NULL-terminated "Name: value" headers. */
static Reply callv(const char *method, const char *path, const char *const *hdrs, const char *body)
{
        Reply r = {0};
        CURL *c = curl_easy_init();
        assert_non_null(c);
        char url[256];
        snprintf(url, sizeof(url), "%s%s", t.url, path);
        struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/json");
        for (size_t i = 0; hdrs[i]; i++)
                hs = curl_slist_append(hs, hdrs[i]);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
        if (body)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        curl_slist_free_all(hs);
        curl_easy_cleanup(c);
        return r;
}

static Reply call(const char *method, const char *path, const char *key, const char *body)
{
        char h[128] = "";
        if (key)
                snprintf(h, sizeof(h), "X-API-KEY: %s", key);
        return call2(method, path, key ? h : NULL, NULL, body);
}

static size_t count(void)
{
        pthread_mutex_lock(&t.lock);
        size_t n = json_object_array_length(t.sandboxes);
        pthread_mutex_unlock(&t.lock);
        return n;
}

/* The id in a Sandbox view. */
static void sandbox_id(const Reply *r, char *buf, size_t len)
{
        cleanup_json json_object *o = json_tokener_parse(r->body);
        const char *id = json_str(o, "sandboxID");
        assert_non_null(id);
        snprintf(buf, len, "%s", id);
}

static int setup(void **state)
{
        (void) state;
        pthread_mutex_init(&t.lock, NULL);
        t.sandboxes = json_object_new_array();
        snprintf(t.dir, sizeof(t.dir), "/tmp/sandpit-test-auth-XXXXXX");
        if (!mkdtemp(t.dir))
                return -1;
        snprintf(t.key_file, sizeof(t.key_file), "%s/gateway-keys", t.dir);
        GwAuthConfig ac = {.mode = GW_AUTH_KEYS,
                           .key_file = t.key_file,
                           .k8s = (K8sClient *) &t /* only k8s_request sees it: wrapped */};
        if (gw_auth_new(&ac, 0, &t.auth) < 0)
                return -1;
        GwConfig gc = {.listen = "127.0.0.1:0",
                       .backend = {.ops = &fake_ops},
                       .authorize = gw_auth_authorize,
                       .authorize_userdata = t.auth};
        if (gw_server_start(&gc, &t.gw) < 0)
                return -1;
        snprintf(t.url, sizeof(t.url), "http://127.0.0.1:%u", gw_server_port(t.gw));
        return 0;
}

static int teardown(void **state)
{
        (void) state;
        gw_server_free(t.gw);
        gw_auth_free(t.auth);
        json_object_put(t.sandboxes);
        (void) rm_rf(t.dir);
        pthread_mutex_destroy(&t.lock);
        return 0;
}

static const char CREATE[] = "{\"templateID\":\"base\"}";

static void test_no_keys_yet(void **state)
{
        (void) state;
        Reply r =
                call("POST", "/sandboxes", "e2b_0000000000000000000000000000000000000000", CREATE);
        assert_int_equal(r.status, 401);
        assert_non_null(strstr(r.body, "\"code\":401"));
        assert_non_null(strstr(r.body, "no API keys exist yet"));
        r = call("GET", "/sandboxes", NULL, NULL);
        assert_int_equal(r.status, 401);
        assert_non_null(strstr(r.body, "missing API key"));
        assert_int_equal(count(), 0);
}

static void test_keys_and_namespaces(void **state)
{
        (void) state;
        ApiKey a, b;
        assert_int_equal(apikey_generate("team-a", "a", t.key_a, &a), 0);
        assert_int_equal(apikey_generate("team-b", "b", t.key_b, &b), 0);
        assert_int_equal(apikey_file_update(t.key_file, add_one, &a), 0);
        assert_int_equal(apikey_file_update(t.key_file, add_one, &b), 0);
        assert_int_equal(apikey_file_update(t.key_file, add_one, &b), -EEXIST);

        /* A wrong key: 401, nothing made. */
        Reply r =
                call("POST", "/sandboxes", "e2b_0000000000000000000000000000000000000000", CREATE);
        assert_int_equal(r.status, 401);
        assert_non_null(strstr(r.body, "invalid API key"));
        assert_int_equal(count(), 0);

        r = call("POST", "/sandboxes", t.key_a, CREATE);
        assert_int_equal(r.status, 201);
        char ida[64], idb[64];
        sandbox_id(&r, ida, sizeof(ida));
        r = call("POST", "/v2/sandboxes", t.key_b, CREATE);
        assert_int_equal(r.status, 201);
        sandbox_id(&r, idb, sizeof(idb));
        char tokb[128], sidb[128];
        {
                cleanup_json json_object *o = json_tokener_parse(r.body);
                assert_non_null(json_str(o, "envdAccessToken"));
                snprintf(tokb, sizeof(tokb), "X-Access-Token: %s", json_str(o, "envdAccessToken"));
                snprintf(sidb, sizeof(sidb), "E2b-Sandbox-Id: %s", idb);
        }
        /* Labelled with the key's namespace. */
        json_object *s = NULL;
        char err[64];
        assert_int_equal(f_get(NULL, ida, &s, err, sizeof(err)), 0);
        assert_string_equal(json_str(json_obj(s, "labels"), GW_LABEL_NAMESPACE), "team-a");
        /* ...which is not E2B metadata. */
        json_object_put(s);

        r = call("GET", "/v2/sandboxes", t.key_a, NULL);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, ida));
        assert_null(strstr(r.body, idb));
        assert_null(strstr(r.body, GW_LABEL_NAMESPACE));
        r = call("GET", "/sandboxes", t.key_b, NULL);
        assert_null(strstr(r.body, ida));
        assert_non_null(strstr(r.body, idb));

        /* B's sandbox through A's key: 404 as for one that does not exist. */
        char path[128];
        snprintf(path, sizeof(path), "/sandboxes/%s", idb);
        r = call("GET", path, t.key_a, NULL);
        assert_int_equal(r.status, 404);
        assert_non_null(strstr(r.body, "\"code\":404"));
        Reply missing = call("GET", "/sandboxes/nosuch", t.key_a, NULL);
        assert_int_equal(missing.status, 404);
        r = call("DELETE", path, t.key_a, NULL);
        assert_int_equal(r.status, 404);
        snprintf(path, sizeof(path), "/sandboxes/%s/timeout", idb);
        r = call("POST", path, t.key_a, "{\"timeout\":60}");
        assert_int_equal(r.status, 404);
        snprintf(path, sizeof(path), "/sandboxes/%s/pause", idb);
        r = call("POST", path, t.key_a, NULL);
        assert_int_equal(r.status, 404);
        snprintf(path, sizeof(path), "/v2/sandboxes/%s/connect", idb);
        r = call("POST", path, t.key_a, "{\"timeout\":60}");
        assert_int_equal(r.status, 404);
        assert_int_equal(count(), 2);
        /* A's failed kill left B's access token alone: envd still takes it
         * (past the hook: this fake has no data plane, 501), a wrong one is 401. */
        const char *envd[] = {sidb, "E2b-Sandbox-Port: 49983", tokb, NULL};
        r = callv("GET", "/files?path=a", envd, NULL);
        assert_int_equal(r.status, 501);
        envd[2] = "X-Access-Token: wrong";
        r = callv("GET", "/files?path=a", envd, NULL);
        assert_int_equal(r.status, 401);

        /* A namespace asked for that is not the key's: 403. */
        char h[128];
        snprintf(h, sizeof(h), "X-API-KEY: %s", t.key_a);
        r = call2("GET", "/sandboxes", h, "X-Sandpit-Namespace: team-b", NULL);
        assert_int_equal(r.status, 403);
        r = call2("GET", "/sandboxes", h, "X-Sandpit-Namespace: team-a", NULL);
        assert_int_equal(r.status, 200);

        /* B kills its own. */
        snprintf(path, sizeof(path), "/sandboxes/%s", idb);
        r = call("DELETE", path, t.key_b, NULL);
        assert_int_equal(r.status, 204);
        assert_int_equal(count(), 1);
}

static int revoke_a(ApiKeySet *s, void *userdata)
{
        (void) userdata;
        return apikey_set_remove(s, "a", NULL);
}

static void test_revoke_and_broken_file(void **state)
{
        (void) state;
        GwAuthStats st0, st1;
        gw_auth_get_stats(t.auth, &st0);
        Reply r = call("GET", "/sandboxes", t.key_a, NULL);
        assert_int_equal(r.status, 200);
        gw_auth_get_stats(t.auth, &st1);
        assert_int_equal(st1.key_reloads, st0.key_reloads); /* unchanged file: not read */

        assert_int_equal(apikey_file_update(t.key_file, revoke_a, NULL), 0);
        r = call("GET", "/sandboxes", t.key_a, NULL);
        assert_int_equal(r.status, 401);
        assert_non_null(strstr(r.body, "invalid API key"));
        r = call("GET", "/sandboxes", t.key_b, NULL);
        assert_int_equal(r.status, 200);

        /* A broken file: no key is valid. */
        assert_int_equal(write_file_atomic(t.key_file, "{\"keys\":", 8, 0600), 0);
        r = call("GET", "/sandboxes", t.key_b, NULL);
        assert_int_equal(r.status, 401);
        /* Gone: none either. */
        assert_int_equal(unlink(t.key_file), 0);
        r = call("GET", "/sandboxes", t.key_b, NULL);
        assert_int_equal(r.status, 401);
        assert_non_null(strstr(r.body, "no API keys exist yet"));
}

static void test_verbs(void **state)
{
        (void) state;
        assert_string_equal(gw_auth_verb("POST", "/sandboxes"), "create");
        assert_string_equal(gw_auth_verb("POST", "/v2/sandboxes"), "create");
        assert_string_equal(gw_auth_verb("GET", "/v2/sandboxes"), "list");
        assert_string_equal(gw_auth_verb("GET", "/sandboxes/x"), "get");
        assert_string_equal(gw_auth_verb("GET", "/sandboxes/x/metrics"), "get");
        assert_string_equal(gw_auth_verb("DELETE", "/sandboxes/x"), "delete");
        assert_string_equal(gw_auth_verb("POST", "/sandboxes/x/timeout"), "update");
        assert_string_equal(gw_auth_verb("POST", "/sandboxes/x/pause"), "update");
        assert_string_equal(gw_auth_verb("POST", "/v2/sandboxes/x/connect"), "update");
        /* MCP: the session itself, and each tool as the call it makes. */
        assert_string_equal(gw_auth_mcp_verb("/mcp", ""), "get");
        assert_string_equal(gw_auth_mcp_verb("create_sandbox", ""), "create");
        assert_string_equal(gw_auth_mcp_verb("run_code", ""), "create");
        assert_string_equal(gw_auth_mcp_verb("run_code", "x"), "update");
        assert_string_equal(gw_auth_mcp_verb("list_sandboxes", ""), "list");
        assert_string_equal(gw_auth_mcp_verb("list_sandboxes", "x"), "list");
        assert_string_equal(gw_auth_mcp_verb("kill_sandbox", "x"), "delete");
        assert_string_equal(gw_auth_mcp_verb("read_file", "x"), "get");
}

/* /mcp takes the same keys: 401 with a JSON-RPC error without a valid one. */
static void test_mcp_needs_a_key(void **state)
{
        (void) state;
        static const char init[] =
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
                "\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},"
                "\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}";
        ApiKey k;
        char key[APIKEY_LEN + 1];
        assert_int_equal(apikey_generate("team-m", "m", key, &k), 0);
        assert_int_equal(apikey_file_update(t.key_file, add_one, &k), 0);
        Reply r = call2("POST", "/mcp", NULL, NULL, init);
        assert_int_equal(r.status, 401);
        assert_non_null(strstr(r.body, "\"jsonrpc\":\"2.0\""));
        assert_non_null(strstr(r.body, "missing API key"));
        r = call("POST", "/mcp", "e2b_0000000000000000000000000000000000000000", init);
        assert_int_equal(r.status, 401);
        assert_non_null(strstr(r.body, "invalid API key"));
        r = call("POST", "/mcp", key, init);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "\"result\""));
}

static void test_kubernetes_tokens(void **state)
{
        (void) state;
        pthread_mutex_lock(&t.lock);
        t.reviews = t.sars = 0;
        pthread_mutex_unlock(&t.lock);
        /* A ServiceAccount: its own namespace without asking. */
        Reply r = call2("POST", "/sandboxes", "Authorization: Bearer tok-a", NULL, CREATE);
        assert_int_equal(r.status, 201);
        char id[64];
        sandbox_id(&r, id, sizeof(id));
        json_object *s = NULL;
        char err[64];
        assert_int_equal(f_get(NULL, id, &s, err, sizeof(err)), 0);
        assert_string_equal(json_str(json_obj(s, "labels"), GW_LABEL_NAMESPACE), "team-a");
        json_object_put(s);
        assert_string_equal(t.last_sar, "system:serviceaccount:team-a:runner create team-a");
        /* The same again: both answers from the cache. */
        r = call2("POST", "/sandboxes", "Authorization: Bearer tok-a", NULL, CREATE);
        assert_int_equal(r.status, 201);
        assert_int_equal(t.reviews, 1);
        assert_int_equal(t.sars, 1);
        /* Another verb: one more SubjectAccessReview, no TokenReview. */
        r = call2("GET", "/sandboxes", "Authorization: Bearer tok-a", NULL, NULL);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, id));
        assert_int_equal(t.reviews, 1);
        assert_int_equal(t.sars, 2);
        /* Not granted delete: 403, the sandbox stays. */
        size_t before = count();
        char path[128];
        snprintf(path, sizeof(path), "/sandboxes/%s", id);
        r = call2("DELETE", path, "Authorization: Bearer tok-a", NULL, NULL);
        assert_int_equal(r.status, 403);
        assert_non_null(strstr(r.body, "may not delete sandboxes.sandpit.dev in namespace team-a"));
        assert_null(strstr(r.body, "tok-a"));
        assert_int_equal(count(), before);
        /* Nor create in team-b. */
        r = call2("POST", "/sandboxes", "Authorization: Bearer tok-a",
                  "X-Sandpit-Namespace: team-b", CREATE);
        assert_int_equal(r.status, 403);
        assert_int_equal(count(), before);
        /* A user names the namespace; without it, 403. */
        r = call2("GET", path, "Authorization: Bearer tok-u", NULL, NULL);
        assert_int_equal(r.status, 403);
        assert_non_null(strstr(r.body, "X-Sandpit-Namespace"));
        r = call2("GET", path, "Authorization: Bearer tok-u", "X-Sandpit-Namespace: team-b", NULL);
        assert_int_equal(r.status, 404); /* allowed in team-b, and the sandbox is team-a's */
        r = call2("GET", path, "Authorization: Bearer tok-u", "X-Sandpit-Namespace: Bad!", NULL);
        assert_int_equal(r.status, 400);
        /* An unknown token: 401, and that answer is cached too. */
        unsigned reviews = t.reviews;
        r = call2("GET", "/sandboxes", "Authorization: Bearer tok-x", NULL, NULL);
        assert_int_equal(r.status, 401);
        assert_null(strstr(r.body, "tok-x"));
        r = call2("GET", "/sandboxes", "Authorization: Bearer tok-x", NULL, NULL);
        assert_int_equal(r.status, 401);
        assert_int_equal(t.reviews, reviews + 1);
        /* The API server unreachable: 500, not cached, nothing made. */
        r = call2("POST", "/sandboxes", "Authorization: Bearer tok-down", NULL, CREATE);
        assert_int_equal(r.status, 500);
        r = call2("POST", "/sandboxes", "Authorization: Bearer tok-down", NULL, CREATE);
        assert_int_equal(r.status, 500);
        assert_int_equal(t.reviews, reviews + 3);
        assert_int_equal(count(), before);
}

/* ---- scope.c over a backend whose ids are not the agent's (the cluster's) */

/* n1 (agent's a1) in team-a, n2 (a2) in team-b. */
static const char two_ns[] =
        "[{\"id\":\"n1\",\"agent_id\":\"a1\",\"labels\":{\"" GW_LABEL_NAMESPACE
        "\":\"team-a\"}},{\"id\":\"n2\",\"agent_id\":\"a2\",\"labels\":{\"" GW_LABEL_NAMESPACE
        "\":\"team-b\"}}]";
static char reached[16]; /* the agent id the inner agent op was asked for */

static json_object *two_ns_find(const char *key, const char *value)
{
        json_object *all = json_tokener_parse(two_ns), *hit = NULL;
        for (size_t i = 0; i < json_object_array_length(all); i++) {
                json_object *o = json_object_array_get_idx(all, i);
                if (streq(json_str(o, key), value))
                        hit = json_object_get(o);
        }
        json_object_put(all);
        return hit;
}

static int a_get(void *b, const char *id, json_object **ret, char *err, size_t errlen)
{
        (void) b;
        *ret = two_ns_find("id", id);
        if (!*ret)
                snprintf(err, errlen, "sandbox %s not found", id);
        return *ret ? 0 : -ENOENT;
}

static int a_list(void *b, json_object **ret, char *err, size_t errlen)
{
        (void) b;
        (void) err;
        (void) errlen;
        *ret = json_tokener_parse(two_ns);
        return 0;
}

static int a_agent_id(void *b, const char *id, char *ret, size_t retlen, char *err, size_t errlen)
{
        json_object *o = NULL;
        int r = a_get(b, id, &o, err, errlen);
        if (r == 0)
                snprintf(ret, retlen, "%s", json_str(o, "agent_id"));
        json_object_put(o);
        return r;
}

static int a_agent(void *b, const char *agent_id, AgentClient **ret, char *err, size_t errlen)
{
        (void) b;
        (void) ret;
        (void) err;
        (void) errlen;
        snprintf(reached, sizeof(reached), "%s", agent_id);
        return -EOPNOTSUPP; /* reached: no client needed to tell */
}

static const GwBackendOps agent_id_ops = {
        .get = a_get,
        .list = a_list,
        .agent = a_agent,
        .agent_id = a_agent_id,
};

/* A caller of team-a maps its own sandbox's name to the agent's id and
 * reaches that agent; another namespace's sandbox is "not found" by its name
 * and by its agent's id, and the inner backend is never asked. */
static void test_scope_with_agent_ids(void **state)
{
        (void) state;
        GwBackend inner = {.ops = &agent_id_ops}, b;
        GwScope scope;
        gw_scope_backend(&inner, "team-a", &scope, &b);
        assert_non_null(b.ops->agent_id);
        assert_null(b.ops->agent_address); /* the inner has none */
        char aid[64] = "", err[256] = "";
        assert_int_equal(b.ops->agent_id(b.data, "n1", aid, sizeof(aid), err, sizeof(err)), 0);
        assert_string_equal(aid, "a1");
        AgentClient *ac = NULL;
        reached[0] = 0;
        assert_int_equal(b.ops->agent(b.data, "a1", &ac, err, sizeof(err)), -EOPNOTSUPP);
        assert_string_equal(reached, "a1");
        /* team-b's, by name and by its agent's id; a name is not an agent id. */
        assert_int_equal(b.ops->agent_id(b.data, "n2", aid, sizeof(aid), err, sizeof(err)),
                         -ENOENT);
        assert_string_equal(err, "sandbox n2 not found");
        reached[0] = 0;
        assert_int_equal(b.ops->agent(b.data, "a2", &ac, err, sizeof(err)), -ENOENT);
        assert_string_equal(err, "sandbox a2 not found");
        assert_int_equal(b.ops->agent(b.data, "n1", &ac, err, sizeof(err)), -ENOENT);
        assert_string_equal(reached, "");
        /* A backend without agent ids: the scoped view has none either. */
        inner.ops = &fake_ops;
        gw_scope_backend(&inner, "team-a", &scope, &b);
        assert_null(b.ops->agent_id);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_generate_and_lookup),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_file_format),
                cmocka_unit_test(test_secret_format),
                cmocka_unit_test(test_verbs),
                cmocka_unit_test(test_no_keys_yet),
                cmocka_unit_test(test_keys_and_namespaces),
                cmocka_unit_test(test_mcp_needs_a_key),
                cmocka_unit_test(test_revoke_and_broken_file),
                cmocka_unit_test(test_kubernetes_tokens),
                cmocka_unit_test(test_scope_with_agent_ids),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
