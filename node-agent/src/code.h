/* The code interpreter: stateful contexts (one kernel process each, started in
 * the sandbox through sandpit-init) and runs streamed as NDJSON events shaped
 * like E2B's /execute lines. Design: docs/code-interpreter.md. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "agent.h"
#include "sandbox.h"

#define CODE_DIR_NAME      "code"              /* <sandbox dir>/code on the host */
#define CODE_SOCKETS_MOUNT "/.sandpit-code"    /* where the sandbox sees it (read-only) */
#define CODE_KERNELS_MOUNT "/.sandpit-kernels" /* the drivers (read-only) */
/* The longest event line a kernel may send, its newline included; the drivers
 * split or cut what would be longer (docs/code-interpreter.md, "Limits"), and
 * the agent drops a longer line, so a sandbox cannot make the agent hold more
 * than about this much per run. */
#define CODE_EVENT_MAX ((size_t) 1 << 20)

typedef struct CodeContext CodeContext;
typedef struct CodeRun CodeRun;

/* "python", "javascript" (or "js"), "bash": the canonical name, or NULL. */
const char *code_language_normalize(const char *name);

/* Errors of the functions below, in the classes of lib's errno <-> HTTP table
 * (sandpit/http-status.h), err the message for the caller: -ENOENT no such
 * context, -EBUSY the context's process died (restart it) or the sandbox is not
 * running, -EINVAL bad input (e.g. a cwd the kernel cannot start in), -EAGAIN
 * the sandbox's pids limit is reached, -ETIMEDOUT the kernel did not start in
 * time, -EOPNOTSUPP kernels not installed, others (5xx): the kernel failed to
 * start. */

/* Creates a context and starts its kernel; *ret is its API object. */
int code_context_create(Agent *a, const SandboxExecInfo *info, const char *language,
                        const char *cwd, json_object **ret, char *err, size_t errlen);
int code_context_list(const char *sandbox_id, json_object **ret);
int code_context_remove(const char *sandbox_id, const char *ctx_id);
int code_context_restart(Agent *a, const SandboxExecInfo *info, const char *ctx_id,
                         json_object **ret, char *err, size_t errlen);

typedef struct {
        const char *code;
        const char *language;    /* the default context of this language, or */
        const char *context;     /* a context id */
        json_object *env;        /* object of strings, or NULL; borrowed */
        json_object *secret_env; /* validated by secrets_from_json, or NULL; borrowed */
        uint64_t timeout_ms;     /* 0: none */
} CodeRunRequest;

/* Sends the code to the context's kernel (starting a default context first if
 * needed) and returns the event stream; the context is busy until it is freed. */
int code_run_start(Agent *a, const SandboxExecInfo *info, const CodeRunRequest *req, CodeRun **ret,
                   char *err, size_t errlen);
ssize_t code_run_read(void *cls, int client_fd, char *buf, size_t max);
void code_run_free(void *cls);

/* A deleted sandbox's contexts: their kernels die with it; our ends are shut
 * down now and closed when no run uses them. */
void code_forget_sandbox(const char *sandbox_id);

/* Warm pools (pool.c): the default python context's kernel started in a
 * sandbox waiting in a pool, and handed over to the sandbox it becomes at a
 * claim (docs/code-interpreter.md, "Warm pools").
 *
 * code_prestart_begin registers the context (call it with the Agent's lock
 * held, having checked that the pooled sandbox is there, so a delete that
 * follows finds it); NULL if it exists or on no memory. code_prestart_finish
 * starts its kernel (without the lock) and lets it go; 0 or an error as
 * code_context_create's. */
CodeContext *code_prestart_begin(const char *sandbox_id);
int code_prestart_finish(Agent *a, const SandboxExecInfo *info, CodeContext *c, char *err,
                         size_t errlen);
/* Whether the pooled sandbox's pre-started kernel is up and waiting. */
bool code_prestarted_ready(const char *sandbox_id);
/* At a claim of the pooled sandbox pooled_id: info is the sandbox it
 * becomes (the claimer's id, env, user, cwd, secret names), secret_env its
 * secret values ("NAME=value"). The kernel takes the environment a cold start
 * would give it and the secrets to mask, and becomes info->id's default python
 * context (not listed until its first run). 1: handed over; 0: there was no
 * pre-started kernel; < 0: there was one but it cannot be what a cold start
 * would give (another user or cwd, a variable read at start, still starting;
 * why says), and it was stopped: the first run starts one as for a cold
 * sandbox. */
int code_claim_kernel(const char *pooled_id, const SandboxExecInfo *info, char *const *secret_env,
                      char *why, size_t whylen);
