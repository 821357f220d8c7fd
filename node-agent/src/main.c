/* sandpit-agent: the node agent. `--standalone` serves the native API on one
 * machine with no cluster (docs/agent-api.md). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "agent.h"
#include "api-files.h"
#include "api.h"
#include "cluster-args.h"
#include "gateway.h"
#include "sandbox.h"
#include "sandpit/http-server.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

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
              "  --advertise URL         this agent's API URL (default http://<--listen>)\n"
              "  --capacity-cpu CORES    offered CPUs (default: online CPUs)\n"
              "  --capacity-memory BYTES offered memory (default: MemTotal)\n"
              "  --lease-duration SECS   Lease duration, renewed every third (default 30)\n"
              "Common:\n"
              "  --socket PATH           unix socket (default /run/sandpit/agent.sock)\n"
              "  --listen ADDR:PORT      also serve TCP; requires --token-file\n"
              "  --token-file FILE       bearer token for TCP clients\n"
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
              "  --state-dir DIR         runtime state (default /run/sandpit)\n"
              "  --templates-dir DIR     templates (default /var/lib/sandpit/templates)\n"
              "  --init PATH             sandpit-init binary (default: next to this binary)\n"
              "  --kernels-dir DIR       code-interpreter kernels (default: "
              "../share/sandpit/kernels\n"
              "                          from this binary; none: the code API is off)\n"
              "  --runtime NAME|PATH     OCI runtime CLI (default runc)\n"
              "  --cgroup-parent NAME    parent cgroup of all sandboxes (default sandpit)\n"
              "  --cgroup-version auto|v1|v2\n"
              "  --sandbox-cidr CIDR     give sandboxes a veth and an address from CIDR\n"
              "                          (default: loopback-only sandboxes)\n"
              "  --blocked-cidr CIDR     never reachable from sandboxes (repeatable)\n"
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

/* The gateway in local mode: E2B's API over this agent's own socket. */
static int gateway_start(const char *listen, const char *socket_path, const char *state_dir,
                         bool internet, GwServer **ret)
{
        cleanup_free char *url = NULL, *tokens = NULL;
        if (asprintf(&url, "unix://%s", socket_path) < 0)
                return -ENOMEM;
        if (asprintf(&tokens, "%s/gateway-tokens", state_dir) < 0)
                return -ENOMEM;
        GwConfig gc = {.listen = listen, .e2b = {.internet = internet}, .token_file = tokens};
        int r = gw_backend_local_new(url, NULL, &gc.backend);
        if (r < 0)
                return log_error_errno(r, "cannot make the gateway's backend");
        r = gw_server_start(&gc, ret);
        if (r < 0)
                return log_error_errno(r, "cannot serve the gateway on %s", listen);
        log_info("gateway (E2B API) on %s, tcp port %u", listen, gw_server_port(*ret));
        return 0;
}

int main(int argc, char **argv)
{
        enum {
                OPT_STANDALONE = 256,
                OPT_SOCKET,
                OPT_LISTEN,
                OPT_GATEWAY_LISTEN,
                OPT_TOKEN_FILE,
                OPT_STATE_DIR,
                OPT_TEMPLATES_DIR,
                OPT_INIT,
                OPT_KERNELS_DIR,
                OPT_RUNTIME,
                OPT_CGROUP_PARENT,
                OPT_CGROUP_VERSION,
                OPT_LOG_FORMAT,
                OPT_LOG_LEVEL,
                OPT_SANDBOX_CIDR,
                OPT_BLOCKED_CIDR,
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
                OPT_HELP,
        };
        static const struct option opts[] = {
                {"standalone", no_argument, NULL, OPT_STANDALONE},
                {"socket", required_argument, NULL, OPT_SOCKET},
                {"listen", required_argument, NULL, OPT_LISTEN},
                {"gateway-listen", required_argument, NULL, OPT_GATEWAY_LISTEN},
                {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
                {"state-dir", required_argument, NULL, OPT_STATE_DIR},
                {"templates-dir", required_argument, NULL, OPT_TEMPLATES_DIR},
                {"init", required_argument, NULL, OPT_INIT},
                {"kernels-dir", required_argument, NULL, OPT_KERNELS_DIR},
                {"runtime", required_argument, NULL, OPT_RUNTIME},
                {"cgroup-parent", required_argument, NULL, OPT_CGROUP_PARENT},
                {"cgroup-version", required_argument, NULL, OPT_CGROUP_VERSION},
                {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
                {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
                {"sandbox-cidr", required_argument, NULL, OPT_SANDBOX_CIDR},
                {"blocked-cidr", required_argument, NULL, OPT_BLOCKED_CIDR},
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
                {"help", no_argument, NULL, OPT_HELP},
                {0},
        };
        Agent agent = {0};
        AgentConfig *cfg = &agent.cfg;
        const char *socket_path = "/run/sandpit/agent.sock", *listen_addr = NULL,
                   *token_file = NULL, *gateway_listen = NULL;
        bool standalone = false;
        ClusterArgs ca = {0};
        HttpServerConfig hc = {.max_body = MAX_BODY, .spool_limit = api_files_spool_limit};
        LogFormat log_format = LOG_FORMAT_JSON;
        LogLevel log_level = LOG_LEVEL_INFO;
        cfg->state_dir = "/run/sandpit";
        cfg->templates_dir = "/var/lib/sandpit/templates";
        cfg->runtime = "runc";
        cfg->cgroup_parent = "sandpit";
        cfg->cgroup_version = CG_VERSION_AUTO;
        cfg->net.table = "sandpit";
        cleanup_free char **blocked = calloc((size_t) argc + 1, sizeof(char *)); /* borrows argv */
        size_t nblocked = 0;
        if (!blocked)
                return 1;
        cfg->net.blocked_cidrs = blocked;

        int c, option_index = 0;
        while ((c = getopt_long(argc, argv, "", opts, &option_index)) != -1) {
                switch (c) {
                case OPT_STANDALONE:
                        standalone = true;
                        break;
                case OPT_SOCKET:
                        socket_path = optarg;
                        break;
                case OPT_LISTEN:
                        listen_addr = optarg;
                        break;
                case OPT_GATEWAY_LISTEN:
                        gateway_listen = optarg;
                        break;
                case OPT_TOKEN_FILE:
                        token_file = optarg;
                        break;
                case OPT_STATE_DIR:
                        cfg->state_dir = optarg;
                        break;
                case OPT_TEMPLATES_DIR:
                        cfg->templates_dir = optarg;
                        break;
                case OPT_INIT:
                        cfg->init_path = optarg;
                        break;
                case OPT_KERNELS_DIR:
                        cfg->kernels_dir = optarg;
                        break;
                case OPT_RUNTIME:
                        cfg->runtime = optarg;
                        break;
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
                        if (log_parse_format(optarg, &log_format) < 0) {
                                fprintf(stderr, "sandpit-agent: bad --log-format %s\n", optarg);
                                return 2;
                        }
                        break;
                case OPT_LOG_LEVEL:
                        if (log_parse_level(optarg, &log_level) < 0) {
                                fprintf(stderr, "sandpit-agent: bad --log-level %s\n", optarg);
                                return 2;
                        }
                        break;
                case OPT_SANDBOX_CIDR:
                        cfg->net.sandbox_cidr = optarg;
                        break;
                case OPT_BLOCKED_CIDR:
                        blocked[nblocked++] = optarg;
                        break;
                case OPT_DNS:
                        cfg->net.dns = optarg;
                        break;
                case OPT_NET_TABLE:
                        cfg->net.table = optarg;
                        break;
                case OPT_KUBECONFIG:
                        ca.kubeconfig = optarg;
                        break;
                case OPT_CONTEXT:
                        ca.context = optarg;
                        break;
                case OPT_IN_CLUSTER:
                        ca.in_cluster = true;
                        break;
                case OPT_NODE_NAME:
                case OPT_NAMESPACE:
                case OPT_ADVERTISE:
                case OPT_CAPACITY_CPU:
                case OPT_CAPACITY_MEMORY:
                case OPT_LEASE_DURATION:
                        *(c == OPT_NODE_NAME         ? &ca.node_name
                          : c == OPT_NAMESPACE       ? &ca.namespace
                          : c == OPT_ADVERTISE       ? &ca.advertise
                          : c == OPT_CAPACITY_CPU    ? &ca.capacity_cpu
                          : c == OPT_CAPACITY_MEMORY ? &ca.capacity_memory
                                                     : &ca.lease_duration) = optarg;
                        ca.any_cluster_flag = true;
                        break;
                case OPT_HTTP_HEADER_TIMEOUT:
                case OPT_HTTP_IDLE_TIMEOUT:
                case OPT_HTTP_MAX_UNAUTH:
                case OPT_HTTP_MAX_UNAUTH_PER_IP: {
                        bool secs = c == OPT_HTTP_HEADER_TIMEOUT || c == OPT_HTTP_IDLE_TIMEOUT;
                        unsigned v = 0;
                        if (parse_limit(optarg, secs ? 86400 : HTTP_CONNECTION_LIMIT / 2, &v) < 0) {
                                fprintf(stderr, "sandpit-agent: bad --%s %s (1 to %u)\n",
                                        opts[option_index].name, optarg,
                                        secs ? 86400 : HTTP_CONNECTION_LIMIT / 2);
                                return 2;
                        }
                        *(c == OPT_HTTP_HEADER_TIMEOUT ? &hc.header_timeout_s
                          : c == OPT_HTTP_IDLE_TIMEOUT ? &hc.idle_timeout_s
                          : c == OPT_HTTP_MAX_UNAUTH   ? &hc.max_unauth
                                                       : &hc.max_unauth_per_ip) = v;
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
        if (optind < argc) {
                fprintf(stderr, "sandpit-agent: unexpected argument\n");
                return 2;
        }
        char cerr[512];
        if (cluster_args_check(&ca, standalone, listen_addr, token_file, cerr, sizeof(cerr)) < 0) {
                fprintf(stderr, "sandpit-agent: %s\n", cerr);
                return 1;
        }
        if (!socket_path || !*socket_path) {
                fprintf(stderr, "sandpit-agent: --socket needs a path\n");
                return 2;
        }
        if (listen_addr && !token_file) {
                fprintf(stderr, "sandpit-agent: --listen needs --token-file\n");
                return 2;
        }
        log_setup("sandpit-agent", log_format, log_level);

        cleanup_free char *init_default = NULL;
        if (!cfg->init_path) {
                init_default = default_init_path();
                if (!init_default)
                        return log_error_errno(-ENOMEM, "out of memory"), 1;
                cfg->init_path = init_default;
        }
        cleanup_free char *kernels_default = NULL;
        if (!cfg->kernels_dir) {
                kernels_default = path_next_to_self("../share/sandpit/kernels");
                cfg->kernels_dir = kernels_default;
        }
        cleanup_free char *kernels_real =
                cfg->kernels_dir ? realpath(cfg->kernels_dir, NULL) : NULL;
        if (cfg->kernels_dir && !kernels_real)
                log_warning("no code-interpreter kernels at %s: the code API is off",
                            cfg->kernels_dir);
        cfg->kernels_dir = kernels_real;
        cleanup_free char *token = NULL;
        if (token_file) {
                int r = read_token_file(token_file, 16, &token);
                if (r < 0) {
                        log_error_errno(r, "cannot read a token (16+ characters) from %s",
                                        token_file);
                        cluster_args_done(&ca);
                        return 1;
                }
        }

        /* Signals are taken synchronously by this thread; block them before
         * any thread starts so every thread inherits the mask. */
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        (void) pthread_sigmask(SIG_BLOCK, &mask, NULL);
        (void) signal(SIGPIPE, SIG_IGN);

        int r = agent_init(&agent);
        if (r < 0) {
                cluster_args_done(&ca);
                agent_done(&agent);
                return 1;
        }
        r = sandbox_recover(&agent);
        if (r == 0)
                r = agent_start_monitor(&agent);
        cleanup_free char *sock_dir = strdup(socket_path);
        char *slash = sock_dir ? strrchr(sock_dir, '/') : NULL;
        if (slash && slash != sock_dir) {
                *slash = 0;
                (void) mkdir_p(sock_dir, 0755);
        }
        HttpServer *srv = NULL;
        if (r == 0) {
                hc.unix_path = socket_path;
                hc.tcp_listen = listen_addr;
                hc.token = token;
                r = http_server_start(&hc, api_handle, &agent, &srv);
                if (r < 0)
                        log_error_errno(r, "cannot serve on %s%s%s", socket_path,
                                        listen_addr ? " and " : "", listen_addr ? listen_addr : "");
        }
        Cluster *cluster = NULL;
        if (r == 0 && cluster_args_enabled(&ca)) {
                r = cluster_args_start(&ca, listen_addr, http_server_tcp_port(srv), SANDPIT_VERSION,
                                       &cluster);
                if (r < 0) {
                        log_error_errno(r, "cannot start cluster mode");
                        http_server_free(srv);
                }
        }
        cluster_args_done(&ca);
        GwServer *gateway = NULL;
        if (r == 0 && gateway_listen) {
                r = gateway_start(gateway_listen, socket_path, cfg->state_dir,
                                  cfg->net.sandbox_cidr != NULL, &gateway);
                if (r < 0) {
                        cluster_stop(cluster);
                        http_server_free(srv);
                }
        }
        if (r < 0) {
                agent_done(&agent);
                return 1;
        }
        if (listen_addr)
                log_info("serving on %s and tcp port %u", socket_path, http_server_tcp_port(srv));
        else
                log_info("serving on %s", socket_path);

        int sig = 0;
        while (sigwait(&mask, &sig) != 0 || sig == SIGHUP)
                ;
        log_info("signal %d: stopping; sandboxes keep running for the next agent", sig);
        gw_server_free(gateway);
        cluster_stop(cluster); /* deregister first: the operator stops calling */
        http_server_free(srv);
        agent_done(&agent);
        if (token)
                explicit_bzero(token, strlen(token));
        return 0;
}
