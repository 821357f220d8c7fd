/* sandpit mcp --url: placeholder until the bridge lands. */
#include <errno.h>
#include <stdio.h>

#include "cli.h"

int cli_mcp_bridge(CliContext *ctx, const char *url, const volatile sig_atomic_t *stop,
                   const sigset_t *wait_mask)
{
        (void) stop;
        (void) wait_mask;
        snprintf(ctx->error, sizeof(ctx->error), "mcp --url %s: not built yet", url);
        return -EOPNOTSUPP;
}
