/* /healthz and /readyz for the kubelet's probes and /metrics for Prometheus:
 * plain HTTP, no token (they say nothing secret: "ok", counts and
 * durations), on libmicrohttpd. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "operator.h"
#include "sandpit/macro.h"

struct HealthServer {
        struct MHD_Daemon *daemon;
        bool (*ready)(void *userdata);
        Operator *op;
};

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, const char *text)
{
        struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), (void *) text,
                                                                    MHD_RESPMEM_PERSISTENT);
        if (!resp)
                return MHD_NO;
        (void) MHD_add_response_header(resp, "Content-Type", "text/plain");
        enum MHD_Result r = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}

static enum MHD_Result answer_metrics(struct MHD_Connection *conn, Operator *op)
{
        OpMetricsSnapshot s;
        op_metrics_snapshot(op, &s);
        char *text = NULL;
        size_t len = 0;
        if (op_metrics_format(&s, &text, &len) < 0)
                return answer(conn, 500, "out of memory\n");
        struct MHD_Response *resp =
                MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(text);
                return MHD_NO;
        }
        (void) MHD_add_response_header(resp, "Content-Type",
                                       "text/plain; version=0.0.4; charset=utf-8");
        enum MHD_Result r = MHD_queue_response(conn, 200, resp);
        MHD_destroy_response(resp);
        return r;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **req_cls)
{
        (void) version;
        (void) upload_data;
        (void) req_cls;
        HealthServer *h = cls;
        if (*upload_data_size)
                return answer(conn, 413, "no body expected\n");
        if (!streq(method, "GET") && !streq(method, "HEAD"))
                return answer(conn, 405, "method not allowed\n");
        if (streq(url, "/healthz"))
                return answer(conn, 200, "ok\n");
        if (streq(url, "/readyz"))
                return h->ready(h->op) ? answer(conn, 200, "ok\n")
                                       : answer(conn, 503, "informers not synced\n");
        if (streq(url, "/metrics"))
                return answer_metrics(conn, h->op);
        return answer(conn, 404, "not found\n");
}

static int parse_addr(const char *spec, struct sockaddr_in *ret)
{
        cleanup_free char *host = strdup(spec);
        if (!host)
                return -ENOMEM;
        char *colon = strrchr(host, ':');
        if (!colon)
                return -EINVAL;
        *colon = 0;
        char *end = NULL;
        long port = strtol(colon + 1, &end, 10);
        if (!colon[1] || *end || port < 0 || port > 65535)
                return -EINVAL;
        *ret = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
        if (inet_pton(AF_INET, *host ? host : "0.0.0.0", &ret->sin_addr) != 1)
                return -EINVAL;
        return 0;
}

int health_start(const char *listen, bool (*ready)(void *userdata), Operator *op,
                 HealthServer **ret)
{
        struct sockaddr_in sa;
        int r = parse_addr(listen, &sa);
        if (r < 0)
                return r;
        HealthServer *h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->ready = ready;
        h->op = op;
        h->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL,
                                     handler, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &sa,
                                     MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
        if (!h->daemon) {
                free(h);
                return -EADDRNOTAVAIL;
        }
        *ret = h;
        return 0;
}

void health_free(HealthServer *h)
{
        if (!h)
                return;
        MHD_stop_daemon(h->daemon);
        free(h);
}
