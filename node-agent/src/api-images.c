/* The image routes (see api-images.h). */
#include "api-images.h"

#include <errno.h>
#include <string.h>

#include "api-internal.h"
#include "image.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"

/* What a pull or a push asks for. auth is the caller's credentials as text,
 * for this request only: image_request_done() wipes it. */
typedef struct {
        json_object *body;
        const char *ref, *to;          /* to: a push's destination */
        json_object *refresh, *verify; /* a pull's, or NULL */
        const char *auth;
        size_t auth_len;
} ImageRequest;

static void image_request_done(ImageRequest *r)
{
        if (r->auth)
                explicit_bzero((char *) r->auth, r->auth_len);
        json_object_put(r->body);
        *r = (ImageRequest){0};
}

static bool is_bool_or_absent(json_object *v)
{
        return !v || json_object_is_type(v, json_type_boolean);
}

/* The body of a pull ({"image", "refresh", "verify", "auth"}) or of a push
 * ({"image", "to", "auth"}); anything else is answered 400 with the route's
 * usage, and -1 returned. */
static int parse_image_request(HttpRequest *req, bool push, ImageRequest *r)
{
        *r = (ImageRequest){0};
        if (http_request_parse_json(req, &r->body) < 0)
                return -1;
        r->ref = json_str(r->body, "image");
        r->to = json_str(r->body, "to");
        r->refresh = json_field(r->body, "refresh");
        r->verify = json_field(r->body, "verify");
        json_object *auth = json_field(r->body, "auth");
        bool bad = !r->ref || (push && !r->to) ||
                   (auth && !json_object_is_type(auth, json_type_object)) ||
                   !is_bool_or_absent(r->refresh) || !is_bool_or_absent(r->verify);
        json_object_object_foreach(r->body, key, val) {
                (void) val;
                bool known =
                        streq(key, "image") || streq(key, "auth") ||
                        (push ? streq(key, "to") : streq(key, "refresh") || streq(key, "verify"));
                if (!known)
                        bad = true;
        }
        if (bad) {
                if (push)
                        http_respond_error(req, 400,
                                           "body must be {\"image\": REF, \"to\": "
                                           "REGISTRY/REPOSITORY[:TAG]} (and optionally \"auth\": "
                                           "a docker config object with this push's credentials)");
                else
                        http_respond_error(req, 400,
                                           "body must be {\"image\": REF} (and optionally "
                                           "\"refresh\": false to keep a pulled tag, \"auth\": a "
                                           "docker config object with this pull's credentials, "
                                           "\"verify\": true to check a cached copy against them)");
                image_request_done(r);
                return -1;
        }
        /* The caller's credentials: for this request only, never logged or kept. */
        if (auth)
                r->auth = json_object_to_json_string_length(auth, JSON_C_TO_STRING_PLAIN,
                                                            &r->auth_len);
        return 0;
}

static void handle_pull(Agent *a, HttpRequest *req)
{
        ImageRequest q;
        if (parse_image_request(req, false, &q) < 0)
                return;
        ImagePullOptions o = {
                /* An explicit pull resolves the tag again, as `docker pull` does. */
                .refresh = q.refresh ? json_object_get_boolean(q.refresh) : true,
                /* Credentials of its own: the node's copy is checked against them. */
                .verify = q.verify ? json_object_get_boolean(q.verify) : q.auth != NULL,
                .auth = q.auth,
                .auth_len = q.auth_len,
        };
        char err[768] = "";
        json_object *img = NULL;
        int r = image_pull_with(a->images, q.ref, &o, &img, err, sizeof(err));
        image_request_done(&q);
        if (r < 0) {
                api_respond_errno(req, r, err, "cannot pull");
                return;
        }
        http_respond_json(req, 200, img);
}

static void handle_push(Agent *a, HttpRequest *req)
{
        ImageRequest q;
        if (parse_image_request(req, true, &q) < 0)
                return;
        char err[768] = "";
        json_object *out = NULL;
        int r = image_push(a->images, q.ref, q.to, q.auth, q.auth_len, &out, err, sizeof(err));
        image_request_done(&q);
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
