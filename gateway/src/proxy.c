/* The port proxy: any port of a sandbox other than envd's and the code
 * interpreter's, relayed to the agent's own port proxy
 * (/v1/sandboxes/{id}/ports/{port}/{path}) over a socket of its own, so one
 * path serves plain HTTP (the response streamed) and websockets (the agent's
 * 101, then bytes both ways). The agent client is not used here: it cannot
 * hand over an upgraded connection. The socket is agent-conn.h's: plain or
 * TLS, verified as the agent clients of this process are. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "agent-conn.h"
#include "gw-internal.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define PROXY_HEAD_MAX  ((size_t) 64 * 1024)
#define PROXY_MIN(a, b) ((a) < (b) ? (a) : (b))

typedef struct {
        GwConn *conn; /* to the agent */
        char *buf;    /* bytes read past the response head */
        size_t len;   /* ... how many */
        size_t off;   /* ... consumed */
        bool chunked; /* the agent's body is chunked: decoded here */
        size_t chunk; /* bytes left in the current chunk */
        bool done;
} Proxy;

static void proxy_free(void *cls)
{
        Proxy *p = cls;
        gw_conn_free(p->conn);
        free(p->buf);
        free(p);
}

/* Headers not passed on: hop-by-hop, the gateway's routing and credentials,
 * and the framing this side sets itself. */
static bool skip_header(const char *name, bool upgrade)
{
        static const char *const skip[] = {
                "Host",
                "Content-Length",
                "Transfer-Encoding",
                "Keep-Alive",
                "TE",
                "Trailer",
                "Proxy-Connection",
                "Authorization",
                "X-Access-Token",
                "E2b-Sandbox-Id",
                "E2b-Sandbox-Port",
                "Connection",
                "Upgrade",
        };
        for (size_t i = 0; i < ARRAY_SIZE(skip); i++)
                if (strcasecmp(name, skip[i]) == 0)
                        return !(upgrade && strcasecmp(name, "Upgrade") == 0);
        return false;
}

static void query_append(FILE *o, char **args)
{
        for (size_t i = 0; args && args[i] && args[i + 1]; i += 2) {
                fputc(i == 0 ? '?' : '&', o);
                for (int k = 0; k < 2; k++) {
                        if (k == 1)
                                fputc('=', o);
                        for (const unsigned char *c = (const unsigned char *) args[i + k]; *c; c++)
                                if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                                    (*c >= '0' && *c <= '9') || strchr("-._~", *c))
                                        fputc((char) *c, o);
                                else
                                        fprintf(o, "%%%02X", *c);
                }
        }
}

static int send_request(GwRequest *r, GwConn *conn, const char *token, bool upgrade)
{
        cleanup_strv char **args = NULL;
        if (http_request_args(r->req, &args) < 0)
                return -ENOMEM;
        size_t body_len = 0;
        const char *body = http_request_body(r->req, &body_len);
        int body_fd = http_request_body_fd(r->req);
        cleanup_free char *req = NULL;
        size_t req_len = 0;
        FILE *o = open_memstream(&req, &req_len);
        if (!o)
                return -ENOMEM;
        fprintf(o, "%s /v1/sandboxes/%s/ports/%u%s", r->method, r->route.sandbox_id, r->route.port,
                r->path);
        query_append(o, args);
        fprintf(o, " HTTP/1.1\r\nHost: agent\r\n");
        if (token && *token)
                fprintf(o, "Authorization: Bearer %s\r\n", token);
        fprintf(o, "Connection: %s\r\n", upgrade ? "Upgrade" : "close");
        for (char **h = r->headers; h && h[0] && h[1]; h += 2)
                if (!skip_header(h[0], upgrade))
                        fprintf(o, "%s: %s\r\n", h[0], h[1]);
        if (!upgrade)
                fprintf(o, "Content-Length: %zu\r\n", body ? body_len : 0);
        fprintf(o, "\r\n");
        bool failed = ferror(o);
        if (fclose(o) != 0 || failed)
                return -ENOMEM;
        int k = gw_conn_send(conn, req, req_len);
        if (k < 0 || upgrade || !body || body_len == 0)
                return k;
        (void) body_fd; /* http_request_body() holds a spooled body as well */
        return gw_conn_send(conn, body, body_len);
}

/* Reads the agent's response head into p->buf; *head_len its length. */
static int read_head(Proxy *p, size_t *head_len)
{
        size_t cap = 0;
        for (;;) {
                if (p->len + 4096 > cap) {
                        if (cap >= PROXY_HEAD_MAX)
                                return -E2BIG;
                        char *b = realloc(p->buf, cap + 8192);
                        if (!b)
                                return -ENOMEM;
                        p->buf = b;
                        cap += 8192;
                }
                ssize_t n = gw_conn_recv(p->conn, p->buf + p->len, cap - p->len - 1);
                if (n < 0)
                        return (int) n;
                if (n == 0)
                        return -ECONNRESET;
                p->len += (size_t) n;
                p->buf[p->len] = 0;
                char *end = strstr(p->buf, "\r\n\r\n");
                if (end) {
                        *head_len = (size_t) (end - p->buf) + 4;
                        return 0;
                }
        }
}

/* Raw body bytes: what is left of the head's read, then the socket. */
static ssize_t raw_read(Proxy *p, char *buf, size_t max)
{
        if (p->off < p->len) {
                size_t n = PROXY_MIN(max, p->len - p->off);
                memcpy(buf, p->buf + p->off, n);
                p->off += n;
                return (ssize_t) n;
        }
        return gw_conn_recv(p->conn, buf, max);
}

static int raw_byte(Proxy *p)
{
        char c;
        ssize_t n = raw_read(p, &c, 1);
        return n < 0 ? (int) n : n == 0 ? -ECONNRESET : (unsigned char) c;
}

/* A chunk-size line (extensions ignored); the line after the last chunk's
 * CRLF is consumed with it. */
static int chunk_line(Proxy *p, size_t *ret)
{
        size_t v = 0;
        bool digits = false, ext = false;
        for (;;) {
                int c = raw_byte(p);
                if (c < 0)
                        return c;
                if (c == '\n')
                        break;
                if (c == '\r' || ext)
                        continue;
                if (c == ';') {
                        ext = true;
                        continue;
                }
                int d = c >= '0' && c <= '9'   ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                               : -1;
                if (d < 0 || v > SIZE_MAX / 16)
                        return -EBADMSG;
                v = v * 16 + (size_t) d;
                digits = true;
        }
        if (!digits)
                return -EBADMSG;
        *ret = v;
        return 0;
}

static ssize_t proxy_read(void *cls, int client_fd, char *buf, size_t max)
{
        (void) client_fd;
        Proxy *p = cls;
        if (p->done)
                return 0;
        if (!p->chunked) {
                ssize_t n = raw_read(p, buf, max);
                if (n == 0)
                        p->done = true;
                return n;
        }
        if (p->chunk == 0) {
                size_t n = 0;
                int k = chunk_line(p, &n);
                if (k < 0)
                        return k;
                if (n == 0) {
                        p->done = true;
                        return 0;
                }
                p->chunk = n;
        }
        ssize_t n = raw_read(p, buf, PROXY_MIN(max, p->chunk));
        if (n <= 0)
                return n < 0 ? n : -ECONNRESET;
        p->chunk -= (size_t) n;
        if (p->chunk == 0) {
                /* the CRLF after the chunk */
                for (int i = 0; i < 2; i++) {
                        int c = raw_byte(p);
                        if (c < 0)
                                return c;
                }
        }
        return n;
}

/* One read from the client's socket to the agent: 1, 0 at the end, < 0. */
static int client_to_agent(int fd, GwConn *conn)
{
        char buf[16384];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
                return 1;
        if (n <= 0)
                return n < 0 ? -errno : 0;
        int k = gw_conn_send(conn, buf, (size_t) n);
        return k < 0 ? k : 1;
}

static int agent_to_client(GwConn *conn, int fd)
{
        char buf[16384];
        ssize_t n = gw_conn_recv(conn, buf, sizeof(buf));
        if (n <= 0)
                return (int) n;
        int k = send_all(fd, buf, (size_t) n);
        return k < 0 ? k : 1;
}

static void upgrade_run(void *cls, int fd, const char *extra, size_t extra_len)
{
        Proxy *p = cls;
        if (extra_len > 0 && gw_conn_send(p->conn, extra, extra_len) < 0)
                return;
        if (p->off < p->len && send_all(fd, p->buf + p->off, p->len - p->off) < 0)
                return;
        struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = p->conn->fd, .events = POLLIN}};
        for (;;) {
                /* TLS may hold decrypted bytes the socket no longer shows */
                if (gw_conn_pending(p->conn) > 0) {
                        if (agent_to_client(p->conn, fd) <= 0)
                                return;
                        continue;
                }
                if (poll(pf, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return;
                }
                if (pf[0].revents && client_to_agent(fd, p->conn) <= 0)
                        return;
                if (pf[1].revents && agent_to_client(p->conn, fd) <= 0)
                        return;
        }
}

static bool response_header_kept(const char *name)
{
        return strcasecmp(name, "Transfer-Encoding") != 0 &&
               strcasecmp(name, "Content-Length") != 0 && strcasecmp(name, "Connection") != 0 &&
               strcasecmp(name, "Keep-Alive") != 0 && strcasecmp(name, "Upgrade") != 0 &&
               strcasecmp(name, "Date") != 0;
}

void gw_proxy_handle(GwRequest *r)
{
        char err[256] = "";
        char *url = NULL, *token = NULL;
        const GwBackendOps *ops = r->gw->backend.ops;
        if (!ops->agent_address) {
                http_respond_error(r->req, 501,
                                   "port %u: the port proxy is not served by this "
                                   "backend",
                                   r->route.port);
                return;
        }
        int k = ops->agent_address(r->gw->backend.data, r->route.sandbox_id, &url, &token, err,
                                   sizeof(err));
        if (k < 0) {
                gw_reply_e2b_error(r->req, k, err);
                return;
        }
        Proxy *p = calloc(1, sizeof(*p));
        if (!p) {
                free(url);
                free(token);
                http_respond_error(r->req, 500, "out of memory");
                return;
        }
        AgentClientTls tls;
        err[0] = 0;
        agent_client_get_tls(&tls);
        k = gw_conn_open(url, &tls, GW_AGENT_CONNECT_TIMEOUT_MS, &p->conn, err, sizeof(err));
        const char *up = gw_header(r, "Upgrade");
        const char *conn = gw_header(r, "Connection");
        bool upgrade = up && conn && strcasestr(conn, "upgrade");
        if (k >= 0)
                k = send_request(r, p->conn, token, upgrade);
        free(url);
        if (token)
                explicit_bzero(token, strlen(token));
        free(token);
        size_t head_len = 0;
        if (k >= 0)
                k = read_head(p, &head_len);
        if (k < 0) {
                proxy_free(p);
                /* gw_conn_open() said why; later failures are the socket's.
                 * An agent that never answered the connect: 504. */
                http_respond_error(r->req, k == -ETIMEDOUT && err[0] ? 504 : 502,
                                   "the agent's port proxy: %s", err[0] ? err : strerror(-k));
                return;
        }
        p->off = head_len;
        /* "HTTP/1.1 200 OK\r\nName: value\r\n..." */
        unsigned long status = 0;
        char *line = p->buf ? strstr(p->buf, "\r\n") : NULL;
        if (line && strncmp(p->buf, "HTTP/1.", 7) == 0 && p->buf[8] == ' ')
                status = strtoul(p->buf + 9, NULL, 10);
        if (!line || status < 100 || status > 599) {
                proxy_free(p);
                http_respond_error(r->req, 502, "the agent's port proxy answered no HTTP status");
                return;
        }
        char *hs[130];
        size_t n = 0;
        line += 2;
        while (line < p->buf + head_len - 2 && n + 3 < ARRAY_SIZE(hs)) {
                char *eol = strstr(line, "\r\n");
                if (!eol)
                        break;
                *eol = 0;
                char *colon = strchr(line, ':');
                if (colon) {
                        *colon = 0;
                        char *v = colon + 1;
                        v += strspn(v, " \t");
                        if (strcasecmp(line, "Transfer-Encoding") == 0 && strcasestr(v, "chunked"))
                                p->chunked = true;
                        if (response_header_kept(line)) {
                                hs[n++] = line;
                                hs[n++] = v;
                        }
                }
                line = eol + 2;
        }
        hs[n] = NULL;
        if (status == 101) {
                static const HttpUpgradeOps uops = {.run = upgrade_run, .destroy = proxy_free};
                if (up) {
                        hs[n++] = (char *) "Upgrade";
                        hs[n++] = (char *) up;
                        hs[n] = NULL;
                }
                http_respond_upgrade(r->req, hs, &uops, p);
                return;
        }
        static const HttpStreamOps sops = {.read = proxy_read, .destroy = proxy_free};
        http_respond_stream_headers(r->req, (unsigned) status, hs, &sops, p);
}
