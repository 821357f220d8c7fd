/* The sandpit command: argument parsing, output formatting and the commands
 * themselves. main.c only wires these together, so everything here is linked
 * into the unit tests through libcli.a. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <json-c/json.h>

#include "sandpit/agent-client.h"
#include "sandpit/json.h"

#define CLI_VERSION     SANDPIT_VERSION /* -D from VERSION (mk/config.mk) */
#define CLI_DEFAULT_URL "unix:///run/sandpit/agent.sock"
/* The agent refuses bodies over 16 MiB; base64 grows stdin by a third. */
#define CLI_STDIN_MAX ((size_t) 12 * 1024 * 1024)
/* What cp asks the agent to accept and send (its FILES_UPLOAD_MAX). */
#define CLI_CP_MAX_BYTES ((uint64_t) 64 << 30)
/* `run --timeout S` gives the sandbox this much longer than the command. */
#define CLI_RUN_TIMEOUT_MARGIN 60

#define CLI_EXIT_FAILURE 1
#define CLI_EXIT_USAGE   2
#define CLI_EXIT_TIMEOUT 124 /* as timeout(1) */

typedef enum {
        CLI_CMD_CREATE,
        CLI_CMD_LS,
        CLI_CMD_GET,
        CLI_CMD_EXEC,
        CLI_CMD_RUN,
        CLI_CMD_KILL,
        CLI_CMD_TIMEOUT,
        CLI_CMD_PS,
        CLI_CMD_SIGNAL,
        CLI_CMD_ATTACH,
        CLI_CMD_CODE,
        CLI_CMD_CP,
        CLI_CMD_FS,
        CLI_CMD_METRICS,
        CLI_CMD_PAUSE,
        CLI_CMD_RESUME,
        CLI_CMD_MCP,
        CLI_CMD_TEMPLATE, /* image.c */
        CLI_CMD_COUNT,
} CliCommand;

typedef struct {
        CliCommand command;
        const char *server;            /* --server, borrowed from argv; NULL when absent */
        const char *token_file;        /* --token-file, likewise */
        const char *agent_ca;          /* --agent-ca, likewise */
        const char *agent_server_name; /* --agent-server-name, likewise */
        bool help;
        bool json;
        bool read_stdin;
        bool background;
        bool tty;            /* exec -t: a pseudo-terminal (exec-tty.c) */
        json_object *create; /* create, run: body of POST /v1/sandboxes */
        json_object *exec; /* exec, run: body of POST .../exec, without stdin; code: of .../code */
        const char *save_images;  /* code: --save-images DIR */
        json_object *body;        /* timeout, signal, pause, resume: the request body;
                                   * metrics: {"start": S, "end": S} for the query */
        json_object *filters;     /* ls: array of "KEY=VALUE" label filters */
        const char *user;         /* cp, fs: --user */
        bool recursive;           /* fs rm: -r */
        int64_t depth;            /* fs ls: --depth, 0 when absent */
        int pid;                  /* attach, signal: the process */
        const char *mcp_url;      /* mcp: --url, a gateway to bridge to */
        const char *gateway_ca;   /* mcp: --gateway-ca, the PEM CA of an https:// gateway */
        int64_t mcp_idle;         /* mcp: --idle S, 0 when absent */
        const char *dockerfile;   /* template build: -f, borrowed */
        const char *build_tag;    /* template build: -t, borrowed */
        const char *build_target; /* template build: --target, borrowed */
        json_object *build_args;  /* template build: array of "K=V" */
        char **args;              /* positional arguments (exec: the id), borrowed from argv */
        int n_args;
        char error[256]; /* the usage error when parsing failed */
} CliArgs;

int cli_command_from_name(const char *name, CliCommand *ret);
const char *cli_command_name(CliCommand cmd);
void cli_usage(FILE *f);
void cli_command_usage(CliCommand cmd, FILE *f);

/* Parses argv (argv[0] is the command's name) into *ret, which is always
 * initialised so cli_args_done() may follow; -EINVAL with ret->error set on a
 * usage error. */
int cli_parse_args(CliCommand cmd, int argc, char **argv, CliArgs *ret);
void cli_args_done(CliArgs *a);

/* Pure helpers (format.c). */
/* Adds "KEY=VALUE" to the object map; -EINVAL without '=' or with an empty key. */
int cli_parse_kv(const char *s, json_object *map);
/* "512Mi" stays a string, "536870912" becomes an integer, "1.5" a double. */
int cli_quantity_json(const char *s, json_object **ret);
int cli_parse_int(const char *s, int64_t min, int64_t max, int64_t *ret);
/* "CIDR[:PORT[,PORT...]][/tcp|/udp]" as an agent network rule object; -EINVAL if malformed. */
int cli_parse_net_rule(const char *arg, json_object **ret);
/* Positive, finite, fractions allowed. */
int cli_parse_seconds(const char *s, double *ret);
/* 536870912 -> "512Mi", 1610612736 -> "1.5Gi", 1000 -> "1000". */
void cli_format_bytes(int64_t bytes, char *buf, size_t len);
/* Time left until an RFC 3339 UTC timestamp: "4m59s", "2h05m", "expired"; the
 * timestamp itself when it cannot be parsed. */
void cli_format_remaining(const char *timestamp, time_t now, char *buf, size_t len);
/* Prints rows (row-major cells, header row first) in aligned columns. */
int cli_print_table(FILE *f, const char *const *cells, size_t n_cols, size_t n_rows);
/* Copies s into buf on one line: control characters become spaces. */
void cli_one_line(const char *s, char *buf, size_t len);

/* Exec output (exec-output.c): decodes one event of an exec or attach stream
 * (an AgentEventFn) and writes its output to out_fd / err_fd. */
typedef struct {
        int out_fd;
        int err_fd;
        long pid;
        bool exited;
        int exit_status; /* what sandpit exits with: the command's status */
        bool oom_killed;
        bool write_failed; /* the error came from writing our own output */
} CliExecState;

void cli_exec_state_init(CliExecState *s, int out_fd, int err_fd);
int cli_exec_on_event(json_object *ev, void *userdata);
/* exit_code, 128+signal when a signal killed the command, 124 when timed out. */
int cli_exit_status_from_event(json_object *exit_event);

/* Code-run output (code-output.c): streams stdout/stderr of a run as they
 * come; display results are shown (images saved when save_dir is set) and the
 * main result and error printed at the end by cli_code_finish(). */
typedef struct {
        int out_fd;
        int err_fd;
        const char *save_dir;
        unsigned images;
        json_object *main_result;
        json_object *error;
        bool ended;
        bool timed_out;
        bool write_failed;
} CliCodeState;

void cli_code_state_init(CliCodeState *s, int out_fd, int err_fd, const char *save_dir);
void cli_code_state_done(CliCodeState *s);
int cli_code_on_event(json_object *ev, void *userdata);
/* Prints the main result and the error; the exit status (0, 1 on an error, 124
 * on a timeout). */
int cli_code_finish(CliCodeState *s);
/* cp and fs (files.c). "ID:PATH" names a path in a sandbox when the part
 * before the first ':' is non-empty and has no '/'; *ret_id is a copy of it
 * and *ret_path points into s. false for a local path. */
bool cli_remote_path(const char *s, char **ret_id, const char **ret_path);

/* Commands (commands.c). */
typedef struct {
        AgentClient *agent; /* lib's client of the agent API */
        const char *url;
        char error[1024]; /* set when a command returns < 0: printed as "sandpit: ..." */
} CliContext;

/* Returns the exit status, or a negative errno with ctx->error set. */
int cli_run(CliContext *ctx, const CliArgs *args);
/* exec -t (exec-tty.c), stdin being a terminal. The exit status as
 * cli_run()'s, 128+N when signal N stopped sandpit. */
int cli_exec_tty(CliContext *ctx, const CliArgs *a);
/* cp, fs (files.c), with the helpers of commands.c they share. */
int cli_cmd_cp(CliContext *ctx, const CliArgs *a);
int cli_cmd_fs(CliContext *ctx, const CliArgs *a);
/* sandpit mcp (mcp.c): the MCP server on stdio. */
int cli_cmd_mcp(CliContext *ctx, const CliArgs *a);
/* sandpit mcp --url (mcp-bridge.c): stdio to a gateway's /mcp over HTTP,
 * until end of input or *stop. */
/* ca_file: the only CAs an https:// gateway may chain to; NULL: the system's. */
int cli_mcp_bridge(CliContext *ctx, const char *url, const char *ca_file,
                   const volatile sig_atomic_t *stop, const sigset_t *wait_mask);
/* template pull|images|rm|build (image.c). */
int cli_cmd_template(CliContext *ctx, const CliArgs *a);
/* template build (build.c). */
int cli_template_build(CliContext *ctx, const CliArgs *a);

/* Finishes a message written into ctx->error: one line, and a negative errno
 * to return (-EIO for r >= 0). */
int cli_error_done(CliContext *ctx, int r);
/* A macro rather than a variadic function, for the format checks without a
 * va_list (clang-tidy 14 misreads va_start across translation units). */
#define cli_set_error(ctx, r, ...)                                         \
        ((void) snprintf((ctx)->error, sizeof((ctx)->error), __VA_ARGS__), \
         cli_error_done((ctx), (r)))
/* r (< 0), from a call of ctx->agent, said in ctx->error: the agent's
 * message, or why it could not be reached. */
int cli_agent_error(CliContext *ctx, int r);
/* Prints o as indented JSON; then cli_finish_output(). */
int cli_print_json(CliContext *ctx, json_object *o);
/* Prints {"name": value} (value taken): an answer as the agent gave it,
 * where lib's client returns its one member. */
int cli_print_json_member(CliContext *ctx, const char *name, json_object *value);
/* Flushes stdout; a failure said in ctx->error. */
int cli_finish_output(CliContext *ctx);
/* Reads all of fd, at most max bytes (-EFBIG beyond). */
int cli_read_all(int fd, size_t max, char **ret, size_t *ret_len);
