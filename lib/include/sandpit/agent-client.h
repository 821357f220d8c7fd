/* A typed client of the agent's native API (docs/agent-api.md), on lib's
 * http-client: a unix socket ("unix:///run/sandpit/agent.sock") or TCP
 * ("https://host:port", or "http://host:port" where allowed) with a bearer
 * token; TLS as agent_client_set_tls() says.
 *
 * Every call returns 0 (or a count) on success and a negative errno on
 * failure: a transport failure as the HTTP client reports it (-ECONNREFUSED,
 * -ENOENT for a missing socket, -ETIMEDOUT, -EIO), an answer other than the
 * call's success status through http_status_to_errno() with the reason of
 * the agent's error body (400 -EINVAL, 404 -ENOENT, 409 "AlreadyExists"
 * -EEXIST, any other 409 -EBUSY, 5xx -EIO, ...). agent_client_error() then says what the
 * agent answered (its status and "message", or the transport's text).
 * Returned objects belong to the caller and are set only on success. A
 * client holds one connection: use it from one thread at a time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "sandpit/http-client.h"

typedef struct AgentClient AgentClient;

typedef struct {
        long status;       /* the agent's HTTP status; 0 when it did not answer */
        char message[512]; /* its "message", else the transport's error; "" when none */
} AgentClientError;

/* How this process's clients reach TCP agents (docs/security.md): set once,
 * before any client is made and before threads start; copied. Until it is
 * called every URL is taken as it is (https:// with the system's CAs). */
typedef struct {
        const char
                *ca_file; /* PEM: the only CAs an https:// agent may chain to; NULL: the system's */
        const char *server_name; /* the name an https:// agent's certificate must carry, whatever
                                  * host its URL names ("sandpit-agent"); NULL: the URL's host */
        bool allow_http;         /* http:// URLs too; else agent_client_new() refuses them
                                  * with -EPROTONOSUPPORT (unix:// is always allowed) */
} AgentClientTls;
/* The name in an agent's certificate the chart makes (charts/sandpit). */
#define AGENT_DEFAULT_SERVER_NAME "sandpit-agent"
/* -EINVAL: a path or name too long, or an empty name. NULL: back to the default. */
int agent_client_set_tls(const AgentClientTls *tls);
/* The settings in force, for a connection of this process's own to an agent
 * (the gateway's port proxy); the strings point into the stored copy. Never
 * set: no CA, no name, http:// allowed. */
void agent_client_get_tls(AgentClientTls *ret);

/* token: the agent's bearer token (TCP), NULL or "" for none. */
int agent_client_new(const char *url, const char *token, AgentClient **ret);
void agent_client_free(AgentClient *c);
static inline void agent_client_freep(AgentClient **c)
{
        agent_client_free(*c);
}
#define cleanup_agent_client __attribute__((cleanup(agent_client_freep)))
/* A new client for the same agent, token and settings, with its own
 * connection: for a second thread. */
int agent_client_dup(const AgentClient *c, AgentClient **ret);

/* Bound on each non-streamed exchange; 0 (the default): none. Streams are
 * never bounded. */
void agent_client_set_timeout(AgentClient *c, long timeout_ms);
/* The max_bytes asked for file uploads and archives both ways (docs/files.md);
 * 0 (the default): the agent's own limit. */
void agent_client_set_max_bytes(AgentClient *c, uint64_t max_bytes);
/* While *flag is non-zero, a call in flight (a stream included) stops within
 * about a second with -ECANCELED; NULL detaches. */
void agent_client_set_cancel(AgentClient *c, const volatile sig_atomic_t *flag);
/* What the last failed call got back; cleared at the start of every call. */
const AgentClientError *agent_client_error(const AgentClient *c);
/* The last call's failure was the agent's 404 (not a missing socket). */
bool agent_client_not_found(const AgentClient *c, int r);

/* Sandboxes. req is the agent's create body (borrowed); *ret the sandbox
 * object. create: -EEXIST the id is in use (409 "AlreadyExists"), -EBUSY
 * another conflict (409 "Conflict": a DELETE of the id came while it was
 * being created, so nothing of it is left). */
int agent_client_create(AgentClient *c, json_object *req, json_object **ret);
int agent_client_get(AgentClient *c, const char *id, json_object **ret);
/* labels: "KEY=VALUE" strings that must all match (NULL-terminated, or NULL
 * for all); *ret the array of sandbox objects. */
int agent_client_list(AgentClient *c, const char *const *labels, json_object **ret);
int agent_client_delete(AgentClient *c, const char *id);
/* The sandbox now expires timeout_s seconds from now; *ret (may be NULL) the sandbox. */
int agent_client_set_deadline(AgentClient *c, const char *id, uint64_t timeout_s,
                              json_object **ret);
int agent_client_pause(AgentClient *c, const char *id, bool stop_deadline, json_object **ret);
/* timeout_s 0: the deadline as it was (moved by the time spent paused). */
int agent_client_resume(AgentClient *c, const char *id, uint64_t timeout_s, json_object **ret);
/* start/end: unix seconds, negative for none; both negative: the current
 * sample. *ret the agent's answer as it is. */
int agent_client_metrics(AgentClient *c, const char *id, int64_t start, int64_t end,
                         json_object **ret);

/* One event of a stream (exec, process stream, code), parsed; borrowed for the
 * call. A negative return aborts the stream and becomes the call's result. */
typedef int (*AgentEventFn)(json_object *event, void *userdata);

/* Images (docs/images.md). Pull: *ret the image; list: *ret the array. */
int agent_client_image_pull(AgentClient *c, const char *ref, json_object **ret);
/* POST /v1/images/push: image ref of the node to registry target to. */
int agent_client_image_push(AgentClient *c, const char *ref, const char *to, json_object **ret);
/* The same with a whole request body ({"image", "refresh", "verify", "auth"}). */
int agent_client_image_pull_req(AgentClient *c, json_object *req, json_object **ret);
int agent_client_image_list(AgentClient *c, json_object **ret);
int agent_client_image_remove(AgentClient *c, const char *ref);

/* Builds an image from a Dockerfile (docs/build.md): POST
 * /v1/templates/build with params as the query (each member a parameter: a
 * string, an array of strings repeated, an object as JSON text) and the
 * context tar in tar_fd (read to its end); the progress lines go to on_event. */
int agent_client_template_build(AgentClient *c, json_object *params, int tar_fd,
                                AgentEventFn on_event, void *userdata);
/* GET /v1/info (docs/agent-api.md#node): *ret the node's answer (version,
 * templates, template_languages, ...). */
int agent_client_info(AgentClient *c, json_object **ret);

/* Warm pools (docs/agent-api.md#warm-pools). list: *ret the whole answer
 * ({"pools": [...], "capacity", "used", "shrinks"}); put: req the pool
 * (template, shape, size; borrowed), *ret (may be NULL) the pool. */
int agent_client_pools(AgentClient *c, json_object **ret);
int agent_client_pool_put(AgentClient *c, const char *name, json_object *req, json_object **ret);
int agent_client_pool_delete(AgentClient *c, const char *name);

/* Processes. req is the agent's exec body (cmd or shell, env, cwd, user,
 * stdin, timeout, ...; borrowed): its events (start, stdout, stderr, exit) go
 * to on_event as they arrive. */
int agent_client_exec(AgentClient *c, const char *id, json_object *req, AgentEventFn on_event,
                      void *userdata);
/* The same started in the background: *ret_pid its pid. */
int agent_client_exec_background(AgentClient *c, const char *id, json_object *req, int *ret_pid);
/* *ret the array of processes. */
int agent_client_processes(AgentClient *c, const char *id, json_object **ret);
/* Reconnects to a process: its buffered output, live output, then exit. */
int agent_client_process_stream(AgentClient *c, const char *id, int pid, AgentEventFn on_event,
                                void *userdata);
/* Writes data (may be empty) to the process's stdin, then closes it when eof. */
int agent_client_process_stdin(AgentClient *c, const char *id, int pid, const void *data,
                               size_t len, bool eof);
/* signal: a name ("SIGKILL", "TERM") or a number as a string. */
int agent_client_process_signal(AgentClient *c, const char *id, int pid, const char *signal);
/* The size of a process's pseudo-terminal (-EBUSY-like 409 when it has none). */
int agent_client_process_resize(AgentClient *c, const char *id, int pid, unsigned cols,
                                unsigned rows);

/* Files. user: a user of the sandbox, NULL for its default one. The file's
 * bytes go to on_data as they arrive. */
int agent_client_file_read(AgentClient *c, const char *id, const char *path, const char *user,
                           HttpDataFn on_data, void *userdata);
/* Writes fd's contents (read to its end) to path, parents made; *ret (may be
 * NULL) the new entry. */
int agent_client_file_write_fd(AgentClient *c, const char *id, const char *path, const char *user,
                               int fd, json_object **ret);
int agent_client_file_write(AgentClient *c, const char *id, const char *path, const char *user,
                            const void *data, size_t len, json_object **ret);
/* A directory (or a file) as tar.gz: its bytes go to on_data as they arrive. */
int agent_client_archive_read(AgentClient *c, const char *id, const char *path, const char *user,
                              HttpDataFn on_data, void *userdata);
/* Unpacks the archive in fd (tar, tar.gz or zip, read to its end) into the
 * directory path, made if missing; *ret (may be NULL) the agent's answer
 * ({"path", "entries", "bytes"}). */
int agent_client_archive_write_fd(AgentClient *c, const char *id, const char *path,
                                  const char *user, int fd, json_object **ret);
/* depth 0: the agent's default (1). *ret the array of entries. */
int agent_client_ls(AgentClient *c, const char *id, const char *path, const char *user,
                    unsigned depth, json_object **ret);
/* *ret the entry. */
int agent_client_stat(AgentClient *c, const char *id, const char *path, const char *user,
                      json_object **ret);
int agent_client_exists(AgentClient *c, const char *id, const char *path, const char *user,
                        bool *ret);
/* 409 (it exists) is -EEXIST. *ret (may be NULL) the new directory's entry. */
int agent_client_mkdir(AgentClient *c, const char *id, const char *path, const char *user,
                       bool parents, json_object **ret);
int agent_client_rm(AgentClient *c, const char *id, const char *path, const char *user,
                    bool recursive);
/* 409 (destination exists) is -EEXIST. *ret (may be NULL) the destination's entry. */
int agent_client_mv(AgentClient *c, const char *id, const char *source, const char *destination,
                    const char *user, bool overwrite, json_object **ret);

/* Watches path: its events (start, create, write, remove, rename, chmod,
 * keepalive, overflow) go to on_event until path is removed or on_event stops. */
int agent_client_watch(AgentClient *c, const char *id, const char *path, const char *user,
                       bool recursive, AgentEventFn on_event, void *userdata);

/* The code interpreter. req is the agent's code body (code, language or
 * context, env, timeout; borrowed); its events go to on_event. */
int agent_client_code(AgentClient *c, const char *id, json_object *req, AgentEventFn on_event,
                      void *userdata);
/* language, cwd: NULL for the agent's defaults. *ret the context. */
int agent_client_context_create(AgentClient *c, const char *id, const char *language,
                                const char *cwd, json_object **ret);
/* *ret the array of contexts. */
int agent_client_context_list(AgentClient *c, const char *id, json_object **ret);
int agent_client_context_delete(AgentClient *c, const char *id, const char *context);
int agent_client_context_restart(AgentClient *c, const char *id, const char *context,
                                 json_object **ret);
