/* GET /v1/sandboxes/{id}/metrics[?start=&end=] and GET /metrics (docs/metrics.md). */
#include "api-metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "pool.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define UNIX_S_MAX 253402300799ull /* 9999-12-31T23:59:59Z */

/* A fixed body handed out through the stream interface (the server's only way
 * to answer with a content type other than JSON). */
typedef struct {
        char *data;
        size_t len, off;
} BufStream;

static ssize_t buf_stream_read(void *cls, int client_fd, char *buf, size_t max)
{
        (void) client_fd;
        BufStream *s = cls;
        size_t n = s->len - s->off < max ? s->len - s->off : max;
        memcpy(buf, s->data + s->off, n);
        s->off += n;
        return (ssize_t) n;
}

static void buf_stream_free(void *cls)
{
        BufStream *s = cls;
        if (!s)
                return;
        free(s->data);
        free(s);
}

static const HttpStreamOps buf_stream_ops = {
        .read = buf_stream_read,
        .destroy = buf_stream_free,
};

void api_node_metrics(Agent *a, HttpRequest *req)
{
        if (!streq(http_request_method(req), "GET")) {
                http_respond_error(req, 405, "use GET");
                return;
        }
        MetricsNode n;
        metrics_node_snapshot(a, &n);
        BufStream *s = calloc(1, sizeof(*s));
        if (!s || metrics_format_prometheus(&n, &s->data, &s->len) < 0) {
                free(s);
                http_respond_error(req, 500, "out of memory");
                return;
        }
        /* The warm pools' series follow the node's. */
        cleanup_free char *pools = NULL;
        size_t plen = 0;
        FILE *f = open_memstream(&pools, &plen);
        if (f) {
                pool_format_prometheus(a, f);
                if (fclose(f) == 0 && plen > 0) {
                        char *all = realloc(s->data, s->len + plen);
                        if (all) {
                                memcpy(all + s->len, pools, plen);
                                s->data = all;
                                s->len += plen;
                        }
                }
        }
        http_respond_stream(req, 200, "text/plain; version=0.0.4; charset=utf-8", &buf_stream_ops,
                            s);
}

/* A unix time in seconds from the query, if given: 0 absent, 1 given, -EINVAL bad. */
static int query_unix_s(HttpRequest *req, const char *key, uint64_t *ret)
{
        const char *v = http_request_query(req, key);
        if (!v)
                return 0;
        char *end = NULL;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (errno || *v < '0' || *v > '9' || *end || s > UNIX_S_MAX)
                return -EINVAL;
        *ret = (uint64_t) s;
        return 1;
}

/* Adds the sandbox's identity and times to a sample object. */
static int add_sandbox_fields(Agent *a, const char *id, json_object *o)
{
        json_object *sb = NULL;
        int r = sandbox_get_json(a, id, &sb);
        if (r < 0)
                return r;
        static const char *const keys[] = {"id",         "state",      "created_at",
                                           "started_at", "expires_at", "paused_at"};
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
                json_object *v = NULL;
                if (json_object_object_get_ex(sb, keys[i], &v))
                        (void) json_object_object_add(o, keys[i], json_object_get(v));
        }
        json_object_put(sb);
        return 0;
}

void api_sandbox_metrics(Agent *a, HttpRequest *req, const char *id, const char *rest)
{
        if (*rest) {
                http_respond_error(req, 404, "no such route");
                return;
        }
        if (!streq(http_request_method(req), "GET")) {
                http_respond_error(req, 405, "use GET");
                return;
        }
        uint64_t start = 0, end = UNIX_S_MAX;
        int rs = query_unix_s(req, "start", &start), re = query_unix_s(req, "end", &end);
        if (rs < 0 || re < 0 || start > end) {
                http_respond_error(req, 400,
                                   "start and end must be unix times in seconds with start <= "
                                   "end");
                return;
        }
        if (rs == 0 && re == 0) {
                MetricsSample s;
                json_object *o = NULL;
                if (metrics_sample_now(a, id, &s) < 0 || !(o = metrics_sample_to_json(&s)) ||
                    add_sandbox_fields(a, id, o) < 0) {
                        json_object_put(o);
                        api_sandbox_not_found(req, id);
                        return;
                }
                http_respond_json(req, 200, o);
                return;
        }
        MetricsSample *samples = NULL;
        size_t n = 0;
        /* end is inclusive: every sample of that second. */
        int r = metrics_window(a, id, start * 1000000u, end * 1000000u + 999999u, &samples, &n);
        if (r == -ENOENT) {
                api_sandbox_not_found(req, id);
                return;
        }
        if (r < 0) {
                api_respond_errno(req, r, NULL, "cannot read metrics");
                return;
        }
        json_object *arr = json_object_new_array();
        for (size_t i = 0; arr && i < n; i++)
                (void) json_object_array_add(arr, metrics_sample_to_json(&samples[i]));
        free(samples);
        json_object *o = json_object_new_object();
        (void) json_object_object_add(o, "id", json_object_new_string(id));
        (void) json_object_object_add(o, "interval_ms", json_object_new_int(METRICS_INTERVAL_MS));
        (void) json_object_object_add(o, "metrics", arr);
        http_respond_json(req, 200, o);
}
