/* The typed client of the agent's native API (agent-client.h): paths and
 * bodies of docs/agent-api.md over lib's http-client, answers turned into
 * negative errnos through lib's one table (sandpit/http-status.h). Does not log. */
#include "sandpit/agent-client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

struct AgentClient {
        HttpClient *http;
        uint64_t max_bytes; /* of file and archive transfers; 0: the agent's default */
        AgentClientError err;
};

/* A client around http (taken, also on failure). */
static int wrap(HttpClient *http, uint64_t max_bytes, AgentClient **ret)
{
        AgentClient *c = calloc(1, sizeof(*c));
        if (!c) {
                http_client_free(http);
                return -ENOMEM;
        }
        c->http = http;
        c->max_bytes = max_bytes;
        *ret = c;
        return 0;
}

/* The process's TLS settings (agent_client_set_tls()); fixed buffers, so
 * nothing to free at exit. */
static struct {
        bool set;
        bool allow_http;
        bool has_ca, has_name;
        char ca_file[4096];
        char server_name[256];
} tls_conf;

int agent_client_set_tls(const AgentClientTls *tls)
{
        if (!tls) {
                tls_conf.set = false;
                return 0;
        }
        if ((tls->ca_file && strlen(tls->ca_file) >= sizeof(tls_conf.ca_file)) ||
            (tls->server_name &&
             (!tls->server_name[0] || strlen(tls->server_name) >= sizeof(tls_conf.server_name))))
                return -EINVAL;
        tls_conf.has_ca = tls->ca_file != NULL;
        tls_conf.has_name = tls->server_name != NULL;
        snprintf(tls_conf.ca_file, sizeof(tls_conf.ca_file), "%s",
                 tls->ca_file ? tls->ca_file : "");
        snprintf(tls_conf.server_name, sizeof(tls_conf.server_name), "%s",
                 tls->server_name ? tls->server_name : "");
        tls_conf.allow_http = tls->allow_http;
        tls_conf.set = true;
        return 0;
}

void agent_client_get_tls(AgentClientTls *ret)
{
        *ret = (AgentClientTls){
                .ca_file = tls_conf.set && tls_conf.has_ca ? tls_conf.ca_file : NULL,
                .server_name = tls_conf.set && tls_conf.has_name ? tls_conf.server_name : NULL,
                .allow_http = !tls_conf.set || tls_conf.allow_http,
        };
}

int agent_client_new(const char *url, const char *token, AgentClient **ret)
{
        if (!url)
                return -EINVAL;
        if (tls_conf.set && !tls_conf.allow_http && strncmp(url, "http://", 7) == 0)
                return -EPROTONOSUPPORT;
        HttpClient *http = NULL;
        int r = http_client_new(url, token, &http);
        if (r < 0)
                return r;
        if (tls_conf.set && strncmp(url, "https://", 8) == 0 &&
            (tls_conf.has_ca || tls_conf.has_name)) {
                r = http_client_set_tls(http, tls_conf.has_ca ? tls_conf.ca_file : NULL,
                                        tls_conf.has_name ? tls_conf.server_name : NULL);
                if (r < 0) {
                        http_client_free(http);
                        return r;
                }
        }
        return wrap(http, 0, ret);
}

int agent_client_dup(const AgentClient *c, AgentClient **ret)
{
        HttpClient *http = NULL;
        int r = http_client_dup(c->http, &http);
        return r < 0 ? r : wrap(http, c->max_bytes, ret);
}

void agent_client_free(AgentClient *c)
{
        if (!c)
                return;
        http_client_free(c->http);
        free(c);
}

void agent_client_set_timeout(AgentClient *c, long timeout_ms)
{
        http_client_set_timeout(c->http, timeout_ms);
}

void agent_client_set_max_bytes(AgentClient *c, uint64_t max_bytes)
{
        c->max_bytes = max_bytes;
}

void agent_client_set_cancel(AgentClient *c, const volatile sig_atomic_t *flag)
{
        http_client_set_cancel(c->http, flag);
}

const AgentClientError *agent_client_error(const AgentClient *c)
{
        return &c->err;
}

bool agent_client_not_found(const AgentClient *c, int r)
{
        return r == -ENOENT && c->err.status == 404;
}

/* Records a completed exchange's status; 0 when it is ok, else the errno of
 * the status and the body's reason (a 2xx other than ok is -EIO), with the
 * agent's message kept. */
static int check_status(AgentClient *c, long status, long ok, json_object *body)
{
        c->err.status = status;
        if (status == ok)
                return 0;
        const char *m = json_str(body, "message");
        if (m)
                snprintf(c->err.message, sizeof(c->err.message), "%s", m);
        else
                snprintf(c->err.message, sizeof(c->err.message), "the agent answered HTTP %ld",
                         status);
        int r = http_status_to_errno(status, json_str(body, "reason"));
        return r < 0 ? r : -EIO;
}

static int transport_failed(AgentClient *c, int r)
{
        snprintf(c->err.message, sizeof(c->err.message), "%s",
                 http_client_last_error(c->http)[0] ? http_client_last_error(c->http)
                                                    : strerror(-r));
        return r;
}

/* One JSON exchange answered with status ok; *ret (may be NULL) the body. */
static int call(AgentClient *c, const char *method, const char *path, json_object *body, long ok,
                json_object **ret)
{
        c->err = (AgentClientError){0};
        long status = 0;
        cleanup_json json_object *resp = NULL;
        int r = http_request_json(c->http, method, path, body, &status, &resp);
        if (r < 0)
                return transport_failed(c, r);
        r = check_status(c, status, ok, resp);
        if (r < 0)
                return r;
        if (ret)
                *ret = TAKE_PTR(resp);
        return 0;
}

/* s percent-encoded (RFC 3986 unreserved characters kept), or NULL. */
static char *escape(const char *s)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t n = strlen(s);
        char *out = malloc(n * 3 + 1);
        if (!out)
                return NULL;
        char *o = out;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || strchr("-._~", *p)) {
                        *o++ = (char) *p;
                } else {
                        *o++ = '%';
                        *o++ = hex[*p >> 4];
                        *o++ = hex[*p & 15];
                }
        }
        *o = 0;
        return out;
}

/* A member of o taken out with its own reference. */
static int take_member(json_object *o, const char *name, json_type type, json_object **ret)
{
        json_object *v = json_field(o, name);
        if (!v || !json_object_is_type(v, type))
                return -EBADMSG;
        *ret = json_object_get(v);
        return 0;
}

/* "/v1/sandboxes/ID[/SUFFIX]" with the parts percent-encoded where asked. */
static char *sandbox_path(const char *id, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static char *sandbox_path(const char *id, const char *fmt, ...)
{
        cleanup_free char *eid = escape(id);
        if (!eid)
                return NULL;
        cleanup_free char *suffix = NULL;
        if (fmt) {
                va_list ap;
                va_start(ap, fmt);
                int n = vasprintf(&suffix, fmt, ap);
                va_end(ap);
                if (n < 0)
                        return NULL;
        }
        char *p = NULL;
        if (asprintf(&p, "/v1/sandboxes/%s%s", eid, suffix ? suffix : "") < 0)
                return NULL;
        return p;
}

/* "?path=P[&user=U][extra]" percent-encoded. */
static char *path_query(const char *path, const char *user, const char *extra)
{
        cleanup_free char *ep = escape(path);
        cleanup_free char *eu = user ? escape(user) : NULL;
        if (!ep || (user && !eu))
                return NULL;
        char *q = NULL;
        if (asprintf(&q, "?path=%s%s%s%s", ep, eu ? "&user=" : "", eu ? eu : "",
                     extra ? extra : "") < 0)
                return NULL;
        return q;
}

/* "&user=U" or "" (user NULL). */
static char *user_query(const char *user, char sep)
{
        if (!user)
                return strdup("");
        cleanup_free char *eu = escape(user);
        char *q = NULL;
        if (!eu || asprintf(&q, "%cuser=%s", sep, eu) < 0)
                return NULL;
        return q;
}

int agent_client_create(AgentClient *c, json_object *req, json_object **ret)
{
        return call(c, "POST", "/v1/sandboxes", req, 201, ret);
}

int agent_client_get(AgentClient *c, const char *id, json_object **ret)
{
        cleanup_free char *p = sandbox_path(id, NULL);
        return p ? call(c, "GET", p, NULL, 200, ret) : -ENOMEM;
}

int agent_client_list(AgentClient *c, const char *const *labels, json_object **ret)
{
        char *path = NULL;
        size_t len = 0;
        cleanup_fclose FILE *f = open_memstream(&path, &len);
        if (!f)
                return -ENOMEM;
        fputs("/v1/sandboxes", f);
        for (size_t i = 0; labels && labels[i]; i++) {
                cleanup_free char *e = escape(labels[i]);
                if (!e) {
                        fclose(TAKE_PTR(f));
                        free(path);
                        return -ENOMEM;
                }
                fprintf(f, "%clabel=%s", i == 0 ? '?' : '&', e);
        }
        if (fclose(TAKE_PTR(f)) != 0) {
                free(path);
                return -ENOMEM;
        }
        cleanup_free char *p = path;
        cleanup_json json_object *resp = NULL;
        int r = call(c, "GET", p, NULL, 200, &resp);
        if (r < 0)
                return r;
        return take_member(resp, "sandboxes", json_type_array, ret);
}

int agent_client_delete(AgentClient *c, const char *id)
{
        cleanup_free char *p = sandbox_path(id, NULL);
        return p ? call(c, "DELETE", p, NULL, 204, NULL) : -ENOMEM;
}

int agent_client_image_pull(AgentClient *c, const char *ref, json_object **ret)
{
        cleanup_json json_object *body = json_object_new_object();
        if (!body || json_object_object_add(body, "image", json_object_new_string(ref)) < 0)
                return -ENOMEM;
        return call(c, "POST", "/v1/images/pull", body, 200, ret);
}

int agent_client_image_push(AgentClient *c, const char *ref, const char *to, json_object **ret)
{
        cleanup_json json_object *body = json_object_new_object();
        if (!body || json_object_object_add(body, "image", json_object_new_string(ref)) < 0 ||
            json_object_object_add(body, "to", json_object_new_string(to)) < 0)
                return -ENOMEM;
        return call(c, "POST", "/v1/images/push", body, 200, ret);
}

int agent_client_image_pull_req(AgentClient *c, json_object *req, json_object **ret)
{
        return call(c, "POST", "/v1/images/pull", req, 200, ret);
}

int agent_client_image_list(AgentClient *c, json_object **ret)
{
        cleanup_json json_object *resp = NULL;
        int r = call(c, "GET", "/v1/images", NULL, 200, &resp);
        if (r < 0)
                return r;
        return take_member(resp, "images", json_type_array, ret);
}

int agent_client_image_remove(AgentClient *c, const char *ref)
{
        cleanup_free char *e = escape(ref), *p = NULL;
        if (!e || asprintf(&p, "/v1/images?image=%s", e) < 0)
                return -ENOMEM;
        return call(c, "DELETE", p, NULL, 204, NULL);
}

int agent_client_info(AgentClient *c, json_object **ret)
{
        return call(c, "GET", "/v1/info", NULL, 200, ret);
}

int agent_client_pools(AgentClient *c, json_object **ret)
{
        return call(c, "GET", "/v1/pools", NULL, 200, ret);
}

int agent_client_pool_put(AgentClient *c, const char *name, json_object *req, json_object **ret)
{
        cleanup_free char *e = escape(name), *p = NULL;
        if (!e || asprintf(&p, "/v1/pools/%s", e) < 0)
                return -ENOMEM;
        return call(c, "PUT", p, req, 200, ret);
}

int agent_client_pool_delete(AgentClient *c, const char *name)
{
        cleanup_free char *e = escape(name), *p = NULL;
        if (!e || asprintf(&p, "/v1/pools/%s", e) < 0)
                return -ENOMEM;
        return call(c, "DELETE", p, NULL, 204, NULL);
}

int agent_client_set_deadline(AgentClient *c, const char *id, uint64_t timeout_s, json_object **ret)
{
        cleanup_free char *p = sandbox_path(id, "/timeout");
        cleanup_json json_object *body = json_object_new_object();
        if (!p || !body ||
            json_object_object_add(body, "timeout", json_object_new_uint64(timeout_s)) < 0)
                return -ENOMEM;
        return call(c, "POST", p, body, 200, ret);
}

int agent_client_pause(AgentClient *c, const char *id, bool stop_deadline, json_object **ret)
{
        cleanup_free char *p = sandbox_path(id, "/pause");
        cleanup_json json_object *body = json_object_new_object();
        if (!p || !body ||
            json_object_object_add(body, "stop_deadline", json_object_new_boolean(stop_deadline)) <
                    0)
                return -ENOMEM;
        return call(c, "POST", p, body, 200, ret);
}

int agent_client_resume(AgentClient *c, const char *id, uint64_t timeout_s, json_object **ret)
{
        cleanup_free char *p = sandbox_path(id, "/resume");
        cleanup_json json_object *body = json_object_new_object();
        if (!p || !body)
                return -ENOMEM;
        if (timeout_s > 0 &&
            json_object_object_add(body, "timeout", json_object_new_uint64(timeout_s)) < 0)
                return -ENOMEM;
        return call(c, "POST", p, body, 200, ret);
}

int agent_client_metrics(AgentClient *c, const char *id, int64_t start, int64_t end,
                         json_object **ret)
{
        char q[64] = "";
        if (start >= 0 && end >= 0)
                snprintf(q, sizeof(q), "?start=%lld&end=%lld", (long long) start, (long long) end);
        else if (start >= 0)
                snprintf(q, sizeof(q), "?start=%lld", (long long) start);
        else if (end >= 0)
                snprintf(q, sizeof(q), "?end=%lld", (long long) end);
        cleanup_free char *p = sandbox_path(id, "/metrics%s", q);
        return p ? call(c, "GET", p, NULL, 200, ret) : -ENOMEM;
}

typedef struct {
        AgentEventFn fn;
        void *userdata;
} EventSink;

static int on_line(const char *line, size_t len, void *userdata)
{
        EventSink *s = userdata;
        cleanup_json json_object *ev = NULL;
        int r = json_parse_strict(line, len, 0, &ev, NULL);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || !json_object_is_type(ev, json_type_object))
                return -EBADMSG;
        return s->fn(ev, s->userdata);
}

static int stream(AgentClient *c, const char *method, const char *path, json_object *body,
                  AgentEventFn fn, void *userdata)
{
        c->err = (AgentClientError){0};
        EventSink sink = {.fn = fn, .userdata = userdata};
        long status = 0;
        cleanup_json json_object *resp = NULL;
        int r = http_request_stream(c->http, method, path, body, on_line, &sink, &status, &resp);
        if (r < 0) {
                /* The callback's own result, or the transport's. */
                if (status >= 200 && status < 300 && r != -EBADMSG)
                        return r;
                return transport_failed(c, r);
        }
        return check_status(c, status, 200, resp);
}

int agent_client_exec(AgentClient *c, const char *id, json_object *req, AgentEventFn on_event,
                      void *userdata)
{
        cleanup_free char *p = sandbox_path(id, "/exec");
        return p ? stream(c, "POST", p, req, on_event, userdata) : -ENOMEM;
}

int agent_client_exec_background(AgentClient *c, const char *id, json_object *req, int *ret_pid)
{
        cleanup_free char *p = sandbox_path(id, "/exec");
        cleanup_json json_object *body = json_object_new_object();
        if (!p || !body)
                return -ENOMEM;
        json_object_object_foreach(req, k, v) {
                if (json_object_object_add(body, k, json_object_get(v)) < 0)
                        return -ENOMEM;
        }
        if (json_object_object_add(body, "background", json_object_new_boolean(true)) < 0)
                return -ENOMEM;
        cleanup_json json_object *resp = NULL;
        int r = call(c, "POST", p, body, 201, &resp);
        if (r < 0)
                return r;
        json_object *pid = json_field(resp, "pid");
        if (!pid || !json_object_is_type(pid, json_type_int))
                return -EBADMSG;
        *ret_pid = json_object_get_int(pid);
        return 0;
}

int agent_client_processes(AgentClient *c, const char *id, json_object **ret)
{
        cleanup_free char *p = sandbox_path(id, "/processes");
        cleanup_json json_object *resp = NULL;
        int r = p ? call(c, "GET", p, NULL, 200, &resp) : -ENOMEM;
        return r < 0 ? r : take_member(resp, "processes", json_type_array, ret);
}

int agent_client_process_stream(AgentClient *c, const char *id, int pid, AgentEventFn on_event,
                                void *userdata)
{
        cleanup_free char *p = sandbox_path(id, "/processes/%d/stream", pid);
        return p ? stream(c, "GET", p, NULL, on_event, userdata) : -ENOMEM;
}

int agent_client_process_stdin(AgentClient *c, const char *id, int pid, const void *data,
                               size_t len, bool eof)
{
        cleanup_free char *p = sandbox_path(id, "/processes/%d/stdin", pid);
        cleanup_json json_object *body = json_object_new_object();
        if (!p || !body)
                return -ENOMEM;
        if (len > 0) {
                cleanup_free char *b64 = NULL;
                int r = base64_encode(data, len, &b64);
                if (r < 0)
                        return r;
                if (json_object_object_add(body, "data_b64", json_object_new_string(b64)) < 0)
                        return -ENOMEM;
        }
        if (eof && json_object_object_add(body, "eof", json_object_new_boolean(true)) < 0)
                return -ENOMEM;
        return call(c, "POST", p, body, 204, NULL);
}

int agent_client_process_signal(AgentClient *c, const char *id, int pid, const char *signal)
{
        cleanup_free char *p = sandbox_path(id, "/processes/%d/signal", pid);
        cleanup_json json_object *body = json_object_new_object();
        if (!p || !body ||
            json_object_object_add(body, "signal", json_object_new_string(signal)) < 0)
                return -ENOMEM;
        return call(c, "POST", p, body, 204, NULL);
}

int agent_client_process_resize(AgentClient *c, const char *id, int pid, unsigned cols,
                                unsigned rows)
{
        cleanup_free char *p = sandbox_path(id, "/processes/%d/resize", pid);
        cleanup_json json_object *body = json_object_new_object();
        if (!p || !body || json_object_object_add(body, "cols", json_object_new_int64(cols)) < 0 ||
            json_object_object_add(body, "rows", json_object_new_int64(rows)) < 0)
                return -ENOMEM;
        return call(c, "POST", p, body, 204, NULL);
}

/* One raw exchange (files, archives) answered with status ok: the request
 * body is in_fd's contents (-1: none), a 2xx answer's bytes go to on_data,
 * or without on_data it is parsed into *ret (may be NULL). */
static int raw(AgentClient *c, const char *method, const char *path, int in_fd, HttpDataFn on_data,
               void *userdata, long ok, json_object **ret)
{
        c->err = (AgentClientError){0};
        long status = 0;
        cleanup_json json_object *resp = NULL;
        int r = http_request_raw(c->http, method, path, in_fd, on_data, userdata, &status, &resp);
        if (r < 0) {
                /* on_data's own result, or the transport's. */
                if (on_data && status >= 200 && status < 300)
                        return r;
                return transport_failed(c, r);
        }
        r = check_status(c, status, ok, resp);
        if (r < 0)
                return r;
        if (ret)
                *ret = TAKE_PTR(resp);
        return 0;
}

/* "/v1/sandboxes/ID/ROUTE?path=P[&user=U][extra][&max_bytes=N]". */
static char *transfer_path(AgentClient *c, const char *id, const char *route, const char *path,
                           const char *user, const char *extra, bool limited)
{
        char tail[64] = "";
        if (limited && c->max_bytes > 0)
                snprintf(tail, sizeof(tail), "%s&max_bytes=%llu", extra ? extra : "",
                         (unsigned long long) c->max_bytes);
        else if (extra)
                snprintf(tail, sizeof(tail), "%s", extra);
        cleanup_free char *q = path_query(path, user, tail);
        return q ? sandbox_path(id, "/%s%s", route, q) : NULL;
}

int agent_client_file_read(AgentClient *c, const char *id, const char *path, const char *user,
                           HttpDataFn on_data, void *userdata)
{
        cleanup_free char *p = transfer_path(c, id, "files", path, user, NULL, false);
        return p ? raw(c, "GET", p, -1, on_data, userdata, 200, NULL) : -ENOMEM;
}

int agent_client_file_write_fd(AgentClient *c, const char *id, const char *path, const char *user,
                               int fd, json_object **ret)
{
        cleanup_free char *p = transfer_path(c, id, "files", path, user, NULL, true);
        cleanup_json json_object *resp = NULL;
        int r = p ? raw(c, "PUT", p, fd, NULL, NULL, 200, &resp) : -ENOMEM;
        if (r < 0)
                return r;
        return ret ? take_member(resp, "entry", json_type_object, ret) : 0;
}

int agent_client_archive_read(AgentClient *c, const char *id, const char *path, const char *user,
                              HttpDataFn on_data, void *userdata)
{
        cleanup_free char *p = transfer_path(c, id, "archive", path, user, "&format=tar.gz", true);
        return p ? raw(c, "GET", p, -1, on_data, userdata, 200, NULL) : -ENOMEM;
}

int agent_client_archive_write_fd(AgentClient *c, const char *id, const char *path,
                                  const char *user, int fd, json_object **ret)
{
        cleanup_free char *p = transfer_path(c, id, "archive", path, user, NULL, true);
        return p ? raw(c, "PUT", p, fd, NULL, NULL, 200, ret) : -ENOMEM;
}

int agent_client_file_write(AgentClient *c, const char *id, const char *path, const char *user,
                            const void *data, size_t len, json_object **ret)
{
        cleanup_close int fd = memfd_create("sandpit-upload", MFD_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        int r = write_all(fd, data, len);
        if (r < 0)
                return r;
        if (lseek(fd, 0, SEEK_SET) < 0)
                return negative_errno();
        return agent_client_file_write_fd(c, id, path, user, fd, ret);
}

int agent_client_ls(AgentClient *c, const char *id, const char *path, const char *user,
                    unsigned depth, json_object **ret)
{
        char extra[32] = "";
        if (depth > 0)
                snprintf(extra, sizeof(extra), "&depth=%u", depth);
        cleanup_free char *q = path_query(path, user, extra);
        cleanup_free char *p = q ? sandbox_path(id, "/fs/ls%s", q) : NULL;
        cleanup_json json_object *resp = NULL;
        int r = p ? call(c, "GET", p, NULL, 200, &resp) : -ENOMEM;
        return r < 0 ? r : take_member(resp, "entries", json_type_array, ret);
}

int agent_client_stat(AgentClient *c, const char *id, const char *path, const char *user,
                      json_object **ret)
{
        cleanup_free char *q = path_query(path, user, NULL);
        cleanup_free char *p = q ? sandbox_path(id, "/fs/stat%s", q) : NULL;
        cleanup_json json_object *resp = NULL;
        int r = p ? call(c, "GET", p, NULL, 200, &resp) : -ENOMEM;
        return r < 0 ? r : take_member(resp, "entry", json_type_object, ret);
}

int agent_client_exists(AgentClient *c, const char *id, const char *path, const char *user,
                        bool *ret)
{
        cleanup_free char *q = path_query(path, user, NULL);
        cleanup_free char *p = q ? sandbox_path(id, "/fs/exists%s", q) : NULL;
        cleanup_json json_object *resp = NULL;
        int r = p ? call(c, "GET", p, NULL, 200, &resp) : -ENOMEM;
        if (r < 0)
                return r;
        json_object *e = json_field(resp, "exists");
        if (!e || !json_object_is_type(e, json_type_boolean))
                return -EBADMSG;
        *ret = json_object_get_boolean(e);
        return 0;
}

/* A POST of a small JSON body with the user in the query. */
static int fs_post(AgentClient *c, const char *id, const char *op, const char *user,
                   json_object *body, long ok, json_object **ret)
{
        cleanup_free char *uq = user_query(user, '?');
        cleanup_free char *p = uq ? sandbox_path(id, "/fs/%s%s", op, uq) : NULL;
        if (!p)
                return -ENOMEM;
        cleanup_json json_object *resp = NULL;
        int r = call(c, "POST", p, body, ok, &resp);
        if (r == -EBUSY && c->err.status == 409)
                r = -EEXIST;
        if (r < 0)
                return r;
        return ret ? take_member(resp, "entry", json_type_object, ret) : 0;
}

int agent_client_mkdir(AgentClient *c, const char *id, const char *path, const char *user,
                       bool parents, json_object **ret)
{
        cleanup_json json_object *body = json_object_new_object();
        if (!body || json_object_object_add(body, "path", json_object_new_string(path)) < 0 ||
            json_object_object_add(body, "parents", json_object_new_boolean(parents)) < 0)
                return -ENOMEM;
        return fs_post(c, id, "mkdir", user, body, 201, ret);
}

int agent_client_rm(AgentClient *c, const char *id, const char *path, const char *user,
                    bool recursive)
{
        cleanup_json json_object *body = json_object_new_object();
        if (!body || json_object_object_add(body, "path", json_object_new_string(path)) < 0 ||
            json_object_object_add(body, "recursive", json_object_new_boolean(recursive)) < 0)
                return -ENOMEM;
        int r = fs_post(c, id, "rm", user, body, 204, NULL);
        /* A non-empty directory without recursive. */
        return r == -EEXIST ? -ENOTEMPTY : r;
}

int agent_client_mv(AgentClient *c, const char *id, const char *source, const char *destination,
                    const char *user, bool overwrite, json_object **ret)
{
        cleanup_json json_object *body = json_object_new_object();
        if (!body || json_object_object_add(body, "source", json_object_new_string(source)) < 0 ||
            json_object_object_add(body, "destination", json_object_new_string(destination)) < 0 ||
            json_object_object_add(body, "overwrite", json_object_new_boolean(overwrite)) < 0)
                return -ENOMEM;
        return fs_post(c, id, "mv", user, body, 200, ret);
}

int agent_client_watch(AgentClient *c, const char *id, const char *path, const char *user,
                       bool recursive, AgentEventFn on_event, void *userdata)
{
        cleanup_free char *q = path_query(path, user, recursive ? "&recursive=true" : NULL);
        cleanup_free char *p = q ? sandbox_path(id, "/watch%s", q) : NULL;
        return p ? stream(c, "GET", p, NULL, on_event, userdata) : -ENOMEM;
}

int agent_client_code(AgentClient *c, const char *id, json_object *req, AgentEventFn on_event,
                      void *userdata)
{
        cleanup_free char *p = sandbox_path(id, "/code");
        return p ? stream(c, "POST", p, req, on_event, userdata) : -ENOMEM;
}

int agent_client_context_create(AgentClient *c, const char *id, const char *language,
                                const char *cwd, json_object **ret)
{
        cleanup_free char *p = sandbox_path(id, "/contexts");
        cleanup_json json_object *body = json_object_new_object();
        if (!p || !body)
                return -ENOMEM;
        if (language &&
            json_object_object_add(body, "language", json_object_new_string(language)) < 0)
                return -ENOMEM;
        if (cwd && json_object_object_add(body, "cwd", json_object_new_string(cwd)) < 0)
                return -ENOMEM;
        return call(c, "POST", p, body, 201, ret);
}

int agent_client_context_list(AgentClient *c, const char *id, json_object **ret)
{
        cleanup_free char *p = sandbox_path(id, "/contexts");
        cleanup_json json_object *resp = NULL;
        int r = p ? call(c, "GET", p, NULL, 200, &resp) : -ENOMEM;
        return r < 0 ? r : take_member(resp, "contexts", json_type_array, ret);
}

int agent_client_context_delete(AgentClient *c, const char *id, const char *context)
{
        cleanup_free char *ec = escape(context);
        cleanup_free char *p = ec ? sandbox_path(id, "/contexts/%s", ec) : NULL;
        return p ? call(c, "DELETE", p, NULL, 204, NULL) : -ENOMEM;
}

int agent_client_context_restart(AgentClient *c, const char *id, const char *context,
                                 json_object **ret)
{
        cleanup_free char *ec = escape(context);
        cleanup_free char *p = ec ? sandbox_path(id, "/contexts/%s/restart", ec) : NULL;
        return p ? call(c, "POST", p, NULL, 200, ret) : -ENOMEM;
}

typedef struct {
        HttpLineSplitter lines;
        EventSink sink;
} BuildSink;

static int build_data(const char *data, size_t len, void *userdata)
{
        BuildSink *b = userdata;
        return http_line_splitter_feed(&b->lines, data, len, on_line, &b->sink);
}

/* "&key=value" of one parameter (objects as JSON text) onto q. */
static int add_param(StrBuf *q, const char *key, json_object *v)
{
        const char *text = json_object_is_type(v, json_type_object)
                                   ? json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN)
                                   : json_object_get_string(v);
        cleanup_free char *e = escape(text ? text : "");
        if (!e)
                return -ENOMEM;
        int r = strbuf_append(q, q->len ? "&" : "?", 1, SIZE_MAX);
        if (r == 0)
                r = strbuf_append(q, key, strlen(key), SIZE_MAX);
        if (r == 0)
                r = strbuf_append(q, "=", 1, SIZE_MAX);
        if (r == 0)
                r = strbuf_append(q, e, strlen(e), SIZE_MAX);
        return r;
}

int agent_client_template_build(AgentClient *c, json_object *params, int tar_fd,
                                AgentEventFn on_event, void *userdata)
{
        StrBuf q = {0};
        int r = 0;
        json_object_object_foreach(params, k, v) {
                if (json_object_is_type(v, json_type_array))
                        for (size_t i = 0; r == 0 && i < json_object_array_length(v); i++)
                                r = add_param(&q, k, json_object_array_get_idx(v, i));
                else if (r == 0)
                        r = add_param(&q, k, v);
        }
        cleanup_free char *p = NULL;
        if (r == 0 && asprintf(&p, "/v1/templates/build%s", q.data ? q.data : "") < 0)
                r = -ENOMEM;
        strbuf_done(&q);
        if (r < 0)
                return r;
        BuildSink b = {.sink = {.fn = on_event, .userdata = userdata}};
        http_line_splitter_init(&b.lines);
        r = raw(c, "POST", p, tar_fd, build_data, &b, 200, NULL);
        if (r == 0)
                r = http_line_splitter_finish(&b.lines, on_line, &b.sink);
        http_line_splitter_done(&b.lines);
        return r;
}
