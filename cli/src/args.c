#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

enum {
        OPT_HELP = 'h',
        OPT_ENV = 'e',
        OPT_LABEL = 'l',
        OPT_USER = 'u',
        OPT_CWD = 'w',
        OPT_STDIN = 'i',
        OPT_BACKGROUND = 'd',
        OPT_TTY = 't', /* template build: -t/--tag NAME */
        OPT_FILE = 'f',
        OPT_SERVER = 0x100,
        OPT_TOKEN_FILE,
        OPT_AGENT_CA,
        OPT_AGENT_SERVER_NAME,
        OPT_GATEWAY_CA,
        OPT_TEMPLATE,
        OPT_IMAGE,
        OPT_RUNTIME,
        OPT_CPU,
        OPT_MEMORY,
        OPT_PIDS,
        OPT_DISK,
        OPT_TIMEOUT,
        OPT_ID,
        OPT_JSON,
        OPT_SHELL,
        OPT_TAG,
        OPT_LANG,
        OPT_CONTEXT,
        OPT_SAVE_IMAGES,
        OPT_DEPTH,
        OPT_SECRET_ENV,
        OPT_START,
        OPT_END,
        OPT_DEADLINE_RUNS,
        OPT_EGRESS,
        OPT_ALLOW,
        OPT_DENY,
        OPT_URL,
        OPT_IDLE,
        OPT_BUILD_ARG,
        OPT_BUILD_TARGET,
        OPT_RECURSIVE = 'r', /* last: the values after it would collide with short options */
};

#define CMD(c)      (1U << (c))
#define ALL_CMDS    ((1U << CLI_CMD_COUNT) - 1)
#define CREATE_CMDS (CMD(CLI_CMD_CREATE) | CMD(CLI_CMD_RUN))

typedef struct {
        const char *name;
        int has_arg;
        int val;
        unsigned cmds; /* which commands accept the option */
} OptionSpec;

static const OptionSpec option_specs[] = {
        {"help", no_argument, OPT_HELP, ALL_CMDS},
        {"server", required_argument, OPT_SERVER, ALL_CMDS},
        {"token-file", required_argument, OPT_TOKEN_FILE, ALL_CMDS},
        {"agent-ca", required_argument, OPT_AGENT_CA, ALL_CMDS},
        {"agent-server-name", required_argument, OPT_AGENT_SERVER_NAME, ALL_CMDS},
        {"template", required_argument, OPT_TEMPLATE, CREATE_CMDS | CMD(CLI_CMD_MCP)},
        {"url", required_argument, OPT_URL, CMD(CLI_CMD_MCP)},
        {"gateway-ca", required_argument, OPT_GATEWAY_CA, CMD(CLI_CMD_MCP)},
        {"idle", required_argument, OPT_IDLE, CMD(CLI_CMD_MCP)},
        {"image", required_argument, OPT_IMAGE, CREATE_CMDS},
        {"runtime", required_argument, OPT_RUNTIME, CREATE_CMDS},
        {"file", required_argument, OPT_FILE, CMD(CLI_CMD_TEMPLATE)},
        {"tag", required_argument, OPT_TTY, CMD(CLI_CMD_TEMPLATE)},
        {"build-arg", required_argument, OPT_BUILD_ARG, CMD(CLI_CMD_TEMPLATE)},
        {"target", required_argument, OPT_BUILD_TARGET, CMD(CLI_CMD_TEMPLATE)},
        {"cpu", required_argument, OPT_CPU, CREATE_CMDS | CMD(CLI_CMD_TEMPLATE)},
        {"memory", required_argument, OPT_MEMORY, CREATE_CMDS | CMD(CLI_CMD_TEMPLATE)},
        {"pids", required_argument, OPT_PIDS, CREATE_CMDS | CMD(CLI_CMD_TEMPLATE)},
        {"disk", required_argument, OPT_DISK, CREATE_CMDS | CMD(CLI_CMD_TEMPLATE)},
        {"id", required_argument, OPT_ID, CREATE_CMDS},
        {"timeout", required_argument, OPT_TIMEOUT,
         CREATE_CMDS | CMD(CLI_CMD_EXEC) | CMD(CLI_CMD_CODE) | CMD(CLI_CMD_RESUME)},
        {"user", required_argument, OPT_USER,
         CREATE_CMDS | CMD(CLI_CMD_EXEC) | CMD(CLI_CMD_CP) | CMD(CLI_CMD_FS)},
        {"env", required_argument, OPT_ENV, CREATE_CMDS | CMD(CLI_CMD_EXEC) | CMD(CLI_CMD_CODE)},
        {"secret-env", required_argument, OPT_SECRET_ENV, CREATE_CMDS | CMD(CLI_CMD_EXEC)},
        {"egress", required_argument, OPT_EGRESS, CREATE_CMDS | CMD(CLI_CMD_TEMPLATE)},
        {"allow", required_argument, OPT_ALLOW, CREATE_CMDS | CMD(CLI_CMD_TEMPLATE)},
        {"deny", required_argument, OPT_DENY, CREATE_CMDS | CMD(CLI_CMD_TEMPLATE)},
        {"start", required_argument, OPT_START, CMD(CLI_CMD_METRICS)},
        {"end", required_argument, OPT_END, CMD(CLI_CMD_METRICS)},
        {"deadline-runs", no_argument, OPT_DEADLINE_RUNS, CMD(CLI_CMD_PAUSE)},
        {"lang", required_argument, OPT_LANG, CMD(CLI_CMD_CODE)},
        {"context", required_argument, OPT_CONTEXT, CMD(CLI_CMD_CODE)},
        {"save-images", required_argument, OPT_SAVE_IMAGES, CMD(CLI_CMD_CODE)},
        {"recursive", no_argument, OPT_RECURSIVE, CMD(CLI_CMD_FS)},
        {"depth", required_argument, OPT_DEPTH, CMD(CLI_CMD_FS)},
        {"label", required_argument, OPT_LABEL, CREATE_CMDS | CMD(CLI_CMD_LS)},
        {"json", no_argument, OPT_JSON,
         CMD(CLI_CMD_CREATE) | CMD(CLI_CMD_LS) | CMD(CLI_CMD_GET) | CMD(CLI_CMD_TIMEOUT) |
                 CMD(CLI_CMD_PS) | CMD(CLI_CMD_FS) | CMD(CLI_CMD_METRICS) | CMD(CLI_CMD_PAUSE) |
                 CMD(CLI_CMD_RESUME) | CMD(CLI_CMD_TEMPLATE)},
        {"cwd", required_argument, OPT_CWD, CMD(CLI_CMD_EXEC) | CMD(CLI_CMD_RUN)},
        {"stdin", no_argument, OPT_STDIN, CMD(CLI_CMD_EXEC) | CMD(CLI_CMD_RUN)},
        {"shell", no_argument, OPT_SHELL, CMD(CLI_CMD_EXEC) | CMD(CLI_CMD_RUN)},
        {"background", no_argument, OPT_BACKGROUND, CMD(CLI_CMD_EXEC)},
        {"tty", no_argument, OPT_TTY, CMD(CLI_CMD_EXEC)},
        {"tag", required_argument, OPT_TAG, CMD(CLI_CMD_EXEC)},
};

static const char *const command_names[CLI_CMD_COUNT] = {
        [CLI_CMD_CREATE] = "create",   [CLI_CMD_LS] = "ls",
        [CLI_CMD_GET] = "get",         [CLI_CMD_EXEC] = "exec",
        [CLI_CMD_RUN] = "run",         [CLI_CMD_KILL] = "kill",
        [CLI_CMD_TIMEOUT] = "timeout", [CLI_CMD_PS] = "ps",
        [CLI_CMD_SIGNAL] = "signal",   [CLI_CMD_ATTACH] = "attach",
        [CLI_CMD_CODE] = "code",       [CLI_CMD_CP] = "cp",
        [CLI_CMD_FS] = "fs",           [CLI_CMD_METRICS] = "metrics",
        [CLI_CMD_PAUSE] = "pause",     [CLI_CMD_RESUME] = "resume",
        [CLI_CMD_MCP] = "mcp",         [CLI_CMD_TEMPLATE] = "template",
};

static const char *const command_usages[CLI_CMD_COUNT] = {
        [CLI_CMD_CREATE] =
                "Usage: sandpit create [OPTIONS]\n"
                "Create a sandbox and print its id.\n"
                "\n"
                "      --template T    template (default: the agent's \"default\")\n"
                "      --image REF     an OCI image as the template, pulled if the\n"
                "                      node has not got it (docs/images.md)\n"
                "      --runtime R     OCI runtime: runc, crun or runsc (default: the\n"
                "                      node's; docs/templates.md#runtimes)\n"
                "      --cpu C         CPU cores: 1.5 or 500m\n"
                "      --memory M      memory limit: bytes or 512Mi, 1Gi, ...\n"
                "      --pids N        process and thread limit\n"
                "      --disk D        size of the writable layer: 512Mi, ...\n"
                "      --timeout S     seconds until the agent removes the sandbox\n"
                "  -u, --user U        default user of processes (user, root)\n"
                "  -e, --env K=V       environment of every process (repeatable)\n"
                "      --secret-env NAME[=V]  secret env of every process: masked\n"
                "                      in output, never stored; V defaults to\n"
                "                      sandpit's own $NAME (repeatable)\n"
                "  -l, --label K=V     label (repeatable)\n"
                "      --egress P      network egress: deny (default), allowlist, allow\n"
                "      --allow RULE    allowlist entry CIDR[:PORT[,PORT...]][/tcp|/udp]\n"
                "                      (repeatable; implies --egress allowlist)\n"
                "      --deny RULE     deny entry on top of --egress allow (repeatable)\n"
                "      --id ID         choose the id instead of a random one\n"
                "      --json          print the whole sandbox object\n",
        [CLI_CMD_LS] = "Usage: sandpit ls [--label K=V]... [--json]\n"
                       "List sandboxes; every --label must match.\n",
        [CLI_CMD_GET] = "Usage: sandpit get ID\n"
                        "Print a sandbox as JSON.\n",
        [CLI_CMD_EXEC] = "Usage: sandpit exec [OPTIONS] ID [--] CMD [ARGS...]\n"
                         "Run a command in a sandbox, streaming its output; exit with its status\n"
                         "(128+N when killed by signal N, 124 when it timed out).\n"
                         "\n"
                         "  -e, --env K=V       environment variable (repeatable)\n"
                         "      --secret-env NAME[=V]  secret variable, masked in the output;\n"
                         "                      V defaults to sandpit's own $NAME (repeatable)\n"
                         "  -w, --cwd DIR       working directory\n"
                         "  -u, --user U        user to run as\n"
                         "      --timeout S     kill the command after S seconds\n"
                         "  -i, --stdin         send sandpit's stdin to the command (with -t: as\n"
                         "                      it is typed, the terminal in raw mode)\n"
                         "  -t, --tty           run the command on a pseudo-terminal of this\n"
                         "                      terminal's size (needs stdin to be a terminal)\n"
                         "      --shell         run CMD ARGS... joined by spaces with /bin/sh -c\n"
                         "  -d, --background    start the command, print its pid and return\n"
                         "      --tag TAG       label shown by `sandpit ps`\n",
        [CLI_CMD_RUN] = "Usage: sandpit run [OPTIONS] [--] CMD [ARGS...]\n"
                        "Create a sandbox, run a command in it, delete the sandbox (also on\n"
                        "SIGINT/SIGTERM), and exit with the command's status.\n"
                        "\n"
                        "Options of create (--template, --cpu, --memory, --pids, --disk, --user,\n"
                        "--env, --label, --id) and of exec (--cwd, --stdin, --shell); --timeout S\n"
                        "bounds the command, and the sandbox lives S+60 seconds.\n",
        [CLI_CMD_KILL] = "Usage: sandpit kill ID...\n"
                         "Delete sandboxes.\n",
        [CLI_CMD_TIMEOUT] = "Usage: sandpit timeout [--json] ID SECONDS\n"
                            "Make a sandbox expire SECONDS from now; print the new expiry.\n",
        [CLI_CMD_PS] = "Usage: sandpit ps [--json] ID\n"
                       "List the processes started in a sandbox.\n",
        [CLI_CMD_SIGNAL] = "Usage: sandpit signal ID PID SIGNAL\n"
                           "Send a signal (TERM, SIGKILL, 9, ...) to a process group.\n",
        [CLI_CMD_ATTACH] = "Usage: sandpit attach ID PID\n"
                           "Stream a process's output (buffered and live) until it exits,\n"
                           "then exit with its status.\n",
        [CLI_CMD_CODE] = "Usage: sandpit code [OPTIONS] ID [CODE | -]\n"
                         "Run code in a sandbox's code interpreter (stateful contexts): print\n"
                         "stdout/stderr as they come, then the result (like a notebook cell).\n"
                         "Without CODE, or with -, the code is read from stdin. Exits 1 when the\n"
                         "code raised an error, 124 when it timed out.\n"
                         "\n"
                         "      --lang L          python (default), javascript (js) or bash\n"
                         "      --context C       a context made with POST .../contexts\n"
                         "  -e, --env K=V         environment variable for this run (repeatable)\n"
                         "      --timeout S       interrupt the run after S seconds\n"
                         "      --save-images DIR write PNG/JPEG results to DIR/image-N.png\n",
        [CLI_CMD_CP] = "Usage: sandpit cp [--user U] SRC DST\n"
                       "Copy a file or a directory tree between this machine and a sandbox;\n"
                       "one of SRC and DST is ID:PATH (a relative PATH starts at the user's\n"
                       "home). Directories travel as tar.gz. '-' as the local side is\n"
                       "stdin or stdout (one file).\n"
                       "\n"
                       "  -u, --user U        user whose permissions apply (default: the\n"
                       "                      sandbox's)\n",
        [CLI_CMD_FS] = "Usage: sandpit fs ls|stat|mkdir|rm|mv [OPTIONS] ID PATH [DEST]\n"
                       "Files in a sandbox: list a directory, show one entry, make a directory\n"
                       "(with parents), remove (-r: a tree), move/rename PATH to DEST.\n"
                       "\n"
                       "  -u, --user U        user whose permissions apply\n"
                       "      --depth N       ls: levels to list (default 1)\n"
                       "  -r, --recursive     rm: remove directories and their contents\n"
                       "      --json          ls, stat: print the API's JSON\n",
        [CLI_CMD_METRICS] = "Usage: sandpit metrics [--json] [--start T] [--end T] ID\n"
                            "Show a sandbox's CPU, memory, disk and process use now, or its\n"
                            "1 s samples between unix times T (the agent keeps 5 minutes).\n",
        [CLI_CMD_PAUSE] = "Usage: sandpit pause [--deadline-runs] [--json] ID\n"
                          "Freeze every process of a sandbox. Its deadline stops too, unless\n"
                          "--deadline-runs.\n",
        [CLI_CMD_RESUME] = "Usage: sandpit resume [--timeout S] [--json] ID\n"
                           "Thaw a paused sandbox; --timeout S: it now expires S seconds from\n"
                           "now.\n",
        [CLI_CMD_MCP] = "Usage: sandpit mcp [--template T] [--idle S] [--url GATEWAY\n"
                        "                   [--gateway-ca FILE]]\n"
                        "Serve sandpit's tools to an AI agent over MCP on stdin/stdout\n"
                        "(docs/mcp.md). The session's sandbox (template T, default 'default')\n"
                        "is made on first use and deleted at end of input or after S idle\n"
                        "seconds (default 900). --url: bridge to a gateway's /mcp instead of\n"
                        "the agent ($SANDPIT_API_KEY is sent as its X-API-KEY); --gateway-ca:\n"
                        "the PEM CA its certificate must chain to instead of the system's\n"
                        "(default: $SANDPIT_GATEWAY_CA).\n",
        [CLI_CMD_TEMPLATE] =
                "Usage: sandpit template pull [--json] REF\n"
                "       sandpit template images [--json]\n"
                "       sandpit template rm REF\n"
                "       sandpit template push [--json] REF TARGET\n"
                "       sandpit template build -t NAME [-f DOCKERFILE] [--build-arg K=V]\n"
                "                              [--target STAGE]\n"
                "                              [--memory Q] [--disk Q] [--cpu N] [--pids N]\n"
                "                              [--egress P] [--allow R] [--deny R] [CONTEXT]\n"
                "OCI images as templates (docs/images.md): pull one onto the node\n"
                "(again: a tag is resolved anew), list them, remove one and the\n"
                "layers no other image has. REF: [REGISTRY/]NAME[:TAG][@DIGEST].\n"
                "build: an image from a Dockerfile (docs/build.md), RUN steps in\n"
                "sandboxes with the limits and network policy given; CONTEXT defaults\n"
                "to ., DOCKERFILE to CONTEXT/Dockerfile, .dockerignore is honoured.\n"
                "push: an image of the node to a registry as TARGET\n"
                "(REGISTRY/NAME[:TAG]), with the agent's registry credentials.\n",
};

static const char common_usage[] = "\n"
                                   "      --server URL      agent URL (default: $SANDPIT_URL, "
                                   "else " CLI_DEFAULT_URL ")\n"
                                   "      --token-file F    bearer token file (default: "
                                   "$SANDPIT_TOKEN holds the token)\n"
                                   "      --agent-ca F      PEM CA of an https:// agent (default: "
                                   "$SANDPIT_AGENT_CA)\n"
                                   "      --agent-server-name N  the name its certificate "
                                   "carries\n"
                                   "                        (default with a CA: "
                                   "sandpit-agent)\n"
                                   "  -h, --help            show this help\n";

int cli_command_from_name(const char *name, CliCommand *ret)
{
        for (size_t i = 0; i < ARRAY_SIZE(command_names); i++)
                if (streq(name, command_names[i])) {
                        *ret = (CliCommand) i;
                        return 0;
                }
        return -EINVAL;
}

const char *cli_command_name(CliCommand cmd)
{
        return cmd < CLI_CMD_COUNT ? command_names[cmd] : "?";
}

void cli_usage(FILE *f)
{
        fputs("Usage: sandpit [--server URL] [--token-file F] COMMAND [OPTIONS] [ARGS]\n"
              "\n"
              "Commands:\n"
              "  create     create a sandbox and print its id\n"
              "  ls         list sandboxes\n"
              "  get        show a sandbox as JSON\n"
              "  exec       run a command in a sandbox\n"
              "  run        create a sandbox, run a command, delete the sandbox\n"
              "  kill       delete sandboxes\n"
              "  timeout    set when a sandbox expires\n"
              "  ps         list a sandbox's processes\n"
              "  signal     signal a process\n"
              "  attach     stream a background process's output\n"
              "  code       run code in a sandbox's code interpreter\n"
              "  cp         copy files or trees to or from a sandbox\n"
              "  fs         ls, stat, mkdir, rm, mv in a sandbox\n"
              "  metrics    show a sandbox's resource use\n"
              "  pause      freeze a sandbox\n"
              "  resume     thaw a paused sandbox\n"
              "  keys       the gateway's API keys: create, list, revoke\n"
              "  mcp        serve sandpit's tools to AI agents (MCP) on stdio\n"
              "  template   pull, list or remove OCI images used as templates\n"
              "\n"
              "Options:\n"
              "      --server URL      unix:///PATH, http://HOST:PORT or https://HOST:PORT\n"
              "                        (default: $SANDPIT_URL, else " CLI_DEFAULT_URL ")\n"
              "      --token-file F    bearer token file (default: $SANDPIT_TOKEN holds the "
              "token)\n"
              "      --agent-ca F      the PEM CA an https:// agent's certificate must chain\n"
              "                        to (default: $SANDPIT_AGENT_CA, else the system's)\n"
              "      --agent-server-name N  the name that certificate carries, whatever the\n"
              "                        URL's host (default with a CA: sandpit-agent)\n"
              "  -h, --help            show this help; `sandpit COMMAND --help` for a command\n"
              "      --version         print the version\n",
              f);
}

void cli_command_usage(CliCommand cmd, FILE *f)
{
        if (cmd >= CLI_CMD_COUNT)
                return;
        fputs(command_usages[cmd], f);
        fputs(common_usage, f);
}

void cli_args_done(CliArgs *a)
{
        json_object_put(a->create);
        json_object_put(a->exec);
        json_object_put(a->body);
        json_object_put(a->filters);
        json_object_put(a->build_args);
        a->create = a->exec = a->body = a->filters = a->build_args = NULL;
}

/* A macro rather than a variadic function: format checks without a va_list. */
#define usage_error(a, ...) ((void) snprintf((a)->error, sizeof((a)->error), __VA_ARGS__), -EINVAL)

/* Returns the object under key in parent, creating it empty when missing. */
static json_object *object_child(json_object *parent, const char *key)
{
        json_object *v = NULL;
        if (json_object_object_get_ex(parent, key, &v))
                return v;
        v = json_object_new_object();
        if (!v || json_object_object_add(parent, key, v) < 0) {
                json_object_put(v);
                return NULL;
        }
        return v;
}

static int add_field(json_object *obj, const char *key, json_object *v)
{
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(obj, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int add_to_array(json_object *parent, const char *key, json_object *v)
{
        json_object *arr = NULL;
        if (!v)
                return -ENOMEM;
        if (!json_object_object_get_ex(parent, key, &arr)) {
                arr = json_object_new_array();
                if (!arr || json_object_object_add(parent, key, arr) < 0) {
                        json_object_put(arr);
                        json_object_put(v);
                        return -ENOMEM;
                }
        }
        if (json_object_array_add(arr, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

/* "CIDR[:PORT[,PORT...]][/tcp|/udp]" as a network rule {"cidr", "ports", "protocol"}.
 * The CIDR itself is checked by the agent; here only the shape and the ports. */
int cli_parse_net_rule(const char *arg, json_object **ret)
{
        cleanup_free char *copy = strdup(arg);
        if (!copy)
                return -ENOMEM;
        char *proto = NULL, *ports = strchr(copy, ':');
        if (ports) {
                *ports++ = '\0';
                proto = strchr(ports, '/');
        } else {
                /* no ports: a trailing /tcp or /udp is the protocol, "/24" the prefix */
                char *slash = strrchr(copy, '/');
                if (slash && (streq(slash + 1, "tcp") || streq(slash + 1, "udp")))
                        proto = slash;
        }
        if (proto)
                *proto++ = '\0';
        if (!*copy || (proto && !streq(proto, "tcp") && !streq(proto, "udp")) || (ports && !*ports))
                return -EINVAL;
        json_object *rule = json_object_new_object(), *list = NULL;
        if (!rule || json_object_object_add(rule, "cidr", json_object_new_string(copy)) < 0)
                goto oom;
        if (ports) {
                if (!(list = json_object_new_array()) ||
                    json_object_object_add(rule, "ports", list) < 0) {
                        json_object_put(list);
                        goto oom;
                }
                for (char *t; (t = strsep(&ports, ","));) {
                        int64_t port;
                        if (cli_parse_int(t, 1, 65535, &port) < 0) {
                                json_object_put(rule);
                                return -EINVAL;
                        }
                        if (json_object_array_add(list, json_object_new_int64(port)) < 0)
                                goto oom;
                }
                if (json_object_array_length(list) == 0) {
                        json_object_put(rule);
                        return -EINVAL;
                }
        }
        if (proto && json_object_object_add(rule, "protocol", json_object_new_string(proto)) < 0)
                goto oom;
        *ret = rule;
        return 0;
oom:
        json_object_put(rule);
        return -ENOMEM;
}

static int add_net_rule(CliArgs *a, const char *opt, const char *key, const char *arg)
{
        json_object *net = object_child(a->create, "network"), *rule = NULL;
        if (!net)
                return -ENOMEM;
        int r = cli_parse_net_rule(arg, &rule);
        if (r == -EINVAL)
                return usage_error(a, "--%s expects CIDR[:PORT[,PORT...]][/tcp|/udp], got '%s'",
                                   opt, arg);
        if (r < 0)
                return r;
        if (!json_object_object_get_ex(net, "egress", NULL) &&
            add_field(net, "egress",
                      json_object_new_string(streq(key, "allow") ? "allowlist" : "allow")) < 0) {
                json_object_put(rule);
                return -ENOMEM;
        }
        return add_to_array(net, key, rule);
}

static int add_kv(CliArgs *a, json_object *parent, const char *key, const char *opt,
                  const char *arg)
{
        json_object *map = object_child(parent, key);
        if (!map)
                return -ENOMEM;
        int r = cli_parse_kv(arg, map);
        if (r == -EINVAL)
                return usage_error(a, "--%s expects KEY=VALUE, got '%s'", opt, arg);
        return r;
}

static int add_quantity(CliArgs *a, const char *key, const char *arg)
{
        json_object *v = NULL;
        int r = cli_quantity_json(arg, &v);
        if (r == -EINVAL)
                return usage_error(a, "--%s expects a quantity, got '%s'", key, arg);
        if (r < 0)
                return r;
        return add_field(a->create, key, v);
}

static int handle_option(CliArgs *a, int opt, const char *arg)
{
        /* For run, sandbox-wide settings (env, user) go to the sandbox. */
        json_object *target =
                a->command == CLI_CMD_EXEC || a->command == CLI_CMD_CODE ? a->exec : a->create;
        int64_t n = 0;
        double seconds = 0;

        switch (opt) {
        case OPT_HELP:
                a->help = true;
                return 0;
        case OPT_SERVER:
                a->server = arg;
                return 0;
        case OPT_TOKEN_FILE:
                a->token_file = arg;
                return 0;
        case OPT_AGENT_CA:
                a->agent_ca = arg;
                return 0;
        case OPT_AGENT_SERVER_NAME:
                a->agent_server_name = arg;
                return 0;
        case OPT_JSON:
                a->json = true;
                return 0;
        case OPT_TEMPLATE:
                return add_field(a->create, "template", json_object_new_string(arg));
        case OPT_IMAGE:
                return add_field(a->create, "image", json_object_new_string(arg));
        case OPT_RUNTIME:
                return add_field(a->create, "runtime", json_object_new_string(arg));
        case OPT_ID:
                return add_field(a->create, "id", json_object_new_string(arg));
        case OPT_CPU:
                return add_quantity(a, "cpu", arg);
        case OPT_MEMORY:
                return add_quantity(a, "memory", arg);
        case OPT_DISK:
                return add_quantity(a, "disk", arg);
        case OPT_PIDS:
                if (cli_parse_int(arg, 1, INT32_MAX, &n) < 0)
                        return usage_error(a, "--pids expects a positive integer, got '%s'", arg);
                return add_field(a->create, "pids", json_object_new_int64(n));
        case OPT_TIMEOUT:
                if (a->command == CLI_CMD_CREATE || a->command == CLI_CMD_RESUME) {
                        if (cli_parse_int(arg, 1, INT32_MAX, &n) < 0)
                                return usage_error(
                                        a, "--timeout expects a number of seconds, got '%s'", arg);
                        return add_field(a->command == CLI_CMD_RESUME ? a->body : a->create,
                                         "timeout", json_object_new_int64(n));
                }
                if (cli_parse_seconds(arg, &seconds) < 0)
                        return usage_error(a, "--timeout expects a number of seconds, got '%s'",
                                           arg);
                if (a->command == CLI_CMD_RUN) {
                        n = (int64_t) seconds;
                        if ((double) n < seconds)
                                n++;
                        n += CLI_RUN_TIMEOUT_MARGIN;
                        if (n > TIMEOUT_MAX_S)
                                n = TIMEOUT_MAX_S;
                        int r = add_field(a->create, "timeout", json_object_new_int64(n));
                        if (r < 0)
                                return r;
                }
                return add_field(a->exec, "timeout", json_object_new_double(seconds));
        case OPT_USER:
                if (a->command == CLI_CMD_CP || a->command == CLI_CMD_FS) {
                        a->user = arg;
                        return 0;
                }
                return add_field(target, "user", json_object_new_string(arg));
        case OPT_RECURSIVE:
                a->recursive = true;
                return 0;
        case OPT_DEPTH:
                if (cli_parse_int(arg, 1, 64, &n) < 0)
                        return usage_error(a, "--depth expects 1..64, got '%s'", arg);
                a->depth = n;
                return 0;
        case OPT_ENV:
                return add_kv(a, target, "env", "env", arg);
        case OPT_SECRET_ENV: {
                json_object *map = object_child(target, "secret_env");
                if (!map)
                        return -ENOMEM;
                if (strchr(arg, '='))
                        return add_kv(a, target, "secret_env", "secret-env", arg);
                /* NAME alone: the value comes from our environment, off the command line. */
                const char *value = getenv(arg);
                if (!*arg || !value)
                        return usage_error(
                                a, "--secret-env %s: no such variable in the environment", arg);
                return add_field(map, arg, json_object_new_string(value));
        }
        case OPT_START:
        case OPT_END:
                if (cli_parse_int(arg, 0, INT64_MAX, &n) < 0)
                        return usage_error(a, "--%s expects unix seconds, got '%s'",
                                           opt == OPT_START ? "start" : "end", arg);
                return add_field(a->body, opt == OPT_START ? "start" : "end",
                                 json_object_new_int64(n));
        case OPT_EGRESS: {
                if (!streq(arg, "deny") && !streq(arg, "allowlist") && !streq(arg, "allow"))
                        return usage_error(a, "--egress expects deny, allowlist or allow, got '%s'",
                                           arg);
                json_object *net = object_child(a->create, "network");
                return net ? add_field(net, "egress", json_object_new_string(arg)) : -ENOMEM;
        }
        case OPT_ALLOW:
                return add_net_rule(a, "allow", "allow", arg);
        case OPT_DENY:
                return add_net_rule(a, "deny", "deny", arg);
        case OPT_DEADLINE_RUNS:
                return add_field(a->body, "stop_deadline", json_object_new_boolean(false));
        case OPT_LABEL:
                if (a->command == CLI_CMD_LS) {
                        if (!strchr(arg, '=') || arg[0] == '=')
                                return usage_error(a, "--label expects KEY=VALUE, got '%s'", arg);
                        json_object *v = json_object_new_string(arg);
                        if (!v || json_object_array_add(a->filters, v) < 0) {
                                json_object_put(v);
                                return -ENOMEM;
                        }
                        return 0;
                }
                return add_kv(a, a->create, "labels", "label", arg);
        case OPT_CWD:
                return add_field(a->exec, "cwd", json_object_new_string(arg));
        case OPT_TAG:
                return add_field(a->exec, "tag", json_object_new_string(arg));
        case OPT_STDIN:
                a->read_stdin = true;
                return 0;
        case OPT_SHELL:
                /* Recorded as a placeholder; the command words become the string. */
                return add_field(a->exec, "shell", json_object_new_string(""));
        case OPT_TTY:
                if (a->command == CLI_CMD_TEMPLATE) {
                        a->build_tag = arg;
                        return 0;
                }
                a->tty = true;
                return 0;
        case OPT_FILE:
                a->dockerfile = arg;
                return 0;
        case OPT_BUILD_TARGET:
                a->build_target = arg;
                return 0;
        case OPT_BUILD_ARG:
                if (!strchr(arg, '=') || arg[0] == '=')
                        return usage_error(a, "--build-arg expects NAME=VALUE, got '%s'", arg);
                return json_object_array_add(a->build_args, json_object_new_string(arg)) < 0
                               ? -ENOMEM
                               : 0;
        case OPT_BACKGROUND:
                a->background = true;
                return add_field(a->exec, "background", json_object_new_boolean(true));
        case OPT_LANG:
                return add_field(a->exec, "language", json_object_new_string(arg));
        case OPT_CONTEXT:
                return add_field(a->exec, "context", json_object_new_string(arg));
        case OPT_SAVE_IMAGES:
                a->save_images = arg;
                return 0;
        case OPT_URL:
                a->mcp_url = arg;
                return 0;
        case OPT_GATEWAY_CA:
                if (!*arg)
                        return usage_error(a, "--gateway-ca expects a file");
                a->gateway_ca = arg;
                return 0;
        case OPT_IDLE:
                if (cli_parse_int(arg, 1, 604800, &n) < 0)
                        return usage_error(a, "--idle expects 1 to 604800 seconds, got '%s'", arg);
                a->mcp_idle = n;
                return 0;
        default:
                return usage_error(a, "internal error: option %d", opt);
        }
}

/* Builds exec's "cmd" array, or the "shell" string when --shell was given. */
static int set_command(json_object *exec, char **words, int n)
{
        json_object *shell = NULL;

        if (json_object_object_get_ex(exec, "shell", &shell)) {
                size_t len = 1;
                for (int i = 0; i < n; i++)
                        len += strlen(words[i]) + 1;
                char *s = malloc(len);
                if (!s)
                        return -ENOMEM;
                size_t used = 0;
                for (int i = 0; i < n; i++) {
                        size_t w = strlen(words[i]);
                        if (i > 0)
                                s[used++] = ' ';
                        memcpy(s + used, words[i], w);
                        used += w;
                }
                s[used] = '\0';
                json_object *v = json_object_new_string(s);
                free(s);
                return add_field(exec, "shell", v);
        }

        json_object *cmd = json_object_new_array();
        if (!cmd)
                return -ENOMEM;
        for (int i = 0; i < n; i++) {
                json_object *w = json_object_new_string(words[i]);
                if (!w || json_object_array_add(cmd, w) < 0) {
                        json_object_put(w);
                        json_object_put(cmd);
                        return -ENOMEM;
                }
        }
        return add_field(exec, "cmd", cmd);
}

static int check_positional(CliArgs *a, int min, int max, const char *what)
{
        if (a->n_args < min)
                return usage_error(a, "%s: missing %s", command_names[a->command], what);
        if (max >= 0 && a->n_args > max)
                return usage_error(a, "%s: unexpected argument '%s'", command_names[a->command],
                                   a->args[max]);
        return 0;
}

static int build_body(CliArgs *a)
{
        int64_t n = 0;

        switch (a->command) {
        case CLI_CMD_CREATE:
        case CLI_CMD_LS:
        case CLI_CMD_MCP:
                return check_positional(a, 0, 0, "");
        case CLI_CMD_GET:
        case CLI_CMD_PS:
        case CLI_CMD_METRICS:
        case CLI_CMD_PAUSE:
        case CLI_CMD_RESUME:
                return check_positional(a, 1, 1, "sandbox id");
        case CLI_CMD_KILL:
                return check_positional(a, 1, -1, "sandbox id");
        case CLI_CMD_ATTACH:
                if (check_positional(a, 2, 2, a->n_args == 0 ? "sandbox id and pid" : "pid") < 0)
                        return -EINVAL;
                if (cli_parse_int(a->args[1], 1, INT32_MAX, &n) < 0)
                        return usage_error(a, "attach: invalid pid '%s'", a->args[1]);
                a->pid = (int) n;
                return 0;
        case CLI_CMD_TIMEOUT:
                if (check_positional(a, 2, 2,
                                     a->n_args == 0 ? "sandbox id and seconds" : "seconds") < 0)
                        return -EINVAL;
                if (cli_parse_int(a->args[1], 1, INT32_MAX, &n) < 0)
                        return usage_error(a, "timeout: invalid number of seconds '%s'",
                                           a->args[1]);
                a->body = json_object_new_object();
                if (!a->body)
                        return -ENOMEM;
                return add_field(a->body, "timeout", json_object_new_int64(n));
        case CLI_CMD_SIGNAL: {
                const char *missing[] = {"sandbox id, pid and signal", "pid and signal", "signal"};
                if (check_positional(a, 3, 3, missing[a->n_args < 3 ? a->n_args : 0]) < 0)
                        return -EINVAL;
                if (cli_parse_int(a->args[1], 1, INT32_MAX, &n) < 0)
                        return usage_error(a, "signal: invalid pid '%s'", a->args[1]);
                a->pid = (int) n;
                a->body = json_object_new_object();
                if (!a->body)
                        return -ENOMEM;
                if (cli_parse_int(a->args[2], 1, 127, &n) == 0)
                        return add_field(a->body, "signal", json_object_new_int64(n));
                if (a->args[2][0] == '\0')
                        return usage_error(a, "signal: empty signal name");
                return add_field(a->body, "signal", json_object_new_string(a->args[2]));
        }
        case CLI_CMD_EXEC: {
                if (a->n_args < 1)
                        return usage_error(a, "exec: missing sandbox id");
                /* getopt stopped at the id, so a "--" after it is still there. */
                int first = a->n_args >= 2 && streq(a->args[1], "--") ? 2 : 1;
                if (a->n_args <= first)
                        return usage_error(a, "exec: missing command");
                if (a->tty && a->background)
                        return usage_error(a, "exec: -t and --background do not go together");
                return set_command(a->exec, a->args + first, a->n_args - first);
        }
        case CLI_CMD_RUN:
                if (a->n_args < 1)
                        return usage_error(a, "run: missing command");
                return set_command(a->exec, a->args, a->n_args);
        case CLI_CMD_CODE:
                if (check_positional(a, 1, 2, "sandbox id") < 0)
                        return -EINVAL;
                if (a->n_args == 1 || streq(a->args[1], "-")) {
                        a->read_stdin = true;
                        return 0;
                }
                return add_field(a->exec, "code", json_object_new_string(a->args[1]));
        case CLI_CMD_CP: {
                if (check_positional(a, 2, 2,
                                     a->n_args == 0 ? "source and destination" : "destination") < 0)
                        return -EINVAL;
                bool src = cli_remote_path(a->args[0], NULL, NULL),
                     dst = cli_remote_path(a->args[1], NULL, NULL);
                if (src == dst)
                        return usage_error(a, "cp: exactly one of SRC and DST must be ID:PATH");
                return 0;
        }
        case CLI_CMD_FS: {
                if (a->n_args < 1)
                        return usage_error(a, "fs: missing ls, stat, mkdir, rm or mv");
                const char *sub = a->args[0];
                bool mv = streq(sub, "mv");
                if (!mv && !streq(sub, "ls") && !streq(sub, "stat") && !streq(sub, "mkdir") &&
                    !streq(sub, "rm"))
                        return usage_error(a, "fs: unknown subcommand '%s'", sub);
                if (a->recursive && !streq(sub, "rm"))
                        return usage_error(a, "fs %s: -r is for rm", sub);
                if (a->depth && !streq(sub, "ls"))
                        return usage_error(a, "fs %s: --depth is for ls", sub);
                if (a->n_args < (mv ? 4 : 3))
                        return usage_error(a, "fs %s: missing %s", sub,
                                           a->n_args < 2   ? "sandbox id"
                                           : a->n_args < 3 ? "path"
                                                           : "destination");
                if (a->n_args > (mv ? 4 : 3))
                        return usage_error(a, "fs %s: unexpected argument '%s'", sub,
                                           a->args[mv ? 4 : 3]);
                return 0;
        }
        case CLI_CMD_TEMPLATE: {
                const char *sub = a->n_args ? a->args[0] : "";
                bool images = streq(sub, "images");
                bool build_opts = a->build_tag || a->dockerfile || a->build_target ||
                                  json_object_array_length(a->build_args) > 0 ||
                                  json_object_object_length(a->create) > 0;
                if (streq(sub, "build")) {
                        if (!a->build_tag || !*a->build_tag)
                                return usage_error(a, "template build: give the image's name "
                                                      "with -t NAME");
                        if (a->n_args > 2)
                                return usage_error(a, "template build: unexpected argument '%s'",
                                                   a->args[2]);
                        return 0;
                }
                if (build_opts)
                        return usage_error(
                                a,
                                "template %s: -t, -f, --build-arg, --target and the sandbox "
                                "options are for build",
                                sub);
                bool push = streq(sub, "push");
                if (!images && !push && !streq(sub, "pull") && !streq(sub, "rm"))
                        return usage_error(a, "template: expected pull, images, rm, build or push");
                int want = images ? 1 : push ? 3 : 2;
                if (a->n_args < want)
                        return usage_error(a, "template %s: missing %s", sub,
                                           push && a->n_args == 2 ? "target" : "image reference");
                if (a->n_args > want)
                        return usage_error(a, "template %s: unexpected argument '%s'", sub,
                                           a->args[want]);
                return 0;
        }
        case CLI_CMD_COUNT:
        default:
                break;
        }
        return -EINVAL;
}

int cli_parse_args(CliCommand cmd, int argc, char **argv, CliArgs *ret)
{
        struct option longopts[ARRAY_SIZE(option_specs) + 1];
        char optstring[2 + 3 * ARRAY_SIZE(option_specs) + 1];
        size_t n_long = 0;
        char *o = optstring;

        *ret = (CliArgs){.command = cmd};
        if (cmd >= CLI_CMD_COUNT || argc < 1)
                return -EINVAL;
        /* exec and run stop at the first non-option, so the command's own options
         * are left alone; the others accept options anywhere. */
        if (cmd == CLI_CMD_EXEC || cmd == CLI_CMD_RUN)
                *o++ = '+';
        *o++ = ':';
        for (size_t i = 0; i < ARRAY_SIZE(option_specs); i++) {
                const OptionSpec *s = &option_specs[i];
                if (!(s->cmds & CMD(cmd)))
                        continue;
                longopts[n_long++] = (struct option){s->name, s->has_arg, NULL, s->val};
                if (s->val < 0x100) {
                        *o++ = (char) s->val;
                        if (s->has_arg == required_argument)
                                *o++ = ':';
                }
        }
        longopts[n_long] = (struct option){0};
        *o = '\0';

        if (cmd == CLI_CMD_TEMPLATE) {
                ret->build_args = json_object_new_array();
                if (!ret->build_args)
                        return -ENOMEM;
        }
        if (cmd == CLI_CMD_CREATE || cmd == CLI_CMD_RUN || cmd == CLI_CMD_MCP ||
            cmd == CLI_CMD_TEMPLATE) {
                ret->create = json_object_new_object();
                if (!ret->create)
                        return -ENOMEM;
        }
        if (cmd == CLI_CMD_EXEC || cmd == CLI_CMD_RUN || cmd == CLI_CMD_CODE) {
                ret->exec = json_object_new_object();
                if (!ret->exec)
                        return -ENOMEM;
        }
        if (cmd == CLI_CMD_METRICS || cmd == CLI_CMD_PAUSE || cmd == CLI_CMD_RESUME) {
                ret->body = json_object_new_object();
                if (!ret->body)
                        return -ENOMEM;
        }
        if (cmd == CLI_CMD_LS) {
                ret->filters = json_object_new_array();
                if (!ret->filters)
                        return -ENOMEM;
        }

        opterr = 0;
        optind = 0; /* full re-initialisation, as getopt may have run before */
        for (;;) {
                int longindex = -1;
                int c = getopt_long(argc, argv, optstring, longopts, &longindex);
                if (c == -1)
                        break;
                if (c == '?') {
                        if (optopt != 0 && optopt < 0x100)
                                return usage_error(ret, "%s: unknown option '-%c'",
                                                   command_names[cmd], optopt);
                        return usage_error(ret, "%s: unknown option '%s'", command_names[cmd],
                                           argv[optind - 1]);
                }
                if (c == ':') {
                        for (size_t i = 0; i < n_long; i++)
                                if (longopts[i].val == optopt && optopt != 0)
                                        return usage_error(ret,
                                                           "%s: option '--%s' needs an argument",
                                                           command_names[cmd], longopts[i].name);
                        return usage_error(ret, "%s: option '%s' needs an argument",
                                           command_names[cmd], argv[optind - 1]);
                }
                int r = handle_option(ret, c, optarg);
                if (r < 0)
                        return r;
        }
        if (ret->help)
                return 0;

        ret->args = argv + optind;
        ret->n_args = argc - optind;
        return build_body(ret);
}
