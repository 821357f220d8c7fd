/* Cluster mode's options: checks, defaults, configuration. */
#include "cluster-args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/quantity.h"
#include "sandpit/util.h"

static bool starts_with(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool listen_host_is_wildcard(const char *listen_addr)
{
        const char *colon = strrchr(listen_addr, ':');
        size_t n = colon ? (size_t) (colon - listen_addr) : strlen(listen_addr);
        return n == 0 || (n == 7 && strncmp(listen_addr, "0.0.0.0", 7) == 0);
}

static int parse_lease_duration(const char *s, unsigned *ret)
{
        if (!s) {
                *ret = CLUSTER_DEFAULT_LEASE_DURATION;
                return 0;
        }
        char *end = NULL;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || !*s || *end || v < 1 || v > 3600)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

int cluster_args_check(ClusterArgs *a, bool standalone, const char *listen_addr,
                       const char *token_file, char *err, size_t errlen)
{
        bool cluster = cluster_args_enabled(a);
        if (standalone && cluster)
                return snprintf(err, errlen, "--standalone excludes --kubeconfig and --in-cluster"),
                       -EINVAL;
        if (!standalone && !cluster)
                return snprintf(err, errlen,
                                "choose --standalone, or cluster mode with --kubeconfig FILE or "
                                "--in-cluster"),
                       -EINVAL;
        if (!cluster) {
                if (a->any_cluster_flag || a->context)
                        return snprintf(err, errlen,
                                        "cluster options need --kubeconfig or --in-cluster"),
                               -EINVAL;
                return 0;
        }
        if (a->kubeconfig && a->in_cluster)
                return snprintf(err, errlen, "choose one of --kubeconfig and --in-cluster"),
                       -EINVAL;
        if (a->context && !a->kubeconfig)
                return snprintf(err, errlen, "--context needs --kubeconfig"), -EINVAL;
        if (!a->node_name || !*a->node_name)
                return snprintf(err, errlen, "cluster mode needs --node-name"), -EINVAL;
        char *lease = NULL;
        if (cluster_lease_name(a->node_name, &lease) < 0)
                return snprintf(err, errlen,
                                "bad --node-name %s: lower-case letters, digits, '-' and '.'",
                                a->node_name),
                       -EINVAL;
        free(lease);
        if (!listen_addr)
                return snprintf(err, errlen,
                                "cluster mode needs --listen ADDR:PORT (the operator calls the "
                                "agent over TCP)"),
                       -EINVAL;
        if (!token_file)
                return snprintf(err, errlen,
                                "cluster mode needs --token-file (the operator's bearer token)"),
                       -EINVAL;
        if (a->advertise && !starts_with(a->advertise, "http://") &&
            !starts_with(a->advertise, "https://"))
                return snprintf(err, errlen, "bad --advertise %s: an http:// or https:// URL",
                                a->advertise),
                       -EINVAL;
        if (!a->advertise && listen_host_is_wildcard(listen_addr))
                return snprintf(err, errlen,
                                "--listen %s has no address the operator can reach: give "
                                "--advertise URL",
                                listen_addr),
                       -EINVAL;
        double cpu = 0;
        if (a->capacity_cpu && (quantity_parse_cpu(a->capacity_cpu, &cpu) < 0 || cpu <= 0))
                return snprintf(err, errlen, "bad --capacity-cpu %s", a->capacity_cpu), -EINVAL;
        uint64_t mem = 0;
        if (a->capacity_memory && (quantity_parse_bytes(a->capacity_memory, &mem) < 0 || mem == 0))
                return snprintf(err, errlen, "bad --capacity-memory %s", a->capacity_memory),
                       -EINVAL;
        unsigned d = 0;
        if (parse_lease_duration(a->lease_duration, &d) < 0)
                return snprintf(err, errlen, "bad --lease-duration %s: 1 to 3600 seconds",
                                a->lease_duration),
                       -EINVAL;

        char why[256] = "";
        int r = a->in_cluster ? k8s_config_in_cluster(NULL, &a->config, why, sizeof(why))
                              : k8s_config_from_kubeconfig(a->kubeconfig, a->context, &a->config,
                                                           why, sizeof(why));
        if (r < 0)
                return snprintf(err, errlen, "cannot load the %s configuration: %s",
                                a->in_cluster ? "in-cluster" : "kubeconfig",
                                why[0] ? why : strerror(-r)),
                       r;
        return 0;
}

int cluster_args_start(ClusterArgs *a, const char *listen_addr, unsigned tcp_port,
                       const char *version, Cluster **ret)
{
        char cpu_text[32];
        if (a->capacity_cpu) {
                double cpu = 0;
                (void) quantity_parse_cpu(a->capacity_cpu, &cpu);
                (void) snprintf(cpu_text, sizeof(cpu_text), "%.3f", cpu);
                char *p = cpu_text + strlen(cpu_text) - 1;
                while (*p == '0')
                        *p-- = 0;
                if (*p == '.')
                        *p = 0;
        } else {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                (void) snprintf(cpu_text, sizeof(cpu_text), "%ld", n > 0 ? n : 1);
        }
        uint64_t mem = 0;
        if (a->capacity_memory)
                (void) quantity_parse_bytes(a->capacity_memory, &mem);
        else
                mem = (uint64_t) sysconf(_SC_PHYS_PAGES) * (uint64_t) sysconf(_SC_PAGESIZE);
        unsigned duration = 0;
        (void) parse_lease_duration(a->lease_duration, &duration);

        cleanup_free char *endpoint = NULL;
        if (a->advertise)
                endpoint = strdup(a->advertise);
        else {
                const char *colon = strrchr(listen_addr, ':');
                int n = colon ? (int) (colon - listen_addr) : (int) strlen(listen_addr);
                if (asprintf(&endpoint, "%s://%.*s:%u", a->tls ? "https" : "http", n, listen_addr,
                             tcp_port) < 0)
                        endpoint = NULL;
        }
        if (!endpoint)
                return -ENOMEM;
        /* an advertised URL ends without '/': the operator appends /v1/... */
        size_t el = strlen(endpoint);
        while (el > 0 && endpoint[el - 1] == '/')
                endpoint[--el] = 0;

        K8sClient *client = NULL;
        int r = k8s_client_new(a->config, &client);
        a->config = NULL; /* taken */
        if (r < 0)
                return r;
        ClusterConfig cc = {
                .node_name = a->node_name,
                .namespace = a->namespace ? a->namespace : CLUSTER_DEFAULT_NAMESPACE,
                .endpoint = endpoint,
                .capacity_cpu = cpu_text,
                .capacity_memory = mem,
                .version = version,
                .lease_duration_s = duration,
        };
        log_info("cluster mode: node %s, Lease %s/sandpit-agent-%s, endpoint %s, %s CPUs, "
                 "%llu bytes, lease %u s",
                 cc.node_name, cc.namespace, cc.node_name, endpoint, cpu_text,
                 (unsigned long long) mem, duration);
        return cluster_start(client, &cc, ret);
}

void cluster_args_done(ClusterArgs *a)
{
        k8s_config_free(a->config);
        a->config = NULL;
}
