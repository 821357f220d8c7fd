/* sandpit: the command-line client of the sandpit agent. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "keys.h"
#include "sandpit/agent-client.h"
#include "sandpit/http-client.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

enum {
        OPT_SERVER = 0x100,
        OPT_TOKEN_FILE,
        OPT_AGENT_CA,
        OPT_AGENT_SERVER_NAME,
        OPT_VERSION,
};

static const char *non_empty_env(const char *name)
{
        const char *v = getenv(name);
        return v && *v ? v : NULL;
}

static int run(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"help", no_argument, NULL, 'h'},
                {"server", required_argument, NULL, OPT_SERVER},
                {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
                {"agent-ca", required_argument, NULL, OPT_AGENT_CA},
                {"agent-server-name", required_argument, NULL, OPT_AGENT_SERVER_NAME},
                {"version", no_argument, NULL, OPT_VERSION},
                {0},
        };
        const char *server = NULL;
        const char *token_file = NULL;
        const char *agent_ca = NULL, *agent_server_name = NULL;
        bool help = false;

        opterr = 0;
        for (;;) {
                int c = getopt_long(argc, argv, "+:h", longopts, NULL);
                if (c == -1)
                        break;
                switch (c) {
                case 'h':
                        help = true;
                        break;
                case OPT_SERVER:
                        server = optarg;
                        break;
                case OPT_TOKEN_FILE:
                        token_file = optarg;
                        break;
                case OPT_AGENT_CA:
                        agent_ca = optarg;
                        break;
                case OPT_AGENT_SERVER_NAME:
                        agent_server_name = optarg;
                        break;
                case OPT_VERSION:
                        printf("sandpit %s\n", CLI_VERSION);
                        return 0;
                case ':':
                        fprintf(stderr, "sandpit: option '%s' needs an argument\n",
                                argv[optind - 1]);
                        return CLI_EXIT_USAGE;
                default:
                        if (optopt != 0 && optopt < 0x100)
                                fprintf(stderr, "sandpit: unknown option '-%c'\n", optopt);
                        else
                                fprintf(stderr, "sandpit: unknown option '%s'\n", argv[optind - 1]);
                        return CLI_EXIT_USAGE;
                }
        }

        const char *name = optind < argc ? argv[optind] : NULL;
        CliCommand cmd;
        if (name && streq(name, "help")) {
                /* sandpit help [COMMAND] */
                const char *topic = optind + 1 < argc ? argv[optind + 1] : NULL;
                if (topic && streq(topic, "keys"))
                        return cli_keys_main(2,
                                             (char *[]){(char *) "keys", (char *) "--help", NULL});
                if (topic && cli_command_from_name(topic, &cmd) == 0)
                        cli_command_usage(cmd, stdout);
                else
                        cli_usage(stdout);
                return 0;
        }
        if (help) {
                cli_usage(stdout);
                return 0;
        }
        if (!name) {
                fputs("sandpit: missing command (see 'sandpit --help')\n", stderr);
                return CLI_EXIT_USAGE;
        }
        if (streq(name, "keys"))
                return cli_keys_main(argc - optind, argv + optind);
        if (cli_command_from_name(name, &cmd) < 0) {
                fprintf(stderr, "sandpit: unknown command '%s' (see 'sandpit --help')\n", name);
                return CLI_EXIT_USAGE;
        }

        CliArgs args;
        int r = cli_parse_args(cmd, argc - optind, argv + optind, &args);
        if (r < 0) {
                fprintf(stderr, "sandpit: %s\n", args.error[0] ? args.error : strerror(-r));
                cli_args_done(&args);
                return CLI_EXIT_USAGE;
        }
        if (args.help) {
                cli_command_usage(cmd, stdout);
                cli_args_done(&args);
                return 0;
        }

        if (args.server)
                server = args.server;
        if (args.token_file)
                token_file = args.token_file;
        if (!server)
                server = non_empty_env("SANDPIT_URL") ?: CLI_DEFAULT_URL;
        if (args.agent_ca)
                agent_ca = args.agent_ca;
        if (args.agent_server_name)
                agent_server_name = args.agent_server_name;
        if (!agent_ca)
                agent_ca = non_empty_env("SANDPIT_AGENT_CA");
        /* The URL's scheme is the user's own choice: http:// stays allowed. */
        r = agent_client_set_tls(&(AgentClientTls){
                .ca_file = agent_ca,
                .server_name = agent_server_name ? agent_server_name
                               : agent_ca        ? AGENT_DEFAULT_SERVER_NAME
                                                 : NULL,
                .allow_http = true,
        });
        if (r < 0) {
                fprintf(stderr, "sandpit: bad --agent-ca or --agent-server-name\n");
                cli_args_done(&args);
                return CLI_EXIT_USAGE;
        }
        if (agent_ca && access(agent_ca, R_OK) < 0) {
                fprintf(stderr, "sandpit: cannot read the agent CA %s: %s\n", agent_ca,
                        strerror(errno));
                cli_args_done(&args);
                return CLI_EXIT_FAILURE;
        }

        char *token = NULL; /* freed as soon as the client has its copy */
        if (token_file) {
                r = read_token_file(token_file, 1, &token);
                if (r < 0) {
                        fprintf(stderr, "sandpit: cannot read token file %s: %s\n", token_file,
                                strerror(-r));
                        cli_args_done(&args);
                        return CLI_EXIT_FAILURE;
                }
        } else {
                const char *t = non_empty_env("SANDPIT_TOKEN");
                if (t && !(token = strdup(t))) {
                        cli_args_done(&args);
                        return CLI_EXIT_FAILURE;
                }
        }

        cleanup_agent_client AgentClient *agent = NULL;
        r = agent_client_new(server, token, &agent);
        if (token) {
                explicit_bzero(token, strlen(token));
                free(token);
        }
        if (r < 0) {
                if (r == -EINVAL)
                        fprintf(stderr,
                                "sandpit: invalid server URL '%s' (expected unix:///PATH, "
                                "http://HOST:PORT or https://HOST:PORT), token or "
                                "--agent-server-name\n",
                                server);
                else
                        fprintf(stderr, "sandpit: %s\n", strerror(-r));
                cli_args_done(&args);
                return r == -EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
        }

        CliContext ctx = {.agent = agent, .url = server};
        r = cli_run(&ctx, &args);
        cli_args_done(&args);
        if (r < 0) {
                fprintf(stderr, "sandpit: %s\n", ctx.error[0] ? ctx.error : strerror(-r));
                return CLI_EXIT_FAILURE;
        }
        return r;
}

int main(int argc, char **argv)
{
        /* A closed pipe shows up as EPIPE from write(), handled where it happens. */
        (void) signal(SIGPIPE, SIG_IGN);
        int status = run(argc, argv);
        if (fflush(stdout) != 0 && status == 0)
                status = CLI_EXIT_FAILURE;
        return status;
}
