/* The port proxy. The connection to the sandbox's server is a socket made
 * inside the sandbox's namespace by a short-lived thread (net-link.c) and
 * handed to libcurl, which does the HTTP. Upgrades (websockets) cannot go
 * through libcurl's transfer API: for those the request head is written and
 * the response head read here, then bytes are relayed both ways. */
#include "net-proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "net-link.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define MAX_HEAD       ((size_t) 64 << 10)
#define HEAD_TIMEOUT_S 300

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
        (void) curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Hop-by-hop headers (RFC 9110 7.6.1) and ours: never forwarded. */
static bool hop_header(const char *name)
{
        static const char *const hop[] = {"connection",
                                          "keep-alive",
                                          "proxy-connection",
                                          "proxy-authorization",
                                          "te",
                                          "trailer",
                                          "transfer-encoding",
                                          "upgrade",
                                          "authorization",
                                          "host",
                                          "content-length",
                                          "expect"};
        for (size_t i = 0; i < ARRAY_SIZE(hop); i++)
                if (strcasecmp(name, hop[i]) == 0)
                        return true;
        return false;
}

static int connect_loopback(int fd, unsigned port)
{
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t) port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        return connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ? -errno : 0;
}

/* "/a%20b/c?x=1" from the decoded path and arguments. */
static char *target_of(HttpRequest *req, CURL *c, const char *path)
{
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        if (!f)
                return NULL;
        const char *p = *path ? path : "/";
        while (*p) {
                if (*p == '/') {
                        (void) fputc('/', f);
                        p++;
                        continue;
                }
                size_t n = strcspn(p, "/");
                char *e = curl_easy_escape(c, p, (int) n);
                if (e)
                        (void) fputs(e, f);
                curl_free(e);
                p += n;
        }
        cleanup_strv char **args = NULL;
        if (http_request_args(req, &args) == 0)
                for (size_t i = 0; args[i] && args[i + 1]; i += 2) {
                        char *k = curl_easy_escape(c, args[i], 0);
                        char *v = curl_easy_escape(c, args[i + 1], 0);
                        if (k && v)
                                (void) fprintf(f, "%c%s=%s", i ? '&' : '?', k, v);
                        curl_free(k);
                        curl_free(v);
                }
        if (fclose(f) != 0) {
                free(out);
                return NULL;
        }
        return out;
}

/* --- plain requests through libcurl (it connects the socket we give it) -- */

/* One transfer, driven by curl's multi interface from the connection's
 * thread: first until the response head is in, then, as the stream's reader,
 * whenever the client wants more body. At most BODY_HIGH bytes wait here:
 * beyond that the transfer pauses, so a large download is never held whole. */
typedef struct {
        CURL *c;
        CURLM *m;
        struct curl_slist *hdrs;
        int fd;         /* handed to curl once */
        char **headers; /* alternating names and values */
        size_t nheaders;
        bool head_done, done, paused;
        CURLcode result;
        char *buf;
        size_t len, off;
} Transfer;

#define BODY_HIGH ((size_t) 1 << 20)

static curl_socket_t open_socket(void *cls, curlsocktype purpose, struct curl_sockaddr *addr)
{
        Transfer *t = cls;
        (void) purpose;
        (void) addr;
        return t->fd >= 0 ? TAKE_FD(t->fd) : CURL_SOCKET_BAD;
}

static size_t on_body(char *data, size_t size, size_t n, void *cls)
{
        Transfer *t = cls;
        size_t k = size * n;
        if (t->len - t->off >= BODY_HIGH) {
                t->paused = true;
                return CURL_WRITEFUNC_PAUSE; /* curl keeps the data and offers it again */
        }
        if (t->off && t->off == t->len)
                t->off = t->len = 0;
        char *b = realloc(t->buf, t->len + k + 1);
        if (!b)
                return 0;
        memcpy(b + t->len, data, k);
        t->buf = b;
        t->len += k;
        return k;
}

static void headers_clear(Transfer *t)
{
        for (size_t i = 0; i < t->nheaders; i++)
                free(t->headers[i]);
        if (t->headers)
                t->headers[0] = NULL;
        t->nheaders = 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *cls)
{
        Transfer *t = cls;
        size_t k = size * n;
        if (k >= 5 && strncmp(data, "HTTP/", 5) == 0) {
                headers_clear(t); /* a new response, e.g. after 100 Continue */
                return k;
        }
        if (k <= 2 && (data[0] == '\r' || data[0] == '\n')) {
                long status = 0;
                (void) curl_easy_getinfo(t->c, CURLINFO_RESPONSE_CODE, &status);
                if (status >= 200)
                        t->head_done = true;
                return k;
        }
        const char *colon = memchr(data, ':', k);
        if (!colon)
                return k;
        size_t nl = (size_t) (colon - data);
        const char *v = colon + 1, *end = data + k;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
                end--;
        char *name = strndup(data, nl);
        if (!name)
                return 0;
        if (hop_header(name)) {
                free(name);
                return k;
        }
        char **h = realloc(t->headers, (t->nheaders + 3) * sizeof(char *));
        if (!h) {
                free(name);
                return 0;
        }
        t->headers = h;
        h[t->nheaders] = name;
        h[t->nheaders + 1] = strndup(v, (size_t) (end - v));
        h[t->nheaders + 2] = NULL;
        t->nheaders += 2;
        return h[t->nheaders - 1] ? k : 0;
}

static void transfer_free(void *cls)
{
        Transfer *t = cls;
        if (t->m && t->c)
                (void) curl_multi_remove_handle(t->m, t->c);
        if (t->c)
                curl_easy_cleanup(t->c); /* closes the socket if curl took it */
        if (t->m)
                (void) curl_multi_cleanup(t->m);
        curl_slist_free_all(t->hdrs);
        if (t->fd >= 0)
                (void) close(t->fd);
        headers_clear(t);
        free(t->headers);
        free(t->buf);
        free(t);
}

/* One round of I/O; sets done when the transfer is over. */
static void transfer_step(Transfer *t)
{
        int running = 0;
        if (curl_multi_perform(t->m, &running) != CURLM_OK) {
                t->done = true;
                t->result = CURLE_RECV_ERROR;
                return;
        }
        if (!running) {
                int left = 0;
                CURLMsg *msg = curl_multi_info_read(t->m, &left);
                t->done = true;
                t->result = msg && msg->msg == CURLMSG_DONE ? msg->data.result : CURLE_RECV_ERROR;
                return;
        }
        /* Wait for the socket only when nothing can be handed on: a paused
         * transfer is not polled by curl and would only sleep out the timeout. */
        if (!t->paused && t->len == t->off)
                (void) curl_multi_poll(t->m, NULL, 0, 1000, NULL);
}

static ssize_t transfer_read(void *cls, int client_fd, char *out, size_t max)
{
        Transfer *t = cls;
        for (;;) {
                if (t->len > t->off) {
                        size_t n = t->len - t->off < max ? t->len - t->off : max;
                        memcpy(out, t->buf + t->off, n);
                        t->off += n;
                        return (ssize_t) n;
                }
                if (t->done)
                        return t->result == CURLE_OK ? 0 : -EIO;
                struct pollfd p = {.fd = client_fd, .events = POLLRDHUP};
                if (client_fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP)))
                        return -EPIPE; /* the client went away */
                if (t->paused) {
                        t->paused = false;
                        (void) curl_easy_pause(t->c, CURLPAUSE_CONT);
                }
                transfer_step(t);
        }
}

static const HttpStreamOps transfer_ops = {.read = transfer_read, .destroy = transfer_free};

static void proxy_plain(HttpRequest *req, int fd, unsigned port, const char *path)
{
        Transfer *t = calloc(1, sizeof(*t));
        if (!t || !(t->c = curl_easy_init()) || !(t->m = curl_multi_init())) {
                if (t)
                        t->fd = -1;
                (void) close(fd);
                if (t)
                        transfer_free(t);
                http_respond_error(req, 500, "out of memory");
                return;
        }
        t->fd = fd;
        CURL *c = t->c;
        cleanup_free char *target = target_of(req, c, path);
        char url[64];
        (void) snprintf(url, sizeof(url), "http://127.0.0.1:%u", port);
        cleanup_free char *full = NULL;
        if (!target || asprintf(&full, "%s%s", url, target) < 0)
                full = NULL;
        cleanup_strv char **in = NULL;
        (void) http_request_headers(req, &in);
        for (size_t i = 0; in && in[i] && in[i + 1]; i += 2) {
                if (hop_header(in[i]))
                        continue;
                cleanup_free char *line = NULL;
                if (asprintf(&line, "%s: %s", in[i], in[i + 1]) >= 0) {
                        struct curl_slist *n = curl_slist_append(t->hdrs, line);
                        if (n)
                                t->hdrs = n;
                }
        }
        struct curl_slist *n = curl_slist_append(t->hdrs, "Expect:");
        if (n)
                t->hdrs = n;
        const char *method = http_request_method(req);
        size_t body_len = 0;
        const char *body = http_request_body(req, &body_len);
        (void) curl_easy_setopt(c, CURLOPT_URL, full ? full : url);
        (void) curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
        (void) curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, t);
        (void) curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
        (void) curl_easy_setopt(c, CURLOPT_PROXY, "");
        (void) curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
        (void) curl_easy_setopt(c, CURLOPT_HTTPHEADER, t->hdrs);
        (void) curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        (void) curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
        (void) curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        (void) curl_easy_setopt(c, CURLOPT_HEADERDATA, t);
        if (streq(method, "HEAD"))
                (void) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        else if (!streq(method, "GET") || body_len) {
                (void) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
                (void) curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len);
                (void) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        }
        (void) curl_multi_add_handle(t->m, c);
        uint64_t deadline = now_monotonic_us() + (uint64_t) HEAD_TIMEOUT_S * 1000000u;
        while (!t->head_done && !t->done && now_monotonic_us() < deadline)
                transfer_step(t);
        /* Wait for the first body bytes, so that a small response is sent whole
         * with its exact length; anything longer is streamed from here on. */
        while (t->head_done && !t->done && t->len == 0 && now_monotonic_us() < deadline)
                transfer_step(t);
        long status = 0;
        (void) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (!t->head_done || status < 200 || status > 999) {
                http_respond_error(req, 502, "port %u in the sandbox: %s", port,
                                   !t->head_done && !t->done ? "no response head in time"
                                                             : curl_easy_strerror(t->result));
                transfer_free(t);
        } else if (t->done && t->result == CURLE_OK) {
                /* Complete (a small page, 204, 304, HEAD): one buffer, exact length. */
                char **headers = TAKE_PTR(t->headers);
                size_t nheaders = t->nheaders;
                t->nheaders = 0;
                http_respond_raw(req, (unsigned) status, headers, TAKE_PTR(t->buf), t->len);
                for (size_t i = 0; i < nheaders; i++)
                        free(headers[i]);
                free(headers);
                transfer_free(t);
        } else {
                http_respond_stream_headers(req, (unsigned) status, t->headers, &transfer_ops, t);
        }
}

/* --- upgrades ----------------------------------------------------------------- */

typedef struct {
        int fd;        /* to the sandbox's server */
        char *pending; /* bytes the server sent after its response head */
        size_t npending;
} Tunnel;

static void tunnel_run(void *cls, int client, const char *extra, size_t extra_len)
{
        Tunnel *t = cls;
        if (send_all(client, t->pending, t->npending) < 0 || send_all(t->fd, extra, extra_len) < 0)
                return;
        char buf[16384];
        struct pollfd p[2] = {{.fd = client, .events = POLLIN}, {.fd = t->fd, .events = POLLIN}};
        for (;;) {
                int n = poll(p, 2, -1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return;
                for (int i = 0; i < 2; i++) {
                        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        ssize_t k = recv(p[i].fd, buf, sizeof(buf), 0);
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k <= 0 || send_all(p[1 - i].fd, buf, (size_t) k) < 0)
                                return; /* either side closed: the tunnel is done */
                }
        }
}

static void tunnel_free(void *cls)
{
        Tunnel *t = cls;
        if (t->fd >= 0)
                (void) close(t->fd);
        free(t->pending);
        free(t);
}

static const HttpUpgradeOps tunnel_ops = {.run = tunnel_run, .destroy = tunnel_free};

/* Reads up to the end of the response head; returns the head length. */
static ssize_t read_head(int fd, char *buf, size_t cap, size_t *ret_len)
{
        size_t len = 0;
        while (len < cap - 1) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                if (poll(&p, 1, 30000) <= 0)
                        return -ETIMEDOUT;
                ssize_t k = recv(fd, buf + len, cap - 1 - len, 0);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return -ECONNRESET;
                len += (size_t) k;
                buf[len] = 0;
                char *end = strstr(buf, "\r\n\r\n");
                if (end) {
                        *ret_len = len;
                        return end + 4 - buf;
                }
        }
        return -E2BIG;
}

static void proxy_upgrade(HttpRequest *req, int fd, unsigned port, const char *path)
{
        cleanup_close int sfd = fd;
        int r = connect_loopback(sfd, port);
        if (r < 0) {
                http_respond_error(req, 502, "cannot connect to port %u in the sandbox: %s", port,
                                   strerror(-r));
                return;
        }
        CURL *c = curl_easy_init(); /* only for URL escaping */
        cleanup_free char *target = c ? target_of(req, c, path) : NULL;
        curl_easy_cleanup(c);
        cleanup_free char *head = NULL;
        size_t head_len = 0;
        FILE *f = open_memstream(&head, &head_len);
        if (!target || !f) {
                if (f)
                        (void) fclose(f);
                http_respond_error(req, 500, "out of memory");
                return;
        }
        (void) fprintf(f, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n", http_request_method(req),
                       target, port);
        cleanup_strv char **in = NULL;
        (void) http_request_headers(req, &in);
        for (size_t i = 0; in && in[i] && in[i + 1]; i += 2)
                if (strcasecmp(in[i], "host") != 0 && strcasecmp(in[i], "authorization") != 0 &&
                    !strpbrk(in[i + 1], "\r\n"))
                        (void) fprintf(f, "%s: %s\r\n", in[i], in[i + 1]);
        (void) fputs("\r\n", f);
        if (fclose(f) != 0 || send_all(sfd, head, head_len) < 0) {
                http_respond_error(req, 502, "cannot send the upgrade to port %u", port);
                return;
        }
        cleanup_free char *buf = malloc(MAX_HEAD);
        size_t len = 0;
        ssize_t hl = buf ? read_head(sfd, buf, MAX_HEAD, &len) : -ENOMEM;
        unsigned long status = 0;
        if (hl >= 12 && strncmp(buf, "HTTP/1.", 7) == 0 && buf[8] == ' ')
                status = strtoul(buf + 9, NULL, 10);
        if (hl < 0 || status < 100 || status > 999) {
                http_respond_error(req, 502, "port %u in the sandbox answered no HTTP response",
                                   port);
                return;
        }
        if (status != 101) {
                http_respond_error(req, 502,
                                   "port %u in the sandbox refused the upgrade (status %lu)", port,
                                   status);
                return;
        }
        /* Relay the server's headers (Upgrade, Sec-WebSocket-Accept, ...). */
        char **hdrs = calloc(64 * 2 + 1, sizeof(char *));
        size_t nh = 0;
        buf[hl - 2] = 0;
        char *save = NULL;
        (void) strtok_r(buf, "\r\n", &save); /* status line */
        for (char *line = strtok_r(NULL, "\r\n", &save); hdrs && line && nh < 128;
             line = strtok_r(NULL, "\r\n", &save)) {
                char *colon = strchr(line, ':');
                if (!colon)
                        continue;
                *colon = 0;
                const char *v = colon + 1 + strspn(colon + 1, " \t");
                if (strcasecmp(line, "connection") == 0)
                        continue;
                hdrs[nh++] = strdup(line);
                hdrs[nh++] = strdup(v);
        }
        Tunnel *t = calloc(1, sizeof(*t));
        if (!t || !hdrs) {
                free(t);
                strv_free(hdrs);
                http_respond_error(req, 500, "out of memory");
                return;
        }
        t->fd = TAKE_FD(sfd);
        t->npending = len - (size_t) hl;
        if (t->npending && (t->pending = malloc(t->npending)))
                memcpy(t->pending, buf + hl, t->npending);
        else
                t->npending = 0;
        http_respond_upgrade(req, hdrs, &tunnel_ops, t);
        strv_free(hdrs);
}

void net_proxy_http(HttpRequest *req, const char *netns_path, unsigned port, const char *path)
{
        (void) pthread_once(&curl_once, curl_init);
        /* Made inside the sandbox's namespace; connected (by libcurl or by
         * proxy_upgrade) from this thread, it still reaches the sandbox's 127.0.0.1. */
        int fd = netns_socket(netns_path, AF_INET, SOCK_STREAM);
        if (fd < 0) {
                http_respond_error(req, 500, "cannot make a socket in the sandbox: %s",
                                   strerror(-fd));
                return;
        }
        cleanup_strv char **in = NULL;
        bool upgrade = false;
        if (http_request_headers(req, &in) == 0)
                for (size_t i = 0; in[i] && in[i + 1]; i += 2)
                        if (strcasecmp(in[i], "upgrade") == 0)
                                upgrade = true;
        if (upgrade)
                proxy_upgrade(req, fd, port, path);
        else
                proxy_plain(req, fd, port, path);
}
