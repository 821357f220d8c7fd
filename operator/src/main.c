/* sandpit-operator: reconciles Sandbox objects through the node agents that
 * registered with Leases. See docs/operator.md. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "operator.h"
#include "sandpit/agent-client.h"
#include "sandpit/k8s-config.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/ticker.h"
#include "sandpit/util.h"

#define MAX_WORKERS     64
#define SYNC_TIMEOUT_MS 60000L

static void usage(FILE *f)
{
        fputs("usage: sandpit-operator (--kubeconfig FILE [--context NAME] | --in-cluster)\n"
              "         --agent-token-file FILE [--namespace NS] [--health-listen ADDR:PORT]\n"
              "         [--agent-ca FILE [--agent-server-name NAME]] [--agent-insecure-http]\n"
              "         [--workers N] [--resync-seconds S] [--log-format json|text]\n"
              "         [--log-level debug|info|warning|error] [--version]\n"
              "         [--orphan-resync-seconds S] [--orphan-grace-seconds S]\n"
              "         [--node-lost-grace D]\n"
              "         [--leader-elect[=true|false] | --no-leader-elect]\n"
              "         [--leader-election-id NAME] [--identity ID] [--lease-duration D]\n"
              "         [--renew-deadline D] [--retry-period D]\n"
              "         [--gateway-listen ADDR:PORT [--gateway-namespace NS]\n"
              "          [--gateway-create-timeout D] [--gateway-internet[=true|false]]\n"
              "          [--gateway-domain DOMAIN] [--gateway-tls-cert FILE --gateway-tls-key "
              "FILE]\n"
              "          [--gateway-auth keys|none]]\n"
              "Leader election (on by default): one replica reconciles; the others stand by\n"
              "and take over the Lease NAME (default " LEADER_DEFAULT_LEASE_NAME
              ") in --namespace.\n"
              "Durations D: 15s, 500ms, 1.5s, 1m (defaults 15s, 10s, 2s); retry-period <\n"
              "renew-deadline < lease-duration.\n"
              "--node-lost-grace D (default 60s): a node whose agent deregistered (deleted\n"
              "its Lease, as on SIGTERM) fails its Sandboxes as NodeLost after this long;\n"
              "one whose Lease stopped renewing, as soon as the Lease expires.\n"
              "--gateway-listen serves E2B's API on every replica, its sandboxes Sandbox\n"
              "objects in --gateway-namespace (default: default); a create waits for Ready\n"
              "up to --gateway-create-timeout (default 60s). --gateway-domain routes host\n"
              "names <port>-<id>.DOMAIN (E2B_DOMAIN mode); TLS from the PEM files given.\n"
              "--gateway-auth keys (default) "
              "takes the API keys of the Secret sandpit-api-keys in --namespace and\n"
              "Kubernetes tokens (RBAC), each caller's Sandboxes in its own namespace;\n"
              "none: any key, Sandboxes in --gateway-namespace.\n"
              "Agents at https:// addresses are verified against --agent-ca (PEM) and must\n"
              "carry the name --agent-server-name (default " AGENT_DEFAULT_SERVER_NAME
              ") whatever\n"
              "address their Lease gives; http:// addresses are refused unless\n"
              "--agent-insecure-http (docs/security.md).\n",
              f);
}

/* The orphan resync acts only while this replica leads: each pass is a
 * piece of work of the current term, and each removal checks it again. */
static bool orphans_begin(void *userdata)
{
        Operator *op = userdata;
        return leader_begin(op->leader);
}

static bool orphans_may_act(void *userdata)
{
        Operator *op = userdata;
        return leader_check(op->leader) == 0;
}

static void enqueue(const char *key, void *userdata)
{
        Operator *op = userdata;
        (void) k8s_workqueue_add(op->queue, key);
}

static void on_sbx_add(const char *key, json_object *obj, void *userdata)
{
        (void) obj;
        enqueue(key, userdata);
        operator_gateway_notify(userdata);
}

static void on_sbx_update(const char *key, json_object *old_obj, json_object *new_obj,
                          void *userdata)
{
        (void) old_obj;
        (void) new_obj;
        enqueue(key, userdata);
        operator_gateway_notify(userdata);
}

static void on_sbx_delete(const char *key, json_object *obj, void *userdata)
{
        (void) obj;
        /* The reconcile finds it gone and forgets its placement. */
        enqueue(key, userdata);
        operator_gateway_notify(userdata);
}

/* Any change of a SandboxTemplate: a pools pass (pools.c) looks at them all. */
static void on_tmpl_add(const char *key, json_object *obj, void *userdata)
{
        (void) key;
        (void) obj;
        enqueue(POOLS_KEY, userdata);
}

static void on_tmpl_update(const char *key, json_object *old_obj, json_object *new_obj,
                           void *userdata)
{
        (void) key;
        /* Its status alone (our own writes among them) changes no pool. */
        json_object *os = NULL, *ns = NULL;
        if (json_object_object_get_ex(old_obj, "spec", &os) &&
            json_object_object_get_ex(new_obj, "spec", &ns) && json_object_equal(os, ns) &&
            streq(k8s_obj_uid(old_obj) ?: "", k8s_obj_uid(new_obj) ?: "") &&
            !json_field(json_field(new_obj, "metadata"), "deletionTimestamp"))
                return;
        enqueue(POOLS_KEY, userdata);
}

static void on_tmpl_delete(const char *key, json_object *obj, void *userdata)
{
        (void) key;
        (void) obj;
        enqueue(POOLS_KEY, userdata);
}

/* Room may have appeared (or an agent gone): retry every Sandbox not placed. */
static void requeue_unplaced(Operator *op)
{
        cleanup_strv char **keys = NULL;
        if (!op->sandboxes || k8s_informer_keys(op->sandboxes, &keys) < 0)
                return;
        STRV_FOREACH(k, keys) {
                json_object *o = NULL;
                if (k8s_informer_get(op->sandboxes, *k, &o) < 0)
                        continue;
                json_object *st = NULL, *node = NULL;
                if (!json_object_object_get_ex(o, "status", &st) ||
                    !json_object_object_get_ex(st, "nodeName", &node))
                        (void) k8s_workqueue_add(op->queue, *k);
                json_object_put(o);
        }
}

/* The leader election Lease lives in the same namespace: its renewals say
 * nothing about room on agents. */
static bool is_agent_lease(json_object *obj)
{
        const char *name = k8s_obj_name(obj);
        return name && strncmp(name, AGENT_LEASE_PREFIX, strlen(AGENT_LEASE_PREFIX)) == 0;
}

static void on_lease_add(const char *key, json_object *obj, void *userdata)
{
        (void) key;
        if (is_agent_lease(obj)) {
                requeue_unplaced(userdata);
                /* A new node, or an agent back from a restart: its pools. */
                enqueue(POOLS_KEY, userdata);
        }
}

static void on_lease_update(const char *key, json_object *old_obj, json_object *new_obj,
                            void *userdata)
{
        (void) key;
        if (!is_agent_lease(new_obj))
                return;
        /* A renewal alone (same capacity) changes nothing for placement. */
        json_object *oa = NULL, *na = NULL, *om = NULL, *nm = NULL;
        if (json_object_object_get_ex(old_obj, "metadata", &om) &&
            json_object_object_get_ex(new_obj, "metadata", &nm) &&
            json_object_object_get_ex(om, "annotations", &oa) &&
            json_object_object_get_ex(nm, "annotations", &na) && json_object_equal(oa, na))
                return;
        requeue_unplaced(userdata);
}

typedef struct {
        Operator *op;
        pthread_t thread;
} Worker;

static void *worker_main(void *arg)
{
        Worker *w = arg;
        for (;;) {
                /* A standby replica reconciles nothing; keys wait in the queue. */
                if (!leader_wait(w->op->leader))
                        break;
                char *key = NULL;
                int r = k8s_workqueue_get(w->op->queue, -1, &key);
                if (r == -ESHUTDOWN)
                        break;
                if (r < 0)
                        continue;
                if (!leader_begin(w->op->leader)) {
                        /* Lost meanwhile: kept for the next term. */
                        (void) k8s_workqueue_add(w->op->queue, key);
                        k8s_workqueue_done(w->op->queue, key);
                        free(key);
                        continue;
                }
                uint64_t t0 = now_monotonic_us();
                bool pools = streq(key, POOLS_KEY);
                long ret = pools ? pools_sync(w->op) : reconcile_sandbox(w->op, key);
                if (!pools)
                        op_metrics_note_reconcile(ret, (double) (now_monotonic_us() - t0) / 1e6);
                if (ret < 0) {
                        long d = k8s_workqueue_add_rate_limited(w->op->queue, key);
                        log_debug_errno((int) ret, "Sandbox %s: retry in %ld ms", key, d);
                } else {
                        k8s_workqueue_forget(w->op->queue, key);
                        if (ret > 0)
                                (void) k8s_workqueue_add_after(w->op->queue, key, ret);
                }
                k8s_workqueue_done(w->op->queue, key);
                free(key);
        }
        return NULL;
}

/* Every period every Sandbox is reconciled again: lost nodes are noticed
 * without any event on the object. */
static void resync_tick(void *userdata)
{
        Operator *op = userdata;
        cleanup_strv char **keys = NULL;
        if (k8s_informer_keys(op->sandboxes, &keys) >= 0)
                STRV_FOREACH(k, keys)
                        (void) k8s_workqueue_add(op->queue, *k);
        /* The warm pools too: refills seen, a restarted agent's pools put back. */
        (void) k8s_workqueue_add(op->queue, POOLS_KEY);
}

/* The health server answers from before setup(): 503 until it is done. */
static bool is_ready(void *userdata)
{
        Operator *op = userdata;
        return operator_built(op) && k8s_informer_has_synced(op->sandboxes) &&
               k8s_informer_has_synced(op->leases);
}

typedef struct {
        const char *kubeconfig;
        const char *context;
        bool in_cluster;
        const char *namespace;
        const char *token_file;
        const char *agent_ca;          /* --agent-ca: PEM CAs of https:// agents */
        const char *agent_server_name; /* the name their certificates carry */
        bool agent_insecure_http;      /* http:// agents allowed */
        const char *health_listen;
        long workers;
        long resync_s;
        bool leader_elect;
        LeaderConfig leader;
        long orphan_resync_s; /* 0: off */
        long orphan_grace_s;
        long node_lost_grace_ms;
        LogFormat log_format;
        LogLevel log_level;
        OperatorGatewayOptions gateway; /* listen NULL: no gateway */
} Options;

static int parse_long(const char *s, long min, long max, long *ret)
{
        char *end = NULL;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || !*s || *end || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* The flags, one row each: what a flag sets in Options and how its value is
 * checked (as cli/src/args.c does for the CLI's options). */
typedef enum {
        FLAG_HELP,
        FLAG_VERSION,
        FLAG_STRING,      /* const char * = the argument */
        FLAG_SET,         /* bool = true */
        FLAG_CLEAR,       /* bool = false */
        FLAG_BOOL_VALUE,  /* bool, from an optional =true or =false (none: true) */
        FLAG_LONG,        /* long in min..max */
        FLAG_DURATION_MS, /* long, "15s", "500ms", "1.5s" */
        FLAG_LOG_FORMAT,
        FLAG_LOG_LEVEL,
} FlagKind;

typedef struct {
        const char *name;
        FlagKind kind;
        size_t offset; /* of the field in Options */
        long min, max; /* FLAG_LONG */
} Flag;

#define OPT_FIELD(f) offsetof(Options, f)

static const Flag flags[] = {
        {"help", FLAG_HELP, 0, 0, 0},
        {"kubeconfig", FLAG_STRING, OPT_FIELD(kubeconfig), 0, 0},
        {"context", FLAG_STRING, OPT_FIELD(context), 0, 0},
        {"in-cluster", FLAG_SET, OPT_FIELD(in_cluster), 0, 0},
        {"namespace", FLAG_STRING, OPT_FIELD(namespace), 0, 0},
        {"agent-token-file", FLAG_STRING, OPT_FIELD(token_file), 0, 0},
        {"agent-ca", FLAG_STRING, OPT_FIELD(agent_ca), 0, 0},
        {"agent-server-name", FLAG_STRING, OPT_FIELD(agent_server_name), 0, 0},
        {"agent-insecure-http", FLAG_SET, OPT_FIELD(agent_insecure_http), 0, 0},
        {"health-listen", FLAG_STRING, OPT_FIELD(health_listen), 0, 0},
        {"workers", FLAG_LONG, OPT_FIELD(workers), 1, MAX_WORKERS},
        {"resync-seconds", FLAG_LONG, OPT_FIELD(resync_s), 1, 86400},
        {"log-format", FLAG_LOG_FORMAT, OPT_FIELD(log_format), 0, 0},
        {"log-level", FLAG_LOG_LEVEL, OPT_FIELD(log_level), 0, 0},
        {"version", FLAG_VERSION, 0, 0, 0},
        {"leader-elect", FLAG_BOOL_VALUE, OPT_FIELD(leader_elect), 0, 0},
        {"no-leader-elect", FLAG_CLEAR, OPT_FIELD(leader_elect), 0, 0},
        {"leader-election-id", FLAG_STRING, OPT_FIELD(leader.lease_name), 0, 0},
        {"identity", FLAG_STRING, OPT_FIELD(leader.identity), 0, 0},
        {"lease-duration", FLAG_DURATION_MS, OPT_FIELD(leader.lease_duration_ms), 0, 0},
        {"renew-deadline", FLAG_DURATION_MS, OPT_FIELD(leader.renew_deadline_ms), 0, 0},
        {"retry-period", FLAG_DURATION_MS, OPT_FIELD(leader.retry_period_ms), 0, 0},
        {"orphan-resync-seconds", FLAG_LONG, OPT_FIELD(orphan_resync_s), 0, 86400},
        {"orphan-grace-seconds", FLAG_LONG, OPT_FIELD(orphan_grace_s), 0, 86400},
        {"node-lost-grace", FLAG_DURATION_MS, OPT_FIELD(node_lost_grace_ms), 0, 0},
        {"gateway-listen", FLAG_STRING, OPT_FIELD(gateway.listen), 0, 0},
        {"gateway-namespace", FLAG_STRING, OPT_FIELD(gateway.namespace), 0, 0},
        {"gateway-create-timeout", FLAG_DURATION_MS, OPT_FIELD(gateway.create_timeout_ms), 0, 0},
        {"gateway-internet", FLAG_BOOL_VALUE, OPT_FIELD(gateway.internet), 0, 0},
        {"gateway-domain", FLAG_STRING, OPT_FIELD(gateway.domain), 0, 0},
        {"gateway-tls-cert", FLAG_STRING, OPT_FIELD(gateway.tls_cert), 0, 0},
        {"gateway-tls-key", FLAG_STRING, OPT_FIELD(gateway.tls_key), 0, 0},
        {"gateway-auth", FLAG_STRING, OPT_FIELD(gateway.auth), 0, 0},
};

/* Applies one flag (arg: its value, or NULL); 0, or the parse_args() status. */
static int apply_flag(const Flag *f, const char *arg, const char *word, Options *o)
{
        void *field = (char *) o + f->offset;
        switch (f->kind) {
        case FLAG_HELP:
                usage(stdout);
                return 1;
        case FLAG_VERSION:
                printf("sandpit-operator %s\n", OPERATOR_VERSION);
                return 1;
        case FLAG_STRING:
                *(const char **) field = arg;
                return 0;
        case FLAG_SET:
        case FLAG_CLEAR:
                *(bool *) field = f->kind == FLAG_SET;
                return 0;
        case FLAG_BOOL_VALUE: {
                /* The optional value, after '=' (optarg stays untested: the
                 * analyzer would take it for NULL everywhere). */
                const char *eq = strchr(word, '=');
                if (!eq || streq(eq + 1, "true")) {
                        *(bool *) field = true;
                } else if (streq(eq + 1, "false")) {
                        *(bool *) field = false;
                } else {
                        fprintf(stderr, "sandpit-operator: --%s takes true or false\n", f->name);
                        return 3;
                }
                return 0;
        }
        case FLAG_LONG:
                if (parse_long(arg, f->min, f->max, field) < 0) {
                        fprintf(stderr, "sandpit-operator: --%s takes %ld..%ld\n", f->name, f->min,
                                f->max);
                        return 3;
                }
                return 0;
        case FLAG_DURATION_MS:
                if (leader_parse_duration_ms(arg, field) < 0) {
                        fprintf(stderr,
                                "sandpit-operator: bad duration '%s' for --%s (e.g. 15s, 500ms, "
                                "1.5s)\n",
                                arg, f->name);
                        return 3;
                }
                return 0;
        case FLAG_LOG_FORMAT:
        case FLAG_LOG_LEVEL:
                if ((f->kind == FLAG_LOG_FORMAT ? log_parse_format(arg, field)
                                                : log_parse_level(arg, field)) < 0) {
                        fprintf(stderr, "sandpit-operator: bad --%s '%s'\n", f->name, arg);
                        return 3;
                }
                return 0;
        }
        return 3;
}

/* 0: run; > 0: exit with that status - 1 (help, version, usage errors). */
static int parse_args(int argc, char **argv, Options *o)
{
        struct option longopts[ARRAY_SIZE(flags) + 1];
        for (size_t i = 0; i < ARRAY_SIZE(flags); i++) {
                FlagKind k = flags[i].kind;
                bool no_arg =
                        k == FLAG_HELP || k == FLAG_VERSION || k == FLAG_SET || k == FLAG_CLEAR;
                longopts[i] = (struct option){
                        .name = flags[i].name,
                        .has_arg = k == FLAG_BOOL_VALUE ? optional_argument
                                   : no_arg             ? no_argument
                                                        : required_argument,
                        .val = 0x100 + (int) i,
                };
        }
        longopts[ARRAY_SIZE(flags)] = (struct option){0};
        *o = (Options){.namespace = "sandpit-system",
                       .workers = 2,
                       .resync_s = 10,
                       .leader_elect = true,
                       .leader = {.lease_name = LEADER_DEFAULT_LEASE_NAME,
                                  .lease_duration_ms = LEADER_DEFAULT_LEASE_MS,
                                  .renew_deadline_ms = LEADER_DEFAULT_RENEW_MS,
                                  .retry_period_ms = LEADER_DEFAULT_RETRY_MS},
                       .orphan_resync_s = 60,
                       .orphan_grace_s = 60,
                       .node_lost_grace_ms = 60000,
                       .gateway = {.namespace = "default"},
                       .log_format = LOG_FORMAT_JSON,
                       .log_level = LOG_LEVEL_INFO};
        opterr = 0;
        for (;;) {
                int c = getopt_long(argc, argv, ":h", longopts, NULL);
                if (c == -1)
                        break;
                if (c == 'h')
                        c = 0x100; /* flags[0] is help */
                if (c >= 0x100 && c < 0x100 + (int) ARRAY_SIZE(flags)) {
                        int r = apply_flag(&flags[c - 0x100], optarg, argv[optind - 1], o);
                        if (r != 0)
                                return r;
                } else if (c == ':') {
                        fprintf(stderr, "sandpit-operator: option '%s' needs an argument\n",
                                argv[optind - 1]);
                        return 3;
                } else {
                        fprintf(stderr, "sandpit-operator: unknown option '%s'\n",
                                argv[optind - 1]);
                        return 3;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "sandpit-operator: unexpected argument '%s'\n", argv[optind]);
                return 3;
        }
        if (o->in_cluster == (o->kubeconfig != NULL) || (o->context && o->in_cluster)) {
                fprintf(stderr,
                        "sandpit-operator: give exactly one of --kubeconfig and --in-cluster\n");
                return 3;
        }
        if (o->gateway.auth && !streq(o->gateway.auth, "keys") && !streq(o->gateway.auth, "none")) {
                fprintf(stderr, "sandpit-operator: --gateway-auth takes keys or none\n");
                return 3;
        }
        if (!o->gateway.listen && (o->gateway.create_timeout_ms || o->gateway.internet ||
                                   o->gateway.domain || o->gateway.tls_cert || o->gateway.tls_key ||
                                   o->gateway.auth || !streq(o->gateway.namespace, "default"))) {
                fprintf(stderr, "sandpit-operator: the --gateway-* flags need --gateway-listen\n");
                return 3;
        }
        if (!o->gateway.tls_cert != !o->gateway.tls_key) {
                fprintf(stderr,
                        "sandpit-operator: give both --gateway-tls-cert and --gateway-tls-key\n");
                return 3;
        }
        if (o->gateway.listen && (!*o->gateway.namespace || strlen(o->gateway.namespace) > 63)) {
                fprintf(stderr, "sandpit-operator: --gateway-namespace takes a namespace name\n");
                return 3;
        }
        if (!o->token_file) {
                fprintf(stderr, "sandpit-operator: --agent-token-file is required\n");
                return 3;
        }
        if (o->agent_ca && !*o->agent_ca) {
                fprintf(stderr, "sandpit-operator: --agent-ca takes a file\n");
                return 3;
        }
        if (o->agent_server_name &&
            (!*o->agent_server_name || strpbrk(o->agent_server_name, ":/[]@ \t\r\n"))) {
                fprintf(stderr, "sandpit-operator: --agent-server-name takes a DNS name\n");
                return 3;
        }
        if (o->leader_elect) {
                LeaderConfig check = o->leader;
                if (!check.identity)
                        check.identity = "default";
                const char *why = leader_config_check(&check);
                if (why) {
                        fprintf(stderr, "sandpit-operator: %s\n", why);
                        return 3;
                }
        }
        log_setup("operator", o->log_format, o->log_level);
        return 0;
}

static int setup(Operator *op, const Options *o)
{
        char err[256] = "";
        K8sConfig *cfg = NULL;
        int r = o->in_cluster ? k8s_config_in_cluster(NULL, &cfg, err, sizeof(err))
                              : k8s_config_from_kubeconfig(o->kubeconfig, o->context, &cfg, err,
                                                           sizeof(err));
        if (r < 0)
                return log_error_errno(r, "Cannot load the cluster configuration: %s", err);
        r = k8s_client_new(cfg, &op->client);
        if (r < 0)
                return log_error_errno(r, "Cannot create the Kubernetes client");
        r = read_token_file(o->token_file, 1, &op->agent_token);
        if (r < 0)
                return log_error_errno(r, "Cannot read the agent token from %s", o->token_file);
        if (o->agent_ca && access(o->agent_ca, R_OK) < 0)
                return log_error_errno(-errno, "Cannot read the agents' CA %s", o->agent_ca);
        /* Before any thread: every agent client of this process (reconcile,
         * resync, the gateway) takes these. */
        r = agent_client_set_tls(&(AgentClientTls){
                .ca_file = o->agent_ca,
                .server_name = o->agent_ca || o->agent_server_name
                                       ? (o->agent_server_name ? o->agent_server_name
                                                               : AGENT_DEFAULT_SERVER_NAME)
                                       : NULL,
                .allow_http = o->agent_insecure_http,
        });
        if (r < 0)
                return log_error_errno(r, "Bad --agent-ca or --agent-server-name");
        if (o->agent_insecure_http)
                log_warning("--agent-insecure-http: agents at http:// addresses are spoken to "
                            "in plain HTTP, their token readable on the network");
        r = k8s_workqueue_new(&(K8sWorkQueueOptions){.base_delay_ms = 200, .max_delay_ms = 30000},
                              &op->queue);
        if (r < 0)
                return r;
        K8sInformerHandlers sh = {on_sbx_add, on_sbx_update, on_sbx_delete};
        K8sWatchOptions so = {.resource = operator_sandboxes};
        r = k8s_informer_new(op->client, &so, &sh, op, &op->sandboxes);
        if (r < 0)
                return r;
        K8sInformerHandlers lh = {on_lease_add, on_lease_update, NULL};
        K8sWatchOptions lo = {.resource = operator_leases, .namespace = o->namespace};
        r = k8s_informer_new(op->client, &lo, &lh, op, &op->leases);
        if (r < 0)
                return r;
        r = k8s_informer_start(op->leases);
        if (r >= 0)
                r = k8s_informer_wait_synced(op->leases, SYNC_TIMEOUT_MS);
        if (r < 0)
                return log_error_errno(r, "The lease informer did not sync");
        r = k8s_informer_start(op->sandboxes);
        if (r >= 0)
                r = k8s_informer_wait_synced(op->sandboxes, SYNC_TIMEOUT_MS);
        if (r < 0)
                return log_error_errno(
                        r, "The sandbox informer did not sync (are the CRDs installed?)");
        K8sInformerHandlers th = {on_tmpl_add, on_tmpl_update, on_tmpl_delete};
        K8sWatchOptions to = {.resource = operator_templates};
        r = k8s_informer_new(op->client, &to, &th, op, &op->templates);
        if (r >= 0)
                r = k8s_informer_start(op->templates);
        if (r >= 0 && k8s_informer_wait_synced(op->templates, SYNC_TIMEOUT_MS) < 0)
                /* Sandboxes go on; warm pools wait for it (pools_sync()). */
                log_warning("The SandboxTemplate informer did not sync: warm pools wait for it "
                            "(may the operator list and watch sandboxtemplates?)");
        if (r < 0)
                return log_error_errno(r, "Cannot watch SandboxTemplates");
        return 0;
}

/* Became the leader: placements are rebuilt from the statuses (another
 * leader may have placed and removed Sandboxes meanwhile) and every cached
 * Sandbox is queued. */
static void on_started_leading(void *userdata)
{
        Operator *op = userdata;
        pthread_mutex_lock(&op->placements_lock);
        scheduler_free(op);
        pthread_mutex_unlock(&op->placements_lock);
        cleanup_strv char **keys = NULL;
        if (k8s_informer_keys(op->sandboxes, &keys) >= 0)
                STRV_FOREACH(k, keys)
                        (void) k8s_workqueue_add(op->queue, *k);
        /* The pools' views of the last term are stale: a pass now. */
        (void) k8s_workqueue_add(op->queue, POOLS_KEY);
}

/* The elector gets its own client: its requests are bounded by the renew
 * deadline, whatever the workers' requests take. */
static int start_leader(Operator *op, Options *o, char *identity, size_t identity_len)
{
        if (!o->leader.identity) {
                char suffix[9];
                int r = random_id(suffix, 8);
                if (r < 0)
                        return r;
                (void) snprintf(identity, identity_len, "%s_%s", op->instance, suffix);
                o->leader.identity = identity;
        }
        o->leader.namespace = o->namespace;
        o->leader.on_started_leading = on_started_leading;
        o->leader.userdata = op;
        char err[256] = "";
        K8sConfig *cfg = NULL;
        K8sClient *client = NULL;
        int r = o->in_cluster ? k8s_config_in_cluster(NULL, &cfg, err, sizeof(err))
                              : k8s_config_from_kubeconfig(o->kubeconfig, o->context, &cfg, err,
                                                           sizeof(err));
        if (r < 0)
                return log_error_errno(r, "Cannot load the cluster configuration: %s", err);
        r = k8s_client_new(cfg, &client);
        if (r >= 0)
                r = leader_start(client, &o->leader, &op->leader);
        if (r < 0)
                return log_error_errno(r, "Cannot start leader election");
        return 0;
}

static void teardown(Operator *op)
{
        leader_free(op->leader);
        op->leader = NULL;
        k8s_informer_free(op->sandboxes);
        k8s_informer_free(op->leases);
        k8s_informer_free(op->templates);
        k8s_workqueue_free(op->queue);
        scheduler_free(op);
        pools_free(op);
        agents_free(op);
        k8s_client_free(op->client);
        if (op->agent_token)
                explicit_bzero(op->agent_token, strlen(op->agent_token));
        free(op->agent_token);
        pthread_mutex_destroy(&op->placements_lock);
}

int main(int argc, char **argv)
{
        Options o;
        int r = parse_args(argc, argv, &o);
        if (r > 0)
                return r - 1;

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        char host[256] = "sandpit-operator";
        (void) gethostname(host, sizeof(host) - 1);
        const char *pod = getenv("POD_NAME");
        Operator op = {.namespace = o.namespace,
                       .instance = pod && *pod ? pod : host,
                       .agent = &agent_http_ops,
                       .node_lost_grace_ms = (uint64_t) o.node_lost_grace_ms};
        pthread_mutex_init(&op.placements_lock, NULL);

        HealthServer *health = NULL;
        if (o.health_listen) {
                r = health_start(o.health_listen, is_ready, &op, &health);
                if (r < 0) {
                        log_error_errno(r, "Cannot serve health on %s", o.health_listen);
                        teardown(&op);
                        return 1;
                }
        }
        char identity[512];
        r = setup(&op, &o);
        if (r >= 0 && o.leader_elect)
                r = start_leader(&op, &o, identity, sizeof(identity));
        if (r < 0) {
                health_free(health);
                teardown(&op);
                return 1;
        }
        GwServer *gateway = NULL;
        if (o.gateway.listen && operator_gateway_start(&op, &o.gateway, &gateway) < 0) {
                leader_stop(op.leader);
                health_free(health);
                teardown(&op);
                return 1;
        }
        __atomic_store_n(&op.built, true, __ATOMIC_RELEASE);

        Worker workers[MAX_WORKERS];
        long started = 0;
        for (; started < o.workers; started++) {
                workers[started].op = &op;
                if (pthread_create(&workers[started].thread, NULL, worker_main, &workers[started]))
                        break;
        }
        Ticker *resync = NULL;
        if (ticker_start(o.resync_s * 1000, resync_tick, &op, &resync) < 0)
                log_warning("Cannot start the resync");
        OrphanResync *orphans = NULL;
        if (o.orphan_resync_s > 0 &&
            orphan_resync_start(&op,
                                &(OrphanResyncOptions){.period_s = o.orphan_resync_s,
                                                       .grace_s = o.orphan_grace_s,
                                                       .begin = orphans_begin,
                                                       .may_act = orphans_may_act,
                                                       .may_act_data = &op},
                                &orphans) < 0)
                log_warning("Cannot start the orphan resync");
        log_info("operator %s: %ld workers, leases in namespace %s", OPERATOR_VERSION, started,
                 o.namespace);

        int sig = 0;
        while (sigwait(&mask, &sig) != 0 || sig == SIGHUP)
                ;
        log_info("signal %d: stopping", sig);
        operator_gateway_shutdown(&op);
        /* No worker acts after this; the Lease is released once they are joined. */
        leader_stop(op.leader);
        orphan_resync_stop(orphans);
        ticker_stop(resync);
        k8s_informer_stop(op.sandboxes);
        k8s_informer_stop(op.leases);
        k8s_informer_stop(op.templates);
        /* Once no informer handler can wake it. */
        operator_gateway_stop(&op, gateway);
        k8s_workqueue_shutdown(op.queue);
        for (long i = 0; i < started; i++)
                pthread_join(workers[i].thread, NULL);
        health_free(health);
        teardown(&op);
        return 0;
}
