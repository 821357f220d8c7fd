/* The OCI runtime CLI (runc by default; crun, runsc or any path work the same
 * way): run detached, state, delete. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct RuntimeExe RuntimeExe;

typedef struct {
        const char *binary; /* "runc", "crun", or a path */
        const char *root;   /* --root: the runtime's state dir */
        RuntimeExe *exe;    /* runtime-exe.h: binary's sealed copy, run instead; NULL: none */
        /* gVisor's runsc: its run has no --preserve-fds, so sandpit-init gets a
         * socket pair as its stdin instead (docs/init-protocol.md#channel), and
         * the root mount is shared with the host (the files API writes it). */
        bool gvisor;
} Runtime;

/* The runtimes a sandbox or a template may name (docs/templates.md#runtime):
 * "runc", "crun", "runsc". A caller never names a binary: paths are the
 * node's (--runtime, --runtime-path). */
#define RUNTIME_NAMES 3
#define RUNTIME_RUNSC 2 /* runtime_names[RUNTIME_RUNSC] is gVisor's */
extern const char *const runtime_names[RUNTIME_NAMES];
/* The index of name in runtime_names, or -1. */
int runtime_name_index(const char *name);

/* Whether rt can run sandpit's sandboxes on this node: its binary is
 * installed, and its `run` takes --preserve-fds, which hands sandpit-init its
 * ready pipe and control socket (runsc: its flags include --file-access and
 * --overlay2, which runtime_run() sets). -ENOPKG with a message in err when
 * not. */
int runtime_probe(const Runtime *rt, const char *name, char *err, size_t errlen);

/* `run -d` of the bundle in dir with fds IP_READY_FD = ready_fd and
 * IP_LISTEN_FD = listen_fd passed through, stdout/stderr of the container
 * process to log_fd. For a gvisor runtime ready_fd is sandpit-init's end of the
 * channel, passed as its stdin, and listen_fd is unused. Writes <dir>/runtime.log; on failure err
 * receives the runtime's own error message. */
int runtime_run(const Runtime *rt, const char *id, const char *dir, int ready_fd, int listen_fd,
                int log_fd, pid_t *ret_pid, char *err, size_t errlen);
/* `exec ID /.sandpit/init --rechannel` with stdin_fd as its stdin, waited for
 * up to RUNTIME_RECHANNEL_TIMEOUT_MS: a runtime that has not ended by then
 * (a wedged runsc) is killed and the answer is -ETIMEDOUT. */
#define RUNTIME_RECHANNEL_TIMEOUT_MS 10000
int runtime_exec_rechannel(const Runtime *rt, const char *id, int stdin_fd, char *err,
                           size_t errlen);
/* gVisor: `exec --cap CAP_SYS_ADMIN ID /.sandpit/init --hostname HOSTNAME`,
 * the hostname of a sandbox whose UTS namespace is gVisor's own (the host's
 * setns reaches only the runsc process's); bounded as the rechannel. */
int runtime_exec_set_hostname(const Runtime *rt, const char *id, const char *hostname);
/* Every command but `run` is bounded: a runtime that has not ended by then (a
 * wedged runsc holding its sandbox's lock) is killed with its process group,
 * reaped, and the answer is -ETIMEDOUT (logged with the sandbox's id), so no
 * agent thread (a request, a teardown worker, the start) waits on it forever.
 * state and delete: 30 s, far above their usual tens of ms and the seconds a
 * loaded node may add, as a teardown or a restart can afford to wait; pause
 * and resume: 10 s, a request waits on them; the probe (`run --help`,
 * `flags`): 10 s, a create waits on it. */
#define RUNTIME_STATE_TIMEOUT_MS  30000
#define RUNTIME_DELETE_TIMEOUT_MS 30000
#define RUNTIME_PAUSE_TIMEOUT_MS  10000
#define RUNTIME_PROBE_TIMEOUT_MS  10000
/* `pause` or `resume`: for runsc, whose own commands (state, exec) hang on a
 * sandbox frozen by the cgroup freezer. */
int runtime_pause(const Runtime *rt, const char *id, bool pause);
/* Status ("running", "paused", "stopped", "created") and init pid; -ENOENT when
 * the runtime does not know the container. */
int runtime_state(const Runtime *rt, const char *id, char **ret_status, pid_t *ret_pid);
/* `delete --force`: kills what is left and removes the runtime's state. */
int runtime_delete(const Runtime *rt, const char *id);
/* Container ids the runtime knows under its root. */
int runtime_list(const Runtime *rt, char ***ret);
