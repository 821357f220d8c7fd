/* The gateway's server: E2B's API (the REST control plane, envd on port 49983,
 * the code interpreter on 49999) on lib's http-server, in front of a backend
 * (GwBackend) that holds the sandboxes. See docs/gateway.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "e2b-api.h"
#include "sandpit/agent-client.h"
#include "sandpit/k8s-client.h"
#include "sandpit/k8s-informer.h"

/* Where the sandboxes live. Every op returns 0 or a negative errno, with a
 * sentence for the caller in err (the agent's message when it answered).
 * Returned objects are the agent's native ones (docs/agent-api.md). The ops
 * are called from many threads at once. */
struct GwBackend;

typedef struct GwBackendOps {
        int (*create)(void *b, json_object *agent_req, json_object **ret, char *err, size_t errlen);
        int (*get)(void *b, const char *id, json_object **ret, char *err, size_t errlen);
        /* Every sandbox (the gateway filters and pages): an array. */
        int (*list)(void *b, json_object **ret, char *err, size_t errlen);
        int (*remove)(void *b, const char *id, char *err, size_t errlen);
        int (*set_timeout)(void *b, const char *id, uint64_t timeout_s, char *err, size_t errlen);
        int (*pause)(void *b, const char *id, char *err, size_t errlen);
        /* timeout_s 0: keep the deadline. *ret the sandbox. */
        int (*resume)(void *b, const char *id, uint64_t timeout_s, json_object **ret, char *err,
                      size_t errlen);
        /* start/end negative: none. *ret the agent's metrics answer. */
        int (*metrics)(void *b, const char *id, int64_t start, int64_t end, json_object **ret,
                       char *err, size_t errlen);
        /* The data plane: a client of the agent that runs sandbox id, for one
         * thread's use; the caller frees it. */
        int (*agent)(void *b, const char *id, AgentClient **ret, char *err, size_t errlen);
        /* The port proxy: the address ("unix://PATH") and bearer token (may
         * be NULL) of the agent that runs sandbox id, malloc'd. Optional:
         * without it, ports other than envd's and the code interpreter's
         * answer 501. */
        int (*agent_address)(void *b, const char *id, char **url, char **token, char *err,
                             size_t errlen);
        /* Optional: the id the agent knows sandbox id by, when the backend's
         * ids are not the agent's (the cluster backend: a Sandbox's name ->
         * its status.sandboxID). The server calls it once a request for a
         * sandbox is authorised, and MCP's tools before they reach a
         * sandbox's agent; the data plane (agent, agent_address and every
         * agent call) then uses the agent's id. -ENOENT: no such
         * running or paused sandbox. */
        int (*agent_id)(void *b, const char *id, char *ret, size_t retlen, char *err,
                        size_t errlen);
        /* Optional: where the per-sandbox access tokens live when every
         * gateway serving these sandboxes must read them (the cluster backend:
         * a Secret per sandbox). Without them, the server keeps them itself
         * (memory and GwConfig.token_file). token_get: -ENOENT when id has
         * none; ret holds GW token length + 1. Errors are logged, never the
         * token. */
        int (*token_put)(void *b, const char *id, const char *token);
        int (*token_get)(void *b, const char *id, char *ret, size_t retlen);
        void (*token_remove)(void *b, const char *id);
        /* Optional: the backend as a caller of namespace ns sees it, for a
         * backend that keeps namespaces apart itself (the cluster backend:
         * Sandbox objects in ns). view: GW_BACKEND_VIEW_SIZE bytes of storage
         * that, with ns, outlive *ret. Without it, the gateway's view
         * (scope.c) only filters by GW_LABEL_NAMESPACE. */
        void (*in_namespace)(void *b, const char *ns, void *view, struct GwBackend *ret);
        void (*free)(void *b);
} GwBackendOps;

typedef struct GwBackend {
        const GwBackendOps *ops;
        void *data;
} GwBackend;

#define GW_BACKEND_VIEW_SIZE (4 * sizeof(void *))

/* The local backend: the sandboxes of the agent at agent_url
 * ("unix:///run/sandpit/agent.sock"), token NULL on a unix socket. */
int gw_backend_local_new(const char *agent_url, const char *token, GwBackend *ret);
void gw_backend_done(GwBackend *b);

/* The cluster backend (backend-cluster.c): Sandbox objects through the
 * Kubernetes API, answered from the Sandbox informer's cache once the
 * operator made them Ready; the data plane goes to the agent that runs each
 * (found through its Lease). Everything here is borrowed and must outlive
 * the backend. */
typedef struct {
        K8sClient *client;      /* thread-safe */
        K8sInformer *sandboxes; /* Sandbox objects of every namespace (or of namespace) */
        K8sInformer *leases;    /* the agents' Leases in lease_namespace */
        const char *lease_namespace;
        /* Where E2B's sandboxes are made and listed. The seam for issue 12:
         * a namespace per API key replaces it (cluster_namespace()). */
        const char *namespace;
        const char *agent_token; /* the agents' bearer token (copied) */
        long create_timeout_ms;  /* create until Ready, kill until gone; 0: the default */
} GwClusterConfig;

#define GW_CLUSTER_CREATE_TIMEOUT_MS 60000L

int gw_backend_cluster_new(const GwClusterConfig *cfg, GwBackend *ret);
/* Wakes the cluster backend's waits (create until Ready, kill until gone,
 * a spec change until acted on): the Sandbox informer's handlers call it on
 * every change. data: the GwBackend's data; NULL does nothing. */
void gw_backend_cluster_notify(void *data);
/* Ends every wait at once with -ECANCELED (the daemon is stopping), before
 * the server is freed. */
void gw_backend_cluster_shutdown(void *data);

/* What a request wants, for the authorise hook. */
typedef enum {
        GW_ACTION_CONTROL,  /* the REST control plane */
        GW_ACTION_ENVD,     /* envd of a sandbox (RPC, /files, /health) */
        GW_ACTION_CODE,     /* the code interpreter's /execute */
        GW_ACTION_CONTEXTS, /* the code interpreter's /contexts (the SDK sends no access token) */
        GW_ACTION_PORT,     /* any other port (getHost): public, as E2B's are by default */
        GW_ACTION_MCP,      /* /mcp (path: "/mcp"), and each MCP tool (path: the tool's name;
                             * sandbox_id: the sandbox it touches, "" to create one) */
} GwAction;

/* The label that holds a sandbox's namespace (docs/auth.md): set at create
 * from the caller's namespace; a backend reports each sandbox's namespace in
 * it (the cluster backend: its Sandbox's metadata.namespace) and takes the
 * namespace to create in from the create request's label. */
#define GW_LABEL_NAMESPACE "sandpit.dev/namespace"
#define GW_NAMESPACE_MAX   63u

typedef struct {
        GwAction action;
        const char *method;
        const char *path;
        const char *api_key;        /* X-API-KEY, or NULL */
        const char *access_token;   /* X-Access-Token, or NULL */
        const char *sandbox_id;     /* "" for the control plane */
        const char *authorization;  /* Authorization, or NULL */
        const char *namespace_hint; /* X-Sandpit-Namespace, or NULL */
        /* Out: the caller's namespace (GW_NAMESPACE_MAX + 1 bytes, "" on the
         * way in). Left "": the caller sees every sandbox (no keys, or the
         * data plane); set: the control plane shows and touches only that
         * namespace's sandboxes (others are 404) and labels what it makes. */
        char *ret_namespace;
} GwAuthRequest;

typedef struct GwServer GwServer;

/* 0: allowed. -ENOKEY (401) or -EACCES (403) with a message in err; -ENOENT
 * (404) for a sandbox that does not exist. */
typedef int (*GwAuthorizeFn)(GwServer *gw, const GwAuthRequest *r, char *err, size_t errlen,
                             void *userdata);

typedef struct {
        const char *listen; /* "ADDR:PORT" */
        /* TLS (PEM files; both or neither): for E2B_DOMAIN mode, where the SDK
         * speaks https to api.<domain> and <port>-<id>.<domain>. The domain
         * itself is e2b.domain (host routing is on when it is set). */
        const char *tls_cert_file;
        const char *tls_key_file;
        GwE2bConfig e2b;         /* template aliases, egress, reported versions */
        GwBackend backend;       /* taken over by the server (freed with it) */
        size_t max_body;         /* 0: GW_MAX_BODY */
        GwAuthorizeFn authorize; /* NULL: gw_authorize_local */
        /* Where the access tokens are kept across restarts (a 0600 file on the
         * agent's state tmpfs); NULL: memory only. */
        const char *token_file;
        void *authorize_userdata;
        /* MCP at /mcp (docs/mcp.md): Origin values allowed besides loopback
         * ones (NULL-terminated, may be NULL), and a session's idle time (0:
         * MCP_SANDBOX_IDLE_DEFAULT). */
        const char *const *mcp_origins;
        unsigned mcp_idle_s;
} GwConfig;

#define GW_MAX_BODY ((size_t) 64 * 1024 * 1024)

int gw_server_start(const GwConfig *cfg, GwServer **ret);
/* The TCP port bound (for port 0). */
unsigned gw_server_port(const GwServer *gw);
void gw_server_free(GwServer *gw);

/* The default hook, and the data plane's part of gw_auth_authorize() (auth.h,
 * which checks real API keys and Kubernetes tokens): any non-empty X-API-KEY
 * on the control plane, the sandbox's access token on envd and /execute when
 * it has one. */
int gw_authorize_local(GwServer *gw, const GwAuthRequest *r, char *err, size_t errlen,
                       void *userdata);
/* The access token check alone: 0 when the sandbox has no token or tok is it. */
int gw_check_access_token(GwServer *gw, const char *id, const char *tok, char *err, size_t errlen);
