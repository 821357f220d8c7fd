/* Warm pools over HTTP (docs/agent-api.md#warm-pools). */
#include "api-pool.h"

#include <errno.h>
#include <string.h>

#include "pool.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

void api_pools_handle(Agent *a, HttpRequest *req, const char *name)
{
        const char *method = http_request_method(req);
        json_object *o = NULL;
        int r;
        if (!name) {
                if (!streq(method, "GET")) {
                        http_respond_error(req, 405, "use GET");
                        return;
                }
                if ((r = pool_get_json(a, NULL, &o)) < 0)
                        api_respond_errno(req, r, NULL, "cannot list pools");
                else
                        http_respond_json(req, 200, o);
                return;
        }
        if (!id_is_valid(name) && !streq(method, "PUT")) { /* PUT: pool_put() says why */
                http_respond_error(req, 404, "pool %.64s not found", name);
                return;
        }
        if (streq(method, "GET")) {
                if ((r = pool_get_json(a, name, &o)) == -ENOENT)
                        http_respond_error(req, 404, "pool %s not found", name);
                else if (r < 0)
                        api_respond_errno(req, r, NULL, "cannot read the pool");
                else
                        http_respond_json(req, 200, o);
        } else if (streq(method, "PUT")) {
                cleanup_json json_object *body = NULL;
                if (http_request_parse_json(req, &body) < 0)
                        return;
                char err[512] = "";
                r = pool_put(a, name, body, &o, err, sizeof(err));
                if (r == -EEXIST)
                        http_respond_error(req, 409, "%s", err);
                else if (r < 0)
                        api_respond_errno(req, r, err, "cannot set the pool");
                else
                        http_respond_json(req, 200, o);
        } else if (streq(method, "DELETE")) {
                if ((r = pool_remove(a, name)) == -ENOENT)
                        http_respond_error(req, 404, "pool %s not found", name);
                else if (r < 0)
                        api_respond_errno(req, r, NULL, "cannot remove the pool");
                else
                        http_respond_empty(req, 204);
        } else {
                http_respond_error(req, 405, "use GET, PUT or DELETE");
        }
}
