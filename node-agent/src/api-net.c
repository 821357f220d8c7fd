/* /v1/sandboxes/{id}/network: read or replace the egress policy, live;
 * /v1/sandboxes/{id}/ports/{port}/...: the port proxy (net-proxy.c). */
#include "api-net.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "net-proxy.h"
#include "net.h"
#include "sandbox.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"

void api_net_handle_network(Agent *a, HttpRequest *req, const char *id, const char *rest)
{
        const char *method = http_request_method(req);
        if (*rest) {
                http_respond_error(req, 404, "no such route");
                return;
        }
        if (streq(method, "GET")) {
                json_object *o = NULL, *net = NULL;
                if (sandbox_get_json(a, id, &o) < 0) {
                        api_sandbox_not_found(req, id);
                        return;
                }
                if (json_object_object_get_ex(o, "network", &net))
                        net = json_object_get(net);
                json_object_put(o);
                http_respond_json(req, 200, net);
                return;
        }
        if (!streq(method, "PUT") && !streq(method, "POST")) {
                http_respond_error(req, 405, "use GET, PUT or POST");
                return;
        }
        cleanup_json json_object *body = NULL;
        if (http_request_parse_json(req, &body) < 0)
                return;
        char err[512] = "";
        NetPolicy p;
        int r = net_policy_from_json(body, &p, err, sizeof(err));
        if (r < 0) {
                api_respond_errno(req, r, err, "invalid network policy");
                return;
        }
        json_object *obj = NULL;
        r = sandbox_set_network(a, id, &p, &obj, err, sizeof(err));
        net_policy_done(&p);
        if (r == -ENOENT)
                api_sandbox_not_found(req, id);
        else if (r == -EBUSY)
                http_respond_error(req, 409, "sandbox %s is not running", id);
        else if (r < 0)
                api_respond_errno(req, r, err, "cannot set the network policy");
        else
                http_respond_json(req, 200, obj);
}

void api_net_handle_ports(Agent *a, HttpRequest *req, const char *id, const char *rest)
{
        /* rest is "/PORT" or "/PORT/path..." */
        const char *p = rest + (*rest == '/');
        size_t n = strcspn(p, "/");
        unsigned port = 0;
        bool ok = n >= 1 && n <= 5 && p[0] != '0';
        for (size_t i = 0; ok && i < n; i++) {
                ok = p[i] >= '0' && p[i] <= '9';
                port = port * 10 + (unsigned) (p[i] - '0');
        }
        if (!ok || port > 65535) {
                http_respond_error(req, 400,
                                   "the route is /v1/sandboxes/%s/ports/PORT/PATH with "
                                   "PORT 1-65535",
                                   id);
                return;
        }
        cleanup_free char *netns = NULL;
        int r = sandbox_netns_path(a, id, &netns);
        if (r == -ENOENT)
                api_sandbox_not_found(req, id);
        else if (r == -EBUSY)
                http_respond_error(req, 409, "sandbox %s is not running", id);
        else if (r < 0)
                api_respond_errno(req, r, NULL, "cannot reach the sandbox");
        else
                net_proxy_http(req, netns, port, p + n);
}
