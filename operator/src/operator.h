/* sandpit-operator: shared state of the controller (see docs/operator.md).
 *
 * Threads: the informers' threads only add keys to the queue; N workers take
 * keys and reconcile one Sandbox each (the queue never hands one key to two
 * workers). The placement table is behind its own mutex. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "agent-ops.h"
#include "gateway.h"
#include "leader.h"
#include "sandpit/agent-lease.h"
#include "sandpit/json.h"
#include "sandpit/k8s-client.h"
#include "sandpit/k8s-informer.h"
#include "sandpit/k8s-workqueue.h"
#include "sandpit/prom.h"
#include "sandpit/util.h"

#define OPERATOR_VERSION    SANDPIT_VERSION /* -D from VERSION (mk/config.mk) */
#define OPERATOR_FINALIZER  "sandpit.dev/cleanup"
#define OPERATOR_CONTROLLER "sandpit.dev/operator"
/* The agent-side sandbox id of a Sandbox: this prefix and its uid. */
#define SANDBOX_ID_PREFIX "sbx-"
/* Labels the operator gives every sandbox it creates on an agent: the marks
 * of the orphan resync (resync.c), which never touches a sandbox without. */
#define LABEL_MANAGED_BY       "sandpit.dev/managed-by"
#define LABEL_MANAGED_BY_VALUE "sandpit-operator"
#define LABEL_NAMESPACE        "sandpit.dev/namespace"
#define LABEL_NAME             "sandpit.dev/name"
#define LABEL_RESERVED_PREFIX  "sandpit.dev/"

extern const K8sResource operator_sandboxes;
extern const K8sResource operator_leases;
extern const K8sResource operator_secrets;

/* One placement: a Sandbox (key) put on a node with its requests. */
typedef struct Placement {
        char *key;
        char *node;
        double cpu;
        uint64_t memory;
        struct Placement *next;
} Placement;

typedef struct {
        K8sClient *client;
        K8sInformer *sandboxes;
        K8sInformer *leases;
        K8sWorkQueue *queue;
        const char *namespace; /* where Leases live */
        char *agent_token;     /* a secret: never logged */
        const char *instance;  /* reporting instance for Events */
        LeaderElector *leader; /* NULL: no election (--leader-elect=false) */
        const AgentOps *agent; /* calls to node agents: agent_http_ops, or a test's fake */
        /* The health server runs from before setup: its thread reads the
         * fields above only once main has set this (atomically) after setup. */
        bool built;

        /* The gateway's cluster backend (its data) while --gateway-listen
         * serves: the Sandbox informer's handlers wake its waits. Atomic. */
        void *gateway;
        struct GwAuth *gateway_auth; /* its authorise hook's state (keys mode) */

        pthread_mutex_t placements_lock; /* guards placements, absent_nodes, pool_views */
        Placement *placements;
        K8sInformer *templates; /* SandboxTemplates, for their warm pools (pools.c) */
        struct PoolView *pool_views;
        /* Nodes with placed Sandboxes whose agent has no Lease (agents.c). */
        struct AbsentNode *absent_nodes;
        /* A node without a Lease is lost only after this long (--node-lost-grace). */
        uint64_t node_lost_grace_ms;
} Operator;

/* Whether setup has built the client, caches, queue and elector (for threads
 * started before it). */
static inline bool operator_built(const Operator *op)
{
        return __atomic_load_n(&op->built, __ATOMIC_ACQUIRE);
}

/* agents.c: the registered node agents, from their Leases (lib's agent-lease.h). */
typedef struct AbsentNode AbsentNode;
/* The agent of node (from the lease cache); -ENOENT when none registered.
 * Finding it ends the node's absence (agents_absent_ms()). */
int agents_find(Operator *op, const char *node, AgentInfo *ret);
/* How long node has been without a registered agent, as seen by the
 * reconciles that asked: 0 at the first ask. An agent deletes its Lease on
 * SIGTERM and its successor makes it again (a DaemonSet's rolling update), so
 * a node without a Lease is lost only once this passes --node-lost-grace. */
uint64_t agents_absent_ms(Operator *op, const char *node);
void agents_free(Operator *op);

/* scheduler.c: placement accounting and choice of an agent. */
/* Picks a live agent with room for cpu/memory and records the placement of
 * key there; -ENOSPC with a message saying why in msg when none fits. With
 * pool (the warm pool the create would claim from, or NULL), an agent with a
 * ready pooled sandbox of it comes first. */
int scheduler_place(Operator *op, const char *key, double cpu, uint64_t memory, const char *pool,
                    AgentInfo *ret, char *msg, size_t msglen);
/* Records a placement found in a Sandbox's status (after a restart). */
void scheduler_note(Operator *op, const char *key, const char *node, double cpu, uint64_t memory);
void scheduler_forget(Operator *op, const char *key);
void scheduler_free(Operator *op);

/* status.c: conditions and status building. */
/* Sets condition type in status.conditions (created when absent);
 * lastTransitionTime changes only when status changes. */
void status_set_condition(json_object *status, const char *type, const char *cstatus,
                          const char *reason, const char *message, int64_t generation);
const char *status_condition_status(json_object *status, const char *type);
const char *status_condition_reason(json_object *status, const char *type);

/* spec.c: the agent's create request from a Sandbox. */
extern const K8sResource operator_templates;

typedef struct {
        double cpu;
        uint64_t memory;
        uint64_t disk;
        int64_t pids;
} SandboxResources;

/* What spec.template resolves to. */
typedef struct {
        char *agent_template;   /* the agents' template name ("image:REF" for an image) */
        char *image;            /* source.image, or NULL (docs/images.md) */
        json_object *resources; /* the SandboxTemplate's spec.resources, or NULL */
        bool found;             /* a SandboxTemplate object exists */
        char *pull_secret;      /* source.pullSecret (a Secret in its namespace), or NULL */
        json_object *obj;       /* the SandboxTemplate object (status, warm pool), or NULL */
        json_object *start_cmd; /* spec.startCmd as the agent's create takes it, or NULL */
        char *runtime;          /* spec.runtime (runc, crun, runsc), or NULL: the node's */
        json_object *build;     /* source.build (template-build.c), or NULL */
        char *built_image;      /* with build: the image the nodes build (TEMPLATE_BUILD_PREFIX) */
} SandboxTemplateInfo;

void sandbox_template_done(SandboxTemplateInfo *t);
/* Reads the SandboxTemplate the Sandbox names; with none, the agents'
 * template of that name. A source.image becomes the agents' "image:REF"
 * template (they pull it). -ENOTSUP with msg set when the template asks for
 * what the agents cannot do; other errors are the API's. */
int sandbox_template_resolve(Operator *op, json_object *sbx, SandboxTemplateInfo *ret, char *msg,
                             size_t msglen);
/* The same from a SandboxTemplate object (tmpl, borrowed; *ret holds a
 * reference to it). */
int sandbox_template_from_object(json_object *tmpl, SandboxTemplateInfo *ret, char *msg,
                                 size_t msglen);
/* The image pull credentials in Secret ns/name (kubernetes.io/dockerconfigjson):
 * *ret the parsed .dockerconfigjson, a secret, never logged. -ENOENT (no such
 * Secret) or -EINVAL (not such a Secret) with msg set. */
int sandbox_pull_auth(Operator *op, const char *ns, const char *name, json_object **ret, char *msg,
                      size_t msglen);
/* The sandbox's limits: spec.resources, else the template's (t may be NULL),
 * else the built-in defaults; -EINVAL when a value is malformed. */
int sandbox_resources(json_object *sbx, const SandboxTemplateInfo *t, SandboxResources *ret);
/* Those of a placed Sandbox: status.resources, which records what it was
 * given, else as sandbox_resources without a template. */
int sandbox_placed_resources(json_object *sbx, SandboxResources *ret);
/* status.resources: quantities as Kubernetes writes them. */
json_object *sandbox_resources_json(const SandboxResources *r);
/* The agent's "network" request for spec.network (NULL: the agent's default,
 * no egress); port protocols in the agent's spelling ("TCP" -> "tcp"). */
json_object *sandbox_network_json(json_object *sbx);
/* The POST /v1/sandboxes body; secrets are read from the API. On a
 * missing Secret: -ENOENT with msg set. */
int sandbox_create_body(Operator *op, json_object *sbx, const SandboxTemplateInfo *t,
                        const char *id, json_object **ret, char *msg, size_t msglen);

/* template-build.c: SandboxTemplates with source.build (docs/build.md#sandboxtemplates). */
extern const K8sResource operator_configmaps;
/* The image a build template's nodes build: this, its uid and ":latest"
 * (one per template: never the same for two namespaces or templates). */
#define TEMPLATE_BUILD_PREFIX "localhost/sandpit-template-"
/* Checks source.build (dockerfile, context, buildArgs) beyond the CRD's
 * schema: -EINVAL with msg when it is not usable. */
int template_build_check(json_object *build, const char *name, char *msg, size_t msglen);
/* The build context: the Dockerfile (as the agent's ".sandpit-dockerfile")
 * and the files of ConfigMap cm (its data and binaryData; NULL: none) as a
 * tar in an unnamed file, every entry root's, 0644, mtime 0, so that the
 * same inputs give the same tar (the agent's cache keys on it). -EINVAL with
 * msg for a key that cannot be a file or undecodable binaryData. */
int template_build_context(const char *dockerfile, json_object *cm, int *ret_fd, char *msg,
                           size_t msglen);
/* The result of one build on a node. */
typedef struct {
        bool done;        /* the "image" line came */
        char digest[128]; /* its digest */
        char error[1024]; /* the "error" line's message (with the last line of output), or "" */
} TemplateBuildResult;
/* One progress line of the agent's build into r (AgentEventFn's shape). */
int template_build_event(json_object *ev, void *userdata);
/* The build request's parameters (tag, dockerfile, build_arg) for t. */
json_object *template_build_params(const SandboxTemplateInfo *t);
/* One build of image on node at a time in this process (a second Sandbox
 * waits for the first's build, then finds its steps cached): -EBUSY while
 * one is in flight, else marks it; _end() after the build. */
int template_build_begin(const char *node, const char *image);
void template_build_end(const char *node, const char *image);

/* pools.c: warm pools of SandboxTemplates (docs/operator.md#warm-pools). */
/* The work queue's key of a pools pass (never a Sandbox's "ns/name"). */
#define POOLS_KEY         "~pools"
#define POOLS_NAME_PREFIX "sbxt-" /* the agents' pools the operator owns */
#define POOLS_MAX_SIZE    1000
typedef struct PoolView PoolView;
/* spec.warmPool: sizePerNode (per_node) or a total spread over the nodes. */
typedef struct {
        bool per_node;
        unsigned size;
} WarmPoolSpec;
/* tmpl's spec.warmPool; -ENOENT when it has none, -EINVAL when malformed. */
int pools_spec(json_object *tmpl, WarmPoolSpec *ret);
/* What node index (of nodes, sorted by name) keeps: a total's remainder
 * goes to the first ones. */
unsigned pools_node_size(const WarmPoolSpec *w, size_t nodes, size_t index);
/* The agents' pool of tmpl: POOLS_NAME_PREFIX and its uid. */
int pools_name(json_object *tmpl, char *buf, size_t len);
/* The PUT /v1/pools body (without size) for tmpl: the template and shape a
 * Sandbox of it that sets no resources is created with. -ENOTSUP with msg
 * for a template that is never pooled (startCmd), -EINVAL a bad one. */
int pools_request(json_object *tmpl, json_object **ret, char *msg, size_t msglen);
/* Whether an agent's pool (its JSON) has req's template and shape and size. */
bool pools_same(json_object *pool, json_object *req, unsigned size);
/* Whether it has req's shape as the agent keys pools by it (one pool a
 * shape): the template (as asked or as the agent named it), cpu, memory,
 * pids and disk; not the kernel nor the size. */
bool pools_same_shape(json_object *pool, json_object *req);
/* status.warmPool. */
json_object *pools_status_json(long ready, long total, const char *msg);
/* One pass over the live agents and the templates; 0, or < 0 to retry. */
long pools_sync(Operator *op);
/* The pool a create of sbx (of template t) claims from, in buf: -ENOENT
 * when none (no warmPool, a startCmd, or resources other than the
 * template's). */
int pools_for_sandbox(json_object *sbx, const SandboxTemplateInfo *t, char *buf, size_t len);
/* Ready pooled sandboxes of pool on node at the last pass, less those
 * placed since; op->placements_lock held. */
long pools_ready_locked(Operator *op, const char *pool, const char *node);
void pools_take_locked(Operator *op, const char *pool, const char *node);
void pools_free(Operator *op);

/* reconcile.c */
/* Reconciles the Sandbox at key; > 0: requeue after that many ms; 0 done;
 * < 0: failed, requeue with backoff. */
long reconcile_sandbox(Operator *op, const char *key);

/* metrics.c: /metrics (Prometheus text). Counters are process-wide. */
typedef enum { OP_RESULT_SUCCESS, OP_RESULT_REQUEUE, OP_RESULT_ERROR, OP_RESULTS } OpResult;
#define OP_PHASES 5
extern const char *const op_metrics_results[OP_RESULTS];
extern const char *const op_metrics_phases[OP_PHASES];
typedef struct {
        unsigned long lists, events, gone;
        bool synced;
} OpInformerStats;
typedef struct {
        uint64_t reconciles[OP_RESULTS];
        PromHistogram duration;
        size_t queue_depth, queue_delayed;
        uint64_t sandboxes[OP_PHASES]; /* by op_metrics_phases */
        uint64_t sandboxes_other;      /* a phase not in the list */
        OpInformerStats informers[2];  /* sandboxes, leases */
        bool leading;                  /* leads, or runs without election */
        uint64_t orphan_passes, orphans_removed;
        double start_time_s;
} OpMetricsSnapshot;
/* reconcile_sandbox()'s return as a result: < 0 error, > 0 requeue, 0 success. */
OpResult op_metrics_result(long reconcile_ret);
void op_metrics_note_reconcile(long reconcile_ret, double seconds);
/* Index in op_metrics_phases (NULL or "": Pending); -1 when not listed. */
int op_metrics_phase_index(const char *phase);
void op_metrics_snapshot(Operator *op, OpMetricsSnapshot *ret);
int op_metrics_format(const OpMetricsSnapshot *s, char **ret, size_t *ret_len);

/* resync.c: the orphan resync (docs/operator.md). Every period_s, for each
 * live agent, removes the operator's sandboxes (LABEL_MANAGED_BY, id
 * SANDBOX_ID_PREFIX...) older than grace_s that no Sandbox object claims,
 * confirmed by a direct GET. Acts only while may_act(may_act_data) is true
 * (NULL: always), e.g. while this replica leads. */
typedef struct OrphanResync OrphanResync;
typedef struct {
        long period_s;
        long grace_s;
        bool (*may_act)(void *userdata);
        /* Called before each pass (NULL: none); false skips the pass. */
        bool (*begin)(void *userdata);
        void *may_act_data;
} OrphanResyncOptions;
int orphan_resync_start(Operator *op, const OrphanResyncOptions *o, OrphanResync **ret);
void orphan_resync_stop(OrphanResync *rs);
/* One pass: the number of sandboxes removed, or < 0. */
int orphan_resync_pass(Operator *op, long grace_s, bool (*may_act)(void *), void *may_act_data);
/* Does agent sandbox sb (its JSON) carry both of the operator's marks? Then
 * *ret_ns and *ret_name (borrowed) name its Sandbox. */
bool orphan_resync_marked(json_object *sb, const char **ret_ns, const char **ret_name);
/* Does Sandbox obj still claim sandbox id on node: the uid of the id, that
 * node and id in its status, and a phase that is not final? */
bool orphan_resync_claims(json_object *obj, const char *node, const char *id);
/* Counters for /metrics: completed passes, sandboxes removed. */
uint64_t orphan_resync_passes_total(void);
uint64_t orphan_resync_removed_total(void);

/* reconcile.c: the deadline spec.timeout of Sandbox sbx asks for, counted
 * from the agent sandbox's created_at, in microseconds; 0 when unreadable. */
uint64_t sandbox_wanted_deadline_us(json_object *sbx, json_object *sandbox);

/* health.c: /healthz, /readyz and /metrics on a TCP address, no auth. */
typedef struct HealthServer HealthServer;
int health_start(const char *listen, bool (*ready)(void *userdata), Operator *op,
                 HealthServer **ret);
void health_free(HealthServer *h);

/* gateway.c: the E2B gateway with the cluster backend (--gateway-listen). */
typedef struct {
        const char *listen;     /* "ADDR:PORT" */
        const char *namespace;  /* where E2B's sandboxes are made */
        const char *auth;       /* --gateway-auth: "keys" (API keys, Kubernetes tokens) or "none" */
        long create_timeout_ms; /* 0: the gateway's default */
        bool internet;          /* the agents have sandbox networking (--sandbox-cidr) */
        const char *domain;     /* E2B_DOMAIN host routing; NULL: off */
        const char *tls_cert;   /* PEM files; NULL: plain HTTP */
        const char *tls_key;
} OperatorGatewayOptions;
/* After setup (the informers synced). */
int operator_gateway_start(Operator *op, const OperatorGatewayOptions *o, GwServer **ret);
/* From the Sandbox informer's handlers: wakes the gateway's waits. */
void operator_gateway_notify(Operator *op);
/* At a stop signal: the gateway's waits in flight (a create until Ready)
 * end now, not at their timeout. */
void operator_gateway_shutdown(Operator *op);
/* Frees it (NULL does nothing); once the informers are stopped, so that no
 * handler notifies it any more. */
void operator_gateway_stop(Operator *op, GwServer *gw);
