/* Cluster mode's command-line options (sandpit-agent --kubeconfig F |
 * --in-cluster --node-name N ...): checking them, loading the Kubernetes
 * configuration, and starting the registration (cluster.h). */
#pragma once

#include <stdbool.h>

#include "cluster.h"
#include "sandpit/k8s-config.h"

typedef struct {
        const char *kubeconfig; /* --kubeconfig */
        const char *context;    /* --context */
        bool in_cluster;        /* --in-cluster */
        const char *node_name;
        const char *namespace; /* NULL: sandpit-system */
        const char *advertise; /* NULL: built from --listen */
        bool tls;              /* --listen serves TLS: the built URL is https:// */
        const char *capacity_cpu;
        const char *capacity_memory;
        const char *lease_duration;
        bool any_cluster_flag; /* some option above other than the mode was given */
        /* filled by cluster_args_check() */
        K8sConfig *config;
} ClusterArgs;

static inline bool cluster_args_enabled(const ClusterArgs *a)
{
        return a->kubeconfig || a->in_cluster;
}

/* Checks the options against the mode and loads the configuration. On
 * failure err gets one line for stderr (no "sandpit-agent: " prefix). */
int cluster_args_check(ClusterArgs *a, bool standalone, const char *listen_addr,
                       const char *token_file, char *err, size_t errlen);
/* Starts the heartbeat; tcp_port is the port actually bound for --listen. */
int cluster_args_start(ClusterArgs *a, const char *listen_addr, unsigned tcp_port,
                       const char *version, Cluster **ret);
void cluster_args_done(ClusterArgs *a);
