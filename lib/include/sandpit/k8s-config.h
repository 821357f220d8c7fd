/* Where and how to reach a Kubernetes API server: from a kubeconfig file or
 * from inside a pod (the service account). TLS verification is always on: a
 * kubeconfig with insecure-skip-tls-verify is refused, and an http:// server
 * too. Files a kubeconfig names (CA, client certificate and key) are read at
 * load time, so a K8sConfig is self-contained; only the token file is read
 * again by the client, because service account tokens rotate. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define K8S_SERVICE_ACCOUNT_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

typedef struct K8sConfig {
        char *server;    /* "https://host:port[/prefix]", no trailing '/' */
        char *context;   /* the kubeconfig context used; NULL in-cluster */
        char *namespace; /* the context's namespace, or "default" */
        /* PEM bytes; NULL/0 when absent (no CA: the system's CA store) */
        uint8_t *ca;
        size_t ca_len;
        uint8_t *cert;
        size_t cert_len;
        uint8_t *key; /* a secret */
        size_t key_len;
        char *token;      /* a secret; NULL when none or when token_file is set */
        char *token_file; /* read again by the client every K8S_TOKEN_FILE_REFRESH_S */
} K8sConfig;

/* Loads context (NULL: the current-context) from a kubeconfig. path NULL means
 * the first file of $KUBECONFIG (a colon-separated list; the others are not
 * merged), else ~/.kube/config. Relative file names inside resolve against the
 * kubeconfig's directory.
 *
 * -ENOENT: no such file, context, cluster or user, or a file the config names
 * is missing; -EINVAL: malformed (YAML, types, bad base64, a certificate
 * without its key, a server that is not https://); -EPERM:
 * insecure-skip-tls-verify; -EOPNOTSUPP: exec or auth-provider plugins, basic
 * auth. errbuf (may be NULL) receives a one-line reason, never a secret. */
int k8s_config_from_kubeconfig(const char *path, const char *context, K8sConfig **ret, char *errbuf,
                               size_t errlen);

/* The pod's service account: dir/token, dir/ca.crt, dir/namespace (dir NULL:
 * K8S_SERVICE_ACCOUNT_DIR) and https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT.
 * -ENOENT when the variables or the files are missing. */
int k8s_config_in_cluster(const char *dir, K8sConfig **ret, char *errbuf, size_t errlen);

void k8s_config_free(K8sConfig *cfg);

static inline void k8s_config_freep(K8sConfig **cfg)
{
        k8s_config_free(*cfg);
}
#define cleanup_k8s_config __attribute__((cleanup(k8s_config_freep)))
