/* Running processes in a sandbox: the agent's side of the init protocol
 * (initproto.h) and its translation into the API's NDJSON events. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "agent.h"
#include "sandbox.h"

typedef struct {
        char **argv;
        char **env;        /* the process's whole environment, secrets aside */
        char **secret_env; /* "NAME=value": set by init, masked in the output */
        char *cwd;         /* NULL: the user's home */
        char *user;
        char *tag;
        uint64_t timeout_ms;
        uint32_t flags;      /* IP_FLAG_* */
        uint32_t cols, rows; /* with IP_FLAG_PTY: the terminal's size */
        uint8_t *stdin_data;
        size_t stdin_len;
} ExecRequest;

/* Parses an exec request body against the sandbox's defaults (env, user).
 * -EINVAL with a message in err for bad input. */
int exec_request_from_json(json_object *body, const SandboxExecInfo *info, ExecRequest *ret,
                           char *err, size_t errlen);
void exec_request_done(ExecRequest *r);

/* Connects to init and starts the process. socket_path is the sandbox's
 * <dir>/ctl/init.sock and init_pid the host pid of its init: every function
 * here reaches it without following a symlink below the control dir and talks
 * only to a peer with that pid; a socket that fails either check gives -EIO with
 * the reason in err. On success *ret_fd is the conversation
 * (STDOUT/STDERR/EXIT follow) and *ret_pid the pid. A process that cannot be
 * started gives -EINVAL with init's message in err (-EAGAIN when the sandbox's
 * pids limit is reached); a sandbox whose init does not answer or is stopping
 * gives -EBUSY, a request too big for the protocol -EMSGSIZE. */
int exec_spawn(const char *socket_path, pid_t init_pid, const ExecRequest *req, int *ret_fd,
               uint32_t *ret_pid, char *err, size_t errlen);
typedef struct ExecStream ExecStream;

/* Reconnects to a process and returns its event stream (buffered output, live
 * output, exit): -ESRCH when init does not know the pid, -EBUSY when the
 * sandbox is not running. */
int exec_attach(const char *socket_path, pid_t init_pid, uint32_t pid, Agent *a,
                const char *cg_name, uint64_t oom_before, ExecStream **ret, char *err,
                size_t errlen);

/* One request, one OK/ERROR answer: STDIN (data and/or eof) and SIGNAL.
 * -ESRCH no such process, -EBUSY its stdin is closed (or the sandbox is not
 * running), -EAGAIN its stdin queue is full. */
int exec_send_stdin(const char *socket_path, pid_t init_pid, uint32_t pid, const uint8_t *data,
                    size_t len, bool eof, char *err, size_t errlen);
int exec_signal(const char *socket_path, pid_t init_pid, uint32_t pid, int signo, char *err,
                size_t errlen);
/* Sets the terminal size of a process started with a PTY: -EBUSY for one
 * without or whose terminal is closed, -EINVAL for a size out of
 * 1..IP_PTY_DIM_MAX. */
int exec_resize(const char *socket_path, pid_t init_pid, uint32_t pid, uint32_t cols, uint32_t rows,
                char *err, size_t errlen);
/* Reads {"cols": C, "rows": R} (the exec request's "pty", the resize body):
 * -EINVAL with a message in err unless both are integers of 1..IP_PTY_DIM_MAX
 * and nothing else is there. */
int exec_pty_size_from_json(json_object *o, const char *what, uint32_t *ret_cols,
                            uint32_t *ret_rows, char *err, size_t errlen);
/* Hands the sandbox's secret env ("NAME=value") to init, which keeps it in
 * memory, adds it to every later process and masks it in their output. */
int exec_set_secrets(const char *socket_path, pid_t init_pid, char **env, char *err, size_t errlen);
/* The process list as the API shows it. */
int exec_list(const char *socket_path, pid_t init_pid, json_object **ret);
/* Connects to init as every exec does (no symlink followed, the peer must be
 * init_pid) and hangs up: 0, -EBUSY (nothing listens) or -EIO (refused). */
int exec_check_init(const char *socket_path, pid_t init_pid);

/* An NDJSON event stream over an init conversation. Owns fd, also when it
 * fails (then fd is closed). start_pid > 0
 * emits the "start" event first. The agent and cg_name (the sandbox's name,
 * Sandbox.name) tell an out-of-memory kill (the cgroup's oom_kill count grew
 * since oom_before). */
int exec_stream_new(int fd, uint32_t start_pid, Agent *a, const char *cg_name, uint64_t oom_before,
                    ExecStream **ret);
ssize_t exec_stream_read(void *cls, int client_fd, char *buf, size_t max);
void exec_stream_free(void *cls);

/* Signal names ("SIGTERM", "TERM", "15") to numbers; -EINVAL if unknown. */
int signal_from_string(const char *s);
