/* libmicrohttpd glue. Threading: MHD runs one thread per connection; the
 * only shared mutable state besides the daemons is the guard of the TCP
 * listener's unauthenticated connections, which locks itself. */
#include "sandpit/http-server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <microhttpd.h>

#include "sandpit/http-guard.h"
#include "sandpit/http-status.h"
#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

struct HttpServer {
        struct MHD_Daemon *unix_daemon;
        struct MHD_Daemon *tcp_daemon;
        char *unix_path;
        char *token;
        char *tls_cert, *tls_key; /* PEM; NULL: plain HTTP on TCP */
        bool tcp_open;
        size_t max_body;
        size_t (*spool_limit)(HttpRequest *req, void *userdata);
        unsigned header_timeout_s, idle_timeout_s;
        HttpGuard *guard; /* the TCP listener's unauthenticated connections */
        unsigned tcp_port;
        HttpHandler handler;
        void *userdata;
};

typedef struct {
        HttpUpgradeOps ops;
        void *cls;
} Upgrade;

struct HttpRequest {
        HttpServer *server;
        Upgrade *upgrade; /* set until the upgrade handler takes it */
        struct MHD_Connection *conn;
        bool tcp;
        unsigned idle_timeout_s; /* to restore after a stream's quiet spell; 0: none */
        const char *method;
        const char *url;
        char *body;
        size_t body_len;
        bool too_large;
        int spool_fd; /* memfd holding a spooled body, or -1 */
        size_t spool_max;
        int spool_error;
        bool answered;
        enum MHD_Result result;
};

const char *http_request_method(const HttpRequest *req)
{
        return req->method;
}

const char *http_request_path(const HttpRequest *req)
{
        return req->url;
}

const char *http_request_query(const HttpRequest *req, const char *key)
{
        return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

typedef struct {
        const char *key;
        char **values;
        size_t n;
        bool oom;
} QueryCollect;

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
        QueryCollect *c = cls;
        (void) kind;
        if (!streq(key, c->key))
                return MHD_YES;
        char **n = realloc(c->values, (c->n + 2) * sizeof(char *));
        if (!n) {
                c->oom = true;
                return MHD_NO;
        }
        c->values = n;
        c->values[c->n] = strdup(value ? value : "");
        if (!c->values[c->n]) {
                c->oom = true;
                return MHD_NO;
        }
        c->values[++c->n] = NULL;
        return MHD_YES;
}

int http_request_query_all(const HttpRequest *req, const char *key, char ***ret)
{
        QueryCollect c = {.key = key};
        (void) MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, collect_query, &c);
        if (c.oom) {
                strv_free(c.values);
                return -ENOMEM;
        }
        if (!c.values) {
                c.values = calloc(1, sizeof(char *));
                if (!c.values)
                        return -ENOMEM;
        }
        *ret = c.values;
        return 0;
}

typedef struct {
        char **v;
        size_t n;
        bool oom;
} PairCollect;

static enum MHD_Result collect_pair(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
        PairCollect *c = cls;
        (void) kind;
        char **n = realloc(c->v, (c->n + 3) * sizeof(char *));
        if (!n) {
                c->oom = true;
                return MHD_NO;
        }
        c->v = n;
        c->v[c->n] = strdup(key ? key : "");
        c->v[c->n + 1] = strdup(value ? value : "");
        c->v[c->n + 2] = NULL;
        c->n += 2;
        if (!c->v[c->n - 2] || !c->v[c->n - 1]) {
                c->oom = true;
                return MHD_NO;
        }
        return MHD_YES;
}

static int collect_pairs(const HttpRequest *req, enum MHD_ValueKind kind, char ***ret)
{
        PairCollect c = {0};
        (void) MHD_get_connection_values(req->conn, kind, collect_pair, &c);
        if (!c.oom && !c.v && !(c.v = calloc(1, sizeof(char *))))
                c.oom = true;
        if (c.oom) {
                /* A failed strdup left a NULL inside: free the pairs one by one. */
                for (size_t i = 0; c.v && i < c.n; i++)
                        free(c.v[i]);
                free(c.v);
                return -ENOMEM;
        }
        *ret = c.v;
        return 0;
}

int http_request_headers(const HttpRequest *req, char ***ret)
{
        return collect_pairs(req, MHD_HEADER_KIND, ret);
}

int http_request_args(const HttpRequest *req, char ***ret)
{
        return collect_pairs(req, MHD_GET_ARGUMENT_KIND, ret);
}

int http_request_body_fd(const HttpRequest *req)
{
        return req->spool_fd;
}

const char *http_request_body(const HttpRequest *req, size_t *ret_len)
{
        if (ret_len)
                *ret_len = req->body_len;
        return req->body ? req->body : "";
}

/* A string (or key) with an escaped NUL ("\u0000"): C code would see it cut
 * short, a different value from the one sent ("host\u0000../x" as "host"). */
static bool json_has_nul(json_object *o)
{
        switch (json_object_get_type(o)) {
        case json_type_string:
                return strlen(json_object_get_string(o)) != (size_t) json_object_get_string_len(o);
        case json_type_array:
                for (size_t i = 0; i < json_object_array_length(o); i++)
                        if (json_has_nul(json_object_array_get_idx(o, i)))
                                return true;
                return false;
        case json_type_object: {
                json_object_object_foreach(o, k, v) {
                        (void) k;
                        if (json_has_nul(v))
                                return true;
                }
                return false;
        }
        default:
                return false;
        }
}

int http_request_parse_json(HttpRequest *req, json_object **ret)
{
        if (req->body_len == 0) {
                http_respond_error(req, 400, "request body is empty; send a JSON object");
                return -EINVAL;
        }
        if (memchr(req->body, 0, req->body_len)) {
                http_respond_error(req, 400, "request body contains a NUL byte");
                return -EINVAL;
        }
        bool valid = true;
        if (utf8_complete_prefix((const uint8_t *) req->body, req->body_len, &valid) !=
                    req->body_len ||
            !valid) {
                http_respond_error(req, 400, "request body is not valid UTF-8");
                return -EINVAL;
        }
        json_object *o = NULL;
        const char *why = NULL;
        int r = json_parse_strict(req->body, req->body_len, 0, &o, &why);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                http_respond_error(req, 400, "malformed JSON in request body: %s",
                                   why ?: strerror(-r));
                return -EINVAL;
        }
        if (!json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                http_respond_error(req, 400, "request body must be a JSON object");
                return -EINVAL;
        }
        if (json_has_nul(o)) {
                json_object_put(o);
                http_respond_error(req, 400, "a string in the request body contains \\u0000");
                return -EINVAL;
        }
        *ret = o;
        return 0;
}

static void queue(HttpRequest *req, unsigned status, struct MHD_Response *resp)
{
        if (req->answered) {
                log_error("BUG: second response to %s %s", req->method, req->url);
                if (resp)
                        MHD_destroy_response(resp);
                return;
        }
        req->answered = true;
        if (!resp) {
                req->result = MHD_NO;
                return;
        }
        req->result = MHD_queue_response(req->conn, status, resp);
        MHD_destroy_response(resp);
}

void http_respond_json(HttpRequest *req, unsigned status, json_object *body)
{
        if (!body) {
                http_respond_empty(req, status);
                return;
        }
        size_t len = 0;
        const char *s = json_object_to_json_string_length(
                body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        cleanup_free char *copy = malloc(len + 1);
        if (copy) {
                memcpy(copy, s, len);
                copy[len] = '\n';
        }
        json_object_put(body);
        if (!copy) {
                queue(req, status, NULL);
                return;
        }
        struct MHD_Response *resp =
                MHD_create_response_from_buffer(len + 1, copy, MHD_RESPMEM_MUST_FREE);
        if (resp) {
                copy = NULL; /* owned by resp */
                (void) MHD_add_response_header(resp, "Content-Type", "application/json");
        }
        queue(req, status, resp);
}

static void add_headers(struct MHD_Response *resp, char *const *headers)
{
        for (size_t i = 0; headers && headers[i] && headers[i + 1]; i += 2)
                (void) MHD_add_response_header(resp, headers[i], headers[i + 1]);
}

void http_respond_raw(HttpRequest *req, unsigned status, char *const *headers, char *body,
                      size_t len)
{
        struct MHD_Response *resp =
                body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
                     : MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!resp)
                free(body);
        else
                add_headers(resp, headers);
        queue(req, status, resp);
}

/* Runs on the connection's thread (thread-per-connection), so it may block. */
typedef struct {
        Upgrade *u;
        int sock;
        char *extra;
        size_t extra_len;
        struct MHD_UpgradeResponseHandle *urh;
} UpgradeRun;

static void upgrade_run(UpgradeRun *r)
{
        r->u->ops.run(r->u->cls, r->sock, r->extra, r->extra_len);
        if (r->u->ops.destroy)
                r->u->ops.destroy(r->u->cls);
        free(r->u);
        (void) MHD_upgrade_action(r->urh, MHD_UPGRADE_ACTION_CLOSE);
}

static void *upgrade_thread(void *arg)
{
        UpgradeRun *r = arg;
        upgrade_run(r);
        free(r->extra);
        free(r);
        return NULL;
}

/* Over plain TCP the handler gets the client's socket and runs on the
 * connection's thread. Over TLS it gets one end of a socket pair that
 * libmicrohttpd's connection thread pumps through TLS, so that thread must be
 * free: the handler runs on a thread of its own. */
static void upgrade_handler(void *cls, struct MHD_Connection *conn, void *con_cls,
                            const char *extra_in, size_t extra_in_size, MHD_socket sock,
                            struct MHD_UpgradeResponseHandle *urh)
{
        HttpRequest *req = con_cls;
        (void) cls;
        (void) conn;
        Upgrade *u = req ? TAKE_PTR(req->upgrade) : NULL;
        if (!u) {
                (void) MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
                return;
        }
        UpgradeRun run = {.u = u,
                          .sock = sock,
                          .extra = (char *) extra_in,
                          .extra_len = extra_in_size,
                          .urh = urh};
        if (!req->tcp || !req->server->tls_cert) {
                upgrade_run(&run);
                return;
        }
        /* That end comes non-blocking: a handler's blocking recv() would see
         * EAGAIN as the end, its send() of a burst fail. Blocking, as a
         * plain connection's socket is (the flag is this end's alone). */
        int fl = fcntl(sock, F_GETFL);
        if (fl >= 0)
                (void) fcntl(sock, F_SETFL, fl & ~O_NONBLOCK);
        UpgradeRun *r = malloc(sizeof(*r));
        char *extra = extra_in_size ? malloc(extra_in_size) : NULL;
        pthread_t t;
        pthread_attr_t attr;
        bool started = false;
        if (r && (extra || !extra_in_size) && pthread_attr_init(&attr) == 0) {
                if (extra_in_size)
                        memcpy(extra, extra_in, extra_in_size);
                *r = run;
                r->extra = extra;
                (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                started = pthread_create(&t, &attr, upgrade_thread, r) == 0;
                (void) pthread_attr_destroy(&attr);
        }
        if (!started) {
                free(r);
                free(extra);
                if (u->ops.destroy)
                        u->ops.destroy(u->cls);
                free(u);
                (void) MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        }
}

void http_respond_upgrade(HttpRequest *req, char *const *headers, const HttpUpgradeOps *ops,
                          void *cls)
{
        Upgrade *u = malloc(sizeof(*u));
        struct MHD_Response *resp =
                u ? MHD_create_response_for_upgrade(upgrade_handler, NULL) : NULL;
        if (!resp) {
                free(u);
                if (ops->destroy)
                        ops->destroy(cls);
                queue(req, 500, NULL);
                return;
        }
        *u = (Upgrade){.ops = *ops, .cls = cls};
        req->upgrade = u;
        add_headers(resp, headers);
        (void) MHD_add_response_header(resp, "Connection", "Upgrade");
        queue(req, 101, resp);
}

void http_respond_empty(HttpRequest *req, unsigned status)
{
        struct MHD_Response *resp =
                MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        queue(req, status, resp);
}

static void respond_error(HttpRequest *req, unsigned status, const char *reason, const char *fmt,
                          va_list ap)
{
        char msg[1024];
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        /* What a message quotes of a request (a path, an id) may be any bytes;
         * the answer stays valid JSON. */
        bool valid = true;
        size_t len = strlen(msg);
        if (utf8_complete_prefix((const uint8_t *) msg, len, &valid) != len || !valid)
                for (char *p = msg; *p; p++)
                        if ((unsigned char) *p >= 0x80)
                                *p = '?';
        json_object *o = json_object_new_object();
        if (o) {
                (void) json_object_object_add(o, "code", json_object_new_int((int) status));
                if (reason)
                        (void) json_object_object_add(o, "reason", json_object_new_string(reason));
                (void) json_object_object_add(o, "message", json_object_new_string(msg));
        }
        http_respond_json(req, status, o);
}

void http_respond_error(HttpRequest *req, unsigned status, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        respond_error(req, status, NULL, fmt, ap);
        va_end(ap);
}

void http_respond_errno(HttpRequest *req, int r, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        respond_error(req, http_status_from_errno(r), http_reason_from_errno(r), fmt, ap);
        va_end(ap);
}

void http_respond_fd(HttpRequest *req, unsigned status, const char *content_type, int fd,
                     uint64_t size)
{
        struct MHD_Response *resp = MHD_create_response_from_fd64(size, fd);
        if (!resp) {
                (void) close(fd);
                queue(req, status, NULL);
                return;
        }
        (void) MHD_add_response_header(resp, "Content-Type", content_type);
        (void) MHD_add_response_header(resp, "Cache-Control", "no-store");
        queue(req, status, resp);
}

typedef struct {
        HttpStreamOps ops;
        void *cls;
        int client_fd;
        struct MHD_Connection *conn;
        unsigned idle_timeout_s;
} Stream;

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
        Stream *s = cls;
        (void) pos;
        ssize_t n = s->ops.read(s->cls, s->client_fd, buf, max);
        if (s->idle_timeout_s > 0) {
                /* The time the source was quiet (a process that prints
                 * nothing for a while) is not the client's idleness: restart
                 * the idle clock, which going from no timeout to one does.
                 * Runs on the connection's own thread. */
                (void) MHD_set_connection_option(s->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
                (void) MHD_set_connection_option(s->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                                 s->idle_timeout_s);
        }
        if (n == 0)
                return MHD_CONTENT_READER_END_OF_STREAM;
        if (n < 0)
                return MHD_CONTENT_READER_END_WITH_ERROR;
        return n;
}

static void stream_free(void *cls)
{
        Stream *s = cls;
        if (s->ops.destroy)
                s->ops.destroy(s->cls);
        free(s);
}

static void respond_stream(HttpRequest *req, unsigned status, const char *content_type,
                           char *const *headers, const HttpStreamOps *ops, void *cls)
{
        Stream *s = malloc(sizeof(*s));
        if (!s) {
                if (ops->destroy)
                        ops->destroy(cls);
                queue(req, status, NULL);
                return;
        }
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *s = (Stream){.ops = *ops,
                      .cls = cls,
                      .client_fd = ci ? ci->connect_fd : -1,
                      .conn = req->conn,
                      .idle_timeout_s = req->idle_timeout_s};
        struct MHD_Response *resp = MHD_create_response_from_callback(
                MHD_SIZE_UNKNOWN, (size_t) 64 * 1024, stream_reader, s, stream_free);
        if (!resp) {
                stream_free(s);
                queue(req, status, NULL);
                return;
        }
        if (content_type) {
                (void) MHD_add_response_header(resp, "Content-Type", content_type);
                (void) MHD_add_response_header(resp, "Cache-Control", "no-store");
        }
        add_headers(resp, headers);
        queue(req, status, resp);
}

void http_respond_stream(HttpRequest *req, unsigned status, const char *content_type,
                         const HttpStreamOps *ops, void *cls)
{
        respond_stream(req, status, content_type, NULL, ops, cls);
}

void http_respond_stream_headers(HttpRequest *req, unsigned status, char *const *headers,
                                 const HttpStreamOps *ops, void *cls)
{
        respond_stream(req, status, NULL, headers, ops, cls);
}

static bool token_ok(const HttpServer *s, struct MHD_Connection *conn)
{
        const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        if (!s->token || !h || strncasecmp(h, "Bearer ", 7) != 0)
                return false;
        const char *given = h + 7;
        size_t a = strlen(given), b = strlen(s->token);
        /* Constant time in the token's content; the length is not a secret worth hiding. */
        unsigned char diff = a != b;
        for (size_t i = 0; i < a && i < b; i++)
                diff |= (unsigned char) (given[i] ^ s->token[i]);
        return diff == 0;
}

/* Appends to the spooled body; failures are answered once the body is in. */
static enum MHD_Result spool(HttpRequest *req, const char *data, size_t n)
{
        if (req->too_large || req->spool_error)
                return MHD_YES;
        if (req->body_len + n > req->spool_max) {
                req->too_large = true;
                return MHD_YES;
        }
        while (n > 0) {
                ssize_t w = write(req->spool_fd, data, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0) {
                        req->spool_error = negative_errno();
                        return MHD_YES;
                }
                data += w;
                n -= (size_t) w;
                req->body_len += (size_t) w;
        }
        return MHD_YES;
}

/* Content-Length as a number; false when absent or not a plain number
 * (chunked uploads are held to the limit as they arrive). */
static bool content_length(struct MHD_Connection *conn, uint64_t *ret)
{
        const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (!v || *v < '0' || *v > '9')
                return false;
        char *end = NULL;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno != 0 || *end)
                return false;
        *ret = n;
        return true;
}

typedef struct {
        const char *name;
        unsigned n;
} HeaderCount;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
        (void) kind;
        (void) value;
        HeaderCount *c = cls;
        if (strcasecmp(key, c->name) == 0)
                c->n++;
        return MHD_YES;
}

static unsigned header_count(struct MHD_Connection *conn, const char *name)
{
        HeaderCount c = {name, 0};
        (void) MHD_get_connection_values(conn, MHD_HEADER_KIND, count_header, &c);
        return c.n;
}

/* RFC 9112 6.3: a request whose length is ambiguous (Content-Length with
 * Transfer-Encoding, two Content-Lengths, a coding other than plain
 * "chunked") is refused and its connection closed, so no bytes after it can
 * be taken for a next request another hop framed differently (smuggling). */
static bool framing_ok(struct MHD_Connection *conn)
{
        unsigned cl = header_count(conn, "Content-Length");
        unsigned te = header_count(conn, "Transfer-Encoding");
        if (cl > 1 || te > 1 || (cl && te))
                return false;
        const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
        return !te || (v && strcasecmp(v, "chunked") == 0);
}

/* The first call, with the headers only: the token is checked here, before
 * libmicrohttpd reads any of the body (a response queued now makes it discard
 * the body and close the connection), and how the body will be kept. */
static void request_start(HttpServer *s, HttpRequest *req)
{
        if (!framing_ok(req->conn)) {
                http_respond_error(req, 400,
                                   "ambiguous request framing: give one Content-Length or "
                                   "Transfer-Encoding: chunked, not both");
                return;
        }
        if (req->tcp) {
                /* tcp_open: the handler authenticates (the gateway); a request
                 * whose headers are in leaves the unauthenticated caps all the same. */
                if (!s->tcp_open && !token_ok(s, req->conn)) {
                        http_respond_error(req, 401, "missing or invalid bearer token");
                        return;
                }
                const union MHD_ConnectionInfo *ci =
                        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
                if (ci && ci->socket_context)
                        http_guard_authenticated(s->guard, ci->socket_context);
                req->idle_timeout_s = s->idle_timeout_s;
                (void) MHD_set_connection_option(req->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                                 s->idle_timeout_s);
        }
        size_t lim = s->spool_limit ? s->spool_limit(req, s->userdata) : 0;
        req->spool_max = lim;
        /* A declared oversize body is discarded as it arrives, none of it
         * held, and answered 413 once it is in: answering before it would
         * leave clients that send the whole body first (most) with a broken
         * pipe instead of the 413. */
        uint64_t len = 0;
        if (content_length(req->conn, &len) && len > (lim ? lim : s->max_body))
                req->too_large = true;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
        HttpServer *s = cls;
        (void) version;
        HttpRequest *req = *con_cls;
        if (!req) {
                const union MHD_ConnectionInfo *di =
                        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_DAEMON);
                req = calloc(1, sizeof(*req));
                if (!req)
                        return MHD_NO;
                *req = (HttpRequest){.server = s,
                                     .conn = conn,
                                     .method = method,
                                     .url = url,
                                     .tcp = di && di->daemon == s->tcp_daemon,
                                     .spool_fd = -1,
                                     .result = MHD_YES};
                *con_cls = req;
                request_start(s, req);
                return req->result;
        }
        if (req->answered) { /* refused early: the body is not read */
                *upload_data_size = 0;
                return req->result;
        }
        if (*upload_data_size > 0) {
                size_t n = *upload_data_size;
                *upload_data_size = 0;
                if (req->too_large)
                        return MHD_YES;
                if (req->spool_max > 0 && req->spool_fd < 0 && !req->spool_error) {
                        req->spool_fd = memfd_create("sandpit-body", MFD_CLOEXEC);
                        if (req->spool_fd < 0)
                                req->spool_error = negative_errno();
                }
                if (req->spool_max > 0)
                        return spool(req, upload_data, n);
                if (req->too_large || req->body_len + n > s->max_body) {
                        req->too_large = true;
                        return MHD_YES;
                }
                char *b = realloc(req->body, req->body_len + n + 1);
                if (!b)
                        return MHD_NO;
                req->body = b;
                memcpy(req->body + req->body_len, upload_data, n);
                req->body_len += n;
                req->body[req->body_len] = 0;
                return MHD_YES;
        }
        if (req->too_large)
                http_respond_error(req, 413, "request body larger than %zu bytes",
                                   req->spool_max ? req->spool_max : s->max_body);
        else if (req->spool_error)
                http_respond_error(req, 507, "cannot hold the request body: %s",
                                   strerror(-req->spool_error));
        else
                s->handler(req, s->userdata);
        if (!req->answered)
                http_respond_error(req, 500, "no response");
        return req->result;
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
        (void) cls;
        (void) conn;
        (void) toe;
        HttpRequest *req = *con_cls;
        if (!req)
                return;
        if (req->upgrade) { /* the upgrade never happened */
                if (req->upgrade->ops.destroy)
                        req->upgrade->ops.destroy(req->upgrade->cls);
                free(req->upgrade);
        }
        free(req->body);
        closep(&req->spool_fd);
        free(req);
        *con_cls = NULL;
}

static const unsigned mhd_flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                  MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE;

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
        char msg[512];
        (void) cls;
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        msg[strcspn(msg, "\n")] = 0;
        log_debug("libmicrohttpd: %s", msg);
}

/* Drops an unauthenticated TCP connection to make room (the guard's lock is
 * held, and the connection is still registered, so its fd is still its own):
 * its thread sees the socket end and closes it. */
static void guard_drop(void *cls, int fd)
{
        (void) cls;
        (void) shutdown(fd, SHUT_RDWR);
}

/* TCP connections come and go through the guard: every new one counts as
 * unauthenticated until a request of it shows the token. */
static void notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
        HttpServer *s = cls;
        if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
                http_guard_remove(s->guard, *socket_context);
                *socket_context = NULL;
                return;
        }
        const union MHD_ConnectionInfo *fi =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ai =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (!fi)
                return;
        const void *addr = NULL;
        size_t addr_len = 0;
        if (ai && ai->client_addr && ai->client_addr->sa_family == AF_INET) {
                addr = &((const struct sockaddr_in *) (const void *) ai->client_addr)->sin_addr;
                addr_len = sizeof(struct in_addr);
        }
        HttpGuardConn *c = NULL;
        if (http_guard_add(s->guard, addr, addr_len, fi->connect_fd, now_monotonic_us() / 1000,
                           &c) < 0) {
                (void) shutdown(fi->connect_fd, SHUT_RDWR); /* cannot account for it */
                return;
        }
        *socket_context = c;
}

static struct MHD_Daemon *start_daemon(HttpServer *s, int fd, bool tcp)
{
        bool tls = tcp && s->tls_cert;
        /* The unix socket is for local, trusted callers: no timeouts. The
         * key and certificate options come last, so that without TLS they are
         * past MHD_OPTION_END. */
        return MHD_start_daemon(mhd_flags | (tls ? MHD_USE_TLS : 0), 0, NULL, NULL, access_handler,
                                s, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED,
                                request_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
                                tcp ? notify_connection : NULL, s, MHD_OPTION_CONNECTION_TIMEOUT,
                                tcp ? s->header_timeout_s : 0u, MHD_OPTION_CONNECTION_LIMIT,
                                (unsigned) HTTP_CONNECTION_LIMIT, MHD_OPTION_THREAD_STACK_SIZE,
                                (size_t) 512 * 1024, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                                tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, s->tls_cert,
                                MHD_OPTION_HTTPS_MEM_KEY, s->tls_key, MHD_OPTION_END);
}

/* The certificate and key of cfg, read into s; -EINVAL for one without the
 * other, -EOPNOTSUPP when libmicrohttpd was built without TLS. */
static int load_tls(HttpServer *s, const HttpServerConfig *cfg)
{
        if (!cfg->tls_cert_file && !cfg->tls_key_file)
                return 0;
        if (!cfg->tls_cert_file || !cfg->tls_key_file || !cfg->tcp_listen)
                return -EINVAL;
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
                return -EOPNOTSUPP;
        size_t len = 0;
        int r = read_file(cfg->tls_cert_file, (size_t) 1 << 20, &s->tls_cert, &len);
        if (r < 0) {
                log_error_errno(r, "cannot read the TLS certificate %s", cfg->tls_cert_file);
                return r;
        }
        r = read_file(cfg->tls_key_file, (size_t) 1 << 20, &s->tls_key, &len);
        if (r < 0)
                log_error_errno(r, "cannot read the TLS key %s", cfg->tls_key_file);
        return r;
}

static int listen_unix(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (unlink(path) < 0 && errno != ENOENT)
                return -errno;
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        if (chmod(path, 0660) < 0)
                return -errno;
        if (listen(fd, 512) < 0)
                return -errno;
        return TAKE_FD(fd);
}

static int listen_tcp(const char *spec, unsigned *ret_port)
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
        if (!*(colon + 1) || *end || port < 0 || port > 65535)
                return -EINVAL;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
        if (inet_pton(AF_INET, *host ? host : "0.0.0.0", &sa.sin_addr) != 1)
                return -EINVAL;
        cleanup_close int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int one = 1;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        if (listen(fd, 512) < 0)
                return -errno;
        socklen_t sl = sizeof(sa);
        if (getsockname(fd, (struct sockaddr *) &sa, &sl) < 0)
                return -errno;
        *ret_port = ntohs(sa.sin_port);
        return TAKE_FD(fd);
}

int http_server_start(const HttpServerConfig *cfg, HttpHandler handler, void *userdata,
                      HttpServer **ret)
{
        HttpServer *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->handler = handler;
        s->userdata = userdata;
        s->max_body = cfg->max_body;
        s->spool_limit = cfg->spool_limit;
        s->header_timeout_s =
                cfg->header_timeout_s ? cfg->header_timeout_s : HTTP_DEFAULT_HEADER_TIMEOUT;
        s->idle_timeout_s = cfg->idle_timeout_s ? cfg->idle_timeout_s : HTTP_DEFAULT_IDLE_TIMEOUT;
        int r = 0;
        s->tcp_open = cfg->tcp_open;
        if (cfg->token && !(s->token = strdup(cfg->token)))
                r = -ENOMEM;
        if (r == 0)
                r = load_tls(s, cfg);
        if (r == 0 && cfg->unix_path) {
                int fd = listen_unix(cfg->unix_path);
                if (fd < 0)
                        r = fd;
                else if (!(s->unix_path = strdup(cfg->unix_path)) ||
                         !(s->unix_daemon = start_daemon(s, fd, false))) {
                        (void) close(fd);
                        r = -EIO;
                }
        }
        if (r == 0 && cfg->tcp_listen) {
                HttpGuardConfig gc = {
                        .max_total = cfg->max_unauth ? cfg->max_unauth : HTTP_DEFAULT_MAX_UNAUTH,
                        .max_per_addr = cfg->max_unauth_per_ip ? cfg->max_unauth_per_ip
                                                               : HTTP_DEFAULT_MAX_UNAUTH_PER_IP,
                        /* Trickling bytes keeps the idle clock going, not this one. */
                        .max_age_ms = (uint64_t) s->header_timeout_s * 1000,
                        .drop = guard_drop};
                r = http_guard_new(&gc, &s->guard);
        }
        if (r == 0 && cfg->tcp_listen) {
                int fd = listen_tcp(cfg->tcp_listen, &s->tcp_port);
                if (fd < 0)
                        r = fd;
                else if (!(s->tcp_daemon = start_daemon(s, fd, true))) {
                        (void) close(fd);
                        r = -EIO;
                }
        }
        if (r < 0) {
                http_server_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

unsigned http_server_tcp_port(const HttpServer *s)
{
        return s->tcp_port;
}

void http_server_free(HttpServer *s)
{
        if (!s)
                return;
        if (s->unix_daemon)
                MHD_stop_daemon(s->unix_daemon);
        if (s->tcp_daemon)
                MHD_stop_daemon(s->tcp_daemon);
        http_guard_free(s->guard);
        if (s->unix_path)
                (void) unlink(s->unix_path);
        free(s->unix_path);
        if (s->token)
                explicit_bzero(s->token, strlen(s->token));
        free(s->token);
        if (s->tls_key)
                explicit_bzero(s->tls_key, strlen(s->tls_key));
        free(s->tls_key);
        free(s->tls_cert);
        free(s);
}
