/* sandpit template pull|images|rm: images as templates (docs/images.md,
 * docs/cli.md). `create --image REF` is an option of create (args.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
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
        if (streq(sub, "pull")) {
                cleanup_json json_object *body = json_object_new_object();
                if (!body)
                        return -ENOMEM;
                (void) json_object_object_add(body, "image", json_object_new_string(a->args[1]));
                if ((r = cli_api_call(ctx, "POST", "/v1/images/pull", body, &resp)) < 0)
                        return r;
                if (a->json)
                        puts(json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PRETTY));
                else
                        print_image(resp);
                return 0;
        }
        if (streq(sub, "images")) {
                if ((r = cli_api_call(ctx, "GET", "/v1/images", NULL, &resp)) < 0)
                        return r;
                json_object *arr = json_field(resp, "images");
                if (a->json) {
                        puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY));
                        return 0;
                }
                for (size_t i = 0; i < json_object_array_length(arr); i++)
                        print_image(json_object_array_get_idx(arr, i));
                return 0;
        }
        /* rm */
        cleanup_free char *escaped = NULL, *path = NULL;
        if ((r = cli_url_escape(a->args[1], &escaped)) < 0 ||
            asprintf(&path, "/v1/images?image=%s", escaped) < 0)
                return r < 0 ? r : -ENOMEM;
        return cli_api_call(ctx, "DELETE", path, NULL, NULL);
}
