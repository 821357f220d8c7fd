/* The image routes (see api-images.h). */
#include "api-images.h"

#include <errno.h>
#include <string.h>

#include "api-internal.h"
#include "image.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"

static void handle_pull(Agent *a, HttpRequest *req)
{
        cleanup_json json_object *body = NULL;
        if (http_request_parse_json(req, &body) < 0)
                return;
        const char *ref = json_str(body, "image");
        json_object *refresh = json_field(body, "refresh"), *verify = json_field(body, "verify");
        json_object *auth = json_field(body, "auth");
        bool bad = !ref || (refresh && !json_object_is_type(refresh, json_type_boolean)) ||
                   (verify && !json_object_is_type(verify, json_type_boolean)) ||
                   (auth && !json_object_is_type(auth, json_type_object));
        json_object_object_foreach(body, key, val) {
                (void) val;
                if (!streq(key, "image") && !streq(key, "refresh") && !streq(key, "verify") &&
                    !streq(key, "auth"))
                        bad = true;
        }
        if (bad) {
                http_respond_error(req, 400,
                                   "body must be {\"image\": REF} (and optionally "
                                   "\"refresh\": false to keep a pulled tag, \"auth\": a docker "
                                   "config object with this pull's credentials, \"verify\": "
                                   "true to check a cached copy against them)");
                return;
        }
        /* The caller's credentials: for this pull only, never logged or kept. */
        size_t auth_len = 0;
        const char *text =
                auth ? json_object_to_json_string_length(auth, JSON_C_TO_STRING_PLAIN, &auth_len)
                     : NULL;
        ImagePullOptions o = {
                /* An explicit pull resolves the tag again, as `docker pull` does. */
                .refresh = refresh ? json_object_get_boolean(refresh) : true,
                /* Credentials of its own: the node's copy is checked against them. */
                .verify = verify ? json_object_get_boolean(verify) : auth != NULL,
                .auth = text,
                .auth_len = auth_len,
        };
        char err[768] = "";
        json_object *img = NULL;
        int r = image_pull_with(a->images, ref, &o, &img, err, sizeof(err));
        if (text)
                explicit_bzero((char *) text, auth_len);
        if (r < 0) {
                api_respond_errno(req, r, err, "cannot pull");
                return;
        }
        http_respond_json(req, 200, img);
}

static void handle_push(Agent *a, HttpRequest *req)
{
        cleanup_json json_object *body = NULL;
        if (http_request_parse_json(req, &body) < 0)
                return;
        const char *ref = json_str(body, "image"), *to = json_str(body, "to");
        json_object *auth = json_field(body, "auth");
        bool bad = !ref || !to || (auth && !json_object_is_type(auth, json_type_object));
        json_object_object_foreach(body, key, val) {
                (void) val;
                if (!streq(key, "image") && !streq(key, "to") && !streq(key, "auth"))
                        bad = true;
        }
        if (bad) {
                http_respond_error(req, 400,
                                   "body must be {\"image\": REF, \"to\": "
                                   "REGISTRY/REPOSITORY[:TAG]} (and optionally \"auth\": a "
                                   "docker config object with this push's credentials)");
                return;
        }
        /* The caller's credentials: for this push only, never logged or kept. */
        size_t auth_len = 0;
        const char *text =
                auth ? json_object_to_json_string_length(auth, JSON_C_TO_STRING_PLAIN, &auth_len)
                     : NULL;
        char err[768] = "";
        json_object *out = NULL;
        int r = image_push(a->images, ref, to, text, auth_len, &out, err, sizeof(err));
        if (text)
                explicit_bzero((char *) text, auth_len);
        if (r < 0) {
                api_respond_errno(req, r, err, "cannot push");
                return;
        }
        http_respond_json(req, 200, out);
}

static void handle_list(Agent *a, HttpRequest *req)
{
        json_object *arr = NULL;
        int r = image_list_json(a->images, &arr);
        if (r < 0) {
                api_respond_errno(req, r, NULL, "cannot list images");
                return;
        }
        json_object *o = json_object_new_object();
        (void) json_object_object_add(o, "images", arr);
        http_respond_json(req, 200, o);
}

static void handle_remove(Agent *a, HttpRequest *req)
{
        const char *ref = http_request_query(req, "image");
        if (!ref || !*ref) {
                http_respond_error(req, 400, "give the image as ?image=REF");
                return;
        }
        char err[512] = "";
        cleanup_free char *name = NULL;
        if (image_canonical_name(a->images, ref, &name) == 0)
                sandbox_image_wait_teardowns(a, name);
        int r = image_remove(a->images, ref, err, sizeof(err));
        if (r < 0)
                api_respond_errno(req, r, err, "cannot remove the image");
        else
                http_respond_empty(req, 204);
}

bool api_images_handle(Agent *a, HttpRequest *req)
{
        const char *p = http_request_path(req), *m = http_request_method(req);
        if (streq(p, "/v1/images") || streq(p, "/v1/images/")) {
                if (streq(m, "GET"))
                        handle_list(a, req);
                else if (streq(m, "DELETE"))
                        handle_remove(a, req);
                else
                        http_respond_error(req, 405, "use GET or DELETE");
                return true;
        }
        if (streq(p, "/v1/images/pull")) {
                if (streq(m, "POST"))
                        handle_pull(a, req);
                else
                        http_respond_error(req, 405, "use POST");
                return true;
        }
        if (streq(p, "/v1/images/push")) {
                if (streq(m, "POST"))
                        handle_push(a, req);
                else
                        http_respond_error(req, 405, "use POST");
                return true;
        }
        if (strncmp(p, "/v1/images/", strlen("/v1/images/")) == 0) {
                http_respond_error(req, 404, "no such route");
                return true;
        }
        return false;
}
