/* The Kubernetes client against the test API server (tests/fixtures/
 * kube-apiserver.py, started once for the group on a free port): the four
 * kubeconfigs it writes (token, client certificate, inline data, tokenFile),
 * TLS refusals, CRUD with conflicts and preconditions on a custom resource
 * created from crds/, the status subresource, both patch kinds, pagination,
 * Events, and the informer's watch: every event in order, bookmarks moving the
 * resourceVersion, reconnects after cut and closed streams, relists after
 * 410 (compaction, ERROR events, HTTP 410) with nothing lost, and back-off
 * through injected 500s and 429s.
 *
 * Handlers can hold the informer thread at a "gate" object, so a test can cut
 * the watch and write while the informer is provably not reading: no sleeps
 * decide anything, waits are bounded polls. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "sandpit/k8s-client.h"
#include "sandpit/k8s-config.h"
#include "sandpit/k8s-event.h"
#include "sandpit/k8s-informer.h"
#include "sandpit/k8s-workqueue.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "sandpit/yaml.h"

#define WAIT_MS 30000

static const K8sResource namespaces = {"", "v1", "namespaces", false};
static const K8sResource secrets = {"", "v1", "secrets", true};
static const K8sResource leases = {"coordination.k8s.io", "v1", "leases", true};
static const K8sResource crds = {"apiextensions.k8s.io", "v1", "customresourcedefinitions", false};
static const K8sResource sandboxes = {"sandpit.dev", "v1alpha1", "sandboxes", true};
static const K8sResource core_events = {"", "v1", "events", true};

static struct {
        pid_t pid;
        char dir[64];
        json_object *info; /* the fixture's JSON line */
        K8sClient *c;      /* token kubeconfig */
} fx = {.pid = -1};

static const char *info_str(const char *key)
{
        json_object *v = NULL;
        assert_true(json_object_object_get_ex(fx.info, key, &v));
        return json_object_get_string(v);
}

static int start_fixture(void **state)
{
        (void) state;
        int pfd[2];
        if (access("/usr/bin/python3", X_OK) < 0 ||
            access("tests/fixtures/kube-apiserver.py", R_OK) < 0) {
                fprintf(stderr, "needs /usr/bin/python3; run from the repository root\n");
                return -1;
        }
        (void) snprintf(fx.dir, sizeof(fx.dir), "/tmp/test-k8s-live-XXXXXX");
        if (!mkdtemp(fx.dir) || pipe2(pfd, O_CLOEXEC) < 0)
                return -1;
        pid_t pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                char log[128];
                (void) snprintf(log, sizeof(log), "%s/server.log", fx.dir);
                int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
                if (dup2(pfd[1], 1) < 0 || lfd < 0 || dup2(lfd, 2) < 0)
                        _exit(127);
                execl("/usr/bin/python3", "python3", "tests/fixtures/kube-apiserver.py", "--dir",
                      fx.dir, "--port", "0", "--bookmark-interval", "1", (char *) NULL);
                _exit(127);
        }
        fx.pid = pid;
        (void) close(pfd[1]);
        char line[4096];
        size_t n = 0;
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        while (n < sizeof(line) - 1 && !memchr(line, '\n', n)) {
                if (poll(&p, 1, 60000) <= 0)
                        break;
                ssize_t k = read(pfd[0], line + n, sizeof(line) - 1 - n);
                if (k <= 0)
                        break;
                n += (size_t) k;
        }
        (void) close(pfd[0]);
        line[n] = '\0';
        fx.info = json_tokener_parse(line);
        if (!fx.info) {
                fprintf(stderr, "fixture did not start (log in %s): %s\n", fx.dir, line);
                return -1;
        }
        char err[256];
        K8sConfig *cfg = NULL;
        if (k8s_config_from_kubeconfig(info_str("kubeconfig"), NULL, &cfg, err, sizeof(err)) < 0 ||
            k8s_client_new(cfg, &fx.c) < 0) {
                fprintf(stderr, "kubeconfig: %s\n", err);
                return -1;
        }
        return 0;
}

static int stop_fixture(void **state)
{
        (void) state;
        k8s_client_free(fx.c);
        json_object_put(fx.info);
        if (fx.pid > 0) {
                (void) kill(fx.pid, SIGTERM);
                (void) waitpid(fx.pid, NULL, 0);
        }
        return rm_rf(fx.dir) < 0 ? -1 : 0;
}

/* ------------------------------------------------------------ helpers */

static json_object *parse(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_object *parse(const char *fmt, ...)
{
        char buf[4096];
        va_list ap;
        va_start(ap, fmt);
        (void) vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        json_object *o = json_tokener_parse(buf);
        assert_non_null(o);
        return o;
}

static void admin(const char *what)
{
        json_object *body = json_object_new_object();
        K8sError err;
        int r = k8s_request(fx.c, "POST", what, NULL, body, NULL, &err);
        json_object_put(body);
        if (r < 0)
                fail_msg("%s: %d %s", what, r, err.message);
}

static long requests(const char *verb)
{
        json_object *st = NULL, *req = NULL, *v = NULL;
        assert_int_equal(k8s_request(fx.c, "GET", "/_admin/stats", NULL, NULL, &st, NULL), 0);
        assert_true(json_object_object_get_ex(st, "requests", &req));
        long n = json_object_object_get_ex(req, verb, &v) ? (long) json_object_get_int64(v) : 0;
        json_object_put(st);
        return n;
}

static void make_namespace(const char *name)
{
        json_object *o = parse("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{"
                               "\"name\":\"%s\"}}",
                               name);
        int r = k8s_create(fx.c, &namespaces, NULL, o, NULL, NULL);
        json_object_put(o);
        assert_true(r == 0 || r == -EEXIST);
}

static char *lease_write(const char *ns, const char *name, const char *holder)
{
        json_object *o = NULL, *out = NULL;
        K8sError err;
        int r = k8s_get(fx.c, &leases, ns, name, &o, &err);
        if (r == -ENOENT) {
                o = parse("{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
                          "\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\"},"
                          "\"spec\":{\"holderIdentity\":\"%s\"}}",
                          name, ns, holder);
                r = k8s_create(fx.c, &leases, ns, o, &out, &err);
        } else {
                assert_int_equal(r, 0);
                json_object *spec = NULL;
                assert_true(json_object_object_get_ex(o, "spec", &spec));
                (void) json_object_object_add(spec, "holderIdentity",
                                              json_object_new_string(holder));
                r = k8s_update(fx.c, &leases, o, &out, &err);
        }
        if (r < 0)
                fail_msg("lease %s/%s: %d %s %s", ns, name, r, err.reason, err.message);
        char *rv = strdup(k8s_obj_resource_version(out));
        json_object_put(o);
        json_object_put(out);
        return rv;
}

static void lease_delete(const char *ns, const char *name)
{
        assert_int_equal(k8s_delete(fx.c, &leases, ns, name, NULL, NULL, NULL), 0);
}

/* What the informer's handlers saw: "A:name;U:name;D:name;" */
typedef struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        char log[32768];
        size_t n;
        char gate[32];     /* an add of this name holds the informer thread */
        bool gate_waiting; /* the informer thread is held */
        bool gate_open;
} Recorder;

static void rec_init(Recorder *r)
{
        memset(r, 0, sizeof(*r));
        (void) pthread_mutex_init(&r->lock, NULL);
        (void) pthread_cond_init(&r->cond, NULL);
}

static void rec_done(Recorder *r)
{
        (void) pthread_cond_destroy(&r->cond);
        (void) pthread_mutex_destroy(&r->lock);
}

static void rec_append(Recorder *r, char what, const char *key)
{
        const char *slash = strchr(key, '/');
        const char *name = slash ? slash + 1 : key;
        (void) pthread_mutex_lock(&r->lock);
        int k = snprintf(r->log + r->n, sizeof(r->log) - r->n, "%c:%s;", what, name);
        if (k > 0 && (size_t) k < sizeof(r->log) - r->n)
                r->n += (size_t) k;
        (void) pthread_cond_broadcast(&r->cond);
        if (what == 'A' && r->gate[0] && streq(name, r->gate)) {
                r->gate_waiting = true;
                (void) pthread_cond_broadcast(&r->cond);
                while (!r->gate_open)
                        (void) pthread_cond_wait(&r->cond, &r->lock);
                r->gate_waiting = false;
        }
        (void) pthread_mutex_unlock(&r->lock);
}

static void on_add(const char *key, json_object *obj, void *userdata)
{
        (void) obj;
        rec_append(userdata, 'A', key);
}

static void on_update(const char *key, json_object *old_obj, json_object *new_obj, void *userdata)
{
        /* the old object really is the previous state */
        assert_string_not_equal(k8s_obj_resource_version(old_obj),
                                k8s_obj_resource_version(new_obj));
        rec_append(userdata, 'U', key);
}

static void on_delete(const char *key, json_object *obj, void *userdata)
{
        (void) obj;
        rec_append(userdata, 'D', key);
}

static const K8sInformerHandlers handlers = {on_add, on_update, on_delete};

static void deadline(struct timespec *ts, long ms)
{
        (void) clock_gettime(CLOCK_REALTIME, ts);
        ts->tv_sec += ms / 1000;
        ts->tv_nsec += (ms % 1000) * 1000000L;
        if (ts->tv_nsec >= 1000000000L) {
                ts->tv_sec++;
                ts->tv_nsec -= 1000000000L;
        }
}

/* Waits until the log contains s; returns whether it did. */
static bool rec_wait(Recorder *r, const char *s)
{
        struct timespec ts;
        deadline(&ts, WAIT_MS);
        bool found;
        (void) pthread_mutex_lock(&r->lock);
        while (!(found = strstr(r->log, s) != NULL))
                if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) != 0)
                        break;
        if (!found)
                fprintf(stderr, "waited for \"%s\", log: %s\n", s, r->log);
        (void) pthread_mutex_unlock(&r->lock);
        return found;
}

static void rec_wait_gate(Recorder *r)
{
        struct timespec ts;
        deadline(&ts, WAIT_MS);
        (void) pthread_mutex_lock(&r->lock);
        while (!r->gate_waiting)
                if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) != 0)
                        break;
        bool held = r->gate_waiting;
        (void) pthread_mutex_unlock(&r->lock);
        assert_true(held);
}

static void rec_open_gate(Recorder *r)
{
        (void) pthread_mutex_lock(&r->lock);
        r->gate_open = true;
        (void) pthread_cond_broadcast(&r->cond);
        (void) pthread_mutex_unlock(&r->lock);
}

/* The log after the first occurrence of marker. */
static void rec_after(Recorder *r, const char *marker, char *out, size_t len)
{
        (void) pthread_mutex_lock(&r->lock);
        const char *p = strstr(r->log, marker);
        (void) snprintf(out, len, "%s", p ? p + strlen(marker) : "");
        (void) pthread_mutex_unlock(&r->lock);
}

/* Informers a test started: freed by the teardown if an assertion left early,
 * so no informer thread outlives its test. */
static K8sInformer *running[4];

static void stop_informer(K8sInformer *inf)
{
        for (size_t i = 0; i < ARRAY_SIZE(running); i++)
                if (running[i] == inf)
                        running[i] = NULL;
        k8s_informer_free(inf);
}

static int stop_informers(void **state)
{
        (void) state;
        for (size_t i = 0; i < ARRAY_SIZE(running); i++) {
                k8s_informer_free(running[i]);
                running[i] = NULL;
        }
        return 0;
}

static K8sInformer *start_informer(const K8sResource *res, const char *ns, Recorder *rec)
{
        K8sWatchOptions o = {
                .resource = *res,
                .namespace = ns,
                .page_size = 2,
                .timeout_s = 60,
                .backoff_initial_ms = 50,
                .backoff_max_ms = 2000,
        };
        K8sInformer *inf = NULL;
        assert_int_equal(k8s_informer_new(fx.c, &o, &handlers, rec, &inf), 0);
        for (size_t i = 0; i < ARRAY_SIZE(running); i++)
                if (!running[i]) {
                        running[i] = inf;
                        break;
                }
        assert_int_equal(k8s_informer_start(inf), 0);
        assert_int_equal(k8s_informer_wait_synced(inf, WAIT_MS), 0);
        return inf;
}

typedef bool (*StatsPred)(const K8sWatchStats *st, const void *arg);

static bool wait_stats(K8sInformer *inf, StatsPred pred, const void *arg, K8sWatchStats *out)
{
        for (int i = 0; i < WAIT_MS / 20; i++) {
                k8s_informer_get_stats(inf, out);
                if (pred(out, arg))
                        return true;
                (void) usleep(20000);
        }
        return false;
}

static bool failed_n(const K8sWatchStats *st, const void *arg)
{
        return st->failures >= (unsigned long) (uintptr_t) arg;
}

/* ------------------------------------------------------------ tests */

static void test_fixture_kubeconfigs(void **state)
{
        (void) state;
        static const char *const keys[] = {"kubeconfig", "kubeconfigCert", "kubeconfigInline",
                                           "kubeconfigTokenFile"};
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
                char err[256];
                K8sConfig *cfg = NULL;
                K8sClient *c = NULL;
                json_object *o = NULL;
                K8sError kerr;
                int r = k8s_config_from_kubeconfig(info_str(keys[i]), NULL, &cfg, err, sizeof(err));
                if (r < 0)
                        fail_msg("%s: %d %s", keys[i], r, err);
                assert_string_equal(cfg->server, info_str("url"));
                assert_string_equal(cfg->context, "sandpit-test");
                assert_string_equal(cfg->namespace, "default");
                assert_non_null(cfg->ca);
                assert_non_null(strstr((const char *) cfg->ca, "BEGIN CERTIFICATE"));
                switch (i) {
                case 0:
                        assert_string_equal(cfg->token, info_str("token"));
                        assert_null(cfg->cert);
                        break;
                case 1:
                case 2:
                        assert_null(cfg->token);
                        assert_non_null(cfg->cert);
                        assert_non_null(cfg->key);
                        assert_non_null(strstr((const char *) cfg->key, "PRIVATE KEY"));
                        break;
                default:
                        assert_null(cfg->token);
                        assert_non_null(cfg->token_file);
                        break;
                }
                /* and each one authenticates: token, client cert, inline, tokenFile */
                assert_int_equal(k8s_client_new(cfg, &c), 0);
                r = k8s_get(c, &namespaces, NULL, "default", &o, &kerr);
                if (r < 0)
                        fail_msg("%s: GET namespace: %d %ld %s", keys[i], r, kerr.status,
                                 kerr.message);
                assert_string_equal(k8s_obj_name(o), "default");
                json_object_put(o);
                k8s_client_free(c);
        }
}

static K8sClient *client_with(void (*tweak)(K8sConfig *cfg))
{
        char err[256];
        K8sConfig *cfg = NULL;
        K8sClient *c = NULL;
        assert_int_equal(k8s_config_from_kubeconfig(info_str("kubeconfigInline"), NULL, &cfg, err,
                                                    sizeof(err)),
                         0);
        tweak(cfg);
        assert_int_equal(k8s_client_new(cfg, &c), 0);
        return c;
}

static void no_credentials(K8sConfig *cfg)
{
        free(cfg->cert);
        free(cfg->key);
        cfg->cert = cfg->key = NULL;
        cfg->cert_len = cfg->key_len = 0;
}

/* Trust the client certificate (signed by the CA, not the CA): the server's
 * certificate then does not verify, as for a man in the middle. */
static void wrong_ca(K8sConfig *cfg)
{
        free(cfg->ca);
        cfg->ca = malloc(cfg->cert_len);
        assert_non_null(cfg->ca);
        memcpy(cfg->ca, cfg->cert, cfg->cert_len);
        cfg->ca_len = cfg->cert_len;
}

static void wrong_token(K8sConfig *cfg)
{
        no_credentials(cfg);
        cfg->token = strdup("not-the-token");
}

static void test_auth_and_tls_refusals(void **state)
{
        (void) state;
        K8sError err;
        json_object *o = NULL;

        K8sClient *c = client_with(wrong_ca);
        assert_int_equal(k8s_get(c, &namespaces, NULL, "default", &o, &err), -EKEYREJECTED);
        assert_int_equal(err.status, 0);
        assert_true(err.message[0] != '\0');
        k8s_client_free(c);

        c = client_with(no_credentials);
        assert_int_equal(k8s_get(c, &namespaces, NULL, "default", &o, &err), -EACCES);
        assert_int_equal(err.status, 401);
        assert_string_equal(err.reason, "Unauthorized");
        k8s_client_free(c);

        c = client_with(wrong_token);
        assert_int_equal(k8s_get(c, &namespaces, NULL, "default", &o, &err), -EACCES);
        k8s_client_free(c);
}

static void closed_port(K8sConfig *cfg)
{
        free(cfg->server);
        cfg->server = strdup("https://127.0.0.1:1");
}

/* Nobody listening: the request fails at once, the informer backs off and
 * keeps trying (never synced) until it is stopped. */
static void test_connection_refused_backs_off(void **state)
{
        (void) state;
        K8sError err;
        json_object *o = NULL;
        K8sClient *c = client_with(closed_port);
        assert_int_equal(k8s_get(c, &namespaces, NULL, "default", &o, &err), -ECONNREFUSED);
        assert_int_equal(err.status, 0);
        assert_true(k8s_errno_is_transient(-ECONNREFUSED));

        K8sWatchOptions wo = {.resource = leases, .backoff_initial_ms = 10, .backoff_max_ms = 40};
        K8sInformer *inf = NULL;
        assert_int_equal(k8s_informer_new(c, &wo, &handlers, NULL, &inf), 0);
        running[0] = inf;
        assert_int_equal(k8s_informer_start(inf), 0);
        K8sWatchStats st;
        assert_true(wait_stats(inf, failed_n, (void *) (uintptr_t) 3, &st));
        assert_int_equal(st.last_error, -ECONNREFUSED);
        assert_true(st.last_backoff_ms <= 40);
        assert_int_equal(st.lists, 0);
        assert_false(k8s_informer_has_synced(inf));
        assert_int_equal(k8s_informer_wait_synced(inf, 50), -ETIMEDOUT);
        stop_informer(inf);
        k8s_client_free(c);
}

static void create_crds(void)
{
        static const char *const files[] = {"crds/sandpit.dev_sandboxes.yaml",
                                            "crds/sandpit.dev_sandboxtemplates.yaml"};
        for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
                char *data = NULL;
                size_t len = 0;
                json_object *crd = NULL;
                K8sError err;
                assert_int_equal(read_file(files[i], 1 << 20, &data, &len), 0);
                assert_int_equal(yaml_to_json(data, len, &crd), 0);
                free(data);
                int r = k8s_create(fx.c, &crds, NULL, crd, NULL, &err);
                json_object_put(crd);
                if (r < 0 && r != -EEXIST)
                        fail_msg("%s: %d %s", files[i], r, err.message);
        }
        /* served once established */
        for (int i = 0; i < 500; i++) {
                json_object *l = NULL;
                if (k8s_list_page(fx.c, &sandboxes, "default", NULL, &l, NULL) == 0) {
                        json_object_put(l);
                        return;
                }
                (void) usleep(20000);
        }
        fail_msg("sandboxes never served");
}

static void test_crud_custom_resource(void **state)
{
        (void) state;
        K8sError err;
        json_object *o = NULL, *got = NULL, *upd = NULL, *v = NULL;
        create_crds();

        json_object *sbx = parse("{\"apiVersion\":\"sandpit.dev/v1alpha1\",\"kind\":\"Sandbox\","
                                 "\"metadata\":{\"name\":\"box1\"},\"spec\":{\"template\":"
                                 "\"default\"},\"status\":{\"phase\":\"Running\"}}");
        assert_int_equal(k8s_create(fx.c, &sandboxes, NULL, sbx, &o, &err), 0);
        assert_string_equal(k8s_obj_namespace(o), "default");
        /* status is dropped on create (status subresource) */
        assert_false(json_object_object_get_ex(o, "status", &v) &&
                     json_object_object_get_ex(v, "phase", NULL));
        char *rv1 = strdup(k8s_obj_resource_version(o));
        char *uid = strdup(k8s_obj_uid(o));
        json_object_put(o);

        assert_int_equal(k8s_create(fx.c, &sandboxes, NULL, sbx, NULL, &err), -EEXIST);
        assert_int_equal(err.status, 409);
        assert_string_equal(err.reason, "AlreadyExists");
        json_object_put(sbx);

        assert_int_equal(k8s_get(fx.c, &sandboxes, "default", "box1", &got, &err), 0);
        json_object *meta = NULL, *labels = json_object_new_object();
        (void) json_object_object_add(labels, "tier", json_object_new_string("gold"));
        assert_true(json_object_object_get_ex(got, "metadata", &meta));
        (void) json_object_object_add(meta, "labels", labels);
        assert_int_equal(k8s_update(fx.c, &sandboxes, got, &upd, &err), 0);
        assert_string_not_equal(k8s_obj_resource_version(upd), rv1);

        /* the same update again carries a stale resourceVersion now */
        assert_int_equal(k8s_update(fx.c, &sandboxes, got, NULL, &err), -EBUSY);
        assert_int_equal(err.status, 409);
        assert_string_equal(err.reason, "Conflict");
        assert_non_null(strstr(err.message, "modified"));
        json_object_put(got);

        /* status through /status: spec in the body is ignored there */
        json_object *st = parse("{\"phase\":\"Running\",\"nodeName\":\"n1\"}");
        (void) json_object_object_add(upd, "status", st);
        assert_true(json_object_object_get_ex(upd, "spec", &v));
        (void) json_object_object_add(v, "template", json_object_new_string("other"));
        assert_int_equal(k8s_update_status(fx.c, &sandboxes, upd, &o, &err), 0);
        assert_true(json_object_object_get_ex(o, "status", &v));
        assert_true(json_object_object_get_ex(v, "phase", &v));
        assert_string_equal(json_object_get_string(v), "Running");
        assert_true(json_object_object_get_ex(o, "spec", &v));
        assert_true(json_object_object_get_ex(v, "template", &v));
        assert_string_equal(json_object_get_string(v), "default");
        json_object_put(o);
        json_object_put(upd);

        /* merge patch of status, then a JSON patch with a failing test op */
        json_object *mp = parse("{\"status\":{\"phase\":\"Paused\"}}");
        assert_int_equal(
                k8s_patch(fx.c, &sandboxes, NULL, "box1", "status", K8S_PATCH_MERGE, mp, &o, &err),
                0);
        json_object_put(mp);
        assert_true(json_object_object_get_ex(o, "status", &v));
        assert_true(json_object_object_get_ex(v, "nodeName", &v));
        assert_string_equal(json_object_get_string(v), "n1");
        json_object_put(o);
        json_object *jp = parse("[{\"op\":\"test\",\"path\":\"/metadata/labels/tier\","
                                "\"value\":\"gold\"},{\"op\":\"add\",\"path\":"
                                "\"/metadata/labels/x\",\"value\":\"y\"}]");
        assert_int_equal(
                k8s_patch(fx.c, &sandboxes, NULL, "box1", NULL, K8S_PATCH_JSON, jp, &o, &err), 0);
        json_object_put(jp);
        assert_true(json_object_object_get_ex(o, "metadata", &v));
        assert_true(json_object_object_get_ex(v, "labels", &v));
        assert_true(json_object_object_get_ex(v, "x", NULL));
        json_object_put(o);
        jp = parse("[{\"op\":\"test\",\"path\":\"/metadata/labels/tier\",\"value\":\"silver\"}]");
        assert_int_equal(
                k8s_patch(fx.c, &sandboxes, NULL, "box1", NULL, K8S_PATCH_JSON, jp, NULL, &err),
                -EINVAL);
        assert_int_equal(err.status, 422);
        json_object_put(jp);
        /* strategic merge is for built-ins: a custom resource answers 415 */
        mp = parse("{\"metadata\":{\"labels\":{\"a\":\"b\"}}}");
        assert_int_equal(k8s_patch(fx.c, &sandboxes, NULL, "box1", NULL, K8S_PATCH_STRATEGIC, mp,
                                   NULL, &err),
                         -EOPNOTSUPP);
        json_object_put(mp);

        /* an immutable field (CEL rule) is refused with the rule's message */
        mp = parse("{\"spec\":{\"template\":\"other\"}}");
        assert_int_equal(
                k8s_patch(fx.c, &sandboxes, NULL, "box1", NULL, K8S_PATCH_MERGE, mp, NULL, &err),
                -EINVAL);
        assert_string_equal(err.reason, "Invalid");
        assert_non_null(strstr(err.message, "template is immutable"));
        json_object_put(mp);

        /* delete preconditions */
        K8sPreconditions pre = {.uid = "not-the-uid"};
        assert_int_equal(k8s_delete(fx.c, &sandboxes, NULL, "box1", &pre, NULL, &err), -EBUSY);
        pre = (K8sPreconditions){.uid = uid, .resource_version = rv1};
        assert_int_equal(k8s_delete(fx.c, &sandboxes, NULL, "box1", &pre, NULL, &err), -EBUSY);
        pre = (K8sPreconditions){.uid = uid};
        assert_int_equal(k8s_delete(fx.c, &sandboxes, NULL, "box1", &pre, NULL, &err), 0);
        assert_int_equal(k8s_get(fx.c, &sandboxes, NULL, "box1", &o, &err), -ENOENT);
        assert_int_equal(err.status, 404);
        assert_string_equal(err.reason, "NotFound");
        assert_int_equal(k8s_delete(fx.c, &sandboxes, NULL, "box1", NULL, NULL, &err), -ENOENT);
        free(rv1);
        free(uid);
}

static void test_pagination(void **state)
{
        (void) state;
        make_namespace("t-pages");
        for (int i = 0; i < 7; i++) {
                json_object *s = parse("{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{"
                                       "\"name\":\"s%d\",\"labels\":{\"set\":\"p\"}},"
                                       "\"stringData\":{\"k\":\"v%d\"}}",
                                       i, i);
                assert_int_equal(k8s_create(fx.c, &secrets, "t-pages", s, NULL, NULL), 0);
                json_object_put(s);
        }
        long before = requests("list");
        K8sListOptions lo = {.label_selector = "set=p", .limit = 2};
        json_object *l = NULL, *items = NULL, *meta = NULL, *v = NULL;
        assert_int_equal(k8s_list(fx.c, &secrets, "t-pages", &lo, &l, NULL), 0);
        assert_int_equal(requests("list") - before, 4); /* 2+2+2+1 */
        assert_true(json_object_object_get_ex(l, "items", &items));
        assert_int_equal(json_object_array_length(items), 7);
        for (int i = 0; i < 7; i++) {
                char want[16];
                (void) snprintf(want, sizeof(want), "s%d", i);
                assert_string_equal(k8s_obj_name(json_object_array_get_idx(items, (size_t) i)),
                                    want);
        }
        assert_true(json_object_object_get_ex(l, "metadata", &meta));
        assert_false(json_object_object_get_ex(meta, "continue", NULL));
        assert_true(json_object_object_get_ex(meta, "resourceVersion", &v));
        json_object_put(l);

        /* one page: a continue token and the remaining count */
        assert_int_equal(k8s_list_page(fx.c, &secrets, "t-pages", &lo, &l, NULL), 0);
        assert_true(json_object_object_get_ex(l, "items", &items));
        assert_int_equal(json_object_array_length(items), 2);
        assert_true(json_object_object_get_ex(l, "metadata", &meta));
        assert_true(json_object_object_get_ex(meta, "continue", &v));
        assert_true(json_object_object_get_ex(meta, "remainingItemCount", &v));
        assert_int_equal(json_object_get_int(v), 5);
        json_object_put(l);

        /* a label selector that matches nothing, and a bad one (400) */
        lo.label_selector = "set=nothing";
        assert_int_equal(k8s_list(fx.c, &secrets, "t-pages", &lo, &l, NULL), 0);
        assert_true(json_object_object_get_ex(l, "items", &items));
        assert_int_equal(json_object_array_length(items), 0);
        json_object_put(l);
        lo.label_selector = "set in (";
        assert_int_equal(k8s_list(fx.c, &secrets, "t-pages", &lo, &l, NULL), -EINVAL);
}

static bool events_n(const K8sWatchStats *st, const void *arg)
{
        return st->events >= (unsigned long) (uintptr_t) arg;
}

static void test_informer_events_in_order(void **state)
{
        (void) state;
        Recorder rec;
        rec_init(&rec);
        make_namespace("t-order");
        free(lease_write("t-order", "pre", "h"));
        K8sInformer *inf = start_informer(&leases, "t-order", &rec);
        assert_true(rec_wait(&rec, "A:pre;"));

        free(lease_write("t-order", "l0", "h"));
        free(lease_write("t-order", "l1", "h"));
        free(lease_write("t-order", "l2", "h"));
        free(lease_write("t-order", "l1", "h2"));
        lease_delete("t-order", "l2");
        free(lease_write("t-order", "l0", "h3"));
        lease_delete("t-order", "pre");
        assert_true(rec_wait(&rec, "D:pre;"));
        assert_string_equal(rec.log, "A:pre;A:l0;A:l1;A:l2;U:l1;D:l2;U:l0;D:pre;");

        /* the cache: deep copies of what is there */
        json_object *o = NULL, *v = NULL;
        assert_int_equal(k8s_informer_get(inf, "t-order/l0", &o), 0);
        assert_true(json_object_object_get_ex(o, "spec", &v));
        assert_true(json_object_object_get_ex(v, "holderIdentity", &v));
        assert_string_equal(json_object_get_string(v), "h3");
        json_object_put(o);
        assert_int_equal(k8s_informer_get(inf, "t-order/l2", &o), -ENOENT);
        char **keys = NULL;
        assert_int_equal(k8s_informer_keys(inf, &keys), 0);
        assert_string_equal(keys[0], "t-order/l0");
        assert_string_equal(keys[1], "t-order/l1");
        assert_null(keys[2]);
        strv_free(keys);

        /* counted once the handler returned: wait for the last one */
        K8sWatchStats st;
        assert_true(wait_stats(inf, events_n, (void *) (uintptr_t) 7, &st));
        assert_int_equal(st.lists, 1);
        assert_int_equal(st.events, 7);
        stop_informer(inf);
        rec_done(&rec);
}

static bool rv_reached(const K8sWatchStats *st, const void *arg)
{
        return st->bookmarks > 0 &&
               strtoull(st->resource_version, NULL, 10) >= strtoull((const char *) arg, NULL, 10);
}

static void test_bookmark_advances_resource_version(void **state)
{
        (void) state;
        Recorder rec;
        rec_init(&rec);
        make_namespace("t-bookmark");
        K8sInformer *inf = start_informer(&leases, "t-bookmark", &rec);
        K8sWatchStats st;
        k8s_informer_get_stats(inf, &st);
        unsigned long listed_at = strtoul(st.resource_version, NULL, 10);

        /* a write elsewhere moves the global resourceVersion; only a bookmark
         * can bring it to this watch */
        char *rv = lease_write("default", "elsewhere", "h");
        assert_true(strtoul(rv, NULL, 10) > listed_at);
        assert_true(wait_stats(inf, rv_reached, rv, &st));
        assert_int_equal(st.events, 0);
        assert_int_equal(st.lists, 1);
        assert_int_equal(rec.n, 0);
        free(rv);
        stop_informer(inf);
        rec_done(&rec);
}

/* Holds the informer at a gate object, cuts its watch with mode, writes while
 * it cannot read, optionally compacts, then lets it go: the writes must all
 * arrive, in order when replayed from history. */
static void cut_and_write(const char *ns, const char *mode, bool compact, Recorder *rec,
                          K8sInformer *inf)
{
        char path[128];
        (void) snprintf(rec->gate, sizeof(rec->gate), "gate");
        free(lease_write(ns, "gate", "h"));
        rec_wait_gate(rec);
        (void) snprintf(path, sizeof(path), "/_admin/drop-watches?mode=%s", mode);
        admin(path);
        free(lease_write(ns, "n1", "h"));
        free(lease_write(ns, "n2", "h"));
        free(lease_write(ns, "old", "h2"));
        lease_delete(ns, "doomed");
        free(lease_write(ns, "n1", "h2"));
        if (compact)
                admin("/_admin/compact");
        rec_open_gate(rec);
        (void) inf;
}

static bool reconnected(const K8sWatchStats *st, const void *arg)
{
        (void) arg;
        return st->reconnects > 0;
}

static void test_reconnect_after_dropped_watch(void **state)
{
        (void) state;
        static const char *const modes[] = {"reset", "close"};
        for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
                char ns[32], got[1024];
                Recorder rec;
                rec_init(&rec);
                (void) snprintf(ns, sizeof(ns), "t-drop-%s", modes[i]);
                make_namespace(ns);
                free(lease_write(ns, "old", "h"));
                free(lease_write(ns, "doomed", "h"));
                K8sInformer *inf = start_informer(&leases, ns, &rec);
                cut_and_write(ns, modes[i], false, &rec, inf);
                assert_true(rec_wait(&rec, "U:n1;"));
                rec_after(&rec, "A:gate;", got, sizeof(got));
                /* replayed from the kept resourceVersion: every event, in order */
                assert_string_equal(got, "A:n1;A:n2;U:old;D:doomed;U:n1;");
                K8sWatchStats st;
                assert_true(wait_stats(inf, reconnected, NULL, &st));
                assert_int_equal(st.lists, 1);
                assert_int_equal(st.gone, 0);
                stop_informer(inf);
                rec_done(&rec);
        }
}

static bool relisted(const K8sWatchStats *st, const void *arg)
{
        return st->lists >= (unsigned long) (uintptr_t) arg;
}

static void assert_cache_matches_server(K8sInformer *inf, const char *ns)
{
        json_object *l = NULL, *items = NULL;
        char **keys = NULL;
        assert_int_equal(k8s_list(fx.c, &leases, ns, NULL, &l, NULL), 0);
        assert_true(json_object_object_get_ex(l, "items", &items));
        assert_int_equal(k8s_informer_keys(inf, &keys), 0);
        size_t n = 0;
        while (keys[n])
                n++;
        assert_int_equal(n, json_object_array_length(items));
        for (size_t i = 0; i < n; i++) {
                json_object *mine = NULL;
                json_object *theirs = json_object_array_get_idx(items, i);
                char *key = NULL;
                assert_int_equal(k8s_obj_key(theirs, &key), 0);
                assert_int_equal(k8s_informer_get(inf, key, &mine), 0);
                assert_string_equal(k8s_obj_resource_version(mine),
                                    k8s_obj_resource_version(theirs));
                json_object_put(mine);
                free(key);
        }
        strv_free(keys);
        json_object_put(l);
}

static void test_relist_after_compaction(void **state)
{
        (void) state;
        char got[1024];
        Recorder rec;
        rec_init(&rec);
        make_namespace("t-compact");
        free(lease_write("t-compact", "old", "h"));
        free(lease_write("t-compact", "doomed", "h"));
        K8sInformer *inf = start_informer(&leases, "t-compact", &rec);
        cut_and_write("t-compact", "reset", true, &rec, inf);
        K8sWatchStats st;
        assert_true(wait_stats(inf, relisted, (void *) (uintptr_t) 2, &st));
        assert_true(rec_wait(&rec, "D:doomed;"));
        rec_after(&rec, "A:gate;", got, sizeof(got));
        /* the relist's difference: nothing lost, n1 seen once in its final state */
        assert_string_equal(got, "A:n1;A:n2;U:old;D:doomed;");
        assert_true(st.gone >= 1);
        assert_cache_matches_server(inf, "t-compact");

        /* and it keeps watching from the new list */
        free(lease_write("t-compact", "after", "h"));
        assert_true(rec_wait(&rec, "A:after;"));
        stop_informer(inf);
        rec_done(&rec);
}

static void test_relist_on_410_event_and_status(void **state)
{
        (void) state;
        static const char *const how[] = {
                "/_admin/fail-next?verb=watch&code=410&count=1",
                "/_admin/fail-next?verb=watch&code=410&count=1&as=status"};
        for (size_t i = 0; i < ARRAY_SIZE(how); i++) {
                char ns[32], name[16];
                Recorder rec;
                rec_init(&rec);
                (void) snprintf(ns, sizeof(ns), "t-gone-%zu", i);
                make_namespace(ns);
                K8sInformer *inf = start_informer(&leases, ns, &rec);
                admin(how[i]);
                admin("/_admin/drop-watches?mode=close");
                K8sWatchStats st;
                assert_true(wait_stats(inf, relisted, (void *) (uintptr_t) 2, &st));
                assert_true(st.gone >= 1);
                (void) snprintf(name, sizeof(name), "x%zu", i);
                free(lease_write(ns, name, "h"));
                char want[32];
                (void) snprintf(want, sizeof(want), "A:%s;", name);
                assert_true(rec_wait(&rec, want));
                stop_informer(inf);
                rec_done(&rec);
        }
}

static void test_backoff_through_500_and_429(void **state)
{
        (void) state;
        Recorder rec;
        rec_init(&rec);
        make_namespace("t-backoff");
        free(lease_write("t-backoff", "a", "h"));

        /* three failed lists before the first good one */
        long before = requests("list");
        admin("/_admin/fail-next?verb=list&code=500&count=3");
        K8sInformer *inf = start_informer(&leases, "t-backoff", &rec);
        K8sWatchStats st;
        k8s_informer_get_stats(inf, &st);
        assert_int_equal(st.failures, 3);
        assert_int_equal(st.last_error, -EIO); /* 5xx: -EIO, retried like -EAGAIN */
        assert_int_equal(st.lists, 1);
        assert_true(requests("list") - before >= 4);
        assert_true(rec_wait(&rec, "A:a;"));

        /* two watches refused with 429 Retry-After: 1, after a closed stream */
        admin("/_admin/fail-next?verb=watch&code=429&count=2");
        admin("/_admin/drop-watches?mode=close");
        assert_true(wait_stats(inf, failed_n, (void *) (uintptr_t) 5, &st));
        assert_int_equal(st.last_error, -EAGAIN);
        /* Retry-After is the floor of the delay */
        assert_true(st.last_backoff_ms >= 1000);
        free(lease_write("t-backoff", "b", "h"));
        assert_true(rec_wait(&rec, "A:b;"));
        k8s_informer_get_stats(inf, &st);
        assert_int_equal(st.lists, 1); /* a 429 is not a reason to relist */
        stop_informer(inf);
        rec_done(&rec);
}

static void test_informer_feeds_workqueue(void **state)
{
        (void) state;
        /* the intended wiring: handlers add keys, a worker gets them */
        K8sWorkQueue *q = NULL;
        assert_int_equal(k8s_workqueue_new(NULL, &q), 0);
        make_namespace("t-queue");
        Recorder rec;
        rec_init(&rec);
        K8sInformer *inf = start_informer(&leases, "t-queue", &rec);
        free(lease_write("t-queue", "w", "h"));
        assert_true(rec_wait(&rec, "A:w;"));
        char **keys = NULL;
        assert_int_equal(k8s_informer_keys(inf, &keys), 0);
        for (char **k = keys; *k; k++)
                assert_int_equal(k8s_workqueue_add(q, *k), 0);
        strv_free(keys);
        char *key = NULL;
        assert_int_equal(k8s_workqueue_get(q, 1000, &key), 0);
        assert_string_equal(key, "t-queue/w");
        k8s_workqueue_done(q, key);
        free(key);
        stop_informer(inf);
        k8s_workqueue_free(q);
        rec_done(&rec);
}

typedef struct {
        K8sInformer *inf;
        atomic_bool stop;
        atomic_ulong reads;
} Reader;

static void *reader(void *arg)
{
        Reader *r = arg;
        while (!atomic_load(&r->stop)) {
                char **keys = NULL;
                if (k8s_informer_keys(r->inf, &keys) < 0)
                        continue;
                for (char **k = keys; *k; k++) {
                        json_object *o = NULL;
                        if (k8s_informer_get(r->inf, *k, &o) == 0) {
                                /* ours alone: modify and serialize freely */
                                (void) json_object_object_add(o, "touched",
                                                              json_object_new_boolean(1));
                                (void) json_object_to_json_string(o);
                                json_object_put(o);
                                atomic_fetch_add(&r->reads, 1);
                        }
                }
                strv_free(keys);
        }
        return NULL;
}

/* Readers on two threads copy from the cache while the informer thread writes
 * it (ASan would see a use after free or a double free), and a label selector
 * keeps the other objects out. */
static void test_informer_concurrent_readers_and_selector(void **state)
{
        (void) state;
        Recorder rec;
        rec_init(&rec);
        make_namespace("t-readers");
        K8sWatchOptions o = {.resource = leases,
                             .namespace = "t-readers",
                             .label_selector = "app=mine",
                             .timeout_s = 60};
        K8sInformer *inf = NULL;
        assert_int_equal(k8s_informer_new(fx.c, &o, &handlers, &rec, &inf), 0);
        running[0] = inf;
        assert_int_equal(k8s_informer_start(inf), 0);
        assert_int_equal(k8s_informer_wait_synced(inf, WAIT_MS), 0);

        Reader rd = {.inf = inf};
        atomic_init(&rd.stop, false);
        atomic_init(&rd.reads, 0);
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_create(&t[i], NULL, reader, &rd), 0);
        /* no assertion while the readers run: join them first */
        int failed = 0;
        for (int i = 0; i < 20; i++) {
                json_object *l = parse("{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":"
                                       "\"Lease\",\"metadata\":{\"name\":\"r%d\",\"labels\":{"
                                       "\"app\":\"%s\"}},\"spec\":{\"holderIdentity\":\"h\"}}",
                                       i, i % 2 ? "other" : "mine");
                failed |= k8s_create(fx.c, &leases, "t-readers", l, NULL, NULL) < 0;
                json_object_put(l);
                if (i == 4)
                        failed |=
                                k8s_delete(fx.c, &leases, "t-readers", "r0", NULL, NULL, NULL) < 0;
        }
        bool seen = rec_wait(&rec, "A:r18;");
        atomic_store(&rd.stop, true);
        for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_false(failed);
        assert_true(seen);
        assert_true(atomic_load(&rd.reads) > 0);
        /* only app=mine, r0 created then deleted */
        assert_string_equal(rec.log, "A:r0;A:r2;A:r4;D:r0;A:r6;A:r8;A:r10;A:r12;A:r14;A:r16;"
                                     "A:r18;");
        assert_int_equal(k8s_informer_size(inf), 9);
        stop_informer(inf);
        rec_done(&rec);
}

static void test_post_event(void **state)
{
        (void) state;
        K8sError err;
        json_object *lease = NULL, *ev = NULL, *l = NULL, *items = NULL, *v = NULL;
        free(lease_write("default", "evented", "h"));
        assert_int_equal(k8s_get(fx.c, &leases, "default", "evented", &lease, NULL), 0);
        K8sEventInfo info = {
                .type = "Warning",
                .reason = "NoAgentWithRoom",
                .action = "Schedule",
                .note = "no agent has 2 cpus free",
                .reporting_controller = "sandpit.dev/operator",
                .reporting_instance = "op-0",
        };
        int r = k8s_event_post(fx.c, lease, &info, &ev, &err);
        if (r < 0)
                fail_msg("event: %d %s", r, err.message);
        assert_non_null(strstr(k8s_obj_name(ev), "evented."));
        json_object_put(ev);

        /* what kubectl describe reads: core/v1 events by involvedObject */
        K8sListOptions lo = {.field_selector = "involvedObject.name=evented"};
        assert_int_equal(k8s_list(fx.c, &core_events, "default", &lo, &l, NULL), 0);
        assert_true(json_object_object_get_ex(l, "items", &items));
        assert_int_equal(json_object_array_length(items), 1);
        json_object *e = json_object_array_get_idx(items, 0);
        assert_true(json_object_object_get_ex(e, "message", &v));
        assert_string_equal(json_object_get_string(v), "no agent has 2 cpus free");
        assert_true(json_object_object_get_ex(e, "involvedObject", &v));
        assert_true(json_object_object_get_ex(v, "uid", &v));
        assert_string_equal(json_object_get_string(v), k8s_obj_uid(lease));
        json_object_put(l);
        json_object_put(lease);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_fixture_kubeconfigs, stop_informers),
                cmocka_unit_test_teardown(test_auth_and_tls_refusals, stop_informers),
                cmocka_unit_test_teardown(test_connection_refused_backs_off, stop_informers),
                cmocka_unit_test_teardown(test_crud_custom_resource, stop_informers),
                cmocka_unit_test_teardown(test_pagination, stop_informers),
                cmocka_unit_test_teardown(test_informer_events_in_order, stop_informers),
                cmocka_unit_test_teardown(test_bookmark_advances_resource_version, stop_informers),
                cmocka_unit_test_teardown(test_reconnect_after_dropped_watch, stop_informers),
                cmocka_unit_test_teardown(test_relist_after_compaction, stop_informers),
                cmocka_unit_test_teardown(test_relist_on_410_event_and_status, stop_informers),
                cmocka_unit_test_teardown(test_backoff_through_500_and_429, stop_informers),
                cmocka_unit_test_teardown(test_informer_feeds_workqueue, stop_informers),
                cmocka_unit_test_teardown(test_informer_concurrent_readers_and_selector,
                                          stop_informers),
                cmocka_unit_test_teardown(test_post_event, stop_informers),
        };
        return cmocka_run_group_tests(tests, start_fixture, stop_fixture);
}
