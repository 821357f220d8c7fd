/* sandpit template pull|images|rm|push: images as templates (docs/images.md,
 * docs/cli.md). `create --image REF` is an option of create (args.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "sandpit/agent-client.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/quantity.h"

static void print_image(json_object *img)
{
        char size[32];
        quantity_format_bytes((uint64_t) json_int(img, "size", 0), size, sizeof(size));
        printf("%s\t%s\t%zu layers\t%s\n", json_text(img, "name") ?: "-",
               json_text(img, "digest") ?: "-", json_object_array_length(json_field(img, "layers")),
               size);
}

int cli_cmd_template(CliContext *ctx, const CliArgs *a)
{
        const char *sub = a->args[0];
        cleanup_json json_object *resp = NULL;
        int r;
        if (streq(sub, "build"))
                return cli_template_build(ctx, a);
        if (streq(sub, "pull")) {
                if ((r = agent_client_image_pull(ctx->agent, a->args[1], &resp)) < 0)
                        return cli_agent_error(ctx, r);
                if (a->json)
                        return cli_print_json(ctx, resp);
                print_image(resp);
                return cli_finish_output(ctx);
        }
        if (streq(sub, "push")) {
                if ((r = agent_client_image_push(ctx->agent, a->args[1], a->args[2], &resp)) < 0)
                        return cli_agent_error(ctx, r);
                if (a->json)
                        return cli_print_json(ctx, resp);
                printf("%s\t%s\n", json_text(resp, "name") ?: "-",
                       json_text(resp, "digest") ?: "-");
                return cli_finish_output(ctx);
        }
        if (streq(sub, "images")) {
                if ((r = agent_client_image_list(ctx->agent, &resp)) < 0)
                        return cli_agent_error(ctx, r);
                if (a->json)
                        return cli_print_json(ctx, resp);
                for (size_t i = 0; i < json_object_array_length(resp); i++)
                        print_image(json_object_array_get_idx(resp, i));
                return cli_finish_output(ctx);
        }
        r = agent_client_image_remove(ctx->agent, a->args[1]); /* rm */
        return r < 0 ? cli_agent_error(ctx, r) : 0;
}
