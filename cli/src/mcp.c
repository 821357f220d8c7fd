/* sandpit mcp: the MCP server on stdio (docs/mcp.md). Against an agent (the
 * default) the tools run here, on the gateway's MCP core over a local
 * backend; with --url the messages go to a gateway's /mcp (mcp-bridge.c), so
 * the tools have one implementation wherever they run. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mcp-stdio.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
        (void) sig;
        stop_requested = 1;
}

/* SIGTERM, SIGINT and SIGHUP end the session cleanly (its sandbox deleted):
 * blocked everywhere but in the reader's ppoll(), which *wait_mask lets them
 * into. */
static int catch_stop_signals(sigset_t *wait_mask)
{
        static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
        sigset_t block;
        sigemptyset(&block);
        struct sigaction sa = {.sa_handler = on_stop};
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < ARRAY_SIZE(sigs); i++) {
                if (sigaction(sigs[i], &sa, NULL) < 0)
                        return negative_errno();
                sigaddset(&block, sigs[i]);
        }
        return -pthread_sigmask(SIG_BLOCK, &block, wait_mask);
}

int cli_cmd_mcp(CliContext *ctx, const CliArgs *a)
{
        sigset_t wait_mask;
        int r = catch_stop_signals(&wait_mask);
        if (r < 0) {
                snprintf(ctx->error, sizeof(ctx->error), "mcp: cannot handle signals: %s",
                         strerror(-r));
                return r;
        }
        if (a->mcp_url) {
                const char *ca = a->gateway_ca;
                if (!ca) {
                        ca = getenv("SANDPIT_GATEWAY_CA");
                        ca = ca && *ca ? ca : NULL;
                }
                return cli_mcp_bridge(ctx, a->mcp_url, ca, &stop_requested, &wait_mask);
        }

        /* The agent's token: --token-file given to mcp, else $SANDPIT_TOKEN. */
        cleanup_free char *token = NULL;
        const char *env = getenv("SANDPIT_TOKEN");
        if (a->token_file) {
                r = read_token_file(a->token_file, 1, &token);
                if (r < 0) {
                        snprintf(ctx->error, sizeof(ctx->error), "cannot read token file %s: %s",
                                 a->token_file, strerror(-r));
                        return r;
                }
        } else if (env && *env) {
                token = strdup(env);
                if (!token)
                        return -ENOMEM;
        }
        GwBackend backend = {0};
        r = gw_backend_local_new(ctx->url, token, &backend);
        if (token)
                explicit_bzero(token, strlen(token));
        if (r < 0) {
                snprintf(ctx->error, sizeof(ctx->error), "mcp: %s", strerror(-r));
                return r;
        }
        McpConfig cfg = {.backend = &backend,
                         .template_name = json_str(a->create, "template"),
                         .sandbox_idle_s = (unsigned) a->mcp_idle};
        r = mcp_stdio_serve(&cfg, STDIN_FILENO, STDOUT_FILENO, &stop_requested, &wait_mask);
        gw_backend_done(&backend);
        if (r < 0) {
                snprintf(ctx->error, sizeof(ctx->error), "mcp: reading stdin: %s", strerror(-r));
                return r;
        }
        return 0;
}
