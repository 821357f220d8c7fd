/* The E2B gateway on every operator replica (docs/gateway.md, cluster mode):
 * the gateway's cluster backend on this operator's client and informers,
 * serving whether or not this replica leads (the leader's reconciles answer
 * what the gateway writes). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "operator.h"
#include "sandpit/log.h"

/* --gateway-auth keys: the API keys in the Secret sandpit-api-keys of the
 * operator's namespace, Kubernetes tokens through TokenReview and
 * SubjectAccessReview on the operator's client. Each caller acts in its
 * namespace: the server hands the cluster backend's view of it to the
 * handlers (GwBackendOps.in_namespace), so its Sandboxes are made and found
 * there. With none, every caller acts in --gateway-namespace. */
static int setup_auth(Operator *op, const OperatorGatewayOptions *o, GwConfig *gc)
{
        GwAuthMode mode;
        if (gw_auth_parse_mode(o->auth ? o->auth : "keys", &mode) < 0)
                return log_error_errno(-EINVAL, "--gateway-auth takes keys or none");
        if (mode == GW_AUTH_NONE) {
                log_warning("gateway: --gateway-auth none: any API key is taken; keep it on "
                            "loopback");
                return 0; /* the default hook: today's behaviour */
        }
        GwAuthConfig ac = {.mode = mode,
                           .k8s = op->client,
                           .keys_secret_namespace = op->namespace,
                           .keys_secret_name = "sandpit-api-keys"};
        int r = gw_auth_new(&ac, 10000, &op->gateway_auth);
        if (r < 0)
                return log_error_errno(r, "cannot set up the gateway's authentication");
        gc->authorize = gw_auth_authorize;
        gc->authorize_userdata = op->gateway_auth;
        return 0;
}

int operator_gateway_start(Operator *op, const OperatorGatewayOptions *o, GwServer **ret)
{
        GwBackend b = {0};
        int r = gw_backend_cluster_new(
                &(GwClusterConfig){.client = op->client,
                                   .sandboxes = op->sandboxes,
                                   .leases = op->leases,
                                   .lease_namespace = op->namespace,
                                   .namespace = o->namespace,
                                   .agent_token = op->agent_token,
                                   .create_timeout_ms = o->create_timeout_ms},
                &b);
        if (r < 0)
                return log_error_errno(r, "Cannot make the gateway's cluster backend");
        void *data = b.data;
        GwConfig gc = {.listen = o->listen,
                       .tls_cert_file = o->tls_cert,
                       .tls_key_file = o->tls_key,
                       .e2b = {.internet = o->internet, .domain = o->domain},
                       .backend = b};
        r = setup_auth(op, o, &gc);
        if (r < 0) {
                gw_backend_done(&b);
                return r;
        }
        GwServer *gw = NULL;
        r = gw_server_start(&gc, &gw);
        if (r < 0) {
                gw_auth_free(op->gateway_auth);
                op->gateway_auth = NULL;
                return log_error_errno(r, "Cannot serve the gateway on %s", o->listen);
        }
        __atomic_store_n(&op->gateway, data, __ATOMIC_RELEASE);
        log_info("gateway (E2B API) on %s, tcp port %u, sandboxes in namespace %s", o->listen,
                 gw_server_port(gw), o->namespace);
        *ret = gw;
        return 0;
}

void operator_gateway_notify(Operator *op)
{
        gw_backend_cluster_notify(__atomic_load_n(&op->gateway, __ATOMIC_ACQUIRE));
}

void operator_gateway_shutdown(Operator *op)
{
        gw_backend_cluster_shutdown(__atomic_load_n(&op->gateway, __ATOMIC_ACQUIRE));
}

void operator_gateway_stop(Operator *op, GwServer *gw)
{
        if (!gw)
                return;
        __atomic_store_n(&op->gateway, NULL, __ATOMIC_RELEASE);
        gw_server_free(gw);
        gw_auth_free(op->gateway_auth);
        op->gateway_auth = NULL;
}
