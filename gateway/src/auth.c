/* The gateway's authentication and authorisation of the control plane
 * (auth.h, docs/auth.md). Never logs a key or a token: the caches are keyed
 * by their SHA-256, and error messages name the user, never the credential. */
#include "auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "sandpit/apikey.h"
#include "sandpit/json.h"
#include "sandpit/k8s-informer.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

/* Bearer tokens longer than this are refused unread (a ServiceAccount token is
 * about 1 KiB). */
#define TOKEN_MAX 16384u

typedef struct {
        char hash[APIKEY_HASH_HEX + 1];
        uint64_t expires_us;
        bool authenticated;
        char *user;                       /* TokenReview status.user as JSON text */
        char username[256];               /* for messages */
        char sa_ns[GW_NAMESPACE_MAX + 1]; /* a ServiceAccount's namespace, or "" */
} TokenEntry;

typedef struct {
        char hash[APIKEY_HASH_HEX + 1];
        char ns[GW_NAMESPACE_MAX + 1];
        char verb[8];
        uint64_t expires_us;
        bool allowed;
} AccessEntry;

struct GwAuth {
        GwAuthMode mode;
        char *key_file;
        K8sClient *k8s;
        uint64_t cache_us;
        K8sInformer *informer;                           /* keys from a Secret */
        char *secret_ns, *secret_name, *secret_selector; /* the watch's, outliving it */
        pthread_mutex_t lock;                            /* guards everything below */
        ApiKeySet keys;
        bool keys_ready; /* the Secret was read (always true with a file) */
        struct stat st;  /* of key_file when last read */
        bool have_st;
        TokenEntry *tokens;
        size_t n_tokens;
        AccessEntry *access;
        size_t n_access;
        GwAuthStats stats;
};

int gw_auth_parse_mode(const char *s, GwAuthMode *ret)
{
        if (streq(s, "keys"))
                *ret = GW_AUTH_KEYS;
        else if (streq(s, "none"))
                *ret = GW_AUTH_NONE;
        else
                return -EINVAL;
        return 0;
}

const char *gw_auth_verb(const char *method, const char *path)
{
        const char *p = strncmp(path, "/v2/", 4) == 0 ? path + 3 : path;
        if (streq(p, "/sandboxes"))
                return streq(method, "POST") ? "create" : "list";
        if (streq(method, "DELETE"))
                return "delete";
        if (streq(method, "POST"))
                return "update"; /* timeout, pause, connect, resume */
        return "get";            /* a sandbox, its metrics */
}

const char *gw_auth_mcp_verb(const char *tool, const char *sandbox_id)
{
        static const struct {
                const char *tool, *verb;
        } verbs[] = {
                {"kill_sandbox", "delete"},  {"set_timeout", "update"},
                {"pause_sandbox", "update"}, {"resume_sandbox", "update"},
                {"run_code", "update"},      {"run_command", "update"},
                {"write_file", "update"},
        };
        if (streq_ptr(tool, "/mcp"))
                return "get"; /* the session itself: any use of sandboxes there */
        if (streq_ptr(tool, "list_sandboxes"))
                return "list";
        if (!sandbox_id || !*sandbox_id)
                return "create"; /* create_sandbox, or the session's sandbox */
        for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
                if (streq_ptr(tool, verbs[i].tool))
                        return verbs[i].verb;
        return "get"; /* read_file, list_files, download_files, get_metrics */
}

/* ---- API keys */

static bool same_file(const struct stat *a, const struct stat *b)
{
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
               a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
               a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Reads the key file again when it changed; a file that cannot be read or
 * parsed leaves no key valid (a broken edit must not keep a revoked key
 * alive). Called with the lock held. */
static void refresh_file(GwAuth *a)
{
        struct stat st;
        if (stat(a->key_file, &st) < 0) {
                if (a->have_st || a->keys.n) {
                        apikey_set_done(&a->keys);
                        a->have_st = false;
                        a->stats.key_reloads++;
                }
                return;
        }
        if (a->have_st && same_file(&st, &a->st))
                return;
        ApiKeySet s = {0};
        int r = apikey_file_load(a->key_file, &s);
        if (r < 0 && r != -ENOENT)
                log_warning_errno(r,
                                  "gateway: cannot read the API keys in %s: no key is valid "
                                  "until it is fixed",
                                  a->key_file);
        apikey_set_done(&a->keys);
        a->keys = s;
        a->st = st;
        a->have_st = true;
        a->stats.key_reloads++;
}

static void secret_apply(GwAuth *a, json_object *secret)
{
        ApiKeySet s = {0};
        size_t bad = 0;
        int r = secret ? apikey_set_from_secret(secret, &s, &bad) : 0;
        if (r < 0)
                log_warning_errno(r, "gateway: cannot read the API keys of Secret %s/%s",
                                  a->secret_ns, a->secret_name);
        else if (bad)
                log_warning("gateway: %zu entries of Secret %s/%s are not API keys; skipped", bad,
                            a->secret_ns, a->secret_name);
        pthread_mutex_lock(&a->lock);
        apikey_set_done(&a->keys);
        a->keys = s;
        a->keys_ready = true;
        a->stats.key_reloads++;
        pthread_mutex_unlock(&a->lock);
}

static void on_secret_add(const char *key, json_object *obj, void *userdata)
{
        (void) key;
        secret_apply(userdata, obj);
}

static void on_secret_update(const char *key, json_object *old_obj, json_object *new_obj,
                             void *userdata)
{
        (void) key;
        (void) old_obj;
        secret_apply(userdata, new_obj);
}

static void on_secret_delete(const char *key, json_object *obj, void *userdata)
{
        (void) key;
        (void) obj;
        secret_apply(userdata, NULL);
}

static int check_key(GwAuth *a, const GwAuthRequest *r, char *err, size_t errlen)
{
        if (!r->api_key || !*r->api_key) {
                snprintf(err, errlen,
                         "missing API key (X-API-KEY) or Kubernetes token "
                         "(Authorization: Bearer)");
                return -ENOKEY;
        }
        char ns[GW_NAMESPACE_MAX + 1] = "";
        bool none = false, ready = true;
        /* A Secret that does not exist yet is no keys, once listed; asked
         * outside our lock, which the informer's handlers take. */
        bool synced = a->informer && k8s_informer_has_synced(a->informer);
        pthread_mutex_lock(&a->lock);
        if (a->key_file && !a->informer)
                refresh_file(a);
        ready = a->keys_ready || synced;
        none = a->keys.n == 0;
        const ApiKey *k = apikey_set_lookup(&a->keys, r->api_key);
        if (k)
                memcpy(ns, k->ns, sizeof(ns));
        pthread_mutex_unlock(&a->lock);
        if (!ready) {
                snprintf(err, errlen, "the gateway has not read its API keys yet; try again");
                return -EAGAIN;
        }
        if (!ns[0]) {
                snprintf(err, errlen, "%s",
                         none ? "invalid API key: no API keys exist yet (make one with `sandpit "
                                "keys create --namespace NS`)"
                              : "invalid API key");
                return -ENOKEY;
        }
        if (r->namespace_hint && !streq(r->namespace_hint, ns)) {
                snprintf(err, errlen, "this API key is for namespace %s, not %.63s", ns,
                         r->namespace_hint);
                return -EACCES;
        }
        memcpy(r->ret_namespace, ns, sizeof(ns));
        return 0;
}

/* ---- Kubernetes tokens */

static void token_entry_done(TokenEntry *t)
{
        free(t->user);
        t->user = NULL;
}

/* Room for one more entry in a cache of n: drops the expired, then all.
 * Called with the lock held. */
static void tokens_make_room(GwAuth *a, uint64_t now)
{
        if (a->n_tokens < GW_AUTH_CACHE_MAX)
                return;
        size_t kept = 0;
        for (size_t i = 0; i < a->n_tokens; i++) {
                if (a->tokens[i].expires_us > now)
                        a->tokens[kept++] = a->tokens[i];
                else
                        token_entry_done(&a->tokens[i]);
        }
        a->n_tokens = kept;
        if (kept >= GW_AUTH_CACHE_MAX) {
                for (size_t i = 0; i < a->n_tokens; i++)
                        token_entry_done(&a->tokens[i]);
                a->n_tokens = 0;
        }
}

static void access_make_room(GwAuth *a, uint64_t now)
{
        if (a->n_access < GW_AUTH_CACHE_MAX)
                return;
        size_t kept = 0;
        for (size_t i = 0; i < a->n_access; i++)
                if (a->access[i].expires_us > now)
                        a->access[kept++] = a->access[i];
        a->n_access = kept >= GW_AUTH_CACHE_MAX ? 0 : kept;
}

/* "system:serviceaccount:NS:NAME" -> NS. */
static void sa_namespace(const char *username, char ns[GW_NAMESPACE_MAX + 1])
{
        static const char prefix[] = "system:serviceaccount:";
        ns[0] = 0;
        if (strncmp(username, prefix, sizeof(prefix) - 1) != 0)
                return;
        const char *s = username + sizeof(prefix) - 1, *colon = strchr(s, ':');
        if (!colon || (size_t) (colon - s) > GW_NAMESPACE_MAX)
                return;
        memcpy(ns, s, (size_t) (colon - s));
        ns[colon - s] = 0;
        if (!apikey_namespace_valid(ns))
                ns[0] = 0;
}

static int token_review(GwAuth *a, const char *token, TokenEntry *ret, char *err, size_t errlen)
{
        cleanup_json json_object *body = json_object_new_object();
        json_object *spec = json_object_new_object();
        if (!body || !spec || json_object_object_add(body, "spec", spec) < 0) {
                json_object_put(spec);
                return -ENOMEM;
        }
        json_object_object_add(body, "apiVersion",
                               json_object_new_string("authentication.k8s.io/v1"));
        json_object_object_add(body, "kind", json_object_new_string("TokenReview"));
        json_object_object_add(spec, "token", json_object_new_string(token));
        cleanup_json json_object *resp = NULL;
        K8sError e = {0};
        int r = k8s_request(a->k8s, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", NULL,
                            body, &resp, &e);
        if (r < 0) {
                snprintf(err, errlen, "cannot check the Kubernetes token (TokenReview): %s%s%s",
                         strerror(-r), e.message[0] ? ": " : "", e.message);
                return -EIO;
        }
        json_object *status = json_obj(resp, "status"), *user = json_obj(status, "user");
        ret->authenticated = json_boolean(status, "authenticated", false) && user;
        if (ret->authenticated) {
                const char *name = json_str(user, "username");
                snprintf(ret->username, sizeof(ret->username), "%s", name ? name : "");
                sa_namespace(ret->username, ret->sa_ns);
                ret->user = strdup(json_object_to_json_string_ext(user, JSON_C_TO_STRING_PLAIN));
                if (!ret->user)
                        return -ENOMEM;
        }
        return 0;
}

static int access_review(GwAuth *a, const TokenEntry *t, const char *ns, const char *verb,
                         bool *ret_allowed, char *err, size_t errlen)
{
        cleanup_json json_object *user = NULL;
        if (!t->user || json_parse_strict(t->user, strlen(t->user), 8, &user, NULL) < 0)
                return -EIO;
        cleanup_json json_object *body = json_object_new_object();
        json_object *spec = json_object_new_object(), *attrs = json_object_new_object();
        if (!body || !spec || !attrs) {
                json_object_put(spec);
                json_object_put(attrs);
                return -ENOMEM;
        }
        json_object_object_add(body, "apiVersion",
                               json_object_new_string("authorization.k8s.io/v1"));
        json_object_object_add(body, "kind", json_object_new_string("SubjectAccessReview"));
        json_object_object_add(body, "spec", spec);
        json_object_object_add(attrs, "namespace", json_object_new_string(ns));
        json_object_object_add(attrs, "verb", json_object_new_string(verb));
        json_object_object_add(attrs, "group", json_object_new_string("sandpit.dev"));
        json_object_object_add(attrs, "resource", json_object_new_string("sandboxes"));
        json_object_object_add(spec, "resourceAttributes", attrs);
        static const char *const copied[][2] = {
                {"username", "user"}, {"uid", "uid"}, {"groups", "groups"}, {"extra", "extra"}};
        for (size_t i = 0; i < ARRAY_SIZE(copied); i++) {
                json_object *v = json_field(user, copied[i][0]);
                if (v)
                        json_object_object_add(spec, copied[i][1], json_object_get(v));
        }
        cleanup_json json_object *resp = NULL;
        K8sError e = {0};
        int r = k8s_request(a->k8s, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                            NULL, body, &resp, &e);
        if (r < 0) {
                snprintf(err, errlen, "cannot authorise (SubjectAccessReview): %s%s%s",
                         strerror(-r), e.message[0] ? ": " : "", e.message);
                return -EIO;
        }
        json_object *status = json_obj(resp, "status");
        *ret_allowed =
                json_boolean(status, "allowed", false) && !json_boolean(status, "denied", false);
        return 0;
}

/* The TokenEntry of hash (a copy with its own user string), from the cache
 * or a TokenReview. */
static int lookup_token(GwAuth *a, const char *token, const char *hash, TokenEntry *ret, char *err,
                        size_t errlen)
{
        uint64_t now = now_monotonic_us();
        pthread_mutex_lock(&a->lock);
        for (size_t i = 0; i < a->n_tokens; i++) {
                TokenEntry *t = &a->tokens[i];
                if (streq(t->hash, hash) && t->expires_us > now) {
                        *ret = *t;
                        ret->user = t->user ? strdup(t->user) : NULL;
                        pthread_mutex_unlock(&a->lock);
                        return t->user && !ret->user ? -ENOMEM : 0;
                }
        }
        a->stats.token_reviews++;
        pthread_mutex_unlock(&a->lock);

        TokenEntry t = {0};
        snprintf(t.hash, sizeof(t.hash), "%s", hash);
        int r = token_review(a, token, &t, err, errlen);
        if (r < 0) {
                token_entry_done(&t);
                return r;
        }
        t.expires_us = now_monotonic_us() + a->cache_us;
        *ret = t;
        ret->user = t.user ? strdup(t.user) : NULL;
        pthread_mutex_lock(&a->lock);
        tokens_make_room(a, now);
        TokenEntry *n = realloc(a->tokens, (a->n_tokens + 1) * sizeof(*n));
        if (n) {
                a->tokens = n;
                a->tokens[a->n_tokens++] = t;
        } else {
                token_entry_done(&t);
        }
        pthread_mutex_unlock(&a->lock);
        return 0;
}

static int lookup_access(GwAuth *a, const TokenEntry *t, const char *ns, const char *verb,
                         bool *ret_allowed, char *err, size_t errlen)
{
        uint64_t now = now_monotonic_us();
        pthread_mutex_lock(&a->lock);
        for (size_t i = 0; i < a->n_access; i++) {
                AccessEntry *e = &a->access[i];
                if (streq(e->hash, t->hash) && streq(e->ns, ns) && streq(e->verb, verb) &&
                    e->expires_us > now) {
                        *ret_allowed = e->allowed;
                        pthread_mutex_unlock(&a->lock);
                        return 0;
                }
        }
        a->stats.access_reviews++;
        pthread_mutex_unlock(&a->lock);

        int r = access_review(a, t, ns, verb, ret_allowed, err, errlen);
        if (r < 0)
                return r;
        AccessEntry e = {.expires_us = now_monotonic_us() + a->cache_us, .allowed = *ret_allowed};
        snprintf(e.hash, sizeof(e.hash), "%s", t->hash);
        snprintf(e.ns, sizeof(e.ns), "%s", ns);
        snprintf(e.verb, sizeof(e.verb), "%s", verb);
        pthread_mutex_lock(&a->lock);
        access_make_room(a, now);
        AccessEntry *n = realloc(a->access, (a->n_access + 1) * sizeof(*n));
        if (n) {
                a->access = n;
                a->access[a->n_access++] = e;
        }
        pthread_mutex_unlock(&a->lock);
        return 0;
}

static int check_bearer(GwAuth *a, const GwAuthRequest *r, const char *token, char *err,
                        size_t errlen)
{
        if (!a->k8s) {
                snprintf(err, errlen,
                         "this gateway takes no Kubernetes tokens (it runs without "
                         "a cluster): use an API key (X-API-KEY)");
                return -ENOKEY;
        }
        size_t len = strlen(token);
        if (len == 0 || len > TOKEN_MAX || strpbrk(token, " \t")) {
                snprintf(err, errlen, "malformed bearer token");
                return -ENOKEY;
        }
        if (r->namespace_hint && !apikey_namespace_valid(r->namespace_hint)) {
                snprintf(err, errlen, "X-Sandpit-Namespace is not a namespace name");
                return -EINVAL;
        }
        char hash[APIKEY_HASH_HEX + 1];
        int k = apikey_hash(token, hash);
        if (k < 0)
                return k;
        TokenEntry t = {0};
        k = lookup_token(a, token, hash, &t, err, errlen);
        if (k < 0)
                return k;
        if (!t.authenticated) {
                token_entry_done(&t);
                snprintf(err, errlen, "the Kubernetes token was not accepted (TokenReview)");
                return -ENOKEY;
        }
        const char *ns = r->namespace_hint ? r->namespace_hint : t.sa_ns;
        if (!ns[0]) {
                token_entry_done(&t);
                snprintf(err, errlen,
                         "say which namespace with the header X-Sandpit-Namespace "
                         "(only a ServiceAccount's own namespace goes without)");
                return -EACCES;
        }
        const char *verb = r->action == GW_ACTION_MCP ? gw_auth_mcp_verb(r->path, r->sandbox_id)
                                                      : gw_auth_verb(r->method, r->path);
        bool allowed = false;
        k = lookup_access(a, &t, ns, verb, &allowed, err, errlen);
        if (k == 0 && !allowed) {
                snprintf(err, errlen, "%s may not %s sandboxes.sandpit.dev in namespace %s",
                         t.username, verb, ns);
                k = -EACCES;
        }
        token_entry_done(&t);
        if (k < 0)
                return k;
        snprintf(r->ret_namespace, GW_NAMESPACE_MAX + 1, "%s", ns);
        return 0;
}

/* The token of "Bearer TOKEN" (scheme case-insensitive), or NULL. */
static const char *bearer_token(const char *authorization)
{
        if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
                return NULL;
        const char *t = authorization + 7;
        while (*t == ' ')
                t++;
        return t;
}

int gw_auth_authorize(GwServer *gw, const GwAuthRequest *r, char *err, size_t errlen,
                      void *userdata)
{
        GwAuth *a = userdata;
        if ((r->action != GW_ACTION_CONTROL && r->action != GW_ACTION_MCP) ||
            a->mode == GW_AUTH_NONE)
                return gw_authorize_local(gw, r, err, errlen, NULL);
        /* A Kubernetes token decides when one is sent: the E2B SDK wants some
         * E2B_API_KEY even when E2B_ACCESS_TOKEN carries the token. */
        const char *token = bearer_token(r->authorization);
        if (token)
                return check_bearer(a, r, token, err, errlen);
        return check_key(a, r, err, errlen);
}

void gw_auth_get_stats(GwAuth *a, GwAuthStats *ret)
{
        pthread_mutex_lock(&a->lock);
        *ret = a->stats;
        pthread_mutex_unlock(&a->lock);
}

int gw_auth_new(const GwAuthConfig *cfg, long sync_ms, GwAuth **ret)
{
        if (cfg->keys_secret_name && (!cfg->k8s || !cfg->keys_secret_namespace))
                return -EINVAL;
        GwAuth *a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        pthread_mutex_init(&a->lock, NULL);
        a->mode = cfg->mode;
        a->k8s = cfg->k8s;
        a->cache_us = (uint64_t) (cfg->cache_s ? cfg->cache_s : GW_AUTH_CACHE_S) * 1000000u;
        a->keys_ready = true;
        int r = 0;
        if (cfg->key_file && !(a->key_file = strdup(cfg->key_file)))
                r = -ENOMEM;
        if (r == 0 && cfg->keys_secret_name) {
                a->keys_ready = false;
                if (!(a->secret_ns = strdup(cfg->keys_secret_namespace)) ||
                    !(a->secret_name = strdup(cfg->keys_secret_name)) ||
                    asprintf(&a->secret_selector, "metadata.name=%s", cfg->keys_secret_name) < 0) {
                        a->secret_selector = NULL;
                        r = -ENOMEM;
                }
                K8sWatchOptions wo = {.resource = {"", "v1", "secrets", true},
                                      .namespace = a->secret_ns,
                                      .field_selector = a->secret_selector,
                                      .backoff_max_ms = 5000};
                static const K8sInformerHandlers handlers = {on_secret_add, on_secret_update,
                                                             on_secret_delete};
                if (r == 0)
                        r = k8s_informer_new(a->k8s, &wo, &handlers, a, &a->informer);
                if (r == 0)
                        r = k8s_informer_start(a->informer);
                if (r == 0 && sync_ms > 0 && k8s_informer_wait_synced(a->informer, sync_ms) < 0)
                        log_warning("gateway: Secret %s/%s with the API keys not read yet; keys "
                                    "are refused until it is",
                                    a->secret_ns, a->secret_name);
        }
        if (r < 0) {
                gw_auth_free(a);
                return r;
        }
        *ret = a;
        return 0;
}

void gw_auth_free(GwAuth *a)
{
        if (!a)
                return;
        k8s_informer_free(a->informer);
        apikey_set_done(&a->keys);
        for (size_t i = 0; i < a->n_tokens; i++)
                token_entry_done(&a->tokens[i]);
        free(a->tokens);
        free(a->access);
        free(a->key_file);
        free(a->secret_ns);
        free(a->secret_name);
        free(a->secret_selector);
        pthread_mutex_destroy(&a->lock);
        free(a);
}
