/* Sandboxes: create (rootfs, cgroup, bundle, runc), delete, pause and resume,
 * re-adopt after an agent restart, deadlines; the table's views. Implemented
 * by sandbox.c (lifecycle), sandbox-spec.c, sandbox-table.c, sandbox-pause.c,
 * sandbox-monitor.c and sandbox-recover.c. */
#pragma once

#include "agent.h"

/* The agent's setup, in this order (main.c runs it as a list of steps); each
 * logs its own error. agent_done() undoes all of them, and any part of them
 * that failed half-way.
 * agent_init: the sandbox table, its lock, the metrics, the monitor's epoll. */
int agent_init(Agent *a);
/* <state_dir>/sandboxes and <state_dir>/runc. */
int agent_setup_state_dir(Agent *a);
/* sandpit-init is executable at cfg.init_path; copies it and the kernels
 * into the tmpfs the sandboxes bind them from (share.h). */
int agent_check_init(Agent *a);
/* Sandbox networking (net.h): the config and the leases; no rule yet. */
int agent_setup_network(Agent *a);
/* The parent cgroup of all sandboxes. */
int agent_setup_cgroups(Agent *a);
/* Raises RLIMIT_NOFILE: an fd per sandbox, and what sandboxes' inits inherit. */
void agent_raise_nofile(void);
/* The table of host id ranges, with --userns=on (userns.h). */
int agent_setup_userns(Agent *a);
/* Starts making user namespaces ahead (userns.h) on ranges no adopted
 * sandbox holds: after recovery. Stopped by agent_done(). */
int agent_start_userns_spares(Agent *a);
/* Starts the monitor thread (deadlines, dead inits) and the metrics sampler;
 * after sandbox_recover(). */
int agent_start_monitor(Agent *a);
void agent_done(Agent *a);

/* Calls fn for each sandbox in the table (whatever its state), under the
 * table's lock: fn must not block, nor call back into sandbox_*(). A non-zero
 * return from fn stops the walk and is returned; 0 after the whole table. */
typedef int (*SandboxForeachFn)(const Sandbox *sb, void *userdata);
int sandbox_foreach(Agent *a, SandboxForeachFn fn, void *userdata);

/* Parses a create request. On error returns -EINVAL with a message in err. */
int sandbox_spec_from_json(json_object *req, SandboxSpec *ret, char *err, size_t errlen);

/* Checks spec's runtime (runtime.h) can run here and sets it to NULL when it
 * is the default's name, so a pool's shape and a request agree; -EINVAL for
 * an unknown name, -ENOPKG (501) when this node cannot run it; err says why. */
int sandbox_spec_runtime(Agent *a, SandboxSpec *spec, char *err, size_t errlen);

/* Creates and starts a sandbox; takes ownership of spec's contents on success
 * and failure. err receives a message for the caller on failure. The request's
 * faults: -ENOENT no such template, -EINVAL a bad template name or network
 * policy, -EEXIST the id is taken, -EBUSY the id's sandbox was deleted and
 * is still being torn down after a wait (60 s), -ESHUTDOWN the agent is stopping,
 * -ECANCELED a delete came meanwhile; any other failure is the agent's
 * (http_errno_internal(): never an errno the API answers with 4xx). */
int sandbox_create(Agent *a, SandboxSpec *spec, json_object **ret_obj, char *err, size_t errlen);
/* Deletes a sandbox. One still being created is told to give up (its create
 * fails with -ECANCELED and tears everything down) and waited for; 0 once the
 * id is gone. A running one is killed (init, PID 1 of its pid namespace, with
 * SIGKILL: every process dies) and leaves every view before this returns; its
 * runtime container, cgroup, mounts, network and state dir are removed in the
 * background (sandbox_teardown_pending()), and a create with its id waits for
 * that. A second delete while the first has not answered waits for it and is
 * 0 too; after it answered, -ENOENT, as for an id that is not there. */
int sandbox_delete(Agent *a, const char *id);
/* Deleted sandboxes whose teardown has not ended. */
size_t sandbox_teardown_pending(Agent *a);
int sandbox_set_timeout(Agent *a, const char *id, uint64_t timeout_s, json_object **ret_obj);
/* Replaces the egress policy of a running sandbox, live; takes policy's
 * contents on success. -ENOENT, -EBUSY (not running), -EINVAL with err. */
int sandbox_set_network(Agent *a, const char *id, NetPolicy *policy, json_object **ret_obj,
                        char *err, size_t errlen);
/* The path of the sandbox's network namespace; -ENOENT, -EBUSY (not running). */
int sandbox_netns_path(Agent *a, const char *id, char **ret);
/* The API view of a sandbox; -ENOENT if unknown. */
int sandbox_get_json(Agent *a, const char *id, json_object **ret);
/* All sandboxes whose labels match every "k=v" in selectors. */
int sandbox_list_json(Agent *a, char **selectors, json_object **ret);

/* image.h's in_use: true while a sandbox in the table (being created too)
 * has the image (canonical name) as its template. userdata: the Agent. */
bool sandbox_image_in_use(const char *name, void *userdata);
/* Waits (up to 60 s) while only deleted sandboxes whose teardown has not
 * ended use the image (canonical name): their overlays still mount its
 * layers. So removing an image right after deleting its sandboxes works as
 * it did when delete answered after the teardown. */
void sandbox_image_wait_teardowns(Agent *a, const char *name);

/* What exec needs, copied out under the lock. */
typedef struct {
        char *socket_path; /* <dir>/ctl/init.sock */
        pid_t init_pid;    /* the only peer the agent talks to on it */
        char **env;
        char *user;
        char *cwd; /* the sandbox's default for commands; NULL: the user's home */
        char *id;
        char *name;          /* its cgroup's (Sandbox.name) */
        char **secret_names; /* the sandbox's secret env names (values: only in init) */
        char *template_name; /* its template's (a directory's, or an image's); NULL: unknown */
} SandboxExecInfo;
int sandbox_exec_info(Agent *a, const char *id, SandboxExecInfo *ret);
void sandbox_exec_info_done(SandboxExecInfo *i);

/* What file operations need, copied out under the lock: the host path of the
 * merged root filesystem, the sandbox user and the disk size. -ENOENT for an
 * unknown sandbox, -EBUSY when it is not running (paused, exited). */
typedef struct {
        char *rootfs;
        char *user;
        uint64_t disk;
        char *name;        /* its cgroup's (Sandbox.name): what file writes are charged to */
        uint32_t id_shift; /* the host id of its uid 0 (userns.h); 0: none */
} SandboxFsInfo;
int sandbox_fs_info(Agent *a, const char *id, SandboxFsInfo *ret);
void sandbox_fs_info_done(SandboxFsInfo *i);
/* Freezes every process of a running sandbox (-EBUSY when it is not running,
 * or already paused). stop_deadline: the deadline clock stops until resume. */
int sandbox_pause(Agent *a, const char *id, bool stop_deadline, json_object **ret_obj, char *err,
                  size_t errlen);
bool sandbox_is_paused(Agent *a, const char *id);
/* Thaws a paused sandbox (-EBUSY when it is not paused). A stopped deadline moves
 * forward by the paused time; timeout_s > 0 sets a new one, counted from now. */
int sandbox_resume(Agent *a, const char *id, uint64_t timeout_s, json_object **ret_obj, char *err,
                   size_t errlen);

/* Re-adopts running sandboxes found in the state dir and removes the remains
 * of those that cannot be adopted. Called once at startup. */
int sandbox_recover(Agent *a);
