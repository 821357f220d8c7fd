/* The node agent's shared state: configuration, the sandbox table, and the
 * monitor that enforces deadlines and notices sandboxes whose init died. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "cgroup.h"
#include "net.h"
#include "runtime.h"
#include "sandpit/http-fetch.h"

typedef struct {
        char *state_dir;     /* /run/sandpit: sandboxes/, runc/ */
        char *templates_dir; /* /var/lib/sandpit/templates */
        char *init_path;     /* host path of the static sandpit-init */
        char *kernels_dir;   /* code-interpreter drivers; NULL: not installed */
        char *runtime;       /* OCI runtime CLI: "runc", "crun" or a path */
        /* --runtime-path NAME=PATH: where the runtimes a template may name are
         * (runtime.h); a name not given is looked up in $PATH. */
        char **runtime_paths;
        char *cgroup_parent; /* "sandpit" */
        CgVersion cgroup_version;
        NetConfig net; /* sandbox networking (net.h) */
        /* Images as templates (image.h, docs/images.md). */
        char *images_dir;  /* /var/lib/sandpit/images */
        char *registry_ca; /* --registry-ca; NULL: the system's CAs */
        char **insecure_registries;
        char *registry_auth_file; /* docker config.json */
        char *default_registry;
        uint64_t image_max_layer_size;
        uint64_t image_store_max; /* 0: no image GC */
        /* --build-fetch-allow: ranges an ADD of a URL may fetch from although
         * private, loopback, link-local or this node's (docs/build.md). */
        HttpFetchCidr *build_fetch_allow;
        size_t nbuild_fetch_allow;
        /* User namespaces (userns.h, docs/security.md): --userns, --userns-base,
         * --userns-size. */
        bool userns;
        uint32_t userns_base;
        uint32_t userns_size;
} AgentConfig;

typedef enum {
        SANDBOX_CREATING,
        SANDBOX_RUNNING,
        SANDBOX_EXITED, /* init died; only delete is left to do */
        SANDBOX_DELETING,
        SANDBOX_PAUSED, /* every process frozen (cgroup freezer) */
} SandboxState;

struct StartCmd; /* template.h */

/* Limits and defaults a sandbox is created with (the request, validated). */
typedef struct {
        char *id;
        char *template_name;
        double cpu;
        uint64_t memory;
        uint64_t pids;
        uint64_t disk;
        char **env; /* "NAME=value" strv */
        /* Secret env "NAME=value": held only until sandpit-init has it, then
         * zeroed and freed (NULL); never saved, logged or shown. */
        char **secret_env;
        char **secret_names; /* their names: saved and shown */
        char *user;          /* NULL until create for an image template: the image's */
        char *cwd;           /* commands' default cwd; NULL: the user's home */
        json_object *labels; /* object of strings; owned */
        uint64_t timeout_s;
        bool timeout_pause; /* on_timeout "pause": paused at the deadline, not deleted */
        NetPolicy network;  /* egress policy; changed live by the network route */
        /* The request's start command (template.h); NULL: the template's, if
         * any. Used by the create only, never saved. */
        struct StartCmd *start_cmd;
        /* runtime_names' entry other than the default (--runtime); NULL: the
         * default (sandbox_spec_runtime() makes it so for the default's name). */
        char *runtime;
        /* Set only by the agent (never from a request): made for this warm pool
         * (pool.h) and waiting there, invisible to every lookup by id. */
        char *pool;
} SandboxSpec;

typedef struct Sandbox {
        SandboxSpec spec;
        SandboxState state;
        uint64_t created_us;  /* CLOCK_REALTIME */
        uint64_t expires_us;  /* CLOCK_REALTIME */
        uint64_t started_us;  /* CLOCK_REALTIME: running since */
        uint64_t paused_us;   /* CLOCK_REALTIME: when paused; 0 = not paused */
        bool deadline_paused; /* the deadline clock stopped at paused_us */
        bool pause_busy;      /* a pause or resume is in progress */
        /* A DELETE arrived while creating: the create gives up. */
        bool delete_requested;
        /* Deleted, and its delete is still killing it (a->dying): a second
         * DELETE meanwhile waits for that and answers as the first. */
        bool killing;
        pid_t init_pid;
        int pidfd;
        uint64_t serial; /* unique in this agent's life: names it in epoll events */
        /* What the node knows it by: its directory, cgroup, runc container and
         * address lease. The id for a cold create; for a sandbox claimed from a
         * warm pool, the pooled one's (the id is the caller's, nothing renamed). */
        char *name;
        char *dir;         /* <state_dir>/sandboxes/<name>: bundle, state, mounts */
        char *socket_path; /* <dir>/ctl/init.sock */
        uint32_t ip;       /* leased address; 0 without sandbox networking */
        /* The host id its root is mapped to (userns.h); 0: no user namespace. */
        uint32_t userns_host_id;
        struct Sandbox *next;
} Sandbox;

typedef struct Agent {
        AgentConfig cfg;
        CgManager *cg;
        NetManager *net;
        char *runc_root;     /* --root of the default runtime (cfg.runtime) */
        struct Share *share; /* sandpit-init and the kernels, for the bundles (share.h) */
        /* Per runtime_names[i]: its binary and --root; the default runtime's
         * name has runc_root. probed: its runtime_probe() passed once. */
        char *runtime_bins[RUNTIME_NAMES];
        char *runtime_roots[RUNTIME_NAMES];
        bool runtime_probed[RUNTIME_NAMES];
        char *sandboxes_dir;
        /* Protects the sandbox list and every field of every Sandbox. Held only
         * for table operations, never across runc, mounts or socket I/O. */
        pthread_mutex_t lock;
        /* Broadcast (under lock) when a sandbox leaves the table or its create
         * or delete ends: a DELETE racing a create waits on it. */
        pthread_cond_t table_changed;
        Sandbox *sandboxes;
        /* Deleted sandboxes whose teardown (sandbox-teardown.h) has not ended:
         * out of every view, but their ids and names stay taken. */
        Sandbox *dying;
        struct TeardownQueue *teardown; /* its own lock */
        uint64_t next_serial;
        /* Monitor thread: epoll over the inits' pidfds and a wake eventfd. */
        int epoll_fd;
        int wake_fd;
        bool stopping;
        pthread_t monitor;
        bool monitor_started;
        uint64_t started_us;
        struct AgentMetrics *metrics;       /* metrics.h: its own lock */
        struct Pools *pools;                /* pool.h: warm pools; NULL until started */
        struct ImageStore *images;          /* image.h: its own lock */
        struct UsernsAlloc *userns;         /* userns.h: its own lock; NULL with --userns=off */
        struct UsernsSpares *userns_spares; /* userns.h: namespaces made ahead; NULL: none */
        /* runtime-exe.h: runc's sealed copy, run instead of the file; NULL when
         * runc is not installed or cannot run from one. Its own lock. */
        struct RuntimeExe *runc_exe;
} Agent;

void sandbox_spec_done(SandboxSpec *s);
