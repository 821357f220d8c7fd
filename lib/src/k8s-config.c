#include "sandpit/k8s-config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "sandpit/yaml.h"

#define KUBECONFIG_MAX    ((size_t) 4 * 1024 * 1024)
#define CRED_FILE_MAX     ((size_t) 1024 * 1024)
#define DEFAULT_NAMESPACE "default"

static void secret_free(uint8_t *p, size_t len)
{
        if (p)
                explicit_bzero(p, len);
        free(p);
}

void k8s_config_free(K8sConfig *cfg)
{
        if (!cfg)
                return;
        free(cfg->server);
        free(cfg->context);
        free(cfg->namespace);
        free(cfg->ca);
        free(cfg->cert);
        secret_free(cfg->key, cfg->key_len);
        if (cfg->token)
                secret_free((uint8_t *) cfg->token, strlen(cfg->token));
        free(cfg->token_file);
        free(cfg);
}

__attribute__((format(printf, 4, 5))) static int fail(char *errbuf, size_t errlen, int r,
                                                      const char *fmt, ...)
{
        if (errbuf && errlen > 0) {
                va_list ap;
                va_start(ap, fmt);
                (void) vsnprintf(errbuf, errlen, fmt, ap);
                va_end(ap);
        }
        return r;
}

/* A string member, NULL when absent; -EINVAL via *bad when present but not a string. */
static const char *get_str(json_object *o, const char *key, bool *bad)
{
        json_object *v = json_field(o, key);
        if (v && !json_object_is_type(v, json_type_string))
                *bad = true;
        return json_str(o, key);
}

/* The entry of list (clusters, users, contexts) named name: its `section` object. */
static json_object *find_named(json_object *root, const char *list, const char *name,
                               const char *section)
{
        json_object *arr = NULL;
        if (!json_object_object_get_ex(root, list, &arr) ||
            !json_object_is_type(arr, json_type_array))
                return NULL;
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
                json_object *e = json_object_array_get_idx(arr, i);
                json_object *n = NULL, *s = NULL;
                if (!json_object_is_type(e, json_type_object) ||
                    !json_object_object_get_ex(e, "name", &n) ||
                    !json_object_is_type(n, json_type_string) ||
                    !streq(json_object_get_string(n), name))
                        continue;
                if (json_object_object_get_ex(e, section, &s) &&
                    json_object_is_type(s, json_type_object))
                        return s;
                return NULL;
        }
        return NULL;
}

/* name relative to the kubeconfig's directory, as kubectl resolves it. */
static int resolve_path(const char *base_dir, const char *name, char **ret)
{
        if (name[0] == '/' || !base_dir)
                *ret = strdup(name);
        else if (asprintf(ret, "%s/%s", base_dir, name) < 0)
                *ret = NULL;
        return *ret ? 0 : -ENOMEM;
}

/* Takes `<what>-data` (base64) or `<what>` (a file), not both. */
static int load_blob(json_object *section, const char *file_key, const char *data_key,
                     const char *base_dir, uint8_t **ret, size_t *ret_len, char *errbuf,
                     size_t errlen)
{
        bool bad = false;
        const char *data = get_str(section, data_key, &bad);
        const char *file = get_str(section, file_key, &bad);
        if (bad)
                return fail(errbuf, errlen, -EINVAL, "%s and %s must be strings", file_key,
                            data_key);
        if (data && data[0] != '\0') {
                uint8_t *buf = NULL;
                size_t n = 0;
                if (base64_decode(data, &buf, &n) < 0 || n == 0) {
                        free(buf);
                        return fail(errbuf, errlen, -EINVAL, "%s is not valid base64", data_key);
                }
                *ret = buf;
                *ret_len = n;
                return 0;
        }
        if (file && file[0] != '\0') {
                cleanup_free char *path = NULL;
                char *buf = NULL;
                size_t n = 0;
                int r = resolve_path(base_dir, file, &path);
                if (r < 0)
                        return r;
                r = read_file(path, CRED_FILE_MAX, &buf, &n);
                if (r < 0)
                        return fail(errbuf, errlen, r, "%s %s: %s", file_key, path, strerror(-r));
                if (n == 0) {
                        free(buf);
                        return fail(errbuf, errlen, -EINVAL, "%s %s is empty", file_key, path);
                }
                *ret = (uint8_t *) buf;
                *ret_len = n;
                return 0;
        }
        *ret = NULL;
        *ret_len = 0;
        return 0;
}

static bool has_prefix(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int set_server(K8sConfig *cfg, const char *server, char *errbuf, size_t errlen)
{
        if (!has_prefix(server, "https://") || server[strlen("https://")] == '\0' ||
            strpbrk(server, " \t\r\n"))
                return fail(errbuf, errlen, -EINVAL,
                            "server \"%s\" is not an https:// URL (TLS is always on)", server);
        cfg->server = strdup(server);
        if (!cfg->server)
                return -ENOMEM;
        size_t n = strlen(cfg->server);
        while (n > 0 && cfg->server[n - 1] == '/')
                cfg->server[--n] = '\0';
        return 0;
}

static int load_cluster(K8sConfig *cfg, json_object *cluster, const char *base_dir, char *errbuf,
                        size_t errlen)
{
        bool bad = false;
        json_object *insecure = NULL;
        if (json_object_object_get_ex(cluster, "insecure-skip-tls-verify", &insecure) && insecure &&
            json_object_get_boolean(insecure))
                return fail(errbuf, errlen, -EPERM,
                            "insecure-skip-tls-verify is refused: TLS verification is always on");
        const char *server = get_str(cluster, "server", &bad);
        if (bad || !server)
                return fail(errbuf, errlen, -EINVAL, "cluster has no server");
        int r = set_server(cfg, server, errbuf, errlen);
        if (r < 0)
                return r;
        return load_blob(cluster, "certificate-authority", "certificate-authority-data", base_dir,
                         &cfg->ca, &cfg->ca_len, errbuf, errlen);
}

static int load_user(K8sConfig *cfg, json_object *user, const char *base_dir, char *errbuf,
                     size_t errlen)
{
        static const char *const unsupported[] = {"exec", "auth-provider", "username", "password"};
        for (size_t i = 0; i < ARRAY_SIZE(unsupported); i++)
                if (json_object_object_get_ex(user, unsupported[i], NULL))
                        return fail(errbuf, errlen, -EOPNOTSUPP, "user %s is not supported",
                                    unsupported[i]);

        int r = load_blob(user, "client-certificate", "client-certificate-data", base_dir,
                          &cfg->cert, &cfg->cert_len, errbuf, errlen);
        if (r < 0)
                return r;
        r = load_blob(user, "client-key", "client-key-data", base_dir, &cfg->key, &cfg->key_len,
                      errbuf, errlen);
        if (r < 0)
                return r;
        if (!cfg->cert != !cfg->key)
                return fail(errbuf, errlen, -EINVAL,
                            "a client certificate needs its key and a key its certificate");

        bool bad = false;
        const char *token = get_str(user, "token", &bad);
        const char *token_file = get_str(user, "tokenFile", &bad);
        if (bad)
                return fail(errbuf, errlen, -EINVAL, "token and tokenFile must be strings");
        if (token && token[0] != '\0') {
                if (strpbrk(token, "\r\n"))
                        return fail(errbuf, errlen, -EINVAL, "token holds a line break");
                cfg->token = strdup(token);
                return cfg->token ? 0 : -ENOMEM;
        }
        if (token_file && token_file[0] != '\0') {
                r = resolve_path(base_dir, token_file, &cfg->token_file);
                if (r < 0)
                        return r;
                /* Read once now so a missing or empty file is an error at load. */
                char *t = NULL;
                r = read_token_file(cfg->token_file, 1, &t);
                if (r < 0)
                        return fail(errbuf, errlen, r, "tokenFile %s: %s", cfg->token_file,
                                    r == -EINVAL ? "empty or malformed" : strerror(-r));
                secret_free((uint8_t *) t, strlen(t));
        }
        return 0;
}

static int kubeconfig_path(const char *path, char **ret)
{
        if (path) {
                *ret = strdup(path);
                return *ret ? 0 : -ENOMEM;
        }
        const char *env = getenv("KUBECONFIG");
        if (env && env[0] != '\0') {
                /* Only the first file: kubectl merges all of them, we do not. */
                size_t n = strcspn(env, ":");
                *ret = strndup(env, n);
                return *ret ? 0 : -ENOMEM;
        }
        const char *home = getenv("HOME");
        if (!home || home[0] == '\0')
                return -ENOENT;
        if (asprintf(ret, "%s/.kube/config", home) < 0) {
                *ret = NULL;
                return -ENOMEM;
        }
        return 0;
}

int k8s_config_from_kubeconfig(const char *path, const char *context, K8sConfig **ret, char *errbuf,
                               size_t errlen)
{
        cleanup_free char *file = NULL;
        cleanup_free char *data = NULL;
        cleanup_free char *base_dir = NULL;
        json_object *root = NULL;
        size_t len = 0;

        if (!ret)
                return -EINVAL;
        if (errbuf && errlen > 0)
                errbuf[0] = '\0';
        int r = kubeconfig_path(path, &file);
        if (r < 0)
                return fail(errbuf, errlen, r, "no kubeconfig: neither KUBECONFIG nor HOME is set");
        r = read_file(file, KUBECONFIG_MAX, &data, &len);
        if (r < 0)
                return fail(errbuf, errlen, r, "kubeconfig %s: %s", file, strerror(-r));
        const char *slash = strrchr(file, '/');
        base_dir = slash ? strndup(file, (size_t) (slash - file) + (slash == file)) : NULL;
        if (slash && !base_dir)
                return -ENOMEM;

        r = yaml_to_json(data, len, &root);
        explicit_bzero(data, len);
        if (r < 0 || !json_object_is_type(root, json_type_object)) {
                json_object_put(root);
                return fail(errbuf, errlen, r == -ENOMEM ? r : -EINVAL,
                            "kubeconfig %s is not a YAML mapping", file);
        }

        K8sConfig *cfg = calloc(1, sizeof(*cfg));
        if (!cfg) {
                json_object_put(root);
                return -ENOMEM;
        }

        bool bad = false;
        const char *ctx_name = context ? context : get_str(root, "current-context", &bad);
        json_object *ctx = NULL, *cluster = NULL, *user = NULL;
        const char *cluster_name = NULL, *user_name = NULL, *ns = NULL;
        if (!ctx_name || ctx_name[0] == '\0') {
                r = fail(errbuf, errlen, -ENOENT, "kubeconfig %s has no current-context", file);
                goto out;
        }
        ctx = find_named(root, "contexts", ctx_name, "context");
        if (!ctx) {
                r = fail(errbuf, errlen, -ENOENT, "context \"%s\" not found in %s", ctx_name, file);
                goto out;
        }
        cluster_name = get_str(ctx, "cluster", &bad);
        user_name = get_str(ctx, "user", &bad);
        ns = get_str(ctx, "namespace", &bad);
        if (bad || !cluster_name) {
                r = fail(errbuf, errlen, -EINVAL, "context \"%s\" names no cluster", ctx_name);
                goto out;
        }
        cluster = find_named(root, "clusters", cluster_name, "cluster");
        if (!cluster) {
                r = fail(errbuf, errlen, -ENOENT, "cluster \"%s\" not found in %s", cluster_name,
                         file);
                goto out;
        }
        r = load_cluster(cfg, cluster, base_dir, errbuf, errlen);
        if (r < 0)
                goto out;
        if (user_name && user_name[0] != '\0') {
                user = find_named(root, "users", user_name, "user");
                if (!user) {
                        r = fail(errbuf, errlen, -ENOENT, "user \"%s\" not found in %s", user_name,
                                 file);
                        goto out;
                }
                r = load_user(cfg, user, base_dir, errbuf, errlen);
                if (r < 0)
                        goto out;
        }
        cfg->context = strdup(ctx_name);
        cfg->namespace = strdup(ns && ns[0] != '\0' ? ns : DEFAULT_NAMESPACE);
        if (!cfg->context || !cfg->namespace) {
                r = -ENOMEM;
                goto out;
        }
        *ret = TAKE_PTR(cfg);
        r = 0;
out:
        k8s_config_free(cfg);
        json_object_put(root);
        return r;
}

int k8s_config_in_cluster(const char *dir, K8sConfig **ret, char *errbuf, size_t errlen)
{
        cleanup_free char *ca_path = NULL;
        cleanup_free char *ns_path = NULL;
        cleanup_free char *server = NULL;
        cleanup_free char *ns = NULL;
        size_t ns_len = 0;

        if (!ret)
                return -EINVAL;
        if (errbuf && errlen > 0)
                errbuf[0] = '\0';
        if (!dir)
                dir = K8S_SERVICE_ACCOUNT_DIR;
        const char *host = getenv("KUBERNETES_SERVICE_HOST");
        const char *port = getenv("KUBERNETES_SERVICE_PORT");
        if (!host || !port || host[0] == '\0' || port[0] == '\0')
                return fail(errbuf, errlen, -ENOENT,
                            "not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set");
        bool v6 = strchr(host, ':') != NULL;
        if (asprintf(&server, v6 ? "https://[%s]:%s" : "https://%s:%s", host, port) < 0) {
                server = NULL;
                return -ENOMEM;
        }

        K8sConfig *cfg = calloc(1, sizeof(*cfg));
        if (!cfg)
                return -ENOMEM;
        int r = set_server(cfg, server, errbuf, errlen);
        if (r < 0)
                goto out;
        if (asprintf(&cfg->token_file, "%s/token", dir) < 0 ||
            asprintf(&ca_path, "%s/ca.crt", dir) < 0 ||
            asprintf(&ns_path, "%s/namespace", dir) < 0) {
                cfg->token_file = NULL;
                r = -ENOMEM;
                goto out;
        }
        char *t = NULL;
        r = read_token_file(cfg->token_file, 1, &t);
        if (r < 0) {
                r = fail(errbuf, errlen, r == -EINVAL ? r : -ENOENT, "%s: %s", cfg->token_file,
                         r == -EINVAL ? "empty or malformed" : strerror(-r));
                goto out;
        }
        secret_free((uint8_t *) t, strlen(t));
        r = read_file(ca_path, CRED_FILE_MAX, (char **) &cfg->ca, &cfg->ca_len);
        if (r < 0) {
                r = fail(errbuf, errlen, r, "%s: %s", ca_path, strerror(-r));
                goto out;
        }
        if (read_file(ns_path, 256, &ns, &ns_len) >= 0) {
                while (ns_len > 0 && strchr(" \t\r\n", ns[ns_len - 1]))
                        ns[--ns_len] = '\0';
        }
        cfg->namespace = strdup(ns && ns[0] != '\0' ? ns : DEFAULT_NAMESPACE);
        if (!cfg->namespace) {
                r = -ENOMEM;
                goto out;
        }
        *ret = TAKE_PTR(cfg);
        r = 0;
out:
        k8s_config_free(cfg);
        return r;
}
