/* sandpit-agent: the node agent. `--standalone` serves the native API on one
 * machine with no cluster (docs/agent-api.md). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "agent.h"
#include "api-files.h"
#include "api.h"
#include "auth.h"
#include "cluster-args.h"
#include "gateway.h"
#include "image.h"
#include "pool.h"
#include "runtime.h"
#include "sandbox.h"
#include "sandpit/http-server.h"
#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/quantity.h"
#include "sandpit/util.h"
#include "userns.h"

#define MAX_BODY ((size_t) 16 * 1024 * 1024)

static void usage(FILE *f)
{
        fputs("Usage: sandpit-agent --standalone [OPTIONS]\n"
              "       sandpit-agent --kubeconfig FILE|--in-cluster --node-name N --listen "
              "ADDR:PORT\n"
              "                     --token-file FILE [OPTIONS]\n"
              "\n"
              "Runs sandboxes on this node and serves the sandpit agent API.\n"
              "\n"
              "  --standalone            serve on this machine, no cluster\n"
              "Cluster mode (register a Lease for the operator, docs/cluster.md):\n"
              "  --kubeconfig FILE       Kubernetes API from a kubeconfig\n"
              "  --context NAME          its context (default: current-context)\n"
              "  --in-cluster            Kubernetes API from the pod's service account\n"
              "  --node-name N           this node's name (required)\n"
              "  --namespace NS          the operator's namespace (default sandpit-system)\n"
              "  --advertise URL         this agent's API URL (default http://<--listen>,\n"
              "                          https:// with --tls-cert)\n"
              "  --lease-duration SECS   Lease duration, renewed every third (default 30)\n"
              "Common:\n"
              "  --capacity-cpu CORES    offered CPUs (default: online CPUs); warm pools\n"
              "                          fill only what sandboxes leave of it\n"
              "  --capacity-memory BYTES offered memory (default: MemTotal); the same\n"
              "  --pool TEMPLATE[:KEY=VALUE,...]=SIZE\n"
              "                          keep SIZE sandboxes of TEMPLATE ready (keys cpu,\n"
              "                          memory, pids, disk, name); repeatable\n"
              "  --socket PATH           unix socket (default /run/sandpit/agent.sock)\n"
              "  --listen ADDR:PORT      also serve TCP; requires --token-file\n"
              "  --token-file FILE       bearer token for TCP clients\n"
              "  --tls-cert FILE --tls-key FILE\n"
              "                          serve --listen over TLS with this PEM certificate\n"
              "                          (chain) and key (docs/security.md)\n"
              "  --http-header-timeout SECS  TCP: idle time allowed before a request shows\n"
              "                          the token (default 10)\n"
              "  --http-idle-timeout SECS    TCP: idle time of an authenticated connection\n"
              "                          between requests (default 300)\n"
              "  --http-max-unauth N     TCP: connections without the token yet, in all\n"
              "                          (default 256; the oldest are dropped for new ones)\n"
              "  --http-max-unauth-per-ip N  the same from one client address (default 32)\n"
              "  --gateway-listen ADDR:PORT\n"
              "                          serve E2B's API (the gateway, docs/gateway.md) for\n"
              "                          this agent's sandboxes\n"
              "  --gateway-auth keys|none  keys (default): the gateway's control plane needs\n"
              "                          an API key (sandpit keys create) or, in cluster\n"
              "                          mode, a Kubernetes token; none: any key, one\n"
              "                          namespace for all (loopback development only)\n"
              "  --gateway-key-file FILE the API keys (default <state-dir>/gateway-keys)\n"
              "  --mcp-allow-origin ORIGIN  an Origin allowed on /mcp besides loopback ones\n"
              "                          (repeatable)\n"
              "  --gateway-domain DOMAIN route <port>-<id>.DOMAIN host names to sandboxes\n"
              "                          (the SDK's E2B_DOMAIN mode)\n"
              "  --gateway-tls-cert FILE, --gateway-tls-key FILE\n"
              "                          serve the gateway over TLS (PEM files)\n"
              "  --state-dir DIR         runtime state (default /run/sandpit)\n"
              "  --templates-dir DIR     templates (default /var/lib/sandpit/templates)\n"
              "  --images-dir DIR        pulled images (default /var/lib/sandpit/images)\n"
              "  --registry-ca FILE      CA bundle for registries (default: the system's)\n"
              "  --insecure-registry HOST[:PORT]  pull from it over plain HTTP (repeatable)\n"
              "  --registry-auth-file FILE  registry credentials (docker config.json)\n"
              "  --default-registry HOST[:PORT]  for image names without a registry\n"
              "  --image-max-layer-size BYTES  per layer, packed and unpacked (default 4Gi)\n"
              "  --image-store-max BYTES  disk use of the layers: unused images beyond it\n"
              "                          are removed after each pull (default: no limit)\n"
              "  --init PATH             sandpit-init binary (default: next to this binary)\n"
              "  --kernels-dir DIR       code-interpreter kernels (default: "
              "../share/sandpit/kernels\n"
              "                          from this binary; none: the code API is off)\n"
              "  --runtime NAME|PATH     OCI runtime CLI (default runc)\n"
              "  --runtime-path NAME=PATH  where runtime NAME (runc, crun, runsc) is, for\n"
              "                          templates that name it (default: $PATH; repeatable)\n"
              "  --userns on|off         each sandbox in its own user namespace (default on)\n"
              "  --userns-base ID        first host id of the sandboxes' ranges (default 1048576)\n"
              "  --userns-size N         host ids per sandbox (default 65536)\n"
              "  --cgroup-parent NAME    parent cgroup of all sandboxes (default sandpit)\n"
              "  --cgroup-version auto|v1|v2\n"
              "  --sandbox-cidr CIDR     give sandboxes a veth and an address from CIDR\n"
              "                          (default: loopback-only sandboxes)\n"
              "  --blocked-cidr CIDR     never reachable from sandboxes (repeatable)\n"
              "  --build-fetch-allow CIDR  an ADD of a URL may fetch from this private,\n"
              "                          loopback, link-local or node range (repeatable)\n"
              "  --dns ADDR              resolver in the sandboxes' /etc/resolv.conf\n"
              "  --net-table NAME        nftables table of this agent (default sandpit)\n"
              "  --log-format json|text  (default json)\n"
              "  --log-level debug|info|warning|error\n"
              "  --help\n",
              f);
}

/* A whole number from 1 to max. */
static int parse_limit(const char *s, unsigned max, unsigned *ret)
{
        char *end = NULL;
        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || *end || v < 1 || v > max)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

/* rel resolved against the directory of this binary. */
static char *path_next_to_self(const char *rel)
{
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0)
                return NULL;
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash)
                *slash = 0;
        char *p = NULL;
        return asprintf(&p, "%s/%s", self, rel) < 0 ? NULL : p;
}

static char *default_init_path(void)
{
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0)
                return strdup("/usr/lib/sandpit/sandpit-init");
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash)
                *slash = 0;
        char *p = NULL;
        return asprintf(&p, "%s/sandpit-init", self) < 0 ? NULL : p;
}

/* Everything the agent's setup steps make, undone in reverse by the steps' undo. */
typedef struct {
        Agent agent;
        /* Options */
        const char *socket_path, *listen_addr, *token_file, *gateway_listen;
        const char *gateway_domain, *gateway_tls_cert, *gateway_tls_key;
        const char *tls_cert, *tls_key; /* --tls-cert, --tls-key: --listen over TLS */
        bool standalone;
        ClusterArgs ca;
        HttpServerConfig hc;
        LogFormat log_format;
        LogLevel log_level;
        char **blocked;       /* --blocked-cidr values (borrows argv) */
        char **pools;         /* --pool values (borrows argv) */
        char **mcp_origins;   /* --mcp-allow-origin values (borrows argv) */
        char **insecure;      /* --insecure-registry values (borrows argv) */
        char **runtime_paths; /* --runtime-path values (borrows argv) */
        /* Made by the steps */
        char *init_default, *kernels_default, *kernels_real;
        char *token;
        sigset_t signals;
        HttpServer *srv;
        Cluster *cluster;
        GwServer *gateway;
        GwAuthMode gateway_auth; /* GW_AUTH_KEYS unless --gateway-auth none */
        const char *gateway_key_file;
        GwAuth *gw_auth;
        K8sClient *gw_k8s;
} Daemon;

enum {
        OPT_STANDALONE = 256,
        OPT_SOCKET,
        OPT_LISTEN,
        OPT_GATEWAY_LISTEN,
        OPT_GATEWAY_AUTH,
        OPT_GATEWAY_KEY_FILE,
        OPT_MCP_ALLOW_ORIGIN,
        OPT_GATEWAY_DOMAIN,
        OPT_GATEWAY_TLS_CERT,
        OPT_GATEWAY_TLS_KEY,
        OPT_TOKEN_FILE,
        OPT_STATE_DIR,
        OPT_TEMPLATES_DIR,
        OPT_INIT,
        OPT_KERNELS_DIR,
        OPT_RUNTIME,
        OPT_RUNTIME_PATH,
        OPT_CGROUP_PARENT,
        OPT_CGROUP_VERSION,
        OPT_LOG_FORMAT,
        OPT_LOG_LEVEL,
        OPT_SANDBOX_CIDR,
        OPT_BLOCKED_CIDR,
        OPT_BUILD_FETCH_ALLOW,
        OPT_DNS,
        OPT_NET_TABLE,
        OPT_KUBECONFIG,
        OPT_CONTEXT,
        OPT_IN_CLUSTER,
        OPT_NODE_NAME,
        OPT_NAMESPACE,
        OPT_ADVERTISE,
        OPT_CAPACITY_CPU,
        OPT_CAPACITY_MEMORY,
        OPT_LEASE_DURATION,
        OPT_HTTP_HEADER_TIMEOUT,
        OPT_HTTP_IDLE_TIMEOUT,
        OPT_HTTP_MAX_UNAUTH,
        OPT_HTTP_MAX_UNAUTH_PER_IP,
        OPT_POOL,
        OPT_USERNS,
        OPT_USERNS_BASE,
        OPT_USERNS_SIZE,
        OPT_IMAGES_DIR,
        OPT_REGISTRY_CA,
        OPT_INSECURE_REGISTRY,
        OPT_REGISTRY_AUTH_FILE,
        OPT_DEFAULT_REGISTRY,
        OPT_IMAGE_MAX_LAYER_SIZE,
        OPT_IMAGE_STORE_MAX,
        OPT_TLS_CERT,
        OPT_TLS_KEY,
        OPT_HELP,
};
static const struct option options[] = {
        {"standalone", no_argument, NULL, OPT_STANDALONE},
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"gateway-listen", required_argument, NULL, OPT_GATEWAY_LISTEN},
        {"gateway-auth", required_argument, NULL, OPT_GATEWAY_AUTH},
        {"gateway-key-file", required_argument, NULL, OPT_GATEWAY_KEY_FILE},
        {"gateway-domain", required_argument, NULL, OPT_GATEWAY_DOMAIN},
        {"gateway-tls-cert", required_argument, NULL, OPT_GATEWAY_TLS_CERT},
        {"gateway-tls-key", required_argument, NULL, OPT_GATEWAY_TLS_KEY},
        {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"templates-dir", required_argument, NULL, OPT_TEMPLATES_DIR},
        {"init", required_argument, NULL, OPT_INIT},
        {"kernels-dir", required_argument, NULL, OPT_KERNELS_DIR},
        {"runtime", required_argument, NULL, OPT_RUNTIME},
        {"runtime-path", required_argument, NULL, OPT_RUNTIME_PATH},
        {"cgroup-parent", required_argument, NULL, OPT_CGROUP_PARENT},
        {"cgroup-version", required_argument, NULL, OPT_CGROUP_VERSION},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"sandbox-cidr", required_argument, NULL, OPT_SANDBOX_CIDR},
        {"blocked-cidr", required_argument, NULL, OPT_BLOCKED_CIDR},
        {"build-fetch-allow", required_argument, NULL, OPT_BUILD_FETCH_ALLOW},
        {"mcp-allow-origin", required_argument, NULL, OPT_MCP_ALLOW_ORIGIN},
        {"dns", required_argument, NULL, OPT_DNS},
        {"net-table", required_argument, NULL, OPT_NET_TABLE},
        {"kubeconfig", required_argument, NULL, OPT_KUBECONFIG},
        {"context", required_argument, NULL, OPT_CONTEXT},
        {"in-cluster", no_argument, NULL, OPT_IN_CLUSTER},
        {"node-name", required_argument, NULL, OPT_NODE_NAME},
        {"namespace", required_argument, NULL, OPT_NAMESPACE},
        {"advertise", required_argument, NULL, OPT_ADVERTISE},
        {"capacity-cpu", required_argument, NULL, OPT_CAPACITY_CPU},
        {"capacity-memory", required_argument, NULL, OPT_CAPACITY_MEMORY},
        {"lease-duration", required_argument, NULL, OPT_LEASE_DURATION},
        {"http-header-timeout", required_argument, NULL, OPT_HTTP_HEADER_TIMEOUT},
        {"http-idle-timeout", required_argument, NULL, OPT_HTTP_IDLE_TIMEOUT},
        {"http-max-unauth", required_argument, NULL, OPT_HTTP_MAX_UNAUTH},
        {"http-max-unauth-per-ip", required_argument, NULL, OPT_HTTP_MAX_UNAUTH_PER_IP},
        {"pool", required_argument, NULL, OPT_POOL},
        {"userns", required_argument, NULL, OPT_USERNS},
        {"userns-base", required_argument, NULL, OPT_USERNS_BASE},
        {"userns-size", required_argument, NULL, OPT_USERNS_SIZE},
        {"images-dir", required_argument, NULL, OPT_IMAGES_DIR},
        {"registry-ca", required_argument, NULL, OPT_REGISTRY_CA},
        {"insecure-registry", required_argument, NULL, OPT_INSECURE_REGISTRY},
        {"registry-auth-file", required_argument, NULL, OPT_REGISTRY_AUTH_FILE},
        {"default-registry", required_argument, NULL, OPT_DEFAULT_REGISTRY},
        {"image-max-layer-size", required_argument, NULL, OPT_IMAGE_MAX_LAYER_SIZE},
        {"image-store-max", required_argument, NULL, OPT_IMAGE_STORE_MAX},
        {"help", no_argument, NULL, OPT_HELP},
        {0},
};

/* -1: run; else exit with that status (--help, bad usage). */
static int parse_options(int argc, char **argv, Daemon *d)
{
        AgentConfig *cfg = &d->agent.cfg;
        size_t nblocked = 0, npools = 0, norigins = 0, ninsecure = 0, nruntimes = 0;
        int c, option_index = 0;
        while ((c = getopt_long(argc, argv, "", options, &option_index)) != -1) {
                switch (c) {
                case OPT_STANDALONE:
                        d->standalone = true;
                        break;
                case OPT_SOCKET:
                        d->socket_path = optarg;
                        break;
                case OPT_LISTEN:
                        d->listen_addr = optarg;
                        break;
                case OPT_GATEWAY_LISTEN:
                        d->gateway_listen = optarg;
                        break;
                case OPT_GATEWAY_AUTH:
                        if (gw_auth_parse_mode(optarg, &d->gateway_auth) < 0) {
                                fprintf(stderr,
                                        "sandpit-agent: bad --gateway-auth %s (keys or none)\n",
                                        optarg);
                                return 2;
                        }
                        break;
                case OPT_GATEWAY_KEY_FILE:
                        d->gateway_key_file = optarg;
                        break;
                case OPT_GATEWAY_DOMAIN:
                        d->gateway_domain = optarg;
                        break;
                case OPT_GATEWAY_TLS_CERT:
                        d->gateway_tls_cert = optarg;
                        break;
                case OPT_GATEWAY_TLS_KEY:
                        d->gateway_tls_key = optarg;
                        break;
                case OPT_TOKEN_FILE:
                        d->token_file = optarg;
                        break;
                case OPT_TLS_CERT:
                        d->tls_cert = optarg;
                        break;
                case OPT_TLS_KEY:
                        d->tls_key = optarg;
                        break;
                case OPT_STATE_DIR:
                        cfg->state_dir = optarg;
                        break;
                case OPT_TEMPLATES_DIR:
                        cfg->templates_dir = optarg;
                        break;
                case OPT_IMAGES_DIR:
                        cfg->images_dir = optarg;
                        break;
                case OPT_REGISTRY_CA:
                        cfg->registry_ca = optarg;
                        break;
                case OPT_INSECURE_REGISTRY:
                        d->insecure[ninsecure++] = optarg;
                        break;
                case OPT_REGISTRY_AUTH_FILE:
                        cfg->registry_auth_file = optarg;
                        break;
                case OPT_DEFAULT_REGISTRY:
                        cfg->default_registry = optarg;
                        break;
                case OPT_IMAGE_MAX_LAYER_SIZE:
                case OPT_IMAGE_STORE_MAX: {
                        uint64_t *dst = c == OPT_IMAGE_STORE_MAX ? &cfg->image_store_max
                                                                 : &cfg->image_max_layer_size;
                        if (quantity_parse_bytes(optarg, dst) < 0 || *dst == 0) {
                                fprintf(stderr, "sandpit-agent: bad --%s %s\n",
                                        options[option_index].name, optarg);
                                return 2;
                        }
                        break;
                }
                case OPT_USERNS:
                        if (!streq(optarg, "on") && !streq(optarg, "off")) {
                                fprintf(stderr, "sandpit-agent: --userns is on or off\n");
                                return 2;
                        }
                        cfg->userns = streq(optarg, "on");
                        break;
                case OPT_USERNS_BASE:
                case OPT_USERNS_SIZE: {
                        /* Both at least 65536: the base above the host's own ids,
                         * the size so a sandbox keeps ids 0..65535 (nobody is 65534). */
                        unsigned v = 0;
                        if (parse_limit(optarg, UINT32_MAX - 1, &v) < 0 || v < 65536) {
                                fprintf(stderr, "sandpit-agent: bad --%s %s (65536 or more)\n",
                                        options[option_index].name, optarg);
                                return 2;
                        }
                        *(c == OPT_USERNS_BASE ? &cfg->userns_base : &cfg->userns_size) = v;
                        break;
                }
                case OPT_INIT:
                        cfg->init_path = optarg;
                        break;
                case OPT_KERNELS_DIR:
                        cfg->kernels_dir = optarg;
                        break;
                case OPT_RUNTIME:
                        cfg->runtime = optarg;
                        break;
                case OPT_RUNTIME_PATH: {
                        const char *eq = strchr(optarg, '=');
                        char name[16];
                        if (!eq || eq - optarg >= (ptrdiff_t) sizeof(name) || !eq[1]) {
                                fprintf(stderr, "sandpit-agent: --runtime-path takes NAME=PATH\n");
                                return 2;
                        }
                        (void) snprintf(name, sizeof(name), "%.*s", (int) (eq - optarg), optarg);
                        if (runtime_name_index(name) < 0) {
                                fprintf(stderr,
                                        "sandpit-agent: --runtime-path: unknown runtime %s (runc, "
                                        "crun or runsc)\n",
                                        name);
                                return 2;
                        }
                        d->runtime_paths[nruntimes++] = optarg;
                        break;
                }
                case OPT_CGROUP_PARENT:
                        cfg->cgroup_parent = optarg;
                        break;
                case OPT_CGROUP_VERSION:
                        if (streq(optarg, "auto"))
                                cfg->cgroup_version = CG_VERSION_AUTO;
                        else if (streq(optarg, "v1"))
                                cfg->cgroup_version = CG_VERSION_V1;
                        else if (streq(optarg, "v2"))
                                cfg->cgroup_version = CG_VERSION_V2;
                        else {
                                fprintf(stderr, "sandpit-agent: bad --cgroup-version %s\n", optarg);
                                return 2;
                        }
                        break;
                case OPT_LOG_FORMAT:
                        if (log_parse_format(optarg, &d->log_format) < 0) {
                                fprintf(stderr, "sandpit-agent: bad --log-format %s\n", optarg);
                                return 2;
                        }
                        break;
                case OPT_LOG_LEVEL:
                        if (log_parse_level(optarg, &d->log_level) < 0) {
                                fprintf(stderr, "sandpit-agent: bad --log-level %s\n", optarg);
                                return 2;
                        }
                        break;
                case OPT_SANDBOX_CIDR:
                        cfg->net.sandbox_cidr = optarg;
                        break;
                case OPT_BLOCKED_CIDR:
                        d->blocked[nblocked++] = optarg;
                        break;
                case OPT_BUILD_FETCH_ALLOW:
                        if (http_fetch_cidr_parse(
                                    optarg, &cfg->build_fetch_allow[cfg->nbuild_fetch_allow]) < 0) {
                                fprintf(stderr,
                                        "sandpit-agent: bad --build-fetch-allow %s (an IPv4 or "
                                        "IPv6 address or CIDR, no host bits set)\n",
                                        optarg);
                                return 2;
                        }
                        cfg->nbuild_fetch_allow++;
                        break;
                case OPT_MCP_ALLOW_ORIGIN:
                        d->mcp_origins[norigins++] = optarg;
                        break;
                case OPT_DNS:
                        cfg->net.dns = optarg;
                        break;
                case OPT_NET_TABLE:
                        cfg->net.table = optarg;
                        break;
                case OPT_KUBECONFIG:
                        d->ca.kubeconfig = optarg;
                        break;
                case OPT_CONTEXT:
                        d->ca.context = optarg;
                        break;
                case OPT_IN_CLUSTER:
                        d->ca.in_cluster = true;
                        break;
                case OPT_NODE_NAME:
                case OPT_NAMESPACE:
                case OPT_ADVERTISE:
                case OPT_LEASE_DURATION:
                        *(c == OPT_NODE_NAME   ? &d->ca.node_name
                          : c == OPT_NAMESPACE ? &d->ca.namespace
                          : c == OPT_ADVERTISE ? &d->ca.advertise
                                               : &d->ca.lease_duration) = optarg;
                        d->ca.any_cluster_flag = true;
                        break;
                case OPT_CAPACITY_CPU: /* the Lease's, and the warm pools' bound */
                        d->ca.capacity_cpu = optarg;
                        break;
                case OPT_CAPACITY_MEMORY:
                        d->ca.capacity_memory = optarg;
                        break;
                case OPT_POOL:
                        d->pools[npools++] = optarg;
                        break;
                case OPT_HTTP_HEADER_TIMEOUT:
                case OPT_HTTP_IDLE_TIMEOUT:
                case OPT_HTTP_MAX_UNAUTH:
                case OPT_HTTP_MAX_UNAUTH_PER_IP: {
                        bool secs = c == OPT_HTTP_HEADER_TIMEOUT || c == OPT_HTTP_IDLE_TIMEOUT;
                        unsigned v = 0;
                        if (parse_limit(optarg, secs ? 86400 : HTTP_CONNECTION_LIMIT / 2, &v) < 0) {
                                fprintf(stderr, "sandpit-agent: bad --%s %s (1 to %u)\n",
                                        options[option_index].name, optarg,
                                        secs ? 86400 : HTTP_CONNECTION_LIMIT / 2);
                                return 2;
                        }
                        *(c == OPT_HTTP_HEADER_TIMEOUT ? &d->hc.header_timeout_s
                          : c == OPT_HTTP_IDLE_TIMEOUT ? &d->hc.idle_timeout_s
                          : c == OPT_HTTP_MAX_UNAUTH   ? &d->hc.max_unauth
                                                       : &d->hc.max_unauth_per_ip) = v;
                        break;
                }
                case OPT_HELP:
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (!d->gateway_listen &&
            (d->gateway_domain || d->gateway_tls_cert || d->gateway_tls_key)) {
                fprintf(stderr, "sandpit-agent: the --gateway-* flags need --gateway-listen\n");
                return 2;
        }
        if (!d->gateway_tls_cert != !d->gateway_tls_key) {
                fprintf(stderr,
                        "sandpit-agent: give both --gateway-tls-cert and --gateway-tls-key\n");
                return 2;
        }
        if (optind < argc) {
                fprintf(stderr, "sandpit-agent: unexpected argument\n");
                return 2;
        }
        char cerr[512];
        if (cluster_args_check(&d->ca, d->standalone, d->listen_addr, d->token_file, cerr,
                               sizeof(cerr)) < 0) {
                fprintf(stderr, "sandpit-agent: %s\n", cerr);
                return 1;
        }
        double cpu = 0;
        uint64_t mem = 0;
        if (d->ca.capacity_cpu && (quantity_parse_cpu(d->ca.capacity_cpu, &cpu) < 0 || cpu <= 0)) {
                fprintf(stderr, "sandpit-agent: bad --capacity-cpu %s\n", d->ca.capacity_cpu);
                return 2;
        }
        if (d->ca.capacity_memory &&
            (quantity_parse_bytes(d->ca.capacity_memory, &mem) < 0 || mem == 0)) {
                fprintf(stderr, "sandpit-agent: bad --capacity-memory %s\n", d->ca.capacity_memory);
                return 2;
        }
        STRV_FOREACH(p, d->pools) {
                cleanup_free char *name = NULL;
                cleanup_json json_object *body = NULL;
                if (pool_flag_parse(*p, &name, &body, cerr, sizeof(cerr)) < 0) {
                        fprintf(stderr, "sandpit-agent: %s\n", cerr);
                        return 2;
                }
        }
        if (!d->socket_path || !*d->socket_path) {
                fprintf(stderr, "sandpit-agent: --socket needs a path\n");
                return 2;
        }
        if (d->listen_addr && !d->token_file) {
                fprintf(stderr, "sandpit-agent: --listen needs --token-file\n");
                return 2;
        }
        if (!d->tls_cert != !d->tls_key) {
                fprintf(stderr, "sandpit-agent: give both --tls-cert and --tls-key\n");
                return 2;
        }
        if (d->tls_cert && !d->listen_addr) {
                fprintf(stderr, "sandpit-agent: --tls-cert needs --listen\n");
                return 2;
        }
        d->ca.tls = d->tls_cert != NULL;
        return -1;
}

/* --- setup steps: each returns < 0 after logging why --------------------- */

/* The paths that default to places next to this binary. */
static int setup_paths(Daemon *d)
{
        AgentConfig *cfg = &d->agent.cfg;
        if (!cfg->init_path) {
                d->init_default = default_init_path();
                if (!d->init_default)
                        return log_error_errno(-ENOMEM, "out of memory");
                cfg->init_path = d->init_default;
        }
        if (!cfg->kernels_dir) {
                d->kernels_default = path_next_to_self("../share/sandpit/kernels");
                cfg->kernels_dir = d->kernels_default;
        }
        d->kernels_real = cfg->kernels_dir ? realpath(cfg->kernels_dir, NULL) : NULL;
        if (cfg->kernels_dir && !d->kernels_real)
                log_warning("no code-interpreter kernels at %s: the code API is off",
                            cfg->kernels_dir);
        cfg->kernels_dir = d->kernels_real;
        return 0;
}

static int setup_token(Daemon *d)
{
        if (!d->token_file)
                return 0;
        int r = read_token_file(d->token_file, 16, &d->token);
        if (r < 0)
                return log_error_errno(r, "cannot read a token (16+ characters) from %s",
                                       d->token_file);
        return 0;
}

/* Signals are taken synchronously by the main thread; blocked before any
 * thread starts so every thread inherits the mask. */
static int setup_signals(Daemon *d)
{
        sigemptyset(&d->signals);
        sigaddset(&d->signals, SIGTERM);
        sigaddset(&d->signals, SIGINT);
        sigaddset(&d->signals, SIGHUP);
        (void) pthread_sigmask(SIG_BLOCK, &d->signals, NULL);
        (void) signal(SIGPIPE, SIG_IGN);
        return 0;
}

static int setup_agent(Daemon *d)
{
        return agent_init(&d->agent);
}

/* agent_done() undoes every agent step (state dir, cgroups, network, the
 * monitor), each also half-done: sandboxes keep running for the next agent. */
static void undo_agent(Daemon *d)
{
        agent_done(&d->agent);
}

static int setup_state_dir(Daemon *d)
{
        return agent_setup_state_dir(&d->agent);
}

static int check_init(Daemon *d)
{
        return agent_check_init(&d->agent);
}

static int setup_network(Daemon *d)
{
        return agent_setup_network(&d->agent);
}

static int setup_nofile(Daemon *d)
{
        (void) d;
        agent_raise_nofile();
        return 0;
}

static int setup_userns(Daemon *d)
{
        return agent_setup_userns(&d->agent);
}

static int setup_cgroups(Daemon *d)
{
        return agent_setup_cgroups(&d->agent);
}

/* The image store (docs/images.md): made here, emptied of half-done pulls. */
static int setup_images(Daemon *d)
{
        const AgentConfig *cfg = &d->agent.cfg;
        ImageStoreConfig ic = {.dir = cfg->images_dir,
                               .ca_file = cfg->registry_ca,
                               .insecure = cfg->insecure_registries,
                               .auth_file = cfg->registry_auth_file,
                               .default_registry = cfg->default_registry,
                               .max_layer_size = cfg->image_max_layer_size,
                               .max_store_size = cfg->image_store_max,
                               .sandboxes_dir = d->agent.sandboxes_dir,
                               .templates_dir = cfg->templates_dir,
                               .in_use = sandbox_image_in_use,
                               .userdata = &d->agent};
        int r = image_store_new(&ic, &d->agent.images);
        return r < 0 ? log_error_errno(r, "cannot open the image store %s", cfg->images_dir) : 0;
}

static void undo_images(Daemon *d)
{
        image_store_free(d->agent.images);
        d->agent.images = NULL;
}

/* Re-adopts the sandboxes a previous agent left running. */
static int setup_recover(Daemon *d)
{
        return sandbox_recover(&d->agent);
}

static int setup_userns_spares(Daemon *d)
{
        return agent_start_userns_spares(&d->agent);
}

static int setup_monitor(Daemon *d)
{
        return agent_start_monitor(&d->agent);
}

static int setup_http(Daemon *d)
{
        cleanup_free char *sock_dir = strdup(d->socket_path);
        char *slash = sock_dir ? strrchr(sock_dir, '/') : NULL;
        if (slash && slash != sock_dir) {
                *slash = 0;
                (void) mkdir_p(sock_dir, 0755);
        }
        d->hc.unix_path = d->socket_path;
        d->hc.tcp_listen = d->listen_addr;
        d->hc.token = d->token;
        d->hc.tls_cert_file = d->tls_cert;
        d->hc.tls_key_file = d->tls_key;
        int r = http_server_start(&d->hc, api_handle, &d->agent, &d->srv);
        if (r < 0)
                return log_error_errno(r, "cannot serve on %s%s%s", d->socket_path,
                                       d->listen_addr ? " and " : "",
                                       d->listen_addr ? d->listen_addr : "");
        return 0;
}

/* Warm pools: the refill thread, then the --pool ones (a bad one stops the start). */
static int setup_pools(Daemon *d)
{
        double cpu = 0;
        uint64_t mem = 0;
        if (!d->ca.capacity_cpu || quantity_parse_cpu(d->ca.capacity_cpu, &cpu) < 0) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                cpu = n > 0 ? (double) n : 1;
        }
        if (!d->ca.capacity_memory || quantity_parse_bytes(d->ca.capacity_memory, &mem) < 0)
                mem = (uint64_t) sysconf(_SC_PHYS_PAGES) * (uint64_t) sysconf(_SC_PAGESIZE);
        int r = pools_start(&d->agent, cpu, mem);
        if (r < 0)
                return log_error_errno(r, "cannot start the warm pools");
        STRV_FOREACH(p, d->pools) {
                cleanup_free char *name = NULL;
                cleanup_json json_object *body = NULL, *view = NULL;
                char err[512] = "";
                r = pool_flag_parse(*p, &name, &body, err, sizeof(err));
                if (r == 0)
                        r = pool_put(&d->agent, name, body, &view, err, sizeof(err));
                if (r < 0)
                        return log_error_errno(r, "--pool %s: %s", *p, err[0] ? err : "failed");
        }
        return 0;
}

/* The pools' waiting sandboxes go; claimed ones keep running. */
static void undo_pools(Daemon *d)
{
        pools_stop(&d->agent);
}

static void undo_http(Daemon *d)
{
        http_server_free(d->srv);
}

/* Cluster mode: registers this node with its Lease and keeps it renewed. */
static int setup_cluster(Daemon *d)
{
        if (!cluster_args_enabled(&d->ca))
                return 0;
        int r = cluster_args_start(&d->ca, d->listen_addr, http_server_tcp_port(d->srv),
                                   SANDPIT_VERSION, &d->cluster);
        return r < 0 ? log_error_errno(r, "cannot start cluster mode") : 0;
}

/* Deregisters first: the operator stops calling. */
static void undo_cluster(Daemon *d)
{
        cluster_stop(d->cluster);
}

/* Who may use the gateway (docs/auth.md): keys from <state-dir>/gateway-keys,
 * or in cluster mode from the Secret sandpit-api-keys in --namespace, and
 * Kubernetes tokens through a client of the gateway's own. */
static int setup_gateway_auth(Daemon *d)
{
        GwAuthConfig ac = {.mode = d->gateway_auth};
        cleanup_free char *keys = NULL;
        if (!d->gateway_key_file && asprintf(&keys, "%s/gateway-keys", d->agent.cfg.state_dir) < 0)
                return -ENOMEM;
        ac.key_file = d->gateway_key_file ? d->gateway_key_file : keys;
        if (cluster_args_enabled(&d->ca) && ac.mode == GW_AUTH_KEYS) {
                char err[256] = "";
                K8sConfig *kc = NULL;
                int r = d->ca.in_cluster
                                ? k8s_config_in_cluster(NULL, &kc, err, sizeof(err))
                                : k8s_config_from_kubeconfig(d->ca.kubeconfig, d->ca.context, &kc,
                                                             err, sizeof(err));
                if (r == 0)
                        r = k8s_client_new(kc, &d->gw_k8s);
                if (r < 0)
                        return log_error_errno(r, "gateway: no Kubernetes client: %s", err);
                ac.k8s = d->gw_k8s;
                ac.keys_secret_namespace = d->ca.namespace ? d->ca.namespace : "sandpit-system";
                ac.keys_secret_name = "sandpit-api-keys";
        }
        if (ac.mode == GW_AUTH_NONE)
                log_warning("gateway: --gateway-auth none: any API key is taken and every caller "
                            "sees every sandbox; keep it on loopback");
        int r = gw_auth_new(&ac, 10000, &d->gw_auth);
        return r < 0 ? log_error_errno(r, "cannot set up the gateway's authentication") : 0;
}

/* The gateway in local mode: E2B's API over this agent's own socket. */
static int setup_gateway(Daemon *d)
{
        if (!d->gateway_listen)
                return 0;
        cleanup_free char *url = NULL, *tokens = NULL;
        if (asprintf(&url, "unix://%s", d->socket_path) < 0)
                return -ENOMEM;
        if (asprintf(&tokens, "%s/gateway-tokens", d->agent.cfg.state_dir) < 0)
                return -ENOMEM;
        GwConfig gc = {.listen = d->gateway_listen,
                       .tls_cert_file = d->gateway_tls_cert,
                       .tls_key_file = d->gateway_tls_key,
                       .e2b = {.internet = d->agent.cfg.net.sandbox_cidr != NULL,
                               .domain = d->gateway_domain},
                       .mcp_origins = (const char *const *) d->mcp_origins,
                       .token_file = tokens,
                       .authorize = gw_auth_authorize};
        int r = setup_gateway_auth(d);
        if (r < 0)
                return r;
        gc.authorize_userdata = d->gw_auth;
        r = gw_backend_local_new(url, NULL, &gc.backend);
        if (r < 0)
                return log_error_errno(r, "cannot make the gateway's backend");
        r = gw_server_start(&gc, &d->gateway);
        if (r < 0)
                return log_error_errno(r, "cannot serve the gateway on %s", d->gateway_listen);
        log_info("gateway (E2B API) on %s, tcp port %u", d->gateway_listen,
                 gw_server_port(d->gateway));
        return 0;
}

static void undo_gateway(Daemon *d)
{
        gw_server_free(d->gateway);
        gw_auth_free(d->gw_auth);
        k8s_client_free(d->gw_k8s);
}

typedef struct {
        int (*run)(Daemon *d);
        void (*undo)(Daemon *d); /* NULL: nothing to undo; also runs when run failed */
} SetupStep;

/* The agent's setup, in order; the first failure ends it, and the steps taken
 * (the failed one too) are undone in reverse, as after the stop signal. */
static const SetupStep setup_steps[] = {
        {setup_paths, NULL},         /* init and kernels next to this binary */
        {setup_token, NULL},         /* --token-file */
        {setup_signals, NULL},       /* before any thread starts */
        {setup_agent, undo_agent},   /* table, metrics, the monitor's epoll */
        {setup_state_dir, NULL},     /* <state-dir>/sandboxes, runc */
        {check_init, NULL},          /* sandpit-init executable */
        {setup_network, NULL},       /* --sandbox-cidr, leases */
        {setup_cgroups, NULL},       /* --cgroup-parent */
        {setup_nofile, NULL},        /* RLIMIT_NOFILE: an fd per sandbox */
        {setup_userns, NULL},        /* --userns: the host id ranges, before recovery */
        {setup_images, undo_images}, /* --images-dir, registries */
        {setup_recover, NULL},       /* re-adopt running sandboxes */
        {setup_userns_spares, NULL}, /* user namespaces made ahead, on ranges left free */
        {setup_monitor, NULL},       /* deadlines, dead inits, metrics sampler */
        {setup_pools, undo_pools},   /* --pool: warm pools and their refill thread */
        {setup_http, undo_http},     /* unix socket, --listen */
        {setup_cluster, undo_cluster},
        {setup_gateway, undo_gateway}, /* --gateway-listen */
};

static void daemon_free(Daemon *d)
{
        cluster_args_done(&d->ca);
        free(d->init_default);
        free(d->kernels_default);
        free(d->kernels_real);
        if (d->token) {
                explicit_bzero(d->token, strlen(d->token));
                free(d->token);
        }
        free(d->blocked);
        free(d->agent.cfg.build_fetch_allow);
        free(d->pools);
        free(d->mcp_origins);
        free(d->insecure);
        free(d->runtime_paths);
}

int main(int argc, char **argv)
{
        Daemon d = {
                .socket_path = "/run/sandpit/agent.sock",
                .hc = {.max_body = MAX_BODY, .spool_limit = api_files_spool_limit},
                .log_format = LOG_FORMAT_JSON,
                .log_level = LOG_LEVEL_INFO,
                .agent.cfg = {.state_dir = "/run/sandpit",
                              .templates_dir = "/var/lib/sandpit/templates",
                              .images_dir = "/var/lib/sandpit/images",
                              .image_max_layer_size = 4ull << 30,
                              .runtime = "runc",
                              .cgroup_parent = "sandpit",
                              .cgroup_version = CG_VERSION_AUTO,
                              .userns = true,
                              .userns_base = USERNS_DEFAULT_BASE,
                              .userns_size = USERNS_DEFAULT_SIZE,
                              .net.table = "sandpit"},
                .blocked = calloc((size_t) argc + 1, sizeof(char *)),
                .pools = calloc((size_t) argc + 1, sizeof(char *)),
                .mcp_origins = calloc((size_t) argc + 1, sizeof(char *)),
                .insecure = calloc((size_t) argc + 1, sizeof(char *)),
                .runtime_paths = calloc((size_t) argc + 1, sizeof(char *)),
        };
        d.agent.cfg.build_fetch_allow = calloc((size_t) argc + 1, sizeof(HttpFetchCidr));
        if (!d.blocked || !d.pools || !d.mcp_origins || !d.insecure || !d.runtime_paths ||
            !d.agent.cfg.build_fetch_allow) {
                daemon_free(&d);
                return 1;
        }
        d.agent.cfg.insecure_registries = d.insecure;
        d.agent.cfg.runtime_paths = d.runtime_paths;
        d.agent.cfg.net.blocked_cidrs = d.blocked;
        int status = parse_options(argc, argv, &d);
        if (status >= 0) {
                daemon_free(&d);
                return status;
        }
        log_setup("sandpit-agent", d.log_format, d.log_level);

        size_t taken = 0;
        int r = 0;
        while (r == 0 && taken < ARRAY_SIZE(setup_steps))
                r = setup_steps[taken++].run(&d);
        if (r == 0) {
                if (d.listen_addr)
                        log_info("serving on %s and tcp port %u", d.socket_path,
                                 http_server_tcp_port(d.srv));
                else
                        log_info("serving on %s", d.socket_path);
                int sig = 0;
                while (sigwait(&d.signals, &sig) != 0 || sig == SIGHUP)
                        ;
                log_info("signal %d: stopping; sandboxes keep running for the next agent", sig);
        }
        while (taken > 0)
                if (setup_steps[--taken].undo)
                        setup_steps[taken].undo(&d);
        daemon_free(&d);
        return r < 0 ? 1 : 0;
}
